//! What the layer logs: one event per decision, with outcome and carrier,
//! and never a credential or a query string.

use crate::common;

use common::*;
use tower_ws_auth::{OriginPolicy, WsAuthLayer};

#[tokio::test]
async fn decisions_are_logged_without_secrets() {
    // Everything logged on this thread: the test and its server (one
    // current-thread runtime).
    let capture = LogCapture::start();

    let layer = WsAuthLayer::new(tokens(&Calls::default()))
        .bearer_header()
        .subprotocol_token()
        .cookie(
            "session",
            OriginPolicy::from_origins(["http://site.test"]).unwrap(),
        )
        .unwrap()
        .query_param("token")
        .unwrap();
    let addr = serve(app(layer)).await;

    let secrets = [
        "sekrit-query-1",
        "sekrit-bearer-2",
        "sekrit-cookie-3",
        "sekrit-proto-4",
    ];
    let _ = connect(addr, "/ws?token=sekrit-query-1&room=9", &[])
        .await
        .unwrap_err();
    let _ = connect(addr, "/ws", &[("authorization", "Bearer sekrit-bearer-2")])
        .await
        .unwrap_err();
    let _ = connect(
        addr,
        "/ws",
        &[
            ("cookie", "session=sekrit-cookie-3"),
            ("origin", "http://site.test"),
        ],
    )
    .await
    .unwrap_err();
    let _ = connect(
        addr,
        "/ws",
        &[("sec-websocket-protocol", &offer("sekrit-proto-4"))],
    )
    .await
    .unwrap_err();
    let _ = connect(
        addr,
        "/ws",
        &[
            ("cookie", "session=sekrit-cookie-3"),
            ("origin", "http://evil.test"),
        ],
    )
    .await
    .unwrap_err();
    let _ = connect(
        addr,
        "/ws?token=sekrit-query-1",
        &[("authorization", "Bearer")],
    )
    .await
    .unwrap_err();
    connect_ok(addr, "/ws?token=alice-token&room=9", &[]).await;
    let _ = connect(addr, "/ws", &[("authorization", "Bearer backend-down")])
        .await
        .unwrap_err();

    let logs = capture.text();
    for secret in secrets
        .iter()
        .chain(&["alice-token", "backend-down", "room=9"])
    {
        assert!(
            !logs.contains(secret),
            "{secret} leaked into the logs:\n{logs}"
        );
    }
    let events: Vec<&str> = logs
        .lines()
        .filter(|line| line.contains(" tower_ws_auth:"))
        .collect();
    assert_eq!(events.len(), 8, "one event per decision:\n{logs}");
    assert_eq!(
        events
            .iter()
            .filter(|l| l.contains("outcome=\"accepted\""))
            .count(),
        1,
        "{logs}"
    );
    assert!(
        logs.contains("carrier=\"query\"")
            && logs.contains("carrier=\"cookie\"")
            && logs.contains("carrier=\"subprotocol\""),
        "{logs}"
    );
    assert!(
        logs.contains("kind=\"origin_refused\"") && logs.contains("kind=\"invalid_request\""),
        "{logs}"
    );
    assert!(logs.contains("subject=\"alice\""), "{logs}");
    assert!(
        logs.contains("WARN") && logs.contains("user database down"),
        "a backend outage is a warning:\n{logs}"
    );
}

/// The `ws_auth` span: around the authenticator and the handler, with the
/// carrier, the outcome and the subject (never the credential); the
/// handler hands it to the socket's task (`.instrument(Span::current())`)
/// so that the connection's own logs say who it is.
#[cfg(feature = "axum")]
#[tokio::test]
async fn the_ws_auth_span_carries_the_subject_into_the_socket_task() {
    use axum::extract::ws::{Message, WebSocketUpgrade};
    use axum::response::Response;
    use axum::routing::any;
    use tower_ws_auth::Identity;
    use tracing::Instrument;

    async fn handler(ws: WebSocketUpgrade, identity: Identity) -> Response {
        tracing::info!(target: "app", "handler of {}", identity.subject());
        let span = tracing::Span::current();
        ws.on_upgrade(move |mut socket| {
            async move {
                tracing::info!(target: "app", "socket task");
                let _ = socket.send(Message::Text("hi".into())).await;
                while let Some(Ok(_)) = socket.recv().await {}
            }
            .instrument(span)
        })
    }

    let capture = LogCapture::start();
    let layer = WsAuthLayer::new(tokens(&Calls::default())).bearer_header();
    let addr = serve(axum::Router::new().route("/ws", any(handler)).layer(layer)).await;
    let (mut ws, _) = connect(addr, "/ws", &[("authorization", "Bearer alice-token")])
        .await
        .unwrap();
    assert_eq!(next_text(&mut ws).await, "hi");
    let refused = connect(addr, "/ws", &[("authorization", "Bearer sekrit-5")])
        .await
        .unwrap_err();
    assert_eq!(refused.status, http::StatusCode::UNAUTHORIZED);
    drop(ws);

    let text = capture.text();
    let line = |needle: &str| {
        text.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in {text}"))
            .to_owned()
    };
    let accepted = r#"ws_auth{carrier="bearer" outcome="accepted" subject="alice"}"#;
    for event in ["handler of alice", "socket task", "request authenticated"] {
        assert!(line(event).contains(accepted), "{event}: {}", line(event));
    }
    let rejected = r#"ws_auth{carrier="bearer" outcome="rejected"}"#;
    assert!(line("request rejected").contains(rejected), "{text}");
    assert!(
        !text.contains("alice-token") && !text.contains("sekrit-5"),
        "{text}"
    );
}
