//! Autobahn|Testsuite, the WebSocket protocol conformance suite, in
//! fuzzingclient mode against two guarded echo servers:
//!
//! * the quickstart example's `/ws/echo` (axum's `WebSocket` under
//!   `SessionGuard`), run as its binary on an ephemeral port;
//! * a `GuardedSocket`-wrapped echo on hyper 1 + tokio-tungstenite's
//!   `WebSocketStream`, served in this process and built like
//!   `examples/hyper_tungstenite.rs` (`WsAuthLayer`, a hand-written upgrade,
//!   `SessionGuard::expiry_only().wrap(...)`).
//!
//! Both are authenticated before the upgrade through the subprotocol
//! carrier: the fuzzingclient offers `chat, base64url.bearer.<base64url(jwt)>`
//! (its per-server `protocols` setting), and the 101 selects `chat`.
//!
//! Every case runs except the 9.x (performance: very large messages and
//! many frames), 12.x and 13.x (permessage-deflate compression, which
//! neither server negotiates) groups. Each case must end with `behavior`
//! OK, NON-STRICT or INFORMATIONAL, and with `behaviorClose` OK or
//! INFORMATIONAL after a clean closing handshake (`wasClean` in the case
//! report: Close frames sent and received before the TCP connection ended);
//! the test fails naming every case that did not. The hyper echo keeps the
//! example's 64 KiB message limit, so there case 7.1.6 (a 256 KiB message,
//! informational) ends with 1009 instead of an echo.
//!
//! `wstest` comes from `TOWER_WS_AUTH_WSTEST`, else from the virtualenv that
//! `.ci/autobahn.sh` installs (`~/.cache/tower-ws-auth/autobahn-venv`).
//! Without it the test prints a SKIPPED line and passes, except under `CI`,
//! where it fails. Reports go to a temporary directory, kept (and named)
//! when the test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/hs256.rs"]
mod hs256;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::process::start_example;
use http::header::{
    CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL, UPGRADE,
};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tower::ServiceBuilder;
use tower_ws_auth::{
    Identity, SubprotocolCarrier, WsAuthLayer, jwt::JwtAuthenticator, socket::SessionGuard,
};

const SECRET: &str = "autobahn-test-secret-0123456789-abcdefghij";
/// The whole run (both servers, 247 cases each) ends within this.
const RUN_LIMIT: Duration = Duration::from_secs(360);
/// The cases of Autobahn|Testsuite 0.8.2 outside 9.x, 12.x and 13.x.
const CASES_PER_SERVER: usize = 247;
const EXCLUDED: [&str; 3] = ["9.*", "12.*", "13.*"];

fn wstest() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("TOWER_WS_AUTH_WSTEST").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let home = std::env::var_os("HOME")?;
    let path = Path::new(&home).join(".cache/tower-ws-auth/autobahn-venv/bin/wstest");
    path.is_file().then_some(path)
}

/// The hyper + tokio-tungstenite echo: the layer (subprotocol carrier), a
/// hand-written upgrade selecting `chat`, and the guarded socket echoing
/// text and binary messages.
async fn hyper_tungstenite_echo() -> SocketAddr {
    async fn handle(mut request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
        let mut response = Response::new(Full::default());
        let (Some(identity), Some(key)) = (
            request.extensions().get::<Identity>().cloned(),
            request.headers().get(SEC_WEBSOCKET_KEY),
        ) else {
            *response.status_mut() = StatusCode::BAD_REQUEST;
            return Ok(response);
        };
        let accept = HeaderValue::from_str(&derive_accept_key(key.as_bytes())).unwrap();
        // The layer has taken the credential out of the offer.
        let chat = request
            .headers()
            .get_all(SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|p| p.trim() == "chat");
        let on_upgrade = hyper::upgrade::on(&mut request);
        tokio::spawn(async move {
            let Ok(upgraded) = on_upgrade.await else {
                return;
            };
            // The example's configuration.
            let config = WebSocketConfig::default()
                .read_buffer_size(4096)
                .write_buffer_size(4096)
                .max_message_size(Some(64 * 1024));
            let socket = WebSocketStream::from_raw_socket(
                TokioIo::new(upgraded),
                Role::Server,
                Some(config),
            )
            .await;
            let mut socket = SessionGuard::expiry_only().wrap(socket, identity);
            while let Some(Ok(message)) = socket.recv().await {
                let reply = match message {
                    Message::Text(_) | Message::Binary(_) => message,
                    _ => continue,
                };
                if socket.send(reply).await.is_err() {
                    break;
                }
            }
        });
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(SEC_WEBSOCKET_ACCEPT, accept);
        if chat {
            headers.insert(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static("chat"));
        }
        Ok(response)
    }

    let jwt = JwtAuthenticator::<serde_json::Value>::hs256(SECRET.as_bytes()).unwrap();
    let service = ServiceBuilder::new()
        .layer(WsAuthLayer::new(jwt).subprotocol_token())
        .service_fn(handle);
    common::serve_hyper(service).await
}

