//! OpenAI Chat Completions <-> the internal model: request decoder and encoder, response
//! decoder and encoder, stream decoder (provider chunks -> events) and stream encoder
//! (events -> client chunks). Field names follow platform.openai.com/docs/api-reference/chat.

use serde_json::{json, Map, Value};

use super::model::*;
use super::{as_text_parts, parse_data_url, Dropped, TranslateError};

// ---------------------------------------------------------------- requests

pub fn decode_request(v: &Value) -> Result<ChatRequest, TranslateError> {
    let obj = v
        .as_object()
        .ok_or_else(|| TranslateError::new("the body must be a JSON object"))?;
    let mut req = ChatRequest::default();
    let messages = obj
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            TranslateError::param("'messages' must be an array of messages", "messages")
        })?;
    for (i, m) in messages.iter().enumerate() {
        decode_message(m, i, &mut req)?;
    }
    for (k, val) in obj {
        match k.as_str() {
            "model" | "messages" => {}
            "max_tokens" | "max_completion_tokens" => {
                req.max_tokens = val.as_u64().or(req.max_tokens)
            }
            "temperature" => req.temperature = val.as_f64(),
            "top_p" => req.top_p = val.as_f64(),
            "n" => req.n = val.as_u64(),
            "stream" => req.stream = val.as_bool().unwrap_or(false),
            "stream_options" => req.stream_usage = val["include_usage"].as_bool().unwrap_or(false),
            "stop" => {
                req.stop = match val {
                    Value::String(s) => vec![s.clone()],
                    Value::Array(a) => a
                        .iter()
                        .filter_map(|s| s.as_str().map(String::from))
                        .collect(),
                    _ => vec![],
                }
            }
            "tools" => {
                for (j, t) in val.as_array().into_iter().flatten().enumerate() {
                    if t["type"] != "function" {
                        req.unmapped.push(format!("tools[{j}]"));
                        continue;
                    }
                    let f = &t["function"];
                    let name = f["name"].as_str().ok_or_else(|| {
                        TranslateError::param(
                            format!("tools[{j}].function.name is missing"),
                            "tools",
                        )
                    })?;
                    req.tools.push(ToolDef {
                        name: name.to_string(),
                        description: f["description"].as_str().map(String::from),
                        parameters: f
                            .get("parameters")
                            .cloned()
                            .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
                    });
                }
            }
            "tool_choice" => {
                req.tool_choice = match val {
                    Value::String(s) if s == "none" => Some(ToolChoice::None),
                    Value::String(s) if s == "required" => Some(ToolChoice::Required),
                    Value::String(_) => Some(ToolChoice::Auto),
                    Value::Object(_) => val["function"]["name"]
                        .as_str()
                        .map(|n| ToolChoice::Tool(n.to_string())),
                    _ => None,
                }
            }
            "response_format" => {
                req.response_format = match val["type"].as_str() {
                    Some("json_object") => Some(ResponseFormat::JsonObject),
                    Some("json_schema") => Some(ResponseFormat::JsonSchema {
                        name: val["json_schema"]["name"]
                            .as_str()
                            .unwrap_or("response")
                            .to_string(),
                        schema: val["json_schema"]["schema"].clone(),
                        strict: val["json_schema"]["strict"].as_bool().unwrap_or(false),
                    }),
                    _ => Some(ResponseFormat::Text),
                }
            }
            "reasoning_effort" => {
                if let Some(e) = val.as_str() {
                    if e != "none" {
                        req.reasoning = Some(Reasoning {
                            effort: Some(e.to_string()),
                            budget_tokens: None,
                            include_thoughts: true,
                        });
                    }
                }
            }
            "user" => req.user = val.as_str().map(String::from),
            "parallel_tool_calls" => req.parallel_tool_calls = val.as_bool(),
            "seed" => req.seed = val.as_i64(),
            "presence_penalty" => req.presence_penalty = val.as_f64(),
            "frequency_penalty" => req.frequency_penalty = val.as_f64(),
            _ if val.is_null() => {}
            other => req.unmapped.push(other.to_string()),
        }
    }
    Ok(req)
}

