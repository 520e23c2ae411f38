//! The offload manager: a thread that learns about megaflows from the PMDs'
//! events, offloads the hot ones (or all, by policy) into the device, and
//! keeps the others in software with a reason.
//!
//! - Capacity: at most `max_rules`; when full, a candidate evicts the
//!   coldest hardware rule only if it is `hysteresis` times hotter, its rate
//!   was measured over at least a second, and the rule is at least a second
//!   old (hardware rates are smoothed over about a second): no flapping
//!   between flows of about the same rate. HwRule operations are limited to
//!   `max_ops_per_s`.
//! - Counters: every `query_interval` the hardware counters are read; their
//!   deltas are added to the flows' statistics, and flows hit in hardware are
//!   "touched" in their PMD so that software idle expiry does not take them.
//!   Rules carry AGE where the device has it; aged rules' flows are expired.
//! - Underlay changes: exactly the hardware rules whose tunnel resolution
//!   changed are re-translated and replaced make-before-break (new rule at
//!   the other priority first, then the old one destroyed); the others are
//!   not touched.
//! - A port stop flushes the device's rules for it (a NIC does); after the
//!   restart they are installed again. Shutdown destroys every rule.

use super::translate::{translate, Context, PortFacts, Refusal, Translation};
use crate::actions::Action;
use crate::config::offload::{OffloadConfig, Policy};
use crate::datapath::flows::{EventBatch, FlowEvent, RemoveReason};
use crate::datapath::pmd::PmdCommand;
use crate::packet::{FlowKey, FlowMask};
use crate::underlay::Underlay;
use crossbeam_channel::{select, tick, Receiver, Sender};
use offload::device::{DeviceError, ErrorKind, FlowDevice, HitCounts, RuleHandle};
use offload::rte_flow::lower;
use offload::rule::{HwAction, HwRule};
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

    fn name(&self) -> &'static str {
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
const RECENT_UNDERLAY_CHECKS: usize = 256;

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

struct Installed {
    handle: RuleHandle,
    rule: Arc<HwRule>,
    tunnels: Vec<(u32, Option<u32>)>,
    /// The device's count at the last query, and when that was (creation
    /// at first): each rule's rate has its own time base, so a rule created
    /// just before a query does not look cold.
    last: HitCounts,
    last_at: Instant,
    /// Packets per second, smoothed over about a second of queries (the
    /// software rate that made it hot until the first query).
    pps: u64,
    /// When the rule went in: younger rules are not eviction candidates.
    created: Instant,
}

struct FlowRec {
    pmd: usize,
    key: FlowKey,
    mask: FlowMask,
    actions: Arc<[Action]>,
    state: State,
    installed: Instant,
    /// The software rate last reported (Hot events), and over how long.
    pps: u64,
    hot_for: Duration,
    /// When the first Hot event came, and when the rate it reported began.
    hot_at: Option<Instant>,
    rate_since: Option<Instant>,
    /// Whether it has been in hardware before (latencies count the first time).
    offloaded_before: bool,
    /// Whether it waited for room (refused "no space" before its first rule).
    waited: bool,
    hw: Option<Installed>,
    hw_packets: u64,
    hw_bytes: u64,
    /// Priority of the current rule (alternates on replacement).
    priority: u32,
}

/// Token bucket for rule operations.
struct Budget {
    per_s: f64,
    tokens: f64,
    last: Instant,
}

impl Budget {
    /// Whether a [`Budget::take`] now would succeed (takes nothing).
    fn available(&self) -> bool {
        self.tokens + self.last.elapsed().as_secs_f64() * self.per_s >= 1.0
    }

