//! A simulated Respan API: the List customers endpoint with the real one's path,
//! auth, pagination, sorting, environment filter and error shapes.
//!
//! `--demo` runs it inside the process with a few thousand synthetic customers
//! whose usage grows over time; the integration tests run it with customers of
//! their own and inject faults (error statuses, broken bodies, delays) into
//! chosen pages.
//!
//! Like the documented API, the `next` link it returns carries only `page=N`.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The key the demo's simulated API accepts.
pub const DEMO_API_KEY: &str = "demo-key";

/// Path of List customers.
pub const LIST_PATH: &str = "/api/users/list/";

/// Largest page the API serves.
const MAX_PAGE_SIZE: usize = 1000;

/// Page size when the request gives none.
const DEFAULT_PAGE_SIZE: usize = 50;

/// Organization id of every simulated customer.
const ORGANIZATION: &str = "8264a3f4-40c7-476a-97d1-96908127ea21";

/// How a customer's usage grows while the simulation runs.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Growth {
    /// New requests per second.
    pub requests_per_second: f64,
    /// Tokens per new request.
    pub tokens_per_request: f64,
    /// USD per new request.
    pub cost_per_request: f64,
    /// A burst: from this many seconds after the start ...
    pub burst_from: f64,
    /// ... to this many ...
    pub burst_until: f64,
    /// ... requests come this many times faster.
    pub burst_factor: f64,
}

impl Growth {
    /// Requests added between the start and `t` seconds after it.
    fn requests_at(&self, t: f64) -> f64 {
        let burst = (t.min(self.burst_until) - self.burst_from).max(0.0);
        self.requests_per_second * (t + burst * (self.burst_factor - 1.0).max(0.0))
    }
}

/// One simulated customer: its values at the start of the simulation and how
/// they grow.
#[derive(Debug, Clone, PartialEq)]
pub struct SimCustomer {
    /// `customer_identifier`.
    pub identifier: String,
    /// `environment`.
    pub environment: String,
    /// `name` (never used as a label; here to make the payload realistic).
    pub name: Option<String>,
    /// `email`.
    pub email: Option<String>,
    /// `first_seen`, Unix seconds.
    pub first_seen: i64,
    /// `last_active_timeframe`, Unix seconds.
    pub last_active: Option<i64>,
    /// `number_of_requests` at the start.
    pub requests: f64,
    /// `total_tokens` at the start.
    pub tokens: f64,
    /// `total_cost` at the start, USD.
    pub cost: f64,
    /// `average_latency`, seconds.
    pub average_latency: Option<f64>,
    /// `average_ttft`, seconds.
    pub average_ttft: Option<f64>,
    /// `total_budget`, USD.
    pub total_budget: Option<f64>,
    /// `period_budget`, USD.
    pub period_budget: Option<f64>,
    /// Send `total_cost` as a decimal string, as Django does by default.
    pub cost_as_string: bool,
    /// Seconds after the start at which the customer appears (0: from the start).
    pub appears_after: f64,
    /// Growth while the simulation runs.
    pub growth: Growth,
}

impl SimCustomer {
    /// A customer with fixed numbers, for tests.
    pub fn new(identifier: &str, environment: &str, cost: f64, tokens: f64, requests: f64) -> Self {
        Self {
            identifier: identifier.to_string(),
            environment: environment.to_string(),
            name: Some(format!("Customer {identifier}")),
            email: None,
            first_seen: 1_700_000_000,
            last_active: Some(1_700_000_000),
            requests,
            tokens,
            cost,
            average_latency: None,
            average_ttft: None,
            total_budget: None,
            period_budget: None,
            cost_as_string: false,
            appears_after: 0.0,
            growth: Growth::default(),
        }
    }

    /// The `id` the API gives this customer.
    pub fn id(&self) -> String {
        format!("{}{}{}", self.identifier, self.environment, ORGANIZATION)
    }
}

