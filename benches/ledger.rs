//! Ledger benchmarks (not tests; `cargo bench --bench ledger`, std-only harness):
//! 1. the writer's throughput: records pushed through the real queue and writer into a
//!    SQLite file, in records per second written;
//! 2. the usage API's queries over a ledger of `LEDGER_RECORDS` records (default 10
//!    million; set `LEDGER_RECORDS` lower for a quick run): aggregated (daily and hourly
//!    rollups) and raw records, in milliseconds.
//!
//! A Postgres URL in `LEDGER_PG_URL` runs part 1 against it as well.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use modelgate::ledger::{Ledger, LedgerSettings, UsageRecord};
use modelgate::store::usage::{self, Dim, RecordsQuery, UsageQuery};
use modelgate::store::{Store, StoreUrl};

const DAY_MS: i64 = 86_400_000;
/// Live traffic: records of the last 10 minutes (100 keys × 5 models × 3 providers).
const LIVE_SPREAD_MS: i64 = 600_000;
const START_MS: i64 = 1_796_083_200_000; // 2026-12-01T00:00:00Z

fn record(i: u64, spread_ms: i64) -> UsageRecord {
    UsageRecord {
        time_ms: START_MS + (i as i64 * 7919) % spread_ms,
        request_id: format!("mg-bench-{i:012x}"),
        key: format!("key-{}", i % 100),
        team: format!("team-{}", i % 7),
        model: [
            "gpt-4o",
            "gpt-4o-mini",
            "claude-sonnet-4-5",
            "gemini-2.5-flash",
            "o4-mini",
        ][(i % 5) as usize]
            .to_string(),
        provider: ["openai", "anthropic", "gemini"][(i % 3) as usize].to_string(),
        target_model: "upstream-model".to_string(),
        status: if i.is_multiple_of(50) { 502 } else { 200 },
        error_code: None,
        attempts: 1,
        prompt_tokens: 900 + i % 200,
        completion_tokens: 200 + i % 50,
        cached_tokens: 0,
        cache_write_tokens: 0,
        reasoning_tokens: 0,
        cost_usd: 0.0021,
        duration_ms: 850.0,
        ttfb_ms: Some(210.0),
        stream: i.is_multiple_of(2),
    }
}

