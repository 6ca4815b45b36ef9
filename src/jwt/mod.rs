//! [`JwtAuthenticator`]: JSON Web Tokens (RFC 7519) verified over
//! jsonwebtoken, with algorithms pinned per key, strict claim types and
//! cheap structural checks before any cryptography.

mod algorithm;
mod claims;
mod compact;
#[cfg(feature = "jwt")]
mod fast;
#[cfg(feature = "jwks")]
mod fetch;
#[cfg(feature = "jwks")]
mod jwks;
mod keys;

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::request::Parts;
use serde::de::DeserializeOwned;

pub use algorithm::JwtAlgorithm;
#[cfg(feature = "jwks")]
pub use jwks::{RemoteJwks, RemoteJwksBuilder};
pub use keys::JwtKey;

use self::claims::ClaimNames;
use self::compact::{Compact, Refusal};
use self::keys::{JwkRules, KeySet, signature_len_fits};
use crate::authenticator::Authenticator;
use crate::credential::Credential;
use crate::error::{AuthError, ConfigError};
use crate::identity::{AuthMethod, Identity};

/// The largest clock-skew leeway [`JwtAuthenticator::leeway`] accepts:
/// five minutes. Larger values are clamped to it.
pub const MAX_LEEWAY: Duration = Duration::from_secs(300);

/// The default leeway: 30 seconds.
const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);

/// The default cap on a token, in bytes: the same as the layer's default
/// credential cap.
const DEFAULT_MAX_TOKEN: usize = 8 * 1024;

/// Makes sure jsonwebtoken has a crypto backend: the one this crate's
/// features chose (aws-lc-rs when `jwt` is on). When the application has
/// already installed a provider, it is kept.
fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        #[cfg(feature = "jwt")]
        let provider = &jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER;
        #[cfg(not(feature = "jwt"))]
        let provider = &jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER;
        let installed = provider.install_default();
        // Keys parsed once for aws-lc-rs are used only when jsonwebtoken's
        // provider is aws-lc-rs' own: the answers are then the same.
        #[cfg(feature = "jwt")]
        fast::set_enabled(match installed {
            Ok(()) => true,
            Err(existing) => std::ptr::eq(existing, provider),
        });
        #[cfg(not(feature = "jwt"))]
        let _ = installed;
    });
}

#[derive(Clone)]
enum KeySource {
    Static(Arc<KeySet>),
    #[cfg(feature = "jwks")]
    Remote(RemoteJwks),
}

#[derive(Clone)]
struct Config {
    keys: KeySource,
    validate_exp: bool,
    require_exp: bool,
    leeway: i64,
    audiences: Vec<Box<str>>,
    issuers: Vec<Box<str>>,
    typ: Option<Box<str>>,
    required_scopes: Vec<Box<str>>,
    subject_claim: Box<str>,
    scope_claims: Vec<Box<str>>,
    required_claims: Vec<Box<str>>,
    names: ClaimNames,
    max_token_bytes: usize,
    decline_non_jws: bool,
}

/// Verifies JSON Web Tokens (compact JWS, RFC 7515/7519) and turns them
/// into an [`Identity`] carrying the typed claims `C`.
///
/// ```no_run
/// use axum::{Router, extract::ws::WebSocketUpgrade, response::Response, routing::get};
/// use serde::Deserialize;
/// use tower_ws_auth::{Identity, JwtAuthenticator, WsAuthLayer};
///
/// #[derive(Deserialize)]
/// struct Claims {
///     tenant: String,
/// }
///
/// async fn ws_handler(ws: WebSocketUpgrade, identity: Identity) -> Response {
///     let tenant = identity.claims::<Claims>().map(|c| c.tenant.clone());
///     ws.on_upgrade(move |_socket| async move { println!("{} of {tenant:?}", identity.subject()) })
/// }
///
/// # fn main() -> Result<(), tower_ws_auth::ConfigError> {
/// let secret = std::env::var("JWT_SECRET").unwrap_or_default();
/// let auth = JwtAuthenticator::<Claims>::hs256(secret)?
///     .require_exp()
///     .issuer(["https://auth.example.com"])
///     .audience(["chat"])
///     .required_scope("chat:write");
/// let app: Router = Router::new()
///     .route("/ws", get(ws_handler))
///     .layer(WsAuthLayer::new(auth).bearer_header().subprotocol_token());
/// # Ok(())
/// # }
/// ```
///
/// # What is checked, in order
///
/// 1. **Shape**, before anything is decoded: exactly three dot-separated
///    segments (otherwise [`AuthError::NotApplicable`], so that
///    `jwt.or(api_keys)` can serve opaque keys on the same carrier; see
///    [`decline_non_jws`](Self::decline_non_jws)), the size cap
///    ([`max_token_bytes`](Self::max_token_bytes), default 8 KiB), the
///    base64url alphabet, caps on the header (2 KiB) and signature.
/// 2. **Header**: a JSON object with a supported `alg` (`none` is refused
///    in any spelling), a string `kid` of at most 256 bytes, no `crit`,
///    no duplicate `alg`/`kid`/`typ`. Key material in the header (`jwk`,
///    `jku`, `x5u`, `x5c`, `x5t`) is never read, let alone fetched. `typ`
///    when [`typ`](Self::typ) is set.
/// 3. **Key**: the `kid` selects among configured keys; each key is pinned
///    to one algorithm and a token whose `alg` differs is refused (so an
///    HS256 token "signed" with an RSA public key never meets an HMAC
///    check). A token without `kid` uses the only key of its algorithm; a
///    key configured without `kid` also serves tokens whose `kid` names no
///    key, when it is the only kid-less key of their algorithm. Several
///    candidates are never tried in turn.
/// 4. **Signature**, once, with a key parsed when the authenticator was
///    built; the signature length is checked against the key first.
/// 5. **Claims**, strictly typed: `exp` (required unless
///    [`allow_missing_exp`](Self::allow_missing_exp)), `nbf`, `iat` must be
///    JSON numbers; `iss` and `sub` strings; `aud` a string or an array of
///    strings; a claim of the wrong type, `null` included, is a failure,
///    never "absent". Duplicate names among these claims are refused.
///    `exp`/`nbf` are compared with a bounded [`leeway`](Self::leeway).
///    `aud` must contain a configured [`audience`](Self::audience) (a
///    token with `aud` and no audience configured is refused, RFC 7519
///    section 4.1.3); `iss` must be a configured [`issuer`](Self::issuer)
///    when any is. The subject (`sub`, see
///    [`subject_claim`](Self::subject_claim)) must be a non-empty string.
/// 6. **Typed claims**: the payload is deserialized into `C`; failure is
///    invalid.
/// 7. **Authorization**: [`required_scope`](Self::required_scope) against
///    the scopes read from `scope` (space-separated) or `scp` (array), see
///    [`scope_claims`](Self::scope_claims); a missing one is
///    [`AuthError::InsufficientScope`] (403).
///
/// Every refusal in 1 to 6 is [`AuthError::Invalid`] (401
/// `invalid_token`), with a reason for logs that never contains the token.
///
/// The [`Identity`] has the subject, [`AuthMethod::Jwt`], `exp` as
/// [`expires_at`](Identity::expires_at), `jti` as
/// [`token_id`](Identity::token_id), the scopes, and `C` as
/// [`claims`](Identity::claims).
pub struct JwtAuthenticator<C = serde_json::Value> {
    config: Arc<Config>,
    _claims: PhantomData<fn() -> C>,
}

