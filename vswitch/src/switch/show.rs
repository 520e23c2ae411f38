//! What the switch reports, built from the PMDs' counters, the flow tables
//! and the offload manager: `show`, `dump-flows`, `dump-underlay`.

use super::core::Switch;
use super::views::{
    FlowView, NeighShow, NeighbourView, PmdView, PortView, RouteShow, RouteView, SwitchStats, TestpmdJumps, TunnelView,
    UnderlayView,
};
use crate::actions::Action;
use crate::config::Role;
use crate::datapath::counters::{Balance, Counter, DropReason, PortCounter};
use crate::datapath::flows::FlowInfo;
use crate::datapath::pmd::PmdCommand;
use crate::datapath::SwitchError;
use crate::offload_manager::manager::PortHits;
use crate::ofrule;
use crate::packet::ParseError;
use crate::underlay::Tunnel;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Packets and bytes by rule id.
pub type RuleCounts = std::collections::HashMap<u64, (u64, u64)>;

/// Adds packets and bytes to a rule's counts.
pub(super) fn credit(counts: &mut RuleCounts, rule: u64, packets: u64, bytes: u64) {
    let e = counts.entry(rule).or_default();
    e.0 += packets;
    e.1 += bytes;
}

impl Switch {
    fn sum(&self, f: impl Fn(&crate::datapath::counters::Shared) -> u64) -> u64 {
        self.pmds.iter().map(|p| f(&p.shared.counters)).sum()
    }

    /// Port `n`'s view; `hw` holds the offload manager's counts by port.
    fn port_view(&self, n: usize, hw: &BTreeMap<u32, PortHits>) -> PortView {
        let sum = |c: PortCounter| self.sum(|s| s.port(n, c));
        // Packets the PMD never saw: a NIC's (the model's pass through the
        // PMD and are counted there), and every port's tunnel side.
        let model = self.offload.as_ref().is_some_and(|o| o.in_path.is_some());
        let extra = hw.get(&(n as u32)).copied().filter(|_| !model || n >= self.ports.len()).unwrap_or_default();
        let counters = |v: PortView| PortView {
            rx_packets: sum(PortCounter::RxPackets) + extra.rx_packets,
            rx_bytes: sum(PortCounter::RxBytes) + extra.rx_bytes,
            tx_packets: sum(PortCounter::TxPackets) + extra.tx_packets,
            tx_bytes: sum(PortCounter::TxBytes) + extra.tx_bytes,
            tx_dropped: sum(PortCounter::TxDropped),
            hw_rx_packets: if model && n < self.ports.len() { sum(PortCounter::HwRxPackets) } else { extra.rx_packets },
            hw_tx_packets: hw.get(&(n as u32)).map_or(0, |h| h.tx_packets),
            ..v
        };
        if let Some(p) = self.ports.get(n) {
            let dev = p.port.stats().unwrap_or_default();
            let info = p.port.info().ok();
            return counters(PortView {
                number: p.number,
                name: p.spec.name.clone(),
                role: p.spec.role,
                devargs: p.spec.devargs.clone(),
                mtu: p.spec.mtu,
                driver: info.map(|i| i.driver).unwrap_or_default(),
                link_up: p.port.link().is_ok_and(|l| l.up),
                mac: p.port.mac_or(p.spec.mac).map(|m| ofrule::format_mac(&m)).unwrap_or_default(),
                rx_packets: 0,
                rx_bytes: 0,
                tx_packets: 0,
                tx_bytes: 0,
                tx_dropped: 0,
                hw_rx_packets: 0,
                hw_tx_packets: 0,
                rx_missed: dev.rx_missed + p.af_packet.as_ref().map_or(0, |k| k.read()),
                rx_no_mbuf: dev.rx_no_mbuf,
            });
        }
        let t = &self.config.tunnels[n - self.ports.len()];
        counters(PortView {
            number: n as u32,
            name: t.name.clone(),
            role: Role::Tunnel,
            devargs: format!("vxlan remote={} vni={}", t.remote, t.vni.map_or("flow".to_owned(), |v| v.to_string())),
            mtu: 0,
            driver: "vxlan".to_owned(),
            link_up: true,
            mac: String::new(),
            rx_packets: 0,
            rx_bytes: 0,
            tx_packets: 0,
            tx_bytes: 0,
            tx_dropped: 0,
            hw_rx_packets: 0,
            hw_tx_packets: 0,
            rx_missed: 0,
            rx_no_mbuf: 0,
        })
    }

