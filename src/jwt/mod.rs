//! [`JwtAuthenticator`]: JSON Web Tokens (RFC 7519) verified by
//! jsonwebtoken, with this crate's policy in front of it (shape, header and
//! key selection, with the algorithm pinned per key) and around it (strict
//! claim types, bounded leeway and lifetime, scopes).
//!
#![doc = include_str!("../../docs/jwt.md")]

mod algorithm;
mod claims;
mod compact;
#[cfg(feature = "jwks")]
mod jwks;
mod keys;

use std::fmt;
use std::marker::PhantomData;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::request::Parts;
use jsonwebtoken::Validation;
use jsonwebtoken::errors::ErrorKind;
use serde::de::DeserializeOwned;

pub use jsonwebtoken::Algorithm;
#[cfg(feature = "jwks")]
pub use jwks::{RemoteJwks, RemoteJwksBuilder};
pub use keys::JwtKey;

use self::algorithm::AlgSet;
use self::claims::{Claim, ClaimNames};
use self::compact::Refusal;
use self::keys::{JwkRules, KeySet};
use crate::authenticator::Authenticator;
use crate::credential::Credential;
use crate::error::{AuthError, ConfigError};
use crate::identity::{AuthMethod, Identity};

/// The largest clock-skew leeway [`JwtAuthenticator::leeway`] accepts:
/// five minutes. A larger one is a [`ConfigError`].
pub const MAX_LEEWAY: Duration = Duration::from_secs(300);

/// The default leeway: 30 seconds.
const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);

/// The default [`JwtAuthenticator::max_lifetime`]: 24 hours.
const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// The default cap on a token, in bytes: the same as the layer's default
/// credential cap.
const DEFAULT_MAX_TOKEN: usize = 8 * 1024;

/// See "Crypto backend" in `docs/jwt.md`: only with both backends compiled in.
fn install_crypto_provider() {
    #[cfg(all(feature = "jwt", feature = "jwt-rust-crypto"))]
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
}

#[derive(Clone, Debug)]
enum KeySource {
    Static(Arc<KeySet>),
    #[cfg(feature = "jwks")]
    Remote(RemoteJwks),
}

impl KeySource {
    fn algorithms(&self) -> AlgSet {
        match self {
            Self::Static(set) => set.algorithms(),
            #[cfg(feature = "jwks")]
            Self::Remote(remote) => remote.algorithms(),
        }
    }
}

#[derive(Clone, Debug)]
struct Config {
    keys: KeySource,
    validate_exp: bool,
    require_exp: bool,
    leeway: u64,
    max_lifetime: Duration,
    audiences: Vec<Box<str>>,
    issuers: Vec<Box<str>>,
    typ: Option<Box<str>>,
    required_scopes: Vec<Box<str>>,
    subject_claim: Box<str>,
    scope_claims: Vec<Box<str>>,
    required_claims: Vec<Box<str>>,
    names: ClaimNames,
    /// jsonwebtoken's checks for each algorithm of [`algorithm::ALL`]
    /// (`algorithms` is exactly that one), rebuilt by every setter.
    validations: Vec<Validation>,
    max_token_bytes: usize,
    decline_non_jws: bool,
}

impl Config {
    /// What jsonwebtoken checks, for a key pinned to `alg`: the signature,
    /// `exp` (no leeway: see [`JwtAuthenticator::leeway`]), `nbf` (on by
    /// default, with the leeway), `iss` and `aud` as configured, and the
    /// presence of `exp`, `iss`, `aud` where they are required.
    fn validation(&self, alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        v.leeway = self.leeway;
        // jsonwebtoken refuses `exp - this < now - leeway`: with this equal
        // to the leeway, `exp < now`, so the leeway only widens `nbf`.
        v.reject_tokens_expiring_in_less_than = self.leeway;
        v.validate_exp = self.validate_exp;
        v.validate_nbf = true;
        v.required_spec_claims.clear();
        if self.require_exp {
            v.required_spec_claims.insert("exp".into());
        }
        if !self.issuers.is_empty() {
            v.set_issuer(&self.issuers);
            v.required_spec_claims.insert("iss".into());
        }
        if !self.audiences.is_empty() {
            v.set_audience(&self.audiences);
            v.required_spec_claims.insert("aud".into());
        }
        v
    }

