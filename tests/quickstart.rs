//! The quickstart contract (README, "The quickstart"), checked against the
//! example binary itself over real sockets: every route, every carrier in
//! its precedence, login and logout, expiry, first-message auth, and the
//! refusals.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::process::start_example;
use common::{Ws, connect, next_text, offer};
use futures_util::{SinkExt, StreamExt};
use http::StatusCode;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::Message;

const SECRET: &str = "quickstart-test-secret-0123456789-abcdefgh";

fn token(subject: &str, ttl: u64) -> String {
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({ "sub": subject, "exp": now + ttl });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn welcome(subject: &str) -> String {
    format!(r#"{{"type":"authenticated","user":{{"id":"{subject}"}}}}"#)
}

/// A form POST from `origin`; returns status and headers.
async fn post(
    addr: SocketAddr,
    path: &str,
    form: &str,
    cookie: Option<&str>,
    origin: Option<&str>,
) -> (StatusCode, http::HeaderMap) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut request = http::Request::post(path)
        .header("host", addr.to_string())
        .header("content-type", "application/x-www-form-urlencoded");
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    let response = sender
        .send_request(
            request
                .body(Full::new(Bytes::from(form.to_owned())))
                .unwrap(),
        )
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    let _ = body.collect().await;
    (parts.status, parts.headers)
}

async fn close_code(ws: &mut Ws) -> u16 {
    loop {
        match tokio::time::timeout(Duration::from_secs(15), ws.next())
            .await
            .expect("no close frame")
        {
            Some(Ok(Message::Close(Some(frame)))) => return u16::from(frame.code),
            Some(Ok(_)) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quickstart_contract() {
    let (server, addr) = start_example("quickstart", &[("JWT_SECRET", SECRET)]);
    let demo = server.wait_for_line(|line| {
        let rest = line.trim_start().strip_prefix("demo token:")?;
        Some(rest.trim().to_owned())
    });
    let own_origin = format!("http://{addr}");

    // The page.
    let (status, body) = common::http_get(addr, "/", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("<form") && body.contains("/login") && body.contains("WebSocket"));
    assert!(
        !body.contains("src=\"http") && !body.contains("href=\"http"),
        "no external assets"
    );

    // The demo token, as a bearer header: welcome, then echo.
    let (mut ws, _) = connect(addr, "/ws", &[("authorization", &format!("Bearer {demo}"))])
        .await
        .unwrap();
    assert_eq!(next_text(&mut ws).await, welcome("alice"));
    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "hello");
    ws.send(Message::text(r#"{"type":"refresh","token":"x"}"#))
        .await
        .unwrap();
    assert_eq!(
        next_text(&mut ws).await,
        r#"{"type":"refresh","token":"x"}"#,
        "every text message is echoed"
    );

    // The subprotocol carrier beside `chat`: the 101 selects `chat`.
    let bob = token("bob", 600);
    let (mut ws, response) = connect(addr, "/ws", &[("sec-websocket-protocol", &offer(&bob))])
        .await
        .unwrap();
    assert_eq!(response.headers()["sec-websocket-protocol"], "chat");
    assert_eq!(next_text(&mut ws).await, welcome("bob"));

    // The query parameter.
    let (mut ws, _) = connect(addr, &format!("/ws?token={bob}"), &[])
        .await
        .unwrap();
    assert_eq!(next_text(&mut ws).await, welcome("bob"));

    // HTTP/2 extended CONNECT (h2c): authenticated like HTTP/1.1.
    let mut response =
        common::h2_connect(addr, &[("authorization", &format!("Bearer {bob}"))]).await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut h2 = common::h2_socket(&mut response).await;
    match tokio::time::timeout(Duration::from_secs(5), h2.next()).await {
        Ok(Some(Ok(Message::Text(text)))) => assert_eq!(text.as_str(), welcome("bob")),
        other => panic!("expected the welcome over HTTP/2, got {other:?}"),
    }
    let response = common::h2_connect(addr, &[]).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    // Precedence: the header wins over the subprotocol and the query.
    let (mut ws, _) = connect(
        addr,
        &format!("/ws?token={bob}"),
        &[
            ("authorization", &format!("Bearer {demo}")),
            ("sec-websocket-protocol", &offer(&bob)),
        ],
    )
    .await
    .unwrap();
    assert_eq!(next_text(&mut ws).await, welcome("alice"));

    // /ws/echo: no welcome, text and binary echoed.
    let (mut ws, _) = connect(
        addr,
        "/ws/echo",
        &[("authorization", &format!("Bearer {demo}"))],
    )
    .await
    .unwrap();
    ws.send(Message::binary(vec![0u8, 1, 2, 255]))
        .await
        .unwrap();
    match tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
    {
        Some(Ok(Message::Binary(bytes))) => assert_eq!(&bytes[..], [0u8, 1, 2, 255]),
        other => panic!("expected the binary echo first, got {other:?}"),
    }
    ws.send(Message::text("plain")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "plain");

    // /ws/first-message: the auth message, then like /ws; silence is 4008.
    let (mut ws, _) = connect(addr, "/ws/first-message", &[]).await.unwrap();
    ws.send(Message::text(format!(
        r#"{{"type":"auth","token":"{demo}"}}"#
    )))
    .await
    .unwrap();
    assert_eq!(next_text(&mut ws).await, welcome("alice"));
    ws.send(Message::text("after auth")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "after auth");
    let (mut silent, _) = connect(addr, "/ws/first-message", &[]).await.unwrap();
    let silent_started = Instant::now();
    let timeout_close = tokio::spawn(async move { close_code(&mut silent).await });
    let (mut early, _) = connect(addr, "/ws/first-message", &[]).await.unwrap();
    early
        .send(Message::text("not an auth message"))
        .await
        .unwrap();
    assert_eq!(close_code(&mut early).await, 4001);

    // Refusals before the upgrade.
    let refused = connect(addr, "/ws", &[]).await.unwrap_err();
    assert_eq!(
        (refused.status, refused.challenge()),
        (StatusCode::UNAUTHORIZED, Some("Bearer"))
    );
    let refused = connect(addr, "/ws", &[("authorization", "Bearer not.a.jwt")])
        .await
        .unwrap_err();
    assert_eq!(refused.challenge(), Some("Bearer error=\"invalid_token\""));
    let refused = connect(addr, "/ws", &[("authorization", "Basic YWxpY2U6eA==")])
        .await
        .unwrap_err();
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    let forged = {
        let mut parts: Vec<String> = token("mallory", 600)
            .split('.')
            .map(str::to_owned)
            .collect();
        parts[2] = "AAAA".into();
        parts.join(".")
    };
    let refused = connect(
        addr,
        "/ws",
        &[("authorization", &format!("Bearer {forged}"))],
    )
    .await
    .unwrap_err();
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);

    // Login: wrong password 401; right one sets `session` and 303s to `/`.
    // Both forms need the Origin the cookie upgrade needs: from another
    // origin, or with none, 403 and no cookie.
    let own = Some(own_origin.as_str());
    let (status, _) = post(addr, "/login", "username=alice&password=wrong", None, own).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let form = "username=alice&password=alice-password";
    let same_site_other_port = format!("http://127.0.0.1:{}", addr.port() + 1);
    for origin in [
        Some("http://evil.example"),
        Some(same_site_other_port.as_str()),
        Some("null"),
        None,
    ] {
        let (status, headers) = post(addr, "/login", form, None, origin).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "login from {origin:?}");
        assert!(headers.get("set-cookie").is_none(), "login from {origin:?}");
    }
    let (status, headers) = post(addr, "/login", form, None, own).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers["location"], "/");
    let set_cookie = headers["set-cookie"].to_str().unwrap();
    assert!(
        set_cookie.starts_with("session=") && set_cookie.contains("HttpOnly"),
        "{set_cookie}"
    );
    let cookie = set_cookie.split(';').next().unwrap().to_owned();

    // The cookie, from the server's own origin only.
    let (mut by_cookie, _) = connect(addr, "/ws", &[("cookie", &cookie), ("origin", &own_origin)])
        .await
        .unwrap();
    assert_eq!(next_text(&mut by_cookie).await, welcome("alice"));
    for origin in ["http://evil.example", "null"] {
        let refused = connect(addr, "/ws", &[("cookie", &cookie), ("origin", origin)])
            .await
            .unwrap_err();
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{origin}");
    }
    let refused = connect(addr, "/ws", &[("cookie", &cookie)])
        .await
        .unwrap_err();
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "no Origin");

    // Logout from another origin (or none) is refused and ends nothing.
    for origin in [Some(same_site_other_port.as_str()), None] {
        let (status, headers) = post(addr, "/logout", "", Some(&cookie), origin).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "logout from {origin:?}");
        assert!(headers.get("set-cookie").is_none());
    }
    by_cookie.send(Message::text("still here")).await.unwrap();
    assert_eq!(next_text(&mut by_cookie).await, "still here");

    // Logout ends the session and closes its live socket with 4003.
    let (status, headers) = post(addr, "/logout", "", Some(&cookie), own).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(
        headers["set-cookie"]
            .to_str()
            .unwrap()
            .starts_with("session=")
    );
    assert_eq!(close_code(&mut by_cookie).await, 4003);
    let refused = connect(addr, "/ws", &[("cookie", &cookie), ("origin", &own_origin)])
        .await
        .unwrap_err();
    assert_eq!(
        refused.status,
        StatusCode::UNAUTHORIZED,
        "the session is over"
    );

    // Expiry: a token that expires in two seconds closes with 4002.
    let short = token("alice", 2);
    let (mut ws, _) = connect(
        addr,
        "/ws",
        &[("authorization", &format!("Bearer {short}"))],
    )
    .await
    .unwrap();
    assert_eq!(next_text(&mut ws).await, welcome("alice"));
    assert_eq!(close_code(&mut ws).await, 4002);

    // The silent first-message socket was closed with 4008 after 10 s.
    assert_eq!(timeout_close.await.unwrap(), 4008);
    let waited = silent_started.elapsed();
    assert!(
        waited >= Duration::from_secs(9) && waited < Duration::from_secs(14),
        "{waited:?}"
    );

    // Query tokens and secrets never reach the logs (the printed banner
    // with the demo token aside).
    let logs = server.output();
    assert!(!logs.contains(&bob), "a query token leaked into the logs");
    assert!(!logs.contains(SECRET));
    assert!(
        !logs.contains(cookie.trim_start_matches("session=")),
        "the session cookie leaked into the logs"
    );
}

