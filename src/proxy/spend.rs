//! The request's side of spend control: its worst case reserved against the key's and
//! team's budgets at admission (refused with `insufficient_quota` when one cannot cover
//! it), and at the end its cost, the settled budgets and its ledger record.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::ctx::RequestCtx;
use crate::auth::ClientKey;
use crate::errors::{ErrorCode, GatewayError};
use crate::gateway_headers;
use crate::ledger::UsageRecord;
use crate::metrics;
use crate::routing::Resolved;
use crate::spend::book::Ask;
use crate::spend::budget::{fmt_amount, rfc3339};
use crate::spend::{Amount, BudgetSet, BudgetStatus, Price, Refusal, Scope};
use crate::translate::model::Usage;

/// Output tokens assumed for a request that sets no limit and whose model sets none.
pub const DEFAULT_MAX_OUTPUT: u64 = 4096;

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Reserves the request's worst case (its prompt estimate plus its output limit, at the
/// dearest of the route's targets) against every budget of the key and its team.
pub fn reserve(
    ctx: &mut RequestCtx,
    state: &crate::runtime::State,
    key: &ClientKey,
    resolved: &Resolved,
    public: &str,
    prompt_estimate: u64,
    max_output: Option<u64>,
) -> Result<(), GatewayError> {
    let book = &state.spend;
    // While the cluster's Redis is away (on_error: local) each replica spends only its
    // share of every budget.
    let share = state
        .cluster
        .as_ref()
        .filter(|c| !c.is_up() && c.settings.on_error == crate::config::OnError::Local)
        .map_or(1.0, |c| 1.0 / f64::from(c.settings.replicas.max(1)));
    let max_output = max_output
        .or(resolved.route.max_tokens)
        .unwrap_or(DEFAULT_MAX_OUTPUT);
    let prices = &ctx.config.prices;
    let usd = resolved
        .route
        .targets
        .iter()
        .map(|t| {
            let model = t.model.as_deref().unwrap_or(resolved.requested.as_str());
            t.price
                .or_else(|| prices.lookup(&t.provider.name, model))
                .map_or(0.0, |p| p.worst_case(prompt_estimate, max_output))
        })
        .fold(0.0, f64::max);
    let empty = BudgetSet::default();
    let team = key.team.as_deref().map(|t| {
        let set = ctx.config.teams.get(t).map_or(&empty, |team| &team.budgets);
        (t, set)
    });
    let ask = Ask {
        key: &key.name,
        key_budgets: &key.budgets,
        team,
        model: public,
        worst: Amount {
            usd,
            tokens: prompt_estimate.saturating_add(max_output) as f64,
            requests: 1.0,
        },
        now: unix_now(),
        share,
        counted_elsewhere: state.cluster.is_some(),
    };
    ctx.spend.prompt_estimate = prompt_estimate;
    match book.reserve(&ask) {
        Ok(r) => {
            if let Some(s) = &r.tightest {
                ctx.spend.headers = headers(s);
            }
            ctx.spend.reservation = Some(r);
            Ok(())
        }
        Err(refusal) => {
            ctx.spend.headers = headers(&refusal.status);
            Err(refusal_error(&refusal))
        }
    }
}

/// 429 `insufficient_quota`, naming the budget, what was used and when it resets.
pub fn refusal_error(refusal: &Refusal) -> GatewayError {
    let s = &refusal.status;
    let unit = s.budget.unit.as_str();
    let when = match s.resets_at {
        Some(t) => format!("it resets at {}", rfc3339(t)),
        None => "it does not reset (period: total)".to_string(),
    };
    let (Scope::Key(name) | Scope::Team(name)) = &s.scope;
    let in_flight = if s.reserved > 0.0 {
        format!(
            " (plus {} held by requests in flight)",
            fmt_amount(s.reserved)
        )
    } else {
        String::new()
    };
    let msg = format!(
        "the {} budget of {} {name:?} is spent: {} of {} {unit} used{in_flight}, and this request may need up to {}; {when}",
        s.budget.label,
        s.scope.kind(),
        fmt_amount(s.used),
        fmt_amount(s.budget.limit),
        fmt_amount(refusal.needed),
    );
    let mut e = GatewayError::new(ErrorCode::InsufficientQuota, msg);
    e.retry_after = s.resets_at.map(|t| {
        u64::try_from(t.saturating_sub(unix_now()))
            .unwrap_or(0)
            .max(1)
    });
    e
}

