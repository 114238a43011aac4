//! Passthrough bodies on their way to the client: the provider's model name replaced by
//! the public one, and the usage read, without holding a stream back.

use bytes::Bytes;

use crate::rewrite::ModelRenamer;
use crate::translate::model::Usage;
use crate::usage::UsageTap;

pub struct Relay {
    renamer: Option<ModelRenamer>,
    tap: Option<UsageTap>,
}

impl Relay {
    /// `sse`: a stream of events (else one JSON body); `rename`: the public model name to
    /// put back; `usage`: whether to read the usage.
    pub fn new(sse: bool, rename: Option<String>, usage: bool) -> Self {
        let renamer = rename.map(|public| {
            if sse {
                ModelRenamer::sse(public)
            } else {
                ModelRenamer::json(public)
            }
        });
        let tap = usage.then(|| {
            if sse {
                UsageTap::sse()
            } else {
                UsageTap::json()
            }
        });
        Relay { renamer, tap }
    }

    /// Whether the body changes (its length is then unknown in advance).
    pub fn renames(&self) -> bool {
        self.renamer.is_some()
    }

    pub fn feed(&mut self, chunk: Option<Bytes>, end: bool) -> (Option<Bytes>, Option<Usage>) {
        if let (Some(tap), Some(b)) = (self.tap.as_mut(), chunk.as_ref()) {
            tap.feed(b);
        }
        let usage = if end { self.usage_so_far() } else { None };
        let out = match self.renamer.as_mut() {
            Some(r) => r.feed(chunk, end),
            None => chunk,
        };
        (out, usage)
    }

    /// The usage reported so far (all of it once the body ended).
    pub fn usage_so_far(&mut self) -> Option<Usage> {
        self.tap.take().and_then(UsageTap::finish)
    }
}
