//! Writing a blob into containerd's content store as containerd's own client does. The ingest
//! is named as containerd's client names it (`layer-<digest>`, `config-…`, `manifest-…`,
//! `index-…`), so Berth and the namespace's other clients share it and take turns on its lock.
//! containerd verifies digest and size at commit, so nothing unverified is ever committed.
//!
//! One write is a bounded loop of sessions on containerd's Write stream, never a recursion:
//! - a session first asks how far the ingest got; when containerd already has every byte (an
//!   ingest finished but not committed, or a blob another namespace holds under the default
//!   "shared" policy, which containerd exposes at once at its full size) it commits at once
//!   with the labels, and nothing is downloaded;
//! - otherwise it resumes from that offset (the source is opened from there) and commits;
//! - a blob committed in this namespace meanwhile ("already exists") is taken as it is;
//! - an ingest another writer holds is waited for, with backoff, as long as that writer makes
//!   progress, and at most [`LOCK_STALL`] after it last did;
//! - content that containerd refuses after a resume (the earlier writer left bad bytes) is
//!   dropped and written once more from the start;
//! - a download cut off (the registry reset the connection, a stream that broke off or went
//!   silent) keeps the ingest, so the next write resumes it;
//! - any other failure aborts the ingest (never one another writer holds).

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use containerd_client::services::v1::{WriteAction, WriteContentRequest, WriteContentResponse};
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use oci_client::errors::DigestError;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{PullError, content};
use crate::containerd::{CALL_TIMEOUT, Containerd, ContainerdError, Lease, Op};

/// Size of each write message sent to containerd: 256 KiB. containerd hashes and writes a
/// message only once all of it has arrived, so smaller messages keep it busy while the next
/// arrive; the wide-pull bench measured x0.75 to x0.77 of `ctr images pull` at 256 KiB, x0.80
/// to x0.83 at 1 MiB, x0.85 to x0.87 at 4 MiB, x0.78 to x0.80 at 64 and 128 KiB.
const CHUNK: usize = 1 << 18;
/// How long a source may stay silent before the download is abandoned.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// First delay before asking again for an ingest another writer holds; it doubles with each
/// attempt up to [`LOCK_RETRY_MAX`] (each delay jittered down to half).
pub(crate) const LOCK_RETRY_FIRST: Duration = Duration::from_millis(50);
/// The longest delay between two attempts on a held ingest.
pub(crate) const LOCK_RETRY_MAX: Duration = Duration::from_secs(2);
/// How long the writer holding an ingest may go without progress before Berth gives up on it.
pub(crate) const LOCK_STALL: Duration = Duration::from_secs(60);

/// The bytes of a blob, from some offset on.
pub(crate) type ByteStream<'a> = BoxStream<'a, Result<Bytes, std::io::Error>>;

/// Opens the bytes of a blob from the given offset on. Called at most once per session, and
/// only when containerd lacks some of the bytes.
pub(crate) type Opener<'a> =
    dyn FnMut(u64) -> BoxFuture<'a, Result<ByteStream<'a>, PullError>> + Send + 'a;

/// What the caller wants written.
pub(crate) struct BlobWrite<'a> {
    /// containerd's kind of the blob, which prefixes its ingest: `layer`, `config`,
    /// `manifest` or `index`.
    pub(crate) kind: &'static str,
    pub(crate) digest: &'a str,
    pub(crate) size: i64,
    pub(crate) labels: HashMap<String, String>,
}

impl BlobWrite<'_> {
    /// The ingest reference containerd's own client uses for this blob.
    fn reference(&self) -> String {
        format!("{}-{}", self.kind, self.digest)
    }
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Written {
    /// Bytes this write sent to containerd (0 when containerd had them all).
    pub(crate) sent: u64,
}

