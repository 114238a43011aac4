//! Gemini generateContent requests <-> the internal model.

use serde_json::{json, Map, Value};

use super::wire::{read_signature, SKIP_SIGNATURE};
use crate::translate::model::*;
use crate::translate::{as_text_parts, body_object, Dropped, TranslateError};

/// Gemini 3 and later reject function calls replayed without their thought signature.
fn validates_signatures(model: &str) -> bool {
    let Some(rest) = model
        .rsplit('/')
        .next()
        .and_then(|m| m.strip_prefix("gemini-"))
    else {
        return false;
    };
    let major: String = rest.chars().take_while(char::is_ascii_digit).collect();
    major.parse::<u32>().is_ok_and(|m| m >= 3)
}

pub(super) fn call_id(n: usize) -> String {
    format!("call_{n}")
}

pub fn decode_request(v: &Value, stream: bool) -> Result<ChatRequest, TranslateError> {
    let obj = body_object(v)?;
    let mut req = ChatRequest {
        stream,
        ..Default::default()
    };
    let contents = obj
        .get("contents")
        .and_then(Value::as_array)
        .ok_or_else(|| TranslateError::param("'contents' must be an array", "contents"))?;
    decode_contents(contents, &mut req)?;
    if let Some(si) = obj.get("systemInstruction") {
        let text = si["parts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n");
        if !text.is_empty() {
            req.system.push(text);
        }
    }
    decode_tools(obj, &mut req);
    if let Some(g) = obj.get("generationConfig") {
        decode_generation_config(g, &mut req);
    }
    for k in obj.keys() {
        if !matches!(
            k.as_str(),
            "contents"
                | "systemInstruction"
                | "tools"
                | "toolConfig"
                | "generationConfig"
                | "model"
        ) {
            req.unmapped.push(k.clone());
        }
    }
    Ok(req)
}

/// Calls seen in the history so far: their count (for positional ids) and the (id, name)
/// of those not answered yet, to give function responses their call's id.
#[derive(Default)]
struct History {
    open: Vec<(String, String)>,
    calls: usize,
}

fn decode_contents(contents: &[Value], req: &mut ChatRequest) -> Result<(), TranslateError> {
    let mut history = History::default();
    for (i, c) in contents.iter().enumerate() {
        let role = match c["role"].as_str() {
            Some("model") => Role::Assistant,
            Some("user") | Some("function") | None => Role::User,
            Some(other) => {
                return Err(TranslateError::param(
                    format!("contents[{i}].role {other:?} must be user or model"),
                    "contents",
                ))
            }
        };
        let mut parts = vec![];
        for (j, p) in c["parts"].as_array().into_iter().flatten().enumerate() {
            decode_part(p, (i, j), &mut history, &mut parts, &mut req.unmapped)?;
        }
        req.push_turn(role, parts);
    }
    Ok(())
}

