//! Translation between wire protocols through one internal model (`model.rs`): per
//! protocol a request decoder and encoder, a response decoder and encoder, and a stream
//! decoder and encoder. Same-protocol requests never come here (they pass through with
//! only the model name spliced).

pub mod anthropic;
pub mod gemini;
pub mod model;
pub mod openai;
pub mod responses;

use bytes::{Bytes, BytesMut};
use serde_json::Value;

use crate::errors::{self, ErrorCode, GatewayError};
use crate::protocol::Protocol;
use crate::sse::{self, SseFramer};
use model::*;

/// A request that cannot be translated; answered as 400 `invalid_request`.
#[derive(Debug, Clone)]
pub struct TranslateError {
    pub message: String,
    pub param: Option<&'static str>,
}

impl TranslateError {
    pub fn new(message: impl Into<String>) -> Self {
        TranslateError {
            message: message.into(),
            param: None,
        }
    }
    pub fn param(message: impl Into<String>, param: &'static str) -> Self {
        TranslateError {
            message: message.into(),
            param: Some(param),
        }
    }
    pub fn into_gateway_error(self) -> GatewayError {
        let mut e = GatewayError::new(ErrorCode::InvalidRequest, self.message);
        e.param = self.param;
        e
    }
}

/// At most this many fields are listed in `x-modelgate-dropped`.
const MAX_DROPPED: usize = 32;

/// Client fields the target protocol has no place for; sent back in `x-modelgate-dropped`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Dropped(pub Vec<String>);

impl Dropped {
    pub fn add(&mut self, field: &str) {
        // Names can come from client JSON keys: keep them header-safe and short.
        let field: String = field
            .chars()
            .take(64)
            .map(|c| {
                if c.is_ascii_alphanumeric() || "_-.[]()".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        // Bounded, so a body of made-up fields cannot make an oversized header.
        if self.0.len() < MAX_DROPPED && !self.0.contains(&field) {
            self.0.push(field);
        }
    }
    pub fn header_value(&self) -> Option<String> {
        (!self.0.is_empty()).then(|| self.0.join(","))
    }
}

/// Text parts joined; other parts ignored.
pub fn as_text_parts(parts: &[Part]) -> String {
    let mut out = String::new();
    for p in parts {
        if let Part::Text(t) = p {
            if !out.is_empty() && !t.is_empty() {
                out.push('\n');
            }
            out.push_str(t);
        }
    }
    out
}

/// `data:image/png;base64,AAAA` -> (`image/png`, `AAAA`).
pub fn parse_data_url(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let media_type = meta.strip_suffix(";base64")?;
    Some((media_type.to_string(), data.to_string()))
}

/// Whether requests of this client protocol translate at all (chat-shaped operations).
pub fn decode_request(client: Protocol, body: &[u8]) -> Result<ChatRequest, TranslateError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| TranslateError::new(format!("the request body is not valid JSON: {e}")))?;
    match client {
        Protocol::OpenAi => openai::decode_request(&v),
        Protocol::Responses => responses::decode_request(&v),
        Protocol::Anthropic => anthropic::decode_request(&v),
        // Gemini says "stream" in the path, not the body: the caller sets it.
        Protocol::Gemini => gemini::decode_request(&v, false),
    }
}

