//! Cookie sessions: log in over HTTP, then open a WebSocket that the
//! session cookie authenticates before the handshake completes.
//!
//! ```sh
//! cargo run --example sessions --features sessions
//! ```
//!
//! Then open http://127.0.0.1:3000/ in a browser, log in under any name and
//! connect. From a shell (copy the cookie the login printed):
//!
//! ```sh
//! curl -i -d user=alice http://127.0.0.1:3000/login
//! websocat -H 'Origin: http://127.0.0.1:3000' -H 'Cookie: session=...' ws://127.0.0.1:3000/ws
//! ```
//!
//! Environment: `ADDR` (default `127.0.0.1:3000`).

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
    AuthMethod, Identity, MemorySessionStore, OriginPolicy, SessionAuthenticator, SessionCookie,
    WsAuthLayer,
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
    // Cookies ride along on cross-site handshakes: only this page's origin may connect.
    let origins = OriginPolicy::from_origins([format!("http://{addr}")])?;
    let ws_auth = WsAuthLayer::new(auth).cookie(cookie.name(), origins);

    let app = Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/ws", any(ws_handler).layer(ws_auth))
        .with_state(AppState { sessions, cookie });

    tracing::info!("listening on http://{addr}/");
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app).await?;
    Ok(())
}

/// Starts a session (a fresh id at every login) and sets the cookie.
/// A real application checks a password here.
async fn login(
    State(state): State<AppState>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let name = form.get("user").map(|u| u.trim()).unwrap_or_default();
    if name.is_empty() || name.len() > 64 {
        return StatusCode::BAD_REQUEST.into_response();
    }
    let user = User {
        name: name.to_owned(),
        roles: vec!["chat".to_owned()],
    };
    match state.sessions.create(user) {
        Ok(id) => (
            StatusCode::NO_CONTENT,
            [(SET_COOKIE, state.cookie.issue(&id))],
        )
            .into_response(),
        Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

/// Ends the session and clears the cookie.
async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(id) = state.cookie.session_id(&headers) {
        state.sessions.delete(&id);
    }
    (StatusCode::NO_CONTENT, [(SET_COOKIE, state.cookie.clear())]).into_response()
}

/// Only upgrades with a live session get here.
async fn ws_handler(ws: WebSocketUpgrade, identity: Identity) -> Response {
    // Small buffers: about 5 KiB of memory per idle connection instead of ~130 KiB.
    ws.read_buffer_size(4 * 1024)
        .write_buffer_size(4 * 1024)
        .on_upgrade(move |socket| echo(socket, identity))
}

async fn echo(mut socket: WebSocket, identity: Identity) {
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
}

const PAGE: &str = r#"<!doctype html>
<meta charset="utf-8">
<title>tower-ws-auth sessions</title>
<form id="login"><input name="user" placeholder="your name" required> <button>log in</button></form>
<button id="connect">connect</button> <button id="logout">log out</button>
<pre id="log"></pre>
<script>
const log = (line) => { document.getElementById("log").textContent += line + "\n"; };
document.getElementById("login").onsubmit = async (event) => {
  event.preventDefault();
  const response = await fetch("/login", { method: "POST", body: new URLSearchParams(new FormData(event.target)) });
  log("login: " + response.status);
};
document.getElementById("logout").onclick = async () => {
  log("logout: " + (await fetch("/logout", { method: "POST" })).status);
};
document.getElementById("connect").onclick = () => {
  const ws = new WebSocket(`ws://${location.host}/ws`);
  ws.onopen = () => ws.send("hi");
  ws.onmessage = (event) => log("< " + event.data);
  ws.onclose = (event) => log("closed " + event.code + " (a refused handshake shows as 1006)");
};
</script>
"#;
