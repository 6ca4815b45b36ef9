//! [`WsAuthLayer`] and the [`WsAuth`] service.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker, ready};

use http::header::SEC_WEBSOCKET_PROTOCOL;
use http::request::Parts;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode, Uri};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::authenticator::{Authenticator, BoxFuture};
use crate::credential::{
    Carrier, CarrierError, Credential, Limits, ParsedProtocols, Source, SubprotocolCarrier,
    extract, strip_query_param,
};
use crate::error::AuthError;
use crate::origin::{OriginPolicy, OriginVerdict};
use crate::rejection::{DefaultRejectionHandler, Rejection, RejectionHandler, RejectionKind};
use crate::upgrade::is_websocket_upgrade;

/// Inserted into the extensions of requests the layer let through without
/// authenticating them (non-upgrade requests), so extractors can tell "not
/// authenticated" from "no layer installed".
#[derive(Debug, Clone, Copy)]
pub(crate) struct PassedThrough;

#[derive(Debug, Clone)]
struct Config {
    /// The carriers, in order; `[Bearer]` until one is configured.
    sources: Vec<Source>,
    /// `sources` is still the default and goes at the first carrier added.
    default_sources: bool,
    cookie_origin: Option<OriginPolicy>,
    origin: Option<OriginPolicy>,
    protect_all: bool,
    reject_conflicts: bool,
    limits: Limits,
    realm: Option<HeaderValue>,
}

/// A [`Layer`] that authenticates WebSocket upgrade requests before the
/// handshake completes.
///
/// For each upgrade request (HTTP/1.1 `Upgrade: websocket` or HTTP/2
/// extended CONNECT with `:protocol websocket`) it:
///
/// 1. reads every configured carrier, in the order they were configured
///    (a malformed carrier is 400, an oversized one 431);
/// 2. checks the `Origin` against the policy guarding the carrier that won
///    (403 when refused), before anything else runs;
/// 3. answers 401 `WWW-Authenticate: Bearer` if no carrier held a credential;
/// 4. runs the [`Authenticator`]; on failure answers with the matching
///    [`Rejection`]; on success inserts the [`Identity`](crate::Identity)
///    into the request extensions, removes the credential from the
///    subprotocol list and the query string, and calls the inner service;
/// 5. makes sure the `101` echoes exactly one protocol the client offered
///    when the credential came through `Sec-WebSocket-Protocol`.
///
/// Other requests pass through untouched unless
/// [`protect_all_requests`](Self::protect_all_requests) is set.
///
/// With no carrier configured, `Authorization: Bearer` is used.
///
/// ```
/// use axum::{Router, routing::get, extract::ws::WebSocketUpgrade, response::Response};
/// use tower_ws_auth::{authenticate_fn, AuthError, AuthMethod, Identity, OriginPolicy, WsAuthLayer};
///
/// async fn ws_handler(ws: WebSocketUpgrade, identity: Identity) -> Response {
///     ws.on_upgrade(move |_socket| async move { println!("{} connected", identity.subject()) })
/// }
///
/// # fn main() -> Result<(), tower_ws_auth::ConfigError> {
/// let auth = authenticate_fn(|credential, _request| {
///     let ok = credential.expose_secret() == "demo-token";
///     async move {
///         if ok { Ok(Identity::new("alice", AuthMethod::Custom("demo"))) }
///         else { Err(AuthError::invalid("unknown token")) }
///     }
/// });
/// let app: Router = Router::new().route("/ws", get(ws_handler)).layer(
///     WsAuthLayer::new(auth)
///         .bearer_header()
///         .subprotocol_token()
///         .cookie("session", OriginPolicy::from_origins(["https://app.example.com"])?),
/// );
/// # let _ = app;
/// # Ok(())
/// # }
/// ```
#[must_use]
pub struct WsAuthLayer<A, H = DefaultRejectionHandler> {
    authenticator: Arc<A>,
    handler: Arc<H>,
    // Shared, not copied, by `layer`: axum applies a route's layers again
    // for every connection, so `layer` runs once per connection.
    config: Arc<Config>,
}

