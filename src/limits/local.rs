//! The per-process limit backend, on pingora-limits: `Rate` sketches with one-minute
//! windows for rpm and tpm, `Inflight` for concurrency.
//!
//! Semantics (pingora-limits): fixed windows that start at the first request after the
//! previous one ended, approximate counts that can only over-count (count-min sketch).

use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora_limits::inflight::{Guard, Inflight};
use pingora_limits::rate::Rate;

use super::{
    scope_note, Admission, Check, Lease, LimitBackend, RateStatus, Rejection, Scope, WINDOW,
};

struct Counters {
    requests: Rate,
    tokens: Rate,
    inflight: Inflight,
}

pub struct LocalBackend {
    counters: Arc<Counters>,
}

impl Default for LocalBackend {
    fn default() -> Self {
        LocalBackend {
            counters: Arc::new(Counters {
                requests: Rate::new_with_estimator_config(WINDOW, 4, 4096),
                tokens: Rate::new_with_estimator_config(WINDOW, 4, 4096),
                inflight: Inflight::new(),
            }),
        }
    }
}

struct LocalLease {
    _slots: Vec<Guard>,
    reserved: Vec<(Scope, isize)>,
    counters: Arc<Counters>,
}

impl Lease for LocalLease {
    fn settle(&mut self, actual_tokens: Option<u64>) {
        let Some(actual) = actual_tokens else { return };
        for (scope, reserved) in self.reserved.drain(..) {
            let delta = isize::try_from(actual)
                .unwrap_or(isize::MAX)
                .saturating_sub(reserved);
            if delta != 0 {
                self.counters.tokens.observe(&scope, delta);
            }
        }
    }
}

/// Time left in the current window of `rate` for `scope`.
fn window_left<T: Hash>(rate: &Rate, scope: &T) -> Duration {
    let fraction = rate.rate_with(scope, |c| c.current_interval_fraction);
    WINDOW.mul_f64((1.0 - fraction).clamp(0.0, 1.0))
}

fn reject(
    limit: &'static str,
    wait: Duration,
    status: &RateStatus,
    message: String,
) -> Box<Rejection> {
    Box::new(Rejection {
        limit,
        retry_after: wait.as_secs_f64().ceil().max(1.0) as u64,
        status: status.clone(),
        message,
        budget: None,
    })
}

#[async_trait]
impl LimitBackend for LocalBackend {
    // Long on purpose: every scope's check, then every reservation, in one pass so a refusal takes nothing.
    async fn admit(
        &self,
        checks: &[Check<'_>],
        estimate: u64,
        _budgets: &[crate::spend::SharedBudget],
    ) -> Result<Admission, Box<Rejection>> {
        let c = &*self.counters;
        let mut status = RateStatus {
            remaining_requests: u64::MAX,
            remaining_tokens: u64::MAX,
            ..Default::default()
        };
        let mut slots = Vec::new();
        // Concurrency first: a refused request must not use up rpm/tpm.
        for ch in checks {
            if let Some(max) = ch.set.concurrency {
                let (guard, n) = c.inflight.incr(&ch.scope, 1);
                if n as u64 > max {
                    drop(guard);
                    let msg = format!(
                        "too many requests in flight: the limit is {max} at a time{}",
                        scope_note(&ch.scope)
                    );
                    return Err(reject("concurrency", Duration::from_secs(1), &status, msg));
                }
                slots.push(guard);
            }
        }
        // Tokens: the estimate must fit in what is left of the window.
        for ch in checks {
            if let Some(max) = ch.set.tpm {
                let used = c.tokens.observe(&ch.scope, 0).max(0) as u64;
                let left = max.saturating_sub(used);
                let reset = window_left(&c.tokens, &ch.scope);
                if left < status.remaining_tokens {
                    status.limit_tokens = Some(max);
                    status.remaining_tokens = left;
                    status.reset_tokens = reset;
                }
                // A request larger than the whole budget is let through into an empty
                // window (otherwise it could never succeed) and counted as the full budget.
                if used.saturating_add(estimate.min(max)) > max {
                    let msg = format!(
                        "token rate limit reached: {used} of {max} tokens per minute used and this request needs about {estimate}{}",
                        scope_note(&ch.scope)
                    );
                    return Err(reject("tpm", reset, &status, msg));
                }
            }
        }
        // Requests: counted now (a refused request counts too, as in any fixed window).
        for ch in checks {
            if let Some(max) = ch.set.rpm {
                let n = c.requests.observe(&ch.scope, 1).max(0) as u64;
                let reset = window_left(&c.requests, &ch.scope);
                let left = max.saturating_sub(n);
                if left < status.remaining_requests {
                    status.limit_requests = Some(max);
                    status.remaining_requests = left;
                    status.reset_requests = reset;
                }
                if n > max {
                    let msg = format!(
                        "rate limit reached: {max} requests per minute{}",
                        scope_note(&ch.scope)
                    );
                    return Err(reject("rpm", reset, &status, msg));
                }
            }
        }
        let mut reserved = Vec::new();
        for ch in checks {
            if let Some(max) = ch.set.tpm {
                let reserve = isize::try_from(estimate.min(max)).unwrap_or(isize::MAX);
                c.tokens.observe(&ch.scope, reserve);
                reserved.push((ch.scope.clone(), reserve));
            }
        }
        if let Some(max) = status.limit_tokens {
            status.remaining_tokens = status.remaining_tokens.saturating_sub(estimate.min(max));
        }
        let status =
            (status.limit_requests.is_some() || status.limit_tokens.is_some()).then_some(status);
        let lease = LocalLease {
            _slots: slots,
            reserved,
            counters: self.counters.clone(),
        };
        Ok(Admission::new(status, Box::new(lease)))
    }
}
