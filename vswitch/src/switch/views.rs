//! What the switch reports: `show` (counters of ports and PMDs, drops by
//! reason), `dump-flows` (megaflows with their tier and encapsulation) and
//! `dump-underlay` (routes, neighbours, tunnels).

use crate::config::Role;
use crate::datapath::counters::{Balance, Counter};
use crate::kernel::KernelStatus;
use crate::underlay::IgnoredRoute;
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
    /// Merged (dump-flows without --per-pmd): every PMD that cached the
    /// megaflow, when there are several.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pmds: Vec<usize>,
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
    /// The OpenFlow table (0 for rules from the file and vswitchctl).
    pub table: u8,
    /// The OpenFlow cookie, in hex.
    pub cookie: String,
    /// `config`, `control` or `openflow`.
    pub origin: &'static str,
}

impl SwitchStats {
    /// A PMD counter over the whole switch.
    pub fn total(&self, c: Counter) -> u64 {
        self.totals.get(c.as_str()).copied().unwrap_or(0)
    }
}

/// A route as route-show and dump-underlay print it.
#[derive(Debug, Clone, Serialize)]
pub struct RouteView {
    pub prefix: String,
    pub via: Option<String>,
    pub port: String,
    pub source: &'static str,
    pub metric: u32,
}

/// A neighbour as neigh-show and dump-underlay print it.
#[derive(Debug, Clone, Serialize)]
pub struct NeighbourView {
    pub ip: String,
    pub mac: String,
    pub port: String,
    #[serde(rename = "static")]
    pub is_static: bool,
    pub source: &'static str,
}

/// `route-show`.
#[derive(Debug, Clone, Serialize)]
pub struct RouteShow {
    pub mode: &'static str,
    pub routes: Vec<RouteView>,
    /// Kernel routes the switch does not use, and why.
    pub ignored: Vec<IgnoredRoute>,
    pub kernel: Option<KernelStatus>,
}

/// `neigh-show`.
#[derive(Debug, Clone, Serialize)]
pub struct NeighShow {
    pub neighbours: Vec<NeighbourView>,
    pub kernel: Option<KernelStatus>,
}

/// A tunnel port as dump-underlay prints it.
#[derive(Debug, Clone, Serialize)]
pub struct TunnelView {
    pub name: String,
    pub remote: String,
    /// The VNI, or "flow" when rules set it.
    pub vni: String,
    pub udp_port: u16,
    /// How it sends right now (or why it cannot).
    pub encap: String,
}

/// `dump-underlay`.
#[derive(Debug, Clone, Serialize)]
pub struct UnderlayView {
    pub routes: Vec<RouteView>,
    pub neighbours: Vec<NeighbourView>,
    pub tunnels: Vec<TunnelView>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The typed underlay replies serialize to the JSON the `json!`
    /// literals they replace gave (scripts read these).
    #[test]
    fn underlay_views_are_byte_for_byte_the_old_json() {
        let text = |v: &dyn erased::Ser| v.value().to_string();
        let route = RouteView {
            prefix: "10.0.0.0/8".into(),
            via: Some("198.18.0.254".into()),
            port: "uplink0".into(),
            source: "config",
            metric: 0,
        };
        let old_route = json!({"prefix": "10.0.0.0/8", "via": Some("198.18.0.254"), "port": "uplink0", "source": "config", "metric": 0});
        assert_eq!(text(&route), old_route.to_string());
        let n = NeighbourView {
            ip: "198.18.0.2".into(),
            mac: "02:00:00:00:00:bb".into(),
            port: "uplink0".into(),
            is_static: true,
            source: "config",
        };
        let old_n = json!({"ip": "198.18.0.2", "mac": "02:00:00:00:00:bb", "port": "uplink0", "static": true, "source": "config"});
        assert_eq!(text(&n), old_n.to_string());
        let ignored = IgnoredRoute {
            prefix: "10.9.0.0/16".into(),
            via: Some("198.18.0.9".parse().expect("ip")),
            dev: "eth9".into(),
            metric: 5,
            why: "not an uplink".into(),
        };
        let old_ignored = json!({"prefix": "10.9.0.0/16", "via": Some("198.18.0.9"), "dev": "eth9", "metric": 5, "why": "not an uplink"});
        let show = RouteShow { mode: "both", routes: vec![route.clone()], ignored: vec![ignored], kernel: None };
        let kernel: Option<KernelStatus> = None;
        assert_eq!(
            text(&show),
            json!({"mode": "both", "routes": [old_route.clone()], "ignored": [old_ignored], "kernel": kernel})
                .to_string()
        );
        let neigh = NeighShow { neighbours: vec![n.clone()], kernel: None };
        assert_eq!(text(&neigh), json!({"neighbours": [old_n.clone()], "kernel": kernel}).to_string());
        let t = TunnelView {
            name: "vxlan0".into(),
            remote: "198.18.0.2".into(),
            vni: "flow".into(),
            udp_port: 4789,
            encap: "x".into(),
        };
        let dump = UnderlayView { routes: vec![route], neighbours: vec![n], tunnels: vec![t] };
        assert_eq!(
            text(&dump),
            json!({"routes": [old_route], "neighbours": [old_n], "tunnels": [{"name": "vxlan0", "remote": "198.18.0.2", "vni": "flow", "udp_port": 4789, "encap": "x"}]}).to_string()
        );
    }

    mod erased {
        /// Serialize through `serde_json::Value`, as the control socket does.
        pub trait Ser {
            fn value(&self) -> serde_json::Value;
        }

        impl<T: serde::Serialize> Ser for T {
            fn value(&self) -> serde_json::Value {
                serde_json::to_value(self).expect("value")
            }
        }
    }
}
