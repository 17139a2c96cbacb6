//! Scale benchmark: the exporter binary against a local simulated Respan API
//! holding 250,000 and 1,000,000 realistic customers.
//!
//!     cargo bench --bench scale
//!
//! For each size it reports, from the exporter's own metrics and /proc:
//! requests and wall time of a full pass and of an incremental pass with 1% of
//! customers changed, CPU seconds of the full pass, peak RSS, and, with `wrk`
//! installed, /metrics and /healthz requests per second on the same process.
//! It also measures parse throughput in MB/s of JSON in-process, and, at
//! 250,000 customers with Python's `prometheus_client` and `requests`
//! installed, the CPU of `benches/python_exporter.py` doing the same crawl:
//! `RESPAN_BENCH_CPU_RUNS` (default 5) full passes of each, taken in turns,
//! compared by their medians.
//!
//! `RESPAN_BENCH_SIZES=250000` limits the sizes. The exporter's request limit
//! is raised to 6000/min for the run; the wall time at the default 50/min is
//! computed from the request count.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use respan_exporter::api::parse_page;
use respan_exporter::demo::{SimCustomer, SimulatedApi};
use tokio_util::sync::CancellationToken;

const KEY: &str = "bench-key";
const EXPORTER: &str = env!("CARGO_BIN_EXE_respan-exporter");

