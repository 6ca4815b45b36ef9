//! Authentication by the first message, for clients that cannot send a
//! credential with the handshake; then a `SessionGuard` that closes the
//! socket when the (short-lived) token expires, unless the client refreshes
//! it in-band first.
//!
//! ```sh
//! cargo run --example first_message
//! ```
//!
//! The protocol (JSON text messages):
//!
//! | direction | message |
//! |---|---|
//! | client → server, first, within 10 s | `{"type":"auth","token":"..."}` |
//! | server → client | `{"type":"authenticated","user":{"id":"alice"},"expires_at":...}` |
//! | server → client, before expiry | `{"type":"expiring","expires_in":20}` |
//! | client → server, any time | `{"type":"refresh","token":"..."}` |
//! | server → client | `{"type":"refreshed","expires_at":...}` |
//!
//! Close codes: 4001 (not authenticated, or an invalid token), 4002 (token
//! expired), 4003 (a refresh with another user's token), 4008 (no auth
//! message in time), 1009 (auth message too big). Frames and messages are
//! capped at the auth message's cap plus 4 KiB for the socket's whole life
//! (`FirstMessageAuth::configure`), so an unauthenticated client cannot make
//! the server buffer more; a larger frame is refused from its header.
//!
//! A walkthrough with websocat, getting a fresh token on the way:
//!
//! ```sh
//! (echo "{\"type\":\"auth\",\"token\":\"$(curl -s 'http://127.0.0.1:3000/token?sub=alice')\"}"; cat) \
//!     | websocat ws://127.0.0.1:3000/ws
//! ```
//!
//! then type lines (echoed back), and before the token expires, paste
//! `{"type":"refresh","token":"<fresh token>"}`.
//!
//! Environment: `ADDR` (default `127.0.0.1:3000`), `TOKEN_TTL_SECS` (the
//! lifetime of the demo tokens, default 60), `JWT_SECRET` (HS256, at least
//! 32 bytes; default a demo secret), `RUST_LOG` (default
//! `info,tower_ws_auth=debug`).

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Deserialize;
use tower_ws_auth::{
    jwt::JwtAuthenticator,
    socket::{FirstMessageAuth, SessionGuard},
};

/// DEMO ONLY: a published secret protects nothing. Set `JWT_SECRET`.
const DEMO_HS256_SECRET: &str = "demo-only-hs256-secret-change-me-0123456789";

type Jwt = JwtAuthenticator<serde_json::Value>;

#[derive(Clone)]
struct AppState {
    /// Waits for `{"type":"auth",...}` on fresh sockets.
    first_message: FirstMessageAuth<Jwt>,
    /// Then guards them: expiry, warning, in-band refresh.
    guard: SessionGuard<Jwt>,
    /// Mints the demo tokens of `/token`.
    issuer: DemoIssuer,
}

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
    let ttl = match std::env::var("TOKEN_TTL_SECS") {
        Ok(secs) => Duration::from_secs(secs.parse()?),
        Err(_) => Duration::from_secs(60),
    };
    let warn_before = ttl / 3;
    let secret = std::env::var("JWT_SECRET").unwrap_or_else(|_| DEMO_HS256_SECRET.into());

    // Short-lived tokens: a small clock-skew leeway, or an expired token
    // would still open a socket (that the guard then closes at once).
    let jwt = JwtAuthenticator::hs256(secret.as_bytes())?.leeway(Duration::from_secs(2))?;
    let state = AppState {
        first_message: FirstMessageAuth::new(jwt.clone())
            .timeout(Duration::from_secs(10))
            .max_message_bytes((8 * 1024).try_into()?)
            // At most this many sockets may sit unauthenticated at once.
            .max_pending(1024.try_into()?),
        // Refreshes are verified by the same authenticator, and must be
        // for the same subject.
        guard: SessionGuard::new(jwt).warn_before(warn_before),
        issuer: DemoIssuer {
            key: EncodingKey::from_secret(secret.as_bytes()),
            ttl,
        },
    };

    let alice = state.issuer.mint("alice")?;
    let bob = state.issuer.mint("bob")?;
    let app = Router::new()
        // No layer: the upgrade is accepted without a credential.
        // `any`, not `get`: HTTP/2 WebSockets arrive as CONNECT requests.
        .route("/ws", any(ws_handler))
        .route("/token", get(token))
        .with_state(state);

    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!(
        "first_message listening on ws://{addr}/ws (tokens last {} s; warning {} s before expiry)",
        ttl.as_secs(),
        warn_before.as_secs()
    );
    println!();
    println!(
        "Demo tokens (HS256, valid {} s from now; the demo secret is public, never use it for real):",
        ttl.as_secs()
    );
    println!("  alice: {alice}");
    println!("  bob:   {bob}");
    println!("  fresh ones (demo only, no login): curl -s 'http://{addr}/token?sub=alice'");
    println!();
    println!("Walkthrough:");
    println!("  1. websocat ws://{addr}/ws");
    println!("  2. within 10 s, send the auth message:");
    println!("       {{\"type\":\"auth\",\"token\":\"{alice}\"}}");
    println!(
        "     answer: {{\"type\":\"authenticated\",\"user\":{{\"id\":\"alice\"}},\"expires_at\":...}}"
    );
    println!("  3. type anything: it is echoed back");
    println!(
        "  4. {} s before expiry: {{\"type\":\"expiring\",\"expires_in\":{}}}; refresh with a fresh token:",
        warn_before.as_secs(),
        warn_before.as_secs()
    );
    println!(
        "       {{\"type\":\"refresh\",\"token\":\"<curl -s 'http://{addr}/token?sub=alice'>\"}}"
    );
    println!("     answer: {{\"type\":\"refreshed\",\"expires_at\":...}}");
    println!("  5. no refresh: closed with 4002 at expiry. A refresh with bob's token: 4003.");
    println!("     A first message that is not an auth message: 4001. Nothing for 10 s: 4008.");
    println!("All in one, with a fresh token:");
    println!(
        "  (echo \"{{\\\"type\\\":\\\"auth\\\",\\\"token\\\":\\\"$(curl -s 'http://{addr}/token?sub=alice')\\\"}}\"; cat) | websocat ws://{addr}/ws"
    );

    serve(listener, app, 10_000).await
}

