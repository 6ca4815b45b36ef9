//! "JWT": `JwtAuthenticator` behind the layer, attacked through real
//! handshakes; keys from PEM fixtures or from a JWKS server on 127.0.0.1.

use std::time::{Duration, Instant};

use http::StatusCode;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};
use tower_ws_auth::{
    ConfigError, WsAuthLayer,
    jwt::{JwtAuthenticator, JwtKey},
};

use super::common::offer;
use super::jwt_common::key_server::{KeyServer, Mode, quick, rsa_jwk, wait_until};
use super::jwt_common::{
    EC256_PUBLIC, EC384_PUBLIC, ED_PUBLIC, HS256_SECRET, RSA_PRIVATE, RSA_PUBLIC, RSA2_PRIVATE,
    RSA2_PUBLIC, b64, claims, encoding_key, init, now, pem_body, pem_body_b64, public_jwk, sign,
    sign_raw,
};
use super::{INVALID_TOKEN, Server, assert_refusal, bearer};

type Jwt = JwtAuthenticator;

/// A server verifying with `auth` on the bearer and subprotocol carriers.
async fn jwt_server(auth: Jwt) -> Server {
    Server::start(WsAuthLayer::new(auth).bearer_header().subprotocol_token()).await
}

/// Each `(case, token)` is refused with 401 `invalid_token`, through the
/// bearer header.
async fn all_invalid(server: &Server, cases: &[(String, String)]) {
    for (case, token) in cases {
        let refused = server
            .refused("/ws", &[("authorization", &bearer(token))], case)
            .await;
        assert_refusal(&refused, StatusCode::UNAUTHORIZED, INVALID_TOKEN, case);
    }
}

async fn accepted(server: &Server, token: &str, case: &str) -> String {
    server
        .subject("/ws", &[("authorization", &bearer(token))], case)
        .await
}

fn rsa(kid: &str) -> JwtKey {
    JwtKey::from_pem(Algorithm::RS256, RSA_PUBLIC)
        .unwrap()
        .with_kid(kid)
}

/// "Algorithms come from configuration, pinned per key; `alg` in the token
/// only selects among them. `none` in any spelling is refused, and so is an
/// HMAC token verified with an RSA/EC public key as the secret."
#[tokio::test]
async fn algorithms_come_from_configuration_and_none_or_hmac_with_a_public_key_is_refused() {
    init();
    let auth = Jwt::with_keys([
        rsa("rsa"),
        JwtKey::from_pem(Algorithm::ES256, EC256_PUBLIC)
            .unwrap()
            .with_kid("ec"),
    ])
    .unwrap();
    let server = jwt_server(auth).await;
    let raw = |header: Value, key: &EncodingKey, alg: Algorithm| {
        sign_raw(&header, &claims("mallory"), key, alg)
    };
    let genuine = sign(Algorithm::RS256, Some("rsa"), &claims("alice"));
    let signature = genuine.rsplit('.').next().unwrap().to_owned();
    let body = b64(claims("mallory").to_string());

    let mut cases = Vec::new();
    for none in ["none", "None", "NONE", "nOnE"] {
        for kid in [None, Some("rsa")] {
            let mut header = json!({"alg": none, "typ": "JWT"});
            if let Some(kid) = kid {
                header["kid"] = json!(kid);
            }
            let header = b64(header.to_string());
            cases.push((
                format!("alg {none:?}, kid {kid:?}, unsigned"),
                format!("{header}.{body}."),
            ));
            cases.push((
                format!("alg {none:?}, kid {kid:?}, a borrowed signature"),
                format!("{header}.{body}.{signature}"),
            ));
        }
    }
    for (kid, public) in [("rsa", RSA_PUBLIC), ("ec", EC256_PUBLIC)] {
        let der = pem_body(public);
        let secrets: [(&str, &[u8]); 3] = [
            ("PEM", public.as_bytes()),
            ("PEM without its last newline", public.trim_end().as_bytes()),
            ("DER", &der),
        ];
        for (form, secret) in secrets {
            for hs in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
                let token = raw(
                    json!({"alg": format!("{hs:?}"), "kid": kid}),
                    &EncodingKey::from_secret(secret),
                    hs,
                );
                cases.push((
                    format!("{hs:?} keyed with the {kid} public key as {form}"),
                    token,
                ));
            }
        }
    }
    for (alg, kid) in [
        (Algorithm::RS384, "rsa"),
        (Algorithm::RS512, "rsa"),
        (Algorithm::PS256, "rsa"),
        (Algorithm::ES384, "ec"),
        (Algorithm::RS256, "ec"),
    ] {
        let token = raw(
            json!({"alg": format!("{alg:?}"), "kid": kid}),
            &encoding_key(alg),
            alg,
        );
        cases.push((
            format!("{alg:?} on the key {kid:?}, pinned to another algorithm"),
            token,
        ));
    }
    let lower = raw(
        json!({"alg": "rs256", "kid": "rsa"}),
        &encoding_key(Algorithm::RS256),
        Algorithm::RS256,
    );
    cases.push(("alg in lower case".to_owned(), lower));
    all_invalid(&server, &cases).await;
    server.assert_reached(0, "algorithm confusion");

    assert_eq!(
        accepted(&server, &genuine, "RS256 on its key").await,
        "alice"
    );
    let es = sign(Algorithm::ES256, Some("ec"), &claims("bob"));
    assert_eq!(accepted(&server, &es, "ES256 on its key").await, "bob");
    server.assert_reached(2, "algorithm confusion");
}

