//! [`GuardedSocket::split`]: a receiving half (a `Stream`, where the guard
//! runs) and a sending half (a `Sink`) that can live in two tasks.

use std::error::Error as StdError;
use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use futures_util::{Sink, Stream};

use super::guard::{EndReason, GuardedSocket};
use super::{AuthMessages, AuthSocket, Frame, SocketError};
use crate::authenticator::Authenticator;

struct State<S> {
    /// `None` once the guard has ended the connection: dropping the socket
    /// closes it, whatever the sending half is doing.
    socket: Option<S>,
    /// The sending half's task, woken when the socket goes.
    sender: Option<Waker>,
    ended: Option<EndReason>,
}

/// The socket shared by the two halves of a split [`GuardedSocket`]. Each
/// half locks it only for the duration of one poll, never while waiting,
/// so a sending half that waits (for its application, or for a peer that
/// does not read) never stops the receiving half, where the guard runs.
pub struct SharedSocket<S> {
    state: Arc<Mutex<State<S>>>,
}

impl<S> fmt::Debug for SharedSocket<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedSocket").finish_non_exhaustive()
    }
}

impl<S> SharedSocket<S> {
    fn lock(&self) -> MutexGuard<'_, State<S>> {
        lock(&self.state)
    }

    /// Drops the socket (closing the connection) and wakes the sending half.
    fn terminate(&self, ended: Option<EndReason>) {
        let (socket, sender) = {
            let mut state = self.lock();
            state.ended = state.ended.or(ended).or(Some(EndReason::Error));
            (state.socket.take(), state.sender.take())
        };
        drop(socket);
        if let Some(waker) = sender {
            waker.wake();
        }
    }
}

fn lock<S>(state: &Mutex<State<S>>) -> MutexGuard<'_, State<S>> {
    // Every critical section is one poll of the socket: a panic in it
    // leaves nothing half-updated in the state.
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The socket closed by the guard (or by an earlier failure).
#[derive(Debug, thiserror::Error)]
#[error("the guarded socket is closed")]
struct Closed;

impl<S, E> AuthSocket for SharedSocket<S>
where
    S: AuthSocket + Stream<Item = Result<S::Message, E>> + Sink<S::Message, Error = E> + Unpin,
    E: StdError + Send + Sync + 'static,
{
    type Message = S::Message;

    fn recv_message(
        &mut self,
    ) -> impl Future<Output = Option<Result<Self::Message, SocketError>>> + Send {
        poll_fn(move |cx| {
            let mut state = self.lock();
            let Some(socket) = state.socket.as_mut() else {
                return Poll::Ready(None);
            };
            Pin::new(socket)
                .poll_next(cx)
                .map(|next| next.map(|r| r.map_err(SocketError::new)))
        })
    }

    fn send_message(
        &mut self,
        message: Self::Message,
    ) -> impl Future<Output = Result<(), SocketError>> + Send {
        let mut message = Some(message);
        poll_fn(move |cx| {
            let mut state = self.lock();
            let Some(socket) = state.socket.as_mut() else {
                return Poll::Ready(Err(SocketError::new(Closed)));
            };
            let mut socket = Pin::new(socket);
            if message.is_some() {
                if let Err(error) = std::task::ready!(socket.as_mut().poll_ready(cx)) {
                    return Poll::Ready(Err(SocketError::new(error)));
                }
                if let Some(message) = message.take()
                    && let Err(error) = socket.as_mut().start_send(message)
                {
                    return Poll::Ready(Err(SocketError::new(error)));
                }
            }
            socket.poll_flush(cx).map_err(SocketError::new)
        })
    }

    fn text(text: String) -> Self::Message {
        S::text(text)
    }

    fn close_frame(code: u16, reason: &str) -> Self::Message {
        S::close_frame(code, reason)
    }

    fn frame(message: &Self::Message) -> Frame<'_> {
        S::frame(message)
    }

    fn failure_code(error: &SocketError) -> Option<u16> {
        // The halves' errors are the library's own, as the socket's.
        if error.library_error().is::<Closed>() {
            None
        } else {
            S::failure_code(error)
        }
    }
}

type Items<M, E> = Pin<Box<dyn Stream<Item = Result<M, E>> + Send>>;

/// The receiving half of a split [`GuardedSocket`]: a
/// `Stream<Item = Result<Message, Error>>` of application messages, with the
/// library's own message and error types (for axum,
/// `Result<axum::extract::ws::Message, axum::Error>`). The guard runs here:
/// keep polling it (one task reading, as in axum's chat example) and it
/// closes the socket at expiry, on revocation or on a refused refresh, then
/// ends; the connection is dropped then even if the
/// [`GuardedSender`] is still held, and the sender fails from then on.
pub struct GuardedReceiver<S: AuthSocket, E> {
    items: Items<<S as AuthSocket>::Message, E>,
    shared: Arc<Mutex<State<S>>>,
}

