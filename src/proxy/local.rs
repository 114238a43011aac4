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
use crate::protocol::{self, ListedModel, Protocol};
use crate::runtime::Runtime;

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
    let mut h = ResponseHeader::build(status, Some(4 + extra.len() + ctx.rate_headers.len()))?;
    h.insert_header("content-type", content_type)?;
    h.insert_header("content-length", body.len().to_string())?;
    h.insert_header("x-request-id", ctx.request_id.as_str())?;
    for (k, v) in extra.iter().chain(ctx.rate_headers.iter()) {
        h.insert_header(*k, v.as_str())?;
    }
    let head = session.req_header().method == http::Method::HEAD;
    session.write_response_header(Box::new(h), head).await?;
    if !head {
        session.write_response_body(Some(body), true).await?;
    }
    ctx.status = status;
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
    if err.code == ErrorCode::MethodNotAllowed {
        extra.push(("allow", "POST".to_string()));
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
        Protocol::OpenAi => protocol::openai_model_list(&listed),
        Protocol::Anthropic => protocol::anthropic_model_list(&listed),
        Protocol::Gemini => protocol::gemini_model_list(&listed),
    };
    respond_json(session, ctx, 200, &body).await
}

/// Checks the management secret. `Err` is the response to give.
pub fn authorize_management(
    config: &Config,
    ctx: &RequestCtx,
    session: &Session,
) -> Result<(), GatewayError> {
    let Some(expected) = config.management.secret_sha256 else {
        return Err(GatewayError::new(ErrorCode::NotFound, "no endpoint here"));
    };
    let from_loopback = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .is_some_and(|a| a.ip().is_loopback());
    if !config.management.allow_remote && !from_loopback {
        return Err(GatewayError::new(
            ErrorCode::IpNotAllowed,
            "the management API answers only on loopback (set management.allow_remote: true to change that)",
        ));
    }
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
