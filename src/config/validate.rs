//! Raw config -> validated `Config`. Every error names the YAML path of the offending
//! field; all errors are collected so one `-t` run shows every problem at once.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use indexmap::IndexMap;
use sha2::{Digest, Sha256};

use super::raw::*;
use super::{cluster, keys, spend};
use super::{Config, ConfigError, Loaded, ManagementSettings, RetryPolicy, ServerSettings};
use crate::auth::parse_ip_net;
use crate::routing::{is_pattern, ModelRoute, ModelTable, Target};
use crate::upstream::{
    BaseUrl, HealthCheck, Provider, ProviderKind, ProviderSpec, ResponsesApi, Timeouts,
};

const MAX_WEIGHT: u32 = 1000;

pub(super) struct Ctx {
    pub(super) errors: Vec<ConfigError>,
    pub(super) warnings: Vec<String>,
}

impl Ctx {
    pub(super) fn err(&mut self, path: impl Into<String>, msg: impl Into<String>) {
        self.errors.push(ConfigError::at(path, msg));
    }
}

pub fn validate(raw: RawConfig) -> Result<Loaded, Vec<ConfigError>> {
    let mut cx = Ctx {
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    // An empty file (or one a bad edit emptied) must not go live: every client would get
    // 401 or 404 until someone noticed. Keys may come from the keys API instead, when
    // the management API is on.
    if raw.providers.is_empty() {
        cx.err("providers", "at least one provider is needed");
    }
    if raw.models.is_empty() {
        cx.err("models", "at least one model is needed");
    }
    let management_on = raw
        .management
        .secret_key
        .as_deref()
        .is_some_and(|s| !s.trim().is_empty());
    if raw.keys.is_empty() && !management_on {
        cx.err(
            "keys",
            "at least one key is needed (or a management.secret_key, to make keys through the keys API)",
        );
    }
    let server = server(&mut cx, raw.server);
    let providers = providers(&mut cx, raw.providers);
    let prices = spend::prices(&mut cx, &raw.pricing);
    let models = models(&mut cx, raw.models, &providers, &prices);
    let keys = keys::keys(&mut cx, raw.keys);
    let retry = retry(&mut cx, raw.retry);
    let management = management(&mut cx, raw.management);
    let store = spend::store(&mut cx, raw.store);
    let teams = spend::teams(&mut cx, raw.teams);
    let cluster = cluster::cluster(&mut cx, raw.cluster, &store);
    spend::check_key_teams(&mut cx, &keys, &teams);
    spend::warn_unpriced(&mut cx, &models, &prices);
    if !cx.errors.is_empty() {
        return Err(cx.errors);
    }
    Ok(Loaded {
        config: Config {
            server,
            providers,
            models,
            keys,
            retry,
            management,
            store,
            prices,
            teams,
            cluster,
            source: serde_yaml::Value::Null,
        },
        warnings: cx.warnings,
    })
}

fn socket_addr(cx: &mut Ctx, path: &str, s: &str) -> Option<String> {
    match s.trim().parse::<SocketAddr>() {
        Ok(a) => Some(a.to_string()),
        Err(_) => {
            cx.err(
                path,
                format!(
                    "{s:?} is not an IP:port address (e.g. \"0.0.0.0:8080\" or \"[::1]:8080\")"
                ),
            );
            None
        }
    }
}

// Long on purpose: one field after another, each with its own check and message.
fn server(cx: &mut Ctx, raw: RawServer) -> ServerSettings {
    let listen_raw = raw
        .listen
        .unwrap_or_else(|| vec!["0.0.0.0:8080".to_string()]);
    if listen_raw.is_empty() {
        cx.err("server.listen", "at least one listen address is required");
    }
    let listen = listen_raw
        .iter()
        .enumerate()
        .filter_map(|(i, s)| socket_addr(cx, &format!("server.listen[{i}]"), s))
        .collect::<Vec<_>>();
    let metrics_listen = match raw.metrics_listen.as_deref().map(str::trim) {
        None => Some("127.0.0.1:9091".to_string()),
        Some("") => None,
        Some(s) => socket_addr(cx, "server.metrics_listen", s),
    };
    if let Some(m) = &metrics_listen {
        if listen.contains(m) {
            cx.err(
                "server.metrics_listen",
                "must differ from server.listen: metrics are never served on the public listener",
            );
        }
    }
    let threads = raw.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    if threads == 0 || threads > 1024 {
        cx.err("server.threads", "must be between 1 and 1024");
    }
    let max_body_bytes = raw.max_body_bytes.unwrap_or(10 * 1024 * 1024);
    if max_body_bytes < 1024 {
        cx.err("server.max_body_bytes", "must be at least 1024");
    }
    let trusted_proxies = raw
        .trusted_proxies
        .iter()
        .enumerate()
        .filter_map(|(i, s)| match parse_ip_net(s) {
            Some(n) => Some(n),
            None => {
                cx.err(
                    format!("server.trusted_proxies[{i}]"),
                    format!("{s:?} is not an IP address or CIDR range"),
                );
                None
            }
        })
        .collect();
    let log_format = match raw.log_format.as_deref() {
        None | Some("text") => super::LogFormat::Text,
        Some("json") => super::LogFormat::Json,
        Some(other) => {
            cx.err(
                "server.log_format",
                format!("unknown format {other:?} (expected text or json)"),
            );
            super::LogFormat::Text
        }
    };
    ServerSettings {
        log_format,
        listen,
        metrics_listen,
        threads,
        max_body_bytes,
        grace_period: raw.grace_period.unwrap_or(Duration::from_secs(30)),
        drain_delay: raw.drain_delay.unwrap_or(Duration::from_secs(5)),
        trusted_proxies,
        upgrade_sock: raw
            .upgrade_sock
            .unwrap_or_else(|| "/tmp/modelgate_upgrade.sock".to_string()),
        pid_file: raw
            .pid_file
            .unwrap_or_else(|| "/tmp/modelgate.pid".to_string()),
        header_timeout: positive(
            cx,
            "server.header_timeout".into(),
            raw.header_timeout,
            Duration::from_secs(10),
        ),
        websocket_idle_timeout: positive(
            cx,
            "server.websocket_idle_timeout".into(),
            raw.websocket_idle_timeout,
            Duration::from_secs(300),
        ),
        websocket_max_duration: positive(
            cx,
            "server.websocket_max_duration".into(),
            raw.websocket_max_duration,
            Duration::from_secs(3600),
        ),
        ca_file: raw.ca_file.filter(|f| {
            let ok = std::path::Path::new(f).is_file();
            if !ok {
                cx.err("server.ca_file", format!("{f:?} is not a readable file"));
            }
            ok
        }),
    }
}

/// `YYYY-MM-DD`, as Anthropic names its API versions.
fn is_api_version(v: &str) -> bool {
    let b = v.as_bytes();
    b.len() == 10
        && b.iter().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        })
}

