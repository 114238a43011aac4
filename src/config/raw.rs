//! The config file as written: serde structs that mirror the YAML one to one.
//! Unknown fields are rejected everywhere, so a typo can never silently disable a setting.
//! Nothing here is validated beyond its type; `validate.rs` turns this into the runtime model.

use indexmap::IndexMap;
use serde::{Deserialize, Deserializer, Serialize};
use std::time::Duration;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub providers: IndexMap<String, RawProvider>,
    #[serde(default)]
    pub models: IndexMap<String, RawModel>,
    #[serde(default)]
    pub keys: Vec<RawKey>,
    #[serde(default)]
    pub retry: RawRetry,
    #[serde(default)]
    pub management: RawManagement,
    #[serde(default)]
    pub store: RawStore,
    /// USD per 1M tokens by provider model name or glob, over the built-in prices.
    #[serde(default)]
    pub pricing: IndexMap<String, crate::spend::Price>,
    #[serde(default)]
    pub teams: IndexMap<String, RawTeam>,
    /// Several replicas as one: limits, budgets, cooldowns shared through Redis.
    pub cluster: Option<RawCluster>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    pub redis: Option<RawRedis>,
    pub on_error: Option<String>,
    pub replicas: Option<u32>,
    /// How long a concurrency slot of a replica that stopped answering stays taken.
    #[serde(default, deserialize_with = "duration_opt")]
    pub lease_ttl: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedis {
    #[serde(default, deserialize_with = "string_lenient_opt")]
    pub url: Option<String>,
    #[serde(default, deserialize_with = "duration_opt")]
    pub timeout: Option<Duration>,
    pub prefix: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    pub url: Option<String>,
    #[serde(default, deserialize_with = "duration_opt")]
    pub flush_interval: Option<Duration>,
    pub buffer: Option<usize>,
    #[serde(default)]
    pub retention: RawRetention,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetention {
    #[serde(default, deserialize_with = "duration_opt")]
    pub records: Option<Duration>,
    #[serde(default, deserialize_with = "duration_opt")]
    pub rollups: Option<Duration>,
    #[serde(default, deserialize_with = "duration_opt")]
    pub objects: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTeam {
    #[serde(default)]
    pub budgets: Vec<RawBudget>,
    pub budget_timezone: Option<String>,
}

/// One of `usd`, `tokens`, `requests`, with a period.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawBudget {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usd: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// `text` (default) or `json` access log lines.
    pub log_format: Option<String>,
    #[serde(default, deserialize_with = "one_or_many")]
    pub listen: Option<Vec<String>>,
    /// `""` disables the metrics listener.
    pub metrics_listen: Option<String>,
    pub threads: Option<usize>,
    pub max_body_bytes: Option<usize>,
    #[serde(default, deserialize_with = "duration_opt")]
    pub grace_period: Option<Duration>,
    #[serde(default, deserialize_with = "duration_opt")]
    pub drain_delay: Option<Duration>,
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Pingora's upgrade socket, for `-u` zero-downtime upgrades.
    pub upgrade_sock: Option<String>,
    pub pid_file: Option<String>,
    /// PEM bundle of CAs trusted for HTTPS providers instead of the system roots.
    pub ca_file: Option<String>,
    #[serde(default, deserialize_with = "duration_opt")]
    pub header_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "duration_opt")]
    pub websocket_idle_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "duration_opt")]
    pub websocket_max_duration: Option<Duration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    pub kind: String,
    pub base_url: String,
    #[serde(default, deserialize_with = "strings_lenient")]
    pub credentials: Vec<String>,
    #[serde(default)]
    pub timeouts: RawTimeouts,
    pub health_check: Option<RawHealthCheck>,
    #[serde(default)]
    pub headers: IndexMap<String, String>,
    /// OpenAI kind: whether the server has `/v1/responses` (default: only api.openai.com).
    pub responses_api: Option<bool>,
    /// OpenAI kind: ask for the usage of Chat streams whose client did not (default true).
    pub stream_usage: Option<bool>,
    /// Anthropic kind: the Messages API version sent (and followed) on translated requests.
    pub anthropic_version: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTimeouts {
    #[serde(default, deserialize_with = "duration_opt")]
    pub connect: Option<Duration>,
    #[serde(default, deserialize_with = "duration_opt")]
    pub first_byte: Option<Duration>,
    #[serde(default, deserialize_with = "duration_opt")]
    pub idle: Option<Duration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealthCheck {
    pub path: String,
    #[serde(default, deserialize_with = "duration_opt")]
    pub interval: Option<Duration>,
    #[serde(default, deserialize_with = "duration_opt")]
    pub timeout: Option<Duration>,
    pub healthy_threshold: Option<u32>,
    pub unhealthy_threshold: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub targets: Vec<RawTarget>,
    #[serde(default)]
    pub fallbacks: Vec<String>,
    /// Output-token default for providers that require one (Anthropic) and the cap applied
    /// to what clients ask for when a request is translated.
    pub max_tokens: Option<u64>,
    /// Limits for this model across all keys (a provider quota everyone shares).
    pub limits: Option<RawLimitSet>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    pub provider: String,
    pub model: Option<String>,
    pub weight: Option<u32>,
}

/// A client key, in the config file or in the body of `POST /v0/management/keys`.
/// Serialized (for the keys API's answers) without its secret.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawKey {
    pub name: String,
    #[serde(default, deserialize_with = "string_lenient_opt", skip_serializing)]
    pub key: Option<String>,
    #[serde(default, deserialize_with = "string_lenient_opt", skip_serializing)]
    pub key_sha256: Option<String>,
    pub models: Option<Vec<String>>,
    #[serde(default)]
    pub limits: RawLimits,
    pub expires_at: Option<String>,
    #[serde(default)]
    pub allowed_ips: Vec<String>,
    #[serde(default)]
    pub disabled: bool,
    pub team: Option<String>,
    #[serde(default)]
    pub budgets: Vec<RawBudget>,
    pub budget_timezone: Option<String>,
    /// Free-form labels (owner, project...), shown by the keys API; never used to route.
    #[serde(default)]
    pub metadata: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize, Serialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tpm: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u64>,
    /// Limits for groups of models (a name or a glob) within the key.
    #[serde(default)]
    pub models: IndexMap<String, RawLimitSet>,
}

