//! One upstream attempt: its target (from the failover state machine), the provider
//! request for it (the client's bytes with the model spliced in, or a translation when the
//! provider speaks another protocol), its header, and what a transport failure means to
//! the client.

use std::time::Instant;

use bytes::Bytes;
use pingora::http::RequestHeader;
use pingora::{Error, ErrorSource, ErrorType};

use super::ctx::{Attempt, RequestCtx, RouteState};
use super::failover::{Candidate, Pick};
use crate::errors::{ErrorCode, GatewayError};
use crate::health::Health;
use crate::metrics;
use crate::protocol::{Op, Protocol};
use crate::rewrite;
use crate::translate::{self, Translated};
use crate::upstream::{Provider, ProviderKind};

/// Picks the next target and builds its request into `ctx.attempt`. A fallback whose
/// protocol cannot express this request is skipped rather than failing a request that is
/// failing over.
pub fn start(ctx: &mut RequestCtx, health: &Health) -> Result<Attempt, GatewayError> {
    let previous = ctx.attempt.take();
    let Some(route) = ctx.route.as_mut() else {
        return Err(GatewayError::new(
            ErrorCode::Internal,
            "no route for a proxied request",
        ));
    };
    let (pick, candidate, (body, client_path, translated)) = loop {
        let pick = match route.failover.pick(route.op, health, Instant::now()) {
            Ok(p) => p,
            Err(none) => {
                let what = format!("{} {}", route.op.protocol().as_str(), route.path);
                return Err(none.into_error(&route.resolved.requested, &what));
            }
        };
        let candidate = route.failover.candidates[pick.candidate].clone();
        match provider_request(route, &candidate, pick.translate) {
            Ok(r) => break (pick, candidate, r),
            Err(_) if !pick.again && route.failover.unservable() => continue,
            Err(e) => return Err(e),
        }
    };
    route.failover.commit(pick, health);
    let provider = candidate.provider().clone();
    if let Some(p) = previous.as_ref().filter(|_| !pick.again) {
        metrics::FAILOVERS
            .with_label_values(&[&route.resolved.route.name, &p.provider.name, &provider.name])
            .inc();
    }
    let mut path = provider.upstream_path(&client_path);
    if let Some(q) = route.query.as_ref().filter(|_| translated.is_none()) {
        path.push('?');
        path.push_str(q);
    }
    let Ok(uri) = path.parse::<http::Uri>() else {
        let msg = format!(
            "the model name {:?} cannot be used in a URL path",
            candidate.upstream_model
        );
        return Err(GatewayError::new(ErrorCode::InvalidRequest, msg));
    };
    let price = candidate.price(&ctx.config.prices);
    let asks_stream_usage = translated.is_none() && asks_stream_usage(route, &provider, &body);
    let body = if asks_stream_usage {
        with_stream_usage(&body)
    } else {
        body
    };
    Ok(Attempt {
        provider,
        price,
        asks_stream_usage,
        target_model: candidate.upstream_model,
        uri,
        body,
        body_sent: false,
        translated,
    })
}

