//! The end of a request (`logging`): the limits settled to the real usage, the metrics,
//! the per-target statistics and the access record.

use pingora::proxy::Session;

use super::ctx::RequestCtx;
use crate::access_log::{self, AccessRecord};
use crate::metrics;
use crate::runtime::State;

pub fn finish(session: &Session, ctx: &mut RequestCtx, state: &State) {
    let status = session
        .response_written()
        .map(|r| r.status.as_u16())
        .unwrap_or(ctx.response.status);
    let elapsed = ctx.started.elapsed();
    if ctx.response.ttfb.is_some() {
        // The attempt that answered (failed attempts were recorded as they failed).
        let error = (status >= 500 || status == 429).then(|| format!("status {status}"));
        if let Some(r) = ctx.route.as_mut() {
            r.failover.record(&state.health, elapsed, error);
        }
    }
    if ctx.response.usage.is_none() {
        // A stream cut short: whatever usage it reported so far.
        ctx.response.usage = ctx.response.plan.usage_so_far();
    }
    if let Some(a) = ctx.limits.admission.as_mut() {
        // Real usage replaces the estimate; a failed request used nothing; a success
        // without usage keeps its estimate.
        let actual = match (&ctx.response.usage, status) {
            (Some(u), _) => Some(u.prompt_tokens.saturating_add(u.completion_tokens)),
            (None, s) if !(200..300).contains(&s) => Some(0),
            (None, _) => None,
        };
        a.settle(actual);
    }
    record_metrics(ctx, status, elapsed);
    super::spend::finish(ctx, status, elapsed, state.ledger.as_deref());
    let keep = if ctx.config.management.secret_sha256.is_some() {
        ctx.config.management.log_buffer
    } else {
        0
    };
    if access_log::wanted(keep) {
        let rec = access_record(session, ctx, status, elapsed);
        access_log::record(&state.access, rec, ctx.config.server.log_format, keep);
    }
}

fn record_metrics(ctx: &RequestCtx, status: u16, elapsed: std::time::Duration) {
    let (model, provider, key) = (ctx.model_label(), ctx.provider_label(), ctx.key_label());
    let status_label = status.to_string();
    metrics::REQUESTS
        .with_label_values(&[model, provider, key, status_label.as_str()])
        .inc();
    if let Some(u) = &ctx.response.usage {
        let tokens = [
            ("prompt", Some(u.prompt_tokens)),
            ("completion", Some(u.completion_tokens)),
            ("cached", u.cached_tokens),
        ];
        for (kind, n) in tokens {
            if let Some(n) = n {
                metrics::TOKENS
                    .with_label_values(&[model, provider, key, kind])
                    .inc_by(n);
            }
        }
    }
    if ctx.route.is_some() {
        metrics::REQUEST_DURATION
            .with_label_values(&[model, provider])
            .observe(elapsed.as_secs_f64());
        if let Some(t) = ctx.response.ttfb {
            metrics::TTFB
                .with_label_values(&[model, provider])
                .observe(t.as_secs_f64());
        }
    }
}

fn access_record(
    session: &Session,
    ctx: &RequestCtx,
    status: u16,
    elapsed: std::time::Duration,
) -> AccessRecord {
    let req = session.req_header();
    let usage = ctx.response.usage;
    AccessRecord {
        time: access_log::now_rfc3339(),
        request_id: ctx.request_id.clone(),
        key: ctx.key_label().to_string(),
        client_ip: ctx.client_ip.map(|i| i.to_string()),
        method: req.method.to_string(),
        path: req.uri.path().to_string(),
        protocol: ctx.protocol.as_str(),
        model: ctx
            .route
            .as_ref()
            .map(|r| r.resolved.requested.clone())
            .unwrap_or_default(),
        provider: ctx.provider_label().to_string(),
        target_model: ctx
            .attempt
            .as_ref()
            .map(|a| a.target_model.clone())
            .unwrap_or_default(),
        attempts: ctx.attempts(),
        status,
        error: ctx.error.as_ref().map(|e| e.code.as_str()),
        duration_ms: elapsed.as_secs_f64() * 1000.0,
        ttfb_ms: ctx.response.ttfb.map(|t| t.as_secs_f64() * 1000.0),
        prompt_tokens: usage.map(|u| u.prompt_tokens),
        completion_tokens: usage.map(|u| u.completion_tokens),
        bytes_in: session.body_bytes_read(),
        bytes_out: session.body_bytes_sent(),
    }
}
