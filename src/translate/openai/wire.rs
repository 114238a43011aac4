//! OpenAI Chat Completions wire facts: usage objects, request and response peeks, the
//! event that ends a broken stream, tool-name rules.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::OpenAi;
use crate::errors::GatewayError;
use crate::protocol::Protocol;
use crate::translate::codec::{
    self, ModelUsage, PeekedFields, Present, RequestPeek, ResponseFacts, Wire,
};
use crate::translate::model::Usage;

/// Chat usage (`prompt_tokens`...); OpenAI's other endpoints (images) report theirs in the
/// Responses shape (`input_tokens`...), read too.
pub fn usage_from(u: &Value) -> Option<Usage> {
    let Some(prompt) = u["prompt_tokens"].as_u64() else {
        return crate::translate::responses::usage_from(u);
    };
    Some(Usage {
        prompt_tokens: prompt,
        completion_tokens: u["completion_tokens"].as_u64().unwrap_or(0),
        cached_tokens: u["prompt_tokens_details"]["cached_tokens"].as_u64(),
        reasoning_tokens: u["completion_tokens_details"]["reasoning_tokens"].as_u64(),
        cache_write_tokens: None,
    })
    .filter(Usage::plausible)
}

pub fn usage_json(u: &Usage) -> Value {
    let mut v = json!({
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.prompt_tokens.saturating_add(u.completion_tokens),
    });
    if let Some(c) = u.cached_tokens {
        v["prompt_tokens_details"] = json!({"cached_tokens": c});
    }
    if let Some(r) = u.reasoning_tokens {
        v["completion_tokens_details"] = json!({"reasoning_tokens": r});
    }
    v
}

#[derive(Deserialize)]
struct RequestFields<'a> {
    #[serde(borrow)]
    model: Option<&'a RawValue>,
    stream: Option<bool>,
    // Raw, so a wrongly typed value is left for the provider to report.
    #[serde(borrow)]
    max_completion_tokens: Option<&'a RawValue>,
    #[serde(borrow)]
    max_tokens: Option<&'a RawValue>,
    #[serde(borrow)]
    stream_options: Option<&'a RawValue>,
    // Only whether they are there (each is required by some endpoint).
    #[serde(borrow)]
    messages: Option<&'a RawValue>,
    #[serde(borrow)]
    prompt: Option<&'a RawValue>,
    #[serde(borrow)]
    input: Option<&'a RawValue>,
    #[serde(borrow)]
    voice: Option<&'a RawValue>,
}

impl Wire for OpenAi {
    fn peek_request(&self, body: &[u8]) -> Result<RequestPeek, String> {
        codec::peek_request_with(body, |p: RequestFields| PeekedFields {
            model: p.model,
            stream: p.stream.unwrap_or(false),
            max_output_tokens: codec::raw_count(p.max_completion_tokens)
                .or_else(|| codec::raw_count(p.max_tokens)),
            stream_usage: codec::object_value(p.stream_options)
                .is_some_and(|o| o["include_usage"] == true),
            present: Present::of(&[
                (Present::MESSAGES, p.messages.is_some()),
                (Present::PROMPT, p.prompt.is_some()),
                (Present::INPUT, p.input.is_some()),
                (Present::VOICE, p.voice.is_some()),
            ]),
            ..Default::default()
        })
    }

    fn peek_response(&self, json: &[u8]) -> Option<ResponseFacts> {
        let top: ModelUsage = serde_json::from_slice(json).ok()?;
        Some(codec::response_facts(json, top, None, usage_from))
    }

    fn stream_error(&self, err: &GatewayError, json_array: bool) -> Bytes {
        codec::sse_error(&err.body(Protocol::OpenAi), None, json_array)
    }
}

/// OpenAI takes tool names of `[a-zA-Z0-9_-]{1,64}`.
pub fn wire_tool_name(name: &str) -> Option<String> {
    codec::hashed_tool_name(name, allowed_tool_char, None)
}

/// Also Anthropic's rule.
pub(crate) fn allowed_tool_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}
