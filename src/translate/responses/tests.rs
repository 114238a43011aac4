use serde_json::json;

use super::request::decode_request;
use super::response::encode_response;
use super::stream::StreamEncoder;
use super::*;
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
