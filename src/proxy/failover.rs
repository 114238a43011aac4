//! Failover as a state machine, free of Pingora and sockets: which target an attempt goes
//! to (`pick`), and what a provider status or a transport error means for the request
//! (`on_status`, `on_transport_error` -> a `Verdict`). The conductor only turns verdicts
//! into Pingora's retry flag and records metrics.
//!
//! Rules: the weighted first pick, then the model's other targets in order (weight-0
//! standbys included), then each fallback model's; targets cooling down or failing their
//! health checks are skipped; a failure cools its target down (for the provider's
//! `Retry-After` when it gave one); a dead pooled connection is retried once on the same
//! target; a Responses passthrough answered 404/405 is retried once on the same target,
//! translated to Chat Completions; nothing is retried once a byte reached the client, past
//! `max_attempts`, or beyond the retry budget.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{Config, RetryPolicy};
use crate::errors::{ErrorCode, GatewayError};
use crate::health::{Health, ModelId, TargetId};
use crate::protocol::Op;
use crate::routing::{ModelRoute, Resolved};
use crate::upstream::Provider;

/// A target a request may be sent to.
#[derive(Clone)]
pub struct Candidate {
    pub route: Arc<ModelRoute>,
    pub index: usize,
    /// The provider's model name for this target.
    pub upstream_model: String,
    /// Only this credential (an object lives where it was created); `None`: any, in turn.
    pub credential: Option<usize>,
}

impl Candidate {
    pub fn provider(&self) -> &Arc<Provider> {
        &self.route.targets[self.index].provider
    }

    /// The target's price: resolved at load, or looked up for a client-named model.
    pub fn price(&self, prices: &crate::spend::PriceTable) -> Option<crate::spend::Price> {
        let t = &self.route.targets[self.index];
        t.price
            .or_else(|| prices.lookup(&t.provider.name, &self.upstream_model))
    }
}

/// The request's candidates in the order they are tried.
/// The targets to try, in order: the route's, then its fallbacks' that `allowed` lets the
/// key use (a fallback outside the key's scope would answer what the key may not ask).
pub fn candidates(
    config: &Config,
    resolved: &Resolved,
    allowed: &dyn Fn(&str) -> bool,
) -> Vec<Candidate> {
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
            credential: None,
        });
    }
    for name in &model.fallbacks {
        if let Some(fb) = config.models.get(name).filter(|fb| allowed(&fb.name)) {
            for i in 0..fb.targets.len() {
                out.push(Candidate {
                    route: fb.clone(),
                    index: i,
                    upstream_model: fb.upstream_model(i, &fb.name).to_string(),
                    credential: None,
                });
            }
        }
    }
    out
}

/// Whether a request of `op` can be sent to `provider`: in the client's own protocol, or
/// translated (chat-shaped operations, and embeddings between OpenAI and Gemini).
pub fn servable(op: Op, provider: &Provider) -> bool {
    use crate::upstream::ProviderKind;
    provider.wire_protocol(op.protocol()) == op.protocol()
        || matches!(
            op,
            Op::ChatCompletions
                | Op::Responses
                | Op::Messages
                | Op::GenerateContent
                | Op::StreamGenerateContent
        )
        || matches!(
            (op, provider.kind),
            (Op::Embeddings, ProviderKind::Gemini)
                | (
                    Op::EmbedContent | Op::BatchEmbedContents,
                    ProviderKind::OpenAi
                )
        )
}

/// The target of one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pick {
    /// Position in the candidate list.
    pub candidate: usize,
    pub credential: usize,
    pub target: TargetId,
    /// The same target as the previous attempt (not a new attempt in the count).
    pub again: bool,
    /// Translate even though the provider would take the client's protocol.
    pub translate: bool,
}

/// Why no target is left for an attempt.
#[derive(Debug)]
pub enum NoTarget {
    /// Attempts were made and failed; the last failure when known.
    Failed(Option<GatewayError>),
    /// Only targets whose protocol cannot serve the request.
    Unservable,
    /// Every target is cooling down or unhealthy; seconds until the first recovers.
    CoolingDown(Option<u64>),
}

impl NoTarget {
    /// The client-facing error; `model` is the name the client asked for and `what` the
    /// kind of request (protocol and path).
    pub fn into_error(self, model: &str, what: &str) -> GatewayError {
        match self {
            NoTarget::Failed(e) => e.unwrap_or_else(|| {
                GatewayError::new(ErrorCode::UpstreamError, "every target failed")
            }),
            NoTarget::Unservable => GatewayError::new(
                ErrorCode::NotImplemented,
                format!("the model {model:?} is served by a provider that {what} requests cannot be translated for yet"),
            ),
            NoTarget::CoolingDown(retry_after) => {
                let mut e = GatewayError::new(
                    ErrorCode::UpstreamUnavailable,
                    format!("every target of model {model:?} is cooling down after failures; retry after the time in retry-after"),
                );
                e.retry_after = retry_after;
                e
            }
        }
    }
}

