//! `JwtAuthenticator` behind `WsAuthLayer`, through real WebSocket
//! handshakes on 127.0.0.1: every algorithm, the RFC vectors, and the
//! attacks of SECURITY.md, each asserting the exact status and challenge.
#![cfg(all(feature = "axum", any(feature = "jwt", feature = "jwt-rust-crypto")))]

use crate::jwt_common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use jsonwebtoken::{Algorithm, EncodingKey};
use jwt_common::*;
use serde_json::json;
use tower_ws_auth::{
    AuthMethod, Authenticator, ConfigError, Identity, WsAuthLayer,
    api_key::ApiKeyAuthenticator,
    jwt::{JwtAuthenticator, JwtKey},
};

type Jwt = JwtAuthenticator;

/// One authenticator holding a key for every supported algorithm.
fn every_algorithm() -> JwtAuthenticator<TestClaims> {
    let rsa = |alg| {
        JwtKey::from_pem(alg, RSA_PUBLIC)
            .unwrap()
            .with_kid(format!("{alg:?}"))
    };
    Jwt::with_keys([
        JwtKey::hmac(Algorithm::HS256, HS256_SECRET)
            .unwrap()
            .with_kid("HS256"),
        JwtKey::hmac(Algorithm::HS384, HS384_SECRET)
            .unwrap()
            .with_kid("HS384"),
        JwtKey::hmac(Algorithm::HS512, HS512_SECRET)
            .unwrap()
            .with_kid("HS512"),
        rsa(Algorithm::RS256),
        rsa(Algorithm::RS384),
        rsa(Algorithm::RS512),
        rsa(Algorithm::PS256),
        rsa(Algorithm::PS384),
        rsa(Algorithm::PS512),
        JwtKey::from_pem(Algorithm::ES256, EC256_PUBLIC)
            .unwrap()
            .with_kid("ES256"),
        JwtKey::from_pem(Algorithm::ES384, EC384_PUBLIC)
            .unwrap()
            .with_kid("ES384"),
        JwtKey::from_pem(Algorithm::EdDSA, ED_PUBLIC)
            .unwrap()
            .with_kid("EdDSA"),
    ])
    .unwrap()
    .claims::<TestClaims>()
}

const ALGORITHMS: [Algorithm; 12] = [
    Algorithm::HS256,
    Algorithm::HS384,
    Algorithm::HS512,
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

#[tokio::test]
async fn every_algorithm_upgrades_and_the_handler_gets_the_identity() {
    init();
    let server = serve(every_algorithm()).await;
    for alg in ALGORITHMS {
        let kid = format!("{alg:?}");
        let mut c = claims(&format!("user-{kid}"));
        c["jti"] = json!(format!("jti-{kid}"));
        c["tenant"] = json!("acme");
        c["scope"] = json!("chat:read chat:write");
        let token = sign(alg, Some(&kid), &c);
        let seen = accepted(server.addr, &token).await;
        assert_eq!(seen.subject, format!("user-{kid}"));
        assert_eq!(seen.method, "jwt");
        assert_eq!(
            seen.token_id.as_deref(),
            Some(format!("jti-{kid}").as_str())
        );
        assert_eq!(seen.expires_at, Some(c["exp"].as_u64().unwrap()));
        assert_eq!(seen.tenant.as_deref(), Some("acme"));
        assert_eq!(seen.scopes, ["chat:read", "chat:write"]);
    }
    // The browser carrier works too, and the credential is not echoed.
    let token = sign(Algorithm::ES256, Some("ES256"), &claims("browser"));
    let seen = accepted_via(server.addr, &token, Via::Subprotocol).await;
    assert_eq!(seen.subject, "browser");
    assert_eq!(server.handled.get(), ALGORITHMS.len() + 1);
}

#[tokio::test]
async fn ergonomic_constructors() {
    init();
    // hs256 + require_exp: the shape from the design document.
    let auth = Jwt::hs256(HS256_SECRET).unwrap().require_exp(true);
    let server = serve(auth).await;
    let token = sign(Algorithm::HS256, None, &claims("alice"));
    assert_eq!(accepted(server.addr, &token).await.subject, "alice");

    // DER and JWK keys, and a static JWK Set.
    let der = Jwt::new(JwtKey::from_der(Algorithm::RS256, RSA_PUBLIC_DER).unwrap()).unwrap();
    let server = serve(der).await;
    let token = sign(Algorithm::RS256, None, &claims("der"));
    assert_eq!(accepted(server.addr, &token).await.subject, "der");

    let jwk = public_jwk(Algorithm::ES256, &encoding_key(Algorithm::ES256), "ec-1");
    let set = json!({"keys": [jwk, {"kty": "unknown"}]}).to_string();
    let server = serve(Jwt::from_jwk_set_json(&set).unwrap()).await;
    let token = sign(Algorithm::ES256, Some("ec-1"), &claims("jwk"));
    assert_eq!(accepted(server.addr, &token).await.subject, "jwk");
    invalid(
        server.addr,
        &sign(Algorithm::ES256, Some("ec-2"), &claims("jwk")),
    )
    .await;
}

// --- RFC vectors -----------------------------------------------------------

include!("../fixtures/rfc_vectors.rs");

/// RFC 8037 appendix A.1: the Ed25519 key pair.
const RFC8037_D: &str = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A";

/// The vectors have no `sub` and expired in 2011: read the subject from
/// `iss` and do not compare `exp` with the clock.
fn vector_auth(jwk: &str) -> JwtAuthenticator {
    JwtAuthenticator::new(JwtKey::from_jwk(jwk).unwrap())
        .unwrap()
        .subject_claim("iss")
        .validate_exp(false)
}

#[tokio::test]
async fn rfc7515_vectors_upgrade() {
    let a2 = format!("eyJhbGciOiJSUzI1NiJ9.{A_PAYLOAD}.{A2_SIG}");
    let a3 = format!("eyJhbGciOiJFUzI1NiJ9.{A_PAYLOAD}.{A3_SIG}");
    for (jwk, token) in [
        (A1_JWK, A1_JWS),
        (A2_JWK, a2.as_str()),
        (A3_JWK, a3.as_str()),
    ] {
        let server = serve(vector_auth(jwk)).await;
        let seen = accepted(server.addr, token).await;
        assert_eq!(seen.subject, "joe");
        assert_eq!(seen.expires_at, Some(1_300_819_380));
        // The unsecured A.5 JWS of the same claims is refused.
        invalid(server.addr, A5_UNSECURED).await;
        // With the clock on, the vector is expired.
        let strict = JwtAuthenticator::new(JwtKey::from_jwk(jwk).unwrap())
            .unwrap()
            .subject_claim("iss");
        let server = serve(strict).await;
        invalid(server.addr, token).await;
    }
}

#[tokio::test]
async fn rfc8037_key_upgrades() {
    // RFC 8037's A.4 payload is plain text, not claims (its signature is
    // checked in the unit tests); here its key signs and verifies a JWT.
    let seed = jwt_common::b64_decode(RFC8037_D);
    let mut pkcs8 = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    pkcs8.extend_from_slice(&seed);
    let signing = EncodingKey::from_ed_der(&pkcs8);
    let token = sign_raw(
        &json!({"alg": "EdDSA"}),
        &claims("rfc8037"),
        &signing,
        Algorithm::EdDSA,
    );
    let server =
        serve(JwtAuthenticator::new(JwtKey::from_jwk(RFC8037_JWK).unwrap()).unwrap()).await;
    assert_eq!(accepted(server.addr, &token).await.subject, "rfc8037");
    // Signed with another Ed25519 key, the same claims are refused.
    let other = sign(Algorithm::EdDSA, None, &claims("rfc8037"));
    invalid(server.addr, &other).await;
}

// --- attacks ---------------------------------------------------------------

#[tokio::test]
async fn alg_none_in_every_spelling_is_refused() {
    init();
    let server = serve(every_algorithm()).await;
    let body = b64(claims("mallory").to_string());
    for none in ["none", "None", "NONE", "nOnE"] {
        let header = b64(json!({"alg": none, "typ": "JWT"}).to_string());
        // Unsigned, and with a signature segment copied from a real token.
        invalid(server.addr, &format!("{header}.{body}.")).await;
        let real = sign(Algorithm::HS256, Some("HS256"), &claims("mallory"));
        let sig = real.rsplit('.').next().unwrap();
        invalid(server.addr, &format!("{header}.{body}.{sig}")).await;
        let with_kid = b64(json!({"alg": none, "kid": "HS256"}).to_string());
        invalid(server.addr, &format!("{with_kid}.{body}.{sig}")).await;
    }
    assert_eq!(server.handled.get(), 0);
}

#[tokio::test]
async fn hmac_signed_with_the_public_key_is_refused() {
    init();
    for (alg, public_pem) in [
        (Algorithm::RS256, RSA_PUBLIC),
        (Algorithm::ES256, EC256_PUBLIC),
        (Algorithm::EdDSA, ED_PUBLIC),
    ] {
        let server = serve(Jwt::from_pem(alg, public_pem).unwrap()).await;
        // The classic confusion: HS256 keyed with the public key, as PEM
        // text, as PEM without its trailing newline, and as DER.
        let der = jwt_common::pem_body(public_pem);
        for secret in [
            public_pem.as_bytes(),
            public_pem.trim_end().as_bytes(),
            der.as_slice(),
        ] {
            for hs in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
                let token = sign_raw(
                    &json!({"alg": format!("{hs:?}"), "typ": "JWT"}),
                    &claims("mallory"),
                    &EncodingKey::from_secret(secret),
                    hs,
                );
                invalid(server.addr, &token).await;
            }
        }
        // A genuine token for that key still works.
        let good = sign(alg_of(alg), None, &claims("alice"));
        assert_eq!(accepted(server.addr, &good).await.subject, "alice");
        assert_eq!(server.handled.get(), 1);
    }
}

