//! OpenAI Chat Completions, as a client and as a provider. Field names follow
//! platform.openai.com/docs/api-reference/chat.

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

pub use request::is_reasoning_model;

pub struct OpenAi;

pub static CODECS: Codecs = Codecs {
    client: &OpenAi,
    provider: Some(&OpenAi),
    wire: &OpenAi,
};

impl ClientCodec for OpenAi {
    fn decode_request(&self, v: &Value) -> Result<Decoded, TranslateError> {
        request::decode_request(v).map(Decoded::from)
    }

    fn encode_response(&self, r: &ChatResponse, env: &Envelope, _: &ClientState) -> Value {
        response::encode_response(r, env)
    }

    fn stream_encoder(&self, env: Envelope, _: &ClientState) -> Box<dyn StreamEncode> {
        Box::new(stream::StreamEncoder::new(env))
    }
}

impl ProviderCodec for OpenAi {
    fn encode_request(
        &self,
        req: &ChatRequest,
        model: &str,
        _default_max_tokens: u64,
        dropped: &mut Dropped,
    ) -> Result<(Value, String), TranslateError> {
        let body = request::encode_request(req, model, dropped);
        Ok((body, "/v1/chat/completions".to_string()))
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
