//! Full WebSocket handshakes over loopback: what each way of authenticating
//! the upgrade costs the server.
//!
//! ```sh
//! cargo bench --bench handshake        # about a minute; loopback only
//! ```
//!
//! One axum 0.8 server process per variant, each pinned to one core, and a
//! tokio-tungstenite load client in this process, pinned to the other: the
//! bench binary runs itself again with `TOWER_WS_AUTH_BENCH_SERVER=<variant>`
//! to become a server. Both sides use single-threaded tokio runtimes. Every
//! connection does a full handshake (`101`, or the run fails) and a clean
//! close (close frame both ways, then TCP close).
//!
//! The load client is often the bottleneck, so handshakes per second read
//! about the same for every cheap variant. The number that compares
//! variants is the **server's CPU time per handshake**, read from the
//! server process (`CLOCK_PROCESS_CPUTIME_ID`, all its threads) around each
//! measured run; capacity relative to no authentication is the ratio of
//! those times, taken within each round and summarised over rounds.
//!
//! Variants alternate within one invocation, in ABBA order (all variants,
//! then all in reverse, repeated), so drift of the machine hits them alike.
//! Servers run with glibc malloc thresholds held steady
//! (`GLIBC_TUNABLES=glibc.malloc.mmap_threshold=4194304:glibc.malloc.trim_threshold=268435456`)
//! and 4 KiB WebSocket buffers on both sides: tungstenite zero-fills a
//! 128 KiB read buffer per connection by default, and with glibc's dynamic
//! mmap threshold that costs page faults that vary from process to process
//! and swamp what is measured here.
//!
//! Bounded: a fixed number of connections per run (`HANDSHAKE_BENCH_CONNECTIONS`,
//! default 3000), fixed concurrency (`HANDSHAKE_BENCH_CONCURRENCY`, default
//! 8), `HANDSHAKE_BENCH_ROUNDS` rounds (default 6, every variant once per
//! round), a 5 s timeout per connection and a 150 s deadline for the
//! whole bench; servers exit when this process goes away and after 300 s
//! at most. Only 127.0.0.1 is ever contacted. `cargo test` does not run it
//! (without `--bench` it returns at once).

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::FromRequestParts;
use axum::extract::ws::{Message as AxumMessage, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::any;
use futures_util::StreamExt;
use http::StatusCode;
use http::header::{AUTHORIZATION, COOKIE, ORIGIN};
use http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tower_http::validate_request::ValidateRequestHeaderLayer;
use tower_ws_auth::{
    AuthError, AuthMethod, Authenticator, Identity, OriginPolicy, WsAuthLayer,
    api_key::ApiKeyAuthenticator,
    authenticate_fn,
    jwt::JwtAuthenticator,
    session::{MemorySessionStore, SessionAuthenticator, SessionCookie, cookie::Key},
};

const SERVER_ENV: &str = "TOWER_WS_AUTH_BENCH_SERVER";
const TUNABLES: &str = "glibc.malloc.mmap_threshold=4194304:glibc.malloc.trim_threshold=268435456";
const BUFFER: usize = 4096;
const MAX_SERVER_LIFETIME: Duration = Duration::from_secs(300);
const DEADLINE: Duration = Duration::from_secs(150);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const WARM_UP: usize = 300;
/// Distinct credentials per variant (users reconnecting), used in turn.
const CLIENTS: usize = 64;

const RSA_PRIVATE: &str = include_str!("../tests/fixtures/rsa_private.pem");
const RSA_PUBLIC: &str = include_str!("../tests/fixtures/rsa_public.pem");
const HS_SECRET: &[u8] = b"handshake-bench-hs256-secret-32-bytes!!";
const STATIC_TOKEN: &str = "static-bench-token-0123456789abcdef";
const ORIGIN_ALLOWED: &str = "https://app.example.com";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    NoAuth,
    ApiKey,
    Session,
    Hs256,
    Rs256,
    Rs256Cached,
    ExtractorHs256,
    ExtractorRs256,
    TowerHttpBearer,
    StaticToken,
}

