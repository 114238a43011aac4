//! modelgate: an LLM API gateway on Pingora.
//!
//! One module per concern: `config` (YAML -> validated model), `auth`, `routing`,
//! `upstream` (providers, DNS, peers, request preparation), `protocol` (endpoints),
//! `translate` (each wire protocol's format and the translation between them), `health`
//! (cooldowns, retry budget, probes, stats), `limits`, `errors`, `metrics`, `runtime`
//! (live config and state, reload, drain) and `proxy` (the Pingora conductor). `server`
//! assembles them into a Pingora server.

pub mod access_log;
pub mod alloc;
pub mod audit;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod connections;
pub mod console;
pub mod demo;
pub mod errors;
pub mod gateway_headers;
pub mod health;
pub mod keys;
pub mod ledger;
pub mod limits;
pub mod logging;
pub mod malformed;
pub mod metrics;
pub mod objects;
pub mod protocol;
pub mod proxy;
pub mod rewrite;
pub mod routing;
pub mod runtime;
pub mod server;
pub mod spend;
pub mod sse;
pub mod store;
pub mod translate;
pub mod upstream;
