//! OpenAI Chat Completions response bodies <-> the internal model.

use serde_json::{json, Value};

use super::wire::{usage_from, usage_json};
use crate::translate::codec::Envelope;
use crate::translate::model::*;
use crate::translate::TranslateError;

pub(super) fn finish_from(s: &str) -> FinishReason {
    match s {
        "length" => FinishReason::Length,
        "tool_calls" | "function_call" => FinishReason::ToolCalls,
        "content_filter" => FinishReason::ContentFilter,
        _ => FinishReason::Stop,
    }
}

pub(super) fn finish_str(f: FinishReason) -> &'static str {
    match f {
        FinishReason::Stop | FinishReason::StopSequence => "stop",
        FinishReason::Length => "length",
        FinishReason::ToolCalls => "tool_calls",
        FinishReason::ContentFilter => "content_filter",
    }
}

pub fn decode_response(v: &Value) -> Result<ChatResponse, TranslateError> {
    let choice = &v["choices"][0];
    if !choice.is_object() {
        return Err(TranslateError::new(
            "the provider's response has no choices",
        ));
    }
    let msg = &choice["message"];
    let mut parts = vec![];
    if let Some(r) = msg["reasoning_content"].as_str().filter(|r| !r.is_empty()) {
        parts.push(Part::Thinking {
            text: r.to_string(),
            signature: None,
        });
    }
    if let Some(t) = msg["content"].as_str() {
        if !t.is_empty() {
            parts.push(Part::Text(t.to_string()));
        }
    }
    if let Some(r) = msg["refusal"].as_str() {
        parts.push(Part::Text(r.to_string()));
    }
    for c in msg["tool_calls"].as_array().into_iter().flatten() {
        parts.push(Part::ToolCall {
            id: c["id"].as_str().unwrap_or_default().to_string(),
            name: c["function"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            arguments: c["function"]["arguments"]
                .as_str()
                .unwrap_or("{}")
                .to_string(),
        });
    }
    Ok(ChatResponse {
        id: v["id"].as_str().unwrap_or_default().to_string(),
        parts,
        finish: choice["finish_reason"].as_str().map(finish_from),
        usage: usage_from(&v["usage"]),
    })
}

pub fn encode_response(r: &ChatResponse, env: &Envelope) -> Value {
    let text: String = r
        .parts
        .iter()
        .filter_map(|p| {
            if let Part::Text(t) = p {
                Some(t.as_str())
            } else {
                None
            }
        })
        .collect();
    let thinking: String = r
        .parts
        .iter()
        .filter_map(|p| {
            if let Part::Thinking { text, .. } = p {
                Some(text.as_str())
            } else {
                None
            }
        })
        .collect();
    let calls: Vec<Value> = r
        .parts
        .iter()
        .filter_map(|p| match p {
            Part::ToolCall { id, name, arguments } => {
                Some(json!({"id": id, "type": "function", "function": {"name": name, "arguments": arguments}}))
            }
            _ => None,
        })
        .collect();
    // `refusal` is required (nullable) by the schema's ChatCompletionResponseMessage.
    let mut message = json!({"role": "assistant", "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { Value::String(text) }, "refusal": null});
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    if !thinking.is_empty() {
        message["reasoning_content"] = thinking.into();
    }
    let mut out = json!({
        "id": chat_id(&r.id),
        "object": "chat.completion",
        "created": env.created,
        "model": env.model,
        "choices": [{"index": 0, "message": message, "logprobs": null,
                     "finish_reason": finish_str(r.finish.unwrap_or(FinishReason::Stop))}],
    });
    if let Some(u) = &r.usage {
        out["usage"] = usage_json(u);
    }
    out
}

pub(super) fn chat_id(id: &str) -> String {
    if id.starts_with("chatcmpl") {
        id.to_string()
    } else {
        format!("chatcmpl-{}", if id.is_empty() { "modelgate" } else { id })
    }
}
