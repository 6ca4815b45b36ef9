//! JWT-authenticated WebSockets with axum: HS256 on `/ws`, RS256 with a key
//! selected by `kid` on `/ws/rs256`, the token in an `Authorization: Bearer`
//! header or (from browsers) in `Sec-WebSocket-Protocol`, and a required
//! scope (`chat:write`): a valid token without it is refused with
//! `403 insufficient_scope` before the handshake.
//!
//! ```sh
//! cargo run --example axum_jwt
//! ```
//!
//! It prints demo tokens (valid one hour) and ready-to-paste commands, e.g.:
//!
//! ```sh
//! websocat -H 'Authorization: Bearer <alice HS256 token>' ws://127.0.0.1:3000/ws
//! websocat -H 'Authorization: Bearer <alice RS256 token>' ws://127.0.0.1:3000/ws/rs256
//! websocat --protocol 'chat, base64url.bearer.<base64url of the token>' ws://127.0.0.1:3000/ws
//! ```
//!
//! Environment:
//!
//! * `ADDR`: where to listen (default `127.0.0.1:3000`);
//! * `JWT_SECRET`: the HS256 secret, at least 32 bytes (default: a demo
//!   secret written below);
//! * `RS256_PUBLIC_KEY_FILE` / `RS256_PRIVATE_KEY_FILE`: PEM files of your
//!   own RSA key pair (default: the demo pair written below; without a
//!   private key no RS256 demo token is printed);
//! * `RUST_LOG` (default `info,tower_ws_auth=debug`): every decision of the
//!   layer is logged under the `tower_ws_auth` target, never a token.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::any;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Deserialize;
use tower_ws_auth::{
    Identity, WsAuthLayer,
    jwt::{JwtAuthenticator, JwtKey},
    socket::SessionGuard,
};

/// Who issues the tokens and who they are for: checked on every token.
const ISSUER: &str = "https://auth.example.com";
const AUDIENCE: &str = "chat";
/// The scope every connection needs.
const REQUIRED_SCOPE: &str = "chat:write";
/// The `kid` of the RS256 key: tokens name the key that signed them.
const RSA_KID: &str = "demo-rsa-1";
/// How long the demo tokens last.
const TOKEN_TTL: Duration = Duration::from_secs(3600);

/// DEMO ONLY: a published secret protects nothing. Set `JWT_SECRET`.
const DEMO_HS256_SECRET: &str = "demo-only-hs256-secret-change-me-0123456789";

