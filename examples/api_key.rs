//! API keys for service-to-service clients: an `X-Api-Key` header or an
//! `Authorization: Bearer` header, verified against keys stored as SHA-256
//! digests (the server never holds a usable key) and compared in constant
//! time. The same layer protects a plain HTTP route too.
//!
//! ```sh
//! cargo run --example api_key
//! ```
//!
//! Then:
//!
//! ```sh
//! websocat -H 'X-Api-Key: sk_demo_7Qm2xR9vKc4LpT8wZ3nYb6Hd' ws://127.0.0.1:3000/ws
//! websocat -H 'Authorization: Bearer sk_demo_7Qm2xR9vKc4LpT8wZ3nYb6Hd' ws://127.0.0.1:3000/ws
//! curl -i -H 'X-Api-Key: sk_demo_7Qm2xR9vKc4LpT8wZ3nYb6Hd' http://127.0.0.1:3000/whoami
//! ```
//!
//! To add a key, generate it, give it to the client, and store only its
//! digest:
//!
//! ```sh
//! KEY=sk_live_$(openssl rand -hex 24); echo "$KEY"; printf %s "$KEY" | sha256sum
//! ```
//!
//! Environment: `ADDR` (default `127.0.0.1:3000`), `RUST_LOG` (default
//! `info,tower_ws_auth=debug`).

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::{any, get};
use tower_ws_auth::{
    ApiKeyAuthenticator, ApiKeyDigest, AuthMethod, Identity, MemoryApiKeys, WsAuthLayer,
};

/// The key table, as it would come from a database or a secrets store:
/// SHA-256 digests (hex) of the keys, never the keys themselves.
const KEYS: &[(&str, &str, &[&str])] = &[
    // sk_demo_7Qm2xR9vKc4LpT8wZ3nYb6Hd (a demo key: published, so worthless)
    (
        "d49ff38600ef6d1542a1b52c540b42c5911ffad224f934c189d4bd55d28b9dbc",
        "billing-service",
        &["events:read"],
    ),
    // sk_demo_Vb3nK8sQ1wE5rT7yU2iO4pLm (a demo key too)
    (
        "932c1686ac19857c68fd2ea6ce3fc648002fc990ad9909465b065c1c0d0ed9f2",
        "ingest-service",
        &["events:read", "events:write"],
    ),
];

/// The demo keys printed at start; the server itself only uses `KEYS`.
const DEMO_KEYS: &[(&str, &str)] = &[
    ("billing-service", "sk_demo_7Qm2xR9vKc4LpT8wZ3nYb6Hd"),
    ("ingest-service", "sk_demo_Vb3nK8sQ1wE5rT7yU2iO4pLm"),
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

    let mut store = MemoryApiKeys::new();
    for (digest, service, scopes) in KEYS {
        let digest = ApiKeyDigest::from_hex(digest)
            .ok_or_else(|| format!("the digest of {service} is not 64 hex digits"))?;
        let identity = Identity::builder(*service, AuthMethod::ApiKey)
            .scopes(scopes.iter().copied())
            .build();
        store.insert_digest(digest, identity);
    }
    // Keys must start with `sk_`; anything else is not even looked up
    // (and, combined with `.or(...)`, would go to the next authenticator).
    // For keys in a database, implement `ApiKeyStore` (one async `lookup`
    // by digest) and use `ApiKeyAuthenticator::new(your_store)`.
    let keys = ApiKeyAuthenticator::new(store).prefix("sk_");

    let app = Router::new()
        // `any`, not `get`: HTTP/2 WebSockets arrive as CONNECT requests.
        .route("/ws", any(ws_handler))
        .route("/whoami", get(whoami))
        .layer(
            WsAuthLayer::new(keys)
                .header("x-api-key")
                .bearer_header()
                // A client sending two different keys is a bug: 400.
                .reject_conflicting_credentials()
                // Authenticate plain HTTP requests too (`/whoami`), not
                // only WebSocket upgrades.
                .protect_all_requests(),
        );

    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("api_key listening on http://{addr}/ (WebSocket: ws://{addr}/ws)");
    println!();
    println!("Demo keys (published with the crate: never use them for real):");
    for (service, key) in DEMO_KEYS {
        println!("  {service}: {key}");
    }
    let key = DEMO_KEYS.first().map_or("", |(_, key)| key);
    println!();
    println!("Try it:");
    println!("  websocat -H 'X-Api-Key: {key}' ws://{addr}/ws");
    println!("  websocat -H 'Authorization: Bearer {key}' ws://{addr}/ws");
    println!("  curl -i -H 'X-Api-Key: {key}' http://{addr}/whoami");
    println!("Refused:");
    println!("  curl -i -H 'X-Api-Key: sk_unknown' http://{addr}/whoami   # 401 invalid_token");
    println!("  curl -i http://{addr}/whoami   # 401, no key");

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

/// A plain HTTP route behind the same layer.
async fn whoami(identity: Identity) -> String {
    let scopes = identity.scopes().collect::<Vec<_>>().join(" ");
    format!("{} ({scopes})\n", identity.subject())
}

/// Runs only for upgrades with a known key.
async fn ws_handler(ws: WebSocketUpgrade, identity: Identity) -> Response {
    // Small buffers: an idle connection then holds about 5.5 KiB instead of
    // the ~130 KiB tungstenite's defaults cost.
    ws.read_buffer_size(4096)
        .write_buffer_size(4096)
        .on_upgrade(move |socket| serve_client(socket, identity))
}

async fn serve_client(mut socket: WebSocket, identity: Identity) {
    let hello = format!("hello {}", identity.subject());
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
