//! Scale: 100,000 concurrent authenticated connections on one machine,
//! revocation fan-out through the local bus and through Redis, and an
//! expiry storm.
//!
//! ```sh
//! cargo bench --features redis --bench scale                  # 100,000 connections, a few minutes
//! SCALE_BENCH_CONNECTIONS=5000 cargo bench --features redis --bench scale   # a quick run
//! ```
//!
//! The bench binary runs itself again with `SCALE_BENCH_SERVER` set to
//! become a server: axum 0.8, `WsAuthLayer` with an HS256
//! `JwtAuthenticator` (bearer header), a `SessionGuard` (expiry, in-band
//! refresh through the same authenticator) registering every socket in a
//! `Revocations` registry, 4 KiB WebSocket buffers, a counting global
//! allocator (`cap`), one tokio worker thread. It is driven over its
//! stdin/stdout, one line per command (`stats`, `revoke_subjects START
//! COUNT`, `revoke_token ID`), and exits when its stdin closes. The
//! tokio-tungstenite clients live in this process (one worker thread), bound
//! to 127.0.x.y source addresses and explicit source ports (10,000
//! connections per address, ports from 20,000, a new
//! range per wave) so that ephemeral ports never run out; both processes
//! raise their file-descriptor limit themselves (up to
//! `/proc/sys/fs/nr_open`).
//!
//! Every process needs a descriptor per connection: when the open-file
//! limit cannot be raised far enough (the hard limit needs
//! `CAP_SYS_RESOURCE`), the bench lowers the count to what fits and says so
//! loudly.
//!
//! Scenarios, in this order, reported as one table on stdout:
//!
//! 1. **The registry alone**: `SCALE_BENCH_REGISTRY` (default 100,000)
//!    identities registered in a `Revocations` in this process (no sockets),
//!    a tenth as many subjects; the time of 1 and of 1,000 `revoke_subject`
//!    calls, on one registry and on one of two sharing a `LocalBus`.
//! 2. **Local**: one server process, two registries sharing a `LocalBus`
//!    (`/ws/0` and `/ws/1`, half the connections each), a warm-up wave of
//!    2,000 connections, then the baseline. Waves of
//!    `SCALE_BENCH_CONNECTIONS` (default 100,000) connections over
//!    `SCALE_BENCH_SUBJECTS` (default a tenth of that) subjects, 256
//!    handshakes in flight: handshakes per second, p50/p99 handshake
//!    latency, server memory per connection (allocator and RSS).
//!    - **Expiry storm**: a wave whose tokens all carry the same `exp`, set
//!      so that the wave is open before it: every socket must close with
//!      4002 within 2 s of `exp`, while a control connection (another
//!      subject, far expiry) measures echo round trips; then the server's
//!      allocated bytes must be back within 10 % of the baseline.
//!    - **Bare WebSocket**: the same wave on a route without the layer and
//!      the guard (`/ws/9`): what the socket costs without this crate.
//!    - **Revocations** on the first registry, timed from the command to
//!      the last affected client's Close frame (4003, checked): one subject
//!      (5 times), one token id (3 times), 1,000 subjects in a burst (up to
//!      3 times, as many as the subjects allow), with the server's and the
//!      clients' CPU time. The clients close the rest.
//! 3. **Redis** (feature `redis`, a `redis-server` binary found as the tests
//!    find it): a private `redis-server`, two server processes with a
//!    `RedisBus` each, half the connections on each (every subject on
//!    both), the same revocations issued on the first: the fan-out through
//!    Redis, and Redis's own command count per revocation.
//!
//! `Revocation` has subject, session and token variants; "everything issued
//! before T" does not exist in this version, so it is not measured (the
//! expiry storm closes every socket at once, the same close work).
//!
//! Bounded: every wait has a timeout (60 s without a handshake completing
//! while a wave opens, 30 s per fan-out or close, 60 s per server reply),
//! servers exit with their stdin, loopback only. `cargo test` does not run it (without
//! `--bench` it returns at once).