fn content_parts(content: &Value, at: &str) -> Result<Vec<Part>, TranslateError> {
    match content {
        Value::Null => Ok(vec![]),
        Value::String(s) => Ok(vec![Part::Text(s.clone())]),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, p)| match p["type"].as_str() {
                Some("text") | Some("input_text") => Ok(Part::Text(p["text"].as_str().unwrap_or_default().to_string())),
                Some("image_url") => {
                    let url = p["image_url"]["url"].as_str().or_else(|| p["image_url"].as_str()).unwrap_or_default();
                    Ok(Part::Image(match parse_data_url(url) {
                        Some((media_type, data)) => Image::Base64 { media_type, data },
                        None => Image::Url(url.to_string()),
                    }))
                }
                other => Err(TranslateError::param(
                    format!("{at}.content[{i}] has type {:?}, which cannot be translated for this model's provider", other.unwrap_or("?")),
                    "messages",
                )),
            })
            .collect(),
        _ => Err(TranslateError::param(format!("{at}.content must be a string or an array"), "messages")),
    }
}

fn decode_message(m: &Value, i: usize, req: &mut ChatRequest) -> Result<(), TranslateError> {
    let at = format!("messages[{i}]");
    match m["role"].as_str() {
        Some("system") | Some("developer") => {
            let text = as_text_parts(&content_parts(&m["content"], &at)?);
            req.system.push(text);
        }
        Some("user") => {
            let parts = content_parts(&m["content"], &at)?;
            req.push_turn(Role::User, parts);
        }
        Some("assistant") => {
            let mut parts = vec![];
            if let Some(r) = m["reasoning_content"].as_str().filter(|r| !r.is_empty()) {
                parts.push(Part::Thinking {
                    text: r.to_string(),
                    signature: None,
                });
            }
            parts.extend(content_parts(&m["content"], &at)?);
            if let Some(refusal) = m["refusal"].as_str() {
                parts.push(Part::Text(refusal.to_string()));
            }
            for (j, c) in m["tool_calls"].as_array().into_iter().flatten().enumerate() {
                let f = &c["function"];
                parts.push(Part::ToolCall {
                    id: c["id"]
                        .as_str()
                        .map(String::from)
                        .unwrap_or_else(|| format!("call_{i}_{j}")),
                    name: f["name"].as_str().unwrap_or_default().to_string(),
                    arguments: match &f["arguments"] {
                        Value::String(s) => s.clone(),
                        Value::Null => "{}".to_string(),
                        other => other.to_string(),
                    },
                });
            }
            req.push_turn(Role::Assistant, parts);
        }
        Some("tool") | Some("function") => {
            let id = m["tool_call_id"].as_str().unwrap_or_default().to_string();
            if id.is_empty() && m["role"] == "tool" {
                return Err(TranslateError::param(
                    format!("{at}.tool_call_id is missing"),
                    "messages",
                ));
            }
            let content = content_parts(&m["content"], &at)?;
            req.push_turn(
                Role::User,
                vec![Part::ToolResult {
                    id,
                    name: m["name"].as_str().map(String::from),
                    content,
                    is_error: false,
                }],
            );
        }
        other => {
            return Err(TranslateError::param(
                format!(
                    "{at}.role {:?} is not one of system, developer, user, assistant, tool",
                    other.unwrap_or("")
                ),
                "messages",
            ))
        }
    }
    Ok(())
}

fn encode_content(parts: &[Part]) -> Value {
    if parts.iter().all(|p| matches!(p, Part::Text(_))) {
        return Value::String(as_text_parts(parts));
    }
    Value::Array(
        parts
            .iter()
            .filter_map(|p| match p {
                Part::Text(t) => Some(json!({"type": "text", "text": t})),
                Part::Image(Image::Base64 { media_type, data }) => {
                    Some(json!({"type": "image_url", "image_url": {"url": format!("data:{media_type};base64,{data}")}}))
                }
                Part::Image(Image::Url(u)) => Some(json!({"type": "image_url", "image_url": {"url": u}})),
                _ => None,
            })
            .collect(),
    )
}

