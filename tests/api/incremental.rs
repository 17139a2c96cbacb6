//! Incremental passes: fewer pages, the same numbers as a full pass.

use std::time::Duration;

use respan_exporter::config::parse_base_url;
use respan_exporter::demo::{BrokenSort, SimCustomer};

use crate::helpers::*;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// An exporter that polls incrementally between hourly full passes. Every
/// customer was last active at its own second, long ago.
async fn incremental_app(mut customers: Vec<SimCustomer>) -> TestApp {
    for (i, c) in customers.iter_mut().enumerate() {
        c.last_active = Some(1_700_000_000 + i as i64);
    }
    spawn_app_with(customers, |c| {
        c.environments = vec!["prod".into()];
        c.full_sync_interval = Duration::from_secs(3600);
    })
    .await
}

/// A second exporter that makes a full pass over the same API right now.
async fn full_pass_of(app: &TestApp) -> Exposition {
    let url = app.api_url.clone();
    let fresh = spawn_app_with(vec![], move |c| {
        c.environments = vec!["prod".into()];
        c.base_url = parse_base_url(&url).expect("url");
    })
    .await;
    fresh.poll().await;
    fresh.scrape().await
}

/// The samples that describe customers (not the exporter's own work).
fn customer_numbers(m: &Exposition) -> Vec<(String, String, f64)> {
    let mut out: Vec<(String, String, f64)> = m
        .samples
        .iter()
        .filter(|s| {
            s.name.starts_with("respan_")
                && !s.name.ends_with("_total")
                && ![
                    "respan_last_success_timestamp_seconds",
                    "respan_poll_duration_seconds",
                    "respan_poll_pages",
                    "respan_customers_changed",
                    "respan_incremental_supported",
                    "respan_exporter_build_info",
                ]
                .contains(&s.name.as_str())
        })
        .map(|s| (s.name.clone(), format!("{:?}", s.labels), s.value))
        .collect();
    out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    out
}

/// Pages of the last pass of `mode` in prod.
fn pages(m: &Exposition, mode: &str) -> Option<f64> {
    m.get(
        "respan_poll_pages",
        &[("environment", "prod"), ("mode", mode)],
    )
}

/// The customer numbers of `m` are those a fresh full pass over the same API gives.
async fn assert_equals_a_full_pass(app: &TestApp, m: &Exposition) {
    assert_eq!(
        customer_numbers(m),
        customer_numbers(&full_pass_of(app).await)
    );
}

fn pages_with_sort(app: &TestApp, sort: &str) -> usize {
    app.api
        .requests()
        .iter()
        .filter(|r| r.uri.contains(&format!("sort_by={sort}")))
        .count()
}

/// Changes `n` customers as activity would: more cost and requests, active now.
fn touch(app: &TestApp, every: usize, n: usize) {
    let t = now();
    app.api.update_customers(|cs| {
        for c in cs.iter_mut().step_by(every).take(n) {
            c.cost += 1.25;
            c.requests += 3.0;
            c.tokens += 300.0;
            c.last_active = Some(t);
        }
    });
}

#[tokio::test]
async fn an_incremental_pass_reads_only_recent_pages_and_equals_a_full_pass() {
    let app = incremental_app(many_customers("prod", 5000)).await;
    app.poll().await;
    let m = app.scrape().await;
    assert_eq!(pages(&m, "full"), Some(5.0));
    assert_eq!(m.env("respan_customers_changed", "prod"), Some(5000.0));

    // 50 customers change (1%) and 5 new ones arrive.
    touch(&app, 97, 50);
    let t = now();
    app.api.update_customers(|cs| {
        for i in 0..5 {
            let mut c = customer(&format!("new-{i}"), "prod", 2.0, 20.0, 2.0);
            c.first_seen = t;
            c.last_active = Some(t);
            cs.push(c);
        }
    });
    app.poll().await;
    let m = app.scrape().await;
    assert_eq!(m.env("respan_up", "prod"), Some(1.0));
    assert_eq!(pages(&m, "incremental"), Some(1.0));
    assert_eq!(pages_with_sort(&app, "-last_active_timeframe"), 1);
    assert_eq!(m.env("respan_customers_changed", "prod"), Some(55.0));
    assert_eq!(m.env("respan_customers", "prod"), Some(5005.0));
    assert_equals_a_full_pass(&app, &m).await;
}

#[tokio::test]
async fn activity_recorded_late_is_read_within_the_incremental_margin() {
    // Respan may record (or round) a last activity earlier than the poll that
    // follows it: these changes carry a time five minutes before the poll.
    let late = |app: &TestApp| {
        let t = now() - 300;
        app.api.update_customers(|cs| {
            for c in cs.iter_mut().step_by(10) {
                c.cost += 1.0;
                c.last_active = Some(t);
            }
        });
    };
    let mut customers = many_customers("prod", 200);
    for (i, c) in customers.iter_mut().enumerate() {
        c.last_active = Some(1_700_000_000 + i as i64);
    }
    let wide = spawn_app_with(customers.clone(), |c| {
        c.environments = vec!["prod".into()];
        c.full_sync_interval = Duration::from_secs(3600);
        c.incremental_margin = Duration::from_secs(600);
    })
    .await;
    wide.poll().await;
    late(&wide);
    wide.poll().await;
    let m = wide.scrape().await;
    assert_eq!(pages(&m, "incremental"), Some(1.0));
    assert_eq!(m.env("respan_customers_changed", "prod"), Some(20.0));
    assert_equals_a_full_pass(&wide, &m).await;

    // With the default two minutes the same changes wait for the next full pass.
    let narrow = incremental_app(customers).await;
    narrow.poll().await;
    late(&narrow);
    narrow.poll().await;
    let m = narrow.scrape().await;
    assert_eq!(pages(&m, "incremental"), Some(1.0));
    assert_eq!(m.env("respan_customers_changed", "prod"), Some(0.0));
}

