//! Ethernet device ports: open by devargs or name, configure queues, MTU,
//! start/stop, link, MAC, stats, switch info; per-queue rx/tx handles.

use super::eal::Eal;
use super::error::{strerror, DpdkError};
use super::mbuf::{Burst, Mbuf, Mempool, MAX_BURST};
use std::ffi::{CStr, CString};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

/// `RTE_ETH_DEV_REPRESENTOR` (a macro in rte_ethdev.h).
const ETH_DEV_REPRESENTOR: u32 = 1 << 4;

/// Queue and MTU settings for [`Port::configure`].
#[derive(Debug, Clone)]
pub struct PortConfig {
    pub rx_queues: u16,
    pub tx_queues: u16,
    pub rx_descriptors: u16,
    pub tx_descriptors: u16,
    /// MTU to set; `None` keeps the device default.
    pub mtu: Option<u16>,
    /// With several receive queues: spread flows over them by an RSS hash
    /// of the IPv4/IPv6 addresses and TCP/UDP ports (those of
    /// [`RSS_FLOW_TYPES`] the device hashes on).
    pub rss: bool,
}

/// The flow types the switch asks RSS to hash: IPv4 and IPv6, with the TCP
/// and UDP ports (`RTE_ETH_RSS_*`; the header defines them as macros).
pub const RSS_FLOW_TYPES: u64 = (1 << 2) // IPV4
    | (1 << 3) // FRAG_IPV4
    | (1 << 4) // NONFRAG_IPV4_TCP
    | (1 << 5) // NONFRAG_IPV4_UDP
    | (1 << 7) // NONFRAG_IPV4_OTHER
    | (1 << 8) // IPV6
    | (1 << 9) // FRAG_IPV6
    | (1 << 10) // NONFRAG_IPV6_TCP
    | (1 << 11) // NONFRAG_IPV6_UDP
    | (1 << 13); // NONFRAG_IPV6_OTHER

/// Descriptors per receive and per transmit queue (each can hold an mbuf).
pub const RX_DESCRIPTORS: u16 = 1024;
pub const TX_DESCRIPTORS: u16 = 1024;

impl Default for PortConfig {
    fn default() -> Self {
        Self {
            rx_queues: 1,
            tx_queues: 1,
            rx_descriptors: RX_DESCRIPTORS,
            tx_descriptors: TX_DESCRIPTORS,
            mtu: None,
            rss: true,
        }
    }
}

/// Link state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkStatus {
    pub up: bool,
    pub speed_mbps: u32,
    pub full_duplex: bool,
}

/// Basic counters (`rte_eth_stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortStats {
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_missed: u64,
    pub rx_errors: u64,
    pub tx_errors: u64,
    pub rx_no_mbuf: u64,
}

/// E-switch membership (`rte_eth_dev_info.switch_info`): ports with the same
/// `domain_id` can be joined by transfer rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchInfo {
    pub name: String,
    pub domain_id: u16,
    /// The port's id within the switch (the representor id for representors).
    pub port_id: u16,
    pub rx_domain: u16,
}

/// Device facts from `rte_eth_dev_info_get`.
#[derive(Debug, Clone)]
pub struct PortInfo {
    pub driver: String,
    pub min_mtu: u16,
    pub max_mtu: u16,
    pub max_rx_queues: u16,
    pub max_tx_queues: u16,
    /// The flow types the device's RSS can hash on (`RTE_ETH_RSS_*` bits).
    pub rss_offloads: u64,
    pub is_representor: bool,
    /// `None` when the driver reports no e-switch (virtual devices).
    pub switch: Option<SwitchInfo>,
}

#[derive(Debug, Default)]
struct PortState {
    configured: bool,
    started: bool,
    rx_queues: u16,
    tx_queues: u16,
    rx_taken: Vec<bool>,
    tx_taken: Vec<bool>,
    pools: Vec<Arc<Mempool>>,
}

#[derive(Debug)]
enum Attachment {
    /// Created by us with rte_vdev_init; removed on close.
    Vdev(String),
    /// Probed by us with rte_eal_hotplug_add("pci", ...); removed on close.
    Pci(String),
    /// Already present (EAL args or another port's probe); only closed.
    Existing,
}