fn positive(cx: &mut Ctx, path: String, d: Option<Duration>, default: Duration) -> Duration {
    let d = d.unwrap_or(default);
    if d.is_zero() {
        cx.err(path, "must be greater than zero");
    }
    d
}

pub(super) fn trimmed_secret(cx: &mut Ctx, path: &str, s: &str) -> Option<String> {
    let t = s.trim();
    if t.is_empty() {
        cx.err(path, "is empty (is the environment variable set?)");
        return None;
    }
    if t.len() != s.len() {
        cx.warnings.push(format!(
            "{path}: leading/trailing whitespace trimmed from the secret"
        ));
    }
    Some(t.to_string())
}

fn providers(cx: &mut Ctx, raw: IndexMap<String, RawProvider>) -> IndexMap<String, Arc<Provider>> {
    let mut out = IndexMap::new();
    for (name, p) in raw {
        let base = format!("providers.{name}");
        if name.trim().is_empty() {
            cx.err("providers", "a provider name is empty");
            continue;
        }
        let kind = match ProviderKind::parse(&p.kind) {
            Some(k) => Some(k),
            None => {
                cx.err(
                    format!("{base}.kind"),
                    format!(
                        "unknown kind {:?} (expected openai, anthropic or gemini)",
                        p.kind
                    ),
                );
                None
            }
        };
        let url = match BaseUrl::parse(&p.base_url) {
            Ok(u) => Some(u),
            Err(msg) => {
                cx.err(format!("{base}.base_url"), msg);
                None
            }
        };
        let credentials = credentials(cx, &base, &p.credentials);
        let timeouts = timeouts(cx, &base, &p.timeouts);
        let health_check = p.health_check.map(|h| health_check(cx, &base, h));
        let headers = extra_headers(cx, &base, &p.headers);
        if p.responses_api == Some(true) && kind != Some(ProviderKind::OpenAi) {
            cx.err(
                format!("{base}.responses_api"),
                "applies only to kind: openai (other kinds are reached by translation)",
            );
        }
        if p.stream_usage.is_some() && kind != Some(ProviderKind::OpenAi) {
            cx.err(
                format!("{base}.stream_usage"),
                "applies only to kind: openai (the other kinds always report usage)",
            );
        }
        let anthropic_version = match (&p.anthropic_version, kind) {
            (None, _) => crate::translate::anthropic::DEFAULT_VERSION.to_string(),
            (Some(v), Some(ProviderKind::Anthropic)) if is_api_version(v) => v.clone(),
            (Some(v), Some(ProviderKind::Anthropic)) => {
                cx.err(
                    format!("{base}.anthropic_version"),
                    format!(
                        "{v:?} is not an API version (YYYY-MM-DD, e.g. 2026-10-21 or 2023-06-01)"
                    ),
                );
                String::new()
            }
            (Some(_), _) => {
                cx.err(
                    format!("{base}.anthropic_version"),
                    "applies only to kind: anthropic",
                );
                String::new()
            }
        };
        if let (Some(kind), Some(url)) = (kind, url) {
            // Unset: passthrough, falling back to translation if the server turns out
            // to lack /v1/responses.
            let responses_api = match (kind, p.responses_api) {
                (ProviderKind::OpenAi, Some(true)) => ResponsesApi::Yes,
                (ProviderKind::OpenAi, None) => ResponsesApi::Auto,
                _ => ResponsesApi::No,
            };
            out.insert(
                name.clone(),
                Arc::new(Provider::new(ProviderSpec {
                    name,
                    kind,
                    url,
                    credentials,
                    timeouts,
                    health_check,
                    headers,
                    responses_api,
                    stream_usage: p.stream_usage.unwrap_or(true),
                    anthropic_version,
                })),
            );
        } else {
            // Keep the name known so targets naming it do not report a second, misleading error.
            out.insert(name.clone(), Arc::new(Provider::placeholder(name)));
        }
    }
    out
}

