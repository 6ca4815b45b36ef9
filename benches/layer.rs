//! The layer's own cost per request, with an authenticator that does no
//! work, next to the bare inner service: per carrier, for a rejection, and
//! for a non-upgrade request passing through.
//!
//! ```sh
//! cargo bench --bench layer
//! ```
//!
//! One case also runs the layer around an inner service boxed as axum
//! boxes a route, whose clone allocates: the layer calls the instance that
//! was polled ready and leaves a clone behind. For instruction counts
//! (deterministic where times on a shared machine are not), run one case a
//! fixed number of times under callgrind; see `fixed` below.
//!
//! Requests are built outside the measured part; the futures complete on
//! their first poll (nothing here waits on I/O), so what is measured is the
//! layer's CPU work.
//!
//! With the `metrics` feature (`cargo bench --bench layer --features
//! metrics`) two more cases run with metrics-exporter-prometheus's recorder
//! installed (this thread's), to measure what recording costs per upgrade
//! against the same cases without a recorder and without the feature.
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
use criterion::{BatchSize, Criterion, criterion_group};
use futures_util::FutureExt;
use http::{Request, Response};
use tower::util::BoxCloneSyncService;
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

fn inner() -> impl Service<
    Request<()>,
    Response = Response<Body>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Body>, Infallible>> + Send,
> + Clone
+ Send
+ Sync
+ 'static {
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

/// What a case runs its request through.
#[derive(Clone, Copy)]
enum Target {
    /// The inner service alone.
    Bare,
    /// The layer around it.
    Layer,
    /// The layer around it boxed as axum boxes a route (`Route` is a
    /// `BoxCloneSyncService`): cloning it allocates.
    LayerBoxed,
}

