//! Client keys: where a request carries its key, lookup by SHA-256 (the secret itself is
//! never stored), constant-time confirmation, and the per-key checks (disabled, expiry,
//! IP allowlist, model scope). Each failure has its own code and a message that says
//! what to fix.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use http::HeaderMap;
use ipnet::IpNet;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use wildmatch::WildMatch;

use crate::errors::{ErrorCode, GatewayError};
use crate::limits::KeyLimits;

/// The WebSocket subprotocol prefix browsers send a key in (they cannot set headers):
/// `Sec-WebSocket-Protocol: openai-insecure-api-key.KEY`.
pub const KEY_SUBPROTOCOL: &str = "openai-insecure-api-key.";

#[derive(Debug)]
pub struct ClientKey {
    /// Shown in logs and metrics instead of the secret.
    pub name: String,
    pub digest: [u8; 32],
    /// Model globs this key may use; `None` = every model.
    pub scope: Option<Vec<WildMatch>>,
    pub limits: KeyLimits,
    pub expires_at: Option<SystemTime>,
    pub allowed_ips: Vec<IpNet>,
    pub disabled: bool,
    /// The team whose budgets apply too.
    pub team: Option<String>,
    pub budgets: crate::spend::BudgetSet,
    pub origin: Origin,
    /// The secret's last 4 characters ("" when only its hash is known).
    pub hint: String,
    /// The key's fields as accepted, without the secret: what the keys API shows.
    pub fields: crate::config::RawKey,
    /// When the keys API made it (ms since the epoch); `None` for config keys.
    pub created_ms: Option<i64>,
    /// Last authenticated use (ms since the epoch, 0 = never): stored at most once a
    /// second per key, so a busy key costs one relaxed load per request.
    pub last_used_ms: AtomicI64,
}

/// Where a key is defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Config,
    Api,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Config => "config",
            Origin::Api => "api",
        }
    }
}

impl ClientKey {
    pub fn touch(&self, now_ms: i64) {
        if now_ms.saturating_sub(self.last_used_ms.load(Ordering::Relaxed)) >= 1000 {
            self.last_used_ms.store(now_ms, Ordering::Relaxed);
        }
    }

    /// Whether any of `names` (the requested name and the model's public name) is in scope.
    pub fn allows_model(&self, names: &[&str]) -> bool {
        match &self.scope {
            None => true,
            Some(patterns) => patterns.iter().any(|p| names.iter().any(|n| p.matches(n))),
        }
    }

    /// Disabled, expiry and IP checks, in that order.
    pub fn check_usable(
        &self,
        client_ip: Option<IpAddr>,
        now: SystemTime,
    ) -> Result<(), GatewayError> {
        if self.disabled {
            return Err(GatewayError::new(
                ErrorCode::KeyDisabled,
                format!("the API key {:?} is disabled; ask the gateway operator to enable it or issue a new one", self.name),
            ));
        }
        if let Some(exp) = self.expires_at {
            if now >= exp {
                let when = time::OffsetDateTime::from(exp)
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default();
                return Err(GatewayError::new(
                    ErrorCode::KeyExpired,
                    format!("the API key {:?} expired at {when}; ask the gateway operator for a new one", self.name),
                ));
            }
        }
        if !self.allowed_ips.is_empty() {
            let allowed =
                client_ip.is_some_and(|ip| self.allowed_ips.iter().any(|n| n.contains(&ip)));
            if !allowed {
                let shown = client_ip
                    .map(|ip| ip.to_string())
                    .unwrap_or_else(|| "unknown".into());
                return Err(GatewayError::new(
                    ErrorCode::IpNotAllowed,
                    format!("the API key {:?} may not be used from {shown}; the operator can add it to the key's allowed_ips", self.name),
                ));
            }
        }
        Ok(())
    }
}

/// All client keys, indexed by the SHA-256 of their secret.
#[derive(Default)]
pub struct KeyTable {
    by_digest: HashMap<[u8; 32], Arc<ClientKey>>,
    /// For the keys API and reloads (names are unique, validation checks).
    by_name: HashMap<String, Arc<ClientKey>>,
}

