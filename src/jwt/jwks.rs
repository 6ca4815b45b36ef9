//! [`RemoteJwks`]: the keys of a remote JWK Set (or of an OpenID Connect
//! provider), cached, refreshed in the background and refetched at most
//! once per interval for unknown key ids.

use std::fmt;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::{Duration, Instant};

use http::Uri;
use jsonwebtoken::Algorithm;
use serde::Deserialize;

use super::algorithm::{self, AlgSet};
use super::keys::{JwkRules, KeySet, UNKNOWN_KID, parse_jwk_set};
use crate::error::{AuthError, ConfigError};
use crate::fetch::{FetchError, Fetcher};

/// The keys of a remote JWK Set, for
/// [`JwtAuthenticator::from_remote_jwks`](crate::jwt::JwtAuthenticator::from_remote_jwks).
///
/// How keys are fetched, cached and refreshed, and what happens while the
/// key server is down: "Remote key sets" in the
/// [`JwtAuthenticator`](crate::jwt::JwtAuthenticator) guide.
///
/// ```no_run
/// use std::time::Duration;
/// use tower_ws_auth::{jwt::{JwtAuthenticator, RemoteJwks}};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let jwks = RemoteJwks::discover("https://accounts.example.com")
///     .refetch_interval(Duration::from_secs(30))
///     .timeouts(Duration::from_secs(2), Duration::from_secs(5))
///     .build()?;
/// jwks.refresh().await?; // optional warm-up at startup
/// let auth = JwtAuthenticator::from_remote_jwks(jwks).audience(["chat-api"]);
/// # let _ = auth;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RemoteJwks {
    shared: Arc<Shared>,
}

impl fmt::Debug for RemoteJwks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("RemoteJwks");
        match &self.shared.source {
            Source::Jwks(uri) => d.field("jwks_uri", uri),
            Source::Oidc { issuer, .. } => d.field("issuer", issuer),
        };
        d.field("cached_keys", &self.key_count())
            .field("options", &self.shared.options)
            .finish()
    }
}

#[derive(Debug)]
enum Source {
    Jwks(Uri),
    Oidc { issuer: Box<str>, discovery: Uri },
}

#[derive(Debug, Clone)]
struct Options {
    /// `None`: the default, five minutes within the refresh bounds.
    refresh_interval: Option<Duration>,
    min_refresh: Duration,
    max_refresh: Duration,
    refetch_interval: Duration,
    connect_timeout: Duration,
    total_timeout: Duration,
    max_body: usize,
    max_keys: usize,
    max_stale: Option<Duration>,
    default_rsa: Algorithm,
    algorithms: AlgSet,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            refresh_interval: None,
            min_refresh: Duration::from_secs(60),
            max_refresh: Duration::from_secs(24 * 3600),
            refetch_interval: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            total_timeout: Duration::from_secs(10),
            max_body: 256 * 1024,
            max_keys: 100,
            max_stale: None,
            default_rsa: Algorithm::RS256,
            algorithms: super::algorithm::ALL
                .iter()
                .copied()
                .filter(|a| !algorithm::is_hmac(a))
                .collect(),
        }
    }
}

/// Configures a [`RemoteJwks`]; see [`RemoteJwks::builder`] and
/// [`RemoteJwks::discover`].
#[must_use]
#[derive(Debug)]
pub struct RemoteJwksBuilder {
    source: Result<Source, ConfigError>,
    options: Options,
    extra_roots: Vec<Vec<u8>>,
}

