//! The codec shape every wire protocol implements, and the one place protocols are
//! registered.
//!
//! A protocol folder (`openai/`, `responses/`, `anthropic/`, `gemini/`) is the only owner
//! of its wire format. It implements up to three traits on one unit struct:
//! - [`ClientCodec`]: its clients' requests into the neutral model (plus whatever that
//!   protocol alone needs to answer, [`ClientState`]), and neutral responses and stream
//!   events back into its shape;
//! - [`ProviderCodec`]: the neutral request into a provider body and path, the provider's
//!   responses and streams back into the neutral model (absent for a protocol that is only
//!   ever passed through to, like Responses);
//! - [`Wire`]: facts about its bytes that the proxy needs on the passthrough path (model
//!   name spans, usage, the event that ends a broken stream, relayed signatures).
//!
//! Traits with `&'static dyn` dispatch rather than enums: one registration per protocol
//! ([`codecs`]) instead of a `match Protocol` per operation. Dispatch costs one indirect
//! call per stream event; encoders and decoders are boxed once per response, never per
//! event.

use std::borrow::Cow;
use std::ops::Range;

use bytes::Bytes;
use serde_json::value::RawValue;
use serde_json::Value;

use super::model::{
    ChatRequest, ChatResponse, FinishReason, Issuer, Signature, StreamEvent, Usage,
};
use super::{anthropic, gemini, openai, responses, Dropped, TranslateError};
use crate::errors::GatewayError;
use crate::protocol::Protocol;

// ---------------------------------------------------------------- registration

/// A protocol's codecs, registered once in [`codecs`].
pub struct Codecs {
    pub client: &'static dyn ClientCodec,
    /// `None`: requests are never translated into this protocol, only passed through.
    pub provider: Option<&'static dyn ProviderCodec>,
    pub wire: &'static dyn Wire,
}

/// The one dispatch point from a protocol to its codecs.
pub fn codecs(p: Protocol) -> &'static Codecs {
    match p {
        Protocol::OpenAi => &openai::CODECS,
        Protocol::Responses => &responses::CODECS,
        Protocol::Anthropic => &anthropic::CODECS,
        Protocol::Gemini => &gemini::CODECS,
    }
}

pub fn client(p: Protocol) -> &'static dyn ClientCodec {
    codecs(p).client
}

pub fn provider(p: Protocol) -> Option<&'static dyn ProviderCodec> {
    codecs(p).provider
}

/// Wire facts of `p` (see [`Wire`]): what the proxy reads from bodies it passes through.
pub fn wire(p: Protocol) -> &'static dyn Wire {
    codecs(p).wire
}

// ---------------------------------------------------------------- decoded requests

/// What a client codec keeps from the request for answering it, beyond the neutral
/// request: state only that protocol's encoders read.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum ClientState {
    #[default]
    None,
    Responses(Box<responses::ClientState>),
}

/// A client request decoded: the neutral request, and the client codec's own state for
/// the response side (`ResponseTranslator::with_client_state`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decoded {
    pub request: ChatRequest,
    pub client: ClientState,
}

impl From<ChatRequest> for Decoded {
    fn from(request: ChatRequest) -> Self {
        Decoded {
            request,
            client: ClientState::None,
        }
    }
}

/// What identifies a translated response to the client, whatever its protocol.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// The model name the client asked for (never the provider's).
    pub model: String,
    /// Unix seconds, for protocols whose responses carry a creation time.
    pub created: u64,
    /// OpenAI `stream_options.include_usage`: the client wants a usage chunk.
    pub include_usage: bool,
    /// Gemini: SSE (`alt=sse`) rather than one JSON array.
    pub sse: bool,
}

impl Envelope {
    pub fn new(model: &str) -> Self {
        Envelope {
            model: model.to_string(),
            created: unix_now(),
            include_usage: false,
            sse: true,
        }
    }
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

// ---------------------------------------------------------------- codec traits

/// A client protocol: requests in, responses out.
pub trait ClientCodec: Sync {
    /// A parsed request body into the neutral model. Streaming is read from the body
    /// (Gemini says it in the path: the caller sets `request.stream`).
    fn decode_request(&self, v: &Value) -> Result<Decoded, TranslateError>;