fn alg_of(alg: Algorithm) -> Algorithm {
    match alg {
        Algorithm::RS256 => Algorithm::RS256,
        Algorithm::ES256 => Algorithm::ES256,
        Algorithm::EdDSA => Algorithm::EdDSA,
        _ => unreachable!(),
    }
}

/// A loopback server that counts every request: header URLs must never be
/// fetched.
async fn counting_server() -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let app = Router::new().fallback(get(move || {
        counter.fetch_add(1, Ordering::SeqCst);
        async { "{}" }
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), hits)
}

#[tokio::test]
async fn key_material_in_the_header_is_never_trusted_or_fetched() {
    init();
    let (base, hits) = counting_server().await;
    let server = serve(
        Jwt::from_pem(Algorithm::RS256, RSA_PUBLIC)
            .unwrap()
            .require_exp(false),
    )
    .await;
    let attacker = EncodingKey::from_rsa_pem(RSA2_PRIVATE.as_bytes()).unwrap();
    let attacker_jwk = public_jwk(Algorithm::RS256, &attacker, "attacker");
    let x5c = jwt_common::pem_body_b64(RSA2_PUBLIC);
    let headers = [
        json!({"alg": "RS256", "jwk": attacker_jwk}),
        json!({"alg": "RS256", "jku": format!("{base}/jwks.json")}),
        json!({"alg": "RS256", "x5u": format!("{base}/cert.pem")}),
        json!({"alg": "RS256", "x5c": [x5c]}),
        json!({"alg": "RS256", "kid": "attacker", "jwk": attacker_jwk, "jku": format!("{base}/k"), "x5u": format!("{base}/x")}),
    ];
    for header in &headers {
        let token = sign_raw(header, &claims("mallory"), &attacker, Algorithm::RS256);
        invalid(server.addr, &token).await;
    }
    // The same headers on a token signed with the real key change nothing:
    // they are ignored, not followed.
    let genuine = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();
    for header in &headers {
        let token = sign_raw(header, &claims("alice"), &genuine, Algorithm::RS256);
        assert_eq!(accepted(server.addr, &token).await.subject, "alice");
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0, "a header URL was fetched");
    assert_eq!(server.handled.get(), headers.len());
}

#[tokio::test]
async fn hostile_kids_are_refused() {
    init();
    let server = serve(every_algorithm()).await;
    let huge = "k".repeat(300);
    let nul = "HS256\u{0}";
    for kid in [
        huge.as_str(),
        "../../../../etc/passwd",
        "/dev/null",
        "' OR '1'='1' --",
        "HS256'; DROP TABLE keys; --",
        nul,
        "hs256",
        "HS256 ",
        "unknown-kid",
        "",
        "☃",
    ] {
        let token = sign(Algorithm::HS256, Some(kid), &claims("mallory"));
        invalid(server.addr, &token).await;
    }
    // A kid that is not a string.
    for kid in [
        json!(1),
        json!(null),
        json!(["HS256"]),
        json!({"k": "HS256"}),
    ] {
        let token = sign_raw(
            &json!({"alg": "HS256", "kid": kid}),
            &claims("mallory"),
            &encoding_key(Algorithm::HS256),
            Algorithm::HS256,
        );
        invalid(server.addr, &token).await;
    }
    // A kid naming a key of another algorithm.
    let token = sign(Algorithm::HS256, Some("HS512"), &claims("mallory"));
    invalid(server.addr, &token).await;
    assert_eq!(server.handled.get(), 0);
}

