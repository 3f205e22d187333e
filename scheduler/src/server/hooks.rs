//! Test hooks: the reference scheduler as a scriptable peer for tests of its clients (the
//! agent's session). A test can drop a session's stream, fail the next call of an RPC with a
//! given code, delay, duplicate or hold back (and then release in reverse order) the acks of
//! state changes, send every assignment and stop order twice, stall a session (it stops
//! sending, as a hung scheduler would), hold metrics streams (open and never read, as a
//! consumer that stopped taking them), shrink the HTTP/2 stream window, and read what the
//! server saw.
//!
//! Only [`run_with_hooks`](super::run_with_hooks) takes hooks; `run` serves without them, and
//! nothing a client sends can set one. The binary takes a few hooks for the end-to-end suites
//! from `BERTH_SCHEDULER_TEST_HOOKS` ([`TestHooks::from_spec`]), in debug builds only.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::Duration;

use berth_proto::v1::SchedulerMessage;
use tokio::sync::{Notify, mpsc};

use super::Shared;

/// A session's outgoing stream, as a held-back ack keeps it.
type Outgoing = mpsc::Sender<Result<SchedulerMessage, tonic::Status>>;

/// An RPC of `AgentService` whose next call a test can fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Call {
    Register,
    Session,
    StreamMetrics,
}

/// What the server saw, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// An agent registered (or re-registered) as this instance.
    Registered { instance_id: String },
    /// A session opened: the agent's `last_applied_seq` and the scheduler's
    /// `last_received_seq` it was accepted with.
    SessionOpened {
        instance_id: String,
        last_applied_seq: u64,
        last_received_seq: u64,
    },
    /// A state change arrived on a session (a duplicate too).
    StateChange { instance_id: String, seq: u64 },
    /// The agent acknowledged the scheduler's messages up to `seq`.
    Acked { instance_id: String, seq: u64 },
    /// A session ended, for whatever reason.
    SessionClosed { instance_id: String },
    /// A metrics stream opened and is held, never read (the instance ID is the peer
    /// certificate's; empty on a plaintext scheduler, which knows it only from a batch).
    MetricsStreamHeld { instance_id: String },
}

/// The environment variable through which a debug build of `berth-scheduler` takes test
/// hooks (see [`TestHooks::from_spec`]). A release build ignores it.
pub const TEST_HOOKS_ENV: &str = "BERTH_SCHEDULER_TEST_HOOKS";

/// A hook spec that cannot be applied.
#[derive(Debug, thiserror::Error)]
pub enum HookSpecError {
    #[error(
        "unknown test hook {0:?}: the hooks are hold-metrics-streams and stream-window=<bytes>"
    )]
    Unknown(String),
    #[error("stream-window needs a number of bytes from 1 to 2147483647, not {0:?}")]
    Window(String),
}

/// The hooks of one server. Cheap to clone; all clones act on the same server.
#[derive(Debug, Clone, Default)]
pub struct TestHooks {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    state: Mutex<State>,
    /// Poked on every event, for [`TestHooks::wait_for`].
    changed: Notify,
    /// The server, once it runs.
    server: OnceLock<Weak<Shared>>,
}

#[derive(Debug, Default)]
struct State {
    failures: HashMap<Call, VecDeque<tonic::Code>>,
    ack_delay: Option<Duration>,
    hold_metrics: bool,
    stream_window: Option<u32>,
    duplicate_acks: bool,
    duplicate_sends: bool,
    hold_acks: bool,
    /// Acks held back, in the order they were due, with the stream each was due on.
    held: Vec<(Outgoing, SchedulerMessage)>,
    events: Vec<Event>,
}

impl TestHooks {
    pub fn new() -> Self {
        Self::default()
    }

