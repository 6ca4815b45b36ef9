//! Every example runs as documented: each test starts an example's binary
//! (built by `cargo test` into `target/debug/examples/`) on a free loopback
//! port, waits for it to listen, then runs the `websocat` and `curl`
//! commands the example printed at start, with a real tokio-tungstenite
//! client and a real HTTP client, and checks each against the outcome its
//! comment announces (`# 403 ...`: that status; no comment: success).
//! Then it walks through what the commands cannot show (close codes,
//! refresh, revocation) and kills the child.
//!
//! `quickstart` is tested with the README; `graphql_ws` with the npm
//! `graphql-ws` client in tests/graphql_ws.rs.
#![cfg_attr(
    not(all(feature = "axum", feature = "jwt")),
    allow(dead_code, unused_imports)
)]

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::Ws;
use common::process::{Proc, start_example};
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

/// How long an example may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long any one message or answer may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// A running example; killed when dropped (its output is printed if the
/// test failed).
struct Example {
    name: &'static str,
    addr: SocketAddr,
    process: Proc,
}

impl Example {
    /// Starts the example with `ADDR=127.0.0.1:<free port>` and `env`, and
    /// waits until it accepts connections and has printed `last_line`.
    async fn start(name: &'static str, env: &[(&str, &str)], last_line: &str) -> Self {
        let (process, addr) = start_example(name, env);
        let example = Self {
            name,
            addr,
            process,
        };
        example.line(last_line).await;
        example
    }