#[tokio::test]
async fn claims_of_the_wrong_type_or_missing_are_refused() {
    init();
    let server = serve(Jwt::hs256(HS256_SECRET).unwrap()).await;
    let n = now();
    for c in [
        json!({"sub": "m", "exp": (n + 300).to_string()}),
        json!({"sub": "m", "exp": true}),
        json!({"sub": "m", "exp": null}),
        json!({"sub": "m", "exp": [n + 300]}),
        json!({"sub": "m", "exp": n + 300, "nbf": true}),
        json!({"sub": "m", "exp": n + 300, "nbf": "0"}),
        json!({"sub": "m", "exp": n + 300, "nbf": null}),
        json!({"sub": "m", "exp": n + 300, "iat": "yesterday"}),
        json!({"sub": "m"}),
        json!({"exp": n + 300}),
        json!({"sub": 7, "exp": n + 300}),
        json!({"sub": "m", "exp": n + 300, "aud": {"a": 1}}),
        json!({"sub": "m", "exp": n + 300, "iss": ["x"]}),
    ] {
        invalid(server.addr, &sign(Algorithm::HS256, None, &c)).await;
    }
    assert_eq!(server.handled.get(), 0);
}

#[tokio::test]
async fn time_audience_and_issuer() {
    init();
    let auth = Jwt::hs256(HS256_SECRET)
        .unwrap()
        .audience(["chat"])
        .issuer(["https://idp.test"]);
    let server = serve(auth).await;
    let n = now();
    let good = json!({"sub": "alice", "exp": n + 300, "aud": "chat", "iss": "https://idp.test"});
    assert_eq!(
        accepted(server.addr, &sign(Algorithm::HS256, None, &good))
            .await
            .subject,
        "alice"
    );
    let mut multi = good.clone();
    multi["aud"] = json!(["other", "chat"]);
    assert_eq!(
        accepted(server.addr, &sign(Algorithm::HS256, None, &multi))
            .await
            .subject,
        "alice"
    );

    let variants: [(&str, serde_json::Value); 7] = [
        ("aud", json!("other")),
        ("aud", json!(["other", "chat2"])),
        ("iss", json!("https://evil.test")),
        ("iss", json!("https://idp.test/")),
        ("exp", json!(n - 120)),
        ("nbf", json!(n + 120)),
        ("aud", json!([])),
    ];
    for (claim, value) in variants {
        let mut c = good.clone();
        c[claim] = value;
        invalid(server.addr, &sign(Algorithm::HS256, None, &c)).await;
    }
    for missing in ["aud", "iss", "exp"] {
        let mut c = good.clone();
        c.as_object_mut().unwrap().remove(missing);
        invalid(server.addr, &sign(Algorithm::HS256, None, &c)).await;
    }
    assert_eq!(server.handled.get(), 2);
}

