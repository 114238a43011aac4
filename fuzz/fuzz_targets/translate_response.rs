//! A provider's whole (non-stream) response translated into every client protocol: the
//! client gets JSON, the same however the body was split on the wire.
#![no_main]

use libfuzzer_sys::fuzz_target;
use modelgate::translate::ResponseTranslator;
use modelgate_fuzz::{assert_valid_json, feed_all, protocol, split, without_clock};

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let (head, body) = data.split_at(4);
    let (provider, client) = (protocol(head[0]), protocol(head[1]));
    let run = |chunks: &[bytes::Bytes]| {
        let mut t = ResponseTranslator::json(provider, client, "public-model");
        feed_all(chunks, |c, end| t.feed(c, end))
    };
    let whole = run(&split(body, &[]));
    let pieces = run(&split(body, &head[2..]));
    assert_eq!(
        without_clock(&whole),
        without_clock(&pieces),
        "the answer depends on how the body was split"
    );
    assert_valid_json(&whole);

    // A provider error body, in any shape, becomes the client's error.
    let status = 400 + u16::from(head[2]) % 200;
    let mut e = ResponseTranslator::error(client, status);
    assert_valid_json(&feed_all(&split(body, &head[3..]), |c, end| e.feed(c, end)));
});