/// Logs in and opens a cookie socket; returns the `session=...` pair.
/// The contract's closing handshake, on every socket route: a client's
/// Close is answered with the same code, and a client's protocol error is
/// closed with 1007 (invalid UTF-8) or 1002 (a reserved opcode); each time
/// the connection then ends cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_socket_route_completes_the_closing_handshake() {
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};

    let (_server, addr) = start_example("quickstart", &[("JWT_SECRET", SECRET)]);
    let alice = token("alice", 600);
    let bearer = format!("Bearer {alice}");
    let open = |path: &'static str| {
        let bearer = bearer.clone();
        let alice = alice.clone();
        async move {
            if path == "/ws/first-message" {
                let (mut ws, _) = connect(addr, path, &[]).await.unwrap();
                let auth = format!(r#"{{"type":"auth","token":"{alice}"}}"#);
                ws.send(Message::text(auth)).await.unwrap();
                assert_eq!(next_text(&mut ws).await, welcome("alice"));
                return ws;
            }
            let (mut ws, _) = connect(addr, path, &[("authorization", &bearer)])
                .await
                .unwrap();
            if path == "/ws" {
                assert_eq!(next_text(&mut ws).await, welcome("alice"));
            }
            ws
        }
    };
    for path in ["/ws", "/ws/echo", "/ws/first-message"] {
        let mut ws = open(path).await;
        let frame = CloseFrame {
            code: CloseCode::Away,
            reason: "bye".into(),
        };
        ws.send(Message::Close(Some(frame))).await.unwrap();
        assert_eq!(
            close_code(&mut ws).await,
            1001,
            "{path}: the Close answered"
        );
        common::assert_clean_end(&mut ws, &format!("{path}: client close")).await;

        for (what, opcode, payload, expected) in [
            ("not UTF-8", Data::Text, &[0xce, 0xba, 0xff, 0xfe][..], 1007),
            ("reserved opcode", Data::Reserved(3), &b"x"[..], 1002),
        ] {
            let case = format!("{path}: {what}");
            let mut ws = open(path).await;
            let frame = Frame::message(Bytes::copy_from_slice(payload), OpCode::Data(opcode), true);
            ws.send(Message::Frame(frame)).await.unwrap();
            assert_eq!(close_code(&mut ws).await, expected, "{case}");
            common::assert_clean_end(&mut ws, &case).await;
        }
    }
}

