//! The `Sec-WebSocket-Protocol` carrier: extraction, stripping and the echo
//! a browser insists on.

use crate::common;

use common::*;
use http::StatusCode;
use tokio_tungstenite::tungstenite::{self, error::ProtocolError};
use tower_ws_auth::{SubprotocolCarrier, WsAuthLayer};

async fn server() -> std::net::SocketAddr {
    serve(app(
        WsAuthLayer::new(tokens(&Calls::default())).subprotocol_token()
    ))
    .await
}

#[tokio::test]
async fn echo_is_one_offered_protocol_and_never_the_credential() {
    let addr = server().await;
    for path in ["/ws", "/ws/select"] {
        let offer = offer("alice-token");
        let (mut ws, seen, response) =
            connect_ok(addr, path, &[("sec-websocket-protocol", &offer)]).await;
        let echoed: Vec<_> = response
            .headers()
            .get_all("sec-websocket-protocol")
            .iter()
            .collect();
        assert_eq!(echoed, ["chat"], "{path}");
        assert_eq!(seen["subject"], "alice");
        assert_eq!(
            seen["protocols"], "chat",
            "the handler must not see the credential entry"
        );
        assert_echo(&mut ws, "still open").await;
    }
}

/// A protocol the handler selects among the client's offers is kept, even
/// when it is not the one the layer would echo (the first companion).
#[tokio::test]
async fn the_handlers_choice_of_an_offered_protocol_is_kept() {
    let addr = server().await;
    let entry = SubprotocolCarrier::new().encode("alice-token");
    let offer = format!("graphql-ws, {entry}, chat");
    for (path, echoed) in [("/ws", "graphql-ws"), ("/ws/select", "chat")] {
        let (mut ws, seen, response) =
            connect_ok(addr, path, &[("sec-websocket-protocol", &offer)]).await;
        let got: Vec<_> = response
            .headers()
            .get_all("sec-websocket-protocol")
            .iter()
            .collect();
        assert_eq!(got, [echoed], "{path}");
        assert_eq!(seen["protocols"], "graphql-ws, chat");
        assert_echo(&mut ws, "still open").await;
    }
}

#[tokio::test]
async fn credential_entry_may_come_first_and_lines_are_merged() {
    let addr = server().await;
    let entry = SubprotocolCarrier::new().encode("bob-token");
    let offer = format!("{entry}, graphql-ws, chat");
    let (_, seen, response) = connect_ok(addr, "/ws", &[("sec-websocket-protocol", &offer)]).await;
    assert_eq!(seen["subject"], "bob");
    assert_eq!(seen["protocols"], "graphql-ws, chat");
    assert_eq!(response.headers()["sec-websocket-protocol"], "graphql-ws");

    // tungstenite's client reads only the first header line of its own offer,
    // so the two-line offer is sent as a raw handshake.
    let mut headers = UPGRADE_HEADERS.to_vec();
    headers.push(("sec-websocket-protocol", &entry));
    headers.push(("sec-websocket-protocol", "chat"));
    let (status, response, _) = http_request(addr, "/ws", &headers).await;
    assert_eq!(status, StatusCode::SWITCHING_PROTOCOLS);
    let echoed: Vec<_> = response.get_all("sec-websocket-protocol").iter().collect();
    assert_eq!(echoed, ["chat"]);
}

#[tokio::test]
async fn broken_offers_are_400() {
    let addr = server().await;
    let carrier = SubprotocolCarrier::new();
    let alice = carrier.encode("alice-token");
    let bob = carrier.encode("bob-token");
    let two = format!("chat, {alice}, {bob}");
    let two_lines = [
        ("sec-websocket-protocol", alice.as_str()),
        ("sec-websocket-protocol", &*format!("chat, {bob}")),
    ];
    let padded = format!("chat, {}=", carrier.encode("alice-tokens"));
    let cases: Vec<Vec<(&str, &str)>> = vec![
        vec![("sec-websocket-protocol", alice.as_str())], // no companion
        vec![("sec-websocket-protocol", two.as_str())],   // two credentials
        two_lines.to_vec(),                               // two credentials across lines
        vec![("sec-websocket-protocol", "chat, base64url.bearer.")], // empty
        vec![("sec-websocket-protocol", "chat, base64url.bearer.***")], // not base64url
        vec![("sec-websocket-protocol", padded.as_str())], // padding
        vec![("sec-websocket-protocol", "chat, base64url.bearer._w")], // not UTF-8 once decoded
    ];
    for headers in &cases {
        let refused = connect(addr, "/ws", headers).await.unwrap_err();
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{headers:?}");
        assert_eq!(
            refused.challenge(),
            Some("Bearer error=\"invalid_request\"")
        );
    }
}

