//! Cookie sessions with axum: log in over HTTP, then open a WebSocket that
//! the signed session cookie authenticates before the handshake completes,
//! under an Origin policy (cross-site WebSocket hijacking). Logging out
//! deletes the session and closes its live sockets (4003) through a
//! `Revocations` registry, in every tab.
//!
//! ```sh
//! cargo run --example axum_cookie_session
//! ```
//!
//! Open http://127.0.0.1:3000/ in a browser, log in under any name and
//! connect; connect in a second tab too, then log out in one of them: both
//! sockets are closed with 4003. From a shell:
//!
//! ```sh
//! COOKIE=$(curl -si -d user=alice http://127.0.0.1:3000/login | sed -n 's/^set-cookie: \([^;]*\).*/\1/ip')
//! websocat -H 'Origin: http://127.0.0.1:3000' -H "Cookie: $COOKIE" ws://127.0.0.1:3000/ws
//! curl -i -X POST -H "Cookie: $COOKIE" http://127.0.0.1:3000/logout   # in another shell: websocat is closed
//! ```
//!
//! What the layer does on the upgrade, in order:
//!
//! 1. the Origin check: a page of another origin, `null` or no `Origin` is
//!    403, before anything else runs;
//! 2. the cookie's signature (HMAC-SHA256): a forged or tampered cookie is
//!    401 and the store is never asked;
//! 3. the session lookup: unknown or expired is 401 (a store error would be
//!    503);
//! 4. the session data becomes the `Identity`, whose `session_id()` is the
//!    SHA-256 digest of the session id: the handle to revoke it by.
//!
//! Environment: `ADDR` (default `127.0.0.1:3000`), `ALLOWED_ORIGINS`
//! (comma-separated; default: this server's own origin, as
//! `http://127.0.0.1:PORT` and `http://localhost:PORT` on loopback),
//! `RUST_LOG` (default `info,tower_ws_auth=debug`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode, header::SET_COOKIE};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{any, get, post};
use tower_ws_auth::cookie::Key;
use tower_ws_auth::{
    AuthMethod, Identity, MemorySessionStore, OriginPolicy, Revocations, SessionAuthenticator,
    SessionCookie, SessionGuard, WsAuthLayer,
};

/// What a session holds.
#[derive(Clone)]
struct User {
    name: String,
    roles: Vec<String>,
}

#[derive(Clone)]
struct AppState {
    sessions: MemorySessionStore<User>,
    cookie: SessionCookie,
    /// The live sockets, by subject, session and token: what logout closes.
    revocations: Revocations,
    /// Guards every socket: closes it when the session expires or is revoked.
    guard: SessionGuard,
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

    let ttl = Duration::from_secs(8 * 3600);
    let sessions = MemorySessionStore::new(ttl);
    // In production, load the key from your secrets (`Key::from(&64_bytes)`)
    // so cookies survive a restart; a fresh key logs everybody out.
    let cookie = SessionCookie::new("session")
        .signed(Key::generate())
        .max_age(ttl)
        // This demo serves plain HTTP; keep the default (`Secure`) behind TLS.
        .secure(false);

    let auth = SessionAuthenticator::new(sessions.clone(), cookie.clone(), |user: &User| {
        Ok(Identity::builder(user.name.clone(), AuthMethod::Session)
            .scopes(user.roles.iter().cloned()))
    });
    // Browsers attach cookies to a WebSocket handshake whatever page opened
    // it: only pages of these origins may connect.
    let origins = allowed_origins(addr);
    let policy = OriginPolicy::from_origins(origins.iter().map(String::as_str))?;
    let ws_auth = WsAuthLayer::new(auth).cookie(cookie.name(), policy);

    let revocations = Revocations::new();
    let state = AppState {
        sessions,
        cookie,
        guard: SessionGuard::expiry_only().revocations(revocations.clone()),
        revocations,
    };
    let app = Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/login", post(login))
        .route("/logout", post(logout))
        // `any`, not `get`: HTTP/2 WebSockets arrive as CONNECT requests.
        .route("/ws", any(ws_handler).layer(ws_auth))
        .with_state(state);

    let listener = tokio::net::TcpListener::bind(addr).await?;
    let origin = origins.first().cloned().unwrap_or_default();
    println!("axum_cookie_session listening on http://{addr}/");
    println!("  WebSocket origins allowed: {}", origins.join(", "));
    println!();
    println!("In a browser: open http://{addr}/, log in, connect; connect in a second tab,");
    println!("then log out in one: both sockets are closed with 4003.");
    println!();
    println!("From a shell:");
    println!(
        "  COOKIE=$(curl -si -d user=alice http://{addr}/login | sed -n 's/^set-cookie: \\([^;]*\\).*/\\1/ip')"
    );
    println!("  websocat -H 'Origin: {origin}' -H \"Cookie: $COOKIE\" ws://{addr}/ws");
    println!(
        "  curl -i -X POST -H \"Cookie: $COOKIE\" http://{addr}/logout   # closes that websocat with 4003"
    );
    println!("Refused before the handshake (websocat prints the status):");
    println!(
        "  websocat -H 'Origin: https://evil.example' -H \"Cookie: $COOKIE\" ws://{addr}/ws   # 403, foreign origin"
    );
    println!("  websocat -H 'Origin: {origin}' ws://{addr}/ws   # 401, no session");

