//! The task endpoint: ECS's task metadata (v4 shape) at `http://169.254.170.2/v4/<id>`, with
//! its `/task`, `/stats` and `/task/stats` (`endpoint/stats.rs`),
//! reachable from inside every task with an address of the agent's (awsvpc and bridge modes).
//! Each container gets its URL in `ECS_CONTAINER_METADATA_URI_V4`; its `<id>` is 128 random
//! bits the engine keeps with the task (`store.rs`). A request is answered only when the ID is
//! one of the calling task's containers' and the call comes from that task's own address;
//! anything else is a 404 that tells nothing of other tasks. A task (a source address) holds at
//! most [`MAX_CONNECTIONS_PER_TASK`] connections at once; more are answered 429 and closed.
//!
//! The agent listens on 169.254.170.2:51679 (an address of the bridge); nftables sends tasks'
//! port 80 there, and drops traffic to that address from anywhere but the bridge and the host.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use berth_proto::v1::{
    ContainerState, ContainerStatus, DesiredStatus, HealthStatus, TaskState, TaskStatus,
};
use berth_runtime::rfc3339_nanos;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::engine::{EngineHandle, TaskView};
use crate::metrics::Snapshot;
use crate::network::TaskNetworking;
use crate::task::{METADATA_ENV, task_of_namespace};

mod stats;

/// The agent's latest metrics pass, for `/stats` and `/task/stats`.
pub(crate) type Snapshots = tokio::sync::watch::Receiver<Option<Arc<Snapshot>>>;

/// How long one connection may stay open (requests are small and answered at once).
const CONNECTION_DEADLINE: Duration = Duration::from_secs(30);

/// The most connections one task (one source address) holds open at once: far above what a
/// task polling its metadata needs (the ECS agent's own clients use one), low enough that no
/// task can tie up the agent's memory or file descriptors.
pub(crate) const MAX_CONNECTIONS_PER_TASK: usize = 16;

/// What a connection over the cap is told before it is closed.
const TOO_MANY: &[u8] = b"HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\n\
connection: close\r\ncontent-length: 59\r\n\r\n\
{\"error\":\"too many open connections to the task endpoint\"}\n";

/// The open connections of each caller.
#[derive(Debug, Default)]
pub(crate) struct Connections {
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One open connection, counted until dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    connections: Arc<Connections>,
    peer: IpAddr,
}

impl Connections {
    /// A slot for one more connection from `peer`; None when it holds the cap already.
    pub(crate) fn take(self: &Arc<Self>, peer: IpAddr) -> Option<Slot> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(peer).or_insert(0);
        if *n >= MAX_CONNECTIONS_PER_TASK {
            return None;
        }
        *n += 1;
        Some(Slot {
            connections: Arc::clone(self),
            peer,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self
            .connections
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.peer);
            }
        }
    }
}

