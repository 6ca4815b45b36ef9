//! examples/graphql_ws.rs against the real npm `graphql-ws` client (with the
//! `ws` WebSocket implementation), driven by tests/graphql_ws/client.mjs:
//! what the client observes for a good token, a refused or missing token
//! (with retries), an expiring token, no `connection_init`, and a token
//! checked before the upgrade (subprotocol carrier).
//!
//! Needs Node.js and `npm ci --prefix tests/graphql_ws` (`.ci/run` does
//! both); without them the test prints a SKIPPED line, and fails under `CI`.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::process::start_example;
use serde_json::{Value, json};

const SECRET: &str = "graphql-ws-test-secret-0123456789-abcdefgh";

fn token(secret: &str, subject: &str, ttl: u64) -> String {
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({ "sub": subject, "exp": now + ttl });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// Node.js and the installed client, or `None` (after a SKIPPED line)
/// outside CI.
fn node_and_client() -> Option<(PathBuf, PathBuf)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/graphql_ws");
    let node = std::env::var_os("TOWER_WS_AUTH_NODE")
        .map(PathBuf::from)
        .or_else(|| Some(PathBuf::from("/usr/bin/node")).filter(|p| p.exists()))
        .or_else(|| {
            Command::new("node")
                .arg("--version")
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|_| PathBuf::from("node"))
        });
    let installed = dir.join("node_modules/graphql-ws/package.json").exists()
        && dir.join("node_modules/ws/package.json").exists();
    match node {
        Some(node) if installed => Some((node, dir.join("client.mjs"))),
        _ => {
            let missing = "Node.js (TOWER_WS_AUTH_NODE, /usr/bin/node or node on PATH) and \
                           `npm ci --prefix tests/graphql_ws`";
            if std::env::var_os("CI").is_some() {
                panic!("CI must run the graphql-ws test: it needs {missing}");
            }
            eprintln!("\n*** SKIPPED graphql_ws: needs {missing} ***\n");
            None
        }
    }
}

/// Runs client.mjs with `options` (it stops by itself at `deadlineMs`) and
/// returns its events. With `stdin_token`, the token is written to the
/// client once it is loaded (`tokenFromStdin`), minted only then: Node may
/// take seconds to start on a loaded machine, longer than a short-lived
/// token lives.
fn client(
    node: &Path,
    script: &Path,
    options: Value,
    stdin_token: Option<&dyn Fn() -> String>,
) -> Vec<Value> {
    let mut child = Command::new(node)
        .arg(script)
        .arg(options.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run node");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut head = String::new();
    if let Some(mint) = stdin_token {
        stdout.read_line(&mut head).unwrap();
        assert!(head.contains(r#""ready""#), "client {options}: {head}");
        let mut stdin = child.stdin.take().unwrap();
        writeln!(stdin, "{}", mint()).unwrap();
        head.clear();
    }
    drop(child.stdin.take());
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let output = child.wait_with_output().expect("wait for node");
    let stdout = head + &rest;
    let events: Vec<Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}")))
        .collect();
    assert!(
        output.status.success(),
        "client {options}: {}\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        !events
            .iter()
            .any(|e| e["event"] == "crash" || e["event"] == "deadline"),
        "client {options}: {events:#?}"
    );
    events
}

fn of<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == kind).collect()
}

/// Every socket the client opened ended with `code` after a complete
/// closing handshake; returns how many there were.
fn sockets_closed(events: &[Value], code: u16) -> usize {
    let opened = of(events, "socket").len();
    let closed = of(events, "socket_closed");
    assert_eq!(closed.len(), opened, "{events:#?}");
    for close in &closed {
        assert_eq!(close["code"], code, "{events:#?}");
        assert_eq!(close["wasClean"], true, "{events:#?}");
    }
    opened
}

/// `me` answered `subject`, `ticks` ticks 1, 2, 3... arrived, then the
/// client completed and closed its one socket normally.
fn assert_subscribed(events: &[Value], subject: &str, ticks: u64) {
    assert_eq!(
        of(events, "ack").len(),
        1,
        "one connection_ack: {events:#?}"
    );
    let me = of(events, "me");
    assert_eq!(me.len(), 1, "{events:#?}");
    assert_eq!(
        me[0]["data"],
        json!({ "me": { "id": subject } }),
        "{events:#?}"
    );
    assert_eq!(me[0]["errors"], Value::Null, "{events:#?}");
    let values: Vec<u64> = of(events, "tick")
        .iter()
        .map(|t| t["value"].as_u64().unwrap())
        .collect();
    assert_eq!(values, (1..=ticks).collect::<Vec<_>>(), "{events:#?}");
    assert_eq!(of(events, "complete").len(), 1, "{events:#?}");
    assert!(of(events, "error").is_empty(), "{events:#?}");
    assert_eq!(sockets_closed(events, 1000), 1, "{events:#?}");
}

