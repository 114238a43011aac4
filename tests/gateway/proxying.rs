//! The request path: streaming without buffering, body limits, bad requests, timeouts,
//! refused connections, large bodies, request ids, and same-protocol passthrough for the
//! Anthropic and Gemini endpoints.

use crate::support::*;
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const KEY: &str = "sk-proxy-test-0001";

/// Provider `p`'s fields beyond its credentials come from `p_extra` (e.g. timeouts).
async fn gateway_for(mock: &MockProvider, server_extra: &str, p_extra: &str) -> Gateway {
    let url = mock.url();
    let cfg = Config::new()
        .provider_with(
            "p",
            Kind::OpenAi,
            &url,
            &format!("credentials: [cred-p], {p_extra}"),
        )
        .provider_with("ant", Kind::Anthropic, &url, "credentials: [cred-ant]")
        .provider_with("gem", Kind::Gemini, &url, "credentials: [cred-gem]")
        .provider("down", Kind::OpenAi, &closed_url())
        .route("gpt-4o", "p")
        .route_as("claude-sonnet-4", "ant", "claude-sonnet-4-20250514")
        .route("gemini-*", "gem")
        .route_as("gem-alias", "gem", "gemini-2.5-flash")
        .route("dead", "down")
        .key("k", KEY)
        .retry("cooldown: 300ms");
    Gateway::start(server_extra, &cfg.yaml()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_arrive_chunk_by_chunk() {
    let mock = MockProvider::start("p").await;
    mock.reply(|_| {
        Reply::Sse(
            chat_stream_events("gpt-4o", &["one", "two", "three"]),
            Duration::from_millis(300),
        )
    });
    let gw = gateway_for(&mock, "", "").await;
    let mut body = chat("gpt-4o");
    body["stream"] = true.into();
    let start = Instant::now();
    let r = gw
        .post("/v1/chat/completions", KEY, body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    assert!(
        r.headers().get("x-modelgate-usage").is_none(),
        "the gateway asked for the usage the client did not"
    );
    assert_eq!(mock.last().json()["stream_options"]["include_usage"], true);
    let mut arrivals = vec![];
    let mut text = String::new();
    let mut stream = r.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        text.push_str(std::str::from_utf8(&chunk).unwrap());
        arrivals.push((start.elapsed(), text.matches("data: ").count()));
    }
    assert_eq!(text.matches("data: ").count(), 5, "{text}");
    let first = arrivals.iter().find(|(_, n)| *n >= 1).unwrap().0;
    let last = arrivals.last().unwrap().0;
    assert!(
        first < Duration::from_millis(250),
        "first event after {first:?}: buffered"
    );
    assert!(
        last >= Duration::from_millis(1200),
        "stream ended after {last:?}"
    );
    let mut body = chat("gpt-4o");
    body["stream"] = true.into();
    body["stream_options"] = json!({"include_usage": true});
    let r = gw
        .post("/v1/chat/completions", KEY, body)
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("x-modelgate-usage").is_none());
}

/// A provider that sends its whole event stream with a Content-Length (a buffering
/// server, or one behind a proxy that buffers): the usage chunk the gateway asked for is
/// kept from the client, so the body the client gets is shorter and is sent chunked,
/// never under the provider's length (the client would wait for bytes that never come).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_with_its_usage_chunk_hidden_does_not_keep_the_providers_length() {
    let mock = MockProvider::start("p").await;
    mock.reply(|_| {
        let mut events = chat_stream_events("gpt-4o", &["one", "two"]);
        let usage = json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1700000000,
            "model": "gpt-4o", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}});
        events.insert(events.len() - 1, format!("data: {usage}\n\n"));
        Reply::Raw(200, "text/event-stream", events.concat())
    });
    let gw = gateway_for(&mock, "", "").await;
    let mut body = chat("gpt-4o");
    body["stream"] = true.into();
    let r = gw
        .post("/v1/chat/completions", KEY, body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("content-length").is_none(), "{r:?}");
    let text = tokio::time::timeout(Duration::from_secs(5), r.text())
        .await
        .expect("the body ends")
        .unwrap();
    assert!(!text.contains("\"usage\""), "{text}");
    assert_eq!(text.matches("data: ").count(), 4, "{text}");
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_limit_get_413_declared_or_chunked() {
    let mock = MockProvider::start("p").await;
    let gw = gateway_for(&mock, "  max_body_bytes: 4096", "").await;
    let big =
        json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "x".repeat(5000)}]});
    let (s, code, _) = error_code(
        gw.post("/v1/chat/completions", KEY, big.clone())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, code.as_str()), (413, "request_too_large"));
    // chunked: no Content-Length, counted while reading
    let bytes = serde_json::to_vec(&big).unwrap();
    let parts: Vec<Result<Vec<u8>, std::io::Error>> =
        bytes.chunks(1000).map(|c| Ok(c.to_vec())).collect();
    let r = client()
        .post(format!("{}/v1/chat/completions", gw.url))
        .bearer_auth(KEY)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            parts,
        )))
        .send()
        .await
        .unwrap();
    let (s, code, _) = error_code(r).await;
    assert_eq!((s, code.as_str()), (413, "request_too_large"));
    assert!(mock.requests().is_empty());
    // a small chunked body is fine
    let small = serde_json::to_vec(&chat("gpt-4o")).unwrap();
    let r = client()
        .post(format!("{}/v1/chat/completions", gw.url))
        .bearer_auth(KEY)
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            vec![Ok::<_, std::io::Error>(small)],
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_reach_the_provider_intact() {
    let mock = MockProvider::start("p").await;
    let gw = gateway_for(&mock, "", "").await;
    let content: String = (0..300_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": content}]});
    let r = gw
        .post("/v1/chat/completions", KEY, body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let got = mock.last();
    assert_eq!(got.body, serde_json::to_vec(&body).unwrap());
    assert_eq!(
        got.header("content-length").unwrap(),
        got.body.len().to_string()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_and_unknown_paths_are_explained() {
    let mock = MockProvider::start("p").await;
    let gw = gateway_for(&mock, "", "").await;
    let url = format!("{}/v1/chat/completions", gw.url);
    let c = client();
    let r = c
        .post(&url)
        .bearer_auth(KEY)
        .body("not json")
        .send()
        .await
        .unwrap();
    let (s, code, v) = error_code(r).await;
    assert_eq!((s, code.as_str()), (400, "invalid_request"));
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("JSON object"));
    let r = c
        .post(&url)
        .bearer_auth(KEY)
        .body("{\"messages\": [], ")
        .send()
        .await
        .unwrap();
    assert!(error_code(r).await.2["error"]["message"]
        .as_str()
        .unwrap()
        .contains("not valid JSON"));
    let r = gw
        .post("/v1/chat/completions", KEY, json!({"messages": []}))
        .send()
        .await
        .unwrap();
    let (s, code, v) = error_code(r).await;
    assert_eq!((s, code.as_str()), (400, "invalid_request"));
    assert_eq!(v["error"]["param"], "model");
    let r = c
        .post(format!("{}/chat/completions", gw.url))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    let (s, code, v) = error_code(r).await;
    assert_eq!((s, code.as_str()), (404, "not_found"));
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("/v1/chat/completions"));
    let r = c.get(&url).bearer_auth(KEY).send().await.unwrap();
    assert_eq!(r.status(), 405);
    // Anthropic-looking 404s come in Anthropic's shape
    let r = c
        .post(format!("{}/v2/messages", gw.url))
        .header("x-api-key", KEY)
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "not_found_error");
    assert!(mock.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_provider_is_a_504_and_a_closed_port_a_502() {
    let mock = MockProvider::start("p").await;
    mock.reply(|_| Reply::Hang);
    let gw = gateway_for(&mock, "", "timeouts: { first_byte: 600ms }").await;
    let start = Instant::now();
    let r = gw.chat(KEY, "gpt-4o").await;
    // The gateway's own error says how far the request got, like a proxied answer.
    let header = |r: &reqwest::Response, h: &str| {
        r.headers()
            .get(h)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    assert_eq!(header(&r, "x-modelgate-provider").as_deref(), Some("p"));
    assert_eq!(header(&r, "x-modelgate-attempts").as_deref(), Some("1"));
    let (s, code, v) = error_code(r).await;
    assert_eq!((s, code.as_str()), (504, "upstream_request_timeout"), "{v}");
    assert!(start.elapsed() < Duration::from_secs(3));
    let r = gw.chat(KEY, "dead").await;
    assert_eq!(header(&r, "x-modelgate-provider").as_deref(), Some("down"));
    let (s, code, v) = error_code(r).await;
    assert_eq!((s, code.as_str()), (502, "upstream_error"), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("refused"));
    let m = gw.metrics().await;
    assert_eq!(
        metric_value(
            &m,
            "modelgate_upstream_attempts_total",
            &[("provider", "p"), ("outcome", "timeout")]
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric_value(
            &m,
            "modelgate_upstream_attempts_total",
            &[("provider", "down"), ("outcome", "connect_error")]
        ),
        Some(1.0),
        "{m}"
    );
    // The timed-out target cools down (retry.cooldown: 300ms here), then serves again.
    mock.reply_default();
    let r = gw.chat(KEY, "gpt-4o").await;
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(error_code(r).await.1, "upstream_unavailable");
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(gw.chat(KEY, "gpt-4o").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_kept_generated_and_forwarded() {
    let mock = MockProvider::start("p").await;
    let gw = gateway_for(&mock, "", "").await;
    let r = gw
        .post("/v1/chat/completions", KEY, chat("gpt-4o"))
        .header("x-request-id", "my-req-42")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "my-req-42");
    assert_eq!(mock.last().header("x-request-id"), Some("my-req-42"));
    let r = gw.chat(KEY, "gpt-4o").await;
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert!(id.starts_with("mg-"));
    assert_eq!(mock.last().header("x-request-id"), Some(id.as_str()));
    let r2 = gw.chat(KEY, "gpt-4o").await;
    assert_ne!(r2.headers()["x-request-id"].to_str().unwrap(), id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_side_endpoints_and_provider_errors_pass_through() {
    let mock = MockProvider::start("p").await;
    mock.reply(|r| match r.uri.as_str() {
        "/v1/embeddings" => Reply::Json(200, json!({"object": "list", "model": "gpt-4o", "data": [{"object": "embedding", "index": 0, "embedding": [0.5]}]})),
        _ => Reply::Json(400, json!({"error": {"message": "Invalid 'messages': empty", "type": "invalid_request_error", "param": "messages", "code": null}})),
    });
    let gw = gateway_for(&mock, "", "responses_api: true").await;
    for path in [
        "/v1/embeddings",
        "/v1/completions",
        "/v1/responses",
        "/v1/responses/compact",
        "/v1/moderations",
        "/v1/images/generations",
    ] {
        let r = gw
            .post(
                path,
                KEY,
                json!({"model": "gpt-4o", "input": "x", "prompt": "x"}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(mock.last().uri, path);
        if path == "/v1/embeddings" {
            assert_eq!(r.status(), 200);
        } else {
            let (s, _, v) = error_code(r).await;
            assert_eq!(s, 400);
            assert_eq!(
                v["error"]["message"], "Invalid 'messages': empty",
                "the provider's error is kept"
            );
        }
    }
    // Compaction is the Responses API's own: a provider without it cannot take it.
    let r = gw
        .post(
            "/v1/responses/compact",
            KEY,
            json!({"model": "claude-sonnet-4", "input": "x"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 501);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_web_page_instead_of_the_api_is_a_502_naming_the_base_url() {
    let mock = MockProvider::start("p").await;
    mock.reply(|_| Reply::Raw(200, "text/html", "<html><body>Sign in</body></html>".into()));
    let gw = gateway_for(&mock, "", "").await;
    let r = gw.chat(KEY, "gpt-4o").await;
    let (s, code, v) = error_code(r).await;
    assert_eq!((s, code.as_str()), (502, "upstream_error"));
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("base_url") && !message.contains("Sign in"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_and_gemini_clients_pass_through_to_their_own_kind() {
    let mock = MockProvider::start("p").await;
    mock.reply(|r| {
        if r.uri.starts_with("/v1/messages") {
            Reply::Json(200, json!({"id": "msg_1", "type": "message", "role": "assistant", "model": r.json()["model"],
                "content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn", "stop_sequence": null,
                "usage": {"input_tokens": 3, "output_tokens": 1}}))
        } else {
            Reply::Json(200, json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "hi"}]}, "finishReason": "STOP"}],
                "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 1, "totalTokenCount": 4}, "modelVersion": "gemini-2.5-flash"}))
        }
    });
    let gw = gateway_for(&mock, "", "").await;
    let r = client()
        .post(format!("{}/v1/messages?beta=true", gw.url))
        .header("x-api-key", KEY)
        .header("anthropic-beta", "tools-2024-05-16")
        .json(&json!({"model": "claude-sonnet-4", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["model"], "claude-sonnet-4");
    let got = mock.last();
    assert_eq!(got.uri, "/v1/messages?beta=true");
    assert_eq!(got.header("x-api-key"), Some("cred-ant"));
    assert_eq!(got.header("anthropic-version"), Some("2026-10-21"));
    assert_eq!(got.header("anthropic-beta"), Some("tools-2024-05-16"));
    assert_eq!(got.json()["model"], "claude-sonnet-4-20250514");

    let r = client()
        .post(format!(
            "{}/v1beta/models/gem-alias:generateContent?key={KEY}",
            gw.url
        ))
        .json(&json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["modelVersion"], "gem-alias");
    let got = mock.last();
    assert_eq!(got.uri, "/v1beta/models/gemini-2.5-flash:generateContent");
    assert_eq!(got.header("x-goog-api-key"), Some("cred-gem"));
    assert!(got.header("authorization").is_none());

    // Gemini model errors use Gemini's shape; cross-protocol is not there yet.
    let r = client()
        .post(format!("{}/v1beta/models/nope:generateContent", gw.url))
        .header("x-goog-api-key", KEY)
        .json(&json!({"contents": []}))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["status"], "NOT_FOUND");
    // An OpenAI client on a Gemini target is translated both ways.
    let r = gw.chat(KEY, "gemini-2.5-pro").await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "gemini-2.5-pro");
    assert_eq!(v["choices"][0]["message"]["content"], "hi");
    assert_eq!(v["usage"]["total_tokens"], 4);
    let got = mock.last();
    assert_eq!(got.uri, "/v1beta/models/gemini-2.5-pro:generateContent");
    assert_eq!(
        got.json()["contents"][0],
        json!({"role": "user", "parts": [{"text": "hi"}]})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_providers_by_hostname_with_sni_and_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (mock, ca) = MockProvider::start_tls("tls", dir.path()).await;
    let secure = format!("https://localhost:{}", mock.addr.port());
    let cfg = Config::new()
        .provider_with("secure", Kind::OpenAi, &secure, "credentials: [cred-tls]")
        .route("m", "secure")
        .key("k", KEY)
        .yaml();
    // trusted through server.ca_file
    let gw = Gateway::start(&format!("  ca_file: \"{}\"", ca.display()), &cfg).await;
    let r = gw.chat(KEY, "m").await;
    assert_eq!(r.status(), 200, "{}", gw.logs());
    let got = mock.last();
    assert_eq!(
        got.header("host"),
        Some(format!("localhost:{}", mock.addr.port()).as_str())
    );
    assert_eq!(got.header("authorization"), Some("Bearer cred-tls"));
    // trusted through SSL_CERT_FILE (system roots honour it)
    let gw = Gateway::start_with_env("", &cfg, &[("SSL_CERT_FILE", ca.to_str().unwrap())]).await;
    assert_eq!(gw.chat(KEY, "m").await.status(), 200);
    // an untrusted certificate is a clear 502, not a hang
    let gw = Gateway::start("", &cfg).await;
    let (s, code, v) = error_code(gw.chat(KEY, "m").await).await;
    assert_eq!((s, code.as_str()), (502, "upstream_error"), "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("TLS"),
        "{v}"
    );
}

/// Codex's Responses WebSocket where it cannot work: the upgrade is answered 426 at once,
/// in the OpenAI shape, saying why, so the client falls back to HTTP instead of retrying
/// (a provider without the socket included); the key may come in the
/// `openai-insecure-api-key.` subprotocol; a bad key is still a 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_responses_websocket_upgrade_gets_426_at_once() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mock = MockProvider::start("p").await;
    let gw = gateway_for(&mock, "", "").await;
    let addr = gw.url.trim_start_matches("http://").to_string();
    let upgrade = |path: &str, auth: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{auth}\r\n")
    };
    let send = |raw: String| {
        let addr = addr.clone();
        async move {
            let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
            s.write_all(raw.as_bytes()).await.unwrap();
            let mut buf = vec![0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
                .await
                .expect("answered at once")
                .unwrap();
            let mut answer = buf[..n].to_vec();
            // The rest of a chunked body, if it came in another read.
            while !answer.ends_with(b"0\r\n\r\n") && !answer.ends_with(b"}") {
                match tokio::time::timeout(Duration::from_millis(500), s.read(&mut buf)).await {
                    Ok(Ok(n)) if n > 0 => answer.extend_from_slice(&buf[..n]),
                    _ => break,
                }
            }
            String::from_utf8_lossy(&answer).to_string()
        }
    };
    let bearer = format!("Authorization: Bearer {KEY}\r\n");
    for (path, auth, status, says) in [
        (
            "/v1/responses?model=gpt-4o",
            bearer.clone(),
            "426",
            "did not accept the Responses WebSocket",
        ),
        (
            "/v1/responses?model=claude-sonnet-4",
            bearer.clone(),
            "426",
            "do not take",
        ),
        ("/v1/responses", bearer.clone(), "426", "needs the model"),
        (
            "/v1/responses?model=nope",
            bearer.clone(),
            "404",
            "model_not_found",
        ),
        (
            "/v1/responses?model=gpt-4o",
            format!("Sec-WebSocket-Protocol: realtime, openai-insecure-api-key.{KEY}\r\n"),
            "426",
            "websocket_not_supported",
        ),
        (
            "/v1/responses?model=gpt-4o",
            "Authorization: Bearer sk-wrong-key-123\r\n".to_string(),
            "401",
            "invalid_api_key",
        ),
    ] {
        let answer = send(upgrade(path, &auth)).await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{path}: {answer}"
        );
        assert!(answer.contains(says), "{path}: {answer}");
    }
    // The openai-kind upgrades were tried at the provider (a plain HTTP server, which
    // answers 404), with its credential and without the client's key.
    let tried = mock.requests();
    assert_eq!(tried.len(), 2, "{tried:?}");
    for r in tried {
        assert_eq!(
            (r.method.as_str(), r.uri.as_str()),
            ("GET", "/v1/responses")
        );
        assert_eq!(r.header("upgrade"), Some("websocket"));
        assert!(r.header("authorization").is_some_and(|a| !a.contains(KEY)));
        assert!(r
            .header("sec-websocket-protocol")
            .is_none_or(|p| !p.contains(KEY)));
    }
}

/// Gemini's embeddings and media calls go to Gemini providers under the routed model
/// name (a batch's inner model names too); other kinds cannot take them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gemini_embeddings_and_predict_pass_through_under_the_routed_name() {
    let mock = MockProvider::start("p").await;
    mock.reply(|r| {
        Reply::Json(
            200,
            match r.uri.rsplit(':').next().unwrap_or_default() {
                "embedContent" => json!({"embedding": {"values": [0.1, 0.2]}}),
                "batchEmbedContents" => json!({"embeddings": [{"values": [0.1]}, {"values": [0.2]}]}),
                "predictLongRunning" => json!({"name": "models/veo-x/operations/op-1"}),
                _ => json!({"predictions": [{"bytesBase64Encoded": "aGk=", "mimeType": "image/png"}]}),
            },
        )
    });
    let cfg = Config::new()
        .provider_with("gem", Kind::Gemini, &mock.url(), "credentials: [cred-gem]")
        .provider("p", Kind::OpenAi, &mock.url())
        .route_as("embedder", "gem", "text-embedding-004")
        .route("imagen-x", "gem")
        .route("openai-embedder", "p")
        .key("k", KEY);
    let gw = Gateway::start("", &cfg.yaml()).await;
    let post = |path: &str, body: Value| {
        client()
            .post(format!("{}{path}", gw.url))
            .header("x-goog-api-key", KEY)
            .json(&body)
            .send()
    };
    let r = post(
        "/v1beta/models/embedder:embedContent",
        json!({"content": {"parts": [{"text": "hi"}]}}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let got = mock.last();
    assert_eq!(got.uri, "/v1beta/models/text-embedding-004:embedContent");
    assert_eq!(got.header("x-goog-api-key"), Some("cred-gem"));
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["embedding"]["values"][1], 0.2);

    let batch = json!({"requests": [
        {"model": "models/embedder", "content": {"parts": [{"text": "a"}]}},
        {"model": "models/embedder", "content": {"parts": [{"text": "b"}]}}]});
    let r = post("/v1beta/models/embedder:batchEmbedContents", batch)
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let sent = mock.last().json();
    assert_eq!(
        mock.last().uri,
        "/v1beta/models/text-embedding-004:batchEmbedContents"
    );
    assert_eq!(
        sent["requests"][1]["model"], "models/text-embedding-004",
        "{sent}"
    );
    assert_eq!(sent["requests"][0]["content"]["parts"][0]["text"], "a");

    for action in ["predict", "predictLongRunning"] {
        let r = post(
            &format!("/v1beta/models/imagen-x:{action}"),
            json!({"instances": [{"prompt": "a cat"}]}),
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 200, "{action}");
        assert_eq!(mock.last().uri, format!("/v1beta/models/imagen-x:{action}"));
    }
    let n = mock.requests().len();
    let r = post(
        "/v1beta/models/openai-embedder:predict",
        json!({"instances": [{"prompt": "a cat"}]}),
    )
    .await
    .unwrap();
    assert_eq!(
        r.status(),
        501,
        "an OpenAI provider does not take predict (embeddings are translated: translation.rs)"
    );
    assert_eq!(mock.requests().len(), n);
}