impl<C> Clone for JwtAuthenticator<C> {
    fn clone(&self) -> Self {
        Self {
            config: self.config.clone(),
            _claims: PhantomData,
        }
    }
}

impl<C> fmt::Debug for JwtAuthenticator<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &*self.config;
        let mut d = f.debug_struct("JwtAuthenticator");
        match &c.keys {
            KeySource::Static(set) => d.field("keys", set),
            #[cfg(feature = "jwks")]
            KeySource::Remote(remote) => d.field("keys", remote),
        };
        d.field("claims", &std::any::type_name::<C>())
            .field("validate_exp", &c.validate_exp)
            .field("require_exp", &c.require_exp)
            .field("leeway_secs", &c.leeway)
            .field("audiences", &c.audiences)
            .field("issuers", &c.issuers)
            .field("typ", &c.typ)
            .field("required_scopes", &c.required_scopes)
            .field("subject_claim", &c.subject_claim)
            .field("scope_claims", &c.scope_claims)
            .field("required_claims", &c.required_claims)
            .field("max_token_bytes", &c.max_token_bytes)
            .field("decline_non_jws", &c.decline_non_jws)
            .finish()
    }
}

fn normalize_typ(typ: &str) -> String {
    let lower = typ.to_ascii_lowercase();
    match lower.strip_prefix("application/") {
        Some(rest) => rest.to_owned(),
        None => lower,
    }
}

/// `normalize_typ(typ) == expected` for a normalised `expected`, without
/// allocating.
fn typ_is(typ: &str, expected: &str) -> bool {
    let rest = match typ.get(..12) {
        Some(prefix) if prefix.eq_ignore_ascii_case("application/") => typ.get(12..).unwrap_or(""),
        _ => typ,
    };
    rest.eq_ignore_ascii_case(expected)
}

fn boxed<I>(items: I) -> Vec<Box<str>>
where
    I: IntoIterator,
    I::Item: Into<String>,
{
    items
        .into_iter()
        .map(|s| s.into().into_boxed_str())
        .collect()
}

impl<C> JwtAuthenticator<C> {
    fn from_source(keys: KeySource) -> Self {
        install_crypto_provider();
        let subject_claim: Box<str> = "sub".into();
        let scope_claims: Vec<Box<str>> = vec!["scope".into(), "scp".into()];
        let names = ClaimNames::new(&subject_claim, &scope_claims, &[]);
        Self {
            config: Arc::new(Config {
                keys,
                validate_exp: true,
                require_exp: true,
                leeway: DEFAULT_LEEWAY.as_secs() as i64,
                audiences: Vec::new(),
                issuers: Vec::new(),
                typ: None,
                required_scopes: Vec::new(),
                subject_claim,
                scope_claims,
                required_claims: Vec::new(),
                names,
                max_token_bytes: DEFAULT_MAX_TOKEN,
                decline_non_jws: true,
            }),
            _claims: PhantomData,
        }
    }

    /// Verifies tokens with one key.
    pub fn new(key: JwtKey) -> Result<Self, ConfigError> {
        Self::with_keys([key])
    }