impl Variant {
    const ALL: [Variant; 10] = [
        Variant::NoAuth,
        Variant::ApiKey,
        Variant::Session,
        Variant::Hs256,
        Variant::Rs256,
        Variant::Rs256Cached,
        Variant::ExtractorHs256,
        Variant::ExtractorRs256,
        Variant::TowerHttpBearer,
        Variant::StaticToken,
    ];

    fn name(self) -> &'static str {
        match self {
            Variant::NoAuth => "no-auth",
            Variant::ApiKey => "api-key",
            Variant::Session => "session",
            Variant::Hs256 => "hs256",
            Variant::Rs256 => "rs256",
            Variant::Rs256Cached => "rs256-cached",
            Variant::ExtractorHs256 => "extractor-hs256",
            Variant::ExtractorRs256 => "extractor-rs256",
            Variant::TowerHttpBearer => "tower-http-bearer",
            Variant::StaticToken => "static-token",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Variant::NoAuth => "no authentication",
            Variant::ApiKey => "tower-ws-auth, API key (`ApiKeyAuthenticator`, bearer)",
            Variant::Session => {
                "tower-ws-auth, cookie session (`MemorySessionStore`, signed, Origin checked)"
            }
            Variant::Hs256 => "tower-ws-auth, HS256 (`JwtAuthenticator`)",
            Variant::Rs256 => "tower-ws-auth, RS256 (`JwtAuthenticator`)",
            Variant::Rs256Cached => "tower-ws-auth, RS256 + `cached`",
            Variant::ExtractorHs256 => {
                "hand-written axum extractor, HS256 (`jsonwebtoken::decode`)"
            }
            Variant::ExtractorRs256 => {
                "hand-written axum extractor, RS256 (`jsonwebtoken::decode`)"
            }
            Variant::TowerHttpBearer => {
                "tower-http `ValidateRequestHeaderLayer::bearer` (static token)"
            }
            Variant::StaticToken => "tower-ws-auth, the same static token (`authenticate_fn`)",
        }
    }

    /// The goal for server-CPU capacity relative to no authentication.
    fn goal(self) -> Option<f64> {
        match self {
            Variant::ApiKey | Variant::Session => Some(0.98),
            Variant::Hs256 | Variant::Rs256Cached => Some(0.97),
            Variant::Rs256 => Some(0.74),
            _ => None,
        }
    }

    fn from_name(name: &str) -> Option<Variant> {
        Variant::ALL.into_iter().find(|v| v.name() == name)
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    iat: u64,
    scope: String,
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pin(core: usize) {
    if let Some(ids) = core_affinity::get_core_ids()
        && ids.len() >= 2
        && let Some(id) = ids.get(core)
    {
        core_affinity::set_for_current(*id);
    }
}

fn main() {
    // jsonwebtoken needs a process-wide provider when both of its backends
    // are compiled in (`--all-features`): the client signs tokens and the
    // extractor variants decode them without a `JwtAuthenticator`.
    let _ = jsonwebtoken::crypto::CryptoProvider::install_default(
        &jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER,
    );
    if let Ok(name) = std::env::var(SERVER_ENV) {
        let variant = Variant::from_name(&name).expect("known variant");
        server(variant);
        return;
    }
    if !std::env::args().any(|a| a == "--bench") {
        // `cargo test --benches` runs bench binaries without `--bench`.
        eprintln!("handshake bench: run it with `cargo bench --bench handshake`");
        return;
    }
    client();
}

// ---------------------------------------------------------------- server

/// Keeps the socket open until the client closes it; tungstenite answers
/// the close frame.
async fn hold(mut socket: WebSocket) {
    while let Some(Ok(message)) = socket.recv().await {
        if let AxumMessage::Close(_) = message {
            break;
        }
    }
}

fn upgrade(ws: WebSocketUpgrade) -> Response {
    ws.read_buffer_size(BUFFER)
        .write_buffer_size(BUFFER)
        .on_upgrade(hold)
}

async fn plain_handler(ws: WebSocketUpgrade) -> Response {
    upgrade(ws)
}

async fn identity_handler(ws: WebSocketUpgrade, identity: Identity) -> Response {
    std::hint::black_box(identity.subject());
    upgrade(ws)
}

/// What a hand-written extractor keeps: the key and the validation rules.
struct ExtractorKeys {
    decoding: DecodingKey,
    validation: Validation,
}

static EXTRACTOR_KEYS: OnceLock<ExtractorKeys> = OnceLock::new();

/// The hand-written alternative: read `Authorization: Bearer`, run
/// `jsonwebtoken::decode`, answer 401 otherwise.
struct BearerClaims(#[allow(dead_code)] Claims);

impl<S: Send + Sync> FromRequestParts<S> for BearerClaims {
    type Rejection = StatusCode;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, StatusCode> {
        let keys = EXTRACTOR_KEYS
            .get()
            .ok_or(StatusCode::INTERNAL_SERVER_ERROR)?;
        let token = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(StatusCode::UNAUTHORIZED)?;
        let data = jsonwebtoken::decode::<Claims>(token, &keys.decoding, &keys.validation)
            .map_err(|_| StatusCode::UNAUTHORIZED)?;
        Ok(BearerClaims(data.claims))
    }
}

async fn extractor_handler(ws: WebSocketUpgrade, claims: BearerClaims) -> Response {
    std::hint::black_box(&claims);
    upgrade(ws)
}

fn extractor_keys(alg: Algorithm) -> ExtractorKeys {
    let decoding = match alg {
        Algorithm::HS256 => DecodingKey::from_secret(HS_SECRET),
        _ => DecodingKey::from_rsa_pem(RSA_PUBLIC.as_bytes()).expect("RSA key"),
    };
    let mut validation = Validation::new(alg);
    validation.leeway = 30;
    validation.set_required_spec_claims(&["exp", "sub"]);
    ExtractorKeys {
        decoding,
        validation,
    }
}

fn api_key(i: usize) -> String {
    format!("sk_bench_{i:04}_0123456789abcdef0123")
}

#[derive(Clone)]
struct User {
    id: String,
}

/// The app for `variant`, and the session cookies (cookie variant only).
fn app(variant: Variant) -> (Router, Vec<String>) {
    let route = "/ws";
    let mut cookies = Vec::new();
    let router = match variant {
        Variant::NoAuth => Router::new().route(route, any(plain_handler)),
        Variant::ApiKey => {
            let auth = ApiKeyAuthenticator::from_keys((0..CLIENTS).map(|i| {
                (
                    api_key(i),
                    Identity::builder(format!("service-{i}"), AuthMethod::ApiKey)
                        .scope("chat")
                        .build(),
                )
            }));
            Router::new().route(
                route,
                any(identity_handler).layer(WsAuthLayer::new(auth).bearer_header()),
            )
        }
        Variant::Session => {
            let store = MemorySessionStore::new(Duration::from_secs(3600));
            let cookie = SessionCookie::new("session")
                .unwrap()
                .signed(Key::generate());
            for i in 0..CLIENTS {
                let id = store
                    .create(User {
                        id: format!("user-{i}"),
                    })
                    .expect("session");
                let issued = cookie.issue(&id);
                let pair = issued
                    .to_str()
                    .expect("ASCII")
                    .split(';')
                    .next()
                    .expect("name=value")
                    .to_owned();
                cookies.push(pair);
            }
            let auth = SessionAuthenticator::new(store, cookie, |user: &User| {
                Ok(Identity::builder(user.id.clone(), AuthMethod::Session).scope("chat"))
            });
            let policy = OriginPolicy::from_origins([ORIGIN_ALLOWED]).expect("origin");
            Router::new().route(
                route,
                any(identity_handler).layer(
                    WsAuthLayer::new(auth)
                        .cookie("session", policy)
                        .expect("cookie name"),
                ),
            )
        }
        Variant::Hs256 => {
            let auth = JwtAuthenticator::hs256(HS_SECRET)
                .expect("HS256 key")
                .claims::<Claims>();
            Router::new().route(
                route,
                any(identity_handler).layer(WsAuthLayer::new(auth).bearer_header()),
            )
        }
        Variant::Rs256 | Variant::Rs256Cached => {
            let auth = JwtAuthenticator::from_pem(Algorithm::RS256, RSA_PUBLIC)
                .expect("RS256 key")
                .claims::<Claims>();
            let layer = |a| WsAuthLayer::new(a).bearer_header();
            if variant == Variant::Rs256Cached {
                let auth = auth.cached(Duration::from_secs(60), 10_000);
                Router::new().route(route, any(identity_handler).layer(layer(auth.boxed())))
            } else {
                Router::new().route(route, any(identity_handler).layer(layer(auth.boxed())))
            }
        }
        Variant::ExtractorHs256 | Variant::ExtractorRs256 => {
            let alg = if variant == Variant::ExtractorHs256 {
                Algorithm::HS256
            } else {
                Algorithm::RS256
            };
            let _ = EXTRACTOR_KEYS.set(extractor_keys(alg));
            Router::new().route(route, any(extractor_handler))
        }
        Variant::StaticToken => {
            let identity = Identity::new("static", AuthMethod::Custom("static"));
            let auth = authenticate_fn(move |credential, _| {
                std::future::ready(if credential.expose_secret() == STATIC_TOKEN {
                    Ok(identity.clone())
                } else {
                    Err(AuthError::invalid("unknown token"))
                })
            });
            Router::new().route(
                route,
                any(identity_handler).layer(WsAuthLayer::new(auth).bearer_header()),
            )
        }
        // Deprecated in tower-http as "too basic to be useful in real
        // applications" (one static token), but it is the bearer layer
        // people reach for; the comparison is what it costs.
        #[allow(deprecated)]
        Variant::TowerHttpBearer => Router::new().route(
            route,
            any(plain_handler).layer(ValidateRequestHeaderLayer::bearer(STATIC_TOKEN)),
        ),
    };
    (router, cookies)
}

fn server(variant: Variant) {
    pin(1);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let (app, cookies) = app(variant);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        {
            let mut out = std::io::stdout().lock();
            writeln!(out, "PORT {port}").expect("stdout");
            for cookie in &cookies {
                writeln!(out, "COOKIE {cookie}").expect("stdout");
            }
            writeln!(out, "READY").expect("stdout");
            out.flush().expect("stdout");
        }
        // Control: `cpu` prints the process's CPU time; end of input (the
        // bench went away) or `quit` ends the server.
        std::thread::spawn(|| {
            for line in std::io::stdin().lines() {
                match line.as_deref() {
                    Ok("cpu") => {
                        let cpu = cpu_time::ProcessTime::now().as_duration();
                        let mut out = std::io::stdout().lock();
                        let _ = writeln!(out, "CPU {}", cpu.as_nanos());
                        let _ = out.flush();
                    }
                    _ => break,
                }
            }
            std::process::exit(0);
        });
        tokio::select! {
            result = axum::serve(listener, app) => result.expect("serve"),
            () = tokio::time::sleep(MAX_SERVER_LIFETIME) => {}
        }
    });
}

