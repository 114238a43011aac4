//! A rewritten answer that is complete before its header is written goes out with a
//! `Content-Length`, in one write.
//!
//! A translated (or renamed, or replaced) JSON body changes length, so its header leaves
//! `response_filter` chunked, and Pingora then writes header, body and terminating chunk
//! as three sends. But Pingora runs the proxy's filters over a whole batch of upstream
//! tasks (header, body, end) before it writes any of them, and the downstream modules'
//! filters only as each is written. So when `response_body_filter` has produced the whole
//! body from that batch, it tells this module its length (`declare`), and the module's
//! header filter, which runs after, puts the length in place of the chunked encoding:
//! Pingora then buffers header and body and flushes them once. When the body comes in a
//! later batch the header has gone out chunked already, and nothing changes. Event
//! streams are left chunked: they are meant to be read as they come.

use async_trait::async_trait;
use pingora::http::ResponseHeader;
use pingora::modules::http::{HttpModule, HttpModuleBuilder, Module};
use pingora::proxy::Session;
use pingora::Result;

pub struct Builder;

impl HttpModuleBuilder for Builder {
    fn init(&self) -> Module {
        Box::<WholeBody>::default()
    }
}

#[derive(Default)]
pub struct WholeBody {
    /// The whole body's length, known before the header was written.
    length: Option<usize>,
    header_written: bool,
}

/// The whole response body has been produced, `len` bytes, by one filter call.
pub fn declare(session: &mut Session, len: usize) {
    if let Some(m) = session.downstream_modules_ctx.get_mut::<WholeBody>() {
        if !m.header_written {
            m.length = Some(len);
        }
    }
}

#[async_trait]
impl HttpModule for WholeBody {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }

    async fn response_header_filter(
        &mut self,
        resp: &mut ResponseHeader,
        _end_of_stream: bool,
    ) -> Result<()> {
        if resp.status.is_informational() {
            // A 100 Continue or 103 Early Hints: the answer's own header is still to come.
            return Ok(());
        }
        self.header_written = true;
        let Some(len) = self.length else {
            return Ok(());
        };
        let chunked = resp
            .headers
            .get(http::header::TRANSFER_ENCODING)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"chunked"));
        let stream = resp
            .headers
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        if chunked && !stream {
            resp.remove_header(&http::header::TRANSFER_ENCODING);
            resp.insert_header(http::header::CONTENT_LENGTH, len)?;
        }
        Ok(())
    }
}
