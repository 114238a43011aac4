//! rpm, tpm and concurrency counted once for all replicas: one Lua script per request
//! checks every applicable counter and takes from all of them or from none. Windows are
//! fixed minutes on the Redis clock's caller (UTC minute boundaries). Concurrency slots
//! are leases in a sorted set scored by their expiry: the replica holding them extends
//! them every third of `cluster.lease_ttl` (30 s), so the slots of a replica that died
//! come back within it.
//!
//! While Redis does not answer: `on_error: local` counts here with every limit divided
//! by `cluster.replicas`; `closed` refuses with 503 `limits_unavailable`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use once_cell::sync::Lazy;

use super::{now_ms, Cluster};
use crate::config::OnError;
use crate::limits::{
    scope_note, Admission, Check, Lease, LimitBackend, LimitSet, LocalBackend, RateStatus,
    Rejection, Scope,
};
use crate::metrics;
use crate::spend::{Amount, BudgetStatus, Refusal, SharedBudget, Unit};

const WINDOW_MS: i64 = 60_000;

/// KEYS: per check, its concurrency set, tpm counter and rpm counter; then per budget,
/// its hash (`used`, `reserved`, `r:LEASE` per reservation) and its set of leases.
/// ARGV: now, lease id, lease expiry, token estimate, window ms, checks, budgets, then per
/// check its concurrency, tpm and rpm maximum (-1: none), then per budget its limit, what
/// this request needs, the seed (what this replica knows was used) and its time to live
/// in ms (0: none, a `total` budget).
/// Returns (as strings) {0, i, kind, max, used, reserved} for a refusal by check or budget
/// i (kind 1 concurrency, 2 tpm, 3 rpm, 4 budget), or {1, then rpm_max, rpm_count,
/// tpm_max, tpm_used per check, then used, reserved per budget} once all is taken.
static ADMIT: Lazy<redis::Script> = Lazy::new(|| {
    redis::Script::new(
        r#"
local now = tonumber(ARGV[1])
local lease = ARGV[2]
local expiry = tonumber(ARGV[3])
local est = tonumber(ARGV[4])
local window = tonumber(ARGV[5])
local n = tonumber(ARGV[6])
local m = tonumber(ARGV[7])
local function lim(i, j) return tonumber(ARGV[8 + i * 3 + j]) end
local function barg(j, k) return ARGV[8 + n * 3 + j * 4 + k] end
local function refuse(i, kind, max, used, res)
  return {'0', tostring(i), tostring(kind), tostring(max), tostring(used), tostring(res or 0)}
end
for i = 0, n - 1 do
  local max = lim(i, 0)
  if max >= 0 then
    local k = KEYS[i * 3 + 1]
    redis.call('ZREMRANGEBYSCORE', k, '-inf', now)
    local held = redis.call('ZCARD', k)
    if held >= max then return refuse(i, 1, max, held) end
  end
end
for i = 0, n - 1 do
  local max = lim(i, 1)
  if max >= 0 then
    local used = tonumber(redis.call('GET', KEYS[i * 3 + 2]) or '0')
    if used + math.min(est, max) > max then return refuse(i, 2, max, used) end
  end
end
for i = 0, n - 1 do
  local max = lim(i, 2)
  if max >= 0 then
    local count = tonumber(redis.call('GET', KEYS[i * 3 + 3]) or '0')
    if count + 1 > max then return refuse(i, 3, max, count) end
  end
end
local bused, bres = {}, {}
for j = 0, m - 1 do
  local h, z = KEYS[n * 3 + j * 2 + 1], KEYS[n * 3 + j * 2 + 2]
  local limit, needed, ttl = tonumber(barg(j, 0)), tonumber(barg(j, 1)), tonumber(barg(j, 3))
  if redis.call('HSETNX', h, 'used', barg(j, 2)) == 1 and ttl > 0 then
    redis.call('PEXPIRE', h, ttl)
  end
  local dead = redis.call('ZRANGEBYSCORE', z, '-inf', now)
  for _, id in ipairs(dead) do
    local amt = redis.call('HGET', h, 'r:' .. id)
    if amt then
      redis.call('HINCRBYFLOAT', h, 'reserved', -tonumber(amt))
      redis.call('HDEL', h, 'r:' .. id)
    end
  end
  if #dead > 0 then redis.call('ZREMRANGEBYSCORE', z, '-inf', now) end
  local used = tonumber(redis.call('HGET', h, 'used') or '0')
  local res = math.max(0, tonumber(redis.call('HGET', h, 'reserved') or '0'))
  local left = limit - used - res
  if needed > left or left <= 0 then return refuse(j, 4, limit, used, res) end
  bused[j], bres[j] = used, res
end
local out = {'1'}
for i = 0, n - 1 do
  local cmax, tmax, rmax = lim(i, 0), lim(i, 1), lim(i, 2)
  if cmax >= 0 then
    redis.call('ZADD', KEYS[i * 3 + 1], expiry, lease)
    redis.call('PEXPIRE', KEYS[i * 3 + 1], 60000)
  end
  local used, count = 0, 0
  if tmax >= 0 then
    used = redis.call('INCRBY', KEYS[i * 3 + 2], math.min(est, tmax))
    redis.call('PEXPIRE', KEYS[i * 3 + 2], window * 2)
  end
  if rmax >= 0 then
    count = redis.call('INCR', KEYS[i * 3 + 3])
    redis.call('PEXPIRE', KEYS[i * 3 + 3], window * 2)
  end
  table.insert(out, tostring(rmax))
  table.insert(out, tostring(count))
  table.insert(out, tostring(tmax))
  table.insert(out, tostring(used))
end
for j = 0, m - 1 do
  local h, z = KEYS[n * 3 + j * 2 + 1], KEYS[n * 3 + j * 2 + 2]
  local needed, ttl = barg(j, 1), tonumber(barg(j, 3))
  redis.call('HINCRBYFLOAT', h, 'reserved', needed)
  redis.call('HSET', h, 'r:' .. lease, needed)
  redis.call('ZADD', z, expiry, lease)
  if ttl > 0 then
    redis.call('PEXPIRE', h, ttl)
    redis.call('PEXPIRE', z, ttl)
  end
  table.insert(out, tostring(bused[j]))
  table.insert(out, tostring(bres[j]))
end
return out
"#,
    )
});

