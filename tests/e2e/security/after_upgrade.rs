//! "After the upgrade": first-message authentication, expiry, refresh and
//! revocation on open sockets, each rule checked on axum's `WebSocket` and
//! on tokio-tungstenite behind hyper, with the close frames a client
//! receives.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::join_all;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tower_ws_auth::ConfigError;
use tower_ws_auth::socket::RedisBus;
use tower_ws_auth::socket::{CloseCodes, FirstMessageAuth, Revocations, close_reason};

use super::common::Ws;
use super::common::next_text;
use super::common::redis::Redis;
use super::common::sockets::{
    App, Kind, authenticate_first, boxed_auth, close_of, open, send, spawn,
};
use super::session_common::eventually;

const KINDS: [Kind; 2] = [Kind::Axum, Kind::Tungstenite];

/// What the test authenticator and the client put into credentials and
/// early messages: none of it may appear in a close reason.
const NEVER_IN_A_REASON: [&str; 7] = [
    "early-secret",
    "bad token",
    "verifier down",
    "banned",
    "unknown token",
    "mallory",
    "alice",
];

/// Opens `path`, sends `first` (if any) and returns the close frame.
async fn close_after(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    first: Option<Message>,
) -> (u16, String, Vec<String>) {
    let mut ws = open(addr, path, headers).await;
    if let Some(first) = first {
        ws.send(first).await.expect("send");
    }
    close_of(&mut ws).await
}

/// Asserts the close frame of `case`: the expected code, and a reason
/// that is generic, UTF-8 and at most 123 bytes.
fn assert_close(case: &str, (code, reason, _): &(u16, String, Vec<String>), expected: u16) {
    assert_eq!(*code, expected, "{case}: close code (reason {reason:?})");
    assert!(
        reason.len() <= 123,
        "{case}: a {}-byte reason",
        reason.len()
    );
    for secret in NEVER_IN_A_REASON {
        assert!(
            !reason.contains(secret),
            "{case}: the reason {reason:?} is not generic"
        );
    }
}

/// "First-message mode: a deadline for the auth message (close with the
/// timeout code); a small size cap for it (1009); an application message
/// before auth is never delivered and closes the socket (4001); malformed
/// auth message: 4001 (or 4000) with a generic reason; pings and
/// fragmentation handled transparently; the peer closing mid-auth is not an
/// error that leaks resources."
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_message_auth_has_a_deadline_a_size_cap_and_delivers_nothing_before_auth() {
    join_all(KINDS.map(first_message_rules)).await;
}

