//! OpenAI `chat.completion.chunk` streams <-> internal stream events.

use serde::Serialize;
use serde_json::{json, Value};

use super::response::{chat_id, finish_from, finish_str};
use super::wire::{usage_from, usage_json};
use super::OpenAi;
use crate::errors::{ErrorCode, GatewayError};
use crate::translate::codec::{Envelope, StreamDecode, StreamEncode, Tally, Wire};
use crate::translate::model::*;

/// Provider chunks (`data: {...}` payloads) -> events.
#[derive(Default)]
pub struct StreamDecoder {
    started: bool,
    /// OpenAI tool-call index -> whether its start was emitted.
    tools_seen: Vec<usize>,
}

impl StreamDecode for StreamDecoder {
    /// `data` is one event's data payload.
    fn feed(&mut self, data: &str, out: &mut Vec<StreamEvent>) {
        let data = data.trim();
        if data == "[DONE]" {
            out.push(StreamEvent::Done);
            return;
        }
        let Ok(v) = serde_json::from_str::<Value>(data) else {
            return;
        };
        if let Some(e) = v.get("error") {
            let message = e["message"]
                .as_str()
                .map(String::from)
                .unwrap_or_else(|| e.to_string());
            out.push(StreamEvent::Error { message });
            return;
        }
        if !self.started {
            self.started = true;
            out.push(StreamEvent::Start {
                id: v["id"].as_str().unwrap_or_default().to_string(),
            });
        }
        if let Some(choice) = v["choices"].get(0) {
            let d = &choice["delta"];
            if let Some(r) = d["reasoning_content"]
                .as_str()
                .or_else(|| d["reasoning"].as_str())
            {
                if !r.is_empty() {
                    out.push(StreamEvent::ThinkingDelta(r.to_string()));
                }
            }
            if let Some(t) = d["content"].as_str() {
                if !t.is_empty() {
                    out.push(StreamEvent::TextDelta(t.to_string()));
                }
            }
            for tc in d["tool_calls"].as_array().into_iter().flatten() {
                let index = tc["index"].as_u64().unwrap_or(0) as usize;
                if !self.tools_seen.contains(&index) {
                    self.tools_seen.push(index);
                    out.push(StreamEvent::ToolCallStart {
                        index,
                        id: tc["id"]
                            .as_str()
                            .map(String::from)
                            .unwrap_or_else(|| format!("call_{index}")),
                        name: tc["function"]["name"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                    });
                }
                if let Some(a) = tc["function"]["arguments"].as_str() {
                    if !a.is_empty() {
                        out.push(StreamEvent::ToolCallArgs {
                            index,
                            fragment: a.to_string(),
                        });
                    }
                }
            }
            if let Some(f) = choice["finish_reason"].as_str() {
                out.push(StreamEvent::Finish(finish_from(f)));
            }
        }
        // Some servers send usage on every chunk; only the numbers are taken, never a finish.
        if let Some(u) = usage_from(&v["usage"]) {
            out.push(StreamEvent::Usage(u));
        }
    }
}

/// Events -> OpenAI `chat.completion.chunk` SSE for the client.
pub struct StreamEncoder {
    id: String,
    env: Envelope,
    started: bool,
    tally: Tally,
}

impl StreamEncoder {
    pub fn new(env: Envelope) -> Self {
        StreamEncoder {
            id: "chatcmpl-modelgate".to_string(),
            env,
            started: false,
            tally: Tally::default(),
        }
    }

    /// One `data:` chunk. Written from typed fields straight into `out`: a `json!` tree
    /// per chunk (a map and a key string per field) was most of a translated stream's
    /// cost. Fields in the same (sorted) order as before.
    fn chunk<D: Serialize>(&self, delta: D, finish: Option<FinishReason>, out: &mut Vec<u8>) {
        let c = Chunk {
            choices: [ChunkChoice {
                delta,
                finish_reason: finish.map(finish_str),
                index: 0,
                logprobs: (),
            }],
            created: self.env.created,
            id: &self.id,
            model: &self.env.model,
            object: "chat.completion.chunk",
            // With include_usage, every chunk but the last has `usage: null` (as OpenAI sends).
            usage: self.env.include_usage.then_some(()),
        };
        out.extend_from_slice(b"data: ");
        // Serializing plain fields into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, &c);
        out.extend_from_slice(b"\n\n");
    }

