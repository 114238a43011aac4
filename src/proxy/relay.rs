//! Passthrough bodies on their way to the client, in one pass: one SSE framer (or one
//! JSON buffer), and per event or body one borrowed parse that yields both the model
//! name's position (to put the public name back) and the usage. Streams are never held
//! back beyond the event being completed; a body whose model is not renamed is passed on
//! as it came and only watched.

use bytes::{Bytes, BytesMut};
use serde_json::value::RawValue;

use crate::protocol::Protocol;
use crate::rewrite::splice_json_string;
use crate::sse::SseFramer;
use crate::translate::model::Usage;
use crate::translate::{self, Wire};

/// Most a non-stream body is copied for its usage when it is not renamed; larger ones
/// (images, embeddings of many inputs) are not worth the memory.
const MAX_JSON_COPY: usize = 4 * 1024 * 1024;

pub struct Relay {
    /// The protocol of the bytes: it knows where its model name and usage are.
    wire: &'static dyn Wire,
    sse: bool,
    /// The public model name to put back.
    rename: Option<String>,
    read_usage: bool,
    framer: SseFramer,
    /// A JSON body, kept whole when renamed, else copied for its usage (up to the cap).
    json: BytesMut,
    overflow: bool,
    usage: Option<Usage>,
    /// The usage-only chunk the gateway asked for (the client did not) is read, not sent.
    hide_usage_chunk: bool,
    /// A Responses stream: what it announced, to end it properly if the provider cuts it.
    responses: Option<ResponsesTrack>,
}

/// The response a Responses stream announced (`response.created`) and its last
/// `sequence_number`.
#[derive(Default)]
struct ResponsesTrack {
    announced: Option<serde_json::Value>,
    last_seq: Option<u64>,
}

impl Relay {
    /// `protocol`: the body's wire protocol; `sse`: a stream of events (else one JSON
    /// body); `rename`: the public model name to put back; `read_usage`: whether to read
    /// the usage.
    pub fn new(protocol: Protocol, sse: bool, rename: Option<String>, read_usage: bool) -> Self {
        Relay {
            wire: translate::wire(protocol),
            sse,
            rename,
            read_usage,
            framer: SseFramer::default(),
            json: BytesMut::new(),
            overflow: false,
            usage: None,
            hide_usage_chunk: false,
            responses: (protocol == Protocol::Responses && sse).then(ResponsesTrack::default),
        }
    }

    /// Keeps a Chat stream's usage-only chunk (`choices: []`) from the client.
    pub fn hiding_usage_chunk(mut self) -> Self {
        self.hide_usage_chunk = true;
        self
    }

    /// Whether the body changes (its length is then unknown in advance): a model name put
    /// back, or a usage chunk kept from the client.
    pub fn changes_length(&self) -> bool {
        self.rename.is_some() || self.hide_usage_chunk
    }

    /// Feeds one chunk; returns what goes to the client now, and the usage at the end.
    pub fn feed(&mut self, chunk: Option<Bytes>, end: bool) -> (Option<Bytes>, Option<Usage>) {
        let out = if self.sse {
            self.feed_sse(chunk, end)
        } else {
            self.feed_json(chunk, end)
        };
        (out, if end { self.usage } else { None })
    }

    /// The usage reported so far, for a body cut short.
    pub fn usage_so_far(&mut self) -> Option<Usage> {
        self.usage
    }

    fn feed_sse(&mut self, chunk: Option<Bytes>, end: bool) -> Option<Bytes> {
        if self.rename.is_none() && !self.hide_usage_chunk {
            // Watched only: the chunk goes on untouched.
            if let Some(c) = &chunk {
                self.framer.push(c);
                while let Some(ev) = self.framer.next_event() {
                    self.track(&ev);
                    self.watch_event(&ev);
                }
            }
            return chunk;
        }
        let public = self.rename.take();
        let mut out = BytesMut::new();
        if let Some(c) = chunk {
            self.framer.push(&c);
        }
        while let Some(ev) = self.framer.next_event() {
            self.track(&ev);
            self.relay_event(&ev, public.as_deref(), &mut out);
        }
        if end {
            if let Some(rest) = self.framer.take_rest() {
                self.relay_event(&rest, public.as_deref(), &mut out);
            }
        }
        self.rename = public;
        (!out.is_empty()).then(|| out.freeze())
    }

