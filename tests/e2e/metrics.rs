//! The metrics of the `metrics` feature, through a real server and real
//! clients, seen by a recording recorder (metrics-util's
//! `DebuggingRecorder`): every emitted name and label value is one of the
//! lists documented in `tower_ws_auth::metrics`, and each decision or
//! socket end is counted once, with the right labels, on both socket
//! adapters.
//!
//! The recorder is this thread's (`set_default_local_recorder`): a test's
//! current-thread runtime runs its server there too, so the tests of this
//! binary running in parallel do not see each other's metrics.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::StreamExt;
use http::StatusCode;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use tokio_tungstenite::tungstenite::Message;
use tower_ws_auth::metrics as m;
use tower_ws_auth::socket::Revocations;

use crate::common::sockets::{self, App, Kind};
use crate::common::{
    Calls, SITE, app, assert_clean_end, connect, every_carrier, offer, serve, try_connect,
};

/// A metric: its name and its labels, sorted.
type Series = (String, Vec<(String, String)>);

/// Everything recorded so far. The debugging recorder hands out what was
/// recorded since its previous snapshot (counters and gauges reset to 0),
/// so totals are the sum of the snapshots.
#[derive(Default)]
struct Recorded {
    values: BTreeMap<Series, f64>,
    samples: BTreeMap<Series, Vec<f64>>,
}

struct Recording {
    snapshotter: Snapshotter,
    recorded: Recorded,
}

impl Recording {
    fn update(&mut self) -> &Recorded {
        for (key, _, _, value) in self.snapshotter.snapshot().into_vec() {
            let key = key.key();
            let mut labels: Vec<_> = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            labels.sort();
            let series = (key.name().to_owned(), labels);
            assert_documented(&series);
            match value {
                DebugValue::Counter(n) => {
                    *self.recorded.values.entry(series).or_default() += n as f64;
                }
                DebugValue::Gauge(g) => *self.recorded.values.entry(series).or_default() += g.0,
                DebugValue::Histogram(h) => self
                    .recorded
                    .samples
                    .entry(series)
                    .or_default()
                    .extend(h.iter().map(|v| v.0)),
            }
        }
        &self.recorded
    }

    /// The value of `name` with exactly `labels` (0 if never recorded).
    fn value(&mut self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let series = series(name, labels);
        self.update().values.get(&series).copied().unwrap_or(0.0)
    }

    fn samples(&mut self, name: &str, labels: &[(&str, &str)]) -> usize {
        let series = series(name, labels);
        self.update().samples.get(&series).map_or(0, Vec::len)
    }

