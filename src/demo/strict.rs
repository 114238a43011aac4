//! The demo provider's request checks: the rules the real APIs enforce and that a gateway
//! translating between them can break (unknown fields, roles, tool-call pairing, thinking
//! constraints, Gemini's schema subset). A request that breaks one is answered 400 with the
//! API's own kind of message, so the end-to-end tests through the demo prove something.

use serde_json::Value;

/// Checks the keys of `obj` against `allowed`; `what` names the object in the message.
fn known_keys(
    obj: &Value,
    allowed: &[&str],
    what: &str,
    message: impl Fn(&str, &str) -> String,
) -> Result<(), String> {
    for k in obj.as_object().into_iter().flat_map(|o| o.keys()) {
        if !allowed.contains(&k.as_str()) {
            return Err(message(k, what));
        }
    }
    Ok(())
}

const OPENAI_CHAT_FIELDS: &[&str] = &[
    "model",
    "messages",
    "audio",
    "frequency_penalty",
    "function_call",
    "functions",
    "logit_bias",
    "logprobs",
    "max_completion_tokens",
    "max_tokens",
    "metadata",
    "modalities",
    "n",
    "parallel_tool_calls",
    "prediction",
    "presence_penalty",
    "prompt_cache_key",
    "reasoning_effort",
    "response_format",
    "safety_identifier",
    "seed",
    "service_tier",
    "stop",
    "store",
    "stream",
    "stream_options",
    "temperature",
    "tool_choice",
    "tools",
    "top_logprobs",
    "top_p",
    "user",
    "verbosity",
    "web_search_options",
];

/// OpenAI Chat Completions, for a non-reasoning model (the demo's).
pub fn openai_chat(req: &Value) -> Result<(), String> {
    known_keys(req, OPENAI_CHAT_FIELDS, "", |k, _| {
        format!("Unrecognized request argument supplied: {k}")
    })?;
    if req.get("reasoning_effort").is_some() {
        return Err(
            "Unsupported parameter: 'reasoning_effort' is not supported with this model.".into(),
        );
    }
    if req.get("stream_options").is_some() && req["stream"] != true {
        return Err(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.".into(),
        );
    }
    let messages = req["messages"]
        .as_array()
        .ok_or("Missing required parameter: 'messages'.")?;
    // Tool calls not yet answered, by id.
    let mut open: Vec<String> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let role = m["role"].as_str().unwrap_or_default();
        if role != "tool" && !open.is_empty() {
            return Err(format!("An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. The following tool_call_ids did not have response messages: {}", open.join(", ")));
        }
        match role {
            "system" | "developer" | "user" => {}
            "assistant" => {
                for c in m["tool_calls"].as_array().into_iter().flatten() {
                    open.push(c["id"].as_str().unwrap_or_default().to_string());
                }
            }
            "tool" => {
                let id = m["tool_call_id"].as_str().unwrap_or_default();
                match open.iter().position(|o| o == id) {
                    Some(k) => {
                        open.remove(k);
                    }
                    None => return Err(format!("Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls' (messages[{i}]).")),
                }
            }
            other => {
                return Err(format!(
                    "Invalid value: '{other}'. Supported values are: 'system', 'assistant', 'user', 'tool', 'function' and 'developer'. (messages[{i}].role)"
                ))
            }
        }
    }
    for (j, t) in req["tools"].as_array().into_iter().flatten().enumerate() {
        let name = t["function"]["name"].as_str().unwrap_or_default();
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if t["type"] != "function" || !valid {
            return Err(format!(
                "Invalid 'tools[{j}].function.name': string does not match pattern '^[a-zA-Z0-9_-]{{1,64}}$'."
            ));
        }
    }
    Ok(())
}

const ANTHROPIC_FIELDS: &[&str] = &[
    "model",
    "messages",
    "max_tokens",
    "system",
    "metadata",
    "stop_sequences",
    "stream",
    "temperature",
    "top_p",
    "top_k",
    "tools",
    "tool_choice",
    "thinking",
    "service_tier",
    "container",
    "mcp_servers",
    "context_management",
    "output_config",
];

