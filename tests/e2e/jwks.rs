//! `RemoteJwks` against a JWKS / OpenID Connect server on 127.0.0.1 that
//! the tests control and count: caching, rotation, outages, floods of
//! unknown `kid`s, slow endpoints, discovery.
#![cfg(all(feature = "axum", feature = "jwks"))]

use crate::jwt_common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey};
use jwt_common::key_server::*;
use jwt_common::*;
use serde_json::json;
use tower_ws_auth::jwt::{JwtAuthenticator, RemoteJwks};

type Jwt = JwtAuthenticator;

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
        .max_body_bytes((16 * 1024).try_into().unwrap())
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
        .max_body_bytes((64 * 1024).try_into().unwrap())
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
        .algorithms([Algorithm::ES256])
        .build()
        .unwrap();
    assert_eq!(jwks.refresh().await.unwrap(), 1);
    assert_eq!(keys.hits(), 1);
    let auth = Jwt::from_remote_jwks(jwks);
    assert_eq!(auth.algorithms(), [Algorithm::ES256]);
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

/// Key server URLs and builder values that cannot be honoured are
/// configuration errors when the key source is built, never clamped.
#[test]
fn builder_checks() {
    let url = "https://x.example/jwks";
    assert!(RemoteJwks::builder(url).build().is_ok());
    assert!(
        RemoteJwks::builder("http://127.0.0.1:8080/keys")
            .build()
            .is_ok()
    );
    for bad in [
        "ftp://idp.example.com/jwks",
        "/jwks.json",
        "idp.example.com/jwks",
        "https://user:pw@idp.example.com/jwks",
        "not a url",
        "",
    ] {
        assert!(RemoteJwks::builder(bad).build().is_err(), "{bad}");
        assert!(RemoteJwks::discover(bad).build().is_err(), "{bad}");
    }
    let secs = Duration::from_secs;
    let refused = [
        RemoteJwks::builder(url).refresh_bounds(secs(10), secs(5)),
        RemoteJwks::builder(url).refresh_bounds(Duration::ZERO, secs(5)),
        RemoteJwks::builder(url).refresh_interval(secs(30)),
        RemoteJwks::builder(url)
            .refresh_bounds(secs(1), secs(10))
            .refresh_interval(secs(11)),
        RemoteJwks::builder(url).timeouts(Duration::ZERO, secs(1)),
        RemoteJwks::builder(url).algorithms([Algorithm::HS256]),
        RemoteJwks::builder(url).algorithms([]),
        RemoteJwks::builder(url).default_rsa_algorithm(Algorithm::ES256),
        RemoteJwks::builder(url).add_root_certificate_pem(b"not pem"),
    ];
    for (i, builder) in refused.into_iter().enumerate() {
        assert!(builder.build().is_err(), "case {i}");
    }
    assert!(
        RemoteJwks::builder(url)
            .refresh_bounds(secs(1), secs(10))
            .refresh_interval(secs(10))
            .build()
            .is_ok()
    );
    let oidc = RemoteJwks::discover("https://accounts.example.com/")
        .build()
        .unwrap();
    assert_eq!(oidc.issuer(), Some("https://accounts.example.com/"));
    assert_eq!(oidc.key_count(), 0);
}
