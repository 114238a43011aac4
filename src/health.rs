//! Passive health: a target (provider × model × credential) that failed is skipped until
//! its cooldown ends; one that answers again is restored at once. Kept in a process-wide
//! registry keyed by what the target is, so a reload does not forget a failing provider.
//! Also the retry budget, which stops retries from multiplying load during an outage.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use once_cell::sync::Lazy;
use pingora_limits::rate::Rate;

/// Identifies a target across reloads: provider name and address, upstream model,
/// credential slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TargetId(u64);

impl TargetId {
    pub fn new(provider: &str, base: &str, model: &str, credential: usize) -> Self {
        let mut h = DefaultHasher::new();
        (provider, base, model, credential).hash(&mut h);
        TargetId(h.finish())
    }
}

struct Cooldowns {
    until: Mutex<HashMap<TargetId, Instant>>,
    /// Entries in `until`, so the common all-healthy case takes no lock.
    active: AtomicUsize,
}

static COOLDOWNS: Lazy<Cooldowns> = Lazy::new(|| Cooldowns {
    until: Mutex::new(HashMap::new()),
    active: AtomicUsize::new(0),
});

/// When `t` may be tried again, if it is cooling down now.
pub fn cooling_until(t: TargetId) -> Option<Instant> {
    if COOLDOWNS.active.load(Ordering::Relaxed) == 0 {
        return None;
    }
    let mut map = COOLDOWNS.until.lock().unwrap_or_else(|p| p.into_inner());
    match map.get(&t) {
        Some(until) if *until > Instant::now() => Some(*until),
        Some(_) => {
            map.remove(&t);
            COOLDOWNS.active.store(map.len(), Ordering::Relaxed);
            None
        }
        None => None,
    }
}

pub fn cool_down(t: TargetId, for_: Duration) {
    let mut map = COOLDOWNS.until.lock().unwrap_or_else(|p| p.into_inner());
    let until = Instant::now() + for_.min(MAX_PROVIDER_WAIT);
    let e = map.entry(t).or_insert(until);
    *e = (*e).max(until);
    COOLDOWNS.active.store(map.len(), Ordering::Relaxed);
}

pub fn restore(t: TargetId) {
    if COOLDOWNS.active.load(Ordering::Relaxed) == 0 {
        return;
    }
    let mut map = COOLDOWNS.until.lock().unwrap_or_else(|p| p.into_inner());
    map.remove(&t);
    COOLDOWNS.active.store(map.len(), Ordering::Relaxed);
}

/// How long a provider asked us to wait: `Retry-After` (seconds or HTTP date),
/// `retry-after-ms`, or Anthropic's `anthropic-ratelimit-*-reset` (RFC 3339).
/// Longest wait a provider's header may impose (a bogus value must not park a target).
const MAX_PROVIDER_WAIT: Duration = Duration::from_secs(3600);

pub fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    provider_wait(headers).map(|d| d.min(MAX_PROVIDER_WAIT))
}

fn secs(v: f64) -> Option<Duration> {
    (v.is_finite() && v >= 0.0)
        .then(|| Duration::from_secs_f64(v.min(MAX_PROVIDER_WAIT.as_secs_f64())))
}

fn provider_wait(headers: &http::HeaderMap) -> Option<Duration> {
    let get = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(d) = get("retry-after-ms")
        .and_then(|v| v.parse::<f64>().ok())
        .and_then(|ms| secs(ms / 1000.0))
    {
        return Some(d);
    }
    if let Some(v) = get("retry-after") {
        if let Ok(s) = v.parse::<f64>() {
            return secs(s);
        }
        if let Ok(at) = httpdate::parse_http_date(v) {
            return Some(at.duration_since(SystemTime::now()).unwrap_or_default());
        }
    }
    for n in [
        "anthropic-ratelimit-requests-reset",
        "anthropic-ratelimit-tokens-reset",
    ] {
        if let Some(v) = get(n) {
            if let Ok(t) =
                time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
            {
                let at: SystemTime = t.into();
                return Some(at.duration_since(SystemTime::now()).unwrap_or_default());
            }
        }
    }
    None
}

/// Retries allowed on top of first attempts, over a sliding 10-second window.
const BUDGET_WINDOW: Duration = Duration::from_secs(10);
static FIRST_ATTEMPTS: Lazy<Rate> = Lazy::new(|| Rate::new(BUDGET_WINDOW));
static RETRIES: Lazy<Rate> = Lazy::new(|| Rate::new(BUDGET_WINDOW));

fn sliding(rate: &Rate) -> f64 {
    rate.rate_with(&0u8, |c| {
        c.prev_samples as f64 * (1.0 - c.current_interval_fraction) + c.curr_samples as f64
    })
}

pub fn record_first_attempt() {
    FIRST_ATTEMPTS.observe(&0u8, 1);
}

/// Takes one retry from the budget if there is one: `ratio` of the recent first attempts
/// plus `min` per window, so quiet gateways can still fail over.
pub fn take_retry(ratio: f64, min: u32) -> bool {
    let allowed = sliding(&FIRST_ATTEMPTS) * ratio + f64::from(min);
    if sliding(&RETRIES) + 1.0 > allowed {
        return false;
    }
    RETRIES.observe(&0u8, 1);
    true
}

/// Active health of a provider, from the background checker. Providers without a
/// `health_check` are always healthy.
#[derive(Debug, Clone, Default)]
pub struct ProbeState {
    pub healthy: bool,
    pub successes: u32,
    pub failures: u32,
    pub last_error: Option<String>,
}

struct Probes {
    by_provider: Mutex<HashMap<u64, ProbeState>>,
    unhealthy: AtomicUsize,
}

