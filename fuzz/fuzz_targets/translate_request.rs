//! A client's request body, decoded in its protocol and encoded for every provider kind:
//! no panic, and what would go to the provider is JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use modelgate::translate;
use modelgate_fuzz::{assert_valid_json, protocol, PROTOCOLS};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let client = protocol(sel);
    let _ = translate::estimate_tokens(client, body);
    if let Some(v) = translate::strip_relayed_signatures(client, body) {
        assert!(v.is_object() || v.is_array(), "{v}");
    }
    let Ok(decoded) = translate::decode(client, body) else {
        return;
    };
    for provider in PROTOCOLS {
        for version in ["2023-06-01", "2026-10-21"] {
            if let Ok(req) =
                translate::encode_request(&decoded.request, provider, "m", 1024, version)
            {
                assert_valid_json(&req.body);
                assert!(req.path.starts_with('/'), "{}", req.path);
            }
        }
    }
});
