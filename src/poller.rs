//! The background poller: crawls each environment, keeps its customers in a
//! compact state, aggregates, and publishes a snapshot, or records why it
//! could not.
//!
//! Two kinds of pass:
//!
//! - A **full** pass reads every page in ascending `first_seen` order (so
//!   customers created during the crawl land after the pages already read) and
//!   replaces the environment's state. It runs at start, every
//!   `--respan.full-sync-interval`, and whenever the state cannot be trusted.
//!   It fails when a page fails or when the pages do not add up to `count`.
//! - An **incremental** pass, in between, reads customers by descending
//!   `last_active_timeframe` and stops at the first one last active before the
//!   previous poll's start (minus `--respan.incremental-margin`); it merges what it
//!   read into the state. It sees neither deletions nor customers without
//!   activity; the next full pass does. If the API refuses that order or does
//!   not follow it, the environment falls back to full passes for good.
//!
//! Either way a poll is all or nothing: the published snapshot changes only
//! when the pass completed.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::aggregate::aggregate;
use crate::api::{
    ApiError, Customer, CustomerKey, InvalidField, PAGE_SIZE, RespanClient, SORT_BY, SORT_BY_RECENT,
};
use crate::metrics::Metrics;
use crate::snapshot::{EnvSnapshot, PassStats, SnapshotStore};

/// Pages allowed beyond what `count` implies, for customers added mid-crawl.
const EXTRA_PAGES: u64 = 2;

/// The default of `--respan.incremental-margin`: how far before the previous
/// poll's start an incremental pass reads, room for clock skew and for Respan
/// updating `last_active_timeframe` late.
pub const INCREMENTAL_MARGIN: Duration = Duration::from_secs(120);

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

/// The kind of a pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Every page.
    Full,
    /// Only customers active since the previous poll.
    Incremental,
}

impl Mode {
    /// The `mode` label value.
    pub fn label(self) -> &'static str {
        match self {
            Mode::Full => "full",
            Mode::Incremental => "incremental",
        }
    }
}

/// One environment's customers, sorted by key: 96 bytes a customer, plus the
/// identifier when it is longer than 24 bytes.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct CustomerState {
    entries: Vec<(CustomerKey, Customer)>,
}

impl CustomerState {
    /// Customers held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// No customer held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The customers, in key order.
    pub fn customers(&self) -> impl Iterator<Item = &Customer> + Clone {
        self.entries.iter().map(|(_, c)| c)
    }

    /// A state from records in any order; of records with the same key, one is
    /// kept. Returns the state and the number of records dropped as repeats.
    pub fn from_records(mut records: Vec<(CustomerKey, Customer)>) -> (Self, u64) {
        // In place: a stable sort would need a buffer half the size of the state.
        records.sort_unstable_by_key(|(k, _)| *k);
        let before = records.len();
        records.dedup_by_key(|(k, _)| *k);
        let repeats = (before - records.len()) as u64;
        records.shrink_to_fit();
        (Self { entries: records }, repeats)
    }

    /// Replaces or adds each record (keys unique); returns how many it added.
    pub fn merge(&mut self, mut changed: Vec<(CustomerKey, Customer)>) -> usize {
        changed.sort_unstable_by_key(|(k, _)| *k);
        let mut added = Vec::new();
        for (key, customer) in changed {
            match self.entries.binary_search_by_key(&key, |(k, _)| *k) {
                Ok(i) => self.entries[i].1 = customer,
                Err(_) => added.push((key, customer)),
            }
        }
        let n = added.len();
        if n > 0 {
            self.entries.extend(added);
            self.entries.sort_unstable_by_key(|(k, _)| *k);
        }
        n
    }
}

/// Everything one pass read.
#[derive(Debug, Default)]
pub struct Crawl {
    /// Customers read, with their keys; repeats not yet removed.
    pub records: Vec<(CustomerKey, Customer)>,
    /// Broken fields seen, by field name.
    pub invalid: BTreeMap<InvalidField, u64>,
    /// Pages requested.
    pub pages: u32,
    /// Records with neither `id` nor `customer_identifier`, which cannot be
    /// told apart and are left out.
    pub unkeyed: u64,
    /// The last page's `count`.
    pub count: u64,
}

