//! [`Revocations`]: close live connections of a subject, a session or a
//! token, on this instance and on every instance sharing a bus.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::task::AtomicWaker;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc, watch};

use crate::authenticator::{Authenticator, BoxFuture};
use crate::credential::Credential;
use crate::error::AuthError;
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
    /// Every credential of `subject` issued at or before `at` (seconds since
    /// the Unix epoch): identities whose [`Identity::issued_at`] is at most
    /// that second, and identities with no issue time at all (nothing shows
    /// they are newer). [`Revocations::revoke_subject`] publishes this with
    /// the current second.
    IssuedBefore {
        /// The subject.
        subject: String,
        /// The last second (Unix time) of the credentials revoked.
        at: u64,
    },
    /// The connection holding `lease` on `subject`'s per-subject cap shared
    /// through the bus: another instance gave its slot to a newer connection
    /// ([`OverCap::CloseOldest`]). The instance holding the lease closes that
    /// connection with
    /// [`CloseCodes::replaced_code`](crate::socket::CloseCodes::replaced_code);
    /// nothing is refused at the handshake and nothing is kept on record.
    /// A bus sends it (the application has no reason to).
    ///
    /// Wire format: `{"kind":"displaced","value":{"subject":..,"lease":..}}`;
    /// a peer built before this variant existed cannot read it and ignores
    /// it (with a warning), so its socket stays open.
    Displaced {
        /// The subject.
        subject: String,
        /// The lease id.
        lease: String,
    },
}

/// What [`Revocations::max_connections_per_subject`] does with an upgrade of
/// a subject that already has the maximum of live connections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OverCap {
    /// Refuse the new upgrade with `429` and `Retry-After: 5` (the default).
    #[default]
    RefuseNew,
    /// Admit the new upgrade and close the subject's oldest live socket
    /// with [`CloseCodes::replaced_code`](crate::socket::CloseCodes::replaced_code)
    /// (4009 by default, 4409 in the graphql-ws preset), after the usual
    /// closing handshake. The oldest is the one whose slot was taken first:
    /// on one instance, the first registered; across instances, the lease
    /// created first (by the wall clock of the instance that took it).
    /// A socket being replaced no longer counts toward the cap. When every
    /// slot is still reserved by an upgrade whose socket has not registered
    /// yet, there is no socket to close and the upgrade is refused with
    /// `429` all the same.
    CloseOldest,
}

/// Seconds since the Unix epoch (0 before it).
fn unix_secs(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// `true` if an identity of the subject is covered by "issued at or before
/// `before`": issued that second or earlier, or with no issue time.
fn issued_by(identity: &Identity, before: u64) -> bool {
    identity
        .issued_at()
        .is_none_or(|at| unix_secs(at) <= before)
}

impl Revocation {
    /// `true` if a connection of `identity` is revoked by this.
    pub fn matches(&self, identity: &Identity) -> bool {
        match self {
            Self::Subject(subject) => identity.subject() == subject,
            Self::Session(session) => identity.session_id() == Some(session.as_str()),
            Self::Token(token) => identity.token_id() == Some(token.as_str()),
            Self::IssuedBefore { subject, at } => {
                identity.subject() == subject && issued_by(identity, *at)
            }
            Self::Displaced { .. } => false,
        }
    }

    /// `Subject` as `IssuedBefore` the second of `now`; others unchanged.
    fn dated(self, now: SystemTime) -> Self {
        match self {
            Self::Subject(subject) => Self::IssuedBefore {
                subject,
                at: unix_secs(now),
            },
            other => other,
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

    /// Sends `revocation`, which stays in force until `until`, to every
    /// instance; a bus that stores the active revocations (for
    /// [`active`](Self::active)) keeps it until then. By default, the same
    /// as [`publish`](Self::publish).
    fn publish_until<'a>(
        &'a self,
        revocation: &'a Revocation,
        until: SystemTime,
    ) -> BoxFuture<'a, Result<(), BusError>> {
        let _ = until;
        self.publish(revocation)
    }

    /// The revocations still in force, with the instant each ends, for a bus
    /// that stores them (so that an instance that starts, or comes back
    /// after missing messages, catches up); by default none.
    fn active(&self) -> BoxFuture<'_, Result<Vec<(Revocation, SystemTime)>, BusError>> {
        Box::pin(std::future::ready(Ok(Vec::new())))
    }

    /// The state of the bus's link, for a bus that can lose messages while
    /// cut off: `false` from the moment messages may be missed, `true` again
    /// once the subscription is back in place (after which
    /// [`active`](Self::active) is read again). `None` (the default): the
    /// bus never misses messages.
    fn link(&self) -> Option<watch::Receiver<bool>> {
        None
    }

    /// `true` if the bus keeps leases for a per-subject cap shared by every
    /// instance ([`acquire_lease`](Self::acquire_lease) and the two below);
    /// by default `false`, and the cap is per instance.
    fn shares_leases(&self) -> bool {
        false
    }

    /// Takes the lease `lease` on one of the `max` live connections of
    /// `subject` across instances, if fewer than `max` unexpired leases are
    /// held; it ends at `until` unless renewed. `Ok(false)` at the cap.
    fn acquire_lease<'a>(
        &'a self,
        subject: &'a str,
        lease: &'a str,
        max: usize,
        until: SystemTime,
    ) -> BoxFuture<'a, Result<bool, BusError>> {
        let _ = (subject, lease, max, until);
        Box::pin(std::future::ready(Ok(true)))
    }

    /// Takes the lease `lease` on one of the `max` live connections of
    /// `subject` across instances, as [`acquire_lease`](Self::acquire_lease)
    /// does, except that at the cap the oldest unexpired lease (the one whose
    /// id sorts first: ids begin with their creation time) is removed to
    /// make room, in the same atomic step, and its instance is told with a
    /// [`Revocation::Displaced`] on the bus. Returns the leases removed
    /// (none below the cap). By default, `acquire_lease`, and an error at
    /// the cap (the bus cannot displace).
    fn acquire_lease_displacing<'a>(
        &'a self,
        subject: &'a str,
        lease: &'a str,
        max: usize,
        until: SystemTime,
    ) -> BoxFuture<'a, Result<Vec<String>, BusError>> {
        Box::pin(async move {
            if self.acquire_lease(subject, lease, max, until).await? {
                Ok(Vec::new())
            } else {
                Err(BusError::new("this bus cannot displace connection leases"))
            }
        })
    }

    /// Gives the lease back (its connection ended).
    fn release_lease<'a>(
        &'a self,
        subject: &'a str,
        lease: &'a str,
    ) -> BoxFuture<'a, Result<(), BusError>> {
        let _ = (subject, lease);
        Box::pin(std::future::ready(Ok(())))
    }

    /// Extends the `(subject, lease)` leases of this instance to `until`.
    fn renew_leases<'a>(
        &'a self,
        leases: &'a [(String, String)],
        until: SystemTime,
    ) -> BoxFuture<'a, Result<(), BusError>> {
        let _ = (leases, until);
        Box::pin(std::future::ready(Ok(())))
    }
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
    /// Revoked to make room for a newer connection of its subject.
    replaced: AtomicBool,
}

