//! Responses the gateway writes itself: errors in the client's protocol, `/health`, model
//! lists and the management API.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::Result;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::ctx::RequestCtx;
use crate::auth::ClientKey;
use crate::config::Config;
use crate::errors::{ErrorCode, GatewayError};
use crate::health::{Health, ModelId, TargetId};
use crate::protocol::{self, Endpoint, ListedModel, Protocol};
use crate::runtime::Runtime;

/// Endpoints answered without a client key: health, warm-ups, errors of the path, and the
/// management API (its own secret). `None`: not one of them.
pub async fn before_auth(
    session: &mut Session,
    ctx: &mut RequestCtx,
    runtime: &std::sync::Arc<Runtime>,
    endpoint: &Endpoint,
) -> Option<Result<bool>> {
    let answered = match endpoint {
        Endpoint::Health => health(session, ctx, runtime).await,
        Endpoint::WarmUp => {
            let body = serde_json::json!({"status": "ok", "service": "modelgate"});
            respond_json(session, ctx, 200, &body).await
        }
        Endpoint::NotFound => {
            let hint = protocol::not_found_hint(session.req_header().uri.path());
            respond_error(session, ctx, GatewayError::new(ErrorCode::NotFound, hint)).await
        }
        Endpoint::WrongMethod { allowed } => {
            let req = session.req_header();
            let msg = format!("{} accepts {allowed}, not {}", req.uri.path(), req.method);
            let mut e = GatewayError::new(ErrorCode::MethodNotAllowed, msg);
            e.allow = Some(allowed);
            respond_error(session, ctx, e).await
        }
        Endpoint::Console(asset) => {
            if let Err(err) = management_reachable(&ctx.config.clone(), ctx) {
                return Some(respond_error(session, ctx, err).await);
            }
            let (content_type, body) = crate::console::asset(*asset);
            let headers = crate::console::headers();
            respond(
                session,
                ctx,
                200,
                content_type,
                Bytes::from_static(body),
                &headers,
            )
            .await
        }
        e if e.is_management() => {
            let config = ctx.config.clone();
            if let Err(err) = authorize_management(&config, ctx, session) {
                return Some(respond_error(session, ctx, err).await);
            }
            let query = session.req_header().uri.query().map(str::to_string);
            super::management::handle(session, ctx, runtime, e, query.as_deref()).await
        }
        _ => return None,
    };
    Some(answered)
}

/// Local endpoints for an authenticated key: model lists and provider status.
pub async fn after_auth(
    session: &mut Session,
    ctx: &mut RequestCtx,
    runtime: &Runtime,
    key: &ClientKey,
    endpoint: &Endpoint,
) -> Result<bool> {
    let config = ctx.config.clone();
    match endpoint {
        Endpoint::ListModels => {
            let req = session.req_header();
            let shape = if req.headers.contains_key("anthropic-version") {
                Protocol::Anthropic
            } else {
                Protocol::OpenAi
            };
            let query = req.uri.query().map(str::to_string);
            list_models(session, ctx, &config, key, shape, query.as_deref()).await
        }
        Endpoint::GeminiListModels => {
            list_models(session, ctx, &config, key, Protocol::Gemini, None).await
        }
        Endpoint::ProviderStatus => {
            let body = provider_status(&config, &runtime.state.health);
            respond_json(session, ctx, 200, &body).await
        }
        Endpoint::KeyUsage => super::usage_api::key_usage(session, ctx, runtime, key).await,
        Endpoint::BillingSubscription => {
            super::usage_api::billing_subscription(session, ctx, runtime, key).await
        }
        Endpoint::BillingUsage => {
            let query = session.req_header().uri.query().map(str::to_string);
            super::usage_api::billing_usage(session, ctx, runtime, key, query.as_deref()).await
        }
        _ => {
            let e = GatewayError::new(ErrorCode::NotFound, "no endpoint here");
            respond_error(session, ctx, e).await
        }
    }
}

