//! Reading the ids a provider hands out from its answers as they pass: the `id` of a file,
//! batch or response object (and a batch's output and error files), the `name` of a
//! Gemini operation, the response id in a Responses stream's first event. Bounded: only
//! the start of a body is kept, and top-level fields are read even from a cut-off prefix.

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;

use super::ObjectKind;
use crate::sse::{self, SseFramer};

/// Most of a body kept for its ids: objects put `id` first, and the rest is content.
const MAX_KEPT: usize = 256 * 1024;

/// How much of a body is read before looking for its ids early.
const EARLY_LOOK: usize = 8 * 1024;

/// An id found in a provider's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub id: String,
    pub kind: ObjectKind,
}

/// Watches one provider body for the ids it hands out.
pub struct Capture {
    events: bool,
    kept: Vec<u8>,
    framer: SseFramer,
    found: Vec<Found>,
    done: bool,
}

impl Capture {
    /// A JSON body (an object, or a list of them).
    pub fn json() -> Self {
        Capture {
            events: false,
            kept: Vec::new(),
            framer: SseFramer::default(),
            found: Vec::new(),
            done: false,
        }
    }

    /// A Responses event stream: the id is in `response.created`.
    pub fn events() -> Self {
        Capture {
            events: true,
            ..Capture::json()
        }
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        if self.done {
            return;
        }
        if !self.events {
            let before = self.kept.len();
            let room = MAX_KEPT.saturating_sub(before);
            self.kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
            // Objects name themselves first: once the start holds `id` and `object`,
            // the rest of a large body (a response's output) is not kept.
            if before < EARLY_LOOK && self.kept.len() >= EARLY_LOOK {
                let fields = top_level(&self.kept);
                if fields.id.is_some()
                    && fields.object.is_some()
                    && fields.object.as_deref() != Some("batch")
                {
                    self.found.extend(ids_in(&fields));
                    self.kept = Vec::new();
                    self.done = true;
                    return;
                }
            }
            self.done = self.kept.len() >= MAX_KEPT;
            return;
        }
        self.kept.truncate(0);
        self.framer.push(chunk);
        while let Some(event) = self.framer.next_event() {
            let Some(data) = sse::event_data(&event) else {
                continue;
            };
            #[derive(Deserialize)]
            struct Event {
                response: Option<Inner>,
            }
            #[derive(Deserialize)]
            struct Inner {
                id: Option<String>,
            }
            if let Ok(Event {
                response: Some(Inner { id: Some(id) }),
            }) = serde_json::from_str::<Event>(&data)
            {
                self.found.push(Found {
                    id,
                    kind: ObjectKind::Response,
                });
                self.done = true;
                return;
            }
        }
    }

    /// The ids seen, once the body has ended (or been cut).
    pub fn finish(&mut self) -> Vec<Found> {
        if !self.events && !self.kept.is_empty() {
            let fields = top_level(&self.kept);
            self.found.extend(ids_in(&fields));
            self.kept = Vec::new();
        }
        std::mem::take(&mut self.found)
    }
}

/// The top-level string fields that name ids, read from the start of a JSON object.
#[derive(Default, Debug)]
struct Fields {
    id: Option<String>,
    object: Option<String>,
    name: Option<String>,
    output_file_id: Option<String>,
    error_file_id: Option<String>,
}

fn ids_in(f: &Fields) -> Vec<Found> {
    let mut out = Vec::new();
    let mut push = |id: &Option<String>, kind| {
        if let Some(id) = id.as_ref().filter(|i| plausible_id(i)) {
            out.push(Found {
                id: id.clone(),
                kind,
            });
        }
    };
    match f.object.as_deref() {
        Some("file") => push(&f.id, ObjectKind::File),
        Some("batch") => {
            push(&f.id, ObjectKind::Batch);
            push(&f.output_file_id, ObjectKind::File);
            push(&f.error_file_id, ObjectKind::File);
        }
        Some("response") => push(&f.id, ObjectKind::Response),
        None if f.name.as_deref().is_some_and(|n| n.contains("operations/")) => {
            push(&f.name, ObjectKind::Operation)
        }
        _ => {}
    }
    out
}

/// An id worth remembering: bounded, and free of what could reach another path.
pub fn plausible_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 512
        && !id.contains("..")
        && id
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'/' | b'@'))
}

/// Reads the fields of `Fields` from a JSON object's prefix; whatever was read before
/// the prefix ends (or turns invalid) is kept.
fn top_level(buf: &[u8]) -> Fields {
    let mut fields = Fields::default();
    let mut de = serde_json::Deserializer::from_slice(buf);
    let _ = Seed(&mut fields).deserialize(&mut de);
    fields
}

struct Seed<'a>(&'a mut Fields);

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Seed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            let slot = match &*key {
                "id" => &mut self.0.id,
                "object" => &mut self.0.object,
                "name" => &mut self.0.name,
                "output_file_id" => &mut self.0.output_file_id,
                "error_file_id" => &mut self.0.error_file_id,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            *slot = map.next_value::<Option<String>>().ok().flatten();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(body: &str) -> Vec<Found> {
        let mut c = Capture::json();
        for piece in body.as_bytes().chunks(7) {
            c.feed(piece);
        }
        c.finish()
    }

    #[test]
    fn objects_name_their_ids() {
        assert_eq!(
            json(r#"{"id":"file-abc","object":"file","bytes":3,"filename":"a.jsonl"}"#),
            vec![Found {
                id: "file-abc".into(),
                kind: ObjectKind::File
            }]
        );
        let batch = json(
            r#"{"id":"batch_1","object":"batch","metadata":{"id":"x"},"output_file_id":"file-out","error_file_id":null}"#,
        );
        let ids: Vec<_> = batch.iter().map(|f| (f.id.as_str(), f.kind)).collect();
        assert_eq!(
            ids,
            [
                ("batch_1", ObjectKind::Batch),
                ("file-out", ObjectKind::File)
            ]
        );
        assert_eq!(
            json(r#"{"name":"models/veo-3/operations/op1","done":false}"#)[0].kind,
            ObjectKind::Operation
        );
        assert!(json(r#"{"object":"list","data":[{"id":"file-1","object":"file"}]}"#).is_empty());
        assert!(json(r#"{"id":"../../v1/x","object":"file"}"#).is_empty());
    }

    #[test]
    fn a_cut_off_body_still_yields_its_leading_id() {
        let body = format!(
            r#"{{"id":"resp_1","object":"response","output":[{{"text":"{}"}}]}}"#,
            "x".repeat(MAX_KEPT * 2)
        );
        let found = json(&body);
        assert_eq!(found[0].id, "resp_1");
        assert_eq!(found[0].kind, ObjectKind::Response);
    }

    #[test]
    fn a_stream_names_its_response_in_its_first_event() {
        let mut c = Capture::events();
        c.feed(b"event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"respo");
        c.feed(b"nse\":{\"id\":\"resp_9\",\"object\":\"response\"}}\n\nevent: response.output_text.delta\ndata: {}\n\n");
        assert_eq!(c.finish()[0].id, "resp_9");
    }
}