    serve(listener, app, 10_000).await
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

/// `ALLOWED_ORIGINS`, or this server's own origin(s).
fn allowed_origins(addr: SocketAddr) -> Vec<String> {
    if let Ok(list) = std::env::var("ALLOWED_ORIGINS") {
        return list
            .split(',')
            .map(|o| o.trim().to_owned())
            .filter(|o| !o.is_empty())
            .collect();
    }
    let mut origins = vec![format!("http://{addr}")];
    if addr.ip().is_loopback() {
        origins.push(format!("http://localhost:{}", addr.port()));
    }
    origins
}

/// Starts a session (a fresh id at every login: no session fixation) and
/// sets the cookie. A real application checks a password here.
async fn login(
    State(state): State<AppState>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let name = form.get("user").map(|u| u.trim()).unwrap_or_default();
    if name.is_empty() || name.len() > 64 {
        return (StatusCode::BAD_REQUEST, "user: 1 to 64 characters\n").into_response();
    }
    let user = User {
        name: name.to_owned(),
        roles: vec!["chat".to_owned()],
    };
    match state.sessions.create(user) {
        Ok(id) => {
            tracing::info!(user = name, session = %id.digest(), "logged in");
            (
                StatusCode::NO_CONTENT,
                [(SET_COOKIE, state.cookie.issue(&id))],
            )
                .into_response()
        }
        Err(error) => {
            tracing::error!(%error, "could not start a session");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

/// Ends the session, closes its live sockets and clears the cookie.
async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let mut closed = 0;
    // `session_id` verifies the cookie's signature before reading the id.
    if let Some(id) = state.cookie.session_id(&headers) {
        state.sessions.delete(&id);
        // The identity of a session's sockets carries the digest of its id
        // (`Identity::session_id`), never the id itself.
        match state
            .revocations
            .revoke_session(&id.digest().to_string())
            .await
        {
            Ok(count) => closed = count,
            Err(error) => tracing::warn!(%error, "revocation not published"),
        }
        tracing::info!(session = %id.digest(), sockets = closed, "logged out");
    }
    (
        StatusCode::OK,
        [(SET_COOKIE, state.cookie.clear())],
        format!("logged out; {closed} live socket(s) closed\n"),
    )
        .into_response()
}

/// Only upgrades with a live session from an allowed origin get here.
async fn ws_handler(
    ws: WebSocketUpgrade,
    State(state): State<AppState>,
    identity: Identity,
) -> Response {
    // Small buffers: an idle connection then holds about 5.5 KiB instead of
    // the ~130 KiB tungstenite's defaults cost.
    ws.read_buffer_size(4096)
        .write_buffer_size(4096)
        .on_upgrade(move |socket| chat(socket, identity, state.guard))
}

async fn chat(socket: WebSocket, identity: Identity, guard: SessionGuard) {
    // Registered in the revocation registry for as long as it lives.
    let mut socket = guard.wrap(socket, identity.clone());
    let hello = format!("hello {}", identity.subject());
    if socket.send(Message::Text(hello.into())).await.is_err() {
        return;
    }
    while let Some(Ok(message)) = socket.recv().await {
        if let Message::Text(text) = message {
            let reply = format!("{}: {}", identity.subject(), text.as_str());
            if socket.send(Message::Text(reply.into())).await.is_err() {
                return;
            }
        }
    }
    tracing::info!(subject = identity.subject(), end = ?socket.end_reason(), "socket closed");
}

const PAGE: &str = r#"<!doctype html>
<html lang="en">
<meta charset="utf-8">
<title>tower-ws-auth: cookie sessions</title>
<style>
  body { font: 16px system-ui, sans-serif; max-width: 40rem; margin: 2rem auto; padding: 0 1rem; }
  #log { border: 1px solid #ccc; min-height: 8rem; padding: .5rem; white-space: pre-wrap; font-family: monospace; }
</style>
<h1>Cookie sessions</h1>
<p>Log in (any name: this demo has no passwords), then connect. The WebSocket
handshake carries the session cookie; the server checks this page's
<code>Origin</code>, the cookie's signature and the session before it answers
<code>101</code>. Open a second tab and connect there too: logging out in one
tab closes the sockets of the session in both (close code 4003).</p>
<form id="login"><input name="user" placeholder="your name" required maxlength="64"> <button>Log in</button></form>
<p><button id="connect">Connect</button> <button id="send" disabled>Send "hi"</button> <button id="logout">Log out</button></p>
<div id="log"></div>
<script>
const log = (line) => { document.getElementById("log").textContent += line + "\n"; };
let ws;
document.getElementById("login").onsubmit = async (event) => {
  event.preventDefault();
  const response = await fetch("/login", { method: "POST", body: new URLSearchParams(new FormData(event.target)) });
  log("login: " + response.status + (response.ok ? " (session cookie set)" : ""));
};
document.getElementById("logout").onclick = async () => {
  const response = await fetch("/logout", { method: "POST" });
  log("logout: " + response.status + " " + (await response.text()).trim());
};
document.getElementById("connect").onclick = () => {
  ws = new WebSocket(location.origin.replace(/^http/, "ws") + "/ws");
  ws.onopen = () => { log("open"); document.getElementById("send").disabled = false; };
  ws.onmessage = (event) => log("< " + event.data);
  ws.onclose = (event) => {
    document.getElementById("send").disabled = true;
    log("closed " + event.code + (event.reason ? " " + event.reason : "")
      + (event.code === 1006 ? " (a refused handshake shows as 1006: log in first)" : ""));
  };
};
document.getElementById("send").onclick = () => { ws.send("hi"); log("> hi"); };
</script>
</html>
"#;
