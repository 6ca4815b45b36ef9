//! Errors: what an [`Authenticator`](crate::Authenticator) reports, and what
//! configuration can get wrong.

use std::borrow::Cow;
use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;

/// Why an [`Authenticator`](crate::Authenticator) did not produce an
/// [`Identity`](crate::Identity).
///
/// Each variant maps to one HTTP answer before the upgrade (see
/// [`Rejection`](crate::Rejection)). The reason strings are for logs only:
/// the client always gets a generic body. Never put a secret (a token, a
/// session id, a key) into a reason.
///
/// ```
/// use tower_ws_auth::AuthError;
///
/// let err = AuthError::invalid("signature mismatch");
/// assert_eq!(err.to_string(), "invalid credential: signature mismatch");
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The credential is not of a kind this authenticator handles (for
    /// example an API key handed to a JWT authenticator). [`Or`](crate::Or)
    /// falls back to its second authenticator on this error and on no other.
    /// When nothing handles the credential the client gets 401
    /// `invalid_token`.
    #[error("credential not handled by this authenticator")]
    NotApplicable,
    /// The credential is invalid, forged, expired or revoked: 401
    /// `error="invalid_token"`.
    #[error("invalid credential: {0}")]
    Invalid(Cow<'static, str>),
    /// The credential is syntactically malformed: 400
    /// `error="invalid_request"`.
    #[error("malformed credential: {0}")]
    Malformed(Cow<'static, str>),
    /// The credential is valid but lacks a required scope or role: 403
    /// `error="insufficient_scope"`.
    #[error("insufficient scope")]
    InsufficientScope {
        /// The scope that would have been sufficient; sent to the client in
        /// the `scope` parameter of `WWW-Authenticate` when it is a valid
        /// RFC 6750 scope list.
        required: Option<Cow<'static, str>>,
    },
    /// The credential is valid but the request is refused for another
    /// reason: 403 without a `WWW-Authenticate` challenge.
    #[error("forbidden: {0}")]
    Forbidden(Cow<'static, str>),
    /// The verifier's backend (session store, key server, database) could
    /// not answer: 503 with `Retry-After`. Never 401, never an upgrade.
    #[error("authentication backend unavailable: {reason}")]
    Unavailable {
        /// What was unavailable, for logs.
        reason: Cow<'static, str>,
        /// How long the client should wait; the `Retry-After` header.
        /// `None` means the layer's default (one second).
        retry_after: Option<Duration>,
        /// The underlying error, for logs.
        #[source]
        source: Option<Arc<dyn StdError + Send + Sync>>,
    },
    /// A valid credential whose subject already holds as many live sockets
    /// as it may (a per-subject cap): 429 with `Retry-After`.
    #[error("too many live connections for this subject")]
    TooManyConnections {
        /// How long the client should wait; the `Retry-After` header.
        retry_after: Duration,
    },
}

impl AuthError {
    /// An invalid credential (401 `invalid_token`) with a reason for logs.
    pub fn invalid(reason: impl Into<Cow<'static, str>>) -> Self {
        Self::Invalid(reason.into())
    }

    /// A malformed credential (400 `invalid_request`) with a reason for logs.
    pub fn malformed(reason: impl Into<Cow<'static, str>>) -> Self {
        Self::Malformed(reason.into())
    }

    /// A valid credential that lacks `scope` (403 `insufficient_scope`).
    pub fn insufficient_scope(scope: impl Into<Cow<'static, str>>) -> Self {
        Self::InsufficientScope {
            required: Some(scope.into()),
        }
    }

    /// A refused request (403) with a reason for logs.
    pub fn forbidden(reason: impl Into<Cow<'static, str>>) -> Self {
        Self::Forbidden(reason.into())
    }

    /// The backend is unavailable (503) with a reason for logs.
    pub fn unavailable(reason: impl Into<Cow<'static, str>>) -> Self {
        Self::Unavailable {
            reason: reason.into(),
            retry_after: None,
            source: None,
        }
    }

    /// The subject is at its cap of live connections (429, `Retry-After`
    /// of `retry_after`).
    pub fn too_many_connections(retry_after: Duration) -> Self {
        Self::TooManyConnections { retry_after }
    }

    /// The backend failed with `source` (503). The error's `Display` is
    /// logged: make sure it carries no secret.
    pub fn backend(
        reason: impl Into<Cow<'static, str>>,
        source: impl StdError + Send + Sync + 'static,
    ) -> Self {
        Self::Unavailable {
            reason: reason.into(),
            retry_after: None,
            source: Some(Arc::new(source)),
        }
    }

    /// Sets `Retry-After` on an [`AuthError::Unavailable`]; other variants are
    /// returned unchanged.
    #[must_use]
    pub fn with_retry_after(mut self, after: Duration) -> Self {
        if let Self::Unavailable { retry_after, .. } = &mut self {
            *retry_after = Some(after);
        }
        self
    }

    /// `true` for [`AuthError::NotApplicable`].
    pub fn is_not_applicable(&self) -> bool {
        matches!(self, Self::NotApplicable)
    }
}

/// A configuration mistake, reported when the layer or one of its parts is
/// built, never while serving requests.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A builder was given a value it cannot use: a header, cookie or query
    /// parameter name that is not a valid token, a `Cookie` header without
    /// an Origin policy, a `realm` or cookie attribute that would break its
    /// header, a close code that may not be sent.
    #[error("invalid {setting}: {reason}")]
    InvalidSetting {
        /// The setting, as the builder method names it (`"header name"`,
        /// `"cookie name"`, `"realm"`, ...).
        setting: &'static str,
        /// What is wrong with it (never the value, which may be a secret).
        reason: &'static str,
    },
    /// An Origin allow-list entry is not `scheme://host[:port]` (with an
    /// optional leading `*.` label on the host).
    #[error("invalid origin {origin:?}: {reason}")]
    InvalidOrigin {
        /// The entry as given.
        origin: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A JWT verification key could not be used: unreadable PEM, DER or
    /// JWK, a private key where a public one belongs, a key that does not
    /// fit the algorithm it is pinned to, an oversized `kid`.
    #[error("invalid JWT key: {reason}")]
    InvalidKey {
        /// What is wrong with it (never the key material).
        reason: &'static str,
    },
    /// An HMAC secret shorter than the output of its hash (RFC 7518
    /// section 3.2): 32 bytes for HS256, 48 for HS384, 64 for HS512.
    #[error("HMAC secret for {algorithm} must be at least {min_bytes} bytes")]
    WeakHmacSecret {
        /// The algorithm the secret was meant for.
        algorithm: &'static str,
        /// The smallest acceptable length, in bytes.
        min_bytes: usize,
    },
    /// An RSA key whose modulus is under 2048 bits.
    #[error("RSA key of {bits} bits is too small: at least 2048 are needed")]
    WeakRsaKey {
        /// The modulus size, in bits.
        bits: usize,
    },
    /// JWT settings that cannot work together, such as an empty key set or
    /// two keys with the same `kid` and algorithm.
    #[error("invalid JWT configuration: {reason}")]
    InvalidJwtConfig {
        /// What is wrong.
        reason: &'static str,
    },
    /// A JWKS or OpenID Connect issuer URL that is not an absolute
    /// `http://` or `https://` URL.
    #[error("invalid key server URL: {reason}")]
    InvalidKeyServerUrl {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The HTTPS client for a key server could not be set up (for example,
    /// the system certificate store could not be read).
    #[error("TLS client setup failed: {reason}")]
    Tls {
        /// What failed.
        reason: String,
    },
}

impl ConfigError {
    pub(crate) fn setting(setting: &'static str, reason: &'static str) -> Self {
        Self::InvalidSetting { setting, reason }
    }
}
