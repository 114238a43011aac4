//! The proxy service's connections, around Pingora's handling of each: a deadline for a
//! request's whole header, and a grace for the first request at shutdown.
//!
//! **Header deadline.** Pingora's read timeout restarts with every byte, so a client
//! sending one header byte a second (slowloris) held its connection for as long as it
//! liked. Here each request must have its header read within `server.header_timeout`
//! of the connection opening (on a reused connection, of the request's first byte);
//! past that the connection is closed. The proxy notes that a
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
//! **Idle connections.** Pingora's future for a request turn is some 20 KiB; made while
//! waiting for a request, every idle kept-alive connection held one. Here a connection
//! waits for its next request's first bytes holding only its stream (they are read
//! ahead into the stream's wrapper, which gives them to Pingora first), and the turn
//! starts when they are in: an idle connection costs 34 KiB instead of 49
//! (BENCHMARKS.md, 2026-12-04). A connection that sends nothing within `header_timeout`
//! of opening, or within `KEEPALIVE_IDLE` of its last answer, is closed.
//!
//! **Refusals.** The stream is wrapped so that Pingora's own 400s and 405s, sent before
//! any proxy phase, reach the client as the gateway's errors (see `malformed`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pingora::apps::{HttpPersistentSettings, HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::Stream;
use pingora::proxy::HttpProxy;
use pingora::server::ShutdownWatch;
use pingora::time::fast_timeout::fast_timeout;

use crate::config::ServerSettings;
use crate::malformed::Guarded;
use crate::proxy::Gateway;

/// How long connections accepted just before the listeners closed get to send their
/// first request (at most half the grace period).
const FIRST_REQUEST_GRACE: Duration = Duration::from_secs(1);

/// How long a kept-alive connection may wait for its next request (its header deadline
/// counts from the request's first byte).
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

/// How the wait for a connection's next request ended.
enum Wait {
    /// Its first bytes are in.
    Arrived,
    TimedOut,
    /// The client closed the connection, or it failed.
    Closed,
}

/// How often a connection waiting for its next request looks at the shutdown flag.
const SHUTDOWN_CHECK: Duration = Duration::from_secs(1);

impl Connections {
    /// Waits up to `wait` for the next request's first bytes, holding only the stream
    /// (they are read ahead into it, and Pingora reads them from there). At shutdown
    /// the wait is cut to the grace for first requests. Pingora's coarse timer, looked
    /// at in slices for the shutdown flag: cheaper per request than a tokio timer and
    /// a watch registration, which showed in the CPU per request.
    async fn next_request(
        &self,
        stream: &mut Guarded,
        shutdown: &ShutdownWatch,
        wait: Duration,
    ) -> Wait {
        let mut deadline = Instant::now() + wait;
        let mut cut = false;
        loop {
            if !cut && *shutdown.borrow() {
                cut = true;
                deadline = deadline.min(Instant::now() + self.shutdown_grace);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Wait::TimedOut;
            }
            match fast_timeout(left.min(SHUTDOWN_CHECK), stream.read_ahead()).await {
                Ok(Ok(0)) | Ok(Err(_)) => return Wait::Closed,
                Ok(Ok(_)) => return Wait::Arrived,
                Err(_) => {}
            }
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
        let mut stream = Guarded::wrap(stream, seen.clone());
        // Pingora's HTTP/1 keep-alive loop, here so that every request on the connection
        // (not only the first) has its header deadline and its refusals shaped.
        let mut settings: Option<HttpPersistentSettings> = None;
        let mut first = true;
        loop {
            // Between requests only the stream is held: Pingora's future for a turn is
            // some 20 KiB, made once the next request's first byte is in.
            let wait = if first {
                self.header_timeout
            } else {
                KEEPALIVE_IDLE
            };
            let waiting = Instant::now();
            match self.next_request(&mut stream, shutdown, wait).await {
                Wait::Arrived => {}
                Wait::TimedOut if first => {
                    log::debug!("closing a connection that sent nothing for {wait:?}");
                    crate::metrics::HEADER_TIMEOUTS.inc();
                    return None;
                }
                Wait::TimedOut | Wait::Closed => return None,
            }
            // The first request's header is due `header_timeout` after the connection
            // opened; a later one's, after its first byte.
            let allowance = if first {
                self.header_timeout.saturating_sub(waiting.elapsed())
            } else {
                self.header_timeout
            };
            let mut session = ServerSession::new_http1(stream);
            match settings.take() {
                Some(s) => s.apply_to_session(&mut session),
                None => {
                    let options = self.proxy.server_options();
                    session.set_keepalive(if *shutdown.borrow() { None } else { Some(60) });
                    session.set_keepalive_reuses_remaining(
                        options.and_then(|o| o.keepalive_request_limit),
                    );
                }
            }
            first = false;
            seen.store(false, Ordering::Relaxed);
            let turn =
                HEADER_SEEN.scope(seen.clone(), self.proxy.process_new_http(session, shutdown));
            tokio::pin!(turn);
            let reusable = match fast_timeout(allowance, &mut turn).await {
                Ok(r) => r,
                Err(_) if !seen.load(Ordering::Relaxed) => {
                    log::debug!(
                        "closing a connection whose request header took over {allowance:?}"
                    );
                    crate::metrics::HEADER_TIMEOUTS.inc();
                    return None;
                }
                Err(_) => turn.await,
            };
            let (next, persistent) = reusable?.consume();
            let Some(next) = Guarded::unwrap_from(next) else {
                log::warn!("a kept-alive connection came back from Pingora unwrapped: closed");
                return None;
            };
            stream = next;
            settings = persistent;
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