    /// Notes a Responses event's sequence number, and the response `response.created`
    /// announces (before any output: a small object).
    fn track(&mut self, event: &[u8]) {
        let Some(t) = self.responses.as_mut() else {
            return;
        };
        for json in event.split(|b| *b == b'\n').filter_map(data_json) {
            if let Some(n) = sequence_number(json) {
                t.last_seq = Some(n);
            }
            if t.announced.is_none()
                && memchr::memmem::find(json, b"\"response.created\"").is_some()
            {
                t.announced = serde_json::from_slice::<serde_json::Value>(json)
                    .ok()
                    .map(|mut v| v["response"].take())
                    .filter(|r| r.is_object());
            }
        }
    }

    /// How a Responses stream the provider cut ends: `error` and `response.failed` for
    /// the response it announced, numbered on from its last event.
    pub fn responses_failure(&self, message: &str) -> Option<Bytes> {
        let t = self.responses.as_ref()?;
        let mut announced = t.announced.clone();
        if let (Some(r), Some(public)) = (announced.as_mut(), &self.rename) {
            r["model"] = public.as_str().into();
        }
        let out = translate::responses::failure_after(announced.as_ref(), t.last_seq, message);
        Some(Bytes::from(out))
    }

    /// A usage-only chunk the client did not ask for: its usage is noted, and `true`
    /// says to drop the event.
    fn hidden_usage_chunk(&mut self, event: &[u8]) -> bool {
        if !self.hide_usage_chunk || memchr::memmem::find(event, b"sage").is_none() {
            return false;
        }
        #[derive(serde::Deserialize)]
        struct Chunk<'a> {
            #[serde(borrow)]
            choices: Option<&'a RawValue>,
        }
        let Some(json) = event.split(|b| *b == b'\n').find_map(data_json) else {
            return false;
        };
        let usage_only = serde_json::from_slice::<Chunk>(json)
            .ok()
            .and_then(|c| c.choices)
            .is_some_and(|c| c.get().trim() == "[]");
        if usage_only {
            if let Some(f) = self.wire.peek_response(json) {
                self.note_usage(f.usage);
            }
        }
        usage_only
    }

    /// Usage from an event that is not renamed; only events that mention it are parsed.
    fn watch_event(&mut self, event: &[u8]) {
        if !self.read_usage || memchr::memmem::find(event, b"sage").is_none() {
            return;
        }
        for line in event.split(|b| *b == b'\n') {
            if let Some(json) = data_json(line) {
                if let Some(f) = self.wire.peek_response(json) {
                    self.note_usage(f.usage);
                }
            }
        }
    }

    /// Copies one event to `out` with the model renamed inside each `data:` line's JSON,
    /// reading the usage from the same parse.
    fn relay_event(&mut self, event: &[u8], public: Option<&str>, out: &mut BytesMut) {
        if self.hidden_usage_chunk(event) {
            return;
        }
        for line in event.split_inclusive(|b| *b == b'\n') {
            let Some(json) = data_json(line) else {
                out.extend_from_slice(line);
                continue;
            };
            let f = self.wire.peek_response(json);
            let model = f.as_ref().and_then(|f| f.model.clone());
            if let Some(f) = f {
                self.note_usage(f.usage);
            }
            match model.zip(public) {
                Some((span, public)) => {
                    // `json` lies inside `line`: keep what surrounds it.
                    let start = json.as_ptr() as usize - line.as_ptr() as usize;
                    out.extend_from_slice(&line[..start]);
                    out.extend_from_slice(&splice_json_string(json, span, public));
                    out.extend_from_slice(&line[start + json.len()..]);
                }
                None => out.extend_from_slice(line),
            }
        }
    }

    fn feed_json(&mut self, chunk: Option<Bytes>, end: bool) -> Option<Bytes> {
        let renames = self.rename.is_some();
        if let Some(c) = &chunk {
            if renames || (!self.overflow && self.json.len() + c.len() <= MAX_JSON_COPY) {
                self.json.extend_from_slice(c);
            } else {
                self.overflow = true;
                self.json.clear();
            }
        }
        if end {
            let body = std::mem::take(&mut self.json).freeze();
            let renamed = self.finish_json(&body);
            if renames {
                return Some(renamed.unwrap_or(body));
            }
        }
        // Not renamed: the body goes on as it came, chunk by chunk.
        if renames {
            None
        } else {
            chunk
        }
    }

    /// The whole JSON body: its usage noted, and renamed when asked.
    fn finish_json(&mut self, body: &Bytes) -> Option<Bytes> {
        if self.overflow {
            return None;
        }
        // A Gemini stream without alt=sse is a JSON array of responses (never renamed).
        if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
            if self.read_usage {
                let items: Vec<&RawValue> = serde_json::from_slice(body).ok()?;
                for item in items {
                    if let Some(f) = self.wire.peek_response(item.get().as_bytes()) {
                        self.note_usage(f.usage);
                    }
                }
            }
            return None;
        }
        let f = self.wire.peek_response(body)?;
        self.note_usage(f.usage);
        let (span, public) = (f.model?, self.rename.as_deref()?);
        Some(splice_json_string(body, span, public))
    }

    /// Keeps the largest value seen for each count: streams report partial, then
    /// cumulative numbers (Anthropic: input at the start, output at the end).
    fn note_usage(&mut self, u: Option<Usage>) {
        if let (true, Some(u)) = (self.read_usage, u) {
            merge(&mut self.usage, u);
        }
    }
}

