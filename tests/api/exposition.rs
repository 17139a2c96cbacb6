//! The exposition format: valid for Prometheus whatever the identifiers hold.

use crate::helpers::*;

/// Identifiers that need escaping, or that could be mistaken for each other
/// once escaped.
const HOSTILE: [&str; 10] = [
    "quote\"d",
    "back\\slash",
    "new\nline",
    "back\\nslash-n", // a backslash then n: must not read as a newline
    "ünïcødé-🚀",
    "",
    "} 1\nrespan_up{environment=\"prod\"} 0",
    "tab\there",
    "trailing\\",
    "x",
];

#[tokio::test]
async fn hostile_identifiers_round_trip_through_the_exposition() {
    let mut customers: Vec<_> = HOSTILE
        .iter()
        .enumerate()
        .map(|(i, id)| customer(id, "prod", 100.0 + i as f64, 1.0, 1.0))
        .collect();
    let long = "L".repeat(10_000);
    customers.push(customer(&long, "prod", 50.0, 1.0, 1.0));
    let app = spawn_app_with(customers, |c| c.top_n = 20).await;
    app.poll().await;
    let m = app.scrape().await;

    let mut expected: Vec<String> = HOSTILE.iter().map(|s| s.to_string()).collect();
    expected.push(long);
    expected.sort();
    assert_eq!(m.customers("respan_customer_cost_usd", "prod"), expected);
    for (i, id) in HOSTILE.iter().enumerate() {
        let labels = [("environment", "prod"), ("customer_identifier", *id)];
        assert_eq!(
            m.get("respan_customer_cost_usd", &labels),
            Some(100.0 + i as f64),
            "{id:?}"
        );
    }
    // The injected line did not become a sample of its own.
    assert_eq!(m.all("respan_up").len(), 2);
    assert_eq!(m.env("respan_up", "prod"), Some(1.0));
    promtool_check(&m.text);
}

#[tokio::test]
async fn exposition_passes_promtool_and_follows_the_naming_rules() {
    let mut customers = many_customers("prod", 30);
    customers.extend(many_customers("test", 5));
    let app = spawn_app(customers).await;
    app.poll().await;
    let m = app.scrape().await;
    promtool_check(&m.text);

    let mut types = std::collections::BTreeMap::new();
    for line in m.text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("name and type");
            types.insert(name.to_string(), kind.to_string());
        }
    }
    for (name, kind) in &types {
        if name.starts_with("respan_") {
            assert_eq!(
                name.ends_with("_total"),
                kind == "counter",
                "{name} is a {kind}"
            );
            let help = m
                .text
                .lines()
                .find_map(|l| l.strip_prefix(&format!("# HELP {name} ")))
                .unwrap_or_else(|| panic!("{name} has no HELP"));
            if !name.starts_with("respan_exporter_") {
                assert!(help.contains("Respan"), "{name}: {help}");
            }
        }
    }
    for name in [
        "respan_customers",
        "respan_cost_usd",
        "respan_tokens",
        "respan_requests",
        "respan_active_customers",
        "respan_new_customers",
        "respan_customer_cost_usd",
        "respan_up",
        "respan_last_success_timestamp_seconds",
        "respan_poll_duration_seconds",
        "respan_api_requests_total",
        "respan_exporter_build_info",
    ] {
        assert!(types.contains_key(name), "{name} is missing");
    }
    assert_eq!(
        m.get(
            "respan_exporter_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );
    // Every series of the Respan numbers says where it comes from.
    let help = m
        .text
        .lines()
        .find(|l| l.starts_with("# HELP respan_cost_usd "))
        .expect("help");
    assert!(
        help.contains("Cached from the last completed background poll"),
        "{help}"
    );
}
