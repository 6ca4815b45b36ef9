//! Helpers for the JWT and JWKS integration tests: test keys, token
//! signing with raw headers, a real axum server on 127.0.0.1 and a real
//! tokio-tungstenite client.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::extract::ws::{Message as AxumMessage, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures_util::StreamExt;
use http::header::{AUTHORIZATION, SEC_WEBSOCKET_PROTOCOL};
use http::{HeaderValue, StatusCode};
use jsonwebtoken::{Algorithm, EncodingKey};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tower_ws_auth::{Authenticator, Identity, WsAuthLayer};

#[cfg(feature = "jwks")]
pub mod key_server;

pub const RSA_PRIVATE: &str = include_str!("../fixtures/rsa_private.pem");
pub const RSA_PUBLIC: &str = include_str!("../fixtures/rsa_public.pem");
pub const RSA_PUBLIC_DER: &[u8] = include_bytes!("../fixtures/rsa_public.der");
/// A second RSA key: the attacker's.
pub const RSA2_PRIVATE: &str = include_str!("../fixtures/rsa2_private.pem");
pub const RSA2_PUBLIC: &str = include_str!("../fixtures/rsa2_public.pem");
pub const EC256_PRIVATE: &str = include_str!("../fixtures/ec256_private.pem");
pub const EC256_PUBLIC: &str = include_str!("../fixtures/ec256_public.pem");
pub const EC384_PRIVATE: &str = include_str!("../fixtures/ec384_private.pem");
pub const EC384_PUBLIC: &str = include_str!("../fixtures/ec384_public.pem");
pub const ED_PRIVATE: &str = include_str!("../fixtures/ed25519_private.pem");
pub const ED_PUBLIC: &str = include_str!("../fixtures/ed25519_public.pem");

pub const HS256_SECRET: &[u8] = b"integration-test-hs256-secret-32bytes!";
pub const HS384_SECRET: &[u8] = b"integration-test-hs384-secret-that-is-48-bytes-long!!";
pub const HS512_SECRET: &[u8] =
    b"integration-test-hs512-secret-that-is-at-least-64-bytes-long-ok!!!!";

/// jsonwebtoken needs a process-wide crypto provider when several backends
/// are compiled in (`--all-features`); the authenticators install it too,
/// but tests may sign before building one.
pub fn init() {
    #[cfg(feature = "jwt")]
    let provider = &jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER;
    #[cfg(not(feature = "jwt"))]
    let provider = &jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER;
    let _ = jsonwebtoken::crypto::CryptoProvider::install_default(provider);
}

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Standard valid claims for `sub`.
pub fn claims(sub: &str) -> Value {
    json!({"sub": sub, "exp": now() + 300, "iat": now()})
}

pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn b64_decode(text: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(text).unwrap()
}

/// The base64 body of a PEM document, on one line.
pub fn pem_body_b64(pem: &str) -> String {
    pem.lines().filter(|l| !l.starts_with("-----")).collect()
}

/// The DER inside a PEM document.
pub fn pem_body(pem: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(pem_body_b64(pem))
        .unwrap()
}

/// Signs `claims` under exactly `header` (serialized as given) with `key`.
pub fn sign_raw(header: &Value, claims: &Value, key: &EncodingKey, alg: Algorithm) -> String {
    init();
    let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
    let sig = jsonwebtoken::crypto::sign(input.as_bytes(), key, alg).unwrap();
    format!("{input}.{sig}")
}

pub fn sign(alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
    let mut header = json!({"alg": format!("{alg:?}"), "typ": "JWT"});
    if let Some(kid) = kid {
        header["kid"] = json!(kid);
    }
    sign_raw(&header, claims, &encoding_key(alg), alg)
}

/// The test signing key for `alg`.
pub fn encoding_key(alg: Algorithm) -> EncodingKey {
    use Algorithm::*;
    match alg {
        HS256 => EncodingKey::from_secret(HS256_SECRET),
        HS384 => EncodingKey::from_secret(HS384_SECRET),
        HS512 => EncodingKey::from_secret(HS512_SECRET),
        RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => {
            EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap()
        }
        ES256 => EncodingKey::from_ec_pem(EC256_PRIVATE.as_bytes()).unwrap(),
        ES384 => EncodingKey::from_ec_pem(EC384_PRIVATE.as_bytes()).unwrap(),
        EdDSA => EncodingKey::from_ed_pem(ED_PRIVATE.as_bytes()).unwrap(),
        _ => unreachable!(),
    }
}

/// The public JWK of a private PEM, as a JSON object, with `kid`.
pub fn public_jwk(alg: Algorithm, private: &EncodingKey, kid: &str) -> Value {
    init();
    let jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(private, alg).unwrap();
    let mut value = serde_json::to_value(jwk).unwrap();
    value["kid"] = json!(kid);
    value
}

/// Typed claims the handler reads back from the `Identity`.
#[derive(Debug, Deserialize)]
pub struct TestClaims {
    pub sub: String,
    #[serde(default)]
    pub tenant: Option<String>,
}

/// What the handler saw, sent as the first message on the socket.
#[derive(Debug, Deserialize)]
pub struct Seen {
    pub subject: String,
    pub scopes: Vec<String>,
    pub token_id: Option<String>,
    pub expires_at: Option<u64>,
    pub tenant: Option<String>,
    pub method: String,
}

