//! Prometheus metrics (names and labels are part of the public interface) and the
//! `/metrics` listener, which is never the public one.

use async_trait::async_trait;
use once_cell::sync::Lazy;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use prometheus::{
    register_gauge, register_histogram_vec, register_int_counter_vec, register_int_gauge_vec,
    Encoder, Gauge, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, TextEncoder,
};

/// Latency buckets sized for LLM calls: sub-millisecond gateway answers up to multi-minute
/// generations.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

// A registration can only fail on a duplicate or malformed name, which is a programming
// error caught by the first test that touches metrics.
macro_rules! metric {
    ($e:expr) => {
        Lazy::new(|| $e.expect("metric registration"))
    };
}

pub static REQUESTS: Lazy<IntCounterVec> = metric!(register_int_counter_vec!(
    "modelgate_requests_total",
    "Client requests answered, by public model, provider, key name and status",
    &["model", "provider", "key", "status"]
));

pub static REQUEST_DURATION: Lazy<HistogramVec> = metric!(register_histogram_vec!(
    "modelgate_request_duration_seconds",
    "Time from request start to the end of the response",
    &["model", "provider"],
    LATENCY_BUCKETS.to_vec()
));

pub static TTFB: Lazy<HistogramVec> = metric!(register_histogram_vec!(
    "modelgate_time_to_first_byte_seconds",
    "Time from request start to the provider's response header",
    &["model", "provider"],
    LATENCY_BUCKETS.to_vec()
));

pub static TOKENS: Lazy<IntCounterVec> = metric!(register_int_counter_vec!(
    "modelgate_tokens_total",
    "Tokens used, by public model, provider, key name and type (prompt/completion)",
    &["model", "provider", "key", "type"]
));

pub static RATE_LIMITED: Lazy<IntCounterVec> = metric!(register_int_counter_vec!(
    "modelgate_rate_limited_total",
    "Requests refused by a key limit",
    &["key", "limit"]
));

pub static UPSTREAM_ATTEMPTS: Lazy<IntCounterVec> = metric!(register_int_counter_vec!(
    "modelgate_upstream_attempts_total",
    "Attempts to reach a provider, by outcome (ok/status_4xx/status_5xx/timeout/connect_error)",
    &["provider", "outcome"]
));

pub static FAILOVERS: Lazy<IntCounterVec> = metric!(register_int_counter_vec!(
    "modelgate_failovers_total",
    "Moves from one provider to another within a request",
    &["model", "from_provider", "to_provider"]
));

pub static UPSTREAM_HEALTHY: Lazy<IntGaugeVec> = metric!(register_int_gauge_vec!(
    "modelgate_upstream_healthy",
    "1 if the target is considered healthy",
    &["provider", "target"]
));

pub static INFLIGHT: Lazy<IntGaugeVec> = metric!(register_int_gauge_vec!(
    "modelgate_inflight_requests",
    "Requests in flight, by key name",
    &["key"]
));

pub static CONFIG_RELOADS: Lazy<IntCounterVec> = metric!(register_int_counter_vec!(
    "modelgate_config_reloads_total",
    "Config reloads by result (success/failure)",
    &["result"]
));

pub static CONFIG_LAST_RELOAD_SUCCESS: Lazy<Gauge> = metric!(register_gauge!(
    "modelgate_config_last_reload_success_timestamp_seconds",
    "Unix time of the last successful config load"
));

pub static HEADER_TIMEOUTS: Lazy<prometheus::IntCounter> =
    metric!(prometheus::register_int_counter!(
        "modelgate_header_timeouts_total",
        "Client connections closed because a request header took longer than server.header_timeout"
    ));

pub static MANAGEMENT_AUTH_FAILURES: Lazy<prometheus::IntCounter> =
    metric!(prometheus::register_int_counter!(
        "modelgate_management_auth_failures_total",
        "Management API requests refused for a missing or wrong secret"
    ));

pub static COST: Lazy<prometheus::CounterVec> = metric!(prometheus::register_counter_vec!(
    "modelgate_cost_usd_total",
    "What requests cost at their prices (USD), by public model, provider and key name",
    &["model", "provider", "key"]
));

pub static UNPRICED: Lazy<IntCounterVec> = metric!(register_int_counter_vec!(
    "modelgate_unpriced_requests_total",
    "Requests whose provider model has no price (counted as costing 0)",
    &["model"]
));

pub static BUDGET_REMAINING: Lazy<prometheus::GaugeVec> = metric!(prometheus::register_gauge_vec!(
    "modelgate_budget_remaining",
    "What a budget has left in its period, in its unit (scope key:NAME or team:NAME)",
    &["scope", "budget"]
));