fn credentials(cx: &mut Ctx, base: &str, raw: &[String]) -> Vec<String> {
    raw.iter()
        .enumerate()
        .filter_map(|(i, c)| {
            let path = format!("{base}.credentials[{i}]");
            let c = trimmed_secret(cx, &path, c)?;
            if HeaderValue::from_str(&c).is_err() {
                cx.err(
                    path,
                    "contains characters that cannot be sent in an HTTP header",
                );
                return None;
            }
            Some(c)
        })
        .collect()
}

fn timeouts(cx: &mut Ctx, base: &str, raw: &RawTimeouts) -> Timeouts {
    Timeouts {
        connect: positive(
            cx,
            format!("{base}.timeouts.connect"),
            raw.connect,
            Duration::from_secs(5),
        ),
        first_byte: positive(
            cx,
            format!("{base}.timeouts.first_byte"),
            raw.first_byte,
            Duration::from_secs(120),
        ),
        idle: positive(
            cx,
            format!("{base}.timeouts.idle"),
            raw.idle,
            Duration::from_secs(60),
        ),
    }
}

fn health_check(cx: &mut Ctx, base: &str, h: RawHealthCheck) -> HealthCheck {
    if !h.path.starts_with('/') {
        cx.err(
            format!("{base}.health_check.path"),
            "must start with '/' (e.g. /v1/models)",
        );
    }
    HealthCheck {
        path: h.path,
        interval: positive(
            cx,
            format!("{base}.health_check.interval"),
            h.interval,
            Duration::from_secs(15),
        ),
        timeout: positive(
            cx,
            format!("{base}.health_check.timeout"),
            h.timeout,
            Duration::from_secs(5),
        ),
        healthy_threshold: h.healthy_threshold.unwrap_or(1).max(1),
        unhealthy_threshold: h.unhealthy_threshold.unwrap_or(2).max(1),
    }
}