    fn take(&mut self) -> bool {
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
    config: OffloadConfig,
    device: Box<dyn FlowDevice + Send>,
    proxy: u16,
    ports: Vec<PortFacts>,
    underlay: Arc<Underlay>,
    pmds: Vec<Sender<PmdCommand>>,
    idle_timeout: Duration,
    shared: Arc<OffloadShared>,
    flows: HashMap<u64, FlowRec>,
    /// Jump rules per ingress ethdev port (group 0 -> the rules' group).
    jumps: HashMap<u16, RuleHandle>,
    /// The last underlay checks: (generation, what was done).
    recent: std::collections::VecDeque<(u64, SyncReport)>,
    hw_count: usize,
    generation: u64,
    budget: Budget,
    stats: OffloadStats,
    latencies: std::collections::VecDeque<f64>,
    hot_latencies: std::collections::VecDeque<f64>,
    rate_latencies: std::collections::VecDeque<f64>,
    /// Flows whose view changed since the last publish.
    dirty: Vec<u64>,
    /// Eviction candidates, coldest first, as of the last query (rules
    /// younger than [`MIN_RESIDENCY`] left out); `cold_next` is the first not
    /// taken yet.
    cold: Vec<(u64, u64)>,
    cold_next: usize,
    /// Ports (ethdev ids) between a stop and the start after it.
    stopped: std::collections::HashSet<u16>,
}

/// A rule is not evicted before this (its hardware rate is not known yet,
/// and a rule that goes straight back out is churn).
const MIN_RESIDENCY: Duration = Duration::from_secs(1);
/// Time constant of the hardware rate's smoothing.
const RATE_SMOOTHING: Duration = Duration::from_secs(1);
/// A candidate evicts a rule only with a rate measured over this long
/// (comparable to the rule's smoothed rate; a rate over the first hot time
/// at a few packets is noise, and acting on it is churn).
const EVICT_EVIDENCE: Duration = Duration::from_secs(1);

const LATENCY_SAMPLES: usize = 10_000;
/// Flow ids carry their PMD's index in the top 16 bits.
fn pmd_of(id: u64) -> usize {
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
        }
    }

    /// The counters as of now (what `offload-show` gets after a publish).
    pub fn stats(&self) -> &OffloadStats {
        &self.stats
    }

    /// Handles one batch of flow events.
    pub fn events(&mut self, batch: EventBatch) {
        self.stats.events += batch.len() as u64;
        for ev in batch {
            match ev {
                FlowEvent::Installed { id, pmd, key, mask, actions } => {
                    let rec = FlowRec {
                        pmd,
                        key,
                        mask,
                        actions,
                        state: State::Software,
                        installed: Instant::now(),
                        pps: 0,
                        hot_for: Duration::ZERO,
                        hot_at: None,
                        rate_since: None,
                        waited: false,
                        offloaded_before: false,
                        hw: None,
                        hw_packets: 0,
                        hw_bytes: 0,
                        priority: 1,
                    };
                    self.flows.insert(id, rec);
                    self.dirty.push(id);
                    if self.config.policy == Policy::All {
                        self.offload(id);
                    }
                }
                FlowEvent::Hot { id, pps, hot_for } => {
                    let Some(rec) = self.flows.get_mut(&id) else { continue };
                    rec.pps = pps;
                    rec.hot_for = hot_for;
                    let now = Instant::now();
                    rec.hot_at.get_or_insert(now);
                    rec.rate_since.get_or_insert(now.checked_sub(hot_for).unwrap_or(now));
                    let retry = matches!(
                        rec.state,
                        State::Software | State::Evicted | State::Pending | State::Refused(Reason::NoSpace(_))
                    ) || matches!(&rec.state, State::Refused(Reason::Device(e)) if matches!(e.kind, ErrorKind::NoSpace | ErrorKind::Busy));
                    if retry {
                        self.offload(id);
                    }
                }
                FlowEvent::Removed { id, .. } => {
                    // Its rule's last hits still count in the totals.
                    self.retire(id);
                    if self.flows.remove(&id).is_some() {
                        self.dirty.push(id);
                    }
                }
                FlowEvent::Hits { .. } => {}
            }
        }
    }

    fn context_translate(&self, rec: &FlowRec, priority: u32) -> Result<Translation, Refusal> {
        self.underlay.read(|tables| {
            let ctx = Context { ports: &self.ports, tables };
            translate(&rec.key, &rec.mask, &rec.actions, &ctx, priority)
        })
    }

    fn with_age(&self, mut rule: HwRule) -> HwRule {
        if self.config.age {
            let timeout_s = self.idle_timeout.as_secs().clamp(1, u64::from(offload::rule::MAX_AGE_S)) as u32;
            let at = rule.actions.iter().position(|a| !matches!(a, HwAction::Count)).unwrap_or(0);
            rule.actions.insert(at, HwAction::Age { timeout_s });
        }
        rule
    }

    /// Destroys a rule; returns its last counts, as the device read them
    /// when it went.
    fn destroy(&mut self, h: RuleHandle) -> Option<HitCounts> {
        match self.device.destroy(h) {
            Ok(counts) => {
                self.stats.deletes += 1;
                counts
            }
            Err(e) => {
                *self.stats.failures_by_device_error.entry(e.kind.to_string()).or_default() += 1;
                tracing::warn!("offload: destroying a rule: {e}");
                None
            }
        }
    }

    /// Destroys flow `id`'s rule with its last hits counted (every way a
    /// rule goes: removal, eviction, an unresolved tunnel, shutdown).
    /// Returns the rule, now gone from the flow.
    fn retire(&mut self, id: u64) -> Option<Installed> {
        let handle = self.flows.get(&id)?.hw.as_ref()?.handle;
        if let Some(counts) = self.destroy(handle) {
            self.account(id, counts);
        }
        let hw = self.flows.get_mut(&id)?.hw.take();
        if hw.is_some() {
            self.hw_count -= 1;
        }
        hw
    }

    /// Installs `rule` for flow `id` (its jump rule first, if needed).
    fn create(&mut self, id: u64, rule: &HwRule) -> Result<RuleHandle, DeviceError> {
        let group = self.config.group;
        if group > 0 && !self.jumps.contains_key(&rule.pattern.ingress) {
            let l = lower(&HwRule::jump(rule.pattern.ingress, group), 0, 0)
                .map_err(|e| DeviceError::new("lower", 22, 0, e.0))?;
            let h = self.device.create(&l)?;
            self.stats.inserts += 1;
            self.jumps.insert(rule.pattern.ingress, h);
        }
        let l = lower(rule, group, id).map_err(|e| DeviceError::new("lower", 22, 0, e.0))?;
        self.device.create(&l)
    }

    fn refuse(&mut self, id: u64, reason: Reason) {
        if let Some(rec) = self.flows.get_mut(&id) {
            if rec.state != State::Refused(reason.clone()) {
                tracing::debug!(flow = id, %reason, "offload: stays in software");
            }
            rec.state = State::Refused(reason);
            self.dirty.push(id);
        }
    }

    /// The coldest hardware flow that may be evicted: (id, smoothed rate),
    /// from the list sorted at the last query.
    fn coldest(&mut self) -> Option<(u64, u64)> {
        while let Some(&(pps, id)) = self.cold.get(self.cold_next) {
            if self.flows.get(&id).is_some_and(|r| r.hw.is_some()) {
                return Some((id, pps));
            }
            self.cold_next += 1;
        }
        None
    }

    /// Sorts the eviction candidates by their current hardware rate.
    fn sort_cold(&mut self) {
        let now = Instant::now();
        self.cold.clear();
        self.cold_next = 0;
        for (id, r) in &self.flows {
            if let Some(h) = &r.hw {
                if now.duration_since(h.created) >= MIN_RESIDENCY {
                    self.cold.push((h.pps, *id));
                }
            }
        }
        self.cold.sort_unstable();
    }

    /// Tries to put flow `id` into the device.
    fn offload(&mut self, id: u64) {
        let Some(rec) = self.flows.get(&id) else { return };
        if rec.hw.is_some() {
            return;
        }
        let t = match self.context_translate(rec, rec.priority) {
            Ok(t) => t,
            Err(r) => return self.refuse(id, Reason::Translate(r)),
        };
        let outputs = t.rule.actions.iter().filter_map(|a| match a {
            HwAction::Output(e) => Some(*e),
            _ => None,
        });
        if std::iter::once(t.rule.pattern.ingress).chain(outputs).any(|e| self.stopped.contains(&e)) {
            // A port of the rule is restarting: installed when it is up.
            if let Some(rec) = self.flows.get_mut(&id) {
                rec.state = State::Pending;
                self.dirty.push(id);
            }
            return;
        }
        if self.hw_count >= self.config.max_rules {
            let candidate = rec.pps;
            let hot_for = rec.hot_for;
            let proven = hot_for >= EVICT_EVIDENCE;
            match self.coldest() {
                Some((victim, pps))
                    if self.config.policy == Policy::Hot
                        && proven
                        && candidate as f64 > pps as f64 * self.config.hysteresis =>
                {
                    self.evict(victim);
                }
                other => {
                    let mut coldest = other.map_or(String::new(), |(_, p)| format!(", the coldest at {p} pps"));
                    if !proven && other.is_some() {
                        coldest += &format!(" (a rate kept for {} ms; evicting takes a second)", hot_for.as_millis());
                    }
                    if let Some(rec) = self.flows.get_mut(&id) {
                        rec.waited |= !rec.offloaded_before;
                    }
                    return self.refuse(
                        id,
                        Reason::NoSpace(format!(
                            "{} rules in use{coldest}; this flow at {candidate} pps",
                            self.hw_count
                        )),
                    );
                }
            }
        }
        if !self.budget.take() {
            self.stats.rate_limited += 1;
            if let Some(rec) = self.flows.get_mut(&id) {
                rec.state = State::Pending;
                self.dirty.push(id);
            }
            return;
        }
        let rule = Arc::new(self.with_age(t.rule));
        match self.create(id, &rule) {
            Ok(handle) => self.installed(id, handle, rule, t.tunnels),
            Err(e) => {
                *self.stats.failures_by_device_error.entry(e.kind.to_string()).or_default() += 1;
                self.refuse(id, Reason::Device(e));
            }
        }
    }

    /// Books a rule the device took for flow `id`: the flow's state, its
    /// hardware record, and the install latencies.
    fn installed(&mut self, id: u64, handle: RuleHandle, rule: Arc<HwRule>, tunnels: Vec<(u32, Option<u32>)>) {
        self.stats.inserts += 1;
        self.hw_count += 1;
        if let Some(rec) = self.flows.get_mut(&id) {
            let first = !rec.offloaded_before;
            rec.offloaded_before = true;
            let ms = rec.installed.elapsed().as_secs_f64() * 1000.0;
            let since_ms = |t: Option<Instant>| t.map(|t| t.elapsed().as_secs_f64() * 1000.0);
            let (hot_ms, rate_ms) = (since_ms(rec.hot_at), since_ms(rec.rate_since));
            rec.state = State::Hardware;
            let now = Instant::now();
            rec.hw = Some(Installed {
                handle,
                rule,
                tunnels,
                last: HitCounts::default(),
                last_at: now,
                pps: rec.pps,
                created: now,
            });
            if first {
                push_sample(&mut self.latencies, ms);
                if rec.waited {
                    // Its delay is the table's (hotter flows held
                    // the rules), not the manager's.
                    self.stats.waited_for_room += 1;
                } else if let (Some(h), Some(r)) = (hot_ms, rate_ms) {
                    push_sample(&mut self.hot_latencies, h);
                    push_sample(&mut self.rate_latencies, r);
                }
                metrics::histogram!("vswitch_offload_install_to_active_seconds").record(ms / 1000.0);
            }
            self.dirty.push(id);
        }
    }

    fn evict(&mut self, victim: u64) {
        if self.retire(victim).is_none() {
            return;
        }
        if let Some(rec) = self.flows.get_mut(&victim) {
            rec.state = State::Evicted;
        }
        self.stats.evictions += 1;
        self.dirty.push(victim);
    }

    /// Reads every hardware rule's counters; returns the flows hit since the
    /// last time, per PMD.
    pub fn query(&mut self) -> Vec<Vec<u64>> {
        let mut touched: Vec<Vec<u64>> = vec![Vec::new(); self.pmds.len()];
        let ids: Vec<u64> = self.flows.iter().filter(|(_, r)| r.hw.is_some()).map(|(id, _)| *id).collect();
        for id in ids {
            if self.harvest(id) {
                if let Some(t) = self.flows.get(&id).and_then(|r| touched.get_mut(r.pmd)) {
                    t.push(id);
                }
            }
        }
        self.sort_cold();
        touched
    }

    /// Reads flow `id`'s rule counters and adds what is new to the flow, the
    /// totals and its ports; returns whether there was anything. Done before
    /// a rule goes too, so that its last hits are not lost.
    fn harvest(&mut self, id: u64) -> bool {
        let Some(handle) = self.flows.get(&id).and_then(|r| r.hw.as_ref()).map(|h| h.handle) else { return false };
        let counts = match self.device.query(handle) {
            Ok(c) => c,
            Err(e) => {
                *self.stats.failures_by_device_error.entry(format!("query_{}", e.kind)).or_default() += 1;
                return false;
            }
        };
        self.account(id, counts)
    }

    /// Adds what `counts` (the device's count for flow `id`'s current rule)
    /// holds beyond the last reading to the flow, the totals and its ports;
    /// returns whether there was anything.
    fn account(&mut self, id: u64, counts: HitCounts) -> bool {
        let Some(rec) = self.flows.get_mut(&id) else { return false };
        let Some(hw) = rec.hw.as_mut() else { return false };
        // The NIC's answer: counters only grow; anything else is a reset.
        let dp = counts.packets.saturating_sub(hw.last.packets);
        let db = counts.bytes.saturating_sub(hw.last.bytes);
        let now = Instant::now();
        let secs = now.duration_since(hw.last_at).as_secs_f64().max(1e-3);
        hw.last = counts;
        hw.last_at = now;
        // Exponential smoothing by elapsed time: a few packets per query at
        // low rates would otherwise make the rate (and evictions) jump.
        let alpha = 1.0 - (-secs / RATE_SMOOTHING.as_secs_f64()).exp();
        hw.pps = (hw.pps as f64 + alpha * (dp as f64 / secs - hw.pps as f64)).round() as u64;
        if dp == 0 {
            return false;
        }
        rec.hw_packets += dp;
        rec.hw_bytes += db;
        self.stats.hw_packets += dp;
        self.stats.hw_bytes += db;
        // Per port: where the e-switch took the packets in and sent them out
        // (physical ports by the rule, tunnel ports by the flow).
        let phys = self.ports.len() as u32;
        let ports = &self.ports;
        let port_of = |ethdev: u16| ports.iter().position(|p| p.ethdev == ethdev).map(|i| i as u32);
        let rx = port_of(hw.rule.pattern.ingress).into_iter().chain(Some(rec.key.in_port()).filter(|&p| p >= phys));
        let tx = hw
            .rule
            .actions
            .iter()
            .filter_map(|a| match a {
                HwAction::Output(e) => port_of(*e),
                _ => None,
            })
            .chain(rec.actions.iter().filter_map(|a| match a {
                Action::Output(p) if *p >= phys => Some(*p),
                _ => None,
            }));
        for p in rx {
            let c = self.stats.hw_by_port.entry(p).or_default();
            c.rx_packets += dp;
            c.rx_bytes += db;
        }
        for p in tx {
            let c = self.stats.hw_by_port.entry(p).or_default();
            c.tx_packets += dp;
            c.tx_bytes += db;
        }
        self.dirty.push(id);
        true
    }

    /// Handles rules the device reports aged (idle for their AGE timeout).
    fn aged(&mut self) -> Vec<Vec<u64>> {
        let mut expire: Vec<Vec<u64>> = vec![Vec::new(); self.pmds.len()];
        let Ok(cookies) = self.device.aged() else { return expire };
        for id in cookies {
            // Only our cookies; anything else from the device is ignored.
            if self.flows.get(&id).is_some_and(|r| r.hw.is_some()) {
                self.stats.aged += 1;
                if let Some(e) = expire.get_mut(pmd_of(id)) {
                    e.push(id);
                }
            }
        }
        expire
    }

    /// Re-translates the hardware flows that depend on tunnels and replaces
    /// the changed ones make-before-break; retries flows waiting for a route.
    pub fn underlay_changed(&mut self) -> SyncReport {
        let mut report = SyncReport::default();
        let ids: Vec<u64> = self
            .flows
            .iter()
            .filter(|(_, r)| r.hw.as_ref().is_some_and(|h| !h.tunnels.is_empty()))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            let Some(rec) = self.flows.get(&id) else { continue };
            let priority = rec.priority ^ 1;
            let Some(hw) = rec.hw.as_ref() else { continue };
            let old_rule = hw.rule.clone();
            let old_handle = hw.handle;
            let (old_pps, old_created) = (hw.pps, hw.created);
            match self.context_translate(rec, priority) {
                Ok(t) => {
                    let new_rule = self.with_age(t.rule.clone());
                    if (HwRule { priority: old_rule.priority, ..new_rule.clone() }) == *old_rule {
                        report.unchanged += 1;
                        continue;
                    }
                    // Make before break: the new rule (other priority) first.
                    match self.create(id, &new_rule) {
                        Ok(handle) => {
                            self.stats.inserts += 1;
                            // The old rule's last hits, read as it goes.
                            if let Some(counts) = self.destroy(old_handle) {
                                self.account(id, counts);
                            }
                            report.replaced += 1;
                            if let Some(rec) = self.flows.get_mut(&id) {
                                rec.priority = priority;
                                rec.hw = Some(Installed {
                                    handle,
                                    rule: Arc::new(new_rule),
                                    tunnels: t.tunnels,
                                    last: HitCounts::default(),
                                    last_at: Instant::now(),
                                    pps: old_pps,
                                    created: old_created,
                                });
                                self.dirty.push(id);
                            }
                        }
                        Err(e) => {
                            // The old rule is wrong now: back to software.
                            self.retire(id);
                            *self.stats.failures_by_device_error.entry(e.kind.to_string()).or_default() += 1;
                            self.refuse(id, Reason::Device(e));
                        }
                    }
                }
                Err(r) => {
                    self.retire(id);
                    self.refuse(id, Reason::Translate(r));
                }
            }
        }
        self.stats.replacements += report.replaced;
        self.stats.unchanged_on_underlay_change += report.unchanged;
        // Flows that waited for a route or neighbour may translate now.
        let waiting: Vec<u64> = self
            .flows
            .iter()
            .filter(|(_, r)| matches!(r.state, State::Refused(Reason::Translate(Refusal::Unresolved(_)))))
            .map(|(id, _)| *id)
            .collect();
        for id in waiting {
            let ready =
                self.flows.get(&id).is_some_and(|r| self.config.policy == Policy::All || r.pps >= self.config.min_pps);
            if ready {
                self.offload(id);
            } else if let Some(rec) = self.flows.get_mut(&id) {
                rec.state = State::Software;
                self.dirty.push(id);
            }
        }
        report
    }

    fn check_underlay(&mut self) -> SyncReport {
        let g = self.underlay.generation();
        if g == self.generation {
            return SyncReport::default();
        }
        self.generation = g;
        let report = self.underlay_changed();
        if self.recent.len() == RECENT_UNDERLAY_CHECKS {
            self.recent.pop_front();
        }
        self.recent.push_back((g, report));
        report
    }

    /// The work done for underlay generations after `since` (by the
    /// periodic check or a sync): what a command that changed the underlay
    /// at `since` caused, with any change that came after it.
    pub fn underlay_work_since(&self, since: u64) -> SyncReport {
        self.recent.iter().filter(|(g, _)| *g > since).fold(SyncReport::default(), |mut sum, (_, r)| {
            sum.replaced += r.replaced;
            sum.unchanged += r.unchanged;
            sum
        })
    }

    /// A port is stopping: the device drops its rules (as a NIC does);
    /// their flows wait to be installed again.
    pub fn port_stopping(&mut self, ethdev: u16) -> usize {
        // No rule for it until it is up again (a stopped port takes none,
        // and a NIC would flush it).
        self.stopped.insert(ethdev);
        let dropped: HashMap<RuleHandle, Option<HitCounts>> = self.device.port_stopped(ethdev).into_iter().collect();
        self.jumps.retain(|_, h| !dropped.contains_key(h));
        let gone: Vec<(u64, Option<HitCounts>)> =
            self.flows.iter().filter_map(|(id, rec)| Some((*id, *dropped.get(&rec.hw.as_ref()?.handle)?))).collect();
        for (id, counts) in &gone {
            // Their last hits, read as the port stopped.
            if let Some(c) = counts {
                self.account(*id, *c);
            }
            if let Some(rec) = self.flows.get_mut(id) {
                rec.hw = None;
                rec.state = State::Pending;
                self.hw_count -= 1;
                self.dirty.push(*id);
            }
        }
        gone.len()
    }

    /// Installs again what a port stop took out.
    pub fn port_started(&mut self, ethdev: u16) -> usize {
        self.stopped.remove(&ethdev);
        let pending: Vec<u64> =
            self.flows.iter().filter(|(_, r)| r.state == State::Pending).map(|(id, _)| *id).collect();
        let mut n = 0;
        for id in pending {
            self.offload(id);
            if self.flows.get(&id).is_some_and(|r| r.hw.is_some()) {
                n += 1;
            }
        }
        self.stats.reinstalled += n as u64;
        n
    }

    /// Destroys every rule (their last hits counted first); returns how many.
    pub fn shutdown(&mut self) -> usize {
        let ids: Vec<u64> = self.flows.iter().filter(|(_, r)| r.hw.is_some()).map(|(id, _)| *id).collect();
        let deletes = self.stats.deletes;
        for id in ids {
            self.retire(id);
        }
        let jumps: Vec<RuleHandle> = self.jumps.drain().map(|(_, h)| h).collect();
        for h in jumps {
            self.destroy(h);
        }
        self.hw_count = 0;
        self.publish();
        (self.stats.deletes - deletes) as usize
    }

    /// Updates the shared views and counters.
    pub fn publish(&mut self) {
        self.publish_views();
        self.publish_stats();
    }

    /// Updates the shared per-flow views (of the flows changed since).
    fn publish_views(&mut self) {
        {
            let mut views = self.shared.flows.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            for id in self.dirty.drain(..) {
                match self.flows.get(&id) {
                    None => {
                        views.remove(&id);
                    }
                    Some(r) => {
                        views.insert(
                            id,
                            FlowOffload {
                                state: r.state.text(),
                                hw_packets: r.hw_packets,
                                hw_bytes: r.hw_bytes,
                                rule: r.hw.as_ref().map(|h| Arc::clone(&h.rule)),
                                proxy: self.proxy,
                                group: self.config.group,
                            },
                        );
                    }
                }
            }
        }
    }

    /// Updates the shared counters (a walk over every flow: less often).
    fn publish_stats(&mut self) {
        let mut by_state: BTreeMap<String, u64> = BTreeMap::new();
        let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
        for r in self.flows.values() {
            *by_state.entry(r.state.name().to_owned()).or_default() += 1;
            if let State::Refused(reason) = &r.state {
                *reasons.entry(reason.kind()).or_default() += 1;
            }
        }
        self.stats.flows_by_state = by_state;
        self.stats.refusals_by_reason = reasons;
        self.stats.rules_in_device = self.device.rules();
        self.stats.flow_rules = self.hw_count;
        (self.stats.install_to_active_ms_p50, self.stats.install_to_active_ms_p99) = percentiles(&self.latencies);
        (self.stats.hot_to_active_ms_p50, self.stats.hot_to_active_ms_p99) = percentiles(&self.hot_latencies);
        (self.stats.rate_to_active_ms_p50, self.stats.rate_to_active_ms_p99) = percentiles(&self.rate_latencies);
        self.stats.install_to_active_samples = self.latencies.len();
        *self.shared.stats.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = self.stats.clone();
    }

    fn send_to_pmds(&self, lists: Vec<Vec<u64>>, make: impl Fn(Vec<u64>) -> PmdCommand) {
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

    /// Retries flows waiting for the rate budget: nothing to do (and no
    /// walk over the flows) while the budget has no operation to give.
    fn pending(&mut self) {
        if !self.budget.available() {
            return;
        }
        let ids: Vec<u64> =
            self.flows.iter().filter(|(_, r)| r.state == State::Pending).map(|(id, _)| *id).take(1024).collect();
        for id in ids {
            self.offload(id);
        }
    }
}

