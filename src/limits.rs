//! Request, token and concurrency limits with `pingora-limits`: `Rate` sketches with
//! one-minute windows for rpm and tpm, `Inflight` for concurrency. Three scopes: a key, a
//! model group inside a key (`keys[].limits.models`), and a model for everyone
//! (`models.NAME.limits`, protecting a provider quota all keys share).
//!
//! Semantics (pingora-limits): fixed windows that start at the first request after the
//! previous one ended, approximate counts that can only over-count (count-min sketch), per
//! process. The limit values live in the config; the counters are process-wide statics
//! keyed by name, so a reload changes limits without resetting anyone's counters.

use std::hash::Hash;
use std::time::Duration;

use once_cell::sync::Lazy;
use pingora_limits::inflight::{Guard, Inflight};
use pingora_limits::rate::Rate;
use wildmatch::WildMatch;

use crate::metrics;

pub const WINDOW: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitSet {
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub concurrency: Option<u64>,
}

impl LimitSet {
    pub fn is_empty(&self) -> bool {
        self.rpm.is_none() && self.tpm.is_none() && self.concurrency.is_none()
    }
}

/// A key's limits: its own, plus limits for model groups (name or glob) within it.
#[derive(Debug, Default)]
pub struct KeyLimits {
    pub base: LimitSet,
    pub models: Vec<(String, WildMatch, LimitSet)>,
}

impl KeyLimits {
    pub fn is_empty(&self) -> bool {
        self.base.is_empty() && self.models.is_empty()
    }
}

static REQUESTS: Lazy<Rate> = Lazy::new(|| Rate::new_with_estimator_config(WINDOW, 4, 4096));
static TOKENS: Lazy<Rate> = Lazy::new(|| Rate::new_with_estimator_config(WINDOW, 4, 4096));
static INFLIGHT: Lazy<Inflight> = Lazy::new(Inflight::new);

/// Where a counter lives. Hashed into the sketches; names are never stored.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Scope {
    Key(String),
    KeyModels(String, String),
    Model(String),
}

struct Checked<'a> {
    scope: Scope,
    set: &'a LimitSet,
}

/// What the limits say about the current request, for the `x-ratelimit-*` headers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RateStatus {
    pub limit_requests: Option<u64>,
    pub remaining_requests: u64,
    pub reset_requests: Duration,
    pub limit_tokens: Option<u64>,
    pub remaining_tokens: u64,
    pub reset_tokens: Duration,
}

impl RateStatus {
    /// OpenAI's header names and formats (`reset` as a duration like `1s` or `6m0s`).
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut h = Vec::with_capacity(6);
        if let Some(l) = self.limit_requests {
            h.push(("x-ratelimit-limit-requests", l.to_string()));
            h.push((
                "x-ratelimit-remaining-requests",
                self.remaining_requests.to_string(),
            ));
            h.push((
                "x-ratelimit-reset-requests",
                reset_format(self.reset_requests),
            ));
        }
        if let Some(l) = self.limit_tokens {
            h.push(("x-ratelimit-limit-tokens", l.to_string()));
            h.push((
                "x-ratelimit-remaining-tokens",
                self.remaining_tokens.to_string(),
            ));
            h.push(("x-ratelimit-reset-tokens", reset_format(self.reset_tokens)));
        }
        h
    }
}

fn reset_format(d: Duration) -> String {
    let ms = d.as_millis() as u64;
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{}s", ms.div_ceil(1000))
    } else {
        format!("{}m{}s", ms / 60_000, (ms % 60_000) / 1000)
    }
}

/// A refused request.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    /// `rpm`, `tpm` or `concurrency` (the metric label).
    pub limit: &'static str,
    /// Whole seconds, at least 1.
    pub retry_after: u64,
    pub status: RateStatus,
    pub message: String,
}

/// An admitted request: its concurrency slots (released on drop) and token reservation
/// (corrected by `reconcile` when the real usage is known).
#[derive(Default)]
pub struct Admission {
    _slots: Vec<Guard>,
    reserved: Vec<(Scope, isize)>,
    pub status: Option<RateStatus>,
}

impl Admission {
    /// Replaces the token estimate with the real count (or with `None`: keep the estimate).
    pub fn reconcile(&mut self, actual_tokens: Option<u64>) {
        let Some(actual) = actual_tokens else { return };
        for (scope, reserved) in self.reserved.drain(..) {
            let delta = isize::try_from(actual)
                .unwrap_or(isize::MAX)
                .saturating_sub(reserved);
            if delta != 0 {
                TOKENS.observe(&scope, delta);
            }
        }
    }
}

/// Time left in the current window of `rate` for `scope`.
fn window_left<T: Hash>(rate: &Rate, scope: &T) -> Duration {
    let fraction = rate.rate_with(scope, |c| c.current_interval_fraction);
    WINDOW.mul_f64((1.0 - fraction).clamp(0.0, 1.0))
}

