//! The [`Authenticator`] trait, its boxed form, a closure adapter and
//! combinators.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use http::request::Parts;

use crate::credential::{Carrier, Credential};
use crate::error::AuthError;
use crate::identity::Identity;

/// A boxed, `Send` future, as returned by [`DynAuthenticator`].
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Verifies a [`Credential`] and says who it belongs to.
///
/// It runs before the WebSocket handshake completes, with the credential
/// the layer extracted and the request's parts: method, URI (with any query
/// credential already removed), headers and extensions (for example axum's
/// `ConnectInfo` with the peer address).
///
/// Return [`AuthError::NotApplicable`] for a credential of a kind you do not
/// handle, so that [`or`](Self::or) can try the next authenticator.
///
/// ```
/// use http::request::Parts;
/// use tower_ws_auth::{AuthError, AuthMethod, Authenticator, Credential, Identity};
///
/// struct StaticToken;
///
/// impl Authenticator for StaticToken {
///     async fn authenticate(&self, credential: &Credential, _request: &Parts) -> Result<Identity, AuthError> {
///         if credential.expose_secret() == "let-me-in" {
///             Ok(Identity::new("guest", AuthMethod::Custom("static")))
///         } else {
///             Err(AuthError::invalid("unknown token"))
///         }
///     }
/// }
/// ```
pub trait Authenticator: Send + Sync + 'static {
    /// Verifies `credential`.
    fn authenticate(
        &self,
        credential: &Credential,
        request: &Parts,
    ) -> impl Future<Output = Result<Identity, AuthError>> + Send;

    /// A short, static name for metrics: the `authenticator` label of
    /// `tower_ws_auth_authentication_seconds` (feature `metrics`). The
    /// crate's authenticators answer `jwt`, `session`, `api_key`; wrappers
    /// ([`cached`](Self::cached), [`for_carriers`](Self::for_carriers),
    /// [`boxed`](Self::boxed)) the name of what they wrap, [`or`](Self::or)
    /// `or`. The default is `custom`; override it with a fixed string
    /// (never one built from a request or a credential: each distinct name
    /// is a series of its own). [`WsAuthLayer::new`](crate::WsAuthLayer::new)
    /// reads it once.
    ///
    /// ```
    /// use http::request::Parts;
    /// use tower_ws_auth::{AuthError, Authenticator, Credential, Identity};
    ///
    /// struct Ldap;
    ///
    /// impl Authenticator for Ldap {
    ///     fn name(&self) -> &'static str {
    ///         "ldap"
    ///     }
    ///
    ///     async fn authenticate(&self, _: &Credential, _: &Parts) -> Result<Identity, AuthError> {
    ///         Err(AuthError::invalid("directory says no"))
    ///     }
    /// }
    /// assert_eq!(Ldap.name(), "ldap");
    /// ```
    fn name(&self) -> &'static str {
        "custom"
    }

    /// Tries `self`, and `other` only if `self` answers
    /// [`AuthError::NotApplicable`]. A rejection by `self` is final: a bad
    /// credential never gets a second chance with another authenticator.
    fn or<B: Authenticator>(self, other: B) -> Or<Self, B>
    where
        Self: Sized,
    {
        Or {
            first: self,
            second: other,
        }
    }

    /// Accepts only credentials from `carriers`; others get
    /// [`AuthError::NotApplicable`]. Combine with [`or`](Self::or) to send
    /// each carrier to its own authenticator.
    fn for_carriers<I>(self, carriers: I) -> ForCarriers<Self>
    where
        Self: Sized,
        I: IntoIterator<Item = Carrier>,
    {
        ForCarriers {
            inner: self,
            carriers: carriers.into_iter().collect(),
        }
    }

    /// Caches successful authentications for up to `ttl` (never past the
    /// identity's own expiry), holding at most `capacity` entries (and
    /// copies of recently used ones in a small table in front); see
    /// [`Cached`](crate::Cached).
    #[cfg(feature = "cache")]
    #[cfg_attr(docsrs, doc(cfg(feature = "cache")))]
    fn cached(self, ttl: std::time::Duration, capacity: u64) -> crate::Cached<Self>
    where
        Self: Sized,
    {
        crate::Cached::new(self, ttl, capacity)
    }

    /// Type-erases the authenticator, to choose one at run time or to store
    /// several in one collection.
    fn boxed(self) -> BoxAuthenticator
    where
        Self: Sized,
    {
        BoxAuthenticator(Arc::new(self))
    }
}

/// The object-safe form of [`Authenticator`], implemented for every
/// authenticator. Use it through [`BoxAuthenticator`].
pub(crate) trait DynAuthenticator: Send + Sync + 'static {
    /// [`Authenticator::authenticate`], with a boxed future.
    fn authenticate_boxed<'a>(
        &'a self,
        credential: &'a Credential,
        request: &'a Parts,
    ) -> BoxFuture<'a, Result<Identity, AuthError>>;

    /// [`Authenticator::name`].
    fn dyn_name(&self) -> &'static str;
}

