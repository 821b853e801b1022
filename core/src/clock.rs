//! Time, as the protocol machines see it.
//!
//! Every protocol machine in tenure (leases, retry schedules, the server's liveness tracker)
//! reads time only through the `now` values it is given; the runtime reads them from a
//! [`Clock`]. Production code uses [`SystemClock`]; tests use [`ManualClock`], which only moves
//! when told to, so a test of a ten-second lease runs in microseconds and never sleeps.

use parking_lot::Mutex;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A source of monotonic time.
pub trait Clock: Send + Sync {
    /// The current instant.
    fn now(&self) -> Instant;
}

/// The operating system's monotonic clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that moves only when [`ManualClock::advance`] or [`ManualClock::set`] is called.
///
/// Clones share the same time.
#[derive(Debug, Clone)]
pub struct ManualClock {
    base: Instant,
    offset: Arc<Mutex<Duration>>,
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl ManualClock {
    /// A manual clock starting at an arbitrary instant.
    pub fn new() -> Self {
        ManualClock {
            base: Instant::now(),
            offset: Arc::new(Mutex::new(Duration::ZERO)),
        }
    }

    /// Moves time forward by `d`.
    pub fn advance(&self, d: Duration) {
        *self.offset.lock() += d;
    }

    /// Sets time to `start + d`, where `start` is the instant the clock was created with.
    /// Time never goes backwards: a smaller `d` than the current offset is ignored.
    pub fn set(&self, d: Duration) {
        let mut o = self.offset.lock();
        if d > *o {
            *o = d;
        }
    }

    /// The instant the clock started at.
    pub fn start(&self) -> Instant {
        self.base
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.base + *self.offset.lock()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new();
        let t0 = c.now();
        assert_eq!(c.now(), t0);
        c.advance(Duration::from_secs(10));
        assert_eq!(c.now() - t0, Duration::from_secs(10));
        c.set(Duration::from_secs(5));
        assert_eq!(c.now() - t0, Duration::from_secs(10), "never backwards");
        let c2 = c.clone();
        c2.advance(Duration::from_millis(1));
        assert_eq!(c.now() - t0, Duration::from_millis(10_001));
    }
}
