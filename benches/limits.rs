//! Cost of limit admission per request: `cargo bench --bench limits`.

use std::future::Future;
use std::hint::black_box;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use modelgate::limits::{Admission, KeyLimits, LimitRequest, LimitSet, Limiter, Rejection};

/// The local backend never waits: its future is ready at the first poll.
fn admit(
    lim: &Limiter,
    key_name: &str,
    key_limits: &KeyLimits,
    model: &str,
    model_limits: Option<(&str, &LimitSet)>,
    estimate: u64,
) -> Result<Admission, Box<Rejection>> {
    let r = LimitRequest {
        key_name,
        key_limits,
        model,
        model_limits,
        estimate,
        budgets: &[],
    };
    let mut fut = std::pin::pin!(lim.admit(&r));
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(r) => r,
        Poll::Pending => unreachable!("the local backend does not wait"),
    }
}

fn bench(name: &str, iters: u32, mut f: impl FnMut(u32)) {
    for i in 0..iters / 10 {
        f(i);
    }
    let start = Instant::now();
    for i in 0..iters {
        f(i);
    }
    let ns = start.elapsed().as_nanos() as f64 / f64::from(iters);
    println!("{name:<48} {ns:>8.0} ns/request");
}

fn main() {
    let lim = Limiter::default();
    let none = KeyLimits::default();
    let all = KeyLimits {
        base: LimitSet {
            rpm: Some(u64::MAX / 4),
            tpm: Some(u64::MAX / 4),
            concurrency: Some(1 << 40),
        },
        models: vec![],
    };
    let grouped = KeyLimits {
        base: all.base,
        models: vec![(
            "gpt-*".into(),
            wildmatch::WildMatch::new("gpt-*"),
            LimitSet {
                rpm: Some(u64::MAX / 4),
                ..Default::default()
            },
        )],
    };
    let global = LimitSet {
        rpm: Some(u64::MAX / 4),
        ..Default::default()
    };
    // `cargo test --all-targets` runs this too (without `--bench`): a short smoke run then.
    let n = if std::env::args().any(|a| a == "--bench") {
        2_000_000
    } else {
        2_000
    };
    bench("key without limits", n, |_| {
        black_box(admit(&lim, "bench", &none, "gpt-4o", None, 100).ok());
    });
    bench("rpm + tpm + concurrency, reconciled", n, |_| {
        let mut a = admit(&lim, "bench", &all, "gpt-4o", None, 100).ok();
        if let Some(a) = a.as_mut() {
            a.settle(Some(120));
        }
        black_box(a);
    });
    bench("key + model group + global model limits", n, |_| {
        black_box(
            admit(
                &lim,
                "bench",
                &grouped,
                "gpt-4o",
                Some(("gpt-4o", &global)),
                100,
            )
            .ok(),
        );
    });
    bench("1000 distinct keys, all limits", n, |i| {
        let key = format!("key-{}", i % 1000);
        black_box(admit(&lim, &key, &all, "gpt-4o", None, 100).ok());
    });
}