#[derive(Debug)]
struct PortInner {
    id: u16,
    name: String,
    attachment: Attachment,
    state: Mutex<PortState>,
    /// A representor keeps its device's own port (which detaches the device)
    /// until it is closed.
    _parent: Option<Port>,
    _eal: Eal,
}

/// An ethdev port. Clones share it; it is stopped, closed and detached when the
/// last handle (including its queues) is dropped.
#[derive(Debug, Clone)]
pub struct Port {
    inner: Arc<PortInner>,
}

/// Live port handles by port id, so that opening or looking up a port twice
/// shares one owner (and one stop/close) instead of creating a second one.
static OPEN_PORTS: Mutex<Vec<(u16, Weak<PortInner>)>> = Mutex::new(Vec::new());

fn is_pci_address(name: &str) -> bool {
    // [dddd:]bb:dd.f
    let bytes = name.as_bytes();
    let tail = match bytes.len() {
        7 => bytes,
        12 if bytes[4] == b':' && bytes[..4].iter().all(u8::is_ascii_hexdigit) => &bytes[5..],
        _ => return false,
    };
    tail[2] == b':'
        && tail[5] == b'.'
        && tail[..2].iter().chain(&tail[3..5]).all(u8::is_ascii_hexdigit)
        && (b'0'..=b'7').contains(&tail[6])
}

/// Every ethdev port: (id, name).
fn all_ports() -> Vec<(u16, String)> {
    let mut out = Vec::new();
    // SAFETY: plain iteration over the port table by id.
    let mut id = unsafe { dpdk_sys::rte_eth_find_next(0) };
    while usize::from(id) < dpdk_sys::RTE_MAX_ETHPORTS as usize {
        let mut buf = [0 as std::ffi::c_char; dpdk_sys::RTE_ETH_NAME_MAX_LEN as usize];
        // SAFETY: valid port id; the buffer holds RTE_ETH_NAME_MAX_LEN bytes.
        if unsafe { dpdk_sys::rte_eth_dev_get_name_by_port(id, buf.as_mut_ptr()) } == 0 {
            // SAFETY: DPDK wrote a NUL-terminated name into buf.
            out.push((id, unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned()));
        }
        // SAFETY: as above.
        id = unsafe { dpdk_sys::rte_eth_find_next(id + 1) };
    }
    out
}

fn port_id_by_name(name: &str) -> Option<u16> {
    let c = CString::new(name).ok()?;
    let mut id = 0u16;
    // SAFETY: c is a valid C string and id a valid out pointer.
    let ret = unsafe { dpdk_sys::rte_eth_dev_get_port_by_name(c.as_ptr(), &mut id) };
    (ret == 0).then_some(id)
}

