//! "May this request go out?", decided in one place before any upstream work: the
//! request's facts (id, protocol, client address), the key, then for model requests the
//! body, its peek, the model's resolution and scope, local token counts, and the limits
//! (last, so a request refused for any other reason uses no quota).

use std::sync::Arc;

use bytes::Bytes;
use pingora::proxy::Session;

use super::body::{self, BodyError};
use super::ctx::{request_id, RequestCtx, RouteState};
use super::failover::{self, Failover};
use super::spend;
use crate::auth::{self, ClientKey};
use crate::errors::{ErrorCode, GatewayError};
use crate::limits::{self, LimitRequest};
use crate::protocol::{self, Endpoint, Op, Protocol};
use crate::routing::Resolved;
use crate::runtime::State;
use crate::translate;

/// A request that may not go out, or could not be read.
pub enum Refused {
    Error(GatewayError),
    Io(Box<pingora::Error>),
    /// A body without Content-Length too long for Pingora to replay: to be re-sent
    /// with its length known (`relength`).
    Relength(Bytes),
}

impl From<GatewayError> for Refused {
    fn from(e: GatewayError) -> Self {
        Refused::Error(e)
    }
}

/// What an admitted model request comes to.
pub enum Admitted {
    /// Forward it (the route goes into the context).
    Forward(Box<RouteState>),
    /// Answer it locally: a 200 JSON body with these extra headers.
    Local(Bytes, Vec<(&'static str, String)>),
}

/// The request's endpoint, with its id, error protocol and client address noted in `ctx`.
pub fn classify(session: &Session, ctx: &mut RequestCtx) -> Endpoint {
    let req = session.req_header();
    ctx.request_id = request_id(req.headers.get("x-request-id"));
    let mut endpoint = protocol::classify(&req.method, req.uri.path());
    if matches!(endpoint, Endpoint::WrongMethod { .. })
        && req.uri.path().trim_end_matches('/') == "/v1/responses"
        && protocol::is_websocket_upgrade(&req.method, &req.headers)
    {
        endpoint = Endpoint::ResponsesWebSocket;
    }
    ctx.protocol = match &endpoint {
        Endpoint::Proxy { op, .. } => op.protocol(),
        Endpoint::Object { kind, .. } => Op::Object(*kind).protocol(),
        Endpoint::GeminiListModels => Protocol::Gemini,
        e if e.is_management() => Protocol::OpenAi,
        _ => protocol::guess_protocol(req.uri.path(), &req.headers),
    };
    let peer_ip = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip());
    ctx.client_ip = auth::client_ip(peer_ip, &req.headers, &ctx.config.server.trusted_proxies);
    endpoint
}

/// The client's key, from whichever header or query parameter its SDK uses.
pub fn authenticate(
    session: &Session,
    ctx: &mut RequestCtx,
    state: &State,
) -> Result<Arc<ClientKey>, GatewayError> {
    let req = session.req_header();
    let key = auth::authenticate(
        &ctx.config.keys,
        &*state.keys,
        &req.headers,
        req.uri.query(),
        ctx.client_ip,
    )?;
    ctx.set_key(key.clone());
    Ok(key)
}

fn protocol_name(p: Protocol) -> &'static str {
    match p {
        Protocol::OpenAi => "the OpenAI API",
        Protocol::Responses => "the OpenAI Responses API",
        Protocol::Anthropic => "the Anthropic Messages API",
        Protocol::Gemini => "the Gemini API",
    }
}

