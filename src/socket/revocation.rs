//! [`Revocations`]: close live connections of a subject, a session or a
//! token, on this instance and on every instance sharing a bus.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, broadcast, mpsc};

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
    notify: Notify,
    revoked: AtomicBool,
}

struct Entry {
    identity: Identity,
    signal: Arc<Signal>,
}

struct Inner {
    entries: Mutex<HashMap<u64, Entry>>,
    next: AtomicU64,
    bus: Option<Arc<dyn RevocationBus>>,
}

impl Inner {
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Entry>> {
        // A panic while holding the lock cannot leave the map inconsistent
        // (every critical section is a single map operation or a scan).
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn apply(&self, revocation: &Revocation) -> usize {
        let entries = self.entries();
        let mut closed = 0;
        for entry in entries.values() {
            if revocation.matches(&entry.identity) {
                entry.signal.revoked.store(true, Ordering::SeqCst);
                entry.signal.notify.notify_one();
                closed += 1;
            }
        }
        closed
    }
}

/// A registry of live connections that can be revoked.
///
/// Each connection registers its [`Identity`] (the
/// [`SessionGuard`](crate::SessionGuard) does it when given the registry); the
/// [`Registration`] removes the entry when the connection ends.
/// [`revoke_subject`](Self::revoke_subject),
/// [`revoke_session`](Self::revoke_session) and
/// [`revoke_token`](Self::revoke_token) signal every matching connection,
/// which its guard closes with
/// [`CloseCodes::revoked_code`](crate::CloseCodes::revoked_code). With a [`RevocationBus`] the
/// revocation also reaches every other instance.
///
/// Cheap to clone. A revocation scans the live connections of this
/// instance; an entry costs one `Arc` and one map slot.
///
/// ```
/// use tower_ws_auth::{AuthMethod, Identity, Revocations};
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
            inner: Arc::new(Inner {
                entries: Mutex::new(HashMap::new()),
                next: AtomicU64::new(0),
                bus: None,
            }),
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
        let inner = Arc::new(Inner {
            entries: Mutex::new(HashMap::new()),
            next: AtomicU64::new(0),
            bus: Some(bus),
        });
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

    /// Registers a live connection of `identity`; keep the
    /// [`Registration`] for as long as the connection lives.
    pub fn register(&self, identity: &Identity) -> Registration {
        let id = self.inner.next.fetch_add(1, Ordering::Relaxed);
        let signal = Arc::new(Signal {
            notify: Notify::new(),
            revoked: AtomicBool::new(false),
        });
        self.inner.entries().insert(
            id,
            Entry {
                identity: identity.clone(),
                signal: signal.clone(),
            },
        );
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
        self.inner.entries().len()
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
        while !self.is_revoked() {
            self.signal.notify.notified().await;
        }
    }

    /// `true` once the connection is revoked.
    pub fn is_revoked(&self) -> bool {
        self.signal.revoked.load(Ordering::SeqCst)
    }

    /// Replaces the identity the entry matches on (after a refresh).
    pub fn update(&self, identity: &Identity) {
        if let Some(registry) = self.registry.upgrade()
            && let Some(entry) = registry.entries().get_mut(&self.id)
        {
            entry.identity = identity.clone();
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(registry) = self.registry.upgrade() {
            registry.entries().remove(&self.id);
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

    #[test]
    fn wire_format() {
        let json = serde_json::to_string(&Revocation::Session("abc".into())).unwrap();
        assert_eq!(json, r#"{"kind":"session","value":"abc"}"#);
        let back: Revocation = serde_json::from_str(&json).unwrap();
        assert_eq!(back, Revocation::Session("abc".into()));
    }
}