/// Writes a complete response. Returns `Ok(true)`: the request is answered.
pub async fn respond(
    session: &mut Session,
    ctx: &mut RequestCtx,
    status: u16,
    content_type: &str,
    body: Bytes,
    extra: &[(&'static str, String)],
) -> Result<bool> {
    super::body::discard_unread_body(session).await;
    let gateway_headers = ctx.limits.headers.iter().chain(ctx.spend.headers.iter());
    let mut h = ResponseHeader::build(
        status,
        Some(4 + extra.len() + ctx.limits.headers.len() + ctx.spend.headers.len()),
    )?;
    h.insert_header("content-type", content_type)?;
    h.insert_header("content-length", body.len().to_string())?;
    h.insert_header("x-request-id", ctx.request_id.as_str())?;
    for (k, v) in extra {
        h.insert_header(*k, v.as_str())?;
    }
    for (k, v) in gateway_headers {
        h.insert_header(k, v.clone())?;
    }
    // A model request the gateway ends itself (a 502/503/504 after its attempts) says
    // how far it got, like a proxied answer.
    if ctx.route.is_some() {
        h.insert_header("x-modelgate-attempts", ctx.attempts().to_string())?;
        if let Some(a) = &ctx.attempt {
            h.insert_header("x-modelgate-provider", a.provider.name.as_str())?;
        }
    }
    let head = session.req_header().method == http::Method::HEAD;
    session.write_response_header(Box::new(h), head).await?;
    if !head {
        session.write_response_body(Some(body), true).await?;
    }
    ctx.response.status = status;
    Ok(true)
}

pub async fn respond_json(
    session: &mut Session,
    ctx: &mut RequestCtx,
    status: u16,
    value: &serde_json::Value,
) -> Result<bool> {
    let body = Bytes::from(serde_json::to_vec(value).unwrap_or_default());
    respond(session, ctx, status, "application/json", body, &[]).await
}

/// Answers with `err` in the client's protocol.
pub async fn respond_error(
    session: &mut Session,
    ctx: &mut RequestCtx,
    err: GatewayError,
) -> Result<bool> {
    let body = err.body(ctx.protocol);
    let mut extra = Vec::new();
    if let Some(s) = err.retry_after {
        extra.push(("retry-after", s.max(1).to_string()));
    }
    if let Some(allow) = err.allow {
        extra.push(("allow", allow.to_string()));
    }
    let status = err.status();
    ctx.error = Some(err);
    respond(session, ctx, status, "application/json", body, &extra).await
}

pub async fn health(
    session: &mut Session,
    ctx: &mut RequestCtx,
    runtime: &Runtime,
) -> Result<bool> {
    if runtime.is_draining() {
        respond_json(
            session,
            ctx,
            503,
            &serde_json::json!({"status": "draining"}),
        )
        .await
    } else if let Some(c) = &runtime.state.cluster {
        // Degraded still serves (on_error says how): 200, saying so.
        let shared = if c.is_up() { "ok" } else { "degraded" };
        let body = serde_json::json!({"status": "ok", "cluster": shared});
        respond_json(session, ctx, 200, &body).await
    } else {
        respond_json(session, ctx, 200, &serde_json::json!({"status": "ok"})).await
    }
}

/// The models `key` may use: concrete names and aliases, not patterns.
pub async fn list_models(
    session: &mut Session,
    ctx: &mut RequestCtx,
    config: &Config,
    key: &ClientKey,
    shape: Protocol,
    query: Option<&str>,
) -> Result<bool> {
    let listed: Vec<ListedModel> = config
        .models
        .listed()
        .filter(|(name, route)| key.allows_model(&[name, &route.name]))
        .map(|(name, route)| ListedModel {
            id: name,
            owned_by: route
                .targets
                .first()
                .map(|t| t.provider.kind.as_str())
                .unwrap_or("modelgate"),
        })
        .collect();
    let body = match shape {
        Protocol::OpenAi | Protocol::Responses => protocol::openai_model_list(&listed),
        Protocol::Anthropic => protocol::anthropic_model_list(&listed, query),
        Protocol::Gemini => protocol::gemini_model_list(&listed),
    };
    respond_json(session, ctx, 200, &body).await
}

/// `GET /v1/metrics/providers`: each provider with its active health and, per target,
/// cooldown, request and error counts, median latency and last error.
pub fn provider_status(config: &Config, health: &Health) -> serde_json::Value {
    let now = std::time::Instant::now();
    let wall = std::time::SystemTime::now();
    let rfc3339 = |at: std::time::Instant| {
        time::OffsetDateTime::from(wall + at.saturating_duration_since(now))
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    };
    let providers: Vec<serde_json::Value> = config
        .providers
        .values()
        .map(|p| {
            let probe = health.probes.state(p.id);
            let provider_healthy = p.health_check.is_none() || health.probes.healthy(p.id);
            let mut targets = vec![];
            let mut seen = std::collections::HashSet::new();
            for route in config.models.routes() {
                for t in route.targets.iter().filter(|t| t.provider.name == p.name) {
                    let model = t.model.clone().unwrap_or_else(|| route.name.clone());
                    if !seen.insert(model.clone()) {
                        continue;
                    }
                    // Cooling down when every credential is: until the first one recovers.
                    let n = p.credential_count().max(1);
                    let until: Option<std::time::Instant> = (0..n)
                        .map(|c| health.cooldowns.peek(TargetId::new(p.id, &model, c), now))
                        .try_fold(None::<std::time::Instant>, |acc, u| {
                            u.map(|u| Some(acc.map_or(u, |a| a.min(u))))
                        })
                        .flatten();
                    let stats = health.stats.get(ModelId::new(p.id, &model));
                    targets.push(serde_json::json!({
                        "model": model,
                        "healthy": provider_healthy && until.is_none(),
                        "cooling_down_until": until.map(rfc3339),
                        "requests": stats.requests,
                        "errors": stats.errors,
                        "p50_ms": stats.p50_ms(),
                        "last_error": stats.last_error,
                    }));
                }
            }
            serde_json::json!({
                "name": p.name,
                "kind": p.kind.as_str(),
                "healthy": provider_healthy,
                "health_check": probe.map(|s| serde_json::json!({
                    "last_error": s.last_error,
                    "consecutive_failures": s.failures,
                    "unhealthy_on_other_replicas": s.down_elsewhere(now),
                })),
                "targets": targets,
            })
        })
        .collect();
    serde_json::json!({ "providers": providers })
}

/// Whether the management API (and the console) answer this client at all: a secret is
/// configured, and the client is on loopback unless `allow_remote`.
pub fn management_reachable(config: &Config, ctx: &RequestCtx) -> Result<(), GatewayError> {
    if config.management.secret_sha256.is_none() {
        return Err(GatewayError::new(ErrorCode::NotFound, "no endpoint here"));
    }
    // The client after trusted-proxy resolution: a proxy on loopback forwarding a
    // remote client does not make that client local.
    let from_loopback = ctx.client_ip.is_some_and(|ip| ip.is_loopback());
    if !config.management.allow_remote && !from_loopback {
        return Err(GatewayError::new(
            ErrorCode::IpNotAllowed,
            "the management API answers only on loopback (set management.allow_remote: true to change that)",
        ));
    }
    Ok(())
}

/// Checks the management secret. `Err` is the response to give.
pub fn authorize_management(
    config: &Config,
    ctx: &RequestCtx,
    session: &Session,
) -> Result<(), GatewayError> {
    management_reachable(config, ctx)?;
    let Some(expected) = config.management.secret_sha256 else {
        return Err(GatewayError::new(ErrorCode::NotFound, "no endpoint here"));
    };
    let presented = session
        .req_header()
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or_default();
    let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
    if presented.is_empty() || !bool::from(digest.ct_eq(&expected)) {
        crate::metrics::MANAGEMENT_AUTH_FAILURES.inc();
        log::warn!(
            "management API: rejected credentials from {}",
            ctx.client_ip.map(|i| i.to_string()).unwrap_or_default()
        );
        return Err(GatewayError::new(
            ErrorCode::InvalidApiKey,
            "management endpoints need 'Authorization: Bearer <management.secret_key>'",
        ));
    }
    Ok(())
}
