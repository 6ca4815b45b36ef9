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
//! `MAX_CONNECTIONS` (default 10,000: connections served at once).
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
//! * `GET /ws/first-message`: no credential on the upgrade; the first
//!   message must be `{"type":"auth","token":"<jwt>"}` within 10 s (else
//!   4008); then it behaves like `/ws`.
//! * Served with a 10 s header-read timeout and at most `MAX_CONNECTIONS`
//!   connections at once.
//! * `GET /metrics` (built with the `metrics` feature:
//!   `cargo run --example quickstart --features metrics`): the crate's
//!   metrics in the Prometheus text format (`text/plain; version=0.0.4`),
//!   through `metrics-exporter-prometheus`: `tower_ws_auth_upgrades_total`
//!   with `outcome`, `reason` and `carrier` (a refused upgrade adds one to
//!   its `outcome="rejected"` series), `tower_ws_auth_open_connections`
//!   (up while a `/ws`, `/ws/echo` or authenticated `/ws/first-message`
//!   socket is open, down when it ends), `tower_ws_auth_closes_total`,
//!   `tower_ws_auth_authentication_seconds`. Without the feature: 404.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Form, Request, State};
use axum::http::header::{LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{any, get, post};
use jsonwebtoken::{EncodingKey, Header};
use serde::Deserialize;
use tower_ws_auth::socket::{AuthMessages, JsonMessages, Parsed};
use tower_ws_auth::{
    AuthMethod, Authenticator, BoxAuthenticator, Carrier, Identity, OriginPolicy, WsAuthLayer,
    jwt::JwtAuthenticator,
    session::{MemorySessionStore, SessionAuthenticator, SessionCookie},
    socket::{FirstMessageAuth, Revocations, SessionGuard},
};

/// The development secret used when `JWT_SECRET` is not set.
const DEV_SECRET: &str = "tower-ws-auth-quickstart-development-secret-change-me";

/// The demo users: name and password.
const USERS: [(&str, &str); 2] = [("alice", "alice-password"), ("bob", "bob-password")];

#[derive(Clone)]
struct App {
    sessions: MemorySessionStore<String>,
    cookie: SessionCookie,
    origins: OriginPolicy,
    revocations: Revocations,
    guard: SessionGuard,
    first_message: FirstMessageAuth<BoxAuthenticator, Welcome>,
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
        SessionAuthenticator::new(sessions.clone(), cookie.clone(), |user: &String| {
            Ok(Identity::builder(user.clone(), AuthMethod::Session))
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
    let auth = jwt.clone().or(by_session.for_carriers([Carrier::Cookie]));

    // The cookie is accepted from this server's own origin only; so are
    // the login and logout forms.
    let mut origins = vec![format!("http://{addr}")];
    if addr.ip().is_loopback() {
        origins.push(format!("http://localhost:{}", addr.port()));
    }
    let origins = OriginPolicy::from_origins(&origins)?;
    let layer = WsAuthLayer::new(auth)
        .bearer_header()
        .subprotocol_token()
        .cookie(cookie.name(), origins.clone())?
        .query_param("token")?;

    let revocations = Revocations::new();
    let app = App {
        sessions,
        cookie,
        origins,
        revocations: revocations.clone(),
        guard: SessionGuard::expiry_only().revocations(revocations),
        first_message: FirstMessageAuth::new(jwt).messages(Welcome),
    };
    let router = Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/ws", any(ws).layer(layer.clone()))
        .route("/ws/echo", any(ws_echo).layer(layer))
        .route("/ws/first-message", any(ws_first_message))
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
        let Ok((stream, _peer)) = listener.accept().await else {
            // Out of file descriptors, say: wait a little, keep serving.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
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
    match app.sessions.create(form.username) {
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
