//! Anthropic Messages event streams <-> internal stream events.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::{json, Value};

use super::response::{finish_from, finish_str, message_id};
use super::wire::{delta_usage_json, usage_json, WireUsage};
use crate::translate::codec::{Envelope, StreamDecode, StreamEncode, Tally};
use crate::translate::model::*;

/// Anthropic SSE events (`event:` + `data:`) -> events.
#[derive(Default)]
pub struct StreamDecoder {
    /// content block index -> tool call index
    tool_blocks: Vec<(u64, usize)>,
    tools: usize,
    usage: Usage,
    has_usage: bool,
}

impl StreamDecode for StreamDecoder {
    // Long: one arm per Anthropic event type, a table best read whole.
    // Long on purpose: one match over Anthropic's stream event types.
    fn feed(&mut self, data: &str, out: &mut Vec<StreamEvent>) {
        let data = data.trim();
        // Most of a stream is content_block_delta events: read into typed fields that
        // borrow from the data, without building a JSON tree.
        if data.contains("\"content_block_delta\"") {
            if let Ok(e) = serde_json::from_str::<BlockDelta>(data) {
                if e.kind == "content_block_delta" {
                    self.block_delta(e.index, e.delta, out);
                    return;
                }
            }
        }
        let Ok(v) = serde_json::from_str::<Value>(data) else {
            return;
        };
        match v["type"].as_str() {
            Some("message_start") => {
                let m = &v["message"];
                out.push(StreamEvent::Start {
                    id: m["id"].as_str().unwrap_or_default().to_string(),
                });
                if let Some(u) = WireUsage::read(&m["usage"]) {
                    self.usage = u.usage();
                    self.has_usage = true;
                }
            }
            Some("content_block_start") => {
                let b = &v["content_block"];
                if b["type"] == "tool_use" {
                    let index = self.tools;
                    self.tools += 1;
                    self.tool_blocks
                        .push((v["index"].as_u64().unwrap_or(0), index));
                    out.push(StreamEvent::ToolCallStart {
                        index,
                        id: b["id"].as_str().unwrap_or_default().to_string(),
                        name: b["name"].as_str().unwrap_or_default().to_string(),
                    });
                } else if let Some(t) = b["text"].as_str().filter(|t| !t.is_empty()) {
                    out.push(StreamEvent::TextDelta(t.to_string()));
                }
            }
            Some("content_block_delta") => {
                let delta = DeltaBody::deserialize(&v["delta"]).ok();
                self.block_delta(v["index"].as_u64().unwrap_or(0), delta, out);
            }
            Some("message_delta") => {
                if let Some(s) = v["delta"]["stop_reason"].as_str() {
                    out.push(StreamEvent::Finish(finish_from(s)));
                }
                // message_delta's usage is cumulative, often output tokens only.
                if let Some(u) = WireUsage::read(&v["usage"]) {
                    if let Some(o) = u.output {
                        self.usage.completion_tokens = o;
                        self.has_usage = true;
                    }
                    if u.input.is_some() {
                        self.usage.prompt_tokens = u.prompt_tokens();
                        self.usage.cached_tokens = u.cache_read.or(self.usage.cached_tokens);
                        self.usage.cache_write_tokens =
                            u.cache_creation.or(self.usage.cache_write_tokens);
                    }
                }
                if self.has_usage {
                    out.push(StreamEvent::Usage(self.usage));
                }
            }
            Some("message_stop") => out.push(StreamEvent::Done),
            Some("error") => out.push(StreamEvent::Error {
                message: v["error"]["message"]
                    .as_str()
                    .unwrap_or("provider error")
                    .to_string(),
            }),
            _ => {}
        }
    }
}

impl StreamDecoder {
    fn block_delta(
        &mut self,
        block: u64,
        delta: Option<DeltaBody<'_>>,
        out: &mut Vec<StreamEvent>,
    ) {
        let Some(d) = delta else { return };
        let text = |t: Option<Cow<'_, str>>| t.map(Cow::into_owned).unwrap_or_default();
        match d.kind.as_ref() {
            "text_delta" => out.push(StreamEvent::TextDelta(text(d.text))),
            "thinking_delta" => out.push(StreamEvent::ThinkingDelta(text(d.thinking))),
            "signature_delta" => out.push(StreamEvent::ThinkingSignature(Signature::from_tagged(
                d.signature.as_deref().unwrap_or_default(),
            ))),
            "input_json_delta" => {
                if let Some((_, index)) = self.tool_blocks.iter().find(|(b, _)| *b == block) {
                    let fragment = text(d.partial_json);
                    if !fragment.is_empty() {
                        out.push(StreamEvent::ToolCallArgs {
                            index: *index,
                            fragment,
                        });
                    }
                }
            }
            _ => {}
        }
    }
}

/// A `content_block_delta` event, its strings borrowed from the data when unescaped.
#[derive(Deserialize)]
struct BlockDelta<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default)]
    index: u64,
    #[serde(borrow)]
    delta: Option<DeltaBody<'a>>,
}

#[derive(Deserialize)]
struct DeltaBody<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    thinking: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    partial_json: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    signature: Option<Cow<'a, str>>,
}

#[derive(PartialEq)]
enum Block {
    None,
    Text,
    Thinking,
    Tool(usize),
}

