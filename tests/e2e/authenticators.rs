//! Authenticators and the layer around them: combinators, caching, API
//! keys, custom rejections, pass-through and the axum extractors.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use common::*;
use http::{Response, StatusCode, header};
use tower_ws_auth::{
    AuthError, AuthMethod, Authenticator, Carrier, Identity, Rejection, WsAuthLayer,
    api_key::{ApiKeyAuthenticator, ApiKeyDigest, ApiKeyStore, MemoryApiKeys},
    authenticate_fn,
};

fn counting(
    calls: &Arc<AtomicUsize>,
    subject: &'static str,
    outcome: Result<(), AuthError>,
) -> impl Authenticator + Clone {
    let calls = calls.clone();
    authenticate_fn(move |_credential, _request| {
        calls.fetch_add(1, Ordering::SeqCst);
        let result = outcome
            .clone()
            .map(|()| Identity::new(subject, AuthMethod::Custom("counting")));
        async move { result }
    })
}

#[tokio::test]
async fn or_falls_back_only_on_not_applicable() {
    let second_calls = Arc::new(AtomicUsize::new(0));
    let first = authenticate_fn(|credential, _| {
        let outcome = match credential.expose_secret() {
            "jwt-like.token.value" => Ok(Identity::new("from-first", AuthMethod::Jwt)),
            s if s.contains('.') => Err(AuthError::invalid("bad signature")),
            _ => Err(AuthError::NotApplicable),
        };
        async move { outcome }
    });
    let auth = first.or(counting(&second_calls, "from-second", Ok(())));
    let addr = serve(app(WsAuthLayer::new(auth).bearer_header())).await;

    let (_, seen, _) = connect_ok(
        addr,
        "/ws",
        &[("authorization", "Bearer jwt-like.token.value")],
    )
    .await;
    assert_eq!(seen["subject"], "from-first");
    let (_, seen, _) = connect_ok(addr, "/ws", &[("authorization", "Bearer opaque-key")]).await;
    assert_eq!(seen["subject"], "from-second");
    assert_eq!(second_calls.load(Ordering::SeqCst), 1);
    // A rejection by the first is final: the second never sees the credential.
    let refused = connect(
        addr,
        "/ws",
        &[("authorization", "Bearer forged.token.value")],
    )
    .await
    .unwrap_err();
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(second_calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn not_applicable_everywhere_is_401_invalid_token() {
    let auth = authenticate_fn(|_, _| async { Err::<Identity, _>(AuthError::NotApplicable) });
    let addr = serve(app(WsAuthLayer::new(auth))).await;
    let refused = connect(addr, "/ws", &[("authorization", "Bearer whatever")])
        .await
        .unwrap_err();
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(refused.challenge(), Some("Bearer error=\"invalid_token\""));
}

#[tokio::test]
async fn for_carriers_routes_each_carrier_to_its_authenticator() {
    let cookie_calls = Arc::new(AtomicUsize::new(0));
    let bearer_calls = Arc::new(AtomicUsize::new(0));
    let auth = counting(&bearer_calls, "token-user", Ok(()))
        .for_carriers([Carrier::Bearer])
        .or(counting(&cookie_calls, "cookie-user", Ok(())).for_carriers([Carrier::Cookie]));
    let policy = tower_ws_auth::OriginPolicy::from_origins(["http://site.test"]).unwrap();
    let addr = serve(app(WsAuthLayer::new(auth)
        .bearer_header()
        .cookie("sid", policy)
        .unwrap()))
    .await;
    let (_, seen, _) = connect_ok(
        addr,
        "/ws",
        &[("cookie", "sid=abc"), ("origin", "http://site.test")],
    )
    .await;
    assert_eq!(seen["subject"], "cookie-user");
    let (_, seen, _) = connect_ok(addr, "/ws", &[("authorization", "Bearer abc")]).await;
    assert_eq!(seen["subject"], "token-user");
    assert_eq!(
        (
            bearer_calls.load(Ordering::SeqCst),
            cookie_calls.load(Ordering::SeqCst)
        ),
        (1, 1)
    );
}

#[tokio::test]
async fn boxed_authenticators_work_in_the_layer() {
    let calls = Calls::default();
    let choose_api_keys = false;
    let auth = if choose_api_keys {
        ApiKeyAuthenticator::from_keys([("k", Identity::new("x", AuthMethod::ApiKey))]).boxed()
    } else {
        tokens(&calls).boxed()
    };
    let addr = serve(app(WsAuthLayer::new(auth.clone()).bearer_header())).await;
    let (_, seen, _) = connect_ok(addr, "/ws", &[("authorization", "Bearer bob-token")]).await;
    assert_eq!(seen["subject"], "bob");
}

#[tokio::test]
async fn cached_skips_the_inner_authenticator_until_ttl() {
    let calls = Arc::new(AtomicUsize::new(0));
    // A TTL long enough for the first handshakes on a loaded machine.
    let auth = counting(&calls, "alice", Ok(())).cached(Duration::from_secs(3), 100);
    let addr = serve(app(WsAuthLayer::new(auth).bearer_header())).await;
    for _ in 0..3 {
        let (_, seen, _) = connect_ok(addr, "/ws", &[("authorization", "Bearer tok-1")]).await;
        assert_eq!(seen["subject"], "alice");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    connect_ok(addr, "/ws", &[("authorization", "Bearer tok-2")]).await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "another credential is another entry"
    );
    tokio::time::sleep(Duration::from_millis(3200)).await;
    connect_ok(addr, "/ws", &[("authorization", "Bearer tok-1")]).await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "the entry expired with its TTL"
    );
}

#[tokio::test]
async fn cached_never_outlives_the_identity_and_never_caches_errors() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let short_lived = authenticate_fn(move |credential, _| {
        counter.fetch_add(1, Ordering::SeqCst);
        let outcome = if credential.expose_secret() == "good" {
            Ok(Identity::builder("alice", AuthMethod::Custom("t"))
                .expires_in(Duration::from_millis(300))
                .build())
        } else {
            Err(AuthError::invalid("bad"))
        };
        async move { outcome }
    })
    .cached(Duration::from_secs(3600), 100);
    let cache = short_lived.clone();
    let addr = serve(app(WsAuthLayer::new(short_lived).bearer_header())).await;
    connect_ok(addr, "/ws", &[("authorization", "Bearer good")]).await;
    connect_ok(addr, "/ws", &[("authorization", "Bearer good")]).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    connect_ok(addr, "/ws", &[("authorization", "Bearer good")]).await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "the identity's own expiry ends the entry"
    );

    for _ in 0..2 {
        let refused = connect(addr, "/ws", &[("authorization", "Bearer bad")])
            .await
            .unwrap_err();
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 4, "errors are not cached");
    cache.run_pending_tasks().await;
    assert_eq!(cache.entry_count(), 1);
    cache.invalidate_all();
    cache.run_pending_tasks().await;
    assert_eq!(cache.entry_count(), 0);
}

