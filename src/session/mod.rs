//! Cookie sessions: a [`SessionAuthenticator`] over an async
//! [`SessionStore`], the [`SessionCookie`] that carries the session id
//! (plain, signed or private), an in-memory store with expiry, and (feature
//! `tower-sessions`) an adapter for the stores of tower-sessions.
//!
//! The flow: a login route creates a session in the store and answers with
//! the `Set-Cookie` of [`SessionCookie::issue`]; the browser sends the
//! cookie on the WebSocket handshake; the layer checks the `Origin` (cookie
//! credentials always need an [`OriginPolicy`](crate::OriginPolicy)), then
//! the authenticator verifies the cookie's signature or encryption, loads
//! the session, refuses it when expired and maps its data to an
//! [`Identity`] whose expiry is the session's.
//!
//! Before the store is asked anything, a signed or private cookie must
//! verify with the [`Key`](::cookie::Key): a forged or tampered cookie costs
//! one HMAC or AES-GCM operation and never reaches the store. Session ids
//! are 256 random bits from the operating system; the in-memory store keys
//! sessions by the SHA-256 [`SessionDigest`] of the id, never by the id.
//!
#![doc = include_str!("../../docs/sessions.md")]

mod memory;
mod session_cookie;
#[cfg(feature = "tower-sessions")]
mod tower_sessions;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::request::Parts;
use sha2::{Digest as _, Sha256};

use crate::authenticator::Authenticator;
use crate::credential::{Carrier, Credential};
use crate::error::AuthError;
use crate::identity::{Identity, IdentityBuilder};

/// The cookie crate (0.18), for its [`Key`](::cookie::Key) and
/// [`SameSite`](::cookie::SameSite): the same crate tower-sessions
/// re-exports.
pub use ::cookie;
pub use memory::MemorySessionStore;
pub use session_cookie::SessionCookie;
#[cfg(feature = "tower-sessions")]
pub use tower_sessions::{TowerSessionData, TowerSessionStore};

/// A session id: the secret a session cookie carries (inside its signature
/// or encryption, if any).
///
/// [`generate`](Self::generate) makes one from 256 bits of operating-system
/// randomness, base64url-encoded without padding (43 characters).
/// [`parse`](Self::parse) accepts 22 to 256 base64url characters (at least
/// 128 bits), so ids of other systems (tower-sessions' 22-character ids,
/// UUIDs) fit too.
///
/// The id is a bearer secret: its `Debug` output is redacted, it has no
/// `Display`, and stores should key sessions by its [`digest`](Self::digest).
///
/// ```
/// use tower_ws_auth::session::SessionId;
///
/// let id = SessionId::generate()?;
/// assert_eq!(id.expose_secret().len(), 43);
/// assert!(!format!("{id:?}").contains(id.expose_secret()));
///
/// let again = SessionId::parse(id.expose_secret()).expect("a generated id parses");
/// assert_eq!(again.digest(), id.digest());
/// assert!(SessionId::parse("too-short").is_none());
/// assert!(SessionId::parse("not base64url: contains spaces!!").is_none());
/// # Ok::<(), tower_ws_auth::AuthError>(())
/// ```
#[derive(Clone)]
pub struct SessionId {
    secret: Box<str>,
    digest: SessionDigest,
}

impl SessionId {
    /// The fewest characters [`parse`](Self::parse) accepts (128 bits of
    /// base64url).
    pub const MIN_LEN: usize = 22;
    /// The most characters [`parse`](Self::parse) accepts.
    pub const MAX_LEN: usize = 256;

