//! Opening the configured ports: the mbuf pool, queues shared out to the
//! PMDs, and the underlay tables the uplinks' addresses start.

use super::rxq::PolledQueue;
use super::tx::TxHandle;
use super::SwitchError;
use crate::config::{Config, PortSpec, Role};
use crate::dpdk::{Eal, Mempool, Port, PortConfig, PortInfo, TxQueue};
use crate::underlay::{LocalAddress, NeighSource, Neighbour, Route, RouteSource, Tables, Tunnel, Underlay};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

/// A port as the switch holds it.
pub struct SwitchPort {
    pub number: u32,
    pub spec: PortSpec,
    pub port: Port,
    /// A net_af_packet port: its interface and the kernel's ring drops
    /// read so far (the kernel resets them on each read).
    pub af_packet: Option<KernelDrops>,
}

/// The drops of the kernel side of a net_af_packet port.
pub struct KernelDrops {
    pub ifindex: u32,
    total: Mutex<u64>,
}

impl KernelDrops {
    fn for_port(driver: &str, devargs: &str) -> Option<Self> {
        if !driver.contains("af_packet") {
            return None;
        }
        let iface = devargs.split(',').find_map(|a| a.trim().strip_prefix("iface="))?;
        Some(Self { ifindex: crate::dpdk::os::ifindex(iface)?, total: Mutex::new(0) })
    }

    /// Drops so far (reads the kernel's count and adds it).
    pub fn read(&self) -> u64 {
        let mut total = self.total.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *total += crate::dpdk::os::packet_socket_drops(self.ifindex).unwrap_or(0);
        *total
    }
}

/// The ports with their queues.
pub(crate) struct Opened {
    pub ports: Vec<SwitchPort>,
    /// Every receive queue, in port and queue order.
    pub rx: Vec<PolledQueue>,
    /// Per PMD: one tx handle per port.
    pub tx: Vec<Vec<TxHandle>>,
}

/// The mbuf pool: headroom plus the largest configured frame per buffer.
pub(crate) fn create_pool(eal: &Eal, config: &Config) -> Result<Mempool, SwitchError> {
    static POOLS: AtomicU32 = AtomicU32::new(0);
    let name = format!("vsw_mbufs{}", POOLS.fetch_add(1, Ordering::Relaxed));
    let data_room = crate::config::mbufs::data_room(&config.ports);
    Mempool::new(eal, &name, config.mbufs, crate::config::mbufs::POOL_CACHE as u32, data_room).map_err(
        SwitchError::dpdk(format!(
            "creating a pool of {} mbufs (raise -m in [eal] args, or lower datapath.mbufs)",
            config.mbufs
        )),
    )
}

/// Opens, configures and starts every port, uplinks first (on a switchdev
/// NIC the uplink is the device's own port, which probes the representors
/// and should be up before them), each with its receive queues (RSS over
/// them when there are several); each PMD gets a tx queue of every port
/// (its own when the device has enough, else shared under a lock). The
/// receive queues go to PMDs later (`switch::queues`).
pub(crate) fn open(
    eal: &Eal,
    config: &Config,
    pcaps: &BTreeMap<usize, Vec<std::path::PathBuf>>,
    pool: &Arc<Mempool>,
    npmd: usize,
) -> Result<Opened, SwitchError> {
    let mut order: Vec<usize> = (0..config.ports.len()).collect();
    order.sort_by_key(|&i| config.ports[i].role != Role::Uplink);
    let mut up: Vec<Option<(Port, u16, u16)>> = (0..config.ports.len()).map(|_| None).collect();
    for i in order {
        let spec = &config.ports[i];
        let devargs = match pcaps.get(&i) {
            Some(files) => pcap_devargs(&spec.devargs, files),
            None => spec.devargs.clone(),
        };
        let what = |step: &str| format!("port {:?}: {step}", spec.name);
        let port = Port::open(eal, &devargs).map_err(SwitchError::dpdk(what(&format!("opening {devargs:?}"))))?;
        let info = port.info().map_err(SwitchError::dpdk(what("device info")))?;
        check_role(spec, &port, &info)?;
        let txq = npmd.min(usize::from(info.max_tx_queues.max(1))) as u16;
        let rxq = rx_queue_count(spec, &info, npmd);
        let pc = PortConfig { rx_queues: rxq, tx_queues: txq, mtu: Some(spec.mtu), ..PortConfig::default() };
        port.configure(&pc, pool).map_err(SwitchError::dpdk(what("configuring")))?;
        if rxq > 1 {
            let hashed = crate::dpdk::RSS_FLOW_TYPES & info.rss_offloads;
            if hashed == 0 {
                tracing::info!(port = %spec.name, queues = rxq, driver = %info.driver, "no RSS on this device: each queue receives what the device puts on it");
            } else {
                tracing::info!(port = %spec.name, queues = rxq, rss_hf = format_args!("{hashed:#x}"), "RSS over the receive queues");
            }
        }
        port.start().map_err(SwitchError::dpdk(what("starting")))?;
        if let Some(mac) = spec.mac {
            // The switch uses the configured MAC either way; a device that
            // refuses it receives frames for it only in promiscuous mode
            // (virtual devices deliver every frame).
            if let Err(e) = port.set_mac(mac) {
                tracing::warn!(port = %spec.name, mac = %crate::ofrule::format_mac(&mac), "the device keeps its own MAC: {e}");
            }
        }
        tracing::info!(port = %spec.name, number = i, ethdev = port.id(), name = port.name(), role = spec.role.as_str(), driver = %info.driver, mtu = spec.mtu, "port up");
        up[i] = Some((port, txq, rxq));
    }
    let mut ports = Vec::new();
    let mut rx = Vec::new();
    let mut tx: Vec<Vec<TxHandle>> = (0..npmd).map(|_| Vec::new()).collect();
    for (i, (spec, opened)) in config.ports.iter().zip(up).enumerate() {
        let what = |step: &str| format!("port {:?}: {step}", spec.name);
        let (port, txq, rxq) = opened.ok_or_else(|| SwitchError::Invalid(what("was not opened")))?;
        for q in 0..rxq {
            rx.push(PolledQueue::new(i as u32, port.rx_queue(q).map_err(SwitchError::dpdk(what("rx queue")))?));
        }
        if usize::from(txq) >= npmd {
            for (p, list) in tx.iter_mut().enumerate() {
                list.push(TxHandle::Owned(port.tx_queue(p as u16).map_err(SwitchError::dpdk(what("tx queue")))?));
            }
        } else {
            tracing::info!(port = %spec.name, queues = txq, pmds = npmd, "fewer tx queues than PMDs: the PMDs share them under a lock");
            let shared: Vec<Arc<Mutex<TxQueue>>> = (0..txq)
                .map(|q| port.tx_queue(q).map(|t| Arc::new(Mutex::new(t))))
                .collect::<Result<_, _>>()
                .map_err(SwitchError::dpdk(what("tx queue")))?;
            for (p, list) in tx.iter_mut().enumerate() {
                list.push(TxHandle::Shared(Arc::clone(&shared[p % shared.len()])));
            }
        }
        let driver = port.info().map(|i| i.driver).unwrap_or_default();
        let af_packet = KernelDrops::for_port(&driver, &spec.devargs);
        ports.push(SwitchPort { number: i as u32, spec: spec.clone(), port, af_packet });
    }
    Ok(Opened { ports, rx, tx })
}

