//! Internal stream events -> OpenAI Responses event streams.

use serde::Serialize;
use serde_json::{json, Value};

use super::response::{
    message_item, reasoning_item, response_id, response_object, status_of, Head,
};
use super::ClientState;
use crate::translate::codec::{self, Envelope, StreamEncode, Tally};
use crate::translate::model::*;

/// An output item being streamed.
enum OpenItem {
    Message {
        index: usize,
        id: String,
        text: String,
    },
    Reasoning {
        index: usize,
        id: String,
        text: String,
        signature: Option<Signature>,
        /// A summary part was announced (`reasoning_summary_part.added`): it gets its
        /// `.done` events even if no text came.
        summary_part: bool,
    },
}

/// A tool call being streamed; calls stay open until the response ends, as a provider may
/// send their argument fragments interleaved.
struct OpenCall {
    /// The provider's call index.
    call: usize,
    index: usize,
    call_id: String,
    name: String,
    arguments: String,
    freeform: bool,
}

/// Events -> Responses SSE (`event: response.*` with `type` and `sequence_number`).
pub struct StreamEncoder {
    id: String,
    model: String,
    created: u64,
    client: ClientState,
    seq: u64,
    started: bool,
    /// Completed output items, for `response.completed`.
    output: Vec<Option<Value>>,
    open: Option<OpenItem>,
    calls: Vec<OpenCall>,
    tally: Tally,
}

impl StreamEncoder {
    pub fn new(env: Envelope, client: ClientState) -> Self {
        StreamEncoder {
            id: "resp_modelgate".to_string(),
            model: env.model,
            created: env.created,
            client,
            seq: 0,
            started: false,
            output: Vec::new(),
            open: None,
            calls: Vec::new(),
            tally: Tally::default(),
        }
    }
}

/// One per-token event (a text, reasoning or arguments delta), written from typed fields
/// straight into `out`: a `json!` tree per token (a map and a key string per field) was
/// most of a translated stream's cost. Fields in the same (sorted) order as `emit`'s.
fn emit_delta(out: &mut Vec<u8>, seq: &mut u64, kind: &'static str, d: Delta<'_>) {
    let event = DeltaEvent {
        content_index: d.content_index,
        delta: d.delta,
        item_id: d.item_id,
        logprobs: d.logprobs.then_some([]),
        output_index: d.output_index,
        sequence_number: *seq,
        summary_index: d.summary_index,
        kind,
    };
    *seq += 1;
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    // Serializing plain fields into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, &event);
    out.extend_from_slice(b"\n\n");
}

struct Delta<'a> {
    item_id: &'a str,
    output_index: usize,
    delta: &'a str,
    content_index: Option<u32>,
    summary_index: Option<u32>,
    logprobs: bool,
}

#[derive(Serialize)]
struct DeltaEvent<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    content_index: Option<u32>,
    delta: &'a str,
    item_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    logprobs: Option<[(); 0]>,
    output_index: usize,
    sequence_number: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    summary_index: Option<u32>,
    #[serde(rename = "type")]
    kind: &'static str,
}

impl StreamEncoder {
    fn emit(&mut self, out: &mut Vec<u8>, kind: &str, mut data: Value) {
        data["type"] = kind.into();
        data["sequence_number"] = self.seq.into();
        self.seq += 1;
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(kind.as_bytes());
        out.extend_from_slice(b"\ndata: ");
        // Serializing a JSON value into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, &data);
        out.extend_from_slice(b"\n\n");
    }

    /// An event carrying the whole response (`created`, `in_progress`, the end), written
    /// around the response serialized once: `json!({"response": r})` copied the whole
    /// tree for each event. Fields in the same (sorted) order as `emit`'s.
    fn emit_response(&mut self, out: &mut Vec<u8>, kind: &str, response: &[u8]) {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(kind.as_bytes());
        out.extend_from_slice(b"\ndata: {\"response\":");
        out.extend_from_slice(response);
        out.extend_from_slice(b",\"sequence_number\":");
        out.extend_from_slice(self.seq.to_string().as_bytes());
        out.extend_from_slice(b",\"type\":");
        let _ = serde_json::to_writer(&mut *out, kind);
        out.extend_from_slice(b"}\n\n");
        self.seq += 1;
    }

