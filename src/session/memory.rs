//! [`MemorySessionStore`]: sessions in a hash map, keyed by digest, with
//! expiry.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::num::NonZeroUsize;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, SystemTime};

use super::{SessionDigest, SessionId, SessionRecord, SessionStore};
use crate::error::AuthError;
use crate::identity::deadline;

/// Sessions below this count are never swept on insertion.
const MIN_SWEEP: usize = 64;

/// An in-memory [`SessionStore`] with expiry, for tests and single-instance
/// applications (sessions do not survive a restart and are not shared
/// between instances: use a database or tower-sessions' Redis store for
/// that).
///
/// Sessions are keyed by the SHA-256 [`SessionDigest`] of their id; the ids
/// themselves are never kept. Each session ends `ttl` after it was created
/// or last [`touch`](Self::touch)ed. Expired sessions are never returned,
/// and are dropped by [`purge_expired`](Self::purge_expired) or, in bulk,
/// when the store has doubled in size since the last sweep.
///
/// The store is bounded: it holds at most
/// [`max_sessions`](Self::max_sessions) sessions
/// ([`DEFAULT_MAX_SESSIONS`](Self::DEFAULT_MAX_SESSIONS) with
/// [`new`](Self::new), any other cap with [`bounded`](Self::bounded)). At
/// the cap, [`create`](Self::create) first drops the expired sessions
/// (at most one sweep each time the earliest expiry passes, so refused
/// logins cost no scan), and if the store is still full it refuses the new
/// session with [`AuthError::Unavailable`]: a login route answers 503. Live sessions
/// are never evicted to make room, so whoever can log in repeatedly cannot
/// log other users out.
///
/// Cloning is cheap and clones share the sessions: give one to the
/// [`SessionAuthenticator`](crate::SessionAuthenticator) and one to your
/// login and logout routes.
///
/// ```
/// use std::time::Duration;
/// use tower_ws_auth::MemorySessionStore;
///
/// let store = MemorySessionStore::new(Duration::from_secs(3600));
/// let id = store.create("alice".to_owned())?;
/// assert_eq!(store.len(), 1);
/// assert!(store.touch(&id).is_some());
/// assert!(store.delete(&id));
/// assert!(store.touch(&id).is_none());
/// # Ok::<(), tower_ws_auth::AuthError>(())
/// ```
pub struct MemorySessionStore<D> {
    inner: Arc<Inner<D>>,
}

struct Inner<D> {
    ttl: Duration,
    max_sessions: NonZeroUsize,
    sessions: RwLock<Sessions<D>>,
}

struct Sessions<D> {
    map: HashMap<SessionDigest, Entry<D>>,
    /// Sweep expired sessions when an insertion brings the map to this size.
    sweep_at: usize,
    /// No session held expires before this (a lower bound: touching or
    /// deleting a session keeps it one); `None` when the store is empty. A
    /// full store is not swept again before it.
    earliest_expiry: Option<SystemTime>,
}

struct Entry<D> {
    data: D,
    expires_at: SystemTime,
}

impl<D> Clone for MemorySessionStore<D> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<D> fmt::Debug for MemorySessionStore<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemorySessionStore")
            .field("ttl", &self.inner.ttl)
            .field("max_sessions", &self.inner.max_sessions)
            .field("sessions", &self.read().map.len())
            .finish()
    }
}

impl<D> MemorySessionStore<D> {
    /// The session cap of [`new`](Self::new): 100,000.
    pub const DEFAULT_MAX_SESSIONS: NonZeroUsize = NonZeroUsize::new(100_000).unwrap();

    /// An empty store whose sessions last `ttl` after creation or their last
    /// [`touch`](Self::touch), holding at most
    /// [`DEFAULT_MAX_SESSIONS`](Self::DEFAULT_MAX_SESSIONS)
    /// (100,000) sessions.
    pub fn new(ttl: Duration) -> Self {
        Self::bounded(ttl, Self::DEFAULT_MAX_SESSIONS)
    }

    /// An empty store like [`new`](Self::new) holding at most
    /// `max_sessions` sessions (see the type's documentation for what
    /// happens at the cap).
    ///
    /// ```
    /// use std::num::NonZeroUsize;
    /// use std::time::Duration;
    /// use tower_ws_auth::MemorySessionStore;
    ///
    /// let store = MemorySessionStore::bounded(Duration::from_secs(3600), NonZeroUsize::MIN);
    /// let alice = store.create("alice")?;
    /// assert!(store.create("bob").is_err(), "full: the login answers 503");
    /// store.delete(&alice);
    /// assert!(store.create("bob").is_ok());
    /// # Ok::<(), tower_ws_auth::AuthError>(())
    /// ```
    pub fn bounded(ttl: Duration, max_sessions: NonZeroUsize) -> Self {
        Self {
            inner: Arc::new(Inner {
                ttl,
                max_sessions,
                sessions: RwLock::new(Sessions {
                    map: HashMap::new(),
                    sweep_at: MIN_SWEEP,
                    earliest_expiry: None,
                }),
            }),
        }
    }