fn retry_secs(d: Duration) -> u64 {
    d.as_secs_f64().ceil().max(1.0) as u64
}

/// Checks and counts a request against every applicable limit.
/// `key`: the key's name and limits; `model`: the public model name, its route's global
/// limits; `estimate`: prompt-token estimate plus the requested output tokens.
pub fn admit(
    key_name: &str,
    key_limits: &KeyLimits,
    model: &str,
    model_limits: Option<(&str, &LimitSet)>,
    estimate: u64,
) -> Result<Admission, Box<Rejection>> {
    let mut checks: Vec<Checked> = Vec::with_capacity(3);
    if !key_limits.base.is_empty() {
        checks.push(Checked {
            scope: Scope::Key(key_name.to_string()),
            set: &key_limits.base,
        });
    }
    if let Some((group, _, set)) = key_limits.models.iter().find(|(_, m, _)| m.matches(model)) {
        checks.push(Checked {
            scope: Scope::KeyModels(key_name.to_string(), group.clone()),
            set,
        });
    }
    // The model's own limits are shared by every name its route answers to (a wildcard
    // route's pattern included).
    if let Some((scope, set)) = model_limits.filter(|(_, s)| !s.is_empty()) {
        checks.push(Checked {
            scope: Scope::Model(scope.to_string()),
            set,
        });
    }
    if checks.is_empty() {
        return Ok(Admission::default());
    }
    let mut admission = Admission::default();
    let mut status = RateStatus {
        remaining_requests: u64::MAX,
        remaining_tokens: u64::MAX,
        ..Default::default()
    };
    let reject = |limit: &'static str, wait: Duration, status: &RateStatus, what: String| {
        Box::new(Rejection {
            limit,
            retry_after: retry_secs(wait),
            status: status.clone(),
            message: what,
        })
    };

    // Concurrency first: a refused request must not use up rpm/tpm.
    for c in &checks {
        if let Some(max) = c.set.concurrency {
            let (guard, n) = INFLIGHT.incr(&c.scope, 1);
            if n as u64 > max {
                drop(guard);
                metrics::RATE_LIMITED
                    .with_label_values(&[key_name, "concurrency"])
                    .inc();
                return Err(reject(
                    "concurrency",
                    Duration::from_secs(1),
                    &status,
                    format!(
                        "too many requests in flight: the limit is {max} at a time{}",
                        scope_note(&c.scope)
                    ),
                ));
            }
            admission._slots.push(guard);
        }
    }
    // Tokens: the estimate must fit in what is left of the window.
    for c in &checks {
        if let Some(max) = c.set.tpm {
            let used = TOKENS.observe(&c.scope, 0).max(0) as u64;
            let left = max.saturating_sub(used);
            let reset = window_left(&TOKENS, &c.scope);
            if left < status.remaining_tokens {
                status.limit_tokens = Some(max);
                status.remaining_tokens = left;
                status.reset_tokens = reset;
            }
            // A request larger than the whole budget is let through into an empty window
            // (otherwise it could never succeed) and counted as the full budget.
            if used.saturating_add(estimate.min(max)) > max {
                metrics::RATE_LIMITED
                    .with_label_values(&[key_name, "tpm"])
                    .inc();
                let wait = reset;
                return Err(reject(
                    "tpm",
                    wait,
                    &status,
                    format!(
                        "token rate limit reached: {used} of {max} tokens per minute used and this request needs about {estimate}{}",
                        scope_note(&c.scope)
                    ),
                ));
            }
        }
    }
    // Requests: counted now (a refused request counts too, as in any fixed window).
    for c in &checks {
        if let Some(max) = c.set.rpm {
            let n = REQUESTS.observe(&c.scope, 1).max(0) as u64;
            let reset = window_left(&REQUESTS, &c.scope);
            let left = max.saturating_sub(n);
            if left < status.remaining_requests {
                status.limit_requests = Some(max);
                status.remaining_requests = left;
                status.reset_requests = reset;
            }
            if n > max {
                metrics::RATE_LIMITED
                    .with_label_values(&[key_name, "rpm"])
                    .inc();
                return Err(reject(
                    "rpm",
                    reset,
                    &status,
                    format!(
                        "rate limit reached: {max} requests per minute{}",
                        scope_note(&c.scope)
                    ),
                ));
            }
        }
    }
    for c in &checks {
        if let Some(max) = c.set.tpm {
            let reserve = isize::try_from(estimate.min(max)).unwrap_or(isize::MAX);
            TOKENS.observe(&c.scope, reserve);
            admission.reserved.push((c.scope.clone(), reserve));
        }
    }
    if let Some(max) = status.limit_tokens {
        status.remaining_tokens = status.remaining_tokens.saturating_sub(estimate.min(max));
    }
    admission.status =
        (status.limit_requests.is_some() || status.limit_tokens.is_some()).then_some(status);
    Ok(admission)
}

