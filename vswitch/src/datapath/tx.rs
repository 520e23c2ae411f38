//! The PMD's transmit side: per-port buffers of mbufs flushed to their tx
//! queues once per iteration, and the engine's [`Io`] over them.

use super::burst::{take_members, Io, Packets};
use super::counters::{DropReason, Local, PortCounter};
use crate::dpdk::{Burst, Mbuf, Mempool, TxQueue};
use crate::flow::Bits;
use std::sync::{Arc, Mutex};

/// A tx queue owned by one PMD, or shared (with a lock taken once per flush)
/// when the device has fewer tx queues than there are PMDs.
pub enum TxHandle {
    Owned(TxQueue),
    Shared(Arc<Mutex<TxQueue>>),
}

pub(super) struct TxPort {
    pub(super) queue: TxHandle,
    pub(super) buf: Burst,
    /// Bytes of the packets in `buf`.
    pub(super) bytes: u64,
}

/// The engine's [`Io`] on DPDK: per-port tx buffers and the mbuf pool.
pub(super) struct MbufIo<'a> {
    pub(super) tx: &'a mut [TxPort],
    pub(super) pool: &'a Mempool,
}

impl Io for MbufIo<'_> {
    type Pkt = Mbuf;

    #[inline]
    fn send(&mut self, port: u32, m: Mbuf, counters: &mut Local) {
        match self.tx.get_mut(port as usize) {
            Some(txp) => output(txp, port, m, counters),
            None => counters.drop(DropReason::ActionError, 1),
        }
    }

    /// One lookup of the port's buffer for the whole group; the length
    /// check against `limit` in the same pass.
    #[inline]
    fn send_all(
        &mut self,
        port: u32,
        pkts: &mut Packets<Mbuf>,
        members: u64,
        limit: usize,
        counters: &mut Local,
    ) -> u64 {
        let Some(txp) = self.tx.get_mut(port as usize) else {
            counters.drop(DropReason::ActionError, take_members(pkts, members));
            return 0;
        };
        let mut long = 0;
        let mut bits = Bits(members);
        loop {
            // The byte count (like the buffer's length, see `extend_with`)
            // is kept in a register for the group: added in memory per
            // packet, next to the buffer's length, the compiler merged the
            // two into one 16-byte read-modify-write per packet, a chain
            // through memory that cost about 5 cycles a packet.
            let mut bytes = 0u64;
            let over = txp.buf.extend_with(|| {
                for i in bits.by_ref() {
                    let Some(m) = pkts[i].take() else { continue };
                    let len = m.pkt_len() as u64;
                    if len > limit as u64 {
                        pkts[i] = Some(m);
                        long |= 1 << i;
                        continue;
                    }
                    bytes += len;
                    return Some(m);
                }
                None
            });
            txp.bytes += bytes;
            // The buffer is full: flushed, then the rest.
            let Some(m) = over else { break };
            txp.bytes -= m.pkt_len() as u64;
            output(txp, port, m, counters);
        }
        long
    }

    fn copy(&mut self, m: &Mbuf) -> Option<Mbuf> {
        m.copy(self.pool)
    }

    fn alloc(&mut self) -> Option<Mbuf> {
        self.pool.alloc()
    }
}

pub(super) fn flush(tx: &mut TxPort, port: usize, counters: &mut Local) {
    let bytes = std::mem::take(&mut tx.bytes);
    let sent = match &mut tx.queue {
        TxHandle::Owned(q) => q.tx_burst(&mut tx.buf),
        TxHandle::Shared(q) => match q.lock() {
            Ok(mut q) => q.tx_burst(&mut tx.buf),
            Err(poisoned) => poisoned.into_inner().tx_burst(&mut tx.buf),
        },
    };
    let unsent_bytes: u64 =
        if tx.buf.is_empty() { 0 } else { tx.buf.as_slice().iter().map(|m| m.pkt_len() as u64).sum() };
    counters.port(port, PortCounter::TxPackets, sent as u64);
    counters.port(port, PortCounter::TxBytes, bytes - unsent_bytes);
    if !tx.buf.is_empty() {
        let dropped = tx.buf.len() as u64;
        counters.port(port, PortCounter::TxDropped, dropped);
        counters.drop(DropReason::TxFull, dropped);
        tx.buf.clear();
    }
}

/// Queues `m` on physical port `port` (`txp`; the caller checked the MTU).
#[inline(always)]
fn output(txp: &mut TxPort, port: u32, m: Mbuf, counters: &mut Local) {
    let len = m.pkt_len() as u64;
    match txp.buf.push(m) {
        Ok(()) => txp.bytes += len,
        Err(m) => {
            flush(txp, port as usize, counters);
            match txp.buf.push(m) {
                Ok(()) => txp.bytes += len,
                Err(_) => counters.drop(DropReason::TxFull, 1),
            }
        }
    }
}
