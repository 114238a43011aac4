//! OpenAI Responses requests -> the internal model.

use serde_json::{json, Value};

use super::ClientState;
use crate::translate::model::*;
use crate::translate::{as_text_parts, body_object, parse_data_url, TranslateError};

/// Request settings a Responses response object repeats, as the client sent them.
const ECHOED: &[&str] = &[
    "instructions",
    "max_output_tokens",
    "metadata",
    "parallel_tool_calls",
    "reasoning",
    "store",
    "temperature",
    "text",
    "tool_choice",
    "tools",
    "top_p",
    "truncation",
    "user",
];

fn bad(message: String, param: &'static str) -> TranslateError {
    TranslateError::param(message, param)
}

fn content_parts(content: &Value, at: &str) -> Result<Vec<Part>, TranslateError> {
    let items = match content {
        Value::Null => return Ok(vec![]),
        Value::String(s) => return Ok(vec![Part::Text(s.clone())]),
        Value::Array(items) => items,
        _ => {
            return Err(bad(
                format!("{at}.content must be a string or an array of content parts"),
                "input",
            ))
        }
    };
    let mut parts = Vec::with_capacity(items.len());
    for (i, p) in items.iter().enumerate() {
        match p["type"].as_str() {
            Some("input_text") | Some("output_text") | Some("text") | Some("summary_text") => {
                parts.push(Part::Text(p["text"].as_str().unwrap_or_default().to_string()))
            }
            Some("refusal") => parts.push(Part::Text(
                p["refusal"].as_str().unwrap_or_default().to_string(),
            )),
            Some("input_image") => {
                let Some(url) = p["image_url"].as_str() else {
                    return Err(bad(
                        format!("{at}.content[{i}]: only input_image parts with an image_url (a URL or a data: URL) can be translated for this model's provider; file_id needs OpenAI"),
                        "input",
                    ));
                };
                parts.push(Part::Image(match parse_data_url(url) {
                    Some((media_type, data)) => Image::Base64 { media_type, data },
                    None => Image::Url(url.to_string()),
                }));
            }
            other => {
                return Err(bad(
                    format!(
                        "{at}.content[{i}] has type {:?}, which cannot be translated for this model's provider",
                        other.unwrap_or("?")
                    ),
                    "input",
                ))
            }
        }
    }
    Ok(parts)
}

/// The text of a `function_call_output.output`: a string or an array of content parts.
fn output_parts(output: &Value, at: &str) -> Result<Vec<Part>, TranslateError> {
    match output {
        Value::String(s) => Ok(vec![Part::Text(s.clone())]),
        Value::Array(_) => content_parts(output, at),
        Value::Null => Ok(vec![]),
        other => Ok(vec![Part::Text(other.to_string())]),
    }
}

/// A custom (free-form) tool as a function taking its raw text as `input`.
fn freeform_tool(t: &Value, name: &str) -> ToolDef {
    let mut description = t["description"].as_str().unwrap_or_default().to_string();
    let format = &t["format"];
    if format["type"] == "grammar" {
        if let Some(def) = format["definition"].as_str() {
            description.push_str(&format!(
                "\n\nThe input must follow this {} grammar:\n{def}",
                format["syntax"].as_str().unwrap_or("")
            ));
        }
    }
    ToolDef {
        name: name.to_string(),
        description: (!description.is_empty()).then_some(description),
        parameters: json!({
            "type": "object",
            "properties": {"input": {"type": "string", "description": "The raw input for the tool (plain text, not JSON)."}},
            "required": ["input"],
        }),
        strict: false,
    }
}

fn decode_tools(
    val: &Value,
    req: &mut ChatRequest,
    state: &mut ClientState,
) -> Result<(), TranslateError> {
    let push = |t: &Value,
                at: String,
                req: &mut ChatRequest,
                state: &mut ClientState|
     -> Result<(), TranslateError> {
        let kind = t["type"].as_str().unwrap_or("function");
        let name = t["name"].as_str();
        match (kind, name) {
            ("function", Some(name)) => req.tools.push(ToolDef {
                name: name.to_string(),
                description: t["description"].as_str().map(String::from),
                parameters: t
                    .get("parameters")
                    .filter(|p| p.is_object())
                    .cloned()
                    .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
                strict: t["strict"].as_bool().unwrap_or(false),
            }),
            ("function", None) | ("custom", None) => {
                return Err(bad(format!("{at}.name is missing"), "tools"))
            }
            ("custom", Some(name)) => {
                req.tools.push(freeform_tool(t, name));
                state.freeform_tools.push(name.to_string());
            }
            // Hosted tools (web_search, file_search, code_interpreter, image_generation,
            // local_shell, computer_use, mcp): the provider cannot run them.
            (other, _) => req.unmapped.push(format!("tools.{other}")),
        }
        Ok(())
    };
    for (j, t) in val.as_array().into_iter().flatten().enumerate() {
        if t["type"] == "namespace" {
            // A group of tools: its function tools stand on their own, and their calls
            // carry the namespace back.
            let ns = t["name"].as_str().unwrap_or_default();
            for (k, inner) in t["tools"].as_array().into_iter().flatten().enumerate() {
                push(inner, format!("tools[{j}].tools[{k}]"), req, state)?;
                if let (Some(name), false) = (inner["name"].as_str(), ns.is_empty()) {
                    state
                        .tool_namespaces
                        .push((name.to_string(), ns.to_string()));
                }
            }
        } else {
            push(t, format!("tools[{j}]"), req, state)?;
        }
    }
    Ok(())
}

