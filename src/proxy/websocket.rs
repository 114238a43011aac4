//! Codex's Responses WebSocket transport (`GET /v1/responses` with `Upgrade: websocket`).
//! The route is chosen at the upgrade, from `?model=NAME` or an `x-modelgate-model`
//! header, and the upgrade is proxied to the first of that model's targets that speaks
//! the Responses API (an openai-kind provider), with the client's key replaced by the
//! provider's credential. Where no target can take it the answer is 426 at once, saying
//! why, so the client falls back to `POST /v1/responses` instead of retrying.
//!
//! Frames pass through untouched both ways. The provider's frames are watched on the way
//! (`SocketWatch`) for each turn's `response.completed`, whose usage is what the session
//! costs. Compression is not negotiated, so the frames can be read.

use std::io::Cursor;

use bytes::{Buf, BytesMut};
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

use crate::auth::{query_param, KEY_SUBPROTOCOL};
use crate::errors::{ErrorCode, GatewayError};
use crate::protocol::Protocol;
use crate::translate::model::Usage;
use crate::upstream::ProviderKind;

/// Largest message read for its usage (a `response.completed` holds the whole response).
const MAX_MESSAGE: usize = 8 * 1024 * 1024;

/// The model named at the upgrade.
pub fn model(req: &pingora::http::RequestHeader) -> Option<String> {
    query_param(req.uri.query(), "model")
        .map(|m| m.to_string())
        .or_else(|| {
            req.headers
                .get("x-modelgate-model")
                .and_then(|v| v.to_str().ok())
                .map(|m| m.trim().to_string())
        })
        .filter(|m| !m.is_empty())
}

pub fn unsupported(why: String) -> GatewayError {
    GatewayError::new(ErrorCode::WebSocketUnsupported, why)
}

/// No model at the upgrade.
pub fn no_model() -> GatewayError {
    unsupported("the Responses WebSocket needs the model at the upgrade (?model=NAME or an x-modelgate-model header); use POST /v1/responses, which takes it in the body".into())
}

/// A model none of whose targets speaks the Responses API.
pub fn no_socket_provider(model: &str) -> GatewayError {
    unsupported(format!("the providers of the model {model:?} do not take the Responses WebSocket; use POST /v1/responses with \"stream\": true, which serves it translated"))
}

/// The provider answered the upgrade without switching protocols: it has no such socket.
pub fn refused_by(provider: &str, status: u16) -> GatewayError {
    unsupported(format!("provider {provider:?} did not accept the Responses WebSocket (it answered {status}); use POST /v1/responses with \"stream\": true"))
}

/// Whether a target's provider can take the socket.
pub fn takes_socket(provider: &crate::upstream::Provider) -> bool {
    provider.kind == ProviderKind::OpenAi
        && provider.wire_protocol(Protocol::Responses) == Protocol::Responses
}

/// The upgrade request for the provider: no compression (the frames are read on the way)
/// and no key in the subprotocols.
pub fn prepare_upgrade(req: &mut pingora::http::RequestHeader) -> pingora::Result<()> {
    req.remove_header("sec-websocket-extensions");
    req.remove_header("x-modelgate-model");
    req.remove_header(&http::header::CONTENT_LENGTH);
    let protocols = req
        .headers
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty() && !p.starts_with(KEY_SUBPROTOCOL))
                .collect::<Vec<_>>()
                .join(", ")
        });
    match protocols {
        Some(p) if !p.is_empty() => {
            req.insert_header("sec-websocket-protocol", p)?;
        }
        Some(_) => {
            req.remove_header("sec-websocket-protocol");
        }
        None => {}
    }
    Ok(())
}

/// A relayed socket past `server.websocket_max_duration` is closed at its next frame.
pub fn within_duration(ctx: &super::ctx::RequestCtx) -> pingora::Result<()> {
    if ctx.started.elapsed() > ctx.config.server.websocket_max_duration {
        log::info!(
            "request_id={} WebSocket closed after server.websocket_max_duration ({:?})",
            ctx.request_id,
            ctx.config.server.websocket_max_duration
        );
        return Err(pingora::Error::explain(
            pingora::ErrorType::ReadTimedout,
            "websocket_max_duration reached",
        ));
    }
    Ok(())
}

