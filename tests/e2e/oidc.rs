//! `RemoteJwks` / OpenID Connect discovery against a real OpenID provider:
//! the npm `oidc-provider` (OpenID-certified), started by the tests on a
//! loopback port from tests/oidc/provider.mjs (`.ci/run` installs it with
//! `npm ci --prefix tests/oidc`). Without Node.js or the installed package
//! the tests print a SKIPPED line, and fail under `CI`.
//!
//! Access tokens come from the provider's token endpoint (client-credentials
//! grant, resource indicators), keys from its discovery document and JWKS;
//! keys are rotated by restarting the provider with a new signing key put
//! first and the old one still published.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use http::StatusCode;
use tower_ws_auth::jwt::{JwtAuthenticator, RemoteJwks};

use crate::common::process::{Proc, free_port};
use crate::jwt_common::{accepted, invalid, serve};

const JWT_RESOURCE: &str = "urn:tower-ws-auth:jwt";
const OTHER_RESOURCE: &str = "urn:tower-ws-auth:other";
const OPAQUE_RESOURCE: &str = "urn:tower-ws-auth:opaque";
#[cfg(feature = "introspection")]
const OTHER_OPAQUE_RESOURCE: &str = "urn:tower-ws-auth:other-opaque";

/// Node.js and the provider script, or `None` (after a SKIPPED line)
/// outside CI.
fn node_and_provider() -> Option<(PathBuf, PathBuf)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc");
    let node = std::env::var_os("TOWER_WS_AUTH_NODE")
        .map(PathBuf::from)
        .or_else(|| Some(PathBuf::from("/usr/bin/node")).filter(|p| p.exists()));
    let installed = dir.join("node_modules/oidc-provider/package.json").exists();
    match node {
        Some(node) if installed => Some((node, dir.join("provider.mjs"))),
        _ => {
            let missing = "Node.js (TOWER_WS_AUTH_NODE or /usr/bin/node) and \
                           `npm ci --prefix tests/oidc`";
            if std::env::var_os("CI").is_some() {
                panic!("CI must run the OpenID provider tests: they need {missing}");
            }
            eprintln!("\n*** SKIPPED oidc: needs {missing} ***\n");
            None
        }
    }
}

/// A running oidc-provider, its keys in a file of its own.
struct Provider {
    node: PathBuf,
    script: PathBuf,
    port: u16,
    keys: PathBuf,
    proc: Option<Proc>,
}

