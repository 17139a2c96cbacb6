//! What one poll reads and publishes.

use respan_exporter::demo::SimCustomer;

use crate::helpers::*;

#[tokio::test]
async fn poll_publishes_exact_totals_and_request_weighted_means() {
    let mut a = customer("alice", "prod", 10.5, 1000.0, 10.0);
    a.average_latency = Some(1.0);
    a.average_ttft = Some(0.25);
    a.total_budget = Some(500.0);
    a.period_budget = Some(50.0);
    let mut b = customer("bob", "prod", 2.25, 300.0, 30.0);
    b.average_latency = Some(2.0);
    b.average_ttft = None; // no streaming requests
    b.cost_as_string = true;
    let mut c = customer("carol", "test", 1.0, 5.0, 2.0);
    c.average_latency = Some(0.5);
    let app = spawn_app(vec![a, b, c]).await;
    app.poll().await;
    let m = app.scrape().await;

    assert_eq!(m.env("respan_customers", "prod"), Some(2.0));
    assert_eq!(m.env("respan_cost_usd", "prod"), Some(12.75));
    assert_eq!(m.env("respan_tokens", "prod"), Some(1300.0));
    assert_eq!(m.env("respan_requests", "prod"), Some(40.0));
    assert_eq!(
        m.env("respan_average_latency_seconds", "prod"),
        Some((10.0 + 60.0) / 40.0)
    );
    assert_eq!(m.env("respan_average_ttft_seconds", "prod"), Some(0.25));
    assert_eq!(m.env("respan_customers", "test"), Some(1.0));
    assert_eq!(m.env("respan_cost_usd", "test"), Some(1.0));
    // Nothing to average: no sample at all.
    assert_eq!(m.env("respan_average_ttft_seconds", "test"), None);
    assert_eq!(m.env("respan_up", "prod"), Some(1.0));
    assert_eq!(m.env("respan_up", "test"), Some(1.0));

    let alice = [("environment", "prod"), ("customer_identifier", "alice")];
    assert_eq!(m.get("respan_customer_cost_usd", &alice), Some(10.5));
    assert_eq!(m.get("respan_customer_tokens", &alice), Some(1000.0));
    assert_eq!(m.get("respan_customer_requests", &alice), Some(10.0));
    assert_eq!(
        m.get("respan_customer_average_latency_seconds", &alice),
        Some(1.0)
    );
    assert_eq!(
        m.get("respan_customer_average_ttft_seconds", &alice),
        Some(0.25)
    );
    assert_eq!(
        m.get("respan_customer_total_budget_usd", &alice),
        Some(500.0)
    );
    assert_eq!(
        m.get("respan_customer_period_budget_usd", &alice),
        Some(50.0)
    );
    assert_eq!(
        m.get("respan_customer_last_active_timestamp_seconds", &alice),
        Some(1_700_000_000.0)
    );
    let bob = [("environment", "prod"), ("customer_identifier", "bob")];
    assert_eq!(m.get("respan_customer_cost_usd", &bob), Some(2.25));
    assert_eq!(m.get("respan_customer_average_ttft_seconds", &bob), None);
    assert_eq!(m.get("respan_customer_total_budget_usd", &bob), None);
    // Names and emails never become labels.
    assert!(!m.text.contains("Customer alice"));
    assert!(
        m.samples
            .iter()
            .all(|s| s.labels.keys().all(|k| k != "name" && k != "email"))
    );
}

#[tokio::test]
async fn crawl_reads_every_page_with_its_own_urls() {
    let mut customers = many_customers("prod", 2500);
    customers.extend(many_customers("test", 3));
    let app = spawn_app(customers).await;
    app.poll().await;
    let m = app.scrape().await;

    assert_eq!(m.env("respan_customers", "prod"), Some(2500.0));
    // 0.01 + 0.02 + … + 25.00 USD
    let cost = m.env("respan_cost_usd", "prod").expect("cost");
    assert!((cost - 31262.5).abs() < 1e-6, "{cost}");
    assert_eq!(m.env("respan_requests", "prod"), Some(2500.0));
    assert_eq!(m.env("respan_customers", "test"), Some(3.0));
    assert_eq!(m.answers("prod", "200"), Some(3.0));

    let uris: Vec<String> = app.api.requests().into_iter().map(|r| r.uri).collect();
    assert_eq!(
        uris,
        [
            "/api/users/list/?page=1&page_size=1000&sort_by=first_seen&environment=prod",
            "/api/users/list/?page=2&page_size=1000&sort_by=first_seen&environment=prod",
            "/api/users/list/?page=3&page_size=1000&sort_by=first_seen&environment=prod",
            "/api/users/list/?page=1&page_size=1000&sort_by=first_seen&environment=test",
        ]
    );
    assert!(app.api.requests().iter().all(|r| r.authorized));
}

