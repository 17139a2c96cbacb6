//! A poll that fails publishes nothing, says why, and keeps the last snapshot.

use respan_exporter::demo::{Fault, FaultKind, SimulatedApi};
use tokio_util::sync::CancellationToken;

use crate::helpers::*;

/// An app with 2,500 prod customers that has completed one poll.
async fn polled_app() -> TestApp {
    let app = spawn_app_with(many_customers("prod", 2500), |c| {
        c.environments = vec!["prod".into()];
    })
    .await;
    app.poll().await;
    assert_eq!(app.scrape().await.env("respan_up", "prod"), Some(1.0));
    app
}

/// Doubles every cost, so a published partial or new snapshot would show.
fn double_costs(app: &TestApp) {
    app.api
        .update_customers(|cs| cs.iter_mut().for_each(|c| c.cost *= 2.0));
}

#[tokio::test]
async fn poll_keeps_last_snapshot_when_page_two_fails_with_a_server_error() {
    let app = polled_app().await;
    let before = app.scrape().await;
    double_costs(&app);
    // The first answer and all three retries fail.
    for _ in 0..4 {
        app.api
            .inject(Fault::error(Some(2), 500, "Internal server error"));
    }
    app.poll().await;

    let m = app.scrape().await;
    assert_eq!(m.env("respan_up", "prod"), Some(0.0));
    for name in [
        "respan_cost_usd",
        "respan_customers",
        "respan_last_success_timestamp_seconds",
    ] {
        assert_eq!(m.env(name, "prod"), before.env(name, "prod"), "{name}");
    }
    assert_eq!(
        m.customers("respan_customer_cost_usd", "prod"),
        before.customers("respan_customer_cost_usd", "prod")
    );
    assert_eq!(m.failures("prod", "server_error"), Some(1.0));
    assert_eq!(m.answers("prod", "500"), Some(4.0));
    let status = app.poller_status("prod");
    assert_eq!(
        status.as_deref(),
        Some("page 2: HTTP 500: Internal server error")
    );

    // The next poll recovers and publishes the new numbers.
    app.poll().await;
    let m = app.scrape().await;
    assert_eq!(m.env("respan_up", "prod"), Some(1.0));
    let cost = m.env("respan_cost_usd", "prod").expect("cost");
    assert!((cost - 2.0 * 31262.5).abs() < 1e-6, "{cost}");
}

#[tokio::test]
async fn truncated_json_fails_the_poll_and_keeps_the_snapshot() {
    let app = polled_app().await;
    let before = app.scrape().await;
    double_costs(&app);
    app.api
        .inject(Fault::on_page(Some(3), FaultKind::Truncate(5000)));
    app.poll().await;
    let m = app.scrape().await;
    assert_eq!(m.env("respan_up", "prod"), Some(0.0));
    assert_eq!(
        m.env("respan_cost_usd", "prod"),
        before.env("respan_cost_usd", "prod")
    );
    assert_eq!(m.failures("prod", "bad_answer"), Some(1.0));
    let status = app.poller_status("prod").expect("an error");
    assert!(
        status.starts_with("page 3: answer is not a valid customers page: EOF while parsing"),
        "{status}"
    );
}

#[tokio::test]
async fn html_error_page_with_status_200_fails_the_poll() {
    let app = polled_app().await;
    app.api.inject(Fault::on_page(
        Some(1),
        FaultKind::Respond {
            status: 200,
            content_type: "text/html".into(),
            headers: vec![],
            body: "<html><body>Maintenance</body></html>".into(),
        },
    ));
    app.poll().await;
    let m = app.scrape().await;
    assert_eq!(m.env("respan_up", "prod"), Some(0.0));
    assert_eq!(m.env("respan_customers", "prod"), Some(2500.0));
    let status = app.poller_status("prod").expect("an error");
    assert!(status.contains("expected JSON, got text/html"), "{status}");
}

#[tokio::test]
async fn rejected_key_fails_every_poll_and_readiness_stays_false() {
    let app = spawn_app_with(many_customers("prod", 3), |c| {
        c.environments = vec!["prod".into()];
        c.key = Some(respan_exporter::config::KeySource::Fixed(
            respan_exporter::config::ApiKey::new("wrong-key").expect("key"),
        ));
    })
    .await;
    app.poll().await;
    app.poll().await;
    let m = app.scrape().await;
    assert_eq!(m.env("respan_up", "prod"), Some(0.0));
    assert_eq!(m.env("respan_customers", "prod"), None);
    assert_eq!(m.failures("prod", "auth"), Some(2.0));
    assert_eq!(m.answers("prod", "401"), Some(2.0));
    let (status, body) = app.get("/readyz").await;
    assert_eq!(status, 503);
    assert!(body.contains("HTTP 401: Invalid API key."), "{body}");
    assert!(!m.text.contains("wrong-key") && !body.contains("wrong-key"));
}

#[tokio::test]
async fn next_link_to_another_host_is_never_followed() {
    // A second server stands in for an attacker's host; it must see no request.
    let stop = CancellationToken::new();
    let elsewhere = SimulatedApi::new("anything", vec![]);
    let (elsewhere_url, _) = elsewhere.start(stop.clone()).await.expect("starts");
    let app = spawn_app_with(many_customers("prod", 2500), |c| {
        c.environments = vec!["prod".into()];
    })
    .await;
    app.api.set_next_base(Some(elsewhere_url));
    app.poll().await;
    let m = app.scrape().await;
    assert_eq!(m.env("respan_customers", "prod"), Some(2500.0));
    assert!(
        elsewhere.requests().is_empty(),
        "{:?}",
        elsewhere.requests()
    );
    assert_eq!(app.api.requests().len(), 3);
    stop.cancel();
}

