//! After the handshake: first-message authentication, the expiry guard with
//! in-band refresh, and revocation (local and across instances through a
//! real Redis), each through a real tokio-tungstenite client against an
//! axum server and against a hyper + tokio-tungstenite server.

use crate::common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::next_text;
use common::redis::RedisServer;
use common::sockets::*;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tower_ws_auth::socket::RedisBus;
use tower_ws_auth::socket::Revocations;

async fn first_message_authenticates_and_then_echoes(kind: Kind) {
    let app = App::new(Revocations::new());
    let addr = spawn(kind, app.clone()).await;
    let mut ws = open(addr, "/first", &[]).await;
    let ack = authenticate_first(&mut ws, "alice.60000").await;
    assert_eq!(ack["type"], "authenticated");
    assert_eq!(ack["user"]["id"], "alice");
    assert!(ack["expires_at"].as_u64().is_some());
    send(&mut ws, "hello").await;
    assert_eq!(next_text(&mut ws).await, "hello");
    assert_eq!(app.delivered(), ["hello"]);
}

async fn first_message_failures_close_with_their_codes(kind: Kind) {
    let app = App::new(Revocations::new());
    let addr = spawn(kind, app.clone()).await;
    let big = format!(r#"{{"type":"auth","token":"{}"}}"#, "a".repeat(17 * 1024));
    let cases: [(&str, u16); 7] = [
        (r#"{"type":"chat","text":"early-secret"}"#, 4001),
        ("early plain text", 4001),
        (r#"{"type":"auth"}"#, 4001),
        (r#"{"type":"auth","token":"invalid"}"#, 4001),
        (r#"{"type":"auth","token":"forbidden"}"#, 4003),
        (r#"{"type":"auth","token":"down"}"#, 1013),
        (&big, 1009),
    ];
    for (first, code) in cases {
        let mut ws = open(addr, "/first", &[]).await;
        send(&mut ws, first).await;
        let (got, reason, texts) = close_of(&mut ws).await;
        assert_eq!(got, code, "{}", &first[..first.len().min(60)]);
        assert!(
            reason.len() <= 123 && !reason.contains("invalid") && !reason.contains("early"),
            "{reason}"
        );
        assert!(texts.is_empty());
    }
    // Binary before auth.
    let mut ws = open(addr, "/first", &[]).await;
    ws.send(Message::binary(b"early-binary".to_vec()))
        .await
        .unwrap();
    assert_eq!(close_of(&mut ws).await.0, 4001);
    // Nothing sent before authentication ever reached the application.
    assert!(app.delivered().is_empty(), "{:?}", app.delivered());
}

async fn first_message_times_out_with_4008(kind: Kind) {
    let app = App::new(Revocations::new());
    let addr = spawn(kind, app.clone()).await;
    let mut ws = open(addr, "/first", &[]).await;
    let started = Instant::now();
    // Pings are answered and do not count as the auth message.
    ws.send(Message::Ping(Bytes::from_static(b"are you there")))
        .await
        .unwrap();
    let (code, reason, _) = close_of(&mut ws).await;
    assert_eq!((code, reason.as_str()), (4008, "authentication timeout"));
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(500) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    assert_eq!(app.first.pending(), 0);
}

async fn graphql_preset_codes(kind: Kind) {
    let app = App::new(Revocations::new());
    let addr = spawn(kind, app.clone()).await;
    let init =
        |token: &str| format!(r#"{{"type":"connection_init","payload":{{"token":"{token}"}}}}"#);
    for (first, code) in [
        (r#"{"type":"connection_init"}"#.to_owned(), 4400),
        (r#"{"type":"auth","token":"alice.60000"}"#.to_owned(), 4403),
        (init("invalid"), 4403),
        (init("forbidden"), 4403),
        (
            r#"{"type":"subscribe","id":"1","payload":{}}"#.to_owned(),
            4403,
        ),
    ] {
        let mut ws = open(addr, "/first-gql", &[]).await;
        send(&mut ws, &first).await;
        assert_eq!(close_of(&mut ws).await.0, code, "{first}");
    }
    // A good token: connection_ack, then the application.
    let mut ws = open(addr, "/first-gql", &[]).await;
    send(&mut ws, &init("alice.60000")).await;
    assert_eq!(next_text(&mut ws).await, r#"{"type":"connection_ack"}"#);
    send(&mut ws, "hello").await;
    assert_eq!(next_text(&mut ws).await, "hello");
    drop(ws);
    // max_pending(1): a second idle connection is turned away with 4429,
    // the first times out with 4408.
    let mut idle = open(addr, "/first-gql", &[]).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut second = open(addr, "/first-gql", &[]).await;
    assert_eq!(close_of(&mut second).await.0, 4429);
    assert_eq!(close_of(&mut idle).await.0, 4408);
}

async fn expiry_closes_with_4002_after_a_warning(kind: Kind) {
    let app = App::new(Revocations::new());
    let addr = spawn(kind, app.clone()).await;
    let started = Instant::now();
    let mut ws = open(addr, "/ws", &[("authorization", "Bearer alice.2000")]).await;
    send(&mut ws, "before expiry").await;
    let (code, reason, texts) = close_of(&mut ws).await;
    let elapsed = started.elapsed();
    assert_eq!((code, reason.as_str()), (4002, "session expired"));
    assert!(
        elapsed >= Duration::from_millis(1800) && elapsed < Duration::from_secs(4),
        "{elapsed:?}"
    );
    assert_eq!(texts.first().map(String::as_str), Some("before expiry"));
    let warning: serde_json::Value = serde_json::from_str(texts.last().unwrap()).unwrap();
    assert_eq!(warning["type"], "expiring");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        app.revocations.is_empty(),
        "the registry entry goes with the connection"
    );
}

async fn revoke_subject_closes_that_subject_only(kind: Kind) {
    let app = App::new(Revocations::new());
    let addr = spawn(kind, app.clone()).await;
    let mut alice1 = open(addr, "/ws", &[("authorization", "Bearer alice.60000")]).await;
    let mut alice2 = open(addr, "/ws", &[("authorization", "Bearer alice.60000")]).await;
    let mut bob = open(addr, "/ws", &[("authorization", "Bearer bob.60000")]).await;
    for ws in [&mut alice1, &mut alice2, &mut bob] {
        send(ws, "ping").await;
        assert_eq!(next_text(ws).await, "ping");
    }
    assert_eq!(app.revocations.len(), 3);
    assert_eq!(app.revocations.revoke_subject("alice").await.unwrap(), 2);
    for ws in [&mut alice1, &mut alice2] {
        let (code, reason, _) = close_of(ws).await;
        assert_eq!((code, reason.as_str()), (4003, "revoked"));
    }
    send(&mut bob, "bob is fine").await;
    assert_eq!(next_text(&mut bob).await, "bob is fine");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(app.revocations.len(), 1);
    assert_eq!(
        app.revocations
            .revoke_session("session-of-bob")
            .await
            .unwrap(),
        1
    );
    assert_eq!(close_of(&mut bob).await.0, 4003);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        app.revocations.len(),
        0,
        "the registry is empty once every connection is gone"
    );
}

async fn revocation_crosses_instances_through_redis(kind: Kind) {
    let Some(mut redis) = RedisServer::start("revocation_crosses_instances_through_redis") else {
        return;
    };
    let a = App::new(
        Revocations::with_bus(
            RedisBus::connect(&redis.url())
                .await
                .unwrap()
                .channel(format!("revocations:{}", redis.port)),
        )
        .await
        .unwrap(),
    );
    let b = App::new(
        Revocations::with_bus(
            RedisBus::connect(&redis.url())
                .await
                .unwrap()
                .channel(format!("revocations:{}", redis.port)),
        )
        .await
        .unwrap(),
    );
    let _a_addr = spawn(kind, a.clone()).await;
    let b_addr = spawn(kind, b.clone()).await;

    let mut on_b = open(b_addr, "/ws", &[("authorization", "Bearer alice.60000")]).await;
    let mut bob_on_b = open(b_addr, "/ws", &[("authorization", "Bearer bob.60000")]).await;
    send(&mut on_b, "ready").await;
    assert_eq!(next_text(&mut on_b).await, "ready");
    let started = Instant::now();
    assert_eq!(
        a.revocations.revoke_subject("alice").await.unwrap(),
        0,
        "nothing of alice on A"
    );
    let (code, _, _) = close_of(&mut on_b).await;
    assert_eq!(code, 4003);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );

    // Redis restarts: the bus reconnects and revocations flow again.
    redis.stop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Without the bus, the layer still refuses what it must: no 101.
    for token in ["invalid", "forbidden"] {
        let refused = common::connect(
            b_addr,
            "/ws",
            &[("authorization", &format!("Bearer {token}"))],
        )
        .await
        .expect_err("an upgrade without a valid credential while Redis is down");
        assert!(
            refused.status.is_client_error(),
            "{token}: {}",
            refused.status
        );
    }
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // Until the publisher has reconnected, publishing fails; until the
        // subscriber has re-subscribed, the message is not seen. Retry both.
        let _ = a.revocations.revoke_subject("bob").await;
        if let Ok(Some(Ok(Message::Close(Some(frame))))) =
            tokio::time::timeout(Duration::from_millis(300), bob_on_b.next()).await
        {
            assert_eq!(u16::from(frame.code), 4003);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no revocation after the Redis restart"
        );
    }
}

/// A bus on a channel of `redis`'s own.
async fn redis_bus(redis: &RedisServer) -> RedisBus {
    let bus = RedisBus::connect(&redis.url()).await.unwrap();
    bus.channel(format!("revocations:{}", redis.port))
}

/// `Revocations::with_bus` returns only once Redis has the subscription: a
/// revocation published right after it is never missed. (fred answers
/// SUBSCRIBE when it queues the command, before it is even written; under
/// load another connection's PUBLISH could reach Redis first.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_subscription_is_in_place_when_with_bus_returns() {
    let Some(redis) =
        RedisServer::start("the_redis_subscription_is_in_place_when_with_bus_returns")
    else {
        return;
    };
    let bus = || redis_bus(&redis);
    let publisher = Revocations::with_bus(bus().await).await.unwrap();
    let subscriber_bus = bus().await;

    // While Redis cannot answer, the subscription cannot be confirmed.
    redis.pause();
    let subscribing = tokio::spawn(Revocations::with_bus(subscriber_bus));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let returned_early = subscribing.is_finished();
    redis.resume();
    assert!(
        !returned_early,
        "with_bus returned before Redis confirmed the subscription"
    );
    let subscriber = subscribing.await.unwrap().unwrap();

    let held = subscriber.register(&tower_ws_auth::Identity::new(
        "alice",
        tower_ws_auth::AuthMethod::Jwt,
    ));
    publisher.revoke_subject("alice").await.unwrap();
    tokio::time::timeout(Duration::from_secs(2), held.revoked())
        .await
        .expect("the revocation reached the new subscriber");
}

/// A burst of revocations through Redis closes every affected socket on the
/// other instance: none is lost while the instance applies the ones before
/// (fred's default queue of 32 received messages dropped most of a burst).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_revocations_through_redis_closes_every_socket() {
    let Some(redis) =
        RedisServer::start("a_burst_of_revocations_through_redis_closes_every_socket")
    else {
        return;
    };
    let bus = || redis_bus(&redis);
    let a = Revocations::with_bus(bus().await).await.unwrap();
    let b = App::new(Revocations::with_bus(bus().await).await.unwrap());
    let b_addr = spawn(Kind::Axum, b.clone()).await;
    const BURST: usize = 300;
    let mut sockets = Vec::new();
    for i in 0..BURST {
        let bearer = format!("Bearer user{i}.60000");
        sockets.push(open(b_addr, "/ws", &[("authorization", &bearer)]).await);
    }
    let revoking = (0..BURST).map(|i| {
        let a = a.clone();
        async move { a.revoke_subject(&format!("user{i}")).await.unwrap() }
    });
    futures_util::future::join_all(revoking).await;
    for (i, ws) in sockets.iter_mut().enumerate() {
        let (code, _, _) = close_of(ws).await;
        assert_eq!(code, 4003, "socket {i}");
        common::assert_clean_end(ws, &format!("socket {i}")).await;
    }
}

/// Without a refresh authenticator (`SessionGuard::expiry_only()`) no
/// message is read as a refresh: refresh-shaped messages of any size reach
/// the application. With one, a message over the refresh cap is not read
/// either.
async fn refresh_messages_reach_the_application_without_refresh(kind: Kind) {
    let app = App::new(Revocations::new());
    let addr = spawn(kind, app.clone()).await;
    let big = format!(
        r#"{{"type":"refresh","token":"{}"}}"#,
        "a".repeat(17 * 1024)
    );
    let mut ws = open(
        addr,
        "/ws-plain",
        &[("authorization", "Bearer alice.60000")],
    )
    .await;
    for text in [
        r#"{"type":"refresh"}"#,
        r#"{"type":"refresh","token":"invalid"}"#,
        r#"{"type":"refresh","token":"mallory.60000"}"#,
        &big,
    ] {
        send(&mut ws, text).await;
        assert_eq!(next_text(&mut ws).await, text, "{kind:?}");
    }
    // The refreshing guard: over the cap, not a refresh.
    let mut ws = open(addr, "/ws", &[("authorization", "Bearer alice.60000")]).await;
    send(&mut ws, &big).await;
    assert_eq!(next_text(&mut ws).await, big, "{kind:?}");
    send(&mut ws, r#"{"type":"refresh"}"#).await;
    assert_eq!(close_of(&mut ws).await.0, 4001, "{kind:?}");
}

/// RFC 6455 closing handshake on every path: the peer's Close is answered
/// with the same code, and each server-initiated close (expiry,
/// revocation, refused refresh, first-message failures, explicit close)
/// sends its code and completes cleanly.
async fn every_close_is_a_clean_closing_handshake(kind: Kind) {
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    let app = App::new(Revocations::new());
    let addr = spawn(kind, app.clone()).await;
    let bye = || {
        Message::Close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "bye".into(),
        }))
    };
    // The client closes: on a guarded socket (both guards) and before
    // first-message authentication.
    for (path, headers) in [
        ("/ws", &[("authorization", "Bearer alice.60000")][..]),
        ("/ws-plain", &[("authorization", "Bearer alice.60000")][..]),
        ("/first", &[][..]),
    ] {
        let case = format!("{kind:?} {path}: client-initiated");
        let mut ws = open(addr, path, headers).await;
        if path != "/first" {
            send(&mut ws, "hello").await;
            assert_eq!(next_text(&mut ws).await, "hello");
        }
        ws.send(bye()).await.unwrap();
        let (code, _, _) = close_of(&mut ws).await;
        assert_eq!(code, 1000, "{case}");
        common::assert_clean_end(&mut ws, &case).await;
    }

    // The server closes.
    let bearer = |token: &str| format!("Bearer {token}");
    let cases: [(&str, &str, Option<&str>, u16); 7] = [
        ("expiry", "/ws-plain", Some("alice.600"), 4002),
        ("refresh refused", "/ws", Some("alice.60000"), 4001),
        (
            "refresh for another subject",
            "/ws",
            Some("alice.60000"),
            4003,
        ),
        ("explicit close", "/ws", Some("alice.60000"), 4000),
        ("first message timeout", "/first", None, 4008),
        ("first message not an auth message", "/first", None, 4001),
        ("revocation", "/ws-plain", Some("carol.60000"), 4003),
    ];
    for (case, path, token, expected) in cases {
        let case = format!("{kind:?}: {case}");
        let header = token.map(bearer);
        let headers: Vec<(&str, &str)> = header
            .iter()
            .map(|h| ("authorization", h.as_str()))
            .collect();
        let mut ws = open(addr, path, &headers).await;
        match expected {
            4001 if path == "/ws" => send(&mut ws, r#"{"type":"refresh","token":"invalid"}"#).await,
            4003 if path == "/ws" => {
                send(&mut ws, r#"{"type":"refresh","token":"mallory.60000"}"#).await
            }
            4000 => send(&mut ws, "close-me").await,
            4001 => send(&mut ws, "early plain text").await,
            4003 => {
                send(&mut ws, "ready").await;
                assert_eq!(next_text(&mut ws).await, "ready");
                assert_eq!(app.revocations.revoke_subject("carol").await.unwrap(), 1);
            }
            _ => {}
        }
        let (code, _, _) = close_of(&mut ws).await;
        assert_eq!(code, expected, "{case}");
        common::assert_clean_end(&mut ws, &case).await;
    }
}

/// A peer that breaks the protocol (RFC 6455 7.1.7): a text message that
/// is not UTF-8 is failed with 1007, a reserved opcode with 1002, each with
/// the server's Close flushed and a clean end, on a guarded socket (both
/// guards, and split) and before first-message authentication.
async fn protocol_errors_fail_the_connection_with_a_close(kind: Kind) {
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    let app = App::new(Revocations::new());
    let addr = spawn(kind, app).await;
    let bearer = [("authorization", "Bearer alice.60000")];
    for (path, headers) in [
        ("/ws", &bearer[..]),
        ("/ws-plain", &bearer[..]),
        ("/ws-split", &bearer[..]),
        ("/first", &[][..]),
    ] {
        for (what, opcode, payload, expected) in [
            ("not UTF-8", Data::Text, &[0xce, 0xba, 0xff, 0xfe][..], 1007),
            ("reserved opcode", Data::Reserved(3), &b"x"[..], 1002),
        ] {
            let case = format!("{kind:?} {path}: {what}");
            let mut ws = open(addr, path, headers).await;
            let frame = Frame::message(Bytes::copy_from_slice(payload), OpCode::Data(opcode), true);
            ws.send(Message::Frame(frame)).await.unwrap();
            let (code, _, _) = close_of(&mut ws).await;
            assert_eq!(code, expected, "{case}");
            common::assert_clean_end(&mut ws, &case).await;
        }
    }
}

/// A peer that never answers the server's Close cannot hold the
/// connection: it is dropped `close_timeout` after the Close (set to 1 s on
/// `/ws-plain`; the default, 3 s, on `/ws`), the Close read from the raw
/// TCP stream by a client that never replies.
async fn a_peer_that_never_answers_is_dropped_after_the_close_timeout(kind: Kind) {
    use tokio::io::AsyncReadExt;
    let app = App::new(Revocations::new());
    let addr = spawn(kind, app).await;
    for (path, timeout) in [
        ("/ws-plain", Duration::from_secs(1)),
        ("/ws", Duration::from_secs(3)),
    ] {
        let case = format!("{kind:?} {path}");
        let mut ws = open(addr, path, &[("authorization", "Bearer alice.300")]).await;
        let tcp = ws.get_mut();
        let mut bytes = Vec::new();
        let mut close_at = None;
        let ended = loop {
            let mut buf = [0u8; 256];
            let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("{case}: the server kept the connection open"))
                .unwrap_or(0);
            if n == 0 {
                break Instant::now();
            }
            bytes.extend_from_slice(&buf[..n]);
            // Server frames are unmasked; these are short (7-bit lengths).
            if close_at.is_none() {
                let mut at = 0;
                while let (Some(&op), Some(&len)) = (bytes.get(at), bytes.get(at + 1)) {
                    if op == 0x88 {
                        let code = bytes
                            .get(at + 2..at + 4)
                            .map(|c| u16::from_be_bytes([c[0], c[1]]));
                        assert_eq!(code, Some(4002), "{case}");
                        close_at = Some(Instant::now());
                        break;
                    }
                    at += 2 + usize::from(len & 0x7f);
                }
            }
        };
        let close_at = close_at.unwrap_or_else(|| panic!("{case}: no Close frame: {bytes:?}"));
        let held = ended - close_at;
        assert!(
            held >= timeout - Duration::from_millis(100) && held < timeout + Duration::from_secs(1),
            "{case}: dropped {held:?} after the Close, close_timeout {timeout:?}"
        );
    }
}

/// A split guarded socket: the halves work in two tasks (echo through a
/// channel, refresh answered by the guard), and a sending half that is
/// held and blocked does not stop the guard: expiry and revocation close
/// the socket with their codes and the connection ends cleanly.
async fn a_split_socket_is_guarded_whatever_its_sending_half_does(kind: Kind) {
    let app = App::new(Revocations::new());
    let addr = spawn(kind, app.clone()).await;
    let started = Instant::now();
    let mut expiring = open(addr, "/ws-split", &[("authorization", "Bearer alice.1500")]).await;
    let mut revoked = open(addr, "/ws-split", &[("authorization", "Bearer bob.60000")]).await;
    for ws in [&mut expiring, &mut revoked] {
        send(ws, "hi").await;
        assert_eq!(next_text(ws).await, "hi", "{kind:?}");
    }
    send(&mut expiring, r#"{"type":"refresh","token":"alice.1500"}"#).await;
    let answer: serde_json::Value = serde_json::from_str(&next_text(&mut expiring).await).unwrap();
    assert_eq!(answer["type"], "refreshed", "{kind:?}");
    for ws in [&mut expiring, &mut revoked] {
        send(ws, "block-sender").await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(app.revocations.revoke_subject("bob").await.unwrap(), 1);
    let (code, _, _) = close_of(&mut revoked).await;
    assert_eq!(code, 4003, "{kind:?}: revoked");
    common::assert_clean_end(&mut revoked, &format!("{kind:?}: revoked, sender blocked")).await;
    let (code, _, _) = close_of(&mut expiring).await;
    assert_eq!(code, 4002, "{kind:?}: expired");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    common::assert_clean_end(&mut expiring, &format!("{kind:?}: expired, sender blocked")).await;
    assert!(!app.delivered().iter().any(|m| m.contains("refresh")));
}

/// The guarded socket used only through `Stream` and `Sink` (`/ws-stream`:
/// `StreamExt::next`, `SinkExt::send`, `SinkExt::close`; `/ws-forward`: the
/// split halves joined by `StreamExt::forward`): messages flow, a refresh
/// is answered and never delivered, expiry closes with 4002, the client's
/// Close is answered with its code, the application's `Sink::close` sends
/// 1000; every close ends with a clean closing handshake.
async fn stream_and_sink_usage_is_guarded(kind: Kind) {
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    let app = App::new(Revocations::new());
    let addr = spawn(kind, app.clone()).await;
    for path in ["/ws-stream", "/ws-forward"] {
        let case = format!("{kind:?} {path}");
        // Expiry, after a refresh that moved it.
        let started = Instant::now();
        let mut ws = open(addr, path, &[("authorization", "Bearer alice.1000")]).await;
        send(&mut ws, "hi").await;
        assert_eq!(next_text(&mut ws).await, "hi", "{case}");
        send(&mut ws, r#"{"type":"refresh","token":"alice.1500"}"#).await;
        let answer: serde_json::Value = serde_json::from_str(&next_text(&mut ws).await).unwrap();
        assert_eq!(answer["type"], "refreshed", "{case}");
        let (code, reason, texts) = close_of(&mut ws).await;
        assert_eq!((code, reason.as_str()), (4002, "session expired"), "{case}");
        let warning: serde_json::Value = serde_json::from_str(texts.last().unwrap()).unwrap();
        assert_eq!(warning["type"], "expiring", "{case}");
        let elapsed = started.elapsed();
        assert!(
            elapsed >= Duration::from_millis(1400) && elapsed < Duration::from_secs(3),
            "{case}: {elapsed:?}"
        );
        common::assert_clean_end(&mut ws, &format!("{case}: expiry")).await;

        // The client closes.
        let mut ws = open(addr, path, &[("authorization", "Bearer alice.60000")]).await;
        send(&mut ws, "hello").await;
        assert_eq!(next_text(&mut ws).await, "hello", "{case}");
        ws.send(Message::Close(Some(CloseFrame {
            code: CloseCode::Away,
            reason: "bye".into(),
        })))
        .await
        .unwrap();
        let (code, _, _) = close_of(&mut ws).await;
        assert_eq!(code, 1001, "{case}: client-initiated");
        common::assert_clean_end(&mut ws, &format!("{case}: client-initiated")).await;
    }
    // The application closes through `Sink::close`.
    let mut ws = open(
        addr,
        "/ws-stream",
        &[("authorization", "Bearer alice.60000")],
    )
    .await;
    send(&mut ws, "close-me").await;
    let (code, _, _) = close_of(&mut ws).await;
    assert_eq!(code, 1000, "{kind:?}: Sink::close");
    common::assert_clean_end(&mut ws, &format!("{kind:?}: Sink::close")).await;
    assert!(!app.delivered().iter().any(|m| m.contains("refresh")));
}

/// What async-graphql-axum's `GraphQLWebSocket::new_with_pair(sink, stream,
/// ..)` asks of its halves: `Sink<Message>` and
/// `Stream<Item = Result<Message, axum::Error>>`.
#[allow(dead_code)]
fn split_halves_fit_async_graphql_axum(
    guarded: tower_ws_auth::socket::GuardedSocket<axum::extract::ws::WebSocket>,
) {
    fn pair<Si, St>(_: Si, _: St)
    where
        Si: futures_util::Sink<axum::extract::ws::Message> + Send + Unpin + 'static,
        St: futures_util::Stream<Item = Result<axum::extract::ws::Message, axum::Error>>
            + Send
            + Unpin
            + 'static,
    {
    }
    let (receiver, sender) = guarded.split();
    pair(sender, receiver);
}

for_both_adapters!(
    first_message_authenticates_and_then_echoes,
    first_message_failures_close_with_their_codes,
    first_message_times_out_with_4008,
    graphql_preset_codes,
    expiry_closes_with_4002_after_a_warning,
    revoke_subject_closes_that_subject_only,
    revocation_crosses_instances_through_redis,
    refresh_messages_reach_the_application_without_refresh,
    every_close_is_a_clean_closing_handshake,
    protocol_errors_fail_the_connection_with_a_close,
    a_split_socket_is_guarded_whatever_its_sending_half_does,
    stream_and_sink_usage_is_guarded,
    a_peer_that_never_answers_is_dropped_after_the_close_timeout,
);
