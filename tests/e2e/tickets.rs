//! Connection tickets (`ticket::Tickets`) through real sockets: minting over
//! HTTP, redemption on the upgrade from the query and subprotocol carriers,
//! single use under concurrency, and the Redis store shared by two server
//! instances (a real redis-server), its expiry and its outage.

use std::num::NonZeroUsize;
use std::time::{Duration, SystemTime};

use axum::Router;
use base64::Engine as _;
use futures_util::future::join_all;
use http::StatusCode;
use tower_ws_auth::ticket::Tickets;
use tower_ws_auth::{AuthError, AuthMethod, Authenticator, Identity, WsAuthLayer, authenticate_fn};

use crate::common::redis::{Redis, RedisServer};
use crate::common::{self, connect, connect_ok, offer};
use crate::session_common::fred_client;

/// `Authorization: Bearer alice-token` is alice, with scopes, a session id
/// and an expiry ten minutes away.
fn bearer() -> impl Authenticator + Clone {
    authenticate_fn(|credential, _request| {
        let outcome = match credential.expose_secret() {
            "alice-token" => Ok(Identity::builder("alice", AuthMethod::Jwt)
                .scopes(["chat:read", "chat:write"])
                .session_id("sess-1")
                .token_id("jti-1")
                .expires_in(Duration::from_secs(600))
                .build()),
            _ => Err(AuthError::invalid("unknown token")),
        };
        async move { outcome }
    })
}

/// The standard test routes behind tickets (query `ticket`, subprotocol) or
/// the bearer, and `POST /ws-ticket` behind the bearer.
fn app(tickets: &Tickets) -> Router {
    let ws = WsAuthLayer::new(tickets.clone().or(bearer()))
        .bearer_header()
        .subprotocol_token()
        .query_param("ticket")
        .unwrap()
        .query_param("token")
        .unwrap();
    let mint = WsAuthLayer::new(bearer())
        .bearer_header()
        .protect_all_requests(true);
    common::app(ws).route("/ws-ticket", tickets.mint_route().layer(mint))
}

