//! The HTTP interface: landing page, metrics, health and readiness.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use crate::metrics::{Metrics, TEXT_CONTENT_TYPE};
use crate::snapshot::SnapshotStore;

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Every metric.
    pub metrics: Metrics,
    /// The snapshots, for readiness and the landing page.
    pub store: Arc<SnapshotStore>,
    /// Where the metrics are served.
    pub telemetry_path: String,
}

/// The routes, without a socket (tests drive it with `oneshot`).
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(landing))
        .route(&state.telemetry_path, get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
}

async fn metrics(State(state): State<AppState>) -> Response {
    match state.metrics.render() {
        Ok(body) => ([(header::CONTENT_TYPE, TEXT_CONTENT_TYPE)], body).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode metrics");
            (StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics\n").into_response()
        }
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.store.readiness() {
        Ok(()) => "ready\n".into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        )
            .into_response(),
    }
}

fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

async fn landing(State(state): State<AppState>) -> Html<String> {
    let mut rows = String::new();
    for (env, status) in state.store.statuses() {
        let health = match (&status.snapshot, status.up, &status.last_error) {
            (_, true, _) => "up".to_string(),
            (_, false, Some(e)) => format!("last poll failed: {e}"),
            (_, false, None) => "waiting for the first poll".to_string(),
        };
        let customers = status
            .snapshot
            .map(|s| s.aggregate.customers.to_string())
            .unwrap_or_else(|| "–".into());
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            escape_html(&env),
            customers,
            escape_html(&health)
        ));
    }
    let path = escape_html(&state.telemetry_path);
    Html(format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Respan exporter</title></head>
<body>
<h1>Respan exporter</h1>
<p>Prometheus exporter for Respan customers' LLM cost, tokens, requests and latency. Version {version}.</p>
<ul>
<li><a href="{path}">Metrics</a></li>
<li><a href="/healthz">Health</a></li>
<li><a href="/readyz">Readiness</a></li>
</ul>
<table>
<tr><th>environment</th><th>customers</th><th>status</th></tr>
{rows}</table>
</body>
</html>
"#,
        version = env!("CARGO_PKG_VERSION"),
    ))
}
