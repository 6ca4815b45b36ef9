//! Revocation at the handshake (`Revocations::revocable`): a revoked
//! credential is refused at the next upgrade on every instance sharing a
//! real Redis, including one that was cut off from Redis when the
//! revocation was made, and one that starts afterwards; a cached identity
//! is refused once revoked; the per-subject cap of live sockets, on one
//! instance and across two sharing Redis, and the leases of an instance that
//! died lapsing; the "close the oldest" policy (`OverCap::CloseOldest`) on
//! one instance and across two. Each against an axum server and a hyper +
//! tokio-tungstenite server, with a real tokio-tungstenite client.

use crate::common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::redis::{Redis, RedisServer};
use common::sockets::*;
use common::{after_second, next_text, unix_now};
use http::StatusCode;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tower_ws_auth::jwt::JwtAuthenticator;
use tower_ws_auth::socket::{OverCap, RedisBus, Revocations};
use tower_ws_auth::{Authenticator, BoxAuthenticator, authenticate_fn};

const SECRET: &str = "revocation-handshake-test-secret-0123456789";

/// An HS256 JWT for `subject` issued at the Unix second `iat` (ten minutes
/// valid), with `jti` if given.
fn jwt(subject: &str, iat: u64, jti: Option<&str>) -> String {
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    let mut claims = serde_json::json!({ "sub": subject, "iat": iat, "exp": iat + 600 });
    if let Some(jti) = jti {
        claims["jti"] = jti.into();
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn verifier() -> JwtAuthenticator {
    JwtAuthenticator::hs256(SECRET).unwrap()
}

/// A server whose handshakes go through `handshake`, guarded by
/// `revocations` after the upgrade.
async fn instance(
    kind: Kind,
    revocations: &Revocations,
    handshake: BoxAuthenticator,
) -> SocketAddr {
    let app = App::new(revocations.clone()).with_handshake(handshake);
    spawn(kind, app).await
}

async fn revocable_instance(kind: Kind, revocations: &Revocations) -> SocketAddr {
    instance(kind, revocations, revocations.revocable(verifier()).boxed()).await
}

async fn bus(url: &str, channel: &str) -> Revocations {
    Revocations::with_bus(RedisBus::connect(url).await.unwrap().channel(channel))
        .await
        .unwrap()
}

fn bearer(token: &str) -> [(&'static str, String); 1] {
    [("authorization", format!("Bearer {token}"))]
}

/// The answer to an upgrade with `token`: the status (101 or the refusal)
/// and, for a refusal, its headers.
async fn upgrade(addr: SocketAddr, token: &str) -> (StatusCode, http::HeaderMap) {
    let [(name, value)] = bearer(token);
    match common::connect(addr, "/ws-plain", &[(name, &value)]).await {
        Ok((_ws, response)) => (response.status(), response.headers().clone()),
        Err(refused) => (refused.status, refused.headers),
    }
}

async fn open_with(addr: SocketAddr, token: &str) -> common::Ws {
    let [(name, value)] = bearer(token);
    let mut ws = open(addr, "/ws-plain", &[(name, &value)]).await;
    send(&mut ws, "ready").await;
    assert_eq!(next_text(&mut ws).await, "ready");
    ws
}

fn assert_invalid_token(status: StatusCode, headers: &http::HeaderMap, case: &str) {
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{case}");
    assert_eq!(
        headers[http::header::WWW_AUTHENTICATE],
        r#"Bearer error="invalid_token""#,
        "{case}"
    );
}

/// Revoke on A, then: the same JWT is refused on B (and on an instance C
/// that starts afterwards: it loads the active revocations), its live
/// socket on B closes with 4003, and a JWT issued after the revoked second
/// is accepted everywhere.
async fn a_revocation_on_one_instance_is_refused_at_the_handshake_of_another(kind: Kind) {
    let Some(redis) = Redis::get("a_revocation_on_one_instance_is_refused_on_another") else {
        return;
    };
    let channel = format!("handshake-revocations:{}:{kind:?}", std::process::id());
    let a = bus(&redis.url(), &channel).await;
    let b = bus(&redis.url(), &channel).await;
    let a_addr = revocable_instance(kind, &a).await;
    let b_addr = revocable_instance(kind, &b).await;
    let old = jwt("alice", unix_now() - 5, None);
    let bob = jwt("bob", unix_now() - 5, None);
    let mut live_on_b = open_with(b_addr, &old).await;

    assert_eq!(a.revoke_subject("alice").await.unwrap(), 0);
    let revoked_second = unix_now();
    assert_eq!(close_of(&mut live_on_b).await.0, 4003);
    for (addr, case) in [(a_addr, "on A"), (b_addr, "on B")] {
        let (status, headers) = upgrade(addr, &old).await;
        assert_invalid_token(status, &headers, case);
        assert_eq!(upgrade(addr, &bob).await.0, StatusCode::SWITCHING_PROTOCOLS);
    }
    // An instance that starts now catches up from Redis.
    let c = bus(&redis.url(), &channel).await;
    let c_addr = revocable_instance(kind, &c).await;
    let (status, headers) = upgrade(c_addr, &old).await;
    assert_invalid_token(status, &headers, "on C, started after the revocation");

    after_second(revoked_second).await;
    let fresh = jwt("alice", unix_now(), None);
    for addr in [a_addr, b_addr, c_addr] {
        let mut ws = open_with(addr, &fresh).await;
        send(&mut ws, "fresh").await;
        assert_eq!(next_text(&mut ws).await, "fresh");
    }
}

/// A TCP relay in front of Redis that can be cut (relayed connections
/// dropped, new ones closed at once) and restored: one instance cut off
/// while the others still reach Redis.
struct Relay {
    addr: SocketAddr,
    cut: watch::Sender<bool>,
}

impl Relay {
    async fn start(upstream: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut, watching) = watch::channel(false);
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if *watching.borrow() {
                    continue; // dropped: closed at once
                }
                let mut watching = watching.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = watching.wait_for(|cut| *cut) => {}
                    }
                });
            }
        });
        Self { addr, cut }
    }

    fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }
}

