//! The in-memory ticket store: one lock around a capped table.

use std::collections::VecDeque;
use std::collections::hash_map::{Entry, HashMap};
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::Key;
use crate::error::AuthError;
use crate::identity::Identity;

/// Tickets by digest, with their deadlines in minting order for eviction.
#[derive(Clone)]
pub(super) struct MemoryStore {
    table: Arc<Mutex<Table>>,
    capacity: usize,
}

#[derive(Default)]
struct Table {
    live: HashMap<Key, (Identity, Instant)>,
    /// Every ticket minted and not yet evicted, oldest first: redeemed
    /// ones stay here until their deadline, or until compaction.
    order: VecDeque<(Key, Instant)>,
}

impl Table {
    /// Drops the tickets whose deadline has passed.
    fn evict(&mut self, now: Instant) {
        while let Some(&(key, deadline)) = self.order.front() {
            if deadline > now {
                break;
            }
            if self.live.get(&key).is_some_and(|(_, d)| *d <= now) {
                self.live.remove(&key);
            }
            self.order.pop_front();
        }
    }
}

impl MemoryStore {
    pub(super) fn new(capacity: NonZeroUsize) -> Self {
        Self {
            table: Arc::default(),
            capacity: capacity.get(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // The table is consistent after every statement: a panic elsewhere
        // while the lock was held leaves nothing half-done.
        self.table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Stores `identity` under `key` for `ttl`.
    pub(super) fn insert(
        &self,
        key: Key,
        identity: Identity,
        ttl: Duration,
    ) -> Result<(), AuthError> {
        let now = Instant::now();
        let deadline = now
            .checked_add(ttl)
            .ok_or_else(|| AuthError::unavailable("ticket deadline out of range"))?;
        let mut table = self.lock();
        table.evict(now);
        if table.live.len() >= self.capacity {
            return Err(AuthError::unavailable("ticket store full"));
        }
        // Redeemed tickets linger in `order` until their deadline: compact
        // it when it holds twice the capacity, so it stays bounded too.
        if table.order.len() >= self.capacity.saturating_mul(2) {
            let Table { live, order } = &mut *table;
            order.retain(|(key, _)| live.contains_key(key));
        }
        match table.live.entry(key) {
            Entry::Occupied(_) => return Err(AuthError::unavailable("ticket collision")),
            Entry::Vacant(slot) => {
                slot.insert((identity, deadline));
            }
        }
        table.order.push_back((key, deadline));
        Ok(())
    }

    /// Removes the ticket under `key` and returns its identity if it has
    /// not expired. One lock: of two concurrent redemptions one wins.
    pub(super) fn take(&self, key: &Key) -> Option<Identity> {
        let now = Instant::now();
        let (identity, deadline) = self.lock().live.remove(key)?;
        (deadline > now).then_some(identity)
    }

    #[cfg(test)]
    fn sizes(&self) -> (usize, usize) {
        let table = self.lock();
        (table.live.len(), table.order.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::AuthMethod;

    fn key(n: u8) -> Key {
        [n; 32]
    }

    #[test]
    fn capped_and_evicted() {
        let store = MemoryStore::new(NonZeroUsize::new(2).unwrap());
        let id = Identity::new("a", AuthMethod::Jwt);
        let ttl = Duration::from_millis(50);
        store.insert(key(1), id.clone(), ttl).unwrap();
        store.insert(key(2), id.clone(), ttl).unwrap();
        assert!(matches!(
            store.insert(key(3), id.clone(), ttl),
            Err(AuthError::Unavailable { .. })
        ));
        std::thread::sleep(Duration::from_millis(60));
        assert!(store.take(&key(1)).is_none(), "expired");
        store.insert(key(3), id.clone(), ttl).unwrap();
        assert_eq!(store.sizes(), (1, 1));
    }

    #[test]
    fn redeemed_entries_do_not_grow_the_queue() {
        let store = MemoryStore::new(NonZeroUsize::new(3).unwrap());
        let id = Identity::new("a", AuthMethod::Jwt);
        for n in 0..=200u8 {
            store
                .insert(key(n), id.clone(), Duration::from_secs(60))
                .unwrap();
            assert!(store.take(&key(n)).is_some());
            assert!(store.take(&key(n)).is_none(), "single use");
            assert!(store.sizes().1 <= 6);
        }
    }
}