/// The budget headers for the tightest budget.
pub fn headers(s: &BudgetStatus) -> gateway_headers::Headers {
    use gateway_headers as n;
    let mut h = Vec::with_capacity(3);
    n::push(
        &mut h,
        &n::BUDGET_LIMIT,
        s.budget.describe_limit().to_string(),
    );
    n::push(&mut h, &n::BUDGET_REMAINING, fmt_amount(s.remaining));
    if let Some(t) = s.resets_at {
        n::push(&mut h, &n::BUDGET_RESET, rfc3339(t));
    }
    h
}

/// What a finished request cost, by its usage at its target's price. A success without
/// reported usage is charged its prompt estimate (and the price per request).
pub fn cost(
    price: Option<Price>,
    usage: Option<&Usage>,
    success: bool,
    prompt_estimate: u64,
) -> f64 {
    let Some(p) = price else { return 0.0 };
    match usage {
        Some(u) => p.cost(u),
        None if success => p.cost(&Usage {
            prompt_tokens: prompt_estimate,
            ..Usage::default()
        }),
        None => 0.0,
    }
}

/// Settles the budgets, counts the cost and queues the ledger record (model requests of
/// an authenticated key only).
pub fn finish(
    ctx: &mut RequestCtx,
    status: u16,
    elapsed: Duration,
    ledger: Option<&crate::ledger::Ledger>,
) {
    let Some(key) = ctx.key.clone() else { return };
    let asked = match (&ctx.route, &ctx.requested) {
        (Some(r), _) => r.resolved.requested.clone(),
        (None, Some(m)) => m.clone(),
        (None, None) => return,
    };
    let stream = ctx.route.as_ref().is_some_and(|r| r.stream);
    let success = status < 400;
    let usage = ctx.response.usage;
    let price = ctx.attempt.as_ref().and_then(|a| a.price);
    let cost = if ctx.attempt.is_some() {
        cost(price, usage.as_ref(), success, ctx.spend.prompt_estimate)
    } else {
        0.0
    };
    let provider = ctx.provider_label().to_string();
    let (model, key_name) = (ctx.model_label(), key.name.as_str());
    if success && ctx.attempt.is_some() {
        if price.is_none() {
            metrics::UNPRICED.with_label_values(&[model]).inc();
        } else if cost > 0.0 {
            metrics::COST
                .with_label_values(&[model, provider.as_str(), key_name])
                .inc_by(cost);
        }
    }
    let started = SystemTime::now()
        .checked_sub(elapsed)
        .unwrap_or(UNIX_EPOCH)
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let tokens = usage.map_or(ctx.spend.prompt_estimate, |u| {
        u.prompt_tokens.saturating_add(u.completion_tokens)
    });
    if let Some(r) = ctx.spend.reservation.as_mut() {
        let actual = (success && ctx.attempt.is_some()).then_some(Amount {
            usd: cost,
            tokens: tokens as f64,
            requests: 1.0,
        });
        r.settle(actual, started.as_secs() as i64);
        // The shared counters (cluster), held by the limits' lease.
        if let Some(a) = ctx.limits.admission.as_mut() {
            a.settle_spend(actual);
        }
    }
    let Some(ledger) = ledger else { return };
    let u = usage.unwrap_or_default();
    ledger.push(UsageRecord {
        time_ms: started.as_millis() as i64,
        request_id: ctx.request_id.clone(),
        key: key.name.clone(),
        team: key.team.clone().unwrap_or_default(),
        model: asked,
        provider,
        target_model: ctx
            .attempt
            .as_ref()
            .map(|a| a.target_model.clone())
            .unwrap_or_default(),
        status,
        error_code: ctx.error.as_ref().map(|e| e.code.as_str().to_string()),
        attempts: ctx.attempts(),
        prompt_tokens: u.prompt_tokens,
        completion_tokens: u.completion_tokens,
        cached_tokens: u.cached_tokens.unwrap_or(0),
        cache_write_tokens: u.cache_write_tokens.unwrap_or(0),
        reasoning_tokens: u.reasoning_tokens.unwrap_or(0),
        cost_usd: cost,
        duration_ms: elapsed.as_secs_f64() * 1000.0,
        ttfb_ms: ctx.response.ttfb.map(|t| t.as_secs_f64() * 1000.0),
        stream,
    });
}