#[tokio::test]
async fn count_that_disagrees_with_the_pages_fails_the_poll() {
    let app = polled_app().await;
    app.api.inject(Fault::on_page(
        Some(3),
        FaultKind::Edit(|page| page["count"] = serde_json::json!(2600)),
    ));
    app.poll().await;
    let m = app.scrape().await;
    assert_eq!(m.env("respan_up", "prod"), Some(0.0));
    assert_eq!(m.failures("prod", "count_mismatch"), Some(1.0));
    assert_eq!(
        app.poller_status("prod").as_deref(),
        Some("the API counts 2600 customers but its pages held 2500 distinct ones")
    );
}

#[tokio::test]
async fn a_page_that_repeats_the_previous_one_fails_the_poll() {
    let app = polled_app().await;
    // Page 2 answers with page 1's customers: 1,000 customers are never read.
    app.api.inject(Fault::on_page(
        Some(2),
        FaultKind::Edit(|page| {
            for (i, r) in page["results"]
                .as_array_mut()
                .expect("results")
                .iter_mut()
                .enumerate()
            {
                let id = format!("c{:06}", i + 1);
                r["id"] =
                    serde_json::json!(format!("{id}prod8264a3f4-40c7-476a-97d1-96908127ea21"));
                r["customer_identifier"] = serde_json::json!(id);
            }
        }),
    ));
    app.poll().await;
    let m = app.scrape().await;
    assert_eq!(m.env("respan_up", "prod"), Some(0.0));
    assert_eq!(m.failures("prod", "count_mismatch"), Some(1.0));
    assert_eq!(m.env("respan_customers", "prod"), Some(2500.0));
}

#[tokio::test]
async fn an_endless_next_is_cut_off() {
    let app = spawn_app_with(vec![], |c| c.environments = vec!["prod".into()]).await;
    // Every page claims one customer in all and announces another page.
    for page in 1..=10u32 {
        let body = serde_json::json!({
            "count": 1,
            "next": format!("http://127.0.0.1/api/users/list/?page={}", page + 1),
            "previous": null,
            "results": [{"id": format!("id{page}"), "customer_identifier": format!("c{page}"), "total_cost": 1, "total_tokens": 1, "number_of_requests": 1}],
        });
        app.api.inject(Fault::on_page(
            Some(page),
            FaultKind::Respond {
                status: 200,
                content_type: "application/json".into(),
                headers: vec![],
                body: body.to_string(),
            },
        ));
    }
    app.poll().await;
    let m = app.scrape().await;
    assert_eq!(m.env("respan_up", "prod"), Some(0.0));
    assert_eq!(m.failures("prod", "bad_pagination"), Some(1.0));
    // One page for one customer plus the two pages of margin.
    assert_eq!(app.api.requests().len(), 3);
}

#[tokio::test]
async fn broken_fields_in_a_record_are_counted_not_fatal() {
    let app = spawn_app_with(many_customers("prod", 3), |c| {
        c.environments = vec!["prod".into()]
    })
    .await;
    app.api.inject(Fault::on_page(
        Some(1),
        FaultKind::Edit(|page| {
            let r = &mut page["results"][0];
            r["total_cost"] = serde_json::json!("abc");
            r["cost"] = serde_json::json!(null);
            r["number_of_requests"] = serde_json::json!(-5);
            r["total_requests"] = serde_json::json!(null);
        }),
    ));
    app.poll().await;
    let m = app.scrape().await;
    assert_eq!(m.env("respan_up", "prod"), Some(1.0));
    // Costs 0.01, 0.02, 0.03: the broken first one counts as absent.
    let cost = m.env("respan_cost_usd", "prod").expect("cost");
    assert!((cost - 0.05).abs() < 1e-12, "{cost}");
    assert_eq!(m.env("respan_requests", "prod"), Some(2.0));
    for field in ["total_cost", "number_of_requests"] {
        assert_eq!(
            m.get(
                "respan_invalid_records_total",
                &[("environment", "prod"), ("field", field)]
            ),
            Some(1.0),
            "{field}"
        );
    }
}

#[tokio::test]
async fn unreachable_api_fails_the_poll_with_a_connect_error() {
    // Bind a port and close it: nothing listens there.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let app = spawn_app_with(vec![], |c| {
        c.environments = vec!["prod".into()];
        c.base_url = respan_exporter::config::parse_base_url(&format!("http://127.0.0.1:{port}"))
            .expect("url");
    })
    .await;
    app.poll().await;
    let m = app.scrape().await;
    assert_eq!(m.env("respan_up", "prod"), Some(0.0));
    assert_eq!(m.failures("prod", "connect"), Some(1.0));
    assert_eq!(m.answers("prod", "connect"), Some(4.0));
}

#[tokio::test]
async fn a_slow_answer_times_out() {
    let app = spawn_app_with(many_customers("prod", 3), |c| {
        c.environments = vec!["prod".into()];
        c.timeout = std::time::Duration::from_millis(300);
    })
    .await;
    for _ in 0..4 {
        app.api.inject(Fault::on_page(
            Some(1),
            FaultKind::Delay(std::time::Duration::from_secs(3)),
        ));
    }
    app.poll().await;
    let m = app.scrape().await;
    assert_eq!(m.failures("prod", "timeout"), Some(1.0));
    assert_eq!(m.answers("prod", "timeout"), Some(4.0));
}
