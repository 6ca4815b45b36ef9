//! The tower-ws-auth demo: a WebSocket echo server whose upgrades are
//! authenticated before the handshake completes, by JWT (header,
//! subprotocol or query) or by a session cookie, and whose sockets are
//! closed when their credential expires or their session logs out.
//!
//! ```sh
//! cargo run --example quickstart
//! ```
//!
//! Then open http://127.0.0.1:3000/, log in as `alice` / `alice-password`
//! (or `bob` / `bob-password`) and connect; or use the token printed at
//! start:
//!
//! ```sh
//! websocat -H 'Authorization: Bearer <token>' ws://127.0.0.1:3000/ws
//! ```
//!
//! Environment: `ADDR` (default `127.0.0.1:3000`); `JWT_SECRET` (HS256, at
//! least 32 bytes; without it a development secret is used, with a warning);
//! `MAX_CONNECTIONS` (default 10,000: connections served at once);
//! `ADMIN_TOKEN` (enables `POST /admin/revoke`); `FAILED_AUTH_LIMIT`
//! (default 100, `0` = off: failed upgrades per client address per minute);
//! `MAX_SOCKETS_PER_SUBJECT` (default 8, `0` = no cap).
//!
//! The behaviour below is a contract other test suites rely on; see the
//! README's "Quickstart contract":
//!
//! * `GET /`: the demo page.
//! * `POST /login` (`username`, `password`): sets the `session` cookie, 303
//!   to `/`; a wrong password is 401. `POST /logout`: ends the session,
//!   closes its live sockets with 4003, 303 to `/`. Both need the Origin
//!   the cookie upgrade needs (this server's own), else 403.
//! * `GET /ws`: authenticated before the upgrade by, in this order,
//!   `Authorization: Bearer <jwt>`, the subprotocol
//!   `base64url.bearer.<base64url(jwt)>` beside `chat` (the 101 selects
//!   `chat`), the `session` cookie (from this server's own origin only), the
//!   query parameter `token`. JWTs are HS256 and need `sub` and `exp`. The
//!   server first sends `{"type":"authenticated","user":{"id":"<subject>"}}`,
//!   then echoes every text message; it closes with 4002 when the credential
//!   expires.
//! * `GET /ws/echo`: the same authentication, no welcome, a pure echo of
//!   text and binary messages.
//! * `POST /ws-ticket`: authenticated by the `session` cookie (Origin must
//!   be this server's own) or by `Authorization: Bearer <jwt>`; answers 200
//!   `{"ticket":"<opaque>","expires_in":30}` with `Cache-Control: no-store`.
//!   `GET /ws?ticket=<ticket>` (and `/ws/echo?ticket=`) then authenticates
//!   once as that user (a ticket goes before the cookie): same welcome, echo
//!   and expiry (4002 when the identity the ticket was minted for expires);
//!   a second use, an unknown ticket or one older than 30 s is 401.
//! * `GET /ws/first-message`: no credential on the upgrade; the first
//!   message must be `{"type":"auth","token":"<jwt>"}` within 10 s (else
//!   4008); then it behaves like `/ws`.
//! * Served with a 10 s header-read timeout and at most `MAX_CONNECTIONS`
//!   connections at once.
//! * `POST /admin/revoke` with `Authorization: Bearer <ADMIN_TOKEN>` and the
//!   form field `subject`: closes that subject's live sockets with 4003 and
//!   refuses, at the next handshake (401 `invalid_token`), every credential
//!   of that subject issued at or before that second (JWTs by `iat`, JWTs
//!   without `iat` too; sessions by creation time). 204; 401 with a wrong or
//!   missing admin token; 400 without a subject; 404 when `ADMIN_TOKEN` is
//!   not set.
//! * At most `FAILED_AUTH_LIMIT` failed upgrades of `/ws` and `/ws/echo`
//!   per client address (the TCP peer) per minute, counted from the first
//!   failure; past it every upgrade from that address is 429 with
//!   `Retry-After` (the seconds left of that minute), without checking its
//!   credential. Successful upgrades never count.
//! * At most `MAX_SOCKETS_PER_SUBJECT` live sockets per subject (those of
//!   `/ws`, `/ws/echo` and `/ws/first-message` count together): the next
//!   upgrade of `/ws` or `/ws/echo` is 429 with `Retry-After: 5` (on
//!   `/ws/first-message` the socket closes with 1013); a slot frees when
//!   one of the subject's sockets ends.
//! * `GET /metrics` (the crate's default feature `metrics`; built without
//!   it, 404): the crate's
//!   metrics in the Prometheus text format (`text/plain; version=0.0.4`),
//!   through `metrics-exporter-prometheus`: `tower_ws_auth_upgrades_total`
//!   with `outcome`, `reason` and `carrier` (a refused upgrade adds one to
//!   its `outcome="rejected"` series), `tower_ws_auth_open_connections`
//!   (up while a `/ws`, `/ws/echo` or authenticated `/ws/first-message`
//!   socket is open, down when it ends), `tower_ws_auth_closes_total`,
//!   `tower_ws_auth_authentication_seconds`. Without the feature: 404.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Form, Request, State};
use axum::http::header::{AUTHORIZATION, LOCATION, SET_COOKIE, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{MethodRouter, any, get, post};
use jsonwebtoken::{EncodingKey, Header};
use serde::Deserialize;
use tower_ws_auth::socket::{AuthMessages, JsonMessages, Parsed};
use tower_ws_auth::{
    AuthMethod, Authenticator, BoxAuthenticator, Carrier, ConfigError, Identity, OriginPolicy,
    WsAuthLayer,
    jwt::JwtAuthenticator,
    session::{MemorySessionStore, SessionAuthenticator, SessionCookie},
    socket::{FirstMessageAuth, Revocations, SessionGuard},
    throttle::FailedAuthLimit,
    ticket::Tickets,
};

/// The development secret used when `JWT_SECRET` is not set.
const DEV_SECRET: &str = "tower-ws-auth-quickstart-development-secret-change-me";

/// The demo users: name and password.
const USERS: [(&str, &str); 2] = [("alice", "alice-password"), ("bob", "bob-password")];

/// A session's data: the user, and when the session was created (its
/// credential's issue time, for revocations by "issued before").
#[derive(Clone)]
struct SessionUser {
    name: String,
    created: SystemTime,
}

#[derive(Clone)]
struct App {
    sessions: MemorySessionStore<SessionUser>,
    cookie: SessionCookie,
    origins: OriginPolicy,
    revocations: Revocations,
    guard: SessionGuard,
    first_message: FirstMessageAuth<BoxAuthenticator, Welcome>,
    admin_token: Option<String>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info,tower_ws_auth=debug".into()),
        )
        .init();
    let addr: SocketAddr = std::env::var("ADDR")
        .unwrap_or_else(|_| "127.0.0.1:3000".into())
        .parse()?;
    let max_connections: usize = std::env::var("MAX_CONNECTIONS")
        .unwrap_or_else(|_| "10000".into())
        .parse()?;
    if !(1..=tokio::sync::Semaphore::MAX_PERMITS).contains(&max_connections) {
        return Err("MAX_CONNECTIONS must be at least 1 (and below 2^61)".into());
    }
    let secret = std::env::var("JWT_SECRET").unwrap_or_else(|_| {
        tracing::warn!(
            "JWT_SECRET is not set: using a development secret; never do this in production"
        );
        DEV_SECRET.to_owned()
    });

    // JWTs: HS256 only, `exp` required (the default), `sub` required.
    let jwt = JwtAuthenticator::hs256(&secret)?;

    // Sessions: a signed cookie pointing at an in-memory session.
    let ttl = Duration::from_secs(8 * 3600);
    let sessions = MemorySessionStore::new(ttl);
    // Plain http on loopback: not `Secure`. Behind https, keep the default (`Secure`).
    let cookie = SessionCookie::new("session")?
        .signed(tower_ws_auth::session::cookie::Key::generate())
        .secure(false)
        .max_age(ttl);
    let by_session =
        SessionAuthenticator::new(sessions.clone(), cookie.clone(), |user: &SessionUser| {
            Ok(Identity::builder(user.name.clone(), AuthMethod::Session).issued_at(user.created))
        });

    // Each carrier goes to its authenticator: cookies to the sessions, the rest to JWT.
    let jwt = jwt
        .for_carriers([
            Carrier::Bearer,
            Carrier::Subprotocol,
            Carrier::Query,
            Carrier::Message,
        ])
        .boxed();
    let auth = jwt
        .clone()
        .or(by_session.for_carriers([Carrier::Cookie]))
        .boxed();
    // Revoked credentials are refused at the handshake too (`/admin/revoke`),
    // tickets included: a ticket carries the identity it was minted for.
    let revocations = revocations()?;

    // The cookie is accepted from this server's own origin only; so are
    // the login and logout forms.
    let mut origins = vec![format!("http://{addr}")];
    if addr.ip().is_loopback() {
        origins.push(format!("http://localhost:{}", addr.port()));
    }
    let origins = OriginPolicy::from_origins(&origins)?;
    let tickets = tickets(&origins);
    let layer = WsAuthLayer::new(revocations.revocable(tickets.clone().or(auth.clone())))
        .bearer_header()
        .subprotocol_token()
        .query_param("ticket")?
        .cookie(cookie.name(), origins.clone())?
        .query_param("token")?;
    let layer = match failed_auth_limit()? {
        Some(limit) => layer.failed_auth_limit(limit),
        None => layer,
    };
    let ws_ticket = ticket_route(&tickets, auth, cookie.name(), &origins)?;

    let app = App {
        sessions,
        cookie,
        origins,
        revocations: revocations.clone(),
        guard: SessionGuard::expiry_only().revocations(revocations.clone()),
        first_message: FirstMessageAuth::new(revocations.revocable(jwt).boxed()).messages(Welcome),
        admin_token: std::env::var("ADMIN_TOKEN").ok().filter(|t| !t.is_empty()),
    };
    let router = Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/ws", any(ws).layer(layer.clone()))
        .route("/ws/echo", any(ws_echo).layer(layer))
        .route("/ws/first-message", any(ws_first_message))
        .route("/admin/revoke", post(admin_revoke))
        .route("/ws-ticket", ws_ticket)
        .with_state(app);
    let router = metrics_route(router)?;

    let listener = tokio::net::TcpListener::bind(addr).await?;
    let token = demo_token(&secret, "alice", Duration::from_secs(3600))?;
    println!("tower-ws-auth quickstart on http://{addr}/");
    println!("  log in:       alice / alice-password, bob / bob-password");
    println!("  demo token:   {token}");
    println!("                (user alice, HS256, valid for one hour)");
    println!("  header:       websocat -H 'Authorization: Bearer {token}' ws://{addr}/ws");
    println!("  query:        websocat 'ws://{addr}/ws?token={token}'");
    println!("  first message: websocat ws://{addr}/ws/first-message");
    println!(r#"                then send {{"type":"auth","token":"{token}"}}"#);
    serve(listener, router, max_connections).await
}

/// At most this many unredeemed tickets at once (then `POST /ws-ticket` is 503).
const TICKET_CAPACITY: NonZeroUsize = NonZeroUsize::new(10_000).unwrap();

/// Connection tickets, valid once for 30 s, redeemed from this server's own
/// origin only (or without an Origin: non-browser clients).
fn tickets(origins: &OriginPolicy) -> Tickets {
    Tickets::in_memory(TICKET_CAPACITY).origin_policy(origins.clone())
}

/// `POST /ws-ticket`: mints a ticket for the user of the session cookie or
/// of the bearer JWT (the `/ws` authenticators, without tickets themselves).
fn ticket_route(
    tickets: &Tickets,
    auth: BoxAuthenticator,
    cookie: &str,
    origins: &OriginPolicy,
) -> Result<MethodRouter<App>, ConfigError> {
    let layer = WsAuthLayer::new(auth)
        .bearer_header()
        .cookie(cookie, origins.clone())?
        .protect_all_requests(true);
    Ok(tickets.mint_route().layer(layer))
}

/// `GET /metrics`: installs the Prometheus recorder (process-wide) and
/// serves what it renders.
#[cfg(feature = "metrics")]
fn metrics_route(router: Router) -> Result<Router, Box<dyn std::error::Error>> {
    let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;
    // Folds the histograms' samples in between scrapes: bounded memory.
    let upkeep = prometheus.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    let render = move || {
        let text = prometheus.render();
        async move {
            let content_type = HeaderValue::from_static("text/plain; version=0.0.4");
            ([(axum::http::header::CONTENT_TYPE, content_type)], text)
        }
    };
    Ok(router.route("/metrics", get(render)))
}

/// Without the `metrics` feature there is nothing to serve.
#[cfg(not(feature = "metrics"))]
fn metrics_route(router: Router) -> Result<Router, Box<dyn std::error::Error>> {
    Ok(router)
}

/// Serves `router` with the bounds the layer cannot set (`axum::serve` reads
/// request headers with no timeout and accepts connections without limit):
/// at most `max_connections` at once, 10 s to send the request headers, and
/// HTTP/2 extended CONNECT (WebSockets over HTTP/2) as `axum::serve` offers.
async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    max_connections: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(max_connections));
    loop {
        let slot = slots.clone().acquire_owned().await?;
        let Ok((stream, peer)) = listener.accept().await else {
            // Out of file descriptors, say: wait a little, keep serving.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        // The peer address, for the failed-authentication limit (what
        // `axum::serve` with `into_make_service_with_connect_info` does).
        let router = tower::ServiceExt::map_request(
            router.clone(),
            move |mut request: axum::http::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            },
        );
        let service = hyper_util::service::TowerToHyperService::new(router);
        tokio::spawn(async move {
            let mut server = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            server
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10));
            server.http2().enable_connect_protocol();
            let connection = server.serve_connection_with_upgrades(TokioIo::new(stream), service);
            let _ = connection.await;
            drop(slot);
        });
    }
}

