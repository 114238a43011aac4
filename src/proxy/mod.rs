//! The `ProxyHttp` implementation, a conductor only: each phase calls the module that
//! owns its concern.
//!
//! `request_filter`: local endpoints, then `admission` (key, body, model, scope, limits).
//! Per attempt: `upstream_peer` (`attempt::start`, which asks `failover` for a target) ->
//! `upstream_request_filter` (`attempt::prepare_header`) -> `request_body_filter` (the
//! attempt's body) -> `upstream_response_filter` (`failover` judges the status) ->
//! `response_filter` (`response::plan`, chosen once) -> `response_body_filter` (the plan
//! fed chunk by chunk). Failures: `fail_to_connect` / `error_while_proxy` (`failover`
//! judges the transport error), `fail_to_proxy` (the error in the client's protocol).
//! `logging`: `report`.

mod admission;
mod attempt;
mod body;
pub mod ctx;
mod failover;
mod keys_api;
mod local;
mod management;
mod objects;
mod relay;
pub use relay::Relay;
mod relength;
mod report;
mod response;
mod spend;
mod usage_api;
mod websocket;
mod whole_body;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, ErrorSource, ErrorType, Result};

pub use ctx::{request_id, RequestCtx};

use crate::errors::{ErrorCode, GatewayError};
use crate::health::retry_after;
use crate::metrics;
use crate::protocol::{Endpoint, Op};
use crate::runtime::Runtime;
use admission::{Admitted, Refused};
use failover::{Env, TransportError, Verdict};

pub struct Gateway {
    runtime: Arc<Runtime>,
}

impl Gateway {
    pub fn new(runtime: Arc<Runtime>) -> Self {
        Gateway { runtime }
    }
}

/// A Pingora error that makes the proxy give up; the response is written from
/// `ctx.error` in `fail_to_proxy`.
fn abort(ctx: &mut RequestCtx, err: GatewayError) -> Box<Error> {
    let status = err.status();
    ctx.error = Some(err);
    Error::explain(ErrorType::HTTPStatus(status), "gateway error")
}

/// A Pingora error carrying a failover verdict: retried by Pingora, or the end.
fn verdict_error(ctx: &mut RequestCtx, mut e: Box<Error>, verdict: Verdict) -> Box<Error> {
    match verdict {
        Verdict::Retry => e.set_retry(true),
        Verdict::Proceed | Verdict::Fail(None) => e.set_retry(false),
        Verdict::Fail(Some(err)) => return abort(ctx, err),
    }
    e
}

impl Gateway {
    /// A failure before the provider answered, judged by the failover state machine.
    /// `failure`: the client-facing reason, when more precise than Pingora's error.
    fn transport_failure(
        &self,
        ctx: &mut RequestCtx,
        e: Box<Error>,
        kind: TransportError,
        failure: Option<GatewayError>,
    ) -> Box<Error> {
        let provider = ctx.provider_label().to_string();
        let failure = failure.or_else(|| attempt::proxy_error(&e, &provider));
        let (policy, elapsed) = (&ctx.config.retry, ctx.started.elapsed());
        let Some(route) = ctx.route.as_mut() else {
            return e;
        };
        let env = Env {
            policy,
            op: route.op,
            health: &self.runtime.state.health,
            latency: elapsed,
        };
        let verdict = route
            .failover
            .on_transport_error(kind, failure, e.etype().as_str(), &env);
        if !route.failover.retrying_same_target() {
            metrics::UPSTREAM_ATTEMPTS
                .with_label_values(&[&provider, attempt::outcome(&e)])
                .inc();
        }
        verdict_error(ctx, e, verdict)
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn init_downstream_modules(&self, modules: &mut pingora::modules::http::HttpModules) {
        // In place of Pingora's default, a compression module it adds disabled.
        modules.add_module(Box::new(whole_body::Builder));
    }

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::new(self.runtime.config(), self.runtime.track_request())
    }