    /// The first line printed that contains `needle`, waiting for it.
    async fn line(&self, needle: &str) -> String {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(line) = self.output().into_iter().find(|line| line.contains(needle)) {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "{} never printed {needle:?}",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The text after `label` on the line that contains it, trimmed.
    async fn value_after(&self, label: &str) -> String {
        let line = self.line(label).await;
        let (_, value) = line.split_once(label).expect("the line holds the label");
        value.trim().to_owned()
    }

    fn output(&self) -> Vec<String> {
        self.process.output().lines().map(str::to_owned).collect()
    }

    /// The `websocat` and `curl` commands it printed (and `NAME=$(curl ...)`
    /// assignments), trimmed, in order.
    fn commands(&self) -> Vec<String> {
        self.output()
            .into_iter()
            .map(|line| line.trim().to_owned())
            .filter(|line| {
                line.starts_with("websocat ")
                    || line.starts_with("curl ")
                    || (line.contains("=$(curl ") && !line.starts_with('('))
            })
            .collect()
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// A printed command, split into words like a POSIX shell would (single and
/// double quotes, `$NAME` from `vars`), and its trailing `# comment`.
fn shell_words(line: &str, vars: &HashMap<String, String>) -> (Vec<String>, String) {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars().peekable();
    let expand = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>| {
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c.is_ascii_alphanumeric() || c == '_' {
                name.push(c);
                chars.next();
            } else {
                break;
            }
        }
        vars.get(&name)
            .cloned()
            .unwrap_or_else(|| panic!("${name} is not set in {line:?}"))
    };
    while let Some(c) = chars.next() {
        match c {
            '#' if word.is_none() => {
                let comment: String = chars.collect();
                return (words, comment.trim().to_owned());
            }
            c if c.is_whitespace() => {
                if let Some(w) = word.take() {
                    words.push(w);
                }
            }
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    w.push(c);
                }
            }
            '"' => {
                word.get_or_insert_with(String::new);
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => {
                            if let Some(next) = chars.next() {
                                word.get_or_insert_with(String::new).push(next);
                            }
                        }
                        '$' => {
                            let value = expand(&mut chars);
                            word.get_or_insert_with(String::new).push_str(&value);
                        }
                        c => word.get_or_insert_with(String::new).push(c),
                    }
                }
            }
            '$' => {
                let value = expand(&mut chars);
                word.get_or_insert_with(String::new).push_str(&value);
            }
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    if let Some(w) = word {
        words.push(w);
    }
    (words, String::new())
}

/// The HTTP status a comment announces (`# 403 insufficient_scope`), if any.
fn expected_status(comment: &str) -> Option<StatusCode> {
    let first = comment.split([' ', ',']).next()?;
    let code: u16 = first.parse().ok()?;
    StatusCode::from_u16(code).ok().filter(|_| code < 600)
}

/// An HTTP exchange's outcome.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// One HTTP/1.1 request with hyper's client; a `101` is returned without
/// reading on.
async fn http(method: Method, url: &str, headers: &[(String, String)], body: &str) -> Answer {
    let uri: http::Uri = url.parse().unwrap_or_else(|_| panic!("bad URL {url}"));
    let authority = uri.authority().expect("an absolute URL").to_string();
    let stream = TcpStream::connect(authority.as_str())
        .await
        .unwrap_or_else(|e| panic!("connect {authority}: {e}"));
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("HTTP handshake");
    tokio::spawn(connection.with_upgrades());
    let mut request = http::Request::builder()
        .method(method)
        .uri(uri.path_and_query().map_or("/", |p| p.as_str()))
        .header("host", authority)
        .body(Full::new(Bytes::from(body.to_owned())))
        .expect("a request");
    for (name, value) in headers {
        request.headers_mut().append(
            HeaderName::from_bytes(name.as_bytes()).expect("header name"),
            HeaderValue::from_str(value).expect("header value"),
        );
    }
    let response = tokio::time::timeout(STEP_TIMEOUT, sender.send_request(request))
        .await
        .unwrap_or_else(|_| panic!("no answer from {url}"))
        .expect("an HTTP answer");
    let status = response.status();
    let headers = response.headers().clone();
    let body = if status == StatusCode::SWITCHING_PROTOCOLS {
        String::new()
    } else {
        let bytes = tokio::time::timeout(STEP_TIMEOUT, response.into_body().collect())
            .await
            .expect("the body in time")
            .expect("the body")
            .to_bytes();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    Answer {
        status,
        headers,
        body,
    }
}

/// Runs a printed `curl` command: `-H`, `-X`, `-d` and the URL matter.
async fn curl(words: &[String]) -> Answer {
    let mut headers = Vec::new();
    let mut method = None;
    let mut data = None;
    let mut url = None;
    let mut args = words.iter().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-H" => {
                let header = args.next().expect("a header after -H");
                let (name, value) = header.split_once(':').expect("Name: value");
                headers.push((name.trim().to_owned(), value.trim().to_owned()));
            }
            "-X" => method = args.next().cloned(),
            "-d" => data = args.next().cloned(),
            "--max-time" => {
                args.next();
            }
            flag if flag.starts_with('-') => {} // -i, -s, -si, --http1.1
            other => url = Some(other.to_owned()),
        }
    }
    if data.is_some() {
        headers.push((
            "content-type".to_owned(),
            "application/x-www-form-urlencoded".to_owned(),
        ));
    }
    let method = match (method, &data) {
        (Some(m), _) => Method::from_bytes(m.as_bytes()).expect("a method"),
        (None, Some(_)) => Method::POST,
        (None, None) => Method::GET,
    };
    let url = url.expect("a URL");
    http(method, &url, &headers, data.as_deref().unwrap_or("")).await
}

/// Runs a printed `websocat` command: `-H`, `--protocol` and the URL.
async fn websocat(words: &[String]) -> Result<(Ws, http::Response<Option<Vec<u8>>>), Answer> {
    let mut headers = Vec::new();
    let mut url = None;
    let mut args = words.iter().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-H" => {
                let header = args.next().expect("a header after -H");
                let (name, value) = header.split_once(':').expect("Name: value");
                headers.push((name.trim().to_owned(), value.trim().to_owned()));
            }
            "--protocol" => {
                let protocols = args.next().expect("protocols after --protocol");
                headers.push(("sec-websocket-protocol".to_owned(), protocols.clone()));
            }
            other => url = Some(other.to_owned()),
        }
    }
    ws_connect(&url.expect("a ws:// URL"), &headers).await
}

