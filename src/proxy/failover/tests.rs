//! Every failover rule, in-process: no sockets, no sleeps (times are passed in).

use super::*;
use crate::config;

const MS: Duration = Duration::from_millis(1);

fn config(models: &str, retry: &str) -> Config {
    let yaml = format!(
        r#"providers:
  a: {{ kind: openai, base_url: "http://127.0.0.1:1" }}
  b: {{ kind: openai, base_url: "http://127.0.0.1:2" }}
  c: {{ kind: openai, base_url: "http://127.0.0.1:3" }}
  ant: {{ kind: anthropic, base_url: "http://127.0.0.1:4" }}
  two: {{ kind: openai, base_url: "http://127.0.0.1:5", credentials: [k1, k2] }}
  probed: {{ kind: openai, base_url: "http://127.0.0.1:6", health_check: {{ path: /v1/models, interval: 5s }} }}
models:
{models}
keys: [{{ name: k, key: sk-unit-test-key-0001 }}]
retry: {{ {retry} }}
"#
    );
    match config::load_str(&yaml, "test.yaml", &|_| None) {
        Ok(l) => l.config,
        Err(e) => panic!("{e}"),
    }
}

fn failover(cfg: &Config, model: &str) -> Failover {
    let resolved = cfg.models.resolve(model).expect("model");
    Failover::new(candidates(cfg, &resolved, &|_: &str| true))
}

fn name(f: &Failover, p: Pick) -> &str {
    &f.candidates[p.candidate].provider().name
}

fn judge<'a>(cfg: &'a Config, op: Op, h: &'a Health) -> Env<'a> {
    Env {
        policy: &cfg.retry,
        op,
        health: h,
        latency: MS,
    }
}

/// Picks and commits the next attempt; its provider's name.
fn attempt(f: &mut Failover, h: &Health) -> String {
    let p = f
        .pick(Op::ChatCompletions, h, Instant::now())
        .expect("a target");
    f.commit(p, h);
    name(f, p).to_string()
}

fn status(
    f: &mut Failover,
    cfg: &Config,
    h: &Health,
    code: u16,
    wait: Option<Duration>,
) -> Verdict {
    f.on_status(code, wait, false, &judge(cfg, Op::ChatCompletions, h))
}

/// Model `m` on targets a and b, with room for retries.
fn a_then_b() -> Config {
    config(
        "  m: { targets: [{ provider: a }, { provider: b }] }",
        GENEROUS,
    )
}

const GENEROUS: &str = "max_attempts: 5, budget: 1.0, budget_min: 100";

#[test]
fn first_pick_follows_the_weights_and_the_rest_follow_in_order() {
    let cfg = config(
        "  m: { targets: [{ provider: a, weight: 3 }, { provider: b, weight: 1 }, { provider: c, weight: 0 }] }",
        GENEROUS,
    );
    let h = Health::default();
    let firsts: Vec<String> = (0..8)
        .map(|_| attempt(&mut failover(&cfg, "m"), &h))
        .collect();
    assert_eq!(
        firsts,
        ["a", "a", "b", "a", "a", "a", "b", "a"],
        "smooth WRR, standby never first"
    );
    // The walk after a first pick of b: a, then the standby c.
    let order: Vec<String> = (0..4)
        .map(|_| {
            let mut f = failover(&cfg, "m");
            std::iter::from_fn(|| {
                let p = f.pick(Op::ChatCompletions, &h, Instant::now()).ok()?;
                f.commit(p, &h);
                Some(name(&f, p).to_string())
            })
            .collect::<Vec<_>>()
            .join(",")
        })
        .collect();
    assert_eq!(order, ["a,b,c", "a,b,c", "b,a,c", "a,b,c"]);
}

#[test]
fn fallback_models_come_after_the_models_own_targets() {
    let cfg = config(
        "  m: { targets: [{ provider: a }], fallbacks: [f] }\n  f: { targets: [{ provider: ant, model: claude-x }, { provider: b }] }",
        GENEROUS,
    );
    let f = failover(&cfg, "m");
    let walk: Vec<(&str, &str)> = f
        .candidates
        .iter()
        .map(|c| (c.provider().name.as_str(), c.upstream_model.as_str()))
        .collect();
    assert_eq!(walk, [("a", "m"), ("ant", "claude-x"), ("b", "f")]);
}

