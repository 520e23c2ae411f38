//! The switch assembled: [`Switch`] owns the ports, the PMD threads, the
//! rule table, the underlay tables and the offload manager; [`Switch::start`]
//! builds them from a [`Config`], [`Switch::shutdown`] takes them down. Its
//! operations live beside this file by topic.

use super::queues::{PmdLink, Queues};
use super::rule_state::RuleState;
use super::views::SwitchStats;
use crate::config::Config;
use crate::datapath::flows::EventBatch;
use crate::datapath::pmd::{self, PmdCommand, PmdSetup, PmdShared};
use crate::datapath::{counters, ports, PmdConfig, SwitchError, SwitchPort};
use crate::dpdk::{Eal, Mempool};
use crate::offload_manager::{self, Offload};
use crate::underlay::Underlay;
use crossbeam_channel::{bounded, Sender};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub(super) struct PmdHandle {
    pub(super) shared: Arc<PmdShared>,
    pub(super) commands: Sender<PmdCommand>,
    pub(super) thread: Option<JoinHandle<()>>,
}

/// What a shutdown leaves: the final counters, and with offload the rules
/// destroyed and the rules left in the model e-switch.
pub struct ShutdownReport {
    pub stats: SwitchStats,
    pub offload: Option<(usize, usize)>,
}

/// The running switch.
pub struct Switch {
    pub(super) config: Config,
    pub(super) ports: Vec<SwitchPort>,
    pub(super) pmds: Vec<PmdHandle>,
    pub(super) stop: Arc<AtomicBool>,
    pub(super) rules: Mutex<RuleState>,
    pub(super) underlay: Arc<Underlay>,
    pub(super) offload: Option<Offload>,
    /// Which PMD polls which receive queue.
    pub(super) queues: Arc<Queues>,
    pub(super) balancer: Option<Balancer>,
    pub(super) started: Instant,
    /// The PMDs' packet-in queues, until the OpenFlow channel takes them.
    pub(super) packet_ins: Mutex<Vec<crossbeam_channel::Receiver<crate::datapath::punt::PacketIn>>>,
    pub(super) _pool: Arc<Mempool>,
    pub(super) _eal: Eal,
}