/// The receive queues a port gets: as configured, at most what the device
/// has (net_pcap: one per `rx_pcap`).
fn rx_queue_count(spec: &PortSpec, info: &PortInfo, npmd: usize) -> u16 {
    let want = spec.rx_queues.count(npmd);
    let max = info.max_rx_queues.max(1);
    if want > max {
        tracing::warn!(port = %spec.name, asked = want, device_max = max, driver = %info.driver, "the device has fewer receive queues than configured; using all it has");
    }
    want.min(max)
}

/// Devargs with the generated traffic files in: `rx_pcap={pcap}` becomes
/// one `rx_pcap=` per file (a receive queue each), any other `{pcap}` the
/// first file.
pub fn pcap_devargs(devargs: &str, files: &[std::path::PathBuf]) -> String {
    let first = files.first().map(|p| p.display().to_string()).unwrap_or_default();
    let all: Vec<String> = files.iter().map(|p| format!("rx_pcap={}", p.display())).collect();
    devargs
        .split(',')
        .map(
            |a| {
                if a.trim() == "rx_pcap={pcap}" && !all.is_empty() {
                    all.join(",")
                } else {
                    a.replace("{pcap}", &first)
                }
            },
        )
        .collect::<Vec<_>>()
        .join(",")
}

/// On a NIC with an e-switch, a representor port must be a representor and
/// an uplink must not (devargs that open the wrong ethdev are caught here,
/// not by traffic going astray). Virtual devices play either role.
fn check_role(spec: &PortSpec, port: &Port, info: &PortInfo) -> Result<(), SwitchError> {
    if info.switch.is_none() {
        return Ok(());
    }
    let wrong = match (spec.role, info.is_representor) {
        (Role::Representor, false) => Some(
            "is the device's own port, not a representor: name one VF (PCI,representor=vf[N]) or the \
             representor's ethdev name (e.g. PCI_representor_vfN)",
        ),
        (Role::Uplink, true) => Some("is a representor; an uplink is the device's own port (its PCI address)"),
        _ => None,
    };
    match wrong {
        Some(why) => Err(SwitchError::Invalid(format!(
            "port {:?}: devargs {:?} opened ethdev {} ({}), which {why}",
            spec.name,
            spec.devargs,
            port.id(),
            port.name()
        ))),
        None => Ok(()),
    }
}

/// The underlay tables from the configuration and the opened ports (for
/// the uplinks' MAC addresses).
pub(crate) fn build_underlay(config: &Config, ports: &[SwitchPort]) -> Result<Underlay, SwitchError> {
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
    for p in ports.iter().filter(|p| p.spec.role == Role::Uplink) {
        for ip in &p.spec.ip {
            let mac = p
                .port
                .mac_or(p.spec.mac)
                .map_err(SwitchError::dpdk(format!("port {:?}: reading its MAC", p.spec.name)))?;
            t.locals.push(LocalAddress { ip: ip.addr, len: ip.len, port: p.number, mac, mtu: p.spec.mtu });
            t.routes.push(Route {
                prefix: ip.network(),
                via: None,
                port: p.number,
                source: RouteSource::Connected,
                metric: 0,
            });
        }
    }
    for r in &config.routes {
        t.routes.push(Route { prefix: r.prefix, via: r.via, port: r.port, source: RouteSource::Config, metric: 0 });
    }
    for n in &config.neighbours {
        t.neighbours.insert(n.ip, Neighbour { mac: n.mac, port: n.port, source: NeighSource::Config });
    }
    Ok(Underlay::new(t))
}