/// The provider request for a candidate: body, path (before the base URL prefix) and,
/// when translated, what was dropped. `translate`: translate even where the provider
/// would take the client's protocol (a retry after it turned out to lack it).
fn provider_request(
    route: &mut RouteState,
    c: &Candidate,
    translate: bool,
) -> Result<(Bytes, String, Option<Translated>), GatewayError> {
    let provider = c.provider();
    let client_protocol = route.op.protocol();
    let provider_protocol = if translate {
        provider.kind.protocol()
    } else {
        provider.wire_protocol(client_protocol)
    };
    let target_model = c.upstream_model.as_str();
    if provider_protocol == client_protocol {
        return Ok((
            passthrough_body(route, target_model),
            passthrough_path(route, target_model),
            None,
        ));
    }
    if let Some(r) = embeddings_request(route, provider_protocol, target_model)? {
        let translated = Translated {
            embeddings: Some(r.reply),
            ..Translated::default()
        };
        return Ok((r.body, r.path, Some(translated)));
    }
    if route.decoded.is_none() {
        let mut d =
            translate::decode(client_protocol, &route.body).map_err(|e| e.into_gateway_error())?;
        if client_protocol == Protocol::Gemini {
            // Gemini says "stream" in the path, not the body.
            d.request.stream = route.stream;
        }
        route.decoded = Some(d);
    }
    let Some(req) = route.decoded.as_ref().map(|d| &d.request) else {
        return Err(GatewayError::new(
            ErrorCode::Internal,
            "the decoded request is missing",
        ));
    };
    // The model's max_tokens is the default and the cap on translated requests.
    let mut req = std::borrow::Cow::Borrowed(req);
    if let (Some(cap), Some(asked)) = (c.route.max_tokens, req.max_tokens) {
        if asked > cap {
            req.to_mut().max_tokens = Some(cap);
        }
    }
    let default_max = c
        .route
        .max_tokens
        .unwrap_or(translate::anthropic::DEFAULT_MAX_TOKENS);
    let version = provider.anthropic_version.as_str();
    let p = translate::encode_request(&req, provider_protocol, target_model, default_max, version)
        .map_err(|e| e.into_gateway_error())?;
    let translated = Translated {
        dropped: p.dropped,
        tool_names: p.tool_names,
        embeddings: None,
    };
    Ok((p.body, p.path, Some(translated)))
}

/// An embeddings request in the provider's API, when it speaks the other one.
fn embeddings_request(
    route: &RouteState,
    provider: Protocol,
    model: &str,
) -> Result<Option<translate::embeddings::Request>, GatewayError> {
    use translate::embeddings;
    let r = match (route.op, provider) {
        (Op::Embeddings, Protocol::Gemini) => embeddings::openai_to_gemini(&route.body, model),
        (Op::EmbedContent | Op::BatchEmbedContents, Protocol::OpenAi) => {
            embeddings::gemini_to_openai(route.op, &route.body, model)
        }
        _ => return Ok(None),
    };
    r.map(Some).map_err(|e| e.into_gateway_error())
}

/// Whether a passed-through Chat stream should ask for its usage, which the client did not
/// (without it the provider reports none, and the request would be priced on its prompt
/// estimate alone). The usage chunk is read and kept from the client (`relay.rs`).
fn asks_stream_usage(route: &RouteState, provider: &Provider, body: &[u8]) -> bool {
    route.op == Op::ChatCompletions
        && route.stream
        && !route.stream_usage
        && provider.kind == ProviderKind::OpenAi
        && provider.stream_usage
        && memchr::memmem::find(body, b"stream_options").is_none()
}

/// The body with `"stream_options":{"include_usage":true}` as its first member.
fn with_stream_usage(body: &[u8]) -> Bytes {
    const MEMBER: &[u8] = br#""stream_options":{"include_usage":true}"#;
    let Some(open) = body.iter().position(|b| *b == b'{') else {
        return Bytes::copy_from_slice(body);
    };
    let rest = &body[open + 1..];
    let empty = rest.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'}');
    let mut out = Vec::with_capacity(body.len() + MEMBER.len() + 1);
    out.extend_from_slice(&body[..=open]);
    out.extend_from_slice(MEMBER);
    if !empty {
        out.push(b',');
    }
    out.extend_from_slice(rest);
    Bytes::from(out)
}

/// Passthrough: only the model name changes, spliced into the client's bytes, unless the
/// client replays signatures relayed from another provider kind.
fn passthrough_body(route: &RouteState, target_model: &str) -> Bytes {
    if route.form {
        return match &route.model_span {
            Some(span) if target_model != route.resolved.requested => {
                rewrite::splice_raw(&route.body, span.clone(), target_model)
            }
            _ => route.body.clone(),
        };
    }
    // Each request of a batch names its model too, and Gemini wants it to be the path's.
    if route.op == Op::BatchEmbedContents && target_model != route.resolved.requested {
        if let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(&route.body) {
            if let Some(items) = v["requests"].as_array_mut() {
                for item in items.iter_mut().filter(|i| i.get("model").is_some()) {
                    item["model"] = format!("models/{target_model}").into();
                }
            }
            return Bytes::from(serde_json::to_vec(&v).unwrap_or_default());
        }
    }
    let client_protocol = route.op.protocol();
    match (
        translate::strip_relayed_signatures(client_protocol, &route.body),
        &route.model_span,
    ) {
        (Some(mut v), _) => {
            if v.get("model").is_some() {
                v["model"] = target_model.into();
            }
            Bytes::from(serde_json::to_vec(&v).unwrap_or_default())
        }
        (None, Some(span)) if target_model != route.resolved.requested => {
            rewrite::splice_json_string(&route.body, span.clone(), target_model)
        }
        (None, _) => route.body.clone(),
    }
}

