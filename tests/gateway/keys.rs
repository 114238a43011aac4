//! Keys managed through the API: every endpoint and error, revocation timed, rotation
//! with a grace period, restarts and reloads, the audit log, provider resets, and two
//! replicas sharing a real Postgres store.

use crate::support::postgres::Postgres;
use crate::support::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const ADMIN: &str = "admin-secret-keys-1";
const CONFIG_KEY: &str = "sk-config-key-0001";

fn base(mock: &MockProvider) -> Config {
    Config::new()
        .provider("p", Kind::OpenAi, &mock.url())
        .route("m", "p")
        .route("other", "p")
        .key("from-config", CONFIG_KEY)
        .team("eng", "budgets: [{ requests: 100, period: day }]")
        .store("flush_interval: 50ms")
        .management(r#"secret_key: "${ADMIN_SECRET}""#)
}

async fn start(cfg: &Config) -> Gateway {
    Gateway::start_with_env("", &cfg.yaml(), &[("ADMIN_SECRET", ADMIN)]).await
}

async fn call(
    gw: &Gateway,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = client()
        .request(method, format!("{}{path}", gw.url))
        .bearer_auth(ADMIN);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn create(gw: &Gateway, body: Value) -> (u16, Value) {
    call(gw, reqwest::Method::POST, "/v0/management/keys", Some(body)).await
}

async fn created_secret(gw: &Gateway, body: Value) -> String {
    let (status, v) = create(gw, body).await;
    assert_eq!(status, 201, "{v}");
    v["key"].as_str().unwrap().to_string()
}

/// The field a 400 names first.
fn field(v: &Value) -> &str {
    v["errors"][0]["field"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_created_scoped_listed_and_checked() {
    let mock = MockProvider::start("p").await;
    mock.reply_default();
    let gw = start(&base(&mock)).await;

    let (status, v) = create(
        &gw,
        json!({
            "name": "ana",
            "models": ["m"],
            "limits": {"rpm": 100},
            "budgets": [{"requests": 5, "period": "day"}],
            "team": "eng",
            "metadata": {"owner": "ana@example.com"}
        }),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    let secret = v["key"].as_str().unwrap().to_string();
    assert!(
        secret.starts_with("sk-mg-") && secret.len() >= 6 + 43,
        "{secret}"
    );
    assert_eq!(v["source"], "api");
    assert_eq!(v["key_hint"], secret[secret.len() - 4..]);
    assert_eq!(v["metadata"]["owner"], "ana@example.com");
    assert!(v["created_at"].as_str().unwrap().starts_with("20"), "{v}");
    assert!(v["last_used_at"].is_null());

    // It authenticates like a config key: scope, budgets headers, the usage endpoint.
    let r = gw.chat(&secret, "m").await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["x-modelgate-budget-remaining"],
        "4",
        "{:?}",
        r.headers()
    );
    let (status, code, _) = error_code(gw.chat(&secret, "other").await).await;
    assert_eq!((status, code.as_str()), (403, "model_not_allowed"));
    let usage: Value = gw.get_json("/v1/usage", &secret).await;
    assert_eq!(usage["key"], "ana", "{usage}");

    // The list has both kinds and never a secret or its hash.
    let (status, list) = call(&gw, reqwest::Method::GET, "/v0/management/keys", None).await;
    assert_eq!(status, 200);
    let text = list.to_string();
    let hex = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(secret.as_bytes()))
    };
    assert!(!text.contains(&secret) && !text.contains(&hex) && !text.contains(CONFIG_KEY));
    let names: Vec<(&str, &str)> = list["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["name"].as_str().unwrap(), k["source"].as_str().unwrap()))
        .collect();
    assert_eq!(names, vec![("from-config", "config"), ("ana", "api")]);

    // One key: each budget with what it used; last use recorded.
    let (status, one) = call(&gw, reqwest::Method::GET, "/v0/management/keys/ana", None).await;
    assert_eq!(status, 200);
    let own = one["budgets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["scope"] == "key")
        .unwrap();
    assert_eq!(
        (own["limit"].as_f64(), own["used"].as_f64()),
        (Some(5.0), Some(1.0)),
        "{one}"
    );
    assert!(one["last_used_at"].is_string(), "{one}");
    assert!(!one.to_string().contains(&secret));

    // Conflicts.
    let (status, v) = create(&gw, json!({"name": "ana"})).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (409, Some("key_exists"))
    );
    let (status, v) = create(&gw, json!({"name": "from-config"})).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (409, Some("key_exists"))
    );
    for (method, path) in [
        (reqwest::Method::PATCH, "/v0/management/keys/from-config"),
        (reqwest::Method::DELETE, "/v0/management/keys/from-config"),
        (
            reqwest::Method::POST,
            "/v0/management/keys/from-config/rotate",
        ),
    ] {
        let (status, v) = call(&gw, method, path, Some(json!({}))).await;
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (409, Some("key_in_config")),
            "{path}"
        );
    }

    // Bad input names the field.
    for (body, want) in [
        (json!({"models": ["m"]}), "name"),
        (json!({"name": "two words"}), "name"),
        (json!({"name": "x", "key": "sk-chosen-by-me-123"}), "key"),
        (
            json!({"name": "x", "limits": {"rpm": "many"}}),
            "limits.rpm",
        ),
        (json!({"name": "x", "limits": {"rpm": 0}}), "limits.rpm"),
        (
            json!({"name": "x", "budgets": [{"usd": 1, "period": "fortnight"}]}),
            "budgets[0].period",
        ),
        (
            json!({"name": "x", "allowed_ips": ["not-an-ip"]}),
            "allowed_ips[0]",
        ),
        (json!({"name": "x", "expires_at": "tomorrow"}), "expires_at"),
        (json!({"name": "x", "colour": "blue"}), "colour"),
    ] {
        let (status, v) = create(&gw, body.clone()).await;
        assert_eq!(status, 400, "{body}: {v}");
        assert_eq!(v["error"]["code"], "invalid_request", "{v}");
        assert_eq!(field(&v), want, "{body}: {v}");
        if want.is_empty() {
            assert!(
                v["error"]["message"].as_str().unwrap().contains("colour"),
                "{v}"
            );
        }
    }
    let r = client()
        .post(format!("{}/v0/management/keys", gw.url))
        .bearer_auth(ADMIN)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // PATCH: partial, validated, live at once.
    let path = "/v0/management/keys/ana";
    let (status, v) = call(
        &gw,
        reqwest::Method::PATCH,
        path,
        Some(json!({"name": "bob"})),
    )
    .await;
    assert_eq!((status, field(&v)), (400, "name"), "{v}");
    let (status, v) = call(
        &gw,
        reqwest::Method::PATCH,
        path,
        Some(json!({"models": [""]})),
    )
    .await;
    assert_eq!((status, field(&v)), (400, "models[0]"), "{v}");
    let (status, v) = call(
        &gw,
        reqwest::Method::PATCH,
        path,
        Some(json!({"models": null, "metadata": {"owner": "bo"}})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert!(
        v["models"].is_null() && v["metadata"]["owner"] == "bo",
        "{v}"
    );
    assert_eq!(v["limits"]["rpm"], 100, "untouched fields stay: {v}");
    assert_eq!(
        gw.chat_status(&secret, "other").await,
        200,
        "the scope is gone"
    );
    let (status, _) = call(
        &gw,
        reqwest::Method::PATCH,
        path,
        Some(json!({"disabled": true})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, code, _) = error_code(gw.chat(&secret, "m").await).await;
    assert_eq!((status, code.as_str()), (401, "key_disabled"));

    // Unknown keys.
    let (status, v) = call(
        &gw,
        reqwest::Method::GET,
        "/v0/management/keys/nobody",
        None,
    )
    .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (404, Some("key_not_found"))
    );
    let (status, _) = call(
        &gw,
        reqwest::Method::PATCH,
        "/v0/management/keys/nobody",
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 404);

    // Without the management secret nothing of this answers.
    let r = gw.get("/v0/management/keys", &secret).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(!gw.logs().contains(&secret), "a secret reached the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_is_immediate_and_rotation_has_a_grace_period() {
    let mock = MockProvider::start("p").await;
    mock.reply_default();
    let gw = start(&base(&mock)).await;

    let secret = created_secret(&gw, json!({"name": "ci"})).await;
    assert_eq!(gw.chat_status(&secret, "m").await, 200);
    let t0 = Instant::now();
    let (status, v) = call(&gw, reqwest::Method::DELETE, "/v0/management/keys/ci", None).await;
    assert_eq!(status, 200, "{v}");
    let mut first_401 = None;
    while t0.elapsed() < Duration::from_secs(2) {
        if gw.chat_status(&secret, "m").await == 401 {
            first_401 = Some(t0.elapsed());
            break;
        }
    }
    let took = first_401.expect("the revoked key still works after 2 s");
    println!("revocation: DELETE sent to first 401 in {took:?}");
    assert!(took < Duration::from_secs(1), "{took:?}");
    let (status, code, _) = error_code(gw.chat(&secret, "m").await).await;
    assert_eq!((status, code.as_str()), (401, "invalid_api_key"));
    let (status, _) = call(&gw, reqwest::Method::GET, "/v0/management/keys/ci", None).await;
    assert_eq!(status, 404);
    // The name is free again; the old secret stays dead.
    let again = created_secret(&gw, json!({"name": "ci"})).await;
    assert_eq!(gw.chat_status(&again, "m").await, 200);
    assert_eq!(gw.chat_status(&secret, "m").await, 401);

    // Rotation with a grace period: both work, then only the new one.
    let rotate = "/v0/management/keys/ci/rotate";
    let (status, v) = call(
        &gw,
        reqwest::Method::POST,
        rotate,
        Some(json!({"grace": "2s"})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let rotated = v["key"].as_str().unwrap().to_string();
    assert_ne!(rotated, again);
    assert!(v["previous_key_valid_until"].is_string(), "{v}");
    assert_eq!(gw.chat_status(&rotated, "m").await, 200);
    assert_eq!(
        gw.chat_status(&again, "m").await,
        200,
        "in its grace period"
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (status, _, body) = error_code(gw.chat(&again, "m").await).await;
    assert_eq!(status, 401);
    assert!(body.to_string().contains("rotation"), "{body}");
    assert_eq!(gw.chat_status(&rotated, "m").await, 200);
    // Without a grace the old secret ends at once; a bad grace names the field.
    let (status, v) = call(&gw, reqwest::Method::POST, rotate, None).await;
    assert_eq!(status, 200, "{v}");
    let last = v["key"].as_str().unwrap().to_string();
    assert_eq!(gw.chat_status(&rotated, "m").await, 401);
    assert_eq!(gw.chat_status(&last, "m").await, 200);
    let (status, v) = call(
        &gw,
        reqwest::Method::POST,
        rotate,
        Some(json!({"grace": "soon"})),
    )
    .await;
    assert_eq!((status, field(&v)), (400, "grace"), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_survive_reloads_and_restarts() {
    let mock = MockProvider::start("p").await;
    mock.reply_default();
    let cfg = base(&mock);
    let mut gw = start(&cfg).await;
    let secret = created_secret(
        &gw,
        json!({"name": "kept", "budgets": [{"requests": 3, "period": "day"}]}),
    )
    .await;
    assert_eq!(gw.chat_status(&secret, "m").await, 200);

    // A reload of the YAML leaves API keys alone (and a changed config key is picked up).
    gw.rewrite_config(&cfg.clone().key("added", "sk-added-key-0001").yaml());
    gw.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(5);
    while gw.chat_status("sk-added-key-0001", "m").await != 200 {
        assert!(
            Instant::now() < deadline,
            "reload not applied: {}",
            gw.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(gw.chat_status(&secret, "m").await, 200);

    // Restarted: the key, its spend and when it was last used are all still there.
    gw.signal("TERM");
    gw.restart().await;
    let (status, v) = call(&gw, reqwest::Method::GET, "/v0/management/keys/kept", None).await;
    assert_eq!(status, 200, "{v}");
    assert!(
        v["last_used_at"].is_string(),
        "last use kept over the restart: {v}"
    );
    let r = gw.chat(&secret, "m").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-modelgate-budget-remaining"], "0");
    assert_eq!(gw.chat_status(&secret, "m").await, 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_is_audited_and_providers_can_be_reset() {
    let mock = MockProvider::start("p").await;
    let gw = start(&base(&mock)).await;
    // A provider that rate-limits for an hour: cooled down after one request.
    mock.reply(|_| Reply::JsonWithHeaders(429, json!({}), vec![("retry-after", "3600".into())]));
    assert_eq!(gw.chat_status(CONFIG_KEY, "m").await, 429);
    let seen = mock.requests().len();
    assert_eq!(gw.chat_status(CONFIG_KEY, "m").await, 503, "cooling down");
    assert_eq!(mock.requests().len(), seen);
    mock.reply_default();
    let (status, v) = call(
        &gw,
        reqwest::Method::POST,
        "/v0/management/providers/p/reset",
        None,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["cooldowns_cleared"], 1);
    assert_eq!(
        gw.chat_status(CONFIG_KEY, "m").await,
        200,
        "tried again at once"
    );
    let (status, _) = call(
        &gw,
        reqwest::Method::POST,
        "/v0/management/providers/nope/reset",
        None,
    )
    .await;
    assert_eq!(status, 404);

    created_secret(&gw, json!({"name": "audited"})).await;
    let (status, _) = create(&gw, json!({"name": "audited"})).await;
    assert_eq!(status, 409);
    let key = "/v0/management/keys/audited";
    call(
        &gw,
        reqwest::Method::PATCH,
        key,
        Some(json!({"team": "eng"})),
    )
    .await;
    call(
        &gw,
        reqwest::Method::POST,
        &format!("{key}/rotate"),
        Some(json!({"grace": "1m"})),
    )
    .await;
    call(&gw, reqwest::Method::DELETE, key, None).await;
    call(&gw, reqwest::Method::POST, "/v0/management/reload", None).await;
    let config_text = std::fs::read_to_string(gw.dir().join("modelgate.yaml")).unwrap();
    let r = client()
        .put(format!("{}/v0/management/config", gw.url))
        .bearer_auth(ADMIN)
        .body(config_text)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let (status, v) = call(
        &gw,
        reqwest::Method::GET,
        "/v0/management/audit?limit=50",
        None,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let records = v["records"].as_array().unwrap();
    let got: Vec<(&str, &str, &str)> = records
        .iter()
        .map(|r| {
            (
                r["action"].as_str().unwrap(),
                r["target"].as_str().unwrap(),
                r["result"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("config.put", "config", "ok"),
            ("config.reload", "config", "ok"),
            ("key.delete", "audited", "ok"),
            ("key.rotate", "audited", "ok"),
            ("key.update", "audited", "ok"),
            ("key.create", "audited", "key_exists"),
            ("key.create", "audited", "ok"),
            ("provider.reset", "nope", "not_found"),
            ("provider.reset", "p", "ok"),
        ],
        "newest first: {v}"
    );
    for r in records {
        assert_eq!(r["client_ip"], "127.0.0.1", "{r}");
        assert!(r["time"].as_str().unwrap().starts_with("20"), "{r}");
    }
    assert_eq!(records[4]["detail"], "team");
    let (_, v) = call(
        &gw,
        reqwest::Method::GET,
        "/v0/management/audit?limit=2&action=key.create",
        None,
    )
    .await;
    assert_eq!(v["records"].as_array().unwrap().len(), 2, "{v}");
    let (status, _) = call(
        &gw,
        reqwest::Method::GET,
        "/v0/management/audit?limit=0",
        None,
    )
    .await;
    assert_eq!(status, 400);
    // SIGHUP reloads are audited too.
    gw.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, v) = call(
            &gw,
            reqwest::Method::GET,
            "/v0/management/audit?limit=1",
            None,
        )
        .await;
        if v["records"][0]["actor"] == "signal" {
            assert_eq!(v["records"][0]["action"], "config.reload");
            break;
        }
        assert!(Instant::now() < deadline, "{v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Two replicas on one Postgres store, started at once (the schema is migrated once,
/// under an advisory lock): a key made on one works on the other, and its revocation
/// holds on both within a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_sharing_postgres_see_each_others_keys() {
    let pg = tokio::task::spawn_blocking(Postgres::start)
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("postgres: {e}"));
    let mock = MockProvider::start("p").await;
    mock.reply_default();
    let cfg = base(&mock).store(&format!("url: \"{}\", flush_interval: 50ms", pg.url()));
    let (a, b) = tokio::join!(start(&cfg), start(&cfg));

    let secret = created_secret(&a, json!({"name": "shared"})).await;
    let t0 = Instant::now();
    while b.chat_status(&secret, "m").await != 200 {
        assert!(t0.elapsed() < Duration::from_secs(2), "{}", b.logs());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "replica b accepted a key made on a after {:?}",
        t0.elapsed()
    );
    let (status, list) = call(&b, reqwest::Method::GET, "/v0/management/keys", None).await;
    assert_eq!(status, 200);
    assert!(list.to_string().contains("\"shared\""));

    let (status, _) = call(
        &a,
        reqwest::Method::DELETE,
        "/v0/management/keys/shared",
        None,
    )
    .await;
    assert_eq!(status, 200);
    let t0 = Instant::now();
    while b.chat_status(&secret, "m").await != 401 {
        assert!(t0.elapsed() < Duration::from_secs(2), "still accepted on b");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = t0.elapsed();
    println!("revocation on a reached replica b in {took:?}");
    assert!(took < Duration::from_secs(1), "{took:?}");
    let versions = pg.psql("SELECT COUNT(*) FROM modelgate_schema").unwrap();
    assert_eq!(versions.trim(), "3", "each schema step applied once");
}

/// `modelgate keys` finds the gateway and its management secret in the config file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_keys_command_drives_the_running_gateway() {
    let mock = MockProvider::start("p").await;
    mock.reply_default();
    let gw = start(&base(&mock)).await;
    let config = gw.dir().join("modelgate.yaml");
    let keys = |args: &[&str]| {
        let out = std::process::Command::new(bin())
            .arg("-c")
            .arg(&config)
            .arg("keys")
            .args(args)
            .env("ADMIN_SECRET", ADMIN)
            .env_remove("MODELGATE_URL")
            .env_remove("MODELGATE_ADMIN_KEY")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, out, err) = keys(&[
        "create",
        "cli-made",
        "--models",
        "m",
        "--budget",
        "3requests/day",
        "--metadata",
        "owner=ops",
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    let secret = out
        .split_whitespace()
        .find(|w| w.starts_with("sk-mg-"))
        .expect("the secret is printed")
        .to_string();
    assert_eq!(gw.chat_status(&secret, "m").await, 200);
    let (code, out, _) = keys(&["list"]);
    assert_eq!(code, Some(0));
    assert!(
        out.contains("cli-made") && out.contains("from-config"),
        "{out}"
    );
    assert!(!out.contains(&secret));
    let (code, _, err) = keys(&["create", "bad", "--budget", "1usd/fortnight"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("budgets[0].period"), "{err}");
    let (code, out, _) = keys(&["--json", "show", "cli-made"]);
    assert_eq!(code, Some(0));
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["metadata"]["owner"], "ops");
    let (code, out, _) = keys(&["rotate", "cli-made"]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(gw.chat_status(&secret, "m").await, 401);
    let (code, _, _) = keys(&["revoke", "cli-made"]);
    assert_eq!(code, Some(0));
    let (code, _, err) = keys(&["revoke", "cli-made"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("key_not_found"), "{err}");
}