#[cfg(feature = "redis")]
#[path = "../tests/common/redis.rs"]
mod redis;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::extract::ws::{Message as AxumMessage, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::any;
use cap::Cap;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpSocket;
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tower_ws_auth::{
    Identity, WsAuthLayer,
    jwt::JwtAuthenticator,
    socket::{LocalBus, Revocations, SessionGuard},
};

#[global_allocator]
static ALLOCATOR: Cap<std::alloc::System> = Cap::new(std::alloc::System, usize::MAX);

const SERVER_ENV: &str = "SCALE_BENCH_SERVER";
const SECRET: &str = "scale-bench-hs256-secret-0123456789abcdef";
const IN_FLIGHT: usize = 256;
const PER_SOURCE_ADDRESS: usize = 10_000;
/// Client source ports: `FIRST_SOURCE_PORT..FIRST_SOURCE_PORT + 10,000` on
/// each 127.0.x.y (no server listens there: they listen on 127.0.0.1).
const FIRST_SOURCE_PORT: u16 = 20_000;
/// The route (`/ws/9`) of a WebSocket without this crate, for comparison.
const BARE: usize = 9;
const WARM_UP: usize = 2_000;
const FAN_OUT_TIMEOUT: Duration = Duration::from_secs(30);
/// Pages of `/proc/self/statm` (x86-64 and aarch64 Linux defaults).
const PAGE: usize = 4096;

fn raise_fd_limit(want: u64) -> u64 {
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(1 << 20);
    let want = want.min(nr_open);
    let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap_or((0, 0));
    if soft >= want {
        return soft;
    }
    // Root may raise the hard limit; anyone may raise the soft one to it.
    if rlimit::setrlimit(rlimit::Resource::NOFILE, want, want.max(hard)).is_err() {
        let _ = rlimit::setrlimit(rlimit::Resource::NOFILE, hard.min(want), hard);
    }
    rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(0, |(soft, _)| soft)
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
}

// ---------------------------------------------------------------- server

async fn ws(
    ws: WebSocketUpgrade,
    State(guard): State<SessionGuard<JwtAuthenticator>>,
    identity: Identity,
) -> Response {
    ws.read_buffer_size(4096)
        .write_buffer_size(4096)
        .on_upgrade(move |socket| async move {
            let mut socket = guard.wrap(socket, identity);
            while let Some(Ok(message)) = socket.recv().await {
                if let AxumMessage::Text(text) = message
                    && socket.send(AxumMessage::Text(text)).await.is_err()
                {
                    break;
                }
            }
        })
}

/// The same socket without this crate: no layer, no guard, no registry.
async fn bare(ws: WebSocketUpgrade) -> Response {
    ws.read_buffer_size(4096)
        .write_buffer_size(4096)
        .on_upgrade(move |mut socket| async move {
            while let Some(Ok(message)) = socket.recv().await {
                if let AxumMessage::Text(text) = message
                    && socket.send(AxumMessage::Text(text)).await.is_err()
                {
                    break;
                }
            }
        })
}

/// This process's CPU time (user + system, all threads), in 10 ms ticks.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let ticks: u64 = stat
        .rsplit_once(") ")
        .map(|(_, rest)| {
            rest.split_whitespace()
                .skip(11)
                .take(2)
                .filter_map(|t| t.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    // USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

fn rss() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<usize>().ok())
        .map_or(0, |pages| pages * PAGE)
}

/// Revokes subjects `user-START` .. `user-START+COUNT` at once (the calls
/// run concurrently, as an admin endpoint serving a burst would).
async fn revoke_subjects(registry: &Revocations, start: usize, count: usize) -> usize {
    let calls = (start..start + count).map(|s| {
        let registry = registry.clone();
        async move { registry.revoke_subject(&format!("user-{s}")).await }
    });
    futures_util::future::join_all(calls)
        .await
        .into_iter()
        .map(|r| r.expect("revocation published"))
        .sum()
}

fn server(mode: String) {
    raise_fd_limit(1 << 20);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let registries = if mode == "local" {
            let bus = LocalBus::new();
            vec![
                Revocations::with_bus(bus.clone()).await.expect("local bus"),
                Revocations::with_bus(bus).await.expect("local bus"),
            ]
        } else {
            redis_registry(&mode).await
        };
        let auth = JwtAuthenticator::hs256(SECRET).expect("HS256 key");
        let mut app = Router::new();
        for (k, registry) in registries.iter().enumerate() {
            let guard = SessionGuard::new(auth.clone()).revocations(registry.clone());
            app = app.merge(
                Router::new()
                    .route(
                        &format!("/ws/{k}"),
                        any(ws).layer(WsAuthLayer::new(auth.clone()).bearer_header()),
                    )
                    .with_state(guard),
            );
        }
        app = app.route(&format!("/ws/{BARE}"), any(bare));
        // tokio's `TcpListener::bind` listens with a backlog of 128: with
        // 256 handshakes in flight the accept queue overflows and the kernel
        // drops SYNs, which the clients retry after 1 s.
        let socket = TcpSocket::new_v4().expect("socket");
        socket.set_reuseaddr(true).expect("SO_REUSEADDR");
        socket
            .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .expect("bind");
        let listener = socket.listen(4096).expect("listen");
        let port = listener.local_addr().expect("local address").port();
        tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
        println!("PORT {port}");

        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let words: Vec<&str> = line.split_whitespace().collect();
            let reply = match words.as_slice() {
                ["stats"] => format!(
                    "STATS {} {} {} {}",
                    ALLOCATOR.allocated(),
                    rss(),
                    registries.iter().map(Revocations::len).sum::<usize>(),
                    cpu_time().as_millis()
                ),
                ["revoke_subjects", start, count] => {
                    let started = Instant::now();
                    let closed = revoke_subjects(
                        &registries[0],
                        start.parse().expect("start"),
                        count.parse().expect("count"),
                    )
                    .await;
                    format!("REVOKED {closed} {}", started.elapsed().as_micros())
                }
                ["revoke_token", id] => {
                    let started = Instant::now();
                    let closed = registries[0].revoke_token(id).await.expect("published");
                    format!("REVOKED {closed} {}", started.elapsed().as_micros())
                }
                _ => format!("ERROR unknown command {line:?}"),
            };
            println!("{reply}");
        }
    });
}

#[cfg(feature = "redis")]
async fn redis_registry(mode: &str) -> Vec<Revocations> {
    let url = mode
        .strip_prefix("redis=")
        .expect("mode local or redis=URL");
    let bus = tower_ws_auth::socket::RedisBus::connect(url)
        .await
        .expect("connect to Redis");
    vec![Revocations::with_bus(bus).await.expect("subscribe")]
}

#[cfg(not(feature = "redis"))]
async fn redis_registry(mode: &str) -> Vec<Revocations> {
    panic!("server mode {mode:?} needs the feature `redis`")
}

// ---------------------------------------------------------------- control

