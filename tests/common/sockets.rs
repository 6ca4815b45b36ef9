//! The server side of the after-the-handshake tests: a guarded echo
//! application behind first-message authentication (`/first`,
//! `/first-gql`) or the layer (`/ws`), served by axum or by hyper +
//! tokio-tungstenite, and a client that reads close frames.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Request as AxumRequest, State};
use axum::response::Response as AxumResponse;
use axum::routing::any;
use bytes::Bytes;
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
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tower::ServiceExt;
use tower_ws_auth::socket::{AuthSocket, Frame, GraphqlWsMessages};
use tower_ws_auth::{
    AuthError, AuthMethod, Identity, WsAuthLayer, authenticate_fn,
    socket::{CloseCodes, FirstMessageAuth, Revocations, SessionGuard},
};

use super::{Ws, connect, next_text};

/// Tokens are `subject.ttl_ms`, or a word naming an outcome.
pub fn test_auth() -> impl tower_ws_auth::Authenticator + Clone {
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

pub fn boxed_auth() -> tower_ws_auth::BoxAuthenticator {
    use tower_ws_auth::Authenticator;
    test_auth().boxed()
}

#[derive(Clone)]
pub struct App {
    pub first: FirstMessageAuth<tower_ws_auth::BoxAuthenticator>,
    /// `/first-gql`: graphql-ws messages and codes.
    pub first_gql: FirstMessageAuth<tower_ws_auth::BoxAuthenticator, GraphqlWsMessages>,
    pub guard: SessionGuard<tower_ws_auth::BoxAuthenticator>,
    /// `/ws-plain`: expiry and revocation, no refresh; a close waits 1 s
    /// for the peer's Close.
    pub plain: SessionGuard,
    pub revocations: Revocations,
    /// The handshake's authenticator on the `/ws*` routes (default
    /// [`boxed_auth`]).
    pub handshake: tower_ws_auth::BoxAuthenticator,
    delivered: Arc<Mutex<Vec<String>>>,
}

impl App {
    pub fn new(revocations: Revocations) -> Self {
        Self {
            first: FirstMessageAuth::new(boxed_auth()).timeout(Duration::from_millis(600)),
            first_gql: FirstMessageAuth::new(boxed_auth())
                .timeout(Duration::from_millis(300))
                .codes(CloseCodes::graphql_ws())
                .messages(GraphqlWsMessages)
                .max_pending(1.try_into().unwrap()),
            guard: SessionGuard::new(boxed_auth())
                .warn_before(Duration::from_millis(500))
                .revocations(revocations.clone()),
            plain: SessionGuard::expiry_only()
                .revocations(revocations.clone())
                .close_timeout(Duration::from_secs(1)),
            revocations,
            handshake: boxed_auth(),
            delivered: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// The same app with another first-message authentication on `/first`.
    pub fn with_first(mut self, first: FirstMessageAuth<tower_ws_auth::BoxAuthenticator>) -> Self {
        self.first = first;
        self
    }

    /// The same app with another authenticator on the `/ws*` handshakes.
    pub fn with_handshake(mut self, handshake: tower_ws_auth::BoxAuthenticator) -> Self {
        self.handshake = handshake;
        self
    }

    /// The text messages the application was given, in order.
    pub fn delivered(&self) -> Vec<String> {
        self.delivered.lock().unwrap().clone()
    }
}

/// The application: guarded echo, recording what it was given (texts over
/// 1 KiB are recorded by their length); `close-me` makes it close the
/// socket with 4000.
pub async fn run_socket<S: AuthSocket>(app: App, socket: S, identity: Identity) {
    let socket = app.guard.wrap(socket, identity);
    echo(app, socket).await;
}

/// [`run_socket`] under the guard without refresh (`/ws-plain`).
pub async fn run_plain<S: AuthSocket>(app: App, socket: S, identity: Identity) {
    let socket = app.plain.wrap(socket, identity);
    echo(app, socket).await;
}

async fn echo<S: AuthSocket, A: tower_ws_auth::Authenticator>(
    app: App,
    mut socket: tower_ws_auth::socket::GuardedSocket<S, A>,
) {
    while let Some(Ok(message)) = socket.recv().await {
        if let Frame::Text(text) = S::frame(&message) {
            if text == "close-me" {
                socket.close(4000, "bye").await;
                break;
            }
            let text = text.to_owned();
            let recorded = if text.len() > 1024 {
                format!("<{} bytes>", text.len())
            } else {
                text.clone()
            };
            app.delivered.lock().unwrap().push(recorded);
            if socket.send_text(text).await.is_err() {
                break;
            }
        }
    }
}

/// The application over a split guarded socket (`/ws-split`): the
/// receiving half forwards texts to a task owning the sending half, which
/// echoes them; `block-sender` makes that task hold the sending half and
/// wait forever (the guard must close the connection all the same).
pub async fn run_split<S: AuthSocket + 'static>(app: App, socket: S, identity: Identity) {
    let (mut receiver, mut sender) = app.guard.wrap(socket, identity).split();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(16);
    tokio::spawn(async move {
        while let Some(text) = rx.recv().await {
            if text == "block-sender" {
                std::future::pending::<()>().await;
            }
            if sender.send(S::text(text)).await.is_err() {
                break;
            }
        }
    });
    while let Some(Ok(message)) = receiver.next().await {
        if let Frame::Text(text) = S::frame(&message) {
            app.delivered.lock().unwrap().push(text.to_owned());
            if tx.send(text.to_owned()).await.is_err() {
                break;
            }
        }
    }
}

/// The application of `/ws-stream`: the guarded socket used only as a
/// `Stream` (`StreamExt::next`) and a `Sink` (`SinkExt::send`, and
/// `SinkExt::close` on `close-me`), echoing texts.
pub async fn run_stream<S: AuthSocket>(app: App, socket: S, identity: Identity) {
    let mut socket = app.guard.wrap(socket, identity);
    while let Some(Ok(message)) = socket.next().await {
        let Frame::Text(text) = S::frame(&message) else {
            continue;
        };
        if text == "close-me" {
            let _ = SinkExt::close(&mut socket).await;
            break;
        }
        app.delivered.lock().unwrap().push(text.to_owned());
        if socket.send(message).await.is_err() {
            break;
        }
    }
}

/// The application of `/ws-forward`: the split halves joined by
/// `StreamExt::forward`, echoing texts.
pub async fn run_forward<S: AuthSocket + 'static>(app: App, socket: S, identity: Identity) {
    let (receiver, sender) = app.guard.wrap(socket, identity).split();
    let delivered = app.delivered.clone();
    let _ = receiver
        .filter(|message| {
            let text = message.as_ref().ok().and_then(|m| match S::frame(m) {
                Frame::Text(text) => Some(text.to_owned()),
                _ => None,
            });
            let keep = text.is_some();
            if let Some(text) = text {
                delivered.lock().unwrap().push(text);
            }
            std::future::ready(keep)
        })
        .map(|message| message.map_err(tower_ws_auth::socket::SocketError::new))
        .forward(sender)
        .await;
}

/// The message and frame size limit of `/ws-small`.
pub const SMALL: usize = 1024;

/// The application of a guarded route: `/ws-plain`, `/ws-split`,
/// `/ws-stream`, `/ws-forward`, or `/ws` (and `/ws-small`, `/ws` with
/// messages limited to [`SMALL`] bytes).
pub async fn run_guarded<S: AuthSocket + 'static>(
    path: &str,
    app: App,
    socket: S,
    identity: Identity,
) {
    match path {
        "/ws-plain" => run_plain(app, socket, identity).await,
        "/ws-split" => run_split(app, socket, identity).await,
        "/ws-stream" => run_stream(app, socket, identity).await,
        "/ws-forward" => run_forward(app, socket, identity).await,
        _ => run_socket(app, socket, identity).await,
    }
}

