use super::*;
use serde_json::json;

/// The neutral request alone (these tests check encodings, not the client's state).
fn decode_request(client: Protocol, body: &[u8]) -> Result<ChatRequest, TranslateError> {
    decode(client, body).map(|d| d.request)
}

fn to(provider: Protocol, client: Protocol, body: Value) -> (Value, Dropped) {
    to_version(provider, client, body, anthropic::DEFAULT_VERSION)
}

/// With an Anthropic API version other than the default.
fn to_version(
    provider: Protocol,
    client: Protocol,
    body: Value,
    version: &str,
) -> (Value, Dropped) {
    let req = decode_request(client, body.to_string().as_bytes()).unwrap();
    let p = encode_request(&req, provider, "target", 4096, version).unwrap();
    (serde_json::from_slice(&p.body).unwrap(), p.dropped)
}

#[test]
fn anthropic_2026_10_21_gets_no_sampling_fields_and_says_so() {
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
        "temperature": 0.2, "top_p": 0.9, "stop": ["x"]});
    let (v, dropped) = to(Protocol::Anthropic, Protocol::OpenAi, body.clone());
    assert!(v.get("temperature").is_none() && v.get("top_p").is_none() && v.get("top_k").is_none());
    assert_eq!(v["stop_sequences"], json!(["x"]));
    assert_eq!(dropped.0, vec!["temperature", "top_p"]);
    let (v, dropped) = to_version(Protocol::Anthropic, Protocol::OpenAi, body, "2023-06-01");
    assert_eq!(
        (v["temperature"].as_f64(), v["top_p"].as_f64()),
        (Some(0.2), Some(0.9))
    );
    assert!(dropped.0.is_empty());
}

#[test]
fn anthropic_targets_always_get_max_tokens_and_sane_sampling() {
    // On the version that still takes sampling fields.
    let (v, _) = to_version(
        Protocol::Anthropic,
        Protocol::OpenAi,
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 1.7, "n": 1}),
        "2023-06-01",
    );
    assert_eq!(v["max_tokens"], 4096);
    assert_eq!(
        v["temperature"], 1.0,
        "OpenAI's 0..2 range is clamped to Anthropic's 0..1"
    );
    let req = decode_request(
        Protocol::OpenAi,
        br#"{"model":"m","n":2,"messages":[{"role":"user","content":"x"}]}"#,
    )
    .unwrap();
    let e = encode_request(
        &req,
        Protocol::Anthropic,
        "t",
        4096,
        anthropic::DEFAULT_VERSION,
    )
    .err()
    .unwrap();
    assert_eq!(e.param, Some("n"));
}

