//! 200 connections that never authenticate are all closed at the deadline,
//! and the memory they held is given back: measured with a counting global
//! allocator over the whole process (server and clients).

use crate::common;

use std::time::Duration;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::any;
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;
use tower_ws_auth::{AuthError, Identity, authenticate_fn, socket::FirstMessageAuth};

use crate::ALLOCATOR;

type Auth = FirstMessageAuth<tower_ws_auth::BoxAuthenticator>;

async fn handler(ws: WebSocketUpgrade, State(auth): State<Auth>, request: Request) -> Response {
    let parts = request.into_parts().0;
    ws.on_upgrade(move |socket| async move {
        let _ = auth.authenticate(socket, &parts).await;
    })
}

async fn wave(addr: std::net::SocketAddr, n: usize) -> usize {
    let mut sockets = Vec::with_capacity(n);
    for _ in 0..n {
        sockets.push(common::connect(addr, "/first", &[]).await.unwrap().0);
    }
    let peak = ALLOCATOR.allocated();
    for ws in &mut sockets {
        loop {
            match tokio::time::timeout(Duration::from_secs(10), ws.next())
                .await
                .expect("closed by the deadline")
            {
                Some(Ok(Message::Close(Some(frame)))) => {
                    assert_eq!(u16::from(frame.code), 4008);
                    break;
                }
                Some(Ok(_)) => {}
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    }
    drop(sockets);
    peak
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_unauthenticated_connections_give_their_memory_back() {
    let _serial = crate::serial().await;
    use tower_ws_auth::Authenticator;
    let never =
        authenticate_fn(|_, _| async { Err::<Identity, _>(AuthError::invalid("unused")) }).boxed();
    let auth: Auth = FirstMessageAuth::new(never).timeout(Duration::from_millis(800));
    let app = axum::Router::new()
        .route("/first", any(handler))
        .with_state(auth.clone());
    let addr = common::serve(app).await;

    // Warm up: runtime, allocator and server structures reach steady state.
    wave(addr, 20).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let baseline = ALLOCATOR.allocated();

    let peak = wave(addr, 200).await;
    assert!(
        peak > baseline + 200 * 16 * 1024,
        "the connections should have held memory: baseline {baseline}, peak {peak}"
    );
    // Let the server's tasks finish their close handshakes.
    let mut after = ALLOCATOR.allocated();
    for _ in 0..50 {
        if auth.pending() == 0 && after <= baseline + 256 * 1024 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = ALLOCATOR.allocated();
    }
    assert_eq!(auth.pending(), 0);
    assert!(
        after <= baseline + 256 * 1024,
        "memory not returned: baseline {baseline} B, peak {peak} B, after {after} B"
    );
    eprintln!("baseline {baseline} B, peak with 200 idle connections {peak} B, after {after} B");
}