/// One part, `contents[i].parts[j]`, into `parts`.
fn decode_part(
    p: &Value,
    (i, j): (usize, usize),
    history: &mut History,
    parts: &mut Vec<Part>,
    unmapped: &mut Vec<String>,
) -> Result<(), TranslateError> {
    if let Some(t) = p["text"].as_str() {
        if p["thought"] == true {
            let signature = read_signature(p["thoughtSignature"].as_str());
            // A streamed thinking comes back as its pieces, then (relayed from
            // another provider) its signature alone: one thinking again, as its
            // provider issued it.
            let relayed_or_none = signature
                .as_ref()
                .is_none_or(|s| s.issuer != Issuer::Gemini);
            if let (
                true,
                Some(Part::Thinking {
                    text: prev_text,
                    signature: prev_sig @ None,
                }),
            ) = (relayed_or_none, parts.last_mut())
            {
                prev_text.push_str(t);
                *prev_sig = signature;
                return Ok(());
            }
            parts.push(Part::Thinking {
                text: t.to_string(),
                signature,
            });
        } else {
            parts.push(Part::Text(t.to_string()));
        }
    } else if let Some(d) = p.get("inlineData").or_else(|| p.get("fileData")) {
        // Only images have a place in the other protocols (no audio, video, PDF).
        let media_type = d["mimeType"].as_str().unwrap_or("image/png");
        if !media_type.starts_with("image/") {
            return Err(TranslateError::param(
                format!("contents[{i}].parts[{j}] holds {media_type}, which this model's provider cannot take (only images translate); use a Gemini model"),
                "contents",
            ));
        }
        parts.push(Part::Image(match d.get("fileUri") {
            Some(uri) => Image::Url(uri.as_str().unwrap_or_default().to_string()),
            None => Image::Base64 {
                media_type: media_type.to_string(),
                data: d["data"].as_str().unwrap_or_default().to_string(),
            },
        }));
    } else if let Some(fc) = p.get("functionCall") {
        let name = fc["name"].as_str().unwrap_or_default().to_string();
        let id = fc["id"]
            .as_str()
            .map(String::from)
            .unwrap_or_else(|| call_id(history.calls));
        history.calls += 1;
        if let Some(signature) = read_signature(p["thoughtSignature"].as_str()) {
            parts.push(Part::Thinking {
                text: String::new(),
                signature: Some(signature),
            });
        }
        history.open.push((id.clone(), name.clone()));
        parts.push(Part::ToolCall {
            id,
            name,
            arguments: fc
                .get("args")
                .map(Value::to_string)
                .unwrap_or_else(|| "{}".into()),
        });
    } else if let Some(fr) = p.get("functionResponse") {
        parts.push(function_response(fr, history));
    } else if p.get("executableCode").is_some() || p.get("codeExecutionResult").is_some() {
        unmapped.push(format!("contents[{i}].parts[{j}]"));
    }
    Ok(())
}

/// A function response, given its call's id: its own, or that of the oldest unanswered
/// call of that name.
fn function_response(fr: &Value, history: &mut History) -> Part {
    let name = fr["name"].as_str().unwrap_or_default().to_string();
    let id = match fr["id"].as_str() {
        Some(id) => id.to_string(),
        None => match history.open.iter().position(|(_, n)| *n == name) {
            Some(k) => history.open.remove(k).0,
            None => call_id(history.calls),
        },
    };
    let response = &fr["response"];
    let text = match response.get("result").or_else(|| response.get("output")) {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None if response.is_null() => String::new(),
        None => response.to_string(),
    };
    let is_error = response.get("error").is_some();
    Part::ToolResult {
        id,
        name: Some(name),
        content: vec![Part::Text(text)],
        is_error,
    }
}

fn decode_tools(obj: &Map<String, Value>, req: &mut ChatRequest) {
    for (j, t) in obj
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        match t.get("functionDeclarations").and_then(Value::as_array) {
            Some(decls) => {
                for d in decls {
                    req.tools.push(ToolDef {
                        name: d["name"].as_str().unwrap_or_default().to_string(),
                        description: d["description"].as_str().map(String::from),
                        parameters: d
                            .get("parametersJsonSchema")
                            .or_else(|| d.get("parameters"))
                            .map(lowercase_types)
                            .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
                        strict: false,
                    });
                }
            }
            None => req.unmapped.push(format!("tools[{j}]")),
        }
    }
    if let Some(fc) = obj.get("toolConfig").map(|t| &t["functionCallingConfig"]) {
        let allowed: Vec<&str> = fc["allowedFunctionNames"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        req.tool_choice = match fc["mode"].as_str() {
            Some("NONE") => Some(ToolChoice::None),
            Some("ANY") | Some("VALIDATED") if allowed.len() == 1 => {
                Some(ToolChoice::Tool(allowed[0].to_string()))
            }
            Some("ANY") => Some(ToolChoice::Required),
            Some(_) => Some(ToolChoice::Auto),
            None => None,
        };
    }
}

