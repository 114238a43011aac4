//! Operations: SIGHUP reload, -t, metrics, the management reload endpoint, and SIGTERM
//! draining.

use crate::support::*;
use futures_util::StreamExt;
use std::process::Command;
use std::time::{Duration, Instant};

async fn wait_for_reloads(gw: &Gateway, result: &str, n: f64) {
    wait_metric(
        gw,
        "modelgate_config_reloads_total",
        &[("result", result)],
        n,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_swaps_valid_configs_and_keeps_the_old_on_errors() {
    let mock = MockProvider::start("p").await;
    let gw = Gateway::start(
        "",
        &Config::basic(&mock.url())
            .key("a", "sk-key-a-000001")
            .yaml(),
    )
    .await;
    assert_eq!(gw.chat_status("sk-key-a-000001", "m").await, 200);
    assert_eq!(gw.chat_status("sk-key-b-000001", "m").await, 401);

    gw.rewrite_config(
        &Config::basic(&mock.url())
            .key("b", "sk-key-b-000001")
            .yaml(),
    );
    gw.signal("HUP");
    wait_for_reloads(&gw, "success", 1.0).await;
    assert_eq!(
        gw.chat_status("sk-key-b-000001", "m").await,
        200,
        "added key works"
    );
    assert_eq!(
        gw.chat_status("sk-key-a-000001", "m").await,
        401,
        "removed key is refused"
    );

    gw.rewrite_config(&Config::new().route("m", "nowhere").yaml());
    gw.signal("HUP");
    wait_for_reloads(&gw, "failure", 1.0).await;
    assert_eq!(
        gw.chat_status("sk-key-b-000001", "m").await,
        200,
        "the old config stays"
    );
    assert!(
        gw.logs()
            .contains("models.m.targets[0].provider: unknown provider \"nowhere\""),
        "{}",
        gw.logs()
    );
    let m = gw.metrics().await;
    assert!(
        metric_value(
            &m,
            "modelgate_config_last_reload_success_timestamp_seconds",
            &[]
        )
        .unwrap()
            > 1.7e9
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_requests_finish_on_the_old_config() {
    let mock = MockProvider::start("p").await;
    mock.reply(|_| {
        Reply::Sse(
            chat_stream_events("m", &["a", "b", "c"]),
            Duration::from_millis(300),
        )
    });
    let gw = Gateway::start(
        "",
        &Config::basic(&mock.url())
            .key("a", "sk-key-a-000001")
            .yaml(),
    )
    .await;
    let mut body = chat("m");
    body["stream"] = true.into();
    let resp = gw
        .post("/v1/chat/completions", "sk-key-a-000001", body)
        .send()
        .await
        .unwrap();
    gw.rewrite_config(
        &Config::basic(&mock.url())
            .key("b", "sk-key-b-000001")
            .yaml(),
    );
    gw.signal("HUP");
    let text = resp.text().await.unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    wait_for_reloads(&gw, "success", 1.0).await;
}

#[test]
fn dash_t_validates_and_names_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yaml");
    let cfg = Config::new()
        .provider_with(
            "openai",
            Kind::OpenAi,
            "https://api.openai.com",
            r#"credentials: ["${TEST_CRED:-x}"]"#,
        )
        .route("gpt-4o", "openai")
        .key("a", "k1");
    std::fs::write(&good, cfg.yaml()).unwrap();
    let out = Command::new(bin())
        .arg("-t")
        .arg("-c")
        .arg(&good)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("configuration is valid"));
    // MODELGATE_CONFIG works like -c
    let out = Command::new(bin())
        .arg("-t")
        .env("MODELGATE_CONFIG", &good)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));

    let bad = dir.path().join("bad.yaml");
    let cfg = Config::new()
        .provider("openai", Kind::OpenAi, "https://api.openai.com")
        .model(
            "gpt-4o",
            "targets: [{ provider: openai }, { provider: opnai }]",
        );
    std::fs::write(&bad, cfg.yaml()).unwrap();
    let out = Command::new(bin())
        .arg("-t")
        .arg("-c")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("models.gpt-4o.targets[1].provider: unknown provider \"opnai\""),
        "{err}"
    );

    let syntax = dir.path().join("syntax.yaml");
    // Literal text: a syntax error the builder cannot write, reported at its line.
    std::fs::write(&syntax, "models:\n  a: [\n").unwrap();
    let out = Command::new(bin())
        .arg("-t")
        .arg("-c")
        .arg(&syntax)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(&format!("{}:3:", syntax.display())),
        "{err}"
    );

    let missing_var = dir.path().join("var.yaml");
    let cfg = Config::new().management(r#"secret_key: "${MODELGATE_TEST_UNSET_VAR}""#);
    std::fs::write(&missing_var, cfg.yaml()).unwrap();
    let out = Command::new(bin())
        .arg("-t")
        .arg("-c")
        .arg(&missing_var)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("MODELGATE_TEST_UNSET_VAR"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_and_stay_off_the_public_port() {
    let mock = MockProvider::start("p").await;
    let gw = Gateway::start(
        "",
        &Config::basic(&mock.url())
            .key("team-a", "sk-key-a-000001")
            .yaml(),
    )
    .await;
    for _ in 0..3 {
        assert_eq!(gw.chat_status("sk-key-a-000001", "m").await, 200);
    }
    assert_eq!(gw.chat_status("wrong-key-000001", "m").await, 401);
    // Requests are counted in the logging phase, after the client has its answer.
    wait_metric(&gw, "modelgate_requests_total", &[("status", "401")], 1.0).await;
    wait_metric(
        &gw,
        "modelgate_request_duration_seconds_count",
        &[("model", "m")],
        3.0,
    )
    .await;
    let m = gw.metrics().await;
    let labels = [
        ("model", "m"),
        ("provider", "p"),
        ("key", "team-a"),
        ("status", "200"),
    ];
    assert_eq!(
        metric_value(&m, "modelgate_requests_total", &labels),
        Some(3.0),
        "{m}"
    );
    assert_eq!(
        metric_value(&m, "modelgate_requests_total", &[("status", "401")]),
        Some(1.0)
    );
    assert_eq!(
        metric_value(
            &m,
            "modelgate_upstream_attempts_total",
            &[("provider", "p"), ("outcome", "ok")]
        ),
        Some(3.0)
    );
    assert_eq!(
        metric_value(
            &m,
            "modelgate_request_duration_seconds_count",
            &[("model", "m")]
        ),
        Some(3.0)
    );
    assert_eq!(
        metric_value(
            &m,
            "modelgate_time_to_first_byte_seconds_count",
            &[("model", "m")]
        ),
        Some(3.0)
    );
    assert_eq!(
        metric_value(&m, "modelgate_inflight_requests", &[("key", "team-a")]),
        Some(0.0)
    );
    assert!(m.contains("modelgate_build_info{version=\""));
    assert!(!m.contains("sk-key-a"), "a secret in metrics");
    let r = client()
        .get(format!("{}/metrics", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        404,
        "metrics must not be served on the public listener"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn management_reload_needs_the_secret() {
    let mock = MockProvider::start("p").await;
    let base = Config::basic(&mock.url()).key("a", "sk-key-a-000001");
    let gw = Gateway::start("", &base.yaml()).await;
    let url = format!("{}/v0/management/reload", gw.url);
    assert_eq!(
        client()
            .post(&url)
            .bearer_auth("anything")
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    let with_secret = base.management(r#"secret_key: "${ADMIN_SECRET}""#).yaml();
    let gw =
        Gateway::start_with_env("", &with_secret, &[("ADMIN_SECRET", "admin-secret-123")]).await;
    let url = format!("{}/v0/management/reload", gw.url);
    assert_eq!(
        client()
            .post(&url)
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(client().post(&url).send().await.unwrap().status(), 401);
    let r = client()
        .post(&url)
        .bearer_auth("admin-secret-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let m = gw.metrics().await;
    assert_eq!(
        metric_value(
            &m,
            "modelgate_config_reloads_total",
            &[("result", "success")]
        ),
        Some(1.0)
    );
    assert!(!gw.logs().contains("admin-secret-123"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_then_exits_after_the_stream_completes() {
    let mock = MockProvider::start("p").await;
    mock.reply(|_| {
        Reply::Sse(
            chat_stream_events("m", &["a", "b", "c", "d"]),
            Duration::from_millis(250),
        )
    });
    let mut gw = Gateway::start(
        "  drain_delay: 400ms",
        &Config::basic(&mock.url())
            .key("a", "sk-key-a-000001")
            .yaml(),
    )
    .await;
    let mut body = chat("m");
    body["stream"] = true.into();
    let resp = gw
        .post("/v1/chat/completions", "sk-key-a-000001", body)
        .send()
        .await
        .unwrap();
    let mut stream = resp.bytes_stream();
    let first = stream.next().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: "));
    gw.signal("TERM");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let h = client()
        .get(format!("{}/health", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(h.status(), 503, "health turns 503 at once");
    let mut rest = String::from_utf8_lossy(&first).to_string();
    while let Some(c) = stream.next().await {
        rest.push_str(&String::from_utf8_lossy(&c.unwrap()));
    }
    assert!(
        rest.ends_with("data: [DONE]\n\n"),
        "the in-flight stream completes: {rest}"
    );
    let code = gw.wait_exit(Duration::from_secs(4)).await;
    assert_eq!(code, Some(0), "log:\n{}", gw.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn management_config_logs_and_json_access_lines() {
    let mock = MockProvider::start("p").await;
    let headers = "credentials: [prov-cred-secret], headers: { X-Org: hdr-secret }";
    let rest = Config::new()
        .provider_with("p", Kind::OpenAi, &mock.url(), headers)
        .route("m", "p")
        .key("client-a", "sk-mgmt-client-01")
        .management(r#"secret_key: "${ADMIN_SECRET}", log_buffer: 50"#);
    let gw = Gateway::start_with_env(
        "  log_format: json",
        &rest.yaml(),
        &[("ADMIN_SECRET", "admin-secret-123")],
    )
    .await;
    let admin = |req: reqwest::RequestBuilder| req.bearer_auth("admin-secret-123");
    let url = |p: &str| format!("{}/v0/management/{p}", gw.url);

    // the running config, every secret redacted
    let text = admin(client().get(url("config")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for secret in [
        "sk-mgmt-client-01",
        "prov-cred-secret",
        "hdr-secret",
        "admin-secret-123",
    ] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["keys"][0]["key"], "<redacted>");
    assert_eq!(v["providers"]["p"]["credentials"][0], "<redacted>");
    assert_eq!(v["keys"][0]["name"], "client-a");

    // access records: newest first, limited, without secrets
    let r1 = gw.chat("sk-mgmt-client-01", "m").await;
    let id1 = r1.headers()["x-request-id"].to_str().unwrap().to_string();
    let r2 = gw.chat("wrong-key-1234567", "m").await;
    let id2 = r2.headers()["x-request-id"].to_str().unwrap().to_string();
    // Records are written in the logging phase, just after each response.
    let deadline = Instant::now() + Duration::from_secs(5);
    // The polls are recorded too: pick the two requests out, newest first.
    let (logs, recs) = loop {
        let logs: serde_json::Value = admin(client().get(url("logs?limit=1000")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let recs: Vec<serde_json::Value> = logs["records"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["request_id"] == id1.as_str() || r["request_id"] == id2.as_str())
            .cloned()
            .collect();
        if recs.len() == 2 || Instant::now() > deadline {
            break (logs, recs);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(recs.len(), 2, "{logs}");
    // Each is written just after its answer, so two close requests may land in either
    // order: found by id.
    let by_id = |id: &str| recs.iter().find(|r| r["request_id"] == id).unwrap().clone();
    let (ok, refused) = (by_id(&id1), by_id(&id2));
    assert_eq!(refused["status"], 401);
    assert_eq!(refused["error"], "invalid_api_key");
    assert_eq!(ok["key"], "client-a");
    assert_eq!(ok["provider"], "p");
    assert_eq!(ok["prompt_tokens"], 5);
    assert!(!logs.to_string().contains("sk-mgmt") && !logs.to_string().contains("wrong-key"));

    // JSON access lines on stderr
    let line = gw
        .logs()
        .lines()
        .find(|l| l.contains(&id1))
        .map(String::from)
        .unwrap();
    let json_part = &line[line.find('{').unwrap()..];
    let rec: serde_json::Value = serde_json::from_str(json_part).unwrap();
    assert_eq!(rec["model"], "m");
    assert!(rec["duration_ms"].as_f64().is_some());

    // an invalid config is refused with its errors and changes nothing
    let before = std::fs::read_to_string(&gw.config_path).unwrap();
    let r = admin(client().put(url("config")))
        .body(Config::new().route("m", "nope").yaml())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(
        v["errors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e.as_str().unwrap().contains("models.m.targets[0].provider")),
        "{v}"
    );
    assert_eq!(std::fs::read_to_string(&gw.config_path).unwrap(), before);

    // a valid one replaces the file (old one kept as .bak) and works at once
    let server_section = before
        .strip_suffix(&rest.yaml())
        .expect("the file as written");
    let new_rest = rest.key("client-b", "sk-mgmt-client-02").yaml();
    let new_text = format!("{server_section}{new_rest}");
    let r = admin(client().put(url("config")))
        .body(new_text.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert_eq!(std::fs::read_to_string(&gw.config_path).unwrap(), new_text);
    let bak = format!("{}.bak", gw.config_path.display());
    assert_eq!(std::fs::read_to_string(bak).unwrap(), before);
    assert_eq!(gw.chat("sk-mgmt-client-02", "m").await.status(), 200);

    // wrong secrets are counted
    assert_eq!(
        client()
            .get(url("config"))
            .bearer_auth("nope")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let m = gw.metrics().await;
    assert_eq!(
        metric_value(&m, "modelgate_management_auth_failures_total", &[]),
        Some(1.0)
    );
    assert!(!gw.logs().contains("admin-secret-123") && !gw.logs().contains("sk-mgmt-client"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_upgrade_hands_the_listeners_over() {
    let mock = MockProvider::start("p").await;
    let mut old = Gateway::start(
        "  grace_period: 2s",
        &Config::basic(&mock.url())
            .key("a", "sk-key-a-000001")
            .yaml(),
    )
    .await;
    // The new process waits on the upgrade socket for the old one's listening sockets.
    let mut new = std::process::Command::new(bin())
        .args(["-u", "-c"])
        .arg(&old.config_path)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // It listens on the upgrade socket once started; a fixed sleep was too short under load.
    let sock = old.config_path.with_file_name("upgrade.sock");
    let ready_by = Instant::now() + Duration::from_secs(10);
    while !sock.exists() && Instant::now() < ready_by {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        sock.exists(),
        "the new process never listened on the upgrade socket"
    );
    // A connection the old process accepted, whose request only arrives once its
    // listeners have closed: it must be answered, not dropped.
    let mut late = tokio::net::TcpStream::connect(old.url.trim_start_matches("http://"))
        .await
        .unwrap();
    let mut late_answer = None;
    tokio::time::sleep(Duration::from_millis(100)).await;
    old.signal("QUIT");
    // Requests keep being answered through the hand-over, then by the new process only.
    let deadline = Instant::now() + Duration::from_secs(8);
    let mut answered = 0;
    while Instant::now() < deadline {
        // A fresh client per request: an error here is a refused or dropped connection.
        let r = gw_post(&old)
            .await
            .expect("a connection failed during the upgrade");
        assert_eq!(r, 200, "a request failed during the upgrade");
        answered += 1;
        if late_answer.is_none() && old.logs().contains("listeners closed") {
            late_answer = Some(raw_chat(&mut late, "sk-key-a-000001").await);
        }
        if let Ok(Some(_)) = new.try_wait() {
            panic!("the new process exited");
        }
        if old.wait_exit(Duration::from_millis(10)).await.is_some() && answered > 5 {
            break;
        }
    }
    assert_eq!(
        old.wait_exit(Duration::from_secs(5)).await,
        Some(0),
        "the old process did not finish"
    );
    let late_answer = late_answer.expect("the old process never closed its listeners");
    assert!(
        late_answer.starts_with("HTTP/1.1 200"),
        "a request arriving as the listeners closed: {late_answer:?}"
    );
    assert!(late_answer
        .to_ascii_lowercase()
        .contains("connection: close"));
    for _ in 0..5 {
        assert_eq!(
            gw_post(&old).await.unwrap(),
            200,
            "the new process serves the same port"
        );
    }
    let _ = new.kill();
    let _ = new.wait();
}

/// Sends one chat request on an open connection and reads until the gateway closes it.
async fn raw_chat(conn: &mut tokio::net::TcpStream, key: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = chat("m").to_string();
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer {key}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    if conn.write_all(request.as_bytes()).await.is_err() {
        return "write failed".into();
    }
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut answer)).await;
    match read {
        Ok(Ok(_)) => String::from_utf8_lossy(&answer).into_owned(),
        Ok(Err(e)) => format!("read failed: {e}"),
        Err(_) => "no close within 5 s".into(),
    }
}

async fn gw_post(gw: &Gateway) -> Result<u16, reqwest::Error> {
    Ok(gw
        .post("/v1/chat/completions", "sk-key-a-000001", chat("m"))
        .send()
        .await?
        .status()
        .as_u16())
}

/// The console is served where the management API answers, and only there; its files
/// carry a strict CSP. The endpoints it relies on: providers, config validation by line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_follows_the_management_api_rules() {
    let mock = MockProvider::start("p").await;
    let base = Config::basic(&mock.url()).key("a", "sk-key-a-000001");
    let gw = Gateway::start("", &base.yaml()).await;
    let get = |url: String| async move { client().get(url).send().await.unwrap() };
    assert_eq!(
        get(format!("{}/console/", gw.url)).await.status(),
        404,
        "no secret: no console"
    );

    let with_secret = base.management(r#"secret_key: "${ADMIN_SECRET}""#).yaml();
    let gw = Gateway::start_with_env(
        "  trusted_proxies: [\"127.0.0.0/8\"]",
        &with_secret,
        &[("ADMIN_SECRET", "admin-secret-123")],
    )
    .await;
    for (path, ty) in [
        ("/console/", "text/html"),
        ("/console", "text/html"),
        ("/console/console.js", "text/javascript"),
        ("/console/console.css", "text/css"),
        ("/console/icon.svg", "image/svg+xml"),
    ] {
        let r = get(format!("{}{path}", gw.url)).await;
        assert_eq!(r.status(), 200, "{path}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(ty),
            "{path}"
        );
        let csp = r.headers()["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"));
        assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    }
    let r = client()
        .get(format!("{}/console/", gw.url))
        .header("x-forwarded-for", "192.0.2.1")
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(r).await.1,
        "ip_not_allowed",
        "remote clients: no console"
    );
    assert_eq!(
        get(format!("{}/console/other.js", gw.url)).await.status(),
        404
    );

    let v = gw
        .get_json("/v0/management/providers", "admin-secret-123")
        .await;
    assert_eq!(v["providers"][0]["name"], "p", "{v}");
    let validate = async |yaml: &str| -> serde_json::Value {
        let url = format!("{}/v0/management/config/validate", gw.url);
        let r = client()
            .post(url)
            .bearer_auth("admin-secret-123")
            .body(yaml.to_string());
        r.send().await.unwrap().json().await.unwrap()
    };
    let v = validate("providers:\n  p:\n    kind: openai\n    base_url: http://127.0.0.1:9\nkeys:\n  - name: a\n    key: sk-key-a-000001\n    limits:\n      rpm: -1\n").await;
    assert_eq!(v["valid"], false, "{v}");
    assert_eq!(v["errors"][0]["field"], "keys[0].limits.rpm", "{v}");
    assert_eq!(v["errors"][0]["line"], 9, "{v}");
    let v = validate("server:\n  listen: [\n").await;
    assert_eq!(
        (v["errors"][0]["line"].as_u64(), v["valid"].as_bool()),
        (Some(3), Some(false)),
        "{v}"
    );
    let v = validate("providers:\n  p: { kind: openai, base_url: \"http://127.0.0.1:9\" }\nmodels:\n  m: { targets: [{ provider: p }] }\nkeys: [{ name: a, key: sk-key-a-000001 }]\n").await;
    assert_eq!(v["valid"], true, "{v}");
    let r = client()
        .post(format!("{}/v0/management/config/validate", gw.url))
        .body("a: 1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "validation needs the secret");
}
