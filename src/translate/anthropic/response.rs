//! Anthropic Messages response bodies <-> the internal model.

use serde_json::{json, Value};

use super::request::{decode_block, encode_parts};
use super::wire::{usage_from, usage_json};
use crate::translate::model::*;
use crate::translate::{Dropped, TranslateError};

pub(super) fn finish_from(s: &str) -> FinishReason {
    match s {
        "max_tokens" | "model_context_window_exceeded" => FinishReason::Length,
        "tool_use" => FinishReason::ToolCalls,
        "stop_sequence" => FinishReason::StopSequence,
        "refusal" => FinishReason::ContentFilter,
        _ => FinishReason::Stop,
    }
}

pub(super) fn finish_str(f: FinishReason) -> &'static str {
    match f {
        FinishReason::Stop => "end_turn",
        FinishReason::Length => "max_tokens",
        FinishReason::ToolCalls => "tool_use",
        FinishReason::StopSequence => "stop_sequence",
        FinishReason::ContentFilter => "refusal",
    }
}

pub fn decode_response(v: &Value) -> Result<ChatResponse, TranslateError> {
    let blocks = v["content"]
        .as_array()
        .ok_or_else(|| TranslateError::new("the provider's response has no content"))?;
    let mut parts = vec![];
    for b in blocks {
        // Unknown block types (server tool results, ...) have no place in other protocols.
        let _ = decode_block(b, "content", &mut parts);
    }
    Ok(ChatResponse {
        id: v["id"].as_str().unwrap_or_default().to_string(),
        parts,
        finish: v["stop_reason"].as_str().map(finish_from),
        usage: usage_from(&v["usage"]),
    })
}

pub(super) fn message_id(id: &str) -> String {
    if id.starts_with("msg_") {
        id.to_string()
    } else {
        format!("msg_{}", if id.is_empty() { "modelgate" } else { id })
    }
}

pub fn encode_response(r: &ChatResponse, public_model: &str) -> Value {
    let mut dropped = Dropped::default();
    json!({
        "id": message_id(&r.id),
        "type": "message",
        "role": "assistant",
        "model": public_model,
        "content": encode_parts(&r.parts.iter().map(|p| match p {
            // A thinking block without a signature is still worth showing to the client.
            Part::Thinking { text, signature: None } => Part::Thinking { text: text.clone(), signature: Some(Signature::new(Issuer::Anthropic, "")) },
            other => other.clone(),
        }).collect::<Vec<_>>(), false, &mut dropped),
        "stop_reason": finish_str(r.finish.unwrap_or(FinishReason::Stop)),
        "stop_sequence": null,
        "stop_details": null,
        "container": null,
        "diagnostics": null,
        "usage": usage_json(&r.usage.unwrap_or_default()),
    })
}
