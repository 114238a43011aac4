//! Anthropic Messages requests <-> the internal model.

use serde_json::{json, Map, Value};

use super::schema;
use crate::translate::model::*;
use crate::translate::{body_object, messages_array, Dropped, TranslateError};

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter_map(|b| b["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

pub(super) fn decode_block(b: &Value, at: &str, out: &mut Vec<Part>) -> Result<(), TranslateError> {
    match b["type"].as_str() {
        Some("text") => out.push(Part::Text(
            b["text"].as_str().unwrap_or_default().to_string(),
        )),
        Some("image") => {
            let s = &b["source"];
            out.push(Part::Image(match s["type"].as_str() {
                Some("url") => Image::Url(s["url"].as_str().unwrap_or_default().to_string()),
                _ => Image::Base64 {
                    media_type: s["media_type"].as_str().unwrap_or("image/png").to_string(),
                    data: s["data"].as_str().unwrap_or_default().to_string(),
                },
            }))
        }
        Some("tool_use") => out.push(Part::ToolCall {
            id: b["id"].as_str().unwrap_or_default().to_string(),
            name: b["name"].as_str().unwrap_or_default().to_string(),
            arguments: b
                .get("input")
                .map(|i| i.to_string())
                .unwrap_or_else(|| "{}".into()),
        }),
        Some("tool_result") => {
            // `content` may be absent, a string, or an array of text/image blocks.
            let mut content = vec![];
            match &b["content"] {
                Value::String(s) => content.push(Part::Text(s.clone())),
                Value::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
                        decode_block(item, &format!("{at}.content[{i}]"), &mut content)?;
                    }
                }
                _ => {}
            }
            out.push(Part::ToolResult {
                id: b["tool_use_id"].as_str().unwrap_or_default().to_string(),
                name: None,
                content,
                is_error: b["is_error"].as_bool().unwrap_or(false),
            });
        }
        Some("thinking") => out.push(Part::Thinking {
            text: b["thinking"].as_str().unwrap_or_default().to_string(),
            signature: b["signature"].as_str().map(Signature::from_tagged),
        }),
        Some("redacted_thinking") => {}
        other => {
            return Err(TranslateError::param(
                format!(
                    "{at} has type {:?}, which cannot be translated for this model's provider",
                    other.unwrap_or("?")
                ),
                "messages",
            ))
        }
    }
    Ok(())
}

// Long: one arm per request field, a table best read whole.
pub fn decode_request(v: &Value) -> Result<ChatRequest, TranslateError> {
    let obj = body_object(v)?;
    let mut req = ChatRequest::default();
    let messages = messages_array(obj)?;
    decode_messages(messages, &mut req)?;
    let mut output_effort = None;
    for (k, val) in obj {
        match k.as_str() {
            "model" | "messages" => {}
            "system" => {
                let s = text_of(val);
                if !s.is_empty() {
                    req.system.insert(0, s);
                }
            }
            "max_tokens" => req.max_tokens = val.as_u64(),
            "temperature" => req.temperature = val.as_f64(),
            "top_p" => req.top_p = val.as_f64(),
            "top_k" => req.top_k = val.as_u64(),
            "stop_sequences" => {
                req.stop = val
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            }
            "stream" => req.stream = val.as_bool().unwrap_or(false),
            "tools" => decode_tools(val, &mut req),
            // Claude's output controls: effort steers reasoning, format is structured output.
            "output_config" => {
                // Applied to the thinking settings after the loop.
                output_effort = val["effort"].as_str().map(String::from);
                let f = &val["format"];
                if f["type"] == "json_schema" {
                    req.response_format = Some(ResponseFormat::JsonSchema {
                        name: "response".into(),
                        schema: f["schema"].clone(),
                        strict: true,
                    });
                }
            }
            "tool_choice" => {
                req.tool_choice = match val["type"].as_str() {
                    Some("any") => Some(ToolChoice::Required),
                    Some("none") => Some(ToolChoice::None),
                    Some("tool") => val["name"]
                        .as_str()
                        .map(|n| ToolChoice::Tool(n.to_string())),
                    _ => Some(ToolChoice::Auto),
                };
                if val["disable_parallel_tool_use"] == true {
                    req.parallel_tool_calls = Some(false);
                }
            }
            "thinking" => {
                if val["type"] == "enabled" || val["type"] == "adaptive" {
                    req.reasoning = Some(Reasoning {
                        effort: None,
                        budget_tokens: val["budget_tokens"].as_u64(),
                        include_thoughts: true,
                    });
                }
            }
            "metadata" => req.user = val["user_id"].as_str().map(String::from),
            _ if val.is_null() => {}
            other => req.unmapped.push(other.to_string()),
        }
    }
    // Effort steers thinking when thinking is on (adaptive thinking has no budget).
    if let (Some(r), Some(e)) = (req.reasoning.as_mut(), output_effort) {
        if r.budget_tokens.is_none() {
            r.effort = Some(e);
        }
    }
    Ok(req)
}

