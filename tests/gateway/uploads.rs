//! Multipart uploads (audio transcriptions and translations, image edits and variations):
//! routed by the form's `model` field wherever it stands, forwarded byte for byte with
//! only a routed name spliced in, bounded by `max_body_bytes`, refused by kind.

use crate::support::*;
use serde_json::json;

const BOUNDARY: &str = "----modelgate-upload-test";
const KEY: &str = "sk-upload-test-key-01";

fn form(parts: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
    multipart_form(BOUNDARY, parts)
}

fn upload(gw: &Gateway, path: &str, body: Vec<u8>) -> reqwest::RequestBuilder {
    client()
        .post(format!("{}{path}", gw.url))
        .bearer_auth(KEY)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(body)
}

async fn gateway(mock: &MockProvider, server: &str) -> Gateway {
    let cfg = Config::new()
        .provider_with("p", Kind::OpenAi, &mock.url(), "credentials: [cred-p]")
        .provider_with("ant", Kind::Anthropic, &mock.url(), "credentials: [cred-a]")
        .route_as("transcriber", "p", "whisper-1")
        .route("gpt-image-1", "p")
        .route("claude-x", "ant")
        .key("k", KEY);
    Gateway::start(server, &cfg.yaml()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_model_after_a_large_file_routes_the_upload_byte_for_byte() {
    let mock = MockProvider::start("p").await;
    mock.reply(|r| match r.uri.as_str() {
        "/v1/audio/transcriptions" | "/v1/audio/translations" => Reply::Json(
            200,
            json!({"text": "hello", "usage": {"type": "duration", "seconds": 3}}),
        ),
        _ => Reply::Json(
            200,
            json!({"created": 1700000000, "data": [{"b64_json": "iVBORw0KGgo="}]}),
        ),
    });
    let gw = gateway(&mock, "").await;
    // 1 MB of audio first, the model last; the file holds bytes that look like a field.
    let mut audio: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 251) as u8).collect();
    audio.extend_from_slice(b"\r\nname=\"model\"\r\n\r\nnot-this");
    let body = form(&[
        ("file", Some("speech.wav"), &audio),
        ("response_format", None, b"json"),
        ("model", None, b"transcriber"),
    ]);
    let r = upload(&gw, "/v1/audio/transcriptions", body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-modelgate-provider"], "p");
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["text"], "hello");
    let got = mock.requests().pop().unwrap();
    assert_eq!(got.uri, "/v1/audio/transcriptions");
    assert_eq!(got.header("authorization"), Some("Bearer cred-p"));
    assert!(got.header("content-type").unwrap().contains(BOUNDARY));
    // Every byte as sent, but the routed name in place of the alias.
    let want = form(&[
        ("file", Some("speech.wav"), &audio),
        ("response_format", None, b"json"),
        ("model", None, b"whisper-1"),
    ]);
    assert_eq!(got.body.len(), want.len());
    assert!(got.body[..] == want[..], "the upload changed on the way");

    for path in [
        "/v1/audio/translations",
        "/v1/images/edits",
        "/v1/images/variations",
    ] {
        let model: &[u8] = if path.contains("audio") {
            b"transcriber"
        } else {
            b"gpt-image-1"
        };
        let body = form(&[
            ("model", None, model),
            ("image", Some("a.png"), b"\x89PNG\r\n\x1a\n"),
        ]);
        let r = upload(&gw, path, body).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(mock.requests().pop().unwrap().uri, path);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_uploads_are_explained_in_the_clients_protocol() {
    let mock = MockProvider::start("p").await;
    mock.reply_default();
    let gw = gateway(&mock, "  max_body_bytes: 300000").await;
    let n = mock.requests().len();

    let r = upload(
        &gw,
        "/v1/audio/transcriptions",
        form(&[("file", Some("a.wav"), b"RIFF")]),
    )
    .send()
    .await
    .unwrap();
    let (s, code, v) = error_code(r).await;
    assert_eq!((s, code.as_str()), (400, "invalid_request"));
    assert_eq!(v["error"]["param"], "model", "{v}");

    let mut cut = form(&[
        ("model", None, b"transcriber"),
        ("file", Some("a.wav"), b"RIFF"),
    ]);
    cut.truncate(cut.len() - 12);
    let json_body = gw.post(
        "/v1/audio/transcriptions",
        KEY,
        json!({"model": "transcriber"}),
    );
    let form_on_chat = upload(
        &gw,
        "/v1/chat/completions",
        form(&[("model", None, b"transcriber")]),
    );
    for (request, says) in [
        (upload(&gw, "/v1/audio/transcriptions", cut), "multipart"),
        (json_body, "multipart/form-data"),
        (form_on_chat, "JSON body"),
    ] {
        let (s, _, v) = error_code(request.send().await.unwrap()).await;
        assert_eq!(s, 400, "{v}");
        let message = v["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{v}");
    }

    let big = vec![0u8; 400_000];
    let r = upload(
        &gw,
        "/v1/images/edits",
        form(&[
            ("model", None, b"gpt-image-1"),
            ("image", Some("a.png"), &big),
        ]),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 413);

    let r = upload(
        &gw,
        "/v1/images/edits",
        form(&[("model", None, b"claude-x"), ("image", Some("a.png"), b"x")]),
    )
    .send()
    .await
    .unwrap();
    let (s, code, _) = error_code(r).await;
    assert!(
        s >= 400 && !code.is_empty(),
        "an Anthropic provider cannot edit images: {s} {code}"
    );
    assert_eq!(mock.requests().len(), n, "nothing bad went out");
}

/// A chunked body (no Content-Length) longer than Pingora's 64 KiB replay buffer: an
/// upload of 200 KB and a 100 KB chat. Each is routed, forwarded byte for byte, replayed
/// to the second target when the first fails, answered in the client's protocol when it
/// is refused, and counted once (a limit of 3 requests a minute holds, one
/// requests_total each).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_chunked_bodies_are_forwarded_and_replayed() {
    let a = MockProvider::start("a").await;
    a.reply(|_| Reply::Json(503, json!({"error": {"message": "busy"}})));
    let b = MockProvider::start("b").await;
    b.reply(|r| match r.uri.as_str() {
        "/v1/audio/transcriptions" => Reply::Json(200, json!({"text": "hello"})),
        _ => Reply::Json(200, chat_completion("gpt-4o", "hello from b")),
    });
    let cfg = Config::new()
        .provider("a", Kind::OpenAi, &a.url())
        .provider("b", Kind::OpenAi, &b.url())
        .model(
            "transcriber",
            "targets: [{ provider: a, model: whisper-1 }, { provider: b, model: whisper-1, weight: 0 }]",
        )
        .model(
            "gpt-4o",
            "targets: [{ provider: a }, { provider: b, weight: 0 }]",
        )
        .key_with("k", KEY, "limits: { rpm: 3 }");
    let gw = Gateway::start("  max_body_bytes: 1000000", &cfg.yaml()).await;
    let chunked = |path: &str, body: &[u8], content_type: &str| {
        let parts: Vec<Result<Vec<u8>, std::io::Error>> =
            body.chunks(7000).map(|c| Ok(c.to_vec())).collect();
        client()
            .post(format!("{}{path}", gw.url))
            .bearer_auth(KEY)
            .header("content-type", content_type)
            .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
                parts,
            )))
    };
    let form_type = format!("multipart/form-data; boundary={BOUNDARY}");

    let audio: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    let body = form(&[
        ("file", Some("speech.wav"), &audio),
        ("model", None, b"transcriber"),
    ]);
    let r = chunked("/v1/audio/transcriptions", &body, &form_type)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", gw.logs());
    assert_eq!(r.headers()["x-modelgate-provider"], "b");
    assert_eq!(r.headers()["x-modelgate-attempts"], "2");
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["text"],
        "hello"
    );
    let want = form(&[
        ("file", Some("speech.wav"), &audio),
        ("model", None, b"whisper-1"),
    ]);
    for got in [a.last(), b.last()] {
        assert_eq!(got.uri, "/v1/audio/transcriptions");
        assert!(got.body[..] == want[..], "the upload changed on the way");
    }

    let chat_body = serde_json::to_vec(&json!({
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "y".repeat(100_000)}],
    }))
    .unwrap();
    let r = chunked("/v1/chat/completions", &chat_body, "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "hello from b");
    assert_eq!(
        b.last().json()["messages"][0]["content"]
            .as_str()
            .map(str::len),
        Some(100_000)
    );

    // Refused after the body was read: the error in the client's protocol.
    let unknown = serde_json::to_vec(&json!({
        "model": "no-such-model",
        "messages": [{"role": "user", "content": "z".repeat(100_000)}],
    }))
    .unwrap();
    let send_chat = async |body: &[u8]| {
        chunked("/v1/chat/completions", body, "application/json")
            .send()
            .await
            .unwrap()
    };
    let (s, code, _) = error_code(send_chat(&unknown).await).await;
    assert_eq!((s, code.as_str()), (404, "model_not_found"));
    // Counted once each (an unknown model is refused before limits): the third passes,
    // the fourth is refused.
    assert_eq!(send_chat(&chat_body).await.status(), 200);
    let (s, code, _) = error_code(send_chat(&chat_body).await).await;
    assert_eq!(
        (s, code.as_str()),
        (429, "rate_limit_exceeded"),
        "{}",
        gw.logs()
    );
    let m = gw.metrics().await;
    let total: f64 = m
        .lines()
        .filter(|l| l.starts_with("modelgate_requests_total{key=\"k\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(total, 5.0, "{m}");
}
