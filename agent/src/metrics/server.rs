//! The agent's local introspection endpoint on `metrics_listen` (axum): `/metrics`,
//! `/v1/metadata`, `/v1/tasks`, `/healthz` and `/readyz`. It binds loopback unless the
//! operator configures another address, and answers only reads.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::collect::Snapshot;
use super::exposition;
use super::introspection::{self, TaskQuery};
use crate::engine::EngineHandle;
use crate::store::Store;

/// What the endpoint reads.
#[derive(Debug, Clone)]
pub(crate) struct Introspection {
    pub engine: EngineHandle,
    pub store: Arc<Store>,
    pub cluster: String,
    pub latest: watch::Receiver<Option<Arc<Snapshot>>>,
}

/// The routes, for `serve` and for tests.
pub(crate) fn router(state: Introspection) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/v1/metadata", get(metadata))
        .route("/v1/tasks", get(tasks))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
}

/// Serves until `cancel`.
pub(crate) async fn serve(listener: TcpListener, state: Introspection, cancel: CancellationToken) {
    let address = listener.local_addr().ok();
    tracing::info!(address = ?address, "introspection endpoint listening");
    if let Err(error) = axum::serve(listener, router(state))
        .with_graceful_shutdown(cancel.cancelled_owned())
        .await
    {
        tracing::error!(%error, "introspection endpoint stopped");
    }
}

/// OpenMetrics when the scraper asks for it, else Prometheus' text format.
async fn metrics(State(state): State<Introspection>, headers: HeaderMap) -> Response {
    let snapshot = state.latest.borrow().clone();
    let views = state.engine.views().await;
    let text = exposition::render(snapshot.as_deref(), &views);
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .is_some_and(|a| a.contains("application/openmetrics-text"));
    if openmetrics {
        (
            [(header::CONTENT_TYPE, exposition::OPENMETRICS_CONTENT_TYPE)],
            text,
        )
            .into_response()
    } else {
        (
            [(header::CONTENT_TYPE, exposition::TEXT_CONTENT_TYPE)],
            berth_policy::to_prometheus_text(&text),
        )
            .into_response()
    }
}

async fn metadata(State(state): State<Introspection>) -> Response {
    let instance = match state.store.registration() {
        Ok(registration) => registration.map(|(_, id)| id),
        Err(error) => return failure(&error.to_string()),
    };
    axum::Json(introspection::metadata(&state.cluster, instance.as_deref())).into_response()
}

#[derive(Debug, Deserialize)]
struct TasksParams {
    taskarn: Option<String>,
    dockerid: Option<String>,
}

async fn tasks(State(state): State<Introspection>, Query(params): Query<TasksParams>) -> Response {
    let query = match TaskQuery::new(params.taskarn, params.dockerid) {
        Ok(q) => q,
        Err(message) => {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({ "error": message })),
            )
                .into_response();
        }
    };
    let views = state.engine.views().await;
    match introspection::tasks(&views, &query) {
        Some(body) => axum::Json(body).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            axum::Json(json!({ "error": "no such task on this instance" })),
        )
            .into_response(),
    }
}

/// Alive: the process answers.
async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready: registered with the scheduler once, and the engine answers.
async fn readyz(State(state): State<Introspection>) -> Response {
    let registered = matches!(state.store.registration(), Ok(Some(_)));
    let engine = state.engine.barrier().await;
    let body = json!({ "registered": registered, "engine": engine });
    let status = if registered && engine {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

fn failure(message: &str) -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        axum::Json(json!({ "error": message })),
    )
        .into_response()
}