/// Serves `router` with the bounds the layer cannot set (`axum::serve` reads
/// request headers with no timeout and accepts connections without limit):
/// at most `max_connections` at once, 10 s to send the request headers, and
/// HTTP/2 extended CONNECT (WebSockets over HTTP/2) as `axum::serve` offers.
async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    max_connections: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(max_connections));
    loop {
        let slot = slots.clone().acquire_owned().await?;
        let Ok((stream, _peer)) = listener.accept().await else {
            // Out of file descriptors, say: wait a little, keep serving.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            let mut server = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            server
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10));
            server.http2().enable_connect_protocol();
            let connection = server.serve_connection_with_upgrades(TokioIo::new(stream), service);
            let _ = connection.await;
            drop(slot);
        });
    }
}

/// Accepts every upgrade; the socket authenticates with its first message.
async fn ws_handler(ws: WebSocketUpgrade, State(state): State<AppState>, parts: Parts) -> Response {
    // An unauthenticated client must not make the server buffer megabytes:
    // `configure` caps frames and messages at the auth message's cap (plus
    // 4 KiB) and makes the read buffer small, for the socket's whole life
    // (axum cannot raise the limits after authentication). A small write
    // buffer too: an idle connection then holds a few KiB instead of the
    // ~130 KiB of tungstenite's defaults.
    state
        .first_message
        .configure(ws)
        .write_buffer_size(4096)
        .on_upgrade(move |socket| run(socket, state, parts))
}

async fn run(socket: WebSocket, state: AppState, parts: Parts) {
    // Until this returns, no message reaches the application; on failure
    // the socket has been closed with the matching code.
    let (socket, identity) = match state.first_message.authenticate(socket, &parts).await {
        Ok(authenticated) => authenticated,
        Err(error) => {
            tracing::info!(%error, "socket not authenticated");
            return;
        }
    };
    let mut socket = state.guard.wrap(socket, identity).with_request(parts);
    // `recv` handles refresh messages itself and closes the socket at
    // expiry; only application messages come out.
    while let Some(Ok(message)) = socket.recv().await {
        if let Message::Text(text) = message {
            let reply = format!("{}: {}", socket.identity().subject(), text.as_str());
            if socket.send(Message::Text(reply.into())).await.is_err() {
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

/// DEMO ONLY: signs short-lived tokens for anybody. A real application gets
/// them from its identity provider (or a token endpoint behind a login).
#[derive(Clone)]
struct DemoIssuer {
    key: EncodingKey,
    ttl: Duration,
}

impl DemoIssuer {
    fn mint(&self, sub: &str) -> Result<String, jsonwebtoken::errors::Error> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let claims = serde_json::json!({ "sub": sub, "iat": now, "exp": now + self.ttl.as_secs() });
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.key)
    }
}

#[derive(Deserialize)]
struct TokenQuery {
    sub: String,
}

/// `GET /token?sub=alice`: a fresh demo token.
async fn token(State(state): State<AppState>, Query(query): Query<TokenQuery>) -> Response {
    let sub = query.sub;
    let valid = !sub.is_empty()
        && sub.len() <= 64
        && sub
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if !valid {
        return (
            StatusCode::BAD_REQUEST,
            "sub: 1 to 64 of A-Z a-z 0-9 - _ .\n",
        )
            .into_response();
    }
    match state.issuer.mint(&sub) {
        Ok(token) => token.into_response(),
        Err(error) => {
            tracing::error!(%error, "could not sign a demo token");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}
