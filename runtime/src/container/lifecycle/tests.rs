//! The lifecycle against a fake containerd, without root: what create, start and delete ask
//! containerd for, and what each leaves behind when a step fails.

use std::path::Path;
use std::sync::Arc;

use tempfile::TempDir;
use tonic::Code;

use super::*;
use crate::cgroup::CgroupLayout;
use crate::containerd::fake::FakeContainerd;
use crate::containerd::{ContainerdError, Op};
use crate::image::fixture::TestImage;
use crate::model::{ContainerSpec, HostEntry, Ulimit};

const IMAGE: &str = "127.0.0.1:5000/app:1";
const ID: &str = "t1.web";

/// A host whose containerd is the fake, with an image pulled.
struct Host {
    fake: Arc<FakeContainerd>,
    containers: Containers,
    image: TestImage,
    dir: TempDir,
}

impl Host {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let fake = FakeContainerd::new();
        let image = TestImage::new(&["base layer"]);
        image.install(&fake, IMAGE);
        let layout = CgroupLayout::v2(dir.path().join("cgroup"));
        let cgroups = Arc::new(Cgroups::new(layout, "berth").expect("cgroups"));
        let containers = Containers::new(
            fake.clone(),
            cgroups,
            dir.path().join("state"),
            dir.path().join("logs"),
            LogRotation::default(),
            dir.path().join("tini"),
        );
        Self {
            fake,
            containers,
            image,
            dir,
        }
    }

    fn io_dir(&self) -> PathBuf {
        self.dir.path().join("state/io").join(ID)
    }

    fn etc_dir(&self) -> PathBuf {
        self.dir.path().join("state/io").join(format!("{ID}.etc"))
    }

    /// The calls from the first of `op` on.
    fn calls_from(&self, op: Op) -> Vec<String> {
        let calls = self.fake.calls();
        let first = calls
            .iter()
            .position(|c| c.starts_with(op.label()))
            .unwrap_or(calls.len());
        calls[first..].to_vec()
    }

    /// Whether the container's own snapshot exists.
    fn has_snapshot(&self) -> bool {
        self.fake.snapshots().contains_key(ID)
    }
}

/// A container whose user is numeric, uid and gid: the only user that needs no look into the
/// image's /etc/passwd, which only root can mount.
fn web() -> ContainerSpec {
    ContainerSpec {
        task_id: "t1".to_owned(),
        name: "web".to_owned(),
        image: IMAGE.to_owned(),
        command: Some(vec!["true".to_owned()]),
        user: Some("1000:1000".to_owned()),
        ..ContainerSpec::default()
    }
}

/// `web` with its own /etc/hosts, which create writes on the host.
fn web_with_hosts() -> ContainerSpec {
    ContainerSpec {
        extra_hosts: vec![HostEntry {
            hostname: "db".to_owned(),
            ip_address: "10.0.0.7".to_owned(),
        }],
        ..web()
    }
}

fn containerd_code(error: &Error) -> Option<Code> {
    match error {
        Error::Containerd(e) => Some(ContainerdError::code(e)),
        _ => None,
    }
}

#[tokio::test]
async fn create_makes_the_snapshot_then_the_record_as_docker_create_does() {
    let host = Host::new();
    let id = host.containers.create(&web_with_hosts()).await.unwrap();
    assert_eq!(id.as_str(), ID);
    let image = &host.image;
    assert_eq!(
        host.fake.calls(),
        [
            format!("image get {IMAGE}"),
            format!("content read {}", image.manifest_digest),
            format!("content read {}", image.config_digest),
            format!("snapshot prepare {ID}"),
            format!("container create {ID}"),
        ]
    );
    // The snapshot is a collector root named by its task until the record references it.
    let labels = host.fake.snapshot_labels(ID).unwrap();
    assert!(labels.contains_key("containerd.io/gc.root"));
    assert_eq!(labels[LABEL_TASK_ID], "t1");
    assert_eq!(labels[LABEL_CONTAINER_NAME], "web");
    assert!(!host.fake.snapshots()[ID], "the snapshot is active");

    let record = &host.fake.containers()[ID];
    assert_eq!(
        (record.image.as_str(), record.snapshot_key.as_str()),
        (IMAGE, ID)
    );
    assert_eq!(record.labels[LABEL_TASK_ID], "t1");
    let oci: serde_json::Value = serde_json::from_slice(&record.spec).unwrap();
    assert_eq!(oci["process"]["args"], serde_json::json!(["true"]));
    assert!(host.etc_dir().join("hosts").is_file());
    assert!(LogRotation::load(&host.io_dir()).is_some());
    // As with `docker create`, the process comes with the start.
    assert!(host.fake.tasks().is_empty());
}

