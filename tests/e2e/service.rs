//! The layer as a tower service: readiness, the service that was polled
//! ready is the one called, and the hyper upgrade handle survives.

use crate::common;

use std::convert::Infallible;
use std::time::Duration;

use common::*;
use futures_util::FutureExt;
use http::{Request, Response, StatusCode};
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_ws_auth::{Identity, WsAuthLayer};

fn upgrade(token: Option<&str>) -> Request<()> {
    let mut builder = Request::builder()
        .uri("/ws")
        .header("connection", "upgrade")
        .header("upgrade", "websocket");
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    builder.body(()).unwrap()
}

#[tokio::test]
async fn readiness_of_the_inner_service_is_respected() {
    // ConcurrencyLimit hands out its permit in poll_ready and panics if a
    // clone that was never polled ready is called: the layer must call the
    // very instance that was polled.
    let mut service = ServiceBuilder::new()
        .layer(WsAuthLayer::new(tokens(&Calls::default())).bearer_header())
        .concurrency_limit(1)
        .service_fn(|request: Request<()>| async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let subject = request
                .extensions()
                .get::<Identity>()
                .map(|i| i.subject().to_owned());
            Ok::<_, Infallible>(Response::new(http_body_util::Full::from(
                subject.unwrap_or_default(),
            )))
        });

    let first = service
        .ready()
        .await
        .unwrap()
        .call(upgrade(Some("alice-token")));
    // The only permit is held by `first`: the layer reports not ready.
    assert!(service.ready().now_or_never().is_none());
    let response = first.await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body_text(response).await, "alice");
    // Released: ready again, and a rejection does not consume the inner call.
    let rejected = service
        .ready()
        .await
        .unwrap()
        .call(upgrade(None))
        .await
        .unwrap();
    assert_eq!(rejected.status(), StatusCode::UNAUTHORIZED);
    let again = service
        .ready()
        .await
        .unwrap()
        .call(upgrade(Some("bob-token")))
        .await
        .unwrap();
    assert_eq!(body_text(again).await, "bob");
}

#[tokio::test]
async fn behind_a_buffer_the_authenticator_runs_in_the_callers_task() {
    // `tower::buffer` calls the service on its one worker task: work done
    // in `call` would be done there, for every connection in turn. The
    // authenticator must run when the response future is polled, in the
    // task that awaits it.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    let auth = tower_ws_auth::authenticate_fn(move |_, _| {
        record.lock().unwrap().push(tokio::task::try_id());
        std::future::ready(Ok(Identity::new(
            "alice",
            tower_ws_auth::AuthMethod::Custom("test"),
        )))
    });
    let service = ServiceBuilder::new()
        .buffer(4)
        .layer(WsAuthLayer::new(auth).bearer_header())
        .service_fn(|_: Request<()>| async {
            Ok::<_, Infallible>(Response::new(
                http_body_util::Full::new(bytes::Bytes::new()),
            ))
        });
    let caller = tokio::spawn(async move {
        let response = service.oneshot(upgrade(Some("t"))).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        tokio::task::id()
    })
    .await
    .unwrap();
    assert_eq!(*seen.lock().unwrap(), [Some(caller)]);
}

