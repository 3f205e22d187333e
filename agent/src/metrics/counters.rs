//! The agent's own counters (`berth_agent_*`), process-wide as the agent is one per process,
//! bumped where the events happen (session, store, runtime seam, metrics stream) and exposed on
//! `/metrics`.

use std::sync::LazyLock;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// The agent's counters.
pub(crate) static AGENT: LazyLock<AgentCounters> = LazyLock::new(AgentCounters::default);

/// `result` of an image pull.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct PullLabels {
    pub result: &'static str,
}

/// `reason` of an image removal by the collector: `unused` or `disk_pressure`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RemovalLabels {
    pub reason: &'static str,
}

/// Every counter the agent keeps about itself.
#[derive(Debug, Default)]
pub(crate) struct AgentCounters {
    /// `berth_agent_state_changes_sent_total`: state changes sent on the session (resends
    /// after a reconnect included).
    pub state_changes_sent: Counter,
    /// `berth_agent_state_changes_acked_total`: state changes the scheduler acknowledged.
    pub state_changes_acked: Counter,
    /// `berth_agent_image_pulls_total{result}`: image pulls, by `success` or `failure`.
    pub pulls: Family<PullLabels, Counter>,
    /// `berth_agent_image_pull_bytes_total`: bytes downloaded by pulls (cached layers are not).
    pub pull_bytes: Counter,
    /// `berth_agent_image_pull_seconds_total`: time spent pulling.
    pub pull_seconds: Counter<f64, AtomicU64>,
    /// `berth_agent_image_removals_total{reason}`: images the collector removed, by
    /// `unused` (past the minimum age, beyond the newest of its repository) or `disk_pressure`.
    pub image_removals: Family<RemovalLabels, Counter>,
    /// `berth_agent_image_removed_bytes_total`: the listed size of the images removed.
    pub image_removed_bytes: Counter,
    /// `berth_agent_session_reconnects_total`: times the session to the scheduler was lost
    /// and retried.
    pub session_reconnects: Counter,
    /// `berth_agent_metric_batches_sent_total`: batches handed to the metrics stream.
    pub metric_batches_sent: Counter,
    /// `berth_agent_metric_batches_dropped_total`: batches dropped because the scheduler did
    /// not take them in time (the oldest first) or the stream broke under them.
    pub metric_batches_dropped: Counter,
    /// `berth_agent_metrics_stream_reconnects_total`: times the metrics stream was reopened.
    pub metrics_stream_reconnects: Counter,
    /// `berth_agent_metrics_collections_total`: sampling passes completed.
    pub collections: Counter,
    /// `berth_agent_metrics_collection_seconds_total`: time the sampling passes took.
    pub collection_seconds: Counter<f64, AtomicU64>,
    /// `berth_agent_awslogs_events_sent_total`: log events CloudWatch Logs accepted from the
    /// awslogs driver.
    pub awslogs_events_sent: Counter,
    /// `berth_agent_awslogs_lines_dropped_total`: container log lines the awslogs driver
    /// dropped in non-blocking mode because its buffer (max-buffer-size) was full.
    pub awslogs_lines_dropped: Counter,
    /// `berth_agent_awslogs_events_dropped_total`: log events given up on (refused by
    /// CloudWatch Logs for good, or not delivered before the agent stopped).
    pub awslogs_events_dropped: Counter,
    /// `berth_agent_awslogs_delivery_failures_total`: outages of delivery to CloudWatch Logs
    /// (each retried until it ends).
    pub awslogs_put_failures: Counter,
}

impl AgentCounters {
    /// Counts one pull: `downloaded` is its bytes, None when it failed.
    pub(crate) fn record_pull(&self, downloaded: Option<u64>, took: Duration) {
        let result = if downloaded.is_some() {
            "success"
        } else {
            "failure"
        };
        self.pulls.get_or_create(&PullLabels { result }).inc();
        self.pull_bytes.inc_by(downloaded.unwrap_or(0));
        self.pull_seconds.inc_by(took.as_secs_f64());
    }

    /// Registers every counter (they are shared handles; the registry holds clones).
    pub(crate) fn register(&self, registry: &mut Registry) {
        let agent = registry.sub_registry_with_prefix("berth_agent");
        agent.register(
            "state_changes_sent",
            "State changes sent to the scheduler, resends included",
            self.state_changes_sent.clone(),
        );
        agent.register(
            "state_changes_acked",
            "State changes the scheduler acknowledged",
            self.state_changes_acked.clone(),
        );
        agent.register("image_pulls", "Image pulls by result", self.pulls.clone());
        agent.register(
            "image_removals",
            "Images the image collector removed, by reason",
            self.image_removals.clone(),
        );
        agent.register(
            "image_removed_bytes",
            "Listed size of the images the image collector removed",
            self.image_removed_bytes.clone(),
        );
        agent.register(
            "image_pull_bytes",
            "Bytes downloaded by image pulls",
            self.pull_bytes.clone(),
        );
        agent.register(
            "image_pull_seconds",
            "Time spent pulling images",
            self.pull_seconds.clone(),
        );
        agent.register(
            "session_reconnects",
            "Times the scheduler session was lost and retried",
            self.session_reconnects.clone(),
        );
        agent.register(
            "metric_batches_sent",
            "Metric batches handed to the scheduler's metrics stream",
            self.metric_batches_sent.clone(),
        );
        agent.register(
            "metric_batches_dropped",
            "Metric batches dropped, oldest first, because the scheduler did not take them",
            self.metric_batches_dropped.clone(),
        );
        agent.register(
            "metrics_stream_reconnects",
            "Times the metrics stream to the scheduler was reopened",
            self.metrics_stream_reconnects.clone(),
        );
        agent.register(
            "metrics_collections",
            "Resource sampling passes completed",
            self.collections.clone(),
        );
        agent.register(
            "metrics_collection_seconds",
            "Time resource sampling passes took",
            self.collection_seconds.clone(),
        );
        agent.register(
            "awslogs_events_sent",
            "Log events CloudWatch Logs accepted from the awslogs driver",
            self.awslogs_events_sent.clone(),
        );
        agent.register(
            "awslogs_lines_dropped",
            "Container log lines the awslogs driver dropped in non-blocking mode (buffer full)",
            self.awslogs_lines_dropped.clone(),
        );
        agent.register(
            "awslogs_events_dropped",
            "Log events the awslogs driver gave up on",
            self.awslogs_events_dropped.clone(),
        );
        agent.register(
            "awslogs_delivery_failures",
            "Outages of delivery to CloudWatch Logs",
            self.awslogs_put_failures.clone(),
        );
    }
}