/// Reads and checks a model request of `op` (`gemini_model`: the model named in a Gemini
/// path) and admits it against its key's scope and limits.
pub async fn admit(
    session: &mut Session,
    ctx: &mut RequestCtx,
    state: &State,
    op: Op,
    gemini_model: Option<String>,
) -> Result<Admitted, Refused> {
    let body = read_body(session, ctx, op).await?;
    let proto_name = protocol_name(op.protocol());
    if body.is_empty() {
        let what = if op.takes_form() {
            "a multipart/form-data form"
        } else {
            "a JSON object"
        };
        let msg = format!("the request has no body; {proto_name} expects {what}");
        return Err(GatewayError::new(ErrorCode::InvalidRequest, msg).into());
    }
    // A form's files are not prompt tokens: only its text fields count.
    let (peek, text_bytes) = if op.takes_form() {
        let content_type = session
            .req_header()
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let form = protocol::form::peek(&content_type, &body)
            .await
            .map_err(|msg| GatewayError::new(ErrorCode::InvalidRequest, msg))?;
        let peek = translate::RequestPeek {
            model: form.model,
            model_span: form.model_span,
            stream: form.stream,
            max_output_tokens: None,
            stream_usage: false,
            present: translate::Present::default(),
            ..Default::default()
        };
        (peek, form.text_bytes)
    } else {
        let peek = translate::wire(op.protocol())
            .peek_request(&body)
            .map_err(|msg| GatewayError::new(ErrorCode::InvalidRequest, msg))?;
        (peek, body.len())
    };
    let present = peek.present;
    let requested = match (gemini_model, peek.model) {
        (Some(m), _) => m,
        (None, Some(m)) if !m.is_empty() => m,
        _ => {
            let place = if op.takes_form() {
                "a 'model' field in the form"
            } else {
                "the model name in the JSON body"
            };
            let msg = format!("the request is missing 'model'; {proto_name} needs {place}");
            return Err(GatewayError::new(ErrorCode::InvalidRequest, msg)
                .with_param("model")
                .into());
        }
    };
    required_fields(op, present, session.req_header().uri.path())?;
    let (resolved, key) = resolve_in_scope(ctx, &requested)?;
    url_safe_models(&resolved)?;
    if let Some(local) = estimated_token_count(op, &resolved, &body)? {
        return Ok(local);
    }
    // Budgets and limits come last: a request refused for any other reason uses no
    // quota. Budgets first: a request they refuse takes no rate-limit slot.
    let public = if resolved.route.is_pattern {
        requested.as_str()
    } else {
        resolved.route.name.as_str()
    };
    let prompt_estimate = limits::estimate_prompt_tokens(text_bytes);
    spend::reserve(
        ctx,
        state,
        &key,
        &resolved,
        public,
        prompt_estimate,
        peek.max_output_tokens,
    )?;
    let estimate = prompt_estimate.saturating_add(peek.max_output_tokens.unwrap_or(0));
    admit_limits(ctx, state, &key, &resolved, public, estimate).await?;
    let req = session.req_header();
    let in_scope = |name: &str| key.allows_model(&[name]);
    let mut candidates = failover::candidates(&ctx.config, &resolved, &in_scope);
    if let Some(previous) = peek.previous_response_id.as_deref() {
        candidates =
            super::objects::pin_previous_response(ctx, state, &key, previous, candidates).await?;
    }
    let failover = Failover::new(candidates);
    Ok(Admitted::Forward(Box::new(RouteState {
        op,
        body,
        model_span: peek.model_span,
        form: op.takes_form(),
        stream: peek.stream || op == Op::StreamGenerateContent,
        stream_usage: peek.stream_usage,
        unstored: peek.unstored,
        // The canonical path: `/v1/chat/completions/` is the same endpoint, not another.
        path: match req.uri.path() {
            p if p.len() > 1 => p.trim_end_matches('/').to_string(),
            p => p.to_string(),
        },
        query: upstream_query(req.uri.query(), &["key"]),
        resolved,
        failover,
        decoded: None,
    })))
}

