//! [`Inflights`]: the pipelining window of one follower. The leader sends
//! appends without waiting for each answer, but at most
//! `Config::inflight_messages_max` of them at a time, so a slow follower
//! costs bounded memory and bandwidth.

use std::collections::VecDeque;

use super::entry::Index;

/// The last index of each append message in flight to one follower, oldest first.
#[derive(Clone, Debug)]
pub(crate) struct Inflights {
    // Invariant: strictly increasing, and `last_indexes.len() <= capacity`.
    last_indexes: VecDeque<Index>,
    capacity: usize,
}

impl Inflights {
    pub(crate) fn new(capacity: usize) -> Inflights {
        assert!(
            capacity > 0,
            "inflight capacity must be positive, got {capacity}"
        );
        Inflights {
            last_indexes: VecDeque::new(),
            capacity,
        }
    }

    /// Records a message whose last entry is `last_index`.
    pub(crate) fn add(&mut self, last_index: Index) {
        assert!(
            !self.full(),
            "inflight window full ({} of {})",
            self.last_indexes.len(),
            self.capacity
        );
        if let Some(&back) = self.last_indexes.back() {
            assert!(back < last_index, "inflight {last_index} not after {back}");
        }
        self.last_indexes.push_back(last_index);
    }

    /// Frees every message acknowledged by a match at `index`.
    pub(crate) fn free_to(&mut self, index: Index) {
        while self
            .last_indexes
            .front()
            .is_some_and(|&front| front <= index)
        {
            self.last_indexes.pop_front();
        }
    }

    pub(crate) fn reset(&mut self) {
        self.last_indexes.clear();
    }

    pub(crate) fn full(&self) -> bool {
        self.last_indexes.len() >= self.capacity
    }

    pub(crate) fn count(&self) -> usize {
        self.last_indexes.len()
    }
}
