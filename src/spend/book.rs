//! What every key and team has spent, live: loaded from the ledger's rollups at start,
//! then kept in memory. A request reserves its worst case against every budget that
//! applies before it goes out (all checked and reserved under one lock, so concurrent
//! requests cannot overshoot), and settles to its real cost when it ends; a dropped
//! reservation releases itself.
//!
//! Spend is kept per scope (key or team) × public model × UTC hour for the last 32 days
//! (enough to count any calendar period in any time zone) plus the all-time total; the
//! sums for the current day, week and month are cached and moved on with each request.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use super::budget::{bounds, Budget, BudgetSet, Period, Unit};
use crate::metrics;
use crate::store::usage::SpendRow;

/// How long hourly spend is kept: the longest calendar period plus a day of zone offset.
const KEEP_HOURS_SECS: i64 = 33 * 86_400;

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Amount {
    pub usd: f64,
    pub tokens: f64,
    pub requests: f64,
}

impl Amount {
    pub fn get(&self, unit: Unit) -> f64 {
        match unit {
            Unit::Usd => self.usd,
            Unit::Tokens => self.tokens,
            Unit::Requests => self.requests,
        }
    }

    fn add(&mut self, o: &Amount) {
        self.usd += o.usd;
        self.tokens += o.tokens;
        self.requests += o.requests;
    }

    fn sub(&mut self, o: &Amount) {
        self.usd = (self.usd - o.usd).max(0.0);
        self.tokens = (self.tokens - o.tokens).max(0.0);
        self.requests = (self.requests - o.requests).max(0.0);
    }
}

/// Whose spend: a key's or a team's. The name is shared, so a budget's status (made for
/// the response headers of every request) costs no copy of it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    Key(Arc<str>),
    Team(Arc<str>),
}

impl Scope {
    /// `key:NAME` / `team:NAME`, as metrics label it.
    pub fn label(&self) -> String {
        match self {
            Scope::Key(n) => format!("key:{n}"),
            Scope::Team(n) => format!("team:{n}"),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Scope::Key(_) => "key",
            Scope::Team(_) => "team",
        }
    }
}

#[derive(Default)]
struct ModelSpend {
    hours: BTreeMap<i64, Amount>,
    total: Amount,
    /// Day, week, month of the scope's current `Window`.
    periods: [Amount; 3],
    reserved: Amount,
}

/// The current calendar periods of a scope, in the zone they were computed for.
#[derive(Clone, PartialEq)]
struct Window {
    tz_name: String,
    periods: [(i64, i64); 3],
}

struct ScopeSpend {
    scope: Scope,
    /// Each public model's index into `models` (entries are never removed, so an index
    /// a reservation holds stays valid).
    model_index: HashMap<String, usize>,
    models: Vec<ModelSpend>,
    window: Option<Window>,
    /// `key:NAME` / `team:NAME`, made once for the metrics.
    label: String,
    /// Each budget's gauges, found once: a label lookup per request costs more than
    /// the reservation itself.
    gauges: Vec<(Arc<Budget>, BudgetGauges)>,
}

struct BudgetGauges {
    remaining: prometheus::Gauge,
    exceeded: prometheus::IntCounter,
}

/// More than this many cached budgets in one scope means reloads replaced them: start over.
const MAX_CACHED_GAUGES: usize = 64;

impl ScopeSpend {
    /// Moves the cached period sums to the periods holding `now` in `set`'s zone,
    /// recounting from the hours when they changed.
    fn align(&mut self, set: &BudgetSet, now: i64) {
        let current = self.window.as_ref().is_some_and(|w| {
            w.tz_name == set.tz_name && w.periods.iter().all(|(_, end)| now < *end)
        });
        if current {
            return;
        }
        let mut periods = [(0, 0); 3];
        for (i, p) in Period::CALENDAR.iter().enumerate() {
            periods[i] = bounds(*p, now, &set.tz).unwrap_or((now, now + 1));
        }
        let hour_floor = |s: i64| s - s.rem_euclid(3600);
        for m in &mut self.models {
            m.hours.retain(|h, _| *h >= now - KEEP_HOURS_SECS);
            for (i, (start, _)) in periods.iter().enumerate() {
                let mut sum = Amount::default();
                // An hour that holds a zone's period start counts toward that period.
                for (_, a) in m.hours.range(hour_floor(*start)..) {
                    sum.add(a);
                }
                m.periods[i] = sum;
            }
        }
        self.window = Some(Window {
            tz_name: set.tz_name.clone(),
            periods,
        });
    }