/// The route of the model a client named, and the key, which must be allowed to use it.
/// The name is kept for the ledger (bounded: an unknown name is the client's text).
pub(super) fn resolve_in_scope(
    ctx: &mut RequestCtx,
    requested: &str,
) -> Result<(Resolved, Arc<ClientKey>), GatewayError> {
    ctx.requested = Some(requested.chars().take(200).collect());
    let shown: String = requested.chars().take(200).collect();
    let Some(resolved) = ctx.config.models.resolve(requested) else {
        let msg = format!("the model {shown:?} does not exist on this gateway; GET /v1/models lists the models your key may use");
        return Err(GatewayError::new(ErrorCode::ModelNotFound, msg).with_param("model"));
    };
    let Some(key) = ctx.key.clone() else {
        return Err(GatewayError::new(
            ErrorCode::Internal,
            "no key for a model request",
        ));
    };
    if !key.allows_model(&[requested, &resolved.route.name]) {
        let msg = format!("the API key {:?} may not use the model {shown:?}; GET /v1/models lists the models it may use", key.name);
        return Err(GatewayError::new(ErrorCode::ModelNotAllowed, msg).with_param("model"));
    }
    Ok((resolved, key))
}

/// `GET /v1/responses` with `Upgrade: websocket`: the model named at the upgrade, its
/// scope, budgets and limits (held for the session), and the targets that speak the
/// Responses API. Nothing is read from the client before the provider accepts.
pub async fn admit_websocket(
    session: &Session,
    ctx: &mut RequestCtx,
    state: &State,
) -> Result<Admitted, Refused> {
    use super::websocket;
    let req = session.req_header();
    let Some(requested) = websocket::model(req) else {
        return Err(websocket::no_model().into());
    };
    let (resolved, key) = resolve_in_scope(ctx, &requested)?;
    let in_scope = |name: &str| key.allows_model(&[name]);
    let candidates: Vec<_> = failover::candidates(&ctx.config, &resolved, &in_scope)
        .into_iter()
        .filter(|c| websocket::takes_socket(c.provider()))
        .collect();
    if candidates.is_empty() {
        return Err(websocket::no_socket_provider(&requested).into());
    }
    let public = if resolved.route.is_pattern {
        requested.as_str()
    } else {
        resolved.route.name.as_str()
    };
    spend::reserve(ctx, state, &key, &resolved, public, 0, None)?;
    admit_limits(ctx, state, &key, &resolved, public, 0).await?;
    Ok(Admitted::Forward(Box::new(RouteState {
        op: Op::ResponsesSocket,
        body: Bytes::new(),
        model_span: None,
        form: false,
        stream: true,
        stream_usage: false,
        unstored: false,
        path: "/v1/responses".to_string(),
        query: upstream_query(req.uri.query(), &["key", "model"]),
        resolved,
        failover: Failover::new(candidates),
        decoded: None,
    })))
}

/// The top-level fields the endpoint's official schema requires besides `model`, checked
/// here so a request without them gets the gateway's 400 naming the field, passed through
/// or not (the provider would refuse it anyway, after a round trip and a retry budget).
fn required_fields(op: Op, present: translate::Present, path: &str) -> Result<(), GatewayError> {
    use translate::Present as P;
    let required: &[(u8, &str)] = match op {
        Op::ChatCompletions => &[(P::MESSAGES, "messages")],
        Op::Completions | Op::ImagesGenerations => &[(P::PROMPT, "prompt")],
        Op::Embeddings | Op::Moderations => &[(P::INPUT, "input")],
        Op::AudioSpeech => &[(P::INPUT, "input"), (P::VOICE, "voice")],
        Op::Messages => &[(P::MESSAGES, "messages"), (P::MAX_TOKENS, "max_tokens")],
        Op::MessagesCountTokens => &[(P::MESSAGES, "messages")],
        Op::GenerateContent | Op::StreamGenerateContent => &[(P::CONTENTS, "contents")],
        _ => &[],
    };
    match required.iter().find(|(f, _)| !present.has(*f)) {
        Some((_, name)) => {
            let proto = protocol_name(op.protocol());
            let path = path.trim_end_matches('/');
            let msg = format!("the request is missing '{name}', which {proto} requires for {path}");
            Err(GatewayError::new(ErrorCode::InvalidRequest, msg).with_param(name))
        }
        None => Ok(()),
    }
}

