//! The `modelgate` command: run (`-c FILE`), validate (`-t`), or try the demo (`--demo`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use modelgate::{config, demo, server};

// mimalloc for small blocks (glibc malloc was ~10% of the proxy's CPU under load,
// BENCHMARKS.md; mimalloc halves that), glibc for large ones (see `alloc`).
#[global_allocator]
static GLOBAL: modelgate::alloc::Allocator = modelgate::alloc::Allocator;

#[derive(Parser)]
#[command(name = "modelgate", version, about = "An LLM API gateway on Pingora")]
struct Cli {
    /// Config file (YAML).
    #[arg(short = 'c', long = "config", env = "MODELGATE_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Validate the config and exit: 0 if valid, 1 with the errors on stderr.
    #[arg(short = 't', long = "test")]
    test: bool,
    /// Run a demo: built-in config and mock provider, no provider keys needed.
    #[arg(long)]
    demo: bool,
    /// Demo: the client-facing address.
    #[arg(long, default_value = "127.0.0.1:8080", requires = "demo")]
    listen: String,
    /// Demo: the metrics address.
    #[arg(long, default_value = "127.0.0.1:9091", requires = "demo")]
    metrics_listen: String,
    /// Zero-downtime upgrade: take over the listeners of the running instance
    /// (send it SIGQUIT).
    #[arg(short = 'u', long)]
    upgrade: bool,
    /// Run in the background.
    #[arg(short = 'd', long)]
    daemon: bool,
    /// The store, overriding `store.url`: memory, sqlite://PATH or postgres://... (the
    /// demo uses memory unless this is given).
    #[arg(long, env = "MODELGATE_STORE")]
    store: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Manage API keys on the running gateway (through its management API).
    Keys(modelgate::keys::cli::KeysCommand),
}

fn free_loopback_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

// Long on purpose: the command line's three modes (demo, -t, run) read top to bottom.
fn main() -> ExitCode {
    modelgate::alloc::init();
    let cli = Cli::parse();
    modelgate::logging::init();

    if let Some(Command::Keys(cmd)) = cli.command {
        return match modelgate::keys::cli::run(cmd, cli.config.as_deref()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("modelgate keys: {e}");
                ExitCode::from(1)
            }
        };
    }

    if cli.demo {
        let port = match free_loopback_port() {
            Ok(p) => p,
            Err(e) => {
                eprintln!("modelgate: cannot find a free loopback port for the demo provider: {e}");
                return ExitCode::from(1);
            }
        };
        let mock = format!("127.0.0.1:{port}");
        let yaml = demo::config_yaml(&cli.listen, &cli.metrics_listen, &mock);
        let loaded = match config::load_str(&yaml, "demo config", &|_| None) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(1);
            }
        };
        println!(
            "modelgate demo: gateway on http://{listen}, a mock provider on http://{mock}, metrics on http://{metrics}/metrics\n\
             Try:\n  curl http://{listen}/v1/chat/completions -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' -d '{{\"model\":\"gpt-4o-mini\",\"messages\":[{{\"role\":\"user\",\"content\":\"Hello!\"}}]}}'\n\
             Streaming: add \"stream\":true to the JSON. Models: curl http://{listen}/v1/models -H 'Authorization: Bearer {key}'\n\
             Console: http://{listen}/console/ (management secret: {admin})",
            listen = cli.listen,
            metrics = cli.metrics_listen,
            key = demo::DEMO_CLIENT_KEY,
            admin = demo::DEMO_ADMIN_KEY,
        );
        server::run(server::RunOptions {
            config: loaded.config,
            store_url: Some(cli.store.unwrap_or_else(|| "memory".to_string())),
            config_path: None,
            demo_mock_listen: Some(mock),
            upgrade: cli.upgrade,
            daemon: cli.daemon,
        });
    }

    let Some(path) = cli.config else {
        eprintln!(
            "modelgate: no config file: pass -c FILE or set MODELGATE_CONFIG (or try --demo)"
        );
        return ExitCode::from(1);
    };
    let loaded = match config::load_file(&path) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    for w in &loaded.warnings {
        log::warn!("{}: {w}", path.display());
    }
    if cli.test {
        let c = &loaded.config;
        let url = cli.store.as_deref().unwrap_or(&c.store.url);
        match server::open_store(url, &server::store_base(Some(&path))) {
            Ok(store) => println!(
                "{}: store {} opens and is writable",
                path.display(),
                store.url()
            ),
            Err(e) => {
                eprintln!("{}: {e}", path.display());
                return ExitCode::from(1);
            }
        }
        if let Some(cl) = &c.cluster {
            let reachable = redis::Client::open(cl.redis_url.as_str())
                .and_then(|client| {
                    client.get_connection_with_timeout(std::time::Duration::from_secs(2))
                })
                .and_then(|mut conn| redis::cmd("PING").query::<String>(&mut conn));
            match reachable {
                Ok(_) => println!("{}: cluster Redis answers", path.display()),
                Err(e) => eprintln!(
                    "{}: warning: cluster.redis does not answer ({e}); the gateway would start degraded (on_error: {:?})",
                    path.display(),
                    cl.on_error
                ),
            }
        }
        println!(
            "{}: configuration is valid ({} providers, {} models, {} keys)",
            path.display(),
            c.providers.len(),
            c.models.routes().len(),
            c.keys.len()
        );
        return ExitCode::SUCCESS;
    }
    server::run(server::RunOptions {
        config: loaded.config,
        store_url: cli.store,
        config_path: Some(path),
        demo_mock_listen: None,
        upgrade: cli.upgrade,
        daemon: cli.daemon,
    })
}
