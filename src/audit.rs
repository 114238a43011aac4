//! The audit log: every key change, config replacement or reload and provider reset, with
//! when, who (the management secret, a signal), from where, and how it ended. Written to
//! the store before the management answer goes out (these are rare), and logged too.

use std::net::IpAddr;

use crate::runtime::State;
use crate::store::keys::{self as store_keys, AuditEntry};

pub struct Event<'a> {
    pub action: &'static str,
    pub target: &'a str,
    pub client_ip: Option<IpAddr>,
    /// `management` (the API's secret) or `signal` (SIGHUP).
    pub actor: &'static str,
}

impl<'a> Event<'a> {
    /// An action taken through the management API (its secret) from `client_ip`.
    pub fn management(action: &'static str, target: &'a str, client_ip: Option<IpAddr>) -> Self {
        Event {
            action,
            target,
            client_ip,
            actor: "management",
        }
    }
}

/// Records `event` with its outcome: `Ok(detail)` or `Err((code, detail))`.
pub async fn record(
    state: &State,
    event: Event<'_>,
    outcome: Result<Option<String>, (&str, String)>,
) {
    let (result, detail) = match outcome {
        Ok(d) => ("ok".to_string(), d),
        Err((code, d)) => (code.to_string(), Some(d)),
    };
    let entry = AuditEntry {
        time_us: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(0),
        action: event.action.to_string(),
        target: event.target.to_string(),
        client_ip: event.client_ip.map(|ip| ip.to_string()),
        actor: event.actor.to_string(),
        result,
        detail,
    };
    log::info!(
        "audit: {} {:?} by {} from {} -> {}",
        entry.action,
        entry.target,
        entry.actor,
        entry.client_ip.as_deref().unwrap_or("-"),
        entry.result
    );
    let Some(store) = state.store() else {
        log::warn!("audit: no store open; the entry above is only in this log");
        return;
    };
    let pool = store.pool();
    let written = store
        .run(async move { store_keys::audit(&pool, &entry).await })
        .await;
    match written {
        Ok(Ok(())) => {}
        Ok(Err(e)) => log::error!("audit: cannot write to the store: {e}"),
        Err(e) => log::error!("audit: {e}"),
    }
}
