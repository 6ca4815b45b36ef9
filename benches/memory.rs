//! Memory per idle authenticated connection that this crate adds, at
//! 10,000 connections.
//!
//! ```sh
//! cargo bench --bench memory
//! ```
//!
//! What is measured, with a counting global allocator (`cap`) over the
//! whole process: 10,000 server-side tokio-tungstenite `WebSocketStream`s
//! (4 KiB buffers) over in-memory `tokio::io::duplex` pipes (no file
//! descriptors, so no fd limit to raise), each held by a spawned task
//! parked waiting for the next message, as an idle connection's task is.
//! Then the same again, with what an authenticated connection holds
//! through this crate: its `Identity` (subject, two scopes, expiry, token
//! id, typed claims, as `JwtAuthenticator` builds it), a `SessionGuard`
//! wrapping the socket (`GuardedSocket`, with an expiry warning and a
//! `Revocations` registry), the registry entry, and the task parked in
//! `GuardedSocket::recv` instead of `next`. The difference per connection
//! is what the crate costs; the socket's own memory is reported beside it.
//! Not measured: the kernel's socket buffers and the request that
//! authenticated the connection (gone once the socket is up).

use std::time::Duration;

use cap::Cap;
use futures_util::StreamExt;
use serde::Deserialize;
use tokio::io::DuplexStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tower_ws_auth::{AuthMethod, Identity, JwtAuthenticator, Revocations, SessionGuard};

#[global_allocator]
static ALLOCATOR: Cap<std::alloc::System> = Cap::new(std::alloc::System, usize::MAX);

const CONNECTIONS: usize = 10_000;
const SECRET: &[u8] = b"memory-bench-hs256-secret-of-32-bytes!!";

/// Typed claims, as an application's `JwtAuthenticator<Claims>` keeps them.
#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct Claims {
    sub: String,
    tenant: String,
}

fn identity(i: usize) -> Identity {
    Identity::builder(format!("user-{i:06}"), AuthMethod::Jwt)
        .scopes(["chat:read", "chat:write"])
        .expires_in(Duration::from_secs(3600))
        .token_id(format!("jti-{i:012}"))
        .claims(Claims {
            sub: format!("user-{i:06}"),
            tenant: "acme".into(),
        })
        .build()
}

async fn socket() -> (WebSocketStream<DuplexStream>, DuplexStream) {
    let (server, client) = tokio::io::duplex(64);
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(4096);
    let ws = WebSocketStream::from_raw_socket(server, Role::Server, Some(config)).await;
    (ws, client)
}

/// Lets every spawned task run until it parks.
async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
}

async fn plain(n: usize) -> (usize, Vec<DuplexStream>, Vec<tokio::task::JoinHandle<()>>) {
    let before = ALLOCATOR.allocated();
    let mut clients = Vec::with_capacity(n);
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let (mut ws, client) = socket().await;
        tasks.push(tokio::spawn(
            async move { while ws.next().await.is_some() {} },
        ));
        clients.push(client);
    }
    settle().await;
    (ALLOCATOR.allocated() - before, clients, tasks)
}

async fn guarded(n: usize) -> (usize, Vec<DuplexStream>, Vec<tokio::task::JoinHandle<()>>) {
    let revocations = Revocations::new();
    let auth = JwtAuthenticator::hs256(SECRET).expect("key");
    let guard = SessionGuard::new(auth)
        .warn_before(Duration::from_secs(30))
        .revocations(revocations.clone());
    let before = ALLOCATOR.allocated();
    let mut clients = Vec::with_capacity(n);
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let (ws, client) = socket().await;
        let mut socket = guard.wrap(ws, identity(i));
        tasks.push(tokio::spawn(async move {
            while socket.recv().await.is_some() {}
        }));
        clients.push(client);
    }
    settle().await;
    assert_eq!(revocations.len(), n);
    (ALLOCATOR.allocated() - before, clients, tasks)
}

async fn identities(n: usize) -> usize {
    let before = ALLOCATOR.allocated();
    let all: Vec<Identity> = (0..n).map(identity).collect();
    let bytes = ALLOCATOR.allocated() - before - all.capacity() * size_of::<Identity>();
    drop(all);
    bytes
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("memory bench: run it with `cargo bench --bench memory`");
        return;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        // Warm up the runtime, the allocator and the timer wheel.
        let (_, clients, tasks) = guarded(500).await;
        drop(clients);
        for task in tasks {
            let _ = task.await;
        }
        let (_, clients, tasks) = plain(500).await;
        drop(clients);
        for task in tasks {
            let _ = task.await;
        }
        settle().await;

        let mut rows = Vec::new();
        for round in 0..3 {
            let (plain_bytes, clients, tasks) = plain(CONNECTIONS).await;
            drop(clients);
            for task in tasks {
                let _ = task.await;
            }
            settle().await;
            let (guarded_bytes, clients, tasks) = guarded(CONNECTIONS).await;
            drop(clients);
            for task in tasks {
                let _ = task.await;
            }
            settle().await;
            let identity_bytes = identities(CONNECTIONS).await;
            eprintln!(
                "round {round}: plain {} B/conn, guarded {} B/conn, identity {} B",
                plain_bytes / CONNECTIONS,
                guarded_bytes / CONNECTIONS,
                identity_bytes / CONNECTIONS
            );
            rows.push((plain_bytes, guarded_bytes, identity_bytes));
        }
        rows.sort_by_key(|(p, g, _)| g.saturating_sub(*p));
        let (plain_bytes, guarded_bytes, identity_bytes) = rows[rows.len() / 2];
        let per = |bytes: usize| bytes as f64 / CONNECTIONS as f64;
        let (lo, hi) = (
            rows.first().map_or(0, |(p, g, _)| g.saturating_sub(*p)),
            rows.last().map_or(0, |(p, g, _)| g.saturating_sub(*p)),
        );
        println!();
        println!(
            "`cargo bench --bench memory` — {CONNECTIONS} idle server-side connections \
             (tokio-tungstenite over in-memory pipes, 4 KiB buffers), median of 3 rounds"
        );
        println!();
        println!("| per idle connection | bytes |");
        println!("|---|---|");
        println!(
            "| socket and its parked task, without this crate | {:.0} |",
            per(plain_bytes)
        );
        println!(
            "| the same with this crate (Identity + GuardedSocket + Revocations entry) | {:.0} |",
            per(guarded_bytes)
        );
        println!(
            "| **attributable to this crate** | **{:.0}** [{:.0}, {:.0}] |",
            per(guarded_bytes.saturating_sub(plain_bytes)),
            per(lo),
            per(hi)
        );
        println!(
            "| of which the `Identity` (heap) | {:.0} |",
            per(identity_bytes)
        );
    });
}