fn passthrough_path(route: &RouteState, target_model: &str) -> String {
    match route.op.gemini_action() {
        Some(action) => {
            let version = if route.path.starts_with("/v1beta/") {
                "v1beta"
            } else {
                "v1"
            };
            format!("/{version}/models/{target_model}:{action}")
        }
        None => route.path.clone(),
    }
}

/// The attempt's request header: the provider's policy (`Provider::prepare_request`),
/// then this attempt's path, length and request id.
pub fn prepare_header(
    attempt: &Attempt,
    pick: Option<Pick>,
    req: &mut RequestHeader,
    request_id: &str,
) -> pingora::Result<()> {
    // A translated body follows the provider's version, so that is the one it goes with.
    let client_sets_version =
        attempt.translated.is_none() && req.headers.contains_key("anthropic-version");
    let credential = pick.map_or(0, |p| p.credential);
    attempt
        .provider
        .prepare_request(req, credential, client_sets_version)?;
    req.set_uri(attempt.uri.clone());
    req.insert_header(http::header::CONTENT_LENGTH, attempt.body.len().to_string())?;
    req.insert_header("x-request-id", request_id)?;
    Ok(())
}

/// The `modelgate_upstream_attempts_total` outcome of a transport failure.
pub fn outcome(e: &Error) -> &'static str {
    match e.etype() {
        ErrorType::ConnectTimedout
        | ErrorType::TLSHandshakeTimedout
        | ErrorType::ReadTimedout
        | ErrorType::WriteTimedout => "timeout",
        // A reset or broken connection: the contract's closest outcome.
        _ => "connect_error",
    }
}

/// The client-facing error for a failure Pingora reported while proxying; `None` when
/// the client itself went away (nothing to answer).
pub fn proxy_error(e: &Error, provider: &str) -> Option<GatewayError> {
    let (code, msg) = match e.etype() {
        ErrorType::ConnectTimedout | ErrorType::TLSHandshakeTimedout => (
            ErrorCode::UpstreamRequestTimeout,
            format!("provider {provider:?} did not accept a connection in time"),
        ),
        ErrorType::ReadTimedout | ErrorType::WriteTimedout => (
            ErrorCode::UpstreamRequestTimeout,
            format!("provider {provider:?} did not answer in time (timeouts.first_byte)"),
        ),
        _ if e.esource() == &ErrorSource::Downstream => return None,
        ErrorType::ConnectRefused => (
            ErrorCode::UpstreamError,
            format!("provider {provider:?} refused the connection"),
        ),
        ErrorType::TLSHandshakeFailure | ErrorType::InvalidCert | ErrorType::HandshakeError => (
            ErrorCode::UpstreamError,
            format!("TLS with provider {provider:?} failed"),
        ),
        ErrorType::ConnectNoRoute | ErrorType::ConnectError | ErrorType::SocketError => (
            ErrorCode::UpstreamError,
            format!("could not connect to provider {provider:?}"),
        ),
        _ => (
            ErrorCode::UpstreamError,
            format!("provider {provider:?} failed before answering (connection reset or invalid response)"),
        ),
    };
    Some(GatewayError::new(code, msg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_usage_request_goes_first_in_the_object() {
        let body = with_stream_usage(br#" {"model":"m","stream":true}"#);
        assert_eq!(
            &body[..],
            br#" {"stream_options":{"include_usage":true},"model":"m","stream":true}"#
        );
        assert_eq!(
            &with_stream_usage(b"{ }")[..],
            br#"{"stream_options":{"include_usage":true} }"#
        );
    }
}
