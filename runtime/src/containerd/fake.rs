//! A recording fake of [`Containerd`] for unit tests: containerd's objects in memory (content
//! and ingests, image records, snapshots, leases with a small garbage collector, containers,
//! tasks and exec processes), answering as containerd does (NotFound, AlreadyExists, a commit
//! whose bytes do not match refused), every call recorded as `<op> <object>`, and any call made
//! to fail on demand: always, or only its n-th time.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tonic::Code;

mod content;
mod snapshots;
mod tasks;

use super::{
    Blob, ContainerRecord, Containerd, ContainerdError, Exit, Op, SNAPSHOTTER, TaskStatus,
};

/// The label that makes an object a root of containerd's collector.
const GC_ROOT: &str = "containerd.io/gc.root";
const GC_REF_CONTENT: &str = "containerd.io/gc.ref.content.";
const SIGNALLED: u32 = 128;

/// containerd in memory. Share it as `Arc<FakeContainerd>` and hand the code under test a
/// clone as `Arc<dyn Containerd>`.
#[derive(Debug, Default)]
pub(crate) struct FakeContainerd {
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    calls: Vec<String>,
    /// Calls so far by operation, and by operation and object.
    counts: HashMap<Op, usize>,
    object_counts: HashMap<(Op, String), usize>,
    failures: Vec<Failure>,
    content: BTreeMap<String, Content>,
    ingests: BTreeMap<String, Vec<u8>>,
    images: BTreeMap<String, Blob>,
    snapshots: BTreeMap<String, Snapshot>,
    /// Each lease's resources: (kind, id).
    leases: BTreeMap<String, BTreeSet<(String, String)>>,
    /// Leases deleted, with whether the collector ran before the answer.
    released: Vec<(String, bool)>,
    containers: BTreeMap<String, ContainerRecord>,
    tasks: BTreeMap<String, Process>,
    execs: BTreeMap<(String, String), Process>,
    /// An exec process exits with this code as soon as it starts; None: it runs until killed.
    exec_exit: Option<u32>,
    next_pid: u32,
}

#[derive(Debug)]
struct Failure {
    op: Op,
    /// Only calls on this object.
    object: Option<String>,
    /// Only the n-th call of `op` (on `object`, if given), counting from 1; None: every call.
    nth: Option<usize>,
    code: Code,
    message: String,
    /// The call takes effect and only its answer is lost (containerd restarted before it
    /// answered); otherwise it fails before it does anything.
    after: bool,
}

#[derive(Debug, Clone)]
struct Content {
    data: Vec<u8>,
    labels: HashMap<String, String>,
}

#[derive(Debug, Clone)]
struct Snapshot {
    parent: String,
    committed: bool,
    labels: HashMap<String, String>,
}

#[derive(Debug)]
struct Process {
    status: TaskStatus,
    pid: u32,
    exit: watch::Sender<Option<Exit>>,
}

impl Process {
    fn created() -> Self {
        Self {
            status: TaskStatus::Created,
            pid: 0,
            exit: watch::channel(None).0,
        }
    }

    fn stop(&mut self, code: u32) {
        self.status = TaskStatus::Stopped;
        self.exit.send_replace(Some(Exit { code, at: None }));
    }

    fn exit_status(&self) -> u32 {
        self.exit.borrow().map(|e| e.code).unwrap_or_default()
    }
}