    /// Verifies tokens with a set of keys, selected by `kid` (and pinned
    /// to their algorithms). At least one key; no two with the same `kid`
    /// and algorithm.
    ///
    /// ```
    /// use tower_ws_auth::{JwtAlgorithm, JwtAuthenticator, JwtKey};
    ///
    /// # fn main() -> Result<(), tower_ws_auth::ConfigError> {
    /// let auth = JwtAuthenticator::<serde_json::Value>::with_keys([
    ///     JwtKey::hmac(JwtAlgorithm::HS256, b"this-is-the-2024-secret-of-32-bytes")?.with_kid("2024"),
    ///     JwtKey::hmac(JwtAlgorithm::HS256, b"this-is-the-2025-secret-of-32-bytes")?.with_kid("2025"),
    /// ])?;
    /// # let _ = auth;
    /// # Ok(())
    /// # }
    /// ```
    pub fn with_keys<I>(keys: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = JwtKey>,
    {
        let set = KeySet::from_configured(keys.into_iter().collect())?;
        Ok(Self::from_source(KeySource::Static(Arc::new(set))))
    }

    /// HS256 with a shared secret of at least 32 bytes.
    pub fn hs256(secret: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        Self::new(JwtKey::hmac(JwtAlgorithm::HS256, secret)?)
    }

    /// HS384 with a shared secret of at least 48 bytes.
    pub fn hs384(secret: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        Self::new(JwtKey::hmac(JwtAlgorithm::HS384, secret)?)
    }

    /// HS512 with a shared secret of at least 64 bytes.
    pub fn hs512(secret: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        Self::new(JwtKey::hmac(JwtAlgorithm::HS512, secret)?)
    }

    /// One public key in PEM form, pinned to `alg`; see [`JwtKey::from_pem`].
    pub fn from_pem(alg: JwtAlgorithm, pem: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        Self::new(JwtKey::from_pem(alg, pem)?)
    }

    /// The keys of a local JWK Set document (`{"keys": [...]}`), read with
    /// the rules of [`JwtKey::from_jwk`]; keys that are not usable for
    /// signatures are skipped. At least one usable key is needed.
    pub fn from_jwk_set_json(json: &str) -> Result<Self, ConfigError> {
        let (keys, _skipped) = keys::parse_jwk_set(json.as_bytes(), &JwkRules::STATIC, 1024)
            .map_err(|reason| ConfigError::InvalidKey { reason })?;
        Self::with_keys(keys)
    }

    /// Verifies tokens with the keys of a remote JWK Set at `url`, with the
    /// default cache and refresh settings of [`RemoteJwks`].
    #[cfg(feature = "jwks")]
    #[cfg_attr(docsrs, doc(cfg(feature = "jwks")))]
    pub fn from_jwks(url: &str) -> Result<Self, ConfigError> {
        Ok(Self::from_remote_jwks(RemoteJwks::builder(url).build()?))
    }

    /// Verifies tokens from the OpenID Connect provider `issuer`: its keys
    /// are found through `{issuer}/.well-known/openid-configuration`, whose
    /// `issuer` must equal `issuer` exactly, and tokens must carry
    /// `"iss": issuer`.
    #[cfg(feature = "jwks")]
    #[cfg_attr(docsrs, doc(cfg(feature = "jwks")))]
    pub fn from_oidc_issuer(issuer: &str) -> Result<Self, ConfigError> {
        Ok(Self::from_remote_jwks(
            RemoteJwks::discover(issuer).build()?,
        ))
    }

    /// Verifies tokens with the keys of `jwks`. When `jwks` was built with
    /// [`RemoteJwks::discover`], tokens must carry the discovered issuer as
    /// `iss` (replace it with [`issuer`](Self::issuer) if needed).
    #[cfg(feature = "jwks")]
    #[cfg_attr(docsrs, doc(cfg(feature = "jwks")))]
    pub fn from_remote_jwks(jwks: RemoteJwks) -> Self {
        let issuer = jwks.issuer().map(str::to_owned);
        let this = Self::from_source(KeySource::Remote(jwks));
        match issuer {
            Some(issuer) => this.issuer([issuer]),
            None => this,
        }
    }

    fn edit(mut self, f: impl FnOnce(&mut Config)) -> Self {
        f(Arc::make_mut(&mut self.config));
        self
    }

    fn rebuild_names(config: &mut Config) {
        config.names = ClaimNames::new(
            &config.subject_claim,
            &config.scope_claims,
            &config.required_claims,
        );
    }

    /// Requires `exp` and checks it. This is the default: connection tokens
    /// should expire.
    #[must_use]
    pub fn require_exp(self) -> Self {
        self.edit(|c| {
            c.require_exp = true;
            c.validate_exp = true;
        })
    }

    /// Accepts tokens without `exp`; an `exp` that is present is still
    /// checked.
    #[must_use]
    pub fn allow_missing_exp(self) -> Self {
        self.edit(|c| c.require_exp = false)
    }

    /// With `false`, `exp` is neither required nor compared with the clock
    /// (its type is still checked). Only for fixed test vectors or tokens
    /// whose lifetime something else enforces: an expired token is then
    /// accepted. `true` restores the default.
    #[must_use]
    pub fn validate_exp(self, validate: bool) -> Self {
        self.edit(|c| {
            c.validate_exp = validate;
            c.require_exp = validate;
        })
    }

    /// Accepts tokens whose `aud` contains one of `audiences` (replacing
    /// any set before). Tokens without `aud` are then refused. Without this
    /// setting, tokens with an `aud` are refused.
    #[must_use]
    pub fn audience<I>(self, audiences: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        self.edit(|c| c.audiences = boxed(audiences))
    }

    /// Accepts tokens whose `iss` is one of `issuers` (replacing any set
    /// before); tokens without `iss` are then refused.
    #[must_use]
    pub fn issuer<I>(self, issuers: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        self.edit(|c| c.issuers = boxed(issuers))
    }

    /// The clock-skew allowance for `exp` and `nbf` (default 30 seconds),
    /// clamped to [`MAX_LEEWAY`] (five minutes). Whole seconds; a fraction
    /// is rounded up.
    #[must_use]
    pub fn leeway(self, leeway: Duration) -> Self {
        let leeway = leeway.min(MAX_LEEWAY);
        let secs = leeway.as_secs() + u64::from(leeway.subsec_nanos() > 0);
        self.edit(|c| c.leeway = i64::try_from(secs).unwrap_or(300))
    }

    /// Claims that must be present and not `null` (replacing any set
    /// before), in addition to `exp` and the subject.
    #[must_use]
    pub fn required_claims<I>(self, claims: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        self.edit(|c| {
            c.required_claims = boxed(claims);
            Self::rebuild_names(c);
        })
    }

    /// Requires the header's `typ` to be `typ`, compared case-insensitively
    /// and with an `application/` prefix ignored (RFC 7515 section 4.1.9):
    /// `.typ("at+jwt")` accepts `at+jwt` and `application/at+JWT` (RFC
    /// 9068 access tokens), and refuses tokens without `typ`.
    #[must_use]
    pub fn typ(self, typ: &str) -> Self {
        let typ = normalize_typ(typ);
        self.edit(|c| c.typ = Some(typ.into_boxed_str()))
    }

    /// Requires the scope or role `scope` (exact, case-sensitive); call
    /// again to require several. A valid token without it is answered with
    /// 403 `insufficient_scope`.
    #[must_use]
    pub fn required_scope(self, scope: impl Into<String>) -> Self {
        let scope = scope.into().into_boxed_str();
        self.edit(|c| c.required_scopes.push(scope))
    }

    /// The claims scopes are read from (default `scope` and `scp`),
    /// replacing the defaults. Each may hold a space-separated string (as
    /// `scope`, RFC 8693) or an array of strings (as `scp` or `roles`);
    /// any other type is invalid.
    ///
    /// ```
    /// use tower_ws_auth::JwtAuthenticator;
    ///
    /// # fn main() -> Result<(), tower_ws_auth::ConfigError> {
    /// let auth = JwtAuthenticator::<serde_json::Value>::hs256(b"0123456789abcdef0123456789abcdef")?
    ///     .scope_claims(["roles"])
    ///     .required_scope("admin");
    /// # let _ = auth;
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn scope_claims<I>(self, claims: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        self.edit(|c| {
            c.scope_claims = boxed(claims);
            Self::rebuild_names(c);
        })
    }

    /// The claim the subject is read from (default `sub`), such as
    /// `client_id` or `oid`. It must be a non-empty string.
    #[must_use]
    pub fn subject_claim(self, claim: impl Into<String>) -> Self {
        let claim = claim.into().into_boxed_str();
        self.edit(|c| {
            c.subject_claim = claim;
            Self::rebuild_names(c);
        })
    }

    /// Caps the token at `bytes` (default 8 KiB, as the layer's credential
    /// cap); larger tokens are invalid before anything is decoded. Raise the
    /// layer's [`max_credential_bytes`](crate::WsAuthLayer::max_credential_bytes)
    /// too when raising this.
    #[must_use]
    pub fn max_token_bytes(self, bytes: usize) -> Self {
        self.edit(|c| c.max_token_bytes = bytes)
    }

    /// What to answer for a credential that is not shaped like a compact
    /// JWS (not exactly three dot-separated segments: an opaque API key, a
    /// five-segment JWE, a JSON serialization).
    ///
    /// `true` (the default): [`AuthError::NotApplicable`], so that
    /// `jwt.or(api_keys)` hands it to the next authenticator; alone, the
    /// layer answers it with 401 `invalid_token` like any other refusal.
    /// `false`: [`AuthError::Invalid`], final even inside
    /// [`or`](crate::Authenticator::or).
    #[must_use]
    pub fn decline_non_jws(self, decline: bool) -> Self {
        self.edit(|c| c.decline_non_jws = decline)
    }

    /// The algorithms tokens may use: those of the configured keys, or the
    /// accepted algorithms of a remote JWK Set.
    pub fn algorithms(&self) -> Vec<JwtAlgorithm> {
        match &self.config.keys {
            KeySource::Static(set) => set.algorithms().iter().collect(),
            #[cfg(feature = "jwks")]
            KeySource::Remote(remote) => remote.algorithms().iter().collect(),
        }
    }
}

impl<C> JwtAuthenticator<C>
where
    C: DeserializeOwned + Send + Sync + 'static,
{
    /// Verifies `token` as the layer would and returns its identity. Use it
    /// for tokens that arrive another way, such as a first message or an
    /// in-band refresh on an open socket.
    pub async fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let config = &*self.config;
        let compact = match compact::parse(token, config.max_token_bytes) {
            Ok(compact) => compact,
            Err(Refusal::NotJws(_)) if config.decline_non_jws => {
                return Err(AuthError::NotApplicable);
            }
            Err(refusal) => return Err(AuthError::invalid(refusal.reason())),
        };
        if let Some(expected) = &config.typ {
            match &compact.header.typ {
                Some(typ) if typ_is(typ, expected) => {}
                Some(_) => return Err(AuthError::invalid("typ not accepted")),
                None => return Err(AuthError::invalid("typ missing")),
            }
        }
        let alg = compact.header.alg;
        let kid = compact.header.kid.as_deref();
        match &config.keys {
            KeySource::Static(set) => {
                if !set.algorithms().contains(alg) {
                    return Err(AuthError::invalid("alg not accepted"));
                }
                let key = set
                    .select(alg, kid)
                    .map_err(|miss| AuthError::invalid(miss.reason()))?;
                self.finish(&compact, key)
            }
            #[cfg(feature = "jwks")]
            KeySource::Remote(remote) => {
                if !remote.algorithms().contains(alg) {
                    return Err(AuthError::invalid("alg not accepted"));
                }
                let set = remote.key_set_for(alg, kid).await?;
                let key = set
                    .select(alg, kid)
                    .map_err(|miss| AuthError::invalid(miss.reason()))?;
                self.finish(&compact, key)
            }
        }
    }

