//! Gemini codec: wire -> model -> wire round trips, and its wire facts.

use bytes::Bytes;
use serde_json::json;

use crate::errors::{ErrorCode, GatewayError};
use crate::protocol::Protocol;
use crate::translate::codec::{self, ClientState, Envelope};
use crate::translate::model::{Issuer, Part, Signature, Usage};
use crate::translate::Dropped;

#[test]
fn requests_round_trip() {
    let body = json!({
        "contents": [
            {"role": "user", "parts": [{"text": "list files"}, {"inlineData": {"mimeType": "image/png", "data": "AAAA"}}]},
            {"role": "model", "parts": [
                {"text": "use ls", "thought": true, "thoughtSignature": "SIG0"},
                {"functionCall": {"name": "ls", "args": {"dir": "."}}, "thoughtSignature": "SIG1"}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "ls", "response": {"result": "a.txt"}}}]}],
        "systemInstruction": {"parts": [{"text": "be brief"}]},
        "tools": [{"functionDeclarations": [{"name": "ls", "description": "List",
                   "parameters": {"type": "object", "properties": {"dir": {"type": "string"}}}}]}],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["ls"]}},
        "generationConfig": {"maxOutputTokens": 100, "temperature": 0.5, "stopSequences": ["END"],
                             "thinkingConfig": {"thinkingBudget": 2048, "includeThoughts": true}},
    });
    let req = codec::client(Protocol::Gemini)
        .decode_request(&body)
        .unwrap()
        .request;
    assert_eq!(
        req.messages[1].parts[1],
        Part::Thinking {
            text: String::new(),
            signature: Some(Signature::new(Issuer::Gemini, "SIG1"))
        },
        "a call's signature travels as a signed empty thought"
    );
    let mut dropped = Dropped::default();
    let (out, path) = codec::provider(Protocol::Gemini)
        .unwrap()
        .encode_request(&req, "gemini-2.5-pro", 4096, &mut dropped)
        .unwrap();
    assert_eq!(path, "/v1beta/models/gemini-2.5-pro:generateContent");
    // Tool schemas go out as JSON Schema, in `parametersJsonSchema`.
    let mut expected = body.clone();
    let decl = &mut expected["tools"][0]["functionDeclarations"][0];
    decl["parametersJsonSchema"] = decl["parameters"].take();
    decl.as_object_mut().unwrap().remove("parameters");
    assert_eq!(out, expected, "{out:#}");
    assert_eq!(dropped, Dropped::default());
}

#[test]
fn responses_round_trip() {
    let body = json!({
        "candidates": [{"content": {"role": "model", "parts": [
            {"text": "hmm", "thought": true, "thoughtSignature": "SIG0"},
            {"text": "Looking."},
            {"functionCall": {"id": "call_0", "name": "ls", "args": {}}}]},
            "finishReason": "STOP", "index": 0}],
        "modelVersion": "gemini-2.5-pro",
        "responseId": "r1",
        "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5, "thoughtsTokenCount": 3,
                          "cachedContentTokenCount": 2, "totalTokenCount": 18},
    });
    let resp = codec::provider(Protocol::Gemini)
        .unwrap()
        .decode_response(&body)
        .unwrap();
    assert_eq!(
        resp.usage,
        Some(Usage {
            prompt_tokens: 10,
            completion_tokens: 8,
            cached_tokens: Some(2),
            reasoning_tokens: Some(3),
            cache_write_tokens: None,
        })
    );
    let out = codec::client(Protocol::Gemini).encode_response(
        &resp,
        &Envelope::new("gemini-2.5-pro"),
        &ClientState::None,
    );
    // A finished call is STOP in Gemini, tool_calls in the model: it reads back as STOP.
    assert_eq!(out, body, "{out:#}");
}

