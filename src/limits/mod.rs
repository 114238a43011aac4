//! Request, token and concurrency limits in three scopes: a key, a model group inside a
//! key (`keys[].limits.models`), and a model for everyone (`models.NAME.limits`, which
//! protects a provider quota all keys share).
//!
//! Which limits apply to a request is decided here; counting is a `LimitBackend`'s job.
//! The backend is owned by the runtime (`State::limits`), so a reload changes the limit
//! values without resetting anyone's counters, and a shared backend can replace the
//! per-process one (`local.rs`, on pingora-limits) without touching the proxy.

mod local;

use std::time::Duration;

use async_trait::async_trait;
use wildmatch::WildMatch;

pub use local::LocalBackend;

use crate::spend::SharedBudget;
use crate::{gateway_headers, metrics};

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

/// Where a counter lives. Backends hash it; names are never stored.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    Key(String),
    KeyModels(String, String),
    Model(String),
}

/// One scope to check and the limits that apply in it.
pub struct Check<'a> {
    pub scope: Scope,
    pub set: &'a LimitSet,
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
    pub fn headers(&self) -> gateway_headers::Headers {
        use gateway_headers as n;
        let mut h = Vec::with_capacity(6);
        if let Some(l) = self.limit_requests {
            h.push((n::LIMIT_REQUESTS.clone(), l.into()));
            h.push((
                n::REMAINING_REQUESTS.clone(),
                self.remaining_requests.into(),
            ));
            n::push(
                &mut h,
                &n::RESET_REQUESTS,
                reset_format(self.reset_requests),
            );
        }
        if let Some(l) = self.limit_tokens {
            h.push((n::LIMIT_TOKENS.clone(), l.into()));
            h.push((n::REMAINING_TOKENS.clone(), self.remaining_tokens.into()));
            n::push(&mut h, &n::RESET_TOKENS, reset_format(self.reset_tokens));
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
    /// A shared budget that cannot cover the request (`limit: "budget"`).
    pub budget: Option<Box<crate::spend::Refusal>>,
}

/// A backend's hold on an admitted request: concurrency slots (released when dropped) and
/// token reservations (corrected by `settle`).
pub trait Lease: Send + Sync {
    /// Replaces the token estimate with the real count (`None`: keep the estimate).
    fn settle(&mut self, actual_tokens: Option<u64>);

    /// Replaces the budgets' reservations with what the request cost (`None`: nothing,
    /// it failed). Only a backend that counts budgets holds any.
    fn settle_spend(&mut self, _actual: Option<crate::spend::Amount>) {}
}

/// An admitted request.
#[derive(Default)]
pub struct Admission {
    pub status: Option<RateStatus>,
    lease: Option<Box<dyn Lease>>,
    /// The tightest shared budget after this request's reservation (cluster).
    pub budget: Option<crate::spend::BudgetStatus>,
}

impl Admission {
    pub fn new(status: Option<RateStatus>, lease: Box<dyn Lease>) -> Self {
        Admission {
            status,
            lease: Some(lease),
            budget: None,
        }
    }

    /// Real usage replaces the estimate; `Some(0)` for a request that used nothing.
    pub fn settle(&mut self, actual_tokens: Option<u64>) {
        if let Some(l) = self.lease.as_mut() {
            l.settle(actual_tokens);
        }
    }

    pub fn settle_spend(&mut self, actual: Option<crate::spend::Amount>) {
        if let Some(l) = self.lease.as_mut() {
            l.settle_spend(actual);
        }
    }
}

/// Counts requests against limits. `admit` is called only when at least one limit applies.
#[async_trait]
pub trait LimitBackend: Send + Sync {
    /// Checks `checks` in order (concurrency, then tokens, then requests, so a refused
    /// request uses up nothing it should not) and counts the request in each.
    /// `estimate`: prompt-token estimate plus the requested output tokens.
    /// `budgets`: the request's budgets, for a backend that counts them
    /// (`counts_budgets`); the per-process book counts them otherwise.
    async fn admit(
        &self,
        checks: &[Check<'_>],
        estimate: u64,
        budgets: &[SharedBudget],
    ) -> Result<Admission, Box<Rejection>>;

    fn counts_budgets(&self) -> bool {
        false
    }
}

/// The limits of one request, as `admit` needs them.
pub struct LimitRequest<'a> {
    pub key_name: &'a str,
    pub key_limits: &'a KeyLimits,
    /// The public model name (a wildcard route's concrete name).
    pub model: &'a str,
    /// The route's name and its limits for every key.
    pub model_limits: Option<(&'a str, &'a LimitSet)>,
    pub estimate: u64,
    /// The budgets the request reserved against (see `LimitBackend::admit`).
    pub budgets: &'a [SharedBudget],
}

/// The checks that apply to a request: its key's, the key's model group's, the model's.
pub fn checks<'a>(r: &LimitRequest<'a>) -> Vec<Check<'a>> {
    let mut checks = Vec::new();
    if !r.key_limits.base.is_empty() {
        checks.push(Check {
            scope: Scope::Key(r.key_name.to_string()),
            set: &r.key_limits.base,
        });
    }
    if let Some((group, _, set)) = r
        .key_limits
        .models
        .iter()
        .find(|(_, m, _)| m.matches(r.model))
    {
        checks.push(Check {
            scope: Scope::KeyModels(r.key_name.to_string(), group.clone()),
            set,
        });
    }
    // The model's own limits are shared by every name its route answers to (a wildcard
    // route's pattern included).
    if let Some((scope, set)) = r.model_limits.filter(|(_, s)| !s.is_empty()) {
        checks.push(Check {
            scope: Scope::Model(scope.to_string()),
            set,
        });
    }
    checks
}

