//! The switch at run time: ports, PMD threads, the rule table snapshot they
//! share, and the control operations (stats, dumps, rule changes).

pub mod counters;
pub mod flows;
pub mod pmd;
pub mod tunnel;

use crate::config::{Config, PortSpec, Role};
use crate::dpdk::{Eal, Mempool, Port, PortConfig};
use crate::flow::table::RuleId;
use crate::flow::RuleTable;
use crate::ofrule::{self, RuleSpec};
use crate::packet::ParseError;
use crate::underlay::{LocalAddress, Neighbour, Route, Tables, Tunnel, Underlay};
use anyhow::{bail, Context, Result};
use counters::DropReason;
use crossbeam_channel::{bounded, Sender};
use flows::{FlowEvent, FlowInfo};
use pmd::{PmdCommand, PmdConfig, PmdSetup, PmdShared, RevalidateReport, TxHandle};
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A port as the switch holds it.
pub struct SwitchPort {
    pub number: u32,
    pub spec: PortSpec,
    pub port: Port,
}

struct PmdHandle {
    shared: Arc<PmdShared>,
    commands: Sender<PmdCommand>,
    thread: Option<JoinHandle<()>>,
}

struct RuleState {
    table: RuleTable,
    /// Original text of each rule, for dumps.
    texts: BTreeMap<RuleId, String>,
    generation: u64,
}

/// The running switch.
pub struct Switch {
    config: Config,
    ports: Vec<SwitchPort>,
    pmds: Vec<PmdHandle>,
    stop: Arc<AtomicBool>,
    rules: Mutex<RuleState>,
    underlay: Arc<Underlay>,
    started: Instant,
    _pool: Arc<Mempool>,
    _eal: Eal,
}

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
    /// Packets the device could not deliver (rx ring full, no mbuf).
    pub rx_missed: u64,
}

/// One PMD's view.
#[derive(Debug, Clone, Serialize)]
pub struct PmdView {
    pub index: usize,
    pub core: usize,
    pub packets: u64,
    pub iterations: u64,
    pub busy_cycles: u64,
    pub idle_cycles: u64,
    pub flows: u64,
}

/// Everything `show` reports.
#[derive(Debug, Clone, Serialize)]
pub struct SwitchStats {
    pub uptime_s: f64,
    pub packets: u64,
    pub emc_hits: u64,
    pub megaflow_hits: u64,
    pub upcalls: u64,
    pub upcall_cycles: u64,
    pub flows: u64,
    pub flows_expired: u64,
    pub flows_revalidated_out: u64,
    pub decapsulated: u64,
    pub encapsulated: u64,
    pub icmp_too_big_sent: u64,
    pub neighbour_replies_sent: u64,
    pub neighbour_requests_sent: u64,
    pub rules: usize,
    pub drops: BTreeMap<String, u64>,
    pub parse_errors: BTreeMap<String, u64>,
    pub ports: Vec<PortView>,
    pub pmds: Vec<PmdView>,
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
    pub packets: u64,
    pub bytes: u64,
    pub age_ms: u64,
    pub idle_ms: u64,
    /// "emc" when exact-match entries point at it, else "megaflow".
    pub tier: &'static str,
    /// For outputs to tunnel ports: how they are encapsulated now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encap: Option<String>,
}

/// A rule as dump-rules prints it.
#[derive(Debug, Clone, Serialize)]
pub struct RuleView {
    pub id: u64,
    pub priority: u32,
    pub text: String,
}

fn mac_text(mac: [u8; 6]) -> String {
    ofrule::format_mac(&mac)
}

