//! Golden fixtures for protocol translation (tests/fixtures/<client>_to_<provider>/):
//! request in -> expected provider request; provider response/stream in -> expected client
//! response/stream. Stream translation must give the same output however the provider's
//! bytes are split.

use bytes::Bytes;
use modelgate::protocol::Protocol;
use modelgate::translate::{self, ClientState, ResponseTranslator};
use serde_json::Value;
use std::path::PathBuf;

fn dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn read(name: &str, file: &str) -> String {
    std::fs::read_to_string(dir(name).join(file)).unwrap_or_else(|e| panic!("{name}/{file}: {e}"))
}

fn json(name: &str, file: &str) -> Value {
    serde_json::from_str(&read(name, file)).unwrap_or_else(|e| panic!("{name}/{file}: {e}"))
}

fn protocols(name: &str) -> (Protocol, Protocol) {
    let p = |s: &str| match s {
        "openai" => Protocol::OpenAi,
        "responses" => Protocol::Responses,
        "anthropic" => Protocol::Anthropic,
        "gemini" => Protocol::Gemini,
        other => panic!("unknown protocol {other}"),
    };
    let (c, v) = name.split_once("_to_").unwrap();
    (p(c), p(v))
}

/// `created` / `created_at` are the translation time; fixtures write 0.
fn normalize(mut v: Value) -> Value {
    if v.get("created").is_some() {
        v["created"] = 0.into();
    }
    if v.get("created_at").is_some() {
        v["created_at"] = 0.into();
    }
    if v["response"].get("created_at").is_some() {
        v["response"]["created_at"] = 0.into();
    }
    v
}

/// A client stream as comparable items: OpenAI `data:` JSON (or `[DONE]`), or Anthropic
/// (event name, data JSON).
fn stream_items(client: Protocol, bytes: &[u8]) -> Vec<Value> {
    let text = std::str::from_utf8(bytes).unwrap().replace("\r\n", "\n");
    let mut out = vec![];
    for event in text.split("\n\n").filter(|e| !e.trim().is_empty()) {
        let mut name = None;
        let mut data = None;
        for line in event.lines() {
            if let Some(n) = line.strip_prefix("event: ") {
                name = Some(n.to_string());
            } else if let Some(d) = line.strip_prefix("data: ") {
                data = Some(d.to_string());
            }
        }
        let data = data.unwrap_or_else(|| panic!("event without data: {event:?}"));
        let v = if data == "[DONE]" {
            Value::String(data)
        } else {
            normalize(serde_json::from_str(&data).unwrap())
        };
        out.push(match client {
            Protocol::Anthropic | Protocol::Responses => serde_json::json!([name, v]),
            _ => v,
        });
    }
    out
}

fn expected_stream(name: &str, client: Protocol) -> Vec<Value> {
    match client {
        Protocol::OpenAi => read(name, "stream.client.jsonl")
            .lines()
            .map(|l| {
                if l == "[DONE]" {
                    Value::String(l.into())
                } else {
                    serde_json::from_str(l).unwrap()
                }
            })
            .collect(),
        _ => stream_items(client, read(name, "stream.client.sse").as_bytes()),
    }
}

fn run_stream(client: Protocol, provider: Protocol, public: &str, pieces: &[&[u8]]) -> Vec<u8> {
    run_stream_with(client, provider, public, &ClientState::None, pieces)
}

fn run_stream_with(
    client: Protocol,
    provider: Protocol,
    public: &str,
    state: &ClientState,
    pieces: &[&[u8]],
) -> Vec<u8> {
    let mut t = ResponseTranslator::stream(provider, client, public, true, true)
        .expect("stream translator")
        .with_client_state(state);
    let mut out = vec![];
    for (i, p) in pieces.iter().enumerate() {
        if let Some(b) = t.feed(Some(Bytes::copy_from_slice(p)), i + 1 == pieces.len()) {
            out.extend_from_slice(&b);
        }
    }
    out
}