/// A customer's values at one moment.
#[derive(Debug, Clone)]
struct View<'a> {
    c: &'a SimCustomer,
    first_seen: i64,
    last_active: Option<i64>,
    requests: f64,
    tokens: f64,
    cost: f64,
}

impl View<'_> {
    fn sort_key(&self, field: &str) -> SortKey {
        match field {
            "customer_identifier" => SortKey::Text(self.c.identifier.clone()),
            "email" => SortKey::Text(self.c.email.clone().unwrap_or_default()),
            "name" => SortKey::Text(self.c.name.clone().unwrap_or_default()),
            "first_seen" => SortKey::Num(self.first_seen as f64),
            "last_active_timeframe" => SortKey::Num(self.last_active.unwrap_or(0) as f64),
            "number_of_requests" => SortKey::Num(self.requests),
            "total_tokens" => SortKey::Num(self.tokens),
            "total_cost" => SortKey::Num(self.cost),
            "active_days" => SortKey::Num(self.active_days() as f64),
            "average_latency" => SortKey::Num(self.c.average_latency.unwrap_or(0.0)),
            "average_ttft" => SortKey::Num(self.c.average_ttft.unwrap_or(0.0)),
            _ => SortKey::Num(0.0),
        }
    }

    fn active_days(&self) -> i64 {
        let last = self.last_active.unwrap_or(self.first_seen);
        ((last - self.first_seen) / 86_400 + 1).max(1)
    }

    fn to_json(&self) -> Value {
        let c = self.c;
        let whole = |v: f64| {
            if v.fract() == 0.0 && v.abs() < 9.0e15 {
                json!(v as i64)
            } else {
                json!(v)
            }
        };
        let cost = if c.cost_as_string {
            json!(format!("{:.6}", self.cost))
        } else {
            json!(self.cost)
        };
        let mut record = json!({
            "id": c.id(),
            "unique_organization_id": ORGANIZATION,
            "customer_identifier": c.identifier,
            "environment": c.environment,
            "name": c.name,
            "email": c.email,
            "first_seen": rfc3339(self.first_seen),
            "last_active_timeframe": self.last_active.map(rfc3339),
            "active_days": self.active_days(),
            "number_of_requests": whole(self.requests.floor()),
            "total_requests": whole(self.requests.floor()),
            "total_tokens": whole(self.tokens.floor()),
            "tokens": whole(self.tokens.floor()),
            "total_cost": cost.clone(),
            "cost": cost,
            "average_latency": c.average_latency,
            "average_ttft": c.average_ttft,
        });
        if let Some(obj) = record.as_object_mut() {
            if let Some(b) = c.total_budget {
                obj.insert("total_budget".into(), json!(b));
            }
            if let Some(b) = c.period_budget {
                obj.insert("period_budget".into(), json!(b));
                obj.insert("budget_duration".into(), json!("monthly"));
            }
        }
        record
    }
}

#[derive(Debug, PartialEq, PartialOrd)]
enum SortKey {
    Num(f64),
    Text(String),
}

fn rfc3339(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A fault to inject into the answer to one matching request.
#[derive(Debug, Clone)]
pub struct Fault {
    /// Only requests for this environment (any when `None`).
    pub environment: Option<String>,
    /// Only requests for this page (any when `None`).
    pub page: Option<u32>,
    /// What to do.
    pub kind: FaultKind,
}

/// What an injected fault does.
#[derive(Debug, Clone)]
pub enum FaultKind {
    /// Answer this instead of the page.
    Respond {
        /// HTTP status.
        status: u16,
        /// `Content-Type`.
        content_type: String,
        /// Extra headers.
        headers: Vec<(String, String)>,
        /// The body.
        body: String,
    },
    /// Answer the real page, cut after this many bytes.
    Truncate(usize),
    /// Answer the real page with its JSON edited by this function.
    Edit(fn(&mut Value)),
    /// Wait this long, then answer the real page.
    Delay(Duration),
}

impl Fault {
    /// A fault on every environment's page `page` (any page when `None`).
    pub fn on_page(page: Option<u32>, kind: FaultKind) -> Self {
        Self {
            environment: None,
            page,
            kind,
        }
    }

    /// Respan's JSON error shape with this status and detail.
    pub fn error(page: Option<u32>, status: u16, detail: &str) -> Self {
        Self::on_page(
            page,
            FaultKind::Respond {
                status,
                content_type: "application/json".into(),
                headers: Vec::new(),
                body: json!({ "detail": detail }).to_string(),
            },
        )
    }

    fn matches(&self, environment: &str, page: u32) -> bool {
        self.environment.as_deref().is_none_or(|e| e == environment)
            && self.page.is_none_or(|p| p == page)
    }
}

/// How the simulated API mishandles one sort order, to test the fallback from
/// incremental to full passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokenSort {
    /// Answer 400 "Invalid sort_by field".
    Reject,
    /// Accept it but answer in ascending order.
    Reverse,
}

