//! Token usage objects of responses that pass through untranslated, in any protocol's
//! shape (the relay finds them; see `proxy/relay.rs`).

use serde_json::Value;

use crate::translate::model::Usage;

/// Usage from one usage object's JSON text, whichever protocol wrote it: OpenAI
/// (`prompt_tokens`), OpenAI Responses and Anthropic (`input_tokens`, with Anthropic's
/// cache counts apart), Gemini (`promptTokenCount`).
pub fn from_usage_json(json: &str) -> Option<Usage> {
    let v: Value = serde_json::from_str(json).ok()?;
    from_usage_object(&v)
}

fn from_usage_object(u: &Value) -> Option<Usage> {
    let n = |k: &str| u[k].as_u64();
    if let Some(p) = n("prompt_tokens") {
        return Some(Usage {
            prompt_tokens: p,
            completion_tokens: n("completion_tokens").unwrap_or(0),
            cached_tokens: u["prompt_tokens_details"]["cached_tokens"].as_u64(),
            reasoning_tokens: u["completion_tokens_details"]["reasoning_tokens"].as_u64(),
        });
    }
    if let Some(p) = n("promptTokenCount") {
        return Some(Usage {
            prompt_tokens: p,
            completion_tokens: n("candidatesTokenCount").unwrap_or(0)
                + n("thoughtsTokenCount").unwrap_or(0),
            cached_tokens: n("cachedContentTokenCount"),
            reasoning_tokens: n("thoughtsTokenCount"),
        });
    }
    let input = n("input_tokens");
    let output = n("output_tokens");
    if input.is_none() && output.is_none() {
        return None;
    }
    let read = n("cache_read_input_tokens");
    Some(Usage {
        prompt_tokens: input.unwrap_or(0)
            + read.unwrap_or(0)
            + n("cache_creation_input_tokens").unwrap_or(0),
        completion_tokens: output.unwrap_or(0),
        cached_tokens: read.or_else(|| u["input_tokens_details"]["cached_tokens"].as_u64()),
        reasoning_tokens: u["output_tokens_details"]["reasoning_tokens"].as_u64(),
    })
}

/// Keeps the largest value seen for each count: streams report partial, then cumulative
/// numbers (Anthropic: input at the start, output at the end).
pub fn merge(acc: &mut Option<Usage>, u: Usage) {
    let a = acc.get_or_insert_with(Usage::default);
    a.prompt_tokens = a.prompt_tokens.max(u.prompt_tokens);
    a.completion_tokens = a.completion_tokens.max(u.completion_tokens);
    a.cached_tokens = a.cached_tokens.max(u.cached_tokens);
    a.reasoning_tokens = a.reasoning_tokens.max(u.reasoning_tokens);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_protocols_usage_is_read() {
        let openai = r#"{"prompt_tokens": 9, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": 2}, "completion_tokens_details": {"reasoning_tokens": 1}}"#;
        assert_eq!(
            from_usage_json(openai).unwrap(),
            Usage {
                prompt_tokens: 9,
                completion_tokens: 3,
                cached_tokens: Some(2),
                reasoning_tokens: Some(1)
            }
        );
        let anthropic = r#"{"input_tokens": 5, "output_tokens": 7, "cache_read_input_tokens": 10, "cache_creation_input_tokens": 1}"#;
        assert_eq!(from_usage_json(anthropic).unwrap().prompt_tokens, 16);
        // Anthropic's message_delta carries only the output count.
        assert_eq!(
            from_usage_json(r#"{"output_tokens": 15}"#)
                .unwrap()
                .completion_tokens,
            15
        );
        let gemini =
            r#"{"promptTokenCount": 4, "candidatesTokenCount": 6, "thoughtsTokenCount": 2}"#;
        let g = from_usage_json(gemini).unwrap();
        assert_eq!((g.completion_tokens, g.reasoning_tokens), (8, Some(2)));
        let responses = r#"{"input_tokens": 3, "output_tokens": 4, "output_tokens_details": {"reasoning_tokens": 2}}"#;
        assert_eq!(
            from_usage_json(responses).unwrap().reasoning_tokens,
            Some(2)
        );
        assert!(from_usage_json(r#"{"total": 3}"#).is_none());
        assert!(from_usage_json("null").is_none());
    }
}
