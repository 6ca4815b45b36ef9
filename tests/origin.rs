//! Origin checks (cross-site WebSocket hijacking), end to end: one test per
//! rule of SECURITY.md's "Origin" section.

mod common;

use common::*;
use http::StatusCode;
use tower_ws_auth::{MissingOrigin, OriginPolicy, WsAuthLayer};

async fn cookie_server(calls: &Calls, policy: OriginPolicy) -> std::net::SocketAddr {
    let layer = WsAuthLayer::new(tokens(calls))
        .bearer_header()
        .cookie("session", policy);
    serve(app(layer)).await
}

const COOKIE: (&str, &str) = ("cookie", "session=alice-session");

#[tokio::test]
async fn allowed_origins_connect_after_normalisation() {
    let addr = cookie_server(&Calls::default(), origin_policy()).await;
    for origin in [
        "https://app.example.com",
        "HTTPS://App.Example.COM",
        "https://app.example.com:443",
        "https://eu.tenants.example.com",
        "https://a.b.tenants.example.com",
        "http://localhost:3000",
    ] {
        let (_, seen, _) = connect_ok(addr, "/ws", &[COOKIE, ("origin", origin)]).await;
        assert_eq!(seen["subject"], "alice", "{origin}");
    }
}

#[tokio::test]
async fn foreign_and_lookalike_origins_are_403_before_the_authenticator() {
    let calls = Calls::default();
    let addr = cookie_server(&calls, origin_policy()).await;
    for origin in [
        "https://evil.example",
        "https://app.example.com.evil.example",
        "https://evilapp.example.com",
        "https://app-example.com",
        "http://app.example.com",
        "https://app.example.com:8443",
        "https://tenants.example.com",
        "https://eviltenants.example.com",
        "http://localhost:3001",
        "http://localhost",
        "null",
        "https://app.example.com/",
        "not an origin",
    ] {
        let refused = connect(addr, "/ws", &[COOKIE, ("origin", origin)])
            .await
            .unwrap_err();
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{origin}");
        assert_eq!(refused.challenge(), None);
        assert_eq!(refused.body, "Forbidden\n");
    }
    assert_eq!(
        calls.get(),
        0,
        "the authenticator must not run for a refused Origin"
    );
}

#[tokio::test]
async fn cookie_without_origin_is_403_by_default() {
    let calls = Calls::default();
    let addr = cookie_server(&calls, origin_policy()).await;
    let refused = connect(addr, "/ws", &[COOKIE]).await.unwrap_err();
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(calls.get(), 0);

    // Configurable for non-browser clients.
    let addr = cookie_server(&calls, origin_policy().missing_origin(MissingOrigin::Allow)).await;
    let (_, seen, _) = connect_ok(addr, "/ws", &[COOKIE]).await;
    assert_eq!(seen["subject"], "alice");
}

#[tokio::test]
async fn null_origin_only_when_allowed() {
    let addr = cookie_server(&Calls::default(), origin_policy().allow_null(true)).await;
    let (_, seen, _) = connect_ok(addr, "/ws", &[COOKIE, ("origin", "null")]).await;
    assert_eq!(seen["subject"], "alice");
}

#[tokio::test]
async fn several_origin_headers_are_400() {
    let calls = Calls::default();
    let addr = cookie_server(&calls, origin_policy()).await;
    let refused = connect(
        addr,
        "/ws",
        &[
            COOKIE,
            ("origin", "https://app.example.com"),
            ("origin", "https://app.example.com"),
        ],
    )
    .await
    .unwrap_err();
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert_eq!(calls.get(), 0);
}

#[tokio::test]
async fn cookie_policy_does_not_block_other_carriers() {
    // Bearer tokens are not ambient: no Origin rule applies to them unless
    // `origin_policy` says so.
    let addr = cookie_server(&Calls::default(), origin_policy()).await;
    let (_, seen, _) = connect_ok(
        addr,
        "/ws",
        &[
            ("authorization", "Bearer bob-token"),
            ("origin", "https://evil.example"),
        ],
    )
    .await;
    assert_eq!(seen["subject"], "bob");
}

#[tokio::test]
async fn layer_wide_policy_checks_every_upgrade() {
    let calls = Calls::default();
    let layer = WsAuthLayer::new(tokens(&calls))
        .bearer_header()
        .origin_policy(origin_policy());
    let addr = serve(app(layer)).await;
    let refused = connect(
        addr,
        "/ws",
        &[
            ("authorization", "Bearer bob-token"),
            ("origin", "https://evil.example"),
        ],
    )
    .await
    .unwrap_err();
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    // A refused Origin is 403 even when no credential came at all.
    let refused = connect(addr, "/ws", &[("origin", "https://evil.example")])
        .await
        .unwrap_err();
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let (_, seen, _) = connect_ok(
        addr,
        "/ws",
        &[
            ("authorization", "Bearer bob-token"),
            ("origin", "https://app.example.com"),
        ],
    )
    .await;
    assert_eq!(seen["subject"], "bob");
    assert_eq!(calls.get(), 1);
}
