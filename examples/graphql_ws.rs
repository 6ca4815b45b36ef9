//! GraphQL subscriptions with async-graphql over graphql-ws
//! (`graphql-transport-ws`, the protocol of the npm `graphql-ws` client),
//! authenticated by tower-ws-auth: the token comes in the `connection_init`
//! payload, or before the upgrade in the subprotocol list; the socket is
//! closed when the token expires, with a code the client treats as final.
//!
//! ```sh
//! cargo run --example graphql_ws
//! ```
//!
//! It prints a demo token (valid one hour). The schema:
//!
//! ```graphql
//! type Query { me: User! }            # the authenticated subject
//! type User { id: String! }
//! type Subscription { ticks(everyMs: Int!): Int! }   # 1, 2, 3, ... every `everyMs` (10 to 60000)
//! ```
//!
//! From a graphql-ws client (`npm install graphql-ws`):
//!
//! ```js
//! import { createClient } from "graphql-ws";
//! const client = createClient({
//!   url: "ws://127.0.0.1:3000/graphql",
//!   connectionParams: { token: "<the demo token>" },
//! });
//! client.subscribe({ query: "subscription { ticks(everyMs: 1000) }" },
//!   { next: console.log, error: console.error, complete: () => {} });
//! ```
//!
//! How the socket is authenticated and closed (graphql-ws close codes,
//! [`CloseCodes::graphql_ws`]):
//!
//! * **`connection_init` payload** `{"token": "<jwt>"}`: first-message
//!   authentication ([`FirstMessageAuth`] with [`GraphqlWsDeferredAck`])
//!   reads it within 10 s and verifies the token before any GraphQL runs. A
//!   refused or missing token closes with **4403** Forbidden (as the
//!   graphql-ws reference server does when `onConnect` refuses); the client
//!   retries 4403 up to its `retryAttempts`, and every retry is refused the
//!   same way. No `connection_init` in 10 s: **4408**. The accepted
//!   `connection_init` is then replayed to async-graphql without its
//!   payload, and async-graphql sends the one `connection_ack`.
//! * **Subprotocol carrier** (before the upgrade): a client that can set
//!   the protocol list offers `graphql-transport-ws` and
//!   `base64url.bearer.<base64url of the token>`; [`WsAuthLayer`] verifies
//!   the token before the `101` (a bad one is refused with 401, no socket).
//!   An upgrade that offers no credential entry goes to first-message
//!   authentication instead.
//! * **Expiry**: [`SessionGuard`] closes a live socket when its token
//!   expires with **4401**, which the graphql-ws client treats as fatal: it
//!   stops instead of reconnecting with the same expired token.
//!
//! Environment:
//!
//! * `ADDR`: where to listen (default `127.0.0.1:3000`);
//! * `JWT_SECRET`: the HS256 secret, at least 32 bytes (default: a demo
//!   secret written below, with a warning);
//! * `RUST_LOG` (default `info,tower_ws_auth=debug`): every decision of
//!   tower-ws-auth is logged under the `tower_ws_auth` target, never a token.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_graphql::{Context, Data, EmptyMutation, Object, Schema, SimpleObject, Subscription};
use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use futures_util::Stream;
use futures_util::StreamExt;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use tower::ServiceExt;
use tower_ws_auth::socket::{GraphqlWsDeferredAck, GraphqlWsMessages, NoRefresh};
use tower_ws_auth::{
    Identity, SubprotocolCarrier, WsAuthLayer,
    jwt::JwtAuthenticator,
    socket::{CloseCodes, FirstMessageAuth, SessionGuard},
};

/// DEMO ONLY: a published secret protects nothing. Set `JWT_SECRET`.
const DEMO_HS256_SECRET: &str = "demo-only-hs256-secret-change-me-0123456789";
/// How long the demo token lasts.
const TOKEN_TTL: Duration = Duration::from_secs(3600);
/// The only WebSocket subprotocol served.
const GRAPHQL_TRANSPORT_WS: &str = "graphql-transport-ws";
/// The bounds of `ticks(everyMs:)`.
const EVERY_MS: std::ops::RangeInclusive<i32> = 10..=60_000;

type Jwt = JwtAuthenticator<serde_json::Value>;
type AppSchema = Schema<Query, EmptyMutation, Subscription>;

