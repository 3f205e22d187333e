//! The scheduler's own `/metrics` (Prometheus text through prometheus-client, served with axum
//! on `--metrics-listen`): per cluster and instance the registered, reserved and measured CPU
//! and memory; tasks by cluster and status; sessions connected; and every gRPC call counted
//! and timed by method (`RpcMetricsLayer`, a tower layer around both services; a streaming
//! call is timed until its response starts).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::codegen::http::Request;

use super::Shared;
use crate::store::StoreError;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    /// `berth.v1.ControlService/RunTask`
    method: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClusterLabels {
    cluster: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InstanceLabels {
    cluster: String,
    container_instance_id: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    cluster: String,
    status: String,
}

/// Calls by method, and how long each took to answer.
#[derive(Debug)]
pub(crate) struct RpcMetrics {
    calls: Family<RpcLabels, Counter>,
    seconds: Family<RpcLabels, Histogram, fn() -> Histogram>,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms to about 8 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 15))
}

impl Default for RpcMetrics {
    fn default() -> Self {
        RpcMetrics {
            calls: Family::default(),
            seconds: Family::new_with_constructor(latency_histogram),
        }
    }
}

impl RpcMetrics {
    fn observe(&self, path: &str, seconds: f64) {
        let labels = RpcLabels {
            method: path.trim_start_matches('/').to_owned(),
        };
        self.calls.get_or_create(&labels).inc();
        self.seconds.get_or_create(&labels).observe(seconds);
    }
}

/// Counts and times every call of the services it wraps.
#[derive(Debug, Clone)]
pub(crate) struct RpcMetricsLayer(pub(crate) Arc<RpcMetrics>);

impl<S> tower::Layer<S> for RpcMetricsLayer {
    type Service = RpcMetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcMetricsService {
            inner,
            metrics: Arc::clone(&self.0),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct RpcMetricsService<S> {
    inner: S,
    metrics: Arc<RpcMetrics>,
}

impl<S, B> tower::Service<Request<B>> for RpcMetricsService<S>
where
    S: tower::Service<Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let path = request.uri().path().to_owned();
        let started = Instant::now();
        let answer = self.inner.call(request);
        let metrics = Arc::clone(&self.metrics);
        Box::pin(async move {
            let result = answer.await;
            metrics.observe(&path, started.elapsed().as_secs_f64());
            result
        })
    }
}

fn gauge(v: u64) -> Gauge {
    let g = Gauge::default();
    g.set(i64::try_from(v).unwrap_or(i64::MAX));
    g
}

