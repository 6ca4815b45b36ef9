//! Failed-authentication throttling (`WsAuthLayer::failed_auth_limit`),
//! from the client's side: an axum server (peer address from
//! `ConnectInfo`) and a plain hyper server (peer address from a
//! `PeerAddr` extension), each with the layer in front and real upgrade
//! requests over TCP.

use crate::common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::{Calls, UPGRADE_HEADERS, http_request, tokens};
use http::{Response, StatusCode};
use http_body_util::Full;
use tower::ServiceBuilder;
use tower_ws_auth::WsAuthLayer;
use tower_ws_auth::throttle::{FailedAuthLimit, ProxyHeader, TrustedProxies};

#[derive(Clone, Copy, Debug)]
enum Server {
    Axum,
    Hyper,
}

/// A server behind the `tokens` authenticator (counting its calls in
/// `calls`) limited by `limit`.
async fn serve(server: Server, calls: &Calls, limit: FailedAuthLimit) -> SocketAddr {
    let layer = WsAuthLayer::new(tokens(calls)).failed_auth_limit(limit);
    match server {
        Server::Axum => common::serve(common::app(layer)).await,
        Server::Hyper => {
            let service = ServiceBuilder::new()
                .layer(layer)
                .service_fn(|_request| async {
                    Ok::<_, Infallible>(
                        Response::builder()
                            .status(StatusCode::SWITCHING_PROTOCOLS)
                            .body(Full::<Bytes>::default())
                            .unwrap(),
                    )
                });
            common::serve_hyper(service).await
        }
    }
}

/// An upgrade of `/ws` with `token` and `extra` headers: status and headers.
async fn upgrade(
    addr: SocketAddr,
    token: &str,
    extra: &[(&str, &str)],
) -> (StatusCode, http::HeaderMap) {
    let bearer = format!("Bearer {token}");
    let mut headers: Vec<(&str, &str)> = UPGRADE_HEADERS.to_vec();
    headers.push(("authorization", &bearer));
    headers.extend_from_slice(extra);
    let (status, headers, _) = http_request(addr, "/ws", &headers).await;
    (status, headers)
}

fn limit(failures: u32, window: Duration) -> FailedAuthLimit {
    FailedAuthLimit::new(failures.try_into().unwrap(), window).unwrap()
}

fn retry_after(headers: &http::HeaderMap) -> u64 {
    headers[http::header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// Successes never count; after `limit` failures the address gets 429 with
/// `Retry-After` (at most the window) for any credential, valid or not,
/// without the authenticator running; once the window has passed, it starts
/// afresh.
async fn failures_past_the_limit_are_throttled_without_running_the_authenticator(server: Server) {
    let calls = Calls::default();
    let addr = serve(server, &calls, limit(3, Duration::from_secs(2))).await;
    for _ in 0..5 {
        assert_eq!(
            upgrade(addr, "alice-token", &[]).await.0,
            StatusCode::SWITCHING_PROTOCOLS
        );
    }
    for _ in 0..3 {
        assert_eq!(
            upgrade(addr, "wrong", &[]).await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    let before = calls.get();
    for token in ["wrong", "alice-token"] {
        let (status, headers) = upgrade(addr, token, &[]).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{token}");
        assert!((1..=2).contains(&retry_after(&headers)), "{headers:?}");
        assert!(!headers.contains_key(http::header::WWW_AUTHENTICATE));
    }
    assert_eq!(calls.get(), before, "the authenticator did not run");
    // A missing credential counts too; it is throttled like the rest.
    let (status, _, _) = http_request(addr, "/ws", &UPGRADE_HEADERS).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    // The window (2 s) has passed: a new one starts.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        upgrade(addr, "wrong", &[]).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        upgrade(addr, "alice-token", &[]).await.0,
        StatusCode::SWITCHING_PROTOCOLS
    );
}

/// Behind a trusted proxy (the loopback peer here), each forwarded client
/// address has its own count, read from `X-Forwarded-For` or `Forwarded`.
async fn a_trusted_proxys_clients_are_counted_apart(server: Server) {
    for header in [ProxyHeader::XForwardedFor, ProxyHeader::Forwarded] {
        let calls = Calls::default();
        let proxies = TrustedProxies::new(["127.0.0.1".parse().unwrap()]).header(header);
        let limit = limit(2, Duration::from_secs(60)).trust_proxies(proxies);
        let addr = serve(server, &calls, limit).await;
        let from = |client: &str| match header {
            ProxyHeader::XForwardedFor => ("x-forwarded-for", format!("{client}, 127.0.0.1")),
            _ => (
                "forwarded",
                format!("for={client};proto=http, for=127.0.0.1"),
            ),
        };
        let (name, first) = from("203.0.113.1");
        for _ in 0..2 {
            let status = upgrade(addr, "wrong", &[(name, &first)]).await.0;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{header:?}");
        }
        let status = upgrade(addr, "wrong", &[(name, &first)]).await.0;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{header:?}");
        let (_, second) = from("203.0.113.2");
        let status = upgrade(addr, "wrong", &[(name, &second)]).await.0;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{header:?}: another client"
        );
        let status = upgrade(addr, "alice-token", &[(name, &second)]).await.0;
        assert_eq!(status, StatusCode::SWITCHING_PROTOCOLS, "{header:?}");
    }
}

/// From a peer that is not a trusted proxy, `X-Forwarded-For` and
/// `Forwarded` are ignored: a client that names a new address with every
/// attempt is still counted as itself.
async fn a_spoofed_forwarded_for_is_ignored(server: Server) {
    let calls = Calls::default();
    // A proxy is trusted, but not the loopback peer the client is.
    let proxies = TrustedProxies::new(["10.0.0.1".parse().unwrap()]);
    let addr = serve(
        server,
        &calls,
        limit(2, Duration::from_secs(60)).trust_proxies(proxies),
    )
    .await;
    let mut statuses = Vec::new();
    for i in 0..4 {
        let spoofed = format!("198.51.100.{i}");
        let forwarded = format!("for={spoofed}");
        let extra = [
            ("x-forwarded-for", spoofed.as_str()),
            ("forwarded", forwarded.as_str()),
        ];
        statuses.push(upgrade(addr, "wrong", &extra).await.0.as_u16());
    }
    assert_eq!(statuses, [401, 401, 429, 429]);
}

macro_rules! for_both_servers {
    ($($name:ident),* $(,)?) => {
        mod axum_server {
            $(#[tokio::test] async fn $name() { super::$name(super::Server::Axum).await })*
        }
        mod hyper_server {
            $(#[tokio::test] async fn $name() { super::$name(super::Server::Hyper).await })*
        }
    };
}

for_both_servers!(
    failures_past_the_limit_are_throttled_without_running_the_authenticator,
    a_trusted_proxys_clients_are_counted_apart,
    a_spoofed_forwarded_for_is_ignored,
);
