//! Embeddings between OpenAI (`/v1/embeddings`) and Gemini (`:embedContent`,
//! `:batchEmbedContents`), both ways: any embeddings client reaches any provider that
//! embeds. Requests become the other API's request; answers are held whole (an embedding
//! is useless in part) and rewritten at the end, in the client's shape.

use base64::Engine;
use bytes::{Bytes, BytesMut};
use serde_json::{json, Value};

use super::model::Usage;
use super::TranslateError;
use crate::protocol::Op;

/// Most of an answer held for rewriting (2,048 inputs of 3,072 dimensions is ~60 MB).
const MAX_ANSWER: usize = 128 * 1024 * 1024;

/// How the provider's answer becomes the client's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// A Gemini batch answer as an OpenAI list; `base64`: `encoding_format: base64`.
    OpenAi { base64: bool },
    /// An OpenAI list as Gemini's answer to `:embedContent` (`batch: false`) or
    /// `:batchEmbedContents`.
    Gemini { batch: bool },
}

/// The provider request: body and path (before the provider's base URL prefix).
pub struct Request {
    pub body: Bytes,
    pub path: String,
    pub reply: Reply,
}

fn parse(body: &[u8]) -> Result<Value, TranslateError> {
    serde_json::from_slice(body)
        .map_err(|e| TranslateError::new(format!("the request body is not valid JSON: {e}")))
}

/// An OpenAI embeddings request for a Gemini provider (`batchEmbedContents`, whatever
/// the number of inputs: one call, answers in order).
pub fn openai_to_gemini(body: &[u8], model: &str) -> Result<Request, TranslateError> {
    let v = parse(body)?;
    let texts: Vec<String> = match &v["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) if items.iter().all(|i| i.is_string()) => items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_string))
            .collect(),
        Value::Array(_) => {
            return Err(TranslateError::param(
                "token arrays cannot be embedded by a Gemini provider; send the input as text",
                "input",
            ))
        }
        _ => {
            return Err(TranslateError::param(
                "'input' must be a string or an array of strings",
                "input",
            ))
        }
    };
    if texts.is_empty() {
        return Err(TranslateError::param("'input' is empty", "input"));
    }
    let dimensions = v["dimensions"].as_u64();
    let requests: Vec<Value> = texts
        .iter()
        .map(|t| {
            let mut r =
                json!({"model": format!("models/{model}"), "content": {"parts": [{"text": t}]}});
            if let Some(d) = dimensions {
                r["outputDimensionality"] = d.into();
            }
            r
        })
        .collect();
    let base64 = match v["encoding_format"].as_str() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(TranslateError::param(
                format!("encoding_format {other:?} is not one of \"float\", \"base64\""),
                "encoding_format",
            ))
        }
    };
    Ok(Request {
        body: Bytes::from(json!({ "requests": requests }).to_string()),
        path: format!("/v1beta/models/{model}:batchEmbedContents"),
        reply: Reply::OpenAi { base64 },
    })
}

/// A Gemini `:embedContent` or `:batchEmbedContents` request for an OpenAI provider.
pub fn gemini_to_openai(op: Op, body: &[u8], model: &str) -> Result<Request, TranslateError> {
    let v = parse(body)?;
    let batch = op == Op::BatchEmbedContents;
    let one: Vec<&Value> = if batch {
        match v["requests"].as_array() {
            Some(r) if !r.is_empty() => r.iter().collect(),
            _ => {
                return Err(TranslateError::param(
                    "'requests' must be a non-empty array",
                    "requests",
                ))
            }
        }
    } else {
        vec![&v]
    };
    let mut texts = Vec::with_capacity(one.len());
    let mut dimensions = None;
    for r in one {
        let parts = r["content"]["parts"].as_array();
        let text: String = parts
            .into_iter()
            .flatten()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n");
        if text.is_empty() {
            return Err(TranslateError::param(
                "each content to embed needs text parts",
                "content",
            ));
        }
        texts.push(text);
        if let Some(d) = r["outputDimensionality"].as_u64() {
            dimensions = Some(d);
        }
    }
    let mut out = json!({"model": model, "input": texts, "encoding_format": "float"});
    if let Some(d) = dimensions {
        out["dimensions"] = d.into();
    }
    Ok(Request {
        body: Bytes::from(out.to_string()),
        path: "/v1/embeddings".to_string(),
        reply: Reply::Gemini { batch },
    })
}

