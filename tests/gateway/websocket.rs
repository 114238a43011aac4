//! The Responses WebSocket relayed to an openai-kind provider that takes it: the
//! provider sees its own credential (never the client's key), no compression, the
//! frames both ways untouched; each turn's usage is counted; idle sockets are closed.

// tungstenite's handshake callback type fixes the error response's size.
#![allow(clippy::result_large_err)]

use crate::support::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::Message;

const KEY: &str = "sk-websocket-test-01";

/// What the provider saw at the upgrade.
#[derive(Default, Clone, Debug)]
struct Seen {
    uri: String,
    authorization: Option<String>,
    extensions: Option<String>,
    protocols: Option<String>,
}

/// A Responses WebSocket server: each `response.create` is answered with the events of a
/// streamed response (created, a text delta, completed with usage).
async fn socket_provider() -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let header = |r: &Request, n: &str| {
                    r.headers()
                        .get(n)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string)
                };
                let callback = |req: &Request, resp: Response| {
                    record.lock().unwrap().push(Seen {
                        uri: req.uri().to_string(),
                        authorization: header(req, "authorization"),
                        extensions: header(req, "sec-websocket-extensions"),
                        protocols: header(req, "sec-websocket-protocol"),
                    });
                    Ok(resp)
                };
                let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(tcp, callback).await else {
                    return;
                };
                let mut n = 0;
                while let Some(Ok(msg)) = ws.next().await {
                    let Message::Text(text) = msg else { continue };
                    let req: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                    if req["type"] != "response.create" {
                        continue;
                    }
                    n += 1;
                    let id = format!("resp_ws_{n}");
                    let model = req["model"].clone();
                    let events = [
                        json!({"type": "response.created", "sequence_number": 0, "response": {"id": id, "object": "response", "status": "in_progress", "model": model, "output": []}}),
                        json!({"type": "response.output_text.delta", "sequence_number": 1, "item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": format!("turn {n}")}),
                        json!({"type": "response.completed", "sequence_number": 2, "response": {"id": id, "object": "response", "status": "completed", "model": model, "output": [],
                            "usage": {"input_tokens": 10 * n, "output_tokens": 3, "total_tokens": 10 * n + 3}}}),
                    ];
                    for e in events {
                        if ws.send(Message::Text(e.to_string().into())).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (url, seen)
}

async fn connect(
    gw: &Gateway,
    path: &str,
    extra: &[(&str, &str)],
) -> tokio_tungstenite::WebSocketStream<tokio::net::TcpStream> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let addr = gw.url.trim_start_matches("http://").to_string();
    let mut req = format!("ws://{addr}{path}").into_client_request().unwrap();
    for (k, v) in extra {
        req.headers_mut().insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (ws, resp) = tokio_tungstenite::client_async(req, tcp)
        .await
        .unwrap_or_else(|e| panic!("upgrade through the gateway: {e}"));
    assert_eq!(resp.status(), 101);
    ws
}

/// One turn: `response.create`, then the events up to `response.completed`.
async fn turn(
    ws: &mut tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    input: &str,
) -> Vec<Value> {
    let create = json!({"type": "response.create", "model": "gpt-5", "input": input});
    ws.send(Message::Text(create.to_string().into()))
        .await
        .unwrap();
    let mut events = Vec::new();
    while let Some(msg) = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("an event")
    {
        let Message::Text(t) = msg.unwrap() else {
            continue;
        };
        let v: Value = serde_json::from_str(&t).unwrap();
        let done = v["type"] == "response.completed";
        events.push(v);
        if done {
            break;
        }
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_responses_websocket_is_relayed_and_its_turns_counted() {
    let (url, seen) = socket_provider().await;
    let cfg = Config::new()
        .provider_with(
            "oai",
            Kind::OpenAi,
            &url,
            "credentials: [cred-oai], responses_api: true",
        )
        .model(
            "gpt-5",
            "targets: [{ provider: oai, model: gpt-5-2025-08-07 }]",
        )
        .key("k", KEY);
    let gw = Gateway::start("  websocket_idle_timeout: 1s", &cfg.yaml()).await;

    let bearer = format!("Bearer {KEY}");
    let mut ws = connect(
        &gw,
        "/v1/responses?model=gpt-5",
        &[
            ("authorization", &bearer),
            (
                "sec-websocket-extensions",
                "permessage-deflate; client_max_window_bits",
            ),
        ],
    )
    .await;
    for n in 1..=3 {
        let events = turn(&mut ws, &format!("turn {n}")).await;
        assert_eq!(events.len(), 3, "{events:?}");
        assert_eq!(events[1]["delta"], format!("turn {n}"));
    }
    ws.close(None).await.unwrap();
    drop(ws);

    let s = seen.lock().unwrap()[0].clone();
    assert_eq!(
        s.uri, "/v1/responses",
        "the routing parameter stays at the gateway"
    );
    assert_eq!(s.authorization.as_deref(), Some("Bearer cred-oai"));
    assert_eq!(
        s.extensions, None,
        "no compression: the gateway reads the frames"
    );
    // The session's usage: 10 + 20 + 30 prompt tokens, 3 completion tokens a turn.
    wait_metric(
        &gw,
        "modelgate_tokens_total",
        &[("type", "prompt"), ("key", "k")],
        60.0,
    )
    .await;
    let m = gw.metrics().await;
    assert_eq!(
        metric_value(
            &m,
            "modelgate_tokens_total",
            &[("type", "completion"), ("key", "k")]
        ),
        Some(9.0)
    );

    // A browser's key in the subprotocol: accepted, echoed, never sent on.
    let offer = format!("openai-insecure-api-key.{KEY}");
    let mut ws = connect(
        &gw,
        "/v1/responses?model=gpt-5",
        &[("sec-websocket-protocol", &offer)],
    )
    .await;
    assert_eq!(turn(&mut ws, "hi").await.len(), 3);
    let s = seen.lock().unwrap()[1].clone();
    assert_eq!(s.protocols, None, "{s:?}");
    assert_eq!(s.authorization.as_deref(), Some("Bearer cred-oai"));
    // Idle past websocket_idle_timeout: the gateway closes the socket.
    let t0 = std::time::Instant::now();
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(m)) = ws.next().await {
            if m.is_close() {
                break;
            }
        }
    })
    .await;
    assert!(end.is_ok(), "an idle socket is closed");
    assert!(
        t0.elapsed() >= Duration::from_millis(900),
        "{:?}",
        t0.elapsed()
    );
    assert!(!gw.logs().contains(KEY), "the key never reaches a log");
}