/// Writes a blob, reusing whatever containerd has of it. `on_bytes` sees how many bytes the
/// ingest holds after each chunk.
pub(crate) fn write_blob<'w, 'a: 'w>(
    client: &'w dyn Containerd,
    lease: &'w Lease,
    blob: &'w BlobWrite<'w>,
    open: &'w mut Opener<'a>,
    on_bytes: &'w mut (dyn FnMut(u64) + Send),
) -> BoxFuture<'w, Result<Written, PullError>> {
    Box::pin(async move {
        let reference = blob.reference();
        let mut lock = LockWait::new(Instant::now(), blob.size);
        let mut from_start = false;
        loop {
            let session = Session {
                client,
                lease,
                reference: &reference,
                blob,
            };
            match session.run(from_start, open, on_bytes).await {
                Ok(Ended::Committed { sent }) => return Ok(Written { sent }),
                Ok(Ended::Exists) => {
                    // Committed in this namespace meanwhile (by another pull or another client).
                    let existing = content::info(client, blob.digest)
                        .await?
                        .unwrap_or_default();
                    content::adopt(client, lease, blob.digest, &existing, &blob.labels).await?;
                    return Ok(Written { sent: 0 });
                }
                Ok(Ended::Locked) => {
                    let offset = content::ingest_offset(client, &reference).await;
                    let Some(delay) = lock.next(Instant::now(), offset, rand::random()) else {
                        return Err(PullError::IngestHeld {
                            digest: blob.digest.to_owned(),
                            ingest: reference,
                            seconds: LOCK_STALL.as_secs(),
                        });
                    };
                    tracing::debug!(ingest = %reference, ?offset, retry_in_ms = delay.as_millis() as u64, "ingest held by another writer; waiting");
                    tokio::time::sleep(delay).await;
                }
                Ok(Ended::BadResume { offset, reason }) => {
                    content::abort(client, &reference).await;
                    if from_start {
                        // Only a resumed session ends so; kept as a bound all the same.
                        return Err(mismatch(blob, reason));
                    }
                    tracing::warn!(ingest = %reference, offset, %reason, "containerd refused the content of a resumed ingest; writing it again from the start");
                    from_start = true;
                }
                // A download cut off keeps what containerd holds of it: the next write
                // resumes there (the registry asked for the rest with a Range request).
                Err(e) if e.is_transient() => {
                    tracing::info!(ingest = %reference, error = %e, "download cut off; the ingest is kept for a resume");
                    return Err(e);
                }
                Err(e) => {
                    content::abort(client, &reference).await;
                    return Err(e);
                }
            }
        }
    })
}

/// How a session on the Write stream ended, short of an error.
enum Ended {
    Committed {
        sent: u64,
    },
    /// The blob is committed in this namespace already.
    Exists,
    /// Another writer holds the ingest.
    Locked,
    /// containerd refused the content of an ingest resumed at `offset`.
    BadResume {
        offset: u64,
        reason: String,
    },
}

/// Why the sending half of a session stopped.
enum SendFailure {
    /// The source failed or sent too much.
    Source(PullError),
    /// containerd ended the stream; its answer says why.
    Closed,
}

struct Session<'s> {
    client: &'s dyn Containerd,
    lease: &'s Lease,
    reference: &'s str,
    blob: &'s BlobWrite<'s>,
}

impl Session<'_> {
    fn run<'r, 'a: 'r>(
        &'r self,
        from_start: bool,
        open: &'r mut Opener<'a>,
        on_bytes: &'r mut (dyn FnMut(u64) + Send),
    ) -> BoxFuture<'r, Result<Ended, PullError>> {
        Box::pin(async move {
            let blob = self.blob;
            let (tx, rx) = mpsc::channel::<WriteContentRequest>(4);
            let base = WriteContentRequest {
                r#ref: self.reference.to_owned(),
                total: blob.size,
                expected: blob.digest.to_owned(),
                ..Default::default()
            };
            // Stat first: it takes the ingest's lock and tells how far it got.
            let stat_request = WriteContentRequest {
                action: WriteAction::Stat as i32,
                ..base.clone()
            };
            tx.send(stat_request)
                .await
                .map_err(|_| closed(blob.digest))?;
            let opened = tokio::time::timeout(CALL_TIMEOUT, async {
                let mut responses = self
                    .client
                    .content_write(self.lease.id(), blob.digest, rx)
                    .await?;
                let stat = responses.next().await.transpose()?;
                Ok::<_, ContainerdError>((responses, stat))
            })
            .await
            .map_err(|_| PullError::Timeout {
                what: format!("content write of {} {}", blob.kind, blob.digest),
                seconds: CALL_TIMEOUT.as_secs(),
            })?;
            let (mut responses, stat) = match opened {
                Ok((responses, Some(stat))) => (responses, stat),
                Ok((_, None)) => return Err(closed(blob.digest)),
                Err(e) if e.is_already_exists() => return Ok(Ended::Exists),
                Err(e) if is_locked(&e) => return Ok(Ended::Locked),
                Err(e) => return Err(e.into()),
            };
            let start = resume_offset(stat.offset, blob.size, from_start);
            if start > 0 {
                tracing::info!(ingest = %self.reference, offset = start, total = blob.size, "resuming the ingest an earlier writer left");
            }

            // Send chunks while the receiver drains the acknowledgements, so neither side waits
            // for a round trip per chunk.
            let sender = async {
                let tx = tx;
                let mut offset = start;
                if offset < blob.size.max(0) as u64 {
                    let source = open(start).await.map_err(SendFailure::Source)?;
                    offset = send_chunks(&tx, &base, blob, source, start, on_bytes).await?;
                }
                let commit = WriteContentRequest {
                    action: WriteAction::Commit as i32,
                    offset: offset as i64,
                    labels: blob.labels.clone(),
                    ..base.clone()
                };
                tx.send(commit).await.map_err(|_| SendFailure::Closed)?;
                Ok::<u64, SendFailure>(offset)
            };
            let receiver = async {
                loop {
                    match responses.next().await {
                        Some(Ok(r)) if r.action == WriteAction::Commit as i32 => return Ok(r),
                        Some(Ok(_)) => {}
                        None => return Err(None),
                        Some(Err(e)) => return Err(Some(e)),
                    }
                }
            };
            tokio::pin!(sender, receiver);
            let answer = tokio::select! {
                // containerd answered the commit (so everything was sent), or failed: then what
                // the sender still waits for (its source) no longer matters.
                answer = &mut receiver => answer,
                sent = &mut sender => match sent {
                    Ok(_) | Err(SendFailure::Closed) => receiver.await,
                    Err(SendFailure::Source(e)) => {
                        if e.is_transient() {
                            // The request stream is closed: containerd applies every write
                            // sent and ends the stream, so the next session resumes after
                            // all of them.
                            let _ = tokio::time::timeout(CALL_TIMEOUT, receiver).await;
                        }
                        return Err(e);
                    }
                },
            };
            match answer {
                Ok(committed) => Ok(Ended::Committed {
                    sent: committed_bytes(&committed, start),
                }),
                Err(None) => Err(closed(blob.digest)),
                Err(Some(e)) => commit_failure(blob, e, start),
            }
        })
    }
}

