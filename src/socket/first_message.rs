//! First-message authentication: for clients that cannot send a credential
//! with the handshake.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::request::Parts;
use tokio::sync::Semaphore;

use super::{
    AuthMessages, AuthSocket, CloseCodes, Frame, JsonMessages, Parsed, SocketError, close,
};
use crate::authenticator::Authenticator;
use crate::credential::{Carrier, Credential};
use crate::error::AuthError;
use crate::identity::Identity;

/// Why first-message authentication ended without an identity. The socket
/// has been closed with the matching code (except when the peer left or the
/// socket failed).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FirstMessageError {
    /// No authentication message before the deadline.
    #[error("no authentication message before the deadline")]
    Timeout,
    /// The authentication message was over the size cap.
    #[error("authentication message too big")]
    TooBig,
    /// The first message was not an authentication message (an application
    /// message, a binary message): it was not delivered.
    #[error("first message is not an authentication message")]
    NotAuthMessage,
    /// The authentication message was malformed.
    #[error("malformed authentication message")]
    Malformed,
    /// The authenticator refused the credential.
    #[error("authentication failed: {0}")]
    Rejected(AuthError),
    /// Too many connections were already waiting to authenticate.
    #[error("too many connections awaiting authentication")]
    TooManyPending,
    /// The peer closed the connection before authenticating.
    #[error("peer closed the connection before authenticating")]
    PeerClosed,
    /// The socket failed.
    #[error(transparent)]
    Socket(#[from] SocketError),
}

/// Authenticates a socket by its first message.
///
/// The upgrade is accepted without a credential; then the first message must
/// be an authentication message (by default `{"type":"auth","token":"..."}`,
/// see [`JsonMessages`]) within the deadline (default 10 s) and under the
/// size cap (default 16 KiB). Until then no message reaches the
/// application. On success the server answers `{"type":"authenticated",...}`
/// and you get the socket back with its [`Identity`]; on failure the socket
/// is closed with the code from [`CloseCodes`] and a generic reason.
///
/// A cap on connections awaiting authentication
/// ([`max_pending`](Self::max_pending), default 1024) bounds what idle
/// sockets that never authenticate can hold.
///
/// ```no_run
/// use axum::{Extension, extract::ws::WebSocketUpgrade, response::Response};
/// use http::request::Parts;
/// use tower_ws_auth::{ApiKeyAuthenticator, FirstMessageAuth};
///
/// async fn ws(
///     ws: WebSocketUpgrade,
///     parts: Parts,
///     Extension(auth): Extension<FirstMessageAuth<ApiKeyAuthenticator>>,
/// ) -> Response {
///     ws.on_upgrade(move |socket| async move {
///         let Ok((socket, identity)) = auth.authenticate(socket, &parts).await else { return };
///         // `socket` is authenticated as `identity` from here on.
///         # let _ = (socket, identity);
///     })
/// }
/// ```
pub struct FirstMessageAuth<A, M = JsonMessages> {
    authenticator: Arc<A>,
    messages: Arc<M>,
    timeout: Duration,
    max_bytes: usize,
    codes: CloseCodes,
    pending: Arc<Semaphore>,
    max_pending: usize,
}

impl<A, M> Clone for FirstMessageAuth<A, M> {
    fn clone(&self) -> Self {
        Self {
            authenticator: self.authenticator.clone(),
            messages: self.messages.clone(),
            timeout: self.timeout,
            max_bytes: self.max_bytes,
            codes: self.codes,
            pending: self.pending.clone(),
            max_pending: self.max_pending,
        }
    }
}

impl<A, M> fmt::Debug for FirstMessageAuth<A, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FirstMessageAuth")
            .field("timeout", &self.timeout)
            .field("max_bytes", &self.max_bytes)
            .field("codes", &self.codes)
            .field("max_pending", &self.max_pending)
            .finish_non_exhaustive()
    }
}

impl<A: Authenticator> FirstMessageAuth<A> {
    /// First-message authentication with `authenticator` and the defaults.
    pub fn new(authenticator: A) -> Self {
        Self {
            authenticator: Arc::new(authenticator),
            messages: Arc::new(JsonMessages),
            timeout: Duration::from_secs(10),
            max_bytes: 16 * 1024,
            codes: CloseCodes::default(),
            pending: Arc::new(Semaphore::new(1024)),
            max_pending: 1024,
        }
    }
}

impl<A: Authenticator, M: AuthMessages> FirstMessageAuth<A, M> {
    /// How long a client has to send its authentication message.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The size cap of the authentication message, in bytes. Set axum's or
    /// tungstenite's `max_message_size` too, so that larger messages are not
    /// even buffered.
    #[must_use]
    pub fn max_message_bytes(mut self, bytes: usize) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// How many connections may wait for authentication at once; more are
    /// closed at once with [`CloseCodes::too_many_code`]. Clones made before
    /// this call keep their own count.
    #[must_use]
    pub fn max_pending(mut self, connections: usize) -> Self {
        self.pending = Arc::new(Semaphore::new(connections));
        self.max_pending = connections;
        self
    }