    /// Aggregated counters.
    pub fn stats(&self) -> SwitchStats {
        let totals = Counter::ALL
            .iter()
            .map(|&c| {
                let v = if c.meta().max {
                    self.pmds.iter().map(|p| p.shared.counters.get(c)).max().unwrap_or(0)
                } else {
                    self.sum(|s| s.get(c))
                };
                (c.as_str(), v)
            })
            .collect();
        let drops = DropReason::ALL.iter().map(|&r| (r.as_str().to_owned(), self.sum(|s| s.drops(r)))).collect();
        let parse_errors = ParseError::ALL
            .iter()
            .map(|&e| (e.as_str().to_owned(), self.sum(|s| s.parse_errors(e))))
            .filter(|(_, v)| *v != 0)
            .collect();
        let hw = self.offload.as_ref().map(|o| o.shared.stats().hw_by_port).unwrap_or_default();
        let ports = (0..self.ports.len() + self.config.tunnels.len()).map(|n| self.port_view(n, &hw)).collect();
        let pmds = self
            .pmds
            .iter()
            .map(|p| {
                let c = &p.shared.counters;
                PmdView {
                    index: p.shared.index,
                    core: p.shared.core,
                    packets: c.get(Counter::Packets),
                    hw_packets: c.get(Counter::HwPackets),
                    iterations: c.get(Counter::Iterations),
                    busy_cycles: c.get(Counter::BusyCycles),
                    idle_cycles: c.get(Counter::IdleCycles),
                    hw_cycles: c.get(Counter::HwCycles),
                    flows: c.get(Counter::Flows),
                    iterations_over_100us: c.get(Counter::IterationsOver100us),
                    iterations_over_1ms: c.get(Counter::IterationsOver1ms),
                    iterations_over_10ms: c.get(Counter::IterationsOver10ms),
                    longest_iteration_us: c.get(Counter::LongestIterationUs),
                }
            })
            .collect();
        SwitchStats {
            uptime_s: self.started.elapsed().as_secs_f64(),
            totals,
            balance: self.pmds.iter().fold(Balance::default(), |mut b, p| {
                b.add(&p.shared.counters.balance(self.ports.len()));
                b
            }),
            hw_malformed_forwarded: self
                .offload
                .as_ref()
                .and_then(|o| o.in_path.as_ref())
                .map_or(0, |m| m.malformed_forwarded()),
            rules: self.rule_count(),
            drops,
            parse_errors,
            ports,
            pmds,
        }
    }

    /// Every cached megaflow of every PMD, as the PMDs report them.
    ///
    /// # Errors
    /// When a PMD does not answer within 2 s.
    pub fn flow_infos(&self) -> Result<Vec<FlowInfo>, SwitchError> {
        Ok(self.flows_and_retired()?.0)
    }

    /// Every cached megaflow, and the packets and bytes of removed ones by
    /// their rule (software, summed over the PMDs).
    ///
    /// # Errors
    /// When a PMD does not answer within 2 s.
    pub fn flows_and_retired(&self) -> Result<(Vec<FlowInfo>, RuleCounts), SwitchError> {
        let mut retired = RuleCounts::new();
        let mut out = Vec::new();
        for p in &self.pmds {
            let (tx, rx) = crossbeam_channel::unbounded();
            let (recycle, recycled) = crossbeam_channel::unbounded();
            p.commands
                .send_timeout(PmdCommand::DumpFlows { reply: tx, recycle: recycled }, Duration::from_secs(2))
                .map_err(|_| SwitchError::PmdTimeout(format!("PMD {}: its command queue is full", p.shared.index)))?;
            // The PMD answers a slice of its table per iteration; emptied
            // chunks go back for it to fill again.
            loop {
                let mut chunk = rx
                    .recv_timeout(Duration::from_secs(2))
                    .map_err(|_| SwitchError::PmdTimeout(format!("PMD {} did not answer", p.shared.index)))?;
                out.append(&mut chunk.flows);
                if chunk.last {
                    for (rule, p, b) in chunk.retired {
                        credit(&mut retired, rule, p, b);
                    }
                    break;
                }
                let _ = recycle.send(chunk.flows);
            }
        }
        out.sort_by_key(|f| f.id);
        Ok((out, retired))
    }

    /// The counts that rules no longer in the published table left, in
    /// software (every PMD's) and in hardware: their final counts once
    /// every PMD has acknowledged that table, without a dump of the flows.
    pub fn retired_counts(&self, rules: &[u64]) -> Result<RuleCounts, SwitchError> {
        let ids: Arc<[u64]> = rules.into();
        let mut out = RuleCounts::new();
        for p in &self.pmds {
            let (tx, rx) = crossbeam_channel::bounded(1);
            let timeout = |what: &str| SwitchError::PmdTimeout(format!("PMD {} {what}", p.shared.index));
            p.commands
                .send_timeout(PmdCommand::Retired { rules: Arc::clone(&ids), reply: tx }, Duration::from_secs(2))
                .map_err(|_| timeout("has a full command queue"))?;
            let answer = rx.recv_timeout(Duration::from_secs(2)).map_err(|_| timeout("did not answer"))?;
            for (rule, packets, bytes) in answer {
                credit(&mut out, rule, packets, bytes);
            }
        }
        if let Some(o) = &self.offload {
            let hw = o.shared.retired.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            for id in rules {
                if let Some(&(packets, bytes)) = hw.get(id) {
                    credit(&mut out, *id, packets, bytes);
                }
            }
        }
        Ok(out)
    }

