//! The management API (`/v0/management/*`), reached only after `authorize_management`:
//! reload, the running config with secrets redacted, replacing the config file, and the
//! recent access records.

use std::sync::Arc;

use bytes::Bytes;
use pingora::proxy::Session;
use pingora::Result;
use serde_json::json;

use super::body::{self, BodyError};
use super::ctx::RequestCtx;
use super::keys_api;
use super::local;
use crate::access_log;
use crate::audit::{self, Event};
use crate::auth::query_param;
use crate::config;
use crate::errors::{ErrorCode, GatewayError};
use crate::protocol::Endpoint;
use crate::runtime::{ReplaceError, Runtime};

pub async fn handle(
    session: &mut Session,
    ctx: &mut RequestCtx,
    runtime: &Arc<Runtime>,
    endpoint: &Endpoint,
    query: Option<&str>,
) -> Result<bool> {
    match endpoint {
        Endpoint::ManagementReload => {
            let rt = runtime.clone();
            let result = tokio::task::spawn_blocking(move || rt.reload())
                .await
                .unwrap_or_else(|e| Err(format!("reload task failed: {e}")));
            let event = Event::management("config.reload", "config", ctx.client_ip);
            let outcome = match &result {
                Ok(()) => Ok(None),
                Err(msg) => Err(("invalid_config", msg.clone())),
            };
            audit::record(&runtime.state, event, outcome).await;
            match result {
                Ok(()) => {
                    local::respond_json(session, ctx, 200, &json!({"status": "reloaded"})).await
                }
                Err(msg) => {
                    let e = GatewayError::new(
                        ErrorCode::InvalidRequest,
                        format!("the config was not reloaded; the running config stays:\n{msg}"),
                    );
                    local::respond_error(session, ctx, e).await
                }
            }
        }
        Endpoint::ManagementConfigGet => {
            let body = config::redacted(&ctx.config.source);
            local::respond_json(session, ctx, 200, &body).await
        }
        Endpoint::ManagementConfigPut => put_config(session, ctx, runtime).await,
        Endpoint::ManagementLogs => {
            let limit = query_param(query, "limit")
                .and_then(|l| l.parse::<usize>().ok())
                .unwrap_or(100)
                .min(ctx.config.management.log_buffer);
            let recent = runtime.state.access.recent(limit);
            let records: Vec<&access_log::AccessRecord> = recent.iter().map(|r| &**r).collect();
            local::respond_json(session, ctx, 200, &json!({ "records": records })).await
        }
        Endpoint::ManagementUsage => {
            super::usage_api::management_usage(session, ctx, runtime, query).await
        }
        Endpoint::ManagementUsageRecords => {
            super::usage_api::management_records(session, ctx, runtime, query).await
        }
        Endpoint::ManagementKeys => keys_api::collection(session, ctx, runtime, query).await,
        Endpoint::ManagementKey { name, rotate } => {
            keys_api::item(session, ctx, runtime, name, *rotate).await
        }
        Endpoint::ManagementAudit => keys_api::audit_log(session, ctx, runtime, query).await,
        Endpoint::ManagementProviderReset { provider } => {
            keys_api::provider_reset(session, ctx, runtime, provider).await
        }
        Endpoint::ManagementProviders => {
            let body = local::provider_status(&ctx.config, &runtime.state.health);
            local::respond_json(session, ctx, 200, &body).await
        }
        Endpoint::ManagementConfigValidate => validate_config(session, ctx).await,
        _ => {
            let e = GatewayError::new(
                ErrorCode::NotFound,
                "management endpoints: GET/PUT /v0/management/config, POST /v0/management/config/validate, GET /v0/management/providers, POST /v0/management/reload, GET /v0/management/logs, GET /v0/management/usage, GET /v0/management/usage/records, GET/POST /v0/management/keys, GET/PATCH/DELETE /v0/management/keys/{name}, POST /v0/management/keys/{name}/rotate, GET /v0/management/audit, POST /v0/management/providers/{name}/reset",
            );
            local::respond_error(session, ctx, e).await
        }
    }
}

