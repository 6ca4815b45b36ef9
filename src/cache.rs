//! [`Cached`]: remembers successful authentications for a while.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime};

use http::request::Parts;
use moka::Expiry;
use moka::future::Cache;
use sha2::{Digest, Sha256};

use crate::authenticator::Authenticator;
use crate::credential::{Carrier, Credential};
use crate::error::AuthError;
use crate::identity::Identity;

/// The cache key: SHA-256 over the carrier and the secret. The raw secret
/// is never stored.
type Key = [u8; 32];

/// The table's hasher: the key is already a SHA-256 digest, so its first
/// eight bytes are a uniform hash (SipHash over it again would cost more
/// than the lookup). Only successful authentications are inserted, so a
/// client cannot choose the keys that land in the table.
#[derive(Clone, Copy, Default)]
struct DigestHasher(u64);

impl std::hash::Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // `[u8; 32]` hashes as its bytes; fold any other input in too.
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            for (slot, byte) in word.iter_mut().zip(chunk) {
                *slot = *byte;
            }
            self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(word);
        }
    }
}

type DigestState = std::hash::BuildHasherDefault<DigestHasher>;

fn key(credential: &Credential) -> Key {
    let mut hasher = Sha256::new();
    hasher.update(credential.carrier().as_str().as_bytes());
    if let Carrier::Header(name) = credential.carrier() {
        hasher.update(b":");
        hasher.update(name.as_str().as_bytes());
    }
    hasher.update([0u8]);
    hasher.update(credential.expose_secret().as_bytes());
    hasher.finalize().into()
}

/// A cached identity and the instant its entry ends: the TTL or the
/// identity's own expiry, whichever comes first, fixed when it was cached.
#[derive(Clone)]
struct Entry {
    identity: Identity,
    deadline: Instant,
}

impl Entry {
    fn new(identity: Identity, ttl: Duration) -> Self {
        let life = match identity.time_left(SystemTime::now()) {
            Some(left) => left.min(ttl),
            None => ttl,
        };
        let now = Instant::now();
        // A lifetime past what the clock can represent never ends in practice.
        let deadline = now
            .checked_add(life)
            .unwrap_or_else(|| now + Duration::from_secs(60 * 60 * 24 * 365));
        Self { identity, deadline }
    }

    /// Still usable at `now` (and the identity not expired by the wall clock).
    fn live(&self, now: Instant) -> bool {
        now < self.deadline
            && self
                .identity
                .expires_at()
                .is_none_or(|at| SystemTime::now() < at)
    }
}

struct IdentityExpiry;

impl Expiry<Key, Entry> for IdentityExpiry {
    fn expire_after_create(
        &self,
        _key: &Key,
        value: &Entry,
        created_at: Instant,
    ) -> Option<Duration> {
        Some(value.deadline.saturating_duration_since(created_at))
    }
}

/// The number of shards of the hot set.
const HOT_SHARDS: usize = 16;
/// The hot set holds at most this many entries (or the capacity, if smaller).
const HOT_MAX: u64 = 16 * 1024;

type Shard = RwLock<HashMap<Key, Entry, DigestState>>;

/// The recently used entries, in front of the moka cache: a hit here is a
/// read lock on one of sixteen shards and a hash lookup, where moka's own
/// lookup (its read log, frequency sketch and housekeeping) costs several
/// times more on a busy server. Entries are copies of moka's, with the
/// same deadline. Invalidation bumps a generation before removing entries,
/// and an entry read from moka before an invalidation is not copied here
/// after it.
struct HotSet {
    shards: [Shard; HOT_SHARDS],
    generation: AtomicU64,
    per_shard: usize,
}

impl HotSet {
    fn new(capacity: u64) -> Self {
        let total = usize::try_from(capacity.min(HOT_MAX)).unwrap_or(0);
        Self {
            shards: std::array::from_fn(|_| RwLock::new(HashMap::default())),
            generation: AtomicU64::new(0),
            per_shard: total.div_ceil(HOT_SHARDS),
        }
    }

    fn shard(&self, key: &Key) -> Option<&Shard> {
        // The table hashes the first bytes; the shard comes from the last.
        let index = usize::from(key.last().copied().unwrap_or(0)) % HOT_SHARDS;
        self.shards.get(index)
    }

