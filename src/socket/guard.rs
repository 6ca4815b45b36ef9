//! [`SessionGuard`]: keeps the promise of the handshake for as long as the
//! socket lives: closes it when the credential expires, accepts in-band
//! refreshes, and closes it when the session is revoked.

use std::any::TypeId;
use std::fmt;
use std::future::{Future, poll_fn};
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, SystemTime};

use futures_util::{Sink, SinkExt, Stream};
use http::request::Parts;
use tokio::time::{Instant, Sleep};

use super::close::Closing;
use super::first_message::rejection_close;
use super::{
    AuthMessages, AuthSocket, CLOSE_TIMEOUT, CloseCodes, Frame, JsonMessages, Parsed, Registration,
    Revocations, SocketError,
};
use crate::authenticator::Authenticator;
use crate::credential::{Carrier, Credential};
use crate::error::AuthError;
use crate::identity::Identity;

/// An authenticator for guards that accept no refresh
/// ([`SessionGuard::expiry_only`]): no message is read as a refresh, every
/// message (`{"type":"refresh",...}` included, of any size) reaches the
/// application.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoRefresh;

impl Authenticator for NoRefresh {
    async fn authenticate(
        &self,
        _credential: &Credential,
        _request: &Parts,
    ) -> Result<Identity, AuthError> {
        Err(AuthError::NotApplicable)
    }
}

/// Why a [`GuardedSocket`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndReason {
    /// The identity expired; closed with [`CloseCodes::expired_code`].
    Expired,
    /// The connection was revoked; closed with [`CloseCodes::revoked_code`].
    Revoked,
    /// The connection was closed to make room for a newer one of its
    /// subject at the per-subject cap
    /// ([`OverCap::CloseOldest`](crate::socket::OverCap::CloseOldest));
    /// closed with [`CloseCodes::replaced_code`].
    Replaced,
    /// A refresh carried another subject's credential; closed with
    /// [`CloseCodes::forbidden_code`].
    RefreshForOtherSubject,
    /// A refresh carried an invalid or malformed credential; closed with
    /// the code for the authenticator's answer.
    RefreshRejected,
    /// The peer closed the connection.
    PeerClosed,
    /// The application closed it with [`GuardedSocket::close`].
    Closed,
    /// The peer sent a message or a frame over the socket's size limit;
    /// the connection was failed with 1009.
    TooBig,
    /// The socket failed (a protocol violation, failed with 1002 or 1007,
    /// or an I/O error).
    Error,
}

impl EndReason {
    /// A short name for logs and metrics: `expired`, `revoked`,
    /// `refresh_other_subject`, `refresh_rejected`, `peer`, `application`,
    /// `too_big`, `error`, `replaced` (the `reason` label of
    /// `tower_ws_auth_closes_total`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Expired => "expired",
            Self::Revoked => "revoked",
            Self::RefreshForOtherSubject => "refresh_other_subject",
            Self::RefreshRejected => "refresh_rejected",
            Self::PeerClosed => "peer",
            Self::Closed => "application",
            Self::TooBig => "too_big",
            Self::Error => "error",
            Self::Replaced => "replaced",
        }
    }
}

/// Configuration of the post-handshake guard; [`wrap`](Self::wrap) a socket
/// with it.
///
/// * **Expiry**: when the identity's [`expires_at`](Identity::expires_at)
///   passes, the socket is closed with 4002 "session expired"; optionally a
///   warning message goes out [`warn_before`](Self::warn_before) it.
/// * **In-band refresh**: a refresh message (by default
///   `{"type":"refresh","token":"..."}`) is checked by the authenticator; a
///   credential for the same subject replaces the identity and moves the
///   deadline, one for another subject closes the socket with 4003, an
///   invalid one with 4001. Refresh messages never reach the application.
/// * **Revocation**: with [`revocations`](Self::revocations) the connection
///   is registered and closed (4003 by default) when revoked.
///
/// ```no_run
/// use axum::extract::ws::{Message, WebSocket};
/// use tower_ws_auth::{Identity, socket::{SessionGuard, Revocations}, api_key::ApiKeyAuthenticator};
///
/// async fn chat(socket: WebSocket, identity: Identity, guard: SessionGuard<ApiKeyAuthenticator>) {
///     let mut socket = guard.wrap(socket, identity);
///     while let Some(Ok(message)) = socket.recv().await {
///         if let Message::Text(text) = message {
///             if socket.send(Message::Text(text)).await.is_err() { break }
///         }
///     }
///     // socket.end_reason() says why: expiry, revocation, peer close...
/// }
/// ```
pub struct SessionGuard<A = NoRefresh, M = JsonMessages> {
    authenticator: Arc<A>,
    messages: Arc<M>,
    // Shared: every guarded socket holds a copy of its guard, and an idle
    // connection should hold as little as possible.
    settings: Arc<Settings>,
}