/// Events -> the Anthropic event sequence: message_start, content blocks (start, deltas,
/// stop), message_delta, message_stop — always in that order, whatever the provider sent.
pub struct StreamEncoder {
    model: String,
    id: String,
    started: bool,
    block: Block,
    next_block: u64,
    signature: Option<Signature>,
    tally: Tally,
}

fn event(out: &mut Vec<u8>, name: &str, data: Value) {
    out.extend_from_slice(format!("event: {name}\ndata: {data}\n\n").as_bytes());
}

impl StreamEncoder {
    pub fn new(env: Envelope) -> Self {
        StreamEncoder {
            model: env.model,
            id: "msg_modelgate".to_string(),
            started: false,
            block: Block::None,
            next_block: 0,
            signature: None,
            tally: Tally::default(),
        }
    }

    fn ensure_started(&mut self, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        event(
            out,
            "message_start",
            json!({"type": "message_start", "message": {
            "id": self.id, "type": "message", "role": "assistant", "model": self.model, "content": [],
            "stop_reason": null, "stop_sequence": null, "stop_details": null,
            "container": null, "diagnostics": null,
            "usage": usage_json(&Usage {
                prompt_tokens: self.tally.usage.map(|u| u.prompt_tokens).unwrap_or(0),
                ..Usage::default()
            })}}),
        );
    }

    fn close_block(&mut self, out: &mut Vec<u8>) {
        if self.block == Block::None {
            return;
        }
        if self.block == Block::Thinking {
            let sig = self.signature.take();
            let sig = sig.as_ref().map(|s| s.tagged()).unwrap_or_default();
            event(
                out,
                "content_block_delta",
                json!({"type": "content_block_delta", "index": self.next_block - 1,
                "delta": {"type": "signature_delta", "signature": sig}}),
            );
        }
        event(
            out,
            "content_block_stop",
            json!({"type": "content_block_stop", "index": self.next_block - 1}),
        );
        self.block = Block::None;
    }

    fn open_block(&mut self, kind: Block, start: Value, out: &mut Vec<u8>) {
        self.close_block(out);
        event(
            out,
            "content_block_start",
            json!({"type": "content_block_start", "index": self.next_block, "content_block": start}),
        );
        self.next_block += 1;
        self.block = kind;
    }

    fn delta(&self, delta: Value, out: &mut Vec<u8>) {
        event(
            out,
            "content_block_delta",
            json!({"type": "content_block_delta", "index": self.next_block - 1, "delta": delta}),
        );
    }
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
                    self.id = message_id(id);
                }
                self.ensure_started(out);
            }
            StreamEvent::TextDelta(t) => {
                self.ensure_started(out);
                if self.block != Block::Text {
                    self.open_block(
                        Block::Text,
                        json!({"type": "text", "text": "", "citations": null}),
                        out,
                    );
                }
                self.delta(json!({"type": "text_delta", "text": t}), out);
            }
            StreamEvent::ThinkingDelta(t) => {
                self.ensure_started(out);
                if self.block != Block::Thinking {
                    self.open_block(
                        Block::Thinking,
                        json!({"type": "thinking", "thinking": "", "signature": ""}),
                        out,
                    );
                }
                self.delta(json!({"type": "thinking_delta", "thinking": t}), out);
            }
            StreamEvent::ThinkingSignature(s) if self.block == Block::Thinking => {
                self.signature = Some(s.clone())
            }
            // A signature with no thinking open (or a call's own): an empty thinking block
            // of its own, which the client replays with the call.
            StreamEvent::ThinkingSignature(s) | StreamEvent::CallSignature(s) => {
                self.ensure_started(out);
                self.open_block(
                    Block::Thinking,
                    json!({"type": "thinking", "thinking": "", "signature": ""}),
                    out,
                );
                self.signature = Some(s.clone());
                self.close_block(out);
            }
            StreamEvent::ToolCallStart { index, id, name } => {
                self.ensure_started(out);
                self.open_block(
                    Block::Tool(*index),
                    json!({"type": "tool_use", "id": id, "name": name, "input": {}, "caller": {"type": "direct"}}),
                    out,
                );
            }
            StreamEvent::ToolCallArgs { index, fragment } => {
                if self.block == Block::Tool(*index) {
                    self.delta(
                        json!({"type": "input_json_delta", "partial_json": fragment}),
                        out,
                    );
                }
            }
            StreamEvent::Finish(f) => self.tally.finish = Some(*f),
            StreamEvent::Usage(u) => self.tally.usage = Some(*u),
            StreamEvent::Error { message } => {
                self.ensure_started(out);
                event(
                    out,
                    "error",
                    json!({"type": "error", "error": {"type": "api_error", "message": message}, "request_id": null}),
                );
                self.tally.done = true;
            }
            StreamEvent::Done => self.finish(out),
        }
    }

    /// Closes the message: open block, message_delta with stop reason and usage, message_stop.
    fn finish(&mut self, out: &mut Vec<u8>) {
        if self.tally.done {
            return;
        }
        self.ensure_started(out);
        self.close_block(out);
        let u = self.tally.usage.unwrap_or_default();
        event(
            out,
            "message_delta",
            json!({"type": "message_delta",
            "delta": {"stop_reason": finish_str(self.tally.finish.unwrap_or(FinishReason::Stop)),
                      "stop_sequence": null, "stop_details": null, "container": null},
            "usage": delta_usage_json(&u)}),
        );
        event(out, "message_stop", json!({"type": "message_stop"}));
        self.tally.done = true;
    }
}
