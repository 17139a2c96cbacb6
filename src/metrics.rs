//! Every metric the exporter serves, on a private registry.
//!
//! The numbers of the last completed polls come from the [`SnapshotStore`]
//! through a collector that reads it at scrape time, so a scrape sees each
//! environment's snapshot whole. Counters of the exporter's own work
//! (`*_total`) are ordinary registered counters. Names and labels are a
//! contract: dashboards and alerts depend on them.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::body::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;

use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, LabelPair, MetricFamily, MetricType};
use prometheus::{Counter, Encoder, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::aggregate::WINDOWS;
use crate::api::Customer;
use crate::snapshot::SnapshotStore;

/// Content type of the text exposition format.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A metric the snapshot collector serves: name, help and label names.
struct Spec {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
}

const ENV: &[&str] = &["environment"];
const ENV_WINDOW: &[&str] = &["environment", "window"];
const ENV_CUSTOMER: &[&str] = &["environment", "customer_identifier"];
const ENV_MODE: &[&str] = &["environment", "mode"];

/// A spec whose HELP ends by saying where the number comes from.
macro_rules! spec {
    ($name:literal, $labels:expr, $help:literal) => {
        Spec {
            name: $name,
            help: concat!(
                $help,
                " Cached from the last completed background poll of Respan's List customers API."
            ),
            labels: $labels,
        }
    };
}

const CUSTOMERS: Spec = spec!("respan_customers", ENV, "Customers in the environment.");
const COST: Spec = spec!(
    "respan_cost_usd",
    ENV,
    "Lifetime cost of all customers in USD (sum of total_cost)."
);
const TOKENS: Spec = spec!(
    "respan_tokens",
    ENV,
    "Lifetime tokens of all customers (sum of total_tokens)."
);
const REQUESTS: Spec = spec!(
    "respan_requests",
    ENV,
    "Lifetime requests of all customers (sum of number_of_requests)."
);
const LATENCY: Spec = spec!(
    "respan_average_latency_seconds",
    ENV,
    "Mean request latency in seconds: average_latency weighted by number_of_requests over all customers."
);
const TTFT: Spec = spec!(
    "respan_average_ttft_seconds",
    ENV,
    "Mean time to first token in seconds: average_ttft weighted by number_of_requests over the customers that report it."
);
const ACTIVE: Spec = spec!(
    "respan_active_customers",
    ENV_WINDOW,
    "Customers whose last_active_timeframe is within the window before the poll."
);
const NEW: Spec = spec!(
    "respan_new_customers",
    ENV_WINDOW,
    "Customers whose first_seen is within the window before the poll."
);
const C_COST: Spec = spec!(
    "respan_customer_cost_usd",
    ENV_CUSTOMER,
    "Lifetime cost in USD (total_cost) of a top-N customer by cost."
);
const C_TOKENS: Spec = spec!(
    "respan_customer_tokens",
    ENV_CUSTOMER,
    "Lifetime tokens (total_tokens) of a top-N customer by cost."
);
const C_REQUESTS: Spec = spec!(
    "respan_customer_requests",
    ENV_CUSTOMER,
    "Lifetime requests (number_of_requests) of a top-N customer by cost."
);
const C_LATENCY: Spec = spec!(
    "respan_customer_average_latency_seconds",
    ENV_CUSTOMER,
    "Mean request latency in seconds (average_latency) of a top-N customer by cost."
);
const C_TTFT: Spec = spec!(
    "respan_customer_average_ttft_seconds",
    ENV_CUSTOMER,
    "Mean time to first token in seconds (average_ttft) of a top-N customer by cost."
);
const C_LAST_ACTIVE: Spec = spec!(
    "respan_customer_last_active_timestamp_seconds",
    ENV_CUSTOMER,
    "Unix time of the last request (last_active_timeframe) of a top-N customer by cost."
);
const C_TOTAL_BUDGET: Spec = spec!(
    "respan_customer_total_budget_usd",
    ENV_CUSTOMER,
    "Total budget in USD (total_budget) of a top-N customer by cost, when Respan reports one."
);
const C_PERIOD_BUDGET: Spec = spec!(
    "respan_customer_period_budget_usd",
    ENV_CUSTOMER,
    "Budget per period in USD (period_budget) of a top-N customer by cost, when Respan reports one."
);
const UP: Spec = Spec {
    name: "respan_up",
    help: "1 when the last background poll of Respan's List customers API for the environment completed, 0 when it failed or has not run yet.",
    labels: ENV,
};
const LAST_SUCCESS: Spec = Spec {
    name: "respan_last_success_timestamp_seconds",
    help: "Unix time at which the last successful background poll of Respan's List customers API for the environment completed.",
    labels: ENV,
};
const POLL_DURATION: Spec = Spec {
    name: "respan_poll_duration_seconds",
    help: "Wall time of the last background poll of Respan's List customers API for the environment, completed or failed, in seconds.",
    labels: ENV,
};

const POLL_PAGES: Spec = Spec {
    name: "respan_poll_pages",
    help: "Pages read by the last full and the last incremental background poll of Respan's List customers API for the environment.",
    labels: ENV_MODE,
};
const CHANGED: Spec = Spec {
    name: "respan_customers_changed",
    help: "Customer records merged by the last background poll of Respan's List customers API: those active since the previous poll for an incremental pass, every customer for a full pass.",
    labels: ENV,
};
const INCREMENTAL: Spec = Spec {
    name: "respan_incremental_supported",
    help: "1 while an incremental background poll of Respan's List customers API works (customers by descending last_active_timeframe), 0 once the API turned out not to serve one, after which every poll is a full pass.",
    labels: ENV,
};

const SNAPSHOT_SPECS: [&Spec; 22] = [
    &CUSTOMERS,
    &COST,
    &TOKENS,
    &REQUESTS,
    &LATENCY,
    &TTFT,
    &ACTIVE,
    &NEW,
    &C_COST,
    &C_TOKENS,
    &C_REQUESTS,
    &C_LATENCY,
    &C_TTFT,
    &C_LAST_ACTIVE,
    &C_TOTAL_BUDGET,
    &C_PERIOD_BUDGET,
    &UP,
    &LAST_SUCCESS,
    &POLL_DURATION,
    &POLL_PAGES,
    &CHANGED,
    &INCREMENTAL,
];

/// Gauge samples of one metric, gathered before they become a family.
struct Family<'a> {
    spec: &'a Spec,
    metrics: Vec<proto::Metric>,
}