/// The requests measured: (name, what runs it, the request).
type Case = (&'static str, Target, Box<dyn Fn() -> Request<()>>);

fn cases(token: &'static str) -> Vec<Case> {
    let bearer = format!("Bearer {token}");
    let offer = format!("chat, {}", SubprotocolCarrier::new().encode(token));
    let cookie = format!("theme=dark; session={token}");
    let query = format!("/ws?room=1&token={token}");
    let plain = || {
        let request = Request::builder()
            .uri("/index.html")
            .header("host", "127.0.0.1:3000")
            .body(())
            .unwrap();
        served(request, false)
    };
    let (bearer2, bearer3) = (bearer.clone(), bearer.clone());
    vec![
        (
            "bare inner service (upgrade request)",
            Target::Bare,
            Box::new(move || upgrade_request(&[("authorization", &bearer)], "/ws")),
        ),
        (
            "bearer header",
            Target::Layer,
            Box::new(move || upgrade_request(&[("authorization", &bearer2)], "/ws")),
        ),
        (
            "bearer header, boxed inner service (as an axum route)",
            Target::LayerBoxed,
            Box::new(move || upgrade_request(&[("authorization", &bearer3)], "/ws")),
        ),
        (
            "subprotocol",
            Target::Layer,
            Box::new(move || upgrade_request(&[("sec-websocket-protocol", &offer)], "/ws")),
        ),
        (
            "cookie + origin",
            Target::Layer,
            Box::new(move || upgrade_request(&[("cookie", &cookie), ("origin", ORIGIN)], "/ws")),
        ),
        (
            "custom header",
            Target::Layer,
            Box::new(move || upgrade_request(&[("x-api-key", token)], "/ws")),
        ),
        (
            "query",
            Target::Layer,
            Box::new(move || upgrade_request(&[], &query)),
        ),
        (
            "rejected: no credential",
            Target::Layer,
            Box::new(|| upgrade_request(&[], "/ws")),
        ),
        (
            "bare inner service (plain request)",
            Target::Bare,
            Box::new(plain),
        ),
        (
            "pass-through (plain request)",
            Target::Layer,
            Box::new(plain),
        ),
    ]
}

const ORIGIN: &str = "http://127.0.0.1:3000";
const TOKEN: &str =
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXBsYWNlaG9sZGVyLXRoYXQtaXMtbG9uZw";

fn authed_layer() -> WsAuthLayer<impl tower_ws_auth::Authenticator> {
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
    WsAuthLayer::new(noop)
        .bearer_header()
        .subprotocol_token()
        .cookie("session", OriginPolicy::from_origins([ORIGIN]).unwrap())
        .unwrap()
        .query_param("token")
        .unwrap()
        .header("x-api-key")
        .unwrap()
}

/// The three services a case can run through.
struct Services<A, B, C> {
    bare: A,
    layer: B,
    boxed: C,
}

/// A service the cases run requests through.
trait Measured: Service<Request<()>, Response = Response<Body>, Error = Infallible> {}
impl<S: Service<Request<()>, Response = Response<Body>, Error = Infallible>> Measured for S {}

fn services() -> Services<impl Measured, impl Measured, impl Measured> {
    Services {
        bare: inner(),
        layer: authed_layer().layer(inner()),
        boxed: authed_layer().layer(BoxCloneSyncService::new(inner())),
    }
}

fn layer(c: &mut Criterion) {
    let mut s = services();
    let mut group = c.benchmark_group("layer");
    group
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    for (name, target, request) in cases(TOKEN) {
        group.bench_function(name, |b| match target {
            Target::Bare => b.iter_batched(&request, |r| black_box(run(&mut s.bare, r)), BATCH),
            Target::Layer => b.iter_batched(&request, |r| black_box(run(&mut s.layer, r)), BATCH),
            Target::LayerBoxed => {
                b.iter_batched(&request, |r| black_box(run(&mut s.boxed, r)), BATCH)
            }
        });
    }
    #[cfg(feature = "metrics")]
    {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let _local = metrics::set_default_local_recorder(&recorder);
        let bearer = format!("Bearer {TOKEN}");
        let accepted = move || upgrade_request(&[("authorization", &bearer)], "/ws");
        group.bench_function("bearer header, prometheus recorder", |b| {
            b.iter_batched(&accepted, |r| black_box(run(&mut s.layer, r)), BATCH)
        });
        let refused = || upgrade_request(&[], "/ws");
        group.bench_function("rejected: no credential, prometheus recorder", |b| {
            b.iter_batched(&refused, |r| black_box(run(&mut s.layer, r)), BATCH)
        });
        // The floor of what an accepted upgrade records, without the layer:
        // the exporter's counter increment and histogram sample through
        // kept handles, and the two clock reads of the authenticator's time.
        let key = metrics::Key::from_static_name("floor_total");
        let meta = metrics::Metadata::new("bench", metrics::Level::INFO, None);
        let counter = metrics::Recorder::register_counter(&recorder, &key, &meta);
        group.bench_function("prometheus counter increment alone", |b| {
            b.iter(|| counter.increment(1))
        });
        let key = metrics::Key::from_static_name("floor_seconds");
        let histogram = metrics::Recorder::register_histogram(&recorder, &key, &meta);
        group.bench_function("prometheus histogram sample alone", |b| {
            b.iter(|| histogram.record(black_box(0.000_123)))
        });
        group.bench_function("two clock reads alone", |b| {
            b.iter(|| black_box(std::time::Instant::now().elapsed()))
        });
    }
    group.finish();
}

/// `LAYER_BENCH_FIXED=<n> LAYER_BENCH_CASE=<name>`: runs the one case `n`
/// times, without criterion, and exits; for instruction counts, which are
/// deterministic where wall-clock times on a shared machine are not:
///
/// ```sh
/// for n in 0 10000; do LAYER_BENCH_FIXED=$n LAYER_BENCH_CASE="bearer header" \
///   valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/deps/layer-* --bench \
///   2>&1 | grep refs; done   # (difference) / 10000 = instructions per request
/// ```
///
/// With `--features metrics`, `LAYER_BENCH_RECORDER=1` runs the case under
/// metrics-exporter-prometheus's recorder.
fn fixed() -> bool {
    let Some(n) = std::env::var("LAYER_BENCH_FIXED")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
    else {
        return false;
    };
    let wanted = std::env::var("LAYER_BENCH_CASE").unwrap_or_default();
    let mut s = services();
    let Some((_, target, request)) = cases(TOKEN).into_iter().find(|c| c.0 == wanted) else {
        eprintln!("LAYER_BENCH_CASE must name a case");
        std::process::exit(2);
    };
    // `LAYER_BENCH_RECORDER=1` (with `--features metrics`): under
    // metrics-exporter-prometheus's recorder, as the prometheus cases.
    #[cfg(feature = "metrics")]
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    #[cfg(feature = "metrics")]
    let _local = std::env::var_os("LAYER_BENCH_RECORDER")
        .map(|_| metrics::set_default_local_recorder(&recorder));
    for _ in 0..n {
        let r = request();
        match target {
            Target::Bare => black_box(run(&mut s.bare, r)),
            Target::Layer => black_box(run(&mut s.layer, r)),
            Target::LayerBoxed => black_box(run(&mut s.boxed, r)),
        };
    }
    true
}

criterion_group!(benches, layer);

fn main() {
    if !fixed() {
        benches();
        Criterion::default().configure_from_args().final_summary();
    }
}