/// Counts how often the handler ran: a rejected handshake must never
/// reach it.
#[derive(Clone, Default)]
pub struct Handled(Arc<AtomicUsize>);

impl Handled {
    pub fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

async fn ws(State(handled): State<Handled>, ws: WebSocketUpgrade, identity: Identity) -> Response {
    handled.0.fetch_add(1, Ordering::SeqCst);
    let seen = json!({
        "subject": identity.subject(),
        "scopes": identity.scopes().collect::<Vec<_>>(),
        "token_id": identity.token_id(),
        "expires_at": identity
            .expires_at()
            .map(|t| t.duration_since(UNIX_EPOCH).unwrap().as_secs()),
        "tenant": identity.claims::<TestClaims>().and_then(|c| c.tenant.clone())
            .or_else(|| identity.claims::<Value>()?.get("tenant")?.as_str().map(String::from)),
        "method": identity.method().to_string(),
    });
    ws.protocols(["chat"])
        .on_upgrade(move |mut socket| async move {
            let _ = socket
                .send(AxumMessage::Text(seen.to_string().into()))
                .await;
            let _ = socket.recv().await;
        })
}

pub struct Server {
    pub addr: SocketAddr,
    pub handled: Handled,
}

/// Serves `/ws` behind `WsAuthLayer::new(auth).bearer_header().subprotocol_token()`.
pub async fn serve<A: Authenticator>(auth: A) -> Server {
    serve_layer(WsAuthLayer::new(auth).bearer_header().subprotocol_token()).await
}

pub async fn serve_layer<A: Authenticator>(layer: WsAuthLayer<A>) -> Server {
    let handled = Handled::default();
    let app = Router::new()
        .route("/ws", get(ws))
        .with_state(handled.clone())
        .layer(layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Server { addr, handled }
}

/// How the client presents the token.
#[derive(Debug, Clone, Copy)]
pub enum Via {
    Bearer,
    Subprotocol,
}

/// The outcome of a handshake: what the handler saw, or the HTTP response.
#[derive(Debug)]
pub enum Outcome {
    Accepted(Seen),
    Rejected(tungstenite::http::Response<Option<Vec<u8>>>),
}

pub async fn connect(addr: SocketAddr, token: &str, via: Via) -> Outcome {
    let mut request = format!("ws://{addr}/ws").into_client_request().unwrap();
    match via {
        Via::Bearer => {
            request.headers_mut().insert(
                AUTHORIZATION,
                HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
            );
        }
        Via::Subprotocol => {
            request.headers_mut().insert(
                SEC_WEBSOCKET_PROTOCOL,
                HeaderValue::from_str(&format!("chat, base64url.bearer.{}", b64(token))).unwrap(),
            );
        }
    }
    let attempt = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(request),
    )
    .await
    .expect("handshake hung");
    match attempt {
        Ok((mut socket, response)) => {
            assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
            if let Via::Subprotocol = via {
                assert_eq!(response.headers()[SEC_WEBSOCKET_PROTOCOL], "chat");
            }
            let first = tokio::time::timeout(Duration::from_secs(5), socket.next())
                .await
                .expect("no first message")
                .expect("socket closed")
                .expect("socket error");
            let Message::Text(text) = first else {
                panic!("unexpected message {first:?}")
            };
            Outcome::Accepted(serde_json::from_str(&text).unwrap())
        }
        Err(tungstenite::Error::Http(response)) => Outcome::Rejected(*response),
        Err(other) => panic!("handshake failed without an HTTP answer: {other}"),
    }
}

/// Connects with a bearer token and expects the upgrade to succeed.
pub async fn accepted(addr: SocketAddr, token: &str) -> Seen {
    accepted_via(addr, token, Via::Bearer).await
}

pub async fn accepted_via(addr: SocketAddr, token: &str, via: Via) -> Seen {
    match connect(addr, token, via).await {
        Outcome::Accepted(seen) => seen,
        Outcome::Rejected(r) => {
            panic!("expected an upgrade, got {}: {:?}", r.status(), r.headers())
        }
    }
}

/// Connects and expects `status` with exactly `challenge` as
/// `WWW-Authenticate` (`None`: no such header).
pub async fn rejected(
    addr: SocketAddr,
    token: &str,
    via: Via,
    status: u16,
    challenge: Option<&str>,
) {
    match connect(addr, token, via).await {
        Outcome::Accepted(seen) => panic!("expected {status}, got an upgrade for {seen:?}"),
        Outcome::Rejected(response) => {
            assert_eq!(response.status().as_u16(), status, "token {:.60}", token);
            let got = response
                .headers()
                .get(http::header::WWW_AUTHENTICATE)
                .map(|v| v.to_str().unwrap().to_owned());
            assert_eq!(got.as_deref(), challenge, "token {:.60}", token);
            // The body is generic: it never echoes the token.
            if let Some(body) = response.body() {
                let body = String::from_utf8_lossy(body);
                assert!(token.len() < 8 || !body.contains(token), "{body}");
            }
        }
    }
}

pub const INVALID_TOKEN: Option<&str> = Some("Bearer error=\"invalid_token\"");

/// 401 `invalid_token` through the bearer header.
pub async fn invalid(addr: SocketAddr, token: &str) {
    rejected(addr, token, Via::Bearer, 401, INVALID_TOKEN).await;
}
