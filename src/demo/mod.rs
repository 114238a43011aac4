//! `--demo`: a built-in config and an in-process mock provider on a loopback port, so a new
//! user can curl the gateway with no provider keys. The mock speaks all three wire
//! protocols natively (OpenAI Chat, Anthropic Messages, Gemini generateContent, each
//! hand-written here, not produced by the gateway's translators), checks that it receives
//! the provider credential (never the client's key), streams its answer word by word, and
//! calls the first tool it is offered so tool round trips can be tried.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ReusedHttpStream};
use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession;
use pingora::server::ShutdownWatch;
use serde_json::{json, Value};

mod objects;
mod strict;

pub const DEMO_CLIENT_KEY: &str = "sk-modelgate-demo";
pub const DEMO_PROVIDER_CREDENTIAL: &str = "demo-provider-credential";
/// The demo's Anthropic thinking: its text and the prefix of the signatures it issues
/// (and accepts back).
const THINKING_TEXT: &str = "Thinking about the demo answer.";
const DEMO_SIGNATURE_PREFIX: &str = "demo-sig-";
/// A demo key with small limits, to see 429s and the x-ratelimit-* headers.
pub const DEMO_LIMITED_KEY: &str = "sk-modelgate-demo-limited";
/// A demo key with a budget of 2 requests a day, to see `insufficient_quota`.
pub const DEMO_BUDGET_KEY: &str = "sk-modelgate-demo-budget";
/// The demo's management secret (the management API answers on loopback only), to try
/// the keys API, the usage API and `modelgate keys`.
pub const DEMO_ADMIN_KEY: &str = "sk-modelgate-demo-admin";

/// The demo config: one mock provider, a model with an alias, a wildcard and one key.
pub fn config_yaml(listen: &str, metrics_listen: &str, mock_addr: &str) -> String {
    format!(
        r#"server:
  listen: "{listen}"
  metrics_listen: "{metrics_listen}"
  threads: 1
  grace_period: 5s
  drain_delay: 0s
providers:
  demo:
    kind: openai
    base_url: "http://{mock_addr}"
    credentials: ["{DEMO_PROVIDER_CREDENTIAL}"]
    responses_api: false
  demo-anthropic:
    kind: anthropic
    base_url: "http://{mock_addr}"
    credentials: ["{DEMO_PROVIDER_CREDENTIAL}"]
  demo-gemini:
    kind: gemini
    base_url: "http://{mock_addr}"
    credentials: ["{DEMO_PROVIDER_CREDENTIAL}"]
models:
  gpt-4o-mini:
    aliases: [demo]
    targets: [{{ provider: demo, model: demo-model-1 }}]
  claude-demo:
    targets: [{{ provider: demo-anthropic, model: claude-demo-1 }}]
  gemini-demo:
    targets: [{{ provider: demo-gemini, model: gemini-demo-1 }}]
  "demo-*":
    targets: [{{ provider: demo }}]
keys:
  - name: demo
    key: "{DEMO_CLIENT_KEY}"
  - name: demo-limited
    key: "{DEMO_LIMITED_KEY}"
    limits: {{ rpm: 2, tpm: 20000, concurrency: 4 }}
  - name: demo-budget
    key: "{DEMO_BUDGET_KEY}"
    budgets: [{{ requests: 2, period: day }}]
management:
  secret_key: "{DEMO_ADMIN_KEY}"
# The mock's models at list prices, so the demo's usage API shows costs.
pricing:
  demo-model-1: {{ input: 0.15, cached_input: 0.075, output: 0.60 }}
  claude-demo-1: {{ input: 3.00, cached_input: 0.30, cache_write: 3.75, output: 15.00 }}
  gemini-demo-1: {{ input: 0.30, cached_input: 0.03, output: 2.50 }}
"#
    )
}

/// A minimal OpenAI-compatible provider: chat completions (JSON and SSE), completions,
/// embeddings and the model list.
#[derive(Default)]
pub struct MockProvider {
    objects: objects::DemoObjects,
}

fn last_user_text(req: &Value) -> String {
    let content = req["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .map(|m| &m["content"]);
    let text = match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join(" "),
        _ => req["prompt"].as_str().unwrap_or_default().to_string(),
    };
    text.chars().take(200).collect()
}

