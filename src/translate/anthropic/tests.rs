//! Anthropic Messages codec: wire -> model -> wire round trips, and its wire facts.

use bytes::Bytes;
use serde_json::json;

use crate::errors::{ErrorCode, GatewayError};
use crate::protocol::Protocol;
use crate::translate::codec::{self, ClientState, Envelope};
use crate::translate::model::{Issuer, Part, Signature, StreamEvent, Usage};
use crate::translate::Dropped;

#[test]
fn requests_round_trip() {
    let body = json!({
        "model": "claude",
        "system": "be brief",
        "max_tokens": 8000,
        "thinking": {"type": "enabled", "budget_tokens": 2048},
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "list files"}]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "use ls", "signature": "EqQBCg"},
                {"type": "tool_use", "id": "t1", "name": "ls", "input": {"dir": "."}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "a.txt"}]},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}]}],
        "tools": [{"name": "ls", "description": "List", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "auto"},
        "stop_sequences": ["END"],
        "metadata": {"user_id": "u1"},
    });
    let req = codec::client(Protocol::Anthropic)
        .decode_request(&body)
        .unwrap()
        .request;
    assert_eq!(
        req.messages[1].parts[0],
        Part::Thinking {
            text: "use ls".into(),
            signature: Some(Signature::new(Issuer::Anthropic, "EqQBCg"))
        }
    );
    let mut dropped = Dropped::default();
    let (out, path) = codec::provider(Protocol::Anthropic)
        .unwrap()
        .encode_request(&req, "claude", 4096, &mut dropped)
        .unwrap();
    assert_eq!(path, "/v1/messages");
    assert_eq!(out, body, "{out:#}");
    assert_eq!(dropped, Dropped::default());
}

#[test]
fn gemini_signatures_keep_their_tag_for_anthropic_clients_only() {
    let body = json!({"model": "c", "max_tokens": 10, "messages": [
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "", "signature": "gemini:SIG"}]}]});
    let req = codec::client(Protocol::Anthropic)
        .decode_request(&body)
        .unwrap()
        .request;
    let sig = Signature::new(Issuer::Gemini, "SIG");
    assert_eq!(
        req.messages[0].parts,
        [Part::Thinking {
            text: String::new(),
            signature: Some(sig.clone())
        }]
    );
    // Anthropic refuses another provider's signature: the thinking is left out.
    let mut dropped = Dropped::default();
    let (out, _) = codec::provider(Protocol::Anthropic)
        .unwrap()
        .encode_request(&req, "c", 4096, &mut dropped)
        .unwrap();
    assert_eq!(out["messages"], json!([]));
    assert_eq!(dropped.0, ["thinking"]);
    // An Anthropic client gets it tagged, as it sent it.
    let mut e =
        codec::client(Protocol::Anthropic).stream_encoder(Envelope::new("c"), &ClientState::None);
    let mut bytes = vec![];
    e.encode(&StreamEvent::CallSignature(sig), &mut bytes);
    let text = String::from_utf8(bytes).unwrap();
    assert!(text.contains(r#""signature":"gemini:SIG""#), "{text}");
}

#[test]
fn responses_round_trip() {
    let body = json!({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude",
        "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "EqQBCg"},
            {"type": "text", "text": "Looking.", "citations": null},
            {"type": "tool_use", "id": "t1", "name": "ls", "input": {}, "caller": {"type": "direct"}}],
        "stop_reason": "tool_use", "stop_sequence": null, "stop_details": null,
        "container": null, "diagnostics": null,
        "usage": {"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 4,
                  "cache_creation_input_tokens": 0, "cache_creation": null,
                  "inference_geo": null, "output_tokens_details": null,
                  "server_tool_use": null, "service_tier": null, "speed": null},
    });
    let resp = codec::provider(Protocol::Anthropic)
        .unwrap()
        .decode_response(&body)
        .unwrap();
    assert_eq!(resp.usage.unwrap().prompt_tokens, 14);
    let out = codec::client(Protocol::Anthropic).encode_response(
        &resp,
        &Envelope::new("claude"),
        &ClientState::None,
    );
    assert_eq!(out, body, "{out:#}");
}

