//! Configuration: YAML text -> `${VAR}` expansion -> raw serde structs -> one validated
//! runtime model (`Config`) with every cross-reference resolved and every secret hashed.
//! Parsing happens once per load; requests only ever see a finished `Config`.

mod cluster;
mod env;
mod keys;
mod locate;
mod raw;
mod spend;
mod validate;

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;
use ipnet::IpNet;

use crate::auth::KeyTable;
use crate::routing::ModelTable;
use crate::upstream::Provider;

pub use env::expand_str;
pub use keys::api_key;
pub use locate::line_of;
pub use raw::{RawBudget, RawKey, RawLimits};

/// The validated runtime configuration. Immutable; a reload builds a new one.
pub struct Config {
    pub server: ServerSettings,
    pub providers: IndexMap<String, Arc<Provider>>,
    pub models: ModelTable,
    pub keys: KeyTable,
    pub retry: RetryPolicy,
    pub management: ManagementSettings,
    pub store: StoreSettings,
    /// The built-in prices with `pricing` on top.
    pub prices: Arc<crate::spend::PriceTable>,
    /// Teams by name: budgets shared by their keys.
    pub teams: IndexMap<String, Arc<Team>>,
    /// Several replicas counting as one (`None`: every count is this process's own).
    pub cluster: Option<ClusterSettings>,
    /// The file as loaded (variables expanded), for `GET /v0/management/config`, which
    /// shows it with every secret redacted.
    pub source: serde_yaml::Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServerSettings {
    /// Access log lines as `key=value` text or JSON objects.
    pub log_format: LogFormat,
    pub listen: Vec<String>,
    pub metrics_listen: Option<String>,
    pub threads: usize,
    pub max_body_bytes: usize,
    pub grace_period: Duration,
    pub drain_delay: Duration,
    pub trusted_proxies: Vec<IpNet>,
    pub upgrade_sock: String,
    pub pid_file: String,
    pub ca_file: Option<String>,
    /// A request's whole header must arrive within this.
    pub header_timeout: Duration,
    /// A relayed WebSocket with no frame either way for this long is closed.
    pub websocket_idle_timeout: Duration,
    /// A relayed WebSocket is closed at its first frame after this long.
    pub websocket_max_duration: Duration,
}

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub on_status: Vec<u16>,
    pub cooldown: Duration,
    pub budget: f64,
    pub budget_min: u32,
}

#[derive(Debug, Clone, Default)]
pub struct ManagementSettings {
    /// SHA-256 of the management secret; `None` = management API disabled (404).
    pub secret_sha256: Option<[u8; 32]>,
    pub allow_remote: bool,
    /// Access records kept for `GET /v0/management/logs` (0 = none).
    pub log_buffer: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StoreSettings {
    /// As written; resolved by `StoreUrl::parse` against the state directory or the
    /// config file's folder when the store opens (`--store` overrides it).
    pub url: String,
    pub ledger: crate::ledger::LedgerSettings,
    /// How long the provider and credential of a file, batch, stored response or
    /// operation are remembered (`store.retention.objects`).
    pub object_retention: Duration,
}

/// What a replica does while Redis does not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Each replica enforces every limit and budget as (limit ÷ replicas) on its own.
    Local,
    /// Requests that need a shared count are refused with 503 `limits_unavailable`.
    Closed,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClusterSettings {
    pub redis_url: String,
    /// Longest wait for Redis on the request path before `on_error` applies.
    pub timeout: Duration,
    /// Put before every Redis key, so several gateways can share one Redis.
    pub prefix: String,
    pub on_error: OnError,
    pub replicas: u32,
    /// Concurrency slots are leases this long, extended every third of it while their
    /// request runs: a replica that dies frees its slots within this time.
    pub lease_ttl: Duration,
}

#[derive(Debug, Clone)]
pub struct Team {
    pub name: String,
    pub budgets: crate::spend::BudgetSet,
}

/// One problem in a config file, located by YAML path (semantic errors) or by
/// line and column (syntax errors).
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub path: String,
    pub line_col: Option<(usize, usize)>,
    pub message: String,
}

impl ConfigError {
    pub fn at(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            path: path.into(),
            line_col: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line_col, self.path.is_empty()) {
            (Some((l, c)), _) => write!(f, "{l}:{c}: {}", self.message),
            (None, true) => write!(f, "{}", self.message),
            (None, false) => write!(f, "{}: {}", self.path, self.message),
        }
    }
}

/// A successful load: the config plus warnings worth logging (e.g. trimmed secrets).
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
}

/// Errors of one load attempt, each printed as `FILE:...` by `render`.
#[derive(Debug)]
pub struct LoadError {
    pub source_name: String,
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            match e.line_col {
                Some(_) => write!(f, "{}:{e}", self.source_name)?,
                None => write!(f, "{}: {e}", self.source_name)?,
            }
        }
        Ok(())
    }
}