    fn response(&self, status: &str, incomplete: Value, error: Value) -> Value {
        let output = self.output.iter().flatten().cloned().collect();
        let usage = if status == "in_progress" {
            None
        } else {
            self.tally.usage.as_ref()
        };
        let env = Head {
            id: &self.id,
            model: &self.model,
            created: self.created,
            echo: &self.client.echo,
        };
        response_object(&env, status, output, usage, incomplete, error)
    }

    fn ensure_started(&mut self, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        let r = self.response("in_progress", Value::Null, Value::Null);
        let r = serde_json::to_vec(&r).unwrap_or_else(|_| b"{}".to_vec());
        self.emit_response(out, "response.created", &r);
        self.emit_response(out, "response.in_progress", &r);
    }

    fn new_index(&mut self) -> usize {
        self.output.push(None);
        self.output.len() - 1
    }

    fn item_id(&self, prefix: &str, index: usize) -> String {
        format!("{prefix}_{}_{index}", self.id.trim_start_matches("resp_"))
    }

    /// Starts a reasoning item; with a signature only, it carries no summary part.
    fn open_reasoning(&mut self, out: &mut Vec<u8>, signature: Option<Signature>) {
        self.close_open(out);
        let index = self.new_index();
        let id = self.item_id("rs", index);
        self.emit(
            out,
            "response.output_item.added",
            json!({"output_index": index, "item": reasoning_item(&id, "", None)}),
        );
        if signature.is_none() {
            self.emit(
                out,
                "response.reasoning_summary_part.added",
                json!({"item_id": id, "output_index": index, "summary_index": 0,
                       "part": {"type": "summary_text", "text": ""}}),
            );
        }
        self.open = Some(OpenItem::Reasoning {
            index,
            id,
            text: String::new(),
            summary_part: signature.is_none(),
            signature,
        });
    }

    fn close_open(&mut self, out: &mut Vec<u8>) {
        match self.open.take() {
            None => {}
            Some(OpenItem::Message { index, id, text }) => {
                // A message still open when the provider stopped for length is cut off.
                let status = match self.tally.finish {
                    Some(FinishReason::Length) | Some(FinishReason::ContentFilter) => "incomplete",
                    _ => "completed",
                };
                let part =
                    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []});
                self.emit(
                    out,
                    "response.output_text.done",
                    json!({"item_id": id, "output_index": index, "content_index": 0, "text": text, "logprobs": []}),
                );
                self.emit(
                    out,
                    "response.content_part.done",
                    json!({"item_id": id, "output_index": index, "content_index": 0, "part": part}),
                );
                let item = message_item(&id, &text, status);
                self.emit(
                    out,
                    "response.output_item.done",
                    json!({"output_index": index, "item": item}),
                );
                self.output[index] = Some(item);
            }
            Some(OpenItem::Reasoning {
                index,
                id,
                text,
                signature,
                summary_part,
            }) => {
                if summary_part {
                    let part = json!({"type": "summary_text", "text": text});
                    self.emit(
                        out,
                        "response.reasoning_summary_text.done",
                        json!({"item_id": id, "output_index": index, "summary_index": 0, "text": text}),
                    );
                    self.emit(
                        out,
                        "response.reasoning_summary_part.done",
                        json!({"item_id": id, "output_index": index, "summary_index": 0, "part": part}),
                    );
                }
                let item = reasoning_item(&id, &text, signature.as_ref());
                self.emit(
                    out,
                    "response.output_item.done",
                    json!({"output_index": index, "item": item}),
                );
                self.output[index] = Some(item);
            }
        }
    }

    fn close_calls(&mut self, out: &mut Vec<u8>) {
        // Calls the provider cut off at its token limit are incomplete.
        let status = match self.tally.finish {
            Some(FinishReason::Length) => "incomplete",
            _ => "completed",
        };
        for c in std::mem::take(&mut self.calls) {
            let item = self
                .client
                .call_item(&c.call_id, &c.name, &c.arguments, status);
            if c.freeform {
                self.emit(
                    out,
                    "response.custom_tool_call_input.done",
                    json!({"item_id": item["id"], "output_index": c.index, "input": item["input"]}),
                );
            } else {
                self.emit(
                    out,
                    "response.function_call_arguments.done",
                    json!({"item_id": item["id"], "output_index": c.index, "name": c.name, "arguments": c.arguments}),
                );
            }
            self.emit(
                out,
                "response.output_item.done",
                json!({"output_index": c.index, "item": item}),
            );
            self.output[c.index] = Some(item);
        }
    }

    /// Ends the stream with `error` and `response.failed` (Codex retries on the latter).
    fn fail(&mut self, out: &mut Vec<u8>, code: &str, message: &str) {
        self.emit(
            out,
            "error",
            json!({"code": code, "message": message, "param": null}),
        );
        let r = self.response(
            "failed",
            Value::Null,
            json!({"code": code, "message": message}),
        );
        let r = serde_json::to_vec(&r).unwrap_or_else(|_| b"{}".to_vec());
        self.emit_response(out, "response.failed", &r);
        self.tally.done = true;
    }
}