/// KEYS: per budget its hash and lease set; ARGV: the lease id, then per budget what the
/// request cost in its unit ("" when it cost nothing: a release).
const SETTLE_LUA: &str = r#"
local lease = ARGV[1]
for j = 0, #KEYS / 2 - 1 do
  local h, z = KEYS[j * 2 + 1], KEYS[j * 2 + 2]
  local amt = redis.call('HGET', h, 'r:' .. lease)
  if amt then
    redis.call('HDEL', h, 'r:' .. lease)
    redis.call('HINCRBYFLOAT', h, 'reserved', -tonumber(amt))
    redis.call('ZREM', z, lease)
  end
  local actual = ARGV[j + 2]
  if actual ~= '' then redis.call('HINCRBYFLOAT', h, 'used', actual) end
end
return 1
"#;

/// The name of a limit scope in Redis keys; lengths make it unambiguous whatever the
/// names contain.
fn scope_name(scope: &Scope) -> String {
    match scope {
        Scope::Key(k) => format!("k{}:{k}", k.len()),
        Scope::KeyModels(k, g) => format!("g{}:{k}:{g}", k.len()),
        Scope::Model(m) => format!("m{}:{m}", m.len()),
    }
}

pub fn start_refresher(cluster: &Arc<Cluster>) {
    let c = cluster.clone();
    cluster.spawn(async move {
        let ttl = c.settings.lease_ttl;
        loop {
            tokio::time::sleep(ttl / 3).await;
            let expiry = now_ms() + ttl.as_millis() as i64;
            let mut pipe = redis::pipe();
            let mut n = 0;
            for e in c.held.iter() {
                for set in e.value() {
                    pipe.cmd("ZADD")
                        .arg(set)
                        .arg("XX")
                        .arg(expiry)
                        .arg(e.key())
                        .ignore();
                    n += 1;
                }
            }
            if n > 0 {
                let mut conn = c.conn();
                let _ = c
                    .call(async move { pipe.query_async::<()>(&mut conn).await })
                    .await;
            }
        }
    });
}

pub struct ClusterBackend {
    cluster: Arc<Cluster>,
    /// Counts while Redis does not answer (`on_error: local`).
    local: LocalBackend,
}

impl ClusterBackend {
    pub fn new(cluster: Arc<Cluster>) -> Self {
        ClusterBackend {
            cluster,
            local: LocalBackend::default(),
        }
    }