struct Server {
    _child: Child,
    stdin: ChildStdin,
    stdout: tokio::io::Lines<BufReader<ChildStdout>>,
    addr: SocketAddr,
}

#[derive(Debug, Clone, Copy)]
struct Stats {
    allocated: usize,
    rss: usize,
    registered: usize,
    cpu: Duration,
}

impl Server {
    async fn start(mode: &str) -> Server {
        let mut child =
            tokio::process::Command::new(std::env::current_exe().expect("bench executable"))
                .env(SERVER_ENV, mode)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .expect("spawn server");
        let stdin = child.stdin.take().expect("stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let line = tokio::time::timeout(Duration::from_secs(20), stdout.next_line())
            .await
            .expect("server start timed out")
            .expect("server output")
            .expect("server exited before it was ready");
        let port: u16 = line
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
            .expect("PORT line");
        Server {
            _child: child,
            stdin,
            stdout,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    async fn send(&mut self, command: &str) {
        self.stdin
            .write_all(format!("{command}\n").as_bytes())
            .await
            .expect("server control");
        self.stdin.flush().await.expect("server control");
    }

    async fn reply(&mut self) -> String {
        tokio::time::timeout(Duration::from_secs(60), self.stdout.next_line())
            .await
            .expect("server reply timed out")
            .expect("server output")
            .expect("server exited")
    }

    async fn stats(&mut self) -> Stats {
        self.send("stats").await;
        let line = self.reply().await;
        let fields: Vec<usize> = line
            .strip_prefix("STATS ")
            .expect("STATS line")
            .split_whitespace()
            .map(|f| f.parse().expect("number"))
            .collect();
        Stats {
            allocated: fields[0],
            rss: fields[1],
            registered: fields[2],
            cpu: Duration::from_millis(fields[3] as u64),
        }
    }

    /// Polls the stats until `done`, for at most 60 s.
    async fn wait(&mut self, what: &str, done: impl Fn(&Stats) -> bool) -> Stats {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let stats = self.stats().await;
            if done(&stats) {
                return stats;
            }
            assert!(Instant::now() < deadline, "{what}: {stats:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

// ---------------------------------------------------------------- clients

/// A Close frame (or the end of the stream) seen by client `index`.
struct Closed {
    index: usize,
    at: Instant,
    code: Option<u16>,
}

struct Wave {
    /// The targets (server address and route) and subject of each connection.
    subjects: usize,
    opened: Duration,
    latencies: Vec<Duration>,
    closed: mpsc::UnboundedReceiver<Closed>,
    close_all: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Close events seen while waiting for others.
    early: HashMap<usize, Closed>,
    /// The kernel's TCP counters that moved while opening (SYN drops...).
    kernel: String,
}

/// The kernel's `TcpExt` counters that explain slow handshakes on loopback
/// (a dropped SYN is retried after 1 s).
const TCP_COUNTERS: [&str; 5] = [
    "ListenOverflows",
    "ListenDrops",
    "TCPReqQFullDrop",
    "SyncookiesSent",
    "TCPTimeouts",
];

fn tcp_counters() -> HashMap<String, u64> {
    let text = std::fs::read_to_string("/proc/net/netstat").unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("TcpExt:")).collect();
    let mut counters = HashMap::new();
    if let [names, values] = lines.as_slice() {
        for (name, value) in names
            .split_whitespace()
            .zip(values.split_whitespace())
            .skip(1)
        {
            if let Ok(value) = value.parse() {
                counters.insert(name.to_owned(), value);
            }
        }
    }
    counters
}

fn counters_moved(before: &HashMap<String, u64>) -> String {
    let after = tcp_counters();
    let moved: Vec<String> = TCP_COUNTERS
        .iter()
        .filter_map(|name| {
            let delta = after.get(*name)?.saturating_sub(*before.get(*name)?);
            (delta > 0).then(|| format!("{name} +{delta}"))
        })
        .collect();
    if moved.is_empty() {
        "no SYN drops".to_owned()
    } else {
        moved.join(", ")
    }
}

fn token(subject: &str, jti: &str, exp: u64) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &serde_json::json!({ "sub": subject, "jti": jti, "exp": exp, "iat": unix_now().as_secs() }),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("token")
}

async fn connect(
    source: SocketAddr,
    target: (SocketAddr, usize),
    bearer: &str,
) -> tokio_tungstenite::WebSocketStream<tokio::net::TcpStream> {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_reuseaddr(true).expect("SO_REUSEADDR");
    socket
        .bind(source)
        .unwrap_or_else(|e| panic!("bind {source}: {e}"));
    let stream = socket.connect(target.0).await.expect("connect");
    stream.set_nodelay(true).expect("TCP_NODELAY");
    let mut request = format!("ws://{}/ws/{}", target.0, target.1)
        .into_client_request()
        .expect("request");
    request
        .headers_mut()
        .insert("authorization", bearer.parse().expect("header"));
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(4096);
    let (ws, _) = tokio_tungstenite::client_async_with_config(request, stream, Some(config))
        .await
        .expect("handshake");
    ws
}

/// Opens `n` connections: connection `i` has subject `user-{i % subjects}`,
/// token id `jti-{wave}-{i}`, expiry `exp`, and goes to `targets[(i /
/// subjects) % targets.len()]` (so every subject has connections on every
/// target); source addresses `127.0.{wave}.{1 + i / 10,000}`.
async fn open(
    wave: u8,
    n: usize,
    subjects: usize,
    exp: u64,
    targets: &[(SocketAddr, usize)],
) -> Wave {
    let bearers: Vec<String> = (0..n)
        .map(|i| {
            format!(
                "Bearer {}",
                token(
                    &format!("user-{}", i % subjects),
                    &format!("jti-{wave}-{i}"),
                    exp
                )
            )
        })
        .collect();
    let (closed_tx, closed) = mpsc::unbounded_channel();
    let (close_all, close_rx) = watch::channel(false);
    let (opened_tx, mut opened_rx) = mpsc::unbounded_channel::<Duration>();
    let permits = Arc::new(Semaphore::new(IN_FLIGHT));
    let counters = tcp_counters();
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for (i, bearer) in bearers.into_iter().enumerate() {
        let permit = permits.clone().acquire_owned().await.expect("semaphore");
        let target = targets[(i / subjects) % targets.len()];
        // An explicit source port, below the ephemeral range: with port 0
        // the kernel searches for a free port on every bind, and that search
        // (`inet_bhash2_conflict`) took most of this process's CPU at
        // 19,000 connections.
        let source = SocketAddr::from((
            [127, 0, wave, 1 + (i / PER_SOURCE_ADDRESS) as u8],
            FIRST_SOURCE_PORT + (i % PER_SOURCE_ADDRESS) as u16,
        ));
        let closed_tx = closed_tx.clone();
        let opened_tx = opened_tx.clone();
        let mut close_rx = close_rx.clone();
        tasks.push(tokio::spawn(async move {
            let began = Instant::now();
            let mut ws = connect(source, target, &bearer).await;
            drop(bearer);
            let _ = opened_tx.send(began.elapsed());
            drop(permit);
            loop {
                tokio::select! {
                    message = ws.next() => match message {
                        Some(Ok(Message::Close(frame))) => {
                            let _ = closed_tx.send(Closed { index: i, at: Instant::now(), code: frame.map(|f| u16::from(f.code)) });
                            // Answer the Close and read to the end.
                            while let Some(Ok(_)) = ws.next().await {}
                            return;
                        }
                        Some(Ok(_)) => {}
                        None | Some(Err(_)) => {
                            let _ = closed_tx.send(Closed { index: i, at: Instant::now(), code: None });
                            return;
                        }
                    },
                    _ = close_rx.changed() => {
                        let _ = ws.close(None).await;
                        while let Some(Ok(_)) = ws.next().await {}
                        return;
                    }
                }
            }
        }));
    }
    drop(opened_tx);
    let mut latencies = Vec::with_capacity(n);
    while latencies.len() < n {
        match tokio::time::timeout(Duration::from_secs(60), opened_rx.recv()).await {
            Ok(Some(latency)) => latencies.push(latency),
            Ok(None) => panic!(
                "{} of {n} connections opened: a handshake failed",
                latencies.len()
            ),
            Err(_) => panic!("{} of {n} connections opened: timed out", latencies.len()),
        }
    }
    let opened = started.elapsed();
    let kernel = counters_moved(&counters);
    latencies.sort();
    Wave {
        subjects,
        opened,
        latencies,
        closed,
        close_all,
        tasks,
        early: HashMap::new(),
        kernel,
    }
}

impl Wave {
    fn n(&self) -> usize {
        self.latencies.len()
    }

    fn rate(&self) -> f64 {
        self.n() as f64 / self.opened.as_secs_f64()
    }

    fn latency(&self, q: f64) -> Duration {
        quantile(&self.latencies, q)
    }

    /// Waits for the Close of every connection `expected` picks; returns
    /// them. Panics after `timeout`.
    async fn closes(&mut self, expected: impl Fn(usize) -> bool, timeout: Duration) -> Vec<Closed> {
        let want = (0..self.n()).filter(|&i| expected(i)).count();
        let mut got: Vec<Closed> = Vec::with_capacity(want);
        let early: Vec<usize> = self
            .early
            .keys()
            .copied()
            .filter(|&i| expected(i))
            .collect();
        for i in early {
            got.extend(self.early.remove(&i));
        }
        let deadline = tokio::time::Instant::now() + timeout;
        while got.len() < want {
            match tokio::time::timeout_at(deadline, self.closed.recv()).await {
                Ok(Some(closed)) if expected(closed.index) => got.push(closed),
                Ok(Some(closed)) => {
                    self.early.insert(closed.index, closed);
                }
                Ok(None) => break,
                Err(_) => panic!(
                    "{} of {want} expected closes arrived in {timeout:?}",
                    got.len()
                ),
            }
        }
        got
    }

    /// Closes every connection still open from the client side, waits for
    /// the tasks.
    async fn close(self) {
        let _ = self.close_all.send(true);
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
        }
    }
}

fn quantile<T: Copy>(sorted: &[T], q: f64) -> T {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn median_range(mut samples: Vec<Duration>) -> String {
    samples.sort();
    format!(
        "{} [{}, {}]",
        ms(quantile(&samples, 0.5)),
        ms(samples[0]),
        ms(samples[samples.len() - 1])
    )
}

/// A control connection of its own subject, far from expiry, that echoes.
async fn control(
    target: (SocketAddr, usize),
) -> tokio_tungstenite::WebSocketStream<tokio::net::TcpStream> {
    let exp = unix_now().as_secs() + 3600;
    connect(
        SocketAddr::from(([127, 0, 200, 1], 0)),
        target,
        &format!("Bearer {}", token("control", "jti-control", exp)),
    )
    .await
}

async fn echo(ws: &mut tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>) -> Duration {
    let sent = Instant::now();
    ws.send(Message::text("ping")).await.expect("echo send");
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Text(_)))) => return sent.elapsed(),
            Ok(Some(Ok(_))) => {}
            other => panic!("control connection: expected the echo, got {other:?}"),
        }
    }
}

