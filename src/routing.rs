//! Public model names -> provider targets: exact names and aliases, wildcard patterns (in
//! definition order), smooth weighted round-robin for the first pick, and the candidate
//! order for failover (remaining targets in list order, then each fallback model's).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use wildmatch::WildMatch;

use crate::upstream::Provider;

pub fn is_pattern(name: &str) -> bool {
    name.contains('*') || name.contains('?')
}

pub struct Target {
    pub provider: Arc<Provider>,
    /// The provider's model name; `None` = the name the client asked for.
    pub model: Option<String>,
    /// 0 = standby, used only for failover.
    pub weight: u32,
    /// Its price, resolved when the config loads; `None` for a wildcard's client-named
    /// model (looked up per request) or an unpriced one.
    pub price: Option<crate::spend::Price>,
}

pub struct ModelRoute {
    /// The public name (or the pattern, for wildcard routes).
    pub name: String,
    pub aliases: Vec<String>,
    pub targets: Vec<Target>,
    pub fallbacks: Vec<String>,
    pub is_pattern: bool,
    /// Default and cap for output tokens on translated requests.
    pub max_tokens: Option<u64>,
    /// Limits for this model across all keys.
    pub limits: Option<crate::limits::LimitSet>,
    /// One full smooth-weighted-round-robin cycle of target indexes, precomputed so the
    /// hot path is one atomic increment.
    schedule: Vec<u16>,
    cursor: AtomicUsize,
}

impl ModelRoute {
    pub fn new(
        name: String,
        aliases: Vec<String>,
        targets: Vec<Target>,
        fallbacks: Vec<String>,
        is_pattern: bool,
    ) -> Self {
        let schedule = smooth_wrr_cycle(&targets.iter().map(|t| t.weight).collect::<Vec<_>>());
        ModelRoute {
            name,
            aliases,
            targets,
            fallbacks,
            is_pattern,
            max_tokens: None,
            limits: None,
            schedule,
            cursor: AtomicUsize::new(0),
        }
    }

    /// The target index for a request's first attempt.
    pub fn pick_first(&self) -> Option<usize> {
        if self.schedule.is_empty() {
            return None;
        }
        let i = self.cursor.fetch_add(1, Ordering::Relaxed);
        Some(self.schedule[i % self.schedule.len()] as usize)
    }

    /// The provider model name for target `i` when the client asked for `requested`.
    pub fn upstream_model<'a>(&'a self, i: usize, requested: &'a str) -> &'a str {
        match self.targets.get(i).and_then(|t| t.model.as_deref()) {
            Some(m) => m,
            None if self.is_pattern => requested,
            None => &self.name,
        }
    }
}

/// Nginx's smooth weighted round-robin, run for one full cycle (sum of weights, reduced by
/// their gcd) so that picks interleave: weights 3,1 give 0,0,1,0 rather than 0,0,0,1.
fn smooth_wrr_cycle(weights: &[u32]) -> Vec<u16> {
    fn gcd(a: u32, b: u32) -> u32 {
        if b == 0 {
            a
        } else {
            gcd(b, a % b)
        }
    }
    let g = weights.iter().copied().filter(|w| *w > 0).fold(0, gcd);
    if g == 0 {
        return Vec::new();
    }
    let w: Vec<i64> = weights.iter().map(|x| i64::from(x / g)).collect();
    let total: i64 = w.iter().sum();
    let mut current = vec![0i64; w.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best: Option<usize> = None;
        for i in 0..w.len() {
            if w[i] == 0 {
                continue;
            }
            current[i] += w[i];
            if best.is_none_or(|b| current[i] > current[b]) {
                best = Some(i);
            }
        }
        let Some(best) = best else { break };
        current[best] -= total;
        out.push(best as u16);
    }
    out
}

/// A model request resolved to its route.
#[derive(Clone)]
pub struct Resolved {
    pub route: Arc<ModelRoute>,
    /// The name the client asked for (public name, alias or wildcard match).
    pub requested: String,
}

#[derive(Default)]
pub struct ModelTable {
    exact: HashMap<String, Arc<ModelRoute>>,
    patterns: Vec<(WildMatch, Arc<ModelRoute>)>,
    routes: Vec<Arc<ModelRoute>>,
}

impl ModelTable {
    pub fn build(routes: Vec<Arc<ModelRoute>>) -> Self {
        let mut exact = HashMap::new();
        let mut patterns = Vec::new();
        for r in &routes {
            if r.is_pattern {
                patterns.push((WildMatch::new(&r.name), r.clone()));
            } else {
                exact.insert(r.name.clone(), r.clone());
                for a in &r.aliases {
                    exact.insert(a.clone(), r.clone());
                }
            }
        }
        ModelTable {
            exact,
            patterns,
            routes,
        }
    }

    pub fn resolve(&self, requested: &str) -> Option<Resolved> {
        let route = self.exact.get(requested).or_else(|| {
            self.patterns
                .iter()
                .find(|(p, _)| p.matches(requested))
                .map(|(_, r)| r)
        })?;
        Some(Resolved {
            route: route.clone(),
            requested: requested.to_string(),
        })
    }

    pub fn get(&self, name: &str) -> Option<&Arc<ModelRoute>> {
        self.exact.get(name)
    }

    /// Every concrete public name and alias (patterns are not listed), in config order,
    /// with the route it belongs to.
    pub fn listed(&self) -> impl Iterator<Item = (&str, &Arc<ModelRoute>)> {
        self.routes.iter().filter(|r| !r.is_pattern).flat_map(|r| {
            std::iter::once(r.name.as_str())
                .chain(r.aliases.iter().map(String::as_str))
                .map(move |n| (n, r))
        })
    }

    pub fn routes(&self) -> &[Arc<ModelRoute>] {
        &self.routes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smooth_wrr_interleaves_and_skips_standby() {
        assert_eq!(smooth_wrr_cycle(&[3, 1]), vec![0, 0, 1, 0]);
        assert_eq!(smooth_wrr_cycle(&[1, 1]), vec![0, 1]);
        assert_eq!(smooth_wrr_cycle(&[0, 2]), vec![1]);
        assert_eq!(smooth_wrr_cycle(&[6, 0, 3]), vec![0, 2, 0]);
        assert!(smooth_wrr_cycle(&[0, 0]).is_empty());
        let c = smooth_wrr_cycle(&[5, 3, 2]);
        assert_eq!(c.len(), 10);
        assert_eq!(c.iter().filter(|i| **i == 0).count(), 5);
        assert_eq!(c.iter().filter(|i| **i == 2).count(), 2);
    }
}