    /// The time to live of new and touched sessions.
    pub fn ttl(&self) -> Duration {
        self.inner.ttl
    }

    /// The most sessions the store holds.
    pub fn max_sessions(&self) -> NonZeroUsize {
        self.inner.max_sessions
    }

    // No code panics while holding the lock, so a poisoned lock still holds
    // consistent data.
    fn read(&self) -> RwLockReadGuard<'_, Sessions<D>> {
        self.inner
            .sessions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Sessions<D>> {
        self.inner
            .sessions
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts a session holding `data`, lasting the store's `ttl`, and
    /// returns its new id (to [`issue`](crate::SessionCookie::issue) in a
    /// cookie). Call it at login, so every login gets a fresh id (no
    /// session fixation).
    ///
    /// # Errors
    ///
    /// If the store holds [`max_sessions`](Self::max_sessions) live
    /// sessions, or if the operating system's random source fails.
    pub fn create(&self, data: D) -> Result<SessionId, AuthError> {
        self.create_with_ttl(data, self.inner.ttl)
    }

    /// Starts a session holding `data` that ends after `ttl` (touching it
    /// later extends it by the store's `ttl`).
    ///
    /// # Errors
    ///
    /// As [`create`](Self::create).
    pub fn create_with_ttl(&self, data: D, ttl: Duration) -> Result<SessionId, AuthError> {
        let id = SessionId::generate()?;
        let entry = Entry {
            data,
            expires_at: deadline(ttl),
        };
        let mut sessions = self.write();
        let now = SystemTime::now();
        if sessions.map.len() >= self.inner.max_sessions.get() {
            if sessions
                .earliest_expiry
                .is_none_or(|earliest| now >= earliest)
            {
                sessions.sweep(now);
            }
            if sessions.map.len() >= self.inner.max_sessions.get() {
                return Err(AuthError::unavailable(
                    "the in-memory session store is full",
                ));
            }
        }
        sessions.earliest_expiry = Some(
            sessions
                .earliest_expiry
                .map_or(entry.expires_at, |earliest| earliest.min(entry.expires_at)),
        );
        sessions.map.insert(*id.digest(), entry);
        if sessions.map.len() >= sessions.sweep_at {
            sessions.sweep(now);
        }
        Ok(id)
    }

    /// Extends the session of `id` to the store's `ttl` from now and returns
    /// its new end; `None` if there is no such live session.
    pub fn touch(&self, id: &SessionId) -> Option<SystemTime> {
        let now = SystemTime::now();
        let mut sessions = self.write();
        let entry = sessions.map.get_mut(id.digest())?;
        if entry.expires_at <= now {
            return None;
        }
        entry.expires_at = deadline(self.inner.ttl);
        Some(entry.expires_at)
    }

    /// Ends the session of `id` (at logout); `true` if it existed.
    /// Connections already authenticated with it stay open: close them
    /// through your connection registry.
    pub fn delete(&self, id: &SessionId) -> bool {
        self.write().map.remove(id.digest()).is_some()
    }

    /// Drops every expired session and returns how many there were.
    pub fn purge_expired(&self) -> usize {
        let mut sessions = self.write();
        let before = sessions.map.len();
        sessions.sweep(SystemTime::now());
        before - sessions.map.len()
    }

    /// The number of sessions held, including expired ones not yet purged.
    pub fn len(&self) -> usize {
        self.read().map.len()
    }

    /// `true` if no session is held.
    pub fn is_empty(&self) -> bool {
        self.read().map.is_empty()
    }
}

impl<D> Sessions<D> {
    /// Drops the sessions expired at `now` and notes when the next one ends.
    fn sweep(&mut self, now: SystemTime) {
        let mut earliest = None::<SystemTime>;
        self.map.retain(|_, entry| {
            let live = entry.expires_at > now;
            if live {
                earliest = Some(earliest.map_or(entry.expires_at, |e| e.min(entry.expires_at)));
            }
            live
        });
        self.earliest_expiry = earliest;
        self.sweep_at = (self.map.len() * 2).max(MIN_SWEEP);
    }
}

impl<D: Clone + Send + Sync + 'static> SessionStore for MemorySessionStore<D> {
    type Data = D;