    async fn early_request_filter(
        &self,
        session: &mut Session,
        _ctx: &mut RequestCtx,
    ) -> Result<()> {
        crate::connections::header_arrived();
        relength::adopt(session)
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let endpoint = admission::classify(session, ctx);
        if let Some(answered) = local::before_auth(session, ctx, &self.runtime, &endpoint).await {
            return answered;
        }
        let key = match admission::authenticate(session, ctx, &self.runtime.state) {
            Ok(k) => k,
            Err(e) => return local::respond_error(session, ctx, e).await,
        };
        let state = &self.runtime.state;
        let admitted = match endpoint {
            Endpoint::Proxy {
                op: op @ (Op::FilesCreate | Op::BatchesCreate),
                ..
            } => objects::admit_create(session, ctx, state, op).await,
            Endpoint::Object { kind, id } => {
                objects::admit_call(session, ctx, state, kind, id).await
            }
            Endpoint::ResponsesWebSocket => admission::admit_websocket(session, ctx, state).await,
            Endpoint::Proxy { op, gemini_model } => {
                admission::admit(session, ctx, state, op, gemini_model).await
            }
            endpoint => {
                return local::after_auth(session, ctx, &self.runtime, &key, &endpoint).await
            }
        };
        match admitted {
            Ok(Admitted::Forward(route)) => {
                if route.op == Op::ResponsesSocket {
                    // The client's side of the socket: idle reads end it, not the
                    // request timeouts.
                    session.set_read_timeout(Some(ctx.config.server.websocket_idle_timeout));
                }
                ctx.route = Some(*route);
                Ok(false)
            }
            Ok(Admitted::Local(body, extra)) => {
                local::respond(session, ctx, 200, "application/json", body, &extra).await
            }
            Err(Refused::Error(e)) => local::respond_error(session, ctx, e).await,
            Err(Refused::Io(e)) => Err(e),
            Err(Refused::Relength(body)) => relength::resend(session, ctx, body).await,
        }
    }

