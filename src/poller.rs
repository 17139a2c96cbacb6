//! The background poller: crawls every page of each environment, aggregates,
//! and publishes a snapshot, or records why it could not.
//!
//! A crawl is all or nothing. Pages are requested by number in ascending
//! `first_seen` order, each customer `id` is counted once, and the crawl fails
//! (leaving the last good snapshot in place) when any page fails or when the
//! pages do not add up to the `count` the API announced.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::aggregate::aggregate;
use crate::api::{ApiError, Customer, InvalidField, PAGE_SIZE, RespanClient};
use crate::metrics::Metrics;
use crate::snapshot::{EnvSnapshot, SnapshotStore};

/// Pages allowed beyond what `count` implies, for customers added mid-crawl.
const EXTRA_PAGES: u64 = 2;

/// Why a poll of one environment failed.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    /// A page could not be fetched or read.
    #[error("page {page}: {source}")]
    Api {
        /// The page number.
        page: u32,
        /// What went wrong.
        #[source]
        source: ApiError,
    },
    /// A page held no customer but announced another page.
    #[error("page {page} is empty but announces a next page")]
    EmptyPage {
        /// The page number.
        page: u32,
    },
    /// The API kept announcing pages past what its `count` allows.
    #[error("the API announced more than {limit} pages for {count} customers")]
    TooManyPages {
        /// Pages allowed.
        limit: u64,
        /// The largest `count` seen.
        count: u64,
    },
    /// The pages held a different number of customers than `count` says.
    #[error("the API counts {count} customers but its pages held {seen} distinct ones")]
    CountMismatch {
        /// The last page's `count`.
        count: u64,
        /// Distinct customers read.
        seen: u64,
    },
}

