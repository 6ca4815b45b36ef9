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