/// An absolute `http://` or `https://` URL without user info.
fn parse_url(url: &str) -> Result<Uri, ConfigError> {
    let bad = |reason| ConfigError::InvalidKeyServerUrl { reason };
    let uri: Uri = url.parse().map_err(|_| bad("not a URL"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(bad("the scheme must be http or https")),
    }
    let authority = uri.authority().ok_or_else(|| bad("no host"))?;
    if authority.as_str().contains('@') {
        return Err(bad("user info in the URL is not supported"));
    }
    if authority.host().is_empty() {
        return Err(bad("no host"));
    }
    Ok(uri)
}

impl RemoteJwksBuilder {
    fn new(source: Result<Source, ConfigError>) -> Self {
        Self {
            source,
            options: Options::default(),
            extra_roots: Vec::new(),
        }
    }

    /// Without `Cache-Control: max-age` on the response, refresh the keys
    /// this long after a fetch. It must lie within the
    /// [`refresh_bounds`](Self::refresh_bounds) ([`build`](Self::build)
    /// fails otherwise); by default five minutes, brought within the
    /// bounds.
    pub fn refresh_interval(mut self, interval: Duration) -> Self {
        self.options.refresh_interval = Some(interval);
        self
    }

    /// The bounds on the refresh delay a key server asks for with
    /// `Cache-Control: max-age` (a runtime bound on what the server
    /// sends: a `max-age` outside them is brought to the nearest bound):
    /// default 60 seconds to 24 hours. After a failed fetch the next one
    /// is scheduled `min` later. `min` must be positive and at most `max`
    /// ([`build`](Self::build) fails otherwise).
    pub fn refresh_bounds(mut self, min: Duration, max: Duration) -> Self {
        self.options.min_refresh = min;
        self.options.max_refresh = max;
        self
    }

    /// The least time between two fetches triggered by requests (an
    /// unknown `kid`, no keys yet): default 30 seconds. This is what keeps
    /// a flood of tokens with made-up `kid`s from turning into a flood of
    /// fetches. Background refreshes are not limited by it.
    pub fn refetch_interval(mut self, interval: Duration) -> Self {
        self.options.refetch_interval = interval;
        self
    }

    /// The connect timeout and the total timeout of one fetch (connect,
    /// TLS, headers and body): default 5 and 10 seconds.
    pub fn timeouts(mut self, connect: Duration, total: Duration) -> Self {
        self.options.connect_timeout = connect;
        self.options.total_timeout = total;
        self
    }

    /// Caps a response body at `bytes` (default 256 KiB).
    pub fn max_body_bytes(mut self, bytes: NonZeroUsize) -> Self {
        self.options.max_body = bytes.get();
        self
    }

    /// Keeps at most `keys` keys of a set (default 100); the rest are
    /// ignored.
    pub fn max_keys(mut self, keys: NonZeroUsize) -> Self {
        self.options.max_keys = keys.get();
        self
    }

    /// Stops using cached keys `age` after the last successful fetch, when
    /// no fetch has succeeded since: requests then get 503 until the
    /// endpoint answers again. By default cached keys are kept for as long
    /// as the endpoint is down.
    pub fn max_stale(mut self, age: Duration) -> Self {
        self.options.max_stale = Some(age);
        self
    }

    /// The algorithm of an RSA JWK without `alg` (default RS256). Must be
    /// one of RS256/384/512 or PS256/384/512.
    pub fn default_rsa_algorithm(mut self, alg: Algorithm) -> Self {
        self.options.default_rsa = alg;
        self
    }

    /// Accepts only tokens with these algorithms (default: every
    /// asymmetric one). HMAC algorithms cannot be used with a remote key
    /// set.
    pub fn algorithms<I: IntoIterator<Item = Algorithm>>(mut self, algorithms: I) -> Self {
        self.options.algorithms = algorithms.into_iter().collect();
        self
    }

    /// Also trusts the certificates in `pem` (for a private CA).
    pub fn add_root_certificate_pem(mut self, pem: impl AsRef<[u8]>) -> Self {
        self.extra_roots.push(pem.as_ref().to_vec());
        self
    }

    /// Checks the settings and builds the key source. No request is made
    /// until the first token arrives or [`RemoteJwks::refresh`] is called,
    /// and no Tokio runtime is needed here.
    pub fn build(self) -> Result<RemoteJwks, ConfigError> {
        let o = &self.options;
        let bad = |reason| ConfigError::InvalidJwtConfig { reason };
        if o.min_refresh.is_zero() || o.min_refresh > o.max_refresh {
            return Err(bad("refresh bounds must satisfy 0 < min <= max"));
        }
        if o.refresh_interval
            .is_some_and(|i| i < o.min_refresh || i > o.max_refresh)
        {
            return Err(bad(
                "the refresh interval must lie within the refresh bounds",
            ));
        }
        if o.connect_timeout.is_zero() || o.total_timeout.is_zero() {
            return Err(bad("timeouts must be positive"));
        }
        if o.default_rsa.family() != jsonwebtoken::AlgorithmFamily::Rsa {
            return Err(bad("the default RSA algorithm must be RS* or PS*"));
        }
        if o.algorithms.is_empty() || o.algorithms.iter().any(|a| algorithm::is_hmac(&a)) {
            return Err(bad(
                "remote key sets need at least one algorithm, and no HMAC one",
            ));
        }
        let source = self.source?;
        let fetcher = Fetcher::new(
            o.connect_timeout,
            o.total_timeout,
            o.max_body,
            &self.extra_roots,
        )?;
        Ok(RemoteJwks {
            shared: Arc::new(Shared {
                source,
                options: self.options,
                fetcher,
                state: RwLock::new(State::default()),
                fetch_lock: tokio::sync::Mutex::new(()),
                jwks_uri: Mutex::new(None),
                background: AtomicBool::new(false),
            }),
        })
    }
}

#[derive(Default)]
struct State {
    /// The last usable key set fetched.
    keys: Option<Arc<KeySet>>,
    /// When `keys` were fetched.
    fetched_at: Option<Instant>,
    /// When the last fetch, successful or not, ended.
    last_attempt: Option<Instant>,
    /// Whether that fetch failed.
    last_failed: bool,
    /// When the background task should fetch next.
    next_refresh: Option<Instant>,
    /// Bumped by every fetch, so that requests that waited for one do not
    /// start another.
    generation: u64,
}

struct Shared {
    source: Source,
    options: Options,
    fetcher: Fetcher,
    state: RwLock<State>,
    fetch_lock: tokio::sync::Mutex<()>,
    /// The `jwks_uri` found by OpenID Connect discovery.
    jwks_uri: Mutex<Option<Uri>>,
    background: AtomicBool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    /// A request needs keys: limited by the refetch interval.
    Request,
    /// The background schedule.
    Scheduled,
    /// [`RemoteJwks::refresh`].
    Forced,
}

#[derive(Deserialize)]
struct Discovery {
    issuer: Option<String>,
    jwks_uri: Option<String>,
}

impl RemoteJwks {
    /// Keys from the JWK Set at `url` (`https://...`, or `http://` for
    /// loopback servers and tests).
    pub fn builder(url: &str) -> RemoteJwksBuilder {
        RemoteJwksBuilder::new(parse_url(url).map(Source::Jwks))
    }

    /// Keys of the OpenID Connect provider `issuer`, found through its
    /// discovery document `{issuer}/.well-known/openid-configuration`
    /// (OpenID Connect Discovery 1.0). The document's `issuer` must equal
    /// `issuer` exactly, and a `jwks_uri` under an `https://` issuer must be
    /// `https://` too. The discovered `jwks_uri` is kept until a fetch from
    /// it fails.
    pub fn discover(issuer: &str) -> RemoteJwksBuilder {
        let discovery = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        RemoteJwksBuilder::new(parse_url(issuer).and_then(|_| {
            Ok(Source::Oidc {
                issuer: issuer.into(),
                discovery: parse_url(&discovery)?,
            })
        }))
    }

    /// The issuer, when the keys come from OpenID Connect discovery.
    pub fn issuer(&self) -> Option<&str> {
        match &self.shared.source {
            Source::Oidc { issuer, .. } => Some(issuer),
            Source::Jwks(_) => None,
        }
    }

    /// The number of usable keys cached.
    pub fn key_count(&self) -> usize {
        self.shared.read().keys.as_ref().map_or(0, |k| k.len())
    }

    /// Fetches the key set now (sharing a fetch already under way), and
    /// returns the number of usable keys. Useful to warm the cache at
    /// startup; needs a Tokio runtime.
    pub async fn refresh(&self) -> Result<usize, AuthError> {
        self.ensure_background();
        let generation = self.shared.read().generation;
        self.shared.fetch(generation, Trigger::Forced).await;
        let state = self.shared.read();
        match &state.keys {
            Some(keys) if !state.last_failed => Ok(keys.len()),
            _ => Err(AuthError::unavailable(
                "the key server could not be fetched",
            )),
        }
    }

    pub(crate) fn algorithms(&self) -> AlgSet {
        self.shared.options.algorithms
    }

    /// A key set in which `select(alg, kid)` can succeed, or the error to
    /// answer with.
    pub(crate) async fn key_set_for(
        &self,
        alg: Algorithm,
        kid: Option<&str>,
    ) -> Result<Arc<KeySet>, AuthError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(AuthError::unavailable("remote JWKS needs a Tokio runtime"));
        }
        self.ensure_background();
        let shared = &*self.shared;
        let mut fetched = false;
        loop {
            let (keys, generation) = shared.usable_keys();
            if let Some(keys) = &keys {
                match keys.select(alg, kid) {
                    Ok(_) => return Ok(keys.clone()),
                    Err(UNKNOWN_KID) => {}
                    Err(miss) => return Err(AuthError::invalid(miss)),
                }
            }
            if fetched || !shared.request_fetch_allowed() {
                return Err(shared.miss(keys.is_some()));
            }
            fetched = true;
            shared.fetch(generation, Trigger::Request).await;
        }
    }

    /// Starts the background refresh on the current runtime, once.
    fn ensure_background(&self) {
        if self.shared.background.load(Ordering::Acquire) {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.shared.background.swap(true, Ordering::AcqRel) {
            return;
        }
        handle.spawn(refresh_loop(Arc::downgrade(&self.shared)));
    }
}