#[tokio::test]
async fn a_spec_that_cannot_be_built_is_refused_before_containerd_makes_anything() {
    let host = Host::new();
    let bad = ContainerSpec {
        ulimits: vec![Ulimit {
            name: "no-such-limit".to_owned(),
            soft: 1,
            hard: 1,
        }],
        ..web()
    };
    let err = host.containers.create(&bad).await.unwrap_err();
    assert!(matches!(err, Error::Spec(_)), "{err}");
    assert!(host.calls_from(Op::SnapshotPrepare).is_empty());
}

#[tokio::test]
async fn a_refused_snapshot_makes_no_record() {
    let host = Host::new();
    host.fake.fail(
        Op::SnapshotPrepare,
        Code::ResourceExhausted,
        "no space left",
    );
    let err = host.containers.create(&web_with_hosts()).await.unwrap_err();
    assert_eq!(
        containerd_code(&err),
        Some(Code::ResourceExhausted),
        "{err}"
    );
    assert_eq!(
        host.calls_from(Op::SnapshotPrepare),
        [format!("snapshot prepare {ID}")]
    );
    assert!(!host.has_snapshot() && host.fake.containers().is_empty());
    assert!(!host.etc_dir().exists());
}

#[tokio::test]
async fn a_refused_record_removes_the_snapshot_and_the_etc_files() {
    let host = Host::new();
    host.fake
        .fail(Op::ContainerCreate, Code::AlreadyExists, "container exists");
    let err = host.containers.create(&web_with_hosts()).await.unwrap_err();
    assert_eq!(containerd_code(&err), Some(Code::AlreadyExists), "{err}");
    assert_eq!(
        host.calls_from(Op::SnapshotPrepare),
        [
            format!("snapshot prepare {ID}"),
            format!("container create {ID}"),
            format!("snapshot remove {ID}"),
        ]
    );
    assert!(!host.has_snapshot());
    assert!(!host.etc_dir().exists() && !host.io_dir().exists());
}

#[tokio::test]
async fn a_container_an_earlier_run_created_is_started_from_what_containerd_says() {
    let host = Host::new();
    let id = host.containers.create(&web()).await.unwrap();
    // What a new agent process knows of it: nothing but containerd's records.
    host.containers.fresh_lock().clear();
    host.containers.start(&id).await.unwrap();
    assert_eq!(
        host.calls_from(Op::TaskGet),
        [
            format!("task get {ID}"),
            format!("container get {ID}"),
            format!("snapshot mounts {ID}"),
            format!("task create {ID}"),
            format!("task start {ID}"),
        ]
    );
    assert!(is_fifo(&host.io_dir().join("stdout")));
}

#[tokio::test]
async fn an_image_that_was_never_pulled_is_named() {
    let host = Host::new();
    let other = ContainerSpec {
        image: "127.0.0.1:5000/other:1".to_owned(),
        ..web()
    };
    let err = host.containers.create(&other).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "image 127.0.0.1:5000/other:1 is not in containerd namespace berth; pull it first"
    );
    assert!(host.calls_from(Op::SnapshotPrepare).is_empty());
}

#[tokio::test]
async fn start_makes_the_task_with_its_fifos_then_starts_it() {
    let host = Host::new();
    let id = host.containers.create(&web()).await.unwrap();
    let pid = host.containers.start(&id).await.unwrap();
    assert!(pid > 0);
    // Created by this process: nothing asked of containerd again (no task get, container get
    // or snapshot mounts).
    assert_eq!(
        host.calls_from(Op::TaskCreate),
        [format!("task create {ID}"), format!("task start {ID}")]
    );
    assert_eq!(host.fake.tasks()[ID], TaskStatus::Running);
    assert!(is_fifo(&host.io_dir().join("stdout")));
    assert!(is_fifo(&host.io_dir().join("stderr")));
}

fn is_fifo(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_fifo())
}

