//! After the handshake: first-message authentication, the expiry guard with
//! in-band refresh, and revocation (local and across instances through a
//! real Redis), each through a real tokio-tungstenite client against an
//! axum server and against a hyper + tokio-tungstenite server.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Request as AxumRequest, State};
use axum::response::Response as AxumResponse;
use axum::routing::any;
use bytes::Bytes;
use common::redis::RedisServer;
use common::{Ws, connect, next_text};
use futures_util::{SinkExt, StreamExt};
use http::header::{CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, UPGRADE};
use http::request::Parts;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tower::ServiceExt;
use tower_ws_auth::socket::{AuthSocket, Frame, RedisBus};
use tower_ws_auth::{
    AuthError, AuthMethod, CloseCodes, FirstMessageAuth, Identity, Revocations, SessionGuard,
    WsAuthLayer, authenticate_fn,
};

/// Tokens are `subject.ttl_ms`, or a word naming an outcome.
fn test_auth() -> impl tower_ws_auth::Authenticator + Clone {
    authenticate_fn(|credential, _| {
        let token = credential.expose_secret().to_owned();
        async move {
            match token.as_str() {
                "invalid" => return Err(AuthError::invalid("bad token")),
                "down" => return Err(AuthError::unavailable("verifier down")),
                "forbidden" => return Err(AuthError::forbidden("banned")),
                _ => {}
            }
            let (subject, ttl) = token
                .split_once('.')
                .ok_or(AuthError::invalid("unknown token"))?;
            let ttl: u64 = ttl
                .parse()
                .map_err(|_| AuthError::invalid("unknown token"))?;
            Ok(Identity::builder(subject, AuthMethod::Custom("test"))
                .session_id(format!("session-of-{subject}"))
                .expires_in(Duration::from_millis(ttl))
                .build())
        }
    })
}

fn boxed_auth() -> tower_ws_auth::BoxAuthenticator {
    use tower_ws_auth::Authenticator;
    test_auth().boxed()
}

#[derive(Clone)]
struct App {
    first: FirstMessageAuth<tower_ws_auth::BoxAuthenticator>,
    first_gql: FirstMessageAuth<tower_ws_auth::BoxAuthenticator>,
    guard: SessionGuard<tower_ws_auth::BoxAuthenticator>,
    revocations: Revocations,
    delivered: Arc<Mutex<Vec<String>>>,
}

impl App {
    fn new(revocations: Revocations) -> Self {
        Self {
            first: FirstMessageAuth::new(boxed_auth()).timeout(Duration::from_millis(600)),
            first_gql: FirstMessageAuth::new(boxed_auth())
                .timeout(Duration::from_millis(300))
                .codes(CloseCodes::graphql_ws())
                .max_pending(1),
            guard: SessionGuard::new(boxed_auth())
                .warn_before(Duration::from_millis(500))
                .revocations(revocations.clone()),
            revocations,
            delivered: Arc::new(Mutex::new(Vec::new())),
        }
    }

    fn delivered(&self) -> Vec<String> {
        self.delivered.lock().unwrap().clone()
    }
}

/// The application: guarded echo, recording what it was given.
async fn run_socket<S: AuthSocket>(app: App, socket: S, identity: Identity) {
    let mut socket = app.guard.wrap(socket, identity);
    while let Some(Ok(message)) = socket.recv().await {
        if let Frame::Text(text) = S::frame(&message) {
            let text = text.to_owned();
            app.delivered.lock().unwrap().push(text.clone());
            if socket.send_text(text).await.is_err() {
                break;
            }
        }
    }
}

async fn first_message<S: AuthSocket>(app: App, socket: S, parts: Parts, graphql: bool) {
    let auth = if graphql { &app.first_gql } else { &app.first };
    if let Ok((socket, identity)) = auth.authenticate(socket, &parts).await {
        run_socket(app, socket, identity).await;
    }
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Axum,
    Tungstenite,
}

async fn spawn(kind: Kind, app: App) -> SocketAddr {
    match kind {
        Kind::Axum => spawn_axum(app).await,
        Kind::Tungstenite => spawn_hyper(app).await,
    }
}

async fn spawn_axum(app: App) -> SocketAddr {
    async fn first(
        ws: WebSocketUpgrade,
        State(app): State<App>,
        request: AxumRequest,
    ) -> AxumResponse {
        let graphql = request.uri().path().ends_with("gql");
        let parts = request.into_parts().0;
        ws.on_upgrade(move |socket| first_message(app, socket, parts, graphql))
    }
    async fn guarded(
        ws: WebSocketUpgrade,
        State(app): State<App>,
        identity: Identity,
    ) -> AxumResponse {
        ws.on_upgrade(move |socket| run_socket(app, socket, identity))
    }
    let router = axum::Router::new()
        .route("/first", any(first))
        .route("/first-gql", any(first))
        .route(
            "/ws",
            any(guarded).layer(WsAuthLayer::new(boxed_auth()).bearer_header()),
        )
        .with_state(app);
    common::serve(router).await
}

