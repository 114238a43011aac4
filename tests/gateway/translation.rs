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

/// A JSON fixture, parsed.
fn json_fixture(name: &str, file: &str) -> Value {
    serde_json::from_str(&fixture(name, file)).unwrap()
}

/// Splits an SSE fixture into its events, to be written one by one.
fn events(sse: &str) -> Vec<String> {
    sse.split_inclusive("\n\n").map(String::from).collect()
}

async fn gateway(mock: &MockProvider) -> Gateway {
    gateway_at(&mock.url()).await
}

/// Both providers at `url`.
async fn gateway_at(url: &str) -> Gateway {
    let cfg = Config::new()
        .provider_with("ant", Kind::Anthropic, url, "credentials: [cred-ant]")
        .provider_with("oai", Kind::OpenAi, url, "credentials: [cred-oai]")
        .model(
            "claude-sonnet-4",
            "targets: [{ provider: ant, model: claude-sonnet-4-20250514 }], max_tokens: 8192",
        )
        .route_as("gpt-4o", "oai", "gpt-4o-2024-08-06")
        .key("k", KEY)
        .yaml();
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
                json_fixture("openai_to_anthropic", "response.provider.json"),
            )
        }
    });
    let gw = gateway(&mock).await;
    let client_req: Value = json_fixture("openai_to_anthropic", "request.client.json");
    let r = gw
        .post("/v1/chat/completions", KEY, client_req.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-modelgate-dropped"], "logprobs,temperature");
    assert_eq!(r.headers()["content-type"], "application/json");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "claude-sonnet-4");
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(v["usage"]["prompt_tokens"], 120);
    let got = mock.last();
    assert_eq!(got.uri, "/v1/messages");
    assert_eq!(got.header("x-api-key"), Some("cred-ant"));
    assert_eq!(got.header("anthropic-version"), Some("2026-10-21"));
    assert!(got.header("authorization").is_none());
    let expected: Value = json_fixture("openai_to_anthropic", "request.provider.json");
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
    // Metrics are counted in the logging phase, just after the body reached the client.
    wait_metric(
        &gw,
        "modelgate_tokens_total",
        &[("type", "prompt"), ("provider", "ant")],
        145.0,
    )
    .await;
    let m = gw.metrics().await;
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
                json_fixture("anthropic_to_openai", "response.provider.json"),
            )
        }
    });
    let gw = gateway(&mock).await;
    let client_req: Value = json_fixture("anthropic_to_openai", "request.client.json");
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
    assert!(
        got.header("anthropic-version").is_none(),
        "Anthropic headers are not sent to an OpenAI provider"
    );
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
    let names = sse_event_names(&text);
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
    // A 200 that is not JSON (a wrong base_url serving a web page) is not passed on as a 200.
    mock.reply(|_| Reply::Raw(200, "text/html; charset=utf-8", "<html>login</html>".into()));
    let r = gw.chat(KEY, "claude-sonnet-4").await;
    let (s, code, v) = error_code(r).await;
    assert_eq!((s, code.as_str()), (502, "upstream_error"));
    assert!(
        v["error"]["message"].as_str().unwrap().contains("base_url"),
        "{v}"
    );
    mock.reply(|_| {
        Reply::Json(400, json!({"type": "error", "error": {"type": "invalid_request_error", "message": "messages: roles must alternate"}}))
    });
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_clients_reach_every_kind_and_pass_through_where_spoken() {
    let mock = MockProvider::start("mixed").await;
    mock.reply(|r| match (r.uri.as_str(), r.json()["stream"] == true) {
        // An OpenAI-compatible server without the Responses API.
        ("/v1/responses", _) if r.header("authorization") == Some("Bearer cred-oai") => {
            Reply::Json(404, json!({"error": {"message": "Not Found", "type": "invalid_request_error", "code": null, "param": null}}))
        }
        ("/v1/messages", true) => Reply::Sse(
            events(&fixture("responses_to_anthropic", "stream.provider.sse")),
            Duration::from_millis(1),
        ),
        ("/v1/messages", false) => Reply::Json(
            200,
            json_fixture("responses_to_anthropic", "response.provider.json"),
        ),
        ("/v1/chat/completions", _) => Reply::Json(
            200,
            json_fixture("responses_to_openai", "response.provider.json"),
        ),
        _ => Reply::Json(
            200,
            json!({"id": "resp_native", "object": "response", "status": "completed", "model": r.json()["model"],
                   "output": [], "usage": {"input_tokens": 2, "output_tokens": 1, "total_tokens": 3}}),
        ),
    });
    let url = mock.url();
    let cfg = Config::new()
        .provider_with("ant", Kind::Anthropic, &url, "credentials: [cred-ant]")
        .provider_with("chat-only", Kind::OpenAi, &url, "credentials: [cred-oai]")
        .provider_with(
            "native",
            Kind::OpenAi,
            &url,
            "credentials: [cred-native], responses_api: true",
        )
        .route_as("codex-claude", "ant", "claude-sonnet-4-20250514")
        .route_as("gpt-4o-mini", "chat-only", "gpt-4o-mini-2024-07-18")
        .route_as("gpt-5", "native", "gpt-5-2025-08-07")
        .key("k", KEY)
        .yaml();
    let gw = Gateway::start("", &cfg).await;

    // Codex's request, streamed, to an Anthropic provider.
    let codex: Value = json_fixture("responses_to_anthropic", "request.client.json");
    let r = gw
        .post("/v1/responses", KEY, codex.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    assert_eq!(
        r.headers()["x-modelgate-dropped"],
        "prompt_cache_key,text.verbosity,tools.web_search"
    );
    let text = r.text().await.unwrap();
    let got = mock.last();
    assert_eq!(got.uri, "/v1/messages");
    let expected: Value = json_fixture("responses_to_anthropic", "request.provider.json");
    assert_eq!(got.json(), expected);
    let datas: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    for (i, d) in datas.iter().enumerate() {
        assert_eq!(d["sequence_number"], i as u64, "{text}");
    }
    let last = datas.last().unwrap();
    assert_eq!(last["type"], "response.completed", "{text}");
    assert_eq!(last["response"]["model"], "codex-claude");
    assert_eq!(last["response"]["output"][3]["type"], "custom_tool_call");
    assert_eq!(last["response"]["usage"]["output_tokens"], 64);

    // Without max_output_tokens and not streamed: Anthropic still gets its max_tokens.
    let r = gw
        .post(
            "/v1/responses",
            KEY,
            json!({"model": "codex-claude", "instructions": "Be brief.", "input": [
                {"role": "user", "content": "hi"}, {"role": "user", "content": "there"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["object"], "response");
    assert_eq!(v["output"][1]["content"][0]["text"], "Adding it now.");
    let sent = mock.last().json();
    assert_eq!(sent["max_tokens"], 4096);
    assert_eq!(sent["system"], "Be brief.");
    assert_eq!(
        sent["messages"],
        json!([{"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "text", "text": "there"}]}]),
        "consecutive user items become one turn"
    );

    // An OpenAI-compatible server without the Responses API: its 404 makes the gateway
    // translate to Chat Completions, for this request and (once that worked) the next.
    let ask = json!({"model": "gpt-4o-mini", "input": "hi", "max_output_tokens": 500});
    let n = mock.requests().len();
    let r = gw
        .post("/v1/responses", KEY, ask.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-modelgate-attempts"], "1");
    let uris: Vec<String> = mock.requests()[n..].iter().map(|r| r.uri.clone()).collect();
    assert_eq!(uris, ["/v1/responses", "/v1/chat/completions"]);
    assert_eq!(mock.last().header("authorization"), Some("Bearer cred-oai"));
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "incomplete");
    assert_eq!(v["incomplete_details"]["reason"], "max_output_tokens");
    let n = mock.requests().len();
    let r = gw.post("/v1/responses", KEY, ask).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let uris: Vec<String> = mock.requests()[n..].iter().map(|r| r.uri.clone()).collect();
    assert_eq!(uris, ["/v1/chat/completions"], "learned: no second probe");

    // A server that speaks Responses gets the client's bytes, only the model renamed.
    let body = json!({"model": "gpt-5", "input": "hi", "store": false, "include": ["reasoning.encrypted_content"]});
    let r = gw
        .post("/v1/responses", KEY, body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let got = mock.last();
    assert_eq!(got.uri, "/v1/responses");
    let mut expected = body;
    expected["model"] = "gpt-5-2025-08-07".into();
    assert_eq!(got.json(), expected);
    assert!(r.headers().get("x-modelgate-dropped").is_none());
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["model"], "gpt-5", "the public name comes back");

    // What cannot work by translation is refused before any provider sees it.
    let n = mock.requests().len();
    let r = gw
        .post(
            "/v1/responses",
            KEY,
            json!({"model": "codex-claude", "input": "more", "previous_response_id": "resp_1"}),
        )
        .send()
        .await
        .unwrap();
    let (s, code, v) = error_code(r).await;
    assert_eq!((s, code.as_str()), (400, "invalid_request"));
    assert_eq!(v["error"]["param"], "previous_response_id");
    assert_eq!(mock.requests().len(), n);
}

/// Embeddings both ways between OpenAI and Gemini: each client's request reaches the other
/// kind's API in that API's shape, and the answer comes back in the client's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_cross_between_openai_and_gemini() {
    let gem = MockProvider::start("gem").await;
    gem.reply(|r| {
        let n = r.json()["requests"].as_array().map_or(0, |a| a.len());
        let embeddings: Vec<Value> = (0..n).map(|i| json!({"values": [i as f64, 0.5]})).collect();
        Reply::Json(200, json!({ "embeddings": embeddings }))
    });
    let oai = MockProvider::start("oai").await;
    oai.reply(|r| {
        let n = r.json()["input"].as_array().map_or(0, |a| a.len());
        let data: Vec<Value> = (0..n)
            .rev()
            .map(|i| json!({"object": "embedding", "index": i, "embedding": [i as f64, -1.0]}))
            .collect();
        Reply::Json(
            200,
            json!({"object": "list", "data": data, "model": "text-embedding-3-small",
            "usage": {"prompt_tokens": 6, "total_tokens": 6}}),
        )
    });
    let cfg = Config::new()
        .provider_with("g", Kind::Gemini, &gem.url(), "credentials: [cred-g]")
        .provider_with("o", Kind::OpenAi, &oai.url(), "credentials: [cred-o]")
        .model(
            "gemini-embed",
            "targets: [{ provider: g, model: text-embedding-004 }]",
        )
        .model(
            "openai-embed",
            "targets: [{ provider: o, model: text-embedding-3-small }]",
        )
        .key("k", KEY);
    let gw = Gateway::start("", &cfg.yaml()).await;

    // OpenAI client, Gemini provider: one batchEmbedContents call, answers in order.
    let body = json!({"model": "gemini-embed", "input": ["one", "two", "three"], "dimensions": 2});
    let r = gw.post("/v1/embeddings", KEY, body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let sent = gem.last();
    assert_eq!(
        sent.uri,
        "/v1beta/models/text-embedding-004:batchEmbedContents"
    );
    assert_eq!(sent.header("x-goog-api-key"), Some("cred-g"));
    assert_eq!(
        sent.json()["requests"][2]["content"]["parts"][0]["text"],
        "three"
    );
    assert_eq!(sent.json()["requests"][0]["outputDimensionality"], 2);
    assert_eq!(v["object"], "list");
    assert_eq!(v["model"], "gemini-embed");
    assert_eq!(v["data"].as_array().unwrap().len(), 3);
    assert_eq!(
        v["data"][2],
        json!({"object": "embedding", "index": 2, "embedding": [2.0, 0.5]})
    );

    // Gemini clients, OpenAI provider: embedContent and batchEmbedContents.
    let r = client()
        .post(format!(
            "{}/v1beta/models/openai-embed:batchEmbedContents",
            gw.url
        ))
        .header("x-goog-api-key", KEY)
        .json(&json!({"requests": [
            {"model": "models/openai-embed", "content": {"parts": [{"text": "a"}]}},
            {"model": "models/openai-embed", "content": {"parts": [{"text": "b"}]}}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let sent = oai.last();
    assert_eq!(sent.uri, "/v1/embeddings");
    assert_eq!(sent.header("authorization"), Some("Bearer cred-o"));
    assert_eq!(sent.json()["model"], "text-embedding-3-small");
    assert_eq!(sent.json()["input"], json!(["a", "b"]));
    assert_eq!(
        v,
        json!({"embeddings": [{"values": [0.0, -1.0]}, {"values": [1.0, -1.0]}]})
    );
    let r = client()
        .post(format!(
            "{}/v1beta/models/openai-embed:embedContent",
            gw.url
        ))
        .header("x-goog-api-key", KEY)
        .json(&json!({"content": {"parts": [{"text": "a"}]}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"embedding": {"values": [0.0, -1.0]}})
    );

    // What the other API cannot express is a 400 before any provider call.
    let n = gem.requests().len();
    let r = gw
        .post(
            "/v1/embeddings",
            KEY,
            json!({"model": "gemini-embed", "input": [[1, 2, 3]]}),
        )
        .send()
        .await
        .unwrap();
    let (status, code, v) = error_code(r).await;
    assert_eq!((status, code.as_str()), (400, "invalid_request"), "{v}");
    assert_eq!(v["error"]["param"], "input");
    assert_eq!(gem.requests().len(), n);
    // A provider error comes back in the client's shape.
    gem.reply(|_| {
        Reply::Json(
            400,
            json!({"error": {"code": 400, "message": "bad dims", "status": "INVALID_ARGUMENT"}}),
        )
    });
    let r = gw
        .post(
            "/v1/embeddings",
            KEY,
            json!({"model": "gemini-embed", "input": "x"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error"]["message"].as_str().unwrap().contains("bad dims"),
        "{v}"
    );
}

/// A passed-through Responses stream the provider cuts ends as the spec has it: `error`
/// with `server_error`, then `response.failed` for the response `response.created`
/// announced (its id, time and public model), numbered on from the provider's events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_responses_stream_fails_the_response_it_announced() {
    let mock = MockProvider::start("oai").await;
    let created = json!({"type": "response.created", "sequence_number": 0, "response": {
        "id": "resp_real_1", "object": "response", "created_at": 1764000000, "status": "in_progress",
        "model": "gpt-5-2025-08-07", "output": [], "usage": null}});
    let delta = json!({"type": "response.output_text.delta", "sequence_number": 4,
        "item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": "Hel"});
    let events = vec![
        format!("event: response.created\ndata: {created}\n\n"),
        format!("event: response.output_text.delta\ndata: {delta}\n\n"),
    ];
    mock.reply(move |_| Reply::SseCut(events.clone(), Duration::from_millis(20)));
    let cfg = Config::new()
        .provider_with(
            "oai",
            Kind::OpenAi,
            &mock.url(),
            "credentials: [c], responses_api: true",
        )
        .model(
            "gpt-5",
            "targets: [{ provider: oai, model: gpt-5-2025-08-07 }]",
        )
        .key("k", KEY);
    let gw = Gateway::start("", &cfg.yaml()).await;
    let r = gw
        .post(
            "/v1/responses",
            KEY,
            json!({"model": "gpt-5", "input": "hi", "stream": true}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap_or_default();
    let data: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str(d).ok())
        .collect();
    let n = data.len();
    assert!(n >= 4, "{text}");
    let (error, failed) = (&data[n - 2], &data[n - 1]);
    assert_eq!(error["type"], "error");
    assert_eq!(error["code"], "server_error");
    assert_eq!(error["sequence_number"], 5);
    assert_eq!(failed["type"], "response.failed");
    assert_eq!(failed["sequence_number"], 6);
    let r = &failed["response"];
    assert_eq!(
        (r["id"].as_str(), r["created_at"].as_u64()),
        (Some("resp_real_1"), Some(1764000000))
    );
    assert_eq!(r["model"], "gpt-5", "the public name, as in every event");
    assert_eq!(r["status"], "failed");
    assert_eq!(r["error"]["code"], "server_error");
}

/// A provider that writes its header, then its JSON body `gap` later, over raw sockets.
async fn split_writer(body: String, gap: Duration) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let mut got = Vec::new();
                // The request: its header, then its declared length of body.
                loop {
                    let Ok(n) = s.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    got.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&got).to_string();
                    if let Some((head, rest)) = text.split_once("\r\n\r\n") {
                        let len = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap())
                            })
                            .unwrap_or(0);
                        if rest.len() >= len {
                            break;
                        }
                    }
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.flush().await;
                tokio::time::sleep(gap).await;
                let _ = s.write_all(body.as_bytes()).await;
                let _ = s.flush().await;
                tokio::time::sleep(Duration::from_secs(5)).await;
            });
        }
    });
    url
}

/// A translated JSON answer whose provider body came with its header goes out with a
/// Content-Length (one write, not header, chunk and terminator); one whose body came
/// later is sent chunked, just as correct.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_translated_answer_complete_at_once_has_its_length() {
    let mock = MockProvider::start("ant").await;
    let answer = fixture("openai_to_anthropic", "response.provider.json");
    let parsed: Value = serde_json::from_str(&answer).unwrap();
    mock.reply(move |_| Reply::Json(200, parsed.clone()));
    let gw = gateway(&mock).await;
    let client_req: Value = json_fixture("openai_to_anthropic", "request.client.json");
    let r = gw
        .post("/v1/chat/completions", KEY, client_req.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("transfer-encoding").is_none(), "{r:?}");
    let declared: usize = r.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body = r.bytes().await.unwrap();
    assert_eq!(declared, body.len());
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "claude-sonnet-4");

    // The same answer, its body 200 ms after its header.
    let slow = split_writer(answer, Duration::from_millis(200)).await;
    let gw = gateway_at(&slow).await;
    let r = gw
        .post("/v1/chat/completions", KEY, client_req)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["transfer-encoding"], "chunked");
    assert!(r.headers().get("content-length").is_none());
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["usage"]["prompt_tokens"], 120);
}