impl<A, H> Clone for WsAuthLayer<A, H> {
    fn clone(&self) -> Self {
        Self {
            authenticator: self.authenticator.clone(),
            handler: self.handler.clone(),
            config: self.config.clone(),
        }
    }
}

impl<A, H> fmt::Debug for WsAuthLayer<A, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsAuthLayer")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<A: Authenticator> WsAuthLayer<A> {
    /// A layer that verifies credentials with `authenticator`.
    pub fn new(authenticator: A) -> Self {
        Self {
            authenticator: Arc::new(authenticator),
            handler: Arc::new(DefaultRejectionHandler),
            config: Arc::new(Config {
                sources: vec![Source::Bearer],
                default_sources: true,
                cookie_origin: None,
                origin: None,
                protect_all: false,
                reject_conflicts: false,
                limits: Limits::default(),
                realm: None,
            }),
        }
    }
}

impl<A, H> WsAuthLayer<A, H> {
    /// The configuration, to change it (copied first only if shared).
    fn config_mut(&mut self) -> &mut Config {
        Arc::make_mut(&mut self.config)
    }

    /// The carriers, without the default once one is configured.
    fn sources_mut(&mut self) -> &mut Vec<Source> {
        let config = self.config_mut();
        if std::mem::take(&mut config.default_sources) {
            config.sources.clear();
        }
        &mut config.sources
    }

    fn add_source(mut self, source: Source) -> Self {
        let same_kind = |s: &Source| std::mem::discriminant(s) == std::mem::discriminant(&source);
        let sources = self.sources_mut();
        if let Some(existing) = sources.iter_mut().find(|s| same_kind(s)) {
            *existing = source;
        } else {
            sources.push(source);
        }
        self
    }

    /// Reads `Authorization: Bearer <token>` (scheme case-insensitive).
    /// A present `Authorization` header with another scheme, an empty or
    /// a double token, or two such headers, is 400.
    pub fn bearer_header(self) -> Self {
        self.add_source(Source::Bearer)
    }

    /// Reads a header holding the bare credential, such as `X-Api-Key`.
    ///
    /// # Panics
    ///
    /// If `name` is not a valid header name, or is `Cookie`: browsers send
    /// cookies on cross-site handshakes, so a cookie credential is read
    /// with [`cookie`](Self::cookie), which takes the Origin policy it
    /// needs.
    pub fn header(self, name: &str) -> Self {
        let name = HeaderName::from_bytes(name.as_bytes())
            .unwrap_or_else(|_| panic!("{name:?} is not a valid header name"));
        assert!(
            name != http::header::COOKIE,
            "header(\"cookie\") would read a cookie credential without an Origin policy: use cookie(name, OriginPolicy)"
        );
        // A second custom header is a second source, not a replacement.
        let mut this = self;
        let sources = this.sources_mut();
        if !sources
            .iter()
            .any(|s| matches!(s, Source::Header(n) if *n == name))
        {
            sources.push(Source::Header(name));
        }
        this
    }

    /// Reads a `base64url.bearer.<token>` entry of `Sec-WebSocket-Protocol`,
    /// the carrier browsers can use; shorthand for
    /// `.subprotocol(SubprotocolCarrier::new())`.
    pub fn subprotocol_token(self) -> Self {
        self.subprotocol(SubprotocolCarrier::new())
    }

    /// Reads a credential entry of `Sec-WebSocket-Protocol`, as `carrier`
    /// describes it.
    pub fn subprotocol(self, carrier: SubprotocolCarrier) -> Self {
        self.add_source(Source::Subprotocol(carrier))
    }

