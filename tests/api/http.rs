//! The web endpoints.

use std::time::Duration;

use crate::helpers::*;

#[tokio::test]
async fn healthz_is_ok_and_readyz_waits_for_every_environment() {
    let app = spawn_app(many_customers("prod", 2)).await;
    assert_eq!(app.get("/healthz").await.0, 200);
    let (status, body) = app.get("/readyz").await;
    assert_eq!(status, 503);
    assert!(
        body.contains("\"prod\" has no completed poll yet"),
        "{body}"
    );

    // Only prod polled: still not ready, because of test.
    app.poller
        .poll_environment("prod")
        .await
        .expect("prod polls");
    let (status, body) = app.get("/readyz").await;
    assert_eq!(status, 503);
    assert!(
        body.contains("\"test\"") && !body.contains("\"prod\""),
        "{body}"
    );

    app.poll().await;
    assert_eq!(app.get("/readyz").await, (200, "ready\n".to_string()));
}

#[tokio::test]
async fn metrics_are_served_before_the_first_poll_with_up_zero() {
    let app = spawn_app(vec![]).await;
    let m = app.scrape().await;
    assert_eq!(m.env("respan_up", "prod"), Some(0.0));
    assert_eq!(m.env("respan_customers", "prod"), None);
    promtool_check(&m.text);
}

#[tokio::test]
async fn landing_page_links_the_configured_metrics_path() {
    let app = spawn_app_with(vec![], |c| c.telemetry_path = "/custom/metrics".into()).await;
    let (status, body) = app.get("/").await;
    assert_eq!(status, 200);
    assert!(body.contains("<a href=\"/custom/metrics\">"), "{body}");
    assert_eq!(app.get("/custom/metrics").await.0, 200);
    assert_eq!(app.get("/metrics").await.0, 404);
}

#[tokio::test]
async fn background_poller_polls_at_its_interval() {
    let app = spawn_app_with(many_customers("prod", 3), |c| {
        c.poll_interval = Duration::from_millis(200);
    })
    .await;
    let ready = eventually(Duration::from_secs(10), async || {
        app.get("/readyz").await.0 == 200
    })
    .await;
    assert!(ready, "never became ready");
    // More polls follow without anyone asking.
    let more = eventually(Duration::from_secs(10), async || {
        app.api.requests().len() >= 6
    })
    .await;
    assert!(more, "only {} requests", app.api.requests().len());
}

#[tokio::test]
async fn metrics_answer_while_a_poll_hangs() {
    let app = spawn_app_with(many_customers("prod", 3), |c| {
        c.environments = vec!["prod".into()];
        c.timeout = Duration::from_secs(30);
    })
    .await;
    app.poll().await;
    app.api.inject(respan_exporter::demo::Fault::on_page(
        Some(1),
        respan_exporter::demo::FaultKind::Delay(Duration::from_secs(20)),
    ));
    let poller = app.poller.clone();
    let hung = tokio::spawn(async move { poller.poll_all().await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let scraped = tokio::time::timeout(Duration::from_secs(2), app.scrape()).await;
    let m = scraped.expect("/metrics answered while a poll hung");
    assert_eq!(m.env("respan_customers", "prod"), Some(3.0));
    hung.abort();
}