/// `sha256:<hex>` of some bytes.
pub(crate) fn digest_of(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

fn status(op: Op, object: &str, code: Code, message: impl Into<String>) -> ContainerdError {
    ContainerdError::new(op, object, &tonic::Status::new(code, message))
}

fn not_found(op: Op, object: &str) -> ContainerdError {
    status(op, object, Code::NotFound, format!("{object}: not found"))
}

fn exists(op: Op, object: &str) -> ContainerdError {
    status(
        op,
        object,
        Code::AlreadyExists,
        format!("{object}: already exists"),
    )
}

fn finished(op: Op, object: &str) -> ContainerdError {
    status(
        op,
        object,
        Code::FailedPrecondition,
        "process already finished: failed precondition",
    )
}

impl FakeContainerd {
    pub(crate) fn new() -> Arc<Self> {
        Arc::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a call and answers with the failure it was told to, if any.
    fn begin(&self, op: Op, object: &str) -> Result<MutexGuard<'_, State>, ContainerdError> {
        let mut state = self.lock();
        state
            .calls
            .push(format!("{} {object}", op.label()).trim_end().to_owned());
        let count = state.counts.entry(op).or_default();
        *count += 1;
        let count = *count;
        let on_object = state
            .object_counts
            .entry((op, object.to_owned()))
            .or_default();
        *on_object += 1;
        let on_object = *on_object;
        let failure = state.failures.iter().find(|f| {
            let (matches, nth) = match &f.object {
                None => (true, count),
                Some(o) => (o == object, on_object),
            };
            !f.after && f.op == op && matches && f.nth.is_none_or(|n| n == nth)
        });
        if let Some(f) = failure {
            return Err(status(op, object, f.code, f.message.clone()));
        }
        Ok(state)
    }

    /// The answer to a call that took effect: the failure it was told to lose its answer with
    /// ([`Self::lose_answer_nth`]), if any. Counts as [`Self::begin`] counted the call.
    fn answer(&self, state: &State, op: Op) -> Result<(), ContainerdError> {
        let count = state.counts.get(&op).copied().unwrap_or(0);
        match state
            .failures
            .iter()
            .find(|f| f.after && f.op == op && f.nth.is_none_or(|n| n == count))
        {
            Some(f) => Err(status(op, "", f.code, f.message.clone())),
            None => Ok(()),
        }
    }

    /// The n-th call of `op` takes effect but fails with `code`, as a call does whose answer
    /// was lost when containerd restarted.
    pub(crate) fn lose_answer_nth(&self, op: Op, nth: usize, code: Code, message: &str) {
        self.lock().failures.push(Failure {
            op,
            object: None,
            nth: Some(nth),
            code,
            message: message.to_owned(),
            after: true,
        });
    }

    /// Every call so far, as `<op> <object>` (exec processes by their container).
    pub(crate) fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    /// The calls so far whose operation is one of `ops`.
    pub(crate) fn calls_of(&self, ops: &[Op]) -> Vec<String> {
        let labels: Vec<&str> = ops.iter().map(|op| op.label()).collect();
        self.calls()
            .into_iter()
            .filter(|c| {
                labels
                    .iter()
                    .any(|l| c == l || c.starts_with(&format!("{l} ")))
            })
            .collect()
    }

    /// Every call of `op` fails with `code`.
    pub(crate) fn fail(&self, op: Op, code: Code, message: &str) {
        self.push_failure(op, None, None, code, message);
    }

    /// The n-th call of `op` (counting from 1, over the fake's life) fails with `code`.
    pub(crate) fn fail_nth(&self, op: Op, nth: usize, code: Code, message: &str) {
        self.push_failure(op, None, Some(nth), code, message);
    }

    /// The n-th call of `op` on `object` (counting from 1) fails with `code`.
    pub(crate) fn fail_on(&self, op: Op, object: &str, nth: usize, code: Code, message: &str) {
        self.push_failure(op, Some(object), Some(nth), code, message);
    }

    fn push_failure(
        &self,
        op: Op,
        object: Option<&str>,
        nth: Option<usize>,
        code: Code,
        message: &str,
    ) {
        self.lock().failures.push(Failure {
            op,
            object: object.map(str::to_owned),
            nth,
            code,
            message: message.to_owned(),
            after: false,
        });
    }

    /// Exec processes exit with `code` as soon as they start (None: they run until killed).
    pub(crate) fn exec_exits_with(&self, code: Option<u32>) {
        self.lock().exec_exit = code;
    }

    /// Stores a blob as committed; its digest.
    pub(crate) fn put_content(&self, data: &[u8], labels: HashMap<String, String>) -> String {
        let digest = digest_of(data);
        let content = Content {
            data: data.to_vec(),
            labels,
        };
        self.lock().content.insert(digest.clone(), content);
        digest
    }

    /// Leaves an unfinished ingest holding `data`.
    pub(crate) fn put_ingest(&self, reference: &str, data: &[u8]) {
        self.lock()
            .ingests
            .insert(reference.to_owned(), data.to_vec());
    }

    pub(crate) fn put_image(&self, name: &str, target: Blob) {
        self.lock().images.insert(name.to_owned(), target);
    }

    pub(crate) fn put_snapshot(&self, name: &str, parent: &str) {
        let snapshot = Snapshot {
            parent: parent.to_owned(),
            committed: true,
            labels: HashMap::new(),
        };
        self.lock().snapshots.insert(name.to_owned(), snapshot);
    }

    /// Stores a container record and, with a status, its task.
    pub(crate) fn put_container(&self, record: ContainerRecord, task: Option<TaskStatus>) {
        let mut state = self.lock();
        if let Some(status) = task {
            let mut process = Process::created();
            process.status = status;
            state.tasks.insert(record.id.clone(), process);
        }
        state.containers.insert(record.id.clone(), record);
    }

    /// Ends a container's main process with `code`.
    pub(crate) fn exit(&self, id: &str, code: u32) {
        if let Some(process) = self.lock().tasks.get_mut(id) {
            process.stop(code);
        }
    }

    /// Loses a container's task as containerd does when its shim is killed: the task and its
    /// exit status are gone, the record stays.
    pub(crate) fn lose_task(&self, id: &str) {
        self.lock().tasks.remove(id);
    }

    /// The committed blobs' digests.
    pub(crate) fn content(&self) -> Vec<String> {
        self.lock().content.keys().cloned().collect()
    }

    /// The labels of a committed blob.
    pub(crate) fn labels(&self, digest: &str) -> Option<HashMap<String, String>> {
        self.lock().content.get(digest).map(|c| c.labels.clone())
    }

    pub(crate) fn ingests(&self) -> Vec<String> {
        self.lock().ingests.keys().cloned().collect()
    }

    pub(crate) fn images(&self) -> BTreeMap<String, Blob> {
        self.lock().images.clone()
    }

    /// Snapshot names with whether each is committed.
    pub(crate) fn snapshots(&self) -> BTreeMap<String, bool> {
        let state = self.lock();
        state
            .snapshots
            .iter()
            .map(|(k, s)| (k.clone(), s.committed))
            .collect()
    }

    pub(crate) fn snapshot_labels(&self, key: &str) -> Option<HashMap<String, String>> {
        self.lock().snapshots.get(key).map(|s| s.labels.clone())
    }

    pub(crate) fn leases(&self) -> Vec<String> {
        self.lock().leases.keys().cloned().collect()
    }

    /// Leases deleted so far, with whether the collector ran before containerd answered.
    pub(crate) fn released(&self) -> Vec<(String, bool)> {
        self.lock().released.clone()
    }

    pub(crate) fn containers(&self) -> BTreeMap<String, ContainerRecord> {
        self.lock().containers.clone()
    }

    /// Containers with a task, and its status.
    pub(crate) fn tasks(&self) -> BTreeMap<String, TaskStatus> {
        let state = self.lock();
        state
            .tasks
            .iter()
            .map(|(k, p)| (k.clone(), p.status))
            .collect()
    }

    /// Exec processes that were not deleted.
    pub(crate) fn execs(&self) -> usize {
        self.lock().execs.len()
    }

    async fn wait(&self, op: Op, id: &str, exec_id: Option<&str>) -> Result<Exit, ContainerdError> {
        let mut exit = {
            let state = self.begin(op, id)?;
            let process = match exec_id {
                None => state.tasks.get(id),
                Some(e) => state.execs.get(&(id.to_owned(), e.to_owned())),
            };
            process.ok_or_else(|| not_found(op, id))?.exit.subscribe()
        };
        let ended = exit
            .wait_for(Option::is_some)
            .await
            .map_err(|_| status(op, id, Code::Unavailable, "the process went away"))?;
        ended.ok_or_else(|| status(op, id, Code::Internal, "no exit"))
    }
}

impl State {
    fn hold(&mut self, lease: Option<&str>, kind: &str, id: &str) {
        if let Some(resources) = lease.and_then(|l| self.leases.get_mut(l)) {
            resources.insert((kind.to_owned(), id.to_owned()));
        }
    }

    /// containerd's collector: content and snapshots that no image, container, lease or root
    /// label reaches, directly or through `gc.ref` labels and snapshot parents, go.
    fn collect(&mut self) {
        let snapshot_kind = format!("snapshots/{SNAPSHOTTER}");
        let snapshot_ref = format!("containerd.io/gc.ref.snapshot.{SNAPSHOTTER}");
        let mut content: Vec<String> = self.images.values().map(|t| t.digest.clone()).collect();
        let mut snapshots: Vec<String> = self
            .containers
            .values()
            .map(|c| c.snapshot_key.clone())
            .collect();
        for resources in self.leases.values() {
            for (kind, id) in resources {
                if kind == "content" {
                    content.push(id.clone());
                } else if *kind == snapshot_kind {
                    snapshots.push(id.clone());
                }
            }
        }
        content.extend(
            self.content
                .iter()
                .filter(|(_, c)| c.labels.contains_key(GC_ROOT))
                .map(|(d, _)| d.clone()),
        );
        snapshots.extend(
            self.snapshots
                .iter()
                .filter(|(_, s)| s.labels.contains_key(GC_ROOT))
                .map(|(k, _)| k.clone()),
        );
        let mut live_content = BTreeSet::new();
        while let Some(digest) = content.pop() {
            if !live_content.insert(digest.clone()) {
                continue;
            }
            if let Some(blob) = self.content.get(&digest) {
                for (key, value) in &blob.labels {
                    if key.starts_with(GC_REF_CONTENT) {
                        content.push(value.clone());
                    } else if *key == snapshot_ref {
                        snapshots.push(value.clone());
                    }
                }
            }
        }
        let mut live_snapshots = BTreeSet::new();
        while let Some(key) = snapshots.pop() {
            if !live_snapshots.insert(key.clone()) {
                continue;
            }
            if let Some(s) = self.snapshots.get(&key)
                && !s.parent.is_empty()
            {
                snapshots.push(s.parent.clone());
            }
        }
        self.content.retain(|d, _| live_content.contains(d));
        self.snapshots.retain(|k, _| live_snapshots.contains(k));
    }
}

#[async_trait]
impl Containerd for FakeContainerd {
    fn namespace(&self) -> &str {
        "berth"
    }

    async fn version(&self) -> Result<String, ContainerdError> {
        drop(self.begin(Op::Version, "")?);
        Ok("1.6.20-fake".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::containerd::{LeasesService, SnapshotsService};

    #[tokio::test]
    async fn failures_come_by_call_and_by_count_and_calls_are_recorded() {
        let fake = FakeContainerd::new();
        fake.fail_nth(Op::LeaseCreate, 2, Code::Unavailable, "busy");
        fake.fail(Op::SnapshotStat, Code::Internal, "broken");
        fake.fail_on(Op::SnapshotRemove, "y", 2, Code::Aborted, "raced");
        assert!(fake.lease_create("a", HashMap::new()).await.is_ok());
        let second = fake.lease_create("b", HashMap::new()).await.unwrap_err();
        assert_eq!(second.code(), Code::Unavailable);
        assert!(fake.lease_create("c", HashMap::new()).await.is_ok());
        for _ in 0..2 {
            assert_eq!(
                fake.snapshot_stat("x").await.unwrap_err().code(),
                Code::Internal
            );
        }
        assert_eq!(
            fake.calls(),
            [
                "create lease a",
                "create lease b",
                "create lease c",
                "snapshot stat x",
                "snapshot stat x"
            ]
        );
        assert_eq!(fake.leases(), ["a", "c"]);
        // By object: only the second removal of "y" fails; "z" is another object.
        fake.put_snapshot("y", "");
        fake.put_snapshot("z", "");
        fake.snapshot_remove("y").await.unwrap();
        fake.put_snapshot("y", "");
        let raced = fake.snapshot_remove("y").await.unwrap_err();
        assert_eq!(raced.code(), Code::Aborted);
        fake.snapshot_remove("z").await.unwrap();
        assert_eq!(fake.snapshots().into_keys().collect::<Vec<_>>(), ["y"]);
    }

    #[tokio::test]
    async fn a_synchronous_lease_delete_collects_what_only_the_lease_held() {
        let fake = FakeContainerd::new();
        let kept = fake.put_content(b"kept", HashMap::new());
        fake.put_image(
            "app",
            Blob {
                media_type: String::new(),
                digest: kept.clone(),
                size: 4,
            },
        );
        fake.lease_create("l", HashMap::new()).await.unwrap();
        let loose = fake.put_content(b"loose", HashMap::new());
        fake.lease_add_resource("l", "content", &loose)
            .await
            .unwrap();
        fake.snapshot_prepare(Some("l"), "k", "", HashMap::new())
            .await
            .unwrap();
        fake.lease_delete("l", true).await.unwrap();
        assert_eq!(fake.content(), [kept]);
        assert!(fake.snapshots().is_empty());
        assert_eq!(fake.released(), [("l".to_owned(), true)]);
    }
}
