//! WebSockets authenticated by the tokens of an OpenID Connect provider:
//! the keys come from the provider's JWK Set, found through
//! `{issuer}/.well-known/openid-configuration`, cached and refreshed in the
//! background (`RemoteJwks`). Needs the `jwks` feature:
//!
//! ```sh
//! cargo run --example axum_jwks --features jwks
//! ```
//!
//! Without `ISSUER_URL` it starts a stand-in issuer on 127.0.0.1 (a random
//! port, printed at start) that serves the discovery document, its JWK Set
//! and `/token?sub=alice`, which mints a signed token, so it runs offline:
//!
//! ```sh
//! TOKEN=$(curl -s 'http://127.0.0.1:<issuer port>/token?sub=alice')
//! websocat -H "Authorization: Bearer $TOKEN" ws://127.0.0.1:3000/ws
//! ```
//!
//! With your own provider (Keycloak, Auth0, Entra ID, Google...):
//!
//! ```sh
//! ISSUER_URL=https://login.example.com/realms/demo AUDIENCE=chat-api \
//!     cargo run --example axum_jwks --features jwks
//! ```
//!
//! Environment:
//!
//! * `ADDR`: where to listen (default `127.0.0.1:3000`);
//! * `ISSUER_URL`: the issuer, exactly as in its tokens' `iss` (default: the
//!   stand-in);
//! * `AUDIENCE`: the `aud` tokens must carry (default `tower-ws-auth-demo`);
//! * `ISSUER_ADDR`: where the stand-in issuer listens (default
//!   `127.0.0.1:0`, a random port);
//! * `RUST_LOG` (default `info,tower_ws_auth=debug`).

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{any, get};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Deserialize;
use tower_ws_auth::{Identity, JwtAuthenticator, RemoteJwks, SessionGuard, WsAuthLayer};