/// A same-protocol (passthrough) body without the signatures modelgate relayed from
/// another provider kind, which the client replays and this provider would refuse:
/// Gemini-issued or empty signatures on Anthropic thinking blocks, relayed signatures in
/// Responses reasoning items and in Gemini thoughtSignatures. `None` when there are none
/// (checked with a byte search first, so the usual body is not parsed).
pub fn strip_relayed_signatures(client: Protocol, body: &[u8]) -> Option<Value> {
    use memchr::memmem::find;
    let relayed = RELAYED_SIGNATURE_PREFIX.as_bytes();
    let suspect = match client {
        Protocol::Anthropic => {
            find(body, gemini::SIGNATURE_TAG.as_bytes()).is_some()
                || find(body, br#""signature":"""#).is_some()
                || find(body, br#""signature": """#).is_some()
        }
        Protocol::Responses | Protocol::Gemini => find(body, relayed).is_some(),
        Protocol::OpenAi => false,
    };
    if !suspect {
        return None;
    }
    let mut v: Value = serde_json::from_slice(body).ok()?;
    let is_relayed = |s: &Value| {
        s.as_str()
            .is_some_and(|s| s.starts_with(RELAYED_SIGNATURE_PREFIX))
    };
    match client {
        Protocol::Anthropic => {
            let messages = v.get_mut("messages")?.as_array_mut()?;
            for m in messages.iter_mut() {
                if let Some(blocks) = m.get_mut("content").and_then(Value::as_array_mut) {
                    blocks.retain(|b| {
                        let sig = b["signature"].as_str().unwrap_or_default();
                        !(b["type"] == "thinking"
                            && (sig.is_empty() || sig.starts_with(gemini::SIGNATURE_TAG)))
                    });
                }
            }
            messages.retain(|m| m["content"].as_array().is_none_or(|b| !b.is_empty()));
            // Mid tool loop, Anthropic wants the calling turn to start with its thinking;
            // without it, the request goes without thinking.
            let unsigned_tool_turn = messages
                .iter()
                .rev()
                .find(|m| m["role"] == "assistant")
                .and_then(|m| m["content"].as_array())
                .is_some_and(|b| {
                    b.iter().any(|x| x["type"] == "tool_use")
                        && !b.first().is_some_and(|x| {
                            x["type"] == "thinking" || x["type"] == "redacted_thinking"
                        })
                });
            if unsigned_tool_turn {
                if let Some(o) = v.as_object_mut() {
                    o.remove("thinking");
                    // Clearing thinking needs thinking on.
                    if let Some(edits) = o
                        .get_mut("context_management")
                        .and_then(|c| c.get_mut("edits"))
                        .and_then(Value::as_array_mut)
                    {
                        edits.retain(|e| {
                            !e["type"]
                                .as_str()
                                .is_some_and(|t| t.starts_with("clear_thinking"))
                        });
                    }
                }
            }
        }
        Protocol::Responses => {
            let items = v.get_mut("input")?.as_array_mut()?;
            items.retain(|i| !(i["type"] == "reasoning" && is_relayed(&i["encrypted_content"])));
        }
        Protocol::Gemini => {
            for c in v.get_mut("contents")?.as_array_mut()?.iter_mut() {
                if let Some(parts) = c.get_mut("parts").and_then(Value::as_array_mut) {
                    for p in parts.iter_mut() {
                        if is_relayed(&p["thoughtSignature"]) {
                            if let Some(o) = p.as_object_mut() {
                                o.remove("thoughtSignature");
                            }
                        }
                    }
                    // A signature-only thought has nothing left.
                    parts.retain(|p| !(p["thought"] == true && p["text"] == ""));
                }
            }
        }
        Protocol::OpenAi => {}
    }
    Some(v)
}

/// An estimate of a request's input tokens (about 4 characters per token over its text,
/// tool calls, tool results and tool definitions), for token-count endpoints whose model
/// is served by another kind of provider.
pub fn estimate_tokens(client: Protocol, body: &[u8]) -> Result<u64, TranslateError> {
    // Gemini's countTokens may wrap a whole generateContent request.
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| TranslateError::new(format!("the request body is not valid JSON: {e}")))?;
    let inner = v.get("generateContentRequest").unwrap_or(&v);
    let req = match client {
        Protocol::OpenAi => openai::decode_request(inner)?,
        Protocol::Responses => responses::decode_request(inner)?,
        Protocol::Anthropic => anthropic::decode_request(inner)?,
        Protocol::Gemini => gemini::decode_request(inner, false)?,
    };
    let mut chars: usize = req.system.iter().map(|s| s.chars().count()).sum();
    fn part_chars(p: &Part) -> usize {
        match p {
            Part::Text(t) | Part::Thinking { text: t, .. } => t.chars().count(),
            Part::ToolCall {
                name, arguments, ..
            } => name.len() + arguments.chars().count(),
            Part::ToolResult { content, .. } => content.iter().map(part_chars).sum(),
            // Providers bill images by size; a fixed guess is the honest best here.
            Part::Image(_) => 1000,
        }
    }
    for m in &req.messages {
        chars += m.parts.iter().map(part_chars).sum::<usize>();
    }
    for t in &req.tools {
        chars += t.name.len()
            + t.description.as_deref().map_or(0, str::len)
            + t.parameters.to_string().len();
    }
    Ok((chars as u64).div_ceil(4).max(1))
}

/// A provider request: body and path (before the base URL's prefix).
pub struct ProviderRequest {
    pub body: Bytes,
    pub path: String,
    pub dropped: Dropped,
    pub tool_names: ToolNames,
}

/// What an attempt's translation changed, for the response: fields dropped (reported in
/// `x-modelgate-dropped`) and tool names renamed (renamed back in the answer).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Translated {
    pub dropped: Dropped,
    pub tool_names: ToolNames,
}