    async fn degraded(
        &self,
        checks: &[Check<'_>],
        estimate: u64,
    ) -> Result<Admission, Box<Rejection>> {
        if self.cluster.settings.on_error == OnError::Closed {
            return Err(Box::new(Rejection {
                limit: "unavailable",
                retry_after: 1,
                status: RateStatus::default(),
                message: "the shared limits cannot be checked (Redis does not answer) and cluster.on_error is closed".into(),
                budget: None,
            }));
        }
        let n = u64::from(self.cluster.settings.replicas.max(1));
        let share = |v: Option<u64>| v.map(|m| m.div_ceil(n).max(1));
        let sets: Vec<LimitSet> = checks
            .iter()
            .map(|c| LimitSet {
                rpm: share(c.set.rpm),
                tpm: share(c.set.tpm),
                concurrency: share(c.set.concurrency),
            })
            .collect();
        let local: Vec<Check<'_>> = checks
            .iter()
            .zip(&sets)
            .map(|(c, set)| Check {
                scope: c.scope.clone(),
                set,
            })
            .collect();
        // Budgets were checked by this replica's own book (it knows its own spend).
        self.local.admit(&local, estimate, &[]).await
    }
}

struct ClusterLease {
    cluster: Arc<Cluster>,
    id: String,
    /// Concurrency sets holding this lease.
    sets: Vec<String>,
    /// tpm counters and what was taken from each.
    tokens: Vec<(String, i64)>,
    /// The real token count, once known.
    actual_tokens: Option<u64>,
    /// Shared budgets reserved against: their hash, lease set and unit.
    budgets: Vec<(String, String, Unit)>,
    /// What the request cost, once known (`None` at the end: it cost nothing).
    actual_spend: Option<Amount>,
}

impl Lease for ClusterLease {
    fn settle(&mut self, actual_tokens: Option<u64>) {
        self.actual_tokens = actual_tokens;
    }

    fn settle_spend(&mut self, actual: Option<Amount>) {
        self.actual_spend = actual;
    }
}

impl Drop for ClusterLease {
    /// Everything the request still owes Redis, in one round trip after its response:
    /// the token estimate corrected, the budget reservations replaced by the real cost
    /// (or released), the concurrency slots given back. Not delivered (Redis away): the
    /// leases expire within `cluster.lease_ttl`.
    fn drop(&mut self) {
        self.cluster.held.remove(&self.id);
        let mut pipe = redis::pipe();
        let mut n = 0;
        if let Some(actual) = self.actual_tokens {
            let actual = i64::try_from(actual).unwrap_or(i64::MAX);
            for (key, taken) in &self.tokens {
                let delta = actual.saturating_sub(*taken);
                if delta != 0 {
                    pipe.cmd("INCRBY").arg(key).arg(delta).ignore();
                    n += 1;
                }
            }
        }
        if !self.budgets.is_empty() {
            // EVAL, not EVALSHA: a Redis that restarted has no script cache, and this
            // pipeline cannot be replayed (its other commands are not idempotent).
            let mut cmd = redis::cmd("EVAL");
            cmd.arg(SETTLE_LUA).arg(self.budgets.len() * 2);
            for (hash, leases, _) in &self.budgets {
                cmd.arg(hash).arg(leases);
            }
            cmd.arg(&self.id);
            for (_, _, unit) in &self.budgets {
                cmd.arg(
                    self.actual_spend
                        .map(|a| a.get(*unit).to_string())
                        .unwrap_or_default(),
                );
            }
            pipe.add_command(cmd).ignore();
            n += 1;
        }
        for set in &self.sets {
            pipe.cmd("ZREM").arg(set).arg(&self.id).ignore();
            n += 1;
        }
        if n == 0 {
            return;
        }
        let c = self.cluster.clone();
        self.cluster.spawn_here(async move {
            let mut conn = c.conn();
            let _ = c
                .call(async move { pipe.query_async::<()>(&mut conn).await })
                .await;
        });
    }
}

fn reset_left(now: i64) -> Duration {
    Duration::from_millis((WINDOW_MS - now.rem_euclid(WINDOW_MS)) as u64)
}

/// What a budget leaves after the request, for the headers: a request's share of a
/// requests budget is known now (1), its cost in tokens or USD only at its end.
fn budget_left(b: &SharedBudget, used: f64, reserved_before: f64) -> f64 {
    let left = (b.limit - used - reserved_before).max(0.0);
    if b.status.budget.unit == Unit::Requests {
        (left - b.needed).max(0.0)
    } else {
        left
    }
}

fn with_numbers(b: &SharedBudget, used: f64, reserved: f64, remaining: f64) -> BudgetStatus {
    let mut st = b.status.clone();
    st.used = used;
    st.reserved = reserved;
    st.remaining = remaining;
    st
}

/// A number the script sent as text (Lua numbers as strings keep their fractions).
fn num(v: &[String], i: usize) -> f64 {
    v.get(i).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0)
}