#[tokio::test]
async fn a_refused_task_fails_the_start_and_removes_its_fifos() {
    let host = Host::new();
    let spec = ContainerSpec {
        log_rotation: Some(LogRotation {
            max_size: 4096,
            max_files: 2,
        }),
        ..web()
    };
    let id = host.containers.create(&spec).await.unwrap();
    host.fake
        .fail(Op::TaskCreate, Code::Internal, "runc: exec format error");
    let err = host.containers.start(&id).await.unwrap_err();
    assert_eq!(containerd_code(&err), Some(Code::Internal), "{err}");
    assert!(host.calls_from(Op::TaskStart).is_empty());
    assert!(host.fake.tasks().is_empty());
    assert!(!host.io_dir().join("stdout").exists());
    // The container's own rotation stays for its next start.
    assert_eq!(LogRotation::load(&host.io_dir()), spec.log_rotation);
}

#[tokio::test]
async fn a_snapshot_an_interrupted_create_left_is_made_again() {
    let host = Host::new();
    host.fake.fail_nth(
        Op::SnapshotPrepare,
        1,
        Code::AlreadyExists,
        &format!("snapshot {ID}: already exists"),
    );
    let id = host.containers.create(&web_with_hosts()).await.unwrap();
    let calls = host.fake.calls();
    let count = |op: Op| calls.iter().filter(|c| c.starts_with(op.label())).count();
    assert_eq!(count(Op::SnapshotRemove), 1, "{calls:?}");
    assert_eq!(count(Op::SnapshotPrepare), 2, "{calls:?}");
    assert!(host.has_snapshot() && host.fake.containers().len() == 1);
    host.containers.start(&id).await.unwrap();
}

#[tokio::test]
async fn delete_takes_task_record_snapshot_and_fifos_and_a_missing_one_is_gone() {
    let host = Host::new();
    let id = host.containers.create(&web_with_hosts()).await.unwrap();
    // Never started: containerd has no task for it, which delete takes as gone.
    host.containers.delete(&id).await.unwrap();
    assert_eq!(
        host.calls_from(Op::TaskDelete),
        [
            format!("task delete {ID}"),
            format!("container delete {ID}"),
            format!("snapshot remove {ID}"),
        ]
    );
    assert!(host.fake.containers().is_empty() && !host.has_snapshot());
    assert!(!host.io_dir().exists() && !host.etc_dir().exists());
    // Idempotent: everything NotFound is fine.
    host.containers.delete(&id).await.unwrap();
}

#[tokio::test]
async fn a_task_that_cannot_be_deleted_keeps_its_record_and_snapshot() {
    let host = Host::new();
    let id = host.containers.create(&web()).await.unwrap();
    host.containers.start(&id).await.unwrap();
    // containerd refuses to delete the task of a running container.
    let err = host.containers.delete(&id).await.unwrap_err();
    assert_eq!(
        containerd_code(&err),
        Some(Code::FailedPrecondition),
        "{err}"
    );
    assert!(host.calls_from(Op::ContainerDelete).is_empty());
    assert!(host.fake.containers().contains_key(ID) && host.has_snapshot());
    assert!(host.io_dir().join("stdout").exists());

    // Once it exited, it goes.
    host.fake.exit(ID, 0);
    assert_eq!(host.containers.wait(&id).await.unwrap().code, 0);
    host.containers.delete(&id).await.unwrap();
    assert!(host.fake.containers().is_empty() && !host.has_snapshot());
}

