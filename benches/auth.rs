//! Cost of authenticating a request with few and with many keys, config and API ones:
//! `cargo bench --bench auth` (AUTH_KEYS sets the large count, default 100000).

use std::hint::black_box;
use std::time::Instant;

use http::{HeaderMap, HeaderValue};
use modelgate::auth::{self, NoMoreKeys};
use modelgate::keys::ApiKeys;
use modelgate::store::keys::StoredKey;

fn secret(i: usize) -> String {
    format!("sk-bench-{i:012}-padding-to-length")
}

fn config_with(n: usize) -> modelgate::config::Config {
    let mut yaml = String::from("providers:\n  p: { kind: openai, base_url: \"http://127.0.0.1:9\", credentials: [c] }\nmodels:\n  m: { targets: [{ provider: p }] }\nkeys:\n");
    for i in 0..n {
        yaml.push_str(&format!("  - {{ name: k{i}, key: \"{}\" }}\n", secret(i)));
    }
    if n == 0 {
        // No config keys: allowed when keys come from the keys API.
        yaml = yaml.replace(
            "keys:\n",
            "management: { secret_key: bench-admin-secret }\n",
        );
    }
    modelgate::config::load_str(&yaml, "bench", &|_| None)
        .unwrap_or_else(|e| panic!("{e}"))
        .config
}

fn api_with(n: usize) -> ApiKeys {
    let keys = ApiKeys::default();
    for i in 0..n {
        let s = secret(i);
        keys.apply(StoredKey {
            name: format!("a{i}"),
            digest: hex::encode(auth::digest(&s)),
            hint: auth::last4(&s).into(),
            spec: "{}".into(),
            created_ms: 1,
            updated_ms: 1,
            old_digest: None,
            old_until_ms: None,
            deleted_ms: None,
        });
    }
    keys
}

/// Headers for 1,000 keys spread over the table (so lookups are not all cache hits).
fn requests(n: usize) -> Vec<HeaderMap> {
    let step = (n / 1000).max(1);
    (0..n.min(1000))
        .map(|j| {
            let mut h = HeaderMap::new();
            let v = format!("Bearer {}", secret(j * step));
            h.insert(
                http::header::AUTHORIZATION,
                HeaderValue::from_str(&v).unwrap(),
            );
            h
        })
        .collect()
}

fn bench(name: &str, iters: usize, mut f: impl FnMut(usize)) {
    for i in 0..iters / 10 {
        f(i);
    }
    let start = Instant::now();
    for i in 0..iters {
        f(i);
    }
    let ns = start.elapsed().as_nanos() as f64 / iters as f64;
    println!("{name:<52} {ns:>8.0} ns/request");
}

fn main() {
    // `cargo test` runs benches once as a smoke test: keep that short.
    let full = std::env::args().any(|a| a == "--bench");
    let many: usize = std::env::var("AUTH_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if full { 100_000 } else { 1_000 });
    let iters = if full { 1_000_000 } else { 1_000 };
    let ip = Some("127.0.0.1".parse().unwrap());
    for n in [10, many] {
        let cfg = config_with(n);
        let reqs = requests(n);
        bench(&format!("{n} config keys"), iters, |i| {
            let h = &reqs[i % reqs.len()];
            black_box(auth::authenticate(&cfg.keys, &NoMoreKeys, h, None, ip).is_ok());
        });
        let empty = config_with(0);
        let api = api_with(n);
        bench(
            &format!("{n} API keys (looked up after the config's)"),
            iters,
            |i| {
                let h = &reqs[i % reqs.len()];
                black_box(auth::authenticate(&empty.keys, &api, h, None, ip).is_ok());
            },
        );
    }
}