/// The registry of live sockets, with the cap `MAX_SOCKETS_PER_SUBJECT`
/// (default 8, `0` = no cap).
fn revocations() -> Result<Revocations, Box<dyn std::error::Error>> {
    let max: usize = std::env::var("MAX_SOCKETS_PER_SUBJECT")
        .unwrap_or_else(|_| "8".into())
        .parse()?;
    Ok(match std::num::NonZeroUsize::new(max) {
        Some(max) => Revocations::new().max_connections_per_subject(max),
        None => Revocations::new(),
    })
}

/// `FAILED_AUTH_LIMIT` (default 100, `0` = off): failed upgrades per client
/// address per minute.
fn failed_auth_limit() -> Result<Option<FailedAuthLimit>, Box<dyn std::error::Error>> {
    let limit: u32 = std::env::var("FAILED_AUTH_LIMIT")
        .unwrap_or_else(|_| "100".into())
        .parse()?;
    match std::num::NonZeroU32::new(limit) {
        Some(limit) => Ok(Some(FailedAuthLimit::new(limit, Duration::from_secs(60))?)),
        None => Ok(None),
    }
}

/// An HS256 token for `subject`, valid for `ttl`.
fn demo_token(
    secret: &str,
    subject: &str,
    ttl: Duration,
) -> Result<String, Box<dyn std::error::Error>> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let claims = serde_json::json!({ "sub": subject, "iat": now, "exp": now + ttl.as_secs() });
    Ok(jsonwebtoken::encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )?)
}

