use serde_json::{json, Value};

use super::request::decode_request;
use super::response::encode_response;
use super::stream::StreamEncoder;
use super::*;
use crate::translate::codec::ClientCodec;
use crate::translate::model::*;

fn env(model: &str) -> Envelope {
    Envelope {
        created: 0,
        ..Envelope::new(model)
    }
}

#[test]
fn freeform_tools_round_trip_as_custom_calls() {
    let (req, state) = decode_request(&json!({
        "model": "m", "instructions": "be brief",
        "input": [{"role": "user", "content": [{"type": "input_text", "text": "patch it"}]},
                  {"type": "custom_tool_call", "call_id": "c1", "name": "apply_patch", "input": "*** Begin Patch"},
                  {"type": "custom_tool_call_output", "call_id": "c1", "output": "ok"}],
        "tools": [{"type": "custom", "name": "apply_patch", "description": "Edit files",
                   "format": {"type": "grammar", "syntax": "lark", "definition": "start: x"}},
                  {"type": "web_search"}],
    }))
    .unwrap();
    assert_eq!(req.system, vec!["be brief"]);
    assert_eq!(state.freeform_tools, vec!["apply_patch"]);
    assert!(req.tools[0]
        .description
        .as_deref()
        .unwrap()
        .contains("start: x"));
    assert_eq!(req.unmapped, vec!["tools.web_search"]);
    assert_eq!(
        req.messages[1].parts[0],
        Part::ToolCall {
            id: "c1".into(),
            name: "apply_patch".into(),
            arguments: r#"{"input":"*** Begin Patch"}"#.into()
        }
    );
    let resp = ChatResponse {
        id: "x".into(),
        parts: vec![Part::ToolCall {
            id: "c2".into(),
            name: "apply_patch".into(),
            arguments: r#"{"input":"diff"}"#.into(),
        }],
        finish: Some(FinishReason::ToolCalls),
        usage: None,
    };
    let v = encode_response(&resp, &env("pub"), &state);
    assert_eq!(v["output"][0]["type"], "custom_tool_call");
    assert_eq!(v["output"][0]["input"], "diff");
}

#[test]
fn namespaced_tools_are_flattened_and_their_calls_name_the_namespace() {
    let (req, state) = decode_request(&json!({"model": "m", "input": "spawn one",
        "tools": [{"type": "namespace", "name": "multi_agent_v1", "description": "agents",
                   "tools": [{"type": "function", "name": "spawn_agent", "parameters": {"type": "object"}}]},
                  {"type": "function", "name": "exec_command", "parameters": {"type": "object"}}]}))
    .unwrap();
    let names: Vec<&str> = req.tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["spawn_agent", "exec_command"]);
    let resp = ChatResponse {
        id: "x".into(),
        parts: vec![
            Part::ToolCall {
                id: "c1".into(),
                name: "spawn_agent".into(),
                arguments: "{}".into(),
            },
            Part::ToolCall {
                id: "c2".into(),
                name: "exec_command".into(),
                arguments: "{}".into(),
            },
        ],
        finish: Some(FinishReason::ToolCalls),
        usage: None,
    };
    let v = encode_response(&resp, &env("pub"), &state);
    assert_eq!(v["output"][0]["namespace"], "multi_agent_v1");
    assert!(v["output"][1].get("namespace").is_none());
    assert_eq!(
        v["tools"][0]["type"], "namespace",
        "the request's tools are repeated"
    );
}

#[test]
fn stored_conversation_references_are_refused_clearly() {
    let e = decode_request(&json!({"model": "m", "input": "hi", "previous_response_id": "resp_1"}))
        .unwrap_err();
    assert!(e.message.contains("whole conversation"));
}

#[test]
fn stream_numbers_events_and_ends_with_completed() {
    let mut e = StreamEncoder::new(env("pub"), ClientState::default());
    let mut out = vec![];
    for ev in [
        StreamEvent::Start { id: "abc".into() },
        StreamEvent::TextDelta("He".into()),
        StreamEvent::TextDelta("llo".into()),
        StreamEvent::ToolCallStart {
            index: 0,
            id: "call_1".into(),
            name: "f".into(),
        },
        StreamEvent::ToolCallArgs {
            index: 0,
            fragment: "{}".into(),
        },
        StreamEvent::Finish(FinishReason::ToolCalls),
        StreamEvent::Usage(Usage {
            prompt_tokens: 3,
            completion_tokens: 2,
            ..Usage::default()
        }),
        StreamEvent::Done,
    ] {
        e.encode(&ev, &mut out);
    }
    let text = String::from_utf8(out).unwrap();
    let datas: Vec<Value> = text
        .split("\n\n")
        .filter_map(|ev| ev.lines().find_map(|l| l.strip_prefix("data: ")))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    for (i, d) in datas.iter().enumerate() {
        assert_eq!(d["sequence_number"], i as u64);
    }
    let last = datas.last().unwrap();
    assert_eq!(last["type"], "response.completed");
    assert_eq!(last["response"]["id"], "resp_abc");
    assert_eq!(last["response"]["output"][0]["content"][0]["text"], "Hello");
    assert_eq!(last["response"]["output"][1]["call_id"], "call_1");
    assert_eq!(last["response"]["usage"]["total_tokens"], 5);
}