async fn login_and_connect(addr: SocketAddr, user: &str) -> (String, Ws) {
    let origin = format!("http://{addr}");
    let form = format!("username={user}&password={user}-password");
    let (status, headers) = post(addr, "/login", &form, None, Some(&origin)).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let cookie = headers["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let (mut ws, _) = connect(addr, "/ws", &[("cookie", &cookie), ("origin", &origin)])
        .await
        .unwrap();
    assert_eq!(next_text(&mut ws).await, welcome(user));
    (cookie, ws)
}

/// Browsers send every cookie of the host on one line, UTF-8 values
/// included: logging out with `lang=français` beside the session cookie
/// ends the session on the server (the old cookie no longer
/// authenticates) and closes its open sockets with 4003, and the upgrade
/// itself finds the session on such a line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_with_a_non_ascii_cookie_on_the_line_ends_the_session() {
    let (_server, addr) = start_example("quickstart", &[("JWT_SECRET", SECRET)]);
    let origin = format!("http://{addr}");
    let (cookie, mut first) = login_and_connect(addr, "alice").await;
    let line = format!("lang=français; {cookie}; city=Zürich");

    let (mut second, _) = connect(addr, "/ws", &[("cookie", &line), ("origin", &origin)])
        .await
        .unwrap();
    assert_eq!(next_text(&mut second).await, welcome("alice"));

    let (status, headers) = post(addr, "/logout", "", Some(&line), Some(&origin)).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(
        headers["set-cookie"]
            .to_str()
            .unwrap()
            .starts_with("session=;")
    );
    assert_eq!(close_code(&mut first).await, 4003);
    assert_eq!(close_code(&mut second).await, 4003);
    for cookie in [cookie.as_str(), line.as_str()] {
        let refused = connect(addr, "/ws", &[("cookie", cookie), ("origin", &origin)])
            .await
            .unwrap_err();
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{cookie}");
    }
}

