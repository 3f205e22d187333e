//! The task endpoint: ECS's task metadata (v4 shape) at `http://169.254.170.2/v4/<container>`,
//! reachable from inside every task with an address of the agent's (awsvpc and bridge modes).
//! A caller is known by its source address, so a task reads only its own metadata; the
//! container name in the path picks one of its containers (each gets its URL in
//! `ECS_CONTAINER_METADATA_URI_V4`).
//!
//! The agent listens on 169.254.170.2:51679 (an address of the bridge); nftables sends tasks'
//! port 80 there, and drops traffic to that address from anywhere but the bridge and the host.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
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
use crate::network::TaskNetworking;
use crate::task::{METADATA_ENV, task_of_namespace};

/// How long one connection may stay open (requests are small and answered at once).
const CONNECTION_DEADLINE: Duration = Duration::from_secs(30);

/// Serves the endpoint until `cancel`; open connections are dropped then.
pub(crate) async fn serve(
    listener: TcpListener,
    engine: EngineHandle,
    network: Arc<dyn TaskNetworking>,
    cluster: String,
    cancel: CancellationToken,
) {
    let connections = TaskTracker::new();
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
        let (engine, cluster, cancel) = (engine.clone(), cluster.clone(), cancel.clone());
        let network = Arc::clone(&network);
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let (engine, network, cluster) =
                    (engine.clone(), Arc::clone(&network), cluster.clone());
                async move {
                    Ok::<_, Infallible>(answer(&engine, &*network, &cluster, peer, request).await)
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
    match render(&route, &view, cluster, address) {
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
    /// `/v4/<container>`
    Container(String),
    /// `/v4/<container>/task`
    Task(String),
}

impl Route {
    /// Parses a request path; the error says what is served.
    pub(crate) fn parse(path: &str) -> Result<Route, String> {
        let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
        match parts.as_slice() {
            ["", "v4", name] if !name.is_empty() => Ok(Route::Container((*name).to_owned())),
            ["", "v4", name, "task"] if !name.is_empty() => Ok(Route::Task((*name).to_owned())),
            _ => Err(format!(
                "{path} is not served here: use /v4/<container name> or /v4/<container name>/task \
                 (the URL is in {METADATA_ENV})"
            )),
        }
    }
}

/// The JSON a route asks for, from the task that has the caller's `address`.
pub(crate) fn render(
    route: &Route,
    view: &TaskView,
    cluster: &str,
    address: Ipv4Addr,
) -> Result<Value, String> {
    let (Route::Container(name) | Route::Task(name)) = route;
    if !view.state.containers.iter().any(|c| c.name == *name) {
        return Err(format!(
            "the task at {address} has no container named {name:?}"
        ));
    }
    Ok(match route {
        Route::Container(_) => view
            .state
            .containers
            .iter()
            .find(|c| c.name == *name)
            .map(|c| container_json(view, c))
            .unwrap_or_default(),
        Route::Task(_) => task_json(view, cluster),
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
        }
    }

    #[test]
    fn routes() {
        assert_eq!(Route::parse("/v4/app"), Ok(Route::Container("app".into())));
        assert_eq!(Route::parse("/v4/app/task/"), Ok(Route::Task("app".into())));
        for bad in ["/", "/v4", "/v4/", "/v2/metadata", "/v4/app/stats/x"] {
            let e = Route::parse(bad).unwrap_err();
            assert!(e.contains(METADATA_ENV), "{bad}: {e}");
        }
    }

    #[test]
    fn container_metadata_in_ecs_shape() {
        let ip = Ipv4Addr::new(10, 222, 0, 2);
        let c = render(&Route::Container("app".into()), &view(), "prod", ip).unwrap();
        assert_eq!(c["DockerId"], "t-1.app");
        assert_eq!(c["KnownStatus"], "RUNNING");
        assert_eq!(c["DesiredStatus"], "RUNNING");
        assert_eq!(c["Limits"]["Memory"], 512);
        assert_eq!(c["Labels"]["team"], "a");
        assert_eq!(c["Networks"][0]["NetworkMode"], "awsvpc");
        assert_eq!(c["Networks"][0]["IPv4Addresses"][0], "10.222.0.2");
        assert_eq!(c["Ports"][0]["HostPort"], 49153);
        assert!(c.get("Health").is_none() && c.get("ExitCode").is_none());
        let e = render(&Route::Container("db".into()), &view(), "prod", ip).unwrap_err();
        assert!(e.contains("no container named \"db\""), "{e}");
    }

    #[test]
    fn task_metadata_in_ecs_shape() {
        let ip = Ipv4Addr::new(10, 222, 0, 2);
        let t = render(&Route::Task("app".into()), &view(), "prod", ip).unwrap();
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
