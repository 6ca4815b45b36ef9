//! The quickstart contract (README, "The quickstart"), checked against the
//! example binary itself over real sockets: every route, every carrier in
//! its precedence, login and logout, expiry, first-message auth, and the
//! refusals.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::process::start_example;
use common::{Ws, after_second, connect, http_send, next_text, offer, unix_now};
use futures_util::{SinkExt, StreamExt};
use http::StatusCode;
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
    let mut headers = Vec::new();
    if let Some(cookie) = cookie {
        headers.push(("cookie", cookie));
    }
    if let Some(origin) = origin {
        headers.push(("origin", origin));
    }
    post_with(addr, path, form, &headers).await
}

/// A form POST with extra `headers`; returns status and headers.
async fn post_with(
    addr: SocketAddr,
    path: &str,
    form: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, http::HeaderMap) {
    let mut all = vec![("content-type", "application/x-www-form-urlencoded")];
    all.extend_from_slice(headers);
    let (status, headers, _) = http_send(addr, http::Method::POST, path, &all, form).await;
    (status, headers)
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

/// An HS256 token for `subject` issued at `iat` (Unix seconds), valid ten
/// minutes.
fn token_issued_at(subject: &str, iat: u64) -> String {
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    let claims = serde_json::json!({ "sub": subject, "iat": iat, "exp": iat + 600 });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// `POST /admin/revoke`: 404 without `ADMIN_TOKEN`; 401 with a wrong or
/// missing admin token; 204, then the subject's live sockets (JWT and
/// session) close with 4003 and its credentials issued at or before that
/// second are refused at the next handshake (401 `invalid_token`, on `/ws`
/// and `/ws/first-message`), while credentials issued later, and other
/// subjects, are accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_revoke_refuses_the_subjects_credentials_at_the_next_handshake() {
    let (_plain, plain_addr) = start_example("quickstart", &[("JWT_SECRET", SECRET)]);
    let (status, _) = post_with(
        plain_addr,
        "/admin/revoke",
        "subject=alice",
        &[("authorization", "Bearer anything")],
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "no ADMIN_TOKEN: no endpoint");

    let admin = "quickstart-admin-token";
    let (_server, addr) = start_example(
        "quickstart",
        &[("JWT_SECRET", SECRET), ("ADMIN_TOKEN", admin)],
    );
    let origin = format!("http://{addr}");
    let old = token_issued_at("alice", unix_now() - 5);
    let no_iat = token("alice", 600);
    let bob = token_issued_at("bob", unix_now() - 5);
    let bearer = |t: &str| format!("Bearer {t}");
    let (mut by_jwt, _) = connect(addr, "/ws", &[("authorization", &bearer(&old))])
        .await
        .unwrap();
    assert_eq!(next_text(&mut by_jwt).await, welcome("alice"));
    let (cookie, mut by_session) = login_and_connect(addr, "alice").await;
    let (mut bob_ws, _) = connect(addr, "/ws", &[("authorization", &bearer(&bob))])
        .await
        .unwrap();
    assert_eq!(next_text(&mut bob_ws).await, welcome("bob"));

    for presented in [None, Some("Bearer wrong"), Some(admin)] {
        let headers: Vec<(&str, &str)> = presented
            .map(|p| ("authorization", p))
            .into_iter()
            .collect();
        let (status, _) = post_with(addr, "/admin/revoke", "subject=alice", &headers).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{presented:?}");
    }
    by_jwt.send(Message::text("still here")).await.unwrap();
    assert_eq!(next_text(&mut by_jwt).await, "still here");

    let (status, _) = post_with(
        addr,
        "/admin/revoke",
        "subject=alice",
        &[("authorization", &bearer(admin))],
    )
    .await;
    let revoked_second = unix_now();
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(close_code(&mut by_jwt).await, 4003);
    assert_eq!(close_code(&mut by_session).await, 4003);
    bob_ws.send(Message::text("bob is fine")).await.unwrap();
    assert_eq!(next_text(&mut bob_ws).await, "bob is fine");

    // The same credentials at the next handshake: refused like any bad one.
    for headers in [
        vec![("authorization", bearer(&old))],
        vec![("authorization", bearer(&no_iat))],
        vec![("cookie", cookie.clone()), ("origin", origin.clone())],
    ] {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let refused = connect(addr, "/ws", &headers).await.unwrap_err();
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{headers:?}");
        assert_eq!(
            refused.challenge(),
            Some(r#"Bearer error="invalid_token""#),
            "{headers:?}"
        );
    }
    let (mut first, _) = connect(addr, "/ws/first-message", &[]).await.unwrap();
    first
        .send(Message::text(
            serde_json::json!({ "type": "auth", "token": old }).to_string(),
        ))
        .await
        .unwrap();
    assert_eq!(
        close_code(&mut first).await,
        4001,
        "a revoked first message"
    );

    // Issued after the revoked second: accepted.
    after_second(revoked_second).await;
    let fresh = token_issued_at("alice", unix_now());
    let (mut ws, _) = connect(addr, "/ws", &[("authorization", &bearer(&fresh))])
        .await
        .unwrap();
    assert_eq!(next_text(&mut ws).await, welcome("alice"));
    let (_cookie, mut ws) = login_and_connect(addr, "alice").await;
    ws.send(Message::text("new session")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "new session");
    let (mut ws, _) = connect(addr, "/ws", &[("authorization", &bearer(&bob))])
        .await
        .unwrap();
    assert_eq!(next_text(&mut ws).await, welcome("bob"));
}

/// `FAILED_AUTH_LIMIT`: successful upgrades never count; after that many
/// failed upgrades from the address within the minute, every upgrade from it
/// (a valid credential too) is 429 with `Retry-After` of at most 60 s; `0`
/// turns the limit off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_upgrades_are_throttled_per_client_address() {
    let (_server, addr) = start_example(
        "quickstart",
        &[("JWT_SECRET", SECRET), ("FAILED_AUTH_LIMIT", "3")],
    );
    let good = format!("Bearer {}", token("alice", 600));
    for _ in 0..5 {
        let (mut ws, _) = connect(addr, "/ws", &[("authorization", &good)])
            .await
            .unwrap();
        assert_eq!(next_text(&mut ws).await, welcome("alice"));
    }
    for path in ["/ws", "/ws/echo", "/ws"] {
        let refused = connect(addr, path, &[("authorization", "Bearer wrong")])
            .await
            .unwrap_err();
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{path}");
    }
    for bearer in ["Bearer wrong", good.as_str()] {
        let refused = connect(addr, "/ws", &[("authorization", bearer)])
            .await
            .unwrap_err();
        assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
        let after: u64 = refused.headers["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&after), "{after}");
    }

    let (_off, addr) = start_example(
        "quickstart",
        &[("JWT_SECRET", SECRET), ("FAILED_AUTH_LIMIT", "0")],
    );
    for _ in 0..5 {
        let refused = connect(addr, "/ws", &[("authorization", "Bearer wrong")])
            .await
            .unwrap_err();
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    }
    let (mut ws, _) = connect(addr, "/ws", &[("authorization", &good)])
        .await
        .unwrap();
    assert_eq!(next_text(&mut ws).await, welcome("alice"));
}

/// `MAX_SOCKETS_PER_SUBJECT`: the subject's next upgrade past the cap is 429
/// with `Retry-After`, other subjects are not affected, and a slot frees
/// when one of the subject's sockets ends; the default is 8, `0` is no cap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_sockets_are_capped_per_subject() {
    let alice = format!("Bearer {}", token("alice", 600));
    let bob = format!("Bearer {}", token("bob", 600));
    for (cap, max) in [(Some("2"), 2), (None, 8)] {
        let mut env = vec![("JWT_SECRET", SECRET)];
        if let Some(cap) = cap {
            env.push(("MAX_SOCKETS_PER_SUBJECT", cap));
        }
        let (_server, addr) = start_example("quickstart", &env);
        let mut held = Vec::new();
        for i in 0..max {
            let path = if i % 2 == 0 { "/ws" } else { "/ws/echo" };
            let (ws, _) = connect(addr, path, &[("authorization", &alice)])
                .await
                .unwrap();
            held.push(ws);
        }
        for path in ["/ws", "/ws/echo"] {
            let refused = connect(addr, path, &[("authorization", &alice)])
                .await
                .unwrap_err();
            assert_eq!(
                refused.status,
                StatusCode::TOO_MANY_REQUESTS,
                "{cap:?} {path}"
            );
            assert_eq!(refused.headers["retry-after"], "5");
        }
        let (mut ws, _) = connect(addr, "/ws", &[("authorization", &bob)])
            .await
            .unwrap();
        assert_eq!(next_text(&mut ws).await, welcome("bob"));
        // One of alice's sockets ends: its slot frees.
        let mut first = held.remove(0);
        first.close(None).await.unwrap();
        while let Some(Ok(_)) = first.next().await {}
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match connect(addr, "/ws", &[("authorization", &alice)]).await {
                Ok((mut ws, _)) => {
                    assert_eq!(next_text(&mut ws).await, welcome("alice"));
                    break;
                }
                Err(refused) => assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS),
            }
            assert!(Instant::now() < deadline, "the slot never freed");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let (_server, addr) = start_example(
        "quickstart",
        &[("JWT_SECRET", SECRET), ("MAX_SOCKETS_PER_SUBJECT", "0")],
    );
    let mut held = Vec::new();
    for _ in 0..12 {
        held.push(
            connect(addr, "/ws", &[("authorization", &alice)])
                .await
                .unwrap()
                .0,
        );
    }
}

/// `POST /ws-ticket` with `headers`: status, headers and body.
async fn mint(addr: SocketAddr, headers: &[(&str, &str)]) -> (StatusCode, http::HeaderMap, String) {
    http_send(addr, http::Method::POST, "/ws-ticket", headers, "").await
}

/// A minted ticket, after checking the contract's answer.
async fn ticket(addr: SocketAddr, headers: &[(&str, &str)]) -> String {
    let (status, response, body) = mint(addr, headers).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(response["cache-control"], "no-store");
    assert_eq!(response["content-type"], "application/json");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["expires_in"], 30, "{body}");
    assert_eq!(json.as_object().unwrap().len(), 2, "{body}");
    json["ticket"].as_str().unwrap().to_owned()
}