/// The exposition text: the store's clusters, instances and tasks as they are now, the
/// telemetry window's measured use, the sessions, and the RPC counters.
pub(crate) fn render(shared: &Shared) -> Result<String, StoreError> {
    let store = &shared.store;
    let mut registry = Registry::default();
    let registered_cpu: Family<InstanceLabels, Gauge> = Family::default();
    let reserved_cpu: Family<InstanceLabels, Gauge> = Family::default();
    let measured_cpu: Family<InstanceLabels, Gauge> = Family::default();
    let registered_mem: Family<InstanceLabels, Gauge> = Family::default();
    let reserved_mem: Family<InstanceLabels, Gauge> = Family::default();
    let measured_mem: Family<InstanceLabels, Gauge> = Family::default();
    let tasks: Family<StatusLabels, Gauge> = Family::default();
    let instances: Family<ClusterLabels, Gauge> = Family::default();
    let mut connected = 0u64;
    for cluster in store.list_clusters()? {
        let cluster_instances = store.list_instances(&cluster)?;
        instances
            .get_or_create(&ClusterLabels {
                cluster: cluster.clone(),
            })
            .set(i64::try_from(cluster_instances.len()).unwrap_or(i64::MAX));
        for i in &cluster_instances {
            let labels = InstanceLabels {
                cluster: cluster.clone(),
                container_instance_id: i.container_instance_id.clone(),
            };
            let registered = i.registered_resources.clone().unwrap_or_default();
            let remaining = i.remaining_resources.clone().unwrap_or_default();
            let set = |f: &Family<InstanceLabels, Gauge>, v: u64| {
                f.get_or_create(&labels)
                    .set(i64::try_from(v).unwrap_or(i64::MAX));
            };
            set(&registered_cpu, registered.cpu);
            set(&reserved_cpu, registered.cpu.saturating_sub(remaining.cpu));
            set(&registered_mem, registered.memory_mib);
            set(
                &reserved_mem,
                registered.memory_mib.saturating_sub(remaining.memory_mib),
            );
            if let (_, Some(m)) = shared.telemetry.instance_status(&i.container_instance_id) {
                set(&measured_cpu, m.tasks_cpu);
                set(&measured_mem, m.tasks_memory_mib);
            }
            if shared.sessions.is_connected(&i.container_instance_id) {
                connected += 1;
            }
        }
        for status in [
            berth_proto::v1::TaskStatus::Provisioning,
            berth_proto::v1::TaskStatus::Pending,
            berth_proto::v1::TaskStatus::Pulled,
            berth_proto::v1::TaskStatus::Created,
            berth_proto::v1::TaskStatus::Running,
            berth_proto::v1::TaskStatus::Stopped,
        ] {
            // Every status is shown, at 0 when no task has it.
            tasks
                .get_or_create(&StatusLabels {
                    cluster: cluster.clone(),
                    status: status
                        .as_str_name()
                        .trim_start_matches("TASK_STATUS_")
                        .to_owned(),
                })
                .set(0);
        }
        for task in store.list_tasks(&cluster, None, None)? {
            let status = berth_proto::v1::TaskStatus::try_from(task.last_status)
                .map(|s| {
                    s.as_str_name()
                        .trim_start_matches("TASK_STATUS_")
                        .to_owned()
                })
                .unwrap_or_else(|_| "UNKNOWN".to_owned());
            tasks
                .get_or_create(&StatusLabels {
                    cluster: cluster.clone(),
                    status,
                })
                .inc();
        }
    }
    registry.register(
        "berth_scheduler_instance_registered_cpu",
        "CPU an instance registered, in ECS units (1024 per core)",
        registered_cpu,
    );
    registry.register(
        "berth_scheduler_instance_reserved_cpu",
        "CPU the instance's tasks that are not stopped reserve, in ECS units",
        reserved_cpu,
    );
    registry.register(
        "berth_scheduler_instance_measured_cpu",
        "CPU the instance's tasks use, measured over the latest metrics interval, in ECS units",
        measured_cpu,
    );
    registry.register(
        "berth_scheduler_instance_registered_memory_mebibytes",
        "Memory an instance registered, in MiB",
        registered_mem,
    );
    registry.register(
        "berth_scheduler_instance_reserved_memory_mebibytes",
        "Memory the instance's tasks that are not stopped reserve, in MiB",
        reserved_mem,
    );
    registry.register(
        "berth_scheduler_instance_measured_memory_mebibytes",
        "Memory (working set) the instance's tasks use, measured, in MiB",
        measured_mem,
    );
    registry.register(
        "berth_scheduler_instances",
        "Instances registered, by cluster",
        instances,
    );
    registry.register(
        "berth_scheduler_tasks",
        "Tasks the scheduler holds, by cluster and last status",
        tasks,
    );
    registry.register(
        "berth_scheduler_sessions_connected",
        "Agent sessions that are up",
        gauge(connected),
    );
    registry.register(
        "berth_scheduler_rpc_calls",
        "gRPC calls answered, by method",
        shared.rpc.calls.clone(),
    );
    registry.register(
        "berth_scheduler_rpc_duration_seconds",
        "How long gRPC calls took to answer (a stream: until its response started), by method",
        shared.rpc.seconds.clone(),
    );
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
    Ok(text)
}