// Long: one arm per request field, a table best read whole.
/// The neutral request, and what answering it in Responses' shape needs.
// Long on purpose: one Responses request field after another.
pub fn decode_request(v: &Value) -> Result<(ChatRequest, ClientState), TranslateError> {
    let obj = body_object(v)?;
    let mut req = ChatRequest::default();
    let mut state = ClientState::default();
    if let Some(i) = obj.get("instructions").and_then(Value::as_str) {
        if !i.is_empty() {
            req.system.push(i.to_string());
        }
    }
    // Tool names by call id, for providers that match results by name (Gemini).
    let mut call_names: Vec<(String, String)> = Vec::new();
    match obj.get("input") {
        Some(Value::String(s)) => req.push_turn(Role::User, vec![Part::Text(s.clone())]),
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                decode_item(item, i, &mut req, &mut call_names)?;
            }
        }
        None | Some(Value::Null) => {}
        Some(_) => {
            return Err(bad(
                "'input' must be a string or an array of input items".into(),
                "input",
            ))
        }
    }
    if req.messages.is_empty() {
        return Err(bad(
            "'input' holds no user or assistant items; send at least one message".into(),
            "input",
        ));
    }
    for k in ECHOED {
        if let Some(v) = obj.get(*k).filter(|v| !v.is_null()) {
            state.echo.insert((*k).to_string(), v.clone());
        }
    }
    for (k, val) in obj {
        match k.as_str() {
            "model" | "input" | "instructions" => {}
            "max_output_tokens" => req.max_tokens = val.as_u64(),
            "temperature" => req.temperature = val.as_f64(),
            "top_p" => req.top_p = val.as_f64(),
            "stream" => req.stream = val.as_bool().unwrap_or(false),
            "tools" => decode_tools(val, &mut req, &mut state)?,
            "tool_choice" => req.tool_choice = tool_choice(val, &mut req.unmapped),
            "parallel_tool_calls" => req.parallel_tool_calls = val.as_bool(),
            "reasoning" => {
                let effort = val["effort"].as_str().filter(|e| *e != "none");
                if let Some(e) = effort {
                    req.reasoning = Some(Reasoning {
                        effort: Some(e.to_string()),
                        budget_tokens: None,
                        include_thoughts: true,
                    });
                }
            }
            "text" => decode_text(val, &mut req),
            "user" | "safety_identifier" => {
                if req.user.is_none() {
                    req.user = val.as_str().map(String::from);
                }
            }
            "previous_response_id" | "conversation" if !val.is_null() => {
                let param = if k == "conversation" {
                    "conversation"
                } else {
                    "previous_response_id"
                };
                return Err(bad(
                    format!("'{k}' needs a provider that stores responses, and this model's provider is reached by translation; send the whole conversation in 'input' (with store: false)"),
                    param,
                ));
            }
            "background" if val == true => {
                return Err(bad(
                    "background responses are not supported through translation; omit 'background'"
                        .into(),
                    "background",
                ))
            }
            // Nothing is stored either way; encrypted reasoning is returned when a provider
            // signature exists (see `Signature::relayed`).
            // Stored responses need a provider that stores them.
            "store" if val == true => req.unmapped.push("store".into()),
            "store" | "include" | "stream_options" | "background" => {}
            "truncation" if val == "disabled" => {}
            _ if val.is_null() => {}
            other => req.unmapped.push(other.to_string()),
        }
    }
    Ok((req, state))
}

fn tool_choice(val: &Value, unmapped: &mut Vec<String>) -> Option<ToolChoice> {
    match val {
        Value::String(s) if s == "none" => Some(ToolChoice::None),
        Value::String(s) if s == "required" => Some(ToolChoice::Required),
        Value::String(_) => Some(ToolChoice::Auto),
        Value::Object(_) => match (val["type"].as_str(), val["name"].as_str()) {
            (Some("function") | Some("custom"), Some(n)) => Some(ToolChoice::Tool(n.to_string())),
            // The allowed subset has no equivalent: any tool may be called.
            (Some("allowed_tools"), _) => {
                unmapped.push("tool_choice.allowed_tools".into());
                if val["mode"] == "required" {
                    Some(ToolChoice::Required)
                } else {
                    Some(ToolChoice::Auto)
                }
            }
            _ => Some(ToolChoice::Auto),
        },
        _ => None,
    }
}

