//! First-message authentication: for clients that cannot send a credential
//! with the handshake.

use std::fmt;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use super::pending::PendingCap;
use futures_util::StreamExt;
use http::request::Parts;

use super::{
    AuthMessages, AuthSocket, CLOSE_TIMEOUT, CloseCodes, Frame, JsonMessages, Parsed, SocketError,
    close_within, fail, finish_close, send,
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

impl FirstMessageError {
    /// The `reason` label of `tower_ws_auth_closes_total` for this failure.
    pub(crate) fn close_reason(&self) -> &'static str {
        match self {
            Self::Timeout => "auth_timeout",
            Self::TooBig => "too_big",
            Self::NotAuthMessage => "not_auth_message",
            Self::Malformed => "malformed_auth_message",
            Self::Rejected(_) => "auth_rejected",
            Self::TooManyPending => "too_many_pending",
            Self::PeerClosed => "peer",
            Self::Socket(_) => "error",
        }
    }
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
/// use tower_ws_auth::{api_key::ApiKeyAuthenticator, socket::FirstMessageAuth};
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
    pending: PendingCap,
    close_timeout: Duration,
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
            close_timeout: self.close_timeout,
        }
    }
}

impl<A, M> fmt::Debug for FirstMessageAuth<A, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FirstMessageAuth")
            .field("timeout", &self.timeout)
            .field("max_bytes", &self.max_bytes)
            .field("codes", &self.codes)
            .field("pending", &self.pending)
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
            pending: PendingCap::new(DEFAULT_MAX_PENDING),
            close_timeout: CLOSE_TIMEOUT,
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

    /// The size cap of the authentication message, in bytes (default
    /// 16 KiB). Configure the upgrade with [`configure`](Self::configure)
    /// (axum) or [`websocket_config`](Self::websocket_config)
    /// (tokio-tungstenite) too, so that larger messages are not even
    /// buffered.
    #[must_use]
    pub fn max_message_bytes(mut self, bytes: NonZeroUsize) -> Self {
        self.max_bytes = bytes.get();
        self
    }

    /// How many connections may wait for authentication at once; more are
    /// closed at once with [`CloseCodes::too_many_code`]. Clones made before
    /// this call keep their own count.
    #[must_use]
    pub fn max_pending(mut self, connections: NonZeroUsize) -> Self {
        self.pending = PendingCap::new(connections);
        self
    }

    /// The close codes.
    #[must_use]
    pub fn codes(mut self, codes: CloseCodes) -> Self {
        self.codes = codes;
        self
    }

    /// How long a close (after a failed authentication) waits for the
    /// peer's Close before the socket is dropped. Default 3 s.
    #[must_use]
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
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
            close_timeout: self.close_timeout,
        }
    }

    /// Gives an axum upgrade the limits of an unauthenticated socket: no
    /// frame and no message over [`max_message_bytes`](Self::max_message_bytes)
    /// plus 4 KiB, and a 4 KiB read buffer. A message a little over the cap
    /// is read and refused with [`CloseCodes::too_big_code`]; a larger frame
    /// is refused by the library from its header, before its payload is
    /// buffered, and the connection is dropped. With axum's defaults a client that needs no
    /// credential could make the server buffer a 64 MiB message on every
    /// pending connection.
    ///
    /// These limits hold for the socket's whole life: axum 0.8 cannot change
    /// them on a live socket (see [`websocket_config`](Self::websocket_config)
    /// for the same rule on tokio-tungstenite). If the application needs
    /// larger messages after authentication, raise `max_message_bytes` (every
    /// pending connection may then buffer that much, at most
    /// [`max_pending`](Self::max_pending) of them) or authenticate before the
    /// upgrade with a header, subprotocol or cookie carrier, where the
    /// upgrade's limits may stay large.
    ///
    /// ```no_run
    /// use axum::{extract::ws::WebSocketUpgrade, http::request::Parts, response::Response};
    /// use tower_ws_auth::{api_key::ApiKeyAuthenticator, socket::FirstMessageAuth};
    ///
    /// async fn ws(ws: WebSocketUpgrade, parts: Parts, auth: FirstMessageAuth<ApiKeyAuthenticator>) -> Response {
    ///     auth.configure(ws).on_upgrade(move |socket| async move {
    ///         let Ok((socket, identity)) = auth.authenticate(socket, &parts).await else { return };
    ///         # let _ = (socket, identity);
    ///     })
    /// }
    /// ```
    #[cfg(feature = "axum")]
    #[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
    pub fn configure<F>(
        &self,
        upgrade: ::axum::extract::ws::WebSocketUpgrade<F>,
    ) -> ::axum::extract::ws::WebSocketUpgrade<F> {
        upgrade
            .read_buffer_size(READ_BUFFER)
            .max_frame_size(self.library_limit())
            .max_message_size(self.library_limit())
    }

    /// The tokio-tungstenite configuration of an unauthenticated socket:
    /// [`WebSocketConfig::default`](tokio_tungstenite::tungstenite::protocol::WebSocketConfig)
    /// with no frame and no message over
    /// [`max_message_bytes`](Self::max_message_bytes) plus 4 KiB (refused
    /// from the frame header) and a 4 KiB read buffer, as
    /// [`configure`](Self::configure) does for axum. Pass it to
    /// `WebSocketStream::from_raw_socket`.
    ///
    /// The limits hold for the socket's whole life: tokio-tungstenite 0.29's
    /// `WebSocketStream` has `get_config` but no `set_config` (tungstenite's
    /// own `WebSocket::set_config` is not reachable through it), and
    /// rebuilding the stream after authentication would lose the bytes it
    /// has already read. See [`configure`](Self::configure) for the ways to
    /// allow larger application messages.
    ///
    /// ```
    /// use tower_ws_auth::{api_key::ApiKeyAuthenticator, socket::FirstMessageAuth};
    ///
    /// let keys = ApiKeyAuthenticator::from_keys(Vec::<(&str, tower_ws_auth::Identity)>::new());
    /// let auth = FirstMessageAuth::new(keys).max_message_bytes((8 * 1024).try_into()?);
    /// assert_eq!(auth.websocket_config().max_frame_size, Some((8 + 4) * 1024));
    /// # Ok::<(), std::num::TryFromIntError>(())
    /// ```
    #[cfg(feature = "tungstenite")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tungstenite")))]
    pub fn websocket_config(&self) -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
        tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER)
            .max_frame_size(Some(self.library_limit()))
            .max_message_size(Some(self.library_limit()))
    }

    /// The frame and message limit given to the WebSocket library.
    #[cfg(any(feature = "axum", feature = "tungstenite"))]
    fn library_limit(&self) -> usize {
        self.max_bytes.saturating_add(READ_BUFFER)
    }

    /// Connections currently waiting for their authentication message.
    pub fn pending(&self) -> usize {
        self.pending.pending()
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
        socket: S,
        request: &Parts,
    ) -> Result<(S, Identity), FirstMessageError> {
        let authenticated = self.run(socket, request).await;
        if let Err(error) = &authenticated {
            crate::observe::close(error.close_reason());
        }
        authenticated
    }

    /// [`authenticate`](Self::authenticate), before its outcome is counted.
    async fn run<S: AuthSocket>(
        &self,
        mut socket: S,
        request: &Parts,
    ) -> Result<(S, Identity), FirstMessageError> {
        let inner = self;
        let codes = inner.codes;
        let Some(permit) = inner.pending.try_acquire() else {
            close_within(
                &mut socket,
                codes.too_many_code(),
                "too many pending connections",
                inner.close_timeout,
            )
            .await;
            return Err(FirstMessageError::TooManyPending);
        };
        let deadline = tokio::time::Instant::now() + inner.timeout;
        let outcome = loop {
            let received =
                match tokio::time::timeout_at(deadline, StreamExt::next(&mut socket)).await {
                    Err(_) => {
                        break Err((
                            FirstMessageError::Timeout,
                            codes.timeout_code(),
                            "authentication timeout",
                        ));
                    }
                    Ok(None) => return Err(FirstMessageError::PeerClosed),
                    Ok(Some(Err(error))) => {
                        fail(&mut socket, &error, inner.close_timeout).await;
                        return Err(FirstMessageError::Socket(SocketError::new(error)));
                    }
                    Ok(Some(Ok(message))) => message,
                };
            let text = match S::frame(&received) {
                Frame::Control => continue,
                Frame::Close(_) => {
                    drop(permit);
                    // Answer the peer's Close before the socket is dropped.
                    finish_close(&mut socket, inner.close_timeout).await;
                    return Err(FirstMessageError::PeerClosed);
                }
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
                    send(&mut socket, S::text(text)).await?;
                }
                Ok((socket, identity))
            }
            Err((error, code, reason)) => {
                tracing::debug!(target: "tower_ws_auth", outcome = "rejected", carrier = "message", close_code = code, reason = %error, "socket authentication failed");
                close_within(&mut socket, code, reason, inner.close_timeout).await;
                Err(error)
            }
        }
    }
}

/// The read buffer of an unauthenticated socket.
#[cfg(any(feature = "axum", feature = "tungstenite"))]
const READ_BUFFER: usize = 4 * 1024;

/// At most this many connections wait for their authentication message by
/// default.
const DEFAULT_MAX_PENDING: NonZeroUsize = match NonZeroUsize::new(1024) {
    Some(n) => n,
    None => NonZeroUsize::MIN,
};

/// The close code and generic reason for an authenticator's error.
pub(crate) fn rejection_close(codes: &CloseCodes, error: &AuthError) -> (u16, &'static str) {
    match error {
        AuthError::InsufficientScope { .. } | AuthError::Forbidden(_) => {
            (codes.forbidden_code(), "forbidden")
        }
        AuthError::Malformed(_) => (codes.malformed_code(), "malformed credential"),
        AuthError::Unavailable { .. } | AuthError::TooManyConnections { .. } => {
            (codes.unavailable_code(), "try again later")
        }
        _ => (codes.unauthorized_code(), "unauthorized"),
    }
}
