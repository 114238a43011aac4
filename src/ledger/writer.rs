//! The ledger's writer task: drains the queue, writes batches every `flush_interval` (or
//! sooner when a full batch is waiting), keeps records across store outages up to the
//! buffer, and purges what is past retention once an hour.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, oneshot};

use super::{Command, Counters, LedgerSettings, UsageRecord};
use crate::metrics;
use crate::store::{usage, Store};

/// Rows per transaction: large enough to amortise the commit, small enough to keep each
/// statement under both databases' parameter limits (see `store::usage`).
const BATCH: usize = 4096;
const PURGE_EVERY: Duration = Duration::from_secs(3600);
/// How often the queue is moved into the writer's hands (at most `flush_interval`).
const DRAIN_EVERY: Duration = Duration::from_millis(50);

pub struct Writer {
    store: Arc<Store>,
    settings: LedgerSettings,
    counters: Arc<Counters>,
    pending: VecDeque<UsageRecord>,
    /// Flushes waiting for `pending` to be written.
    waiting: Vec<oneshot::Sender<()>>,
    failing_since: Option<Instant>,
    last_purge: Option<Instant>,
}

impl Writer {
    pub fn new(store: Arc<Store>, settings: LedgerSettings, counters: Arc<Counters>) -> Self {
        Writer {
            store,
            settings,
            counters,
            pending: VecDeque::new(),
            waiting: Vec::new(),
            failing_since: None,
            last_purge: None,
        }
    }

    pub async fn run(
        mut self,
        mut records: mpsc::Receiver<UsageRecord>,
        mut commands: mpsc::Receiver<Command>,
    ) {
        // The queue is drained on a timer, never awaited: a writer parked in `recv` would
        // be woken (a cross-thread wake-up) by every request.
        let drain_every = self.settings.flush_interval.min(DRAIN_EVERY);
        let mut drain = tokio::time::interval(drain_every);
        drain.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_write = Instant::now();
        loop {
            tokio::select! {
                command = commands.recv() => {
                    let closed = self.drain(&mut records);
                    match command {
                        Some(Command::Flush(done)) => self.waiting.push(done),
                        None => {
                            self.write_pending().await;
                            return;
                        }
                    }
                    self.write_pending().await;
                    last_write = Instant::now();
                    if closed {
                        return;
                    }
                }
                _ = drain.tick() => {
                    let closed = self.drain(&mut records);
                    let due = last_write.elapsed() >= self.settings.flush_interval;
                    let full = self.pending.len() >= BATCH && self.failing_since.is_none();
                    if due || full || closed {
                        self.write_pending().await;
                        last_write = Instant::now();
                        self.purge_if_due().await;
                    }
                    if closed {
                        return;
                    }
                }
            }
        }
    }

    /// Moves what is queued into `pending`; `true` once every sender is gone.
    fn drain(&mut self, records: &mut mpsc::Receiver<UsageRecord>) -> bool {
        loop {
            match records.try_recv() {
                Ok(rec) => self.keep(rec),
                Err(mpsc::error::TryRecvError::Empty) => return false,
                Err(mpsc::error::TryRecvError::Disconnected) => return true,
            }
        }
    }

    /// Holds a record until it is written; beyond the buffer it is dropped and counted.
    fn keep(&mut self, rec: UsageRecord) {
        if self.pending.len() >= self.settings.buffer.max(1) {
            self.counters.pending.fetch_sub(1, Ordering::Relaxed);
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            metrics::STORE_PENDING.dec();
            metrics::STORE_DROPPED.inc();
            return;
        }
        self.pending.push_back(rec);
    }

    /// Writes every pending record, batch by batch; stops at the first failure (the
    /// records stay, and the next tick tries again).
    async fn write_pending(&mut self) {
        let pool = self.store.pool();
        while !self.pending.is_empty() {
            let n = self.pending.len().min(BATCH);
            let batch = &self.pending.make_contiguous()[..n];
            match usage::write_batch(&pool, batch).await {
                Ok(()) => {
                    self.pending.drain(..n);
                    self.counters.written.fetch_add(n as u64, Ordering::Relaxed);
                    self.counters.pending.fetch_sub(n as u64, Ordering::Relaxed);
                    metrics::STORE_PENDING.sub(n as i64);
                    if let Some(since) = self.failing_since.take() {
                        log::info!(
                            "usage store reachable again after {:.1}s; {} record(s) still to write",
                            since.elapsed().as_secs_f64(),
                            self.pending.len()
                        );
                    }
                }
                Err(e) => {
                    self.counters.failures.fetch_add(1, Ordering::Relaxed);
                    metrics::STORE_WRITE_FAILURES.inc();
                    if self.failing_since.is_none() {
                        self.failing_since = Some(Instant::now());
                        log::error!(
                            "usage store write failed ({}); holding up to {} record(s) in memory and retrying every {:?}",
                            usage::describe(&e),
                            self.settings.buffer,
                            self.settings.flush_interval
                        );
                    }
                    return;
                }
            }
        }
        for done in self.waiting.drain(..) {
            let _ = done.send(());
        }
    }

    async fn purge_if_due(&mut self) {
        if self.last_purge.is_some_and(|t| t.elapsed() < PURGE_EVERY)
            || self.failing_since.is_some()
        {
            return;
        }
        self.last_purge = Some(Instant::now());
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let before = |keep: Duration| now.saturating_sub(keep).as_secs() as i64;
        let (records, rollups) = (
            before(self.settings.retention_records),
            before(self.settings.retention_rollups),
        );
        if let Err(e) = usage::purge(&self.store.pool(), records, rollups).await {
            log::warn!(
                "usage store: purging old records failed: {}",
                usage::describe(&e)
            );
        }
    }
}