// ---------------------------------------------------------------- scenarios

struct Revoker<'a> {
    server: &'a mut Server,
}

impl Revoker<'_> {
    /// Sends `command`, waits for the Close of every connection `expected`
    /// picks: (time from the command to the last Close, codes seen, the
    /// server's `revoke_*` call time).
    async fn fan_out(
        &mut self,
        wave: &mut Wave,
        command: &str,
        expected: impl Fn(usize) -> bool,
    ) -> FanOut {
        let (server_cpu, client_cpu) = (self.server.stats().await.cpu, cpu_time());
        let sent = Instant::now();
        self.server.send(command).await;
        let closes = wave.closes(expected, FAN_OUT_TIMEOUT).await;
        let last = closes.iter().map(|c| c.at).max().unwrap_or(sent);
        let client_cpu = cpu_time().saturating_sub(client_cpu);
        let reply = self.server.reply().await;
        let call_us: u64 = reply
            .split_whitespace()
            .nth(2)
            .and_then(|v| v.parse().ok())
            .expect("REVOKED line");
        let server_cpu = self.server.stats().await.cpu.saturating_sub(server_cpu);
        let wrong = closes.iter().filter(|c| c.code != Some(4003)).count();
        assert_eq!(wrong, 0, "{command}: {wrong} sockets closed without 4003");
        FanOut {
            took: last - sent,
            closed: closes.len(),
            call: Duration::from_micros(call_us),
            server_cpu,
            client_cpu,
        }
    }
}