/// Whether an OpenAI-protocol model takes reasoning parameters (`reasoning_effort`,
/// `max_completion_tokens` only): OpenAI's o-series and gpt-5 family, gpt-oss, and
/// compatible servers' reasoning models. Others reject `reasoning_effort`.
pub fn is_reasoning_model(model: &str) -> bool {
    let m = model
        .rsplit('/')
        .next()
        .unwrap_or(model)
        .to_ascii_lowercase();
    let o_series = m
        .strip_prefix('o')
        .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()));
    o_series
        || m.starts_with("gpt-5")
        || m.starts_with("gpt-oss")
        || ["reason", "think", "-r1", "qwq"]
            .iter()
            .any(|k| m.contains(k))
}

/// A reasoning effort the model family takes: the o-series knows low/medium/high only;
/// efforts beyond high exist only on newer gpt-5 models.
fn effort_for(model: &str, effort: String) -> String {
    let m = model
        .rsplit('/')
        .next()
        .unwrap_or(model)
        .to_ascii_lowercase();
    let o_series = m.starts_with('o');
    match effort.as_str() {
        "minimal" | "none" if o_series => "low".to_string(),
        "xhigh" | "max" if !m.starts_with("gpt-5.") => "high".to_string(),
        "low" | "medium" | "high" | "minimal" | "none" | "xhigh" => effort,
        _ => "medium".to_string(),
    }
}

/// OpenAI limits `user` in length; long ids (Claude Code's `metadata.user_id`) are sent as
/// their SHA-256, which still tells users apart.
fn user_field(user: &str) -> String {
    use sha2::{Digest, Sha256};
    if user.len() <= 64 {
        user.to_string()
    } else {
        hex::encode(Sha256::digest(user.as_bytes()))
    }
}

/// A tool schema as OpenAI-compatible servers take it: no `$schema` (strict mode and
/// several servers reject it).
fn tool_parameters(schema: &Value) -> Value {
    match schema.as_object() {
        Some(o) if o.contains_key("$schema") => {
            let mut o = o.clone();
            o.remove("$schema");
            Value::Object(o)
        }
        _ => schema.clone(),
    }
}