/// `BLESS_FIXTURES=<name>` writes what the translation gives into that fixture's expected
/// files instead of comparing, for a new fixture's first draft; the draft is reviewed
/// against the API references before it is committed, and later runs compare against it.
fn blessing(name: &str) -> bool {
    std::env::var("BLESS_FIXTURES").ok().as_deref() == Some(name)
}

/// The fixture's client request, decoded and encoded for `provider` (default version).
fn translated(
    client_req: &Value,
    client: Protocol,
    provider: Protocol,
    target: &str,
) -> (translate::Decoded, translate::ProviderRequest) {
    let decoded = translate::decode(client, client_req.to_string().as_bytes()).unwrap();
    let encoded = translate::encode_request(
        &decoded.request,
        provider,
        target,
        4096,
        translate::anthropic::DEFAULT_VERSION,
    )
    .unwrap();
    (decoded, encoded)
}

fn bless(name: &str, client: Protocol, provider: Protocol, target: &str) {
    let client_req = json(name, "request.client.json");
    let (decoded, encoded) = translated(&client_req, client, provider, target);
    let mut req: Value = serde_json::from_slice(&encoded.body).unwrap();
    req["model"] = target.into();
    let write =
        |file: &str, content: String| std::fs::write(dir(name).join(file), content).unwrap();
    write("request.provider.json", format!("{req:#}\n"));
    let dropped: String = encoded.dropped.0.iter().map(|d| format!("{d}\n")).collect();
    write("dropped.txt", dropped);
    let public = client_req["model"].as_str().unwrap_or("gem-model");
    let mut t =
        ResponseTranslator::json(provider, client, public).with_client_state(&decoded.client);
    let out = t
        .feed(
            Some(Bytes::from(read(name, "response.provider.json"))),
            true,
        )
        .unwrap();
    let resp = normalize(serde_json::from_slice(&out).unwrap());
    write("response.client.json", format!("{resp:#}\n"));
    let stream = read(name, "stream.provider.sse");
    let out = run_stream_with(
        client,
        provider,
        public,
        &decoded.client,
        &[stream.as_bytes()],
    );
    write("stream.client.sse", String::from_utf8(out).unwrap());
}

fn check_fixture(name: &str) {
    let (client, provider) = protocols(name);
    let client_req = json(name, "request.client.json");
    let mut expected_req = json(name, "request.provider.json");
    // Gemini bodies carry no model (it is in the URL): the fixture's is only the target name.
    let public = client_req["model"]
        .as_str()
        .unwrap_or("gem-model")
        .to_string();
    let target = expected_req["model"].as_str().unwrap().to_string();
    if provider == Protocol::Gemini {
        expected_req.as_object_mut().unwrap().remove("model");
    }
    let target = target.as_str();
    if blessing(name) {
        return bless(name, client, provider, target);
    }

    let (decoded, encoded) = translated(&client_req, client, provider, target);
    let got: Value = serde_json::from_slice(&encoded.body).unwrap();
    assert_eq!(got, expected_req, "{name}: provider request\n got: {got:#}");
    let dropped: Vec<String> = read(name, "dropped.txt")
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(encoded.dropped.0, dropped, "{name}: dropped fields");

    let mut t =
        ResponseTranslator::json(provider, client, &public).with_client_state(&decoded.client);
    let body = read(name, "response.provider.json");
    let out = t.feed(Some(Bytes::from(body)), true).unwrap();
    let got = normalize(serde_json::from_slice(&out).unwrap());
    assert_eq!(
        got,
        json(name, "response.client.json"),
        "{name}: client response\n got: {got:#}"
    );

    let stream = read(name, "stream.provider.sse");
    let run =
        |pieces: &[&[u8]]| run_stream_with(client, provider, &public, &decoded.client, pieces);
    let whole = run(&[stream.as_bytes()]);
    let items = stream_items(client, &whole);
    assert_eq!(
        items,
        expected_stream(name, client),
        "{name}: client stream\n got: {}",
        String::from_utf8_lossy(&whole)
    );
    let b = stream.as_bytes();
    for split in 1..b.len() {
        let out = run(&[&b[..split], &b[split..]]);
        assert_eq!(
            stream_items(client, &out),
            items,
            "{name}: split at {split}"
        );
    }
    let bytes: Vec<&[u8]> = b.chunks(1).collect();
    assert_eq!(
        stream_items(client, &run(&bytes)),
        items,
        "{name}: byte by byte"
    );
}