impl StreamEncode for StreamEncoder {
    fn set_client_state(&mut self, state: &codec::ClientState) {
        if let codec::ClientState::Responses(s) = state {
            self.client = (**s).clone();
        }
    }

    fn tally(&self) -> &Tally {
        &self.tally
    }

    // Long: one arm per neutral event, a table best read whole.
    // Long on purpose: one match over the neutral stream events.
    fn encode(&mut self, ev: &StreamEvent, out: &mut Vec<u8>) {
        if self.tally.done {
            return;
        }
        match ev {
            StreamEvent::Start { id } => {
                if !id.is_empty() && !self.started {
                    self.id = response_id(id);
                }
                self.ensure_started(out);
            }
            StreamEvent::TextDelta(t) => {
                self.ensure_started(out);
                if !matches!(self.open, Some(OpenItem::Message { .. })) {
                    self.close_open(out);
                    let index = self.new_index();
                    let id = self.item_id("msg", index);
                    self.emit(
                        out,
                        "response.output_item.added",
                        json!({"output_index": index, "item": message_item(&id, "", "in_progress")}),
                    );
                    self.emit(
                        out,
                        "response.content_part.added",
                        json!({"item_id": id, "output_index": index, "content_index": 0,
                               "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []}}),
                    );
                    self.open = Some(OpenItem::Message {
                        index,
                        id,
                        text: String::new(),
                    });
                }
                if let Some(OpenItem::Message { index, id, text }) = &mut self.open {
                    text.push_str(t);
                    let d = Delta {
                        item_id: id,
                        output_index: *index,
                        delta: t,
                        content_index: Some(0),
                        summary_index: None,
                        logprobs: true,
                    };
                    emit_delta(out, &mut self.seq, "response.output_text.delta", d);
                }
            }
            StreamEvent::ThinkingDelta(t) => {
                self.ensure_started(out);
                if !matches!(self.open, Some(OpenItem::Reasoning { .. })) {
                    self.open_reasoning(out, None);
                }
                if let Some(OpenItem::Reasoning {
                    index, id, text, ..
                }) = &mut self.open
                {
                    text.push_str(t);
                    let d = Delta {
                        item_id: id,
                        output_index: *index,
                        delta: t,
                        content_index: None,
                        summary_index: Some(0),
                        logprobs: false,
                    };
                    emit_delta(
                        out,
                        &mut self.seq,
                        "response.reasoning_summary_text.delta",
                        d,
                    );
                }
            }
            StreamEvent::ThinkingSignature(sig)
                if matches!(self.open, Some(OpenItem::Reasoning { .. })) =>
            {
                if let Some(OpenItem::Reasoning { signature, .. }) = &mut self.open {
                    *signature = Some(sig.clone());
                }
            }
            // A signature on its own (Gemini's, for the call that follows): a reasoning
            // item with nothing but encrypted_content, replayed by the client.
            StreamEvent::ThinkingSignature(sig) | StreamEvent::CallSignature(sig) => {
                self.ensure_started(out);
                self.open_reasoning(out, Some(sig.clone()));
                self.close_open(out);
            }
            StreamEvent::ToolCallStart { index, id, name } => {
                self.ensure_started(out);
                self.close_open(out);
                let out_index = self.new_index();
                let freeform = self.client.is_freeform(name);
                let item = self.client.call_item(id, name, "", "in_progress");
                self.emit(
                    out,
                    "response.output_item.added",
                    json!({"output_index": out_index, "item": item}),
                );
                self.calls.push(OpenCall {
                    call: *index,
                    index: out_index,
                    call_id: id.clone(),
                    name: name.clone(),
                    arguments: String::new(),
                    freeform,
                });
            }
            StreamEvent::ToolCallArgs { index, fragment } => {
                let Some(pos) = self.calls.iter().position(|c| c.call == *index) else {
                    return;
                };
                let c = &mut self.calls[pos];
                c.arguments.push_str(fragment);
                // A free-form call's text is known only once its JSON wrapper is complete.
                if !c.freeform {
                    let item_id = format!("fc_{}", c.call_id);
                    let d = Delta {
                        item_id: &item_id,
                        output_index: c.index,
                        delta: fragment,
                        content_index: None,
                        summary_index: None,
                        logprobs: false,
                    };
                    emit_delta(
                        out,
                        &mut self.seq,
                        "response.function_call_arguments.delta",
                        d,
                    );
                }
            }
            StreamEvent::Finish(f) => self.tally.finish = Some(*f),
            StreamEvent::Usage(u) => self.tally.usage = Some(*u),
            StreamEvent::Error { message } => {
                self.ensure_started(out);
                self.fail(out, "server_error", message);
            }
            StreamEvent::Done => self.finish(out),
        }
    }

    /// Closes every open item and sends `response.completed` (or `response.incomplete`).
    fn finish(&mut self, out: &mut Vec<u8>) {
        if self.tally.done {
            return;
        }
        self.ensure_started(out);
        self.close_open(out);
        self.close_calls(out);
        let (status, incomplete) = status_of(self.tally.finish);
        let r = self.response(status, incomplete, Value::Null);
        let kind = if status == "completed" {
            "response.completed"
        } else {
            "response.incomplete"
        };
        let r = serde_json::to_vec(&r).unwrap_or_else(|_| b"{}".to_vec());
        self.emit_response(out, kind, &r);
        self.tally.done = true;
    }
}

/// The end of a passed-through Responses stream the provider cut: `error`, then
/// `response.failed` carrying the response the stream announced (`announced`, from its
/// `response.created`), numbered on from the provider's last `sequence_number`. The
/// code is the spec's `server_error` (a provider failure, whatever the gateway calls it).
pub fn failure_after(announced: Option<&Value>, last_seq: Option<u64>, message: &str) -> Vec<u8> {
    let seq = last_seq.map_or(0, |s| s.saturating_add(1));
    let error = json!({"type": "error", "code": "server_error", "message": message,
        "param": null, "sequence_number": seq});
    let mut response = match announced {
        Some(r) if r.is_object() => r.clone(),
        _ => {
            let env = Envelope {
                created: 0,
                ..Envelope::new("")
            };
            StreamEncoder::new(env, ClientState::default()).response(
                "failed",
                Value::Null,
                Value::Null,
            )
        }
    };
    response["status"] = "failed".into();
    response["error"] = json!({"code": "server_error", "message": message});
    let failed = json!({"type": "response.failed", "response": response,
        "sequence_number": seq.saturating_add(1)});
    format!("event: error\ndata: {error}\n\nevent: response.failed\ndata: {failed}\n\n")
        .into_bytes()
}
