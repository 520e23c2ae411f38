//! The configuration as data: what every section holds once validated.
//! Nothing here parses or imports from above the configuration.

use crate::net::Prefix;
use crate::ofrule::RuleSpec;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// Port roles on an NFV host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A VF representor (a VM's port).
    Representor,
    /// The uplink (PF / wire).
    Uplink,
    /// A VXLAN tunnel port (shown in stats; not a `role` in `[[port]]`).
    Tunnel,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Representor => "representor",
            Role::Uplink => "uplink",
            Role::Tunnel => "tunnel",
        }
    }
}

/// Generated test traffic for a port (demo and benchmarks): a pcap written at
/// start and replayed forever with net_pcap's `infinite_rx`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generate {
    pub flows: u32,
    /// Frame size without FCS (60 = a 64-byte frame on the wire).
    pub size: usize,
    pub dl_src: [u8; 6],
    /// Destination MACs, used round-robin over the flows.
    pub dl_dst: Vec<[u8; 6]>,
    pub nw_src: std::net::Ipv4Addr,
    pub nw_dst: std::net::Ipv4Addr,
}

impl Generate {
    /// Packets in the pcap written for `flows` flows: whole rounds over the
    /// flows, at least 1,024 packets.
    pub fn packets_for(flows: u32) -> u64 {
        let flows = u64::from(flows.max(1));
        flows.max(1024).div_ceil(flows) * flows
    }

    /// Flows of share `k` of `n` (one file per receive queue: flow `i`
    /// goes to file `i % n`).
    pub fn share(&self, k: u16, n: u16) -> u32 {
        let (k, n) = (u32::from(k), u32::from(n.max(1)));
        (self.flows + n - 1 - k.min(n - 1)) / n
    }

    /// Packets in the files written for `queues` receive queues.
    pub fn packets(&self, queues: u16) -> u64 {
        (0..queues.max(1)).map(|k| Self::packets_for(self.share(k, queues))).sum()
    }
}

/// One port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    pub name: String,
    /// DPDK devargs; `{pcap}` stands for the generated traffic file.
    pub devargs: String,
    pub role: Role,
    pub mtu: u16,
    /// Addresses with their prefix lengths on an uplink (VTEP addresses;
    /// one of each family at most).
    pub ip: Vec<Prefix>,
    pub generate: Option<Generate>,
    /// The e-switch the port belongs to when its driver reports none.
    pub switch_domain: Option<u16>,
    /// The switch's MAC on this port (an uplink's VTEP MAC: ARP answers,
    /// encapsulation source, the decapsulated frames' destination); the
    /// device's own when absent.
    pub mac: Option<[u8; 6]>,
    /// The kernel interface an uplink stands for: its routes and neighbours
    /// are this uplink's when the underlay follows the kernel.
    pub kernel_ifname: Option<String>,
    /// Receive queues (RSS spreads flows over them).
    pub rx_queues: RxQueues,
    /// Queues pinned by the operator: (queue, core).
    pub rxq_affinity: Vec<(u16, usize)>,
    pub line: usize,
}

/// A port's receive queue count (default: one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxQueues {
    /// One per PMD.
    Auto,
    Count(u16),
}

impl Default for RxQueues {
    fn default() -> Self {
        RxQueues::Count(1)
    }
}

impl RxQueues {
    /// The count with `pmds` PMD threads.
    pub fn count(self, pmds: usize) -> u16 {
        match self {
            RxQueues::Auto => pmds.clamp(1, usize::from(MAX_RX_QUEUES)) as u16,
            RxQueues::Count(n) => n,
        }
    }
}

/// The most receive queues a port may ask for.
pub const MAX_RX_QUEUES: u16 = 64;

/// How receive queues go to PMDs (`[datapath] rxq_assign`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Assign {
    /// By measured busy cycles: the busiest queue first, each onto the
    /// least loaded PMD.
    #[default]
    Cycles,
    /// In port and queue order, the PMDs in turn.
    Roundrobin,
}

impl Assign {
    pub fn as_str(self) -> &'static str {
        match self {
            Assign::Cycles => "cycles",
            Assign::Roundrobin => "roundrobin",
        }
    }
}

/// Queue assignment and the automatic rebalance (`[datapath]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueSettings {
    pub assign: Assign,
    /// A PMD with pinned queues takes no other queue.
    pub isolate: bool,
    /// The measurement interval `pmd-rxq-show` and the rebalance use.
    pub interval: Duration,
    pub auto_lb: AutoLb,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self { assign: Assign::Cycles, isolate: true, interval: Duration::from_secs(5), auto_lb: AutoLb::default() }
    }
}

