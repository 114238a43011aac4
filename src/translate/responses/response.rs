//! The internal model -> OpenAI Responses response objects.

use serde_json::{json, Map, Value};

use super::wire::usage_json;
use super::ClientState;
use crate::translate::codec::Envelope;
use crate::translate::model::*;

/// A Responses id from a provider id: `resp_...`.
pub(super) fn response_id(id: &str) -> String {
    let clean: String = id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect();
    if clean.starts_with("resp_") {
        clean
    } else if clean.is_empty() {
        "resp_modelgate".to_string()
    } else {
        format!("resp_{clean}")
    }
}

/// `status` and `incomplete_details` for a finish reason.
pub(super) fn status_of(finish: Option<FinishReason>) -> (&'static str, Value) {
    match finish {
        Some(FinishReason::Length) => ("incomplete", json!({"reason": "max_output_tokens"})),
        Some(FinishReason::ContentFilter) => ("incomplete", json!({"reason": "content_filter"})),
        _ => ("completed", Value::Null),
    }
}

/// What identifies a response: its id, the public model name and the creation time, and
/// the request settings it repeats.
pub(super) struct Head<'a> {
    pub id: &'a str,
    pub model: &'a str,
    pub created: u64,
    pub echo: &'a Map<String, Value>,
}

/// The response object around `output`, in the shape of a Responses API response.
pub(super) fn response_object(
    env: &Head,
    status: &str,
    output: Vec<Value>,
    usage: Option<&Usage>,
    incomplete: Value,
    error: Value,
) -> Value {
    let mut v = json!({
        "id": env.id,
        "object": "response",
        "created_at": env.created,
        "status": status,
        "error": error,
        "incomplete_details": incomplete,
        "instructions": null,
        "max_output_tokens": null,
        "model": env.model,
        "output": output,
        "parallel_tool_calls": true,
        "previous_response_id": null,
        "reasoning": {"effort": null, "summary": null},
        "store": false,
        "temperature": null,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": null,
        "truncation": "disabled",
        "metadata": {},
    });
    if let Some(o) = v.as_object_mut() {
        // The schema's `usage` is not nullable and `user` is deprecated: absent until known.
        if let Some(u) = usage {
            o.insert("usage".into(), usage_json(u));
        }
        for (k, val) in env.echo {
            // Objects (`text`, `reasoning`) merge over the defaults, so `text.format` stays
            // when the client only set `text.verbosity`.
            match (o.get_mut(k).and_then(Value::as_object_mut), val.as_object()) {
                (Some(default), Some(given)) => {
                    for (gk, gv) in given {
                        default.insert(gk.clone(), gv.clone());
                    }
                }
                _ => {
                    o.insert(k.clone(), val.clone());
                }
            }
        }
    }
    v
}

pub(super) fn message_item(id: &str, text: &str, status: &str) -> Value {
    let content = if status == "in_progress" {
        json!([])
    } else {
        json!([{"type": "output_text", "text": text, "annotations": [], "logprobs": []}])
    };
    json!({"id": id, "type": "message", "status": status, "role": "assistant", "content": content})
}

/// A reasoning item; started (`response.output_item.added`) with no text nor signature.
pub(super) fn reasoning_item(id: &str, text: &str, signature: Option<&Signature>) -> Value {
    let mut v = json!({"id": id, "type": "reasoning", "summary": []});
    if !text.is_empty() {
        v["summary"] = json!([{"type": "summary_text", "text": text}]);
    }
    if let Some(sig) = signature {
        v["encrypted_content"] = sig.relayed().into();
    }
    v
}

pub(super) fn call_item(
    call_id: &str,
    name: &str,
    arguments: &str,
    freeform: bool,
    status: &str,
) -> Value {
    if freeform {
        // The model was given a function taking {"input": text}; the client wants the text.
        let input = serde_json::from_str::<Value>(arguments)
            .ok()
            .and_then(|v| v["input"].as_str().map(String::from))
            .unwrap_or_else(|| arguments.to_string());
        let input = if status == "in_progress" {
            String::new()
        } else {
            input
        };
        return json!({"id": format!("ctc_{call_id}"), "type": "custom_tool_call", "status": status,
                      "call_id": call_id, "name": name, "input": input});
    }
    json!({"id": format!("fc_{call_id}"), "type": "function_call", "status": status,
           "call_id": call_id, "name": name, "arguments": arguments})
}

pub fn encode_response(r: &ChatResponse, envelope: &Envelope, client: &ClientState) -> Value {
    let id = response_id(&r.id);
    let mut output = vec![];
    let mut text = String::new();
    let flush_text = |text: &mut String, output: &mut Vec<Value>| {
        if !text.is_empty() {
            let item_id = format!("msg_{}_{}", id.trim_start_matches("resp_"), output.len());
            output.push(message_item(&item_id, text, "completed"));
            text.clear();
        }
    };
    for p in &r.parts {
        match p {
            Part::Text(t) => text.push_str(t),
            Part::Thinking { text: t, signature } => {
                flush_text(&mut text, &mut output);
                let item_id = format!("rs_{}_{}", id.trim_start_matches("resp_"), output.len());
                output.push(reasoning_item(&item_id, t, signature.as_ref()));
            }
            Part::ToolCall {
                id: call_id,
                name,
                arguments,
            } => {
                flush_text(&mut text, &mut output);
                output.push(client.call_item(call_id, name, arguments, "completed"));
            }
            Part::Image(_) | Part::ToolResult { .. } => {}
        }
    }
    flush_text(&mut text, &mut output);
    let (status, incomplete) = status_of(r.finish);
    if status == "incomplete" {
        // The message the provider cut off is incomplete too.
        if let Some(last) = output.iter_mut().rev().find(|i| i["type"] == "message") {
            last["status"] = "incomplete".into();
        }
    }
    let env = Head {
        id: &id,
        model: &envelope.model,
        created: envelope.created,
        echo: &client.echo,
    };
    response_object(
        &env,
        status,
        output,
        r.usage.as_ref(),
        incomplete,
        Value::Null,
    )
}
