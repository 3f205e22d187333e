//! The scheduler's image requests on the session (`berthctl list-images` and
//! `collect-images`): each is answered on a task of its own, so a long collection never holds
//! up the session, within the request's deadline, with one `ImagesResponse` carrying the
//! request's ID. Requests live as long as their session: dropping [`ImageRequests`] at its end
//! cancels those still running.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use berth_proto::v1::agent_message::Message as Out;
use berth_proto::v1::{
    AgentMessage, ImageOutcome, ImagesAction, ImagesRequest, ImagesResponse, InstanceImage,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::collector::{Collector, ImageHost};

/// The longest a request may run, whatever deadline it brings (and the deadline of one that
/// brings none).
const MAX_DEADLINE: Duration = Duration::from_secs(600);

/// What answers image requests: the image collector in production.
#[async_trait]
pub(crate) trait ImageAnswers: Send + Sync + 'static {
    /// Every image with its size, last use and holders.
    async fn list(&self) -> Result<Vec<InstanceImage>, String>;
    /// One collection now: (removed, kept).
    async fn collect(&self) -> Result<(Vec<ImageOutcome>, Vec<ImageOutcome>), String>;
}

#[async_trait]
impl<H: ImageHost> ImageAnswers for Collector<H> {
    async fn list(&self) -> Result<Vec<InstanceImage>, String> {
        let mut listed = self.host.list().await.map_err(|e| e.to_string())?;
        listed.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(listed
            .into_iter()
            .map(|i| InstanceImage {
                last_used_at: self.images.last_used(&i.name).map(Into::into),
                task_ids: self.images.holders(&i.name),
                name: i.name,
                digest: i.target_digest,
                size: i.size,
            })
            .collect())
    }

    async fn collect(&self) -> Result<(Vec<ImageOutcome>, Vec<ImageOutcome>), String> {
        let sizes: std::collections::HashMap<String, u64> = self
            .host
            .list()
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|i| (i.name, i.size))
            .collect();
        let done = Collector::collect(self).await.map_err(|e| e.to_string())?;
        let removed = done
            .removed
            .into_iter()
            .map(|(name, size, reason)| ImageOutcome { name, size, reason })
            .collect();
        let kept = done
            .kept
            .into_iter()
            .map(|(name, reason)| ImageOutcome {
                size: sizes.get(&name).copied().unwrap_or(0),
                name,
                reason,
            })
            .collect();
        Ok((removed, kept))
    }
}

/// Who answers image requests, shared with every session.
#[derive(Clone)]
pub(crate) struct ImageDesk(pub(crate) Arc<dyn ImageAnswers>);

impl std::fmt::Debug for ImageDesk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ImageDesk")
    }
}

/// The image requests of one session.
#[derive(Debug)]
pub(crate) struct ImageRequests {
    desk: Option<ImageDesk>,
    tx: mpsc::Sender<AgentMessage>,
    tracker: TaskTracker,
    cancel: CancellationToken,
}

impl ImageRequests {
    /// Requests answered by `desk` (none: each is answered with an error), on `tx`.
    pub(crate) fn new(desk: Option<ImageDesk>, tx: mpsc::Sender<AgentMessage>) -> Self {
        Self {
            desk,
            tx,
            tracker: TaskTracker::new(),
            cancel: CancellationToken::new(),
        }
    }

    /// Answers `request` on a task of its own.
    pub(crate) fn start(&self, request: ImagesRequest) {
        let (desk, tx, cancel) = (self.desk.clone(), self.tx.clone(), self.cancel.clone());
        let within = request
            .deadline
            .and_then(|t| SystemTime::try_from(t).ok())
            .map_or(MAX_DEADLINE, |d| {
                d.duration_since(SystemTime::now())
                    .unwrap_or(Duration::ZERO)
                    .min(MAX_DEADLINE)
            });
        let span = tracing::info_span!("images_request", request = request.request_id, action = ?request.action());
        self.tracker.spawn(
            async move {
                let request_id = request.request_id;
                let answer = tokio::select! {
                    _ = cancel.cancelled() => return,
                    answer = tokio::time::timeout(within, answer(desk, &request)) => answer,
                };
                let response = answer.unwrap_or_else(|_| {
                    failed(
                        request_id,
                        format!(
                            "the agent did not finish within the request's deadline ({} s)",
                            within.as_secs()
                        ),
                    )
                });
                if !response.error.is_empty() {
                    tracing::warn!(error = %response.error, "image request failed");
                }
                let _ = tx
                    .send(AgentMessage {
                        message: Some(Out::ImagesResponse(response)),
                    })
                    .await;
            }
            .instrument(span),
        );
    }
}