fn refused_401(refused: common::Refused) {
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(
        refused.challenge().unwrap().contains("invalid_token"),
        "{refused:?}"
    );
}

/// The ticket contract: minting by cookie (own Origin only) or bearer,
/// one use, the identity's expiry and session carried over, the 30 s
/// lifetime, and the ticket never in the server's logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticket_contract() {
    let (server, addr) = start_example("quickstart", &[("JWT_SECRET", SECRET)]);
    let own_origin = format!("http://{addr}");
    let bob = token("bob", 600);
    let bearer = format!("Bearer {bob}");

    // A ticket older than 30 s is 401: minted first, tried last.
    let old = ticket(addr, &[("authorization", &bearer)]).await;
    let aged = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(31)).await;
        connect(addr, &format!("/ws?ticket={old}"), &[]).await
    });

    // By bearer JWT: the socket is bob's, with the same welcome and echo.
    let t = ticket(addr, &[("authorization", &bearer)]).await;
    let (mut ws, _) = connect(addr, &format!("/ws?ticket={t}"), &[])
        .await
        .unwrap();
    assert_eq!(next_text(&mut ws).await, welcome("bob"));
    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "hello");
    // Once only.
    refused_401(
        connect(addr, &format!("/ws?ticket={t}"), &[])
            .await
            .unwrap_err(),
    );
    // An unknown ticket.
    let unknown = format!("wst_{}", "A".repeat(43));
    refused_401(
        connect(addr, &format!("/ws?ticket={unknown}"), &[])
            .await
            .unwrap_err(),
    );

    // No credential, or a bad one: 401 from the layer.
    assert_eq!(mint(addr, &[]).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        mint(addr, &[("authorization", "Bearer nope")]).await.0,
        StatusCode::UNAUTHORIZED
    );

    // By session cookie: only with this server's own Origin.
    let form = "username=alice&password=alice-password";
    let (status, headers) = post(addr, "/login", form, None, Some(&own_origin)).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let cookie = headers["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    for origin in [None, Some("http://evil.example")] {
        let mut headers = vec![("cookie", cookie.as_str())];
        headers.extend(origin.map(|o| ("origin", o)));
        assert_eq!(
            mint(addr, &headers).await.0,
            StatusCode::FORBIDDEN,
            "{origin:?}"
        );
    }
    let t = ticket(addr, &[("cookie", &cookie), ("origin", &own_origin)]).await;
    // Redeemed from another origin: 403, and the ticket is not spent.
    let refused = connect(
        addr,
        &format!("/ws?ticket={t}"),
        &[("origin", "http://evil.example")],
    )
    .await
    .unwrap_err();
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    // A ticket goes before the cookie: bob's ticket beside alice's cookie is bob.
    let for_bob = ticket(addr, &[("authorization", &bearer)]).await;
    let (mut ws, _) = connect(
        addr,
        &format!("/ws/echo?ticket={for_bob}"),
        &[("cookie", &cookie), ("origin", &own_origin)],
    )
    .await
    .unwrap();
    common::assert_echo(&mut ws, "via /ws/echo").await;
    let (mut by_ticket, _) = connect(
        addr,
        &format!("/ws?ticket={t}"),
        &[("cookie", "session=garbage"), ("origin", &own_origin)],
    )
    .await
    .unwrap();
    assert_eq!(next_text(&mut by_ticket).await, welcome("alice"));

    // Two handshakes with one ticket at once: exactly one wins.
    let t = ticket(addr, &[("authorization", &bearer)]).await;
    let path = format!("/ws?ticket={t}");
    let (a, b) = tokio::join!(connect(addr, &path, &[]), connect(addr, &path, &[]));
    assert_eq!(
        usize::from(a.is_ok()) + usize::from(b.is_ok()),
        1,
        "one of two concurrent redemptions wins"
    );
    refused_401(a.err().or(b.err()).unwrap());

    // The identity's expiry carries over: a ticket minted with a JWT that
    // expires in two seconds closes with 4002.
    let t = ticket(
        addr,
        &[("authorization", &format!("Bearer {}", token("carol", 2)))],
    )
    .await;
    let (mut ws, _) = connect(addr, &format!("/ws?ticket={t}"), &[])
        .await
        .unwrap();
    assert_eq!(next_text(&mut ws).await, welcome("carol"));
    assert_eq!(close_code(&mut ws).await, 4002);

    // So does the session: logging out closes the ticket's socket with 4003.
    let (status, _) = post(addr, "/logout", "", Some(&cookie), Some(&own_origin)).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(close_code(&mut by_ticket).await, 4003);

    refused_401(aged.await.unwrap().unwrap_err());
    let logs = server.output();
    assert!(!logs.contains("wst_"), "a ticket reached the logs:\n{logs}");
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
