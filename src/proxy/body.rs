//! Reading the client's request body in `request_filter` (routing needs `model` before
//! `upstream_peer`), bounded by `max_body_bytes`, while keeping Pingora's per-attempt
//! body replay alive: Pingora calls `request_body_filter` on each attempt only when its
//! retry buffer holds data, and that buffer is capped at 64 KiB. So buffering is switched
//! on only for the last <= 64 KiB of the body; `request_body_filter` then swaps in the
//! full (possibly rewritten) body. (Pingora 0.9: `BODY_BUF_LIMIT` in pingora-core.)

use bytes::{Bytes, BytesMut};
use pingora::proxy::Session;

use crate::errors::{ErrorCode, GatewayError};

/// pingora-core's `BODY_BUF_LIMIT`.
pub const RETRY_BUFFER_LIMIT: usize = 64 * 1024;

pub enum BodyError {
    /// Over `max_body_bytes` (declared or counted while reading).
    TooLarge,
    Read(Box<pingora::Error>),
}

pub fn declared_length(session: &Session) -> Option<usize> {
    session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// Reads the body to its end. With `known` (a subrequest's body, already in memory: see
/// `relength`) the chunks still pass through Pingora, which must see them to forward the
/// body, but are not copied again: `known` is the body.
pub async fn read_request_body(
    session: &mut Session,
    max: usize,
    known: Option<Bytes>,
) -> Result<Bytes, BodyError> {
    let declared = declared_length(session);
    if declared.is_some_and(|n| n > max) {
        return Err(BodyError::TooLarge);
    }
    let capacity = match known {
        Some(_) => 0,
        None => declared.unwrap_or(8 * 1024).min(max),
    };
    let mut buf = BytesMut::with_capacity(capacity);
    let mut seen = 0usize;
    let mut buffering = false;
    loop {
        if !buffering {
            // Unknown length: buffer from the start (works for bodies up to the limit).
            let remaining = declared.map(|n| n.saturating_sub(seen));
            if remaining.is_none_or(|r| r > 0 && r <= RETRY_BUFFER_LIMIT) {
                session.enable_retry_buffering();
                buffering = true;
            }
        }
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                seen = seen.saturating_add(chunk.len());
                if seen > max {
                    return Err(BodyError::TooLarge);
                }
                if known.is_none() {
                    buf.extend_from_slice(&chunk);
                }
            }
            Ok(None) => break,
            Err(e) => return Err(BodyError::Read(e)),
        }
    }
    match known {
        Some(body) if body.len() == seen => Ok(body),
        Some(_) => Err(BodyError::Read(pingora::Error::explain(
            pingora::ErrorType::InternalError,
            "a subrequest's body differs in length from the one it was given",
        ))),
        None => Ok(buf.freeze()),
    }
}

/// Whether Pingora can hand the body just read to `request_body_filter` on each attempt;
/// not so for a body without Content-Length over 64 KiB (see `relength`).
pub fn replayable(session: &Session) -> bool {
    !session.retry_buffer_truncated()
}

/// The answer to a body that could not be read (a malformed chunked encoding, a
/// connection cut mid-body): the client's fault, so a 400, never an upstream error; the
/// connection is not reused (where the next request starts is unknown).
pub fn unreadable(session: &mut Session, e: &pingora::Error) -> GatewayError {
    session.set_keepalive(None);
    log::debug!("request body unreadable: {}", e.etype().as_str());
    GatewayError::new(
        ErrorCode::InvalidRequest,
        format!(
            "the request body could not be read ({}): a malformed chunked encoding, or the connection closed before the body ended",
            e.etype().as_str()
        ),
    )
}

/// Before answering early, consume a small unread body so the connection can be kept
/// alive; give up on keep-alive for large ones rather than read them for nothing.
pub async fn discard_unread_body(session: &mut Session) {
    if session.is_body_done() {
        return;
    }
    match declared_length(session) {
        Some(n) if n <= RETRY_BUFFER_LIMIT => {
            if session.drain_request_body().await.is_err() {
                session.set_keepalive(None);
            }
        }
        _ => session.set_keepalive(None),
    }
}