async fn refresh_loop(shared: Weak<Shared>) {
    loop {
        let delay = match shared.upgrade() {
            Some(shared) => shared.until_next_refresh(),
            None => return,
        };
        tokio::time::sleep(delay).await;
        let Some(strong) = shared.upgrade() else {
            return;
        };
        let (due, generation) = {
            let state = strong.read();
            let due = state.next_refresh.is_none_or(|at| at <= Instant::now());
            (due, state.generation)
        };
        if due {
            strong.fetch(generation, Trigger::Scheduled).await;
        }
    }
}

impl Shared {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The cached keys if there are usable ones that are not too stale,
    /// and the fetch generation they belong to.
    fn usable_keys(&self) -> (Option<Arc<KeySet>>, u64) {
        let state = self.read();
        let fresh_enough = match (self.options.max_stale, state.fetched_at) {
            (Some(max), Some(at)) => at.elapsed() <= max,
            _ => true,
        };
        let keys = state
            .keys
            .as_ref()
            .filter(|k| fresh_enough && !k.is_empty())
            .cloned();
        (keys, state.generation)
    }

    fn request_fetch_allowed(&self) -> bool {
        self.read()
            .last_attempt
            .is_none_or(|at| at.elapsed() >= self.options.refetch_interval)
    }

    /// How long until a request may trigger a fetch again (at least 1 s).
    fn retry_after(&self) -> Duration {
        let wait = self.read().last_attempt.map_or(Duration::ZERO, |at| {
            self.options.refetch_interval.saturating_sub(at.elapsed())
        });
        wait.max(Duration::from_secs(1))
    }

