//! Keeps the API keys in step with the store: polls it for keys changed by other
//! processes (twice a second, so a revocation on one replica holds on all within a
//! second) and writes when keys were last used (every 10 s and at exit).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::runtime::Runtime;

pub const POLL_EVERY: Duration = Duration::from_millis(500);
pub const ACTIVITY_EVERY: Duration = Duration::from_secs(10);

pub struct KeySync {
    pub runtime: Arc<Runtime>,
}

#[async_trait]
impl BackgroundService for KeySync {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let keys = self.runtime.state.keys.clone();
        let mut last_activity = Instant::now();
        let mut failing = false;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(POLL_EVERY) => {}
                _ = shutdown.changed() => break,
            }
            let Some(store) = self.runtime.state.store() else {
                continue; // not open yet (-d opens it after the fork)
            };
            match keys.poll(&store).await {
                Ok(()) if failing => {
                    log::info!("API keys: the store answers again");
                    failing = false;
                }
                Ok(()) => {}
                Err(e) if !failing => {
                    log::warn!("API keys: cannot poll the store for changes ({e}); the keys known stay in force");
                    failing = true;
                }
                Err(_) => {}
            }
            if last_activity.elapsed() >= ACTIVITY_EVERY {
                last_activity = Instant::now();
                if let Err(e) = keys.persist_activity(&store, &self.runtime.config()).await {
                    log::debug!("{e}");
                }
            }
        }
        if let Some(store) = self.runtime.state.store() {
            let _ = keys.persist_activity(&store, &self.runtime.config()).await;
        }
    }
}
