//! Builds and runs the Pingora server: the proxy service on `server.listen`, the metrics
//! service on `server.metrics_listen`, the SIGHUP reloader, and (demo) the mock provider.

use std::path::PathBuf;

use pingora::apps::http_app::HttpServer;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{RunArgs, Server};
use pingora::services::background::background_service;
use pingora::services::listening::Service;

use crate::config::Config;
use crate::runtime::{ConfigReloader, DrainingShutdown, Runtime};
use crate::{demo, metrics, proxy};

pub struct RunOptions {
    pub config: Config,
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

    let runtime = Runtime::new(opts.config, opts.config_path);

    let mut gateway = pingora::proxy::http_proxy_service_with_name(
        &server.configuration,
        proxy::Gateway::new(runtime.clone()),
        "modelgate",
    );
    for addr in &settings.listen {
        gateway.add_tcp(addr);
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
        let mut mock = Service::new("demo provider".to_string(), demo::MockProvider);
        mock.add_tcp(addr);
        server.add_service(mock);
    }
    server.add_service(background_service(
        "health checker",
        crate::health::checker::HealthChecker {
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
        shutdown_signal: Box::new(DrainingShutdown { runtime }),
    });
    std::process::exit(0)
}