/// Opens a WebSocket; `Err` holds the HTTP answer of a refused handshake.
async fn ws_connect(
    url: &str,
    headers: &[(String, String)],
) -> Result<(Ws, http::Response<Option<Vec<u8>>>), Answer> {
    let mut request = url.into_client_request().expect("a ws:// URL");
    for (name, value) in headers {
        request.headers_mut().append(
            HeaderName::from_bytes(name.as_bytes()).expect("header name"),
            HeaderValue::from_str(value).expect("header value"),
        );
    }
    match tokio::time::timeout(STEP_TIMEOUT, tokio_tungstenite::connect_async(request))
        .await
        .unwrap_or_else(|_| panic!("handshake with {url} timed out"))
    {
        Ok(ok) => Ok(ok),
        Err(tungstenite::Error::Http(response)) => {
            let (parts, body) = (*response).into_parts();
            Err(Answer {
                status: parts.status,
                headers: parts.headers,
                body: String::from_utf8_lossy(&body.unwrap_or_default()).into_owned(),
            })
        }
        Err(other) => panic!("handshake with {url} failed: {other}"),
    }
}

/// The next text message (pings skipped).
async fn next_text(ws: &mut Ws) -> String {
    loop {
        let message = tokio::time::timeout(STEP_TIMEOUT, ws.next())
            .await
            .expect("a message in time")
            .expect("the socket open")
            .expect("no socket error");
        match message {
            Message::Text(text) => return text.to_string(),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("expected a text message, got {other:?}"),
        }
    }
}

async fn send(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text.to_owned()))
        .await
        .expect("send a message");
}

/// Reads up to the server's close frame; returns its code and the texts
/// received before it.
async fn close_code(ws: &mut Ws) -> (u16, Vec<String>) {
    let mut texts = Vec::new();
    loop {
        let message = tokio::time::timeout(STEP_TIMEOUT, ws.next())
            .await
            .expect("a close frame in time");
        match message {
            Some(Ok(Message::Close(Some(frame)))) => return (u16::from(frame.code), texts),
            Some(Ok(Message::Close(None))) => panic!("a close frame without a code"),
            Some(Ok(Message::Text(text))) => texts.push(text.to_string()),
            Some(Ok(_)) => {}
            Some(Err(error)) => panic!("socket error before the close frame: {error}"),
            None => panic!("the connection ended without a close frame"),
        }
    }
}