fn extra_headers(
    cx: &mut Ctx,
    base: &str,
    raw: &IndexMap<String, String>,
) -> Vec<(HeaderName, HeaderValue)> {
    let mut headers = Vec::new();
    for (k, v) in raw {
        let path = format!("{base}.headers.{k}");
        match (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            (Ok(n), Ok(v)) => headers.push((n, v)),
            (Err(_), _) => cx.err(path, "is not a valid HTTP header name"),
            (_, Err(_)) => cx.err(path, "is not a valid HTTP header value"),
        }
    }
    headers
}

// Long on purpose: one model field after another, each with its own check and message.
fn models(
    cx: &mut Ctx,
    raw: IndexMap<String, RawModel>,
    providers: &IndexMap<String, Arc<Provider>>,
    prices: &crate::spend::PriceTable,
) -> ModelTable {
    let mut routes = Vec::new();
    let mut seen_names: HashMap<String, String> = HashMap::new(); // name/alias -> where defined
    for (name, m) in &raw {
        let base = format!("models.{name}");
        if name.trim().is_empty() {
            cx.err("models", "a model name is empty");
            continue;
        }
        let pattern = is_pattern(name);
        if let Some(prev) = seen_names.insert(name.clone(), base.clone()) {
            cx.err(&base, format!("{name:?} is already defined at {prev}"));
        }
        for (i, alias) in m.aliases.iter().enumerate() {
            let path = format!("{base}.aliases[{i}]");
            if is_pattern(alias) {
                cx.err(&path, "an alias cannot be a wildcard pattern");
            } else if pattern {
                cx.err(&path, "a wildcard model cannot have aliases");
            } else if let Some(prev) = seen_names.insert(alias.clone(), path.clone()) {
                cx.err(&path, format!("{alias:?} is already defined at {prev}"));
            }
        }
        if m.targets.is_empty() {
            cx.err(format!("{base}.targets"), "at least one target is required");
        }
        let mut targets = Vec::new();
        for (i, t) in m.targets.iter().enumerate() {
            let path = format!("{base}.targets[{i}]");
            let weight = t.weight.unwrap_or(1);
            if weight > MAX_WEIGHT {
                cx.err(
                    format!("{path}.weight"),
                    format!("must be at most {MAX_WEIGHT}"),
                );
            }
            if let Some(model) = &t.model {
                if model.trim().is_empty() {
                    cx.err(format!("{path}.model"), "is empty");
                }
            }
            match providers.get(&t.provider) {
                Some(p) => targets.push(Target {
                    price: t
                        .model
                        .as_deref()
                        .and_then(|m| prices.lookup(&t.provider, m)),
                    provider: p.clone(),
                    model: t.model.clone(),
                    weight,
                }),
                None => {
                    let known = providers.keys().cloned().collect::<Vec<_>>().join(", ");
                    cx.err(
                        format!("{path}.provider"),
                        format!("unknown provider {:?} (known: {known})", t.provider),
                    );
                }
            }
        }
        if !targets.is_empty() && targets.iter().all(|t| t.weight == 0) {
            cx.err(
                format!("{base}.targets"),
                "every target has weight 0; at least one must take traffic",
            );
        }
        for (i, f) in m.fallbacks.iter().enumerate() {
            let path = format!("{base}.fallbacks[{i}]");
            if f == name {
                cx.err(&path, "a model cannot fall back to itself");
            } else if !raw.contains_key(f) || is_pattern(f) {
                cx.err(
                    &path,
                    format!("unknown model {f:?} (fallbacks name models defined under models:)"),
                );
            }
        }
        if m.max_tokens == Some(0) {
            cx.err(format!("{base}.max_tokens"), "must be at least 1");
        }
        let mut route = ModelRoute::new(
            name.clone(),
            m.aliases.clone(),
            targets,
            m.fallbacks.clone(),
            pattern,
        );
        route.max_tokens = m.max_tokens;
        route.limits = m
            .limits
            .as_ref()
            .map(|l| keys::limit_set(cx, &format!("{base}.limits"), l));
        routes.push(Arc::new(route));
    }
    if let Some(cycle) = fallback_cycle(&raw) {
        cx.err(
            format!("models.{}.fallbacks", cycle[0]),
            format!("fallbacks form a cycle: {}", cycle.join(" -> ")),
        );
    }
    ModelTable::build(routes)
}

