//! Validation of `cluster`: Redis, what to do while it does not answer, and the store it
//! needs (budgets and keys are only shared when the store is).

use std::time::Duration;

use super::raw::RawCluster;
use super::validate::Ctx;
use super::{ClusterSettings, OnError, StoreSettings};

pub(super) fn cluster(
    cx: &mut Ctx,
    raw: Option<RawCluster>,
    store: &StoreSettings,
) -> Option<ClusterSettings> {
    let raw = raw?;
    let redis = raw.redis.unwrap_or_default();
    let url = redis.url.map(|u| u.trim().to_string()).unwrap_or_default();
    if url.is_empty() {
        cx.err(
            "cluster.redis.url",
            "is required, e.g. \"redis://127.0.0.1:6379/0\"",
        );
    } else if let Err(e) = redis::Client::open(url.as_str()) {
        cx.err(
            "cluster.redis.url",
            format!("is not a Redis URL (redis://[user:password@]host:port/db): {e}"),
        );
    }
    let timeout = redis.timeout.unwrap_or(Duration::from_millis(50));
    if timeout < Duration::from_millis(1) || timeout > Duration::from_secs(10) {
        cx.err("cluster.redis.timeout", "must be between 1ms and 10s");
    }
    let on_error = match raw.on_error.as_deref().map(str::trim) {
        None | Some("local") => OnError::Local,
        Some("closed") => OnError::Closed,
        Some(other) => {
            cx.err(
                "cluster.on_error",
                format!("{other:?} is not local or closed"),
            );
            OnError::Local
        }
    };
    let replicas = raw.replicas.unwrap_or(1);
    if replicas == 0 {
        cx.err("cluster.replicas", "must be at least 1");
    } else if raw.replicas.is_none() && on_error == OnError::Local {
        cx.warnings.push(
            "cluster.replicas is not set: while Redis is unreachable each replica enforces the full limits (set it to the number of replicas)".into(),
        );
    }
    let lease_ttl = raw.lease_ttl.unwrap_or(Duration::from_secs(30));
    if lease_ttl < Duration::from_secs(3) || lease_ttl > Duration::from_secs(600) {
        cx.err("cluster.lease_ttl", "must be between 3s and 10m");
    }
    let shared = store.url.starts_with("postgres://") || store.url.starts_with("postgresql://");
    if !shared {
        cx.err(
            "store.url",
            format!(
                "{:?} is not shared by replicas: cluster needs a Postgres store (postgres://...) so usage, budgets and keys are one",
                crate::store::redact_password(&store.url)
            ),
        );
    }
    Some(ClusterSettings {
        redis_url: url,
        timeout,
        prefix: redis.prefix.unwrap_or_else(|| "modelgate:".into()),
        on_error,
        replicas: replicas.max(1),
        lease_ttl,
    })
}
