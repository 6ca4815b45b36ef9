//! Authenticate WebSocket upgrades before the handshake completes.
//!
//! A WebSocket lives for hours but is authenticated once, on the HTTP
//! upgrade request. [`WsAuthLayer`] is a tower layer that takes that request,
//! finds the credential (an `Authorization: Bearer` header, a
//! `Sec-WebSocket-Protocol` entry browsers can send, a cookie guarded by an
//! [`OriginPolicy`], or an opt-in query parameter), runs your async
//! [`Authenticator`], and either answers with the right HTTP error (401, 400,
//! 403, 431 or 503, with an RFC 6750 `WWW-Authenticate` challenge) or lets
//! the upgrade through with an [`Identity`] in the request extensions.
//!
//! # Quickstart (axum)
//!
//! ```no_run
//! use axum::{Router, extract::ws::{Message, WebSocket, WebSocketUpgrade}, response::Response, routing::get};
//! use tower_ws_auth::{ApiKeyAuthenticator, AuthMethod, Identity, WsAuthLayer};
//!
//! async fn ws_handler(ws: WebSocketUpgrade, identity: Identity) -> Response {
//!     ws.protocols(["chat"])
//!         .on_upgrade(move |socket| chat(socket, identity))
//! }
//!
//! async fn chat(mut socket: WebSocket, identity: Identity) {
//!     let hello = format!("hello {}", identity.subject());
//!     let _ = socket.send(Message::Text(hello.into())).await;
//! }
//!
//! #[tokio::main]
//! async fn main() -> std::io::Result<()> {
//!     let auth = ApiKeyAuthenticator::from_keys([
//!         ("demo-key-please-change", Identity::new("alice", AuthMethod::ApiKey)),
//!     ]);
//!     let app = Router::new()
//!         .route("/ws", get(ws_handler))
//!         .layer(WsAuthLayer::new(auth).bearer_header().subprotocol_token());
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//!     axum::serve(listener, app).await
//! }
//! ```
//!
//! A browser connects with the subprotocol carrier, since it cannot set
//! headers on a WebSocket:
//!
//! ```js
//! const b64url = btoa(token).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
//! new WebSocket("wss://example.com/ws", ["chat", "base64url.bearer." + b64url]);
//! ```
//!
//! # Pieces
//!
//! * [`WsAuthLayer`] / [`WsAuth`]: the layer and its service.
//! * [`Authenticator`]: the trait your verifier implements, with
//!   [`authenticate_fn`] for closures, [`Authenticator::or`] to chain,
//!   [`Authenticator::for_carriers`] to route by carrier,
//!   [`Authenticator::cached`] to cache, [`BoxAuthenticator`] to erase types.
//! * [`ApiKeyAuthenticator`]: API keys stored as digests.
//! * [`Identity`]: who connected, with scopes, expiry and typed claims.
//! * [`OriginPolicy`]: the Origin allow-list that cookie credentials need.
//! * [`Rejection`] and [`RejectionHandler`]: the answer to a refused request.
//! * After the handshake ([`socket`]): [`FirstMessageAuth`], [`SessionGuard`]
//!   and [`GuardedSocket`] (expiry, in-band refresh), [`Revocations`] (local
//!   or across instances), [`CloseCodes`].
//!
//! # Feature flags
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `http2` | yes | detects HTTP/2 extended CONNECT upgrades (RFC 8441) through hyper's `:protocol` extension; without it every HTTP/2 CONNECT is authenticated |
//! | `cache` | yes | [`Authenticator::cached`] ([`Cached`]), on moka |
//! | `axum` | yes | [`Identity`] and `Option<Identity>` extractors ([`IdentityRejection`]) and [`AuthSocket`] for axum's `WebSocket` |
//! | `tungstenite` | no | [`AuthSocket`] for tokio-tungstenite's `WebSocketStream` (0.29, as axum 0.8) |
//! | `socket` | with `axum` or `tungstenite` | after the handshake: [`FirstMessageAuth`], [`SessionGuard`] (expiry, refresh), [`Revocations`], [`CloseCodes`] |
//! | `redis` | no | `socket::RedisBus`: revocations across instances over Redis pub/sub |
//! | `close-rejections` | no | [`CloseRejections`]: refused browser upgrades answered with a 101 and a Close frame carrying the code (hyper-based servers, axum included); implies `tungstenite` and `http2` |
//! | `sessions` | yes | cookie sessions: [`SessionAuthenticator`] over an async [`SessionStore`], [`MemorySessionStore`] with expiry, [`SessionCookie`] (plain, signed or private, with the [`cookie`] crate's `Key`) to issue, clear and verify the session cookie |
//! | `tower-sessions` | no | [`TowerSessionStore`]: authenticate with the sessions of tower-sessions 0.14, through any of its stores (Redis, SQLx, memory, ...); implies `sessions` |
//! | `jwt` | yes | `JwtAuthenticator`, `JwtKey`, `JwtAlgorithm` over jsonwebtoken, with the aws-lc-rs crypto backend |
//! | `jwt-rust-crypto` | no | the same JWT support with the pure-Rust RustCrypto backend instead (use with `default-features = false`; when both are enabled, aws-lc-rs is used) |
//! | `jwks` | no | `RemoteJwks`: remote JWK Sets and OpenID Connect discovery over hyper-util + rustls (webpki-roots), cached and refreshed; implies `jwt` |
//! | `jwks-native-roots` | no | `jwks`, also trusting the operating system's certificate store |
//!
//! # Security notes
//!
//! * Cookie credentials cannot be configured without an [`OriginPolicy`]
//!   (cross-site WebSocket hijacking).
//! * The client gets the same generic body whatever the reason of a
//!   refusal; the reason goes to `tracing` (target `tower_ws_auth`), which
//!   never records a credential or a query string.
//! * Every carrier is size-capped before it is decoded (default: 8 KiB per
//!   credential, 16 KiB per header) and parsed in linear time.
//! * Headers a client sends (`X-User-Id`, ...) never become an identity: it
//!   travels in request extensions only.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod api_key;
mod authenticator;
#[cfg(feature = "cache")]
#[cfg_attr(docsrs, doc(cfg(feature = "cache")))]
mod cache;
mod credential;
mod error;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
mod extract;
#[cfg(feature = "jwks")]
mod fetch;
mod identity;
#[cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))))]
mod jwt;
mod layer;
mod origin;
mod rejection;
#[cfg(feature = "sessions")]
#[cfg_attr(docsrs, doc(cfg(feature = "sessions")))]
mod session;
#[cfg(feature = "socket")]
#[cfg_attr(docsrs, doc(cfg(feature = "socket")))]
pub mod socket;
mod upgrade;

