//! Model-name rewriting without re-serialising bodies: the request's `model` is located
//! with a borrowed `RawValue` and spliced (responses are renamed back by the relay the
//! same way), so everything else in the body stays byte-for-byte what the other side sent.

use std::ops::Range;

use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use serde_json::value::RawValue;

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
pub fn span_of(outer: &[u8], inner: &str) -> Range<usize> {
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
}