/// `POST /ws-ticket` as alice; the ticket.
async fn mint(addr: std::net::SocketAddr) -> String {
    let (status, headers, body) = post(addr, &[("authorization", "Bearer alice-token")]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    json["ticket"].as_str().unwrap().to_owned()
}

async fn post(
    addr: std::net::SocketAddr,
    headers: &[(&str, &str)],
) -> (StatusCode, http::HeaderMap, String) {
    common::http_send(addr, http::Method::POST, "/ws-ticket", headers, "").await
}

fn assert_invalid_token(refused: &common::Refused) {
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{refused:?}");
    assert!(refused.challenge().unwrap().contains("invalid_token"));
}

/// Redeems `ticket` at `addr` and checks the identity the handler sees:
/// alice with every field the minting identity had.
async fn redeem_as_alice(addr: std::net::SocketAddr, ticket: &str) {
    let (_ws, report, _) = connect_ok(addr, &format!("/ws?a=1&ticket={ticket}&b=2"), &[]).await;
    assert_eq!(report["subject"], "alice");
    assert_eq!(
        report["scopes"],
        serde_json::json!(["chat:read", "chat:write"])
    );
    assert_eq!(report["session_id"], "sess-1");
    assert_eq!(
        report["query"], "a=1&b=2",
        "the ticket is removed from the URI"
    );
}

#[tokio::test]
async fn memory_tickets_are_single_use_from_the_query_or_the_subprotocol() {
    let tickets = Tickets::in_memory(NonZeroUsize::new(100).unwrap());
    let addr = common::serve(app(&tickets)).await;
    let logs = common::LogCapture::start();

    let ticket = mint(addr).await;
    redeem_as_alice(addr, &ticket).await;
    assert_invalid_token(
        &connect(addr, &format!("/ws?ticket={ticket}"), &[])
            .await
            .unwrap_err(),
    );

    // Beside the `token` parameter: the ticket wins, both are removed.
    let ticket = mint(addr).await;
    let (_ws, report, _) =
        connect_ok(addr, &format!("/ws?token=other&ticket={ticket}&x=y"), &[]).await;
    assert_eq!(report["subject"], "alice");
    assert_eq!(report["query"], "x=y");

    // The subprotocol carrier: `chat` is echoed, the entry is stripped.
    let ticket = mint(addr).await;
    let (_ws, report, response) = connect_ok(
        addr,
        "/ws/select",
        &[("sec-websocket-protocol", &offer(&ticket))],
    )
    .await;
    assert_eq!(response.headers()["sec-websocket-protocol"], "chat");
    assert_eq!(report["subject"], "alice");
    assert_eq!(report["protocols"], "chat");

    // A ticket in the bearer header is not a ticket: the bearer
    // authenticator refuses it.
    let ticket = mint(addr).await;
    let bearer = format!("Bearer {ticket}");
    assert_invalid_token(
        &connect(addr, "/ws", &[("authorization", &bearer)])
            .await
            .unwrap_err(),
    );
    // ... and that did not spend it.
    redeem_as_alice(addr, &ticket).await;

    // Eight concurrent handshakes with one ticket: exactly one upgrade.
    let ticket = mint(addr).await;
    let path = format!("/ws?ticket={ticket}");
    let outcomes = join_all((0..8).map(|_| connect(addr, &path, &[]))).await;
    let won = outcomes.iter().filter(|o| o.is_ok()).count();
    assert_eq!(won, 1, "one redemption wins");
    for refused in outcomes.into_iter().filter_map(Result::err) {
        assert_invalid_token(&refused);
    }

    // Minting needs the bearer.
    assert_eq!(post(addr, &[]).await.0, StatusCode::UNAUTHORIZED);
    assert!(!logs.text().contains("wst_"), "a ticket reached the logs");
}

#[tokio::test]
async fn a_full_memory_store_is_503_until_tickets_are_redeemed() {
    let tickets = Tickets::in_memory(NonZeroUsize::new(2).unwrap());
    let addr = common::serve(app(&tickets)).await;
    let first = mint(addr).await;
    let _second = mint(addr).await;
    let (status, headers, _) = post(addr, &[("authorization", "Bearer alice-token")]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(headers.contains_key("retry-after"));
    redeem_as_alice(addr, &first).await;
    let _third = mint(addr).await;
}

/// The key a ticket is stored under in Redis.
fn redis_key(ticket: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, ticket.as_bytes());
    format!(
        "tower-ws-auth:ticket:{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref())
    )
}

#[tokio::test]
async fn redis_tickets_minted_on_one_instance_are_redeemed_once_on_any() {
    use fred::prelude::*;
    let Some(redis) = Redis::get("tickets redis_tickets_minted_on_one_instance") else {
        return;
    };
    let one = common::serve(app(&Tickets::redis(fred_client(&redis.url()).await))).await;
    let two = common::serve(app(&Tickets::redis(fred_client(&redis.url()).await))).await;
    let inspect = fred_client(&redis.url()).await;

    // Minted on one, redeemed on two; the record holds no usable ticket.
    let ticket = mint(one).await;
    let record: Option<String> = inspect.get(redis_key(&ticket)).await.unwrap();
    let record = record.expect("the ticket is stored under its digest");
    assert!(!record.contains(&ticket[4..]), "{record}");
    let ttl: i64 = inspect.pttl(redis_key(&ticket)).await.unwrap();
    assert!((1..=30_000).contains(&ttl), "PX 30 s, got {ttl} ms");
    redeem_as_alice(two, &ticket).await;
    let gone: Option<String> = inspect.get(redis_key(&ticket)).await.unwrap();
    assert!(gone.is_none(), "GETDEL removed it");
    assert_invalid_token(
        &connect(one, &format!("/ws?ticket={ticket}"), &[])
            .await
            .unwrap_err(),
    );

    // Concurrent handshakes on both instances: exactly one wins.
    let ticket = mint(two).await;
    let path = format!("/ws?ticket={ticket}");
    let outcomes =
        join_all((0..8).map(|i| connect(if i % 2 == 0 { one } else { two }, &path, &[]))).await;
    assert_eq!(outcomes.iter().filter(|o| o.is_ok()).count(), 1);

    // The identity's expiry is carried: a ticket for an identity that
    // expires before the ticket does is refused once it has expired.
    let short = Tickets::redis(fred_client(&redis.url()).await);
    let identity = Identity::builder("dave", AuthMethod::Jwt)
        .expires_at(SystemTime::now() + Duration::from_millis(1500))
        .build();
    let ticket = short.issue(&identity).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let addr = common::serve(app(&short)).await;
    assert_invalid_token(
        &connect(addr, &format!("/ws?ticket={}", ticket.expose_secret()), &[])
            .await
            .unwrap_err(),
    );
}

#[tokio::test]
async fn redis_expires_unredeemed_tickets() {
    let Some(redis) = Redis::get("tickets redis_expires_unredeemed_tickets") else {
        return;
    };
    let tickets = Tickets::redis(fred_client(&redis.url()).await)
        .ttl(Duration::from_secs(1))
        .unwrap();
    let addr = common::serve(app(&tickets)).await;
    let ticket = mint(addr).await;
    // Redis's own PX expiry (documented: the key lives `ttl`).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_invalid_token(
        &connect(addr, &format!("/ws?ticket={ticket}"), &[])
            .await
            .unwrap_err(),
    );
}

#[tokio::test]
async fn redis_down_is_503_not_401() {
    let Some(mut redis) = RedisServer::start("tickets redis_down_is_503_not_401") else {
        return;
    };
    let tickets = Tickets::redis(fred_client(&redis.url()).await);
    let addr = common::serve(app(&tickets)).await;
    let ticket = mint(addr).await;
    redis.stop();
    let (status, headers, _) = post(addr, &[("authorization", "Bearer alice-token")]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(headers.contains_key("retry-after"));
    let refused = connect(addr, &format!("/ws?ticket={ticket}"), &[])
        .await
        .unwrap_err();
    assert_eq!(
        refused.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{refused:?}"
    );
}
