//! No axum: a hyper 1 server whose WebSocket upgrades are authenticated by
//! the same `WsAuthLayer` (it is a plain tower layer), completed by hand
//! (`derive_accept_key`, `hyper::upgrade::on`) and served with
//! tokio-tungstenite, under a `SessionGuard` (expiry, in-band refresh)
//! through tower-ws-auth's `AuthSocket` adapter for `WebSocketStream`.
//! Needs the `tungstenite` feature:
//!
//! ```sh
//! cargo run --example hyper_tungstenite --features tungstenite
//! ```
//!
//! Then, with the token it prints:
//!
//! ```sh
//! websocat -H 'Authorization: Bearer <token>' ws://127.0.0.1:3000/ws
//! ```
//!
//! HTTP/1.1 only, to keep it short; `tests/e2e/hyper_server.rs` shows HTTP/2
//! extended CONNECT with hyper as well.
//!
//! Dependencies it uses: `hyper` 1 (`server`, `http1`), `hyper-util`
//! (`tokio`, `service`), `http-body-util`, `tower` (`util`),
//! `tokio-tungstenite` 0.29 (the version axum 0.8 uses, so an app never
//! holds two tungstenites), `jsonwebtoken` to mint the demo token.
//!
//! Environment: `ADDR` (default `127.0.0.1:3000`), `JWT_SECRET` (HS256, at
//! least 32 bytes; default a demo secret), `RUST_LOG` (default
//! `info,tower_ws_auth=debug`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::header::{
    CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL,
    SEC_WEBSOCKET_VERSION, UPGRADE,
};
use http::request::Parts;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tower::ServiceBuilder;
use tower_ws_auth::throttle::{FailedAuthLimit, PeerAddr};
use tower_ws_auth::{Identity, WsAuthLayer, jwt::JwtAuthenticator, socket::SessionGuard};

/// DEMO ONLY: a published secret protects nothing. Set `JWT_SECRET`.
const DEMO_HS256_SECRET: &str = "demo-only-hs256-secret-change-me-0123456789";
const TOKEN_TTL: Duration = Duration::from_secs(3600);

type Jwt = JwtAuthenticator<serde_json::Value>;
type Body = Full<Bytes>;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info,tower_ws_auth=debug".into()),
        )
        .init();
    let addr: SocketAddr = std::env::var("ADDR")
        .unwrap_or_else(|_| "127.0.0.1:3000".into())
        .parse()?;
    let secret = std::env::var("JWT_SECRET").unwrap_or_else(|_| DEMO_HS256_SECRET.into());

    let jwt = JwtAuthenticator::hs256(secret.as_bytes())?;
    // After the handshake: closes the socket when the token expires (4002),
    // warns a minute before, accepts `{"type":"refresh","token":"..."}`.
    let guard = SessionGuard::new(jwt.clone()).warn_before(Duration::from_secs(60));

    // The layer in front of a plain `service_fn`: rejected upgrades get
    // their 401/400/403 here and never reach `handle`. The rejection bodies
    // are built with `From<Bytes>`, which `Full<Bytes>` implements.
    // At most 100 failed upgrades per client address a minute (then 429),
    // the address being the `PeerAddr` set below for each connection.
    let limit = FailedAuthLimit::new(
        std::num::NonZeroU32::new(100).unwrap_or(std::num::NonZeroU32::MIN),
        Duration::from_secs(60),
    )?;
    let service = ServiceBuilder::new()
        .layer(
            WsAuthLayer::new(jwt)
                .bearer_header()
                .subprotocol_token()
                .failed_auth_limit(limit),
        )
        .service_fn(move |request| handle(request, guard.clone()));

    let listener = tokio::net::TcpListener::bind(addr).await?;
    let token = mint(&secret, "alice")?;
    println!(
        "hyper_tungstenite listening on ws://{addr}/ws (hyper 1 + tokio-tungstenite, no axum)"
    );
    println!();
    println!(
        "Demo token (HS256, user alice, valid {} min; the demo secret is public, never use it for real):",
        TOKEN_TTL.as_secs() / 60
    );
    println!("  {token}");
    println!();
    println!("Try it (the server greets you, then echoes what you type):");
    println!("  websocat -H 'Authorization: Bearer {token}' ws://{addr}/ws");
    println!(
        "  websocat --protocol 'chat, base64url.bearer.{}' ws://{addr}/ws",
        URL_SAFE_NO_PAD.encode(&token)
    );
    println!("  then refresh in-band (normally with a newer token from your identity provider):");
    println!("    {{\"type\":\"refresh\",\"token\":\"{token}\"}}");
    println!(
        "  curl -i --http1.1 -H 'Connection: Upgrade' -H 'Upgrade: websocket' \
         -H 'Sec-WebSocket-Version: 13' -H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==' \
         http://{addr}/ws   # 401, no token"
    );

    // Bounds the layer cannot set: at most 10,000 connections at once, and
    // 10 s to send the request headers (hyper needs a timer for that).
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(10_000));
    loop {
        let slot = slots.clone().acquire_owned().await?;
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors, say: wait a little, keep serving.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // The peer address, for the failed-authentication limit.
        let service = tower::ServiceExt::map_request(
            service.clone(),
            move |mut request: Request<Incoming>| {
                request.extensions_mut().insert(PeerAddr(peer));
                request
            },
        );
        let service = TowerToHyperService::new(service);
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service)
                // Keeps the connection usable after a 101.
                .with_upgrades();
            if let Err(error) = connection.await {
                tracing::debug!(%error, %peer, "connection ended with an error");
            }
            drop(slot);
        });
    }
}

