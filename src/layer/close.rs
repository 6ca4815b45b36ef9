//! [`CloseRejections`]: refused browser upgrades answered with a `101` and
//! a Close frame, the only refusal a page's WebSocket can read.

use std::fmt;
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::time::Duration;

use futures_util::StreamExt as _;
use http::header::{
    CONNECTION, ORIGIN, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL,
    SEC_WEBSOCKET_VERSION, UPGRADE,
};
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWrite;
use tokio::sync::OwnedSemaphorePermit;

use crate::socket::pending::PendingCap;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::{CloseFrame, Utf8Bytes};
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use super::Config;
use super::check::Upgrade;
use crate::credential::{Source, echo_for_refusal};
use crate::rejection::{Rejection, RejectionKind};
use crate::socket::CloseCodes;

/// `Sec-Fetch-Mode`, sent by browsers with every request (Fetch Metadata).
const SEC_FETCH_MODE: HeaderName = HeaderName::from_static("sec-fetch-mode");

/// Frames and messages a closing connection may send us: the peer's Close
/// is 2 to 125 bytes; anything bigger ends the connection at once.
const MAX_FRAME: usize = 4096;

/// Answers a refused *browser* upgrade with a `101` followed at once by a
/// Close frame carrying the refusal's code, instead of the HTTP error;
/// pass it to
/// [`WsAuthLayer::close_rejections`](crate::WsAuthLayer::close_rejections).
/// Off unless configured.
///
/// # When to use it
///
/// A browser never shows a page the status of a refused handshake: the
/// WebSocket API reports close code 1006 and nothing else, the same as a
/// network failure. A client that reconnects on 1006 therefore retries a
/// 401 forever. With this option the page's `onclose` sees
/// 4001 (unauthorized: no, or an invalid, credential) or 4003 (forbidden:
/// Origin refused, missing scope) and can send the user to log in instead.
/// Non-browser clients, which can read the status, keep getting the HTTP
/// error with its `WWW-Authenticate` challenge.
///
/// # What is a browser upgrade
///
/// An upgrade request with an `Origin` header (browsers send it on every
/// WebSocket handshake; other clients usually do not) or with
/// `Sec-Fetch-Mode: websocket`. A client can send either header, and gets
/// nothing but the code for it: this decides the shape of a refusal, never
/// whether a request is refused.
///
/// # What the client learns
///
/// The code and nothing else: the Close frame has an empty reason, the
/// `101` carries only the handshake headers (no challenge), the inner
/// service is not called. The codes follow the kind of the
/// [`Rejection`]:
///
/// | rejection | code (default) | `graphql_ws()` |
/// |---|---|---|
/// | `MissingCredential`, `InvalidToken` | [`unauthorized_code`](CloseCodes::unauthorized_code) (4001) | 4403 |
/// | `InvalidRequest` | [`malformed_code`](CloseCodes::malformed_code) (4001) | 4400 |
/// | `InsufficientScope`, `Forbidden`, `OriginRefused` | [`forbidden_code`](CloseCodes::forbidden_code) (4003) | 4403 |
/// | `CredentialTooLarge` | [`too_big_code`](CloseCodes::too_big_code) (1009) | 1009 |
/// | `Unavailable`, `Throttled`, `TooManyConnections` | [`unavailable_code`](CloseCodes::unavailable_code) (1013) | 1013 |
///
/// # The connection
///
/// The Close is sent as soon as the `101` is written; the server then
/// waits up to [`close_timeout`](Self::close_timeout) (default 5 s) for
/// the client's Close, and shuts the connection down (a clean closing
/// handshake, RFC 6455 section 7). Each such connection holds one of
/// [`max_pending`](Self::max_pending) slots (default 256, shared by every
/// service the layer builds) until it is dropped; when all are taken, and
/// whenever the upgrade cannot be completed (a server not built on hyper,
/// no tokio runtime, a missing `Sec-WebSocket-Key`, a version other than
/// 13, only a credential entry offered as subprotocol), the HTTP error is
/// sent as without this option. The [`RejectionHandler`] is still called
/// (its response supplies the body type): its status and headers are
/// replaced, and hyper sends no body with a `101`.
///
/// Works over HTTP/1.1 and over HTTP/2 extended CONNECT (RFC 8441, where
/// the `101` is a `200`).
///
/// ```
/// use tower_ws_auth::{authenticate_fn, AuthError, CloseRejections, Identity, WsAuthLayer};
///
/// let auth = authenticate_fn(|_credential, _request| async {
///     Err::<Identity, _>(AuthError::invalid("unknown token"))
/// });
/// let layer = WsAuthLayer::new(auth)
///     .subprotocol_token()
///     .close_rejections(CloseRejections::new());
/// # let _ = layer;
/// ```
///
/// [`RejectionHandler`]: crate::RejectionHandler
#[derive(Clone)]
#[cfg_attr(docsrs, doc(cfg(feature = "close-rejections")))]
pub struct CloseRejections {
    codes: CloseCodes,
    close_timeout: Duration,
    pending: PendingCap,
}