impl std::error::Error for LoadError {}

/// Reads and validates a config file, expanding variables from the process environment.
pub fn load_file(path: &Path) -> Result<Loaded, LoadError> {
    let source_name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| LoadError {
        source_name: source_name.clone(),
        errors: vec![ConfigError::at(
            "",
            format!("cannot read the config file: {e}"),
        )],
    })?;
    load_str(&text, &source_name, &|name| std::env::var(name).ok())
}

/// Validates config text; `lookup` resolves `${VAR}` references.
pub fn load_str(
    text: &str,
    source_name: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Loaded, LoadError> {
    let fail = |errors| LoadError {
        source_name: source_name.to_string(),
        errors,
    };
    let mut tree: serde_yaml::Value = match serde_yaml::from_str(text) {
        Ok(v) => v,
        Err(e) => return Err(fail(vec![yaml_error(&e)])),
    };
    if tree.is_null() {
        tree = serde_yaml::Value::Mapping(Default::default());
    }
    let mut errors = Vec::new();
    env::expand_tree(&mut tree, lookup, &mut errors);
    if !errors.is_empty() {
        return Err(fail(errors));
    }
    let source = tree.clone();
    let raw: raw::RawConfig = match serde_path_to_error::deserialize(tree) {
        Ok(raw) => raw,
        Err(e) => {
            let path = e.path().to_string();
            let path = if path == "." { String::new() } else { path };
            // serde quotes the offending value, which may be an expanded secret.
            let msg = redact_quoted_values(&e.into_inner().to_string());
            return Err(fail(vec![ConfigError::at(path, msg)]));
        }
    };
    let mut loaded = validate::validate(raw).map_err(fail)?;
    loaded.config.source = source;
    Ok(loaded)
}

/// The config as JSON with every secret replaced by `"<redacted>"`: client keys and their
/// hashes, provider credentials and extra header values, the management secret, and the
/// password of a Postgres store URL.
pub fn redacted(source: &serde_yaml::Value) -> serde_json::Value {
    use serde_yaml::Value as Y;
    const HIDDEN: &str = "<redacted>";
    let mut v = source.clone();
    let hide = |x: &mut Y| {
        if !x.is_null() {
            *x = Y::String(HIDDEN.into());
        }
    };
    if let Some(providers) = v.get_mut("providers").and_then(Y::as_mapping_mut) {
        for (_, p) in providers.iter_mut() {
            match p.get_mut("credentials") {
                Some(Y::Sequence(creds)) => creds.iter_mut().for_each(hide),
                Some(other) => hide(other),
                None => {}
            }
            if let Some(headers) = p.get_mut("headers").and_then(Y::as_mapping_mut) {
                headers.iter_mut().for_each(|(_, h)| hide(h));
            }
        }
    }
    if let Some(keys) = v.get_mut("keys").and_then(Y::as_sequence_mut) {
        for k in keys.iter_mut() {
            for field in ["key", "key_sha256"] {
                if let Some(x) = k.get_mut(field) {
                    hide(x);
                }
            }
        }
    }
    if let Some(x) = v
        .get_mut("management")
        .and_then(|m| m.get_mut("secret_key"))
    {
        hide(x);
    }
    // A Postgres or Redis URL may carry a password: shown as scheme://user:***@host/db.
    for path in [&["store", "url"][..], &["cluster", "redis", "url"][..]] {
        let mut node = Some(&mut v);
        for p in path {
            node = node.and_then(|n| n.get_mut(*p));
        }
        if let Some(url) = node {
            if let Some(text) = url.as_str() {
                *url = Y::String(crate::store::redact_password(text));
            }
        }
    }
    serde_json::to_value(&v).unwrap_or(serde_json::Value::Null)
}

/// `invalid type: string "sk-..."` -> `invalid type: string (value hidden)`.
fn redact_quoted_values(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut rest = msg;
    while let Some(i) = rest.find("string \"") {
        out.push_str(&rest[..i]);
        out.push_str("string (value hidden)");
        let after = &rest[i + 8..];
        // Skip to the closing quote, honouring backslash escapes.
        let mut end = after.len();
        let mut escaped = false;
        for (j, ch) in after.char_indices() {
            match ch {
                '\\' if !escaped => escaped = true,
                '"' if !escaped => {
                    end = j + 1;
                    break;
                }
                _ => escaped = false,
            }
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

fn yaml_error(e: &serde_yaml::Error) -> ConfigError {
    ConfigError {
        path: String::new(),
        line_col: e.location().map(|l| (l.line(), l.column())),
        message: format!("YAML syntax error: {e}"),
    }
}

#[cfg(test)]
mod tests;
