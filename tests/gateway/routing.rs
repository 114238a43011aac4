//! Routing: aliases, wildcards, weighted choice, credential rotation, base URL prefixes,
//! and the public model name in responses.

use crate::support::*;
use serde_json::Value;
use std::time::Duration;

const KEY: &str = "sk-routing-test-0001";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aliases_and_wildcards_rewrite_the_upstream_model_only() {
    let mock = MockProvider::start("p").await;
    let cfg = Config::new()
        .provider_with(
            "p",
            Kind::OpenAi,
            &format!("{}/prefix/v1", mock.url()),
            "credentials: [c1]",
        )
        .model(
            "gpt-4o",
            "aliases: [gpt4o], targets: [{ provider: p, model: gpt-4o-2024-08-06 }]",
        )
        .route("llama-*", "p")
        .route_as("mistral-*", "p", "mistral-large-latest")
        .key("k", KEY)
        .yaml();
    let gw = Gateway::start("", &cfg).await;
    for (asked, upstream) in [
        ("gpt4o", "gpt-4o-2024-08-06"),
        ("gpt-4o", "gpt-4o-2024-08-06"),
        ("llama-3.1-8b", "llama-3.1-8b"),
        ("mistral-small", "mistral-large-latest"),
    ] {
        let body = serde_json::json!({"model": asked, "temperature": 0.25, "messages": [{"role": "user", "content": "say \"model\": x"}]});
        let r = gw
            .post("/v1/chat/completions", KEY, body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-modelgate-provider"], "p");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["model"], asked, "the client sees the name it asked for");
        let got = mock.last();
        assert_eq!(got.uri, "/prefix/v1/chat/completions");
        let sent = got.json();
        assert_eq!(sent["model"], upstream);
        // everything else arrives exactly as the client sent it
        let mut expected = body.clone();
        expected["model"] = upstream.into();
        assert_eq!(sent, expected);
    }
    let (s, code, body) = error_code(gw.chat(KEY, "gpt-5").await).await;
    assert_eq!((s, code.as_str()), (404, "model_not_found"));
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("GET /v1/models"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_spread_requests_and_credentials_rotate() {
    let a = MockProvider::start("a").await;
    let b = MockProvider::start("b").await;
    let standby = MockProvider::start("standby").await;
    let cfg = Config::new()
        .provider_with("a", Kind::OpenAi, &a.url(), "credentials: [cred-1, cred-2]")
        .provider_with("b", Kind::OpenAi, &b.url(), "credentials: [cred-b]")
        .provider_with("s", Kind::OpenAi, &standby.url(), "credentials: [cred-s]")
        .model("m", "targets: [{ provider: a, weight: 3 }, { provider: b, weight: 1 }, { provider: s, weight: 0 }]")
        .key("k", KEY)
        .yaml();
    let gw = Gateway::start("", &cfg).await;
    for _ in 0..8 {
        let r = gw.chat(KEY, "m").await;
        assert_eq!(r.status(), 200);
    }
    assert_eq!(a.requests().len(), 6);
    assert_eq!(b.requests().len(), 2);
    assert_eq!(
        standby.requests().len(),
        0,
        "a weight-0 target is only for failover"
    );
    let creds: Vec<String> = a
        .requests()
        .iter()
        .map(|r| r.header("authorization").unwrap().to_string())
        .collect();
    assert_eq!(creds.iter().filter(|c| *c == "Bearer cred-1").count(), 3);
    assert_eq!(creds.iter().filter(|c| *c == "Bearer cred-2").count(), 3);
    assert_ne!(creds[0], creds[1], "credentials alternate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_model_names_are_rewritten_per_event() {
    let mock = MockProvider::start("p").await;
    mock.reply(|r| {
        let m = r.json()["model"].as_str().unwrap_or_default().to_string();
        Reply::Sse(
            chat_stream_events(&m, &["a", "b"]),
            Duration::from_millis(5),
        )
    });
    let cfg = Config::new()
        .provider("p", Kind::OpenAi, &mock.url())
        .route_as("fast", "p", "real-model-1")
        .key("k", KEY)
        .yaml();
    let gw = Gateway::start("", &cfg).await;
    let mut body = chat("fast");
    body["stream"] = true.into();
    let text = gw
        .post("/v1/chat/completions", KEY, body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!text.contains("real-model-1"), "{text}");
    assert_eq!(text.matches("\"model\":\"fast\"").count(), 3, "{text}");
    assert!(text.ends_with("data: [DONE]\n\n"));
}
