//! Offload in the switch: translating megaflows into `offload` rules
//! ([`translate`]) and the manager thread that decides what goes into the
//! device and keeps the rest in software with a reason ([`manager`]).
//!
//! [`Offload`] is what the running switch holds: the manager's request
//! queue and thread, the views it publishes, and what the device puts in the
//! packet path ([`InPath`]: the model e-switch has that part, a NIC none);
//! the PMDs run it in front of the software path. Devices are made by
//! [`open_device`], the one place that knows the kinds.

pub mod manager;
pub mod translate;

use crate::config::offload::{OffloadConfig, OffloadDevice, Policy};
use crate::config::Role;
use crate::datapath::burst::{Hardware, HotPolicy};
use crate::datapath::flows::EventBatch;
use crate::datapath::pmd::PmdCommand;
use crate::datapath::SwitchPort;
use crate::underlay::Underlay;
use crossbeam_channel::{bounded, Receiver, Sender};
use manager::{Manager, ManagerRequest, ManagerSetup, OffloadShared, OffloadStats, SyncReport};
use offload::device::{FlowDevice, InPath};
use offload::model::{ModelDevice, ModelSwitch};
use offload::rte_flow::device::RteFlowDevice;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use translate::PortFacts;

/// Events waiting for the manager, in batches (one per PMD iteration at most).
const EVENT_QUEUE: usize = 4096;

/// Why offload could not start.
#[derive(Debug, thiserror::Error)]
pub enum OffloadError {
    #[error("offload.device = \"rte_flow\": {0}")]
    Device(offload::device::DeviceError),
    #[error("offload: {0}")]
    Thread(std::io::Error),
}

/// How long a command waits for the offload manager to catch up.
pub const SYNC_TIMEOUT: Duration = Duration::from_secs(10);

/// What the PMDs need before they start.
pub struct Prepared {
    pub events_tx: Sender<EventBatch>,
    events_rx: Receiver<EventBatch>,
    pub in_path: Option<Arc<dyn InPath>>,
    pub hot: Option<HotPolicy>,
    device: Box<dyn FlowDevice + Send>,
    proxy: u16,
    pub facts: Vec<PortFacts>,
}

impl Prepared {
    /// The e-switch stage for a PMD (when the device has a part in the
    /// packet path).
    pub fn hardware_stage(&self) -> Option<Hardware> {
        let eswitch = self.in_path.as_ref()?;
        let ethdev: Vec<u16> = self.facts.iter().map(|p| p.ethdev).collect();
        let max = ethdev.iter().copied().max().unwrap_or(0);
        let mut port_of = vec![None; usize::from(max) + 1];
        for (i, e) in ethdev.iter().enumerate() {
            port_of[usize::from(*e)] = Some(i as u32);
        }
        Some(Hardware { eswitch: Arc::clone(eswitch), ethdev, port_of })
    }
}

/// The facts translation needs about each opened port. A port's e-switch
/// is the one its driver reports, else its `switch_domain`; with the model
/// e-switch, ports with neither are in the model's (domain 0).
pub fn port_facts(ports: &[SwitchPort], device: OffloadDevice) -> Vec<PortFacts> {
    ports
        .iter()
        .map(|p| {
            let info = p.port.info().ok();
            let reported = info.as_ref().and_then(|i| i.switch.as_ref()).map(|s| s.domain_id);
            let default = (device == OffloadDevice::Model).then_some(0);
            let domain = reported.or(p.spec.switch_domain).or(default);
            PortFacts {
                name: p.spec.name.clone(),
                ethdev: p.port.id(),
                role: p.spec.role,
                mtu: p.spec.mtu,
                domain,
                mac: p.port.mac_or(p.spec.mac).unwrap_or_default(),
            }
        })
        .collect()
}

/// The offload device the configuration names, and its transfer proxy: the
/// NIC through rte_flow on the uplink's port, or the model e-switch (whose
/// VFs get the representors' MTUs).
///
/// # Errors
/// When the rte_flow device has no transfer proxy.
fn open_device(
    config: &OffloadConfig,
    facts: &[PortFacts],
    proxy_of: u16,
) -> Result<(Box<dyn FlowDevice + Send>, u16), OffloadError> {
    Ok(match config.device {
        OffloadDevice::Model => {
            let model = Arc::new(ModelSwitch::new(config.model.clone()));
            // Behind each representor is a VF with the port's MTU.
            for p in facts.iter().filter(|p| p.role == Role::Representor) {
                model.set_vf_mtu(p.ethdev, p.mtu);
            }
            (Box::new(ModelDevice::new(model)), proxy_of)
        }
        OffloadDevice::RteFlow => {
            let dev = RteFlowDevice::new(proxy_of).map_err(OffloadError::Device)?;
            let proxy = dev.proxy();
            (Box::new(dev), proxy)
        }
    })
}

