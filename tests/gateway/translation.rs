//! Translation through the running gateway: OpenAI clients on Anthropic providers and
//! Anthropic clients on OpenAI providers, streamed and not, errors included.

use crate::support::*;
use serde_json::{json, Value};
use std::time::Duration;

const KEY: &str = "sk-translate-test-01";

fn fixture(name: &str, file: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/{name}/{file}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// Splits an SSE fixture into its events, to be written one by one.
fn events(sse: &str) -> Vec<String> {
    sse.split_inclusive("\n\n").map(String::from).collect()
}

async fn gateway(mock: &MockProvider) -> Gateway {
    let cfg = format!(
        r#"providers:
  ant: {{ kind: anthropic, base_url: "{url}", credentials: ["cred-ant"] }}
  oai: {{ kind: openai, base_url: "{url}", credentials: ["cred-oai"] }}
models:
  claude-sonnet-4: {{ targets: [{{ provider: ant, model: claude-sonnet-4-20250514 }}], max_tokens: 8192 }}
  gpt-4o: {{ targets: [{{ provider: oai, model: gpt-4o-2024-08-06 }}] }}
keys: [{{ name: k, key: {KEY} }}]
"#,
        url = mock.url()
    );
    Gateway::start("", &cfg).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_client_on_an_anthropic_provider() {
    let mock = MockProvider::start("ant").await;
    mock.reply(|r| {
        if r.json()["stream"] == true {
            Reply::Sse(
                events(&fixture("openai_to_anthropic", "stream.provider.sse")),
                Duration::from_millis(2),
            )
        } else {
            Reply::Json(
                200,
                serde_json::from_str(&fixture("openai_to_anthropic", "response.provider.json"))
                    .unwrap(),
            )
        }
    });
    let gw = gateway(&mock).await;
    let client_req: Value =
        serde_json::from_str(&fixture("openai_to_anthropic", "request.client.json")).unwrap();
    let r = gw
        .post("/v1/chat/completions", KEY, client_req.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-modelgate-dropped"], "logprobs");
    assert_eq!(r.headers()["content-type"], "application/json");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "claude-sonnet-4");
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(v["usage"]["prompt_tokens"], 120);
    let got = mock.last();
    assert_eq!(got.uri, "/v1/messages");
    assert_eq!(got.header("x-api-key"), Some("cred-ant"));
    assert_eq!(got.header("anthropic-version"), Some("2023-06-01"));
    assert!(got.header("authorization").is_none());
    let expected: Value =
        serde_json::from_str(&fixture("openai_to_anthropic", "request.provider.json")).unwrap();
    assert_eq!(got.json(), expected);

    let mut streamed = client_req;
    streamed["stream"] = true.into();
    let r = gw
        .post("/v1/chat/completions", KEY, streamed)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let text = r.text().await.unwrap();
    assert!(text.contains("\"finish_reason\":\"tool_calls\""), "{text}");
    assert!(
        !text.contains("\"usage\""),
        "usage chunk only when the client asks for it: {text}"
    );
    assert!(text.ends_with("data: [DONE]\n\n"));
    assert_eq!(mock.last().json()["stream"], true);
    let m = gw.metrics().await;
    assert_eq!(
        metric_value(
            &m,
            "modelgate_tokens_total",
            &[("type", "prompt"), ("provider", "ant")]
        ),
        Some(145.0),
        "{m}"
    );
    // the non-stream response reported 20 cache-read tokens
    assert_eq!(
        metric_value(
            &m,
            "modelgate_tokens_total",
            &[("type", "cached"), ("provider", "ant")]
        ),
        Some(20.0),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_client_on_an_openai_provider() {
    let mock = MockProvider::start("oai").await;
    mock.reply(|r| {
        if r.json()["stream"] == true {
            Reply::Sse(
                events(&fixture("anthropic_to_openai", "stream.provider.sse")),
                Duration::from_millis(2),
            )
        } else {
            Reply::Json(
                200,
                serde_json::from_str(&fixture("anthropic_to_openai", "response.provider.json"))
                    .unwrap(),
            )
        }
    });
    let gw = gateway(&mock).await;
    let client_req: Value =
        serde_json::from_str(&fixture("anthropic_to_openai", "request.client.json")).unwrap();
    let r = client()
        .post(format!("{}/v1/messages?beta=true", gw.url))
        .header("x-api-key", KEY)
        .header("anthropic-version", "2023-06-01")
        .json(&client_req)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v,
        serde_json::from_str::<Value>(&fixture("anthropic_to_openai", "response.client.json"))
            .unwrap()
    );
    let got = mock.last();
    assert_eq!(
        got.uri, "/v1/chat/completions",
        "?beta=true is Anthropic's and is not forwarded"
    );
    assert_eq!(got.header("authorization"), Some("Bearer cred-oai"));
    assert!(got.header("anthropic-version").is_none() || got.header("x-api-key").is_none());
    assert!(
        got.header("x-api-key").is_none(),
        "the client's key never travels"
    );

    let mut streamed = client_req;
    streamed["stream"] = true.into();
    let text = client()
        .post(format!("{}/v1/messages", gw.url))
        .header("x-api-key", KEY)
        .json(&streamed)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let names: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ],
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_errors_reach_the_client_in_its_own_shape() {
    let mock = MockProvider::start("ant").await;
    mock.reply(|_| {
        Reply::Json(400, json!({"type": "error", "error": {"type": "invalid_request_error", "message": "messages: roles must alternate"}}))
    });
    let gw = gateway(&mock).await;
    let r = gw.chat(KEY, "claude-sonnet-4").await;
    let (s, code, v) = error_code(r).await;
    assert_eq!((s, code.as_str()), (400, "invalid_request"));
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("roles must alternate"),
        "{v}"
    );
    // max_tokens is capped by the model's configured limit on translated requests
    let mut body = chat("claude-sonnet-4");
    body["max_tokens"] = 128000.into();
    let _ = gw
        .post("/v1/chat/completions", KEY, body)
        .send()
        .await
        .unwrap();
    assert_eq!(mock.last().json()["max_tokens"], 8192);
    // untranslatable requests are refused before reaching the provider
    let n = mock.requests().len();
    let r = gw
        .post(
            "/v1/embeddings",
            KEY,
            json!({"model": "claude-sonnet-4", "input": "x"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 501);
    assert_eq!(mock.requests().len(), n);
}
