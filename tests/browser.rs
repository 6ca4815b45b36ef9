//! The quickstart in a real browser: headless Chromium driven over
//! WebDriver (chromedriver). Checks what only a browser can: a login form
//! that sets the session cookie and a cookie-authenticated WebSocket; the
//! subprotocol token carrier, whose echo the browser enforces; and a page
//! from another origin that cannot open a socket with the user's cookie.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them).
//! Outside CI the test is skipped, loudly, when they are missing.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::process::{Proc, free_port, start_example, wait_for_port};
use fantoccini::{Client, ClientBuilder, Locator};

const SECRET: &str = "browser-test-secret-0123456789-abcdefghijkl";

fn find(env: &str, candidates: &[&str]) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(env) {
        return Some(PathBuf::from(path));
    }
    candidates.iter().map(PathBuf::from).find(|p| p.is_file())
}

fn token(subject: &str) -> String {
    // Both jsonwebtoken backends are compiled in under --all-features: pick one.
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({ "sub": subject, "exp": now + 600 });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// Clicks the element with id `id`.
async fn click(client: &Client, id: &str) {
    client
        .find(Locator::Id(id))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// Types `text` into the message field, sends it, and waits for its echo.
async fn echo(client: &Client, text: &str) {
    let message = client.find(Locator::Id("message")).await.unwrap();
    message.clear().await.unwrap();
    message.send_keys(text).await.unwrap();
    click(client, "send").await;
    wait_text(client, "log", |t| t.contains(&format!("< {text}"))).await;
}

/// Polls the text of `#id` until `done` accepts it.
async fn wait_text(client: &Client, id: &str, done: impl Fn(&str) -> bool) -> String {
    let started = Instant::now();
    loop {
        let text = client
            .find(Locator::Id(id))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if done(&text) {
            return text;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "#{id} stayed {text:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A page on another origin that tries to open a socket to the quickstart.
async fn serve_foreign_page(target: u16) -> SocketAddr {
    let page = format!(
        r#"<!doctype html><meta charset="utf-8"><title>elsewhere</title><p id="result">pending</p>
<script>
const ws = new WebSocket("ws://127.0.0.1:{target}/ws", ["chat"]);
ws.onopen = () => {{ document.getElementById("result").textContent = "open"; }};
ws.onclose = (e) => {{ if (document.getElementById("result").textContent === "pending") document.getElementById("result").textContent = "closed " + e.code; }};
</script>"#
    );
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(move || async move { axum::response::Html(page) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// Chromium and chromedriver, or `None` when they are missing outside CI
/// (the test `name` is then skipped, loudly).
fn browser_binaries(name: &str) -> Option<(PathBuf, PathBuf)> {
    let (Some(chromium), Some(driver)) = (
        find(
            "TOWER_WS_AUTH_CHROMIUM",
            &["/usr/bin/chromium", "/usr/bin/chromium-browser"],
        ),
        find("TOWER_WS_AUTH_CHROMEDRIVER", &["/usr/bin/chromedriver"]),
    ) else {
        if std::env::var_os("CI").is_some() {
            panic!("CI must run the browser test: install chromium and chromium-driver");
        }
        eprintln!(
            "\n*** SKIPPED {name}: no chromium/chromedriver (apt-get install chromium chromium-driver) ***\n"
        );
        return None;
    };
    Some((chromium, driver))
}

/// A headless Chromium driven over WebDriver; the profile directory is
/// removed by [`Browser::close`].
struct Browser {
    client: Client,
    _driver: Proc,
    profile: PathBuf,
}

impl Browser {
    async fn start(chromium: PathBuf, driver: PathBuf) -> Browser {
        let driver_port = free_port();
        let mut command = Command::new(driver);
        command.arg(format!("--port={driver_port}"));
        let driver = Proc::spawn(command);
        wait_for_port(driver_port);

        let profile = std::env::temp_dir().join(format!("tower-ws-auth-chromium-{driver_port}"));
        let capabilities = serde_json::json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        });
        let mut builder =
            ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
        builder.capabilities(capabilities.as_object().unwrap().clone());
        let client = builder
            .connect(&format!("http://127.0.0.1:{driver_port}"))
            .await
            .expect("webdriver session");
        Browser {
            client,
            _driver: driver,
            profile,
        }
    }

    async fn close(self) {
        self.client.close().await.unwrap();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

#[tokio::test]
async fn quickstart_in_headless_chromium() {
    let Some((chromium, driver)) = browser_binaries("quickstart_in_headless_chromium") else {
        return;
    };

    let (server, addr) = start_example("quickstart", &[("JWT_SECRET", SECRET)]);
    let port = addr.port();
    let browser = Browser::start(chromium, driver).await;
    let client = &browser.client;
    let base = format!("http://127.0.0.1:{port}");

    // 1. Log in through the form, then connect with the session cookie.
    client.goto(&format!("{base}/")).await.unwrap();
    client
        .find(Locator::Id("username"))
        .await
        .unwrap()
        .send_keys("alice")
        .await
        .unwrap();
    client
        .find(Locator::Id("password"))
        .await
        .unwrap()
        .send_keys("alice-password")
        .await
        .unwrap();
    click(client, "login").await;
    client
        .wait()
        .for_element(Locator::Id("connect-cookie"))
        .await
        .unwrap();
    assert_eq!(
        client.current_url().await.unwrap().as_str(),
        format!("{base}/")
    );
    click(client, "connect-cookie").await;
    assert_eq!(
        wait_text(client, "who", |t| t != "nobody yet").await,
        "alice"
    );
    echo(client, "hello from chromium").await;

    // 2. The subprotocol carrier: the browser opens the socket only because
    // the 101 echoes `chat`. The token (bob) wins over the cookie (alice).
    client
        .find(Locator::Id("token"))
        .await
        .unwrap()
        .send_keys(&token("bob"))
        .await
        .unwrap();
    click(client, "connect-token").await;
    assert_eq!(
        wait_text(client, "who", |t| t == "bob" || t.starts_with("x")).await,
        "bob"
    );
    let status = wait_text(client, "status", |t| t.starts_with("open (token")).await;
    assert_eq!(status, "open (token, protocol chat)");

    // 2b. "Connect with a ticket": the page POSTs /ws-ticket with its
    // cookie (alice; the token field emptied), then connects once with
    // `?ticket=`.
    client
        .find(Locator::Id("token"))
        .await
        .unwrap()
        .clear()
        .await
        .unwrap();
    click(client, "connect-ticket").await;
    let status = wait_text(client, "status", |t| t.starts_with("open (ticket")).await;
    assert_eq!(status, "open (ticket, protocol chat)");
    assert_eq!(
        wait_text(client, "who", |t| t == "alice" || t.starts_with("x")).await,
        "alice"
    );
    echo(client, "hello over a ticket").await;
    let logs = server.output();
    assert!(
        logs.lines().any(|l| l.contains("outcome=\"accepted\"")
            && l.contains("carrier=\"query\"")
            && l.contains("subject=\"alice\"")),
        "the upgrade should have been authenticated by the ticket (query carrier):\n{logs}"
    );
    assert!(!logs.contains("wst_"), "a ticket reached the server's logs");

    // 3. A page from another origin (another port of the same host, so the
    // browser does attach alice's cookie) cannot open a socket with it.
    let foreign = serve_foreign_page(port).await;
    client.goto(&format!("http://{foreign}/")).await.unwrap();
    let result = wait_text(client, "result", |t| t != "pending").await;
    assert!(
        result.starts_with("closed"),
        "a foreign page opened a socket: {result}"
    );
    let logs = server.output();
    assert!(
        logs.lines()
            .any(|l| l.contains("origin_refused") && l.contains("carrier=\"cookie\"")),
        "the server should have refused the cookie for its Origin:\n{logs}"
    );

    browser.close().await;
    assert!(
        !server.output().contains(SECRET),
        "the secret must not be logged"
    );
}

/// The page for `a_page_reads_the_close_code_of_a_refused_upgrade`: opens
/// a socket with the token in its query string through the subprotocol
/// carrier, and writes what the WebSocket API reports into `#result`.
#[cfg(feature = "close-rejections")]
const CLOSE_PAGE: &str = r#"<!doctype html><meta charset="utf-8"><title>close codes</title><p id="result">pending</p>
<script>
const token = location.search.slice(1);
const b64url = btoa(token).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
const ws = new WebSocket("ws://" + location.host + "/ws", ["chat", "base64url.bearer." + b64url]);
const result = document.getElementById("result");
ws.onmessage = (e) => { result.textContent = "message " + e.data + " (protocol " + ws.protocol + ")"; ws.close(1000); };
ws.onclose = (e) => { if (result.textContent === "pending") result.textContent = "closed " + e.code + " clean=" + e.wasClean + " reason=[" + e.reason + "]"; };
</script>"#;

/// Serves `CLOSE_PAGE` and, behind `layer`, a socket greeting its subject.
#[cfg(feature = "close-rejections")]
async fn serve_close_page<A: tower_ws_auth::Authenticator>(
    layer: tower_ws_auth::WsAuthLayer<A>,
) -> SocketAddr {
    use axum::extract::ws::{Message, WebSocketUpgrade};
    use tower_ws_auth::Identity;

    let ws = axum::Router::new()
        .route(
            "/ws",
            axum::routing::any(|ws: WebSocketUpgrade, identity: Identity| async move {
                ws.protocols(["chat"])
                    .on_upgrade(move |mut socket| async move {
                        let hello = format!("hello {}", identity.subject());
                        let _ = socket.send(Message::Text(hello.into())).await;
                        while let Some(Ok(_)) = socket.recv().await {}
                    })
            }),
        )
        .layer(layer);
    let app = ws.route(
        "/",
        axum::routing::get(|| async { axum::response::Html(CLOSE_PAGE) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// With `CloseRejections`, a page sees the code of a refused upgrade (and
/// a clean close) where it otherwise sees only 1006.
#[cfg(feature = "close-rejections")]
#[tokio::test]
async fn a_page_reads_the_close_code_of_a_refused_upgrade() {
    use tower_ws_auth::{
        AuthError, AuthMethod, CloseRejections, Identity, WsAuthLayer, authenticate_fn,
    };

    let Some((chromium, driver)) =
        browser_binaries("a_page_reads_the_close_code_of_a_refused_upgrade")
    else {
        return;
    };
    let layer = || {
        WsAuthLayer::new(authenticate_fn(|credential, _| {
            let outcome = match credential.expose_secret() {
                "good-token" => Ok(Identity::new("alice", AuthMethod::Custom("test"))),
                _ => Err(AuthError::invalid("unknown token")),
            };
            std::future::ready(outcome)
        }))
        .subprotocol_token()
    };
    let closing = serve_close_page(layer().close_rejections(CloseRejections::new())).await;
    let plain = serve_close_page(layer()).await;
    let browser = Browser::start(chromium, driver).await;
    let client = &browser.client;
    let result = async |addr: SocketAddr, token: &str| {
        client
            .goto(&format!("http://{addr}/?{token}"))
            .await
            .unwrap();
        wait_text(client, "result", |t| t != "pending").await
    };

    assert_eq!(
        result(closing, "bad-token").await,
        "closed 4001 clean=true reason=[]"
    );
    assert_eq!(
        result(closing, "good-token").await,
        "message hello alice (protocol chat)"
    );
    // Without the option, the page cannot tell a refusal from a network
    // failure.
    assert_eq!(
        result(plain, "bad-token").await,
        "closed 1006 clean=false reason=[]"
    );
    browser.close().await;
}
