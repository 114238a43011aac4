//! Validation of what spend control reads: `store`, `pricing`, `teams` and the keys'
//! `budgets`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;

use super::raw::{RawBudget, RawStore, RawTeam};
use super::validate::Ctx;
use super::{StoreSettings, Team};
use crate::auth::KeyTable;
use crate::ledger::LedgerSettings;
use crate::routing::ModelTable;
use crate::spend::budget::{time_zone, Budget, BudgetSet, Period, Unit};
use crate::spend::{Price, PriceTable};
use crate::store::StoreUrl;

/// How long the gateway remembers where a file, batch, stored response or operation lives.
const DEFAULT_OBJECT_RETENTION: Duration = Duration::from_secs(30 * 86_400);

pub(super) fn store(cx: &mut Ctx, raw: RawStore) -> StoreSettings {
    let defaults = LedgerSettings::default();
    let url = raw
        .url
        .map(|u| u.trim().to_string())
        .unwrap_or_else(|| "sqlite://modelgate.db".to_string());
    if let Err(e) = StoreUrl::parse(&url, Path::new("/")) {
        cx.err("store.url", e);
    }
    let flush_interval = raw.flush_interval.unwrap_or(defaults.flush_interval);
    if flush_interval < Duration::from_millis(10) || flush_interval > Duration::from_secs(60) {
        cx.err("store.flush_interval", "must be between 10ms and 60s");
    }
    let buffer = raw.buffer.unwrap_or(defaults.buffer);
    if !(1000..=10_000_000).contains(&buffer) {
        cx.err("store.buffer", "must be between 1000 and 10000000 records");
    }
    let records = raw.retention.records.unwrap_or(defaults.retention_records);
    let rollups = raw.retention.rollups.unwrap_or(defaults.retention_rollups);
    for (name, d) in [("records", records), ("rollups", rollups)] {
        if d < Duration::from_secs(86_400) {
            cx.err(format!("store.retention.{name}"), "must be at least 1d");
        }
    }
    let objects = raw.retention.objects.unwrap_or(DEFAULT_OBJECT_RETENTION);
    if objects < Duration::from_secs(3600) {
        cx.err("store.retention.objects", "must be at least 1h");
    }
    StoreSettings {
        url,
        object_retention: objects,
        ledger: LedgerSettings {
            flush_interval,
            buffer,
            retention_records: records,
            retention_rollups: rollups,
        },
    }
}

pub(super) fn prices(cx: &mut Ctx, raw: &IndexMap<String, Price>) -> Arc<PriceTable> {
    match PriceTable::build(raw) {
        Ok(t) => Arc::new(t),
        Err(errors) => {
            for e in errors {
                let (path, msg) = e.split_once(": ").unwrap_or(("pricing", e.as_str()));
                cx.err(path, msg);
            }
            Arc::new(PriceTable::default())
        }
    }
}

/// `budgets` and `budget_timezone` of a key or team at `base`.
pub(super) fn budget_set(
    cx: &mut Ctx,
    base: &str,
    raw: &[RawBudget],
    tz: Option<&str>,
) -> BudgetSet {
    let mut set = BudgetSet::default();
    if let Some(name) = tz {
        match time_zone(name) {
            Ok(z) => {
                set.tz = z;
                set.tz_name = name.trim().to_string();
            }
            Err(e) => cx.err(format!("{base}.budget_timezone"), e),
        }
    }
    for (i, b) in raw.iter().enumerate() {
        let path = format!("{base}.budgets[{i}]");
        let amounts = [
            (Unit::Usd, b.usd),
            (Unit::Tokens, b.tokens.map(|t| t as f64)),
            (Unit::Requests, b.requests.map(|r| r as f64)),
        ];
        let given: Vec<(Unit, f64)> = amounts
            .iter()
            .filter_map(|(u, v)| v.map(|v| (*u, v)))
            .collect();
        let (unit, limit) = match given.as_slice() {
            [one] => *one,
            [] => {
                cx.err(&path, "needs one of usd, tokens or requests");
                continue;
            }
            _ => {
                cx.err(
                    &path,
                    "set only one of usd, tokens or requests (use one budget for each)",
                );
                continue;
            }
        };
        if !limit.is_finite() || limit <= 0.0 {
            cx.err(format!("{path}.{}", unit.as_str()), "must be more than 0");
            continue;
        }
        let period = match b.period.as_deref().map(Period::parse) {
            Some(Some(p)) => p,
            Some(None) | None => {
                cx.err(
                    format!("{path}.period"),
                    "must be day, week, month or total",
                );
                continue;
            }
        };
        let models = b.models.as_ref().map(|ms| {
            ms.iter()
                .map(|m| wildmatch::WildMatch::new(m.trim()))
                .collect::<Vec<_>>()
        });
        if b.models
            .as_ref()
            .is_some_and(|m| m.is_empty() || m.iter().any(|p| p.trim().is_empty()))
        {
            cx.err(
                format!("{path}.models"),
                "must list public model names or globs",
            );
            continue;
        }
        set.budgets
            .push(Arc::new(Budget::new(unit, limit, period, models)));
    }
    set
}

pub(super) fn teams(cx: &mut Ctx, raw: IndexMap<String, RawTeam>) -> IndexMap<String, Arc<Team>> {
    raw.into_iter()
        .map(|(name, t)| {
            let base = format!("teams.{name}");
            let budgets = budget_set(cx, &base, &t.budgets, t.budget_timezone.as_deref());
            let team = Team {
                name: name.clone(),
                budgets,
            };
            (name, Arc::new(team))
        })
        .collect()
}

/// A key's `team` must name a team when teams are configured; a team nobody defines
/// has no budgets, which is almost always a typo.
pub(super) fn check_key_teams(cx: &mut Ctx, keys: &KeyTable, teams: &IndexMap<String, Arc<Team>>) {
    for (i, k) in keys.iter().enumerate() {
        if let Some(t) = &k.team {
            if !teams.contains_key(t) {
                cx.warnings.push(format!(
                    "keys[{i}].team: {t:?} is not under teams:, so it has no budgets (its spend is still recorded under that team)"
                ));
            }
        }
    }
}

/// `-t` and every load say which targets have no price (they cost 0).
pub(super) fn warn_unpriced(cx: &mut Ctx, models: &ModelTable, prices: &PriceTable) {
    let mut seen = std::collections::HashSet::new();
    for route in models.routes() {
        for t in &route.targets {
            if t.model.is_none() && route.is_pattern {
                continue; // a wildcard's model names are the client's
            }
            let model = t.model.as_deref().unwrap_or(route.name.as_str());
            let provider = t.provider.name.as_str();
            let priced = t.price.is_some() || prices.lookup(provider, model).is_some();
            if !priced && seen.insert((provider, model)) {
                cx.warnings.push(format!(
                    "no price for {provider}/{model} (model {:?}): its requests cost 0; add it under pricing:",
                    route.name
                ));
            }
        }
    }
}
