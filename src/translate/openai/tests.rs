//! OpenAI Chat codec: wire -> model -> wire round trips, and its wire facts.

use serde_json::{json, Value};

use crate::errors::{ErrorCode, GatewayError};
use crate::protocol::Protocol;
use crate::translate::codec::{self, ClientState, Envelope, ResponseFacts};
use crate::translate::model::Usage;
use crate::translate::Dropped;

fn env() -> Envelope {
    Envelope {
        created: 0,
        ..Envelope::new("gpt-4o")
    }
}

#[test]
fn requests_round_trip() {
    let body = json!({
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "list files"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "ls", "arguments": "{\"dir\":\".\"}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "a.txt"},
            {"role": "user", "content": [
                {"type": "text", "text": "and this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}],
        "tools": [{"type": "function", "function": {"name": "ls", "description": "List",
                   "parameters": {"type": "object", "properties": {"dir": {"type": "string"}}}}}],
        "tool_choice": {"type": "function", "function": {"name": "ls"}},
        "max_tokens": 100,
        "temperature": 0.5,
        "stop": ["END"],
        "seed": 7,
    });
    let req = codec::client(Protocol::OpenAi)
        .decode_request(&body)
        .unwrap()
        .request;
    let mut dropped = Dropped::default();
    let (out, path) = codec::provider(Protocol::OpenAi)
        .unwrap()
        .encode_request(&req, "gpt-4o", 4096, &mut dropped)
        .unwrap();
    assert_eq!(path, "/v1/chat/completions");
    assert_eq!(out, body, "{out:#}");
    assert_eq!(dropped, Dropped::default());
}

#[test]
fn responses_round_trip() {
    let body = json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "gpt-4o",
        "choices": [{"index": 0, "logprobs": null, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": "Looking.", "refusal": null, "reasoning_content": "think",
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "ls", "arguments": "{}"}}]}}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15,
                  "prompt_tokens_details": {"cached_tokens": 2},
                  "completion_tokens_details": {"reasoning_tokens": 3}},
    });
    let resp = codec::provider(Protocol::OpenAi)
        .unwrap()
        .decode_response(&body)
        .unwrap();
    assert_eq!(resp.usage.unwrap().reasoning_tokens, Some(3));
    let out = codec::client(Protocol::OpenAi).encode_response(&resp, &env(), &ClientState::None);
    assert_eq!(out, body, "{out:#}");
}

#[test]
fn peek_request_reads_chat_fields_only() {
    let w = codec::wire(Protocol::OpenAi);
    let body = br#"{"messages":[{"role":"user","content":"\"model\""}],"model":"gpt4o","stream":true,
        "max_tokens":5,"max_completion_tokens":9,"max_output_tokens":1,"stream_options":{"include_usage":true}}"#;
    let p = w.peek_request(body).unwrap();
    assert_eq!(p.model.as_deref(), Some("gpt4o"));
    assert_eq!(&body[p.model_span.unwrap()], br#""gpt4o""#);
    assert!(p.stream && p.stream_usage);
    assert_eq!(p.max_output_tokens, Some(9), "max_completion_tokens first");
    let p = w
        .peek_request(br#"{"model":"m","max_completion_tokens":"x","max_tokens":4}"#)
        .unwrap();
    assert_eq!(p.max_output_tokens, Some(4));
    assert!(!p.stream && !p.stream_usage);
    assert!(w.peek_request(b"[1]").unwrap_err().contains("JSON object"));
    assert!(w
        .peek_request(br#"{"model": 3}"#)
        .unwrap_err()
        .contains("string"));
    assert!(w
        .peek_request(br#"{"model": "a","#)
        .unwrap_err()
        .contains("not valid JSON"));
    assert!(w.peek_request(b"").is_err());
}

#[test]
fn peek_response_gives_the_model_span_and_usage() {
    let w = codec::wire(Protocol::OpenAi);
    let body = br#"{"id":"1","model":"up","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":3,"prompt_tokens_details":{"cached_tokens":2},"completion_tokens_details":{"reasoning_tokens":1}}}"#;
    let f = w.peek_response(body).unwrap();
    assert_eq!(&body[f.model.clone().unwrap()], br#""up""#);
    assert_eq!(
        f.usage,
        Some(Usage {
            prompt_tokens: 9,
            completion_tokens: 3,
            cached_tokens: Some(2),
            reasoning_tokens: Some(1),
            cache_write_tokens: None,
        })
    );
    // A stream chunk without usage; an images response in the Responses shape.
    let f = w.peek_response(br#"{"model":"up","choices":[{"delta":{}}],"usage":null}"#);
    assert!(f.unwrap().usage.is_none());
    let f = w
        .peek_response(
            br#"{"data":[],"usage":{"input_tokens":4,"output_tokens":8,"total_tokens":12}}"#,
        )
        .unwrap();
    assert_eq!(f.model, None);
    assert_eq!(f.usage.unwrap().completion_tokens, 8);
    assert_eq!(w.peek_response(b"not json"), None);
    assert_eq!(
        w.peek_response(br#"{"model":3}"#),
        Some(ResponseFacts::default())
    );
}

#[test]
fn stream_error_is_a_data_event() {
    let err = GatewayError::new(ErrorCode::UpstreamError, "cut");
    let w = codec::wire(Protocol::OpenAi);
    let body = String::from_utf8(err.body(Protocol::OpenAi).to_vec()).unwrap();
    assert_eq!(w.stream_error(&err, false), format!("data: {body}\n\n"));
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], "upstream_error");
}

#[test]
fn tool_names_outside_the_pattern_are_hashed() {
    let p = codec::provider(Protocol::OpenAi).unwrap();
    assert_eq!(p.wire_tool_name("read_file"), None);
    let renamed = p.wire_tool_name("mcp.fs:read").unwrap();
    assert!(renamed.starts_with("mcp_fs_read_"), "{renamed}");
    assert_ne!(
        p.wire_tool_name("mcp.fs:read"),
        p.wire_tool_name("mcp_fs_read!")
    );
    assert!(p.wire_tool_name(&"x".repeat(65)).unwrap().len() <= 64);
}

#[test]
fn a_translated_stream_error_keeps_its_bytes() {
    let mut e = codec::client(Protocol::OpenAi).stream_encoder(env(), &ClientState::None);
    let mut out = vec![];
    e.encode(
        &crate::translate::model::StreamEvent::Error {
            message: "cut \"short\"".into(),
        },
        &mut out,
    );
    // What the encoder wrote before it shared the proxy's writer.
    let old = json!({"error": {"message": "cut \"short\"", "type": "server_error", "code": "upstream_error", "param": null}});
    assert_eq!(String::from_utf8(out).unwrap(), format!("data: {old}\n\n"));
}