#[tokio::test]
async fn list_says_which_containers_were_started_once() {
    let host = Host::new();
    let id = host.containers.create(&web()).await.unwrap();
    assert_eq!(listed(&host).await, (ContainerStatus::NoTask, false, None));
    host.containers.start(&id).await.unwrap();
    assert_eq!(listed(&host).await, (ContainerStatus::Running, true, None));
    host.fake.exit(ID, 3);
    assert_eq!(
        listed(&host).await,
        (ContainerStatus::Stopped, true, Some(3)),
        "containerd keeps the exit"
    );
    // Its shim is killed: the task and its exit are gone, and the marker tells a container
    // that ran from one that never started.
    host.fake.lose_task(ID);
    assert_eq!(listed(&host).await, (ContainerStatus::NoTask, true, None));
    host.containers.delete(&id).await.unwrap();
    assert!(host.containers.list().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_refused_start_marks_the_container_started_before_containerd_is_asked() {
    let host = Host::new();
    let id = host.containers.create(&web()).await.unwrap();
    host.fake.fail(Op::TaskStart, Code::Internal, "shim died");
    assert!(host.containers.start(&id).await.is_err());
    // containerd may have started it before it failed to answer: never started again blind.
    assert!(host.containers.list().await.unwrap()[0].started);
}

/// The one container's status, started marker and exit code, as list finds them.
async fn listed(host: &Host) -> (ContainerStatus, bool, Option<u32>) {
    let all = host.containers.list().await.unwrap();
    assert_eq!(all.len(), 1);
    (all[0].status, all[0].started, all[0].exit_code)
}

/// What tonic reports for a call in flight when containerd restarts.
const LOST: &str = "transport error: connection reset by peer";

fn count(host: &Host, op: Op) -> usize {
    host.fake.calls_of(&[op]).len()
}

#[tokio::test(start_paused = true)]
async fn a_start_whose_answer_was_lost_but_took_effect_is_not_started_again() {
    let host = Host::new();
    let id = host.containers.create(&web()).await.unwrap();
    host.fake
        .lose_answer_nth(Op::TaskStart, 1, Code::Unavailable, LOST);
    // containerd is still away for the first two looks.
    host.fake.fail_nth(Op::TaskGet, 1, Code::Unavailable, LOST);
    host.fake.fail_nth(Op::TaskGet, 2, Code::Unknown, LOST);
    let pid = host.containers.start(&id).await.unwrap();
    assert!(pid > 0);
    assert_eq!(count(&host, Op::TaskStart), 1, "{:?}", host.fake.calls());
    assert_eq!(count(&host, Op::TaskGet), 3, "{:?}", host.fake.calls());
    assert_eq!(host.fake.tasks()[ID], TaskStatus::Running);
}

#[tokio::test(start_paused = true)]
async fn a_start_lost_before_it_took_effect_starts_the_still_created_task() {
    let host = Host::new();
    let id = host.containers.create(&web()).await.unwrap();
    host.fake
        .fail_nth(Op::TaskStart, 1, Code::Unavailable, LOST);
    host.fake.fail_nth(Op::TaskGet, 1, Code::Unavailable, LOST);
    let pid = host.containers.start(&id).await.unwrap();
    assert!(pid > 0);
    assert_eq!(count(&host, Op::TaskStart), 2, "{:?}", host.fake.calls());
    assert_eq!(host.fake.tasks()[ID], TaskStatus::Running);
}

#[tokio::test(start_paused = true)]
async fn a_start_lost_with_its_task_gone_is_not_found() {
    let host = Host::new();
    let id = host.containers.create(&web()).await.unwrap();
    host.fake
        .fail_nth(Op::TaskStart, 1, Code::Unavailable, LOST);
    // containerd comes back without the task (its shim went away meanwhile).
    host.fake
        .fail_nth(Op::TaskGet, 1, Code::NotFound, "t1.web: not found");
    let err = host.containers.start(&id).await.unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
    assert_eq!(count(&host, Op::TaskStart), 1);
}

#[tokio::test(start_paused = true)]
async fn a_start_fails_when_containerd_stays_away_past_the_deadline() {
    let host = Host::new();
    let id = host.containers.create(&web()).await.unwrap();
    host.fake.fail(Op::TaskStart, Code::Unavailable, LOST);
    // No look after the lost start is answered.
    for nth in 1..1000 {
        host.fake
            .fail_nth(Op::TaskGet, nth, Code::Unavailable, LOST);
    }
    let began = tokio::time::Instant::now();
    let err = host.containers.start(&id).await.unwrap_err();
    assert_eq!(containerd_code(&err), Some(Code::Unavailable), "{err}");
    assert!(began.elapsed() >= outage::OUTAGE_DEADLINE);
    assert!(began.elapsed() < outage::OUTAGE_DEADLINE * 2);
    assert_eq!(count(&host, Op::TaskStart), 1);
}

#[tokio::test(start_paused = true)]
async fn a_task_create_whose_answer_was_lost_but_took_effect_is_adopted() {
    let host = Host::new();
    let id = host.containers.create(&web()).await.unwrap();
    host.fake
        .lose_answer_nth(Op::TaskCreate, 1, Code::Unavailable, LOST);
    host.fake.fail_nth(Op::TaskGet, 1, Code::Unavailable, LOST);
    host.containers.start(&id).await.unwrap();
    assert_eq!(count(&host, Op::TaskCreate), 1, "{:?}", host.fake.calls());
    assert_eq!(count(&host, Op::TaskStart), 1, "{:?}", host.fake.calls());
    assert!(is_fifo(&host.io_dir().join("stdout")), "its FIFOs stay");
}

/// containerd away for `polls` looks from the `first` task get on (each look is an
/// [`outage::OUTAGE_POLL`] apart), then answering that the task is not there.
fn away_then_absent(host: &Host, first: usize, polls: usize) -> usize {
    for nth in first..first + polls {
        host.fake
            .fail_nth(Op::TaskGet, nth, Code::Unavailable, LOST);
    }
    host.fake.fail_nth(
        Op::TaskGet,
        first + polls,
        Code::NotFound,
        "t1.web: not found",
    );
    first + polls + 1
}

#[tokio::test(start_paused = true)]
async fn a_task_create_is_carried_through_restarts_that_together_outlast_one_deadline() {
    let host = Host::new();
    let id = host.containers.create(&web()).await.unwrap();
    // Four creates lost to four restarts, containerd away 20 s each time: 80 s in all, each
    // outage well within its own deadline.
    let away =
        usize::try_from(Duration::from_secs(20).as_millis() / outage::OUTAGE_POLL.as_millis())
            .unwrap();
    let mut next_get = 1;
    for nth in 1..=4 {
        host.fake.fail_nth(Op::TaskCreate, nth, Code::Unknown, LOST);
        next_get = away_then_absent(&host, next_get, away);
    }
    let began = tokio::time::Instant::now();
    host.containers.start(&id).await.unwrap();
    assert!(
        began.elapsed() > outage::OUTAGE_DEADLINE,
        "{:?}",
        began.elapsed()
    );
    assert_eq!(count(&host, Op::TaskCreate), 5, "{:?}", host.fake.calls());
    assert_eq!(host.fake.tasks()[ID], TaskStatus::Running);
}

#[tokio::test(start_paused = true)]
async fn a_task_create_is_not_carried_through_restarts_without_end() {
    let host = Host::new();
    let id = host.containers.create(&web()).await.unwrap();
    host.fake.fail(Op::TaskCreate, Code::Unknown, LOST);
    let mut next_get = 1;
    for _ in 0..=outage::OUTAGES_PER_CALL {
        next_get = away_then_absent(&host, next_get, 1);
    }
    let err = host.containers.start(&id).await.unwrap_err();
    assert_eq!(containerd_code(&err), Some(Code::Unknown), "{err}");
    let creates = u32::try_from(count(&host, Op::TaskCreate)).unwrap();
    assert_eq!(
        creates,
        outage::OUTAGES_PER_CALL + 1,
        "{:?}",
        host.fake.calls()
    );
}

#[tokio::test(start_paused = true)]
async fn an_empty_task_left_by_an_earlier_create_is_replaced_through_a_restart() {
    let host = Host::new();
    let id = host.containers.create(&web()).await.unwrap();
    // An earlier create left containerd a task whose shim holds no container.
    host.fake.fail_nth(
        Op::TaskCreate,
        1,
        Code::AlreadyExists,
        "task t1.web: already exists",
    );
    host.fake
        .fail_nth(Op::TaskGet, 1, Code::NotFound, "t1.web: not found");
    // containerd restarts under the create that replaces it.
    host.fake.fail_nth(Op::TaskCreate, 2, Code::Unknown, LOST);
    host.fake.fail_nth(Op::TaskGet, 2, Code::Unavailable, LOST);
    let pid = host.containers.start(&id).await.unwrap();
    assert!(pid > 0);
    assert_eq!(count(&host, Op::TaskCreate), 3, "{:?}", host.fake.calls());
    assert_eq!(host.fake.tasks()[ID], TaskStatus::Running);
}

const DEAD: &str = "OCI runtime start failed: container process is already dead: unknown";

#[tokio::test(start_paused = true)]
async fn a_task_whose_process_died_before_its_start_is_made_again_once() {
    let host = Host::new();
    let id = host.containers.create(&web()).await.unwrap();
    host.fake.fail_nth(Op::TaskStart, 1, Code::Unknown, DEAD);
    let pid = host.containers.start(&id).await.unwrap();
    assert!(pid > 0);
    assert_eq!(count(&host, Op::TaskCreate), 2, "{:?}", host.fake.calls());
    assert_eq!(count(&host, Op::TaskStart), 2, "{:?}", host.fake.calls());
    assert_eq!(host.fake.tasks()[ID], TaskStatus::Running);

    let again = ContainerSpec {
        name: "again".to_owned(),
        ..web()
    };
    let other = host.containers.create(&again).await.unwrap();
    host.fake.fail(Op::TaskStart, Code::Unknown, DEAD);
    let err = host.containers.start(&other).await.unwrap_err();
    assert_eq!(containerd_code(&err), Some(Code::Unknown), "{err}");
    assert_eq!(count(&host, Op::TaskStart), 4, "{:?}", host.fake.calls());
}

#[tokio::test(start_paused = true)]
async fn a_task_create_lost_before_it_took_effect_is_made_again() {
    let host = Host::new();
    let id = host.containers.create(&web()).await.unwrap();
    host.fake
        .fail_nth(Op::TaskCreate, 1, Code::Unavailable, LOST);
    host.containers.start(&id).await.unwrap();
    assert_eq!(count(&host, Op::TaskCreate), 2, "{:?}", host.fake.calls());
    assert_eq!(count(&host, Op::TaskStart), 1, "{:?}", host.fake.calls());
    assert_eq!(host.fake.tasks()[ID], TaskStatus::Running);
}

#[test]
fn only_an_unanswered_call_is_transient() {
    let e =
        |code, message| ContainerdError::new(Op::TaskStart, ID, &tonic::Status::new(code, message));
    assert!(e(Code::Unavailable, "connection refused").is_transient());
    assert!(e(Code::Unknown, LOST).is_transient());
    assert!(e(Code::Cancelled, "operation was canceled").is_transient());
    assert!(!e(Code::Unknown, "runc: exec format error").is_transient());
    assert!(!e(Code::NotFound, "connection not found").is_transient());
    assert!(!e(Code::FailedPrecondition, "already started").is_transient());
}

/// containerd's refusal of a create for the bundle an interrupted create left at `bundle`.
fn leftover_refusal(bundle: &Path) -> String {
    format!(
        "failed to start shim: mkdir {}: file exists",
        bundle.display()
    )
}

/// A leftover bundle of the container under the host's directory, as containerd lays it out.
fn leftover_bundle(host: &Host) -> PathBuf {
    let bundle = host.dir.path().join("containerd-state/berth").join(ID);
    std::fs::create_dir_all(bundle.join("rootfs")).unwrap();
    bundle
}

#[tokio::test(start_paused = true)]
async fn a_task_the_interrupted_create_made_after_all_is_taken() {
    let host = Host::new();
    let id = host.containers.create(&web()).await.unwrap();
    let bundle = leftover_bundle(&host);
    // The create is refused, but the one in flight before it makes the task meanwhile.
    host.fake
        .lose_answer_nth(Op::TaskCreate, 1, Code::Unknown, &leftover_refusal(&bundle));
    host.containers.start(&id).await.unwrap();
    assert_eq!(count(&host, Op::TaskCreate), 1, "{:?}", host.fake.calls());
    assert_eq!(count(&host, Op::TaskStart), 1, "{:?}", host.fake.calls());
    assert!(is_fifo(&host.io_dir().join("stdout")), "its FIFOs stay");
    assert!(bundle.exists(), "a bundle with a task is containerd's");
}

#[tokio::test(start_paused = true)]
async fn a_leftover_bundle_containerd_removes_within_the_grace_is_waited_for() {
    let host = Host::new();
    let id = host.containers.create(&web()).await.unwrap();
    let bundle = leftover_bundle(&host);
    host.fake
        .fail_nth(Op::TaskCreate, 1, Code::Unknown, &leftover_refusal(&bundle));
    let cleanup = {
        let bundle = bundle.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            std::fs::remove_dir_all(&bundle).unwrap();
        })
    };
    let began = tokio::time::Instant::now();
    host.containers.start(&id).await.unwrap();
    cleanup.await.unwrap();
    assert!(began.elapsed() >= Duration::from_secs(3));
    assert!(began.elapsed() < LEFTOVER_GRACE);
    assert_eq!(count(&host, Op::TaskCreate), 2, "{:?}", host.fake.calls());
    assert_eq!(count(&host, Op::TaskStart), 1, "{:?}", host.fake.calls());
    assert_eq!(host.fake.tasks()[ID], TaskStatus::Running);
}

