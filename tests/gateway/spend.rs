//! Spend control: prices, the usage ledger and its API, budgets (concurrency, restarts,
//! teams), and the store on SQLite and on a real Postgres with an outage.

use crate::support::postgres::Postgres;
use crate::support::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const ADMIN: &str = "admin-secret-123";

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// Provider `p` serving `m` as `up-model` at 1000 USD / 2000 USD per 1M tokens, so the
/// mock's usage (5 prompt, 2 completion tokens) costs 0.009 per request.
fn priced(mock: &MockProvider) -> Config {
    Config::new()
        .provider("p", Kind::OpenAi, &mock.url())
        .model(
            "m",
            "targets: [{ provider: p, model: up-model }], max_tokens: 8",
        )
        .price("up-model", "input: 1000, output: 2000")
        .store("flush_interval: 50ms")
        .management(r#"secret_key: "${ADMIN_SECRET}""#)
}

async fn start(cfg: &Config) -> Gateway {
    Gateway::start_with_env("", &cfg.yaml(), &[("ADMIN_SECRET", ADMIN)]).await
}

async fn admin_get(gw: &Gateway, path: &str) -> (u16, String) {
    let r = gw.get(path, ADMIN).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn admin_json(gw: &Gateway, path: &str) -> Value {
    let (status, body) = admin_get(gw, path).await;
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_is_priced_recorded_and_reported() {
    let mock = MockProvider::start("p").await;
    mock.reply_default();
    let cfg = priced(&mock)
        .key_with("alice", "sk-alice-0001", "team: eng")
        .key("bob", "sk-bob-000001")
        .team("eng", "budgets: []");
    let gw = start(&cfg).await;
    let first = gw.chat("sk-alice-0001", "m").await;
    assert_eq!(first.status(), 200);
    let request_id = header(&first, "x-request-id");
    assert_eq!(gw.chat_status("sk-alice-0001", "m").await, 200);
    assert_eq!(gw.chat_status("sk-bob-000001", "m").await, 200);
    assert_eq!(gw.chat_status("sk-alice-0001", "nope").await, 404);

    let v = admin_json(&gw, "/v0/management/usage?group_by=key,team").await;
    assert_eq!(v["group_by"], json!(["key", "team"]));
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{v}");
    let alice = &rows[0];
    assert_eq!(
        (alice["key"].as_str(), alice["team"].as_str()),
        (Some("alice"), Some("eng"))
    );
    assert_eq!(alice["requests"], 3);
    assert_eq!(alice["errors"], 1, "the 404 is a request too");
    assert_eq!(alice["prompt_tokens"], 10);
    assert_eq!(alice["completion_tokens"], 4);
    assert!(close(alice["cost_usd"].as_f64().unwrap(), 0.018), "{alice}");
    assert_eq!(rows[1]["team"], Value::Null);
    assert!(close(v["totals"]["cost_usd"].as_f64().unwrap(), 0.027));

    let (status, csv) = admin_get(&gw, "/v0/management/usage?group_by=model&format=csv").await;
    assert_eq!(status, 200);
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("model,requests,errors,prompt_tokens,completion_tokens,cached_tokens,cost_usd")
    );
    assert!(csv.contains("\nm,3,0,15,6,0,0.027\n"), "{csv}");

    let v = admin_json(&gw, "/v0/management/usage/records?key=alice&limit=10").await;
    let recs = v["records"].as_array().unwrap();
    assert_eq!(recs.len(), 3);
    assert_eq!(recs[0]["model"], "nope", "newest first");
    assert_eq!(recs[0]["error_code"], "model_not_found");
    let oldest = &recs[2];
    assert_eq!(oldest["request_id"], request_id.as_str());
    assert_eq!(oldest["provider"], "p");
    assert_eq!(oldest["target_model"], "up-model");
    assert_eq!(oldest["status"], 200);
    assert_eq!(oldest["attempts"], 1);
    assert_eq!(oldest["stream"], false);
    assert!(oldest["time"].as_str().unwrap().ends_with('Z'));
    assert!(oldest["duration_ms"].as_f64().is_some());
    for field in ["messages", "content", "choices"] {
        assert!(oldest.get(field).is_none(), "metadata only: {oldest}");
    }
    let v = admin_json(
        &gw,
        &format!("/v0/management/usage/records?request_id={request_id}"),
    )
    .await;
    assert_eq!(v["records"].as_array().unwrap().len(), 1);

    let m = gw.metrics().await;
    let cost = metric_value(&m, "modelgate_cost_usd_total", &[("key", "alice")]).unwrap();
    assert!(close(cost, 0.018), "{cost}");

    let me: Value = gw
        .get("/v1/usage", "sk-alice-0001")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["key"], "alice");
    assert_eq!(me["team"], "eng");
    assert_eq!(me["today"]["requests"], 3);
    assert!(close(me["this_month"]["cost_usd"].as_f64().unwrap(), 0.018));
    let billing: Value = gw
        .get(
            "/v1/dashboard/billing/usage?start_date=2020-01-01&end_date=2099-01-01",
            "sk-alice-0001",
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(billing["object"], "list");
    assert!(
        close(billing["total_usage"].as_f64().unwrap(), 1.8),
        "{billing}"
    );

    let (status, body) = admin_get(&gw, "/v0/management/usage?group_by=colour").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("group_by"), "{body}");
    let (status, _) = admin_get(&gw, "/v0/management/usage/records?limit=0").await;
    assert_eq!(status, 400);
    // The usage API is the operator's: a client key gets nothing there.
    let r = gw
        .get("/v0/management/usage", "sk-alice-0001")
        .send()
        .await
        .unwrap();
    assert_ne!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_holds_against_concurrent_requests_in_every_protocol() {
    let mock = MockProvider::start("p").await;
    mock.reply_default();
    let cfg = priced(&mock).key_with(
        "capped",
        "sk-capped-001",
        "budgets: [{ requests: 3, period: day }]",
    );
    let gw = start(&cfg).await;
    let sends = (0..50).map(|_| gw.chat("sk-capped-001", "m"));
    let answers = futures_util::future::join_all(sends).await;
    let ok = answers.iter().filter(|r| r.status() == 200).count();
    assert_eq!(ok, 3, "a budget of 3 requests lets exactly 3 of 50 through");
    assert_eq!(
        mock.requests().len(),
        3,
        "nothing refused reached the provider"
    );
    let refused = answers.into_iter().find(|r| r.status() == 429).unwrap();
    assert_eq!(
        header(&refused, "x-modelgate-budget-limit"),
        "3 requests/day"
    );
    assert_eq!(header(&refused, "x-modelgate-budget-remaining"), "0");
    assert!(header(&refused, "x-modelgate-budget-reset").ends_with("T00:00:00Z"));
    let retry: u64 = header(&refused, "retry-after").parse().unwrap();
    assert!((1..=86_400).contains(&retry), "{retry}");
    let v: Value = refused.json().await.unwrap();
    assert_eq!(v["error"]["type"], "insufficient_quota", "{v}");
    assert_eq!(v["error"]["code"], "insufficient_quota");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("requests/day") && msg.contains("resets at"),
        "{msg}"
    );

    let r = client()
        .post(format!("{}/v1/messages", gw.url))
        .header("x-api-key", "sk-capped-001")
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "rate_limit_error", "{v}");
    assert_eq!(v["error"]["code"], "insufficient_quota");

    let r = client()
        .post(format!(
            "{}/v1beta/models/m:generateContent?key=sk-capped-001",
            gw.url
        ))
        .json(&json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["status"], "RESOURCE_EXHAUSTED", "{v}");
    assert_eq!(v["error"]["details"][0]["reason"], "INSUFFICIENT_QUOTA");
    assert_eq!(mock.requests().len(), 3);

    let m = gw.metrics().await;
    let labels = [("scope", "key:capped"), ("budget", "requests/day")];
    assert!(metric_value(&m, "modelgate_budget_exceeded_total", &labels).unwrap() >= 49.0);
    assert_eq!(
        metric_value(&m, "modelgate_budget_remaining", &labels),
        Some(0.0)
    );
    let me: Value = gw
        .get("/v1/usage", "sk-capped-001")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let b = &me["budgets"][0];
    assert_eq!(
        (b["scope"].as_str(), b["unit"].as_str()),
        (Some("key"), Some("requests"))
    );
    assert_eq!(
        (
            b["limit"].as_f64(),
            b["used"].as_f64(),
            b["remaining"].as_f64()
        ),
        (Some(3.0), Some(3.0), Some(0.0))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spend_survives_sigterm_and_sigkill_and_team_budgets_are_shared() {
    let mock = MockProvider::start("p").await;
    mock.reply_default();
    // Worst case per request: its ~14 prompt tokens (55 bytes / 4) × 1000 + 8 × 2000, per
    // 1M: 0.030; real cost 0.009. A 0.045 team budget covers two requests (0.036 left
    // after one) and refuses the third (0.027 left).
    let cfg = priced(&mock)
        .key_with("alice", "sk-alice-0001", "team: eng")
        .key_with("bob", "sk-bob-000001", "team: eng")
        .key_with(
            "carol",
            "sk-carol-0001",
            "budgets: [{ requests: 100, period: day }]",
        )
        .team("eng", "budgets: [{ usd: 0.045, period: month }]");
    let mut gw = start(&cfg).await;
    let r = gw.chat("sk-alice-0001", "m").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-modelgate-budget-limit"), "0.045 usd/month");
    assert_eq!(header(&r, "x-modelgate-budget-remaining"), "0.045");
    // The first request settles (its worst case replaced by its cost) just after its
    // answer: wait for that, or the second could still see the worst case held.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let v = gw.get_json("/v1/usage", "sk-alice-0001").await;
        if v["budgets"][0]["reserved"].as_f64() == Some(0.0) {
            break;
        }
        assert!(Instant::now() < deadline, "never settled: {v}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(gw.chat_status("sk-bob-000001", "m").await, 200);
    assert_eq!(
        gw.chat_status("sk-alice-0001", "m").await,
        429,
        "the team's budget is shared"
    );
    let used = |v: &Value| v["budgets"][0]["used"].as_f64().unwrap();
    let me: Value = gw
        .get("/v1/usage", "sk-alice-0001")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["budgets"][0]["scope"], "team");
    assert!(close(used(&me), 0.018), "{me}");

    gw.signal("TERM");
    gw.restart().await;
    let me: Value = gw
        .get("/v1/usage", "sk-bob-000001")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(close(used(&me), 0.018), "spend after SIGTERM: {me}");
    assert_eq!(gw.chat_status("sk-bob-000001", "m").await, 429);

    for _ in 0..2 {
        assert_eq!(gw.chat_status("sk-carol-0001", "m").await, 200);
    }
    // A SIGKILL loses at most flush_interval (50 ms) of records.
    tokio::time::sleep(Duration::from_millis(500)).await;
    gw.signal("KILL");
    gw.restart().await;
    let me: Value = gw
        .get("/v1/usage", "sk-carol-0001")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(used(&me), 2.0, "spend after SIGKILL: {me}");
    let v = admin_json(&gw, "/v0/management/usage?group_by=key").await;
    let total: i64 = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["requests"].as_i64().unwrap())
        .sum();
    assert_eq!(total, 6, "every record kept across both restarts: {v}");
}

async fn wait_for(gw: &Gateway, name: &str, ok: impl Fn(f64) -> bool, within: Duration) -> f64 {
    let deadline = Instant::now() + within;
    loop {
        let v = metric_value(&gw.metrics().await, name, &[]).unwrap_or(0.0);
        if ok(v) || Instant::now() > deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ledger_writes_to_postgres_and_waits_out_an_outage() {
    let mut pg = tokio::task::spawn_blocking(Postgres::start)
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("postgres: {e}"));
    let mock = MockProvider::start("p").await;
    mock.reply_default();
    let cfg = priced(&mock)
        .store(&format!(
            "url: \"{}\", flush_interval: 100ms, buffer: 20000",
            pg.url()
        ))
        .key_with(
            "k",
            "sk-pg-000001",
            "budgets: [{ requests: 100000, period: day }]",
        );
    let mut gw = start(&cfg).await;
    for _ in 0..20 {
        assert_eq!(gw.chat_status("sk-pg-000001", "m").await, 200);
    }
    let v = admin_json(&gw, "/v0/management/usage?group_by=key").await;
    assert_eq!(v["rows"][0]["requests"], 20, "{v}");

    let pg = tokio::task::spawn_blocking(move || {
        pg.stop();
        pg
    })
    .await
    .unwrap();
    // The store is away for 10 s under load (4 clients, paced): requests go on, records
    // wait in memory.
    let urls = [gw.url.clone()];
    let loops = (0..4).map(|_| {
        let pace = Duration::from_millis(10);
        chat_load(&urls, "sk-pg-000001", "m", Duration::from_secs(10), pace)
    });
    let results = futures_util::future::join_all(loops).await;
    let served: u64 = results.iter().map(|r| r.0).sum();
    let failed: u64 = results.iter().map(|r| r.1).sum();
    println!("10 s without Postgres: {served} requests served, {failed} failed");
    assert_eq!(failed, 0);
    assert!(served > 100, "{served}");
    let failures = wait_for(
        &gw,
        "modelgate_store_write_failures_total",
        |v| v > 0.0,
        Duration::from_secs(10),
    )
    .await;
    assert!(failures > 0.0, "a failed write is counted");
    // Each record is queued just after its answer: wait for the last ones.
    let held = served as f64;
    let pending = wait_for(
        &gw,
        "modelgate_store_pending_records",
        |v| v == held,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(pending, held);
    let mut pg = pg;
    let pg = tokio::task::spawn_blocking(move || pg.restart().map(|()| pg))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("postgres restart: {e}"));
    let left = wait_for(
        &gw,
        "modelgate_store_pending_records",
        |v| v == 0.0,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(left, 0.0, "held records are written when the store is back");
    let m = gw.metrics().await;
    assert_eq!(
        metric_value(&m, "modelgate_store_dropped_records_total", &[]),
        Some(0.0)
    );
    let count = pg.psql("SELECT COUNT(*) FROM usage_records").unwrap();
    assert_eq!(
        count.trim(),
        (20 + served).to_string(),
        "every record written"
    );

    // The spend is the store's: a restart reads it back from Postgres.
    gw.signal("TERM");
    gw.restart().await;
    let me: Value = gw
        .get("/v1/usage", "sk-pg-000001")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["budgets"][0]["used"], (20 + served) as f64, "{me}");
    drop(gw);
    tokio::task::spawn_blocking(move || drop(pg)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_stream_is_priced_on_its_real_usage_even_when_the_client_did_not_ask() {
    let mock = MockProvider::start("p").await;
    mock.reply(|r| {
        let mut events = chat_stream_events("up-model", &["Hel", "lo"]);
        if r.json()["stream_options"]["include_usage"] == true {
            let usage = json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1700000000,
                "model": "up-model", "choices": [], "usage": {"prompt_tokens": 30, "completion_tokens": 70, "total_tokens": 100}});
            events.insert(events.len() - 1, format!("data: {usage}\n\n"));
        }
        Reply::Sse(events, Duration::from_millis(1))
    });
    let cfg = priced(&mock)
        .provider_with("q", Kind::OpenAi, &mock.url(), "stream_usage: false")
        .model("n", "targets: [{ provider: q, model: up-model }]")
        .key("k", "sk-stream-001");
    let gw = start(&cfg).await;
    let body =
        json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let r = gw
        .post("/v1/chat/completions", "sk-stream-001", body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("x-modelgate-usage").is_none());
    let text = r.text().await.unwrap();
    assert!(
        !text.contains("usage"),
        "the client did not ask for the usage chunk: {text}"
    );
    assert!(
        text.contains("\"model\":\"m\"") && text.ends_with("data: [DONE]\n\n"),
        "{text}"
    );
    assert_eq!(mock.last().json()["stream_options"]["include_usage"], true);
    let v = admin_json(&gw, "/v0/management/usage/records?limit=1").await;
    let rec = &v["records"][0];
    assert_eq!(
        (
            rec["prompt_tokens"].as_u64(),
            rec["completion_tokens"].as_u64()
        ),
        (Some(30), Some(70))
    );
    assert!(
        close(
            rec["cost_usd"].as_f64().unwrap(),
            (30.0 * 1000.0 + 70.0 * 2000.0) / 1e6
        ),
        "{rec}"
    );

    // A client that asked keeps its chunk; a provider that takes no stream_options gets none.
    let body = json!({"model": "m", "stream": true, "stream_options": {"include_usage": true},
                      "messages": [{"role": "user", "content": "hi"}]});
    let text = gw
        .post("/v1/chat/completions", "sk-stream-001", body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("\"completion_tokens\":70"), "{text}");
    let body =
        json!({"model": "n", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let r = gw
        .post("/v1/chat/completions", "sk-stream-001", body)
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "x-modelgate-usage"), "estimated");
    assert!(mock.last().json().get("stream_options").is_none());
}