    /// Reads the cookie `name`, accepted only from origins `policy` allows.
    ///
    /// Taking the policy here makes a cookie carrier without an Origin check
    /// impossible to configure: browsers send cookies on cross-site WebSocket
    /// handshakes, so without it any web page could connect in your users'
    /// name (cross-site WebSocket hijacking).
    ///
    /// # Panics
    ///
    /// If `name` is not a valid cookie name (an RFC 6265 token).
    pub fn cookie(mut self, name: &str, policy: OriginPolicy) -> Self {
        assert!(
            crate::credential::is_cookie_name(name),
            "{name:?} is not a valid cookie name"
        );
        self.config_mut().cookie_origin = Some(policy);
        self.add_source(Source::Cookie(name.into()))
    }

    /// Reads the query parameter `name`. Off unless called: query strings
    /// land in access logs and browser history. The parameter is removed
    /// from the URI before the inner service sees the request, and the
    /// layer never logs query strings.
    ///
    /// # Panics
    ///
    /// If `name` is empty.
    pub fn query_param(self, name: &str) -> Self {
        assert!(
            !name.is_empty(),
            "the query parameter name must not be empty"
        );
        self.add_source(Source::Query(name.into()))
    }

    /// Checks the `Origin` of every upgrade request against `policy`,
    /// whatever carried the credential (cookie credentials are also checked
    /// against the policy given to [`cookie`](Self::cookie)).
    pub fn origin_policy(mut self, policy: OriginPolicy) -> Self {
        self.config_mut().origin = Some(policy);
        self
    }

    /// Authenticates every request, not only WebSocket upgrades. Origin
    /// policies and the subprotocol carrier still apply to upgrades only.
    pub fn protect_all_requests(mut self) -> Self {
        self.config_mut().protect_all = true;
        self
    }

    /// Answers 400 when two carriers hold different credentials. By default
    /// the carrier configured first wins (browsers send cookies along with
    /// any other carrier, so refusing every mix would break them).
    pub fn reject_conflicting_credentials(mut self) -> Self {
        self.config_mut().reject_conflicts = true;
        self
    }

    /// Caps a credential, as carried (before decoding), at `bytes`
    /// (default 8 KiB). Larger ones are answered with 431.
    ///
    /// # Panics
    ///
    /// If `bytes` is zero.
    pub fn max_credential_bytes(mut self, bytes: usize) -> Self {
        assert!(bytes > 0, "max_credential_bytes must be positive");
        self.config_mut().limits.max_credential = bytes;
        self
    }

    /// Caps the headers (all lines of one header together) and the query
    /// string the layer parses, at `bytes` (default 16 KiB). Larger ones are
    /// answered with 431 before they are parsed.
    ///
    /// # Panics
    ///
    /// If `bytes` is zero.
    pub fn max_header_bytes(mut self, bytes: usize) -> Self {
        assert!(bytes > 0, "max_header_bytes must be positive");
        self.config_mut().limits.max_header = bytes;
        self
    }

    /// Adds `realm="..."` to `WWW-Authenticate` challenges.
    ///
    /// # Panics
    ///
    /// If `realm` holds a `"`, a `\` or a non-printable character.
    pub fn realm(mut self, realm: &str) -> Self {
        assert!(
            realm
                .bytes()
                .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\'),
            "realm {realm:?} must be printable ASCII without quotes or backslashes"
        );
        self.config_mut().realm = HeaderValue::from_str(realm).ok();
        self
    }

    /// Replaces the response for rejections; see [`RejectionHandler`].
    pub fn rejection_handler<H2>(self, handler: H2) -> WsAuthLayer<A, H2> {
        WsAuthLayer {
            authenticator: self.authenticator,
            handler: Arc::new(handler),
            config: self.config,
        }
    }

    /// The authenticator.
    pub fn authenticator(&self) -> &A {
        &self.authenticator
    }
}

impl<S, A, H> Layer<S> for WsAuthLayer<A, H> {
    type Service = WsAuth<S, A, H>;

    fn layer(&self, inner: S) -> Self::Service {
        WsAuth {
            inner,
            shared: Arc::new(Shared {
                authenticator: self.authenticator.clone(),
                handler: self.handler.clone(),
                config: self.config.clone(),
            }),
        }
    }
}

