//! The passthrough relay (a provider's answer on its way to a client of the same
//! protocol): the same output and usage however the bytes arrive; unrenamed bodies pass
//! byte for byte.
#![no_main]

use libfuzzer_sys::fuzz_target;
use modelgate::proxy::Relay;
use modelgate_fuzz::{feed_all, protocol, split};

fuzz_target!(|data: &[u8]| {
    if data.len() < 6 {
        return;
    }
    let (head, body) = data.split_at(6);
    let proto = protocol(head[0]);
    let sse = head[1] & 1 == 1;
    let rename = (head[1] & 2 == 2).then(|| "public-\"model\u{e9}".to_string());
    let hide = head[1] & 4 == 4;
    let run = |chunks: &[bytes::Bytes]| {
        let mut r = Relay::new(proto, sse, rename.clone(), true);
        if hide {
            r = r.hiding_usage_chunk();
        }
        let mut usage = None;
        let out = feed_all(chunks, |c, end| {
            let (b, u) = r.feed(c, end);
            usage = usage.or(u);
            b
        });
        (out, usage)
    };
    let (whole, u1) = run(&split(body, &[]));
    let (pieces, u2) = run(&split(body, &head[2..]));
    assert_eq!(
        whole, pieces,
        "the relay depends on how the bytes were split"
    );
    assert_eq!(u1, u2, "the usage depends on how the bytes were split");
    if rename.is_none() && !hide {
        // Untouched; a cut Responses stream may be given its closing `response.failed`.
        assert!(
            whole.starts_with(body),
            "an unrenamed body must pass untouched"
        );
    }
});