impl Switch {
    /// Opens every port on the initialised EAL, installs the configured rules
    /// and starts the PMDs.
    /// `pcaps` maps port index to a generated traffic file (for `{pcap}`).
    ///
    /// # Errors
    /// Any DPDK or thread failure, with the port or step named.
    pub fn start(
        eal: &Eal,
        config: Config,
        pcaps: &BTreeMap<usize, std::path::PathBuf>,
        events: Option<Sender<FlowEvent>>,
    ) -> Result<Self> {
        let eal = eal.clone();
        static POOLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let pool_name = format!("vsw_mbufs{}", POOLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let max_mtu = config.ports.iter().map(|p| p.mtu).max().unwrap_or(1500);
        // Data room: headroom (128) + the largest frame (MTU + Ethernet + 2 tags).
        let data_room = (128 + usize::from(max_mtu) + 14 + 8).max(2048 + 128) as u16;
        let pool = Arc::new(Mempool::new(&eal, &pool_name, config.mbufs, 256, data_room).with_context(|| {
            format!("creating a pool of {} mbufs (raise -m in [eal] args, or lower datapath.mbufs)", config.mbufs)
        })?);
        let npmd = config.pmd_cores.len();
        let mut ports = Vec::new();
        let mut rx_assign: Vec<Vec<(u32, crate::dpdk::RxQueue)>> = (0..npmd).map(|_| Vec::new()).collect();
        let mut tx_assign: Vec<Vec<TxHandle>> = (0..npmd).map(|_| Vec::new()).collect();
        for (i, spec) in config.ports.iter().enumerate() {
            let devargs = match pcaps.get(&i) {
                Some(p) => spec.devargs.replace("{pcap}", &p.display().to_string()),
                None => spec.devargs.clone(),
            };
            let port =
                Port::open(&eal, &devargs).with_context(|| format!("port {:?}: opening {devargs:?}", spec.name))?;
            let info = port.info().with_context(|| format!("port {:?}", spec.name))?;
            let txq = npmd.min(usize::from(info.max_tx_queues.max(1))) as u16;
            let pc = PortConfig { rx_queues: 1, tx_queues: txq, mtu: Some(spec.mtu), ..PortConfig::default() };
            port.configure(&pc, &pool).with_context(|| format!("port {:?}: configuring", spec.name))?;
            port.start().with_context(|| format!("port {:?}: starting", spec.name))?;
            rx_assign[i % npmd].push((i as u32, port.rx_queue(0)?));
            if usize::from(txq) >= npmd {
                for (p, list) in tx_assign.iter_mut().enumerate() {
                    list.push(TxHandle::Owned(port.tx_queue(p as u16)?));
                }
            } else {
                tracing::info!(port = %spec.name, queues = txq, pmds = npmd, "fewer tx queues than PMDs: the PMDs share them under a lock");
                let shared: Vec<Arc<Mutex<crate::dpdk::TxQueue>>> =
                    (0..txq).map(|q| port.tx_queue(q).map(|t| Arc::new(Mutex::new(t)))).collect::<Result<_, _>>()?;
                for (p, list) in tx_assign.iter_mut().enumerate() {
                    list.push(TxHandle::Shared(Arc::clone(&shared[p % shared.len()])));
                }
            }
            tracing::info!(port = %spec.name, number = i, role = spec.role.as_str(), driver = %info.driver, mtu = spec.mtu, "port up");
            ports.push(SwitchPort { number: i as u32, spec: spec.clone(), port });
        }

        let underlay = Arc::new(build_underlay(&config, &ports)?);
        let mut state = RuleState { table: RuleTable::new(), texts: BTreeMap::new(), generation: 1 };
        for r in &config.rules {
            let id = state.table.insert(r.spec.priority, r.spec.matcher, r.spec.actions.clone());
            state.texts.insert(id, r.text.clone());
        }
        let table = Arc::new(state.table.clone());
        let stop = Arc::new(AtomicBool::new(false));
        let pmd_config = PmdConfig {
            upcall_budget: config.upcall_budget,
            emc_entries: config.emc_entries,
            emc_insert_inv_prob: config.emc_insert_inv_prob,
            max_flows: config.max_flows,
            idle_timeout: config.idle_timeout,
        };
        let mtus: Vec<u16> = config.ports.iter().map(|p| p.mtu).collect();
        let mut pmds = Vec::new();
        for (index, (rxqs, txqs)) in rx_assign.into_iter().zip(tx_assign).enumerate() {
            let core = config.pmd_cores[index];
            let shared = Arc::new(PmdShared {
                index,
                core,
                counters: counters::Shared::new(ports.len() + config.tunnels.len()),
            });
            let (cmd_tx, cmd_rx) = bounded(16);
            let setup = PmdSetup {
                index,
                core,
                eal: eal.clone(),
                rxqs,
                txqs,
                mtus: mtus.clone(),
                pool: Arc::clone(&pool),
                table: Arc::clone(&table),
                config: pmd_config.clone(),
                shared: Arc::clone(&shared),
                commands: cmd_rx,
                stop: Arc::clone(&stop),
                events: events.clone(),
                underlay: Arc::clone(&underlay),
                uplink: config.ports.iter().map(|p| p.role == Role::Uplink).collect(),
                tunnels: config.tunnels.len(),
            };
            let thread = std::thread::Builder::new()
                .name(format!("pmd{index}"))
                .spawn(move || pmd::run(setup))
                .context("spawning a PMD thread")?;
            pmds.push(PmdHandle { shared, commands: cmd_tx, thread: Some(thread) });
        }
        Ok(Self {
            config,
            ports,
            pmds,
            stop,
            rules: Mutex::new(state),
            underlay,
            started: Instant::now(),
            _pool: pool,
            _eal: eal,
        })
    }

    /// The configuration it runs.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Port name by number, tunnels included ("?N" if unknown).
    pub fn port_name(&self, n: u32) -> String {
        let n = n as usize;
        match self.ports.get(n) {
            Some(p) => p.spec.name.clone(),
            None => self.config.tunnels.get(n - self.ports.len()).map_or_else(|| format!("?{n}"), |t| t.name.clone()),
        }
    }

    fn port_number(&self, name: &str) -> Option<u32> {
        self.config.port_number(name).or_else(|| {
            name.parse::<u32>().ok().filter(|&n| (n as usize) < self.ports.len() + self.config.tunnels.len())
        })
    }

    /// The underlay tables (routes, neighbours, tunnels).
    pub fn underlay(&self) -> &Underlay {
        &self.underlay
    }

    /// Adds or replaces a route; `port` is an uplink name.
    ///
    /// # Errors
    /// Bad prefix, gateway or port.
    pub fn add_route(&self, prefix: &str, via: Option<&str>, port: &str) -> Result<()> {
        let (addr, len) = parse_prefix(prefix)?;
        let via =
            via.map(|v| v.parse::<IpAddr>().with_context(|| format!("{v:?} is not an IP address"))).transpose()?;
        if via.is_some_and(|v| v.is_ipv4() != addr.is_ipv4()) {
            bail!("the gateway and the prefix must be the same address family");
        }
        let port = self.uplink_number(port)?;
        self.underlay.write(|t| {
            t.routes.retain(|r| !(r.prefix == addr && r.len == len && !r.connected));
            t.routes.push(Route { prefix: addr, len, via, port, connected: false });
            ((), true)
        });
        tracing::info!(prefix, ?via, port, "route added");
        Ok(())
    }

    /// Deletes a configured route.
    ///
    /// # Errors
    /// When no configured route has that prefix.
    pub fn del_route(&self, prefix: &str) -> Result<()> {
        let (addr, len) = parse_prefix(prefix)?;
        let removed = self.underlay.write(|t| {
            let before = t.routes.len();
            t.routes.retain(|r| !(r.prefix == addr && r.len == len && !r.connected));
            let removed = before != t.routes.len();
            (removed, removed)
        });
        if !removed {
            bail!("no configured route {prefix} (connected routes come from uplink addresses)");
        }
        tracing::info!(prefix, "route deleted");
        Ok(())
    }

    /// Adds or replaces a static neighbour.
    ///
    /// # Errors
    /// Bad address, MAC or port.
    pub fn add_neighbour(&self, ip: &str, mac: &str, port: &str) -> Result<()> {
        let ip: IpAddr = ip.parse().with_context(|| format!("{ip:?} is not an IP address"))?;
        let mac = ofrule::parse_mac(mac).with_context(|| format!("{mac:?} is not a MAC address"))?;
        let port = self.uplink_number(port)?;
        self.underlay.write(|t| {
            t.neighbours.insert(ip, Neighbour { mac, port, is_static: true });
            ((), true)
        });
        tracing::info!(%ip, mac = %ofrule::format_mac(&mac), port, "neighbour added");
        Ok(())
    }

    /// Deletes a neighbour (static or learned).
    ///
    /// # Errors
    /// When there is none for that address.
    pub fn del_neighbour(&self, ip: &str) -> Result<()> {
        let ip: IpAddr = ip.parse().with_context(|| format!("{ip:?} is not an IP address"))?;
        let removed = self.underlay.write(|t| {
            let r = t.neighbours.remove(&ip).is_some();
            (r, r)
        });
        if !removed {
            bail!("no neighbour {ip}");
        }
        tracing::info!(%ip, "neighbour deleted");
        Ok(())
    }

    /// Routes, neighbours and tunnels, for display.
    pub fn dump_underlay(&self) -> serde_json::Value {
        let name = |n: u32| self.port_name(n);
        let (routes, neighbours, tunnels) = self.underlay.read(|t| {
            let routes: Vec<serde_json::Value> = t
                .routes
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "prefix": format!("{}/{}", r.prefix, r.len),
                        "via": r.via.map(|v| v.to_string()),
                        "port": name(r.port),
                        "connected": r.connected,
                    })
                })
                .collect();
            let neighbours: Vec<serde_json::Value> = t
                .neighbours
                .iter()
                .map(|(ip, n)| {
                    serde_json::json!({
                        "ip": ip.to_string(),
                        "mac": ofrule::format_mac(&n.mac),
                        "port": name(n.port),
                        "static": n.is_static,
                    })
                })
                .collect();
            (routes, neighbours, t.tunnels.clone())
        });
        let tunnels: Vec<serde_json::Value> = tunnels
            .iter()
            .map(|tu| {
                serde_json::json!({
                    "name": tu.name,
                    "remote": tu.remote.to_string(),
                    "vni": tu.vni.map_or_else(|| "flow".to_owned(), |v| v.to_string()),
                    "udp_port": tu.udp_port,
                    "encap": self.describe_encap(tu.number, None),
                })
            })
            .collect();
        serde_json::json!({ "routes": routes, "neighbours": neighbours, "tunnels": tunnels })
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

    fn uplink_number(&self, name: &str) -> Result<u32> {
        match self.ports.iter().find(|p| p.spec.name == name) {
            Some(p) if p.spec.role == Role::Uplink => Ok(p.number),
            Some(_) => bail!("{name:?} is not an uplink"),
            None => bail!("no port named {name:?}"),
        }
    }

    /// Aggregated counters.
    pub fn stats(&self) -> SwitchStats {
        let sum = |i: usize| self.pmds.iter().map(|p| p.shared.counters.get(i)).sum::<u64>();
        let drops =
            DropReason::ALL.iter().map(|r| (r.as_str().to_owned(), sum(counters::DROP_BASE + *r as usize))).collect();
        let parse_errors = ParseError::ALL
            .iter()
            .map(|e| (e.as_str().to_owned(), sum(counters::PARSE_BASE + *e as usize)))
            .filter(|(_, v)| *v != 0)
            .collect();
        let ports = self
            .ports
            .iter()
            .map(|p| {
                let n = p.number as usize;
                let hw = p.port.stats().unwrap_or_default();
                let info = p.port.info().ok();
                PortView {
                    number: p.number,
                    name: p.spec.name.clone(),
                    role: p.spec.role,
                    devargs: p.spec.devargs.clone(),
                    mtu: p.spec.mtu,
                    driver: info.map(|i| i.driver).unwrap_or_default(),
                    link_up: p.port.link().is_ok_and(|l| l.up),
                    mac: p.port.mac().map(mac_text).unwrap_or_default(),
                    rx_packets: sum(counters::port(n, counters::PORT_RX_PACKETS)),
                    rx_bytes: sum(counters::port(n, counters::PORT_RX_BYTES)),
                    tx_packets: sum(counters::port(n, counters::PORT_TX_PACKETS)),
                    tx_bytes: sum(counters::port(n, counters::PORT_TX_BYTES)),
                    tx_dropped: sum(counters::port(n, counters::PORT_TX_DROPPED)),
                    rx_missed: hw.rx_missed + hw.rx_no_mbuf,
                }
            })
            .chain(self.config.tunnels.iter().enumerate().map(|(i, t)| {
                let n = self.ports.len() + i;
                PortView {
                    number: n as u32,
                    name: t.name.clone(),
                    role: Role::Tunnel,
                    devargs: format!(
                        "vxlan remote={} vni={}",
                        t.remote,
                        t.vni.map_or("flow".to_owned(), |v| v.to_string())
                    ),
                    mtu: 0,
                    driver: "vxlan".to_owned(),
                    link_up: true,
                    mac: String::new(),
                    rx_packets: sum(counters::port(n, counters::PORT_RX_PACKETS)),
                    rx_bytes: sum(counters::port(n, counters::PORT_RX_BYTES)),
                    tx_packets: sum(counters::port(n, counters::PORT_TX_PACKETS)),
                    tx_bytes: sum(counters::port(n, counters::PORT_TX_BYTES)),
                    tx_dropped: sum(counters::port(n, counters::PORT_TX_DROPPED)),
                    rx_missed: 0,
                }
            }))
            .collect();
        let pmds = self
            .pmds
            .iter()
            .map(|p| PmdView {
                index: p.shared.index,
                core: p.shared.core,
                packets: p.shared.counters.get(counters::PACKETS),
                iterations: p.shared.counters.get(counters::ITERATIONS),
                busy_cycles: p.shared.counters.get(counters::BUSY_CYCLES),
                idle_cycles: p.shared.counters.get(counters::IDLE_CYCLES),
                flows: p.shared.counters.get(counters::FLOWS),
            })
            .collect();
        SwitchStats {
            uptime_s: self.started.elapsed().as_secs_f64(),
            packets: sum(counters::PACKETS),
            emc_hits: sum(counters::EMC_HITS),
            megaflow_hits: sum(counters::MEGAFLOW_HITS),
            upcalls: sum(counters::UPCALLS),
            upcall_cycles: sum(counters::UPCALL_CYCLES),
            flows: sum(counters::FLOWS),
            flows_expired: sum(counters::FLOWS_EXPIRED),
            flows_revalidated_out: sum(counters::FLOWS_REVALIDATED_OUT),
            decapsulated: sum(counters::DECAPSULATED),
            encapsulated: sum(counters::ENCAPSULATED),
            icmp_too_big_sent: sum(counters::ICMP_TOO_BIG_SENT),
            neighbour_replies_sent: sum(counters::NEIGH_REPLIES_SENT),
            neighbour_requests_sent: sum(counters::NEIGH_REQUESTS_SENT),
            rules: self.lock_rules().table.len(),
            drops,
            parse_errors,
            ports,
            pmds,
        }
    }

    fn lock_rules(&self) -> std::sync::MutexGuard<'_, RuleState> {
        self.rules.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Every cached megaflow of every PMD.
    ///
    /// # Errors
    /// When a PMD does not answer within 2 s.
    pub fn dump_flows(&self) -> Result<Vec<FlowView>> {
        let mut out = Vec::new();
        for p in &self.pmds {
            let (tx, rx) = bounded(1);
            p.commands.send_timeout(PmdCommand::DumpFlows(tx), Duration::from_secs(2)).context("PMD command queue")?;
            let flows: Vec<FlowInfo> = rx
                .recv_timeout(Duration::from_secs(2))
                .with_context(|| format!("PMD {} did not answer", p.shared.index))?;
            let name = |n: u32| self.port_name(n);
            out.extend(flows.into_iter().map(|f| FlowView {
                id: f.id,
                pmd: f.pmd,
                matcher: ofrule::format_match(&crate::flow::table::Match { key: f.key, mask: f.mask }, &name),
                actions: ofrule::format_actions(&f.actions, &name),
                rule_id: f.rule.map(|r| r.0),
                priority: f.rule.map(|r| r.1),
                packets: f.packets,
                bytes: f.bytes,
                age_ms: f.age_ms,
                idle_ms: f.idle_ms,
                tier: if f.in_emc { "emc" } else { "megaflow" },
                encap: {
                    let mut vni = None;
                    let mut out = Vec::new();
                    for a in f.actions.iter() {
                        match a {
                            crate::actions::Action::SetTunnel(v) => vni = Some(*v),
                            crate::actions::Action::Output(p) if *p as usize >= self.ports.len() => {
                                out.push(self.describe_encap(*p, vni));
                            }
                            _ => {}
                        }
                    }
                    (!out.is_empty()).then(|| out.join("; "))
                },
            }));
        }
        out.sort_by_key(|f| f.id);
        Ok(out)
    }

    /// Rules in priority order.
    pub fn dump_rules(&self) -> Vec<RuleView> {
        let state = self.lock_rules();
        let mut list: Vec<RuleView> = state
            .table
            .rules()
            .map(|r| RuleView {
                id: r.id,
                priority: r.priority,
                text: state.texts.get(&r.id).cloned().unwrap_or_default(),
            })
            .collect();
        list.sort_by_key(|r| (std::cmp::Reverse(r.priority), r.id));
        list
    }

    /// Parses a rule against this switch's ports.
    ///
    /// # Errors
    /// The rule's syntax error.
    pub fn parse_rule(&self, text: &str) -> Result<RuleSpec> {
        let resolve = |n: &str| self.port_number(n);
        Ok(ofrule::parse_rule(text, &resolve)?)
    }

    /// Publishes `state.table` to every PMD and waits until each has
    /// revalidated its flows: after this returns, no packet is forwarded by a
    /// rule that is gone or shadowed.
    fn publish(&self, state: &mut RuleState) -> Result<RevalidateReport> {
        state.generation += 1;
        let table = Arc::new(state.table.clone());
        let mut total = RevalidateReport::default();
        let mut waits = Vec::new();
        for p in &self.pmds {
            let (tx, rx) = bounded(1);
            p.commands
                .send_timeout(PmdCommand::SetRules { table: Arc::clone(&table), done: tx }, Duration::from_secs(2))
                .context("PMD command queue")?;
            waits.push((p.shared.index, rx));
        }
        for (index, rx) in waits {
            let r = rx
                .recv_timeout(Duration::from_secs(5))
                .with_context(|| format!("PMD {index} did not acknowledge the new rules"))?;
            total.kept += r.kept;
            total.removed += r.removed;
        }
        Ok(total)
    }

    /// Adds a rule; returns its id and the revalidation report.
    ///
    /// # Errors
    /// A syntax error, or a PMD that did not acknowledge.
    pub fn add_rule(&self, text: &str) -> Result<(RuleId, RevalidateReport)> {
        let spec = self.parse_rule(text)?;
        let mut state = self.lock_rules();
        let id = state.table.insert(spec.priority, spec.matcher, spec.actions);
        state.texts.insert(id, text.trim().to_owned());
        let report = self.publish(&mut state)?;
        tracing::info!(rule = id, text = %text.trim(), kept = report.kept, removed = report.removed, "rule added");
        Ok((id, report))
    }

    /// Deletes by id (a number) or by exact match and priority (rule text;
    /// its actions, if any, are ignored). Returns how many were deleted.
    ///
    /// # Errors
    /// A syntax error, nothing matched, or a PMD that did not acknowledge.
    pub fn del_rule(&self, selector: &str) -> Result<(usize, RevalidateReport)> {
        let selector = selector.trim();
        let mut state = self.lock_rules();
        let ids: Vec<RuleId> = if let Ok(id) = selector.parse::<RuleId>() {
            vec![id]
        } else {
            let match_text = selector.split("actions=").next().unwrap_or(selector);
            let resolve = |n: &str| self.port_number(n);
            let (priority, m) = ofrule::parse_match(match_text, &resolve)?;
            state.table.rules().filter(|r| r.priority == priority && r.matcher == m).map(|r| r.id).collect()
        };
        let mut deleted = 0;
        for id in ids {
            if state.table.remove(id).is_some() {
                state.texts.remove(&id);
                deleted += 1;
            }
        }
        if deleted == 0 {
            bail!("no rule matches {selector:?} (dump-rules lists ids; a text selector needs the same match and priority)");
        }
        let report = self.publish(&mut state)?;
        tracing::info!(selector, deleted, kept = report.kept, removed = report.removed, "rules deleted");
        Ok((deleted, report))
    }

    /// Replaces every rule (reload).
    ///
    /// # Errors
    /// A PMD that did not acknowledge.
    pub fn replace_rules(&self, rules: &[crate::config::ConfiguredRule]) -> Result<RevalidateReport> {
        let mut state = self.lock_rules();
        let mut table = RuleTable::new();
        let mut texts = BTreeMap::new();
        for r in rules {
            let id = table.insert(r.spec.priority, r.spec.matcher, r.spec.actions.clone());
            texts.insert(id, r.text.clone());
        }
        state.table = table;
        state.texts = texts;
        self.publish(&mut state)
    }

    /// Stops the PMDs (they flush their tx buffers), then releases the ports.
    pub fn shutdown(mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        for p in &mut self.pmds {
            if let Some(t) = p.thread.take() {
                if t.join().is_err() {
                    tracing::error!(pmd = p.shared.index, "PMD thread panicked");
                }
            }
        }
        for p in &self.ports {
            if let Err(e) = p.port.stop() {
                tracing::warn!(port = %p.spec.name, "stopping: {e}");
            }
        }
        tracing::info!("switch stopped");
    }

    /// Whether every PMD thread is still running.
    pub fn pmds_alive(&self) -> bool {
        self.pmds.iter().all(|p| p.thread.as_ref().is_some_and(|t| !t.is_finished()))
    }
}

