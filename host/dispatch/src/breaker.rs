//! The circuit breaker of one worker (`failure_policy`).

use herald_config::FailurePolicy;
use herald_journal::now_ms;
use std::sync::Mutex;

/// What an instance is doing, as its breaker sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceState {
    /// Delivering (breaker closed).
    Running,
    /// Paused after repeated failures (breaker open): deliveries wait.
    Paused,
    /// The pause is over: the next delivery is a probe (breaker half-open).
    Probing,
}

impl InstanceState {
    const ALL: [InstanceState; 3] = [Self::Running, Self::Paused, Self::Probing];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Probing => "probing",
        }
    }
}

/// The last fault of an instance.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LastFault {
    pub reason: &'static str,
    pub message: String,
    pub at_ms: i64,
}

/// A snapshot of an instance's breaker, for `GET /v1/plugins`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BreakerStatus {
    pub state: InstanceState,
    /// Failed calls in a row (see `failure_policy.count`).
    pub consecutive_failures: u32,
    /// How many times the breaker opened since the instance started.
    pub opened: u64,
    /// When the pause ends (epoch ms), while paused.
    pub paused_until_ms: Option<i64>,
    /// Length of the current (or next) pause.
    pub pause_ms: u64,
    /// Faults since the instance started.
    pub faults: u64,
    pub last_fault: Option<LastFault>,
}

/// How one call counts for the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Success,
    Failure,
    /// Neither (a permanent answer without a fault; a retryable answer when only faults count).
    Neutral,
}

/// The circuit breaker of one worker (`failure_policy`).
pub struct Breaker {
    pub(crate) policy: FailurePolicy,
    tenant: String,
    plugin: String,
    status: Mutex<BreakerStatus>,
}