/// Runs the manager until a [`ManagerRequest::Stop`].
pub fn run(mut m: Manager, events: Receiver<EventBatch>, requests: Receiver<ManagerRequest>) {
    tracing::info!(device = %m.stats.device, policy = %m.stats.policy, max_rules = m.config.max_rules, "offload manager started");
    let ticker = tick(Duration::from_millis(5));
    let query_every = m.config.query_interval;
    let mut last_query = Instant::now();
    let mut last_age = Instant::now();
    let mut last_publish = Instant::now();
    let mut last_stats = Instant::now();
    loop {
        select! {
            recv(events) -> b => match b {
                Ok(batch) => m.events(batch),
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            },
            recv(requests) -> r => match r {
                Ok(ManagerRequest::Sync { since, done }) => {
                    while let Ok(batch) = events.try_recv() {
                        m.events(batch);
                    }
                    m.check_underlay();
                    m.publish();
                    let _ = done.send(m.underlay_work_since(since));
                }
                Ok(ManagerRequest::PortStopping { ethdev, done }) => {
                    while let Ok(batch) = events.try_recv() {
                        m.events(batch);
                    }
                    let n = m.port_stopping(ethdev);
                    m.publish();
                    let _ = done.send(n);
                }
                Ok(ManagerRequest::PortStarted { ethdev, done }) => {
                    let n = m.port_started(ethdev);
                    m.publish();
                    let _ = done.send(n);
                }
                Ok(ManagerRequest::Stats(done)) => {
                    m.publish_stats();
                    let _ = done.send(m.stats.clone());
                }
                Ok(ManagerRequest::Stop(done)) => {
                    let n = m.shutdown();
                    tracing::info!(rules = n, "offload manager stopped: every rule destroyed");
                    let _ = done.send(n);
                    return;
                }
                Err(_) => {
                    m.shutdown();
                    return;
                }
            },
            recv(ticker) -> _ => {
                m.check_underlay();
                m.pending();
                if last_query.elapsed() >= query_every {
                    last_query = Instant::now();
                    let touched = m.query();
                    m.send_to_pmds(touched, PmdCommand::Touch);
                }
                if m.config.age && last_age.elapsed() >= Duration::from_secs(1) {
                    last_age = Instant::now();
                    let expire = m.aged();
                    m.send_to_pmds(expire, |ids| PmdCommand::Expire(ids, RemoveReason::Aged));
                }
                if last_publish.elapsed() >= Duration::from_millis(50) {
                    last_publish = Instant::now();
                    m.publish_views();
                }
                if last_stats.elapsed() >= Duration::from_millis(250) {
                    last_stats = Instant::now();
                    m.publish_stats();
                }
            },
        }
    }
}

/// Keeps the last [`LATENCY_SAMPLES`] samples.
fn push_sample(samples: &mut std::collections::VecDeque<f64>, value: f64) {
    samples.push_back(value);
    if samples.len() > LATENCY_SAMPLES {
        samples.pop_front();
    }
}

/// p50 and p99 of the samples (0 when there are none).
fn percentiles(samples: &std::collections::VecDeque<f64>) -> (f64, f64) {
    let mut sorted: Vec<f64> = samples.iter().copied().collect();
    sorted.sort_by(f64::total_cmp);
    let pct = |p: f64| if sorted.is_empty() { 0.0 } else { sorted[((sorted.len() - 1) as f64 * p).round() as usize] };
    (pct(0.5), pct(0.99))
}

#[cfg(test)]
mod tests;