/// Streams `source` to containerd in chunks of [`CHUNK`] from `start`; the offset reached.
/// Each chunk is filled to exactly [`CHUNK`] bytes in a buffer that becomes the message's data
/// as it is, so every byte is copied once here (from the source's chunk into the message).
async fn send_chunks(
    tx: &mpsc::Sender<WriteContentRequest>,
    base: &WriteContentRequest,
    blob: &BlobWrite<'_>,
    mut source: ByteStream<'_>,
    start: u64,
    on_bytes: &mut (dyn FnMut(u64) + Send),
) -> Result<u64, SendFailure> {
    let mut chunks = Chunks {
        tx,
        base,
        blob,
        size: blob.size.max(0) as u64,
        offset: start,
        buffer: Vec::with_capacity(CHUNK),
    };
    // One timer for the whole stream, pushed back at each arrival (a timeout per chunk
    // would register a timer for every few KiB the registry sends).
    let idle = tokio::time::sleep(IDLE_TIMEOUT);
    tokio::pin!(idle);
    loop {
        let next = tokio::select! {
            biased;
            next = source.next() => next,
            () = &mut idle => {
                return Err(SendFailure::Source(PullError::Timeout {
                    what: format!("download of {} {}", blob.kind, blob.digest),
                    seconds: IDLE_TIMEOUT.as_secs(),
                }));
            }
        };
        idle.as_mut().reset(Instant::now() + IDLE_TIMEOUT);
        match next {
            Some(Ok(mut bytes)) => {
                while !bytes.is_empty() {
                    let room = CHUNK - chunks.buffer.len();
                    let part = bytes.split_to(room.min(bytes.len()));
                    chunks.buffer.extend_from_slice(&part);
                    if chunks.buffer.len() == CHUNK {
                        chunks.flush(on_bytes).await?;
                    }
                }
            }
            Some(Err(e)) => {
                // What arrived before the source broke off is kept for a resume.
                let failure = stream_error(blob, &e);
                if failure.is_transient() && !chunks.buffer.is_empty() {
                    // Best effort: a write containerd no longer takes is only not kept.
                    let _ = chunks.flush(on_bytes).await;
                }
                return Err(SendFailure::Source(failure));
            }
            None => {
                if !chunks.buffer.is_empty() {
                    chunks.flush(on_bytes).await?;
                }
                return Ok(chunks.offset);
            }
        }
    }
}

/// The chunks of one session's writes: the buffer being filled and where it goes.
struct Chunks<'c> {
    tx: &'c mpsc::Sender<WriteContentRequest>,
    base: &'c WriteContentRequest,
    blob: &'c BlobWrite<'c>,
    size: u64,
    offset: u64,
    buffer: Vec<u8>,
}