#[tokio::test]
async fn broken_structure_is_refused() {
    init();
    let server = serve(every_algorithm()).await;
    let good = sign(Algorithm::HS256, Some("HS256"), &claims("alice"));
    let parts: Vec<&str> = good.split('.').collect();
    let (h, p, s) = (parts[0], parts[1], parts[2]);
    let cases = [
        format!("{h}.{p}"),
        format!("{h}.{p}.{s}.{s}"),
        format!("{h}.{p}.{s}.{s}.{s}"),
        format!("{h}.{p}.{s}~"),
        format!("{h}+.{p}.{s}"),
        format!("{h}.{p}/.{s}"),
        format!("{}.{p}.{s}", b64("not json")),
        format!("{}.{p}.{s}", b64("[\"alg\",\"HS256\"]")),
        format!("{}.{p}.{s}", b64(r#"{"alg":"HS256","crit":["exp"]}"#)),
        format!("{h}.{}.{s}", b64("not json")),
        format!("{h}..{s}"),
        format!(".{p}.{s}"),
        format!("{h}.{p}."),
        "..".to_owned(),
        "a".to_owned(),
        // A JWE (five segments) in compact form.
        "eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.OKOawDo13gRp2ojaHV7LFpZcgV7T6DVZKTyKOMTYUmKoTCVJRgckCL9kiMT03JGeipsEdY3mx_etLbbWSrFr05kLzcSr4qKAq7YN7e9jwQRb23nfa6c9d-StnImGyFDbSv04uVuxIp5Zms1gNxKKK2Da14B8S4rzVRltdYwam_lDp5XnZAYpQdb76FdIKLaVmqgfwX7XWRxv2322i-vDxRfqNzo_tETKzpVLzfiwQyeyPGLBIO56YJ7eObdv0je81860ppamavo35UgoRdbYaBcoh9QcfylQr66oc6vFWXRcZ_ZT2LawVCWTIy3brGPi6UklfCpIMfIjf7iGdXKHzg.48V1_ALb6US04U3b.5eym8TW_c8SuK0ltJ3rpYIzOeDQz7TALvtu6UG9oMo4vpzs9tX_EFShS8iB7j6jiSdiwkIr3ajwQzaBtQD_A.XFBoMYUZodetZdvTiFvSkQ".to_owned(),
    ];
    for token in &cases {
        invalid(server.addr, token).await;
    }
    // Padding inside a segment and the JWS JSON serialization are not
    // token68: the bearer carrier itself is malformed (400). Through the
    // subprotocol carrier they reach the authenticator, which refuses them
    // (401).
    for token in [
        format!("{h}==.{p}.{s}"),
        format!(r#"{{"payload":"{p}","protected":"{h}","signature":"{s}"}}"#),
    ] {
        rejected(
            server.addr,
            &token,
            Via::Bearer,
            400,
            Some("Bearer error=\"invalid_request\""),
        )
        .await;
        rejected(server.addr, &token, Via::Subprotocol, 401, INVALID_TOKEN).await;
    }
    for token in &cases[..4] {
        rejected(server.addr, token, Via::Subprotocol, 401, INVALID_TOKEN).await;
    }
    assert_eq!(server.handled.get(), 0);
    // The untouched token still works.
    assert_eq!(accepted(server.addr, &good).await.subject, "alice");
}

#[tokio::test]
async fn oversized_tokens_are_refused() {
    init();
    let mut c = claims("big");
    c["pad"] = json!("x".repeat(10 * 1024));
    let token = sign(Algorithm::HS256, None, &c);
    // The layer's credential cap (8 KiB by default) answers 431.
    let server = serve(Jwt::hs256(HS256_SECRET).unwrap()).await;
    rejected(server.addr, &token, Via::Bearer, 431, None).await;
    // With the layer's cap raised, the authenticator's own cap (8 KiB) answers 401.
    let layer = WsAuthLayer::new(Jwt::hs256(HS256_SECRET).unwrap())
        .bearer_header()
        .max_credential_bytes((64 * 1024).try_into().unwrap());
    let server = serve_layer(layer).await;
    invalid(server.addr, &token).await;
    // Raised on both, it is accepted.
    let layer = WsAuthLayer::new(
        Jwt::hs256(HS256_SECRET)
            .unwrap()
            .max_token_bytes((64 * 1024).try_into().unwrap()),
    )
    .bearer_header()
    .max_credential_bytes((64 * 1024).try_into().unwrap());
    let server = serve_layer(layer).await;
    assert_eq!(accepted(server.addr, &token).await.subject, "big");
}

#[tokio::test]
async fn missing_scope_is_403() {
    init();
    let auth = Jwt::hs256(HS256_SECRET)
        .unwrap()
        .required_scope("chat:write");
    let server = serve(auth).await;
    let mut c = claims("reader");
    c["scope"] = json!("chat:read");
    rejected(
        server.addr,
        &sign(Algorithm::HS256, None, &c),
        Via::Bearer,
        403,
        Some("Bearer error=\"insufficient_scope\", scope=\"chat:write\""),
    )
    .await;
    c["scope"] = json!("chat:read chat:write");
    assert_eq!(
        accepted(server.addr, &sign(Algorithm::HS256, None, &c))
            .await
            .subject,
        "reader"
    );

    // Roles from an array claim.
    let auth = Jwt::hs256(HS256_SECRET)
        .unwrap()
        .scope_claims(["roles"])
        .required_scope("admin");
    let server = serve(auth).await;
    let mut c = claims("root");
    c["roles"] = json!(["admin", "ops"]);
    let seen = accepted(server.addr, &sign(Algorithm::HS256, None, &c)).await;
    assert_eq!(seen.scopes, ["admin", "ops"]);
    c["roles"] = json!(["ops"]);
    rejected(
        server.addr,
        &sign(Algorithm::HS256, None, &c),
        Via::Bearer,
        403,
        Some("Bearer error=\"insufficient_scope\", scope=\"admin\""),
    )
    .await;
}

#[tokio::test]
async fn jwt_or_api_keys_share_the_bearer_carrier() {
    init();
    let api_keys = ApiKeyAuthenticator::from_keys([(
        "sk_live_opaque_key_123",
        Identity::new("billing", AuthMethod::ApiKey),
    )]);
    let auth = Jwt::hs256(HS256_SECRET).unwrap().or(api_keys);
    let server = serve(auth).await;
    let seen = accepted(server.addr, "sk_live_opaque_key_123").await;
    assert_eq!(
        (seen.subject.as_str(), seen.method.as_str()),
        ("billing", "api_key")
    );
    let seen = accepted(server.addr, &sign(Algorithm::HS256, None, &claims("alice"))).await;
    assert_eq!(
        (seen.subject.as_str(), seen.method.as_str()),
        ("alice", "jwt")
    );
    // A bad JWT is final: it never reaches the API keys.
    invalid(
        server.addr,
        &sign(Algorithm::HS256, None, &json!({"sub": "x"})),
    )
    .await;
    invalid(server.addr, "sk_live_unknown").await;

    // With decline_non_jws(false), opaque keys are refused by the JWT side.
    let api_keys = ApiKeyAuthenticator::from_keys([(
        "sk_live_opaque_key_123",
        Identity::new("billing", AuthMethod::ApiKey),
    )]);
    let strict = Jwt::hs256(HS256_SECRET)
        .unwrap()
        .decline_non_jws(false)
        .or(api_keys);
    let server = serve(strict).await;
    invalid(server.addr, "sk_live_opaque_key_123").await;
}

#[tokio::test]
async fn typ_check() {
    init();
    let server = serve(Jwt::hs256(HS256_SECRET).unwrap().typ("at+jwt")).await;
    let key = encoding_key(Algorithm::HS256);
    for typ in ["at+jwt", "application/at+jwt", "AT+JWT"] {
        let token = sign_raw(
            &json!({"alg": "HS256", "typ": typ}),
            &claims("a"),
            &key,
            Algorithm::HS256,
        );
        assert_eq!(accepted(server.addr, &token).await.subject, "a");
    }
    for header in [
        json!({"alg": "HS256", "typ": "JWT"}),
        json!({"alg": "HS256"}),
        json!({"alg": "HS256", "typ": 1}),
    ] {
        let token = sign_raw(&header, &claims("a"), &key, Algorithm::HS256);
        invalid(server.addr, &token).await;
    }
}

// --- one verification path: the same answers as jsonwebtoken ---------------

/// RFC 8037 appendix A.4 (the payload is text, not JWT claims).
const RFC8037_JWS: &str = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg";

/// The key jsonwebtoken verifies `alg` with here, built by jsonwebtoken
/// from the same fixtures (not by this crate).
fn decoding_key(alg: Algorithm) -> jsonwebtoken::DecodingKey {
    use jsonwebtoken::DecodingKey;
    match alg {
        Algorithm::HS256 => DecodingKey::from_secret(HS256_SECRET),
        Algorithm::HS384 => DecodingKey::from_secret(HS384_SECRET),
        Algorithm::HS512 => DecodingKey::from_secret(HS512_SECRET),
        Algorithm::ES256 => DecodingKey::from_ec_pem(EC256_PUBLIC.as_bytes()).unwrap(),
        Algorithm::ES384 => DecodingKey::from_ec_pem(EC384_PUBLIC.as_bytes()).unwrap(),
        Algorithm::EdDSA => DecodingKey::from_ed_pem(ED_PUBLIC.as_bytes()).unwrap(),
        _ => DecodingKey::from_rsa_pem(RSA_PUBLIC.as_bytes()).unwrap(),
    }
}

/// Flips one bit of the signature's first byte (the segment stays canonical
/// base64url).
fn flip_signature(token: &str) -> String {
    let (input, signature) = token.rsplit_once('.').unwrap();
    let mut bytes = b64_decode(signature);
    bytes[0] ^= 0x01;
    format!("{input}.{}", b64(bytes))
}

/// Replaces the header, keeping payload and signature.
fn with_header(token: &str, header: &serde_json::Value) -> String {
    let (_, rest) = token.split_once('.').unwrap();
    format!("{}.{rest}", b64(header.to_string()))
}

/// Signs `payload` (raw JSON text) under `header` with the test key of `alg`.
fn sign_text(alg: Algorithm, header: &serde_json::Value, payload: &str) -> String {
    init();
    let input = format!("{}.{}", b64(header.to_string()), b64(payload));
    let signature = jsonwebtoken::crypto::sign(input.as_bytes(), &encoding_key(alg), alg).unwrap();
    format!("{input}.{signature}")
}

fn encoded_with_kid(alg: Algorithm, kid: &str, claims: &serde_json::Value) -> String {
    let mut header = jsonwebtoken::Header::new(alg);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &encoding_key(alg)).unwrap()
}

/// For every algorithm: genuine tokens from jsonwebtoken's own `encode`
/// and a corpus of mutations get the same accept/refuse answer from
/// `JwtAuthenticator` as from a plain `jsonwebtoken::decode` with the same
/// `Validation`; the tokens the policy refuses although `decode` accepts
/// them are the rows of the rustdoc table ("Where the policy is stricter").
#[tokio::test]
async fn every_algorithm_answers_as_plain_jsonwebtoken_decode() {
    init();
    let auth = every_algorithm()
        .audience(["chat"])
        .issuer(["https://idp.test"]);
    let n = now();
    let good =
        json!({"sub": "alice", "exp": n + 300, "iat": n, "aud": "chat", "iss": "https://idp.test"});
    let edit = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut c = good.clone();
        f(&mut c);
        c
    };
    for alg in ALGORITHMS {
        let kid = format!("{alg:?}");
        let validation = auth.jsonwebtoken_validation(alg);
        let key = decoding_key(alg);
        let header = json!({"alg": kid, "typ": "JWT", "kid": kid});
        let encoded = |claims: &serde_json::Value| encoded_with_kid(alg, &kid, claims);
        let signed = |header: &serde_json::Value| sign_raw(header, &good, &encoding_key(alg), alg);
        let genuine = encoded(&good);
        let other_alg = if alg == Algorithm::HS256 {
            Algorithm::HS384
        } else {
            Algorithm::HS256
        };
        let mut same: Vec<(&str, String)> = vec![
            ("genuine", genuine.clone()),
            ("flipped signature bit", flip_signature(&genuine)),
            (
                "swapped alg",
                with_header(
                    &genuine,
                    &json!({"alg": format!("{other_alg:?}"), "kid": kid}),
                ),
            ),
            (
                "header re-encoded with the same members",
                with_header(&genuine, &json!({"kid": kid, "alg": kid, "typ": "JWT"})),
            ),
            (
                "alg none",
                with_header(&genuine, &json!({"alg": "none", "kid": kid})),
            ),
            (
                "signature segment removed",
                genuine.rsplit_once('.').unwrap().0.to_owned() + ".",
            ),
            ("expired", encoded(&edit(&|c| c["exp"] = json!(n - 120)))),
            (
                "not yet valid",
                encoded(&edit(&|c| c["nbf"] = json!(n + 120))),
            ),
            (
                "within the nbf leeway",
                encoded(&edit(&|c| c["nbf"] = json!(n + 10))),
            ),
            (
                "other audience",
                encoded(&edit(&|c| c["aud"] = json!("other"))),
            ),
            (
                "aud with a number",
                encoded(&edit(&|c| c["aud"] = json!(["chat", 7]))),
            ),
            (
                "other issuer",
                encoded(&edit(&|c| c["iss"] = json!("https://evil.test"))),
            ),
            (
                "no exp",
                encoded(&edit(&|c| {
                    c.as_object_mut().unwrap().remove("exp");
                })),
            ),
            (
                "exp as a string",
                encoded(&edit(&|c| c["exp"] = json!((n + 300).to_string()))),
            ),
            ("exp of 1e300", encoded(&edit(&|c| c["exp"] = json!(1e300)))),
            ("nbf null", encoded(&edit(&|c| c["nbf"] = json!(null)))),
            ("nbf a string", encoded(&edit(&|c| c["nbf"] = json!("0")))),
            (
                "a registered claim twice",
                sign_text(
                    alg,
                    &header,
                    &format!(
                        r#"{{"sub":"alice","sub":"mallory","exp":{},"aud":"chat","iss":"https://idp.test"}}"#,
                        n + 300
                    ),
                ),
            ),
            ("payload not JSON", sign_text(alg, &header, "not json")),
        ];
        // HS/RS confusion: an HMAC token keyed with a public key.
        for public in [RSA_PUBLIC, EC256_PUBLIC, ED_PUBLIC] {
            let confused = sign_raw(
                &json!({"alg": "HS256", "kid": kid}),
                &good,
                &EncodingKey::from_secret(public.as_bytes()),
                Algorithm::HS256,
            );
            same.push(("HMAC with a public key as the secret", confused));
        }
        for (case, token) in &same {
            let ours = auth.verify(token).await.is_ok();
            let theirs =
                jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation).is_ok();
            assert_eq!(
                ours, theirs,
                "{alg:?}, {case}: ours {ours}, jsonwebtoken {theirs}"
            );
        }
        assert!(auth.verify(&genuine).await.is_ok(), "{alg:?} genuine");

        // Stricter: refused here, accepted by `decode` (the rustdoc table).
        let stricter: Vec<(&str, String)> = vec![
            (
                "crit",
                signed(&json!({"alg": kid, "kid": kid, "crit": ["exp"], "exp": 1})),
            ),
            ("b64", signed(&json!({"alg": kid, "kid": kid, "b64": true}))),
            ("kid null", signed(&json!({"alg": kid, "kid": null}))),
            ("kid of another key", encoded_with_kid(alg, "nope", &good)),
            (
                "iss as an array",
                encoded(&edit(&|c| c["iss"] = json!(["https://idp.test"]))),
            ),
            ("iat a string", encoded(&edit(&|c| c["iat"] = json!("now")))),
            ("sub a number", encoded(&edit(&|c| c["sub"] = json!(7)))),
            ("sub empty", encoded(&edit(&|c| c["sub"] = json!("")))),
            ("jti a number", encoded(&edit(&|c| c["jti"] = json!(7)))),
            (
                "exp beyond the maximum lifetime",
                encoded(&edit(&|c| c["exp"] = json!(n + 25 * 3600))),
            ),
            (
                "exp of 2^64 - 1",
                encoded(&edit(&|c| c["exp"] = json!(u64::MAX))),
            ),
        ];
        for (case, token) in &stricter {
            assert!(
                jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation).is_ok(),
                "{alg:?}, {case}: jsonwebtoken refuses it, so it is not a stricter case"
            );
            assert!(
                auth.verify(token).await.is_err(),
                "{alg:?}, {case}: accepted"
            );
        }
        // `exp` equal to now: a second boundary, retried if the clock ticks
        // between signing and `decode`.
        let mut checked = false;
        for _ in 0..3 {
            let token = encoded(&edit(&|c| c["exp"] = json!(now())));
            if jsonwebtoken::decode::<serde_json::Value>(&token, &key, &validation).is_ok() {
                assert!(
                    auth.verify(&token).await.is_err(),
                    "{alg:?}, exp is now: accepted"
                );
                checked = true;
                break;
            }
        }
        assert!(checked, "{alg:?}: the clock ticked three times");
    }
    // The fixture tokens: the RFC vectors, through the same path.
    let a2 = format!("eyJhbGciOiJSUzI1NiJ9.{A_PAYLOAD}.{A2_SIG}");
    let a3 = format!("eyJhbGciOiJFUzI1NiJ9.{A_PAYLOAD}.{A3_SIG}");
    for (jwk, token, alg) in [
        (A1_JWK, A1_JWS.to_owned(), Algorithm::HS256),
        (A2_JWK, a2, Algorithm::RS256),
        (A3_JWK, a3, Algorithm::ES256),
        (RFC8037_JWK, RFC8037_JWS.to_owned(), Algorithm::EdDSA),
    ] {
        let auth = vector_auth(jwk);
        let validation = auth.jsonwebtoken_validation(alg);
        let parsed: jsonwebtoken::jwk::Jwk = serde_json::from_str(jwk).unwrap();
        let key = jsonwebtoken::DecodingKey::from_jwk(&parsed).unwrap();
        for token in [
            token.clone(),
            flip_signature(&token),
            A5_UNSECURED.to_owned(),
        ] {
            let ours = auth.verify(&token).await.is_ok();
            let theirs =
                jsonwebtoken::decode::<serde_json::Value>(&token, &key, &validation).is_ok();
            assert_eq!(ours, theirs, "{alg:?} vector {token}");
        }
    }
    // RFC 8037 A.4: a valid signature over a payload that is not claims
    // (refused above by both, as claims).
    let (input, signature) = RFC8037_JWS.rsplit_once('.').unwrap();
    let key: jsonwebtoken::jwk::Jwk = serde_json::from_str(RFC8037_JWK).unwrap();
    let key = jsonwebtoken::DecodingKey::from_jwk(&key).unwrap();
    assert!(
        jsonwebtoken::crypto::verify(signature, input.as_bytes(), &key, Algorithm::EdDSA).unwrap()
    );
}