    /// The answer when no key fits after any allowed fetch.
    fn miss(&self, had_keys: bool) -> AuthError {
        if !had_keys {
            return AuthError::unavailable("no usable key from the key server")
                .with_retry_after(self.retry_after());
        }
        if self.read().last_failed {
            return AuthError::unavailable("unknown kid while the key server is unreachable")
                .with_retry_after(self.retry_after());
        }
        AuthError::invalid(UNKNOWN_KID)
    }

    fn until_next_refresh(&self) -> Duration {
        let state = self.read();
        match state.next_refresh {
            Some(at) => at.saturating_duration_since(Instant::now()),
            None => self.options.min_refresh,
        }
    }

    fn clamp_refresh(&self, max_age: Option<Duration>) -> Duration {
        max_age
            .or(self.options.refresh_interval)
            .unwrap_or(Duration::from_secs(300))
            .clamp(self.options.min_refresh, self.options.max_refresh)
    }

    /// Fetches unless another fetch ran since `generation` was read (the
    /// caller then uses its result), or, for requests, unless the refetch
    /// interval has not passed. One fetch at a time.
    async fn fetch(&self, generation: u64, trigger: Trigger) {
        let _single_flight = self.fetch_lock.lock().await;
        if self.read().generation != generation {
            return;
        }
        if trigger == Trigger::Request && !self.request_fetch_allowed() {
            return;
        }
        let outcome = self.fetch_keys().await;
        crate::observe::jwks_refresh(outcome.is_ok());
        let now = Instant::now();
        let mut state = self.write();
        state.generation = state.generation.wrapping_add(1);
        state.last_attempt = Some(now);
        match outcome {
            Ok((keys, skipped, max_age)) => {
                let count = keys.len();
                state.keys = Some(Arc::new(keys));
                state.fetched_at = Some(now);
                state.last_failed = false;
                state.next_refresh = Some(now + self.clamp_refresh(max_age));
                drop(state);
                tracing::debug!(
                    target: "tower_ws_auth",
                    keys = count,
                    skipped,
                    trigger = ?trigger,
                    "JWKS fetched"
                );
            }
            Err(error) => {
                state.last_failed = true;
                state.next_refresh = Some(now + self.options.min_refresh);
                let cached = state.keys.as_ref().map_or(0, |k| k.len());
                drop(state);
                tracing::warn!(
                    target: "tower_ws_auth",
                    error = %error,
                    cached_keys = cached,
                    trigger = ?trigger,
                    "JWKS fetch failed; keeping cached keys"
                );
            }
        }
    }

