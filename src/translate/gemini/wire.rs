//! Gemini wire facts: thought signatures, usage metadata, request and response peeks, the
//! event that ends a broken stream, tool-name rules, relayed signatures in passthrough
//! bodies.

use base64::Engine;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::Gemini;
use crate::errors::GatewayError;
use crate::protocol::Protocol;
use crate::translate::codec::{
    self, ModelUsage, PeekedFields, Present, RequestPeek, ResponseFacts, Wire, RELAYED_PREFIX,
};
use crate::translate::model::{Issuer, Signature, Usage};

/// Accepted by Gemini 3 in place of a thought signature on a function call whose real
/// signature was lost (history written by another provider or a client that drops it);
/// documented in ai.google.dev/gemini-api/docs/thought-signatures.
pub(super) const SKIP_SIGNATURE: &str = "skip_thought_signature_validator";

/// How a relayed signature starts once base64-encoded (the first 12 bytes of the
/// relayed prefix, whose encoding does not depend on what follows).
const RELAYED_PREFIX_B64: &str = "bW9kZWxnYXRlLXNp";

/// A relayed signature in a thoughtSignature: base64 of the relayed form (the field is
/// proto `bytes`), or the bare relayed text clients replay from before it was encoded.
fn relayed(sig: &str) -> Option<Signature> {
    if let Some(s) = Signature::from_relayed(sig) {
        return Some(s);
    }
    if !sig.starts_with(RELAYED_PREFIX_B64) {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD.decode(sig).ok()?;
    Signature::from_relayed(std::str::from_utf8(&raw).ok()?)
}

/// A thoughtSignature read: Gemini's own, or one modelgate relayed from another provider
/// (Anthropic's) to a Gemini client, unwrapped back to its issuer's.
pub(super) fn read_signature(sig: Option<&str>) -> Option<Signature> {
    let sig = sig.filter(|s| !s.is_empty())?;
    Some(relayed(sig).unwrap_or_else(|| Signature::new(Issuer::Gemini, sig)))
}

/// A signature as a thoughtSignature for a Gemini client: Gemini's bare, any other
/// provider's marked as relayed so it comes back recognised, base64-encoded (the proto
/// field is `bytes`: strict clients refuse anything else).
pub(super) fn client_signature(sig: &Signature) -> String {
    match sig.issuer {
        Issuer::Gemini => sig.value.clone(),
        _ => base64::engine::general_purpose::STANDARD.encode(sig.relayed()),
    }
}

/// Gemini reports thinking tokens apart (`thoughtsTokenCount`); they are output tokens.
pub fn usage_from(u: &Value) -> Option<Usage> {
    let prompt = u["promptTokenCount"].as_u64()?;
    let thoughts = u["thoughtsTokenCount"].as_u64();
    Some(Usage {
        prompt_tokens: prompt,
        completion_tokens: u["candidatesTokenCount"]
            .as_u64()
            .unwrap_or(0)
            .saturating_add(thoughts.unwrap_or(0)),
        cached_tokens: u["cachedContentTokenCount"].as_u64(),
        reasoning_tokens: thoughts,
        cache_write_tokens: None,
    })
    .filter(Usage::plausible)
}

pub fn usage_json(u: &Usage) -> Value {
    let thoughts = u.reasoning_tokens.unwrap_or(0).min(u.completion_tokens);
    let mut v = json!({
        "promptTokenCount": u.prompt_tokens,
        "candidatesTokenCount": u.completion_tokens - thoughts,
        "totalTokenCount": u.prompt_tokens.saturating_add(u.completion_tokens),
    });
    if let Some(c) = u.cached_tokens {
        v["cachedContentTokenCount"] = c.into();
    }
    if let Some(r) = u.reasoning_tokens {
        v["thoughtsTokenCount"] = r.into();
    }
    v
}

#[derive(Deserialize)]
struct GenerationConfig<'a> {
    #[serde(borrow, rename = "maxOutputTokens")]
    max_output_tokens: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct RequestFields<'a> {
    #[serde(borrow)]
    model: Option<&'a RawValue>,
    #[serde(borrow, rename = "generationConfig")]
    generation_config: Option<GenerationConfig<'a>>,
    #[serde(borrow)]
    contents: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct ResponseFields<'a> {
    #[serde(borrow, rename = "modelVersion")]
    model_version: Option<&'a RawValue>,
    #[serde(borrow, rename = "usageMetadata")]
    usage_metadata: Option<&'a RawValue>,
}

impl Wire for Gemini {
    /// Gemini says whether to stream in the path, never in the body: `stream` is false.
    fn peek_request(&self, body: &[u8]) -> Result<RequestPeek, String> {
        codec::peek_request_with(body, |p: RequestFields| PeekedFields {
            model: p.model,
            stream: false,
            max_output_tokens: codec::raw_count(
                p.generation_config.and_then(|g| g.max_output_tokens),
            ),
            stream_usage: false,
            present: Present::of(&[(Present::CONTENTS, p.contents.is_some())]),
            ..Default::default()
        })
    }

    fn peek_response(&self, json: &[u8]) -> Option<ResponseFacts> {
        let p: ResponseFields = serde_json::from_slice(json).ok()?;
        let top = ModelUsage {
            model: p.model_version,
            usage: p.usage_metadata,
        };
        Some(codec::response_facts(json, top, None, usage_from))
    }

    fn stream_error(&self, err: &GatewayError, json_array: bool) -> Bytes {
        codec::sse_error(&err.body(Protocol::Gemini), None, json_array)
    }

    fn strip_relayed_signatures(&self, body: &[u8]) -> Option<Value> {
        strip_relayed_signatures(body)
    }
}

/// Gemini takes `[a-zA-Z0-9_.:-]{1,64}` starting with a letter or `_`.
pub fn wire_tool_name(name: &str) -> Option<String> {
    codec::hashed_tool_name(
        name,
        |c| c.is_ascii_alphanumeric() || "_-.:".contains(c),
        Some(|c| c.is_ascii_alphabetic() || c == '_'),
    )
}

/// Relayed signatures leave the parts they are on; a signature-only thought goes.
fn strip_relayed_signatures(body: &[u8]) -> Option<Value> {
    memchr::memmem::find(body, RELAYED_PREFIX.as_bytes())
        .or_else(|| memchr::memmem::find(body, RELAYED_PREFIX_B64.as_bytes()))?;
    let mut v: Value = serde_json::from_slice(body).ok()?;
    for c in v.get_mut("contents")?.as_array_mut()?.iter_mut() {
        if let Some(parts) = c.get_mut("parts").and_then(Value::as_array_mut) {
            for p in parts.iter_mut() {
                let relayed = p["thoughtSignature"].as_str().and_then(relayed).is_some();
                if relayed {
                    if let Some(o) = p.as_object_mut() {
                        o.remove("thoughtSignature");
                    }
                }
            }
            // A signature-only thought has nothing left.
            parts.retain(|p| !(p["thought"] == true && p["text"] == ""));
        }
    }
    Some(v)
}