/// `text`: the output format and verbosity.
fn decode_text(val: &Value, req: &mut ChatRequest) {
    let f = &val["format"];
    req.response_format = match f["type"].as_str() {
        Some("json_object") => Some(ResponseFormat::JsonObject),
        Some("json_schema") => Some(ResponseFormat::JsonSchema {
            name: f["name"].as_str().unwrap_or("response").to_string(),
            schema: f["schema"].clone(),
            strict: f["strict"].as_bool().unwrap_or(false),
        }),
        Some("text") => Some(ResponseFormat::Text),
        _ => None,
    };
    if val.get("verbosity").is_some_and(|v| !v.is_null()) {
        req.unmapped.push("text.verbosity".into());
    }
}

// Long: one arm per input item type, a table best read whole.
// Long on purpose: one match over the Responses input item types.
fn decode_item(
    item: &Value,
    i: usize,
    req: &mut ChatRequest,
    call_names: &mut Vec<(String, String)>,
) -> Result<(), TranslateError> {
    let at = format!("input[{i}]");
    // Easy input messages have a role and no type.
    let kind = item["type"]
        .as_str()
        .unwrap_or(if item.get("role").is_some() {
            "message"
        } else {
            ""
        });
    match kind {
        "message" => {
            let parts = content_parts(&item["content"], &at)?;
            match item["role"].as_str() {
                Some("system") | Some("developer") => {
                    req.system.push(as_text_parts(&parts));
                }
                Some("user") => req.push_turn(Role::User, parts),
                Some("assistant") => req.push_turn(Role::Assistant, parts),
                other => {
                    return Err(bad(
                        format!(
                            "{at}.role {:?} is not one of user, assistant, system, developer",
                            other.unwrap_or("")
                        ),
                        "input",
                    ))
                }
            }
        }
        "function_call" | "custom_tool_call" => {
            let call = call_part(item, kind == "custom_tool_call", &at)?;
            if let Part::ToolCall { id, name, .. } = &call {
                call_names.push((id.clone(), name.clone()));
            }
            req.push_turn(Role::Assistant, vec![call]);
        }
        "function_call_output" | "custom_tool_call_output" => {
            let id = item["call_id"]
                .as_str()
                .ok_or_else(|| bad(format!("{at}.call_id is missing"), "input"))?
                .to_string();
            let name = call_names
                .iter()
                .find(|(c, _)| *c == id)
                .map(|(_, n)| n.clone());
            let content = output_parts(&item["output"], &at)?;
            req.push_turn(
                Role::User,
                vec![Part::ToolResult {
                    id,
                    name,
                    content,
                    is_error: false,
                }],
            );
        }
        "reasoning" => {
            if let Some(thinking) = reasoning_part(item) {
                req.push_turn(Role::Assistant, vec![thinking]);
            }
        }
        "item_reference" => {
            return Err(bad(
                format!(
                "{at}: item_reference needs a provider that stores responses; send the item itself"
            ),
                "input",
            ))
        }
        // Calls of hosted tools (web_search_call, local_shell_call, ...) and their outputs.
        other => req.unmapped.push(format!(
            "input.{}",
            if other.is_empty() { "item" } else { other }
        )),
    }
    Ok(())
}

/// A function or custom tool call item; a custom call's text becomes `{"input": text}`,
/// as the provider was offered it.
fn call_part(item: &Value, custom: bool, at: &str) -> Result<Part, TranslateError> {
    let id = item["call_id"]
        .as_str()
        .ok_or_else(|| bad(format!("{at}.call_id is missing"), "input"))?
        .to_string();
    let name = item["name"].as_str().unwrap_or_default().to_string();
    let arguments = if custom {
        json!({"input": item["input"].as_str().unwrap_or_default()}).to_string()
    } else {
        match &item["arguments"] {
            Value::String(s) => s.clone(),
            Value::Null => "{}".to_string(),
            other => other.to_string(),
        }
    };
    Ok(Part::ToolCall {
        id,
        name,
        arguments,
    })
}

/// A reasoning item as thinking: its summary and content text, and the signature it
/// carries when modelgate relayed one (OpenAI's own encrypted reasoning is left out).
fn reasoning_part(item: &Value) -> Option<Part> {
    let mut text = String::new();
    for s in item["summary"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(item["content"].as_array().into_iter().flatten())
    {
        if let Some(t) = s["text"].as_str() {
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str(t);
        }
    }
    let signature = item["encrypted_content"]
        .as_str()
        .and_then(Signature::from_relayed);
    (!text.is_empty() || signature.is_some()).then_some(Part::Thinking { text, signature })
}
