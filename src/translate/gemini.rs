//! Gemini generateContent <-> the internal model. Field names follow
//! ai.google.dev/api/generate-content (REST, camelCase). Gemini function calls may carry
//! no id: ids are synthesised from their position in the conversation, so the same history
//! always yields the same ids, and function responses are matched back by name.

use serde_json::{json, Map, Value};

use super::model::*;
use super::{as_text_parts, Dropped, TranslateError};

/// Gemini-issued thought signatures carry this tag in the internal model, so encoders for
/// other providers know to leave them out and the Gemini encoder knows to hand them back.
pub const SIGNATURE_TAG: &str = "gemini:";

/// Accepted by Gemini 3 in place of a thought signature on a function call whose real
/// signature was lost (history written by another provider or a client that drops it);
/// documented in ai.google.dev/gemini-api/docs/thought-signatures.
const SKIP_SIGNATURE: &str = "skip_thought_signature_validator";

/// A thoughtSignature in the internal model: Gemini's own get the Gemini tag; one that
/// modelgate relayed from another provider (Anthropic's) is unwrapped back to it.
fn tag_signature(sig: Option<&str>) -> Option<String> {
    let sig = sig.filter(|s| !s.is_empty())?;
    Some(match sig.strip_prefix(RELAYED_SIGNATURE_PREFIX) {
        Some(foreign) => foreign.to_string(),
        None => format!("{SIGNATURE_TAG}{sig}"),
    })
}

/// An internal signature as a thoughtSignature for a Gemini client: Gemini's bare, any
/// other provider's wrapped so it comes back recognised.
fn client_signature(sig: &str) -> String {
    match sig.strip_prefix(SIGNATURE_TAG) {
        Some(own) => own.to_string(),
        None => format!("{RELAYED_SIGNATURE_PREFIX}{sig}"),
    }
}

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

// ---------------------------------------------------------------- requests

fn call_id(n: usize) -> String {
    format!("call_{n}")
}

