//! The client's response: its headers, and the body plan chosen once from the attempt and
//! the provider's status and content type: translate it, relay it (model renamed, usage
//! read), replace it with an error, or leave it untouched. Also how a stream that fails
//! midway is ended in the client's protocol.

use bytes::Bytes;
use pingora::http::ResponseHeader;

use super::ctx::{Attempt, RequestCtx, RouteState};
use super::relay::Relay;
use crate::errors::{self, ErrorCode, GatewayError};
use crate::gateway_headers;
use crate::protocol::{Op, Protocol};
use crate::translate::model::Usage;
use crate::translate::{self, ResponseTranslator, Translated};

/// Provider response headers that describe the gateway's provider account, not the client's.
const PROVIDER_ACCOUNT_HEADERS: [&str; 4] = [
    "set-cookie",
    "openai-organization",
    "openai-project",
    "anthropic-organization-id",
];

/// How the provider's body becomes the client's.
#[derive(Default)]
pub enum BodyPlan {
    #[default]
    Untouched,
    /// Into the client's protocol.
    Translate(Box<ResponseTranslator>),
    /// Passthrough: public model name restored, usage read on the way.
    Relay(Relay),
    /// A body the gateway cannot use, discarded; this error goes instead (at the end).
    Replace(Option<Bytes>),
    /// A list of provider objects, cut down to the calling key's.
    FilterList(super::objects::ListFilter),
    /// Embeddings from the other API, rewritten at the end.
    Embeddings(Box<translate::embeddings::Translator>),
    /// A relayed WebSocket: the provider's frames pass untouched, watched for usage.
    Socket(Box<super::websocket::SocketWatch>),
}

impl BodyPlan {
    /// Feeds one provider chunk; returns what the client gets now, and the usage once the
    /// body has ended.
    pub fn feed(&mut self, chunk: Option<Bytes>, end: bool) -> (Option<Bytes>, Option<Usage>) {
        match self {
            BodyPlan::Untouched => (chunk, None),
            BodyPlan::Translate(t) => {
                let out = t.feed(chunk, end);
                (out, if end { t.usage() } else { None })
            }
            BodyPlan::Relay(r) => r.feed(chunk, end),
            BodyPlan::Replace(body) => (if end { body.take() } else { None }, None),
            BodyPlan::FilterList(f) => (f.feed(chunk, end), None),
            BodyPlan::Embeddings(t) => {
                let out = t.feed(chunk, end);
                (out, if end { t.usage() } else { None })
            }
            BodyPlan::Socket(w) => {
                if let Some(c) = &chunk {
                    w.feed(c);
                }
                (chunk, if end { w.usage() } else { None })
            }
        }
    }

    /// The usage seen so far, for a body cut short.
    pub fn usage_so_far(&mut self) -> Option<Usage> {
        match self {
            BodyPlan::Translate(t) => t.usage(),
            BodyPlan::Relay(r) => r.usage_so_far(),
            BodyPlan::Socket(w) => w.usage(),
            _ => None,
        }
    }
}

/// The provider's content type, looked at once.
enum Kind {
    Json,
    Sse,
    Html,
    /// Another non-empty type (kept for the error message).
    Other(String),
    Unknown,
}

fn kind(resp: &ResponseHeader) -> Kind {
    let ctype = resp
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if ctype.starts_with("text/event-stream") {
        Kind::Sse
    } else if ctype.contains("json") {
        Kind::Json
    } else if ctype.starts_with("text/html") {
        Kind::Html
    } else if ctype.is_empty() {
        Kind::Unknown
    } else {
        Kind::Other(ctype.chars().take(60).collect())
    }
}

