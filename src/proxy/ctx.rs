//! Per-request state carried through Pingora's phases.

use std::net::IpAddr;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use once_cell::sync::Lazy;

use crate::auth::ClientKey;
use crate::config::Config;
use crate::errors::GatewayError;
use crate::limits::Admission;
use crate::metrics::InflightSlot;
use crate::protocol::{Op, Protocol};
use crate::rewrite::ModelRenamer;
use crate::routing::Resolved;
use crate::runtime::ActiveRequest;
use crate::translate::model::{ChatRequest, Usage};
use crate::translate::{ResponseTranslator, Translated};
use crate::upstream::Provider;
use crate::usage::UsageTap;

pub struct RequestCtx {
    pub started: Instant,
    /// The config snapshot for this request's whole life: a reload never changes a
    /// request midway.
    pub config: Arc<Config>,
    pub request_id: String,
    /// The protocol errors are written in.
    pub protocol: Protocol,
    pub client_ip: Option<IpAddr>,
    pub key: Option<Arc<ClientKey>>,
    pub route: Option<RouteState>,
    pub attempt: Option<Attempt>,
    /// Upstream attempts made so far (the failover seam: `upstream_peer` runs per attempt).
    pub attempts: u32,
    /// Set when a pooled connection turned out dead before the provider answered: the
    /// next attempt goes to the same target on a fresh connection.
    pub retry_same_target: bool,
    /// The current attempt's outcome is already in the per-target statistics.
    pub attempt_recorded: bool,
    /// A dead pooled connection was already retried once in this request.
    pub stale_retried: bool,
    /// `upstream_response_filter` turned a provider status into a retry.
    pub status_retry: bool,
    /// A provider answered 404/405 to a passed-through Responses request: the retry on the
    /// same target is translated to Chat Completions.
    pub responses_fallback: bool,
    /// Why the last attempt failed: the answer when no candidate is left.
    pub last_failure: Option<GatewayError>,
    /// A response header has gone to the client: nothing may be retried any more.
    pub response_started: bool,
    pub ttfb: Option<Duration>,
    /// The gateway error answered with (or to answer with from `fail_to_proxy`).
    pub error: Option<GatewayError>,
    pub renamer: Option<ModelRenamer>,
    pub translator: Option<ResponseTranslator>,
    /// Watches passthrough responses for their usage.
    pub usage_tap: Option<UsageTap>,
    /// The request's place in its key's and model's limits (slots released on drop).
    pub admission: Option<Admission>,
    /// `x-ratelimit-*` headers for keys with limits, on every response.
    pub rate_headers: Vec<(&'static str, String)>,
    /// Token usage of the response, when known.
    pub usage: Option<Usage>,
    /// Status sent to the client (set for locally written responses).
    pub status: u16,
    pub _inflight: Option<InflightSlot>,
    pub _active: ActiveRequest,
}

/// The routed model request.
pub struct RouteState {
    pub op: Op,
    pub resolved: Resolved,
    /// The client's body as received.
    pub body: Bytes,
    pub model_span: Option<Range<usize>>,
    pub stream: bool,
    /// An OpenAI chat stream whose client asked for the usage chunk.
    pub stream_usage: bool,
    /// The client's path (without query) and query with any `key=` removed.
    pub path: String,
    pub query: Option<String>,
    /// Targets in the order they are tried (built at the first attempt).
    pub candidates: Vec<super::attempt::Candidate>,
    /// The next candidate to consider.
    pub next: usize,
    /// A candidate was skipped because its protocol cannot serve this request.
    pub unservable: bool,
    /// The request decoded into the internal model, once a target needed translation.
    pub decoded: Option<ChatRequest>,
}

/// One upstream attempt.
pub struct Attempt {
    pub provider: Arc<Provider>,
    /// Position in `RouteState::candidates`.
    pub candidate: usize,
    pub credential: usize,
    pub target: crate::health::TargetId,
    pub target_model: String,
    pub uri: http::Uri,
    pub body: Bytes,
    pub body_sent: bool,
    /// Set when the request was translated for the provider's protocol: what was dropped
    /// and renamed.
    pub translated: Option<Translated>,
}

impl RequestCtx {
    pub fn new(config: Arc<Config>, active: ActiveRequest) -> Self {
        RequestCtx {
            started: Instant::now(),
            config,
            request_id: String::new(),
            protocol: Protocol::OpenAi,
            client_ip: None,
            key: None,
            route: None,
            attempt: None,
            attempts: 0,
            retry_same_target: false,
            attempt_recorded: false,
            stale_retried: false,
            status_retry: false,
            responses_fallback: false,
            last_failure: None,
            response_started: false,
            ttfb: None,
            error: None,
            renamer: None,
            translator: None,
            usage_tap: None,
            admission: None,
            rate_headers: Vec::new(),
            usage: None,
            status: 0,
            _inflight: None,
            _active: active,
        }
    }

    /// The `model` metrics label: the public name (aliases fold into it; a wildcard route
    /// is labelled with its pattern, so clients cannot create unbounded series).
    pub fn model_label(&self) -> &str {
        self.route
            .as_ref()
            .map(|r| r.resolved.route.name.as_str())
            .unwrap_or("")
    }

    pub fn provider_label(&self) -> &str {
        self.attempt
            .as_ref()
            .map(|a| a.provider.name.as_str())
            .unwrap_or("")
    }

    pub fn key_label(&self) -> &str {
        self.key.as_ref().map(|k| k.name.as_str()).unwrap_or("")
    }
}

static REQUEST_SEQ: AtomicU64 = AtomicU64::new(0);
static PROCESS_TAG: Lazy<String> = Lazy::new(|| {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "{:08x}",
        (t as u64 ^ u64::from(std::process::id()).rotate_left(32)) as u32
    )
});

/// The client's `x-request-id` when it is sane, otherwise a new id unique across
/// processes and restarts.
pub fn request_id(client: Option<&http::HeaderValue>) -> String {
    if let Some(v) = client {
        let b = v.as_bytes();
        if !b.is_empty()
            && b.len() <= 128
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || b"-_.:/+=".contains(c))
        {
            if let Ok(s) = v.to_str() {
                return s.to_string();
            }
        }
    }
    let n = REQUEST_SEQ.fetch_add(1, Ordering::Relaxed);
    format!("mg-{}-{n:012x}", &*PROCESS_TAG)
}