/// A request the simulated API received.
#[derive(Debug, Clone, PartialEq)]
pub struct SeenRequest {
    /// Path and query.
    pub uri: String,
    /// Whether it carried the right key.
    pub authorized: bool,
}

/// A cached order: environment, sort field, descending.
type OrderKey = (String, String, bool);

/// The API's rate limit: at most `limit` requests in any `window`.
#[derive(Debug)]
struct RateWindow {
    limit: usize,
    window: Duration,
    recent: VecDeque<Instant>,
}

impl RateWindow {
    /// Admits a request now, or says how many seconds until one is admitted.
    fn admit(&mut self) -> Result<(), u64> {
        let now = Instant::now();
        while self
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            self.recent.pop_front();
        }
        if self.recent.len() >= self.limit {
            let oldest = self.recent.front().copied().unwrap_or(now);
            let wait = self.window.saturating_sub(now.duration_since(oldest));
            return Err(wait.as_secs_f64().ceil().max(1.0) as u64);
        }
        self.recent.push_back(now);
        Ok(())
    }
}

#[derive(Debug)]
struct Inner {
    key: String,
    started: Instant,
    started_unix: i64,
    customers: RwLock<Vec<SimCustomer>>,
    faults: Mutex<VecDeque<Fault>>,
    seen: Mutex<Vec<SeenRequest>>,
    next_base: RwLock<Option<String>>,
    rate_limit: Mutex<Option<RateWindow>>,
    broken_sorts: Mutex<HashMap<String, BrokenSort>>,
    /// Some customer changes over time: no order can be cached.
    dynamic: std::sync::atomic::AtomicBool,
    order_cache: Mutex<HashMap<OrderKey, Arc<Vec<u32>>>>,
}

/// The simulated API. Cloning shares the same state.
#[derive(Debug, Clone)]
pub struct SimulatedApi {
    inner: Arc<Inner>,
}

impl SimulatedApi {
    /// An API that accepts `key` and serves `customers`.
    pub fn new(key: &str, customers: Vec<SimCustomer>) -> Self {
        let api = Self {
            inner: Arc::new(Inner {
                key: key.to_string(),
                started: Instant::now(),
                started_unix: unix_now(),
                customers: RwLock::new(customers),
                faults: Mutex::new(VecDeque::new()),
                seen: Mutex::new(Vec::new()),
                next_base: RwLock::new(None),
                rate_limit: Mutex::new(None),
                broken_sorts: Mutex::new(HashMap::new()),
                dynamic: std::sync::atomic::AtomicBool::new(true),
                order_cache: Mutex::new(HashMap::new()),
            }),
        };
        api.changed(
            &api.inner
                .customers
                .read()
                .unwrap_or_else(|p| p.into_inner()),
        );
        api
    }

    /// The demo: a few thousand synthetic customers in `prod` and `test` whose
    /// usage grows from now on, behind the real API's 60 requests a minute.
    pub fn demo() -> Self {
        let api = Self::new(DEMO_API_KEY, synthetic_customers(unix_now(), 42));
        api.set_rate_limit(Some((60, Duration::from_secs(60))));
        api
    }

