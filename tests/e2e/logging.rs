//! What the layer logs: one event per decision, with outcome and carrier,
//! and never a credential or a query string.

use crate::common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::*;
use tower_ws_auth::{OriginPolicy, WsAuthLayer};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn decisions_are_logged_without_secrets() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter("tower_ws_auth=trace")
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    // This thread's default, not the global one: the other tests of this
    // binary capture their own logs the same way. The test runs on one
    // thread (current-thread runtime), the server included.
    let _capture = tracing::subscriber::set_default(subscriber);

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

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    for secret in secrets
        .iter()
        .chain(&["alice-token", "backend-down", "room=9"])
    {
        assert!(
            !logs.contains(secret),
            "{secret} leaked into the logs:\n{logs}"
        );
    }
    let events: Vec<&str> = logs.lines().collect();
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