#[tokio::test]
async fn cached_shares_one_inner_call_between_concurrent_requests() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let slow = authenticate_fn(move |_, _| {
        counter.fetch_add(1, Ordering::SeqCst);
        async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            Ok(Identity::new("alice", AuthMethod::Custom("slow")))
        }
    })
    .cached(Duration::from_secs(60), 10);
    let addr = serve(app(WsAuthLayer::new(slow).bearer_header())).await;
    let handshakes: Vec<_> = (0..8)
        .map(|_| {
            tokio::spawn(async move {
                connect_ok(addr, "/ws", &[("authorization", "Bearer same")])
                    .await
                    .1
            })
        })
        .collect();
    for h in handshakes {
        assert_eq!(h.await.unwrap()["subject"], "alice");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn api_keys_by_header_and_bearer() {
    let keys = ApiKeyAuthenticator::from_keys([
        (
            "sk_live_0123456789abcdef",
            Identity::builder("billing", AuthMethod::ApiKey)
                .scope("invoices")
                .build(),
        ),
        (
            "sk_live_fedcba9876543210",
            Identity::new("search", AuthMethod::ApiKey),
        ),
    ]);
    let addr = serve(app(WsAuthLayer::new(keys)
        .header("X-Api-Key")
        .unwrap()
        .bearer_header()))
    .await;
    let (_, seen, _) = connect_ok(addr, "/ws", &[("x-api-key", "sk_live_0123456789abcdef")]).await;
    assert_eq!(seen["subject"], "billing");
    assert_eq!(seen["scopes"], serde_json::json!(["invoices"]));
    let (_, seen, _) = connect_ok(
        addr,
        "/ws",
        &[("authorization", "Bearer sk_live_fedcba9876543210")],
    )
    .await;
    assert_eq!(seen["subject"], "search");
    for wrong in [
        "sk_live_0123456789abcdeF",
        "sk_live_0123456789abcde",
        "sk_live_0123456789abcdef0",
    ] {
        let refused = connect(addr, "/ws", &[("x-api-key", wrong)])
            .await
            .unwrap_err();
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{wrong}");
        assert_eq!(refused.challenge(), Some("Bearer error=\"invalid_token\""));
    }
}

#[tokio::test]
async fn api_key_prefix_lets_another_authenticator_take_over() {
    let keys =
        ApiKeyAuthenticator::from_keys([("sk_abc", Identity::new("service", AuthMethod::ApiKey))])
            .prefix("sk_");
    let auth = keys.or(tokens(&Calls::default()));
    let addr = serve(app(WsAuthLayer::new(auth).bearer_header())).await;
    let (_, seen, _) = connect_ok(addr, "/ws", &[("authorization", "Bearer sk_abc")]).await;
    assert_eq!(seen["subject"], "service");
    let (_, seen, _) = connect_ok(addr, "/ws", &[("authorization", "Bearer alice-token")]).await;
    assert_eq!(seen["subject"], "alice");
    let refused = connect(addr, "/ws", &[("authorization", "Bearer sk_wrong")])
        .await
        .unwrap_err();
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
}

/// A key store whose database is down.
struct DownStore;

impl ApiKeyStore for DownStore {
    async fn lookup(&self, _digest: &ApiKeyDigest) -> Result<Option<Identity>, AuthError> {
        let refused =
            std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        Err(AuthError::backend("api key database", refused))
    }
}

#[tokio::test]
async fn api_key_store_failure_is_503_never_401() {
    let addr = serve(app(
        WsAuthLayer::new(ApiKeyAuthenticator::new(DownStore)).bearer_header()
    ))
    .await;
    let refused = connect(addr, "/ws", &[("authorization", "Bearer any-key")])
        .await
        .unwrap_err();
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.headers["retry-after"], "1");
}