/// The client gave up with `code`.
fn assert_gave_up(events: &[Value], code: u16) {
    let errors = of(events, "error");
    assert_eq!(errors.len(), 1, "{events:#?}");
    assert_eq!(errors[0]["code"], code, "{events:#?}");
    assert!(of(events, "me").is_empty(), "{events:#?}");
}

#[test]
fn graphql_ws_example_with_the_npm_client() {
    let Some((node, script)) = node_and_client() else {
        return;
    };
    let (server, addr) = start_example("graphql_ws", &[("JWT_SECRET", SECRET)]);
    let demo = server.wait_for_line(|line| {
        let rest = line.trim_start().strip_prefix("demo token:")?;
        Some(rest.trim().to_owned())
    });
    let url = format!("ws://{addr}/graphql");
    let bad = token(
        "another-secret-0123456789-0123456789-abcdef",
        "mallory",
        600,
    );
    let carried = token(SECRET, "carol", 600);
    let short = std::sync::Mutex::new(String::new());

    std::thread::scope(|scope| {
        let run = |options: Value| {
            let (node, script) = (&node, &script);
            scope.spawn(move || client(node, script, options, None))
        };
        // A token that expires ~2 s after the client has started.
        let (node_ref, script_ref, url_ref, short_ref) = (&node, &script, &url, &short);
        let expiring = scope.spawn(move || {
            let mint = || {
                let token = token(SECRET, "alice", 3);
                *short_ref.lock().unwrap() = token.clone();
                token
            };
            let options = json!({
                "url": url_ref, "scenario": "subscribe", "tokenFromStdin": true, "everyMs": 100,
                "deadlineMs": 30000,
            });
            client(node_ref, script_ref, options, Some(&mint))
        });
        let good = run(json!({
            "url": url, "scenario": "subscribe", "token": demo, "ticks": 3, "everyMs": 50,
            "deadlineMs": 30000,
        }));
        let refused = run(json!({
            "url": url, "scenario": "subscribe", "token": bad, "retryAttempts": 2,
            "deadlineMs": 30000,
        }));
        let missing = run(json!({
            "url": url, "scenario": "subscribe", "retryAttempts": 1, "deadlineMs": 30000,
        }));
        let silent = run(json!({ "url": url, "scenario": "silent", "deadlineMs": 30000 }));
        let carrier = run(json!({
            "url": url, "scenario": "carrier", "token": carried, "ticks": 3, "everyMs": 50,
            "deadlineMs": 30000,
        }));

        // A good token in connection_init: `me` is its subject, ticks flow,
        // one connection_ack, one socket closed cleanly (1000) at the end.
        assert_subscribed(&good.join().unwrap(), "alice", 3);

        // Pre-upgrade subprotocol carrier: the same, without a payload token.
        assert_subscribed(&carrier.join().unwrap(), "carol", 3);

        // A refused token: every attempt (1 + 2 retries) closed with 4403,
        // cleanly; then the client gives up with 4403.
        let events = refused.join().unwrap();
        assert_eq!(sockets_closed(&events, 4403), 3, "{events:#?}");
        assert_gave_up(&events, 4403);
        assert!(of(&events, "ack").is_empty(), "{events:#?}");

        // No token in the payload: refused the same way (4403, retried).
        let events = missing.join().unwrap();
        assert_eq!(sockets_closed(&events, 4403), 2, "{events:#?}");
        assert_gave_up(&events, 4403);

        // A token expiring while subscribed: 4401 (fatal for the client),
        // cleanly, no tick after it, and no reconnection.
        let events = expiring.join().unwrap();
        assert_eq!(sockets_closed(&events, 4401), 1, "{events:#?}");
        let errors = of(&events, "error");
        assert_eq!(errors.len(), 1, "{events:#?}");
        assert_eq!(errors[0]["code"], 4401, "{events:#?}");
        let closed_at = events
            .iter()
            .position(|e| e["event"] == "socket_closed")
            .unwrap();
        assert!(
            !events[closed_at..].iter().any(|e| e["event"] == "tick"),
            "{events:#?}"
        );
        assert!(!of(&events, "tick").is_empty(), "{events:#?}");
        assert_eq!(of(&events, "me")[0]["data"]["me"]["id"], "alice");

        // No connection_init: closed with 4408 after the 10 s deadline.
        let events = silent.join().unwrap();
        assert_eq!(sockets_closed(&events, 4408), 1, "{events:#?}");
        let at = |kind| of(&events, kind)[0]["ms"].as_u64().unwrap();
        let waited = Duration::from_millis(at("socket_closed") - at("socket"));
        assert!(
            (Duration::from_secs(10)..Duration::from_secs(13)).contains(&waited),
            "closed after {waited:?}"
        );
    });

    // No token reaches the logs (the banner's demo token aside).
    let logs = server.output();
    let short = short.into_inner().unwrap();
    assert!(!short.is_empty());
    for secret in [&bad, &short, &carried] {
        assert!(
            !logs.contains(secret.as_str()),
            "a token leaked into the logs"
        );
    }
}
