//! OpenAI Chat Completions requests <-> the internal model.

use serde_json::{json, Map, Value};

use crate::translate::model::*;
use crate::translate::{
    as_text_parts, body_object, messages_array, parse_data_url, Dropped, TranslateError,
};

pub fn decode_request(v: &Value) -> Result<ChatRequest, TranslateError> {
    let obj = body_object(v)?;
    let mut req = ChatRequest::default();
    let messages = messages_array(obj)?;
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
            "tools" => decode_tools(val, &mut req)?,
            "tool_choice" => req.tool_choice = tool_choice(val),
            "response_format" => req.response_format = response_format(val),
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

fn decode_tools(val: &Value, req: &mut ChatRequest) -> Result<(), TranslateError> {
    for (j, t) in val.as_array().into_iter().flatten().enumerate() {
        if t["type"] != "function" {
            req.unmapped.push(format!("tools[{j}]"));
            continue;
        }
        let f = &t["function"];
        let name = f["name"].as_str().ok_or_else(|| {
            TranslateError::param(format!("tools[{j}].function.name is missing"), "tools")
        })?;
        req.tools.push(ToolDef {
            name: name.to_string(),
            description: f["description"].as_str().map(String::from),
            parameters: f
                .get("parameters")
                .cloned()
                .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
            strict: f["strict"].as_bool().unwrap_or(false),
        });
    }
    Ok(())
}

fn tool_choice(val: &Value) -> Option<ToolChoice> {
    match val {
        Value::String(s) if s == "none" => Some(ToolChoice::None),
        Value::String(s) if s == "required" => Some(ToolChoice::Required),
        Value::String(_) => Some(ToolChoice::Auto),
        Value::Object(_) => val["function"]["name"]
            .as_str()
            .map(|n| ToolChoice::Tool(n.to_string())),
        _ => None,
    }
}

fn response_format(val: &Value) -> Option<ResponseFormat> {
    match val["type"].as_str() {
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
// Long on purpose: one Chat Completions field after another.
pub fn encode_request(req: &ChatRequest, model: &str, dropped: &mut Dropped) -> Value {
    let messages = encode_messages(req, dropped);
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
    set("tools", tools_json(&req.tools));
    set(
        "tool_choice",
        req.tool_choice.as_ref().map(tool_choice_json),
    );
    set(
        "response_format",
        req.response_format.as_ref().map(response_format_json),
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

/// The system text, then the turns as chat messages (tool results as `tool` messages).
fn encode_messages(req: &ChatRequest, dropped: &mut Dropped) -> Vec<Value> {
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
    messages
}

fn tools_json(tools: &[ToolDef]) -> Option<Value> {
    if tools.is_empty() {
        return None;
    }
    let tools = tools
        .iter()
        .map(|t| {
            let mut f = json!({"name": t.name, "parameters": tool_parameters(&t.parameters)});
            if let Some(d) = &t.description {
                f["description"] = d.clone().into();
            }
            if t.strict {
                f["strict"] = true.into();
            }
            json!({"type": "function", "function": f})
        })
        .collect();
    Some(Value::Array(tools))
}

fn tool_choice_json(c: &ToolChoice) -> Value {
    match c {
        ToolChoice::Auto => json!("auto"),
        ToolChoice::None => json!("none"),
        ToolChoice::Required => json!("required"),
        ToolChoice::Tool(n) => json!({"type": "function", "function": {"name": n}}),
    }
}

fn response_format_json(f: &ResponseFormat) -> Value {
    match f {
        ResponseFormat::Text => json!({"type": "text"}),
        ResponseFormat::JsonObject => json!({"type": "json_object"}),
        ResponseFormat::JsonSchema {
            name,
            schema,
            strict,
        } => {
            json!({"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": strict}})
        }
    }
}
