//! OpenAI Responses (`POST /v1/responses`) <-> the internal model, as a client protocol:
//! request decoder, response encoder and stream encoder. Providers that speak Responses get
//! the client's bytes untouched, so there is no provider-side codec. Field and event names
//! follow platform.openai.com/docs/api-reference/responses and .../responses-streaming.

use serde_json::{json, Map, Value};

use super::model::*;
use super::{parse_data_url, TranslateError};

/// A reasoning item's `encrypted_content` carries a relayed provider signature under this
/// prefix; OpenAI's own encrypted reasoning means nothing to another provider and is left
/// out.
const SIGNATURE_PREFIX: &str = RELAYED_SIGNATURE_PREFIX;

// ---------------------------------------------------------------- requests

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

/// What the response side needs from a Responses request: its free-form tool names and
/// the settings to repeat.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ClientRequest {
    pub freeform_tools: Vec<String>,
    pub tool_namespaces: Vec<(String, String)>,
    pub echo: Map<String, Value>,
}

impl ClientRequest {
    pub fn of(req: &ChatRequest) -> Self {
        ClientRequest {
            freeform_tools: req.freeform_tools.clone(),
            tool_namespaces: req.tool_namespaces.clone(),
            echo: req.echo.clone(),
        }
    }

    fn is_freeform(&self, name: &str) -> bool {
        self.freeform_tools.iter().any(|n| n == name)
    }

    /// A function-call item as the client's tools define it: `custom_tool_call` for a
    /// free-form tool, with its `namespace` for a namespaced one.
    fn call_item(&self, call_id: &str, name: &str, arguments: &str, status: &str) -> Value {
        let mut item = call_item(call_id, name, arguments, self.is_freeform(name), status);
        if let Some((_, ns)) = self.tool_namespaces.iter().find(|(n, _)| n == name) {
            item["namespace"] = ns.clone().into();
        }
        item
    }
}

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
    }
}

fn decode_tools(val: &Value, req: &mut ChatRequest) -> Result<(), TranslateError> {
    let push = |t: &Value, at: String, req: &mut ChatRequest| -> Result<(), TranslateError> {
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
            }),
            ("function", None) | ("custom", None) => {
                return Err(bad(format!("{at}.name is missing"), "tools"))
            }
            ("custom", Some(name)) => {
                req.tools.push(freeform_tool(t, name));
                req.freeform_tools.push(name.to_string());
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
                push(inner, format!("tools[{j}].tools[{k}]"), req)?;
                if let (Some(name), false) = (inner["name"].as_str(), ns.is_empty()) {
                    req.tool_namespaces.push((name.to_string(), ns.to_string()));
                }
            }
        } else {
            push(t, format!("tools[{j}]"), req)?;
        }
    }
    Ok(())
}