/// Issue 19: `exp` of `1e300` or 2^64 was accepted as "never expires".
/// Connection tokens live at most 24 hours by default (`max_lifetime`).
#[tokio::test]
async fn exp_beyond_the_maximum_lifetime_is_refused() {
    init();
    let n = now();
    let header = json!({"alg": "HS256", "typ": "JWT"});
    let token = |exp: &str| {
        sign_text(
            Algorithm::HS256,
            &header,
            &format!(r#"{{"sub":"alice","exp":{exp}}}"#),
        )
    };
    let server = serve(Jwt::hs256(HS256_SECRET).unwrap()).await;
    for exp in [
        "1e300".to_owned(),
        "18446744073709551616".to_owned(),
        u64::MAX.to_string(),
        i64::MAX.to_string(),
        (n + 24 * 3600 + 60).to_string(),
    ] {
        invalid(server.addr, &token(&exp)).await;
    }
    let day = token(&(n + 23 * 3600).to_string());
    assert_eq!(accepted(server.addr, &day).await.subject, "alice");
    // Configurable, down to the lifetime of this issuer's tokens, or lifted.
    let hour = Jwt::hs256(HS256_SECRET)
        .unwrap()
        .max_lifetime(Duration::from_secs(3600));
    let hour = serve(hour).await;
    invalid(hour.addr, &token(&(n + 2 * 3600).to_string())).await;
    accepted(hour.addr, &token(&(n + 1800).to_string())).await;
    let unbounded = serve(
        Jwt::hs256(HS256_SECRET)
            .unwrap()
            .max_lifetime(Duration::MAX),
    )
    .await;
    accepted(
        unbounded.addr,
        &token(&(n + 10 * 365 * 24 * 3600).to_string()),
    )
    .await;
    let handled = server.handled.get() + hour.handled.get() + unbounded.handled.get();
    assert_eq!(handled, 3);
}

/// Issue 19: a token expired 10 s ago, inside the default 30 s leeway, got a
/// `101` and then, from the guard, an immediate 4002. Now the handshake and
/// the guard agree: no leeway on `exp`, so it is refused with 401, and a
/// token that expires in 2 s keeps its socket until then.
#[tokio::test]
async fn a_token_past_exp_is_refused_not_upgraded_then_closed() {
    use axum::extract::ws::{Message as AxumMessage, WebSocketUpgrade};
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};
    use tower_ws_auth::socket::SessionGuard;

    init();
    let app = Router::new()
        .route(
            "/ws",
            get(|ws: WebSocketUpgrade, identity: Identity| async move {
                ws.on_upgrade(move |socket| async move {
                    let mut socket = SessionGuard::expiry_only().wrap(socket, identity);
                    while let Some(Ok(AxumMessage::Text(text))) = socket.recv().await {
                        if socket.send(AxumMessage::Text(text)).await.is_err() {
                            return;
                        }
                    }
                })
            }),
        )
        .layer(WsAuthLayer::new(Jwt::hs256(HS256_SECRET).unwrap()).bearer_header());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let connect = |exp: i64| {
        let token = sign(Algorithm::HS256, None, &json!({"sub": "alice", "exp": exp}));
        let mut request = format!("ws://{addr}/ws").into_client_request().unwrap();
        let bearer = format!("Bearer {token}").parse().unwrap();
        request.headers_mut().insert("authorization", bearer);
        tokio_tungstenite::connect_async(request)
    };
    match connect(now() - 10).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 401);
        }
        Err(other) => panic!("expected a 401, got {other}"),
        Ok(_) => panic!("a token expired 10 s ago was upgraded"),
    }
    let (mut ws, _) = connect(now() + 2).await.unwrap();
    ws.send(Message::text("ping")).await.unwrap();
    let echo = tokio::time::timeout(Duration::from_secs(1), ws.next()).await;
    assert_eq!(echo.unwrap().unwrap().unwrap(), Message::text("ping"));
    let started = std::time::Instant::now();
    match tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
    {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(u16::from(frame.code), 4002),
        other => panic!("expected a 4002 close, got {other:?}"),
    }
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "closed at once"
    );
    // The closing handshake completes: the server then ends the stream.
    let end = tokio::time::timeout(Duration::from_secs(2), ws.next()).await;
    assert!(end.unwrap().is_none());
}