impl Drop for ImageRequests {
    fn drop(&mut self) {
        self.cancel.cancel();
        self.tracker.close();
    }
}

fn failed(request_id: u64, error: String) -> ImagesResponse {
    ImagesResponse {
        request_id,
        error,
        ..ImagesResponse::default()
    }
}

async fn answer(desk: Option<ImageDesk>, request: &ImagesRequest) -> ImagesResponse {
    let id = request.request_id;
    let Some(ImageDesk(desk)) = desk else {
        return failed(id, "this agent does not manage images".into());
    };
    match request.action() {
        ImagesAction::List => match desk.list().await {
            Ok(images) => ImagesResponse {
                request_id: id,
                images,
                ..ImagesResponse::default()
            },
            Err(error) => failed(id, format!("cannot list the images: {error}")),
        },
        ImagesAction::Collect => match desk.collect().await {
            Ok((removed, kept)) => ImagesResponse {
                request_id: id,
                bytes_freed: removed.iter().map(|r| r.size).sum(),
                removed,
                kept,
                ..ImagesResponse::default()
            },
            Err(error) => failed(id, format!("the image collection failed: {error}")),
        },
        ImagesAction::Unspecified => failed(
            id,
            format!(
                "unknown image request action {}: this agent knows list and collect",
                request.action
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;

    #[async_trait]
    impl ImageAnswers for Fixed {
        async fn list(&self) -> Result<Vec<InstanceImage>, String> {
            Ok(vec![InstanceImage {
                name: "r/a:1".into(),
                size: 7,
                task_ids: vec!["t-1".into()],
                ..InstanceImage::default()
            }])
        }
        async fn collect(&self) -> Result<(Vec<ImageOutcome>, Vec<ImageOutcome>), String> {
            let outcome = |name: &str, size| ImageOutcome {
                name: name.into(),
                size,
                reason: "why".into(),
            };
            Ok((
                vec![outcome("r/b:1", 10), outcome("r/c:1", 5)],
                vec![outcome("r/d:1", 1)],
            ))
        }
    }

    async fn ask(desk: Option<ImageDesk>, action: ImagesAction, id: u64) -> ImagesResponse {
        let (tx, mut rx) = mpsc::channel(4);
        let requests = ImageRequests::new(desk, tx);
        requests.start(ImagesRequest {
            request_id: id,
            action: action as i32,
            deadline: Some((SystemTime::now() + Duration::from_secs(30)).into()),
        });
        match rx.recv().await.expect("an answer").message {
            Some(Out::ImagesResponse(r)) => r,
            other => panic!("not an images response: {other:?}"),
        }
    }

    #[tokio::test]
    async fn each_request_gets_one_answer_with_its_id() {
        let desk = Some(ImageDesk(Arc::new(Fixed)));
        let list = ask(desk.clone(), ImagesAction::List, 4).await;
        assert_eq!(list.request_id, 4);
        assert_eq!(list.images.len(), 1);
        assert_eq!(list.images[0].task_ids, ["t-1"]);

        let collect = ask(desk.clone(), ImagesAction::Collect, 5).await;
        assert_eq!(collect.request_id, 5);
        assert_eq!(collect.removed.len(), 2);
        assert_eq!(collect.kept.len(), 1);
        assert_eq!(collect.bytes_freed, 15, "the removed images' sizes");
        assert!(collect.error.is_empty());

        let unknown = ask(desk, ImagesAction::Unspecified, 6).await;
        assert!(
            unknown.error.contains("unknown image request action"),
            "{unknown:?}"
        );
        let none = ask(None, ImagesAction::List, 7).await;
        assert_eq!(none.request_id, 7);
        assert!(!none.error.is_empty());
    }
}