#[test]
fn relayed_signatures_go_back_to_their_issuer() {
    let body = json!({"contents": [{"role": "model", "parts": [
        {"text": "t", "thought": true, "thoughtSignature": "modelgate-sig:EqQBCg"}]}]});
    let req = codec::client(Protocol::Gemini)
        .decode_request(&body)
        .unwrap()
        .request;
    let Part::Thinking { signature, .. } = &req.messages[0].parts[0] else {
        panic!("{req:?}")
    };
    assert_eq!(
        signature,
        &Some(Signature::new(Issuer::Anthropic, "EqQBCg"))
    );
}

#[test]
fn a_relayed_signature_reaches_gemini_clients_as_base64_and_comes_back() {
    use base64::Engine;
    let anthropic = Signature::new(Issuer::Anthropic, "EqQBCg==/+x");
    let sent = super::wire::client_signature(&anthropic);
    let raw = base64::engine::general_purpose::STANDARD
        .decode(&sent)
        .expect("thoughtSignature is proto bytes: valid base64");
    assert_eq!(raw, b"modelgate-sig:EqQBCg==/+x");
    assert_eq!(super::wire::read_signature(Some(&sent)), Some(anthropic));
    // Gemini's own signatures pass as they are; a base64 one of Gemini's is not mistaken.
    let own = Signature::new(Issuer::Gemini, "CiQBcsjafQ==");
    assert_eq!(super::wire::client_signature(&own), "CiQBcsjafQ==");
    assert_eq!(super::wire::read_signature(Some("CiQBcsjafQ==")), Some(own));
    // Replayed to a Gemini provider, the relayed signature leaves the request.
    let body = json!({"contents": [{"role": "model", "parts": [
        {"functionCall": {"name": "f", "args": {}}, "thoughtSignature": sent}]}]});
    let stripped = codec::wire(Protocol::Gemini)
        .strip_relayed_signatures(body.to_string().as_bytes())
        .expect("found");
    assert!(stripped["contents"][0]["parts"][0]
        .get("thoughtSignature")
        .is_none());
}

#[test]
fn peek_request_reads_generation_config_and_never_stream() {
    let w = codec::wire(Protocol::Gemini);
    let p = w
        .peek_request(br#"{"contents":[],"stream":true,"max_tokens":5,"generationConfig":{"maxOutputTokens":77}}"#)
        .unwrap();
    assert_eq!(
        (p.model, p.stream, p.max_output_tokens),
        (None, false, Some(77))
    );
}

#[test]
fn peek_response_reads_model_version_and_usage_metadata() {
    let w = codec::wire(Protocol::Gemini);
    let chunk = br#"{"candidates":[],"modelVersion":"gemini-2.5","usageMetadata":{"promptTokenCount":4,"candidatesTokenCount":6,"thoughtsTokenCount":2}}"#;
    let f = w.peek_response(chunk).unwrap();
    assert_eq!(&chunk[f.model.unwrap()], br#""gemini-2.5""#);
    assert_eq!(
        f.usage,
        Some(Usage {
            prompt_tokens: 4,
            completion_tokens: 8,
            cached_tokens: None,
            reasoning_tokens: Some(2),
            cache_write_tokens: None,
        })
    );
    let f = w
        .peek_response(br#"{"model":"x","usage":{"prompt_tokens":1}}"#)
        .unwrap();
    assert_eq!((f.model, f.usage), (None, None), "other protocols' fields");
}

#[test]
fn stream_error_closes_sse_or_the_json_array() {
    let err = GatewayError::new(ErrorCode::UpstreamError, "cut");
    let body = String::from_utf8(err.body(Protocol::Gemini).to_vec()).unwrap();
    let w = codec::wire(Protocol::Gemini);
    assert_eq!(
        w.stream_error(&err, false),
        Bytes::from(format!("data: {body}\n\n"))
    );
    assert_eq!(
        w.stream_error(&err, true),
        Bytes::from(format!(",\r\n{body}]"))
    );
}

#[test]
fn tool_names_must_start_with_a_letter() {
    let p = codec::provider(Protocol::Gemini).unwrap();
    assert_eq!(p.wire_tool_name("mcp.fs:read"), None);
    let renamed = p.wire_tool_name("1st-tool").unwrap();
    assert!(renamed.starts_with("t_1st-tool_"), "{renamed}");
}
