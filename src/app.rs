//! Wiring: builds every part from a [`Config`] and runs them until shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::api::{ApiError, RespanClient};
use crate::config::{ApiKey, Config, KeySource};
use crate::demo::{DEMO_API_KEY, SimulatedApi};
use crate::metrics::Metrics;
use crate::poller::Poller;
use crate::ratelimit::{DEFAULT_BURST, RateLimiter};
use crate::server::{AppState, ServerLimits, router, serve};
use crate::snapshot::SnapshotStore;

/// Why the exporter could not start.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The listen address could not be bound.
    #[error("--web.listen-address: cannot listen on {address}: {source}")]
    Bind {
        /// The address.
        address: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The simulated API could not start.
    #[error("--demo: cannot start the simulated API: {0}")]
    Demo(std::io::Error),
    /// No key (only possible when a `Config` is built by hand).
    #[error("no API key configured")]
    NoKey,
    /// The metrics could not be registered (a bug).
    #[error("cannot register metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] ApiError),
}

/// A built exporter: listener bound, poller ready, nothing running yet.
pub struct Application {
    listener: TcpListener,
    local_addr: SocketAddr,
    state: AppState,
    poller: Arc<Poller>,
    shutdown: CancellationToken,
    api_url: String,
    tls: Option<Arc<rustls::ServerConfig>>,
    limits: ServerLimits,
}

impl Application {
    /// Builds every part and binds the listener (port 0 picks a free port).
    /// In demo mode it also starts the simulated API.
    pub async fn build(config: Config) -> Result<Self, BuildError> {
        let shutdown = CancellationToken::new();
        let (base_url, key) = if config.demo {
            let api = SimulatedApi::demo();
            let (url, _) = api
                .start(shutdown.child_token())
                .await
                .map_err(BuildError::Demo)?;
            tracing::info!(url = %url, "demo mode: polling a simulated Respan API");
            let base = crate::config::parse_base_url(&url)
                .map_err(|e| BuildError::Demo(std::io::Error::other(e)))?;
            let key = ApiKey::new(DEMO_API_KEY).ok_or(BuildError::NoKey)?;
            (base, KeySource::Fixed(key))
        } else {
            (
                config.base_url.clone(),
                config.key.clone().ok_or(BuildError::NoKey)?,
            )
        };

        let store = Arc::new(SnapshotStore::new(&config.environments));
        let metrics = Metrics::new(store.clone())?;
        let limiter = Arc::new(RateLimiter::per_minute(
            config.requests_per_minute,
            DEFAULT_BURST,
        ));
        let client = RespanClient::new(
            base_url.clone(),
            key,
            config.timeout,
            limiter,
            metrics.api(),
            config.retry.clone(),
        )?;
        let poller = Arc::new(Poller::new(
            client,
            store.clone(),
            metrics.clone(),
            config.top_n,
            config.poll_interval,
            config.full_sync_interval,
            config.incremental_margin,
        ));
        metrics.refresh();

        let address = config.listen_address.bind_target();
        let listener = TcpListener::bind(&address)
            .await
            .map_err(|source| BuildError::Bind {
                address: config.listen_address.to_string(),
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| BuildError::Bind {
            address: config.listen_address.to_string(),
            source,
        })?;

        Ok(Self {
            listener,
            local_addr,
            state: AppState {
                metrics,
                store,
                telemetry_path: config.telemetry_path.clone(),
                basic_auth: config.web.basic_auth.clone(),
            },
            tls: config.web.tls.clone(),
            limits: config.server_limits.clone(),
            poller,
            shutdown,
            api_url: base_url.to_string(),
        })
    }

    /// The port the web server listens on.
    pub fn port(&self) -> u16 {
        self.local_addr.port()
    }

    /// The address the web server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The API root being polled (the simulated API's in demo mode).
    pub fn api_url(&self) -> &str {
        &self.api_url
    }

    /// The poller, to poll on demand (tests).
    pub fn poller(&self) -> Arc<Poller> {
        self.poller.clone()
    }

    /// The handlers' state.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves HTTP and, when `poll` is true, polls in the background, until
    /// `shutdown` completes. Then stops the poller and drains connections.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
        poll: bool,
    ) {
        let token = self.shutdown.clone();
        let poller = self.poller.clone();
        let poll_task = poll.then(|| {
            let token = token.clone();
            tokio::spawn(async move { poller.run(token).await })
        });

        let host = if self.local_addr.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else {
            self.local_addr.ip().to_string()
        };
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host
        };
        tracing::info!(
            address = %self.local_addr,
            metrics = %format!("http://{host}:{}{}", self.local_addr.port(), self.state.telemetry_path),
            "listening"
        );

        let stop = token.clone();
        serve(
            self.listener,
            router(self.state),
            self.tls,
            self.limits,
            async move {
                tokio::select! {
                    _ = shutdown => {}
                    _ = stop.cancelled() => {}
                }
                tracing::info!("shutting down");
                stop.cancel();
            },
        )
        .await;
        token.cancel();
        if let Some(task) = poll_task {
            let _ = task.await;
        }
    }

    /// A token that stops the application when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }
}

/// Completes on Ctrl-C (SIGINT) or SIGTERM, which container runtimes send.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}