/// Returns one fallback cycle, e.g. `[a, b, a]`, if any exists.
fn fallback_cycle(raw: &IndexMap<String, RawModel>) -> Option<Vec<String>> {
    fn visit<'a>(
        n: &'a str,
        raw: &'a IndexMap<String, RawModel>,
        stack: &mut Vec<&'a str>,
        done: &mut HashSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(pos) = stack.iter().position(|s| *s == n) {
            let mut c: Vec<String> = stack[pos..].iter().map(|s| s.to_string()).collect();
            c.push(n.to_string());
            return Some(c);
        }
        if !done.insert(n) {
            return None;
        }
        stack.push(n);
        for f in raw.get(n).map(|m| m.fallbacks.as_slice()).unwrap_or(&[]) {
            if f != n {
                if let Some(c) = visit(f, raw, stack, done) {
                    return Some(c);
                }
            }
        }
        stack.pop();
        None
    }
    let mut done = HashSet::new();
    for n in raw.keys() {
        if let Some(c) = visit(n, raw, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

fn retry(cx: &mut Ctx, raw: RawRetry) -> RetryPolicy {
    let max_attempts = raw.max_attempts.unwrap_or(3);
    if !(1..=10).contains(&max_attempts) {
        cx.err("retry.max_attempts", "must be between 1 and 10");
    }
    let on_status = raw
        .on_status
        .unwrap_or_else(|| vec![429, 500, 502, 503, 504]);
    for (i, s) in on_status.iter().enumerate() {
        if !(400..=599).contains(s) {
            cx.err(
                format!("retry.on_status[{i}]"),
                format!("{s} is not an HTTP error status (400-599)"),
            );
        }
    }
    let budget = raw.budget.unwrap_or(0.2);
    if !(0.0..=10.0).contains(&budget) {
        cx.err(
            "retry.budget",
            "must be between 0 and 10 (a fraction of first attempts, e.g. 0.2)",
        );
    }
    RetryPolicy {
        max_attempts,
        on_status,
        cooldown: raw.cooldown.unwrap_or(Duration::from_secs(30)),
        budget,
        budget_min: raw.budget_min.unwrap_or(10),
    }
}

fn management(cx: &mut Ctx, raw: RawManagement) -> ManagementSettings {
    let secret_sha256 = match raw.secret_key.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(s) => trimmed_secret(cx, "management.secret_key", s)
            .map(|s| Sha256::digest(s.as_bytes()).into()),
    };
    let log_buffer = raw.log_buffer.unwrap_or(1000);
    if log_buffer > 100_000 {
        cx.err("management.log_buffer", "must be at most 100000");
    }
    ManagementSettings {
        secret_sha256,
        allow_remote: raw.allow_remote,
        log_buffer,
    }
}
