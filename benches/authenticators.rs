//! What each authenticator costs per upgrade, measured at the entry point
//! the layer calls (`Authenticator::authenticate`), next to what it is
//! built on:
//!
//! * JWT, per algorithm: `JwtAuthenticator` next to a bare
//!   `jsonwebtoken::decode` of the same token with the same checks
//!   (signature, `exp`, `sub`, typed claims) and next to the raw crypto
//!   floor, aws-lc-rs verifying the signature alone with a key parsed once
//!   (and, for scale, with the key parsed on every call, as
//!   `jsonwebtoken` does);
//! * API keys with 1 and 100,000 keys in `MemoryApiKeys`;
//! * a cookie session (`SessionAuthenticator` over `MemorySessionStore`,
//!   signed cookie);
//! * `cached`: a hit, and a miss (a new credential every time, the inner
//!   authenticator doing no work).
//!
//! ```sh
//! cargo bench --bench authenticators
//! ```
//!
//! Every future here completes on its first poll (static keys, in-memory
//! stores), so what is measured is CPU work on one thread.

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::signature::{self as sig, ParsedPublicKey, UnparsedPublicKey};
use aws_lc_rs::{hmac, signature::VerificationAlgorithm};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use tower_ws_auth::{
    AuthMethod, Authenticator, Carrier, Credential, Identity,
    api_key::ApiKeyAuthenticator,
    authenticate_fn,
    jwt::{JwtAuthenticator, JwtKey},
    session::{MemorySessionStore, SessionAuthenticator, SessionCookie, cookie::Key},
};

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

/// Polls a future that completes without waiting (static keys, in-memory
/// stores), on this thread.
fn ready<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    // A cache may yield once for its housekeeping; nothing here waits on I/O.
    for _ in 0..16 {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
    }
    panic!("the benchmarked future waits for something");
}

fn request_parts() -> http::request::Parts {
    http::Request::new(()).into_parts().0
}

/// The raw signature check: aws-lc-rs with a key parsed once.
#[allow(clippy::large_enum_variant)] // one per case, built once
enum Raw {
    Hmac(hmac::Key),
    Public(ParsedPublicKey),
}

impl Raw {
    fn verify(&self, input: &[u8], signature: &[u8]) -> bool {
        match self {
            Raw::Hmac(key) => hmac::verify(key, input, signature).is_ok(),
            Raw::Public(key) => key.verify_sig(input, signature).is_ok(),
        }
    }
}

fn jwt(c: &mut Criterion) {
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
    let parts = request_parts();

    struct Case {
        name: &'static str,
        alg: Algorithm,
        encoding: EncodingKey,
        decoding: DecodingKey,
        key: JwtKey,
        verification: Option<&'static dyn VerificationAlgorithm>,
    }
    let cases = [
        Case {
            name: "HS256",
            alg: Algorithm::HS256,
            encoding: EncodingKey::from_secret(SECRET),
            decoding: DecodingKey::from_secret(SECRET),
            key: JwtKey::hmac(Algorithm::HS256, SECRET).unwrap(),
            verification: None,
        },
        Case {
            name: "RS256",
            alg: Algorithm::RS256,
            encoding: EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap(),
            decoding: DecodingKey::from_rsa_pem(RSA_PUBLIC.as_bytes()).unwrap(),
            key: JwtKey::from_pem(Algorithm::RS256, RSA_PUBLIC).unwrap(),
            verification: Some(&sig::RSA_PKCS1_2048_8192_SHA256),
        },
        Case {
            name: "ES256",
            alg: Algorithm::ES256,
            encoding: EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap(),
            decoding: DecodingKey::from_ec_pem(EC_PUBLIC.as_bytes()).unwrap(),
            key: JwtKey::from_pem(Algorithm::ES256, EC_PUBLIC).unwrap(),
            verification: Some(&sig::ECDSA_P256_SHA256_FIXED),
        },
        Case {
            name: "EdDSA",
            alg: Algorithm::EdDSA,
            encoding: EncodingKey::from_ed_pem(ED_PRIVATE.as_bytes()).unwrap(),
            decoding: DecodingKey::from_ed_pem(ED_PUBLIC.as_bytes()).unwrap(),
            key: JwtKey::from_pem(Algorithm::EdDSA, ED_PUBLIC).unwrap(),
            verification: Some(&sig::ED25519),
        },
    ];

    for case in cases {
        let token = jsonwebtoken::encode(&Header::new(case.alg), &claims, &case.encoding).unwrap();
        let mut validation = Validation::new(case.alg);
        validation.leeway = 30;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let auth = JwtAuthenticator::new(case.key).unwrap().claims::<Claims>();
        let credential = Credential::new(Carrier::Bearer, token.clone());

        // The raw floor: the signature over the signing input, decoded
        // beforehand, with the same key bytes jsonwebtoken holds.
        let (input, signature) = token.rsplit_once('.').unwrap();
        let signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
        let key_bytes = match case.decoding.kind() {
            DecodingKeyKind::SecretOrDer(bytes) => bytes.clone(),
            DecodingKeyKind::RsaModulusExponent { .. } => unreachable!("keys come from PEM here"),
        };
        let raw = match case.verification {
            None => Raw::Hmac(hmac::Key::new(hmac::HMAC_SHA256, SECRET)),
            Some(alg) => Raw::Public(ParsedPublicKey::new(alg, &key_bytes).unwrap()),
        };

        // Every way accepts the token before anything is measured.
        assert!(raw.verify(input.as_bytes(), &signature));
        jsonwebtoken::decode::<Claims>(&token, &case.decoding, &validation).unwrap();
        ready(auth.authenticate(&credential, &parts)).unwrap();

        let mut group = c.benchmark_group(format!("jwt/{}", case.name));
        group.bench_function("raw signature check (aws-lc-rs, key parsed once)", |b| {
            b.iter(|| assert!(raw.verify(black_box(input.as_bytes()), black_box(&signature))))
        });
        if let Some(alg) = case.verification {
            group.bench_function(
                "raw signature check (aws-lc-rs, key parsed per call)",
                |b| {
                    b.iter(|| {
                        UnparsedPublicKey::new(alg, &key_bytes)
                            .verify(black_box(input.as_bytes()), black_box(&signature))
                            .unwrap()
                    })
                },
            );
        }
        group.bench_function("jsonwebtoken::decode", |b| {
            b.iter(|| {
                jsonwebtoken::decode::<Claims>(black_box(&token), &case.decoding, &validation)
                    .unwrap()
            })
        });
        group.bench_function("JwtAuthenticator", |b| {
            b.iter(|| ready(auth.authenticate(black_box(&credential), &parts)).unwrap())
        });
        group.finish();
    }
}