#[test]
fn reasoning_maps_between_effort_and_budget() {
    let (v, dropped) = to(
        Protocol::Anthropic,
        Protocol::OpenAi,
        json!({"model": "m", "reasoning_effort": "high", "temperature": 0.3, "max_completion_tokens": 30000,
               "messages": [{"role": "user", "content": "think"}]}),
    );
    assert_eq!(
        v["thinking"],
        json!({"type": "enabled", "budget_tokens": 24576})
    );
    assert_eq!(
        v["max_tokens"], 30000,
        "the client's limit, above the budget"
    );
    assert!(v.get("temperature").is_none());
    assert_eq!(dropped.0, vec!["temperature"]);
    let think = json!({"model": "m", "max_tokens": 5000, "thinking": {"type": "enabled", "budget_tokens": 2000},
                       "messages": [{"role": "user", "content": "think"}]});
    let req = decode_request(Protocol::Anthropic, think.to_string().as_bytes()).unwrap();
    let p = encode_request(
        &req,
        Protocol::OpenAi,
        "o4-mini",
        4096,
        anthropic::DEFAULT_VERSION,
    )
    .unwrap();
    let v: Value = serde_json::from_slice(&p.body).unwrap();
    assert_eq!(v["reasoning_effort"], "low");
    assert_eq!(v["max_completion_tokens"], 5000);
    // A model without reasoning gets neither reasoning_effort nor max_completion_tokens.
    let p = encode_request(
        &req,
        Protocol::OpenAi,
        "gpt-4o",
        4096,
        anthropic::DEFAULT_VERSION,
    )
    .unwrap();
    let v: Value = serde_json::from_slice(&p.body).unwrap();
    assert!(v.get("reasoning_effort").is_none());
    assert_eq!(v["max_tokens"], 5000);
    assert_eq!(p.dropped.0, vec!["reasoning"]);
    // Reasoning models refuse non-default sampling and efforts outside their family's set.
    let req = decode_request(
        Protocol::OpenAi,
        br#"{"model":"m","reasoning_effort":"minimal","temperature":0.2,"top_p":1,"messages":[{"role":"user","content":"x"}]}"#,
    )
    .unwrap();
    let p = encode_request(
        &req,
        Protocol::OpenAi,
        "o3",
        4096,
        anthropic::DEFAULT_VERSION,
    )
    .unwrap();
    let v: Value = serde_json::from_slice(&p.body).unwrap();
    assert_eq!(v["reasoning_effort"], "low");
    assert!(v.get("temperature").is_none());
    assert_eq!(v["top_p"], 1.0);
    assert_eq!(p.dropped.0, vec!["temperature"]);
    let p = encode_request(
        &req,
        Protocol::OpenAi,
        "gpt-5-mini",
        4096,
        anthropic::DEFAULT_VERSION,
    )
    .unwrap();
    let v: Value = serde_json::from_slice(&p.body).unwrap();
    assert_eq!(v["reasoning_effort"], "minimal");
    for (model, reasoning) in [
        ("o3", true),
        ("gpt-5-mini", true),
        ("openai/gpt-oss-120b", true),
        ("deepseek-reasoner", true),
        ("gpt-4.1", false),
        ("omni-moderation", false),
        ("llama-3.3-70b", false),
    ] {
        assert_eq!(openai::is_reasoning_model(model), reasoning, "{model}");
    }
}

#[test]
fn sparse_tool_results_and_system_turns_survive() {
    // A tool_result with no content at all, and one with array content.
    let (v, _) = to(
        Protocol::OpenAi,
        Protocol::Anthropic,
        json!({"model": "m", "max_tokens": 10, "messages": [
            {"role": "system", "content": "sys in messages"},
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "a", "input": {}},
                                               {"type": "tool_use", "id": "t2", "name": "b", "input": {"x": 1}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1"},
                                          {"type": "tool_result", "tool_use_id": "t2", "is_error": true,
                                           "content": [{"type": "text", "text": "boom"}]}]}]}),
    );
    let msgs = v["messages"].as_array().unwrap();
    assert_eq!(
        msgs[0],
        json!({"role": "system", "content": "sys in messages"})
    );
    assert_eq!(
        msgs[2]["tool_calls"][1]["function"]["arguments"],
        "{\"x\":1}"
    );
    assert_eq!(
        msgs[3],
        json!({"role": "tool", "tool_call_id": "t1", "content": ""})
    );
    assert_eq!(
        msgs[4],
        json!({"role": "tool", "tool_call_id": "t2", "content": "Error: boom"})
    );
}

#[test]
fn openai_streams_always_ask_for_usage() {
    let (v, _) = to(
        Protocol::OpenAi,
        Protocol::Anthropic,
        json!({"model": "m", "max_tokens": 10, "stream": true, "messages": [{"role": "user", "content": "x"}]}),
    );
    assert_eq!(v["stream_options"], json!({"include_usage": true}));
}

