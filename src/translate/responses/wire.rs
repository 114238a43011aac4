//! OpenAI Responses wire facts: usage objects, request and response peeks, relayed
//! signatures in passthrough bodies. (The event that ends a broken stream is the stream
//! encoder's own failure: `failure_after`.)

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use bytes::Bytes;

use super::Responses;
use crate::errors::GatewayError;
use crate::translate::codec::{
    self, ModelUsage, PeekedFields, Present, RequestPeek, ResponseFacts, Wire, RELAYED_PREFIX,
};
use crate::translate::model::{Signature, Usage};

/// A Responses usage object (`input_tokens`, `output_tokens` and their details).
pub fn usage_from(u: &Value) -> Option<Usage> {
    let input = u["input_tokens"].as_u64();
    let output = u["output_tokens"].as_u64();
    if input.is_none() && output.is_none() {
        return None;
    }
    Some(Usage {
        prompt_tokens: input.unwrap_or(0),
        completion_tokens: output.unwrap_or(0),
        cached_tokens: u["input_tokens_details"]["cached_tokens"].as_u64(),
        reasoning_tokens: u["output_tokens_details"]["reasoning_tokens"].as_u64(),
        cache_write_tokens: u["input_tokens_details"]["cache_write_tokens"].as_u64(),
    })
    .filter(Usage::plausible)
}

pub fn usage_json(u: &Usage) -> Value {
    json!({
        "input_tokens": u.prompt_tokens,
        // Both required by the OpenAPI document's ResponseUsage.
        "input_tokens_details": {
            "cached_tokens": u.cached_tokens.unwrap_or(0),
            "cache_write_tokens": u.cache_write_tokens.unwrap_or(0),
        },
        "output_tokens": u.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens.unwrap_or(0)},
        "total_tokens": u.prompt_tokens.saturating_add(u.completion_tokens),
    })
}

#[derive(Deserialize)]
struct RequestFields<'a> {
    #[serde(borrow)]
    model: Option<&'a RawValue>,
    stream: Option<bool>,
    // Raw, so a wrongly typed value is left for the provider to report.
    #[serde(borrow)]
    max_output_tokens: Option<&'a RawValue>,
    #[serde(borrow)]
    store: Option<&'a RawValue>,
    #[serde(borrow)]
    previous_response_id: Option<&'a RawValue>,
}

/// A response object (top level) or a stream event (`response.*` events nest it).
#[derive(Deserialize)]
struct ResponseFields<'a> {
    #[serde(borrow)]
    model: Option<&'a RawValue>,
    #[serde(borrow)]
    usage: Option<&'a RawValue>,
    #[serde(borrow)]
    response: Option<ModelUsage<'a>>,
}

impl Wire for Responses {
    fn peek_request(&self, body: &[u8]) -> Result<RequestPeek, String> {
        codec::peek_request_with(body, |p: RequestFields| PeekedFields {
            model: p.model,
            stream: p.stream.unwrap_or(false),
            max_output_tokens: codec::raw_count(p.max_output_tokens),
            stream_usage: false,
            present: Present::default(),
            unstored: p.store.is_some_and(|s| s.get() == "false"),
            previous_response_id: p
                .previous_response_id
                .and_then(|id| serde_json::from_str::<String>(id.get()).ok())
                .filter(|id| !id.is_empty()),
        })
    }

    fn peek_response(&self, json: &[u8]) -> Option<ResponseFacts> {
        let p: ResponseFields = serde_json::from_slice(json).ok()?;
        let top = ModelUsage {
            model: p.model,
            usage: p.usage,
        };
        Some(codec::response_facts(json, top, p.response, usage_from))
    }

    /// Responses streams end with `error` then `response.failed` (see `failure_after`).
    fn stream_error(&self, err: &GatewayError, _json_array: bool) -> Bytes {
        Bytes::from(super::stream::failure_after(None, None, &err.message))
    }

    fn strip_relayed_signatures(&self, body: &[u8]) -> Option<Value> {
        strip_relayed_signatures(body)
    }
}

/// Reasoning items whose `encrypted_content` is a relayed signature go (OpenAI's own
/// encrypted reasoning stays).
fn strip_relayed_signatures(body: &[u8]) -> Option<Value> {
    memchr::memmem::find(body, RELAYED_PREFIX.as_bytes())?;
    let mut v: Value = serde_json::from_slice(body).ok()?;
    let items = v.get_mut("input")?.as_array_mut()?;
    items.retain(|i| {
        let relayed = i["encrypted_content"]
            .as_str()
            .and_then(Signature::from_relayed)
            .is_some();
        !(i["type"] == "reasoning" && relayed)
    });
    Some(v)
}