/// The JSON object of an SSE `data:` line, without its line ending.
/// The `sequence_number` of a Responses event's JSON (its first occurrence: the event's
/// own, which precedes or follows the response object but is the only one at the top).
fn sequence_number(json: &[u8]) -> Option<u64> {
    const KEY: &[u8] = b"\"sequence_number\":";
    let at = memchr::memmem::find(json, KEY)? + KEY.len();
    let digits: Vec<u8> = json[at..]
        .iter()
        .skip_while(|b| b.is_ascii_whitespace())
        .take_while(|b| b.is_ascii_digit())
        .copied()
        .collect();
    std::str::from_utf8(&digits).ok()?.parse().ok()
}

fn data_json(line: &[u8]) -> Option<&[u8]> {
    let p = line.strip_prefix(b"data:")?;
    let p = p.strip_prefix(b" ").unwrap_or(p);
    let p = p.trim_ascii_end();
    p.starts_with(b"{").then_some(p)
}

/// Keeps the largest value seen for each count: streams report partial, then cumulative
/// numbers (Anthropic: input at the start, output at the end).
fn merge(acc: &mut Option<Usage>, u: Usage) {
    let a = acc.get_or_insert_with(Usage::default);
    a.prompt_tokens = a.prompt_tokens.max(u.prompt_tokens);
    a.completion_tokens = a.completion_tokens.max(u.completion_tokens);
    a.cached_tokens = a.cached_tokens.max(u.cached_tokens);
    a.reasoning_tokens = a.reasoning_tokens.max(u.reasoning_tokens);
    a.cache_write_tokens = a.cache_write_tokens.max(u.cache_write_tokens);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(relay: &mut Relay, parts: &[&[u8]]) -> Vec<u8> {
        let mut got = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            let (out, _) = relay.feed(Some(Bytes::copy_from_slice(part)), i + 1 == parts.len());
            if let Some(b) = out {
                got.extend_from_slice(&b);
            }
        }
        got
    }

    #[test]
    fn sse_rename_and_usage_are_identical_at_every_split() {
        let stream = b"data: {\"id\":\"1\",\"model\":\"up\",\"choices\":[]}\n\n: keepalive\n\ndata: {\"model\":\"up\",\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":3}}\r\n\r\ndata: [DONE]\n\n";
        let expected = b"data: {\"id\":\"1\",\"model\":\"pub\",\"choices\":[]}\n\n: keepalive\n\ndata: {\"model\":\"pub\",\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":3}}\r\n\r\ndata: [DONE]\n\n";
        for split in 0..=stream.len() {
            for rename in [true, false] {
                let mut r = Relay::new(
                    Protocol::OpenAi,
                    true,
                    rename.then(|| "pub".to_string()),
                    true,
                );
                let got = run(&mut r, &[&stream[..split], &stream[split..]]);
                let want: &[u8] = if rename { expected } else { stream };
                assert_eq!(got, want.to_vec(), "split at {split}, rename {rename}");
                let u = r.usage_so_far().expect("usage");
                assert_eq!((u.prompt_tokens, u.completion_tokens), (9, 3));
            }
        }
    }

    #[test]
    fn a_usage_chunk_the_client_did_not_ask_for_is_read_and_kept_back() {
        let stream = b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}],\"model\":\"up\"}\n\ndata: {\"choices\":[],\"model\":\"up\",\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":3}}\n\ndata: [DONE]\n\n";
        let kept = b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}],\"model\":\"up\"}\n\ndata: [DONE]\n\n";
        for split in 0..=stream.len() {
            let mut r = Relay::new(Protocol::OpenAi, true, None, true).hiding_usage_chunk();
            let got = run(&mut r, &[&stream[..split], &stream[split..]]);
            assert_eq!(got, kept.to_vec(), "split at {split}");
            let u = r.usage_so_far().expect("usage");
            assert_eq!((u.prompt_tokens, u.completion_tokens), (9, 3));
        }
    }

    #[test]
    fn anthropic_stream_usage_is_merged_across_events() {
        let stream = b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-x\",\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\n\nevent: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"text\":\"hi\"}}\n\nevent: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":15}}\n\n";
        let mut r = Relay::new(Protocol::Anthropic, true, Some("claude".into()), true);
        let parts: Vec<&[u8]> = stream.chunks(7).collect();
        let got = run(&mut r, &parts);
        assert!(String::from_utf8(got)
            .unwrap()
            .contains("\"model\":\"claude\""));
        let u = r.usage_so_far().unwrap();
        assert_eq!((u.prompt_tokens, u.completion_tokens), (25, 15));
    }

    #[test]
    fn json_bodies_are_renamed_whole_or_passed_on_as_they_came() {
        let body = br#"{"candidates":[],"modelVersion":"gemini-2.5","usageMetadata":{"promptTokenCount":4,"candidatesTokenCount":6,"thoughtsTokenCount":2}}"#;
        let mut r = Relay::new(Protocol::Gemini, false, Some("g".into()), true);
        let got = run(&mut r, &[&body[..10], &body[10..]]);
        assert_eq!(
            got,
            br#"{"candidates":[],"modelVersion":"g","usageMetadata":{"promptTokenCount":4,"candidatesTokenCount":6,"thoughtsTokenCount":2}}"#.to_vec()
        );
        assert_eq!(r.usage_so_far().unwrap().completion_tokens, 8);
        let mut r = Relay::new(Protocol::Gemini, false, None, true);
        let (first, _) = r.feed(Some(Bytes::copy_from_slice(&body[..10])), false);
        assert_eq!(first.as_deref(), Some(&body[..10]), "not held back");
        let (_, u) = r.feed(Some(Bytes::copy_from_slice(&body[10..])), true);
        assert_eq!(u.unwrap().prompt_tokens, 4);
    }

    #[test]
    fn a_gemini_json_array_stream_gives_its_usage() {
        let body = br#"[{"candidates":[],"usageMetadata":{"promptTokenCount":4}},
{"candidates":[],"usageMetadata":{"promptTokenCount":4,"candidatesTokenCount":7}}]"#;
        let mut r = Relay::new(Protocol::Gemini, false, None, true);
        let (_, u) = r.feed(Some(Bytes::copy_from_slice(body)), true);
        let u = u.unwrap();
        assert_eq!((u.prompt_tokens, u.completion_tokens), (4, 7));
    }

    #[test]
    fn unparsable_or_nested_models_are_left_alone() {
        let mut r = Relay::new(Protocol::OpenAi, false, Some("x".into()), true);
        assert_eq!(run(&mut r, &[b"not json"]), b"not json".to_vec());
        // A model nested where this protocol does not put it is not the response's.
        let json = br#"{"type":"message_start","message":{"id":"m","model":"claude-x"}}"#;
        let mut r = Relay::new(Protocol::OpenAi, false, Some("x".into()), true);
        assert_eq!(run(&mut r, &[json]), json.to_vec());
        let mut r = Relay::new(Protocol::Anthropic, false, Some("x".into()), true);
        assert_eq!(
            run(&mut r, &[json]),
            br#"{"type":"message_start","message":{"id":"m","model":"x"}}"#.to_vec()
        );
    }
}