impl fmt::Debug for CloseRejections {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CloseRejections")
            .field("codes", &self.codes)
            .field("close_timeout", &self.close_timeout)
            .field("pending", &self.pending)
            .finish()
    }
}

impl Default for CloseRejections {
    fn default() -> Self {
        Self::new()
    }
}

const DEFAULT_MAX_PENDING: NonZeroUsize = match NonZeroUsize::new(256) {
    Some(n) => n,
    None => NonZeroUsize::MIN,
};

/// How long writing the `101` and the Close frame may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

impl CloseRejections {
    /// The codes of [`CloseCodes::default`] (4001 unauthorized, 4003
    /// forbidden), a 5 s close timeout, 256 pending connections.
    pub fn new() -> Self {
        Self {
            codes: CloseCodes::default(),
            close_timeout: Duration::from_secs(5),
            pending: PendingCap::new(DEFAULT_MAX_PENDING),
        }
    }

    /// The codes of [`CloseCodes::graphql_ws`] (4403 for a refused or
    /// missing credential and for a forbidden one, 4400 malformed), the codes
    /// graphql-ws's reference server sends: a graphql-ws client stops at once
    /// on 4400 and retries 4403 up to its `retryAttempts`, each retry refused
    /// the same way.
    pub fn graphql_ws() -> Self {
        Self::new().codes(CloseCodes::graphql_ws())
    }

    /// Sets the codes, read as the table above says.
    #[must_use]
    pub fn codes(mut self, codes: CloseCodes) -> Self {
        self.codes = codes;
        self
    }

    /// How long a refused connection waits for the client's Close once its
    /// own is sent (default 5 s); it is dropped then even if none came.
    /// `Duration::ZERO` drops it as soon as the Close is sent. (Writing the
    /// `101` and the Close may take 10 s more, for a client that reads
    /// slowly.)
    #[must_use]
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// How many refused connections may be open at once, waiting for the
    /// client's Close (default 256). Beyond, refusals are HTTP errors.
    #[must_use]
    pub fn max_pending(mut self, connections: NonZeroUsize) -> Self {
        self.pending = PendingCap::new(connections);
        self
    }

    /// How many refused connections are open now.
    pub fn pending(&self) -> usize {
        self.pending.pending()
    }

    /// The code for `kind`.
    fn code(&self, kind: RejectionKind) -> u16 {
        match kind {
            RejectionKind::MissingCredential | RejectionKind::InvalidToken => {
                self.codes.unauthorized_code()
            }
            RejectionKind::InvalidRequest => self.codes.malformed_code(),
            RejectionKind::InsufficientScope
            | RejectionKind::Forbidden
            | RejectionKind::OriginRefused => self.codes.forbidden_code(),
            RejectionKind::CredentialTooLarge => self.codes.too_big_code(),
            RejectionKind::Unavailable
            | RejectionKind::Throttled
            | RejectionKind::TooManyConnections => self.codes.unavailable_code(),
        }
    }

    /// The answer to `rejection` of the upgrade whose head is `parts`: the
    /// handler's `response` turned into a `101` (a `200` over HTTP/2) with
    /// the Close frame sent once it is written, or `response` unchanged if
    /// this is not a browser upgrade or it cannot be completed.
    pub(super) fn answer<B>(
        &self,
        rejection: &Rejection,
        parts: &mut Parts,
        upgrade: Upgrade,
        config: &Config,
        response: Response<B>,
    ) -> Response<B> {
        let Some(accept) = completable(parts, upgrade) else {
            return response;
        };
        let prefix = config.sources.iter().find_map(|s| match s {
            Source::Subprotocol(carrier) => Some(carrier.prefix_str()),
            _ => None,
        });
        let Ok(protocol) = echo_for_refusal(&parts.headers, prefix, config.limits) else {
            return response;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return response;
        };
        let Some(permit) = self.pending.try_acquire() else {
            tracing::debug!(
                target: "tower_ws_auth",
                max_pending = self.pending.max().get(),
                "too many refused connections closing: answered with the HTTP error"
            );
            return response;
        };
        // Served by hyper: it left the handle to the connection.
        let Some(on_upgrade) = parts.extensions.remove::<OnUpgrade>() else {
            return response;
        };
        let code = self.code(rejection.kind());
        tracing::debug!(
            target: "tower_ws_auth",
            kind = rejection.kind().as_str(),
            code,
            "refused browser upgrade answered with a 101 and a Close frame"
        );
        runtime.spawn(close(on_upgrade, code, self.close_timeout, permit));
        switching(response, accept, protocol)
    }
}

