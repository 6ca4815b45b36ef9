//! Memory bounds, measured with a counting global allocator over the whole
//! process (server and clients). The tests take [`serial`] so that no two
//! run at once: each reads the process-wide count of what is allocated now.
//! (The guard's peak-memory test reads the high-water mark instead, which
//! an earlier test would have raised: it runs in a process of its own,
//! `tests/guard_memory.rs`.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../common/mod.rs"]
mod common;

#[cfg(feature = "axum")]
mod idle;
#[cfg(all(feature = "axum", feature = "tungstenite"))]
mod unauthenticated;

use cap::Cap;
use tokio::sync::{Mutex, MutexGuard};

#[global_allocator]
static ALLOCATOR: Cap<std::alloc::System> = Cap::new(std::alloc::System, usize::MAX);

/// Held by each test for its whole run.
async fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::const_new(());
    LOCK.lock().await
}
