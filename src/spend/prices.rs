//! Prices: the built-in list prices (`prices.yaml`, dated) overridden by the config's
//! `pricing`, and the cost of one request from its usage. Prices are resolved for each
//! configured target when the config loads, so the request path looks up nothing but
//! wildcard routes.

use std::collections::HashMap;

use serde::Deserialize;
use wildmatch::WildMatch;

use crate::translate::model::Usage;

/// USD per 1M tokens (and per request).
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    #[serde(default)]
    pub input: f64,
    #[serde(default)]
    pub output: f64,
    /// Cache reads; the input price when the provider lists none.
    pub cached_input: Option<f64>,
    /// Cache writes (Anthropic); the input price when absent.
    pub cache_write: Option<f64>,
    /// A price per request, for endpoints without token usage.
    #[serde(default)]
    pub request: f64,
}

impl Price {
    /// The USD cost of `u`: uncached prompt tokens at `input`, cache reads at
    /// `cached_input`, cache writes at `cache_write`, completion (reasoning included) at
    /// `output`, plus `request`.
    pub fn cost(&self, u: &Usage) -> f64 {
        let cached = u.cached_tokens.unwrap_or(0).min(u.prompt_tokens);
        let written = u
            .cache_write_tokens
            .unwrap_or(0)
            .min(u.prompt_tokens - cached);
        let uncached = u.prompt_tokens - cached - written;
        let tokens = self.input * uncached as f64
            + self.cached_input.unwrap_or(self.input) * cached as f64
            + self.cache_write.unwrap_or(self.input) * written as f64
            + self.output * u.completion_tokens as f64;
        tokens / 1e6 + self.request
    }

    /// The most `prompt` + `completion` tokens can cost (no cache discount).
    pub fn worst_case(&self, prompt: u64, completion: u64) -> f64 {
        let input = self.input.max(self.cache_write.unwrap_or(0.0));
        (input * prompt as f64 + self.output * completion as f64) / 1e6 + self.request
    }

    fn check(&self) -> Result<(), String> {
        let all = [
            ("input", Some(self.input)),
            ("output", Some(self.output)),
            ("cached_input", self.cached_input),
            ("cache_write", self.cache_write),
            ("request", Some(self.request)),
        ];
        for (name, v) in all {
            if let Some(v) = v {
                if !v.is_finite() || v < 0.0 {
                    return Err(format!("{name} must be a price of 0 or more (USD)"));
                }
            }
        }
        Ok(())
    }
}

/// The built-in table, as shipped.
#[derive(Deserialize)]
struct BuiltIn {
    taken: String,
    prices: indexmap::IndexMap<String, Price>,
}

const BUILT_IN: &str = include_str!("prices.yaml");

/// Prices by model name: `PROVIDER/MODEL` beats an exact name beats a glob; among globs
/// the one with more literal characters wins.
#[derive(Debug, Default)]
pub struct PriceTable {
    /// provider → model → price.
    by_provider: HashMap<String, HashMap<String, Price>>,
    exact: HashMap<String, Price>,
    /// (provider or none, pattern, literal length, price), most specific first.
    globs: Vec<(Option<String>, WildMatch, usize, Price)>,
    /// When the built-in prices were taken.
    pub taken: String,
}