#[test]
fn a_failing_status_cools_the_target_for_the_providers_wait_and_fails_over() {
    let cfg = config(
        "  m: { targets: [{ provider: a }, { provider: b, weight: 0 }] }",
        &format!("{GENEROUS}, cooldown: 30s"),
    );
    let h = Health::default();
    let mut f = failover(&cfg, "m");
    assert_eq!(attempt(&mut f, &h), "a");
    let a = f.current().unwrap().target;
    assert!(matches!(
        status(&mut f, &cfg, &h, 429, Some(Duration::from_secs(20))),
        Verdict::Retry
    ));
    let now = Instant::now();
    let until = h.cooldowns.until(a, now).expect("a cools down");
    assert!(until > now + Duration::from_secs(19) && until <= now + Duration::from_secs(20));
    assert_eq!(attempt(&mut f, &h), "b");
    assert!(matches!(
        status(&mut f, &cfg, &h, 200, None),
        Verdict::Proceed
    ));
    assert_eq!(f.attempts, 2);

    // A new request skips a while it cools down; b's success kept b available.
    let mut g = failover(&cfg, "m");
    assert_eq!(attempt(&mut g, &h), "b");
    // Without a Retry-After the policy's cooldown applies.
    assert!(matches!(
        status(&mut g, &cfg, &h, 503, None),
        Verdict::Fail(Some(_))
    ));
    let b = g.current().unwrap().target;
    let until = h.cooldowns.until(b, Instant::now()).expect("b cools down");
    assert!(until > Instant::now() + Duration::from_secs(29));

    // Everything cooling: 503 with the soonest recovery as retry-after.
    let mut x = failover(&cfg, "m");
    let no = x.pick(Op::ChatCompletions, &h, Instant::now()).unwrap_err();
    assert!(matches!(no, NoTarget::CoolingDown(Some(20))), "{no:?}");
    let e = no.into_error("m", "openai /v1/chat/completions");
    assert_eq!((e.status(), e.retry_after), (503, Some(20)));
}

#[test]
fn a_success_restores_a_cooling_target() {
    let cfg = config("  m: { targets: [{ provider: a }] }", GENEROUS);
    let h = Health::default();
    let mut f = failover(&cfg, "m");
    attempt(&mut f, &h);
    let t = f.current().unwrap().target;
    h.cooldowns
        .cool_down(t, Duration::from_secs(60), Instant::now());
    assert!(matches!(
        status(&mut f, &cfg, &h, 200, None),
        Verdict::Proceed
    ));
    assert!(h.cooldowns.until(t, Instant::now()).is_none());
}

#[test]
fn client_errors_are_not_retried_and_a_last_5xx_is_a_502() {
    let cfg = a_then_b();
    let h = Health::default();
    for code in [400, 401, 404, 422] {
        let mut f = failover(&cfg, "m");
        attempt(&mut f, &h);
        assert!(
            matches!(status(&mut f, &cfg, &h, code, None), Verdict::Proceed),
            "{code}"
        );
    }
    let mut f = failover(&cfg, "m");
    attempt(&mut f, &h);
    assert!(matches!(
        status(&mut f, &cfg, &h, 500, None),
        Verdict::Retry
    ));
    attempt(&mut f, &h);
    match status(&mut f, &cfg, &h, 502, None) {
        Verdict::Fail(Some(e)) => {
            assert_eq!(e.status(), 502);
            assert!(
                e.message.contains("2 attempt(s)") && e.message.contains("502"),
                "{}",
                e.message
            );
        }
        v => panic!("{v:?}"),
    }
}

#[test]
fn statuses_outside_on_status_are_the_clients_to_see() {
    let cfg = config(
        "  m: { targets: [{ provider: a }, { provider: b }] }",
        &format!("{GENEROUS}, on_status: [503]"),
    );
    let h = Health::default();
    let mut f = failover(&cfg, "m");
    attempt(&mut f, &h);
    assert!(matches!(
        status(&mut f, &cfg, &h, 500, None),
        Verdict::Proceed
    ));
}