impl Crawl {
    /// Keeps one record; the customer kept, or `None` for a record without a key.
    fn take(
        &mut self,
        raw: crate::api::RawCustomer,
        bad: &mut Vec<InvalidField>,
    ) -> Option<&Customer> {
        bad.clear();
        let (key, customer) = raw.into_customer(bad);
        for field in bad.iter() {
            *self.invalid.entry(field).or_default() += 1;
        }
        match key {
            Some(key) => {
                self.records.push((key, customer));
                self.records.last().map(|(_, c)| c)
            }
            None => {
                self.unkeyed += 1;
                None
            }
        }
    }
}

/// Fails a crawl whose `next` links go on past what `count` allows.
fn check_page_limit(page: u32, max_count: u64) -> Result<(), PollError> {
    let limit = max_count.div_ceil(u64::from(PAGE_SIZE)).max(1) + EXTRA_PAGES;
    if u64::from(page) >= limit {
        return Err(PollError::TooManyPages {
            limit,
            count: max_count,
        });
    }
    Ok(())
}

/// Reads every page of one environment into a new state.
pub async fn crawl_full(
    client: &RespanClient,
    environment: &str,
) -> Result<(CustomerState, Crawl), PollError> {
    let mut out = Crawl::default();
    let mut max_count = 0u64;
    let mut bad = Vec::new();
    let mut body = Vec::new();
    let mut page = 1u32;
    loop {
        let answer = client
            .fetch_page(environment, page, SORT_BY, &mut body)
            .await
            .map_err(|source| PollError::Api { page, source })?;
        if page == 1 {
            // One allocation of the right size, with room for a page of newcomers.
            let expected = usize::try_from(answer.count).unwrap_or(0);
            out.records
                .reserve_exact(expected.min(50_000_000) + PAGE_SIZE as usize);
        }
        out.pages = page;
        max_count = max_count.max(answer.count);
        let more = answer.next.is_some();
        if more && answer.results.is_empty() {
            return Err(PollError::EmptyPage { page });
        }
        for raw in answer.results {
            out.take(raw, &mut bad);
        }
        if !more {
            out.count = answer.count;
            break;
        }
        check_page_limit(page, max_count)?;
        page += 1;
    }
    let records = std::mem::take(&mut out.records);
    let (state, _repeats) = CustomerState::from_records(records);
    let seen = state.len() as u64 + out.unkeyed;
    if seen != out.count {
        return Err(PollError::CountMismatch {
            count: out.count,
            seen,
        });
    }
    Ok((state, out))
}

/// Why an incremental pass did not complete.
#[derive(Debug)]
pub enum IncrementalError {
    /// The API does not serve customers by descending last activity.
    Unsupported(String),
    /// The pass failed like any poll.
    Failed(PollError),
}

