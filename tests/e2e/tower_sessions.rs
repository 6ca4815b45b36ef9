//! The tower-sessions adapter end to end: an axum app manages sessions with
//! tower-sessions 0.14 (its `MemoryStore`, and `tower-sessions-redis-store`
//! on a real `redis-server`), with plain, signed and private cookies; its
//! WebSocket route authenticates upgrades from the same sessions.

use crate::common::redis;
use crate::session_common;

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use redis::{Redis, RedisServer};
use serde_json::Value;
use session_common::*;
use tower_sessions::cookie::{Key, time};
use tower_sessions::{Expiry, MemoryStore, Session, SessionManagerLayer};
use tower_sessions_redis_store::RedisStore;
use tower_ws_auth::{
    AuthError, AuthMethod, Identity, OriginPolicy, WsAuthLayer,
    session::{SessionAuthenticator, SessionCookie, TowerSessionData, TowerSessionStore},
};

#[derive(Debug, Clone, Copy)]
enum Cookies {
    Plain,
    Signed,
    Private,
}

/// Logs the user named in the body in: a fresh session id, the user id and
/// roles in the session.
async fn login(session: Session, name: String) -> StatusCode {
    let roles = if name == "alice" {
        vec!["admin", "chat"]
    } else {
        vec!["chat"]
    };
    let saved = async {
        session.cycle_id().await?;
        session.insert("user_id", &name).await?;
        session.insert("roles", roles).await
    };
    match saved.await {
        Ok(()) => StatusCode::NO_CONTENT,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// An anonymous visit: a session with a preference, without a user.
async fn visit(session: Session) -> StatusCode {
    match session.insert("theme", "dark").await {
        Ok(()) => StatusCode::NO_CONTENT,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

async fn logout(session: Session) -> StatusCode {
    match session.flush().await {
        Ok(()) => StatusCode::NO_CONTENT,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// Sends `subject|scopes|seconds left`.
async fn ws_handler(ws: WebSocketUpgrade, identity: Identity) -> Response {
    ws.on_upgrade(move |mut socket| async move {
        let left = identity
            .time_left(SystemTime::now())
            .map_or(-1, |d| d.as_secs() as i64);
        let report = format!(
            "{}|{}|{}",
            identity.subject(),
            identity.scopes().collect::<Vec<_>>().join(","),
            left
        );
        let _ = socket.send(Message::Text(report.into())).await;
    })
}

/// The identity of a tower-sessions session: `user_id` is the subject,
/// `roles` the scopes; a session nobody logged into is refused.
fn identity(data: &TowerSessionData) -> Result<tower_ws_auth::IdentityBuilder, AuthError> {
    let user = data
        .get("user_id")
        .and_then(Value::as_str)
        .ok_or_else(|| AuthError::invalid("session without a logged-in user"))?;
    let roles = data
        .get("roles")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned);
    Ok(Identity::builder(user, AuthMethod::Session).scopes(roles))
}

struct App<S> {
    addr: SocketAddr,
    store: Counting<TowerSessionStore<S>>,
}

async fn app<S>(store: S, cookies: Cookies, inactivity: time::Duration) -> App<S>
where
    S: tower_sessions::SessionStore + Clone,
{
    let key = Key::generate();
    let cookie = match cookies {
        Cookies::Plain => SessionCookie::new("id").unwrap(),
        Cookies::Signed => SessionCookie::new("id").unwrap().signed(key.clone()),
        Cookies::Private => SessionCookie::new("id").unwrap().private(key.clone()),
    };
    let counted = Counting::new(TowerSessionStore::new(store.clone()));
    let auth = SessionAuthenticator::new(counted.clone(), cookie, identity);
    let ws_auth = WsAuthLayer::new(auth)
        .cookie("id", OriginPolicy::from_origins([APP_ORIGIN]).unwrap())
        .unwrap();

    let routes = Router::new()
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/visit", post(visit))
        .route("/ws", get(ws_handler).layer(ws_auth));
    let sessions = SessionManagerLayer::new(store)
        .with_secure(false)
        .with_expiry(Expiry::OnInactivity(inactivity));
    let router = match cookies {
        Cookies::Plain => routes.layer(sessions),
        Cookies::Signed => routes.layer(sessions.with_signed(key)),
        Cookies::Private => routes.layer(sessions.with_private(key)),
    };
    App {
        addr: serve(router).await,
        store: counted,
    }
}

async fn log_in(addr: SocketAddr, name: &str) -> String {
    let reply = http_post(addr, "/login", name, None).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    let set_cookie = reply.set_cookie();
    assert!(set_cookie.starts_with("id="), "{set_cookie}");
    reply.cookie_pair()
}

/// Login, upgrade, Origin, tampering and logout, for one kind of cookie.
async fn full_flow<S: tower_sessions::SessionStore + Clone>(app: App<S>, cookies: Cookies) {
    let App { addr, store } = app;
    let cookie = log_in(addr, "alice").await;
    let report = connect_and_read(addr, &cookie).await;
    let fields: Vec<&str> = report.split('|').collect();
    assert_eq!(fields[..2], ["alice", "admin,chat"], "{cookies:?}");
    let left: i64 = fields[2].parse().unwrap();
    assert!((590..=600).contains(&left), "{cookies:?}: {left}");
    assert_eq!(store.loads(), 1);

    let bob = log_in(addr, "bob").await;
    assert!(connect_and_read(addr, &bob).await.starts_with("bob|chat|"));
    assert_eq!(store.loads(), 2);

    // Origin first: a foreign page or no Origin never reaches the store.
    assert_origin_refused(&refused(addr, Some(&cookie), Some(EVIL_ORIGIN)).await);
    assert_origin_refused(&refused(addr, Some(&cookie), None).await);
    assert_eq!(store.loads(), 2);

    // Tampering: signed and private cookies fail before the store; a plain
    // cookie is only an unknown id.
    for position in [0, 10] {
        let tampered = tamper(&cookie, position);
        assert_invalid_token(&refused(addr, Some(&tampered), Some(APP_ORIGIN)).await);
    }
    let expected = match cookies {
        Cookies::Plain => 4,
        Cookies::Signed | Cookies::Private => 2,
    };
    assert_eq!(store.loads(), expected, "{cookies:?}");

    // Logout deletes the session and clears the cookie: the old one is refused.
    let out = http_post(addr, "/logout", "", Some(&cookie)).await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    assert!(
        out.set_cookie().contains("Max-Age=0"),
        "{}",
        out.set_cookie()
    );
    assert_invalid_token(&refused(addr, Some(&cookie), Some(APP_ORIGIN)).await);
    assert!(connect_and_read(addr, &bob).await.starts_with("bob|"));
}

fn ten_minutes() -> time::Duration {
    time::Duration::minutes(10)
}

#[tokio::test]
async fn memory_store_with_plain_signed_and_private_cookies() {
    for cookies in [Cookies::Plain, Cookies::Signed, Cookies::Private] {
        let app = app(MemoryStore::default(), cookies, ten_minutes()).await;
        full_flow(app, cookies).await;
    }
}

#[tokio::test]
async fn a_session_without_a_user_is_refused() {
    let App { addr, store } = app(MemoryStore::default(), Cookies::Signed, ten_minutes()).await;
    // An anonymous visitor has a session (a valid, signed cookie and a
    // record in the store) but nobody logged into it.
    let visit = http_post(addr, "/visit", "", None).await;
    assert_eq!(visit.status, StatusCode::NO_CONTENT);
    let cookie = visit.cookie_pair();
    assert_invalid_token(&refused(addr, Some(&cookie), Some(APP_ORIGIN)).await);
    assert_eq!(store.loads(), 1, "the record was loaded, then refused");
}

#[tokio::test]
async fn memory_store_expired_session_is_refused() {
    let App { addr, store } = app(
        MemoryStore::default(),
        Cookies::Signed,
        time::Duration::seconds(1),
    )
    .await;
    let cookie = log_in(addr, "alice").await;
    assert_eq!(connect_and_read(addr, &cookie).await, "alice|admin,chat|0");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_invalid_token(&refused(addr, Some(&cookie), Some(APP_ORIGIN)).await);
    assert_eq!(store.loads(), 2);
}

#[tokio::test]
async fn redis_store_full_flow() {
    let Some(redis) = Redis::get("redis_store_full_flow") else {
        return;
    };
    let client = fred_client(&redis.url()).await;
    let app = app(RedisStore::new(client), Cookies::Signed, ten_minutes()).await;
    full_flow(app, Cookies::Signed).await;
}

#[tokio::test]
async fn redis_store_private_cookies() {
    let Some(redis) = Redis::get("redis_store_private_cookies") else {
        return;
    };
    let client = fred_client(&redis.url()).await;
    let App { addr, store } = app(RedisStore::new(client), Cookies::Private, ten_minutes()).await;
    let cookie = log_in(addr, "carol").await;
    assert!(
        connect_and_read(addr, &cookie)
            .await
            .starts_with("carol|chat|")
    );
    assert_invalid_token(&refused(addr, Some(&tamper(&cookie, 4)), Some(APP_ORIGIN)).await);
    assert_eq!(store.loads(), 1);
}

#[tokio::test]
async fn redis_store_expired_session_is_refused() {
    let Some(redis) = Redis::get("redis_store_expired_session_is_refused") else {
        return;
    };
    let client = fred_client(&redis.url()).await;
    let App { addr, .. } = app(
        RedisStore::new(client),
        Cookies::Signed,
        time::Duration::seconds(2),
    )
    .await;
    let cookie = log_in(addr, "alice").await;
    assert!(connect_and_read(addr, &cookie).await.starts_with("alice|"));
    // The store sets a whole-second EXAT at or before the record's expiry
    // (hence two seconds: the key lives at least one); past the expiry,
    // Redis has dropped the key and the authenticator refuses the record.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_invalid_token(&refused(addr, Some(&cookie), Some(APP_ORIGIN)).await);
}

#[tokio::test]
async fn redis_outage_is_503_then_recovers() {
    let Some(mut redis) = RedisServer::start("tower_sessions redis_outage_is_503_then_recovers")
    else {
        return;
    };
    let client = fred_client(&redis.url()).await;
    let App { addr, store } = app(RedisStore::new(client), Cookies::Signed, ten_minutes()).await;
    let cookie = log_in(addr, "alice").await;
    assert!(connect_and_read(addr, &cookie).await.starts_with("alice|"));

    redis.stop();
    for _ in 0..3 {
        assert_unavailable(&refused(addr, Some(&cookie), Some(APP_ORIGIN)).await);
    }
    let loads = store.loads();
    assert_invalid_token(&refused(addr, Some(&tamper(&cookie, 0)), Some(APP_ORIGIN)).await);
    assert_eq!(
        store.loads(),
        loads,
        "a forged cookie never waits for the store"
    );

    redis.restart();
    // Nothing was persisted: the old session is gone (401 once Redis
    // answers); a new login works through the same client.
    eventually("the store answers again", || {
        let cookie = cookie.clone();
        async move {
            let status = refused(addr, Some(&cookie), Some(APP_ORIGIN))
                .await
                .status();
            status == StatusCode::UNAUTHORIZED
        }
    })
    .await;
    let fresh = log_in(addr, "alice").await;
    assert!(
        connect_and_read(addr, &fresh)
            .await
            .starts_with("alice|admin,chat|")
    );
}
