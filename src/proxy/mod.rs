//! The `ProxyHttp` implementation: a thin conductor that calls auth, routing, upstream and
//! rewrite at the right Pingora phase. Phase order: `request_filter` (local endpoints,
//! auth, body, routing) -> per attempt: `upstream_peer` -> `upstream_request_filter` ->
//! `request_body_filter` -> `upstream_response_filter` -> `response_filter` ->
//! `response_body_filter` -> `logging`.

mod attempt;
mod body;
mod ctx;
mod local;
mod management;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, ErrorSource, ErrorType, Result};

pub use ctx::{request_id, RequestCtx};
use ctx::{Attempt, RouteState};

use crate::access_log;
use crate::auth;
use crate::errors::{ErrorCode, GatewayError};
use crate::health;
use crate::limits;
use crate::metrics;
use crate::protocol::{self, Endpoint, Op, Protocol};
use crate::rewrite::{self, ModelRenamer};
use crate::runtime::Runtime;
use crate::translate::{self, ResponseTranslator};
use crate::usage::UsageTap;

pub struct Gateway {
    runtime: Arc<Runtime>,
}

impl Gateway {
    pub fn new(runtime: Arc<Runtime>) -> Self {
        Gateway { runtime }
    }
}

/// A Pingora error that makes the proxy give up; the response is written from
/// `ctx.error` in `fail_to_proxy`.
fn abort(ctx: &mut RequestCtx, err: GatewayError) -> Box<Error> {
    let status = err.status();
    ctx.error = Some(err);
    Error::explain(ErrorType::HTTPStatus(status), "gateway error")
}

/// Provider response headers that describe the gateway's provider account, not the client's.
const PROVIDER_ACCOUNT_HEADERS: [&str; 4] = [
    "set-cookie",
    "openai-organization",
    "openai-project",
    "anthropic-organization-id",
];

/// Provider rate-limit headers, replaced by the key's own for keys with limits.
const RATE_LIMIT_HEADERS: [&str; 6] = [
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
];

/// Anthropic client headers, kept only for Anthropic providers.
const ANTHROPIC_REQUEST_HEADERS: [&str; 3] = [
    "anthropic-version",
    "anthropic-beta",
    "anthropic-dangerous-direct-browser-access",
];

/// Client headers that must never reach a provider (credentials) or that the gateway sets.
const STRIPPED_REQUEST_HEADERS: [&str; 8] = [
    "authorization",
    "x-api-key",
    "x-goog-api-key",
    "api-key",
    "cookie",
    "transfer-encoding",
    "expect",
    "accept-encoding",
];