/// A guard's settings other than the authenticator and the messages.
#[derive(Debug, Clone)]
struct Settings {
    codes: CloseCodes,
    warn_before: Option<Duration>,
    max_refresh_bytes: usize,
    /// `false` for [`NoRefresh`]: no message is read as a refresh.
    refreshes: bool,
    close_timeout: Duration,
    revocations: Option<Revocations>,
    audit: Option<crate::audit::AuditHook>,
}

impl<A, M> Clone for SessionGuard<A, M> {
    fn clone(&self) -> Self {
        Self {
            authenticator: self.authenticator.clone(),
            messages: self.messages.clone(),
            settings: self.settings.clone(),
        }
    }
}

impl<A, M> fmt::Debug for SessionGuard<A, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionGuard")
            .field("codes", &self.settings.codes)
            .field("warn_before", &self.settings.warn_before)
            .field("revocations", &self.settings.revocations)
            .finish_non_exhaustive()
    }
}

impl SessionGuard {
    /// A guard that enforces expiry (and revocation, once configured) but
    /// accepts no in-band refresh.
    pub fn expiry_only() -> Self {
        Self::new(NoRefresh)
    }
}

impl<A: Authenticator> SessionGuard<A> {
    /// A guard whose refreshes are checked by `authenticator` (use the one
    /// that authenticated the upgrade).
    pub fn new(authenticator: A) -> Self {
        Self {
            authenticator: Arc::new(authenticator),
            messages: Arc::new(JsonMessages),
            settings: Arc::new(Settings {
                codes: CloseCodes::default(),
                warn_before: None,
                max_refresh_bytes: 16 * 1024,
                refreshes: TypeId::of::<A>() != TypeId::of::<NoRefresh>(),
                close_timeout: CLOSE_TIMEOUT,
                revocations: None,
                audit: None,
            }),
        }
    }
}

impl<A: Authenticator, M: AuthMessages> SessionGuard<A, M> {
    /// Sends [`AuthMessages::expiring`] this long before the identity
    /// expires, so the client can refresh in time.
    #[must_use]
    pub fn warn_before(mut self, lead: Duration) -> Self {
        Arc::make_mut(&mut self.settings).warn_before = Some(lead);
        self
    }

    /// The close codes.
    #[must_use]
    pub fn codes(mut self, codes: CloseCodes) -> Self {
        Arc::make_mut(&mut self.settings).codes = codes;
        self
    }

    /// Registers guarded connections in `registry`, so they can be revoked.
    #[must_use]
    pub fn revocations(mut self, registry: Revocations) -> Self {
        Arc::make_mut(&mut self.settings).revocations = Some(registry);
        self
    }

    /// The size cap of a refresh message. Default 16 KiB. A text message
    /// over it is never read as a refresh: it goes to the application
    /// unread, so that no message costs the guard more work than this cap,
    /// whatever its size.
    #[must_use]
    pub fn max_refresh_bytes(mut self, bytes: NonZeroUsize) -> Self {
        Arc::make_mut(&mut self.settings).max_refresh_bytes = bytes.get();
        self
    }

