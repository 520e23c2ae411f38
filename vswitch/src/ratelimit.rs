//! Log rate limiting: a warning that can repeat per connection or per
//! packet is logged at most once per interval, with the count held back.
#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

/// Allows one event per interval and counts the others.
#[derive(Debug)]
pub struct RateLimited {
    every: Duration,
    last: Option<Instant>,
    held: u64,
}

impl RateLimited {
    pub const fn new(every: Duration) -> Self {
        Self { every, last: None, held: 0 }
    }

    /// `Some(n)` when the event may be logged now (`n`: how many were held
    /// back since the last one logged), `None` when it is to be held back.
    pub fn check(&mut self) -> Option<u64> {
        let now = Instant::now();
        match self.last {
            Some(t) if now.duration_since(t) < self.every => {
                self.held += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.held))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_per_interval_with_the_count_held_back() {
        let mut r = RateLimited::new(Duration::from_millis(50));
        assert_eq!(r.check(), Some(0));
        assert_eq!((r.check(), r.check()), (None, None));
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(r.check(), Some(2));
        assert_eq!(r.check(), None);
    }
}