/// A cheap deterministic hash for spreading values.
fn spread(i: usize, salt: u64) -> f64 {
    let mut z = (i as u64).wrapping_add(salt.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
}

/// `n` customers of `prod` as the API documents them: names and emails,
/// some costs as decimal strings, some without TTFT, a tenth with budgets,
/// all last active between one and thirty-one days ago.
fn customers(n: usize, now: i64) -> Vec<SimCustomer> {
    (0..n)
        .map(|i| {
            let requests = (spread(i, 1).powi(3) * 200_000.0).floor();
            let tokens = (requests * (300.0 + 3000.0 * spread(i, 2))).floor();
            let cost = (tokens * 4e-6 * 1e6).round() / 1e6;
            let mut c = SimCustomer::new(&format!("cust_{i:07}"), "prod", cost, tokens, requests);
            c.name = Some(format!("Customer number {i}"));
            c.email = Some(format!("customer.{i}@example-company.com"));
            c.last_active = Some(now - 86_400 - (spread(i, 3) * 30.0 * 86_400.0) as i64);
            c.first_seen = c.last_active.unwrap_or(now) - (spread(i, 4) * 300.0 * 86_400.0) as i64;
            c.average_latency = Some((0.3 + 3.0 * spread(i, 5) * 1000.0).round() / 1000.0);
            c.average_ttft =
                (spread(i, 6) < 0.7).then_some((0.1 + spread(i, 7) * 1000.0).round() / 1000.0);
            c.cost_as_string = i % 7 == 3;
            if i % 10 == 0 {
                c.total_budget = Some(1000.0);
                c.period_budget = Some(100.0);
            }
            c
        })
        .collect()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The value of one exact series in an exposition.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

struct Exporter {
    child: Child,
    base: String,
    http: reqwest::Client,
}

impl Exporter {
    fn start(api_url: &str, interval: &str) -> Self {
        let port = free_port();
        // RESPAN_BENCH_EXPORTER runs another build (or a profiler wrapping one).
        let program =
            std::env::var("RESPAN_BENCH_EXPORTER").unwrap_or_else(|_| EXPORTER.to_string());
        let child = Command::new(program)
            .args([
                "--respan.base-url",
                api_url,
                "--respan.environments",
                "prod",
                "--respan.poll-interval",
                interval,
                "--respan.full-sync-interval",
                "1h",
                "--respan.requests-per-minute",
                "6000",
                "--web.listen-address",
                &format!("127.0.0.1:{port}"),
                "--log.level",
                "warn",
            ])
            .env("RESPAN_API_KEY", KEY)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("exporter starts");
        Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        }
    }

    async fn metrics(&self) -> String {
        match self.http.get(format!("{}/metrics", self.base)).send().await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// Waits for a series to appear; returns the exposition that has it.
    async fn wait_for(&self, series: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let text = self.metrics().await;
            if sample(&text, series).is_some() {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "{series} did not appear within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// CPU seconds (user + system) the exporter has used so far.
    fn cpu_seconds(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the command name, which is in parentheses: utime and stime
        // are the 12th and 13th of them, in clock ticks.
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks = Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .unwrap_or(100.0);
        let field = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
        match (field(11), field(12)) {
            (Some(u), Some(s)) => (u + s) / ticks,
            _ => f64::NAN,
        }
    }

    fn peak_rss_mb(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut log = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut log);
        }
        if !log.trim().is_empty() {
            eprintln!("exporter log:\n{log}");
        }
    }
}

/// Requests per second from `wrk`, or `None` when it is not installed.
fn wrk(url: &str) -> Option<f64> {
    let out = Command::new("wrk")
        .args(["-t2", "-c32", "-d5s", url])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
}

/// MB of page JSON parsed per second, one thread, records reduced as a crawl does.
fn parse_throughput(page: &[u8]) -> f64 {
    let started = Instant::now();
    let mut bytes = 0usize;
    let mut bad = Vec::new();
    let mut kept = 0usize;
    while started.elapsed() < Duration::from_secs(2) {
        let parsed = parse_page(page).expect("a valid page");
        for raw in parsed.results {
            bad.clear();
            kept += usize::from(raw.into_customer(&mut bad).0.is_some());
        }
        bytes += page.len();
    }
    assert!(kept > 0);
    bytes as f64 / 1e6 / started.elapsed().as_secs_f64()
}

async fn get_page(api_url: &str, sort: &str) -> Vec<u8> {
    reqwest::Client::new()
        .get(format!(
            "{api_url}/api/users/list/?page=1&page_size=1000&sort_by={sort}&environment=prod"
        ))
        .bearer_auth(KEY)
        .send()
        .await
        .expect("API answers")
        .bytes()
        .await
        .expect("body")
        .to_vec()
}

/// CPU seconds of one more full pass by a fresh exporter process, from its
/// second request (start-up excluded) to the published snapshot.
async fn full_pass_cpu(api: &SimulatedApi, api_url: &str, n: usize) -> f64 {
    let before = api.requests().len();
    let exporter = Exporter::start(api_url, "1h");
    let deadline = Instant::now() + Duration::from_secs(30);
    while api.requests().len() < before + 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let start_cpu = exporter.cpu_seconds();
    let series = r#"respan_poll_pages{environment="prod",mode="full"}"#;
    let text = exporter.wait_for(series, Duration::from_secs(300)).await;
    assert_eq!(
        sample(&text, r#"respan_customers{environment="prod"}"#),
        Some(n as f64)
    );
    exporter.cpu_seconds() - start_cpu
}

fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(f64::total_cmp);
    match xs.len() {
        0 => f64::NAN,
        l if l % 2 == 1 => xs[l / 2],
        l => (xs[l / 2 - 1] + xs[l / 2]) / 2.0,
    }
}

/// Full passes of the exporter and of the Python exporter, taken in turns so
/// that both see the same machine load; CPU time on a shared machine moves by
/// ±20% from one pass to the next, so the ratio is of the medians.
async fn compare_with_python(api: &SimulatedApi, api_url: &str, n: usize, first_cpu: f64) {
    let runs: usize = std::env::var("RESPAN_BENCH_CPU_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
        .max(1);
    let (mut ours, mut theirs) = (vec![first_cpu], Vec::new());
    for i in 0..runs {
        if i > 0 {
            ours.push(full_pass_cpu(api, api_url, n).await);
        }
        match python_full_pass(api_url) {
            Some(py) => theirs.push(py["cpu_seconds"].as_f64().unwrap_or(f64::NAN)),
            None => {
                println!("| Python comparison | skipped: pip install prometheus_client requests |");
                return;
            }
        }
    }
    let range = |xs: &[f64]| {
        let lo = xs.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        format!("{lo:.2}–{hi:.2}")
    };
    let (r_ours, r_theirs) = (range(&ours), range(&theirs));
    let (m_ours, m_theirs) = (median(&mut ours), median(&mut theirs));
    println!(
        "| full pass CPU, median of {runs} taken in turns: exporter | {m_ours:.2} s (range {r_ours}) |"
    );
    println!(
        "| full pass CPU, median of {runs}: Python (prometheus_client + requests) | {m_theirs:.2} s (range {r_theirs}): {:.1}× the exporter's |",
        m_theirs / m_ours
    );
}

fn python_full_pass(api_url: &str) -> Option<serde_json::Value> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/python_exporter.py");
    let out = Command::new("python3")
        .args([script, api_url, KEY, "prod"])
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "python comparison skipped: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        );
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

async fn run(n: usize) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let stop = CancellationToken::new();
    let api = SimulatedApi::new(KEY, customers(n, now));
    let (api_url, _) = api.start(stop.clone()).await.expect("API starts");
    // Sort once before timing anything.
    let page = get_page(&api_url, "first_seen").await;
    let mb = parse_throughput(&page);

    let interval = if n > 500_000 { "90s" } else { "30s" };
    let exporter = Exporter::start(&api_url, interval);
    // The exporter's CPU when its first request arrives: start-up excluded.
    let deadline = Instant::now() + Duration::from_secs(30);
    while api.requests().len() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let start_cpu = exporter.cpu_seconds();
    let full_series = r#"respan_poll_pages{environment="prod",mode="full"}"#;
    let full = exporter
        .wait_for(full_series, Duration::from_secs(300))
        .await;
    let full_pages = sample(&full, full_series).unwrap_or(f64::NAN);
    let full_wall =
        sample(&full, r#"respan_poll_duration_seconds{environment="prod"}"#).unwrap_or(f64::NAN);
    let full_cpu = exporter.cpu_seconds() - start_cpu;
    let full_requests = sample(
        &full,
        r#"respan_api_requests_total{code="200",environment="prod"}"#,
    )
    .unwrap_or(f64::NAN);
    assert_eq!(
        sample(&full, r#"respan_customers{environment="prod"}"#),
        Some(n as f64)
    );

    // 1% of the customers become active now.
    api.update_customers(|cs| {
        for c in cs.iter_mut().step_by(100) {
            c.cost += 0.5;
            c.requests += 10.0;
            c.tokens += 2000.0;
            c.last_active = Some(now);
        }
    });
    let _ = get_page(&api_url, "-last_active_timeframe").await;
    let inc_series = r#"respan_poll_pages{environment="prod",mode="incremental"}"#;
    let inc = exporter
        .wait_for(inc_series, Duration::from_secs(300))
        .await;
    let inc_pages = sample(&inc, inc_series).unwrap_or(f64::NAN);
    let inc_wall =
        sample(&inc, r#"respan_poll_duration_seconds{environment="prod"}"#).unwrap_or(f64::NAN);
    let inc_cpu = exporter.cpu_seconds() - full_cpu - start_cpu;
    let changed =
        sample(&inc, r#"respan_customers_changed{environment="prod"}"#).unwrap_or(f64::NAN);
    let rss = exporter.peak_rss_mb();

    let metrics_rps = wrk(&format!("{}/metrics", exporter.base));
    let healthz_rps = wrk(&format!("{}/healthz", exporter.base));
    drop(exporter);

    println!("\n## {n} customers");
    println!("| measure | value |\n|---|---|");
    println!("| full pass: requests | {full_requests:.0} ({full_pages:.0} pages) |");
    println!("| full pass: wall time at 6000 req/min | {full_wall:.1} s |");
    println!(
        "| full pass: wall time at the default 50 req/min | {:.1} min (computed) |",
        full_pages / 50.0
    );
    println!("| full pass: exporter CPU | {full_cpu:.2} s |");
    println!(
        "| incremental pass, 1% changed: requests | {inc_pages:.0} ({changed:.0} customers merged) |"
    );
    println!(
        "| incremental / full requests | {:.2}% (target ≤ 1% + 1 page = {:.0} requests) |",
        100.0 * inc_pages / full_pages,
        (full_pages * 0.01).ceil() + 1.0
    );
    println!("| incremental pass: wall time / CPU | {inc_wall:.2} s / {inc_cpu:.2} s |");
    println!("| peak RSS of the exporter | {rss:.1} MB |");
    println!("| parse throughput (one thread) | {mb:.0} MB/s of JSON |");
    match (metrics_rps, healthz_rps) {
        (Some(m), Some(h)) => println!(
            "| /metrics vs /healthz (wrk -t2 -c32 -d5s) | {m:.0} vs {h:.0} req/s: ratio {:.2} |",
            m / h
        ),
        _ => println!("| /metrics vs /healthz | skipped: wrk is not installed |"),
    }

    if n == 250_000 {
        compare_with_python(&api, &api_url, n, full_cpu).await;
    }
    stop.cancel();
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes `--bench`; nothing else is expected.
    let sizes: Vec<usize> = std::env::var("RESPAN_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![250_000, 1_000_000]);
    for n in sizes {
        run(n).await;
    }
}