// ---------------------------------------------------------------- client

struct Server {
    variant: Variant,
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    addr: SocketAddr,
    cookies: Vec<String>,
    /// How long `drop` waits for the server to exit before killing it.
    exit_wait: Duration,
}

impl Server {
    fn start(variant: Variant) -> Server {
        Server::start_under(variant, None)
    }

    /// Starts the server of `variant`, under callgrind writing to
    /// `callgrind_out` if given.
    fn start_under(variant: Variant, callgrind_out: Option<&str>) -> Server {
        let exe = std::env::current_exe().expect("bench executable");
        let mut command = match callgrind_out {
            Some(out) => {
                let mut valgrind = Command::new("valgrind");
                valgrind
                    .args(["--tool=callgrind", "-q"])
                    .arg(format!("--callgrind-out-file={out}"))
                    .arg(exe);
                valgrind
            }
            None => Command::new(exe),
        };
        let mut child = command
            .env(SERVER_ENV, variant.name())
            .env("GLIBC_TUNABLES", TUNABLES)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn server");
        let stdin = child.stdin.take().expect("stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut port = None;
        let mut cookies = Vec::new();
        loop {
            let mut line = String::new();
            if stdout.read_line(&mut line).expect("server output") == 0 {
                panic!("server {} exited before it was ready", variant.name());
            }
            let line = line.trim_end();
            if let Some(p) = line.strip_prefix("PORT ") {
                port = p.parse::<u16>().ok();
            } else if let Some(c) = line.strip_prefix("COOKIE ") {
                cookies.push(c.to_owned());
            } else if line == "READY" {
                break;
            }
        }
        let port = port.expect("server port");
        Server {
            variant,
            child,
            stdin,
            stdout,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            cookies,
            exit_wait: Duration::from_secs(if callgrind_out.is_some() { 60 } else { 2 }),
        }
    }

    /// The server process's CPU time so far.
    fn cpu(&mut self) -> Duration {
        writeln!(self.stdin, "cpu").expect("server control");
        self.stdin.flush().expect("server control");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("server control");
        let nanos: u64 = line
            .trim_end()
            .strip_prefix("CPU ")
            .and_then(|n| n.parse().ok())
            .expect("CPU time");
        Duration::from_nanos(nanos)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.stdin.flush();
        let deadline = Instant::now() + self.exit_wait;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The request headers of client `i` for `variant`.
fn credentials(variant: Variant, server: &Server) -> Vec<Vec<(http::HeaderName, String)>> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let jwt = |alg: Algorithm, i: usize| {
        let key = match alg {
            Algorithm::HS256 => EncodingKey::from_secret(HS_SECRET),
            _ => EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).expect("RSA private key"),
        };
        let claims = Claims {
            sub: format!("user-{i}"),
            exp: now + 3600,
            iat: now,
            scope: "chat:read chat:write".into(),
        };
        jsonwebtoken::encode(&Header::new(alg), &claims, &key).expect("token")
    };
    (0..CLIENTS)
        .map(|i| match variant {
            Variant::NoAuth => vec![],
            Variant::ApiKey => vec![(AUTHORIZATION, format!("Bearer {}", api_key(i)))],
            Variant::Session => vec![
                (COOKIE, server.cookies[i % server.cookies.len()].clone()),
                (ORIGIN, ORIGIN_ALLOWED.to_owned()),
            ],
            Variant::Hs256 | Variant::ExtractorHs256 => {
                vec![(
                    AUTHORIZATION,
                    format!("Bearer {}", jwt(Algorithm::HS256, i)),
                )]
            }
            Variant::Rs256 | Variant::Rs256Cached | Variant::ExtractorRs256 => {
                vec![(
                    AUTHORIZATION,
                    format!("Bearer {}", jwt(Algorithm::RS256, i)),
                )]
            }
            Variant::TowerHttpBearer | Variant::StaticToken => {
                vec![(AUTHORIZATION, format!("Bearer {STATIC_TOKEN}"))]
            }
        })
        .collect()
}

/// One connection: handshake (timed), then a clean close.
async fn handshake(
    addr: SocketAddr,
    headers: &[(http::HeaderName, String)],
) -> Result<Duration, String> {
    let started = Instant::now();
    let mut request = format!("ws://{addr}/ws")
        .into_client_request()
        .map_err(|e| e.to_string())?;
    for (name, value) in headers {
        request
            .headers_mut()
            .insert(name.clone(), value.parse().map_err(|_| "header")?);
    }
    let config = WebSocketConfig::default()
        .read_buffer_size(BUFFER)
        .write_buffer_size(BUFFER);
    let work = async {
        let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        let (mut ws, response) =
            tokio_tungstenite::client_async_with_config(request, stream, Some(config))
                .await
                .map_err(|e| format!("handshake: {e}"))?;
        if response.status() != StatusCode::SWITCHING_PROTOCOLS {
            return Err(format!("status {}", response.status()));
        }
        let latency = started.elapsed();
        ws.close(None).await.map_err(|e| e.to_string())?;
        while let Some(frame) = ws.next().await {
            if frame.is_err() {
                break;
            }
        }
        Ok(latency)
    };
    tokio::time::timeout(CONNECT_TIMEOUT, work)
        .await
        .map_err(|_| "timed out".to_owned())?
}

/// `connections` handshakes, `concurrency` at a time.
async fn load(
    addr: SocketAddr,
    credentials: &[Vec<(http::HeaderName, String)>],
    connections: usize,
    concurrency: usize,
) -> (Duration, Vec<Duration>) {
    let next = std::cell::Cell::new(0usize);
    let latencies = std::cell::RefCell::new(Vec::with_capacity(connections));
    let started = Instant::now();
    let worker = || async {
        loop {
            let i = next.get();
            if i >= connections {
                break;
            }
            next.set(i + 1);
            let headers = &credentials[i % credentials.len()];
            match handshake(addr, headers).await {
                Ok(latency) => latencies.borrow_mut().push(latency),
                Err(e) => panic!("connection {i} to {addr}: {e}"),
            }
        }
    };
    futures_util::future::join_all((0..concurrency).map(|_| worker())).await;
    (started.elapsed(), latencies.into_inner())
}

#[derive(Default)]
struct Samples {
    cpu_us: Vec<f64>,
    rate: Vec<f64>,
    p50_us: Vec<f64>,
    p99_us: Vec<f64>,
    /// Capacity relative to no-auth, per round.
    relative: Vec<f64>,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn spread(values: &[f64]) -> (f64, f64) {
    values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        })
}