/// Holds a successful answer and rewrites it at the end.
pub struct Translator {
    reply: Reply,
    public_model: String,
    body: BytesMut,
    overflow: bool,
    usage: Option<Usage>,
}

impl Translator {
    pub fn new(reply: Reply, public_model: &str) -> Self {
        Translator {
            reply,
            public_model: public_model.to_string(),
            body: BytesMut::new(),
            overflow: false,
            usage: None,
        }
    }

    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    pub fn feed(&mut self, chunk: Option<Bytes>, end: bool) -> Option<Bytes> {
        if let Some(c) = chunk {
            if self.body.len().saturating_add(c.len()) > MAX_ANSWER {
                self.overflow = true;
            } else if !self.overflow {
                self.body.extend_from_slice(&c);
            }
        }
        if !end {
            return None;
        }
        Some(match self.rewrite() {
            Ok(b) => b,
            Err(msg) => self.error(&msg),
        })
    }

    fn error(&self, msg: &str) -> Bytes {
        let status = 502;
        let body = match self.reply {
            Reply::OpenAi { .. } => {
                json!({"error": {"message": msg, "type": "server_error", "code": "upstream_error", "param": null}})
            }
            Reply::Gemini { .. } => {
                json!({"error": {"code": status, "message": msg, "status": "UNAVAILABLE"}})
            }
        };
        Bytes::from(body.to_string())
    }