/// Opens the device, the event channel and the hot policy of each of
/// `pmds` PMDs: a PMD reports its flows from `min_pps / pmds` on, and the
/// manager sums a megaflow's rates over the PMDs (with receive queues
/// spread over PMDs, one megaflow's packets arrive at several).
///
/// # Errors
/// When the rte_flow device has no transfer proxy.
pub fn prepare(config: &OffloadConfig, ports: &[SwitchPort], pmds: usize) -> Result<Prepared, OffloadError> {
    let facts = port_facts(ports, config.device);
    let uplink = facts.iter().find(|p| p.role == Role::Uplink).or(facts.first());
    let proxy_of = uplink.map_or(0, |p| p.ethdev);
    let (device, proxy) = open_device(config, &facts, proxy_of)?;
    let in_path = device.in_path();
    let (events_tx, events_rx) = bounded(EVENT_QUEUE);
    let hot = (config.policy == Policy::Hot).then_some(HotPolicy {
        min_pps: config.min_pps.div_ceil(pmds.max(1) as u64),
        hot: config.hot,
        repeat: Duration::from_millis(100),
    });
    Ok(Prepared { events_tx, events_rx, in_path, hot, device, proxy, facts })
}

/// The running offload side of the switch.
pub struct Offload {
    requests: Sender<ManagerRequest>,
    thread: Option<JoinHandle<()>>,
    pub shared: Arc<OffloadShared>,
    /// What the device puts in the packet path (the model e-switch).
    pub in_path: Option<Arc<dyn InPath>>,
    pub config: OffloadConfig,
    pub facts: Vec<PortFacts>,
}

impl Offload {
    /// Starts the manager thread.
    ///
    /// # Errors
    /// When the thread cannot start.
    pub fn start(
        config: &OffloadConfig,
        prepared: Prepared,
        underlay: Arc<Underlay>,
        pmds: Vec<Sender<PmdCommand>>,
        idle_timeout: Duration,
    ) -> Result<Self, OffloadError> {
        let shared = Arc::new(OffloadShared::default());
        let (req_tx, req_rx) = bounded(64);
        let manager = Manager::new(ManagerSetup {
            config: config.clone(),
            device: prepared.device,
            proxy: prepared.proxy,
            ports: prepared.facts.clone(),
            underlay,
            events: prepared.events_rx.clone(),
            pmds,
            idle_timeout,
            shared: Arc::clone(&shared),
        });
        let events = prepared.events_rx;
        let thread = std::thread::Builder::new()
            .name("offload".into())
            .spawn(move || manager::run(manager, events, req_rx))
            .map_err(OffloadError::Thread)?;
        Ok(Self {
            requests: req_tx,
            thread: Some(thread),
            shared,
            in_path: prepared.in_path,
            config: config.clone(),
            facts: prepared.facts,
        })
    }

    fn ask<T>(&self, make: impl FnOnce(Sender<T>) -> ManagerRequest, timeout: Duration) -> Option<T> {
        let (tx, rx) = bounded(1);
        self.requests.send_timeout(make(tx), timeout).ok()?;
        rx.recv_timeout(timeout).ok()
    }

    /// Waits until the manager has processed every event sent so far and
    /// the current underlay (replacing the rules it changed); reports what
    /// the underlay changes after generation `since` caused.
    pub fn sync(&self, since: u64) -> Option<SyncReport> {
        self.ask(|done| ManagerRequest::Sync { since, done }, SYNC_TIMEOUT)
    }

    /// The manager's counters as of now (the last published ones when it
    /// does not answer within 2 s).
    pub fn stats(&self) -> OffloadStats {
        self.ask(ManagerRequest::Stats, Duration::from_secs(2)).unwrap_or_else(|| self.shared.stats())
    }

    /// A port is stopping; returns how many rules the device dropped.
    pub fn port_stopping(&self, ethdev: u16) -> Option<usize> {
        self.ask(|done| ManagerRequest::PortStopping { ethdev, done }, Duration::from_secs(10))
    }

    /// The port is up again; returns how many rules were installed again.
    pub fn port_started(&self, ethdev: u16) -> Option<usize> {
        self.ask(|done| ManagerRequest::PortStarted { ethdev, done }, Duration::from_secs(30))
    }

    /// Destroys every rule and stops the manager; returns how many rules.
    pub fn stop(&mut self) -> Option<usize> {
        let n = self.ask(ManagerRequest::Stop, Duration::from_secs(30));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        n
    }
}

impl Drop for Offload {
    fn drop(&mut self) {
        if self.thread.is_some() {
            let _ = self.stop();
        }
    }
}
