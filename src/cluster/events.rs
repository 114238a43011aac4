//! What one replica learns that all must act on, published on one Redis channel: a
//! target cooled down (a provider's `Retry-After` included) or restored, a provider
//! found unhealthy by its active check or healthy again, a provider reset, a key changed.
//! Cooldowns and unhealthy verdicts are also kept as expiring Redis keys, so a replica
//! that starts later begins with them. A replica ignores its own messages.
//!
//! Key changes are also found by every replica's poll of the store (twice a second):
//! the message only makes them immediate.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::{now_ms, Cluster};
use crate::health::{CooldownEvent, ProbeEvent, ProviderId, TargetId};
use crate::runtime::Runtime;

#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Event {
    Cool {
        provider: u64,
        target: u64,
        until_ms: i64,
    },
    Restore {
        provider: u64,
        target: u64,
    },
    Reset {
        provider: u64,
    },
    /// The sender's active check finds the provider unhealthy, until `until_ms` unless
    /// renewed.
    Down {
        provider: u64,
        until_ms: i64,
    },
    /// The sender's active check finds it healthy again.
    Up {
        provider: u64,
    },
    Keys,
}

#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    from: String,
    #[serde(flatten)]
    event: Event,
}

fn channel(c: &Cluster) -> String {
    c.key("events")
}

fn cool_key(c: &Cluster, provider: u64, target: u64) -> String {
    c.key(&format!("cool:{provider:016x}:{target:016x}"))
}

fn down_key(c: &Cluster, provider: u64, replica: &str) -> String {
    c.key(&format!("down:{provider:016x}:{replica}"))
}

/// Publishes `event` (and keeps a cooldown as an expiring key), off the request path.
fn publish(c: &Arc<Cluster>, event: Event) {
    let mut pipe = redis::pipe();
    match event {
        Event::Cool {
            provider,
            target,
            until_ms,
        } => {
            let ttl = until_ms.saturating_sub(now_ms()).max(1);
            pipe.cmd("SET")
                .arg(cool_key(c, provider, target))
                .arg(until_ms)
                .arg("PX")
                .arg(ttl)
                .ignore();
        }
        Event::Down { provider, until_ms } => {
            let ttl = until_ms.saturating_sub(now_ms()).max(1);
            pipe.cmd("SET")
                .arg(down_key(c, provider, &c.replica))
                .arg(until_ms)
                .arg("PX")
                .arg(ttl)
                .ignore();
        }
        Event::Up { provider } => {
            pipe.cmd("DEL")
                .arg(down_key(c, provider, &c.replica))
                .ignore();
        }
        _ => {}
    }
    let envelope = Envelope {
        from: c.replica.clone(),
        event,
    };
    let Ok(text) = serde_json::to_string(&envelope) else {
        return;
    };
    pipe.cmd("PUBLISH").arg(channel(c)).arg(text).ignore();
    let cluster = c.clone();
    c.spawn(async move {
        let mut conn = cluster.conn();
        let _ = cluster
            .call(async move { pipe.query_async::<()>(&mut conn).await })
            .await;
    });
}

/// A key was created, changed, rotated or revoked here.
pub fn keys_changed(c: &Arc<Cluster>) {
    publish(c, Event::Keys);
}

/// A provider's cooldowns were cleared here.
pub fn provider_reset(c: &Arc<Cluster>, provider: ProviderId) {
    publish(
        c,
        Event::Reset {
            provider: provider.raw(),
        },
    );
}

/// Connects the runtime's cooldowns to the channel and starts listening to it.
pub fn start(c: &Arc<Cluster>, runtime: &Arc<Runtime>) {
    let publisher = Arc::downgrade(c);
    runtime
        .state
        .health
        .cooldowns
        .set_observer(Box::new(move |e: CooldownEvent| {
            let Some(c) = publisher.upgrade() else { return };
            let event = match e {
                CooldownEvent::Cooled { target, for_ } => Event::Cool {
                    provider: target.provider.raw(),
                    target: target.raw(),
                    until_ms: now_ms().saturating_add(for_.as_millis() as i64),
                },
                CooldownEvent::Restored { target } => Event::Restore {
                    provider: target.provider.raw(),
                    target: target.raw(),
                },
            };
            publish(&c, event);
        }));
    let publisher = Arc::downgrade(c);
    runtime
        .state
        .health
        .probes
        .set_observer(Box::new(move |e: ProbeEvent| {
            let Some(c) = publisher.upgrade() else { return };
            let provider = e.provider.raw();
            let event = match e.down_for {
                Some(d) => Event::Down {
                    provider,
                    until_ms: now_ms().saturating_add(d.as_millis() as i64),
                },
                None => Event::Up { provider },
            };
            publish(&c, event);
        }));
    let weak = Arc::downgrade(runtime);
    let cluster = c.clone();
    c.spawn(async move { listen(cluster, weak).await });
}

