//! `RemoteJwks` against a JWKS / OpenID Connect server on 127.0.0.1 that
//! the tests control and count: caching, rotation, outages, floods of
//! unknown `kid`s, slow endpoints, discovery.
#![cfg(all(feature = "axum", feature = "jwks"))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod jwt_common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use jsonwebtoken::{Algorithm, EncodingKey};
use jwt_common::*;
use serde_json::{Value, json};
use tower_ws_auth::{JwtAlgorithm, JwtAuthenticator, RemoteJwks, RemoteJwksBuilder};

#[derive(Clone, Debug)]
enum Mode {
    Up,
    Down,
    Slow(Duration),
    Body(&'static str),
    /// A body that never ends (`{"keys":[` and then spaces), streamed.
    Endless,
}

#[derive(Clone)]
struct KeyServerState {
    keys: Arc<Mutex<Vec<Value>>>,
    mode: Arc<Mutex<Mode>>,
    cache_control: Arc<Mutex<Option<&'static str>>>,
    issuer: Arc<Mutex<String>>,
    base: Arc<Mutex<String>>,
    jwks_hits: Arc<AtomicUsize>,
    discovery_hits: Arc<AtomicUsize>,
    /// Bytes of endless bodies the clients have pulled.
    endless_sent: Arc<AtomicUsize>,
}

/// A JWKS and OpenID Connect discovery server on 127.0.0.1.
struct KeyServer {
    base: String,
    state: KeyServerState,
}

impl KeyServer {
    async fn start(keys: Vec<Value>) -> Self {
        Self::start_with(keys, None).await
    }

