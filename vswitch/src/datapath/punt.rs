//! Packets for the OpenFlow controller (the `controller` action): a copy of
//! the first `max_len` bytes leaves the PMD through a bounded queue under a
//! token-bucket rate limit. The PMD never waits: over the rate or with the
//! queue full the packet is dropped and counted (`controller_limit`). And
//! the controller's packets the other way (PACKET_OUT, [`Injection`]).

use crossbeam_channel::{Receiver, Sender, TrySendError};

/// A packet on its way to the controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketIn {
    pub pmd: usize,
    /// Datapath port number it came in on (a tunnel port after decap).
    pub in_port: u32,
    /// The rule whose action sent it.
    pub rule: Option<u64>,
    /// The whole frame's length.
    pub total_len: u32,
    /// Its first `max_len` bytes.
    pub data: Vec<u8>,
}

/// A PACKET_OUT for a PMD to send (the other direction).
pub struct Injection {
    pub frame: Vec<u8>,
    /// The port it counts as coming from (`None`: the controller).
    pub in_port: Option<u32>,
    pub actions: Vec<crate::actions::Action>,
    pub done: Sender<()>,
}

/// The limits of one PMD's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PuntLimits {
    /// Packets per second (the bucket holds one second's worth).
    pub rate: u64,
    /// Packets queued at most.
    pub queue: usize,
}

/// A bounded queue per PMD; the receivers go to the OpenFlow channel.
pub fn queues(pmds: usize, limits: PuntLimits) -> (Vec<Punt>, Vec<Receiver<PacketIn>>) {
    (0..pmds)
        .map(|_| {
            let (tx, rx) = crossbeam_channel::bounded(limits.queue.max(1));
            (Punt { tx: Some(tx), rate: limits.rate, tokens: limits.rate, last_tsc: 0 }, rx)
        })
        .unzip()
}

/// One PMD's side.
#[derive(Debug, Default)]
pub struct Punt {
    tx: Option<Sender<PacketIn>>,
    rate: u64,
    tokens: u64,
    last_tsc: u64,
}

impl Punt {
    /// Hands a packet to the channel; `false` when it must be dropped (over
    /// the rate, queue full, or no channel).
    pub fn offer(&mut self, now: u64, hz: u64, p: impl FnOnce() -> PacketIn) -> bool {
        let Some(tx) = &self.tx else { return false };
        if self.rate > 0 {
            // Refill by whole packets per elapsed tick span.
            let elapsed = now.wrapping_sub(self.last_tsc);
            let add = (u128::from(elapsed) * u128::from(self.rate) / u128::from(hz.max(1))) as u64;
            if add > 0 {
                self.tokens = (self.tokens + add).min(self.rate);
                self.last_tsc = now;
            }
            if self.tokens == 0 {
                return false;
            }
            self.tokens -= 1;
        }
        match tx.try_send(p()) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt() -> PacketIn {
        PacketIn { pmd: 0, in_port: 1, rule: Some(3), total_len: 60, data: vec![0; 60] }
    }

    #[test]
    fn rate_and_queue_bound_what_leaves() {
        let hz = 1_000_000;
        let (mut punts, rxs) = queues(1, PuntLimits { rate: 10, queue: 100 });
        let p = &mut punts[0];
        let sent = (0..50).filter(|_| p.offer(1, hz, pkt)).count();
        assert_eq!(sent, 10, "one second's worth at once");
        // A tenth of a second later: one more.
        assert!(p.offer(100_001, hz, pkt));
        assert!(!p.offer(100_002, hz, pkt));
        assert_eq!(rxs[0].len(), 11);
        let (mut punts, _rxs) = queues(1, PuntLimits { rate: 0, queue: 4 });
        let sent = (0..10).filter(|_| punts[0].offer(1, hz, pkt)).count();
        assert_eq!(sent, 4, "no rate limit: the queue bounds it");
        assert!(!Punt::default().offer(1, hz, pkt), "no channel: dropped");
    }
}
