//! Credential carriers, end to end: a real axum server, a real
//! tokio-tungstenite handshake, one test per rule of SECURITY.md's
//! "Credential carriers" section.

use crate::common;

use common::*;
use http::StatusCode;
use tower_ws_auth::{SubprotocolCarrier, WsAuthLayer};

async fn server(calls: &Calls) -> std::net::SocketAddr {
    serve(app(every_carrier(calls))).await
}

fn assert_refused(refused: &Refused, status: StatusCode, challenge: Option<&str>) {
    assert_eq!(refused.status, status, "{refused:?}");
    assert_eq!(refused.challenge(), challenge, "{refused:?}");
    assert_eq!(refused.headers["cache-control"], "no-store");
}

/// The refusal of an upgrade carrying `Authorization: Bearer <token>`.
async fn refused_bearer(addr: std::net::SocketAddr, token: &str) -> Refused {
    let value = format!("Bearer {token}");
    connect(addr, "/ws", &[("authorization", &value)])
        .await
        .unwrap_err()
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

/// A server with every carrier and the given caps.
async fn capped_server(
    calls: &Calls,
    max_credential: usize,
    max_header: usize,
) -> std::net::SocketAddr {
    let layer = every_carrier(calls)
        .max_credential_bytes(max_credential.try_into().unwrap())
        .max_header_bytes(max_header.try_into().unwrap());
    serve(app(layer)).await
}

/// The request of each carrier carrying `credential`: path and headers.
fn carried(carrier: &str, credential: &str) -> (String, Vec<(&'static str, String)>) {
    match carrier {
        "bearer" => (
            "/ws".into(),
            vec![("authorization", format!("Bearer {credential}"))],
        ),
        "header" => ("/ws".into(), vec![("x-api-key", credential.to_owned())]),
        "subprotocol" => (
            "/ws".into(),
            vec![(
                "sec-websocket-protocol",
                format!("chat, base64url.bearer.{credential}"),
            )],
        ),
        "cookie" => (
            "/ws".into(),
            vec![
                ("cookie", format!("session={credential}")),
                ("origin", SITE.to_owned()),
            ],
        ),
        "query" => (format!("/ws?token={credential}"), vec![]),
        other => unreachable!("{other}"),
    }
}

const CARRIERS: [&str; 5] = ["bearer", "header", "subprotocol", "cookie", "query"];

/// Sends `credential` by `carrier`; `true` if it reached the authenticator
/// (which refuses it: an unknown token), `false` if it was a 431 before.
async fn reaches_authenticator(
    addr: std::net::SocketAddr,
    calls: &Calls,
    carrier: &str,
    credential: &str,
) -> bool {
    let before = calls.get();
    let (path, headers) = carried(carrier, credential);
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let refused = connect(addr, &path, &headers).await.unwrap_err();
    let reached = calls.get() - before;
    match refused.status {
        StatusCode::UNAUTHORIZED => {
            assert_eq!(refused.challenge(), Some("Bearer error=\"invalid_token\""));
            assert_eq!(reached, 1, "{carrier}");
            true
        }
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => {
            assert_eq!(reached, 0, "{carrier}: the authenticator ran on a 431");
            false
        }
        other => panic!("{carrier}: unexpected {other} {refused:?}"),
    }
}

/// The credential cap, on each side of it and for every carrier: a
/// credential of exactly `max_credential_bytes` (as carried, before any
/// decoding) reaches the authenticator; one byte more is 431 and the
/// authenticator is not called, with the header well under its own cap.
#[tokio::test]
async fn the_credential_cap_holds_at_its_limit_for_every_carrier() {
    const CAP: usize = 64;
    let calls = Calls::default();
    let addr = capped_server(&calls, CAP, 4 * CAP).await;
    // 48 bytes of `a` are 64 base64url characters, which decode to UTF-8.
    let encoded_at_cap = SubprotocolCarrier::new().encode(&"a".repeat(48));
    let encoded_at_cap = encoded_at_cap.trim_start_matches(SubprotocolCarrier::DEFAULT_PREFIX);
    assert_eq!(encoded_at_cap.len(), CAP);
    for carrier in CARRIERS {
        let at_cap = if carrier == "subprotocol" {
            encoded_at_cap.to_owned()
        } else {
            "a".repeat(CAP)
        };
        assert!(
            reaches_authenticator(addr, &calls, carrier, &at_cap).await,
            "{carrier} at the cap"
        );
        let over = format!("{at_cap}A");
        assert!(
            !reaches_authenticator(addr, &calls, carrier, &over).await,
            "{carrier} over the cap"
        );
    }
}

/// A bearer token of exactly `max_credential_bytes` that is not token68 is
/// malformed (400), not over the cap (431), and never reaches the
/// authenticator.
#[tokio::test]
async fn a_bad_bearer_token_at_the_cap_is_400_not_431() {
    const CAP: usize = 64;
    let calls = Calls::default();
    let addr = capped_server(&calls, CAP, 4 * CAP).await;
    for token in [
        format!("{}!", "a".repeat(CAP - 1)),
        format!("{} b", "a".repeat(CAP - 2)),
    ] {
        assert_eq!(token.len(), CAP);
        let refused = refused_bearer(addr, &token).await;
        assert_refused(
            &refused,
            StatusCode::BAD_REQUEST,
            Some("Bearer error=\"invalid_request\""),
        );
    }
    assert_eq!(calls.get(), 0);
}

/// The header cap (all lines of a header together, or the query string),
/// on each side of it and for every carrier, with the credential under its
/// own cap: a header of exactly `max_header_bytes` is read; one byte more is
/// 431 before it is parsed. Header lines are counted with the two bytes
/// that join them (`, ` or `; `).
#[tokio::test]
async fn the_header_cap_holds_at_its_limit_for_every_carrier() {
    const CAP: usize = 256;
    let calls = Calls::default();
    let addr = capped_server(&calls, CAP, CAP).await;
    for carrier in CARRIERS {
        // The longest credential whose header (or query) is exactly the cap.
        let at_cap = match carrier {
            "bearer" => "a".repeat(CAP - "Bearer ".len()),
            "header" => "a".repeat(CAP),
            "cookie" => "a".repeat(CAP - "session=".len() - 2),
            "query" => "a".repeat(CAP - "token=".len()),
            _ => continue,
        };
        assert!(
            reaches_authenticator(addr, &calls, carrier, &at_cap).await,
            "{carrier} at the cap"
        );
        let over = format!("{at_cap}a");
        assert!(
            !reaches_authenticator(addr, &calls, carrier, &over).await,
            "{carrier} over the cap"
        );
    }
    // The subprotocol list: "chat, base64url.bearer." (23 bytes) and 231
    // characters (173 bytes encoded), plus 2, is the cap; one more space
    // after the comma (which the list parser skips) is over.
    let encoded = SubprotocolCarrier::new().encode(&"a".repeat(173));
    let encoded = encoded.trim_start_matches(SubprotocolCarrier::DEFAULT_PREFIX);
    assert_eq!(encoded.len(), 231);
    for (padding, reaches) in [("", true), (" ", false)] {
        let before = calls.get();
        let list = format!("chat,{padding} base64url.bearer.{encoded}");
        let refused = connect(addr, "/ws", &[("sec-websocket-protocol", &list)])
            .await
            .unwrap_err();
        let expected = if reaches {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        };
        assert_eq!(refused.status, expected, "padding {padding:?}");
        assert_eq!(calls.get() - before, usize::from(reaches));
    }
}

/// Only the `websocket` token (any case) in `Upgrade` makes a request an
/// upgrade: another 9-byte token is a plain request, which the layer lets
/// through unauthenticated (no `protect_all_requests`), while `websocket`
/// without a credential is 401.
#[tokio::test]
async fn only_the_websocket_token_is_an_upgrade() {
    let addr = server(&Calls::default()).await;
    for (upgrade, status) in [
        ("websockex", StatusCode::OK),
        ("xebsocket", StatusCode::OK),
        ("websocke", StatusCode::OK),
        ("websocket2", StatusCode::OK),
        ("WEBSOCKET", StatusCode::UNAUTHORIZED),
        ("h2c, websocket", StatusCode::UNAUTHORIZED),
    ] {
        let (got, _) = http_get(
            addr,
            "/plain",
            &[("upgrade", upgrade), ("connection", "upgrade")],
        )
        .await;
        assert_eq!(got, status, "Upgrade: {upgrade}");
    }
}
