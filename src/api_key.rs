//! API keys: stored as SHA-256 digests, compared in constant time.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;

use http::request::Parts;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::authenticator::Authenticator;
use crate::credential::Credential;
use crate::error::AuthError;
use crate::identity::Identity;

/// The SHA-256 digest of an API key: what a store keeps instead of the key.
///
/// API keys are long random strings, so a fast hash is the right tool (a
/// password hash would only slow every upgrade down); what matters is that a
/// leaked table of digests yields no usable key.
///
/// ```
/// use tower_ws_auth::api_key::ApiKeyDigest;
///
/// let digest = ApiKeyDigest::of("sk_live_5f2a9c");
/// let hex = digest.to_hex();
/// assert_eq!(hex.len(), 64);
/// assert_eq!(ApiKeyDigest::from_hex(&hex), Some(digest));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ApiKeyDigest([u8; 32]);

impl ApiKeyDigest {
    /// The digest of `key`.
    pub fn of(key: &str) -> Self {
        Self(Sha256::digest(key.as_bytes()).into())
    }

    /// The digest's 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// From 32 bytes, as stored in a database.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Lower-case hexadecimal, 64 characters.
    pub fn to_hex(&self) -> String {
        use std::fmt::Write as _;
        self.0.iter().fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
    }

    /// Parses 64 hexadecimal characters.
    pub fn from_hex(hex: &str) -> Option<Self> {
        if hex.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (byte, pair) in out.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
            let text = std::str::from_utf8(pair).ok()?;
            *byte = u8::from_str_radix(text, 16).ok()?;
        }
        Some(Self(out))
    }

    /// Compares in constant time.
    pub fn ct_eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }

    fn bucket(&self) -> u64 {
        let [a, b, c, d, e, f, g, h, ..] = self.0;
        u64::from_le_bytes([a, b, c, d, e, f, g, h])
    }
}

impl fmt::Debug for ApiKeyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = self.to_hex();
        write!(f, "ApiKeyDigest({}…)", hex.get(..12).unwrap_or(&hex))
    }
}

/// Where API keys live: looks an identity up by the digest of a presented
/// key. Implement it over your database; return
/// [`AuthError::Unavailable`] (503) when the database cannot answer.
///
/// ```
/// use tower_ws_auth::{AuthError, AuthMethod, Identity, api_key::{ApiKeyDigest, ApiKeyStore}};
///
/// struct Db;
///
/// impl ApiKeyStore for Db {
///     async fn lookup(&self, digest: &ApiKeyDigest) -> Result<Option<Identity>, AuthError> {
///         // SELECT service FROM api_keys WHERE digest = $1 AND NOT revoked
///         let _ = digest.to_hex();
///         Ok(None)
///     }
/// }
/// ```
pub trait ApiKeyStore: Send + Sync + 'static {
    /// The identity of the key whose digest is `digest`, `None` if unknown.
    fn lookup(
        &self,
        digest: &ApiKeyDigest,
    ) -> impl Future<Output = Result<Option<Identity>, AuthError>> + Send;
}

/// An in-memory [`ApiKeyStore`]: digests bucketed by their first eight
/// bytes, each candidate compared in constant time.
#[derive(Clone, Default)]
pub struct MemoryApiKeys {
    buckets: HashMap<u64, Vec<(ApiKeyDigest, Identity)>>,
    len: usize,
}

impl fmt::Debug for MemoryApiKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryApiKeys")
            .field("keys", &self.len)
            .finish()
    }
}

impl MemoryApiKeys {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `key` (hashed at once; the plain key is not kept) for `identity`.
    pub fn insert(&mut self, key: &str, identity: Identity) {
        self.insert_digest(ApiKeyDigest::of(key), identity);
    }

    /// Adds a key by its digest, for keys whose plain text you never had.
    pub fn insert_digest(&mut self, digest: ApiKeyDigest, identity: Identity) {
        let bucket = self.buckets.entry(digest.bucket()).or_default();
        if let Some(slot) = bucket.iter_mut().find(|(d, _)| d.ct_eq(&digest)) {
            slot.1 = identity;
        } else {
            bucket.push((digest, identity));
            self.len += 1;
        }
    }

    /// Removes a key by its digest; `true` if it was there.
    pub fn remove_digest(&mut self, digest: &ApiKeyDigest) -> bool {
        let Some(bucket) = self.buckets.get_mut(&digest.bucket()) else {
            return false;
        };
        let before = bucket.len();
        bucket.retain(|(d, _)| !d.ct_eq(digest));
        let removed = bucket.len() != before;
        if bucket.is_empty() {
            self.buckets.remove(&digest.bucket());
        }
        if removed {
            self.len -= 1;
        }
        removed
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.len
    }