static PROBES: Lazy<Probes> = Lazy::new(|| Probes {
    by_provider: Mutex::new(HashMap::new()),
    unhealthy: AtomicUsize::new(0),
});

/// Identifies a provider across reloads (name and endpoint).
pub fn provider_key(name: &str, endpoint: &str) -> u64 {
    let mut h = DefaultHasher::new();
    (name, endpoint).hash(&mut h);
    h.finish()
}

pub fn provider_healthy(key: u64) -> bool {
    if PROBES.unhealthy.load(Ordering::Relaxed) == 0 {
        return true;
    }
    let map = PROBES.by_provider.lock().unwrap_or_else(|p| p.into_inner());
    map.get(&key).is_none_or(|s| s.healthy)
}

pub fn probe_state(key: u64) -> Option<ProbeState> {
    let map = PROBES.by_provider.lock().unwrap_or_else(|p| p.into_inner());
    map.get(&key).cloned()
}

/// Records one probe; returns the provider's health afterwards. A provider turns
/// unhealthy after `down` failures in a row and healthy again after `up` successes.
pub fn record_probe(key: u64, ok: bool, error: Option<String>, up: u32, down: u32) -> bool {
    let mut map = PROBES.by_provider.lock().unwrap_or_else(|p| p.into_inner());
    let s = map.entry(key).or_insert_with(|| ProbeState {
        healthy: true,
        ..Default::default()
    });
    if ok {
        s.successes += 1;
        s.failures = 0;
        if !s.healthy && s.successes >= up {
            s.healthy = true;
        }
    } else {
        s.failures += 1;
        s.successes = 0;
        s.last_error = error;
        if s.healthy && s.failures >= down {
            s.healthy = false;
        }
    }
    let healthy = s.healthy;
    let n = map.values().filter(|s| !s.healthy).count();
    PROBES.unhealthy.store(n, Ordering::Relaxed);
    healthy
}

/// Per-target request statistics for `GET /v1/metrics/providers`.
#[derive(Debug, Clone, Default)]
pub struct TargetStats {
    pub requests: u64,
    pub errors: u64,
    /// The most recent latencies in ms (a ring), for the median.
    latencies: Vec<u32>,
    next: usize,
    pub last_error: Option<String>,
}

impl TargetStats {
    pub fn p50_ms(&self) -> Option<u32> {
        let mut v = self.latencies.clone();
        if v.is_empty() {
            return None;
        }
        v.sort_unstable();
        Some(v[v.len() / 2])
    }
}

const LATENCY_SAMPLES: usize = 64;
static STATS: Lazy<Mutex<HashMap<u64, TargetStats>>> = Lazy::new(|| Mutex::new(HashMap::new()));

/// Identifies a (provider, model) target for statistics, whatever credential served it.
pub fn stats_key(provider: u64, model: &str) -> u64 {
    let mut h = DefaultHasher::new();
    (provider, model).hash(&mut h);
    h.finish()
}

pub fn record_outcome(key: u64, latency: Duration, error: Option<String>) {
    let mut map = STATS.lock().unwrap_or_else(|p| p.into_inner());
    let s = map.entry(key).or_default();
    s.requests += 1;
    if let Some(e) = error {
        s.errors += 1;
        s.last_error = Some(e);
    }
    let ms = latency.as_millis().min(u128::from(u32::MAX)) as u32;
    if s.latencies.len() < LATENCY_SAMPLES {
        s.latencies.push(ms);
    } else {
        let i = s.next % LATENCY_SAMPLES;
        s.latencies[i] = ms;
    }
    s.next += 1;
}

pub fn target_stats(key: u64) -> TargetStats {
    let map = STATS.lock().unwrap_or_else(|p| p.into_inner());
    map.get(&key).cloned().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cooldown_expires_and_restore_clears() {
        let t = TargetId::new("unit-p", "http://x", "m", 0);
        assert!(cooling_until(t).is_none());
        cool_down(t, Duration::from_millis(50));
        assert!(cooling_until(t).is_some());
        std::thread::sleep(Duration::from_millis(60));
        assert!(cooling_until(t).is_none());
        cool_down(t, Duration::from_secs(30));
        restore(t);
        assert!(cooling_until(t).is_none());
    }

    #[test]
    fn probes_flip_health_at_the_thresholds() {
        let k = provider_key("unit-probe", "http://x");
        assert!(provider_healthy(k));
        assert!(record_probe(k, false, Some("500".into()), 2, 2));
        assert!(!record_probe(k, false, Some("500".into()), 2, 2));
        assert!(!provider_healthy(k));
        assert!(!record_probe(k, true, None, 2, 2));
        assert!(record_probe(k, true, None, 2, 2));
        assert!(provider_healthy(k));
    }

    #[test]
    fn retry_after_forms() {
        let mut h = http::HeaderMap::new();
        h.insert("retry-after", "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert("retry-after-ms", "1500".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_millis(1500)));
        let mut h = http::HeaderMap::new();
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
        h.insert("retry-after", later.parse().unwrap());
        let d = retry_after(&h).unwrap();
        assert!(
            d > Duration::from_secs(110) && d <= Duration::from_secs(120),
            "{d:?}"
        );
        assert_eq!(retry_after(&http::HeaderMap::new()), None);
        for bogus in ["inf", "1e400", "-5", "NaN"] {
            let mut h = http::HeaderMap::new();
            h.insert("retry-after-ms", bogus.parse().unwrap());
            assert!(
                retry_after(&h).is_none_or(|d| d <= MAX_PROVIDER_WAIT),
                "{bogus}"
            );
        }
        let mut h = http::HeaderMap::new();
        h.insert("retry-after", "99999999999".parse().unwrap());
        assert_eq!(retry_after(&h), Some(MAX_PROVIDER_WAIT));
    }
}
