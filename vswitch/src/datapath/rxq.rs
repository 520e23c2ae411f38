//! A receive queue as a PMD polls it. It moves between PMDs whole (the
//! queue, its cycle count and the load the switch reads), so a queue's
//! history follows it and the switch never touches a PMD's state.

use crate::dpdk::RxQueue;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// What the switch reads of a queue: the busy cycles and packets spent on
/// it so far, published by the PMD polling it (a millisecond behind).
#[derive(Debug, Default)]
pub struct RxqLoad {
    cycles: AtomicU64,
    packets: AtomicU64,
}

impl RxqLoad {
    pub fn cycles(&self) -> u64 {
        self.cycles.load(Ordering::Relaxed)
    }

    pub fn packets(&self) -> u64 {
        self.packets.load(Ordering::Relaxed)
    }
}

/// A polled receive queue.
pub struct PolledQueue {
    /// Datapath port number.
    pub port: u32,
    pub queue: u16,
    pub rxq: RxQueue,
    /// Cycles spent receiving and processing its bursts, and their packets.
    pub cycles: u64,
    pub packets: u64,
    pub load: Arc<RxqLoad>,
}

impl PolledQueue {
    pub fn new(port: u32, rxq: RxQueue) -> Self {
        let queue = rxq.queue();
        Self { port, queue, rxq, cycles: 0, packets: 0, load: Arc::new(RxqLoad::default()) }
    }

    /// Makes the counts visible to the switch.
    #[inline]
    pub fn publish(&self) {
        self.load.cycles.store(self.cycles, Ordering::Relaxed);
        self.load.packets.store(self.packets, Ordering::Relaxed);
    }
}
