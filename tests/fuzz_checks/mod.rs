//! The properties the fuzz targets (`fuzz/fuzz_targets/*.rs`) check, one
//! function per target, each taking the fuzzer's bytes.
//!
//! Shared by the cargo-fuzz targets (libFuzzer, nightly features) and by
//! `tests/e2e/fuzz_equivalents.rs`, which runs the same functions under
//! proptest on stable, so every property below is also checked in CI.
//!
//! Everything goes through the public API, the way a server uses it: a
//! request built from the bytes is sent through a [`WsAuthLayer`] in front of
//! an inner service that records what reached it. A function panics (the
//! fuzzer's "crash") when a property breaks:
//!
//! * nothing panics on any input;
//! * the inner service is reached by an upgrade request only with an
//!   identity the authenticator issued, and only after it accepted;
//! * the authenticator only ever sees a credential that really is in the
//!   request where the carrier says it is;
//! * rejections have the documented status and challenge, and no response,
//!   error or `Debug` output repeats a credential;
//! * the inner service never sees a query token or a credential subprotocol,
//!   and the `101` echoes one protocol the client offered;
//! * after the handshake, close frames carry sendable codes and short
//!   reasons, and nothing sent before authentication is consumed as
//!   application data.

// Each fuzz target binary uses one of the functions below, and the
// proptest file all but `MAX_INPUT`.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::header::{
    AUTHORIZATION, CONNECTION, COOKIE, ORIGIN, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL,
    SEC_WEBSOCKET_VERSION, UPGRADE, WWW_AUTHENTICATE,
};
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Version};
use tower::{ServiceExt, service_fn};
use tower_ws_auth::socket::{AuthSocket, Frame, is_sendable_close_code};
use tower_ws_auth::{
    AuthError, AuthMethod, Authenticator, Carrier, Credential, Identity, OriginPolicy, WsAuthLayer,
    jwt::JwtAuthenticator,
    socket::{FirstMessageAuth, FirstMessageError},
};

/// The one credential the test authenticator accepts.
pub const GOOD: &str = "good-token";
/// The subject it issues.
pub const SUBJECT: &str = "fuzz-user";
/// The origin the cookie carrier allows.
pub const APP_ORIGIN: &str = "https://app.example";
/// The query parameter carrying a credential.
pub const QUERY_PARAM: &str = "access_token";
/// The cookie carrying a credential.
pub const COOKIE_NAME: &str = "session";
/// The HS256 secret of [`jwt`].
pub const JWT_SECRET: &[u8] = b"fuzzing-secret-of-at-least-32-bytes!";
/// The audience and issuer [`jwt`] requires.
pub const JWT_AUDIENCE: &str = "chat";
pub const JWT_ISSUER: &str = "https://issuer.example";
/// The largest input a target looks at; the fuzzers are run with the
/// same `-max_len`.
pub const MAX_INPUT: usize = 64 * 1024;

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime");
}

fn block_on<F: Future>(future: F) -> F::Output {
    RUNTIME.with(|rt| rt.block_on(future))
}

/// `data` cut into at most `max` pieces at `\n`.
fn lines(data: &[u8], max: usize) -> Vec<&[u8]> {
    data.split(|&b| b == b'\n').take(max).collect()
}

/// What the authenticator saw.
#[derive(Debug, Default)]
struct Seen {
    credentials: Vec<(Carrier, String)>,
}

/// An authenticator accepting [`GOOD`] only, recording every credential.
#[derive(Clone, Default)]
pub struct Recording {
    seen: Arc<Mutex<Seen>>,
}

impl Recording {
    /// The credentials it was given so far.
    fn take(&self) -> Vec<(Carrier, String)> {
        self.seen
            .lock()
            .map(|mut s| std::mem::take(&mut s.credentials))
            .unwrap_or_default()
    }
}

impl Authenticator for Recording {
    async fn authenticate(
        &self,
        credential: &Credential,
        _request: &Parts,
    ) -> Result<Identity, AuthError> {
        let secret = credential.expose_secret();
        if let Ok(mut seen) = self.seen.lock() {
            seen.credentials
                .push((credential.carrier().clone(), secret.to_owned()));
        }
        if secret == GOOD {
            Ok(Identity::new(SUBJECT, AuthMethod::Custom("fuzz")))
        } else {
            Err(AuthError::invalid("unknown token"))
        }
    }
}

/// The request the inner service received.
#[derive(Debug)]
struct Reached {
    parts: Parts,
}

/// The outcome of one request through the layer.
struct Outcome {
    response: Response<Bytes>,
    credentials: Vec<(Carrier, String)>,
    reached: Option<Reached>,
}

impl Outcome {
    fn status(&self) -> StatusCode {
        self.response.status()
    }

    /// The authenticator's only credential, if it was called.
    fn credential(&self) -> Option<&(Carrier, String)> {
        assert!(
            self.credentials.len() <= 1,
            "the authenticator ran more than once for one request"
        );
        self.credentials.first()
    }
}

