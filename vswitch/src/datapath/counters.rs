//! PMD counters: plain integers on the PMD thread, published now and then
//! (about every millisecond) into single-writer atomics the control thread
//! reads. Nothing shared is touched per packet.

use crate::packet::ParseError;
use std::sync::atomic::{AtomicU64, Ordering};

/// Why the datapath dropped a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DropReason {
    /// No rule matched.
    NoRule,
    /// The matching rule drops (empty action list or `drop`).
    RuleDrop,
    /// A new flow arrived after this iteration's upcall budget was spent.
    UpcallBudget,
    /// The output queue did not take the packet.
    TxFull,
    /// Larger than the output port's MTU.
    Mtu,
    /// The packet could not be parsed (see the parse error counters).
    ParseError,
    /// No mbuf for a copy (several outputs).
    NoMbuf,
    /// The flow table of the PMD is full.
    FlowLimit,
    /// An action could not be applied (no headroom, too short).
    ActionError,
    /// No route to a tunnel's remote VTEP.
    NoRoute,
    /// The next hop's MAC is not known yet (an ARP request was sent).
    NeighbourMiss,
    /// VXLAN to our address with a VNI or remote no tunnel port accepts.
    UnknownTunnel,
    /// Malformed VXLAN, bad outer checksum.
    DecapError,
    /// A flow-based tunnel output without set_tunnel.
    NoVni,
}

impl DropReason {
    pub const COUNT: usize = 14;
    pub const ALL: [DropReason; Self::COUNT] = [
        DropReason::NoRule,
        DropReason::RuleDrop,
        DropReason::UpcallBudget,
        DropReason::TxFull,
        DropReason::Mtu,
        DropReason::ParseError,
        DropReason::NoMbuf,
        DropReason::FlowLimit,
        DropReason::ActionError,
        DropReason::NoRoute,
        DropReason::NeighbourMiss,
        DropReason::UnknownTunnel,
        DropReason::DecapError,
        DropReason::NoVni,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            DropReason::NoRule => "no_rule",
            DropReason::RuleDrop => "rule_drop",
            DropReason::UpcallBudget => "upcall_budget",
            DropReason::TxFull => "tx_full",
            DropReason::Mtu => "mtu",
            DropReason::ParseError => "parse_error",
            DropReason::NoMbuf => "no_mbuf",
            DropReason::FlowLimit => "flow_limit",
            DropReason::ActionError => "action_error",
            DropReason::NoRoute => "no_route",
            DropReason::NeighbourMiss => "neighbour_miss",
            DropReason::UnknownTunnel => "unknown_tunnel",
            DropReason::DecapError => "decap_error",
            DropReason::NoVni => "no_vni",
        }
    }
}

pub const EMC_HITS: usize = 0;
pub const MEGAFLOW_HITS: usize = 1;
pub const UPCALLS: usize = 2;
/// Gauge: live megaflows.
pub const FLOWS: usize = 3;
pub const ITERATIONS: usize = 4;
pub const BUSY_CYCLES: usize = 5;
pub const IDLE_CYCLES: usize = 6;
pub const PACKETS: usize = 7;
pub const UPCALL_CYCLES: usize = 8;
pub const FLOWS_EXPIRED: usize = 9;
pub const FLOWS_REVALIDATED_OUT: usize = 10;
pub const EMC_INSERTS: usize = 11;
pub const DECAPSULATED: usize = 12;
pub const ENCAPSULATED: usize = 13;
pub const ICMP_TOO_BIG_SENT: usize = 14;
pub const NEIGH_REPLIES_SENT: usize = 15;
pub const NEIGH_REQUESTS_SENT: usize = 16;
const FIXED: usize = 17;
pub const DROP_BASE: usize = FIXED;
pub const PARSE_BASE: usize = DROP_BASE + DropReason::COUNT;
pub const PORT_BASE: usize = PARSE_BASE + ParseError::COUNT;
pub const PORT_RX_PACKETS: usize = 0;
pub const PORT_RX_BYTES: usize = 1;
pub const PORT_TX_PACKETS: usize = 2;
pub const PORT_TX_BYTES: usize = 3;
pub const PORT_TX_DROPPED: usize = 4;
pub const PORT_FIELDS: usize = 5;

/// Number of counters for `ports` ports.
pub const fn len(ports: usize) -> usize {
    PORT_BASE + ports * PORT_FIELDS
}

/// Index of a per-port counter.
#[inline(always)]
pub const fn port(port: usize, field: usize) -> usize {
    PORT_BASE + port * PORT_FIELDS + field
}

/// The PMD's own counters.
pub struct Local {
    pub v: Box<[u64]>,
}

impl Local {
    pub fn new(ports: usize) -> Self {
        Self { v: vec![0; len(ports)].into_boxed_slice() }
    }

    #[inline(always)]
    pub fn add(&mut self, index: usize, n: u64) {
        if let Some(c) = self.v.get_mut(index) {
            *c += n;
        }
    }

    #[inline(always)]
    pub fn drop(&mut self, reason: DropReason, n: u64) {
        self.add(DROP_BASE + reason as usize, n);
    }

    /// Copies every counter into the shared block (single writer).
    pub fn publish(&self, shared: &Shared) {
        for (dst, &src) in shared.v.iter().zip(self.v.iter()) {
            dst.store(src, Ordering::Relaxed);
        }
    }
}

/// The published copy.
pub struct Shared {
    pub v: Box<[AtomicU64]>,
}

impl Shared {
    pub fn new(ports: usize) -> Self {
        Self { v: (0..len(ports)).map(|_| AtomicU64::new(0)).collect() }
    }

    pub fn get(&self, index: usize) -> u64 {
        self.v.get(index).map_or(0, |c| c.load(Ordering::Relaxed))
    }
}