    /// The request a token-count body stands for (Gemini's countTokens may wrap a whole
    /// generateContent request).
    fn token_count_request<'a>(&self, v: &'a Value) -> &'a Value {
        v
    }

    /// A neutral response as this protocol's response body.
    fn encode_response(&self, r: &ChatResponse, env: &Envelope, state: &ClientState) -> Value;

    fn stream_encoder(&self, env: Envelope, state: &ClientState) -> Box<dyn StreamEncode>;
}

/// A provider protocol: requests out, responses in.
pub trait ProviderCodec: Sync {
    /// The provider body for `req` (tool names already acceptable to it), and the path it
    /// goes to (before the base URL's prefix). `default_max_tokens` is for protocols that
    /// require a limit.
    fn encode_request(
        &self,
        req: &ChatRequest,
        model: &str,
        default_max_tokens: u64,
        dropped: &mut Dropped,
    ) -> Result<(Value, String), TranslateError>;

    fn decode_response(&self, v: &Value) -> Result<ChatResponse, TranslateError>;

    fn stream_decoder(&self) -> Box<dyn StreamDecode>;

    /// A name this provider accepts for a tool it would refuse as `name`; `None` when
    /// `name` is fine as it is.
    fn wire_tool_name(&self, name: &str) -> Option<String>;
}

/// A provider's stream: one SSE event's data at a time, into neutral events.
pub trait StreamDecode: Send + Sync {
    fn feed(&mut self, data: &str, out: &mut Vec<StreamEvent>);

    /// At the end of the provider's bytes, for protocols without an end marker.
    fn end(&mut self, _out: &mut Vec<StreamEvent>) {}
}

/// A client's stream: neutral events into its bytes.
pub trait StreamEncode: Send + Sync {
    fn encode(&mut self, ev: &StreamEvent, out: &mut Vec<u8>);

    /// Closes the stream (whatever is still open, then the protocol's end).
    fn finish(&mut self, out: &mut Vec<u8>);

    fn tally(&self) -> &Tally;

    /// The usage reported so far.
    fn usage(&self) -> Option<Usage> {
        self.tally().usage
    }

    fn content_type(&self) -> &'static str {
        "text/event-stream"
    }

    /// The client codec's state, when it is known only after the encoder was made.
    fn set_client_state(&mut self, _state: &ClientState) {}
}

/// What every stream encoder keeps besides its own output state: the finish reason and
/// usage reported so far (written when the stream closes), and whether it is closed
/// (nothing is written after that).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    pub finish: Option<FinishReason>,
    pub usage: Option<Usage>,
    pub done: bool,
}

// ---------------------------------------------------------------- wire facts

/// What the gateway needs to know about a request body before routing it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestPeek {
    pub model: Option<String>,
    /// Byte range of the `model` value (quotes included) in the body.
    pub model_span: Option<Range<usize>>,
    pub stream: bool,
    /// Output tokens the client asked for, in the field its protocol uses.
    pub max_output_tokens: Option<u64>,
    /// OpenAI `stream_options.include_usage`: a stream that will report its usage.
    pub stream_usage: bool,
    /// Which of the fields some endpoint requires are in the body.
    pub present: Present,
    /// Responses: `"store": false` (nothing kept at the provider, no id to remember).
    pub unstored: bool,
    /// Responses: the stored response this one continues.
    pub previous_response_id: Option<String>,
}

/// Top-level request fields that an endpoint of some protocol requires, as a set (the
/// peek records which a body has, so a missing one is the gateway's 400, not the
/// provider's, on passthrough too).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Present(u8);

impl Present {
    pub const MESSAGES: u8 = 1;
    pub const PROMPT: u8 = 2;
    pub const INPUT: u8 = 4;
    pub const VOICE: u8 = 8;
    pub const MAX_TOKENS: u8 = 16;
    pub const CONTENTS: u8 = 32;

    /// The set of the fields whose flags are paired with `true`.
    pub fn of(fields: &[(u8, bool)]) -> Present {
        Present(
            fields
                .iter()
                .filter(|(_, here)| *here)
                .fold(0, |acc, (f, _)| acc | f),
        )
    }

    pub fn has(self, field: u8) -> bool {
        self.0 & field != 0
    }
}

