//! Pure aggregation: one environment's customers in, the numbers of its metrics
//! out. No I/O and no clock: the poll time is an argument, so tests are exact.

use std::cmp::Ordering;
use std::collections::HashSet;

use crate::api::Customer;

/// Activity windows: the `window` label value and its length in seconds.
pub const WINDOWS: [(&str, i64); 4] = [
    ("1h", 3600),
    ("24h", 86_400),
    ("7d", 7 * 86_400),
    ("30d", 30 * 86_400),
];

/// The aggregate numbers of one environment at one poll.
#[derive(Debug, Clone, PartialEq)]
pub struct Aggregate {
    /// Customers counted.
    pub customers: u64,
    /// Sum of `total_cost`, USD.
    pub cost_usd: f64,
    /// Sum of `total_tokens`.
    pub tokens: f64,
    /// Sum of `number_of_requests`.
    pub requests: f64,
    /// Mean of `average_latency` weighted by `number_of_requests`; `None` when no
    /// customer with requests reports a latency.
    pub average_latency_seconds: Option<f64>,
    /// Mean of `average_ttft` weighted by `number_of_requests`, over the
    /// customers that report one.
    pub average_ttft_seconds: Option<f64>,
    /// Customers active within each of [`WINDOWS`] before the poll time.
    pub active_customers: [u64; WINDOWS.len()],
    /// Customers first seen within each of [`WINDOWS`] before the poll time.
    pub new_customers: [u64; WINDOWS.len()],
    /// The top customers by cost, highest first, ties by identifier.
    pub top: Vec<Customer>,
}

/// A compensated (Neumaier) sum: exact enough that the order customers arrive
/// in does not show in the published totals.
#[derive(Debug, Default, Clone, Copy)]
struct Sum {
    sum: f64,
    compensation: f64,
}

impl Sum {
    fn add(&mut self, v: f64) {
        let t = self.sum + v;
        if self.sum.abs() >= v.abs() {
            self.compensation += (self.sum - t) + v;
        } else {
            self.compensation += (v - t) + self.sum;
        }
        self.sum = t;
    }

    fn value(self) -> f64 {
        self.sum + self.compensation
    }
}

/// A mean weighted by request counts.
#[derive(Debug, Default, Clone, Copy)]
struct WeightedMean {
    weighted: Sum,
    weight: Sum,
}

impl WeightedMean {
    fn add(&mut self, value: Option<f64>, weight: f64) {
        if let Some(v) = value
            && weight > 0.0
        {
            self.weighted.add(v * weight);
            self.weight.add(weight);
        }
    }

    fn value(self) -> Option<f64> {
        let w = self.weight.value();
        (w > 0.0).then(|| self.weighted.value() / w)
    }
}

/// The order of the top list: cost descending, then identifier (then the other
/// totals, so that the order is total).
fn by_cost_then_identifier(a: &Customer, b: &Customer) -> Ordering {
    b.cost_usd
        .total_cmp(&a.cost_usd)
        .then_with(|| a.identifier().cmp(&b.identifier()))
        .then_with(|| b.tokens.total_cmp(&a.tokens))
        .then_with(|| b.requests.total_cmp(&a.requests))
}

/// The `n` customers with the highest cost, each identifier once (the first in
/// order wins; a customer without an identifier cannot have a series).
pub fn top_by_cost<'a>(
    customers: impl IntoIterator<Item = &'a Customer>,
    n: usize,
) -> Vec<Customer> {
    if n == 0 {
        return Vec::new();
    }
    let mut eligible: Vec<&Customer> = customers
        .into_iter()
        .filter(|c| c.identifier().is_some())
        .collect();
    if eligible.is_empty() {
        return Vec::new();
    }
    // Select a prefix a little longer than n, sort only it, and widen it in the
    // rare case that repeated identifiers leave fewer than n.
    let mut k = n.saturating_mul(2).min(eligible.len());
    loop {
        if k < eligible.len() {
            eligible.select_nth_unstable_by(k - 1, |a, b| by_cost_then_identifier(a, b));
        }
        let prefix = &mut eligible[..k];
        prefix.sort_unstable_by(|a, b| by_cost_then_identifier(a, b));
        let mut seen = HashSet::new();
        let top: Vec<Customer> = prefix
            .iter()
            .filter(|c| seen.insert(c.identifier()))
            .take(n)
            .map(|c| (*c).clone())
            .collect();
        if top.len() == n || k == eligible.len() {
            return top;
        }
        k = k.saturating_mul(2).min(eligible.len());
    }
}

