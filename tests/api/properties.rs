//! Property tests over the page parser, the aggregation and the exposition.

use std::sync::Arc;

use proptest::prelude::*;
use respan_exporter::aggregate::aggregate;
use respan_exporter::api::{Customer, CustomerPage, parse_page};
use respan_exporter::metrics::Metrics;
use respan_exporter::snapshot::{EnvSnapshot, SnapshotStore};
use serde_json::{Value, json};

use crate::helpers::Exposition;

/// Any JSON value, nested a little.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,12}".prop_map(Value::from),
        "-?[0-9]{1,8}(\\.[0-9]{1,6})?".prop_map(Value::from),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
            prop::collection::btree_map(".{0,4}", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const FIELDS: [&str; 15] = [
    "id",
    "customer_identifier",
    "first_seen",
    "last_active_timeframe",
    "number_of_requests",
    "total_requests",
    "total_tokens",
    "tokens",
    "total_cost",
    "cost",
    "average_latency",
    "average_ttft",
    "total_budget",
    "period_budget",
    "name",
];

fn finite_non_negative(v: f64) -> bool {
    v.is_finite() && v >= 0.0
}

fn customer_ok(c: &Customer) -> bool {
    [c.cost_usd, c.tokens, c.requests]
        .into_iter()
        .all(finite_non_negative)
        && [
            c.average_latency_seconds(),
            c.average_ttft_seconds(),
            c.total_budget_usd(),
            c.period_budget_usd(),
        ]
        .into_iter()
        .flatten()
        .all(finite_non_negative)
}

fn arb_customer() -> impl Strategy<Value = Customer> {
    (
        prop::option::of("[a-e]{0,2}"),
        0.0f64..1e6,
        0u32..10_000,
        prop::option::of(0.0f64..10.0),
        prop::option::of(0.0f64..5.0),
        prop::option::of(1_699_000_000i64..1_700_100_000),
    )
        .prop_map(|(identifier, cost, requests, latency, ttft, last_active)| {
            Customer::new(
                identifier.as_deref(),
                cost,
                f64::from(requests) * 3.0,
                f64::from(requests),
            )
            .with_latency(latency, ttft)
            .with_activity(last_active, last_active)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever a record's fields hold, a well-formed envelope parses, and the
    /// customer it gives has only finite, non-negative numbers.
    #[test]
    fn any_record_contents_parse_into_sane_numbers(
        values in prop::collection::vec(any_json(), FIELDS.len()),
        present in prop::collection::vec(any::<bool>(), FIELDS.len()),
    ) {
        let mut record = serde_json::Map::new();
        for ((field, value), keep) in FIELDS.iter().zip(values).zip(present) {
            if keep {
                record.insert((*field).to_string(), value);
            }
        }
        let page = json!({"count": 1, "next": null, "results": [record]}).to_string();
        let page: CustomerPage = parse_page(page.as_bytes()).expect("envelope parses");
        let mut bad = Vec::new();
        for raw in page.results {
            let (_, c) = raw.into_customer(&mut bad);
            prop_assert!(customer_ok(&c), "{c:?}");
        }
    }

    /// A decimal string reads as the number it spells.
    #[test]
    fn decimal_strings_read_exactly(v in 0.0f64..1e12) {
        let page = json!({"count": 1, "next": null, "results": [{"id": "a", "total_cost": v.to_string()}]});
        let page: CustomerPage = parse_page(page.to_string().as_bytes()).expect("parses");
        let mut bad = Vec::new();
        let (_, c) = page.results.into_iter().next().expect("one").into_customer(&mut bad);
        prop_assert_eq!(c.cost_usd, v);
    }

    /// Truncating a valid page anywhere never yields a page.
    #[test]
    fn a_truncated_page_never_parses(cut in 0usize..200) {
        let page = json!({"count": 1, "next": null, "results": [{"id": "a", "customer_identifier": "x", "total_cost": 1.5}]}).to_string();
        let cut = cut.min(page.len() - 1);
        prop_assert!(parse_page(&page.as_bytes()[..cut]).is_err());
    }

    /// Totals match a plain sum, the top list is ordered, unique and full,
    /// and nothing left out costs more than what is in.
    #[test]
    fn aggregation_invariants(customers in prop::collection::vec(arb_customer(), 0..60), n in 0usize..8) {
        let a = aggregate(&customers, 1_700_000_000, n);
        let plain: f64 = customers.iter().map(|c| c.cost_usd).sum();
        prop_assert!((a.cost_usd - plain).abs() <= 1e-9 * plain.max(1.0));
        prop_assert_eq!(a.customers, customers.len() as u64);

        let mut ids: Vec<&str> = customers.iter().filter_map(Customer::identifier).collect();
        ids.sort();
        ids.dedup();
        prop_assert_eq!(a.top.len(), n.min(ids.len()));
        let mut top_ids: Vec<&str> = a.top.iter().filter_map(Customer::identifier).collect();
        prop_assert_eq!(top_ids.len(), a.top.len());
        for w in a.top.windows(2) {
            prop_assert!(w[0].cost_usd >= w[1].cost_usd);
        }
        if let Some(last) = a.top.last() {
            for c in &customers {
                let in_top = c.identifier().is_some_and(|i| top_ids.contains(&i));
                if !in_top && c.identifier().is_some() {
                    prop_assert!(c.cost_usd <= last.cost_usd);
                }
            }
        }
        top_ids.sort();
        top_ids.dedup();
        prop_assert_eq!(top_ids.len(), a.top.len());
        if let Some(mean) = a.average_latency_seconds {
            prop_assert!((0.0..=10.0 + 1e-9).contains(&mean));
        }
    }

    /// The order of the customers does not change what is published.
    #[test]
    fn aggregation_ignores_order(customers in prop::collection::vec(arb_customer(), 0..40), n in 0usize..6) {
        let mut reversed = customers.clone();
        reversed.reverse();
        let (a, b) = (aggregate(&customers, 1_700_000_000, n), aggregate(&reversed, 1_700_000_000, n));
        prop_assert_eq!(&a.top, &b.top);
        prop_assert_eq!(a.active_customers, b.active_customers);
        prop_assert!((a.cost_usd - b.cost_usd).abs() <= 1e-9 * a.cost_usd.max(1.0));
    }

    /// Any identifiers at all come back, unchanged and each once, from the
    /// rendered exposition.
    #[test]
    fn any_identifiers_round_trip_through_the_exposition(ids in prop::collection::btree_set("\\PC{0,12}|[\\\\\"\\n{}=,]{0,6}", 1..12)) {
        let customers: Vec<Customer> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| Customer::new(Some(id.as_str()), i as f64, 0.0, 0.0))
            .collect();
        let store = Arc::new(SnapshotStore::new(&["prod".to_string()]));
        let metrics = Metrics::new(store.clone()).expect("metrics");
        store.publish(
            "prod",
            EnvSnapshot { aggregate: aggregate(&customers, 0, ids.len()), completed_at: 0.0, pages: 1, passes: Default::default() },
            0.1,
        );
        let text = String::from_utf8(metrics.render().expect("renders")).expect("utf-8");
        let exposition = Exposition::parse(&text);
        let mut expected: Vec<String> = ids.iter().cloned().collect();
        expected.sort();
        prop_assert_eq!(exposition.customers("respan_customer_cost_usd", "prod"), expected);
        prop_assert_eq!(exposition.all("respan_up").len(), 1);
    }
}