/// Runs every `websocat` and `curl` command the example printed, in order,
/// checking each against its comment: `# NNN ...` is that HTTP status
/// (for websocat: a refused handshake), no status is success (an upgrade
/// whose first message starts with `hello `, or a 2xx). `NAME=$(curl ...)`
/// sets `$NAME` (to the body, or to the cookie when piped through the
/// printed `sed` that keeps `set-cookie`). Returns the sockets opened, with
/// their commands, still open.
async fn run_printed_commands(example: &Example) -> Vec<(String, Ws)> {
    let mut vars = HashMap::new();
    let mut sockets = Vec::new();
    let commands = example.commands();
    assert!(
        !commands.is_empty(),
        "{} printed no command to try",
        example.name
    );
    for command in commands {
        if let Some((name, rest)) = command.split_once("=$(") {
            let inner = rest.strip_suffix(')').unwrap_or(rest);
            let (pipeline, sed) = match inner.split_once(" | ") {
                Some((curl_part, sed)) => (curl_part, Some(sed)),
                None => (inner, None),
            };
            let (words, _) = shell_words(pipeline, &vars);
            let answer = curl(&words).await;
            assert!(
                answer.status.is_success(),
                "{command}: {} {}",
                answer.status,
                answer.body
            );
            let value = match sed {
                Some(sed) if sed.contains("set-cookie") => answer
                    .header("set-cookie")
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .to_owned(),
                Some(other) => panic!("{command}: unknown pipe {other}"),
                None => answer.body.trim().to_owned(),
            };
            assert!(!value.is_empty(), "{command} gave nothing");
            vars.insert(name.to_owned(), value);
            continue;
        }
        let (words, comment) = shell_words(&command, &vars);
        let expected = expected_status(&comment);
        match words.first().map(String::as_str) {
            Some("websocat") => match (websocat(&words).await, expected) {
                (Ok((mut ws, _)), None) => {
                    let hello = next_text(&mut ws).await;
                    assert!(hello.starts_with("hello "), "{command}: greeted {hello:?}");
                    send(&mut ws, "ping from the test").await;
                    let echo = next_text(&mut ws).await;
                    assert!(
                        echo.ends_with(": ping from the test"),
                        "{command}: echoed {echo:?}"
                    );
                    sockets.push((command.clone(), ws));
                }
                (Ok(_), Some(status)) => panic!("{command}: upgraded, expected {status}"),
                (Err(answer), None) => panic!("{command}: refused with {answer:?}"),
                (Err(answer), Some(status)) => {
                    assert_eq!(answer.status, status, "{command}: {answer:?}");
                }
            },
            Some("curl") => {
                let answer = curl(&words).await;
                match expected {
                    Some(status) => assert_eq!(answer.status, status, "{command}: {answer:?}"),
                    None => assert!(answer.status.is_success(), "{command}: {answer:?}"),
                }
                // What the comment promises beyond the status.
                if comment.contains("insufficient_scope") {
                    assert!(
                        answer
                            .header("www-authenticate")
                            .contains("error=\"insufficient_scope\""),
                        "{command}: {answer:?}"
                    );
                }
                if comment.contains("invalid_token") {
                    assert!(
                        answer
                            .header("www-authenticate")
                            .contains("error=\"invalid_token\""),
                        "{command}: {answer:?}"
                    );
                }
                if comment.contains("Retry-After") {
                    assert!(
                        !answer.header("retry-after").is_empty(),
                        "{command}: {answer:?}"
                    );
                }
            }
            _ => unreachable!("only websocat and curl commands are collected"),
        }
    }
    sockets
}

#[cfg(all(feature = "axum", feature = "jwt"))]
#[tokio::test]
async fn axum_jwt() {
    let example = Example::start("axum_jwt", &[], "# 401, no credential").await;
    let sockets = run_printed_commands(&example).await;
    // HS256 on /ws, RS256 on /ws/rs256, and the subprotocol carrier.
    assert_eq!(sockets.len(), 3, "{:?}", sockets.iter().map(|s| &s.0));
    assert!(sockets.iter().any(|(c, _)| c.contains("/ws/rs256")));
    assert!(sockets.iter().any(|(c, _)| c.contains("--protocol")));

    // The greeting reads the typed claims; the browser carrier gets `chat`.
    let alice = example
        .value_after("HS256 alice (chat:read chat:write):")
        .await;
    let (mut ws, response) = ws_connect(
        &format!("ws://{}/ws", example.addr),
        &[(
            "sec-websocket-protocol".to_owned(),
            format!("chat, base64url.bearer.{}", b64url(&alice)),
        )],
    )
    .await
    .expect("an upgrade");
    assert_eq!(response.headers()["sec-websocket-protocol"], "chat");
    let hello = next_text(&mut ws).await;
    assert!(
        hello.starts_with("hello alice (Alice); scopes: chat:read chat:write"),
        "{hello}"
    );

    // The scope check names the scope.
    let rita = example.value_after("HS256 rita  (chat:read only):").await;
    let refused = ws_connect(
        &format!("ws://{}/ws", example.addr),
        &[("authorization".to_owned(), format!("Bearer {rita}"))],
    )
    .await
    .expect_err("no upgrade without chat:write");
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(
        refused.header("www-authenticate"),
        "Bearer error=\"insufficient_scope\", scope=\"chat:write\""
    );
}