fn answer_for(req: &Value) -> String {
    if let Some(result) = last_tool_result(req) {
        return format!("The tool returned: {result}");
    }
    format!(
        "Hello from the modelgate demo provider! You said: {}",
        last_user_text(req)
    )
}

/// The content of the conversation's last message when it is a tool result.
fn last_tool_result(req: &Value) -> Option<String> {
    let last = req["messages"].as_array()?.last()?;
    (last["role"] == "tool").then(|| match &last["content"] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

/// When tools are offered and no tool has answered yet, the demo calls the first tool,
/// filling each required string argument with "demo" — enough to try a tool round trip.
fn tool_call_for(req: &Value) -> Option<(String, String)> {
    let tool = req["tools"].as_array()?.first()?;
    if last_tool_result(req).is_some() || req["tool_choice"] == "none" {
        return None;
    }
    let f = &tool["function"];
    let mut args = serde_json::Map::new();
    for name in f["parameters"]["required"].as_array().into_iter().flatten() {
        if let Some(n) = name.as_str() {
            args.insert(n.to_string(), "demo".into());
        }
    }
    Some((
        f["name"].as_str()?.to_string(),
        Value::Object(args).to_string(),
    ))
}

/// A tool-call id unique within the conversation, as the real API's are.
fn call_id(req: &Value) -> String {
    format!(
        "call_demo_{}",
        req["messages"].as_array().map_or(0, Vec::len)
    )
}

fn word_count(s: &str) -> u64 {
    s.split_whitespace().count() as u64
}

async fn send(session: &mut ServerSession, status: u16, ctype: &str, body: Vec<u8>) -> bool {
    let Ok(mut h) = ResponseHeader::build(status, Some(2)) else {
        return false;
    };
    let ok = h.insert_header("content-type", ctype).is_ok()
        && h.insert_header("content-length", body.len().to_string())
            .is_ok();
    ok && session.write_response_header(Box::new(h)).await.is_ok()
        && session
            .write_response_body(Bytes::from(body), true)
            .await
            .is_ok()
}

async fn stream_chat(session: &mut ServerSession, req: &Value) -> bool {
    let Ok(mut h) = ResponseHeader::build(200, Some(3)) else {
        return false;
    };
    if h.insert_header("content-type", "text/event-stream")
        .is_err()
        || h.insert_header("transfer-encoding", "chunked").is_err()
        || h.insert_header("cache-control", "no-cache").is_err()
        || session.write_response_header(Box::new(h)).await.is_err()
    {
        return false;
    }
    let model = req["model"].as_str().unwrap_or("demo-model-1");
    let answer = answer_for(req);
    let chunk = |delta: Value, finish: Value| {
        json!({"id": "chatcmpl-demo", "object": "chat.completion.chunk", "created": 1700000000u64,
               "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    let mut events = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    if let Some((name, args)) = tool_call_for(req) {
        let mid = (0..=args.len() / 2)
            .rev()
            .find(|i| args.is_char_boundary(*i))
            .unwrap_or(0);
        let (a, b) = args.split_at(mid);
        events.push(chunk(
            json!({"tool_calls": [{"index": 0, "id": call_id(req), "type": "function", "function": {"name": name, "arguments": a}}]}),
            Value::Null,
        ));
        events.push(chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": b}}]}),
            Value::Null,
        ));
        events.push(chunk(json!({}), json!("tool_calls")));
    } else {
        for (i, w) in answer.split(' ').enumerate() {
            let piece = if i == 0 {
                w.to_string()
            } else {
                format!(" {w}")
            };
            events.push(chunk(json!({"content": piece}), Value::Null));
        }
        events.push(chunk(json!({}), json!("stop")));
    }
    if req["stream_options"]["include_usage"] == true {
        let prompt = word_count(&last_user_text(req));
        let completion = word_count(&answer);
        events.push(json!({"id": "chatcmpl-demo", "object": "chat.completion.chunk", "created": 1700000000u64,
            "model": model, "choices": [],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}}));
    }
    for e in events {
        let frame = format!("data: {e}\n\n");
        if session
            .write_response_body(Bytes::from(frame), false)
            .await
            .is_err()
        {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    session
        .write_response_body(Bytes::from_static(b"data: [DONE]\n\n"), true)
        .await
        .is_ok()
}

/// What the demo model does next: answer in text, or call the first tool offered.
enum Plan {
    Text(String),
    Call { name: String, args: Value },
}

/// `required`: the tool's required arguments, each filled with "demo".
fn plan(user_text: &str, tool_result: Option<String>, tool: Option<(&str, &Value)>) -> Plan {
    if let Some(r) = tool_result {
        return Plan::Text(format!("The tool returned: {r}"));
    }
    if let Some((name, required)) = tool {
        let args: serde_json::Map<String, Value> = required
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| n.as_str().map(|n| (n.to_string(), Value::from("demo"))))
            .collect();
        return Plan::Call {
            name: name.to_string(),
            args: Value::Object(args),
        };
    }
    Plan::Text(format!(
        "Hello from the modelgate demo provider! You said: {}",
        user_text.chars().take(200).collect::<String>()
    ))
}

fn words(text: &str) -> Vec<String> {
    text.split(' ')
        .enumerate()
        .map(|(i, w)| {
            if i == 0 {
                w.to_string()
            } else {
                format!(" {w}")
            }
        })
        .collect()
}

async fn start_sse(session: &mut ServerSession) -> bool {
    let Ok(mut h) = ResponseHeader::build(200, Some(3)) else {
        return false;
    };
    h.insert_header("content-type", "text/event-stream").is_ok()
        && h.insert_header("transfer-encoding", "chunked").is_ok()
        && h.insert_header("cache-control", "no-cache").is_ok()
        && session.write_response_header(Box::new(h)).await.is_ok()
}

async fn send_events(session: &mut ServerSession, frames: Vec<String>) -> bool {
    let n = frames.len();
    for (i, f) in frames.into_iter().enumerate() {
        if session
            .write_response_body(Bytes::from(f), i + 1 == n)
            .await
            .is_err()
        {
            return false;
        }
        if i + 1 < n {
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
    }
    true
}

/// Anthropic Messages: `POST /v1/messages`, JSON or the SSE event sequence.
// Long on purpose: a test double answering every Messages shape (JSON, stream, tools, thinking) in one place.
async fn anthropic(session: &mut ServerSession, req: &Value) -> bool {
    let model = req["model"].as_str().unwrap_or("claude-demo-1").to_string();
    // The conversation's last user turn (Claude Code adds system reminders after it).
    let last = req["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .cloned()
        .unwrap_or(Value::Null);
    let blocks: Vec<Value> = match &last["content"] {
        Value::String(s) => vec![json!({"type": "text", "text": s})],
        Value::Array(b) => b.clone(),
        _ => vec![],
    };
    let text: String = blocks
        .iter()
        .filter_map(|b| b["text"].as_str())
        .collect::<Vec<_>>()
        .join(" ");
    let tool_result =
        blocks
            .iter()
            .find(|b| b["type"] == "tool_result")
            .map(|b| match &b["content"] {
                Value::String(s) => s.clone(),
                Value::Array(parts) => parts
                    .iter()
                    .filter_map(|p| p["text"].as_str())
                    .collect::<Vec<_>>()
                    .join(""),
                _ => String::new(),
            });
    let tool = req["tools"]
        .get(0)
        .filter(|_| req["tool_choice"]["type"] != "none")
        .and_then(|t| Some((t["name"].as_str()?, &t["input_schema"]["required"])));
    let plan = plan(&text, tool_result, tool);
    let input_tokens = word_count(&text).max(1);
    // Ids and signatures differ per turn, as the real API's do.
    let turn = req["messages"].as_array().map_or(0, Vec::len);
    let call_id = format!("toolu_demo_{turn}");
    let thinking = (req["thinking"]["type"] == "enabled" || req["thinking"]["type"] == "adaptive")
        .then(|| (THINKING_TEXT, format!("{DEMO_SIGNATURE_PREFIX}{turn}")));
    if req["stream"] != true {
        let (block, stop, out) = match &plan {
            Plan::Text(t) => (
                json!({"type": "text", "text": t}),
                "end_turn",
                word_count(t),
            ),
            Plan::Call { name, args } => (
                json!({"type": "tool_use", "id": call_id, "name": name, "input": args}),
                "tool_use",
                5,
            ),
        };
        let mut content = vec![];
        if let Some((text, sig)) = &thinking {
            content.push(json!({"type": "thinking", "thinking": text, "signature": sig}));
        }
        content.push(block);
        let v = json!({"id": "msg_demo", "type": "message", "role": "assistant", "model": model, "content": content,
            "stop_reason": stop, "stop_sequence": null, "usage": {"input_tokens": input_tokens, "output_tokens": out}});
        return send(session, 200, "application/json", v.to_string().into_bytes()).await;
    }
    if !start_sse(session).await {
        return false;
    }
    let ev = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
    let mut frames = vec![ev(
        "message_start",
        json!({"type": "message_start", "message": {"id": "msg_demo", "type": "message",
        "role": "assistant", "model": model, "content": [], "stop_reason": null, "stop_sequence": null,
        "usage": {"input_tokens": input_tokens, "output_tokens": 1}}}),
    )];
    let mut index = 0;
    if let Some((text, sig)) = &thinking {
        frames.push(ev("content_block_start", json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}})));
        frames.push(ev("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": text}})));
        frames.push(ev("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": sig}})));
        frames.push(ev(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        ));
        index = 1;
    }
    let (stop, out) = match &plan {
        Plan::Text(t) => {
            frames.push(ev("content_block_start", json!({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}})));
            for w in words(t) {
                frames.push(ev("content_block_delta", json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": w}})));
            }
            ("end_turn", word_count(t))
        }
        Plan::Call { name, args } => {
            frames.push(ev(
                "content_block_start",
                json!({"type": "content_block_start", "index": index,
                "content_block": {"type": "tool_use", "id": call_id, "name": name, "input": {}}}),
            ));
            let a = args.to_string();
            let mid = (0..=a.len() / 2)
                .rev()
                .find(|i| a.is_char_boundary(*i))
                .unwrap_or(0);
            for part in [&a[..mid], &a[mid..]] {
                frames.push(ev(
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": index,
                    "delta": {"type": "input_json_delta", "partial_json": part}}),
                ));
            }
            ("tool_use", 5)
        }
    };
    frames.push(ev(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": index}),
    ));
    frames.push(ev(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null},
        "usage": {"output_tokens": out}}),
    ));
    frames.push(ev("message_stop", json!({"type": "message_stop"})));
    send_events(session, frames).await
}

