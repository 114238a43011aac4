//! One upstream attempt: which candidate target comes next (weighted first pick, the
//! model's other targets in order, then each fallback model's), skipping targets that
//! are cooling down, and the provider request for it (the client's bytes with the model
//! spliced in, or a translation when the provider speaks another protocol).

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::ctx::RouteState;
use crate::config::Config;
use crate::errors::{ErrorCode, GatewayError};
use crate::health::{self, TargetId};
use crate::protocol::{Op, Protocol};
use crate::rewrite;
use crate::routing::{ModelRoute, Resolved};
use crate::translate::{self, Translated};
use crate::upstream::Provider;

/// A target a request may be sent to.
#[derive(Clone)]
pub struct Candidate {
    pub route: Arc<ModelRoute>,
    pub index: usize,
    /// The provider's model name for this target.
    pub upstream_model: String,
}

impl Candidate {
    pub fn provider(&self) -> &Arc<Provider> {
        &self.route.targets[self.index].provider
    }
}

/// The request's candidates in the order they are tried.
pub fn candidates(config: &Config, resolved: &Resolved) -> Vec<Candidate> {
    let model = &resolved.route;
    let mut out = Vec::with_capacity(model.targets.len());
    let first = model.pick_first();
    let order = first
        .into_iter()
        .chain((0..model.targets.len()).filter(|i| Some(*i) != first));
    for i in order {
        out.push(Candidate {
            route: model.clone(),
            index: i,
            upstream_model: model.upstream_model(i, &resolved.requested).to_string(),
        });
    }
    for name in &model.fallbacks {
        if let Some(fb) = config.models.get(name) {
            for i in 0..fb.targets.len() {
                out.push(Candidate {
                    route: fb.clone(),
                    index: i,
                    upstream_model: fb.upstream_model(i, &fb.name).to_string(),
                });
            }
        }
    }
    out
}

/// Whether a request of `op` can be sent to `provider`: in the client's own protocol, or
/// translated (chat-shaped operations only).
pub fn servable(op: Op, provider: &Provider) -> bool {
    provider.wire_protocol(op.protocol()) == op.protocol()
        || matches!(
            op,
            Op::ChatCompletions
                | Op::Responses
                | Op::Messages
                | Op::GenerateContent
                | Op::StreamGenerateContent
        )
}

/// The next candidate that can serve the request and is not cooling down, with the
/// credential to use. Advances past what it skips; `soonest` learns when a skipped
/// target recovers.
pub fn next_candidate(
    route: &mut RouteState,
    soonest: &mut Option<Instant>,
) -> Option<(usize, usize, TargetId)> {
    while route.next < route.candidates.len() {
        let pos = route.next;
        route.next += 1;
        let c = &route.candidates[pos];
        let provider = c.provider();
        if !servable(route.op, provider) {
            route.unservable = true;
            continue;
        }
        if provider.health_check.is_some() && !health::provider_healthy(provider.health_key) {
            // Recovery is known only at the next probe.
            let next_probe = Instant::now()
                + provider
                    .health_check
                    .as_ref()
                    .map_or(std::time::Duration::from_secs(1), |h| h.interval);
            *soonest = Some(soonest.map_or(next_probe, |s| s.min(next_probe)));
            continue;
        }
        let n = provider.credential_count().max(1);
        let start = provider.credential_cursor();
        for k in 0..n {
            let cred = (start + k) % n;
            let id = TargetId::new(&provider.name, &provider.endpoint, &c.upstream_model, cred);
            match health::cooling_until(id) {
                None => return Some((pos, cred, id)),
                Some(until) => *soonest = Some(soonest.map_or(until, |s| s.min(until))),
            }
        }
    }
    None
}

/// Whether any candidate after the current one could still be tried.
pub fn has_more(route: &RouteState) -> bool {
    route.candidates[route.next.min(route.candidates.len())..]
        .iter()
        .any(|c| servable(route.op, c.provider()))
}

/// The provider request for a candidate: body, path (before the base URL prefix) and,
/// when translated, what was dropped.
/// `translate`: translate even where the provider would take the client's protocol (a
/// retry after the provider turned out to lack it).
pub fn provider_request(
    route: &mut RouteState,
    c: &Candidate,
    translate: bool,
) -> Result<(Bytes, String, Option<Translated>), GatewayError> {
    let provider = c.provider();
    let client_protocol = route.op.protocol();
    let provider_protocol = if translate {
        provider.kind.protocol()
    } else {
        provider.wire_protocol(client_protocol)
    };
    let target_model = c.upstream_model.as_str();
    if provider_protocol == client_protocol {
        // Passthrough: only the model name changes, spliced into the client's bytes, unless
        // the client replays signatures relayed from another provider kind.
        let body = match (
            translate::strip_relayed_signatures(client_protocol, &route.body),
            &route.model_span,
        ) {
            (Some(mut v), _) => {
                if v.get("model").is_some() {
                    v["model"] = target_model.into();
                }
                Bytes::from(serde_json::to_vec(&v).unwrap_or_default())
            }
            (None, Some(span)) if target_model != route.resolved.requested => {
                rewrite::splice_json_string(&route.body, span.clone(), target_model)
            }
            (None, _) => route.body.clone(),
        };
        let path = match route.op.gemini_action() {
            Some(action) => {
                let version = if route.path.starts_with("/v1beta/") {
                    "v1beta"
                } else {
                    "v1"
                };
                format!("/{version}/models/{target_model}:{action}")
            }
            None => route.path.clone(),
        };
        return Ok((body, path, None));
    }
    if route.decoded.is_none() {
        let mut req = translate::decode_request(client_protocol, &route.body)
            .map_err(|e| e.into_gateway_error())?;
        if client_protocol == Protocol::Gemini {
            // Gemini says "stream" in the path, not the body.
            req.stream = route.stream;
        }
        route.decoded = Some(req);
    }
    let Some(req) = route.decoded.as_ref() else {
        return Err(GatewayError::new(
            ErrorCode::Internal,
            "the decoded request is missing",
        ));
    };
    // The model's max_tokens is the default and the cap on translated requests.
    let mut req = std::borrow::Cow::Borrowed(req);
    if let (Some(cap), Some(asked)) = (c.route.max_tokens, req.max_tokens) {
        if asked > cap {
            req.to_mut().max_tokens = Some(cap);
        }
    }
    let default_max = c
        .route
        .max_tokens
        .unwrap_or(translate::anthropic::DEFAULT_MAX_TOKENS);
    let p = translate::encode_request(&req, provider_protocol, target_model, default_max)
        .map_err(|e| e.into_gateway_error())?;
    let translated = Translated {
        dropped: p.dropped,
        tool_names: p.tool_names,
    };
    Ok((p.body, p.path, Some(translated)))
}