#[test]
fn url_images_and_unknown_parts() {
    let (v, _) = to(
        Protocol::Anthropic,
        Protocol::OpenAi,
        json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]}),
    );
    assert_eq!(
        v["messages"][0]["content"][0],
        json!({"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}})
    );
    let e = decode_request(
        Protocol::OpenAi,
        br#"{"model":"m","messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{}}]}]}"#,
    )
    .err()
    .unwrap();
    assert!(e.message.contains("input_audio"), "{}", e.message);
}

#[test]
fn anthropic_thinking_is_left_out_where_anthropic_would_refuse_it() {
    let base = |extra: Value| {
        let mut v = json!({"model": "m", "reasoning_effort": "low", "top_p": 0.5,
            "messages": [{"role": "user", "content": "hi"}]});
        for (k, val) in extra.as_object().unwrap() {
            v[k] = val.clone();
        }
        to_version(Protocol::Anthropic, Protocol::OpenAi, v, "2023-06-01")
    };
    let (v, dropped) = base(json!({}));
    assert_eq!(v["thinking"]["type"], "enabled");
    assert!(
        v.get("top_p").is_none(),
        "top_p below 0.95 is refused with thinking"
    );
    assert_eq!(dropped.0, vec!["top_p"]);
    let tools =
        json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]);
    let (v, dropped) = base(json!({"tools": tools, "tool_choice": "required"}));
    assert!(
        v.get("thinking").is_none(),
        "forced tool use and thinking do not mix"
    );
    assert_eq!(v["top_p"], 0.5);
    assert_eq!(dropped.0, vec!["reasoning"]);
    // Mid tool loop, the calling turn has no signed thinking (another provider wrote it).
    let (v, _) = base(json!({"tools": tools, "messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "ok"}]}));
    assert!(v.get("thinking").is_none());
}

#[test]
fn a_streamed_gemini_call_signature_stays_with_its_call() {
    let stream = concat!(
        "data: {\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\"Let me look.\",\"thought\":true}]},\"index\":0}],\"responseId\":\"r1\"}\n\n",
        "data: {\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"functionCall\":{\"name\":\"ls\",\"args\":{}},\"thoughtSignature\":\"SIG1\"}]},\"finishReason\":\"STOP\",\"index\":0}],\"responseId\":\"r1\"}\n\n",
    );
    let run = |client: Protocol| {
        let mut t =
            ResponseTranslator::stream(Protocol::Gemini, client, "pub", false, true).unwrap();
        let out = t
            .feed(Some(Bytes::from_static(stream.as_bytes())), true)
            .unwrap();
        String::from_utf8(out.to_vec()).unwrap()
    };
    let datas = |text: &str| -> Vec<Value> {
        text.lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .map(|d| serde_json::from_str(d).unwrap())
            .collect()
    };
    let responses = datas(&run(Protocol::Responses));
    let done = responses.last().unwrap();
    assert_eq!(done["type"], "response.completed");
    let output = done["response"]["output"].as_array().unwrap();
    assert_eq!(output.len(), 3, "{done}");
    assert!(
        output[0].get("encrypted_content").is_none(),
        "the thought text has no signature"
    );
    assert_eq!(output[1]["encrypted_content"], "modelgate-sig:gemini:SIG1");
    assert_eq!(output[2]["type"], "function_call");
    // Replayed, the signature goes back on the call, not on the thought.
    let mut items = vec![json!({"role": "user", "content": "list"})];
    items.extend(output.iter().cloned());
    items.push(
        json!({"type": "function_call_output", "call_id": output[2]["call_id"], "output": "a.txt"}),
    );
    let req = decode_request(
        Protocol::Responses,
        json!({"model": "m", "input": items}).to_string().as_bytes(),
    )
    .unwrap();
    let p = encode_request(
        &req,
        Protocol::Gemini,
        "gemini-3-pro-preview",
        4096,
        anthropic::DEFAULT_VERSION,
    )
    .unwrap();
    let v: Value = serde_json::from_slice(&p.body).unwrap();
    assert_eq!(
        v["contents"][1]["parts"],
        json!([{"functionCall": {"name": "ls", "args": {}}, "thoughtSignature": "SIG1"}]),
        "{v}"
    );

    let anthropic = datas(&run(Protocol::Anthropic));
    let blocks: Vec<&Value> = anthropic
        .iter()
        .filter(|d| d["type"] == "content_block_start")
        .map(|d| &d["content_block"])
        .collect();
    assert_eq!(blocks.len(), 3);
    let sigs: Vec<&Value> = anthropic
        .iter()
        .filter(|d| d["delta"]["type"] == "signature_delta")
        .map(|d| &d["delta"]["signature"])
        .collect();
    assert_eq!(sigs, [&json!(""), &json!("gemini:SIG1")]);
}

#[test]
fn passthrough_bodies_lose_only_the_signatures_their_provider_would_refuse() {
    let claude = json!({"model": "claude", "max_tokens": 100, "thinking": {"type": "adaptive"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "", "signature": "gemini:SIG"},
                {"type": "tool_use", "id": "t1", "name": "ls", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "a"}]}]});
    let v = strip_relayed_signatures(Protocol::Anthropic, claude.to_string().as_bytes()).unwrap();
    assert_eq!(v["messages"][1]["content"].as_array().unwrap().len(), 1);
    assert!(
        v.get("thinking").is_none(),
        "the calling turn has no thinking left"
    );
    assert_eq!(v["context_management"]["edits"], json!([]));
    // Anthropic's own signatures, and bodies without any relayed one, are left alone.
    let own = json!({"model": "claude", "messages": [{"role": "assistant", "content": [
        {"type": "thinking", "thinking": "x", "signature": "EqQBCg"}]}]});
    assert!(strip_relayed_signatures(Protocol::Anthropic, own.to_string().as_bytes()).is_none());
    let codex = json!({"model": "gpt-5", "input": [
        {"role": "user", "content": "hi"},
        {"type": "reasoning", "summary": [], "encrypted_content": "modelgate-sig:EqQBCg"},
        {"type": "reasoning", "summary": [], "encrypted_content": "gAAAAB-openai-own"}]});
    let v = strip_relayed_signatures(Protocol::Responses, codex.to_string().as_bytes()).unwrap();
    assert_eq!(v["input"].as_array().unwrap().len(), 2);
    assert_eq!(v["input"][1]["encrypted_content"], "gAAAAB-openai-own");
    let gemini = json!({"contents": [{"role": "model", "parts": [
        {"text": "thought", "thought": true},
        {"text": "", "thought": true, "thoughtSignature": "modelgate-sig:EqQBCg"},
        {"functionCall": {"name": "ls", "args": {}}, "thoughtSignature": "gemini-own"}]}]});
    let v = strip_relayed_signatures(Protocol::Gemini, gemini.to_string().as_bytes()).unwrap();
    assert_eq!(
        v["contents"][0]["parts"],
        json!([{"text": "thought", "thought": true},
               {"functionCall": {"name": "ls", "args": {}}, "thoughtSignature": "gemini-own"}])
    );
}

