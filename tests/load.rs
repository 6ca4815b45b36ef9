//! Load: 10,000 concurrent authenticated connections held open on
//! loopback, then all closed; twice. No handshake or echo may fail, every
//! registry entry must go, and the server's heap after the second wave must
//! be within 10% of what it was after the first (no growth per connection
//! served).
//!
//! The server runs in a child process (this test binary, re-executed), so
//! client and server each stay under the file-descriptor limit, and its heap
//! is measured exactly by a counting allocator. `#[ignore]`d: `.ci/run` runs
//! it with `cargo test --all-features --test load -- --ignored`.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::extract::ws::{Message as AxumMessage, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::any;
use cap::Cap;
use common::process::{Proc, free_port, wait_for_port};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tower_ws_auth::{Identity, JwtAuthenticator, Revocations, SessionGuard, WsAuthLayer};

#[global_allocator]
static ALLOCATOR: Cap<std::alloc::System> = Cap::new(std::alloc::System, usize::MAX);

const CONNECTIONS: usize = 10_000;
const IN_FLIGHT: usize = 256;
const SECRET: &str = "load-test-secret-0123456789-abcdefghijklmn";
const SERVER_ENV: &str = "TOWER_WS_AUTH_LOAD_SERVER_PORT";

/// Raises the soft limit on open files to the hard limit.
fn raise_fd_limit() -> u64 {
    rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0)
}

#[derive(Clone)]
struct App {
    guard: SessionGuard,
}

async fn ws(ws: WebSocketUpgrade, State(app): State<App>, identity: Identity) -> Response {
    ws.read_buffer_size(4096)
        .write_buffer_size(4096)
        .on_upgrade(move |socket| async move {
            let mut socket = app.guard.wrap(socket, identity);
            while let Some(Ok(message)) = socket.recv().await {
                if let AxumMessage::Text(text) = message
                    && socket.send(AxumMessage::Text(text)).await.is_err()
                {
                    break;
                }
            }
        })
}

/// The server half: runs only when re-executed with `SERVER_ENV` set.
#[test]
#[ignore = "the server half of `ten_thousand_connections`"]
fn load_server_process() {
    let Ok(port) = std::env::var(SERVER_ENV) else {
        return;
    };
    raise_fd_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let revocations = Revocations::new();
        let auth = JwtAuthenticator::hs256(SECRET).unwrap();
        let app = axum::Router::new()
            .route("/ws", any(ws).layer(WsAuthLayer::new(auth).bearer_header()))
            .with_state(App {
                guard: SessionGuard::expiry_only().revocations(revocations.clone()),
            });
        let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}"))
            .await
            .unwrap();
        tokio::spawn(async move {
            loop {
                println!(
                    "stats allocated={} registered={}",
                    ALLOCATOR.allocated(),
                    revocations.len()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        axum::serve(listener, app).await.unwrap();
    });
}

/// The server's latest `(allocated bytes, registered connections)`.
fn stats(server: &Proc) -> (usize, usize) {
    let output = server.output();
    let line = output
        .lines()
        .rev()
        .find(|l| l.starts_with("stats "))
        .expect("no stats yet");
    let mut fields = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.split_once('=').unwrap().1.parse::<usize>().unwrap());
    (fields.next().unwrap(), fields.next().unwrap())
}

/// Waits until the server's stats satisfy `done`.
async fn wait_stats(
    server: &Proc,
    what: &str,
    done: impl Fn(usize, usize) -> bool,
) -> (usize, usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let (allocated, registered) = stats(server);
        if done(allocated, registered) {
            return (allocated, registered);
        }
        assert!(
            Instant::now() < deadline,
            "{what}: allocated {allocated}, registered {registered}"
        );
    }
}

/// Opens `CONNECTIONS` authenticated sockets, checks each with one echo,
/// holds them all open at once, then closes them all.
async fn wave(port: u16, token: &str, server: &Proc) -> (Duration, usize) {
    let started = Instant::now();
    let permits = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut opening = Vec::with_capacity(CONNECTIONS);
    for i in 0..CONNECTIONS {
        let permit = permits.clone().acquire_owned().await.unwrap();
        let bearer = format!("Bearer {token}");
        opening.push(tokio::spawn(async move {
            let mut request = format!("ws://127.0.0.1:{port}/ws")
                .into_client_request()
                .unwrap();
            request
                .headers_mut()
                .insert("authorization", bearer.parse().unwrap());
            // Small client buffers too: 10,000 clients live in this process.
            let config = WebSocketConfig::default()
                .read_buffer_size(4096)
                .write_buffer_size(4096);
            let connecting =
                tokio_tungstenite::connect_async_with_config(request, Some(config), true);
            let (mut ws, _) = tokio::time::timeout(Duration::from_secs(30), connecting)
                .await
                .expect("handshake timed out")
                .unwrap_or_else(|e| panic!("handshake {i} failed: {e}"));
            ws.send(Message::text(format!("hello {i}"))).await.unwrap();
            match tokio::time::timeout(Duration::from_secs(30), ws.next())
                .await
                .expect("echo timed out")
            {
                Some(Ok(Message::Text(text))) => assert_eq!(text.as_str(), format!("hello {i}")),
                other => panic!("connection {i}: expected the echo, got {other:?}"),
            }
            drop(permit);
            ws
        }));
    }
    let mut sockets = Vec::with_capacity(CONNECTIONS);
    for handle in opening {
        sockets.push(handle.await.unwrap());
    }
    let open_for = started.elapsed();
    let (peak, registered) = wait_stats(server, "all connections registered", |_, r| {
        r == CONNECTIONS
    })
    .await;
    assert_eq!(registered, CONNECTIONS);

    let closing: Vec<_> = sockets
        .into_iter()
        .map(|mut ws| {
            tokio::spawn(async move {
                ws.close(None).await.unwrap();
                // Read until the server's answer to the close.
                while let Some(Ok(_)) = ws.next().await {}
            })
        })
        .collect();
    for handle in closing {
        tokio::time::timeout(Duration::from_secs(30), handle)
            .await
            .expect("close timed out")
            .unwrap();
    }
    (open_for, peak)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
#[ignore = "load test: run by .ci/run with --ignored"]
async fn ten_thousand_connections() {
    let limit = raise_fd_limit();
    assert!(
        limit >= CONNECTIONS as u64 + 1000,
        "need {} open files, the limit is {limit}",
        CONNECTIONS + 1000
    );
    let port = free_port();
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["--exact", "load_server_process", "--ignored", "--nocapture"])
        .env(SERVER_ENV, port.to_string());
    let server = Proc::spawn(command);
    wait_for_port(port);

    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &serde_json::json!({ "sub": "load", "exp": exp }),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();

    let (first_open, first_peak) = wave(port, &token, &server).await;
    wait_stats(&server, "registry empty after the first wave", |_, r| {
        r == 0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let baseline = stats(&server).0;

    let (second_open, second_peak) = wave(port, &token, &server).await;
    let (after, _) = wait_stats(&server, "memory back after the second wave", |a, r| {
        r == 0 && a <= baseline + baseline / 10
    })
    .await;
    eprintln!(
        "10,000 connections: opened in {first_open:?} / {second_open:?}; server heap peak {first_peak} / {second_peak} B \
         ({} B per connection); after closing {baseline} B, then {after} B",
        second_peak.saturating_sub(baseline) / CONNECTIONS
    );
    assert!(
        after <= baseline + baseline / 10,
        "heap grew: {baseline} -> {after}"
    );
}