/// What the inner service answers: a `101` (as a WebSocket handler would),
/// echoing the request's protocol list as it is, the way a naive handler
/// might; the layer must fix the echo.
fn inner_response(parts: &Parts) -> Response<Bytes> {
    let mut response = Response::new(Bytes::from_static(b"inner"));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    for value in parts.headers.get_all(SEC_WEBSOCKET_PROTOCOL) {
        response
            .headers_mut()
            .append(SEC_WEBSOCKET_PROTOCOL, value.clone());
    }
    response
}

/// Sends `request` through `layer` (built with the [`recording`]
/// authenticator) to an inner service that records what reaches it, and
/// checks the properties every carrier shares.
fn run(
    request: Request<()>,
    layer: impl FnOnce(WsAuthLayer<Recording>) -> WsAuthLayer<Recording>,
) -> Outcome {
    let auth = Recording::default();
    let upgrade = looks_like_websocket(&request);
    let reached: Arc<Mutex<Option<Reached>>> = Arc::default();
    let record = reached.clone();
    let inner = service_fn(move |request: Request<()>| {
        let (parts, ()) = request.into_parts();
        let response = inner_response(&parts);
        if let Ok(mut slot) = record.lock() {
            *slot = Some(Reached { parts });
        }
        async move { Ok::<_, Infallible>(response) }
    });
    let service = tower::Layer::layer(&layer(WsAuthLayer::new(auth.clone())), inner);
    let response = match block_on(service.oneshot(request)) {
        Ok(response) => response,
        Err(never) => match never {},
    };
    let credentials = auth.take();
    let reached = reached.lock().ok().and_then(|mut r| r.take());
    let outcome = Outcome {
        response,
        credentials,
        reached,
    };
    check_common(&outcome, upgrade);
    outcome
}

/// The properties of every request through the layer.
fn check_common(outcome: &Outcome, upgrade: bool) {
    let credential = outcome.credential();
    match &outcome.reached {
        Some(reached) if upgrade => {
            // Reached only with the identity of an accepted credential.
            let identity = reached
                .parts
                .extensions
                .get::<Identity>()
                .expect("an upgrade reached the inner service without an identity");
            assert_eq!(identity.subject(), SUBJECT);
            assert!(
                matches!(credential, Some((_, secret)) if secret == GOOD),
                "an upgrade reached the inner service without an accepted credential"
            );
            assert_eq!(outcome.status(), StatusCode::SWITCHING_PROTOCOLS);
        }
        Some(_) => {
            assert!(
                credential.is_none(),
                "a plain request was authenticated ({:?})",
                credential.map(|c| &c.0)
            );
        }
        None => {
            assert!(upgrade, "a plain request did not reach the inner service");
            check_rejection(outcome);
        }
    }
}

/// A rejection's status, challenge and body.
fn check_rejection(outcome: &Outcome) {
    let status = outcome.status();
    let challenge = outcome
        .response
        .headers()
        .get(WWW_AUTHENTICATE)
        .map(|v| v.to_str().expect("an ASCII challenge").to_owned());
    match status {
        StatusCode::UNAUTHORIZED => {
            let challenge = challenge.expect("a 401 without WWW-Authenticate");
            assert!(challenge.starts_with("Bearer"), "challenge {challenge:?}");
            match outcome.credential() {
                None => assert!(
                    !challenge.contains("error="),
                    "no credential, yet the challenge names an error: {challenge:?}"
                ),
                Some(_) => assert!(
                    challenge.contains("error=\"invalid_token\""),
                    "a refused credential without invalid_token: {challenge:?}"
                ),
            }
        }
        StatusCode::BAD_REQUEST => {
            assert!(
                outcome.credential().is_none(),
                "the authenticator ran for a malformed request"
            );
            let challenge = challenge.expect("a 400 without WWW-Authenticate");
            assert!(
                challenge.contains("error=\"invalid_request\""),
                "challenge {challenge:?}"
            );
        }
        StatusCode::FORBIDDEN => {
            // Only an Origin refusal here: the test authenticator never
            // answers "forbidden", and the Origin check runs before it.
            assert!(
                outcome.credential().is_none(),
                "the authenticator ran although the Origin was refused"
            );
        }
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => {
            assert!(
                outcome.credential().is_none(),
                "the authenticator ran for an oversized credential"
            );
        }
        other => panic!("unexpected rejection status {other}"),
    }
    // Nothing in a rejection comes from the request: the body is the
    // status's generic text and every header a fixed value, so no
    // credential (nor anything else the client sent) can be repeated.
    let body: &[u8] = match status {
        StatusCode::UNAUTHORIZED => b"Unauthorized\n",
        StatusCode::BAD_REQUEST => b"Bad Request\n",
        StatusCode::FORBIDDEN => b"Forbidden\n",
        _ => b"Request Header Fields Too Large\n",
    };
    assert_eq!(outcome.response.body().as_ref(), body, "a rejection's body");
    for (name, value) in outcome.response.headers() {
        let fixed: &[&str] = match name.as_str() {
            "cache-control" => &["no-store"],
            "content-type" => &["text/plain; charset=utf-8"],
            "www-authenticate" => &[
                "Bearer",
                "Bearer error=\"invalid_token\"",
                "Bearer error=\"invalid_request\"",
            ],
            other => panic!("a rejection with the header {other}"),
        };
        assert!(
            fixed.iter().any(|f| value.as_bytes() == f.as_bytes()),
            "a rejection's {name}: {value:?}"
        );
    }
}