/// Serves the endpoint until `cancel`; open connections are dropped then.
pub(crate) async fn serve(
    listener: TcpListener,
    engine: EngineHandle,
    network: Arc<dyn TaskNetworking>,
    cluster: String,
    snapshots: Snapshots,
    cancel: CancellationToken,
) {
    let connections = TaskTracker::new();
    let open = Arc::new(Connections::default());
    loop {
        let (stream, peer) = tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(error) => {
                    tracing::warn!(%error, "task endpoint: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Some(slot) = open.take(peer.ip()) else {
            tracing::debug!(%peer, cap = MAX_CONNECTIONS_PER_TASK, "task endpoint: connection over the cap refused");
            connections.spawn(async move {
                let mut stream = stream;
                let _ = tokio::time::timeout(Duration::from_secs(1), async {
                    use tokio::io::AsyncWriteExt;
                    let _ = stream.write_all(TOO_MANY).await;
                    let _ = stream.shutdown().await;
                })
                .await;
            });
            continue;
        };
        let (engine, cluster, cancel) = (engine.clone(), cluster.clone(), cancel.clone());
        let network = Arc::clone(&network);
        let snapshots = snapshots.clone();
        connections.spawn(async move {
            let _slot = slot;
            let service = hyper::service::service_fn(move |request| {
                let (engine, network, cluster) =
                    (engine.clone(), Arc::clone(&network), cluster.clone());
                let snapshots = snapshots.clone();
                async move {
                    Ok::<_, Infallible>(
                        answer(&engine, &*network, &cluster, &snapshots, peer, request).await,
                    )
                }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = tokio::time::sleep(CONNECTION_DEADLINE) => {}
                result = connection => {
                    if let Err(error) = result {
                        tracing::debug!(%error, %peer, "task endpoint: connection ended with an error");
                    }
                }
            }
        });
    }
    connections.close();
    connections.wait().await;
}

async fn answer(
    engine: &EngineHandle,
    network: &dyn TaskNetworking,
    cluster: &str,
    snapshots: &Snapshots,
    peer: SocketAddr,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    if request.method() != Method::GET {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            &json!({"error": "only GET is served"}),
        );
    }
    let route = match Route::parse(request.uri().path()) {
        Ok(r) => r,
        Err(message) => return reply(StatusCode::NOT_FOUND, &json!({ "error": message })),
    };
    let IpAddr::V4(address) = peer.ip() else {
        return reply(
            StatusCode::NOT_FOUND,
            &json!({"error": "the task endpoint serves IPv4 task addresses only"}),
        );
    };
    // An ENI task calls from its endpoint veth, whose address only the network knows.
    let view = match engine.task_at(address).await {
        Some(view) => Some(view),
        None => match network.owner_of(address).await {
            Some(name) => engine.task_by_id(task_of_namespace(&name)).await,
            None => None,
        },
    };
    let Some(view) = view else {
        return reply(
            StatusCode::NOT_FOUND,
            &json!({ "error": format!("no running task of this host has address {address}") }),
        );
    };
    let latest = snapshots.borrow().clone();
    match render(&route, &view, cluster, address, latest.as_deref()) {
        Ok(body) => reply(StatusCode::OK, &body),
        Err(message) => reply(StatusCode::NOT_FOUND, &json!({ "error": message })),
    }
}

fn reply(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    /// `/v4/<endpoint id>`
    Container(String),
    /// `/v4/<endpoint id>/task`
    Task(String),
    /// `/v4/<endpoint id>/stats`
    ContainerStats(String),
    /// `/v4/<endpoint id>/task/stats`
    TaskStats(String),
}

impl Route {
    /// Parses a request path; the error says what is served.
    pub(crate) fn parse(path: &str) -> Result<Route, String> {
        let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
        match parts.as_slice() {
            ["", "v4", name] if !name.is_empty() => Ok(Route::Container((*name).to_owned())),
            ["", "v4", name, "task"] if !name.is_empty() => Ok(Route::Task((*name).to_owned())),
            ["", "v4", name, "stats"] if !name.is_empty() => {
                Ok(Route::ContainerStats((*name).to_owned()))
            }
            ["", "v4", name, "task", "stats"] if !name.is_empty() => {
                Ok(Route::TaskStats((*name).to_owned()))
            }
            _ => Err(format!(
                "{path} is not served here: use the URL in {METADATA_ENV}, or it followed by /task, /stats or /task/stats"
            )),
        }
    }
}

/// Whether two IDs are equal, in a time that does not depend on where they differ.
fn same_id(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The JSON a route asks for, from the task that has the caller's `address`: only when the
/// route's ID is one of that task's containers'.
pub(crate) fn render(
    route: &Route,
    view: &TaskView,
    cluster: &str,
    address: Ipv4Addr,
    latest: Option<&Snapshot>,
) -> Result<Value, String> {
    let (Route::Container(id) | Route::Task(id) | Route::ContainerStats(id) | Route::TaskStats(id)) =
        route;
    let mut owner = None;
    for (container, theirs) in view.endpoint_ids.iter() {
        if same_id(id, theirs) {
            owner = Some(container.clone());
        }
    }
    let Some(name) = owner.filter(|n| view.state.containers.iter().any(|c| c.name == *n)) else {
        return Err(format!(
            "the task at {address} has no container with this metadata id (its URL is in {METADATA_ENV})"
        ));
    };
    let name = &name;
    Ok(match route {
        Route::Container(_) => view
            .state
            .containers
            .iter()
            .find(|c| c.name == *name)
            .map(|c| container_json(view, c))
            .unwrap_or_default(),
        Route::Task(_) => task_json(view, cluster),
        Route::ContainerStats(_) => latest
            .and_then(|l| stats::container_stats(view, name, l))
            .unwrap_or_else(|| json!({})),
        Route::TaskStats(_) => stats::task_stats(view, latest),
    })
}

/// An enum value's name without its prefix: `TASK_STATUS_RUNNING` → `RUNNING`.
fn short(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix).unwrap_or(name).to_owned()
}

fn time(ts: &Option<prost_types::Timestamp>) -> Value {
    ts.as_ref()
        .and_then(|t| {
            let secs = u64::try_from(t.seconds).ok()?;
            let nanos = u32::try_from(t.nanos).ok()?;
            SystemTime::UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
        })
        .map_or(Value::Null, |t| Value::String(rfc3339_nanos(t)))
}

fn desired(state: &TaskState) -> String {
    DesiredStatus::try_from(state.desired_status)
        .map(|s| short(s.as_str_name(), "DESIRED_STATUS_"))
        .unwrap_or_default()
}

fn container_json(view: &TaskView, c: &ContainerState) -> Value {
    let def = view.definition.containers.iter().find(|d| d.name == c.name);
    let mode = match view.definition.network_mode.as_str() {
        "" => "bridge",
        m => m,
    };
    let mut network = json!({ "NetworkMode": mode });
    if let Some(a) = view.state.attachments.first() {
        network["IPv4Addresses"] = json!([a.private_ipv4_address]);
        network["MACAddress"] = json!(a.mac_address);
        network["IPv4SubnetCIDRBlock"] = json!(a.subnet);
        network["SubnetGatewayIpv4Address"] = json!(a.gateway);
    } else if !c.private_ipv4_address.is_empty() {
        network["IPv4Addresses"] = json!([c.private_ipv4_address]);
    }
    let mut out = json!({
        "DockerId": c.runtime_id,
        "Name": c.name,
        "DockerName": c.runtime_id,
        "Image": c.image,
        "ImageID": c.image_digest,
        "Labels": def.map(|d| json!(d.docker_labels)).unwrap_or_else(|| json!({})),
        "DesiredStatus": desired(&view.state),
        "KnownStatus": ContainerStatus::try_from(c.status)
            .map(|s| short(s.as_str_name(), "CONTAINER_STATUS_"))
            .unwrap_or_default(),
        "Limits": {
            "CPU": def.map_or(0, |d| d.cpu),
            "Memory": def.map_or(0, |d| d.memory_mib),
        },
        "Type": "NORMAL",
        "RestartCount": c.restart_count,
        "Networks": [network],
    });
    if let Some(code) = c.exit_code {
        out["ExitCode"] = json!(code);
    }
    if !c.network_bindings.is_empty() {
        out["Ports"] = c
            .network_bindings
            .iter()
            .map(|b| {
                json!({
                    "ContainerPort": b.container_port,
                    "Protocol": b.protocol,
                    "HostPort": b.host_port,
                    "HostIp": b.bind_ip,
                })
            })
            .collect();
    }
    if def.is_some_and(|d| d.health_check.is_some()) {
        out["Health"] = json!({
            "status": HealthStatus::try_from(c.health_status)
                .map(|s| short(s.as_str_name(), "HEALTH_STATUS_"))
                .unwrap_or_default(),
        });
    }
    out
}

fn task_json(view: &TaskView, cluster: &str) -> Value {
    let d = &view.definition;
    let s = &view.state;
    let mut limits = json!({});
    if d.cpu > 0 {
        // ECS gives the task's CPU in vCPUs.
        limits["CPU"] = json!(f64::from(d.cpu) / 1024.0);
    }
    if d.memory_mib > 0 {
        limits["Memory"] = json!(d.memory_mib);
    }
    json!({
        "Cluster": cluster,
        "TaskARN": s.task_id,
        "Family": d.family,
        "Revision": d.revision.to_string(),
        "DesiredStatus": desired(s),
        "KnownStatus": TaskStatus::try_from(s.status)
            .map(|t| short(t.as_str_name(), "TASK_STATUS_"))
            .unwrap_or_default(),
        "Limits": limits,
        "PullStartedAt": time(&s.pull_started_at),
        "PullStoppedAt": time(&s.pull_stopped_at),
        "LaunchType": "EC2",
        "Containers": s
            .containers
            .iter()
            .map(|c| container_json(view, c))
            .collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use berth_proto::v1::{ContainerDefinition, NetworkAttachment, NetworkBinding, TaskDefinition};

    use super::*;

    const APP_ID: &str = "3f2a9c0e7b5d41e8a6c2f9d0b1e4a7c3";

    fn view() -> TaskView {
        TaskView {
            definition: Arc::new(TaskDefinition {
                family: "web".into(),
                revision: 3,
                cpu: 512,
                memory_mib: 1024,
                network_mode: "awsvpc".into(),
                containers: vec![ContainerDefinition {
                    name: "app".into(),
                    cpu: 256,
                    memory_mib: 512,
                    docker_labels: [("team".to_owned(), "a".to_owned())].into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            state: TaskState {
                task_id: "t-1".into(),
                status: TaskStatus::Running as i32,
                desired_status: DesiredStatus::Running as i32,
                containers: vec![ContainerState {
                    name: "app".into(),
                    status: ContainerStatus::Running as i32,
                    runtime_id: "t-1.app".into(),
                    image: "reg/app:1".into(),
                    image_digest: "sha256:abc".into(),
                    network_bindings: vec![NetworkBinding {
                        bind_ip: "0.0.0.0".into(),
                        container_port: 80,
                        host_port: 49153,
                        protocol: "tcp".into(),
                    }],
                    ..Default::default()
                }],
                attachments: vec![NetworkAttachment {
                    mac_address: "02:42:0a:de:00:02".into(),
                    private_ipv4_address: "10.222.0.2".into(),
                    subnet: "10.222.0.0/16".into(),
                    gateway: "10.222.0.1".into(),
                    interface_name: "eth0".into(),
                }],
                pull_started_at: Some(prost_types::Timestamp {
                    seconds: 1_795_778_400,
                    nanos: 0,
                }),
                ..Default::default()
            },
            endpoint_ids: Arc::new([("app".to_owned(), APP_ID.to_owned())].into()),
        }
    }

    fn pass(secs: u64, cpu_ns: u64, previous: Option<Arc<Snapshot>>) -> Arc<Snapshot> {
        use berth_runtime::{
            CgroupStats, ContainerSample, CpuStats, InterfaceStats, MemoryStats, TaskSample,
        };
        let stats = CgroupStats {
            cpu: Some(CpuStats {
                usage_ns: cpu_ns,
                user_ns: cpu_ns / 2,
                system_ns: cpu_ns / 2,
                ..Default::default()
            }),
            memory: Some(MemoryStats {
                usage_bytes: 64 << 20,
                working_set_bytes: 60 << 20,
                limit_bytes: Some(512 << 20),
                ..Default::default()
            }),
            pids: None,
            blkio: None,
        };
        Arc::new(Snapshot {
            collected_at: SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
            host: crate::metrics::HostSample {
                cpus: 2,
                system_cpu_ns: secs * 2_000_000_000,
                memory_total_bytes: 8 << 30,
                ..Default::default()
            },
            tasks: vec![crate::metrics::TaskMetrics {
                task_id: "t-1".into(),
                family: "web".into(),
                revision: 3,
                sample: TaskSample {
                    task: None,
                    containers: vec![ContainerSample {
                        name: "app".into(),
                        stats,
                    }],
                    networks: vec![InterfaceStats {
                        name: "eth0".into(),
                        rx_bytes: 1234,
                        ..Default::default()
                    }],
                },
            }],
            previous,
        })
    }

    #[test]
    fn stats_in_dockers_shape_with_the_previous_pass() {
        let ip = Ipv4Addr::new(10, 222, 0, 5);
        let before = pass(1_800_000_000, 1_000_000_000, None);
        let latest = pass(1_800_000_010, 6_000_000_000, Some(before));
        let s = render(
            &Route::ContainerStats(APP_ID.into()),
            &view(),
            "prod",
            ip,
            Some(&latest),
        )
        .unwrap();
        assert_eq!(s["id"], "t-1.app");
        assert_eq!(s["cpu_stats"]["cpu_usage"]["total_usage"], 6_000_000_000u64);
        assert_eq!(
            s["precpu_stats"]["cpu_usage"]["total_usage"],
            1_000_000_000u64
        );
        // Docker's CPU %: 5 s of 20 s of both cores, times two cores: 50 %.
        let delta = |k: &str| {
            s["cpu_stats"][k].as_u64().unwrap_or(0) - s["precpu_stats"][k].as_u64().unwrap_or(0)
        };
        let cpu = |v: &Value| v["cpu_usage"]["total_usage"].as_u64().unwrap_or(0);
        let used = (cpu(&s["cpu_stats"]) - cpu(&s["precpu_stats"])) as f64;
        let percent = used / delta("system_cpu_usage") as f64 * 2.0 * 100.0;
        assert!((percent - 50.0).abs() < 1e-9, "{percent}");
        assert_eq!(s["memory_stats"]["usage"], 64u64 << 20);
        assert_eq!(s["memory_stats"]["limit"], 512u64 << 20);
        assert_eq!(s["networks"]["eth0"]["rx_bytes"], 1234);
        assert_eq!(
            s["blkio_stats"]["io_service_bytes_recursive"][0]["op"],
            "read"
        );
        assert_eq!(s["pids_stats"]["current"], 0);
        assert_eq!(s["read"], "2027-01-15T08:00:10.000000000Z");
        assert_eq!(s["preread"], "2027-01-15T08:00:00.000000000Z");

        let t = render(
            &Route::TaskStats(APP_ID.into()),
            &view(),
            "prod",
            ip,
            Some(&latest),
        )
        .unwrap();
        assert_eq!(t["t-1.app"]["memory_stats"]["usage"], 64u64 << 20);
        // Without a pass yet: the containers are there, without stats.
        let t = render(&Route::TaskStats(APP_ID.into()), &view(), "prod", ip, None).unwrap();
        assert_eq!(t["t-1.app"], Value::Null);
        // Another task's ID answers nothing.
        let other = "0".repeat(32);
        assert!(render(&Route::TaskStats(other), &view(), "prod", ip, Some(&latest)).is_err());
    }

    #[test]
    fn routes() {
        assert_eq!(Route::parse("/v4/app"), Ok(Route::Container("app".into())));
        assert_eq!(Route::parse("/v4/app/task/"), Ok(Route::Task("app".into())));
        assert_eq!(
            Route::parse("/v4/app/stats"),
            Ok(Route::ContainerStats("app".into()))
        );
        assert_eq!(
            Route::parse("/v4/app/task/stats"),
            Ok(Route::TaskStats("app".into()))
        );
        for bad in ["/", "/v4", "/v4/", "/v2/metadata", "/v4/app/stats/x"] {
            let e = Route::parse(bad).unwrap_err();
            assert!(e.contains(METADATA_ENV), "{bad}: {e}");
        }
    }

    #[test]
    fn container_metadata_in_ecs_shape() {
        let ip = Ipv4Addr::new(10, 222, 0, 2);
        let c = render(&Route::Container(APP_ID.into()), &view(), "prod", ip, None).unwrap();
        assert_eq!(c["DockerId"], "t-1.app");
        assert_eq!(c["KnownStatus"], "RUNNING");
        assert_eq!(c["DesiredStatus"], "RUNNING");
        assert_eq!(c["Limits"]["Memory"], 512);
        assert_eq!(c["Labels"]["team"], "a");
        assert_eq!(c["Networks"][0]["NetworkMode"], "awsvpc");
        assert_eq!(c["Networks"][0]["IPv4Addresses"][0], "10.222.0.2");
        assert_eq!(c["Ports"][0]["HostPort"], 49153);
        assert!(c.get("Health").is_none() && c.get("ExitCode").is_none());
        // A container's name, a guessed ID, another task's ID: nothing.
        let mut guessed = APP_ID.to_owned();
        guessed.replace_range(31.., "4");
        for wrong in ["app", guessed.as_str(), "", "0"] {
            for route in [Route::Container(wrong.into()), Route::Task(wrong.into())] {
                let e = render(&route, &view(), "prod", ip, None).unwrap_err();
                assert!(e.contains("no container with this metadata id"), "{e}");
            }
        }
    }

    #[test]
    fn a_task_holds_at_most_the_cap_of_connections() {
        let open = Arc::new(Connections::default());
        let (a, b): (IpAddr, IpAddr) =
            ("10.222.0.2".parse().unwrap(), "10.222.0.3".parse().unwrap());
        let mut slots: Vec<Slot> = (0..MAX_CONNECTIONS_PER_TASK)
            .map(|_| open.take(a).unwrap())
            .collect();
        assert!(open.take(a).is_none(), "one over the cap");
        assert!(open.take(b).is_some(), "another task is not held back");
        slots.pop();
        let again = open.take(a);
        assert!(again.is_some(), "a closed connection frees its slot");
        drop((slots, again));
        assert!(
            open.open.lock().unwrap().is_empty(),
            "nothing kept of closed connections"
        );
        let text = std::str::from_utf8(TOO_MANY).unwrap();
        let (headers, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            headers.contains(&format!("content-length: {}", body.len())),
            "{text}"
        );
    }

    #[test]
    fn task_metadata_in_ecs_shape() {
        let ip = Ipv4Addr::new(10, 222, 0, 2);
        let t = render(&Route::Task(APP_ID.into()), &view(), "prod", ip, None).unwrap();
        assert_eq!(t["Cluster"], "prod");
        assert_eq!(t["TaskARN"], "t-1");
        assert_eq!(t["Family"], "web");
        assert_eq!(t["Revision"], "3");
        assert_eq!(t["Limits"]["CPU"], 0.5);
        assert_eq!(t["PullStartedAt"], "2026-11-27T11:20:00.000000000Z");
        assert_eq!(t["PullStoppedAt"], Value::Null);
        assert_eq!(t["Containers"][0]["Name"], "app");
    }
}
