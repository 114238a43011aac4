//! Validation of `keys`: secrets hashed, names and secrets unique, scopes, expiry, IPs,
//! limits and budgets.

use std::collections::HashMap;
use std::sync::atomic::AtomicI64;
use std::sync::Arc;
use std::time::SystemTime;

use ipnet::IpNet;
use sha2::{Digest, Sha256};

use super::raw::{RawKey, RawLimitSet, RawLimits};
use super::spend;
use super::validate::{trimmed_secret, Ctx};
use super::ConfigError;
use crate::auth::{parse_ip_net, ClientKey, KeyTable, Origin};
use crate::limits::{KeyLimits, LimitSet};

pub(super) fn keys(cx: &mut Ctx, raw: Vec<RawKey>) -> KeyTable {
    let mut out: Vec<Arc<ClientKey>> = Vec::new();
    let mut by_digest: HashMap<[u8; 32], (usize, String)> = HashMap::new();
    let mut names: HashMap<String, usize> = HashMap::new();
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
        let hint = k
            .key
            .as_deref()
            .map(|s| crate::auth::last4(s.trim()).to_string())
            .unwrap_or_default();
        let key = build(
            cx,
            &base,
            k,
            digest.unwrap_or_default(),
            hint,
            Origin::Config,
        );
        if digest.is_some() {
            out.push(Arc::new(key));
        }
    }
    KeyTable::new(out)
}

/// A key's fields checked and turned into the runtime form; errors are reported under
/// `base` (`keys[3]` in a config file, nothing for the keys API).
fn build(
    cx: &mut Ctx,
    base: &str,
    mut k: RawKey,
    digest: [u8; 32],
    hint: String,
    origin: Origin,
) -> ClientKey {
    let scope = k.models.as_ref().map(|patterns| {
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
    let name = k.name.trim().to_string();
    let expires_at = expiry(cx, base, &name, k.expires_at.as_deref());
    let allowed_ips = ip_nets(cx, base, &k.allowed_ips);
    let limits = key_limits(cx, base, &k.limits);
    let budgets = spend::budget_set(cx, base, &k.budgets, k.budget_timezone.as_deref());
    let team = k
        .team
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(String::from);
    for (field, v) in &k.metadata {
        if field.trim().is_empty() {
            cx.err(format!("{base}.metadata"), "has an empty label name");
        } else if v.len() > 1024 {
            cx.err(
                format!("{base}.metadata.{field}"),
                "is longer than 1024 bytes",
            );
        }
    }
    // What the keys API shows: never the secret.
    k.key = None;
    k.key_sha256 = None;
    k.name = name.clone();
    ClientKey {
        name,
        digest,
        scope,
        limits,
        expires_at,
        allowed_ips,
        disabled: k.disabled,
        team,
        budgets,
        origin,
        hint,
        fields: k,
        created_ms: None,
        last_used_ms: AtomicI64::new(0),
    }
}

/// Checks the fields of a key made through the keys API exactly as `-t` checks a config
/// key. `Err`: one error per bad field, each naming it (`models[0]`, `budgets[1].period`).
pub fn api_key(
    raw: RawKey,
    digest: [u8; 32],
    hint: String,
    created_ms: i64,
) -> Result<(ClientKey, Vec<String>), Vec<ConfigError>> {
    let mut cx = Ctx {
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    if raw.name.trim().is_empty() {
        cx.err(".name", "is required and may not be empty");
    }
    if raw.key.is_some() || raw.key_sha256.is_some() {
        cx.err(
            ".key",
            "is chosen by the gateway: leave key and key_sha256 out and the answer carries the new secret",
        );
    }
    let mut key = build(&mut cx, "", raw, digest, hint, Origin::Api);
    key.created_ms = Some(created_ms);
    let strip = |s: String| s.strip_prefix('.').map(String::from).unwrap_or(s);
    if cx.errors.is_empty() {
        Ok((key, cx.warnings.into_iter().map(strip).collect()))
    } else {
        Err(cx
            .errors
            .into_iter()
            .map(|mut e| {
                e.path = strip(e.path);
                e
            })
            .collect())
    }
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
