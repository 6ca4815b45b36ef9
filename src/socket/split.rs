//! [`GuardedSocket::split`]: a receiving half (a `Stream`, where the guard
//! runs) and a sending half (a `Sink`) that can live in two tasks, both
//! over the one guarded socket and its state machine.

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use futures_util::{Sink, Stream};

use super::guard::{EndReason, GuardedSocket, NoRefresh};
use super::{AuthMessages, AuthSocket, JsonMessages, SocketError};
use crate::authenticator::Authenticator;

/// The guarded socket shared by the two halves. Each half locks it only for
/// the duration of one poll, never while waiting, so a sending half that
/// waits (for its application, or for a peer that does not read) never
/// stops the receiving half, where the guard runs.
struct Shared<S: AuthSocket, A, M> {
    /// `None` once the connection has ended (or the receiving half is
    /// gone): dropping the socket closes the connection, whatever the
    /// sending half is doing.
    socket: Option<GuardedSocket<S, A, M>>,
    ended: Option<EndReason>,
    /// The halves' tasks, each woken when the other begins or ends a close.
    receiver: Option<Waker>,
    sender: Option<Waker>,
}

type SharedState<S, A, M> = Arc<Mutex<Shared<S, A, M>>>;

fn lock<S: AuthSocket, A, M>(shared: &SharedState<S, A, M>) -> MutexGuard<'_, Shared<S, A, M>> {
    // Every critical section is one poll of the socket: a panic in it
    // leaves nothing half-updated in the state.
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<S: AuthSocket, A, M> Shared<S, A, M> {
    /// Drops the socket (closing the connection) and wakes the sending half.
    fn terminate(&mut self) {
        if let Some(socket) = self.socket.take() {
            self.ended = self.ended.or(socket.end_reason());
        }
        self.ended = self.ended.or(Some(EndReason::Error));
        if let Some(waker) = self.sender.take() {
            waker.wake();
        }
    }
}

impl<S, A, M> Shared<S, A, M>
where
    S: AuthSocket,
    A: Authenticator,
    M: AuthMessages,
{
    /// Polls `f` on the guarded socket for one half: registers that half's
    /// task, wakes the other's when the poll began a close or ended the
    /// socket, and drops the socket once its stream is over.
    fn poll<T>(
        &mut self,
        cx: &mut Context<'_>,
        receiving: bool,
        f: impl FnOnce(&mut GuardedSocket<S, A, M>, &mut Context<'_>) -> Poll<T>,
    ) -> Option<Poll<T>> {
        let socket = self.socket.as_mut()?;
        let was_open = socket.is_open();
        let polled = f(socket, cx);
        let (open, done) = (socket.is_open(), socket.is_done());
        let (mine, other) = if receiving {
            (&mut self.receiver, &mut self.sender)
        } else {
            (&mut self.sender, &mut self.receiver)
        };
        if polled.is_pending() {
            *mine = Some(cx.waker().clone());
        }
        if was_open
            && !open
            && let Some(waker) = other.take()
        {
            waker.wake();
        }
        if done {
            self.terminate();
        }
        Some(polled)
    }
}

/// The receiving half of a split [`GuardedSocket`]: a
/// `Stream<Item = Result<Message, Error>>` of application messages, with the
/// library's own message and error types (for axum,
/// `Result<axum::extract::ws::Message, axum::Error>`). The guard runs here:
/// keep polling it (one task reading, as in axum's chat example) and it
/// closes the socket at expiry, on revocation or on a refused refresh,
/// completes the closing handshake, then ends; the connection is dropped
/// then even if the [`GuardedSender`] is still held, and the sender fails
/// from then on. Dropping the receiving half also drops the connection:
/// the guard cannot run without it.
pub struct GuardedReceiver<S: AuthSocket, A = NoRefresh, M = JsonMessages> {
    shared: SharedState<S, A, M>,
}

impl<S: AuthSocket, A, M> fmt::Debug for GuardedReceiver<S, A, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardedReceiver")
            .field("ended", &self.end_reason())
            .finish_non_exhaustive()
    }
}

impl<S: AuthSocket, A, M> GuardedReceiver<S, A, M> {
    /// Why the socket ended, once it has (set when its closing begins).
    pub fn end_reason(&self) -> Option<EndReason> {
        let shared = lock(&self.shared);
        match &shared.socket {
            Some(socket) => socket.end_reason(),
            None => shared.ended,
        }
    }
}

impl<S: AuthSocket, A, M> Drop for GuardedReceiver<S, A, M> {
    fn drop(&mut self) {
        lock(&self.shared).terminate();
    }
}

