//! After the handshake: a small socket abstraction, first-message
//! authentication, the expiry guard with in-band refresh, and revocation.
//!
//! Everything here works on any [`AuthSocket`]: axum's `WebSocket` (feature
//! `axum`) and tokio-tungstenite's `WebSocketStream` (feature `tungstenite`)
//! implement it, with their own message types, so application code keeps
//! the types it already uses. A [`GuardedSocket`] is itself a `Stream` and a
//! `Sink` of those messages (and splits into two halves that are), so it
//! goes wherever the library's socket went.
//!
//! Every close completes the closing handshake of RFC 6455: the peer's
//! Close is answered and flushed before the socket is released; a close of
//! the server's own (expiry, revocation, a refused refresh, a failed
//! first-message authentication, an application's close, a protocol error
//! with 1002, 1007 or 1009) sends its Close and waits a bounded,
//! configurable time (`close_timeout`, 3 s by default) for the peer's.
//!
#![doc = include_str!("../../docs/socket.md")]
//!
#![doc = include_str!("../../docs/scaling.md")]

mod close;
mod first_message;
mod guard;
mod messages;
pub(crate) mod pending;
mod revocation;
mod split;

#[cfg(feature = "axum")]
mod axum_socket;
#[cfg(feature = "redis")]
mod redis_bus;
#[cfg(feature = "tungstenite")]
mod tungstenite_socket;

use std::fmt;
use std::time::Duration;

use futures_util::{Sink, SinkExt, Stream};

use close::Closing;
pub use close::{CloseCodes, close_reason, is_sendable_close_code};
pub use first_message::{FirstMessageAuth, FirstMessageError};
pub use guard::{EndReason, GuardedSocket, NoRefresh, SessionGuard};
pub use messages::{AuthMessages, GraphqlWsDeferredAck, GraphqlWsMessages, JsonMessages, Parsed};
#[cfg(feature = "redis")]
pub use redis_bus::RedisBus;
pub use revocation::{
    BusError, LocalBus, OverCap, Registration, Revocable, Revocation, RevocationBus, Revocations,
};
pub use split::{GuardedReceiver, GuardedSender};

