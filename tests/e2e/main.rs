//! The end-to-end suite: one module per concern, each against a real
//! server on 127.0.0.1 and real clients. Modules that need optional
//! features compile only with them; `cargo test --all-features` runs all.
//!
//! - [`carriers`], [`subprotocol`], [`origin`], [`service`], [`logging`],
//!   [`hyper_server`], [`throttling`]: the layer before the upgrade;
//! - [`authenticators`], [`jwt`], [`jwks`], [`sessions`], [`tower_sessions`],
//!   [`tickets`], [`oidc`] (a real OpenID provider): the authenticators;
//! - [`after_handshake`], [`revocation_race`], [`graphql_ws`]: after the
//!   upgrade; [`revocation_handshake`]: revocations refused at the next
//!   upgrade;
//! - [`security`]: the adversarial suite, one test per rule of `SECURITY.md`,
//!   named after its rule;
//! - [`fuzz_equivalents`]: the fuzz targets' properties under proptest.
#![allow(clippy::unwrap_used, clippy::expect_used)]

/// Runs each named `async fn(Kind)` of the module as two tests, one per
/// socket adapter (axum's `WebSocket`, tokio-tungstenite's `WebSocketStream`).
#[allow(unused_macros)]
macro_rules! for_both_adapters {
    ($($name:ident),* $(,)?) => {
        mod axum_adapter {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::Kind::Axum).await })*
        }
        mod tungstenite_adapter {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::Kind::Tungstenite).await })*
        }
    };
}

#[path = "../common/mod.rs"]
mod common;
#[cfg(feature = "http2")]
#[path = "../fuzz_checks/mod.rs"]
mod fuzz_checks;
#[path = "../jwt_common/mod.rs"]
mod jwt_common;
#[cfg(feature = "sessions")]
#[path = "../session_common/mod.rs"]
mod session_common;

#[cfg(all(feature = "axum", feature = "tungstenite", feature = "redis"))]
mod after_handshake;
#[cfg(all(feature = "axum", feature = "tungstenite"))]
mod audit;
#[cfg(feature = "cache")]
mod authenticators;
mod carriers;
// The fuzz properties model the default build (`http2` on: an HTTP/2 CONNECT
// without `:protocol websocket` is a plain request).
#[cfg(feature = "http2")]
mod fuzz_equivalents;
#[cfg(all(feature = "axum", feature = "jwt"))]
mod graphql_ws;
mod hyper_server;
mod jwks;
mod jwt;
mod logging;
#[cfg(all(feature = "metrics", feature = "axum", feature = "tungstenite"))]
mod metrics;
#[cfg(all(feature = "axum", feature = "jwks"))]
mod oidc;
mod origin;
#[cfg(all(
    feature = "axum",
    feature = "tungstenite",
    feature = "redis",
    feature = "jwt",
    feature = "cache"
))]
mod revocation_handshake;
#[cfg(all(feature = "axum", feature = "tungstenite", feature = "sessions"))]
mod revocation_race;
#[cfg(all(
    feature = "axum",
    feature = "jwt",
    feature = "jwks",
    feature = "sessions",
    feature = "tungstenite",
    feature = "redis"
))]
mod security;
mod service;
#[cfg(feature = "sessions")]
mod sessions;
mod subprotocol;
mod throttling;
#[cfg(all(
    feature = "tickets",
    feature = "axum",
    feature = "redis",
    feature = "sessions"
))]
mod tickets;
#[cfg(feature = "tower-sessions")]
mod tower_sessions;