/// `{"type":"authenticated","user":{"id":"<subject>"}}`.
fn welcome_text(identity: &Identity) -> String {
    serde_json::json!({ "type": "authenticated", "user": { "id": identity.subject() } }).to_string()
}

/// The default JSON messages, with the same welcome as `/ws`.
#[derive(Clone, Copy)]
struct Welcome;

impl AuthMessages for Welcome {
    fn parse_auth(&self, text: &str) -> Parsed {
        JsonMessages.parse_auth(text)
    }
    fn parse_refresh(&self, text: &str) -> Parsed {
        JsonMessages.parse_refresh(text)
    }
    fn authenticated(&self, identity: &Identity) -> Option<String> {
        Some(welcome_text(identity))
    }
    fn refreshed(&self, identity: &Identity) -> Option<String> {
        JsonMessages.refreshed(identity)
    }
    fn refresh_failed(&self) -> Option<String> {
        JsonMessages.refresh_failed()
    }
    fn expiring(&self, identity: &Identity, remaining: Duration) -> Option<String> {
        JsonMessages.expiring(identity, remaining)
    }
}

#[derive(Deserialize)]
struct LoginForm {
    username: String,
    password: String,
}

async fn login(
    State(app): State<App>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    // The same Origin rule as the cookie upgrade: another site (even a
    // same-site page on another port) cannot log a browser in or out.
    if !app.origins.allows_headers(&headers) {
        return StatusCode::FORBIDDEN.into_response();
    }
    let known = USERS.iter().any(|(user, password)| {
        // Demo users only: a real app checks a password hash.
        *user == form.username && *password == form.password
    });
    if !known {
        return (
            StatusCode::UNAUTHORIZED,
            Html("<p>Wrong user name or password. <a href=\"/\">Back</a></p>"),
        )
            .into_response();
    }
    let user = SessionUser {
        name: form.username,
        created: SystemTime::now(),
    };
    match app.sessions.create(user) {
        Ok(id) => redirect_home(Some(app.cookie.issue(&id))),
        Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

async fn logout(State(app): State<App>, headers: HeaderMap) -> Response {
    if !app.origins.allows_headers(&headers) {
        return StatusCode::FORBIDDEN.into_response();
    }
    if let Some(id) = app.cookie.session_id(&headers) {
        app.sessions.delete(&id);
        // Close the session's live sockets (4003), here and in any other tab.
        let _ = app
            .revocations
            .revoke_session(&id.digest().to_string())
            .await;
    }
    redirect_home(Some(app.cookie.clear()))
}

/// `POST /admin/revoke` (`Authorization: Bearer <ADMIN_TOKEN>`, form field
/// `subject`): closes the subject's sockets (4003) and refuses its
/// credentials issued at or before this second at the next handshake.
async fn admin_revoke(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    use subtle::ConstantTimeEq;
    let Some(expected) = &app.admin_token else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let presented = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !bool::from(presented.as_bytes().ct_eq(expected.as_bytes())) {
        return (
            StatusCode::UNAUTHORIZED,
            [(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))],
        )
            .into_response();
    }
    let subject = form_urlencoded::parse(&body)
        .find(|(name, _)| name == "subject")
        .map(|(_, value)| value.into_owned())
        .filter(|s| !s.is_empty());
    let Some(subject) = subject else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    match app.revocations.revoke_subject(&subject).await {
        Ok(closed) => {
            tracing::info!(subject, closed, "revoked by /admin/revoke");
            StatusCode::NO_CONTENT.into_response()
        }
        Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

fn redirect_home(cookie: Option<HeaderValue>) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    response
        .headers_mut()
        .insert(LOCATION, HeaderValue::from_static("/"));
    if let Some(cookie) = cookie {
        response.headers_mut().insert(SET_COOKIE, cookie);
    }
    response
}

/// Small buffers: about 5.5 KiB per idle connection instead of ~130 KiB.
fn small(ws: WebSocketUpgrade) -> WebSocketUpgrade {
    ws.read_buffer_size(4 * 1024).write_buffer_size(4 * 1024)
}

async fn ws(ws: WebSocketUpgrade, State(app): State<App>, identity: Identity) -> Response {
    small(ws)
        .protocols(["chat"])
        .on_upgrade(move |socket| async move {
            let mut socket = socket;
            if socket
                .send(Message::Text(welcome_text(&identity).into()))
                .await
                .is_ok()
            {
                echo(app, socket, identity, false).await;
            }
        })
}

async fn ws_echo(ws: WebSocketUpgrade, State(app): State<App>, identity: Identity) -> Response {
    small(ws)
        .protocols(["chat"])
        .on_upgrade(move |socket| echo(app, socket, identity, true))
}

async fn ws_first_message(
    ws: WebSocketUpgrade,
    State(app): State<App>,
    request: Request,
) -> Response {
    let parts = request.into_parts().0;
    // Unauthenticated: frames and messages capped at the auth message's cap
    // (plus 4 KiB), refused from the frame header beyond it.
    app.first_message
        .configure(small(ws))
        .protocols(["chat"])
        .on_upgrade(move |socket| async move {
            // Answers {"type":"authenticated",...} itself on success.
            if let Ok((socket, identity)) = app.first_message.authenticate(socket, &parts).await {
                echo(app, socket, identity, false).await;
            }
        })
}

/// Echoes until the peer leaves, the credential expires (4002) or the
/// session is revoked (4003).
async fn echo(app: App, socket: WebSocket, identity: Identity, binary: bool) {
    let mut socket = app.guard.wrap(socket, identity);
    while let Some(Ok(message)) = socket.recv().await {
        let reply = match message {
            Message::Text(text) => Message::Text(text),
            Message::Binary(bytes) if binary => Message::Binary(bytes),
            _ => continue,
        };
        if socket.send(reply).await.is_err() {
            break;
        }
    }
}

const PAGE: &str = include_str!("quickstart.html");