    /// A new id: 32 bytes from the operating system's CSPRNG, base64url
    /// without padding.
    ///
    /// # Errors
    ///
    /// [`AuthError::Unavailable`] if the operating system's random source fails.
    pub fn generate() -> Result<Self, AuthError> {
        let mut bytes = [0u8; 32];
        getrandom::getrandom(&mut bytes)
            .map_err(|e| AuthError::backend("the operating system's random source failed", e))?;
        Ok(Self::from_secret(URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// Reads an id: [`MIN_LEN`](Self::MIN_LEN) to [`MAX_LEN`](Self::MAX_LEN)
    /// characters of the base64url alphabet (`A-Z a-z 0-9 - _`). `None`
    /// otherwise.
    pub fn parse(id: &str) -> Option<Self> {
        let valid = (Self::MIN_LEN..=Self::MAX_LEN).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        valid.then(|| Self::from_secret(id.to_owned()))
    }

    fn from_secret(secret: String) -> Self {
        let digest = SessionDigest(Sha256::digest(secret.as_bytes()).into());
        Self {
            secret: secret.into_boxed_str(),
            digest,
        }
    }

    /// The id itself, to put into a cookie or (for stores that must) to
    /// look a session up with. Prefer [`digest`](Self::digest) as a key.
    pub fn expose_secret(&self) -> &str {
        &self.secret
    }

    /// The SHA-256 digest of the id: the key to store the session under.
    pub fn digest(&self) -> &SessionDigest {
        &self.digest
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionId(<redacted>)")
    }
}

/// The SHA-256 digest of a [`SessionId`]: what a store keys a session by,
/// and the public handle of a session.
///
/// Its `Display` form (base64url, 43 characters) is what
/// [`SessionAuthenticator`] puts into [`Identity::session_id`]: it names the
/// session in logs and revocation without being able to open it.
///
/// ```
/// use tower_ws_auth::session::SessionId;
///
/// let id = SessionId::parse("abcdefghijklmnopqrstuv").expect("22 base64url characters");
/// let handle = id.digest().to_string();
/// assert_eq!(handle.len(), 43);
/// assert_ne!(handle, id.expose_secret());
/// assert_eq!(id.digest().as_bytes().len(), 32);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionDigest([u8; 32]);

impl SessionDigest {
    /// The digest's 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for SessionDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&URL_SAFE_NO_PAD.encode(self.0))
    }
}

impl fmt::Debug for SessionDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let full = self.to_string();
        write!(f, "SessionDigest({}…)", full.get(..12).unwrap_or(&full))
    }
}

/// A session as a [`SessionStore`] returns it: the application's data and
/// when the session ends.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use tower_ws_auth::session::SessionRecord;
///
/// let record = SessionRecord::new("alice", Some(SystemTime::now() + Duration::from_secs(60)));
/// assert_eq!(record.data, "alice");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord<D> {
    /// What the application stored in the session (a user id, roles...).
    pub data: D,
    /// When the session ends; `None` for a session without expiry.
    /// [`SessionAuthenticator`] refuses a session at or past its end and
    /// gives the [`Identity`] this expiry.
    pub expires_at: Option<SystemTime>,
}

impl<D> SessionRecord<D> {
    /// A record of `data` ending at `expires_at`.
    pub fn new(data: D, expires_at: Option<SystemTime>) -> Self {
        Self { data, expires_at }
    }
}

/// Where sessions live: loads a session by its id.
///
/// Key your storage by [`SessionId::digest`] (see [`SessionDigest`]), so a
/// leaked table or a timing side channel in the lookup yields no usable
/// session id. Return `Ok(None)` for an unknown or expired session (401)
/// and [`AuthError::Unavailable`] when the backend cannot answer (503 with
/// `Retry-After`, never 401, never an upgrade: build it with
/// [`AuthError::backend`] or [`AuthError::unavailable`], and never put a
/// session id or a cookie into its reason or source). Any other
/// [`AuthError`] is answered as such (a locked account can be
/// [`AuthError::Forbidden`]). Give your database client
/// a timeout: a store that hangs holds the handshake until it answers.
///
/// Implemented by [`MemorySessionStore`], by
/// [`TowerSessionStore`] (feature
/// `tower-sessions`) for every tower-sessions store, and by `Arc<S>`.
///
/// ```
/// use tower_ws_auth::{AuthError, session::{SessionId, SessionRecord, SessionStore}};
///
/// #[derive(Clone)]
/// struct User { id: u64, roles: Vec<String> }
///
/// struct Postgres;
///
/// impl SessionStore for Postgres {
///     type Data = User;
///
///     async fn load(&self, id: &SessionId) -> Result<Option<SessionRecord<User>>, AuthError> {
///         // SELECT user_id, roles, expires_at FROM sessions WHERE digest = $1
///         let _key = id.digest().as_bytes();
///         Ok(None)
///     }
/// }
/// ```
pub trait SessionStore: Send + Sync + 'static {
    /// What the application keeps in a session.
    type Data: Send;

    /// The session of `id`, `None` if there is none (or it has expired).
    fn load(
        &self,
        id: &SessionId,
    ) -> impl Future<Output = Result<Option<SessionRecord<Self::Data>>, AuthError>> + Send;
}

impl<S: SessionStore> SessionStore for Arc<S> {
    type Data = S::Data;

    fn load(
        &self,
        id: &SessionId,
    ) -> impl Future<Output = Result<Option<SessionRecord<Self::Data>>, AuthError>> + Send {
        (**self).load(id)
    }
}