impl Signal {
    fn revoke(&self) {
        self.revoked.store(true, Ordering::SeqCst);
        self.waker.wake();
    }

    fn replace(&self) {
        self.replaced.store(true, Ordering::SeqCst);
        self.revoke();
    }
}

struct Entry {
    identity: Identity,
    /// The subject it counts under for the cap and in the index (the
    /// identity's at registration).
    subject: Arc<str>,
    /// Its position in its subject's list of `State::by_subject`.
    slot: usize,
    signal: Arc<Signal>,
    /// `false` once replaced: it no longer counts toward the cap.
    counted: bool,
}

/// How long a slot reserved at the handshake waits for its socket to
/// register.
const RESERVATION: Duration = Duration::from_secs(10);
/// The `Retry-After` of a refusal at the cap.
const CAP_RETRY_AFTER: Duration = Duration::from_secs(5);
/// At most this many reservations are pending at once.
const MAX_RESERVATIONS: usize = 65_536;

/// A subject's live connections, the slots reserved for it (their
/// deadlines, oldest first), and the leases this instance holds for them on
/// a bus that shares the cap (one per live or reserved slot).
#[derive(Default)]
struct Slots {
    live: usize,
    reserved: VecDeque<Instant>,
    leases: Vec<Box<str>>,
}

/// A lease to give back: subject and lease id.
type Lease = (Box<str>, Box<str>);

/// How long a lease on a shared cap lasts without renewal, by default.
const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(30);

/// The per-subject cap of live connections: counts, and reservations made
/// at the handshake for sockets not registered yet.
struct Cap {
    max: Option<NonZeroUsize>,
    policy: OverCap,
    lease_ttl: Duration,
    subjects: HashMap<Box<str>, Slots>,
    /// Every pending reservation, in order, to expire them.
    reservations: VecDeque<(Box<str>, Instant)>,
}

impl Cap {
    fn slots(&mut self, subject: &str) -> &mut Slots {
        self.subjects.entry(subject.into()).or_default()
    }

    fn forget_if_idle(&mut self, subject: &str) {
        if self
            .subjects
            .get(subject)
            .is_some_and(|s| s.live == 0 && s.reserved.is_empty() && s.leases.is_empty())
        {
            self.subjects.remove(subject);
        }
    }

    /// Drops reservations whose socket never came, and the oldest pending
    /// one early when `MAX_RESERVATIONS` are pending.
    /// Drops reservations whose socket never came, and the oldest pending
    /// one early when `MAX_RESERVATIONS` are pending; their leases go into
    /// `released`.
    fn expire(&mut self, now: Instant, released: &mut Vec<Lease>) {
        while let Some((subject, deadline)) = self.reservations.front() {
            if *deadline > now && self.reservations.len() < MAX_RESERVATIONS {
                break;
            }
            let (subject, deadline) = (subject.clone(), *deadline);
            self.reservations.pop_front();
            if let Some(slots) = self.subjects.get_mut(&subject) {
                // This reservation, if a registration did not use it yet.
                if let Some(at) = slots.reserved.iter().position(|d| *d == deadline) {
                    slots.reserved.remove(at);
                    if let Some(lease) = slots.leases.pop() {
                        released.push((subject.clone(), lease));
                    }
                }
            }
            self.forget_if_idle(&subject);
        }
    }

    /// `true` if `subject` has a free slot here.
    fn has_room(&mut self, subject: &str, now: Instant, released: &mut Vec<Lease>) -> bool {
        let Some(max) = self.max else { return true };
        self.expire(now, released);
        self.subjects
            .get(subject)
            .is_none_or(|s| s.live + s.reserved.len() < max.get())
    }

    /// Reserves a slot for `subject` (holding `lease` for it, on a shared
    /// cap); `false` at the cap.
    fn reserve(
        &mut self,
        subject: &str,
        now: Instant,
        lease: Option<Box<str>>,
        released: &mut Vec<Lease>,
    ) -> bool {
        if self.max.is_none() {
            return true;
        }
        if !self.has_room(subject, now, released) {
            return false;
        }
        let slots = self.slots(subject);
        let deadline = now + RESERVATION;
        slots.reserved.push_back(deadline);
        slots.leases.extend(lease);
        self.reservations.push_back((subject.into(), deadline));
        true
    }

    /// A socket of `subject` registers: it takes its reservation, if any.
    fn register(&mut self, subject: &str, now: Instant, released: &mut Vec<Lease>) {
        if self.max.is_none() {
            return; // nothing to count
        }
        self.expire(now, released);
        let slots = self.slots(subject);
        slots.reserved.pop_front();
        slots.live += 1;
    }

    fn unregister(&mut self, subject: &str, released: &mut Vec<Lease>) {
        if let Some(slots) = self.subjects.get_mut(subject) {
            slots.live = slots.live.saturating_sub(1);
            // More leases than slots: give one back.
            if slots.leases.len() > slots.live + slots.reserved.len()
                && let Some(lease) = slots.leases.pop()
            {
                released.push((subject.into(), lease));
            }
        }
        self.forget_if_idle(subject);
    }

    /// Every lease this instance holds.
    fn leases(&self) -> Vec<(String, String)> {
        self.subjects
            .iter()
            .flat_map(|(subject, slots)| {
                slots
                    .leases
                    .iter()
                    .map(|lease| (subject.to_string(), lease.to_string()))
            })
            .collect()
    }
}

/// How long revocation records are kept by default: the longest lifetime
/// the JWT authenticator accepts by default.
const DEFAULT_RETENTION: Duration = Duration::from_secs(24 * 60 * 60);
/// How many revocation records are kept at most by default.
const DEFAULT_MAX_RECORDS: usize = 65_536;

