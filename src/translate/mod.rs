//! Translation between wire protocols through one internal model (`model.rs`). Each
//! protocol's folder owns its wire format behind the codec traits of `codec.rs` (which
//! also holds the one registration point); this module is the facade the proxy calls.
//! Same-protocol requests are not translated (they pass through with only the model name
//! spliced), but their wire facts come from here too.
//!
//! The facade:
//! - requests: [`decode`] (neutral request + the client codec's [`ClientState`]),
//!   [`encode_request`], [`estimate_tokens`], [`strip_relayed_signatures`];
//! - responses: [`ResponseTranslator`] (`json` / `stream` / `error` /
//!   `replace_with_error`, then `with_tool_names` and `with_client_state`);
//! - passthrough wire facts: [`wire`]`(protocol)` gives `peek_request`, `peek_response`,
//!   `stream_error`, `strip_relayed_signatures` (see [`Wire`]).

pub mod anthropic;
pub mod codec;
pub mod embeddings;
pub mod gemini;
pub mod model;
pub mod openai;
pub mod responses;
mod translator;

use bytes::Bytes;
use serde_json::Value;

use crate::errors::{ErrorCode, GatewayError};
use crate::protocol::Protocol;
use model::*;

pub use codec::{wire, ClientState, Decoded, Envelope, Present, RequestPeek, ResponseFacts, Wire};
pub use translator::{translate_error, ResponseTranslator};

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

/// A request body's top-level object.
pub(crate) fn body_object(v: &Value) -> Result<&serde_json::Map<String, Value>, TranslateError> {
    v.as_object()
        .ok_or_else(|| TranslateError::new("the body must be a JSON object"))
}

/// `messages` (OpenAI Chat, Anthropic).
pub(crate) fn messages_array(
    obj: &serde_json::Map<String, Value>,
) -> Result<&Vec<Value>, TranslateError> {
    obj.get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| TranslateError::param("'messages' must be an array of messages", "messages"))
}

fn parse_body(body: &[u8]) -> Result<Value, TranslateError> {
    serde_json::from_slice(body)
        .map_err(|e| TranslateError::new(format!("the request body is not valid JSON: {e}")))
}

/// A client's request body decoded: the neutral request and the client codec's state for
/// its response (`ResponseTranslator::with_client_state`). Gemini says "stream" in the
/// path, not the body: the caller sets `request.stream`.
pub fn decode(client: Protocol, body: &[u8]) -> Result<Decoded, TranslateError> {
    codec::client(client).decode_request(&parse_body(body)?)
}

/// A same-protocol (passthrough) body without the signatures modelgate relayed from
/// another provider kind, which the client replays and this provider would refuse (see
/// `Wire::strip_relayed_signatures`).
pub fn strip_relayed_signatures(client: Protocol, body: &[u8]) -> Option<Value> {
    codec::wire(client).strip_relayed_signatures(body)
}

/// An estimate of a request's input tokens (about 4 characters per token over its text,
/// tool calls, tool results and tool definitions), for token-count endpoints whose model
/// is served by another kind of provider.
pub fn estimate_tokens(client: Protocol, body: &[u8]) -> Result<u64, TranslateError> {
    let codec = codec::client(client);
    let v = parse_body(body)?;
    let req = codec.decode_request(codec.token_count_request(&v))?.request;
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
    /// An embeddings request in the other API: how its answer is rewritten.
    pub embeddings: Option<embeddings::Reply>,
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

/// `req` with every tool name `provider` would refuse renamed (definitions, the forced
/// choice, calls and results in the history), and the renames made.
fn rename_tools(
    req: &ChatRequest,
    provider: &dyn codec::ProviderCodec,
) -> Option<(ChatRequest, ToolNames)> {
    let mut names = ToolNames::default();
    let mut note = |n: &str| {
        if names.sent_name(n).is_none() {
            if let Some(wire) = provider.wire_tool_name(n) {
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

/// `anthropic_version`: the Messages API version an Anthropic provider gets the request
/// with, whose rules the body follows.
pub fn encode_request(
    req: &ChatRequest,
    provider: Protocol,
    model: &str,
    default_max_tokens: u64,
    anthropic_version: &str,
) -> Result<ProviderRequest, TranslateError> {
    // Responses are translated from their first choice only.
    if req.n.is_some_and(|n| n > 1) {
        return Err(TranslateError::param(
            "n > 1 (several choices) works only when the model's provider speaks the client's protocol",
            "n",
        ));
    }
    // Providers that speak Responses get the client's own bytes.
    let Some(codec) = codec::provider(provider) else {
        return Err(TranslateError::new(
            "Responses requests are only passed through, never translated into",
        ));
    };
    let renamed = rename_tools(req, codec);
    let (req, tool_names) = match &renamed {
        Some((r, names)) => (r, names.clone()),
        None => (req, ToolNames::default()),
    };
    let mut dropped = Dropped::default();
    for f in &req.unmapped {
        dropped.add(f);
    }
    let (mut v, path) = codec.encode_request(req, model, default_max_tokens, &mut dropped)?;
    // Only OpenAI's Chat Completions has strict function schemas.
    if provider != Protocol::OpenAi && req.tools.iter().any(|t| t.strict) {
        dropped.add("tools[].strict");
    }
    if provider == Protocol::Anthropic {
        anthropic::follow_version(&mut v, anthropic_version, &mut dropped);
    }
    Ok(ProviderRequest {
        body: Bytes::from(serde_json::to_vec(&v).unwrap_or_default()),
        path,
        dropped,
        tool_names,
    })
}

#[cfg(test)]
mod tests;