/// "Key material in the token header (`jwk`, `jku`, `x5u`, `x5c`) is never
/// trusted or fetched. `kid` is an opaque, length-capped lookup key."
///
/// The URLs point at a live key server holding the attacker's key: had
/// they been followed, the forged tokens would verify.
#[tokio::test]
async fn key_material_in_the_token_header_is_never_trusted_or_fetched_and_kid_is_capped() {
    init();
    let attacker = EncodingKey::from_rsa_pem(RSA2_PRIVATE.as_bytes()).unwrap();
    let attacker_jwk = public_jwk(Algorithm::RS256, &attacker, "attacker");
    let keys = KeyServer::start(vec![attacker_jwk.clone()]).await;
    let longest = "k".repeat(256);
    let server = jwt_server(Jwt::with_keys([rsa("rsa"), rsa(&longest)]).unwrap()).await;

    let x5c = pem_body_b64(RSA2_PUBLIC);
    let headers = [
        ("jwk", json!({"alg": "RS256", "jwk": attacker_jwk})),
        ("jku", json!({"alg": "RS256", "jku": keys.url()})),
        ("x5u", json!({"alg": "RS256", "x5u": keys.url()})),
        ("x5c", json!({"alg": "RS256", "x5c": [x5c]})),
        (
            "x5t",
            json!({"alg": "RS256", "x5t": "c29tZS10aHVtYnByaW50", "x5c": [x5c]}),
        ),
        (
            "kid of the attacker's key and jku",
            json!({"alg": "RS256", "kid": "attacker", "jku": keys.url()}),
        ),
        (
            "kid of the real key and jwk",
            json!({"alg": "RS256", "kid": "rsa", "jwk": attacker_jwk}),
        ),
    ];
    let forged: Vec<(String, String)> = headers
        .iter()
        .map(|(case, header)| {
            (
                format!("forged, {case}"),
                sign_raw(header, &claims("mallory"), &attacker, Algorithm::RS256),
            )
        })
        .collect();
    all_invalid(&server, &forged).await;
    // On genuine tokens the same headers are ignored, not followed.
    let genuine = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();
    for (case, header) in &headers {
        let mut header = header.clone();
        header["kid"] = json!("rsa");
        let token = sign_raw(&header, &claims("alice"), &genuine, Algorithm::RS256);
        assert_eq!(
            accepted(&server, &token, &format!("genuine, {case}")).await,
            "alice"
        );
    }
    assert_eq!(keys.hits(), 0, "a URL from a token header was fetched");
    server.assert_reached(headers.len(), "header key material");

    // kid: compared exactly, never interpreted, at most 256 bytes.
    let with_kid = |kid: Value| {
        sign_raw(
            &json!({"alg": "RS256", "kid": kid}),
            &claims("mallory"),
            &genuine,
            Algorithm::RS256,
        )
    };
    let mut cases: Vec<(String, String)> = [
        "RSA",
        "rsa ",
        " rsa",
        "rsa\u{0}",
        "../rsa",
        "rsa' OR '1'='1",
        "*",
        "",
    ]
    .into_iter()
    .map(|kid| (format!("kid {kid:?}"), with_kid(json!(kid))))
    .collect();
    cases.push(("kid of 257 bytes".into(), with_kid(json!("k".repeat(257)))));
    for kid in [json!(1), json!(null), json!(["rsa"]), json!({"kid": "rsa"})] {
        cases.push((format!("kid {kid} of the wrong type"), with_kid(kid)));
    }
    all_invalid(&server, &cases).await;
    let longest_token = sign(Algorithm::RS256, Some(&longest), &claims("alice"));
    assert_eq!(
        accepted(&server, &longest_token, "kid of 256 bytes").await,
        "alice"
    );
    let too_long = Jwt::with_keys([rsa(&"k".repeat(257))]);
    assert!(too_long.is_err(), "a key with a 257-byte kid was accepted");
    server.assert_reached(headers.len() + 1, "kid");
}

