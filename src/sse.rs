//! Server-sent-event framing over arbitrary byte chunks: an event may be split anywhere and
//! several may arrive in one chunk. Each complete event (terminator included) is handed
//! out as soon as its blank line arrives; bytes are never scanned twice.

use bytes::{Bytes, BytesMut};

#[derive(Default)]
pub struct SseFramer {
    buf: BytesMut,
    /// Bytes of `buf` already searched for a terminator.
    scanned: usize,
}

impl SseFramer {
    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// The next complete event, up to and including its blank line (`\n\n` or `\n\r\n`).
    pub fn next_event(&mut self) -> Option<Bytes> {
        // Back up one byte so a terminator split across chunks is still seen.
        let from = self.scanned.saturating_sub(2);
        for p in memchr::memchr_iter(b'\n', &self.buf[from..]).map(|i| i + from) {
            let end = match (self.buf.get(p + 1), self.buf.get(p + 2)) {
                (Some(b'\n'), _) => p + 2,
                (Some(b'\r'), Some(b'\n')) => p + 3,
                _ => continue,
            };
            self.scanned = 0;
            return Some(self.buf.split_to(end).freeze());
        }
        self.scanned = self.buf.len();
        None
    }

    /// Whatever is left at the end of the stream (an unterminated last event).
    pub fn take_rest(&mut self) -> Option<Bytes> {
        self.scanned = 0;
        (!self.buf.is_empty()).then(|| std::mem::take(&mut self.buf).freeze())
    }
}

/// The data of one event: its `data:` lines joined by newlines (`None` if it has none).
pub fn event_data(event: &[u8]) -> Option<std::borrow::Cow<'_, str>> {
    let mut lines = event
        .split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter_map(|l| l.strip_prefix(b"data:"))
        .map(|d| d.strip_prefix(b" ").unwrap_or(d));
    let first = lines.next()?;
    match lines.next() {
        None => Some(String::from_utf8_lossy(first)),
        Some(second) => {
            let mut s = String::from_utf8_lossy(first).into_owned();
            for l in std::iter::once(second).chain(lines) {
                s.push('\n');
                s.push_str(&String::from_utf8_lossy(l));
            }
            Some(std::borrow::Cow::Owned(s))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_all(chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut f = SseFramer::default();
        let mut out = vec![];
        for c in chunks {
            f.push(c);
            while let Some(e) = f.next_event() {
                out.push(e.to_vec());
            }
        }
        if let Some(r) = f.take_rest() {
            out.push(r.to_vec());
        }
        out
    }

    #[test]
    fn frames_at_every_split_point() {
        let s: &[u8] = b"event: a\ndata: 1\n\ndata: 2\r\n\r\ndata: 3\n\n";
        let whole = frame_all(&[s]);
        assert_eq!(whole.len(), 3);
        for i in 0..=s.len() {
            for j in i..=s.len() {
                assert_eq!(
                    frame_all(&[&s[..i], &s[i..j], &s[j..]]),
                    whole,
                    "split {i},{j}"
                );
            }
        }
    }

    #[test]
    fn event_data_joins_data_lines() {
        assert_eq!(
            event_data(b"event: x\ndata: {\"a\":1}\n\n").as_deref(),
            Some("{\"a\":1}")
        );
        assert_eq!(
            event_data(b"data:a\r\ndata: b\r\n\r\n").as_deref(),
            Some("a\nb")
        );
        assert_eq!(event_data(b": comment\n\n"), None);
    }

    #[test]
    fn keeps_an_unterminated_tail() {
        assert_eq!(
            frame_all(&[b"data: 1\n\ndata: 2"]),
            vec![b"data: 1\n\n".to_vec(), b"data: 2".to_vec()]
        );
    }
}