pub static BUDGET_EXCEEDED: Lazy<IntCounterVec> = metric!(register_int_counter_vec!(
    "modelgate_budget_exceeded_total",
    "Requests refused because a budget could not cover them",
    &["scope", "budget"]
));

pub static STORE_PENDING: Lazy<IntGauge> = metric!(prometheus::register_int_gauge!(
    "modelgate_store_pending_records",
    "Usage records queued or held for the store, not yet written"
));

pub static STORE_WRITE_FAILURES: Lazy<prometheus::IntCounter> =
    metric!(prometheus::register_int_counter!(
        "modelgate_store_write_failures_total",
        "Batches the store did not take (they are retried)"
    ));

pub static STORE_DROPPED: Lazy<prometheus::IntCounter> =
    metric!(prometheus::register_int_counter!(
        "modelgate_store_dropped_records_total",
        "Usage records dropped because the queue or the outage buffer was full"
    ));

pub static CLUSTER_UP: Lazy<IntGauge> = metric!(prometheus::register_int_gauge!(
    "modelgate_cluster_up",
    "1 while Redis answers and limits, budgets and cooldowns are shared; 0 while on_error applies (cluster mode only)"
));

pub static BUILD_INFO: Lazy<IntGaugeVec> = metric!(register_int_gauge_vec!(
    "modelgate_build_info",
    "Always 1; the version label says which build runs",
    &["version"]
));

/// Registers every metric so `/metrics` lists them all from the start (counters at zero
/// for the label sets that are known up front).
pub fn init() {
    BUILD_INFO
        .with_label_values(&[env!("CARGO_PKG_VERSION")])
        .set(1);
    for r in ["success", "failure"] {
        CONFIG_RELOADS.with_label_values(&[r]);
    }
    Lazy::force(&REQUESTS);
    Lazy::force(&REQUEST_DURATION);
    Lazy::force(&TTFB);
    Lazy::force(&TOKENS);
    Lazy::force(&RATE_LIMITED);
    Lazy::force(&UPSTREAM_ATTEMPTS);
    Lazy::force(&FAILOVERS);
    Lazy::force(&UPSTREAM_HEALTHY);
    Lazy::force(&INFLIGHT);
    Lazy::force(&CONFIG_LAST_RELOAD_SUCCESS);
    Lazy::force(&MANAGEMENT_AUTH_FAILURES);
    Lazy::force(&HEADER_TIMEOUTS);
    Lazy::force(&COST);
    Lazy::force(&UNPRICED);
    Lazy::force(&BUDGET_REMAINING);
    Lazy::force(&BUDGET_EXCEEDED);
    Lazy::force(&STORE_PENDING);
    Lazy::force(&STORE_WRITE_FAILURES);
    Lazy::force(&STORE_DROPPED);
}

pub fn record_reload(success: bool) {
    CONFIG_RELOADS
        .with_label_values(&[if success { "success" } else { "failure" }])
        .inc();
    if success {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or_default();
        CONFIG_LAST_RELOAD_SUCCESS.set(now);
    }
}

/// Holds one in-flight slot of a key's gauge; released on drop, so errors and client
/// disconnects release it too.
pub struct InflightSlot(IntGauge);

impl InflightSlot {
    pub fn acquire(key: &str) -> Self {
        let g = INFLIGHT.with_label_values(&[key]);
        g.inc();
        InflightSlot(g)
    }
}

impl Drop for InflightSlot {
    fn drop(&mut self) {
        self.0.dec();
    }
}

pub fn render() -> Vec<u8> {
    let mut buf = Vec::with_capacity(16 * 1024);
    let encoder = TextEncoder::new();
    if let Err(e) = encoder.encode(&prometheus::gather(), &mut buf) {
        log::error!("encoding metrics failed: {e}");
    }
    buf
}

/// The `/metrics` HTTP app for the metrics listener.
pub struct MetricsApp;

#[async_trait]
impl ServeHttp for MetricsApp {
    async fn response(&self, session: &mut ServerSession) -> http::Response<Vec<u8>> {
        let path = session.req_header().uri.path();
        let (status, ctype, body) = match path {
            "/metrics" => (200, "text/plain; version=0.0.4; charset=utf-8", render()),
            "/health" => (200, "application/json", br#"{"status":"ok"}"#.to_vec()),
            _ => (404, "text/plain", b"metrics are at /metrics\n".to_vec()),
        };
        http::Response::builder()
            .status(status)
            .header("content-type", ctype)
            .header("content-length", body.len())
            .body(body)
            .unwrap_or_default()
    }
}
