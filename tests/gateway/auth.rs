//! Client keys: every accepted form, every failure code, scope, expiry, IP allowlist, and
//! the client's key never reaching the provider.

use crate::support::*;
use serde_json::Value;

fn config(mock: &MockProvider) -> String {
    Config::new()
        .provider_with(
            "p",
            Kind::OpenAi,
            &mock.url(),
            "credentials: [provider-secret-cred]",
        )
        .provider("down", Kind::OpenAi, &closed_url())
        .route("gpt-4o", "p")
        .route("claude-x", "p")
        .route("dead", "down")
        .key_with("team-a", "sk-team-a-0123456789", r#"models: ["gpt-*"]"#)
        .key("all", "sk-all-0123456789")
        .key_with("off", "sk-off-0123456789", "disabled: true")
        .key_with(
            "old",
            "sk-old-0123456789",
            r#"expires_at: "2020-01-01T00:00:00Z""#,
        )
        .key_with(
            "office",
            "sk-office-0123456789",
            r#"allowed_ips: ["10.0.0.0/8"]"#,
        )
        .yaml()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_form_is_accepted_and_never_forwarded() {
    let mock = MockProvider::start("p").await;
    let gw = Gateway::start("", &config(&mock)).await;
    let url = format!("{}/v1/chat/completions", gw.url);
    let c = client();
    let forms = [
        c.post(&url)
            .header("authorization", "Bearer sk-all-0123456789"),
        c.post(&url).header("x-api-key", "sk-all-0123456789"),
        c.post(&url).header("x-goog-api-key", "sk-all-0123456789"),
        c.post(format!("{url}?key=sk-all-0123456789&keep=1")),
    ];
    for (i, req) in forms.into_iter().enumerate() {
        let r = req.json(&chat("gpt-4o")).send().await.unwrap();
        assert_eq!(r.status(), 200, "form {i}");
        let got = mock.last();
        assert_eq!(
            got.header("authorization"),
            Some("Bearer provider-secret-cred"),
            "form {i}"
        );
        assert!(
            got.header("x-api-key").is_none() && got.header("x-goog-api-key").is_none(),
            "form {i}"
        );
        assert!(!got.uri.contains("sk-all"), "form {i}: {}", got.uri);
        for (name, v) in got.headers.iter() {
            assert!(
                !v.as_bytes().windows(6).any(|w| w == b"sk-all"),
                "form {i}: key leaked in {name}"
            );
        }
    }
    assert_eq!(mock.last().uri, "/v1/chat/completions?keep=1");
    // A failing upstream makes Pingora log the request: the ?key= must not be in it.
    let r = client()
        .post(format!("{url}?key=sk-all-0123456789"))
        .json(&chat("dead"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    // Pingora logs the failure just after the response is written.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while !gw.logs().contains("POST /v1/chat/completions request_id=")
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        gw.logs().contains("POST /v1/chat/completions request_id="),
        "the refused connection was not logged with modelgate's summary:\n{}",
        gw.logs()
    );
    let logs = gw.logs();
    assert!(
        !logs.contains("sk-all-0123456789") && !logs.contains("provider-secret-cred"),
        "secret in logs:\n{logs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_auth_failure_has_its_code_and_a_useful_message() {
    let mock = MockProvider::start("p").await;
    let gw = Gateway::start("", &config(&mock)).await;
    let url = format!("{}/v1/chat/completions", gw.url);
    let c = client();
    let cases: Vec<(reqwest::RequestBuilder, u16, &str, &str)> = vec![
        (c.post(&url), 401, "invalid_api_key", "no API key"),
        (
            c.post(&url).header("authorization", "sk-all-0123456789"),
            401,
            "invalid_api_key",
            "'Bearer' is missing",
        ),
        (
            c.post(&url)
                .header("authorization", "Bearersk-all-0123456789"),
            401,
            "invalid_api_key",
            "space after 'Bearer'",
        ),
        (
            c.post(&url).bearer_auth("sk-unknown-0123456789"),
            401,
            "invalid_api_key",
            "not valid for this gateway",
        ),
        (
            c.post(&url).bearer_auth("sk-off-0123456789"),
            401,
            "key_disabled",
            "disabled",
        ),
        (
            c.post(&url).bearer_auth("sk-old-0123456789"),
            401,
            "key_expired",
            "expired at 2020-01-01",
        ),
        (
            c.post(&url).bearer_auth("sk-office-0123456789"),
            403,
            "ip_not_allowed",
            "127.0.0.1",
        ),
        (
            c.post(&url).bearer_auth("sk-team-a-0123456789"),
            403,
            "model_not_allowed",
            "may not use the model \"claude-x\"",
        ),
    ];
    for (i, (req, status, code, msg)) in cases.into_iter().enumerate() {
        let r = req.json(&chat("claude-x")).send().await.unwrap();
        assert!(r.headers().contains_key("x-request-id"), "case {i}");
        let (s, c, body) = error_code(r).await;
        assert_eq!((s, c.as_str()), (status, code), "case {i}: {body}");
        let m = body["error"]["message"].as_str().unwrap();
        assert!(m.contains(msg), "case {i}: {m}");
        assert!(
            !m.contains("sk-unknown-0123456789"),
            "the message echoes the key: {m}"
        );
    }
    assert!(
        mock.requests().is_empty(),
        "a refused request reached the provider"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_is_believed_only_from_trusted_proxies() {
    let mock = MockProvider::start("p").await;
    let gw = Gateway::start("  trusted_proxies: [\"127.0.0.0/8\"]", &config(&mock)).await;
    let r = gw
        .post(
            "/v1/chat/completions",
            "sk-office-0123456789",
            chat("gpt-4o"),
        )
        .header("x-forwarded-for", "10.9.8.7")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = gw
        .post(
            "/v1/chat/completions",
            "sk-office-0123456789",
            chat("gpt-4o"),
        )
        .header("x-forwarded-for", "192.0.2.1")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await.1, "ip_not_allowed");

    // Without trusted proxies the header is ignored.
    let gw2 = Gateway::start("", &config(&mock)).await;
    let r = gw2
        .post(
            "/v1/chat/completions",
            "sk-office-0123456789",
            chat("gpt-4o"),
        )
        .header("x-forwarded-for", "10.9.8.7")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await.1, "ip_not_allowed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_lists_follow_the_key_scope() {
    let mock = MockProvider::start("p").await;
    let gw = Gateway::start("", &config(&mock)).await;
    let ids = |v: Value| -> Vec<String> {
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_string())
            .collect()
    };
    let v: Value = gw
        .get("/v1/models", "sk-team-a-0123456789")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["object"], "list");
    assert_eq!(ids(v), vec!["gpt-4o"]);
    let v: Value = gw
        .get("/v1/models", "sk-all-0123456789")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ids(v), vec!["gpt-4o", "claude-x", "dead"]);
    // Gemini's shape, with the Gemini key header
    let v: Value = client()
        .get(format!("{}/v1beta/models", gw.url))
        .header("x-goog-api-key", "sk-team-a-0123456789")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["models"][0]["name"], "models/gpt-4o");
    assert_eq!(v["models"].as_array().unwrap().len(), 1);
    // Anthropic's shape when anthropic-version is sent
    let v: Value = client()
        .get(format!("{}/v1/models?limit=20", gw.url))
        .header("x-api-key", "sk-all-0123456789")
        .header("anthropic-version", "2023-06-01")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["data"][0]["type"], "model");
    assert_eq!(v["has_more"], false);
}