    fn ensure_started(&mut self, out: &mut Vec<u8>) {
        if !self.started {
            self.started = true;
            self.chunk(
                RoleDelta {
                    content: "",
                    role: "assistant",
                },
                None,
                out,
            );
        }
    }
}

#[derive(Serialize)]
struct Chunk<'a, D> {
    choices: [ChunkChoice<D>; 1],
    created: u64,
    id: &'a str,
    model: &'a str,
    object: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<()>,
}

#[derive(Serialize)]
struct ChunkChoice<D> {
    delta: D,
    finish_reason: Option<&'static str>,
    index: u32,
    logprobs: (),
}

#[derive(Serialize)]
struct RoleDelta {
    content: &'static str,
    role: &'static str,
}

#[derive(Serialize)]
struct ContentDelta<'a> {
    content: &'a str,
}

#[derive(Serialize)]
struct ReasoningDelta<'a> {
    reasoning_content: &'a str,
}

#[derive(Serialize)]
struct EmptyDelta {}

#[derive(Serialize)]
struct ToolDelta<'a> {
    tool_calls: [ToolCallDelta<'a>; 1],
}

#[derive(Serialize)]
struct ToolCallDelta<'a> {
    function: ToolFunction<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    index: usize,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
}

#[derive(Serialize)]
struct ToolFunction<'a> {
    arguments: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
}

impl StreamEncode for StreamEncoder {
    fn tally(&self) -> &Tally {
        &self.tally
    }

    fn encode(&mut self, ev: &StreamEvent, out: &mut Vec<u8>) {
        if self.tally.done {
            return;
        }
        match ev {
            StreamEvent::Start { id } => {
                if !id.is_empty() {
                    self.id = chat_id(id);
                }
                self.ensure_started(out);
            }
            StreamEvent::TextDelta(t) => {
                self.ensure_started(out);
                self.chunk(ContentDelta { content: t }, None, out);
            }
            StreamEvent::ThinkingDelta(t) => {
                self.ensure_started(out);
                self.chunk(
                    ReasoningDelta {
                        reasoning_content: t,
                    },
                    None,
                    out,
                );
            }
            StreamEvent::ThinkingSignature(_) | StreamEvent::CallSignature(_) => {}
            StreamEvent::ToolCallStart { index, id, name } => {
                self.ensure_started(out);
                let call = ToolCallDelta {
                    function: ToolFunction {
                        arguments: "",
                        name: Some(name),
                    },
                    id: Some(id),
                    index: *index,
                    kind: Some("function"),
                };
                self.chunk(ToolDelta { tool_calls: [call] }, None, out);
            }
            StreamEvent::ToolCallArgs { index, fragment } => {
                let call = ToolCallDelta {
                    function: ToolFunction {
                        arguments: fragment,
                        name: None,
                    },
                    id: None,
                    index: *index,
                    kind: None,
                };
                self.chunk(ToolDelta { tool_calls: [call] }, None, out);
            }
            StreamEvent::Finish(f) => {
                if self.tally.finish.is_none() {
                    self.ensure_started(out);
                    self.tally.finish = Some(*f);
                    self.chunk(EmptyDelta {}, Some(*f), out);
                }
            }
            StreamEvent::Usage(u) => self.tally.usage = Some(*u),
            StreamEvent::Error { message } => {
                // The same event the proxy ends a broken passthrough stream with.
                let err = GatewayError::new(ErrorCode::UpstreamError, message.as_str());
                out.extend_from_slice(&OpenAi.stream_error(&err, false));
                self.tally.done = true;
            }
            StreamEvent::Done => self.finish(out),
        }
    }

    /// Closes the stream: a finish chunk if none came, the usage chunk if asked for, `[DONE]`.
    fn finish(&mut self, out: &mut Vec<u8>) {
        if self.tally.done {
            return;
        }
        if self.tally.finish.is_none() {
            self.encode(&StreamEvent::Finish(FinishReason::Stop), out);
        }
        if self.env.include_usage {
            if let Some(u) = &self.tally.usage {
                let c = json!({"id": self.id, "object": "chat.completion.chunk", "created": self.env.created,
                               "model": self.env.model, "choices": [], "usage": usage_json(u)});
                out.extend_from_slice(format!("data: {c}\n\n").as_bytes());
            }
        }
        out.extend_from_slice(b"data: [DONE]\n\n");
        self.tally.done = true;
    }
}
