//! Request bodies without a Content-Length (chunked, or HTTP/2 without the header) that
//! are longer than Pingora's 64 KiB replay buffer. Pingora forwards a body it has seen
//! read in `request_filter` only through that buffer, so such a body would never reach a
//! provider. Instead the request, with the body already read, is re-run as a Pingora
//! subrequest through this same gateway, which declares the length (`adopt`): the
//! subrequest does everything (key, limits, budgets, routing, failover with replay,
//! ledger) and its response is piped to the client. The outer request only carried the
//! body, so it reports nothing itself.

use bytes::Bytes;
use pingora::protocols::http::HttpTask;
use pingora::proxy::subrequest::pipe::{pipe_subrequest, InputBody, InputBodyType};
use pingora::proxy::subrequest::{BodyMode, Ctx as SubrequestCtx};
use pingora::proxy::Session;
use pingora::Result;

use super::body::RETRY_BUFFER_LIMIT;
use super::ctx::RequestCtx;
use super::local;
use crate::errors::{ErrorCode, GatewayError};

/// Whether this request may need a subrequest: a body whose length the header does not
/// say. Asked by Pingora before `request_filter`; a subrequest itself declares its length,
/// so it never spawns another.
pub fn may_need(session: &Session) -> bool {
    let req = session.req_header();
    matches!(
        req.method,
        http::Method::POST | http::Method::PUT | http::Method::PATCH
    ) && !req.headers.contains_key(http::header::CONTENT_LENGTH)
}

/// What the outer request hands its subrequest: the body it will send through the pipe,
/// shared (the pipe's parts are slices of the same memory), so the subrequest need not
/// copy what it reads and a long body is held once, not twice.
struct Declared(Bytes);

fn declared(session: &Session) -> Option<&Bytes> {
    session
        .subrequest_ctx
        .as_ref()
        .and_then(|c| c.user_ctx())
        .and_then(|u| u.downcast_ref::<Declared>())
        .map(|d| &d.0)
}

/// In a subrequest made by `resend`: the body it is about to read, already in memory.
pub fn known_body(session: &Session) -> Option<Bytes> {
    declared(session).cloned()
}

/// In a subrequest made by `resend`: its header is the client's as read from the wire
/// (Pingora copies the raw bytes), so the length is declared here, before anything reads
/// the body. Called first thing in `early_request_filter`.
pub fn adopt(session: &mut Session) -> Result<()> {
    if let Some(len) = declared(session).map(Bytes::len) {
        let req = session.req_header_mut();
        req.remove_header(&http::header::TRANSFER_ENCODING);
        // The client's 100-continue was answered by the outer request.
        req.remove_header(&http::header::EXPECT);
        req.insert_header(http::header::CONTENT_LENGTH, len)?;
    }
    Ok(())
}

/// Answers the request by re-running it with `body` and a `Content-Length`.
pub async fn resend(session: &mut Session, ctx: &mut RequestCtx, body: Bytes) -> Result<bool> {
    let Some(spawner) = session.subrequest_spawner.take() else {
        // Not expected (`may_need` allows it for every such body); say what would work.
        let msg = "request bodies over 64 KiB without a Content-Length header cannot be forwarded here; send a Content-Length";
        let e = GatewayError::new(ErrorCode::LengthRequired, msg);
        return local::respond_error(session, ctx, e).await;
    };
    ctx.delegate();
    let sub_ctx = SubrequestCtx::builder()
        .body_mode(BodyMode::ExpectBody)
        .user_ctx(Box::new(Declared(body.clone())))
        .build();
    let (subrequest, handle) = spawner.create_subrequest(session.as_downstream(), sub_ctx);
    let result = pipe_subrequest(
        session,
        subrequest,
        handle,
        |task| Ok(Some(task)),
        InputBodyType::Preset(InputBody::Bytes(split_for_replay(body))),
    )
    .await;
    if let Err(e) = result {
        // The subrequest's error response is already queued when it reports its error;
        // pass on whatever the pipe had not yet written.
        let mut tasks: Vec<HttpTask> = Vec::new();
        if let Some(mut rx) = e.state.pipe_rx {
            while let Ok(t) = rx.try_recv() {
                tasks.push(t);
            }
        }
        let done = session.write_response_tasks(tasks).await.unwrap_or(false);
        if !done || !e.from_subreq {
            session.set_keepalive(None);
        }
        log::debug!(
            "subrequest for a long chunked body: {}",
            e.error.etype().as_str()
        );
    }
    Ok(true)
}

/// The body in two parts, the second the last <= 64 KiB: the subrequest switches its
/// replay buffer on only for a body's last 64 KiB (`body::read_request_body`), which
/// it can do only at a part boundary.
fn split_for_replay(mut body: Bytes) -> Vec<Bytes> {
    if body.len() <= RETRY_BUFFER_LIMIT {
        return vec![body];
    }
    let tail = body.split_off(body.len() - RETRY_BUFFER_LIMIT);
    vec![body, tail]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_part_fits_the_replay_buffer() {
        let parts = split_for_replay(Bytes::from(vec![7u8; 200_000]));
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1].len(), RETRY_BUFFER_LIMIT);
        assert_eq!(parts[0].len() + parts[1].len(), 200_000);
        assert_eq!(split_for_replay(Bytes::from_static(b"abc")).len(), 1);
    }
}