    /// Used (settled) and reserved for `budget`, over the models it counts.
    fn used(&self, budget: &Budget) -> (f64, f64) {
        let idx = Period::CALENDAR.iter().position(|p| *p == budget.period);
        let (mut used, mut reserved) = (0.0, 0.0);
        for (model, &i) in &self.model_index {
            let Some(m) = self.models.get(i) else {
                continue;
            };
            if !budget.counts(model) {
                continue;
            }
            used += match idx {
                Some(i) => m.periods[i].get(budget.unit),
                None => m.total.get(budget.unit),
            };
            reserved += m.reserved.get(budget.unit);
        }
        (used, reserved)
    }

    fn model(&mut self, model: &str) -> usize {
        if let Some(&i) = self.model_index.get(model) {
            return i;
        }
        let i = self.models.len();
        self.models.push(ModelSpend::default());
        self.model_index.insert(model.to_string(), i);
        i
    }

    fn gauges(&mut self, b: &Arc<Budget>) -> &BudgetGauges {
        let i = match self.gauges.iter().position(|(k, _)| Arc::ptr_eq(k, b)) {
            Some(i) => i,
            None => {
                if self.gauges.len() >= MAX_CACHED_GAUGES {
                    self.gauges.clear();
                }
                let labels = [self.label.as_str(), b.label.as_str()];
                let g = BudgetGauges {
                    remaining: metrics::BUDGET_REMAINING.with_label_values(&labels),
                    exceeded: metrics::BUDGET_EXCEEDED.with_label_values(&labels),
                };
                self.gauges.push((b.clone(), g));
                self.gauges.len() - 1
            }
        };
        &self.gauges[i].1
    }

    fn resets_at(&self, period: Period) -> Option<i64> {
        let i = Period::CALENDAR.iter().position(|p| *p == period)?;
        self.window.as_ref().map(|w| w.periods[i].1)
    }
}

/// A budget's state, for headers, `/v1/usage` and the management API.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetStatus {
    pub scope: Scope,
    pub budget: Arc<Budget>,
    pub used: f64,
    pub reserved: f64,
    pub remaining: f64,
    /// Unix seconds; `None` for `total`.
    pub resets_at: Option<i64>,
}

impl PartialEq for Budget {
    fn eq(&self, o: &Budget) -> bool {
        self.label == o.label && self.limit == o.limit
    }
}

/// One budget as a counter all replicas share (`cluster`): what a request asks of it.
#[derive(Debug, Clone)]
pub struct SharedBudget {
    /// Names the counter: scope, budget and period (by when it ends).
    pub id: String,
    pub limit: f64,
    pub needed: f64,
    /// What this process knows was used in the period: the counter's start when the
    /// shared store does not have it yet (a new period, a new Redis).
    pub seed: f64,
    pub status: BudgetStatus,
}

/// A request one of whose budgets cannot cover it.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub status: BudgetStatus,
    /// What the request would have reserved, in the budget's unit.
    pub needed: f64,
}

/// One request's budgets: the key's, and its team's when it has one.
pub struct Ask<'a> {
    pub key: &'a str,
    pub key_budgets: &'a BudgetSet,
    pub team: Option<(&'a str, &'a BudgetSet)>,
    /// The public model asked for.
    pub model: &'a str,
    pub worst: Amount,
    /// Unix seconds.
    pub now: i64,
    /// The part of each budget this process may spend on its own: 1, or 1 ÷ replicas
    /// while the cluster's shared counters cannot be reached (`on_error: local`).
    pub share: f64,
    /// Whether the budgets are also counted across replicas (`cluster`): only then does
    /// the reservation list them (`Reservation::shared`), which costs a string each.
    pub counted_elsewhere: bool,
}

/// Every scope's spend, found by an index so that a request holds numbers, not names.
/// Keys and teams are looked up by `&str`: a request allocates nothing to find its own.
#[derive(Default)]
struct Scopes {
    keys: HashMap<Arc<str>, usize>,
    teams: HashMap<Arc<str>, usize>,
    spend: Vec<ScopeSpend>,
}

