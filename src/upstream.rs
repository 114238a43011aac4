//! Providers at runtime: parsed base URL, credentials spread round-robin, async DNS with a
//! small cache (Pingora's `HttpPeer::new(host)` would resolve synchronously and panic on
//! failure), and `HttpPeer` construction with the provider's timeouts.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use http::{HeaderName, HeaderValue};
use pingora::http::RequestHeader;
use pingora::upstreams::peer::HttpPeer;

use crate::health::ProviderId;
use crate::protocol::Protocol;

/// Whether an OpenAI-kind provider has the Responses API (`/v1/responses`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponsesApi {
    Yes,
    No,
    /// Assumed until the provider answers 404/405 there and a translated retry succeeds.
    Auto,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    OpenAi,
    Anthropic,
    Gemini,
}

impl ProviderKind {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "openai" => Some(Self::OpenAi),
            "anthropic" => Some(Self::Anthropic),
            "gemini" => Some(Self::Gemini),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::OpenAi => "openai",
            Self::Anthropic => "anthropic",
            Self::Gemini => "gemini",
        }
    }

    /// The wire protocol this kind of provider speaks natively.
    pub fn protocol(self) -> Protocol {
        match self {
            Self::OpenAi => Protocol::OpenAi,
            Self::Anthropic => Protocol::Anthropic,
            Self::Gemini => Protocol::Gemini,
        }
    }
}

/// `scheme://host[:port][/path prefix]`
#[derive(Debug, Clone, PartialEq)]
pub struct BaseUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// Without a trailing slash; empty for none.
    pub path_prefix: String,
}