    /// A flow's view; with `testpmd`, its hardware rule as testpmd commands.
    pub fn flow_view(&self, f: &FlowInfo, testpmd: bool) -> FlowView {
        let name = |n: u32| self.port_name(n);
        let hw = self.offload.as_ref().map(|o| o.shared.flow(f.id));
        let (offload, hw_packets, hw_bytes, testpmd) = match hw {
            None => ("off".to_owned(), 0, 0, Vec::new()),
            Some(None) => ("sw".to_owned(), 0, 0, Vec::new()),
            Some(Some(o)) => {
                let text = if testpmd { o.testpmd() } else { Vec::new() };
                (o.state, o.hw_packets, o.hw_bytes, text)
            }
        };
        FlowView {
            id: f.id,
            pmd: f.pmd,
            pmds: Vec::new(),
            matcher: ofrule::format_match(&crate::flow::table::Match { key: f.key, mask: f.mask }, &name),
            actions: ofrule::format_actions(&f.actions, &name),
            rule_id: f.rule.map(|r| r.0),
            priority: f.rule.map(|r| r.1),
            packets: f.packets + hw_packets,
            bytes: f.bytes + hw_bytes,
            hw_packets,
            age_ms: f.age_ms,
            idle_ms: f.idle_ms,
            tier: if f.in_emc { "emc" } else { "megaflow" },
            offload,
            testpmd,
            encap: {
                let mut vni = None;
                let mut out = Vec::new();
                for a in f.actions.iter() {
                    match a {
                        Action::SetTunnel(v) => vni = Some(*v),
                        Action::Output(p) if *p as usize >= self.ports.len() => out.push(self.describe_encap(*p, vni)),
                        _ => {}
                    }
                }
                (!out.is_empty()).then(|| out.join("; "))
            },
        }
    }

    /// Every cached megaflow; with `testpmd`, each hardware rule as testpmd
    /// commands.
    ///
    /// # Errors
    /// When a PMD does not answer within 2 s.
    pub fn dump_flows(&self, testpmd: bool, per_pmd: bool) -> Result<Vec<FlowView>, SwitchError> {
        let views = self.flow_infos()?.iter().map(|f| self.flow_view(f, testpmd)).collect();
        Ok(if per_pmd { views } else { merge_by_megaflow(views) })
    }

    /// The group-0 JUMP rules in front of the flows' hardware rules, as
    /// testpmd commands: one per ingress port that has a hardware rule
    /// (none when the rules live in group 0).
    ///
    /// # Errors
    /// When a PMD does not answer within 2 s.
    pub fn testpmd_jumps(&self) -> Result<TestpmdJumps, SwitchError> {
        let Some(o) = &self.offload else { return Ok(TestpmdJumps::default()) };
        let mut ingress = std::collections::BTreeSet::new();
        let mut place = None;
        for f in self.flow_infos()? {
            if let Some(Some(rule)) = o.shared.flow(f.id).map(|fo| fo.rule.map(|r| (r, fo.proxy, fo.group))) {
                ingress.insert(rule.0.pattern.ingress);
                place = Some((rule.1, rule.2));
            }
        }
        let Some((proxy, group)) = place else { return Ok(TestpmdJumps::default()) };
        let commands = ingress
            .into_iter()
            .filter(|_| group > 0)
            .flat_map(|port| offload::testpmd::commands(&offload::rule::HwRule::jump(port, group), proxy, 0))
            .collect();
        Ok(TestpmdJumps { proxy, group, commands })
    }

    /// A route for display (route-show, dump-underlay).
    fn route_view(&self, r: &crate::underlay::Route) -> RouteView {
        RouteView {
            prefix: r.prefix.to_string(),
            via: r.via.map(|v| v.to_string()),
            port: self.port_name(r.port),
            source: r.source.as_str(),
            metric: r.metric,
        }
    }

    /// A neighbour for display (neigh-show, dump-underlay).
    fn neighbour_view(&self, ip: &std::net::IpAddr, n: &crate::underlay::Neighbour) -> NeighbourView {
        NeighbourView {
            ip: ip.to_string(),
            mac: ofrule::format_mac(&n.mac),
            port: self.port_name(n.port),
            is_static: n.is_static(),
            source: n.source.as_str(),
        }
    }