#[cfg(all(feature = "axum", feature = "jwks"))]
#[tokio::test]
async fn axum_jwks() {
    let example = Example::start("axum_jwks", &[], "# 401, no token").await;
    example.line("signing keys fetched").await;
    let sockets = run_printed_commands(&example).await;
    assert_eq!(sockets.len(), 1);

    // The stand-in issuer's documents, as printed.
    let discovery = example.value_after("discovery:").await;
    let document = http(Method::GET, &discovery, &[], "").await;
    assert_eq!(document.status, StatusCode::OK);
    let document: serde_json::Value = serde_json::from_str(&document.body).expect("JSON");
    let issuer = document["issuer"].as_str().expect("an issuer");
    assert!(discovery.starts_with(issuer));
    let keys = http(Method::GET, &example.value_after("keys:").await, &[], "").await;
    assert!(keys.body.contains("\"kid\":\"stand-in-rsa-1\""), "{keys:?}");

    // A token minted for another subject greets that subject; a forged
    // one (signature of another token) is refused.
    let token = http(Method::GET, &format!("{issuer}/token?sub=bob"), &[], "").await;
    let (mut ws, _) = ws_connect(
        &format!("ws://{}/ws", example.addr),
        &[("authorization".to_owned(), format!("Bearer {}", token.body))],
    )
    .await
    .expect("an upgrade");
    assert!(next_text(&mut ws).await.starts_with("hello bob"));
    let other = http(Method::GET, &format!("{issuer}/token?sub=eve"), &[], "").await;
    let (head, _) = token.body.rsplit_once('.').expect("a JWS");
    let (_, signature) = other.body.rsplit_once('.').expect("a JWS");
    let refused = ws_connect(
        &format!("ws://{}/ws", example.addr),
        &[(
            "authorization".to_owned(),
            format!("Bearer {head}.{signature}"),
        )],
    )
    .await
    .expect_err("a forged token is refused");
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
}

#[cfg(all(feature = "axum", feature = "sessions"))]
#[tokio::test]
async fn axum_cookie_session() {
    let example = Example::start("axum_cookie_session", &[], "# 401, no session").await;
    let page = http(Method::GET, &example.url("/"), &[], "").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("<form id=\"login\""));

    // Log in, connect, log out (in printed order): the socket opened before
    // the logout is closed with 4003.
    let mut sockets = run_printed_commands(&example).await;
    assert_eq!(sockets.len(), 1);
    let (_, ws) = sockets.first_mut().expect("one socket");
    assert_eq!(close_code(ws).await.0, 4003);

    // Two sessions of one user: logging out of one closes only its sockets.
    let login = || async {
        let answer = http(
            Method::POST,
            &example.url("/login"),
            &[(
                "content-type".to_owned(),
                "application/x-www-form-urlencoded".to_owned(),
            )],
            "user=carol",
        )
        .await;
        assert_eq!(answer.status, StatusCode::NO_CONTENT);
        answer
            .header("set-cookie")
            .split(';')
            .next()
            .unwrap_or("")
            .to_owned()
    };
    let origin = format!("http://{}", example.addr);
    let connect = |cookie: String| {
        let url = format!("ws://{}/ws", example.addr);
        let origin = origin.clone();
        async move {
            let (mut ws, _) = ws_connect(
                &url,
                &[("origin".to_owned(), origin), ("cookie".to_owned(), cookie)],
            )
            .await
            .expect("an upgrade");
            assert_eq!(next_text(&mut ws).await, "hello carol");
            ws
        }
    };
    let (first, second) = (login().await, login().await);
    let mut tab_a = connect(first.clone()).await;
    let mut tab_b = connect(first.clone()).await;
    let mut other = connect(second.clone()).await;
    let logout = http(
        Method::POST,
        &example.url("/logout"),
        &[("cookie".to_owned(), first.clone())],
        "",
    )
    .await;
    assert_eq!(logout.body, "logged out; 2 live socket(s) closed\n");
    assert_eq!(close_code(&mut tab_a).await.0, 4003);
    assert_eq!(close_code(&mut tab_b).await.0, 4003);
    send(&mut other, "still here").await;
    assert_eq!(next_text(&mut other).await, "carol: still here");
    // The deleted session no longer opens a socket; localhost is allowed too.
    let refused = ws_connect(
        &format!("ws://{}/ws", example.addr),
        &[
            ("origin".to_owned(), origin.clone()),
            ("cookie".to_owned(), first),
        ],
    )
    .await
    .expect_err("a logged-out session");
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    let localhost = format!("http://localhost:{}", example.addr.port());
    ws_connect(
        &format!("ws://{}/ws", example.addr),
        &[
            ("origin".to_owned(), localhost),
            ("cookie".to_owned(), second),
        ],
    )
    .await
    .expect("the localhost origin is allowed");
}

