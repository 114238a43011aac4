//! `--demo`: a built-in config and an in-process mock OpenAI-compatible provider on a
//! loopback port, so a new user can curl the gateway with no provider keys. The mock
//! checks that it receives the provider credential (never the client's key) and streams
//! its answer word by word like a real model.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ReusedHttpStream};
use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession;
use pingora::server::ShutdownWatch;
use serde_json::{json, Value};

pub const DEMO_CLIENT_KEY: &str = "sk-modelgate-demo";
pub const DEMO_PROVIDER_CREDENTIAL: &str = "demo-provider-credential";
/// A demo key with small limits, to see 429s and the x-ratelimit-* headers.
pub const DEMO_LIMITED_KEY: &str = "sk-modelgate-demo-limited";

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
models:
  gpt-4o-mini:
    aliases: [demo]
    targets: [{{ provider: demo, model: demo-model-1 }}]
  "demo-*":
    targets: [{{ provider: demo }}]
keys:
  - name: demo
    key: "{DEMO_CLIENT_KEY}"
  - name: demo-limited
    key: "{DEMO_LIMITED_KEY}"
    limits: {{ rpm: 2, tpm: 20000, concurrency: 4 }}
"#
    )
}

/// A minimal OpenAI-compatible provider: chat completions (JSON and SSE), completions,
/// embeddings and the model list.
pub struct MockProvider;

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
            json!({"tool_calls": [{"index": 0, "id": "call_demo_1", "type": "function", "function": {"name": name, "arguments": a}}]}),
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

async fn handle(session: &mut ServerSession) -> bool {
    let path = session.req_header().uri.path().to_string();
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
    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let model = req["model"].as_str().unwrap_or("demo-model-1").to_string();
    let (status, value) = match path.as_str() {
        "/v1/chat/completions" if req["stream"] == true => return stream_chat(session, &req).await,
        "/v1/chat/completions" => {
            let answer = answer_for(&req);
            let (p, c) = (word_count(&last_user_text(&req)), word_count(&answer));
            let (message, finish) = match tool_call_for(&req) {
                Some((name, args)) => (
                    json!({"role": "assistant", "content": null, "tool_calls": [
                        {"id": "call_demo_1", "type": "function", "function": {"name": name, "arguments": args}}]}),
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
        if !handle(&mut session).await {
            return None;
        }
        let settings = HttpPersistentSettings::for_session(&session);
        match session.finish().await {
            Ok(Some(s)) => Some(ReusedHttpStream::from_reusable_stream(s, settings)),
            _ => None,
        }
    }
}
