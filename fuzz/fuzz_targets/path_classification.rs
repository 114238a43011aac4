//! Path classification, the protocol guessed for errors, the 404 hint, and the refusal
//! written for a request Pingora cannot parse: any path and method, never a panic, and
//! the refusal is a well-formed HTTP response with a JSON body.
#![no_main]

use http::{HeaderMap, Method};
use libfuzzer_sys::fuzz_target;
use modelgate::{malformed, protocol};

const METHODS: [&str; 5] = ["GET", "POST", "DELETE", "PUT", "PATCH"];

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let refusal = malformed::refusal(if sel & 1 == 0 { 400 } else { 405 }, rest);
    let text = std::str::from_utf8(&refusal).expect("the refusal is text");
    let (head, body) = text.split_once("\r\n\r\n").expect("a header and a body");
    assert!(head.starts_with("HTTP/1.1 40"), "{head}");
    assert!(
        !head.contains('\n') || head.split("\r\n").all(|l| !l.contains('\n')),
        "{head:?}"
    );
    serde_json::from_str::<serde_json::Value>(body).expect("a JSON body");

    let Ok(path) = std::str::from_utf8(rest) else {
        return;
    };
    let method = Method::from_bytes(METHODS[usize::from(sel) % METHODS.len()].as_bytes())
        .unwrap_or(Method::GET);
    let _ = protocol::classify(&method, path);
    let _ = protocol::guess_protocol(path, &HeaderMap::new());
    let _ = protocol::not_found_hint(path);
});