/// Anthropic Messages. `signed` tells whether a thinking signature is one this provider
/// issued.
// Long on purpose: the Messages API's request rules checked in the order the API does.
pub fn anthropic(req: &Value, signed: impl Fn(&str) -> bool) -> Result<(), String> {
    known_keys(req, ANTHROPIC_FIELDS, "", |k, _| {
        format!("{k}: Extra inputs are not permitted")
    })?;
    let max_tokens = req["max_tokens"]
        .as_u64()
        .ok_or("max_tokens: Field required")?;
    let thinking = &req["thinking"];
    let thinking_on = thinking["type"] == "enabled" || thinking["type"] == "adaptive";
    if thinking["type"] == "enabled" {
        let budget = thinking["budget_tokens"].as_u64().unwrap_or(0);
        if budget < 1024 {
            return Err(
                "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
                    .into(),
            );
        }
        if budget >= max_tokens {
            return Err("`max_tokens` must be greater than `thinking.budget_tokens`.".into());
        }
    }
    if thinking_on {
        if req["temperature"].as_f64().is_some_and(|t| t != 1.0) {
            return Err("`temperature` may only be set to 1 when thinking is enabled.".into());
        }
        if req.get("top_k").is_some() {
            return Err("`top_k` is not supported when thinking is enabled.".into());
        }
        if req["top_p"].as_f64().is_some_and(|p| p < 0.95) {
            return Err(
                "`top_p` must be greater than or equal to 0.95 or unset when thinking is enabled."
                    .into(),
            );
        }
        let forced = req["tool_choice"]["type"] == "any" || req["tool_choice"]["type"] == "tool";
        if forced {
            return Err("Thinking may not be enabled when tool_choice forces tool use.".into());
        }
    }
    if req["temperature"]
        .as_f64()
        .is_some_and(|t| !(0.0..=1.0).contains(&t))
    {
        return Err("temperature: Input should be less than or equal to 1".into());
    }
    let messages = req["messages"]
        .as_array()
        .ok_or("messages: Field required")?;
    // tool_use ids of the previous assistant message, each needing a tool_result next.
    let mut open: Vec<String> = Vec::new();
    let mut last_assistant_starts_with_thinking = true;
    let mut last_assistant_has_tool_use = false;
    for (i, m) in messages.iter().enumerate() {
        let blocks: Vec<Value> = match &m["content"] {
            Value::String(s) => vec![serde_json::json!({"type": "text", "text": s})],
            Value::Array(b) => b.clone(),
            _ => {
                return Err(format!(
                    "messages.{i}.content: Input should be a valid list"
                ))
            }
        };
        match m["role"].as_str() {
            Some("user") => {
                let results: Vec<&str> = blocks
                    .iter()
                    .filter(|b| b["type"] == "tool_result")
                    .map(|b| b["tool_use_id"].as_str().unwrap_or_default())
                    .collect();
                for r in &results {
                    if !open.iter().any(|o| o == r) {
                        return Err(format!("messages.{i}.content: unexpected `tool_use_id` found in `tool_result` blocks: {r}. Each `tool_result` block must have a corresponding `tool_use` block in the previous message."));
                    }
                }
                if let Some(missing) = open.iter().find(|o| !results.contains(&o.as_str())) {
                    return Err(format!("messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after: {missing}. Each `tool_use` block must have a corresponding `tool_result` block in the next message."));
                }
                open.clear();
            }
            Some("assistant") => {
                if !open.is_empty() {
                    return Err(format!("messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after: {}.", open.join(", ")));
                }
                for (j, b) in blocks.iter().enumerate() {
                    match b["type"].as_str() {
                        Some("tool_use") => {
                            open.push(b["id"].as_str().unwrap_or_default().to_string())
                        }
                        Some("thinking")
                            if !signed(b["signature"].as_str().unwrap_or_default()) =>
                        {
                            return Err(format!(
                                "messages.{i}.content.{j}: Invalid `signature` in `thinking` block"
                            ));
                        }
                        _ => {}
                    }
                }
                last_assistant_starts_with_thinking = blocks
                    .first()
                    .is_some_and(|b| b["type"] == "thinking" || b["type"] == "redacted_thinking");
                last_assistant_has_tool_use = !open.is_empty();
            }
            // Claude Code 2.1 (observed through the client suite) sends its environment
            // block as a system message among the messages; the API it targets takes them.
            Some("system") => {}
            _ => {
                return Err(format!(
                    "messages.{i}.role: Input should be 'user' or 'assistant'"
                ))
            }
        }
    }
    if thinking_on && last_assistant_has_tool_use && !last_assistant_starts_with_thinking {
        return Err("messages: When `thinking` is enabled, a final `assistant` message must start with a thinking block (preceding the lastmost set of `tool_use` and `tool_result` blocks).".into());
    }
    for (j, t) in req["tools"].as_array().into_iter().flatten().enumerate() {
        let is_custom = t.get("type").is_none() || t["type"] == "custom";
        if is_custom && t["input_schema"]["type"] != "object" {
            return Err(format!(
                "tools.{j}.custom.input_schema.type: Input should be 'object'"
            ));
        }
    }
    Ok(())
}

const GEMINI_FIELDS: &[&str] = &[
    "contents",
    "tools",
    "toolConfig",
    "safetySettings",
    "systemInstruction",
    "generationConfig",
    "cachedContent",
];

const GEMINI_GENERATION_FIELDS: &[&str] = &[
    "stopSequences",
    "responseMimeType",
    "responseSchema",
    "responseJsonSchema",
    "responseModalities",
    "candidateCount",
    "maxOutputTokens",
    "temperature",
    "topP",
    "topK",
    "seed",
    "presencePenalty",
    "frequencyPenalty",
    "responseLogprobs",
    "logprobs",
    "enableEnhancedCivicAnswers",
    "speechConfig",
    "thinkingConfig",
    "mediaResolution",
    "imageConfig",
];

