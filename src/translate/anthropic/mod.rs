//! Anthropic Messages, as a client and as a provider. Field names follow
//! docs.anthropic.com/en/api/messages and /en/docs/build-with-claude/streaming.

mod request;
mod response;
mod schema;
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

/// The Messages API version sent by default: what the official SDKs send since that date.
pub const DEFAULT_VERSION: &str = "2026-10-21";

/// The first version that refuses `temperature`, `top_p` and `top_k` (even at defaults).
const NO_SAMPLING_SINCE: &str = "2026-10-21";

/// Makes an encoded request follow the rules of the API `version` it is sent with
/// (`YYYY-MM-DD` compares as text): from 2026-10-21 the sampling fields are refused, so
/// they are dropped and listed.
pub fn follow_version(body: &mut serde_json::Value, version: &str, dropped: &mut Dropped) {
    if version < NO_SAMPLING_SINCE {
        return;
    }
    if let Some(obj) = body.as_object_mut() {
        for field in ["temperature", "top_p", "top_k"] {
            if obj.remove(field).is_some() {
                dropped.add(field);
            }
        }
    }
}

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