/// Tool names a provider would refuse (too long, characters outside its pattern), as sent
/// to it: (name sent, client's name). Calls in the answer get the client's names back.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ToolNames(pub Vec<(String, String)>);

impl ToolNames {
    /// The client's name for a name the provider used.
    pub fn client_name<'a>(&'a self, sent: &str) -> Option<&'a str> {
        self.0
            .iter()
            .find(|(s, _)| s == sent)
            .map(|(_, c)| c.as_str())
    }

    fn sent_name<'a>(&'a self, client: &str) -> Option<&'a str> {
        self.0
            .iter()
            .find(|(_, c)| c == client)
            .map(|(s, _)| s.as_str())
    }
}

/// A tool name `provider` accepts: OpenAI and Anthropic take `[a-zA-Z0-9_-]{1,64}`, Gemini
/// also `.` and `:` and wants a letter or `_` first. Others become their valid characters
/// plus a short hash of the original, so distinct names stay distinct.
fn wire_tool_name(provider: Protocol, name: &str) -> Option<String> {
    use sha2::{Digest, Sha256};
    let gemini = provider == Protocol::Gemini;
    let allowed = |c: char| {
        c.is_ascii_alphanumeric() || c == '_' || c == '-' || (gemini && (c == '.' || c == ':'))
    };
    let starts_ok = !gemini || name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_');
    if !name.is_empty() && name.len() <= 64 && name.chars().all(allowed) && starts_ok {
        return None;
    }
    let clean: String = name
        .chars()
        .map(|c| if allowed(c) { c } else { '_' })
        .take(52)
        .collect();
    let hash = hex::encode(&Sha256::digest(name.as_bytes())[..4]);
    let lead = if gemini && !clean.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        "t_"
    } else {
        ""
    };
    Some(format!("{lead}{clean}_{hash}"))
}

/// `req` with every tool name `provider` would refuse renamed (definitions, the forced
/// choice, calls and results in the history), and the renames made.
fn rename_tools(req: &ChatRequest, provider: Protocol) -> Option<(ChatRequest, ToolNames)> {
    let mut names = ToolNames::default();
    let mut note = |n: &str| {
        if names.sent_name(n).is_none() {
            if let Some(wire) = wire_tool_name(provider, n) {
                names.0.push((wire, n.to_string()));
            }
        }
    };
    for t in &req.tools {
        note(&t.name);
    }
    for m in &req.messages {
        for p in &m.parts {
            match p {
                Part::ToolCall { name, .. } => note(name),
                Part::ToolResult {
                    name: Some(name), ..
                } => note(name),
                _ => {}
            }
        }
    }
    if names.0.is_empty() {
        return None;
    }
    let mut out = req.clone();
    let rename = |n: &mut String| {
        if let Some(w) = names.sent_name(n) {
            *n = w.to_string();
        }
    };
    out.tools.iter_mut().for_each(|t| rename(&mut t.name));
    if let Some(ToolChoice::Tool(n)) = out.tool_choice.as_mut() {
        rename(n);
    }
    for m in &mut out.messages {
        for p in &mut m.parts {
            match p {
                Part::ToolCall { name, .. } => rename(name),
                Part::ToolResult {
                    name: Some(name), ..
                } => rename(name),
                _ => {}
            }
        }
    }
    Some((out, names))
}

