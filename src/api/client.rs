//! The HTTP client for List customers.
//!
//! Every page URL is built here from the configured base URL; the `next` link of
//! an answer is never followed (the documented one drops `page_size`, `sort_by`
//! and `environment`, and one pointing at another host must never receive the
//! key). Redirects are not followed for the same reason.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use reqwest::{StatusCode, Url};

use super::error::{ApiError, chain};
use super::types::{CustomerPage, parse_page};
use crate::config::KeySource;
use crate::metrics::ApiMetrics;
use crate::ratelimit::RateLimiter;

/// Customers per page: the API's maximum.
pub const PAGE_SIZE: u32 = 1000;

/// Sort order of a full crawl. Ascending `first_seen` puts customers created
/// during a crawl after every page already read, so they cannot shift those pages.
pub const SORT_BY: &str = "first_seen";

/// Sort order of an incremental crawl: the most recently active first, so the
/// crawl can stop at the first customer untouched since the previous poll.
pub const SORT_BY_RECENT: &str = "-last_active_timeframe";

/// Largest answer body read; a page of 1,000 customers is about 500 KB.
const MAX_BODY_BYTES: usize = 64 << 20;

/// Longest `detail` kept from an error answer.
const MAX_DETAIL_CHARS: usize = 300;

/// How a page is asked for again after a failure.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Retries of one page after a 5xx, a timeout or a transport error.
    pub max_retries: u32,
    /// The first backoff; each retry doubles it, up to `backoff_max`, and a
    /// random part of up to half of it is taken off (jitter).
    pub backoff_base: Duration,
    /// The longest backoff.
    pub backoff_max: Duration,
    /// 429 answers in a row for one page before the poll gives up.
    pub max_rate_limited: u32,
    /// Wait after a 429 that says nothing about how long to wait.
    pub default_retry_after: Duration,
    /// The longest wait a 429 can impose.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 3,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30),
            max_rate_limited: 10,
            default_retry_after: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// The backoff before retry number `retry` (1-based), with jitter.
    pub fn backoff(&self, retry: u32) -> Duration {
        let full = self
            .backoff_base
            .saturating_mul(1u32 << retry.saturating_sub(1).min(20))
            .min(self.backoff_max);
        full.mul_f64(1.0 - 0.5 * random_unit())
    }

    /// The wait after a 429 that asked for `retry_after` seconds.
    pub fn rate_limit_wait(&self, retry_after: Option<f64>) -> Duration {
        retry_after
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
            .unwrap_or(self.default_retry_after)
            .min(self.max_retry_after)
    }
}

/// A number in [0, 1) that differs between calls (for jitter; not cryptographic).
fn random_unit() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// A client for one Respan API root.
#[derive(Debug, Clone)]
pub struct RespanClient {
    http: reqwest::Client,
    base: Url,
    key: KeySource,
    timeout: Duration,
    limiter: Arc<RateLimiter>,
    metrics: ApiMetrics,
    retry: RetryPolicy,
}

impl RespanClient {
    /// A client for `base` that sends `key`, one request at a time through `limiter`.
    pub fn new(
        base: Url,
        key: KeySource,
        timeout: Duration,
        limiter: Arc<RateLimiter>,
        metrics: ApiMetrics,
        retry: RetryPolicy,
    ) -> Result<Self, ApiError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("respan-exporter/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ApiError::Transport(chain(&e)))?;
        Ok(Self {
            http,
            base,
            key,
            timeout,
            limiter,
            metrics,
            retry,
        })
    }

    /// The limiter every request of this client goes through.
    pub fn limiter(&self) -> &RateLimiter {
        &self.limiter
    }

