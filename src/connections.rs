//! The proxy service's connections, around Pingora's handling of each: a deadline for a
//! request's whole header, and a grace for the first request at shutdown.
//!
//! **Header deadline.** Pingora's read timeout restarts with every byte, so a client
//! sending one header byte a second (slowloris) held its connection for as long as it
//! liked. Here each request must have its header read within `server.header_timeout`
//! of the connection's turn starting (on a reused connection, after the idle allowance
//! for keep-alive as well); past that the connection is closed. The proxy notes that a
//! header arrived (`header_arrived`, from its first phase) through a task-local flag:
//! Pingora reads the header and runs the phases in the task this handler awaits.
//!
//! **Shutdown grace.** Pingora drops every connection parked waiting for a request header
//! the moment the listeners close, which includes connections accepted an instant before
//! whose request is still on the wire: during a graceful upgrade those clients saw a
//! closed connection instead of an answer. Waiting `FIRST_REQUEST_GRACE` first lets
//! their requests in (answered with `Connection: close`); idle keep-alive connections
//! are closed after it as before.
//!
//! **Refusals.** The stream is wrapped so that Pingora's own 400s and 405s, sent before
//! any proxy phase, reach the client as the gateway's errors (see `malformed`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pingora::apps::{HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::Stream;
use pingora::proxy::HttpProxy;
use pingora::server::ShutdownWatch;

use crate::config::ServerSettings;
use crate::proxy::Gateway;

/// How long connections accepted just before the listeners closed get to send their
/// first request (at most half the grace period).
const FIRST_REQUEST_GRACE: Duration = Duration::from_secs(1);

/// How long a kept-alive connection may wait for its next request before the header
/// deadline starts counting: Pingora's own idle read timeout closes it at 60 s.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);

tokio::task_local! {
    static HEADER_SEEN: Arc<AtomicBool>;
}

/// Called by the proxy once a request's header has been read.
pub fn header_arrived() {
    let _ = HEADER_SEEN.try_with(|seen| seen.store(true, Ordering::Relaxed));
}

pub struct Connections {
    proxy: Arc<HttpProxy<Gateway>>,
    header_timeout: Duration,
    shutdown_grace: Duration,
}

impl Connections {
    pub fn new(proxy: HttpProxy<Gateway>, settings: &ServerSettings) -> Self {
        Connections {
            proxy: Arc::new(proxy),
            header_timeout: settings.header_timeout,
            shutdown_grace: FIRST_REQUEST_GRACE.min(settings.grace_period / 2),
        }
    }
}

#[async_trait::async_trait]
impl ServerApp for Connections {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let options = self.proxy.server_options();
        if stream.selected_alpn_proto().is_some()
            || options.is_some_and(|o| o.h2c || o.force_custom)
        {
            // HTTP/2 and custom protocols (not configured today) keep Pingora's own loop.
            return self.proxy.process_new(stream, shutdown).await;
        }
        let seen = Arc::new(AtomicBool::new(false));
        let stream = crate::malformed::Guarded::wrap(stream, seen.clone());
        // Pingora's HTTP/1 keep-alive loop, here so that every request on the connection
        // (not only the first) has its header deadline and its refusals shaped.
        let mut session = ServerSession::new_http1(stream);
        session.set_keepalive(if *shutdown.borrow() { None } else { Some(60) });
        session.set_keepalive_reuses_remaining(options.and_then(|o| o.keepalive_request_limit));
        let mut allowance = self.header_timeout;
        loop {
            seen.store(false, Ordering::Relaxed);
            let turn =
                HEADER_SEEN.scope(seen.clone(), self.proxy.process_new_http(session, shutdown));
            tokio::pin!(turn);
            let reusable = tokio::select! {
                r = &mut turn => r,
                _ = tokio::time::sleep(allowance) => {
                    if !seen.load(Ordering::Relaxed) {
                        log::debug!("closing a connection whose request header took over {allowance:?}");
                        crate::metrics::HEADER_TIMEOUTS.inc();
                        return None;
                    }
                    turn.await
                }
            };
            let (stream, settings) = reusable?.consume();
            session = ServerSession::new_http1(stream);
            if let Some(settings) = settings {
                settings.apply_to_session(&mut session);
            }
            allowance = KEEPALIVE_IDLE + self.header_timeout;
        }
    }

    async fn cleanup(&self) {
        log::info!(
            "listeners closed; connections waiting for their first request get {:?}",
            self.shutdown_grace
        );
        tokio::time::sleep(self.shutdown_grace).await;
        self.proxy.cleanup().await;
    }
}