struct FanOut {
    /// From the command to the last Close at a client.
    took: Duration,
    closed: usize,
    /// The server's `revoke_*` calls.
    call: Duration,
    /// CPU time of the revoking server (until its reply) and of the clients
    /// (until the last Close), 10 ms ticks.
    server_cpu: Duration,
    client_cpu: Duration,
}

struct Figures {
    rows: Vec<(String, String)>,
}

impl Figures {
    fn row(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let (name, value) = (name.into(), value.into());
        eprintln!("  {name}: {value}");
        self.rows.push((name, value));
    }
}

fn mib(bytes: usize) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

fn per_connection(after: Stats, before: Stats, n: usize) -> String {
    format!(
        "{} B allocated, {} B RSS",
        after.allocated.saturating_sub(before.allocated) / n,
        after.rss.saturating_sub(before.rss) / n
    )
}

fn wave_rows(figures: &mut Figures, name: &str, wave: &Wave) {
    figures.row(
        format!("{name}: opening"),
        format!(
            "{} connections in {:.1} s: {:.0} handshakes/s, latency p50 {} / p99 {} / max {} (kernel: {})",
            wave.n(),
            wave.opened.as_secs_f64(),
            wave.rate(),
            ms(wave.latency(0.5)),
            ms(wave.latency(0.99)),
            ms(wave.latency(1.0)),
            wave.kernel
        ),
    );
}

/// Revocations on an open wave: 5 single subjects, 3 token ids, 3 bursts
/// of 1,000 subjects (fewer if the wave has fewer subjects).
async fn revocations(figures: &mut Figures, name: &str, server: &mut Server, wave: &mut Wave) {
    let subjects = wave.subjects;
    let (burst, rounds) = bursts(subjects);
    let mut revoker = Revoker { server };
    let mut single = Vec::new();
    let mut per = 0;
    for k in 0..5 {
        let s = subjects - 1 - k;
        let f = revoker
            .fan_out(wave, &format!("revoke_subjects {s} 1"), |i| {
                i % subjects == s
            })
            .await;
        per = f.closed;
        single.push(f.took);
    }
    figures.row(
        format!("{name}: revoke 1 subject ({per} sockets), command to last Close"),
        median_range(single),
    );
    let mut tokens = Vec::new();
    for k in 0..3 {
        // A connection of a subject none of the other revocations touch.
        let i = (subjects - 10 + subjects * k) % wave.n();
        let jti = format!("jti-{}-{i}", wave_id(name));
        let f = revoker
            .fan_out(wave, &format!("revoke_token {jti}"), |j| j == i)
            .await;
        tokens.push(f.took);
    }
    figures.row(
        format!("{name}: revoke 1 token id (1 socket)"),
        median_range(tokens),
    );
    let mut bursts = Vec::new();
    let mut calls = Vec::new();
    let mut cpu = Vec::new();
    let mut closed = 0;
    for k in 0..rounds {
        let start = k * burst;
        let f = revoker
            .fan_out(wave, &format!("revoke_subjects {start} {burst}"), |i| {
                (start..start + burst).contains(&(i % subjects))
            })
            .await;
        closed = f.closed;
        cpu.push(format!(
            "{} / {} / {}",
            ms(f.took),
            ms(f.server_cpu),
            ms(f.client_cpu)
        ));
        bursts.push(f.took);
        calls.push(f.call);
    }
    figures.row(
        format!(
            "{name}: revoke {burst} subjects in a burst ({closed} sockets), command to last Close"
        ),
        median_range(bursts),
    );
    figures.row(
        format!("{name}: of which the {burst} `revoke_subject` calls (server side)"),
        median_range(calls),
    );
    figures.row(
        format!("{name}: each burst, wall / revoking server's CPU / clients' CPU"),
        cpu.join("; "),
    );
}