impl Port {
    /// Attaches a device from devargs, `name[,key=value...]`: a vdev such as
    /// `net_pcap0,rx_pcap=in.pcap` or a PCI address, and returns its port. A
    /// device that already exists (e.g. from `--vdev`) is looked up instead.
    /// For a PCI device, `representor=` naming one VF (`vf[2]`, `vf2`, `[2]`,
    /// `pf0vf2`) opens that representor; none, or several (`vf[0-3]`), opens
    /// the device's own port (on a switchdev NIC, the uplink) and probes the
    /// representors for later `open`s (by devargs or ethdev name).
    ///
    /// # Errors
    /// [`DpdkError::Device`] with DPDK's reason when the probe fails or creates
    /// no port.
    pub fn open(eal: &Eal, devargs: &str) -> Result<Self, DpdkError> {
        let err = |reason: String| DpdkError::Device { devargs: devargs.to_owned(), reason };
        let (name, args) = devargs.split_once(',').unwrap_or((devargs, ""));
        let name = name.trim();
        if name.is_empty() {
            return Err(err("empty device name".into()));
        }
        if args.is_empty() {
            if let Some(id) = port_id_by_name(name) {
                // A representor by its ethdev name keeps its device's port.
                let parent = match name.split_once("_representor_") {
                    Some((pci, _)) if is_pci_address(pci) => match port_id_by_name(pci) {
                        Some(pf) => Some(Self::from_id(eal, pf, pci, Attachment::Existing, None)?),
                        None => None,
                    },
                    _ => None,
                };
                return Self::from_id(eal, id, name, Attachment::Existing, parent);
            }
        }
        let c_name = CString::new(name).map_err(|_| err("name contains a NUL byte".into()))?;
        let c_args = CString::new(args).map_err(|_| err("arguments contain a NUL byte".into()))?;
        let attachment = if is_pci_address(name) {
            let bus = c"pci";
            // SAFETY: all three are valid C strings for the call's duration.
            let ret = unsafe { dpdk_sys::rte_eal_hotplug_add(bus.as_ptr(), c_name.as_ptr(), c_args.as_ptr()) };
            // Probing a device again adds representors (mlx5) or, for a
            // driver that cannot, reports that it exists: both are fine.
            if ret < 0 && ret != -libc::EEXIST {
                return Err(err(format!("PCI probe failed: {}", strerror(ret))));
            }
            if let Some(value) = super::devargs::representor_value(args) {
                if let Some(one) = super::devargs::one_representor(value) {
                    return Self::open_representor(eal, name, &one, devargs);
                }
            }
            Attachment::Pci(name.to_owned())
        } else {
            // SAFETY: valid C strings for the call's duration.
            let ret = unsafe { dpdk_sys::rte_vdev_init(c_name.as_ptr(), c_args.as_ptr()) };
            if ret > 0 {
                return Err(err(format!(
                    "no DPDK driver is named {name:?} (virtual devices are net_ring, net_pcap, net_null, \
                     net_tap, net_af_packet, ...; EAL loads drivers from its driver directory)"
                )));
            }
            if ret < 0 {
                let hint = if ret == -libc::EEXIST {
                    " (a device of that name already exists)"
                } else {
                    " (unknown driver, bad argument, or the device's resources are unavailable; see DPDK's log above)"
                };
                return Err(err(format!("vdev init failed: {}{hint}", strerror(ret))));
            }
            Attachment::Vdev(name.to_owned())
        };
        match port_id_by_name(name) {
            Some(id) => Self::from_id(eal, id, name, attachment, None),
            None => {
                detach(&attachment);
                Err(err("the device was probed but created no ethdev port of that name".into()))
            }
        }
    }

    /// The representor `one` of PCI device `pci` (probed already): it keeps
    /// the device's own port open while it lives.
    fn open_representor(
        eal: &Eal,
        pci: &str,
        one: &super::devargs::OneRepresentor,
        devargs: &str,
    ) -> Result<Self, DpdkError> {
        let err = |reason: String| DpdkError::Device { devargs: devargs.to_owned(), reason };
        let pf_id = port_id_by_name(pci).ok_or_else(|| err(format!("the probe created no port named {pci}")))?;
        let parent = Self::from_id(eal, pf_id, pci, Attachment::Pci(pci.to_owned()), None)?;
        let of_device: Vec<(u16, String)> =
            all_ports().into_iter().filter(|(_, n)| n.starts_with(pci) && n != pci).collect();
        let found: Vec<&(u16, String)> = of_device.iter().filter(|(_, n)| one.matches(pci, n)).collect();
        match found.as_slice() {
            [(id, n)] => Self::from_id(eal, *id, n, Attachment::Existing, Some(parent)),
            [] => {
                let names: Vec<&str> = of_device.iter().map(|(_, n)| n.as_str()).collect();
                Err(err(format!(
                    "no representor {}{} on {pci} (its ports: {}); is the VF created and the NIC in switchdev mode?",
                    one.kind,
                    one.index,
                    if names.is_empty() { "none".to_owned() } else { names.join(", ") }
                )))
            }
            several => {
                let names: Vec<&str> = several.iter().map(|(_, n)| n.as_str()).collect();
                Err(err(format!("several ports match: {}; give the ethdev name instead", names.join(", "))))
            }
        }
    }

    /// Looks up an existing port by its ethdev name.
    ///
    /// # Errors
    /// [`DpdkError::NoSuchPort`].
    pub fn by_name(eal: &Eal, name: &str) -> Result<Self, DpdkError> {
        let id = port_id_by_name(name).ok_or_else(|| DpdkError::NoSuchPort(name.to_owned()))?;
        Self::from_id(eal, id, name, Attachment::Existing, None)
    }

