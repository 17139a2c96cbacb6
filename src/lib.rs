//! # respan-exporter
//!
//! A Prometheus exporter for [Respan](https://respan.ai) (formerly Keywords AI):
//! what every end customer of an LLM product costs, in tokens, requests, USD and
//! latency, from Respan's "List customers" API.
//!
//! Data flows one way:
//!
//! ```text
//! config ──► api (client, wire types) ──► poller (crawl) ──► aggregate (pure)
//!                                                                 │
//!          HTTP server ◄── metrics (render) ◄── snapshot store ◄──┘
//! ```
//!
//! - [`config`]: flags and environment variables, checked into a [`Config`];
//!   the API key in a type that never prints.
//! - [`api`]: the List customers wire format (lenient per record, strict per
//!   page) and the HTTP client that builds every page URL itself.
//! - [`ratelimit`]: the client-side request budget shared by all environments.
//! - [`poller`]: crawls every page of each environment at an interval; a crawl
//!   is all or nothing.
//! - [`aggregate`]: pure functions from customers to the numbers served.
//! - [`snapshot`]: the last complete result per environment, swapped whole.
//! - [`metrics`]: every metric on a private registry, rendered at scrape time
//!   from the snapshots, never waiting on the API.
//! - [`server`]: landing page, metrics, `/healthz`, `/readyz`, over HTTP or
//!   TLS, with timeouts and a connection limit.
//! - [`web_config`]: `--web.config.file` (TLS, client certificates, basic auth).
//! - [`demo`]: a simulated Respan API for `--demo` and the integration tests.
//! - [`app`]: builds all of it from a [`Config`] and runs it until shutdown.

pub mod aggregate;
pub mod api;
pub mod app;
pub mod config;
pub mod demo;
pub mod metrics;
pub mod poller;
pub mod ratelimit;
pub mod server;
pub mod snapshot;
pub mod telemetry;
pub mod web_config;

pub use app::{Application, BuildError, shutdown_signal};
pub use config::{Cli, Config};