/// What one response body or stream event says, read in one borrowed parse.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResponseFacts {
    /// Byte range of the model-name string (quotes included), to splice the public name in.
    pub model: Option<Range<usize>>,
    pub usage: Option<Usage>,
}

/// Facts about a protocol's bytes, for bodies the gateway passes through untranslated.
pub trait Wire: Sync {
    /// The model (and its span), stream flag, output-token limit and usage request of a
    /// request body, reading only this protocol's fields. Errors are for the client.
    fn peek_request(&self, body: &[u8]) -> Result<RequestPeek, String>;

    /// The model-name span and usage of one response body or stream event's JSON; `None`
    /// when it is not a JSON object.
    fn peek_response(&self, json: &[u8]) -> Option<ResponseFacts>;

    /// The bytes that end a stream in this protocol after a mid-stream failure.
    /// `json_array`: a Gemini stream without `alt=sse` (one JSON array) is being closed.
    fn stream_error(&self, err: &GatewayError, json_array: bool) -> Bytes;

    /// A passthrough body without the signatures modelgate relayed from another provider
    /// kind, which this protocol's provider would refuse; `None` when there are none
    /// (checked with a byte search first, so the usual body is not parsed).
    fn strip_relayed_signatures(&self, _body: &[u8]) -> Option<Value> {
        None
    }
}

/// The fields of a request a protocol's `peek_request` reads, by that protocol's names.
#[derive(Default)]
pub(crate) struct PeekedFields<'a> {
    pub model: Option<&'a RawValue>,
    pub stream: bool,
    pub max_output_tokens: Option<u64>,
    pub stream_usage: bool,
    pub present: Present,
    pub unstored: bool,
    pub previous_response_id: Option<String>,
}

/// `peek_request` for a protocol whose fields `F` names, read by `fields`: the body must
/// be an object, `model` a string.
pub(crate) fn peek_request_with<'a, F: serde::Deserialize<'a>>(
    body: &'a [u8],
    fields: impl FnOnce(F) -> PeekedFields<'a>,
) -> Result<RequestPeek, String> {
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err("the request body must be a JSON object".to_string());
    }
    let p: F = serde_json::from_slice(body)
        .map_err(|e| format!("the request body is not valid JSON: {e}"))?;
    let p = fields(p);
    let (model, model_span) = match p.model {
        None => (None, None),
        Some(raw) => {
            let text = raw.get();
            let m: String =
                serde_json::from_str(text).map_err(|_| "'model' must be a string".to_string())?;
            (Some(m), Some(span_of(body, text)))
        }
    };
    Ok(RequestPeek {
        model,
        model_span,
        stream: p.stream,
        max_output_tokens: p.max_output_tokens,
        stream_usage: p.stream_usage,
        present: p.present,
        unstored: p.unstored,
        previous_response_id: p.previous_response_id,
    })
}

/// A response object's model-name value and usage object, borrowed (under whatever
/// names the protocol gives them).
#[derive(Default, serde::Deserialize)]
pub(crate) struct ModelUsage<'a> {
    #[serde(borrow)]
    pub model: Option<&'a RawValue>,
    #[serde(borrow)]
    pub usage: Option<&'a RawValue>,
}

/// The facts of one response JSON, found by the protocol's own borrowed parse: `top`
/// level values first, then those of the object a stream event nests (`message`,
/// `response`); `usage_from` reads the protocol's usage shape.
pub(crate) fn response_facts(
    json: &[u8],
    top: ModelUsage,
    nested: Option<ModelUsage>,
    usage_from: fn(&Value) -> Option<Usage>,
) -> ResponseFacts {
    let nested = nested.unwrap_or_default();
    let usage = top.usage.or(nested.usage);
    ResponseFacts {
        model: string_span(json, top.model.or(nested.model)),
        usage: object_value(usage).and_then(|u| usage_from(&u)),
    }
}

/// A raw token count, when it is a non-negative integer (anything else is the provider's
/// to report).
pub(crate) fn raw_count(raw: Option<&RawValue>) -> Option<u64> {
    raw.and_then(|r| r.get().parse::<u64>().ok())
}

