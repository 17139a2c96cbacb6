//! Rate limits and retries: the crawl goes on where it was.

use std::time::{Duration, Instant};

use respan_exporter::demo::{Fault, FaultKind, SimulatedApi};
use tokio_util::sync::CancellationToken;

use crate::helpers::*;

fn pages_requested(app: &TestApp) -> Vec<u32> {
    app.api
        .requests()
        .iter()
        .map(|r| {
            let q = r.uri.split("page=").nth(1).expect("page parameter");
            q.split('&')
                .next()
                .and_then(|p| p.parse().ok())
                .expect("page number")
        })
        .collect()
}

async fn prod_app(n: usize, configure: impl FnOnce(&mut respan_exporter::Config)) -> TestApp {
    spawn_app_with(many_customers("prod", n), |c| {
        c.environments = vec!["prod".into()];
        configure(c);
    })
    .await
}

fn too_many_requests(page: u32, header: Option<&str>, body_retry_after: Option<u64>) -> Fault {
    let mut body = serde_json::json!({"detail": "Rate limit exceeded"});
    if let Some(s) = body_retry_after {
        body["retry_after"] = serde_json::json!(s);
    }
    Fault::on_page(
        Some(page),
        FaultKind::Respond {
            status: 429,
            content_type: "application/json".into(),
            headers: header
                .map(|h| vec![("retry-after".to_string(), h.to_string())])
                .unwrap_or_default(),
            body: body.to_string(),
        },
    )
}

#[tokio::test]
async fn server_errors_are_retried_and_the_crawl_goes_on_from_the_same_page() {
    let app = prod_app(2500, |_| {}).await;
    app.api
        .inject(Fault::error(Some(2), 503, "Service unavailable"));
    app.api.inject(Fault::error(Some(2), 502, "Bad gateway"));
    app.poll().await;
    let m = app.scrape().await;
    assert_eq!(m.env("respan_up", "prod"), Some(1.0));
    assert_eq!(m.env("respan_customers", "prod"), Some(2500.0));
    assert_eq!(pages_requested(&app), [1, 2, 2, 2, 3]);
    for code in ["503", "502"] {
        assert_eq!(m.answers("prod", code), Some(1.0), "{code}");
    }
}

#[tokio::test]
async fn a_429_waits_what_the_body_says_then_retries_the_same_page() {
    let app = prod_app(2500, |_| {}).await;
    app.api.inject(too_many_requests(2, None, Some(1)));
    let started = Instant::now();
    app.poll().await;
    let took = started.elapsed();
    let m = app.scrape().await;
    assert_eq!(m.env("respan_up", "prod"), Some(1.0));
    assert_eq!(pages_requested(&app), [1, 2, 2, 3]);
    assert!(took >= Duration::from_secs(1), "{took:?}");
    let waited = m
        .get("respan_rate_limit_wait_seconds_total", &[])
        .expect("wait counter");
    assert!((1.0..1.5).contains(&waited), "{waited}");
    assert_eq!(m.answers("prod", "429"), Some(1.0));
}

#[tokio::test]
async fn a_429_retry_after_header_is_honoured() {
    let app = prod_app(10, |_| {}).await;
    // The header says 1 s and the body says nothing.
    app.api.inject(too_many_requests(1, Some("1"), None));
    let started = Instant::now();
    app.poll().await;
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(app.scrape().await.env("respan_up", "prod"), Some(1.0));
    assert_eq!(pages_requested(&app), [1, 1]);
}

#[tokio::test]
async fn a_429_wait_is_capped() {
    let app = prod_app(10, |c| c.retry.max_retry_after = Duration::from_millis(200)).await;
    app.api
        .inject(too_many_requests(1, Some("3600"), Some(3600)));
    let started = Instant::now();
    app.poll().await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(app.scrape().await.env("respan_up", "prod"), Some(1.0));
}

#[tokio::test]
async fn endless_429s_fail_the_poll_after_a_bound() {
    let app = prod_app(10, |c| {
        c.retry.max_retry_after = Duration::from_millis(10);
        c.retry.max_rate_limited = 2;
    })
    .await;
    for _ in 0..3 {
        app.api.inject(too_many_requests(1, Some("1"), None));
    }
    app.poll().await;
    let m = app.scrape().await;
    assert_eq!(m.env("respan_up", "prod"), Some(0.0));
    assert_eq!(m.failures("prod", "rate_limited"), Some(1.0));
    assert_eq!(pages_requested(&app), [1, 1, 1]);
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let app = prod_app(10, |_| {}).await;
    app.api.inject(Fault::error(Some(1), 400, "Bad request"));
    app.poll().await;
    let m = app.scrape().await;
    assert_eq!(m.env("respan_up", "prod"), Some(0.0));
    assert_eq!(pages_requested(&app), [1]);
}