    fn load(
        &self,
        id: &SessionId,
    ) -> impl Future<Output = Result<Option<SessionRecord<D>>, AuthError>> + Send {
        let now = SystemTime::now();
        let found = self
            .read()
            .map
            .get(id.digest())
            .filter(|entry| entry.expires_at > now)
            .map(|entry| SessionRecord::new(entry.data.clone(), Some(entry.expires_at)));
        std::future::ready(Ok(found))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load<D: Clone + Send + Sync + 'static>(
        store: &MemorySessionStore<D>,
        id: &SessionId,
    ) -> Option<SessionRecord<D>> {
        let future = store.load(id);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match std::pin::pin!(future).poll(&mut cx) {
            std::task::Poll::Ready(result) => result.unwrap(),
            std::task::Poll::Pending => unreachable!("the memory store answers at once"),
        }
    }

    #[test]
    fn lifecycle() {
        let store = MemorySessionStore::new(Duration::from_secs(60));
        let id = store.create("alice").unwrap();
        let record = load(&store, &id).unwrap();
        assert_eq!(record.data, "alice");
        let first_end = record.expires_at.unwrap();
        assert!(first_end > SystemTime::now() + Duration::from_secs(59));

        let parsed = SessionId::parse(id.expose_secret()).unwrap();
        assert_eq!(load(&store, &parsed).unwrap().data, "alice");
        assert!(load(&store, &SessionId::generate().unwrap()).is_none());

        assert!(store.touch(&id).unwrap() >= first_end);
        assert!(store.delete(&id));
        assert!(!store.delete(&id));
        assert!(load(&store, &id).is_none());
        assert!(store.is_empty());
    }

    #[test]
    fn expired_sessions_are_invisible_then_swept() {
        let store = MemorySessionStore::new(Duration::from_secs(60));
        let gone = store.create_with_ttl("old", Duration::ZERO).unwrap();
        assert!(load(&store, &gone).is_none());
        assert!(store.touch(&gone).is_none());
        assert_eq!(store.purge_expired(), 1);

        for _ in 0..MIN_SWEEP {
            store.create_with_ttl("old", Duration::ZERO).unwrap();
        }
        // The insertion that reached the threshold swept the expired ones.
        assert!(store.len() < MIN_SWEEP, "{}", store.len());
        let live = store.create("new").unwrap();
        assert_eq!(load(&store, &live).unwrap().data, "new");
    }

    #[test]
    fn the_cap_refuses_new_sessions_and_never_evicts_live_ones() {
        let cap = NonZeroUsize::new(3).unwrap();
        let store = MemorySessionStore::bounded(Duration::from_secs(60), cap);
        assert_eq!(store.max_sessions(), cap);
        let live: Vec<_> = (0..3).map(|i| store.create(i).unwrap()).collect();
        let refused = store.create(9).unwrap_err();
        assert!(
            matches!(&refused, AuthError::Unavailable { reason, .. } if reason == "the in-memory session store is full"),
            "{refused:?}"
        );
        assert_eq!(store.len(), 3);
        for id in &live {
            assert!(load(&store, id).is_some(), "live sessions are kept");
        }
        // A logout makes room.
        assert!(store.delete(&live[0]));
        let fourth = store.create(4).unwrap();
        assert!(store.create(5).is_err());
        assert!(load(&store, &fourth).is_some());

        // Expired sessions are swept to make room, once their time has come.
        let store = MemorySessionStore::bounded(Duration::from_secs(60), cap);
        for _ in 0..2 {
            store.create_with_ttl(0, Duration::ZERO).unwrap();
        }
        store.create(1).unwrap();
        assert_eq!(store.len(), 3);
        let fresh = store.create(2).unwrap();
        assert_eq!(store.len(), 2, "the two expired ones were swept");
        assert!(load(&store, &fresh).is_some());
        assert_eq!(
            MemorySessionStore::<u8>::new(Duration::from_secs(1)).max_sessions(),
            MemorySessionStore::<u8>::DEFAULT_MAX_SESSIONS
        );
    }

    #[test]
    fn keys_are_digests_and_debug_shows_no_ids() {
        let store = MemorySessionStore::new(Duration::from_secs(60));
        let id = store.create(1u8).unwrap();
        assert!(store.read().map.contains_key(id.digest()));
        let shown = format!("{store:?}");
        assert!(!shown.contains(id.expose_secret()), "{shown}");
        assert!(shown.contains("sessions: 1"), "{shown}");
    }
}