    /// Waits (polling, up to 10 s) until `name{labels}` is `expected`: the
    /// server counts a socket's end once its task has seen it, a little
    /// after the client.
    async fn until(&mut self, name: &str, labels: &[(&str, &str)], expected: f64) {
        for _ in 0..1000 {
            if self.value(name, labels) == expected {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "{name}{labels:?} is {}, expected {expected}",
            self.value(name, labels)
        );
    }
}

fn series(name: &str, labels: &[(&str, &str)]) -> Series {
    let mut labels: Vec<_> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    labels.sort();
    (name.to_owned(), labels)
}

/// The semver contract: the name is one of `metrics::NAMES`, with exactly
/// its documented labels, each value from its documented list.
fn assert_documented((name, labels): &Series) {
    let allowed: &[(&str, &[&str])] = match name.as_str() {
        m::UPGRADES_TOTAL => &[
            ("carrier", &m::CARRIERS),
            ("outcome", &m::OUTCOMES),
            ("reason", &m::REASONS),
        ],
        m::AUTHENTICATION_SECONDS => &[("authenticator", &m::AUTHENTICATORS)],
        m::OPEN_CONNECTIONS => &[],
        m::CLOSES_TOTAL => &[("reason", &m::CLOSE_REASONS)],
        m::JWKS_REFRESHES_TOTAL => &[("outcome", &m::JWKS_OUTCOMES)],
        other => panic!("undocumented metric {other}"),
    };
    assert!(m::NAMES.contains(&name.as_str()));
    let keys: Vec<_> = labels.iter().map(|(k, _)| k.as_str()).collect();
    let expected: Vec<_> = allowed.iter().map(|(k, _)| *k).collect();
    assert_eq!(keys, expected, "labels of {name}");
    for ((key, value), (_, values)) in labels.iter().zip(allowed) {
        assert!(
            values.contains(&value.as_str()),
            "{name}: {key}={value} is not documented"
        );
    }
    if name == m::UPGRADES_TOTAL {
        let value = |key: &str| {
            labels
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(
            value("outcome") == Some("accepted"),
            value("reason") == Some("none"),
            "{labels:?}"
        );
    }
}

fn upgrade(
    outcome: &'static str,
    reason: &'static str,
    carrier: &'static str,
) -> Vec<(&'static str, &'static str)> {
    vec![
        ("outcome", outcome),
        ("reason", reason),
        ("carrier", carrier),
    ]
}

#[tokio::test]
async fn every_decision_of_the_layer_is_counted_once_with_its_documented_labels() {
    let recorder = DebuggingRecorder::new();
    let mut recording = Recording {
        snapshotter: recorder.snapshotter(),
        recorded: Recorded::default(),
    };
    let _local = ::metrics::set_default_local_recorder(&recorder);
    let calls = Calls::default();
    let addr = serve(app(every_carrier(&calls))).await;

    let big = format!("Bearer {}", "a".repeat(9 * 1024));
    let refused: [(&[(&str, &str)], StatusCode); 7] = [
        (&[], StatusCode::UNAUTHORIZED),
        (
            &[("authorization", "Bearer nope")],
            StatusCode::UNAUTHORIZED,
        ),
        (
            &[("authorization", "Bearer readonly-token")],
            StatusCode::FORBIDDEN,
        ),
        (
            &[("authorization", "Bearer backend-down")],
            StatusCode::SERVICE_UNAVAILABLE,
        ),
        (&[("authorization", "Basic eA==")], StatusCode::BAD_REQUEST),
        (
            &[
                ("cookie", "session=alice-session"),
                ("origin", "http://evil.example.test"),
            ],
            StatusCode::FORBIDDEN,
        ),
        (
            &[("authorization", big.as_str())],
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        ),
    ];
    for (headers, status) in refused {
        let refused = connect(addr, "/ws", headers).await.unwrap_err();
        assert_eq!(refused.status, status, "{headers:?}");
    }
    let subprotocol = offer("alice-token");
    let accepted: [(&str, &[(&str, &str)]); 5] = [
        ("/ws", &[("authorization", "Bearer alice-token")]),
        ("/ws", &[("x-api-key", "bob-token")]),
        ("/ws?token=alice-token", &[]),
        ("/ws", &[("sec-websocket-protocol", subprotocol.as_str())]),
        (
            "/ws",
            &[("cookie", "session=alice-session"), ("origin", SITE)],
        ),
    ];
    for (path, headers) in accepted {
        let (mut ws, _) = connect(addr, path, headers).await.expect("accepted");
        ws.close(None).await.unwrap();
    }

    let expected = [
        (upgrade("rejected", "missing_credential", "none"), 1.0),
        (upgrade("rejected", "invalid_token", "bearer"), 1.0),
        (upgrade("rejected", "insufficient_scope", "bearer"), 1.0),
        (upgrade("rejected", "unavailable", "bearer"), 1.0),
        (upgrade("rejected", "invalid_request", "bearer"), 1.0),
        (upgrade("rejected", "origin_refused", "cookie"), 1.0),
        (upgrade("rejected", "credential_too_large", "bearer"), 1.0),
        (upgrade("accepted", "none", "bearer"), 1.0),
        (upgrade("accepted", "none", "header"), 1.0),
        (upgrade("accepted", "none", "query"), 1.0),
        (upgrade("accepted", "none", "subprotocol"), 1.0),
        (upgrade("accepted", "none", "cookie"), 1.0),
    ];
    for (labels, value) in &expected {
        assert_eq!(
            recording.value(m::UPGRADES_TOTAL, labels),
            *value,
            "{labels:?}"
        );
    }
    let total: f64 = recording
        .update()
        .values
        .iter()
        .filter(|((name, _), _)| name == m::UPGRADES_TOTAL)
        .map(|(_, v)| v)
        .sum();
    assert_eq!(total, expected.len() as f64, "one count per decision");
    // The authenticator's time: one sample per call, under its name (a
    // closure: `custom`).
    assert_eq!(
        recording.samples(m::AUTHENTICATION_SECONDS, &[("authenticator", "custom")]),
        calls.get()
    );
    assert_eq!(calls.get(), 8);
}

/// A layer keeps the handles of the first recorder that records through
/// it, and of that one only: a recorder installed after the layer's first
/// requests gets every decision from then on, and another recorder after
/// it gets the decisions made under it, not the first one.
#[tokio::test]
async fn each_recorder_gets_the_decisions_made_under_it() {
    let calls = Calls::default();
    let addr = serve(app(every_carrier(&calls))).await;
    let decide = || async {
        let refused = connect(addr, "/ws", &[]).await.unwrap_err();
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
        let bearer = [("authorization", "Bearer alice-token")];
        let (mut ws, _) = connect(addr, "/ws", &bearer).await.expect("accepted");
        ws.close(None).await.unwrap();
    };
    let recording = |recorder: &DebuggingRecorder| Recording {
        snapshotter: recorder.snapshotter(),
        recorded: Recorded::default(),
    };
    let totals = |recording: &mut Recording| {
        let refused = upgrade("rejected", "missing_credential", "none");
        let accepted = upgrade("accepted", "none", "bearer");
        let timed = [("authenticator", "custom")];
        (
            recording.value(m::UPGRADES_TOTAL, &refused),
            recording.value(m::UPGRADES_TOTAL, &accepted),
            recording.samples(m::AUTHENTICATION_SECONDS, &timed),
        )
    };

    // No recorder yet: the no-op one.
    decide().await;
    let (first, second) = (DebuggingRecorder::new(), DebuggingRecorder::new());
    let (mut in_first, mut in_second) = (recording(&first), recording(&second));
    let installed = ::metrics::set_default_local_recorder(&first);
    decide().await;
    decide().await;
    drop(installed);
    let _installed = ::metrics::set_default_local_recorder(&second);
    decide().await;

    assert_eq!(totals(&mut in_first), (2.0, 2.0, 2), "the first recorder");
    assert_eq!(totals(&mut in_second), (1.0, 1.0, 1), "the second recorder");
    assert_eq!(calls.get(), 4);
}

/// Opens a guarded socket on `/ws` (or `path`) and waits for its echo: the
/// server has wrapped it.
async fn open_guarded(addr: std::net::SocketAddr, path: &str, token: &str) -> crate::common::Ws {
    let bearer = format!("Bearer {token}");
    let mut ws = sockets::open(addr, path, &[("authorization", &bearer)]).await;
    crate::common::assert_echo(&mut ws, "ping").await;
    ws
}

async fn gauge_follows_sockets(kind: Kind) {
    let recorder = DebuggingRecorder::new();
    let mut recording = Recording {
        snapshotter: recorder.snapshotter(),
        recorded: Recorded::default(),
    };
    let _local = ::metrics::set_default_local_recorder(&recorder);
    let app = App::new(Revocations::new());
    let addr = sockets::spawn(kind, app.clone()).await;
    let open = m::OPEN_CONNECTIONS;

    let mut first = open_guarded(addr, "/ws", "alice.60000").await;
    let mut second = open_guarded(addr, "/ws-split", "bob.60000").await;
    assert_eq!(recording.value(open, &[]), 2.0, "{kind:?}");

    // The peer closes: the gauge goes down, the end is `peer`.
    first.close(None).await.unwrap();
    let reply = first.next().await;
    assert!(matches!(reply, Some(Ok(Message::Close(_)))), "{reply:?}");
    assert_clean_end(&mut first, "peer close").await;
    recording.until(open, &[], 1.0).await;
    assert_eq!(recording.value(m::CLOSES_TOTAL, &[("reason", "peer")]), 1.0);

    // Revoked (a split socket): `revoked`, the gauge back to 0.
    app.revocations.revoke_subject("bob").await.unwrap();
    let (code, _, _) = sockets::close_of(&mut second).await;
    assert_eq!(code, 4003);
    assert_clean_end(&mut second, "revoked").await;
    recording.until(open, &[], 0.0).await;
    assert_eq!(
        recording.value(m::CLOSES_TOTAL, &[("reason", "revoked")]),
        1.0
    );

    // The application closes: `application`.
    let mut third = open_guarded(addr, "/ws", "dave.60000").await;
    sockets::send(&mut third, "close-me").await;
    let (code, _, _) = sockets::close_of(&mut third).await;
    assert_eq!(code, 4000);
    recording.until(open, &[], 0.0).await;
    assert_eq!(
        recording.value(m::CLOSES_TOTAL, &[("reason", "application")]),
        1.0
    );

    // Expiry: `expired`, the gauge back to 0.
    let mut expiring = open_guarded(addr, "/ws-plain", "carol.400").await;
    assert_eq!(recording.value(open, &[]), 1.0);
    let (code, _, _) = sockets::close_of(&mut expiring).await;
    assert_eq!(code, 4002);
    recording.until(open, &[], 0.0).await;
    assert_eq!(
        recording.value(m::CLOSES_TOTAL, &[("reason", "expired")]),
        1.0
    );

    // A message over the socket's size limit: failed with 1009, `too_big`.
    let mut small = open_guarded(addr, "/ws-small", "erin.60000").await;
    sockets::send(&mut small, &"x".repeat(sockets::SMALL + 1)).await;
    let (code, _, _) = sockets::close_of(&mut small).await;
    assert_eq!(code, 1009, "{kind:?}");
    assert_clean_end(&mut small, "too big").await;
    recording.until(open, &[], 0.0).await;
    assert_eq!(
        recording.value(m::CLOSES_TOTAL, &[("reason", "too_big")]),
        1.0
    );
    assert_eq!(
        recording.value(m::CLOSES_TOTAL, &[("reason", "error")]),
        0.0
    );

    // A first-message authentication that times out: `auth_timeout`,
    // never in the gauge.
    let (mut pending, _) = try_connect(addr, "/first", &[]).await.unwrap();
    let (code, _, _) = sockets::close_of(&mut pending).await;
    assert_eq!(code, 4008);
    recording
        .until(m::CLOSES_TOTAL, &[("reason", "auth_timeout")], 1.0)
        .await;
    assert_eq!(recording.value(open, &[]), 0.0);
}

#[tokio::test]
async fn the_open_connections_gauge_follows_axum_sockets_up_and_down() {
    gauge_follows_sockets(Kind::Axum).await;
}

#[tokio::test]
async fn the_open_connections_gauge_follows_tungstenite_sockets_up_and_down() {
    gauge_follows_sockets(Kind::Tungstenite).await;
}

/// A remote key set: each fetch counted by its outcome, the JWT
/// authenticator's time under `jwt`, the refusal while the keys cannot be
/// fetched under `unavailable`.
#[cfg(feature = "jwks")]
#[tokio::test]
async fn jwks_fetches_and_jwt_authentications_are_counted() {
    use crate::jwt_common::key_server::{KeyServer, Mode, quick, rsa_jwk, token, unavailable};
    use crate::jwt_common::{accepted, init, serve};
    use jsonwebtoken::Algorithm;
    use tower_ws_auth::jwt::JwtAuthenticator;

    init();
    let recorder = DebuggingRecorder::new();
    let mut recording = Recording {
        snapshotter: recorder.snapshotter(),
        recorded: Recorded::default(),
    };
    let _local = ::metrics::set_default_local_recorder(&recorder);
    let keys = KeyServer::start(vec![rsa_jwk("k1")]).await;
    let jwks = quick(&keys.url()).build().unwrap();
    let server = serve(JwtAuthenticator::from_remote_jwks(jwks)).await;
    accepted(server.addr, &token(Algorithm::RS256, "k1", "a")).await;
    let fetches = m::JWKS_REFRESHES_TOTAL;
    assert_eq!(recording.value(fetches, &[("outcome", "success")]), 1.0);

    keys.set_mode(Mode::Down);
    // Past the refetch interval (200 ms), an unknown kid may be fetched.
    tokio::time::sleep(Duration::from_millis(250)).await;
    // An unknown kid while the server is down: one fetch, which fails.
    unavailable(server.addr, &token(Algorithm::ES256, "k2", "b")).await;
    assert_eq!(recording.value(fetches, &[("outcome", "failure")]), 1.0);
    assert_eq!(recording.value(fetches, &[("outcome", "success")]), 1.0);
    assert_eq!(keys.hits(), 2);

    assert_eq!(
        recording.value(
            m::UPGRADES_TOTAL,
            &upgrade("rejected", "unavailable", "bearer")
        ),
        1.0
    );
    assert_eq!(
        recording.value(m::UPGRADES_TOTAL, &upgrade("accepted", "none", "bearer")),
        1.0
    );
    assert_eq!(
        recording.samples(m::AUTHENTICATION_SECONDS, &[("authenticator", "jwt")]),
        2
    );
}
