//! [`Identity`]: who a request or a connection belongs to.

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// How an [`Identity`] was established.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuthMethod {
    /// A JSON Web Token.
    Jwt,
    /// A server-side session, usually found through a cookie.
    Session,
    /// An API key.
    ApiKey,
    /// Any other scheme, named by the authenticator that used it.
    Custom(&'static str),
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Jwt => "jwt",
            Self::Session => "session",
            Self::ApiKey => "api_key",
            Self::Custom(name) => name,
        })
    }
}

/// The authenticated principal of a WebSocket upgrade (or, when the layer
/// protects every request, of any request).
///
/// The layer inserts it into the request extensions; handlers read it with
/// the axum extractor (feature `axum`) or `request.extensions().get::<Identity>()`.
/// It is the only way an identity reaches downstream code: headers such as
/// `X-User-Id` sent by a client never become one.
///
/// Cloning is cheap (one reference count): keep a clone for the lifetime of
/// the socket.
///
/// ```
/// use std::time::Duration;
/// use tower_ws_auth::{AuthMethod, Identity};
///
/// #[derive(Debug, PartialEq)]
/// struct Claims { tenant: String }
///
/// let identity = Identity::builder("alice", AuthMethod::Jwt)
///     .expires_in(Duration::from_secs(3600))
///     .scopes(["chat:read", "chat:write"])
///     .claims(Claims { tenant: "acme".into() })
///     .build();
///
/// assert_eq!(identity.subject(), "alice");
/// assert!(identity.has_scope("chat:write"));
/// assert_eq!(identity.claims::<Claims>().map(|c| c.tenant.as_str()), Some("acme"));
/// assert!(identity.claims::<String>().is_none());
/// ```
#[derive(Clone)]
pub struct Identity {
    inner: Arc<Inner>,
}

struct Inner {
    subject: Box<str>,
    method: AuthMethod,
    expires_at: Option<SystemTime>,
    scopes: Box<[Box<str>]>,
    session_id: Option<Box<str>>,
    token_id: Option<Box<str>>,
    claims: Option<Claims>,
    authenticated_at: Instant,
    issued_at: Option<SystemTime>,
}

struct Claims {
    value: Box<dyn Any + Send + Sync>,
    type_name: &'static str,
}

impl Identity {
    /// An identity for `subject` with no expiry, scopes or claims.
    pub fn new(subject: impl Into<String>, method: AuthMethod) -> Self {
        Self::builder(subject, method).build()
    }

    /// Starts building an identity for `subject`.
    pub fn builder(subject: impl Into<String>, method: AuthMethod) -> IdentityBuilder {
        IdentityBuilder {
            inner: Inner {
                subject: subject.into().into_boxed_str(),
                method,
                expires_at: None,
                scopes: Box::new([]),
                session_id: None,
                token_id: None,
                claims: None,
                authenticated_at: Instant::now(),
                issued_at: None,
            },
        }
    }

    /// The subject: a user id, a service name, whatever the authenticator
    /// says the principal is.
    pub fn subject(&self) -> &str {
        &self.inner.subject
    }

    /// How the identity was established.
    pub fn method(&self) -> AuthMethod {
        self.inner.method
    }

    /// When the credential behind this identity stops being valid (a JWT's
    /// `exp`, a session's end). A socket held past it should be closed.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.inner.expires_at
    }

    /// `true` when the identity has an expiry and `now` is at or past it.
    pub fn is_expired_at(&self, now: SystemTime) -> bool {
        self.inner.expires_at.is_some_and(|at| now >= at)
    }

    /// The time left until [`expires_at`](Self::expires_at), measured against
    /// `now`; `None` without an expiry, zero once expired.
    pub fn time_left(&self, now: SystemTime) -> Option<Duration> {
        self.inner
            .expires_at
            .map(|at| at.duration_since(now).unwrap_or(Duration::ZERO))
    }

    /// The scopes or roles granted.
    pub fn scopes(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.inner.scopes.iter().map(|s| &**s)
    }

    /// `true` if `scope` was granted (exact, case-sensitive match).
    pub fn has_scope(&self, scope: &str) -> bool {
        self.inner.scopes.iter().any(|s| **s == *scope)
    }

    /// An identifier of the session this identity belongs to, used to revoke
    /// every connection of a session. Authenticators store a digest or a
    /// public handle here, never the secret session cookie itself.
    pub fn session_id(&self) -> Option<&str> {
        self.inner.session_id.as_deref()
    }

    /// The credential's own identifier (a JWT's `jti`), if any.
    pub fn token_id(&self) -> Option<&str> {
        self.inner.token_id.as_deref()
    }

    /// When this identity was made (when its [`builder`](Self::builder) was
    /// started, that is when the authenticator checked the credential).
    /// A revocation of the subject (`Revocations`, feature `socket`) closes
    /// the connections of identities made before it.
    pub fn authenticated_at(&self) -> Instant {
        self.inner.authenticated_at
    }

    /// When the credential behind this identity was issued (a JWT's `iat`,
    /// a session's creation), if the authenticator knows. A revocation of
    /// "every credential of this subject issued before T"
    /// (`Revocations::revoke_subject`, feature `socket`) refuses the
    /// credentials issued at or before T; an identity without an issue
    /// time is judged by [`authenticated_at`](Self::authenticated_at)
    /// instead (only the checks made before the revocation are refused).
    pub fn issued_at(&self) -> Option<SystemTime> {
        self.inner.issued_at
    }

    /// The typed claims the authenticator attached, if they are a `T`.
    pub fn claims<T: Any>(&self) -> Option<&T> {
        self.inner
            .claims
            .as_ref()
            .and_then(|c| c.value.downcast_ref::<T>())
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &*self.inner;
        f.debug_struct("Identity")
            .field("subject", &inner.subject)
            .field("method", &inner.method)
            .field("expires_at", &inner.expires_at)
            .field("scopes", &inner.scopes)
            .field(
                "session_id",
                &inner.session_id.as_ref().map(|_| "<redacted>"),
            )
            .field("token_id", &inner.token_id)
            .field("issued_at", &inner.issued_at)
            .field("claims", &inner.claims.as_ref().map(|c| c.type_name))
            .finish()
    }
}

