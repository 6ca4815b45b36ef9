//! [`SessionGuard`]: keeps the promise of the handshake for as long as the
//! socket lives: closes it when the credential expires, accepts in-band
//! refreshes, and closes it when the session is revoked.

use std::any::TypeId;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::request::Parts;
use tokio::time::Instant;

use super::first_message::rejection_close;
use super::{
    AuthMessages, AuthSocket, CLOSE_TIMEOUT, CloseCodes, Frame, JsonMessages, Parsed, Registration,
    Revocations, SocketError, close_within, fail, finish_close,
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
    /// The socket failed.
    Error,
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
/// use tower_ws_auth::{Identity, SessionGuard, Revocations, ApiKeyAuthenticator};
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
    pub fn max_refresh_bytes(mut self, bytes: usize) -> Self {
        Arc::make_mut(&mut self.settings).max_refresh_bytes = bytes;
        self
    }

    /// How long a server-initiated close (expiry, revocation, a refused
    /// refresh, [`GuardedSocket::close`]) waits for the peer's Close before
    /// the socket is dropped, and how long the reply to the peer's Close
    /// may take to go out. Default 3 s.
    #[must_use]
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        Arc::make_mut(&mut self.settings).close_timeout = timeout;
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
            registration,
            ended: None,
        };
        guarded.schedule();
        guarded
    }
}

/// A socket under a [`SessionGuard`]: read it with [`recv`](Self::recv),
/// which delivers application messages only and enforces expiry, refresh
/// and revocation while it waits.
pub struct GuardedSocket<S, A = NoRefresh, M = JsonMessages> {
    socket: S,
    guard: SessionGuard<A, M>,
    identity: Identity,
    // Boxed: usually absent, and inline it would add 224 bytes to every
    // idle connection.
    request: Option<Box<Parts>>,
    deadline: Option<Instant>,
    warn_at: Option<Instant>,
    registration: Option<Registration>,
    ended: Option<EndReason>,
}

impl<S, A, M> fmt::Debug for GuardedSocket<S, A, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardedSocket")
            .field("identity", &self.identity)
            .field("deadline", &self.deadline)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
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

enum Refreshed {
    Yes,
    NotApplicable,
    Closed,
    Failed(SocketError),
}

enum Event<T> {
    Revoked,
    Expired,
    Warn,
    Message(Option<Result<T, SocketError>>),
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
        self.request = Some(Box::new(request));
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

    /// Why the socket ended, once it has.
    pub fn end_reason(&self) -> Option<EndReason> {
        self.ended
    }

    /// Waits for what happens next: a revocation, the expiry or its
    /// warning, or a message. Its own future, so that only this (a
    /// revocation wait, one timer and the socket's read) is held by an
    /// idle connection's task.
    async fn next_event(&mut self) -> Event<S::Message> {
        // One timer for the earlier of the expiry and the warning (a
        // second one would add its size to every idle connection). When
        // they coincide, the expiry wins.
        let (wake_at, warn) = match (self.deadline, self.warn_at) {
            (Some(deadline), Some(warn)) if warn < deadline => (Some(warn), true),
            (Some(deadline), _) => (Some(deadline), false),
            (None, Some(warn)) => (Some(warn), true),
            (None, None) => (None, false),
        };
        let registration = self.registration.as_ref();
        let socket = &mut self.socket;
        tokio::select! {
            biased;
            () = async { if let Some(r) = registration { r.revoked().await } }, if registration.is_some() => Event::Revoked,
            () = async { if let Some(at) = wake_at { tokio::time::sleep_until(at).await } }, if wake_at.is_some() => {
                if warn { Event::Warn } else { Event::Expired }
            }
            message = socket.recv_message() => Event::Message(message),
        }
    }

    /// The next application message. `None` once the socket has ended: see
    /// [`end_reason`](Self::end_reason).
    ///
    /// Cancel safety: a message is never lost if this future is dropped
    /// while waiting; a refresh being verified when it is dropped is
    /// abandoned (the client may send it again).
    pub async fn recv(&mut self) -> Option<Result<S::Message, SocketError>> {
        loop {
            if self.ended.is_some() {
                return None;
            }
            let event = self.next_event().await;
            match event {
                // The rare paths run boxed: their futures (closing, sending,
                // verifying a refresh) would otherwise be part of this
                // future's size, held by every idle connection.
                Event::Revoked => {
                    let code = self.guard.settings.codes.revoked_code();
                    Box::pin(self.end(EndReason::Revoked, code, "revoked")).await;
                    return None;
                }
                Event::Expired => {
                    let code = self.guard.settings.codes.expired_code();
                    Box::pin(self.end(EndReason::Expired, code, "session expired")).await;
                    return None;
                }
                Event::Warn => {
                    self.warn_at = None;
                    let remaining = self
                        .deadline
                        .map(|d| d.saturating_duration_since(Instant::now()))
                        .unwrap_or_default();
                    if let Some(text) = self.guard.messages.expiring(&self.identity, remaining)
                        && let Err(error) = Box::pin(self.socket.send_message(S::text(text))).await
                    {
                        self.ended = Some(EndReason::Error);
                        return Some(Err(error));
                    }
                }
                Event::Message(None) => {
                    self.ended = Some(EndReason::PeerClosed);
                    return None;
                }
                Event::Message(Some(Err(error))) => {
                    self.ended = Some(EndReason::Error);
                    self.registration = None;
                    let timeout = self.guard.settings.close_timeout;
                    Box::pin(fail(&mut self.socket, &error, timeout)).await;
                    return Some(Err(error));
                }
                Event::Message(Some(Ok(message))) => {
                    if let Frame::Close(_) = S::frame(&message) {
                        self.ended = Some(EndReason::PeerClosed);
                        self.registration = None;
                        // Let the library send (and flush) its reply Close
                        // before the socket can be dropped.
                        let timeout = self.guard.settings.close_timeout;
                        Box::pin(finish_close(&mut self.socket, timeout)).await;
                        return Some(Ok(message));
                    }
                    let settings = &self.guard.settings;
                    // Without a refresh authenticator nothing is parsed; a
                    // message over the refresh cap is never a refresh (it is
                    // not read either): the work on any message is bounded
                    // by the cap, whatever its size.
                    let text = match S::frame(&message) {
                        Frame::Text(text)
                            if settings.refreshes && text.len() <= settings.max_refresh_bytes =>
                        {
                            text
                        }
                        _ => return Some(Ok(message)),
                    };
                    let token = match self.guard.messages.parse_refresh(text) {
                        Parsed::Other => return Some(Ok(message)),
                        Parsed::Malformed => {
                            let code = self.guard.settings.codes.malformed_code();
                            Box::pin(self.end(
                                EndReason::RefreshRejected,
                                code,
                                "malformed refresh message",
                            ))
                            .await;
                            return None;
                        }
                        Parsed::Credential(token) => token,
                    };
                    match Box::pin(self.refresh(token)).await {
                        Refreshed::Yes => {}
                        Refreshed::NotApplicable => return Some(Ok(message)),
                        Refreshed::Closed => return None,
                        Refreshed::Failed(error) => return Some(Err(error)),
                    }
                }
            }
        }
    }