#[tokio::test]
async fn the_client_limit_keeps_the_exporter_under_the_api_limit() {
    // The API admits 20 requests in any 2 s (600 a minute); a crawl of 25 pages.
    let customers = many_customers("prod", 25_000);
    // At 400 requests a minute (with a burst of 3: at most 17 in any 2 s) the
    // exporter never trips it.
    let app = spawn_app_with(customers.clone(), |c| {
        c.environments = vec!["prod".into()];
        c.requests_per_minute = 400;
    })
    .await;
    app.api.set_rate_limit(Some((20, Duration::from_secs(2))));
    app.poll().await;
    let m = app.scrape().await;
    assert_eq!(m.env("respan_customers", "prod"), Some(25_000.0));
    assert_eq!(m.answers("prod", "429"), None);
    assert_eq!(m.answers("prod", "200"), Some(25.0));

    // Control: an exporter allowed far more than a stricter API admits (3 a
    // second) is answered 429 on a 6-page crawl, waits, and still completes
    // without restarting the crawl.
    let fast = spawn_app_with(many_customers("prod", 6000), |c| {
        c.environments = vec!["prod".into()];
        c.requests_per_minute = 6000;
    })
    .await;
    fast.api.set_rate_limit(Some((3, Duration::from_secs(1))));
    fast.poll().await;
    let m = fast.scrape().await;
    assert_eq!(m.env("respan_customers", "prod"), Some(6000.0));
    let throttled = m
        .get(
            "respan_api_requests_total",
            &[("environment", "prod"), ("code", "429")],
        )
        .unwrap_or(0.0);
    assert!(throttled >= 1.0, "the control crawl was never throttled");
    assert_eq!(m.answers("prod", "200"), Some(6.0));
    let mut pages = pages_requested(&fast);
    pages.dedup();
    assert_eq!(pages, [1, 2, 3, 4, 5, 6]);
}

#[tokio::test]
async fn a_redirect_is_not_followed_so_the_key_stays_home() {
    let stop = CancellationToken::new();
    let elsewhere = SimulatedApi::new("anything", vec![]);
    let (elsewhere_url, _) = elsewhere.start(stop.clone()).await.expect("starts");
    let app = prod_app(10, |_| {}).await;
    app.api.inject(Fault::on_page(
        Some(1),
        FaultKind::Respond {
            status: 302,
            content_type: "text/plain".into(),
            headers: vec![(
                "location".into(),
                format!("{elsewhere_url}/api/users/list/?page=1"),
            )],
            body: String::new(),
        },
    ));
    app.poll().await;
    let m = app.scrape().await;
    assert_eq!(m.env("respan_up", "prod"), Some(0.0));
    assert!(elsewhere.requests().is_empty());
    assert_eq!(
        app.poller_status("prod").as_deref(),
        Some("page 1: HTTP 302")
    );
    stop.cancel();
}

#[tokio::test]
async fn a_rotated_key_file_is_used_at_the_next_poll() {
    let dir = std::env::temp_dir().join(format!("respan-rotate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("key");
    std::fs::write(&path, "old-key\n").expect("write");
    let key_path = path.clone();
    let app = prod_app(10, move |c| {
        c.key = Some(respan_exporter::config::KeySource::File(key_path));
    })
    .await;
    app.poll().await;
    assert_eq!(app.scrape().await.env("respan_up", "prod"), Some(0.0));

    std::fs::write(&path, format!("{TEST_KEY}\n")).expect("rotate");
    app.poll().await;
    assert_eq!(app.scrape().await.env("respan_up", "prod"), Some(1.0));

    std::fs::remove_file(&path).expect("remove");
    app.poll().await;
    let m = app.scrape().await;
    assert_eq!(m.env("respan_up", "prod"), Some(0.0));
    assert_eq!(m.failures("prod", "key_file"), Some(1.0));
    assert_eq!(m.env("respan_customers", "prod"), Some(10.0));
    std::fs::remove_dir_all(&dir).ok();
}
