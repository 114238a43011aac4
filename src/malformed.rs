//! Pingora's own refusals, answered as the gateway's errors.
//!
//! A request whose header does not parse gets `400` from Pingora, and `CONNECT` gets
//! `405`, both before any proxy phase runs: an empty body, no `x-request-id`, nothing a
//! client's SDK can show. Each connection's stream is wrapped here; while no request
//! header has reached the proxy on this turn (`seen` is false), a write starting with
//! such a status line is replaced by a JSON error in the protocol the request line's
//! path suggests, with a request id and `connection: close` (Pingora closes it after).
//! Everything else passes through untouched.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::{SslDigest, TlsRef, ALPN};
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::errors::{ErrorCode, GatewayError};
use crate::protocol::guess_protocol;

/// The start of a request kept to shape a refusal: its request line and headers.
const HEAD_KEPT: usize = 8 * 1024;

#[derive(Debug)]
enum Refusal {
    /// Nothing replaced.
    None,
    /// Writing our answer instead of Pingora's: the bytes and how many are written;
    /// `owed` is the length of Pingora's write to report once ours is out.
    Writing {
        body: Bytes,
        done: usize,
        owed: usize,
    },
    /// Ours is out: the rest of Pingora's response is swallowed.
    Sent,
}

/// Most bytes `read_ahead` takes: a usual request header, and its body's start.
const READ_AHEAD: usize = 1024;

/// A connection's stream, watched for Pingora's refusals.
#[derive(Debug)]
pub struct Guarded {
    inner: Stream,
    seen: Arc<AtomicBool>,
    head: Vec<u8>,
    refusal: Refusal,
    /// What `read_ahead` read (from `ahead_at` on), served before the socket's bytes.
    ahead: Vec<u8>,
    ahead_at: usize,
}

impl Guarded {
    pub fn wrap(inner: Stream, seen: Arc<AtomicBool>) -> Box<Guarded> {
        Box::new(Guarded {
            inner,
            seen,
            head: Vec::new(),
            refusal: Refusal::None,
            ahead: Vec::new(),
            ahead_at: 0,
        })
    }

    /// The stream back from Pingora (which hands back the stream it was given).
    pub fn unwrap_from(stream: Stream) -> Option<Box<Guarded>> {
        stream.into_any().downcast::<Guarded>().ok()
    }

    /// Waits for the next bytes from the client and keeps them for the next reads:
    /// `Ok(0)` is the end of the stream. Cancelling it loses nothing.
    pub async fn read_ahead(&mut self) -> io::Result<usize> {
        use tokio::io::AsyncReadExt;
        if self.ahead_at < self.ahead.len() {
            return Ok(self.ahead.len() - self.ahead_at);
        }
        // Capacity only: no page is touched until the bytes arrive.
        let mut buf = Vec::with_capacity(READ_AHEAD);
        let n = self.inner.read_buf(&mut buf).await?;
        self.ahead = buf;
        self.ahead_at = 0;
        Ok(n)
    }

    fn header_seen(&mut self) -> bool {
        let seen = self.seen.load(Ordering::Relaxed);
        if seen && !self.head.is_empty() {
            // This turn's request reached the proxy: its head is of no more use.
            self.head = Vec::new();
        }
        seen
    }

    /// Drives our answer out; `Ready(n)` is what Pingora is told it wrote.
    fn poll_refusal(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        loop {
            let Refusal::Writing { body, done, owed } = &mut self.refusal else {
                return Poll::Ready(Ok(0));
            };
            if *done >= body.len() {
                let owed = *owed;
                self.refusal = Refusal::Sent;
                return Poll::Ready(Ok(owed));
            }
            match Pin::new(&mut self.inner).poll_write(cx, &body[*done..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => *done += n,
                other => return other,
            }
        }
    }
}

/// The status Pingora refuses with, when `buf` is the start of such a response.
fn refused_status(buf: &[u8]) -> Option<u16> {
    let rest = buf
        .strip_prefix(b"HTTP/1.1 ")
        .or_else(|| buf.strip_prefix(b"HTTP/1.0 "))?;
    match rest.get(..4)? {
        b"400 " => Some(400),
        b"405 " => Some(405),
        _ => None,
    }
}

/// The response that replaces Pingora's `status`, shaped by what the request began with.
pub fn refusal(status: u16, head: &[u8]) -> Bytes {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n").flat_map(|l| l.split('\n'));
    let path = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .unwrap_or("/");
    let mut headers = http::HeaderMap::new();
    for line in lines.take(100) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(name.trim().as_bytes()),
            http::HeaderValue::from_str(value.trim()),
        ) {
            headers.append(n, v);
        }
    }
    let protocol = guess_protocol(path, &headers);
    let err = if status == 405 {
        let mut e = GatewayError::new(
            ErrorCode::MethodNotAllowed,
            "CONNECT is not served: the gateway is an API endpoint, not a forward proxy",
        );
        e.allow = Some("GET, POST, DELETE");
        e
    } else {
        GatewayError::new(
            ErrorCode::InvalidRequest,
            "the request is not valid HTTP/1.1: its request line or a header could not be parsed, or it has too many headers",
        )
    };
    let id = crate::proxy::request_id(headers.get("x-request-id"));
    let body = err.body(protocol);
    let mut out = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nx-request-id: {id}\r\n",
        err.status(),
        if status == 405 { "Method Not Allowed" } else { "Bad Request" },
        body.len(),
    );
    if let Some(allow) = err.allow {
        out.push_str(&format!("allow: {allow}\r\n"));
    }
    out.push_str("connection: close\r\n\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&body);
    Bytes::from(bytes)
}

