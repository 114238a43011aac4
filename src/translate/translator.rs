//! `ResponseTranslator`: a provider's response body into the client's protocol as it
//! streams by, through the codecs registered in `codec.rs`.

use bytes::{Bytes, BytesMut};
use serde_json::Value;

use super::codec::{self, ClientCodec, ClientState, Envelope, ProviderCodec};
use super::codec::{StreamDecode, StreamEncode};
use super::model::{Part, StreamEvent, Usage};
use super::ToolNames;
use crate::errors::{self, ErrorCode};
use crate::protocol::Protocol;
use crate::sse::{self, SseFramer};

/// Translates one provider response body into the client's protocol as it streams by.
pub struct ResponseTranslator(Inner);

enum Inner {
    /// A whole JSON response, translated once complete.
    Json(Box<JsonState>),
    /// SSE, translated event by event.
    Stream(Box<StreamState>),
    /// A provider error body, re-shaped into the client's error format once complete.
    Error {
        buf: BytesMut,
        client: Protocol,
        status: u16,
    },
    /// A provider body that cannot be used at all: discarded, replaced by this error.
    Replace { body: Option<Bytes> },
}

struct JsonState {
    buf: BytesMut,
    /// `None`: a protocol that is never translated from.
    provider: Option<&'static dyn ProviderCodec>,
    client: Protocol,
    env: Envelope,
    usage: Option<Usage>,
    state: ClientState,
    tool_names: ToolNames,
}

struct StreamState {
    framer: SseFramer,
    decoder: Box<dyn StreamDecode>,
    encoder: Box<dyn StreamEncode>,
    events: Vec<StreamEvent>,
    saw_done: bool,
    tool_names: ToolNames,
}

impl StreamState {
    /// Encodes the decoded events, tool names back to the client's.
    fn drain(&mut self, out: &mut Vec<u8>) {
        for mut e in self.events.drain(..) {
            self.saw_done |= e == StreamEvent::Done;
            if let StreamEvent::ToolCallStart { name, .. } = &mut e {
                if let Some(c) = self.tool_names.client_name(name) {
                    *name = c.to_string();
                }
            }
            self.encoder.encode(&e, out);
        }
    }

    fn feed(&mut self, chunk: Option<Bytes>, end: bool) -> Option<Bytes> {
        if let Some(c) = chunk {
            self.framer.push(&c);
        }
        let mut out = Vec::new();
        while let Some(ev) = self.framer.next_event() {
            if let Some(data) = sse::event_data(&ev) {
                self.decoder.feed(&data, &mut self.events);
            }
            self.drain(&mut out);
        }
        if end {
            // Protocols without an end marker (Gemini): the decoder knows whether the
            // stream finished.
            self.decoder.end(&mut self.events);
            self.drain(&mut out);
            if !self.saw_done {
                // The provider stopped without its end marker: say so in the client's
                // protocol rather than pretend the answer is complete.
                let message = "the provider's stream ended before the response was complete";
                let e = StreamEvent::Error {
                    message: message.into(),
                };
                self.encoder.encode(&e, &mut out);
            }
            self.encoder.finish(&mut out);
        }
        (!out.is_empty()).then(|| Bytes::from(out))
    }
}

impl JsonState {
    fn feed(&mut self, chunk: Option<Bytes>, end: bool) -> Option<Bytes> {
        if let Some(c) = chunk {
            self.buf.extend_from_slice(&c);
        }
        if !end {
            return None;
        }
        let body = std::mem::take(&mut self.buf);
        Some(match self.translate(&body) {
            Ok(bytes) => bytes,
            Err(msg) => errors::error_body(
                self.client,
                502,
                ErrorCode::UpstreamError.as_str(),
                &format!("the provider's response could not be translated: {msg}"),
                None,
            ),
        })
    }

    fn translate(&mut self, body: &[u8]) -> Result<Bytes, String> {
        let v: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        let Some(provider) = self.provider else {
            return Err("a Responses body is never translated from".to_string());
        };
        let mut resp = provider.decode_response(&v).map_err(|e| e.message)?;
        for p in &mut resp.parts {
            if let Part::ToolCall { name, .. } = p {
                if let Some(c) = self.tool_names.client_name(name) {
                    *name = c.to_string();
                }
            }
        }
        let client: &dyn ClientCodec = codec::client(self.client);
        let out = client.encode_response(&resp, &self.env, &self.state);
        self.usage = resp.usage;
        Ok(Bytes::from(serde_json::to_vec(&out).unwrap_or_default()))
    }
}

impl ResponseTranslator {
    pub fn json(provider: Protocol, client: Protocol, public_model: &str) -> Self {
        ResponseTranslator(Inner::Json(Box::new(JsonState {
            buf: BytesMut::new(),
            provider: codec::provider(provider),
            client,
            env: Envelope::new(public_model),
            usage: None,
            state: ClientState::None,
            tool_names: ToolNames::default(),
        })))
    }

