//! Model-name rewriting without re-serialising bodies: the request's `model` is swapped for
//! the provider's name, and the response's `model` back to the public name the client asked
//! for. Values are located with borrowed `RawValue`s and spliced, so everything else in the
//! body stays byte-for-byte what the other side sent.

use std::ops::Range;

use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::sse::SseFramer;

/// What the gateway needs to know about a request body before routing it.
#[derive(Debug)]
pub struct RequestPeek {
    pub model: Option<String>,
    /// Byte range of the `model` value (quotes included) in the body.
    pub model_span: Option<Range<usize>>,
    pub stream: bool,
    /// Output tokens the client asked for, in whichever field its protocol uses.
    pub max_output_tokens: Option<u64>,
    /// OpenAI `stream_options.include_usage`: a stream that will report its usage.
    pub stream_usage: bool,
}

#[derive(Deserialize)]
struct Peek<'a> {
    #[serde(borrow)]
    model: Option<&'a RawValue>,
    stream: Option<bool>,
    // Raw, so a wrongly typed value is left for the provider to report.
    #[serde(borrow)]
    max_tokens: Option<&'a RawValue>,
    #[serde(borrow)]
    max_completion_tokens: Option<&'a RawValue>,
    #[serde(borrow)]
    max_output_tokens: Option<&'a RawValue>,
    #[serde(borrow, rename = "generationConfig")]
    generation_config: Option<GenerationConfig<'a>>,
    // Raw, so a wrongly typed value is left for the provider to report.
    #[serde(borrow)]
    stream_options: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct GenerationConfig<'a> {
    #[serde(borrow, rename = "maxOutputTokens")]
    max_output_tokens: Option<&'a RawValue>,
}

/// Parses a request body as a JSON object, reading only `model` and `stream`.
pub fn peek_request(body: &[u8]) -> Result<RequestPeek, String> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err("the request body must be a JSON object".to_string());
    }
    let p: Peek = serde_json::from_slice(body)
        .map_err(|e| format!("the request body is not valid JSON: {e}"))?;
    let (model, model_span) = match p.model {
        None => (None, None),
        Some(raw) => {
            let text = raw.get();
            let m: String =
                serde_json::from_str(text).map_err(|_| "'model' must be a string".to_string())?;
            (Some(m), Some(span_of(body, text)))
        }
    };
    let max_output_tokens = [
        p.max_completion_tokens,
        p.max_tokens,
        p.max_output_tokens,
        p.generation_config.and_then(|g| g.max_output_tokens),
    ]
    .into_iter()
    .flatten()
    .find_map(|raw| raw.get().parse::<u64>().ok());
    Ok(RequestPeek {
        model,
        model_span,
        stream: p.stream.unwrap_or(false),
        max_output_tokens,
        stream_usage: p
            .stream_options
            .and_then(|raw| serde_json::from_str::<serde_json::Value>(raw.get()).ok())
            .is_some_and(|o| o["include_usage"] == true),
    })
}

/// The position of `inner` (a sub-slice of `outer`) within `outer`.
fn span_of(outer: &[u8], inner: &str) -> Range<usize> {
    let start = inner.as_ptr() as usize - outer.as_ptr() as usize;
    start..start + inner.len()
}

/// `body` with the bytes in `span` replaced by `name` as a JSON string.
pub fn splice_json_string(body: &[u8], span: Range<usize>, name: &str) -> Bytes {
    let quoted = serde_json::to_string(name).unwrap_or_default();
    let mut out = BytesMut::with_capacity(body.len() + quoted.len());
    out.extend_from_slice(&body[..span.start]);
    out.extend_from_slice(quoted.as_bytes());
    out.extend_from_slice(&body[span.end..]);
    out.freeze()
}

#[derive(Deserialize)]
struct Inner<'a> {
    #[serde(borrow)]
    model: Option<&'a RawValue>,
}

/// Where providers put the model name in a response object or stream event: top level
/// (OpenAI, Anthropic non-stream), `modelVersion` (Gemini), `message.model` (Anthropic's
/// `message_start`), `response.model` (OpenAI Responses events).
#[derive(Deserialize)]
struct ResponsePeek<'a> {
    #[serde(borrow)]
    model: Option<&'a RawValue>,
    #[serde(borrow, rename = "modelVersion")]
    model_version: Option<&'a RawValue>,
    #[serde(borrow)]
    message: Option<Inner<'a>>,
    #[serde(borrow)]
    response: Option<Inner<'a>>,
}

/// Replaces the model name in one JSON object; leaves anything unparsable untouched.
pub fn rename_model_in_json(json: &[u8], public: &str) -> Option<Bytes> {
    let p: ResponsePeek = serde_json::from_slice(json).ok()?;
    let raw = p
        .model
        .or(p.model_version)
        .or(p.message.and_then(|m| m.model))
        .or(p.response.and_then(|r| r.model))?;
    if !raw.get().starts_with('"') {
        return None;
    }
    Some(splice_json_string(json, span_of(json, raw.get()), public))
}

