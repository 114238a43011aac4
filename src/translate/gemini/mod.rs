//! Gemini generateContent, as a client and as a provider. Field names follow
//! ai.google.dev/api/generate-content (REST, camelCase). Gemini function calls may carry
//! no id: ids are synthesised from their position in the conversation, so the same history
//! always yields the same ids, and function responses are matched back by name.

mod request;
mod response;
mod stream;
pub mod wire;

use serde_json::Value;

use super::codec::{
    ClientCodec, ClientState, Codecs, Decoded, Envelope, ProviderCodec, StreamDecode, StreamEncode,
};
use super::model::{ChatRequest, ChatResponse};
use super::{Dropped, TranslateError};

pub use request::lowercase_types;

pub struct Gemini;

pub static CODECS: Codecs = Codecs {
    client: &Gemini,
    provider: Some(&Gemini),
    wire: &Gemini,
};

impl ClientCodec for Gemini {
    /// Gemini says "stream" in the path, not the body: the caller sets it.
    fn decode_request(&self, v: &Value) -> Result<Decoded, TranslateError> {
        request::decode_request(v, false).map(Decoded::from)
    }

    fn token_count_request<'a>(&self, v: &'a Value) -> &'a Value {
        v.get("generateContentRequest").unwrap_or(v)
    }

    fn encode_response(&self, r: &ChatResponse, env: &Envelope, _: &ClientState) -> Value {
        response::encode_response(r, &env.model)
    }

    fn stream_encoder(&self, env: Envelope, _: &ClientState) -> Box<dyn StreamEncode> {
        Box::new(stream::StreamEncoder::new(env))
    }
}

impl ProviderCodec for Gemini {
    fn encode_request(
        &self,
        req: &ChatRequest,
        model: &str,
        _default_max_tokens: u64,
        dropped: &mut Dropped,
    ) -> Result<(Value, String), TranslateError> {
        let action = if req.stream {
            "streamGenerateContent?alt=sse"
        } else {
            "generateContent"
        };
        let body = request::encode_request(req, model, dropped)?;
        Ok((body, format!("/v1beta/models/{model}:{action}")))
    }

    fn decode_response(&self, v: &Value) -> Result<ChatResponse, TranslateError> {
        response::decode_response(v)
    }

    fn stream_decoder(&self) -> Box<dyn StreamDecode> {
        Box::<stream::StreamDecoder>::default()
    }

    fn wire_tool_name(&self, name: &str) -> Option<String> {
        wire::wire_tool_name(name)
    }
}

#[cfg(test)]
mod tests;
