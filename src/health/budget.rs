//! The retry budget: retries allowed on top of first attempts over a sliding window, so
//! that failover during an outage cannot multiply the load on the providers.

use std::time::Duration;

use pingora_limits::rate::Rate;

const WINDOW: Duration = Duration::from_secs(10);

pub struct RetryBudget {
    first_attempts: Rate,
    retries: Rate,
}

impl Default for RetryBudget {
    fn default() -> Self {
        RetryBudget {
            first_attempts: Rate::new(WINDOW),
            retries: Rate::new(WINDOW),
        }
    }
}

fn sliding(rate: &Rate) -> f64 {
    rate.rate_with(&0u8, |c| {
        c.prev_samples as f64 * (1.0 - c.current_interval_fraction) + c.curr_samples as f64
    })
}

impl RetryBudget {
    pub fn record_first_attempt(&self) {
        self.first_attempts.observe(&0u8, 1);
    }

    /// Takes one retry if there is one: `ratio` of the recent first attempts plus `min` per
    /// window, so quiet gateways can still fail over.
    pub fn take(&self, ratio: f64, min: u32) -> bool {
        let allowed = sliding(&self.first_attempts) * ratio + f64::from(min);
        if sliding(&self.retries) + 1.0 > allowed {
            return false;
        }
        self.retries.observe(&0u8, 1);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_are_a_share_of_first_attempts_plus_a_floor() {
        let b = RetryBudget::default();
        assert!(b.take(0.5, 1), "the floor allows one on a quiet gateway");
        assert!(!b.take(0.5, 1));
        for _ in 0..4 {
            b.record_first_attempt();
        }
        assert!(
            b.take(0.5, 1) && b.take(0.5, 1),
            "half of 4, plus 1, minus the one taken"
        );
        assert!(!b.take(0.5, 1));
    }
}