impl Provider {
    fn start(test: &str) -> Option<Self> {
        let (node, script) = node_and_provider()?;
        let port = free_port();
        let keys = std::env::temp_dir().join(format!(
            "tower-ws-auth-oidc-{test}-{}-{port}.json",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&keys);
        let mut provider = Self {
            node,
            script,
            port,
            keys,
            proc: None,
        };
        provider.run(false);
        Some(provider)
    }

    fn run(&mut self, rotate: bool) {
        let mut command = Command::new(&self.node);
        command
            .arg(&self.script)
            .arg(self.port.to_string())
            .arg(&self.keys);
        if rotate {
            command.arg("rotate");
        }
        let proc = Proc::spawn(command);
        let issuer = self.issuer();
        proc.wait_for_line(|line| (line.trim() == format!("listening {issuer}")).then_some(()));
        self.proc = Some(proc);
    }

    fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn stop(&mut self) {
        self.proc = None;
    }

    /// Restarts the provider with a new signing key, the old ones still
    /// published.
    fn rotate(&mut self) {
        self.stop();
        self.run(true);
    }

    /// How many introspection requests the provider has received.
    fn introspections(&self) -> usize {
        self.proc.as_ref().map_or(0, |proc| {
            proc.output()
                .lines()
                .filter(|l| l.trim() == "introspection request")
                .count()
        })
    }

    /// An access token for `resource` from the token endpoint
    /// (client-credentials grant, `client_secret_basic`).
    async fn token(&self, resource: &str) -> String {
        let form =
            format!("grant_type=client_credentials&resource={resource}&scope=chat:read+chat:write");
        let (status, body) = post_form(
            self.addr(),
            "/token",
            &form,
            Some(("ws-client", "ws-client-secret")),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        json["access_token"].as_str().unwrap().to_owned()
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_file(&self.keys);
    }
}

/// A form POST with optional HTTP Basic client authentication.
async fn post_form(
    addr: SocketAddr,
    path: &str,
    form: &str,
    basic: Option<(&str, &str)>,
) -> (StatusCode, String) {
    use base64::Engine as _;
    use http_body_util::{BodyExt, Full};
    use hyper_util::rt::TokioIo;
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut request = http::Request::post(path)
        .header("host", addr.to_string())
        .header("content-type", "application/x-www-form-urlencoded");
    if let Some((id, secret)) = basic {
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
        request = request.header("authorization", format!("Basic {encoded}"));
    }
    let response = sender
        .send_request(
            request
                .body(Full::new(bytes::Bytes::from(form.to_owned())))
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// The `kid` in a JWT's header.
fn kid(token: &str) -> String {
    let header = token.split('.').next().unwrap();
    let header: serde_json::Value =
        serde_json::from_slice(&crate::jwt_common::b64_decode(header)).unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_jwks_with_a_real_openid_provider() {
    let Some(mut provider) = Provider::start("jwks") else {
        return;
    };
    let issuer = provider.issuer();
    let jwks = RemoteJwks::discover(&issuer)
        .refetch_interval(Duration::from_millis(100))
        .build()
        .unwrap();
    let server =
        serve(JwtAuthenticator::from_remote_jwks(jwks.clone()).audience([JWT_RESOURCE])).await;

    // A JWT access token (RFC 9068) for the resource: 101, the client's
    // identity with the granted scopes.
    let first = provider.token(JWT_RESOURCE).await;
    let seen = accepted(server.addr, &first).await;
    assert_eq!(
        seen.subject, "ws-client",
        "client credentials: sub is the client"
    );
    assert_eq!(seen.scopes, ["chat:read", "chat:write"]);
    assert_eq!(jwks.issuer(), Some(issuer.as_str()));
    // A JWT for another audience, and an opaque token: 401.
    invalid(server.addr, &provider.token(OTHER_RESOURCE).await).await;
    invalid(server.addr, &provider.token(OPAQUE_RESOURCE).await).await;

    // Key rotation, without restarting our server: tokens signed with the
    // new key work (the unknown kid refetches the JWKS), and the old token
    // still works while the old key is published.
    provider.rotate();
    let second = provider.token(JWT_RESOURCE).await;
    assert_ne!(
        kid(&first),
        kid(&second),
        "the provider signs with the new key"
    );
    assert_eq!(accepted(server.addr, &second).await.subject, "ws-client");
    assert_eq!(accepted(server.addr, &first).await.subject, "ws-client");
    assert_eq!(jwks.key_count(), 2);

    // The provider stopped: the cached keys keep working.
    provider.stop();
    assert_eq!(accepted(server.addr, &second).await.subject, "ws-client");
    assert_eq!(accepted(server.addr, &first).await.subject, "ws-client");
}

/// Opaque tokens through [`Introspection`] against the provider's RFC 7662
/// endpoint: both client authentication methods, discovery of the
/// endpoint, the audience and issuer checks, revocation within the
/// documented cache bound, and 503 for a provider that is down, refuses
/// our credentials or answers garbage.
#[cfg(feature = "introspection")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_with_a_real_openid_provider() {
    use tower_ws_auth::introspection::{ClientAuth, Introspection};

    use crate::jwt_common::key_server::unavailable;

    let Some(mut provider) = Provider::start("introspection") else {
        return;
    };
    let issuer = provider.issuer();
    // `client_secret_basic`, the endpoint from discovery, audience and
    // issuer checked; positive answers cached for at most one second.
    let by_basic = serve(
        Introspection::discover(&issuer, "ws-client", "ws-client-secret")
            .audience([OPAQUE_RESOURCE])
            .issuer(issuer.clone())
            .max_cache(Duration::from_secs(1))
            .build()
            .unwrap(),
    )
    .await;
    // `client_secret_post` as another client, the endpoint configured, no
    // audience check.
    let by_post = serve(
        Introspection::builder(
            &format!("{issuer}/token/introspection"),
            "ws-server",
            "ws-server-secret",
        )
        .client_auth(ClientAuth::ClientSecretPost)
        .max_cache(Duration::from_secs(1))
        .build()
        .unwrap(),
    )
    .await;

    let opaque = provider.token(OPAQUE_RESOURCE).await;
    for server in [&by_basic, &by_post] {
        let seen = accepted(server.addr, &opaque).await;
        assert_eq!(
            seen.subject, "ws-client",
            "client credentials: the client_id"
        );
        assert_eq!(seen.scopes, ["chat:read", "chat:write"]);
        assert_eq!(seen.method, "introspection");
        assert!(seen.expires_at.is_some(), "exp carried over");
    }
    // Single flight: sixteen concurrent handshakes with one uncached token
    // make one request to the provider.
    let shared = serve(
        Introspection::builder(
            &format!("{issuer}/token/introspection"),
            "ws-server",
            "ws-server-secret",
        )
        .client_auth(ClientAuth::ClientSecretPost)
        .build()
        .unwrap(),
    )
    .await;
    let burst = provider.token(OPAQUE_RESOURCE).await;
    let before = provider.introspections();
    let seen = futures_util::future::join_all((0..16).map(|_| accepted(shared.addr, &burst))).await;
    assert!(seen.iter().all(|s| s.subject == "ws-client"));
    // The provider's output is read by another thread: let it catch up.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        provider.introspections() - before,
        1,
        "one request for sixteen handshakes"
    );

    // A token for another audience: refused where the audience is checked.
    let other = provider.token(OTHER_OPAQUE_RESOURCE).await;
    invalid(by_basic.addr, &other).await;
    assert_eq!(accepted(by_post.addr, &other).await.subject, "ws-client");
    // An unknown token: inactive.
    invalid(by_basic.addr, "not-a-token-the-provider-issued").await;
    invalid(by_post.addr, "not-a-token-the-provider-issued").await;

    // Revoked at the provider: refused once the positive cache (1 s) has
    // run out, on both servers.
    let form = format!("token={opaque}");
    let (status, body) = post_form(
        provider.addr(),
        "/token/revocation",
        &form,
        Some(("ws-client", "ws-client-secret")),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    invalid(by_basic.addr, &opaque).await;
    invalid(by_post.addr, &opaque).await;

    // Our own credentials refused by the provider, or an endpoint that
    // answers garbage: 503, not 401.
    let wrong_secret = serve(
        Introspection::builder(
            &format!("{issuer}/token/introspection"),
            "ws-server",
            "wrong",
        )
        .client_auth(ClientAuth::ClientSecretPost)
        .build()
        .unwrap(),
    )
    .await;
    let fresh = provider.token(OPAQUE_RESOURCE).await;
    unavailable(wrong_secret.addr, &fresh).await;
    let garbage = serve(
        Introspection::builder(&format!("{issuer}/jwks"), "ws-client", "ws-client-secret")
            .build()
            .unwrap(),
    )
    .await;
    unavailable(garbage.addr, &fresh).await;

    // The provider stopped: an uncached token is 503.
    provider.stop();
    unavailable(by_basic.addr, &fresh).await;
    unavailable(by_post.addr, &fresh).await;
}
