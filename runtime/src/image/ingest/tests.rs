//! The blob write against the fake containerd: resumes, lock waits, refused and cut-off content.

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
    let mut open = |_offset: u64| -> BoxFuture<'static, Result<ByteStream<'static>, PullError>> {
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
    let reset = std::io::Error::other(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
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