impl Scopes {
    /// A scope's index, its spend created on first use (scopes are never removed).
    fn find(&mut self, team: bool, name: &str) -> usize {
        let index = if team {
            &mut self.teams
        } else {
            &mut self.keys
        };
        if let Some(&i) = index.get(name) {
            return i;
        }
        let name: Arc<str> = name.into();
        let scope = if team {
            Scope::Team(name.clone())
        } else {
            Scope::Key(name.clone())
        };
        let i = self.spend.len();
        index.insert(name, i);
        self.spend.push(ScopeSpend {
            label: scope.label(),
            scope,
            model_index: HashMap::new(),
            models: Vec::new(),
            window: None,
            gauges: Vec::new(),
        });
        i
    }

    fn find_scope(&mut self, scope: &Scope) -> usize {
        match scope {
            Scope::Key(n) => self.find(false, n),
            Scope::Team(n) => self.find(true, n),
        }
    }

    /// Adds one row of the ledger's spend to its key and, when it has one, its team.
    fn add(&mut self, r: &SpendRow<'_>) {
        let a = Amount {
            usd: r.cost_usd,
            tokens: r.tokens as f64,
            requests: r.requests as f64,
        };
        let teams = (!r.team.is_empty()).then_some(r.team);
        for (team, name) in std::iter::once((false, r.key)).chain(teams.map(|t| (true, t))) {
            let i = self.find(team, name);
            let s = &mut self.spend[i];
            let m = s.model(r.model);
            let m = &mut s.models[m];
            match r.hour {
                Some(h) => m.hours.entry(h).or_default().add(&a),
                None => m.total.add(&a),
            }
        }
    }
}

/// The spend the ledger holds, gathered row by row as the store streams it (hourly since
/// some time, and all-time totals), then put in the book at once: nothing is held while
/// the store is read, and the rows are never all in memory together.
#[derive(Default)]
pub struct SpendLoad {
    scopes: Scopes,
    rows: u64,
}

impl SpendLoad {
    pub fn add(&mut self, row: &SpendRow<'_>) {
        self.scopes.add(row);
        self.rows = self.rows.saturating_add(1);
    }

    /// How many rows were added.
    pub fn rows(&self) -> u64 {
        self.rows
    }
}

#[derive(Default)]
pub struct BudgetBook {
    scopes: Mutex<Scopes>,
}

