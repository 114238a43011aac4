//! Test harness: a mock provider (a real HTTP server on loopback that records what it
//! receives and answers as told) and the real `modelgate` binary started on free loopback
//! ports with a config written by the test.

#![allow(dead_code)]

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

mod config;
pub mod postgres;
pub mod redis;
pub use config::{closed_url, Config, Kind};

/// One request as the mock provider received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    /// Path and query.
    pub uri: String,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Recorded {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// How the mock answers.
pub enum Reply {
    Json(u16, Value),
    /// JSON with extra response headers (e.g. retry-after).
    JsonWithHeaders(u16, Value, Vec<(&'static str, String)>),
    /// Any body with this content type.
    Raw(u16, &'static str, String),
    /// Closes the connection without answering.
    Reset,
    /// These events, then the connection breaks mid-body.
    SseCut(Vec<String>, Duration),
    /// Server-sent events, each written `interval` after the previous one.
    Sse(Vec<String>, Duration),
    /// Never answers (until the test ends).
    Hang,
}

type Behavior = Box<dyn Fn(&Recorded) -> Reply + Send + Sync>;

struct MockState {
    name: String,
    requests: Mutex<Vec<Recorded>>,
    behavior: Mutex<Arc<Behavior>>,
}

/// A mock OpenAI-compatible provider. By default it answers chat completions with a
/// chat.completion object naming the model it received and itself.
#[derive(Clone)]
pub struct MockProvider {
    pub addr: SocketAddr,
    state: Arc<MockState>,
}

pub fn chat_completion(model: &str, content: &str) -> Value {
    json!({
        "id": "chatcmpl-123", "object": "chat.completion", "created": 1700000000, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "logprobs": null, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
    })
}

/// `data: {chunk}\n\n` events of a streamed chat completion, one per word, then `[DONE]`.
pub fn chat_stream_events(model: &str, words: &[&str]) -> Vec<String> {
    let mut out = vec![];
    for w in words {
        let c = json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1700000000, "model": model,
            "choices": [{"index": 0, "delta": {"content": w}, "finish_reason": null}]});
        out.push(format!("data: {c}\n\n"));
    }
    let end = json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1700000000, "model": model,
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]});
    out.push(format!("data: {end}\n\n"));
    out.push("data: [DONE]\n\n".to_string());
    out
}

impl MockProvider {
    pub async fn start(name: &str) -> MockProvider {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind mock");
        let addr = listener.local_addr().expect("mock addr");
        let state = new_state(name);
        let mock = MockProvider {
            addr,
            state: state.clone(),
        };
        mock.reply_default();
        serve(listener, state, None);
        mock
    }

    /// The same mock behind TLS with a fresh self-signed certificate for `localhost`;
    /// returns the mock and the PEM file of that certificate (to trust via SSL_CERT_FILE).
    pub async fn start_tls(name: &str, dir: &std::path::Path) -> (MockProvider, PathBuf) {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
        let pem_path = dir.join("mock-ca.pem");
        std::fs::write(&pem_path, cert.cert.pem()).expect("write pem");
        let certs = vec![cert.cert.der().clone()];
        let key = tokio_rustls::rustls::pki_types::PrivateKeyDer::Pkcs8(
            cert.key_pair.serialize_der().into(),
        );
        let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
        let tls = tokio_rustls::rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("tls config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind mock");
        let addr = listener.local_addr().expect("mock addr");
        let state = new_state(name);
        let mock = MockProvider {
            addr,
            state: state.clone(),
        };
        mock.reply_default();
        serve(listener, state, Some(acceptor));
        (mock, pem_path)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Chat completions naming the received model and this mock; 404 elsewhere.
    pub fn reply_default(&self) {
        let name = self.state.name.clone();
        self.reply(move |r| {
            let model = r.json()["model"].as_str().unwrap_or_default().to_string();
            Reply::Json(200, chat_completion(&model, &format!("hello from {name}")))
        });
    }

    pub fn reply(&self, f: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) {
        *self.state.behavior.lock().unwrap() = Arc::new(Box::new(f));
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().unwrap().clone()
    }

    pub fn last(&self) -> Recorded {
        self.requests().pop().expect("the mock received no request")
    }
}

/// Accepts connections (through TLS when given an acceptor) and serves the mock on each.
fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<MockState>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (state, tls) = (state.clone(), tls.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req| handle(state.clone(), req));
                let http = hyper::server::conn::http1::Builder::new();
                let _ = match tls {
                    Some(acceptor) => match acceptor.accept(stream).await {
                        Ok(s) => http.serve_connection(TokioIo::new(s), svc).await,
                        Err(_) => return,
                    },
                    None => http.serve_connection(TokioIo::new(stream), svc).await,
                };
            });
        }
    });
}