/// Serves `/metrics` on `listener` until `cancel`.
pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>, cancel: CancellationToken) {
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
    let address = listener.local_addr().ok();
    tracing::info!(address = ?address, "scheduler metrics listening");
    let route = axum::routing::get(move || {
        let shared = Arc::clone(&shared);
        async move {
            let rendered = tokio::task::spawn_blocking(move || render(&shared)).await;
            match rendered {
                Ok(Ok(text)) => (
                    [(
                        header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    berth_policy::to_prometheus_text(&text),
                )
                    .into_response(),
                Ok(Err(error)) => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("cannot read the store: {error}\n"),
                )
                    .into_response(),
                Err(error) => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("metrics rendering failed: {error}\n"),
                )
                    .into_response(),
            }
        }
    });
    let router = axum::Router::new().route("/metrics", route);
    if let Err(error) = axum::serve(listener, router)
        .with_graceful_shutdown(cancel.cancelled_owned())
        .await
    {
        tracing::error!(%error, "scheduler metrics endpoint stopped");
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use berth_proto::v1 as pb;

    use super::*;
    use crate::server::ServerConfig;
    use crate::server::session::SessionRegistry;
    use crate::server::telemetry::Telemetry;
    use crate::store::Store;

    fn shared(dir: &std::path::Path) -> Shared {
        Shared {
            store: Store::open(dir).expect("store"),
            sessions: SessionRegistry::default(),
            liveness: crate::server::reconcile::Liveness::default(),
            revocations: crate::server::revoke::Revocations::default(),
            config: ServerConfig::default(),
            tracker: tokio_util::task::TaskTracker::new(),
            cancel: CancellationToken::new(),
            hooks: None,
            telemetry: Telemetry::new(Duration::from_secs(3600)),
            rpc: Arc::default(),
            pulls: crate::server::pulls::PullBook::default(),
        }
    }

    #[test]
    fn the_exposition_has_every_family_and_promtool_accepts_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let shared = shared(dir.path());
        shared.store.create_cluster("prod").expect("cluster");
        let id = shared
            .store
            .register_instance(&pb::RegisterRequest {
                cluster: "prod".into(),
                instance_identity: "host-1".into(),
                resources: Some(pb::Resources {
                    cpu: 2048,
                    memory_mib: 4096,
                    ..Default::default()
                }),
                ..Default::default()
            })
            .expect("instance");
        let at = |secs: i64| {
            Some(prost_types::Timestamp {
                seconds: secs,
                nanos: 0,
            })
        };
        for (secs, cpu) in [(1_800_000_000, 0u64), (1_800_000_010, 5_000_000_000)] {
            shared.telemetry.ingest(
                &pb::MetricsBatch {
                    container_instance_id: id.clone(),
                    collected_at: at(secs),
                    host: Some(pb::HostMetrics::default()),
                    containers: Vec::new(),
                    tasks: vec![pb::TaskMetrics {
                        task_id: "t1".into(),
                        stats: Some(pb::CgroupMetrics {
                            cpu_usage_ns: cpu,
                            memory_working_set_bytes: 100 << 20,
                            ..Default::default()
                        }),
                        ..Default::default()
                    }],
                    pulls: Vec::new(),
                },
                std::time::Instant::now(),
            );
        }
        shared
            .rpc
            .observe("/berth.v1.ControlService/RunTask", 0.003);
        let text = berth_policy::to_prometheus_text(&render(&shared).expect("render"));
        let instance = format!("cluster=\"prod\",container_instance_id=\"{id}\"");
        for line in [
            format!("berth_scheduler_instance_registered_cpu{{{instance}}} 2048"),
            format!("berth_scheduler_instance_reserved_cpu{{{instance}}} 0"),
            format!("berth_scheduler_instance_measured_cpu{{{instance}}} 512"),
            format!("berth_scheduler_instance_registered_memory_mebibytes{{{instance}}} 4096"),
            format!("berth_scheduler_instance_measured_memory_mebibytes{{{instance}}} 100"),
            "berth_scheduler_instances{cluster=\"prod\"} 1".to_owned(),
            "berth_scheduler_tasks{cluster=\"prod\",status=\"RUNNING\"} 0".to_owned(),
            "berth_scheduler_sessions_connected 0".to_owned(),
            "berth_scheduler_rpc_calls_total{method=\"berth.v1.ControlService/RunTask\"} 1".to_owned(),
            "berth_scheduler_rpc_duration_seconds_count{method=\"berth.v1.ControlService/RunTask\"} 1".to_owned(),
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        promtool_accepts(&text);
    }

    fn promtool_accepts(text: &str) {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let child = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match child {
            Ok(child) => child,
            Err(error) if std::env::var_os("CI").is_none() => {
                eprintln!(
                    "SKIPPED promtool check: cannot run promtool ({error}); install Debian's prometheus package"
                );
                return;
            }
            Err(error) => {
                panic!("cannot run promtool (install Debian's prometheus package): {error}")
            }
        };
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write to promtool");
        let out = child.wait_with_output().expect("promtool ran");
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && said.trim().is_empty(),
            "promtool check metrics: {said}\n{text}"
        );
    }
}