/// What a revocation record is keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Subject,
    Session,
    Token,
}

/// Until when a record is kept and, for a subject, the last second
/// (Unix time) of the credentials it revokes.
#[derive(Debug, Clone, Copy)]
struct Revoked {
    before: u64,
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

    /// When a record of `revocation` ends (wall clock): `retention` after
    /// the second it names ("issued before"), else `retention` from `now`.
    fn end_of(&self, revocation: &Revocation, now: SystemTime) -> SystemTime {
        let from = match revocation {
            Revocation::IssuedBefore { at, .. } => UNIX_EPOCH + Duration::from_secs(*at + 1),
            _ => now,
        };
        from.checked_add(self.retention)
            .unwrap_or_else(|| crate::identity::deadline(self.retention))
    }

    /// Keeps `revocation` (already [`dated`](Revocation::dated)) until the
    /// wall-clock instant `until`.
    fn insert(&mut self, revocation: &Revocation, until: SystemTime, now: Instant) {
        self.expire(now);
        let left = until
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        if self.max == 0 || left.is_zero() {
            return;
        }
        let until = now.checked_add(left).unwrap_or(now + self.retention);
        let (key, value, before) = match revocation {
            Revocation::Subject(v) => (Key::Subject, v, unix_secs(SystemTime::now())),
            Revocation::Session(v) => (Key::Session, v, 0),
            Revocation::Token(v) => (Key::Token, v, 0),
            Revocation::IssuedBefore { subject, at } => (Key::Subject, subject, *at),
            Revocation::Displaced { .. } => return,
        };
        let value: Box<str> = value.as_str().into();
        let record = match self.map(key).get(&value) {
            // A second revocation of the same key: the wider of the two.
            Some(old) if old.until > now => Revoked {
                before: before.max(old.before),
                until: until.max(old.until),
            },
            _ => Revoked { before, until },
        };
        while self.order.len() >= self.max {
            tracing::warn!(target: "tower_ws_auth", "revocation records full: the oldest is forgotten early");
            self.pop();
        }
        self.map(key).insert(value.clone(), record);
        self.order.push_back((key, value, record.until));
    }

    /// `true` if a kept record revokes `identity`: its session or its token
    /// (they name one credential, which cannot become valid again), or its
    /// subject, for a credential issued at or before the revoked second (or
    /// of unknown issue time).
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
                .is_some_and(|r| issued_by(identity, r.before))
    }
}

struct State {
    entries: HashMap<u64, Entry>,
    /// The ids of `entries` by subject (the one they registered with: a
    /// refresh cannot change it), so that a revocation by subject visits
    /// only that subject's connections, not every one (a burst of 1,000
    /// revocations over 100,000 connections was a scan of 10⁸ entries).
    by_subject: HashMap<Arc<str>, Vec<u64>>,
    records: Records,
    cap: Cap,
}

impl State {
    fn insert(&mut self, id: u64, mut entry: Entry) {
        let ids = match self.by_subject.get_mut(&*entry.subject) {
            Some(ids) => ids,
            None => self
                .by_subject
                .entry(entry.subject.clone())
                .or_insert_with(|| Vec::with_capacity(1)),
        };
        entry.slot = ids.len();
        ids.push(id);
        self.entries.insert(id, entry);
    }

    /// Removes an entry in constant time: the last id of its subject's list
    /// takes its slot.
    fn remove(&mut self, id: u64) -> Option<Entry> {
        let entry = self.entries.remove(&id)?;
        if let Some(ids) = self.by_subject.get_mut(&*entry.subject) {
            if ids.get(entry.slot) == Some(&id) {
                ids.swap_remove(entry.slot);
                if let Some(moved) = ids.get(entry.slot).and_then(|m| self.entries.get_mut(m)) {
                    moved.slot = entry.slot;
                }
            }
            if ids.is_empty() {
                self.by_subject.remove(&*entry.subject);
            } else if ids.len() < ids.capacity() / 4 {
                ids.shrink_to(ids.len() * 2);
            }
        }
        Some(entry)
    }

    /// Signals the live connections `revocation` matches, visiting only
    /// its subject's for a revocation by subject; how many.
    fn signal(&self, revocation: &Revocation) -> usize {
        let signal = |entry: &Entry| {
            let hit = revocation.matches(&entry.identity);
            if hit {
                entry.signal.revoke();
            }
            usize::from(hit)
        };
        match revocation {
            Revocation::Subject(subject) | Revocation::IssuedBefore { subject, .. } => self
                .by_subject
                .get(subject.as_str())
                .into_iter()
                .flatten()
                .filter_map(|id| self.entries.get(id))
                .map(signal)
                .sum(),
            _ => self.entries.values().map(signal).sum(),
        }
    }

    /// Replaces `subject`'s oldest live connection that still counts toward
    /// the cap: it is signalled (closed with the replaced code) and stops
    /// counting. `false` if the subject has none.
    fn replace_oldest(&mut self, subject: &str, released: &mut Vec<Lease>) -> bool {
        let ids = self
            .by_subject
            .get(subject)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let oldest = ids
            .iter()
            .filter(|id| self.entries.get(id).is_some_and(|e| e.counted))
            .min()
            .copied();
        let Some(entry) = oldest.and_then(|id| self.entries.get_mut(&id)) else {
            return false;
        };
        entry.counted = false;
        entry.signal.replace();
        self.cap.unregister(subject, released);
        true
    }

    /// The bus took `lease` of `subject` away for a newer connection: if
    /// this instance holds it, its oldest connection of the subject is
    /// replaced. How many were (0 or 1).
    fn displace(&mut self, subject: &str, lease: &str) -> usize {
        let Some(slots) = self.cap.subjects.get_mut(subject) else {
            return 0;
        };
        let Some(at) = slots.leases.iter().position(|l| &**l == lease) else {
            return 0;
        };
        slots.leases.remove(at);
        // One lease fewer than slots now: replacing gives none back.
        let mut released = Vec::new();
        let replaced = self.replace_oldest(subject, &mut released);
        self.cap.forget_if_idle(subject);
        usize::from(replaced)
    }
}

struct Inner {
    state: Mutex<State>,
    next: AtomicU64,
    bus: Option<Arc<dyn RevocationBus>>,
    /// `false` while the bus may have missed revocations.
    synced: AtomicBool,
    /// This registry's lease ids: a prefix unique to it, and a counter.
    lease_prefix: String,
}