/// Authenticates a session cookie: verifies it with the [`SessionCookie`]
/// (signature or encryption), loads the session from a [`SessionStore`]
/// and maps its data to an [`Identity`] with a function of yours.
///
/// For each cookie credential:
///
/// 1. a signed or private cookie that does not verify is refused (401)
///    before the store is touched, and so is a value that is not a
///    [`SessionId`];
/// 2. the store is asked for the session: an error is
///    [`AuthError::Unavailable`] (503 + `Retry-After`), an unknown session
///    401;
/// 3. a session at or past its `expires_at` is refused (401), whatever the
///    store says;
/// 4. your function turns the session data into an [`IdentityBuilder`] (or
///    refuses it, for example a session nobody has logged into yet); the
///    authenticator sets the identity's [`session_id`](Identity::session_id)
///    to the session's [`SessionDigest`] and its expiry to the session's.
///
/// Credentials from other carriers get [`AuthError::NotApplicable`], so
/// [`or`](Authenticator::or) can send them to another authenticator.
///
/// The layer's cookie carrier must read the cookie this authenticator
/// verifies: pass [`SessionCookie::name`] to
/// [`WsAuthLayer::cookie`](crate::WsAuthLayer::cookie), which also requires
/// the [`OriginPolicy`](crate::OriginPolicy) every cookie credential goes
/// through.
///
/// ```
/// use std::time::Duration;
/// use tower_ws_auth::session::cookie::Key;
/// use tower_ws_auth::{AuthMethod, Identity, OriginPolicy, WsAuthLayer, session::{MemorySessionStore, SessionAuthenticator, SessionCookie}};
///
/// #[derive(Clone)]
/// struct User { name: String, roles: Vec<String> }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = MemorySessionStore::<User>::new(Duration::from_secs(8 * 3600));
/// let cookie = SessionCookie::new("session")?.signed(Key::generate());
/// let auth = SessionAuthenticator::new(store.clone(), cookie.clone(), |user: &User| {
///     Ok(Identity::builder(user.name.clone(), AuthMethod::Session).scopes(user.roles.iter().cloned()))
/// });
/// let layer = WsAuthLayer::new(auth)
///     .cookie(cookie.name(), OriginPolicy::from_origins(["https://app.example.com"])?)?;
/// # let _ = layer;
/// # Ok(())
/// # }
/// ```
pub struct SessionAuthenticator<S, F> {
    store: S,
    cookie: SessionCookie,
    identity: F,
}

impl<S, F> fmt::Debug for SessionAuthenticator<S, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The store's own `Debug` may print sessions; its type is enough.
        f.debug_struct("SessionAuthenticator")
            .field("store", &std::any::type_name::<S>())
            .field("cookie", &self.cookie)
            .finish_non_exhaustive()
    }
}

impl<S: Clone, F: Clone> Clone for SessionAuthenticator<S, F> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            cookie: self.cookie.clone(),
            identity: self.identity.clone(),
        }
    }
}

impl<S, F> SessionAuthenticator<S, F>
where
    S: SessionStore,
    F: Fn(&S::Data) -> Result<IdentityBuilder, AuthError> + Send + Sync + 'static,
{
    /// An authenticator of the sessions in `store`, carried by `cookie`,
    /// whose data `identity` maps to an [`Identity`].
    ///
    /// `identity` returns a builder (usually
    /// `Identity::builder(user_id, AuthMethod::Session)` with roles as
    /// scopes and typed claims), or an error to refuse the session:
    /// [`AuthError::invalid`] (401) for a session without a logged-in user,
    /// [`AuthError::forbidden`] (403) for a user who may not connect.
    pub fn new(store: S, cookie: SessionCookie, identity: F) -> Self {
        Self {
            store,
            cookie,
            identity,
        }
    }
}

impl<S, F> SessionAuthenticator<S, F> {
    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The session cookie.
    pub fn cookie(&self) -> &SessionCookie {
        &self.cookie
    }
}

