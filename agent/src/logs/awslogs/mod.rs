//! The awslogs log driver: a container's output, besides its json-file copy, goes to a
//! CloudWatch Logs stream, as the ECS agent sends it. The runtime's drain forwards each line
//! to a byte-bounded queue (`berth_runtime::log_forward`; blocking or non-blocking); here a
//! shipper per container takes them, joins multi-line events, cuts batches within
//! CloudWatch's limits and delivers them with retries.
//!
//! - `options.rs`: the container's awslogs options; `datetime.rs`: awslogs-datetime-format;
//! - `event.rs`: lines into events; `batch.rs`: events into batches;
//! - `api.rs`: the calls, behind a trait; `sdk.rs`: on the AWS SDK;
//! - `shipper.rs`: the delivery loop.

mod api;
mod batch;
mod datetime;
mod event;
mod options;
mod sdk;
mod shipper;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use berth_runtime::{LogForward, log_forward};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

pub(crate) use options::{AwsLogsOptions, OptionsError};
pub(crate) use shipper::Notify;

/// How long the agent's shutdown waits for the shippers' last deliveries.
pub(crate) const SHUTDOWN_GRACE: Duration =
    Duration::from_secs(shipper::SHUTDOWN_DELIVERY.as_secs() + 1);

use api::LogsApi;
use shipper::{Shipper, Target};

/// The agent's awslogs driver: one CloudWatch Logs client per region, and the shippers of
/// every container that uses it, owned and cancelled together. Cheap to clone.
#[derive(Clone)]
pub(crate) struct AwsLogs {
    inner: Arc<Inner>,
}

struct Inner {
    endpoint: Option<String>,
    clients: Mutex<HashMap<String, Arc<dyn LogsApi>>>,
    shippers: TaskTracker,
    cancel: CancellationToken,
}

impl std::fmt::Debug for AwsLogs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsLogs")
            .field("endpoint", &self.inner.endpoint)
            .field("shippers", &self.inner.shippers.len())
            .finish_non_exhaustive()
    }
}

impl AwsLogs {
    /// The driver, sending to `endpoint` when given (else each region's AWS endpoint); its
    /// shippers stop when `cancel` fires.
    pub(crate) fn new(endpoint: Option<String>, cancel: CancellationToken) -> Self {
        Self {
            inner: Arc::new(Inner {
                endpoint,
                clients: Mutex::new(HashMap::new()),
                shippers: TaskTracker::new(),
                cancel,
            }),
        }
    }

    /// Starts shipping one container's logs; the runtime's drain feeds the returned queue.
    /// The shipper ends once every clone of it is dropped (the container deleted) and its last
    /// events are delivered.
    pub(crate) fn start(
        &self,
        task_id: &str,
        container: &str,
        options: &AwsLogsOptions,
        notify: Notify,
    ) -> LogForward {
        let (forward, lines) = log_forward(options.mode, options.buffer_bytes);
        let target = Target {
            group: options.group.clone(),
            stream: options.stream_name(container, task_id),
            create_group: options.create_group,
        };
        let span = tracing::info_span!(
            "awslogs",
            task.id = %task_id,
            container.name = %container,
            log.group = %target.group,
            log.stream = %target.stream,
        );
        let driver = self.clone();
        let region = options.region.clone();
        let joiner = event::Joiner::new(options.event_start.clone());
        let cancel = self.inner.cancel.child_token();
        self.inner.shippers.spawn(
            async move {
                let api = driver.client(&region).await;
                Shipper::new(api, target, joiner, notify)
                    .run(lines, cancel)
                    .await;
            }
            .instrument(span),
        );
        forward
    }

    /// The client of a region, made on first use.
    async fn client(&self, region: &str) -> Arc<dyn LogsApi> {
        let mut clients = self.inner.clients.lock().await;
        if let Some(c) = clients.get(region) {
            return c.clone();
        }
        let made: Arc<dyn LogsApi> =
            Arc::new(sdk::SdkLogs::new(region, self.inner.endpoint.as_deref()).await);
        clients.insert(region.to_owned(), made.clone());
        made
    }

    /// Waits (bounded) for the shippers to end after the agent's cancel fired; each makes a
    /// last short delivery attempt.
    pub(crate) async fn drain(&self, within: Duration) {
        self.inner.shippers.close();
        if tokio::time::timeout(within, self.inner.shippers.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                shippers = self.inner.shippers.len(),
                "awslogs shippers still delivering at shutdown; their last events are dropped"
            );
        }
    }
}