#[test]
fn relayed_signatures_round_trip_through_reasoning_items() {
    let input = json!({"model": "m", "input": [
        {"role": "user", "content": "hi"},
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "a"}],
         "encrypted_content": "modelgate-sig:gemini:SIG1"},
        {"type": "reasoning", "summary": [], "encrypted_content": "modelgate-sig:EqQBCg"},
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "own"}],
         "encrypted_content": "gAAAA-openai"}]});
    let (req, _) = decode_request(&input).unwrap();
    let parts = &req.messages[1].parts;
    assert_eq!(
        parts[..2],
        [
            Part::Thinking {
                text: "a".into(),
                signature: Some(Signature::new(Issuer::Gemini, "SIG1"))
            },
            Part::Thinking {
                text: String::new(),
                signature: Some(Signature::new(Issuer::Anthropic, "EqQBCg"))
            }
        ]
    );
    assert_eq!(
        parts[2],
        Part::Thinking {
            text: "own".into(),
            signature: None
        },
        "OpenAI's own encrypted reasoning means nothing elsewhere"
    );
    let resp = ChatResponse {
        id: "x".into(),
        parts: parts[..2].to_vec(),
        finish: Some(FinishReason::Stop),
        usage: None,
    };
    let v = encode_response(&resp, &env("pub"), &ClientState::default());
    assert_eq!(
        v["output"][0]["encrypted_content"],
        input["input"][1]["encrypted_content"]
    );
    assert_eq!(
        v["output"][1]["encrypted_content"],
        input["input"][2]["encrypted_content"]
    );
    assert_eq!(v["output"][0]["summary"], input["input"][1]["summary"]);
}

#[test]
fn echoed_settings_are_client_state() {
    let body = json!({"model": "m", "input": "hi", "temperature": 0.2, "store": false,
                      "text": {"verbosity": "low"}});
    let d = Responses.decode_request(&body).unwrap();
    let codec::ClientState::Responses(state) = &d.client else {
        panic!("{d:?}")
    };
    assert_eq!(state.echo["temperature"], 0.2);
    let resp = ChatResponse {
        id: "x".into(),
        parts: vec![Part::Text("ok".into())],
        finish: None,
        usage: None,
    };
    let v = Responses.encode_response(&resp, &env("pub"), &d.client);
    assert_eq!(v["temperature"], 0.2);
    assert_eq!(
        v["text"],
        json!({"format": {"type": "text"}, "verbosity": "low"})
    );
    // Without state, the defaults.
    let v = Responses.encode_response(&resp, &env("pub"), &codec::ClientState::None);
    assert_eq!(v["temperature"], Value::Null);
}

#[test]
fn peek_request_reads_max_output_tokens() {
    let w = codec::wire(crate::protocol::Protocol::Responses);
    let body = br#"{"model":"gpt-5","input":"hi","stream":true,"max_output_tokens":64,"max_tokens":1,"stream_options":{"include_usage":true}}"#;
    let p = w.peek_request(body).unwrap();
    assert_eq!(&body[p.model_span.unwrap()], br#""gpt-5""#);
    assert_eq!(
        (p.stream, p.max_output_tokens, p.stream_usage),
        (true, Some(64), false)
    );
}

#[test]
fn peek_response_reads_events_and_bodies() {
    let w = codec::wire(crate::protocol::Protocol::Responses);
    let done = br#"{"type":"response.completed","sequence_number":9,"response":{"id":"r","model":"gpt-5","usage":{"input_tokens":3,"input_tokens_details":{"cached_tokens":1},"output_tokens":4,"output_tokens_details":{"reasoning_tokens":2},"total_tokens":7}}}"#;
    let f = w.peek_response(done).unwrap();
    assert_eq!(&done[f.model.unwrap()], br#""gpt-5""#);
    assert_eq!(
        f.usage,
        Some(Usage {
            prompt_tokens: 3,
            completion_tokens: 4,
            cached_tokens: Some(1),
            reasoning_tokens: Some(2),
            cache_write_tokens: None,
        })
    );
    let body = br#"{"id":"r","object":"response","model":"gpt-5","usage":{"input_tokens":5,"output_tokens":6}}"#;
    let f = w.peek_response(body).unwrap();
    assert_eq!(&body[f.model.unwrap()], br#""gpt-5""#);
    assert_eq!(f.usage.unwrap().completion_tokens, 6);
    let delta = br#"{"type":"response.output_text.delta","delta":"model"}"#;
    assert_eq!(
        w.peek_response(delta),
        Some(codec::ResponseFacts::default())
    );
}

#[test]
fn stream_error_is_error_then_response_failed() {
    use crate::errors::{ErrorCode, GatewayError};
    let err = GatewayError::new(ErrorCode::UpstreamError, "cut");
    let w = codec::wire(crate::protocol::Protocol::Responses);
    let out = w.stream_error(&err, false);
    let text = String::from_utf8(out.to_vec()).unwrap();
    assert!(text.starts_with("event: error\ndata: {"), "{text}");
    assert!(text.contains("event: response.failed\n"), "{text}");
    // The spec's code for a provider failure, and numbers from the start (nothing was
    // sent before this end).
    assert!(text.contains(r#""code":"server_error""#), "{text}");
    assert!(!text.contains("upstream_error"), "{text}");
    assert!(
        text.contains(r#""sequence_number":0"#) && text.contains(r#""sequence_number":1"#),
        "{text}"
    );
    // After a provider's events, the numbers go on and the announced response is failed.
    let announced =
        serde_json::json!({"id": "resp_9", "object": "response", "status": "in_progress"});
    let text = String::from_utf8(failure_after(Some(&announced), Some(7), "cut")).unwrap();
    assert!(
        text.contains(r#""sequence_number":8"#) && text.contains(r#""sequence_number":9"#),
        "{text}"
    );
    assert!(
        text.contains(r#""id":"resp_9""#) && text.contains(r#""status":"failed""#),
        "{text}"
    );
}