/// DEMO ONLY: this RSA key pair is published with the crate, so anybody can
/// sign tokens with it. Give your own with `RS256_PUBLIC_KEY_FILE` (the
/// server needs only the public key; the private key belongs to whoever
/// issues tokens).
const DEMO_RSA_PUBLIC_PEM: &str = r"-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA3zeIR4meb6hNHYWPQvds
RxmrWw8Eo9YkYnBo3Mc/8obHecZSrMrnPOOZxWV1KoBMs5Xftg3ssjp4Mni8paKC
D+l7Wx5S9e3U62MXMD8fb9jpNN+CEZWbuYdh3zV/ebx0y6wf0/Q1ckdJ2BtNkSEO
vxobr94bb2g3LCNwA3h4fQRGoKPo9UraQMw/t8ieByTZOBhZgGDFymbMb3Tb5MMJ
zKJ3g4AOFgJApP809Yu3sFylas+kMwNBPPLKNnC3W1T3t2LpzFWMuXROWPBumFI7
h03zyMMj5Ob+v1b6R+DJXuGPtAHThb1XIKn2LarV7jgktkcIZGrbG9VDT2Zzg+4D
kwIDAQAB
-----END PUBLIC KEY-----
";
const DEMO_RSA_PRIVATE_PEM: &str = r"-----BEGIN PRIVATE KEY-----
MIIEuwIBADANBgkqhkiG9w0BAQEFAASCBKUwggShAgEAAoIBAQDfN4hHiZ5vqE0d
hY9C92xHGatbDwSj1iRicGjcxz/yhsd5xlKsyuc845nFZXUqgEyzld+2DeyyOngy
eLylooIP6XtbHlL17dTrYxcwPx9v2Ok034IRlZu5h2HfNX95vHTLrB/T9DVyR0nY
G02RIQ6/Ghuv3htvaDcsI3ADeHh9BEago+j1StpAzD+3yJ4HJNk4GFmAYMXKZsxv
dNvkwwnMoneDgA4WAkCk/zT1i7ewXKVqz6QzA0E88so2cLdbVPe3YunMVYy5dE5Y
8G6YUjuHTfPIwyPk5v6/VvpH4Mle4Y+0AdOFvVcgqfYtqtXuOCS2Rwhkatsb1UNP
ZnOD7gOTAgMBAAECggEAZRj/ObtcTWESMD1GIgPzAA7hu9fE97ls+ELGU7xQu7UM
kpxe5JDvg3XoNu3ZT7sVQj8uuAN9gUmXF/D0LCa6tp8+dgn5dBZYWZYjMgBc6ij5
kq9qdzFl+vUUwGY4Crhuw7J9Jd/U9yHPkbfn/UPWLHqUMKatkVtHpc+VE5VUKPZW
tUX6dlYe/tM9vWbMvg8DliJ0l7W9sflS7Am/PHwgPzw+qp4b9w8sVABhnwENRPur
OluP9Stp5SqwL/PfCShST6j2otKEDKGAVQM/FvFPoJGB8Jy8faocX018QBDZrZCQ
NeZK24HtulxguUCu8fCma+7UEwhn3jk45FHy3fMmpQKBgQD1K40hxnLpYAjroa4+
YnpB8iRbWJZQd2PWxHbo7cmYhKQYTSIHeTOB4qlVETLIAma4YDhLQBTz0BUVzQMK
k8dAibXjVC9MmAIPolBELfuLxbheNWNYdDvL6qAr9YUJ95Y1tcbM1DMXO1iULgPp
BQ7maLOfs2twjhnvOt3dUmzjrQKBgQDpE7p77AK82bko1BBkyOM0ttg2Acm2jOMI
QDfFOfecscQUOy+iImW2GB0wMlwdymwiDn7ipcEw3B9vJF3Iv7Xx/5i2NecIgUUC
W7VpWhLOUqYrWYF/r8uzONACyxxWYeFcf7UfXsjQlp8pwsAK+9Y9xrXrlptJDNuU
RLzksglsPwJ/epVL+5c93XInA6nTdV3HwzFO/F1Oyuzm/ns8+Tnrkla/tWbbnOD8
3/R0thPjUB3jPkzd2MIxt7ZS1JOs8ZzyA1LXntJ409MtNKPzfiN/omM5y+Dly1RS
kaK+czxPSKyCblh1DfULlpIVuAFJ8ziUOqAfL7qF/cEPNo44YHDWAQKBgQDPq4VY
DvRtgeyphTHKKvfOKzBABp3MqoFLA7TtZPXLxtQ3VnjdlJpdgeTX4bcT0B1Cxvml
Rhz5RNg5NgTd7nrV0XAmwaZFfLCZJk9gPCJPdXKbY1ewBlmQKYmlQ4XPLc0Xlq4x
8kkpGVtdYSmtX7AHQPssmvdnQi6PUCOh/UPKDwKBgA9Oq0VKlaXsP7t600HZw7+g
EPJFZ7pcWIow0np572TK/CraA172tz0lheba88oKpgVw8oGA9GJyvjCKZAs4jn9G
5F+WfWLpCCJkBPszsGODAXw91c6lxcEU5KfTcvY5+X5C4ScRHvkgVfrSj3ro/se2
6LMQ+10IfZW1rKqTc4bq
-----END PRIVATE KEY-----
";

/// The application's own claims, read back with `identity.claims::<Claims>()`
/// without parsing the token again. The registered claims (`exp`, `iss`,
/// `aud`, `sub`, `scope`) are checked by the authenticator itself.
#[derive(Debug, Deserialize)]
struct Claims {
    #[serde(default)]
    name: Option<String>,
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

