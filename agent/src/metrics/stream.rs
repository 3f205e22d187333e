//! `StreamMetrics`: the agent's metric batches to the scheduler on a connection and stream of
//! their own, so a slow or absent consumer never delays a state change or a heartbeat on the
//! session. Each pass's batch goes into a bounded buffer that drops the oldest batch when full
//! (counted in `berth_agent_metric_batches_dropped_total`); one task drains it into the stream
//! and reconnects with backoff when the stream breaks. Pull progress (`images/progress.rs`)
//! travels in batches of its own, without a host sample, of which at most one is queued.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_proto::v1::MetricsBatch;
use berth_proto::v1::agent_service_client::AgentServiceClient;
use tokio::sync::{Notify, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use super::AGENT;
use crate::backoff::Backoff;
use crate::session::{SessionError, TlsMaterial, connect};
use crate::store::Store;

/// Batches kept while the scheduler does not take them: ten minutes at the default interval.
pub(crate) const BUFFER_BATCHES: usize = 60;

/// A bounded queue of batches that drops the oldest when full. Pushing never waits.
#[derive(Debug)]
pub(crate) struct BatchBuffer {
    batches: Mutex<VecDeque<MetricsBatch>>,
    capacity: usize,
    ready: Notify,
}

impl BatchBuffer {
    pub(crate) fn new(capacity: usize) -> Self {
        BatchBuffer {
            batches: Mutex::new(VecDeque::with_capacity(capacity)),
            capacity: capacity.max(1),
            ready: Notify::new(),
        }
    }

    /// Queues `batch`, dropping (and counting) the oldest when the buffer is full.
    pub(crate) fn push(&self, batch: MetricsBatch) {
        {
            let mut batches = self.batches.lock().unwrap_or_else(|p| p.into_inner());
            while batches.len() >= self.capacity {
                batches.pop_front();
                AGENT.metric_batches_dropped.inc();
            }
            batches.push_back(batch);
        }
        self.ready.notify_one();
    }

    /// Queues a batch of pull progress only (no host sample). Progress is worth its latest
    /// reading alone: one already queued is replaced in place, so a scheduler that does not
    /// take batches never loses a metric sample to progress.
    pub(crate) fn push_progress(&self, batch: MetricsBatch) {
        {
            let mut batches = self.batches.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(queued) = batches.iter_mut().find(|b| b.host.is_none()) {
                *queued = batch;
                return;
            }
        }
        self.push(batch);
    }

    /// The oldest batch, waiting for one.
    pub(crate) async fn pop(&self) -> MetricsBatch {
        loop {
            let ready = self.ready.notified();
            if let Some(batch) = self
                .batches
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop_front()
            {
                return batch;
            }
            ready.await;
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.batches.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// Sends the buffer's batches until `cancel`, reconnecting with backoff.
pub(crate) async fn run(
    endpoint: String,
    tls: Option<watch::Receiver<TlsMaterial>>,
    store: Arc<Store>,
    buffer: Arc<BatchBuffer>,
    cancel: CancellationToken,
) {
    let mut backoff =
        Backoff::new(Duration::from_millis(200), Duration::from_secs(30)).jittered(0.2);
    loop {
        // The credential as it is now: a renewal takes effect at the next connection.
        let material = tls.as_ref().map(|rx| rx.borrow().clone());
        let ended = tokio::select! {
            _ = cancel.cancelled() => return,
            ended = stream_once(&endpoint, material.as_ref(), &store, &buffer, &mut backoff) => ended,
        };
        AGENT.metrics_stream_reconnects.inc();
        let delay = backoff.next_delay();
        match ended {
            Ok(()) => tracing::info!(
                retry_in_ms = delay.as_millis() as u64,
                "metrics stream ended; reopening"
            ),
            Err(error) => tracing::warn!(
                error = &error as &(dyn std::error::Error + 'static),
                retry_in_ms = delay.as_millis() as u64,
                "metrics stream down; retrying"
            ),
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// Why a metrics stream ended.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StreamError {
    #[error("cannot open the metrics stream")]
    Connect(#[source] SessionError),
    #[error("the scheduler ended the metrics stream")]
    Rpc(#[source] tonic::Status),
}

/// One stream: batches go out as the scheduler takes them (at most one in flight besides the
/// buffer), stamped with the instance ID once the session has registered.
async fn stream_once(
    endpoint: &str,
    tls: Option<&TlsMaterial>,
    store: &Store,
    buffer: &BatchBuffer,
    backoff: &mut Backoff,
) -> Result<(), StreamError> {
    let channel = connect(endpoint, tls).await.map_err(StreamError::Connect)?;
    let mut client = AgentServiceClient::new(channel);
    let (tx, rx) = mpsc::channel(1);
    let call = client.stream_metrics(ReceiverStream::new(rx));
    let forward = async {
        loop {
            let mut batch = buffer.pop().await;
            match store.registration() {
                Ok(Some((_, id))) => batch.container_instance_id = id,
                // Not registered yet: nothing names this host to the scheduler.
                _ => {
                    AGENT.metric_batches_dropped.inc();
                    continue;
                }
            }
            if tx.send(batch).await.is_err() {
                // The call ended; what it ended with says why.
                AGENT.metric_batches_dropped.inc();
                return;
            }
            AGENT.metric_batches_sent.inc();
            backoff.reset();
        }
    };
    tokio::select! {
        ended = call => ended.map(|_| ()).map_err(StreamError::Rpc),
        () = forward => Ok(()),
    }
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