async fn listen(c: Arc<Cluster>, runtime: Weak<Runtime>) {
    loop {
        if runtime.upgrade().is_none() {
            return;
        }
        match c.client().get_async_pubsub().await {
            Ok(mut pubsub) => {
                if pubsub.subscribe(channel(&c)).await.is_ok() {
                    // Subscribed first, then read what is already cooling down, so nothing
                    // published in between is missed.
                    load_cooldowns(&c, &runtime).await;
                    if let Some(rt) = runtime.upgrade() {
                        poll_keys(&rt).await;
                    }
                    let mut messages = pubsub.on_message();
                    while let Some(msg) = messages.next().await {
                        let Some(rt) = runtime.upgrade() else { return };
                        let Ok(text) = msg.get_payload::<String>() else {
                            continue;
                        };
                        match serde_json::from_str::<Envelope>(&text) {
                            Ok(env) if env.from != c.replica => {
                                apply(&rt, &env.from, env.event).await
                            }
                            Ok(_) => {}
                            Err(e) => log::debug!("cluster: an event that does not parse: {e}"),
                        }
                    }
                }
            }
            Err(e) => log::debug!("cluster: cannot subscribe: {e}"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn instant_of(until_ms: i64) -> Instant {
    let left = until_ms.saturating_sub(now_ms()).max(0) as u64;
    Instant::now() + Duration::from_millis(left)
}

async fn apply(rt: &Arc<Runtime>, from: &str, event: Event) {
    let cooldowns = &rt.state.health.cooldowns;
    let probes = &rt.state.health.probes;
    match event {
        Event::Cool {
            provider,
            target,
            until_ms,
        } => cooldowns.apply_remote(
            TargetId::from_raw(ProviderId::from_raw(provider), target),
            Some(instant_of(until_ms)),
        ),
        Event::Restore { provider, target } => cooldowns.apply_remote(
            TargetId::from_raw(ProviderId::from_raw(provider), target),
            None,
        ),
        Event::Reset { provider } => {
            cooldowns.clear_provider_quietly(ProviderId::from_raw(provider));
        }
        Event::Down { provider, until_ms } => probes.apply_remote(
            ProviderId::from_raw(provider),
            from,
            Some(instant_of(until_ms)),
        ),
        Event::Up { provider } => probes.apply_remote(ProviderId::from_raw(provider), from, None),
        Event::Keys => poll_keys(rt).await,
    }
}

async fn poll_keys(rt: &Arc<Runtime>) {
    if let Some(store) = rt.state.store() {
        if let Err(e) = rt.state.keys.poll(&store).await {
            log::debug!("cluster: key poll after an event: {e}");
        }
    }
}

/// What other replicas set before this one subscribed: cooldowns and unhealthy verdicts.
async fn load_cooldowns(c: &Arc<Cluster>, runtime: &Weak<Runtime>) {
    let cooling = scan(c, "cool:").await;
    let down = scan(c, "down:").await;
    let Some(rt) = runtime.upgrade() else { return };
    let health = &rt.state.health;
    for (rest, until) in cooling {
        let Some((p, t)) = rest.split_once(':') else {
            continue;
        };
        if let (Ok(p), Ok(t)) = (u64::from_str_radix(p, 16), u64::from_str_radix(t, 16)) {
            health.cooldowns.apply_remote(
                TargetId::from_raw(ProviderId::from_raw(p), t),
                Some(instant_of(until)),
            );
        }
    }
    for (rest, until) in down {
        let Some((p, replica)) = rest.split_once(':') else {
            continue;
        };
        if replica == c.replica {
            continue;
        }
        if let Ok(p) = u64::from_str_radix(p, 16) {
            health
                .probes
                .apply_remote(ProviderId::from_raw(p), replica, Some(instant_of(until)));
        }
    }
}

/// Every key under `prefix` with its value, the prefix removed (at most 100,000).
async fn scan(c: &Arc<Cluster>, prefix: &str) -> Vec<(String, i64)> {
    let full = c.key(prefix);
    let pattern = format!("{full}*");
    let mut keys: Vec<String> = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let mut conn = c.conn();
        let p = pattern.clone();
        let Ok((next, batch)) = c
            .call(async move {
                redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(p)
                    .arg("COUNT")
                    .arg(1000)
                    .query_async::<(u64, Vec<String>)>(&mut conn)
                    .await
            })
            .await
        else {
            return vec![];
        };
        keys.extend(batch);
        cursor = next;
        if cursor == 0 || keys.len() > 100_000 {
            break;
        }
    }
    if keys.is_empty() {
        return vec![];
    }
    let mut conn = c.conn();
    let names = keys.clone();
    let Ok(values) = c
        .call(async move {
            redis::cmd("MGET")
                .arg(&names)
                .query_async::<Vec<Option<i64>>>(&mut conn)
                .await
        })
        .await
    else {
        return vec![];
    };
    keys.into_iter()
        .zip(values)
        .filter_map(|(k, v)| Some((k.strip_prefix(&full)?.to_string(), v?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip() {
        let env = Envelope {
            from: "r1".into(),
            event: Event::Cool {
                provider: 1,
                target: 2,
                until_ms: 3,
            },
        };
        let text = serde_json::to_string(&env).unwrap();
        assert_eq!(
            text,
            r#"{"from":"r1","kind":"cool","provider":1,"target":2,"until_ms":3}"#
        );
        let back: Envelope = serde_json::from_str(&text).unwrap();
        assert_eq!(back.event, env.event);
        let keys: Envelope = serde_json::from_str(r#"{"from":"r2","kind":"keys"}"#).unwrap();
        assert_eq!(keys.event, Event::Keys);
        let down: Envelope =
            serde_json::from_str(r#"{"from":"r2","kind":"down","provider":7,"until_ms":9}"#)
                .unwrap();
        assert_eq!(
            down.event,
            Event::Down {
                provider: 7,
                until_ms: 9
            }
        );
    }
}