fn decode_generation_config(g: &Value, req: &mut ChatRequest) {
    req.max_tokens = g["maxOutputTokens"].as_u64();
    req.temperature = g["temperature"].as_f64();
    req.top_p = g["topP"].as_f64();
    req.top_k = g["topK"].as_u64();
    req.n = g["candidateCount"].as_u64();
    req.seed = g["seed"].as_i64();
    req.presence_penalty = g["presencePenalty"].as_f64();
    req.frequency_penalty = g["frequencyPenalty"].as_f64();
    req.stop = g["stopSequences"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(String::from))
        .collect();
    let schema = g
        .get("responseJsonSchema")
        .or_else(|| g.get("responseSchema"));
    req.response_format = match (g["responseMimeType"].as_str(), schema) {
        (_, Some(s)) => Some(ResponseFormat::JsonSchema {
            name: "response".into(),
            schema: lowercase_types(s),
            strict: false,
        }),
        (Some("application/json"), None) => Some(ResponseFormat::JsonObject),
        _ => None,
    };
    let t = &g["thinkingConfig"];
    if t.is_object() {
        let budget = t["thinkingBudget"].as_i64();
        if budget != Some(0) {
            req.reasoning = Some(Reasoning {
                effort: t["thinkingLevel"].as_str().map(str::to_ascii_lowercase),
                budget_tokens: budget.filter(|b| *b > 0).map(|b| b as u64),
                include_thoughts: t["includeThoughts"].as_bool().unwrap_or(false),
            });
        }
    }
}

/// Gemini's OpenAPI-style schemas write types in upper case (`STRING`); JSON Schema and
/// the other protocols want lower case.
pub fn lowercase_types(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, val)| {
                    let val = match (k.as_str(), val) {
                        ("type", Value::String(t)) => Value::String(t.to_ascii_lowercase()),
                        _ => lowercase_types(val),
                    };
                    (k.clone(), val)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(lowercase_types).collect()),
        other => other.clone(),
    }
}

pub(super) fn parse_args(arguments: &str) -> Value {
    serde_json::from_str::<Value>(arguments)
        .ok()
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}))
}

pub fn encode_request(
    req: &ChatRequest,
    model: &str,
    dropped: &mut Dropped,
) -> Result<Value, TranslateError> {
    let contents = encode_contents(req, model, dropped)?;
    let mut out = Map::new();
    out.insert("contents".into(), Value::Array(contents));
    if !req.system.is_empty() {
        out.insert(
            "systemInstruction".into(),
            json!({"parts": [{"text": req.system.join("\n\n")}]}),
        );
    }
    if !req.tools.is_empty() {
        let decls: Vec<Value> = req
            .tools
            .iter()
            .map(|t| {
                // JSON Schema as the client wrote it: `parameters` would need the proto's
                // Schema (upper-case types, an OpenAPI subset), a lossy conversion.
                let mut d = json!({"name": t.name});
                if t.parameters.is_object() {
                    d["parametersJsonSchema"] = t.parameters.clone();
                }
                if let Some(desc) = &t.description {
                    d["description"] = desc.clone().into();
                }
                d
            })
            .collect();
        out.insert("tools".into(), json!([{"functionDeclarations": decls}]));
        if let Some(c) = &req.tool_choice {
            let cfg = match c {
                ToolChoice::Auto => json!({"mode": "AUTO"}),
                ToolChoice::None => json!({"mode": "NONE"}),
                ToolChoice::Required => json!({"mode": "ANY"}),
                ToolChoice::Tool(n) => json!({"mode": "ANY", "allowedFunctionNames": [n]}),
            };
            out.insert("toolConfig".into(), json!({"functionCallingConfig": cfg}));
        }
    }
    let g = generation_config(req);
    if !g.is_empty() {
        out.insert("generationConfig".into(), Value::Object(g));
    }
    if req.user.is_some() {
        dropped.add("user");
    }
    if req.parallel_tool_calls.is_some() {
        dropped.add("parallel_tool_calls");
    }
    Ok(Value::Object(out))
}