impl PriceTable {
    /// The built-in prices with `overrides` (the config's `pricing`) on top; errors name
    /// the offending key.
    pub fn build(overrides: &indexmap::IndexMap<String, Price>) -> Result<Self, Vec<String>> {
        let built_in: BuiltIn = serde_yaml::from_str(BUILT_IN)
            .map_err(|e| vec![format!("the built-in price table is unreadable: {e}")])?;
        let mut entries = built_in.prices;
        let mut errors = Vec::new();
        for (k, p) in overrides {
            match p.check() {
                Ok(()) => {
                    entries.insert(k.trim().to_string(), *p);
                }
                Err(e) => errors.push(format!("pricing.{k}: {e}")),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut t = PriceTable {
            taken: built_in.taken,
            ..PriceTable::default()
        };
        for (key, price) in entries {
            let (provider, model) = match key.split_once('/') {
                Some((p, m)) if !p.is_empty() && !m.is_empty() => (Some(p.to_string()), m),
                _ => (None, key.as_str()),
            };
            if model.contains('*') || model.contains('?') {
                let literal = model.chars().filter(|c| *c != '*' && *c != '?').count();
                t.globs
                    .push((provider, WildMatch::new(model), literal, price));
            } else if let Some(p) = provider {
                t.by_provider
                    .entry(p)
                    .or_default()
                    .insert(model.to_string(), price);
            } else {
                t.exact.insert(model.to_string(), price);
            }
        }
        // Provider globs before plain ones, then by specificity.
        t.globs
            .sort_by_key(|(p, _, literal, _)| (p.is_none(), std::cmp::Reverse(*literal)));
        Ok(t)
    }

    /// The price of `model` (a provider model name) at `provider`.
    pub fn lookup(&self, provider: &str, model: &str) -> Option<Price> {
        if let Some(p) = self.by_provider.get(provider).and_then(|m| m.get(model)) {
            return Some(*p);
        }
        let provider_glob = |(p, pattern, _, price): &(Option<String>, WildMatch, usize, Price)| {
            (p.as_deref() == Some(provider) && pattern.matches(model)).then_some(*price)
        };
        if let Some(p) = self.globs.iter().find_map(provider_glob) {
            return Some(p);
        }
        if let Some(p) = self.exact.get(model) {
            return Some(*p);
        }
        self.globs
            .iter()
            .filter(|(p, ..)| p.is_none())
            .find(|(_, pattern, ..)| pattern.matches(model))
            .map(|(.., price)| *price)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(yaml: &str) -> PriceTable {
        let o: indexmap::IndexMap<String, Price> = serde_yaml::from_str(yaml).unwrap();
        PriceTable::build(&o).unwrap()
    }

    #[test]
    fn the_built_in_table_reads_and_prices_well_known_models() {
        let t = table("{}");
        assert!(!t.taken.is_empty());
        let p = t.lookup("openai", "gpt-4o").unwrap();
        assert_eq!((p.input, p.output), (2.5, 10.0));
        let mini = t.lookup("openai", "gpt-4o-mini").unwrap();
        assert_eq!(
            mini.input, 0.15,
            "a sibling is not priced by a broader entry"
        );
        let dated = t.lookup("anthropic", "claude-sonnet-4-5-20250929").unwrap();
        assert_eq!(dated.cache_write, Some(3.75));
        assert!(t.lookup("x", "gemini-2.5-pro").is_some());
        assert!(t.lookup("x", "my-local-model").is_none());
    }

    #[test]
    fn provider_prices_beat_exact_names_beat_globs() {
        let t = table(
            r#"
"gpt-4o": { input: 1, output: 1 }
"local/*": { input: 0, output: 0 }
"local/gpt-4o": { input: 7, output: 7 }
"gpt-4*": { input: 3, output: 3 }
"gpt-4o-*": { input: 4, output: 4 }
"#,
        );
        assert_eq!(t.lookup("local", "gpt-4o").unwrap().input, 7.0);
        assert_eq!(t.lookup("local", "anything").unwrap().input, 0.0);
        assert_eq!(t.lookup("openai", "gpt-4o").unwrap().input, 1.0);
        assert_eq!(t.lookup("openai", "gpt-4o-2099").unwrap().input, 4.0);
        assert_eq!(t.lookup("openai", "gpt-4-turbo-x").unwrap().input, 3.0);
    }

    #[test]
    fn cost_prices_cache_reads_writes_and_requests_apart() {
        let p = Price {
            input: 3.0,
            output: 15.0,
            cached_input: Some(0.3),
            cache_write: Some(3.75),
            request: 0.01,
        };
        let u = Usage {
            prompt_tokens: 1_000_000,
            completion_tokens: 100_000,
            cached_tokens: Some(500_000),
            reasoning_tokens: Some(50_000),
            cache_write_tokens: Some(100_000),
        };
        // 400k uncached × 3 + 500k × 0.3 + 100k × 3.75 + 100k × 15, per 1M, + 0.01
        let want = 1.2 + 0.15 + 0.375 + 1.5 + 0.01;
        assert!((p.cost(&u) - want).abs() < 1e-9, "{}", p.cost(&u));
        // Counts that do not add up never go negative.
        let odd = Usage {
            prompt_tokens: 10,
            cached_tokens: Some(50),
            cache_write_tokens: Some(50),
            ..Usage::default()
        };
        assert!((p.cost(&odd) - (10.0 * 0.3 / 1e6 + 0.01)).abs() < 1e-12);
    }

    #[test]
    fn bad_overrides_are_named() {
        let o: indexmap::IndexMap<String, Price> =
            serde_yaml::from_str(r#""m": { input: -1 }"#).unwrap();
        let e = PriceTable::build(&o).unwrap_err();
        assert!(
            e[0].contains("pricing.m") && e[0].contains("input"),
            "{e:?}"
        );
    }
}