/// The provider request body for an OpenAI-compatible provider.
pub fn encode_request(req: &ChatRequest, model: &str, dropped: &mut Dropped) -> Value {
    let mut messages = vec![];
    if !req.system.is_empty() {
        messages.push(json!({"role": "system", "content": req.system.join("\n\n")}));
    }
    for m in &req.messages {
        match m.role {
            Role::User => {
                let (results, rest): (Vec<&Part>, Vec<&Part>) = m
                    .parts
                    .iter()
                    .partition(|p| matches!(p, Part::ToolResult { .. }));
                for r in results {
                    if let Part::ToolResult {
                        id,
                        content,
                        is_error,
                        ..
                    } = r
                    {
                        let mut text = as_text_parts(content);
                        if content.iter().any(|p| matches!(p, Part::Image(_))) {
                            dropped.add("tool_result.image");
                        }
                        if *is_error && !text.starts_with("Error") {
                            text = format!("Error: {text}");
                        }
                        messages.push(json!({"role": "tool", "tool_call_id": id, "content": text}));
                    }
                }
                if !rest.is_empty() {
                    let rest: Vec<Part> = rest.into_iter().cloned().collect();
                    messages.push(json!({"role": "user", "content": encode_content(&rest)}));
                }
            }
            Role::Assistant => {
                let mut msg = Map::new();
                msg.insert("role".into(), "assistant".into());
                let text: Vec<Part> = m
                    .parts
                    .iter()
                    .filter(|p| matches!(p, Part::Text(_)))
                    .cloned()
                    .collect();
                let calls: Vec<Value> = m
                    .parts
                    .iter()
                    .filter_map(|p| match p {
                        Part::ToolCall { id, name, arguments } => Some(json!({
                            "id": id, "type": "function", "function": {"name": name, "arguments": arguments}})),
                        _ => None,
                    })
                    .collect();
                msg.insert(
                    "content".into(),
                    if text.is_empty() {
                        Value::Null
                    } else {
                        Value::String(as_text_parts(&text))
                    },
                );
                if !calls.is_empty() {
                    msg.insert("tool_calls".into(), Value::Array(calls));
                }
                messages.push(Value::Object(msg));
            }
        }
    }
    let mut out = Map::new();
    out.insert("model".into(), model.into());
    out.insert("messages".into(), Value::Array(messages));
    let reasoning_model = is_reasoning_model(model);
    if let Some(t) = req.max_tokens {
        // Reasoning models take only max_completion_tokens; many compatible servers know
        // only max_tokens.
        let field = if reasoning_model {
            "max_completion_tokens"
        } else {
            "max_tokens"
        };
        out.insert(field.into(), t.into());
    }
    // Reasoning models take only the default sampling: other values are refused.
    let mut sampling = |name: &str, v: Option<f64>, default: f64| match v {
        Some(x) if reasoning_model && x != default => {
            dropped.add(name);
            None
        }
        other => other.map(Value::from),
    };
    let temperature = sampling("temperature", req.temperature, 1.0);
    let top_p = sampling("top_p", req.top_p, 1.0);
    let presence_penalty = sampling("presence_penalty", req.presence_penalty, 0.0);
    let frequency_penalty = sampling("frequency_penalty", req.frequency_penalty, 0.0);
    let mut set = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            out.insert(k.to_string(), v);
        }
    };
    set("temperature", temperature);
    set("top_p", top_p);
    set("n", req.n.map(Value::from));
    set("seed", req.seed.map(Value::from));
    set("presence_penalty", presence_penalty);
    set("frequency_penalty", frequency_penalty);
    set("user", req.user.as_deref().map(user_field).map(Value::from));
    set(
        "parallel_tool_calls",
        req.parallel_tool_calls
            .filter(|_| !req.tools.is_empty())
            .map(Value::from),
    );
    set("stop", (!req.stop.is_empty()).then(|| json!(req.stop)));
    match &req.reasoning {
        Some(r) if reasoning_model => set(
            "reasoning_effort",
            Some(Value::from(effort_for(model, r.effort()))),
        ),
        Some(_) => dropped.add("reasoning"),
        None => {}
    }
    if req.stream {
        // Always ask for usage; the encoder drops the extra chunk if the client did not.
        set("stream", Some(true.into()));
        set("stream_options", Some(json!({"include_usage": true})));
    }
    if !req.tools.is_empty() {
        set(
            "tools",
            Some(Value::Array(
                req.tools
                    .iter()
                    .map(|t| {
                        let mut f =
                            json!({"name": t.name, "parameters": tool_parameters(&t.parameters)});
                        if let Some(d) = &t.description {
                            f["description"] = d.clone().into();
                        }
                        json!({"type": "function", "function": f})
                    })
                    .collect(),
            )),
        );
    }
    set(
        "tool_choice",
        req.tool_choice.as_ref().map(|c| match c {
            ToolChoice::Auto => json!("auto"),
            ToolChoice::None => json!("none"),
            ToolChoice::Required => json!("required"),
            ToolChoice::Tool(n) => json!({"type": "function", "function": {"name": n}}),
        }),
    );
    set(
        "response_format",
        req.response_format.as_ref().map(|f| match f {
            ResponseFormat::Text => json!({"type": "text"}),
            ResponseFormat::JsonObject => json!({"type": "json_object"}),
            ResponseFormat::JsonSchema { name, schema, strict } => {
                json!({"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": strict}})
            }
        }),
    );
    if req.top_k.is_some() {
        dropped.add("top_k");
    }
    if req
        .messages
        .iter()
        .flat_map(|m| &m.parts)
        .any(|p| matches!(p, Part::Thinking { .. }))
    {
        dropped.add("thinking");
    }
    Value::Object(out)
}