pub use api_key::{ApiKeyAuthenticator, ApiKeyDigest, ApiKeyStore, MemoryApiKeys};
pub use authenticator::{
    Authenticator, BoxAuthenticator, BoxFuture, DynAuthenticator, FnAuthenticator, ForCarriers, Or,
    authenticate_fn,
};
#[cfg(feature = "cache")]
#[cfg_attr(docsrs, doc(cfg(feature = "cache")))]
pub use cache::Cached;
/// The cookie crate (0.18), for its [`Key`](cookie::Key) and
/// [`SameSite`](cookie::SameSite): the same crate tower-sessions re-exports.
#[cfg(feature = "sessions")]
#[cfg_attr(docsrs, doc(cfg(feature = "sessions")))]
pub use cookie;
pub use credential::{Carrier, Credential, SubprotocolCarrier};
pub use error::{AuthError, ConfigError};
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub use extract::IdentityRejection;
pub use identity::{AuthMethod, Identity, IdentityBuilder};
#[cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))))]
pub use jwt::{JwtAlgorithm, JwtAuthenticator, JwtKey, MAX_LEEWAY};
#[cfg(feature = "jwks")]
#[cfg_attr(docsrs, doc(cfg(feature = "jwks")))]
pub use jwt::{RemoteJwks, RemoteJwksBuilder};
#[cfg(feature = "close-rejections")]
#[cfg_attr(docsrs, doc(cfg(feature = "close-rejections")))]
pub use layer::CloseRejections;
pub use layer::{ResponseFuture, WsAuth, WsAuthLayer};
pub use origin::{MissingOrigin, OriginPolicy};
pub use rejection::{DefaultRejectionHandler, Rejection, RejectionHandler, RejectionKind};
#[cfg(feature = "sessions")]
#[cfg_attr(docsrs, doc(cfg(feature = "sessions")))]
pub use session::{
    MemorySessionStore, SessionAuthenticator, SessionCookie, SessionDigest, SessionId,
    SessionRecord, SessionStore,
};
#[cfg(feature = "tower-sessions")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower-sessions")))]
pub use session::{TowerSessionData, TowerSessionStore};
#[cfg(feature = "socket")]
#[cfg_attr(docsrs, doc(cfg(feature = "socket")))]
pub use socket::{
    AuthSocket, CloseCodes, EndReason, FirstMessageAuth, FirstMessageError, GuardedSocket,
    Registration, Revocation, RevocationBus, Revocations, SessionGuard, close_reason,
};

/// The README's examples, compiled as doctests (they use every feature).
#[cfg(all(
    doctest,
    feature = "jwks",
    feature = "redis",
    feature = "tungstenite",
    feature = "tower-sessions"
))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
