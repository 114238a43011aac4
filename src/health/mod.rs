//! Target health, owned by the runtime (`State::health`) so it outlives config reloads
//! and can be exercised in-process: passive cooldowns after failures, the retry budget,
//! active probe results, and per-target statistics for `/v1/metrics/providers`.
//!
//! Everything is keyed by typed ids derived from what a target *is* (provider name and
//! endpoint, model, credential slot), never from its position in a config, so a reload
//! that keeps a provider keeps its health.

mod budget;
pub mod checker;
mod cooldown;
mod probes;
mod stats;

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

pub use budget::RetryBudget;
pub use cooldown::CooldownEvent;
pub use cooldown::{retry_after, Cooldowns, MAX_PROVIDER_WAIT};
pub use probes::{ProbeEvent, ProbeState, Probes};
pub use stats::{Stats, TargetStats};

/// A provider across reloads: its name and endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProviderId(u64);

impl ProviderId {
    pub fn new(name: &str, endpoint: &str) -> Self {
        ProviderId(hash(&(name, endpoint)))
    }

    /// As sent to other replicas (the same binary hashes the same way).
    pub fn raw(self) -> u64 {
        self.0
    }

    pub fn from_raw(v: u64) -> Self {
        ProviderId(v)
    }
}

/// One target: a provider's model on one credential slot (what a cooldown applies to).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TargetId {
    /// Kept whole so a provider's cooldowns can be cleared together.
    pub provider: ProviderId,
    id: u64,
}

impl TargetId {
    pub fn new(provider: ProviderId, model: &str, credential: usize) -> Self {
        TargetId {
            provider,
            id: hash(&(provider.0, model, credential)),
        }
    }

    pub fn raw(self) -> u64 {
        self.id
    }

    pub fn from_raw(provider: ProviderId, id: u64) -> Self {
        TargetId { provider, id }
    }
}

/// A provider's model whatever credential served it (what statistics are kept for).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ModelId(u64);

impl ModelId {
    pub fn new(provider: ProviderId, model: &str) -> Self {
        ModelId(hash(&(provider.0, model)))
    }
}

fn hash<T: Hash>(v: &T) -> u64 {
    let mut h = DefaultHasher::new();
    v.hash(&mut h);
    h.finish()
}

/// All health state of one gateway process.
#[derive(Default)]
pub struct Health {
    pub cooldowns: Cooldowns,
    pub retries: RetryBudget,
    pub probes: Probes,
    pub stats: Stats,
}