    fn get(&self, key: &Key, now: Instant) -> Option<Identity> {
        let shard = self
            .shard(key)?
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        shard
            .get(key)
            .filter(|entry| entry.live(now))
            .map(|entry| entry.identity.clone())
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Copies `entry` here, unless an invalidation happened since
    /// `generation` was read.
    fn insert(&self, key: Key, entry: &Entry, generation: u64) {
        let Some(shard) = self.shard(&key).filter(|_| self.per_shard > 0) else {
            return;
        };
        let mut shard = shard.write().unwrap_or_else(PoisonError::into_inner);
        if self.generation.load(Ordering::Acquire) != generation {
            return;
        }
        if shard.len() >= self.per_shard && !shard.contains_key(&key) {
            // Full: start the shard again (amortised O(1) per insert); the
            // entries are still in moka and come back here when used.
            shard.clear();
        }
        shard.insert(key, entry.clone());
    }

    fn remove(&self, key: &Key) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        if let Some(shard) = self.shard(key) {
            shard
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(key);
        }
    }

    fn clear(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        for shard in &self.shards {
            shard
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .clear();
        }
    }
}

/// Caches the identities an authenticator returns, keyed by a SHA-256
/// digest of the credential; see [`Authenticator::cached`].
///
/// * Only successes are cached; errors (and backend outages) never are.
/// * An entry lives for the TTL or until the identity's own expiry,
///   whichever comes first.
/// * Concurrent requests with the same credential share one call to the
///   inner authenticator.
/// * The key covers the credential only: an authenticator whose answer
///   depends on other parts of the request (the peer address, say) should
///   not be cached.
/// * Revocation: wrap the cache in `Revocations::revocable` (feature
///   `socket`), outside it: every identity the cache returns is then checked
///   against the revocation list, and a revoked one is refused (`401`) at
///   once, on every instance sharing the list's bus. Without it, a revoked
///   credential stays valid here until its entry ends (keep the TTL short
///   or call [`invalidate`](Self::invalidate), which works per credential
///   and per instance).
/// * Recently used entries are also kept in a small table in front of the
///   cache (sixteen read-locked shards, at most 16,384 entries or the
///   capacity, whichever is smaller) with the same deadlines, so that a hit
///   costs a hash and a lookup; [`invalidate`](Self::invalidate) and
///   [`invalidate_all`](Self::invalidate_all) clear it too.
///
/// ```
/// use std::time::Duration;
/// use tower_ws_auth::{authenticate_fn, AuthMethod, Authenticator, Identity};
///
/// let auth = authenticate_fn(|c, _| {
///     let user = c.expose_secret().to_owned();
///     async move { Ok(Identity::new(user, AuthMethod::Custom("demo"))) }
/// })
/// .cached(Duration::from_secs(30), 10_000);
/// # let _ = auth;
/// ```
pub struct Cached<A> {
    inner: A,
    ttl: Duration,
    cache: Cache<Key, Entry, DigestState>,
    hot: Arc<HotSet>,
}

impl<A> Clone for Cached<A>
where
    A: Clone,
{
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            ttl: self.ttl,
            cache: self.cache.clone(),
            hot: self.hot.clone(),
        }
    }
}

impl<A> fmt::Debug for Cached<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cached")
            .field("entries", &self.cache.entry_count())
            .finish_non_exhaustive()
    }
}

impl<A: Authenticator> Cached<A> {
    pub(crate) fn new(inner: A, ttl: Duration, capacity: u64) -> Self {
        let cache = Cache::builder()
            .max_capacity(capacity)
            .expire_after(IdentityExpiry)
            .build_with_hasher(DigestState::default());
        Self {
            inner,
            ttl,
            cache,
            hot: Arc::new(HotSet::new(capacity)),
        }
    }

    /// Forgets the cached identity of `credential`, if any.
    pub async fn invalidate(&self, credential: &Credential) {
        let key = key(credential);
        self.hot.remove(&key);
        self.cache.invalidate(&key).await;
    }

    /// Forgets every cached identity.
    pub fn invalidate_all(&self) {
        self.hot.clear();
        self.cache.invalidate_all();
    }

    /// The number of cached identities (approximate until pending
    /// maintenance has run).
    pub fn entry_count(&self) -> u64 {
        self.cache.entry_count()
    }

