//! Token usage read from responses that pass through untranslated, in any protocol: the
//! body is watched as it goes by (never held back), and only JSON that mentions usage is
//! parsed.

use bytes::BytesMut;
use serde_json::Value;

use crate::sse::{self, SseFramer};
use crate::translate::model::Usage;

/// Most a non-stream body is copied for usage; larger ones (images, embeddings of many
/// inputs) are not worth the memory.
const MAX_JSON_COPY: usize = 4 * 1024 * 1024;

/// Usage from one response object or stream event, whichever protocol wrote it: OpenAI
/// (`usage.prompt_tokens`), OpenAI Responses (`response.usage.input_tokens`), Anthropic
/// (`usage` / `message.usage` with cache counts apart), Gemini (`usageMetadata`).
pub fn from_json(v: &Value) -> Option<Usage> {
    let u = [
        &v["usage"],
        &v["message"]["usage"],
        &v["response"]["usage"],
        &v["usageMetadata"],
    ]
    .into_iter()
    .find(|u| u.is_object())?;
    from_usage_object(u)
}

#[derive(serde::Deserialize)]
struct Inner {
    usage: Option<Value>,
}

/// Only the fields that can hold usage are materialised; the rest of the body is skipped
/// by the parser without allocating.
#[derive(serde::Deserialize)]
struct Peek {
    usage: Option<Value>,
    #[serde(rename = "usageMetadata")]
    usage_metadata: Option<Value>,
    message: Option<Inner>,
    response: Option<Inner>,
}

/// Usage from one JSON object's bytes (see `from_json`).
pub fn from_bytes(json: &[u8]) -> Option<Usage> {
    let p: Peek = serde_json::from_slice(json).ok()?;
    [
        p.usage,
        p.usage_metadata,
        p.message.and_then(|m| m.usage),
        p.response.and_then(|r| r.usage),
    ]
    .into_iter()
    .flatten()
    .find(Value::is_object)
    .and_then(|u| from_usage_object(&u))
}

fn from_usage_object(u: &Value) -> Option<Usage> {
    let n = |k: &str| u[k].as_u64();
    if let Some(p) = n("prompt_tokens") {
        return Some(Usage {
            prompt_tokens: p,
            completion_tokens: n("completion_tokens").unwrap_or(0),
            cached_tokens: u["prompt_tokens_details"]["cached_tokens"].as_u64(),
            reasoning_tokens: u["completion_tokens_details"]["reasoning_tokens"].as_u64(),
        });
    }
    if let Some(p) = n("promptTokenCount") {
        return Some(Usage {
            prompt_tokens: p,
            completion_tokens: n("candidatesTokenCount").unwrap_or(0)
                + n("thoughtsTokenCount").unwrap_or(0),
            cached_tokens: n("cachedContentTokenCount"),
            reasoning_tokens: n("thoughtsTokenCount"),
        });
    }
    let input = n("input_tokens");
    let output = n("output_tokens");
    if input.is_none() && output.is_none() {
        return None;
    }
    let read = n("cache_read_input_tokens");
    Some(Usage {
        prompt_tokens: input.unwrap_or(0)
            + read.unwrap_or(0)
            + n("cache_creation_input_tokens").unwrap_or(0),
        completion_tokens: output.unwrap_or(0),
        cached_tokens: read.or_else(|| u["input_tokens_details"]["cached_tokens"].as_u64()),
        reasoning_tokens: u["output_tokens_details"]["reasoning_tokens"].as_u64(),
    })
}

/// Keeps the largest value seen for each count: streams report partial, then cumulative
/// numbers (Anthropic: input at the start, output at the end).
fn merge(acc: &mut Option<Usage>, u: Usage) {
    let a = acc.get_or_insert_with(Usage::default);
    a.prompt_tokens = a.prompt_tokens.max(u.prompt_tokens);
    a.completion_tokens = a.completion_tokens.max(u.completion_tokens);
    a.cached_tokens = a.cached_tokens.max(u.cached_tokens);
    a.reasoning_tokens = a.reasoning_tokens.max(u.reasoning_tokens);
}

pub enum UsageTap {
    Json {
        buf: BytesMut,
        overflow: bool,
    },
    Sse {
        framer: SseFramer,
        usage: Option<Usage>,
    },
}

impl UsageTap {
    pub fn json() -> Self {
        UsageTap::Json {
            buf: BytesMut::new(),
            overflow: false,
        }
    }

    pub fn sse() -> Self {
        UsageTap::Sse {
            framer: SseFramer::default(),
            usage: None,
        }
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        match self {
            UsageTap::Json { buf, overflow } => {
                if !*overflow && buf.len() + chunk.len() <= MAX_JSON_COPY {
                    buf.extend_from_slice(chunk);
                } else {
                    *overflow = true;
                    buf.clear();
                }
            }
            UsageTap::Sse { framer, usage } => {
                framer.push(chunk);
                while let Some(ev) = framer.next_event() {
                    if memchr::memmem::find(&ev, b"sage").is_none() {
                        continue;
                    }
                    if let Some(u) =
                        sse::event_data(&ev).and_then(|data| from_bytes(data.as_bytes()))
                    {
                        merge(usage, u);
                    }
                }
            }
        }
    }

    pub fn finish(self) -> Option<Usage> {
        match self {
            UsageTap::Json { buf, overflow } => {
                if overflow {
                    return None;
                }
                // A Gemini stream without alt=sse is a JSON array of responses.
                if buf.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
                    let items: Vec<Value> = serde_json::from_slice(&buf).ok()?;
                    let mut acc = None;
                    for u in items.iter().filter_map(from_json) {
                        merge(&mut acc, u);
                    }
                    return acc;
                }
                from_bytes(&buf)
            }
            UsageTap::Sse { usage, .. } => usage,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_protocols_usage_is_read() {
        let openai = serde_json::json!({"usage": {"prompt_tokens": 9, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": 2}}});
        assert_eq!(
            from_json(&openai).unwrap(),
            Usage {
                prompt_tokens: 9,
                completion_tokens: 3,
                cached_tokens: Some(2),
                reasoning_tokens: None
            }
        );
        let anthropic = serde_json::json!({"usage": {"input_tokens": 5, "output_tokens": 7, "cache_read_input_tokens": 10, "cache_creation_input_tokens": 1}});
        assert_eq!(from_json(&anthropic).unwrap().prompt_tokens, 16);
        let gemini = serde_json::json!({"usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 6, "thoughtsTokenCount": 2}});
        assert_eq!(from_json(&gemini).unwrap().completion_tokens, 8);
        let responses = serde_json::json!({"type": "response.completed", "response": {"usage": {"input_tokens": 3, "output_tokens": 4}}});
        assert_eq!(from_json(&responses).unwrap().completion_tokens, 4);
        assert!(from_json(&serde_json::json!({"choices": []})).is_none());
        for v in [openai, anthropic, gemini, responses] {
            assert_eq!(from_bytes(v.to_string().as_bytes()), from_json(&v), "{v}");
        }
        assert!(from_bytes(br#"{"usage": null, "choices": []}"#).is_none());
    }

    #[test]
    fn anthropic_stream_usage_is_merged_across_events() {
        let mut tap = UsageTap::sse();
        let stream = b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\n\nevent: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"text\":\"hi\"}}\n\nevent: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":15}}\n\n";
        for c in stream.chunks(7) {
            tap.feed(c);
        }
        let u = tap.finish().unwrap();
        assert_eq!((u.prompt_tokens, u.completion_tokens), (25, 15));
    }
}