/// The servers' own rule for a WebSocket upgrade (axum: the `Upgrade`
/// value is `websocket`; tungstenite: the same; both ignore case), widened
/// to any element of any `Upgrade` line. The layer must treat at least
/// these as upgrades.
fn looks_like_websocket(request: &Request<()>) -> bool {
    if request.version() >= Version::HTTP_2 {
        return request.method() == Method::CONNECT
            && request
                .extensions()
                .get::<hyper::ext::Protocol>()
                .is_some_and(|p| p.as_str().eq_ignore_ascii_case("websocket"));
    }
    request.headers().get_all(UPGRADE).iter().any(|value| {
        value
            .as_bytes()
            .split(|&b| b == b',')
            .any(|item| item.trim_ascii().eq_ignore_ascii_case(b"websocket"))
    })
}

/// A WebSocket upgrade request for `/ws` with the handshake headers.
fn upgrade_request(uri: &str) -> Option<http::request::Builder> {
    let uri: http::Uri = uri.parse().ok()?;
    Some(
        Request::builder()
            .method(Method::GET)
            .uri(uri)
            .header(UPGRADE, "websocket")
            .header(CONNECTION, "upgrade")
            .header(SEC_WEBSOCKET_VERSION, "13")
            .header(SEC_WEBSOCKET_KEY, "dGhlIHNhbXBsZSBub25jZQ=="),
    )
}

/// Appends each of `values` that is a valid header value as one `name` line.
fn append_lines(headers: &mut HeaderMap, name: HeaderName, values: &[&[u8]]) -> usize {
    let mut appended = 0;
    for value in values {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.append(name.clone(), value);
            appended += 1;
        }
    }
    appended
}

/// `Authorization` lines: each `\n`-separated piece of `data` is one line.
///
/// Beyond the shared properties: a credential reaches the authenticator
/// only from a single `Authorization: Bearer <token68>` line, and then it is
/// exactly that token; such a line always reaches it (no valid token is
/// refused as malformed).
pub fn authorization(data: &[u8]) -> bool {
    let Some(builder) = upgrade_request("/ws") else {
        return false;
    };
    let Ok(mut request) = builder.body(()) else {
        return false;
    };
    let pieces = lines(data, 4);
    let count = append_lines(request.headers_mut(), AUTHORIZATION, &pieces);
    let only = (count == 1)
        .then(|| request.headers().get(AUTHORIZATION).cloned())
        .flatten();
    let outcome = run(request, |l| l.bearer_header());
    let expected = only.as_ref().and_then(|v| bearer_token(v.as_bytes()));
    match outcome.credential() {
        Some((carrier, secret)) => {
            assert_eq!(*carrier, Carrier::Bearer);
            assert_eq!(
                Some(secret.as_str()),
                expected,
                "the bearer token differs from the header's"
            );
        }
        None => {
            if let Some(token) = expected {
                assert!(
                    token.len() > 8 * 1024
                        && outcome.status() == StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "a valid bearer header was refused with {}",
                    outcome.status()
                );
            }
            if count == 0 {
                assert_eq!(outcome.status(), StatusCode::UNAUTHORIZED);
            }
        }
    }
    outcome.reached.is_some()
}

/// RFC 6750's `credentials = "Bearer" 1*SP b64token` with the surrounding
/// white space a header value may keep; the token, if `value` is one.
fn bearer_token(value: &[u8]) -> Option<&str> {
    let value = value.trim_ascii();
    let scheme = value.get(..6)?;
    let rest = value.get(6..)?;
    if !scheme.eq_ignore_ascii_case(b"bearer") || !rest.starts_with(b" ") {
        return None;
    }
    let token = rest.trim_ascii();
    let body = token.strip_suffix(b"=").map_or(token, |t| {
        let mut t = t;
        while let Some(shorter) = t.strip_suffix(b"=") {
            t = shorter;
        }
        t
    });
    let token68 = !body.is_empty()
        && body
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b));
    if !token68 {
        return None;
    }
    std::str::from_utf8(token).ok()
}

