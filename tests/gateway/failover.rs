//! Failover: every failure mode moves to the next target before any byte reaches the
//! client; 4xx are not retried; attempts are capped; cooldowns (and Retry-After) skip
//! failed targets; all-down answers 503; the retry budget bounds load during an outage;
//! bodies are replayed intact; streams cut mid-way end with an error event.

use crate::support::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const KEY: &str = "sk-failover-test-01";

/// Model `m` on targets a then b (a first: b is a weight-0 standby), plus `x` falling
/// back to an Anthropic model.
fn config(a: &str, b: &str, retry: &str) -> String {
    Config::new()
        .provider_with("a", Kind::OpenAi, a, "timeouts: { first_byte: 500ms }")
        .provider("b", Kind::OpenAi, b)
        .provider("ant", Kind::Anthropic, b)
        .model(
            "m",
            "targets: [{ provider: a }, { provider: b, weight: 0 }]",
        )
        .model("x", "targets: [{ provider: a }], fallbacks: [claude]")
        .route_as("claude", "ant", "claude-sonnet-4-20250514")
        .key("k", KEY)
        .retry(retry)
        .yaml()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_failure_mode_fails_over_to_the_next_target() {
    let b = MockProvider::start("b").await;
    let closed = closed_url();
    type Mode = (&'static str, Box<dyn Fn() -> Reply + Send + Sync>);
    let modes: Vec<Mode> = vec![
        (
            "500",
            Box::new(|| Reply::Json(500, json!({"error": {"message": "boom"}}))),
        ),
        ("502", Box::new(|| Reply::Json(502, json!({})))),
        ("503", Box::new(|| Reply::Json(503, json!({})))),
        (
            "429",
            Box::new(|| Reply::JsonWithHeaders(429, json!({}), vec![("retry-after", "20".into())])),
        ),
        ("hang past first_byte", Box::new(|| Reply::Hang)),
        ("reset", Box::new(|| Reply::Reset)),
    ];
    for (name, mode) in modes {
        let a = MockProvider::start("a").await;
        a.reply(move |_| mode());
        let gw = Gateway::start("", &config(&a.url(), &b.url(), "cooldown: 30s")).await;
        let before = b.requests().len();
        let r = gw.chat(KEY, "m").await;
        assert_eq!(r.status(), 200, "{name}: {}", gw.logs());
        assert_eq!(r.headers()["x-modelgate-provider"], "b", "{name}");
        assert_eq!(r.headers()["x-modelgate-attempts"], "2", "{name}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(
            v["choices"][0]["message"]["content"], "hello from b",
            "{name}"
        );
        assert_eq!(a.requests().len(), 1, "{name}");
        assert_eq!(b.requests().len(), before + 1, "{name}");
        let m = gw.metrics().await;
        assert_eq!(
            metric_value(
                &m,
                "modelgate_failovers_total",
                &[("from_provider", "a"), ("to_provider", "b")]
            ),
            Some(1.0),
            "{name}"
        );
    }
    // a refused connection too
    let gw = Gateway::start("", &config(&closed, &b.url(), "cooldown: 30s")).await;
    let r = gw.chat(KEY, "m").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-modelgate-provider"], "b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_400_is_not_retried_and_attempts_are_capped() {
    let a = MockProvider::start("a").await;
    let b = MockProvider::start("b").await;
    a.reply(|_| {
        Reply::Json(
            400,
            json!({"error": {"message": "bad messages", "type": "invalid_request_error"}}),
        )
    });
    let gw = Gateway::start("", &config(&a.url(), &b.url(), "cooldown: 30s")).await;
    let r = gw.chat(KEY, "m").await;
    assert_eq!(r.status(), 400);
    assert!(
        b.requests().is_empty(),
        "a 400 must not reach the second provider"
    );

    // max_attempts: 1 means no failover at all: 502 naming the provider's 503
    a.reply(|_| Reply::Json(503, json!({"error": {"message": "overloaded"}})));
    let gw = Gateway::start(
        "",
        &config(&a.url(), &b.url(), "max_attempts: 1, cooldown: 1ms"),
    )
    .await;
    let r = gw.chat(KEY, "m").await;
    let (s, code, v) = error_code(r).await;
    assert_eq!((s, code.as_str()), (502, "upstream_error"), "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("answered 503"),
        "{v}"
    );
    assert!(b.requests().is_empty());

    // both failing: two attempts, then 502 naming the last provider status
    b.reply(|_| Reply::Json(502, json!({})));
    let gw = Gateway::start(
        "",
        &config(&a.url(), &b.url(), "max_attempts: 5, cooldown: 1ms"),
    )
    .await;
    let (na, nb) = (a.requests().len(), b.requests().len());
    let r = gw.chat(KEY, "m").await;
    let (s, code, v) = error_code(r).await;
    assert_eq!((s, code.as_str()), (502, "upstream_error"), "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("\"b\", answered 502"),
        "{v}"
    );
    assert_eq!(
        (a.requests().len() - na, b.requests().len() - nb),
        (1, 1),
        "each target tried once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooldowns_skip_failed_targets_until_they_recover() {
    let a = MockProvider::start("a").await;
    let b = MockProvider::start("b").await;
    a.reply(|_| Reply::Json(503, json!({})));
    let gw = Gateway::start("", &config(&a.url(), &b.url(), "cooldown: 400ms")).await;
    assert_eq!(gw.chat(KEY, "m").await.status(), 200);
    assert_eq!(a.requests().len(), 1);
    // a is cooling down: straight to b
    let r = gw.chat(KEY, "m").await;
    assert_eq!(r.headers()["x-modelgate-attempts"], "1");
    assert_eq!(a.requests().len(), 1);
    // after the cooldown a is tried again, answers, and is restored
    a.reply_default();
    tokio::time::sleep(Duration::from_millis(450)).await;
    let r = gw.chat(KEY, "m").await;
    assert_eq!(r.headers()["x-modelgate-provider"], "a");

    // Retry-After sets the cooldown exactly, whatever retry.cooldown says
    a.reply(|_| Reply::JsonWithHeaders(429, json!({}), vec![("retry-after", "1".into())]));
    let gw = Gateway::start("", &config(&a.url(), &b.url(), "cooldown: 60s")).await;
    let n = a.requests().len();
    assert_eq!(gw.chat(KEY, "m").await.status(), 200);
    a.reply_default();
    assert_eq!(
        gw.chat(KEY, "m").await.headers()["x-modelgate-provider"],
        "b"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        gw.chat(KEY, "m").await.headers()["x-modelgate-provider"],
        "a"
    );
    assert_eq!(a.requests().len(), n + 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_targets_down_answers_503_with_the_soonest_recovery() {
    let a = MockProvider::start("a").await;
    let b = MockProvider::start("b").await;
    a.reply(|_| Reply::Json(503, json!({})));
    b.reply(|_| Reply::Json(500, json!({})));
    let gw = Gateway::start("", &config(&a.url(), &b.url(), "cooldown: 20s")).await;
    assert_eq!(gw.chat(KEY, "m").await.status(), 502);
    let (na, nb) = (a.requests().len(), b.requests().len());
    let start = Instant::now();
    let r = gw.chat(KEY, "m").await;
    assert!(start.elapsed() < Duration::from_millis(500));
    assert_eq!(r.status(), 503);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((19..=20).contains(&retry), "retry-after {retry}");
    assert_eq!(error_code(r).await.1, "upstream_unavailable");
    assert_eq!(
        (a.requests().len(), b.requests().len()),
        (na, nb),
        "no blind retry storm"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_replayed_intact_on_the_next_attempt() {
    let a = MockProvider::start("a").await;
    let b = MockProvider::start("b").await;
    a.reply(|_| Reply::Json(503, json!({})));
    let gw = Gateway::start("", &config(&a.url(), &b.url(), "cooldown: 1ms")).await;
    for size in [100usize, 70_000, 300_000] {
        let content: String = (0..size)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        let body = json!({"model": "m", "messages": [{"role": "user", "content": content}]});
        // `a` failed the last request: past its cooldown (1 ms), this one probes it first.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let r = gw
            .post("/v1/chat/completions", KEY, body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "size {size}");
        let sent = serde_json::to_vec(&body).unwrap();
        assert_eq!(a.last().body, sent, "first attempt, size {size}");
        assert_eq!(b.last().body, sent, "second attempt, size {size}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallbacks_cross_provider_kinds() {
    let a = MockProvider::start("a").await;
    let b = MockProvider::start("b").await;
    a.reply(|_| Reply::Json(503, json!({})));
    b.reply(|_| {
        Reply::Json(200, json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-20250514",
            "content": [{"type": "text", "text": "from claude"}], "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": 3, "output_tokens": 2}}))
    });
    let gw = Gateway::start("", &config(&a.url(), &b.url(), "cooldown: 1ms")).await;
    let r = gw.chat(KEY, "x").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-modelgate-provider"], "ant");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["model"], "x", "the client sees the model it asked for");
    assert_eq!(v["choices"][0]["message"]["content"], "from claude");
    assert_eq!(b.last().uri, "/v1/messages");
    assert_eq!(b.last().json()["model"], "claude-sonnet-4-20250514");
    let m = gw.metrics().await;
    assert_eq!(
        metric_value(
            &m,
            "modelgate_failovers_total",
            &[
                ("model", "x"),
                ("from_provider", "a"),
                ("to_provider", "ant")
            ]
        ),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_cut_midway_ends_with_an_error_event_and_the_gateway_stays_up() {
    let a = MockProvider::start("a").await;
    let b = MockProvider::start("b").await;
    a.reply(|_| {
        Reply::SseCut(
            chat_stream_events("m", &["one", "two"])[..2].to_vec(),
            Duration::from_millis(20),
        )
    });
    let gw = Gateway::start("", &config(&a.url(), &b.url(), "cooldown: 1ms")).await;
    let mut body = chat("m");
    body["stream"] = true.into();
    let text = gw
        .post("/v1/chat/completions", KEY, body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap_or_default();
    assert!(text.contains("\"content\":\"one\""), "{text}");
    assert!(
        text.contains("data: {\"error\""),
        "the stream must end with an error event: {text}"
    );
    assert!(
        b.requests().is_empty(),
        "nothing is retried once bytes reached the client"
    );
    assert_eq!(
        client()
            .get(format!("{}/health", gw.url))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retry_budget_stops_amplification_in_a_full_outage() {
    let a = MockProvider::start("a").await;
    let b = MockProvider::start("b").await;
    let c = MockProvider::start("c").await;
    for m in [&a, &b, &c] {
        m.reply(|_| Reply::Json(503, json!({})));
    }
    let cfg = Config::new()
        .provider("a", Kind::OpenAi, &a.url())
        .provider("b", Kind::OpenAi, &b.url())
        .provider("c", Kind::OpenAi, &c.url())
        .model(
            "m",
            "targets: [{ provider: a }, { provider: b }, { provider: c }]",
        )
        .key("k", KEY)
        .retry("max_attempts: 3, cooldown: 1ms, budget: 0.2, budget_min: 2")
        .yaml();
    let gw = Gateway::start("", &cfg).await;
    let n = 40;
    for _ in 0..n {
        let s = gw.chat(KEY, "m").await.status();
        assert!(s == 502 || s == 503, "{s}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let upstream = a.requests().len() + b.requests().len() + c.requests().len();
    // without a budget: 3 x 40 = 120; with it: 40 first attempts + 20 % + 2
    assert!(
        upstream <= n + n / 5 + 2,
        "upstream saw {upstream} requests for {n} client requests"
    );
    assert!(upstream > n, "some retries are still allowed ({upstream})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_take_a_provider_out_and_back_across_reloads() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let a = MockProvider::start("a").await;
    let b = MockProvider::start("b").await;
    let down = Arc::new(AtomicBool::new(true));
    let flag = down.clone();
    a.reply(move |r| {
        if r.uri == "/v1/models" {
            if flag.load(Ordering::SeqCst) {
                Reply::Json(500, json!({"error": {"message": "down"}}))
            } else {
                Reply::Json(200, json!({"object": "list", "data": []}))
            }
        } else {
            Reply::Json(200, chat_completion("m", "hello from a"))
        }
    });
    let cfg = |interval: &str| {
        let health = format!(
            "credentials: [cred-a], health_check: {{ path: /v1/models, interval: {interval}, unhealthy_threshold: 2, healthy_threshold: 1 }}"
        );
        Config::new()
            .provider_with("a", Kind::OpenAi, &a.url(), &health)
            .provider("b", Kind::OpenAi, &b.url())
            .model(
                "m",
                "targets: [{ provider: a }, { provider: b, weight: 0 }]",
            )
            .key("k", KEY)
            .yaml()
    };
    let gw = Gateway::start("", &cfg("100ms")).await;
    wait_metric(
        &gw,
        "modelgate_upstream_healthy",
        &[("provider", "a"), ("target", "m")],
        0.0,
    )
    .await;
    let probe = a
        .requests()
        .into_iter()
        .find(|r| r.uri == "/v1/models")
        .unwrap();
    assert_eq!(
        probe.header("authorization"),
        Some("Bearer cred-a"),
        "probes carry the credential"
    );
    let chats_to_a = |a: &MockProvider| {
        a.requests()
            .iter()
            .filter(|r| r.uri == "/v1/chat/completions")
            .count()
    };
    let r = gw.chat(KEY, "m").await;
    assert_eq!(r.headers()["x-modelgate-provider"], "b");
    assert_eq!(
        r.headers()["x-modelgate-attempts"],
        "1",
        "an unhealthy target is skipped, not tried"
    );
    assert_eq!(chats_to_a(&a), 0);
    let v: Value = gw
        .get("/v1/metrics/providers", KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let pa = v["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "a")
        .unwrap();
    assert_eq!(pa["healthy"], false, "{v}");
    assert_eq!(pa["targets"][0]["healthy"], false, "{v}");
    assert!(
        pa["health_check"]["last_error"]
            .as_str()
            .unwrap()
            .contains("500"),
        "{v}"
    );
    let pb = v["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "b")
        .unwrap();
    assert_eq!(pb["targets"][0]["requests"], 1, "{v}");
    assert!(pb["targets"][0]["p50_ms"].is_number(), "{v}");

    // a reload that keeps provider a keeps its health state
    gw.rewrite_config(&cfg("150ms"));
    gw.signal("HUP");
    wait_metric(
        &gw,
        "modelgate_config_reloads_total",
        &[("result", "success")],
        1.0,
    )
    .await;
    let r = gw.chat(KEY, "m").await;
    assert_eq!(r.headers()["x-modelgate-provider"], "b");

    down.store(false, Ordering::SeqCst);
    wait_metric(
        &gw,
        "modelgate_upstream_healthy",
        &[("provider", "a"), ("target", "m")],
        1.0,
    )
    .await;
    let r = gw.chat(KEY, "m").await;
    assert_eq!(r.headers()["x-modelgate-provider"], "a");
    assert_eq!(chats_to_a(&a), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_failure_fails_over_too() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _untrusted_ca) = MockProvider::start_tls("a", dir.path()).await;
    let b = MockProvider::start("b").await;
    let gw = Gateway::start(
        "",
        &config(
            &format!("https://localhost:{}", a.addr.port()),
            &b.url(),
            "cooldown: 30s",
        ),
    )
    .await;
    let r = gw.chat(KEY, "m").await;
    assert_eq!(r.status(), 200, "{}", gw.logs());
    assert_eq!(r.headers()["x-modelgate-provider"], "b");
    assert!(
        a.requests().is_empty(),
        "no request may cross an untrusted TLS connection"
    );
}

/// A target that starts hanging under steady concurrent load, with the default retry
/// budget: after each cooldown only one request probes it (half-open) while the rest go
/// to the healthy target, so no client sees an error and the hanging target gets one
/// request per cooldown, not the whole traffic share each time its cooldown ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_target_under_load_costs_no_client_an_error() {
    let (good, bad) = (
        MockProvider::start("good").await,
        MockProvider::start("bad").await,
    );
    good.reply_default();
    bad.reply(|_| Reply::Hang);
    let cfg = Config::new()
        .provider("good", Kind::OpenAi, &good.url())
        .provider_with(
            "bad",
            Kind::OpenAi,
            &bad.url(),
            "timeouts: { first_byte: 300ms }",
        )
        .model(
            "m",
            "targets: [{ provider: good, weight: 1 }, { provider: bad, weight: 1 }]",
        )
        .key("k", KEY)
        .retry("cooldown: 1s");
    let gw = Gateway::start("", &cfg.yaml()).await;
    let urls = [gw.url.clone()];
    let run = || {
        chat_load(
            &urls,
            KEY,
            "m",
            Duration::from_secs(6),
            Duration::from_millis(30),
        )
    };
    let results = futures_util::future::join_all((0..4).map(|_| run())).await;
    let (ok, failed) = results.iter().fold((0, 0), |(a, b), (o, f)| (a + o, b + f));
    println!(
        "{ok} answered, {failed} failed; the hanging target got {} requests",
        bad.requests().len()
    );
    assert_eq!(failed, 0, "{ok} answered");
    assert!(ok > 200, "{ok}");
    // One probe per cooldown (about 6 in 6 s at 1 s each, plus the first), not a share
    // of the traffic each time a cooldown ends.
    assert!(
        bad.requests().len() <= 16,
        "{} requests reached the hanging target",
        bad.requests().len()
    );
}