#[derive(Clone)]
struct App {
    schema: AppSchema,
    /// Reads and verifies `connection_init` on sockets that offered no
    /// credential before the upgrade; sends no `connection_ack`.
    first_message: FirstMessageAuth<Jwt, GraphqlWsDeferredAck>,
    /// Closes every socket when its token expires (4401). graphql-ws has no
    /// in-band refresh: no message is intercepted.
    guard: SessionGuard<NoRefresh, GraphqlWsMessages>,
    /// async-graphql's value for `graphql-transport-ws`.
    protocol: GraphQLProtocol,
}

/// The authenticated subject, handed to the resolvers as connection data.
struct Subject(String);

#[derive(SimpleObject)]
struct User {
    id: String,
}

struct Query;

#[Object]
impl Query {
    /// The authenticated user.
    async fn me(&self, ctx: &Context<'_>) -> async_graphql::Result<User> {
        let Subject(id) = ctx.data::<Subject>()?;
        Ok(User { id: id.clone() })
    }
}

struct Subscription;

#[Subscription]
impl Subscription {
    /// Counts up from 1, one number every `every_ms` milliseconds (10 to 60000).
    async fn ticks(&self, every_ms: i32) -> async_graphql::Result<impl Stream<Item = i32> + use<>> {
        if !EVERY_MS.contains(&every_ms) {
            return Err(format!(
                "everyMs must be between {} and {}",
                EVERY_MS.start(),
                EVERY_MS.end()
            )
            .into());
        }
        let every = Duration::from_millis(every_ms.unsigned_abs().into());
        Ok(futures_util::stream::unfold(0_i32, move |n| async move {
            tokio::time::sleep(every).await;
            let next = n.checked_add(1)?;
            Some((next, next))
        }))
    }
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
    let secret = std::env::var("JWT_SECRET").unwrap_or_else(|_| {
        tracing::warn!(
            "JWT_SECRET is not set: using a published demo secret; never do this in production"
        );
        DEMO_HS256_SECRET.into()
    });

    // HS256 (refused when the secret is shorter than 32 bytes).
    let jwt = Jwt::hs256(secret.as_bytes())?;
    let app = App {
        schema: Schema::build(Query, EmptyMutation, Subscription).finish(),
        first_message: FirstMessageAuth::new(jwt.clone())
            .messages(GraphqlWsDeferredAck)
            // A connection_init without a token (a "malformed" auth message)
            // is refused like a bad token: 4403, not graphql-ws's 4400.
            .codes(CloseCodes::graphql_ws().malformed(4403)?)
            .timeout(Duration::from_secs(10))
            .max_message_bytes((8 * 1024).try_into()?)
            // At most this many sockets may wait for connection_init at once.
            .max_pending(1024.try_into()?),
        guard: SessionGuard::expiry_only()
            .codes(CloseCodes::graphql_ws())
            .messages(GraphqlWsMessages),
        protocol: graphql_transport_ws().await?,
    };

    // `/graphql` is served twice: behind the layer when the upgrade offers a
    // credential in its subprotocol list (verified before the 101, a bad
    // one refused with 401), without it otherwise (first-message auth).
    let carrier = SubprotocolCarrier::new();
    let prefix = carrier.prefix_str().to_owned();
    let verified = any(graphql)
        .layer(WsAuthLayer::new(jwt).subprotocol(carrier))
        .with_state(app.clone());
    let open = any(graphql).with_state(app);
    let router = Router::new().route(
        "/graphql",
        // `any`, not `get`: HTTP/2 WebSockets arrive as CONNECT requests.
        any(move |request: Request| async move {
            let routed = if offers_credential(request.headers(), &prefix) {
                verified.oneshot(request).await
            } else {
                open.oneshot(request).await
            };
            routed.unwrap_or_else(|never: Infallible| match never {})
        }),
    );

    let listener = tokio::net::TcpListener::bind(addr).await?;
    let token = demo_token(&secret, "alice")?;
    println!("graphql_ws listening on ws://{addr}/graphql (graphql-transport-ws)");
    println!();
    println!(
        "  demo token:   {token}\n  (alice, valid {} min; the demo secret is public, never use it for real)",
        TOKEN_TTL.as_secs() / 60
    );
    println!();
    println!("graphql-ws client: connectionParams: {{ token: \"<demo token>\" }}");
    println!("  query:         {{ me {{ id }} }}");
    println!("  subscription:  subscription {{ ticks(everyMs: 1000) }}");
    println!(
        "Or before the upgrade: protocols [\"{GRAPHQL_TRANSPORT_WS}\", \"{}\"]",
        SubprotocolCarrier::new().encode(&token)
    );
    println!(
        "Close codes: 4403 refused or missing token, 4408 no connection_init in 10 s, 4401 token expired"
    );