async fn body_text(response: Response<http_body_util::Full<bytes::Bytes>>) -> String {
    use http_body_util::BodyExt;
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// `CloseRejections`: a refused browser upgrade is answered with a `101`
/// and a Close frame carrying the code, as a page's `onclose` sees it.
#[cfg(feature = "close-rejections")]
mod close_rejections {
    use std::num::NonZeroUsize;
    use std::time::Duration;

    use futures_util::StreamExt;
    use http::StatusCode;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio_tungstenite::tungstenite::Message;
    use tower_ws_auth::{CloseRejections, OriginPolicy, WsAuthLayer, socket::CloseCodes};

    use super::common::*;

    const ORIGIN: &str = "https://app.example.com";

    /// The code and reason of the Close frame that follows the `101`, after
    /// a clean closing handshake: the client's reply goes out and the
    /// server then ends the connection (the stream ends, no error).
    async fn close_after_upgrade(ws: &mut Ws) -> (u16, String) {
        let first = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("no Close within 5 s");
        let Some(Ok(Message::Close(Some(frame)))) = first else {
            panic!("expected a Close frame, got {first:?}");
        };
        // Polling again sends tungstenite's reply; the server then closes.
        let end = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("the server did not end the connection after the closing handshake");
        assert!(end.is_none(), "unclean end: {end:?}");
        (u16::from(frame.code), frame.reason.to_string())
    }

    async fn wait_idle(close: &CloseRejections) {
        for _ in 0..200 {
            if close.pending() == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{} refused connections still open", close.pending());
    }

    /// Bearer and subprotocol carriers, closing refusals with `close`.
    fn layer(
        calls: &Calls,
        close: &CloseRejections,
    ) -> WsAuthLayer<impl tower_ws_auth::Authenticator> {
        WsAuthLayer::new(tokens(calls))
            .bearer_header()
            .subprotocol_token()
            .close_rejections(close.clone())
    }

    /// `layer`, with an Origin policy allowing `ORIGIN` only.
    fn layer_with_origin(
        calls: &Calls,
        close: &CloseRejections,
    ) -> WsAuthLayer<impl tower_ws_auth::Authenticator> {
        layer(calls, close).origin_policy(OriginPolicy::from_origins([ORIGIN]).unwrap())
    }

    #[tokio::test]
    async fn a_refused_browser_upgrade_reads_its_close_code() {
        let (auth, inner) = (Calls::default(), Calls::default());
        // A long close timeout: the connection ends early only because the
        // server got the client's Close.
        let close = CloseRejections::new().close_timeout(Duration::from_secs(30));
        let addr = serve(app_counting(layer_with_origin(&auth, &close), &inner)).await;

        let bad = offer("nonsense");
        let cases: [(&[(&str, &str)], u16); 5] = [
            (
                &[("origin", ORIGIN), ("sec-websocket-protocol", &bad)],
                4001,
            ),
            (&[("origin", ORIGIN)], 4001),
            (
                &[
                    ("origin", ORIGIN),
                    ("authorization", "Bearer expired-token"),
                ],
                4001,
            ),
            (
                &[("origin", ORIGIN), ("authorization", "Bearer banned-token")],
                4003,
            ),
            (
                &[
                    ("origin", "https://evil.example"),
                    ("authorization", "Bearer alice-token"),
                ],
                4003,
            ),
        ];
        for (headers, code) in cases {
            let (mut ws, response) = connect(addr, "/ws", headers).await.unwrap();
            assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
            // Only the handshake headers: no challenge, nothing about why.
            assert!(response.headers().get("www-authenticate").is_none());
            let offered = headers.iter().any(|(n, _)| *n == "sec-websocket-protocol");
            assert_eq!(
                response
                    .headers()
                    .get("sec-websocket-protocol")
                    .map(|v| v.to_str().unwrap()),
                offered.then_some("chat"),
            );
            assert_eq!(
                close_after_upgrade(&mut ws).await,
                (code, String::new()),
                "{headers:?}"
            );
            wait_idle(&close).await;
        }
        assert_eq!(inner.get(), 0, "the inner service must not be called");
        // The refused Origin was decided before the authenticator ran.
        assert_eq!(auth.get(), 3);

        // An accepted browser upgrade is untouched.
        let (_ws, report, _) = connect_ok(
            addr,
            "/ws",
            &[("origin", ORIGIN), ("authorization", "Bearer alice-token")],
        )
        .await;
        assert_eq!(report["subject"], "alice");
    }

    /// The `101` of a refusal echoes the first offered protocol that can be
    /// echoed, whatever the order of the list: never the credential entry,
    /// never an element that is not a token.
    #[tokio::test]
    async fn a_refusal_echoes_the_first_offered_protocol_never_the_credential() {
        let (auth, inner) = (Calls::default(), Calls::default());
        let close = CloseRejections::new();
        let addr = serve(app_counting(layer_with_origin(&auth, &close), &inner)).await;
        let entry = tower_ws_auth::SubprotocolCarrier::new().encode("nonsense");
        for list in [
            format!("{entry}, chat, other"),
            format!("ch@t, {entry}, chat"),
        ] {
            let headers = [("origin", ORIGIN), ("sec-websocket-protocol", &list)];
            let (mut ws, response) = connect(addr, "/ws", &headers).await.unwrap();
            assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS, "{list}");
            assert_eq!(
                response.headers()["sec-websocket-protocol"],
                "chat",
                "{list}"
            );
            // An unknown token, then a malformed list: both unauthorized.
            assert_eq!(close_after_upgrade(&mut ws).await, (4001, String::new()));
            wait_idle(&close).await;
        }
        assert_eq!(inner.get(), 0, "the inner service must not be called");
        assert_eq!(
            auth.get(),
            1,
            "only the well-formed list reaches the authenticator"
        );
    }

    #[tokio::test]
    async fn other_clients_and_layers_without_the_option_keep_the_http_error() {
        let calls = Calls::default();
        let close = CloseRejections::new();
        let addr = serve(app(layer(&calls, &close))).await;
        // No Origin, no Sec-Fetch-Mode: not a browser.
        let refused = connect(addr, "/ws", &[("authorization", "Bearer nonsense")])
            .await
            .unwrap_err();
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
        assert_eq!(refused.challenge(), Some("Bearer error=\"invalid_token\""));

        // Off by default.
        let plain = serve(app(WsAuthLayer::new(tokens(&calls)).bearer_header())).await;
        let refused = connect(plain, "/ws", &[("origin", ORIGIN)])
            .await
            .unwrap_err();
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn the_graphql_ws_preset_and_sec_fetch_mode() {
        let calls = Calls::default();
        let close = CloseRejections::graphql_ws();
        let addr = serve(app(layer(&calls, &close))).await;
        let browser = ("sec-fetch-mode", "websocket");
        let (mut ws, _) = connect(
            addr,
            "/ws",
            &[browser, ("authorization", "Bearer nonsense")],
        )
        .await
        .unwrap();
        let unauthorized = CloseCodes::graphql_ws().unauthorized_code();
        // A refused credential: 4403, as graphql-ws's reference server.
        assert_eq!(unauthorized, 4403);
        assert_eq!(close_after_upgrade(&mut ws).await.0, unauthorized);
        let (mut ws, _) = connect(
            addr,
            "/ws",
            &[browser, ("authorization", "Bearer readonly-token")],
        )
        .await
        .unwrap();
        assert_eq!(
            close_after_upgrade(&mut ws).await.0,
            CloseCodes::graphql_ws().forbidden_code()
        );
        // Configurable code by code.
        let close = CloseRejections::new().codes(CloseCodes::default().unauthorized(4011).unwrap());
        let addr = serve(app(layer(&calls, &close))).await;
        let (mut ws, _) = connect(addr, "/ws", &[browser]).await.unwrap();
        assert_eq!(close_after_upgrade(&mut ws).await.0, 4011);
    }

    /// A raw client that reads the `101` and the Close, and never answers.
    async fn silent_refused_client(addr: std::net::SocketAddr) -> TcpStream {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request = format!(
            "GET /ws HTTP/1.1\r\nHost: {addr}\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Origin: {ORIGIN}\r\nAuthorization: Bearer nonsense\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 1024];
        let close = [0x88, 0x02, 0x0f, 0xa1]; // FIN + Close, 2 bytes, 4001
        while !seen.windows(4).any(|w| w == close) {
            let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
                .await
                .expect("no Close within 5 s")
                .unwrap();
            assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&seen));
            seen.extend_from_slice(&buf[..n]);
        }
        assert!(seen.starts_with(b"HTTP/1.1 101"));
        stream
    }

    #[tokio::test]
    async fn refused_connections_waiting_for_a_close_are_capped() {
        let calls = Calls::default();
        let close = CloseRejections::new()
            .max_pending(NonZeroUsize::new(1).unwrap())
            .close_timeout(Duration::from_secs(30));
        let addr = serve(app(layer(&calls, &close))).await;
        let browser_refused = [("origin", ORIGIN), ("authorization", "Bearer nonsense")];

        let silent = silent_refused_client(addr).await;
        assert_eq!(close.pending(), 1);
        // The only slot is taken: the next refusal is the HTTP error.
        let refused = connect(addr, "/ws", &browser_refused).await.unwrap_err();
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
        drop(silent);
        wait_idle(&close).await;
        let (mut ws, _) = connect(addr, "/ws", &browser_refused).await.unwrap();
        assert_eq!(close_after_upgrade(&mut ws).await.0, 4001);
    }

    #[tokio::test]
    async fn a_silent_client_is_dropped_after_the_close_timeout() {
        let calls = Calls::default();
        let close = CloseRejections::new().close_timeout(Duration::from_millis(200));
        let addr = serve(app(layer(&calls, &close))).await;
        let mut silent = silent_refused_client(addr).await;
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf))
            .await
            .expect("the server kept a silent connection past its close timeout")
            .unwrap_or(0);
        assert_eq!(n, 0, "end of stream expected");
        wait_idle(&close).await;
    }
}