pub fn encode_request(
    req: &ChatRequest,
    provider: Protocol,
    model: &str,
    default_max_tokens: u64,
) -> Result<ProviderRequest, TranslateError> {
    // Responses are translated from their first choice only.
    if req.n.is_some_and(|n| n > 1) {
        return Err(TranslateError::param(
            "n > 1 (several choices) works only when the model's provider speaks the client's protocol",
            "n",
        ));
    }
    let renamed = rename_tools(req, provider);
    let (req, tool_names) = match &renamed {
        Some((r, names)) => (r, names.clone()),
        None => (req, ToolNames::default()),
    };
    let mut dropped = Dropped::default();
    for f in &req.unmapped {
        dropped.add(f);
    }
    let (v, path) = match provider {
        // Providers that speak Responses get the client's own bytes.
        Protocol::Responses => {
            return Err(TranslateError::new(
                "Responses requests are only passed through, never translated into",
            ))
        }
        Protocol::OpenAi => (
            openai::encode_request(req, model, &mut dropped),
            "/v1/chat/completions".to_string(),
        ),
        Protocol::Anthropic => (
            anthropic::encode_request(req, model, default_max_tokens, &mut dropped)?,
            "/v1/messages".to_string(),
        ),
        Protocol::Gemini => {
            let action = if req.stream {
                "streamGenerateContent?alt=sse"
            } else {
                "generateContent"
            };
            (
                gemini::encode_request(req, model, &mut dropped)?,
                format!("/v1beta/models/{model}:{action}"),
            )
        }
    };
    Ok(ProviderRequest {
        body: Bytes::from(serde_json::to_vec(&v).unwrap_or_default()),
        path,
        dropped,
        tool_names,
    })
}

enum StreamDecoder {
    OpenAi(openai::StreamDecoder),
    Anthropic(anthropic::StreamDecoder),
    Gemini(gemini::StreamDecoder),
}

enum StreamEncoder {
    OpenAi(openai::StreamEncoder),
    Responses(responses::StreamEncoder),
    Anthropic(anthropic::StreamEncoder),
    Gemini(gemini::StreamEncoder),
}

impl StreamEncoder {
    fn encode(&mut self, ev: &StreamEvent, out: &mut Vec<u8>) {
        match self {
            StreamEncoder::OpenAi(e) => e.encode(ev, out),
            StreamEncoder::Responses(e) => e.encode(ev, out),
            StreamEncoder::Anthropic(e) => e.encode(ev, out),
            StreamEncoder::Gemini(e) => e.encode(ev, out),
        }
    }
    fn finish(&mut self, out: &mut Vec<u8>) {
        match self {
            StreamEncoder::OpenAi(e) => e.finish(out),
            StreamEncoder::Responses(e) => e.finish(out),
            StreamEncoder::Anthropic(e) => e.finish(out),
            StreamEncoder::Gemini(e) => e.finish(out),
        }
    }
    fn usage(&self) -> Option<Usage> {
        match self {
            StreamEncoder::OpenAi(e) => e.usage(),
            StreamEncoder::Responses(e) => e.usage(),
            StreamEncoder::Anthropic(e) => e.usage(),
            StreamEncoder::Gemini(e) => e.usage(),
        }
    }
}

/// Translates one provider response body into the client's protocol as it streams by.
pub struct ResponseTranslator(Inner);

enum Inner {
    /// A whole JSON response, translated once complete.
    Json {
        buf: BytesMut,
        provider: Protocol,
        client: Protocol,
        public_model: String,
        usage: Option<Usage>,
        responses: responses::ClientRequest,
        tool_names: ToolNames,
    },
    /// SSE, translated event by event.
    Stream(Box<StreamState>),
    /// A provider error body, re-shaped into the client's error format once complete.
    Error {
        buf: BytesMut,
        client: Protocol,
        status: u16,
    },
    /// A provider body that cannot be used at all: discarded, replaced by this error.
    Replace { body: Option<Bytes> },
}

struct StreamState {
    framer: SseFramer,
    decoder: StreamDecoder,
    encoder: StreamEncoder,
    events: Vec<StreamEvent>,
    saw_done: bool,
    tool_names: ToolNames,
}