/// The application's own claims, read from the `Identity` in the handler.
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
    let audience = std::env::var("AUDIENCE").unwrap_or_else(|_| "tower-ws-auth-demo".into());

    let (issuer, stand_in) = match std::env::var("ISSUER_URL") {
        Ok(issuer) => (issuer, false),
        Err(_) => (stand_in_issuer::start(&audience).await?, true),
    };

    // Discovery finds the provider's `jwks_uri`; tokens must carry this
    // `iss`. Keys are cached and refreshed in the background (following the
    // provider's `Cache-Control`); a token with an unknown `kid` (after a
    // key rotation) triggers at most one fetch per `refetch_interval`.
    let jwks = RemoteJwks::discover(&issuer)
        .refetch_interval(Duration::from_secs(30))
        .timeouts(Duration::from_secs(2), Duration::from_secs(5))
        .build()?;
    // Optional warm-up, so the first client does not wait for the fetch.
    // While the provider is unreachable, upgrades are answered with 503 and
    // `Retry-After` (never 401): the server starts anyway.
    match jwks.refresh().await {
        Ok(keys) => tracing::info!(keys, %issuer, "signing keys fetched"),
        Err(error) => tracing::warn!(%error, %issuer, "signing keys not fetched yet"),
    }
    let auth = JwtAuthenticator::from_remote_jwks(jwks)
        .claims::<Claims>()
        .audience([audience.as_str()])
        .leeway(Duration::from_secs(30))?;

    let app = Router::new().route(
        // `any`, not `get`: HTTP/2 WebSockets arrive as CONNECT requests.
        "/ws",
        any(ws_handler).layer(WsAuthLayer::new(auth).bearer_header().subprotocol_token()),
    );
    let listener = tokio::net::TcpListener::bind(addr).await?;

    println!("axum_jwks listening on ws://{addr}/ws");
    println!("  tokens from issuer {issuer} (audience {audience})");
    if stand_in {
        println!();
        println!("Stand-in issuer (demo only: it signs a token for anybody who asks):");
        println!("  discovery: {issuer}/.well-known/openid-configuration");
        println!("  keys:      {issuer}/jwks.json");
        println!("  a token:   curl -s '{issuer}/token?sub=alice'");
        println!();
        println!("Try it:");
        println!("  TOKEN=$(curl -s '{issuer}/token?sub=alice')");
    } else {
        println!();
        println!("Try it with an access token of that issuer (audience {audience}) in $TOKEN:");
    }
    println!("  websocat -H \"Authorization: Bearer $TOKEN\" ws://{addr}/ws");
    println!(
        "  curl -i --http1.1 -H 'Connection: Upgrade' -H 'Upgrade: websocket' \
         -H 'Sec-WebSocket-Version: 13' -H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==' \
         http://{addr}/ws   # 401, no token"
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

/// Runs only for upgrades whose token verified with the issuer's keys.
async fn ws_handler(ws: WebSocketUpgrade, identity: Identity) -> Response {
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
    let hello = format!("hello {} ({name})", identity.subject());
    // Closes the socket with 4002 when the access token expires.
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

/// A minimal OpenID Connect provider for the demo: discovery document, JWK
/// Set and a token endpoint without any login. Nothing of this belongs in
/// a real server; your identity provider does it.
mod stand_in_issuer {
    use super::*;

    const KID: &str = "stand-in-rsa-1";
    const TOKEN_TTL: Duration = Duration::from_secs(600);

    /// DEMO ONLY: this key is published with the crate.
    const DEMO_RSA_PRIVATE_PEM: &str = r"-----BEGIN PRIVATE KEY-----
MIIEvAIBADANBgkqhkiG9w0BAQEFAASCBKYwggSiAgEAAoIBAQDFKgHBBFyoEI+4
BTcyoC8O66NFRYvPd2rjmexT+eIps+caHn1v850rIBhcudylz6i6WnzYVMhGN+te
8NncXwhUrdzHd+lorWWWVA9uIuIjywYMd5tdFNXkQVovMAyAhFme7tUEgwwrE10g
27/M66NLEVgxzNiUW0aR0BOOjtXieJuuJHpNI6kR/918GiGYoE59/v/zBJJWCivY
lkwKYfAdNZvgrlwc4AApfb4uCQAXz5nm9Gz/3icgt16MbIkqcDfWr+g7g9YE+tgA
U8m5qlCLIk3tyH/zLqdaeRxE6tsXGH0qSf3wS5FNrEon1qtjJwn8mW9ONheTZTEx
pd797ErpAgMBAAECggEAA1zYzE+0e9pSdS9Dln20Z8L9lSIfRRHSlSCsLu95W8A5
fhDMj2L+iHyC5dv2py5QQKNn8zGY+9ea0FL3yEInrHgNpqpFJRel/qce30BBjp45
E2/byr3e+wZhUSI26F85fxQwNmQ8yiRJp5SP5CEVtyNL14eYnwkifjyoBLurarIf
uU9Kh40VYJ+F0w0qht8sKaa7XVrAgmzm8W6IVY+wN5TUwa1ft4mRob6bSeX2snl8
ZNLznnNJOiQt1G0YStu/RSOG6TNdqc2i7Z31vd7UmXYbJQnmDY35yafw1siO4Jp5
SxtAvvSqvPMDISWxOfEaA7XvZJGtZCHflZJtbIDuTQKBgQDwSiuLJ4eXIeGjIGMU
qLOnXSUJxozPlzTjG51erCf3KJM9UExYwoKz7v3zPOEtdJHoN2zQ0lSIOV1y8R2C
B+GYqVmaHxH9d/8pvxp1jIUwu93GFjZWViDmDEsPOSSUXYZyMjtiskSdVACrRAzn
v+ySuSbZTC8Jeh4ipBLqyZhdNQKBgQDSDgZejLSJGf8XeKHnigRZhui7AathmG7v
6XeioAK2TYtyM5hgBD2JxCZZK2LkHY8lGpSBk059bKtKWCmWokpXSY3yyjdcCIjE
sva2huiqtSsVdwY0C44MgxdSGtteGzqw4knYSeZFiohjl2PCdjSxXa7pfSxWzXb9
Rg5nIwMRZQKBgGycqff5QzGOEAaDIiX5Z1M0KAS2KXm/2Bj7p3Nej6YJQhyJyiio
qxmX4lPq5cF9GmKDgv0UxT7Z5yKIWBUpaNBvY9/lQWV3su90wQn3HVD86e6apa76
uV4iml7kLmOdrqK5j9w5xgfzK2Y+mTK7rrxXUncQF4bKGwr/bMmRm/wtAoGARry+
XFzZ90mv5AGV1FlgOZ37Be77/fPNeDGRPkzQXQAkM6M4by0+ZASQPXsk5Fkn+YDH
/hLTXd2YmYKzDq08h8SXbum2VuHw3Py/pJwuAj7ccXARwLkbbw8+bUHqGfjlfOfX
omTQjR6n65Hx4GzaNdisrKigo+KxbX2IICdkQxkCgYAKvKoIV1M0BNrjwsTADwAx
dIYTlRMGsFU/NLxV3WC5YoHHg/6aSgCx/s3qWXhMSK06YiAtDwo+oAOWI1rjjeQJ
Z5i5hOSXHqdmkl5DHw7DJhO0qh9p32ejTQP3pI7lLl13j1zK9OqGNvQuGk4JwKMK
d7ydgC8t9UoS64rPDBbvFQ==
-----END PRIVATE KEY-----
";

    #[derive(Clone)]
    struct Issuer {
        url: String,
        audience: String,
        key: EncodingKey,
        jwk: serde_json::Value,
    }

    /// Starts the stand-in on `ISSUER_ADDR` (default: an ephemeral loopback
    /// port) and returns its issuer URL.
    pub async fn start(audience: &str) -> Result<String, Box<dyn std::error::Error>> {
        // jsonwebtoken signs with the backend tower-ws-auth's `jwt` feature
        // enables (aws-lc-rs); the authenticators install it when built,
        // but the stand-in signs before. `Err` only means it is installed.
        let _ = jsonwebtoken::crypto::CryptoProvider::install_default(
            &jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER,
        );
        let key = EncodingKey::from_rsa_pem(DEMO_RSA_PRIVATE_PEM.as_bytes())?;
        // The public half, as a JWK, pinned to RS256 and named by `kid`.
        let mut jwk = serde_json::to_value(jsonwebtoken::jwk::Jwk::from_encoding_key(
            &key,
            Algorithm::RS256,
        )?)?;
        jwk["kid"] = KID.into();
        jwk["use"] = "sig".into();

        let addr = std::env::var("ISSUER_ADDR").unwrap_or_else(|_| "127.0.0.1:0".into());
        let listener = tokio::net::TcpListener::bind(addr.as_str()).await?;
        let url = format!("http://{}", listener.local_addr()?);
        let issuer = Issuer {
            url: url.clone(),
            audience: audience.to_owned(),
            key,
            jwk,
        };
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks.json", get(jwks))
            .route("/token", get(token))
            .with_state(issuer);
        tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::error!(%error, "stand-in issuer stopped");
            }
        });
        Ok(url)
    }

    async fn discovery(State(issuer): State<Issuer>) -> Json<serde_json::Value> {
        Json(serde_json::json!({
            "issuer": issuer.url,
            "jwks_uri": format!("{}/jwks.json", issuer.url),
            "token_endpoint": format!("{}/token", issuer.url),
            "id_token_signing_alg_values_supported": ["RS256"],
        }))
    }

    async fn jwks(State(issuer): State<Issuer>) -> Response {
        (
            // The verifier refreshes its cache after max-age.
            [(header::CACHE_CONTROL, "max-age=300")],
            Json(serde_json::json!({ "keys": [issuer.jwk] })),
        )
            .into_response()
    }

    #[derive(Deserialize)]
    struct TokenQuery {
        sub: String,
    }

    /// `GET /token?sub=alice`: a token for anybody. Demo only.
    async fn token(State(issuer): State<Issuer>, Query(query): Query<TokenQuery>) -> Response {
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
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let claims = serde_json::json!({
            "iss": issuer.url,
            "aud": issuer.audience,
            "sub": sub,
            "name": format!("{sub} (stand-in user)"),
            "iat": now,
            "exp": now + TOKEN_TTL.as_secs(),
        });
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(KID.to_owned());
        match jsonwebtoken::encode(&header, &claims, &issuer.key) {
            Ok(token) => token.into_response(),
            Err(error) => {
                tracing::error!(%error, "stand-in issuer could not sign");
                StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }
        }
    }
}