    fn rebuild(&mut self) {
        self.names = ClaimNames::new(
            &self.subject_claim,
            &self.scope_claims,
            &self.required_claims,
        );
        self.validations = algorithm::ALL
            .iter()
            .map(|&alg| self.validation(alg))
            .collect();
    }
}

/// Verifies JSON Web Tokens (compact JWS, RFC 7515/7519) and turns them
/// into an [`Identity`] carrying the typed claims `C`; the
/// [module docs](self) are the guide.
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
        f.debug_struct("JwtAuthenticator")
            .field("claims", &std::any::type_name::<C>())
            .field("config", &self.config)
            .finish()
    }
}

/// `typ` without an `application/` prefix, compared case-insensitively
/// (RFC 7515 section 4.1.9).
fn strip_application(typ: &str) -> &str {
    match (typ.get(..12), typ.get(12..)) {
        (Some(prefix), Some(rest)) if prefix.eq_ignore_ascii_case("application/") => rest,
        _ => typ,
    }
}

fn boxed(items: impl IntoIterator<Item = impl Into<String>>) -> Vec<Box<str>> {
    items.into_iter().map(|s| s.into().into()).collect()
}

/// The reason logged for a refusal by `jsonwebtoken::decode`.
fn reason_of(kind: &ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidSignature => "bad signature",
        ErrorKind::ExpiredSignature | ErrorKind::InvalidToken => "token expired",
        ErrorKind::ImmatureSignature => "token not yet valid",
        ErrorKind::InvalidAudience => "audience not accepted",
        ErrorKind::InvalidIssuer => "issuer not accepted",
        ErrorKind::MissingRequiredClaim(claim) => match claim.as_str() {
            "exp" => "exp missing",
            "aud" => "aud missing",
            _ => "issuer not accepted",
        },
        ErrorKind::InvalidClaimFormat(_) => "exp or nbf is not a NumericDate",
        ErrorKind::InvalidAlgorithm => "alg not accepted",
        ErrorKind::Base64(_) => "a segment is not canonical base64url",
        ErrorKind::Json(_) | ErrorKind::Utf8(_) => {
            "claims are not a JSON object or do not fit the claims type"
        }
        _ => "signature could not be checked",
    }
}

impl<C> JwtAuthenticator<C> {
    fn from_source(keys: KeySource) -> Self {
        install_crypto_provider();
        let mut config = Config {
            keys,
            validate_exp: true,
            require_exp: true,
            leeway: DEFAULT_LEEWAY.as_secs(),
            max_lifetime: DEFAULT_MAX_LIFETIME,
            audiences: Vec::new(),
            issuers: Vec::new(),
            typ: None,
            required_scopes: Vec::new(),
            subject_claim: "sub".into(),
            scope_claims: vec!["scope".into(), "scp".into()],
            required_claims: Vec::new(),
            names: ClaimNames::new("sub", &[], &[]),
            validations: Vec::new(),
            max_token_bytes: DEFAULT_MAX_TOKEN,
            decline_non_jws: true,
        };
        config.rebuild();
        Self {
            config: Arc::new(config),
            _claims: PhantomData,
        }
    }
}

/// The constructors build a `JwtAuthenticator` whose claims are a
/// [`serde_json::Value`]; [`claims`](JwtAuthenticator::claims) changes the
/// type.
impl JwtAuthenticator {
    /// Verifies tokens with one key.
    pub fn new(key: JwtKey) -> Result<Self, ConfigError> {
        Self::with_keys([key])
    }