impl AsyncRead for Guarded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let r = if this.ahead_at < this.ahead.len() {
            let rest = &this.ahead[this.ahead_at..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.ahead_at += n;
            if this.ahead_at == this.ahead.len() {
                this.ahead = Vec::new();
                this.ahead_at = 0;
            }
            Poll::Ready(Ok(()))
        } else {
            Pin::new(&mut this.inner).poll_read(cx, buf)
        };
        if !this.header_seen() && this.head.len() < HEAD_KEPT {
            let new = &buf.filled()[before..];
            let room = HEAD_KEPT - this.head.len();
            this.head.extend_from_slice(&new[..new.len().min(room)]);
        }
        r
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match this.refusal {
            Refusal::Sent => return Poll::Ready(Ok(buf.len())),
            Refusal::Writing { .. } => return this.poll_refusal(cx),
            Refusal::None => {}
        }
        if !this.header_seen() {
            if let Some(status) = refused_status(buf) {
                log::debug!("answering Pingora's {status} as the gateway's error");
                this.refusal = Refusal::Writing {
                    body: refusal(status, &this.head),
                    done: 0,
                    owed: buf.len(),
                };
                return this.poll_refusal(cx);
            }
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if matches!(self.refusal, Refusal::None) && self.header_seen() {
            return Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        }
        let first = bufs
            .iter()
            .find(|b| !b.is_empty())
            .map_or(&[][..], |b| &**b);
        self.poll_write(cx, first)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Refusal::Writing { .. } = this.refusal {
            if let Poll::Ready(Err(e)) = this.poll_refusal(cx) {
                return Poll::Ready(Err(e));
            }
            if let Refusal::Writing { .. } = this.refusal {
                return Poll::Pending;
            }
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for Guarded {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await
    }
}

impl UniqueID for Guarded {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for Guarded {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }
    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }
    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for Guarded {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }
    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }
    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for Guarded {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }
    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for Guarded {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }
    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[async_trait]
impl Peek for Guarded {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        let rest = &self.ahead[self.ahead_at..];
        if rest.is_empty() {
            return self.inner.try_peek(buf).await;
        }
        match rest.get(..buf.len()) {
            Some(b) => {
                buf.copy_from_slice(b);
                Ok(true)
            }
            // Fewer bytes read ahead than asked for: not peeked (Pingora reads on).
            None => Ok(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(b: &Bytes) -> (String, serde_json::Value) {
        let text = String::from_utf8_lossy(b).to_string();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        (head.to_string(), serde_json::from_str(body).unwrap())
    }

    #[test]
    fn only_pingoras_refusals_are_recognised() {
        assert_eq!(refused_status(b"HTTP/1.1 400 Bad Request\r\n"), Some(400));
        assert_eq!(
            refused_status(b"HTTP/1.1 405 Method Not Allowed\r\n"),
            Some(405)
        );
        assert_eq!(refused_status(b"HTTP/1.1 200 OK\r\n"), None);
        assert_eq!(refused_status(b"HTTP/1.1 4000"), None);
        assert_eq!(refused_status(b"{\"HTTP/1.1 400 \"}"), None);
    }

    #[test]
    fn the_refusal_speaks_the_requests_protocol() {
        let (head, v) = parts(&refusal(
            400,
            b"POST /v1/messages HTTP/1.1\r\nx-api-key: k\r\nbad header\r\n",
        ));
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{head}");
        assert!(head.contains("\r\nconnection: close"), "{head}");
        assert!(head.contains("\r\nx-request-id: "), "{head}");
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "invalid_request_error");

        let (_, v) = parts(&refusal(
            400,
            b"POST /v1beta/models/g:generateContent HTTP/1.1\r\n",
        ));
        assert_eq!(v["error"]["status"], "INVALID_ARGUMENT");

        let (head, v) = parts(&refusal(
            405,
            b"CONNECT example.com:443 HTTP/1.1\r\nx-request-id: abc-1\r\n",
        ));
        assert!(head.starts_with("HTTP/1.1 405 "), "{head}");
        assert!(head.contains("\r\nallow: "), "{head}");
        assert!(head.contains("\r\nx-request-id: abc-1\r\n"), "{head}");
        assert_eq!(v["error"]["code"], "method_not_allowed");

        // Nothing read (or garbage): an OpenAI-shaped error.
        let (_, v) = parts(&refusal(400, b"\xff\xfe"));
        assert_eq!(v["error"]["code"], "invalid_request");
    }
}
