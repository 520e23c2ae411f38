//! The manager's state and what it publishes: flow records and their
//! states and reasons, the installed rules, the rate budget, the views and
//! statistics the switch reads.

use crate::actions::Action;
use crate::config::offload::OffloadConfig;
use crate::datapath::flows::EventBatch;
use crate::datapath::pmd::PmdCommand;
use crate::offload_manager::translate::{PortFacts, Refusal};
use crate::packet::{FlowKey, FlowMask};
use crate::underlay::Underlay;
use crossbeam_channel::{Receiver, Sender};
use offload::device::{DeviceError, ErrorKind, FlowDevice, HitCounts, RuleHandle};
use offload::rule::HwRule;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
/// Where a flow is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// In software; not (yet) hot.
    Software,
    /// To be installed (after a port restart, or the rate limit).
    Pending,
    /// Installed in the device.
    Hardware,
    /// Kept in software for a reason.
    Refused(Reason),
    /// Was in hardware, made room for a hotter flow.
    Evicted,
}

/// Why a flow is not in hardware.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    Translate(Refusal),
    Device(DeviceError),
    /// The table is full and the flow is not hot enough to evict another.
    NoSpace(String),
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Translate(r) => write!(f, "{r}"),
            Reason::Device(e) if e.kind == ErrorKind::NoSpace => write!(f, "no space: {}", e.message),
            Reason::Device(e) => write!(f, "device: {}", e.message),
            Reason::NoSpace(s) => write!(f, "no space: {s}"),
        }
    }
}

impl Reason {
    /// Short name for counters.
    pub fn kind(&self) -> String {
        match self {
            Reason::Translate(r) => r.kind().to_owned(),
            Reason::Device(e) if e.kind == ErrorKind::NoSpace => "no_space".into(),
            Reason::Device(e) => format!("device_{}", e.kind),
            Reason::NoSpace(_) => "no_space".into(),
        }
    }
}

impl State {
    /// As dump-flows shows it: `hw`, `pending`, `sw(<reason>)`.
    pub fn text(&self) -> String {
        match self {
            State::Software => "sw".into(),
            State::Pending => "pending".into(),
            State::Hardware => "hw".into(),
            State::Refused(r) => format!("sw({r})"),
            State::Evicted => "sw(evicted by a hotter flow)".into(),
        }
    }

    pub(super) fn name(&self) -> &'static str {
        match self {
            State::Software => "software",
            State::Pending => "pending",
            State::Hardware => "hardware",
            State::Refused(_) => "refused",
            State::Evicted => "evicted",
        }
    }
}

/// What the control side sees of a flow.
#[derive(Debug, Clone, Serialize)]
pub struct FlowOffload {
    pub state: String,
    pub hw_packets: u64,
    pub hw_bytes: u64,
    /// Its hardware rule, and where it lives (for the testpmd text).
    #[serde(skip)]
    pub rule: Option<Arc<HwRule>>,
    #[serde(skip)]
    pub proxy: u16,
    #[serde(skip)]
    pub group: u32,
}

impl FlowOffload {
    /// testpmd commands of its hardware rule (none in software).
    pub fn testpmd(&self) -> Vec<String> {
        self.rule.as_deref().map(|r| offload::testpmd::commands(r, self.proxy, self.group)).unwrap_or_default()
    }
}

