//! Builds and runs the Pingora server: the proxy service on `server.listen`, the metrics
//! service on `server.metrics_listen`, the SIGHUP reloader, and (demo) the mock provider.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use pingora::apps::http_app::HttpServer;
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{RunArgs, Server};
use pingora::services::background::background_service;
use pingora::services::listening::Service;

use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::config::Config;
use crate::keys::ApiKeys;
use crate::ledger::Ledger;
use crate::runtime::{ConfigReloader, DrainingShutdown, Runtime, State};
use crate::spend::{BudgetBook, SpendLoad};
use crate::store::{usage as store_usage, Store, StoreUrl};
use crate::{demo, metrics, proxy};

/// Each client connection's read buffer, instead of Pingora's 64 KiB: any usual request
/// header fits, a larger body read bypasses it, and an idle connection costs about 3 KiB
/// less (BENCHMARKS.md, 2026-12-03).
const CLIENT_READ_BUFFER: usize = 16 * 1024;

pub struct RunOptions {
    pub config: Config,
    /// `--store`: overrides `store.url` (the demo passes `memory` unless given one).
    pub store_url: Option<String>,
    /// The file SIGHUP re-reads (`None` in demo mode).
    pub config_path: Option<PathBuf>,
    /// Where the demo's mock provider listens, in demo mode.
    pub demo_mock_listen: Option<String>,
    /// Take over listening sockets from a running instance (`-u`).
    pub upgrade: bool,
    pub daemon: bool,
}

/// Installs a SIGHUP handler right away: its default action would kill the process if a
/// reload signal arrived before the reloader service starts.
pub fn guard_sighup_early() {
    if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        rt.block_on(async {
            if let Err(e) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
                log::warn!("cannot install the SIGHUP handler early: {e}");
            }
        });
    }
}

/// The folder a relative `sqlite://` path is in: systemd's `$STATE_DIRECTORY`, else the
/// config file's folder, else the working directory.
pub fn store_base(config_path: Option<&Path>) -> PathBuf {
    if let Some(dir) = std::env::var_os("STATE_DIRECTORY").filter(|d| !d.is_empty()) {
        let first = dir
            .to_string_lossy()
            .split(':')
            .next()
            .unwrap_or("")
            .to_string();
        if !first.is_empty() {
            return PathBuf::from(first);
        }
    }
    config_path
        .and_then(Path::parent)
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Opens the store `url` names (relative to `base`), or says why not.
pub fn open_store(url: &str, base: &Path) -> Result<Store, String> {
    let url = StoreUrl::parse(url, base).map_err(|e| format!("store.url: {e}"))?;
    Store::open(&url)
}

/// Loads what every key and team has spent into `book`: hourly rollups as far back as
/// any calendar period reaches, and the all-time totals.
pub fn load_spend(store: &Store, book: &BudgetBook) -> Result<(), String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let since = now - 33 * 86_400;
    let mut load = SpendLoad::default();
    store
        .block_on(store_usage::spend(&store.pool(), since, |r| load.add(r)))?
        .map_err(|e| format!("cannot read spend from the store: {e}"))?;
    log::debug!("spend loaded from {} ledger rows", load.rows());
    book.install(load);
    Ok(())
}