fn new_state(name: &str) -> Arc<MockState> {
    Arc::new(MockState {
        name: name.to_string(),
        requests: Mutex::new(vec![]),
        behavior: Mutex::new(Arc::new(Box::new(|_: &Recorded| {
            Reply::Json(0, Value::Null)
        }))),
    })
}

type BodyError = Box<dyn std::error::Error + Send + Sync>;

fn full(b: impl Into<Bytes>) -> BoxBody<Bytes, BodyError> {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

async fn handle(
    state: Arc<MockState>,
    req: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<BoxBody<Bytes, BodyError>>, BodyError> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let rec = Recorded {
        method: parts.method.to_string(),
        uri: parts.uri.to_string(),
        headers: parts.headers,
        body,
    };
    state.requests.lock().unwrap().push(rec.clone());
    let behavior = state.behavior.lock().unwrap().clone();
    let reply = behavior(&rec);
    let sse_stream = |events: Vec<String>, interval: Duration, cut: bool| {
        let stream = futures_util::stream::unfold((events, 0usize), move |(ev, i)| async move {
            if i > ev.len() || (i == ev.len() && !cut) {
                return None;
            }
            if i > 0 {
                tokio::time::sleep(interval).await;
            }
            if i == ev.len() {
                // Breaks the chunked body: the connection dies mid-response.
                let err: BodyError = "cut".into();
                return Some((Err(err), (ev, i + 1)));
            }
            let frame = Frame::data(Bytes::from(ev[i].clone()));
            Some((Ok::<_, BodyError>(frame), (ev, i + 1)))
        });
        hyper::Response::builder()
            .status(200)
            .header("content-type", "text/event-stream")
            .body(BoxBody::new(StreamBody::new(stream)))
    };
    let resp = match reply {
        Reply::Json(status, v) => hyper::Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(full(v.to_string())),
        Reply::JsonWithHeaders(status, v, headers) => {
            let mut b = hyper::Response::builder()
                .status(status)
                .header("content-type", "application/json");
            for (k, val) in headers {
                b = b.header(k, val);
            }
            b.body(full(v.to_string()))
        }
        Reply::Raw(status, ctype, body) => hyper::Response::builder()
            .status(status)
            .header("content-type", ctype)
            .body(full(body)),
        Reply::Reset => return Err("reset".into()),
        Reply::Sse(events, interval) => sse_stream(events, interval, false),
        Reply::SseCut(events, interval) => sse_stream(events, interval, true),
        Reply::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            hyper::Response::builder()
                .status(500)
                .body(full(Bytes::new()))
        }
    };
    Ok(resp.unwrap_or_else(|_| hyper::Response::new(full(Bytes::new()))))
}

/// A `multipart/form-data` body: (field name, file name for a file part, value).
pub fn multipart_form(boundary: &str, parts: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, file, value) in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        let disposition = match file {
            Some(f) => format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: application/octet-stream\r\n\r\n"),
            None => format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n"),
        };
        body.extend_from_slice(disposition.as_bytes());
        body.extend_from_slice(value);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    body
}

/// A loopback port nobody listens on, never the same twice in one test process (the
/// kernel may hand a just-released port out again, e.g. for `listen` and `metrics_listen`).
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let mut given = GIVEN.lock().unwrap();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// The real gateway binary, on free loopback ports.
pub struct Gateway {
    pub url: String,
    pub metrics_url: String,
    pub config_path: PathBuf,
    log_path: PathBuf,
    child: Child,
    server_section: String,
    env: Vec<(String, String)>,
    _dir: tempfile::TempDir,
}

fn spawn(config: &std::path::Path, log_path: &std::path::Path, env: &[(String, String)]) -> Child {
    // Appended: a restarted gateway's log follows the previous one's.
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .expect("log file");
    let mut cmd = Command::new(bin());
    cmd.arg("-c")
        .arg(config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::from(log));
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn modelgate")
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_modelgate")
}

impl Gateway {
    /// Starts the gateway with `rest` (providers, models, keys, ...) after a generated
    /// `server:` section; `server_extra` adds lines to that section (indented by 2).
    pub async fn start(server_extra: &str, rest: &str) -> Gateway {
        Self::start_with_env(server_extra, rest, &[]).await
    }

    pub async fn start_with_env(server_extra: &str, rest: &str, env: &[(&str, &str)]) -> Gateway {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let metrics_port = free_port();
        // Defaults the test's own server lines may override.
        let defaults: String = [
            ("threads", "2"),
            ("grace_period", "5s"),
            ("drain_delay", "0s"),
        ]
        .iter()
        .filter(|(k, _)| !server_extra.contains(&format!("{k}:")))
        .map(|(k, v)| format!("  {k}: {v}\n"))
        .collect();
        let server_section = format!(
            "server:\n  listen: \"127.0.0.1:{port}\"\n  metrics_listen: \"127.0.0.1:{metrics_port}\"\n{defaults}  pid_file: {pid}\n  upgrade_sock: {sock}\n{server_extra}\n",
            pid = dir.path().join("modelgate.pid").display(),
            sock = dir.path().join("upgrade.sock").display(),
        );
        let config_path = dir.path().join("modelgate.yaml");
        std::fs::write(&config_path, format!("{server_section}{rest}")).expect("write config");
        let log_path = dir.path().join("stderr.log");
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let child = spawn(&config_path, &log_path, &env);
        let gw = Gateway {
            url: format!("http://127.0.0.1:{port}"),
            metrics_url: format!("http://127.0.0.1:{metrics_port}/metrics"),
            config_path,
            log_path,
            child,
            server_section,
            env,
            _dir: dir,
        };
        gw.wait_ready().await;
        gw
    }

