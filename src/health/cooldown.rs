//! Passive health: a target that failed is skipped until its cooldown ends, and one that
//! answers again is restored at once. The wait honours what the provider asked for
//! (`Retry-After`, `retry-after-ms`, Anthropic's reset headers), capped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use super::TargetId;

/// What this process saw happen to a target, for other replicas (`cluster`).
pub enum CooldownEvent {
    Cooled { target: TargetId, for_: Duration },
    Restored { target: TargetId },
}

type Observer = Box<dyn Fn(CooldownEvent) + Send + Sync>;

/// Cooldowns by target. Times are passed in, so the rules are testable without sleeping.
#[derive(Default)]
pub struct Cooldowns {
    /// Until when each target is skipped, and whether that is a probe's window (which a
    /// failure replaces) rather than a cooldown (which only a longer one extends).
    until: Mutex<HashMap<TargetId, (Instant, bool)>>,
    /// Entries in `until`, so the common all-healthy case takes no lock.
    active: AtomicUsize,
    /// Told of every cooldown set and lifted here (not of those applied from others).
    observer: OnceLock<Observer>,
}

impl Cooldowns {
    /// When `t` may be tried again, if it is cooling down at `now`. Half-open: the first
    /// caller after a cooldown ends gets `None` and is the probe; everyone else keeps
    /// skipping the target for `PROBE_WINDOW`, until the probe restores it (it answered)
    /// or cools it down again (it failed). A probe that never reports opens the way for
    /// the next one when its window ends.
    pub fn until(&self, t: TargetId, now: Instant) -> Option<Instant> {
        if self.active.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let probing = {
            let mut map = self.until.lock().unwrap_or_else(|p| p.into_inner());
            match map.get_mut(&t) {
                Some((until, _)) if *until > now => return Some(*until),
                Some(entry) => {
                    *entry = (now + PROBE_WINDOW, true);
                    true
                }
                None => false,
            }
        };
        if probing {
            if let Some(o) = self.observer.get() {
                // Other replicas hold off while this one probes.
                o(CooldownEvent::Cooled {
                    target: t,
                    for_: PROBE_WINDOW,
                });
            }
        }
        None
    }

    /// Like `until`, for showing: never takes the probe.
    pub fn peek(&self, t: TargetId, now: Instant) -> Option<Instant> {
        if self.active.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let map = self.until.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&t).map(|(u, _)| *u).filter(|u| *u > now)
    }

    /// Cools `t` down for `for_` from `now` (capped; a longer cooldown already set stays).
    pub fn cool_down(&self, t: TargetId, for_: Duration, now: Instant) {
        let for_ = for_.min(MAX_PROVIDER_WAIT);
        {
            let mut map = self.until.lock().unwrap_or_else(|p| p.into_inner());
            let until = now + for_;
            let e = map.entry(t).or_insert((until, false));
            // A failed probe's cooldown replaces its window; a cooldown only grows.
            e.0 = if e.1 { until } else { e.0.max(until) };
            e.1 = false;
            self.active.store(map.len(), Ordering::Relaxed);
        }
        if let Some(o) = self.observer.get() {
            o(CooldownEvent::Cooled { target: t, for_ });
        }
    }

    pub fn set_observer(&self, o: Observer) {
        let _ = self.observer.set(o);
    }

    /// What another replica saw: `Some(until)` cools `t` down (a longer cooldown already
    /// set stays), `None` restores it. Not told to the observer.
    pub fn apply_remote(&self, t: TargetId, until: Option<Instant>) {
        let mut map = self.until.lock().unwrap_or_else(|p| p.into_inner());
        match until {
            Some(u) => {
                let u = u.min(Instant::now() + MAX_PROVIDER_WAIT);
                let e = map.entry(t).or_insert((u, false));
                e.0 = if e.1 { u } else { e.0.max(u) };
                e.1 = false;
            }
            None => {
                map.remove(&t);
            }
        }
        self.active.store(map.len(), Ordering::Relaxed);
    }

    /// Ends every cooldown of `provider`'s targets (its quota was reset upstream);
    /// answers how many there were.
    pub fn clear_provider(&self, provider: super::ProviderId) -> usize {
        self.clear_provider_quietly(provider)
    }

    /// `clear_provider` as another replica asked for it.
    pub fn clear_provider_quietly(&self, provider: super::ProviderId) -> usize {
        let mut map = self.until.lock().unwrap_or_else(|p| p.into_inner());
        let before = map.len();
        map.retain(|t, _| t.provider != provider);
        self.active.store(map.len(), Ordering::Relaxed);
        before - map.len()
    }

    pub fn restore(&self, t: TargetId) {
        if self.active.load(Ordering::Relaxed) == 0 {
            return;
        }
        let removed = {
            let mut map = self.until.lock().unwrap_or_else(|p| p.into_inner());
            let removed = map.remove(&t).is_some();
            self.active.store(map.len(), Ordering::Relaxed);
            removed
        };
        if removed {
            if let Some(o) = self.observer.get() {
                o(CooldownEvent::Restored { target: t });
            }
        }
    }
}