    /// The URL of one page of one environment's customers.
    pub fn page_url(&self, environment: &str, page: u32, sort_by: &str) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty().extend(["api", "users", "list", ""]);
        }
        url.query_pairs_mut()
            .append_pair("page", &page.to_string())
            .append_pair("page_size", &PAGE_SIZE.to_string())
            .append_pair("sort_by", sort_by)
            .append_pair("environment", environment);
        url
    }

    /// Fetches one page, asking again for the same page after a 429 (waiting
    /// what the server says, capped) or a transient failure (with exponential
    /// backoff and jitter), within the bounds of the [`RetryPolicy`]. A 401,
    /// 403 or other 4xx is not retried.
    ///
    /// `body` is the buffer the answer is read into, kept by the caller from one
    /// page to the next: a page is about 600 KB, and a fresh buffer for each
    /// would cost page faults and allocator work on every request.
    pub async fn fetch_page(
        &self,
        environment: &str,
        page: u32,
        sort_by: &str,
        body: &mut Vec<u8>,
    ) -> Result<CustomerPage, ApiError> {
        let (mut failures, mut limited) = (0u32, 0u32);
        loop {
            let err = match self.list_customers(environment, page, sort_by, body).await {
                Ok(answer) => return Ok(answer),
                Err(e) => e,
            };
            let wait = match &err {
                ApiError::Status {
                    status: 429,
                    retry_after,
                    ..
                } => {
                    limited += 1;
                    if limited > self.retry.max_rate_limited {
                        return Err(err);
                    }
                    let wait = self.retry.rate_limit_wait(*retry_after);
                    self.metrics.add_rate_limit_wait(wait);
                    wait
                }
                e if e.is_transient() => {
                    failures += 1;
                    if failures > self.retry.max_retries {
                        return Err(err);
                    }
                    self.retry.backoff(failures)
                }
                _ => return Err(err),
            };
            tracing::warn!(
                environment,
                page,
                error = %err,
                retry_in_seconds = wait.as_secs_f64(),
                "API request failed; asking for the same page again"
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// Fetches one page, once. Every answer is counted in `respan_api_requests_total`.
    #[tracing::instrument(level = "debug", skip(self, body))]
    pub async fn list_customers(
        &self,
        environment: &str,
        page: u32,
        sort_by: &str,
        body: &mut Vec<u8>,
    ) -> Result<CustomerPage, ApiError> {
        let key = self.key.load()?;
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", key.expose()))
            .map_err(|_| ApiError::KeyNotHeaderSafe)?;
        auth.set_sensitive(true);

        let waited = self.limiter.acquire().await;
        self.metrics.add_rate_limit_wait(waited);

        let url = self.page_url(environment, page, sort_by);
        let sent = self
            .http
            .get(url)
            .header(AUTHORIZATION, auth)
            .header(ACCEPT, "application/json")
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) => {
                let err = self.transport_error(&e);
                if let Some(code) = err.code_label() {
                    self.metrics.count_answer(environment, &code);
                }
                return Err(err);
            }
        };
        let status = response.status();
        self.metrics.count_answer(environment, status.as_str());
        let header_retry = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0);
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        self.read_body(response, body).await?;

        if status != StatusCode::OK {
            let (detail, body_retry) = error_detail(body, &content_type);
            return Err(ApiError::Status {
                status: status.as_u16(),
                detail,
                retry_after: header_retry.or(body_retry),
            });
        }
        parse_page(body).map_err(|e| {
            if content_type.is_empty() || content_type.contains("json") {
                ApiError::Decode(e)
            } else {
                ApiError::Decode(format!("expected JSON, got {content_type}: {e}"))
            }
        })
    }

    /// Reads the answer into `body`, replacing what it held.
    async fn read_body(
        &self,
        mut response: reqwest::Response,
        body: &mut Vec<u8>,
    ) -> Result<(), ApiError> {
        body.clear();
        body.reserve(response.content_length().unwrap_or(0).min(1 << 20) as usize);
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.transport_error(&e))?
        {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(ApiError::Decode(format!(
                    "answer is larger than {MAX_BODY_BYTES} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(())
    }

    fn transport_error(&self, e: &reqwest::Error) -> ApiError {
        if e.is_timeout() {
            ApiError::Timeout(self.timeout)
        } else if e.is_connect() {
            ApiError::Connect(chain(e))
        } else {
            ApiError::Transport(chain(e))
        }
    }
}

/// Respan's `detail` and `retry_after` from an error body, or a description of
/// a body that is not Respan's JSON.
fn error_detail(body: &[u8], content_type: &str) -> (Option<String>, Option<f64>) {
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        detail: Option<serde_json::Value>,
        retry_after: Option<serde_json::Value>,
    }
    if let Ok(parsed) = serde_json::from_slice::<ErrorBody>(body) {
        let detail = parsed.detail.map(|d| match d {
            serde_json::Value::String(s) => one_line(&s),
            other => one_line(&other.to_string()),
        });
        let retry_after = parsed.retry_after.and_then(|v| match v {
            serde_json::Value::Number(n) => n.as_f64(),
            serde_json::Value::String(s) => s.trim().parse().ok(),
            _ => None,
        });
        return (detail, retry_after.filter(|s| s.is_finite() && *s >= 0.0));
    }
    if body.is_empty() {
        return (None, None);
    }
    let kind = if content_type.is_empty() {
        "unknown type"
    } else {
        content_type
    };
    (
        Some(format!("non-JSON body ({kind}, {} bytes)", body.len())),
        None,
    )
}

/// Collapses control characters so a message stays on one log line, and caps its length.
fn one_line(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_DETAIL_CHARS)
        .collect();
    if s.chars().count() > MAX_DETAIL_CHARS {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ApiKey;
    use crate::metrics::Metrics;
    use crate::snapshot::SnapshotStore;

    fn client(base: &str) -> RespanClient {
        let store = Arc::new(SnapshotStore::new(&["prod".to_string()]));
        let metrics = Metrics::new(store).expect("metrics register");
        RespanClient::new(
            Url::parse(base).expect("url"),
            KeySource::Fixed(ApiKey::new("k").expect("key")),
            Duration::from_secs(1),
            Arc::new(RateLimiter::per_minute(60, 1)),
            metrics.api(),
            RetryPolicy::default(),
        )
        .expect("client")
    }

    #[test]
    fn page_urls_carry_every_parameter_and_keep_a_path_prefix() {
        let c = client("https://api.respan.ai");
        assert_eq!(
            c.page_url("prod", 3, SORT_BY).as_str(),
            "https://api.respan.ai/api/users/list/?page=3&page_size=1000&sort_by=first_seen&environment=prod"
        );
        let c = client("http://proxy.local:8080/respan/");
        assert_eq!(
            c.page_url("test", 1, SORT_BY).as_str(),
            "http://proxy.local:8080/respan/api/users/list/?page=1&page_size=1000&sort_by=first_seen&environment=test"
        );
    }

    #[test]
    fn backoff_doubles_up_to_its_cap_with_at_most_half_taken_off() {
        let p = RetryPolicy::default();
        for (retry, full) in [(1, 1.0), (2, 2.0), (3, 4.0), (6, 30.0), (40, 30.0)] {
            let b = p.backoff(retry).as_secs_f64();
            assert!(b <= full && b >= full / 2.0, "retry {retry}: {b}");
        }
    }

    #[test]
    fn rate_limit_waits_are_capped() {
        let p = RetryPolicy::default();
        assert_eq!(p.rate_limit_wait(Some(5.0)), Duration::from_secs(5));
        assert_eq!(p.rate_limit_wait(None), Duration::from_secs(30));
        assert_eq!(p.rate_limit_wait(Some(1e9)), Duration::from_secs(120));
    }

    #[test]
    fn error_bodies_give_detail_and_retry_after() {
        let (d, r) = error_detail(
            br#"{"detail": "Rate limit exceeded", "retry_after": 30}"#,
            "application/json",
        );
        assert_eq!(d.as_deref(), Some("Rate limit exceeded"));
        assert_eq!(r, Some(30.0));
        let (d, r) = error_detail(b"<html>oops</html>", "text/html");
        assert_eq!(d.as_deref(), Some("non-JSON body (text/html, 17 bytes)"));
        assert_eq!(r, None);
        let (d, _) = error_detail("{\"detail\": \"a\\nb\"}".as_bytes(), "");
        assert_eq!(d.as_deref(), Some("a b"));
    }
}