/// The automatic rebalance: at the end of a measurement interval, at least
/// `interval` after the last rebalance, when a PMD was busy at least
/// `load_pct` % of its cycles, and a new assignment by cycles would cut the
/// variance of the PMDs' loads by at least `improvement_pct` %.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AutoLb {
    pub enabled: bool,
    pub load_pct: u8,
    pub improvement_pct: u8,
    pub interval: Duration,
}

impl Default for AutoLb {
    fn default() -> Self {
        Self { enabled: false, load_pct: 95, improvement_pct: 25, interval: Duration::from_secs(60) }
    }
}

/// A VXLAN tunnel port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelSpec {
    pub name: String,
    pub remote: IpAddr,
    /// `None`: the VNI comes from the flow (`set_tunnel`) and is matched with `tun_id`.
    pub vni: Option<u32>,
    pub local: Option<IpAddr>,
    pub udp_port: u16,
    pub line: usize,
}

/// A configured route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    /// The network (host bits cleared).
    pub prefix: Prefix,
    pub via: Option<IpAddr>,
    /// Uplink port number.
    pub port: u32,
}

/// A static neighbour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeighbourSpec {
    pub ip: IpAddr,
    pub mac: [u8; 6],
    pub port: u32,
}

/// A rule with the line it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfiguredRule {
    pub text: String,
    pub spec: RuleSpec,
    pub line: usize,
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it came from (a path or "<embedded demo>").
    pub source: String,
    pub eal_args: Vec<String>,
    pub pmd_cores: Vec<usize>,
    pub queues: QueueSettings,
    pub idle_timeout: Duration,
    pub upcall_budget: usize,
    pub emc_entries: usize,
    pub smc_entries: usize,
    /// Prefix checks in the rule table (narrower megaflows).
    pub prefix_checks: bool,
    pub emc_insert_inv_prob: u64,
    pub max_flows: usize,
    pub mbufs: u32,
    pub socket: PathBuf,
    /// `socket` came from the command line (`--socket`), not the file: a
    /// reload keeps it rather than report the file's as a change.
    pub socket_overridden: bool,
    /// What the command line set over the file (a reload keeps it).
    pub overrides: Overrides,
    pub metrics: Option<SocketAddr>,
    pub stats_interval: Duration,
    pub ports: Vec<PortSpec>,
    /// Tunnel ports; their datapath numbers follow the ports'.
    pub tunnels: Vec<TunnelSpec>,
    /// `[underlay]`: where routes come from.
    pub underlay: UnderlaySpec,
    pub routes: Vec<RouteSpec>,
    pub neighbours: Vec<NeighbourSpec>,
    pub rules: Vec<ConfiguredRule>,
    pub offload: super::offload::OffloadConfig,
    pub openflow: super::openflow::OpenflowSettings,
}

/// Settings the command line gives over the file's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--pmd-cores`: the PMD threads' cores.
    pub pmd_cores: Option<Vec<usize>>,
}

/// What a `reload` of a new file would change beyond the rules.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReloadDiff {
    /// Changes a running switch cannot take (they renumber or re-open
    /// ports): the reload is refused.
    pub refused: Vec<String>,
    /// Sections that differ and are not applied until a restart (routes
    /// and neighbours change at run time with vswitchctl).
    pub not_applied: Vec<&'static str>,
}

/// Where routes come from (`[underlay] routes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RouteMode {
    /// The configuration and vswitchctl only.
    #[default]
    Config,
    /// The kernel only (no `[[route]]`, no `route-add`).
    Kernel,
    /// Both; for one prefix an operator's route beats the kernel's.
    Both,
}

impl RouteMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RouteMode::Config => "config",
            RouteMode::Kernel => "kernel",
            RouteMode::Both => "both",
        }
    }

    /// Whether the kernel is followed.
    pub fn follows_kernel(self) -> bool {
        self != RouteMode::Config
    }
}

/// `[underlay]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnderlaySpec {
    pub routes: RouteMode,
    /// The kernel routing table followed (254: main).
    pub table: u32,
    /// The notification socket's receive buffer, bytes.
    pub netlink_rcvbuf: u32,
}

impl Default for UnderlaySpec {
    fn default() -> Self {
        Self { routes: RouteMode::Config, table: 254, netlink_rcvbuf: 4 << 20 }
    }
}
