//! Log requests relayed between a `GetTaskLogs` caller and the agent that runs the task, over
//! the agent's session (the agent has no inbound port).
//!
//! `GetTaskLogs` hands the task's session a [`LogCommand::Open`] with a bounded queue towards the
//! caller; the session sends the agent a `LogRequest` with a window of [`WINDOW`] chunks and
//! routes the agent's `LogChunk`s into that queue (it never waits on it: the agent sends no
//! more than the window allows, so the queue always has room, and the session loop is never
//! held up by a slow caller). [`LogStream`] is what tonic streams to the caller: each chunk it
//! hands on is credited back to the agent (in batches), and dropping it before the end (the
//! caller went away) tells the agent to stop.

use std::pin::Pin;
use std::task::{Context, Poll};

use berth_proto::v1::{self as pb};
use tokio::sync::mpsc;
use tonic::Status;

/// Chunks the agent may send for a request beyond those credited back.
pub(crate) const WINDOW: u32 = 8;
/// Credits are returned once this many chunks went to the caller.
const CREDIT_BATCH: u32 = WINDOW / 2;

/// The queue towards one caller, written by the session.
pub(crate) type ToCaller = mpsc::Sender<Result<pb::GetTaskLogsResponse, Status>>;
/// The queue towards one caller, read by its [`LogStream`].
pub(crate) type FromAgent = mpsc::Receiver<Result<pb::GetTaskLogsResponse, Status>>;

/// What `GetTaskLogs` asks of a session.
#[derive(Debug)]
pub(crate) enum LogCommand {
    /// Start a request: send it to the agent, route its chunks into `to_caller`.
    Open {
        request: pb::LogRequest,
        to_caller: ToCaller,
    },
    /// The caller took this many chunks: let the agent send as many more.
    Credit { request_id: u64, chunks: u32 },
    /// The caller went away.
    Cancel { request_id: u64 },
}

/// A caller's queue: room for the window, and one more for the end or an error, which
/// therefore always fits.
pub(crate) fn caller_queue() -> (ToCaller, FromAgent) {
    mpsc::channel(WINDOW as usize + 1)
}

/// The response stream of one `GetTaskLogs` call.
#[derive(Debug)]
pub(crate) struct LogStream {
    request_id: u64,
    rx: FromAgent,
    session: mpsc::UnboundedSender<LogCommand>,
    taken: u32,
    ended: bool,
}

impl LogStream {
    pub(crate) fn new(
        request_id: u64,
        rx: FromAgent,
        session: mpsc::UnboundedSender<LogCommand>,
    ) -> Self {
        Self {
            request_id,
            rx,
            session,
            taken: 0,
            ended: false,
        }
    }
}

impl futures::Stream for LogStream {
    type Item = Result<pb::GetTaskLogsResponse, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        match this.rx.poll_recv(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                this.taken += 1;
                if this.taken >= CREDIT_BATCH {
                    let _ = this.session.send(LogCommand::Credit {
                        request_id: this.request_id,
                        chunks: std::mem::take(&mut this.taken),
                    });
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(status))) => {
                this.ended = true;
                Poll::Ready(Some(Err(status)))
            }
            Poll::Ready(None) => {
                this.ended = true;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for LogStream {
    fn drop(&mut self) {
        if !self.ended {
            let _ = self.session.send(LogCommand::Cancel {
                request_id: self.request_id,
            });
        }
    }
}

/// The end of a request as the caller sees it: None for a complete one, else the error.
pub(crate) fn end_status(end: &pb::LogEnd) -> Option<Status> {
    match pb::LogEndReason::try_from(end.reason) {
        Ok(pb::LogEndReason::Complete) => None,
        Ok(pb::LogEndReason::NotFound) => Some(Status::not_found(end.message.clone())),
        Ok(pb::LogEndReason::Failed) | Ok(pb::LogEndReason::Unspecified) | Err(_) => {
            Some(Status::internal(if end.message.is_empty() {
                "the agent could not read the log".to_owned()
            } else {
                format!("the agent could not read the log: {}", end.message)
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[tokio::test]
    async fn chunks_are_credited_in_batches_and_an_early_drop_cancels() {
        let (tx, rx) = caller_queue();
        let (session, mut commands) = mpsc::unbounded_channel();
        let mut stream = LogStream::new(9, rx, session);
        for _ in 0..WINDOW {
            tx.try_send(Ok(pb::GetTaskLogsResponse::default())).unwrap();
        }
        // The window plus the end always fit.
        tx.try_send(Err(Status::not_found("gone"))).unwrap();
        for _ in 0..WINDOW {
            assert!(stream.next().await.unwrap().is_ok());
        }
        let mut credited = 0;
        while let Ok(LogCommand::Credit { request_id, chunks }) = commands.try_recv() {
            assert_eq!(request_id, 9);
            credited += chunks;
        }
        assert_eq!(credited, WINDOW);
        assert_eq!(
            stream.next().await.unwrap().unwrap_err().code(),
            tonic::Code::NotFound
        );
        drop(stream);
        assert!(
            commands.try_recv().is_err(),
            "an ended stream cancels nothing"
        );

        let (_tx, rx) = caller_queue();
        let (session, mut commands) = mpsc::unbounded_channel();
        drop(LogStream::new(10, rx, session));
        assert!(matches!(
            commands.try_recv(),
            Ok(LogCommand::Cancel { request_id: 10 })
        ));
    }
}
