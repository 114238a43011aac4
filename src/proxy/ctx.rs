//! Per-request state carried through Pingora's phases, grouped by concern: the admitted
//! route (with its failover state), the current attempt, limits, and the response.

use std::net::IpAddr;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use once_cell::sync::Lazy;

use super::failover::Failover;
use super::response::BodyPlan;
use crate::auth::ClientKey;
use crate::config::Config;
use crate::errors::GatewayError;
use crate::limits::Admission;
use crate::metrics::InflightSlot;
use crate::protocol::{Op, Protocol};
use crate::routing::Resolved;
use crate::runtime::ActiveRequest;
use crate::translate::model::Usage;
use crate::translate::Decoded;
use crate::translate::Translated;
use crate::upstream::Provider;

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
    /// The model a model request asked for, once read (refused requests included).
    pub requested: Option<String>,
    /// The admitted model request, with its failover state.
    pub route: Option<RouteState>,
    /// The current upstream attempt.
    pub attempt: Option<Attempt>,
    pub limits: LimitState,
    pub spend: SpendState,
    pub response: ResponseState,
    /// The gateway error answered with (or to answer with from `fail_to_proxy`).
    pub error: Option<GatewayError>,
    /// Handed to a subrequest (`relength`), which reports it.
    pub delegated: bool,
    _inflight: Option<InflightSlot>,
    _active: ActiveRequest,
}

/// The request's place in its key's and model's limits.
#[derive(Default)]
pub struct LimitState {
    /// Slots and reservations (released on drop, settled in `logging`).
    pub admission: Option<Admission>,
    /// `x-ratelimit-*` headers for keys with limits, on every response.
    pub headers: crate::gateway_headers::Headers,
}

/// The request's hold on its budgets.
#[derive(Default)]
pub struct SpendState {
    /// Released on drop, settled in `logging`.
    pub reservation: Option<crate::spend::Reservation>,
    /// `x-modelgate-budget-*` for keys with budgets, on every response.
    pub headers: crate::gateway_headers::Headers,
    /// The prompt's token estimate (from its size), used when a provider reports none.
    pub prompt_estimate: u64,
}

/// What went back to the client.
#[derive(Default)]
pub struct ResponseState {
    pub ttfb: Option<Duration>,
    /// How the provider's body becomes the client's, chosen once per response.
    pub plan: BodyPlan,
    /// Some of the body has been handed to Pingora to write.
    pub emitted: bool,
    /// Token usage of the response, when known.
    pub usage: Option<Usage>,
    /// Status sent to the client (set for locally written responses).
    pub status: u16,
    /// Reads the ids of files, batches, responses and operations the provider hands out.
    pub capture: Option<crate::objects::capture::Capture>,
    /// A list answered with only these ids (the calling key's objects).
    pub list_filter: Option<std::collections::HashSet<String>>,
    /// An object id to forget once its deletion succeeded.
    pub forget: Option<String>,
}

/// The routed model request.
pub struct RouteState {
    pub op: Op,
    pub resolved: Resolved,
    /// The client's body as received.
    pub body: Bytes,
    pub model_span: Option<Range<usize>>,
    /// The body is a multipart form: `model_span` is raw text, not a JSON string.
    pub form: bool,
    pub stream: bool,
    /// An OpenAI chat stream whose client asked for the usage chunk.
    pub stream_usage: bool,
    /// A Responses request with `"store": false`: its answer hands out no id to keep.
    pub unstored: bool,
    /// The client's path (without query) and query with any `key=` removed.
    pub path: String,
    pub query: Option<String>,
    pub failover: Failover,
    /// The request decoded into the internal model, once a target needed translation.
    pub decoded: Option<Decoded>,
}

impl RouteState {
    /// A Gemini client streaming with `alt=sse` (otherwise its stream is a JSON array).
    pub fn gemini_sse(&self) -> bool {
        self.query
            .as_deref()
            .is_some_and(|q| q.split('&').any(|kv| kv == "alt=sse"))
    }
}

/// One upstream attempt.
pub struct Attempt {
    pub provider: Arc<Provider>,
    /// What the target charges (`None`: unpriced, costs 0).
    pub price: Option<crate::spend::Price>,
    /// A Chat stream whose usage the gateway asked for on the client's behalf.
    pub asks_stream_usage: bool,
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
            requested: None,
            route: None,
            attempt: None,
            limits: LimitState::default(),
            spend: SpendState::default(),
            response: ResponseState::default(),
            error: None,
            delegated: false,
            _inflight: None,
            _active: active,
        }
    }

    /// The authenticated key; counted in flight until the request ends.
    pub fn set_key(&mut self, key: Arc<ClientKey>) {
        self._inflight = Some(InflightSlot::acquire(&key.name));
        self.key = Some(key);
    }

    /// The request is re-run as a subrequest, which counts and reports it.
    pub fn delegate(&mut self) {
        self.delegated = true;
        self._inflight = None;
    }

    pub fn attempts(&self) -> u32 {
        self.route.as_ref().map_or(0, |r| r.failover.attempts)
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