    /// `true` if there are no keys.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn find(&self, digest: &ApiKeyDigest) -> Option<&Identity> {
        let bucket = self.buckets.get(&digest.bucket())?;
        // Look at every candidate, so the time does not tell which matched.
        let mut found = None;
        for (candidate, identity) in bucket {
            if candidate.ct_eq(digest) {
                found = Some(identity);
            }
        }
        found
    }
}

impl ApiKeyStore for MemoryApiKeys {
    fn lookup(
        &self,
        digest: &ApiKeyDigest,
    ) -> impl Future<Output = Result<Option<Identity>, AuthError>> + Send {
        std::future::ready(Ok(self.find(digest).cloned()))
    }
}

/// Authenticates API keys, carried as a bearer token or in a header such
/// as `X-Api-Key` (configure the carrier on the layer).
///
/// ```
/// use tower_ws_auth::{AuthMethod, Identity, WsAuthLayer, api_key::ApiKeyAuthenticator};
///
/// let keys = ApiKeyAuthenticator::from_keys([
///     ("sk_live_9d1c7f0e5b", Identity::new("billing-service", AuthMethod::ApiKey)),
/// ])
/// .prefix("sk_live_");
/// let layer = WsAuthLayer::new(keys).header("x-api-key")?.bearer_header();
/// # let _ = layer;
/// # Ok::<(), tower_ws_auth::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct ApiKeyAuthenticator<S = MemoryApiKeys> {
    store: S,
    prefix: Option<Box<str>>,
}

impl<S> fmt::Debug for ApiKeyAuthenticator<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyAuthenticator")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl ApiKeyAuthenticator<MemoryApiKeys> {
    /// An authenticator over an in-memory set of `(key, identity)` pairs.
    pub fn from_keys<I, K>(keys: I) -> Self
    where
        I: IntoIterator<Item = (K, Identity)>,
        K: AsRef<str>,
    {
        let mut store = MemoryApiKeys::new();
        for (key, identity) in keys {
            store.insert(key.as_ref(), identity);
        }
        Self::new(store)
    }
}

impl<S: ApiKeyStore> ApiKeyAuthenticator<S> {
    /// An authenticator over `store`.
    pub fn new(store: S) -> Self {
        Self {
            store,
            prefix: None,
        }
    }

    /// Only credentials starting with `prefix` are API keys; others get
    /// [`AuthError::NotApplicable`], so [`or`](Authenticator::or) can send
    /// them to another authenticator (a JWT one, say).
    #[must_use]
    pub fn prefix(mut self, prefix: &str) -> Self {
        self.prefix = Some(prefix.into());
        self
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }
}

impl<S: ApiKeyStore> Authenticator for ApiKeyAuthenticator<S> {
    fn name(&self) -> &'static str {
        "api_key"
    }

    async fn authenticate(
        &self,
        credential: &Credential,
        _request: &Parts,
    ) -> Result<Identity, AuthError> {
        let key = credential.expose_secret();
        if let Some(prefix) = &self.prefix
            && !key.starts_with(&**prefix)
        {
            return Err(AuthError::NotApplicable);
        }
        match self.store.lookup(&ApiKeyDigest::of(key)).await? {
            Some(identity) => Ok(identity),
            None => Err(AuthError::invalid("unknown API key")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AuthMethod;

    #[test]
    fn store_finds_only_exact_keys() {
        let mut keys = MemoryApiKeys::new();
        keys.insert("key-one", Identity::new("one", AuthMethod::ApiKey));
        keys.insert("key-two", Identity::new("two", AuthMethod::ApiKey));
        assert_eq!(keys.len(), 2);
        assert_eq!(
            keys.find(&ApiKeyDigest::of("key-one"))
                .map(Identity::subject),
            Some("one")
        );
        assert!(keys.find(&ApiKeyDigest::of("key-on")).is_none());
        assert!(keys.remove_digest(&ApiKeyDigest::of("key-one")));
        assert!(!keys.remove_digest(&ApiKeyDigest::of("key-one")));
        assert!(keys.find(&ApiKeyDigest::of("key-one")).is_none());
        assert_eq!(keys.len(), 1);
    }

    #[test]
    fn digests_hide_keys() {
        let d = ApiKeyDigest::of("sk_live_abcdef");
        assert!(!format!("{d:?}").contains("sk_live"));
        assert_eq!(ApiKeyDigest::from_hex("zz"), None);
        assert_eq!(ApiKeyDigest::from_hex(&"g".repeat(64)), None);
        // Known vector: SHA-256("abc").
        assert_eq!(
            ApiKeyDigest::of("abc").to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
