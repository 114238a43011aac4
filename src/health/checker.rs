//! Active health checks: a background service that, for each provider with a
//! `health_check`, sends `GET <path>` every `interval` through Pingora's own connector,
//! prepared exactly like a proxied request (`Provider::prepare_request`: credential,
//! version and configured headers), and records the result in `State::health.probes`.
//! Unhealthy providers are skipped like cooled-down targets.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::config::Config;
use crate::health::ProviderId;
use crate::metrics;
use crate::runtime::Runtime;
use crate::upstream::{HealthCheck, Provider};

pub struct HealthChecker {
    pub runtime: Arc<Runtime>,
}

#[async_trait]
impl BackgroundService for HealthChecker {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let connector = Arc::new(Connector::new(None));
        let mut last_probe: HashMap<ProviderId, Instant> = HashMap::new();
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            let config = self.runtime.config();
            for provider in config.providers.values() {
                let Some(hc) = provider.health_check.clone() else {
                    continue;
                };
                let due = last_probe
                    .get(&provider.id)
                    .is_none_or(|t| t.elapsed() >= hc.interval);
                if !due {
                    continue;
                }
                last_probe.insert(provider.id, Instant::now());
                let (provider, connector, config, runtime) = (
                    provider.clone(),
                    connector.clone(),
                    config.clone(),
                    self.runtime.clone(),
                );
                tokio::spawn(async move {
                    let result = probe(&connector, &provider, &hc).await;
                    let probes = &runtime.state.health.probes;
                    let was = probes.healthy(provider.id);
                    let healthy = probes.record(
                        provider.id,
                        result.is_ok(),
                        result.as_ref().err().cloned(),
                        hc.healthy_threshold,
                        hc.unhealthy_threshold,
                    );
                    // Other replicas skip it too while this one finds it down; the
                    // report is renewed at every failed probe and outlives a few missed.
                    if !healthy {
                        let valid = (hc.interval.saturating_mul(3) + hc.timeout)
                            .max(Duration::from_secs(5));
                        probes.announce(provider.id, Some(valid));
                    } else if !was {
                        probes.announce(provider.id, None);
                    }
                    if was != healthy {
                        match &result {
                            Ok(()) => log::info!("provider {:?} is healthy again", provider.name),
                            Err(e) => log::warn!("provider {:?} is unhealthy: {e}", provider.name),
                        }
                    }
                    set_gauges(&config, &provider, healthy);
                });
            }
        }
    }
}

/// `modelgate_upstream_healthy{provider, target}` for every model target on the provider.
fn set_gauges(config: &Config, provider: &Provider, healthy: bool) {
    for route in config.models.routes() {
        for t in route
            .targets
            .iter()
            .filter(|t| t.provider.name == provider.name)
        {
            let target = t.model.as_deref().unwrap_or(&route.name);
            metrics::UPSTREAM_HEALTHY
                .with_label_values(&[&provider.name, target])
                .set(i64::from(healthy));
        }
    }
}

async fn probe(connector: &Connector, provider: &Provider, hc: &HealthCheck) -> Result<(), String> {
    let fut = async {
        let addr = provider.resolve().await?;
        let mut peer = provider.peer(addr);
        peer.options.connection_timeout = Some(hc.timeout);
        peer.options.total_connection_timeout = Some(hc.timeout);
        peer.options.read_timeout = Some(hc.timeout);
        peer.options.idle_timeout = Some(Duration::ZERO);
        let (mut session, _) = connector
            .get_http_session(&peer)
            .await
            .map_err(|e| format!("connect: {}", e.etype().as_str()))?;
        let path = provider.upstream_path(&hc.path);
        let mut req =
            RequestHeader::build("GET", path.as_bytes(), None).map_err(|e| e.to_string())?;
        req.insert_header("user-agent", "modelgate-health-check")
            .map_err(|e| e.to_string())?;
        provider
            .prepare_request(&mut req, 0, false)
            .map_err(|e| e.to_string())?;
        session
            .write_request_header(Box::new(req))
            .await
            .map_err(|e| e.etype().as_str().to_string())?;
        session
            .finish_request_body()
            .await
            .map_err(|e| e.etype().as_str().to_string())?;
        session
            .read_response_header()
            .await
            .map_err(|e| e.etype().as_str().to_string())?;
        let status = session
            .response_header()
            .map(|h| h.status.as_u16())
            .unwrap_or(0);
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(format!("GET {} answered {status}", hc.path))
        }
    };
    match tokio::time::timeout(hc.timeout + Duration::from_millis(100), fut).await {
        Ok(r) => r,
        Err(_) => Err(format!("GET {} timed out", hc.path)),
    }
}
