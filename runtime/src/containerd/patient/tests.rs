//! [`Patient`] on paused time over the recording fake: what it makes again through containerd
//! restarting, for how long, and what it leaves to its caller.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::time::Instant;
use tonic::Code;

use super::{PATIENCE, Patient};
use crate::containerd::fake::FakeContainerd;
use crate::containerd::{
    ContainerRecord, Containerd, ContainerdError, ContainersService, ContentService, LeasesService,
    Op, SnapshotsService,
};

/// What tonic says of a call made while containerd's socket is gone (it restarts).
const GONE: &str = "No such file or directory (os error 2)";
/// What it says of a call made while nobody listens on the socket yet.
const REFUSED: &str = "Connection refused (os error 111)";
/// What it says of a call whose connection broke before the answer came.
const LOST: &str = "transport error";
/// containerd's overlayfs after a crash reused a snapshot ID.
const STALE_ID: &str = "failed to create snapshot: failed to rename: rename /var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/new-123 /var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/7: file exists: unknown";

fn patient() -> (Arc<FakeContainerd>, Patient) {
    let fake = FakeContainerd::new();
    let inner: Arc<dyn Containerd> = fake.clone();
    (fake, Patient::new(inner))
}

fn record(id: &str) -> ContainerRecord {
    ContainerRecord {
        id: id.to_owned(),
        ..ContainerRecord::default()
    }
}

fn error(op: Op, code: Code, message: &str) -> ContainerdError {
    ContainerdError::new(op, "x", &tonic::Status::new(code, message))
}

#[test]
fn an_unreached_containerd_a_lost_answer_and_containerds_own_refusals_are_told_apart() {
    assert!(error(Op::TaskGet, Code::Unavailable, GONE).is_unreached());
    assert!(error(Op::TaskGet, Code::Unavailable, REFUSED).is_unreached());
    let locked = error(
        Op::ContentStatus,
        Code::Unavailable,
        "ref default/1/x locked for 2s: unavailable",
    );
    assert!(!locked.is_unreached() && !locked.is_answer_lost());
    assert!(error(Op::TaskGet, Code::Unknown, LOST).is_answer_lost());
    assert!(!error(Op::TaskGet, Code::Unknown, LOST).is_unreached());
    assert!(!error(Op::TaskCreate, Code::Internal, "runc: exec format error").is_answer_lost());
    assert!(error(Op::SnapshotPrepare, Code::Unknown, STALE_ID).is_stale_snapshot_id());
    assert!(!error(Op::SnapshotCommit, Code::Unknown, STALE_ID).is_stale_snapshot_id());
}

