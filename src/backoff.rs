//! Waiting between attempts that keep failing: a schedule of waits, one per failure in a
//! row, whose last step repeats. Each user keeps its own count of failures (a control
//! channel's reconnects, the prewarm pool's opens, `hyco up`'s entries) and its own
//! schedule; none sleeps here.

use std::time::Duration;

/// A schedule of waits, in seconds: after the `n`th failure in a row (from 0), wait the
/// `n`th step; the last step repeats.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Backoff(pub &'static [u64]);

impl Backoff {
    /// The wait after `failures` failures in a row before this one.
    pub(crate) fn delay(self, failures: usize) -> Duration {
        let steps = self.0;
        Duration::from_secs(steps[failures.min(steps.len() - 1)])
    }
}

/// An attempt that went on this long was a success: the next failure counts as the first.
pub(crate) const HEALTHY_PERIOD: Duration = Duration::from_secs(60);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_in_turn_then_the_last_repeats() {
        let b = Backoff(&[0, 1, 5]);
        let waits: Vec<u64> = (0..5).map(|n| b.delay(n).as_secs()).collect();
        assert_eq!(waits, [0, 1, 5, 5, 5]);
    }
}