// ---------------------------------------------------------------- responses

pub fn finish_from(s: &str) -> FinishReason {
    match s {
        "length" => FinishReason::Length,
        "tool_calls" | "function_call" => FinishReason::ToolCalls,
        "content_filter" => FinishReason::ContentFilter,
        _ => FinishReason::Stop,
    }
}

fn finish_str(f: FinishReason) -> &'static str {
    match f {
        FinishReason::Stop | FinishReason::StopSequence => "stop",
        FinishReason::Length => "length",
        FinishReason::ToolCalls => "tool_calls",
        FinishReason::ContentFilter => "content_filter",
    }
}

pub fn usage_from(u: &Value) -> Option<Usage> {
    let prompt = u["prompt_tokens"].as_u64()?;
    Some(Usage {
        prompt_tokens: prompt,
        completion_tokens: u["completion_tokens"].as_u64().unwrap_or(0),
        cached_tokens: u["prompt_tokens_details"]["cached_tokens"].as_u64(),
        reasoning_tokens: u["completion_tokens_details"]["reasoning_tokens"].as_u64(),
    })
}

fn usage_json(u: &Usage) -> Value {
    let mut v = json!({
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.prompt_tokens + u.completion_tokens,
    });
    if let Some(c) = u.cached_tokens {
        v["prompt_tokens_details"] = json!({"cached_tokens": c});
    }
    if let Some(r) = u.reasoning_tokens {
        v["completion_tokens_details"] = json!({"reasoning_tokens": r});
    }
    v
}