impl KeyTable {
    pub fn new(keys: Vec<Arc<ClientKey>>) -> Self {
        KeyTable {
            by_name: keys.iter().map(|k| (k.name.clone(), k.clone())).collect(),
            by_digest: keys.into_iter().map(|k| (k.digest, k)).collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.by_digest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<ClientKey>> {
        self.by_digest.values()
    }

    /// Looks a presented secret up. The hash lookup reveals nothing useful about a secret;
    /// the final comparison is constant-time anyway.
    pub fn find(&self, secret: &str) -> Option<&Arc<ClientKey>> {
        self.find_digest(&digest(secret))
    }

    pub fn find_digest(&self, digest: &[u8; 32]) -> Option<&Arc<ClientKey>> {
        self.by_digest
            .get(digest)
            .filter(|k| bool::from(k.digest.ct_eq(digest)))
    }

    pub fn get_by_name(&self, name: &str) -> Option<&Arc<ClientKey>> {
        self.by_name.get(name)
    }
}

pub fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// What a secret that matches no live key was, when the gateway knows (for the message).
pub enum Unknown {
    /// Never issued, or revoked.
    NoSuchKey,
    /// Replaced by a rotation whose grace period is over.
    Rotated { name: String },
}

/// Keys beyond the config file's, looked up after them (the keys API's).
pub trait MoreKeys {
    fn find_digest(&self, digest: &[u8; 32], now: SystemTime) -> Result<Arc<ClientKey>, Unknown>;
}

/// No keys beyond the config's (tests, tools).
pub struct NoMoreKeys;

impl MoreKeys for NoMoreKeys {
    fn find_digest(&self, _: &[u8; 32], _: SystemTime) -> Result<Arc<ClientKey>, Unknown> {
        Err(Unknown::NoSuchKey)
    }
}

/// Where a request's key came from; names the header in error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    Bearer,
    XApiKey,
    XGoogApiKey,
    /// `Sec-WebSocket-Protocol: openai-insecure-api-key.KEY` (browsers cannot set headers
    /// on a WebSocket).
    WebSocketProtocol,
    Query,
}

/// Extracts the client's key: `Authorization: Bearer`, `x-api-key`, `x-goog-api-key`,
/// then `?key=`. A malformed `Authorization` header is an error, not a fallthrough.
pub fn extract_key(
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<(String, KeySource), GatewayError> {
    if let Some(v) = headers.get(http::header::AUTHORIZATION) {
        let v = v.to_str().map_err(|_| {
            GatewayError::new(
                ErrorCode::InvalidApiKey,
                "the Authorization header is not valid text; it must be 'Bearer <key>'",
            )
        })?;
        let v = v.trim();
        let (scheme, rest) = v.split_once(' ').unwrap_or((v, ""));
        if !scheme.eq_ignore_ascii_case("bearer") {
            let hint = if v.len() > 6 && v[..6].eq_ignore_ascii_case("bearer") {
                " (there must be a space after 'Bearer')"
            } else {
                " ('Bearer' is missing)"
            };
            return Err(GatewayError::new(
                ErrorCode::InvalidApiKey,
                format!("Authorization header must be 'Bearer <key>'{hint}"),
            ));
        }
        let key = rest.trim();
        if key.is_empty() {
            return Err(GatewayError::new(
                ErrorCode::InvalidApiKey,
                "Authorization header must be 'Bearer <key>' (the key after 'Bearer ' is empty)",
            ));
        }
        return Ok((key.to_string(), KeySource::Bearer));
    }
    for (name, source) in [
        ("x-api-key", KeySource::XApiKey),
        ("x-goog-api-key", KeySource::XGoogApiKey),
    ] {
        if let Some(v) = headers.get(name) {
            let key = v.to_str().map(str::trim).unwrap_or_default();
            if key.is_empty() {
                return Err(GatewayError::new(
                    ErrorCode::InvalidApiKey,
                    format!("the {name} header is empty or not valid text"),
                ));
            }
            return Ok((key.to_string(), source));
        }
    }
    let subprotocol = headers
        .get_all(http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|p| p.trim().strip_prefix(KEY_SUBPROTOCOL));
    if let Some(key) = subprotocol.filter(|k| !k.is_empty()) {
        return Ok((key.to_string(), KeySource::WebSocketProtocol));
    }
    if let Some(key) = query_param(query, "key") {
        let key = key.trim();
        if !key.is_empty() {
            return Ok((key.to_string(), KeySource::Query));
        }
    }
    Err(GatewayError::new(
        ErrorCode::InvalidApiKey,
        "no API key: send 'Authorization: Bearer <key>' (or an x-api-key / x-goog-api-key header, or ?key=)",
    ))
}

/// Authenticates a request fully: key present and known, enabled, not expired, from an
/// allowed address.
pub fn authenticate(
    keys: &KeyTable,
    more: &dyn MoreKeys,
    headers: &HeaderMap,
    query: Option<&str>,
    client_ip: Option<IpAddr>,
) -> Result<Arc<ClientKey>, GatewayError> {
    let (secret, source) = extract_key(headers, query)?;
    let d = digest(&secret);
    let now = SystemTime::now();
    let found = match keys.find_digest(&d) {
        Some(k) => Ok(k.clone()),
        None => more.find_digest(&d, now),
    };
    let key = match found {
        Ok(k) => k,
        Err(Unknown::Rotated { name }) => {
            return Err(GatewayError::new(
                ErrorCode::InvalidApiKey,
                format!(
                    "this secret of the API key {name:?} was replaced by a rotation and its grace period is over (ending ...{}); use the new secret",
                    last4(&secret)
                ),
            ))
        }
        Err(Unknown::NoSuchKey) => return Err(unknown_key(source, &secret)),
    };
    key.check_usable(client_ip, now)?;
    let now_ms = now
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    key.touch(now_ms);
    Ok(key)
}

fn unknown_key(source: KeySource, secret: &str) -> GatewayError {
    let via = match source {
        KeySource::Bearer => "Authorization header",
        KeySource::XApiKey => "x-api-key header",
        KeySource::XGoogApiKey => "x-goog-api-key header",
        KeySource::WebSocketProtocol => "Sec-WebSocket-Protocol header",
        KeySource::Query => "?key= parameter",
    };
    GatewayError::new(
        ErrorCode::InvalidApiKey,
        format!(
            "the API key in the {via} is not valid for this gateway (ending ...{}); check it was copied whole and is a modelgate key, not a provider's",
            last4(secret)
        ),
    )
}

/// The last 4 characters of a secret, for messages that must not show it.
pub fn last4(secret: &str) -> &str {
    let n = secret.len();
    if n <= 8 {
        return "";
    }
    let mut start = n - 4;
    while !secret.is_char_boundary(start) {
        start -= 1;
    }
    &secret[start..]
}

pub fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<std::borrow::Cow<'a, str>> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// `10.0.0.0/8` or a bare address (taken as a single host).
pub fn parse_ip_net(s: &str) -> Option<IpNet> {
    let s = s.trim();
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}

/// The client's address: the socket peer, or — when the peer is a trusted proxy — the
/// right-most `X-Forwarded-For` entry that is not itself a trusted proxy.
pub fn client_ip(peer: Option<IpAddr>, headers: &HeaderMap, trusted: &[IpNet]) -> Option<IpAddr> {
    // On a dual-stack listener IPv4 clients arrive as ::ffff:a.b.c.d: compared as IPv4,
    // so IPv4 rules (allowed_ips, trusted_proxies, loopback) apply to them.
    let peer = peer?.to_canonical();
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if trusted.is_empty() || !is_trusted(&peer) {
        return Some(peer);
    }
    let mut last_trusted = peer;
    for v in headers.get_all("x-forwarded-for").iter().rev() {
        let Ok(v) = v.to_str() else {
            return Some(last_trusted);
        };
        for part in v.rsplit(',') {
            let Ok(ip) = part.trim().parse::<IpAddr>().map(|ip| ip.to_canonical()) else {
                return Some(last_trusted);
            };
            if !is_trusted(&ip) {
                return Some(ip);
            }
            last_trusted = ip;
        }
    }
    Some(last_trusted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn key_sources() {
        assert_eq!(
            extract_key(&headers(&[("authorization", "Bearer sk-1")]), None).unwrap(),
            ("sk-1".into(), KeySource::Bearer)
        );
        assert_eq!(
            extract_key(&headers(&[("authorization", "bearer  sk-1 ")]), None)
                .unwrap()
                .0,
            "sk-1"
        );
        assert_eq!(
            extract_key(&headers(&[("x-api-key", "a")]), None)
                .unwrap()
                .1,
            KeySource::XApiKey
        );
        assert_eq!(
            extract_key(&headers(&[("x-goog-api-key", "g")]), None)
                .unwrap()
                .1,
            KeySource::XGoogApiKey
        );
        assert_eq!(
            extract_key(&headers(&[]), Some("alt=sse&key=q%2B1")).unwrap(),
            ("q+1".into(), KeySource::Query)
        );
    }

    #[test]
    fn malformed_authorization_says_what_is_wrong() {
        let e = extract_key(&headers(&[("authorization", "sk-1")]), None).unwrap_err();
        assert!(e.message.contains("'Bearer' is missing"), "{}", e.message);
        let e = extract_key(&headers(&[("authorization", "Bearersk-123")]), None).unwrap_err();
        assert!(e.message.contains("space after"), "{}", e.message);
        let e = extract_key(&headers(&[]), None).unwrap_err();
        assert!(e.message.starts_with("no API key"));
    }

    #[test]
    fn forwarded_for_only_from_trusted_proxies() {
        let trusted = vec![parse_ip_net("10.0.0.0/8").unwrap()];
        let h = headers(&[("x-forwarded-for", "203.0.113.9, 10.1.1.1")]);
        let lb: IpAddr = "10.0.0.2".parse().unwrap();
        let outsider: IpAddr = "198.51.100.7".parse().unwrap();
        assert_eq!(
            client_ip(Some(lb), &h, &trusted),
            "203.0.113.9".parse().ok()
        );
        assert_eq!(client_ip(Some(outsider), &h, &trusted), Some(outsider));
        assert_eq!(client_ip(Some(lb), &h, &[]), Some(lb));
        // A dual-stack listener's IPv4 client is an IPv4 address.
        let mapped: IpAddr = "::ffff:10.0.0.2".parse().unwrap();
        assert_eq!(
            client_ip(Some(mapped), &h, &trusted),
            "203.0.113.9".parse().ok()
        );
        let mapped_loopback: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert!(client_ip(Some(mapped_loopback), &h, &[])
            .unwrap()
            .is_loopback());
    }

    #[test]
    fn last4_never_shows_short_secrets() {
        assert_eq!(last4("sk-abcdefghij"), "ghij");
        assert_eq!(last4("short"), "");
    }
}