#[test]
fn anthropic_thinking_relayed_through_a_gemini_client_comes_back_whole() {
    // Gemini CLI on an Anthropic model: the streamed thinking reaches it as pieces plus a
    // signature part, and its replay must give Anthropic the thinking it signed.
    let history = json!({"contents": [
        {"role": "user", "parts": [{"text": "hi"}]},
        {"role": "model", "parts": [
            {"text": "Let me ", "thought": true},
            {"text": "think.", "thought": true},
            {"text": "", "thought": true, "thoughtSignature": "modelgate-sig:EqQBCg"},
            {"functionCall": {"name": "ls", "args": {}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "ls", "response": {"result": "a"}}}]}],
        "generationConfig": {"thinkingConfig": {"includeThoughts": true, "thinkingBudget": 2048}}});
    let (v, _) = to(Protocol::Anthropic, Protocol::Gemini, history);
    assert_eq!(
        v["messages"][1]["content"][0],
        json!({"type": "thinking", "thinking": "Let me think.", "signature": "EqQBCg"})
    );
    assert_eq!(
        v["thinking"]["type"], "enabled",
        "signed: thinking stays on"
    );
}

#[test]
fn tool_names_a_provider_refuses_are_renamed_and_renamed_back() {
    let long =
        "mcp__claude-in-chrome__read_the_whole_page_content_including_frames_and_shadow_roots";
    assert!(long.len() > 64);
    let body = json!({"model": "m", "max_tokens": 100,
        "tools": [{"name": long, "input_schema": {"type": "object"}},
                  {"name": "Bash", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "tool", "name": long},
        "messages": [{"role": "user", "content": "read it"},
                     {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": long, "input": {}}]},
                     {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "page"}]}]});
    let req = decode_request(Protocol::Anthropic, body.to_string().as_bytes()).unwrap();
    let p = encode_request(
        &req,
        Protocol::OpenAi,
        "gpt-4o",
        4096,
        anthropic::DEFAULT_VERSION,
    )
    .unwrap();
    let v: Value = serde_json::from_slice(&p.body).unwrap();
    let sent = v["tools"][0]["function"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        sent.len() <= 64 && sent.starts_with("mcp__claude-in-chrome__read"),
        "{sent}"
    );
    assert_eq!(
        v["tools"][1]["function"]["name"], "Bash",
        "valid names are kept"
    );
    assert_eq!(v["tool_choice"]["function"]["name"], sent.as_str());
    assert_eq!(
        v["messages"][1]["tool_calls"][0]["function"]["name"],
        sent.as_str()
    );
    assert_eq!(p.tool_names.client_name(&sent), Some(long));

    // The provider calls the tool by the name it knows; the client gets its own name back.
    let answer = json!({"id": "c", "object": "chat.completion", "created": 1, "model": "gpt-4o",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": null,
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": sent, "arguments": "{}"}}]}}]});
    let mut t = ResponseTranslator::json(Protocol::OpenAi, Protocol::Anthropic, "pub")
        .with_tool_names(&p.tool_names);
    let out: Value =
        serde_json::from_slice(&t.feed(Some(Bytes::from(answer.to_string())), true).unwrap())
            .unwrap();
    assert_eq!(out["content"][0]["name"], long);
    let chunk = json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o",
        "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
            "function": {"name": sent, "arguments": "{}"}}]}, "finish_reason": null}]});
    let sse = format!("data: {chunk}\n\ndata: [DONE]\n\n");
    let mut t =
        ResponseTranslator::stream(Protocol::OpenAi, Protocol::Anthropic, "pub", false, true)
            .unwrap()
            .with_tool_names(&p.tool_names);
    let out = t.feed(Some(Bytes::from(sse)), true).unwrap();
    let text = String::from_utf8(out.to_vec()).unwrap();
    assert!(text.contains(&format!("\"name\":\"{long}\"")), "{text}");
    assert!(!text.contains(&sent), "{text}");

    // Gemini wants a letter or underscore first, and allows dots.
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
        "tools": [{"type": "function", "function": {"name": "9lives", "parameters": {"type": "object"}}},
                  {"type": "function", "function": {"name": "fs.read", "parameters": {"type": "object"}}}]});
    let req = decode_request(Protocol::OpenAi, body.to_string().as_bytes()).unwrap();
    let p = encode_request(
        &req,
        Protocol::Gemini,
        "gemini-2.5-pro",
        4096,
        anthropic::DEFAULT_VERSION,
    )
    .unwrap();
    let v: Value = serde_json::from_slice(&p.body).unwrap();
    let decls = &v["tools"][0]["functionDeclarations"];
    assert!(decls[0]["name"].as_str().unwrap().starts_with("t_9lives_"));
    assert_eq!(decls[1]["name"], "fs.read");
}