#[test]
fn max_attempts_caps_the_walk() {
    let cfg = config(
        "  m: { targets: [{ provider: a }, { provider: b }, { provider: c }] }",
        "max_attempts: 2, budget: 1.0, budget_min: 100",
    );
    let h = Health::default();
    let mut f = failover(&cfg, "m");
    attempt(&mut f, &h);
    assert!(matches!(
        status(&mut f, &cfg, &h, 503, None),
        Verdict::Retry
    ));
    attempt(&mut f, &h);
    assert!(matches!(
        status(&mut f, &cfg, &h, 503, None),
        Verdict::Fail(_)
    ));
}

#[test]
fn the_retry_budget_stops_failover() {
    let cfg = config(
        "  m: { targets: [{ provider: a }, { provider: b }] }",
        "max_attempts: 3, budget: 0.0, budget_min: 1",
    );
    let h = Health::default();
    let mut f = failover(&cfg, "m");
    attempt(&mut f, &h);
    assert!(
        matches!(status(&mut f, &cfg, &h, 500, None), Verdict::Retry),
        "the floor of 1"
    );
    let mut g = failover(&cfg, "m");
    attempt(&mut g, &h);
    assert!(
        matches!(status(&mut g, &cfg, &h, 500, None), Verdict::Fail(_)),
        "budget spent"
    );
}

#[test]
fn nothing_is_retried_once_the_response_started() {
    let cfg = a_then_b();
    let h = Health::default();
    let mut f = failover(&cfg, "m");
    attempt(&mut f, &h);
    f.response_started = true;
    let v = f.on_transport_error(
        TransportError::Upstream,
        None,
        "reset",
        &judge(&cfg, Op::ChatCompletions, &h),
    );
    assert!(matches!(v, Verdict::Fail(_)));
    let v = f.on_transport_error(
        TransportError::StalePooled,
        None,
        "reset",
        &judge(&cfg, Op::ChatCompletions, &h),
    );
    assert!(matches!(v, Verdict::Fail(_)));
}

#[test]
fn a_dead_pooled_connection_is_retried_once_on_the_same_target() {
    let cfg = a_then_b();
    let h = Health::default();
    let mut f = failover(&cfg, "m");
    attempt(&mut f, &h);
    let first = f.current().unwrap();
    let retry = |f: &mut Failover, kind| {
        f.on_transport_error(kind, None, "reset", &judge(&cfg, Op::ChatCompletions, &h))
    };
    assert!(matches!(
        retry(&mut f, TransportError::StalePooled),
        Verdict::Retry
    ));
    let again = f.pick(Op::ChatCompletions, &h, Instant::now()).unwrap();
    assert!(again.again && again.target == first.target);
    f.commit(again, &h);
    assert_eq!(f.attempts, 1, "the same attempt, on a fresh connection");
    assert!(
        h.cooldowns.until(first.target, Instant::now()).is_none(),
        "not the target's fault"
    );
    // A second dead connection is a real failure: cool down, next target.
    assert!(matches!(
        retry(&mut f, TransportError::StalePooled),
        Verdict::Retry
    ));
    assert!(h.cooldowns.until(first.target, Instant::now()).is_some());
    assert_eq!(attempt(&mut f, &h), "b");
    assert_eq!(f.attempts, 2);
}

#[test]
fn a_responses_passthrough_without_the_api_is_retried_translated_on_the_same_target() {
    let cfg = a_then_b();
    let h = Health::default();
    let mut f = failover(&cfg, "m");
    let p = f.pick(Op::Responses, &h, Instant::now()).unwrap();
    f.commit(p, &h);
    let v = f.on_status(404, None, true, &judge(&cfg, Op::Responses, &h));
    assert!(matches!(v, Verdict::Retry));
    let again = f.pick(Op::Responses, &h, Instant::now()).unwrap();
    assert!(again.again && again.translate && again.target == p.target);
    f.commit(again, &h);
    // The translated retry works: the provider is translated for from now on.
    let v = f.on_status(200, None, false, &judge(&cfg, Op::Responses, &h));
    assert!(matches!(v, Verdict::Proceed));
    let provider = f.candidates[p.candidate].provider();
    assert_eq!(
        provider.wire_protocol(crate::protocol::Protocol::Responses),
        crate::protocol::Protocol::OpenAi
    );
    // Only once per request: a second 404 is the client's.
    let mut g = failover(&cfg, "m");
    let p = g.pick(Op::Responses, &h, Instant::now()).unwrap();
    g.commit(p, &h);
    assert!(matches!(
        g.on_status(404, None, false, &judge(&cfg, Op::Responses, &h)),
        Verdict::Proceed
    ));
}