    fn rewrite(&mut self) -> Result<Bytes, String> {
        if self.overflow {
            return Err(format!("the provider's embeddings were over {MAX_ANSWER} bytes; send fewer inputs per request"));
        }
        let v: Value = serde_json::from_slice(&self.body)
            .map_err(|e| format!("the provider's embeddings are not valid JSON: {e}"))?;
        match self.reply {
            Reply::OpenAi { base64 } => {
                let list = v["embeddings"]
                    .as_array()
                    .ok_or("the provider's answer has no 'embeddings'")?;
                let data: Vec<Value> = list
                    .iter()
                    .enumerate()
                    .map(|(i, e)| {
                        let values = e["values"].as_array().cloned().unwrap_or_default();
                        let embedding = if base64 {
                            let mut raw = Vec::with_capacity(values.len() * 4);
                            for x in &values {
                                raw.extend_from_slice(
                                    &(x.as_f64().unwrap_or(0.0) as f32).to_le_bytes(),
                                );
                            }
                            Value::String(base64::engine::general_purpose::STANDARD.encode(raw))
                        } else {
                            Value::Array(values)
                        };
                        json!({"object": "embedding", "index": i, "embedding": embedding})
                    })
                    .collect();
                // Gemini reports no token counts for embeddings.
                let out = json!({"object": "list", "data": data, "model": self.public_model,
                    "usage": {"prompt_tokens": 0, "total_tokens": 0}});
                Ok(Bytes::from(out.to_string()))
            }
            Reply::Gemini { batch } => {
                let mut data: Vec<&Value> = v["data"]
                    .as_array()
                    .ok_or("the provider's answer has no 'data'")?
                    .iter()
                    .collect();
                data.sort_by_key(|d| d["index"].as_u64().unwrap_or(0));
                let prompt = v["usage"]["prompt_tokens"].as_u64().unwrap_or(0);
                self.usage = Some(Usage {
                    prompt_tokens: prompt,
                    ..Usage::default()
                });
                let embeddings: Vec<Value> = data
                    .iter()
                    .map(|d| json!({"values": d["embedding"]}))
                    .collect();
                let out = if batch {
                    json!({ "embeddings": embeddings })
                } else {
                    json!({ "embedding": embeddings.into_iter().next().unwrap_or(json!({"values": []})) })
                };
                Ok(Bytes::from(out.to_string()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_requests_become_one_gemini_batch_and_back() {
        let r = openai_to_gemini(
            br#"{"model":"e","input":["a","b"],"dimensions":8}"#,
            "text-embedding-004",
        )
        .unwrap();
        assert_eq!(
            r.path,
            "/v1beta/models/text-embedding-004:batchEmbedContents"
        );
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["requests"][1]["content"]["parts"][0]["text"], "b");
        assert_eq!(v["requests"][0]["model"], "models/text-embedding-004");
        assert_eq!(v["requests"][0]["outputDimensionality"], 8);
        let mut t = Translator::new(r.reply, "e");
        let out = t
            .feed(
                Some(Bytes::from_static(
                    br#"{"embeddings":[{"values":[0.5,1]},{"values":[2,-1]}]}"#,
                )),
                true,
            )
            .unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["object"], "list");
        assert_eq!(v["model"], "e");
        assert_eq!(v["data"][1]["index"], 1);
        assert_eq!(v["data"][1]["embedding"], json!([2, -1]));
    }

    #[test]
    fn base64_is_little_endian_float32() {
        let r = openai_to_gemini(
            br#"{"model":"e","input":"a","encoding_format":"base64"}"#,
            "m",
        )
        .unwrap();
        let mut t = Translator::new(r.reply, "e");
        let out = t
            .feed(
                Some(Bytes::from_static(
                    br#"{"embeddings":[{"values":[1.0,-2.0]}]}"#,
                )),
                true,
            )
            .unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        let raw = base64::engine::general_purpose::STANDARD
            .decode(v["data"][0]["embedding"].as_str().unwrap())
            .unwrap();
        assert_eq!(
            raw,
            [1.0f32.to_le_bytes(), (-2.0f32).to_le_bytes()].concat()
        );
        assert!(openai_to_gemini(br#"{"model":"e","input":[[1,2]]}"#, "m").is_err());
        assert!(openai_to_gemini(
            br#"{"model":"e","input":"a","encoding_format":"int8"}"#,
            "m"
        )
        .is_err());
    }

    #[test]
    fn gemini_requests_become_openai_ones_and_back() {
        let r = gemini_to_openai(
            Op::BatchEmbedContents,
            br#"{"requests":[{"model":"models/g","content":{"parts":[{"text":"x"}]}},{"model":"models/g","content":{"parts":[{"text":"y"}]},"outputDimensionality":4}]}"#,
            "text-embedding-3-small",
        )
        .unwrap();
        assert_eq!(r.path, "/v1/embeddings");
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["input"], json!(["x", "y"]));
        assert_eq!(v["dimensions"], 4);
        let mut t = Translator::new(r.reply, "g");
        let out = t
            .feed(Some(Bytes::from_static(br#"{"object":"list","data":[{"object":"embedding","index":1,"embedding":[3]},{"object":"embedding","index":0,"embedding":[1]}],"model":"x","usage":{"prompt_tokens":2,"total_tokens":2}}"#)), true)
            .unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["embeddings"], json!([{"values": [1]}, {"values": [3]}]));
        assert_eq!(t.usage().unwrap().prompt_tokens, 2);
        let single = gemini_to_openai(
            Op::EmbedContent,
            br#"{"content":{"parts":[{"text":"x"}]}}"#,
            "m",
        )
        .unwrap();
        let mut t = Translator::new(single.reply, "g");
        let out = t
            .feed(
                Some(Bytes::from_static(
                    br#"{"data":[{"index":0,"embedding":[1,2]}],"usage":{"prompt_tokens":1}}"#,
                )),
                true,
            )
            .unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&out).unwrap(),
            json!({"embedding": {"values": [1, 2]}})
        );
    }
}