impl<A: Authenticator> DynAuthenticator for A {
    fn authenticate_boxed<'a>(
        &'a self,
        credential: &'a Credential,
        request: &'a Parts,
    ) -> BoxFuture<'a, Result<Identity, AuthError>> {
        Box::pin(self.authenticate(credential, request))
    }

    fn dyn_name(&self) -> &'static str {
        self.name()
    }
}

/// A type-erased, cheaply clonable [`Authenticator`]; see
/// [`Authenticator::boxed`].
///
/// ```
/// use tower_ws_auth::{authenticate_fn, AuthError, Authenticator, BoxAuthenticator, WsAuthLayer};
///
/// let auth: BoxAuthenticator = authenticate_fn(|_credential, _request| async {
///     Err::<tower_ws_auth::Identity, _>(AuthError::invalid("closed"))
/// })
/// .boxed();
/// let layer = WsAuthLayer::new(auth.clone()).bearer_header();
/// # let _ = layer;
/// ```
#[derive(Clone)]
pub struct BoxAuthenticator(Arc<dyn DynAuthenticator>);

impl fmt::Debug for BoxAuthenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BoxAuthenticator")
    }
}

impl Authenticator for BoxAuthenticator {
    fn name(&self) -> &'static str {
        self.0.dyn_name()
    }

    async fn authenticate(
        &self,
        credential: &Credential,
        request: &Parts,
    ) -> Result<Identity, AuthError> {
        self.0.authenticate_boxed(credential, request).await
    }
}

impl<A: Authenticator> Authenticator for Arc<A> {
    fn name(&self) -> &'static str {
        (**self).name()
    }

    fn authenticate(
        &self,
        credential: &Credential,
        request: &Parts,
    ) -> impl Future<Output = Result<Identity, AuthError>> + Send {
        (**self).authenticate(credential, request)
    }
}

/// An [`Authenticator`] from a closure; see [`authenticate_fn`].
#[derive(Clone)]
pub struct FnAuthenticator<F> {
    f: F,
}

impl<F> fmt::Debug for FnAuthenticator<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FnAuthenticator")
    }
}

/// Makes an [`Authenticator`] from a closure.
///
/// The closure gets the credential and the request parts by reference and
/// returns a `'static` future: copy out what the future needs before the
/// `async move` block.
///
/// ```
/// use tower_ws_auth::{authenticate_fn, AuthError, AuthMethod, Identity, WsAuthLayer};
///
/// # async fn lookup(token: &str) -> Option<String> { Some("alice".into()) }
/// let auth = authenticate_fn(|credential, _request| {
///     let token = credential.expose_secret().to_owned();
///     async move {
///         match lookup(&token).await {
///             Some(user) => Ok(Identity::new(user, AuthMethod::Custom("lookup"))),
///             None => Err(AuthError::invalid("unknown token")),
///         }
///     }
/// });
/// let layer = WsAuthLayer::new(auth).bearer_header();
/// # let _ = layer;
/// ```
pub fn authenticate_fn<F, Fut>(f: F) -> FnAuthenticator<F>
where
    F: Fn(&Credential, &Parts) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Identity, AuthError>> + Send + 'static,
{
    FnAuthenticator { f }
}

impl<F, Fut> Authenticator for FnAuthenticator<F>
where
    F: Fn(&Credential, &Parts) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Identity, AuthError>> + Send + 'static,
{
    fn authenticate(
        &self,
        credential: &Credential,
        request: &Parts,
    ) -> impl Future<Output = Result<Identity, AuthError>> + Send {
        (self.f)(credential, request)
    }
}

/// Falls back to a second authenticator; see [`Authenticator::or`].
#[derive(Debug, Clone)]
pub struct Or<A, B> {
    first: A,
    second: B,
}

impl<A: Authenticator, B: Authenticator> Authenticator for Or<A, B> {
    fn name(&self) -> &'static str {
        "or"
    }

    async fn authenticate(
        &self,
        credential: &Credential,
        request: &Parts,
    ) -> Result<Identity, AuthError> {
        match self.first.authenticate(credential, request).await {
            Err(AuthError::NotApplicable) => self.second.authenticate(credential, request).await,
            decided => decided,
        }
    }
}

/// Restricts an authenticator to some carriers; see
/// [`Authenticator::for_carriers`].
#[derive(Debug, Clone)]
pub struct ForCarriers<A> {
    inner: A,
    carriers: Vec<Carrier>,
}

impl<A: Authenticator> Authenticator for ForCarriers<A> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    async fn authenticate(
        &self,
        credential: &Credential,
        request: &Parts,
    ) -> Result<Identity, AuthError> {
        if self.carriers.contains(credential.carrier()) {
            self.inner.authenticate(credential, request).await
        } else {
            Err(AuthError::NotApplicable)
        }
    }
}
