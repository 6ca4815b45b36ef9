//! WebSocket close codes used after the handshake, in one place, and the
//! closing handshake of RFC 6455 as one poll-based state machine.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::time::Sleep;

use super::AuthSocket;

/// How many messages a closing socket drains in one poll before it lets
/// other tasks run (a peer that keeps sending cannot hold a worker).
const DRAIN_BUDGET: usize = 64;

/// How long a close waits, at most, once the library can no longer read
/// (tokio-tungstenite, and so axum, end the stream after any error) or
/// must not (after 1009), before the socket is dropped. The peer's unread
/// bytes make the drop a TCP reset, which discards what is still unsent,
/// and our Close can be unsent: held by Nagle's algorithm behind data the
/// peer has not yet acknowledged. Longer than the longest delayed
/// acknowledgement (200 ms on Linux), so the Close is out before the drop;
/// within the close timeout. (Autobahn's cases 4.1.5 and 4.2.5, a text, a
/// reserved opcode and a ping, ended that way in two runs out of three
/// without it.)
const UNREAD_LINGER: Duration = Duration::from_millis(250);

/// The closing handshake (RFC 6455 7.1.2-7.1.4, 7.1.7), one for every
/// close of this crate: the guard's (expiry, revocation, refused refresh,
/// an application's close), first-message authentication's, the answer to
/// the peer's Close and the failure after a protocol error.
///
/// Sends its Close (if any) and flushes it, then reads and drops what the
/// peer still sends until the library reports the end of the connection:
/// after the peer's Close, once the library has answered it (the libraries
/// queue that answer when they read the peer's Close, and write it on the
/// next flush or read). The whole handshake is bounded by one deadline: a
/// peer that does not read cannot hold it any more than one that does not
/// answer.
pub(crate) struct Closing<M> {
    /// The Close still to be queued.
    frame: Option<M>,
    flushed: bool,
    /// Whether to read until the end after the flush (not after 1009: the
    /// library may be inside an oversized frame, and reading on would
    /// buffer it).
    drain: bool,
    /// The peer's Close was read (or is being answered).
    peer_closed: bool,
    /// The library stopped reading before the peer's Close: waiting out
    /// [`UNREAD_LINGER`].
    lingering: bool,
    done: bool,
    deadline: Pin<Box<Sleep>>,
}

impl<M> Closing<M> {
    fn new(frame: Option<M>, drain: bool, timeout: Duration) -> Self {
        Self {
            peer_closed: frame.is_none(),
            frame,
            flushed: false,
            drain,
            lingering: false,
            done: false,
            deadline: Box::pin(tokio::time::sleep(timeout)),
        }
    }

    /// Closes with `code` (1008 if it may not be sent, see
    /// [`is_sendable_close_code`]) and `reason` (cut to 123 bytes), then
    /// waits for the peer's Close; at most `timeout` in all.
    pub(crate) fn close<S: AuthSocket<Message = M>>(
        code: u16,
        reason: &str,
        timeout: Duration,
    ) -> Self {
        let code = if is_sendable_close_code(code) {
            code
        } else {
            1008
        };
        Self::new(
            Some(S::close_frame(code, close_reason(reason))),
            true,
            timeout,
        )
    }

    /// Fails the connection after `error`, the library's report of a peer
    /// that broke the protocol (RFC 6455 7.1.7): a Close with the code
    /// [`AuthSocket::failure_code`] gives, then (except after 1009) the wait
    /// for the peer's. `None` when the connection itself is gone: no Close
    /// can go out.
    pub(crate) fn fail<S: AuthSocket<Message = M>>(
        error: &S::WsError,
        timeout: Duration,
    ) -> Option<Self> {
        let code = S::failure_code(error)?;
        tracing::debug!(target: "tower_ws_auth", close_code = code, "failing the websocket connection");
        let reason = match code {
            1007 => "invalid payload data",
            1009 => "message too big",
            _ => "protocol error",
        };
        Some(Self::new(
            Some(S::close_frame(code, reason)),
            code != 1009,
            timeout,
        ))
    }

    /// After the peer's Close: the library's answer flushed, then the end
    /// of the connection; at most `timeout`.
    pub(crate) fn answer(timeout: Duration) -> Self {
        Self::new(None, true, timeout)
    }

    /// Drives the handshake on `socket`; `Ready` once it is over, and from
    /// then on.
    pub(crate) fn poll<S: AuthSocket<Message = M>>(
        &mut self,
        socket: &mut S,
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        if self.done {
            return Poll::Ready(());
        }
        let polled = self.poll_steps(socket, cx);
        if polled.is_ready() {
            self.done = true;
        }
        polled
    }