impl Inner {
    fn new(bus: Option<Arc<dyn RevocationBus>>) -> Self {
        Self {
            state: Mutex::new(State {
                entries: HashMap::new(),
                by_subject: HashMap::new(),
                records: Records::new(),
                cap: Cap {
                    max: None,
                    policy: OverCap::RefuseNew,
                    lease_ttl: DEFAULT_LEASE_TTL,
                    subjects: HashMap::new(),
                    reservations: VecDeque::new(),
                },
            }),
            next: AtomicU64::new(0),
            bus,
            synced: AtomicBool::new(true),
            lease_prefix: lease_prefix(),
        }
    }

    /// A new lease id: its creation time (ms since the Unix epoch) first,
    /// zero-padded, so that ids sort by age (what the bus compares to find
    /// the oldest), then this registry's prefix and a counter.
    fn new_lease(&self) -> Box<str> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        format!("{ms:015}-{}:{n:020}", self.lease_prefix).into()
    }

    /// Gives `leases` back to the bus, in the background (a lease that
    /// cannot be given back lapses when it is no longer renewed).
    fn release(&self, leases: Vec<Lease>) {
        let Some(bus) = self.bus.clone().filter(|_| !leases.is_empty()) else {
            return;
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                for (subject, lease) in leases {
                    if let Err(error) = bus.release_lease(&subject, &lease).await {
                        tracing::debug!(target: "tower_ws_auth", %error, "a lease could not be given back: it lapses");
                    }
                }
            });
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
    fn apply(&self, revocation: &Revocation, until: Option<SystemTime>) -> usize {
        let mut state = self.state();
        if let Revocation::Displaced { subject, lease } = revocation {
            return state.displace(subject, lease);
        }
        let until = until.unwrap_or_else(|| state.records.end_of(revocation, SystemTime::now()));
        state.records.insert(revocation, until, Instant::now());
        state.signal(revocation)
    }

    /// Applies the revocations the bus keeps (catching up); `false` if the
    /// bus could not list them.
    async fn catch_up(&self, bus: &dyn RevocationBus) -> bool {
        match bus.active().await {
            Ok(active) => {
                let count = active.len();
                for (revocation, until) in active {
                    self.apply(&revocation.dated(SystemTime::now()), Some(until));
                }
                tracing::debug!(target: "tower_ws_auth", count, "revocations loaded from the bus");
                true
            }
            Err(error) => {
                tracing::warn!(target: "tower_ws_auth", %error, "could not load the active revocations");
                false
            }
        }
    }
}

/// A prefix for lease ids unique to one registry: the process, the time and
/// a process-wide counter.
fn lease_prefix() -> String {
    static REGISTRIES: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let n = REGISTRIES.fetch_add(1, Ordering::Relaxed);
    format!("{}-{nanos:x}-{n}", std::process::id())
}

/// Renews this registry's leases every third of their lifetime, while it
/// lives.
async fn renew_leases(weak: Weak<Inner>) {
    let mut renewed = Instant::now();
    loop {
        let Some(ttl) = weak.upgrade().map(|inner| inner.state().cap.lease_ttl) else {
            return;
        };
        // Checked at least every second: the lifetime may change.
        tokio::time::sleep((ttl / 3).min(Duration::from_secs(1))).await;
        if renewed.elapsed() < ttl / 3 {
            continue;
        }
        renewed = Instant::now();
        let Some(inner) = weak.upgrade() else { return };
        let Some(bus) = inner.bus.clone() else { return };
        let leases = inner.state().cap.leases();
        drop(inner);
        if leases.is_empty() {
            continue;
        }
        let until = SystemTime::now() + ttl;
        if let Err(error) = bus.renew_leases(&leases, until).await {
            tracing::warn!(target: "tower_ws_auth", %error, "could not renew the connection leases");
        }
    }
}

