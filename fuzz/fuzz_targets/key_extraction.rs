//! Key extraction and client addresses from arbitrary headers and query strings: a key
//! or an error, never a panic; a key found is never empty.
#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use modelgate::auth;

const NAMES: [&str; 6] = [
    "authorization",
    "x-api-key",
    "x-goog-api-key",
    "x-forwarded-for",
    "x-real-ip",
    "forwarded",
];

fuzz_target!(|data: &[u8]| {
    // Lines: the first is the query string, the rest are header values by position.
    let mut lines = data.split(|b| *b == b'\n');
    let query = lines.next().and_then(|q| std::str::from_utf8(q).ok());
    let mut headers = HeaderMap::new();
    for (i, v) in lines.enumerate().take(12) {
        if let Ok(v) = HeaderValue::from_bytes(v) {
            headers.append(HeaderName::from_static(NAMES[i % NAMES.len()]), v);
        }
    }
    if let Ok((key, _source)) = auth::extract_key(&headers, query) {
        assert!(!key.is_empty(), "an empty key was accepted");
        let _ = auth::last4(&key);
    }
    let _ = auth::query_param(query, "key");
    let trusted: Vec<_> = ["127.0.0.1/32", "::1/128"]
        .iter()
        .filter_map(|n| auth::parse_ip_net(n))
        .collect();
    let peer = Some(std::net::IpAddr::from([127, 0, 0, 1]));
    let _ = auth::client_ip(peer, &headers, &trusted);
    if let Some(q) = query {
        let _ = auth::parse_ip_net(q);
    }
});