/// Token counting for a model served by another kind: an estimate, said to be one.
fn estimated_token_count(
    op: Op,
    resolved: &Resolved,
    body: &[u8],
) -> Result<Option<Admitted>, GatewayError> {
    let counts_tokens = matches!(op, Op::MessagesCountTokens | Op::CountTokens);
    let served_natively = resolved
        .route
        .targets
        .first()
        .is_some_and(|t| t.provider.kind.protocol() == op.protocol());
    if !counts_tokens || served_natively {
        return Ok(None);
    }
    let n = translate::estimate_tokens(op.protocol(), body).map_err(|e| e.into_gateway_error())?;
    let v = match op {
        Op::CountTokens => serde_json::json!({"totalTokens": n}),
        _ => serde_json::json!({"input_tokens": n}),
    };
    let body = Bytes::from(serde_json::to_vec(&v).unwrap_or_default());
    let headers = vec![("x-modelgate-token-count", "estimated".to_string())];
    Ok(Some(Admitted::Local(body, headers)))
}

/// The key's, its model group's and the model's limits, with `estimate` tokens.
async fn admit_limits(
    ctx: &mut RequestCtx,
    state: &State,
    key: &ClientKey,
    resolved: &Resolved,
    public: &str,
    estimate: u64,
) -> Result<(), GatewayError> {
    let request = LimitRequest {
        key_name: &key.name,
        key_limits: &key.limits,
        model: public,
        model_limits: resolved
            .route
            .limits
            .as_ref()
            .map(|l| (resolved.route.name.as_str(), l)),
        estimate,
        budgets: ctx
            .spend
            .reservation
            .as_ref()
            .map_or(&[][..], |r| r.shared.as_slice()),
    };
    let outcome = state.limits.admit(&request).await;
    take_admission(ctx, outcome)
}

/// A call on a provider's objects (files, batches, stored responses, operations): it
/// counts against the key's request limits (and those of the key's model group that
/// `model` falls in); it uses no tokens and costs nothing.
pub(super) async fn admit_object_call(
    ctx: &mut RequestCtx,
    state: &State,
    key: &ClientKey,
    model: Option<&str>,
) -> Result<(), GatewayError> {
    let request = LimitRequest {
        key_name: &key.name,
        key_limits: &key.limits,
        model: model.unwrap_or_default(),
        model_limits: None,
        estimate: 0,
        budgets: &[],
    };
    let outcome = state.limits.admit(&request).await;
    take_admission(ctx, outcome)
}

/// Keeps an admission (its headers, and its counts to settle) or turns a refusal into
/// the error the client gets.
fn take_admission(
    ctx: &mut RequestCtx,
    outcome: Result<limits::Admission, Box<limits::Rejection>>,
) -> Result<(), GatewayError> {
    match outcome {
        Ok(admission) => {
            if let Some(status) = &admission.status {
                ctx.limits.headers = status.headers();
            }
            if let Some(b) = &admission.budget {
                ctx.spend.headers = spend::headers(b);
            }
            ctx.limits.admission = Some(admission);
            Ok(())
        }
        Err(mut rejection) => {
            if let Some(refusal) = rejection.budget.take() {
                ctx.spend.headers = spend::headers(&refusal.status);
                return Err(spend::refusal_error(&refusal));
            }
            ctx.limits.headers = rejection.status.headers();
            let code = match rejection.limit {
                "tpm" => ErrorCode::TokenRateLimitExceeded,
                "unavailable" => ErrorCode::LimitsUnavailable,
                _ => ErrorCode::RateLimitExceeded,
            };
            let msg = format!(
                "{}; retry after {}s",
                rejection.message, rejection.retry_after
            );
            let mut e = GatewayError::new(code, msg);
            e.retry_after = Some(rejection.retry_after);
            Err(e)
        }
    }
}