    /// Makes the API mishandle `sort_by=<sort_by>` (for instance
    /// `-last_active_timeframe`).
    pub fn break_sort(&self, sort_by: &str, how: BrokenSort) {
        self.inner
            .broken_sorts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(sort_by.to_string(), how);
    }

    /// Answers 429 (with `retry_after` in the body and a `Retry-After` header)
    /// to requests beyond `limit` in any `window`, as the real API does.
    pub fn set_rate_limit(&self, limit: Option<(usize, Duration)>) {
        *self
            .inner
            .rate_limit
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = limit.map(|(limit, window)| RateWindow {
            limit,
            window,
            recent: VecDeque::new(),
        });
    }

    /// Replaces every customer.
    pub fn set_customers(&self, customers: Vec<SimCustomer>) {
        self.update_customers(|all| *all = customers);
    }

    /// Edits the customers in place.
    pub fn update_customers(&self, f: impl FnOnce(&mut Vec<SimCustomer>)) {
        let mut customers = self
            .inner
            .customers
            .write()
            .unwrap_or_else(|p| p.into_inner());
        f(&mut customers);
        self.changed(&customers);
    }

    /// Queues a fault; each fault answers one matching request, in order.
    pub fn inject(&self, fault: Fault) {
        self.inner
            .faults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(fault);
    }