#[test]
fn openai_client_to_anthropic_provider() {
    check_fixture("openai_to_anthropic");
}

#[test]
fn anthropic_client_to_openai_provider() {
    check_fixture("anthropic_to_openai");
}

#[test]
fn openai_client_to_gemini_provider() {
    check_fixture("openai_to_gemini");
}

#[test]
fn gemini_client_to_openai_provider() {
    check_fixture("gemini_to_openai");
}

#[test]
fn anthropic_client_to_gemini_provider() {
    check_fixture("anthropic_to_gemini");
}

#[test]
fn responses_client_to_anthropic_provider() {
    check_fixture("responses_to_anthropic");
}

#[test]
fn responses_client_to_openai_provider() {
    check_fixture("responses_to_openai");
}

#[test]
fn responses_client_to_gemini_provider() {
    check_fixture("responses_to_gemini");
}

#[test]
fn gemini_client_to_anthropic_provider() {
    check_fixture("gemini_to_anthropic");
}

#[test]
fn a_stream_cut_short_ends_with_an_error_event_in_the_client_protocol() {
    let stream = read("anthropic_to_openai", "stream.provider.sse");
    let cut = &stream.as_bytes()[..stream.find("finish_reason\":\"tool_calls").unwrap() - 200];
    let out = run_stream(Protocol::Anthropic, Protocol::OpenAi, "gpt-4o", &[cut]);
    let items = stream_items(Protocol::Anthropic, &out);
    assert_eq!(
        items.last().unwrap()[0],
        "error",
        "{}",
        String::from_utf8_lossy(&out)
    );
    let out = run_stream(
        Protocol::OpenAi,
        Protocol::Anthropic,
        "m",
        &[&read("openai_to_anthropic", "stream.provider.sse").as_bytes()[..400]],
    );
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("data: {\"error\""), "{text}");
}

#[test]
fn provider_errors_take_the_client_shape_and_keep_the_message() {
    let body = br#"{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: 100000 > 64000, which is the maximum"}}"#;
    let mut t = ResponseTranslator::error(Protocol::OpenAi, 400);
    let v: Value =
        serde_json::from_slice(&t.feed(Some(Bytes::from_static(body)), true).unwrap()).unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("max_tokens: 100000 > 64000"));
    let body = br#"{"error":{"message":"Rate limit reached for gpt-4o","type":"requests","code":"rate_limit_exceeded"}}"#;
    let mut t = ResponseTranslator::error(Protocol::Anthropic, 429);
    let v: Value =
        serde_json::from_slice(&t.feed(Some(Bytes::from_static(body)), true).unwrap()).unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "rate_limit_error");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Rate limit reached"));
}

#[test]
fn gemini_streams_without_alt_sse_are_one_json_array() {
    let stream = read("gemini_to_openai", "stream.provider.sse");
    let mut t =
        ResponseTranslator::stream(Protocol::OpenAi, Protocol::Gemini, "g", false, false).unwrap();
    assert_eq!(t.content_type(), "application/json");
    let mut out = vec![];
    for piece in stream.as_bytes().chunks(50) {
        if let Some(b) = t.feed(Some(Bytes::copy_from_slice(piece)), false) {
            out.extend_from_slice(&b);
        }
    }
    if let Some(b) = t.feed(None, true) {
        out.extend_from_slice(&b);
    }
    let v: Value = serde_json::from_slice(&out)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out)));
    let items = v.as_array().unwrap();
    assert_eq!(items.len(), 4);
    assert_eq!(items[3]["candidates"][0]["finishReason"], "STOP");
    assert_eq!(
        items[2]["candidates"][0]["content"]["parts"][0]["functionCall"]["name"],
        "ls"
    );
}