fn scope_note(scope: &Scope) -> String {
    match scope {
        Scope::Key(_) => " for this key".to_string(),
        Scope::KeyModels(_, group) => format!(" for this key on models {group:?}"),
        Scope::Model(m) => format!(" for model {m:?} across all keys"),
    }
}

/// A rough prompt-token count for admission: about 4 bytes of JSON per token.
pub fn estimate_prompt_tokens(body_len: usize) -> u64 {
    (body_len as u64).div_ceil(4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(rpm: Option<u64>, tpm: Option<u64>, concurrency: Option<u64>) -> KeyLimits {
        KeyLimits {
            base: LimitSet {
                rpm,
                tpm,
                concurrency,
            },
            models: vec![],
        }
    }

    #[test]
    fn rpm_refuses_the_request_after_the_limit_with_headers() {
        let l = limits(Some(3), None, None);
        for left in [2, 1, 0] {
            let a = admit("unit-rpm", &l, "m", None, 0).unwrap();
            assert_eq!(a.status.as_ref().unwrap().remaining_requests, left);
        }
        let r = admit("unit-rpm", &l, "m", None, 0).err().unwrap();
        assert_eq!(r.limit, "rpm");
        assert!((1..=60).contains(&r.retry_after), "{}", r.retry_after);
        assert_eq!(r.status.limit_requests, Some(3));
    }

    #[test]
    fn concurrency_slots_are_released_on_drop() {
        let l = limits(None, None, Some(2));
        let a = admit("unit-conc", &l, "m", None, 0).unwrap();
        let b = admit("unit-conc", &l, "m", None, 0).unwrap();
        assert_eq!(
            admit("unit-conc", &l, "m", None, 0).err().unwrap().limit,
            "concurrency"
        );
        drop(a);
        let c = admit("unit-conc", &l, "m", None, 0).unwrap();
        drop((b, c));
    }

    #[test]
    fn tpm_reserves_the_estimate_and_reconciles() {
        let l = limits(None, Some(1000), None);
        let mut a = admit("unit-tpm", &l, "m", None, 100).unwrap();
        assert_eq!(a.status.as_ref().unwrap().remaining_tokens, 900);
        a.reconcile(Some(950));
        let r = admit("unit-tpm", &l, "m", None, 100).err().unwrap();
        assert_eq!(r.limit, "tpm");
        assert!(r.message.contains("950 of 1000"), "{}", r.message);
    }

    #[test]
    fn a_request_larger_than_the_budget_gets_an_empty_window_only() {
        let l = limits(None, Some(1000), None);
        // e.g. Claude Code asking max_tokens 32000 on a 1000-token key: not refused forever
        let a = admit("unit-big", &l, "m", None, 32_000).unwrap();
        assert_eq!(a.status.as_ref().unwrap().remaining_tokens, 0);
        assert_eq!(
            admit("unit-big", &l, "m", None, 10).err().unwrap().limit,
            "tpm"
        );
        assert!(
            admit("unit-huge", &l, "m", None, u64::MAX).is_ok(),
            "no overflow"
        );
    }

    #[test]
    fn model_groups_and_global_model_limits_are_separate_scopes() {
        let l = KeyLimits {
            base: LimitSet::default(),
            models: vec![(
                "gpt-*".into(),
                WildMatch::new("gpt-*"),
                LimitSet {
                    rpm: Some(1),
                    ..Default::default()
                },
            )],
        };
        admit("unit-grp", &l, "gpt-4o", None, 0).unwrap();
        assert_eq!(
            admit("unit-grp", &l, "gpt-4o-mini", None, 0)
                .err()
                .unwrap()
                .limit,
            "rpm"
        );
        admit("unit-grp", &l, "claude", None, 0).unwrap();
        let global = LimitSet {
            rpm: Some(1),
            ..Default::default()
        };
        admit(
            "unit-a",
            &KeyLimits::default(),
            "shared-model",
            Some(("shared-model", &global)),
            0,
        )
        .unwrap();
        let r = admit(
            "unit-b",
            &KeyLimits::default(),
            "shared-model",
            Some(("shared-model", &global)),
            0,
        )
        .err()
        .unwrap();
        assert!(r.message.contains("across all keys"), "{}", r.message);
    }

    #[test]
    fn reset_formats_like_openai() {
        assert_eq!(reset_format(Duration::from_millis(250)), "250ms");
        assert_eq!(reset_format(Duration::from_millis(1500)), "2s");
        assert_eq!(reset_format(Duration::from_secs(61)), "1m1s");
    }
}