/// hyper 1 + tokio-tungstenite, no axum: the same routes.
async fn spawn_hyper(app: App) -> SocketAddr {
    fn switching(request: &Request<Incoming>) -> Response<Full<Bytes>> {
        let key = request
            .headers()
            .get(SEC_WEBSOCKET_KEY)
            .map(|k| derive_accept_key(k.as_bytes()));
        Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(CONNECTION, "upgrade")
            .header(UPGRADE, "websocket")
            .header(SEC_WEBSOCKET_ACCEPT, key.unwrap_or_default())
            .body(Full::default())
            .unwrap()
    }
    async fn upgraded(
        request: &mut Request<Incoming>,
    ) -> Option<WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>> {
        let upgraded = hyper::upgrade::on(request).await.ok()?;
        Some(WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await)
    }

    let guarded_app = app.clone();
    let guarded = tower::ServiceBuilder::new()
        .layer(WsAuthLayer::new(boxed_auth()).bearer_header())
        .service_fn(move |mut request: Request<Incoming>| {
            let app = guarded_app.clone();
            async move {
                let response = switching(&request);
                let identity = request.extensions().get::<Identity>().cloned();
                tokio::spawn(async move {
                    if let (Some(socket), Some(identity)) = (upgraded(&mut request).await, identity)
                    {
                        run_socket(app, socket, identity).await;
                    }
                });
                Ok::<_, Infallible>(response)
            }
        });
    let service = tower::service_fn(move |mut request: Request<Incoming>| {
        let app = app.clone();
        let guarded = guarded.clone();
        async move {
            let path = request.uri().path().to_owned();
            if path == "/ws" {
                return guarded.oneshot(request).await;
            }
            let response = switching(&request);
            tokio::spawn(async move {
                let Some(socket) = upgraded(&mut request).await else {
                    return;
                };
                let parts = request.into_parts().0;
                first_message(app, socket, parts, path == "/first-gql").await;
            });
            Ok::<_, Infallible>(response)
        }
    });
    common::serve_hyper(service).await
}

async fn open(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Ws {
    connect(addr, path, headers).await.expect("upgrade").0
}

/// Reads until the server's close frame; returns its code and reason and
/// the text messages seen before it.
async fn close_of(ws: &mut Ws) -> (u16, String, Vec<String>) {
    let mut texts = Vec::new();
    loop {
        let next = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("no close within 10 s");
        match next {
            Some(Ok(Message::Close(Some(frame)))) => {
                return (u16::from(frame.code), frame.reason.to_string(), texts);
            }
            Some(Ok(Message::Close(None))) => panic!("close without a code"),
            Some(Ok(Message::Text(t))) => texts.push(t.to_string()),
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("socket error before the close frame: {e}"),
            None => panic!("connection ended without a close frame"),
        }
    }
}

async fn send(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text.to_owned())).await.unwrap();
}