impl<'a> Family<'a> {
    fn new(spec: &'a Spec) -> Self {
        Self {
            spec,
            metrics: Vec::new(),
        }
    }

    /// Adds a sample; `values` are the label values in the order of the spec.
    fn add(&mut self, values: &[&str], value: f64) {
        let labels = self
            .spec
            .labels
            .iter()
            .zip(values)
            .map(|(name, value)| {
                let mut pair = LabelPair::default();
                pair.set_name((*name).to_string());
                pair.set_value((*value).to_string());
                pair
            })
            .collect();
        let mut gauge = proto::Gauge::default();
        gauge.set_value(value);
        let mut metric = proto::Metric::from_gauge(gauge);
        metric.set_label(labels);
        self.metrics.push(metric);
    }

    fn add_some(&mut self, values: &[&str], value: Option<f64>) {
        if let Some(v) = value {
            self.add(values, v);
        }
    }

    fn finish(self) -> MetricFamily {
        let mut mf = MetricFamily::default();
        mf.set_name(self.spec.name.to_string());
        mf.set_help(self.spec.help.to_string());
        mf.set_field_type(MetricType::GAUGE);
        mf.set_metric(self.metrics);
        mf
    }
}

/// Serves the snapshots and health of every environment at scrape time.
struct SnapshotCollector {
    store: Arc<SnapshotStore>,
    descs: Vec<Desc>,
}

impl SnapshotCollector {
    fn new(store: Arc<SnapshotStore>) -> prometheus::Result<Self> {
        let descs = SNAPSHOT_SPECS
            .iter()
            .map(|s| {
                Desc::new(
                    s.name.to_string(),
                    s.help.to_string(),
                    s.labels.iter().map(|l| (*l).to_string()).collect(),
                    HashMap::new(),
                )
            })
            .collect::<prometheus::Result<_>>()?;
        Ok(Self { store, descs })
    }
}

