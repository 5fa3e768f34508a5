//! The time as a loop thread sees it: read once per loop iteration, not several times per
//! request. Timeouts are seconds long, and an iteration never blocks, so the reading is fresh
//! enough for all of them.

use std::cell::Cell;
use std::time::Instant;

thread_local! {
    static LOOP_NOW: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Loop thread: reads the clock for the iteration that starts.
pub fn tick() {
    LOOP_NOW.with(|c| c.set(Some(Instant::now())));
}

/// The current iteration's time on a loop thread; the clock anywhere else.
pub fn now() -> Instant {
    LOOP_NOW.with(Cell::get).unwrap_or_else(Instant::now)
}

/// Tests: this thread's loop time is `at` until the next `tick`, so timeouts can be tested
/// without waiting for them.
#[cfg(test)]
pub fn set(at: Instant) {
    LOOP_NOW.with(|c| c.set(Some(at)));
}