pub fn decode_request(v: &Value) -> Result<ChatRequest, TranslateError> {
    let obj = v
        .as_object()
        .ok_or_else(|| TranslateError::new("the body must be a JSON object"))?;
    let mut req = ChatRequest::default();
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
            req.echo.insert((*k).to_string(), v.clone());
        }
    }
    for (k, val) in obj {
        match k.as_str() {
            "model" | "input" | "instructions" => {}
            "max_output_tokens" => req.max_tokens = val.as_u64(),
            "temperature" => req.temperature = val.as_f64(),
            "top_p" => req.top_p = val.as_f64(),
            "stream" => req.stream = val.as_bool().unwrap_or(false),
            "tools" => decode_tools(val, &mut req)?,
            "tool_choice" => {
                req.tool_choice = match val {
                    Value::String(s) if s == "none" => Some(ToolChoice::None),
                    Value::String(s) if s == "required" => Some(ToolChoice::Required),
                    Value::String(_) => Some(ToolChoice::Auto),
                    Value::Object(_) => match (val["type"].as_str(), val["name"].as_str()) {
                        (Some("function") | Some("custom"), Some(n)) => {
                            Some(ToolChoice::Tool(n.to_string()))
                        }
                        // The allowed subset has no equivalent: any tool may be called.
                        (Some("allowed_tools"), _) => {
                            req.unmapped.push("tool_choice.allowed_tools".into());
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
            "text" => {
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
            // signature exists (see SIGNATURE_PREFIX).
            // Stored responses need a provider that stores them.
            "store" if val == true => req.unmapped.push("store".into()),
            "store" | "include" | "stream_options" | "background" => {}
            "truncation" if val == "disabled" => {}
            _ if val.is_null() => {}
            other => req.unmapped.push(other.to_string()),
        }
    }
    Ok(req)
}

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
                    req.system.push(super::as_text_parts(&parts));
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
            let id = item["call_id"]
                .as_str()
                .ok_or_else(|| bad(format!("{at}.call_id is missing"), "input"))?
                .to_string();
            let name = item["name"].as_str().unwrap_or_default().to_string();
            let arguments = if kind == "custom_tool_call" {
                json!({"input": item["input"].as_str().unwrap_or_default()}).to_string()
            } else {
                match &item["arguments"] {
                    Value::String(s) => s.clone(),
                    Value::Null => "{}".to_string(),
                    other => other.to_string(),
                }
            };
            call_names.push((id.clone(), name.clone()));
            req.push_turn(
                Role::Assistant,
                vec![Part::ToolCall {
                    id,
                    name,
                    arguments,
                }],
            );
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
                .and_then(|c| c.strip_prefix(SIGNATURE_PREFIX))
                .map(String::from);
            if !text.is_empty() || signature.is_some() {
                req.push_turn(Role::Assistant, vec![Part::Thinking { text, signature }]);
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

// ---------------------------------------------------------------- responses

/// A Responses id from a provider id: `resp_...`.
fn response_id(id: &str) -> String {
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

fn usage_json(u: &Usage) -> Value {
    json!({
        "input_tokens": u.prompt_tokens,
        "input_tokens_details": {"cached_tokens": u.cached_tokens.unwrap_or(0)},
        "output_tokens": u.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens.unwrap_or(0)},
        "total_tokens": u.prompt_tokens + u.completion_tokens,
    })
}

/// `status` and `incomplete_details` for a finish reason.
fn status_of(finish: Option<FinishReason>) -> (&'static str, Value) {
    match finish {
        Some(FinishReason::Length) => ("incomplete", json!({"reason": "max_output_tokens"})),
        Some(FinishReason::ContentFilter) => ("incomplete", json!({"reason": "content_filter"})),
        _ => ("completed", Value::Null),
    }
}

/// What identifies a response: its id, the public model name and the creation time.
struct Envelope<'a> {
    id: &'a str,
    model: &'a str,
    created: u64,
    echo: &'a Map<String, Value>,
}

/// The response object around `output`, in the shape of a Responses API response.
fn response_object(
    env: &Envelope,
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
        "usage": usage.map(usage_json),
        "user": null,
        "metadata": {},
    });
    if let Some(o) = v.as_object_mut() {
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

fn message_item(id: &str, text: &str, status: &str) -> Value {
    let content = if status == "in_progress" {
        json!([])
    } else {
        json!([{"type": "output_text", "text": text, "annotations": [], "logprobs": []}])
    };
    json!({"id": id, "type": "message", "status": status, "role": "assistant", "content": content})
}

/// A reasoning item; started (`response.output_item.added`) with no text nor signature.
fn reasoning_item(id: &str, text: &str, signature: Option<&str>) -> Value {
    let mut v = json!({"id": id, "type": "reasoning", "summary": []});
    if !text.is_empty() {
        v["summary"] = json!([{"type": "summary_text", "text": text}]);
    }
    if let Some(sig) = signature {
        v["encrypted_content"] = format!("{SIGNATURE_PREFIX}{sig}").into();
    }
    v
}

fn call_item(call_id: &str, name: &str, arguments: &str, freeform: bool, status: &str) -> Value {
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

pub fn encode_response(
    r: &ChatResponse,
    public_model: &str,
    created: u64,
    client: &ClientRequest,
) -> Value {
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
                output.push(reasoning_item(&item_id, t, signature.as_deref()));
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
    let env = Envelope {
        id: &id,
        model: public_model,
        created,
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

// ---------------------------------------------------------------- streams

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
        signature: Option<String>,
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
    client: ClientRequest,
    seq: u64,
    started: bool,
    /// Completed output items, for `response.completed`.
    output: Vec<Option<Value>>,
    open: Option<OpenItem>,
    calls: Vec<OpenCall>,
    finish: Option<FinishReason>,
    usage: Option<Usage>,
    done: bool,
}

impl StreamEncoder {
    pub fn new(public_model: &str, created: u64, client: ClientRequest) -> Self {
        StreamEncoder {
            id: "resp_modelgate".to_string(),
            model: public_model.to_string(),
            created,
            client,
            seq: 0,
            started: false,
            output: Vec::new(),
            open: None,
            calls: Vec::new(),
            finish: None,
            usage: None,
            done: false,
        }
    }

    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    pub fn set_client_request(&mut self, client: ClientRequest) {
        self.client = client;
    }

    fn emit(&mut self, out: &mut Vec<u8>, kind: &str, mut data: Value) {
        data["type"] = kind.into();
        data["sequence_number"] = self.seq.into();
        self.seq += 1;
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(kind.as_bytes());
        out.extend_from_slice(b"\ndata: ");
        out.extend_from_slice(data.to_string().as_bytes());
        out.extend_from_slice(b"\n\n");
    }

    fn response(&self, status: &str, incomplete: Value, error: Value) -> Value {
        let output = self.output.iter().flatten().cloned().collect();
        let usage = if status == "in_progress" {
            None
        } else {
            self.usage.as_ref()
        };
        let env = Envelope {
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
        self.emit(out, "response.created", json!({"response": r}));
        self.emit(out, "response.in_progress", json!({"response": r}));
    }

    fn new_index(&mut self) -> usize {
        self.output.push(None);
        self.output.len() - 1
    }

    fn item_id(&self, prefix: &str, index: usize) -> String {
        format!("{prefix}_{}_{index}", self.id.trim_start_matches("resp_"))
    }

    /// Starts a reasoning item; with a signature only, it carries no summary part.
    fn open_reasoning(&mut self, out: &mut Vec<u8>, signature: Option<String>) {
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
                let status = match self.finish {
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
                let item = reasoning_item(&id, &text, signature.as_deref());
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
        let status = match self.finish {
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

    pub fn encode(&mut self, ev: &StreamEvent, out: &mut Vec<u8>) {
        if self.done {
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
                    let data = json!({"item_id": id, "output_index": *index, "content_index": 0, "delta": t, "logprobs": []});
                    self.emit(out, "response.output_text.delta", data);
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
                    let data = json!({"item_id": id, "output_index": *index, "summary_index": 0, "delta": t});
                    self.emit(out, "response.reasoning_summary_text.delta", data);
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
                    let data = json!({"item_id": format!("fc_{}", c.call_id), "output_index": c.index, "delta": fragment});
                    self.emit(out, "response.function_call_arguments.delta", data);
                }
            }
            StreamEvent::Finish(f) => self.finish = Some(*f),
            StreamEvent::Usage(u) => self.usage = Some(*u),
            StreamEvent::Error { message } => {
                self.ensure_started(out);
                self.fail(out, "server_error", message);
            }
            StreamEvent::Done => self.finish(out),
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
        self.emit(out, "response.failed", json!({"response": r}));
        self.done = true;
    }

    /// Closes every open item and sends `response.completed` (or `response.incomplete`).
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        self.ensure_started(out);
        self.close_open(out);
        self.close_calls(out);
        let (status, incomplete) = status_of(self.finish);
        let r = self.response(status, incomplete, Value::Null);
        let kind = if status == "completed" {
            "response.completed"
        } else {
            "response.incomplete"
        };
        self.emit(out, kind, json!({"response": r}));
        self.done = true;
    }
}

/// The end of a passthrough Responses stream the provider broke off: `error` then
/// `response.failed`. The provider's sequence numbers are not tracked on that path, so
/// these are numbered far above any a real stream reaches, keeping them increasing.
pub fn stream_failure(code: &str, message: &str) -> Vec<u8> {
    let mut e = StreamEncoder::new("", 0, ClientRequest::default());
    e.started = true;
    e.seq = 1 << 40;
    let mut out = Vec::new();
    e.fail(&mut out, code, message);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freeform_tools_round_trip_as_custom_calls() {
        let req = decode_request(&json!({
            "model": "m", "instructions": "be brief",
            "input": [{"role": "user", "content": [{"type": "input_text", "text": "patch it"}]},
                      {"type": "custom_tool_call", "call_id": "c1", "name": "apply_patch", "input": "*** Begin Patch"},
                      {"type": "custom_tool_call_output", "call_id": "c1", "output": "ok"}],
            "tools": [{"type": "custom", "name": "apply_patch", "description": "Edit files",
                       "format": {"type": "grammar", "syntax": "lark", "definition": "start: x"}},
                      {"type": "web_search"}],
        }))
        .unwrap();
        assert_eq!(req.system, vec!["be brief"]);
        assert_eq!(req.freeform_tools, vec!["apply_patch"]);
        assert!(req.tools[0]
            .description
            .as_deref()
            .unwrap()
            .contains("start: x"));
        assert_eq!(req.unmapped, vec!["tools.web_search"]);
        assert_eq!(
            req.messages[1].parts[0],
            Part::ToolCall {
                id: "c1".into(),
                name: "apply_patch".into(),
                arguments: r#"{"input":"*** Begin Patch"}"#.into()
            }
        );
        let resp = ChatResponse {
            id: "x".into(),
            parts: vec![Part::ToolCall {
                id: "c2".into(),
                name: "apply_patch".into(),
                arguments: r#"{"input":"diff"}"#.into(),
            }],
            finish: Some(FinishReason::ToolCalls),
            usage: None,
        };
        let v = encode_response(&resp, "pub", 0, &ClientRequest::of(&req));
        assert_eq!(v["output"][0]["type"], "custom_tool_call");
        assert_eq!(v["output"][0]["input"], "diff");
    }

    #[test]
    fn namespaced_tools_are_flattened_and_their_calls_name_the_namespace() {
        let req = decode_request(&json!({"model": "m", "input": "spawn one",
            "tools": [{"type": "namespace", "name": "multi_agent_v1", "description": "agents",
                       "tools": [{"type": "function", "name": "spawn_agent", "parameters": {"type": "object"}}]},
                      {"type": "function", "name": "exec_command", "parameters": {"type": "object"}}]}))
        .unwrap();
        let names: Vec<&str> = req.tools.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["spawn_agent", "exec_command"]);
        let resp = ChatResponse {
            id: "x".into(),
            parts: vec![
                Part::ToolCall {
                    id: "c1".into(),
                    name: "spawn_agent".into(),
                    arguments: "{}".into(),
                },
                Part::ToolCall {
                    id: "c2".into(),
                    name: "exec_command".into(),
                    arguments: "{}".into(),
                },
            ],
            finish: Some(FinishReason::ToolCalls),
            usage: None,
        };
        let v = encode_response(&resp, "pub", 0, &ClientRequest::of(&req));
        assert_eq!(v["output"][0]["namespace"], "multi_agent_v1");
        assert!(v["output"][1].get("namespace").is_none());
        assert_eq!(
            v["tools"][0]["type"], "namespace",
            "the request's tools are repeated"
        );
    }

    #[test]
    fn stored_conversation_references_are_refused_clearly() {
        let e =
            decode_request(&json!({"model": "m", "input": "hi", "previous_response_id": "resp_1"}))
                .unwrap_err();
        assert!(e.message.contains("whole conversation"));
    }

    #[test]
    fn stream_numbers_events_and_ends_with_completed() {
        let mut e = StreamEncoder::new("pub", 7, ClientRequest::default());
        let mut out = vec![];
        for ev in [
            StreamEvent::Start { id: "abc".into() },
            StreamEvent::TextDelta("He".into()),
            StreamEvent::TextDelta("llo".into()),
            StreamEvent::ToolCallStart {
                index: 0,
                id: "call_1".into(),
                name: "f".into(),
            },
            StreamEvent::ToolCallArgs {
                index: 0,
                fragment: "{}".into(),
            },
            StreamEvent::Finish(FinishReason::ToolCalls),
            StreamEvent::Usage(Usage {
                prompt_tokens: 3,
                completion_tokens: 2,
                ..Usage::default()
            }),
            StreamEvent::Done,
        ] {
            e.encode(&ev, &mut out);
        }
        let text = String::from_utf8(out).unwrap();
        let datas: Vec<Value> = text
            .split("\n\n")
            .filter_map(|ev| ev.lines().find_map(|l| l.strip_prefix("data: ")))
            .map(|d| serde_json::from_str(d).unwrap())
            .collect();
        for (i, d) in datas.iter().enumerate() {
            assert_eq!(d["sequence_number"], i as u64);
        }
        let last = datas.last().unwrap();
        assert_eq!(last["type"], "response.completed");
        assert_eq!(last["response"]["id"], "resp_abc");
        assert_eq!(last["response"]["output"][0]["content"][0]["text"], "Hello");
        assert_eq!(last["response"]["output"][1]["call_id"], "call_1");
        assert_eq!(last["response"]["usage"]["total_tokens"], 5);
    }
}
