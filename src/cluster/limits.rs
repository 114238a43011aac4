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

const WINDOW_MS: i64 = 60_000;

/// KEYS: per check, its concurrency set, tpm counter and rpm counter.
/// ARGV: now, lease id, lease expiry, token estimate, window ms, then per check its
/// concurrency, tpm and rpm maximum (-1: none).
/// Returns {0, i, kind, max, used} for a refusal by check i (kind 1 concurrency, 2 tpm,
/// 3 rpm), or {1, rpm_max, rpm_count, tpm_max, tpm_used, ...} per check once counted.
static ADMIT: Lazy<redis::Script> = Lazy::new(|| {
    redis::Script::new(
        r#"
local now = tonumber(ARGV[1])
local lease = ARGV[2]
local expiry = tonumber(ARGV[3])
local est = tonumber(ARGV[4])
local window = tonumber(ARGV[5])
local n = #KEYS / 3
local function lim(i, j) return tonumber(ARGV[6 + i * 3 + j]) end
for i = 0, n - 1 do
  local max = lim(i, 0)
  if max >= 0 then
    local k = KEYS[i * 3 + 1]
    redis.call('ZREMRANGEBYSCORE', k, '-inf', now)
    local held = redis.call('ZCARD', k)
    if held >= max then return {0, i, 1, max, held} end
  end
end
for i = 0, n - 1 do
  local max = lim(i, 1)
  if max >= 0 then
    local used = tonumber(redis.call('GET', KEYS[i * 3 + 2]) or '0')
    if used + math.min(est, max) > max then return {0, i, 2, max, used} end
  end
end
for i = 0, n - 1 do
  local max = lim(i, 2)
  if max >= 0 then
    local count = tonumber(redis.call('GET', KEYS[i * 3 + 3]) or '0')
    if count + 1 > max then return {0, i, 3, max, count} end
  end
end
local out = {1}
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
  table.insert(out, rmax)
  table.insert(out, count)
  table.insert(out, tmax)
  table.insert(out, used)
end
return out
"#,
    )
});

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
        self.local.admit(&local, estimate).await
    }
}

struct ClusterLease {
    cluster: Arc<Cluster>,
    id: String,
    sets: Vec<String>,
    /// tpm counters and what was taken from each.
    tokens: Vec<(String, i64)>,
}

impl Lease for ClusterLease {
    fn settle(&mut self, actual_tokens: Option<u64>) {
        let Some(actual) = actual_tokens else { return };
        let actual = i64::try_from(actual).unwrap_or(i64::MAX);
        let mut pipe = redis::pipe();
        let mut n = 0;
        for (key, taken) in self.tokens.drain(..) {
            let delta = actual.saturating_sub(taken);
            if delta != 0 {
                pipe.cmd("INCRBY").arg(key).arg(delta).ignore();
                n += 1;
            }
        }
        if n > 0 {
            let c = self.cluster.clone();
            self.cluster.spawn(async move {
                let mut conn = c.conn();
                let _ = c
                    .call(async move { pipe.query_async::<()>(&mut conn).await })
                    .await;
            });
        }
    }
}

impl Drop for ClusterLease {
    fn drop(&mut self) {
        if self.sets.is_empty() {
            return;
        }
        self.cluster.held.remove(&self.id);
        let mut pipe = redis::pipe();
        for set in &self.sets {
            pipe.cmd("ZREM").arg(set).arg(&self.id).ignore();
        }
        let c = self.cluster.clone();
        self.cluster.spawn(async move {
            let mut conn = c.conn();
            // Not released (Redis away): the lease expires within cluster.lease_ttl.
            let _ = c
                .call(async move { pipe.query_async::<()>(&mut conn).await })
                .await;
        });
    }
}

fn reset_left(now: i64) -> Duration {
    Duration::from_millis((WINDOW_MS - now.rem_euclid(WINDOW_MS)) as u64)
}

#[async_trait]
impl LimitBackend for ClusterBackend {
    async fn admit(
        &self,
        checks: &[Check<'_>],
        estimate: u64,
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
        let expiry = now + self.cluster.settings.lease_ttl.as_millis() as i64;
        inv.arg(now)
            .arg(&id)
            .arg(expiry)
            .arg(i64::try_from(estimate).unwrap_or(i64::MAX))
            .arg(WINDOW_MS);
        let lim = |v: Option<u64>| {
            v.map(|m| i64::try_from(m).unwrap_or(i64::MAX))
                .unwrap_or(-1)
        };
        for ch in checks {
            inv.arg(lim(ch.set.concurrency))
                .arg(lim(ch.set.tpm))
                .arg(lim(ch.set.rpm));
        }
        let mut conn = self.cluster.conn();
        let answer = self
            .cluster
            .call(async move { inv.invoke_async::<Vec<i64>>(&mut conn).await })
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
        if v.first() == Some(&0) && v.len() >= 5 {
            let i = usize::try_from(v[1])
                .unwrap_or(0)
                .min(checks.len().saturating_sub(1));
            let (max, used) = (v[3].max(0) as u64, v[4].max(0) as u64);
            let scope = checks
                .get(i)
                .map(|c| scope_note(&c.scope))
                .unwrap_or_default();
            let (limit, wait, message) = match v[2] {
                1 => (
                    "concurrency",
                    Duration::from_secs(1),
                    format!("too many requests in flight: the limit is {max} at a time{scope}"),
                ),
                2 => {
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
            return Err(Box::new(Rejection {
                limit,
                retry_after: wait.as_secs_f64().ceil().max(1.0) as u64,
                status,
                message,
            }));
        }
        for chunk in v.get(1..).unwrap_or_default().chunks(4) {
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
        if !sets.is_empty() {
            self.cluster.held.insert(id.clone(), sets.clone());
        }
        let status =
            (status.limit_requests.is_some() || status.limit_tokens.is_some()).then_some(status);
        let lease = ClusterLease {
            cluster: self.cluster.clone(),
            id,
            sets,
            tokens,
        };
        Ok(Admission::new(status, Box::new(lease)))
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