/// Renames the model in a response body as it streams by.
pub enum ModelRenamer {
    /// A whole JSON body, renamed once complete (non-stream responses are not streamed,
    /// so holding them costs no latency).
    Json { buf: BytesMut, public: String },
    /// Server-sent events, renamed event by event as each completes.
    Sse { framer: SseFramer, public: String },
}

impl ModelRenamer {
    pub fn json(public: String) -> Self {
        ModelRenamer::Json {
            buf: BytesMut::new(),
            public,
        }
    }

    pub fn sse(public: String) -> Self {
        ModelRenamer::Sse {
            framer: SseFramer::default(),
            public,
        }
    }

    /// Feeds one chunk; returns what can be sent now.
    pub fn feed(&mut self, chunk: Option<Bytes>, end: bool) -> Option<Bytes> {
        match self {
            ModelRenamer::Json { buf, public } => {
                if let Some(c) = chunk {
                    buf.extend_from_slice(&c);
                }
                if !end {
                    return None;
                }
                let whole = std::mem::take(buf).freeze();
                Some(rename_model_in_json(&whole, public).unwrap_or(whole))
            }
            ModelRenamer::Sse { framer, public } => {
                let mut out = BytesMut::new();
                if let Some(c) = chunk {
                    framer.push(&c);
                }
                while let Some(event) = framer.next_event() {
                    rename_in_event(&event, public, &mut out);
                }
                if end {
                    if let Some(rest) = framer.take_rest() {
                        rename_in_event(&rest, public, &mut out);
                    }
                }
                (!out.is_empty()).then(|| out.freeze())
            }
        }
    }
}

/// Copies one SSE event to `out`, renaming the model inside each `data:` line's JSON.
fn rename_in_event(event: &[u8], public: &str, out: &mut BytesMut) {
    for line in event.split_inclusive(|b| *b == b'\n') {
        let payload = line
            .strip_prefix(b"data:")
            .map(|p| p.strip_prefix(b" ").unwrap_or(p));
        match payload {
            Some(p) if p.trim_ascii_start().starts_with(b"{") => {
                let body_end = p.len() - (p.len() - p.trim_ascii_end().len());
                let json = &p[..body_end];
                match rename_model_in_json(json, public) {
                    Some(renamed) => {
                        out.extend_from_slice(&line[..line.len() - p.len()]);
                        out.extend_from_slice(&renamed);
                        out.extend_from_slice(&p[body_end..]);
                    }
                    None => out.extend_from_slice(line),
                }
            }
            _ => out.extend_from_slice(line),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peek_finds_model_and_stream() {
        let body = br#"{"messages":[{"role":"user","content":"hi \"model\""}],"model":"gpt4o","stream":true}"#;
        let p = peek_request(body).unwrap();
        assert_eq!(p.model.as_deref(), Some("gpt4o"));
        assert!(p.stream);
        let out = splice_json_string(body, p.model_span.unwrap(), "gpt-4o-2024");
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["model"], "gpt-4o-2024");
        assert_eq!(v["messages"][0]["content"], "hi \"model\"");
    }

    #[test]
    fn peek_rejects_what_is_not_an_object() {
        assert!(peek_request(b"[1]").unwrap_err().contains("JSON object"));
        assert!(peek_request(b"{\"model\": 3}")
            .unwrap_err()
            .contains("string"));
        assert!(peek_request(b"{\"model\": \"a\",")
            .unwrap_err()
            .contains("not valid JSON"));
        assert!(peek_request(b"").is_err());
    }

    #[test]
    fn renames_nested_and_gemini_models() {
        let r = rename_model_in_json(
            br#"{"type":"message_start","message":{"id":"m","model":"claude-x"}}"#,
            "pub",
        )
        .unwrap();
        assert_eq!(
            &r[..],
            br#"{"type":"message_start","message":{"id":"m","model":"pub"}}"#
        );
        let r =
            rename_model_in_json(br#"{"candidates":[],"modelVersion":"gemini-2.5"}"#, "g").unwrap();
        assert_eq!(&r[..], br#"{"candidates":[],"modelVersion":"g"}"#);
        assert!(rename_model_in_json(b"not json", "x").is_none());
    }

    #[test]
    fn sse_rename_is_identical_at_every_split() {
        let stream = b"data: {\"id\":\"1\",\"model\":\"up\",\"choices\":[]}\n\n: keepalive\n\ndata: {\"model\":\"up\"}\r\n\r\ndata: [DONE]\n\n";
        let expected = b"data: {\"id\":\"1\",\"model\":\"pub\",\"choices\":[]}\n\n: keepalive\n\ndata: {\"model\":\"pub\"}\r\n\r\ndata: [DONE]\n\n";
        for split in 0..=stream.len() {
            let mut r = ModelRenamer::sse("pub".into());
            let mut got = Vec::new();
            for (i, part) in [&stream[..split], &stream[split..]].iter().enumerate() {
                if let Some(b) = r.feed(Some(Bytes::copy_from_slice(part)), i == 1) {
                    got.extend_from_slice(&b);
                }
            }
            assert_eq!(got, expected.to_vec(), "split at {split}");
        }
    }
}
