//! [`PendingCap`]: how many connections may wait at once (for their
//! authentication message, or for a refusal's Close to be answered).

use std::fmt;
use std::num::NonZeroUsize;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A count of waiting connections, shared by clones, with a maximum.
#[derive(Clone)]
pub(crate) struct PendingCap {
    max: NonZeroUsize,
    slots: Arc<Semaphore>,
}

impl PendingCap {
    /// Room for `max` connections at once.
    pub(crate) fn new(max: NonZeroUsize) -> Self {
        Self {
            max,
            slots: Arc::new(Semaphore::new(max.get())),
        }
    }

    /// The maximum.
    #[cfg(feature = "close-rejections")]
    pub(crate) fn max(&self) -> NonZeroUsize {
        self.max
    }

    /// Connections waiting now.
    pub(crate) fn pending(&self) -> usize {
        self.max
            .get()
            .saturating_sub(self.slots.available_permits())
    }

    /// A slot, held until the permit is dropped; `None` when all are taken.
    pub(crate) fn try_acquire(&self) -> Option<OwnedSemaphorePermit> {
        self.slots.clone().try_acquire_owned().ok()
    }
}

impl fmt::Debug for PendingCap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingCap")
            .field("max", &self.max)
            .field("pending", &self.pending())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_shared_by_clones_and_given_back() {
        let cap = PendingCap::new(NonZeroUsize::new(2).unwrap());
        let clone = cap.clone();
        let a = cap.try_acquire().unwrap();
        let _b = clone.try_acquire().unwrap();
        assert_eq!(cap.pending(), 2);
        assert!(cap.try_acquire().is_none());
        drop(a);
        assert_eq!(clone.pending(), 1);
        assert!(clone.try_acquire().is_some());
    }
}
