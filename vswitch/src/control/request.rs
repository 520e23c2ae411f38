//! What a client may ask: the [`Request`] enum (the wire format and
//! vswitchctl's subcommands at once) and its limits.

use serde::{Deserialize, Serialize};

/// Longest request accepted, in bytes (an `add-rules` batch of some 100k
/// rules fits).
pub const MAX_REQUEST: usize = 16 << 20;
/// Rules for `add-rules`: on the command line a file (`-`: standard input),
/// one rule per line, `#` comments and blank lines skipped; on the wire a
/// list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RuleList(pub Vec<String>);

impl std::str::FromStr for RuleList {
    type Err = String;

    fn from_str(path: &str) -> Result<Self, String> {
        let text = if path == "-" {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).map_err(|e| format!("standard input: {e}"))?;
            s
        } else {
            std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?
        };
        Ok(RuleList(
            text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_owned).collect(),
        ))
    }
}

/// A control request (and a vswitchctl subcommand).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, clap::Subcommand)]
#[serde(tag = "cmd", rename_all = "kebab-case")]
#[command(rename_all = "kebab-case")]
pub enum Request {
    /// Summary: ports, lookups by tier, flows, drops by reason, PMDs.
    Show,
    /// Port counters.
    DumpPorts,
    /// Cached megaflows: match, actions, packets, bytes, age, tier, offload
    /// state; a megaflow several PMDs cached is one line, its counts summed.
    DumpFlows {
        /// Print each hardware rule as dpdk-testpmd commands.
        #[arg(long)]
        #[serde(default)]
        testpmd: bool,
        /// One line per PMD's flow (not merged by megaflow).
        #[arg(long)]
        #[serde(default)]
        per_pmd: bool,
    },
    /// The group-0 JUMP rules that make the hardware rules of dump-flows
    /// --testpmd reachable, as testpmd commands (one per ingress port).
    TestpmdJumps,
    /// Rules in priority order with their ids.
    DumpRules,
    /// Add a rule, e.g. "priority=100,in_port=vf0,ip actions=output:uplink0".
    AddRule { rule: String },
    /// Add the rules of a file (- for standard input), one per line: all or
    /// none, with one revalidation of the cached flows.
    AddRules {
        #[arg(value_name = "FILE")]
        rules: RuleList,
    },
    /// Delete a rule by id, or by its match and priority (rule text).
    DelRule { rule: String },
    /// Re-read the configuration file's rules.
    Reload,
    /// Routes, neighbours and tunnels with their current encapsulation.
    DumpUnderlay,
    /// Add a route: PREFIX [via GATEWAY] UPLINK, e.g. 198.18.1.0/24 via 198.18.0.254 uplink0.
    RouteAdd {
        #[arg(num_args = 2..=4)]
        args: Vec<String>,
    },
    /// Delete a route by prefix.
    RouteDel { prefix: String },
    /// Routes with their source (connected, config, control, kernel) and
    /// metric, the kernel routes not used with why, and the kernel
    /// follower's counters.
    RouteShow,
    /// Neighbours with their source (config, control, kernel, learned).
    NeighShow,
    /// Add a static neighbour: IP MAC UPLINK.
    NeighAdd { ip: String, mac: String, port: String },
    /// Delete a neighbour (static or learned).
    NeighDel { ip: String },
    /// Offload: rules in the device, flows by state and reason, operations,
    /// failures, install-to-active latency.
    OffloadShow,
    /// Stop and start a port (its hardware rules are flushed and installed again).
    PortRestart { port: String },
    /// Per PMD: its core, its busy and idle shares, its receive queues with
    /// each one's share of the PMD's busy cycles, over the last measurement
    /// interval ([datapath] rxq_interval_ms).
    PmdRxqShow,
    /// Assign the receive queues to the PMDs again ([datapath] rxq_assign,
    /// from the last interval's loads; pinned queues stay); queues move
    /// without loss.
    PmdRxqRebalance,
    /// Move one receive queue to the PMD on CORE now, without loss (the next
    /// rebalance may move it again; rxq_affinity pins it for good).
    PmdRxqMove {
        /// PORT:QUEUE, e.g. uplink0:1
        queue: String,
        core: usize,
    },
}

impl Request {
    /// The command's name on the wire and on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Show => "show",
            Request::DumpPorts => "dump-ports",
            Request::DumpFlows { .. } => "dump-flows",
            Request::TestpmdJumps => "testpmd-jumps",
            Request::DumpRules => "dump-rules",
            Request::AddRule { .. } => "add-rule",
            Request::AddRules { .. } => "add-rules",
            Request::DelRule { .. } => "del-rule",
            Request::Reload => "reload",
            Request::DumpUnderlay => "dump-underlay",
            Request::RouteAdd { .. } => "route-add",
            Request::RouteDel { .. } => "route-del",
            Request::RouteShow => "route-show",
            Request::NeighShow => "neigh-show",
            Request::NeighAdd { .. } => "neigh-add",
            Request::NeighDel { .. } => "neigh-del",
            Request::OffloadShow => "offload-show",
            Request::PortRestart { .. } => "port-restart",
            Request::PmdRxqShow => "pmd-rxq-show",
            Request::PmdRxqRebalance => "pmd-rxq-rebalance",
            Request::PmdRxqMove { .. } => "pmd-rxq-move",
        }
    }
}