    /// How long a server-initiated close (expiry, revocation, a refused
    /// refresh, [`GuardedSocket::close`], `Sink::close`, a protocol error)
    /// may take, its Close sent and the peer's awaited, before the socket
    /// is dropped, and how long the reply to the peer's Close may take to
    /// go out. Default 3 s.
    #[must_use]
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        Arc::make_mut(&mut self.settings).close_timeout = timeout;
        self
    }

    /// Calls `hook` when a guarded socket ends (`event` `socket_end`, with
    /// the [`EndReason`], the subject and the peer address of the request
    /// given with [`GuardedSocket::with_request`]), inline, on the task
    /// reading the socket: it must not block, and cannot change anything; a
    /// panic in it is caught and logged. See [`audit`](crate::audit). A
    /// socket dropped while open (or taken back with
    /// [`into_inner`](GuardedSocket::into_inner)) has no end to report.
    #[must_use]
    pub fn audit<F>(mut self, hook: F) -> Self
    where
        F: Fn(&crate::audit::AuditEvent<'_>) + Send + Sync + 'static,
    {
        Arc::make_mut(&mut self.settings).audit = Some(crate::audit::AuditHook::new(hook));
        self
    }

    /// Another message format.
    pub fn messages<M2: AuthMessages>(self, messages: M2) -> SessionGuard<A, M2> {
        SessionGuard {
            authenticator: self.authenticator,
            messages: Arc::new(messages),
            settings: self.settings,
        }
    }

    /// Guards `socket`, authenticated as `identity`.
    pub fn wrap<S: AuthSocket>(&self, socket: S, identity: Identity) -> GuardedSocket<S, A, M> {
        let registration = self
            .settings
            .revocations
            .as_ref()
            .map(|r| r.register(&identity));
        let mut guarded = GuardedSocket {
            socket,
            guard: self.clone(),
            identity,
            request: None,
            deadline: None,
            warn_at: None,
            timer: None,
            registration,
            outgoing: None,
            unflushed: false,
            phase: Phase::Open,
            ended: None,
            open: crate::observe::OpenSocket::open(),
        };
        guarded.schedule();
        guarded
    }
}

/// A socket under a [`SessionGuard`]: a `Stream` of application messages
/// (`Result<Message, SocketError>`, the library's message type) and a
/// `Sink` of messages to send, or the same through [`recv`](Self::recv)
/// and [`send`](Self::send). The guard runs while the socket is read
/// (polled as a `Stream`): expiry and its warning, revocation, refreshes
/// (answered, never delivered) and the closing handshake; keep reading it
/// (as every WebSocket application does, or [`split`](Self::split) it).
///
/// Every close completes the closing handshake of RFC 6455 before the
/// stream ends: the peer's Close is answered (and flushed) before it is
/// delivered; a close of the guard's own (expiry, revocation, a refused
/// refresh, [`close`](Self::close), `Sink::close`) sends its Close, then
/// waits at most [`close_timeout`](SessionGuard::close_timeout) for the
/// peer's; a protocol error fails the connection with its code (1002,
/// 1007, 1009) the same way. Once the guard has closed the socket, sending
/// fails.
///
/// With `futures_util::{StreamExt, SinkExt}` (axum's `WebSocket` here;
/// tokio-tungstenite's `WebSocketStream` is the same):
///
/// ```no_run
/// use axum::extract::ws::{Message, WebSocket};
/// use futures_util::{SinkExt, StreamExt};
/// use tower_ws_auth::{Identity, socket::SessionGuard};
///
/// async fn echo(socket: WebSocket, identity: Identity) {
///     let mut socket = SessionGuard::expiry_only().wrap(socket, identity);
///     while let Some(Ok(message)) = socket.next().await {
///         if matches!(message, Message::Text(_)) && socket.send(message).await.is_err() {
///             break;
///         }
///     }
///     // The stream ended: socket.end_reason() says why (expiry, peer...).
/// }
/// ```
pub struct GuardedSocket<S: AuthSocket, A = NoRefresh, M = JsonMessages> {
    socket: S,
    guard: SessionGuard<A, M>,
    identity: Identity,
    // Shared with a refresh being verified; usually absent.
    request: Option<Arc<Parts>>,
    deadline: Option<Instant>,
    warn_at: Option<Instant>,
    /// The one timer, for the earlier of the expiry and its warning (a
    /// second one would add its size to every idle connection); created
    /// when first polled.
    timer: Option<Pin<Box<Sleep>>>,
    registration: Option<Registration>,
    /// A message of the guard's own (the expiry warning, a refresh's
    /// answer), sent before anything else is read.
    outgoing: Option<S::Message>,
    /// A message of the guard's own is written but not yet flushed.
    unflushed: bool,
    phase: Phase<S::Message>,
    ended: Option<EndReason>,
    /// Counted in the open-connections gauge until dropped (feature
    /// `metrics`; nothing without it).
    open: crate::observe::OpenSocket,
}