pub async fn first_message<S: AuthSocket>(app: App, socket: S, parts: Parts, graphql: bool) {
    let authenticated = if graphql {
        app.first_gql.authenticate(socket, &parts).await
    } else {
        app.first.authenticate(socket, &parts).await
    };
    if let Ok((socket, identity)) = authenticated {
        run_socket(app, socket, identity).await;
    }
}

#[derive(Clone, Copy, Debug)]
pub enum Kind {
    Axum,
    Tungstenite,
}

pub async fn spawn(kind: Kind, app: App) -> SocketAddr {
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
        let ws = if graphql {
            app.first_gql.configure(ws)
        } else {
            app.first.configure(ws)
        };
        ws.on_upgrade(move |socket| first_message(app, socket, parts, graphql))
    }
    async fn guarded(
        ws: WebSocketUpgrade,
        State(app): State<App>,
        identity: Identity,
        uri: http::Uri,
    ) -> AxumResponse {
        let ws = if uri.path() == "/ws-small" {
            ws.max_message_size(SMALL).max_frame_size(SMALL)
        } else {
            ws
        };
        ws.on_upgrade(move |socket| async move {
            run_guarded(uri.path(), app, socket, identity).await;
        })
    }
    let router = axum::Router::new()
        .route("/ws", any(guarded))
        .route("/ws-plain", any(guarded))
        .route("/ws-split", any(guarded))
        .route("/ws-stream", any(guarded))
        .route("/ws-forward", any(guarded))
        .route("/ws-small", any(guarded))
        .route_layer(WsAuthLayer::new(app.handshake.clone()).bearer_header())
        .route("/first", any(first))
        .route("/first-gql", any(first))
        .with_state(app);
    super::serve(router).await
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
        config: Option<WebSocketConfig>,
    ) -> Option<WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>> {
        let upgraded = hyper::upgrade::on(request).await.ok()?;
        Some(WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, config).await)
    }

    let guarded_app = app.clone();
    let guarded = tower::ServiceBuilder::new()
        .layer(WsAuthLayer::new(app.handshake.clone()).bearer_header())
        .service_fn(move |mut request: Request<Incoming>| {
            let app = guarded_app.clone();
            async move {
                let response = switching(&request);
                let identity = request.extensions().get::<Identity>().cloned();
                let path = request.uri().path().to_owned();
                let config = (path == "/ws-small").then(|| {
                    WebSocketConfig::default()
                        .max_message_size(Some(SMALL))
                        .max_frame_size(Some(SMALL))
                });
                tokio::spawn(async move {
                    if let (Some(socket), Some(identity)) =
                        (upgraded(&mut request, config).await, identity)
                    {
                        run_guarded(&path, app, socket, identity).await;
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
            if path.starts_with("/ws") {
                return guarded.oneshot(request).await;
            }
            let response = switching(&request);
            let config = if path == "/first-gql" {
                app.first_gql.websocket_config()
            } else {
                app.first.websocket_config()
            };
            tokio::spawn(async move {
                let Some(socket) = upgraded(&mut request, Some(config)).await else {
                    return;
                };
                let parts = request.into_parts().0;
                first_message(app, socket, parts, path == "/first-gql").await;
            });
            Ok::<_, Infallible>(response)
        }
    });
    super::serve_hyper(service).await
}

pub async fn open(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Ws {
    connect(addr, path, headers).await.expect("upgrade").0
}

/// Reads until the server's close frame; returns its code and reason and
/// the text messages seen before it.
pub async fn close_of(ws: &mut Ws) -> (u16, String, Vec<String>) {
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

pub async fn send(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text.to_owned())).await.unwrap();
}

pub async fn authenticate_first(ws: &mut Ws, token: &str) -> serde_json::Value {
    send(ws, &format!(r#"{{"type":"auth","token":"{token}"}}"#)).await;
    serde_json::from_str(&next_text(ws).await).unwrap()
}
