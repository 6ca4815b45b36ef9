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
pub use messages::{AuthMessages, JsonMessages, Parsed};
#[cfg(feature = "redis")]
pub use redis_bus::RedisBus;
pub use revocation::{BusError, LocalBus, Registration, Revocation, RevocationBus, Revocations};

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
}

/// How long [`close`] waits for the peer to answer a close frame.
pub(crate) const CLOSE_DRAIN: Duration = Duration::from_secs(1);

/// Closes `socket` with `code` and a generic `reason`, then reads (and
/// drops) what the peer still sends until it answers the close or
/// one second passes, so the close handshake completes cleanly.
pub async fn close<S: AuthSocket>(socket: &mut S, code: u16, reason: &str) {
    let code = if is_sendable_close_code(code) {
        code
    } else {
        1008
    };
    if socket
        .send_message(S::close_frame(code, close_reason(reason)))
        .await
        .is_err()
    {
        return;
    }
    let _ = tokio::time::timeout(CLOSE_DRAIN, async {
        while let Some(Ok(message)) = socket.recv_message().await {
            if matches!(S::frame(&message), Frame::Close(_)) {
                break;
            }
        }
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
