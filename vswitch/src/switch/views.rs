//! What the switch reports: `show` (counters of ports and PMDs, drops by
//! reason), `dump-flows` (megaflows with their tier and encapsulation) and
//! `dump-underlay` (routes, neighbours, tunnels).

use crate::config::Role;
use crate::datapath::counters::{Balance, Counter};
use serde::Serialize;
use std::collections::BTreeMap;

/// Counters of one port (software view, plus the device's own misses).
#[derive(Debug, Clone, Serialize)]
pub struct PortView {
    pub number: u32,
    pub name: String,
    pub role: Role,
    pub devargs: String,
    pub mtu: u16,
    pub driver: String,
    pub link_up: bool,
    pub mac: String,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub tx_dropped: u64,
    /// Of `rx_packets` and `tx_packets`: handled by the e-switch. Physical
    /// ports: by the model in the PMD as it happens, or by a NIC as of the
    /// last counter query; tunnel ports: as of the last counter query.
    pub hw_rx_packets: u64,
    pub hw_tx_packets: u64,
    /// Packets the device could not deliver (its receive ring was full; for
    /// net_af_packet ports, the kernel socket's drops: PACKET_STATISTICS).
    pub rx_missed: u64,
    /// Packets the device dropped for want of an mbuf to receive into
    /// (the pool is too small or buffers are held: `datapath.mbufs`).
    pub rx_no_mbuf: u64,
}

/// One PMD's view.
#[derive(Debug, Clone, Serialize)]
pub struct PmdView {
    pub index: usize,
    pub core: usize,
    pub packets: u64,
    pub hw_packets: u64,
    pub iterations: u64,
    pub busy_cycles: u64,
    pub idle_cycles: u64,
    pub hw_cycles: u64,
    pub flows: u64,
    /// Iterations longer than 100 us / 1 ms / 10 ms, and the longest one
    /// of the last one to two seconds.
    pub iterations_over_100us: u64,
    pub iterations_over_1ms: u64,
    pub iterations_over_10ms: u64,
    pub longest_iteration_us: u64,
}

/// Everything `show` reports.
#[derive(Debug, Clone, Serialize)]
pub struct SwitchStats {
    pub uptime_s: f64,
    /// Every PMD counter by its name ([`Counter`]), summed over the PMDs
    /// (or their maximum, as the counter's declaration says).
    #[serde(flatten)]
    pub totals: BTreeMap<&'static str, u64>,
    /// Where every packet went (received + copies + generated = sent +
    /// dropped + consumed, give or take the packets in flight).
    pub balance: Balance,
    /// Frames the model e-switch forwarded although software would have
    /// dropped them as malformed (a NIC does not check lengths either).
    pub hw_malformed_forwarded: u64,
    pub rules: usize,
    pub drops: BTreeMap<String, u64>,
    pub parse_errors: BTreeMap<String, u64>,
    pub ports: Vec<PortView>,
    pub pmds: Vec<PmdView>,
}

/// The JUMP rules of `testpmd-jumps`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TestpmdJumps {
    /// The transfer proxy every rule goes on.
    pub proxy: u16,
    /// The group the flow rules are in.
    pub group: u32,
    pub commands: Vec<String>,
}

/// A flow as dump-flows prints it.
#[derive(Debug, Clone, Serialize)]
pub struct FlowView {
    pub id: u64,
    pub pmd: usize,
    #[serde(rename = "match")]
    pub matcher: String,
    pub actions: String,
    pub rule_id: Option<u64>,
    pub priority: Option<u32>,
    /// Software and hardware packets.
    pub packets: u64,
    pub bytes: u64,
    /// Of `packets`: counted by the device.
    pub hw_packets: u64,
    pub age_ms: u64,
    pub idle_ms: u64,
    /// "emc" when exact-match entries point at it, else "megaflow".
    pub tier: &'static str,
    /// `hw`, `pending`, `sw` or `sw(<reason>)`; `off` without offload.
    pub offload: String,
    /// testpmd commands of the flow's hardware rule (dump-flows --testpmd).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub testpmd: Vec<String>,
    /// For outputs to tunnel ports: how they are encapsulated now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encap: Option<String>,
}

/// A rule as dump-rules prints it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RuleView {
    pub id: u64,
    pub priority: u32,
    pub text: String,
}

impl SwitchStats {
    /// A PMD counter over the whole switch.
    pub fn total(&self, c: Counter) -> u64 {
        self.totals.get(c.as_str()).copied().unwrap_or(0)
    }
}
