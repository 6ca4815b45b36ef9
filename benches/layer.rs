//! The layer's own cost per request, with an authenticator that does no
//! work, next to the bare inner service: per carrier, for a rejection, and
//! for a non-upgrade request passing through.
//!
//! ```sh
//! cargo bench --bench layer
//! ```
//!
//! Requests are built outside the measured part; the futures complete on
//! their first poll (nothing here waits on I/O), so what is measured is the
//! layer's CPU work.
//!
//! The requests carry the extensions a real one has by the time an axum
//! route layer sees it: hyper's `OnUpgrade` (upgrade requests only), axum's
//! `OriginalUri`, `MatchedPath` and URL parameters (stand-ins of the same
//! count where the real types cannot be built outside their crates). A
//! request with no extensions at all would make the layer pay for
//! allocating the extension map, a cost a served request never has.

use std::convert::Infallible;
use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use http::{Request, Response};
use tower::{Service, ServiceExt, service_fn};
use tower_layer::Layer;
use tower_ws_auth::{
    AuthError, AuthMethod, Identity, OriginPolicy, SubprotocolCarrier, WsAuthLayer, authenticate_fn,
};

type Body = http_body_util::Full<Bytes>;

/// Requests are built in batches of this many before the timed loop: few
/// enough to stay in cache, as a request hyper has just parsed is. (With
/// criterion's `SmallInput`, batches of thousands of requests are built
/// first and each is cold by the time it is used; that measures memory
/// latency, not the layer.)
const BATCH: BatchSize = BatchSize::NumIterations(64);

/// Stand-in for hyper's `OnUpgrade`, present on every HTTP/1.1 upgrade request.
#[derive(Clone)]
struct OnUpgradeStandIn;
/// Stand-in for axum's `MatchedPath` (an `Arc<str>` there).
#[derive(Clone)]
struct MatchedPathStandIn(#[allow(dead_code)] std::sync::Arc<str>);
/// Stand-in for axum's URL parameters.
#[derive(Clone)]
struct UrlParamsStandIn;

/// The extensions axum's router and hyper have inserted before a route
/// layer runs.
fn served<B>(mut request: Request<B>, upgrade: bool) -> Request<B> {
    let uri = request.uri().clone();
    let extensions = request.extensions_mut();
    if upgrade {
        extensions.insert(OnUpgradeStandIn);
    }
    extensions.insert(axum::extract::OriginalUri(uri));
    extensions.insert(MatchedPathStandIn("/ws".into()));
    extensions.insert(UrlParamsStandIn);
    request
}

fn inner() -> impl Service<Request<()>, Response = Response<Body>, Error = Infallible> + Clone {
    service_fn(|_request: Request<()>| async {
        Ok::<_, Infallible>(Response::new(Body::default()))
    })
}

fn upgrade_request(extra: &[(&'static str, &str)], uri: &str) -> Request<()> {
    let mut builder = Request::builder()
        .uri(uri)
        .header("host", "127.0.0.1:3000")
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
    for (name, value) in extra {
        builder = builder.header(*name, *value);
    }
    served(builder.body(()).unwrap(), true)
}

/// Runs `service` once on `request`, to completion, on this thread.
fn run<S>(service: &mut S, request: Request<()>) -> Response<Body>
where
    S: Service<Request<()>, Response = Response<Body>, Error = Infallible>,
{
    let future = service
        .ready()
        .now_or_never()
        .unwrap()
        .unwrap()
        .call(request);
    future
        .now_or_never()
        .expect("completes on first poll")
        .unwrap()
}

fn layer(c: &mut Criterion) {
    let token =
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXBsYWNlaG9sZGVyLXRoYXQtaXMtbG9uZw";
    let identity = Identity::builder("alice", AuthMethod::Jwt)
        .scope("chat")
        .build();
    let noop = authenticate_fn(move |credential, _| {
        let result = if credential.expose_secret().is_empty() {
            Err(AuthError::invalid("empty"))
        } else {
            Ok(identity.clone())
        };
        std::future::ready(result)
    });
    let origin = "http://127.0.0.1:3000";
    let auth_layer = WsAuthLayer::new(noop)
        .bearer_header()
        .subprotocol_token()
        .cookie("session", OriginPolicy::from_origins([origin]).unwrap())
        .query_param("token")
        .header("x-api-key");
    let mut bare = inner();
    let mut authed = auth_layer.layer(inner());

    let bearer = format!("Bearer {token}");
    let offer = format!("chat, {}", SubprotocolCarrier::new().encode(token));
    let cookie = format!("theme=dark; session={token}");
    let query = format!("/ws?room=1&token={token}");

    let mut group = c.benchmark_group("layer");
    group
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    group.bench_function("bare inner service (upgrade request)", |b| {
        b.iter_batched(
            || upgrade_request(&[("authorization", &bearer)], "/ws"),
            |r| black_box(run(&mut bare, r)),
            BATCH,
        )
    });
    group.bench_function("bearer header", |b| {
        b.iter_batched(
            || upgrade_request(&[("authorization", &bearer)], "/ws"),
            |r| black_box(run(&mut authed, r)),
            BATCH,
        )
    });
    group.bench_function("subprotocol", |b| {
        b.iter_batched(
            || upgrade_request(&[("sec-websocket-protocol", &offer)], "/ws"),
            |r| black_box(run(&mut authed, r)),
            BATCH,
        )
    });
    group.bench_function("cookie + origin", |b| {
        b.iter_batched(
            || upgrade_request(&[("cookie", &cookie), ("origin", origin)], "/ws"),
            |r| black_box(run(&mut authed, r)),
            BATCH,
        )
    });
    group.bench_function("custom header", |b| {
        b.iter_batched(
            || upgrade_request(&[("x-api-key", token)], "/ws"),
            |r| black_box(run(&mut authed, r)),
            BATCH,
        )
    });
    group.bench_function("query", |b| {
        b.iter_batched(
            || upgrade_request(&[], &query),
            |r| black_box(run(&mut authed, r)),
            BATCH,
        )
    });
    group.bench_function("rejected: no credential", |b| {
        b.iter_batched(
            || upgrade_request(&[], "/ws"),
            |r| black_box(run(&mut authed, r)),
            BATCH,
        )
    });
    let plain = || {
        let request = Request::builder()
            .uri("/index.html")
            .header("host", "127.0.0.1:3000")
            .body(())
            .unwrap();
        served(request, false)
    };
    group.bench_function("bare inner service (plain request)", |b| {
        b.iter_batched(plain, |r| black_box(run(&mut bare, r)), BATCH)
    });
    group.bench_function("pass-through (plain request)", |b| {
        b.iter_batched(plain, |r| black_box(run(&mut authed, r)), BATCH)
    });
    group.finish();
}

criterion_group!(benches, layer);
criterion_main!(benches);
