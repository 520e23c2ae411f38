//! PMD counters: plain integers on the PMD thread, published now and then
//! (about every millisecond) into single-writer atomics the control thread
//! reads. Nothing shared is touched per packet.
//!
//! The index space comes from the enums ([`Counter`], [`DropReason`],
//! [`ParseError`], [`PortCounter`]): one block after the other, each as long
//! as its enum's `COUNT`, so adding a variant can neither be forgotten nor
//! land in another counter's slot.

use crate::named_enum::{named_enum, named_enum_with};
use crate::packet::ParseError;
use std::sync::atomic::{AtomicU64, Ordering};

named_enum! {
    /// Why the datapath dropped a packet.
    pub enum DropReason {
        /// No rule matched.
        NoRule => "no_rule",
        /// The matching rule drops (empty action list or `drop`).
        RuleDrop => "rule_drop",
        /// A new flow arrived after this iteration's upcall budget was spent.
        UpcallBudget => "upcall_budget",
        /// The output queue did not take the packet.
        TxFull => "tx_full",
        /// Larger than the output port's MTU.
        Mtu => "mtu",
        /// Received on a representor above its VF's MTU (a VF cannot send
        /// such a frame; the e-switch drops it before any rule).
        RxMtu => "rx_mtu",
        /// The packet could not be parsed (see the parse error counters).
        ParseError => "parse_error",
        /// No mbuf for a copy (several outputs).
        NoMbuf => "no_mbuf",
        /// The flow table of the PMD is full.
        FlowLimit => "flow_limit",
        /// The rule's only outputs were to the packet's input port (skipped
        /// unless the rule says `output:in_port`).
        ToInPort => "to_in_port",
        /// An action could not be applied (no headroom, too short).
        ActionError => "action_error",
        /// No route to a tunnel's remote VTEP.
        NoRoute => "no_route",
        /// The next hop's MAC is not known yet (an ARP request was sent).
        NeighbourMiss => "neighbour_miss",
        /// VXLAN to our address with a VNI or remote no tunnel port accepts.
        UnknownTunnel => "unknown_tunnel",
        /// Malformed VXLAN, bad outer checksum.
        DecapError => "decap_error",
        /// A flow-based tunnel output without set_tunnel.
        NoVni => "no_vni",
        /// Over the PMD's packet-in rate, or its queue to the OpenFlow
        /// channel full (the `controller` action).
        ControllerLimit => "controller_limit",
        /// Dropped by a rule in the (model) e-switch.
        HwRuleDrop => "hw_rule_drop",
        /// A rule in the (model) e-switch matched but its actions failed.
        HwError => "hw_error",
        /// The (model) e-switch sent to a port this switch does not know.
        HwUnknownPort => "hw_unknown_port",
        /// To or from a port being restarted.
        PortDown => "port_down",
        /// The packet's megaflow went while its burst was in flight (a
        /// safety net: eviction spares the flows of the burst in flight).
        FlowGone => "flow_gone",
    }
}

/// How a PMD-wide counter is shown: `show` lists every counter under its
/// name (summed over the PMDs, or their maximum); `/metrics` exports it
/// under `name` with `label` when it has one, with `help` as its
/// description. The one place a counter's presentation is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metric {
    pub name: &'static str,
    pub label: Option<(&'static str, &'static str)>,
    pub gauge: bool,
    /// Across PMDs: the largest value rather than the sum.
    pub max: bool,
    pub help: &'static str,
}

impl Metric {
    const fn counter(name: &'static str, help: &'static str) -> Self {
        Self { name, label: None, gauge: false, max: false, help }
    }

    const fn labelled(name: &'static str, key: &'static str, value: &'static str, help: &'static str) -> Self {
        Self { name, label: Some((key, value)), gauge: false, max: false, help }
    }

    const fn gauge(name: &'static str, help: &'static str) -> Self {
        Self { name, label: None, gauge: true, max: false, help }
    }
}

const LOOKUPS: &str = "Packets looked up, by the tier that found their flow (upcall: the rule table)";
const REMOVED: &str = "Megaflows removed, by reason";
const GENERATED: &str = "Packets the switch made itself, by kind";