#[test]
fn gemini_media_other_than_images_is_refused_clearly() {
    let body = json!({"contents": [{"role": "user", "parts": [
        {"text": "summarize"}, {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0="}}]}]});
    let e = decode_request(Protocol::Gemini, body.to_string().as_bytes()).unwrap_err();
    assert!(e.message.contains("application/pdf"), "{}", e.message);
    let body = json!({"contents": [{"role": "user", "parts": [
        {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/cat.jpg"}}]}]});
    let req = decode_request(Protocol::Gemini, body.to_string().as_bytes()).unwrap();
    assert_eq!(
        req.messages[0].parts[0],
        Part::Image(Image::Url("https://example.com/cat.jpg".into()))
    );
}

#[test]
fn the_responses_client_state_shapes_its_answer() {
    let body = json!({"model": "m", "input": "hi", "temperature": 0.3,
                      "tools": [{"type": "custom", "name": "apply_patch"}]});
    let decoded = decode(Protocol::Responses, body.to_string().as_bytes()).unwrap();
    assert_ne!(decoded.client, ClientState::None);
    let provider = br#"{"id":"x","choices":[{"index":0,"finish_reason":"tool_calls","message":{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"apply_patch","arguments":"{\"input\":\"diff\"}"}}]}}]}"#;
    let mut t = ResponseTranslator::json(Protocol::OpenAi, Protocol::Responses, "pub")
        .with_client_state(&decoded.client);
    let out = t.feed(Some(Bytes::from_static(provider)), true).unwrap();
    let answer: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(answer["output"][0]["type"], "custom_tool_call");
    assert_eq!(answer["temperature"], 0.3);
}

#[test]
fn a_streamed_thinking_block_from_gemini_starts_with_a_signature_field() {
    // The SDKs' ThinkingBlock requires `signature`, as Anthropic's own stream sends it.
    let stream = concat!(
        "data: {\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\"Pondering.\",\"thought\":true}]},\"index\":0}],\"responseId\":\"r1\"}\n\n",
        "data: {\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\"Done.\"}]},\"finishReason\":\"STOP\",\"index\":0}],\"responseId\":\"r1\"}\n\n",
    );
    let mut t = ResponseTranslator::stream(Protocol::Gemini, Protocol::Anthropic, "m", false, true)
        .unwrap();
    let out = t
        .feed(Some(Bytes::from_static(stream.as_bytes())), true)
        .unwrap();
    let text = String::from_utf8_lossy(&out);
    let start = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .find(|v| v["type"] == "content_block_start" && v["content_block"]["type"] == "thinking")
        .unwrap_or_else(|| panic!("no thinking block in {text}"));
    assert_eq!(
        start["content_block"],
        json!({"type": "thinking", "thinking": "", "signature": ""})
    );
}

#[test]
fn strict_function_tools_keep_strict_on_chat_and_say_so_elsewhere() {
    let body = json!({"model": "m", "input": "hi", "tools": [{"type": "function", "name": "f", "strict": true,
        "parameters": {"type": "object", "properties": {}, "additionalProperties": false}}]});
    let (v, dropped) = to(Protocol::OpenAi, Protocol::Responses, body.clone());
    assert_eq!(v["tools"][0]["function"]["strict"], true);
    assert!(!dropped.0.contains(&"tools[].strict".to_string()));
    for provider in [Protocol::Anthropic, Protocol::Gemini] {
        let (_, dropped) = to(provider, Protocol::Responses, body.clone());
        assert!(
            dropped.0.contains(&"tools[].strict".to_string()),
            "{provider:?}: {dropped:?}"
        );
    }
}

#[test]
fn a_clients_max_tokens_is_kept_and_the_thinking_budget_fits_under_it() {
    let ask = |extra: Value| {
        let mut v = json!({"model": "m", "reasoning_effort": "high", "messages": [{"role": "user", "content": "hi"}]});
        for (k, val) in extra.as_object().unwrap() {
            v[k] = val.clone();
        }
        let req = decode_request(Protocol::OpenAi, v.to_string().as_bytes()).unwrap();
        encode_request(
            &req,
            Protocol::Anthropic,
            "t",
            4096,
            anthropic::DEFAULT_VERSION,
        )
        .map(|p| serde_json::from_slice::<Value>(&p.body).unwrap())
    };
    let v = ask(json!({"max_tokens": 3000})).unwrap();
    assert_eq!(v["max_tokens"], 3000, "the client's limit");
    assert_eq!(v["thinking"]["budget_tokens"], 2999);
    let v = ask(json!({})).unwrap();
    assert!(v["max_tokens"].as_u64().unwrap() > v["thinking"]["budget_tokens"].as_u64().unwrap());
    let e = ask(json!({"max_tokens": 1000})).unwrap_err();
    assert_eq!(e.param, Some("max_tokens"));
    assert!(e.message.contains("1024"), "{}", e.message);
}
