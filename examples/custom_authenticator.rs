//! Your own `Authenticator`: opaque tokens looked up in a user database,
//! with the answers a real verifier gives (401 unknown token, 403 missing
//! scope or disabled account, 503 when the database is down), the peer
//! address read from the request, and a cache in front (`.cached`).
//!
//! The "database" is an in-process async repository with simulated latency
//! and an outage switch, so the example runs anywhere; replace its methods
//! with your SQL.
//!
//! ```sh
//! cargo run --example custom_authenticator
//! ```
//!
//! Then, with the tokens it prints:
//!
//! ```sh
//! websocat -H 'Authorization: Bearer tok_alice_demo_5f2b9c1e' ws://127.0.0.1:3000/ws
//! curl -X POST http://127.0.0.1:3000/admin/db/down   # new tokens get 503 + Retry-After
//! curl -X POST http://127.0.0.1:3000/admin/db/up
//! ```
//!
//! Environment: `ADDR` (default `127.0.0.1:3000`), `RUST_LOG` (default
//! `info,tower_ws_auth=debug`).

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::request::Parts;
use axum::response::Response;
use axum::routing::{any, post};
use tokio::sync::RwLock;
use tower_ws_auth::{
    ApiKeyDigest, AuthError, AuthMethod, Authenticator, Credential, Identity, WsAuthLayer,
};

/// A row of the `users` table.
#[derive(Debug, Clone)]
struct UserRow {
    id: String,
    display_name: String,
    roles: Vec<String>,
    disabled: bool,
}

/// What the repository fails with. Its `Display` is logged (as the source
/// of a 503): keep secrets out of it.
#[derive(Debug)]
struct DbError(&'static str);

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for DbError {}

/// The data access layer: an async "database" of users and the SHA-256
/// digests of their tokens (a leaked table holds no usable token, and a
/// lookup by digest does not compare secrets byte by byte).
#[derive(Clone, Default)]
struct UserRepository {
    /// `token_sha256 (hex) -> user`, as an indexed column would be.
    users_by_token: Arc<RwLock<HashMap<String, UserRow>>>,
    /// The outage switch of the demo.
    down: Arc<AtomicBool>,
}

impl UserRepository {
    /// `SELECT ... FROM users JOIN tokens ... WHERE tokens.sha256 = $1`
    async fn find_by_token_digest(&self, digest: &str) -> Result<Option<UserRow>, DbError> {
        // A network round trip.
        tokio::time::sleep(Duration::from_millis(50)).await;
        if self.down.load(Ordering::Relaxed) {
            return Err(DbError("connection refused (simulated outage)"));
        }
        Ok(self.users_by_token.read().await.get(digest).cloned())
    }

    /// `INSERT INTO tokens ...`: stores the digest, never the token.
    async fn insert(&self, token: &str, user: UserRow) {
        let digest = ApiKeyDigest::of(token).to_hex();
        self.users_by_token.write().await.insert(digest, user);
    }
}

/// The application's own data, carried in the `Identity`.
#[derive(Debug)]
struct Profile {
    display_name: String,
}

/// The authenticator: a token lookup in the user database.
struct UserDb {
    repository: UserRepository,
}

impl Authenticator for UserDb {
    async fn authenticate(
        &self,
        credential: &Credential,
        request: &Parts,
    ) -> Result<Identity, AuthError> {
        // The request head of the upgrade: headers, URI and extensions, here
        // axum's `ConnectInfo` (served with `into_make_service_with_connect_info`).
        let peer = request
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| *addr);

        let digest = ApiKeyDigest::of(credential.expose_secret()).to_hex();
        let user = self
            .repository
            .find_by_token_digest(&digest)
            .await
            // 503 with `Retry-After`, never 401: the token may well be valid.
            .map_err(|error| {
                AuthError::backend("user database unavailable", error)
                    .with_retry_after(Duration::from_secs(5))
            })?;
        // The reasons go to the logs (target `tower_ws_auth`); the client
        // gets the same generic body whatever the reason.
        let Some(user) = user else {
            return Err(AuthError::invalid("unknown token")); // 401 invalid_token
        };
        tracing::info!(user = %user.id, peer = ?peer, "token looked up in the user database");
        if user.disabled {
            return Err(AuthError::forbidden("account disabled")); // 403
        }
        if !user.roles.iter().any(|role| role == "chat:write") {
            return Err(AuthError::insufficient_scope("chat:write")); // 403 insufficient_scope
        }
        Ok(Identity::builder(user.id, AuthMethod::Custom("user-db"))
            .scopes(user.roles)
            .claims(Profile {
                display_name: user.display_name,
            })
            .build())
    }
}