/// Counters of the manager (`vswitchctl offload-show`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct OffloadStats {
    pub device: String,
    pub policy: String,
    pub max_rules: usize,
    /// Rules in the device (flows and jump rules).
    pub rules_in_device: usize,
    pub flow_rules: usize,
    pub flows_by_state: BTreeMap<String, u64>,
    pub refusals_by_reason: BTreeMap<String, u64>,
    pub failures_by_device_error: BTreeMap<String, u64>,
    pub inserts: u64,
    pub deletes: u64,
    pub replacements: u64,
    pub unchanged_on_underlay_change: u64,
    pub evictions: u64,
    /// Flows that took the rule another PMD's flow of the same megaflow
    /// had installed (no rule of their own).
    pub shared_rules: u64,
    pub reinstalled: u64,
    pub rate_limited: u64,
    pub events: u64,
    pub aged: u64,
    /// Flow install (in software) to its first rule active, over the last
    /// samples (a flow offloaded again after an eviction is not counted twice).
    pub install_to_active_ms_p50: f64,
    pub install_to_active_ms_p99: f64,
    pub install_to_active_samples: usize,
    /// Flows that got their first rule only after waiting for room (hotter
    /// flows held the table): left out of the hot and rate latencies.
    pub waited_for_room: u64,
    /// First "hot" report to rule active: the manager's own reaction time.
    pub hot_to_active_ms_p50: f64,
    pub hot_to_active_ms_p99: f64,
    /// From the moment the flow began keeping `min_pps` to rule active: the
    /// hot time, detection and the manager (for a flow hot from its first
    /// packet this is its install-to-active time).
    pub rate_to_active_ms_p50: f64,
    pub rate_to_active_ms_p99: f64,
    pub hw_packets: u64,
    pub hw_bytes: u64,
    /// Hardware counts by switch port number (as of the last query): where
    /// the e-switch took packets in and sent them out, tunnel ports included.
    pub hw_by_port: BTreeMap<u32, PortHits>,
}

/// One port's share of the hardware counters.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct PortHits {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
}

/// Shared with the control thread.
#[derive(Debug, Default)]
pub struct OffloadShared {
    pub flows: Mutex<HashMap<u64, FlowOffload>>,
    pub stats: Mutex<OffloadStats>,
    /// Hardware packets and bytes of removed flows, by their rule (the
    /// switch drops the entries of rules that are gone).
    pub retired: Mutex<HashMap<u64, (u64, u64)>>,
}

impl OffloadShared {
    pub fn flow(&self, id: u64) -> Option<FlowOffload> {
        self.flows.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&id).cloned()
    }

    pub fn stats(&self) -> OffloadStats {
        self.stats.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

/// Underlay checks remembered for [`Manager::underlay_work_since`].
pub(super) const RECENT_UNDERLAY_CHECKS: usize = 256;

/// Requests from the control thread.
pub enum ManagerRequest {
    /// Process every event sent so far and any underlay change, then answer
    /// with the work done for the underlay generations after `since`.
    Sync { since: u64, done: Sender<SyncReport> },
    /// The port (ethdev id) is stopping: forget the rules the device drops.
    PortStopping { ethdev: u16, done: Sender<usize> },
    /// The port is up again: install what was there.
    PortStarted { ethdev: u16, done: Sender<usize> },
    /// Counters as of now (offload-show).
    Stats(Sender<OffloadStats>),
    /// Destroy every rule and stop.
    Stop(Sender<usize>),
}

/// What a [`ManagerRequest::Sync`] did about the underlay.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct SyncReport {
    pub replaced: u64,
    pub unchanged: u64,
}

/// What the manager starts with.
pub struct ManagerSetup {
    pub config: OffloadConfig,
    pub device: Box<dyn FlowDevice + Send>,
    /// The transfer proxy, for the testpmd text.
    pub proxy: u16,
    pub ports: Vec<PortFacts>,
    pub underlay: Arc<Underlay>,
    pub events: Receiver<EventBatch>,
    /// Per PMD: its command queue (flow ids carry the PMD in their top bits).
    pub pmds: Vec<Sender<PmdCommand>>,
    pub idle_timeout: Duration,
    pub shared: Arc<OffloadShared>,
}

