//! Anthropic Messages wire facts: usage objects, request and response peeks, the event
//! that ends a broken stream, tool-name rules, relayed signatures in passthrough bodies.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::Anthropic;
use crate::errors::GatewayError;
use crate::protocol::Protocol;
use crate::translate::codec::{
    self, ModelUsage, PeekedFields, Present, RequestPeek, ResponseFacts, Wire, GEMINI_TAG,
};
use crate::translate::model::{Issuer, Signature, Usage};

/// An Anthropic usage object as reported: `message_start` has every count,
/// `message_delta` often only `output_tokens` (cumulative).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct WireUsage {
    pub input: Option<u64>,
    pub output: Option<u64>,
    pub cache_read: Option<u64>,
    pub cache_creation: Option<u64>,
}

impl WireUsage {
    /// `None` when the object reports neither input nor output tokens.
    pub fn read(u: &Value) -> Option<WireUsage> {
        let w = WireUsage {
            input: u["input_tokens"].as_u64(),
            output: u["output_tokens"].as_u64(),
            cache_read: u["cache_read_input_tokens"].as_u64(),
            cache_creation: u["cache_creation_input_tokens"].as_u64(),
        };
        let plausible = [w.input, w.output, w.cache_read, w.cache_creation]
            .into_iter()
            .flatten()
            .all(|n| n <= crate::translate::model::MAX_PLAUSIBLE_TOKENS);
        (plausible && (w.input.is_some() || w.output.is_some())).then_some(w)
    }

    /// Anthropic counts cache reads and writes apart from `input_tokens`; the prompt total
    /// is their sum.
    pub fn prompt_tokens(&self) -> u64 {
        self.input
            .unwrap_or(0)
            .saturating_add(self.cache_read.unwrap_or(0))
            .saturating_add(self.cache_creation.unwrap_or(0))
    }

    pub fn usage(&self) -> Usage {
        Usage {
            prompt_tokens: self.prompt_tokens(),
            completion_tokens: self.output.unwrap_or(0),
            cached_tokens: self.cache_read,
            // Anthropic does not report thinking tokens apart.
            reasoning_tokens: None,
            cache_write_tokens: self.cache_creation,
        }
    }
}

/// Usage from an Anthropic usage object (with or without `input_tokens`).
pub fn usage_from(u: &Value) -> Option<Usage> {
    WireUsage::read(u).map(|w| w.usage())
}

/// A response body's usage object.
/// A message's `usage`, every field the SDKs' `Usage` requires; what other providers do
/// not report (cache lifetimes, geography, tier, server tools) is null.
pub fn usage_json(u: &Usage) -> Value {
    let mut v = delta_usage_json(u);
    for k in ["cache_creation", "inference_geo", "service_tier", "speed"] {
        v[k] = Value::Null;
    }
    v
}

/// A `message_delta` event's usage (the SDKs' `MessageDeltaUsage`).
pub fn delta_usage_json(u: &Usage) -> Value {
    let cached = u.cached_tokens.unwrap_or(0);
    let written = u.cache_write_tokens.unwrap_or(0);
    json!({
        "input_tokens": u.prompt_tokens.saturating_sub(cached).saturating_sub(written),
        "output_tokens": u.completion_tokens,
        "cache_read_input_tokens": cached,
        "cache_creation_input_tokens": written,
        "output_tokens_details": u.reasoning_tokens.map(|t| json!({"thinking_tokens": t})),
        "server_tool_use": null,
    })
}

#[derive(Deserialize)]
struct RequestFields<'a> {
    #[serde(borrow)]
    model: Option<&'a RawValue>,
    stream: Option<bool>,
    // Raw, so a wrongly typed value is left for the provider to report.
    #[serde(borrow)]
    max_tokens: Option<&'a RawValue>,
    #[serde(borrow)]
    messages: Option<&'a RawValue>,
}

/// A message body (top level) or a stream event (`message_start` nests the message).
#[derive(Deserialize)]
struct ResponseFields<'a> {
    #[serde(borrow)]
    model: Option<&'a RawValue>,
    #[serde(borrow)]
    usage: Option<&'a RawValue>,
    #[serde(borrow)]
    message: Option<ModelUsage<'a>>,
}

impl Wire for Anthropic {
    fn peek_request(&self, body: &[u8]) -> Result<RequestPeek, String> {
        codec::peek_request_with(body, |p: RequestFields| PeekedFields {
            model: p.model,
            stream: p.stream.unwrap_or(false),
            max_output_tokens: codec::raw_count(p.max_tokens),
            stream_usage: false,
            present: Present::of(&[
                (Present::MESSAGES, p.messages.is_some()),
                (Present::MAX_TOKENS, p.max_tokens.is_some()),
            ]),
            ..Default::default()
        })
    }

    fn peek_response(&self, json: &[u8]) -> Option<ResponseFacts> {
        let p: ResponseFields = serde_json::from_slice(json).ok()?;
        let top = ModelUsage {
            model: p.model,
            usage: p.usage,
        };
        Some(codec::response_facts(json, top, p.message, usage_from))
    }

    fn stream_error(&self, err: &GatewayError, json_array: bool) -> Bytes {
        codec::sse_error(&err.body(Protocol::Anthropic), Some("error"), json_array)
    }

    fn strip_relayed_signatures(&self, body: &[u8]) -> Option<Value> {
        strip_relayed_signatures(body)
    }
}

/// Anthropic takes tool names of `[a-zA-Z0-9_-]{1,64}`, as OpenAI does.
pub fn wire_tool_name(name: &str) -> Option<String> {
    codec::hashed_tool_name(
        name,
        crate::translate::openai::wire::allowed_tool_char,
        None,
    )
}

/// A thinking signature Anthropic checks: its own, non-empty.
fn refused(sig: &str) -> bool {
    !Signature::from_tagged(sig).valid_for(Issuer::Anthropic)
}

/// Gemini-issued or empty signatures on thinking blocks go; mid tool loop, a calling turn
/// left without its thinking turns thinking off.
fn strip_relayed_signatures(body: &[u8]) -> Option<Value> {
    use memchr::memmem::find;
    let suspect = find(body, GEMINI_TAG.as_bytes()).is_some()
        || find(body, br#""signature":"""#).is_some()
        || find(body, br#""signature": """#).is_some();
    if !suspect {
        return None;
    }
    let mut v: Value = serde_json::from_slice(body).ok()?;
    let messages = v.get_mut("messages")?.as_array_mut()?;
    for m in messages.iter_mut() {
        if let Some(blocks) = m.get_mut("content").and_then(Value::as_array_mut) {
            blocks.retain(|b| {
                !(b["type"] == "thinking" && refused(b["signature"].as_str().unwrap_or_default()))
            });
        }
    }
    messages.retain(|m| m["content"].as_array().is_none_or(|b| !b.is_empty()));
    // Mid tool loop, Anthropic wants the calling turn to start with its thinking; without
    // it, the request goes without thinking.
    let unsigned_tool_turn = messages
        .iter()
        .rev()
        .find(|m| m["role"] == "assistant")
        .and_then(|m| m["content"].as_array())
        .is_some_and(|b| {
            b.iter().any(|x| x["type"] == "tool_use")
                && !b
                    .first()
                    .is_some_and(|x| x["type"] == "thinking" || x["type"] == "redacted_thinking")
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
    Some(v)
}
