//! Gemini generateContent, as a client and as a provider. Field names follow
//! ai.google.dev/api/generate-content (REST, camelCase). Gemini function calls may carry
//! no id: ids are synthesised from their position in the conversation, so the same history
//! always yields the same ids, and function responses are matched back by name.

mod request;
mod response;
mod stream;
pub mod wire;

use bytes::Bytes;
use serde_json::Value;

use super::codec::{
    ClientCodec, ClientState, Codecs, Decoded, Envelope, ProviderCodec, RequestPeek, ResponseFacts,
    StreamDecode, StreamEncode, Wire,
};
use super::model::{ChatRequest, ChatResponse};
use super::{Dropped, TranslateError};
use crate::errors::GatewayError;

pub use request::{gemini_schema, lowercase_types};

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

impl Wire for Gemini {
    fn peek_request(&self, body: &[u8]) -> Result<RequestPeek, String> {
        wire::peek_request(body)
    }

    fn peek_response(&self, json: &[u8]) -> Option<ResponseFacts> {
        wire::peek_response(json)
    }

    fn stream_error(&self, err: &GatewayError, json_array: bool) -> Bytes {
        wire::stream_error(err, json_array)
    }

    fn strip_relayed_signatures(&self, body: &[u8]) -> Option<Value> {
        wire::strip_relayed_signatures(body)
    }
}

#[cfg(test)]
mod tests;
