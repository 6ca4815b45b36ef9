//! Helpers for the session tests: a real `redis-server` the test owns, an
//! HTTP client for the login routes, a WebSocket client, and a counting
//! wrapper around a real session store.
#![allow(dead_code)] // Each test file uses part of this module.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use bytes::Bytes;
use futures_util::StreamExt;
use http::header::{COOKIE, ORIGIN, SET_COOKIE};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tower_ws_auth::{
    AuthError,
    session::{SessionId, SessionRecord, SessionStore},
};

/// The origin the test apps allow.
pub const APP_ORIGIN: &str = "http://app.test";
/// An origin they do not.
pub const EVIL_ORIGIN: &str = "http://evil.test";

// ---------------------------------------------------------------- servers

/// Serves `app` on a fresh loopback port.
pub async fn serve(app: Router) -> SocketAddr {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

// ------------------------------------------------------------ HTTP client

/// A response as a test sees it.
pub struct Reply {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// The `name=value` pair of the one `Set-Cookie` the response carries,
    /// as a browser would send it back.
    pub fn cookie_pair(&self) -> String {
        let mut all = self.headers.get_all(SET_COOKIE).iter();
        let first = all.next().expect("a Set-Cookie header");
        assert!(all.next().is_none(), "one Set-Cookie header");
        first
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .trim()
            .to_owned()
    }

    /// The whole `Set-Cookie` header.
    pub fn set_cookie(&self) -> &str {
        self.headers
            .get(SET_COOKIE)
            .expect("a Set-Cookie header")
            .to_str()
            .unwrap()
    }
}

/// `POST path` with `body` (and a `Cookie` header), over a real HTTP/1.1
/// connection.
pub async fn http_post(addr: SocketAddr, path: &str, body: &str, cookie: Option<&str>) -> Reply {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut request = Request::post(path)
        .header(http::header::HOST, addr.to_string())
        .header(ORIGIN, APP_ORIGIN);
    if let Some(cookie) = cookie {
        request = request.header(COOKIE, cookie);
    }
    let request = request
        .body(Full::new(Bytes::copy_from_slice(body.as_bytes())))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let (parts, body) = response.into_parts();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

// ------------------------------------------------------- WebSocket client

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens `ws://addr/ws` with the given `Cookie` and `Origin` headers.
pub async fn connect(
    addr: SocketAddr,
    cookie: Option<&str>,
    origin: Option<&str>,
) -> Result<Socket, tungstenite::Error> {
    connect_lines(addr, cookie.as_slice(), origin).await
}

/// Opens `ws://addr/ws` with one `Cookie` header line per entry of
/// `cookies` (any bytes a header value may hold, UTF-8 included) and the
/// given `Origin`.
pub async fn connect_lines(
    addr: SocketAddr,
    cookies: &[&str],
    origin: Option<&str>,
) -> Result<Socket, tungstenite::Error> {
    let mut request = format!("ws://{addr}/ws").into_client_request().unwrap();
    for cookie in cookies {
        request
            .headers_mut()
            .append(COOKIE, HeaderValue::from_str(cookie).unwrap());
    }
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert(ORIGIN, HeaderValue::from_str(origin).unwrap());
    }
    let connect = tokio_tungstenite::connect_async(request);
    let (socket, response) = tokio::time::timeout(Duration::from_secs(10), connect)
        .await
        .expect("the handshake answers in time")?;
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    Ok(socket)
}

/// Connects with the app's origin and returns the first text message.
pub async fn connect_and_read(addr: SocketAddr, cookie: &str) -> String {
    let mut socket = connect(addr, Some(cookie), Some(APP_ORIGIN))
        .await
        .unwrap_or_else(|e| panic!("upgrade refused: {}", describe(&e)));
    first_text(&mut socket).await
}

/// The first text message on `socket`.
pub async fn first_text(socket: &mut Socket) -> String {
    let next = tokio::time::timeout(Duration::from_secs(5), socket.next())
        .await
        .expect("a message in time");
    match next {
        Some(Ok(Message::Text(text))) => text.to_string(),
        other => panic!("expected a text message, got {other:?}"),
    }
}

/// The HTTP response of a refused handshake.
pub async fn refused(
    addr: SocketAddr,
    cookie: Option<&str>,
    origin: Option<&str>,
) -> Response<Option<Vec<u8>>> {
    refused_lines(addr, cookie.as_slice(), origin).await
}

/// The HTTP response of a handshake refused with these `Cookie` lines.
pub async fn refused_lines(
    addr: SocketAddr,
    cookies: &[&str],
    origin: Option<&str>,
) -> Response<Option<Vec<u8>>> {
    match connect_lines(addr, cookies, origin).await {
        Err(tungstenite::Error::Http(response)) => *response,
        Err(other) => panic!("expected an HTTP refusal, got {other}"),
        Ok(_) => panic!("expected an HTTP refusal, the upgrade succeeded"),
    }
}

fn describe(error: &tungstenite::Error) -> String {
    match error {
        tungstenite::Error::Http(response) => format!("HTTP {}", response.status()),
        other => other.to_string(),
    }
}

/// Asserts a 401 `invalid_token` refusal.
pub fn assert_invalid_token(response: &Response<Option<Vec<u8>>>) {
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.headers()["www-authenticate"],
        "Bearer error=\"invalid_token\""
    );
    assert_eq!(response.body().as_deref(), Some(&b"Unauthorized\n"[..]));
}

