//! A bound on concurrent graph searches.
//!
//! The graph library gives each concurrent search one of a fixed number of scratch contexts and
//! fails a search that finds none free, rather than waiting. Searches therefore pass through
//! this gate, which holds as many places as the graph has contexts and makes the rest wait.

use std::sync::{Condvar, Mutex, PoisonError};

pub(crate) struct SearchSlots {
    free: Mutex<usize>,
    released: Condvar,
}

/// One place in the gate, given back when dropped.
pub(crate) struct SearchSlot<'a> {
    slots: &'a SearchSlots,
}

impl SearchSlots {
    pub(crate) fn new(count: usize) -> Self {
        Self { free: Mutex::new(count), released: Condvar::new() }
    }

    /// Waits for a free place. The counter is a plain integer that no panic can leave half
    /// updated, so a poisoned lock is still sound to use.
    pub(crate) fn acquire(&self) -> SearchSlot<'_> {
        let free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        let mut free = self.released.wait_while(free, |free| *free == 0).unwrap_or_else(PoisonError::into_inner);
        *free -= 1;
        SearchSlot { slots: self }
    }
}

impl Drop for SearchSlot<'_> {
    fn drop(&mut self) {
        *self.slots.free.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        self.slots.released.notify_one();
    }
}
