//! The configuration as TOML says it: every field optional where it has a
//! default, spans kept so errors can name the line.

use serde::Deserialize;
use toml::Spanned;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawEal {
    #[serde(default)]
    pub args: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawDatapath {
    pub pmd_cores: Option<Spanned<Vec<usize>>>,
    pub idle_timeout_ms: Option<Spanned<u64>>,
    pub upcall_budget: Option<Spanned<u64>>,
    pub emc_entries: Option<Spanned<u64>>,
    pub smc_entries: Option<Spanned<u64>>,
    pub prefix_checks: Option<Spanned<bool>>,
    pub emc_insert_inv_prob: Option<Spanned<u64>>,
    pub max_flows: Option<Spanned<u64>>,
    pub mbufs: Option<Spanned<u64>>,
    pub rxq_assign: Option<Spanned<String>>,
    pub pmd_rxq_isolate: Option<Spanned<bool>>,
    pub rxq_interval_ms: Option<Spanned<u64>>,
    pub auto_lb: Option<Spanned<bool>>,
    pub auto_lb_load_threshold: Option<Spanned<u64>>,
    pub auto_lb_improvement_threshold: Option<Spanned<u64>>,
    pub auto_lb_interval_ms: Option<Spanned<u64>>,
}

/// `rx_queues`: a number or "auto".
#[derive(Deserialize)]
#[serde(untagged)]
pub enum RawRxQueues {
    Count(i64),
    Word(String),
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawControl {
    pub socket: Option<Spanned<String>>,
    pub stats_interval_ms: Option<Spanned<u64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    pub listen: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn list(&self) -> Vec<String> {
        match self {
            OneOrMany::One(a) => vec![a.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGenerate {
    pub flows: Option<Spanned<u32>>,
    pub size: Option<Spanned<usize>>,
    pub dl_src: Option<Spanned<String>>,
    pub dl_dst: Option<Spanned<OneOrMany>>,
    pub nw_src: Option<Spanned<String>>,
    pub nw_dst: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPort {
    pub name: Spanned<String>,
    pub devargs: Option<Spanned<String>>,
    pub role: Spanned<String>,
    pub mtu: Option<Spanned<u32>>,
    pub ip: Option<Spanned<OneOrMany>>,
    pub generate: Option<Spanned<RawGenerate>>,
    /// The e-switch this port belongs to, for ports whose driver reports none
    /// (virtual devices under the model e-switch).
    pub switch_domain: Option<Spanned<u16>>,
    /// The switch's own MAC on this port (default: the device's).
    pub mac: Option<Spanned<String>>,
    /// The kernel interface this uplink stands for (kernel underlay).
    pub kernel_ifname: Option<Spanned<String>>,
    /// Receive queues: a number, or "auto" (one per PMD).
    pub rx_queues: Option<Spanned<RawRxQueues>>,
    /// Queues pinned to cores: "QUEUE:CORE,...".
    pub rxq_affinity: Option<Spanned<String>>,
}

/// A routing table: "main" or a number.
#[derive(Deserialize)]
#[serde(untagged)]
pub enum RawTable {
    Number(i64),
    Name(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUnderlay {
    pub routes: Option<Spanned<String>>,
    pub table: Option<Spanned<RawTable>>,
    pub netlink_rcvbuf: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub enum RawVni {
    Number(u32),
    Word(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTunnel {
    pub name: Spanned<String>,
    pub remote_ip: Spanned<String>,
    pub vni: Option<Spanned<RawVni>>,
    pub local_ip: Option<Spanned<String>>,
    pub udp_port: Option<Spanned<u16>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub prefix: Spanned<String>,
    pub via: Option<Spanned<String>>,
    pub port: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNeighbour {
    pub ip: Spanned<String>,
    pub mac: Spanned<String>,
    pub port: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub eal: RawEal,
    #[serde(default)]
    pub datapath: RawDatapath,
    #[serde(default)]
    pub control: RawControl,
    #[serde(default)]
    pub metrics: RawMetrics,
    #[serde(default, rename = "port")]
    pub ports: Vec<Spanned<RawPort>>,
    #[serde(default, rename = "tunnel")]
    pub tunnels: Vec<Spanned<RawTunnel>>,
    pub underlay: Option<Spanned<RawUnderlay>>,
    #[serde(default, rename = "route")]
    pub routes: Vec<Spanned<RawRoute>>,
    #[serde(default, rename = "neighbour")]
    pub neighbours: Vec<Spanned<RawNeighbour>>,
    #[serde(default)]
    pub rules: Vec<Spanned<String>>,
    pub offload: Option<Spanned<super::offload::RawOffload>>,
    pub openflow: Option<Spanned<super::openflow::RawOpenflow>>,
}
