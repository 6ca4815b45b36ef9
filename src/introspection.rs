//! OAuth 2.0 token introspection (RFC 7662): [`Introspection`], an
//! [`Authenticator`] for opaque access tokens.
//!
//! Each token is POSTed to the authorization server's introspection
//! endpoint with the resource server's own client credentials
//! (`client_secret_basic` by default, or `client_secret_post`). The answer
//! must say `"active": true`; `sub` (or, for a client-credentials token
//! without one, `client_id`) becomes the [`Identity`]'s subject, `scope`
//! its scopes, `exp` its expiry and `jti` its token id. When configured,
//! `aud` must name one of the expected audiences and `iss` the expected
//! issuer.
//!
//! Answers are cached by the SHA-256 of the token (the token itself is
//! never kept): positive ones until the earlier of the token's `exp` and
//! [`IntrospectionBuilder::max_cache`] (default 30 s), negative ones for
//! [`IntrospectionBuilder::negative_cache`] (default 2 s). A token revoked
//! at the authorization server is therefore refused at most `max_cache`
//! after its last successful introspection. Concurrent handshakes with one
//! uncached token share one request (single flight). An authorization
//! server that is down, slower than the timeout, or answers anything but
//! a `200` with a JSON object under the size cap is 503 (never 401), and
//! such failures are not cached.
//!
//! Choose introspection for opaque tokens, or when revocation must take
//! effect within seconds; for JWT access tokens, verifying the signature
//! locally (`jwt::JwtAuthenticator` with `RemoteJwks`, features `jwt` /
//! `jwks`) needs no request per new token.
//!
//! ```no_run
//! use tower_ws_auth::{WsAuthLayer, introspection::Introspection};
//!
//! # fn run() -> Result<(), tower_ws_auth::ConfigError> {
//! let introspection = Introspection::builder(
//!     "https://auth.example.com/oauth2/introspect",
//!     "ws-server",
//!     "the-resource-server-secret",
//! )
//! .audience(["https://ws.example.com"])
//! .build()?;
//! let layer = WsAuthLayer::new(introspection).bearer_header();
//! # let _ = layer; Ok(()) }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::request::Parts;
use http::{HeaderValue, Uri};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use crate::authenticator::Authenticator;
use crate::credential::Credential;
use crate::error::{AuthError, ConfigError};
use crate::fetch::{FetchError, Fetcher};
use crate::identity::{AuthMethod, Identity};

/// How the resource server authenticates to the introspection endpoint
/// (RFC 6749 section 2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientAuth {
    /// HTTP Basic with the form-encoded client id and secret (the default).
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost,
}

/// Where the endpoint comes from.
enum Endpoint {
    Fixed(Uri),
    /// OpenID Connect / RFC 8414 metadata of `issuer`, read once.
    Discovered {
        issuer: Box<str>,
        metadata: Uri,
        found: OnceCell<Uri>,
    },
}

type Key = [u8; 32];

/// The shared answer of one in-flight introspection.
type Flight = Arc<OnceCell<Result<Answer, AuthError>>>;

/// A cached answer: the identity, or a refusal.
#[derive(Clone)]
enum Answer {
    Active(Identity),
    Inactive(&'static str),
}

struct Inner {
    endpoint: Endpoint,
    client_id: Box<str>,
    client_secret: Box<str>,
    auth: ClientAuth,
    audiences: Vec<String>,
    issuer: Option<String>,
    max_cache: Duration,
    negative_cache: Duration,
    capacity: usize,
    fetcher: Fetcher,
    cache: Mutex<HashMap<Key, (Answer, Instant)>>,
    /// One cell per token being introspected: the first handshake runs
    /// the request, the others wait for its answer. Entries are removed
    /// when answered, so the map holds at most one per concurrent lookup.
    inflight: Mutex<HashMap<Key, Flight>>,
}

/// An [`Authenticator`] checking tokens with OAuth 2.0 token introspection
/// (RFC 7662); see the [module documentation](self). Clones share the
/// cache and the connection pool.
#[derive(Clone)]
pub struct Introspection {
    inner: Arc<Inner>,
}

impl fmt::Debug for Introspection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Introspection")
            .field("client_id", &self.inner.client_id)
            .field("client_secret", &"<redacted>")
            .field("auth", &self.inner.auth)
            .field("max_cache", &self.inner.max_cache)
            .finish_non_exhaustive()
    }
}