struct Shared<A, H> {
    authenticator: Arc<A>,
    handler: Arc<H>,
    config: Arc<Config>,
}

/// The service [`WsAuthLayer`] wraps around an inner service.
pub struct WsAuth<S, A, H = DefaultRejectionHandler> {
    inner: S,
    shared: Arc<Shared<A, H>>,
}

impl<S: Clone, A, H> Clone for WsAuth<S, A, H> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: fmt::Debug, A, H> fmt::Debug for WsAuth<S, A, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsAuth")
            .field("inner", &self.inner)
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl<S, A, H> WsAuth<S, A, H> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

fn carrier_rejection((error, carrier): (CarrierError, Option<Carrier>)) -> Box<Rejection> {
    let rejection = match error {
        CarrierError::Malformed(reason) => Rejection::new(RejectionKind::InvalidRequest, reason),
        CarrierError::TooLarge => Rejection::new(
            RejectionKind::CredentialTooLarge,
            "credential or header over its size cap",
        ),
    };
    Box::new(rejection.with_carrier(carrier))
}

fn origin_rejection(verdict: OriginVerdict, carrier: Option<&Carrier>) -> Option<Rejection> {
    let rejection = match verdict {
        OriginVerdict::Allowed => return None,
        OriginVerdict::Refused(reason) => Rejection::new(RejectionKind::OriginRefused, reason),
        OriginVerdict::Malformed => {
            Rejection::new(RejectionKind::InvalidRequest, "several Origin headers")
        }
    };
    Some(rejection.with_carrier(carrier.cloned()))
}

/// Everything decided before the authenticator runs. On success: the
/// credential and, if the subprotocol list held it, what the response must
/// echo. `parts` is updated (credential stripped) only on success.
fn prepare(
    config: &Config,
    parts: &mut Parts,
    upgrade: bool,
) -> Result<(Credential, Option<Box<ParsedProtocols>>), Box<Rejection>> {
    let extracted = extract(
        &config.sources,
        parts,
        config.limits,
        upgrade,
        config.reject_conflicts,
    )
    .map_err(carrier_rejection)?;
    let carrier = extracted.credential.as_ref().map(Credential::carrier);
    if upgrade {
        if let Some(policy) = &config.origin
            && let Some(rejection) = origin_rejection(policy.check(&parts.headers), carrier)
        {
            return Err(Box::new(rejection));
        }
        if let (Some(Carrier::Cookie), Some(policy)) = (carrier, &config.cookie_origin)
            && let Some(rejection) = origin_rejection(policy.check(&parts.headers), carrier)
        {
            return Err(Box::new(rejection));
        }
    }
    let Some(credential) = extracted.credential else {
        return Err(Box::new(Rejection::new(
            RejectionKind::MissingCredential,
            "no credential in any configured carrier",
        )));
    };
    if let Some(protocols) = &extracted.protocols {
        let stripped = protocols.stripped.clone();
        let mut lines = parts.headers.get_all(SEC_WEBSOCKET_PROTOCOL).iter();
        let one_line = lines.next().is_some() && lines.next().is_none();
        match parts.headers.get_mut(SEC_WEBSOCKET_PROTOCOL) {
            // Replaced in place: `insert` would first make room for a new
            // entry, which can mean growing and rehashing the whole map.
            Some(value) if one_line => *value = stripped,
            // Replaces every line of the header.
            _ => {
                parts.headers.insert(SEC_WEBSOCKET_PROTOCOL, stripped);
            }
        }
    }
    if let Some(name) = extracted.query_param {
        parts.uri = match strip_query_param(&parts.uri, name) {
            Some(uri) => uri,
            None => Uri::builder()
                .path_and_query(parts.uri.path())
                .build()
                .map_err(|_| {
                    Box::new(Rejection::new(
                        RejectionKind::InvalidRequest,
                        "URI cannot be rebuilt without its query",
                    ))
                })?,
        };
    }
    Ok((credential, extracted.protocols))
}