#[tokio::test]
async fn api_keys_from_stored_digests() {
    let mut store = MemoryApiKeys::new();
    let digest = ApiKeyDigest::from_hex(&ApiKeyDigest::of("from-the-db").to_hex()).unwrap();
    store.insert_digest(digest, Identity::new("db-service", AuthMethod::ApiKey));
    let addr = serve(app(
        WsAuthLayer::new(ApiKeyAuthenticator::new(store)).bearer_header()
    ))
    .await;
    let (_, seen, _) = connect_ok(addr, "/ws", &[("authorization", "Bearer from-the-db")]).await;
    assert_eq!(seen["subject"], "db-service");
}

#[tokio::test]
async fn custom_rejection_handler_writes_json_and_keeps_the_challenge() {
    let json = |rejection: &Rejection| -> Response<axum::body::Body> {
        rejection
            .response_builder()
            .header(header::CONTENT_TYPE, "application/json")
            .body(format!(r#"{{"error":"{}"}}"#, rejection.kind().as_str()).into())
            .unwrap()
    };
    let layer = WsAuthLayer::new(tokens(&Calls::default()))
        .bearer_header()
        .realm("chat")
        .unwrap()
        .rejection_handler(json);
    let addr = serve(app(layer)).await;
    let refused = connect(addr, "/ws", &[("authorization", "Bearer nonsense")])
        .await
        .unwrap_err();
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(refused.headers["content-type"], "application/json");
    assert_eq!(refused.body, r#"{"error":"invalid_token"}"#);
    assert_eq!(
        refused.challenge(),
        Some("Bearer realm=\"chat\", error=\"invalid_token\"")
    );
    let refused = connect(addr, "/ws", &[]).await.unwrap_err();
    assert_eq!(refused.challenge(), Some("Bearer realm=\"chat\""));
}

#[tokio::test]
async fn non_upgrade_requests_pass_through_untouched() {
    let calls = Calls::default();
    let addr = serve(app(WsAuthLayer::new(tokens(&calls)).bearer_header())).await;
    assert_eq!(
        http_get(addr, "/plain", &[]).await,
        (StatusCode::OK, "hello anonymous".into())
    );
    // Even with a credential: pass-through means the layer does not look.
    let (status, body) = http_get(addr, "/plain", &[("authorization", "Bearer alice-token")]).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "hello anonymous"));
    // A handler requiring an Identity on a passed-through request gets 401.
    let (status, _) = http_get(addr, "/plain/required", &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(calls.get(), 0);
}

#[tokio::test]
async fn protect_all_requests_authenticates_plain_http_too() {
    let calls = Calls::default();
    let addr = serve(app(WsAuthLayer::new(tokens(&calls))
        .bearer_header()
        .protect_all_requests(true)))
    .await;
    let (status, _) = http_get(addr, "/plain", &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = http_get(
        addr,
        "/plain/required",
        &[("authorization", "Bearer bob-token")],
    )
    .await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "hello bob"));
    let (status, _) = http_get(addr, "/plain", &[("authorization", "Bearer nonsense")]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn identity_extractor_without_the_layer_is_a_500() {
    let app = Router::new().route(
        "/me",
        get(|identity: Identity| async move { identity.subject().to_owned() }),
    );
    let addr = serve(app).await;
    let (status, body) = http_get(addr, "/me", &[("authorization", "Bearer alice-token")]).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(!body.contains("alice-token"));
}

#[tokio::test]
async fn upgrade_requests_without_connection_header_are_still_authenticated() {
    let calls = Calls::default();
    let addr = serve(app(WsAuthLayer::new(tokens(&calls)).bearer_header())).await;
    let (status, _) = http_get(addr, "/plain", &[("upgrade", "WebSocket")]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = http_get(
        addr,
        "/plain",
        &[
            ("upgrade", "h2c, websocket"),
            ("connection", "keep-alive, Upgrade"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
