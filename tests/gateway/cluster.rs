//! Three replicas as one: a real redis-server and a real Postgres, three gateway
//! processes. Shared rpm and concurrency, a killed replica's slots coming back, a
//! cooldown seen by one replica honoured by the others, a revocation on all, and Redis
//! stopped under load in `local` and `closed` mode.

use crate::support::postgres::Postgres;
use crate::support::redis::Redis;
use crate::support::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const ADMIN: &str = "admin-secret-cluster";

fn config(mock: &MockProvider, redis: &Redis, pg: &Postgres, on_error: &str) -> Config {
    Config::new()
        .provider("p", Kind::OpenAi, &mock.url())
        .route("m", "p")
        .key("free", "sk-free-key-00001")
        .key_with("rated", "sk-rated-key-0001", "limits: { rpm: 5 }")
        .key_with("narrow", "sk-narrow-key-001", "limits: { concurrency: 2 }")
        .key_with("daily", "sk-daily-key-0001", "budgets: [{ requests: 6, period: day }]")
        // Limits and a budget far from reached: every request of it goes through Redis.
        .key_with(
            "busy",
            "sk-busy-key-00001",
            "limits: { rpm: 1000000, tpm: 1000000000, concurrency: 1000 }, budgets: [{ requests: 1000000, period: day }]",
        )
        .store(&format!("url: \"{}\", flush_interval: 50ms", pg.url()))
        .management(r#"secret_key: "${ADMIN_SECRET}""#)
        .top(
            "cluster",
            &format!(
                "redis: {{ url: \"{}\", timeout: 100ms }}, on_error: {on_error}, replicas: 3, lease_ttl: 3s",
                redis.url()
            ),
        )
}

async fn replicas(cfg: &Config, n: usize) -> Vec<Gateway> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(Gateway::start_with_env("", &cfg.yaml(), &[("ADMIN_SECRET", ADMIN)]).await);
    }
    out
}

async fn servers() -> (Redis, Postgres) {
    tokio::task::spawn_blocking(|| {
        let redis = Redis::start().unwrap_or_else(|e| panic!("redis: {e}"));
        let pg = Postgres::start().unwrap_or_else(|e| panic!("postgres: {e}"));
        (redis, pg)
    })
    .await
    .unwrap()
}