fn log_rejection(rejection: &Rejection, path: &str, source: Option<&AuthError>) {
    let carrier = rejection.carrier().map(Carrier::as_str);
    if rejection.kind() == RejectionKind::Unavailable {
        let cause = source
            .and_then(|e| std::error::Error::source(e))
            .map(tracing::field::display);
        tracing::warn!(
            target: "tower_ws_auth",
            outcome = "rejected",
            status = rejection.status().as_u16(),
            kind = rejection.kind().as_str(),
            carrier,
            reason = rejection.reason(),
            cause,
            path,
            "authentication backend unavailable"
        );
    } else {
        tracing::debug!(
            target: "tower_ws_auth",
            outcome = "rejected",
            status = rejection.status().as_u16(),
            kind = rejection.kind().as_str(),
            carrier,
            reason = rejection.reason(),
            path,
            "request rejected"
        );
    }
}

impl<S, A, H, ReqB, ResB> Service<Request<ReqB>> for WsAuth<S, A, H>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone,
    A: Authenticator,
    H: RejectionHandler<ResB>,
    ResB: Send + 'static,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqB, ResB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqB>) -> Self::Future {
        let upgrade = is_websocket_upgrade(&request);
        if !upgrade && !self.shared.config.protect_all {
            request.extensions_mut().insert(PassedThrough);
            return ResponseFuture {
                state: State::Inner {
                    future: self.inner.call(request),
                    echo: None,
                },
            };
        }
        let h2 = request.version() >= http::Version::HTTP_2;
        let (mut parts, body) = request.into_parts();
        let (credential, protocols) = match prepare(&self.shared.config, &mut parts, upgrade) {
            Ok(prepared) => prepared,
            Err(rejection) => {
                let rejection = (*rejection).with_realm(self.shared.config.realm.as_ref());
                log_rejection(&rejection, parts.uri.path(), None);
                return ResponseFuture {
                    state: State::Rejected {
                        response: Some(self.shared.handler.respond(&rejection)),
                    },
                };
            }
        };
        let shared = self.shared.clone();
        // Boxed once here, the request head (224 bytes) is not copied again
        // into the authentication future, into its heap allocation and back
        // out of it: about 30 ns less per upgrade, measured.
        let mut parts = Box::new(parts);
        let auth: BoxFuture<'static, Result<Box<Parts>, Response<ResB>>> = Box::pin(async move {
            match shared.authenticator.authenticate(&credential, &parts).await {
                Ok(identity) => {
                    tracing::debug!(
                        target: "tower_ws_auth",
                        outcome = "accepted",
                        carrier = credential.carrier().as_str(),
                        subject = identity.subject(),
                        method = %identity.method(),
                        path = parts.uri.path(),
                        "request authenticated"
                    );
                    parts.extensions.insert(identity);
                    Ok(parts)
                }
                Err(error) => {
                    let rejection = Rejection::from_auth_error(&error)
                        .with_carrier(Some(credential.carrier().clone()))
                        .with_realm(shared.config.realm.as_ref());
                    log_rejection(&rejection, parts.uri.path(), Some(&error));
                    Err(shared.handler.respond(&rejection))
                }
            }
        });
        let echo = protocols.map(|protocols| Echo { protocols, h2 });
        // Most authenticators answer without waiting (static keys,
        // in-memory stores, cache hits): try once now, and if the answer is
        // there, call the inner service right away, the very instance that
        // was polled ready, with no clone of it and no state to carry. A
        // future that is not ready is polled again, with the caller's
        // waker, when the response future is first polled; a future must
        // only count on the waker of its latest poll, so this one-off poll
        // with a no-op waker loses nothing.
        let mut auth = auth;
        match auth.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(Ok(parts)) => ResponseFuture {
                state: State::Inner {
                    future: self.inner.call(Request::from_parts(*parts, body)),
                    echo,
                },
            },
            Poll::Ready(Err(response)) => ResponseFuture {
                state: State::Rejected {
                    response: Some(response),
                },
            },
            Poll::Pending => {
                // Use the service that was polled ready; leave a fresh
                // clone behind.
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                ResponseFuture {
                    state: State::Authenticating {
                        auth,
                        pending: Some((inner, body)),
                        echo,
                    },
                }
            }
        }
    }
}

