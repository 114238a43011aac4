//! What the fuzz targets share: choosing protocols from input bytes, splitting a body
//! into chunks the way a network might, and checking what a client would receive.

use bytes::Bytes;
use modelgate::protocol::Protocol;

pub const PROTOCOLS: [Protocol; 4] = [
    Protocol::OpenAi,
    Protocol::Responses,
    Protocol::Anthropic,
    Protocol::Gemini,
];

/// A protocol chosen by one input byte.
pub fn protocol(b: u8) -> Protocol {
    PROTOCOLS[usize::from(b) % PROTOCOLS.len()]
}

/// `body` cut into chunks at positions derived from `seed` (1 to 16 pieces, some empty
/// pieces never: a network read is never empty).
pub fn split(body: &[u8], seed: &[u8]) -> Vec<Bytes> {
    if body.is_empty() {
        return vec![];
    }
    let mut cuts: Vec<usize> = seed
        .iter()
        .take(15)
        .map(|b| usize::from(*b) * body.len() / 256)
        .filter(|c| *c > 0)
        .collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut out = Vec::with_capacity(cuts.len() + 1);
    let mut from = 0;
    for c in cuts {
        out.push(Bytes::copy_from_slice(&body[from..c]));
        from = c;
    }
    out.push(Bytes::copy_from_slice(&body[from..]));
    out
}

/// Feeds `chunks` to `feed` (the last with `end`), and returns everything it gave back.
pub fn feed_all(
    chunks: &[Bytes],
    mut feed: impl FnMut(Option<Bytes>, bool) -> Option<Bytes>,
) -> Vec<u8> {
    let mut out = Vec::new();
    if chunks.is_empty() {
        if let Some(b) = feed(None, true) {
            out.extend_from_slice(&b);
        }
        return out;
    }
    for (i, c) in chunks.iter().enumerate() {
        if let Some(b) = feed(Some(c.clone()), i + 1 == chunks.len()) {
            out.extend_from_slice(&b);
        }
    }
    out
}

/// Panics unless `out` is a sequence of complete SSE events whose every `data:` is JSON
/// (or OpenAI's `[DONE]`): what every client parser needs.
pub fn assert_valid_sse(out: &[u8]) {
    let text = std::str::from_utf8(out).expect("the stream is UTF-8");
    // Gemini's streams end their lines with CRLF, as Google's own do.
    let text = text.replace("\r\n", "\n");
    if text.is_empty() {
        return;
    }
    assert!(
        text.ends_with("\n\n"),
        "the stream ends inside an event: {text:?}"
    );
    for event in text.split("\n\n").filter(|e| !e.is_empty()) {
        let data: Vec<&str> = event
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(|d| d.strip_prefix(' ').unwrap_or(d))
            .collect();
        if data.is_empty() {
            continue; // a comment or a bare `event:` line: ignored by SSE parsers
        }
        let data = data.join("\n");
        if data == "[DONE]" {
            continue;
        }
        if let Err(e) = serde_json::from_str::<serde_json::Value>(&data) {
            panic!("an event's data is not JSON ({e}): {event:?}");
        }
    }
}

/// Panics unless `out` is one JSON document.
pub fn assert_valid_json(out: &[u8]) {
    if let Err(e) = serde_json::from_slice::<serde_json::Value>(out) {
        panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(out));
    }
}

/// `out` with the clock's values (`created`, `created_at`: the time a translation made
/// its envelope) zeroed, so two runs of one input compare equal across a second's turn.
pub fn without_clock(out: &[u8]) -> String {
    let mut text = String::from_utf8_lossy(out).into_owned();
    for key in ["\"created_at\":", "\"created\":"] {
        let mut from = 0;
        while let Some(i) = text[from..].find(key) {
            let start = from + i + key.len();
            let digits = text[start..].bytes().take_while(u8::is_ascii_digit).count();
            text.replace_range(start..start + digits, "0");
            from = start + 1;
        }
    }
    text
}