    let secret = std::env::var("JWT_SECRET").unwrap_or_else(|_| DEMO_HS256_SECRET.into());
    let (rsa_public, rsa_private) = rsa_keys()?;

    // HS256: one shared secret (refused when shorter than 32 bytes).
    let hs256 = JwtAuthenticator::hs256(secret.as_bytes())?
        .claims::<Claims>()
        .issuer([ISSUER])
        .audience([AUDIENCE])
        .required_scope(REQUIRED_SCOPE);
    // RS256: a key set selected by `kid`, each key pinned to its algorithm
    // (an HS256 token "signed" with the public key never verifies). Add the
    // next key here before the issuer starts using it to rotate.
    let rs256 =
        JwtAuthenticator::with_keys([
            JwtKey::from_pem(Algorithm::RS256, rsa_public.as_bytes())?.with_kid(RSA_KID)
        ])?
        .claims::<Claims>()
        .issuer([ISSUER])
        .audience([AUDIENCE])
        .required_scope(REQUIRED_SCOPE);

    // Tokens from `Authorization: Bearer` (servers, CLI tools) or from the
    // `Sec-WebSocket-Protocol` list (browsers cannot set headers on a
    // WebSocket); the header wins when both are present.
    let app = Router::new()
        // `any`, not `get`: HTTP/2 WebSockets arrive as CONNECT requests.
        .route(
            "/ws",
            any(ws_handler).layer(WsAuthLayer::new(hs256).bearer_header().subprotocol_token()),
        )
        .route(
            "/ws/rs256",
            any(ws_handler).layer(WsAuthLayer::new(rs256).bearer_header().subprotocol_token()),
        );

    let listener = tokio::net::TcpListener::bind(addr).await?;

    // Demo tokens, as your identity provider would issue them. (Building the
    // authenticators above also installed jsonwebtoken's crypto provider.)
    let hs_key = EncodingKey::from_secret(secret.as_bytes());
    let hs_header = Header::new(Algorithm::HS256);
    let alice = mint(
        &hs_header,
        &hs_key,
        "alice",
        "Alice",
        "chat:read chat:write",
    )?;
    let reader = mint(&hs_header, &hs_key, "rita", "Rita Reader", "chat:read")?;
    let alice_rs256 = match &rsa_private {
        Some(pem) => {
            let mut header = Header::new(Algorithm::RS256);
            header.kid = Some(RSA_KID.to_owned());
            let key = EncodingKey::from_rsa_pem(pem.as_bytes())?;
            Some(mint(
                &header,
                &key,
                "alice",
                "Alice",
                "chat:read chat:write",
            )?)
        }
        None => None,
    };