impl<S, A, M> Stream for GuardedReceiver<S, A, M>
where
    S: AuthSocket,
    A: Authenticator,
    M: AuthMessages,
{
    type Item = Result<S::Message, S::WsError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut shared = lock(&self.shared);
        let Some(polled) = shared.poll(cx, true, GuardedSocket::poll_recv) else {
            return Poll::Ready(None);
        };
        match polled {
            Poll::Ready(Some(Err(error))) => match error.downcast::<S::WsError>() {
                Ok(error) => Poll::Ready(Some(Err(error))),
                // Not the library's: the guard's own (the socket is closed).
                Err(other) => {
                    tracing::debug!(target: "tower_ws_auth", error = %other, "guarded socket failed");
                    shared.terminate();
                    Poll::Ready(None)
                }
            },
            Poll::Ready(Some(Ok(message))) => Poll::Ready(Some(Ok(message))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The sending half of a split [`GuardedSocket`]: a `Sink` of the
/// library's messages. Fails with a [`SocketError`] once the guard has
/// closed the socket. `Sink::close` closes the socket (with 1000, the
/// closing handshake included).
pub struct GuardedSender<S: AuthSocket, A = NoRefresh, M = JsonMessages> {
    shared: SharedState<S, A, M>,
}

impl<S: AuthSocket, A, M> fmt::Debug for GuardedSender<S, A, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardedSender").finish_non_exhaustive()
    }
}

impl<S, A, M> GuardedSender<S, A, M>
where
    S: AuthSocket,
    A: Authenticator,
    M: AuthMessages,
{
    fn with_socket<T>(
        &self,
        cx: &mut Context<'_>,
        f: impl FnOnce(&mut GuardedSocket<S, A, M>, &mut Context<'_>) -> Poll<Result<T, SocketError>>,
    ) -> Poll<Result<T, SocketError>> {
        lock(&self.shared)
            .poll(cx, false, f)
            .unwrap_or(Poll::Ready(Err(SocketError::closed())))
    }
}

impl<S, A, M> Sink<S::Message> for GuardedSender<S, A, M>
where
    S: AuthSocket,
    A: Authenticator,
    M: AuthMessages,
{
    type Error = SocketError;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), SocketError>> {
        self.with_socket(cx, GuardedSocket::poll_send_ready)
    }

    fn start_send(self: Pin<&mut Self>, message: S::Message) -> Result<(), SocketError> {
        match &mut lock(&self.shared).socket {
            None => Err(SocketError::closed()),
            Some(socket) => socket.start_send_message(message),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), SocketError>> {
        self.with_socket(cx, GuardedSocket::poll_send_flush)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), SocketError>> {
        self.with_socket(cx, GuardedSocket::poll_send_close)
    }
}

impl<S, A, M> GuardedSocket<S, A, M>
where
    S: AuthSocket,
    A: Authenticator,
    M: AuthMessages,
{
    /// Splits the socket into a receiving half (a `Stream`, where the guard
    /// keeps enforcing expiry, revocation and refreshes) and a sending half
    /// (a `Sink`), for two tasks; see [`GuardedReceiver`] and
    /// [`GuardedSender`]. Both work on this one guarded socket: the same
    /// rules, the same closing handshake.
    ///
    /// ```no_run
    /// use axum::extract::ws::{Message, WebSocket};
    /// use futures_util::{SinkExt, StreamExt};
    /// use tower_ws_auth::{Identity, socket::SessionGuard};
    ///
    /// async fn chat(socket: WebSocket, identity: Identity, guard: SessionGuard) {
    ///     let (mut receiver, mut sender) = guard.wrap(socket, identity).split();
    ///     let mut send_task = tokio::spawn(async move {
    ///         // e.g. forward a broadcast channel
    ///         sender.send(Message::Text("hello".into())).await
    ///     });
    ///     while let Some(Ok(message)) = receiver.next().await {
    ///         // application messages only
    ///         # let _ = message;
    ///     }
    ///     // receiver.end_reason(): why it ended; the sender fails from now on.
    ///     send_task.abort();
    /// }
    /// ```
    pub fn split(self) -> (GuardedReceiver<S, A, M>, GuardedSender<S, A, M>) {
        let shared = Arc::new(Mutex::new(Shared {
            socket: Some(self),
            ended: None,
            receiver: None,
            sender: None,
        }));
        (
            GuardedReceiver {
                shared: shared.clone(),
            },
            GuardedSender { shared },
        )
    }
}