/// How long the other requests keep skipping a target while one request probes it.
pub const PROBE_WINDOW: Duration = Duration::from_secs(10);

/// Longest wait a provider's header may impose (a bogus value must not park a target).
pub const MAX_PROVIDER_WAIT: Duration = Duration::from_secs(3600);

/// How long a provider asked us to wait: `Retry-After` (seconds or HTTP date),
/// `retry-after-ms`, or Anthropic's `anthropic-ratelimit-*-reset` (RFC 3339).
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::ProviderId;

    #[test]
    fn cooldown_expires_and_restore_clears() {
        let c = Cooldowns::default();
        let t = TargetId::new(ProviderId::new("p", "http://x"), "m", 0);
        let now = Instant::now();
        assert!(c.until(t, now).is_none());
        c.cool_down(t, Duration::from_secs(5), now);
        assert_eq!(c.until(t, now), Some(now + Duration::from_secs(5)));
        assert!(
            c.until(t, now + Duration::from_secs(6)).is_none(),
            "the probe"
        );
        c.cool_down(t, Duration::from_secs(30), now);
        c.cool_down(t, Duration::from_secs(1), now);
        assert_eq!(
            c.until(t, now),
            Some(now + Duration::from_secs(30)),
            "the longer wait stays"
        );
        c.restore(t);
        assert!(c.until(t, now).is_none());
        c.cool_down(t, Duration::from_secs(1_000_000), now);
        assert_eq!(c.until(t, now), Some(now + MAX_PROVIDER_WAIT));
    }

    #[test]
    fn after_a_cooldown_one_request_probes_while_the_rest_wait() {
        let failed = Cooldowns::default();
        let t0 = TargetId::new(ProviderId::new("p", "http://x"), "m", 1);
        let now = Instant::now();
        failed.cool_down(t0, Duration::from_millis(1), now);
        let later = now + Duration::from_secs(1);
        assert!(failed.until(t0, later).is_none(), "probe");
        failed.cool_down(t0, Duration::from_millis(1), later);
        assert_eq!(
            failed.until(t0, later),
            Some(later + Duration::from_millis(1)),
            "a failed probe cools down for its own wait, not the probe window"
        );
        let c = Cooldowns::default();
        let t = TargetId::new(ProviderId::new("p", "http://x"), "m", 0);
        let now = Instant::now();
        c.cool_down(t, Duration::from_secs(5), now);
        let later = now + Duration::from_secs(6);
        assert_eq!(c.peek(t, later), None, "looking does not take the probe");
        assert!(c.until(t, later).is_none(), "the first one probes");
        assert_eq!(
            c.until(t, later),
            Some(later + PROBE_WINDOW),
            "the rest wait"
        );
        assert_eq!(c.peek(t, later), Some(later + PROBE_WINDOW));
        // The probe answered: open for all.
        c.restore(t);
        assert!(c.until(t, later).is_none() && c.until(t, later).is_none());
        // A probe that never reports: the next one after its window.
        c.cool_down(t, Duration::from_secs(1), now);
        let a = now + Duration::from_secs(2);
        assert!(c.until(t, a).is_none());
        assert!(c.until(t, a).is_some());
        assert!(c.until(t, a + PROBE_WINDOW).is_none(), "a new probe");
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