fn client() {
    let connections = env_usize("HANDSHAKE_BENCH_CONNECTIONS", 3000);
    let concurrency = env_usize("HANDSHAKE_BENCH_CONCURRENCY", 8);
    let rounds = env_usize("HANDSHAKE_BENCH_ROUNDS", 6);
    // `HANDSHAKE_BENCH_VARIANTS=api-key,hs256` runs those (and no-auth, the baseline).
    let selected: Vec<Variant> = match std::env::var("HANDSHAKE_BENCH_VARIANTS") {
        Ok(list) => Variant::ALL
            .into_iter()
            .filter(|v| *v == Variant::NoAuth || list.split(',').any(|n| n.trim() == v.name()))
            .collect(),
        Err(_) => Variant::ALL.to_vec(),
    };
    let cores = core_affinity::get_core_ids().map_or(0, |ids| ids.len());
    let bench_started = Instant::now();
    pin(0);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if let Ok(dir) = std::env::var("HANDSHAKE_BENCH_CALLGRIND") {
        callgrind(&runtime, &dir, &selected, concurrency);
        return;
    }

    let mut servers: Vec<Server> = selected.iter().copied().map(Server::start).collect();
    let creds: Vec<_> = servers.iter().map(|s| credentials(s.variant, s)).collect();
    let mut samples: Vec<Samples> = selected.iter().map(|_| Samples::default()).collect();

    runtime.block_on(async {
        for (server, creds) in servers.iter().zip(&creds) {
            load(server.addr, creds, WARM_UP, concurrency).await;
        }
    });

    let mut completed_rounds = 0;
    'rounds: for round in 0..rounds {
        let mut order: Vec<usize> = (0..servers.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        let mut cpu_this_round = vec![f64::NAN; servers.len()];
        for i in order {
            if bench_started.elapsed() > DEADLINE {
                eprintln!("deadline reached after {round} rounds; reporting what was measured");
                break 'rounds;
            }
            let server = &mut servers[i];
            let before = server.cpu();
            let (wall, mut latencies) =
                runtime.block_on(load(server.addr, &creds[i], connections, concurrency));
            let cpu = server.cpu() - before;
            latencies.sort();
            let cpu_us = cpu.as_secs_f64() * 1e6 / connections as f64;
            cpu_this_round[i] = cpu_us;
            let s = &mut samples[i];
            s.cpu_us.push(cpu_us);
            s.rate.push(connections as f64 / wall.as_secs_f64());
            s.p50_us
                .push(percentile(&latencies, 0.50).as_secs_f64() * 1e6);
            s.p99_us
                .push(percentile(&latencies, 0.99).as_secs_f64() * 1e6);
            eprintln!(
                "round {round} {:<18} {:>8.0} handshakes/s  server CPU {:>6.1} us/handshake",
                servers[i].variant.name(),
                connections as f64 / wall.as_secs_f64(),
                cpu_us
            );
        }
        for (i, s) in samples.iter_mut().enumerate() {
            s.relative.push(cpu_this_round[0] / cpu_this_round[i]);
        }
        completed_rounds += 1;
    }
    drop(servers);

    println!();
    println!(
        "`cargo bench --bench handshake` — {completed_rounds} rounds (ABBA), {connections} connections per run, \
         concurrency {concurrency}, {cores} cores (client and server pinned to one each), \
         servers with `GLIBC_TUNABLES={TUNABLES}` and 4 KiB WebSocket buffers; \
         median [min, max] over rounds"
    );
    println!();
    println!(
        "| variant | server CPU per handshake | capacity vs no auth (server CPU) | goal | handshakes/s (client-bound) | p50 latency | p99 latency |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (variant, s) in selected.iter().zip(&samples) {
        let (cpu_lo, cpu_hi) = spread(&s.cpu_us);
        let (rel_lo, rel_hi) = spread(&s.relative);
        let (rate_lo, rate_hi) = spread(&s.rate);
        let goal = match variant.goal() {
            Some(goal) if median(&s.relative) >= goal => format!(">= {goal:.2}: met"),
            Some(goal) => format!(">= {goal:.2}: missed"),
            None => "—".to_owned(),
        };
        println!(
            "| {} | {:.1} µs [{:.1}, {:.1}] | {:.3} [{:.3}, {:.3}] | {} | {:.0} [{:.0}, {:.0}] | {:.0} µs | {:.0} µs |",
            variant.label(),
            median(&s.cpu_us),
            cpu_lo,
            cpu_hi,
            median(&s.relative),
            rel_lo,
            rel_hi,
            goal,
            median(&s.rate),
            rate_lo,
            rate_hi,
            median(&s.p50_us),
            median(&s.p99_us),
        );
    }
    println!();
    println!(
        "bench wall time: {:.0} s",
        bench_started.elapsed().as_secs_f64()
    );
}