impl<S, F> Authenticator for SessionAuthenticator<S, F>
where
    S: SessionStore,
    F: Fn(&S::Data) -> Result<IdentityBuilder, AuthError> + Send + Sync + 'static,
{
    fn name(&self) -> &'static str {
        "session"
    }

    async fn authenticate(
        &self,
        credential: &Credential,
        _request: &Parts,
    ) -> Result<Identity, AuthError> {
        if *credential.carrier() != Carrier::Cookie {
            return Err(AuthError::NotApplicable);
        }
        let Some(id) = self.cookie.open(credential.expose_secret()) else {
            return Err(AuthError::invalid(
                "session cookie does not verify or holds no session id",
            ));
        };
        let Some(record) = self.store.load(&id).await? else {
            return Err(AuthError::invalid("unknown session"));
        };
        if record.expires_at.is_some_and(|at| SystemTime::now() >= at) {
            return Err(AuthError::invalid("session expired"));
        }
        let mut identity = (self.identity)(&record.data)?.session_id(id.digest().to_string());
        if let Some(at) = record.expires_at {
            identity = identity.expires_at(at);
        }
        Ok(identity.build())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AuthMethod;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// A store whose sessions never leave it, expired or not: the
    /// authenticator must still refuse the expired ones.
    struct Fixed {
        expires_at: Option<SystemTime>,
        loads: AtomicUsize,
        fail: bool,
    }

    impl SessionStore for Fixed {
        type Data = &'static str;

        async fn load(
            &self,
            _id: &SessionId,
        ) -> Result<Option<SessionRecord<&'static str>>, AuthError> {
            self.loads.fetch_add(1, Ordering::SeqCst);
            if self.fail {
                return Err(AuthError::unavailable("down").with_retry_after(Duration::from_secs(7)));
            }
            Ok(Some(SessionRecord::new("alice", self.expires_at)))
        }
    }

    fn fixed(expires_at: Option<SystemTime>, fail: bool) -> Fixed {
        Fixed {
            expires_at,
            loads: AtomicUsize::new(0),
            fail,
        }
    }

    fn identity(user: &&'static str) -> Result<IdentityBuilder, AuthError> {
        Ok(Identity::builder(*user, AuthMethod::Session))
    }

    type Auth =
        SessionAuthenticator<Fixed, fn(&&'static str) -> Result<IdentityBuilder, AuthError>>;

    fn auth(store: Fixed) -> Auth {
        SessionAuthenticator::new(store, SessionCookie::new("sid").unwrap(), identity)
    }

    async fn run(auth: &Auth, carrier: Carrier, secret: &str) -> Result<Identity, AuthError> {
        let parts = http::Request::new(()).into_parts().0;
        auth.authenticate(&Credential::new(carrier, secret), &parts)
            .await
    }

    #[tokio::test]
    async fn expiry_is_enforced_and_carried() {
        let id = SessionId::generate().unwrap();
        let ended = SystemTime::now() - Duration::from_secs(1);
        let past = auth(fixed(Some(ended), false));
        let err = run(&past, Carrier::Cookie, id.expose_secret())
            .await
            .unwrap_err();
        assert!(matches!(err, AuthError::Invalid(_)), "{err:?}");
        assert_eq!(past.store().loads.load(Ordering::SeqCst), 1);

        let at = SystemTime::now() + Duration::from_secs(60);
        let live = auth(fixed(Some(at), false));
        let identity = run(&live, Carrier::Cookie, id.expose_secret())
            .await
            .unwrap();
        assert_eq!(identity.subject(), "alice");
        assert_eq!(identity.method(), AuthMethod::Session);
        assert_eq!(identity.expires_at(), Some(at));
        assert_eq!(identity.session_id(), Some(&*id.digest().to_string()));
        assert_ne!(identity.session_id(), Some(id.expose_secret()));
    }

    #[tokio::test]
    async fn store_errors_are_unavailable_and_garbage_never_reaches_the_store() {
        let down = auth(fixed(None, true));
        let id = SessionId::generate().unwrap();
        let err = run(&down, Carrier::Cookie, id.expose_secret())
            .await
            .unwrap_err();
        assert!(
            matches!(err, AuthError::Unavailable { retry_after: Some(d), .. } if d == Duration::from_secs(7)),
            "{err:?}"
        );
        assert_eq!(down.store().loads.load(Ordering::SeqCst), 1);

        for junk in ["short", "has spaces, and commas too", &"a".repeat(257)] {
            let err = run(&down, Carrier::Cookie, junk).await.unwrap_err();
            assert!(matches!(err, AuthError::Invalid(_)), "{err:?}");
        }
        let err = run(&down, Carrier::Bearer, id.expose_secret())
            .await
            .unwrap_err();
        assert!(err.is_not_applicable());
        assert_eq!(down.store().loads.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn ids_are_random_and_redacted() {
        let a = SessionId::generate().unwrap();
        let b = SessionId::generate().unwrap();
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert_ne!(a.digest(), b.digest());
        assert_eq!(a.expose_secret().len(), 43);
        assert!(SessionId::parse(a.expose_secret()).is_some());
        assert!(!format!("{a:?}").contains(a.expose_secret()));
        let digest = a.digest().to_string();
        assert!(!format!("{:?}", a.digest()).contains(&digest));
        // Known vector: SHA-256("abcdefghijklmnopqrstuv"), base64url.
        let known = SessionId::parse("abcdefghijklmnopqrstuv").unwrap();
        assert_eq!(
            known.digest().to_string(),
            URL_SAFE_NO_PAD.encode(Sha256::digest(b"abcdefghijklmnopqrstuv"))
        );
        assert!(SessionId::parse(&"a".repeat(21)).is_none());
        assert!(SessionId::parse(&"a".repeat(256)).is_some());
        assert!(SessionId::parse("abcdefghijklmnopqrstu=").is_none());
    }
}