/// `Some` if `parts` is a browser's WebSocket upgrade this layer can
/// complete: with the `Sec-WebSocket-Accept` value over HTTP/1.1, `None`
/// inside over HTTP/2 (which has none).
fn completable(parts: &Parts, upgrade: Upgrade) -> Option<Option<HeaderValue>> {
    let headers = &parts.headers;
    if !is_browser(headers) || !one_is(headers, &SEC_WEBSOCKET_VERSION, b"13") {
        return None;
    }
    match upgrade {
        Upgrade::No => None,
        // An extended CONNECT whose `:protocol` is `websocket`.
        Upgrade::Http2 => Some(None),
        Upgrade::Http1 => {
            let mut keys = headers.get_all(SEC_WEBSOCKET_KEY).iter();
            let (Some(key), None) = (keys.next(), keys.next()) else {
                return None;
            };
            let accept = HeaderValue::try_from(derive_accept_key(key.as_bytes())).ok()?;
            (parts.method == Method::GET).then_some(Some(accept))
        }
    }
}

/// An `Origin` header, or `Sec-Fetch-Mode: websocket`.
fn is_browser(headers: &HeaderMap) -> bool {
    headers.contains_key(ORIGIN) || one_is(headers, &SEC_FETCH_MODE, b"websocket")
}

/// `true` if `name` is present once, with the value `value`.
fn one_is(headers: &HeaderMap, name: &HeaderName, value: &[u8]) -> bool {
    let mut values = headers.get_all(name).iter();
    matches!((values.next(), values.next()), (Some(v), None) if v.as_bytes().trim_ascii() == value)
}

/// `response` as the upgrade's `101` (or, over HTTP/2, its `200`): the
/// handshake headers only.
fn switching<B>(
    mut response: Response<B>,
    accept: Option<HeaderValue>,
    protocol: Option<HeaderValue>,
) -> Response<B> {
    let headers = response.headers_mut();
    headers.clear();
    if let Some(accept) = accept {
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(SEC_WEBSOCKET_ACCEPT, accept);
    } else {
        *response.status_mut() = StatusCode::OK;
    }
    if let Some(protocol) = protocol {
        response
            .headers_mut()
            .insert(SEC_WEBSOCKET_PROTOCOL, protocol);
    }
    response
}

/// Once the `101` is written: sends the Close frame with `code`, waits up
/// to `timeout` for the client's Close, then shuts the connection down.
/// Holds `permit` until the end.
async fn close(on_upgrade: OnUpgrade, code: u16, timeout: Duration, permit: OwnedSemaphorePermit) {
    let _permit = permit;
    let written = tokio::time::Instant::now() + WRITE_TIMEOUT;
    // Resolves when hyper has written the response.
    let Ok(Ok(upgraded)) = tokio::time::timeout_at(written, on_upgrade).await else {
        return;
    };
    let config = WebSocketConfig::default()
        .read_buffer_size(MAX_FRAME)
        .write_buffer_size(0)
        .max_message_size(Some(MAX_FRAME))
        .max_frame_size(Some(MAX_FRAME));
    let mut socket =
        WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config)).await;
    let frame = CloseFrame {
        code: code.into(),
        reason: Utf8Bytes::from_static(""),
    };
    if let Ok(Ok(())) = tokio::time::timeout_at(written, socket.close(Some(frame))).await {
        // Whatever the client sends before its Close is read and dropped;
        // its Close ends the stream.
        let peer_closed = async { while let Some(Ok(_)) = socket.next().await {} };
        let _ = tokio::time::timeout(timeout, peer_closed).await;
    }
    let mut io = socket.into_inner();
    let shutdown = std::future::poll_fn(|cx| Pin::new(&mut io).poll_shutdown(cx));
    let _ = tokio::time::timeout(WRITE_TIMEOUT, shutdown).await;
}