pub fn decode_request(v: &Value, stream: bool) -> Result<ChatRequest, TranslateError> {
    let obj = v
        .as_object()
        .ok_or_else(|| TranslateError::new("the body must be a JSON object"))?;
    let mut req = ChatRequest {
        stream,
        ..Default::default()
    };
    let contents = obj
        .get("contents")
        .and_then(Value::as_array)
        .ok_or_else(|| TranslateError::param("'contents' must be an array", "contents"))?;
    // (id, name) of calls not answered yet, to give function responses their call's id.
    let mut open_calls: Vec<(String, String)> = vec![];
    let mut calls = 0usize;
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
            if let Some(t) = p["text"].as_str() {
                if p["thought"] == true {
                    let signature = tag_signature(p["thoughtSignature"].as_str());
                    // A streamed thinking comes back as its pieces, then (relayed from
                    // another provider) its signature alone: one thinking again, as its
                    // provider issued it.
                    let relayed_or_none = signature
                        .as_ref()
                        .is_none_or(|s| !s.starts_with(SIGNATURE_TAG));
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
                        continue;
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
                    .unwrap_or_else(|| call_id(calls));
                calls += 1;
                if let Some(signature) = tag_signature(p["thoughtSignature"].as_str()) {
                    parts.push(Part::Thinking {
                        text: String::new(),
                        signature: Some(signature),
                    });
                }
                open_calls.push((id.clone(), name.clone()));
                parts.push(Part::ToolCall {
                    id,
                    name,
                    arguments: fc
                        .get("args")
                        .map(Value::to_string)
                        .unwrap_or_else(|| "{}".into()),
                });
            } else if let Some(fr) = p.get("functionResponse") {
                let name = fr["name"].as_str().unwrap_or_default().to_string();
                let id = match fr["id"].as_str() {
                    Some(id) => id.to_string(),
                    None => match open_calls.iter().position(|(_, n)| *n == name) {
                        Some(k) => open_calls.remove(k).0,
                        None => call_id(calls),
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
                parts.push(Part::ToolResult {
                    id,
                    name: Some(name),
                    content: vec![Part::Text(text)],
                    is_error,
                });
            } else if p.get("executableCode").is_some() || p.get("codeExecutionResult").is_some() {
                req.unmapped.push(format!("contents[{i}].parts[{j}]"));
            }
        }
        req.push_turn(role, parts);
    }
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
    if let Some(g) = obj.get("generationConfig") {
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

/// Schema keywords Gemini's `parameters` (an OpenAPI 3.0 subset) accepts.
const GEMINI_SCHEMA_KEYS: &[&str] = &[
    "type",
    "format",
    "title",
    "description",
    "nullable",
    "enum",
    "maxItems",
    "minItems",
    "properties",
    "required",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "pattern",
    "example",
    "anyOf",
    "propertyOrdering",
    "default",
    "items",
    "minimum",
    "maximum",
];

/// A JSON Schema made acceptable to Gemini: unsupported keywords dropped, `const` as a
/// one-value enum, `["T", "null"]` types as `T` + `nullable`.
pub fn gemini_schema(v: &Value) -> Value {
    let Value::Object(m) = v else {
        return v.clone();
    };
    let mut out = Map::new();
    for (k, val) in m {
        match k.as_str() {
            "type" => match val {
                Value::Array(types) => {
                    let non_null: Vec<&Value> = types.iter().filter(|t| *t != "null").collect();
                    if non_null.len() < types.len() {
                        out.insert("nullable".into(), true.into());
                    }
                    if let Some(t) = non_null.first() {
                        out.insert("type".into(), (*t).clone());
                    }
                }
                other => {
                    out.insert("type".into(), other.clone());
                }
            },
            "const" => {
                out.insert("enum".into(), json!([val]));
            }
            "properties" => {
                let props = val
                    .as_object()
                    .map(|p| {
                        p.iter()
                            .map(|(name, s)| (name.clone(), gemini_schema(s)))
                            .collect::<Map<_, _>>()
                    })
                    .unwrap_or_default();
                out.insert(k.clone(), Value::Object(props));
            }
            "items" => {
                out.insert(k.clone(), gemini_schema(val));
            }
            "anyOf" => {
                out.insert(
                    k.clone(),
                    Value::Array(
                        val.as_array()
                            .into_iter()
                            .flatten()
                            .map(gemini_schema)
                            .collect(),
                    ),
                );
            }
            k if GEMINI_SCHEMA_KEYS.contains(&k) => {
                out.insert(k.to_string(), val.clone());
            }
            _ => {}
        }
    }
    Value::Object(out)
}

fn parse_args(arguments: &str) -> Value {
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
                    match sig.as_deref().and_then(|s| s.strip_prefix(SIGNATURE_TAG)) {
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
                let mut d = json!({"name": t.name, "parameters": gemini_schema(&t.parameters)});
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

// ---------------------------------------------------------------- responses

pub fn finish_from(s: &str) -> FinishReason {
    match s {
        "MAX_TOKENS" => FinishReason::Length,
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => {
            FinishReason::ContentFilter
        }
        _ => FinishReason::Stop,
    }
}

fn finish_str(f: FinishReason) -> &'static str {
    match f {
        FinishReason::Length => "MAX_TOKENS",
        FinishReason::ContentFilter => "SAFETY",
        _ => "STOP",
    }
}

pub fn usage_from(u: &Value) -> Option<Usage> {
    let prompt = u["promptTokenCount"].as_u64()?;
    let thoughts = u["thoughtsTokenCount"].as_u64();
    Some(Usage {
        prompt_tokens: prompt,
        completion_tokens: u["candidatesTokenCount"].as_u64().unwrap_or(0) + thoughts.unwrap_or(0),
        cached_tokens: u["cachedContentTokenCount"].as_u64(),
        reasoning_tokens: thoughts,
    })
}

fn usage_json(u: &Usage) -> Value {
    let mut v = json!({
        "promptTokenCount": u.prompt_tokens,
        "candidatesTokenCount": u.completion_tokens - u.reasoning_tokens.unwrap_or(0).min(u.completion_tokens),
        "totalTokenCount": u.prompt_tokens + u.completion_tokens,
    });
    if let Some(c) = u.cached_tokens {
        v["cachedContentTokenCount"] = c.into();
    }
    if let Some(r) = u.reasoning_tokens {
        v["thoughtsTokenCount"] = r.into();
    }
    v
}

/// The parts of a response chunk, as internal parts (calls get positional ids from `next_call`).
fn decode_parts(parts: &Value, next_call: &mut usize) -> Vec<Part> {
    let mut out = vec![];
    for p in parts.as_array().into_iter().flatten() {
        if let Some(t) = p["text"].as_str() {
            if p["thought"] == true {
                out.push(Part::Thinking {
                    text: t.to_string(),
                    signature: tag_signature(p["thoughtSignature"].as_str()),
                });
            } else if !t.is_empty() {
                out.push(Part::Text(t.to_string()));
            }
        } else if let Some(fc) = p.get("functionCall") {
            let id = fc["id"]
                .as_str()
                .map(String::from)
                .unwrap_or_else(|| call_id(*next_call));
            *next_call += 1;
            // Gemini 3 wants this back with the call: it travels as a signed, empty thought.
            if let Some(signature) = tag_signature(p["thoughtSignature"].as_str()) {
                out.push(Part::Thinking {
                    text: String::new(),
                    signature: Some(signature),
                });
            }
            out.push(Part::ToolCall {
                id,
                name: fc["name"].as_str().unwrap_or_default().to_string(),
                arguments: fc
                    .get("args")
                    .map(Value::to_string)
                    .unwrap_or_else(|| "{}".into()),
            });
        }
    }
    out
}

pub fn decode_response(v: &Value) -> Result<ChatResponse, TranslateError> {
    let c = &v["candidates"][0];
    if !c.is_object() {
        let reason = v["promptFeedback"]["blockReason"].as_str();
        return match reason {
            Some(r) => Ok(ChatResponse {
                id: v["responseId"].as_str().unwrap_or_default().to_string(),
                parts: vec![],
                finish: Some(FinishReason::ContentFilter),
                usage: usage_from(&v["usageMetadata"]),
            })
            .inspect(|_| log::debug!("gemini blocked the prompt: {r}")),
            None => Err(TranslateError::new(
                "the provider's response has no candidates",
            )),
        };
    }
    let parts = decode_parts(&c["content"]["parts"], &mut 0);
    let has_calls = parts.iter().any(|p| matches!(p, Part::ToolCall { .. }));
    let finish = c["finishReason"].as_str().map(finish_from).map(|f| {
        if has_calls && f == FinishReason::Stop {
            FinishReason::ToolCalls
        } else {
            f
        }
    });
    Ok(ChatResponse {
        id: v["responseId"].as_str().unwrap_or_default().to_string(),
        parts,
        finish,
        usage: usage_from(&v["usageMetadata"]),
    })
}

fn encode_parts(parts: &[Part]) -> Vec<Value> {
    parts
        .iter()
        .filter_map(|p| match p {
            Part::Text(t) => Some(json!({"text": t})),
            Part::Thinking { text, signature } => {
                let mut v = json!({"text": text, "thought": true});
                if let Some(s) = signature.as_ref().filter(|s| !s.is_empty()) {
                    v["thoughtSignature"] = client_signature(s).into();
                }
                Some(v)
            }
            Part::ToolCall {
                id,
                name,
                arguments,
            } => Some(
                json!({"functionCall": {"id": id, "name": name, "args": parse_args(arguments)}}),
            ),
            _ => None,
        })
        .collect()
}

pub fn encode_response(r: &ChatResponse, public_model: &str) -> Value {
    let mut out = json!({
        "candidates": [{
            "content": {"role": "model", "parts": encode_parts(&r.parts)},
            "finishReason": finish_str(r.finish.unwrap_or(FinishReason::Stop)),
            "index": 0,
        }],
        "modelVersion": public_model,
        "responseId": r.id,
    });
    if let Some(u) = &r.usage {
        out["usageMetadata"] = usage_json(u);
    }
    out
}

// ---------------------------------------------------------------- streams

/// Gemini stream chunks (each a whole GenerateContentResponse) -> events. Gemini streams
/// have no end marker: the chunk with a finishReason is the last.
#[derive(Default)]
pub struct StreamDecoder {
    started: bool,
    calls: usize,
    finished: bool,
}

impl StreamDecoder {
    pub fn feed(&mut self, data: &str, out: &mut Vec<StreamEvent>) {
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
    pub fn end(&mut self, out: &mut Vec<StreamEvent>) {
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
    finish: Option<FinishReason>,
    usage: Option<Usage>,
    done: bool,
}

impl StreamEncoder {
    pub fn new(public_model: &str, sse: bool) -> Self {
        StreamEncoder {
            model: public_model.to_string(),
            id: String::new(),
            sse,
            chunks: 0,
            pending_call: None,
            finish: None,
            usage: None,
            done: false,
        }
    }

    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    pub fn is_sse(&self) -> bool {
        self.sse
    }

    fn chunk(&mut self, parts: Vec<Value>, finish: Option<FinishReason>, out: &mut Vec<u8>) {
        let mut c = json!({"content": {"role": "model", "parts": parts}, "index": 0});
        if let Some(f) = finish {
            c["finishReason"] = finish_str(f).into();
        }
        let mut v = json!({"candidates": [c], "modelVersion": self.model, "responseId": self.id});
        if finish.is_some() {
            if let Some(u) = &self.usage {
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

    pub fn encode(&mut self, ev: &StreamEvent, out: &mut Vec<u8>) {
        if self.done {
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
            StreamEvent::ThinkingSignature(sig) if !sig.is_empty() => self.chunk(
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
            StreamEvent::Finish(f) => self.finish = Some(*f),
            StreamEvent::Usage(u) => self.usage = Some(*u),
            StreamEvent::Error { message } => {
                let e = json!({"error": {"code": 502, "message": message, "status": "INTERNAL"}});
                self.write(&e, out);
                if !self.sse {
                    out.extend_from_slice(b"]");
                }
                self.done = true;
            }
            StreamEvent::Done => self.finish(out),
        }
    }

    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        self.flush_call(out);
        let f = self.finish.unwrap_or(FinishReason::Stop);
        self.chunk(vec![], Some(f), out);
        if !self.sse {
            out.extend_from_slice(b"]");
        }
        self.done = true;
    }
}