fn decode_messages(messages: &[Value], req: &mut ChatRequest) -> Result<(), TranslateError> {
    for (i, m) in messages.iter().enumerate() {
        let at = format!("messages[{i}]");
        let role = match m["role"].as_str() {
            Some("user") => Role::User,
            Some("assistant") => Role::Assistant,
            // Some clients put a system turn inside messages; it belongs in `system`.
            Some("system") => {
                req.system.push(text_of(&m["content"]));
                continue;
            }
            other => {
                return Err(TranslateError::param(
                    format!(
                        "{at}.role {:?} must be user or assistant",
                        other.unwrap_or("")
                    ),
                    "messages",
                ))
            }
        };
        let mut parts = vec![];
        match &m["content"] {
            Value::String(s) => parts.push(Part::Text(s.clone())),
            Value::Array(blocks) => {
                for (j, b) in blocks.iter().enumerate() {
                    decode_block(b, &format!("{at}.content[{j}]"), &mut parts)?;
                }
            }
            _ => {
                return Err(TranslateError::param(
                    format!("{at}.content must be a string or an array"),
                    "messages",
                ))
            }
        }
        req.push_turn(role, parts);
    }
    Ok(())
}

fn decode_tools(val: &Value, req: &mut ChatRequest) {
    for (j, t) in val.as_array().into_iter().flatten().enumerate() {
        // Server tools (web_search_..., code_execution_...) carry a type and no schema.
        match (t["name"].as_str(), t.get("input_schema")) {
            (Some(name), Some(schema)) => req.tools.push(ToolDef {
                name: name.to_string(),
                description: t["description"].as_str().map(String::from),
                parameters: schema.clone(),
                strict: false,
            }),
            // Named by type, as the other decoders name hosted tools.
            _ => req.unmapped.push(format!(
                "tools.{}",
                t["type"].as_str().unwrap_or(&j.to_string())
            )),
        }
        // Tool search: other providers get every tool up front.
        if t.get("defer_loading").is_some_and(|d| d == true)
            && !req.unmapped.iter().any(|u| u == "tools.defer_loading")
        {
            req.unmapped.push("tools.defer_loading".into());
        }
    }
}