/// The fields of Gemini's `Schema` (an OpenAPI subset), the only ones `parameters` takes.
/// Written out here again rather than shared with the translator's list on purpose: the
/// mock must not inherit a mistake of the code it checks.
const GEMINI_SCHEMA_FIELDS: &[&str] = &[
    "type",
    "format",
    "title",
    "description",
    "nullable",
    "enum",
    "maxItems",
    "minItems",
    "properties",
    "required",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "pattern",
    "example",
    "anyOf",
    "propertyOrdering",
    "default",
    "items",
    "minimum",
    "maximum",
];

fn unknown_name(k: &str, at: &str) -> String {
    format!("Invalid JSON payload received. Unknown name \"{k}\" at '{at}': Cannot find field.")
}

fn gemini_schema(schema: &Value, at: &str) -> Result<(), String> {
    known_keys(schema, GEMINI_SCHEMA_FIELDS, at, unknown_name)?;
    if let Some(props) = schema["properties"].as_object() {
        for (name, p) in props {
            gemini_schema(p, &format!("{at}.properties[{name}].value"))?;
        }
    }
    if schema.get("items").is_some() {
        gemini_schema(&schema["items"], &format!("{at}.items"))?;
    }
    for (i, s) in schema["anyOf"].as_array().into_iter().flatten().enumerate() {
        gemini_schema(s, &format!("{at}.any_of[{i}]"))?;
    }
    Ok(())
}

/// Gemini generateContent.
pub fn gemini(req: &Value) -> Result<(), String> {
    known_keys(req, GEMINI_FIELDS, "", |k, _| unknown_name(k, ""))?;
    let g = &req["generationConfig"];
    known_keys(
        g,
        GEMINI_GENERATION_FIELDS,
        "generation_config",
        unknown_name,
    )?;
    known_keys(
        &g["thinkingConfig"],
        &["includeThoughts", "thinkingBudget", "thinkingLevel"],
        "generation_config.thinking_config",
        unknown_name,
    )?;
    let contents = req["contents"]
        .as_array()
        .ok_or("* GenerateContentRequest.contents: contents is not specified")?;
    for (i, c) in contents.iter().enumerate() {
        match c["role"].as_str() {
            None | Some("user") | Some("model") => {}
            Some(other) => {
                return Err(format!(
                    "Please use a valid role: user, model. (contents[{i}].role = {other:?})"
                ))
            }
        }
        for (j, p) in c["parts"].as_array().into_iter().flatten().enumerate() {
            let data = [
                "text",
                "inlineData",
                "fileData",
                "functionCall",
                "functionResponse",
                "executableCode",
                "codeExecutionResult",
            ]
            .iter()
            .filter(|k| p.get(**k).is_some())
            .count();
            if data != 1 {
                return Err(format!("Invalid value at 'contents[{i}].parts[{j}]': a part must hold exactly one kind of data"));
            }
        }
    }
    for (t, tool) in req["tools"].as_array().into_iter().flatten().enumerate() {
        for (d, decl) in tool["functionDeclarations"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            let at = format!("tools[{t}].function_declarations[{d}]");
            let name = decl["name"].as_str().unwrap_or_default();
            let valid = name.len() <= 64
                && name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.:-".contains(c));
            if !valid {
                return Err(format!("Invalid function name at '{at}.name': must start with a letter or an underscore, contain only a-z, A-Z, 0-9, underscores, dots, colons and dashes, at most 64 characters"));
            }
            if decl.get("parameters").is_some() && decl.get("parametersJsonSchema").is_some() {
                return Err(format!(
                    "{at}: parameters and parameters_json_schema cannot both be set"
                ));
            }
            if let Some(p) = decl.get("parameters") {
                gemini_schema(p, &format!("{at}.parameters"))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_protocol_refuses_what_its_api_refuses() {
        assert!(
            openai_chat(&json!({"model": "m", "messages": [], "thinking": {}}))
                .unwrap_err()
                .contains("Unrecognized request argument supplied: thinking")
        );
        let unanswered = json!({"model": "m", "messages": [
            {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "user", "content": "next"}]});
        assert!(openai_chat(&unanswered).is_err());
        let signed = |s: &str| s.starts_with("demo-sig");
        assert!(anthropic(&json!({"model": "m", "messages": []}), signed)
            .unwrap_err()
            .contains("max_tokens"));
        let thinking_without_block = json!({"model": "m", "max_tokens": 5000,
            "thinking": {"type": "enabled", "budget_tokens": 2000},
            "messages": [{"role": "user", "content": "x"},
                         {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
                         {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}]}]});
        assert!(anthropic(&thinking_without_block, signed)
            .unwrap_err()
            .contains("must start with a thinking block"));
        let bad_schema = json!({"contents": [{"role": "user", "parts": [{"text": "x"}]}],
            "tools": [{"functionDeclarations": [{"name": "f", "parameters": {"type": "object", "additionalProperties": false}}]}]});
        assert!(gemini(&bad_schema)
            .unwrap_err()
            .contains("Unknown name \"additionalProperties\""));
        let fine = json!({"contents": [{"role": "user", "parts": [{"text": "x"}]}],
            "tools": [{"functionDeclarations": [{"name": "f", "parametersJsonSchema": {"type": "object", "additionalProperties": false}}]}]});
        assert!(gemini(&fine).is_ok());
    }
}