/// Builds an [`Introspection`]; see [`Introspection::builder`].
#[must_use]
pub struct IntrospectionBuilder {
    endpoint: Result<Endpoint, ConfigError>,
    client_id: String,
    client_secret: String,
    auth: ClientAuth,
    audiences: Vec<String>,
    issuer: Option<String>,
    max_cache: Duration,
    negative_cache: Duration,
    capacity: usize,
    connect_timeout: Duration,
    total_timeout: Duration,
    max_body: usize,
    extra_roots: Vec<Vec<u8>>,
}

impl fmt::Debug for IntrospectionBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IntrospectionBuilder")
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

fn parse_url(url: &str) -> Result<Uri, ConfigError> {
    let bad = |reason| ConfigError::setting("introspection URL", reason);
    let uri: Uri = url.parse().map_err(|_| bad("not a URL"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(bad("the scheme must be http or https"));
    }
    match uri.authority() {
        Some(a) if !a.host().is_empty() && !a.as_str().contains('@') => Ok(uri),
        _ => Err(bad("no host, or user info in the URL")),
    }
}

impl Introspection {
    /// Introspects at `endpoint` (`https://...`; `http://` for loopback
    /// servers and tests), authenticating as `client_id` / `client_secret`.
    pub fn builder(
        endpoint: &str,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
    ) -> IntrospectionBuilder {
        IntrospectionBuilder::new(
            parse_url(endpoint).map(Endpoint::Fixed),
            client_id,
            client_secret,
        )
    }

    /// Introspects at the `introspection_endpoint` of the authorization
    /// server `issuer`, read once from its OpenID Connect discovery document
    /// (`{issuer}/.well-known/openid-configuration`), whose `issuer` must
    /// equal `issuer`. Until the document is read, handshakes are 503.
    pub fn discover(
        issuer: &str,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
    ) -> IntrospectionBuilder {
        let metadata = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let endpoint = parse_url(issuer).and_then(|_| {
            Ok(Endpoint::Discovered {
                issuer: issuer.into(),
                metadata: parse_url(&metadata)?,
                found: OnceCell::new(),
            })
        });
        IntrospectionBuilder::new(endpoint, client_id, client_secret)
    }
}

impl IntrospectionBuilder {
    fn new(
        endpoint: Result<Endpoint, ConfigError>,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
    ) -> Self {
        Self {
            endpoint,
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            auth: ClientAuth::ClientSecretBasic,
            audiences: Vec::new(),
            issuer: None,
            max_cache: Duration::from_secs(30),
            negative_cache: Duration::from_secs(2),
            capacity: 10_000,
            connect_timeout: Duration::from_secs(2),
            total_timeout: Duration::from_secs(5),
            max_body: 64 * 1024,
            extra_roots: Vec::new(),
        }
    }

    /// How the resource server authenticates to the endpoint (default
    /// [`ClientAuth::ClientSecretBasic`]).
    pub fn client_auth(mut self, auth: ClientAuth) -> Self {
        self.auth = auth;
        self
    }

    /// Requires `aud` to name one of `audiences` (a string or an array).
    pub fn audience<I>(mut self, audiences: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        self.audiences.extend(audiences.into_iter().map(Into::into));
        self
    }

    /// Requires `iss` to equal `issuer`.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// Caches an active answer for at most `ttl` (default 30 s; never past
    /// the token's `exp`); zero disables positive caching. This is how long
    /// a revoked token may still be accepted.
    pub fn max_cache(mut self, ttl: Duration) -> Self {
        self.max_cache = ttl;
        self
    }

    /// Caches an inactive (or refused) answer for `ttl` (default 2 s, at
    /// most 60 s): a flood of one bad token reaches the server once per
    /// `ttl`.
    pub fn negative_cache(mut self, ttl: Duration) -> Self {
        self.negative_cache = ttl;
        self
    }

    /// Caches at most `entries` answers (default 10,000). At the cap,
    /// expired entries are dropped; if none has expired, the new answer is
    /// not cached (the token is introspected again next time).
    pub fn capacity(mut self, entries: NonZeroUsize) -> Self {
        self.capacity = entries.get();
        self
    }

    /// Connect and total timeouts of one introspection request (defaults
    /// 2 s and 5 s); past them the handshake is 503.
    pub fn timeouts(mut self, connect: Duration, total: Duration) -> Self {
        self.connect_timeout = connect;
        self.total_timeout = total;
        self
    }

    /// Caps the response body (default 64 KiB); a larger one is 503.
    pub fn max_body_bytes(mut self, bytes: NonZeroUsize) -> Self {
        self.max_body = bytes.get();
        self
    }

    /// Also trusts the root certificate(s) in `pem`.
    pub fn add_root_certificate_pem(mut self, pem: impl AsRef<[u8]>) -> Self {
        self.extra_roots.push(pem.as_ref().to_vec());
        self
    }

    /// Finishes the authenticator.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] for an unusable URL, an empty client id, a zero
    /// timeout, a negative cache over 60 s, or unusable root certificates.
    pub fn build(self) -> Result<Introspection, ConfigError> {
        let endpoint = self.endpoint?;
        if self.client_id.is_empty() {
            return Err(ConfigError::setting("introspection client id", "empty"));
        }
        if self.connect_timeout.is_zero() || self.total_timeout.is_zero() {
            return Err(ConfigError::setting("introspection timeouts", "zero"));
        }
        if self.negative_cache > Duration::from_secs(60) {
            return Err(ConfigError::setting(
                "introspection negative cache",
                "longer than 60 seconds",
            ));
        }
        let fetcher = Fetcher::new(
            self.connect_timeout,
            self.total_timeout,
            self.max_body,
            &self.extra_roots,
        )?;
        Ok(Introspection {
            inner: Arc::new(Inner {
                endpoint,
                client_id: self.client_id.into(),
                client_secret: self.client_secret.into(),
                auth: self.auth,
                audiences: self.audiences,
                issuer: self.issuer,
                max_cache: self.max_cache,
                negative_cache: self.negative_cache,
                capacity: self.capacity,
                fetcher,
                cache: Mutex::default(),
                inflight: Mutex::default(),
            }),
        })
    }
}

/// An RFC 7662 answer, the members this crate reads.
#[derive(Deserialize)]
struct Response {
    active: bool,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    exp: Option<u64>,
    #[serde(default)]
    aud: Option<OneOrMany>,
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    jti: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn contains_any(&self, wanted: &[String]) -> bool {
        match self {
            Self::One(a) => wanted.contains(a),
            Self::Many(all) => all.iter().any(|a| wanted.contains(a)),
        }
    }
}

#[derive(Deserialize)]
struct Metadata {
    issuer: Option<String>,
    introspection_endpoint: Option<String>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn unavailable(what: &'static str, error: FetchError) -> AuthError {
    AuthError::backend(what, error)
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn encode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

impl Inner {
    async fn endpoint(&self) -> Result<&Uri, AuthError> {
        match &self.endpoint {
            Endpoint::Fixed(uri) => Ok(uri),
            Endpoint::Discovered {
                issuer,
                metadata,
                found,
            } => {
                found
                    .get_or_try_init(|| async {
                        let fetched = self
                            .fetcher
                            .get(metadata)
                            .await
                            .map_err(|e| unavailable("introspection discovery failed", e))?;
                        let document: Metadata = serde_json::from_slice(&fetched.body)
                            .map_err(|_| AuthError::unavailable("unreadable discovery document"))?;
                        if document.issuer.as_deref() != Some(&**issuer) {
                            return Err(AuthError::unavailable(
                                "discovery document for another issuer",
                            ));
                        }
                        let endpoint = document.introspection_endpoint.ok_or_else(|| {
                            AuthError::unavailable("no introspection_endpoint in discovery")
                        })?;
                        parse_url(&endpoint)
                            .map_err(|_| AuthError::unavailable("unusable introspection_endpoint"))
                    })
                    .await
            }
        }
    }

    /// One request to the endpoint.
    async fn introspect(&self, token: &str) -> Result<Answer, AuthError> {
        let endpoint = self.endpoint().await?;
        let mut form = format!("token={}&token_type_hint=access_token", encode(token));
        let authorization = match self.auth {
            ClientAuth::ClientSecretBasic => {
                let pair = format!(
                    "{}:{}",
                    encode(&self.client_id),
                    encode(&self.client_secret)
                );
                let value = HeaderValue::from_str(&format!("Basic {}", STANDARD.encode(pair)))
                    .map_err(|_| AuthError::unavailable("unusable client credentials"))?;
                Some(value)
            }
            ClientAuth::ClientSecretPost => {
                form.push_str("&client_id=");
                form.push_str(&encode(&self.client_id));
                form.push_str("&client_secret=");
                form.push_str(&encode(&self.client_secret));
                None
            }
        };
        let fetched = self
            .fetcher
            .post_form(endpoint, form, authorization)
            .await
            .map_err(|e| unavailable("introspection failed", e))?;
        let response: Response = serde_json::from_slice(&fetched.body)
            .map_err(|_| AuthError::unavailable("unreadable introspection response"))?;
        Ok(self.judge(response))
    }

    fn judge(&self, response: Response) -> Answer {
        if !response.active {
            return Answer::Inactive("token not active");
        }
        let now = SystemTime::now();
        let expires_at = response
            .exp
            .map(|exp| UNIX_EPOCH + Duration::from_secs(exp));
        if expires_at.is_some_and(|at| at <= now) {
            return Answer::Inactive("token expired");
        }
        if !self.audiences.is_empty()
            && !response
                .aud
                .as_ref()
                .is_some_and(|aud| aud.contains_any(&self.audiences))
        {
            return Answer::Inactive("token for another audience");
        }
        if let Some(issuer) = &self.issuer
            && response.iss.as_deref() != Some(issuer.as_str())
        {
            return Answer::Inactive("token from another issuer");
        }
        let Some(subject) = response.sub.or(response.client_id) else {
            return Answer::Inactive("no sub or client_id");
        };
        let mut builder = Identity::builder(subject, AuthMethod::Custom("introspection"))
            .scopes(response.scope.as_deref().unwrap_or("").split_whitespace());
        if let Some(at) = expires_at {
            builder = builder.expires_at(at);
        }
        if let Some(jti) = response.jti {
            builder = builder.token_id(jti);
        }
        Answer::Active(builder.build())
    }

    fn cached(&self, key: &Key) -> Option<Answer> {
        let now = Instant::now();
        let mut cache = lock(&self.cache);
        match cache.get(key) {
            Some((answer, deadline)) if *deadline > now => Some(answer.clone()),
            Some(_) => {
                cache.remove(key);
                None
            }
            None => None,
        }
    }

    fn remember(&self, key: Key, answer: &Answer) {
        let now = Instant::now();
        let ttl = match answer {
            Answer::Active(identity) => identity
                .time_left(SystemTime::now())
                .map_or(self.max_cache, |left| left.min(self.max_cache)),
            Answer::Inactive(_) => self.negative_cache,
        };
        let Some(deadline) = now.checked_add(ttl).filter(|_| !ttl.is_zero()) else {
            return;
        };
        let mut cache = lock(&self.cache);
        if cache.len() >= self.capacity {
            cache.retain(|_, (_, d)| *d > now);
            if cache.len() >= self.capacity {
                return;
            }
        }
        cache.insert(key, (answer.clone(), deadline));
    }
}

impl Authenticator for Introspection {
    fn name(&self) -> &'static str {
        "introspection"
    }

    async fn authenticate(
        &self,
        credential: &Credential,
        _request: &Parts,
    ) -> Result<Identity, AuthError> {
        let inner = &*self.inner;
        let token = credential.expose_secret();
        let key: Key = Sha256::digest(token.as_bytes()).into();
        let answer = match inner.cached(&key) {
            Some(answer) => answer,
            None => {
                let cell = lock(&inner.inflight).entry(key).or_default().clone();
                let outcome = cell
                    .get_or_init(|| async {
                        let outcome = inner.introspect(token).await;
                        if let Ok(answer) = &outcome {
                            inner.remember(key, answer);
                        }
                        outcome
                    })
                    .await
                    .clone();
                let mut inflight = lock(&inner.inflight);
                if inflight.get(&key).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
                    inflight.remove(&key);
                }
                outcome?
            }
        };
        match answer {
            Answer::Active(identity) if identity.is_expired_at(SystemTime::now()) => {
                Err(AuthError::invalid("token expired"))
            }
            Answer::Active(identity) => Ok(identity),
            Answer::Inactive(reason) => Err(AuthError::invalid(reason)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn built(builder: IntrospectionBuilder) -> Introspection {
        builder.build().unwrap()
    }

    fn response(json: serde_json::Value) -> Response {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn builder_checks() {
        let ok = || Introspection::builder("https://as.example/introspect", "rs", "s3cr3t-value");
        assert!(ok().build().is_ok());
        assert!(
            Introspection::builder("ftp://as.example/x", "rs", "s")
                .build()
                .is_err()
        );
        assert!(
            Introspection::builder("https://u:p@as.example/x", "rs", "s")
                .build()
                .is_err()
        );
        assert!(
            Introspection::builder("https://as.example/x", "", "s")
                .build()
                .is_err()
        );
        assert!(
            Introspection::discover("not a url", "rs", "s")
                .build()
                .is_err()
        );
        assert!(
            ok().timeouts(Duration::ZERO, Duration::from_secs(1))
                .build()
                .is_err()
        );
        assert!(
            ok().negative_cache(Duration::from_secs(61))
                .build()
                .is_err()
        );
        let shown = format!("{:?}", built(ok()));
        assert!(!shown.contains("s3cr3t-value"), "{shown}");
    }

    #[test]
    fn answers_map_onto_identities() {
        let plain = built(Introspection::builder("https://as.example/i", "rs", "s"));
        let exp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 60;
        let Answer::Active(id) = plain.inner.judge(response(serde_json::json!({
            "active": true, "client_id": "svc", "scope": "a  b", "exp": exp, "jti": "j1"
        }))) else {
            panic!("inactive")
        };
        assert_eq!(id.subject(), "svc", "client_id without sub");
        assert_eq!(id.scopes().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(id.token_id(), Some("j1"));
        assert!(id.expires_at().is_some());
        for refused in [
            serde_json::json!({ "active": false, "sub": "x" }),
            serde_json::json!({ "active": true }),
            serde_json::json!({ "active": true, "sub": "x", "exp": 1 }),
        ] {
            assert!(matches!(
                plain.inner.judge(response(refused)),
                Answer::Inactive(_)
            ));
        }
        let checked = built(
            Introspection::builder("https://as.example/i", "rs", "s")
                .audience(["ws"])
                .issuer("https://as.example"),
        );
        let judge = |json| matches!(checked.inner.judge(response(json)), Answer::Active(_));
        assert!(judge(serde_json::json!({
            "active": true, "sub": "u", "aud": ["x", "ws"], "iss": "https://as.example"
        })));
        assert!(!judge(serde_json::json!({
            "active": true, "sub": "u", "aud": "x", "iss": "https://as.example"
        })));
        assert!(!judge(
            serde_json::json!({ "active": true, "sub": "u", "aud": "ws" })
        ));
    }
}