impl Switch {
    /// Opens every port on the initialised EAL, installs the configured rules
    /// and starts the PMDs. `pcaps` maps port index to a generated traffic
    /// file (for `{pcap}`); `events` receives flow life-cycle events (when
    /// offload is off: with offload on, the offload manager receives them).
    ///
    /// # Errors
    /// Any DPDK or thread failure, with the port or step named.
    pub fn start(
        eal: &Eal,
        config: Config,
        pcaps: &BTreeMap<usize, Vec<std::path::PathBuf>>,
        events: Option<Sender<EventBatch>>,
    ) -> Result<Self, SwitchError> {
        let eal = eal.clone();
        let pool = Arc::new(ports::create_pool(&eal, &config)?);
        let npmd = config.pmd_cores.len();
        let opened = ports::open(&eal, &config, pcaps, &pool, npmd)?;
        let underlay = Arc::new(ports::build_underlay(&config, &opened.ports)?);
        let prepared = if config.offload.enabled {
            Some(
                offload_manager::prepare(&config.offload, &opened.ports, npmd)
                    .map_err(|e| SwitchError::Invalid(e.to_string()))?,
            )
        } else {
            None
        };
        let events = prepared.as_ref().map(|p| p.events_tx.clone()).or(events);
        let mut state = RuleState::new(&config.rules, config.prefix_checks);
        let (table, at) = state.snapshot();
        state.published(Arc::clone(&table), at);
        let stop = Arc::new(AtomicBool::new(false));
        let pmd_config = pmd_config(&config);
        let mtus: Vec<u16> = config.ports.iter().map(|p| p.mtu).collect();
        let affinity: Vec<Vec<(u16, usize)>> = config.ports.iter().map(|p| p.rxq_affinity.clone()).collect();
        let (per_pmd, initial) = Queues::assign_initial(config.queues, &config.pmd_cores, opened.rx, &affinity);
        let mut pmds = Vec::new();
        let (punts, packet_ins) = crate::datapath::punt::queues(config.pmd_cores.len(), config.openflow.punt_limits());
        for (index, ((rxqs, txqs), punt)) in per_pmd.into_iter().zip(opened.tx).zip(punts).enumerate() {
            let polled: Vec<String> =
                rxqs.iter().map(|q| format!("{}:{}", config.ports[q.port as usize].name, q.queue)).collect();
            let core = config.pmd_cores[index];
            let shared = Arc::new(PmdShared {
                index,
                core,
                counters: counters::Shared::new(opened.ports.len() + config.tunnels.len()),
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
                hit_reports: prepared.is_none(),
                underlay: Arc::clone(&underlay),
                uplink: config.ports.iter().map(|p| p.role == crate::config::Role::Uplink).collect(),
                tunnels: config.tunnels.len(),
                hardware: prepared.as_ref().and_then(|p| p.hardware_stage()),
                hot: prepared.as_ref().and_then(|p| p.hot),
                punt,
            };
            tracing::info!(pmd = index, core, queues = %polled.join(" "), "receive queues assigned");
            let thread = std::thread::Builder::new()
                .name(format!("pmd{index}"))
                .spawn(move || pmd::run(setup))
                .map_err(|cause| SwitchError::Thread { what: "spawning a PMD thread", cause })?;
            pmds.push(PmdHandle { shared, commands: cmd_tx, thread: Some(thread) });
        }
        let (queues, balancer) = start_balancer(&config, &pmds, initial)?;
        let offload = match prepared {
            Some(p) => {
                let senders = pmds.iter().map(|p| p.commands.clone()).collect();
                let o = Offload::start(&config.offload, p, Arc::clone(&underlay), senders, config.idle_timeout)
                    .map_err(|e| SwitchError::Invalid(e.to_string()))?;
                Some(o)
            }
            None => None,
        };
        Ok(Self {
            config,
            ports: opened.ports,
            pmds,
            stop,
            rules: Mutex::new(state),
            underlay,
            offload,
            queues,
            balancer: Some(balancer),
            started: Instant::now(),
            packet_ins: Mutex::new(packet_ins),
            _pool: pool,
            _eal: eal,
        })
    }

    /// The PMDs' packet-in queues (once: the OpenFlow channel reads them).
    pub fn take_packet_ins(&self) -> Vec<crossbeam_channel::Receiver<crate::datapath::punt::PacketIn>> {
        std::mem::take(&mut *self.packet_ins.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// The configuration it runs.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The opened ports.
    pub fn ports(&self) -> &[SwitchPort] {
        &self.ports
    }

    /// Port name by number, tunnels included ("?N" if unknown).
    pub fn port_name(&self, n: u32) -> String {
        let n = n as usize;
        match self.ports.get(n) {
            Some(p) => p.spec.name.clone(),
            None => self.config.tunnels.get(n - self.ports.len()).map_or_else(|| format!("?{n}"), |t| t.name.clone()),
        }
    }

    /// Port number by name (or number), tunnels included.
    pub fn port_number(&self, name: &str) -> Option<u32> {
        self.config.port_number(name).or_else(|| {
            name.parse::<u32>().ok().filter(|&n| (n as usize) < self.ports.len() + self.config.tunnels.len())
        })
    }

    /// The underlay tables (routes, neighbours, tunnels).
    pub fn underlay(&self) -> &Underlay {
        &self.underlay
    }

    /// The offload side, when offload is on.
    pub fn offload(&self) -> Option<&Offload> {
        self.offload.as_ref()
    }

    /// Destroys every hardware rule, stops the PMDs (they flush their tx
    /// buffers and publish their last counters), reads the final counters,
    /// then releases the ports.
    pub fn shutdown(mut self) -> ShutdownReport {
        let offload = self.offload.as_mut().map(|o| {
            let destroyed = o.stop().unwrap_or(0);
            (destroyed, o.in_path.as_ref().map_or(0, |m| m.rules()))
        });
        self.stop_pmds();
        let stats = self.stats();
        for p in &self.ports {
            if let Err(e) = p.port.stop() {
                tracing::warn!(port = %p.spec.name, "stopping: {e}");
            }
        }
        tracing::info!("switch stopped");
        ShutdownReport { stats, offload }
    }

    fn stop_pmds(&mut self) {
        if let Some((stop, clock)) = self.balancer.take() {
            drop(stop);
            let _ = clock.join();
        }
        self.stop.store(true, Ordering::SeqCst);
        for p in &mut self.pmds {
            if let Some(t) = p.thread.take() {
                if t.join().is_err() {
                    tracing::error!(pmd = p.shared.index, "PMD thread panicked");
                }
            }
        }
    }

    /// Whether every PMD thread is still running.
    pub fn pmds_alive(&self) -> bool {
        self.pmds.iter().all(|p| p.thread.as_ref().is_some_and(|t| !t.is_finished()))
    }
}

/// The queue balancer's clock: dropping the sender stops it.
pub(super) type Balancer = (Sender<()>, JoinHandle<()>);

/// The queue assignment's record and its measurement clock.
fn start_balancer(
    config: &Config,
    pmds: &[PmdHandle],
    initial: super::queues::Initial,
) -> Result<(Arc<Queues>, Balancer), SwitchError> {
    let links = pmds
        .iter()
        .map(|p| PmdLink { core: p.shared.core, commands: p.commands.clone(), shared: Arc::clone(&p.shared) })
        .collect();
    let names = config.ports.iter().map(|p| p.name.clone()).collect();
    let queues = Arc::new(Queues::new(config.queues, links, names, initial));
    let (clock_stop, clock_rx) = bounded(1);
    let clock = queues
        .spawn_clock(clock_rx)
        .map_err(|cause| SwitchError::Thread { what: "spawning the queue balancer", cause })?;
    Ok((queues, (clock_stop, clock)))
}

impl Drop for Switch {
    fn drop(&mut self) {
        if let Some(o) = self.offload.as_mut() {
            let _ = o.stop();
        }
        self.stop_pmds();
    }
}

/// The settings every PMD gets.
fn pmd_config(config: &Config) -> PmdConfig {
    PmdConfig {
        upcall_budget: config.upcall_budget,
        emc_entries: config.emc_entries,
        smc_entries: config.smc_entries,
        emc_insert_inv_prob: config.emc_insert_inv_prob,
        max_flows: config.max_flows,
        idle_timeout: config.idle_timeout,
        hw_grace: if config.offload.enabled { config.offload.query_interval * 2 } else { Duration::ZERO },
    }
}