    /// `route-show`: every route with its source and metric, the kernel
    /// routes not used with why, the kernel follower's status.
    pub fn route_show(&self) -> RouteShow {
        let (routes, ignored, kernel) = self.underlay.read(|t| {
            let mut routes: Vec<&crate::underlay::Route> = t.routes.iter().collect();
            routes.sort_by_key(|r| (r.prefix, r.metric));
            let routes = routes.iter().map(|r| self.route_view(r)).collect();
            let ignored = t.ignored_routes.clone();
            (routes, ignored, t.kernel.clone())
        });
        RouteShow { mode: self.config.underlay.routes.as_str(), routes, ignored, kernel }
    }

    /// The kernel underlay follower's status, when it runs.
    pub fn kernel_status(&self) -> Option<crate::kernel::KernelStatus> {
        self.underlay.read(|t| t.kernel.clone())
    }

    /// `neigh-show`: every neighbour with its source.
    pub fn neigh_show(&self) -> NeighShow {
        let (neighbours, kernel) = self.underlay.read(|t| {
            let n = t.neighbours.iter().map(|(ip, n)| self.neighbour_view(ip, n)).collect();
            (n, t.kernel.clone())
        });
        NeighShow { neighbours, kernel }
    }

    /// Routes, neighbours and tunnels, for display.
    pub fn dump_underlay(&self) -> UnderlayView {
        let (routes, neighbours, tunnels) = self.underlay.read(|t| {
            let routes = t.routes.iter().map(|r| self.route_view(r)).collect();
            let neighbours = t.neighbours.iter().map(|(ip, n)| self.neighbour_view(ip, n)).collect();
            (routes, neighbours, t.tunnels.clone())
        });
        let tunnels = tunnels
            .iter()
            .map(|tu| TunnelView {
                name: tu.name.clone(),
                remote: tu.remote.to_string(),
                vni: tu.vni.map_or_else(|| "flow".to_owned(), |v| v.to_string()),
                udp_port: tu.udp_port,
                encap: self.describe_encap(tu.number, None),
            })
            .collect();
        UnderlayView { routes, neighbours, tunnels }
    }

    /// How tunnel port `port` sends right now, e.g.
    /// `vxlan0 vni=100 198.18.0.1->198.18.0.2 via uplink0 next-hop 198.18.0.2 (02:..)`.
    pub fn describe_encap(&self, port: u32, vni: Option<u32>) -> String {
        let Some(tunnel) = (port as usize).checked_sub(self.ports.len()).and_then(|i| self.config.tunnels.get(i))
        else {
            return String::new();
        };
        let t = Tunnel {
            name: tunnel.name.clone(),
            number: port,
            remote: tunnel.remote,
            vni: tunnel.vni,
            local: tunnel.local,
            udp_port: tunnel.udp_port,
        };
        self.underlay.read(|tables| match tables.resolve(&t, vni) {
            Ok(r) => {
                let s = r.template.spec();
                format!(
                    "{} vni={} {}->{} via {} next-hop {} ({})",
                    t.name,
                    s.vni,
                    s.ip_src,
                    s.ip_dst,
                    self.port_name(r.uplink),
                    r.next_hop,
                    ofrule::format_mac(&s.eth_dst)
                )
            }
            Err(e) => format!("{} unresolved: {e:?}", t.name),
        })
    }
}

/// One view per megaflow (match and actions): the PMDs' flows of it summed
/// (ages the oldest, idle times the shortest), in the order first seen; its
/// offload state the hardware one if any has it (one rule serves them all).
fn merge_by_megaflow(views: Vec<FlowView>) -> Vec<FlowView> {
    let mut out: Vec<FlowView> = Vec::with_capacity(views.len());
    let mut at: std::collections::HashMap<(String, String), usize> = std::collections::HashMap::new();
    for v in views {
        let key = (v.matcher.clone(), v.actions.clone());
        let Some(&i) = at.get(&key) else {
            at.insert(key, out.len());
            out.push(v);
            continue;
        };
        let m = &mut out[i];
        if m.pmds.is_empty() {
            m.pmds.push(m.pmd);
        }
        if !m.pmds.contains(&v.pmd) {
            m.pmds.push(v.pmd);
        }
        m.packets += v.packets;
        m.bytes += v.bytes;
        m.hw_packets += v.hw_packets;
        m.age_ms = m.age_ms.max(v.age_ms);
        m.idle_ms = m.idle_ms.min(v.idle_ms);
        if v.tier == "emc" {
            m.tier = "emc";
        }
        if v.offload == "hw" {
            m.offload = v.offload;
        }
        // The rule's text is with the flow that holds it.
        if m.testpmd.is_empty() {
            m.testpmd = v.testpmd;
        }
    }
    out
}