impl BaseUrl {
    pub fn parse(raw: &str) -> Result<Self, String> {
        // Never repeat a password back, in any message.
        let shown = crate::store::redact_password(raw.trim());
        let s = shown.as_str();
        let uri: http::Uri = raw
            .trim()
            .parse()
            .map_err(|e| format!("{s:?} is not a URL ({e})"))?;
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err(format!(
                "{s:?} carries user:password@, which would never be sent; put the provider's secret under credentials: (or headers:)"
            ));
        }
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => {
                return Err(format!(
                    "{s:?} needs an http:// or https:// scheme (e.g. https://api.openai.com)"
                ))
            }
        };
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("{s:?} has no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if uri.query().is_some() {
            return Err(format!("{s:?} must not carry a query string"));
        }
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let path_prefix = uri.path().trim_end_matches('/').to_string();
        Ok(BaseUrl {
            tls,
            host,
            port,
            path_prefix,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Timeouts {
    pub connect: Duration,
    pub first_byte: Duration,
    pub idle: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheck {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
}

pub struct ProviderSpec {
    pub name: String,
    pub kind: ProviderKind,
    pub url: BaseUrl,
    pub credentials: Vec<String>,
    pub timeouts: Timeouts,
    pub health_check: Option<HealthCheck>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// An OpenAI-kind server that also speaks the Responses API.
    pub responses_api: ResponsesApi,
    /// Chat streams passed through ask for their usage (`stream_options.include_usage`).
    pub stream_usage: bool,
    /// Anthropic kind: the Messages API version sent when the client names none, and
    /// always on translated requests (whose body follows its rules).
    pub anthropic_version: String,
}

/// Anthropic's version and beta flags, which mean nothing to other providers (whose own
/// checks may trip on them): removed for them.
const ANTHROPIC_REQUEST_HEADERS: [&str; 3] = [
    "anthropic-version",
    "anthropic-beta",
    "anthropic-dangerous-direct-browser-access",
];

/// Client headers that must never reach a provider: credentials, what the gateway sets
/// (or reads: `x-modelgate-model` routes object calls and sockets),
/// and the account selectors (organization, project) that would let a client choose
/// which of the operator's accounts its request is billed to (a provider's `headers:`
/// can set them).
const STRIPPED_REQUEST_HEADERS: [&str; 12] = [
    "authorization",
    "x-api-key",
    "x-goog-api-key",
    "api-key",
    "cookie",
    "transfer-encoding",
    "expect",
    "accept-encoding",
    "openai-organization",
    "openai-project",
    "x-goog-user-project",
    "x-modelgate-model",
];

struct DnsEntry {
    addrs: Vec<SocketAddr>,
    resolved_at: Instant,
}

/// How long a resolved address list is used before it is looked up again.
const DNS_TTL: Duration = Duration::from_secs(30);

pub struct Provider {
    pub name: String,
    /// The base URL as text: with the name, identifies the provider across reloads.
    pub endpoint: String,
    /// Name and endpoint: what health state is kept for across reloads.
    pub id: ProviderId,
    pub kind: ProviderKind,
    pub url: BaseUrl,
    /// `Host` header value: host, plus the port when it is not the scheme's default.
    pub host_header: String,
    pub timeouts: Timeouts,
    pub health_check: Option<HealthCheck>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub responses_api: ResponsesApi,
    pub stream_usage: bool,
    pub anthropic_version: String,
    /// `Auto` found out that the server has no Responses API (until the next reload).
    responses_missing: std::sync::atomic::AtomicBool,
    credentials: Vec<HeaderValue>,
    next_credential: AtomicUsize,
    literal_ip: Option<IpAddr>,
    dns: ArcSwapOption<DnsEntry>,
    next_addr: AtomicUsize,
}

impl Provider {
    pub fn new(spec: ProviderSpec) -> Self {
        let url = spec.url;
        let default_port = if url.tls { 443 } else { 80 };
        let host_for_header = if url.host.contains(':') {
            format!("[{}]", url.host)
        } else {
            url.host.clone()
        };
        let host_header = if url.port == default_port {
            host_for_header
        } else {
            format!("{host_for_header}:{}", url.port)
        };
        // Stored ready to send: "Bearer <key>" for OpenAI, the bare key otherwise.
        let credentials = spec
            .credentials
            .iter()
            .filter_map(|c| match spec.kind {
                ProviderKind::OpenAi => HeaderValue::from_str(&format!("Bearer {c}")).ok(),
                _ => HeaderValue::from_str(c).ok(),
            })
            .map(|mut v| {
                v.set_sensitive(true);
                v
            })
            .collect();
        let endpoint = format!(
            "{}://{}:{}{}",
            if url.tls { "https" } else { "http" },
            url.host,
            url.port,
            url.path_prefix
        );
        Provider {
            id: ProviderId::new(&spec.name, &endpoint),
            endpoint,
            name: spec.name,
            kind: spec.kind,
            literal_ip: url.host.parse().ok(),
            host_header,
            url,
            timeouts: spec.timeouts,
            health_check: spec.health_check,
            headers: spec.headers,
            responses_api: spec.responses_api,
            stream_usage: spec.stream_usage,
            anthropic_version: spec.anthropic_version,
            responses_missing: std::sync::atomic::AtomicBool::new(false),
            credentials,
            next_credential: AtomicUsize::new(0),
            dns: ArcSwapOption::empty(),
            next_addr: AtomicUsize::new(0),
        }
    }

    /// Stands in for a provider whose definition had errors, so validation can go on
    /// checking references to it; never reaches a running gateway.
    pub(crate) fn placeholder(name: String) -> Self {
        Provider::new(ProviderSpec {
            name,
            kind: ProviderKind::OpenAi,
            url: BaseUrl {
                tls: false,
                host: "127.0.0.1".into(),
                port: 9,
                path_prefix: String::new(),
            },
            credentials: vec![],
            timeouts: Timeouts {
                connect: Duration::from_secs(1),
                first_byte: Duration::from_secs(1),
                idle: Duration::from_secs(1),
            },
            health_check: None,
            headers: vec![],
            responses_api: ResponsesApi::No,
            stream_usage: false,
            anthropic_version: String::new(),
        })
    }

    /// The protocol a request from a `client`-protocol client is sent in: the client's
    /// own when this provider speaks it (passthrough), else the provider's native one.
    pub fn wire_protocol(&self, client: Protocol) -> Protocol {
        let responses = match self.responses_api {
            ResponsesApi::Yes => true,
            ResponsesApi::No => false,
            ResponsesApi::Auto => !self.responses_missing.load(Ordering::Relaxed),
        };
        if client == Protocol::Responses && responses {
            return Protocol::Responses;
        }
        self.kind.protocol()
    }

    /// Whether a 404/405 to a Responses request may mean this server lacks the API.
    pub fn may_lack_responses_api(&self) -> bool {
        self.responses_api == ResponsesApi::Auto && !self.responses_missing.load(Ordering::Relaxed)
    }

    /// A translated retry worked where `/v1/responses` was not found: translate from now on.
    pub fn mark_responses_missing(&self) {
        if !self.responses_missing.swap(true, Ordering::Relaxed) {
            log::warn!(
                "provider {:?} has no /v1/responses: Responses requests are translated to Chat Completions for it (set responses_api: false to skip the probe)",
                self.name
            );
        }
    }

    /// The header that carries this provider's credential.
    pub fn auth_header(&self) -> &'static str {
        match self.kind {
            ProviderKind::OpenAi => "authorization",
            ProviderKind::Anthropic => "x-api-key",
            ProviderKind::Gemini => "x-goog-api-key",
        }
    }

    /// Where round-robin over the credentials stands (advances it).
    pub fn credential_cursor(&self) -> usize {
        self.next_credential.fetch_add(1, Ordering::Relaxed) % self.credentials.len().max(1)
    }

    /// Credential `i` (mod the count), as the auth header's value.
    pub fn credential(&self, i: usize) -> Option<&HeaderValue> {
        if self.credentials.is_empty() {
            return None;
        }
        self.credentials.get(i % self.credentials.len())
    }

    /// A fingerprint of credential `i` (16 hex digits of its SHA-256): what the store
    /// keeps to find the credential that created an object, never the credential.
    pub fn credential_id(&self, i: usize) -> String {
        use sha2::{Digest, Sha256};
        match self.credential(i) {
            Some(c) => hex::encode(&Sha256::digest(c.as_bytes())[..8]),
            None => String::new(),
        }
    }

    /// The index of the credential whose fingerprint is `id`.
    pub fn credential_by_id(&self, id: &str) -> Option<usize> {
        if self.credentials.is_empty() {
            // A provider without credentials (a local server) made it with none.
            return id.is_empty().then_some(0);
        }
        (0..self.credentials.len()).find(|i| self.credential_id(*i) == id)
    }

    pub fn credential_count(&self) -> usize {
        self.credentials.len()
    }

    /// Makes `req` a request to this provider: the client's credentials and hop headers
    /// out, this provider's host, credential `credential`, protocol version and configured
    /// headers in, identity encoding (usage and model names are read from the body).
    /// The one place provider header policy lives: the proxy and the health checker both
    /// call it. `client_sets_version`: the client sent its own `anthropic-version`.
    pub fn prepare_request(
        &self,
        req: &mut RequestHeader,
        credential: usize,
        client_sets_version: bool,
    ) -> pingora::Result<()> {
        // One pass over the client's few headers, each compared by name, rather than a
        // lookup (a parse and a hash) per name on the lists, present or not.
        let anthropic = self.kind == ProviderKind::Anthropic;
        let stripped: Vec<http::HeaderName> = req
            .headers
            .keys()
            .filter(|n| {
                let n = n.as_str();
                STRIPPED_REQUEST_HEADERS.contains(&n)
                    || (!anthropic && ANTHROPIC_REQUEST_HEADERS.contains(&n))
            })
            .cloned()
            .collect();
        for h in &stripped {
            req.remove_header(h);
        }
        req.insert_header(http::header::HOST, self.host_header.as_str())?;
        if let Some(cred) = self.credential(credential) {
            req.insert_header(self.auth_header(), cred.clone())?;
        }
        if anthropic && !client_sets_version {
            req.insert_header("anthropic-version", self.anthropic_version.as_str())?;
        }
        for (k, v) in &self.headers {
            req.insert_header(k.clone(), v.clone())?;
        }
        req.insert_header(http::header::ACCEPT_ENCODING, "identity")?;
        Ok(())
    }

    /// Upstream path for a client path: the base URL's prefix joined with the path.
    /// A prefix ending in `/v1` (how many OpenAI-compatible servers are written down)
    /// is not doubled when the client path starts with `/v1/`.
    pub fn upstream_path(&self, path: &str) -> String {
        let prefix = self.url.path_prefix.as_str();
        if prefix.ends_with("/v1") && path.starts_with("/v1/") {
            format!("{}{}", &prefix[..prefix.len() - 3], path)
        } else {
            format!("{prefix}{path}")
        }
    }

    /// Resolves the provider's host without blocking; cached for `DNS_TTL`, and a stale
    /// entry is used if a fresh lookup fails.
    pub async fn resolve(&self) -> Result<SocketAddr, String> {
        if let Some(ip) = self.literal_ip {
            return Ok(SocketAddr::new(ip, self.url.port));
        }
        let cached = self.dns.load_full();
        let fresh = cached
            .as_ref()
            .filter(|e| e.resolved_at.elapsed() < DNS_TTL && !e.addrs.is_empty());
        let entry = match fresh {
            Some(e) => e.clone(),
            None => match tokio::net::lookup_host((self.url.host.as_str(), self.url.port)).await {
                Ok(addrs) => {
                    let addrs: Vec<SocketAddr> = addrs.collect();
                    if addrs.is_empty() {
                        return Err(format!("{} resolved to no address", self.url.host));
                    }
                    let e = Arc::new(DnsEntry {
                        addrs,
                        resolved_at: Instant::now(),
                    });
                    self.dns.store(Some(e.clone()));
                    e
                }
                Err(err) => match cached {
                    Some(stale) if !stale.addrs.is_empty() => {
                        log::warn!(
                            "provider {}: DNS lookup of {} failed ({err}); using the previous address",
                            self.name,
                            self.url.host
                        );
                        stale
                    }
                    _ => return Err(format!("cannot resolve {}: {err}", self.url.host)),
                },
            },
        };
        let i = self.next_addr.fetch_add(1, Ordering::Relaxed);
        Ok(entry.addrs[i % entry.addrs.len()])
    }

    /// A peer for one attempt. `first_byte` bounds each read from the provider (the
    /// response header and every later chunk); `idle` is how long pooled connections live.
    /// A peer for a relayed WebSocket: the connection waits for frames up to `idle`
    /// (the request timeouts would cut a socket that is quiet between turns).
    pub fn socket_peer(&self, addr: SocketAddr, idle: Duration) -> HttpPeer {
        let mut peer = self.peer(addr);
        peer.options.read_timeout = Some(idle);
        peer.options.write_timeout = Some(idle);
        peer.options.idle_timeout = Some(idle);
        peer
    }

    pub fn peer(&self, addr: SocketAddr) -> HttpPeer {
        let mut peer = HttpPeer::new(addr, self.url.tls, self.url.host.clone());
        let o = &mut peer.options;
        o.connection_timeout = Some(self.timeouts.connect);
        o.total_connection_timeout = Some(self.timeouts.connect * 2);
        o.read_timeout = Some(self.timeouts.first_byte);
        o.write_timeout = Some(self.timeouts.first_byte);
        o.idle_timeout = Some(self.timeouts.idle);
        peer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_parts() {
        let u = BaseUrl::parse("https://proxy.example:8443/openai/").unwrap();
        assert_eq!(
            u,
            BaseUrl {
                tls: true,
                host: "proxy.example".into(),
                port: 8443,
                path_prefix: "/openai".into()
            }
        );
        let u = BaseUrl::parse("http://[::1]:9000").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.tls), ("::1", 9000, false));
        assert!(BaseUrl::parse("api.openai.com").is_err());
        assert!(BaseUrl::parse("ftp://x").is_err());
        assert!(BaseUrl::parse("https://x/?a=b").is_err());
    }

    fn provider(url: &str, creds: &[&str]) -> Provider {
        Provider::new(ProviderSpec {
            name: "p".into(),
            kind: ProviderKind::OpenAi,
            url: BaseUrl::parse(url).unwrap(),
            credentials: creds.iter().map(|s| s.to_string()).collect(),
            timeouts: Timeouts {
                connect: Duration::from_secs(1),
                first_byte: Duration::from_secs(1),
                idle: Duration::from_secs(1),
            },
            health_check: None,
            headers: vec![],
            responses_api: ResponsesApi::No,
            stream_usage: false,
            anthropic_version: String::new(),
        })
    }

    #[test]
    fn upstream_path_joins_prefix_without_doubling_v1() {
        assert_eq!(
            provider("https://a.example", &[]).upstream_path("/v1/chat/completions"),
            "/v1/chat/completions"
        );
        assert_eq!(
            provider("https://a.example/openai", &[]).upstream_path("/v1/models"),
            "/openai/v1/models"
        );
        assert_eq!(
            provider("http://127.0.0.1:8000/v1", &[]).upstream_path("/v1/chat/completions"),
            "/v1/chat/completions"
        );
        assert_eq!(provider("http://h:81", &[]).host_header, "h:81");
        assert_eq!(provider("https://h:443", &[]).host_header, "h");
    }

    #[test]
    fn credentials_rotate() {
        let p = provider("https://a.example", &["k1", "k2"]);
        let got: Vec<_> = (0..4)
            .map(|_| {
                p.credential(p.credential_cursor())
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(got, ["Bearer k1", "Bearer k2", "Bearer k1", "Bearer k2"]);
        let none = provider("https://a.example", &[]);
        assert!(none.credential(none.credential_cursor()).is_none());
    }
}
