//! The live configuration, the live state and the process lifecycle: an `ArcSwap<Config>`
//! that requests snapshot once, the `State` that outlives every config (health, limits,
//! the access ring), SIGHUP reloads, and SIGTERM draining (`/health` 503 for
//! `drain_delay`, then stop accepting and exit as soon as in-flight requests are done,
//! within `grace_period`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch, ShutdownWatch};
use pingora::services::background::BackgroundService;

use crate::access_log::AccessRing;
use crate::config::{self, Config};
use crate::health::Health;
use crate::keys::ApiKeys;
use crate::ledger::Ledger;
use crate::limits::Limiter;
use crate::metrics;
use crate::spend::BudgetBook;
use crate::store::Store;

/// Live state: everything a request changes that must outlive the config it ran under.
/// No statics hold request state; tests build one `State` per case.
#[derive(Default)]
pub struct State {
    pub health: Health,
    pub limits: Limiter,
    pub access: AccessRing,
    /// What every key and team has spent, for budgets.
    pub spend: Arc<BudgetBook>,
    /// The usage ledger; `None` only in tests that run without a store.
    pub ledger: Option<Arc<Ledger>>,
    /// Keys made through the keys API.
    pub keys: Arc<ApiKeys>,
    /// The Redis shared by replicas (`cluster`), when configured.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// Where each file, batch, stored response and operation lives.
    pub objects: crate::objects::Objects,
}

impl State {
    /// The store, once open (`-d` opens it after the fork).
    pub fn store(&self) -> Option<Arc<Store>> {
        self.ledger.as_ref()?.store().cloned()
    }

    /// At exit: what is only in memory goes to the store (keys' last use, the ledger's
    /// queue). Blocking; called outside any runtime.
    pub fn close(&self, config: &Config) {
        if let Some(store) = self.store() {
            match store.block_on(self.keys.persist_activity(&store, config)) {
                Ok(Err(e)) | Err(e) => log::warn!("{e}"),
                Ok(Ok(())) => {}
            }
        }
        if let Some(l) = &self.ledger {
            l.close(crate::server::LEDGER_CLOSE_TIMEOUT);
        }
    }
}

pub struct Runtime {
    config: ArcSwap<Config>,
    pub state: State,
    /// The file SIGHUP re-reads; `None` in demo mode.
    path: Option<PathBuf>,
    draining: AtomicBool,
    active_requests: AtomicUsize,
    /// Serialises reloads (SIGHUP and the management API may race).
    reload_lock: Mutex<()>,
}

impl Runtime {
    pub fn new(config: Config, path: Option<PathBuf>) -> Arc<Self> {
        Self::with_state(config, path, State::default())
    }

    pub fn with_state(config: Config, path: Option<PathBuf>, state: State) -> Arc<Self> {
        state.keys.adopt_config(&config, None);
        Arc::new(Runtime {
            config: ArcSwap::from_pointee(config),
            state,
            path,
            draining: AtomicBool::new(false),
            active_requests: AtomicUsize::new(0),
            reload_lock: Mutex::new(()),
        })
    }

    /// The current config; a request takes this once and keeps it to the end.
    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Re-reads the config file. A valid config replaces the running one for new
    /// requests; an invalid one changes nothing. Either way the outcome is counted.
    pub fn reload(&self) -> Result<(), String> {
        let _guard = self.reload_lock.lock().unwrap_or_else(|p| p.into_inner());
        let Some(path) = &self.path else {
            metrics::record_reload(false);
            return Err("no config file to reload (demo mode)".to_string());
        };
        match config::load_file(path) {
            Ok(loaded) => {
                for w in &loaded.warnings {
                    log::warn!("{w}");
                }
                let old = self.config.load();
                let changed = restart_only_changes(&old.server, &loaded.config.server);
                if !changed.is_empty() {
                    log::warn!(
                        "config reload: server.{} changed and take(s) effect only after a restart or an upgrade (-u); the rest of the new config is live",
                        changed.join(", server.")
                    );
                }
                if old.store != loaded.config.store {
                    log::warn!("config reload: store.* settings take effect only after a restart");
                }
                if old.cluster != loaded.config.cluster {
                    log::warn!(
                        "config reload: cluster.* settings take effect only after a restart"
                    );
                }
                self.state.keys.adopt_config(&loaded.config, Some(&old));
                self.config.store(Arc::new(loaded.config));
                metrics::record_reload(true);
                log::info!("config reloaded from {}", path.display());
                Ok(())
            }
            Err(e) => {
                metrics::record_reload(false);
                let msg = e.to_string();
                log::error!("config reload failed, keeping the running config:\n{msg}");
                Err(msg)
            }
        }
    }

