//! The benchmarks' floor: a bare Pingora proxy with the gateway's Pingora build (same
//! version, features and release profile), doing only what every gateway request needs
//! at least: a key check on the Authorization header and the provider credential swapped
//! in; no body work. `benches/load.sh` and `benches/compare.sh` run it beside modelgate.
//!
//! `cargo build --release --example bare_pingora`; environment: BARE_LISTEN (default
//! 127.0.0.1:18091), BARE_UPSTREAM (127.0.0.1:9001), BARE_KEY (sk-bench-1234),
//! BARE_THREADS (1), BARE_NO_STEAL=1 for one runtime per worker thread (as modelgate).
//! The system allocator, as Pingora ships.

use async_trait::async_trait;
use pingora::http::RequestHeader;
use pingora::prelude::HttpPeer;
use pingora::proxy::{http_proxy_service, ProxyHttp, Session};
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use pingora::Result;

struct Bare {
    upstream: String,
    /// `Bearer KEY`, compared as bytes.
    authorization: Vec<u8>,
}

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn request_filter(&self, session: &mut Session, _: &mut ()) -> Result<bool> {
        let ok = session
            .req_header()
            .headers
            .get(http::header::AUTHORIZATION)
            .is_some_and(|v| v.as_bytes() == self.authorization.as_slice());
        if ok {
            return Ok(false);
        }
        session.respond_error(401).await?;
        Ok(true)
    }

    async fn upstream_peer(&self, _: &mut Session, _: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(
            self.upstream.as_str(),
            false,
            String::new(),
        )))
    }

    async fn upstream_request_filter(
        &self,
        _: &mut Session,
        request: &mut RequestHeader,
        _: &mut (),
    ) -> Result<()> {
        request.insert_header(http::header::AUTHORIZATION, "Bearer sk-upstream")
    }
}

fn main() {
    let env = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    let mut conf = ServerConf {
        threads: env("BARE_THREADS", "1").parse().unwrap_or(1),
        ..ServerConf::default()
    };
    conf.work_stealing = std::env::var_os("BARE_NO_STEAL").is_none();
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let bare = Bare {
        upstream: env("BARE_UPSTREAM", "127.0.0.1:9001"),
        authorization: format!("Bearer {}", env("BARE_KEY", "sk-bench-1234")).into_bytes(),
    };
    let mut service = http_proxy_service(&server.configuration, bare);
    service.add_tcp(&env("BARE_LISTEN", "127.0.0.1:18091"));
    server.add_service(service);
    server.run_forever();
}