    fn finish(&self, compact: &Compact<'_>, key: &JwtKey) -> Result<Identity, AuthError> {
        check_signature(compact, key)?;
        self.validate_claims(compact)
    }

    fn validate_claims(&self, compact: &Compact<'_>) -> Result<Identity, AuthError> {
        let config = &*self.config;
        // Decoded on the stack when small (most connection tokens are), on
        // the heap otherwise; the same engine either way.
        let mut small = [0u8; 512];
        let heap;
        let invalid_payload = |_| AuthError::invalid("payload is not canonical base64url");
        let payload: &[u8] = if base64::decoded_len_estimate(compact.payload.len()) <= small.len() {
            let len = URL_SAFE_NO_PAD
                .decode_slice(compact.payload, &mut small)
                .map_err(|_| AuthError::invalid("payload is not canonical base64url"))?;
            small.get(..len).unwrap_or_default()
        } else {
            heap = URL_SAFE_NO_PAD
                .decode(compact.payload)
                .map_err(invalid_payload)?;
            &heap
        };
        let claims = claims::read(payload, &config.names).map_err(AuthError::invalid)?;
        let names = &config.names;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));

        let exp = claims
            .get(names.exp)
            .map(|v| claims::numeric_date(v, false))
            .transpose()
            .map_err(|()| AuthError::invalid("exp is not a NumericDate"))?;
        if config.validate_exp {
            match exp {
                Some(exp) if now.saturating_sub(config.leeway) >= exp => {
                    return Err(AuthError::invalid("token expired"));
                }
                None if config.require_exp => return Err(AuthError::invalid("exp missing")),
                _ => {}
            }
        }
        if let Some(nbf) = claims.get(names.nbf) {
            let nbf = claims::numeric_date(nbf, true)
                .map_err(|()| AuthError::invalid("nbf is not a NumericDate"))?;
            if nbf > now.saturating_add(config.leeway) {
                return Err(AuthError::invalid("token not yet valid"));
            }
        }
        if let Some(iat) = claims.get(names.iat) {
            claims::numeric_date(iat, false)
                .map_err(|()| AuthError::invalid("iat is not a NumericDate"))?;
        }
        let iss = claims
            .get(names.iss)
            .map(claims::string)
            .transpose()
            .map_err(|()| AuthError::invalid("iss is not a string"))?;
        if !config.issuers.is_empty()
            && !iss.is_some_and(|iss| config.issuers.iter().any(|i| **i == *iss))
        {
            return Err(AuthError::invalid("issuer not accepted"));
        }
        let aud = claims
            .get(names.aud)
            .map(claims::audiences)
            .transpose()
            .map_err(|()| AuthError::invalid("aud is not a string or an array of strings"))?;
        match aud {
            Some(aud)
                if !aud
                    .iter()
                    .any(|a| config.audiences.iter().any(|want| **want == **a)) =>
            {
                return Err(AuthError::invalid("audience not accepted"));
            }
            None if !config.audiences.is_empty() => {
                return Err(AuthError::invalid("aud missing"));
            }
            _ => {}
        }
        let subject = match claims.get(names.subject) {
            Some(value) => {
                claims::string(value).map_err(|()| AuthError::invalid("subject is not a string"))?
            }
            None => return Err(AuthError::invalid("subject missing")),
        };
        if subject.is_empty() {
            return Err(AuthError::invalid("subject is empty"));
        }
        let jti = claims
            .get(names.jti)
            .map(claims::string)
            .transpose()
            .map_err(|()| AuthError::invalid("jti is not a string"))?;
        for &index in &names.required {
            if claims.get(index).is_none_or(claims::Claim::is_null) {
                return Err(AuthError::invalid("required claim missing"));
            }
        }
        let mut scopes = Vec::new();
        for &index in &names.scopes {
            if let Some(value) = claims.get(index) {
                claims::scopes(value, &mut scopes)
                    .map_err(|()| AuthError::invalid("scope claim of the wrong type"))?;
            }
        }
        let typed: C = serde_json::from_slice(payload)
            .map_err(|_| AuthError::invalid("claims do not fit the claims type"))?;

        if !config
            .required_scopes
            .iter()
            .all(|want| scopes.contains(&&**want))
        {
            let all: Vec<&str> = config.required_scopes.iter().map(|s| &**s).collect();
            return Err(AuthError::insufficient_scope(all.join(" ")));
        }

        let mut builder = Identity::builder(subject, AuthMethod::Jwt)
            .scopes(scopes)
            .claims(typed);
        if let Some(at) = exp
            .and_then(|e| u64::try_from(e).ok())
            .and_then(|e| UNIX_EPOCH.checked_add(Duration::from_secs(e)))
        {
            builder = builder.expires_at(at);
        }
        if let Some(jti) = jti {
            builder = builder.token_id(jti);
        }
        Ok(builder.build())
    }
}

