//! The SSE framer: the same events however the bytes arrive, and no byte lost or added
//! (the events and the unterminated rest put back together are the input).
#![no_main]

use libfuzzer_sys::fuzz_target;
use modelgate::sse::{event_data, SseFramer};
use modelgate_fuzz::split;

fn frame(chunks: &[bytes::Bytes]) -> Vec<bytes::Bytes> {
    let mut f = SseFramer::default();
    let mut events = Vec::new();
    for c in chunks {
        f.push(c);
        while let Some(ev) = f.next_event() {
            events.push(ev);
        }
    }
    events.extend(f.take_rest());
    events
}

fuzz_target!(|data: &[u8]| {
    let Some((seed, body)) = data.split_at_checked(data.len().min(8)) else {
        return;
    };
    let whole = frame(&split(body, &[]));
    let pieces = frame(&split(body, seed));
    assert_eq!(whole, pieces, "events depend on how the bytes were split");
    assert_eq!(whole.concat(), body, "bytes lost or added");
    for ev in &whole {
        let _ = event_data(ev);
    }
});