pub(super) struct Installed {
    pub(super) handle: RuleHandle,
    /// The cookie the device reports it by (the id of the flow that
    /// created it; it stays when the rule is handed to another PMD's flow).
    pub(super) cookie: u64,
    pub(super) rule: Arc<HwRule>,
    pub(super) tunnels: Vec<(u32, Option<u32>)>,
    /// The device's count at the last query, and when that was (creation
    /// at first): each rule's rate has its own time base, so a rule created
    /// just before a query does not look cold.
    pub(super) last: HitCounts,
    pub(super) last_at: Instant,
    /// Packets per second, smoothed over about a second of queries (the
    /// software rate that made it hot until the first query).
    pub(super) pps: u64,
    /// When the rule went in: younger rules are not eviction candidates.
    pub(super) created: Instant,
}

pub(super) struct FlowRec {
    pub(super) pmd: usize,
    /// The rule that decided the flow (its hardware counts stay with it and
    /// the rules it was reached through).
    pub(super) rule: Option<u64>,
    pub(super) via: Box<[u64]>,
    pub(super) key: FlowKey,
    pub(super) mask: FlowMask,
    pub(super) actions: Arc<[Action]>,
    pub(super) state: State,
    pub(super) installed: Instant,
    /// The software rate last reported (Hot events), and over how long.
    pub(super) pps: u64,
    pub(super) hot_for: Duration,
    /// When the first Hot event came, and when the rate it reported began.
    pub(super) hot_at: Option<Instant>,
    pub(super) rate_since: Option<Instant>,
    /// Whether it has been in hardware before (latencies count the first time).
    pub(super) offloaded_before: bool,
    /// Whether it waited for room (refused "no space" before its first rule).
    pub(super) waited: bool,
    pub(super) hw: Option<Installed>,
    pub(super) hw_packets: u64,
    pub(super) hw_bytes: u64,
    /// Priority of the current rule (alternates on replacement).
    pub(super) priority: u32,
    /// The same megaflow's flow (another PMD's) whose rule this one shares.
    pub(super) rides: Option<u64>,
    /// The flows sharing this one's rule.
    pub(super) riders: Vec<u64>,
    /// When its PMD last reported its rate.
    pub(super) reported: Option<Instant>,
}

/// Token bucket for rule operations.
pub(super) struct Budget {
    pub(super) per_s: f64,
    pub(super) tokens: f64,
    pub(super) last: Instant,
}

impl Budget {
    /// Whether a [`Budget::take`] now would succeed (takes nothing).
    pub(super) fn available(&self) -> bool {
        self.tokens + self.last.elapsed().as_secs_f64() * self.per_s >= 1.0
    }

    pub(super) fn take(&mut self) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * self.per_s).min(self.per_s.max(1.0));
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The manager's state (runs on its own thread: [`run`]).
pub struct Manager {
    pub(super) config: OffloadConfig,
    pub(super) device: Box<dyn FlowDevice + Send>,
    pub(super) proxy: u16,
    pub(super) ports: Vec<PortFacts>,
    pub(super) underlay: Arc<Underlay>,
    pub(super) pmds: Vec<Sender<PmdCommand>>,
    pub(super) idle_timeout: Duration,
    pub(super) shared: Arc<OffloadShared>,
    pub(super) flows: HashMap<u64, FlowRec>,
    /// Jump rules per ingress ethdev port (group 0 -> the rules' group).
    pub(super) jumps: HashMap<u16, RuleHandle>,
    /// The last underlay checks: (generation, what was done).
    pub(super) recent: std::collections::VecDeque<(u64, SyncReport)>,
    pub(super) hw_count: usize,
    pub(super) generation: u64,
    pub(super) budget: Budget,
    pub(super) stats: OffloadStats,
    pub(super) latencies: std::collections::VecDeque<f64>,
    pub(super) hot_latencies: std::collections::VecDeque<f64>,
    pub(super) rate_latencies: std::collections::VecDeque<f64>,
    /// Flows whose view changed since the last publish.
    pub(super) dirty: Vec<u64>,
    /// Eviction candidates, coldest first, as of the last query (rules
    /// younger than [`MIN_RESIDENCY`] left out); `cold_next` is the first not
    /// taken yet.
    pub(super) cold: Vec<(u64, u64)>,
    pub(super) cold_next: usize,
    /// Ports (ethdev ids) between a stop and the start after it.
    pub(super) stopped: std::collections::HashSet<u16>,
    /// Flows by megaflow (masked key, mask), over every PMD.
    pub(super) megaflows: HashMap<(FlowKey, FlowMask), Vec<u64>>,
    /// Rules handed to another flow: their cookie to the flow holding them.
    pub(super) handed: HashMap<u64, u64>,
}