#[tokio::test]
async fn top_n_is_by_cost_with_ties_by_identifier_and_bounded() {
    let customers = vec![
        customer("b", "prod", 5.0, 1.0, 1.0),
        customer("a", "prod", 5.0, 1.0, 1.0),
        customer("z", "prod", 9.0, 1.0, 1.0),
        customer("c", "prod", 1.0, 1.0, 1.0),
    ];
    let app = spawn_app_with(customers, |c| c.top_n = 3).await;
    app.poll().await;
    let m = app.scrape().await;
    assert_eq!(
        m.customers("respan_customer_cost_usd", "prod"),
        ["a", "b", "z"]
    );
    assert_eq!(m.env("respan_customers", "prod"), Some(4.0));
    assert_eq!(m.env("respan_cost_usd", "prod"), Some(20.0));
}

#[tokio::test]
async fn customer_leaving_the_top_n_loses_its_series_at_once() {
    let customers = vec![
        customer("big", "prod", 100.0, 1.0, 1.0),
        customer("mid", "prod", 50.0, 1.0, 1.0),
        customer("small", "prod", 1.0, 1.0, 1.0),
    ];
    let app = spawn_app_with(customers, |c| c.top_n = 2).await;
    app.poll().await;
    assert_eq!(
        app.scrape()
            .await
            .customers("respan_customer_cost_usd", "prod"),
        ["big", "mid"]
    );

    app.api.update_customers(|cs| {
        for c in cs.iter_mut().filter(|c| c.identifier == "small") {
            c.cost = 75.0;
        }
    });
    app.poll().await;
    let m = app.scrape().await;
    assert_eq!(
        m.customers("respan_customer_cost_usd", "prod"),
        ["big", "small"]
    );
    for name in [
        "respan_customer_tokens",
        "respan_customer_requests",
        "respan_customer_last_active_timestamp_seconds",
    ] {
        assert_eq!(m.customers(name, "prod"), ["big", "small"], "{name}");
    }
}

#[tokio::test]
async fn activity_windows_count_recent_customers() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let mut customers = Vec::new();
    for (i, age) in [60, 2 * 3600, 3 * 86_400, 20 * 86_400, 90 * 86_400]
        .into_iter()
        .enumerate()
    {
        let mut c = customer(&format!("c{i}"), "prod", 1.0, 1.0, 1.0);
        c.last_active = Some(now - age);
        c.first_seen = now - age;
        customers.push(c);
    }
    let mut never = customer("never-active", "prod", 0.0, 0.0, 0.0);
    never.last_active = None;
    never.first_seen = now - 400 * 86_400;
    customers.push(never);
    let app = spawn_app(customers).await;
    app.poll().await;
    let m = app.scrape().await;
    for (window, expected) in [("1h", 1.0), ("24h", 2.0), ("7d", 3.0), ("30d", 4.0)] {
        let labels = [("environment", "prod"), ("window", window)];
        assert_eq!(
            m.get("respan_active_customers", &labels),
            Some(expected),
            "active {window}"
        );
        assert_eq!(
            m.get("respan_new_customers", &labels),
            Some(expected),
            "new {window}"
        );
    }
}

#[tokio::test]
async fn a_customer_listed_on_two_pages_is_counted_once() {
    // 1,001 customers; page 2 repeats the last customer of page 1 (as a shifting
    // page would), and `count` says 1,001 distinct customers.
    let customers = many_customers("prod", 1001);
    let app = spawn_app_with(customers, |c| c.environments = vec!["prod".into()]).await;
    app.api.inject(respan_exporter::demo::Fault::on_page(
        Some(2),
        respan_exporter::demo::FaultKind::Edit(|page| {
            let results = page["results"].as_array_mut().expect("results");
            let mut copy = results[0].clone();
            copy["id"] = serde_json::json!(format!(
                "c001000prod{}",
                "8264a3f4-40c7-476a-97d1-96908127ea21"
            ));
            copy["customer_identifier"] = serde_json::json!("c001000");
            results.push(copy);
        }),
    ));
    app.poll().await;
    let m = app.scrape().await;
    assert_eq!(m.env("respan_up", "prod"), Some(1.0));
    assert_eq!(m.env("respan_customers", "prod"), Some(1001.0));
}

#[tokio::test]
async fn decimal_strings_and_nulls_are_read() {
    let mut a = SimCustomer::new("strings", "prod", 523.45, 10.0, 3.0);
    a.cost_as_string = true;
    a.name = None;
    a.email = None;
    a.last_active = None;
    let app = spawn_app(vec![a]).await;
    app.poll().await;
    let m = app.scrape().await;
    assert_eq!(m.env("respan_cost_usd", "prod"), Some(523.45));
    let labels = [("environment", "prod"), ("customer_identifier", "strings")];
    assert_eq!(
        m.get("respan_customer_last_active_timestamp_seconds", &labels),
        None
    );
    assert_eq!(m.get("respan_customer_cost_usd", &labels), Some(523.45));
}
