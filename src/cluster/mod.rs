//! Several replicas as one gateway: the Redis connection they share and whether it is up.
//!
//! What is shared lives in the submodules: limits (`limits`: rpm, tpm and concurrency
//! counted in Redis by one script per request), events (`events`: cooldowns, provider
//! resets and key changes published to every replica). While Redis does not answer, each
//! replica falls back as `cluster.on_error` says and comes back to shared counting by
//! itself (a ping every second).
//!
//! The connection belongs to a runtime of its own (one thread), like the store's, so no
//! Pingora worker owns it; requests on any worker send their commands through it.

pub mod events;
pub mod limits;

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::config::ClusterSettings;
use crate::metrics;

pub struct Cluster {
    pub settings: ClusterSettings,
    client: redis::Client,
    /// The cluster runtime's own connection (pings, subscriptions' helpers).
    conn: ConnectionManager,
    /// One connection per thread that talks to Redis (each Pingora worker has its own
    /// runtime): a request's round trip then never hops to another thread and back.
    local_conns: dashmap::DashMap<std::thread::ThreadId, ConnectionManager>,
    manager_config: ConnectionManagerConfig,
    up: AtomicBool,
    /// This process, in lease ids and events (so a replica ignores its own).
    pub replica: String,
    next_lease: AtomicU64,
    /// Concurrency leases this process holds (lease id -> its sets), extended every 10 s
    /// while their requests run.
    pub(crate) held: dashmap::DashMap<String, Vec<String>>,
    runtime: Option<tokio::runtime::Runtime>,
}

/// Redis did not answer in time or refused.
#[derive(Debug)]
pub struct Down;

impl Cluster {
    /// Connects lazily: an unreachable Redis at start is a warning, and the gateway starts
    /// degraded (the pinger brings it up when Redis answers).
    pub fn start(settings: ClusterSettings) -> Result<Arc<Cluster>, String> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("modelgate-cluster")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the cluster runtime: {e}"))?;
        let client = redis::Client::open(settings.redis_url.as_str())
            .map_err(|e| format!("cluster.redis.url: {e}"))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.timeout.max(Duration::from_millis(200))))
            .set_response_timeout(Some(settings.timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let conn = {
            let _enter = runtime.enter();
            ConnectionManager::new_lazy_with_config(client.clone(), config.clone())
                .map_err(|e| format!("cluster.redis: {e}"))?
        };
        let mut id = [0u8; 6];
        getrandom::fill(&mut id).map_err(|e| format!("no randomness for a replica id: {e}"))?;
        let cluster = Arc::new(Cluster {
            settings,
            client,
            conn,
            local_conns: dashmap::DashMap::new(),
            manager_config: config,
            up: AtomicBool::new(false),
            replica: hex::encode(id),
            next_lease: AtomicU64::new(0),
            held: dashmap::DashMap::new(),
            runtime: Some(runtime),
        });
        metrics::CLUSTER_UP.set(0);
        let c = cluster.clone();
        let first = cluster.block_on(async move { c.ping().await });
        if !matches!(first, Some(Ok(()))) {
            log::warn!(
                "cluster: Redis at {} does not answer; starting degraded (on_error: {:?}) until it does",
                crate::store::redact_password(&cluster.settings.redis_url),
                cluster.settings.on_error
            );
        }
        let c = cluster.clone();
        cluster.spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let _ = c.ping().await;
            }
        });
        limits::start_refresher(&cluster);
        Ok(cluster)
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Records whether Redis answered; a change is logged once.
    fn mark(&self, up: bool) {
        let was = self.up.swap(up, Ordering::Relaxed);
        if was != up {
            metrics::CLUSTER_UP.set(i64::from(up));
            if up {
                log::info!(
                    "cluster: Redis answers; limits, budgets and cooldowns are shared again"
                );
            } else {
                log::warn!(
                    "cluster: Redis does not answer; on_error: {:?} applies until it does",
                    self.settings.on_error
                );
            }
        }
    }

    async fn ping(&self) -> Result<(), Down> {
        let mut conn = self.conn.clone();
        self.call(async move { redis::cmd("PING").query_async::<String>(&mut conn).await })
            .await
            .map(|_| ())
    }

    /// Runs one Redis exchange with the request-path timeout; marks Redis up or down.
    pub async fn call<T>(&self, f: impl Future<Output = redis::RedisResult<T>>) -> Result<T, Down> {
        match tokio::time::timeout(self.settings.timeout, f).await {
            Ok(Ok(v)) => {
                self.mark(true);
                Ok(v)
            }
            Ok(Err(e)) => {
                log::debug!("cluster: Redis: {e}");
                // An error reply (a script error, a wrong type) comes from a Redis that
                // answers; only a connection that fails means it is down.
                let unreachable = e.is_io_error()
                    || e.is_timeout()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal();
                self.mark(!unreachable);
                Err(Down)
            }
            Err(_) => {
                self.mark(false);
                Err(Down)
            }
        }
    }

    /// A connection driven by the calling thread's runtime when it has one (made on
    /// first use), else the cluster runtime's.
    pub fn conn(&self) -> ConnectionManager {
        if tokio::runtime::Handle::try_current().is_err() {
            return self.conn.clone();
        }
        let id = std::thread::current().id();
        if let Some(c) = self.local_conns.get(&id) {
            return c.clone();
        }
        match ConnectionManager::new_lazy_with_config(
            self.client.clone(),
            self.manager_config.clone(),
        ) {
            Ok(c) => {
                self.local_conns.insert(id, c.clone());
                c
            }
            Err(_) => self.conn.clone(),
        }
    }

    /// Spawns `f` on the calling thread's runtime (where its connection lives), or on the
    /// cluster's outside any runtime.
    pub fn spawn_here<F: Future<Output = ()> + Send + 'static>(&self, f: F) {
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                h.spawn(f);
            }
            Err(_) => self.spawn(f),
        }
    }

    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    /// `prefix` + `name`.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.settings.prefix)
    }

    pub fn lease_id(&self) -> String {
        let n = self.next_lease.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", self.replica)
    }

    /// Spawns `f` on the cluster's runtime (releases, refreshes, subscriptions).
    pub fn spawn<F: Future<Output = ()> + Send + 'static>(&self, f: F) {
        if let Some(rt) = &self.runtime {
            rt.spawn(f);
        }
    }

    fn block_on<T>(&self, f: impl Future<Output = T>) -> Option<T> {
        self.runtime.as_ref().map(|rt| rt.block_on(f))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