/// Gemini: `POST /v1beta/models/{model}:generateContent` and `:streamGenerateContent`
/// (SSE with `alt=sse`, otherwise one JSON array).
// Long on purpose: a test double answering generateContent and its stream in one place.
async fn gemini(
    session: &mut ServerSession,
    req: &Value,
    model: &str,
    stream: bool,
    sse: bool,
) -> bool {
    let last = req["contents"]
        .as_array()
        .and_then(|c| c.last())
        .cloned()
        .unwrap_or(Value::Null);
    let parts = last["parts"].as_array().cloned().unwrap_or_default();
    let text: String = parts
        .iter()
        .filter_map(|p| p["text"].as_str())
        .collect::<Vec<_>>()
        .join(" ");
    let tool_result = parts
        .iter()
        .find_map(|p| p.get("functionResponse"))
        .map(|fr| match &fr["response"]["result"] {
            Value::String(s) => s.clone(),
            Value::Null => fr["response"].to_string(),
            other => other.to_string(),
        });
    let decl = &req["tools"][0]["functionDeclarations"][0];
    let required = if decl["parametersJsonSchema"].is_object() {
        &decl["parametersJsonSchema"]["required"]
    } else {
        &decl["parameters"]["required"]
    };
    let tool = decl["name"]
        .as_str()
        .filter(|_| req["toolConfig"]["functionCallingConfig"]["mode"] != "NONE")
        .map(|n| (n, required));
    let plan = plan(&text, tool_result, tool);
    let prompt = word_count(&text).max(1);
    let chunk = |parts: Value, finish: Option<&str>, out: u64| {
        let mut c = json!({"content": {"role": "model", "parts": parts}, "index": 0});
        if let Some(f) = finish {
            c["finishReason"] = f.into();
        }
        json!({"candidates": [c], "usageMetadata": {"promptTokenCount": prompt, "candidatesTokenCount": out, "totalTokenCount": prompt + out},
               "modelVersion": model, "responseId": "demo-response"})
    };
    let chunks: Vec<Value> = match &plan {
        Plan::Call { name, args } => vec![chunk(
            json!([{"functionCall": {"name": name, "args": args}}]),
            Some("STOP"),
            5,
        )],
        Plan::Text(t) if !stream => vec![chunk(json!([{"text": t}]), Some("STOP"), word_count(t))],
        Plan::Text(t) => {
            let ws = words(t);
            let n = ws.len();
            ws.into_iter()
                .enumerate()
                .map(|(i, w)| {
                    chunk(
                        json!([{"text": w}]),
                        (i + 1 == n).then_some("STOP"),
                        i as u64 + 1,
                    )
                })
                .collect()
        }
    };
    if !stream {
        let body = chunks.into_iter().next().unwrap_or(Value::Null).to_string();
        return send(session, 200, "application/json", body.into_bytes()).await;
    }
    if sse {
        if !start_sse(session).await {
            return false;
        }
        return send_events(
            session,
            chunks
                .iter()
                .map(|c| format!("data: {c}\r\n\r\n"))
                .collect(),
        )
        .await;
    }
    let body = format!(
        "[{}]",
        chunks
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join(",\r\n")
    );
    send(session, 200, "application/json", body.into_bytes()).await
}

