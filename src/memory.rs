//! Gives the memory of a burst back to the system: mimalloc frees a thread's empty pages only when that thread allocates again, and a worker that went idle after a burst never does.

use std::{
    cell::Cell,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

/// How often every worker collects its heap, once it next goes idle. A collection visits the
/// thread's pages (a few microseconds per thousand), so once a second costs nothing measurable,
/// and a burst is given back within a couple of seconds of its end.
pub const COLLECT_EVERY: Duration = Duration::from_secs(1);

/// Bumped every [`COLLECT_EVERY`]; a worker collects when it parks and sees a new value.
static EPOCH: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static SEEN: Cell<u64> = const { Cell::new(0) };
}

/// The runtime's `on_thread_park` hook: a load and a compare, except once per epoch, when this
/// worker frees its empty pages and the arenas purge what is free (force: without it mimalloc
/// waits for the purge delay, measured from a later allocation that an idle process never makes).
pub fn on_park() {
    let epoch = EPOCH.load(Ordering::Relaxed);
    SEEN.with(|seen| {
        if seen.get() != epoch {
            seen.set(epoch);
            // SAFETY: mi_collect only walks and frees the calling thread's own heap and the
            // arenas' free slices; it touches no block still in use and takes no arguments
            // that could be invalid.
            unsafe { libmimalloc_sys::mi_collect(true) };
        }
    });
}

/// Starts the clock of [`on_park`]. Each tick also spawns one empty task per worker: a worker
/// asleep on an idle runtime would otherwise not park again (and collect) until real work came.
pub fn spawn_collector() {
    tokio::spawn(async {
        let mut tick = tokio::time::interval(COLLECT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            EPOCH.fetch_add(1, Ordering::Relaxed);
            for _ in 0..=tokio::runtime::Handle::current().metrics().num_workers() {
                drop(tokio::spawn(async {}));
            }
        }
    });
}