/// One case that did not pass, for the failure message.
struct Bad {
    id: String,
    behavior: String,
    behavior_close: String,
    was_clean: Option<bool>,
    why: String,
}

/// The case ids in the order Autobahn numbers them (1.1.10 after 1.1.9).
fn case_order(id: &str) -> Vec<u32> {
    id.split('.')
        .map(|n| n.parse().unwrap_or(u32::MAX))
        .collect()
}

/// `text` with every `\uD800`-`\uDFFF` escape replaced by U+FFFD: the
/// wire logs of the invalid-UTF-8 cases (6.x) hold lone surrogates, which
/// Python writes and serde_json refuses.
fn without_surrogates(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("\\u") {
        let (before, escape) = rest.split_at(at);
        out.push_str(before);
        let hex = escape.get(2..6).unwrap_or("");
        let surrogate = u16::from_str_radix(hex, 16).is_ok_and(|u| (0xD800..=0xDFFF).contains(&u));
        if surrogate {
            out.push_str("\\ufffd");
            rest = &escape[6..];
        } else {
            out.push_str("\\u");
            rest = &escape[2..];
        }
    }
    out.push_str(rest);
    out
}

/// Checks one agent's results; returns the cases that failed.
fn check_agent(
    dir: &Path,
    agent: &str,
    cases: &serde_json::Map<String, serde_json::Value>,
) -> Vec<Bad> {
    let mut bad = Vec::new();
    let mut ids: Vec<&String> = cases.keys().collect();
    ids.sort_by_key(|id| case_order(id));
    for id in ids {
        let summary = &cases[id];
        let field = |v: &serde_json::Value, name: &str| v[name].as_str().unwrap_or("?").to_owned();
        let behavior = field(summary, "behavior");
        let behavior_close = field(summary, "behaviorClose");
        let report = summary["reportfile"]
            .as_str()
            .and_then(|file| std::fs::read_to_string(dir.join(file)).ok())
            .and_then(|text| {
                serde_json::from_str::<serde_json::Value>(&without_surrogates(&text)).ok()
            });
        let was_clean = report.as_ref().and_then(|r| r["wasClean"].as_bool());
        let ok = matches!(behavior.as_str(), "OK" | "NON-STRICT" | "INFORMATIONAL")
            && matches!(behavior_close.as_str(), "OK" | "INFORMATIONAL")
            && was_clean == Some(true);
        if !ok {
            let why = report.as_ref().map_or_else(
                || format!("no case report for {agent}"),
                |r| {
                    let reason = r["wasNotCleanReason"].as_str().unwrap_or("");
                    format!(
                        "{} / {}; remote close code {}",
                        r["result"].as_str().unwrap_or(""),
                        if reason.is_empty() {
                            r["resultClose"].as_str().unwrap_or("")
                        } else {
                            reason
                        },
                        r["remoteCloseCode"],
                    )
                },
            );
            bad.push(Bad {
                id: id.clone(),
                behavior,
                behavior_close,
                was_clean,
                why,
            });
        }
    }
    bad
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autobahn_fuzzingclient_on_both_adapters() {
    let Some(wstest) = wstest() else {
        if std::env::var_os("CI").is_some() {
            panic!(
                "CI must run Autobahn|Testsuite: .ci/autobahn.sh installs it and sets TOWER_WS_AUTH_WSTEST"
            );
        }
        eprintln!(
            "\n*** SKIPPED autobahn_fuzzingclient_on_both_adapters: no wstest (run .ci/autobahn.sh, or set TOWER_WS_AUTH_WSTEST) ***\n"
        );
        return;
    };

    let (quickstart, quickstart_addr) = start_example("quickstart", &[("JWT_SECRET", SECRET)]);
    let hyper_addr = hyper_tungstenite_echo().await;
    let offer = |subject: &str| {
        serde_json::json!([
            "chat",
            SubprotocolCarrier::new().encode(&hs256::token(
                SECRET,
                subject,
                Duration::from_secs(3600)
            ))
        ])
    };

    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let dir = std::env::temp_dir().join(format!(
        "tower-ws-auth-autobahn-{}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let reports = dir.join("reports/servers");
    let spec = serde_json::json!({
        "outdir": reports,
        "options": { "failByDrop": false },
        "servers": [
            {
                "agent": "quickstart",
                "url": format!("ws://{quickstart_addr}/ws/echo"),
                "protocols": offer("autobahn-quickstart"),
            },
            {
                "agent": "hyper-tungstenite",
                "url": format!("ws://{hyper_addr}/ws/echo"),
                "protocols": offer("autobahn-hyper"),
            },
        ],
        "cases": ["*"],
        "exclude-cases": EXCLUDED,
        "exclude-agent-cases": {},
    });
    let spec_file = dir.join("fuzzingclient.json");
    std::fs::write(&spec_file, serde_json::to_vec_pretty(&spec).unwrap()).unwrap();

    // wstest prints a line per case: into a file, shown on failure.
    let log_file = dir.join("wstest.log");
    let log = std::fs::File::create(&log_file).unwrap();
    let started = Instant::now();
    let mut child = tokio::process::Command::new(&wstest)
        .args(["--mode", "fuzzingclient", "--spec"])
        .arg(&spec_file)
        .current_dir(&dir)
        .env("PYTHONWARNINGS", "ignore")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", wstest.display()));
    let log_tail = || {
        let text = std::fs::read_to_string(&log_file).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    };
    let status = match tokio::time::timeout(RUN_LIMIT, child.wait()).await {
        Ok(status) => status.unwrap(),
        Err(_) => {
            let _ = child.kill().await;
            panic!(
                "wstest did not finish within {RUN_LIMIT:?}; reports in {}\n{}",
                dir.display(),
                log_tail()
            );
        }
    };
    let elapsed = started.elapsed();
    assert!(
        status.success(),
        "wstest failed ({status}); reports in {}\n{}",
        dir.display(),
        log_tail()
    );
    drop(quickstart);

    let index: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(reports.join("index.json")).unwrap_or_else(|e| {
            panic!(
                "no index.json in {}: {e}\n{}",
                reports.display(),
                log_tail()
            )
        }),
    )
    .unwrap();
    let mut failures = BTreeMap::new();
    let mut summary = Vec::new();
    for agent in ["quickstart", "hyper-tungstenite"] {
        let cases = index[agent]
            .as_object()
            .unwrap_or_else(|| panic!("no results for {agent} in index.json\n{}", log_tail()));
        assert_eq!(
            cases.len(),
            CASES_PER_SERVER,
            "{agent}: expected every case outside {EXCLUDED:?} to run"
        );
        assert!(
            cases.keys().all(|id| !["9.", "12.", "13."]
                .iter()
                .any(|group| id.starts_with(group))),
            "{agent}: an excluded group ran"
        );
        let bad = check_agent(&reports, agent, cases);
        let unclean = bad.iter().filter(|b| b.was_clean != Some(true)).count();
        summary.push(format!(
            "{agent}: {} cases, {} not passing ({unclean} without a clean close)",
            cases.len(),
            bad.len()
        ));
        if !bad.is_empty() {
            failures.insert(agent, bad);
        }
    }
    eprintln!("autobahn: {} in {elapsed:.1?}", summary.join("; "));
    if failures.is_empty() {
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    let mut message = format!(
        "Autobahn|Testsuite: {}; reports in {}\n",
        summary.join("; "),
        reports.display()
    );
    for (agent, bad) in &failures {
        for case in bad {
            message.push_str(&format!(
                "  {agent} {}: behavior {}, behaviorClose {}, wasClean {:?} ({})\n",
                case.id, case.behavior, case.behavior_close, case.was_clean, case.why
            ));
        }
    }
    panic!("{message}");
}