/// The quickstart is served with a 10 s header-read timeout and a
/// connection cap (`MAX_CONNECTIONS`): connections that dribble an upgrade
/// request's headers, a line a second, are closed after the timeout however
/// long they keep sending, and while the cap is taken a new connection is
/// not served (it is when a slot frees).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_are_cut_off_and_connections_are_capped() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const CAP: usize = 8;
    let (_server, addr) = start_example(
        "quickstart",
        &[
            ("JWT_SECRET", SECRET),
            ("MAX_CONNECTIONS", &CAP.to_string()),
        ],
    );
    // `start_example`'s probe connection frees its slot when the server sees it close.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let mut dribblers = Vec::new();
    for i in 0..CAP {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")
            .await
            .unwrap();
        dribblers.push(tokio::spawn(async move {
            let mut buf = [0u8; 256];
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            for _ in 0..25 {
                tokio::select! {
                    read = stream.read(&mut buf) => match read {
                        Ok(0) | Err(_) => return started.elapsed(),
                        Ok(_) => {}
                    },
                    _ = tick.tick() => {
                        let _ = stream.write_all(format!("X-Slow-{i}: still sending\r\n").as_bytes()).await;
                    }
                }
            }
            panic!("a dribbling connection was still open after 25 s");
        }));
    }

    // Over the cap: the connection is accepted by the kernel, not served.
    let mut waiting = tokio::net::TcpStream::connect(addr).await.unwrap();
    waiting
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 12];
    let early = tokio::time::timeout(Duration::from_secs(3), waiting.read(&mut first)).await;
    assert!(early.is_err(), "served over the cap: {early:?}");

    for dribbler in dribblers {
        let closed_after = dribbler.await.unwrap();
        assert!(
            closed_after >= Duration::from_secs(9) && closed_after < Duration::from_secs(15),
            "closed after {closed_after:?}"
        );
    }
    // The slots are free: the waiting request is answered.
    tokio::time::timeout(Duration::from_secs(5), waiting.read_exact(&mut first))
        .await
        .expect("served once a slot is free")
        .unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
}