impl StreamState {
    /// Encodes the decoded events, tool names back to the client's.
    fn drain(&mut self, out: &mut Vec<u8>) {
        for mut e in self.events.drain(..) {
            self.saw_done |= e == StreamEvent::Done;
            if let StreamEvent::ToolCallStart { name, .. } = &mut e {
                if let Some(c) = self.tool_names.client_name(name) {
                    *name = c.to_string();
                }
            }
            self.encoder.encode(&e, out);
        }
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

impl ResponseTranslator {
    pub fn json(provider: Protocol, client: Protocol, public_model: &str) -> Self {
        ResponseTranslator(Inner::Json {
            buf: BytesMut::new(),
            provider,
            client,
            public_model: public_model.to_string(),
            usage: None,
            responses: responses::ClientRequest::default(),
            tool_names: ToolNames::default(),
        })
    }

    /// Tool names that were changed for the provider: calls come back with the client's.
    pub fn with_tool_names(mut self, names: &ToolNames) -> Self {
        if names.0.is_empty() {
            return self;
        }
        match &mut self.0 {
            Inner::Json { tool_names, .. } => *tool_names = names.clone(),
            Inner::Stream(s) => s.tool_names = names.clone(),
            Inner::Error { .. } | Inner::Replace { .. } => {}
        }
        self
    }

    /// A Responses client's request, for what its response repeats and the `custom` tools
    /// whose calls go back as `custom_tool_call` items.
    pub fn with_client_request(mut self, req: &ChatRequest) -> Self {
        if req.freeform_tools.is_empty() && req.tool_namespaces.is_empty() && req.echo.is_empty() {
            return self;
        }
        let client = responses::ClientRequest::of(req);
        match &mut self.0 {
            Inner::Json { responses, .. } => *responses = client,
            Inner::Stream(s) => {
                if let StreamEncoder::Responses(e) = &mut s.encoder {
                    e.set_client_request(client);
                }
            }
            Inner::Error { .. } | Inner::Replace { .. } => {}
        }
        self
    }

    /// `client_sse`: a Gemini client asked for SSE (`alt=sse`) rather than a JSON array.
    pub fn stream(
        provider: Protocol,
        client: Protocol,
        public_model: &str,
        include_usage: bool,
        client_sse: bool,
    ) -> Option<Self> {
        let decoder = match provider {
            Protocol::Responses => return None,
            Protocol::OpenAi => StreamDecoder::OpenAi(openai::StreamDecoder::default()),
            Protocol::Anthropic => StreamDecoder::Anthropic(anthropic::StreamDecoder::default()),
            Protocol::Gemini => StreamDecoder::Gemini(gemini::StreamDecoder::default()),
        };
        let encoder = match client {
            Protocol::OpenAi => StreamEncoder::OpenAi(openai::StreamEncoder::new(
                public_model,
                unix_now(),
                include_usage,
            )),
            Protocol::Responses => StreamEncoder::Responses(responses::StreamEncoder::new(
                public_model,
                unix_now(),
                responses::ClientRequest::default(),
            )),
            Protocol::Anthropic => {
                StreamEncoder::Anthropic(anthropic::StreamEncoder::new(public_model))
            }
            Protocol::Gemini => {
                StreamEncoder::Gemini(gemini::StreamEncoder::new(public_model, client_sse))
            }
        };
        Some(ResponseTranslator(Inner::Stream(Box::new(StreamState {
            framer: SseFramer::default(),
            decoder,
            encoder,
            events: Vec::new(),
            saw_done: false,
            tool_names: ToolNames::default(),
        }))))
    }

    /// A provider error body, in whatever shape, re-shaped into `client`'s.
    pub fn error(client: Protocol, status: u16) -> Self {
        ResponseTranslator(Inner::Error {
            buf: BytesMut::new(),
            client,
            status,
        })
    }

    /// Discards the provider's body and answers `message` as a 502 in `client`'s shape
    /// (a 2xx the gateway cannot read, such as an HTML page from a wrong base_url).
    pub fn replace_with_error(client: Protocol, message: &str) -> Self {
        let body = errors::error_body(
            client,
            502,
            ErrorCode::UpstreamError.as_str(),
            message,
            None,
        );
        ResponseTranslator(Inner::Replace { body: Some(body) })
    }

    pub fn is_stream(&self) -> bool {
        matches!(self.0, Inner::Stream(_))
    }

    /// The content type of what the client receives.
    pub fn content_type(&self) -> &'static str {
        match &self.0 {
            Inner::Stream(s) => match &s.encoder {
                StreamEncoder::Gemini(e) if !e.is_sse() => "application/json",
                _ => "text/event-stream",
            },
            _ => "application/json",
        }
    }

    /// The usage seen so far (complete once the body has ended).
    pub fn usage(&self) -> Option<Usage> {
        match &self.0 {
            Inner::Json { usage, .. } => *usage,
            Inner::Stream(s) => s.encoder.usage(),
            Inner::Error { .. } | Inner::Replace { .. } => None,
        }
    }

    /// Feeds one provider chunk; returns the client bytes ready now.
    pub fn feed(&mut self, chunk: Option<Bytes>, end: bool) -> Option<Bytes> {
        match &mut self.0 {
            Inner::Json {
                buf,
                provider,
                client,
                public_model,
                usage,
                responses,
                tool_names,
            } => {
                if let Some(c) = chunk {
                    buf.extend_from_slice(&c);
                }
                if !end {
                    return None;
                }
                let body = std::mem::take(buf);
                let names = (&*responses, &*tool_names);
                let out = match translate_json(&body, *provider, *client, public_model, names) {
                    Ok((bytes, u)) => {
                        *usage = u;
                        bytes
                    }
                    Err(msg) => errors::error_body(
                        *client,
                        502,
                        ErrorCode::UpstreamError.as_str(),
                        &format!("the provider's response could not be translated: {msg}"),
                        None,
                    ),
                };
                Some(out)
            }
            Inner::Stream(state) => {
                if let Some(c) = chunk {
                    state.framer.push(&c);
                }
                let mut out = Vec::new();
                while let Some(ev) = state.framer.next_event() {
                    if let Some(data) = sse::event_data(&ev) {
                        match &mut state.decoder {
                            StreamDecoder::OpenAi(d) => d.feed(&data, &mut state.events),
                            StreamDecoder::Anthropic(d) => d.feed(&data, &mut state.events),
                            StreamDecoder::Gemini(d) => d.feed(&data, &mut state.events),
                        }
                    }
                    state.drain(&mut out);
                }
                if end {
                    // Gemini has no end marker: its decoder knows whether the stream finished.
                    if let StreamDecoder::Gemini(d) = &mut state.decoder {
                        d.end(&mut state.events);
                        state.drain(&mut out);
                    }
                    if !state.saw_done {
                        // The provider stopped without its end marker: say so in the
                        // client's protocol rather than pretend the answer is complete.
                        let message =
                            "the provider's stream ended before the response was complete";
                        let e = StreamEvent::Error {
                            message: message.into(),
                        };
                        state.encoder.encode(&e, &mut out);
                    }
                    state.encoder.finish(&mut out);
                }
                (!out.is_empty()).then(|| Bytes::from(out))
            }
            Inner::Error {
                buf,
                client,
                status,
            } => {
                if let Some(c) = chunk {
                    buf.extend_from_slice(&c);
                }
                if !end {
                    return None;
                }
                Some(translate_error(&std::mem::take(buf), *client, *status))
            }
            Inner::Replace { body } => {
                if end {
                    body.take()
                } else {
                    None
                }
            }
        }
    }
}

fn translate_json(
    body: &[u8],
    provider: Protocol,
    client: Protocol,
    public_model: &str,
    (responses_client, tool_names): (&responses::ClientRequest, &ToolNames),
) -> Result<(Bytes, Option<Usage>), String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let mut resp = match provider {
        Protocol::Responses => return Err("a Responses body is never translated from".to_string()),
        Protocol::OpenAi => openai::decode_response(&v),
        Protocol::Anthropic => anthropic::decode_response(&v),
        Protocol::Gemini => gemini::decode_response(&v),
    }
    .map_err(|e| e.message)?;
    for p in &mut resp.parts {
        if let Part::ToolCall { name, .. } = p {
            if let Some(c) = tool_names.client_name(name) {
                *name = c.to_string();
            }
        }
    }
    let out = match client {
        Protocol::OpenAi => openai::encode_response(&resp, public_model, unix_now()),
        Protocol::Responses => {
            responses::encode_response(&resp, public_model, unix_now(), responses_client)
        }
        Protocol::Anthropic => anthropic::encode_response(&resp, public_model),
        Protocol::Gemini => gemini::encode_response(&resp, public_model),
    };
    Ok((
        Bytes::from(serde_json::to_vec(&out).unwrap_or_default()),
        resp.usage,
    ))
}

/// The provider's error message, whatever its shape.
fn provider_error_message(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    v["error"]["message"]
        .as_str()
        .or_else(|| v["message"].as_str())
        .or_else(|| v["error"].as_str())
        .map(String::from)
}

/// A provider error response re-shaped into the client's error format, message kept.
pub fn translate_error(body: &[u8], client: Protocol, status: u16) -> Bytes {
    let message = provider_error_message(body).unwrap_or_else(|| {
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        if text.is_empty() {
            format!("the provider answered {status}")
        } else {
            text.chars().take(500).collect()
        }
    });
    let code = match status {
        400 | 422 => "invalid_request",
        401 | 403 => "upstream_auth_error",
        404 => "model_not_found",
        413 => "request_too_large",
        429 => "rate_limit_exceeded",
        _ => "upstream_error",
    };
    errors::error_body(
        client,
        status,
        code,
        &format!("provider error: {message}"),
        None,
    )
}

#[cfg(test)]
mod tests;