impl Collector for SnapshotCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut f = Families(SNAPSHOT_SPECS.iter().map(|s| Family::new(s)).collect());
        for (env, status) in self.store.statuses() {
            let e = env.as_str();
            f.get(&UP).add(&[e], if status.up { 1.0 } else { 0.0 });
            f.get(&POLL_DURATION)
                .add_some(&[e], status.last_duration_seconds);
            let Some(snap) = status.snapshot else {
                continue;
            };
            f.get(&LAST_SUCCESS).add(&[e], snap.completed_at);
            let p = &snap.passes;
            for (mode, pages) in [("full", p.full_pages), ("incremental", p.incremental_pages)] {
                f.get(&POLL_PAGES)
                    .add_some(&[e, mode], pages.map(f64::from));
            }
            f.get(&CHANGED).add(&[e], p.changed as f64);
            f.get(&INCREMENTAL)
                .add(&[e], if p.incremental_supported { 1.0 } else { 0.0 });
            let a = &snap.aggregate;
            f.get(&CUSTOMERS).add(&[e], a.customers as f64);
            f.get(&COST).add(&[e], a.cost_usd);
            f.get(&TOKENS).add(&[e], a.tokens);
            f.get(&REQUESTS).add(&[e], a.requests);
            f.get(&LATENCY).add_some(&[e], a.average_latency_seconds);
            f.get(&TTFT).add_some(&[e], a.average_ttft_seconds);
            for (i, (window, _)) in WINDOWS.iter().enumerate() {
                f.get(&ACTIVE)
                    .add(&[e, window], a.active_customers[i] as f64);
                f.get(&NEW).add(&[e, window], a.new_customers[i] as f64);
            }
            for c in &a.top {
                f.add_customer(e, c);
            }
        }
        f.0.into_iter().map(Family::finish).collect()
    }
}

/// The families of one scrape, found by their spec's name.
struct Families<'a>(Vec<Family<'a>>);

impl<'a> Families<'a> {
    fn get(&mut self, spec: &Spec) -> &mut Family<'a> {
        let i = self
            .0
            .iter()
            .position(|f| f.spec.name == spec.name)
            .unwrap_or_else(|| unreachable!("{} is in SNAPSHOT_SPECS", spec.name));
        &mut self.0[i]
    }

    fn add_customer(&mut self, e: &str, c: &Customer) {
        let Some(id) = c.identifier() else {
            return;
        };
        let labels = [e, id];
        self.get(&C_COST).add(&labels, c.cost_usd);
        self.get(&C_TOKENS).add(&labels, c.tokens);
        self.get(&C_REQUESTS).add(&labels, c.requests);
        self.get(&C_LATENCY)
            .add_some(&labels, c.average_latency_seconds());
        self.get(&C_TTFT)
            .add_some(&labels, c.average_ttft_seconds());
        self.get(&C_LAST_ACTIVE)
            .add_some(&labels, c.last_active().map(|t| t as f64));
        self.get(&C_TOTAL_BUDGET)
            .add_some(&labels, c.total_budget_usd());
        self.get(&C_PERIOD_BUDGET)
            .add_some(&labels, c.period_budget_usd());
    }
}

/// The handles the API client updates.
#[derive(Debug, Clone)]
pub struct ApiMetrics {
    requests: IntCounterVec,
    rate_limit_wait: Counter,
}

impl ApiMetrics {
    /// Counts one answer (an HTTP status, or `timeout`, `connect`, `error`).
    pub fn count_answer(&self, environment: &str, code: &str) {
        self.requests.with_label_values(&[environment, code]).inc();
    }

    /// Adds time spent waiting for the rate limit.
    pub fn add_rate_limit_wait(&self, waited: Duration) {
        if !waited.is_zero() {
            self.rate_limit_wait.inc_by(waited.as_secs_f64());
        }
    }
}

/// A rendered exposition, plain and gzipped, served as is until the next one.
#[derive(Debug, Clone, Default)]
pub struct Prepared {
    /// The text format.
    pub plain: Bytes,
    /// The same, gzipped.
    pub gzip: Bytes,
}

