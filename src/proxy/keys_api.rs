//! The keys API (`/v0/management/keys`), the audit log and provider resets: the
//! management endpoints that change who may call the gateway. Every change is audited.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use pingora::proxy::Session;
use pingora::Result;
use serde_json::{json, Map, Value};

use super::body::{self, BodyError};
use super::ctx::RequestCtx;
use super::local;
use super::usage_api;
use crate::audit::{self, Event};
use crate::auth::{query_param, ClientKey};
use crate::config::ConfigError;
use crate::errors::{ErrorCode, GatewayError};
use crate::keys::{self, KeyError};
use crate::runtime::Runtime;
use crate::store::keys::{self as store_keys};
use crate::store::Store;

/// Names label metrics and sit in URL paths: kept to characters that need no escaping.
const NAME_CHARS: &str = "letters, digits, '.', '_', '-' and '@'";

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-' | b'@'))
}

fn ms_rfc3339(ms: i64) -> Option<String> {
    if ms <= 0 {
        return None;
    }
    jiff::Timestamp::from_millisecond(ms)
        .ok()
        .map(|t| t.to_string())
}

/// A key as the API shows it: every field a config key has, never a secret or hash.
fn key_json(k: &ClientKey) -> Map<String, Value> {
    let f = &k.fields;
    let mut m = Map::new();
    m.insert("name".into(), json!(k.name));
    m.insert("source".into(), json!(k.origin.as_str()));
    m.insert(
        "key_hint".into(),
        if k.hint.is_empty() {
            Value::Null
        } else {
            json!(k.hint)
        },
    );
    m.insert("models".into(), json!(f.models));
    m.insert("limits".into(), json!(f.limits));
    m.insert("budgets".into(), json!(f.budgets));
    m.insert("budget_timezone".into(), json!(f.budget_timezone));
    m.insert("team".into(), json!(k.team));
    m.insert("expires_at".into(), json!(f.expires_at));
    m.insert("allowed_ips".into(), json!(f.allowed_ips));
    m.insert("disabled".into(), json!(k.disabled));
    m.insert("metadata".into(), json!(f.metadata));
    m.insert(
        "created_at".into(),
        json!(k.created_ms.and_then(ms_rfc3339)),
    );
    m.insert(
        "last_used_at".into(),
        json!(ms_rfc3339(
            k.last_used_ms.load(std::sync::atomic::Ordering::Relaxed)
        )),
    );
    m
}

/// One key with how much each of its budgets has used.
fn key_detail(runtime: &Runtime, ctx: &RequestCtx, k: &ClientKey) -> Map<String, Value> {
    let mut m = key_json(k);
    let statuses = usage_api::key_budgets(runtime, ctx, k);
    let budgets: Vec<Value> = statuses.iter().map(usage_api::budget_json).collect();
    m.insert("budgets".into(), Value::Array(budgets));
    m
}

fn store_error(msg: impl std::fmt::Display) -> GatewayError {
    let mut e = GatewayError::new(
        ErrorCode::StoreUnavailable,
        format!("the store is unavailable: {msg}"),
    );
    e.retry_after = Some(5);
    e
}

fn store_of(runtime: &Runtime) -> Result<Arc<Store>, GatewayError> {
    runtime
        .state
        .store()
        .ok_or_else(|| store_error("it is not open (yet)"))
}

/// 400 with each bad field: `error.message` lists them, `errors` has them one by one.
async fn respond_invalid(
    session: &mut Session,
    ctx: &mut RequestCtx,
    errors: &[ConfigError],
) -> Result<bool> {
    let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    let e = GatewayError::new(
        ErrorCode::InvalidRequest,
        format!("the key is invalid; nothing changed: {}", lines.join("; ")),
    );
    let mut body: Value = serde_json::from_slice(&e.body(ctx.protocol)).unwrap_or_default();
    body["errors"] = errors
        .iter()
        .map(|e| json!({"field": e.path, "message": e.message}))
        .collect();
    if let Some(first) = errors.first() {
        body["error"]["param"] = json!(first.path);
    }
    ctx.error = Some(e);
    let bytes = Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
    local::respond(session, ctx, 400, "application/json", bytes, &[]).await
}

/// What a keys call answers when it did not happen.
enum Failure {
    Invalid(Vec<ConfigError>),
    Error(GatewayError),
}

