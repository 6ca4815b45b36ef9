//! [`TowerSessionStore`]: the sessions of tower-sessions, through any of its
//! stores.

use std::collections::HashMap;
use std::fmt;
use std::time::SystemTime;

use tower_sessions_core::SessionStore as TowerStore;
use tower_sessions_core::session::Id;

use super::{SessionId, SessionRecord, SessionStore};
use crate::error::AuthError;

/// A [`SessionStore`] over any store of tower-sessions 0.14
/// (`tower_sessions::MemoryStore`, `tower-sessions-redis-store`,
/// `tower-sessions-sqlx-store`, ...): WebSocket upgrades are authenticated
/// with the sessions your app already manages with tower-sessions.
///
/// The session data is the `data` map of tower-sessions' `Record`
/// ([`TowerSessionData`]): your function for
/// [`SessionAuthenticator`](crate::SessionAuthenticator) reads the
/// logged-in user from it (under the key your login handler inserted). The
/// record's `expiry_date` becomes the identity's expiry, and a record past
/// it is refused. Loading a session does not extend it. The record's id, the
/// session secret, is not handed on.
///
/// Describe the cookie as you configured `SessionManagerLayer`: its name
/// (tower-sessions' default is `id`) and, if you called `with_signed(key)`
/// or `with_private(key)`, [`SessionCookie::signed`](crate::SessionCookie::signed)
/// or [`SessionCookie::private`](crate::SessionCookie::private) with the same
/// key. Only cookie values tower-sessions can have issued reach the store.
///
/// ```
/// use tower_sessions::{MemoryStore, SessionManagerLayer, cookie::Key};
/// use tower_ws_auth::{
///     AuthError, AuthMethod, Identity, OriginPolicy, SessionAuthenticator, SessionCookie,
///     TowerSessionData, TowerSessionStore, WsAuthLayer,
/// };
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let key = Key::generate();
/// let store = MemoryStore::default();
/// let sessions = SessionManagerLayer::new(store.clone()).with_signed(key.clone());
///
/// let auth = SessionAuthenticator::new(
///     TowerSessionStore::new(store),
///     SessionCookie::new("id").signed(key),
///     |data: &TowerSessionData| match data.get("user_id").and_then(|v| v.as_str()) {
///         Some(user) => Ok(Identity::builder(user, AuthMethod::Session)),
///         None => Err(AuthError::invalid("session without a logged-in user")),
///     },
/// );
/// let ws_auth = WsAuthLayer::new(auth).cookie("id", OriginPolicy::from_origins(["https://app.example.com"])?);
/// # let _ = (sessions, ws_auth);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct TowerSessionStore<S> {
    store: S,
}

/// The data of a tower-sessions session: `Record::data`, what
/// `Session::insert` stored, as JSON values by key.
pub type TowerSessionData = HashMap<String, serde_json::Value>;

// Not the store's own `Debug`: tower-sessions' `MemoryStore` prints its
// records, session ids included.
impl<S> fmt::Debug for TowerSessionStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TowerSessionStore")
            .field("store", &std::any::type_name::<S>())
            .finish()
    }
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
    type Data = TowerSessionData;

    async fn load(
        &self,
        id: &SessionId,
    ) -> Result<Option<SessionRecord<TowerSessionData>>, AuthError> {
        // tower-sessions ids are 128 bits in 22 base64url characters; other
        // values name no session, and are not worth a round trip.
        let Ok(id) = id.expose_secret().parse::<Id>() else {
            return Ok(None);
        };
        match self.store.load(&id).await {
            Ok(Some(record)) => {
                let expires_at = SystemTime::from(record.expiry_date);
                Ok(Some(SessionRecord::new(record.data, Some(expires_at))))
            }
            Ok(None) => Ok(None),
            Err(error) => Err(AuthError::backend("tower-sessions store failed", error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower_sessions::MemoryStore;
    use tower_sessions::cookie::time;
    use tower_sessions_core::session::Record;

    #[tokio::test]
    async fn loads_data_and_expiry_and_hides_ids() {
        let store = MemoryStore::default();
        let expiry = time::OffsetDateTime::now_utc() + time::Duration::minutes(5);
        let mut record = Record {
            id: Id::default(),
            data: HashMap::from([("user_id".to_owned(), serde_json::json!("alice"))]),
            expiry_date: expiry,
        };
        store.create(&mut record).await.unwrap();
        let secret = record.id.to_string();

        let adapter = TowerSessionStore::new(store);
        let id = SessionId::parse(&secret).unwrap();
        let loaded = adapter.load(&id).await.unwrap().unwrap();
        assert_eq!(loaded.data["user_id"], "alice");
        assert_eq!(loaded.expires_at, Some(SystemTime::from(expiry)));

        // Valid base64url of the wrong length names no tower-sessions session.
        let other = SessionId::parse(&format!("{secret}AAAA")).unwrap();
        assert!(adapter.load(&other).await.unwrap().is_none());

        // tower-sessions' MemoryStore prints its records; the adapter does not.
        assert!(format!("{:?}", adapter.get_ref()).contains(&record.id.0.to_string()));
        assert!(!format!("{adapter:?}").contains(&record.id.0.to_string()));
        assert!(!format!("{adapter:?}").contains(&secret));
    }
}