async fn authenticate_first(ws: &mut Ws, token: &str) -> serde_json::Value {
    send(ws, &format!(r#"{{"type":"auth","token":"{token}"}}"#)).await;
    serde_json::from_str(&next_text(ws).await).unwrap()
}

async fn first_message_authenticates_and_then_echoes(kind: Kind) {
    let app = App::new(Revocations::new());
    let addr = spawn(kind, app.clone()).await;
    let mut ws = open(addr, "/first", &[]).await;
    let ack = authenticate_first(&mut ws, "alice.60000").await;
    assert_eq!(ack["type"], "authenticated");
    assert_eq!(ack["user"]["id"], "alice");
    assert!(ack["expires_at"].as_u64().is_some());
    send(&mut ws, "hello").await;
    assert_eq!(next_text(&mut ws).await, "hello");
    assert_eq!(app.delivered(), ["hello"]);
}

async fn first_message_failures_close_with_their_codes(kind: Kind) {
    let app = App::new(Revocations::new());
    let addr = spawn(kind, app.clone()).await;
    let big = format!(r#"{{"type":"auth","token":"{}"}}"#, "a".repeat(17 * 1024));
    let cases: [(&str, u16); 7] = [
        (r#"{"type":"chat","text":"early-secret"}"#, 4001),
        ("early plain text", 4001),
        (r#"{"type":"auth"}"#, 4001),
        (r#"{"type":"auth","token":"invalid"}"#, 4001),
        (r#"{"type":"auth","token":"forbidden"}"#, 4003),
        (r#"{"type":"auth","token":"down"}"#, 1013),
        (&big, 1009),
    ];
    for (first, code) in cases {
        let mut ws = open(addr, "/first", &[]).await;
        send(&mut ws, first).await;
        let (got, reason, texts) = close_of(&mut ws).await;
        assert_eq!(got, code, "{}", &first[..first.len().min(60)]);
        assert!(
            reason.len() <= 123 && !reason.contains("invalid") && !reason.contains("early"),
            "{reason}"
        );
        assert!(texts.is_empty());
    }
    // Binary before auth.
    let mut ws = open(addr, "/first", &[]).await;
    ws.send(Message::binary(b"early-binary".to_vec()))
        .await
        .unwrap();
    assert_eq!(close_of(&mut ws).await.0, 4001);
    // Nothing sent before authentication ever reached the application.
    assert!(app.delivered().is_empty(), "{:?}", app.delivered());
}

async fn first_message_times_out_with_4008(kind: Kind) {
    let app = App::new(Revocations::new());
    let addr = spawn(kind, app.clone()).await;
    let mut ws = open(addr, "/first", &[]).await;
    let started = Instant::now();
    // Pings are answered and do not count as the auth message.
    ws.send(Message::Ping(Bytes::from_static(b"are you there")))
        .await
        .unwrap();
    let (code, reason, _) = close_of(&mut ws).await;
    assert_eq!((code, reason.as_str()), (4008, "authentication timeout"));
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(500) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    assert_eq!(app.first.pending(), 0);
}

async fn graphql_preset_codes(kind: Kind) {
    let app = App::new(Revocations::new());
    let addr = spawn(kind, app.clone()).await;
    for (first, code) in [
        (r#"{"type":"auth"}"#, 4400),
        (r#"{"type":"auth","token":"invalid"}"#, 4401),
        (r#"{"type":"auth","token":"forbidden"}"#, 4403),
        (r#"{"type":"chat"}"#, 4401),
    ] {
        let mut ws = open(addr, "/first-gql", &[]).await;
        send(&mut ws, first).await;
        assert_eq!(close_of(&mut ws).await.0, code, "{first}");
    }
    // max_pending(1): a second idle connection is turned away with 4429,
    // the first times out with 4408.
    let mut idle = open(addr, "/first-gql", &[]).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut second = open(addr, "/first-gql", &[]).await;
    assert_eq!(close_of(&mut second).await.0, 4429);
    assert_eq!(close_of(&mut idle).await.0, 4408);
}

async fn expiry_closes_with_4002_after_a_warning(kind: Kind) {
    let app = App::new(Revocations::new());
    let addr = spawn(kind, app.clone()).await;
    let started = Instant::now();
    let mut ws = open(addr, "/ws", &[("authorization", "Bearer alice.2000")]).await;
    send(&mut ws, "before expiry").await;
    let (code, reason, texts) = close_of(&mut ws).await;
    let elapsed = started.elapsed();
    assert_eq!((code, reason.as_str()), (4002, "session expired"));
    assert!(
        elapsed >= Duration::from_millis(1800) && elapsed < Duration::from_secs(4),
        "{elapsed:?}"
    );
    assert_eq!(texts.first().map(String::as_str), Some("before expiry"));
    let warning: serde_json::Value = serde_json::from_str(texts.last().unwrap()).unwrap();
    assert_eq!(warning["type"], "expiring");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        app.revocations.is_empty(),
        "the registry entry goes with the connection"
    );
}

async fn refresh_extends_and_other_subjects_are_refused(kind: Kind) {
    let app = App::new(Revocations::new());
    let addr = spawn(kind, app.clone()).await;
    let started = Instant::now();
    let mut ws = open(addr, "/ws", &[("authorization", "Bearer alice.1500")]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    send(&mut ws, r#"{"type":"refresh","token":"alice.2500"}"#).await;
    let refreshed: serde_json::Value = serde_json::from_str(&next_text(&mut ws).await).unwrap();
    assert_eq!(refreshed["type"], "refreshed");
    tokio::time::sleep(Duration::from_millis(1700)).await;
    // Past the first expiry, still open.
    send(&mut ws, "still here").await;
    assert_eq!(next_text(&mut ws).await, "still here");
    let (code, _, _) = close_of(&mut ws).await;
    assert_eq!(code, 4002);
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(2600) && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );
    assert!(
        !app.delivered().iter().any(|m| m.contains("refresh")),
        "refresh messages are not delivered"
    );

    let mut ws = open(addr, "/ws", &[("authorization", "Bearer alice.60000")]).await;
    send(&mut ws, r#"{"type":"refresh","token":"mallory.60000"}"#).await;
    let (code, reason, _) = close_of(&mut ws).await;
    assert_eq!((code, reason.as_str()), (4003, "forbidden"));

    let mut ws = open(addr, "/ws", &[("authorization", "Bearer alice.60000")]).await;
    send(&mut ws, r#"{"type":"refresh","token":"invalid"}"#).await;
    assert_eq!(close_of(&mut ws).await.0, 4001);
}

async fn revoke_subject_closes_that_subject_only(kind: Kind) {
    let app = App::new(Revocations::new());
    let addr = spawn(kind, app.clone()).await;
    let mut alice1 = open(addr, "/ws", &[("authorization", "Bearer alice.60000")]).await;
    let mut alice2 = open(addr, "/ws", &[("authorization", "Bearer alice.60000")]).await;
    let mut bob = open(addr, "/ws", &[("authorization", "Bearer bob.60000")]).await;
    for ws in [&mut alice1, &mut alice2, &mut bob] {
        send(ws, "ping").await;
        assert_eq!(next_text(ws).await, "ping");
    }
    assert_eq!(app.revocations.len(), 3);
    assert_eq!(app.revocations.revoke_subject("alice").await.unwrap(), 2);
    for ws in [&mut alice1, &mut alice2] {
        let (code, reason, _) = close_of(ws).await;
        assert_eq!((code, reason.as_str()), (4003, "revoked"));
    }
    send(&mut bob, "bob is fine").await;
    assert_eq!(next_text(&mut bob).await, "bob is fine");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(app.revocations.len(), 1);
    assert_eq!(
        app.revocations
            .revoke_session("session-of-bob")
            .await
            .unwrap(),
        1
    );
    assert_eq!(close_of(&mut bob).await.0, 4003);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        app.revocations.len(),
        0,
        "the registry is empty once every connection is gone"
    );
}

async fn revocation_crosses_instances_through_redis(kind: Kind) {
    let Some(mut redis) = RedisServer::start("revocation_crosses_instances_through_redis") else {
        return;
    };
    let a = App::new(
        Revocations::with_bus(
            RedisBus::connect(&redis.url())
                .await
                .unwrap()
                .channel(format!("revocations:{}", redis.port)),
        )
        .await
        .unwrap(),
    );
    let b = App::new(
        Revocations::with_bus(
            RedisBus::connect(&redis.url())
                .await
                .unwrap()
                .channel(format!("revocations:{}", redis.port)),
        )
        .await
        .unwrap(),
    );
    let _a_addr = spawn(kind, a.clone()).await;
    let b_addr = spawn(kind, b.clone()).await;

    let mut on_b = open(b_addr, "/ws", &[("authorization", "Bearer alice.60000")]).await;
    let mut bob_on_b = open(b_addr, "/ws", &[("authorization", "Bearer bob.60000")]).await;
    send(&mut on_b, "ready").await;
    assert_eq!(next_text(&mut on_b).await, "ready");
    let started = Instant::now();
    assert_eq!(
        a.revocations.revoke_subject("alice").await.unwrap(),
        0,
        "nothing of alice on A"
    );
    let (code, _, _) = close_of(&mut on_b).await;
    assert_eq!(code, 4003);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );

    // Redis restarts: the bus reconnects and revocations flow again.
    redis.stop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // Until the publisher has reconnected, publishing fails; until the
        // subscriber has re-subscribed, the message is not seen. Retry both.
        let _ = a.revocations.revoke_subject("bob").await;
        if let Ok(Some(Ok(Message::Close(Some(frame))))) =
            tokio::time::timeout(Duration::from_millis(300), bob_on_b.next()).await
        {
            assert_eq!(u16::from(frame.code), 4003);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no revocation after the Redis restart"
        );
    }
}

async fn idle_connections_are_closed_at_the_deadline(kind: Kind) {
    let app = App::new(Revocations::new());
    let addr = spawn(kind, app.clone()).await;
    let mut sockets = Vec::new();
    for _ in 0..200 {
        sockets.push(open(addr, "/first", &[]).await);
    }
    assert!(app.first.pending() > 0);
    let closes = futures_util::future::join_all(sockets.iter_mut().map(close_of)).await;
    assert!(closes.iter().all(|(code, _, _)| *code == 4008));
    drop(sockets);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(app.first.pending(), 0);
}

macro_rules! for_both_adapters {
    ($($name:ident),* $(,)?) => {
        mod axum_adapter {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::Kind::Axum).await })*
        }
        mod tungstenite_adapter {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::Kind::Tungstenite).await })*
        }
    };
}

for_both_adapters!(
    first_message_authenticates_and_then_echoes,
    first_message_failures_close_with_their_codes,
    first_message_times_out_with_4008,
    graphql_preset_codes,
    expiry_closes_with_4002_after_a_warning,
    refresh_extends_and_other_subjects_are_refused,
    revoke_subject_closes_that_subject_only,
    revocation_crosses_instances_through_redis,
    idle_connections_are_closed_at_the_deadline,
);