impl Failure {
    fn code(&self) -> &'static str {
        match self {
            Failure::Invalid(_) => ErrorCode::InvalidRequest.as_str(),
            Failure::Error(e) => e.code.as_str(),
        }
    }

    fn detail(&self) -> String {
        match self {
            Failure::Invalid(errors) => errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; "),
            Failure::Error(e) => e.message.clone(),
        }
    }
}

impl From<GatewayError> for Failure {
    fn from(e: GatewayError) -> Self {
        Failure::Error(e)
    }
}

fn key_failure(name: &str, e: KeyError) -> Failure {
    match e {
        KeyError::Invalid(errors) => Failure::Invalid(errors),
        KeyError::Exists => Failure::Error(GatewayError::new(
            ErrorCode::KeyExists,
            format!("a key named {name:?} already exists; choose another name"),
        )),
        KeyError::NotFound => Failure::Error(not_found(name)),
        KeyError::Store(msg) => Failure::Error(store_error(msg)),
    }
}

fn not_found(name: &str) -> GatewayError {
    GatewayError::new(
        ErrorCode::KeyNotFound,
        format!("no key named {name:?} (GET /v0/management/keys lists them)"),
    )
}

async fn read_json(
    session: &mut Session,
    ctx: &RequestCtx,
    empty_ok: bool,
) -> Result<std::result::Result<Map<String, Value>, GatewayError>> {
    let max = ctx.config.server.max_body_bytes;
    let bytes = match body::read_request_body(session, max, None).await {
        Ok(b) => b,
        Err(BodyError::Read(e)) => return Ok(Err(body::unreadable(session, &e))),
        Err(_) => {
            return Ok(Err(GatewayError::new(
                ErrorCode::RequestTooLarge,
                "the body is larger than server.max_body_bytes",
            )))
        }
    };
    if bytes.iter().all(u8::is_ascii_whitespace) && empty_ok {
        return Ok(Ok(Map::new()));
    }
    Ok(match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(GatewayError::new(
            ErrorCode::InvalidRequest,
            "the body must be a JSON object",
        )),
        Err(e) => Err(GatewayError::new(
            ErrorCode::InvalidRequest,
            format!("the body is not valid JSON: {e}"),
        )),
    })
}

async fn answer(
    session: &mut Session,
    ctx: &mut RequestCtx,
    runtime: &Runtime,
    event: Event<'_>,
    result: std::result::Result<(u16, Value, Option<String>), Failure>,
) -> Result<bool> {
    let outcome = match &result {
        Ok((_, _, detail)) => Ok(detail.clone()),
        Err(f) => Err((f.code(), f.detail())),
    };
    audit::record(&runtime.state, event, outcome).await;
    match result {
        Ok((status, body, _)) => local::respond_json(session, ctx, status, &body).await,
        Err(Failure::Invalid(errors)) => respond_invalid(session, ctx, &errors).await,
        Err(Failure::Error(e)) => local::respond_error(session, ctx, e).await,
    }
}

/// `GET` lists every key; `POST` creates one.
pub async fn collection(
    session: &mut Session,
    ctx: &mut RequestCtx,
    runtime: &Arc<Runtime>,
    query: Option<&str>,
) -> Result<bool> {
    if session.req_header().method != http::Method::POST {
        // `?budgets=status`: each budget as it stands (used, remaining), as one key's GET
        // gives it, for lists that draw budget bars.
        let detail = query_param(query, "budgets").is_some_and(|v| v == "status");
        let show = |k: &ClientKey| {
            if detail {
                Value::Object(key_detail(runtime, ctx, k))
            } else {
                Value::Object(key_json(k))
            }
        };
        let mut list: Vec<Value> = ctx.config.keys.iter().map(|k| show(k)).collect();
        list.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        list.extend(runtime.state.keys.all().iter().map(|e| show(&e.key)));
        return local::respond_json(session, ctx, 200, &json!({ "keys": list })).await;
    }
    let body = read_json(session, ctx, false).await?;
    let name = match &body {
        Ok(m) => m
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .trim()
            .to_string(),
        Err(_) => String::new(),
    };
    let result = create(ctx, runtime, &name, body).await;
    let event = Event::management("key.create", &name, ctx.client_ip);
    answer(session, ctx, runtime, event, result).await
}

/// Other replicas apply a key change at once (their poll of the store would within 1 s).
fn tell_replicas(runtime: &Runtime) {
    if let Some(c) = &runtime.state.cluster {
        crate::cluster::events::keys_changed(c);
    }
}