/// What the response to an upgrade whose credential came in the
/// subprotocol list must echo.
struct Echo {
    protocols: Box<ParsedProtocols>,
    h2: bool,
}

impl Echo {
    /// Makes a successful upgrade response carry exactly one protocol the
    /// client offered, never the credential entry.
    fn apply<B>(&self, response: &mut Response<B>) {
        let upgraded = if self.h2 {
            response.status().is_success()
        } else {
            response.status() == StatusCode::SWITCHING_PROTOCOLS
        };
        if !upgraded {
            return;
        }
        let mut values = response.headers().get_all(SEC_WEBSOCKET_PROTOCOL).iter();
        let acceptable = match (values.next(), values.next()) {
            (Some(only), None) => self.protocols.offers(only),
            _ => false,
        };
        if !acceptable {
            // Replaces every line of the header.
            let headers = response.headers_mut();
            headers.insert(SEC_WEBSOCKET_PROTOCOL, self.protocols.selected().clone());
        }
    }
}

pin_project! {
    /// The response future of [`WsAuth`].
    ///
    /// # Panics
    ///
    /// If polled again after it completed.
    pub struct ResponseFuture<S, ReqB, ResB>
    where
        S: Service<Request<ReqB>>,
    {
        #[pin]
        state: State<S, ReqB, ResB>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, ReqB, ResB>
    where
        S: Service<Request<ReqB>>,
    {
        Authenticating {
            auth: BoxFuture<'static, Result<Box<Parts>, Response<ResB>>>,
            pending: Option<(S, ReqB)>,
            echo: Option<Echo>,
        },
        Inner {
            #[pin]
            future: S::Future,
            echo: Option<Echo>,
        },
        Rejected {
            response: Option<Response<ResB>>,
        },
    }
}

impl<S, ReqB, ResB> Future for ResponseFuture<S, ReqB, ResB>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
{
    type Output = Result<Response<ResB>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Authenticating {
                    auth,
                    pending,
                    echo,
                } => {
                    let parts = match ready!(auth.as_mut().poll(cx)) {
                        Ok(parts) => parts,
                        Err(response) => return Poll::Ready(Ok(response)),
                    };
                    let Some((mut inner, body)) = pending.take() else {
                        panic!("tower_ws_auth::ResponseFuture polled after completion");
                    };
                    let echo = echo.take();
                    let future = inner.call(Request::from_parts(*parts, body));
                    this.state.set(State::Inner { future, echo });
                }
                StateProj::Inner { future, echo } => {
                    let mut response = ready!(future.poll(cx))?;
                    if let Some(echo) = echo.as_ref() {
                        echo.apply(&mut response);
                    }
                    return Poll::Ready(Ok(response));
                }
                StateProj::Rejected { response } => {
                    let Some(response) = response.take() else {
                        panic!("tower_ws_auth::ResponseFuture polled after completion");
                    };
                    return Poll::Ready(Ok(response));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authenticator::authenticate_fn;
    use crate::identity::{AuthMethod, Identity};

    fn layer() -> WsAuthLayer<impl Authenticator> {
        WsAuthLayer::new(authenticate_fn(|_, _| async {
            Ok(Identity::new("x", AuthMethod::Custom("test")))
        }))
    }

    #[test]
    #[should_panic(expected = "without an Origin policy")]
    fn the_cookie_header_is_not_a_bare_credential_header() {
        let _ = layer().header("Cookie");
    }

    #[test]
    fn other_headers_are() {
        let _ = layer().header("x-api-key").header("x-session-token");
    }
}
