//! Cookie sessions end to end: log in over HTTP (a real axum app on a
//! loopback port), then open a WebSocket with the cookie the login route
//! issued, through `SessionAuthenticator` over the in-memory store and over
//! a Redis-backed store (a real `redis-server`, stopped mid-test).

#[path = "common/redis.rs"]
mod redis;
mod session_common;

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header::SET_COOKIE};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use fred::prelude::{Client, Expiration, KeysInterface};
use redis::{Redis, RedisServer};
use session_common::*;
use tower_ws_auth::cookie::Key;
use tower_ws_auth::{
    AuthError, AuthMethod, Identity, MemorySessionStore, MissingOrigin, OriginPolicy,
    SessionAuthenticator, SessionCookie, SessionId, SessionRecord, SessionStore, WsAuthLayer,
};

#[derive(Debug, Clone)]
struct User {
    name: String,
    roles: Vec<String>,
}

fn user(name: &str) -> User {
    let role = if name == "alice" { "admin" } else { "member" };
    User {
        name: name.to_owned(),
        roles: vec![role.to_owned(), "chat".to_owned()],
    }
}

/// What the login and logout routes need beyond loading.
trait Backend: SessionStore<Data = User> + Clone {
    fn create(&self, user: User) -> impl Future<Output = Result<SessionId, AuthError>> + Send;
    fn delete(&self, id: &SessionId) -> impl Future<Output = Result<(), AuthError>> + Send;
}

impl Backend for Counting<MemorySessionStore<User>> {
    async fn create(&self, user: User) -> Result<SessionId, AuthError> {
        self.inner.create(user)
    }

    async fn delete(&self, id: &SessionId) -> Result<(), AuthError> {
        self.inner.delete(id);
        Ok(())
    }
}

/// A Redis-backed session store, the way an application would write one:
/// sessions live under the digest of their id, with a Redis expiry.
#[derive(Clone)]
struct RedisSessions {
    client: Client,
    ttl: Duration,
}

impl RedisSessions {
    fn key(id: &SessionId) -> String {
        format!("session:{}", id.digest())
    }
}

impl SessionStore for RedisSessions {
    type Data = User;

    async fn load(&self, id: &SessionId) -> Result<Option<SessionRecord<User>>, AuthError> {
        let value: Option<String> = self
            .client
            .get(Self::key(id))
            .await
            .map_err(|e| AuthError::backend("redis GET failed", e))?;
        let Some(value) = value else { return Ok(None) };
        let json: serde_json::Value = serde_json::from_str(&value)
            .map_err(|e| AuthError::backend("undecodable session", e))?;
        let roles = json["roles"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r.as_str().map(str::to_owned))
            .collect();
        let user = User {
            name: json["name"].as_str().unwrap_or_default().to_owned(),
            roles,
        };
        let expires_at = json["expires_ms"]
            .as_u64()
            .map(|ms| UNIX_EPOCH + Duration::from_millis(ms));
        Ok(Some(SessionRecord::new(user, expires_at)))
    }
}

impl Backend for Counting<RedisSessions> {
    async fn create(&self, user: User) -> Result<SessionId, AuthError> {
        let id = SessionId::generate()?;
        let expires_ms = (SystemTime::now() + self.inner.ttl)
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let value =
            serde_json::json!({ "name": user.name, "roles": user.roles, "expires_ms": expires_ms });
        let _: () = self
            .inner
            .client
            .set(
                RedisSessions::key(&id),
                value.to_string(),
                Some(Expiration::PXAT(expires_ms as i64)),
                None,
                false,
            )
            .await
            .map_err(|e| AuthError::backend("redis SET failed", e))?;
        Ok(id)
    }

    async fn delete(&self, id: &SessionId) -> Result<(), AuthError> {
        let _: i64 = self
            .inner
            .client
            .del(RedisSessions::key(id))
            .await
            .map_err(|e| AuthError::backend("redis DEL failed", e))?;
        Ok(())
    }
}

#[derive(Clone)]
struct AppState<B> {
    store: B,
    cookie: SessionCookie,
}