async fn first_message_rules(kind: Kind) {
    let app = App::new(Revocations::new());
    let addr = spawn(kind, app.clone()).await;

    // The deadline (600 ms here): a ping does not count as the auth message.
    let started = Instant::now();
    let ping = Some(Message::Ping(Bytes::from_static(b"still there?")));
    let timeout = close_after(addr, "/first", &[], ping).await;
    assert_close(&format!("{kind:?}: no auth message"), &timeout, 4008);
    assert!(
        started.elapsed() >= Duration::from_millis(550),
        "{kind:?}: closed before the deadline"
    );

    let big = format!(r#"{{"type":"auth","token":"{}"}}"#, "a".repeat(17 * 1024));
    let cases = [
        (
            "an application message",
            Message::text(r#"{"type":"chat","text":"early-secret-1"}"#),
            4001,
        ),
        ("plain text", Message::text("early-secret-2"), 4001),
        (
            "a binary message",
            Message::binary(b"early-secret-3".to_vec()),
            4001,
        ),
        (
            "malformed: no token",
            Message::text(r#"{"type":"auth"}"#),
            4001,
        ),
        (
            "malformed: a token of the wrong type",
            Message::text(r#"{"type":"auth","token":7}"#),
            4001,
        ),
        (
            "malformed: broken JSON",
            Message::text(r#"{"type":"auth","token":"early-secret-4""#),
            4001,
        ),
        (
            "an invalid token",
            Message::text(r#"{"type":"auth","token":"invalid"}"#),
            4001,
        ),
        ("over the 16 KiB cap", Message::text(big), 1009),
    ];
    let closes = join_all(
        cases
            .iter()
            .map(|(_, first, _)| close_after(addr, "/first", &[], Some(first.clone()))),
    )
    .await;
    for ((case, _, expected), close) in cases.iter().zip(&closes) {
        let case = format!("{kind:?}: {case}");
        assert_close(&case, close, *expected);
        assert!(
            close.2.is_empty(),
            "{case}: answered {:?} before closing",
            close.2
        );
    }

    // Pings before and between the fragments of the auth message.
    let mut ws = open(addr, "/first", &[]).await;
    let auth = r#"{"type":"auth","token":"alice.60000"}"#;
    let (one, rest) = auth.split_at(10);
    let (two, three) = rest.split_at(10);
    let frames = [
        Message::Ping(Bytes::from_static(b"p1")),
        Message::Frame(Frame::message(
            one.to_owned(),
            OpCode::Data(Data::Text),
            false,
        )),
        Message::Frame(Frame::ping(b"p2".to_vec())),
        Message::Frame(Frame::message(
            two.to_owned(),
            OpCode::Data(Data::Continue),
            false,
        )),
        Message::Frame(Frame::message(
            three.to_owned(),
            OpCode::Data(Data::Continue),
            true,
        )),
    ];
    for frame in frames {
        ws.send(frame).await.expect("send");
    }
    let (ack, pongs) = text_and_pongs(&mut ws).await;
    let ack: serde_json::Value = serde_json::from_str(&ack).expect("JSON");
    assert_eq!(
        (ack["type"].as_str(), ack["user"]["id"].as_str()),
        (Some("authenticated"), Some("alice")),
        "{kind:?}: fragmented auth"
    );
    assert_eq!(
        pongs,
        [&b"p1"[..], b"p2"],
        "{kind:?}: pings during authentication"
    );
    send(&mut ws, "hello").await;
    assert_eq!(next_text(&mut ws).await, "hello");
    assert_eq!(
        app.delivered(),
        ["hello"],
        "{kind:?}: a message sent before authentication was delivered"
    );

    // Peers that leave mid-auth: a close frame, a dropped connection, a
    // dropped connection in the middle of a fragmented message.
    let mut leaving = join_all((0..3).map(|_| open(addr, "/first", &[]))).await;
    let first = &app.first;
    eventually("three connections awaiting auth", move || async move {
        first.pending() == 3
    })
    .await;
    leaving[0].close(None).await.expect("close");
    let half = Frame::message(one.to_owned(), OpCode::Data(Data::Text), false);
    leaving[2].send(Message::Frame(half)).await.expect("send");
    drop(leaving);
    // Nothing leaked, nothing broke.
    assert_recovered(&app, addr, kind).await;
}

/// Waits until no connection awaits authentication on `/first`, then
/// authenticates a new one there: the server neither holds on to what
/// ended nor stopped serving.
async fn assert_recovered(app: &App, addr: SocketAddr, kind: Kind) {
    let first = &app.first;
    eventually("no connection awaiting auth", move || async move {
        first.pending() == 0
    })
    .await;
    let mut ws = open(addr, "/first", &[]).await;
    let ack = authenticate_first(&mut ws, "bob.60000").await;
    assert_eq!(ack["user"]["id"], "bob", "{kind:?}: {ack}");
}

/// The next text message, and the payloads of the pongs before it.
async fn text_and_pongs(ws: &mut Ws) -> (String, Vec<Vec<u8>>) {
    let mut pongs = Vec::new();
    loop {
        let next = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("no message within 10 s");
        match next.expect("socket closed").expect("socket error") {
            Message::Text(text) => return (text.to_string(), pongs),
            Message::Pong(payload) => pongs.push(payload.to_vec()),
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// "Expiry: when the identity's credential expires the socket is closed
/// with 4002, unless an in-band refresh replaced it in time; a refresh for
/// another subject is refused and closes the socket."
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_closes_with_4002_unless_refreshed_in_time_by_the_same_subject() {
    join_all(KINDS.map(expiry_rules)).await;
}

async fn expiry_rules(kind: Kind) {
    let app = App::new(Revocations::new());
    let addr = spawn(kind, app.clone()).await;
    let expires = async {
        let started = Instant::now();
        let close = close_after(addr, "/ws", &[("authorization", "Bearer alice.1500")], None).await;
        assert_close(&format!("{kind:?}: expired"), &close, 4002);
        assert_eq!(close.1, "session expired");
        assert!(
            started.elapsed() >= Duration::from_millis(1400),
            "{kind:?}: closed before the expiry"
        );
        let warning: serde_json::Value =
            serde_json::from_str(close.2.last().expect("a warning")).expect("JSON");
        assert_eq!(warning["type"], "expiring", "{kind:?}");
    };
    let refreshed = async {
        let started = Instant::now();
        let mut ws = open(addr, "/ws", &[("authorization", "Bearer alice.1500")]).await;
        send(&mut ws, r#"{"type":"refresh","token":"alice.3500"}"#).await;
        let answer: serde_json::Value =
            serde_json::from_str(&next_text(&mut ws).await).expect("JSON");
        assert_eq!(answer["type"], "refreshed", "{kind:?}");
        tokio::time::sleep_until((started + Duration::from_millis(2000)).into()).await;
        send(&mut ws, "past the first expiry").await;
        let echoed = next_text(&mut ws).await;
        assert_eq!(
            echoed, "past the first expiry",
            "{kind:?}: closed although refreshed"
        );
        let close = close_of(&mut ws).await;
        assert_close(&format!("{kind:?}: refreshed, then expired"), &close, 4002);
        assert!(
            started.elapsed() >= Duration::from_millis(3400),
            "{kind:?}: the refresh did not move the expiry"
        );
    };
    let other_subject = async {
        let mut ws = open(addr, "/ws", &[("authorization", "Bearer alice.60000")]).await;
        send(&mut ws, r#"{"type":"refresh","token":"mallory.60000"}"#).await;
        assert_close(
            &format!("{kind:?}: refresh for another subject"),
            &close_of(&mut ws).await,
            4003,
        );
    };
    let invalid = async {
        let mut ws = open(addr, "/ws", &[("authorization", "Bearer alice.60000")]).await;
        send(&mut ws, r#"{"type":"refresh","token":"invalid"}"#).await;
        assert_close(
            &format!("{kind:?}: invalid refresh"),
            &close_of(&mut ws).await,
            4001,
        );
    };
    tokio::join!(expires, refreshed, other_subject, invalid);
    let delivered = app.delivered();
    assert_eq!(
        delivered,
        ["past the first expiry"],
        "{kind:?}: refresh messages reached the application"
    );
}

/// "Revocation: revoking a subject or session closes every live connection
/// of it, on every instance that shares the bus."
///
/// Three instances on one Redis channel; each holds connections of alice,
/// one holds bob's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_closes_every_live_connection_on_every_instance_sharing_the_bus() {
    let Some(redis) =
        Redis::get("revocation_closes_every_live_connection_on_every_instance_sharing_the_bus")
    else {
        return;
    };
    for kind in KINDS {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let channel = format!(
            "security-revocations:{}:{kind:?}:{nanos}",
            std::process::id()
        );
        let mut apps = Vec::new();
        let mut addrs = Vec::new();
        for _ in 0..3 {
            let bus = RedisBus::connect(&redis.url())
                .await
                .expect("Redis")
                .channel(channel.clone());
            let app = App::new(Revocations::with_bus(bus).await.expect("subscribed"));
            addrs.push(spawn(kind, app.clone()).await);
            apps.push(app);
        }
        let alice = [("authorization", "Bearer alice.60000")];
        let mut alices = Vec::new();
        for addr in [addrs[0], addrs[1], addrs[1], addrs[2]] {
            alices.push(open(addr, "/ws", &alice).await);
        }
        let mut bob = open(addrs[1], "/ws", &[("authorization", "Bearer bob.60000")]).await;
        for ws in alices.iter_mut().chain([&mut bob]) {
            send(ws, "registered?").await;
            assert_eq!(next_text(ws).await, "registered?");
        }

        apps[0]
            .revocations
            .revoke_subject("alice")
            .await
            .expect("published");
        for (i, ws) in alices.iter_mut().enumerate() {
            let case = format!("{kind:?}: alice's connection {i} (instances 0, 1, 1, 2)");
            let close = closed_within(ws, &case).await;
            assert_close(&case, &close, 4003);
            assert_eq!(close.1, "revoked");
        }
        send(&mut bob, "bob is still here").await;
        assert_eq!(
            next_text(&mut bob).await,
            "bob is still here",
            "{kind:?}: another subject was closed"
        );

        apps[2]
            .revocations
            .revoke_session("session-of-bob")
            .await
            .expect("published");
        let case = format!("{kind:?}: bob's session, revoked on instance 2");
        assert_close(&case, &closed_within(&mut bob, &case).await, 4003);
        for (i, app) in apps.iter().enumerate() {
            let revocations = &app.revocations;
            eventually(
                &format!("{kind:?}: instance {i} holds no connection"),
                move || async move { revocations.is_empty() },
            )
            .await;
        }
    }
}

/// The close frame of a connection that must be closed within 5 s.
async fn closed_within(ws: &mut Ws, case: &str) -> (u16, String, Vec<String>) {
    tokio::time::timeout(Duration::from_secs(5), close_of(ws))
        .await
        .unwrap_or_else(|_| panic!("{case}: still open 5 s after the revocation"))
}

/// "Many idle connections that never authenticate are bounded by the
/// deadline (and a cap on pending connections)."
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_unauthenticated_connections_are_bounded_by_the_deadline_and_a_pending_cap() {
    join_all(KINDS.map(idle_rules)).await;
}

async fn idle_rules(kind: Kind) {
    const CAP: usize = 32;
    let deadline = Duration::from_secs(3);
    let first = FirstMessageAuth::new(boxed_auth())
        .timeout(deadline)
        .max_pending(CAP.try_into().unwrap());
    let app = App::new(Revocations::new()).with_first(first);
    let addr = spawn(kind, app.clone()).await;
    let started = Instant::now();
    let mut idle = join_all((0..CAP).map(|_| open(addr, "/first", &[]))).await;
    let first = &app.first;
    eventually("every idle connection pending", move || async move {
        first.pending() == CAP
    })
    .await;
    // One more is turned away at once (1013, try again later).
    let turned_away = close_after(addr, "/first", &[], None).await;
    assert_close(
        &format!("{kind:?}: over the pending cap"),
        &turned_away,
        1013,
    );
    assert_eq!(app.first.pending(), CAP, "{kind:?}");

    let closes = join_all(idle.iter_mut().map(close_of)).await;
    for (i, close) in closes.iter().enumerate() {
        assert_close(&format!("{kind:?}: idle connection {i}"), close, 4008);
    }
    assert!(
        started.elapsed() >= deadline,
        "{kind:?}: closed before the deadline"
    );
    // The capacity is back.
    assert_recovered(&app, addr, kind).await;
}

/// "Close reasons are generic UTF-8, at most 123 bytes; codes 1005, 1006,
/// 1015 are never sent."
///
/// Every way the crate closes a socket, on both adapters: each ends with a
/// close frame (a connection dropped without one is what 1006 reports; a
/// frame without a code is 1005) whose code may be sent and whose reason
/// (valid UTF-8, or the client would have failed) is short and says
/// nothing of the credential or of the authenticator's reason. The
/// configurable codes refuse the reserved ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_reasons_are_generic_utf8_within_123_bytes_and_1005_1006_1015_are_never_sent() {
    join_all(KINDS.map(every_close)).await;

    type Setter = fn(CloseCodes, u16) -> Result<CloseCodes, ConfigError>;
    let setters: [(&str, Setter); 9] = [
        ("unauthorized", CloseCodes::unauthorized),
        ("malformed", CloseCodes::malformed),
        ("expired", CloseCodes::expired),
        ("forbidden", CloseCodes::forbidden),
        ("revoked", CloseCodes::revoked),
        ("timeout", CloseCodes::timeout),
        ("too_big", CloseCodes::too_big),
        ("too_many", CloseCodes::too_many),
        ("unavailable", CloseCodes::unavailable),
    ];
    for (name, set) in setters {
        for code in [1005, 1006, 1015] {
            assert!(
                set(CloseCodes::default(), code).is_err(),
                "CloseCodes::{name}({code}) was accepted"
            );
        }
    }
    let long = "é".repeat(100);
    let cut = close_reason(&long);
    assert!(
        cut.len() <= 123 && long.starts_with(cut),
        "close_reason cut {} bytes",
        cut.len()
    );
}

async fn every_close(kind: Kind) {
    let app = App::new(Revocations::new());
    let addr = spawn(kind, app.clone()).await;
    let text = |t: &str| Some(Message::text(t.to_owned()));
    let auth = |token: &str| text(&format!(r#"{{"type":"auth","token":"{token}"}}"#));
    let big = "a".repeat(17 * 1024);
    let first: Vec<(&str, Option<Message>, u16)> = vec![
        ("early message", text("early-secret"), 4001),
        ("malformed auth message", text(r#"{"type":"auth"}"#), 4001),
        ("invalid credential", auth("invalid"), 4001),
        ("forbidden credential", auth("forbidden"), 4003),
        ("verifier down", auth("down"), 1013),
        ("auth message too big", auth(&big), 1009),
        ("auth timeout", None, 4008),
    ];
    let firsts = join_all(
        first
            .iter()
            .map(|(_, message, _)| close_after(addr, "/first", &[], message.clone())),
    )
    .await;
    for ((case, _, code), close) in first.iter().zip(&firsts) {
        assert_close(&format!("{kind:?}: {case}"), close, *code);
    }
    // graphql-ws messages and codes, one connection at a time (its pending
    // cap is 1): a refused token is 4403 (the client retries, and is refused
    // the same way every time), a malformed connection_init 4400.
    let init = |token: &str| {
        text(&format!(
            r#"{{"type":"connection_init","payload":{{"token":"{token}"}}}}"#
        ))
    };
    for (case, message, code) in [
        ("malformed", text(r#"{"type":"connection_init"}"#), 4400),
        ("not connection_init", auth("alice.60000"), 4403),
        ("invalid", init("invalid"), 4403),
        ("forbidden", init("forbidden"), 4403),
    ] {
        let close = close_after(addr, "/first-gql", &[], message).await;
        assert_close(&format!("{kind:?}: graphql-ws: {case}"), &close, code);
    }
    // graphql-ws: the pending cap and the timeout.
    let mut waiting = open(addr, "/first-gql", &[]).await;
    let first_gql = &app.first_gql;
    eventually("one graphql-ws connection pending", move || async move {
        first_gql.pending() == 1
    })
    .await;
    assert_close(
        &format!("{kind:?}: graphql-ws: too many"),
        &close_after(addr, "/first-gql", &[], None).await,
        4429,
    );
    assert_close(
        &format!("{kind:?}: graphql-ws: timeout"),
        &close_of(&mut waiting).await,
        4408,
    );

    let bearer = |token: &'static str| [("authorization", token)];
    let guarded = [
        ("expired", bearer("Bearer alice.300"), None, 4002),
        (
            "refresh for another subject",
            bearer("Bearer alice.60000"),
            text(r#"{"type":"refresh","token":"mallory.60000"}"#),
            4003,
        ),
        (
            "invalid refresh",
            bearer("Bearer alice.60000"),
            text(r#"{"type":"refresh","token":"invalid"}"#),
            4001,
        ),
        (
            "forbidden refresh",
            bearer("Bearer alice.60000"),
            text(r#"{"type":"refresh","token":"forbidden"}"#),
            4003,
        ),
    ];
    let closes = join_all(
        guarded
            .iter()
            .map(|(_, headers, message, _)| close_after(addr, "/ws", headers, message.clone())),
    )
    .await;
    for ((case, _, _, code), close) in guarded.iter().zip(&closes) {
        assert_close(&format!("{kind:?}: {case}"), close, *code);
    }
    let mut revoked = open(addr, "/ws", &[("authorization", "Bearer alice.60000")]).await;
    send(&mut revoked, "registered?").await;
    next_text(&mut revoked).await;
    app.revocations
        .revoke_subject("alice")
        .await
        .expect("revoked");
    assert_close(
        &format!("{kind:?}: revoked"),
        &close_of(&mut revoked).await,
        4003,
    );
}