// --- key import: jsonwebtoken's constructors, this crate's checks ----------

#[test]
fn key_import_pem_keys_are_pinned_and_checked() {
    assert!(JwtKey::from_pem(Algorithm::RS256, RSA_PUBLIC).is_ok());
    assert!(JwtKey::from_pem(Algorithm::PS512, RSA_PUBLIC).is_ok());
    assert!(JwtKey::from_pem(Algorithm::ES256, EC256_PUBLIC).is_ok());
    assert!(JwtKey::from_pem(Algorithm::ES384, EC384_PUBLIC).is_ok());
    assert!(JwtKey::from_pem(Algorithm::EdDSA, ED_PUBLIC).is_ok());

    // Wrong family or curve.
    for (alg, pem) in [
        (Algorithm::ES256, RSA_PUBLIC),
        (Algorithm::RS256, EC256_PUBLIC),
        (Algorithm::ES384, EC256_PUBLIC),
        (Algorithm::ES256, EC384_PUBLIC),
        (Algorithm::EdDSA, EC256_PUBLIC),
        (Algorithm::RS256, ED_PUBLIC),
    ] {
        assert!(
            matches!(
                JwtKey::from_pem(alg, pem),
                Err(ConfigError::InvalidKey { .. })
            ),
            "{alg:?}"
        );
    }
    assert!(matches!(
        JwtKey::from_pem(Algorithm::HS256, RSA_PUBLIC),
        Err(ConfigError::InvalidJwtConfig { .. })
    ));
    assert_eq!(
        JwtKey::from_pem(Algorithm::RS256, RSA_PRIVATE).unwrap_err(),
        ConfigError::InvalidKey {
            reason: "a private key was given: configure the public key"
        }
    );
    assert_eq!(
        JwtKey::from_pem(
            Algorithm::RS256,
            include_str!("../fixtures/rsa1024_public.pem")
        )
        .unwrap_err(),
        ConfigError::WeakRsaKey { bits: 1024 }
    );
    assert!(JwtKey::from_pem(Algorithm::RS256, "garbage").is_err());
}