/// The request body as UTF-8 text of at most `max_body_bytes`; `Err(Ok(answered))` when
/// the request was answered with an error instead.
async fn text_body(session: &mut Session, ctx: &mut RequestCtx) -> Result<String, Result<bool>> {
    let max = ctx.config.server.max_body_bytes;
    let text = match body::read_request_body(session, max, None).await {
        Ok(b) => String::from_utf8(b.to_vec()),
        Err(BodyError::Read(e)) => {
            let err = body::unreadable(session, &e);
            return Err(local::respond_error(session, ctx, err).await);
        }
        Err(_) => {
            let e = GatewayError::new(
                ErrorCode::RequestTooLarge,
                "the config is larger than server.max_body_bytes",
            );
            return Err(local::respond_error(session, ctx, e).await);
        }
    };
    match text {
        Ok(t) => Ok(t),
        Err(_) => {
            let e = GatewayError::new(ErrorCode::InvalidRequest, "the config must be UTF-8 YAML");
            Err(local::respond_error(session, ctx, e).await)
        }
    }
}

/// `POST /v0/management/config/validate`: a YAML body checked exactly as `-t` and `PUT`
/// check it, nothing applied. Each error carries the line it is on (found from its field
/// path when the YAML parser gave none), for the console's editor.
async fn validate_config(session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
    let text = match text_body(session, ctx).await {
        Ok(t) => t,
        Err(answered) => return answered,
    };
    let answer = tokio::task::spawn_blocking(move || {
        match config::load_str(&text, "config", &|n| std::env::var(n).ok()) {
            Ok(loaded) => json!({"valid": true, "errors": [], "warnings": loaded.warnings}),
            Err(e) => {
                let errors: Vec<serde_json::Value> = e
                    .errors
                    .iter()
                    .map(|err| {
                        let (line, column) = match err.line_col {
                            Some((l, c)) => (Some(l), Some(c)),
                            None => (config::line_of(&text, &err.path), None),
                        };
                        json!({
                            "line": line,
                            "column": column,
                            "field": err.path,
                            "message": err.message,
                        })
                    })
                    .collect();
                json!({"valid": false, "errors": errors, "warnings": []})
            }
        }
    })
    .await
    .unwrap_or_else(|e| json!({"valid": false, "errors": [{"line": null, "column": null, "field": "", "message": format!("validation failed: {e}")}], "warnings": []}));
    local::respond_json(session, ctx, 200, &answer).await
}

/// `PUT /v0/management/config`: a YAML body is validated like `-t`; if valid it replaces
/// the config file atomically (the old one kept as `.bak`) and takes effect at once.
async fn put_config(
    session: &mut Session,
    ctx: &mut RequestCtx,
    runtime: &Arc<Runtime>,
) -> Result<bool> {
    let text = match text_body(session, ctx).await {
        Ok(t) => t,
        Err(answered) => return answered,
    };
    let rt = runtime.clone();
    let result = tokio::task::spawn_blocking(move || rt.replace_config(&text))
        .await
        .unwrap_or_else(|e| Err(ReplaceError::Io(format!("task failed: {e}"))));
    let event = Event::management("config.put", "config", ctx.client_ip);
    let outcome = match &result {
        Ok(()) => Ok(None),
        Err(ReplaceError::Invalid(errors)) => Err(("invalid_config", errors.join("; "))),
        Err(ReplaceError::NoFile) => Err(("invalid_request", "no config file (demo mode)".into())),
        Err(ReplaceError::Io(msg)) => Err(("internal_error", msg.clone())),
    };
    audit::record(&runtime.state, event, outcome).await;
    match result {
        Ok(()) => {
            local::respond_json(
                session,
                ctx,
                200,
                &json!({"status": "replaced and reloaded"}),
            )
            .await
        }
        Err(ReplaceError::Invalid(errors)) => {
            let e = GatewayError::new(
                ErrorCode::InvalidRequest,
                format!(
                    "the config is invalid; nothing changed:\n{}",
                    errors.join("\n")
                ),
            );
            let mut body: serde_json::Value =
                serde_json::from_slice(&e.body(ctx.protocol)).unwrap_or_default();
            body["errors"] = json!(errors);
            ctx.error = Some(e);
            let bytes = Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
            local::respond(session, ctx, 400, "application/json", bytes, &[]).await
        }
        Err(ReplaceError::NoFile) => {
            let e = GatewayError::new(
                ErrorCode::InvalidRequest,
                "no config file to replace (demo mode)",
            );
            local::respond_error(session, ctx, e).await
        }
        Err(ReplaceError::Io(msg)) => {
            let e = GatewayError::new(
                ErrorCode::Internal,
                format!("the config file could not be written: {msg}"),
            );
            local::respond_error(session, ctx, e).await
        }
    }
}
