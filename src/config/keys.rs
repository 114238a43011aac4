//! Validation of `keys`: secrets hashed, names and secrets unique, scopes, expiry, IPs,
//! limits and budgets.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use ipnet::IpNet;
use sha2::{Digest, Sha256};

use super::raw::{RawKey, RawLimitSet, RawLimits};
use super::spend;
use super::validate::{trimmed_secret, Ctx};
use crate::auth::{parse_ip_net, ClientKey, KeyTable};
use crate::limits::{KeyLimits, LimitSet};

pub(super) fn keys(cx: &mut Ctx, raw: Vec<RawKey>) -> KeyTable {
    let mut out: Vec<Arc<ClientKey>> = Vec::new();
    let mut by_digest: HashMap<[u8; 32], (usize, String)> = HashMap::new();
    let mut names: HashMap<String, usize> = HashMap::new();
    if raw.is_empty() {
        cx.warnings
            .push("no keys configured: every request will be refused with 401".to_string());
    }
    for (i, k) in raw.into_iter().enumerate() {
        let base = format!("keys[{i}]");
        let name = k.name.trim().to_string();
        if name.is_empty() {
            cx.err(format!("{base}.name"), "is empty");
        } else if let Some(prev) = names.insert(name.clone(), i) {
            cx.err(
                format!("{base}.name"),
                format!("{name:?} is already used by keys[{prev}]; names label metrics and must be unique"),
            );
        }
        let digest = key_digest(cx, &base, &k);
        if let Some(d) = digest {
            if let Some((prev, prev_name)) = by_digest.get(&d) {
                cx.err(
                    &base,
                    format!("has the same secret as keys[{prev}] ({prev_name:?}); every key must be unique"),
                );
            } else {
                by_digest.insert(d, (i, name.clone()));
            }
        }
        let scope = k.models.map(|patterns| {
            patterns
                .iter()
                .enumerate()
                .filter(|(j, p)| {
                    let empty = p.trim().is_empty();
                    if empty {
                        cx.err(format!("{base}.models[{j}]"), "is empty");
                    }
                    !empty
                })
                .map(|(_, p)| wildmatch::WildMatch::new(p.trim()))
                .collect::<Vec<_>>()
        });
        let expires_at = expiry(cx, &base, &name, k.expires_at.as_deref());
        let allowed_ips = ip_nets(cx, &base, &k.allowed_ips);
        let key_limits = key_limits(cx, &base, &k.limits);
        let budgets = spend::budget_set(cx, &base, &k.budgets, k.budget_timezone.as_deref());
        let team = k
            .team
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty());
        if let Some(d) = digest {
            out.push(Arc::new(ClientKey {
                name,
                digest: d,
                scope,
                limits: key_limits,
                expires_at,
                allowed_ips,
                disabled: k.disabled,
                team,
                budgets,
            }));
        }
    }
    KeyTable::new(out)
}

/// The SHA-256 of the key's secret, from `key` or `key_sha256`.
fn key_digest(cx: &mut Ctx, base: &str, k: &RawKey) -> Option<[u8; 32]> {
    match (&k.key, &k.key_sha256) {
        (Some(_), Some(_)) => {
            cx.err(base, "set either key or key_sha256, not both");
            None
        }
        (None, None) => {
            cx.err(base, "needs key or key_sha256");
            None
        }
        (Some(secret), None) => trimmed_secret(cx, &format!("{base}.key"), secret)
            .map(|s| Sha256::digest(s.as_bytes()).into()),
        (None, Some(hex_digest)) => {
            let mut d = [0u8; 32];
            match hex::decode_to_slice(hex_digest.trim(), &mut d) {
                Ok(()) => Some(d),
                Err(_) => {
                    cx.err(
                        format!("{base}.key_sha256"),
                        "must be 64 hex characters (sha256 of the key, e.g. from `printf %s KEY | sha256sum`)",
                    );
                    None
                }
            }
        }
    }
}

/// `expires_at` as a time; one already past is a warning.
fn expiry(cx: &mut Ctx, base: &str, name: &str, raw: Option<&str>) -> Option<SystemTime> {
    raw.and_then(|s| {
        match time::OffsetDateTime::parse(s.trim(), &time::format_description::well_known::Rfc3339)
        {
            Ok(t) => {
                let st: SystemTime = t.into();
                if st <= SystemTime::now() {
                    cx.warnings.push(format!(
                        "{base}.expires_at: key {name:?} has already expired"
                    ));
                }
                Some(st)
            }
            Err(_) => {
                cx.err(
                    format!("{base}.expires_at"),
                    format!("{s:?} is not an RFC 3339 time (e.g. \"2027-01-01T00:00:00Z\")"),
                );
                None
            }
        }
    })
}

fn ip_nets(cx: &mut Ctx, base: &str, raw: &[String]) -> Vec<IpNet> {
    raw.iter()
        .enumerate()
        .filter_map(|(j, s)| {
            let n = parse_ip_net(s);
            if n.is_none() {
                cx.err(
                    format!("{base}.allowed_ips[{j}]"),
                    format!("{s:?} is not an IP address or CIDR range"),
                );
            }
            n
        })
        .collect()
}

fn key_limits(cx: &mut Ctx, base: &str, raw: &RawLimits) -> KeyLimits {
    KeyLimits {
        base: limit_set(
            cx,
            &format!("{base}.limits"),
            &RawLimitSet {
                rpm: raw.rpm,
                tpm: raw.tpm,
                concurrency: raw.concurrency,
            },
        ),
        models: raw
            .models
            .iter()
            .map(|(group, set)| {
                let set = limit_set(cx, &format!("{base}.limits.models.{group}"), set);
                (group.clone(), wildmatch::WildMatch::new(group), set)
            })
            .collect(),
    }
}

pub(super) fn limit_set(cx: &mut Ctx, path: &str, raw: &RawLimitSet) -> LimitSet {
    for (field, v) in [
        ("rpm", raw.rpm),
        ("tpm", raw.tpm),
        ("concurrency", raw.concurrency),
    ] {
        if v == Some(0) {
            cx.err(
                format!("{path}.{field}"),
                "must be at least 1 (remove it for no limit; use disabled: true to block a key)",
            );
        }
    }
    LimitSet {
        rpm: raw.rpm,
        tpm: raw.tpm,
        concurrency: raw.concurrency,
    }
}