impl Drop for Switch {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        for p in &mut self.pmds {
            if let Some(t) = p.thread.take() {
                let _ = t.join();
            }
        }
    }
}

fn parse_prefix(text: &str) -> Result<(IpAddr, u8)> {
    let (a, l) = text.split_once('/').with_context(|| format!("{text:?}: expected ADDRESS/LEN"))?;
    let addr: IpAddr = a.parse().with_context(|| format!("{a:?} is not an IP address"))?;
    let len: u8 = l.parse().with_context(|| format!("{l:?} is not a prefix length"))?;
    if len > if addr.is_ipv4() { 32 } else { 128 } {
        bail!("prefix length {len} is too long for {addr}");
    }
    Ok((addr, len))
}

/// The underlay tables from the configuration and the opened ports (for
/// the uplinks' MAC addresses).
fn build_underlay(config: &Config, ports: &[SwitchPort]) -> Result<Underlay> {
    let mut t = Tables::default();
    let phys = ports.len() as u32;
    for (i, spec) in config.tunnels.iter().enumerate() {
        t.tunnels.push(Tunnel {
            name: spec.name.clone(),
            number: phys + i as u32,
            remote: spec.remote,
            vni: spec.vni,
            local: spec.local,
            udp_port: spec.udp_port,
        });
    }
    for p in ports {
        if p.spec.role != Role::Uplink {
            continue;
        }
        for &(ip, len) in &p.spec.ip {
            let mac = p.port.mac().with_context(|| format!("port {:?}: reading its MAC address", p.spec.name))?;
            t.locals.push(LocalAddress { ip, len, port: p.number, mac, mtu: p.spec.mtu });
            let prefix = match ip {
                IpAddr::V4(v4) => {
                    let m = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) };
                    IpAddr::V4((u32::from(v4) & m).into())
                }
                IpAddr::V6(v6) => {
                    let m = if len == 0 { 0 } else { u128::MAX << (128 - u32::from(len)) };
                    IpAddr::V6((u128::from(v6) & m).into())
                }
            };
            t.routes.push(Route { prefix, len, via: None, port: p.number, connected: true });
        }
    }
    for r in &config.routes {
        t.routes.push(Route { prefix: r.prefix, len: r.len, via: r.via, port: r.port, connected: false });
    }
    for n in &config.neighbours {
        t.neighbours.insert(n.ip, Neighbour { mac: n.mac, port: n.port, is_static: true });
    }
    Ok(Underlay::new(t))
}