    fn allow_spawning_subrequest(&self, session: &Session, _ctx: &RequestCtx) -> bool {
        relength::may_need(session)
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let a = attempt::start(ctx, &self.runtime.state.health).map_err(|e| abort(ctx, e))?;
        let provider = a.provider.clone();
        ctx.attempt = Some(a);
        let socket = ctx
            .route
            .as_ref()
            .is_some_and(|r| r.op == Op::ResponsesSocket);
        match provider.resolve().await {
            Ok(addr) if socket => Ok(Box::new(
                provider.socket_peer(addr, ctx.config.server.websocket_idle_timeout),
            )),
            Ok(addr) => Ok(Box::new(provider.peer(addr))),
            Err(msg) => {
                let e = Error::explain(ErrorType::ConnectError, "dns lookup failed");
                let m = format!("provider {:?}: {msg}", provider.name);
                let failure = GatewayError::new(ErrorCode::UpstreamError, m);
                Err(self.transport_failure(ctx, e, TransportError::Upstream, Some(failure)))
            }
        }
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let pick = ctx.route.as_ref().and_then(|r| r.failover.current());
        let Some(attempt) = ctx.attempt.as_mut() else {
            return Err(Error::explain(ErrorType::InternalError, "no attempt"));
        };
        attempt.body_sent = false;
        attempt::prepare_header(attempt, pick, upstream_request, &ctx.request_id)?;
        if ctx
            .route
            .as_ref()
            .is_some_and(|r| r.op == Op::ResponsesSocket)
        {
            websocket::prepare_upgrade(upstream_request)?;
        }
        Ok(())
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if ctx
            .route
            .as_ref()
            .is_some_and(|r| r.op == Op::ResponsesSocket)
        {
            // The client's frames, as they come.
            return websocket::within_duration(ctx);
        }
        // The client's body was read in request_filter; each attempt sends its own copy once.
        match ctx.attempt.as_mut() {
            Some(a) if !a.body_sent => {
                *body = Some(a.body.clone());
                a.body_sent = true;
            }
            _ => *body = None,
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let status = upstream_response.status.as_u16();
        let outcome = match status {
            s if s >= 500 => "status_5xx",
            s if s >= 400 => "status_4xx",
            _ => "ok",
        };
        metrics::UPSTREAM_ATTEMPTS
            .with_label_values(&[ctx.provider_label(), outcome])
            .inc();
        let passthrough = ctx.attempt.as_ref().is_some_and(|a| a.translated.is_none());
        let (policy, elapsed) = (&ctx.config.retry, ctx.started.elapsed());
        if let Some(route) = ctx.route.as_mut() {
            let env = Env {
                policy,
                op: route.op,
                health: &self.runtime.state.health,
                latency: elapsed,
            };
            let verdict = route.failover.on_status(
                status,
                retry_after(&upstream_response.headers),
                passthrough && route.op == Op::Responses,
                &env,
            );
            if !matches!(verdict, Verdict::Proceed) {
                let e = Error::explain(
                    ErrorType::HTTPStatus(status),
                    "failing over to the next target",
                );
                return Err(verdict_error(ctx, e, verdict));
            }
        }
        ctx.response.ttfb = Some(elapsed);
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(r) = ctx.route.as_mut() {
            r.failover.response_started = true;
        }
        response::client_headers(ctx, resp);
        let (Some(route), Some(attempt)) = (&ctx.route, &ctx.attempt) else {
            return Ok(());
        };
        if route.op == Op::ResponsesSocket {
            return websocket::answered(session.req_header(), resp, ctx);
        }
        let (plan, error) = response::plan(route, attempt, resp)?;
        ctx.response.plan = plan;
        if error.is_some() {
            ctx.error = error;
        } else if resp.status.is_success() {
            objects::answered(ctx, &self.runtime.state, resp)?;
        }
        Ok(())
    }

    fn response_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<Duration>> {
        if let (Some(c), Some(b)) = (ctx.response.capture.as_mut(), body.as_ref()) {
            c.feed(b);
        }
        if end_of_stream {
            objects::remember(ctx, &self.runtime.state);
        }
        if matches!(ctx.response.plan, response::BodyPlan::Socket(_)) {
            websocket::within_duration(ctx)?;
        }
        let (out, usage) = ctx.response.plan.feed(body.take(), end_of_stream);
        let len = out.as_ref().map_or(0, Bytes::len);
        if end_of_stream && !ctx.response.emitted {
            whole_body::declare(session, len);
        }
        ctx.response.emitted |= len > 0;
        *body = out;
        if usage.is_some() {
            ctx.response.usage = usage;
        }
        Ok(None)
    }

    fn request_summary(&self, session: &Session, ctx: &RequestCtx) -> String {
        // Pingora's default prints the URI with its query, where a client key may be.
        let req = session.req_header();
        format!(
            "{} {} request_id={}",
            req.method,
            req.uri.path(),
            ctx.request_id
        )
    }

    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, error: &Error) -> bool {
        // A client that hangs up mid-stream is routine, not an error of the gateway.
        error.esource() == &ErrorSource::Downstream
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        e: Box<Error>,
    ) -> Box<Error> {
        self.transport_failure(ctx, e, TransportError::Upstream, None)
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        _session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("peer: {peer}"));
        if ctx
            .route
            .as_mut()
            .is_some_and(|r| r.failover.take_decided())
        {
            // Our own retry from upstream_response_filter: already decided.
            return e;
        }
        // Pingora marks errors on reused pooled connections "retry if reused": the provider
        // had closed an idle connection, nothing was processed.
        let stale_pooled = matches!(e.retry, pingora::RetryType::ReusedOnly) && client_reused;
        e.retry.decide_reuse(client_reused);
        if e.esource() != &ErrorSource::Upstream {
            e.set_retry(false);
            return e;
        }
        let kind = if stale_pooled && e.retry() {
            TransportError::StalePooled
        } else {
            TransportError::Upstream
        };
        self.transport_failure(ctx, e, kind, None)
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let err = match ctx.error.take() {
            Some(err) => Some(err),
            // The precise reason recorded for the last attempt, unless the client left.
            None => attempt::proxy_error(e, ctx.provider_label()).map(|generic| {
                ctx.route
                    .as_mut()
                    .and_then(|r| r.failover.last_failure.take())
                    .unwrap_or(generic)
            }),
        };
        let code = match err {
            Some(err) if session.response_written().is_none() => {
                let status = err.status();
                match local::respond_error(session, ctx, err).await {
                    Ok(_) => status,
                    Err(_) => 0,
                }
            }
            Some(err) => {
                // The provider failed mid-stream: end the client's stream with an error
                // event in its own protocol rather than a silent cut.
                if let Some(tail) = response::stream_failure(ctx, &err) {
                    let _ = session.write_response_body(Some(tail), true).await;
                }
                ctx.error = Some(err);
                0
            }
            None => 0,
        };
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut RequestCtx) {
        if ctx.delegated {
            return; // its subrequest reports it
        }
        report::finish(session, ctx, &self.runtime.state);
    }
}