#[test]
fn every_credential_is_tried_before_the_target_counts_as_cooling() {
    let cfg = config("  m: { targets: [{ provider: two }] }", GENEROUS);
    let h = Health::default();
    let mut f = failover(&cfg, "m");
    attempt(&mut f, &h);
    let first = f.current().unwrap();
    h.cooldowns
        .cool_down(first.target, Duration::from_secs(60), Instant::now());
    let mut g = failover(&cfg, "m");
    let p = g.pick(Op::ChatCompletions, &h, Instant::now()).unwrap();
    assert_ne!(p.credential, first.credential, "the other credential");
    h.cooldowns
        .cool_down(p.target, Duration::from_secs(60), Instant::now());
    let mut x = failover(&cfg, "m");
    assert!(matches!(
        x.pick(Op::ChatCompletions, &h, Instant::now()),
        Err(NoTarget::CoolingDown(_))
    ));
}

#[test]
fn unhealthy_providers_are_skipped_until_their_next_probe() {
    let cfg = config(
        "  m: { targets: [{ provider: probed }, { provider: b, weight: 0 }] }",
        GENEROUS,
    );
    let h = Health::default();
    let probed = cfg.providers["probed"].id;
    h.probes.record(probed, false, Some("500".into()), 1, 1);
    let mut f = failover(&cfg, "m");
    assert_eq!(attempt(&mut f, &h), "b");
    let only = config("  m: { targets: [{ provider: probed }] }", GENEROUS);
    let mut g = failover(&only, "m");
    let no = g.pick(Op::ChatCompletions, &h, Instant::now()).unwrap_err();
    assert!(matches!(no, NoTarget::CoolingDown(Some(5))), "{no:?}");
}

#[test]
fn targets_that_cannot_serve_the_request_are_skipped_or_refused() {
    let cfg = config(
        "  e: { targets: [{ provider: ant }] }\n  mixed: { targets: [{ provider: ant }, { provider: a, weight: 0 }] }",
        GENEROUS,
    );
    let h = Health::default();
    let mut f = failover(&cfg, "e");
    let no = f.pick(Op::Embeddings, &h, Instant::now()).unwrap_err();
    assert!(matches!(no, NoTarget::Unservable));
    assert_eq!(no.into_error("e", "openai /v1/embeddings").status(), 501);
    let mut g = failover(&cfg, "mixed");
    let p = g.pick(Op::Embeddings, &h, Instant::now()).unwrap();
    assert_eq!(name(&g, p), "a");
}

#[test]
fn transport_errors_cool_down_and_fail_over_then_answer_the_last_failure() {
    let cfg = a_then_b();
    let h = Health::default();
    let mut f = failover(&cfg, "m");
    attempt(&mut f, &h);
    let a = f.current().unwrap().target;
    let refused = GatewayError::new(
        ErrorCode::UpstreamError,
        "provider \"a\" refused the connection",
    );
    let v = f.on_transport_error(
        TransportError::Upstream,
        Some(refused),
        "ConnectRefused",
        &judge(&cfg, Op::ChatCompletions, &h),
    );
    assert!(matches!(v, Verdict::Retry));
    assert!(h.cooldowns.until(a, Instant::now()).is_some());
    attempt(&mut f, &h);
    let timeout = GatewayError::new(
        ErrorCode::UpstreamRequestTimeout,
        "provider \"b\" did not answer in time",
    );
    let v = f.on_transport_error(
        TransportError::Upstream,
        Some(timeout),
        "ReadTimedout",
        &judge(&cfg, Op::ChatCompletions, &h),
    );
    assert!(matches!(v, Verdict::Fail(None)));
    let e = f
        .last_failure
        .take()
        .expect("the last failure is the answer");
    assert_eq!(e.status(), 504);
    let stats = h.stats.get(ModelId::new(cfg.providers["b"].id, "m"));
    assert_eq!((stats.requests, stats.errors), (1, 1));
}