/// The burst size (1,000 subjects, fewer if there are not enough) and how
/// many bursts (up to 3) fit in the subjects that the single-subject and
/// token revocations (the last 10) leave untouched.
fn bursts(subjects: usize) -> (usize, usize) {
    let free = subjects - 20;
    let burst = 1000.min(free / 3).max(1).max(1000.min(free));
    (burst, (free / burst).clamp(1, 3))
}

fn wave_id(name: &str) -> u8 {
    if name.starts_with("redis") { 3 } else { 1 }
}

async fn local(figures: &mut Figures, n: usize, subjects: usize) {
    let mut server = Server::start("local").await;
    let targets = [(server.addr, 0), (server.addr, 1)];
    let cold = server.stats().await;
    let far = unix_now().as_secs() + 3600;
    let warm = open(9, WARM_UP.min(n), subjects.min(WARM_UP), far, &targets).await;
    // Generous: the storm wave must be open before its tokens expire.
    let lead = Duration::from_secs_f64(n as f64 / warm.rate() * 2.5) + Duration::from_secs(15);
    warm.close().await;
    server.wait("warm-up closed", |s| s.registered == 0).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let baseline = server.stats().await;
    figures.row(
        "local: server baseline (after a warm-up wave of 2,000)",
        format!(
            "{} allocated, {} RSS (cold start: {}, {})",
            mib(baseline.allocated),
            mib(baseline.rss),
            mib(cold.allocated),
            mib(cold.rss)
        ),
    );

    storm(figures, &mut server, &targets, n, subjects, lead, baseline).await;

    // The same connections without this crate, for its share.
    let before = server.stats().await;
    let wave = open(4, n, subjects, far, &[(server.addr, BARE)]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let bare_stats = server.stats().await;
    wave_rows(
        figures,
        "local, bare WebSocket wave (no layer, no guard)",
        &wave,
    );
    wave.close().await;
    let bare_per = bare_stats.allocated.saturating_sub(before.allocated) / n;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let bare_after = server.stats().await;
    figures.row(
        "local, bare WebSocket wave: server memory after all closed (no registry, no guard)",
        format!(
            "{} allocated ({:+} B against before the wave)",
            mib(bare_after.allocated),
            bare_after.allocated as i64 - before.allocated as i64
        ),
    );

    let before = server.stats().await;
    let mut wave = open(1, n, subjects, far, &targets).await;
    server.wait("all registered", |s| s.registered == n).await;
    wave_rows(figures, "local, revocation wave", &wave);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let open_stats = server.stats().await;
    figures.row(
        format!("local, revocation wave: server memory per idle connection ({n} open)"),
        format!(
            "{} (total {} allocated, {} RSS)",
            per_connection(open_stats, before, n),
            mib(open_stats.allocated),
            mib(open_stats.rss)
        ),
    );
    let guarded_per = open_stats.allocated.saturating_sub(before.allocated) / n;
    figures.row(
        "local: of which this crate (guarded minus bare WebSocket, allocator)",
        format!(
            "{} B per connection (bare: {bare_per} B, {} B RSS)",
            guarded_per as i64 - bare_per as i64,
            bare_stats.rss.saturating_sub(before.rss) / n
        ),
    );
    revocations(figures, "local", &mut server, &mut wave).await;
    wave.close().await;
    server.wait("all closed", |s| s.registered == 0).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = server.stats().await;
    figures.row(
        "local, revocation wave: server memory after all closed",
        format!(
            "{} allocated ({:+.1} % of baseline; the revocations are remembered for 10 minutes), {} RSS",
            mib(after.allocated),
            (after.allocated as f64 / baseline.allocated as f64 - 1.0) * 100.0,
            mib(after.rss)
        ),
    );
}

/// The expiry storm: `n` connections whose tokens share one `exp`, `lead`
/// from now.
async fn storm(
    figures: &mut Figures,
    server: &mut Server,
    targets: &[(SocketAddr, usize)],
    n: usize,
    subjects: usize,
    lead: Duration,
    baseline: Stats,
) {
    let mut control = control(targets[0]).await;
    let exp_secs = (unix_now() + lead).as_secs() + 1;
    let exp_instant = Instant::now() + (Duration::from_secs(exp_secs) - unix_now());
    let mut wave = open(2, n, subjects, exp_secs, targets).await;
    assert!(
        Instant::now() < exp_instant,
        "the storm wave opened after its exp: raise the lead"
    );
    server
        .wait("storm wave registered", |s| s.registered == n + 1)
        .await;
    wave_rows(figures, "local, expiry-storm wave", &wave);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let open_stats = server.stats().await;
    figures.row(
        format!("local, expiry-storm wave: server memory per idle connection ({n} open)"),
        format!(
            "{} (total {} allocated, {} RSS)",
            per_connection(open_stats, baseline, n),
            mib(open_stats.allocated),
            mib(open_stats.rss)
        ),
    );
    // Echo round trips on the control connection: idle, then through the storm.
    let mut idle = Vec::new();
    while Instant::now() + Duration::from_secs(2) < exp_instant && idle.len() < 400 {
        idle.push(echo(&mut control).await);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    while Instant::now() + Duration::from_millis(500) < exp_instant {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (server_cpu, client_cpu) = (server.stats().await.cpu, cpu_time());
    let storm_end = exp_instant + Duration::from_secs(3);
    let pinger = tokio::spawn(async move {
        let mut rtts = Vec::new();
        while Instant::now() < storm_end {
            let sent = Instant::now();
            rtts.push((sent, echo(&mut control).await));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        (rtts, control)
    });
    let closes = wave.closes(|_| true, Duration::from_secs(30)).await;
    let client_cpu = cpu_time().saturating_sub(client_cpu);
    let server_cpu = server.stats().await.cpu.saturating_sub(server_cpu);
    let (rtts, mut control) = pinger.await.expect("pinger");
    let expired = closes.iter().filter(|c| c.code == Some(4002)).count();
    let mut late: Vec<Duration> = closes
        .iter()
        .map(|c| c.at.saturating_duration_since(exp_instant))
        .collect();
    late.sort();
    let early = closes.iter().filter(|c| c.at < exp_instant).count();
    figures.row(
        format!("expiry storm: sockets closed with 4002 ({n} expiring in the same second)"),
        format!(
            "{expired} of {n}{}",
            if early > 0 {
                format!(", {early} before exp")
            } else {
                String::new()
            }
        ),
    );
    figures.row(
        "expiry storm: Close received after exp, p50 / p99 / last",
        format!(
            "{} / {} / {} ({})",
            ms(quantile(&late, 0.5)),
            ms(quantile(&late, 0.99)),
            ms(quantile(&late, 1.0)),
            if expired == n && quantile(&late, 1.0) <= Duration::from_secs(2) {
                "all within 2 s"
            } else {
                "NOT all within 2 s"
            }
        ),
    );
    figures.row(
        "expiry storm: CPU from 0.5 s before exp to the last Close, server / clients",
        format!("{} / {}", ms(server_cpu), ms(client_cpu)),
    );
    idle.sort();
    let mut during: Vec<Duration> = rtts
        .iter()
        .filter(|(sent, _)| *sent + Duration::from_millis(500) >= exp_instant)
        .map(|(_, rtt)| *rtt)
        .collect();
    during.sort();
    if !idle.is_empty() && !during.is_empty() {
        figures.row(
            "expiry storm: control echo round trip, before → during the storm (p50 / p99 / max)",
            format!(
                "{} / {} / {} → {} / {} / {} ({} round trips during)",
                ms(quantile(&idle, 0.5)),
                ms(quantile(&idle, 0.99)),
                ms(quantile(&idle, 1.0)),
                ms(quantile(&during, 0.5)),
                ms(quantile(&during, 0.99)),
                ms(quantile(&during, 1.0)),
                during.len()
            ),
        );
    }
    wave.close().await;
    let _ = control.close(None).await;
    while let Some(Ok(_)) = control.next().await {}
    let after = server.wait("storm closed", |s| s.registered == 0).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = {
        let later = server.stats().await;
        if later.registered == 0 { later } else { after }
    };
    figures.row("expiry storm: server memory after all expired", {
        let growth = after.allocated as f64 / baseline.allocated as f64 - 1.0;
        format!(
            "{} allocated ({:+.1} % of baseline, {:+} B: {}), {} RSS",
            mib(after.allocated),
            growth * 100.0,
            after.allocated as i64 - baseline.allocated as i64,
            if growth <= 0.10 {
                "within 10 %"
            } else {
                "NOT within 10 %"
            },
            mib(after.rss)
        )
    });
}

#[cfg(feature = "redis")]
fn redis_commands(port: u16) -> Option<u64> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream.write_all(b"INFO stats\r\n").ok()?;
    let mut reply = Vec::new();
    let mut buf = [0u8; 8192];
    while !reply.ends_with(b"\r\n\r\n")
        && !String::from_utf8_lossy(&reply).contains("total_net_input_bytes")
    {
        let read = stream.read(&mut buf).ok()?;
        if read == 0 {
            break;
        }
        reply.extend_from_slice(&buf[..read]);
    }
    String::from_utf8_lossy(&reply)
        .lines()
        .find_map(|l| l.strip_prefix("total_commands_processed:"))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(feature = "redis")]
async fn through_redis(figures: &mut Figures, n: usize, subjects: usize) {
    let Some(redis) = redis::RedisServer::start("scale bench, Redis scenario") else {
        return;
    };
    let url = redis.url();
    let mut a = Server::start(&format!("redis={url}")).await;
    let mut b = Server::start(&format!("redis={url}")).await;
    let targets = [(a.addr, 0), (b.addr, 0)];
    let (base_a, base_b) = (a.stats().await, b.stats().await);
    let mut wave = open(3, n, subjects, unix_now().as_secs() + 3600, &targets).await;
    let half = n / 2;
    let sa = a
        .wait("instance A registered", |s| s.registered >= half)
        .await;
    let sb = b
        .wait("instance B registered", |s| s.registered >= half)
        .await;
    wave_rows(figures, "redis (2 instances)", &wave);
    figures.row(
        "redis: server memory per idle connection (instance A, B)",
        format!(
            "{}; {}",
            per_connection(sa, base_a, sa.registered),
            per_connection(sb, base_b, sb.registered)
        ),
    );
    let commands = redis_commands(redis.port);
    revocations(figures, "redis", &mut a, &mut wave).await;
    if let (Some(before), Some(after)) = (commands, redis_commands(redis.port)) {
        // 5 + 3 + 3 × burst revocations; the two INFO calls count too.
        let (burst, rounds) = bursts(subjects);
        let revocations = 8 + (rounds * burst) as u64;
        figures.row(
            "redis: commands Redis processed per revocation",
            format!(
                "{:.2} ({} commands for {revocations} revocations)",
                (after - before - 1) as f64 / revocations as f64,
                after - before - 1
            ),
        );
    }
    wave.close().await;
    a.wait("instance A closed", |s| s.registered == 0).await;
    b.wait("instance B closed", |s| s.registered == 0).await;
}

#[cfg(not(feature = "redis"))]
async fn through_redis(_figures: &mut Figures, _n: usize, _subjects: usize) {
    eprintln!("\n*** SKIPPED the Redis scenario: build with --features redis ***\n");
}

/// The registry alone, in this process (no sockets, so no descriptor
/// limit): `entries` registered identities over `subjects` subjects, the
/// time of the `revoke_subject` calls themselves. A revocation scans every
/// entry of its registry under the registry's lock.
fn registry(figures: &mut Figures, entries: usize, subjects: usize) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let identity = |i: usize| {
            Identity::builder(format!("user-{}", i % subjects), tower_ws_auth::AuthMethod::Jwt)
                .token_id(format!("jti-{i}"))
                .expires_in(Duration::from_secs(3600))
                .build()
        };
        let (burst, _) = bursts(subjects);
        let timed = |registry: Revocations, range: std::ops::Range<usize>| async move {
            let started = Instant::now();
            revoke_subjects(&registry, range.start, range.len()).await;
            started.elapsed()
        };
        // One registry, no bus.
        let alone = Revocations::new();
        let held: Vec<_> = (0..entries).map(|i| alone.register(&identity(i))).collect();
        let mut single = Vec::new();
        for s in 0..5 {
            single.push(timed(alone.clone(), subjects - 1 - s..subjects - s).await);
        }
        let mut bursts = Vec::new();
        for k in 0..3 {
            bursts.push(timed(alone.clone(), k * burst..(k + 1) * burst).await);
        }
        drop(held);
        figures.row(
            format!("registry alone ({entries} entries, {subjects} subjects, one registry, no bus): 1 `revoke_subject`"),
            median_range(single),
        );
        figures.row(
            format!("registry alone: {burst} `revoke_subject` calls"),
            median_range(bursts),
        );
        // Two registries of half each on one `LocalBus`, as in the local
        // scenario: the revoking registry scans its entries, then its own
        // revocation comes back from the bus and is applied again, and the
        // other registry applies it.
        let bus = LocalBus::new();
        let a = Revocations::with_bus(bus.clone()).await.expect("bus");
        let b = Revocations::with_bus(bus).await.expect("bus");
        let held: Vec<_> = (0..entries)
            .map(|i| if i % 2 == 0 { &a } else { &b }.register(&identity(i)))
            .collect();
        let mut bursts = Vec::new();
        for k in 0..3 {
            let started = Instant::now();
            let range = k * burst..(k + 1) * burst;
            revoke_subjects(&a, range.start, range.len()).await;
            // Until the last subject of the burst is marked on both.
            while !held
                .iter()
                .enumerate()
                .all(|(i, r)| !range.contains(&(i % subjects)) || r.is_revoked())
            {
                tokio::task::yield_now().await;
            }
            bursts.push(started.elapsed());
        }
        figures.row(
            format!("registry alone: {burst} `revoke_subject` calls on one of two registries of {} on a `LocalBus`, until applied by both", entries / 2),
            median_range(bursts),
        );
    });
}