    /// One fetch: discovery when needed, then the key set.
    async fn fetch_keys(&self) -> Result<(KeySet, usize, Option<Duration>), FetchError> {
        let uri = match &self.source {
            Source::Jwks(uri) => uri.clone(),
            Source::Oidc { issuer, discovery } => {
                let cached = self
                    .jwks_uri
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone();
                match cached {
                    Some(uri) => uri,
                    None => {
                        let uri = self.discover(issuer, discovery).await?;
                        *self.jwks_uri.lock().unwrap_or_else(PoisonError::into_inner) =
                            Some(uri.clone());
                        uri
                    }
                }
            }
        };
        let result = self.fetch_set(&uri).await;
        if result.is_err() {
            // Discover again next time: the provider may have moved its keys.
            *self.jwks_uri.lock().unwrap_or_else(PoisonError::into_inner) = None;
        }
        result
    }

    async fn fetch_set(&self, uri: &Uri) -> Result<(KeySet, usize, Option<Duration>), FetchError> {
        let fetched = self.fetcher.get(uri).await?;
        let rules = JwkRules {
            allow_symmetric: false,
            default_rsa: self.options.default_rsa,
        };
        let (keys, skipped) = parse_jwk_set(&fetched.body, &rules, self.options.max_keys)
            .map_err(FetchError::Document)?;
        let keys: Vec<_> = keys
            .into_iter()
            .filter(|k| self.options.algorithms.contains(k.alg))
            .collect();
        if keys.is_empty() {
            return Err(FetchError::Document("the key set has no usable key"));
        }
        Ok((KeySet::from_keys(keys), skipped, fetched.max_age))
    }

    async fn discover(&self, issuer: &str, discovery: &Uri) -> Result<Uri, FetchError> {
        let fetched = self.fetcher.get(discovery).await?;
        let doc: Discovery = serde_json::from_slice(&fetched.body)
            .map_err(|_| FetchError::Document("discovery document is not JSON"))?;
        if doc.issuer.as_deref() != Some(issuer) {
            return Err(FetchError::Document(
                "discovered issuer does not match the configured issuer",
            ));
        }
        let jwks_uri = doc
            .jwks_uri
            .ok_or(FetchError::Document("discovery document has no jwks_uri"))?;
        let uri = parse_url(&jwks_uri)
            .map_err(|_| FetchError::Document("discovered jwks_uri is not an http(s) URL"))?;
        if discovery.scheme_str() == Some("https") && uri.scheme_str() != Some("https") {
            return Err(FetchError::Document(
                "discovered jwks_uri downgrades https to http",
            ));
        }
        Ok(uri)
    }
}