#[derive(Debug, Default, Deserialize, Serialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawLimitSet {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tpm: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetry {
    pub max_attempts: Option<u32>,
    pub on_status: Option<Vec<u16>>,
    #[serde(default, deserialize_with = "duration_opt")]
    pub cooldown: Option<Duration>,
    /// Retries may add at most this fraction on top of first attempts (sliding 10 s).
    pub budget: Option<f64>,
    /// Retries always allowed per 10 s window, so a quiet gateway can still fail over.
    pub budget_min: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawManagement {
    #[serde(default, deserialize_with = "string_lenient_opt")]
    pub secret_key: Option<String>,
    #[serde(default)]
    pub allow_remote: bool,
    /// Access records kept in memory for `GET /v0/management/logs`.
    pub log_buffer: Option<usize>,
}

/// `"5s"`, `"500ms"`, `"2m"`; a bare number is seconds.
fn duration_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Secs(u64),
        Text(String),
    }
    match Option::<Raw>::deserialize(d)? {
        None => Ok(None),
        Some(Raw::Secs(s)) => Ok(Some(Duration::from_secs(s))),
        Some(Raw::Text(t)) => humantime::parse_duration(t.trim()).map(Some).map_err(|e| {
            serde::de::Error::custom(format!(
                "invalid duration {t:?} ({e}); write it like 500ms, 5s or 2m"
            ))
        }),
    }
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<Raw>::deserialize(d)? {
        None => None,
        Some(Raw::One(s)) => Some(vec![s]),
        Some(Raw::Many(v)) => Some(v),
    })
}

/// A secret made only of digits must still be a string (`${KEY}` may expand to `12345`).
#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    Text(String),
    Int(i64),
    Uint(u64),
}

impl From<Scalar> for String {
    fn from(s: Scalar) -> String {
        match s {
            Scalar::Text(t) => t,
            Scalar::Int(i) => i.to_string(),
            Scalar::Uint(u) => u.to_string(),
        }
    }
}

fn string_lenient_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<Scalar>::deserialize(d)?.map(String::from))
}

/// One secret or a list of them (`credentials: "${KEY}"` is a common slip).
fn strings_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(Scalar),
        Many(Vec<Scalar>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![String::from(s)],
        OneOrMany::Many(v) => v.into_iter().map(String::from).collect(),
    })
}