#[tokio::test]
async fn a_leftover_bundle_still_there_after_the_grace_is_removed() {
    let host = Host::new();
    let id = host.containers.create(&web()).await.unwrap();
    let bundle = leftover_bundle(&host);
    let work = host.dir.path().join("containerd-root/berth").join(ID);
    std::fs::create_dir_all(&work).unwrap();
    std::os::unix::fs::symlink(&work, bundle.join("work")).unwrap();
    // The shim's runc state in a root of the test's own.
    let runc_root = host.dir.path().join("runc");
    let options = serde_json::json!({ "root": runc_root });
    std::fs::write(bundle.join("options.json"), options.to_string()).unwrap();
    host.fake
        .fail_nth(Op::TaskCreate, 1, Code::Unknown, &leftover_refusal(&bundle));
    tokio::time::pause();
    let started = tokio::spawn(async move {
        let pid = host.containers.start(&id).await;
        (host, pid)
    });
    // The grace passes on paused time; the removal (runc, the file system) runs on real time.
    for _ in 0..=LEFTOVER_GRACE.as_secs() {
        tokio::time::advance(Duration::from_secs(1)).await;
    }
    tokio::time::resume();
    let (host, pid) = started.await.unwrap();
    pid.unwrap();
    assert!(!bundle.exists());
    assert!(!work.exists());
    assert_eq!(count(&host, Op::TaskCreate), 2, "{:?}", host.fake.calls());
    assert_eq!(host.fake.tasks()[ID], TaskStatus::Running);
}