async fn health(gw: &Gateway) -> Value {
    client()
        .get(format!("{}/health", gw.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Whether the replica's provider status shows a target cooling down.
async fn cooling(gw: &Gateway) -> bool {
    gw.get_json("/v1/metrics/providers", "sk-free-key-00001")
        .await
        .to_string()
        .contains("cooling_down_until\":\"20")
}

async fn wait_for(what: &str, within: Duration, mut f: impl AsyncFnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    while !f().await {
        assert!(t0.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    t0.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_share_limits_slots_cooldowns_and_keys() {
    let (mut redis, pg) = servers().await;
    let mock = MockProvider::start("p").await;
    mock.reply_default();
    let cfg = config(&mock, &redis, &pg, "local");
    let gws = replicas(&cfg, 3).await;
    for gw in &gws {
        assert_eq!(health(gw).await, json!({"status": "ok", "cluster": "ok"}));
    }

    // rpm 5 for the key across all three: the sixth request is refused wherever it lands.
    let mut codes = Vec::new();
    for i in 0..8 {
        codes.push(gws[i % 3].chat_status("sk-rated-key-0001", "m").await);
    }
    assert_eq!(
        codes,
        vec![200, 200, 200, 200, 200, 429, 429, 429],
        "{codes:?}"
    );
    let r = gws[1].chat("sk-rated-key-0001", "m").await;
    assert_eq!(r.headers()["x-ratelimit-limit-requests"], "5");
    assert_eq!(error_code(r).await.1, "rate_limit_exceeded");

    // A cooldown one replica saw is honoured by the others: no request reaches the mock.
    mock.reply(|_| Reply::JsonWithHeaders(429, json!({}), vec![("retry-after", "3600".into())]));
    assert_eq!(gws[0].chat_status("sk-free-key-00001", "m").await, 429);
    let seen = mock.requests().len();
    // Watched through the provider status, which never calls the provider.
    let took = wait_for(
        "the cooldown on replica 2",
        Duration::from_secs(2),
        async || cooling(&gws[2]).await,
    )
    .await;
    println!("cooldown reached another replica in {took:?}");
    for gw in &gws[1..] {
        wait_for(
            "the cooldown on every replica",
            Duration::from_secs(2),
            async || cooling(gw).await,
        )
        .await;
        assert_eq!(gw.chat_status("sk-free-key-00001", "m").await, 503);
    }
    assert_eq!(
        mock.requests().len(),
        seen,
        "the others did not call the provider"
    );
    // A reset on one replica clears it on all.
    let r = client()
        .post(format!("{}/v0/management/providers/p/reset", gws[1].url))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    mock.reply_default();
    wait_for(
        "the reset on replica 0",
        Duration::from_secs(2),
        async || gws[0].chat_status("sk-free-key-00001", "m").await == 200,
    )
    .await;

    // A key made on one replica works on all; revoked, it fails on all within a second.
    let r = client()
        .post(format!("{}/v0/management/keys", gws[0].url))
        .bearer_auth(ADMIN)
        .json(&json!({"name": "roaming"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let secret = r.json::<Value>().await.unwrap()["key"]
        .as_str()
        .unwrap()
        .to_string();
    for gw in &gws[1..] {
        wait_for("the new key", Duration::from_secs(1), async || {
            gw.chat_status(&secret, "m").await == 200
        })
        .await;
    }
    let r = client()
        .delete(format!("{}/v0/management/keys/roaming", gws[0].url))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let t0 = Instant::now();
    for gw in &gws {
        wait_for("the revocation", Duration::from_secs(1), async || {
            gw.chat_status(&secret, "m").await == 401
        })
        .await;
    }
    println!(
        "revocation held on all three replicas after {:?}",
        t0.elapsed()
    );

    // Concurrency 2 across replicas; a killed replica's slots come back (lease_ttl 3s).
    let words: Vec<&str> = vec!["slow"; 40];
    mock.reply(move |_| Reply::Sse(chat_stream_events("m", &words), Duration::from_millis(100)));
    let stream =
        json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let mut held = Vec::new();
    for _ in 0..2 {
        let r = gws[0]
            .post("/v1/chat/completions", "sk-narrow-key-001", stream.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        held.push(r);
    }
    let (status, code, _) = error_code(gws[1].chat("sk-narrow-key-001", "m").await).await;
    assert_eq!((status, code.as_str()), (429, "rate_limit_exceeded"));
    let mut gws = gws;
    let dead = gws.remove(0);
    dead.signal("KILL");
    drop(held);
    mock.reply_default();
    let took = wait_for(
        "the dead replica's slots",
        Duration::from_secs(6),
        async || gws[0].chat_status("sk-narrow-key-001", "m").await == 200,
    )
    .await;
    println!("a killed replica's concurrency slots came back after {took:?}");
    drop(dead);

    // Redis stopped under load (a key whose limits and budget Redis counts): local mode
    // serves every request, says it is degraded, and shares again once Redis is back.
    let load = {
        let urls: Vec<String> = gws.iter().map(|g| g.url.clone()).collect();
        tokio::spawn(async move {
            let (within, pause) = (Duration::from_secs(4), Duration::ZERO);
            chat_load(&urls, "sk-busy-key-00001", "m", within, pause).await
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    redis.stop();
    wait_for("degraded health", Duration::from_secs(3), async || {
        health(&gws[0]).await["cluster"] == "degraded"
    })
    .await;
    assert!(metric_value(&gws[0].metrics().await, "modelgate_cluster_up", &[]) == Some(0.0));
    // Each replica now allows rpm 5 / 3 = 2 for the rated key on its own.
    let local: Vec<u16> = futures_util::future::join_all(
        (0..3).map(|_| gws[1].chat_status("sk-rated-key-0001", "m")),
    )
    .await;
    assert_eq!(local.iter().filter(|s| **s == 200).count(), 2, "{local:?}");
    // So does a budget: 6 requests a day, 2 on this replica while Redis is away.
    let mut daily = Vec::new();
    for _ in 0..3 {
        daily.push(gws[1].chat_status("sk-daily-key-0001", "m").await);
    }
    assert_eq!(daily, vec![200, 200, 429], "{daily:?}");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    // Kept in a binding: dropping it would stop the server again.
    let _redis = tokio::task::spawn_blocking(move || {
        redis.restart().unwrap();
        redis
    })
    .await
    .unwrap();
    let (ok, failed) = load.await.unwrap();
    println!("through the Redis outage: {ok} requests served, {failed} failed");
    assert_eq!(failed, 0);
    assert!(ok > 20, "{ok}");
    for gw in &gws {
        wait_for("shared again", Duration::from_secs(3), async || {
            health(gw).await["cluster"] == "ok"
        })
        .await;
    }
    assert!(gws[0].logs().contains("Redis does not answer"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_mode_refuses_what_it_cannot_count() {
    let (mut redis, pg) = servers().await;
    let mock = MockProvider::start("p").await;
    mock.reply_default();
    let cfg = config(&mock, &redis, &pg, "closed");
    let gws = replicas(&cfg, 2).await;
    assert_eq!(gws[0].chat_status("sk-rated-key-0001", "m").await, 200);
    redis.stop();
    wait_for("degraded", Duration::from_secs(3), async || {
        health(&gws[0]).await["cluster"] == "degraded"
    })
    .await;
    let (status, code, _) = error_code(gws[0].chat("sk-rated-key-0001", "m").await).await;
    assert_eq!((status, code.as_str()), (503, "limits_unavailable"));
    assert_eq!(
        gws[1].chat_status("sk-free-key-00001", "m").await,
        200,
        "a key without limits needs no Redis"
    );
    // Kept in a binding: dropping it would stop the server again.
    let _redis = tokio::task::spawn_blocking(move || {
        redis.restart().unwrap();
        redis
    })
    .await
    .unwrap();
    wait_for("limits back", Duration::from_secs(3), async || {
        gws[0].chat_status("sk-rated-key-0001", "m").await == 200
    })
    .await;
}

/// A budget is counted once for all replicas: concurrent requests spread over three
/// replicas cannot spend it more than once, and what one replica spent is what the next
/// one's headers say.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budgets_are_shared_by_every_replica() {
    let (redis, pg) = servers().await;
    let mock = MockProvider::start("p").await;
    mock.reply_default();
    let cfg = config(&mock, &redis, &pg, "local")
        .key_with(
            "budgeted",
            "sk-budget-key-001",
            "budgets: [{ requests: 4, period: day }]",
        )
        .key_with(
            "burst",
            "sk-burst-key-0001",
            "budgets: [{ requests: 3, period: day }]",
        );
    let gws = replicas(&cfg, 3).await;

    let mut seen = Vec::new();
    for i in 0..6 {
        let r = gws[i % 3].chat("sk-budget-key-001", "m").await;
        let left = r
            .headers()
            .get("x-modelgate-budget-remaining")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        seen.push((r.status().as_u16(), left));
    }
    let want: Vec<(u16, String)> = [
        (200, "3"),
        (200, "2"),
        (200, "1"),
        (200, "0"),
        (429, "0"),
        (429, "0"),
    ]
    .iter()
    .map(|(s, l)| (*s, l.to_string()))
    .collect();
    assert_eq!(seen, want);
    let (status, code, body) = error_code(gws[1].chat("sk-budget-key-001", "m").await).await;
    assert_eq!((status, code.as_str()), (429, "insufficient_quota"));
    assert!(body.to_string().contains("4 of 4"), "{body}");

    // 30 at once across the replicas against 3 requests: exactly 3 reach the provider.
    let before = mock.requests().len();
    let all = futures_util::future::join_all(
        (0..30).map(|i| gws[i % 3].chat_status("sk-burst-key-0001", "m")),
    )
    .await;
    assert_eq!(all.iter().filter(|s| **s == 200).count(), 3, "{all:?}");
    assert_eq!(all.iter().filter(|s| **s == 429).count(), 27, "{all:?}");
    assert_eq!(mock.requests().len() - before, 3);

    // Finished requests give their concurrency slots back (2 at a time, 6 in a row).
    for i in 0..6 {
        assert_eq!(
            gws[i % 3].chat_status("sk-narrow-key-001", "m").await,
            200,
            "request {i}"
        );
    }
}

/// A provider one replica's active check finds unhealthy is skipped by the others, a
/// replica started later learns it too, and a replica that dies stops holding it down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unhealthy_verdict_is_honoured_by_every_replica() {
    let (redis, pg) = servers().await;
    let a = MockProvider::start("a").await;
    let b = MockProvider::start("b").await;
    b.reply_default();
    // Only the first replica probes a path that fails: the others would find `a` healthy.
    a.reply(|r| match r.uri.as_str() {
        "/down" => Reply::Json(500, json!({"error": {"message": "down"}})),
        "/v1/models" => Reply::Json(200, json!({"object": "list", "data": []})),
        _ => Reply::Json(200, chat_completion("m", "hello from a")),
    });
    let cfg = |path: &str| {
        config(&b, &redis, &pg, "local")
            .provider_with(
                "a",
                Kind::OpenAi,
                &a.url(),
                &format!(
                    "health_check: {{ path: {path}, interval: 200ms, unhealthy_threshold: 1, healthy_threshold: 1 }}"
                ),
            )
            .model("m", "targets: [{ provider: a }, { provider: p, weight: 0 }]")
    };
    let sick = replicas(&cfg("/down"), 1).await.remove(0);
    let well = replicas(&cfg("/v1/models"), 1).await.remove(0);
    let provider_a = async |gw: &Gateway| {
        let v = gw
            .get_json("/v1/metrics/providers", "sk-free-key-00001")
            .await;
        v["providers"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["name"] == "a").cloned())
            .unwrap_or(Value::Null)
    };
    wait_for(
        "replica 0 finds a unhealthy",
        Duration::from_secs(5),
        async || provider_a(&sick).await["healthy"] == false,
    )
    .await;
    wait_for("replica 1 hears it", Duration::from_secs(3), async || {
        provider_a(&well).await["healthy"] == false
    })
    .await;
    let pa = provider_a(&well).await;
    assert_eq!(pa["health_check"]["consecutive_failures"], 0, "{pa}");
    assert_eq!(pa["health_check"]["unhealthy_on_other_replicas"], 1, "{pa}");
    let r = well.chat("sk-free-key-00001", "m").await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["x-modelgate-provider"],
        "p",
        "a is skipped here too"
    );

    let late = replicas(&cfg("/v1/models"), 1).await.remove(0);
    wait_for(
        "a replica started later knows",
        Duration::from_secs(3),
        async || provider_a(&late).await["healthy"] == false,
    )
    .await;

    // The reporting replica dies: its report lapses (3 intervals + timeout, at least 5 s).
    drop(sick);
    let took = wait_for("the report lapses", Duration::from_secs(12), async || {
        provider_a(&well).await["healthy"] == true
    })
    .await;
    println!("a dead replica's unhealthy report lapsed after {took:?}");
    let r = well.chat("sk-free-key-00001", "m").await;
    assert_eq!(r.headers()["x-modelgate-provider"], "a");
}