/// The hand-written handler behind the layer.
async fn handle(
    mut request: Request<Incoming>,
    guard: SessionGuard<Jwt>,
) -> Result<Response<Body>, Infallible> {
    match request.uri().path() {
        "/ws" => {}
        "/" => return Ok(text(StatusCode::OK, "connect a WebSocket to /ws\n")),
        _ => return Ok(text(StatusCode::NOT_FOUND, "not found\n")),
    }
    // The layer inserts the identity into authenticated upgrades only; a
    // plain request to /ws passed through without one.
    let Some(identity) = request.extensions().get::<Identity>().cloned() else {
        let mut response = text(StatusCode::UPGRADE_REQUIRED, "a WebSocket endpoint\n");
        response
            .headers_mut()
            .insert(UPGRADE, HeaderValue::from_static("websocket"));
        return Ok(response);
    };
    let headers = request.headers();
    let key = match headers.get(SEC_WEBSOCKET_KEY) {
        Some(key)
            if request.method() == Method::GET
                && headers
                    .get(SEC_WEBSOCKET_VERSION)
                    .map(HeaderValue::as_bytes)
                    == Some(b"13") =>
        {
            key.clone()
        }
        _ => return Ok(text(StatusCode::BAD_REQUEST, "not a WebSocket handshake\n")),
    };
    // The layer has already taken the credential out of the list; pick
    // `chat` if the client offered it.
    let chat = headers
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == "chat");

    let on_upgrade = hyper::upgrade::on(&mut request);
    // The request head, for refreshes (the authenticator sees it as it saw
    // the upgrade request).
    let (parts, _body) = request.into_parts();
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(error) => {
                tracing::debug!(%error, "upgrade failed");
                return;
            }
        };
        // Small buffers: an idle connection then holds about 5.5 KiB
        // instead of the ~130 KiB tungstenite's defaults cost.
        let config = WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(4096)
            .max_message_size(Some(64 * 1024));
        let socket =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config))
                .await;
        chat_session(socket, identity, guard, parts).await;
    });

    let mut response = Response::new(Body::default());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = response.headers_mut();
    h.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        h.insert(SEC_WEBSOCKET_ACCEPT, accept);
    }
    if chat {
        h.insert(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static("chat"));
    }
    Ok(response)
}

/// The application, on a tokio-tungstenite socket under the guard.
async fn chat_session<S>(
    socket: WebSocketStream<S>,
    identity: Identity,
    guard: SessionGuard<Jwt>,
    parts: Parts,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send,
{
    let hello = format!("hello {}", identity.subject());
    let mut socket = guard.wrap(socket, identity).with_request(parts);
    if socket.send(Message::text(hello)).await.is_err() {
        return;
    }
    // Only application messages come out: refreshes are handled, and the
    // socket is closed at expiry.
    while let Some(Ok(message)) = socket.recv().await {
        if let Message::Text(text) = message {
            let reply = format!("{}: {}", socket.identity().subject(), text.as_str());
            if socket.send(Message::text(reply)).await.is_err() {
                break;
            }
        }
    }
    tracing::info!(
        subject = socket.identity().subject(),
        end = ?socket.end_reason(),
        "socket closed"
    );
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response
}

/// A demo token for `sub`, valid for [`TOKEN_TTL`].
fn mint(secret: &str, sub: &str) -> Result<String, jsonwebtoken::errors::Error> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let claims = serde_json::json!({ "sub": sub, "iat": now, "exp": now + TOKEN_TTL.as_secs() });
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
}