async fn create(
    ctx: &RequestCtx,
    runtime: &Runtime,
    name: &str,
    body: std::result::Result<Map<String, Value>, GatewayError>,
) -> std::result::Result<(u16, Value, Option<String>), Failure> {
    let body = body?;
    if !valid_name(name) {
        return Err(Failure::Invalid(vec![ConfigError::at(
            "name",
            format!("is required: 1 to 128 of {NAME_CHARS}"),
        )]));
    }
    if ctx.config.keys.get_by_name(name).is_some() {
        return Err(GatewayError::new(
            ErrorCode::KeyExists,
            format!("a key named {name:?} is in the config file; choose another name"),
        )
        .into());
    }
    let raw = keys::parse_fields(Value::Object(body)).map_err(|e| key_failure(name, e))?;
    let store = store_of(runtime)?;
    let (entry, secret, mut warnings) = runtime
        .state
        .keys
        .create(&store, raw)
        .await
        .map_err(|e| key_failure(name, e))?;
    warnings.extend(team_warning(ctx, &entry.key));
    let mut out = key_json(&entry.key);
    out.insert("key".into(), json!(secret));
    if !warnings.is_empty() {
        out.insert("warnings".into(), json!(warnings));
    }
    tell_replicas(runtime);
    Ok((201, Value::Object(out), None))
}

/// A team nobody defines has no budgets: said, not refused (as `-t` does).
fn team_warning(ctx: &RequestCtx, k: &ClientKey) -> Option<String> {
    let team = k.team.as_ref()?;
    (!ctx.config.teams.contains_key(team)).then(|| {
        format!("team {team:?} is not under teams: in the config, so it has no budgets (its spend is still recorded under that team)")
    })
}

/// `GET`, `PATCH`, `DELETE /v0/management/keys/{name}` and `POST .../rotate`.
pub async fn item(
    session: &mut Session,
    ctx: &mut RequestCtx,
    runtime: &Arc<Runtime>,
    name: &str,
    rotate: bool,
) -> Result<bool> {
    let method = session.req_header().method.clone();
    if method == http::Method::GET || method == http::Method::HEAD {
        if let Some(k) = ctx.config.keys.get_by_name(name).cloned() {
            let body = Value::Object(key_detail(runtime, ctx, &k));
            return local::respond_json(session, ctx, 200, &body).await;
        }
        return match runtime.state.keys.get(name) {
            Some(e) => {
                let body = Value::Object(key_detail(runtime, ctx, &e.key));
                local::respond_json(session, ctx, 200, &body).await
            }
            None => local::respond_error(session, ctx, not_found(name)).await,
        };
    }
    let action = match (rotate, &method) {
        (true, _) => "key.rotate",
        (false, m) if m == http::Method::DELETE => "key.delete",
        _ => "key.update",
    };
    let body = if method == http::Method::DELETE {
        Ok(Map::new())
    } else {
        read_json(session, ctx, rotate).await?
    };
    let result = change(ctx, runtime, name, action, body).await;
    let event = Event::management(action, name, ctx.client_ip);
    answer(session, ctx, runtime, event, result).await
}

async fn change(
    ctx: &RequestCtx,
    runtime: &Runtime,
    name: &str,
    action: &str,
    body: std::result::Result<Map<String, Value>, GatewayError>,
) -> std::result::Result<(u16, Value, Option<String>), Failure> {
    let body = body?;
    if ctx.config.keys.get_by_name(name).is_some() {
        return Err(GatewayError::new(
            ErrorCode::KeyInConfig,
            format!("the key {name:?} is defined in the config file, which the keys API does not change; edit the file (or PUT /v0/management/config)"),
        )
        .into());
    }
    let store = store_of(runtime)?;
    let keys = &runtime.state.keys;
    let fail = |e| key_failure(name, e);
    let done = change_key(ctx, keys, &store, name, action, body, fail).await;
    if done.is_ok() {
        tell_replicas(runtime);
    }
    done
}

