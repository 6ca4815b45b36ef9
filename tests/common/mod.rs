//! Shared helpers for the integration tests: a real axum server on an
//! ephemeral loopback port and a real tokio-tungstenite client.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{Message as AxumMessage, WebSocketUpgrade};
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use futures_util::{SinkExt, StreamExt};
use http::header::SEC_WEBSOCKET_PROTOCOL;
use http::{HeaderName, HeaderValue, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tower_ws_auth::{
    AuthError, AuthMethod, Authenticator, Identity, OriginPolicy, SubprotocolCarrier, WsAuthLayer,
    authenticate_fn,
};

pub mod process;
pub mod redis;
#[cfg(feature = "tungstenite")]
pub mod sockets;

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Counts calls to the test authenticator.
#[derive(Clone, Default)]
pub struct Calls(Arc<AtomicUsize>);

impl Calls {
    pub fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// The test authenticator: a fixed table of tokens, each standing for one
/// outcome a real verifier can have.
pub fn tokens(calls: &Calls) -> impl Authenticator + Clone {
    let calls = calls.0.clone();
    authenticate_fn(move |credential, _request| {
        calls.fetch_add(1, Ordering::SeqCst);
        let outcome = match credential.expose_secret() {
            "alice-token" | "alice-session" => {
                Ok(Identity::builder("alice", AuthMethod::Custom("test"))
                    .scopes(["chat"])
                    .build())
            }
            "bob-token" => Ok(Identity::new("bob", AuthMethod::Custom("test"))),
            "readonly-token" => Err(AuthError::insufficient_scope("chat:write")),
            "banned-token" => Err(AuthError::forbidden("subject banned")),
            "backend-down" => Err(AuthError::unavailable("user database down")
                .with_retry_after(Duration::from_secs(7))),
            "expired-token" => Err(AuthError::invalid("token expired")),
            "malformed-token" => Err(AuthError::malformed("token structure")),
            _ => Err(AuthError::invalid("unknown token")),
        };
        async move { outcome }
    })
}

/// The origin the cookie carrier of [`every_carrier`] allows.
pub const SITE: &str = "http://app.example.test";

/// Every carrier, in this order: `Authorization: Bearer`, the
/// subprotocol entry, the `session` cookie (from [`SITE`] only), the
/// `X-Api-Key` header and the `token` query parameter, over [`tokens`]
/// counting its calls in `calls`.
pub fn every_carrier(calls: &Calls) -> WsAuthLayer<impl Authenticator + Clone> {
    WsAuthLayer::new(tokens(calls))
        .bearer_header()
        .subprotocol_token()
        .cookie("session", OriginPolicy::from_origins([SITE]).unwrap())
        .unwrap()
        .header("x-api-key")
        .unwrap()
        .query_param("token")
        .unwrap()
}

/// What the handler saw, sent as the first message on the socket.
async fn report(
    ws: WebSocketUpgrade,
    identity: Identity,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let seen = serde_json::json!({
        "subject": identity.subject(),
        "scopes": identity.scopes().collect::<Vec<_>>(),
        "protocols": headers.get(SEC_WEBSOCKET_PROTOCOL).and_then(|v| v.to_str().ok()),
        "query": uri.query(),
        "session_id": identity.session_id(),
    });
    ws.on_upgrade(move |mut socket| async move {
        if socket
            .send(AxumMessage::Text(seen.to_string().into()))
            .await
            .is_err()
        {
            return;
        }
        while let Some(Ok(msg)) = socket.recv().await {
            if let AxumMessage::Text(t) = msg
                && socket.send(AxumMessage::Text(t)).await.is_err()
            {
                return;
            }
        }
    })
}

/// Like `report`, but the handler selects the `chat` protocol itself.
async fn report_selecting(
    ws: WebSocketUpgrade,
    identity: Identity,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    report(ws.protocols(["chat"]), identity, headers, uri).await
}

async fn plain(identity: Option<Identity>) -> impl IntoResponse {
    match identity {
        Some(identity) => format!("hello {}", identity.subject()),
        None => "hello anonymous".to_owned(),
    }
}

async fn plain_required(identity: Identity) -> impl IntoResponse {
    format!("hello {}", identity.subject())
}

fn routes() -> Router {
    Router::new()
        .route("/ws", any(report))
        .route("/ws/select", any(report_selecting))
        .route("/plain", get(plain))
        .route("/plain/required", get(plain_required))
}

/// An allow-list with an exact origin, a wildcard entry and an explicit
/// port, for the Origin tests.
pub fn origin_policy() -> tower_ws_auth::OriginPolicy {
    tower_ws_auth::OriginPolicy::from_origins([
        "https://app.example.com",
        "https://*.tenants.example.com",
        "http://localhost:3000",
    ])
    .unwrap()
}

/// The standard test app behind `layer`.
pub fn app<A, H>(layer: WsAuthLayer<A, H>) -> Router
where
    A: Authenticator,
    H: tower_ws_auth::RejectionHandler<axum::body::Body>,
{
    routes().layer(layer)
}

/// `app`, counting in `inner` the requests `layer` let through to the
/// routes: a refused request must never reach them.
pub fn app_counting<A, H>(layer: WsAuthLayer<A, H>, inner: &Calls) -> Router
where
    A: Authenticator,
    H: tower_ws_auth::RejectionHandler<axum::body::Body>,
{
    let inner = inner.0.clone();
    routes()
        .layer(tower::util::MapRequestLayer::new(
            move |request: axum::extract::Request| {
                inner.fetch_add(1, Ordering::SeqCst);
                // What a tracing layer inside the auth layer would record.
                tracing::info!(target: "inner_service", uri = %request.uri(), "request reached the routes");
                request
            },
        ))
        .layer(layer)
}

/// Serves `app` on 127.0.0.1 with an ephemeral port.
pub async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    addr
}

/// A refused handshake, as the client saw it.
#[derive(Debug)]
pub struct Refused {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl Refused {
    pub fn challenge(&self) -> Option<&str> {
        self.headers
            .get(http::header::WWW_AUTHENTICATE)
            .map(|v| v.to_str().unwrap())
    }
}

/// Opens a WebSocket to `path` with extra `headers` (appended, so a name
/// may repeat). `Err` holds the HTTP answer of a refused handshake; any
/// other client error panics.
pub async fn connect(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<(Ws, http::Response<Option<Vec<u8>>>), Refused> {
    match try_connect(addr, path, headers).await {
        Ok(ok) => Ok(ok),
        Err(tungstenite::Error::Http(response)) => {
            let (parts, body) = (*response).into_parts();
            Err(Refused {
                status: parts.status,
                headers: parts.headers,
                body: String::from_utf8_lossy(&body.unwrap_or_default()).into_owned(),
            })
        }
        Err(other) => panic!("handshake failed: {other}"),
    }
}

/// Like `connect`, returning the client's own error as is.
pub async fn try_connect(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<(Ws, http::Response<Option<Vec<u8>>>), tungstenite::Error> {
    let mut request = format!("ws://{addr}{path}").into_client_request().unwrap();
    for (name, value) in headers {
        request.headers_mut().append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(request),
    )
    .await
    .expect("handshake timed out")
}

/// Connects and returns the handler's report as JSON.
pub async fn connect_ok(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (Ws, serde_json::Value, http::Response<Option<Vec<u8>>>) {
    let (mut ws, response) = match connect(addr, path, headers).await {
        Ok(ok) => ok,
        Err(refused) => panic!("expected an upgrade, got {refused:?}"),
    };
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    let report = next_text(&mut ws).await;
    (ws, serde_json::from_str(&report).unwrap(), response)
}

/// The next text message.
pub async fn next_text(ws: &mut Ws) -> String {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("no message within 10 s")
            .expect("socket closed")
            .expect("socket error");
        match msg {
            Message::Text(t) => return t.to_string(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected message {other:?}"),
        }
    }
}

/// Sends `text` and expects it echoed.
pub async fn assert_echo(ws: &mut Ws, text: &str) {
    ws.send(Message::Text(text.into())).await.unwrap();
    assert_eq!(next_text(ws).await, text);
}

/// The subprotocol offer `chat, base64url.bearer.<token>`.
pub fn offer(token: &str) -> String {
    format!("chat, {}", SubprotocolCarrier::new().encode(token))
}

/// A plain HTTP/1.1 GET over hyper's client; returns status and body.
pub async fn http_get(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, String) {
    let (status, _, body) = http_request(addr, path, headers).await;
    (status, body)
}

/// A raw HTTP/1.1 GET with arbitrary (repeatable) headers; for a `101` the
/// body is left unread. Returns status, headers and body.
pub async fn http_request(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, http::HeaderMap, String) {
    http_send(addr, http::Method::GET, path, headers, "").await
}

/// One HTTP/1.1 request with `method`, `headers` and `body`: the status,
/// the headers and the body (empty for a `101`).
pub async fn http_send(
    addr: SocketAddr,
    method: http::Method,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (StatusCode, http::HeaderMap, String) {
    use http_body_util::{BodyExt, Full};
    use hyper_util::rt::TokioIo;
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn.with_upgrades());
    let mut request = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string())
        .body(Full::new(bytes::Bytes::from(body.to_owned())))
        .unwrap();
    for (name, value) in headers {
        request.headers_mut().append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    let response = sender.send_request(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    if status == StatusCode::SWITCHING_PROTOCOLS {
        return (status, headers, String::new());
    }
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

/// Now, in whole seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Waits until the wall clock is past the second `second`.
pub async fn after_second(second: u64) {
    while unix_now() <= second {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The headers of a WebSocket handshake, for `http_request`.
pub const UPGRADE_HEADERS: [(&str, &str); 4] = [
    ("connection", "upgrade"),
    ("upgrade", "websocket"),
    ("sec-websocket-version", "13"),
    ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
];

/// Serves a tower service with hyper's HTTP/1.1 server (no axum) on
/// 127.0.0.1 with an ephemeral port, upgrades enabled; each request carries
/// the peer's address as a `throttle::PeerAddr` extension.
pub async fn serve_hyper<S, B>(service: S) -> SocketAddr
where
    S: tower::Service<http::Request<hyper::body::Incoming>, Response = http::Response<B>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, peer) = listener.accept().await.unwrap();
            // The peer address, as a hyper server tells the layer (what
            // axum's `ConnectInfo` does in `serve`).
            let service = tower::ServiceExt::map_request(
                service.clone(),
                move |mut request: http::Request<hyper::body::Incoming>| {
                    request
                        .extensions_mut()
                        .insert(tower_ws_auth::throttle::PeerAddr(peer));
                    request
                },
            );
            let service = hyper_util::service::TowerToHyperService::new(service);
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    addr
}

/// Opens an HTTP/2 connection and sends an extended CONNECT for `/ws`.
pub async fn h2_connect(
    addr: SocketAddr,
    headers: &[(&str, &str)],
) -> http::Response<hyper::body::Incoming> {
    let io = TokioIo::new(TcpStream::connect(addr).await.unwrap());
    let (mut send, conn) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .handshake(io)
            .await
            .unwrap();
    // Let the server's SETTINGS (with ENABLE_CONNECT_PROTOCOL) arrive.
    for _ in 0..200 {
        if conn.is_extended_connect_protocol_enabled() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(conn.is_extended_connect_protocol_enabled());
    tokio::spawn(conn);
    let mut builder = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri(format!("http://{addr}/ws"))
        .extension(hyper::ext::Protocol::from_static("websocket"))
        .header("sec-websocket-version", "13");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    send.send_request(
        builder
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap(),
    )
    .await
    .unwrap()
}

/// The WebSocket an accepted extended CONNECT opened.
pub async fn h2_socket(
    response: &mut http::Response<hyper::body::Incoming>,
) -> WebSocketStream<TokioIo<hyper::upgrade::Upgraded>> {
    let upgraded = hyper::upgrade::on(response).await.unwrap();
    WebSocketStream::from_raw_socket(
        TokioIo::new(upgraded),
        tokio_tungstenite::tungstenite::protocol::Role::Client,
        None,
    )
    .await
}

/// After the server's Close frame: the connection ends cleanly, the
/// client's reply sent and the stream closed by the server (`None`), not
/// an error and not a connection left open.
pub async fn assert_clean_end(ws: &mut Ws, case: &str) {
    use futures_util::StreamExt;
    match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
        Ok(None) => {}
        Ok(Some(other)) => panic!("{case}: after the close frame: {other:?}"),
        Err(_) => panic!("{case}: the server kept the connection open after the close"),
    }
}

// ------------------------------------------------------------------- logs

thread_local! {
    /// The buffer of this thread's [`LogCapture`], if one is running.
    static CAPTURE: std::cell::RefCell<Option<Arc<std::sync::Mutex<Vec<u8>>>>> =
        const { std::cell::RefCell::new(None) };
}

/// Writes an event into this thread's capture, or nowhere.
struct ThreadWriter;

impl std::io::Write for ThreadWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        CAPTURE.with(|capture| {
            if let Some(capture) = capture.borrow().as_ref() {
                capture.lock().unwrap().extend_from_slice(buf);
            }
        });
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Captures every event logged on this thread (a test's current-thread
/// runtime runs its server there too) until dropped.
///
/// One global subscriber, installed once, interested in every event and
/// writing each to the capture of the thread it happens on. Not a
/// per-test `set_default` with a filter: the tests of one binary share
/// tracing's callsites, and a callsite first hit while no capture wanted
/// it can keep a cached "never" although another test's capture, started
/// concurrently, wants it; that capture then misses events.
pub struct LogCapture {
    buf: Arc<std::sync::Mutex<Vec<u8>>>,
}

impl LogCapture {
    pub fn start() -> Self {
        static INSTALL: std::sync::Once = std::sync::Once::new();
        INSTALL.call_once(|| {
            let subscriber = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::TRACE)
                .with_writer(|| ThreadWriter)
                .with_ansi(false)
                .finish();
            tracing::subscriber::set_global_default(subscriber)
                .expect("no other global tracing subscriber in the tests");
        });
        let buf = Arc::new(std::sync::Mutex::new(Vec::new()));
        CAPTURE.with(|capture| *capture.borrow_mut() = Some(buf.clone()));
        Self { buf }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.buf.lock().unwrap()).into_owned()
    }
}

impl Drop for LogCapture {
    fn drop(&mut self) {
        CAPTURE.with(|capture| capture.borrow_mut().take());
    }
}
