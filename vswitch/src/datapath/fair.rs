//! Cycle fairness between a PMD's receive queues. Polling each queue once an
//! iteration shares the PMD by bursts, so a port whose packets are expensive
//! (a new-flow flood: every packet a miss, many an upcall) takes most of the
//! cycles from a port whose packets hit the caches. Here every queue that
//! stays backlogged (it returned a full burst) is charged the cycles its
//! bursts took, and a queue more than a quantum ahead of the one furthest
//! behind sits out an iteration: backlogged queues get equal cycles, not
//! equal bursts. A queue that is not backlogged builds no credit (it is
//! brought up to within a quantum of the front), so it never holds the
//! others back and, when it fills up, it is served at once. With one
//! backlogged queue nothing is ever skipped.
//!
//! A burst that is mostly new flows (packets that missed both caches) is
//! charged twice its cycles: while traffic that hits the caches waits on
//! another queue, new-flow work gets a third of the PMD, not half (the
//! slow path yields to established flows, as Open vSwitch's does by
//! running in other threads).

pub struct CycleFair {
    /// Cycles charged to each queue (a virtual time).
    charged: Vec<u64>,
    backlogged: Vec<bool>,
    quantum: u64,
    floor: u64,
}

impl CycleFair {
    pub fn new(queues: usize, quantum: u64) -> Self {
        Self { charged: vec![0; queues], backlogged: vec![false; queues], quantum, floor: 0 }
    }

    /// Whether queue `q` is polled this iteration.
    #[inline]
    pub fn may_poll(&self, q: usize) -> bool {
        self.charged[q] <= self.floor + self.quantum
    }

    /// Queue `q` was polled: it took `cycles`; `backlogged` when it
    /// returned a full burst; `new_flows` when most of the burst missed the
    /// caches (charged double).
    #[inline]
    pub fn charge(&mut self, q: usize, cycles: u64, backlogged: bool, new_flows: bool) {
        self.charged[q] += if new_flows { cycles * 2 } else { cycles };
        self.backlogged[q] = backlogged;
    }

    /// After every queue's turn: queues that are not backlogged catch up,
    /// and the floor is the queue furthest behind.
    pub fn end_iteration(&mut self) {
        let front = self.charged.iter().copied().max().unwrap_or(0);
        let catch_up = front.saturating_sub(self.quantum);
        for (c, &b) in self.charged.iter_mut().zip(&self.backlogged) {
            if !b && *c < catch_up {
                *c = catch_up;
            }
        }
        self.floor = self.charged.iter().copied().min().unwrap_or(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two backlogged queues, one costing `cost[q]` cycles a burst: the
    /// bursts each gets over `iterations`.
    fn run(cost: [u64; 2], backlogged: [bool; 2], iterations: usize) -> [u64; 2] {
        run_with(cost, backlogged, [false, false], iterations)
    }

    fn run_with(cost: [u64; 2], backlogged: [bool; 2], new_flows: [bool; 2], iterations: usize) -> [u64; 2] {
        let mut f = CycleFair::new(2, 1000);
        let mut polls = [0u64; 2];
        for _ in 0..iterations {
            for q in 0..2 {
                if f.may_poll(q) {
                    polls[q] += 1;
                    f.charge(q, cost[q], backlogged[q], new_flows[q]);
                }
            }
            f.end_iteration();
        }
        polls
    }

    #[test]
    fn backlogged_queues_get_equal_cycles_not_equal_bursts() {
        let [cheap, dear] = run([100, 400], [true, true], 10_000);
        let (cheap_cycles, dear_cycles) = (cheap * 100, dear * 400);
        let ratio = cheap_cycles as f64 / dear_cycles as f64;
        assert!((0.95..1.05).contains(&ratio), "cycles {cheap_cycles} vs {dear_cycles}");
        assert_eq!(cheap, 10_000, "the cheap queue is never skipped");
    }

    #[test]
    fn new_flow_work_gets_a_third_against_cache_hits() {
        let [hits, flood] = run_with([100, 100], [true, true], [false, true], 30_000);
        let ratio = hits as f64 / flood as f64;
        assert!((1.9..2.1).contains(&ratio), "cycles {hits} vs {flood}");
    }

    #[test]
    fn a_queue_that_is_not_backlogged_never_holds_a_busy_one_back() {
        // The light queue returns part bursts every time (cheap ones).
        let [light, busy] = run([10, 400], [false, true], 10_000);
        assert_eq!((light, busy), (10_000, 10_000));
    }

    #[test]
    fn one_queue_alone_is_always_polled() {
        let mut f = CycleFair::new(1, 10);
        for _ in 0..1000 {
            assert!(f.may_poll(0));
            f.charge(0, 1_000_000, true, true);
            f.end_iteration();
        }
    }

    #[test]
    fn an_idle_queue_builds_no_credit() {
        let mut f = CycleFair::new(2, 1000);
        // Queue 1 is idle for a long time while queue 0 works.
        for _ in 0..1000 {
            f.charge(0, 500, true, false);
            f.charge(1, 0, false, false);
            f.end_iteration();
        }
        // Queue 1 becomes busy: queue 0 is skipped only until queue 1 has
        // used about one quantum (plus a burst), not the 500k cycles queue 0 used.
        let mut skipped = 0;
        for _ in 0..100 {
            if f.may_poll(0) {
                f.charge(0, 500, true, false);
            } else {
                skipped += 1;
            }
            f.charge(1, 500, true, false);
            f.end_iteration();
        }
        assert!(skipped <= 4, "queue 0 skipped {skipped} times");
    }
}
