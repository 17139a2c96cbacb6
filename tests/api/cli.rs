//! The binary: flags, start-up errors, demo mode, shutdown, and the key.

use std::io::Read;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use respan_exporter::demo::{Fault, SimulatedApi};
use tokio_util::sync::CancellationToken;

use crate::helpers::*;

const BIN: &str = env!("CARGO_BIN_EXE_respan-exporter");

fn run(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("RESPAN_API_KEY")
        .env_remove("RESPAN_API_KEY_FILE");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("binary runs")
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// A running binary that is sent SIGTERM (and reaped) when dropped.
struct Running {
    child: Child,
    base: String,
}

impl Running {
    fn start(args: &[&str], envs: &[(&str, &str)]) -> Self {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .args(["--web.listen-address", &listen])
            .env_remove("RESPAN_API_KEY")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        Self {
            child: cmd.spawn().expect("binary starts"),
            base: format!("http://{listen}"),
        }
    }

    async fn get(&self, path: &str) -> Option<(u16, String)> {
        let r = reqwest::get(format!("{}{path}", self.base)).await.ok()?;
        let status = r.status().as_u16();
        Some((status, r.text().await.ok()?))
    }

    async fn wait_ready(&self) -> bool {
        eventually(Duration::from_secs(20), async || {
            matches!(self.get("/readyz").await, Some((200, _)))
        })
        .await
    }

    /// Sends SIGTERM and returns the exit success and everything logged.
    fn terminate(mut self) -> (bool, String) {
        let pid = self.child.id().to_string();
        let killed = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill runs");
        assert!(killed.success());
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                break s;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no exit within 10 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut log = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            e.read_to_string(&mut log).expect("stderr");
        }
        if let Some(mut o) = self.child.stdout.take() {
            o.read_to_string(&mut log).expect("stdout");
        }
        (status.success(), log)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn missing_key_exits_with_one_line_naming_it() {
    let out = run(&[], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("RESPAN_API_KEY"), "{err}");
}

#[test]
fn bad_flags_exit_non_zero_naming_the_flag() {
    let cases: [(&[&str], &str); 9] = [
        (
            &["--web.config.file", "/nonexistent/web.yml"],
            "--web.config.file",
        ),
        (
            &["--respan.poll-interval", "soon"],
            "--respan.poll-interval",
        ),
        (&["--respan.timeout=-1s"], "--respan.timeout"),
        (
            &["--respan.base-url", "ftp://example.com"],
            "--respan.base-url",
        ),
        (&["--web.listen-address", "nowhere"], "--web.listen-address"),
        (
            &["--respan.api-key-file", "/nonexistent/respan-key"],
            "--respan.api-key-file",
        ),
        (&["--log.format", "xml"], "--log.format"),
        (&["--metrics.top-n=-3"], "--metrics.top-n"),
        (
            &["--respan.incremental-margin", "later"],
            "--respan.incremental-margin",
        ),
    ];
    for (args, flag) in cases {
        let out = run(args, &[("RESPAN_API_KEY", "k")]);
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        let first = err.lines().next().unwrap_or("");
        assert!(first.contains(flag), "{args:?}: {err}");
    }
}

#[test]
fn flags_are_also_read_from_the_environment() {
    let out = run(
        &[],
        &[("RESPAN_API_KEY", "k"), ("RESPAN_POLL_INTERVAL", "soon")],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--respan.poll-interval"), "{err}");
}

#[test]
fn a_taken_listen_address_exits_naming_the_flag() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let out = run(&["--demo", "--web.listen-address", &addr], &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--web.listen-address"), "{err}");
}

#[tokio::test]
async fn demo_mode_serves_both_environments_and_stops_on_sigterm() {
    let exporter = Running::start(&["--demo", "--log.format", "json"], &[]);
    assert!(exporter.wait_ready().await, "demo never became ready");
    let (status, body) = exporter.get("/metrics").await.expect("metrics");
    assert_eq!(status, 200);
    let m = Exposition::parse(&body);
    assert!(m.env("respan_customers", "prod").unwrap_or(0.0) > 2000.0);
    assert!(m.env("respan_customers", "test").unwrap_or(0.0) > 500.0);
    assert_eq!(m.customers("respan_customer_cost_usd", "prod").len(), 10);
    promtool_check(&body);

    let (ok, log) = exporter.terminate();
    assert!(ok, "exit status after SIGTERM: {log}");
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    let metrics_url = lines
        .iter()
        .find_map(|l| l["metrics"].as_str())
        .expect("the metrics URL is logged");
    assert!(metrics_url.ends_with("/metrics"), "{metrics_url}");
    assert!(lines.iter().any(|l| l["message"] == "shutting down"));
}

#[tokio::test]
async fn the_key_never_appears_in_logs_metrics_or_pages() {
    let canary = "sk-canary-7f3a9c1e5b";
    let stop = CancellationToken::new();
    let api = SimulatedApi::new(canary, many_customers("prod", 1500));
    let (url, _) = api.start(stop.clone()).await.expect("API starts");
    // Two failing pages: a rejected key and a server error, logged in full.
    api.inject(Fault::error(Some(1), 401, "Invalid API key."));
    api.inject(Fault::error(Some(2), 500, "boom"));

    let dir = std::env::temp_dir().join(format!("respan-canary-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let key_file = dir.join("key");
    std::fs::write(&key_file, format!("{canary}\n")).expect("key file");
    let exporter = Running::start(
        &[
            "--respan.base-url",
            &url,
            "--respan.api-key-file",
            key_file.to_str().expect("utf-8 path"),
            "--respan.environments",
            "prod",
            "--respan.poll-interval",
            "300ms",
            "--respan.requests-per-minute",
            "6000",
            "--respan.max-retries",
            "0",
            "--log.level",
            "trace",
        ],
        &[],
    );
    assert!(exporter.wait_ready().await, "never became ready");
    let mut seen = String::new();
    for path in ["/", "/metrics", "/readyz", "/healthz"] {
        seen.push_str(&exporter.get(path).await.expect("answers").1);
    }
    let (ok, log) = exporter.terminate();
    std::fs::remove_dir_all(&dir).ok();
    stop.cancel();
    assert!(ok);
    assert!(log.contains("HTTP 401: Invalid API key."), "{log}");
    assert!(log.contains("HTTP 500: boom"), "{log}");
    assert!(!log.contains(canary), "the key leaked into the log");
    assert!(!seen.contains(canary), "the key leaked into a page");
    assert!(
        api.requests()
            .iter()
            .all(|r| r.authorized || r.uri.contains("page="))
    );
}

#[tokio::test]
async fn a_poll_longer_than_the_interval_warns_how_long_its_pages_need() {
    let stop = CancellationToken::new();
    let api = SimulatedApi::new(TEST_KEY, many_customers("prod", 5000));
    let (url, _) = api.start(stop.clone()).await.expect("API starts");
    // Five pages at 120 requests a minute (burst 3) take about a second, twice
    // the interval.
    let exporter = Running::start(
        &[
            "--respan.base-url",
            &url,
            "--respan.environments",
            "prod",
            "--respan.poll-interval",
            "500ms",
            "--respan.requests-per-minute",
            "120",
        ],
        &[("RESPAN_API_KEY", TEST_KEY)],
    );
    assert!(exporter.wait_ready().await, "never became ready");
    let warned = eventually(Duration::from_secs(10), async || api.requests().len() >= 10).await;
    assert!(warned);
    let (_, log) = exporter.terminate();
    stop.cancel();
    assert!(
        log.contains("took longer than --respan.poll-interval")
            && log.contains("the 5 pages need at least")
            && log.contains("raise --respan.poll-interval"),
        "{log}"
    );
}
