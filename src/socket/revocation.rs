//! [`Revocations`]: close live connections of a subject, a session or a
//! token, on this instance and on every instance sharing a bus.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use futures_util::task::AtomicWaker;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc};

use crate::authenticator::BoxFuture;
use crate::identity::Identity;

/// What to revoke.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Revocation {
    /// Every connection of this subject.
    Subject(String),
    /// Every connection of this session ([`Identity::session_id`]).
    Session(String),
    /// Every connection authenticated by this token ([`Identity::token_id`]).
    Token(String),
}

impl Revocation {
    /// `true` if a connection of `identity` is revoked by this.
    pub fn matches(&self, identity: &Identity) -> bool {
        match self {
            Self::Subject(subject) => identity.subject() == subject,
            Self::Session(session) => identity.session_id() == Some(session.as_str()),
            Self::Token(token) => identity.token_id() == Some(token.as_str()),
        }
    }
}

/// A revocation bus failed (publishing, or subscribing).
#[derive(Debug, thiserror::Error)]
#[error("revocation bus: {0}")]
pub struct BusError(#[source] Box<dyn std::error::Error + Send + Sync>);

impl BusError {
    /// Wraps the bus's own error.
    pub fn new(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self(error.into())
    }
}

/// Carries revocations between server instances.
///
/// [`publish`](Self::publish) sends a revocation to every instance (this
/// one included, possibly); [`subscribe`](Self::subscribe) yields those of
/// every instance. Implementations handle reconnection themselves: the
/// receiver stays open across outages of the transport.
pub trait RevocationBus: Send + Sync + 'static {
    /// Sends `revocation` to every instance.
    fn publish<'a>(&'a self, revocation: &'a Revocation) -> BoxFuture<'a, Result<(), BusError>>;

    /// Starts receiving revocations; the channel closes when the bus shuts
    /// down.
    fn subscribe(&self) -> BoxFuture<'_, Result<mpsc::Receiver<Revocation>, BusError>>;
}

/// An in-process [`RevocationBus`]: registries in one process that share a
/// `LocalBus` (clones of it) see each other's revocations.
#[derive(Clone)]
pub struct LocalBus {
    sender: broadcast::Sender<Revocation>,
}

impl fmt::Debug for LocalBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalBus").finish_non_exhaustive()
    }
}

impl Default for LocalBus {
    fn default() -> Self {
        Self::new()
    }
}

impl LocalBus {
    /// A new bus.
    pub fn new() -> Self {
        Self {
            sender: broadcast::channel(1024).0,
        }
    }
}

impl RevocationBus for LocalBus {
    fn publish<'a>(&'a self, revocation: &'a Revocation) -> BoxFuture<'a, Result<(), BusError>> {
        // No subscriber yet is not an error: there is nobody to close.
        let _ = self.sender.send(revocation.clone());
        Box::pin(std::future::ready(Ok(())))
    }