/// What a failed attempt comes to.
#[derive(Debug)]
pub enum Verdict {
    /// The response goes to the client.
    Proceed,
    /// Another attempt follows (`pick` chooses its target).
    Retry,
    /// The request ends with this error (or, with `None`, with the last failure known).
    Fail(Option<GatewayError>),
}

/// What a verdict depends on besides the failover state: the retry policy, the request's
/// operation, the live health state, and the time since the request began.
#[derive(Clone, Copy)]
pub struct Env<'a> {
    pub policy: &'a RetryPolicy,
    pub op: Op,
    pub health: &'a Health,
    pub latency: Duration,
}

/// How an attempt failed before the provider answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportError {
    /// Connect, TLS, timeout, reset: the target is suspect.
    Upstream,
    /// An idle pooled connection the provider had closed: nothing was processed.
    StalePooled,
}

pub struct Failover {
    pub candidates: Vec<Candidate>,
    next: usize,
    /// A candidate was skipped because its protocol cannot serve the request.
    unservable: bool,
    /// Attempts made (retries on the same target not counted).
    pub attempts: u32,
    current: Option<Pick>,
    /// The next pick repeats the current target.
    again: bool,
    stale_retried: bool,
    /// The Responses -> Chat Completions retry was made.
    pub responses_fallback: bool,
    /// Why the last attempt failed: the answer when nothing is left to try.
    pub last_failure: Option<GatewayError>,
    /// A response header has gone to the client.
    pub response_started: bool,
    /// The current attempt's outcome is in the statistics already.
    recorded: bool,
    /// `on_status` decided a retry that Pingora will report as an error next.
    decided: bool,
}

impl Failover {
    pub fn new(candidates: Vec<Candidate>) -> Self {
        Failover {
            candidates,
            next: 0,
            unservable: false,
            attempts: 0,
            current: None,
            again: false,
            stale_retried: false,
            responses_fallback: false,
            last_failure: None,
            response_started: false,
            recorded: false,
            decided: false,
        }
    }

    /// Whether the error Pingora reports now is the retry `on_status` already decided.
    pub fn take_decided(&mut self) -> bool {
        std::mem::take(&mut self.decided)
    }

    /// The next attempt repeats the current target (not a failure of that target).
    pub fn retrying_same_target(&self) -> bool {
        self.again
    }

    pub fn current(&self) -> Option<Pick> {
        self.current
    }

    pub fn current_candidate(&self) -> Option<&Candidate> {
        self.current.and_then(|p| self.candidates.get(p.candidate))
    }

    /// The target of the next attempt, or the error to answer when none is left. Call
    /// `commit` once the attempt's request could be built, or `unservable` if it could not.
    pub fn pick(&mut self, op: Op, health: &Health, now: Instant) -> Result<Pick, NoTarget> {
        if std::mem::take(&mut self.again) {
            if let Some(p) = self.current {
                let translate = self.responses_fallback;
                return Ok(Pick {
                    again: true,
                    translate,
                    ..p
                });
            }
        }
        let mut soonest: Option<Instant> = None;
        let mut wait_for = |at: Instant| soonest = Some(soonest.map_or(at, |s| s.min(at)));
        while self.next < self.candidates.len() {
            let pos = self.next;
            self.next += 1;
            let provider = self.candidates[pos].provider();
            if !servable(op, provider) {
                self.unservable = true;
                continue;
            }
            if let Some(hc) = &provider.health_check {
                if !health.probes.healthy(provider.id) {
                    // Recovery is known only at the next probe.
                    wait_for(now + hc.interval);
                    continue;
                }
            }
            let count = provider.credential_count().max(1);
            let (start, n) = match self.candidates[pos].credential {
                Some(c) => (c, 1),
                None => (provider.credential_cursor(), count),
            };
            for k in 0..n {
                let credential = (start + k) % count;
                let model = &self.candidates[pos].upstream_model;
                let target = TargetId::new(provider.id, model, credential);
                match health.cooldowns.until(target, now) {
                    None => {
                        return Ok(Pick {
                            candidate: pos,
                            credential,
                            target,
                            again: false,
                            translate: false,
                        })
                    }
                    Some(until) => wait_for(until),
                }
            }
        }
        Err(self.nothing_left(soonest, now))
    }

    fn nothing_left(&mut self, soonest: Option<Instant>, now: Instant) -> NoTarget {
        if self.attempts > 0 {
            return NoTarget::Failed(self.last_failure.take());
        }
        if self.unservable && soonest.is_none() {
            return NoTarget::Unservable;
        }
        NoTarget::CoolingDown(soonest.map(|s| {
            let wait = s.saturating_duration_since(now);
            wait.as_secs_f64().ceil().max(1.0) as u64
        }))
    }