    /// Validates `text` as a config; if valid, writes it over the config file atomically
    /// (temp file + rename in the same directory, the old file kept as `FILE.bak`) and
    /// switches to it. Nothing changes when it is invalid.
    pub fn replace_config(&self, text: &str) -> Result<(), ReplaceError> {
        let _guard = self.reload_lock.lock().unwrap_or_else(|p| p.into_inner());
        let Some(path) = &self.path else {
            return Err(ReplaceError::NoFile);
        };
        let loaded = config::load_str(text, &path.display().to_string(), &|n| {
            std::env::var(n).ok()
        })
        .map_err(|e| ReplaceError::Invalid(e.to_string().lines().map(String::from).collect()))?;
        let io = |e: std::io::Error| ReplaceError::Io(e.to_string());
        let mut bak = path.clone().into_os_string();
        bak.push(".bak");
        // A temp file made exclusively beside the config (a random name, never a link
        // someone planted), given the file's own mode and owner: a 0600 secrets file
        // stays 0600.
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."));
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
        {
            use std::io::Write;
            tmp.write_all(text.as_bytes()).map_err(io)?;
            tmp.as_file().sync_all().map_err(io)?;
        }
        if let Ok(meta) = std::fs::metadata(path) {
            use std::os::unix::fs::MetadataExt;
            std::fs::set_permissions(tmp.path(), meta.permissions()).map_err(io)?;
            // Only root may give a file away; anyone else already owns what they make.
            let _ = std::os::unix::fs::chown(tmp.path(), Some(meta.uid()), Some(meta.gid()));
            // The old .bak is removed first, so a link planted there is not written through.
            let _ = std::fs::remove_file(&bak);
            std::fs::copy(path, &bak).map_err(io)?;
        }
        tmp.persist(path).map_err(|e| io(e.error))?;
        for w in &loaded.warnings {
            log::warn!("{w}");
        }
        self.state
            .keys
            .adopt_config(&loaded.config, Some(&self.config.load()));
        self.config.store(Arc::new(loaded.config));
        metrics::record_reload(true);
        log::info!("config replaced through the management API and reloaded");
        Ok(())
    }

    /// Counts a request as in flight until the guard drops.
    pub fn track_request(self: &Arc<Self>) -> ActiveRequest {
        self.active_requests.fetch_add(1, Ordering::Relaxed);
        ActiveRequest(self.clone())
    }

    pub fn active_requests(&self) -> usize {
        self.active_requests.load(Ordering::Relaxed)
    }
}

pub enum ReplaceError {
    /// The validation errors, one per line, each naming its field.
    Invalid(Vec<String>),
    /// Demo mode: there is no file.
    NoFile,
    Io(String),
}

pub struct ActiveRequest(Arc<Runtime>);

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        self.0.active_requests.fetch_sub(1, Ordering::Relaxed);
    }
}

/// SIGHUP -> reload.
pub struct ConfigReloader {
    pub runtime: Arc<Runtime>,
}

#[async_trait]
impl BackgroundService for ConfigReloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                log::error!("cannot install the SIGHUP handler, reload by signal is off: {e}");
                return;
            }
        };
        loop {
            tokio::select! {
                _ = hup.recv() => {
                    log::info!("SIGHUP: reloading the config");
                    let rt = self.runtime.clone();
                    // File I/O and validation off the async workers.
                    let result = tokio::task::spawn_blocking(move || rt.reload())
                        .await
                        .unwrap_or_else(|e| Err(format!("reload task failed: {e}")));
                    let event = crate::audit::Event {
                        action: "config.reload",
                        target: "config",
                        client_ip: None,
                        actor: "signal",
                    };
                    let outcome = result.map(|()| None).map_err(|e| ("invalid_config", e));
                    crate::audit::record(&self.runtime.state, event, outcome).await;
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// The `server` settings that a reload changed but only a restart applies.
fn restart_only_changes(
    old: &config::ServerSettings,
    new: &config::ServerSettings,
) -> Vec<&'static str> {
    let mut out = Vec::new();
    let mut check = |changed: bool, name: &'static str| {
        if changed {
            out.push(name);
        }
    };
    check(old.listen != new.listen, "listen");
    check(old.metrics_listen != new.metrics_listen, "metrics_listen");
    check(old.threads != new.threads, "threads");
    check(old.grace_period != new.grace_period, "grace_period");
    check(old.pid_file != new.pid_file, "pid_file");
    check(old.upgrade_sock != new.upgrade_sock, "upgrade_sock");
    check(old.ca_file != new.ca_file, "ca_file");
    out
}

/// Pingora's signal handling with a drain phase in front of SIGTERM and an early exit
/// once idle (Pingora alone would sleep the whole grace period).
pub struct DrainingShutdown {
    pub runtime: Arc<Runtime>,
}

#[async_trait]
impl ShutdownSignalWatch for DrainingShutdown {
    async fn recv(&self) -> ShutdownSignal {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut quit), Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::quit()),
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            log::error!("cannot install signal handlers");
            return ShutdownSignal::FastShutdown;
        };
        tokio::select! {
            _ = quit.recv() => {
                log::info!("SIGQUIT: graceful upgrade, handing listeners over");
                ShutdownSignal::GracefulUpgrade
            }
            _ = int.recv() => {
                log::info!("SIGINT: fast shutdown");
                ShutdownSignal::FastShutdown
            }
            _ = term.recv() => {
                let server = self.runtime.config().server.clone();
                self.runtime.draining.store(true, Ordering::Relaxed);
                log::info!(
                    "SIGTERM: draining; /health answers 503 for {:?}, then the listeners close",
                    server.drain_delay
                );
                tokio::time::sleep(server.drain_delay).await;
                exit_when_idle(self.runtime.clone(), server.grace_period);
                ShutdownSignal::GracefulTerminate
            }
        }
    }
}

/// Once the listeners are closed, exits the process as soon as no request is in flight,
/// or leaves it to Pingora's grace period timer.
fn exit_when_idle(runtime: Arc<Runtime>, grace: Duration) {
    std::thread::spawn(move || {
        let start = Instant::now();
        // Let Pingora stop accepting before counting.
        std::thread::sleep(Duration::from_millis(100));
        while start.elapsed() < grace {
            if runtime.active_requests() == 0 {
                log::info!("all requests finished; exiting");
                runtime.state.close(&runtime.config());
                std::process::exit(0);
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        log::warn!(
            "grace period over with {} request(s) still in flight",
            runtime.active_requests()
        );
    });
}