    fn subscribe(&self) -> BoxFuture<'_, Result<mpsc::Receiver<Revocation>, BusError>> {
        let mut source = self.sender.subscribe();
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(async move {
            loop {
                match source.recv().await {
                    Ok(revocation) => {
                        if tx.send(revocation).await.is_err() {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(target: "tower_ws_auth", missed, "revocation bus lagged");
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Box::pin(std::future::ready(Ok(rx)))
    }
}

struct Signal {
    /// The guarded socket's task, woken by the revocation.
    waker: AtomicWaker,
    revoked: AtomicBool,
}

impl Signal {
    fn revoke(&self) {
        self.revoked.store(true, Ordering::SeqCst);
        self.waker.wake();
    }
}

struct Entry {
    identity: Identity,
    signal: Arc<Signal>,
}

/// How long revocation records are kept by default.
const DEFAULT_RETENTION: Duration = Duration::from_secs(10 * 60);
/// How many revocation records are kept at most by default.
const DEFAULT_MAX_RECORDS: usize = 65_536;

/// What a revocation record is keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Subject,
    Session,
    Token,
}

/// When a key was revoked, and until when the record is kept.
#[derive(Debug, Clone, Copy)]
struct Revoked {
    at: Instant,
    until: Instant,
}

/// The revocations of the last [`retention`](Records::retention): a
/// connection that registers (or refreshes) while one of them matches it is
/// revoked at once, so a revocation published between the check of a
/// credential and the registration of its socket is never missed.
///
/// One map per key kind (lookups by `&str`, no allocation), and the keys in
/// the order they expire, so that expired records go first and the store
/// never holds more than `max` of them.
struct Records {
    subjects: HashMap<Box<str>, Revoked>,
    sessions: HashMap<Box<str>, Revoked>,
    tokens: HashMap<Box<str>, Revoked>,
    order: VecDeque<(Key, Box<str>, Instant)>,
    retention: Duration,
    max: usize,
}

impl Records {
    fn new() -> Self {
        Self {
            subjects: HashMap::new(),
            sessions: HashMap::new(),
            tokens: HashMap::new(),
            order: VecDeque::new(),
            retention: DEFAULT_RETENTION,
            max: DEFAULT_MAX_RECORDS,
        }
    }

    fn map(&mut self, key: Key) -> &mut HashMap<Box<str>, Revoked> {
        match key {
            Key::Subject => &mut self.subjects,
            Key::Session => &mut self.sessions,
            Key::Token => &mut self.tokens,
        }
    }

    /// Drops the oldest record (when its map entry is still that record).
    fn pop(&mut self) {
        if let Some((key, value, until)) = self.order.pop_front() {
            let map = self.map(key);
            if map.get(&value).is_some_and(|r| r.until == until) {
                map.remove(&value);
            }
        }
    }

    fn expire(&mut self, now: Instant) {
        while self
            .order
            .front()
            .is_some_and(|(_, _, until)| *until <= now)
        {
            self.pop();
        }
    }

    fn insert(&mut self, revocation: &Revocation, now: Instant) {
        self.expire(now);
        if self.max == 0 {
            return;
        }
        while self.order.len() >= self.max {
            tracing::warn!(target: "tower_ws_auth", "revocation records full: the oldest is forgotten early");
            self.pop();
        }
        let (key, value) = match revocation {
            Revocation::Subject(v) => (Key::Subject, v),
            Revocation::Session(v) => (Key::Session, v),
            Revocation::Token(v) => (Key::Token, v),
        };
        let until = now + self.retention;
        let value: Box<str> = value.as_str().into();
        self.map(key)
            .insert(value.clone(), Revoked { at: now, until });
        self.order.push_back((key, value, until));
    }

    /// `true` if a kept record revokes `identity`: its session or its token
    /// (they name one credential, which cannot become valid again), or its
    /// subject, revoked at or after the identity was authenticated.
    fn matches(&self, identity: &Identity, now: Instant) -> bool {
        let live = |r: &&Revoked| r.until > now;
        identity
            .session_id()
            .and_then(|id| self.sessions.get(id))
            .filter(live)
            .is_some()
            || identity
                .token_id()
                .and_then(|id| self.tokens.get(id))
                .filter(live)
                .is_some()
            || self
                .subjects
                .get(identity.subject())
                .filter(live)
                .is_some_and(|r| r.at >= identity.authenticated_at())
    }
}

struct State {
    entries: HashMap<u64, Entry>,
    records: Records,
}

struct Inner {
    state: Mutex<State>,
    next: AtomicU64,
    bus: Option<Arc<dyn RevocationBus>>,
}

impl Inner {
    fn new(bus: Option<Arc<dyn RevocationBus>>) -> Self {
        Self {
            state: Mutex::new(State {
                entries: HashMap::new(),
                records: Records::new(),
            }),
            next: AtomicU64::new(0),
            bus,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state inconsistent
        // (every critical section is a few map operations or a scan).
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records `revocation` and signals the live connections it matches,
    /// under one lock with [`Revocations::register`]: a connection either is
    /// registered (and signalled here) or registers later (and meets the
    /// record).
    fn apply(&self, revocation: &Revocation) -> usize {
        let mut state = self.state();
        state.records.insert(revocation, Instant::now());
        let mut closed = 0;
        for entry in state.entries.values() {
            if revocation.matches(&entry.identity) {
                entry.signal.revoke();
                closed += 1;
            }
        }
        closed
    }
}

/// A registry of live connections that can be revoked.
///
/// Each connection registers its [`Identity`] (the
/// [`SessionGuard`](crate::socket::SessionGuard) does it when given the registry); the
/// [`Registration`] removes the entry when the connection ends.
/// [`revoke_subject`](Self::revoke_subject),
/// [`revoke_session`](Self::revoke_session) and
/// [`revoke_token`](Self::revoke_token) signal every matching connection,
/// which its guard closes with
/// [`CloseCodes::revoked_code`](crate::socket::CloseCodes::revoked_code). With a [`RevocationBus`] the
/// revocation also reaches every other instance.
///
/// A revocation also stays on record for
/// [`remember_for`](Self::remember_for) (default 10 minutes): a connection
/// registering afterwards with an identity it matches is revoked at once.
/// So a socket whose credential was revoked at any time after it was
/// checked is closed, even when the revocation came between the check
/// before the `101` and the registration after it. A session or token
/// revocation matches every identity of that session or token; a subject
/// revocation matches the identities authenticated
/// ([`Identity::authenticated_at`]) before it, so the subject can log in
/// again. Revocations from the bus are recorded when they arrive.
///
/// Cheap to clone. A revocation scans the live connections of this
/// instance; an entry costs one `Arc` and one map slot, a record one map
/// slot and the revoked key, at most [`max_records`](Self::max_records).
///
/// ```
/// use tower_ws_auth::{AuthMethod, Identity, socket::Revocations};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let registry = Revocations::new();
/// let alice = registry.register(&Identity::new("alice", AuthMethod::Jwt));
/// let bob = registry.register(&Identity::new("bob", AuthMethod::Jwt));
/// assert_eq!(registry.revoke_subject("alice").await.unwrap(), 1);
/// alice.revoked().await; // what a guard waits on
/// assert!(alice.is_revoked() && !bob.is_revoked());
/// drop((alice, bob));
/// assert!(registry.is_empty());
/// # }
/// ```
#[derive(Clone)]
pub struct Revocations {
    inner: Arc<Inner>,
}

impl fmt::Debug for Revocations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Revocations")
            .field("connections", &self.len())
            .field("bus", &self.inner.bus.is_some())
            .finish()
    }
}

impl Default for Revocations {
    fn default() -> Self {
        Self::new()
    }
}

impl Revocations {
    /// A registry for this process only.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner::new(None)),
        }
    }

    /// A registry that publishes its revocations on `bus` and applies those
    /// of every instance. Subscribes before returning, so revocations
    /// published afterwards are not missed. Must run inside a tokio runtime.
    ///
    /// # Errors
    ///
    /// If the bus cannot subscribe.
    pub async fn with_bus<B: RevocationBus>(bus: B) -> Result<Self, BusError> {
        let bus: Arc<dyn RevocationBus> = Arc::new(bus);
        let mut incoming = bus.subscribe().await?;
        let inner = Arc::new(Inner::new(Some(bus)));
        let weak: Weak<Inner> = Arc::downgrade(&inner);
        tokio::spawn(async move {
            while let Some(revocation) = incoming.recv().await {
                let Some(inner) = weak.upgrade() else { return };
                let closed = inner.apply(&revocation);
                tracing::debug!(target: "tower_ws_auth", closed, "revocation received from the bus");
            }
        });
        Ok(Self { inner })
    }

    /// How long a revocation is remembered (default 10 minutes): a
    /// connection that registers within that time with an identity the
    /// revocation matches is revoked at once. This closes the race between
    /// checking a credential (before the `101`) and registering its socket
    /// (after it): a logout published in between is not missed.
    #[must_use]
    pub fn remember_for(self, retention: Duration) -> Self {
        self.inner.state().records.retention = retention;
        self
    }

    /// How many revocations are remembered at most (default 65 536); past
    /// it the oldest is forgotten early (with a warning).
    #[must_use]
    pub fn max_records(self, records: NonZeroUsize) -> Self {
        self.inner.state().records.max = records.get();
        self
    }

    /// `true` if a remembered revocation matches `identity`: its session,
    /// its token, or its subject revoked at or after
    /// [`Identity::authenticated_at`].
    pub fn is_revoked(&self, identity: &Identity) -> bool {
        self.inner.state().records.matches(identity, Instant::now())
    }

    /// Registers a live connection of `identity`; keep the
    /// [`Registration`] for as long as the connection lives.
    pub fn register(&self, identity: &Identity) -> Registration {
        let id = self.inner.next.fetch_add(1, Ordering::Relaxed);
        let signal = Arc::new(Signal {
            waker: AtomicWaker::new(),
            revoked: AtomicBool::new(false),
        });
        let mut state = self.inner.state();
        if state.records.matches(identity, Instant::now()) {
            signal.revoke();
        }
        state.entries.insert(
            id,
            Entry {
                identity: identity.clone(),
                signal: signal.clone(),
            },
        );
        drop(state);
        Registration {
            id,
            registry: Arc::downgrade(&self.inner),
            signal,
        }
    }

    /// Revokes on this instance and publishes to the bus, if any. Returns
    /// how many connections of this instance were signalled.
    ///
    /// # Errors
    ///
    /// If the bus could not publish; this instance's connections are
    /// revoked all the same.
    pub async fn revoke(&self, revocation: Revocation) -> Result<usize, BusError> {
        let closed = self.inner.apply(&revocation);
        if let Some(bus) = &self.inner.bus {
            bus.publish(&revocation).await?;
        }
        Ok(closed)
    }

    /// Revokes every connection of `subject`; see [`revoke`](Self::revoke).
    ///
    /// # Errors
    ///
    /// If the bus could not publish.
    pub async fn revoke_subject(&self, subject: &str) -> Result<usize, BusError> {
        self.revoke(Revocation::Subject(subject.to_owned())).await
    }

    /// Revokes every connection of the session `session_id`; see
    /// [`revoke`](Self::revoke).
    ///
    /// # Errors
    ///
    /// If the bus could not publish.
    pub async fn revoke_session(&self, session_id: &str) -> Result<usize, BusError> {
        self.revoke(Revocation::Session(session_id.to_owned()))
            .await
    }

    /// Revokes every connection authenticated by the token `token_id`; see
    /// [`revoke`](Self::revoke).
    ///
    /// # Errors
    ///
    /// If the bus could not publish.
    pub async fn revoke_token(&self, token_id: &str) -> Result<usize, BusError> {
        self.revoke(Revocation::Token(token_id.to_owned())).await
    }

    /// The number of registered (live) connections on this instance.
    pub fn len(&self) -> usize {
        self.inner.state().entries.len()
    }

    /// `true` if no connection is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A connection's entry in [`Revocations`]; removed when dropped.
pub struct Registration {
    id: u64,
    registry: Weak<Inner>,
    signal: Arc<Signal>,
}

impl fmt::Debug for Registration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registration")
            .field("id", &self.id)
            .field("revoked", &self.is_revoked())
            .finish()
    }
}

impl Registration {
    /// Completes once the connection is revoked (at once if it already is).
    pub async fn revoked(&self) {
        std::future::poll_fn(|cx| self.poll_revoked(cx)).await;
    }

