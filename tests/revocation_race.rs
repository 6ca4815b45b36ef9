//! A socket cannot survive the logout of its session, however the logout
//! races its handshake: bursts of cookie handshakes against a logout
//! (delete the session, revoke it), over many rounds. Every socket that got
//! a `101` is closed with 4003; the others were refused. The server is the
//! quickstart's setup in process (session cookie, Origin policy, a welcome
//! message before the guard registers the socket), on axum; a short pause
//! between the `101` and the registration widens the race window the
//! revocation records close.

mod common;

use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::any;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message as ClientMessage;
use tower_ws_auth::{
    AuthMethod, Identity, MemorySessionStore, OriginPolicy, Revocations, SessionAuthenticator,
    SessionCookie, SessionGuard, WsAuthLayer,
};

const ORIGIN: &str = "http://app.test";
const ROUNDS: usize = 30;
const BURST: usize = 20;

#[derive(Clone)]
struct App {
    guard: SessionGuard,
}

async fn ws(ws: WebSocketUpgrade, State(app): State<App>, identity: Identity) -> Response {
    ws.on_upgrade(move |mut socket| async move {
        let welcome = format!(
            r#"{{"type":"authenticated","user":{{"id":"{}"}}}}"#,
            identity.subject()
        );
        if socket.send(Message::Text(welcome.into())).await.is_err() {
            return;
        }
        // Whatever the application does before it guards the socket.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut socket = app.guard.wrap(socket, identity);
        while let Some(Ok(message)) = socket.recv().await {
            if let Message::Text(text) = message
                && socket.send(Message::Text(text)).await.is_err()
            {
                break;
            }
        }
    })
}

/// What became of one handshake.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Refused,
    Revoked,
    Survived,
}

async fn handshake(addr: std::net::SocketAddr, cookie: String) -> Outcome {
    let headers = [("cookie", cookie.as_str()), ("origin", ORIGIN)];
    let Ok((mut ws, _)) = common::connect(addr, "/ws", &headers).await else {
        return Outcome::Refused;
    };
    // Keep talking: a surviving socket echoes; a revoked one is closed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        if tokio::time::Instant::now() >= deadline {
            return Outcome::Survived;
        }
        let _ = ws.send(ClientMessage::text("still here?")).await;
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return Outcome::Survived,
            Ok(Some(Ok(ClientMessage::Close(Some(frame))))) => {
                assert_eq!(u16::from(frame.code), 4003);
                return Outcome::Revoked;
            }
            Ok(Some(Ok(_))) => tokio::time::sleep(Duration::from_millis(50)).await,
            Ok(other) => panic!("ended without a close frame: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_socket_survives_a_logout_racing_its_handshake() {
    let sessions = MemorySessionStore::<String>::new(Duration::from_secs(3600));
    let cookie = SessionCookie::new("session")
        .signed(tower_ws_auth::cookie::Key::generate())
        .secure(false);
    let auth = SessionAuthenticator::new(sessions.clone(), cookie.clone(), |user: &String| {
        Ok(Identity::builder(user.clone(), AuthMethod::Session))
    });
    let layer = WsAuthLayer::new(auth).cookie(
        cookie.name(),
        OriginPolicy::from_origins(&[ORIGIN]).unwrap(),
    );
    let revocations = Revocations::new();
    let app = App {
        guard: SessionGuard::expiry_only().revocations(revocations.clone()),
    };
    let router = axum::Router::new()
        .route("/ws", any(ws).layer(layer))
        .with_state(app);
    let addr = common::serve(router).await;

    let (mut upgraded, mut refused) = (0, 0);
    for round in 0..ROUNDS {
        let id = sessions.create("alice".to_owned()).unwrap();
        let set_cookie = cookie.issue(&id);
        let pair = set_cookie
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let burst: Vec<_> = (0..BURST)
            .map(|_| tokio::spawn(handshake(addr, pair.clone())))
            .collect();
        // The logout lands somewhere in the burst.
        tokio::time::sleep(Duration::from_millis((round % 6) as u64 * 3)).await;
        sessions.delete(&id);
        revocations
            .revoke_session(&id.digest().to_string())
            .await
            .unwrap();
        for outcome in burst {
            match outcome.await.unwrap() {
                Outcome::Refused => refused += 1,
                Outcome::Revoked => upgraded += 1,
                Outcome::Survived => panic!("round {round}: a socket survived the logout"),
            }
        }
    }
    eprintln!("{upgraded} sockets upgraded and revoked, {refused} refused");
    assert!(
        upgraded > 0 && refused > 0,
        "the logout should have raced the handshakes"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(revocations.is_empty());
}