fn main() {
    if let Ok(mode) = std::env::var(SERVER_ENV) {
        return server(mode);
    }
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("scale bench: run it with `cargo bench --features redis --bench scale`");
        return;
    }
    let wanted = env_usize("SCALE_BENCH_CONNECTIONS", 100_000).max(100);
    // Each process (the clients here, every server) needs a descriptor per
    // connection, and a few hundred more.
    let limit = raise_fd_limit(wanted as u64 + 10_000) as usize;
    let n = wanted.min(limit.saturating_sub(1_000) / 1_000 * 1_000);
    if n < wanted {
        eprintln!(
            "\n*** the open-file limit is {limit} and cannot be raised here (no CAP_SYS_RESOURCE \
             for the hard limit): {n} connections instead of {wanted} ***\n"
        );
    }
    assert!(n >= 100, "the open-file limit ({limit}) is too low");
    let subjects = env_usize("SCALE_BENCH_SUBJECTS", n / 10).clamp(40, n / 2);
    let registry_entries = env_usize("SCALE_BENCH_REGISTRY", 100_000).max(1000);
    assert!(
        n / PER_SOURCE_ADDRESS < 250,
        "at most 2,500,000 connections"
    );
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let started = Instant::now();
    let mut figures = Figures { rows: Vec::new() };
    registry(&mut figures, registry_entries, registry_entries / 10);
    let figures = runtime.block_on(async {
        eprintln!("scale bench: {n} connections, {subjects} subjects");
        local(&mut figures, n, subjects).await;
        through_redis(&mut figures, n, subjects).await;
        figures
    });
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!();
    println!(
        "`cargo bench --bench scale`: {n} connections (asked: {wanted}; open-file limit {limit}), {subjects} subjects, {} s in all; load average at the end {}",
        started.elapsed().as_secs(),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!();
    println!("| measurement | result |");
    println!("|---|---|");
    for (name, value) in figures.rows {
        println!("| {name} | {value} |");
    }
}