/// What a received message is, seen through an [`AuthSocket`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Frame<'a> {
    /// A text message.
    Text(&'a str),
    /// A binary message.
    Binary(&'a [u8]),
    /// A ping or a pong (answered by the WebSocket library itself).
    Control,
    /// The peer's close frame, with its code and reason if it sent one.
    Close(Option<(u16, &'a str)>),
}

/// An error of the underlying WebSocket.
#[derive(Debug, thiserror::Error)]
#[error("websocket error: {0}")]
pub struct SocketError(#[source] Box<dyn std::error::Error + Send + Sync>);

/// The socket closed by the guard (or by an earlier failure).
#[derive(Debug, thiserror::Error)]
#[error("the guarded socket is closed")]
struct Closed;

impl SocketError {
    /// Wraps the WebSocket library's error.
    pub fn new(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self(Box::new(error))
    }

    /// The error of a socket the guard has closed (or that failed before).
    pub(crate) fn closed() -> Self {
        Self::new(Closed)
    }

    /// The library's error, if it is an `E`.
    pub(crate) fn downcast<E: std::error::Error + 'static>(self) -> Result<E, Self> {
        self.0.downcast::<E>().map(|e| *e).map_err(Self)
    }
}

/// What the authentication code needs from a WebSocket: the library's
/// socket as a `Stream` of received messages and a `Sink` of messages to
/// send (as axum's `WebSocket` and tokio-tungstenite's `WebSocketStream`
/// are), plus how to make a text message or a close frame and what a
/// received message is.
///
/// Implemented for axum's `WebSocket` (feature `axum`) and for
/// tokio-tungstenite's `WebSocketStream` (feature `tungstenite`); implement
/// it for another library in a few lines.
pub trait AuthSocket:
    Stream<Item = Result<Self::Message, Self::WsError>>
    + Sink<Self::Message, Error = Self::WsError>
    + Send
    + Unpin
{
    /// The library's own message type.
    type Message: Send + 'static;

    /// The library's own error type.
    type WsError: std::error::Error + Send + Sync + 'static;

    /// A text message.
    fn text(text: String) -> Self::Message;

    /// A close frame with `code` and `reason` (at most 123 bytes).
    fn close_frame(code: u16, reason: &str) -> Self::Message;

    /// What `message` is.
    fn frame(message: &Self::Message) -> Frame<'_>;

    /// The close code to fail the connection with after `error`, one the
    /// library reported while receiving, as RFC 6455 (7.1.7, 7.4.1)
    /// prescribes: 1002 for a protocol violation, 1007 for a text message
    /// that is not UTF-8, 1009 for a message over the size limit; `None`
    /// when the connection itself is gone (an I/O error, already closed),
    /// where no Close can go out.
    ///
    /// The default is 1002 for every error; the adapters of this crate read
    /// tungstenite's error.
    fn failure_code(error: &Self::WsError) -> Option<u16> {
        let _ = error;
        Some(1002)
    }
}

/// Sends `message` on `socket`, flushed.
pub(crate) async fn send<S: AuthSocket>(
    socket: &mut S,
    message: S::Message,
) -> Result<(), SocketError> {
    SinkExt::send(socket, message)
        .await
        .map_err(SocketError::new)
}

/// [`AuthSocket::failure_code`] for tungstenite's errors.
#[cfg(any(feature = "axum", feature = "tungstenite"))]
pub(crate) fn tungstenite_failure_code(
    error: &tokio_tungstenite::tungstenite::Error,
) -> Option<u16> {
    use tokio_tungstenite::tungstenite::Error;
    use tokio_tungstenite::tungstenite::error::ProtocolError;
    match error {
        Error::ConnectionClosed
        | Error::AlreadyClosed
        | Error::Io(_)
        | Error::Tls(_)
        | Error::WriteBufferFull(_)
        | Error::Protocol(
            ProtocolError::ResetWithoutClosingHandshake
            | ProtocolError::SendAfterClosing
            | ProtocolError::ReceivedAfterClosing,
        ) => None,
        Error::Utf8(_) => Some(1007),
        Error::Capacity(_) => Some(1009),
        _ => Some(1002),
    }
}

/// How long a server-initiated close waits for the peer's Close by default
/// (and how long the reply to the peer's Close may take to go out).
pub(crate) const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);

/// Closes `socket` with `code` and a generic `reason`, then reads (and
/// drops) what the peer still sends until it answers with its own Close or
/// three seconds pass, so the closing handshake of RFC 6455 completes
/// before the socket is dropped.
///
/// A code that may not be sent (see [`is_sendable_close_code`]) becomes
/// 1008.
pub async fn close<S: AuthSocket>(socket: &mut S, code: u16, reason: &str) {
    close_within(socket, code, reason, CLOSE_TIMEOUT).await;
}

/// [`close`], waiting at most `timeout` for the peer's Close.
pub(crate) async fn close_within<S: AuthSocket>(
    socket: &mut S,
    code: u16,
    reason: &str,
    timeout: Duration,
) {
    Closing::close::<S>(code, reason, timeout).run(socket).await;
}

/// Fails the connection after `error`, the library's report of a peer
/// that broke the protocol (RFC 6455 7.1.7): see [`Closing::fail`].
pub(crate) async fn fail<S: AuthSocket>(socket: &mut S, error: &S::WsError, timeout: Duration) {
    if let Some(closing) = Closing::fail::<S>(error, timeout) {
        closing.run(socket).await;
    }
}

/// After the peer's Close: see [`Closing::answer`].
pub(crate) async fn finish_close<S: AuthSocket>(socket: &mut S, timeout: Duration) {
    Closing::<S::Message>::answer(timeout).run(socket).await;
}

impl fmt::Display for Frame<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Text(_) => "text",
            Self::Binary(_) => "binary",
            Self::Control => "control",
            Self::Close(_) => "close",
        })
    }
}
