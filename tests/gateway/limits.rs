//! Per-key and per-model limits: rpm, tpm (estimated up front, reconciled from the real
//! usage), concurrency (released after errors and disconnects), headers and retry-after.

use crate::support::*;
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::time::Duration;

/// Provider `p` serving models `m` and `other`; each test adds its keys.
fn config(mock: &MockProvider) -> Config {
    Config::basic(&mock.url()).route("other", "p")
}

async fn wait_inflight(gw: &Gateway, key: &str, n: f64) {
    wait_metric(gw, "modelgate_inflight_requests", &[("key", key)], n).await;
}

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpm_refuses_the_next_request_with_headers_and_retry_after() {
    let mock = MockProvider::start("p").await;
    mock.reply(|_| {
        let mut v = chat_completion("m", "ok");
        v["id"] = "x".into();
        Reply::Json(200, v)
    });
    let cfg = config(&mock)
        .key_with("limited", "sk-lim-000001", "limits: { rpm: 3 }")
        .key("free", "sk-free-000001");
    let gw = Gateway::start("", &cfg.yaml()).await;
    for left in ["2", "1", "0"] {
        let r = gw.chat("sk-lim-000001", "m").await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "x-ratelimit-limit-requests"), "3");
        assert_eq!(header(&r, "x-ratelimit-remaining-requests"), left);
        assert!(header(&r, "x-ratelimit-reset-requests").ends_with('s'));
    }
    let r = gw.chat("sk-lim-000001", "m").await;
    assert_eq!(r.status(), 429);
    let retry: u64 = header(&r, "retry-after").parse().unwrap();
    assert!((1..=60).contains(&retry), "retry-after {retry}");
    assert_eq!(header(&r, "x-ratelimit-remaining-requests"), "0");
    let (_, code, v) = error_code(r).await;
    assert_eq!(code, "rate_limit_exceeded", "{v}");
    assert_eq!(
        mock.requests().len(),
        3,
        "the refused request never reached the provider"
    );
    // another key is not affected, and keys without limits see no limit headers
    let r = gw.chat("sk-free-000001", "m").await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("x-ratelimit-limit-requests").is_none());
    let m = gw.metrics().await;
    assert_eq!(
        metric_value(
            &m,
            "modelgate_rate_limited_total",
            &[("key", "limited"), ("limit", "rpm")]
        ),
        Some(1.0)
    );
    // the Anthropic endpoint answers in Anthropic's shape
    let r = client()
        .post(format!("{}/v1/messages", gw.url))
        .header("x-api-key", "sk-lim-000001")
        .json(
            &json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "rate_limit_error");

    // a reload keeps the counters of keys that still exist
    gw.rewrite_config(
        &config(&mock)
            .key_with("limited", "sk-lim-000001", "limits: { rpm: 4 }")
            .yaml(),
    );
    gw.signal("HUP");
    wait_metric(
        &gw,
        "modelgate_config_reloads_total",
        &[("result", "success")],
        1.0,
    )
    .await;
    let r = gw.chat("sk-lim-000001", "m").await;
    assert_eq!(
        r.status(),
        429,
        "5 requests counted in this window, the new limit is 4"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tpm_is_checked_before_and_reconciled_from_the_streamed_usage() {
    let mock = MockProvider::start("p").await;
    mock.reply(|_| {
        let mut events = chat_stream_events("m", &["a"]);
        let usage = json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [],
                           "usage": {"prompt_tokens": 900, "completion_tokens": 50, "total_tokens": 950}});
        events.insert(events.len() - 1, format!("data: {usage}\n\n"));
        Reply::Sse(events, Duration::from_millis(1))
    });
    let cfg = config(&mock).key_with("t", "sk-tpm-000001", "limits: { tpm: 1000 }");
    let gw = Gateway::start("", &cfg.yaml()).await;
    // a small estimate is let through; the provider then reports 950 tokens
    let mut body = chat("m");
    body["stream"] = true.into();
    body["max_tokens"] = 10.into();
    let r = gw
        .post("/v1/chat/completions", "sk-tpm-000001", body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-ratelimit-limit-tokens"), "1000");
    let _ = r.text().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // 950 used + ~30 estimated for this one + 100 asked > 1000
    body["max_tokens"] = 100.into();
    let r = gw
        .post("/v1/chat/completions", "sk-tpm-000001", body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let (_, code, v) = error_code(r).await;
    assert_eq!(code, "token_rate_limit_exceeded");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("950 of 1000"),
        "{v}"
    );
    let m = gw.metrics().await;
    assert_eq!(
        metric_value(
            &m,
            "modelgate_tokens_total",
            &[("key", "t"), ("type", "prompt")]
        ),
        Some(900.0),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_slots_free_after_streams_errors_and_disconnects() {
    let mock = MockProvider::start("p").await;
    mock.reply(|r| {
        if r.json()["messages"][0]["content"] == "fail" {
            Reply::Json(
                500,
                json!({"error": {"message": "boom", "type": "server_error"}}),
            )
        } else {
            Reply::Sse(
                chat_stream_events("m", &["a", "b", "c", "d"]),
                Duration::from_millis(150),
            )
        }
    });
    let cfg = config(&mock)
        .key_with("c", "sk-conc-00001", "limits: { concurrency: 2 }")
        // 500s pass through here (no failover, no cooldown)
        .retry("on_status: [429]");
    let gw = Gateway::start("", &cfg.yaml()).await;
    let mut body = chat("m");
    body["stream"] = true.into();
    let a = gw
        .post("/v1/chat/completions", "sk-conc-00001", body.clone())
        .send()
        .await
        .unwrap();
    let b = gw
        .post("/v1/chat/completions", "sk-conc-00001", body.clone())
        .send()
        .await
        .unwrap();
    let r = gw
        .post("/v1/chat/completions", "sk-conc-00001", body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(error_code(r).await.1, "rate_limit_exceeded");
    // The refused request's own in-flight count ends with its context, just after its 429.
    wait_inflight(&gw, "c", 2.0).await;
    let _ = (a.text().await.unwrap(), b.text().await.unwrap());
    // an upstream error releases its slot
    let fail = json!({"model": "m", "messages": [{"role": "user", "content": "fail"}]});
    for _ in 0..3 {
        assert_eq!(
            gw.post("/v1/chat/completions", "sk-conc-00001", fail.clone())
                .send()
                .await
                .unwrap()
                .status(),
            500
        );
    }
    // 100 streams dropped by the client after the first event leak nothing. The gateway
    // notices a gone client at its next write, so each pair waits for its slots first.
    for _ in 0..50 {
        wait_inflight(&gw, "c", 0.0).await;
        let pair = futures_util::future::join(
            gw.post("/v1/chat/completions", "sk-conc-00001", body.clone())
                .send(),
            gw.post("/v1/chat/completions", "sk-conc-00001", body.clone())
                .send(),
        )
        .await;
        for r in [pair.0.unwrap(), pair.1.unwrap()] {
            assert_eq!(r.status(), 200);
            let mut s = r.bytes_stream();
            let _ = s.next().await;
        }
    }
    wait_inflight(&gw, "c", 0.0).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let r = gw
            .post("/v1/chat/completions", "sk-conc-00001", body.clone())
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a slot leaked: still 429 after the aborted streams"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_model_limits_inside_a_key_and_for_everyone() {
    let mock = MockProvider::start("p").await;
    let cfg = Config::new()
        .provider("p", Kind::OpenAi, &mock.url())
        .model("m", "targets: [{ provider: p }], limits: { rpm: 2 }")
        .route("other", "p")
        .key_with(
            "a",
            "sk-model-a-001",
            r#"limits: { models: { "m*": { rpm: 1 } } }"#,
        )
        .key("b", "sk-model-b-001");
    let gw = Gateway::start("", &cfg.yaml()).await;
    assert_eq!(gw.chat("sk-model-a-001", "m").await.status(), 200);
    let r = gw.chat("sk-model-a-001", "m").await;
    assert_eq!(r.status(), 429);
    assert!(error_code(r).await.2["error"]["message"]
        .as_str()
        .unwrap()
        .contains("models \"m*\""));
    assert_eq!(gw.chat("sk-model-a-001", "other").await.status(), 200);
    // model m allows 2 per minute across keys: a's refused request stopped at its own
    // group limit, so b gets the second and is refused the third
    assert_eq!(gw.chat("sk-model-b-001", "m").await.status(), 200);
    let r = gw.chat("sk-model-b-001", "m").await;
    assert_eq!(r.status(), 429);
    assert!(error_code(r).await.2["error"]["message"]
        .as_str()
        .unwrap()
        .contains("across all keys"));
}