/// Follows the bus's link: any change of it (even one seen only once it is
/// up again) may mean missed messages, so the registry is out of sync from
/// then until the link is up and the active revocations are loaded again
/// (retrying every 200 ms), with no change of the link meanwhile.
async fn follow_link(weak: Weak<Inner>, mut link: watch::Receiver<bool>) {
    // A drop between `link()` and now counts too.
    let mut resync = link.has_changed().unwrap_or(false) || !*link.borrow();
    loop {
        if !resync && link.changed().await.is_err() {
            return;
        }
        resync = false;
        match weak.upgrade() {
            Some(inner) => inner.synced.store(false, Ordering::SeqCst),
            None => return,
        }
        loop {
            let Some(inner) = weak.upgrade() else { return };
            if !*link.borrow_and_update() {
                tracing::warn!(target: "tower_ws_auth", "revocation bus cut off: upgrades are refused (503) until it is back");
                break;
            }
            let Some(bus) = inner.bus.clone() else { return };
            if inner.catch_up(&*bus).await && !link.has_changed().unwrap_or(true) {
                inner.synced.store(true, Ordering::SeqCst);
                tracing::info!(target: "tower_ws_auth", "revocation bus back and caught up");
                break;
            }
            drop(inner);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
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
/// [`remember_for`](Self::remember_for) (default 24 hours): a connection
/// registering afterwards with an identity it matches is revoked at once,
/// and [`revocable`](Self::revocable) refuses such an identity at the
/// handshake. So a socket whose credential was revoked at any time after it
/// was checked is closed, even when the revocation came between the check
/// before the `101` and the registration after it. A session or token
/// revocation matches every identity of that session or token; a subject
/// revocation ([`Revocation::IssuedBefore`]) the subject's identities issued
/// ([`Identity::issued_at`]) at or before its second, or of unknown issue
/// time, so the subject can log in again with a credential issued later.
/// Revocations from the bus are recorded when they arrive; with a bus that
/// stores them (`RedisBus`, feature `redis`) the active ones are
/// loaded at start and after every reconnection, and while the bus may be
/// missing messages the registry is not [in sync](Self::is_synced).
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
    /// published afterwards are not missed, then loads the revocations the
    /// bus keeps ([`RevocationBus::active`]), so those made before are not
    /// either. Must run inside a tokio runtime.
    ///
    /// # Errors
    ///
    /// If the bus cannot subscribe, or cannot list the revocations it keeps
    /// (`RevocationBus::active`).
    pub async fn with_bus<B: RevocationBus>(bus: B) -> Result<Self, BusError> {
        let bus: Arc<dyn RevocationBus> = Arc::new(bus);
        let link = bus.link();
        let mut incoming = bus.subscribe().await?;
        let inner = Arc::new(Inner::new(Some(bus.clone())));
        if !inner.catch_up(&*bus).await {
            return Err(BusError::new("could not load the active revocations"));
        }
        let weak: Weak<Inner> = Arc::downgrade(&inner);
        tokio::spawn(async move {
            while let Some(revocation) = incoming.recv().await {
                let Some(inner) = weak.upgrade() else { return };
                let closed = inner.apply(&revocation.dated(SystemTime::now()), None);
                tracing::debug!(target: "tower_ws_auth", closed, "revocation received from the bus");
            }
        });
        if let Some(link) = link {
            tokio::spawn(follow_link(Arc::downgrade(&inner), link));
        }
        if bus.shares_leases() {
            tokio::spawn(renew_leases(Arc::downgrade(&inner)));
        }
        Ok(Self { inner })
    }

    /// How long a revocation is remembered (default 24 hours, the longest
    /// lifetime [`JwtAuthenticator`](crate::jwt) accepts by default): set it
    /// to the longest lifetime of your credentials. While remembered, a
    /// revocation refuses the credentials it matches at the handshake
    /// (through [`revocable`](Self::revocable)) and revokes at once a
    /// connection that registers with an identity it matches (which closes
    /// the race between checking a credential before the `101` and
    /// registering its socket after it). An "issued before T" revocation is
    /// remembered until this long after T; a session or token revocation
    /// this long after it was made: by then nothing it matches is valid.
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
    /// its token, or its subject revoked for credentials issued at or after
    /// [`Identity::issued_at`] (or an identity without an issue time).
    pub fn is_revoked(&self, identity: &Identity) -> bool {
        self.inner.state().records.matches(identity, Instant::now())
    }

    /// At most `max` live connections per subject on this instance: past
    /// it, [`revocable`](Self::revocable) refuses the subject's upgrades
    /// with `429` and `Retry-After: 5`
    /// ([`AuthError::TooManyConnections`]) until one of its sockets ends;
    /// or, with [`over_cap(OverCap::CloseOldest)`](Self::over_cap), admits
    /// them and closes the subject's oldest socket with
    /// [`CloseCodes::replaced_code`](crate::socket::CloseCodes::replaced_code).
    ///
    /// The count is of the connections registered here (every socket a
    /// [`SessionGuard`](crate::socket::SessionGuard) with this registry
    /// guards) plus the slots reserved by upgrades `revocable` accepted
    /// whose socket has not registered yet (a reservation lapses after 10
    /// seconds; at most 65,536 are pending, past which the oldest lapses
    /// early). So use it where every upgrade it accepts becomes a guarded
    /// socket.
    ///
    /// Without a bus, or with one that does not share the cap
    /// ([`LocalBus`]), the cap is per instance. With a bus that does
    /// (`RedisBus`, feature `redis`), it holds across every instance: each
    /// accepted upgrade also takes a lease in Redis (refused at the cap),
    /// given back when its socket ends and renewed while it lives, so the
    /// slots of an instance that dies free themselves after
    /// [`lease_ttl`](Self::lease_ttl). While Redis cannot be reached, the
    /// upgrades are refused with `503`.
    ///
    /// A cap low enough to matter for abuse can lock out honest users with
    /// many tabs, devices or reconnecting clients (a closed socket frees
    /// its slot at once, but a dead TCP connection only when the server
    /// notices): leave room.
    #[must_use]
    pub fn max_connections_per_subject(self, max: NonZeroUsize) -> Self {
        self.inner.state().cap.max = Some(max);
        self
    }

    /// What happens to an upgrade of a subject at the
    /// [cap](Self::max_connections_per_subject): refused with `429`
    /// ([`OverCap::RefuseNew`], the default), or admitted while the
    /// subject's oldest live socket is closed with
    /// [`CloseCodes::replaced_code`](crate::socket::CloseCodes::replaced_code)
    /// ([`OverCap::CloseOldest`]).
    ///
    /// With a bus that shares the cap (`RedisBus`), the oldest socket may
    /// live on another instance: the bus removes its lease and tells that
    /// instance (a [`Revocation::Displaced`] message), which closes it; if
    /// that instance is dead, its lease is simply gone. An instance built
    /// before this policy existed ignores the message: its socket stays
    /// open, no longer counted, until it ends. Every instance sharing a cap
    /// should use the same policy.
    ///
    /// ```
    /// use tower_ws_auth::socket::{OverCap, Revocations};
    ///
    /// let revocations = Revocations::new()
    ///     .max_connections_per_subject(3.try_into().unwrap())
    ///     .over_cap(OverCap::CloseOldest);
    /// # drop(revocations);
    /// ```
    #[must_use]
    pub fn over_cap(self, policy: OverCap) -> Self {
        self.inner.state().cap.policy = policy;
        self
    }

    /// How long a lease on a cap shared through the bus lasts unless its
    /// instance renews it (default 30 seconds, at least 300 ms; renewed
    /// every third of it): how long the slots of an instance that died stay
    /// taken.
    #[must_use]
    pub fn lease_ttl(self, ttl: Duration) -> Self {
        self.inner.state().cap.lease_ttl = ttl.max(Duration::from_millis(300));
        self
    }

    /// Reserves a slot of `subject`'s cap for an accepted upgrade (here,
    /// and on the bus when it shares the cap).
    async fn reserve(&self, subject: &str) -> Result<(), AuthError> {
        let inner = &self.inner;
        let mut released = Vec::new();
        let (max, ttl, policy) = {
            let mut state = inner.state();
            let max = state.cap.max;
            let policy = state.cap.policy;
            let room = state.cap.has_room(subject, Instant::now(), &mut released);
            let ttl = state.cap.lease_ttl;
            drop(state);
            inner.release(std::mem::take(&mut released));
            match max {
                None => return Ok(()),
                Some(_) if !room && policy == OverCap::RefuseNew => {
                    return Err(AuthError::too_many_connections(CAP_RETRY_AFTER));
                }
                Some(max) => (max, ttl, policy),
            }
        };
        let lease = match &inner.bus {
            Some(bus) if bus.shares_leases() => {
                let lease = inner.new_lease();
                let until = SystemTime::now() + ttl;
                let taken = match policy {
                    OverCap::CloseOldest => bus
                        .acquire_lease_displacing(subject, &lease, max.get(), until)
                        .await
                        .map(|displaced| {
                            // A lease of this instance is replaced now (the
                            // bus's message then finds it gone); another
                            // instance's, when the message reaches it.
                            for lease in displaced {
                                let subject = subject.to_owned();
                                inner.apply(&Revocation::Displaced { subject, lease }, None);
                            }
                            true
                        }),
                    OverCap::RefuseNew => {
                        bus.acquire_lease(subject, &lease, max.get(), until).await
                    }
                };
                match taken {
                    Ok(true) => Some(lease),
                    Ok(false) => return Err(AuthError::too_many_connections(CAP_RETRY_AFTER)),
                    Err(error) => {
                        return Err(AuthError::backend(
                            "the shared connection cap is unreachable",
                            error,
                        ));
                    }
                }
            }
            _ => None,
        };
        let reserved = {
            let mut state = inner.state();
            let now = Instant::now();
            // Room is made here: on a cap of this instance only, or when this
            // instance counts more than the bus does.
            if policy == OverCap::CloseOldest && !state.cap.has_room(subject, now, &mut released) {
                state.replace_oldest(subject, &mut released);
            }
            state
                .cap
                .reserve(subject, now, lease.clone(), &mut released)
        };
        if !reserved && let Some(lease) = lease {
            released.push((subject.into(), lease));
        }
        inner.release(released);
        if reserved {
            Ok(())
        } else {
            Err(AuthError::too_many_connections(CAP_RETRY_AFTER))
        }
    }

    /// `false` while the bus may be missing revocations: from the moment
    /// its link drops (a Redis outage, say) until it is back and the active
    /// revocations are loaded again. Always `true` without a bus or with a
    /// bus that never misses messages ([`LocalBus`]).
    pub fn is_synced(&self) -> bool {
        self.inner.synced.load(Ordering::SeqCst)
    }

    /// Wraps `authenticator` so that the handshake refuses what this
    /// registry revokes: a credential a remembered revocation matches is
    /// refused as invalid (`401 invalid_token`, like any bad credential),
    /// and while the registry [is not in sync](Self::is_synced) with its
    /// bus every upgrade is refused as unavailable (`503` with
    /// `Retry-After: 1`): a revocation made meanwhile could be missed, and
    /// the registry fails closed rather than open. With
    /// [`max_connections_per_subject`](Self::max_connections_per_subject),
    /// it also enforces that cap (`429`, or the oldest socket closed: see
    /// [`over_cap`](Self::over_cap)).
    ///
    /// Wrap it *outside* [`Cached`](crate::Cached): a cached identity is then
    /// checked on every use and never returned once revoked.
    ///
    /// ```
    /// use tower_ws_auth::{authenticate_fn, AuthMethod, Authenticator, Credential, Identity};
    /// use tower_ws_auth::socket::Revocations;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let revocations = Revocations::new();
    /// let auth = revocations.revocable(authenticate_fn(|_, _| async {
    ///     Ok(Identity::new("alice", AuthMethod::Custom("demo")))
    /// }));
    /// let parts = http::Request::new(()).into_parts().0;
    /// let credential = Credential::new(tower_ws_auth::Carrier::Bearer, "t");
    /// assert!(auth.authenticate(&credential, &parts).await.is_ok());
    /// revocations.revoke_subject("alice").await.unwrap();
    /// assert!(auth.authenticate(&credential, &parts).await.is_err());
    /// # }
    /// ```
    pub fn revocable<A: Authenticator>(&self, authenticator: A) -> Revocable<A> {
        Revocable {
            inner: authenticator,
            revocations: self.clone(),
        }
    }

    /// Registers a live connection of `identity`; keep the
    /// [`Registration`] for as long as the connection lives.
    pub fn register(&self, identity: &Identity) -> Registration {
        let id = self.inner.next.fetch_add(1, Ordering::Relaxed);
        let signal = Arc::new(Signal {
            waker: AtomicWaker::new(),
            revoked: AtomicBool::new(false),
            replaced: AtomicBool::new(false),
        });
        let mut state = self.inner.state();
        let now = Instant::now();
        if state.records.matches(identity, now) {
            signal.revoke();
        }
        let mut released = Vec::new();
        state.cap.register(identity.subject(), now, &mut released);
        state.insert(
            id,
            Entry {
                identity: identity.clone(),
                subject: identity.subject().into(),
                slot: 0,
                signal: signal.clone(),
                counted: true,
            },
        );
        drop(state);
        self.inner.release(released);
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
        let now = SystemTime::now();
        let revocation = revocation.dated(now);
        let until = self.inner.state().records.end_of(&revocation, now);
        let closed = self.inner.apply(&revocation, Some(until));
        if let Some(bus) = &self.inner.bus {
            bus.publish_until(&revocation, until).await?;
        }
        Ok(closed)
    }

    /// Revokes every credential of `subject` issued at or before the
    /// current second ([`Revocation::IssuedBefore`]): closes the live
    /// connections they authenticated, and refuses them at the next
    /// handshake for as long as the revocation is
    /// [remembered](Self::remember_for); credentials issued later are
    /// accepted. See [`revoke`](Self::revoke).
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

/// An authenticator that refuses what a [`Revocations`] revokes; see
/// [`Revocations::revocable`].
#[derive(Clone)]
pub struct Revocable<A> {
    inner: A,
    revocations: Revocations,
}

impl<A> fmt::Debug for Revocable<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Revocable")
            .field("revocations", &self.revocations)
            .finish_non_exhaustive()
    }
}

impl<A: Authenticator> Authenticator for Revocable<A> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    async fn authenticate(
        &self,
        credential: &Credential,
        request: &http::request::Parts,
    ) -> Result<Identity, AuthError> {
        let identity = self.inner.authenticate(credential, request).await?;
        if !self.revocations.is_synced() {
            return Err(AuthError::unavailable(
                "the revocation bus is cut off: revocations may be missing",
            ));
        }
        if self.revocations.is_revoked(&identity) {
            return Err(AuthError::invalid("credential revoked"));
        }
        self.revocations.reserve(identity.subject()).await?;
        Ok(identity)
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

    /// `true` if the connection was revoked to make room for a newer one of
    /// its subject ([`OverCap::CloseOldest`]) rather than by a revocation;
    /// its guard closes it with
    /// [`CloseCodes::replaced_code`](crate::socket::CloseCodes::replaced_code)
    /// instead of the revoked code. Implies [`is_revoked`](Self::is_revoked).
    pub fn is_replaced(&self) -> bool {
        self.signal.replaced.load(Ordering::SeqCst)
    }

    /// Replaces the identity the entry matches on (after a refresh). A
    /// refresh keeps the subject (the guard closes a socket whose refresh
    /// names another); an identity of another subject revokes the entry.
    pub fn update(&self, identity: &Identity) {
        if let Some(registry) = self.registry.upgrade() {
            let mut state = registry.state();
            let moved = state
                .entries
                .get(&self.id)
                .is_some_and(|e| *e.subject != *identity.subject());
            if moved || state.records.matches(identity, Instant::now()) {
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
            let mut released = Vec::new();
            if let Some(entry) = state.remove(self.id).filter(|e| e.counted) {
                state.cap.unregister(&entry.subject, &mut released);
            }
            // A map keeps its largest capacity: give it back once it is
            // three-quarters empty, so the registry's memory follows the
            // live connections after a peak (without it, a peak of 5,000
            // connections left the scale bench's server 40 % over its
            // baseline). Amortized: a shrink rehashes the live quarter.
            let (len, capacity) = (state.entries.len(), state.entries.capacity());
            if capacity > 64 && len < capacity / 4 {
                state.entries.shrink_to(len * 2);
                let subjects = state.by_subject.len();
                state.by_subject.shrink_to(subjects * 2);
                let capped = state.cap.subjects.len();
                state.cap.subjects.shrink_to(capped * 2);
            }
            drop(state);
            registry.release(released);
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

    /// A revocation by subject reaches exactly that subject's connections
    /// through the index, the index follows registrations and drops, and
    /// an update to another subject revokes the entry.
    #[tokio::test]
    async fn the_subject_index_follows_registrations() {
        let registry = Revocations::new();
        let held: Vec<_> = (0..300)
            .map(|i| {
                registry.register(&Identity::new(format!("user-{}", i % 100), AuthMethod::Jwt))
            })
            .collect();
        assert_eq!(registry.inner.state().by_subject.len(), 100);
        assert_eq!(registry.revoke_subject("user-7").await.unwrap(), 3);
        for (i, registration) in held.iter().enumerate() {
            assert_eq!(registration.is_revoked(), i % 100 == 7, "{i}");
        }
        let moved = &held[1];
        moved.update(&Identity::new("user-1", AuthMethod::Jwt));
        assert!(!moved.is_revoked());
        moved.update(&Identity::new("mallory", AuthMethod::Jwt));
        assert!(moved.is_revoked());
        // Dropped out of order, the lists stay exact (the slot of the moved
        // id follows it).
        let (odd, even): (Vec<_>, Vec<_>) =
            held.into_iter().enumerate().partition(|(i, _)| i % 2 == 1);
        drop(odd);
        assert_eq!(registry.revoke_subject("user-42").await.unwrap(), 3);
        assert_eq!(registry.revoke_subject("user-43").await.unwrap(), 0);
        drop(even);
        assert!(registry.is_empty());
        assert!(registry.inner.state().by_subject.is_empty());
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
        // A subject may authenticate again with a credential issued after
        // the revoked second; one without an issue time stays refused.
        let bob_again = Identity::builder("bob", AuthMethod::Jwt)
            .issued_at(SystemTime::now() + Duration::from_secs(1))
            .build();
        assert!(!registry.register(&bob_again).is_revoked());
        assert!(registry.is_revoked(&bob_before) && !registry.is_revoked(&bob_again));
        assert!(registry.is_revoked(&Identity::new("bob", AuthMethod::Jwt)));
    }

    #[tokio::test]
    async fn issued_before_is_by_the_second_and_expires_with_the_lifetime() {
        let registry = Revocations::new().remember_for(Duration::from_secs(60));
        let now = unix_secs(SystemTime::now());
        let issued = |secs: u64| {
            Identity::builder("carol", AuthMethod::Jwt)
                .issued_at(UNIX_EPOCH + Duration::from_millis(secs * 1000 + 999))
                .build()
        };
        registry
            .revoke(Revocation::IssuedBefore {
                subject: "carol".into(),
                at: now - 10,
            })
            .await
            .unwrap();
        assert!(registry.is_revoked(&issued(now - 10)));
        assert!(!registry.is_revoked(&issued(now - 9)));
        // A later revocation widens the record.
        registry.revoke_subject("carol").await.unwrap();
        assert!(registry.is_revoked(&issued(now - 9)));
        assert!(!registry.is_revoked(&issued(now + 2)));
        // Nothing issued before a second long gone can still be valid.
        let old = Revocations::new().remember_for(Duration::from_secs(60));
        old.revoke(Revocation::IssuedBefore {
            subject: "dave".into(),
            at: now - 61,
        })
        .await
        .unwrap();
        assert!(!old.is_revoked(&Identity::new("dave", AuthMethod::Jwt)));
        assert!(old.inner.state().records.order.is_empty());
    }

    #[tokio::test]
    async fn revocable_refuses_at_the_handshake() {
        let registry = Revocations::new();
        let auth = registry.revocable(crate::authenticate_fn(|c, _| {
            let token = c.expose_secret().to_owned();
            async move {
                Ok(Identity::builder("erin", AuthMethod::Jwt)
                    .token_id(token)
                    .issued_at(SystemTime::now() - Duration::from_secs(5))
                    .build())
            }
        }));
        let parts = http::Request::new(()).into_parts().0;
        let one = Credential::new(crate::Carrier::Bearer, "one");
        let two = Credential::new(crate::Carrier::Bearer, "two");
        assert!(auth.authenticate(&one, &parts).await.is_ok());
        registry.revoke_token("one").await.unwrap();
        let refused = auth.authenticate(&one, &parts).await.unwrap_err();
        assert!(matches!(refused, AuthError::Invalid(_)), "{refused:?}");
        assert!(auth.authenticate(&two, &parts).await.is_ok());
        registry.revoke_subject("erin").await.unwrap();
        assert!(auth.authenticate(&two, &parts).await.is_err());
        // Out of sync with the bus: unavailable, whatever the credential.
        registry.inner.synced.store(false, Ordering::SeqCst);
        let other = Revocations::new();
        other.inner.synced.store(false, Ordering::SeqCst);
        let refused = other
            .revocable(crate::authenticate_fn(|_, _| async {
                Ok(Identity::new("frank", AuthMethod::Jwt))
            }))
            .authenticate(&one, &parts)
            .await
            .unwrap_err();
        assert!(
            matches!(refused, AuthError::Unavailable { .. }),
            "{refused:?}"
        );
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

    #[tokio::test]
    async fn the_cap_counts_live_and_reserved_slots() {
        let registry = Revocations::new().max_connections_per_subject(2.try_into().unwrap());
        let auth = registry.revocable(crate::authenticate_fn(|c, _| {
            let subject = c.expose_secret().to_owned();
            async move { Ok(Identity::new(subject, AuthMethod::Jwt)) }
        }));
        let parts = http::Request::new(()).into_parts().0;
        let gail = Credential::new(crate::Carrier::Bearer, "gail");
        let hank = Credential::new(crate::Carrier::Bearer, "hank");
        let at_cap = |r: Result<Identity, AuthError>| matches!(r, Err(AuthError::TooManyConnections { retry_after }) if retry_after == CAP_RETRY_AFTER);
        // Two upgrades reserve the two slots; the third is refused.
        assert!(auth.authenticate(&gail, &parts).await.is_ok());
        assert!(auth.authenticate(&gail, &parts).await.is_ok());
        assert!(at_cap(auth.authenticate(&gail, &parts).await));
        assert!(auth.authenticate(&hank, &parts).await.is_ok());
        // Their sockets register in the reserved slots.
        let one = registry.register(&Identity::new("gail", AuthMethod::Jwt));
        let two = registry.register(&Identity::new("gail", AuthMethod::Jwt));
        assert!(at_cap(auth.authenticate(&gail, &parts).await));
        drop(one);
        assert!(auth.authenticate(&gail, &parts).await.is_ok());
        assert!(at_cap(auth.authenticate(&gail, &parts).await));
        drop(two);
        // A reservation whose socket never comes lapses.
        {
            let mut state = registry.inner.state();
            let later = Instant::now() + RESERVATION + Duration::from_millis(1);
            state.cap.expire(later, &mut Vec::new());
            assert!(state.cap.subjects.is_empty(), "idle subjects are forgotten");
            assert!(state.cap.reservations.is_empty());
        }
    }

    #[tokio::test]
    async fn close_oldest_replaces_the_first_registered_and_stops_counting_it() {
        let registry = Revocations::new()
            .max_connections_per_subject(2.try_into().unwrap())
            .over_cap(OverCap::CloseOldest);
        let auth = registry.revocable(crate::authenticate_fn(|_, _| async {
            Ok(Identity::new("ivy", AuthMethod::Jwt))
        }));
        let parts = http::Request::new(()).into_parts().0;
        let credential = Credential::new(crate::Carrier::Bearer, "t");
        // Both slots reserved, no socket yet: nothing to close, refused.
        assert!(auth.authenticate(&credential, &parts).await.is_ok());
        assert!(auth.authenticate(&credential, &parts).await.is_ok());
        let refused = auth.authenticate(&credential, &parts).await;
        assert!(matches!(refused, Err(AuthError::TooManyConnections { .. })));
        let one = registry.register(&Identity::new("ivy", AuthMethod::Jwt));
        let two = registry.register(&Identity::new("ivy", AuthMethod::Jwt));
        // At the cap: admitted, and the oldest is replaced.
        assert!(auth.authenticate(&credential, &parts).await.is_ok());
        assert!(one.is_revoked() && one.is_replaced());
        assert!(!two.is_revoked());
        let three = registry.register(&Identity::new("ivy", AuthMethod::Jwt));
        // The replaced one no longer counts: the next replaces `two`.
        assert!(auth.authenticate(&credential, &parts).await.is_ok());
        assert!(two.is_replaced() && !three.is_revoked());
        let four = registry.register(&Identity::new("ivy", AuthMethod::Jwt));
        drop((one, two));
        assert_eq!(registry.inner.state().cap.subjects["ivy"].live, 2);
        // A revocation is not a replacement.
        registry.revoke_subject("ivy").await.unwrap();
        assert!(three.is_revoked() && !three.is_replaced());
        drop((three, four));
        assert!(registry.inner.state().cap.subjects.is_empty());
    }

    #[tokio::test]
    async fn a_displaced_lease_replaces_a_socket_of_its_holder_only() {
        let registry = Revocations::new().max_connections_per_subject(2.try_into().unwrap());
        let one = registry.register(&Identity::new("jo", AuthMethod::Jwt));
        let lease = registry.inner.new_lease();
        registry
            .inner
            .state()
            .cap
            .slots("jo")
            .leases
            .push(lease.clone());
        let displaced = |lease: &str| Revocation::Displaced {
            subject: "jo".into(),
            lease: lease.into(),
        };
        assert_eq!(registry.inner.apply(&displaced("elsewhere:1"), None), 0);
        assert!(!one.is_revoked());
        assert_eq!(registry.inner.apply(&displaced(&lease), None), 1);
        assert!(one.is_replaced());
        // Once only, and never recorded.
        assert_eq!(registry.inner.apply(&displaced(&lease), None), 0);
        assert!(registry.inner.state().records.order.is_empty());
        assert!(!registry.is_revoked(&Identity::new("jo", AuthMethod::Jwt)));
        drop(one);
        assert!(registry.inner.state().cap.subjects.is_empty());
    }

    #[test]
    fn lease_ids_sort_by_creation() {
        let inner = Inner::new(None);
        let first = inner.new_lease();
        std::thread::sleep(Duration::from_millis(2));
        let other = Inner::new(None).new_lease();
        std::thread::sleep(Duration::from_millis(2));
        let mut ids: Vec<Box<str>> = (0..12).map(|_| inner.new_lease()).collect();
        assert!(first < other && other < ids[0]);
        let sorted = ids.clone();
        ids.sort();
        assert_eq!(ids, sorted, "a registry's ids of one millisecond too");
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
        let dated = Revocation::IssuedBefore {
            subject: "a".into(),
            at: 7,
        };
        let json = serde_json::to_string(&dated).unwrap();
        assert_eq!(
            json,
            r#"{"kind":"issued_before","value":{"subject":"a","at":7}}"#
        );
        assert_eq!(serde_json::from_str::<Revocation>(&json).unwrap(), dated);
        let displaced = Revocation::Displaced {
            subject: "a\"b".into(),
            lease: "1-2:3".into(),
        };
        let json = serde_json::to_string(&displaced).unwrap();
        assert_eq!(
            json,
            r#"{"kind":"displaced","value":{"subject":"a\"b","lease":"1-2:3"}}"#
        );
        assert_eq!(
            serde_json::from_str::<Revocation>(&json).unwrap(),
            displaced
        );
    }
}