#[async_trait]
impl LimitBackend for ClusterBackend {
    fn counts_budgets(&self) -> bool {
        true
    }

    // Long on purpose: the script's keys and arguments, then its answer, in one place.
    async fn admit(
        &self,
        checks: &[Check<'_>],
        estimate: u64,
        budgets: &[SharedBudget],
    ) -> Result<Admission, Box<Rejection>> {
        if !self.cluster.is_up() {
            return self.degraded(checks, estimate).await;
        }
        let now = now_ms();
        let window = now.div_euclid(WINDOW_MS);
        let id = self.cluster.lease_id();
        let mut inv = ADMIT.prepare_invoke();
        let mut sets = Vec::new();
        let mut tokens = Vec::new();
        for ch in checks {
            let name = scope_name(&ch.scope);
            let conc = self.cluster.key(&format!("conc:{name}"));
            let tpm = self.cluster.key(&format!("tpm:{name}:{window}"));
            let rpm = self.cluster.key(&format!("rpm:{name}:{window}"));
            if ch.set.concurrency.is_some() {
                sets.push(conc.clone());
            }
            if let Some(max) = ch.set.tpm {
                tokens.push((
                    tpm.clone(),
                    i64::try_from(estimate.min(max)).unwrap_or(i64::MAX),
                ));
            }
            inv.key(conc).key(tpm).key(rpm);
        }
        let mut held_budgets = Vec::new();
        for b in budgets {
            let hash = self.cluster.key(&format!("budget:{}", b.id));
            let leases = format!("{hash}:leases");
            inv.key(&hash).key(&leases);
            held_budgets.push((hash, leases, b.status.budget.unit));
        }
        let expiry = now + self.cluster.settings.lease_ttl.as_millis() as i64;
        inv.arg(now)
            .arg(&id)
            .arg(expiry)
            .arg(i64::try_from(estimate).unwrap_or(i64::MAX))
            .arg(WINDOW_MS)
            .arg(checks.len())
            .arg(budgets.len());
        let lim = |v: Option<u64>| {
            v.map(|m| i64::try_from(m).unwrap_or(i64::MAX))
                .unwrap_or(-1)
        };
        for ch in checks {
            inv.arg(lim(ch.set.concurrency))
                .arg(lim(ch.set.tpm))
                .arg(lim(ch.set.rpm));
        }
        for b in budgets {
            // A period's counter lives a day past its end; a total one for good.
            let ttl_ms = b.status.resets_at.map_or(0, |end| {
                (end.saturating_sub(now / 1000) + 86_400).max(1) * 1000
            });
            inv.arg(b.limit.to_string())
                .arg(b.needed.to_string())
                .arg(b.seed.to_string())
                .arg(ttl_ms);
        }
        let mut conn = self.cluster.conn();
        let answer = self
            .cluster
            .call(async move { inv.invoke_async::<Vec<String>>(&mut conn).await })
            .await;
        let Ok(v) = answer else {
            return self.degraded(checks, estimate).await;
        };
        let reset = reset_left(now);
        let mut status = RateStatus {
            remaining_requests: u64::MAX,
            remaining_tokens: u64::MAX,
            ..Default::default()
        };
        if v.first().map(String::as_str) == Some("0") && v.len() >= 6 {
            return Err(self.refusal(&v, checks, budgets, estimate, reset));
        }
        let per_check = checks.len() * 4;
        let numbers: Vec<i64> = v
            .iter()
            .skip(1)
            .take(per_check)
            .map(|s| s.parse::<f64>().map(|f| f as i64).unwrap_or(0))
            .collect();
        for chunk in numbers.chunks(4) {
            if let [rmax, count, tmax, used] = *chunk {
                if rmax >= 0 {
                    let left = (rmax as u64).saturating_sub(count.max(0) as u64);
                    if left < status.remaining_requests {
                        status.limit_requests = Some(rmax as u64);
                        status.remaining_requests = left;
                        status.reset_requests = reset;
                    }
                }
                if tmax >= 0 {
                    let left = (tmax as u64).saturating_sub(used.max(0) as u64);
                    if left < status.remaining_tokens {
                        status.limit_tokens = Some(tmax as u64);
                        status.remaining_tokens = left;
                        status.reset_tokens = reset;
                    }
                }
            }
        }
        // The tightest shared budget, as the headers show it.
        let mut tightest: Option<(f64, BudgetStatus)> = None;
        for (j, b) in budgets.iter().enumerate() {
            let (used, reserved) = (
                num(&v, 1 + per_check + j * 2),
                num(&v, 2 + per_check + j * 2),
            );
            let left = budget_left(b, used, reserved);
            let fraction = if b.limit > 0.0 { left / b.limit } else { 0.0 };
            if tightest.as_ref().is_none_or(|(f, _)| fraction < *f) {
                tightest = Some((fraction, with_numbers(b, used, reserved + b.needed, left)));
            }
        }
        let mut held_sets = sets.clone();
        held_sets.extend(held_budgets.iter().map(|(_, leases, _)| leases.clone()));
        if !held_sets.is_empty() {
            self.cluster.held.insert(id.clone(), held_sets);
        }
        let status =
            (status.limit_requests.is_some() || status.limit_tokens.is_some()).then_some(status);
        let lease = ClusterLease {
            cluster: self.cluster.clone(),
            id,
            sets,
            tokens,
            actual_tokens: None,
            budgets: held_budgets,
            actual_spend: None,
        };
        let mut admission = Admission::new(status, Box::new(lease));
        admission.budget = tightest.map(|(_, s)| s);
        Ok(admission)
    }
}

impl ClusterBackend {
    /// The script's refusal as the error the client gets.
    fn refusal(
        &self,
        v: &[String],
        checks: &[Check<'_>],
        budgets: &[SharedBudget],
        estimate: u64,
        reset: Duration,
    ) -> Box<Rejection> {
        let i = v[1].parse::<usize>().unwrap_or(0);
        let (max, used, reserved) = (num(v, 3), num(v, 4), num(v, 5));
        let mut status = RateStatus::default();
        if v[2] == "4" {
            let Some(b) = budgets.get(i).or(budgets.first()) else {
                return Box::new(Rejection {
                    limit: "budget",
                    retry_after: 1,
                    status,
                    message: "a shared budget cannot cover this request".into(),
                    budget: None,
                });
            };
            metrics::BUDGET_EXCEEDED
                .with_label_values(&[
                    b.status.scope.label().as_str(),
                    b.status.budget.label.as_str(),
                ])
                .inc();
            let remaining = (max - used - reserved).max(0.0);
            let refusal = Refusal {
                status: with_numbers(b, used, reserved, remaining),
                needed: b.needed,
            };
            return Box::new(Rejection {
                limit: "budget",
                retry_after: 1,
                status,
                message: String::new(),
                budget: Some(Box::new(refusal)),
            });
        }
        let (max, used) = (max.max(0.0) as u64, used.max(0.0) as u64);
        let scope = checks
            .get(i)
            .map(|c| scope_note(&c.scope))
            .unwrap_or_default();
        let (limit, wait, message) = match v[2].as_str() {
            "1" => (
                "concurrency",
                Duration::from_secs(1),
                format!("too many requests in flight: the limit is {max} at a time{scope}"),
            ),
            "2" => {
                status.limit_tokens = Some(max);
                status.remaining_tokens = max.saturating_sub(used);
                status.reset_tokens = reset;
                (
                    "tpm",
                    reset,
                    format!("token rate limit reached: {used} of {max} tokens per minute used and this request needs about {estimate}{scope}"),
                )
            }
            _ => {
                status.limit_requests = Some(max);
                status.remaining_requests = 0;
                status.reset_requests = reset;
                (
                    "rpm",
                    reset,
                    format!("rate limit reached: {max} requests per minute{scope}"),
                )
            }
        };
        Box::new(Rejection {
            limit,
            retry_after: wait.as_secs_f64().ceil().max(1.0) as u64,
            status,
            message,
            budget: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_names_cannot_collide() {
        let a = scope_name(&Scope::KeyModels("a:b".into(), "c".into()));
        let b = scope_name(&Scope::KeyModels("a".into(), "b:c".into()));
        assert_ne!(a, b);
        assert_ne!(
            scope_name(&Scope::Key("x".into())),
            scope_name(&Scope::Model("x".into()))
        );
    }

    #[test]
    fn windows_reset_on_the_minute() {
        assert_eq!(reset_left(60_000 * 5), Duration::from_secs(60));
        assert_eq!(reset_left(60_000 * 5 + 59_500), Duration::from_millis(500));
    }
}
