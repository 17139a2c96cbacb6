//! The wire format of "List customers" and its reduction to a compact [`Customer`].
//!
//! The page envelope is strict (a page without `results`, or with a `count` that
//! is not a number, fails the poll), the records are lenient: numbers may come as
//! JSON numbers or as decimal strings (Django's default for decimal fields), any
//! field may be `null` or absent, and unknown fields are ignored.
//!
//! One rule for a broken value inside a record: the value is treated as absent
//! (it adds nothing to sums and is left out of averages), and the record is
//! reported once per broken field so that it can be counted in
//! `respan_invalid_records_total{field}`. A broken value is a `null` or missing
//! total (`total_cost`, `total_tokens`, `number_of_requests`), a negative or
//! non-finite number, a string that is not a number, a timestamp that does not
//! parse, or a value of the wrong JSON type.

use std::fmt;

use compact_str::CompactString;
use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// Parses a page body. The UTF-8 check runs once over the whole body (cheaper
/// than per string), and sonic-rs parses with SIMD, about 1.4 times as fast as
/// serde_json on these pages.
pub fn parse_page(body: &[u8]) -> Result<CustomerPage, String> {
    let text = std::str::from_utf8(body).map_err(|e| e.to_string())?;
    sonic_rs::from_str::<CustomerPage>(text).map_err(|e| e.to_string())
}

/// One page of the List customers answer (Django REST framework pagination).
#[derive(Debug, Deserialize)]
pub struct CustomerPage {
    /// Customers matching the query over all pages.
    pub count: u64,
    /// Absolute URL of the next page, or `null` on the last page. Only its
    /// presence is used: the exporter builds every page URL itself.
    #[serde(default)]
    pub next: Option<String>,
    /// The customers of this page.
    pub results: Vec<RawCustomer>,
}

/// A customer as the API sends it, reduced to the fields the exporter reads.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawCustomer {
    /// Unique id (identifier + environment + organization), kept only as its key.
    pub id: IdKey,
    /// The customer's identifier in the Respan user's own system.
    pub customer_identifier: Text,
    /// First request, RFC 3339.
    pub first_seen: Timestamp,
    /// Last request, RFC 3339.
    pub last_active_timeframe: Timestamp,
    /// Lifetime requests.
    pub number_of_requests: Number,
    /// Newer alias of `number_of_requests`.
    pub total_requests: Number,
    /// Lifetime tokens.
    pub total_tokens: Number,
    /// Newer alias of `total_tokens`.
    pub tokens: Number,
    /// Lifetime cost in USD.
    pub total_cost: Number,
    /// Newer alias of `total_cost`.
    pub cost: Number,
    /// Mean latency in seconds.
    pub average_latency: Number,
    /// Mean time to first token in seconds (absent without streaming requests).
    pub average_ttft: Number,
    /// Lifetime budget in USD.
    pub total_budget: Number,
    /// Budget per period in USD.
    pub period_budget: Number,
}

/// A JSON value read leniently: absent, `null`, usable, or broken.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub enum Lenient<T> {
    /// The field is not in the record.
    #[default]
    Absent,
    /// The field is `null`.
    Null,
    /// A usable value.
    Valid(T),
    /// A value that cannot be used (wrong type, negative, not finite, unparsable).
    Invalid,
}

impl<T: Copy> Lenient<T> {
    fn valid(self) -> Option<T> {
        match self {
            Lenient::Valid(v) => Some(v),
            _ => None,
        }
    }
}

/// A non-negative finite number, sent as a JSON number or a decimal string.
pub type Number = Lenient<f64>;

/// An instant as Unix seconds, sent as an RFC 3339 string.
pub type Timestamp = Lenient<i64>;

/// The key of an `id` field, hashed straight from the JSON text without
/// keeping the string.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub enum IdKey {
    /// Absent or `null`.
    #[default]
    Missing,
    /// The key of the string.
    Value(CustomerKey),
    /// Not a string.
    Invalid,
}

/// A string field; other JSON types are [`Lenient::Invalid`].
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Text {
    /// Absent or `null`.
    #[default]
    Missing,
    /// A string (stored inline when short).
    Value(CompactString),
    /// Not a string.
    Invalid,
}

fn number_from_f64(v: f64) -> Number {
    if v.is_finite() && v >= 0.0 {
        Lenient::Valid(v)
    } else {
        Lenient::Invalid
    }
}