    /// Verifies a refresh.
    async fn refresh(&mut self, token: String) -> Refreshed {
        let credential = Credential::new(Carrier::Message, token);
        let empty;
        let request = match &self.request {
            Some(parts) => &**parts,
            None => {
                empty = http::Request::new(()).into_parts().0;
                &empty
            }
        };
        match self
            .guard
            .authenticator
            .authenticate(&credential, request)
            .await
        {
            Ok(identity) if identity.subject() == self.identity.subject() => {
                tracing::debug!(target: "tower_ws_auth", outcome = "refreshed", subject = identity.subject(), "socket credential refreshed");
                self.identity = identity;
                if let Some(registration) = &self.registration {
                    registration.update(&self.identity);
                }
                self.schedule();
                match self.guard.messages.refreshed(&self.identity) {
                    Some(text) => self.reply(text).await,
                    None => Refreshed::Yes,
                }
            }
            Ok(_) => {
                tracing::debug!(target: "tower_ws_auth", outcome = "rejected", subject = self.identity.subject(), "refresh for another subject");
                self.end(
                    EndReason::RefreshForOtherSubject,
                    self.guard.settings.codes.forbidden_code(),
                    "forbidden",
                )
                .await;
                Refreshed::Closed
            }
            Err(AuthError::NotApplicable) => Refreshed::NotApplicable,
            Err(AuthError::Unavailable { .. }) => {
                tracing::warn!(target: "tower_ws_auth", subject = self.identity.subject(), "refresh not verified: backend unavailable");
                match self.guard.messages.refresh_failed() {
                    Some(text) => self.reply(text).await,
                    None => Refreshed::Yes,
                }
            }
            Err(error) => {
                tracing::debug!(target: "tower_ws_auth", outcome = "rejected", subject = self.identity.subject(), reason = %error, "refresh rejected");
                let (code, reason) = rejection_close(&self.guard.settings.codes, &error);
                self.end(EndReason::RefreshRejected, code, reason).await;
                Refreshed::Closed
            }
        }
    }

    async fn reply(&mut self, text: String) -> Refreshed {
        match self.socket.send_message(S::text(text)).await {
            Ok(()) => Refreshed::Yes,
            Err(error) => {
                self.ended = Some(EndReason::Error);
                Refreshed::Failed(error)
            }
        }
    }

    async fn end(&mut self, reason: EndReason, code: u16, text: &str) {
        tracing::debug!(target: "tower_ws_auth", subject = self.identity.subject(), close_code = code, end = ?reason, "closing guarded socket");
        self.ended = Some(reason);
        self.registration = None;
        close_within(
            &mut self.socket,
            code,
            text,
            self.guard.settings.close_timeout,
        )
        .await;
    }

    /// Sends a message.
    ///
    /// # Errors
    ///
    /// If the socket fails.
    pub async fn send(&mut self, message: S::Message) -> Result<(), SocketError> {
        self.socket.send_message(message).await
    }

    /// Sends a text message.
    ///
    /// # Errors
    ///
    /// If the socket fails.
    pub async fn send_text(&mut self, text: impl Into<String>) -> Result<(), SocketError> {
        self.socket.send_message(S::text(text.into())).await
    }

    /// Closes the socket with `code` and `reason`.
    pub async fn close(&mut self, code: u16, reason: &str) {
        self.end(EndReason::Closed, code, reason).await;
    }

    /// The socket, without the guard (and out of the registry).
    pub fn into_inner(self) -> S {
        self.socket
    }

    /// The socket.
    pub(crate) fn socket(&self) -> &S {
        &self.socket
    }

    /// The same guard over `f(socket)`.
    pub(crate) fn map_socket<T>(self, f: impl FnOnce(S) -> T) -> GuardedSocket<T, A, M> {
        GuardedSocket {
            socket: f(self.socket),
            guard: self.guard,
            identity: self.identity,
            request: self.request,
            deadline: self.deadline,
            warn_at: self.warn_at,
            registration: self.registration,
            ended: self.ended,
        }
    }
}