#[tokio::test]
async fn a_large_change_spans_pages_and_still_equals_a_full_pass() {
    let app = incremental_app(many_customers("prod", 5000)).await;
    app.poll().await;
    // 2,500 changes: three pages, the third ending in untouched customers.
    touch(&app, 2, 2500);
    app.poll().await;
    let m = app.scrape().await;
    assert_eq!(pages(&m, "incremental"), Some(3.0));
    assert_eq!(m.env("respan_customers_changed", "prod"), Some(2500.0));
    assert_equals_a_full_pass(&app, &m).await;
    // The top customers moved: the series follow.
    assert_eq!(
        m.customers("respan_customer_cost_usd", "prod"),
        full_pass_of(&app)
            .await
            .customers("respan_customer_cost_usd", "prod")
    );
}

#[tokio::test]
async fn deletions_are_caught_by_the_next_full_pass() {
    let app = incremental_app(many_customers("prod", 3000)).await;
    app.poll().await;
    app.api.update_customers(|cs| cs.truncate(2990));
    touch(&app, 100, 5);
    // The incremental pass merges what changed; the count gives the deletions away.
    app.poll().await;
    let m = app.scrape().await;
    assert_eq!(m.env("respan_up", "prod"), Some(1.0));
    // So the next pass is full, and then all is as a fresh crawl.
    app.poll().await;
    let m = app.scrape().await;
    assert_eq!(pages(&m, "full"), Some(3.0));
    assert_eq!(m.env("respan_customers", "prod"), Some(2990.0));
    assert_equals_a_full_pass(&app, &m).await;
}

#[tokio::test]
async fn a_refused_sort_falls_back_to_full_passes() {
    let app = incremental_app(many_customers("prod", 1500)).await;
    app.api
        .break_sort("-last_active_timeframe", BrokenSort::Reject);
    app.poll().await;
    touch(&app, 10, 10);
    app.poll().await;
    let m = app.scrape().await;
    assert_eq!(m.env("respan_up", "prod"), Some(1.0));
    assert_eq!(m.env("respan_incremental_supported", "prod"), Some(0.0));
    assert_eq!(m.env("respan_customers_changed", "prod"), Some(1500.0));
    // It tried once; from then on every poll is full.
    app.poll().await;
    assert_eq!(pages_with_sort(&app, "-last_active_timeframe"), 1);
    assert_eq!(pages_with_sort(&app, "first_seen"), 3 * 2);
    assert_equals_a_full_pass(&app, &app.scrape().await).await;
}

#[tokio::test]
async fn an_order_that_is_not_descending_falls_back_to_full_passes() {
    let app = incremental_app(many_customers("prod", 1500)).await;
    app.poll().await;
    app.api
        .break_sort("-last_active_timeframe", BrokenSort::Reverse);
    touch(&app, 10, 10);
    app.poll().await;
    let m = app.scrape().await;
    assert_eq!(m.env("respan_up", "prod"), Some(1.0));
    assert_eq!(m.env("respan_incremental_supported", "prod"), Some(0.0));
    assert_equals_a_full_pass(&app, &m).await;
}

#[tokio::test]
async fn a_failed_incremental_pass_keeps_the_snapshot_and_forces_a_full_pass() {
    let app = incremental_app(many_customers("prod", 1500)).await;
    app.poll().await;
    let before = app.scrape().await;
    touch(&app, 10, 10);
    for _ in 0..4 {
        app.api
            .inject(respan_exporter::demo::Fault::error(Some(1), 503, "down"));
    }
    app.poll().await;
    let m = app.scrape().await;
    assert_eq!(m.env("respan_up", "prod"), Some(0.0));
    assert_eq!(
        m.env("respan_cost_usd", "prod"),
        before.env("respan_cost_usd", "prod")
    );
    app.poll().await;
    let m = app.scrape().await;
    assert_eq!(pages(&m, "full"), Some(2.0));
    assert_eq!(pages_with_sort(&app, "first_seen"), 4);
    assert_equals_a_full_pass(&app, &m).await;
}

#[tokio::test]
async fn metrics_are_gzipped_for_clients_that_ask() {
    use std::io::Read;
    let app = spawn_app(many_customers("prod", 30)).await;
    app.poll().await;
    let plain = app.get("/metrics").await.1;
    let raw = reqwest::Client::builder()
        .no_gzip()
        .build()
        .expect("client")
        .get(format!("{}/metrics", app.address))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .expect("answer");
    assert_eq!(
        raw.headers()
            .get("content-encoding")
            .and_then(|v| v.to_str().ok()),
        Some("gzip")
    );
    let body = raw.bytes().await.expect("body");
    assert!(
        body.len() * 3 < plain.len(),
        "{} vs {}",
        body.len(),
        plain.len()
    );
    let mut text = String::new();
    flate2::read::GzDecoder::new(&body[..])
        .read_to_string(&mut text)
        .expect("valid gzip");
    assert_eq!(text, plain);
}
