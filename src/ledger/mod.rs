//! The usage ledger: one record per request (metadata only, never content), handed off
//! the request path through a bounded queue to a writer that batches them into the store
//! every `flush_interval`, with the hourly and daily rollups in the same transaction.
//!
//! While the store is unreachable the writer keeps up to `store.buffer` records and
//! retries; beyond that records are dropped and counted, never blocking a request.
//! `close` writes everything queued before the process exits or the store changes.

mod writer;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::metrics;
use crate::store::Store;

/// One request, as the ledger keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageRecord {
    /// Unix milliseconds of the request's start.
    pub time_ms: i64,
    pub request_id: String,
    pub key: String,
    /// Empty when the key has no team.
    pub team: String,
    /// The public model the client asked for.
    pub model: String,
    pub provider: String,
    pub target_model: String,
    pub status: u16,
    pub error_code: Option<String>,
    pub attempts: u32,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_tokens: u64,
    pub cache_write_tokens: u64,
    pub reasoning_tokens: u64,
    pub cost_usd: f64,
    pub duration_ms: f64,
    pub ttfb_ms: Option<f64>,
    pub stream: bool,
}

impl UsageRecord {
    /// Whether it is spend: a request that failed used nothing of any budget.
    pub fn is_spend(&self) -> bool {
        self.status < 400
    }
}

/// Ledger settings, from `store`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LedgerSettings {
    pub flush_interval: Duration,
    /// Records held while the store is unreachable.
    pub buffer: usize,
    pub retention_records: Duration,
    pub retention_rollups: Duration,
}

impl Default for LedgerSettings {
    fn default() -> Self {
        LedgerSettings {
            flush_interval: Duration::from_secs(1),
            buffer: 100_000,
            retention_records: Duration::from_secs(30 * 86_400),
            retention_rollups: Duration::from_secs(400 * 86_400),
        }
    }
}

enum Command {
    /// Write everything queued so far, then answer.
    Flush(oneshot::Sender<()>),
}

/// The request side of the ledger: `push` never blocks and never fails a request.
/// Records queue from the start; the writer begins once a store is attached (after
/// Pingora has daemonized, when it does: no store thread may exist before the fork).
pub struct Ledger {
    records: mpsc::Sender<UsageRecord>,
    commands: mpsc::Sender<Command>,
    receivers: Mutex<Option<(mpsc::Receiver<UsageRecord>, mpsc::Receiver<Command>)>>,
    settings: LedgerSettings,
    store: OnceLock<Arc<Store>>,
    writer: Mutex<Option<tokio::task::JoinHandle<()>>>,
    counters: Arc<Counters>,
}

/// What the writer did, for metrics and tests.
#[derive(Default)]
pub struct Counters {
    pub written: AtomicU64,
    pub dropped: AtomicU64,
    pub failures: AtomicU64,
    pub pending: AtomicU64,
}

impl Ledger {
    pub fn new(settings: LedgerSettings) -> Ledger {
        // The queue holds what arrives between drains and during a write that waits for an
        // unreachable store; the writer holds up to `buffer` more. Its blocks are
        // allocated as they fill, so a large bound costs nothing until used.
        let (records, rx) = mpsc::channel(settings.buffer.max(1024));
        let (commands, crx) = mpsc::channel(16);
        Ledger {
            records,
            commands,
            receivers: Mutex::new(Some((rx, crx))),
            settings,
            store: OnceLock::new(),
            writer: Mutex::new(None),
            counters: Arc::new(Counters::default()),
        }
    }

    /// Starts the writer on `store`'s runtime (once; later calls change nothing).
    pub fn attach(&self, store: Arc<Store>) {
        let Some((rx, crx)) = self
            .receivers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        else {
            return;
        };
        let w = writer::Writer::new(store.clone(), self.settings, self.counters.clone());
        let handle = store.spawn(w.run(rx, crx));
        *self.writer.lock().unwrap_or_else(|p| p.into_inner()) = handle;
        let _ = self.store.set(store);
    }

    /// Queues a record; when the queue is full the record is dropped and counted.
    pub fn push(&self, rec: UsageRecord) {
        match self.records.try_send(rec) {
            Ok(()) => {
                self.counters.pending.fetch_add(1, Ordering::Relaxed);
                metrics::STORE_PENDING.inc();
            }
            Err(_) => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                metrics::STORE_DROPPED.inc();
            }
        }
    }

    /// The store, once attached.
    pub fn store(&self) -> Option<&Arc<Store>> {
        self.store.get()
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Writes everything queued so far (awaitable from any runtime); `false` when the
    /// store did not take it within `timeout`.
    pub async fn flush(&self, timeout: Duration) -> bool {
        if self.store.get().is_none() {
            return false;
        }
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Flush(tx)).await.is_err() {
            return false;
        }
        tokio::time::timeout(timeout, rx)
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// The final flush, from a thread outside any runtime (process exit): waits up to
    /// `timeout` for queued records to be written.
    pub fn close(&self, timeout: Duration) {
        let Some(store) = self.store.get() else {
            return;
        };
        let pending = self.counters.pending.load(Ordering::Relaxed);
        let done = store.block_on(self.flush(timeout)).unwrap_or(false);
        if done {
            log::info!("usage ledger flushed ({pending} record(s) were queued)");
        } else {
            log::error!(
                "usage ledger: {} record(s) could not be written before exit (store unreachable)",
                self.counters.pending.load(Ordering::Relaxed)
            );
        }
        if let Some(h) = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take() {
            h.abort();
        }
    }
}