    /// Hooks from a comma-separated spec: `hold-metrics-streams` ([`Self::hold_metrics_streams`]),
    /// `stream-window=<bytes>` ([`Self::set_stream_window`]).
    pub fn from_spec(spec: &str) -> Result<Self, HookSpecError> {
        let hooks = Self::new();
        for hook in spec.split(',').map(str::trim).filter(|h| !h.is_empty()) {
            match hook.split_once('=') {
                None if hook == "hold-metrics-streams" => hooks.hold_metrics_streams(true),
                Some(("stream-window", bytes)) => {
                    let window = bytes
                        .parse::<u32>()
                        .ok()
                        .filter(|w| (1..=i32::MAX as u32).contains(w))
                        .ok_or_else(|| HookSpecError::Window(bytes.to_owned()))?;
                    hooks.set_stream_window(Some(window));
                }
                _ => return Err(HookSpecError::Unknown(hook.to_owned())),
            }
        }
        Ok(hooks)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Fails the next call of `call` with `code` (calls queue up: two calls of this fail the
    /// next two calls).
    pub fn fail_next(&self, call: Call, code: tonic::Code) {
        self.lock()
            .failures
            .entry(call)
            .or_default()
            .push_back(code);
    }

    /// Holds every ack of a state change back for `delay` (the state change itself is applied
    /// and stored at once, as ever); `None` acks at once again.
    pub fn delay_acks(&self, delay: Option<Duration>) {
        self.lock().ack_delay = delay;
    }

    /// Holds every metrics stream that opens from now on (`false`: those opening later are
    /// read again): the server accepts it and never reads it, so the agent's sends stop once
    /// HTTP/2 flow control's window is full, as with a consumer that stopped taking batches.
    pub fn hold_metrics_streams(&self, hold: bool) {
        self.lock().hold_metrics = hold;
    }

    /// The HTTP/2 stream window the server announces (its default is 1 MiB), for a held
    /// stream to fill in a few batches. Read when the server starts: set it before.
    pub fn set_stream_window(&self, bytes: Option<u32>) {
        self.lock().stream_window = bytes;
    }

    /// Sends every ack of a state change twice (with `delay_acks`, both late).
    pub fn duplicate_acks(&self, on: bool) {
        self.lock().duplicate_acks = on;
    }

    /// Sends every assignment and stop order twice in a row, as a scheduler that resends
    /// what it has no ack for yet.
    pub fn duplicate_sends(&self, on: bool) {
        self.lock().duplicate_sends = on;
    }

    /// Holds every ack of a state change back until
    /// [`release_acks_reversed`](Self::release_acks_reversed); `false` sends the next ones as usual again (what is
    /// held stays held).
    pub fn hold_acks(&self, on: bool) {
        self.lock().hold_acks = on;
    }

    /// Sends the acks held back so far, the last one first, each on the stream it was due
    /// on (dropped when that session has ended); how many were held.
    pub async fn release_acks_reversed(&self) -> usize {
        let held = std::mem::take(&mut self.lock().held);
        let count = held.len();
        for (tx, ack) in held.into_iter().rev() {
            let _ = tx.send(Ok(ack)).await;
        }
        count
    }

    /// Ends the instance's live session now, its stream with UNAVAILABLE, as a scheduler that
    /// lost the connection; false when it has none.
    pub fn drop_session(&self, instance_id: &str) -> bool {
        self.server()
            .is_some_and(|server| server.sessions.drop_session(instance_id))
    }

    /// Makes the instance's live session send nothing more (no heartbeat, ack or assignment),
    /// while it keeps reading, as a hung scheduler; false when it has none. A new session of
    /// the instance is served normally.
    pub fn stall_session(&self, instance_id: &str) -> bool {
        self.server()
            .is_some_and(|server| server.sessions.stall(instance_id))
    }

    /// Everything the server saw so far, in order.
    pub fn events(&self) -> Vec<Event> {
        self.lock().events.clone()
    }

    /// Waits until `done` holds for the events so far (bound it with a timeout).
    pub async fn wait_for(&self, done: impl Fn(&[Event]) -> bool) {
        loop {
            let changed = self.inner.changed.notified();
            tokio::pin!(changed);
            // Registered before the check, so an event between the two is not missed.
            changed.as_mut().enable();
            if done(&self.lock().events) {
                return;
            }
            changed.await;
        }
    }

    /// Called once by the server when it starts.
    pub(super) fn attach(&self, server: &Arc<Shared>) {
        let _ = self.inner.server.set(Arc::downgrade(server));
    }

    fn server(&self) -> Option<Arc<Shared>> {
        self.inner.server.get().and_then(Weak::upgrade)
    }

    /// The status to fail this call of `call` with, if a test asked for one.
    pub(super) fn failure(&self, call: Call) -> Option<tonic::Status> {
        let code = self.lock().failures.get_mut(&call)?.pop_front()?;
        Some(tonic::Status::new(
            code,
            format!("{call:?} failed by a test hook"),
        ))
    }

    /// Whether a metrics stream opening now is held.
    pub(super) fn holds_metrics_streams(&self) -> bool {
        self.lock().hold_metrics
    }

    /// The HTTP/2 stream window to announce, if a test set one.
    pub(super) fn stream_window(&self) -> Option<u32> {
        self.lock().stream_window
    }

    /// How long to hold an ack back, if a test asked for it.
    pub(super) fn ack_delay(&self) -> Option<Duration> {
        self.lock().ack_delay
    }

    /// How many times to send each ack of a state change.
    pub(super) fn ack_copies(&self) -> usize {
        if self.lock().duplicate_acks { 2 } else { 1 }
    }

    /// How many times to send each assignment and stop order.
    pub(super) fn send_copies(&self) -> usize {
        if self.lock().duplicate_sends { 2 } else { 1 }
    }

    /// Keeps `ack` for a later [`release_acks_reversed`](Self::release_acks_reversed) when a
    /// test holds acks back; gives it back otherwise.
    pub(super) fn hold(&self, tx: &Outgoing, ack: SchedulerMessage) -> Option<SchedulerMessage> {
        let mut state = self.lock();
        if !state.hold_acks {
            return Some(ack);
        }
        state.held.push((tx.clone(), ack));
        None
    }

    pub(super) fn record(&self, event: Event) {
        self.lock().events.push(event);
        self.inner.changed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_queue_up_per_call() {
        let hooks = TestHooks::new();
        hooks.fail_next(Call::Register, tonic::Code::Unavailable);
        hooks.fail_next(Call::Register, tonic::Code::PermissionDenied);
        assert!(hooks.failure(Call::Session).is_none());
        let first = hooks.failure(Call::Register).map(|s| s.code());
        let second = hooks.failure(Call::Register).map(|s| s.code());
        assert_eq!(first, Some(tonic::Code::Unavailable));
        assert_eq!(second, Some(tonic::Code::PermissionDenied));
        assert!(hooks.failure(Call::Register).is_none());
        // Not attached to a server: nothing to drop or stall.
        assert!(!hooks.drop_session("i"));
        assert!(!hooks.stall_session("i"));
    }

    #[test]
    fn specs_set_hooks_or_say_what_is_wrong() {
        let hooks = TestHooks::from_spec("hold-metrics-streams, stream-window=4096").expect("spec");
        assert!(hooks.holds_metrics_streams());
        assert_eq!(hooks.stream_window(), Some(4096));
        let none = TestHooks::from_spec("").expect("empty spec");
        assert!(!none.holds_metrics_streams());
        assert_eq!(none.stream_window(), None);
        let unknown = TestHooks::from_spec("hold-sessions").expect_err("unknown");
        assert!(
            unknown.to_string().contains("hold-metrics-streams"),
            "{unknown}"
        );
        for bad in [
            "stream-window=0",
            "stream-window=lots",
            "stream-window=4294967295",
        ] {
            let error = TestHooks::from_spec(bad).expect_err(bad);
            assert!(matches!(error, HookSpecError::Window(_)), "{bad}: {error}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn held_acks_are_released_last_first() {
        let hooks = TestHooks::new();
        let (tx, mut rx) = mpsc::channel(4);
        let ack = |seq| SchedulerMessage {
            message: Some(berth_proto::v1::scheduler_message::Message::Ack(
                berth_proto::v1::Ack { seq },
            )),
        };
        assert_eq!(hooks.hold(&tx, ack(1)), Some(ack(1)), "not holding yet");
        hooks.hold_acks(true);
        for seq in [2, 3, 4] {
            assert_eq!(hooks.hold(&tx, ack(seq)), None);
        }
        hooks.hold_acks(false);
        assert_eq!(hooks.hold(&tx, ack(5)), Some(ack(5)));
        assert_eq!(hooks.release_acks_reversed().await, 3);
        for seq in [4, 3, 2] {
            assert_eq!(rx.recv().await.unwrap().unwrap(), ack(seq));
        }
        assert_eq!(hooks.release_acks_reversed().await, 0);
        assert_eq!(hooks.ack_copies(), 1);
        hooks.duplicate_acks(true);
        hooks.duplicate_sends(true);
        assert_eq!((hooks.ack_copies(), hooks.send_copies()), (2, 2));
    }

    #[tokio::test(start_paused = true)]
    async fn waits_for_events() {
        let hooks = TestHooks::new();
        let waiter = {
            let hooks = hooks.clone();
            tokio::spawn(async move {
                hooks.wait_for(|events| events.len() == 2).await;
            })
        };
        tokio::task::yield_now().await;
        for id in ["a", "b"] {
            hooks.record(Event::Registered {
                instance_id: id.into(),
            });
        }
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("the waiter saw both events")
            .expect("the waiter did not panic");
    }
}
