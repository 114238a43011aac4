//! Integration tests: the real gateway binary against mock providers over loopback sockets.

mod support;

mod auth;
mod clients;
mod cluster;
mod deploy;
mod failover;
mod hardening;
mod keys;
mod limits;
mod objects;
mod ops;
mod proxying;
mod routing;
mod spend;
mod translation;
mod uploads;
mod websocket;