async fn change_key(
    ctx: &RequestCtx,
    keys: &keys::ApiKeys,
    store: &Store,
    name: &str,
    action: &str,
    body: Map<String, Value>,
    fail: impl Fn(KeyError) -> Failure,
) -> std::result::Result<(u16, Value, Option<String>), Failure> {
    match action {
        "key.delete" => {
            keys.delete(store, name).await.map_err(fail)?;
            Ok((200, json!({"name": name, "deleted": true}), None))
        }
        "key.rotate" => {
            let grace = match body.get("grace") {
                None | Some(Value::Null) => Duration::ZERO,
                Some(Value::String(s)) => humantime::parse_duration(s.trim()).map_err(|e| {
                    Failure::Invalid(vec![ConfigError::at(
                        "grace",
                        format!("{s:?} is not a duration like \"1h\" or \"30m\": {e}"),
                    )])
                })?,
                Some(_) => {
                    return Err(Failure::Invalid(vec![ConfigError::at(
                        "grace",
                        "must be a duration string like \"1h\"",
                    )]))
                }
            };
            if let Some(other) = body.keys().find(|k| *k != "grace") {
                return Err(Failure::Invalid(vec![ConfigError::at(
                    other.as_str(),
                    "is not a rotate option (only grace)",
                )]));
            }
            let (entry, secret) = keys.rotate(store, name, grace).await.map_err(fail)?;
            let mut out = key_json(&entry.key);
            out.insert("key".into(), json!(secret));
            out.insert(
                "previous_key_valid_until".into(),
                json!(entry.row.old_until_ms.and_then(ms_rfc3339)),
            );
            let detail = format!("grace {}", humantime::format_duration(grace));
            Ok((200, Value::Object(out), Some(detail)))
        }
        _ => {
            let fields: Vec<String> = body.keys().cloned().collect();
            let (entry, mut warnings) = keys.update(store, name, body).await.map_err(fail)?;
            warnings.extend(team_warning(ctx, &entry.key));
            let mut out = key_json(&entry.key);
            if !warnings.is_empty() {
                out.insert("warnings".into(), json!(warnings));
            }
            Ok((200, Value::Object(out), Some(fields.join(","))))
        }
    }
}

/// `GET /v0/management/audit?limit=N&action=A`, newest first.
pub async fn audit_log(
    session: &mut Session,
    ctx: &mut RequestCtx,
    runtime: &Runtime,
    query: Option<&str>,
) -> Result<bool> {
    let limit = match crate::auth::query_param(query, "limit") {
        None => 100,
        Some(l) => match l.parse::<i64>() {
            Ok(n) if (1..=10_000).contains(&n) => n,
            _ => {
                let e = GatewayError::new(
                    ErrorCode::InvalidRequest,
                    format!("limit={l:?} must be a number from 1 to 10000"),
                )
                .with_param("limit");
                return local::respond_error(session, ctx, e).await;
            }
        },
    };
    let action = crate::auth::query_param(query, "action").map(|a| a.into_owned());
    let store = match store_of(runtime) {
        Ok(s) => s,
        Err(e) => return local::respond_error(session, ctx, e).await,
    };
    let pool = store.pool();
    let read = store
        .run(async move { store_keys::audit_log(&pool, limit, action.as_deref()).await })
        .await;
    match read {
        Ok(Ok(entries)) => {
            let records: Vec<Value> = entries
                .iter()
                .map(|e| {
                    let mut v = serde_json::to_value(e).unwrap_or_default();
                    v["time"] = json!(jiff::Timestamp::from_microsecond(e.time_us)
                        .map(|t| t.to_string())
                        .unwrap_or_default());
                    v
                })
                .collect();
            local::respond_json(session, ctx, 200, &json!({ "records": records })).await
        }
        Ok(Err(e)) => local::respond_error(session, ctx, store_error(e)).await,
        Err(e) => local::respond_error(session, ctx, store_error(e)).await,
    }
}

/// `POST /v0/management/providers/{name}/reset`: its targets may be tried again at once.
pub async fn provider_reset(
    session: &mut Session,
    ctx: &mut RequestCtx,
    runtime: &Runtime,
    provider: &str,
) -> Result<bool> {
    let result = match ctx.config.providers.get(provider) {
        None => Err(Failure::Error(GatewayError::new(
            ErrorCode::NotFound,
            format!(
                "no provider named {provider:?}; the config has: {}",
                ctx.config
                    .providers
                    .keys()
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ))),
        Some(p) => {
            let cleared = runtime.state.health.cooldowns.clear_provider(p.id);
            if let Some(c) = &runtime.state.cluster {
                crate::cluster::events::provider_reset(c, p.id);
            }
            let body = json!({"provider": provider, "cooldowns_cleared": cleared});
            Ok((200, body, Some(format!("{cleared} cooldown(s) cleared"))))
        }
    };
    let event = Event::management("provider.reset", provider, ctx.client_ip);
    answer(session, ctx, runtime, event, result).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_paths_and_labels() {
        assert!(valid_name("team-a.ci_bot@1"));
        assert!(!valid_name(""));
        assert!(!valid_name("a b"));
        assert!(!valid_name("a/b"));
        assert!(!valid_name(&"x".repeat(129)));
    }
}
