//! Gemini streamGenerateContent chunks <-> internal stream events.

use serde_json::{json, Value};

use super::request::parse_args;
use super::response::{decode_parts, finish_from, finish_str};
use super::wire::{client_signature, usage_from, usage_json};
use crate::translate::codec::{Envelope, StreamDecode, StreamEncode, Tally};
use crate::translate::model::*;

/// Gemini stream chunks (each a whole GenerateContentResponse) -> events. Gemini streams
/// have no end marker: the chunk with a finishReason is the last.
#[derive(Default)]
pub struct StreamDecoder {
    started: bool,
    calls: usize,
    finished: bool,
}

impl StreamDecode for StreamDecoder {
    fn feed(&mut self, data: &str, out: &mut Vec<StreamEvent>) {
        let Ok(v) = serde_json::from_str::<Value>(data.trim()) else {
            return;
        };
        if let Some(e) = v.get("error") {
            out.push(StreamEvent::Error {
                message: e["message"]
                    .as_str()
                    .unwrap_or("provider error")
                    .to_string(),
            });
            return;
        }
        if !self.started {
            self.started = true;
            out.push(StreamEvent::Start {
                id: v["responseId"].as_str().unwrap_or_default().to_string(),
            });
        }
        let c = &v["candidates"][0];
        for p in decode_parts(&c["content"]["parts"], &mut self.calls) {
            match p {
                Part::Text(t) => out.push(StreamEvent::TextDelta(t)),
                // decode_parts gives a function call's signature as an empty thought.
                Part::Thinking {
                    text,
                    signature: Some(s),
                } if text.is_empty() => out.push(StreamEvent::CallSignature(s)),
                Part::Thinking { text, .. } if text.is_empty() => {}
                Part::Thinking { text, signature } => {
                    out.push(StreamEvent::ThinkingDelta(text));
                    if let Some(s) = signature {
                        out.push(StreamEvent::ThinkingSignature(s));
                    }
                }
                Part::ToolCall {
                    id,
                    name,
                    arguments,
                } => {
                    let index = self.calls - 1;
                    out.push(StreamEvent::ToolCallStart { index, id, name });
                    out.push(StreamEvent::ToolCallArgs {
                        index,
                        fragment: arguments,
                    });
                }
                _ => {}
            }
        }
        if let Some(u) = usage_from(&v["usageMetadata"]) {
            out.push(StreamEvent::Usage(u));
        }
        if let Some(f) = c["finishReason"].as_str() {
            let f = finish_from(f);
            let f = if self.calls > 0 && f == FinishReason::Stop {
                FinishReason::ToolCalls
            } else {
                f
            };
            out.push(StreamEvent::Finish(f));
            self.finished = true;
        }
    }

    /// At the end of the provider's stream: it ended properly if a finish was seen.
    fn end(&mut self, out: &mut Vec<StreamEvent>) {
        if self.finished {
            out.push(StreamEvent::Done);
        }
    }
}

/// Events -> Gemini stream chunks: SSE (`alt=sse`) or the JSON array Gemini sends
/// without it.
pub struct StreamEncoder {
    model: String,
    id: String,
    sse: bool,
    chunks: usize,
    /// Tool calls are sent whole, as Gemini does: arguments gather until the call ends.
    pending_call: Option<(String, String, String)>,
    tally: Tally,
}

impl StreamEncoder {
    pub fn new(env: Envelope) -> Self {
        StreamEncoder {
            model: env.model,
            id: String::new(),
            sse: env.sse,
            chunks: 0,
            pending_call: None,
            tally: Tally::default(),
        }
    }

    fn chunk(&mut self, parts: Vec<Value>, finish: Option<FinishReason>, out: &mut Vec<u8>) {
        let mut c = json!({"content": {"role": "model", "parts": parts}, "index": 0});
        if let Some(f) = finish {
            c["finishReason"] = finish_str(f).into();
        }
        let mut v = json!({"candidates": [c], "modelVersion": self.model, "responseId": self.id});
        if finish.is_some() {
            if let Some(u) = &self.tally.usage {
                v["usageMetadata"] = usage_json(u);
            }
        }
        self.write(&v, out);
    }

    fn write(&mut self, v: &Value, out: &mut Vec<u8>) {
        if self.sse {
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(v.to_string().as_bytes());
            out.extend_from_slice(b"\r\n\r\n");
        } else {
            out.extend_from_slice(if self.chunks == 0 { b"[" } else { b",\r\n" });
            out.extend_from_slice(v.to_string().as_bytes());
        }
        self.chunks += 1;
    }

    fn flush_call(&mut self, out: &mut Vec<u8>) {
        if let Some((id, name, args)) = self.pending_call.take() {
            let part = json!({"functionCall": {"id": id, "name": name, "args": parse_args(&args)}});
            self.chunk(vec![part], None, out);
        }
    }
}

impl StreamEncode for StreamEncoder {
    fn content_type(&self) -> &'static str {
        if self.sse {
            "text/event-stream"
        } else {
            "application/json"
        }
    }

    fn tally(&self) -> &Tally {
        &self.tally
    }

    fn encode(&mut self, ev: &StreamEvent, out: &mut Vec<u8>) {
        if self.tally.done {
            return;
        }
        if !matches!(ev, StreamEvent::ToolCallArgs { .. }) {
            self.flush_call(out);
        }
        match ev {
            StreamEvent::Start { id } => self.id = id.clone(),
            StreamEvent::TextDelta(t) => self.chunk(vec![json!({"text": t})], None, out),
            StreamEvent::ThinkingDelta(t) => {
                self.chunk(vec![json!({"text": t, "thought": true})], None, out)
            }
            // The thinking's signature as a part of its own, merged back on replay.
            StreamEvent::ThinkingSignature(sig) if !sig.value.is_empty() => self.chunk(
                vec![
                    json!({"text": "", "thought": true, "thoughtSignature": client_signature(sig)}),
                ],
                None,
                out,
            ),
            StreamEvent::ThinkingSignature(_) | StreamEvent::CallSignature(_) => {}
            StreamEvent::ToolCallStart { id, name, .. } => {
                self.pending_call = Some((id.clone(), name.clone(), String::new()))
            }
            StreamEvent::ToolCallArgs { fragment, .. } => {
                if let Some((_, _, args)) = self.pending_call.as_mut() {
                    args.push_str(fragment);
                }
            }
            StreamEvent::Finish(f) => self.tally.finish = Some(*f),
            StreamEvent::Usage(u) => self.tally.usage = Some(*u),
            StreamEvent::Error { message } => {
                let e = json!({"error": {"code": 502, "message": message, "status": "INTERNAL"}});
                self.write(&e, out);
                if !self.sse {
                    out.extend_from_slice(b"]");
                }
                self.tally.done = true;
            }
            StreamEvent::Done => self.finish(out),
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        if self.tally.done {
            return;
        }
        self.flush_call(out);
        let f = self.tally.finish.unwrap_or(FinishReason::Stop);
        self.chunk(vec![], Some(f), out);
        if !self.sse {
            out.extend_from_slice(b"]");
        }
        self.tally.done = true;
    }
}