    /// `Ready` once the connection is revoked; otherwise this task is woken
    /// when it is (only the last task that polled is).
    pub fn poll_revoked(&self, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        if self.is_revoked() {
            return std::task::Poll::Ready(());
        }
        self.signal.waker.register(cx.waker());
        if self.is_revoked() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    }

    /// `true` once the connection is revoked.
    pub fn is_revoked(&self) -> bool {
        self.signal.revoked.load(Ordering::SeqCst)
    }

    /// Replaces the identity the entry matches on (after a refresh).
    pub fn update(&self, identity: &Identity) {
        if let Some(registry) = self.registry.upgrade() {
            let mut state = registry.state();
            if state.records.matches(identity, Instant::now()) {
                self.signal.revoke();
            }
            if let Some(entry) = state.entries.get_mut(&self.id) {
                entry.identity = identity.clone();
            }
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(registry) = self.registry.upgrade() {
            let mut state = registry.state();
            state.entries.remove(&self.id);
            // A map keeps its largest capacity: give it back once it is
            // three-quarters empty, so the registry's memory follows the
            // live connections after a peak (without it, a peak of 5,000
            // connections left the scale bench's server 40 % over its
            // baseline; 100,000 would leave about 3 MiB). Amortized: a
            // shrink rehashes the live quarter.
            let (len, capacity) = (state.entries.len(), state.entries.capacity());
            if capacity > 64 && len < capacity / 4 {
                state.entries.shrink_to(len * 2);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AuthMethod;

    #[tokio::test]
    async fn matches_subject_session_and_token() {
        let registry = Revocations::new();
        let a = registry.register(
            &Identity::builder("alice", AuthMethod::Session)
                .session_id("s1")
                .token_id("t1")
                .build(),
        );
        let b = registry.register(
            &Identity::builder("alice", AuthMethod::Session)
                .session_id("s2")
                .build(),
        );
        let c = registry.register(&Identity::new("bob", AuthMethod::Jwt));
        assert_eq!(registry.len(), 3);
        assert_eq!(registry.revoke_session("s2").await.unwrap(), 1);
        assert!(!a.is_revoked() && b.is_revoked() && !c.is_revoked());
        assert_eq!(registry.revoke_token("t1").await.unwrap(), 1);
        assert!(a.is_revoked());
        assert_eq!(registry.revoke_subject("nobody").await.unwrap(), 0);
        drop(a);
        drop(b);
        assert_eq!(registry.len(), 1);
        drop(c);
        assert!(registry.is_empty());
    }

    #[tokio::test]
    async fn local_bus_reaches_other_registries() {
        let bus = LocalBus::new();
        let one = Revocations::with_bus(bus.clone()).await.unwrap();
        let two = Revocations::with_bus(bus).await.unwrap();
        let held = two.register(&Identity::new("alice", AuthMethod::Jwt));
        assert_eq!(one.revoke_subject("alice").await.unwrap(), 0);
        tokio::time::timeout(std::time::Duration::from_secs(1), held.revoked())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_revocation_reaches_connections_registered_after_it() {
        let registry = Revocations::new();
        let checked_before = Identity::builder("alice", AuthMethod::Session)
            .session_id("s1")
            .build();
        let other_session = Identity::builder("carol", AuthMethod::Session)
            .session_id("s2")
            .build();
        registry.revoke_session("s1").await.unwrap();
        registry.revoke_subject("bob").await.unwrap();
        let bob_before = Identity::new("bob", AuthMethod::Jwt);
        // Checked before the revocation, registered after it: revoked.
        assert!(registry.register(&checked_before).is_revoked());
        assert!(!registry.register(&other_session).is_revoked());
        // A session revocation holds whenever the identity was made.
        let later = Identity::builder("alice", AuthMethod::Session)
            .session_id("s1")
            .build();
        assert!(registry.register(&later).is_revoked());
        registry.revoke_subject("bob").await.unwrap();
        assert!(registry.register(&bob_before).is_revoked());
        // A subject may authenticate again after its revocation.
        let bob_again = Identity::new("bob", AuthMethod::Jwt);
        assert!(!registry.register(&bob_again).is_revoked());
        assert!(registry.is_revoked(&bob_before) && !registry.is_revoked(&bob_again));
    }

    #[tokio::test]
    async fn records_expire_and_are_bounded() {
        let registry = Revocations::new()
            .remember_for(Duration::from_millis(50))
            .max_records(2.try_into().unwrap());
        let ids: Vec<Identity> = (0..3)
            .map(|i| {
                Identity::builder("x", AuthMethod::Jwt)
                    .token_id(format!("t{i}"))
                    .build()
            })
            .collect();
        for i in 0..3 {
            registry.revoke_token(&format!("t{i}")).await.unwrap();
        }
        // At most two records: the oldest went first.
        assert!(!registry.is_revoked(&ids[0]));
        assert!(registry.is_revoked(&ids[1]) && registry.is_revoked(&ids[2]));
        assert_eq!(registry.inner.state().records.order.len(), 2);
        std::thread::sleep(Duration::from_millis(60));
        assert!(!registry.register(&ids[2]).is_revoked());
        registry.revoke_token("t9").await.unwrap();
        assert_eq!(registry.inner.state().records.order.len(), 1);
    }

    #[test]
    fn registry_gives_memory_back() {
        let registry = Revocations::new();
        let identity = Identity::new("alice", AuthMethod::Jwt);
        let live: Vec<Registration> = (0..10_000).map(|_| registry.register(&identity)).collect();
        let peak = registry.inner.state().entries.capacity();
        drop(live);
        assert!(registry.is_empty());
        assert!(registry.inner.state().entries.capacity() <= peak / 4);
    }

    #[test]
    fn wire_format() {
        let json = serde_json::to_string(&Revocation::Session("abc".into())).unwrap();
        assert_eq!(json, r#"{"kind":"session","value":"abc"}"#);
        let back: Revocation = serde_json::from_str(&json).unwrap();
        assert_eq!(back, Revocation::Session("abc".into()));
    }
}
