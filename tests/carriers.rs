//! Credential carriers, end to end: a real axum server, a real
//! tokio-tungstenite handshake, one test per rule of SECURITY.md's
//! "Credential carriers" section.

mod common;

use common::*;
use http::StatusCode;
use tower_ws_auth::{OriginPolicy, SubprotocolCarrier, WsAuthLayer};

const SITE: &str = "http://app.example.test";

async fn server(calls: &Calls) -> std::net::SocketAddr {
    let layer = WsAuthLayer::new(tokens(calls))
        .bearer_header()
        .subprotocol_token()
        .cookie("session", OriginPolicy::from_origins([SITE]).unwrap())
        .header("x-api-key")
        .query_param("token");
    serve(app(layer)).await
}

fn assert_refused(refused: &Refused, status: StatusCode, challenge: Option<&str>) {
    assert_eq!(refused.status, status, "{refused:?}");
    assert_eq!(refused.challenge(), challenge, "{refused:?}");
    assert_eq!(refused.headers["cache-control"], "no-store");
}

#[tokio::test]
async fn every_carrier_authenticates() {
    let calls = Calls::default();
    let addr = server(&calls).await;

    let (mut ws, seen, _) =
        connect_ok(addr, "/ws", &[("authorization", "Bearer alice-token")]).await;
    assert_eq!(seen["subject"], "alice");
    assert_eq!(seen["scopes"], serde_json::json!(["chat"]));
    assert_echo(&mut ws, "hello over bearer").await;

    let offer = offer("bob-token");
    let (_, seen, response) = connect_ok(addr, "/ws", &[("sec-websocket-protocol", &offer)]).await;
    assert_eq!(seen["subject"], "bob");
    assert_eq!(response.headers()["sec-websocket-protocol"], "chat");

    let (_, seen, _) = connect_ok(
        addr,
        "/ws",
        &[
            ("cookie", "theme=dark; session=alice-session"),
            ("origin", SITE),
        ],
    )
    .await;
    assert_eq!(seen["subject"], "alice");

    let (_, seen, _) = connect_ok(addr, "/ws", &[("x-api-key", "bob-token")]).await;
    assert_eq!(seen["subject"], "bob");

    let (_, seen, _) = connect_ok(addr, "/ws?room=1&token=alice-token&x=y", &[]).await;
    assert_eq!(seen["subject"], "alice");
    assert_eq!(
        seen["query"], "room=1&x=y",
        "the handler must not see the query token"
    );
    assert_eq!(calls.get(), 5);
}

#[tokio::test]
async fn bearer_scheme_is_case_insensitive() {
    let addr = server(&Calls::default()).await;
    for scheme in ["bearer", "BEARER", "bEaReR"] {
        let value = format!("{scheme} alice-token");
        let (_, seen, _) = connect_ok(addr, "/ws", &[("authorization", &value)]).await;
        assert_eq!(seen["subject"], "alice");
    }
}

#[tokio::test]
async fn no_credential_is_401_without_error() {
    let calls = Calls::default();
    let addr = server(&calls).await;
    let refused = connect(addr, "/ws", &[]).await.unwrap_err();
    assert_refused(&refused, StatusCode::UNAUTHORIZED, Some("Bearer"));
    assert_eq!(refused.body, "Unauthorized\n");
    assert_eq!(calls.get(), 0);
}

#[tokio::test]
async fn malformed_carriers_are_400_invalid_request() {
    let calls = Calls::default();
    let addr = server(&calls).await;
    let cases: &[&[(&str, &str)]] = &[
        &[("authorization", "Bearer ")],
        &[("authorization", "Bearer")],
        &[("authorization", "Basic YWxpY2U6cGFzcw==")],
        &[("authorization", "Bearer alice-token bob-token")],
        &[
            ("authorization", "Bearer alice-token"),
            ("authorization", "Bearer alice-token"),
        ],
        &[("authorization", "Bearer {\"json\":1}")],
        &[("x-api-key", "two words")],
        &[
            ("cookie", "session=alice-session; session=bob-token"),
            ("origin", SITE),
        ],
    ];
    for headers in cases {
        let refused = connect(addr, "/ws", headers).await.unwrap_err();
        assert_refused(
            &refused,
            StatusCode::BAD_REQUEST,
            Some("Bearer error=\"invalid_request\""),
        );
    }
    for path in [
        "/ws?token=alice-token&token=alice-token",
        "/ws?token=",
        "/ws?token=a&token=b",
    ] {
        let refused = connect(addr, path, &[]).await.unwrap_err();
        assert_refused(
            &refused,
            StatusCode::BAD_REQUEST,
            Some("Bearer error=\"invalid_request\""),
        );
    }
    assert_eq!(
        calls.get(),
        0,
        "a malformed request never reaches the authenticator"
    );
}

#[tokio::test]
async fn invalid_credentials_get_one_generic_answer() {
    let addr = server(&Calls::default()).await;
    let mut bodies = Vec::new();
    for token in ["nonsense", "expired-token", "forged.jwt.value"] {
        let value = format!("Bearer {token}");
        let refused = connect(addr, "/ws", &[("authorization", &value)])
            .await
            .unwrap_err();
        assert_refused(
            &refused,
            StatusCode::UNAUTHORIZED,
            Some("Bearer error=\"invalid_token\""),
        );
        assert!(!refused.body.contains(token));
        bodies.push(refused.body);
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "{bodies:?}");
}