    fn from_id(
        eal: &Eal,
        id: u16,
        name: &str,
        attachment: Attachment,
        parent: Option<Port>,
    ) -> Result<Self, DpdkError> {
        let mut open = OPEN_PORTS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        open.retain(|(_, weak)| weak.strong_count() > 0);
        if let Some(inner) = open.iter().find(|(pid, _)| *pid == id).and_then(|(_, weak)| weak.upgrade()) {
            return Ok(Self { inner });
        }
        let inner = Arc::new(PortInner {
            id,
            name: name.to_owned(),
            attachment,
            state: Mutex::new(PortState::default()),
            _parent: parent,
            _eal: eal.clone(),
        });
        open.push((id, Arc::downgrade(&inner)));
        Ok(Self { inner })
    }

    /// DPDK port id.
    pub fn id(&self) -> u16 {
        self.inner.id
    }

    /// Ethdev name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    fn state(&self) -> MutexGuard<'_, PortState> {
        self.inner.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn fail(&self, op: &'static str, ret: i32) -> DpdkError {
        DpdkError::Port { port: self.inner.name.clone(), op, reason: strerror(ret) }
    }

    fn state_error(&self, what: impl Into<String>) -> DpdkError {
        DpdkError::PortState { port: self.inner.name.clone(), what: what.into() }
    }

    /// Device facts.
    ///
    /// # Errors
    /// [`DpdkError::Port`] if the driver refuses.
    pub fn info(&self) -> Result<PortInfo, DpdkError> {
        let mut info = dpdk_sys::rte_eth_dev_info::default();
        // SAFETY: valid port id and out pointer.
        let ret = unsafe { dpdk_sys::rte_eth_dev_info_get(self.inner.id, &mut info) };
        if ret != 0 {
            return Err(self.fail("rte_eth_dev_info_get", ret));
        }
        let cstr = |p: *const std::ffi::c_char| {
            if p.is_null() {
                String::new()
            } else {
                // SAFETY: non-null NUL-terminated string owned by the driver.
                unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
            }
        };
        let flags = if info.dev_flags.is_null() {
            0
        } else {
            // SAFETY: dev_flags points into the port's rte_eth_dev_data.
            unsafe { *info.dev_flags }
        };
        let sw = &info.switch_info;
        // Drivers without an e-switch leave the domain id at RTE_ETH_DEV_SWITCH_DOMAIN_ID_INVALID.
        let switch = (sw.domain_id != u16::MAX && !sw.name.is_null()).then(|| SwitchInfo {
            name: cstr(sw.name),
            domain_id: sw.domain_id,
            port_id: sw.port_id,
            rx_domain: sw.rx_domain,
        });
        Ok(PortInfo {
            driver: cstr(info.driver_name),
            min_mtu: info.min_mtu,
            max_mtu: info.max_mtu,
            max_rx_queues: info.max_rx_queues,
            max_tx_queues: info.max_tx_queues,
            rss_offloads: info.flow_type_rss_offloads,
            is_representor: flags & ETH_DEV_REPRESENTOR != 0,
            switch,
        })
    }

