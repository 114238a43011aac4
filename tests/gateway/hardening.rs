//! What a security review found (issue 16), each as a test that failed before its fix:
//! fallbacks escaping a key's scope, model names injected into Gemini URLs, clients
//! choosing the provider account, remote clients counted as loopback behind a trusted
//! proxy, `user:password@` in a base URL.

use crate::support::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallbacks_stay_inside_the_keys_scope() {
    let mock = MockProvider::start("p").await;
    mock.reply(|r| {
        if r.json()["model"] == "primary-up" {
            Reply::Json(503, json!({"error": {"message": "down"}}))
        } else {
            Reply::Json(
                200,
                chat_completion(r.json()["model"].as_str().unwrap_or(""), "from fallback"),
            )
        }
    });
    let cfg = Config::new()
        .provider("p", Kind::OpenAi, &mock.url())
        .model(
            "primary",
            "targets: [{ provider: p, model: primary-up }], fallbacks: [premium]",
        )
        .model("premium", "targets: [{ provider: p, model: premium-up }]")
        .key_with("narrow", "sk-narrow-scope-01", "models: [primary]")
        .key("wide", "sk-wide-scope-001")
        .retry("cooldown: 1ms");
    let gw = Gateway::start("", &cfg.yaml()).await;
    // The key may not call the fallback directly...
    assert_eq!(gw.chat_status("sk-narrow-scope-01", "premium").await, 403);
    // ...so it is not answered by it either: the primary's failure is its answer.
    let r = gw.chat("sk-narrow-scope-01", "primary").await;
    assert_eq!(r.status(), 502, "{:?}", r.headers());
    assert!(
        mock.requests()
            .iter()
            .all(|q| q.json()["model"] != "premium-up"),
        "the out-of-scope fallback was called"
    );
    // A key that may use both still falls back (once the primary's 1 ms cooldown is over,
    // or it would be skipped, not tried).
    tokio::time::sleep(Duration::from_millis(20)).await;
    let r = gw.chat("sk-wide-scope-001", "primary").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-modelgate-attempts"], "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_names_cannot_reach_other_gemini_paths() {
    let mock = MockProvider::start("g").await;
    mock.reply_default();
    let cfg = Config::new()
        .provider("g", Kind::Gemini, &mock.url())
        .route("gemini-*", "g")
        .key("k", "sk-gemini-path-001");
    let gw = Gateway::start("", &cfg.yaml()).await;
    for model in [
        "gemini-x/../gemma-3-27b-it:generateContent?",
        "gemini-x?alt=json&key=other",
        "gemini-x:countTokens",
        "gemini-x#frag",
    ] {
        let (status, code, body) = error_code(gw.chat("sk-gemini-path-001", model).await).await;
        assert_eq!(
            (status, code.as_str()),
            (400, "invalid_request"),
            "{model}: {body}"
        );
        assert_eq!(body["error"]["param"], "model");
    }
    assert!(mock.requests().is_empty(), "nothing reached the provider");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_cannot_choose_the_provider_account() {
    let mock = MockProvider::start("p").await;
    mock.reply_default();
    let cfg = Config::basic(&mock.url()).key("k", "sk-account-test-01");
    let gw = Gateway::start("", &cfg.yaml()).await;
    let r = gw
        .post("/v1/chat/completions", "sk-account-test-01", chat("m"))
        .header("OpenAI-Organization", "org-someone-else")
        .header("OpenAI-Project", "proj_other")
        .header("x-goog-user-project", "other-project")
        .header("x-modelgate-model", "m")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let h = &mock.last().headers;
    for name in [
        "openai-organization",
        "openai-project",
        "x-goog-user-project",
        "x-modelgate-model",
    ] {
        assert!(h.get(name).is_none(), "{name} reached the provider");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxy_does_not_make_remote_clients_local() {
    let mock = MockProvider::start("p").await;
    let cfg = Config::basic(&mock.url())
        .key("k", "sk-proxy-test-0001")
        .management(r#"secret_key: "admin-secret-proxy""#);
    let gw = Gateway::start("  trusted_proxies: [\"127.0.0.1/32\"]", &cfg.yaml()).await;
    let get = |xff: Option<&'static str>| {
        let mut r = client()
            .get(format!("{}/v0/management/config", gw.url))
            .bearer_auth("admin-secret-proxy");
        if let Some(x) = xff {
            r = r.header("x-forwarded-for", x);
        }
        r.send()
    };
    let r = get(Some("203.0.113.7")).await.unwrap();
    assert_eq!(r.status(), 403);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "ip_not_allowed");
    assert_eq!(
        get(None).await.unwrap().status(),
        200,
        "a local client still is"
    );
}

#[test]
fn base_urls_with_passwords_are_refused_without_repeating_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    let cfg = Config::new()
        .provider(
            "p",
            Kind::OpenAi,
            "https://user:hunter2secret@api.example.com",
        )
        .route("m", "p")
        .key("k", "sk-base-url-test-1");
    std::fs::write(&path, cfg.yaml()).unwrap();
    let out = std::process::Command::new(bin())
        .arg("-t")
        .arg("-c")
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("providers.p.base_url") && err.contains("user:password@"),
        "{err}"
    );
    assert!(!err.contains("hunter2secret"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emptied_config_file_is_not_reloaded() {
    let mock = MockProvider::start("p").await;
    mock.reply_default();
    let gw = Gateway::start(
        "",
        &Config::basic(&mock.url())
            .key("k", "sk-empty-reload-1")
            .yaml(),
    )
    .await;
    gw.write_raw_config("");
    gw.signal("HUP");
    wait_metric(
        &gw,
        "modelgate_config_reloads_total",
        &[("result", "failure")],
        1.0,
    )
    .await;
    assert_eq!(
        gw.chat_status("sk-empty-reload-1", "m").await,
        200,
        "the old config stays"
    );
    assert!(
        gw.logs().contains("at least one provider is needed"),
        "{}",
        gw.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_rate_limit_headers_do_not_reach_keys_with_their_own() {
    let mock = MockProvider::start("a").await;
    mock.reply(|_| {
        Reply::JsonWithHeaders(
            200,
            chat_completion("m", "hi"),
            vec![
                ("anthropic-ratelimit-requests-remaining", "4999".into()),
                ("x-ratelimit-remaining-requests", "4999".into()),
            ],
        )
    });
    let cfg = Config::basic(&mock.url())
        .key_with("limited", "sk-limited-hdrs-01", "limits: { rpm: 10 }")
        .key("open", "sk-open-headers-01");
    let gw = Gateway::start("", &cfg.yaml()).await;
    let r = gw.chat("sk-limited-hdrs-01", "m").await;
    assert!(r
        .headers()
        .get("anthropic-ratelimit-requests-remaining")
        .is_none());
    assert_eq!(r.headers()["x-ratelimit-remaining-requests"], "9");
    // A key without limits sees the provider's own.
    let r = gw.chat("sk-open-headers-01", "m").await;
    assert_eq!(
        r.headers()["anthropic-ratelimit-requests-remaining"],
        "4999"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_put_keeps_the_files_mode_and_follows_no_planted_link() {
    use std::os::unix::fs::PermissionsExt;
    let mock = MockProvider::start("p").await;
    let cfg = Config::basic(&mock.url())
        .key("k", "sk-put-mode-test-1")
        .management(r#"secret_key: "admin-secret-mode""#);
    let gw = Gateway::start("", &cfg.yaml()).await;
    let path = gw.dir().join("modelgate.yaml");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let victim = gw.dir().join("victim.txt");
    std::fs::write(&victim, "untouched").unwrap();
    for planted in ["modelgate.yaml.tmp", "modelgate.yaml.bak"] {
        std::os::unix::fs::symlink(&victim, gw.dir().join(planted)).unwrap();
    }
    let text = std::fs::read_to_string(&path).unwrap();
    let r = client()
        .put(format!("{}/v0/management/config", gw.url))
        .bearer_auth("admin-secret-mode")
        .body(text)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched");
}

/// At `RUST_LOG=trace` no secret is printed: not a client key (with a valid request, a
/// malformed one the framework refuses, and a management call), not the management
/// secret, not a provider credential or a provider header value. With the libraries' cap
/// lifted (`MODELGATE_LOG_LIBRARIES=1`) they are there: what the cap keeps out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_log_level_prints_a_secret() {
    let logs = trace_logs(&[]).await;
    for secret in TRACE_SECRETS {
        assert!(!logs.contains(secret), "{secret} is in the log:\n{logs}");
    }
    let uncapped = trace_logs(&[("MODELGATE_LOG_LIBRARIES", "1")]).await;
    assert!(
        TRACE_SECRETS.iter().any(|s| uncapped.contains(s)),
        "the libraries print secrets at trace; without the cap some would be here"
    );
}

const TRACE_SECRETS: [&str; 4] = [
    "sk-trace-client-secret-7f3a",
    "cred-trace-provider-secret-91c2",
    "hdr-trace-header-secret-55d0",
    "admin-trace-secret-0b6e",
];

async fn trace_logs(env: &[(&str, &str)]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let [client_key, credential, header, admin] = TRACE_SECRETS;
    let mock = MockProvider::start("p").await;
    mock.reply_default();
    let cfg = Config::new()
        .provider_with(
            "p",
            Kind::OpenAi,
            &mock.url(),
            &format!("credentials: [{credential}], headers: {{ x-org-token: {header} }}"),
        )
        .route("m", "p")
        .key("k", client_key)
        .management(&format!("secret_key: {admin}"));
    let mut all_env = vec![("RUST_LOG", "trace")];
    all_env.extend_from_slice(env);
    let gw = Gateway::start_with_env("", &cfg.yaml(), &all_env).await;
    assert_eq!(gw.chat_status(client_key, "m").await, 200);
    let body =
        json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let streamed = gw
        .post("/v1/chat/completions", client_key, body)
        .send()
        .await
        .unwrap();
    let _ = streamed.text().await;
    assert!(gw
        .get_json("/v0/management/config", admin)
        .await
        .is_object());
    // A request the HTTP parser refuses, the key in it.
    let addr = gw.url.trim_start_matches("http://").to_string();
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let raw = format!("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {client_key}\r\nBad Header Line\r\n\r\n");
    s.write_all(raw.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let wait = std::time::Duration::from_secs(3);
    let _ = tokio::time::timeout(wait, s.read_to_end(&mut answer)).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let logs = gw.logs();
    assert!(logs.len() > 200, "trace logging is on: {logs}");
    logs
}

/// A provider reporting more tokens than any request can have (a wrapped counter) has its
/// usage ignored: no overflow, nothing absurd billed, counted or shown to the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_usage_is_ignored_not_billed() {
    let mock = MockProvider::start("ant").await;
    mock.reply(|_| {
        Reply::Json(
            200,
            json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
                   "content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn",
                   "stop_sequence": null,
                   "usage": {"input_tokens": 18446744073709551615u64, "output_tokens": 1,
                             "cache_read_input_tokens": 1}}),
        )
    });
    let cfg = Config::new()
        .provider("ant", Kind::Anthropic, &mock.url())
        .route("m", "ant")
        .key("k", "sk-absurd-usage-01");
    let gw = Gateway::start("", &cfg.yaml()).await;
    let r = gw.chat("sk-absurd-usage-01", "m").await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "hi", "{v}");
    let shown = v["usage"]["prompt_tokens"].as_u64().unwrap_or(0);
    assert!(shown < 1_000_000_000, "{v}");
    let metrics = gw.metrics().await;
    for line in metrics
        .lines()
        .filter(|l| l.starts_with("modelgate_tokens_total"))
    {
        let n: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(n < 1e9, "{line}");
    }
}

/// The fields each endpoint's official schema requires are checked by the gateway, on
/// passthrough too, with its own error naming the field; a trailing slash is the same
/// endpoint, sent upstream without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_fields_are_checked_before_anything_goes_out() {
    let mock = MockProvider::start("p").await;
    mock.reply_default();
    let cfg = Config::new()
        .provider("p", Kind::OpenAi, &mock.url())
        .provider("ant", Kind::Anthropic, &mock.url())
        .provider("gem", Kind::Gemini, &mock.url())
        .route("gpt-4o", "p")
        .route("claude-x", "ant")
        .route("gemini-x", "gem")
        .key("k", "sk-required-fields-1");
    let gw = Gateway::start("", &cfg.yaml()).await;
    let key = "sk-required-fields-1";
    for (path, body, missing) in [
        (
            "/v1/chat/completions",
            json!({"model": "gpt-4o"}),
            "messages",
        ),
        ("/v1/embeddings", json!({"model": "gpt-4o"}), "input"),
        ("/v1/completions", json!({"model": "gpt-4o"}), "prompt"),
        (
            "/v1/audio/speech",
            json!({"model": "gpt-4o", "input": "hi"}),
            "voice",
        ),
        (
            "/v1/messages",
            json!({"model": "claude-x", "messages": []}),
            "max_tokens",
        ),
        (
            "/v1/messages",
            json!({"model": "claude-x", "max_tokens": 5}),
            "messages",
        ),
        (
            "/v1beta/models/gemini-x:generateContent",
            json!({}),
            "contents",
        ),
    ] {
        let r = gw.post(path, key, body).send().await.unwrap();
        let (s, _, v) = error_code(r).await;
        assert_eq!(s, 400, "{path}: {v}");
        let message = v["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(&format!("missing '{missing}'")),
            "{path}: {v}"
        );
    }
    assert!(mock.requests().is_empty(), "nothing went out");

    let r = gw
        .post("/v1/chat/completions/", key, chat("gpt-4o"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        mock.last().uri,
        "/v1/chat/completions",
        "sent without the slash"
    );
}

/// A malformed chunked body is the client's error: 400 `invalid_request`, not a 502 that
/// counts against a provider.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_chunked_body_is_a_400() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mock = MockProvider::start("p").await;
    mock.reply_default();
    let cfg = Config::basic(&mock.url()).key("k", "sk-chunked-test-001");
    let gw = Gateway::start("", &cfg.yaml()).await;
    let addr = gw.url.trim_start_matches("http://").to_string();
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let raw = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-chunked-test-001\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n";
    s.write_all(raw.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let wait = std::time::Duration::from_secs(5);
    let _ = tokio::time::timeout(wait, s.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        answer.contains("invalid_request") && answer.contains("chunked"),
        "{answer}"
    );
    assert!(mock.requests().is_empty());
    let m = gw.metrics().await;
    assert!(
        !m.contains("status_5xx") && !m.contains("connect_error"),
        "no upstream failure counted"
    );
}

/// Slowloris: a header trickling in a byte at a time is cut at `server.header_timeout`
/// (Pingora's read timeout restarts with every byte), counted in
/// `modelgate_header_timeouts_total`; requests and streams that take longer than the
/// deadline once their header is in are not cut, nor are idle kept-alive connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_sent_a_byte_at_a_time_is_cut_at_the_deadline() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mock = MockProvider::start("p").await;
    let events = chat_stream_events("m", &["one", "two", "three", "four"]);
    mock.reply(move |_| Reply::Sse(events.clone(), Duration::from_millis(700)));
    let cfg = Config::basic(&mock.url()).key("k", "sk-slowloris-test-01");
    let gw = Gateway::start("  header_timeout: 1500ms", &cfg.yaml()).await;
    let addr = gw.url.trim_start_matches("http://").to_string();

    let slow = tokio::spawn({
        let addr = addr.clone();
        async move {
            let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
            let t0 = Instant::now();
            let header = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
            for b in header.iter() {
                if s.write_all(&[*b]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                if t0.elapsed() > Duration::from_secs(8) {
                    break;
                }
            }
            // Closed by the gateway: the read ends (0 or an error) with no answer.
            let mut buf = [0u8; 256];
            let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
                .await
                .map(|r| r.unwrap_or(0))
                .unwrap_or(usize::MAX);
            (t0.elapsed(), n)
        }
    });

    // Meanwhile: a stream of 2.8 s (longer than the deadline) on a kept-alive client,
    // then the same client idle for 2 s, then another request on it.
    let client = client();
    let r = client
        .post(format!("{}/v1/chat/completions", gw.url))
        .bearer_auth("sk-slowloris-test-01")
        .json(
            &json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .send()
        .await
        .unwrap();
    let text = r.text().await.unwrap();
    assert!(text.contains("four") && text.contains("[DONE]"), "{text}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let r = client
        .get(format!("{}/health", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let cut = slow.await.unwrap();
    assert_cut_once(
        &gw,
        cut,
        Duration::from_millis(1400)..Duration::from_secs(4),
    )
    .await;
}

/// The connection ended with no answer (`read` 0) within `window` of its start, and it
/// is the one header timeout counted.
async fn assert_cut_once(
    gw: &Gateway,
    (took, read): (Duration, usize),
    window: std::ops::Range<Duration>,
) {
    assert_eq!(read, 0, "closed without an answer");
    assert!(window.contains(&took), "cut at the deadline: {took:?}");
    let m = gw.metrics().await;
    assert_eq!(
        metric_value(&m, "modelgate_header_timeouts_total", &[]),
        Some(1.0)
    );
}

/// A connection that never sends a byte is closed at the header deadline and counted; a
/// kept-alive one waits for its next request without the deadline, and a request
/// arriving a byte at a time after a pause is read whole (the first byte is only peeked).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_is_closed_at_the_deadline_and_an_idle_one_is_served() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mock = MockProvider::start("p").await;
    mock.reply_default();
    let cfg = Config::basic(&mock.url()).key("k", "sk-silent-conn-test-1");
    let gw = Gateway::start("  header_timeout: 1s", &cfg.yaml()).await;
    let addr = gw.url.trim_start_matches("http://").to_string();

    let silent = tokio::spawn({
        let addr = addr.clone();
        async move {
            let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
            let t0 = Instant::now();
            let mut buf = [0u8; 64];
            let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
                .await
                .map(|r| r.unwrap_or(0))
                .unwrap_or(usize::MAX);
            (t0.elapsed(), n)
        }
    });

    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let request = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut answers = Vec::new();
    for pause in [0, 1500] {
        tokio::time::sleep(Duration::from_millis(pause)).await;
        // The first byte alone, then the rest: the turn starts on the first.
        s.write_all(&request[..1]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        s.write_all(&request[1..]).await.unwrap();
        // The whole answer (header and its Content-Length of body), nothing more.
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            let text = String::from_utf8_lossy(&got).to_string();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .expect("a length");
                if body.len() >= len {
                    answers.push(text.clone());
                    break;
                }
            }
            let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "closed: {text}");
            got.extend_from_slice(&buf[..n]);
        }
    }
    for a in &answers {
        assert!(a.starts_with("HTTP/1.1 200"), "{a}");
    }

    let cut = silent.await.unwrap();
    assert_cut_once(&gw, cut, Duration::from_millis(900)..Duration::from_secs(3)).await;
}

/// Sends `raw` on a new connection and reads the answer until the gateway closes it.
async fn raw_exchange(gw: &Gateway, raw: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = gw.url.trim_start_matches("http://").to_string();
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    s.write_all(raw).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).to_string()
}

/// The JSON body of a raw answer.
fn raw_body(answer: &str) -> Value {
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {answer}"))
}

/// Pingora refuses an unparsable header (400) and CONNECT (405) before the gateway sees
/// the request; the client still gets the gateway's error in its protocol, with a
/// request id, and the next connection is served as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pingoras_own_refusals_are_the_gateways_errors() {
    let mock = MockProvider::start("p").await;
    mock.reply_default();
    let cfg = Config::basic(&mock.url()).key("k", "sk-refusals-test-01");
    let gw = Gateway::start("", &cfg.yaml()).await;

    let a = raw_exchange(
        &gw,
        b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nx-api-key: sk-refusals-test-01\r\nBad Header Line\r\n\r\n",
    )
    .await;
    assert!(a.starts_with("HTTP/1.1 400 "), "{a}");
    let lower = a.to_ascii_lowercase();
    assert!(lower.contains("\r\nx-request-id: "), "{a}");
    assert!(lower.contains("\r\nconnection: close"), "{a}");
    let v = raw_body(&a);
    assert_eq!(
        (v["type"].as_str(), v["error"]["type"].as_str()),
        (Some("error"), Some("invalid_request_error")),
        "{a}"
    );
    assert!(!a.contains("sk-refusals"), "the key is not echoed: {a}");

    let a = raw_exchange(
        &gw,
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    )
    .await;
    assert!(a.starts_with("HTTP/1.1 400 "), "{a}");
    assert_eq!(raw_body(&a)["error"]["code"], "invalid_request", "{a}");

    let a = raw_exchange(
        &gw,
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nx-request-id: connect-1\r\n\r\n",
    )
    .await;
    assert!(a.starts_with("HTTP/1.1 405 "), "{a}");
    assert!(a.contains("x-request-id: connect-1\r\n"), "{a}");
    assert_eq!(raw_body(&a)["error"]["code"], "method_not_allowed", "{a}");

    // A kept-alive connection: the first request served, the next refused as ours.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = gw.url.trim_start_matches("http://").to_string();
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200 "));
        s.write_all(b"POST /v1beta/models/m:generateContent HTTP/1.1\r\nBroken\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut answer)).await;
        let a = String::from_utf8_lossy(&answer);
        assert!(a.starts_with("HTTP/1.1 400 "), "{a}");
        assert_eq!(raw_body(&a)["error"]["status"], "INVALID_ARGUMENT", "{a}");
    }

    assert_eq!(gw.chat_status("sk-refusals-test-01", "m").await, 200);
    assert!(mock.requests().len() == 1);
}