named_enum_with! {
    /// A PMD-wide counter.
    pub enum Counter: Metric {
        EmcHits => "emc_hits", Metric::labelled("vswitch_lookups_total", "tier", "emc", LOOKUPS),
        SmcHits => "smc_hits", Metric::labelled("vswitch_lookups_total", "tier", "smc", LOOKUPS),
        MegaflowHits => "megaflow_hits", Metric::labelled("vswitch_lookups_total", "tier", "megaflow", LOOKUPS),
        Upcalls => "upcalls", Metric::labelled("vswitch_lookups_total", "tier", "upcall", LOOKUPS),
        /// Gauge: live megaflows.
        Flows => "flows", Metric::gauge("vswitch_flows", "Live megaflows over all PMDs"),
        Iterations => "iterations", Metric::counter("vswitch_iterations_total", "PMD loop iterations"),
        /// Iterations (commands and maintenance included) longer than 100 us,
        /// 1 ms, 10 ms: how long forwarding stalled.
        IterationsOver100us => "iterations_over_100us",
            Metric::labelled("vswitch_long_iterations_total", "over", "100us", "PMD iterations longer than a bound"),
        IterationsOver1ms => "iterations_over_1ms",
            Metric::labelled("vswitch_long_iterations_total", "over", "1ms", "PMD iterations longer than a bound"),
        IterationsOver10ms => "iterations_over_10ms",
            Metric::labelled("vswitch_long_iterations_total", "over", "10ms", "PMD iterations longer than a bound"),
        /// Gauge: the longest iteration in the last one to two seconds.
        LongestIterationUs => "longest_iteration_us", Metric {
            max: true,
            ..Metric::gauge("vswitch_longest_iteration_microseconds", "The longest PMD iteration of the last 1-2 s")
        },
        BusyCycles => "busy_cycles", Metric::counter("vswitch_busy_cycles_total", "TSC cycles of iterations that received packets"),
        IdleCycles => "idle_cycles", Metric::counter("vswitch_idle_cycles_total", "TSC cycles of iterations that received nothing"),
        /// Packets received (hardware-handled ones included).
        Packets => "packets", Metric::counter("vswitch_received_total", "Packets received by the PMDs, e-switch-handled ones included"),
        UpcallCycles => "upcall_cycles", Metric::counter("vswitch_upcall_cycles_total", "TSC cycles spent classifying new flows"),
        FlowsExpired => "flows_expired", Metric::labelled("vswitch_flows_removed_total", "reason", "idle", REMOVED),
        FlowsRevalidatedOut => "flows_revalidated_out",
            Metric::labelled("vswitch_flows_removed_total", "reason", "revalidated", REMOVED),
        FlowsEvicted => "flows_evicted", Metric::labelled("vswitch_flows_removed_total", "reason", "evicted", REMOVED),
        EmcInserts => "emc_inserts", Metric::counter("vswitch_emc_inserts_total", "Entries written into the exact-match caches"),
        /// Packets classified without an exact-match lookup: the cache's
        /// hit rate was too low to pay for its lookups (see `EmcGate`).
        EmcSkipped => "emc_skipped",
            Metric::counter("vswitch_emc_skipped_total", "Packets classified without an exact-match lookup (hit rate too low)"),
        Decapsulated => "decapsulated", Metric::counter("vswitch_decapsulated_total", "VXLAN packets decapsulated"),
        Encapsulated => "encapsulated", Metric::counter("vswitch_encapsulated_total", "Packets encapsulated in VXLAN"),
        IcmpTooBigSent => "icmp_too_big_sent", Metric::labelled("vswitch_generated_total", "kind", "icmp_too_big", GENERATED),
        NeighRepliesSent => "neighbour_replies_sent",
            Metric::labelled("vswitch_generated_total", "kind", "neighbour_reply", GENERATED),
        NeighRequestsSent => "neighbour_requests_sent",
            Metric::labelled("vswitch_generated_total", "kind", "neighbour_request", GENERATED),
        /// ARP/ND packets the VTEP took (answered or learned from): they
        /// end here, neither forwarded nor dropped.
        NeighConsumed => "neighbour_consumed",
            Metric::counter("vswitch_neighbour_consumed_total", "ARP/ND packets the VTEP answered or learned from"),
        /// Packets (or copies) handed to the OpenFlow controllers (PACKET_IN):
        /// they end here, neither forwarded nor dropped.
        ToController => "to_controller",
            Metric::counter("vswitch_packet_in_total", "Packets queued for the OpenFlow controllers (PACKET_IN)"),
        /// Packets the controllers sent through the datapath (PACKET_OUT).
        PacketOutSent => "packet_out",
            Metric::labelled("vswitch_generated_total", "kind", "packet_out", GENERATED),
        /// Copies made for outputs before the last one (each is sent or
        /// counted as a drop like any packet).
        Copies => "copies", Metric::counter("vswitch_copies_total", "Packet copies made for outputs before a rule's last"),
        /// Packets the (model) e-switch handled before the software path.
        HwPackets => "hw_packets", Metric::labelled("vswitch_packets_total", "tier", "hw", "Packets by the tier that switched them"),
        HwBytes => "hw_bytes", Metric::counter("vswitch_hw_bytes_total", "Bytes the (model) e-switch switched before the software path"),
        /// Busy cycles spent in the (model) e-switch stage.
        HwCycles => "hw_cycles", Metric::counter("vswitch_hw_cycles_total", "TSC cycles spent in the model e-switch stage"),
        /// Flow events that waited for room in the manager's channel.
        EventsDelayed => "events_delayed",
            Metric::counter("vswitch_flow_events_delayed_total", "Flow events that waited for room in the offload manager's channel"),
    }
}