#[test]
fn key_import_der_keys() {
    let k = JwtKey::from_der(Algorithm::RS256, RSA_PUBLIC_DER).unwrap();
    assert_eq!(k.algorithm(), Algorithm::RS256);
    assert!(JwtKey::from_der(Algorithm::RS256, b"\x30\x03\x02\x01\x01").is_err());
    assert!(JwtKey::from_der(Algorithm::ES256, RSA_PUBLIC_DER).is_err());
}

#[test]
fn key_import_hmac_secrets() {
    assert_eq!(
        JwtKey::hmac(Algorithm::HS256, [7u8; 31]).unwrap_err(),
        ConfigError::WeakHmacSecret {
            algorithm: "HS256",
            min_bytes: 32
        }
    );
    assert!(JwtKey::hmac(Algorithm::HS256, [7u8; 32]).is_ok());
    assert!(JwtKey::hmac(Algorithm::HS384, [7u8; 47]).is_err());
    assert!(JwtKey::hmac(Algorithm::HS384, [7u8; 48]).is_ok());
    assert!(JwtKey::hmac(Algorithm::HS512, [7u8; 63]).is_err());
    assert!(JwtKey::hmac(Algorithm::HS512, [7u8; 64]).is_ok());
    assert!(JwtKey::hmac(Algorithm::RS256, [7u8; 64]).is_err());
    // The public key PEM is not a secret.
    assert!(matches!(
        JwtKey::hmac(Algorithm::HS256, RSA_PUBLIC),
        Err(ConfigError::InvalidKey { .. })
    ));
}

#[test]
fn key_import_debug_shows_no_key_material() {
    let k = JwtKey::hmac(Algorithm::HS256, b"super-secret-value-that-is-32-bytes")
        .unwrap()
        .with_kid("k1");
    let shown = format!("{k:?}");
    assert!(!shown.contains("super-secret"), "{shown}");
    assert!(shown.contains("k1") && shown.contains("HS256"), "{shown}");
}