// Long on purpose: the Pingora server assembled in one place, each service in start order.
pub fn run(opts: RunOptions) -> ! {
    metrics::init();
    metrics::CONFIG_LAST_RELOAD_SUCCESS.set(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or_default(),
    );
    guard_sighup_early();
    let settings = opts.config.server.clone();
    let mut conf = ServerConf {
        threads: settings.threads,
        // Upper bound only: the drain logic exits as soon as nothing is in flight.
        grace_period_seconds: Some(settings.grace_period.as_secs_f64().ceil() as u64),
        graceful_shutdown_timeout_seconds: Some(1),
        upgrade_sock: settings.upgrade_sock.clone(),
        pid_file: settings.pid_file.clone(),
        daemon: opts.daemon,
        ca_file: settings.ca_file.clone(),
        // One single-threaded runtime per worker thread: no cross-thread wakeups per I/O
        // event (measured in BENCHMARKS.md).
        work_stealing: false,
        ..ServerConf::default()
    };
    conf.upstream_keepalive_pool_size = 256;
    let opt = Opt {
        upgrade: opts.upgrade,
        daemon: opts.daemon,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();

    let spend = start_spend(&opts);
    let cluster = start_cluster(&opts);
    let limits = match &cluster {
        Some(c) => crate::limits::Limiter::new(Box::new(
            crate::cluster::limits::ClusterBackend::new(c.clone()),
        )),
        None => crate::limits::Limiter::default(),
    };
    let state = State {
        spend: spend.book.clone(),
        ledger: Some(spend.ledger.clone()),
        keys: spend.keys.clone(),
        limits,
        cluster: cluster.clone(),
        ..State::default()
    };
    let runtime = Runtime::with_state(opts.config, opts.config_path, state);
    if let Some(c) = &cluster {
        crate::cluster::events::start(c, &runtime);
    }

    let mut gateway = Service::new(
        "modelgate".to_string(),
        crate::connections::Connections::new(
            pingora::proxy::http_proxy(&server.configuration, proxy::Gateway::new(runtime.clone())),
            &settings,
        ),
    );
    for addr in &settings.listen {
        gateway.add_listener(
            ListenerConfig::tcp(addr.as_str())
                .l4_buffer(L4BufferSettings::default().read(CLIENT_READ_BUFFER)),
        );
    }
    server.add_service(gateway);

    if let Some(addr) = &settings.metrics_listen {
        let mut m = Service::new(
            "metrics".to_string(),
            HttpServer::new_app(metrics::MetricsApp),
        );
        m.add_tcp(addr);
        server.add_service(m);
    }
    if let Some(addr) = &opts.demo_mock_listen {
        let mut mock = Service::new("demo provider".to_string(), demo::MockProvider::default());
        mock.add_tcp(addr);
        server.add_service(mock);
    }
    server.add_service(background_service(
        "health checker",
        crate::health::checker::HealthChecker {
            runtime: runtime.clone(),
        },
    ));
    if opts.daemon {
        server.add_service(background_service(
            "usage store",
            StoreOpener {
                ledger: spend.ledger.clone(),
                keys: spend.keys.clone(),
                url: spend.url,
                base: spend.base,
            },
        ));
    }
    server.add_service(background_service(
        "key sync",
        crate::keys::sync::KeySync {
            runtime: runtime.clone(),
        },
    ));
    server.add_service(background_service(
        "config reloader",
        ConfigReloader {
            runtime: runtime.clone(),
        },
    ));
    server.run(RunArgs {
        shutdown_signal: Box::new(DrainingShutdown {
            runtime: runtime.clone(),
        }),
    });
    runtime.state.close(&runtime.config());
    std::process::exit(0)
}

/// The ledger and the spend so far, ready before anything listens.
struct Spend {
    ledger: Arc<Ledger>,
    book: Arc<BudgetBook>,
    keys: Arc<ApiKeys>,
    url: String,
    base: PathBuf,
}

/// Opens the store (a store that cannot be opened stops the start with its reason),
/// loads the spend so far and starts the ledger's writer. Under -d the store is opened
/// again after the fork (Pingora daemonizes inside `run`, and the store's threads would
/// not survive it): `StoreOpener` does that.
fn start_spend(opts: &RunOptions) -> Spend {
    let url = opts
        .store_url
        .clone()
        .unwrap_or_else(|| opts.config.store.url.clone());
    let base = store_base(opts.config_path.as_deref());
    let ledger = Arc::new(Ledger::new(opts.config.store.ledger));
    let book = Arc::new(BudgetBook::default());
    let keys = Arc::new(ApiKeys::default());
    let opened = open_store(&url, &base)
        .and_then(|s| load_spend(&s, &book).map(|()| s))
        .and_then(|s| load_keys(&s, &keys).map(|()| s));
    match opened {
        Ok(store) => {
            log::info!("usage store: {}", store.url());
            if opts.daemon {
                drop(store);
            } else {
                ledger.attach(Arc::new(store));
            }
        }
        Err(e) => {
            eprintln!("modelgate: {e}");
            std::process::exit(1);
        }
    }
    Spend {
        ledger,
        book,
        keys,
        url,
        base,
    }
}

/// How long the final flush may wait for the store at exit.
/// Connects to the cluster's Redis (lazily: an unreachable Redis starts degraded).
fn start_cluster(opts: &RunOptions) -> Option<Arc<crate::cluster::Cluster>> {
    let settings = opts.config.cluster.clone()?;
    if opts.daemon {
        eprintln!("modelgate: cluster mode does not run with -d (its Redis connection would not survive the fork); run it in the foreground under systemd or a container");
        std::process::exit(1);
    }
    if let Some(url) = &opts.store_url {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            eprintln!(
                "modelgate: --store {:?}: cluster needs a Postgres store shared by the replicas",
                crate::store::redact_password(url)
            );
            std::process::exit(1);
        }
    }
    match crate::cluster::Cluster::start(settings) {
        Ok(c) => Some(c),
        Err(e) => {
            eprintln!("modelgate: {e}");
            std::process::exit(1);
        }
    }
}

pub const LEDGER_CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Opens the store after Pingora daemonized (`-d`) and starts the ledger's writer.
/// The API keys, read before the first request so none of them is refused at start.
pub fn load_keys(store: &Store, keys: &ApiKeys) -> Result<(), String> {
    let n = store.block_on(keys.load(store))??;
    if n > 0 {
        log::info!("{n} API key(s) loaded from the store");
    }
    Ok(())
}

struct StoreOpener {
    ledger: Arc<Ledger>,
    keys: Arc<ApiKeys>,
    url: String,
    base: PathBuf,
}

#[async_trait::async_trait]
impl BackgroundService for StoreOpener {
    async fn start(&self, _shutdown: ShutdownWatch) {
        let (url, base) = (self.url.clone(), self.base.clone());
        // Store::open blocks on its own runtime: not on this one.
        match tokio::task::spawn_blocking(move || open_store(&url, &base)).await {
            Ok(Ok(store)) => {
                let store = Arc::new(store);
                if let Err(e) = self.keys.load(&store).await {
                    log::error!("{e}; API keys are refused until the store answers");
                }
                self.ledger.attach(store);
            }
            Ok(Err(e)) => log::error!("usage store: {e}; usage records are queued in memory"),
            Err(e) => log::error!("usage store: {e}"),
        }
    }
}