    /// Verifies tokens with a set of keys, selected by `kid` (and pinned
    /// to their algorithms). At least one key; no two with the same `kid`
    /// and algorithm.
    pub fn with_keys<I>(keys: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = JwtKey>,
    {
        let set = KeySet::from_configured(keys.into_iter().collect())?;
        Ok(Self::from_source(KeySource::Static(Arc::new(set))))
    }

    /// HS256 with a shared secret of at least 32 bytes; other HMAC
    /// algorithms through [`JwtKey::hmac`] and [`new`](Self::new).
    pub fn hs256(secret: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        Self::new(JwtKey::hmac(Algorithm::HS256, secret)?)
    }

    /// One public key in PEM form, pinned to `alg`; see [`JwtKey::from_pem`].
    pub fn from_pem(alg: Algorithm, pem: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
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
}

impl<C> JwtAuthenticator<C> {
    /// Deserializes the claims of accepted tokens into `D` (instead of
    /// [`serde_json::Value`]), read back in the handler with
    /// [`Identity::claims`]; a token whose claims do not fit `D` is
    /// refused. The configuration is kept.
    #[must_use]
    pub fn claims<D>(self) -> JwtAuthenticator<D> {
        JwtAuthenticator {
            config: self.config,
            _claims: PhantomData,
        }
    }

    fn edit(mut self, f: impl FnOnce(&mut Config)) -> Self {
        let config = Arc::make_mut(&mut self.config);
        f(config);
        config.rebuild();
        self
    }

    /// Whether tokens must carry `exp` (default `true`: connection tokens
    /// should expire). With `false`, tokens without `exp` are accepted; an
    /// `exp` that is present is still checked.
    #[must_use]
    pub fn require_exp(self, require: bool) -> Self {
        self.edit(|c| c.require_exp = require)
    }

    /// Whether `exp` is compared with the clock and with
    /// [`max_lifetime`](Self::max_lifetime) (default `true`). With `false`
    /// its type is still checked, and it is still required unless
    /// [`require_exp(false)`](Self::require_exp). Only for fixed test
    /// vectors or tokens whose lifetime something else enforces: an expired
    /// token is then accepted.
    #[must_use]
    pub fn validate_exp(self, validate: bool) -> Self {
        self.edit(|c| c.validate_exp = validate)
    }

    /// Refuses tokens whose `exp` is more than `lifetime` from now
    /// (default 24 hours, generous for connection tokens, which usually
    /// live minutes): an `exp` of `1e300` or
    /// 2⁶⁴ is not "never expires". `Duration::MAX` lifts the bound.
    #[must_use]
    pub fn max_lifetime(self, lifetime: Duration) -> Self {
        self.edit(|c| c.max_lifetime = lifetime)
    }

    /// Accepts tokens whose `aud` contains one of `audiences` (replacing
    /// any set before). Tokens without `aud` are then refused. Without this
    /// setting, tokens with an `aud` are refused.
    #[must_use]
    pub fn audience(self, audiences: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.edit(|c| c.audiences = boxed(audiences))
    }

    /// Accepts tokens whose `iss` is one of `issuers` (replacing any set
    /// before); tokens without `iss` are then refused.
    #[must_use]
    pub fn issuer(self, issuers: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.edit(|c| c.issuers = boxed(issuers))
    }

    /// The clock-skew allowance for `nbf` (default 30 seconds), at most
    /// [`MAX_LEEWAY`] (five minutes; a larger one is a [`ConfigError`]).
    /// Whole seconds; a fraction is rounded up.
    /// `exp` gets no leeway (see "Configuration" in the guide above).
    pub fn leeway(self, leeway: Duration) -> Result<Self, ConfigError> {
        if leeway > MAX_LEEWAY {
            return Err(ConfigError::InvalidJwtConfig {
                reason: "leeway over MAX_LEEWAY (five minutes)",
            });
        }
        let secs = leeway.as_secs() + u64::from(leeway.subsec_nanos() > 0);
        Ok(self.edit(|c| c.leeway = secs))
    }

    /// Claims that must be present and not `null` (replacing any set
    /// before), in addition to `exp` and the subject.
    #[must_use]
    pub fn required_claims(self, claims: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.edit(|c| c.required_claims = boxed(claims))
    }

    /// Requires the header's `typ` to be `typ`, compared case-insensitively
    /// and with an `application/` prefix ignored (RFC 7515 section 4.1.9):
    /// `.typ("at+jwt")` accepts `at+jwt` and `application/at+JWT` (RFC
    /// 9068 access tokens), and refuses tokens without `typ`.
    #[must_use]
    pub fn typ(self, typ: &str) -> Self {
        let typ = strip_application(typ).into();
        self.edit(|c| c.typ = Some(typ))
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
    #[must_use]
    pub fn scope_claims(self, claims: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.edit(|c| c.scope_claims = boxed(claims))
    }

    /// The claim the subject is read from (default `sub`), such as
    /// `client_id` or `oid`. It must be a non-empty string.
    #[must_use]
    pub fn subject_claim(self, claim: impl Into<String>) -> Self {
        let claim = claim.into().into_boxed_str();
        self.edit(|c| c.subject_claim = claim)
    }

    /// Caps the token at `bytes` (default 8 KiB, as the layer's credential
    /// cap); larger tokens are invalid before anything is decoded. Raise the
    /// layer's [`max_credential_bytes`](crate::WsAuthLayer::max_credential_bytes)
    /// too when raising this.
    #[must_use]
    pub fn max_token_bytes(self, bytes: NonZeroUsize) -> Self {
        self.edit(|c| c.max_token_bytes = bytes.get())
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
    pub fn algorithms(&self) -> Vec<Algorithm> {
        self.config.keys.algorithms().iter().collect()
    }

    /// The [`Validation`] tokens for a key pinned to `alg` are decoded
    /// with: what a plain [`jsonwebtoken::decode`] needs to check what
    /// jsonwebtoken checks here (the differential tests use it).
    pub fn jsonwebtoken_validation(&self, alg: Algorithm) -> Validation {
        self.config.validation(alg)
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
        let mut header = [0; compact::MAX_HEADER_BYTES];
        let checked = match compact::check(token, config.max_token_bytes, &mut header) {
            Ok(checked) => checked,
            Err(Refusal::NotJws) if config.decline_non_jws => {
                return Err(AuthError::NotApplicable);
            }
            Err(Refusal::NotJws) => return Err(AuthError::invalid("not a compact JWS")),
            Err(Refusal::Invalid(reason)) => return Err(AuthError::invalid(reason)),
        };
        if let Some(expected) = &config.typ {
            match &checked.typ {
                Some(typ) if strip_application(&typ.0).eq_ignore_ascii_case(expected) => {}
                Some(_) => return Err(AuthError::invalid("typ not accepted")),
                None => return Err(AuthError::invalid("typ missing")),
            }
        }
        let (alg, kid) = (checked.alg, checked.kid.as_ref().map(|k| &*k.0));
        if !config.keys.algorithms().contains(alg) {
            return Err(AuthError::invalid("alg not accepted"));
        }
        #[cfg(feature = "jwks")]
        let fetched;
        // Without `jwks` there is one key source.
        #[cfg_attr(not(feature = "jwks"), allow(clippy::infallible_destructuring_match))]
        let set: &KeySet = match &config.keys {
            KeySource::Static(set) => set,
            #[cfg(feature = "jwks")]
            KeySource::Remote(remote) => {
                fetched = remote.key_set_for(alg, kid).await?;
                &fetched
            }
        };
        let key = set.select(alg, kid).map_err(AuthError::invalid)?;
        self.finish(token, checked.payload, key)
    }

    /// jsonwebtoken's verification with `key` (which also deserializes
    /// the typed claims `C`), then the strict claims, read from the payload
    /// segment `decode` has just verified.
    fn finish(&self, token: &str, payload: &str, key: &JwtKey) -> Result<Identity, AuthError> {
        let config = &*self.config;
        let validation = algorithm::ALL
            .iter()
            .position(|a| *a == key.alg)
            .and_then(|i| config.validations.get(i))
            .ok_or_else(|| AuthError::invalid("alg not accepted"))?;
        let typed = jsonwebtoken::decode::<C>(token, &key.key, validation)
            .map_err(|e| AuthError::invalid(reason_of(e.kind())))?
            .claims;
        let json = URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(|| AuthError::invalid("claims are not a JSON object"))?;
        self.identity(&json, typed)
    }

    /// The policy on verified claims, and the identity they make.
    fn identity(&self, payload: &str, typed: C) -> Result<Identity, AuthError> {
        let config = &*self.config;
        let names = &config.names;
        let claims = claims::read(payload, names).map_err(AuthError::invalid)?;
        let invalid = |reason: &'static str| move |()| AuthError::invalid(reason);
        let date = |index, reason| {
            claims
                .get(index)
                .map(claims::numeric_date)
                .transpose()
                .map_err(invalid(reason))
        };
        let exp = date(names.exp, "exp is not a NumericDate")?;
        date(names.nbf, "nbf is not a NumericDate")?;
        let iat = date(names.iat, "iat is not a NumericDate")?;
        match exp {
            None if config.require_exp => return Err(AuthError::invalid("exp missing")),
            Some(exp) if config.validate_exp => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64());
                if exp <= now.floor() {
                    return Err(AuthError::invalid("token expired"));
                }
                if exp - now > config.max_lifetime.as_secs_f64() {
                    return Err(AuthError::invalid("exp beyond the maximum lifetime"));
                }
            }
            _ => {}
        }
        let string = |index, reason| {
            claims
                .get(index)
                .map(claims::string)
                .transpose()
                .map_err(invalid(reason))
        };
        string(names.iss, "iss is not a string")?;
        let jti = string(names.jti, "jti is not a string")?;
        if claims
            .get(names.aud)
            .is_some_and(|aud| !matches!(aud, Claim::Str(_) | Claim::Strings(_)))
        {
            return Err(AuthError::invalid(
                "aud is not a string or an array of strings",
            ));
        }
        let subject = string(names.subject, "subject is not a string")?
            .ok_or_else(|| AuthError::invalid("subject missing"))?;
        if subject.is_empty() {
            return Err(AuthError::invalid("subject is empty"));
        }
        if names
            .required
            .iter()
            .any(|&i| claims.get(i).is_none_or(|c| *c == Claim::Null))
        {
            return Err(AuthError::invalid("required claim missing"));
        }
        let mut scopes = Vec::new();
        for &index in &names.scopes {
            if let Some(value) = claims.get(index) {
                claims::scopes(value, &mut scopes)
                    .map_err(invalid("scope claim of the wrong type"))?;
            }
        }
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
        if let Some(at) =
            exp.and_then(|e| UNIX_EPOCH.checked_add(Duration::try_from_secs_f64(e).ok()?))
        {
            builder = builder.expires_at(at);
        }
        if let Some(jti) = jti {
            builder = builder.token_id(jti);
        }
        if let Some(at) = iat
            .filter(|i| *i >= 0.0)
            .and_then(|i| UNIX_EPOCH.checked_add(Duration::try_from_secs_f64(i).ok()?))
        {
            builder = builder.issued_at(at);
        }
        Ok(builder.build())
    }
}

impl<C> Authenticator for JwtAuthenticator<C>
where
    C: DeserializeOwned + Send + Sync + 'static,
{
    fn name(&self) -> &'static str {
        "jwt"
    }

    async fn authenticate(
        &self,
        credential: &Credential,
        _request: &Parts,
    ) -> Result<Identity, AuthError> {
        self.verify(credential.expose_secret()).await
    }
}