impl BudgetBook {
    /// Puts the spend read from the ledger in the book, replacing what it held (it is
    /// loaded once, at start, before any request).
    pub fn install(&self, load: SpendLoad) {
        *self.lock() = load.scopes;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Scopes> {
        self.scopes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Checks every budget of `ask` and, when all can cover its worst case, reserves it.
    /// The reservation carries the tightest budget (lowest remaining fraction).
    pub fn reserve(self: &Arc<Self>, ask: &Ask) -> Result<Reservation, Box<Refusal>> {
        let mut scopes = self.lock();
        let mut tightest: Option<(f64, BudgetStatus)> = None;
        let mut shared = Vec::new();
        let mut held = [None, None];
        let all = std::iter::once((false, ask.key, ask.key_budgets))
            .chain(ask.team.map(|(t, set)| (true, t, set)));
        for (n, (team, name, set)) in all.enumerate() {
            let si = scopes.find(team, name);
            let s = &mut scopes.spend[si];
            let scope = s.scope.clone();
            held[n] = Some((si, s.model(ask.model)));
            if set.is_empty() {
                continue;
            }
            s.align(set, ask.now);
            for b in set.budgets.iter().filter(|b| b.counts(ask.model)) {
                let (used, reserved) = s.used(b);
                let remaining = (b.limit * ask.share - used - reserved).max(0.0);
                let resets_at = s.resets_at(b.period);
                let gauges = s.gauges(b);
                gauges.remaining.set(remaining);
                let status = || BudgetStatus {
                    scope: scope.clone(),
                    budget: b.clone(),
                    used,
                    reserved,
                    remaining,
                    resets_at,
                };
                let needed = ask.worst.get(b.unit);
                if ask.counted_elsewhere {
                    let kind = if team { "t" } else { "k" };
                    let period_end = resets_at.map_or("total".to_string(), |t| t.to_string());
                    shared.push(SharedBudget {
                        id: format!("{kind}{}:{name}:{}:{period_end}", name.len(), b.label),
                        limit: b.limit,
                        needed,
                        seed: used,
                        status: status(),
                    });
                }
                if needed > remaining || remaining <= 0.0 {
                    gauges.exceeded.inc();
                    return Err(Box::new(Refusal {
                        status: status(),
                        needed,
                    }));
                }
                // What the headers say is left: a request's share of a requests budget
                // is known now (1), its cost in tokens or USD only at its end.
                let left = if b.unit == Unit::Requests {
                    (remaining - needed).max(0.0)
                } else {
                    remaining
                };
                let fraction = if b.limit > 0.0 { left / b.limit } else { 0.0 };
                if tightest.as_ref().is_none_or(|(f, _)| fraction < *f) {
                    let mut st = status();
                    st.remaining = left;
                    tightest = Some((fraction, st));
                }
            }
        }
        for (si, mi) in held.iter().flatten() {
            scopes.spend[*si].models[*mi].reserved.add(&ask.worst);
        }
        Ok(Reservation {
            book: self.clone(),
            held,
            amount: ask.worst,
            settled: false,
            tightest: tightest.map(|(_, s)| s),
            shared,
        })
    }

    fn settle(&self, r: &Reservation, actual: Option<(Amount, i64)>) {
        let mut scopes = self.lock();
        for (si, mi) in r.held.iter().flatten() {
            let Some(s) = scopes.spend.get_mut(*si) else {
                continue;
            };
            let window = s.window.as_ref().map(|w| w.periods);
            let Some(m) = s.models.get_mut(*mi) else {
                continue;
            };
            m.reserved.sub(&r.amount);
            let Some((a, at)) = actual else { continue };
            let hour = at - at.rem_euclid(3600);
            m.hours.entry(hour).or_default().add(&a);
            m.total.add(&a);
            if let Some(periods) = window {
                for (i, (start, end)) in periods.iter().enumerate() {
                    if hour >= start - start.rem_euclid(3600) && at < *end {
                        m.periods[i].add(&a);
                    }
                }
            }
        }
    }

    /// Every budget of a scope, as it stands at `now`.
    pub fn status(&self, scope: &Scope, set: &BudgetSet, now: i64) -> Vec<BudgetStatus> {
        let mut scopes = self.lock();
        let i = scopes.find_scope(scope);
        let s = &mut scopes.spend[i];
        s.align(set, now);
        set.budgets
            .iter()
            .map(|b| {
                let (used, reserved) = s.used(b);
                BudgetStatus {
                    scope: scope.clone(),
                    budget: b.clone(),
                    used,
                    reserved,
                    remaining: (b.limit - used - reserved).max(0.0),
                    resets_at: s.resets_at(b.period),
                }
            })
            .collect()
    }
}

/// A request's hold on its budgets, until `settle` (or drop, which releases it).
pub struct Reservation {
    book: Arc<BudgetBook>,
    /// The key's and the team's (scope, model) entries in the book.
    held: [Option<(usize, usize)>; 2],
    amount: Amount,
    settled: bool,
    /// The budget closest to running out, for the response headers.
    pub tightest: Option<BudgetStatus>,
    /// Every budget that applied, for counting them across replicas.
    pub shared: Vec<SharedBudget>,
}

impl Reservation {
    /// Replaces the reservation with what the request really used (at unix second
    /// `at`, its start); `None`: it used nothing (it failed).
    pub fn settle(&mut self, actual: Option<Amount>, at: i64) {
        if self.settled {
            return;
        }
        self.settled = true;
        self.book.settle(self, actual.map(|a| (a, at)));
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.settled {
            self.settled = true;
            self.book.settle(self, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spend::budget::time_zone;

    fn set(budgets: Vec<Budget>) -> BudgetSet {
        BudgetSet {
            budgets: budgets.into_iter().map(Arc::new).collect(),
            ..BudgetSet::default()
        }
    }

    fn ask<'a>(set: &'a BudgetSet, model: &'a str, usd: f64, now: i64) -> Ask<'a> {
        Ask {
            key: "k",
            key_budgets: set,
            team: None,
            model,
            worst: Amount {
                usd,
                tokens: 100.0,
                requests: 1.0,
            },
            now,
            share: 1.0,
            counted_elsewhere: false,
        }
    }

    const NOW: i64 = 1_796_200_000; // 2026-12-02

    #[test]
    fn reservations_hold_until_settled_and_release_when_dropped() {
        let book = Arc::new(BudgetBook::default());
        let s = set(vec![Budget::new(Unit::Requests, 3.0, Period::Day, None)]);
        let held: Vec<_> = (0..3)
            .map(|_| book.reserve(&ask(&s, "m", 0.0, NOW)).unwrap())
            .collect();
        let e = book.reserve(&ask(&s, "m", 0.0, NOW)).err().unwrap();
        assert_eq!(e.status.reserved, 3.0);
        drop(held);
        let mut r = book.reserve(&ask(&s, "m", 0.0, NOW)).unwrap();
        r.settle(
            Some(Amount {
                requests: 1.0,
                ..Amount::default()
            }),
            NOW,
        );
        let st = book.status(&Scope::Key("k".into()), &s, NOW);
        assert_eq!(
            (st[0].used, st[0].reserved, st[0].remaining),
            (1.0, 0.0, 2.0)
        );
    }

    #[test]
    fn spend_loaded_from_the_ledger_counts_by_period_and_model() {
        let book = Arc::new(BudgetBook::default());
        let (day_start, _) = bounds(Period::Day, NOW, &jiff::tz::TimeZone::UTC).unwrap();
        let row = |model, hour, usd| SpendRow {
            key: "k",
            team: "t",
            model,
            hour,
            requests: 1,
            tokens: 10,
            cost_usd: usd,
        };
        let mut load = SpendLoad::default();
        for r in [
            row("gpt-5", Some(day_start), 2.0),
            row("gpt-5", Some(day_start - 3600), 1.0), // yesterday
            row("claude", Some(day_start + 3600), 4.0),
            row("gpt-5", None, 30.0),
        ] {
            load.add(&r);
        }
        assert_eq!(load.rows(), 4);
        book.install(load);
        let s = set(vec![
            Budget::new(Unit::Usd, 10.0, Period::Day, None),
            Budget::new(
                Unit::Usd,
                5.0,
                Period::Day,
                Some(vec![wildmatch::WildMatch::new("gpt-5*")]),
            ),
            Budget::new(Unit::Usd, 100.0, Period::Total, None),
        ]);
        let st = book.status(&Scope::Key("k".into()), &s, NOW);
        assert_eq!(st[0].used, 6.0);
        assert_eq!(st[1].used, 2.0);
        assert_eq!(st[2].used, 30.0);
        assert_eq!(st[0].resets_at, Some(day_start + 86_400));
        // Teams see their keys' spend.
        let st = book.status(&Scope::Team("t".into()), &s, NOW);
        assert_eq!(st[0].used, 6.0);
        // The tightest budget has the lowest fraction left: 4 of 10 beats 3 of 5.
        let r = book.reserve(&ask(&s, "gpt-5", 1.0, NOW)).unwrap();
        assert_eq!(r.tightest.as_ref().unwrap().budget.label, "usd/day");
        drop(r);
        // A zone change recounts the day from the hours.
        let tokyo = BudgetSet {
            tz: time_zone("Asia/Tokyo").unwrap(),
            tz_name: "Asia/Tokyo".into(),
            ..s.clone()
        };
        let st = book.status(&Scope::Key("k".into()), &tokyo, NOW);
        assert_ne!(st[0].resets_at, Some(day_start + 86_400));
    }

    #[test]
    fn a_new_period_starts_from_zero() {
        let book = Arc::new(BudgetBook::default());
        let s = set(vec![Budget::new(Unit::Usd, 1.0, Period::Day, None)]);
        let mut r = book.reserve(&ask(&s, "m", 0.5, NOW)).unwrap();
        r.settle(
            Some(Amount {
                usd: 0.9,
                ..Amount::default()
            }),
            NOW,
        );
        assert!(book.reserve(&ask(&s, "m", 0.5, NOW)).is_err());
        assert!(book.reserve(&ask(&s, "m", 0.5, NOW + 86_400)).is_ok());
    }
}