impl Chunks<'_> {
    /// Sends the buffer as one write at the current offset, refusing bytes past the declared
    /// size.
    async fn flush(&mut self, on_bytes: &mut (dyn FnMut(u64) + Send)) -> Result<(), SendFailure> {
        let len = self.buffer.len() as u64;
        if self.offset + len > self.size {
            return Err(SendFailure::Source(mismatch(
                self.blob,
                format!(
                    "the source sent more than the {} bytes the manifest declares",
                    self.size
                ),
            )));
        }
        let data = std::mem::replace(&mut self.buffer, Vec::with_capacity(CHUNK));
        let write = WriteContentRequest {
            action: WriteAction::Write as i32,
            offset: self.offset as i64,
            data,
            ..self.base.clone()
        };
        self.tx.send(write).await.map_err(|_| SendFailure::Closed)?;
        self.offset += len;
        on_bytes(self.offset);
        Ok(())
    }
}

/// Where a session starts writing: where the ingest is, unless told to start over or the
/// ingest holds more than the blob (then containerd truncates it at the first write).
fn resume_offset(ingest_offset: i64, size: i64, from_start: bool) -> u64 {
    if from_start || ingest_offset <= 0 || ingest_offset > size {
        0
    } else {
        ingest_offset as u64
    }
}

/// Bytes a committed session sent: what the commit's offset says beyond the start.
fn committed_bytes(answer: &WriteContentResponse, start: u64) -> u64 {
    (answer.offset.max(0) as u64).saturating_sub(start)
}

/// containerd's lock on an ingest another writer holds ("ref … locked for …", Unavailable).
fn is_locked(e: &ContainerdError) -> bool {
    e.code() == tonic::Code::Unavailable && e.message().contains("locked")
}

fn commit_failure(
    blob: &BlobWrite<'_>,
    e: ContainerdError,
    start: u64,
) -> Result<Ended, PullError> {
    let msg = e.message();
    if e.is_already_exists() {
        return Ok(Ended::Exists);
    }
    if is_locked(&e) {
        return Ok(Ended::Locked);
    }
    if e.code() == tonic::Code::FailedPrecondition && start > 0 {
        return Ok(Ended::BadResume {
            offset: start,
            reason: msg.to_owned(),
        });
    }
    if msg.contains("unexpected commit digest") || msg.contains("unexpected commit size") {
        return Err(mismatch(
            blob,
            format!("containerd refused the content: {msg}"),
        ));
    }
    Err(e.into())
}

fn mismatch(blob: &BlobWrite<'_>, reason: String) -> PullError {
    PullError::DigestMismatch {
        kind: blob.kind,
        digest: blob.digest.to_owned(),
        reason,
    }
}

fn closed(digest: &str) -> PullError {
    PullError::Containerd(ContainerdError::new(
        Op::ContentWrite,
        digest,
        &tonic::Status::unavailable("containerd closed the write stream"),
    ))
}

/// A failed read of the registry's stream: bytes that do not match the digest (oci-client
/// verifies a stream read from the start), or the registry's failure.
fn stream_error(blob: &BlobWrite<'_>, e: &std::io::Error) -> PullError {
    let digest = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<DigestError>());
    match digest {
        Some(digest) => mismatch(blob, digest.to_string()),
        None => PullError::Registry {
            registry: String::from("(blob stream)"),
            what: format!("{} {}", blob.kind, blob.digest),
            reason: super::registry::root_cause(e),
            transient: true,
        },
    }
}

/// How long to keep asking for an ingest another writer holds: while that writer makes
/// progress (its ingest grows towards the blob's size), and for at most [`LOCK_STALL`] after it
/// last did. The delays back off from [`LOCK_RETRY_FIRST`] to [`LOCK_RETRY_MAX`], jittered.
#[derive(Debug)]
struct LockWait {
    size: i64,
    attempts: u32,
    /// The furthest offset seen, and when the holder got there.
    furthest: i64,
    progress_at: Instant,
}

impl LockWait {
    fn new(now: Instant, size: i64) -> Self {
        Self {
            size,
            attempts: 0,
            furthest: 0,
            progress_at: now,
        }
    }

    /// The delay before the next attempt, given the ingest's offset now (None: unknown) and a
    /// jitter in [0, 1); None when the holder has made no progress for [`LOCK_STALL`].
    fn next(&mut self, now: Instant, offset: Option<i64>, jitter: f64) -> Option<Duration> {
        if let Some(offset) = offset.map(|o| o.min(self.size))
            && offset > self.furthest
        {
            self.furthest = offset;
            self.progress_at = now;
            self.attempts = 0;
        }
        let stalled = now.duration_since(self.progress_at);
        if stalled >= LOCK_STALL {
            return None;
        }
        let full = LOCK_RETRY_FIRST
            .saturating_mul(1 << self.attempts.min(8))
            .min(LOCK_RETRY_MAX);
        self.attempts += 1;
        let delay = full.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0));
        Some(delay.min(LOCK_STALL - stalled))
    }
}

#[cfg(test)]
mod tests;
