//! [`WsAuthLayer`]: the configuration, built method by method.

use std::fmt;
use std::num::NonZeroUsize;
use std::sync::Arc;

use http::{HeaderName, HeaderValue};
use tower_layer::Layer;

use super::Config;
use super::service::WsAuth;
use crate::authenticator::Authenticator;
use crate::credential::{Source, SubprotocolCarrier};
use crate::error::ConfigError;
use crate::origin::OriginPolicy;
use crate::rejection::DefaultRejectionHandler;

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
///    [`Rejection`](crate::Rejection); on success inserts the [`Identity`](crate::Identity)
///    into the request extensions, removes the credential from the
///    subprotocol list and the query string, and calls the inner service;
/// 5. makes sure the `101` echoes exactly one protocol the client offered
///    when the credential came through `Sec-WebSocket-Protocol`.
///
/// Other requests pass through untouched unless
/// [`protect_all_requests`](Self::protect_all_requests) is on.
///
/// With no carrier configured, `Authorization: Bearer` is used. Carriers
/// are tried in the order they were configured; the first one configured
/// replaces that default (call [`bearer_header`](Self::bearer_header) to
/// keep it), and configuring a carrier again (the same header name, for
/// [`header`](Self::header); the same parameter name, for
/// [`query_param`](Self::query_param)) replaces it in place.
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
///         .cookie("session", OriginPolicy::from_origins(["https://app.example.com"])?)?,
/// );
/// # let _ = app;
/// # Ok(())
/// # }
/// ```
///
#[doc = include_str!("../../docs/layer.md")]
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
        let config = Config::new(authenticator.name());
        Self {
            authenticator: Arc::new(authenticator),
            handler: Arc::new(DefaultRejectionHandler),
            config: Arc::new(config),
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
        let same_kind = |s: &Source| match (s, &source) {
            (Source::Header(a), Source::Header(b)) => a == b,
            (Source::Query(a), Source::Query(b)) => a == b,
            _ => std::mem::discriminant(s) == std::mem::discriminant(&source),
        };
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
    /// Each header name is a carrier of its own. `name` is a `&str`, a
    /// `String` or a [`HeaderName`], as for `http::request::Builder::header`.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidSetting`] if `name` is not a valid header name,
    /// or is `Cookie`: browsers send cookies on cross-site handshakes, so a
    /// cookie credential is read with [`cookie`](Self::cookie), which takes
    /// the Origin policy it needs.
    pub fn header<N>(self, name: N) -> Result<Self, ConfigError>
    where
        N: TryInto<HeaderName>,
    {
        let name = name
            .try_into()
            .map_err(|_| ConfigError::setting("header name", "not a valid header name"))?;
        if name == http::header::COOKIE {
            return Err(ConfigError::setting(
                "header name",
                "a cookie credential needs an Origin policy: use cookie(name, OriginPolicy)",
            ));
        }
        Ok(self.add_source(Source::Header(name)))
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
    /// # Errors
    ///
    /// [`ConfigError::InvalidSetting`] if `name` is not a valid cookie name
    /// (an RFC 6265 token).
    pub fn cookie(mut self, name: &str, policy: OriginPolicy) -> Result<Self, ConfigError> {
        if !crate::credential::is_cookie_name(name) {
            return Err(ConfigError::setting("cookie name", "not an RFC 6265 token"));
        }
        self.config_mut().cookie_origin = Some(policy);
        Ok(self.add_source(Source::Cookie(name.into())))
    }

    /// Reads the query parameter `name`. Off unless called: query strings
    /// land in access logs and browser history. The parameter is removed
    /// from the URI before the inner service sees the request, and the
    /// layer never logs query strings.
    ///
    /// Call it again with another name to read several parameters (say
    /// `ticket` for connection tickets and `token`), in the order of the
    /// calls among the other carriers; every one that holds a value is
    /// removed from the URI.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidSetting`] if `name` is empty.
    pub fn query_param(self, name: &str) -> Result<Self, ConfigError> {
        if name.is_empty() {
            return Err(ConfigError::setting("query parameter name", "empty"));
        }
        Ok(self.add_source(Source::Query(name.into())))
    }

    /// Checks the `Origin` of every upgrade request against `policy`,
    /// whatever carried the credential (cookie credentials are also checked
    /// against the policy given to [`cookie`](Self::cookie)).
    pub fn origin_policy(mut self, policy: OriginPolicy) -> Self {
        self.config_mut().origin = Some(policy);
        self
    }

    /// Authenticates every request, not only WebSocket upgrades (default
    /// `false`). Origin policies and the subprotocol carrier still apply to
    /// upgrades only.
    pub fn protect_all_requests(mut self, protect: bool) -> Self {
        self.config_mut().protect_all = protect;
        self
    }

    /// Answers 400 when two carriers hold different credentials (default
    /// `false`: the carrier configured first wins, because browsers send
    /// cookies along with any other carrier, so refusing every mix would
    /// break them).
    pub fn reject_conflicting_credentials(mut self, reject: bool) -> Self {
        self.config_mut().reject_conflicts = reject;
        self
    }

    /// Caps a credential, as carried (before decoding), at `bytes`
    /// (default 8 KiB). Larger ones are answered with 431.
    pub fn max_credential_bytes(mut self, bytes: NonZeroUsize) -> Self {
        self.config_mut().limits.max_credential = bytes.get();
        self
    }

    /// Caps the headers (all lines of one header together) and the query
    /// string the layer parses, at `bytes` (default 16 KiB). Larger ones are
    /// answered with 431 before they are parsed.
    pub fn max_header_bytes(mut self, bytes: NonZeroUsize) -> Self {
        self.config_mut().limits.max_header = bytes.get();
        self
    }

    /// Throttles failed authentications per client address: past the
    /// limit, upgrades from that address are refused with `429` and
    /// `Retry-After` ([`RejectionKind::Throttled`](crate::RejectionKind::Throttled))
    /// without running the authenticator. The client address is the peer's
    /// (axum's `ConnectInfo<SocketAddr>`, or a
    /// [`PeerAddr`](crate::throttle::PeerAddr) extension), or what a
    /// trusted proxy forwarded; see [`throttle`](crate::throttle). Clones
    /// of the layer (and of the limit) share one table.
    pub fn failed_auth_limit(mut self, limit: crate::throttle::FailedAuthLimit) -> Self {
        self.config_mut().throttle = Some(limit);
        self
    }

    /// Adds `realm="..."` to `WWW-Authenticate` challenges.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidSetting`] if `realm` holds a `"`, a `\\` or a
    /// non-printable character.
    pub fn realm(mut self, realm: &str) -> Result<Self, ConfigError> {
        let printable = realm
            .bytes()
            .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\');
        match HeaderValue::from_str(realm) {
            Ok(value) if printable => {
                self.config_mut().realm = Some(value);
                Ok(self)
            }
            _ => Err(ConfigError::setting(
                "realm",
                "must be printable ASCII without quotes or backslashes",
            )),
        }
    }

    /// Answers refused browser upgrades with a `101` and a Close frame
    /// carrying the refusal's code (4001, 4003, ...), which a page can read,
    /// instead of an HTTP error, which it cannot; see [`CloseRejections`]
    /// for when to use it. Off by default.
    ///
    /// [`CloseRejections`]: crate::CloseRejections
    #[cfg(feature = "close-rejections")]
    #[cfg_attr(docsrs, doc(cfg(feature = "close-rejections")))]
    pub fn close_rejections(mut self, close: super::CloseRejections) -> Self {
        self.config_mut().close = Some(close);
        self
    }

    /// Calls `hook` with every decision of the layer (accepted or
    /// rejected, with the reason, the carrier, the subject and the peer
    /// address when known), inline, before the response goes out: it must
    /// not block, and cannot change the decision; a panic in it is caught
    /// and logged. See [`audit`](crate::audit).
    pub fn audit<F>(mut self, hook: F) -> Self
    where
        F: Fn(&crate::audit::AuditEvent<'_>) + Send + Sync + 'static,
    {
        self.config_mut().audit = Some(crate::audit::AuditHook::new(hook));
        self
    }

    /// Replaces the response for rejections; see
    /// [`RejectionHandler`](crate::RejectionHandler).
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
        WsAuth::new(
            inner,
            self.authenticator.clone(),
            self.handler.clone(),
            self.config.clone(),
        )
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
    fn the_cookie_header_is_not_a_bare_credential_header() {
        let err = layer().header(http::header::COOKIE).unwrap_err();
        assert!(err.to_string().contains("Origin policy"), "{err}");
    }

    #[test]
    fn invalid_names_and_realms_are_configuration_errors() {
        assert!(layer().cookie("a b", OriginPolicy::new()).is_err());
        assert!(layer().cookie("", OriginPolicy::new()).is_err());
        assert!(layer().query_param("").is_err());
        assert!(layer().header("x api key").is_err());
        assert!(layer().realm("a\"b").is_err());
        assert!(layer().realm("é").is_err());
        assert!(layer().realm("chat").is_ok());
    }

    #[test]
    fn other_headers_are() {
        let layer = layer()
            .header("x-api-key")
            .and_then(|l| l.header(HeaderName::from_static("x-session-token")))
            .and_then(|l| l.header("X-Api-Key"));
        let layer = layer.unwrap();
        assert_eq!(layer.config.sources.len(), 2, "the same name replaces");
    }

    #[test]
    fn query_params_are_kept_by_name() {
        let layer = layer()
            .query_param("ticket")
            .and_then(|l| l.query_param("token"))
            .and_then(|l| l.query_param("ticket"))
            .unwrap();
        assert_eq!(layer.config.sources.len(), 2, "the same name replaces");
    }
}