    /// Configures queues (each rx queue filled from `pool`) and the MTU. The
    /// port must be stopped.
    ///
    /// # Errors
    /// [`DpdkError::PortState`] if started or the counts are out of range,
    /// [`DpdkError::MtuOutOfRange`], or [`DpdkError::Port`] with DPDK's reason.
    pub fn configure(&self, config: &PortConfig, pool: &Arc<Mempool>) -> Result<(), DpdkError> {
        let mut state = self.state();
        if state.started {
            return Err(self.state_error("cannot configure a started port; stop it first"));
        }
        let info = self.info()?;
        if config.rx_queues == 0 || config.tx_queues == 0 {
            return Err(self.state_error("at least one rx and one tx queue are needed"));
        }
        if config.rx_queues > info.max_rx_queues || config.tx_queues > info.max_tx_queues {
            return Err(self.state_error(format!(
                "{} rx / {} tx queues requested, the device has at most {} / {}",
                config.rx_queues, config.tx_queues, info.max_rx_queues, info.max_tx_queues
            )));
        }
        let mut conf = dpdk_sys::rte_eth_conf::default();
        if let Some(mtu) = config.mtu {
            self.check_mtu(&info, mtu)?;
            // Through the configuration, so it also holds for PMDs without an
            // MTU setter (net_ring, net_pcap, net_null).
            conf.rxmode.mtu = u32::from(mtu);
        }
        let rss_hf = RSS_FLOW_TYPES & info.rss_offloads;
        if config.rx_queues > 1 && config.rss && rss_hf != 0 {
            conf.rxmode.mq_mode = dpdk_sys::RTE_ETH_MQ_RX_RSS;
            // No key: the driver's default.
            conf.rx_adv_conf.rss_conf.rss_hf = rss_hf;
        }
        // SAFETY: valid port id; conf is a valid zeroed configuration.
        let ret = unsafe { dpdk_sys::rte_eth_dev_configure(self.inner.id, config.rx_queues, config.tx_queues, &conf) };
        if ret != 0 {
            return Err(self.fail("rte_eth_dev_configure", ret));
        }
        let (mut rxd, mut txd) = (config.rx_descriptors, config.tx_descriptors);
        // SAFETY: valid port id and out pointers.
        let ret = unsafe { dpdk_sys::rte_eth_dev_adjust_nb_rx_tx_desc(self.inner.id, &mut rxd, &mut txd) };
        if ret != 0 {
            return Err(self.fail("rte_eth_dev_adjust_nb_rx_tx_desc", ret));
        }
        // SAFETY: valid port id.
        let socket = unsafe { dpdk_sys::rte_eth_dev_socket_id(self.inner.id) };
        let socket = u32::try_from(socket).unwrap_or(u32::MAX); // SOCKET_ID_ANY
        for q in 0..config.rx_queues {
            // SAFETY: valid port and queue index; NULL conf means driver defaults;
            // the pool outlives the queue (the port keeps an Arc to it).
            let ret = unsafe {
                dpdk_sys::rte_eth_rx_queue_setup(self.inner.id, q, rxd, socket, std::ptr::null(), pool.as_ptr())
            };
            if ret != 0 {
                return Err(self.fail("rte_eth_rx_queue_setup", ret));
            }
        }
        for q in 0..config.tx_queues {
            // SAFETY: valid port and queue index; NULL conf means driver defaults.
            let ret = unsafe { dpdk_sys::rte_eth_tx_queue_setup(self.inner.id, q, txd, socket, std::ptr::null()) };
            if ret != 0 {
                return Err(self.fail("rte_eth_tx_queue_setup", ret));
            }
        }
        state.configured = true;
        state.rx_queues = config.rx_queues;
        state.tx_queues = config.tx_queues;
        state.rx_taken = vec![false; usize::from(config.rx_queues)];
        state.tx_taken = vec![false; usize::from(config.tx_queues)];
        state.pools.push(Arc::clone(pool));
        Ok(())
    }

    fn check_mtu(&self, info: &PortInfo, mtu: u16) -> Result<(), DpdkError> {
        if mtu < info.min_mtu || mtu > info.max_mtu {
            return Err(DpdkError::MtuOutOfRange {
                port: self.inner.name.clone(),
                mtu: u32::from(mtu),
                min: info.min_mtu,
                max: info.max_mtu,
            });
        }
        Ok(())
    }

    /// Sets the MTU at run time, checked against the device's range first.
    /// Some virtual PMDs have no MTU setter: use [`PortConfig::mtu`] for them.
    ///
    /// # Errors
    /// [`DpdkError::MtuOutOfRange`] or [`DpdkError::Port`] (e.g. "Operation
    /// not supported" from such a PMD).
    pub fn set_mtu(&self, mtu: u32) -> Result<(), DpdkError> {
        let info = self.info()?;
        let narrow = u16::try_from(mtu).map_err(|_| DpdkError::MtuOutOfRange {
            port: self.inner.name.clone(),
            mtu,
            min: info.min_mtu,
            max: info.max_mtu,
        })?;
        self.check_mtu(&info, narrow)?;
        // SAFETY: valid port id.
        let ret = unsafe { dpdk_sys::rte_eth_dev_set_mtu(self.inner.id, narrow) };
        if ret != 0 {
            return Err(self.fail("rte_eth_dev_set_mtu", ret));
        }
        Ok(())
    }

    /// Current MTU.
    ///
    /// # Errors
    /// [`DpdkError::Port`].
    pub fn mtu(&self) -> Result<u16, DpdkError> {
        let mut mtu = 0u16;
        // SAFETY: valid port id and out pointer.
        let ret = unsafe { dpdk_sys::rte_eth_dev_get_mtu(self.inner.id, &mut mtu) };
        if ret != 0 {
            return Err(self.fail("rte_eth_dev_get_mtu", ret));
        }
        Ok(mtu)
    }