impl Breaker {
    pub(crate) fn new(policy: FailurePolicy, tenant: &str, plugin: &str) -> Breaker {
        let b = Breaker {
            status: Mutex::new(BreakerStatus {
                state: InstanceState::Running,
                consecutive_failures: 0,
                opened: 0,
                paused_until_ms: None,
                pause_ms: policy.pause_ms,
                faults: 0,
                last_fault: None,
            }),
            policy,
            tenant: tenant.to_string(),
            plugin: plugin.to_string(),
        };
        b.publish(InstanceState::Running);
        b
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, BreakerStatus> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets the `herald_plugin_state` gauge: 1 for `state`, 0 for the others.
    pub(crate) fn publish(&self, state: InstanceState) {
        for s in InstanceState::ALL {
            metrics::gauge!("herald_plugin_state", "tenant" => self.tenant.clone(),
                "plugin" => self.plugin.clone(), "state" => s.as_str())
            .set(if s == state { 1.0 } else { 0.0 });
        }
    }

    /// Clears the gauge when the worker stops.
    pub(crate) fn retire(&self) {
        for s in InstanceState::ALL {
            metrics::gauge!("herald_plugin_state", "tenant" => self.tenant.clone(),
                "plugin" => self.plugin.clone(), "state" => s.as_str())
            .set(0.0);
        }
    }

    pub fn status(&self) -> BreakerStatus {
        self.lock().clone()
    }

    pub(crate) fn note_fault(&self, reason: &'static str, message: &str) {
        let mut s = self.lock();
        s.faults += 1;
        s.last_fault = Some(LastFault {
            reason,
            message: message.to_string(),
            at_ms: now_ms(),
        });
    }

    /// While paused: when the pause ends.
    pub(crate) fn paused_until(&self) -> Option<i64> {
        let s = self.lock();
        (s.state == InstanceState::Paused)
            .then_some(s.paused_until_ms)
            .flatten()
    }

    /// The pause is over: the next delivery probes the instance.
    pub(crate) fn start_probe(&self) {
        let mut s = self.lock();
        if s.state == InstanceState::Paused {
            s.state = InstanceState::Probing;
            s.paused_until_ms = None;
            drop(s);
            self.publish(InstanceState::Probing);
            tracing::info!(plugin = %self.plugin, tenant = %self.tenant,
                "circuit breaker half-open: the next delivery probes the plugin instance");
        }
    }

    /// Records one call; true when the instance is now paused.
    pub(crate) fn record(&self, verdict: Verdict) -> bool {
        let mut s = self.lock();
        let was = s.state;
        match verdict {
            Verdict::Success | Verdict::Neutral if was == InstanceState::Probing => {
                s.state = InstanceState::Running;
                s.consecutive_failures = 0;
                s.pause_ms = self.policy.pause_ms;
                drop(s);
                self.publish(InstanceState::Running);
                tracing::info!(plugin = %self.plugin, tenant = %self.tenant,
                    "circuit breaker closed: the probe succeeded, the plugin instance delivers again");
                false
            }
            Verdict::Success => {
                s.consecutive_failures = 0;
                false
            }
            Verdict::Neutral => false,
            Verdict::Failure => {
                s.consecutive_failures += 1;
                let open = if was == InstanceState::Probing {
                    s.pause_ms = (s.pause_ms.saturating_mul(2)).min(self.policy.max_pause_ms);
                    true
                } else {
                    self.policy.open_after > 0 && s.consecutive_failures >= self.policy.open_after
                };
                if !open {
                    return false;
                }
                let pause = s.pause_ms;
                s.state = InstanceState::Paused;
                s.paused_until_ms = Some(now_ms() + pause as i64);
                s.opened += 1;
                let failures = s.consecutive_failures;
                let last = s
                    .last_fault
                    .as_ref()
                    .map(|f| format!("{}: {}", f.reason, f.message))
                    .unwrap_or_else(|| "retryable answers".into());
                drop(s);
                self.publish(InstanceState::Paused);
                metrics::counter!("herald_plugin_breaker_opened_total",
                    "tenant" => self.tenant.clone(), "plugin" => self.plugin.clone())
                .increment(1);
                tracing::warn!(plugin = %self.plugin, tenant = %self.tenant, consecutive_failures = failures,
                    pause_ms = pause, last_fault = %last,
                    "circuit breaker open: plugin instance paused after {failures} failed calls in a row; its deliveries wait");
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_config::FailureCount;

    pub(crate) fn breaker(open_after: u32) -> Breaker {
        Breaker::new(
            FailurePolicy {
                open_after,
                count: FailureCount::Failures,
                pause_ms: 100,
                max_pause_ms: 250,
            },
            "t",
            "p",
        )
    }

    #[test]
    pub(crate) fn opens_after_n_failures_in_a_row_and_probes() {
        let b = breaker(3);
        assert!(!b.record(Verdict::Failure));
        assert!(!b.record(Verdict::Failure));
        assert!(!b.record(Verdict::Success), "a success resets the count");
        assert!(!b.record(Verdict::Failure));
        assert!(
            !b.record(Verdict::Neutral),
            "a permanent answer changes nothing"
        );
        assert!(!b.record(Verdict::Failure));
        assert!(b.record(Verdict::Failure));
        let s = b.status();
        assert_eq!(s.state, InstanceState::Paused);
        assert_eq!(s.opened, 1);
        assert!(b.paused_until().is_some());
        b.start_probe();
        assert_eq!(b.status().state, InstanceState::Probing);
        // A failed probe pauses again, twice as long, capped.
        assert!(b.record(Verdict::Failure));
        assert_eq!(b.status().pause_ms, 200);
        b.start_probe();
        assert!(b.record(Verdict::Failure));
        assert_eq!(b.status().pause_ms, 250);
        b.start_probe();
        assert!(!b.record(Verdict::Success));
        let s = b.status();
        assert_eq!(
            (s.state, s.consecutive_failures, s.pause_ms),
            (InstanceState::Running, 0, 100)
        );
    }

    #[test]
    pub(crate) fn open_after_zero_never_pauses() {
        let b = breaker(0);
        for _ in 0..100 {
            assert!(!b.record(Verdict::Failure));
        }
        assert_eq!(b.status().state, InstanceState::Running);
    }
}