    /// The picked target's request could not be built (its protocol cannot express this
    /// request): during failover it is skipped; on a first attempt its error is the answer.
    pub fn unservable(&mut self) -> bool {
        self.unservable = true;
        self.attempts > 0
    }

    /// The attempt goes out to `pick`'s target.
    pub fn commit(&mut self, pick: Pick, health: &Health) {
        if !pick.again {
            self.attempts = self.attempts.saturating_add(1);
            if self.attempts == 1 {
                health.retries.record_first_attempt();
            }
        }
        self.current = Some(pick);
        self.recorded = false;
    }

    /// Whether another attempt may follow a failed one: nothing sent to the client yet,
    /// attempts and candidates left, and room in the retry budget (checked last: taking it
    /// uses it up).
    fn may_retry(&self, policy: &RetryPolicy, op: Op, health: &Health) -> bool {
        let more = self.candidates[self.next.min(self.candidates.len())..]
            .iter()
            .any(|c| servable(op, c.provider()));
        !self.response_started
            && self.attempts < policy.max_attempts
            && more
            && health.retries.take(policy.budget, policy.budget_min)
    }

    /// The current attempt's outcome, once, in the per-target statistics.
    pub fn record(&mut self, health: &Health, latency: Duration, error: Option<String>) {
        if self.recorded {
            return;
        }
        if let Some(c) = self.current_candidate() {
            let id = ModelId::new(c.provider().id, &c.upstream_model);
            health.stats.record(id, latency, error);
            self.recorded = true;
        }
    }

    /// A provider answered `status`. `passthrough_responses`: the attempt sent a Responses
    /// request untranslated. `provider_wait`: how long the provider asked us to wait.
    pub fn on_status(
        &mut self,
        status: u16,
        provider_wait: Option<Duration>,
        passthrough_responses: bool,
        env: &Env,
    ) -> Verdict {
        let Env {
            policy,
            op,
            health,
            latency,
        } = *env;
        let Some(pick) = self.current else {
            return Verdict::Proceed;
        };
        let provider = self.candidates[pick.candidate].provider().clone();
        if (status == 404 || status == 405)
            && passthrough_responses
            && !self.responses_fallback
            && provider.may_lack_responses_api()
        {
            // Perhaps an OpenAI-compatible server without /v1/responses: the same target
            // once more, translated to Chat Completions.
            self.responses_fallback = true;
            self.again = true;
            self.decided = true;
            return Verdict::Retry;
        }
        if (200..300).contains(&status) {
            health.cooldowns.restore(pick.target);
            if self.responses_fallback && pick.translate {
                provider.mark_responses_missing();
            }
        }
        // 429, 408 and 5xx in on_status fail over; other 4xx are the client's to see.
        let fails_over =
            (status == 429 || status == 408 || status >= 500) && policy.on_status.contains(&status);
        if !fails_over {
            return Verdict::Proceed;
        }
        let wait = provider_wait.unwrap_or(policy.cooldown);
        health
            .cooldowns
            .cool_down(pick.target, wait, Instant::now());
        self.record(health, latency, Some(format!("status {status}")));
        if self.may_retry(policy, op, health) {
            self.last_failure = Some(GatewayError::new(
                ErrorCode::UpstreamError,
                format!("provider {:?} answered {status}", provider.name),
            ));
            self.decided = true;
            return Verdict::Retry;
        }
        if status >= 500 {
            // Every attempt failed: 502 naming the last provider status.
            return Verdict::Fail(Some(GatewayError::new(
                ErrorCode::UpstreamError,
                format!(
                    "{} attempt(s) failed; the last, to provider {:?}, answered {status}",
                    self.attempts, provider.name
                ),
            )));
        }
        // A 429 with nothing left to try goes to the client as the provider wrote it.
        Verdict::Proceed
    }

    /// The attempt failed before the provider answered. `failure`: the client-facing
    /// error for it (`None` when the client itself went away).
    /// `reason`: for the statistics.
    pub fn on_transport_error(
        &mut self,
        kind: TransportError,
        failure: Option<GatewayError>,
        reason: &str,
        env: &Env,
    ) -> Verdict {
        let Env {
            policy,
            op,
            health,
            latency,
        } = *env;
        if self.response_started {
            return Verdict::Fail(failure);
        }
        if kind == TransportError::StalePooled && !self.stale_retried && self.current.is_some() {
            self.stale_retried = true;
            self.again = true;
            return Verdict::Retry;
        }
        if let Some(p) = self.current {
            health
                .cooldowns
                .cool_down(p.target, policy.cooldown, Instant::now());
        }
        self.last_failure = failure;
        self.record(health, latency, Some(reason.to_string()));
        if self.may_retry(policy, op, health) {
            Verdict::Retry
        } else {
            Verdict::Fail(None)
        }
    }
}

#[cfg(test)]
mod tests;