/// The conversation as Gemini `contents`: tool results named after their calls, Gemini's
/// own signatures back on the parts they came with.
fn encode_contents(
    req: &ChatRequest,
    model: &str,
    dropped: &mut Dropped,
) -> Result<Vec<Value>, TranslateError> {
    let mut names_by_id: Vec<(&str, &str)> = vec![];
    let mut contents = vec![];
    let needs_signatures = validates_signatures(model);
    for m in &req.messages {
        let mut parts = vec![];
        // A Gemini signature seen in this turn, for the function call that follows it.
        let mut signature: Option<&str> = None;
        let mut signed_call = false;
        for p in &m.parts {
            match p {
                Part::Text(t) if t.is_empty() => {}
                Part::Text(t) => parts.push(json!({"text": t})),
                Part::Image(Image::Base64 { media_type, data }) => {
                    parts.push(json!({"inlineData": {"mimeType": media_type, "data": data}}))
                }
                Part::Image(Image::Url(_)) => {
                    return Err(TranslateError::param(
                        "this model's provider (Gemini) cannot fetch image URLs; send images inline as base64 data URLs",
                        "messages",
                    ))
                }
                Part::ToolCall { id, name, arguments } => {
                    names_by_id.push((id, name));
                    let mut part = json!({"functionCall": {"name": name, "args": parse_args(arguments)}});
                    match signature.take() {
                        Some(sig) => {
                            part["thoughtSignature"] = sig.into();
                            signed_call = true;
                        }
                        // The first call of a turn is the one Gemini 3 checks.
                        None if needs_signatures && m.role == Role::Assistant && !signed_call => {
                            part["thoughtSignature"] = SKIP_SIGNATURE.into();
                            signed_call = true;
                        }
                        None => {}
                    }
                    parts.push(part);
                }
                Part::ToolResult { id, name, content, is_error } => {
                    let name = name
                        .as_deref()
                        .or_else(|| names_by_id.iter().find(|(i, _)| i == id).map(|(_, n)| *n))
                        .unwrap_or_default();
                    let text = as_text_parts(content);
                    let key = if *is_error { "error" } else { "result" };
                    let value = serde_json::from_str::<Value>(&text).ok().filter(Value::is_object).unwrap_or(Value::String(text));
                    parts.push(json!({"functionResponse": {"name": name, "response": {key: value}}}));
                }
                Part::Thinking { text, signature: sig } => {
                    match sig.as_ref().filter(|s| s.issuer == Issuer::Gemini).map(|s| s.value.as_str()) {
                        Some(own) if text.is_empty() => signature = Some(own),
                        Some(own) => parts.push(json!({"text": text, "thought": true, "thoughtSignature": own})),
                        None => dropped.add("thinking"),
                    }
                }
            }
        }
        if parts.is_empty() {
            continue;
        }
        let role = if m.role == Role::User {
            "user"
        } else {
            "model"
        };
        contents.push(json!({"role": role, "parts": parts}));
    }
    Ok(contents)
}

fn generation_config(req: &ChatRequest) -> Map<String, Value> {
    let mut g = Map::new();
    let mut set = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            g.insert(k.to_string(), v);
        }
    };
    set("maxOutputTokens", req.max_tokens.map(Value::from));
    set("temperature", req.temperature.map(Value::from));
    set("topP", req.top_p.map(Value::from));
    set("topK", req.top_k.map(Value::from));
    set("candidateCount", req.n.map(Value::from));
    set("seed", req.seed.map(Value::from));
    set("presencePenalty", req.presence_penalty.map(Value::from));
    set("frequencyPenalty", req.frequency_penalty.map(Value::from));
    set(
        "stopSequences",
        (!req.stop.is_empty()).then(|| json!(req.stop)),
    );
    match &req.response_format {
        Some(ResponseFormat::JsonObject) => {
            set("responseMimeType", Some("application/json".into()))
        }
        Some(ResponseFormat::JsonSchema { schema, .. }) => {
            set("responseMimeType", Some("application/json".into()));
            set("responseJsonSchema", Some(schema.clone()));
        }
        _ => {}
    }
    if let Some(r) = &req.reasoning {
        set(
            "thinkingConfig",
            Some(json!({"thinkingBudget": r.budget(), "includeThoughts": r.include_thoughts})),
        );
    }
    g
}
