//! Spawning the exporter beside a simulated API, and reading its metrics.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use respan_exporter::Application;
use respan_exporter::config::{ApiKey, Config, parse_base_url};
use respan_exporter::demo::{SimCustomer, SimulatedApi};
use respan_exporter::poller::Poller;
use respan_exporter::snapshot::SnapshotStore;
use tokio_util::sync::CancellationToken;

pub const TEST_KEY: &str = "test-key-0123456789";

/// A running exporter and the simulated API it polls. Polls happen only when a
/// test calls [`TestApp::poll`], unless it was spawned with a background poller.
pub struct TestApp {
    pub address: String,
    pub api: SimulatedApi,
    /// The simulated API's base URL.
    pub api_url: String,
    pub poller: Arc<Poller>,
    pub store: Arc<SnapshotStore>,
    pub http: reqwest::Client,
    stop: CancellationToken,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Starts a simulated API serving `customers`, and an exporter polling it.
pub async fn spawn_app(customers: Vec<SimCustomer>) -> TestApp {
    spawn_app_with(customers, |_| {}).await
}

/// As [`spawn_app`], with a chance to change the exporter's configuration. A poll
/// interval under five seconds also starts the background poller.
pub async fn spawn_app_with(
    customers: Vec<SimCustomer>,
    configure: impl FnOnce(&mut Config),
) -> TestApp {
    let stop = CancellationToken::new();
    let api = SimulatedApi::new(TEST_KEY, customers);
    let (url, _) = api
        .start(stop.child_token())
        .await
        .expect("simulated API starts");
    let api_url = url.clone();
    let mut config = Config::for_base_url(
        parse_base_url(&url).expect("valid url"),
        ApiKey::new(TEST_KEY).expect("key"),
    );
    configure(&mut config);
    let background = config.poll_interval < Duration::from_secs(5);
    let app = Application::build(config).await.expect("exporter builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let poller = app.poller();
    let store = app.state().store.clone();
    let app_stop = app.shutdown_token();
    let stop_all = stop.clone();
    tokio::spawn(async move {
        stop_all.cancelled().await;
        app_stop.cancel();
    });
    tokio::spawn(app.run_until_stopped(std::future::pending(), background));
    TestApp {
        address,
        api,
        api_url,
        poller,
        store,
        http: reqwest::Client::new(),
        stop,
    }
}

impl TestApp {
    /// Polls every environment once.
    pub async fn poll(&self) {
        self.poller.poll_all().await;
    }

    /// GET a path of the exporter: status and body.
    pub async fn get(&self, path: &str) -> (u16, String) {
        let r = self
            .http
            .get(format!("{}{}", self.address, path))
            .send()
            .await
            .expect("exporter answers");
        let status = r.status().as_u16();
        (status, r.text().await.expect("body"))
    }

    /// Scrapes the metrics endpoint.
    pub async fn scrape(&self) -> Exposition {
        let (status, body) = self.get("/metrics").await;
        assert_eq!(status, 200, "{body}");
        Exposition::parse(&body)
    }
}

/// One sample of the text exposition format.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed scrape, with the text it came from.
#[derive(Debug, Clone)]
pub struct Exposition {
    pub text: String,
    pub samples: Vec<Sample>,
}

impl Exposition {
    /// Parses the text format, undoing label-value escapes. Panics on anything
    /// malformed, which fails the test that scraped it.
    pub fn parse(text: &str) -> Self {
        let mut samples = Vec::new();
        for line in text.lines() {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            samples.push(parse_sample(line));
        }
        Self {
            text: text.to_string(),
            samples,
        }
    }

    /// The value of the sample with exactly these labels.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let found: Vec<&Sample> = self
            .samples
            .iter()
            .filter(|s| s.name == name && s.labels == want)
            .collect();
        assert!(
            found.len() <= 1,
            "{name} {labels:?} appears {} times",
            found.len()
        );
        found.first().map(|s| s.value)
    }

    /// The value of the sample with only an `environment` label.
    pub fn env(&self, name: &str, environment: &str) -> Option<f64> {
        self.get(name, &[("environment", environment)])
    }

    /// `respan_poll_failures_total` for one environment and reason.
    pub fn failures(&self, environment: &str, reason: &str) -> Option<f64> {
        self.get(
            "respan_poll_failures_total",
            &[("environment", environment), ("reason", reason)],
        )
    }

    /// `respan_api_requests_total` for one environment and code.
    pub fn answers(&self, environment: &str, code: &str) -> Option<f64> {
        self.get(
            "respan_api_requests_total",
            &[("environment", environment), ("code", code)],
        )
    }

    /// The samples of one metric.
    pub fn all(&self, name: &str) -> Vec<&Sample> {
        self.samples.iter().filter(|s| s.name == name).collect()
    }

    /// The `customer_identifier`s of one metric in one environment, sorted.
    pub fn customers(&self, name: &str, environment: &str) -> Vec<String> {
        let mut ids: Vec<String> = self
            .all(name)
            .into_iter()
            .filter(|s| s.labels.get("environment").map(String::as_str) == Some(environment))
            .filter_map(|s| s.labels.get("customer_identifier").cloned())
            .collect();
        ids.sort();
        ids
    }
}

fn parse_sample(line: &str) -> Sample {
    let name_end = line
        .find(['{', ' '])
        .unwrap_or_else(|| panic!("no value: {line:?}"));
    let name = line[..name_end].to_string();
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(after) = rest.strip_prefix('{') {
        let mut chars = after.char_indices().peekable();
        let mut end = None;
        loop {
            // label name
            let mut label = String::new();
            for (i, c) in chars.by_ref() {
                match c {
                    '=' => break,
                    '}' => {
                        end = Some(i);
                        break;
                    }
                    c => label.push(c),
                }
            }
            if end.is_some() {
                break;
            }
            assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "{line:?}");
            let mut value = String::new();
            loop {
                match chars
                    .next()
                    .unwrap_or_else(|| panic!("unterminated: {line:?}"))
                {
                    (_, '\\') => match chars.next().map(|(_, c)| c) {
                        Some('\\') => value.push('\\'),
                        Some('"') => value.push('"'),
                        Some('n') => value.push('\n'),
                        other => panic!("bad escape {other:?} in {line:?}"),
                    },
                    (_, '"') => break,
                    (_, '\n') => panic!("raw newline in {line:?}"),
                    (_, c) => value.push(c),
                }
            }
            assert!(
                labels.insert(label, value).is_none(),
                "repeated label in {line:?}"
            );
            match chars
                .next()
                .unwrap_or_else(|| panic!("unterminated: {line:?}"))
            {
                (_, ',') => {
                    if let Some(&(i, '}')) = chars.peek() {
                        end = Some(i);
                        break;
                    }
                }
                (i, '}') => {
                    end = Some(i);
                    break;
                }
                other => panic!("unexpected {other:?} in {line:?}"),
            }
        }
        let end = end.unwrap_or_else(|| panic!("no closing brace: {line:?}"));
        rest = &after[end + 1..];
    }
    let value_text = rest.trim();
    assert!(
        !value_text.contains(' '),
        "a timestamp or junk after the value: {line:?}"
    );
    let value = match value_text {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}")),
    };
    Sample {
        name,
        labels,
        value,
    }
}