/// Checks the signature of a pre-validated token with `key`: the length
/// first, then the cryptography, once.
fn check_signature(compact: &Compact<'_>, key: &JwtKey) -> Result<(), AuthError> {
    if key.alg != compact.header.alg {
        return Err(AuthError::invalid(keys::Miss::AlgMismatch.reason()));
    }
    if !signature_len_fits(key, compact.signature) {
        return Err(AuthError::invalid("signature length does not fit the key"));
    }
    #[cfg(feature = "jwt")]
    let fast = key
        .prepared
        .as_ref()
        .and_then(|prepared| prepared.verify(compact.signing_input.as_bytes(), compact.signature));
    #[cfg(not(feature = "jwt"))]
    let fast: Option<Result<bool, ()>> = None;
    let verified = match fast {
        Some(verified) => {
            verified.map_err(|()| AuthError::invalid("signature could not be checked"))?
        }
        None => jsonwebtoken::crypto::verify(
            compact.signature,
            compact.signing_input.as_bytes(),
            &key.key,
            key.alg.to_jsonwebtoken(),
        )
        .map_err(|_| AuthError::invalid("signature could not be checked"))?,
    };
    if verified {
        Ok(())
    } else {
        Err(AuthError::invalid("bad signature"))
    }
}

impl<C> Authenticator for JwtAuthenticator<C>
where
    C: DeserializeOwned + Send + Sync + 'static,
{
    async fn authenticate(
        &self,
        credential: &Credential,
        _request: &Parts,
    ) -> Result<Identity, AuthError> {
        self.verify(credential.expose_secret()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    include!("../../tests/fixtures/rfc_vectors.rs");
    // RFC 8037 appendix A.4 (the payload is text, not JWT claims).
    const RFC8037_JWS: &str = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg";

    /// The vectors have no `sub` and an `exp` of 2011: read the subject
    /// from `iss` and skip the clock.
    fn vector_auth(jwk: &str) -> JwtAuthenticator {
        JwtAuthenticator::<serde_json::Value>::new(JwtKey::from_jwk(jwk).unwrap())
            .unwrap()
            .subject_claim("iss")
            .validate_exp(false)
    }

    fn flip_last_char(token: &str) -> String {
        let mut t = token.to_owned();
        let last = t.pop().unwrap();
        t.push(if last == 'A' { 'Q' } else { 'A' });
        t
    }

    #[test]
    fn typ_is_normalize_typ() {
        let samples = [
            "JWT",
            "jwt",
            "at+jwt",
            "application/jwt",
            "APPLICATION/JWT",
            "Application/At+JWT",
            "application/",
            "application",
            "applicationjwt",
            "",
            "é/jwt",
            "applicatioé/jwt",
        ];
        for typ in samples {
            for expected in samples {
                let expected = normalize_typ(expected);
                assert_eq!(
                    typ_is(typ, &expected),
                    normalize_typ(typ) == expected,
                    "{typ:?} vs {expected:?}"
                );
            }
        }
    }

    #[tokio::test]
    async fn rfc7515_vectors_verify() {
        let a2 = format!("eyJhbGciOiJSUzI1NiJ9.{A_PAYLOAD}.{A2_SIG}");
        let a3 = format!("eyJhbGciOiJFUzI1NiJ9.{A_PAYLOAD}.{A3_SIG}");
        for (jwk, token) in [(A1_JWK, A1_JWS.to_owned()), (A2_JWK, a2), (A3_JWK, a3)] {
            let auth = vector_auth(jwk);
            let id = auth.verify(&token).await.unwrap();
            assert_eq!(id.subject(), "joe");
            assert_eq!(id.method(), AuthMethod::Jwt);
            assert_eq!(
                id.expires_at(),
                Some(UNIX_EPOCH + Duration::from_secs(1_300_819_380))
            );
            let claims = id.claims::<serde_json::Value>().unwrap();
            assert_eq!(claims["http://example.com/is_root"], json!(true));
            // One bit off and it fails.
            assert!(matches!(
                auth.verify(&flip_last_char(&token)).await,
                Err(AuthError::Invalid(_))
            ));
            // With the clock checked, the 2011 exp is expired.
            let strict = JwtAuthenticator::<serde_json::Value>::new(JwtKey::from_jwk(jwk).unwrap())
                .unwrap()
                .subject_claim("iss");
            assert!(matches!(
                strict.verify(&token).await,
                Err(AuthError::Invalid(r)) if r == "token expired"
            ));
        }
    }

    #[tokio::test]
    async fn rfc7515_unsecured_jws_is_refused() {
        for jwk in [A1_JWK, A2_JWK, A3_JWK, RFC8037_JWK] {
            assert!(matches!(
                vector_auth(jwk).verify(A5_UNSECURED).await,
                Err(AuthError::Invalid(r)) if r == "unsigned token"
            ));
        }
        // Even with a signature segment attached, alg none names no key.
        let signed_none = format!("{A5_UNSECURED}{A3_SIG}");
        assert!(matches!(
            vector_auth(A3_JWK).verify(&signed_none).await,
            Err(AuthError::Invalid(_))
        ));
    }

    #[test]
    fn rfc8037_signature_verifies() {
        install_crypto_provider();
        let key = JwtKey::from_jwk(RFC8037_JWK).unwrap();
        let compact = compact::parse(RFC8037_JWS, 8192).unwrap();
        assert_eq!(compact.header.alg, JwtAlgorithm::EdDSA);
        assert!(check_signature(&compact, &key).is_ok());
        let tampered = flip_last_char(RFC8037_JWS);
        let compact = compact::parse(&tampered, 8192).unwrap();
        assert!(check_signature(&compact, &key).is_err());
    }

    #[tokio::test]
    async fn rfc8037_token_passes_the_signature_but_not_the_claims() {
        // The A.4 payload is not a JSON object: refused after the
        // signature check, not before.
        assert!(matches!(
            vector_auth(RFC8037_JWK).verify(RFC8037_JWS).await,
            Err(AuthError::Invalid(r)) if r == "claims are not a JSON object"
        ));
    }

    #[tokio::test]
    async fn key_pinning_refuses_other_algorithms() {
        // The A.1 HMAC key is pinned to HS256: an HS512 token naming it is
        // refused before any cryptography.
        let auth = vector_auth(A1_JWK);
        let hs512 = format!("eyJhbGciOiJIUzUxMiJ9.{A_PAYLOAD}.{}", &A2_SIG[..86]);
        assert!(matches!(
            auth.verify(&hs512).await,
            Err(AuthError::Invalid(r)) if r == "alg not accepted"
        ));
        // An RSA key never verifies an HMAC token.
        let auth = vector_auth(A2_JWK);
        assert!(matches!(
            auth.verify(A1_JWS).await,
            Err(AuthError::Invalid(r)) if r == "alg not accepted"
        ));
    }

    // --- claims validation, with tokens signed here ---

    const SECRET: &[u8] = b"unit-test-secret-of-at-least-32-bytes!!";

    fn now() -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    fn sign(claims: serde_json::Value) -> String {
        sign_with_header(json!({"alg": "HS256", "typ": "JWT"}), claims)
    }

    fn sign_with_header(header: serde_json::Value, claims: serde_json::Value) -> String {
        use hmac_sign::hs256;
        let h = URL_SAFE_NO_PAD.encode(header.to_string());
        let p = URL_SAFE_NO_PAD.encode(claims.to_string());
        let input = format!("{h}.{p}");
        format!("{input}.{}", hs256(SECRET, input.as_bytes()))
    }

    /// HMAC-SHA256 through jsonwebtoken's signer, for raw headers.
    mod hmac_sign {
        use super::*;
        pub(super) fn hs256(secret: &[u8], input: &[u8]) -> String {
            install_crypto_provider();
            jsonwebtoken::crypto::sign(
                input,
                &jsonwebtoken::EncodingKey::from_secret(secret),
                jsonwebtoken::Algorithm::HS256,
            )
            .unwrap()
        }
    }

    fn auth() -> JwtAuthenticator {
        JwtAuthenticator::hs256(SECRET).unwrap()
    }

    async fn reason(auth: &JwtAuthenticator, token: &str) -> String {
        match auth.verify(token).await {
            Err(AuthError::Invalid(reason)) => reason.into_owned(),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn valid_token_becomes_an_identity() {
        #[derive(Deserialize, Debug, PartialEq)]
        struct Claims {
            sub: String,
            tenant: String,
        }
        let exp = now() + 600;
        let token = sign(json!({
            "sub": "alice", "exp": exp, "nbf": now() - 5, "iat": now(), "jti": "t-1",
            "scope": "chat:read chat:write", "tenant": "acme"
        }));
        let auth = JwtAuthenticator::<Claims>::hs256(SECRET).unwrap();
        let id = auth.verify(&token).await.unwrap();
        assert_eq!(id.subject(), "alice");
        assert_eq!(id.token_id(), Some("t-1"));
        assert_eq!(
            id.expires_at(),
            Some(UNIX_EPOCH + Duration::from_secs(exp as u64))
        );
        assert_eq!(id.scopes().collect::<Vec<_>>(), ["chat:read", "chat:write"]);
        assert_eq!(
            id.claims::<Claims>(),
            Some(&Claims {
                sub: "alice".into(),
                tenant: "acme".into()
            })
        );
        // A claims type the payload does not fit is invalid.
        #[derive(Deserialize)]
        #[allow(dead_code)]
        struct Strict {
            missing_field: u32,
        }
        let strict = JwtAuthenticator::<Strict>::hs256(SECRET).unwrap();
        assert!(
            matches!(strict.verify(&token).await, Err(AuthError::Invalid(r)) if r == "claims do not fit the claims type")
        );
    }

    #[tokio::test]
    async fn registered_claims_are_strict() {
        let a = auth();
        let n = now();
        let cases = [
            (json!({"sub": "a"}), "exp missing"),
            (
                json!({"sub": "a", "exp": "9999999999"}),
                "exp is not a NumericDate",
            ),
            (json!({"sub": "a", "exp": null}), "exp is not a NumericDate"),
            (json!({"sub": "a", "exp": true}), "exp is not a NumericDate"),
            (json!({"sub": "a", "exp": n - 31}), "token expired"),
            (
                json!({"sub": "a", "exp": n + 60, "nbf": true}),
                "nbf is not a NumericDate",
            ),
            (
                json!({"sub": "a", "exp": n + 60, "nbf": "0"}),
                "nbf is not a NumericDate",
            ),
            (
                json!({"sub": "a", "exp": n + 60, "nbf": n + 120}),
                "token not yet valid",
            ),
            (
                json!({"sub": "a", "exp": n + 60, "iat": "now"}),
                "iat is not a NumericDate",
            ),
            (
                json!({"sub": "a", "exp": n + 60, "iss": 1}),
                "iss is not a string",
            ),
            (
                json!({"sub": "a", "exp": n + 60, "aud": 1}),
                "aud is not a string or an array of strings",
            ),
            (
                json!({"sub": "a", "exp": n + 60, "aud": "x"}),
                "audience not accepted",
            ),
            (json!({"exp": n + 60}), "subject missing"),
            (json!({"sub": 42, "exp": n + 60}), "subject is not a string"),
            (json!({"sub": "", "exp": n + 60}), "subject is empty"),
            (
                json!({"sub": "a", "exp": n + 60, "jti": 5}),
                "jti is not a string",
            ),
            (
                json!({"sub": "a", "exp": n + 60, "scope": ["x", 1]}),
                "scope claim of the wrong type",
            ),
            (
                json!({"sub": "a", "exp": n + 60, "scp": {"x": 1}}),
                "scope claim of the wrong type",
            ),
        ];
        for (claims, want) in cases {
            assert_eq!(reason(&a, &sign(claims.clone())).await, want, "{claims}");
        }
        // Within the leeway.
        assert!(
            a.verify(&sign(json!({"sub": "a", "exp": n - 10})))
                .await
                .is_ok()
        );
        assert!(
            a.verify(&sign(json!({"sub": "a", "exp": n + 60, "nbf": n + 10})))
                .await
                .is_ok()
        );
        // Fractional dates are numbers too.
        assert!(
            a.verify(&sign(json!({"sub": "a", "exp": (n + 60) as f64 + 0.5})))
                .await
                .is_ok()
        );
        // A duplicate registered claim is refused, whatever the order.
        let h = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256"}"#);
        let p = URL_SAFE_NO_PAD.encode(format!(r#"{{"sub":"a","exp":{},"exp":1}}"#, n + 60));
        let input = format!("{h}.{p}");
        let dup = format!("{input}.{}", hmac_sign::hs256(SECRET, input.as_bytes()));
        assert_eq!(reason(&a, &dup).await, "duplicate claim");
    }

    #[tokio::test]
    async fn leeway_is_bounded() {
        let n = now();
        let token = sign(json!({"sub": "a", "exp": n - 200}));
        assert_eq!(reason(&auth(), &token).await, "token expired");
        assert!(
            auth()
                .leeway(Duration::from_secs(250))
                .verify(&token)
                .await
                .is_ok()
        );
        let clamped = auth().leeway(Duration::from_secs(3600));
        assert!(clamped.verify(&token).await.is_ok());
        let token = sign(json!({"sub": "a", "exp": n - 400}));
        assert_eq!(reason(&clamped, &token).await, "token expired");
        let zero = auth().leeway(Duration::ZERO);
        assert_eq!(
            reason(&zero, &sign(json!({"sub": "a", "exp": n}))).await,
            "token expired"
        );
    }

    #[tokio::test]
    async fn audience_issuer_typ_required_claims() {
        let n = now();
        let a = auth()
            .audience(["chat", "admin"])
            .issuer(["https://idp.example"])
            .typ("at+jwt")
            .required_claims(["tenant"]);
        let good = json!({"sub": "a", "exp": n + 60, "aud": ["other", "chat"], "iss": "https://idp.example", "tenant": "t"});
        let at = json!({"alg": "HS256", "typ": "application/AT+JWT"});
        assert!(
            a.verify(&sign_with_header(at.clone(), good.clone()))
                .await
                .is_ok()
        );
        let mut c = good.clone();
        c["aud"] = json!("nope");
        assert_eq!(
            reason(&a, &sign_with_header(at.clone(), c)).await,
            "audience not accepted"
        );
        let mut c = good.clone();
        c.as_object_mut().unwrap().remove("aud");
        assert_eq!(
            reason(&a, &sign_with_header(at.clone(), c)).await,
            "aud missing"
        );
        let mut c = good.clone();
        c["iss"] = json!("https://evil.example");
        assert_eq!(
            reason(&a, &sign_with_header(at.clone(), c)).await,
            "issuer not accepted"
        );
        let mut c = good.clone();
        c.as_object_mut().unwrap().remove("iss");
        assert_eq!(
            reason(&a, &sign_with_header(at.clone(), c)).await,
            "issuer not accepted"
        );
        let mut c = good.clone();
        c["tenant"] = json!(null);
        assert_eq!(
            reason(&a, &sign_with_header(at.clone(), c)).await,
            "required claim missing"
        );
        assert_eq!(reason(&a, &sign(good.clone())).await, "typ not accepted");
        assert_eq!(
            reason(&a, &sign_with_header(json!({"alg": "HS256"}), good.clone())).await,
            "typ missing"
        );
    }

    #[tokio::test]
    async fn scopes_and_authorization() {
        let n = now();
        let a = auth().required_scope("chat:write");
        let ok = sign(json!({"sub": "a", "exp": n + 60, "scope": "chat:read chat:write"}));
        assert!(a.verify(&ok).await.is_ok());
        let scp = sign(json!({"sub": "a", "exp": n + 60, "scp": ["chat:write"]}));
        assert!(a.verify(&scp).await.is_ok());
        let short = sign(json!({"sub": "a", "exp": n + 60, "scope": "chat:read"}));
        match a.verify(&short).await {
            Err(AuthError::InsufficientScope { required }) => {
                assert_eq!(required.as_deref(), Some("chat:write"));
            }
            other => panic!("{other:?}"),
        }
        let roles = auth().scope_claims(["roles"]).required_scope("admin");
        let token = sign(json!({"sub": "a", "exp": n + 60, "roles": ["admin"], "scope": 5}));
        let id = roles.verify(&token).await.unwrap();
        assert_eq!(id.scopes().collect::<Vec<_>>(), ["admin"]);
        let token = sign(json!({"sub": "a", "exp": n + 60, "roles": "admin"}));
        assert!(roles.verify(&token).await.is_ok());
        let token = sign(json!({"sub": "a", "exp": n + 60, "scope": "admin"}));
        assert!(matches!(
            roles.verify(&token).await,
            Err(AuthError::InsufficientScope { .. })
        ));
    }

    #[tokio::test]
    async fn exp_switches() {
        let n = now();
        let no_exp = sign(json!({"sub": "a"}));
        assert_eq!(reason(&auth(), &no_exp).await, "exp missing");
        let lax = auth().allow_missing_exp();
        assert!(lax.verify(&no_exp).await.is_ok());
        let expired = sign(json!({"sub": "a", "exp": n - 3600}));
        assert_eq!(reason(&lax, &expired).await, "token expired");
        assert_eq!(
            reason(&lax.clone().require_exp(), &no_exp).await,
            "exp missing"
        );
        let off = auth().validate_exp(false);
        assert!(off.verify(&expired).await.is_ok());
        let wrong_type = sign(json!({"sub": "a", "exp": "x"}));
        assert_eq!(reason(&off, &wrong_type).await, "exp is not a NumericDate");
    }

    #[tokio::test]
    async fn non_jws_credentials() {
        for opaque in ["sk_live_abc", "a.b", "a.b.c.d.e", r#"{"payload":"e30"}"#] {
            assert!(matches!(
                auth().verify(opaque).await,
                Err(AuthError::NotApplicable)
            ));
            assert!(matches!(
                auth().decline_non_jws(false).verify(opaque).await,
                Err(AuthError::Invalid(_))
            ));
        }
        // Three segments are a JWS: broken ones are invalid, never declined.
        assert!(matches!(
            auth().verify("a.b.c").await,
            Err(AuthError::Invalid(_))
        ));
    }

    #[tokio::test]
    async fn token_cap() {
        let n = now();
        let big = sign(json!({"sub": "a", "exp": n + 60, "pad": "x".repeat(9000)}));
        assert_eq!(reason(&auth(), &big).await, "token over the size cap");
        assert!(auth().max_token_bytes(64 * 1024).verify(&big).await.is_ok());
    }

    #[test]
    fn debug_hides_secrets() {
        let a = auth();
        let shown = format!("{a:?}");
        assert!(!shown.contains("unit-test-secret"), "{shown}");
        assert!(shown.contains("HS256"), "{shown}");
    }
}