#[tokio::test]
async fn authenticator_outcomes_map_to_statuses() {
    let addr = server(&Calls::default()).await;
    let refused = connect(addr, "/ws", &[("authorization", "Bearer readonly-token")])
        .await
        .unwrap_err();
    assert_refused(
        &refused,
        StatusCode::FORBIDDEN,
        Some("Bearer error=\"insufficient_scope\", scope=\"chat:write\""),
    );
    let refused = connect(addr, "/ws", &[("authorization", "Bearer banned-token")])
        .await
        .unwrap_err();
    assert_refused(&refused, StatusCode::FORBIDDEN, None);
    let refused = connect(addr, "/ws", &[("authorization", "Bearer malformed-token")])
        .await
        .unwrap_err();
    assert_refused(
        &refused,
        StatusCode::BAD_REQUEST,
        Some("Bearer error=\"invalid_request\""),
    );
    let refused = connect(addr, "/ws", &[("authorization", "Bearer backend-down")])
        .await
        .unwrap_err();
    assert_refused(&refused, StatusCode::SERVICE_UNAVAILABLE, None);
    assert_eq!(refused.headers["retry-after"], "7");
    assert_eq!(refused.body, "Service Unavailable\n");
}

#[tokio::test]
async fn precedence_decides_between_carriers_never_validity() {
    let addr = server(&Calls::default()).await;
    // Configured order: bearer, subprotocol, cookie, header, query.
    let (_, seen, _) = connect_ok(
        addr,
        "/ws?token=bob-token",
        &[("authorization", "Bearer alice-token")],
    )
    .await;
    assert_eq!(seen["subject"], "alice");
    assert_eq!(seen["query"], serde_json::Value::Null);
    let offer = offer("bob-token");
    let (_, seen, _) = connect_ok(
        addr,
        "/ws",
        &[
            ("sec-websocket-protocol", &offer),
            ("cookie", "session=alice-session"),
            ("origin", SITE),
        ],
    )
    .await;
    assert_eq!(seen["subject"], "bob");
    // The first carrier is invalid and a later one valid: refused, not "whichever is valid".
    let refused = connect(
        addr,
        "/ws?token=alice-token",
        &[
            ("authorization", "Bearer nonsense"),
            ("cookie", "session=alice-session"),
            ("origin", SITE),
        ],
    )
    .await
    .unwrap_err();
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn conflicting_carriers_can_be_refused() {
    let calls = Calls::default();
    let layer = WsAuthLayer::new(tokens(&calls))
        .bearer_header()
        .query_param("token")
        .reject_conflicting_credentials();
    let addr = serve(app(layer)).await;
    let refused = connect(
        addr,
        "/ws?token=bob-token",
        &[("authorization", "Bearer alice-token")],
    )
    .await
    .unwrap_err();
    assert_refused(
        &refused,
        StatusCode::BAD_REQUEST,
        Some("Bearer error=\"invalid_request\""),
    );
    // The same credential twice is no conflict.
    let (_, seen, _) = connect_ok(
        addr,
        "/ws?token=alice-token",
        &[("authorization", "Bearer alice-token")],
    )
    .await;
    assert_eq!(seen["subject"], "alice");
    assert_eq!(calls.get(), 1);
}

#[tokio::test]
async fn oversized_credentials_are_431_before_decoding() {
    let calls = Calls::default();
    let addr = server(&calls).await;
    let big = "a".repeat(9000);
    let bearer = format!("Bearer {big}");
    let refused = connect(addr, "/ws", &[("authorization", &bearer)])
        .await
        .unwrap_err();
    assert_refused(&refused, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, None);
    let offer = offer(&big);
    let refused = connect(addr, "/ws", &[("sec-websocket-protocol", &offer)])
        .await
        .unwrap_err();
    assert_eq!(refused.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    let many = "chat, ".repeat(3000);
    let refused = connect(
        addr,
        "/ws",
        &[(
            "sec-websocket-protocol",
            &format!("{many}{}", SubprotocolCarrier::new().encode("alice-token")),
        )],
    )
    .await
    .unwrap_err();
    assert_eq!(refused.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    let cookie = format!("session={big}");
    let refused = connect(addr, "/ws", &[("cookie", &cookie), ("origin", SITE)])
        .await
        .unwrap_err();
    assert_eq!(refused.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    let refused = connect(addr, &format!("/ws?token={big}"), &[])
        .await
        .unwrap_err();
    assert_eq!(refused.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert_eq!(calls.get(), 0);

    // The caps are configurable.
    let layer = WsAuthLayer::new(tokens(&calls))
        .bearer_header()
        .max_credential_bytes(8);
    let addr = serve(app(layer)).await;
    let refused = connect(addr, "/ws", &[("authorization", "Bearer alice-token")])
        .await
        .unwrap_err();
    assert_eq!(refused.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
}

#[tokio::test]
async fn client_identity_headers_are_ignored() {
    let addr = server(&Calls::default()).await;
    let spoof = [
        ("x-user-id", "admin"),
        ("x-forwarded-user", "admin"),
        ("x-remote-user", "admin"),
    ];
    let refused = connect(addr, "/ws", &spoof).await.unwrap_err();
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    let mut headers = spoof.to_vec();
    headers.push(("authorization", "Bearer bob-token"));
    let (_, seen, _) = connect_ok(addr, "/ws", &headers).await;
    assert_eq!(seen["subject"], "bob");
}

#[tokio::test]
async fn default_carrier_is_bearer() {
    let calls = Calls::default();
    let addr = serve(app(WsAuthLayer::new(tokens(&calls)))).await;
    let (_, seen, _) = connect_ok(addr, "/ws", &[("authorization", "Bearer alice-token")]).await;
    assert_eq!(seen["subject"], "alice");
    // Carriers that were not configured are not read.
    let refused = connect(
        addr,
        "/ws?token=alice-token",
        &[("x-api-key", "alice-token")],
    )
    .await
    .unwrap_err();
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
}