/// The provider's answer to the upgrade: 101 starts the relay (its frames watched); any
/// other answer below 500 means it has no such socket, and the client gets 426.
pub fn answered(
    client: &pingora::http::RequestHeader,
    resp: &mut pingora::http::ResponseHeader,
    ctx: &mut super::ctx::RequestCtx,
) -> pingora::Result<()> {
    let status = resp.status.as_u16();
    if status == 101 {
        accepted(client, resp)?;
        ctx.response.plan = super::response::BodyPlan::Socket(Box::default());
    } else if status < 500 {
        // Most OpenAI-compatible servers answer 404, or an HTTP 200.
        let provider = ctx.provider_label().to_string();
        let err = refused_by(&provider, status);
        let body =
            crate::errors::error_body(ctx.protocol, 426, err.code.as_str(), &err.message, None);
        resp.set_status(426)?;
        resp.remove_header(&http::header::CONTENT_LENGTH);
        resp.insert_header(http::header::TRANSFER_ENCODING, "chunked")?;
        resp.insert_header(http::header::CONTENT_TYPE, "application/json")?;
        ctx.response.plan = super::response::BodyPlan::Replace(Some(body));
        ctx.error = Some(err);
    }
    Ok(())
}

/// The provider accepted the upgrade. A client that offered only its key as a
/// subprotocol (a browser) must see one chosen, or it drops the socket: its own offer is
/// echoed when the provider chose none (the provider never saw the key).
fn accepted(
    client: &pingora::http::RequestHeader,
    resp: &mut pingora::http::ResponseHeader,
) -> pingora::Result<()> {
    if resp.headers.contains_key("sec-websocket-protocol") {
        return Ok(());
    }
    let offered = client
        .headers
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split(',')
                .map(str::trim)
                .find(|p| p.starts_with(KEY_SUBPROTOCOL))
        })
        .map(str::to_string);
    if let Some(p) = offered {
        resp.insert_header("sec-websocket-protocol", p)?;
    }
    Ok(())
}

/// Reads the provider's frames as they pass, for the usage of each completed turn.
#[derive(Default)]
pub struct SocketWatch {
    buf: BytesMut,
    /// Payload bytes of the current frame still to come, and whether they are kept.
    remaining: u64,
    keep: bool,
    mask: Option<[u8; 4]>,
    masked_at: usize,
    final_frame: bool,
    /// The text message being read, unless it grew past `MAX_MESSAGE`.
    message: Vec<u8>,
    in_text: bool,
    overflow: bool,
    usage: Option<Usage>,
    pub turns: u32,
    broken: bool,
}

