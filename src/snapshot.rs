//! The last complete result of each environment's poll, and its health.
//!
//! A poll publishes one environment's snapshot in one step (an `Arc` swap under a
//! short write lock) or records a failure that leaves the previous snapshot as it
//! was. Readers (the `/metrics` and `/readyz` handlers) never wait on the API.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use crate::aggregate::Aggregate;

/// One environment's numbers at the end of a completed poll.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvSnapshot {
    /// The aggregate numbers.
    pub aggregate: Aggregate,
    /// When the poll completed, Unix seconds.
    pub completed_at: f64,
    /// Pages the poll read.
    pub pages: u32,
    /// Full and incremental passes.
    pub passes: PassStats,
}

/// What the passes of one environment did.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PassStats {
    /// The last pass: `full` or `incremental`.
    pub mode: &'static str,
    /// Pages of the last full pass.
    pub full_pages: Option<u32>,
    /// Pages of the last incremental pass.
    pub incremental_pages: Option<u32>,
    /// Customer records the last pass merged (every customer, for a full pass).
    pub changed: u64,
    /// False once the API turned out not to serve incremental passes.
    pub incremental_supported: bool,
}

/// The state of one environment.
#[derive(Debug, Clone, Default)]
pub struct EnvStatus {
    /// The last poll completed.
    pub up: bool,
    /// Wall time of the last poll, completed or failed, in seconds.
    pub last_duration_seconds: Option<f64>,
    /// Why the last poll failed, when it did.
    pub last_error: Option<String>,
    /// Polls attempted so far.
    pub polls: u64,
    /// The last good snapshot.
    pub snapshot: Option<Arc<EnvSnapshot>>,
}

/// The snapshots of every configured environment.
#[derive(Debug)]
pub struct SnapshotStore {
    environments: Vec<String>,
    state: RwLock<BTreeMap<String, EnvStatus>>,
}

impl SnapshotStore {
    /// A store for these environments, none polled yet.
    pub fn new(environments: &[String]) -> Self {
        let state = environments
            .iter()
            .map(|e| (e.clone(), EnvStatus::default()))
            .collect();
        Self {
            environments: environments.to_vec(),
            state: RwLock::new(state),
        }
    }

    /// The configured environments, in order.
    pub fn environments(&self) -> &[String] {
        &self.environments
    }

    fn update(&self, environment: &str, f: impl FnOnce(&mut EnvStatus)) {
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        f(state.entry(environment.to_string()).or_default());
    }

    /// Replaces an environment's snapshot after a completed poll.
    pub fn publish(&self, environment: &str, snapshot: EnvSnapshot, duration_seconds: f64) {
        let snapshot = Arc::new(snapshot);
        self.update(environment, |s| {
            s.up = true;
            s.last_duration_seconds = Some(duration_seconds);
            s.last_error = None;
            s.polls += 1;
            s.snapshot = Some(snapshot);
        });
    }

    /// Records a failed poll; the last good snapshot stays.
    pub fn fail(&self, environment: &str, error: String, duration_seconds: f64) {
        self.update(environment, |s| {
            s.up = false;
            s.last_duration_seconds = Some(duration_seconds);
            s.last_error = Some(error);
            s.polls += 1;
        });
    }

    /// A copy of every environment's state, in name order.
    pub fn statuses(&self) -> Vec<(String, EnvStatus)> {
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        state.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// One environment's state.
    pub fn status(&self, environment: &str) -> Option<EnvStatus> {
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        state.get(environment).cloned()
    }

    /// `Ok` once every configured environment has completed a poll; otherwise
    /// the reason, naming each environment that has not.
    pub fn readiness(&self) -> Result<(), String> {
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        let waiting: Vec<String> = self
            .environments
            .iter()
            .filter_map(|env| {
                let s = state.get(env)?;
                if s.snapshot.is_some() {
                    return None;
                }
                Some(match &s.last_error {
                    Some(e) => format!(
                        "environment {env:?} has no completed poll yet (last poll failed: {e})"
                    ),
                    None => format!("environment {env:?} has no completed poll yet"),
                })
            })
            .collect();
        if waiting.is_empty() {
            Ok(())
        } else {
            Err(waiting.join("; "))
        }
    }
}