/// The value of the series `name{labels}` (exactly those labels) in a
/// Prometheus text page; 0 when absent (a counter not yet incremented).
#[cfg(feature = "metrics")]
fn series(page: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut wanted: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    wanted.sort();
    for line in page.lines().filter(|l| !l.starts_with('#')) {
        let Some((key, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (found, mut found_labels) = match key.split_once('{') {
            Some((n, rest)) => (
                n,
                rest.trim_end_matches('}')
                    .split(',')
                    .map(str::to_owned)
                    .collect::<Vec<_>>(),
            ),
            None => (key, Vec::new()),
        };
        found_labels.sort();
        if found == name && found_labels == wanted {
            return value.parse().unwrap();
        }
    }
    0.0
}

#[cfg(feature = "metrics")]
async fn metrics_page(addr: SocketAddr) -> String {
    let (status, headers, body) = common::http_request(addr, "/metrics", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "text/plain; version=0.0.4");
    body
}

/// `GET /metrics`: a refused upgrade adds one to the `outcome="rejected"`
/// series of its reason; the open-connections gauge follows a socket up
/// and back down.
#[cfg(feature = "metrics")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_refusals_and_follow_open_sockets() {
    let (_server, addr) = start_example("quickstart", &[("JWT_SECRET", SECRET)]);
    let upgrades = "tower_ws_auth_upgrades_total";
    let open = "tower_ws_auth_open_connections";
    let missing = [
        ("outcome", "rejected"),
        ("reason", "missing_credential"),
        ("carrier", "none"),
    ];
    let invalid = [
        ("outcome", "rejected"),
        ("reason", "invalid_token"),
        ("carrier", "bearer"),
    ];
    let before = metrics_page(addr).await;

    let refused = connect(addr, "/ws", &[]).await.unwrap_err();
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    let page = metrics_page(addr).await;
    assert_eq!(
        series(&page, upgrades, &missing),
        series(&before, upgrades, &missing) + 1.0
    );
    let refused = connect(addr, "/ws", &[("authorization", "Bearer not-a-jwt")])
        .await
        .unwrap_err();
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    let after = metrics_page(addr).await;
    assert_eq!(
        series(&after, upgrades, &invalid),
        series(&page, upgrades, &invalid) + 1.0
    );
    assert_eq!(
        series(&after, upgrades, &missing),
        series(&page, upgrades, &missing),
        "one decision, one count"
    );

    // The gauge: up while the socket is open (its echo comes from the
    // guarded socket), back down once it has ended.
    let bearer = format!("Bearer {}", token("alice", 60));
    let (mut ws, _) = connect(addr, "/ws", &[("authorization", &bearer)])
        .await
        .unwrap();
    assert_eq!(next_text(&mut ws).await, welcome("alice"));
    common::assert_echo(&mut ws, "hello").await;
    assert_eq!(series(&metrics_page(addr).await, open, &[]), 1.0);
    let accepted = [
        ("outcome", "accepted"),
        ("reason", "none"),
        ("carrier", "bearer"),
    ];
    assert_eq!(series(&metrics_page(addr).await, upgrades, &accepted), 1.0);
    ws.close(None).await.unwrap();
    while let Some(Ok(_)) = ws.next().await {}
    // The server drops its socket a moment after the closing handshake.
    let deadline = Instant::now() + Duration::from_secs(10);
    while series(&metrics_page(addr).await, open, &[]) != 0.0 {
        assert!(
            Instant::now() < deadline,
            "the gauge did not come back to 0"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let peer = [("reason", "peer")];
    assert_eq!(
        series(
            &metrics_page(addr).await,
            "tower_ws_auth_closes_total",
            &peer
        ),
        1.0
    );
}