    /// The close codes.
    #[must_use]
    pub fn codes(mut self, codes: CloseCodes) -> Self {
        self.codes = codes;
        self
    }

    /// Another message format.
    pub fn messages<M2: AuthMessages>(self, messages: M2) -> FirstMessageAuth<A, M2> {
        FirstMessageAuth {
            authenticator: self.authenticator,
            messages: Arc::new(messages),
            timeout: self.timeout,
            max_bytes: self.max_bytes,
            codes: self.codes,
            pending: self.pending,
            max_pending: self.max_pending,
        }
    }

    /// Connections currently waiting for their authentication message.
    pub fn pending(&self) -> usize {
        self.max_pending
            .saturating_sub(self.pending.available_permits())
    }

    /// The authenticator.
    pub fn authenticator(&self) -> &A {
        &self.authenticator
    }

    /// Waits for the authentication message on `socket` and verifies it.
    /// `request` is the upgrade request's head, handed to the authenticator.
    ///
    /// # Errors
    ///
    /// See [`FirstMessageError`]; the socket is closed in every case but
    /// [`PeerClosed`](FirstMessageError::PeerClosed) and
    /// [`Socket`](FirstMessageError::Socket).
    pub async fn authenticate<S: AuthSocket>(
        &self,
        mut socket: S,
        request: &Parts,
    ) -> Result<(S, Identity), FirstMessageError> {
        let inner = self;
        let codes = inner.codes;
        let Ok(permit) = inner.pending.clone().try_acquire_owned() else {
            close(
                &mut socket,
                codes.too_many_code(),
                "too many pending connections",
            )
            .await;
            return Err(FirstMessageError::TooManyPending);
        };
        let deadline = tokio::time::Instant::now() + inner.timeout;
        let outcome = loop {
            let received = match tokio::time::timeout_at(deadline, socket.recv_message()).await {
                Err(_) => {
                    break Err((
                        FirstMessageError::Timeout,
                        codes.timeout_code(),
                        "authentication timeout",
                    ));
                }
                Ok(None) => return Err(FirstMessageError::PeerClosed),
                Ok(Some(Err(error))) => return Err(FirstMessageError::Socket(error)),
                Ok(Some(Ok(message))) => message,
            };
            let text = match S::frame(&received) {
                Frame::Control => continue,
                Frame::Close(_) => return Err(FirstMessageError::PeerClosed),
                Frame::Binary(_) => {
                    break Err((
                        FirstMessageError::NotAuthMessage,
                        codes.unauthorized_code(),
                        "unauthorized",
                    ));
                }
                Frame::Text(text) => text,
            };
            if text.len() > inner.max_bytes {
                break Err((
                    FirstMessageError::TooBig,
                    codes.too_big_code(),
                    "message too big",
                ));
            }
            let token = match inner.messages.parse_auth(text) {
                Parsed::Credential(token) => token,
                Parsed::Malformed => {
                    break Err((
                        FirstMessageError::Malformed,
                        codes.malformed_code(),
                        "malformed authentication message",
                    ));
                }
                Parsed::Other => {
                    break Err((
                        FirstMessageError::NotAuthMessage,
                        codes.unauthorized_code(),
                        "unauthorized",
                    ));
                }
            };
            let credential = Credential::new(Carrier::Message, token);
            break match inner.authenticator.authenticate(&credential, request).await {
                Ok(identity) => Ok(identity),
                Err(error) => {
                    let (code, reason) = rejection_close(&codes, &error);
                    Err((FirstMessageError::Rejected(error), code, reason))
                }
            };
        };
        // No longer pending, whatever the outcome (closing may take a while).
        drop(permit);
        match outcome {
            Ok(identity) => {
                tracing::debug!(target: "tower_ws_auth", outcome = "accepted", carrier = "message", subject = identity.subject(), "socket authenticated");
                if let Some(text) = inner.messages.authenticated(&identity) {
                    socket.send_message(S::text(text)).await?;
                }
                Ok((socket, identity))
            }
            Err((error, code, reason)) => {
                tracing::debug!(target: "tower_ws_auth", outcome = "rejected", carrier = "message", close_code = code, reason = %error, "socket authentication failed");
                close(&mut socket, code, reason).await;
                Err(error)
            }
        }
    }
}

/// The close code and generic reason for an authenticator's error.
pub(crate) fn rejection_close(codes: &CloseCodes, error: &AuthError) -> (u16, &'static str) {
    match error {
        AuthError::InsufficientScope { .. } | AuthError::Forbidden(_) => {
            (codes.forbidden_code(), "forbidden")
        }
        AuthError::Malformed(_) => (codes.malformed_code(), "malformed credential"),
        AuthError::Unavailable { .. } => (codes.unavailable_code(), "try again later"),
        _ => (codes.unauthorized_code(), "unauthorized"),
    }
}