#[tokio::test(start_paused = true)]
async fn a_task_that_exists_already_is_taken_not_created_again() {
    let host = Host::new();
    let id = host.containers.create(&web()).await.unwrap();
    // An earlier create made the task; the start's create finds it there.
    host.containers.create_task_of(&id).await.unwrap();
    host.containers.start(&id).await.unwrap();
    assert_eq!(count(&host, Op::TaskCreate), 2, "{:?}", host.fake.calls());
    assert_eq!(count(&host, Op::TaskStart), 1, "{:?}", host.fake.calls());
    assert!(is_fifo(&host.io_dir().join("stdout")));
}

#[tokio::test(start_paused = true)]
async fn a_create_goes_on_through_a_containerd_restart() {
    let host = Host::new();
    host.fake.fail_nth(Op::ImageGet, 1, Code::Unavailable, LOST);
    host.fake
        .fail_nth(Op::SnapshotPrepare, 1, Code::Unavailable, LOST);
    host.fake
        .fail_nth(Op::SnapshotPrepare, 2, Code::Unknown, LOST);
    host.fake
        .lose_answer_nth(Op::ContainerCreate, 1, Code::Unknown, LOST);
    let id = host.containers.create(&web()).await.unwrap();
    assert_eq!(id.as_str(), ID);
    assert!(host.has_snapshot());
    assert!(host.fake.containers().contains_key(ID));
    assert_eq!(count(&host, Op::ContainerCreate), 2);
}