// Long on purpose: the mock's router, one arm per endpoint it serves.
async fn handle(objects: &objects::DemoObjects, session: &mut ServerSession) -> bool {
    let path = session.req_header().uri.path().to_string();
    let query = session
        .req_header()
        .uri
        .query()
        .unwrap_or_default()
        .to_string();
    let header = |name: &str| {
        session
            .req_header()
            .headers
            .get(name)
            .is_some_and(|v| v.as_bytes() == DEMO_PROVIDER_CREDENTIAL.as_bytes())
    };
    let (anthropic_ok, gemini_ok) = (header("x-api-key"), header("x-goog-api-key"));
    let gemini_call = path
        .strip_prefix("/v1beta/models/")
        .or_else(|| path.strip_prefix("/v1/models/"))
        .and_then(|rest| rest.split_once(':'))
        .map(|(m, action)| (m.to_string(), action.to_string()));
    let method = session.req_header().method.to_string();
    if path == "/v1/messages" || gemini_call.is_some() || path.contains("/operations/") {
        let mut body = Vec::new();
        while let Ok(Some(chunk)) = session.read_request_body().await {
            body.extend_from_slice(&chunk);
        }
        let call = gemini_call.as_ref().map(|(m, a)| (m.as_str(), a.as_str()));
        if gemini_ok {
            if let Some((status, ctype, out)) = objects.gemini(&method, &path, call, &body) {
                return send(session, status, ctype, out).await;
            }
        }
        let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let gemini_error = gemini_call
            .as_ref()
            .and_then(|_| strict::gemini(&req).err());
        return match gemini_call {
            None if anthropic_ok => {
                match strict::anthropic(&req, |s| s.starts_with(DEMO_SIGNATURE_PREFIX)) {
                    Ok(()) => anthropic(session, &req).await,
                    Err(message) => {
                        let v = json!({"type": "error", "error": {"type": "invalid_request_error", "message": message}});
                        send(session, 400, "application/json", v.to_string().into_bytes()).await
                    }
                }
            }
            Some((_, action)) if gemini_ok && action != "countTokens" && gemini_error.is_some() => {
                let message = gemini_error.unwrap_or_default();
                let v = json!({"error": {"code": 400, "message": message, "status": "INVALID_ARGUMENT"}});
                send(session, 400, "application/json", v.to_string().into_bytes()).await
            }
            Some((model, action)) if gemini_ok => {
                let sse = query.split('&').any(|kv| kv == "alt=sse");
                gemini(
                    session,
                    &req,
                    &model,
                    action == "streamGenerateContent",
                    sse,
                )
                .await
            }
            _ => {
                let v = json!({"error": {"message": "the demo provider expects its own credential", "type": "authentication_error"}});
                send(session, 401, "application/json", v.to_string().into_bytes()).await
            }
        };
    }
    let authorized = session
        .req_header()
        .headers
        .get("authorization")
        .is_some_and(|v| v.as_bytes() == format!("Bearer {DEMO_PROVIDER_CREDENTIAL}").as_bytes());
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = session.read_request_body().await {
        body.extend_from_slice(&chunk);
    }
    let err = |status: u16, msg: &str| {
        (
            status,
            json!({"error": {"message": msg, "type": "invalid_request_error", "code": null, "param": null}}),
        )
    };
    if !authorized {
        let (s, v) = err(401, "the demo provider expects its own credential");
        return send(session, s, "application/json", v.to_string().into_bytes()).await;
    }
    let content_type = session
        .req_header()
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    if let Some((status, ctype, out)) = objects.openai(&method, &path, &content_type, &body).await {
        return send(session, status, ctype, out).await;
    }
    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let model = req["model"].as_str().unwrap_or("demo-model-1").to_string();
    if path == "/v1/chat/completions" {
        if let Err(message) = strict::openai_chat(&req) {
            let v = json!({"error": {"message": message, "type": "invalid_request_error", "code": null, "param": null}});
            return send(session, 400, "application/json", v.to_string().into_bytes()).await;
        }
    }
    let (status, value) = match path.as_str() {
        "/v1/chat/completions" if req["stream"] == true => return stream_chat(session, &req).await,
        "/v1/chat/completions" => {
            let answer = answer_for(&req);
            let (p, c) = (word_count(&last_user_text(&req)), word_count(&answer));
            let (message, finish) = match tool_call_for(&req) {
                Some((name, args)) => (
                    json!({"role": "assistant", "content": null, "tool_calls": [
                        {"id": call_id(&req), "type": "function", "function": {"name": name, "arguments": args}}]}),
                    "tool_calls",
                ),
                None => (json!({"role": "assistant", "content": answer}), "stop"),
            };
            (
                200,
                json!({"id": "chatcmpl-demo", "object": "chat.completion", "created": 1700000000u64, "model": model,
                "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
                "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}}),
            )
        }
        "/v1/completions" => {
            let answer = answer_for(&req);
            (
                200,
                json!({"id": "cmpl-demo", "object": "text_completion", "created": 1700000000u64, "model": model,
                "choices": [{"index": 0, "text": answer, "logprobs": null, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": word_count(&answer), "total_tokens": 1 + word_count(&answer)}}),
            )
        }
        "/v1/embeddings" => (
            200,
            json!({"object": "list", "model": model,
            "data": [{"object": "embedding", "index": 0, "embedding": [0.1, -0.2, 0.3]}],
            "usage": {"prompt_tokens": 2, "total_tokens": 2}}),
        ),
        // Uploads: the form is not read here (the gateway already checked it); the answer
        // has the shape the endpoint's clients expect.
        "/v1/audio/transcriptions" | "/v1/audio/translations" => (
            200,
            json!({"text": format!("(the demo's transcript of a {}-byte upload)", body.len()),
                   "usage": {"type": "duration", "seconds": 1}}),
        ),
        "/v1/images/edits" | "/v1/images/variations" => (
            200,
            // A 1x1 transparent PNG.
            json!({"created": 1700000000u64, "data": [{"b64_json": "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="}]}),
        ),
        _ => err(404, "the demo provider does not serve this path"),
    };
    send(
        session,
        status,
        "application/json",
        value.to_string().into_bytes(),
    )
    .await
}

#[async_trait]
impl HttpServerApp for MockProvider {
    async fn process_new_http(
        self: &Arc<Self>,
        mut session: ServerSession,
        _shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        if !matches!(session.read_request().await, Ok(true)) {
            return None;
        }
        session.set_keepalive(Some(60));
        if !handle(&self.objects, &mut session).await {
            return None;
        }
        let settings = HttpPersistentSettings::for_session(&session);
        match session.finish().await {
            Ok(Some(s)) => Some(ReusedHttpStream::from_reusable_stream(s, settings)),
            _ => None,
        }
    }
}