    /// Tool names that were changed for the provider: calls come back with the client's.
    pub fn with_tool_names(mut self, names: &ToolNames) -> Self {
        if names.0.is_empty() {
            return self;
        }
        match &mut self.0 {
            Inner::Json(j) => j.tool_names = names.clone(),
            Inner::Stream(s) => s.tool_names = names.clone(),
            Inner::Error { .. } | Inner::Replace { .. } => {}
        }
        self
    }

    /// The client codec's state from its decoded request ([`super::Decoded::client`]):
    /// what a Responses response repeats, the `custom` tools whose calls go back as
    /// `custom_tool_call` items.
    pub fn with_client_state(mut self, state: &ClientState) -> Self {
        if *state == ClientState::None {
            return self;
        }
        match &mut self.0 {
            Inner::Json(j) => j.state = state.clone(),
            Inner::Stream(s) => s.encoder.set_client_state(state),
            Inner::Error { .. } | Inner::Replace { .. } => {}
        }
        self
    }

    /// `client_sse`: a Gemini client asked for SSE (`alt=sse`) rather than a JSON array.
    /// `None` when the provider's protocol is never translated from.
    pub fn stream(
        provider: Protocol,
        client: Protocol,
        public_model: &str,
        include_usage: bool,
        client_sse: bool,
    ) -> Option<Self> {
        let decoder = codec::provider(provider)?.stream_decoder();
        let env = Envelope {
            include_usage,
            sse: client_sse,
            ..Envelope::new(public_model)
        };
        let encoder = codec::client(client).stream_encoder(env, &ClientState::None);
        Some(ResponseTranslator(Inner::Stream(Box::new(StreamState {
            framer: SseFramer::default(),
            decoder,
            encoder,
            events: Vec::new(),
            saw_done: false,
            tool_names: ToolNames::default(),
        }))))
    }

    /// A provider error body, in whatever shape, re-shaped into `client`'s.
    pub fn error(client: Protocol, status: u16) -> Self {
        ResponseTranslator(Inner::Error {
            buf: BytesMut::new(),
            client,
            status,
        })
    }

    /// Discards the provider's body and answers `message` as a 502 in `client`'s shape
    /// (a 2xx the gateway cannot read, such as an HTML page from a wrong base_url).
    pub fn replace_with_error(client: Protocol, message: &str) -> Self {
        let body = errors::error_body(
            client,
            502,
            ErrorCode::UpstreamError.as_str(),
            message,
            None,
        );
        ResponseTranslator(Inner::Replace { body: Some(body) })
    }

    pub fn is_stream(&self) -> bool {
        matches!(self.0, Inner::Stream(_))
    }

    /// The content type of what the client receives.
    pub fn content_type(&self) -> &'static str {
        match &self.0 {
            Inner::Stream(s) => s.encoder.content_type(),
            _ => "application/json",
        }
    }

    /// The usage seen so far (complete once the body has ended).
    pub fn usage(&self) -> Option<Usage> {
        match &self.0 {
            Inner::Json(j) => j.usage,
            Inner::Stream(s) => s.encoder.usage(),
            Inner::Error { .. } | Inner::Replace { .. } => None,
        }
    }

    /// Feeds one provider chunk; returns the client bytes ready now.
    pub fn feed(&mut self, chunk: Option<Bytes>, end: bool) -> Option<Bytes> {
        match &mut self.0 {
            Inner::Json(j) => j.feed(chunk, end),
            Inner::Stream(s) => s.feed(chunk, end),
            Inner::Error {
                buf,
                client,
                status,
            } => {
                if let Some(c) = chunk {
                    buf.extend_from_slice(&c);
                }
                if !end {
                    return None;
                }
                Some(translate_error(&std::mem::take(buf), *client, *status))
            }
            Inner::Replace { body } => {
                if end {
                    body.take()
                } else {
                    None
                }
            }
        }
    }
}

/// The provider's error message, whatever its shape.
fn provider_error_message(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    v["error"]["message"]
        .as_str()
        .or_else(|| v["message"].as_str())
        .or_else(|| v["error"].as_str())
        .map(String::from)
}

/// A provider error response re-shaped into the client's error format, message kept.
pub fn translate_error(body: &[u8], client: Protocol, status: u16) -> Bytes {
    let message = provider_error_message(body).unwrap_or_else(|| {
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        if text.is_empty() {
            format!("the provider answered {status}")
        } else {
            text.chars().take(500).collect()
        }
    });
    let code = match status {
        400 | 422 => "invalid_request",
        401 | 403 => "upstream_auth_error",
        404 => "model_not_found",
        413 => "request_too_large",
        429 => "rate_limit_exceeded",
        _ => "upstream_error",
    };
    errors::error_body(
        client,
        status,
        code,
        &format!("provider error: {message}"),
        None,
    )
}