impl SocketWatch {
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        if self.broken {
            return;
        }
        self.buf.extend_from_slice(chunk);
        loop {
            if self.remaining > 0 {
                let n = (self.remaining.min(self.buf.len() as u64)) as usize;
                if n == 0 {
                    return;
                }
                let part = self.buf.split_to(n);
                self.remaining -= n as u64;
                if self.keep && !self.overflow {
                    if self.message.len() + part.len() > MAX_MESSAGE {
                        self.overflow = true;
                        self.message = Vec::new();
                    } else {
                        let start = self.message.len();
                        self.message.extend_from_slice(&part);
                        if let Some(m) = self.mask {
                            for (i, b) in self.message[start..].iter_mut().enumerate() {
                                *b ^= m[(self.masked_at + i) % 4];
                            }
                            self.masked_at += part.len();
                        }
                    }
                }
                if self.remaining == 0 {
                    self.frame_done();
                }
                continue;
            }
            let mut cursor = Cursor::new(&self.buf[..]);
            let header = match FrameHeader::parse(&mut cursor) {
                Ok(Some(h)) => h,
                Ok(None) => return,
                Err(_) => {
                    // Not WebSocket framing after all: stop reading, keep relaying.
                    self.broken = true;
                    self.buf = BytesMut::new();
                    return;
                }
            };
            let consumed = cursor.position() as usize;
            self.buf.advance(consumed);
            let (h, len) = header;
            self.final_frame = h.is_final;
            self.mask = h.mask;
            self.masked_at = 0;
            self.keep = match h.opcode {
                OpCode::Data(Data::Text) => {
                    self.in_text = true;
                    self.overflow = false;
                    self.message.clear();
                    true
                }
                OpCode::Data(Data::Continue) => self.in_text,
                OpCode::Data(_) => {
                    self.in_text = false;
                    false
                }
                OpCode::Control(Control::Close | Control::Ping | Control::Pong)
                | OpCode::Control(Control::Reserved(_)) => false,
            };
            self.remaining = len;
            if len == 0 {
                self.frame_done();
            }
        }
    }

    fn frame_done(&mut self) {
        if !(self.keep && self.final_frame && self.in_text) {
            return;
        }
        self.in_text = false;
        if self.overflow {
            return;
        }
        let msg = std::mem::take(&mut self.message);
        let turn_end = memchr::memmem::find(&msg, b"\"response.completed\"").is_some()
            || memchr::memmem::find(&msg, b"\"response.incomplete\"").is_some()
            || memchr::memmem::find(&msg, b"\"response.failed\"").is_some();
        if !turn_end {
            return;
        }
        let facts = crate::translate::wire(Protocol::Responses).peek_response(&msg);
        if let Some(u) = facts.and_then(|f| f.usage) {
            self.turns = self.turns.saturating_add(1);
            let total = self.usage.get_or_insert_with(Usage::default);
            total.prompt_tokens = total.prompt_tokens.saturating_add(u.prompt_tokens);
            total.completion_tokens = total.completion_tokens.saturating_add(u.completion_tokens);
            let add = |a: Option<u64>, b: Option<u64>| match (a, b) {
                (None, None) => None,
                (a, b) => Some(a.unwrap_or(0).saturating_add(b.unwrap_or(0))),
            };
            total.cached_tokens = add(total.cached_tokens, u.cached_tokens);
            total.reasoning_tokens = add(total.reasoning_tokens, u.reasoning_tokens);
            total.cache_write_tokens = add(total.cache_write_tokens, u.cache_write_tokens);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server frame (unmasked) or, with `mask`, a client one.
    fn frame(opcode: u8, fin: bool, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
        let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
        let m = if mask.is_some() { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 => out.push(m | n as u8),
            n if n < 65536 => {
                out.push(m | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(m | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        match mask {
            Some(k) => {
                out.extend_from_slice(&k);
                out.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4]));
            }
            None => out.extend_from_slice(payload),
        }
        out
    }

    const DONE: &str = r#"{"type":"response.completed","sequence_number":5,"response":{"id":"resp_1","object":"response","model":"gpt-5","usage":{"input_tokens":10,"output_tokens":4,"input_tokens_details":{"cached_tokens":2},"total_tokens":14}}}"#;

    #[test]
    fn each_completed_turn_adds_its_usage_whatever_the_chunking() {
        let mut stream = Vec::new();
        stream.extend(frame(
            1,
            true,
            br#"{"type":"response.created","response":{"id":"resp_1"}}"#,
            None,
        ));
        stream.extend(frame(9, true, b"ping", None));
        stream.extend(frame(2, true, &[0u8; 300], None));
        stream.extend(frame(1, true, DONE.as_bytes(), None));
        // A second turn, its completion fragmented over three frames and 70 KB long.
        let padded = DONE.replace(
            "\"resp_1\"",
            &format!("\"resp_2\",\"pad\":\"{}\"", "x".repeat(70_000)),
        );
        let (a, rest) = padded.as_bytes().split_at(100);
        let (b, c) = rest.split_at(40_000);
        stream.extend(frame(1, false, a, None));
        stream.extend(frame(0, false, b, None));
        stream.extend(frame(0, true, c, None));
        for size in [1, 7, 1000, stream.len()] {
            let mut w = SocketWatch::default();
            for piece in stream.chunks(size) {
                w.feed(piece);
            }
            let u = w.usage().unwrap();
            assert_eq!(
                (w.turns, u.prompt_tokens, u.completion_tokens),
                (2, 20, 8),
                "chunks of {size}"
            );
            assert_eq!(u.cached_tokens, Some(4));
        }
    }

    #[test]
    fn masked_frames_are_read_and_garbage_stops_the_watch() {
        let mut w = SocketWatch::default();
        w.feed(&frame(1, true, DONE.as_bytes(), Some([1, 2, 3, 4])));
        assert_eq!(w.turns, 1);
        let mut w = SocketWatch::default();
        w.feed(&[0x8f, 0xff, 0xff]);
        w.feed(&frame(1, true, DONE.as_bytes(), None));
        assert_eq!(
            w.turns, 0,
            "after bytes that are not framing, nothing is read"
        );
    }

    #[test]
    fn the_upgrade_loses_compression_and_the_key_subprotocol() {
        let mut req = pingora::http::RequestHeader::build("GET", b"/v1/responses", None).unwrap();
        req.insert_header("sec-websocket-extensions", "permessage-deflate")
            .unwrap();
        req.insert_header(
            "sec-websocket-protocol",
            "openai-insecure-api-key.sk-secret, realtime",
        )
        .unwrap();
        prepare_upgrade(&mut req).unwrap();
        assert!(req.headers.get("sec-websocket-extensions").is_none());
        assert_eq!(req.headers["sec-websocket-protocol"], "realtime");
        req.insert_header(
            "sec-websocket-protocol",
            "openai-insecure-api-key.sk-secret",
        )
        .unwrap();
        prepare_upgrade(&mut req).unwrap();
        assert!(req.headers.get("sec-websocket-protocol").is_none());
    }
}