/// "`exp`, `nbf`, `aud`, `iss` are validated as configured; a claim of the
/// wrong JSON type is a failure, never "absent". Connection tokens should
/// require `exp`. Leeway is bounded and configurable." The leeway widens
/// `nbf` only; no token past its `exp` is upgraded.
#[tokio::test]
async fn registered_claims_are_validated_as_configured_and_wrong_types_fail() {
    init();
    let hs = || Jwt::hs256(HS256_SECRET).unwrap();
    let strict = jwt_server(hs().audience(["chat"]).issuer(["https://idp.test"])).await;
    let n = now();
    let good = json!({"sub": "alice", "exp": n + 300, "aud": "chat", "iss": "https://idp.test"});
    let token = |claims: &Value| sign(Algorithm::HS256, None, claims);
    let edit = |claim: &str, value: Option<Value>| {
        let mut c = good.clone();
        match value {
            Some(value) => c[claim] = value,
            None => {
                c.as_object_mut().unwrap().remove(claim);
            }
        }
        token(&c)
    };
    let mut cases: Vec<(String, String)> = Vec::new();
    let mut case =
        |name: String, claim: &str, value: Option<Value>| cases.push((name, edit(claim, value)));
    case("expired".into(), "exp", Some(json!(n - 120)));
    case("not yet valid".into(), "nbf", Some(json!(n + 120)));
    case("other audience".into(), "aud", Some(json!("other")));
    case(
        "no accepted audience in the list".into(),
        "aud",
        Some(json!(["other", "chat2"])),
    );
    case("empty audience list".into(), "aud", Some(json!([])));
    case(
        "other issuer".into(),
        "iss",
        Some(json!("https://evil.test")),
    );
    case(
        "issuer with a trailing slash".into(),
        "iss",
        Some(json!("https://idp.test/")),
    );
    for claim in ["exp", "aud", "iss", "sub"] {
        case(format!("{claim} missing"), claim, None);
    }
    let wrong_types: [(&str, Value); 16] = [
        ("exp", json!((n + 300).to_string())),
        ("exp", json!(true)),
        ("exp", json!(null)),
        ("exp", json!([n + 300])),
        ("exp", json!({"at": n + 300})),
        ("nbf", json!("0")),
        ("nbf", json!(false)),
        ("nbf", json!(null)),
        ("iat", json!("yesterday")),
        ("aud", json!({"aud": "chat"})),
        ("aud", json!(7)),
        ("aud", json!(["chat", 7])),
        ("iss", json!(["https://idp.test"])),
        ("iss", json!(null)),
        ("sub", json!(7)),
        ("sub", json!(null)),
    ];
    for (claim, value) in wrong_types {
        case(
            format!("{claim} of the wrong type: {value}"),
            claim,
            Some(value),
        );
    }
    all_invalid(&strict, &cases).await;
    strict.assert_reached(0, "claims");
    assert_eq!(
        accepted(&strict, &token(&good), "every claim right").await,
        "alice"
    );

    // exp is required unless explicitly waived.
    let no_exp = token(&json!({"sub": "alice"}));
    let default = jwt_server(hs()).await;
    all_invalid(
        &default,
        &[("no exp, default configuration".into(), no_exp.clone())],
    )
    .await;
    let waived = jwt_server(hs().require_exp(false)).await;
    assert_eq!(
        accepted(&waived, &no_exp, "no exp, explicitly allowed").await,
        "alice"
    );

    // Leeway: 30 s by default, configurable, capped at five minutes, for
    // `nbf`. `exp` gets none: a token already past it would get a 101 and
    // then, from the guard, an immediate 4002.
    let expired = |secs: i64| token(&json!({"sub": "alice", "exp": n - secs}));
    let early = |secs: i64| token(&json!({"sub": "alice", "exp": n + 300, "nbf": n + secs}));
    assert_eq!(
        accepted(&default, &early(10), "valid in 10 s, default leeway").await,
        "alice"
    );
    let exact = jwt_server(hs().leeway(Duration::ZERO).unwrap()).await;
    all_invalid(&exact, &[("valid in 10 s, no leeway".into(), early(10))]).await;
    assert!(
        hs().leeway(Duration::from_secs(301)).is_err(),
        "a leeway over five minutes is a configuration error, not clamped"
    );
    let capped = jwt_server(hs().leeway(Duration::from_secs(300)).unwrap()).await;
    assert_eq!(
        accepted(&capped, &early(120), "valid in 2 min, the largest leeway").await,
        "alice"
    );
    all_invalid(
        &capped,
        &[
            ("valid in 10 min, the largest leeway".into(), early(600)),
            ("expired 1 s ago, the largest leeway".into(), expired(1)),
        ],
    )
    .await;
    all_invalid(
        &default,
        &[
            ("expired 10 s ago, default leeway".into(), expired(10)),
            ("exp is now".into(), expired(0)),
        ],
    )
    .await;
    exact.assert_reached(0, "no leeway");
}

