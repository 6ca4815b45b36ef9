//! Quickstart: an axum WebSocket echo server whose upgrades are
//! authenticated by tower-ws-auth before the handshake completes.
//!
//! ```sh
//! cargo run --example quickstart
//! ```
//!
//! Then open http://127.0.0.1:3000/ in a browser, or connect from a shell:
//!
//! ```sh
//! websocat -H 'Authorization: Bearer <token printed at start>' ws://127.0.0.1:3000/ws
//! ```
//!
//! Environment: `ADDR` (default `127.0.0.1:3000`), `DEMO_TOKEN` (default: a
//! random token printed at start).

use std::net::SocketAddr;

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::{Html, Response};
use axum::routing::{any, get};
use tower_ws_auth::{ApiKeyAuthenticator, AuthMethod, Identity, WsAuthLayer};

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
    let token = std::env::var("DEMO_TOKEN").unwrap_or_else(|_| random_token());

    // Any `Authenticator` fits here: JWT, sessions, your own database lookup.
    // This demo accepts one opaque token for the user `alice`.
    let auth = ApiKeyAuthenticator::from_keys([(
        token.as_str(),
        Identity::builder("alice", AuthMethod::ApiKey)
            .scope("chat")
            .build(),
    )]);

    let app = Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        // `any` so that HTTP/2 extended CONNECT upgrades reach the handler too.
        .route(
            "/ws",
            any(ws_handler).layer(
                WsAuthLayer::new(auth)
                    .bearer_header()
                    .subprotocol_token()
                    .query_param("token"),
            ),
        );

    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("tower-ws-auth quickstart listening on http://{addr}/");
    println!("  demo token (user alice): {token}");
    println!("  browser:   open http://{addr}/ and press Connect");
    println!("  websocat:  websocat -H 'Authorization: Bearer {token}' ws://{addr}/ws");
    axum::serve(listener, app).await?;
    Ok(())
}

/// Runs only for authenticated upgrades: the layer answered everyone else
/// with 401/400/403 before the handshake.
async fn ws_handler(ws: WebSocketUpgrade, identity: Identity) -> Response {
    ws.protocols(["chat"])
        // Small buffers: about 5 KiB of memory per idle connection instead of ~130 KiB.
        .read_buffer_size(4 * 1024)
        .write_buffer_size(4 * 1024)
        .on_upgrade(move |socket| echo(socket, identity))
}

async fn echo(mut socket: WebSocket, identity: Identity) {
    let hello = format!(
        r#"{{"type":"authenticated","user":{{"id":"{}"}}}}"#,
        identity.subject().replace(['"', '\\'], "")
    );
    if socket.send(Message::Text(hello.into())).await.is_err() {
        return;
    }
    while let Some(Ok(message)) = socket.recv().await {
        let reply = match message {
            Message::Text(text) => Message::Text(text),
            Message::Close(_) => return,
            _ => continue,
        };
        if socket.send(reply).await.is_err() {
            return;
        }
    }
}

fn random_token() -> String {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    // Demo only: two SipHash outputs keyed from the OS RNG. Use a CSPRNG for real keys.
    (0..2)
        .map(|_| format!("{:016x}", RandomState::new().build_hasher().finish()))
        .collect::<Vec<_>>()
        .join("")
}

const PAGE: &str = r#"<!doctype html>
<html lang="en">
<meta charset="utf-8">
<title>tower-ws-auth quickstart</title>
<style>
  body { font: 16px system-ui, sans-serif; max-width: 40rem; margin: 2rem auto; padding: 0 1rem; }
  input { width: 100%; box-sizing: border-box; padding: .4rem; margin: .2rem 0 .6rem; }
  #log { border: 1px solid #ccc; min-height: 8rem; padding: .5rem; white-space: pre-wrap; font-family: monospace; }
</style>
<h1>tower-ws-auth quickstart</h1>
<p>Paste the demo token the server printed. The browser sends it in the
<code>Sec-WebSocket-Protocol</code> header as <code>base64url.bearer.&lt;token&gt;</code>
beside the real protocol <code>chat</code>; the server authenticates it before the handshake.</p>
<label>Token <input id="token" autocomplete="off"></label>
<button id="connect">Connect</button>
<label>Message <input id="message" value="hello"></label>
<button id="send" disabled>Send</button>
<div id="log"></div>
<script>
const log = (line) => { document.getElementById("log").textContent += line + "\n"; };
const b64url = (s) => btoa(String.fromCharCode(...new TextEncoder().encode(s)))
  .replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
let ws;
document.getElementById("connect").onclick = () => {
  const token = document.getElementById("token").value.trim();
  const url = location.origin.replace(/^http/, "ws") + "/ws";
  ws = new WebSocket(url, ["chat", "base64url.bearer." + b64url(token)]);
  ws.onopen = () => { log("open (protocol: " + ws.protocol + ")"); document.getElementById("send").disabled = false; };
  ws.onmessage = (e) => log("< " + e.data);
  ws.onclose = (e) => { log("closed " + e.code); document.getElementById("send").disabled = true; };
};
document.getElementById("send").onclick = () => {
  const text = document.getElementById("message").value;
  ws.send(text); log("> " + text);
};
</script>
</html>
"#;