/// JSON is UTF-8 (RFC 8259): a payload with a byte that is not, even in a
/// claim nobody reads, is refused, as `jsonwebtoken::decode` refuses it.
#[tokio::test]
async fn claims_that_are_not_utf8_are_refused() {
    init();
    let auth = Jwt::hs256(HS256_SECRET).unwrap();
    let mut payload = format!(r#"{{"sub":"alice","exp":{},"x":""#, now() + 300).into_bytes();
    payload.extend_from_slice(b"\xff\"}");
    let input = format!("{}.{}", b64(r#"{"alg":"HS256"}"#), b64(&payload));
    let key = encoding_key(Algorithm::HS256);
    let signature = jsonwebtoken::crypto::sign(input.as_bytes(), &key, Algorithm::HS256).unwrap();
    let token = format!("{input}.{signature}");
    let validation = auth.jsonwebtoken_validation(Algorithm::HS256);
    let plain = jsonwebtoken::decode::<serde_json::Value>(
        &token,
        &decoding_key(Algorithm::HS256),
        &validation,
    );
    assert!(plain.is_err());
    assert!(auth.verify(&token).await.is_err());
}

/// The payload is read once, strictly: named claims may not repeat, must
/// have their JSON type, and escaped strings read as their value; claims
/// nobody reads are left to the claims type.
#[tokio::test]
async fn claims_are_read_strictly_in_one_pass() {
    let auth = Jwt::hs256(HS256_SECRET)
        .unwrap()
        .scope_claims(["scope", "scp"])
        .required_claims(["tenant"]);
    let header = json!({"alg": "HS256"});
    let exp = now() + 600;
    let verify = |payload: String| {
        let token = sign_text(Algorithm::HS256, &header, &payload);
        let auth = auth.clone();
        async move { auth.verify(&token).await }
    };
    let ok = verify(format!(
        r#"{{"sub":"al\u0069ce","exp":{exp},"scope":" a  b","other":{{"deep":[1,2,3]}},"tenant":"acme","scp":["x","y\u0041"],"x":1,"x":2}}"#
    ))
    .await
    .unwrap();
    assert_eq!(ok.subject(), "alice");
    assert_eq!(ok.scopes().collect::<Vec<_>>(), ["a", "b", "x", "yA"]);
    assert_eq!(
        ok.claims::<serde_json::Value>().unwrap()["tenant"],
        json!("acme")
    );
    for (payload, why) in [
        (
            format!(r#"{{"sub":"a","exp":{exp},"exp":{exp},"tenant":1}}"#),
            "duplicate exp",
        ),
        (
            format!(r#"{{"sub":"a","sub":"b","exp":{exp},"tenant":1}}"#),
            "duplicate sub",
        ),
        (
            format!(r#"{{"sub":"a","exp":{exp},"tenant":null}}"#),
            "required claim null",
        ),
        (
            format!(r#"{{"sub":"a","exp":{exp}}}"#),
            "required claim missing",
        ),
        (
            format!(r#"{{"sub":"a","exp":{exp},"tenant":1,"aud":["a",1]}}"#),
            "aud with a number",
        ),
        (
            format!(r#"{{"sub":"a","exp":{exp},"tenant":1,"scope":true}}"#),
            "scope a bool",
        ),
        (
            format!(r#"{{"sub":"a","exp":{exp},"tenant":1,"scp":[true]}}"#),
            "scp of bools",
        ),
        (
            format!(r#"{{"sub":"a","exp":{exp},"tenant":1,"iat":"1"}}"#),
            "iat a string",
        ),
        (
            r#"{"sub":"a","exp":1e300,"tenant":1}"#.to_string(),
            "exp 1e300",
        ),
        (
            format!(r#"{{"sub":"a","exp":{exp},"tenant":1}} {{}}"#),
            "two objects",
        ),
        ("[]".into(), "an array"),
        ("\"s\"".into(), "a string"),
        ("null".into(), "null"),
        ("{".into(), "truncated"),
    ] {
        assert!(verify(payload).await.is_err(), "{why}");
    }
    // A typed claims type sees the same values (also those the policy
    // reads) and refuses what does not fit it.
    let typed = Jwt::hs256(HS256_SECRET).unwrap().claims::<TestClaims>();
    let token = sign_text(
        Algorithm::HS256,
        &header,
        &format!(r#"{{"sub":"b\u006fb","exp":{exp},"tenant":"t"}}"#),
    );
    let identity = typed.verify(&token).await.unwrap();
    let claims = identity.claims::<TestClaims>().unwrap();
    assert_eq!((&*claims.sub, claims.tenant.as_deref()), ("bob", Some("t")));
    let token = sign_text(
        Algorithm::HS256,
        &header,
        &format!(r#"{{"sub":"bob","exp":{exp},"tenant":5}}"#),
    );
    assert!(typed.verify(&token).await.is_err());
}

/// Keys are selected by `kid` and pinned to their algorithm; a kid-less
/// key serves unknown kids of its algorithm; no key set is ambiguous.
#[tokio::test]
async fn key_selection_by_kid_and_algorithm() {
    let key = |alg, secret: &[u8]| JwtKey::hmac(alg, secret).unwrap();
    let auth = Jwt::with_keys([
        key(Algorithm::HS256, HS256_SECRET).with_kid("a"),
        key(Algorithm::HS384, HS384_SECRET).with_kid("b"),
        key(Algorithm::HS512, HS512_SECRET),
    ])
    .unwrap();
    let c = claims("alice");
    for (alg, kid, ok) in [
        (Algorithm::HS256, Some("a"), true),
        (Algorithm::HS384, Some("a"), false),
        (Algorithm::HS256, Some("zz"), false),
        (Algorithm::HS512, Some("zz"), true),
        (Algorithm::HS256, None, true),
        (Algorithm::RS256, None, false),
    ] {
        let got = auth.verify(&sign(alg, kid, &c)).await;
        assert_eq!(got.is_ok(), ok, "{alg:?} kid {kid:?}");
    }
    let two = Jwt::with_keys([
        key(Algorithm::HS256, HS256_SECRET).with_kid("x"),
        key(Algorithm::HS256, HS256_SECRET).with_kid("y"),
    ])
    .unwrap();
    assert!(two.verify(&sign(Algorithm::HS256, None, &c)).await.is_err());
    assert!(Jwt::with_keys([]).is_err());
    let anon = || key(Algorithm::HS256, HS256_SECRET);
    assert!(Jwt::with_keys([anon(), anon()]).is_err());
    assert!(Jwt::with_keys([anon().with_kid("k".repeat(257))]).is_err());
}

/// A header's `alg` names its algorithm exactly: case-sensitive, no
/// trimming, and only the names jsonwebtoken verifies. (The policy's key
/// selection and jsonwebtoken's own header parse both refuse these; the
/// accepted control fails if the policy refuses a valid name.)
#[tokio::test]
async fn alg_names_are_exact() {
    let server = serve(every_algorithm()).await;
    let payload = claims("mallory").to_string();
    let good = sign_text(
        Algorithm::HS256,
        &json!({"alg": "HS256", "kid": "HS256"}),
        &payload,
    );
    accepted(server.addr, &good).await;
    for bad in [
        "hs256",
        "HS256 ",
        " HS256",
        "HS256\u{0}",
        "",
        "ES512",
        "Ed25519",
        "HS-256",
    ] {
        // Signed by HS256 over the header that names `bad`.
        let token = sign_text(
            Algorithm::HS256,
            &json!({"alg": bad, "kid": "HS256"}),
            &payload,
        );
        invalid(server.addr, &token).await;
    }
}

/// Which JWKs are usable keys, and the algorithm each is pinned to.
#[test]
fn key_import_jwk_rules() {
    const RSA_N: &str = "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ";
    let (x, y) = (
        "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
        "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
    );
    let ed = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
    let usable = [
        (
            json!({"kty": "RSA", "n": RSA_N, "e": "AQAB"}),
            Algorithm::RS256,
        ),
        (
            json!({"kty": "RSA", "alg": "PS384", "n": RSA_N, "e": "AQAB"}),
            Algorithm::PS384,
        ),
        (
            json!({"kty": "EC", "crv": "P-256", "x": x, "y": y}),
            Algorithm::ES256,
        ),
        (
            json!({"kty": "OKP", "crv": "Ed25519", "x": ed}),
            Algorithm::EdDSA,
        ),
        (
            json!({"kty": "oct", "alg": "HS256", "k": b64([7u8; 32])}),
            Algorithm::HS256,
        ),
    ];
    for (jwk, alg) in &usable {
        assert_eq!(
            JwtKey::from_jwk(&jwk.to_string()).unwrap().algorithm(),
            *alg,
            "{jwk}"
        );
    }
    for jwk in [
        json!({"kty": "RSA", "use": "enc", "n": RSA_N, "e": "AQAB"}),
        json!({"kty": "RSA", "key_ops": ["encrypt"], "n": RSA_N, "e": "AQAB"}),
        json!({"kty": "EC", "alg": "ES384", "crv": "P-256", "x": x, "y": y}),
        json!({"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"}),
        json!({"kty": "OKP", "crv": "X25519", "x": ed}),
        json!({"kty": "oct", "k": b64([7u8; 32])}),
        json!({"kty": "oct", "alg": "HS256", "k": b64([7u8; 31])}),
        json!({"kty": "RSA", "n": b64([0xc1u8; 128]), "e": "AQAB"}),
        json!({"kty": "XYZ"}),
        json!({"kty": "RSA", "kid": 5, "n": RSA_N, "e": "AQAB"}),
        json!("not an object"),
    ] {
        assert!(JwtKey::from_jwk(&jwk.to_string()).is_err(), "{jwk}");
    }
    // A set keeps the usable keys and skips the others.
    let mut keys: Vec<_> = usable.iter().map(|(k, _)| k.clone()).collect();
    keys.push(json!({"kty": "XYZ"}));
    let set = json!({ "keys": keys }).to_string();
    let auth = JwtAuthenticator::from_jwk_set_json(&set).unwrap();
    let mut algs = auth.algorithms();
    algs.sort_by_key(|a| format!("{a:?}"));
    assert_eq!(algs.len(), 5, "{algs:?}");
    for bad in [r#"{"keys":{}}"#, "[]", r#"{"keys":[{"kty":"XYZ"}]}"#] {
        assert!(JwtAuthenticator::from_jwk_set_json(bad).is_err(), "{bad}");
    }
}

/// Builder values that cannot be honoured are configuration errors.
#[test]
fn configuration_errors_are_not_clamped() {
    let hs = || Jwt::hs256(HS256_SECRET).unwrap();
    assert!(hs().leeway(tower_ws_auth::jwt::MAX_LEEWAY).is_ok());
    assert!(hs().leeway(Duration::from_secs(301)).is_err());
    assert!(hs().leeway(Duration::from_millis(300_001)).is_err());
}

/// Each toggle sets one thing: `validate_exp(false)` does not waive
/// `require_exp`, and the reverse.
#[tokio::test]
async fn toggles_set_one_thing() {
    let hs = || Jwt::hs256(HS256_SECRET).unwrap();
    let no_exp = sign(Algorithm::HS256, None, &json!({"sub": "alice"}));
    let expired = sign(
        Algorithm::HS256,
        None,
        &json!({"sub": "alice", "exp": now() - 60}),
    );
    let unchecked = hs().validate_exp(false);
    assert!(unchecked.verify(&expired).await.is_ok());
    assert!(
        unchecked.verify(&no_exp).await.is_err(),
        "exp still required"
    );
    let optional = hs().require_exp(false);
    assert!(optional.verify(&no_exp).await.is_ok());
    assert!(
        optional.verify(&expired).await.is_err(),
        "exp still checked"
    );
    let both = hs().validate_exp(false).require_exp(false);
    assert!(both.verify(&no_exp).await.is_ok() && both.verify(&expired).await.is_ok());
}
