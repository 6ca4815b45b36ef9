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

/// A form POST; returns status and headers.
async fn post(
    addr: SocketAddr,
    path: &str,
    form: &str,
    cookie: Option<&str>,
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
    let (status, _) = post(addr, "/login", "username=alice&password=wrong", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, headers) = post(
        addr,
        "/login",
        "username=alice&password=alice-password",
        None,
    )
    .await;
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

    // Logout ends the session and closes its live socket with 4003.
    let (status, headers) = post(addr, "/logout", "", Some(&cookie)).await;
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