impl PollError {
    /// The `reason` label of `respan_poll_failures_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            PollError::Api { source, .. } => source.reason(),
            PollError::EmptyPage { .. } | PollError::TooManyPages { .. } => "bad_pagination",
            PollError::CountMismatch { .. } => "count_mismatch",
        }
    }

    /// The API error behind the failure, if any.
    pub fn api_error(&self) -> Option<&ApiError> {
        match self {
            PollError::Api { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Everything one complete crawl of an environment read.
#[derive(Debug, Default)]
pub struct Crawl {
    /// Distinct customers, in the order the API gave them.
    pub customers: Vec<Customer>,
    /// Broken fields seen, by field name.
    pub invalid: BTreeMap<InvalidField, u64>,
    /// Pages requested.
    pub pages: u32,
    /// Records skipped because their `id` was already read.
    pub duplicates: u64,
}

/// Reads every page of one environment.
pub async fn crawl(client: &RespanClient, environment: &str) -> Result<Crawl, PollError> {
    let mut out = Crawl::default();
    let mut seen: HashSet<Box<str>> = HashSet::new();
    let mut max_count = 0u64;
    let mut bad = Vec::new();
    let mut page = 1u32;
    loop {
        let answer = client
            .fetch_page(environment, page)
            .await
            .map_err(|source| PollError::Api { page, source })?;
        out.pages = page;
        max_count = max_count.max(answer.count);
        let more = answer.next.is_some();
        if more && answer.results.is_empty() {
            return Err(PollError::EmptyPage { page });
        }
        for raw in answer.results {
            bad.clear();
            let customer = raw.into_customer(&mut bad);
            for field in &bad {
                *out.invalid.entry(field).or_default() += 1;
            }
            let fresh = match &customer.key {
                Some(key) => seen.insert(key.clone()),
                None => true,
            };
            if fresh {
                out.customers.push(customer);
            } else {
                out.duplicates += 1;
            }
        }
        if !more {
            let seen = out.customers.len() as u64;
            if seen != answer.count {
                return Err(PollError::CountMismatch {
                    count: answer.count,
                    seen,
                });
            }
            return Ok(out);
        }
        let limit = max_count.div_ceil(u64::from(PAGE_SIZE)).max(1) + EXTRA_PAGES;
        if u64::from(page) >= limit {
            return Err(PollError::TooManyPages {
                limit,
                count: max_count,
            });
        }
        page += 1;
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Polls every configured environment, one after the other, at a fixed interval.
#[derive(Debug)]
pub struct Poller {
    client: RespanClient,
    store: Arc<SnapshotStore>,
    metrics: Metrics,
    top_n: usize,
    interval: Duration,
}

impl Poller {
    /// A poller that publishes into `store`.
    pub fn new(
        client: RespanClient,
        store: Arc<SnapshotStore>,
        metrics: Metrics,
        top_n: usize,
        interval: Duration,
    ) -> Self {
        Self {
            client,
            store,
            metrics,
            top_n,
            interval,
        }
    }

    /// Polls one environment and publishes the result or records the failure.
    pub async fn poll_environment(&self, environment: &str) -> Result<(), PollError> {
        let started = Instant::now();
        let result = crawl(&self.client, environment).await;
        let duration = started.elapsed().as_secs_f64();
        match result {
            Ok(crawl) => {
                let now = unix_now();
                let aggregate = aggregate(&crawl.customers, now as i64, self.top_n);
                for (field, n) in &crawl.invalid {
                    self.metrics.count_invalid_records(environment, field, *n);
                }
                if !crawl.invalid.is_empty() {
                    tracing::warn!(
                        environment,
                        invalid = ?crawl.invalid,
                        "some customer records had broken fields; those values count as absent"
                    );
                }
                tracing::info!(
                    environment,
                    customers = aggregate.customers,
                    pages = crawl.pages,
                    duplicates = crawl.duplicates,
                    duration_seconds = duration,
                    "poll completed"
                );
                self.store.publish(
                    environment,
                    EnvSnapshot {
                        aggregate,
                        completed_at: now,
                        pages: crawl.pages,
                    },
                    duration,
                );
                Ok(())
            }
            Err(e) => {
                self.metrics.count_poll_failure(environment, e.reason());
                self.store.fail(environment, e.to_string(), duration);
                if matches!(
                    e.api_error(),
                    Some(ApiError::Status {
                        status: 401 | 403,
                        ..
                    })
                ) {
                    tracing::error!(environment, error = %e, "poll failed: Respan rejected the API key");
                } else {
                    tracing::warn!(environment, error = %e, "poll failed; keeping the last good snapshot");
                }
                Err(e)
            }
        }
    }

    /// Polls every environment once.
    pub async fn poll_all(&self) {
        for environment in self.store.environments().to_vec() {
            // A failure is recorded and logged; the other environments still poll.
            let _ = self.poll_environment(&environment).await;
        }
    }

    /// Polls at every interval until `shutdown` is cancelled. Polls never
    /// overlap: one that overruns delays the next, and says so.
    pub async fn run(&self, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = ticker.tick() => {}
            }
            let started = Instant::now();
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.poll_all() => {}
            }
            let took = started.elapsed();
            if took > self.interval {
                self.warn_overrun(took);
            }
        }
        tracing::debug!("poller stopped");
    }

    /// Warns that a poll outlasted the interval, with the interval the pages
    /// need at the configured request rate.
    fn warn_overrun(&self, took: Duration) {
        let pages: u64 = self
            .store
            .statuses()
            .iter()
            .filter_map(|(_, s)| s.snapshot.as_ref().map(|snap| u64::from(snap.pages)))
            .sum();
        let per_page = self.client.limiter().interval();
        let needed = per_page.saturating_mul(u32::try_from(pages).unwrap_or(u32::MAX));
        tracing::warn!(
            took_seconds = took.as_secs_f64(),
            interval_seconds = self.interval.as_secs_f64(),
            pages,
            needed_seconds = needed.as_secs_f64(),
            "a poll took longer than --respan.poll-interval, so the next one starts late; \
             at --respan.requests-per-minute the {pages} pages need at least {:.0}s: raise \
             --respan.poll-interval above that",
            needed.as_secs_f64()
        );
    }
}