named_enum! {
    /// A per-port counter.
    pub enum PortCounter {
        RxPackets => "rx_packets",
        RxBytes => "rx_bytes",
        TxPackets => "tx_packets",
        TxBytes => "tx_bytes",
        TxDropped => "tx_dropped",
        /// Of the received packets: handled by the (model) e-switch.
        HwRxPackets => "hw_rx_packets",
    }
}

const DROP_BASE: usize = Counter::COUNT;
const PARSE_BASE: usize = DROP_BASE + DropReason::COUNT;
const PORT_BASE: usize = PARSE_BASE + ParseError::COUNT;

/// Number of counters for `ports` ports.
pub const fn len(ports: usize) -> usize {
    PORT_BASE + ports * PortCounter::COUNT
}

#[inline(always)]
const fn port_index(port: usize, c: PortCounter) -> usize {
    PORT_BASE + port * PortCounter::COUNT + c.index()
}

/// The PMD's own counters.
pub struct Local {
    v: Box<[u64]>,
}

impl Local {
    pub fn new(ports: usize) -> Self {
        Self { v: vec![0; len(ports)].into_boxed_slice() }
    }

    #[inline(always)]
    fn bump(&mut self, index: usize, n: u64) {
        if let Some(c) = self.v.get_mut(index) {
            *c += n;
        }
    }

    #[inline(always)]
    pub fn add(&mut self, c: Counter, n: u64) {
        self.bump(c.index(), n);
    }

    /// Sets a gauge.
    pub fn set(&mut self, c: Counter, value: u64) {
        self.v[c.index()] = value;
    }

    #[inline(always)]
    pub fn get(&self, c: Counter) -> u64 {
        self.v[c.index()]
    }

    #[inline(always)]
    pub fn drop(&mut self, reason: DropReason, n: u64) {
        self.bump(DROP_BASE + reason.index(), n);
    }

    #[inline(always)]
    pub fn parse_error(&mut self, e: ParseError) {
        self.bump(PARSE_BASE + e.index(), 1);
    }

    #[inline(always)]
    pub fn port(&mut self, port: usize, c: PortCounter, n: u64) {
        self.bump(port_index(port, c), n);
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
    v: Box<[AtomicU64]>,
}

impl Shared {
    pub fn new(ports: usize) -> Self {
        Self { v: (0..len(ports)).map(|_| AtomicU64::new(0)).collect() }
    }

