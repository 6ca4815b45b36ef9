//! [`TowerSessionStore`]: the sessions of tower-sessions, through any of its
//! stores.

use std::time::SystemTime;

use tower_sessions_core::SessionStore as TowerStore;
use tower_sessions_core::session::{Id, Record};

use super::{SessionId, SessionRecord, SessionStore, StoreError};

/// A [`SessionStore`] over any store of tower-sessions 0.14
/// (`tower_sessions::MemoryStore`, `tower-sessions-redis-store`,
/// `tower-sessions-sqlx-store`, ...): WebSocket upgrades are authenticated
/// with the sessions your app already manages with tower-sessions.
///
/// The session data is tower-sessions' [`Record`]; your function for
/// [`SessionAuthenticator`](crate::SessionAuthenticator) reads the
/// logged-in user from `record.data` (the key your login handler
/// inserted). The record's `expiry_date` becomes the identity's expiry, and
/// a record past it is refused. Loading a session does not extend it.
///
/// Describe the cookie as you configured `SessionManagerLayer`: its name
/// (tower-sessions' default is `id`) and, if you called `with_signed(key)`
/// or `with_private(key)`, [`SessionCookie::signed`](crate::SessionCookie::signed)
/// or [`SessionCookie::private`](crate::SessionCookie::private) with the same
/// key. Only cookie values tower-sessions can have issued reach the store.
///
/// ```
/// use tower_sessions::{MemoryStore, SessionManagerLayer, cookie::Key, session::Record};
/// use tower_ws_auth::{AuthError, AuthMethod, Identity, OriginPolicy, SessionAuthenticator, SessionCookie, TowerSessionStore, WsAuthLayer};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let key = Key::generate();
/// let store = MemoryStore::default();
/// let sessions = SessionManagerLayer::new(store.clone()).with_signed(key.clone());
///
/// let auth = SessionAuthenticator::new(
///     TowerSessionStore::new(store),
///     SessionCookie::new("id").signed(key),
///     |record: &Record| match record.data.get("user_id").and_then(|v| v.as_str()) {
///         Some(user) => Ok(Identity::builder(user, AuthMethod::Session)),
///         None => Err(AuthError::invalid("session without a logged-in user")),
///     },
/// );
/// let ws_auth = WsAuthLayer::new(auth).cookie("id", OriginPolicy::from_origins(["https://app.example.com"])?);
/// # let _ = (sessions, ws_auth);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct TowerSessionStore<S> {
    store: S,
}

impl<S> TowerSessionStore<S> {
    /// Wraps a tower-sessions store (cloned from the one given to
    /// `SessionManagerLayer`: stores share their backend between clones).
    pub fn new(store: S) -> Self {
        Self { store }
    }

    /// The tower-sessions store.
    pub fn get_ref(&self) -> &S {
        &self.store
    }

    /// Unwraps the tower-sessions store.
    pub fn into_inner(self) -> S {
        self.store
    }
}

impl<S: TowerStore> SessionStore for TowerSessionStore<S> {
    type Data = Record;

    async fn load(&self, id: &SessionId) -> Result<Option<SessionRecord<Record>>, StoreError> {
        // tower-sessions ids are 128 bits in 22 base64url characters; other
        // values name no session, and are not worth a round trip.
        let Ok(id) = id.expose_secret().parse::<Id>() else {
            return Ok(None);
        };
        match self.store.load(&id).await {
            Ok(Some(record)) => {
                let expires_at = SystemTime::from(record.expiry_date);
                Ok(Some(SessionRecord::new(record, Some(expires_at))))
            }
            Ok(None) => Ok(None),
            Err(error) => Err(StoreError::backend("tower-sessions store failed", error)),
        }
    }
}