/// The span of a string value (quotes included) within `outer`; `None` for non-strings.
fn string_span(outer: &[u8], raw: Option<&RawValue>) -> Option<Range<usize>> {
    let text = raw?.get();
    text.starts_with('"').then(|| span_of(outer, text))
}

/// The position of `inner` (a sub-slice of `outer`) within `outer`.
fn span_of(outer: &[u8], inner: &str) -> Range<usize> {
    let start = (inner.as_ptr() as usize).saturating_sub(outer.as_ptr() as usize);
    start..start + inner.len()
}

/// A small object (a usage object, stream_options) parsed on its own; the body
/// around it is not materialised.
pub(crate) fn object_value(raw: Option<&RawValue>) -> Option<Value> {
    serde_json::from_str::<Value>(raw?.get())
        .ok()
        .filter(Value::is_object)
}

/// `err`'s body as the last SSE event (`event:` named when the protocol names events), or
/// closing a JSON-array stream.
pub(crate) fn sse_error(body: &[u8], event: Option<&str>, json_array: bool) -> Bytes {
    let mut out = Vec::with_capacity(body.len() + 24);
    if json_array {
        // Gemini's stream without alt=sse is a JSON array: close it with the error.
        out.extend_from_slice(b",\r\n");
        out.extend_from_slice(body);
        out.push(b']');
        return Bytes::from(out);
    }
    if let Some(name) = event {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(body);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

// ---------------------------------------------------------------- tool names

/// A tool name made acceptable: characters outside `allowed` become `_`, and a short hash
/// of the original keeps distinct names distinct; `None` when `name` is acceptable (1-64
/// allowed characters, starting with one `first` accepts when given). A name that would
/// start wrong gets `t_` in front.
pub(crate) fn hashed_tool_name(
    name: &str,
    allowed: fn(char) -> bool,
    first: Option<fn(char) -> bool>,
) -> Option<String> {
    use sha2::{Digest, Sha256};
    let starts_ok = first.is_none_or(|f| name.starts_with(f));
    if !name.is_empty() && name.len() <= 64 && name.chars().all(allowed) && starts_ok {
        return None;
    }
    let clean: String = name
        .chars()
        .map(|c| if allowed(c) { c } else { '_' })
        .take(52)
        .collect();
    let hash = hex::encode(&Sha256::digest(name.as_bytes())[..4]);
    let lead = match first {
        Some(f) if !clean.starts_with(f) => "t_",
        _ => "",
    };
    Some(format!("{lead}{clean}_{hash}"))
}

// ---------------------------------------------------------------- signature provenance

/// Marks a signature relayed by modelgate to a client of another protocol than the one
/// that issued it (Anthropic's in a Responses reasoning item or a Gemini thoughtSignature,
/// Gemini's in a Responses item), so that coming back it is recognised, unwrapped and sent
/// only to the provider kind that can check it.
pub(crate) const RELAYED_PREFIX: &str = "modelgate-sig:";

/// Gemini-issued signatures as an Anthropic client sees them (and inside a relayed one).
pub(crate) const GEMINI_TAG: &str = "gemini:";

/// The text forms of a signature in client bytes. Clients replay these, across gateway
/// restarts too: they must never change.
impl Signature {
    /// Anthropic's bare, Gemini's tagged: the form Anthropic clients carry.
    pub(crate) fn tagged(&self) -> Cow<'_, str> {
        match self.issuer {
            Issuer::Anthropic => Cow::Borrowed(&self.value),
            Issuer::Gemini => Cow::Owned(format!("{GEMINI_TAG}{}", self.value)),
        }
    }

    pub(crate) fn from_tagged(s: &str) -> Signature {
        match s.strip_prefix(GEMINI_TAG) {
            Some(own) => Signature::new(Issuer::Gemini, own),
            None => Signature::new(Issuer::Anthropic, s),
        }
    }

    /// Marked as relayed: the form clients of a protocol that did not issue it carry.
    pub(crate) fn relayed(&self) -> String {
        format!("{RELAYED_PREFIX}{}", self.tagged())
    }

    /// A relayed signature; `None` for text that is not one (a provider's own).
    pub(crate) fn from_relayed(s: &str) -> Option<Signature> {
        s.strip_prefix(RELAYED_PREFIX).map(Signature::from_tagged)
    }
}