/// A model name that a Gemini provider gets in its URL path (`/v1beta/models/NAME:action`)
/// must be a plain name: on a wildcard route it is the client's text, and `../`, `?` or
/// `:` would reach another path of the operator's account with its credential.
fn url_safe_models(resolved: &Resolved) -> Result<(), GatewayError> {
    let route = &resolved.route;
    for (i, t) in route.targets.iter().enumerate() {
        if t.provider.kind != crate::upstream::ProviderKind::Gemini {
            continue;
        }
        let model = route.upstream_model(i, &resolved.requested);
        let plain = !model.is_empty()
            && model.len() <= 200
            && !model.contains("..")
            && model
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-' | b'@'));
        if !plain {
            let shown: String = model.chars().take(80).collect();
            let msg = format!("the model name {shown:?} cannot be sent to a Gemini provider: a model name there may hold only letters, digits, '.', '_', '-' and '@'");
            return Err(GatewayError::new(ErrorCode::InvalidRequest, msg).with_param("model"));
        }
    }
    Ok(())
}

/// The body of a model request, bounded by `server.max_body_bytes`: a form for the
/// upload endpoints, JSON for the others.
pub(super) async fn read_body(
    session: &mut Session,
    ctx: &RequestCtx,
    op: Op,
) -> Result<Bytes, Refused> {
    let headers = &session.req_header().headers;
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let is_form = protocol::form::is_form(content_type);
    if op.takes_form() && !is_form {
        let path = session.req_header().uri.path();
        let msg = format!(
            "{path} takes a multipart/form-data body (a file and a 'model' field), not {}",
            content_type.unwrap_or("a body without a Content-Type")
        );
        return Err(GatewayError::new(ErrorCode::InvalidRequest, msg).into());
    }
    if !op.takes_form() && content_type.is_some_and(|v| v.trim_start().starts_with("multipart/")) {
        let path = session.req_header().uri.path();
        let msg = format!("{path} takes a JSON body; multipart forms are for /v1/audio/transcriptions, /v1/audio/translations, /v1/images/edits and /v1/images/variations");
        return Err(GatewayError::new(ErrorCode::InvalidRequest, msg).into());
    }
    let expects_continue = headers
        .get(http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let max = ctx.config.server.max_body_bytes;
    if expects_continue && body::declared_length(session).unwrap_or(0) <= max {
        // curl waits a second for this before sending bodies over 1 KiB.
        session
            .write_continue_response()
            .await
            .map_err(Refused::Io)?;
    }
    let known = super::relength::known_body(session);
    match body::read_request_body(session, max, known).await {
        Ok(b) if !body::replayable(session) => Err(Refused::Relength(b)),
        Ok(b) => Ok(b),
        Err(BodyError::TooLarge) => {
            session.set_keepalive(None);
            let msg = format!("the request body is larger than this gateway's limit of {max} bytes (server.max_body_bytes); retrying the same payload will not work");
            Err(GatewayError::new(ErrorCode::RequestTooLarge, msg).into())
        }
        Err(BodyError::Read(e)) => Err(body::unreadable(session, &e).into()),
    }
}

/// The client's query string without `drop`'s parameters: `key=` (a client credential),
/// and the gateway's own routing parameters where they apply.
pub(super) fn upstream_query(query: Option<&str>, drop: &[&str]) -> Option<String> {
    let q = query?;
    if !form_urlencoded::parse(q.as_bytes()).any(|(k, _)| drop.contains(&&*k)) {
        return Some(q.to_string());
    }
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (k, v) in form_urlencoded::parse(q.as_bytes()).filter(|(k, _)| !drop.contains(&&**k)) {
        out.append_pair(&k, &v);
    }
    let s = out.finish();
    (!s.is_empty()).then_some(s)
}
