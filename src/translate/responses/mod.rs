//! OpenAI Responses (`POST /v1/responses`), as a client protocol: request decoder,
//! response encoder and stream encoder. Providers that speak Responses get the client's
//! bytes untouched, so there is no provider-side codec. Field and event names follow
//! platform.openai.com/docs/api-reference/responses and .../responses-streaming.

mod request;
mod response;
mod stream;
pub mod wire;

use serde_json::{Map, Value};

use super::codec::{self, ClientCodec, Codecs, Decoded, Envelope, StreamEncode};
use super::model::ChatResponse;
use super::TranslateError;

pub use stream::failure_after;
pub use wire::usage_from;

/// What answering a Responses request needs beyond the neutral request: its free-form
/// tool names, the namespaces of its namespaced tools, and the settings to repeat.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ClientState {
    /// `custom` tools: offered to providers as functions taking `{"input": text}`, and
    /// their calls returned to the client as `custom_tool_call` items.
    pub freeform_tools: Vec<String>,
    /// (tool, namespace) for function tools given inside a `namespace` tool; their calls
    /// go back with that `namespace`.
    pub tool_namespaces: Vec<(String, String)>,
    /// The request settings its response object repeats (`tools`, `text`, ...).
    pub echo: Map<String, Value>,
}

impl ClientState {
    fn is_empty(&self) -> bool {
        self.freeform_tools.is_empty() && self.tool_namespaces.is_empty() && self.echo.is_empty()
    }

    fn is_freeform(&self, name: &str) -> bool {
        self.freeform_tools.iter().any(|n| n == name)
    }

    /// A function-call item as the client's tools define it: `custom_tool_call` for a
    /// free-form tool, with its `namespace` for a namespaced one.
    fn call_item(&self, call_id: &str, name: &str, arguments: &str, status: &str) -> Value {
        let mut item =
            response::call_item(call_id, name, arguments, self.is_freeform(name), status);
        if let Some((_, ns)) = self.tool_namespaces.iter().find(|(n, _)| n == name) {
            item["namespace"] = ns.clone().into();
        }
        item
    }

    /// This protocol's state out of the codec-neutral one (empty for other clients).
    fn of(state: &codec::ClientState) -> &ClientState {
        static EMPTY: once_cell::sync::Lazy<ClientState> =
            once_cell::sync::Lazy::new(ClientState::default);
        match state {
            codec::ClientState::Responses(s) => s,
            codec::ClientState::None => &EMPTY,
        }
    }
}

pub struct Responses;

pub static CODECS: Codecs = Codecs {
    client: &Responses,
    provider: None,
    wire: &Responses,
};

impl ClientCodec for Responses {
    fn decode_request(&self, v: &Value) -> Result<Decoded, TranslateError> {
        let (request, state) = request::decode_request(v)?;
        let client = if state.is_empty() {
            codec::ClientState::None
        } else {
            codec::ClientState::Responses(Box::new(state))
        };
        Ok(Decoded { request, client })
    }

    fn encode_response(
        &self,
        r: &ChatResponse,
        env: &Envelope,
        state: &codec::ClientState,
    ) -> Value {
        response::encode_response(r, env, ClientState::of(state))
    }

    fn stream_encoder(&self, env: Envelope, state: &codec::ClientState) -> Box<dyn StreamEncode> {
        Box::new(stream::StreamEncoder::new(
            env,
            ClientState::of(state).clone(),
        ))
    }
}

#[cfg(test)]
mod tests;