/// `Sec-WebSocket-Protocol` lines. The first byte picks whether a
/// well-formed credential entry for [`GOOD`] is added as one more line.
///
/// Beyond the shared properties: the credential is the base64url decoding
/// of exactly one entry with the prefix; the inner service never sees that
/// entry; a `101` carries exactly one protocol, one the client offered
/// other than the credential entry.
pub fn subprotocol(data: &[u8]) -> bool {
    let Some((&mode, rest)) = data.split_first() else {
        return false;
    };
    let Some(builder) = upgrade_request("/ws") else {
        return false;
    };
    let Ok(mut request) = builder.body(()) else {
        return false;
    };
    let mut pieces = lines(rest, 4);
    let good_entry = format!("base64url.bearer.{}", URL_SAFE_NO_PAD.encode(GOOD));
    if mode & 1 == 1 {
        pieces.push(good_entry.as_bytes());
    }
    append_lines(request.headers_mut(), SEC_WEBSOCKET_PROTOCOL, &pieces);
    let offered: Vec<Vec<u8>> = request
        .headers()
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(|e| e.trim_ascii().to_vec())
        .filter(|e| !e.is_empty())
        .collect();
    let entries: Vec<&[u8]> = offered
        .iter()
        .filter_map(|e| e.strip_prefix(b"base64url.bearer.".as_slice()))
        .collect();
    let outcome = run(request, |l| l.subprotocol_token());
    if let Some((carrier, secret)) = outcome.credential() {
        assert_eq!(*carrier, Carrier::Subprotocol);
        assert_eq!(
            entries.len(),
            1,
            "a credential from {} entries",
            entries.len()
        );
        let decoded = URL_SAFE_NO_PAD
            .decode(entries.first().copied().unwrap_or_default())
            .expect("the entry is base64url");
        assert_eq!(
            decoded,
            secret.as_bytes(),
            "the credential is not the entry"
        );
        assert!(
            offered.iter().any(|e| !e.starts_with(b"base64url.bearer.")),
            "accepted without a companion protocol"
        );
    }
    if let Some(reached) = &outcome.reached {
        for value in reached.parts.headers.get_all(SEC_WEBSOCKET_PROTOCOL) {
            assert!(
                !value
                    .as_bytes()
                    .split(|&b| b == b',')
                    .any(|e| e.trim_ascii().starts_with(b"base64url.bearer.")),
                "the inner service saw the credential entry"
            );
        }
        let echoed: Vec<&HeaderValue> = outcome
            .response
            .headers()
            .get_all(SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .collect();
        if outcome.credential().is_some() {
            assert_eq!(echoed.len(), 1, "the 101 must carry exactly one protocol");
            let echoed = echoed.first().map(|v| v.as_bytes()).unwrap_or_default();
            assert!(
                !echoed.starts_with(b"base64url.bearer."),
                "the 101 echoes the credential"
            );
            assert!(
                offered.iter().any(|e| e == echoed),
                "the 101 echoes a protocol the client did not offer"
            );
        }
    }
    outcome.reached.is_some()
}

/// `Cookie` and `Origin` lines: each `\n`-separated piece is a `Cookie`
/// line, or an `Origin` line when it starts with `o:`.
///
/// Beyond the shared properties: the authenticator runs only for one
/// `Origin` the policy allows, and is given the value of the `session`
/// cookie exactly as a `Cookie` line holds it; a refused Origin never
/// reaches it.
pub fn cookie(data: &[u8]) -> bool {
    let Some(builder) = upgrade_request("/ws") else {
        return false;
    };
    let Ok(mut request) = builder.body(()) else {
        return false;
    };
    let pieces = lines(data, 6);
    let (origins, cookies): (Vec<&[u8]>, Vec<&[u8]>) =
        pieces.iter().partition(|p| p.starts_with(b"o:"));
    let origins: Vec<&[u8]> = origins.iter().filter_map(|o| o.get(2..)).collect();
    append_lines(request.headers_mut(), ORIGIN, &origins);
    append_lines(request.headers_mut(), COOKIE, &cookies);
    let origin_values: Vec<HeaderValue> =
        request.headers().get_all(ORIGIN).iter().cloned().collect();
    let cookie_lines: Vec<HeaderValue> =
        request.headers().get_all(COOKIE).iter().cloned().collect();
    let policy = OriginPolicy::from_origins([APP_ORIGIN]).expect("a valid origin");
    let outcome = run(request, |l| {
        l.cookie(COOKIE_NAME, policy).expect("a valid cookie name")
    });
    if let Some((carrier, secret)) = outcome.credential() {
        assert_eq!(*carrier, Carrier::Cookie);
        let [origin] = origin_values.as_slice() else {
            panic!(
                "a cookie was used with {} Origin headers",
                origin_values.len()
            );
        };
        let origin = origin
            .to_str()
            .expect("an ASCII origin")
            .to_ascii_lowercase();
        assert!(
            origin == APP_ORIGIN || origin == format!("{APP_ORIGIN}:443"),
            "a cookie was used from the origin {origin:?}"
        );
        let found = cookie_lines.iter().any(|line| {
            line.as_bytes().split(|&b| b == b';').any(|pair| {
                let pair = pair.trim_ascii();
                pair.strip_prefix(COOKIE_NAME.as_bytes())
                    .and_then(|rest| rest.trim_ascii_start().strip_prefix(b"="))
                    .map(<[u8]>::trim_ascii)
                    .is_some_and(|v| {
                        v == secret.as_bytes()
                            || v.strip_prefix(b"\"").and_then(|v| v.strip_suffix(b"\""))
                                == Some(secret.as_bytes())
                    })
            })
        });
        assert!(found, "the cookie credential is not in any Cookie line");
    }
    outcome.reached.is_some()
}

/// A query string: `data` is appended to `/ws?`.
///
/// Beyond the shared properties: the credential is the decoded value of the
/// only `access_token` pair; the inner service's URI holds no such pair and
/// keeps the others in order; nothing in the response repeats the token.
pub fn query(data: &[u8]) -> bool {
    let Ok(query) = std::str::from_utf8(data) else {
        return false;
    };
    let uri = format!("/ws?{query}");
    let Some(builder) = upgrade_request(&uri) else {
        return false;
    };
    let Ok(request) = builder.body(()) else {
        return false;
    };
    let raw_query = request.uri().query().unwrap_or_default().to_owned();
    let pairs: Vec<(String, String)> = form_urlencoded::parse(raw_query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let outcome = run(request, |l| {
        l.query_param(QUERY_PARAM).expect("a valid parameter name")
    });
    if let Some((carrier, secret)) = outcome.credential() {
        assert_eq!(*carrier, Carrier::Query);
        let values: Vec<&String> = pairs
            .iter()
            .filter(|(k, _)| k == QUERY_PARAM)
            .map(|(_, v)| v)
            .collect();
        assert_eq!(
            values,
            [secret],
            "the query credential is not the only pair"
        );
    }
    if let Some(reached) = &outcome.reached {
        let seen = reached.parts.uri.query().unwrap_or_default();
        let kept: Vec<(String, String)> = form_urlencoded::parse(seen.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        assert!(
            kept.iter().all(|(k, _)| k != QUERY_PARAM),
            "the inner service saw the query credential"
        );
        let others: Vec<&(String, String)> =
            pairs.iter().filter(|(k, _)| k != QUERY_PARAM).collect();
        assert_eq!(
            kept.iter().collect::<Vec<_>>(),
            others,
            "the other query parameters changed"
        );
    }
    outcome.reached.is_some()
}

/// `Origin` values, checked with [`OriginPolicy::allows`] and through the
/// layer (bearer carrier with a policy on every upgrade).
///
/// An allowed origin is, after lower-casing and dropping the scheme's
/// default port, one of the exact entries, or a subdomain (at least one more
/// label) of the wildcard entry with the same scheme and port; `null` only
/// when allowed. The layer agrees with `allows` for a single `Origin` line
/// and refuses two with 400.
pub fn origin(data: &[u8]) -> bool {
    let Some((&mode, rest)) = data.split_first() else {
        return false;
    };
    let allow_null = mode & 1 == 1;
    let policy = OriginPolicy::from_origins([
        "https://app.example",
        "http://localhost:8080",
        "https://*.tenant.example",
    ])
    .expect("valid origins")
    .allow_null(allow_null);
    let pieces = lines(rest, 3);
    for piece in &pieces {
        let Ok(origin) = std::str::from_utf8(piece) else {
            continue;
        };
        if policy.allows(origin) {
            assert!(
                origin_is_listed(origin, allow_null),
                "{origin:?} was allowed"
            );
        }
    }

    let Some(builder) = upgrade_request("/ws") else {
        return false;
    };
    let Ok(mut request) = builder
        .header(AUTHORIZATION, format!("Bearer {GOOD}"))
        .body(())
    else {
        return false;
    };
    let count = append_lines(request.headers_mut(), ORIGIN, &pieces);
    let single = request
        .headers()
        .get(ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let layer_policy = policy.clone();
    let outcome = run(request, |l| l.bearer_header().origin_policy(layer_policy));
    match count {
        0 => assert_eq!(outcome.status(), StatusCode::FORBIDDEN, "no Origin"),
        1 => {
            let allowed = single.as_deref().is_some_and(|o| policy.allows(o));
            let expected = if allowed {
                StatusCode::SWITCHING_PROTOCOLS
            } else {
                StatusCode::FORBIDDEN
            };
            assert_eq!(outcome.status(), expected, "Origin {single:?}");
        }
        _ => assert_eq!(outcome.status(), StatusCode::BAD_REQUEST, "two Origins"),
    }
    outcome.reached.is_some()
}

/// The allow-list of [`origin`], written out independently of the crate.
fn origin_is_listed(origin: &str, allow_null: bool) -> bool {
    let origin = origin.to_ascii_lowercase();
    if origin == "null" {
        return allow_null;
    }
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    let default = match scheme {
        "https" | "wss" => "443",
        "http" | "ws" => "80",
        _ => "",
    };
    let (host, port) = match authority.rsplit_once(':') {
        // A serialized origin's port is decimal with no sign and no leading
        // zero: `:+443`, `:0443` and `:0` are never a listed port.
        Some((host, port)) => (host, port),
        None => (authority, default),
    };
    match (scheme, host, port) {
        ("https", "app.example", "443") | ("http", "localhost", "8080") => true,
        ("https", host, "443") => host
            .strip_suffix(".tenant.example")
            .is_some_and(|sub| !sub.is_empty() && !sub.starts_with('.') && !sub.ends_with('.')),
        _ => false,
    }
}

/// A WebSocket message, for the in-memory socket of [`first_message`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Text(String),
    Binary(Vec<u8>),
    Ping,
    Close(Option<(u16, String)>),
}

/// A socket that delivers a fixed list of messages, then reports the peer
/// gone, and records what the server sends.
#[derive(Debug, Default)]
pub struct MemorySocket {
    pub incoming: VecDeque<Message>,
    /// Shared, to be read after the socket was consumed.
    pub sent: Arc<Mutex<Vec<Message>>>,
}

impl futures_util::Stream for MemorySocket {
    type Item = Result<Message, Infallible>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        std::task::Poll::Ready(self.incoming.pop_front().map(Ok))
    }
}

impl futures_util::Sink<Message> for MemorySocket {
    type Error = Infallible;

    fn poll_ready(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn start_send(self: std::pin::Pin<&mut Self>, message: Message) -> Result<(), Self::Error> {
        if let Ok(mut sent) = self.sent.lock() {
            sent.push(message);
        }
        Ok(())
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_close(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }
}

impl AuthSocket for MemorySocket {
    type Message = Message;
    type WsError = Infallible;

    fn text(text: String) -> Message {
        Message::Text(text)
    }

    fn close_frame(code: u16, reason: &str) -> Message {
        Message::Close(Some((code, reason.to_owned())))
    }

    fn frame(message: &Message) -> Frame<'_> {
        match message {
            Message::Text(text) => Frame::Text(text),
            Message::Binary(bytes) => Frame::Binary(bytes),
            Message::Ping => Frame::Control,
            Message::Close(close) => Frame::Close(close.as_ref().map(|(c, r)| (*c, r.as_str()))),
        }
    }
}

/// A JSON object's members in order, duplicates kept (`serde_json::Value`
/// keeps only the last of two members with the same name).
struct Members(Vec<(String, serde_json::Value)>);

impl<'de> serde::Deserialize<'de> for Members {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Members;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Members, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry()? {
                    members.push(member);
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

/// The largest first message [`first_message`] accepts.
pub const FIRST_MESSAGE_CAP: usize = 96;

/// Messages decoded from `data`: a tag byte, a length byte, that many bytes.
fn messages(data: &[u8]) -> VecDeque<Message> {
    let mut out = VecDeque::new();
    let mut rest = data;
    while let [tag, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (body, next) = tail.split_at(len);
        rest = next;
        let text = String::from_utf8_lossy(body).into_owned();
        out.push_back(match tag % 6 {
            0 => Message::Text(text),
            1 => Message::Binary(body.to_vec()),
            2 => Message::Ping,
            3 => Message::Close(
                body.get(..2)
                    .map(|c| (u16::from_be_bytes([c[0], c[1]]), text.clone())),
            ),
            // An auth message around the bytes: the token is GOOD when
            // the body is empty.
            4 => Message::Text(format!(
                r#"{{"type":"auth","token":"{}"}}"#,
                if body.is_empty() { GOOD } else { &text }
            )),
            _ => Message::Text(format!(r#"{{"type":"auth",{text}}}"#)),
        });
        if out.len() >= 16 {
            break;
        }
    }
    out
}

/// First-message authentication over an in-memory socket fed with messages
/// decoded from `data`.
///
/// It succeeds only when the first message that is not a ping is a text
/// JSON object `{"type":"auth","token":GOOD}` within the size cap; then the
/// messages after it are still unread (nothing was consumed as
/// application data) and the server sent only its `authenticated` answer.
/// Otherwise it sent no text and, unless the peer left, one close frame
/// with a sendable code and a reason of at most 123 bytes.
pub fn first_message(data: &[u8]) -> bool {
    let incoming = messages(data);
    let first = incoming
        .iter()
        .position(|m| *m != Message::Ping)
        .and_then(|i| incoming.get(i).map(|m| (i, m.clone())));
    let auth = Recording::default();
    let first_auth = FirstMessageAuth::new(auth.clone())
        .timeout(Duration::from_secs(5))
        .max_message_bytes(FIRST_MESSAGE_CAP.try_into().unwrap());
    let sent: Arc<Mutex<Vec<Message>>> = Arc::default();
    let socket = MemorySocket {
        incoming: incoming.clone(),
        sent: sent.clone(),
    };
    let (parts, ()) = Request::new(()).into_parts();
    let result = block_on(first_auth.authenticate(socket, &parts));
    let accepted = result.is_ok();
    let credentials = auth.take();
    let sent = sent.lock().map(|s| s.clone()).unwrap_or_default();
    check_sent(&sent);
    assert!(credentials.len() <= 1, "the authenticator ran twice");
    let is_good_auth = |m: &Message| match m {
        Message::Text(text) if text.len() <= FIRST_MESSAGE_CAP => {
            serde_json::from_str::<Members>(text).is_ok_and(|Members(members)| {
                let value = |name: &str| {
                    let mut values = members.iter().filter(|(k, _)| k == name);
                    match (values.next(), values.next()) {
                        (Some((_, v)), None) => v.as_str(),
                        _ => None,
                    }
                };
                value("type") == Some("auth") && value("token") == Some(GOOD)
            })
        }
        _ => false,
    };
    match result {
        Ok((socket, identity)) => {
            assert_eq!(identity.subject(), SUBJECT);
            let (index, message) = first.expect("authenticated without a message");
            assert!(is_good_auth(&message), "authenticated by {message:?}");
            let unread: Vec<&Message> = incoming.iter().skip(index + 1).collect();
            assert_eq!(
                socket.incoming.iter().collect::<Vec<_>>(),
                unread,
                "messages after the auth message were consumed"
            );
            assert!(
                matches!(sent.as_slice(), [Message::Text(t)] if t.contains("\"authenticated\"")),
                "sent {sent:?}"
            );
        }
        Err(error) => {
            if let Some((_, message)) = &first {
                assert!(
                    !is_good_auth(message),
                    "refused a good auth message: {error}"
                );
            }
            let text = format!("{error} {error:?}");
            if let Some((_, secret)) = credentials.first().filter(|(_, s)| s.len() >= 8) {
                assert!(
                    !text.contains(secret.as_str()),
                    "the error repeats the credential"
                );
            }
            match &error {
                FirstMessageError::PeerClosed => assert!(sent.is_empty(), "sent {sent:?}"),
                _ => assert!(
                    matches!(sent.as_slice(), [Message::Close(Some(_))]),
                    "a refusal must send one close frame and nothing else: {sent:?}"
                ),
            }
            match (&error, &first) {
                (FirstMessageError::PeerClosed, None | Some((_, Message::Close(_)))) => {}
                (FirstMessageError::PeerClosed, Some((_, m))) => {
                    panic!("PeerClosed after {m:?}")
                }
                (FirstMessageError::TooBig, Some((_, Message::Text(t)))) => {
                    assert!(t.len() > FIRST_MESSAGE_CAP);
                }
                (FirstMessageError::TooBig, m) => panic!("TooBig after {m:?}"),
                _ => {}
            }
        }
    }
    accepted
}

/// Checks the server's close frames in `sent`: sendable codes, reasons of
/// at most 123 bytes.
pub fn check_sent(sent: &[Message]) {
    for message in sent {
        if let Message::Close(Some((code, reason))) = message {
            assert!(is_sendable_close_code(*code), "close code {code}");
            assert!(
                reason.len() <= 123,
                "close reason of {} bytes",
                reason.len()
            );
        }
    }
}

/// A JWT from `data`. The first byte picks the shape:
///
/// * even: `data` itself is the token (malformed and forged tokens);
/// * odd: the rest is `header \0 payload`, base64url-encoded and signed
///   with the right key, so the fuzzer explores header and claim checks
///   behind a valid signature.
///
/// An accepted token is signed with the configured key (whatever key
/// material its header names), has a JSON object header with
/// `"alg":"HS256"`, and claims with a numeric `exp` in the future (within the
/// leeway), a numeric `nbf` (if any) in the past, the configured `aud` and
/// `iss`, and a string `sub` that became the subject. A refused one is
/// never repeated in the error.
pub fn jwt(data: &[u8]) -> bool {
    let Some((&mode, rest)) = data.split_first() else {
        return false;
    };
    let token = if mode & 1 == 0 {
        String::from_utf8_lossy(rest).into_owned()
    } else {
        let (header, payload) = match rest.iter().position(|&b| b == 0) {
            Some(i) => {
                let (header, payload) = rest.split_at(i);
                (header, payload.get(1..).unwrap_or_default())
            }
            None => (rest, &[][..]),
        };
        signed_token(header, payload)
    };
    let auth = JwtAuthenticator::hs256(JWT_SECRET)
        .expect("a long enough secret")
        .audience([JWT_AUDIENCE])
        .issuer([JWT_ISSUER])
        .leeway(Duration::from_secs(5))
        .expect("a leeway within MAX_LEEWAY");
    let credential = Credential::new(Carrier::Bearer, token.clone());
    let (parts, ()) = Request::new(()).into_parts();
    let result = block_on(auth.authenticate(&credential, &parts));
    let accepted = result.is_ok();
    match result {
        Ok(identity) => {
            let mut segments = token.split('.');
            let header = segments.next().expect("a header segment");
            let payload = segments.next().expect("a payload segment");
            let header: JoseHeader = serde_json::from_slice(
                &URL_SAFE_NO_PAD.decode(header).expect("a base64url header"),
            )
            .expect("a JSON header");
            assert_eq!(header.alg, "HS256");
            // Whatever the header holds (`jwk`, `jku`, `x5c`... are ignored,
            // never used), the signature is the configured key's.
            let (signing_input, _) = token.rsplit_once('.').expect("three segments");
            assert_eq!(
                token,
                signed_token_of(signing_input),
                "accepted a token not signed with the configured key"
            );
            let claims: Registered = serde_json::from_slice(
                &URL_SAFE_NO_PAD
                    .decode(payload)
                    .expect("a base64url payload"),
            )
            .expect("JSON claims");
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            let exp = claims
                .exp
                .as_ref()
                .and_then(serde_json::Value::as_f64)
                .expect("accepted without a numeric exp");
            assert!(exp + 5.0 >= now - 1.0, "accepted an expired token");
            if let Some(nbf) = &claims.nbf {
                let nbf = nbf.as_f64().expect("accepted a non-numeric nbf");
                assert!(nbf - 5.0 <= now + 1.0, "accepted a token before its nbf");
            }
            let aud_ok = match &claims.aud {
                Some(serde_json::Value::String(a)) => a == JWT_AUDIENCE,
                Some(serde_json::Value::Array(list)) => {
                    list.iter().any(|a| a.as_str() == Some(JWT_AUDIENCE))
                }
                _ => false,
            };
            assert!(aud_ok, "accepted the audience {:?}", claims.aud);
            assert_eq!(
                claims.iss.as_ref().and_then(|i| i.as_str()),
                Some(JWT_ISSUER),
                "accepted the issuer"
            );
            assert_eq!(
                claims.sub.as_ref().and_then(|s| s.as_str()),
                Some(identity.subject()),
                "the subject is not the sub claim"
            );
        }
        Err(error) => {
            let text = format!("{error} {error:?}");
            if token.len() >= 8 {
                assert!(!text.contains(&token), "the error repeats the token");
            }
            if let Some(signature) = token.rsplit('.').next().filter(|s| s.len() >= 16) {
                assert!(!text.contains(signature), "the error repeats the signature");
            }
        }
    }
    accepted
}

/// The protected header's `alg`; other members are skipped unread (as the
/// crate does: a member may hold a number no `f64` holds, which is still
/// JSON).
#[derive(serde::Deserialize)]
struct JoseHeader {
    alg: String,
}

/// The registered claims [`jwt`] checks; `null` is kept as a value.
#[derive(serde::Deserialize)]
struct Registered {
    #[serde(default, deserialize_with = "present")]
    exp: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "present")]
    nbf: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "present")]
    aud: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "present")]
    iss: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "present")]
    sub: Option<serde_json::Value>,
}