    /// Makes `next` links point at another base URL (the `next` trap).
    pub fn set_next_base(&self, base: Option<String>) {
        *self
            .inner
            .next_base
            .write()
            .unwrap_or_else(|p| p.into_inner()) = base;
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.inner
            .seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The routes of the API.
    pub fn router(&self) -> Router {
        Router::new()
            .route(LIST_PATH, get(list_customers))
            .fallback(|| async {
                (
                    StatusCode::NOT_FOUND,
                    axum::Json(json!({"detail": "Not found."})),
                )
            })
            .with_state(self.clone())
    }

    /// Serves the API on 127.0.0.1 on a free port until `shutdown` is
    /// cancelled; returns its base URL.
    pub async fn start(
        &self,
        shutdown: CancellationToken,
    ) -> std::io::Result<(String, SocketAddr)> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let router = self.router();
        tokio::spawn(async move {
            let served = axum::serve(listener, router)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "simulated API stopped");
            }
        });
        Ok((format!("http://{addr}"), addr))
    }

    fn take_fault(&self, environment: &str, page: u32) -> Option<Fault> {
        let mut faults = self.inner.faults.lock().unwrap_or_else(|p| p.into_inner());
        let i = faults.iter().position(|f| f.matches(environment, page))?;
        faults.remove(i)
    }

    /// A customer's values `elapsed` seconds after the start.
    fn view<'a>(&self, c: &'a SimCustomer, elapsed: f64, now: i64) -> View<'a> {
        let added = c.growth.requests_at(elapsed - c.appears_after);
        let first_seen = if c.appears_after > 0.0 {
            self.inner.started_unix + c.appears_after as i64
        } else {
            c.first_seen
        };
        View {
            c,
            first_seen,
            last_active: if added >= 1.0 {
                Some(now)
            } else {
                c.last_active
            },
            requests: c.requests + added,
            tokens: c.tokens + added * c.growth.tokens_per_request,
            cost: c.cost + added * c.growth.cost_per_request,
        }
    }

    /// The indices of one environment's visible customers in the requested
    /// order (ties by identifier). Cached while no customer changes over time,
    /// so that a million customers are sorted once, not once a page.
    fn order(
        &self,
        customers: &[SimCustomer],
        environment: &str,
        field: &str,
        descending: bool,
        elapsed: f64,
        now: i64,
    ) -> Arc<Vec<u32>> {
        let cache_key = (environment.to_string(), field.to_string(), descending);
        let cacheable = !self
            .inner
            .dynamic
            .load(std::sync::atomic::Ordering::Relaxed);
        if cacheable
            && let Some(order) = self
                .inner
                .order_cache
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&cache_key)
        {
            return order.clone();
        }
        let mut keyed: Vec<(SortKey, u32)> = customers
            .iter()
            .enumerate()
            .filter(|(_, c)| c.environment == environment && c.appears_after <= elapsed)
            .map(|(i, c)| (self.view(c, elapsed, now).sort_key(field), i as u32))
            .collect();
        keyed.sort_by(|(ka, ia), (kb, ib)| {
            let ord = ka.partial_cmp(kb).unwrap_or(std::cmp::Ordering::Equal);
            let ord = if descending { ord.reverse() } else { ord };
            ord.then_with(|| {
                customers[*ia as usize]
                    .identifier
                    .cmp(&customers[*ib as usize].identifier)
            })
        });
        let order = Arc::new(keyed.into_iter().map(|(_, i)| i).collect::<Vec<u32>>());
        if cacheable {
            self.inner
                .order_cache
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(cache_key, order.clone());
        }
        order
    }

    /// Notes a change of the customers: the cached orders are stale, and
    /// whether any customer changes over time may have changed.
    fn changed(&self, customers: &[SimCustomer]) {
        let dynamic = customers
            .iter()
            .any(|c| c.growth != Growth::default() || c.appears_after > 0.0);
        self.inner
            .dynamic
            .store(dynamic, std::sync::atomic::Ordering::Relaxed);
        self.inner
            .order_cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// The page as JSON, or an error answer.
    fn page(
        &self,
        query: &HashMap<String, String>,
        own_base: &str,
    ) -> Result<Value, (StatusCode, Value)> {
        let environment = query.get("environment").map_or("prod", String::as_str);
        let page_size = query
            .get("page_size")
            .and_then(|s| s.parse::<usize>().ok())
            .filter(|&n| n > 0)
            .unwrap_or(DEFAULT_PAGE_SIZE)
            .min(MAX_PAGE_SIZE);
        let sort_by = query.get("sort_by").map_or("-first_seen", String::as_str);
        let broken = self
            .inner
            .broken_sorts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(sort_by)
            .copied();
        if broken == Some(BrokenSort::Reject) {
            return Err((
                StatusCode::BAD_REQUEST,
                json!({"detail": format!("Invalid sort_by field: {sort_by}")}),
            ));
        }
        let (descending, field) = match sort_by.strip_prefix('-') {
            Some(f) => (true, f),
            None => (false, sort_by),
        };
        const SORTABLE: [&str; 11] = [
            "customer_identifier",
            "email",
            "name",
            "first_seen",
            "last_active_timeframe",
            "number_of_requests",
            "total_tokens",
            "total_cost",
            "active_days",
            "average_latency",
            "average_ttft",
        ];
        if !SORTABLE.contains(&field) {
            return Err((
                StatusCode::BAD_REQUEST,
                json!({"detail": format!("Invalid sort_by field: {field}")}),
            ));
        }

        let elapsed = self.inner.started.elapsed().as_secs_f64();
        let now = self.inner.started_unix + elapsed as i64;
        let customers = self
            .inner
            .customers
            .read()
            .unwrap_or_else(|p| p.into_inner());
        let reverse = descending != (broken == Some(BrokenSort::Reverse));
        let order = self.order(&customers, environment, field, reverse, elapsed, now);
        let count = order.len();
        let pages = count.div_ceil(page_size).max(1);
        let page = query
            .get("page")
            .map_or(Some(1), |p| p.parse::<usize>().ok())
            .filter(|p| (1..=pages).contains(p))
            .ok_or((StatusCode::NOT_FOUND, json!({"detail": "Invalid page."})))?;
        let next_base = self
            .inner
            .next_base
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_else(|| own_base.to_string());
        let link = |p: usize| format!("{next_base}{LIST_PATH}?page={p}");
        let results: Vec<Value> = order
            .iter()
            .skip((page - 1) * page_size)
            .take(page_size)
            .map(|&i| self.view(&customers[i as usize], elapsed, now).to_json())
            .collect();
        Ok(json!({
            "count": count,
            "next": (page < pages).then(|| link(page + 1)),
            "previous": (page > 1).then(|| link(page - 1)),
            "results": results,
        }))
    }
}

