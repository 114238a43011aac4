//! Anthropic Messages, as a client and as a provider. Field names follow
//! docs.anthropic.com/en/api/messages and /en/docs/build-with-claude/streaming.

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

/// Used when a client protocol without a required `max_tokens` reaches an Anthropic target
/// and the model sets no `max_output_tokens`.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

pub struct Anthropic;

pub static CODECS: Codecs = Codecs {
    client: &Anthropic,
    provider: Some(&Anthropic),
    wire: &Anthropic,
};

impl ClientCodec for Anthropic {
    fn decode_request(&self, v: &Value) -> Result<Decoded, TranslateError> {
        request::decode_request(v).map(Decoded::from)
    }

    fn encode_response(&self, r: &ChatResponse, env: &Envelope, _: &ClientState) -> Value {
        response::encode_response(r, &env.model)
    }

    fn stream_encoder(&self, env: Envelope, _: &ClientState) -> Box<dyn StreamEncode> {
        Box::new(stream::StreamEncoder::new(env))
    }
}

impl ProviderCodec for Anthropic {
    fn encode_request(
        &self,
        req: &ChatRequest,
        model: &str,
        default_max_tokens: u64,
        dropped: &mut Dropped,
    ) -> Result<(Value, String), TranslateError> {
        let body = request::encode_request(req, model, default_max_tokens, dropped)?;
        Ok((body, "/v1/messages".to_string()))
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