    /// Runs pending maintenance (evictions, expirations) now.
    pub async fn run_pending_tasks(&self) {
        self.cache.run_pending_tasks().await;
    }
}

impl<A: Authenticator> Authenticator for Cached<A> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    async fn authenticate(
        &self,
        credential: &Credential,
        request: &Parts,
    ) -> Result<Identity, AuthError> {
        let key = key(credential);
        if let Some(identity) = self.hot.get(&key, Instant::now()) {
            return Ok(identity);
        }
        let generation = self.hot.generation();
        // A hit in moka: a plain lookup, cheaper than the entry API below.
        if let Some(entry) = self.cache.get(&key).await
            && entry.live(Instant::now())
        {
            self.hot.insert(key, &entry, generation);
            return Ok(entry.identity);
        }
        let ttl = self.ttl;
        let entry = self
            .cache
            // Lazy: the inner authenticator is not even called on a hit, and
            // only one of several concurrent callers for a key runs it.
            .try_get_with(key, async {
                let identity = self.inner.authenticate(credential, request).await?;
                Ok::<_, AuthError>(Entry::new(identity, ttl))
            })
            .await
            .map_err(Arc::unwrap_or_clone)?;
        if !entry.live(Instant::now()) {
            self.cache.invalidate(&key).await;
            return self.inner.authenticate(credential, request).await;
        }
        self.hot.insert(key, &entry, generation);
        Ok(entry.identity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(subject: &str) -> Entry {
        Entry::new(
            Identity::new(subject, crate::AuthMethod::Custom("test")),
            Duration::from_secs(60),
        )
    }

    #[test]
    fn hot_set_serves_live_entries_only() {
        let hot = HotSet::new(100);
        let key = [7u8; 32];
        let now = Instant::now();
        assert!(hot.get(&key, now).is_none());
        hot.insert(key, &entry("alice"), hot.generation());
        assert_eq!(
            hot.get(&key, now)
                .map(|i| i.subject().to_owned())
                .as_deref(),
            Some("alice")
        );
        // Past its deadline it is not served.
        assert!(hot.get(&key, now + Duration::from_secs(61)).is_none());
        // An identity that expired by the wall clock is not served either.
        let expired = Entry {
            identity: Identity::builder("bob", crate::AuthMethod::Custom("test"))
                .expires_at(SystemTime::now() - Duration::from_secs(1))
                .build(),
            deadline: now + Duration::from_secs(60),
        };
        hot.insert([8u8; 32], &expired, hot.generation());
        assert!(hot.get(&[8u8; 32], now).is_none());
    }

    #[test]
    fn hot_set_refuses_copies_read_before_an_invalidation() {
        let hot = HotSet::new(100);
        let key = [9u8; 32];
        let before = hot.generation();
        hot.remove(&key);
        hot.insert(key, &entry("alice"), before);
        assert!(hot.get(&key, Instant::now()).is_none());
        let before = hot.generation();
        hot.clear();
        hot.insert(key, &entry("alice"), before);
        assert!(hot.get(&key, Instant::now()).is_none());
        hot.insert(key, &entry("alice"), hot.generation());
        assert!(hot.get(&key, Instant::now()).is_some());
        hot.remove(&key);
        assert!(hot.get(&key, Instant::now()).is_none());
    }

    #[test]
    fn hot_set_is_bounded() {
        let hot = HotSet::new(32);
        for i in 0..=255u8 {
            hot.insert([i; 32], &entry("x"), hot.generation());
        }
        let held: usize = hot.shards.iter().map(|s| s.read().unwrap().len()).sum();
        assert!(held <= 32, "{held}");
    }

    #[test]
    fn key_depends_on_carrier_and_secret_only() {
        let a = Credential::new(Carrier::Bearer, "tok");
        let b = Credential::new(Carrier::Query, "tok");
        let c = Credential::new(Carrier::Bearer, "tok2");
        assert_eq!(key(&a), key(&a.clone()));
        assert_ne!(key(&a), key(&b));
        assert_ne!(key(&a), key(&c));
        // The key is a digest: the secret's bytes do not appear in it.
        let long = Credential::new(Carrier::Bearer, "A".repeat(64));
        assert!(!key(&long).windows(4).any(|w| w == b"AAAA"));
    }
}