    /// Starts the port.
    ///
    /// # Errors
    /// [`DpdkError::PortState`] if not configured, or [`DpdkError::Port`].
    pub fn start(&self) -> Result<(), DpdkError> {
        let mut state = self.state();
        if !state.configured {
            return Err(self.state_error("configure the port before starting it"));
        }
        if state.started {
            return Ok(());
        }
        // SAFETY: valid, configured port.
        let ret = unsafe { dpdk_sys::rte_eth_dev_start(self.inner.id) };
        if ret != 0 {
            return Err(self.fail("rte_eth_dev_start", ret));
        }
        state.started = true;
        Ok(())
    }

    /// Stops the port (a NIC drops its flow rules on stop).
    ///
    /// # Errors
    /// [`DpdkError::Port`].
    pub fn stop(&self) -> Result<(), DpdkError> {
        let mut state = self.state();
        if !state.started {
            return Ok(());
        }
        // SAFETY: valid, started port.
        let ret = unsafe { dpdk_sys::rte_eth_dev_stop(self.inner.id) };
        if ret != 0 {
            return Err(self.fail("rte_eth_dev_stop", ret));
        }
        state.started = false;
        Ok(())
    }

    /// Whether the port is started.
    pub fn is_started(&self) -> bool {
        self.state().started
    }

    /// Link state without waiting.
    ///
    /// # Errors
    /// [`DpdkError::Port`].
    pub fn link(&self) -> Result<LinkStatus, DpdkError> {
        let mut link = dpdk_sys::rte_eth_link::default();
        // SAFETY: valid port id and out pointer.
        let ret = unsafe { dpdk_sys::rte_eth_link_get_nowait(self.inner.id, &mut link) };
        if ret != 0 {
            return Err(self.fail("rte_eth_link_get_nowait", ret));
        }
        Ok(LinkStatus {
            up: link.link_status() != 0,
            speed_mbps: link.link_speed,
            full_duplex: link.link_duplex() != 0,
        })
    }

    /// The port's MAC address.
    ///
    /// # Errors
    /// [`DpdkError::Port`].
    pub fn mac(&self) -> Result<[u8; 6], DpdkError> {
        let mut addr = dpdk_sys::rte_ether_addr::default();
        // SAFETY: valid port id and out pointer.
        let ret = unsafe { dpdk_sys::rte_eth_macaddr_get(self.inner.id, &mut addr) };
        if ret != 0 {
            return Err(self.fail("rte_eth_macaddr_get", ret));
        }
        Ok(addr.addr_bytes)
    }

    /// Sets the port's MAC address.
    ///
    /// # Errors
    /// [`DpdkError::Port`] when the driver refuses (or cannot).
    pub fn set_mac(&self, mac: [u8; 6]) -> Result<(), DpdkError> {
        let mut addr = dpdk_sys::rte_ether_addr { addr_bytes: mac };
        // SAFETY: valid port id; addr lives for the call.
        let ret = unsafe { dpdk_sys::rte_eth_dev_default_mac_addr_set(self.inner.id, &mut addr) };
        if ret != 0 {
            return Err(self.fail("rte_eth_dev_default_mac_addr_set", ret));
        }
        Ok(())
    }

    /// The switch's MAC for a port: the configured one, else the device's.
    ///
    /// # Errors
    /// [`DpdkError::Port`] when the device's cannot be read.
    pub fn mac_or(&self, configured: Option<[u8; 6]>) -> Result<[u8; 6], DpdkError> {
        configured.map_or_else(|| self.mac(), Ok)
    }

    /// Basic counters.
    ///
    /// # Errors
    /// [`DpdkError::Port`].
    pub fn stats(&self) -> Result<PortStats, DpdkError> {
        let mut s = dpdk_sys::rte_eth_stats::default();
        // SAFETY: valid port id and out pointer.
        let ret = unsafe { dpdk_sys::rte_eth_stats_get(self.inner.id, &mut s) };
        if ret != 0 {
            return Err(self.fail("rte_eth_stats_get", ret));
        }
        Ok(PortStats {
            rx_packets: s.ipackets,
            tx_packets: s.opackets,
            rx_bytes: s.ibytes,
            tx_bytes: s.obytes,
            rx_missed: s.imissed,
            rx_errors: s.ierrors,
            tx_errors: s.oerrors,
            rx_no_mbuf: s.rx_nombuf,
        })
    }