/// `to_provider`: for a request to Anthropic, which accepts only signatures it issued;
/// otherwise for a client, which gets every signature back to replay.
pub(super) fn encode_parts(parts: &[Part], to_provider: bool, dropped: &mut Dropped) -> Vec<Value> {
    parts
        .iter()
        .filter_map(|p| match p {
            Part::Text(t) if t.is_empty() => None,
            // A response's blocks carry every field the SDKs' types require.
            Part::Text(t) if !to_provider => Some(json!({"type": "text", "text": t, "citations": null})),
            Part::Text(t) => Some(json!({"type": "text", "text": t})),
            Part::Image(Image::Base64 { media_type, data }) => {
                Some(json!({"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}))
            }
            Part::Image(Image::Url(u)) => Some(json!({"type": "image", "source": {"type": "url", "url": u}})),
            Part::ToolCall { id, name, arguments } => {
                let input = serde_json::from_str::<Value>(arguments)
                    .ok()
                    .filter(Value::is_object)
                    .unwrap_or_else(|| json!({}));
                let mut b = json!({"type": "tool_use", "id": id, "name": name, "input": input});
                if !to_provider {
                    b["caller"] = json!({"type": "direct"});
                }
                Some(b)
            }
            Part::ToolResult { id, content, is_error, .. } => {
                let mut b = json!({"type": "tool_result", "tool_use_id": id});
                let inner = encode_parts(content, to_provider, dropped);
                if !inner.is_empty() {
                    b["content"] = Value::Array(inner);
                }
                if *is_error {
                    b["is_error"] = true.into();
                }
                Some(b)
            }
            // Anthropic accepts earlier thinking only with the signature it issued.
            Part::Thinking { text, signature: Some(sig) }
                if !to_provider || sig.valid_for(Issuer::Anthropic) =>
            {
                Some(json!({"type": "thinking", "thinking": text, "signature": sig.tagged()}))
            }
            Part::Thinking { .. } => {
                dropped.add("thinking");
                None
            }
        })
        .collect()
}

/// The provider request body for an Anthropic provider. `default_max_tokens` fills the
/// field Anthropic requires when the client sent none.
pub fn encode_request(
    req: &ChatRequest,
    model: &str,
    default_max_tokens: u64,
    dropped: &mut Dropped,
) -> Result<Value, TranslateError> {
    if req.n.is_some_and(|n| n > 1) {
        return Err(TranslateError::param(
            "n > 1 is not supported by this model's provider (Anthropic)",
            "n",
        ));
    }
    let mut messages: Vec<Value> = vec![];
    for m in &req.messages {
        let content = encode_parts(&m.parts, true, dropped);
        if content.is_empty() {
            continue;
        }
        let role = if m.role == Role::User {
            "user"
        } else {
            "assistant"
        };
        messages.push(json!({"role": role, "content": content}));
    }
    let mut out = Map::new();
    out.insert("model".into(), model.into());
    let mut system = req.system.clone();
    match &req.response_format {
        Some(ResponseFormat::JsonObject) => {
            system.push("Respond with a single JSON object and nothing else.".into());
            dropped.add("response_format(emulated)");
        }
        // Messages' native structured output, with the schema in the subset it takes.
        Some(ResponseFormat::JsonSchema { schema, .. }) => match schema::to_output_schema(schema) {
            Some(s) => {
                out.insert(
                    "output_config".into(),
                    json!({"format": {"type": "json_schema", "schema": s}}),
                );
            }
            None => {
                system.push(format!("Respond with a single JSON object that matches this JSON Schema, and nothing else:\n{schema}"));
                dropped.add("response_format(emulated)");
            }
        },
        _ => {}
    }
    if !system.is_empty() {
        out.insert("system".into(), system.join("\n\n").into());
    }
    out.insert("messages".into(), Value::Array(messages));
    let mut max_tokens = req.max_tokens.unwrap_or(default_max_tokens);
    let reasoning = match &req.reasoning {
        Some(_) if refuses_thinking(req) => {
            dropped.add("reasoning");
            None
        }
        r => r.as_ref(),
    };
    encode_sampling(
        req,
        reasoning,
        &mut max_tokens,
        default_max_tokens,
        &mut out,
        dropped,
    )?;
    out.insert("max_tokens".into(), max_tokens.into());
    if !req.stop.is_empty() {
        out.insert("stop_sequences".into(), json!(req.stop));
    }
    if req.stream {
        out.insert("stream".into(), true.into());
    }
    encode_tools(req, &mut out);
    if let Some(u) = &req.user {
        out.insert("metadata".into(), json!({"user_id": u}));
    }
    for (f, present) in [
        ("seed", req.seed.is_some()),
        ("presence_penalty", req.presence_penalty.is_some()),
        ("frequency_penalty", req.frequency_penalty.is_some()),
    ] {
        if present {
            dropped.add(f);
        }
    }
    Ok(Value::Object(out))
}

/// Anthropic refuses thinking with a forced tool choice, and, mid tool loop, when the
/// assistant turn that called the tools does not start with its signed thinking (history
/// from another provider or a client that dropped it): such requests go without thinking.
fn refuses_thinking(req: &ChatRequest) -> bool {
    let forced_tool = matches!(
        req.tool_choice,
        Some(ToolChoice::Required) | Some(ToolChoice::Tool(_))
    );
    let unsigned_tool_turn = req
        .messages
        .iter()
        .rev()
        .find(|m| m.role == Role::Assistant)
        .is_some_and(|m| {
            let calls = m.parts.iter().any(|p| matches!(p, Part::ToolCall { .. }));
            let signed_first = matches!(
                m.parts.first(),
                Some(Part::Thinking { signature: Some(s), .. }) if s.valid_for(Issuer::Anthropic)
            );
            calls && !signed_first
        });
    forced_tool || unsigned_tool_turn
}

/// Anthropic's smallest thinking budget.
const MIN_THINKING_BUDGET: u64 = 1024;

/// Thinking and the sampling settings it restricts. The budget must be at least 1024 and
/// below `max_tokens`: a client's own `max_tokens` is kept and the budget shrinks to fit
/// (a limit of 1024 or less leaves no room: 400); without one, `max_tokens` grows to
/// leave room for the budget.
fn encode_sampling(
    req: &ChatRequest,
    reasoning: Option<&Reasoning>,
    max_tokens: &mut u64,
    default_max_tokens: u64,
    out: &mut Map<String, Value>,
    dropped: &mut Dropped,
) -> Result<(), TranslateError> {
    if let Some(r) = reasoning {
        let mut budget = r.budget().max(MIN_THINKING_BUDGET);
        match req.max_tokens {
            Some(asked) if asked <= MIN_THINKING_BUDGET => {
                return Err(TranslateError::param(
                    format!("max_tokens {asked} leaves no room for reasoning on this model's provider (Anthropic: the thinking budget must be at least {MIN_THINKING_BUDGET} tokens and below max_tokens); raise max_tokens or leave reasoning out"),
                    "max_tokens",
                ));
            }
            Some(asked) if budget >= asked => budget = (asked - 1).max(MIN_THINKING_BUDGET),
            Some(_) => {}
            None if *max_tokens <= budget => {
                *max_tokens = budget.saturating_add(default_max_tokens.min(4096));
            }
            None => {}
        }
        out.insert(
            "thinking".into(),
            json!({"type": "enabled", "budget_tokens": budget}),
        );
        // Extended thinking does not allow temperature or top_k changes.
        if req.temperature.is_some() {
            dropped.add("temperature");
        }
        if req.top_k.is_some() {
            dropped.add("top_k");
        }
        // With thinking, top_p may only be 0.95..1.
        if let Some(p) = req.top_p {
            if p >= 0.95 {
                out.insert("top_p".into(), p.into());
            } else {
                dropped.add("top_p");
            }
        }
    } else {
        if let Some(p) = req.top_p {
            out.insert("top_p".into(), p.into());
        }
        if let Some(t) = req.temperature {
            out.insert("temperature".into(), t.min(1.0).into());
        }
        if let Some(k) = req.top_k {
            out.insert("top_k".into(), k.into());
        }
    }
    Ok(())
}

/// Tools, and the tool choice (which Anthropic takes only with tools).
fn encode_tools(req: &ChatRequest, out: &mut Map<String, Value>) {
    if !req.tools.is_empty() {
        let tools: Vec<Value> = req
            .tools
            .iter()
            .map(|t| {
                let mut v = json!({"name": t.name, "input_schema": t.parameters});
                if let Some(d) = &t.description {
                    v["description"] = d.clone().into();
                }
                v
            })
            .collect();
        out.insert("tools".into(), Value::Array(tools));
    }
    let mut choice = match &req.tool_choice {
        Some(ToolChoice::Auto) => Some(json!({"type": "auto"})),
        Some(ToolChoice::None) => Some(json!({"type": "none"})),
        Some(ToolChoice::Required) => Some(json!({"type": "any"})),
        Some(ToolChoice::Tool(n)) => Some(json!({"type": "tool", "name": n})),
        None => None,
    };
    if req.parallel_tool_calls == Some(false) && !req.tools.is_empty() {
        let c = choice.get_or_insert_with(|| json!({"type": "auto"}));
        if c["type"] != "none" {
            c["disable_parallel_tool_use"] = true.into();
        }
    }
    if let Some(c) = choice.filter(|_| !req.tools.is_empty()) {
        out.insert("tool_choice".into(), c);
    }
}