#[cfg(feature = "axum")]
#[tokio::test]
async fn api_key() {
    let example = Example::start("api_key", &[], "# 401, no key").await;
    let sockets = run_printed_commands(&example).await;
    assert_eq!(sockets.len(), 2);
    let whoami = http(
        Method::GET,
        &example.url("/whoami"),
        &[(
            "x-api-key".to_owned(),
            example.value_after("ingest-service:").await,
        )],
        "",
    )
    .await;
    assert_eq!(whoami.body, "ingest-service (events:read events:write)\n");
    // Two different keys at once: 400.
    let conflict = http(
        Method::GET,
        &example.url("/whoami"),
        &[
            (
                "x-api-key".to_owned(),
                example.value_after("ingest-service:").await,
            ),
            (
                "authorization".to_owned(),
                format!("Bearer {}", example.value_after("billing-service:").await),
            ),
        ],
        "",
    )
    .await;
    assert_eq!(conflict.status, StatusCode::BAD_REQUEST);
}

#[cfg(all(feature = "axum", feature = "jwt"))]
#[tokio::test]
async fn first_message() {
    // Short tokens (4 s, warning 1.3 s before) so the walkthrough fits.
    let example = Example::start(
        "first_message",
        &[("TOKEN_TTL_SECS", "4")],
        "| websocat ws://",
    )
    .await;
    let ws_url = format!("ws://{}/ws", example.addr);
    let auth_message = example.line("{\"type\":\"auth\",\"token\":\"").await;
    let fresh_url = example
        .value_after("fresh ones (demo only, no login): curl -s")
        .await;
    let fresh_url = fresh_url.trim_matches('\'');

    // 1-3: the printed auth message, then an echo.
    let (mut ws, _) = ws_connect(&ws_url, &[]).await.expect("an upgrade");
    send(&mut ws, auth_message.trim()).await;
    let authenticated: serde_json::Value =
        serde_json::from_str(&next_text(&mut ws).await).expect("JSON");
    assert_eq!(authenticated["type"], "authenticated");
    assert_eq!(authenticated["user"]["id"], "alice");
    send(&mut ws, "hi").await;
    assert_eq!(next_text(&mut ws).await, "alice: hi");
    // 4: refresh with a fresh token.
    let fresh = http(Method::GET, fresh_url, &[], "").await;
    assert_eq!(fresh.status, StatusCode::OK);
    send(
        &mut ws,
        &format!(r#"{{"type":"refresh","token":"{}"}}"#, fresh.body),
    )
    .await;
    // (On a slow machine the first token's warning may come first.)
    let mut answer = next_text(&mut ws).await;
    if answer.contains("\"expiring\"") {
        answer = next_text(&mut ws).await;
    }
    let refreshed: serde_json::Value = serde_json::from_str(&answer).expect("JSON");
    assert_eq!(refreshed["type"], "refreshed");
    // 5: the warning, then 4002 at expiry.
    let (code, texts) = close_code(&mut ws).await;
    assert_eq!(code, 4002, "{texts:?}");
    assert!(
        texts.iter().any(|t| t.contains("\"type\":\"expiring\"")),
        "{texts:?}"
    );

    // A first message that is not an auth message: 4001, never delivered.
    let (mut ws, _) = ws_connect(&ws_url, &[]).await.expect("an upgrade");
    send(&mut ws, "hello").await;
    assert_eq!(close_code(&mut ws).await, (4001, Vec::new()));

    // A refresh with bob's token: 4003. (A fresh one: the printed token,
    // minted at start-up, has expired by now, and expired tokens get no
    // leeway.)
    let bob = http(
        Method::GET,
        &fresh_url.replace("sub=alice", "sub=bob"),
        &[],
        "",
    )
    .await
    .body;
    let fresh = http(Method::GET, fresh_url, &[], "").await;
    let (mut ws, _) = ws_connect(&ws_url, &[]).await.expect("an upgrade");
    send(
        &mut ws,
        &format!(r#"{{"type":"auth","token":"{}"}}"#, fresh.body),
    )
    .await;
    assert!(next_text(&mut ws).await.contains("\"authenticated\""));
    send(&mut ws, &format!(r#"{{"type":"refresh","token":"{bob}"}}"#)).await;
    assert_eq!(close_code(&mut ws).await.0, 4003);
}

#[cfg(all(feature = "tungstenite", feature = "jwt"))]
#[tokio::test]
async fn hyper_tungstenite() {
    let example = Example::start("hyper_tungstenite", &[], "# 401, no token").await;
    let mut sockets = run_printed_commands(&example).await;
    assert_eq!(sockets.len(), 2);
    // The printed refresh message on an open socket.
    let refresh = example.line("{\"type\":\"refresh\",\"token\":\"").await;
    let (_, ws) = sockets.first_mut().expect("a socket");
    send(ws, refresh.trim()).await;
    let refreshed: serde_json::Value = serde_json::from_str(&next_text(ws).await).expect("JSON");
    assert_eq!(refreshed["type"], "refreshed");
    send(ws, "after the refresh").await;
    assert_eq!(next_text(ws).await, "alice: after the refresh");
    // A plain request to the WebSocket endpoint.
    let plain = http(Method::GET, &example.url("/ws"), &[], "").await;
    assert_eq!(plain.status, StatusCode::UPGRADE_REQUIRED);
}

#[cfg(all(feature = "axum", feature = "cache"))]
#[tokio::test]
async fn custom_authenticator() {
    let example = Example::start("custom_authenticator", &[], "/admin/db/up").await;
    // alice connects, rita 403, mallory 403, nobody 401, then an outage
    // during which bob gets 503, then recovery.
    let sockets = run_printed_commands(&example).await;
    assert_eq!(sockets.len(), 1);

    let bearer = |token: &str| vec![("authorization".to_owned(), format!("Bearer {token}"))];
    let ws_url = format!("ws://{}/ws", example.addr);
    let alice = example
        .value_after("alice    (chat:read chat:write):")
        .await;
    let bob = example
        .value_after("bob      (chat:read chat:write):")
        .await;
    // During an outage, alice (cached) still connects; bob (never cached)
    // gets 503 with Retry-After.
    http(Method::POST, &example.url("/admin/db/down"), &[], "").await;
    let (mut ws, _) = ws_connect(&ws_url, &bearer(&alice))
        .await
        .expect("alice is cached");
    assert_eq!(next_text(&mut ws).await, "hello alice (Alice Liddell)");
    let refused = ws_connect(&ws_url, &bearer(&bob))
        .await
        .expect_err("the database is down");
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.header("retry-after"), "5");
    http(Method::POST, &example.url("/admin/db/up"), &[], "").await;
    let (mut ws, _) = ws_connect(&ws_url, &bearer(&bob))
        .await
        .expect("the database is back");
    assert_eq!(next_text(&mut ws).await, "hello bob (Bob Builder)");
}

/// base64url without padding, as the subprotocol carrier wants it.
fn b64url(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}
