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

use bytes::{Bytes, BytesMut};
use containerd_client::services::v1::{WriteAction, WriteContentRequest, WriteContentResponse};
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use oci_client::errors::DigestError;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{PullError, content};
use crate::containerd::{CALL_TIMEOUT, Containerd, ContainerdError, Lease, Op};

/// Size of each write message sent to containerd.
const CHUNK: usize = 1 << 20;
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
async fn send_chunks(
    tx: &mpsc::Sender<WriteContentRequest>,
    base: &WriteContentRequest,
    blob: &BlobWrite<'_>,
    mut source: ByteStream<'_>,
    start: u64,
    on_bytes: &mut (dyn FnMut(u64) + Send),
) -> Result<u64, SendFailure> {
    let size = blob.size.max(0) as u64;
    let mut offset = start;
    let mut buffer = BytesMut::with_capacity(CHUNK);
    loop {
        let next = tokio::time::timeout(IDLE_TIMEOUT, source.next())
            .await
            .map_err(|_| {
                SendFailure::Source(PullError::Timeout {
                    what: format!("download of {} {}", blob.kind, blob.digest),
                    seconds: IDLE_TIMEOUT.as_secs(),
                })
            })?;
        let done = match next {
            Some(Ok(bytes)) => {
                buffer.extend_from_slice(&bytes);
                false
            }
            Some(Err(e)) => {
                // What arrived before the source broke off is kept for a resume.
                let failure = stream_error(blob, &e);
                if failure.is_transient() && !buffer.is_empty() {
                    let data = buffer.split().freeze();
                    if offset + data.len() as u64 <= size {
                        let write = WriteContentRequest {
                            action: WriteAction::Write as i32,
                            offset: offset as i64,
                            data: data.to_vec(),
                            ..base.clone()
                        };
                        if tx.send(write).await.is_ok() {
                            offset += data.len() as u64;
                            on_bytes(offset);
                        }
                    }
                }
                return Err(SendFailure::Source(failure));
            }
            None => true,
        };
        if buffer.len() >= CHUNK || (done && !buffer.is_empty()) {
            let data = buffer.split().freeze();
            let len = data.len() as u64;
            if offset + len > size {
                return Err(SendFailure::Source(mismatch(
                    blob,
                    format!("the source sent more than the {size} bytes the manifest declares"),
                )));
            }
            let write = WriteContentRequest {
                action: WriteAction::Write as i32,
                offset: offset as i64,
                data: data.to_vec(),
                ..base.clone()
            };
            tx.send(write).await.map_err(|_| SendFailure::Closed)?;
            offset += len;
            on_bytes(offset);
        }
        if done {
            return Ok(offset);
        }
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
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::containerd::fake::{FakeContainerd, digest_of};

    const DATA: &[u8] = b"0123456789";

    /// Writes [`DATA`] as a layer through the fake, its source opened from whatever offset the
    /// write asks for; the outcome and the offsets asked for.
    async fn write_layer(fake: &Arc<FakeContainerd>) -> (Result<Written, PullError>, Vec<u64>) {
        let client: Arc<dyn Containerd> = fake.clone();
        let lease = Lease::create(&client, "test").await.unwrap();
        let digest = digest_of(DATA);
        let blob = BlobWrite {
            kind: "layer",
            digest: &digest,
            size: DATA.len() as i64,
            labels: HashMap::new(),
        };
        let opened = Arc::new(std::sync::Mutex::new(Vec::new()));
        let asked = Arc::clone(&opened);
        let mut open =
            move |offset: u64| -> BoxFuture<'static, Result<ByteStream<'static>, PullError>> {
                asked.lock().unwrap().push(offset);
                let rest = Bytes::from_static(&DATA[offset as usize..]);
                Box::pin(async move { Ok(futures::stream::iter([Ok(rest)]).boxed()) })
            };
        let written = write_blob(&*client, &lease, &blob, &mut open, &mut |_| {}).await;
        lease.release(false).await.unwrap();
        let opened = opened.lock().unwrap().clone();
        (written, opened)
    }

    fn reference() -> String {
        format!("layer-{}", digest_of(DATA))
    }

    #[tokio::test]
    async fn an_ingest_left_half_written_is_resumed_where_it_is() {
        let fake = FakeContainerd::new();
        fake.put_ingest(&reference(), &DATA[..4]);
        let (written, opened) = write_layer(&fake).await;
        assert_eq!(written.unwrap(), Written { sent: 6 });
        assert_eq!(opened, [4]);
        assert_eq!(fake.content(), [digest_of(DATA)]);
        assert!(fake.ingests().is_empty());
    }

    #[tokio::test]
    async fn a_download_cut_off_keeps_what_arrived_and_the_next_write_resumes_there() {
        let fake = FakeContainerd::new();
        let client: Arc<dyn Containerd> = fake.clone();
        let lease = Lease::create(&client, "test").await.unwrap();
        let digest = digest_of(DATA);
        let blob = BlobWrite {
            kind: "layer",
            digest: &digest,
            size: DATA.len() as i64,
            labels: HashMap::new(),
        };
        let mut open =
            |_offset: u64| -> BoxFuture<'static, Result<ByteStream<'static>, PullError>> {
                let items = [
                    Ok(Bytes::from_static(&DATA[..6])),
                    Err(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
                ];
                Box::pin(async move { Ok(futures::stream::iter(items).boxed()) })
            };
        let err = write_blob(&*client, &lease, &blob, &mut open, &mut |_| {})
            .await
            .unwrap_err();
        assert!(err.is_transient(), "{err}");
        assert_eq!(fake.ingests(), [reference()], "the ingest is kept");
        assert_eq!(
            content::ingest_offset(&*client, &reference()).await,
            Some(6),
            "with the six bytes that arrived"
        );
        lease.release(false).await.unwrap();
        let (written, opened) = write_layer(&fake).await;
        assert_eq!(written.unwrap(), Written { sent: 4 });
        assert_eq!(opened, [6]);
        assert_eq!(fake.content(), [digest_of(DATA)]);
    }

    #[tokio::test]
    async fn an_ingest_that_holds_every_byte_is_committed_without_a_download() {
        let fake = FakeContainerd::new();
        fake.put_ingest(&reference(), DATA);
        let (written, opened) = write_layer(&fake).await;
        assert_eq!(written.unwrap(), Written { sent: 0 });
        assert!(opened.is_empty());
        assert_eq!(fake.content(), [digest_of(DATA)]);
    }

    #[tokio::test]
    async fn a_resumed_ingest_whose_bytes_are_refused_is_written_again_from_the_start() {
        let fake = FakeContainerd::new();
        fake.put_ingest(&reference(), b"XXXX");
        let (written, opened) = write_layer(&fake).await;
        assert_eq!(written.unwrap(), Written { sent: 10 });
        assert_eq!(opened, [4, 0]);
        assert!(
            fake.calls()
                .contains(&format!("content abort {}", reference()))
        );
        assert_eq!(fake.content(), [digest_of(DATA)]);
        assert!(fake.ingests().is_empty());
    }

    #[test]
    fn a_stream_that_fails_verification_is_a_mismatch_and_anything_else_the_registry() {
        let blob = BlobWrite {
            kind: "layer",
            digest: "sha256:abc",
            size: 3,
            labels: HashMap::new(),
        };
        let tampered = std::io::Error::other(DigestError::VerificationError {
            expected: "sha256:abc".to_owned(),
            actual: "sha256:def".to_owned(),
        });
        assert_eq!(
            stream_error(&blob, &tampered).to_string(),
            "digest mismatch for layer sha256:abc: Invalid digest. Expected sha256:abc, got sha256:def"
        );
        let reset =
            std::io::Error::other(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert_eq!(
            stream_error(&blob, &reset).to_string(),
            "registry (blob stream) failed on layer sha256:abc: connection reset"
        );
    }

    #[test]
    fn ingests_are_named_as_containerds_client_names_them() {
        let blob = BlobWrite {
            kind: "layer",
            digest: "sha256:abc",
            size: 3,
            labels: HashMap::new(),
        };
        assert_eq!(blob.reference(), "layer-sha256:abc");
    }

    #[test]
    fn a_session_resumes_where_the_ingest_is_unless_that_cannot_be_right() {
        assert_eq!(resume_offset(0, 100, false), 0);
        assert_eq!(resume_offset(40, 100, false), 40);
        // Every byte is there (a finished ingest, or a blob shared by another namespace).
        assert_eq!(resume_offset(100, 100, false), 100);
        // More than the blob, negative, or told to start over: from the start.
        assert_eq!(resume_offset(101, 100, false), 0);
        assert_eq!(resume_offset(-1, 100, false), 0);
        assert_eq!(resume_offset(40, 100, true), 0);
    }

    #[test]
    fn sent_bytes_count_from_the_resume_offset() {
        let answer = |offset| WriteContentResponse {
            offset,
            ..Default::default()
        };
        assert_eq!(committed_bytes(&answer(100), 0), 100);
        assert_eq!(committed_bytes(&answer(100), 40), 60);
        assert_eq!(committed_bytes(&answer(100), 100), 0);
    }

    #[test]
    fn a_held_ingest_is_told_from_other_unavailability() {
        let answer = |s: tonic::Status| ContainerdError::new(Op::ContentWrite, "sha256:abc", &s);
        assert!(is_locked(&answer(tonic::Status::unavailable(
            "ref berth/1/layer-sha256:abc locked for 1.2s (since 2024-01-01): unavailable"
        ))));
        assert!(!is_locked(&answer(tonic::Status::unavailable(
            "transport error"
        ))));
        assert!(!is_locked(&answer(tonic::Status::internal("locked"))));
    }

    #[test]
    fn a_refused_resume_is_written_again_and_a_refused_fresh_write_is_a_mismatch() {
        let blob = BlobWrite {
            kind: "layer",
            digest: "sha256:abc",
            size: 3,
            labels: HashMap::new(),
        };
        let refused = ContainerdError::new(
            Op::ContentWrite,
            "sha256:abc",
            &tonic::Status::failed_precondition(
                "unexpected commit digest sha256:x, expected sha256:abc: failed precondition",
            ),
        );
        assert!(matches!(
            commit_failure(&blob, refused.clone(), 2),
            Ok(Ended::BadResume { offset: 2, .. })
        ));
        assert!(matches!(
            commit_failure(&blob, refused, 0),
            Err(PullError::DigestMismatch { .. })
        ));
        let exists = ContainerdError::new(
            Op::ContentWrite,
            "sha256:abc",
            &tonic::Status::already_exists("content sha256:abc: already exists"),
        );
        assert!(matches!(
            commit_failure(&blob, exists, 0),
            Ok(Ended::Exists)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_held_ingest_is_waited_for_with_backoff_while_its_writer_progresses() {
        let t0 = Instant::now();
        let mut wait = LockWait::new(t0, 1000);
        // Without jitter the delays double from the first to the cap.
        let delays: Vec<Duration> = (0..8)
            .map(|_| wait.next(t0, Some(0), 1.0).unwrap())
            .collect();
        assert_eq!(delays[0], LOCK_RETRY_FIRST);
        assert_eq!(delays[1], LOCK_RETRY_FIRST * 2);
        assert!(delays.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(*delays.last().unwrap(), LOCK_RETRY_MAX);
        // Jitter takes a delay down to half, never more.
        let mut jittered = LockWait::new(t0, 1000);
        assert_eq!(jittered.next(t0, None, 0.0), Some(LOCK_RETRY_FIRST / 2));

        // The holder's progress restarts the clock and the backoff; its stall ends the wait.
        tokio::time::advance(LOCK_STALL - Duration::from_secs(1)).await;
        let t1 = Instant::now();
        assert_eq!(wait.next(t1, Some(500), 1.0), Some(LOCK_RETRY_FIRST));
        tokio::time::advance(LOCK_STALL - Duration::from_secs(1)).await;
        let t2 = Instant::now();
        // Not past the stall: the delay never runs beyond it.
        assert_eq!(
            wait.next(t2, Some(500), 1.0),
            Some(LOCK_RETRY_FIRST * 2).map(|d| d.min(Duration::from_secs(1)))
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(wait.next(Instant::now(), Some(500), 1.0), None);
    }

    #[tokio::test(start_paused = true)]
    async fn an_ingest_that_shrinks_or_overflows_is_no_progress() {
        let t0 = Instant::now();
        let mut wait = LockWait::new(t0, 100);
        assert!(wait.next(t0, Some(100), 1.0).is_some());
        tokio::time::advance(LOCK_STALL / 2).await;
        // Truncated and written again, or past the blob's size: not nearer to a commit.
        assert!(wait.next(Instant::now(), Some(10), 1.0).is_some());
        assert!(wait.next(Instant::now(), Some(5000), 1.0).is_some());
        tokio::time::advance(LOCK_STALL / 2).await;
        assert_eq!(wait.next(Instant::now(), Some(100), 1.0), None);
    }
}