/// `HANDSHAKE_BENCH_CALLGRIND=<dir>`: instead of timing, counts the
/// user-space instructions the server executes per handshake, with
/// valgrind's callgrind (deterministic, unlike CPU time on a shared
/// machine). Each variant's server runs twice under callgrind, for the
/// warm-up plus `n1` and plus `n2` connections; `(Ir₂ − Ir₁) / (n₂ − n₁)`
/// leaves out start-up and exit. Same client, credentials and buffers as
/// the timed runs; the dumps stay in `<dir>` for `callgrind_annotate`.
fn callgrind(
    runtime: &tokio::runtime::Runtime,
    dir: &str,
    selected: &[Variant],
    concurrency: usize,
) {
    // `HANDSHAKE_BENCH_CALLGRIND_N=<n>`: `n2 - n1` (default 1,000); fewer
    // is quicker under valgrind, and the difference stays exact.
    let n1 = 200;
    let n2 = n1 + env_usize("HANDSHAKE_BENCH_CALLGRIND_N", 1000).max(1);
    println!("| variant | instructions per handshake (callgrind) | vs no auth |");
    println!("|---|---|---|");
    let mut baseline = None;
    for &variant in selected {
        let mut totals = Vec::new();
        for n in [n1, n2] {
            let out = format!("{dir}/callgrind.{}.{n}", variant.name());
            let server = Server::start_under(variant, Some(&out));
            let creds = credentials(variant, &server);
            runtime.block_on(async {
                load(server.addr, &creds, WARM_UP, concurrency).await;
                load(server.addr, &creds, n, concurrency).await;
            });
            drop(server);
            let dump = std::fs::read_to_string(&out).expect("callgrind output");
            let total: u64 = dump
                .lines()
                .find_map(|l| {
                    l.strip_prefix("summary: ")
                        .or_else(|| l.strip_prefix("totals: "))
                })
                .and_then(|n| n.trim().parse().ok())
                .expect("callgrind totals");
            totals.push(total);
        }
        let per = (totals[1] - totals[0]) as f64 / (n2 - n1) as f64;
        let base = *baseline.get_or_insert(per);
        println!(
            "| {} | {:.0}k | +{:.0}k |",
            variant.label(),
            per / 1e3,
            (per - base) / 1e3
        );
    }
}