/// Aggregates one environment's customers as of `now` (Unix seconds).
pub fn aggregate<'a, I>(customers: I, now: i64, top_n: usize) -> Aggregate
where
    I: IntoIterator<Item = &'a Customer>,
    I::IntoIter: Clone,
{
    let customers = customers.into_iter();
    let mut count = 0u64;
    let (mut cost, mut tokens, mut requests) = (Sum::default(), Sum::default(), Sum::default());
    let (mut latency, mut ttft) = (WeightedMean::default(), WeightedMean::default());
    let mut active = [0u64; WINDOWS.len()];
    let mut new = [0u64; WINDOWS.len()];
    for c in customers.clone() {
        count += 1;
        cost.add(c.cost_usd);
        tokens.add(c.tokens);
        requests.add(c.requests);
        latency.add(c.average_latency_seconds(), c.requests);
        ttft.add(c.average_ttft_seconds(), c.requests);
        let (last_active, first_seen) = (c.last_active(), c.first_seen());
        for (i, (_, len)) in WINDOWS.iter().enumerate() {
            let since = now.saturating_sub(*len);
            if last_active.is_some_and(|t| t >= since) {
                active[i] += 1;
            }
            if first_seen.is_some_and(|t| t >= since) {
                new[i] += 1;
            }
        }
    }
    Aggregate {
        customers: count,
        cost_usd: cost.value(),
        tokens: tokens.value(),
        requests: requests.value(),
        average_latency_seconds: latency.value(),
        average_ttft_seconds: ttft.value(),
        active_customers: active,
        new_customers: new,
        top: top_by_cost(customers, top_n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn customer(id: &str, cost: f64, requests: f64) -> Customer {
        Customer::new(Some(id), cost, requests * 10.0, requests)
    }

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn sums_and_counts() {
        let cs = [customer("a", 1.5, 10.0), customer("b", 2.25, 30.0)];
        let a = aggregate(&cs, NOW, 10);
        assert_eq!(a.customers, 2);
        assert_eq!(a.cost_usd, 3.75);
        assert_eq!(a.tokens, 400.0);
        assert_eq!(a.requests, 40.0);
    }

    #[test]
    fn means_are_weighted_by_requests_and_skip_missing_values() {
        let a = customer("a", 1.0, 10.0).with_latency(Some(1.0), Some(0.5));
        // b has no TTFT: it reports no streaming requests.
        let b = customer("b", 1.0, 30.0).with_latency(Some(2.0), None);
        // c has no requests, so no weight.
        let c = customer("c", 1.0, 0.0).with_latency(Some(100.0), None);
        let agg = aggregate(&[a, b, c], NOW, 10);
        assert_eq!(agg.average_latency_seconds, Some((10.0 + 60.0) / 40.0));
        assert_eq!(agg.average_ttft_seconds, Some(0.5));
    }

    #[test]
    fn no_mean_without_anything_to_average() {
        let agg = aggregate(&[customer("a", 1.0, 0.0)], NOW, 10);
        assert_eq!(agg.average_latency_seconds, None);
        assert_eq!(agg.average_ttft_seconds, None);
        let agg = aggregate(&[], NOW, 10);
        assert_eq!((agg.customers, agg.cost_usd), (0, 0.0));
        assert!(agg.top.is_empty());
    }

    #[test]
    fn activity_windows_include_their_edge_and_the_future() {
        let mut cs = Vec::new();
        for (i, age) in [0, 3600, 3601, 86_400, 7 * 86_400 + 1, 40 * 86_400, -60]
            .iter()
            .enumerate()
        {
            cs.push(
                customer(&format!("c{i}"), 0.0, 0.0)
                    .with_activity(Some(NOW - age), Some(NOW - age)),
            );
        }
        cs.push(customer("never", 0.0, 0.0));
        let agg = aggregate(&cs, NOW, 0);
        // ages 0, 3600 and -60 are within 1h; add 3601 and 86400 for 24h; same for 7d;
        // 7d+1 joins for 30d; 40d never.
        assert_eq!(agg.active_customers, [3, 5, 5, 6]);
        assert_eq!(agg.new_customers, [3, 5, 5, 6]);
    }

    #[test]
    fn top_is_by_cost_then_identifier_and_bounded() {
        let cs = [
            customer("b", 5.0, 1.0),
            customer("a", 5.0, 1.0),
            customer("z", 9.0, 1.0),
            customer("c", 1.0, 1.0),
            customer("d", 0.5, 1.0),
        ];
        let ids = |top: &[Customer]| -> Vec<String> {
            top.iter()
                .map(|c| c.identifier().unwrap_or("").to_string())
                .collect()
        };
        assert_eq!(ids(&top_by_cost(&cs, 3)), ["z", "a", "b"]);
        assert_eq!(ids(&top_by_cost(&cs, 10)), ["z", "a", "b", "c", "d"]);
        assert!(top_by_cost(&cs, 0).is_empty());
    }

    #[test]
    fn top_has_each_identifier_once_and_skips_customers_without_one() {
        let dup = customer("a", 8.0, 1.0);
        let anonymous = Customer::new(None, 100.0, 10.0, 1.0);
        let cs = [
            customer("a", 9.0, 1.0),
            dup,
            anonymous,
            customer("b", 7.0, 1.0),
            customer("c", 6.0, 1.0),
        ];
        let top = top_by_cost(&cs, 2);
        let ids: Vec<_> = top.iter().map(Customer::identifier).collect();
        assert_eq!(ids, [Some("a"), Some("b")]);
        assert_eq!(top[0].cost_usd, 9.0);
        // Totals still count every customer.
        assert_eq!(aggregate(&cs, NOW, 2).cost_usd, 130.0);
    }

    #[test]
    fn totals_do_not_depend_on_order() {
        let cs: Vec<Customer> = (0..10_000)
            .map(|i| customer(&i.to_string(), 0.01 * f64::from(i % 97) + 1e-7, 1.0))
            .collect();
        let mut reversed = cs.clone();
        reversed.reverse();
        assert_eq!(
            aggregate(&cs, NOW, 5).cost_usd,
            aggregate(&reversed, NOW, 5).cost_usd
        );
    }
}