/// The provider's header is taken apart into its `http` parts: that forgets the original
/// case of its names, which Pingora keeps in a second map each insert would update too
/// (HTTP/1 names are case-insensitive; without it standard names go out in their usual
/// capitals, the others in lower case, and HTTP/2 sends all in lower case anyway), and
/// lets the gateway's headers go straight into the map, their names parsed once
/// (`gateway_headers`).
pub fn client_headers(ctx: &RequestCtx, resp: &mut ResponseHeader) {
    let (empty, ()) = http::Response::new(()).into_parts();
    let mut parts: http::response::Parts =
        std::mem::replace(resp, ResponseHeader::from(empty)).into();
    let h = &mut parts.headers;
    // The key's limits replace the provider's (those describe the gateway's account), in
    // every provider's naming (`x-ratelimit-*`, `anthropic-ratelimit-*`). One pass over
    // the provider's headers finds all that go, each compared by name.
    let limited = !ctx.limits.headers.is_empty();
    let dropped: Vec<http::HeaderName> = h
        .keys()
        .filter(|n| {
            let n = n.as_str();
            PROVIDER_ACCOUNT_HEADERS.contains(&n)
                || (limited
                    && (n.starts_with("x-ratelimit-") || n.starts_with("anthropic-ratelimit-")))
        })
        .cloned()
        .collect();
    for name in &dropped {
        h.remove(name);
    }
    gateway_headers::set(h, &gateway_headers::REQUEST_ID, &ctx.request_id);
    if let Some(a) = &ctx.attempt {
        gateway_headers::set(h, &gateway_headers::PROVIDER, &a.provider.name);
    }
    h.insert(
        gateway_headers::ATTEMPTS.clone(),
        http::HeaderValue::from(ctx.attempts()),
    );
    for (k, v) in ctx.limits.headers.iter().chain(&ctx.spend.headers) {
        h.insert(k.clone(), v.clone());
    }
    *resp = ResponseHeader::from(parts);
}

/// Chooses the body plan and adjusts the header to it; with the gateway error when the
/// provider's body cannot be used at all (the status is then 502).
pub fn plan(
    route: &RouteState,
    attempt: &Attempt,
    resp: &mut ResponseHeader,
) -> pingora::Result<(BodyPlan, Option<GatewayError>)> {
    let kind = kind(resp);
    let success = resp.status.is_success();
    let client = route.op.protocol();
    // No API answers a success with a web page or another non-JSON type: a wrong base_url
    // (a dashboard, a login page, a captive proxy). Say so rather than pass a broken 200.
    let unusable = match (&kind, &attempt.translated) {
        (Kind::Html, _) => Some("a web page (text/html), not the API".to_string()),
        (Kind::Other(t), Some(_)) => Some(format!("content-type {t:?}, not JSON or SSE")),
        _ => None,
    };
    if let Some(what) = unusable.filter(|_| success) {
        let message = format!(
            "provider {:?} answered {} with {what}; check its base_url",
            attempt.provider.name,
            resp.status.as_u16()
        );
        resp.set_status(502)?;
        chunked(resp, "application/json")?;
        let body = errors::error_body(
            client,
            502,
            ErrorCode::UpstreamError.as_str(),
            &message,
            None,
        );
        let e = GatewayError::new(ErrorCode::UpstreamError, message);
        return Ok((BodyPlan::Replace(Some(body)), Some(e)));
    }
    if let Some(reply) = attempt.translated.as_ref().and_then(|t| t.embeddings) {
        if success {
            let t = translate::embeddings::Translator::new(reply, &route.resolved.requested);
            chunked(resp, "application/json")?;
            return Ok((BodyPlan::Embeddings(Box::new(t)), None));
        }
    }
    if let Some(translated) = &attempt.translated {
        let t = translator(route, attempt, translated, resp.status.as_u16());
        if let Some(v) = translated.dropped.header_value() {
            resp.insert_header("x-modelgate-dropped", v)?;
        }
        chunked(resp, t.content_type())?;
        if t.is_stream() {
            resp.insert_header(http::header::CACHE_CONTROL, "no-cache")?;
        }
        return Ok((BodyPlan::Translate(Box::new(t)), None));
    }
    if !success {
        return Ok((BodyPlan::Untouched, None));
    }
    if matches!(
        route.op,
        Op::FilesCreate | Op::BatchesCreate | Op::Object(_)
    ) {
        // Objects and their contents (a file's bytes) pass as they are: no model, no usage.
        return Ok((BodyPlan::Untouched, None));
    }
    if route.op == Op::ChatCompletions
        && route.stream
        && !route.stream_usage
        && !attempt.asks_stream_usage
    {
        // The provider reports no usage in such a stream: the gateway's token counts for
        // it (limits, cost) are the request's estimate.
        resp.insert_header("x-modelgate-usage", "estimated")?;
    }
    // The client sees the public name it asked for, not the provider's model name.
    let sse = matches!(kind, Kind::Sse);
    // A Gemini stream without alt=sse is one JSON array: its model is left as it is.
    let renamable = sse || (matches!(kind, Kind::Json) && route.op != Op::StreamGenerateContent);
    let rename = (renamable
        && attempt.target_model != route.resolved.requested
        && !resp.headers.contains_key(http::header::CONTENT_ENCODING))
    .then(|| route.resolved.requested.clone());
    // Embeddings report no usage worth copying their large bodies for.
    let usage = route.op != Op::Embeddings;
    if rename.is_none() && !usage {
        return Ok((BodyPlan::Untouched, None));
    }
    let mut relay = Relay::new(route.op.protocol(), sse, rename, usage);
    if sse && attempt.asks_stream_usage {
        relay = relay.hiding_usage_chunk();
    }
    if relay.changes_length() {
        resp.remove_header(&http::header::CONTENT_LENGTH);
        resp.insert_header(http::header::TRANSFER_ENCODING, "chunked")?;
    }
    Ok((BodyPlan::Relay(relay), None))
}