/// A customer with round numbers and both timestamps set to `at`.
pub fn customer(
    identifier: &str,
    environment: &str,
    cost: f64,
    tokens: f64,
    requests: f64,
) -> SimCustomer {
    SimCustomer::new(identifier, environment, cost, tokens, requests)
}

/// `n` customers in `environment` whose costs are 0.01, 0.02, … USD.
pub fn many_customers(environment: &str, n: usize) -> Vec<SimCustomer> {
    (1..=n)
        .map(|i| {
            let mut c = customer(
                &format!("c{i:06}"),
                environment,
                i as f64 / 100.0,
                10.0,
                1.0,
            );
            // Distinct first_seen so the crawl order is the insertion order.
            c.first_seen = 1_600_000_000 + i as i64;
            c
        })
        .collect()
}

/// Waits until `check` holds, for at most `limit`.
pub async fn eventually(limit: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs `promtool check metrics` on an exposition when promtool is installed;
/// CI installs it and sets RESPAN_REQUIRE_PROMTOOL=1 so the check cannot be skipped there.
pub fn promtool_check(text: &str) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            assert!(
                std::env::var_os("RESPAN_REQUIRE_PROMTOOL").is_none(),
                "promtool is required but cannot run: {e}"
            );
            eprintln!("promtool not installed; skipping `promtool check metrics`");
            return;
        }
    };
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool runs");
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TestApp {
    /// The last error of an environment's poll, if the last poll failed.
    pub fn poller_status(&self, environment: &str) -> Option<String> {
        self.store_status(environment).and_then(|s| s.last_error)
    }

    fn store_status(&self, environment: &str) -> Option<respan_exporter::snapshot::EnvStatus> {
        self.store.status(environment)
    }
}