#[test]
fn peek_request_reads_max_tokens() {
    let w = codec::wire(Protocol::Anthropic);
    let body = br#"{"model":"claude","max_tokens":300,"max_completion_tokens":9,"stream":true,"stream_options":{"include_usage":true}}"#;
    let p = w.peek_request(body).unwrap();
    assert_eq!(&body[p.model_span.unwrap()], br#""claude""#);
    assert_eq!(p.max_output_tokens, Some(300));
    assert!(p.stream);
    assert!(!p.stream_usage, "OpenAI's field, not Anthropic's");
}

#[test]
fn peek_response_reads_nested_messages_and_partial_usage() {
    let w = codec::wire(Protocol::Anthropic);
    let start = br#"{"type":"message_start","message":{"id":"m","model":"claude-x","usage":{"input_tokens":25,"cache_read_input_tokens":5,"output_tokens":1}}}"#;
    let f = w.peek_response(start).unwrap();
    assert_eq!(&start[f.model.unwrap()], br#""claude-x""#);
    assert_eq!(
        f.usage,
        Some(Usage {
            prompt_tokens: 30,
            completion_tokens: 1,
            cached_tokens: Some(5),
            reasoning_tokens: None,
            cache_write_tokens: None,
        })
    );
    // message_delta carries output tokens only.
    let delta = br#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":15}}"#;
    let f = w.peek_response(delta).unwrap();
    assert_eq!(f.model, None);
    assert_eq!(
        f.usage,
        Some(Usage {
            completion_tokens: 15,
            ..Usage::default()
        })
    );
    let body =
        br#"{"id":"m","model":"claude","content":[],"usage":{"input_tokens":3,"output_tokens":4}}"#;
    assert_eq!(
        w.peek_response(body).unwrap().usage.unwrap().prompt_tokens,
        3
    );
}

#[test]
fn stream_decoder_keeps_input_tokens_across_an_output_only_delta() {
    let mut d = codec::provider(Protocol::Anthropic)
        .unwrap()
        .stream_decoder();
    let mut events = vec![];
    d.feed(r#"{"type":"message_start","message":{"id":"m","usage":{"input_tokens":25,"output_tokens":1}}}"#, &mut events);
    d.feed(r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":15}}"#, &mut events);
    let last = events.iter().rev().find_map(|e| match e {
        StreamEvent::Usage(u) => Some(*u),
        _ => None,
    });
    assert_eq!(
        last.map(|u| (u.prompt_tokens, u.completion_tokens)),
        Some((25, 15))
    );
}

#[test]
fn stream_error_is_a_named_error_event() {
    let err = GatewayError::new(ErrorCode::UpstreamUnavailable, "gone");
    let body = String::from_utf8(err.body(Protocol::Anthropic).to_vec()).unwrap();
    assert_eq!(
        codec::wire(Protocol::Anthropic).stream_error(&err, false),
        Bytes::from(format!("event: error\ndata: {body}\n\n"))
    );
}

#[test]
fn structured_output_is_native_where_the_schema_fits() {
    let schema =
        json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]});
    let encode = |format: serde_json::Value| {
        let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
            "response_format": format});
        let req = codec::client(Protocol::OpenAi)
            .decode_request(&body)
            .unwrap()
            .request;
        let mut dropped = Dropped::default();
        let (out, _) = codec::provider(Protocol::Anthropic)
            .unwrap()
            .encode_request(&req, "m", 4096, &mut dropped)
            .unwrap();
        (out, dropped)
    };
    let (out, dropped) = encode(json!({"type": "json_schema",
        "json_schema": {"name": "place", "schema": schema, "strict": true}}));
    assert_eq!(
        out["output_config"],
        json!({"format": {"type": "json_schema", "schema": {"type": "object",
            "properties": {"city": {"type": "string"}}, "required": ["city"],
            "additionalProperties": false}}})
    );
    assert!(out.get("system").is_none(), "{out}");
    assert_eq!(dropped, Dropped::default());
    // No equivalent of JSON mode, and a schema outside the subset: emulated, and said so.
    for format in [
        json!({"type": "json_object"}),
        json!({"type": "json_schema", "json_schema": {"name": "x", "schema": {"properties": {}}}}),
    ] {
        let (out, dropped) = encode(format);
        assert!(out.get("output_config").is_none());
        assert!(out["system"].as_str().unwrap().contains("JSON object"));
        assert_eq!(
            dropped.header_value().as_deref(),
            Some("response_format(emulated)")
        );
    }
}