/// B is cut off from Redis: its upgrades are refused with 503 (fail
/// closed) while its live sockets stay open; A revokes alice meanwhile;
/// once B is back it has caught up: alice's JWT is refused there, her live
/// socket closes with 4003, and bob is accepted again.
async fn a_revocation_made_while_an_instance_was_cut_off_holds_when_it_is_back(kind: Kind) {
    let Some(redis) = RedisServer::start("a_revocation_made_while_an_instance_was_cut_off") else {
        return;
    };
    let relay = Relay::start(redis.port).await;
    let channel = "cut-off";
    let a = bus(&redis.url(), channel).await;
    let b = bus(&relay.url(), channel).await;
    let b_addr = revocable_instance(kind, &b).await;
    let old = jwt("alice", unix_now() - 5, None);
    let bob = jwt("bob", unix_now() - 5, None);
    let mut alice_on_b = open_with(b_addr, &old).await;
    let mut bob_on_b = open_with(b_addr, &bob).await;

    relay.cut.send_replace(true);
    let deadline = Instant::now() + Duration::from_secs(10);
    let headers = loop {
        let (status, headers) = upgrade(b_addr, &bob).await;
        if status == StatusCode::SERVICE_UNAVAILABLE {
            break headers;
        }
        assert_eq!(status, StatusCode::SWITCHING_PROTOCOLS);
        assert!(Instant::now() < deadline, "B never noticed it was cut off");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(headers.contains_key(http::header::RETRY_AFTER));
    assert!(!b.is_synced());
    send(&mut bob_on_b, "still open").await;
    assert_eq!(next_text(&mut bob_on_b).await, "still open");

    a.revoke_subject("alice").await.unwrap();
    relay.cut.send_replace(false);
    let deadline = Instant::now() + Duration::from_secs(15);
    while upgrade(b_addr, &bob).await.0 != StatusCode::SWITCHING_PROTOCOLS {
        assert!(Instant::now() < deadline, "B never came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(b.is_synced());
    let (status, headers) = upgrade(b_addr, &old).await;
    assert_invalid_token(status, &headers, "on B, back from the cut");
    assert_eq!(close_of(&mut alice_on_b).await.0, 4003);
    send(&mut bob_on_b, "bob is fine").await;
    assert_eq!(next_text(&mut bob_on_b).await, "bob is fine");
}

/// `revocable` outside `Cached`: a cached identity is served without
/// asking the verifier again, and once its token (`jti`) is revoked it is
/// refused, still without asking the verifier (the cache answered, the
/// revocation list refused it); another token of the subject is accepted.
async fn a_cached_identity_is_refused_once_revoked(kind: Kind) {
    let revocations = Revocations::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let counting = authenticate_fn(move |credential, request| {
        counted.fetch_add(1, Ordering::SeqCst);
        let credential = credential.clone();
        let request = request.clone();
        async move { verifier().authenticate(&credential, &request).await }
    });
    let handshake = revocations
        .revocable(counting.cached(Duration::from_secs(60), 100))
        .boxed();
    let addr = instance(kind, &revocations, handshake).await;
    let one = jwt("alice", unix_now() - 5, Some("token-one"));
    let two = jwt("alice", unix_now() - 5, Some("token-two"));
    for _ in 0..2 {
        assert_eq!(upgrade(addr, &one).await.0, StatusCode::SWITCHING_PROTOCOLS);
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the second one was a cache hit"
    );
    revocations.revoke_token("token-one").await.unwrap();
    let (status, headers) = upgrade(addr, &one).await;
    assert_invalid_token(status, &headers, "a cached, revoked token");
    assert_eq!(calls.load(Ordering::SeqCst), 1, "refused from the cache");
    assert_eq!(upgrade(addr, &two).await.0, StatusCode::SWITCHING_PROTOCOLS);
}

/// `max_connections_per_subject(2)`: alice's third upgrade is 429 with
/// `Retry-After: 5` (the first two sockets stay open), bob is not
/// affected, and once one of alice's sockets has ended (a client close,
/// answered) her next upgrade is accepted.
async fn live_sockets_are_capped_per_subject(kind: Kind) {
    let revocations = Revocations::new().max_connections_per_subject(2.try_into().unwrap());
    let addr = revocable_instance(kind, &revocations).await;
    let alice = jwt("alice", unix_now() - 5, None);
    let mut first = open_with(addr, &alice).await;
    let mut second = open_with(addr, &alice).await;
    let (status, headers) = upgrade(addr, &alice).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers[http::header::RETRY_AFTER], "5");
    drop(open_with(addr, &jwt("bob", unix_now() - 5, None)).await);
    send(&mut second, "still open").await;
    assert_eq!(next_text(&mut second).await, "still open");

    first.close(None).await.unwrap();
    while let Some(Ok(_)) = futures_util::StreamExt::next(&mut first).await {}
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match upgrade(addr, &alice).await.0 {
            StatusCode::SWITCHING_PROTOCOLS => break,
            status => assert_eq!(status, StatusCode::TOO_MANY_REQUESTS),
        }
        assert!(Instant::now() < deadline, "the slot never freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Until `addr` accepts an upgrade with `token` (refused with 429 until
/// then), within 10 s.
async fn until_accepted(addr: SocketAddr, token: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match upgrade(addr, token).await.0 {
            StatusCode::SWITCHING_PROTOCOLS => return,
            status => assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{what}"),
        }
        assert!(Instant::now() < deadline, "{what}: never accepted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// With `RedisBus`, a cap of 2 holds across two instances: one socket of
/// alice on A and one on B, and her next upgrade is 429 on both; when her
/// socket on B ends, A accepts her again.
async fn the_cap_holds_across_instances(kind: Kind) {
    let Some(redis) = Redis::get("the_cap_holds_across_instances") else {
        return;
    };
    let channel = format!("cap:{}:{kind:?}", std::process::id());
    let cap = 2.try_into().unwrap();
    let a = bus(&redis.url(), &channel)
        .await
        .max_connections_per_subject(cap);
    let b = bus(&redis.url(), &channel)
        .await
        .max_connections_per_subject(cap);
    let a_addr = revocable_instance(kind, &a).await;
    let b_addr = revocable_instance(kind, &b).await;
    let alice = jwt("alice", unix_now() - 5, None);
    let _on_a = open_with(a_addr, &alice).await;
    let mut on_b = open_with(b_addr, &alice).await;
    for (addr, case) in [(a_addr, "A"), (b_addr, "B")] {
        let (status, headers) = upgrade(addr, &alice).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{case}");
        assert_eq!(headers[http::header::RETRY_AFTER], "5");
    }
    drop(open_with(b_addr, &jwt("bob", unix_now() - 5, None)).await);
    on_b.close(None).await.unwrap();
    while let Some(Ok(_)) = futures_util::StreamExt::next(&mut on_b).await {}
    until_accepted(a_addr, &alice, "a slot freed on B").await;
}

/// An instance that dies (here: cut off from Redis for good, so it can
/// neither renew nor give back its leases) frees its slots once its leases
/// lapse (`lease_ttl`, 3 s here, renewed every second: slack for a loaded
/// machine): the other instance accepts the subject
/// again.
async fn a_dead_instance_releases_its_leases(kind: Kind) {
    let Some(redis) = RedisServer::start("a_dead_instance_releases_its_leases") else {
        return;
    };
    let relay = Relay::start(redis.port).await;
    let cap = 2.try_into().unwrap();
    let a = bus(&relay.url(), "dead")
        .await
        .max_connections_per_subject(cap)
        .lease_ttl(Duration::from_secs(3));
    let b = bus(&redis.url(), "dead")
        .await
        .max_connections_per_subject(cap);
    let a_addr = revocable_instance(kind, &a).await;
    let b_addr = revocable_instance(kind, &b).await;
    let alice = jwt("alice", unix_now() - 5, None);
    let _held = [
        open_with(a_addr, &alice).await,
        open_with(a_addr, &alice).await,
    ];
    // Longer than the lease: A renews them meanwhile.
    tokio::time::sleep(Duration::from_millis(4000)).await;
    assert_eq!(
        upgrade(b_addr, &alice).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    relay.cut.send_replace(true);
    until_accepted(b_addr, &alice, "A's leases lapsed").await;
}

/// Echoes a text on `ws` (it is still open and served).
async fn still_open(ws: &mut common::Ws, what: &str) {
    send(ws, what).await;
    assert_eq!(next_text(ws).await, what);
}

/// The Close the peer observes on `ws`: `code`, then a clean end.
async fn closed_with(ws: &mut common::Ws, code: u16, what: &str) {
    let (got, reason, _) = close_of(ws).await;
    assert_eq!((got, reason.as_str()), (code, "replaced"), "{what}");
    common::assert_clean_end(ws, what).await;
}

/// `max_connections_per_subject(2)` with `OverCap::CloseOldest`: alice's
/// third upgrade is accepted at once, her first socket closes with 4009
/// (cleanly) and her second stays open; a fourth closes the second, not
/// the first again (a replaced socket no longer counts); bob is untouched.
async fn the_oldest_socket_is_closed_at_the_cap(kind: Kind) {
    let revocations = Revocations::new()
        .max_connections_per_subject(2.try_into().unwrap())
        .over_cap(OverCap::CloseOldest);
    let addr = revocable_instance(kind, &revocations).await;
    let alice = jwt("alice", unix_now() - 5, None);
    let mut bob = open_with(addr, &jwt("bob", unix_now() - 5, None)).await;
    let mut first = open_with(addr, &alice).await;
    let mut second = open_with(addr, &alice).await;
    let mut third = open_with(addr, &alice).await;
    closed_with(&mut first, 4009, "the first socket").await;
    still_open(&mut second, "second").await;
    still_open(&mut third, "third").await;
    let mut fourth = open_with(addr, &alice).await;
    closed_with(&mut second, 4009, "the second socket").await;
    still_open(&mut third, "third").await;
    still_open(&mut fourth, "fourth").await;
    still_open(&mut bob, "bob").await;
}

/// `OverCap::CloseOldest` across two instances sharing Redis (cap 2): alice
/// has her oldest socket on A and one on B; a new one on B is accepted and
/// the one on A closes with 4009; then a new one on A closes the older of
/// B's.
async fn the_oldest_socket_is_closed_across_instances(kind: Kind) {
    let Some(redis) = Redis::get("the_oldest_socket_is_closed_across_instances") else {
        return;
    };
    let channel = format!("oldest:{}:{kind:?}", std::process::id());
    let cap = 2.try_into().unwrap();
    let a = bus(&redis.url(), &channel)
        .await
        .max_connections_per_subject(cap)
        .over_cap(OverCap::CloseOldest);
    let b = bus(&redis.url(), &channel)
        .await
        .max_connections_per_subject(cap)
        .over_cap(OverCap::CloseOldest);
    let a_addr = revocable_instance(kind, &a).await;
    let b_addr = revocable_instance(kind, &b).await;
    let alice = jwt("alice", unix_now() - 5, None);
    let mut on_a = open_with(a_addr, &alice).await;
    // Lease ids order by the millisecond they were taken.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let mut on_b = open_with(b_addr, &alice).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let mut newer_on_b = open_with(b_addr, &alice).await;
    closed_with(&mut on_a, 4009, "the oldest socket, on A").await;
    still_open(&mut on_b, "on B").await;
    still_open(&mut newer_on_b, "newer on B").await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let mut again_on_a = open_with(a_addr, &alice).await;
    closed_with(&mut on_b, 4009, "the oldest socket, now on B").await;
    still_open(&mut newer_on_b, "newer on B").await;
    still_open(&mut again_on_a, "again on A").await;
}

for_both_adapters!(
    a_revocation_on_one_instance_is_refused_at_the_handshake_of_another,
    a_revocation_made_while_an_instance_was_cut_off_holds_when_it_is_back,
    a_cached_identity_is_refused_once_revoked,
    live_sockets_are_capped_per_subject,
    the_cap_holds_across_instances,
    a_dead_instance_releases_its_leases,
    the_oldest_socket_is_closed_at_the_cap,
    the_oldest_socket_is_closed_across_instances,
);