/// The instant `ttl` from now, saturating far in the future.
pub(crate) fn deadline(ttl: Duration) -> SystemTime {
    SystemTime::now()
        .checked_add(ttl)
        .unwrap_or_else(|| SystemTime::UNIX_EPOCH + Duration::from_secs(u64::from(u32::MAX)))
}

/// Builds an [`Identity`]; see [`Identity::builder`].
#[must_use]
pub struct IdentityBuilder {
    inner: Inner,
}

impl fmt::Debug for IdentityBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentityBuilder")
            .field("subject", &self.inner.subject)
            .finish_non_exhaustive()
    }
}

impl IdentityBuilder {
    /// Sets the instant the credential expires.
    pub fn expires_at(mut self, at: SystemTime) -> Self {
        self.inner.expires_at = Some(at);
        self
    }

    /// Sets the expiry to `now + ttl`.
    pub fn expires_in(self, ttl: Duration) -> Self {
        self.expires_at(deadline(ttl))
    }

    /// Adds one scope or role.
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        let mut scopes = std::mem::take(&mut self.inner.scopes).into_vec();
        scopes.push(scope.into().into_boxed_str());
        self.inner.scopes = scopes.into_boxed_slice();
        self
    }

    /// Adds scopes or roles.
    pub fn scopes<I>(mut self, scopes: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        let mut all = std::mem::take(&mut self.inner.scopes).into_vec();
        all.extend(scopes.into_iter().map(|s| s.into().into_boxed_str()));
        self.inner.scopes = all.into_boxed_slice();
        self
    }

    /// Sets the session identifier used for revocation; see
    /// [`Identity::session_id`].
    pub fn session_id(mut self, id: impl Into<String>) -> Self {
        self.inner.session_id = Some(id.into().into_boxed_str());
        self
    }

    /// Sets the credential's own identifier (a JWT's `jti`).
    pub fn token_id(mut self, id: impl Into<String>) -> Self {
        self.inner.token_id = Some(id.into().into_boxed_str());
        self
    }

    /// Sets when the credential was issued; see [`Identity::issued_at`].
    pub fn issued_at(mut self, at: SystemTime) -> Self {
        self.inner.issued_at = Some(at);
        self
    }

    /// Attaches typed claims, read back with [`Identity::claims`].
    pub fn claims<T: Any + Send + Sync>(mut self, claims: T) -> Self {
        self.inner.claims = Some(Claims {
            value: Box::new(claims),
            type_name: std::any::type_name::<T>(),
        });
        self
    }

    /// Finishes the identity.
    pub fn build(self) -> Identity {
        Identity {
            inner: Arc::new(self.inner),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_session_id() {
        let id = Identity::builder("bob", AuthMethod::Session)
            .session_id("s3cr3t-session")
            .build();
        let shown = format!("{id:?}");
        assert!(!shown.contains("s3cr3t-session"), "{shown}");
        assert!(shown.contains("bob"));
        assert_eq!(id.session_id(), Some("s3cr3t-session"));
    }

    #[test]
    fn expiry_arithmetic() {
        let now = SystemTime::now();
        let id = Identity::builder("x", AuthMethod::Jwt)
            .expires_at(now + Duration::from_secs(10))
            .build();
        assert!(!id.is_expired_at(now));
        assert!(id.is_expired_at(now + Duration::from_secs(10)));
        assert_eq!(id.time_left(now), Some(Duration::from_secs(10)));
        assert_eq!(
            id.time_left(now + Duration::from_secs(20)),
            Some(Duration::ZERO)
        );
        let forever = Identity::new("y", AuthMethod::ApiKey);
        assert!(!forever.is_expired_at(now));
        assert_eq!(forever.time_left(now), None);
    }
}
