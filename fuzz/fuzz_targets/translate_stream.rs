//! A provider's event stream translated into every client protocol: the client always
//! gets complete SSE events of JSON (or, for a Gemini client without `alt=sse`, one JSON
//! array), the same however the provider's bytes were split.
#![no_main]

use libfuzzer_sys::fuzz_target;
use modelgate::protocol::Protocol;
use modelgate::translate::ResponseTranslator;
use modelgate_fuzz::{
    assert_valid_json, assert_valid_sse, feed_all, protocol, split, without_clock,
};

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let (head, body) = data.split_at(8);
    let (provider, client) = (protocol(head[0]), protocol(head[1]));
    let include_usage = head[2] & 1 == 1;
    let client_sse = head[2] & 2 == 2;
    let run = |chunks: &[bytes::Bytes]| {
        let mut t = ResponseTranslator::stream(
            provider,
            client,
            "public-model",
            include_usage,
            client_sse,
        )?;
        Some(feed_all(chunks, |c, end| t.feed(c, end)))
    };
    let Some(whole) = run(&split(body, &[])) else {
        return; // a provider kind never translated from
    };
    let pieces = run(&split(body, &head[3..])).unwrap_or_default();
    assert_eq!(
        without_clock(&whole),
        without_clock(&pieces),
        "the stream depends on how the provider's bytes were split"
    );
    if client == Protocol::Gemini && !client_sse {
        assert_valid_json(&whole);
    } else {
        assert_valid_sse(&whole);
    }
});