#[tokio::test]
async fn configured_protocol_list_is_enforced() {
    let carrier = SubprotocolCarrier::new()
        .protocols(["chat.v2", "chat"])
        .unwrap();
    let entry = carrier.encode("alice-token");
    let addr = serve(app(
        WsAuthLayer::new(tokens(&Calls::default())).subprotocol(carrier)
    ))
    .await;
    let offer = format!("other, chat, chat.v2, {entry}");
    let (_, _, response) = connect_ok(addr, "/ws", &[("sec-websocket-protocol", &offer)]).await;
    assert_eq!(response.headers()["sec-websocket-protocol"], "chat");
    let offer = format!("other, {entry}");
    let refused = connect(addr, "/ws", &[("sec-websocket-protocol", &offer)])
        .await
        .unwrap_err();
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn custom_prefix() {
    let carrier = SubprotocolCarrier::new().prefix("access_token.").unwrap();
    let entry = carrier.encode("bob-token");
    let addr = serve(app(
        WsAuthLayer::new(tokens(&Calls::default())).subprotocol(carrier)
    ))
    .await;
    let (_, seen, _) = connect_ok(
        addr,
        "/ws",
        &[("sec-websocket-protocol", &format!("chat, {entry}"))],
    )
    .await;
    assert_eq!(seen["subject"], "bob");
}

/// Without the layer's echo a client that offered protocols fails the
/// connection, as browsers do: this is what the layer protects against.
#[tokio::test]
async fn a_client_fails_when_no_protocol_is_echoed() {
    let addr = serve(axum::Router::new().route(
        "/ws",
        axum::routing::get(|ws: axum::extract::ws::WebSocketUpgrade| async move {
            ws.on_upgrade(|_| async {})
        }),
    ))
    .await;
    let err = try_connect(addr, "/ws", &[("sec-websocket-protocol", "chat")])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            tungstenite::Error::Protocol(ProtocolError::SecWebSocketSubProtocolError(_))
        ),
        "{err}"
    );
}

#[tokio::test]
async fn offers_without_credential_are_left_alone() {
    // Bearer authenticates; the subprotocol list holds no credential entry.
    let layer = WsAuthLayer::new(tokens(&Calls::default()))
        .bearer_header()
        .subprotocol_token();
    let addr = serve(app(layer)).await;
    let (_, seen, response) = connect_ok(
        addr,
        "/ws/select",
        &[
            ("authorization", "Bearer alice-token"),
            ("sec-websocket-protocol", "chat, other"),
        ],
    )
    .await;
    assert_eq!(seen["protocols"], "chat, other");
    assert_eq!(response.headers()["sec-websocket-protocol"], "chat");
}

#[tokio::test]
async fn credential_entry_is_stripped_even_when_another_carrier_wins() {
    let layer = WsAuthLayer::new(tokens(&Calls::default()))
        .bearer_header()
        .subprotocol_token();
    let addr = serve(app(layer)).await;
    let offer = offer("bob-token");
    let (_, seen, response) = connect_ok(
        addr,
        "/ws",
        &[
            ("authorization", "Bearer alice-token"),
            ("sec-websocket-protocol", &offer),
        ],
    )
    .await;
    assert_eq!(seen["subject"], "alice");
    assert_eq!(seen["protocols"], "chat");
    assert_eq!(response.headers()["sec-websocket-protocol"], "chat");
}