    fn at(&self, index: usize) -> u64 {
        self.v.get(index).map_or(0, |c| c.load(Ordering::Relaxed))
    }

    pub fn get(&self, c: Counter) -> u64 {
        self.at(c.index())
    }

    pub fn drops(&self, reason: DropReason) -> u64 {
        self.at(DROP_BASE + reason.index())
    }

    pub fn parse_errors(&self, e: ParseError) -> u64 {
        self.at(PARSE_BASE + e.index())
    }

    pub fn port(&self, port: usize, c: PortCounter) -> u64 {
        self.at(port_index(port, c))
    }
}

/// Where every packet went, over the physical ports (tunnel ports are views
/// of packets the uplinks carry). Every packet received, copied or made by
/// the switch is sent, dropped under a reason, or consumed by the VTEP:
/// `received + copies + generated == sent + dropped + consumed` whenever
/// no burst is in flight and the transmit buffers are flushed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Balance {
    pub received: u64,
    pub copies: u64,
    /// ICMP "too big" answers, ARP/ND replies and requests, PACKET_OUTs.
    pub generated: u64,
    pub sent: u64,
    pub dropped: u64,
    pub consumed: u64,
}

impl Balance {
    /// Packets in minus packets out: 0 when nothing went uncounted.
    pub fn unaccounted(&self) -> i128 {
        i128::from(self.received) + i128::from(self.copies) + i128::from(self.generated)
            - i128::from(self.sent)
            - i128::from(self.dropped)
            - i128::from(self.consumed)
    }

    /// Adds another PMD's balance.
    pub fn add(&mut self, o: &Balance) {
        self.received += o.received;
        self.copies += o.copies;
        self.generated += o.generated;
        self.sent += o.sent;
        self.dropped += o.dropped;
        self.consumed += o.consumed;
    }
}

impl Shared {
    /// This PMD's [`Balance`] over physical ports `0..phys`.
    pub fn balance(&self, phys: usize) -> Balance {
        let ports = |c: PortCounter| (0..phys).map(|p| self.port(p, c)).sum::<u64>();
        Balance {
            received: ports(PortCounter::RxPackets),
            copies: self.get(Counter::Copies),
            generated: self.get(Counter::IcmpTooBigSent)
                + self.get(Counter::NeighRepliesSent)
                + self.get(Counter::NeighRequestsSent)
                + self.get(Counter::PacketOutSent),
            sent: ports(PortCounter::TxPackets),
            dropped: DropReason::ALL.iter().map(|&r| self.drops(r)).sum(),
            consumed: self.get(Counter::NeighConsumed) + self.get(Counter::ToController),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_counter_has_its_own_slot() {
        let ports = 3;
        let mut l = Local::new(ports);
        let mut n = 1;
        for &c in Counter::ALL {
            l.add(c, n);
            n += 1;
        }
        for &d in DropReason::ALL {
            l.drop(d, n);
            n += 1;
        }
        for (i, &e) in ParseError::ALL.iter().enumerate() {
            for _ in 0..=i {
                l.parse_error(e);
            }
        }
        for p in 0..ports {
            for &c in PortCounter::ALL {
                l.port(p, c, 1000 + (p * 10 + c.index()) as u64);
            }
        }
        let s = Shared::new(ports);
        l.publish(&s);
        let mut n = 1;
        for &c in Counter::ALL {
            assert_eq!(s.get(c), n, "{c}");
            n += 1;
        }
        for &d in DropReason::ALL {
            assert_eq!(s.drops(d), n, "{d}");
            n += 1;
        }
        for (i, &e) in ParseError::ALL.iter().enumerate() {
            assert_eq!(s.parse_errors(e), i as u64 + 1, "{e}");
        }
        for p in 0..ports {
            for &c in PortCounter::ALL {
                assert_eq!(s.port(p, c), 1000 + (p * 10 + c.index()) as u64);
            }
        }
    }
}