/// The demo users and their tokens (published: worthless).
const DEMO_USERS: &[(&str, &str, &str, &[&str], bool)] = &[
    (
        "tok_alice_demo_5f2b9c1e",
        "alice",
        "Alice Liddell",
        &["chat:read", "chat:write"],
        false,
    ),
    (
        "tok_bob_demo_8d4e7a20",
        "bob",
        "Bob Builder",
        &["chat:read", "chat:write"],
        false,
    ),
    (
        "tok_rita_demo_3c6f1b94",
        "rita",
        "Rita Reader",
        &["chat:read"],
        false,
    ),
    (
        "tok_mallory_demo_0a9e5d77",
        "mallory",
        "Mallory",
        &["chat:read", "chat:write"],
        true,
    ),
];

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

    let repository = UserRepository::default();
    for (token, id, name, roles, disabled) in DEMO_USERS {
        let user = UserRow {
            id: (*id).to_owned(),
            display_name: (*name).to_owned(),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            disabled: *disabled,
        };
        repository.insert(token, user).await;
    }

    // Successful lookups are remembered for 30 s (at most 10 000 tokens),
    // keyed by a digest of the token; concurrent upgrades with one token
    // share one lookup; failures are never cached. So a reconnecting client
    // does not hit the database, and keeps connecting through a short
    // outage, but a token deleted from the database still works for up to
    // 30 s. The cache key is the token alone: never cache a decision that
    // depends on the request (peer address, headers); here the peer is
    // only logged, on each lookup.
    let auth = UserDb {
        repository: repository.clone(),
    }
    .cached(Duration::from_secs(30), 10_000);

    let app = Router::new()
        // `any`, not `get`: HTTP/2 WebSockets arrive as CONNECT requests.
        .route(
            "/ws",
            any(ws_handler).layer(WsAuthLayer::new(auth).bearer_header().subprotocol_token()),
        )
        // Demo only, unauthenticated: the outage switch.
        .route("/admin/db/down", post(db_down))
        .route("/admin/db/up", post(db_up))
        .with_state(repository);

    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("custom_authenticator listening on ws://{addr}/ws");
    println!();
    println!("Demo tokens (opaque; the database holds only their SHA-256 digests):");
    for (token, id, _, roles, disabled) in DEMO_USERS {
        let note = if *disabled { ", account disabled" } else { "" };
        println!("  {id:<8} ({}{note}): {token}", roles.join(" "));
    }
    let handshake = "curl -i --http1.1 -H 'Connection: Upgrade' -H 'Upgrade: websocket' \
                     -H 'Sec-WebSocket-Version: 13' -H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=='";
    println!();
    println!("Try it:");
    println!("  websocat -H 'Authorization: Bearer tok_alice_demo_5f2b9c1e' ws://{addr}/ws");
    println!(
        "  {handshake} -H 'Authorization: Bearer tok_rita_demo_3c6f1b94' http://{addr}/ws   # 403 insufficient_scope"
    );
    println!(
        "  {handshake} -H 'Authorization: Bearer tok_mallory_demo_0a9e5d77' http://{addr}/ws   # 403, disabled"
    );
    println!(
        "  {handshake} -H 'Authorization: Bearer tok_nobody' http://{addr}/ws   # 401 invalid_token"
    );
    println!("Simulate a database outage:");
    println!("  curl -X POST http://{addr}/admin/db/down");
    println!(
        "  {handshake} -H 'Authorization: Bearer tok_bob_demo_8d4e7a20' http://{addr}/ws   # 503, Retry-After: 5"
    );
    println!("  (a token that connected in the last 30 s still connects: it is cached)");
    println!("  curl -X POST http://{addr}/admin/db/up");

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
        let Ok((stream, peer)) = listener.accept().await else {
            // Out of file descriptors, say: wait a little, keep serving.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        // `ConnectInfo`, as `into_make_service_with_connect_info` gives it:
        // the peer address in every request's extensions.
        let router = tower::ServiceExt::map_request(
            router.clone(),
            move |mut request: Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            },
        );
        let service = hyper_util::service::TowerToHyperService::new(router);
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

async fn db_down(State(repository): State<UserRepository>) -> &'static str {
    repository.down.store(true, Ordering::Relaxed);
    tracing::warn!("user database DOWN (simulated)");
    "database down\n"
}

async fn db_up(State(repository): State<UserRepository>) -> &'static str {
    repository.down.store(false, Ordering::Relaxed);
    tracing::info!("user database up again");
    "database up\n"
}

/// Runs only for upgrades `UserDb` accepted.
async fn ws_handler(
    ws: WebSocketUpgrade,
    identity: Identity,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> Response {
    tracing::info!(user = identity.subject(), %peer, "connected");
    // Small buffers: an idle connection then holds about 5.5 KiB instead of
    // the ~130 KiB tungstenite's defaults cost.
    ws.protocols(["chat"])
        .read_buffer_size(4096)
        .write_buffer_size(4096)
        .on_upgrade(move |socket| chat(socket, identity))
}

async fn chat(mut socket: WebSocket, identity: Identity) {
    let name = identity
        .claims::<Profile>()
        .map_or(identity.subject(), |p| p.display_name.as_str());
    let hello = format!("hello {} ({name})", identity.subject());
    if socket.send(Message::Text(hello.into())).await.is_err() {
        return;
    }
    while let Some(Ok(message)) = socket.recv().await {
        let reply = match message {
            Message::Text(text) => format!("{}: {}", identity.subject(), text.as_str()),
            Message::Close(_) => return,
            _ => continue,
        };
        if socket.send(Message::Text(reply.into())).await.is_err() {
            return;
        }
    }
}