    /// Starts the gateway again on the same config, ports and folder (its store too),
    /// after the previous process has exited (it is killed if it has not).
    pub async fn restart(&mut self) {
        if self.wait_exit(Duration::from_secs(10)).await.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        self.child = spawn(&self.config_path, &self.log_path, &self.env);
        self.wait_ready().await;
    }

    /// The folder the config (and a relative sqlite store) is in.
    pub fn dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let client = reqwest::Client::new();
        while Instant::now() < deadline {
            if let Ok(r) = client.get(format!("{}/health", self.url)).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("gateway did not become ready; its log:\n{}", self.logs());
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Replaces everything after the `server:` section and keeps the file otherwise.
    pub fn rewrite_config(&self, rest: &str) {
        let tmp = self.config_path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp).expect("tmp config");
        f.write_all(format!("{}{rest}", self.server_section).as_bytes())
            .expect("write");
        std::fs::rename(&tmp, &self.config_path).expect("rename");
    }

    pub fn write_raw_config(&self, text: &str) {
        std::fs::write(&self.config_path, text).expect("write");
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Waits until the process exits, returning its exit code.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        None
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(&self.metrics_url)
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics body")
    }

    pub fn post(&self, path: &str, key: &str, body: Value) -> reqwest::RequestBuilder {
        client()
            .post(format!("{}{path}", self.url))
            .bearer_auth(key)
            .json(&body)
    }

    /// POSTs `chat(model)` to /v1/chat/completions with `key`.
    pub async fn chat(&self, key: &str, model: &str) -> reqwest::Response {
        self.post("/v1/chat/completions", key, chat(model))
            .send()
            .await
            .expect("request to the gateway")
    }

    pub async fn chat_status(&self, key: &str, model: &str) -> u16 {
        self.chat(key, model).await.status().as_u16()
    }

    pub fn get(&self, path: &str, key: &str) -> reqwest::RequestBuilder {
        client().get(format!("{}{path}", self.url)).bearer_auth(key)
    }

    /// GETs `path` with `key` and reads the answer as JSON (`Null` when it is not).
    pub async fn get_json(&self, path: &str, key: &str) -> Value {
        let r = self
            .get(path, key)
            .send()
            .await
            .expect("request to the gateway");
        r.json().await.unwrap_or(Value::Null)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// Chat requests with `key` for `within`, spread over `urls` (gateway base URLs) in turn,
/// `pause` between them: how many got a 200 and how many did not.
pub async fn chat_load(
    urls: &[String],
    key: &str,
    model: &str,
    within: Duration,
    pause: Duration,
) -> (u64, u64) {
    let (mut ok, mut failed) = (0u64, 0u64);
    let t0 = std::time::Instant::now();
    let mut i = 0;
    while t0.elapsed() < within {
        let r = client()
            .post(format!("{}/v1/chat/completions", urls[i % urls.len()]))
            .bearer_auth(key)
            .json(&chat(model))
            .send()
            .await;
        match r {
            Ok(r) if r.status() == 200 => ok += 1,
            _ => failed += 1,
        }
        i += 1;
        tokio::time::sleep(pause).await;
    }
    (ok, failed)
}

/// A chat request body.
pub fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
}

/// The value of one sample line in Prometheus text, e.g.
/// `metric_value(&m, "modelgate_requests_total", &[("status","200")])`.
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .map(|l| {
            l.rsplit(' ')
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        })
        .reduce(|a, b| a + b)
}

/// Waits (at most 5 s) until a metric sample reaches `want`.
pub async fn wait_metric(gw: &Gateway, name: &str, labels: &[(&str, &str)], want: f64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while metric_value(&gw.metrics().await, name, labels) != Some(want) {
        assert!(
            Instant::now() < deadline,
            "{name}{labels:?} never became {want}:\n{}",
            gw.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The `event:` names of an SSE body, in order.
pub fn sse_event_names(text: &str) -> Vec<&str> {
    text.lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect()
}

/// Reads a JSON error body and returns (status, error code).
pub async fn error_code(resp: reqwest::Response) -> (u16, String, Value) {
    let status = resp.status().as_u16();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    let code = v["error"]["code"].as_str().unwrap_or_default().to_string();
    (status, code, v)
}