    /// The same server over HTTPS, with a self-signed certificate for
    /// 127.0.0.1; returns the certificate (PEM) to trust.
    async fn start_tls(keys: Vec<Value>) -> (Self, String) {
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

    fn url(&self) -> String {
        format!("{}/jwks.json", self.base)
    }

    fn set_keys(&self, keys: Vec<Value>) {
        *self.state.keys.lock().unwrap() = keys;
    }

    fn set_mode(&self, mode: Mode) {
        *self.state.mode.lock().unwrap() = mode;
    }

    fn hits(&self) -> usize {
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

fn rsa_jwk(kid: &str) -> Value {
    public_jwk(Algorithm::RS256, &encoding_key(Algorithm::RS256), kid)
}

fn ec_jwk(kid: &str) -> Value {
    let mut jwk = public_jwk(Algorithm::ES256, &encoding_key(Algorithm::ES256), kid);
    // Without alg: inferred from the curve.
    jwk.as_object_mut().unwrap().remove("alg");
    jwk
}

fn ed_jwk(kid: &str) -> Value {
    public_jwk(Algorithm::EdDSA, &encoding_key(Algorithm::EdDSA), kid)
}

/// Short intervals so the tests stay quick; background refreshes out of
/// the way unless a test asks for them.
fn quick(url: &str) -> RemoteJwksBuilder {
    RemoteJwks::builder(url)
        .refetch_interval(Duration::from_millis(200))
        .refresh_bounds(Duration::from_secs(60), Duration::from_secs(120))
        .timeouts(Duration::from_millis(500), Duration::from_secs(1))
}

type Jwt = JwtAuthenticator<TestClaims>;

fn token(alg: Algorithm, kid: &str, sub: &str) -> String {
    sign(alg, Some(kid), &claims(sub))
}

async fn unavailable(addr: std::net::SocketAddr, token: &str) {
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

async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn keys_are_fetched_once_and_cached() {
    init();
    let keys = KeyServer::start(vec![rsa_jwk("rsa-1"), ec_jwk("ec-1"), ed_jwk("ed-1")]).await;
    let jwks = quick(&keys.url()).build().unwrap();
    let server = serve(Jwt::from_remote_jwks(jwks.clone())).await;
    for _ in 0..3 {
        let seen = accepted(server.addr, &token(Algorithm::RS256, "rsa-1", "alice")).await;
        assert_eq!(seen.subject, "alice");
        assert_eq!(
            accepted(server.addr, &token(Algorithm::ES256, "ec-1", "bob"))
                .await
                .subject,
            "bob"
        );
        assert_eq!(
            accepted(server.addr, &token(Algorithm::EdDSA, "ed-1", "eve"))
                .await
                .subject,
            "eve"
        );
    }
    assert_eq!(keys.hits(), 1);
    assert_eq!(jwks.key_count(), 3);
    // A key pinned by its JWK refuses other algorithms of its family.
    invalid(server.addr, &token(Algorithm::PS256, "rsa-1", "alice")).await;
    // Remote sets never verify HMAC tokens, whatever the secret.
    let hs = sign_raw(
        &json!({"alg": "HS256", "kid": "rsa-1"}),
        &claims("mallory"),
        &EncodingKey::from_secret(RSA_PUBLIC.as_bytes()),
        Algorithm::HS256,
    );
    invalid(server.addr, &hs).await;
    assert_eq!(keys.hits(), 1);
}

#[tokio::test]
async fn rotation_picks_up_a_new_kid() {
    init();
    let keys = KeyServer::start(vec![rsa_jwk("2024")]).await;
    let server = serve(Jwt::from_remote_jwks(quick(&keys.url()).build().unwrap())).await;
    assert_eq!(
        accepted(server.addr, &token(Algorithm::RS256, "2024", "a"))
            .await
            .subject,
        "a"
    );
    assert_eq!(keys.hits(), 1);

    // The provider rotates: a new kid appears.
    keys.set_keys(vec![rsa_jwk("2024"), ec_jwk("2025")]);
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(
        accepted(server.addr, &token(Algorithm::ES256, "2025", "b"))
            .await
            .subject,
        "b"
    );
    assert_eq!(keys.hits(), 2);

    // The old key is withdrawn: once refetched, its tokens are refused.
    keys.set_keys(vec![ec_jwk("2025")]);
    tokio::time::sleep(Duration::from_millis(250)).await;
    // Unknown to the new set ("2023"), which triggers the refetch...
    invalid(server.addr, &token(Algorithm::RS256, "2023", "c")).await;
    assert_eq!(keys.hits(), 3);
    // ...after which the withdrawn kid is unknown too.
    tokio::time::sleep(Duration::from_millis(250)).await;
    invalid(server.addr, &token(Algorithm::RS256, "2024", "a")).await;
    assert_eq!(
        accepted(server.addr, &token(Algorithm::ES256, "2025", "b"))
            .await
            .subject,
        "b"
    );
}

#[tokio::test]
async fn background_refresh_follows_max_age_within_bounds() {
    init();
    // max-age of an hour, clamped down to the 300 ms upper bound.
    let keys = KeyServer::start(vec![rsa_jwk("k")]).await;
    *keys.state.cache_control.lock().unwrap() = Some("public, max-age=3600");
    let jwks = RemoteJwks::builder(&keys.url())
        .refresh_bounds(Duration::from_millis(200), Duration::from_millis(300))
        .build()
        .unwrap();
    let server = serve(Jwt::from_remote_jwks(jwks)).await;
    accepted(server.addr, &token(Algorithm::RS256, "k", "a")).await;
    wait_until("three background refreshes", || keys.hits() >= 4).await;

    // max-age=0 (and no-store), clamped up to the 600 ms lower bound: in
    // 1.3 s at most two background refreshes.
    let keys = KeyServer::start(vec![rsa_jwk("k")]).await;
    *keys.state.cache_control.lock().unwrap() = Some("no-store, max-age=0");
    let jwks = RemoteJwks::builder(&keys.url())
        .refresh_bounds(Duration::from_millis(600), Duration::from_secs(60))
        .build()
        .unwrap();
    let server = serve(Jwt::from_remote_jwks(jwks)).await;
    accepted(server.addr, &token(Algorithm::RS256, "k", "a")).await;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let hits = keys.hits();
    assert!((2..=3).contains(&hits), "{hits} fetches");

    // A rotation is picked up by the background refresh alone.
    keys.set_keys(vec![rsa_jwk("k"), ed_jwk("new")]);
    let before = keys.hits();
    wait_until("a background refresh", || keys.hits() > before).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let fetched = keys.hits();
    assert_eq!(
        accepted(server.addr, &token(Algorithm::EdDSA, "new", "n"))
            .await
            .subject,
        "n"
    );
    assert_eq!(keys.hits(), fetched, "the new kid was already cached");
}

#[tokio::test]
async fn endpoint_down_keeps_cached_keys() {
    init();
    let keys = KeyServer::start(vec![rsa_jwk("k1")]).await;
    let server = serve(Jwt::from_remote_jwks(quick(&keys.url()).build().unwrap())).await;
    accepted(server.addr, &token(Algorithm::RS256, "k1", "a")).await;

    keys.set_mode(Mode::Down);
    tokio::time::sleep(Duration::from_millis(250)).await;
    // Cached keys keep working, without any fetch.
    for _ in 0..3 {
        assert_eq!(
            accepted(server.addr, &token(Algorithm::RS256, "k1", "a"))
                .await
                .subject,
            "a"
        );
    }
    assert_eq!(keys.hits(), 1);
    // An unknown kid while the server is down: one fetch, which fails: 503.
    unavailable(server.addr, &token(Algorithm::ES256, "k2", "b")).await;
    assert_eq!(keys.hits(), 2);
    // Within the refetch interval: 503 again, no fetch.
    unavailable(server.addr, &token(Algorithm::ES256, "k2", "b")).await;
    assert_eq!(keys.hits(), 2);
    assert_eq!(
        accepted(server.addr, &token(Algorithm::RS256, "k1", "a"))
            .await
            .subject,
        "a"
    );

    // Back up with the new key: picked up on the next allowed fetch.
    keys.set_keys(vec![rsa_jwk("k1"), ec_jwk("k2")]);
    keys.set_mode(Mode::Up);
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(
        accepted(server.addr, &token(Algorithm::ES256, "k2", "b"))
            .await
            .subject,
        "b"
    );
    assert_eq!(server.handled.get(), 6);
}

#[tokio::test]
async fn no_usable_key_is_503() {
    init();
    // The endpoint answers 503.
    let keys = KeyServer::start(vec![rsa_jwk("k")]).await;
    keys.set_mode(Mode::Down);
    let server = serve(Jwt::from_remote_jwks(quick(&keys.url()).build().unwrap())).await;
    unavailable(server.addr, &token(Algorithm::RS256, "k", "a")).await;
    // Nothing listens at all.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = format!("http://{}/jwks.json", closed.local_addr().unwrap());
    drop(closed);
    let server2 = serve(Jwt::from_remote_jwks(quick(&dead).build().unwrap())).await;
    unavailable(server2.addr, &token(Algorithm::RS256, "k", "a")).await;
    // Garbage, an oversized body, and sets without a usable key.
    for body in [
        "not json",
        "{\"keys\": 5}",
        "{\"keys\": [{\"kty\": \"oct\", \"alg\": \"HS256\", \"k\": \"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0\"}]}",
        "{\"keys\": [{\"kty\": \"RSA\", \"use\": \"enc\", \"n\": \"AQAB\", \"e\": \"AQAB\"}]}",
        "{\"keys\": []}",
    ] {
        keys.set_mode(Mode::Body(body));
        let server = serve(Jwt::from_remote_jwks(quick(&keys.url()).build().unwrap())).await;
        unavailable(server.addr, &token(Algorithm::RS256, "k", "a")).await;
    }
    keys.set_mode(Mode::Up);
    keys.set_keys((0..200).map(|i| rsa_jwk(&format!("padding-{i}"))).collect());
    let capped = quick(&keys.url())
        .max_body_bytes(16 * 1024)
        .build()
        .unwrap();
    let server = serve(Jwt::from_remote_jwks(capped)).await;
    unavailable(server.addr, &token(Algorithm::RS256, "padding-1", "a")).await;
    assert_eq!(server.handled.get() + server2.handled.get(), 0);
}

/// Faults of the key server while keys are cached: down, garbage, a body
/// that never ends, an answer that takes 5 s. Each time a token with an
/// unknown `kid` makes the verifier fetch, gets 503 within the total
/// timeout, and the cached key keeps working, both through the fetch
/// triggered by that token and through background refreshes. No token is
/// ever accepted without its key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_keys_survive_every_kind_of_bad_answer() {
    init();
    let keys = KeyServer::start(vec![rsa_jwk("k1")]).await;
    let total_timeout = Duration::from_secs(1);
    let jwks = quick(&keys.url())
        .max_body_bytes(64 * 1024)
        .timeouts(Duration::from_millis(500), total_timeout)
        .build()
        .unwrap();
    let server = serve(Jwt::from_remote_jwks(jwks)).await;
    let good = token(Algorithm::RS256, "k1", "a");
    assert_eq!(accepted(server.addr, &good).await.subject, "a");

    let faults = [
        Mode::Down,
        Mode::Body("not json"),
        Mode::Body("{\"keys\": 5}"),
        Mode::Body("<html><body>502 Bad Gateway</body></html>"),
        Mode::Endless,
        Mode::Slow(Duration::from_secs(5)),
    ];
    for fault in faults {
        keys.set_mode(fault.clone());
        // Past the refetch interval, so the next unknown kid fetches.
        tokio::time::sleep(Duration::from_millis(250)).await;
        let hits = keys.hits();
        let started = Instant::now();
        unavailable(server.addr, &token(Algorithm::RS256, "k2", "b")).await;
        let waited = started.elapsed();
        assert_eq!(keys.hits(), hits + 1, "{fault:?}: one fetch");
        assert!(
            waited < total_timeout + Duration::from_secs(1),
            "{fault:?}: the request waited {waited:?}"
        );
        // A forged token for the missing kid never gets through either.
        unavailable(server.addr, &token(Algorithm::RS256, "k2", "b")).await;
        assert_eq!(
            accepted(server.addr, &good).await.subject,
            "a",
            "{fault:?}: the cached key stopped working"
        );
    }
    // The endless body was cut at the cap: what the client pulled is the
    // cap plus what socket buffers hold, not the body.
    let pulled = keys.state.endless_sent.load(Ordering::SeqCst);
    assert!(pulled < 16 * 1024 * 1024, "{pulled} bytes pulled");

    // Background refreshes against a broken endpoint keep the keys too.
    keys.set_mode(Mode::Body("not json"));
    let refreshing = quick(&keys.url())
        .refresh_bounds(Duration::from_millis(100), Duration::from_millis(200))
        .build()
        .unwrap();
    let server = serve(Jwt::from_remote_jwks(refreshing)).await;
    keys.set_mode(Mode::Up);
    assert_eq!(accepted(server.addr, &good).await.subject, "a");
    keys.set_mode(Mode::Body("not json"));
    let hits = keys.hits();
    wait_until("background refreshes", || keys.hits() >= hits + 3).await;
    assert_eq!(accepted(server.addr, &good).await.subject, "a");
    assert_eq!(server.handled.get(), 2);
}

#[tokio::test]
async fn stale_keys_expire_when_configured() {
    init();
    let keys = KeyServer::start(vec![rsa_jwk("k")]).await;
    let jwks = quick(&keys.url())
        .max_stale(Duration::from_millis(300))
        .build()
        .unwrap();
    let server = serve(Jwt::from_remote_jwks(jwks)).await;
    accepted(server.addr, &token(Algorithm::RS256, "k", "a")).await;
    keys.set_mode(Mode::Down);
    tokio::time::sleep(Duration::from_millis(400)).await;
    unavailable(server.addr, &token(Algorithm::RS256, "k", "a")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_unknown_kids_fetches_at_most_once_per_interval() {
    init();
    let keys = KeyServer::start(vec![rsa_jwk("real")]).await;
    let jwks = quick(&keys.url())
        .refetch_interval(Duration::from_secs(2))
        .build()
        .unwrap();
    let server = serve(Jwt::from_remote_jwks(jwks)).await;
    accepted(server.addr, &token(Algorithm::RS256, "real", "a")).await;
    assert_eq!(keys.hits(), 1);

    let flood = |round: usize| {
        let addr = server.addr;
        (0..40)
            .map(move |i| {
                let t = token(Algorithm::RS256, &format!("forged-{round}-{i}"), "mallory");
                tokio::spawn(async move { invalid(addr, &t).await })
            })
            .collect::<Vec<_>>()
    };
    // Within the interval of the first fetch: no fetch at all.
    for task in flood(0) {
        task.await.unwrap();
    }
    assert_eq!(keys.hits(), 1);

    // After the interval, concurrent unknown kids share a single fetch.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    for task in flood(1) {
        task.await.unwrap();
    }
    assert_eq!(keys.hits(), 2);
    for task in flood(2) {
        task.await.unwrap();
    }
    assert_eq!(keys.hits(), 2);
    assert_eq!(server.handled.get(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_endpoint_does_not_delay_known_kids() {
    init();
    let keys = KeyServer::start(vec![rsa_jwk("known")]).await;
    let jwks = quick(&keys.url())
        .refetch_interval(Duration::from_millis(100))
        .timeouts(Duration::from_millis(500), Duration::from_millis(1500))
        .build()
        .unwrap();
    let server = serve(Jwt::from_remote_jwks(jwks)).await;
    accepted(server.addr, &token(Algorithm::RS256, "known", "a")).await;

    keys.set_mode(Mode::Slow(Duration::from_secs(5)));
    tokio::time::sleep(Duration::from_millis(150)).await;
    let addr = server.addr;
    let unknown = token(Algorithm::RS256, "unknown", "b");
    let started = Instant::now();
    let waiting = tokio::spawn(async move { unavailable(addr, &unknown).await });
    wait_until("the slow fetch to start", || keys.hits() == 2).await;

    // While that fetch hangs, known kids are served at once.
    for _ in 0..5 {
        let t0 = Instant::now();
        assert_eq!(
            accepted(server.addr, &token(Algorithm::RS256, "known", "a"))
                .await
                .subject,
            "a"
        );
        assert!(
            t0.elapsed() < Duration::from_millis(500),
            "{:?}",
            t0.elapsed()
        );
    }
    // The request that needed the fetch gets 503 once the total timeout ends.
    waiting.await.unwrap();
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1400) && waited < Duration::from_secs(4),
        "{waited:?}"
    );
    assert_eq!(keys.hits(), 2);
}

#[tokio::test]
async fn oidc_discovery() {
    init();
    let keys = KeyServer::start(vec![rsa_jwk("oidc-1")]).await;
    let issuer = keys.base.clone();
    let server = serve(Jwt::from_oidc_issuer(&issuer).unwrap()).await;
    let mut good = claims("alice");
    good["iss"] = json!(issuer);
    let seen = accepted(server.addr, &sign(Algorithm::RS256, Some("oidc-1"), &good)).await;
    assert_eq!(seen.subject, "alice");
    // The issuer is enforced on tokens.
    let mut other = good.clone();
    other["iss"] = json!("https://evil.test");
    invalid(server.addr, &sign(Algorithm::RS256, Some("oidc-1"), &other)).await;
    invalid(
        server.addr,
        &sign(Algorithm::RS256, Some("oidc-1"), &claims("no-iss")),
    )
    .await;
    assert_eq!(keys.state.discovery_hits.load(Ordering::SeqCst), 1);
    assert_eq!(keys.hits(), 1);

    // A discovery document for another issuer is not trusted: no keys, 503.
    let keys = KeyServer::start(vec![rsa_jwk("oidc-1")]).await;
    let issuer = keys.base.clone();
    *keys.state.issuer.lock().unwrap() = format!("{issuer}/other");
    let jwks = RemoteJwks::discover(&issuer)
        .refetch_interval(Duration::from_millis(100))
        .build()
        .unwrap();
    assert_eq!(jwks.issuer(), Some(issuer.as_str()));
    assert!(jwks.refresh().await.is_err());
    let server = serve(Jwt::from_remote_jwks(jwks)).await;
    let mut t = claims("alice");
    t["iss"] = json!(issuer);
    unavailable(server.addr, &sign(Algorithm::RS256, Some("oidc-1"), &t)).await;
    assert_eq!(
        keys.hits(),
        0,
        "the JWKS of a mismatched issuer was fetched"
    );
}

#[tokio::test]
async fn warm_up_and_algorithm_restrictions() {
    init();
    let keys = KeyServer::start(vec![rsa_jwk("r"), ec_jwk("e")]).await;
    let jwks = quick(&keys.url())
        .algorithms([JwtAlgorithm::ES256])
        .build()
        .unwrap();
    assert_eq!(jwks.refresh().await.unwrap(), 1);
    assert_eq!(keys.hits(), 1);
    let auth = Jwt::from_remote_jwks(jwks);
    assert_eq!(auth.algorithms(), [JwtAlgorithm::ES256]);
    let server = serve(auth).await;
    assert_eq!(
        accepted(server.addr, &token(Algorithm::ES256, "e", "a"))
            .await
            .subject,
        "a"
    );
    invalid(server.addr, &token(Algorithm::RS256, "r", "b")).await;
    assert_eq!(keys.hits(), 1);
    // Debug output names the source, never key material.
    let shown = format!("{auth:?}", auth = Jwt::from_jwks(&keys.url()).unwrap());
    assert!(shown.contains("jwks_uri"), "{shown}");
}

#[tokio::test]
async fn https_key_server() {
    init();
    let (keys, root_pem) = KeyServer::start_tls(vec![ec_jwk("tls-1")]).await;
    assert!(keys.url().starts_with("https://127.0.0.1:"));
    // Trusting the server's certificate: keys are fetched over TLS.
    let jwks = quick(&keys.url())
        .add_root_certificate_pem(&root_pem)
        .build()
        .unwrap();
    assert_eq!(jwks.refresh().await.unwrap(), 1);
    let server = serve(Jwt::from_remote_jwks(jwks)).await;
    assert_eq!(
        accepted(server.addr, &token(Algorithm::ES256, "tls-1", "tls"))
            .await
            .subject,
        "tls"
    );
    assert_eq!(keys.hits(), 1);

    // Without it (webpki roots only), the certificate is refused: no keys, 503.
    let untrusted = quick(&keys.url()).build().unwrap();
    assert!(untrusted.refresh().await.is_err());
    let server = serve(Jwt::from_remote_jwks(untrusted)).await;
    unavailable(server.addr, &token(Algorithm::ES256, "tls-1", "tls")).await;
    assert_eq!(keys.hits(), 1, "an untrusted server was asked for keys");
}