async fn list_customers(
    State(api): State<SimulatedApi>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let authorized = presented == Some(api.inner.key.as_str());
    api.inner
        .seen
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(SeenRequest {
            uri: uri.to_string(),
            authorized,
        });
    if !authorized {
        let detail = if presented.is_some() {
            "Invalid API key."
        } else {
            "Authentication credentials were not provided."
        };
        return json_response(StatusCode::UNAUTHORIZED, &json!({ "detail": detail }));
    }

    let limited = api
        .inner
        .rate_limit
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_mut()
        .map_or(Ok(()), RateWindow::admit);
    if let Err(seconds) = limited {
        let mut response = json_response(
            StatusCode::TOO_MANY_REQUESTS,
            &json!({"detail": "Rate limit exceeded", "retry_after": seconds}),
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from(seconds));
        return response;
    }

    let environment = query.get("environment").map_or("prod", String::as_str);
    let page = query.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
    let fault = api.take_fault(environment, page);
    let own_base = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map_or_else(|| "http://localhost".to_string(), |h| format!("http://{h}"));

    let mut edit: Option<fn(&mut Value)> = None;
    let mut truncate: Option<usize> = None;
    match fault.map(|f| f.kind) {
        Some(FaultKind::Respond {
            status,
            content_type,
            headers,
            body,
        }) => {
            let mut response = (
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                [(header::CONTENT_TYPE, content_type)],
                body,
            )
                .into_response();
            for (name, value) in headers {
                if let (Ok(n), Ok(v)) = (
                    header::HeaderName::try_from(name),
                    header::HeaderValue::try_from(value),
                ) {
                    response.headers_mut().insert(n, v);
                }
            }
            return response;
        }
        Some(FaultKind::Delay(d)) => tokio::time::sleep(d).await,
        Some(FaultKind::Edit(f)) => edit = Some(f),
        Some(FaultKind::Truncate(n)) => truncate = Some(n),
        None => {}
    }

    match api.page(&query, &own_base) {
        Ok(mut page) => {
            if let Some(f) = edit {
                f(&mut page);
            }
            let mut body = page.to_string().into_bytes();
            if let Some(n) = truncate {
                body.truncate(n);
            }
            ([(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
        Err((status, body)) => json_response(status, &body),
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// SplitMix64: a small deterministic generator, so every demo run starts alike.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }
}

const COMPANIES: [&str; 16] = [
    "acme",
    "globex",
    "initech",
    "umbrella",
    "hooli",
    "stark",
    "wayne",
    "wonka",
    "tyrell",
    "cyberdyne",
    "soylent",
    "aperture",
    "blackmesa",
    "oscorp",
    "gringotts",
    "monsters",
];

/// The demo's customers: 2,400 in `prod` and 600 in `test`, as of `now`.
///
/// About a fifth are inactive; the rest make requests at heavy-tailed rates, so
/// a few customers dominate the cost. Some customers appear during the first
/// ten minutes, one `prod` customer has a cost burst from 30 s to 150 s in, a
/// few carry budgets, some send `total_cost` as a string, and `test` holds
/// identifiers that need escaping in the exposition format.
pub fn synthetic_customers(now: i64, seed: u64) -> Vec<SimCustomer> {
    let mut rng = Rng(seed);
    let mut out = Vec::new();
    for (environment, n) in [("prod", 2400usize), ("test", 600usize)] {
        for i in 0..n {
            let company = COMPANIES[i % COMPANIES.len()];
            let identifier = format!("{company}-{environment}-{i:04}");
            let age_days = if rng.unit() < 0.05 {
                rng.range(0.0, 2.0)
            } else {
                rng.range(2.0, 365.0)
            };
            let first_seen = now - (age_days * 86_400.0) as i64;
            let active = rng.unit() >= 0.2;
            let rate = if active {
                (0.0003 / rng.unit().max(1e-4).powf(1.2)).min(0.5)
            } else {
                0.0
            };
            let tokens_per_request = rng.range(300.0, 4000.0).round();
            let cost_per_request = tokens_per_request * rng.range(0.5e-6, 8e-6);
            let lifetime = (now - first_seen) as f64;
            let past_rate = if active {
                rate
            } else {
                rng.range(0.0001, 0.002)
            };
            let requests = (past_rate * lifetime * rng.range(0.2, 0.6)).floor();
            let last_active = if active {
                now - rng.range(0.0, 3600.0) as i64
            } else {
                now - rng.range(2.0, 60.0) as i64 * 86_400
            };
            let streaming = rng.unit() < 0.7;
            let budget = rng.unit() < 0.1;
            let latency = rng.range(0.3, 4.0);
            out.push(SimCustomer {
                name: Some(format!("{} user {i}", company)),
                email: Some(format!("user{i}@{company}.example")),
                first_seen,
                last_active: (requests > 0.0 || active).then_some(last_active.max(first_seen)),
                requests,
                tokens: requests * tokens_per_request,
                cost: (requests * cost_per_request * 1e6).round() / 1e6,
                average_latency: (requests > 0.0 || active)
                    .then_some((latency * 1000.0).round() / 1000.0),
                average_ttft: (streaming && (requests > 0.0 || active))
                    .then_some((latency * rng.range(0.1, 0.4) * 1000.0).round() / 1000.0),
                total_budget: budget.then_some(1000.0),
                period_budget: budget.then_some(100.0),
                cost_as_string: i % 7 == 3,
                appears_after: if i % 40 == 7 {
                    rng.range(5.0, 600.0)
                } else {
                    0.0
                },
                growth: Growth {
                    requests_per_second: rate,
                    tokens_per_request,
                    cost_per_request,
                    ..Growth::default()
                },
                identifier,
                environment: environment.to_string(),
            });
        }
    }
    // A cost burst, so that spend-rate panels show one within the first
    // minutes: one prod customer makes requests 40 times faster from 30 s to
    // 150 s after the start.
    if let Some(c) = out
        .iter_mut()
        .find(|c| c.environment == "prod" && c.growth.requests_per_second > 0.0)
    {
        c.growth.burst_from = 30.0;
        c.growth.burst_until = 150.0;
        c.growth.burst_factor = 40.0;
    }
    // Identifiers that need escaping in the exposition format.
    for (i, identifier) in ["quote\"d", "back\\slash", "new\nline", "ünïcødé-🚀", ""]
        .into_iter()
        .enumerate()
    {
        let mut c = SimCustomer::new(identifier, "test", 20_000.0 + i as f64, 1.0e6, 2000.0);
        c.first_seen = now - 86_400 * 30;
        c.last_active = Some(now - 60);
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_with_a_burst() {
        let g = Growth {
            requests_per_second: 1.0,
            burst_from: 10.0,
            burst_until: 20.0,
            burst_factor: 3.0,
            ..Growth::default()
        };
        assert_eq!(g.requests_at(5.0), 5.0);
        assert_eq!(g.requests_at(15.0), 15.0 + 10.0);
        assert_eq!(g.requests_at(30.0), 30.0 + 20.0);
    }

    #[test]
    fn synthetic_customers_are_deterministic_and_unique() {
        let a = synthetic_customers(1_800_000_000, 42);
        let b = synthetic_customers(1_800_000_000, 42);
        assert_eq!(a, b);
        let mut ids: Vec<String> = a.iter().map(SimCustomer::id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), a.len());
        assert!(a.iter().any(|c| c.environment == "test"));
        assert!(a.iter().any(|c| c.growth.requests_per_second == 0.0));
    }
}
