//! After the handshake: a small socket abstraction, first-message
//! authentication, the expiry guard with in-band refresh, and revocation.
//!
//! Everything here works on any [`AuthSocket`]: axum's `WebSocket` (feature
//! `axum`) and tokio-tungstenite's `WebSocketStream` (feature `tungstenite`)
//! implement it, with their own message types, so application code keeps
//! the types it already uses.

mod close;
mod first_message;
mod guard;
mod messages;
mod revocation;
mod split;

#[cfg(feature = "axum")]
mod axum_socket;
#[cfg(feature = "redis")]
mod redis_bus;
#[cfg(feature = "tungstenite")]
mod tungstenite_socket;

use std::fmt;
use std::future::Future;
use std::time::Duration;

pub use close::{CloseCodes, close_reason, is_sendable_close_code};
pub use first_message::{FirstMessageAuth, FirstMessageError};
pub use guard::{EndReason, GuardedSocket, NoRefresh, SessionGuard};
pub use messages::{AuthMessages, GraphqlWsDeferredAck, GraphqlWsMessages, JsonMessages, Parsed};
#[cfg(feature = "redis")]
pub use redis_bus::RedisBus;
pub use revocation::{BusError, LocalBus, Registration, Revocation, RevocationBus, Revocations};
pub use split::{GuardedReceiver, GuardedSender, SharedSocket};

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

impl SocketError {
    /// Wraps the WebSocket library's error.
    pub fn new(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self(Box::new(error))
    }

    /// The library's error.
    pub(crate) fn library_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.0
    }

    /// The library's error, if it is an `E`.
    pub(crate) fn downcast<E: std::error::Error + 'static>(self) -> Result<E, Self> {
        self.0.downcast::<E>().map(|e| *e).map_err(Self)
    }
}

/// The few things the authentication code needs from a WebSocket: receive
/// the next message, send one, make a text message or a close frame.
///
/// The method names differ from the libraries' own (`recv`, `send`,
/// `StreamExt::next`, `SinkExt::send`) so that importing this trait never
/// makes those calls ambiguous.
///
/// Implemented for axum's `WebSocket` (feature `axum`) and for
/// tokio-tungstenite's `WebSocketStream` (feature `tungstenite`); implement
/// it for another library in a few lines.
pub trait AuthSocket: Send {
    /// The library's own message type.
    type Message: Send + 'static;

    /// The next message; `None` once the connection is closed.
    fn recv_message(
        &mut self,
    ) -> impl Future<Output = Option<Result<Self::Message, SocketError>>> + Send;

    /// Sends a message.
    fn send_message(
        &mut self,
        message: Self::Message,
    ) -> impl Future<Output = Result<(), SocketError>> + Send;

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
    /// The library's error is `error`'s
    /// [`source`](std::error::Error::source). The default is 1002 for every
    /// error; the adapters of this crate read tungstenite's error.
    fn failure_code(error: &SocketError) -> Option<u16> {
        let _ = error;
        Some(1002)
    }
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
    let code = if is_sendable_close_code(code) {
        code
    } else {
        1008
    };
    close_then(socket, code, reason, timeout, true).await;
}

/// Sends a Close with `code` (flushed: the adapters' sends flush), then,
/// if `drain`, reads until the peer's Close or the end of the connection.
/// Bounded as a whole by `timeout`: a peer that does not read cannot hold
/// the close (the send) any more than one that does not answer.
async fn close_then<S: AuthSocket>(
    socket: &mut S,
    code: u16,
    reason: &str,
    timeout: Duration,
    drain: bool,
) {
    let _ = tokio::time::timeout(timeout, async {
        if socket
            .send_message(S::close_frame(code, close_reason(reason)))
            .await
            .is_err()
            || !drain
        {
            return;
        }
        while let Some(received) = socket.recv_message().await {
            match received {
                Ok(message) if matches!(S::frame(&message), Frame::Close(_)) => break,
                Ok(_) => {}
                // More protocol errors from a peer that keeps sending what
                // it sent before our Close: read on, each one consumed a
                // frame. Not after 1009: the library may be inside an
                // oversized frame, and reading on would buffer it.
                Err(error) => match S::failure_code(&error) {
                    Some(code) if code != 1009 => {}
                    _ => break,
                },
            }
        }
    })
    .await;
}

/// Fails the connection after `error`, the library's report of a peer
/// that broke the protocol (RFC 6455 7.1.7): sends the Close with the code
/// [`AuthSocket::failure_code`] gives, flushed, then waits (at most
/// `timeout`) for the peer's Close, so the connection still ends with a
/// closing handshake. Nothing is sent when the connection itself is gone.
pub(crate) async fn fail<S: AuthSocket>(socket: &mut S, error: &SocketError, timeout: Duration) {
    let Some(code) = S::failure_code(error) else {
        return;
    };
    tracing::debug!(target: "tower_ws_auth", close_code = code, "failing the websocket connection");
    let reason = match code {
        1007 => "invalid payload data",
        1009 => "message too big",
        _ => "protocol error",
    };
    // After 1009 nothing more is read (see `close_then`).
    close_then(socket, code, reason, timeout, code != 1009).await;
}

/// After the peer's Close: keeps reading, for at most `timeout`, until the
/// library reports the connection closed. The WebSocket libraries queue
/// their reply Close when they read the peer's and write it on the next
/// read, so a socket dropped right after the peer's Close would never
/// answer it.
pub(crate) async fn finish_close<S: AuthSocket>(socket: &mut S, timeout: Duration) {
    let _ = tokio::time::timeout(timeout, async {
        while let Some(Ok(_)) = socket.recv_message().await {}
    })
    .await;
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
