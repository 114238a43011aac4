//! Gemini generateContent response bodies <-> the internal model.

use serde_json::{json, Value};

use super::request::{call_id, parse_args};
use super::wire::{client_signature, read_signature, usage_from, usage_json};
use crate::translate::model::*;
use crate::translate::TranslateError;

pub(super) fn finish_from(s: &str) -> FinishReason {
    match s {
        "MAX_TOKENS" => FinishReason::Length,
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => {
            FinishReason::ContentFilter
        }
        _ => FinishReason::Stop,
    }
}

pub(super) fn finish_str(f: FinishReason) -> &'static str {
    match f {
        FinishReason::Length => "MAX_TOKENS",
        FinishReason::ContentFilter => "SAFETY",
        _ => "STOP",
    }
}

/// The parts of a response chunk, as internal parts (calls get positional ids from `next_call`).
pub(super) fn decode_parts(parts: &Value, next_call: &mut usize) -> Vec<Part> {
    let mut out = vec![];
    for p in parts.as_array().into_iter().flatten() {
        if let Some(t) = p["text"].as_str() {
            if p["thought"] == true {
                out.push(Part::Thinking {
                    text: t.to_string(),
                    signature: read_signature(p["thoughtSignature"].as_str()),
                });
            } else if !t.is_empty() {
                out.push(Part::Text(t.to_string()));
            }
        } else if let Some(fc) = p.get("functionCall") {
            let id = fc["id"]
                .as_str()
                .map(String::from)
                .unwrap_or_else(|| call_id(*next_call));
            *next_call += 1;
            // Gemini 3 wants this back with the call: it travels as a signed, empty thought.
            if let Some(signature) = read_signature(p["thoughtSignature"].as_str()) {
                out.push(Part::Thinking {
                    text: String::new(),
                    signature: Some(signature),
                });
            }
            out.push(Part::ToolCall {
                id,
                name: fc["name"].as_str().unwrap_or_default().to_string(),
                arguments: fc
                    .get("args")
                    .map(Value::to_string)
                    .unwrap_or_else(|| "{}".into()),
            });
        }
    }
    out
}

pub fn decode_response(v: &Value) -> Result<ChatResponse, TranslateError> {
    let c = &v["candidates"][0];
    if !c.is_object() {
        let reason = v["promptFeedback"]["blockReason"].as_str();
        return match reason {
            Some(r) => Ok(ChatResponse {
                id: v["responseId"].as_str().unwrap_or_default().to_string(),
                parts: vec![],
                finish: Some(FinishReason::ContentFilter),
                usage: usage_from(&v["usageMetadata"]),
            })
            .inspect(|_| log::debug!("gemini blocked the prompt: {r}")),
            None => Err(TranslateError::new(
                "the provider's response has no candidates",
            )),
        };
    }
    let parts = decode_parts(&c["content"]["parts"], &mut 0);
    let has_calls = parts.iter().any(|p| matches!(p, Part::ToolCall { .. }));
    let finish = c["finishReason"].as_str().map(finish_from).map(|f| {
        if has_calls && f == FinishReason::Stop {
            FinishReason::ToolCalls
        } else {
            f
        }
    });
    Ok(ChatResponse {
        id: v["responseId"].as_str().unwrap_or_default().to_string(),
        parts,
        finish,
        usage: usage_from(&v["usageMetadata"]),
    })
}

fn encode_parts(parts: &[Part]) -> Vec<Value> {
    parts
        .iter()
        .filter_map(|p| match p {
            Part::Text(t) => Some(json!({"text": t})),
            Part::Thinking { text, signature } => {
                let mut v = json!({"text": text, "thought": true});
                if let Some(s) = signature.as_ref().filter(|s| !s.value.is_empty()) {
                    v["thoughtSignature"] = client_signature(s).into();
                }
                Some(v)
            }
            Part::ToolCall {
                id,
                name,
                arguments,
            } => Some(
                json!({"functionCall": {"id": id, "name": name, "args": parse_args(arguments)}}),
            ),
            _ => None,
        })
        .collect()
}

pub fn encode_response(r: &ChatResponse, public_model: &str) -> Value {
    let mut out = json!({
        "candidates": [{
            "content": {"role": "model", "parts": encode_parts(&r.parts)},
            "finishReason": finish_str(r.finish.unwrap_or(FinishReason::Stop)),
            "index": 0,
        }],
        "modelVersion": public_model,
        "responseId": r.id,
    });
    if let Some(u) = &r.usage {
        out["usageMetadata"] = usage_json(u);
    }
    out
}