#[tokio::test(start_paused = true)]
async fn a_call_that_never_reached_containerd_waits_for_it_and_is_made_again() {
    let (fake, patient) = patient();
    for nth in 1..=3 {
        fake.fail_nth(Op::LeaseCreate, nth, Code::Unavailable, GONE);
        fake.fail_nth(Op::ContainerCreate, nth, Code::Unavailable, REFUSED);
    }
    let t0 = Instant::now();
    patient.lease_create("l", HashMap::new()).await.unwrap();
    // Three waits of at most 0.1, 0.2 and 0.4 s.
    assert!(
        t0.elapsed() <= std::time::Duration::from_millis(700),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(fake.leases(), ["l"]);
    // A create too: containerd never saw the failed tries.
    patient.container_create(record("c")).await.unwrap();
    assert_eq!(fake.calls_of(&[Op::ContainerCreate]).len(), 4);
    assert_eq!(fake.containers().into_keys().collect::<Vec<_>>(), ["c"]);
}

#[tokio::test(start_paused = true)]
async fn containerd_away_past_the_patience_fails_the_call_with_its_error() {
    let (fake, patient) = patient();
    fake.fail(Op::ContainerGet, Code::Unavailable, REFUSED);
    let t0 = Instant::now();
    let err = patient.container_get("c").await.unwrap_err();
    assert_eq!(t0.elapsed(), PATIENCE);
    assert!(err.is_unreached(), "{err}");
    // Backoff: the waits grow to 2 s, so a minute is a few dozen tries, not hundreds.
    let tries = fake.calls_of(&[Op::ContainerGet]).len();
    assert!((30..=80).contains(&tries), "{tries}");
}

#[tokio::test(start_paused = true)]
async fn a_lost_answer_is_asked_again_only_of_calls_safe_to_repeat() {
    let (fake, patient) = patient();
    // A lease create whose answer was lost made the lease: AlreadyExists on the second try is
    // that create's own.
    fake.lose_answer_nth(Op::LeaseCreate, 1, Code::Unknown, LOST);
    patient.lease_create("l", HashMap::new()).await.unwrap();
    assert_eq!(fake.calls_of(&[Op::LeaseCreate]).len(), 2);
    assert_eq!(fake.leases(), ["l"]);
    // A read is asked again.
    fake.fail_nth(Op::ContentInfo, 1, Code::Unknown, LOST);
    let missing = patient.content_info("sha256:0").await.unwrap_err();
    assert!(missing.is_not_found(), "{missing}");
    assert_eq!(fake.calls_of(&[Op::ContentInfo]).len(), 2);
    // A delete is, and NotFound then is the lost delete's doing.
    fake.lose_answer_nth(Op::LeaseDelete, 1, Code::Unknown, LOST);
    patient.lease_delete("l", true).await.unwrap();
    assert!(fake.leases().is_empty());
    assert_eq!(fake.calls_of(&[Op::LeaseDelete]).len(), 2);
    // A container create is not: whether it took effect is its caller's to find out.
    fake.lose_answer_nth(Op::ContainerCreate, 1, Code::Unknown, LOST);
    let lost = patient.container_create(record("c")).await.unwrap_err();
    assert!(lost.is_answer_lost(), "{lost}");
    assert_eq!(fake.calls_of(&[Op::ContainerCreate]).len(), 1);
}

#[tokio::test(start_paused = true)]
async fn containerds_own_refusals_are_answers() {
    let (fake, patient) = patient();
    fake.fail(
        Op::ContentStatus,
        Code::Unavailable,
        "ref default/1/x locked for 2s: unavailable",
    );
    let t0 = Instant::now();
    let locked = patient.content_status("x").await.unwrap_err();
    assert_eq!(locked.code(), Code::Unavailable);
    assert!(
        patient
            .container_get("none")
            .await
            .unwrap_err()
            .is_not_found()
    );
    // A lease create refused as AlreadyExists with no answer lost is someone else's lease.
    fake.lease_create("taken", HashMap::new()).await.unwrap();
    let taken = patient
        .lease_create("taken", HashMap::new())
        .await
        .unwrap_err();
    assert!(taken.is_already_exists(), "{taken}");
    assert_eq!(t0.elapsed(), std::time::Duration::ZERO);
    assert_eq!(
        fake.calls_of(&[Op::ContentStatus, Op::ContainerGet]).len(),
        2
    );
}

#[tokio::test(start_paused = true)]
async fn a_prepare_refused_for_a_reused_snapshot_id_is_made_again() {
    let (fake, patient) = patient();
    fake.fail_nth(Op::SnapshotPrepare, 1, Code::Unknown, STALE_ID);
    patient
        .snapshot_prepare(None, "k", "", HashMap::new())
        .await
        .unwrap();
    assert_eq!(fake.calls_of(&[Op::SnapshotPrepare]).len(), 2);
    assert_eq!(fake.snapshots().into_keys().collect::<Vec<_>>(), ["k"]);
    // A snapshotter that keeps refusing is given up on after a few tries.
    fake.fail(Op::SnapshotPrepare, Code::Unknown, STALE_ID);
    let err = patient
        .snapshot_prepare(None, "j", "", HashMap::new())
        .await
        .unwrap_err();
    assert!(err.is_stale_snapshot_id(), "{err}");
    assert_eq!(fake.calls_of(&[Op::SnapshotPrepare]).len(), 2 + 4);
    assert_eq!(fake.snapshots().into_keys().collect::<Vec<_>>(), ["k"]);
}
