//! Model-name rewriting without re-serialising bodies: a protocol's wire facts locate the
//! `model` value with a borrowed parse (`translate::Wire`), and it is spliced here, so
//! everything else in the body stays byte-for-byte what the other side sent.

use std::ops::Range;

use bytes::{Bytes, BytesMut};

/// `body` with the bytes in `span` replaced by `name` as a JSON string.
pub fn splice_json_string(body: &[u8], span: Range<usize>, name: &str) -> Bytes {
    let quoted = serde_json::to_string(name).unwrap_or_default();
    splice_raw(body, span, &quoted)
}

/// `text` in place of `body[span]`, as is (a multipart form's field value).
pub fn splice_raw(body: &[u8], span: Range<usize>, text: &str) -> Bytes {
    let mut out = BytesMut::with_capacity(body.len() + text.len());
    out.extend_from_slice(&body[..span.start]);
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(&body[span.end..]);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Protocol;

    #[test]
    fn the_splice_keeps_every_other_byte() {
        let body = br#"{"messages":[{"role":"user","content":"hi \"model\""}],"model":"gpt4o","stream":true}"#;
        let p = crate::translate::wire(Protocol::OpenAi)
            .peek_request(body)
            .unwrap();
        let out = splice_json_string(body, p.model_span.unwrap(), "gpt-4o-\"2024\"");
        let want = br#"{"messages":[{"role":"user","content":"hi \"model\""}],"model":"gpt-4o-\"2024\"","stream":true}"#;
        assert_eq!(&out[..], &want[..]);
    }
}
