#![doc = include_str!("../docs/crate.md")]
#![doc = include_str!("../docs/security.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

pub mod api_key;
pub mod audit;
mod authenticator;
#[cfg(feature = "cache")]
mod cache;
mod credential;
mod error;
#[cfg(feature = "axum")]
mod extract;
#[cfg(any(feature = "jwks", feature = "introspection"))]
mod fetch;
mod identity;
#[cfg(feature = "introspection")]
#[cfg_attr(docsrs, doc(cfg(feature = "introspection")))]
pub mod introspection;
#[cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))))]
pub mod jwt;
mod layer;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
mod observe;
mod origin;
mod rejection;
#[cfg(feature = "sessions")]
#[cfg_attr(docsrs, doc(cfg(feature = "sessions")))]
pub mod session;
#[cfg(feature = "socket")]
#[cfg_attr(docsrs, doc(cfg(feature = "socket")))]
pub mod socket;
pub mod throttle;
#[cfg(feature = "tickets")]
#[cfg_attr(docsrs, doc(cfg(feature = "tickets")))]
pub mod ticket;
mod upgrade;

pub use authenticator::{
    Authenticator, BoxAuthenticator, FnAuthenticator, ForCarriers, Or, authenticate_fn,
};
#[cfg(feature = "cache")]
#[cfg_attr(docsrs, doc(cfg(feature = "cache")))]
pub use cache::Cached;
pub use credential::{Carrier, Credential, SubprotocolCarrier};
pub use error::{AuthError, ConfigError};
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub use extract::IdentityRejection;
pub use identity::{AuthMethod, Identity, IdentityBuilder};
#[cfg(feature = "close-rejections")]
#[cfg_attr(docsrs, doc(cfg(feature = "close-rejections")))]
pub use layer::CloseRejections;
pub use layer::{ResponseFuture, WsAuth, WsAuthLayer};
pub use origin::OriginPolicy;
pub use rejection::{DefaultRejectionHandler, Rejection, RejectionHandler, RejectionKind};

/// The README's example, compiled as a doctest.
#[cfg(all(doctest, feature = "axum"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