/// A rule is not evicted before this (its hardware rate is not known yet,
/// and a rule that goes straight back out is churn).
pub(super) const MIN_RESIDENCY: Duration = Duration::from_secs(1);
/// Time constant of the hardware rate's smoothing.
pub(super) const RATE_SMOOTHING: Duration = Duration::from_secs(1);
/// A candidate evicts a rule only with a rate measured over this long
/// (comparable to the rule's smoothed rate; a rate over the first hot time
/// at a few packets is noise, and acting on it is churn).
pub(super) const EVICT_EVIDENCE: Duration = Duration::from_secs(1);

pub(super) const LATENCY_SAMPLES: usize = 10_000;
/// Flow ids carry their PMD's index in the top 16 bits.
pub(super) fn pmd_of(id: u64) -> usize {
    (id >> 48) as usize
}

impl Manager {
    pub fn new(s: ManagerSetup) -> Self {
        let stats = OffloadStats {
            device: s.device.describe(),
            policy: format!("{:?}", s.config.policy).to_lowercase(),
            max_rules: s.config.max_rules,
            ..OffloadStats::default()
        };
        let generation = s.underlay.generation();
        Self {
            budget: Budget {
                per_s: s.config.max_ops_per_s as f64,
                tokens: s.config.max_ops_per_s as f64,
                last: Instant::now(),
            },
            config: s.config,
            device: s.device,
            proxy: s.proxy,
            ports: s.ports,
            underlay: s.underlay,
            pmds: s.pmds,
            idle_timeout: s.idle_timeout,
            shared: s.shared,
            flows: HashMap::new(),
            jumps: HashMap::new(),
            recent: std::collections::VecDeque::new(),
            hw_count: 0,
            generation,
            stats,
            latencies: std::collections::VecDeque::new(),
            hot_latencies: std::collections::VecDeque::new(),
            rate_latencies: std::collections::VecDeque::new(),
            dirty: Vec::new(),
            cold: Vec::new(),
            cold_next: 0,
            stopped: std::collections::HashSet::new(),
            megaflows: HashMap::new(),
            handed: HashMap::new(),
        }
    }

    /// The counters as of now (what `offload-show` gets after a publish).
    pub fn stats(&self) -> &OffloadStats {
        &self.stats
    }

    pub(super) fn send_to_pmds(&self, lists: Vec<Vec<u64>>, make: impl Fn(Vec<u64>) -> PmdCommand) {
        for (pmd, ids) in lists.into_iter().enumerate() {
            if ids.is_empty() {
                continue;
            }
            if let Some(tx) = self.pmds.get(pmd) {
                // A full queue skips this round (the next query repeats it).
                let _ = tx.try_send(make(ids));
            }
        }
    }
}

/// Keeps the last [`LATENCY_SAMPLES`] samples.
pub(super) fn push_sample(samples: &mut std::collections::VecDeque<f64>, value: f64) {
    samples.push_back(value);
    if samples.len() > LATENCY_SAMPLES {
        samples.pop_front();
    }
}

/// p50 and p99 of the samples (0 when there are none).
pub(super) fn percentiles(samples: &std::collections::VecDeque<f64>) -> (f64, f64) {
    let mut sorted: Vec<f64> = samples.iter().copied().collect();
    sorted.sort_by(f64::total_cmp);
    let pct = |p: f64| if sorted.is_empty() { 0.0 } else { sorted[((sorted.len() - 1) as f64 * p).round() as usize] };
    (pct(0.5), pct(0.99))
}
