//! Active health: the results of the background checker (`checker.rs`). A provider turns
//! unhealthy after `down` failed probes in a row and healthy again after `up` successes;
//! providers without a `health_check` are always healthy.
//!
//! In a cluster, other replicas' verdicts count too: a provider another replica finds
//! unhealthy is skipped here until that replica finds it healthy again, or until its
//! report expires (it is renewed at every failed probe, so a replica that dies stops
//! holding a provider down within a few intervals).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::ProviderId;

#[derive(Debug, Clone, Default)]
pub struct ProbeState {
    /// This replica's own verdict.
    pub healthy: bool,
    pub successes: u32,
    pub failures: u32,
    pub last_error: Option<String>,
    /// Other replicas that find the provider unhealthy, and until when that holds.
    pub reported_down: HashMap<String, Instant>,
}

impl ProbeState {
    fn healthy_at(&self, now: Instant) -> bool {
        self.healthy && self.reported_down.values().all(|until| *until <= now)
    }

    /// How many other replicas hold the provider down at `now`.
    pub fn down_elsewhere(&self, now: Instant) -> usize {
        self.reported_down.values().filter(|u| **u > now).count()
    }
}

/// A verdict of this replica's checker, for other replicas: unhealthy (valid for the
/// duration given, renewed at each failed probe) or healthy again.
pub struct ProbeEvent {
    pub provider: ProviderId,
    pub down_for: Option<Duration>,
}

type Observer = Box<dyn Fn(ProbeEvent) + Send + Sync>;

#[derive(Default)]
pub struct Probes {
    by_provider: Mutex<HashMap<ProviderId, ProbeState>>,
    /// Providers unhealthy here or reported so, so the usual all-healthy check takes no
    /// lock (an expired report keeps it above zero until the next change: only slower).
    unhealthy: AtomicUsize,
    observer: OnceLock<Observer>,
}

impl Probes {
    pub fn healthy(&self, p: ProviderId) -> bool {
        if self.unhealthy.load(Ordering::Relaxed) == 0 {
            return true;
        }
        let map = self.by_provider.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        map.get(&p).is_none_or(|s| s.healthy_at(now))
    }

    pub fn set_observer(&self, o: Observer) {
        let _ = self.observer.set(o);
    }

    /// Tells other replicas (if any listen) this replica's verdict on `p`.
    pub fn announce(&self, p: ProviderId, down_for: Option<Duration>) {
        if let Some(o) = self.observer.get() {
            o(ProbeEvent {
                provider: p,
                down_for,
            });
        }
    }

    /// Another replica's verdict: `Some(until)` unhealthy, `None` healthy again.
    pub fn apply_remote(&self, p: ProviderId, replica: &str, until: Option<Instant>) {
        let mut map = self.by_provider.lock().unwrap_or_else(|p| p.into_inner());
        match until {
            Some(until) => {
                let s = map.entry(p).or_insert_with(|| ProbeState {
                    healthy: true,
                    ..Default::default()
                });
                let now = Instant::now();
                s.reported_down.retain(|_, u| *u > now);
                s.reported_down.insert(replica.to_string(), until);
            }
            None => {
                if let Some(s) = map.get_mut(&p) {
                    s.reported_down.remove(replica);
                }
            }
        }
        Self::count(&self.unhealthy, &map);
    }

    fn count(unhealthy: &AtomicUsize, map: &HashMap<ProviderId, ProbeState>) {
        let now = Instant::now();
        let n = map.values().filter(|s| !s.healthy_at(now)).count();
        unhealthy.store(n, Ordering::Relaxed);
    }

    pub fn state(&self, p: ProviderId) -> Option<ProbeState> {
        let map = self.by_provider.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&p).cloned()
    }

    /// Records one probe; returns the provider's health afterwards.
    pub fn record(
        &self,
        p: ProviderId,
        ok: bool,
        error: Option<String>,
        up: u32,
        down: u32,
    ) -> bool {
        let mut map = self.by_provider.lock().unwrap_or_else(|p| p.into_inner());
        let s = map.entry(p).or_insert_with(|| ProbeState {
            healthy: true,
            ..Default::default()
        });
        if ok {
            s.successes = s.successes.saturating_add(1);
            s.failures = 0;
            if !s.healthy && s.successes >= up {
                s.healthy = true;
            }
        } else {
            s.failures = s.failures.saturating_add(1);
            s.successes = 0;
            s.last_error = error;
            if s.healthy && s.failures >= down {
                s.healthy = false;
            }
        }
        let healthy = s.healthy;
        Self::count(&self.unhealthy, &map);
        healthy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_flip_health_at_the_thresholds() {
        let probes = Probes::default();
        let k = ProviderId::new("unit-probe", "http://x");
        assert!(probes.healthy(k));
        assert!(probes.record(k, false, Some("500".into()), 2, 2));
        assert!(!probes.record(k, false, Some("500".into()), 2, 2));
        assert!(!probes.healthy(k));
        assert!(!probes.record(k, true, None, 2, 2));
        assert!(probes.record(k, true, None, 2, 2));
        assert!(probes.healthy(k));
    }

    #[test]
    fn another_replicas_verdict_holds_until_lifted_or_expired() {
        let probes = Probes::default();
        let k = ProviderId::new("unit-probe-remote", "http://x");
        let later = Instant::now() + Duration::from_secs(60);
        probes.apply_remote(k, "r2", Some(later));
        assert!(!probes.healthy(k));
        probes.apply_remote(k, "r3", Some(later));
        probes.apply_remote(k, "r2", None);
        assert!(!probes.healthy(k), "r3 still reports it down");
        probes.apply_remote(k, "r3", None);
        assert!(probes.healthy(k));
        probes.apply_remote(k, "r2", Some(Instant::now()));
        assert!(probes.healthy(k), "an expired report counts for nothing");
    }
}
