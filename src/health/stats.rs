//! Per-target request statistics for `GET /v1/metrics/providers`: counts, the last error
//! and a ring of recent latencies for the median.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use super::ModelId;

const LATENCY_SAMPLES: usize = 64;

#[derive(Debug, Clone, Default)]
pub struct TargetStats {
    pub requests: u64,
    pub errors: u64,
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

#[derive(Default)]
pub struct Stats {
    by_target: Mutex<HashMap<ModelId, TargetStats>>,
}

impl Stats {
    pub fn record(&self, target: ModelId, latency: Duration, error: Option<String>) {
        let mut map = self.by_target.lock().unwrap_or_else(|p| p.into_inner());
        let s = map.entry(target).or_default();
        s.requests = s.requests.saturating_add(1);
        if let Some(e) = error {
            s.errors = s.errors.saturating_add(1);
            s.last_error = Some(e);
        }
        let ms = latency.as_millis().min(u128::from(u32::MAX)) as u32;
        if s.latencies.len() < LATENCY_SAMPLES {
            s.latencies.push(ms);
        } else {
            s.latencies[s.next % LATENCY_SAMPLES] = ms;
        }
        s.next = s.next.wrapping_add(1);
    }

    pub fn get(&self, target: ModelId) -> TargetStats {
        let map = self.by_target.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&target).cloned().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::ProviderId;

    #[test]
    fn median_of_the_recent_latencies() {
        let s = Stats::default();
        let t = ModelId::new(ProviderId::new("p", "e"), "m");
        assert_eq!(s.get(t).p50_ms(), None);
        for ms in [30, 10, 20] {
            s.record(t, Duration::from_millis(ms), None);
        }
        s.record(t, Duration::from_millis(40), Some("status 500".into()));
        let st = s.get(t);
        assert_eq!((st.requests, st.errors, st.p50_ms()), (4, 1, Some(30)));
        assert_eq!(st.last_error.as_deref(), Some("status 500"));
    }
}