impl<S: AuthSocket, E> fmt::Debug for GuardedReceiver<S, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardedReceiver")
            .field("ended", &lock(&self.shared).ended)
            .finish_non_exhaustive()
    }
}

impl<S: AuthSocket, E> GuardedReceiver<S, E> {
    /// Why the socket ended, once it has.
    pub fn end_reason(&self) -> Option<EndReason> {
        lock(&self.shared).ended
    }
}

impl<S: AuthSocket, E> Stream for GuardedReceiver<S, E> {
    type Item = Result<S::Message, E>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.items.as_mut().poll_next(cx)
    }
}

/// The sending half of a split [`GuardedSocket`]: a `Sink` of the
/// library's messages. Fails with a [`SocketError`] once the guard has
/// closed the socket.
pub struct GuardedSender<S> {
    shared: Arc<Mutex<State<S>>>,
}

impl<S> fmt::Debug for GuardedSender<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardedSender").finish_non_exhaustive()
    }
}

impl<S> GuardedSender<S> {
    /// Polls `f` on the socket, registering this task to be woken when the
    /// guard drops it.
    fn with_socket<T>(
        &self,
        cx: &mut Context<'_>,
        f: impl FnOnce(Pin<&mut S>, &mut Context<'_>) -> Poll<Result<T, SocketError>>,
    ) -> Poll<Result<T, SocketError>>
    where
        S: Unpin,
    {
        let mut state = lock(&self.shared);
        match &mut state.socket {
            None => Poll::Ready(Err(SocketError::new(Closed))),
            Some(socket) => {
                let polled = f(Pin::new(socket), cx);
                if polled.is_pending() {
                    state.sender = Some(cx.waker().clone());
                }
                polled
            }
        }
    }
}

impl<S, E> Sink<S::Message> for GuardedSender<S>
where
    S: AuthSocket + Sink<S::Message, Error = E> + Unpin,
    E: StdError + Send + Sync + 'static,
{
    type Error = SocketError;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), SocketError>> {
        self.with_socket(cx, |s, cx| s.poll_ready(cx).map_err(SocketError::new))
    }

    fn start_send(self: Pin<&mut Self>, item: S::Message) -> Result<(), SocketError> {
        let mut state = lock(&self.shared);
        match &mut state.socket {
            None => Err(SocketError::new(Closed)),
            Some(socket) => Pin::new(socket).start_send(item).map_err(SocketError::new),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), SocketError>> {
        self.with_socket(cx, |s, cx| s.poll_flush(cx).map_err(SocketError::new))
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), SocketError>> {
        self.with_socket(cx, |s, cx| s.poll_close(cx).map_err(SocketError::new))
    }
}

impl<S, A, M, E> GuardedSocket<S, A, M>
where
    S: AuthSocket
        + Stream<Item = Result<S::Message, E>>
        + Sink<S::Message, Error = E>
        + Unpin
        + 'static,
    A: Authenticator,
    M: AuthMessages,
    E: StdError + Send + Sync + 'static,
{
    /// Splits the socket into a receiving half (a `Stream`, where the guard
    /// keeps enforcing expiry, revocation and refreshes) and a sending half
    /// (a `Sink`), for two tasks; see [`GuardedReceiver`] and
    /// [`GuardedSender`].
    ///
    /// ```no_run
    /// use axum::extract::ws::{Message, WebSocket};
    /// use futures_util::{SinkExt, StreamExt};
    /// use tower_ws_auth::{Identity, SessionGuard};
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
    pub fn split(self) -> (GuardedReceiver<S, E>, GuardedSender<S>) {
        let shared = Arc::new(Mutex::new(State {
            socket: None,
            sender: None,
            ended: None,
        }));
        let guarded = self.map_socket(|socket| {
            lock(&shared).socket = Some(socket);
            SharedSocket {
                state: shared.clone(),
            }
        });
        let items = futures_util::stream::unfold(Some(guarded), |guarded| async move {
            let mut guarded = guarded?;
            match guarded.recv().await {
                Some(Ok(message)) => Some((Ok(message), Some(guarded))),
                Some(Err(error)) => match error.downcast::<E>() {
                    Ok(error) => Some((Err(error), Some(guarded))),
                    Err(other) => {
                        tracing::debug!(target: "tower_ws_auth", error = %other, "guarded socket failed");
                        guarded.socket().terminate(guarded.end_reason());
                        None
                    }
                },
                None => {
                    guarded.socket().terminate(guarded.end_reason());
                    None
                }
            }
        });
        let receiver = GuardedReceiver {
            items: Box::pin(items),
            shared: shared.clone(),
        };
        (receiver, GuardedSender { shared })
    }
}