    serve(listener, router, 10_000).await
}

/// `true` if the upgrade's subprotocol list holds a credential entry.
fn offers_credential(headers: &HeaderMap, prefix: &str) -> bool {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|list| list.split(','))
        .any(|protocol| protocol.trim().starts_with(prefix))
}

/// async-graphql names the protocol only through its extractor: read it
/// from a header holding just `graphql-transport-ws`.
async fn graphql_transport_ws() -> Result<GraphQLProtocol, Box<dyn std::error::Error>> {
    let (mut head, ()) = Request::new(()).into_parts();
    head.headers.insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(GRAPHQL_TRANSPORT_WS),
    );
    GraphQLProtocol::from_request_parts(&mut head, &())
        .await
        .map_err(|status| {
            format!("async-graphql does not know {GRAPHQL_TRANSPORT_WS}: {status}").into()
        })
}

/// The upgrade: `identity` is `Some` when the layer verified a token before
/// it, `None` when the socket authenticates with its `connection_init`.
async fn graphql(
    ws: WebSocketUpgrade,
    protocol: GraphQLProtocol,
    identity: Option<Identity>,
    State(app): State<App>,
    parts: Parts,
) -> Response {
    // The client's first known protocol must be graphql-transport-ws (not
    // the legacy subscriptions-transport-ws, also called "graphql-ws").
    if protocol != app.protocol {
        return (
            StatusCode::BAD_REQUEST,
            "this endpoint speaks graphql-transport-ws\n",
        )
            .into_response();
    }
    let ws = match identity {
        // Verified before the upgrade: GraphQL-sized messages.
        Some(_) => ws
            .read_buffer_size(4096)
            .max_frame_size(64 * 1024)
            .max_message_size(64 * 1024),
        // Not yet authenticated: the limits of an unauthenticated socket
        // (the connection_init cap plus 4 KiB), for the socket's whole life.
        None => app.first_message.configure(ws),
    };
    ws.protocols([GRAPHQL_TRANSPORT_WS])
        .write_buffer_size(4096)
        .on_upgrade(move |socket| run(socket, identity, app, parts))
}

async fn run(socket: WebSocket, identity: Option<Identity>, app: App, parts: Parts) {
    let (socket, identity, replay) = match identity {
        // async-graphql reads the client's own connection_init and acks it.
        Some(identity) => (socket, identity, None),
        // Until this returns, nothing reaches async-graphql; on failure the
        // socket has been closed (4403, 4408, ...).
        None => match app.first_message.authenticate(socket, &parts).await {
            Ok((socket, identity)) => (socket, identity, Some(GraphqlWsDeferredAck::REPLAYED_INIT)),
            Err(error) => {
                tracing::info!(%error, "graphql-ws socket not authenticated");
                return;
            }
        },
    };
    let subject = identity.subject().to_owned();
    // The guard runs in the receiving half: at expiry it closes the socket
    // (4401, with the closing handshake) and ends the stream, which ends
    // async-graphql's loop; its sends fail from then on.
    let (receiver, sender) = app.guard.wrap(socket, identity).split();
    let replayed = futures_util::stream::iter(replay.map(|init| Ok(Message::Text(init.into()))));
    let mut data = Data::default();
    data.insert(Subject(subject.clone()));
    GraphQLWebSocket::new_with_pair(sender, replayed.chain(receiver), app.schema, app.protocol)
        .with_data(data)
        .serve()
        .await;
    tracing::info!(subject, "graphql-ws socket closed");
}

/// A token for `sub` valid for [`TOKEN_TTL`], as an identity provider would
/// issue it.
fn demo_token(secret: &str, sub: &str) -> Result<String, jsonwebtoken::errors::Error> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let claims = serde_json::json!({ "sub": sub, "iat": now, "exp": now + TOKEN_TTL.as_secs() });
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
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
