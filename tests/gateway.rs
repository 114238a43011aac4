//! Integration tests: the real gateway binary against mock providers over loopback sockets.

mod support;

#[path = "gateway/auth.rs"]
mod auth;
#[path = "gateway/clients.rs"]
mod clients;
#[path = "gateway/deploy.rs"]
mod deploy;
#[path = "gateway/failover.rs"]
mod failover;
#[path = "gateway/limits.rs"]
mod limits;
#[path = "gateway/ops.rs"]
mod ops;
#[path = "gateway/proxying.rs"]
mod proxying;
#[path = "gateway/routing.rs"]
mod routing;
#[path = "gateway/translation.rs"]
mod translation;