fn present<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<serde_json::Value>, D::Error> {
    serde::Deserialize::deserialize(deserializer).map(Some)
}

/// `header.payload.signature` with the HS256 signature of [`JWT_SECRET`].
pub fn signed_token(header: &[u8], payload: &[u8]) -> String {
    signed_token_of(&format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    ))
}

/// `signing_input.signature` with the HS256 signature of [`JWT_SECRET`].
fn signed_token_of(signing_input: &str) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, JWT_SECRET);
    let tag = aws_lc_rs::hmac::sign(&key, signing_input.as_bytes());
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

/// Any request head: a method, a version, and `name: value` lines.
///
/// The layer treats as an upgrade at least every request axum or
/// tungstenite would upgrade (so none reaches them unauthenticated); a plain
/// request passes through without the authenticator.
pub fn upgrade(data: &[u8]) -> bool {
    let Some((&mode, rest)) = data.split_first() else {
        return false;
    };
    let method = match mode % 4 {
        0 => Method::GET,
        1 => Method::CONNECT,
        2 => Method::POST,
        _ => Method::OPTIONS,
    };
    let version = if mode & 4 == 0 {
        Version::HTTP_11
    } else {
        Version::HTTP_2
    };
    let mut request = Request::new(());
    *request.method_mut() = method;
    *request.version_mut() = version;
    for line in lines(rest, 8) {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = line.split_at(colon);
        let value = value.get(1..).unwrap_or_default().trim_ascii();
        if name == b":protocol" {
            if let Ok(protocol) = std::str::from_utf8(value) {
                request
                    .extensions_mut()
                    .insert(hyper::ext::Protocol::from(protocol));
            }
            continue;
        }
        let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        else {
            continue;
        };
        request.headers_mut().append(name, value);
    }
    run(request, |l| l.bearer_header()).reached.is_some()
}

/// A fuzz target: `true` when the input was accepted (the inner service
/// or the socket reached with an identity).
pub type Target = fn(&[u8]) -> bool;

/// Every target, by name (for the regression corpus and the proptests).
pub const TARGETS: [(&str, Target); 8] = [
    ("authorization", authorization),
    ("subprotocol", subprotocol),
    ("cookie", cookie),
    ("query", query),
    ("origin", origin),
    ("first_message", first_message),
    ("jwt", jwt),
    ("upgrade", upgrade),
];