fn api_keys(c: &mut Criterion) {
    let parts = request_parts();
    let mut group = c.benchmark_group("api_key");
    for count in [1usize, 100_000] {
        let keys = (0..count).map(|i| {
            (
                format!("sk_live_{i:08}_0123456789abcdef"),
                Identity::new(format!("service-{i}"), AuthMethod::ApiKey),
            )
        });
        let auth = ApiKeyAuthenticator::from_keys(keys);
        let known = Credential::new(
            Carrier::Bearer,
            format!("sk_live_{:08}_0123456789abcdef", count / 2),
        );
        let unknown = Credential::new(Carrier::Bearer, "sk_live_unknown_0123456789abcdef");
        assert!(ready(auth.authenticate(&known, &parts)).is_ok());
        assert!(ready(auth.authenticate(&unknown, &parts)).is_err());
        group.bench_function(format!("{count} keys, known key"), |b| {
            b.iter(|| ready(auth.authenticate(black_box(&known), &parts)).unwrap())
        });
        group.bench_function(format!("{count} keys, unknown key"), |b| {
            b.iter(|| ready(auth.authenticate(black_box(&unknown), &parts)).unwrap_err())
        });
    }
    group.finish();
}

#[derive(Clone)]
struct User {
    id: String,
    roles: Vec<String>,
}

fn sessions(c: &mut Criterion) {
    let parts = request_parts();
    let store = MemorySessionStore::new(Duration::from_secs(3600));
    // A store that holds other sessions too.
    for i in 0..10_000 {
        store
            .create(User {
                id: format!("user-{i}"),
                roles: vec!["chat".into()],
            })
            .unwrap();
    }
    let cookie = SessionCookie::new("session")
        .unwrap()
        .signed(Key::generate());
    let id = store
        .create(User {
            id: "alice".into(),
            roles: vec!["chat".into(), "admin".into()],
        })
        .unwrap();
    // The cookie's value, as the browser sends it back.
    let issued = cookie.issue(&id);
    let value = issued
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_owned();
    let credential = Credential::new(Carrier::Cookie, value);
    let auth = SessionAuthenticator::new(store, cookie, |user: &User| {
        Ok(Identity::builder(user.id.clone(), AuthMethod::Session)
            .scopes(user.roles.iter().cloned()))
    });
    assert_eq!(
        ready(auth.authenticate(&credential, &parts))
            .unwrap()
            .subject(),
        "alice"
    );
    let mut group = c.benchmark_group("session");
    group.bench_function("signed cookie, MemorySessionStore (10,001 sessions)", |b| {
        b.iter(|| ready(auth.authenticate(black_box(&credential), &parts)).unwrap())
    });
    group.finish();
}

fn cached(c: &mut Criterion) {
    let parts = request_parts();
    // With an expiry, as a JWT's identity has (a hit then also reads the
    // wall clock to check it).
    let identity = Identity::builder("alice", AuthMethod::Jwt)
        .scope("chat")
        .expires_in(Duration::from_secs(3600))
        .build();
    // An inner authenticator that does no work, so a miss shows the cache's
    // own cost.
    let noop = {
        let identity = identity.clone();
        authenticate_fn(move |_, _| std::future::ready(Ok(identity.clone())))
    };
    let auth = noop.cached(Duration::from_secs(300), 1_000_000);
    let token =
        "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXBsYWNlaG9sZGVyLXRoYXQtaXMtbG9uZw";
    let hit = Credential::new(Carrier::Bearer, token);
    ready(auth.authenticate(&hit, &parts)).unwrap();

    let mut group = c.benchmark_group("cached");
    group.bench_function("hit", |b| {
        b.iter(|| ready(auth.authenticate(black_box(&hit), &parts)).unwrap())
    });
    let mut n = 0u64;
    group.bench_function("miss (inner authenticator does no work)", |b| {
        b.iter_batched(
            || {
                n += 1;
                Credential::new(Carrier::Bearer, format!("{token}.{n}"))
            },
            |credential| ready(auth.authenticate(&credential, &parts)).unwrap(),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50);
    targets = jwt, api_keys, sessions, cached
}
criterion_main!(benches);