/// Where a guarded socket is. The rare states are boxed: an idle
/// connection holds only `Open`.
enum Phase<M> {
    Open,
    /// A refresh being verified; nothing is read meanwhile (expiry and
    /// revocation still apply).
    Refreshing(Box<Refreshing<M>>),
    /// Closing; `then` is what the stream yields once the handshake is
    /// over (the peer's Close, the error that failed the connection).
    Ending(Box<Ending<M>>),
    Done,
}

struct Refreshing<M> {
    verifying: Pin<Box<dyn Future<Output = Result<Identity, crate::AuthError>> + Send>>,
    /// The message that carried the refresh, delivered if the
    /// authenticator finds it is not one of its credentials.
    message: M,
}

struct Ending<M> {
    closing: Closing<M>,
    then: Option<Result<M, SocketError>>,
}

impl<S: AuthSocket, A, M> fmt::Debug for GuardedSocket<S, A, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardedSocket")
            .field("identity", &self.identity)
            .field("deadline", &self.deadline)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

// Nothing of it is pinned (the timer and the refresh are boxed): moving it
// between polls is fine, as for the library's socket (`AuthSocket: Unpin`).
impl<S: AuthSocket, A, M> Unpin for GuardedSocket<S, A, M> {}

impl<S: AuthSocket, A, M> GuardedSocket<S, A, M> {
    /// Why the socket ended, once it has (set when its closing begins).
    pub fn end_reason(&self) -> Option<EndReason> {
        self.ended
    }

    /// `false` once the socket is closing or closed.
    pub(crate) fn is_open(&self) -> bool {
        matches!(self.phase, Phase::Open | Phase::Refreshing(_))
    }

    /// `true` once the closing handshake is over and the stream has ended.
    pub(crate) fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Done)
    }
}

/// `at` as a tokio instant, measured from now.
fn instant_of(at: SystemTime) -> Instant {
    let left = at
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO);
    let now = Instant::now();
    // Far-future expiries (beyond what the clock can add) never fire.
    now.checked_add(left)
        .unwrap_or_else(|| now + Duration::from_secs(60 * 60 * 24 * 365 * 30))
}