/// Days from 1970-01-01 to a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The common form `YYYY-MM-DDTHH:MM:SS[.fff…]Z`, without a general parser.
fn parse_utc_fast(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let rest = b.get(19..)?;
    let frac = rest
        .iter()
        .skip(1)
        .take_while(|c| c.is_ascii_digit())
        .count();
    let tail = match rest.first() {
        Some(b'.') if frac > 0 => &rest[1 + frac..],
        _ => rest,
    };
    if tail != b"Z"
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        b[r].iter().try_fold(0i64, |acc, c| {
            c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
        })
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let days_in_month = match mo {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        _ => return None,
    };
    if d < 1 || d > days_in_month || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    Some(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec)
}

/// Parses an API timestamp: RFC 3339, or the same without an offset (read as UTC).
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Some(t) = parse_utc_fast(s) {
        return Some(t);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp());
    }
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|t| t.and_utc().timestamp())
}

/// Drains a map or sequence so the deserializer can go on after a wrong type.
fn drain_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

fn drain_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

/// Declares a lenient visitor: `null` maps to `$null`, maps, sequences and booleans to
/// `$invalid`, and the listed kinds of value through their own bodies.
macro_rules! lenient_visitor {
    ($name:ident, $out:ty, $expecting:literal, $null:expr, $invalid:expr, { $($body:tt)* }) => {
        struct $name;
        impl<'de> Visitor<'de> for $name {
            type Value = $out;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str($expecting)
            }
            fn visit_unit<E: de::Error>(self) -> Result<$out, E> {
                Ok($null)
            }
            fn visit_none<E: de::Error>(self) -> Result<$out, E> {
                Ok($null)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<$out, D::Error> {
                d.deserialize_any(self)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<$out, E> {
                Ok($invalid)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<$out, A::Error> {
                drain_map(map)?;
                Ok($invalid)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<$out, A::Error> {
                drain_seq(seq)?;
                Ok($invalid)
            }
            $($body)*
        }
    };
}

lenient_visitor!(
    NumberVisitor,
    Number,
    "a number or a decimal string",
    Lenient::Null,
    Lenient::Invalid,
    {
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Number, E> {
            Ok(number_from_f64(v))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Number, E> {
            Ok(number_from_f64(v as f64))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Number, E> {
            Ok(number_from_f64(v as f64))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Number, E> {
            Ok(v.trim()
                .parse::<f64>()
                .map_or(Lenient::Invalid, number_from_f64))
        }
    }
);

lenient_visitor!(
    TimestampVisitor,
    Timestamp,
    "an RFC 3339 timestamp",
    Lenient::Null,
    Lenient::Invalid,
    {
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Timestamp, E> {
            Ok(Lenient::Invalid)
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Timestamp, E> {
            Ok(Lenient::Invalid)
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Timestamp, E> {
            Ok(Lenient::Invalid)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Timestamp, E> {
            Ok(parse_timestamp(v).map_or(Lenient::Invalid, Lenient::Valid))
        }
    }
);

lenient_visitor!(
    TextVisitor,
    Text,
    "a string",
    Text::Missing,
    Text::Invalid,
    {
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Text, E> {
            Ok(Text::Invalid)
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Text, E> {
            Ok(Text::Invalid)
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Text, E> {
            Ok(Text::Invalid)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Text, E> {
            Ok(Text::Value(CompactString::from(v)))
        }
    }
);

impl<'de> Deserialize<'de> for Number {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NumberVisitor)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TimestampVisitor)
    }
}

lenient_visitor!(
    IdKeyVisitor,
    IdKey,
    "a string",
    IdKey::Missing,
    IdKey::Invalid,
    {
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<IdKey, E> {
            Ok(IdKey::Invalid)
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<IdKey, E> {
            Ok(IdKey::Invalid)
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<IdKey, E> {
            Ok(IdKey::Invalid)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<IdKey, E> {
            Ok(IdKey::Value(customer_key(v)))
        }
    }
);

impl<'de> Deserialize<'de> for IdKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(IdKeyVisitor)
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TextVisitor)
    }
}

/// A customer's key within an environment: a 128-bit hash of its `id` (or of
/// its identifier when the API sends no `id`). Keeping the hash instead of the
/// string halves the state of a large organization; two of a million ids
/// collide with a probability of about 10⁻²⁷.
pub type CustomerKey = u128;

/// The key of an `id`: its 128-bit XXH3 hash, the same in every run.
pub fn customer_key(id: &str) -> CustomerKey {
    xxhash_rust::xxh3::xxh3_128(id.as_bytes())
}

/// Budgets, which few customers have, kept out of line.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Budgets {
    total_usd: Option<f64>,
    period_usd: Option<f64>,
}

/// What the exporter keeps of one customer: numbers and the identifier, nothing
/// else (no name, no email, no raw JSON), in 80 bytes; an identifier of up to
/// 24 bytes is stored inline, a longer one on the heap.
#[derive(Debug, Clone)]
pub struct Customer {
    identifier: Option<CompactString>,
    /// Lifetime cost in USD.
    pub cost_usd: f64,
    /// Lifetime tokens.
    pub tokens: f64,
    /// Lifetime requests.
    pub requests: f64,
    /// NaN when absent.
    average_latency: f64,
    /// NaN when absent.
    average_ttft: f64,
    /// Unix seconds; 0 when absent.
    first_seen: u32,
    /// Unix seconds; 0 when absent.
    last_active: u32,
    budgets: Option<Box<Budgets>>,
}

fn present(v: f64) -> Option<f64> {
    (!v.is_nan()).then_some(v)
}

fn instant(t: u32) -> Option<i64> {
    (t != 0).then_some(i64::from(t))
}

/// A timestamp that fits the compact form (1970 to 2106, not 0).
fn compact_instant(t: Option<i64>) -> u32 {
    t.and_then(|t| u32::try_from(t).ok()).unwrap_or(0)
}

impl PartialEq for Customer {
    /// Equal when every value is; two absent values are equal (unlike NaN).
    fn eq(&self, other: &Self) -> bool {
        self.identifier == other.identifier
            && self.cost_usd == other.cost_usd
            && self.tokens == other.tokens
            && self.requests == other.requests
            && self.average_latency_seconds() == other.average_latency_seconds()
            && self.average_ttft_seconds() == other.average_ttft_seconds()
            && self.first_seen == other.first_seen
            && self.last_active == other.last_active
            && self.budgets == other.budgets
    }
}

impl Customer {
    /// A customer with these totals and nothing else.
    pub fn new(identifier: Option<&str>, cost_usd: f64, tokens: f64, requests: f64) -> Self {
        Self::with_totals(
            identifier.map(CompactString::from),
            cost_usd,
            tokens,
            requests,
        )
    }

    fn with_totals(
        identifier: Option<CompactString>,
        cost_usd: f64,
        tokens: f64,
        requests: f64,
    ) -> Self {
        Self {
            identifier,
            cost_usd,
            tokens,
            requests,
            average_latency: f64::NAN,
            average_ttft: f64::NAN,
            first_seen: 0,
            last_active: 0,
            budgets: None,
        }
    }

    /// `customer_identifier`; `None` when missing or not a string.
    pub fn identifier(&self) -> Option<&str> {
        self.identifier.as_deref()
    }

    /// Mean latency in seconds.
    pub fn average_latency_seconds(&self) -> Option<f64> {
        present(self.average_latency)
    }

    /// Mean time to first token in seconds.
    pub fn average_ttft_seconds(&self) -> Option<f64> {
        present(self.average_ttft)
    }

    /// First request, Unix seconds.
    pub fn first_seen(&self) -> Option<i64> {
        instant(self.first_seen)
    }

    /// Last request, Unix seconds.
    pub fn last_active(&self) -> Option<i64> {
        instant(self.last_active)
    }

    /// Lifetime budget in USD.
    pub fn total_budget_usd(&self) -> Option<f64> {
        self.budgets.as_ref().and_then(|b| b.total_usd)
    }

    /// Budget per period in USD.
    pub fn period_budget_usd(&self) -> Option<f64> {
        self.budgets.as_ref().and_then(|b| b.period_usd)
    }

    /// Sets the mean latency and time to first token.
    pub fn with_latency(mut self, latency: Option<f64>, ttft: Option<f64>) -> Self {
        self.average_latency = latency.unwrap_or(f64::NAN);
        self.average_ttft = ttft.unwrap_or(f64::NAN);
        self
    }

    /// Sets first and last activity (Unix seconds).
    pub fn with_activity(mut self, first_seen: Option<i64>, last_active: Option<i64>) -> Self {
        self.first_seen = compact_instant(first_seen);
        self.last_active = compact_instant(last_active);
        self
    }

    /// Sets the budgets.
    pub fn with_budgets(mut self, total_usd: Option<f64>, period_usd: Option<f64>) -> Self {
        self.budgets = (total_usd.is_some() || period_usd.is_some()).then(|| {
            Box::new(Budgets {
                total_usd,
                period_usd,
            })
        });
        self
    }
}

/// A field of a record that was broken; the names are the `field` label values.
pub type InvalidField = &'static str;

/// A total: the first usable of the field and its alias; 0 (and the field's
/// name in `bad`) when neither is usable.
fn total(primary: Number, alias: Number, name: InvalidField, bad: &mut Vec<InvalidField>) -> f64 {
    if let Some(v) = primary.valid().or_else(|| alias.valid()) {
        return v;
    }
    bad.push(name);
    0.0
}

/// An optional number: absent and `null` are fine, a broken value is reported.
fn optional(n: Number, name: InvalidField, bad: &mut Vec<InvalidField>) -> Option<f64> {
    if n == Lenient::Invalid {
        bad.push(name);
    }
    n.valid()
}

fn optional_time(t: Timestamp, name: InvalidField, bad: &mut Vec<InvalidField>) -> Option<i64> {
    let v = t.valid();
    if t == Lenient::Invalid || v.is_some_and(|t| u32::try_from(t).map_or(true, |t| t == 0)) {
        bad.push(name);
        return None;
    }
    v
}

impl RawCustomer {
    /// `last_active_timeframe`, when usable.
    pub fn last_active(&self) -> Option<i64> {
        self.last_active_timeframe.valid()
    }

    /// Reduces the record to its key and a [`Customer`], listing the fields that
    /// were broken. The key is `None` when the record has neither `id` nor
    /// `customer_identifier`.
    pub fn into_customer(self, bad: &mut Vec<InvalidField>) -> (Option<CustomerKey>, Customer) {
        let identifier = match self.customer_identifier {
            Text::Value(s) => Some(s),
            Text::Missing | Text::Invalid => {
                bad.push("customer_identifier");
                None
            }
        };
        let key = match self.id {
            IdKey::Value(key) => Some(key),
            IdKey::Invalid => {
                bad.push("id");
                identifier.as_deref().map(customer_key)
            }
            IdKey::Missing => identifier.as_deref().map(customer_key),
        };
        let customer = Customer::with_totals(
            identifier,
            total(self.total_cost, self.cost, "total_cost", bad),
            total(self.total_tokens, self.tokens, "total_tokens", bad),
            total(
                self.number_of_requests,
                self.total_requests,
                "number_of_requests",
                bad,
            ),
        )
        .with_latency(
            optional(self.average_latency, "average_latency", bad),
            optional(self.average_ttft, "average_ttft", bad),
        )
        .with_activity(
            optional_time(self.first_seen, "first_seen", bad),
            optional_time(self.last_active_timeframe, "last_active_timeframe", bad),
        )
        .with_budgets(
            optional(self.total_budget, "total_budget", bad),
            optional(self.period_budget, "period_budget", bad),
        );
        (key, customer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The response sample of the API documentation, verbatim.
    const DOC_SAMPLE: &str = include_str!("../../tests/fixtures/doc_sample_page.json");
    /// A page in the newer documented shape: aliases, budgets, decimal strings, nulls.
    const NEWER_SHAPE: &str = include_str!("../../tests/fixtures/newer_shape_page.json");

    fn customers(page: CustomerPage) -> (Vec<Customer>, Vec<InvalidField>) {
        let mut bad = Vec::new();
        let c = page
            .results
            .into_iter()
            .map(|r| r.into_customer(&mut bad).1)
            .collect();
        (c, bad)
    }

    #[test]
    fn parses_the_documented_sample() {
        let page = parse_page(DOC_SAMPLE.as_bytes()).expect("sample parses");
        assert_eq!(page.count, 51);
        assert_eq!(
            page.next.as_deref(),
            Some("https://api.respan.ai/api/users/list/?page=2")
        );
        let (c, bad) = customers(page);
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(c.len(), 1);
        let c = &c[0];
        assert_eq!(c.identifier(), Some("user_123"));
        assert_eq!(c.cost_usd, 523.45);
        assert_eq!(c.tokens, 170000.0);
        assert_eq!(c.requests, 15420.0);
        assert_eq!(c.average_latency_seconds(), Some(1.23));
        assert_eq!(c.average_ttft_seconds(), Some(0.45));
        assert_eq!(c.first_seen(), Some(1_760_515_200)); // 2025-10-15T08:00:00Z
        assert_eq!(c.last_active(), Some(1_767_004_200)); // 2025-12-29T10:30:00Z
    }

    #[test]
    fn parses_the_newer_shape_with_aliases_strings_and_nulls() {
        let page = parse_page(NEWER_SHAPE.as_bytes()).expect("page parses");
        assert_eq!(page.next, None);
        let (c, bad) = customers(page);
        assert!(bad.is_empty(), "{bad:?}");
        // Decimal strings and aliases.
        assert_eq!(c[0].cost_usd, 523.45);
        assert_eq!(c[0].tokens, 1000.0);
        assert_eq!(c[0].requests, 12.0);
        assert_eq!(c[0].total_budget_usd(), Some(1000.0));
        assert_eq!(c[0].period_budget_usd(), Some(100.5));
        // Nulls where nulls are allowed.
        assert_eq!(c[1].average_ttft_seconds(), None);
        assert_eq!(c[1].first_seen(), None);
        assert_eq!(c[1].total_budget_usd(), None);
        // Fractional seconds and an offset.
        assert_eq!(c[1].last_active(), Some(1_767_004_200));
    }

    #[test]
    fn broken_values_are_absent_and_reported() {
        let json = r#"{"count": 1, "next": null, "results": [{
            "id": "a", "customer_identifier": 7,
            "total_cost": null, "total_tokens": "12x", "number_of_requests": -3,
            "average_latency": "NaN", "average_ttft": {"x": 1},
            "first_seen": "yesterday", "last_active_timeframe": 1700000000,
            "total_budget": [1, 2]
        }]}"#;
        let page = parse_page(json.as_bytes()).expect("envelope is fine");
        let mut bad = Vec::new();
        let (key, c) = page
            .results
            .into_iter()
            .next()
            .expect("one record")
            .into_customer(&mut bad);
        assert_eq!(key, Some(customer_key("a")));
        assert_eq!(c.identifier(), None);
        assert_eq!((c.cost_usd, c.tokens, c.requests), (0.0, 0.0, 0.0));
        assert_eq!(c.average_latency_seconds(), None);
        assert_eq!(c.average_ttft_seconds(), None);
        assert_eq!(c.first_seen(), None);
        assert_eq!(c.last_active(), None);
        assert_eq!(
            bad,
            [
                "customer_identifier",
                "total_cost",
                "total_tokens",
                "number_of_requests",
                "average_latency",
                "average_ttft",
                "first_seen",
                "last_active_timeframe",
                "total_budget"
            ]
        );
    }

    #[test]
    fn broken_envelopes_fail() {
        for body in [
            r#"{"count": 1, "next": null}"#,
            r#"{"count": "many", "next": null, "results": []}"#,
            r#"{"count": 1, "next": null, "results": {}}"#,
            r#"{"count": 1, "next": null, "results": [{"id": "a"}"#,
            "<html><body>Bad gateway</body></html>",
            "",
        ] {
            assert!(
                parse_page(body.as_bytes()).is_err(),
                "{body} should not parse"
            );
        }
    }

    #[test]
    fn the_compact_customer_stays_small() {
        assert_eq!(std::mem::size_of::<Customer>(), 80);
        assert_ne!(customer_key("a"), customer_key("b"));
        assert_eq!(customer_key("a"), customer_key("a"));
    }

    #[test]
    fn timestamps_in_the_forms_seen() {
        assert_eq!(parse_timestamp("1970-01-01T00:00:10Z"), Some(10));
        assert_eq!(parse_timestamp("1970-01-01T01:00:10+01:00"), Some(10));
        assert_eq!(parse_timestamp("1970-01-01T00:00:10.123456Z"), Some(10));
        assert_eq!(parse_timestamp("1970-01-01T00:00:10"), Some(10));
        assert_eq!(parse_timestamp("10"), None);
        assert_eq!(parse_timestamp("2025-02-30T00:00:00Z"), None);
        assert_eq!(parse_timestamp("2024-02-29T23:59:59Z"), Some(1_709_251_199));
    }

    #[test]
    fn the_fast_timestamp_path_agrees_with_chrono() {
        for t in (-86_400 * 365 * 3..86_400 * 365 * 200).step_by(86_400 * 7 + 3_607) {
            let Some(dt) = chrono::DateTime::from_timestamp(t, 0) else {
                continue;
            };
            let text = dt.format("%Y-%m-%dT%H:%M:%SZ").to_string();
            assert_eq!(parse_utc_fast(&text), Some(t), "{text}");
            let text = dt.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
            assert_eq!(parse_utc_fast(&text), Some(t), "{text}");
        }
    }
}
