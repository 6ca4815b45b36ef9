//! The adversarial suite: one test per rule of the security requirements
//! (`SECURITY.md`, "tower-ws-auth: required behaviour under hostile
//! input"), each named after its rule, with the rule quoted in its doc
//! comment. One module per section of the requirements: [`carriers`],
//! [`origin`], [`jwt`], [`sessions`], [`after_upgrade`].
//!
//! Every test runs a real server on 127.0.0.1 (axum, or hyper +
//! tokio-tungstenite after the upgrade) and a real client: a
//! tokio-tungstenite handshake or a raw HTTP/1.1 request. A rule with
//! several sub-cases loops over them in its one test and names the case in
//! every assertion.
//!
//! "Reject" is checked as the requirements define it: an HTTP error before
//! the upgrade (never a `101`), with the status, challenge and generic body
//! a client would see, or a close frame after it; never a panic or a hang;
//! the routes behind the layer are never reached (counted), and where the
//! rule says so the authenticator or the store is never asked either.
//!
//! `cargo test --all-features --test e2e security::`. The revocation rule needs
//! a `redis-server` (`TOWER_WS_AUTH_REDIS_URL`, or one of its own from
//! `TOWER_WS_AUTH_REDIS_SERVER` / `PATH`); without one it prints SKIPPED,
//! and fails when `CI` is set.

use crate::common;
use crate::jwt_common;
use crate::session_common;

mod after_upgrade;
mod carriers;
mod jwt;
mod origin;
mod sessions;

use std::net::SocketAddr;

use axum::body::Body;
use common::{Calls, Refused, Ws, app_counting, connect, next_text, serve, try_connect};
use http::StatusCode;
use tokio_tungstenite::tungstenite;
use tower_ws_auth::{
    AuthMethod, Authenticator, Identity, RejectionHandler, WsAuthLayer,
    session::{SessionAuthenticator, SessionCookie, SessionStore},
};

pub use super::common::{SITE, every_carrier};
/// An origin it does not.
pub const EVIL: &str = "http://evil.example.test";

/// The challenge of a refused credential.
pub const INVALID_TOKEN: Option<&str> = Some("Bearer error=\"invalid_token\"");
/// The challenge of a malformed request.
pub const INVALID_REQUEST: Option<&str> = Some("Bearer error=\"invalid_request\"");

/// Cookie sessions whose data is the user's name.
pub fn session_auth<S: SessionStore<Data = String> + Clone>(
    store: S,
    cookie: SessionCookie,
) -> impl Authenticator + Clone {
    SessionAuthenticator::new(store, cookie, |user: &String| {
        Ok(Identity::builder(user.clone(), AuthMethod::Session))
    })
}

/// The `name=value` pair of a `Set-Cookie` value, as a browser sends it back.
pub fn cookie_pair(set_cookie: &http::HeaderValue) -> String {
    let text = set_cookie.to_str().expect("an ASCII Set-Cookie");
    text.split(';').next().unwrap_or_default().to_owned()
}

/// Request headers, in order; a name may repeat.
pub type Headers<'a> = &'a [(&'a str, &'a str)];

/// Request headers built at run time.
pub type OwnedHeaders = Vec<(String, String)>;

/// Owned headers, borrowed for a request.
pub fn borrowed(headers: &[(String, String)]) -> Vec<(&str, &str)> {
    headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect()
}

/// `Authorization: Bearer <token>`.
pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// The standard test routes behind a layer, on 127.0.0.1, counting the
/// requests that reach them.
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The requests that reached the routes.
    pub inner: Calls,
}

impl Server {
    /// Serves the routes behind `layer`.
    pub async fn start<A, H>(layer: WsAuthLayer<A, H>) -> Self
    where
        A: Authenticator,
        H: RejectionHandler<Body>,
    {
        let inner = Calls::default();
        let addr = serve(app_counting(layer, &inner)).await;
        Self { addr, inner }
    }

    /// A handshake the layer must refuse before the upgrade.
    pub async fn refused(&self, path: &str, headers: &[(&str, &str)], case: &str) -> Refused {
        match connect(self.addr, path, headers).await {
            Ok((_, response)) => panic!(
                "{case}: upgraded ({}), expected a refusal",
                response.status()
            ),
            Err(refused) => refused,
        }
    }

    /// A handshake the layer must let through: the socket and what the
    /// handler saw (subject, scopes, protocols, query, session id).
    pub async fn upgraded(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        case: &str,
    ) -> (Ws, serde_json::Value, http::Response<Option<Vec<u8>>>) {
        let (mut ws, response) = match try_connect(self.addr, path, headers).await {
            Ok(ok) => ok,
            Err(tungstenite::Error::Http(response)) => {
                panic!("{case}: expected an upgrade, got {response:?}")
            }
            Err(error) => panic!("{case}: the handshake failed: {error}"),
        };
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS, "{case}");
        let seen = serde_json::from_str(&next_text(&mut ws).await).expect("the handler's report");
        (ws, seen, response)
    }

    /// The subject the handler saw for an upgrade that must succeed.
    pub async fn subject(&self, path: &str, headers: &[(&str, &str)], case: &str) -> String {
        let (_, seen, _) = self.upgraded(path, headers, case).await;
        seen["subject"].as_str().expect("a subject").to_owned()
    }

    /// Asserts that no refused request reached the routes: `expected` is
    /// the number of upgrades the test let through.
    pub fn assert_reached(&self, expected: usize, rule: &str) {
        assert_eq!(
            self.inner.get(),
            expected,
            "{rule}: the inner service ran for a refused request"
        );
    }
}

/// Asserts a refusal as a client sees it: `status`, exactly `challenge` as
/// `WWW-Authenticate` (`None`: no such header), `Cache-Control: no-store`
/// and the generic body of that status, whatever the reason.
pub fn assert_refusal(refused: &Refused, status: StatusCode, challenge: Option<&str>, case: &str) {
    assert_eq!(refused.status, status, "{case}: {refused:?}");
    assert_eq!(refused.challenge(), challenge, "{case}: {refused:?}");
    assert_eq!(
        refused.headers.get("cache-control").map(|v| v.as_bytes()),
        Some(&b"no-store"[..]),
        "{case}: {refused:?}"
    );
    let generic = format!("{}\n", status.canonical_reason().unwrap_or_default());
    assert_eq!(
        refused.body, generic,
        "{case}: the body is not the generic one"
    );
}