/// Every metric of the exporter, on its own registry.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    api: ApiMetrics,
    poll_failures: IntCounterVec,
    invalid_records: IntCounterVec,
    prepared: Arc<RwLock<Arc<Prepared>>>,
}

impl Metrics {
    /// Registers every metric; the snapshot metrics read `store`.
    pub fn new(store: Arc<SnapshotStore>) -> prometheus::Result<Self> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "respan_api_requests_total",
                "Requests made to Respan's List customers API by the background poller, by HTTP status code (or timeout, connect, error when no answer came).",
            ),
            &["environment", "code"],
        )?;
        let rate_limit_wait = Counter::new(
            "respan_rate_limit_wait_seconds_total",
            "Seconds the background poller spent waiting for the request rate limit of Respan's API.",
        )?;
        let poll_failures = IntCounterVec::new(
            Opts::new(
                "respan_poll_failures_total",
                "Background polls of Respan's List customers API that failed, by reason; the last good snapshot is kept.",
            ),
            &["environment", "reason"],
        )?;
        let invalid_records = IntCounterVec::new(
            Opts::new(
                "respan_invalid_records_total",
                "Customer records from Respan's List customers API with a broken field (null total, negative, non-finite or unparsable value), by field; the value is treated as absent.",
            ),
            &["environment", "field"],
        )?;
        let build_info = IntGaugeVec::new(
            Opts::new(
                "respan_exporter_build_info",
                "A metric with a constant value of 1, labelled by the version of respan-exporter.",
            ),
            &["version"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);

        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(rate_limit_wait.clone()))?;
        registry.register(Box::new(poll_failures.clone()))?;
        registry.register(Box::new(invalid_records.clone()))?;
        registry.register(Box::new(build_info))?;
        registry.register(Box::new(SnapshotCollector::new(store)?))?;
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;

        Ok(Self {
            registry,
            api: ApiMetrics {
                requests,
                rate_limit_wait,
            },
            poll_failures,
            invalid_records,
            prepared: Arc::default(),
        })
    }

    /// The handles for the API client.
    pub fn api(&self) -> ApiMetrics {
        self.api.clone()
    }

    /// Counts a failed poll.
    pub fn count_poll_failure(&self, environment: &str, reason: &str) {
        self.poll_failures
            .with_label_values(&[environment, reason])
            .inc();
    }

    /// Counts records with a broken field.
    pub fn count_invalid_records(&self, environment: &str, field: &str, n: u64) {
        self.invalid_records
            .with_label_values(&[environment, field])
            .inc_by(n);
    }

    /// The text exposition of every metric, rendered now.
    pub fn render(&self) -> Result<Vec<u8>, prometheus::Error> {
        let families = self.registry.gather();
        let mut out = Vec::with_capacity(16 * 1024);
        TextEncoder::new().encode(&families, &mut out)?;
        Ok(out)
    }

    /// Renders the exposition once, plain and gzipped, for every scrape until
    /// the next refresh. The poller calls it after each poll, so the cost of a
    /// scrape does not depend on the number of customers or of scrapes.
    pub fn refresh(&self) {
        let plain = match self.render() {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode metrics; serving the previous rendering");
                return;
            }
        };
        let mut encoder = GzEncoder::new(Vec::with_capacity(plain.len() / 4), Compression::fast());
        let gzip = encoder
            .write_all(&plain)
            .and_then(|()| encoder.finish())
            .unwrap_or_default();
        let prepared = Arc::new(Prepared {
            plain: Bytes::from(plain),
            gzip: Bytes::from(gzip),
        });
        *self.prepared.write().unwrap_or_else(|p| p.into_inner()) = prepared;
    }

    /// The last rendering (empty before the first [`Metrics::refresh`]).
    pub fn prepared(&self) -> Arc<Prepared> {
        self.prepared
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_snapshot_metric_says_it_is_cached_from_a_poll() {
        for spec in SNAPSHOT_SPECS {
            assert!(
                spec.help
                    .contains("background poll of Respan's List customers API"),
                "{}",
                spec.name
            );
            assert!(!spec.name.ends_with("_total"), "{} is a gauge", spec.name);
        }
    }
}
