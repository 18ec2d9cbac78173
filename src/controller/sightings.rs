//! When the operator first saw a fact, on its own monotonic clock.
//!
//! The API server stamps `completionTime` and `creationTimestamp` with its
//! clock; the operator's may run minutes ahead or behind. So a grace period
//! ("a completed Job's pod may still be unseen for 30 s") is measured from
//! the moment this process first observed the fact, never by comparing a
//! server timestamp with the local clock. A restarted operator starts its
//! grace periods again: it waits longer, never less.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A fact not observed again for this long is forgotten (its object is
/// gone, or its build settled).
const FORGET_AFTER: Duration = Duration::from_secs(2 * 3600);
/// Forgetting runs when this many facts are held, at most once a minute.
const SWEEP_AT: usize = 1024;
const SWEEP_EVERY: Duration = Duration::from_secs(60);

#[derive(Default)]
pub struct Sightings {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Fact -> (first seen, last seen).
    seen: HashMap<String, (Instant, Instant)>,
    swept: Option<Instant>,
}

impl Sightings {
    /// How long `fact` has been observed as of `at`; it is first seen now if new.
    pub fn seen_for(&self, fact: &str, at: Instant) -> Duration {
        let mut inner = self.inner.lock().expect("the sightings lock");
        let entry = inner.seen.entry(fact.to_string()).or_insert((at, at));
        entry.1 = entry.1.max(at);
        at.saturating_duration_since(entry.0)
    }

    /// Drops facts not observed for `FORGET_AFTER`, when there are many.
    pub fn forget_older_than(&self, at: Instant) {
        let mut inner = self.inner.lock().expect("the sightings lock");
        let due = inner
            .swept
            .is_none_or(|last| at.saturating_duration_since(last) >= SWEEP_EVERY);
        if inner.seen.len() < SWEEP_AT || !due {
            return;
        }
        inner.swept = Some(at);
        inner
            .seen
            .retain(|_, (_, last)| at.saturating_duration_since(*last) < FORGET_AFTER);
    }

    pub fn len(&self) -> usize {
        self.inner.lock().expect("the sightings lock").seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measured_from_the_first_sighting_and_forgotten_when_stale() {
        let sightings = Sightings::default();
        let t0 = Instant::now();
        assert_eq!(sightings.seen_for("a", t0), Duration::ZERO);
        let later = t0 + Duration::from_secs(31);
        assert_eq!(sightings.seen_for("a", later), Duration::from_secs(31));
        for i in 0..SWEEP_AT {
            sightings.seen_for(&format!("old{i}"), t0);
        }
        let much_later = t0 + FORGET_AFTER + Duration::from_secs(40);
        sightings.seen_for("a", much_later);
        sightings.forget_older_than(much_later);
        assert_eq!(sightings.len(), 1, "only the fact still observed is kept");
    }
}