    let ws = format!("ws://{addr}");
    let http = format!("http://{addr}");
    let handshake = "curl -i --http1.1 -H 'Connection: Upgrade' -H 'Upgrade: websocket' \
                     -H 'Sec-WebSocket-Version: 13' -H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=='";
    println!(
        "axum_jwt listening on {ws}: HS256 tokens on /ws, RS256 tokens (kid {RSA_KID}) on /ws/rs256"
    );
    println!();
    println!(
        "Demo tokens (valid {} min; the demo keys are public, never use them for real):",
        TOKEN_TTL.as_secs() / 60
    );
    println!("  HS256 alice (chat:read chat:write): {alice}");
    println!("  HS256 rita  (chat:read only):       {reader}");
    if let Some(token) = &alice_rs256 {
        println!("  RS256 alice (chat:read chat:write): {token}");
    }
    println!();
    println!("Connect (the server greets you, then echoes what you type):");
    println!("  websocat -H 'Authorization: Bearer {alice}' {ws}/ws");
    if let Some(token) = &alice_rs256 {
        println!("  websocat -H 'Authorization: Bearer {token}' {ws}/ws/rs256");
    }
    println!(
        "The browser carrier: the token, base64url-encoded, as a subprotocol beside the real one:"
    );
    println!(
        "  websocat --protocol 'chat, base64url.bearer.{}' {ws}/ws",
        URL_SAFE_NO_PAD.encode(&alice)
    );
    println!(
        "  // in a browser console: new WebSocket('{ws}/ws', ['chat', 'base64url.bearer.' + b64url(token)])"
    );
    println!("Refused before the handshake:");
    println!(
        "  {handshake} -H 'Authorization: Bearer {reader}' {http}/ws   # 403 insufficient_scope"
    );
    println!(
        "  {handshake} -H 'Authorization: Bearer {alice}' {http}/ws/rs256   # 401 invalid_token (HS256 token, RS256 route)"
    );
    println!("  {handshake} {http}/ws   # 401, no credential");

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

/// Runs only for upgrades whose token verified and carried `chat:write`.
async fn ws_handler(ws: WebSocketUpgrade, identity: Identity) -> Response {
    // `chat` is the protocol browsers offer beside the token; the layer
    // has already removed the token from the list.
    ws.protocols(["chat"])
        // Small buffers: an idle connection then holds about 5.5 KiB instead
        // of the ~130 KiB tungstenite's defaults cost.
        .read_buffer_size(4096)
        .write_buffer_size(4096)
        .on_upgrade(move |socket| chat(socket, identity))
}

async fn chat(socket: WebSocket, identity: Identity) {
    let name = identity
        .claims::<Claims>()
        .and_then(|c| c.name.clone())
        .unwrap_or_else(|| identity.subject().to_owned());
    let scopes = identity.scopes().collect::<Vec<_>>().join(" ");
    let left = identity
        .time_left(SystemTime::now())
        .map_or(0, |d| d.as_secs());
    let hello = format!(
        "hello {} ({name}); scopes: {scopes}; token expires in {left} s",
        identity.subject()
    );
    // The token was checked once, on the upgrade; the guard closes the
    // socket (4002 "session expired") when it expires.
    let mut socket = SessionGuard::expiry_only().wrap(socket, identity.clone());
    if socket.send(Message::Text(hello.into())).await.is_err() {
        return;
    }
    while let Some(Ok(message)) = socket.recv().await {
        if let Message::Text(text) = message {
            let reply = format!("{}: {}", identity.subject(), text.as_str());
            if socket.send(Message::Text(reply.into())).await.is_err() {
                return;
            }
        }
    }
    tracing::info!(subject = identity.subject(), end = ?socket.end_reason(), "socket closed");
}

/// Signs a token for `sub` valid for [`TOKEN_TTL`].
fn mint(
    header: &Header,
    key: &EncodingKey,
    sub: &str,
    name: &str,
    scope: &str,
) -> Result<String, jsonwebtoken::errors::Error> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let claims = serde_json::json!({
        "sub": sub,
        "name": name,
        "scope": scope,
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + TOKEN_TTL.as_secs(),
    });
    jsonwebtoken::encode(header, &claims, key)
}

/// The RSA public key (PEM) and, when known, the private key to mint demo
/// tokens with: from the files named by the environment, or the demo pair.
fn rsa_keys() -> Result<(String, Option<String>), Box<dyn std::error::Error>> {
    let read = |var: &str| -> Result<Option<String>, Box<dyn std::error::Error>> {
        match std::env::var(var) {
            Ok(path) => std::fs::read_to_string(&path)
                .map(Some)
                .map_err(|e| format!("{var}={path}: {e}").into()),
            Err(_) => Ok(None),
        }
    };
    let private = read("RS256_PRIVATE_KEY_FILE")?;
    match read("RS256_PUBLIC_KEY_FILE")? {
        Some(public) => Ok((public, private)),
        None if private.is_some() => {
            Err("RS256_PRIVATE_KEY_FILE needs RS256_PUBLIC_KEY_FILE: the server verifies with the public key".into())
        }
        None => Ok((
            DEMO_RSA_PUBLIC_PEM.to_owned(),
            Some(DEMO_RSA_PRIVATE_PEM.to_owned()),
        )),
    }
}
