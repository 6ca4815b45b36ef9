//! An audit hook: a callback told of every decision of the layer
//! ([`WsAuthLayer::audit`](crate::WsAuthLayer::audit)) and of every end of
//! a guarded socket ([`SessionGuard::audit`](crate::socket::SessionGuard::audit)),
//! for applications that must keep an audit log.
//!
//! The hook sees the decision; it cannot change it. It is called **inline**,
//! on the task that decides (before the response goes out, or as the socket
//! ends): it must not block. Hand slow work (a database, a file) to a task
//! of your own through a bounded channel, as below. A panic in the hook is
//! caught and logged (`tower_ws_auth`, WARN): the handshake and the socket
//! go on as decided.
//!
//! ```
//! use tower_ws_auth::{audit::AuditEvent, authenticate_fn, AuthError, Identity, WsAuthLayer};
//!
//! let (tx, _rx) = tokio::sync::mpsc::channel::<String>(1024);
//! let auth = authenticate_fn(|_, _| async { Err::<Identity, _>(AuthError::invalid("closed")) });
//! let layer = WsAuthLayer::new(auth).audit(move |event: &AuditEvent<'_>| {
//!     // Never blocks: a full channel drops the line.
//!     let _ = tx.try_send(format!(
//!         "{} {} {} subject={:?} peer={:?}",
//!         event.outcome, event.reason, event.carrier, event.subject, event.peer
//!     ));
//! });
//! # let _ = layer;
//! ```

use std::fmt;
use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use http::Extensions;

/// What was decided, as the audit hook sees it. Every string is one of a
/// closed set (the same values as the metrics' labels), except `subject`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuditEvent<'a> {
    /// `upgrade` (a decision of the layer) or `socket_end` (a guarded
    /// socket ended).
    pub event: &'static str,
    /// `accepted` or `rejected` for an upgrade; `ended` for a socket end.
    pub outcome: &'static str,
    /// `none` for an accepted upgrade, else the
    /// [`RejectionKind::as_str`](crate::RejectionKind::as_str) of the
    /// refusal; for a socket end, its
    /// [`EndReason::as_str`](crate::socket::EndReason::as_str).
    pub reason: &'static str,
    /// The carrier ([`Carrier::as_str`](crate::Carrier::as_str)), `none`
    /// when none held a credential; `none` for a socket end.
    pub carrier: &'static str,
    /// Who: the authenticated subject (an accepted upgrade, a socket end);
    /// `None` for a refusal.
    pub subject: Option<&'a str>,
    /// The peer's address when the server put it in the request's
    /// extensions: axum's `ConnectInfo<SocketAddr>`
    /// (`into_make_service_with_connect_info`) or a plain `SocketAddr`.
    /// For a socket end, that of the request given with
    /// [`GuardedSocket::with_request`](crate::socket::GuardedSocket::with_request).
    pub peer: Option<SocketAddr>,
}

/// A shared audit callback.
#[derive(Clone)]
pub(crate) struct AuditHook(Arc<dyn Fn(&AuditEvent<'_>) + Send + Sync>);

impl fmt::Debug for AuditHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuditHook")
    }
}

impl AuditHook {
    pub(crate) fn new(hook: impl Fn(&AuditEvent<'_>) + Send + Sync + 'static) -> Self {
        Self(Arc::new(hook))
    }

    /// Calls the hook; a panic in it is logged and goes no further.
    pub(crate) fn call(&self, event: &AuditEvent<'_>) {
        if catch_unwind(AssertUnwindSafe(|| (self.0)(event))).is_err() {
            tracing::warn!(target: "tower_ws_auth", event = event.event, "the audit hook panicked");
        }
    }
}

/// The peer address in `extensions`, if the server put it there.
pub(crate) fn peer(extensions: &Extensions) -> Option<SocketAddr> {
    #[cfg(feature = "axum")]
    if let Some(info) = extensions.get::<axum::extract::ConnectInfo<SocketAddr>>() {
        return Some(info.0);
    }
    extensions.get::<SocketAddr>().copied()
}