async fn login<B: Backend>(State(state): State<AppState<B>>, name: String) -> Response {
    match state.store.create(user(&name)).await {
        Ok(id) => (
            StatusCode::NO_CONTENT,
            [(SET_COOKIE, state.cookie.issue(&id))],
        )
            .into_response(),
        Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

async fn logout<B: Backend>(State(state): State<AppState<B>>, headers: HeaderMap) -> Response {
    if let Some(id) = state.cookie.session_id(&headers)
        && state.store.delete(&id).await.is_err()
    {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    (StatusCode::NO_CONTENT, [(SET_COOKIE, state.cookie.clear())]).into_response()
}

/// Sends `subject|scopes|session id|seconds left` and closes.
async fn ws_handler(ws: WebSocketUpgrade, identity: Identity) -> Response {
    ws.on_upgrade(move |mut socket| async move {
        let left = identity
            .time_left(SystemTime::now())
            .map_or(-1, |d| d.as_secs() as i64);
        let report = format!(
            "{}|{}|{}|{}",
            identity.subject(),
            identity.scopes().collect::<Vec<_>>().join(","),
            identity.session_id().unwrap_or("-"),
            left
        );
        let _ = socket.send(Message::Text(report.into())).await;
    })
}

fn app<B: Backend>(store: B, cookie: SessionCookie, origins: OriginPolicy) -> Router {
    let auth = SessionAuthenticator::new(store.clone(), cookie.clone(), |user: &User| {
        if user.name.is_empty() {
            return Err(AuthError::invalid("session without a user"));
        }
        Ok(Identity::builder(user.name.clone(), AuthMethod::Session)
            .scopes(user.roles.iter().cloned()))
    });
    let ws_auth = WsAuthLayer::new(auth).cookie(cookie.name(), origins);
    Router::new()
        .route("/login", post(login::<B>))
        .route("/logout", post(logout::<B>))
        .route("/ws", get(ws_handler).layer(ws_auth))
        .with_state(AppState { store, cookie })
}

fn app_origin() -> OriginPolicy {
    OriginPolicy::from_origins([APP_ORIGIN]).unwrap()
}

fn signed_cookie() -> SessionCookie {
    SessionCookie::new("session")
        .signed(Key::generate())
        .secure(false)
        .max_age(Duration::from_secs(3600))
}

fn memory(ttl: Duration) -> Counting<MemorySessionStore<User>> {
    Counting::new(MemorySessionStore::new(ttl))
}

#[tokio::test]
async fn login_upgrade_logout_with_a_signed_cookie() {
    let store = memory(Duration::from_secs(3600));
    let addr = serve(app(store.clone(), signed_cookie(), app_origin())).await;

    let login = http_post(addr, "/login", "alice", None).await;
    assert_eq!(login.status, StatusCode::NO_CONTENT);
    let set_cookie = login.set_cookie();
    assert!(set_cookie.starts_with("session="), "{set_cookie}");
    assert!(
        set_cookie.ends_with("; HttpOnly; SameSite=Lax; Path=/; Max-Age=3600"),
        "{set_cookie}"
    );
    let cookie = login.cookie_pair();

    // The allowed origin gets an authenticated socket.
    let report = connect_and_read(addr, &cookie).await;
    let fields: Vec<&str> = report.split('|').collect();
    assert_eq!(fields[0], "alice");
    assert_eq!(fields[1], "admin,chat");
    // The identity names the session by digest, never by the cookie's secret.
    let session_id = fields[2];
    assert_eq!(session_id.len(), 43);
    let raw_id = &cookie["session=".len() + 44..];
    assert_eq!(
        SessionId::parse(raw_id).unwrap().digest().to_string(),
        session_id
    );
    assert!(!cookie.contains(session_id));
    // Its expiry is the session's.
    let left: i64 = fields[3].parse().unwrap();
    assert!((3590..=3600).contains(&left), "{left}");
    assert_eq!(store.loads(), 1);

    // Another user gets their own identity.
    let bob = http_post(addr, "/login", "bob", None).await.cookie_pair();
    assert!(
        connect_and_read(addr, &bob)
            .await
            .starts_with("bob|member,chat|")
    );

    // Logout clears the cookie and ends the session: the old cookie is refused.
    let logout = http_post(addr, "/logout", "", Some(&cookie)).await;
    assert_eq!(logout.status, StatusCode::NO_CONTENT);
    assert!(
        logout
            .set_cookie()
            .starts_with("session=; HttpOnly; SameSite=Lax; Path=/; Max-Age=0; Expires="),
        "{}",
        logout.set_cookie()
    );
    assert_invalid_token(&refused(addr, Some(&cookie), Some(APP_ORIGIN)).await);
    // Bob is still logged in.
    assert!(connect_and_read(addr, &bob).await.starts_with("bob|"));

    // No cookie at all: 401 without an error code.
    let none = refused(addr, None, Some(APP_ORIGIN)).await;
    assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(none.headers()["www-authenticate"], "Bearer");
}

/// Browsers send every cookie of the host on one `Cookie` line, UTF-8
/// values included: a cookie such as `lang=français` beside the session
/// cookie hides neither the session (upgrade and logout) nor a second,
/// different `session` cookie on a line of its own.
#[tokio::test]
async fn a_non_ascii_cookie_hides_neither_the_session_nor_a_duplicate() {
    let store = memory(Duration::from_secs(3600));
    let addr = serve(app(store.clone(), signed_cookie(), app_origin())).await;
    let alice = http_post(addr, "/login", "alice", None).await.cookie_pair();
    let bob = http_post(addr, "/login", "bob", None).await.cookie_pair();
    let line = format!("lang=français; {alice}; city=Zürich");

    assert!(connect_and_read(addr, &line).await.starts_with("alice|"));

    // The duplicate rule holds when the second cookie shares a line with
    // a non-ASCII value: 400, never alice's nor bob's socket.
    for lines in [
        [alice.as_str(), &format!("lang=français; {bob}")],
        [&format!("{bob}; lang=français"), alice.as_str()],
    ] {
        let response = refused_lines(addr, &lines, Some(APP_ORIGIN)).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{lines:?}");
    }

    // Logout through that line ends the session.
    let logout = http_post(addr, "/logout", "", Some(&line)).await;
    assert_eq!(logout.status, StatusCode::NO_CONTENT);
    assert_invalid_token(&refused(addr, Some(&alice), Some(APP_ORIGIN)).await);
    assert!(connect_and_read(addr, &bob).await.starts_with("bob|"));
}

#[tokio::test]
async fn origin_is_checked_before_the_session_store() {
    let store = memory(Duration::from_secs(3600));
    let addr = serve(app(store.clone(), signed_cookie(), app_origin())).await;
    let cookie = http_post(addr, "/login", "alice", None).await.cookie_pair();

    // A foreign page, a missing Origin, a null origin, a look-alike: 403.
    for origin in [
        Some(EVIL_ORIGIN),
        None,
        Some("null"),
        Some("http://app.test.evil.test"),
        Some("https://app.test"),
    ] {
        assert_origin_refused(&refused(addr, Some(&cookie), origin).await);
    }
    assert_eq!(store.loads(), 0, "a refused Origin never reaches the store");

    // The right origin, in another case and with the default port, passes.
    assert!(connect_and_read(addr, &cookie).await.starts_with("alice|"));
    let mut socket = connect(addr, Some(&cookie), Some("HTTP://APP.TEST:80"))
        .await
        .unwrap();
    assert!(first_text(&mut socket).await.starts_with("alice|"));
    assert_eq!(store.loads(), 2);
}

#[tokio::test]
async fn missing_origin_can_be_allowed_for_non_browser_clients() {
    let store = memory(Duration::from_secs(3600));
    let policy = app_origin().missing_origin(MissingOrigin::Allow);
    let addr = serve(app(store.clone(), signed_cookie(), policy)).await;
    let cookie = http_post(addr, "/login", "alice", None).await.cookie_pair();

    let mut socket = connect(addr, Some(&cookie), None).await.unwrap();
    assert!(first_text(&mut socket).await.starts_with("alice|"));
    // A foreign origin is still refused.
    assert_origin_refused(&refused(addr, Some(&cookie), Some(EVIL_ORIGIN)).await);
}

#[tokio::test]
async fn tampered_cookies_are_refused_before_the_store() {
    let key = Key::generate();
    for cookie_config in [
        SessionCookie::new("session")
            .signed(key.clone())
            .secure(false),
        SessionCookie::new("session")
            .private(key.clone())
            .secure(false),
    ] {
        let store = memory(Duration::from_secs(3600));
        let addr = serve(app(store.clone(), cookie_config.clone(), app_origin())).await;
        let cookie = http_post(addr, "/login", "alice", None).await.cookie_pair();

        for position in [0, 5, 30, cookie.len() - "session=".len() - 1] {
            let tampered = tamper(&cookie, position);
            assert_ne!(tampered, cookie);
            assert_invalid_token(&refused(addr, Some(&tampered), Some(APP_ORIGIN)).await);
        }
        // A cookie sealed with another key, and a bare session id.
        let other = SessionCookie::new("session").signed(Key::generate());
        let id = SessionId::generate().unwrap();
        let foreign = other.issue(&id);
        let foreign_pair = foreign.to_str().unwrap().split(';').next().unwrap();
        assert_invalid_token(&refused(addr, Some(foreign_pair), Some(APP_ORIGIN)).await);
        let bare = format!("session={}", id.expose_secret());
        assert_invalid_token(&refused(addr, Some(&bare), Some(APP_ORIGIN)).await);

        assert_eq!(store.loads(), 0, "{cookie_config:?}: the store was asked");

        // The genuine cookie still works.
        assert!(connect_and_read(addr, &cookie).await.starts_with("alice|"));
        assert_eq!(store.loads(), 1);
    }
}

#[tokio::test]
async fn expired_session_is_refused() {
    let store = memory(Duration::from_secs(1));
    let addr = serve(app(store.clone(), signed_cookie(), app_origin())).await;
    let cookie = http_post(addr, "/login", "alice", None).await.cookie_pair();

    let report = connect_and_read(addr, &cookie).await;
    assert!(report.starts_with("alice|"), "{report}");
    assert_eq!(report.rsplit('|').next(), Some("0"), "under a second left");

    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_invalid_token(&refused(addr, Some(&cookie), Some(APP_ORIGIN)).await);
    // The store was asked (and found nothing live): the cookie itself was fine.
    assert_eq!(store.loads(), 2);
}

#[tokio::test]
async fn plain_cookies_work_and_unknown_ids_are_refused() {
    let store = memory(Duration::from_secs(60));
    let cookie_config = SessionCookie::new("sid").secure(false);
    let addr = serve(app(store.clone(), cookie_config, app_origin())).await;
    let cookie = http_post(addr, "/login", "carol", None).await.cookie_pair();
    assert!(
        connect_and_read(addr, &cookie)
            .await
            .starts_with("carol|member,chat|")
    );

    let guessed = format!("sid={}", SessionId::generate().unwrap().expose_secret());
    assert_invalid_token(&refused(addr, Some(&guessed), Some(APP_ORIGIN)).await);
    assert_eq!(store.loads(), 2);
}

async fn redis_app(url: &str) -> (std::net::SocketAddr, Counting<RedisSessions>) {
    let store = Counting::new(RedisSessions {
        client: fred_client(url).await,
        ttl: Duration::from_secs(600),
    });
    let addr = serve(app(store.clone(), signed_cookie(), app_origin())).await;
    (addr, store)
}

#[tokio::test]
async fn redis_store_login_upgrade_logout() {
    let Some(redis) = Redis::get("redis_store_login_upgrade_logout") else {
        return;
    };
    let (addr, store) = redis_app(&redis.url()).await;

    let cookie = http_post(addr, "/login", "alice", None).await.cookie_pair();
    let report = connect_and_read(addr, &cookie).await;
    assert!(report.starts_with("alice|admin,chat|"), "{report}");
    let left: i64 = report.rsplit('|').next().unwrap().parse().unwrap();
    assert!((590..=600).contains(&left), "{left}");

    assert_origin_refused(&refused(addr, Some(&cookie), Some(EVIL_ORIGIN)).await);
    assert_invalid_token(&refused(addr, Some(&tamper(&cookie, 3)), Some(APP_ORIGIN)).await);
    assert_eq!(store.loads(), 1);

    assert_eq!(
        http_post(addr, "/logout", "", Some(&cookie)).await.status,
        StatusCode::NO_CONTENT
    );
    assert_invalid_token(&refused(addr, Some(&cookie), Some(APP_ORIGIN)).await);
}

#[tokio::test]
async fn redis_outage_is_503_then_recovers() {
    let Some(mut redis) = RedisServer::start("redis_outage_is_503_then_recovers") else {
        return;
    };
    let logs = LogCapture::start();
    let (addr, store) = redis_app(&redis.url()).await;
    let cookie = http_post(addr, "/login", "alice", None).await.cookie_pair();
    assert!(connect_and_read(addr, &cookie).await.starts_with("alice|"));

    redis.stop();
    // Never 401, never 101, while the store cannot answer.
    for _ in 0..3 {
        assert_unavailable(&refused(addr, Some(&cookie), Some(APP_ORIGIN)).await);
    }
    let loads_during_outage = store.loads();
    // A tampered cookie is still a 401: it never needed the store.
    assert_invalid_token(&refused(addr, Some(&tamper(&cookie, 0)), Some(APP_ORIGIN)).await);
    assert_eq!(store.loads(), loads_during_outage);

    redis.restart();
    // The server kept nothing (no persistence): the old session is unknown,
    // a 401 now that the store answers again; a new login works.
    eventually("the store answers again", || {
        let cookie = cookie.clone();
        async move {
            let refusal = refused(addr, Some(&cookie), Some(APP_ORIGIN)).await;
            refusal.status() == StatusCode::UNAUTHORIZED
        }
    })
    .await;
    let fresh = http_post(addr, "/login", "alice", None).await;
    assert_eq!(fresh.status, StatusCode::NO_CONTENT);
    assert!(
        connect_and_read(addr, &fresh.cookie_pair())
            .await
            .starts_with("alice|")
    );

    // The outage was logged with its cause; no cookie or session id was.
    let logs = logs.text();
    assert!(
        logs.contains("authentication backend unavailable") && logs.contains("redis GET failed"),
        "{logs}"
    );
    let value = cookie.split_once('=').unwrap().1;
    for secret in [value, &value[..44], &value[44..]] {
        assert!(!logs.contains(secret), "a secret in the logs: {logs}");
    }
}
