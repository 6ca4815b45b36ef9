//! [`Cached`]: remembers successful authentications for a while.

use std::fmt;
use std::sync::Arc;
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

struct IdentityExpiry {
    ttl: Duration,
}

impl Expiry<Key, Identity> for IdentityExpiry {
    fn expire_after_create(
        &self,
        _key: &Key,
        value: &Identity,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(match value.time_left(SystemTime::now()) {
            Some(left) => left.min(self.ttl),
            None => self.ttl,
        })
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
/// * A revoked credential stays valid here until its entry ends: keep the
///   TTL short or call [`invalidate`](Self::invalidate).
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
    cache: Cache<Key, Identity, DigestState>,
}

impl<A> Clone for Cached<A>
where
    A: Clone,
{
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            cache: self.cache.clone(),
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
            .expire_after(IdentityExpiry { ttl })
            .build_with_hasher(DigestState::default());
        Self { inner, cache }
    }

    /// Forgets the cached identity of `credential`, if any.
    pub async fn invalidate(&self, credential: &Credential) {
        self.cache.invalidate(&key(credential)).await;
    }

    /// Forgets every cached identity.
    pub fn invalidate_all(&self) {
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
    async fn authenticate(
        &self,
        credential: &Credential,
        request: &Parts,
    ) -> Result<Identity, AuthError> {
        let key = key(credential);
        // A hit: a plain lookup, cheaper than the entry API below.
        if let Some(identity) = self.cache.get(&key).await
            && !identity.is_expired_at(SystemTime::now())
        {
            return Ok(identity);
        }
        let identity = self
            .cache
            // Lazy: the inner authenticator is not even called on a hit, and
            // only one of several concurrent callers for a key runs it.
            .try_get_with(key, async {
                self.inner.authenticate(credential, request).await
            })
            .await
            .map_err(Arc::unwrap_or_clone)?;
        if identity.is_expired_at(SystemTime::now()) {
            self.cache.invalidate(&key).await;
            return self.inner.authenticate(credential, request).await;
        }
        Ok(identity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