impl Gateway {
    async fn prepare_model_request(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        op: Op,
        gemini_model: Option<String>,
        path: String,
        query: Option<String>,
    ) -> Result<bool> {
        let is_multipart = session
            .req_header()
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("multipart/"));
        if is_multipart {
            let e = GatewayError::new(
                ErrorCode::InvalidRequest,
                "multipart bodies (file uploads) are not supported by modelgate yet; send a JSON body",
            );
            return local::respond_error(session, ctx, e).await;
        }
        let expects_continue = session
            .req_header()
            .headers
            .get(http::header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        if expects_continue
            && body::declared_length(session).unwrap_or(0) <= ctx.config.server.max_body_bytes
        {
            // curl waits a second for this before sending bodies over 1 KiB.
            session.write_continue_response().await?;
        }
        let max = ctx.config.server.max_body_bytes;
        let body = match body::read_request_body(session, max).await {
            Ok(b) => b,
            Err(body::BodyError::TooLarge) => {
                let e = GatewayError::new(
                    ErrorCode::RequestTooLarge,
                    format!("the request body is larger than this gateway's limit of {max} bytes (server.max_body_bytes); retrying the same payload will not work"),
                );
                session.set_keepalive(None);
                return local::respond_error(session, ctx, e).await;
            }
            Err(body::BodyError::UnknownLengthTooLarge) => {
                let e = GatewayError::new(
                    ErrorCode::LengthRequired,
                    "request bodies over 64 KiB need a Content-Length header (chunked uploads that large are not supported)",
                );
                return local::respond_error(session, ctx, e).await;
            }
            Err(body::BodyError::Read(e)) => return Err(e),
        };
        let proto_name = match op.protocol() {
            Protocol::OpenAi => "the OpenAI API",
            Protocol::Responses => "the OpenAI Responses API",
            Protocol::Anthropic => "the Anthropic Messages API",
            Protocol::Gemini => "the Gemini API",
        };
        if body.is_empty() {
            let e = GatewayError::new(
                ErrorCode::InvalidRequest,
                format!("the request has no body; {proto_name} expects a JSON object"),
            );
            return local::respond_error(session, ctx, e).await;
        }
        let peek = match rewrite::peek_request(&body) {
            Ok(p) => p,
            Err(msg) => {
                return local::respond_error(
                    session,
                    ctx,
                    GatewayError::new(ErrorCode::InvalidRequest, msg),
                )
                .await
            }
        };
        let requested = match (gemini_model, peek.model) {
            (Some(m), _) => m,
            (None, Some(m)) if !m.is_empty() => m,
            _ => {
                let e = GatewayError::new(
                    ErrorCode::InvalidRequest,
                    format!("the request is missing 'model'; {proto_name} needs the model name in the JSON body"),
                )
                .with_param("model");
                return local::respond_error(session, ctx, e).await;
            }
        };
        let Some(resolved) = ctx.config.models.resolve(&requested) else {
            let e = GatewayError::new(
                ErrorCode::ModelNotFound,
                format!("the model {requested:?} does not exist on this gateway; GET /v1/models lists the models your key may use"),
            )
            .with_param("model");
            return local::respond_error(session, ctx, e).await;
        };
        let key = ctx.key.clone();
        if let Some(key) = key {
            if !key.allows_model(&[&requested, &resolved.route.name]) {
                let e = GatewayError::new(
                    ErrorCode::ModelNotAllowed,
                    format!("the API key {:?} may not use the model {requested:?}; GET /v1/models lists the models it may use", key.name),
                )
                .with_param("model");
                return local::respond_error(session, ctx, e).await;
            }
        }
        // Token counting for a model served by another kind: an estimate, said to be one.
        let counts_tokens = matches!(op, Op::MessagesCountTokens | Op::CountTokens);
        let served_natively = resolved
            .route
            .targets
            .first()
            .is_some_and(|t| t.provider.kind.protocol() == op.protocol());
        if counts_tokens && !served_natively {
            return match translate::estimate_tokens(op.protocol(), &body) {
                Ok(n) => {
                    let v = match op {
                        Op::CountTokens => serde_json::json!({"totalTokens": n}),
                        _ => serde_json::json!({"input_tokens": n}),
                    };
                    let body = Bytes::from(serde_json::to_vec(&v).unwrap_or_default());
                    let extra = [("x-modelgate-token-count", "estimated".to_string())];
                    local::respond(session, ctx, 200, "application/json", body, &extra).await
                }
                Err(e) => local::respond_error(session, ctx, e.into_gateway_error()).await,
            };
        }
        if let Some(key) = ctx.key.clone() {
            // Limits come last: a request refused for any other reason uses no quota.
            let public = if resolved.route.is_pattern {
                requested.as_str()
            } else {
                resolved.route.name.as_str()
            };
            let estimate = limits::estimate_prompt_tokens(body.len())
                .saturating_add(peek.max_output_tokens.unwrap_or(0));
            match limits::admit(
                &key.name,
                &key.limits,
                public,
                resolved
                    .route
                    .limits
                    .as_ref()
                    .map(|l| (resolved.route.name.as_str(), l)),
                estimate,
            ) {
                Ok(admission) => {
                    if let Some(status) = &admission.status {
                        ctx.rate_headers = status.headers();
                    }
                    ctx.admission = Some(admission);
                }
                Err(rejection) => {
                    ctx.rate_headers = rejection.status.headers();
                    let code = if rejection.limit == "tpm" {
                        ErrorCode::TokenRateLimitExceeded
                    } else {
                        ErrorCode::RateLimitExceeded
                    };
                    let mut e = GatewayError::new(
                        code,
                        format!(
                            "{}; retry after {}s",
                            rejection.message, rejection.retry_after
                        ),
                    );
                    e.retry_after = Some(rejection.retry_after);
                    return local::respond_error(session, ctx, e).await;
                }
            }
        }
        ctx.route = Some(RouteState {
            op,
            resolved,
            body,
            model_span: peek.model_span,
            stream: peek.stream || op == Op::StreamGenerateContent,
            stream_usage: peek.stream_usage,
            path,
            query,
            candidates: Vec::new(),
            next: 0,
            unservable: false,
            decoded: None,
        });
        Ok(false)
    }
}

