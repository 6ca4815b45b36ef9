//! The audit hook (`tower_ws_auth::audit`): every decision of the layer and
//! every end of a guarded socket reach it, with the peer's address, through
//! a real server and real clients; a panicking hook changes nothing the
//! peer sees.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::ConnectInfo;
use axum::extract::ws::WebSocketUpgrade;
use axum::response::Response;
use axum::routing::any;
use futures_util::{SinkExt, StreamExt};
use http::StatusCode;
use tokio_tungstenite::tungstenite::Message;
use tower_ws_auth::audit::AuditEvent;
use tower_ws_auth::socket::SessionGuard;
use tower_ws_auth::{Identity, WsAuthLayer};

use crate::common::{Calls, app, connect, next_text, serve, tokens};

type Log = Arc<Mutex<Vec<String>>>;

fn recorder(log: &Log) -> impl Fn(&AuditEvent<'_>) + Send + Sync + 'static {
    let log = log.clone();
    move |e: &AuditEvent<'_>| {
        let peer = e.peer.map(|p| p.ip().to_string());
        log.lock().unwrap().push(format!(
            "{} {} {} {} {:?} {:?}",
            e.event, e.outcome, e.reason, e.carrier, e.subject, peer
        ));
    }
}

#[tokio::test]
async fn every_decision_and_socket_end_reaches_the_hook_with_the_peer() {
    let log = Log::default();
    let guard = SessionGuard::expiry_only().audit(recorder(&log));
    let handler = move |ws: WebSocketUpgrade,
                        identity: Identity,
                        ConnectInfo(peer): ConnectInfo<SocketAddr>|
          -> std::future::Ready<Response> {
        let guard = guard.clone();
        std::future::ready(ws.on_upgrade(move |socket| async move {
            let mut request = http::Request::new(()).into_parts().0;
            request.extensions.insert(peer);
            let mut socket = guard.wrap(socket, identity).with_request(request);
            let _ = socket.send_text("hi").await;
            while let Some(Ok(_)) = socket.recv().await {}
        }))
    };
    let layer = WsAuthLayer::new(tokens(&Calls::default()))
        .bearer_header()
        .audit(recorder(&log));
    let addr = serve(axum::Router::new().route("/ws", any(handler)).layer(layer)).await;

    let (mut ws, _) = connect(addr, "/ws", &[("authorization", "Bearer alice-token")])
        .await
        .unwrap();
    assert_eq!(next_text(&mut ws).await, "hi");
    ws.close(None).await.unwrap();
    while let Some(Ok(_)) = ws.next().await {}
    let refused = connect(addr, "/ws", &[("authorization", "Bearer sekrit-6")])
        .await
        .unwrap_err();
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    let refused = connect(addr, "/ws", &[]).await.unwrap_err();
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);

    let local = Some("127.0.0.1".to_owned());
    let expected = [
        format!("upgrade accepted none bearer Some(\"alice\") {local:?}"),
        format!("socket_end ended peer none Some(\"alice\") {local:?}"),
        format!("upgrade rejected invalid_token bearer None {local:?}"),
        format!("upgrade rejected missing_credential none None {local:?}"),
    ];
    assert_eq!(*log.lock().unwrap(), expected);
    assert!(!log.lock().unwrap().iter().any(|l| l.contains("sekrit")));
}

#[tokio::test]
async fn a_panicking_hook_changes_no_decision() {
    let layer = WsAuthLayer::new(tokens(&Calls::default()))
        .bearer_header()
        .audit(|_: &AuditEvent<'_>| panic!("audit backend exploded"));
    let addr = serve(app(layer)).await;
    let (mut ws, response) = connect(addr, "/ws", &[("authorization", "Bearer alice-token")])
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    let _report = next_text(&mut ws).await;
    ws.send(Message::text("still here")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "still here");
    let refused = connect(addr, "/ws", &[("authorization", "Bearer nope")])
        .await
        .unwrap_err();
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
}