#[tokio::test(start_paused = true)]
async fn a_task_left_without_its_container_is_replaced() {
    let host = Host::new();
    let id = host.containers.create(&web()).await.unwrap();
    host.containers.create_task_of(&id).await.unwrap();
    // containerd lists the task, but its shim has no container: a get says NotFound.
    host.fake
        .fail_nth(Op::TaskGet, 1, Code::NotFound, "container must be created");
    host.containers.start(&id).await.unwrap();
    assert_eq!(count(&host, Op::TaskDelete), 1, "{:?}", host.fake.calls());
    assert_eq!(count(&host, Op::TaskCreate), 3, "{:?}", host.fake.calls());
    assert_eq!(count(&host, Op::TaskStart), 1, "{:?}", host.fake.calls());
    assert_eq!(host.fake.tasks()[ID], TaskStatus::Running);
}

#[tokio::test(start_paused = true)]
async fn a_task_create_lost_twice_is_made_once_containerd_stays() {
    let host = Host::new();
    let id = host.containers.create(&web()).await.unwrap();
    host.fake
        .fail_nth(Op::TaskCreate, 1, Code::Unavailable, LOST);
    host.fake.fail_nth(Op::TaskCreate, 2, Code::Unknown, LOST);
    host.containers.start(&id).await.unwrap();
    assert_eq!(count(&host, Op::TaskCreate), 3, "{:?}", host.fake.calls());
    assert_eq!(count(&host, Op::TaskStart), 1, "{:?}", host.fake.calls());
    assert_eq!(host.fake.tasks()[ID], TaskStatus::Running);
}