pub fn decode_response(v: &Value) -> Result<ChatResponse, TranslateError> {
    let choice = &v["choices"][0];
    if !choice.is_object() {
        return Err(TranslateError::new(
            "the provider's response has no choices",
        ));
    }
    let msg = &choice["message"];
    let mut parts = vec![];
    if let Some(r) = msg["reasoning_content"].as_str().filter(|r| !r.is_empty()) {
        parts.push(Part::Thinking {
            text: r.to_string(),
            signature: None,
        });
    }
    if let Some(t) = msg["content"].as_str() {
        if !t.is_empty() {
            parts.push(Part::Text(t.to_string()));
        }
    }
    if let Some(r) = msg["refusal"].as_str() {
        parts.push(Part::Text(r.to_string()));
    }
    for c in msg["tool_calls"].as_array().into_iter().flatten() {
        parts.push(Part::ToolCall {
            id: c["id"].as_str().unwrap_or_default().to_string(),
            name: c["function"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            arguments: c["function"]["arguments"]
                .as_str()
                .unwrap_or("{}")
                .to_string(),
        });
    }
    Ok(ChatResponse {
        id: v["id"].as_str().unwrap_or_default().to_string(),
        parts,
        finish: choice["finish_reason"].as_str().map(finish_from),
        usage: usage_from(&v["usage"]),
    })
}

pub fn encode_response(r: &ChatResponse, public_model: &str, created: u64) -> Value {
    let text: String = r
        .parts
        .iter()
        .filter_map(|p| {
            if let Part::Text(t) = p {
                Some(t.as_str())
            } else {
                None
            }
        })
        .collect();
    let thinking: String = r
        .parts
        .iter()
        .filter_map(|p| {
            if let Part::Thinking { text, .. } = p {
                Some(text.as_str())
            } else {
                None
            }
        })
        .collect();
    let calls: Vec<Value> = r
        .parts
        .iter()
        .filter_map(|p| match p {
            Part::ToolCall { id, name, arguments } => {
                Some(json!({"id": id, "type": "function", "function": {"name": name, "arguments": arguments}}))
            }
            _ => None,
        })
        .collect();
    let mut message = json!({"role": "assistant", "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { Value::String(text) }});
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    if !thinking.is_empty() {
        message["reasoning_content"] = thinking.into();
    }
    let mut out = json!({
        "id": chat_id(&r.id),
        "object": "chat.completion",
        "created": created,
        "model": public_model,
        "choices": [{"index": 0, "message": message, "logprobs": null,
                     "finish_reason": finish_str(r.finish.unwrap_or(FinishReason::Stop))}],
    });
    if let Some(u) = &r.usage {
        out["usage"] = usage_json(u);
    }
    out
}

fn chat_id(id: &str) -> String {
    if id.starts_with("chatcmpl") {
        id.to_string()
    } else {
        format!("chatcmpl-{}", if id.is_empty() { "modelgate" } else { id })
    }
}

// ---------------------------------------------------------------- streams

/// Provider chunks (`data: {...}` payloads) -> events.
#[derive(Default)]
pub struct StreamDecoder {
    started: bool,
    /// OpenAI tool-call index -> whether its start was emitted.
    tools_seen: Vec<usize>,
}

impl StreamDecoder {
    /// `data` is one event's data payload.
    pub fn feed(&mut self, data: &str, out: &mut Vec<StreamEvent>) {
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
    model: String,
    created: u64,
    include_usage: bool,
    started: bool,
    finished: bool,
    usage: Option<Usage>,
    done: bool,
}

impl StreamEncoder {
    pub fn new(public_model: &str, created: u64, include_usage: bool) -> Self {
        StreamEncoder {
            id: "chatcmpl-modelgate".to_string(),
            model: public_model.to_string(),
            created,
            include_usage,
            started: false,
            finished: false,
            usage: None,
            done: false,
        }
    }

    fn chunk(&self, delta: Value, finish: Value, out: &mut Vec<u8>) {
        let c = json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                       "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]});
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(c.to_string().as_bytes());
        out.extend_from_slice(b"\n\n");
    }

    fn ensure_started(&mut self, out: &mut Vec<u8>) {
        if !self.started {
            self.started = true;
            self.chunk(
                json!({"role": "assistant", "content": ""}),
                Value::Null,
                out,
            );
        }
    }

    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    pub fn encode(&mut self, ev: &StreamEvent, out: &mut Vec<u8>) {
        if self.done {
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
                self.chunk(json!({"content": t}), Value::Null, out);
            }
            StreamEvent::ThinkingDelta(t) => {
                self.ensure_started(out);
                self.chunk(json!({"reasoning_content": t}), Value::Null, out);
            }
            StreamEvent::ThinkingSignature(_) | StreamEvent::CallSignature(_) => {}
            StreamEvent::ToolCallStart { index, id, name } => {
                self.ensure_started(out);
                self.chunk(
                    json!({"tool_calls": [{"index": index, "id": id, "type": "function", "function": {"name": name, "arguments": ""}}]}),
                    Value::Null,
                    out,
                );
            }
            StreamEvent::ToolCallArgs { index, fragment } => {
                self.chunk(
                    json!({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]}),
                    Value::Null,
                    out,
                );
            }
            StreamEvent::Finish(f) => {
                if !self.finished {
                    self.ensure_started(out);
                    self.finished = true;
                    self.chunk(json!({}), finish_str(*f).into(), out);
                }
            }
            StreamEvent::Usage(u) => self.usage = Some(*u),
            StreamEvent::Error { message } => {
                let e = json!({"error": {"message": message, "type": "server_error", "code": "upstream_error", "param": null}});
                out.extend_from_slice(format!("data: {e}\n\n").as_bytes());
                self.done = true;
            }
            StreamEvent::Done => self.finish(out),
        }
    }

    /// Closes the stream: a finish chunk if none came, the usage chunk if asked for, `[DONE]`.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        if !self.finished {
            self.encode(&StreamEvent::Finish(FinishReason::Stop), out);
        }
        if self.include_usage {
            if let Some(u) = &self.usage {
                let c = json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                               "model": self.model, "choices": [], "usage": usage_json(u)});
                out.extend_from_slice(format!("data: {c}\n\n").as_bytes());
            }
        }
        out.extend_from_slice(b"data: [DONE]\n\n");
        self.done = true;
    }
}
