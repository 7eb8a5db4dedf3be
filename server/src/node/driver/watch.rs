//! Watch routing: responses move from the watch hub into each stream's
//! bounded channel, never more than it has room for.

use super::*;

impl Driver {
    // ----- watches -----

    /// Moves responses from the hub into each stream's channel, no more
    /// than the channel has room for: a slow client's watches stay queued
    /// (or fall back to catch-up) inside the hub instead of growing here.
    pub(super) fn route_watch_responses(&mut self) {
        self.metrics
            .watch_streams
            .store(self.watch_streams.len() as u64, Ordering::Relaxed);
        self.metrics
            .watchers
            .store(self.watch_hub.watch_count() as u64, Ordering::Relaxed);
        if self.watch_streams.is_empty() {
            return;
        }
        let mut budget = WATCH_RESPONSES_PER_TURN_MAX;
        let mut delivered = false;
        let streams: Vec<StreamId> = self.watch_streams.keys().copied().collect();
        for stream in streams {
            let Some(sender) = self.watch_streams.get(&stream) else {
                continue;
            };
            if sender.is_closed() {
                debug!(stream, "watch stream closed");
                self.watch_streams.remove(&stream);
                self.watch_hub.close_stream(stream);
                continue;
            }
            let room = sender.capacity().min(budget);
            if room == 0 {
                continue;
            }
            let responses = self.watch_hub.poll_stream(&self.store, stream, room);
            budget -= responses.len();
            for response in responses {
                delivered = true;
                // Only this task sends on the channel, and it had room.
                if sender.try_send(response).is_err() {
                    debug!(stream, "watch stream closed while sending");
                    break;
                }
            }
        }
        if budget == 0 || (delivered && self.watch_hub.has_unsynced()) {
            self.more_work = true;
        }
    }
}