/// The runtime's limiter: decides what applies, lets the backend count, records refusals.
pub struct Limiter {
    backend: Box<dyn LimitBackend>,
}

impl Default for Limiter {
    fn default() -> Self {
        Limiter::new(Box::new(LocalBackend::default()))
    }
}

impl Limiter {
    pub fn new(backend: Box<dyn LimitBackend>) -> Self {
        Limiter { backend }
    }

    /// Checks and counts a request against every applicable limit; a request with none
    /// never reaches the backend.
    pub async fn admit(&self, r: &LimitRequest<'_>) -> Result<Admission, Box<Rejection>> {
        let checks = checks(r);
        let budgets = if self.backend.counts_budgets() {
            r.budgets
        } else {
            &[]
        };
        if checks.is_empty() && budgets.is_empty() {
            return Ok(Admission::default());
        }
        let result = self.backend.admit(&checks, r.estimate, budgets).await;
        if let Err(rejection) = &result {
            metrics::RATE_LIMITED
                .with_label_values(&[r.key_name, rejection.limit])
                .inc();
        }
        result
    }
}

pub(crate) fn scope_note(scope: &Scope) -> String {
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

    /// One limiter per test: no counters shared between tests.
    fn admit(
        lim: &Limiter,
        key_name: &str,
        key_limits: &KeyLimits,
        model: &str,
        model_limits: Option<(&str, &LimitSet)>,
        estimate: u64,
    ) -> Result<Admission, Box<Rejection>> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(lim.admit(&LimitRequest {
            key_name,
            key_limits,
            model,
            model_limits,
            estimate,
            budgets: &[],
        }))
    }

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
        let lim = Limiter::default();
        let l = limits(Some(3), None, None);
        for left in [2, 1, 0] {
            let a = admit(&lim, "unit-rpm", &l, "m", None, 0).unwrap();
            assert_eq!(a.status.as_ref().unwrap().remaining_requests, left);
        }
        let r = admit(&lim, "unit-rpm", &l, "m", None, 0).err().unwrap();
        assert_eq!(r.limit, "rpm");
        assert!((1..=60).contains(&r.retry_after), "{}", r.retry_after);
        assert_eq!(r.status.limit_requests, Some(3));
    }

    #[test]
    fn concurrency_slots_are_released_on_drop() {
        let lim = Limiter::default();
        let l = limits(None, None, Some(2));
        let a = admit(&lim, "unit-conc", &l, "m", None, 0).unwrap();
        let b = admit(&lim, "unit-conc", &l, "m", None, 0).unwrap();
        assert_eq!(
            admit(&lim, "unit-conc", &l, "m", None, 0)
                .err()
                .unwrap()
                .limit,
            "concurrency"
        );
        drop(a);
        let c = admit(&lim, "unit-conc", &l, "m", None, 0).unwrap();
        drop((b, c));
    }

    #[test]
    fn tpm_reserves_the_estimate_and_reconciles() {
        let lim = Limiter::default();
        let l = limits(None, Some(1000), None);
        let mut a = admit(&lim, "unit-tpm", &l, "m", None, 100).unwrap();
        assert_eq!(a.status.as_ref().unwrap().remaining_tokens, 900);
        a.settle(Some(950));
        let r = admit(&lim, "unit-tpm", &l, "m", None, 100).err().unwrap();
        assert_eq!(r.limit, "tpm");
        assert!(r.message.contains("950 of 1000"), "{}", r.message);
    }

    #[test]
    fn a_request_larger_than_the_budget_gets_an_empty_window_only() {
        let lim = Limiter::default();
        let l = limits(None, Some(1000), None);
        // e.g. Claude Code asking max_tokens 32000 on a 1000-token key: not refused forever
        let a = admit(&lim, "unit-big", &l, "m", None, 32_000).unwrap();
        assert_eq!(a.status.as_ref().unwrap().remaining_tokens, 0);
        assert_eq!(
            admit(&lim, "unit-big", &l, "m", None, 10)
                .err()
                .unwrap()
                .limit,
            "tpm"
        );
        assert!(
            admit(&lim, "unit-huge", &l, "m", None, u64::MAX).is_ok(),
            "no overflow"
        );
    }

    #[test]
    fn model_groups_and_global_model_limits_are_separate_scopes() {
        let lim = Limiter::default();
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
        admit(&lim, "unit-grp", &l, "gpt-4o", None, 0).unwrap();
        assert_eq!(
            admit(&lim, "unit-grp", &l, "gpt-4o-mini", None, 0)
                .err()
                .unwrap()
                .limit,
            "rpm"
        );
        admit(&lim, "unit-grp", &l, "claude", None, 0).unwrap();
        let global = LimitSet {
            rpm: Some(1),
            ..Default::default()
        };
        admit(
            &lim,
            "unit-a",
            &KeyLimits::default(),
            "shared-model",
            Some(("shared-model", &global)),
            0,
        )
        .unwrap();
        let r = admit(
            &lim,
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