/// Reads the customers last active at or after `since` (Unix seconds).
pub async fn crawl_incremental(
    client: &RespanClient,
    environment: &str,
    since: i64,
) -> Result<Crawl, IncrementalError> {
    let mut out = Crawl::default();
    let mut seen: HashSet<CustomerKey> = HashSet::new();
    let mut max_count = 0u64;
    let mut bad = Vec::new();
    let mut previous: Option<i64> = None;
    let mut body = Vec::new();
    let mut page = 1u32;
    loop {
        let answer = match client
            .fetch_page(environment, page, SORT_BY_RECENT, &mut body)
            .await
        {
            Ok(a) => a,
            Err(ApiError::Status {
                status: status @ (400 | 422),
                detail,
                ..
            }) if page == 1 => {
                return Err(IncrementalError::Unsupported(format!(
                    "the API answered HTTP {status} to sort_by={SORT_BY_RECENT}{}",
                    detail.map(|d| format!(": {d}")).unwrap_or_default()
                )));
            }
            Err(source) => return Err(IncrementalError::Failed(PollError::Api { page, source })),
        };
        out.pages = page;
        out.count = answer.count;
        max_count = max_count.max(answer.count);
        let more = answer.next.is_some();
        if more && answer.results.is_empty() {
            return Err(IncrementalError::Failed(PollError::EmptyPage { page }));
        }
        let mut reached_older = false;
        for raw in answer.results {
            if reached_older {
                // Past the cutoff the rest of the page is only checked for its
                // order: an API that ignores the sort could otherwise put an old
                // customer first and hide every change behind it.
                if let (Some(la), Some(p)) = (raw.last_active(), previous) {
                    if la > p {
                        return Err(IncrementalError::Unsupported(format!(
                            "page {page} lists a customer last active at {la} after one at {p}: \
                             answers to sort_by={SORT_BY_RECENT} are not in descending order"
                        )));
                    }
                    previous = Some(la);
                }
                continue;
            }
            let before = out.records.len();
            let Some(customer) = out.take(raw, &mut bad) else {
                continue;
            };
            let Some(last_active) = customer.last_active() else {
                // Never active: unchanged by definition (and where a database
                // sorts nulls in a descending order is its own affair).
                out.records.truncate(before);
                continue;
            };
            if previous.is_some_and(|p| last_active > p) {
                return Err(IncrementalError::Unsupported(format!(
                    "page {page} lists a customer last active at {last_active} after one at {}: \
                     answers to sort_by={SORT_BY_RECENT} are not in descending order",
                    previous.unwrap_or_default()
                )));
            }
            previous = Some(last_active);
            if last_active < since {
                out.records.truncate(before);
                reached_older = true;
                continue;
            }
            let key = out.records[before].0;
            if !seen.insert(key) {
                // Listed twice as customers moved up: keep the later reading.
                if let Some(i) = out.records[..before].iter().position(|(k, _)| *k == key) {
                    out.records.swap_remove(i);
                }
            }
        }
        if reached_older || !more {
            return Ok(out);
        }
        check_page_limit(page, max_count).map_err(IncrementalError::Failed)?;
        page += 1;
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// What the poller remembers of one environment between polls.
#[derive(Debug, Default)]
struct EnvState {
    customers: CustomerState,
    /// Start of the last completed poll, Unix seconds; `None` forces a full pass.
    last_start: Option<f64>,
    /// When the next full pass is due.
    next_full: Option<Instant>,
    /// Set when the API does not serve incremental passes.
    incremental_unsupported: bool,
    full_pages: Option<u32>,
    incremental_pages: Option<u32>,
}

/// Polls every configured environment, one after the other, at a fixed interval.
#[derive(Debug)]
pub struct Poller {
    client: RespanClient,
    store: Arc<SnapshotStore>,
    metrics: Metrics,
    top_n: usize,
    interval: Duration,
    full_sync_interval: Duration,
    incremental_margin: Duration,
    states: Mutex<BTreeMap<String, EnvState>>,
}

impl Poller {
    /// A poller that publishes into `store`. A `full_sync_interval` of zero
    /// makes every pass a full one.
    pub fn new(
        client: RespanClient,
        store: Arc<SnapshotStore>,
        metrics: Metrics,
        top_n: usize,
        interval: Duration,
        full_sync_interval: Duration,
        incremental_margin: Duration,
    ) -> Self {
        Self {
            client,
            store,
            metrics,
            top_n,
            interval,
            full_sync_interval,
            incremental_margin,
            states: Mutex::new(BTreeMap::new()),
        }
    }

    fn take_state(&self, environment: &str) -> EnvState {
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        states.remove(environment).unwrap_or_default()
    }

    fn put_state(&self, environment: &str, state: EnvState) {
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        states.insert(environment.to_string(), state);
    }

    fn mode_for(&self, state: &EnvState) -> Mode {
        let due = state.next_full.is_none_or(|t| Instant::now() >= t);
        if state.last_start.is_none()
            || state.incremental_unsupported
            || self.full_sync_interval.is_zero()
            || due
        {
            Mode::Full
        } else {
            Mode::Incremental
        }
    }

    /// Polls one environment (a full or an incremental pass) and publishes the
    /// result or records the failure.
    pub async fn poll_environment(&self, environment: &str) -> Result<(), PollError> {
        let mut state = self.take_state(environment);
        let result = self.poll_with(environment, &mut state).await;
        self.put_state(environment, state);
        self.metrics.refresh();
        result
    }

    async fn poll_with(&self, environment: &str, state: &mut EnvState) -> Result<(), PollError> {
        let started = Instant::now();
        let started_unix = unix_now();
        let mut mode = self.mode_for(state);
        let mut incremental = None;
        if mode == Mode::Incremental {
            let margin = i64::try_from(self.incremental_margin.as_secs()).unwrap_or(i64::MAX);
            let since = (state.last_start.unwrap_or(0.0) as i64).saturating_sub(margin);
            match crawl_incremental(&self.client, environment, since).await {
                Ok(crawl) => incremental = Some(Ok(crawl)),
                Err(IncrementalError::Failed(e)) => incremental = Some(Err(e)),
                Err(IncrementalError::Unsupported(why)) => {
                    tracing::warn!(
                        environment,
                        reason = %why,
                        "incremental polling is not possible; every poll of this environment will be a full pass"
                    );
                    state.incremental_unsupported = true;
                    mode = Mode::Full;
                }
            }
        }
        let (crawl, changed) = match incremental {
            Some(Ok(mut crawl)) => {
                let records = std::mem::take(&mut crawl.records);
                let changed = records.len() as u64;
                let added = state.customers.merge(records);
                let held = state.customers.len() as u64 + crawl.unkeyed;
                if held != crawl.count {
                    // Deletions, or customers without activity: only a full pass sees them.
                    tracing::info!(
                        environment,
                        count = crawl.count,
                        held,
                        "the API's count differs from the customers held; the next poll is a full pass"
                    );
                    state.next_full = None;
                }
                tracing::debug!(environment, changed, added, "incremental pass merged");
                (crawl, changed)
            }
            Some(Err(e)) => return Err(self.fail(environment, e, started, state)),
            None => {
                // The old state goes first: it is only needed for merging, and
                // holding two states would double the memory of a full pass.
                state.customers = CustomerState::default();
                state.last_start = None;
                match crawl_full(&self.client, environment).await {
                    Ok((customers, crawl)) => {
                        state.customers = customers;
                        state.next_full = Some(Instant::now() + self.full_sync_interval);
                        let changed = state.customers.len() as u64;
                        (crawl, changed)
                    }
                    Err(e) => return Err(self.fail(environment, e, started, state)),
                }
            }
        };
        match mode {
            Mode::Full => state.full_pages = Some(crawl.pages),
            Mode::Incremental => state.incremental_pages = Some(crawl.pages),
        }
        state.last_start = Some(started_unix);

        let duration = started.elapsed().as_secs_f64();
        let now = unix_now();
        let aggregate = aggregate(state.customers.customers(), now as i64, self.top_n);
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
            mode = mode.label(),
            customers = aggregate.customers,
            changed,
            pages = crawl.pages,
            duration_seconds = duration,
            "poll completed"
        );
        self.store.publish(
            environment,
            EnvSnapshot {
                aggregate,
                completed_at: now,
                pages: crawl.pages,
                passes: PassStats {
                    mode: mode.label(),
                    full_pages: state.full_pages,
                    incremental_pages: state.incremental_pages,
                    changed,
                    incremental_supported: !state.incremental_unsupported,
                },
            },
            duration,
        );
        Ok(())
    }

    fn fail(
        &self,
        environment: &str,
        e: PollError,
        started: Instant,
        state: &mut EnvState,
    ) -> PollError {
        let duration = started.elapsed().as_secs_f64();
        self.metrics.count_poll_failure(environment, e.reason());
        self.store.fail(environment, e.to_string(), duration);
        // After a failed pass the state may miss what the failed pass would
        // have read; a full pass rebuilds it.
        state.next_full = None;
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
        e
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

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(key: u128, cost: f64) -> (CustomerKey, Customer) {
        (key, Customer::new(Some(&key.to_string()), cost, 0.0, 0.0))
    }

    #[test]
    fn state_dedups_and_merges_by_key() {
        let (mut state, repeats) =
            CustomerState::from_records(vec![rec(3, 1.0), rec(1, 1.0), rec(3, 1.0)]);
        assert_eq!((state.len(), repeats), (2, 1));
        let added = state.merge(vec![rec(3, 5.0), rec(2, 7.0)]);
        assert_eq!(added, 1);
        let costs: Vec<f64> = state.customers().map(|c| c.cost_usd).collect();
        assert_eq!(costs, [1.0, 7.0, 5.0]);
    }
}
