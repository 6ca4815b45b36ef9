//! JWT verification through `JwtAuthenticator` (the `Authenticator` entry
//! point the layer calls) next to a bare `jsonwebtoken::decode` of the same
//! token with the same checks (signature, `exp`, `sub`, typed claims), per
//! algorithm.
//!
//! `cargo bench --bench jwt`

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use tower_ws_auth::{Authenticator, Carrier, Credential, JwtAlgorithm, JwtAuthenticator, JwtKey};

const RSA_PRIVATE: &str = include_str!("../tests/fixtures/rsa_private.pem");
const RSA_PUBLIC: &str = include_str!("../tests/fixtures/rsa_public.pem");
const EC_PRIVATE: &str = include_str!("../tests/fixtures/ec256_private.pem");
const EC_PUBLIC: &str = include_str!("../tests/fixtures/ec256_public.pem");
const ED_PRIVATE: &str = include_str!("../tests/fixtures/ed25519_private.pem");
const ED_PUBLIC: &str = include_str!("../tests/fixtures/ed25519_public.pem");
const SECRET: &[u8] = b"benchmark-hs256-secret-of-32-bytes!!";

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    iat: u64,
    scope: String,
    tenant: String,
}

/// Polls a future that completes without waiting (static keys never wait).
fn ready<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("static-key verification never waits"),
    }
}

fn bench(c: &mut Criterion) {
    let _ = jsonwebtoken::crypto::CryptoProvider::install_default(
        &jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER,
    );
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = Claims {
        sub: "user-42".into(),
        exp: now + 3600,
        iat: now,
        scope: "chat:read chat:write".into(),
        tenant: "acme".into(),
    };
    let (parts, ()) = http::Request::new(()).into_parts();

    type Case = (&'static str, Algorithm, EncodingKey, DecodingKey, JwtKey);
    let cases: Vec<Case> = vec![
        (
            "HS256",
            Algorithm::HS256,
            EncodingKey::from_secret(SECRET),
            DecodingKey::from_secret(SECRET),
            JwtKey::hmac(JwtAlgorithm::HS256, SECRET).unwrap(),
        ),
        (
            "RS256",
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap(),
            DecodingKey::from_rsa_pem(RSA_PUBLIC.as_bytes()).unwrap(),
            JwtKey::from_pem(JwtAlgorithm::RS256, RSA_PUBLIC).unwrap(),
        ),
        (
            "ES256",
            Algorithm::ES256,
            EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap(),
            DecodingKey::from_ec_pem(EC_PUBLIC.as_bytes()).unwrap(),
            JwtKey::from_pem(JwtAlgorithm::ES256, EC_PUBLIC).unwrap(),
        ),
        (
            "EdDSA",
            Algorithm::EdDSA,
            EncodingKey::from_ed_pem(ED_PRIVATE.as_bytes()).unwrap(),
            DecodingKey::from_ed_pem(ED_PUBLIC.as_bytes()).unwrap(),
            JwtKey::from_pem(JwtAlgorithm::EdDSA, ED_PUBLIC).unwrap(),
        ),
    ];

    for (name, alg, encoding, decoding, key) in cases {
        let token = jsonwebtoken::encode(&Header::new(alg), &claims, &encoding).unwrap();
        let mut validation = Validation::new(alg);
        validation.leeway = 30;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let auth = JwtAuthenticator::<Claims>::new(key).unwrap();
        let credential = Credential::new(Carrier::Bearer, token.clone());

        // Both accept the token before anything is measured.
        jsonwebtoken::decode::<Claims>(&token, &decoding, &validation).unwrap();
        ready(auth.authenticate(&credential, &parts)).unwrap();

        let mut group = c.benchmark_group(name);
        group.bench_function("jsonwebtoken::decode", |b| {
            b.iter(|| {
                jsonwebtoken::decode::<Claims>(black_box(&token), &decoding, &validation).unwrap()
            })
        });
        group.bench_function("JwtAuthenticator", |b| {
            b.iter(|| ready(auth.authenticate(black_box(&credential), &parts)).unwrap())
        });
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50);
    targets = bench
}
criterion_main!(benches);