fn throughput(label: &str, store: Arc<Store>, n: u64) {
    let settings = LedgerSettings {
        flush_interval: Duration::from_secs(1),
        buffer: 1_000_000,
        ..LedgerSettings::default()
    };
    let ledger = Ledger::new(settings);
    ledger.attach(store.clone());
    let t = Instant::now();
    // Pushed at 20,000/s (the target rate), in bursts of 1000 every 50 ms.
    let mut pushed = 0;
    while pushed < n {
        for _ in 0..1000 {
            ledger.push(record(pushed, LIVE_SPREAD_MS));
            pushed += 1;
        }
        let due = Duration::from_micros(pushed * 50);
        if let Some(wait) = due.checked_sub(t.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    let ok = store
        .block_on(ledger.flush(Duration::from_secs(120)))
        .unwrap_or(false);
    let secs = t.elapsed().as_secs_f64();
    let c = ledger.counters();
    println!(
        "{label}: {n} records offered at 20000/s, written {} in {secs:.2}s ({:.0} records/s), dropped {}, flushed {ok}",
        c.written.load(Ordering::Relaxed),
        c.written.load(Ordering::Relaxed) as f64 / secs,
        c.dropped.load(Ordering::Relaxed),
    );
    // Unthrottled: how fast the writer drains a backlog.
    let before = c.written.load(Ordering::Relaxed);
    let t = Instant::now();
    for i in 0..n {
        ledger.push(record(n + i, LIVE_SPREAD_MS));
    }
    store
        .block_on(ledger.flush(Duration::from_secs(300)))
        .unwrap_or(false);
    let secs = t.elapsed().as_secs_f64();
    let written = c.written.load(Ordering::Relaxed) - before;
    println!(
        "{label}: backlog of {n} drained in {secs:.2}s ({:.0} records/s), dropped {}",
        written as f64 / secs,
        c.dropped.load(Ordering::Relaxed)
    );
}

fn timed<T>(label: &str, store: &Store, f: impl std::future::Future<Output = T>) -> T {
    let t = Instant::now();
    let out = store.block_on(f).expect("store open");
    println!("  {label}: {:.1} ms", t.elapsed().as_secs_f64() * 1000.0);
    out
}

fn queries(dir: &std::path::Path, total: u64) {
    let path = dir.join("big.db");
    let store = Store::open(&StoreUrl::Sqlite(path.clone())).expect("store");
    let pool = store.pool();
    let t = Instant::now();
    let batch = 4096;
    let mut i = 0;
    while i < total {
        let n = batch.min(total - i);
        let recs: Vec<UsageRecord> = (i..i + n).map(|j| record(j, 30 * DAY_MS)).collect();
        store
            .block_on(usage::write_batch(&pool, &recs))
            .expect("open")
            .expect("write");
        i += n;
    }
    println!(
        "ledger of {total} records over 30 days, 100 keys, 5 models written in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    // What the writer's hourly retention pass does (it also runs PRAGMA optimize).
    let t = Instant::now();
    store
        .block_on(usage::purge(&pool, 0, 0))
        .expect("open")
        .expect("purge");
    println!(
        "retention pass (nothing to delete) + optimize: {:.1}s",
        t.elapsed().as_secs_f64()
    );
    let month = UsageQuery {
        from: START_MS / 1000,
        to: START_MS / 1000 + 31 * 86_400,
        group_by: vec![Dim::Key, Dim::Model, Dim::Day],
        ..UsageQuery::default()
    };
    for _ in 0..2 {
        let rows = timed(
            "usage, this month, group_by=key,model,day (daily rollups)",
            &store,
            usage::aggregate(&pool, &month),
        )
        .unwrap();
        println!("    {} rows", rows.len());
        let q = UsageQuery {
            from: START_MS / 1000 + 3600,
            group_by: vec![Dim::Key, Dim::Model],
            ..month.clone()
        };
        let rows = timed(
            "usage, from an hour in, group_by=key,model (hourly rollups)",
            &store,
            usage::aggregate(&pool, &q),
        )
        .unwrap();
        println!("    {} rows", rows.len());
        let q = UsageQuery {
            key: Some("key-42".into()),
            group_by: vec![Dim::Hour],
            ..month.clone()
        };
        let rows = timed(
            "usage, one key, group_by=hour",
            &store,
            usage::aggregate(&pool, &q),
        )
        .unwrap();
        println!("    {} rows", rows.len());
        let q = RecordsQuery {
            limit: 100,
            ..RecordsQuery::default()
        };
        timed("records, newest 100", &store, usage::records(&pool, &q)).unwrap();
        let q = RecordsQuery {
            limit: 100,
            key: Some("key-42".into()),
            ..RecordsQuery::default()
        };
        timed(
            "records, newest 100 of one key",
            &store,
            usage::records(&pool, &q),
        )
        .unwrap();
        let q = RecordsQuery {
            limit: 10,
            request_id: Some("mg-bench-000000abcdef".into()),
            ..RecordsQuery::default()
        };
        timed("records, by request_id", &store, usage::records(&pool, &q)).unwrap();
        let mut load = modelgate::spend::SpendLoad::default();
        timed(
            "spend since 33 days (budgets at start)",
            &store,
            usage::spend(&pool, START_MS / 1000 - 86_400, |r| load.add(r)),
        )
        .unwrap();
        println!("  ({} spend rows)", load.rows());
    }
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    println!("database file: {:.0} MiB", size as f64 / 1048576.0);
}

fn main() {
    // `cargo test --all-targets` runs this too (without `--bench`): a short smoke run then.
    let full = std::env::args().any(|a| a == "--bench");
    let offered = if full { 200_000 } else { 2_000 };
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::open(&StoreUrl::Sqlite(dir.path().join("w.db"))).expect("store"));
    throughput("sqlite", store, offered);
    if let Ok(url) = std::env::var("LEDGER_PG_URL") {
        let store = Arc::new(Store::open(&StoreUrl::Postgres(url)).expect("pg store"));
        throughput("postgres", store, offered);
    }
    let total = std::env::var("LEDGER_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if full { 10_000_000 } else { 5_000 });
    queries(dir.path(), total);
}
