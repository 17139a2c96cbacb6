//! The HTTP interface: landing page, metrics, health and readiness, served
//! over plain HTTP or TLS with timeouts that keep slow or idle clients from
//! holding resources.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::metrics::{Metrics, TEXT_CONTENT_TYPE};
use crate::snapshot::SnapshotStore;
use crate::web_config::BasicAuth;

/// Limits that keep slow, idle or numerous clients from holding resources.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerLimits {
    /// Time a client has to send a request's headers (idle keep-alive
    /// connections are closed after it too).
    pub header_read_timeout: Duration,
    /// Time a client has to finish the TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// Time a request may take in all.
    pub request_timeout: Duration,
    /// Connections served at once; more are closed at once.
    pub max_connections: usize,
    /// Time open connections get to finish at shutdown.
    pub shutdown_grace: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            tls_handshake_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_connections: 512,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Every metric.
    pub metrics: Metrics,
    /// The snapshots, for readiness and the landing page.
    pub store: Arc<SnapshotStore>,
    /// Where the metrics are served.
    pub telemetry_path: String,
    /// Basic authentication of the landing page and the metrics, when configured.
    pub basic_auth: Option<Arc<BasicAuth>>,
}

/// The routes, without a socket. With basic authentication configured, the
/// landing page and the metrics need it; `/healthz` and `/readyz` stay open for
/// orchestrator probes.
pub fn router(state: AppState) -> Router {
    let protected = Router::new()
        .route("/", get(landing))
        .route(&state.telemetry_path, get(metrics))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_auth));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(protected)
        .with_state(state)
}

async fn require_auth(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(auth) = state.basic_auth.clone() else {
        return next.run(request).await;
    };
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // bcrypt is slow on purpose: keep it off the async workers.
    let ok = tokio::task::spawn_blocking(move || auth.check(header.as_deref()))
        .await
        .unwrap_or(false);
    if ok {
        next.run(request).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"respan-exporter\"")],
            "unauthorized\n",
        )
            .into_response()
    }
}

/// Serves `router` on `listener` (over TLS when `tls` is set) until `shutdown`
/// completes, then gives open connections `limits.shutdown_grace` to finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()>,
) {
    let router = router.layer(middleware::from_fn_with_state(
        limits.request_timeout,
        request_timeout,
    ));
    let acceptor = tls.map(TlsAcceptor::from);
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "connection limit reached; closing a new connection");
            continue;
        };
        let service = TowerToHyperService::new(router.clone());
        let acceptor = acceptor.clone();
        let watcher = graceful.watcher();
        let limits = limits.clone();
        tokio::spawn(async move {
            let _slot = slot;
            // The protocol is fixed up front (HTTP/1.1 in the clear, ALPN's
            // choice under TLS) rather than sniffed, so that the header read
            // timeout runs from the first byte a client owes.
            let builder = |http2: bool| {
                let builder = Builder::new(TokioExecutor::new());
                let mut builder = if http2 {
                    builder.http2_only()
                } else {
                    builder.http1_only()
                };
                builder
                    .http1()
                    .timer(TokioTimer::new())
                    .header_read_timeout(limits.header_read_timeout);
                builder
                    .http2()
                    .timer(TokioTimer::new())
                    .keep_alive_interval(limits.header_read_timeout)
                    .keep_alive_timeout(limits.header_read_timeout);
                builder
            };
            let served = match acceptor {
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(limits.tls_handshake_timeout, acceptor.accept(stream))
                            .await;
                    let stream = match handshake {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    };
                    let http2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                    let builder = builder(http2);
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    watcher.watch(conn.into_owned()).await
                }
                None => {
                    let builder = builder(false);
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    watcher.watch(conn.into_owned()).await
                }
            };
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(limits.shutdown_grace) => {
            tracing::warn!("connections still open after the shutdown grace period; closing them");
        }
    }
}

async fn request_timeout(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "request timed out\n").into_response(),
    }
}

async fn metrics(State(state): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    let prepared = state.metrics.prepared();
    let gzip = headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';');
            let name = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| matches!(p.trim(), "q=0" | "q=0.0" | "q=0.00" | "q=0.000"));
            name.eq_ignore_ascii_case("gzip") && !refused
        });
    if gzip && !prepared.gzip.is_empty() {
        (
            [
                (header::CONTENT_TYPE, TEXT_CONTENT_TYPE),
                (header::CONTENT_ENCODING, "gzip"),
                (header::VARY, "Accept-Encoding"),
            ],
            prepared.gzip.clone(),
        )
            .into_response()
    } else {
        (
            [
                (header::CONTENT_TYPE, TEXT_CONTENT_TYPE),
                (header::VARY, "Accept-Encoding"),
            ],
            prepared.plain.clone(),
        )
            .into_response()
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