/// Asserts a 503 with `Retry-After` and no challenge.
pub fn assert_unavailable(response: &Response<Option<Vec<u8>>>) {
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let retry: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1, "Retry-After: {retry}");
    assert!(response.headers().get("www-authenticate").is_none());
}

/// Asserts a 403 for a refused Origin.
pub fn assert_origin_refused(response: &Response<Option<Vec<u8>>>) {
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(response.headers().get("www-authenticate").is_none());
    assert_eq!(response.body().as_deref(), Some(&b"Forbidden\n"[..]));
}

/// Changes one character of a cookie's value (not its name), keeping it a
/// syntactically valid cookie.
pub fn tamper(pair: &str, position_from_end: usize) -> String {
    let (name, value) = pair.split_once('=').unwrap();
    let mut bytes = value.as_bytes().to_vec();
    let i = bytes.len() - 1 - position_from_end;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    format!("{name}={}", String::from_utf8(bytes).unwrap())
}

// ---------------------------------------------------------- store wrapper

/// A real store that counts how often the authenticator asked it.
#[derive(Clone)]
pub struct Counting<S> {
    pub inner: S,
    loads: Arc<AtomicUsize>,
}

impl<S> Counting<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            loads: Arc::new(AtomicUsize::new(0)),
        }
    }

    pub fn loads(&self) -> usize {
        self.loads.load(Ordering::SeqCst)
    }
}

impl<S: SessionStore> SessionStore for Counting<S> {
    type Data = S::Data;

    async fn load(&self, id: &SessionId) -> Result<Option<SessionRecord<S::Data>>, AuthError> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        self.inner.load(id).await
    }
}

// ------------------------------------------------------------------ Redis
// (the servers themselves: tests/common/redis.rs)

/// A fred client for `url` that fails fast while Redis is down (a command
/// times out after 300 ms instead of waiting for a reconnection) and
/// reconnects every 50 ms: the configuration that turns an outage into a
/// quick 503.
pub async fn fred_client(url: &str) -> fred::prelude::Client {
    use fred::prelude::*;
    let config = Config::from_url(url).unwrap();
    let client = Builder::from_config(config)
        .with_connection_config(|c| {
            c.connection_timeout = Duration::from_millis(300);
            c.internal_command_timeout = Duration::from_millis(300);
            c.max_command_attempts = 1;
        })
        .with_performance_config(|p| {
            p.default_command_timeout = Duration::from_millis(300);
        })
        .set_policy(ReconnectPolicy::new_constant(0, 50))
        .build()
        .unwrap();
    client.init().await.unwrap();
    client
}

/// Waits until `check` holds, for up to five seconds.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

pub use super::common::LogCapture;
