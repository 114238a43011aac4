//! What the coding CLIs send, through the running gateway: Claude Code's requests on
//! OpenAI and Gemini providers, Gemini CLI's on OpenAI and Anthropic providers, and the
//! side calls the CLIs make (token counts, model lists, warm-ups).

use crate::support::*;
use serde_json::{json, Value};
use std::time::Duration;

const KEY: &str = "sk-cli-test-0001";

fn fixture(file: &str) -> Value {
    let path = format!("{}/tests/fixtures/cli/{file}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

async fn gateway(mock: &MockProvider) -> Gateway {
    let url = mock.url();
    let cfg = Config::new()
        .provider_with("oai", Kind::OpenAi, &url, "credentials: [cred-oai]")
        .provider_with("oai-b", Kind::OpenAi, &format!("{url}/b"), "credentials: [cred-oai-b]")
        .provider_with("gem", Kind::Gemini, &url, "credentials: [cred-gem]")
        .provider_with("ant", Kind::Anthropic, &url, "credentials: [cred-ant]")
        .model(
            "claude-sonnet-4-5",
            "targets: [{ provider: oai, model: gpt-4o }, { provider: oai-b, model: gpt-4o }], max_tokens: 16384",
        )
        .route_as("claude-on-gemini", "gem", "gemini-3-pro-preview")
        .route_as("claude-native", "ant", "claude-sonnet-4-5-20250929")
        .route_as("gemini-2.5-pro", "oai", "gpt-4.1")
        .route_as("gemini-on-claude", "ant", "claude-sonnet-4-5-20250929")
        .key("cli", KEY)
        .yaml();
    Gateway::start("", &cfg).await
}

fn claude_post(gw: &Gateway, path: &str, body: &Value) -> reqwest::RequestBuilder {
    client()
        .post(format!("{}{path}", gw.url))
        .header("x-api-key", KEY)
        .header("anthropic-version", "2023-06-01")
        .header(
            "anthropic-beta",
            "claude-code-20250219,interleaved-thinking-2025-05-14",
        )
        .json(body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_code_on_an_openai_provider() {
    let mock = MockProvider::start("oai").await;
    mock.reply(|r| {
        if r.json()["stream"] == true {
            Reply::Sse(
                chat_stream_events("gpt-4o", &["Two ", "files."]),
                Duration::from_millis(1),
            )
        } else {
            Reply::Json(200, chat_completion("gpt-4o", "ok"))
        }
    });
    let gw = gateway(&mock).await;
    let req = fixture("claude_code.request.json");
    let r = claude_post(&gw, "/v1/messages?beta=true", &req)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let dropped = r.headers()["x-modelgate-dropped"]
        .to_str()
        .unwrap()
        .to_string();
    for field in ["context_management", "tools.defer_loading", "reasoning"] {
        assert!(
            dropped.split(',').any(|d| d == field),
            "{field} in {dropped}"
        );
    }
    let text = r.text().await.unwrap();
    let names = sse_event_names(&text);
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ],
        "{text}"
    );
    let sent = mock.last();
    assert_eq!(sent.uri, "/v1/chat/completions");
    assert!(
        sent.header("anthropic-beta").is_none() && sent.header("anthropic-version").is_none(),
        "Anthropic's headers stay with Anthropic providers"
    );
    let body = sent.json();
    assert_eq!(body["model"], "gpt-4o");
    assert_eq!(
        body["max_tokens"], 16384,
        "128000 clamped to the model's max_tokens"
    );
    assert!(
        body.get("reasoning_effort").is_none(),
        "gpt-4o takes no reasoning_effort"
    );
    assert_eq!(
        body["messages"][0],
        json!({"role": "system", "content": "You are Claude Code, Anthropic's official CLI for Claude.\nWorking directory: /repo\n\nThe user switched to plan mode."})
    );
    assert_eq!(body["messages"][2]["tool_calls"][0]["id"], "toolu_01Bash");
    assert_eq!(
        body["messages"][3],
        json!({"role": "tool", "tool_call_id": "toolu_01Bash", "content": "README.md\nsrc"})
    );
    let tools = body["tools"].as_array().unwrap();
    assert_eq!(tools.len(), 2);
    for t in tools {
        assert!(t["function"]["parameters"].get("$schema").is_none(), "{t}");
    }
    let user = body["user"].as_str().unwrap();
    assert_eq!(user.len(), 64, "a long user id is sent as its SHA-256");
    assert!(!body.to_string().contains("cache_control"));

    // A provider 400 comes back in Anthropic's shape, and is not retried on the second target.
    mock.reply(|_| {
        Reply::Json(400, json!({"error": {"message": "This model's maximum context length is 128000 tokens.", "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}}))
    });
    let n = mock.requests().len();
    let r = claude_post(&gw, "/v1/messages?beta=true", &req)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.headers()["x-modelgate-attempts"], "1");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("maximum context length"));
    assert_eq!(mock.requests().len(), n + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_code_on_gemini_3_keeps_thought_signatures() {
    let mock = MockProvider::start("gem").await;
    mock.reply(|_| {
        Reply::Json(200, json!({"candidates": [{"content": {"role": "model", "parts": [
            {"functionCall": {"name": "Bash", "args": {"command": "cat README.md"}}, "thoughtSignature": "c2lnLWdlbWluaS0x"}]},
            "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 50, "candidatesTokenCount": 9, "totalTokenCount": 59},
            "modelVersion": "gemini-3-pro-preview", "responseId": "g3-1"}))
    });
    let gw = gateway(&mock).await;
    let mut req = fixture("claude_code.request.json");
    req["model"] = "claude-on-gemini".into();
    req["stream"] = false.into();
    let r = claude_post(&gw, "/v1/messages", &req).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let first: Value = r.json().await.unwrap();
    let sent = mock.last().json();
    // History written by another provider has no signature: Gemini 3's documented bypass.
    assert_eq!(
        sent["contents"][1]["parts"][1]["thoughtSignature"], "skip_thought_signature_validator",
        "{sent}"
    );
    assert_eq!(
        sent["generationConfig"]["thinkingConfig"]["includeThoughts"],
        true
    );
    // The answer's call is a tool_use; its signature rides in a thinking block that the
    // client replays, and goes back to Gemini on the call.
    let content = first["content"].as_array().unwrap();
    let thinking = content.iter().find(|b| b["type"] == "thinking").unwrap();
    assert_eq!(thinking["thinking"], "");
    let call = content.iter().find(|b| b["type"] == "tool_use").unwrap();
    assert_eq!(first["stop_reason"], "tool_use");
    let mut next = req.clone();
    let messages = next["messages"].as_array_mut().unwrap();
    messages.push(json!({"role": "assistant", "content": content}));
    messages.push(json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": call["id"], "content": "# repo"}]}));
    let r = claude_post(&gw, "/v1/messages", &next)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let sent = mock.last().json();
    let last_model_turn = sent["contents"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|c| c["role"] == "model")
        .unwrap()
        .clone();
    assert_eq!(
        last_model_turn["parts"][0],
        json!({"functionCall": {"name": "Bash", "args": {"command": "cat README.md"}}, "thoughtSignature": "c2lnLWdlbWluaS0x"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gemini_cli_on_openai_and_anthropic_providers() {
    let mock = MockProvider::start("mixed").await;
    mock.reply(|r| {
        if r.uri.starts_with("/v1/messages") {
            Reply::Json(200, json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
                "content": [{"type": "text", "text": "{\"summary\":\"ok\"}"}], "stop_reason": "end_turn", "stop_sequence": null,
                "usage": {"input_tokens": 30, "output_tokens": 5}}))
        } else {
            Reply::Json(200, chat_completion("gpt-4.1", "{\"summary\":\"ok\"}"))
        }
    });
    let gw = gateway(&mock).await;
    let req = fixture("gemini_cli.request.json");
    let post = |model: &str| {
        client()
            .post(format!("{}/v1beta/models/{model}:generateContent", gw.url))
            .header("x-goog-api-key", KEY)
            .json(&req)
    };
    let r = post("gemini-2.5-pro").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["candidates"][0]["content"]["parts"][0]["text"],
        "{\"summary\":\"ok\"}"
    );
    let body = mock.last().json();
    assert_eq!(
        body["messages"][0],
        json!({"role": "system", "content": "You are an interactive CLI agent.\nToday is Monday."})
    );
    assert_eq!(
        body["response_format"]["json_schema"]["schema"],
        json!({"type": "object", "properties": {"summary": {"type": "string"}, "files": {"type": "array", "items": {"type": "string"}}}, "required": ["summary"]})
    );
    assert_eq!(
        body["tools"][0]["function"]["parameters"]["properties"]["absolute_path"],
        json!({"type": "string"}),
        "parametersJsonSchema is a plain JSON schema"
    );
    assert_eq!(
        body["tools"][1]["function"]["parameters"]["properties"]["pattern"],
        json!({"type": "string"}),
        "parameters' upper-case types become JSON Schema's"
    );

    let r = post("gemini-on-claude").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body = mock.last().json();
    assert_eq!(body["thinking"]["type"], "enabled");
    assert!(
        body["thinking"]["budget_tokens"].as_u64().unwrap() >= 16384,
        "thinkingLevel HIGH"
    );
    // Structured output as Messages' own field, the schema closed as Anthropic requires.
    assert_eq!(
        body["output_config"]["format"],
        json!({"type": "json_schema", "schema": {"type": "object", "properties": {"summary": {"type": "string"}, "files": {"type": "array", "items": {"type": "string"}}}, "required": ["summary"], "additionalProperties": false}}),
        "{body}"
    );
    assert!(!body["system"].as_str().unwrap().contains("JSON Schema"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_side_calls_token_counts_model_lists_and_warm_ups() {
    let mock = MockProvider::start("ant").await;
    mock.reply(|r| {
        if r.uri.starts_with("/v1/messages/count_tokens") {
            Reply::Json(200, json!({"input_tokens": 1234}))
        } else {
            Reply::Json(
                404,
                json!({"type": "error", "error": {"type": "not_found_error", "message": "nope"}}),
            )
        }
    });
    let gw = gateway(&mock).await;
    let body =
        json!({"model": "claude-native", "messages": [{"role": "user", "content": "count me"}]});
    let r = claude_post(&gw, "/v1/messages/count_tokens?beta=true", &body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["input_tokens"], 1234);
    let got = mock.last();
    assert_eq!(got.uri, "/v1/messages/count_tokens?beta=true");
    assert_eq!(
        got.header("anthropic-beta"),
        Some("claude-code-20250219,interleaved-thinking-2025-05-14")
    );
    assert_eq!(got.json()["model"], "claude-sonnet-4-5-20250929");
    // Other kinds: an estimate, said to be one.
    let body = json!({"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "count me please, all of it"}]});
    let r = claude_post(&gw, "/v1/messages/count_tokens?beta=true", &body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-modelgate-token-count"], "estimated");
    assert!(
        r.json::<Value>().await.unwrap()["input_tokens"]
            .as_u64()
            .unwrap()
            > 0
    );

    let anthropic_list = |query: String| {
        client()
            .get(format!("{}/v1/models?{query}", gw.url))
            .header("x-api-key", KEY)
            .header("anthropic-version", "2023-06-01")
            .send()
    };
    let v: Value = anthropic_list("limit=2".into())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(v["data"][0]["type"], "model");
    assert_eq!(v["has_more"], true);
    let after = format!("limit=10&after_id={}", v["last_id"].as_str().unwrap());
    let v: Value = anthropic_list(after).await.unwrap().json().await.unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 3);
    assert_eq!(v["has_more"], false);

    let n = mock.requests().len();
    for path in ["/", "/api/hello"] {
        let r = client()
            .head(format!("{}{path}", gw.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "HEAD {path}");
    }
    let r = client().get(format!("{}/", gw.url)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(mock.requests().len(), n, "warm-ups never reach a provider");
    let m = gw.metrics().await;
    assert!(
        !m.contains("status=\"401\""),
        "no auth failures counted: {m}"
    );
}