/// The client's query string without its `key=` (a client credential).
fn upstream_query(query: Option<&str>) -> Option<String> {
    let q = query?;
    if !form_urlencoded::parse(q.as_bytes()).any(|(k, _)| k == "key") {
        return Some(q.to_string());
    }
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (k, v) in form_urlencoded::parse(q.as_bytes()).filter(|(k, _)| k != "key") {
        out.append_pair(&k, &v);
    }
    let s = out.finish();
    (!s.is_empty()).then_some(s)
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::new(self.runtime.config(), self.runtime.track_request())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let req = session.req_header();
        ctx.request_id = request_id(req.headers.get("x-request-id"));
        let path = req.uri.path().to_string();
        let query = req.uri.query().map(str::to_string);
        let endpoint = protocol::classify(&req.method, &path);
        ctx.protocol = match &endpoint {
            Endpoint::Proxy { op, .. } => op.protocol(),
            Endpoint::GeminiListModels => Protocol::Gemini,
            _ => protocol::guess_protocol(&path, &req.headers),
        };
        let peer_ip = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        ctx.client_ip = auth::client_ip(peer_ip, &req.headers, &ctx.config.server.trusted_proxies);

        match &endpoint {
            Endpoint::Health => return local::health(session, ctx, &self.runtime).await,
            Endpoint::WarmUp => {
                let body = serde_json::json!({"status": "ok", "service": "modelgate"});
                return local::respond_json(session, ctx, 200, &body).await;
            }
            Endpoint::NotFound => {
                let e = GatewayError::new(ErrorCode::NotFound, protocol::not_found_hint(&path));
                return local::respond_error(session, ctx, e).await;
            }
            Endpoint::WrongMethod { allowed } => {
                let method = session.req_header().method.as_str().to_string();
                let mut e = GatewayError::new(
                    ErrorCode::MethodNotAllowed,
                    format!("{path} accepts {allowed}, not {method}"),
                );
                e.allow = Some(allowed);
                return local::respond_error(session, ctx, e).await;
            }
            Endpoint::ManagementReload
            | Endpoint::ManagementConfigGet
            | Endpoint::ManagementConfigPut
            | Endpoint::ManagementLogs
            | Endpoint::ManagementOther => {
                ctx.protocol = Protocol::OpenAi;
                let config = ctx.config.clone();
                if let Err(e) = local::authorize_management(&config, ctx, session) {
                    return local::respond_error(session, ctx, e).await;
                }
                return management::handle(
                    session,
                    ctx,
                    &self.runtime,
                    &endpoint,
                    query.as_deref(),
                )
                .await;
            }
            _ => {}
        }

        let key = {
            let req = session.req_header();
            auth::authenticate(
                &ctx.config.keys,
                &req.headers,
                query.as_deref(),
                ctx.client_ip,
            )
        };
        let key = match key {
            Ok(k) => k,
            Err(e) => return local::respond_error(session, ctx, e).await,
        };
        ctx._inflight = Some(metrics::InflightSlot::acquire(&key.name));
        ctx.key = Some(key.clone());

        match endpoint {
            Endpoint::ListModels => {
                let shape = if session
                    .req_header()
                    .headers
                    .contains_key("anthropic-version")
                {
                    Protocol::Anthropic
                } else {
                    Protocol::OpenAi
                };
                let config = ctx.config.clone();
                local::list_models(session, ctx, &config, &key, shape, query.as_deref()).await
            }
            Endpoint::GeminiListModels => {
                let config = ctx.config.clone();
                local::list_models(session, ctx, &config, &key, Protocol::Gemini, None).await
            }
            Endpoint::ProviderStatus => {
                let body = local::provider_status(&ctx.config);
                local::respond_json(session, ctx, 200, &body).await
            }
            Endpoint::Proxy { op, gemini_model } => {
                let query = upstream_query(query.as_deref());
                self.prepare_model_request(session, ctx, op, gemini_model, path, query)
                    .await
            }
            _ => Ok(false),
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let config = ctx.config.clone();
        let same_target = std::mem::take(&mut ctx.retry_same_target);
        let previous = ctx.attempt.take();
        let Some(route) = ctx.route.as_mut() else {
            return Err(Error::explain(
                ErrorType::InternalError,
                "no route for a proxied request",
            ));
        };
        if route.candidates.is_empty() {
            route.candidates = attempt::candidates(&config, &route.resolved);
        }
        let mut soonest = None;
        // Pick a target and build its request; a fallback whose protocol cannot express
        // this request is skipped rather than failing a request that is failing over.
        let (pos, credential, target, candidate, (body, client_path, translated)) = loop {
            let (pos, credential, target) = match (&previous, same_target) {
                // A dead pooled connection: the same target again, on a fresh connection.
                (Some(p), true) => (p.candidate, p.credential, p.target),
                _ => match attempt::next_candidate(route, &mut soonest) {
                    Some(pick) => pick,
                    None => {
                        let e = if ctx.attempts > 0 {
                            ctx.last_failure.take().unwrap_or_else(|| {
                                GatewayError::new(ErrorCode::UpstreamError, "every target failed")
                            })
                        } else if route.unservable && soonest.is_none() {
                            GatewayError::new(
                                ErrorCode::NotImplemented,
                                format!(
                                    "the model {:?} is served by a provider that {} {} requests cannot be translated for yet",
                                    route.resolved.requested,
                                    route.op.protocol().as_str(),
                                    route.path
                                ),
                            )
                        } else {
                            let wait = soonest
                                .map(|s| s.saturating_duration_since(std::time::Instant::now()));
                            let mut e = GatewayError::new(
                                ErrorCode::UpstreamUnavailable,
                                format!(
                                    "every target of model {:?} is cooling down after failures; retry after the time in retry-after",
                                    route.resolved.requested
                                ),
                            );
                            e.retry_after = wait.map(|w| w.as_secs_f64().ceil().max(1.0) as u64);
                            e
                        };
                        return Err(abort(ctx, e));
                    }
                },
            };
            let candidate = route.candidates[pos].clone();
            let translate = same_target && ctx.responses_fallback;
            match attempt::provider_request(route, &candidate, translate) {
                Ok(r) => break (pos, credential, target, candidate, r),
                Err(_) if ctx.attempts > 0 && !same_target => {
                    route.unservable = true;
                    continue;
                }
                Err(e) => return Err(abort(ctx, e)),
            }
        };
        if !same_target {
            ctx.attempts += 1;
            if ctx.attempts == 1 {
                health::record_first_attempt();
            }
        }
        ctx.attempt_recorded = false;
        let provider = candidate.provider().clone();
        if let Some(p) = previous.as_ref().filter(|_| !same_target) {
            metrics::FAILOVERS
                .with_label_values(&[&route.resolved.route.name, &p.provider.name, &provider.name])
                .inc();
        }
        let mut path = provider.upstream_path(&client_path);
        if let Some(q) = route.query.as_ref().filter(|_| translated.is_none()) {
            path.push('?');
            path.push_str(q);
        }
        let uri = match path.parse::<http::Uri>() {
            Ok(u) => u,
            Err(_) => {
                let e = GatewayError::new(
                    ErrorCode::InvalidRequest,
                    format!(
                        "the model name {:?} cannot be used in a URL path",
                        candidate.upstream_model
                    ),
                );
                return Err(abort(ctx, e));
            }
        };
        ctx.attempt = Some(Attempt {
            provider: provider.clone(),
            candidate: pos,
            credential,
            target,
            target_model: candidate.upstream_model.clone(),
            uri,
            body,
            body_sent: false,
            translated,
        });
        let addr = match provider.resolve().await {
            Ok(a) => a,
            Err(msg) => {
                metrics::UPSTREAM_ATTEMPTS
                    .with_label_values(&[&provider.name, "connect_error"])
                    .inc();
                health::cool_down(target, config.retry.cooldown);
                ctx.last_failure = Some(GatewayError::new(
                    ErrorCode::UpstreamError,
                    format!("provider {:?}: {msg}", provider.name),
                ));
                record_attempt(ctx, Some("dns lookup failed".to_string()));
                let mut e =
                    Error::explain(ErrorType::ConnectError, "provider address lookup failed");
                e.set_retry(may_retry(ctx));
                return Err(e);
            }
        };
        Ok(Box::new(provider.peer(addr)))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let Some(attempt) = ctx.attempt.as_mut() else {
            return Err(Error::explain(ErrorType::InternalError, "no attempt"));
        };
        attempt.body_sent = false;
        let provider = &attempt.provider;
        upstream_request.set_uri(attempt.uri.clone());
        for h in STRIPPED_REQUEST_HEADERS {
            upstream_request.remove_header(h);
        }
        upstream_request.insert_header(http::header::HOST, provider.host_header.as_str())?;
        if let Some(cred) = provider.credential(attempt.credential) {
            upstream_request.insert_header(provider.auth_header(), cred.clone())?;
        }
        if provider.kind == crate::upstream::ProviderKind::Anthropic {
            if !session
                .req_header()
                .headers
                .contains_key("anthropic-version")
            {
                upstream_request.insert_header("anthropic-version", "2023-06-01")?;
            }
        } else {
            // Anthropic's version and beta flags mean nothing to other providers (whose
            // own checks may trip on them).
            for h in ANTHROPIC_REQUEST_HEADERS {
                upstream_request.remove_header(h);
            }
        }
        for (k, v) in &provider.headers {
            upstream_request.insert_header(k.clone(), v.clone())?;
        }
        upstream_request
            .insert_header(http::header::CONTENT_LENGTH, attempt.body.len().to_string())?;
        // Identity, so usage and model names can be read from the response.
        upstream_request.insert_header(http::header::ACCEPT_ENCODING, "identity")?;
        upstream_request.insert_header("x-request-id", ctx.request_id.as_str())?;
        Ok(())
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        // The client's body was read in request_filter; each attempt sends its own copy once.
        match ctx.attempt.as_mut() {
            Some(a) if !a.body_sent => {
                *body = Some(a.body.clone());
                a.body_sent = true;
            }
            _ => *body = None,
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let status = upstream_response.status.as_u16();
        let outcome = match status {
            s if s >= 500 => "status_5xx",
            s if s >= 400 => "status_4xx",
            _ => "ok",
        };
        metrics::UPSTREAM_ATTEMPTS
            .with_label_values(&[ctx.provider_label(), outcome])
            .inc();
        let Some(attempt) = ctx.attempt.as_ref() else {
            return Ok(());
        };
        let target = attempt.target;
        let responses_passthrough = attempt.translated.is_none()
            && ctx.route.as_ref().is_some_and(|r| r.op == Op::Responses);
        if (status == 404 || status == 405)
            && responses_passthrough
            && !ctx.responses_fallback
            && attempt.provider.may_lack_responses_api()
        {
            // Perhaps an OpenAI-compatible server without /v1/responses: the same target
            // once more, translated to Chat Completions.
            ctx.responses_fallback = true;
            ctx.retry_same_target = true;
            ctx.status_retry = true;
            let mut e = Error::explain(
                ErrorType::HTTPStatus(status),
                "retrying /v1/responses as chat completions",
            );
            e.set_retry(true);
            return Err(e);
        }
        if upstream_response.status.is_success() {
            health::restore(target);
            if ctx.responses_fallback && attempt.translated.is_some() {
                attempt.provider.mark_responses_missing();
            }
        }
        // 429, 408 and 5xx in on_status fail over; other 4xx are the client's to see.
        let policy = &ctx.config.retry;
        let failover_status =
            (status == 429 || status == 408 || status >= 500) && policy.on_status.contains(&status);
        if failover_status {
            let wait = health::retry_after(&upstream_response.headers).unwrap_or(policy.cooldown);
            health::cool_down(target, wait);
            record_attempt(ctx, Some(format!("status {status}")));
            if may_retry(ctx) {
                ctx.last_failure = Some(GatewayError::new(
                    ErrorCode::UpstreamError,
                    format!("provider {:?} answered {status}", ctx.provider_label()),
                ));
                ctx.status_retry = true;
                let mut e = Error::explain(
                    ErrorType::HTTPStatus(status),
                    "failing over to the next target",
                );
                e.set_retry(true);
                return Err(e);
            }
            if status >= 500 {
                // Every attempt failed (interface.md): 502 naming the last provider status.
                let e = GatewayError::new(
                    ErrorCode::UpstreamError,
                    format!(
                        "{} attempt(s) failed; the last, to provider {:?}, answered {status}",
                        ctx.attempts,
                        ctx.provider_label()
                    ),
                );
                return Err(abort(ctx, e));
            }
        }
        ctx.ttfb = Some(ctx.started.elapsed());
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        ctx.response_started = true;
        for h in PROVIDER_ACCOUNT_HEADERS {
            resp.remove_header(h);
        }
        resp.insert_header("x-request-id", ctx.request_id.as_str())?;
        if let Some(a) = &ctx.attempt {
            resp.insert_header("x-modelgate-provider", a.provider.name.as_str())?;
        }
        resp.insert_header("x-modelgate-attempts", ctx.attempts.to_string())?;
        if !ctx.rate_headers.is_empty() {
            // The key's limits replace the provider's (those describe the gateway's account).
            for h in RATE_LIMIT_HEADERS {
                resp.remove_header(h);
            }
            for (k, v) in &ctx.rate_headers {
                resp.insert_header(*k, v.as_str())?;
            }
        }
        let (Some(route), Some(attempt)) = (&ctx.route, &ctx.attempt) else {
            return Ok(());
        };
        if let Some(translated) = &attempt.translated {
            let (translator, error) = response_translator(route, attempt, translated, resp)?;
            if error.is_some() {
                ctx.error = error;
            }
            let (streaming, content_type) = (translator.is_stream(), translator.content_type());
            ctx.translator = Some(translator);
            resp.remove_header(&http::header::CONTENT_LENGTH);
            resp.remove_header(&http::header::CONTENT_ENCODING);
            resp.insert_header(http::header::TRANSFER_ENCODING, "chunked")?;
            resp.insert_header(http::header::CONTENT_TYPE, content_type)?;
            if streaming {
                resp.insert_header(http::header::CACHE_CONTROL, "no-cache")?;
            }
            return Ok(());
        }
        let html = resp
            .headers
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/html"));
        if resp.status.is_success() && html {
            // No API answers a web page: a wrong base_url (a dashboard, a login page).
            let message = format!(
                "provider {:?} answered {} with a web page (text/html), not the API; check its base_url",
                attempt.provider.name,
                resp.status.as_u16()
            );
            resp.set_status(502)?;
            resp.remove_header(&http::header::CONTENT_LENGTH);
            resp.insert_header(http::header::TRANSFER_ENCODING, "chunked")?;
            resp.insert_header(http::header::CONTENT_TYPE, "application/json")?;
            ctx.translator = Some(ResponseTranslator::replace_with_error(
                route.op.protocol(),
                &message,
            ));
            ctx.error = Some(GatewayError::new(ErrorCode::UpstreamError, message));
            return Ok(());
        }
        if resp.status.is_success()
            && route.op == Op::ChatCompletions
            && route.stream
            && !route.stream_usage
        {
            // The provider reports no usage in such a stream: the gateway's token counts
            // for it (limits) are the request's estimate.
            resp.insert_header("x-modelgate-usage", "estimated")?;
        }
        if resp.status.is_success() && route.op != Op::Embeddings {
            let sse = resp
                .headers
                .get(http::header::CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
            ctx.usage_tap = Some(if sse {
                UsageTap::sse()
            } else {
                UsageTap::json()
            });
        }
        // The client sees the public name it asked for, not the provider's model name.
        let renames = attempt.target_model != route.resolved.requested
            && resp.status.is_success()
            && !resp.headers.contains_key(http::header::CONTENT_ENCODING);
        if renames {
            let ctype = resp
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let public = route.resolved.requested.clone();
            ctx.renamer = if ctype.starts_with("text/event-stream") {
                Some(ModelRenamer::sse(public))
            } else if ctype.contains("json") && route.op != Op::StreamGenerateContent {
                Some(ModelRenamer::json(public))
            } else {
                None
            };
            if ctx.renamer.is_some() {
                resp.remove_header(&http::header::CONTENT_LENGTH);
                resp.insert_header(http::header::TRANSFER_ENCODING, "chunked")?;
            }
        }
        Ok(())
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<Duration>> {
        if let Some(t) = ctx.translator.as_mut() {
            *body = t.feed(body.take(), end_of_stream);
            if end_of_stream {
                ctx.usage = t.usage();
            }
        } else {
            if let Some(tap) = ctx.usage_tap.as_mut() {
                if let Some(b) = body.as_ref() {
                    tap.feed(b);
                }
                if end_of_stream {
                    ctx.usage = ctx.usage_tap.take().and_then(UsageTap::finish);
                }
            }
            if let Some(r) = ctx.renamer.as_mut() {
                *body = r.feed(body.take(), end_of_stream);
            }
        }
        Ok(None)
    }

    fn request_summary(&self, session: &Session, ctx: &RequestCtx) -> String {
        // Pingora's default prints the URI with its query, where a client key may be.
        let req = session.req_header();
        format!(
            "{} {} request_id={}",
            req.method,
            req.uri.path(),
            ctx.request_id
        )
    }

    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, error: &Error) -> bool {
        // A client that hangs up mid-stream is routine, not an error of the gateway.
        error.esource() == &ErrorSource::Downstream
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        e: Box<Error>,
    ) -> Box<Error> {
        let outcome = match e.etype() {
            ErrorType::ConnectTimedout | ErrorType::TLSHandshakeTimedout => "timeout",
            _ => "connect_error",
        };
        metrics::UPSTREAM_ATTEMPTS
            .with_label_values(&[ctx.provider_label(), outcome])
            .inc();
        failed_attempt(ctx, e)
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        _session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("peer: {peer}"));
        if std::mem::take(&mut ctx.status_retry) {
            // Our own retry from upstream_response_filter: already decided.
            return e;
        }
        // Pingora marks errors on reused pooled connections "retry if reused": the provider
        // had closed an idle connection, nothing was processed, so one more try on a fresh
        // connection to the same target is safe while the client has seen nothing.
        let stale_pooled = matches!(e.retry, pingora::RetryType::ReusedOnly) && client_reused;
        e.retry.decide_reuse(client_reused);
        if ctx.response_started || e.esource() != &ErrorSource::Upstream {
            e.set_retry(false);
            return e;
        }
        if stale_pooled && e.retry() && !ctx.stale_retried {
            ctx.stale_retried = true;
            ctx.retry_same_target = true;
            return e;
        }
        let outcome = match e.etype() {
            ErrorType::ReadTimedout | ErrorType::WriteTimedout => "timeout",
            // A reset or broken connection: the contract's closest outcome.
            _ => "connect_error",
        };
        metrics::UPSTREAM_ATTEMPTS
            .with_label_values(&[ctx.provider_label(), outcome])
            .inc();
        failed_attempt(ctx, e)
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let err = match ctx.error.take() {
            Some(err) => Some(err),
            // The precise reason recorded for the last attempt, unless the client left.
            None => proxy_error(e, ctx).map(|generic| ctx.last_failure.take().unwrap_or(generic)),
        };
        let code = match err {
            Some(err) if session.response_written().is_none() => {
                let status = err.status();
                match local::respond_error(session, ctx, err).await {
                    Ok(_) => status,
                    Err(_) => 0,
                }
            }
            Some(err) => {
                // The provider failed mid-stream: end the client's stream with an error event
                // in its own protocol rather than a silent cut.
                if ctx.route.as_ref().is_some_and(|r| r.stream) {
                    let tail = match ctx.translator.as_mut() {
                        Some(t) => t.feed(None, true),
                        None => {
                            let json_array = ctx.protocol == Protocol::Gemini
                                && !ctx
                                    .route
                                    .as_ref()
                                    .and_then(|r| r.query.as_deref())
                                    .is_some_and(|q| q.split('&').any(|kv| kv == "alt=sse"));
                            Some(stream_error_event(ctx.protocol, &err, json_array))
                        }
                    };
                    if let Some(tail) = tail {
                        let _ = session.write_response_body(Some(tail), true).await;
                    }
                }
                ctx.error = Some(err);
                0
            }
            None => 0,
        };
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut RequestCtx) {
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .unwrap_or(ctx.status);
        let elapsed = ctx.started.elapsed();
        if ctx.ttfb.is_some() {
            // The attempt that answered (failed attempts were recorded as they failed).
            let error = (status >= 500 || status == 429).then(|| format!("status {status}"));
            record_attempt(ctx, error);
        }
        if ctx.usage.is_none() {
            // A stream cut short: whatever usage it reported so far.
            ctx.usage = ctx.usage_tap.take().and_then(UsageTap::finish);
        }
        if let Some(a) = ctx.admission.as_mut() {
            // Real usage replaces the estimate; a failed request used nothing; a success
            // without usage keeps its estimate.
            let actual = match (&ctx.usage, status) {
                (Some(u), _) => Some(u.prompt_tokens + u.completion_tokens),
                (None, s) if !(200..300).contains(&s) => Some(0),
                (None, _) => None,
            };
            a.reconcile(actual);
        }
        let model = ctx.model_label();
        let provider = ctx.provider_label();
        let status_label = status.to_string();
        metrics::REQUESTS
            .with_label_values(&[model, provider, ctx.key_label(), status_label.as_str()])
            .inc();
        if let Some(u) = &ctx.usage {
            let key = ctx.key_label();
            metrics::TOKENS
                .with_label_values(&[model, provider, key, "prompt"])
                .inc_by(u.prompt_tokens);
            metrics::TOKENS
                .with_label_values(&[model, provider, key, "completion"])
                .inc_by(u.completion_tokens);
            if let Some(c) = u.cached_tokens {
                metrics::TOKENS
                    .with_label_values(&[model, provider, key, "cached"])
                    .inc_by(c);
            }
        }
        if ctx.route.is_some() {
            metrics::REQUEST_DURATION
                .with_label_values(&[model, provider])
                .observe(elapsed.as_secs_f64());
            if let Some(t) = ctx.ttfb {
                metrics::TTFB
                    .with_label_values(&[model, provider])
                    .observe(t.as_secs_f64());
            }
        }
        let keep = if ctx.config.management.secret_sha256.is_some() {
            ctx.config.management.log_buffer
        } else {
            0
        };
        if access_log::wanted(keep) {
            let req = session.req_header();
            let rec = access_log::AccessRecord {
                time: access_log::now_rfc3339(),
                request_id: ctx.request_id.clone(),
                key: ctx.key_label().to_string(),
                client_ip: ctx.client_ip.map(|i| i.to_string()),
                method: req.method.to_string(),
                path: req.uri.path().to_string(),
                protocol: ctx.protocol.as_str(),
                model: ctx
                    .route
                    .as_ref()
                    .map(|r| r.resolved.requested.clone())
                    .unwrap_or_default(),
                provider: provider.to_string(),
                target_model: ctx
                    .attempt
                    .as_ref()
                    .map(|a| a.target_model.clone())
                    .unwrap_or_default(),
                attempts: ctx.attempts,
                status,
                error: ctx.error.as_ref().map(|e| e.code.as_str()),
                duration_ms: elapsed.as_secs_f64() * 1000.0,
                ttfb_ms: ctx.ttfb.map(|t| t.as_secs_f64() * 1000.0),
                prompt_tokens: ctx.usage.map(|u| u.prompt_tokens),
                completion_tokens: ctx.usage.map(|u| u.completion_tokens),
                bytes_in: session.body_bytes_read(),
                bytes_out: session.body_bytes_sent(),
            };
            access_log::record(rec, ctx.config.server.log_format, keep);
        }
    }
}

/// An error event that ends a stream in `protocol`'s own way.
fn stream_error_event(protocol: Protocol, err: &GatewayError, json_array: bool) -> Bytes {
    if protocol == Protocol::Responses {
        return Bytes::from(translate::responses::stream_failure(
            err.code.as_str(),
            &err.message,
        ));
    }
    let body = err.body(protocol);
    let mut out = Vec::with_capacity(body.len() + 24);
    if json_array {
        // Gemini's stream without alt=sse is a JSON array: close it with the error.
        out.extend_from_slice(b",\r\n");
        out.extend_from_slice(&body);
        out.push(b']');
        return Bytes::from(out);
    }
    if protocol == Protocol::Anthropic {
        out.extend_from_slice(b"event: error\n");
    }
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(&body);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// The translator for a translated attempt's response, chosen by status and content type;
/// with the gateway error when the provider's body cannot be used at all. Sets the
/// header's status when that happens, and `x-modelgate-dropped` otherwise.
fn response_translator(
    route: &RouteState,
    attempt: &Attempt,
    translated: &translate::Translated,
    resp: &mut ResponseHeader,
) -> Result<(ResponseTranslator, Option<GatewayError>)> {
    let (client, provider) = (route.op.protocol(), attempt.provider.kind.protocol());
    let public = route.resolved.requested.as_str();
    let include_usage = route.decoded.as_ref().is_some_and(|r| r.stream_usage);
    let ctype = resp
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    // A success that is neither JSON nor SSE (an HTML page from a wrong base_url, a
    // captive proxy) cannot be translated: say so rather than pass a broken 200.
    let unreadable = resp.status.is_success()
        && !ctype.is_empty()
        && !ctype.contains("json")
        && !ctype.starts_with("text/event-stream");
    if unreadable {
        let message = format!(
            "provider {:?} answered {} with content-type {:?}, not JSON or SSE; check its base_url",
            attempt.provider.name,
            resp.status.as_u16(),
            ctype.chars().take(60).collect::<String>()
        );
        resp.set_status(502)?;
        let translator = ResponseTranslator::replace_with_error(client, &message);
        return Ok((
            translator,
            Some(GatewayError::new(ErrorCode::UpstreamError, message)),
        ));
    }
    if let Some(v) = translated.dropped.header_value() {
        resp.insert_header("x-modelgate-dropped", v)?;
    }
    let translator = if !resp.status.is_success() {
        ResponseTranslator::error(client, resp.status.as_u16())
    } else if route.stream {
        let client_sse = client != Protocol::Gemini
            || route
                .query
                .as_deref()
                .is_some_and(|q| q.split('&').any(|kv| kv == "alt=sse"));
        ResponseTranslator::stream(provider, client, public, include_usage, client_sse)
            .unwrap_or_else(|| ResponseTranslator::json(provider, client, public))
    } else {
        ResponseTranslator::json(provider, client, public)
    };
    let translator = match route.decoded.as_ref() {
        Some(req) => translator.with_client_request(req),
        None => translator,
    };
    Ok((translator.with_tool_names(&translated.tool_names), None))
}

/// Per-target statistics for `/v1/metrics/providers`.
fn record_attempt(ctx: &mut RequestCtx, error: Option<String>) {
    if ctx.attempt_recorded {
        return;
    }
    if let Some(a) = &ctx.attempt {
        let key = health::stats_key(a.provider.health_key, &a.target_model);
        health::record_outcome(key, ctx.started.elapsed(), error);
        ctx.attempt_recorded = true;
    }
}

/// Whether a failed attempt may be followed by another: attempts left, a candidate left,
/// nothing sent to the client yet, and room in the retry budget (checked last: it
/// consumes a retry).
fn may_retry(ctx: &RequestCtx) -> bool {
    let policy = &ctx.config.retry;
    !ctx.response_started
        && ctx.attempts < policy.max_attempts
        && ctx.route.as_ref().is_some_and(attempt::has_more)
        && health::take_retry(policy.budget, policy.budget_min)
}

/// Bookkeeping for an attempt that failed before the provider answered (connect error,
/// TLS, timeout, reset): cool the target down, remember why, and fail over if allowed.
fn failed_attempt(ctx: &mut RequestCtx, mut e: Box<Error>) -> Box<Error> {
    if let Some(a) = &ctx.attempt {
        health::cool_down(a.target, ctx.config.retry.cooldown);
    }
    ctx.last_failure = proxy_error(&e, ctx);
    record_attempt(ctx, Some(e.etype().as_str().to_string()));
    let retry = may_retry(ctx);
    e.set_retry(retry);
    e
}

/// The client-facing error for a failure Pingora reported while proxying; `None` when
/// the client itself went away (nothing to answer).
fn proxy_error(e: &Error, ctx: &RequestCtx) -> Option<GatewayError> {
    let provider = ctx.provider_label().to_string();
    let err = match e.etype() {
        ErrorType::ConnectTimedout | ErrorType::TLSHandshakeTimedout => GatewayError::new(
            ErrorCode::UpstreamRequestTimeout,
            format!("provider {provider:?} did not accept a connection in time"),
        ),
        ErrorType::ReadTimedout | ErrorType::WriteTimedout => GatewayError::new(
            ErrorCode::UpstreamRequestTimeout,
            format!("provider {provider:?} did not answer in time (timeouts.first_byte)"),
        ),
        _ if e.esource() == &ErrorSource::Downstream => return None,
        ErrorType::ConnectRefused => GatewayError::new(
            ErrorCode::UpstreamError,
            format!("provider {provider:?} refused the connection"),
        ),
        ErrorType::TLSHandshakeFailure | ErrorType::InvalidCert | ErrorType::HandshakeError => {
            GatewayError::new(
                ErrorCode::UpstreamError,
                format!("TLS with provider {provider:?} failed"),
            )
        }
        ErrorType::ConnectNoRoute | ErrorType::ConnectError | ErrorType::SocketError => GatewayError::new(
            ErrorCode::UpstreamError,
            format!("could not connect to provider {provider:?}"),
        ),
        _ => GatewayError::new(
            ErrorCode::UpstreamError,
            format!("provider {provider:?} failed before answering (connection reset or invalid response)"),
        ),
    };
    Some(err)
}
