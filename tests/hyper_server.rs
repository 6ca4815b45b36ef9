//! The layer in front of a plain hyper 1 server (no axum) that upgrades
//! with tokio-tungstenite, and HTTP/2 extended CONNECT (RFC 8441) upgrades.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use common::*;
use futures_util::{SinkExt, StreamExt};
use http::header::{CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, UPGRADE};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tower::ServiceBuilder;
use tower_ws_auth::{Identity, WsAuthLayer};

/// A hand-written hyper handler: completes the handshake, greets the
/// identity the layer inserted and echoes.
async fn handle(mut request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let Some(identity) = request.extensions().get::<Identity>().cloned() else {
        return Ok(Response::builder()
            .status(500)
            .body(Full::default())
            .unwrap());
    };
    let Some(key) = request.headers().get(SEC_WEBSOCKET_KEY).cloned() else {
        return Ok(Response::builder()
            .status(400)
            .body(Full::default())
            .unwrap());
    };
    let on_upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let mut ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        if ws
            .send(Message::text(format!("hello {}", identity.subject())))
            .await
            .is_err()
        {
            return;
        }
        while let Some(Ok(Message::Text(t))) = ws.next().await {
            if ws.send(Message::Text(t)).await.is_err() {
                return;
            }
        }
    });
    Ok(Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(CONNECTION, "upgrade")
        .header(UPGRADE, "websocket")
        .header(SEC_WEBSOCKET_ACCEPT, derive_accept_key(key.as_bytes()))
        .body(Full::default())
        .unwrap())
}

async fn hyper_server() -> SocketAddr {
    let service = ServiceBuilder::new()
        .layer(
            WsAuthLayer::new(tokens(&Calls::default()))
                .bearer_header()
                .subprotocol_token(),
        )
        .service_fn(handle);
    serve_hyper(service).await
}

#[tokio::test]
async fn plain_hyper_server_behind_the_layer() {
    let addr = hyper_server().await;
    let (mut ws, _) = connect(addr, "/", &[("authorization", "Bearer alice-token")])
        .await
        .unwrap();
    assert_eq!(next_text(&mut ws).await, "hello alice");
    assert_echo(&mut ws, "over hyper").await;

    // The handler selects no protocol; the layer echoes the companion.
    let offer = offer("bob-token");
    let (mut ws, response) = connect(addr, "/", &[("sec-websocket-protocol", &offer)])
        .await
        .unwrap();
    assert_eq!(response.headers()["sec-websocket-protocol"], "chat");
    assert_eq!(next_text(&mut ws).await, "hello bob");

    let refused = connect(addr, "/", &[]).await.unwrap_err();
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(refused.challenge(), Some("Bearer"));
    let refused = connect(addr, "/", &[("authorization", "Bearer nonsense")])
        .await
        .unwrap_err();
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(refused.challenge(), Some("Bearer error=\"invalid_token\""));
    assert_eq!(refused.body, "Unauthorized\n");
}

#[tokio::test]
async fn http2_extended_connect_is_authenticated_like_http1() {
    let calls = Calls::default();
    let addr = serve(app(WsAuthLayer::new(tokens(&calls))
        .bearer_header()
        .subprotocol_token()))
    .await;

    let mut response = h2_connect(addr, &[("authorization", "Bearer alice-token")]).await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut ws = h2_socket(&mut response).await;
    let Some(Ok(Message::Text(report))) = ws.next().await else {
        panic!("no report")
    };
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["subject"], "alice");

    let offer = offer("bob-token");
    let mut response = h2_connect(addr, &[("sec-websocket-protocol", &offer)]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["sec-websocket-protocol"], "chat");
    let mut ws = h2_socket(&mut response).await;
    let Some(Ok(Message::Text(report))) = ws.next().await else {
        panic!("no report")
    };
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["subject"], "bob");
    assert_eq!(report["protocols"], "chat");

    for (headers, status, challenge) in [
        (vec![], StatusCode::UNAUTHORIZED, Some("Bearer")),
        (
            vec![("authorization", "Bearer nonsense")],
            StatusCode::UNAUTHORIZED,
            Some("Bearer error=\"invalid_token\""),
        ),
        (
            vec![("authorization", "Basic eA==")],
            StatusCode::BAD_REQUEST,
            Some("Bearer error=\"invalid_request\""),
        ),
        (
            vec![("authorization", "Bearer banned-token")],
            StatusCode::FORBIDDEN,
            None,
        ),
    ] {
        let response = h2_connect(addr, &headers).await;
        assert_eq!(response.status(), status, "{headers:?}");
        assert_eq!(
            response
                .headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap()),
            challenge
        );
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert!(!body.is_empty());
    }
    assert_eq!(calls.get(), 4);
}

/// `CloseRejections` over HTTP/2: the refused browser upgrade gets its
/// `200` and then the Close frame, and the stream ends cleanly.
#[cfg(feature = "close-rejections")]
#[tokio::test]
async fn http2_refused_browser_upgrade_reads_its_close_code() {
    use std::time::Duration;
    use tower_ws_auth::CloseRejections;

    let (calls, inner) = (Calls::default(), Calls::default());
    let close = CloseRejections::new().close_timeout(Duration::from_secs(30));
    let layer = WsAuthLayer::new(tokens(&calls))
        .bearer_header()
        .close_rejections(close.clone());
    let addr = serve(app_counting(layer, &inner)).await;

    let headers = [
        ("origin", "https://app.example.com"),
        ("authorization", "Bearer nonsense"),
    ];
    let mut response = h2_connect(addr, &headers).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().get("www-authenticate").is_none());
    let mut ws = h2_socket(&mut response).await;
    let first = tokio::time::timeout(Duration::from_secs(5), ws.next()).await;
    let Ok(Some(Ok(Message::Close(Some(frame))))) = first else {
        panic!("expected a Close frame, got {first:?}");
    };
    assert_eq!((u16::from(frame.code), frame.reason.as_str()), (4001, ""));
    // The client's reply goes out, then the server ends the stream.
    let end = tokio::time::timeout(Duration::from_secs(5), ws.next()).await;
    assert!(matches!(end, Ok(None)), "unclean end: {end:?}");
    for _ in 0..200 {
        if close.pending() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        close.pending(),
        0,
        "the server kept the stream after the closing handshake"
    );
    assert_eq!(inner.get(), 0);
}