fn chunked(resp: &mut ResponseHeader, content_type: &str) -> pingora::Result<()> {
    resp.remove_header(&http::header::CONTENT_LENGTH);
    resp.remove_header(&http::header::CONTENT_ENCODING);
    resp.insert_header(http::header::TRANSFER_ENCODING, "chunked")?;
    resp.insert_header(http::header::CONTENT_TYPE, content_type)?;
    Ok(())
}

/// The translator for a translated attempt's response.
fn translator(
    route: &RouteState,
    attempt: &Attempt,
    translated: &Translated,
    status: u16,
) -> ResponseTranslator {
    let (client, provider) = (route.op.protocol(), attempt.provider.kind.protocol());
    let public = route.resolved.requested.as_str();
    let t = if !(200..300).contains(&status) {
        ResponseTranslator::error(client, status)
    } else if route.stream {
        let include_usage = route
            .decoded
            .as_ref()
            .is_some_and(|d| d.request.stream_usage);
        let client_sse = client != Protocol::Gemini || route.gemini_sse();
        ResponseTranslator::stream(provider, client, public, include_usage, client_sse)
            .unwrap_or_else(|| ResponseTranslator::json(provider, client, public))
    } else {
        ResponseTranslator::json(provider, client, public)
    };
    let t = match route.decoded.as_ref() {
        Some(d) => t.with_client_state(&d.client),
        None => t,
    };
    t.with_tool_names(&translated.tool_names)
}

/// What ends a client's stream after the provider failed midway: the translator's own
/// ending, or an error event in the client's protocol.
pub fn stream_failure(ctx: &mut RequestCtx, err: &GatewayError) -> Option<Bytes> {
    let route = ctx.route.as_ref().filter(|r| r.stream)?;
    match &mut ctx.response.plan {
        BodyPlan::Translate(t) => return t.feed(None, true),
        BodyPlan::Relay(r) => {
            if let Some(end) = r.responses_failure(&err.message) {
                return Some(end);
            }
        }
        _ => {}
    }
    let json_array = ctx.protocol == Protocol::Gemini && !route.gemini_sse();
    Some(translate::wire(ctx.protocol).stream_error(err, json_array))
}
