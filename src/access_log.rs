//! One access record per request: written to the log (`key=value` text or a JSON line, at
//! info level on the `modelgate::access` target) and, when the management API is on, kept
//! in a bounded in-memory ring (owned by the runtime) for `GET /v0/management/logs`. Never a key, a credential or
//! message content: only the key's name.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::config::LogFormat;

#[derive(Debug, Clone, Serialize)]
pub struct AccessRecord {
    pub time: String,
    pub request_id: String,
    pub key: String,
    pub client_ip: Option<String>,
    pub method: String,
    pub path: String,
    /// The client's wire protocol.
    pub protocol: &'static str,
    /// The model the client asked for.
    pub model: String,
    pub provider: String,
    pub target_model: String,
    pub attempts: u32,
    pub status: u16,
    pub error: Option<&'static str>,
    pub duration_ms: f64,
    pub ttfb_ms: Option<f64>,
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    pub bytes_in: usize,
    pub bytes_out: usize,
}

/// The most recent access records, for the management API.
#[derive(Default)]
pub struct AccessRing {
    ring: Mutex<VecDeque<Arc<AccessRecord>>>,
}

impl AccessRing {
    /// Keeps `rec`, dropping the oldest beyond `keep`.
    pub fn push(&self, rec: AccessRecord, keep: usize) {
        let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        while ring.len() >= keep.max(1) {
            ring.pop_front();
        }
        ring.push_back(Arc::new(rec));
    }

    /// The last `limit` records, newest first.
    pub fn recent(&self, limit: usize) -> Vec<Arc<AccessRecord>> {
        let ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        ring.iter().rev().take(limit).cloned().collect()
    }
}

/// Whether building a record is worth it: the access log is on or the ring keeps records.
pub fn wanted(keep: usize) -> bool {
    keep > 0 || log::log_enabled!(target: "modelgate::access", log::Level::Info)
}

/// A value of a `key=value` text line: as is when plain, else quoted with escapes, so a
/// client's text (a model name, a request id) can neither forge a line nor a field.
fn text_value(v: &str) -> std::borrow::Cow<'_, str> {
    if v.chars()
        .any(|c| c.is_control() || c.is_whitespace() || c == '"' || c == '=')
    {
        std::borrow::Cow::Owned(format!("{v:?}"))
    } else {
        std::borrow::Cow::Borrowed(v)
    }
}

/// Logs `rec` and keeps it in `ring` when `keep` > 0.
pub fn record(ring: &AccessRing, rec: AccessRecord, format: LogFormat, keep: usize) {
    if log::log_enabled!(target: "modelgate::access", log::Level::Info) {
        match format {
            LogFormat::Json => match serde_json::to_string(&rec) {
                Ok(line) => log::info!(target: "modelgate::access", "{line}"),
                Err(e) => log::warn!("access record not serialisable: {e}"),
            },
            LogFormat::Text => log::info!(
                target: "modelgate::access",
                "request_id={} client={} method={} path={} protocol={} key={} model={} provider={} target_model={} attempts={} status={} error={} duration_ms={:.1} ttfb_ms={} prompt_tokens={} completion_tokens={} bytes_in={} bytes_out={}",
                text_value(&rec.request_id),
                rec.client_ip.as_deref().unwrap_or(""),
                text_value(&rec.method),
                text_value(&rec.path),
                rec.protocol,
                text_value(&rec.key),
                text_value(&rec.model),
                text_value(&rec.provider),
                text_value(&rec.target_model),
                rec.attempts,
                rec.status,
                rec.error.unwrap_or(""),
                rec.duration_ms,
                rec.ttfb_ms.map(|t| format!("{t:.1}")).unwrap_or_default(),
                rec.prompt_tokens.map(|t| t.to_string()).unwrap_or_default(),
                rec.completion_tokens.map(|t| t.to_string()).unwrap_or_default(),
                rec.bytes_in,
                rec.bytes_out,
            ),
        }
    }
    if keep > 0 {
        ring.push(rec, keep);
    }
}

pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_values_cannot_forge_lines_or_fields() {
        assert_eq!(text_value("gpt-4o"), "gpt-4o");
        assert_eq!(
            text_value("x\nrequest_id=forged status=200"),
            "\"x\\nrequest_id=forged status=200\""
        );
        assert!(!text_value("a\rb").contains('\r'));
        assert_eq!(text_value("a b"), "\"a b\"");
    }
}
