//! A JWKS and OpenID Connect discovery server on 127.0.0.1 (plain HTTP or
//! HTTPS with a self-signed certificate) that tests control and count, and
//! the client-side helpers that go with it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use tower_ws_auth::jwt::{RemoteJwks, RemoteJwksBuilder};

use super::*;

#[derive(Clone, Debug)]
pub enum Mode {
    Up,
    Down,
    Slow(Duration),
    Body(&'static str),
    /// A body that never ends (`{"keys":[` and then spaces), streamed.
    Endless,
}

#[derive(Clone)]
pub struct KeyServerState {
    pub keys: Arc<Mutex<Vec<Value>>>,
    pub mode: Arc<Mutex<Mode>>,
    pub cache_control: Arc<Mutex<Option<&'static str>>>,
    pub issuer: Arc<Mutex<String>>,
    pub base: Arc<Mutex<String>>,
    pub jwks_hits: Arc<AtomicUsize>,
    pub discovery_hits: Arc<AtomicUsize>,
    /// Bytes of endless bodies the clients have pulled.
    pub endless_sent: Arc<AtomicUsize>,
}

/// A JWKS and OpenID Connect discovery server on 127.0.0.1.
pub struct KeyServer {
    pub base: String,
    pub state: KeyServerState,
}

impl KeyServer {
    pub async fn start(keys: Vec<Value>) -> Self {
        Self::start_with(keys, None).await
    }

    /// The same server over HTTPS, with a self-signed certificate for
    /// 127.0.0.1; returns the certificate (PEM) to trust.
    pub async fn start_tls(keys: Vec<Value>) -> (Self, String) {
        let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
        let pem = certified.cert.pem();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![certified.cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into()),
        )
        .unwrap();
        let server = Self::start_with(
            keys,
            Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))),
        )
        .await;
        (server, pem)
    }

    async fn start_with(keys: Vec<Value>, tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let state = KeyServerState {
            keys: Arc::new(Mutex::new(keys)),
            mode: Arc::new(Mutex::new(Mode::Up)),
            cache_control: Arc::new(Mutex::new(None)),
            issuer: Arc::new(Mutex::new(String::new())),
            base: Arc::new(Mutex::new(String::new())),
            jwks_hits: Arc::default(),
            discovery_hits: Arc::default(),
            endless_sent: Arc::default(),
        };
        let app = Router::new()
            .route("/jwks.json", get(jwks))
            .route("/.well-known/openid-configuration", get(discovery))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let base = format!("{scheme}://{}", listener.local_addr().unwrap());
        *state.issuer.lock().unwrap() = base.clone();
        *state.base.lock().unwrap() = base.clone();
        match tls {
            None => {
                tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
            }
            Some(acceptor) => {
                tokio::spawn(async move {
                    loop {
                        let Ok((stream, _)) = listener.accept().await else {
                            return;
                        };
                        let acceptor = acceptor.clone();
                        let app = app.clone();
                        tokio::spawn(async move {
                            // A client that refuses the certificate ends here.
                            let Ok(stream) = acceptor.accept(stream).await else {
                                return;
                            };
                            let service = hyper::service::service_fn(move |request| {
                                tower::ServiceExt::oneshot(app.clone(), request)
                            });
                            let _ = hyper_util::server::conn::auto::Builder::new(
                                hyper_util::rt::TokioExecutor::new(),
                            )
                            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                            .await;
                        });
                    }
                });
            }
        }
        Self { base, state }
    }

    pub fn url(&self) -> String {
        format!("{}/jwks.json", self.base)
    }

    pub fn set_keys(&self, keys: Vec<Value>) {
        *self.state.keys.lock().unwrap() = keys;
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.state.mode.lock().unwrap() = mode;
    }

    pub fn hits(&self) -> usize {
        self.state.jwks_hits.load(Ordering::SeqCst)
    }
}

async fn jwks(State(s): State<KeyServerState>) -> Response {
    s.jwks_hits.fetch_add(1, Ordering::SeqCst);
    let mode = s.mode.lock().unwrap().clone();
    let body = match mode {
        Mode::Down => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
        Mode::Slow(delay) => {
            tokio::time::sleep(delay).await;
            json!({"keys": *s.keys.lock().unwrap()}).to_string()
        }
        Mode::Body(body) => body.to_owned(),
        Mode::Endless => {
            let sent = s.endless_sent.clone();
            let chunk = bytes::Bytes::from(vec![b' '; 64 * 1024]);
            let chunks = std::iter::once(bytes::Bytes::from_static(b"{\"keys\":["))
                .chain(std::iter::repeat(chunk))
                .map(move |chunk| {
                    sent.fetch_add(chunk.len(), Ordering::SeqCst);
                    Ok::<_, std::convert::Infallible>(chunk)
                });
            return axum::body::Body::from_stream(futures_util::stream::iter(chunks))
                .into_response();
        }
        Mode::Up => json!({"keys": *s.keys.lock().unwrap()}).to_string(),
    };
    let mut response = body.into_response();
    if let Some(cc) = *s.cache_control.lock().unwrap() {
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static(cc));
    }
    response
}

async fn discovery(State(s): State<KeyServerState>) -> Response {
    s.discovery_hits.fetch_add(1, Ordering::SeqCst);
    let issuer = s.issuer.lock().unwrap().clone();
    let base = s.base.lock().unwrap().clone();
    axum::Json(json!({
        "issuer": issuer,
        "jwks_uri": format!("{base}/jwks.json"),
        "id_token_signing_alg_values_supported": ["RS256"],
    }))
    .into_response()
}

pub fn rsa_jwk(kid: &str) -> Value {
    public_jwk(Algorithm::RS256, &encoding_key(Algorithm::RS256), kid)
}

pub fn ec_jwk(kid: &str) -> Value {
    let mut jwk = public_jwk(Algorithm::ES256, &encoding_key(Algorithm::ES256), kid);
    // Without alg: inferred from the curve.
    jwk.as_object_mut().unwrap().remove("alg");
    jwk
}

pub fn ed_jwk(kid: &str) -> Value {
    public_jwk(Algorithm::EdDSA, &encoding_key(Algorithm::EdDSA), kid)
}

/// Short intervals so the tests stay quick; background refreshes out of
/// the way unless a test asks for them.
pub fn quick(url: &str) -> RemoteJwksBuilder {
    RemoteJwks::builder(url)
        .refetch_interval(Duration::from_millis(200))
        .refresh_bounds(Duration::from_secs(60), Duration::from_secs(120))
        .timeouts(Duration::from_millis(500), Duration::from_secs(1))
}

pub fn token(alg: Algorithm, kid: &str, sub: &str) -> String {
    sign(alg, Some(kid), &claims(sub))
}

pub async fn unavailable(addr: std::net::SocketAddr, token: &str) {
    match connect(addr, token, Via::Bearer).await {
        Outcome::Accepted(seen) => panic!("expected 503, got an upgrade for {seen:?}"),
        Outcome::Rejected(response) => {
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert!(response.headers().get(header::WWW_AUTHENTICATE).is_none());
            let retry: u64 = response.headers()[header::RETRY_AFTER]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!(retry >= 1);
        }
    }
}

pub async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