impl<S, A, M> GuardedSocket<S, A, M>
where
    S: AuthSocket,
    A: Authenticator,
    M: AuthMessages,
{
    /// Gives the authenticator the upgrade request's head for refreshes
    /// (by default it gets an empty one).
    #[must_use]
    pub fn with_request(mut self, request: Parts) -> Self {
        self.request = Some(Arc::new(request));
        self
    }

    fn schedule(&mut self) {
        self.deadline = self.identity.expires_at().map(instant_of);
        self.warn_at = match (self.deadline, self.guard.settings.warn_before) {
            (Some(deadline), Some(lead)) => Some(deadline.checked_sub(lead).unwrap_or(deadline)),
            _ => None,
        };
    }

    /// The current identity (replaced by each successful refresh).
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The next application message. `None` once the socket has ended: see
    /// [`end_reason`](Self::end_reason). The same as `StreamExt::next`.
    ///
    /// Cancel safe: the guard's state lives in the socket, not in this
    /// future (a refresh being verified goes on at the next call).
    pub async fn recv(&mut self) -> Option<Result<S::Message, SocketError>> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Sends a message, flushed. The same as `SinkExt::send`.
    ///
    /// # Errors
    ///
    /// If the socket fails, or once the guard has closed it.
    pub async fn send(&mut self, message: S::Message) -> Result<(), SocketError> {
        SinkExt::send(self, message).await
    }

    /// Sends a text message.
    ///
    /// # Errors
    ///
    /// If the socket fails, or once the guard has closed it.
    pub async fn send_text(&mut self, text: impl Into<String>) -> Result<(), SocketError> {
        self.send(S::text(text.into())).await
    }

    /// Closes the socket with `code` (1008 if it may not be sent) and
    /// `reason`, and completes the closing handshake (see
    /// [`SessionGuard::close_timeout`]). If the socket is already closing,
    /// waits for that close to end.
    pub async fn close(&mut self, code: u16, reason: &str) {
        if self.is_open() {
            self.end(EndReason::Closed, code, reason);
        }
        poll_fn(|cx| self.poll_ending(cx)).await;
    }

    /// The socket, without the guard (and out of the registry).
    pub fn into_inner(self) -> S {
        self.socket
    }

    /// Records why the socket ended (counted in `closes_total` the first
    /// time).
    fn set_ended(&mut self, reason: EndReason) {
        let first = self.ended.replace(reason).is_none();
        self.open.end(reason.as_str());
        if let (true, Some(hook)) = (first, &self.guard.settings.audit) {
            hook.call(&crate::audit::AuditEvent {
                event: "socket_end",
                outcome: "ended",
                reason: reason.as_str(),
                carrier: "none",
                subject: Some(self.identity.subject()),
                peer: self
                    .request
                    .as_ref()
                    .and_then(|r| crate::audit::peer(&r.extensions)),
            });
        }
    }

    /// Begins the guard's close.
    fn end(&mut self, reason: EndReason, code: u16, text: &str) {
        tracing::debug!(target: "tower_ws_auth", subject = self.identity.subject(), close_code = code, end = ?reason, "closing guarded socket");
        self.set_ended(reason);
        self.begin(
            Closing::close::<S>(code, text, self.guard.settings.close_timeout),
            None,
        );
    }

    /// Closes with `closing`, then yields `then`.
    fn begin(
        &mut self,
        closing: Closing<S::Message>,
        then: Option<Result<S::Message, SocketError>>,
    ) {
        self.registration = None;
        self.timer = None;
        self.outgoing = None;
        self.phase = Phase::Ending(Box::new(Ending { closing, then }));
    }

    /// Drives a close in progress; `Ready` when there is none (any more).
    fn poll_ending(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.phase {
            Phase::Ending(ending) => ending.closing.poll(&mut self.socket, cx),
            _ => Poll::Ready(()),
        }
    }

    /// The guard's timer, if it fired: `Some(true)` for the warning,
    /// `Some(false)` for the expiry.
    fn poll_timer(&mut self, cx: &mut Context<'_>) -> Option<bool> {
        // When the warning and the expiry coincide, the expiry wins.
        let (at, warn) = match (self.deadline, self.warn_at) {
            (Some(deadline), Some(warn)) if warn < deadline => (warn, true),
            (Some(deadline), _) => (deadline, false),
            (None, Some(warn)) => (warn, true),
            (None, None) => {
                self.timer = None;
                return None;
            }
        };
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
        if timer.deadline() != at {
            timer.as_mut().reset(at);
        }
        timer.as_mut().poll(cx).is_ready().then_some(warn)
    }

    /// Writes the guard's own message, if any: `Pending` while the library
    /// cannot take it; its flush does not hold anything up.
    fn poll_outgoing(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), SocketError>> {
        let mut socket = Pin::new(&mut self.socket);
        if self.outgoing.is_some() {
            ready!(socket.as_mut().poll_ready(cx)).map_err(SocketError::new)?;
            if let Some(message) = self.outgoing.take() {
                socket
                    .as_mut()
                    .start_send(message)
                    .map_err(SocketError::new)?;
            }
            self.unflushed = true;
        }
        if self.unflushed {
            match socket.poll_flush(cx) {
                Poll::Ready(Ok(())) => self.unflushed = false,
                Poll::Ready(Err(error)) => return Poll::Ready(Err(SocketError::new(error))),
                Poll::Pending => {}
            }
        }
        Poll::Ready(Ok(()))
    }

    /// The socket failed while the guard wrote: it ends with `error`.
    fn failed(&mut self, error: SocketError) -> Poll<Option<Result<S::Message, SocketError>>> {
        self.set_ended(EndReason::Error);
        self.registration = None;
        self.timer = None;
        self.phase = Phase::Done;
        Poll::Ready(Some(Err(error)))
    }

    /// The state machine behind `recv` and `Stream::poll_next`.
    pub(crate) fn poll_recv(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<S::Message, SocketError>>> {
        loop {
            match &mut self.phase {
                Phase::Done => return Poll::Ready(None),
                Phase::Ending(ending) => {
                    ready!(ending.closing.poll(&mut self.socket, cx));
                    let then = ending.then.take();
                    self.phase = Phase::Done;
                    return Poll::Ready(then);
                }
                Phase::Open | Phase::Refreshing(_) => {}
            }
            let codes = self.guard.settings.codes;
            // Revocation and expiry first, whatever else is going on.
            if let Some(registration) = &self.registration
                && registration.poll_revoked(cx).is_ready()
            {
                if registration.is_replaced() {
                    self.end(EndReason::Replaced, codes.replaced_code(), "replaced");
                } else {
                    self.end(EndReason::Revoked, codes.revoked_code(), "revoked");
                }
                continue;
            }
            let timer = self.poll_timer(cx);
            // The warning waits for the guard's previous message.
            let warning_waits = timer == Some(true) && self.outgoing.is_some();
            match timer {
                Some(false) => {
                    self.end(EndReason::Expired, codes.expired_code(), "session expired");
                    continue;
                }
                Some(true) if !warning_waits => {
                    self.warn_at = None;
                    let remaining = self
                        .deadline
                        .map(|d| d.saturating_duration_since(Instant::now()))
                        .unwrap_or_default();
                    self.outgoing = self
                        .guard
                        .messages
                        .expiring(&self.identity, remaining)
                        .map(S::text);
                    continue;
                }
                _ => {}
            }
            if let Err(error) = ready!(self.poll_outgoing(cx)) {
                return self.failed(error);
            }
            if warning_waits {
                continue;
            }
            if let Phase::Refreshing(refreshing) = &mut self.phase {
                let verified = ready!(refreshing.verifying.as_mut().poll(cx));
                if let Phase::Refreshing(refreshing) =
                    std::mem::replace(&mut self.phase, Phase::Open)
                    && let Some(message) = self.refreshed(verified, refreshing.message)
                {
                    return Poll::Ready(Some(Ok(message)));
                }
                continue;
            }
            let message = match ready!(Pin::new(&mut self.socket).poll_next(cx)) {
                None => {
                    self.set_ended(EndReason::PeerClosed);
                    self.registration = None;
                    self.timer = None;
                    self.phase = Phase::Done;
                    return Poll::Ready(None);
                }
                Some(Err(error)) => {
                    self.set_ended(match S::failure_code(&error) {
                        Some(1009) => EndReason::TooBig,
                        _ => EndReason::Error,
                    });
                    match Closing::fail::<S>(&error, self.guard.settings.close_timeout) {
                        Some(closing) => {
                            self.begin(closing, Some(Err(SocketError::new(error))));
                            continue;
                        }
                        None => return self.failed(SocketError::new(error)),
                    }
                }
                Some(Ok(message)) => message,
            };
            let settings = &self.guard.settings;
            // Without a refresh authenticator nothing is parsed; a message
            // over the refresh cap is never a refresh (it is not read
            // either): the work on any message is bounded by the cap,
            // whatever its size.
            let parsed = match S::frame(&message) {
                Frame::Close(_) => {
                    // Answered (and flushed) before it is delivered.
                    let timeout = settings.close_timeout;
                    self.set_ended(EndReason::PeerClosed);
                    self.begin(Closing::answer(timeout), Some(Ok(message)));
                    continue;
                }
                Frame::Text(text)
                    if settings.refreshes && text.len() <= settings.max_refresh_bytes =>
                {
                    self.guard.messages.parse_refresh(text)
                }
                _ => Parsed::Other,
            };
            match parsed {
                Parsed::Other => return Poll::Ready(Some(Ok(message))),
                Parsed::Malformed => {
                    let code = codes.malformed_code();
                    self.end(
                        EndReason::RefreshRejected,
                        code,
                        "malformed refresh message",
                    );
                }
                Parsed::Credential(token) => {
                    self.phase = Phase::Refreshing(Box::new(Refreshing {
                        verifying: self.verify(token),
                        message,
                    }));
                }
            }
        }
    }

    /// The refresh `token`, being verified.
    fn verify(
        &self,
        token: String,
    ) -> Pin<Box<dyn Future<Output = Result<Identity, crate::AuthError>> + Send>> {
        let authenticator = self.guard.authenticator.clone();
        let request = self.request.clone();
        Box::pin(async move {
            let credential = Credential::new(Carrier::Message, token);
            let empty;
            let request = match &request {
                Some(parts) => &**parts,
                None => {
                    empty = http::Request::new(()).into_parts().0;
                    &empty
                }
            };
            authenticator.authenticate(&credential, request).await
        })
    }

    /// Acts on a verified refresh; `Some` for a message the authenticator
    /// found was not one of its credentials (the application's).
    fn refreshed(
        &mut self,
        verified: Result<Identity, AuthError>,
        message: S::Message,
    ) -> Option<S::Message> {
        match verified {
            Ok(identity) if identity.subject() == self.identity.subject() => {
                tracing::debug!(target: "tower_ws_auth", outcome = "refreshed", subject = identity.subject(), "socket credential refreshed");
                self.identity = identity;
                if let Some(registration) = &self.registration {
                    registration.update(&self.identity);
                }
                self.schedule();
                self.outgoing = self.guard.messages.refreshed(&self.identity).map(S::text);
            }
            Ok(_) => {
                tracing::debug!(target: "tower_ws_auth", outcome = "rejected", subject = self.identity.subject(), "refresh for another subject");
                let code = self.guard.settings.codes.forbidden_code();
                self.end(EndReason::RefreshForOtherSubject, code, "forbidden");
            }
            Err(AuthError::NotApplicable) => return Some(message),
            Err(AuthError::Unavailable { .. }) => {
                tracing::warn!(target: "tower_ws_auth", subject = self.identity.subject(), "refresh not verified: backend unavailable");
                self.outgoing = self.guard.messages.refresh_failed().map(S::text);
            }
            Err(error) => {
                tracing::debug!(target: "tower_ws_auth", outcome = "rejected", subject = self.identity.subject(), reason = %error, "refresh rejected");
                let (code, reason) = rejection_close(&self.guard.settings.codes, &error);
                self.end(EndReason::RefreshRejected, code, reason);
            }
        }
        None
    }

    /// `Sink::poll_ready`: the guard's own message goes first; fails once
    /// the socket is closing.
    pub(crate) fn poll_send_ready(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), SocketError>> {
        if !self.is_open() {
            return Poll::Ready(Err(SocketError::closed()));
        }
        if let Err(error) = ready!(self.poll_outgoing(cx)) {
            let _ = self.failed(SocketError::closed());
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut self.socket)
            .poll_ready(cx)
            .map_err(SocketError::new)
    }

    /// `Sink::start_send`.
    pub(crate) fn start_send_message(&mut self, message: S::Message) -> Result<(), SocketError> {
        if !self.is_open() {
            return Err(SocketError::closed());
        }
        Pin::new(&mut self.socket)
            .start_send(message)
            .map_err(SocketError::new)
    }

    /// `Sink::poll_flush`.
    pub(crate) fn poll_send_flush(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), SocketError>> {
        if self.is_done() {
            return Poll::Ready(Err(SocketError::closed()));
        }
        Pin::new(&mut self.socket)
            .poll_flush(cx)
            .map_err(SocketError::new)
    }

    /// `Sink::poll_close`: the guard's close with 1000, handshake included.
    pub(crate) fn poll_send_close(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), SocketError>> {
        if self.is_open() {
            self.end(EndReason::Closed, 1000, "");
        }
        ready!(self.poll_ending(cx));
        Poll::Ready(Ok(()))
    }
}

impl<S, A, M> Stream for GuardedSocket<S, A, M>
where
    S: AuthSocket,
    A: Authenticator,
    M: AuthMessages,
{
    type Item = Result<S::Message, SocketError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_recv(cx)
    }
}

impl<S, A, M> Sink<S::Message> for GuardedSocket<S, A, M>
where
    S: AuthSocket,
    A: Authenticator,
    M: AuthMessages,
{
    type Error = SocketError;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), SocketError>> {
        self.get_mut().poll_send_ready(cx)
    }

    fn start_send(self: Pin<&mut Self>, message: S::Message) -> Result<(), SocketError> {
        self.get_mut().start_send_message(message)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), SocketError>> {
        self.get_mut().poll_send_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), SocketError>> {
        self.get_mut().poll_send_close(cx)
    }
}
