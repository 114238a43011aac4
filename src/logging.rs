//! The process's logger: `env_logger` as `RUST_LOG` says, except that the libraries under
//! the gateway (Pingora, h2, hyper, rustls, the Redis and HTTP clients) never log below
//! `info`. At `debug` and `trace` they print raw requests and header maps, with client
//! keys, the management secret and provider credentials in them; operators turn debug on
//! to troubleshoot, so no level may print a secret. modelgate's own debug lines carry no
//! secret. `MODELGATE_LOG_LIBRARIES=1` lifts the cap, for a developer who wants it and
//! knows what the log will hold.

use log::{Log, Metadata, Record};

/// Targets (module paths) of the libraries whose debug and trace output is withheld.
const LIBRARIES: &[&str] = &[
    "pingora",
    "h2",
    "hyper",
    "rustls",
    "tokio_rustls",
    "redis",
    "ureq",
    "reqwest",
    "sqlx",
    "tungstenite",
    "multer",
];

fn is_library(target: &str) -> bool {
    LIBRARIES.iter().any(|l| {
        target
            .strip_prefix(l)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::") || rest.starts_with('_'))
    })
}

struct Capped {
    inner: env_logger::Logger,
}

impl Capped {
    fn allowed(&self, meta: &Metadata) -> bool {
        meta.level() <= log::Level::Info || !is_library(meta.target())
    }
}

impl Log for Capped {
    fn enabled(&self, meta: &Metadata) -> bool {
        self.allowed(meta) && self.inner.enabled(meta)
    }

    fn log(&self, record: &Record) {
        if self.allowed(record.metadata()) {
            self.inner.log(record);
        }
    }

    fn flush(&self) {
        self.inner.flush();
    }
}

/// Installs the logger (`RUST_LOG`, default `info`).
pub fn init() {
    let inner =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).build();
    let max = inner.filter();
    if std::env::var("MODELGATE_LOG_LIBRARIES").is_ok_and(|v| v == "1") {
        log::set_max_level(max);
        let _ = log::set_boxed_logger(Box::new(inner));
        return;
    }
    if log::set_boxed_logger(Box::new(Capped { inner })).is_ok() {
        log::set_max_level(max);
    }
}

#[cfg(test)]
mod tests {
    use super::is_library;
    use log::Log;

    #[test]
    fn library_targets_are_told_from_ours() {
        for t in [
            "pingora_core::protocols::http::v1::server",
            "pingora",
            "h2::codec",
            "hyper_util::client",
            "sqlx::query",
        ] {
            assert!(is_library(t), "{t}");
        }
        for t in ["modelgate", "modelgate::proxy", "h2o", "redisx", "sqlxx::a"] {
            assert!(!is_library(t), "{t}");
        }
    }

    #[test]
    fn the_cap_applies_below_info_only() {
        let capped = super::Capped {
            inner: env_logger::Builder::new()
                .filter_level(log::LevelFilter::Trace)
                .build(),
        };
        let meta = |target, level| log::Metadata::builder().target(target).level(level).build();
        assert!(capped.enabled(&meta("pingora_core", log::Level::Info)));
        assert!(!capped.enabled(&meta("pingora_core", log::Level::Debug)));
        assert!(!capped.enabled(&meta("h2::frame", log::Level::Trace)));
        assert!(capped.enabled(&meta("modelgate::cluster", log::Level::Debug)));
    }
}