/// "Structurally broken tokens (wrong segment count, bad base64url, not
/// JSON, JWE, JSON serialization) are refused without expensive work."
///
/// The keys come from a JWKS server, and every broken token names a `kid`
/// the server does not know: a token that got as far as key selection
/// would make the authenticator fetch the key set. None does; a
/// well-formed token with the same unknown `kid` does (the control).
#[tokio::test]
async fn structurally_broken_tokens_are_refused_without_expensive_work() {
    init();
    let keys = KeyServer::start(vec![rsa_jwk("known")]).await;
    let jwks = quick(&keys.url())
        .refetch_interval(Duration::from_millis(100))
        .build()
        .unwrap();
    let layer = WsAuthLayer::new(Jwt::from_remote_jwks(jwks))
        .bearer_header()
        .subprotocol_token()
        .max_credential_bytes((64 * 1024).try_into().unwrap())
        .max_header_bytes((64 * 1024).try_into().unwrap());
    let server = Server::start(layer).await;
    assert_eq!(
        accepted(
            &server,
            &sign(Algorithm::RS256, Some("known"), &claims("alice")),
            "warm-up"
        )
        .await,
        "alice"
    );
    assert_eq!(keys.hits(), 1);
    tokio::time::sleep(Duration::from_millis(150)).await;

    let unknown = sign(Algorithm::RS256, Some("unknown"), &claims("mallory"));
    let parts: Vec<&str> = unknown.split('.').collect();
    let (h, p, s) = (parts[0], parts[1], parts[2]);
    let header = |json: &str| b64(json);
    let jwe = format!(
        "{}.{p}.{s}.{s}.{s}",
        header(r#"{"alg":"RSA-OAEP","enc":"A256GCM","kid":"unknown"}"#)
    );
    let cases: Vec<(&str, String)> = vec![
        ("one segment", h.to_owned()),
        ("two segments", format!("{h}.{p}")),
        ("four segments", format!("{h}.{p}.{s}.{s}")),
        ("six segments", format!("{h}.{p}.{s}.{s}.{s}.{s}")),
        ("only dots", "..".to_owned()),
        ("empty header", format!(".{p}.{s}")),
        ("empty payload", format!("{h}..{s}")),
        ("empty signature", format!("{h}.{p}.")),
        ("standard base64 in the header", format!("{h}+/.{p}.{s}")),
        ("padding", format!("{h}==.{p}.{s}")),
        ("a character outside base64url", format!("{h}.{p}.{s}~")),
        (
            "a segment length base64url cannot have",
            format!("{h}.{p}{}.{s}", "A".repeat((5 - p.len() % 4) % 4)),
        ),
        ("header not JSON", format!("{}.{p}.{s}", header("not json"))),
        (
            "header a JSON array",
            format!("{}.{p}.{s}", header(r#"["alg","RS256"]"#)),
        ),
        (
            "header with a duplicate alg",
            format!(
                "{}.{p}.{s}",
                header(r#"{"alg":"RS256","alg":"none","kid":"unknown"}"#)
            ),
        ),
        (
            "header with crit",
            format!(
                "{}.{p}.{s}",
                header(r#"{"alg":"RS256","kid":"unknown","crit":["exp"]}"#)
            ),
        ),
        ("a JWE", jwe),
        (
            "the JWS JSON serialization",
            format!(r#"{{"payload":"{p}","protected":"{h}","signature":"{s}"}}"#),
        ),
        (
            "over the token cap",
            format!("{h}.{}.{s}", "A".repeat(12 * 1024)),
        ),
    ];
    // Through the subprotocol carrier every one reaches the authenticator.
    for (case, token) in &cases {
        let refused = server
            .refused("/ws", &[("sec-websocket-protocol", &offer(token))], case)
            .await;
        assert_refusal(&refused, StatusCode::UNAUTHORIZED, INVALID_TOKEN, case);
        assert_eq!(
            keys.hits(),
            1,
            "{case}: a broken token made the authenticator fetch keys"
        );
    }
    server.assert_reached(1, "broken tokens");

    // The control: the well-formed token with that kid does trigger a fetch.
    let refused = server
        .refused(
            "/ws",
            &[("sec-websocket-protocol", &offer(&unknown))],
            "well-formed, unknown kid",
        )
        .await;
    assert_refusal(
        &refused,
        StatusCode::UNAUTHORIZED,
        INVALID_TOKEN,
        "well-formed, unknown kid",
    );
    assert_eq!(
        keys.hits(),
        2,
        "the control token did not reach key selection"
    );
    // And a correctly signed token whose payload is not JSON is refused too.
    let known = sign(Algorithm::RS256, Some("known"), &claims("alice"));
    let header_of_known = known.split('.').next().unwrap();
    let input = format!("{header_of_known}.{}", b64("not json"));
    let signature = jsonwebtoken::crypto::sign(
        input.as_bytes(),
        &encoding_key(Algorithm::RS256),
        Algorithm::RS256,
    )
    .unwrap();
    all_invalid(
        &server,
        &[(
            "signed payload that is not JSON".into(),
            format!("{input}.{signature}"),
        )],
    )
    .await;
    server.assert_reached(1, "broken tokens");
}

/// "HMAC secrets shorter than the hash output are refused at configuration
/// time."
#[tokio::test]
async fn short_hmac_secrets_are_refused_at_configuration_time() {
    init();
    let secret = [7u8; 64];
    for (alg, bytes) in [
        (Algorithm::HS256, 32),
        (Algorithm::HS384, 48),
        (Algorithm::HS512, 64),
    ] {
        for short in [0, 1, bytes / 2, bytes - 1] {
            let refused = JwtKey::hmac(alg, &secret[..short]);
            assert!(
                matches!(refused, Err(ConfigError::WeakHmacSecret { min_bytes, .. }) if min_bytes == bytes),
                "{alg:?} with a {short}-byte secret: {:?}",
                refused.err()
            );
        }
        assert!(
            JwtKey::hmac(alg, &secret[..bytes]).is_ok(),
            "{alg:?} with a {bytes}-byte secret"
        );
    }
    let built = Jwt::hs256([7u8; 31]).err();
    assert!(
        matches!(built, Some(ConfigError::WeakHmacSecret { .. })),
        "hs256: {built:?}"
    );
    // Public keys are not secrets, whatever their length.
    for pem in [RSA_PUBLIC, EC256_PUBLIC, EC384_PUBLIC, ED_PUBLIC] {
        assert!(
            JwtKey::hmac(Algorithm::HS512, pem).is_err(),
            "a PEM document accepted as an HMAC secret"
        );
    }

    // What is built from a long enough secret verifies through the layer,
    // and a token signed with a shorter prefix of it is refused.
    let server = jwt_server(Jwt::hs256(HS256_SECRET).unwrap()).await;
    assert_eq!(
        accepted(
            &server,
            &sign(Algorithm::HS256, None, &claims("alice")),
            "32-byte secret"
        )
        .await,
        "alice"
    );
    let prefix = EncodingKey::from_secret(&HS256_SECRET[..31]);
    let weak = sign_raw(
        &json!({"alg": "HS256"}),
        &claims("mallory"),
        &prefix,
        Algorithm::HS256,
    );
    all_invalid(
        &server,
        &[("signed with a 31-byte prefix of the secret".into(), weak)],
    )
    .await;
    server.assert_reached(1, "short secrets");
}

/// "A JWKS endpoint that is down or slow does not make valid tokens fail
/// while cached keys are valid, and an attacker cannot force a refetch per
/// request (rate-limited, single-flight)."
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_outage_or_slowness_keeps_cached_keys_and_refetches_are_rate_limited() {
    init();
    let keys = KeyServer::start(vec![rsa_jwk("k1")]).await;
    // Long enough for a flood to fit in one interval on a loaded machine.
    let interval = Duration::from_secs(2);
    let jwks = quick(&keys.url())
        .refetch_interval(interval)
        .timeouts(Duration::from_millis(500), Duration::from_secs(4))
        .build()
        .unwrap();
    let server = std::sync::Arc::new(jwt_server(Jwt::from_remote_jwks(jwks)).await);
    let valid = sign(Algorithm::RS256, Some("k1"), &claims("alice"));
    let forged: Vec<String> = (0..30)
        .map(|i| {
            sign(
                Algorithm::RS256,
                Some(&format!("forged-{i}")),
                &claims("mallory"),
            )
        })
        .collect();
    assert_eq!(accepted(&server, &valid, "warm-up").await, "alice");
    assert_eq!(keys.hits(), 1);

    // A flood of unknown kids: none fetches within the interval...
    let flood = |round: &'static str, status: StatusCode| {
        let tasks: Vec<_> = forged
            .iter()
            .map(|token| {
                let server = server.clone();
                let token = token.clone();
                tokio::spawn(async move {
                    let case = format!("unknown kid, {round}");
                    let refused = server
                        .refused("/ws", &[("authorization", &bearer(&token))], &case)
                        .await;
                    assert_eq!(refused.status, status, "{case}: {refused:?}");
                })
            })
            .collect();
        futures_util::future::join_all(tasks)
    };
    for task in flood("within the interval", StatusCode::UNAUTHORIZED).await {
        task.expect("flood task");
    }
    assert_eq!(
        keys.hits(),
        1,
        "an unknown kid forced a refetch within the interval"
    );

    // ...the endpoint goes down: the cached key keeps working, without a fetch...
    keys.set_mode(Mode::Down);
    tokio::time::sleep(interval + Duration::from_millis(100)).await;
    for i in 0..3 {
        assert_eq!(
            accepted(&server, &valid, &format!("cached key, endpoint down, {i}")).await,
            "alice"
        );
    }
    assert_eq!(keys.hits(), 1, "a cached kid waited for the key server");
    // ...after the interval, a flood shares one fetch, which fails: 503.
    for task in flood("endpoint down", StatusCode::SERVICE_UNAVAILABLE).await {
        task.expect("flood task");
    }
    assert_eq!(keys.hits(), 2, "a flood of unknown kids was not one fetch");
    assert_eq!(
        accepted(&server, &valid, "cached key after a failed fetch").await,
        "alice"
    );

    // Slow: while a fetch hangs, the cached kid is served at once.
    keys.set_mode(Mode::Slow(Duration::from_secs(10)));
    tokio::time::sleep(interval + Duration::from_millis(100)).await;
    let waiting = {
        let server = server.clone();
        let token = sign(Algorithm::RS256, Some("rotated"), &claims("bob"));
        tokio::spawn(async move {
            let refused = server
                .refused(
                    "/ws",
                    &[("authorization", &bearer(&token))],
                    "unknown kid, slow endpoint",
                )
                .await;
            assert_eq!(
                refused.status,
                StatusCode::SERVICE_UNAVAILABLE,
                "{refused:?}"
            );
        })
    };
    wait_until("the slow fetch to start", || keys.hits() == 3).await;
    let started = Instant::now();
    assert_eq!(
        accepted(&server, &valid, "cached key, endpoint slow").await,
        "alice"
    );
    let took = started.elapsed();
    // The hanging fetch gives up after 4 s; a generous bound below that.
    assert!(
        took < Duration::from_secs(2),
        "the cached kid waited {took:?} for a slow fetch"
    );
    waiting.await.expect("the request that needed the fetch");
    assert_eq!(keys.hits(), 3);
    server.assert_reached(6, "JWKS outage");
}
