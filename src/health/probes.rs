//! Active health: the results of the background checker (`checker.rs`). A provider turns
//! unhealthy after `down` failed probes in a row and healthy again after `up` successes;
//! providers without a `health_check` are always healthy.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use super::ProviderId;

#[derive(Debug, Clone, Default)]
pub struct ProbeState {
    pub healthy: bool,
    pub successes: u32,
    pub failures: u32,
    pub last_error: Option<String>,
}

#[derive(Default)]
pub struct Probes {
    by_provider: Mutex<HashMap<ProviderId, ProbeState>>,
    /// Unhealthy providers, so the usual all-healthy check takes no lock.
    unhealthy: AtomicUsize,
}

impl Probes {
    pub fn healthy(&self, p: ProviderId) -> bool {
        if self.unhealthy.load(Ordering::Relaxed) == 0 {
            return true;
        }
        let map = self.by_provider.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&p).is_none_or(|s| s.healthy)
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
        let n = map.values().filter(|s| !s.healthy).count();
        self.unhealthy.store(n, Ordering::Relaxed);
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
}