    /// Resets the basic counters.
    ///
    /// # Errors
    /// [`DpdkError::Port`].
    pub fn reset_stats(&self) -> Result<(), DpdkError> {
        // SAFETY: valid port id.
        let ret = unsafe { dpdk_sys::rte_eth_stats_reset(self.inner.id) };
        if ret != 0 {
            return Err(self.fail("rte_eth_stats_reset", ret));
        }
        Ok(())
    }

    /// Extended counters, by name.
    ///
    /// # Errors
    /// [`DpdkError::Port`].
    pub fn xstats(&self) -> Result<Vec<(String, u64)>, DpdkError> {
        let id = self.inner.id;
        // SAFETY: NULL/0 asks for the count only.
        let n = unsafe { dpdk_sys::rte_eth_xstats_get_names(id, std::ptr::null_mut(), 0) };
        if n < 0 {
            return Err(self.fail("rte_eth_xstats_get_names", n));
        }
        let count = n as usize;
        let mut names = vec![dpdk_sys::rte_eth_xstat_name::default(); count];
        let mut values = vec![dpdk_sys::rte_eth_xstat::default(); count];
        // SAFETY: arrays of `count` elements, sizes passed.
        let got_names = unsafe { dpdk_sys::rte_eth_xstats_get_names(id, names.as_mut_ptr(), n as u32) };
        // SAFETY: as above.
        let got_values = unsafe { dpdk_sys::rte_eth_xstats_get(id, values.as_mut_ptr(), n as u32) };
        if got_names < 0 || got_values < 0 {
            return Err(self.fail("rte_eth_xstats_get", got_names.min(got_values)));
        }
        let valid = (got_names.min(got_values) as usize).min(count);
        Ok(values[..valid]
            .iter()
            .filter_map(|v| {
                let name = names.get(v.id as usize)?;
                // SAFETY: name is a fixed array DPDK NUL-terminates within its size.
                let text = unsafe { CStr::from_ptr(name.name.as_ptr()) }.to_string_lossy().into_owned();
                Some((text, v.value))
            })
            .collect())
    }

    /// Takes the handle for rx queue `queue` (once per queue).
    ///
    /// # Errors
    /// [`DpdkError::PortState`] if not configured, out of range or already taken.
    pub fn rx_queue(&self, queue: u16) -> Result<RxQueue, DpdkError> {
        let mut state = self.state();
        let slot = state
            .rx_taken
            .get_mut(usize::from(queue))
            .ok_or_else(|| self.state_error(format!("no rx queue {queue} (configure the port first)")))?;
        if std::mem::replace(slot, true) {
            return Err(self.state_error(format!("rx queue {queue} is already taken")));
        }
        Ok(RxQueue { port: self.clone(), queue })
    }

    /// Takes the handle for tx queue `queue` (once per queue).
    ///
    /// # Errors
    /// [`DpdkError::PortState`] if not configured, out of range or already taken.
    pub fn tx_queue(&self, queue: u16) -> Result<TxQueue, DpdkError> {
        let mut state = self.state();
        let slot = state
            .tx_taken
            .get_mut(usize::from(queue))
            .ok_or_else(|| self.state_error(format!("no tx queue {queue} (configure the port first)")))?;
        if std::mem::replace(slot, true) {
            return Err(self.state_error(format!("tx queue {queue} is already taken")));
        }
        Ok(TxQueue { port: self.clone(), queue })
    }
}

fn detach(attachment: &Attachment) {
    let (bus, name) = match attachment {
        Attachment::Vdev(name) => ("vdev", name),
        Attachment::Pci(name) => ("pci", name),
        Attachment::Existing => return,
    };
    let Ok(c_name) = CString::new(name.as_str()) else { return };
    if bus == "vdev" {
        // SAFETY: valid C string; the vdev was created by us.
        unsafe { dpdk_sys::rte_vdev_uninit(c_name.as_ptr()) };
    } else {
        // SAFETY: valid C strings; the device was probed by us.
        unsafe { dpdk_sys::rte_eal_hotplug_remove(c"pci".as_ptr(), c_name.as_ptr()) };
    }
}