    fn poll_steps<S: AuthSocket<Message = M>>(
        &mut self,
        socket: &mut S,
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        if self.deadline.as_mut().poll(cx).is_ready() || self.lingering {
            return self.deadline.as_mut().poll(cx);
        }
        let mut socket = Pin::new(socket);
        if self.frame.is_some() {
            if ready!(socket.as_mut().poll_ready(cx)).is_err() {
                return Poll::Ready(());
            }
            if let Some(frame) = self.frame.take()
                && socket.as_mut().start_send(frame).is_err()
            {
                return Poll::Ready(());
            }
        }
        if !self.flushed {
            // An error here is the end (tungstenite reports the connection
            // closed once a server has written its answer to the peer's
            // Close).
            if ready!(socket.as_mut().poll_flush(cx)).is_err() {
                return Poll::Ready(());
            }
            self.flushed = true;
        }
        if !self.drain {
            return self.linger(cx);
        }
        for _ in 0..DRAIN_BUDGET {
            match ready!(socket.as_mut().poll_next(cx)) {
                None => return self.linger(cx),
                // The library ends the stream on the next read, once the
                // handshake is complete.
                Some(Ok(message)) => {
                    if matches!(S::frame(&message), super::Frame::Close(_)) {
                        self.peer_closed = true;
                    }
                }
                // After an error, tokio-tungstenite's stream ends.
                Some(Err(_)) => return self.linger(cx),
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// The library reads no more: done if the peer's Close was read,
    /// otherwise wait out [`UNREAD_LINGER`] (within the deadline) so that
    /// the peer can read our Close before the drop.
    fn linger(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.peer_closed {
            return Poll::Ready(());
        }
        self.lingering = true;
        let linger = tokio::time::Instant::now() + UNREAD_LINGER;
        if linger < self.deadline.deadline() {
            self.deadline.as_mut().reset(linger);
        }
        self.deadline.as_mut().poll(cx)
    }

    /// Runs the handshake to its end.
    pub(crate) async fn run<S: AuthSocket<Message = M>>(mut self, socket: &mut S) {
        poll_fn(|cx| self.poll(socket, cx)).await;
    }
}

/// `true` for a code an endpoint may send in a close frame: 1000-1003,
/// 1007-1014 and 3000-4999. Never 1004, 1005, 1006 or 1015 (reserved or
/// meaningful only locally).
pub fn is_sendable_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// `reason` cut to at most 123 bytes (the limit of a close frame) at a
/// character boundary.
///
/// ```
/// use tower_ws_auth::socket::close_reason;
///
/// assert_eq!(close_reason("session expired"), "session expired");
/// assert_eq!(close_reason(&"é".repeat(100)).len(), 122);
/// ```
pub fn close_reason(reason: &str) -> &str {
    if reason.len() <= 123 {
        return reason;
    }
    let mut end = 123;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason.get(..end).unwrap_or_default()
}

/// The close codes sent after the handshake.
///
/// | situation | default | `graphql_ws()` | npm `graphql-ws` client on it |
/// |---|---|---|---|
/// | unauthorized: invalid credential, message before auth | 4001 | 4403 | retries |
/// | malformed auth message | 4001 | 4400 | stops (fatal) |
/// | session expired | 4002 | 4401 | stops (fatal) |
/// | forbidden: refresh for another subject, missing scope | 4003 | 4403 | retries |
/// | revoked | 4003 | 4403 | retries |
/// | replaced: the subject's oldest socket, closed for a new one at the per-subject cap ([`OverCap::CloseOldest`](crate::socket::OverCap::CloseOldest)) | 4009 | 4409 | stops (fatal) |
/// | auth timeout | 4008 | 4408 | retries |
/// | auth message too big | 1009 | 1009 | stops (fatal) |
/// | too many connections awaiting auth | 1013 | 4429 | stops (fatal) |
/// | verifier backend unavailable | 1013 | 1013 | retries |
///
/// The graphql-ws preset follows the reference server of the npm
/// `graphql-ws` library: a refused `connection_init` (its `onConnect`
/// returning `false`) is 4403, a malformed message 4400, no
/// `connection_init` in time 4408. Its client treats 4400, 4401, 4406,
/// 4409, 4429, 4500 and every 1xxx code but 1000, 1001, 1005, 1006, 1012,
/// 1013 and 1014 as fatal and stops at once; it retries 4403, 4408, 1013
/// and the others up to its `retryAttempts`. So
/// an expired session closes with 4401: the client stops instead of
/// retrying with the expired token (get a fresh one and connect again);
/// a refused token is refused with 4403 on every retry; a socket replaced
/// by a newer one of its subject closes with 4409, so that client stops
/// rather than reconnecting and replacing another of the subject's sockets
/// in turn.
///
/// ```
/// use tower_ws_auth::socket::CloseCodes;
///
/// // Revoked clients reconnect and re-authenticate instead of giving up.
/// let codes = CloseCodes::default().revoked(1001)?;
/// assert_eq!(codes.expired_code(), 4002);
/// assert_eq!(CloseCodes::graphql_ws().expired_code(), 4401);
/// assert!(CloseCodes::default().revoked(1006).is_err(), "1006 is never sent");
/// # Ok::<(), tower_ws_auth::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseCodes {
    unauthorized: u16,
    malformed: u16,
    expired: u16,
    forbidden: u16,
    revoked: u16,
    replaced: u16,
    timeout: u16,
    too_big: u16,
    too_many: u16,
    unavailable: u16,
}

impl Default for CloseCodes {
    fn default() -> Self {
        Self {
            unauthorized: 4001,
            malformed: 4001,
            expired: 4002,
            forbidden: 4003,
            revoked: 4003,
            replaced: 4009,
            timeout: 4008,
            too_big: 1009,
            too_many: 1013,
            unavailable: 1013,
        }
    }
}

macro_rules! code {
    ($field:ident, $getter:ident, $what:literal) => {
        #[doc = concat!("Sets the code for ", $what, ".")]
        ///
        /// # Errors
        ///
        /// [`ConfigError::InvalidSetting`](crate::ConfigError::InvalidSetting)
        /// if the code may not be sent (see [`is_sendable_close_code`]).
        pub fn $field(mut self, code: u16) -> Result<Self, crate::ConfigError> {
            if !is_sendable_close_code(code) {
                return Err(crate::ConfigError::setting(
                    "close code",
                    "may not be sent in a Close frame (1000-1003, 1007-1014 or 3000-4999)",
                ));
            }
            self.$field = code;
            Ok(self)
        }

        #[doc = concat!("The code for ", $what, ".")]
        pub fn $getter(&self) -> u16 {
            self.$field
        }
    };
}

impl CloseCodes {
    /// The codes of the graphql-ws protocol (`graphql-transport-ws`).
    pub fn graphql_ws() -> Self {
        Self {
            unauthorized: 4403,
            malformed: 4400,
            expired: 4401,
            forbidden: 4403,
            revoked: 4403,
            replaced: 4409,
            timeout: 4408,
            too_big: 1009,
            too_many: 4429,
            unavailable: 1013,
        }
    }

    code!(
        unauthorized,
        unauthorized_code,
        "an invalid credential or a message before authentication"
    );
    code!(
        malformed,
        malformed_code,
        "a malformed authentication message"
    );
    code!(expired, expired_code, "an expired session");
    code!(
        forbidden,
        forbidden_code,
        "a forbidden refresh or a missing scope"
    );
    code!(revoked, revoked_code, "a revoked session");
    code!(
        replaced,
        replaced_code,
        "a socket closed to make room for a newer one of its subject (the per-subject cap's `OverCap::CloseOldest`)"
    );
    code!(
        timeout,
        timeout_code,
        "no authentication message before the deadline"
    );
    code!(
        too_big,
        too_big_code,
        "an authentication message over the size cap"
    );
    code!(
        too_many,
        too_many_code,
        "too many connections awaiting authentication"
    );
    code!(
        unavailable,
        unavailable_code,
        "a verifier backend that is down"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_codes_are_never_sendable() {
        for code in [0, 999, 1004, 1005, 1006, 1015, 2999, 5000] {
            assert!(!is_sendable_close_code(code), "{code}");
        }
        let all = [CloseCodes::default(), CloseCodes::graphql_ws()];
        for codes in all {
            for code in [
                codes.unauthorized,
                codes.malformed,
                codes.expired,
                codes.forbidden,
                codes.revoked,
                codes.replaced,
                codes.timeout,
                codes.too_big,
                codes.too_many,
                codes.unavailable,
            ] {
                assert!(is_sendable_close_code(code));
            }
        }
    }

    #[test]
    fn refuses_reserved_codes() {
        for code in [0, 999, 1004, 1005, 1006, 1015, 2999, 5000] {
            assert!(CloseCodes::default().revoked(code).is_err(), "{code}");
        }
        assert!(CloseCodes::default().revoked(4999).is_ok());
    }

    #[test]
    fn reasons_are_cut_at_char_boundaries() {
        let long = "ü".repeat(200);
        let cut = close_reason(&long);
        assert!(cut.len() <= 123);
        assert!(long.starts_with(cut));
    }
}
