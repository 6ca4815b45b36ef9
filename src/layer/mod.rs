//! [`WsAuthLayer`] and the [`WsAuth`] service.
//!
//! The request path, top to bottom:
//!
//! 1. [`check`](Config::check) (`check.rs`), a pure function of the request
//!    head: is it an upgrade, what do the carriers hold, does the `Origin`
//!    pass. It returns an [`Outcome`]: pass through, reject, or
//!    authenticate a credential.
//! 2. [`WsAuth::call`] (`service.rs`) acts on it: calls the inner service,
//!    answers the rejection, or removes the credential's traces from the
//!    request (`credential/`) and starts the authentication.
//! 3. [`ResponseFuture`] (`future.rs`) runs the authenticator, then the
//!    inner service, and applies the subprotocol echo rules to its response.

mod builder;
mod check;
#[cfg(feature = "close-rejections")]
mod close;
mod future;
mod service;

pub use builder::WsAuthLayer;
#[cfg(feature = "close-rejections")]
pub use close::CloseRejections;
pub use future::ResponseFuture;
pub use service::WsAuth;

use check::{Config, Outcome};

/// Inserted into the extensions of requests the layer let through without
/// authenticating them (non-upgrade requests), so extractors can tell "not
/// authenticated" from "no layer installed".
#[derive(Debug, Clone, Copy)]
pub(crate) struct PassedThrough;