impl Drop for PortInner {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner);
        if state.started {
            // SAFETY: valid started port; no queue handle exists any more (they
            // hold a reference to us).
            unsafe { dpdk_sys::rte_eth_dev_stop(self.id) };
        }
        // SAFETY: valid port id; closing releases queues and their mbufs.
        unsafe { dpdk_sys::rte_eth_dev_close(self.id) };
        detach(&self.attachment);
    }
}

/// The receive side of one queue. One thread polls it at a time.
#[derive(Debug)]
pub struct RxQueue {
    port: Port,
    queue: u16,
}

impl RxQueue {
    /// The port this queue belongs to.
    pub fn port(&self) -> &Port {
        &self.port
    }

    /// Queue index.
    pub fn queue(&self) -> u16 {
        self.queue
    }

    /// Receives into the free part of `burst`; returns how many arrived.
    #[inline]
    pub fn rx_burst(&mut self, burst: &mut Burst) -> usize {
        self.rx_burst_up_to(burst, MAX_BURST)
    }

    /// Receives at most `max` packets into the free part of `burst`.
    #[inline]
    pub fn rx_burst_up_to(&mut self, burst: &mut Burst, max: usize) -> usize {
        let spare = burst.spare().min(max) as u16;
        if spare == 0 {
            return 0;
        }
        // SAFETY: the queue is set up and exclusively ours (&mut self, taken once);
        // the destination has room for `spare` pointers; received mbufs become
        // owned by the burst.
        let n = unsafe { dpdk_sys::rte_eth_rx_burst(self.port.inner.id, self.queue, burst.spare_ptr(), spare) };
        let n = usize::from(n.min(spare));
        burst.grow(n);
        n
    }

    /// Receives into `slots` directly (at most `slots.len()` packets, into
    /// the first ones); returns how many arrived. The slots must be empty:
    /// one that held an mbuf would have it overwritten, never freed (checked
    /// in debug builds). Saves moving each packet out of a [`Burst`].
    #[inline]
    pub fn rx_into(&mut self, slots: &mut [Option<Mbuf>]) -> usize {
        debug_assert!(slots.iter().all(Option::is_none), "rx_into over mbufs that would leak");
        let max = slots.len().min(usize::from(u16::MAX)) as u16;
        // SAFETY: the queue is set up and exclusively ours (&mut self). Mbuf is
        // repr(transparent) over NonNull<rte_mbuf>, so Option<Mbuf> has the
        // layout of *mut rte_mbuf with None as null (the guaranteed niche):
        // the driver writes at most `max` valid, owned mbuf pointers into the
        // first slots, which become the owners.
        let n = unsafe {
            dpdk_sys::rte_eth_rx_burst(
                self.port.inner.id,
                self.queue,
                slots.as_mut_ptr().cast::<*mut dpdk_sys::rte_mbuf>(),
                max,
            )
        };
        usize::from(n.min(max))
    }
}

/// The transmit side of one queue. One thread uses it at a time.
#[derive(Debug)]
pub struct TxQueue {
    port: Port,
    queue: u16,
}

impl TxQueue {
    /// The port this queue belongs to.
    pub fn port(&self) -> &Port {
        &self.port
    }

    /// Queue index.
    pub fn queue(&self) -> u16 {
        self.queue
    }

    /// Sends from the front of `burst`. The device takes ownership of the sent
    /// mbufs; the unsent ones stay in `burst`, in order. Returns the number sent.
    #[inline]
    pub fn tx_burst(&mut self, burst: &mut Burst) -> usize {
        let len = burst.len() as u16;
        if len == 0 {
            return 0;
        }
        // SAFETY: the queue is set up and exclusively ours; the first `len` slots
        // are owned mbufs; the driver takes the first `n` of them.
        let n = unsafe { dpdk_sys::rte_eth_tx_burst(self.port.inner.id, self.queue, burst.head_ptr(), len) };
        let n = usize::from(n.min(len));
        burst.consume_front(n);
        n
    }
}

#[cfg(test)]
mod tests {
    use super::is_pci_address;

    #[test]
    fn pci_addresses() {
        assert!(is_pci_address("0000:08:00.0"));
        assert!(is_pci_address("08:00.1"));
        assert!(!is_pci_address("net_pcap0"));
        assert!(!is_pci_address("0000:08:00.8"));
        assert!(!is_pci_address("zz:00.0"));
    }
}
