//! A poll-mode thread: the DPDK around a burst [`Engine`]. It polls its rx
//! queues in bursts, hands each burst to the engine, buffers what the engine
//! sends per tx port and flushes every iteration; between iterations it
//! answers control commands, runs maintenance (idle expiry, hit reports),
//! re-ranks the classifier and publishes counters.

use super::burst::{Engine, EngineSetup, Hardware, HotPolicy, Packets, PmdConfig, RevalidateReport, BURST, RX_BURST};
use super::counters::{Counter, DropReason, PortCounter, Shared};
use super::fair::CycleFair;
use super::flows::{EventBatch, FlowInfo, RemoveReason};
use super::rxq::PolledQueue;
use super::tx::{flush, MbufIo, TxHandle, TxPort};
use crate::dpdk::{rdtsc, tsc_hz, Burst, Eal, Mbuf, Mempool, MAX_BURST};
use crate::flow::RuleTable;
use crate::underlay::Underlay;
use crossbeam_channel::{Receiver, Sender};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

const _: () = assert!(BURST == MAX_BURST, "the engine's burst arrays hold a DPDK burst");

/// How long a PMD waits for room in the event channel before acknowledging a
/// control request (the manager must have seen the events first).
const EVENT_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Flow slots a maintenance slice walks: at least, at most.
const MAINT_SLICE_MIN: usize = 64;
const MAINT_SLICE_MAX: usize = 4096;

/// A revalidation slice's time per iteration: 1/20,000 s (50 us). A million
/// flows take a few hundred milliseconds of slices; forwarding goes on
/// between them.
const REVALIDATE_SLICE_DIV: u64 = 20_000;

/// Flow slots a dump-flows slice walks per iteration.
const DUMP_SLICE: usize = 256;

/// A part of a PMD's answer to dump-flows.
pub struct FlowChunk {
    pub flows: Vec<FlowInfo>,
    /// The answer's last part.
    pub last: bool,
    /// With the last part: (rule, packets, bytes) of removed flows.
    pub retired: Vec<(u64, u64, u64)>,
}

/// A dump-flows answer in progress.
struct DumpJob {
    reply: Sender<FlowChunk>,
    /// Emptied chunks the control thread gives back: the PMD fills them
    /// again rather than allocate (fresh memory page-faults, and while the
    /// control thread faults in the whole answer those faults stalled the
    /// PMD for milliseconds).
    recycle: Receiver<Vec<FlowInfo>>,
    next: usize,
    in_emc: std::collections::HashSet<u32>,
}

/// Messages from the control thread and the offload manager.
pub enum PmdCommand {
    /// Use this rule table from now on; revalidate cached flows (in slices
    /// between iterations; a packet hitting a flow not revalidated yet has
    /// it revalidated first); send the events that produced; then answer.
    /// `keep`: removed rules whose counts are still to be read (see
    /// `Engine::set_rules_keeping`).
    SetRules { table: Arc<RuleTable>, keep: Arc<[u64]>, done: Sender<RevalidateReport> },
    /// Answer with every flow, in chunks (a slice of the table per
    /// iteration), the last one marked; emptied chunks come back on `recycle`.
    DumpFlows { reply: Sender<FlowChunk>, recycle: Receiver<Vec<FlowInfo>> },
    /// Answer with the counts these rules' removed flows left (see
    /// `Engine::retired`): once a publication without the rules is
    /// acknowledged, all their flows have gone and these are their final
    /// counts in software (FLOW_REMOVED), found without a dump of the flows.
    Retired { rules: Arc<[u64]>, reply: Sender<Vec<(u64, u64, u64)>> },
    /// These flows were hit in hardware: keep them from idling out.
    Touch(Vec<u64>),
    /// Remove these flows (aged out in both tiers, or evicted).
    Expire(Vec<u64>, RemoveReason),
    /// Answer once the current iteration is over and pending events are
    /// sent: from then on every packet sees the current underlay.
    Barrier(Sender<()>),
    /// Stop polling and sending on a port (it is being restarted).
    Pause(u32, Sender<()>),
    /// Poll and send on the port again.
    Resume(u32),
    /// Poll this receive queue from now on.
    AddQueue(Box<PolledQueue>),
    /// Stop polling queue (port, queue): what it delivered so far is
    /// processed and handed to the transmit queues, then the queue comes
    /// back (`None`: not polled here).
    TakeQueue { port: u32, queue: u16, done: Sender<Option<Box<PolledQueue>>> },
    /// Run these actions on this frame (an OpenFlow PACKET_OUT).
    Inject(Box<crate::datapath::punt::Injection>),
}

/// What the control thread sees of a PMD.
pub struct PmdShared {
    pub index: usize,
    pub core: usize,
    pub counters: Shared,
}

/// Everything a PMD thread starts with.
pub struct PmdSetup {
    pub index: usize,
    pub core: usize,
    pub eal: Eal,
    /// The receive queues it starts with.
    pub rxqs: Vec<PolledQueue>,
    /// Indexed by port number.
    pub txqs: Vec<TxHandle>,
    pub mtus: Vec<u16>,
    pub pool: Arc<Mempool>,
    pub table: Arc<RuleTable>,
    pub config: PmdConfig,
    pub shared: Arc<PmdShared>,
    pub commands: Receiver<PmdCommand>,
    pub stop: Arc<AtomicBool>,
    pub events: Option<Sender<EventBatch>>,
    pub hit_reports: bool,
    pub underlay: Arc<Underlay>,
    pub hardware: Option<Hardware>,
    pub hot: Option<HotPolicy>,
    pub punt: crate::datapath::punt::Punt,
    /// Per physical port: whether it is an uplink (VTEP duties).
    pub uplink: Vec<bool>,
    /// Tunnel ports (numbered after the physical ports).
    pub tunnels: usize,
}

/// The fairness quantum between receive queues: 1/20,000 s (50 us).
const FAIR_QUANTUM_DIV: u64 = 20_000;

/// Test hook: `VSWITCHD_TEST_STALL_PMD=INDEX:SECONDS` makes PMD INDEX stop
/// iterating SECONDS after it starts (it only waits for the stop), as a
/// PMD stuck in a loop would: what the service watchdog must notice.
fn test_stall(index: usize, hz: u64) -> Option<u64> {
    let spec = std::env::var("VSWITCHD_TEST_STALL_PMD").ok()?;
    let (pmd, secs) = spec.split_once(':')?;
    if pmd.parse::<usize>().ok()? != index {
        return None;
    }
    let secs: f64 = secs.parse().ok()?;
    tracing::warn!(pmd = index, secs, "test hook VSWITCHD_TEST_STALL_PMD: this PMD will stop iterating");
    Some(rdtsc() + (secs * hz as f64) as u64)
}

/// Runs a PMD until `stop` is set.
pub fn run(setup: PmdSetup) {
    if let Err(e) = crate::dpdk::os::pin_current_thread(setup.core) {
        tracing::warn!(pmd = setup.index, core = setup.core, "cannot pin PMD thread: {e}");
    }
    match setup.eal.register_thread() {
        Ok(lcore) => tracing::info!(pmd = setup.index, core = setup.core, lcore, "PMD thread started"),
        Err(e) => tracing::warn!(pmd = setup.index, "PMD thread not registered with EAL (no mempool cache): {e}"),
    }
    let hz = tsc_hz().max(1);
    let txqs_len = setup.txqs.len();
    let tx = setup.txqs.into_iter().map(|queue| TxPort { queue, buf: Burst::new(), bytes: 0 }).collect();
    let engine = Engine::new(EngineSetup {
        index: setup.index,
        config: setup.config,
        table: setup.table,
        events: setup.events,
        hit_reports: setup.hit_reports,
        underlay: setup.underlay,
        uplink: setup.uplink,
        mtus: setup.mtus,
        tunnels: setup.tunnels,
        hz,
        hardware: setup.hardware,
        hot: setup.hot,
        punt: setup.punt,
    });
    let ports = txqs_len;
    let queues = setup.rxqs.len();
    let mut pmd = Pmd {
        paused: vec![false; ports],
        engine,
        rxqs: setup.rxqs,
        tx,
        pool: setup.pool,
        shared: setup.shared,
        commands: setup.commands,
        stop: setup.stop,
        hz,
        revalidated: Vec::new(),
        dumps: std::collections::VecDeque::new(),
        fair: CycleFair::new(queues, hz / FAIR_QUANTUM_DIV),
        stall_at: test_stall(setup.index, hz),
    };
    pmd.main_loop();
}

/// A period on the TSC: [`Every::due`] says once per period whether it
/// has passed, and starts the next.
struct Every {
    period: u64,
    last: u64,
}

impl Every {
    fn new(period: u64, now: u64) -> Self {
        Self { period, last: now }
    }

    #[inline]
    fn due(&mut self, now: u64) -> bool {
        let due = now.wrapping_sub(self.last) > self.period;
        if due {
            self.last = now;
        }
        due
    }
}

/// The longest iteration of the current window (a second) and of the one
/// before.
struct Longest {
    now: u64,
    before: u64,
    window: Every,
}

/// The PMD's periodic duties.
struct Timers {
    maintenance: Every,
    hot: Every,
    rank: Every,
    publish: Every,
    longest: Longest,
}

struct Pmd {
    engine: Engine,
    /// Ports being restarted: not polled, nothing sent to them.
    paused: Vec<bool>,
    rxqs: Vec<PolledQueue>,
    /// Cycle fairness between `rxqs` (by position).
    fair: CycleFair,
    /// Test hook: when (TSC) this PMD stops iterating (see [`test_stall`]).
    stall_at: Option<u64>,
    tx: Vec<TxPort>,
    pool: Arc<Mempool>,
    shared: Arc<PmdShared>,
    commands: Receiver<PmdCommand>,
    stop: Arc<AtomicBool>,
    hz: u64,
    /// Who waits for the revalidation in progress.
    revalidated: Vec<Sender<RevalidateReport>>,
    /// dump-flows answers in progress, served one slice per iteration in turn.
    dumps: std::collections::VecDeque<DumpJob>,
}

impl Pmd {
    fn main_loop(&mut self) {
        let hz = self.hz;
        let mut pkts: Packets<Mbuf> = [const { None }; BURST];
        let now = rdtsc();
        let mut timers = Timers {
            // Maintenance in slices, one each millisecond: a pass over the
            // flow slots per maintenance period (1 s by default, 100 ms
            // under pressure), at most MAINT_SLICE_MAX slots a slice. At a
            // million flows a slot costs about 100 ns to walk (a cache miss),
            // so a pass every 100 ms would take 40 % of the core; a slice
            // stays under a few hundred microseconds.
            maintenance: Every::new(hz / 1000, now),
            // Hot-flow checks every 2 ms (the flows hit since the last one
            // and those on the watch list): a flow is reported at most 2 ms
            // after its hot time.
            hot: Every::new(hz / 500, now),
            rank: Every::new(hz, now),
            publish: Every::new(hz / 1000, now),
            longest: Longest { now: 0, before: 0, window: Every::new(hz, now) },
        };
        let mut first = 0usize;
        // The TSC is read once per busy queue and once at the end of an
        // iteration (about 25 cycles each on a VM): an iteration starts
        // when the last one's last reading was taken.
        let mut start = rdtsc();
        while !self.stop.load(Ordering::Relaxed) {
            self.engine.start_iteration();
            // The queue polled first rotates: with the upcall budget's
            // per-queue reserve, every port gets its share of new flows.
            let queues = self.rxqs.len();
            first = if first + 1 >= queues { 0 } else { first + 1 };
            let received = self.poll(first, start, &mut pkts);
            self.fair.end_iteration();
            self.flush_all();
            self.engine.flush_events(None);
            let end = rdtsc();
            let c = &mut self.engine.counters;
            c.add(if received > 0 { Counter::BusyCycles } else { Counter::IdleCycles }, end.wrapping_sub(start));
            c.add(Counter::Iterations, 1);
            let mut extra = false;
            while let Ok(cmd) = self.commands.try_recv() {
                self.command(cmd, end);
                extra = true;
            }
            extra |= self.background(end);
            start = self.periodic(&mut timers, start, end, extra);
        }
        self.flush_all();
        self.engine.remove_all(RemoveReason::Shutdown);
        self.engine.flush_events(Some(std::time::Duration::from_millis(200)));
        self.publish();
        tracing::info!(pmd = self.engine.index, "PMD thread stopped");
    }

    /// One pass over the receive queues, the one at `first` first, each as
    /// the cycle-fair scheduler allows. Returns the packets received. A
    /// queue that delivered is charged the cycles since the last reading of
    /// the TSC (the empty polls before it included: tens of cycles against
    /// thousands for a burst).
    #[inline]
    fn poll(&mut self, first: usize, start: u64, pkts: &mut Packets<Mbuf>) -> usize {
        let queues = self.rxqs.len();
        let mut received = 0usize;
        let mut clock = start;
        let fair = &mut self.fair;
        for step in 0..queues {
            let q = (first + step) % queues;
            if !fair.may_poll(q) {
                continue;
            }
            let polled = &mut self.rxqs[q];
            let port = polled.port;
            if self.paused.get(port as usize).copied().unwrap_or(false) {
                fair.charge(q, 0, false, false);
                continue;
            }
            // Straight into the engine's slots (empty: `process` leaves
            // every one it was given empty).
            let n = polled.rxq.rx_into(&mut pkts[..RX_BURST]);
            if n == 0 {
                fair.charge(q, 0, false, false);
                continue;
            }
            received += n;
            let mut io = MbufIo { tx: &mut self.tx, pool: &self.pool };
            self.engine.queue_turn(queues - 1 - step, queues);
            self.engine.process(port, pkts, n, start, &mut io);
            let new_flows = self.engine.burst_misses() * 2 > n;
            let now = rdtsc();
            let took = now.wrapping_sub(clock);
            clock = now;
            fair.charge(q, took, n == RX_BURST, new_flows);
            let polled = &mut self.rxqs[q];
            polled.cycles += took;
            polled.packets += n as u64;
        }
        received
    }

    /// The work on timers after an iteration (`start`..`end`, then commands
    /// and background work when `extra`): maintenance slices, hot checks,
    /// ranking, the iteration-length counters and the counters'
    /// publication. Returns the TSC as of its end (`end` when nothing ran
    /// after it).
    #[inline]
    fn periodic(&mut self, t: &mut Timers, start: u64, end: u64, extra: bool) -> u64 {
        let hz = self.hz;
        let mut ran = extra;
        if t.maintenance.due(end) {
            let period_ms = (self.engine.maintenance_period().as_millis() as usize).max(1);
            let slots = (self.engine.flow_slots() / period_ms).clamp(MAINT_SLICE_MIN, MAINT_SLICE_MAX);
            self.engine.maintenance_slice(end, slots);
            ran = true;
        }
        if t.hot.due(end) {
            self.engine.hot_check(end);
            ran = true;
        }
        if t.rank.due(end) {
            self.engine.rank();
            ran = true;
            if self.stall_at.is_some_and(|at| end > at) {
                self.stall();
            }
        }
        // The whole iteration, control commands and maintenance included:
        // what a packet waiting in a receive ring may have to wait.
        let last = if ran { rdtsc() } else { end };
        let whole = last.wrapping_sub(start);
        t.longest.now = t.longest.now.max(whole);
        let c = &mut self.engine.counters;
        for (limit, counter) in [
            (hz / 10_000, Counter::IterationsOver100us),
            (hz / 1000, Counter::IterationsOver1ms),
            (hz / 100, Counter::IterationsOver10ms),
        ] {
            if whole > limit {
                c.add(counter, 1);
            }
        }
        if t.publish.due(end) {
            // The longest iteration of this second and the last one.
            if t.longest.window.due(end) {
                t.longest.before = t.longest.now;
                t.longest.now = 0;
            }
            let us = t.longest.now.max(t.longest.before).saturating_mul(1_000_000) / hz.max(1);
            self.engine.counters.set(Counter::LongestIterationUs, us);
            self.publish();
            return rdtsc();
        }
        last
    }

    fn publish(&mut self) {
        for q in &self.rxqs {
            q.publish();
        }
        self.engine.update_gauges();
        self.engine.counters.publish(&self.shared.counters);
    }

    fn command(&mut self, cmd: PmdCommand, now: u64) {
        match cmd {
            PmdCommand::SetRules { table, keep, done } => {
                // A revalidation in progress is superseded: its waiters hear
                // when this one is over (its tally carries on).
                self.engine.set_rules_keeping(table, &keep);
                self.revalidated.push(done);
            }
            PmdCommand::DumpFlows { reply, recycle } => {
                let in_emc = self.engine.emc_slots();
                self.dumps.push_back(DumpJob { reply, recycle, next: 0, in_emc });
            }
            PmdCommand::Retired { rules, reply } => {
                let counts = rules.iter().filter_map(|id| self.engine.retired.get(id).map(|c| (*id, c.0, c.1)));
                let _ = reply.send(counts.collect());
            }
            PmdCommand::Touch(ids) => self.engine.touch(&ids, now),
            PmdCommand::Expire(ids, reason) => self.engine.expire(&ids, reason),
            PmdCommand::Barrier(done) => {
                self.engine.flush_events(Some(EVENT_WAIT));
                // The counters as of the barrier: a caller can tell the
                // packets sent before it from those sent after.
                self.publish();
                let _ = done.send(());
            }
            PmdCommand::Pause(port, done) => {
                if let Some(p) = self.paused.get_mut(port as usize) {
                    *p = true;
                }
                if let Some(tx) = self.tx.get_mut(port as usize) {
                    // What was queued for the port is dropped (counted).
                    let n = tx.buf.len() as u64;
                    tx.buf.clear();
                    tx.bytes = 0;
                    self.engine.counters.port(port as usize, PortCounter::TxDropped, n);
                    self.engine.counters.drop(DropReason::PortDown, n);
                }
                let _ = done.send(());
            }
            PmdCommand::Resume(port) => {
                if let Some(p) = self.paused.get_mut(port as usize) {
                    *p = false;
                }
            }
            PmdCommand::AddQueue(q) => {
                tracing::debug!(pmd = self.engine.index, port = q.port, queue = q.queue, "polling a queue");
                self.rxqs.push(*q);
                self.fair = CycleFair::new(self.rxqs.len(), self.hz / FAIR_QUANTUM_DIV);
            }
            PmdCommand::TakeQueue { port, queue, done } => {
                let at = self.rxqs.iter().position(|q| q.port == port && q.queue == queue);
                let taken = at.map(|i| self.rxqs.remove(i));
                if let Some(q) = &taken {
                    // Its packets are processed (commands run between
                    // iterations); what they left in the transmit buffers
                    // goes to the device before the next PMD polls the queue.
                    self.flush_all();
                    q.publish();
                    self.fair = CycleFair::new(self.rxqs.len(), self.hz / FAIR_QUANTUM_DIV);
                }
                let _ = done.send(taken.map(Box::new));
            }
            PmdCommand::Inject(job) => {
                let mut io = MbufIo { tx: &mut self.tx, pool: &self.pool };
                self.engine.inject(&job.frame, job.in_port, &job.actions, now, &mut io);
                self.flush_all();
                let _ = job.done.send(());
            }
        }
    }

    /// Between iterations: a slice of the revalidation in progress (its
    /// waiters answered once it is over, after its events are sent) and a
    /// slice of one dump-flows answer. Returns whether there was any.
    fn background(&mut self, now: u64) -> bool {
        let any = self.engine.revalidating() || !self.dumps.is_empty();
        if self.engine.revalidating() {
            if let Some(report) = self.engine.revalidate_slice(self.hz / REVALIDATE_SLICE_DIV) {
                self.engine.flush_events(Some(EVENT_WAIT));
                self.publish();
                for done in self.revalidated.drain(..) {
                    let _ = done.send(report);
                }
            }
        }
        if let Some(mut job) = self.dumps.pop_front() {
            let mut flows = job.recycle.try_recv().unwrap_or_default();
            flows.clear();
            let next = self.engine.dump_slice(job.next, DUMP_SLICE, &job.in_emc, now, &mut flows);
            let last = next.is_none();
            let retired =
                if last { self.engine.retired.iter().map(|(r, c)| (*r, c.0, c.1)).collect() } else { Vec::new() };
            let sent = job.reply.send(FlowChunk { flows, last, retired }).is_ok();
            if let (Some(next), true) = (next, sent) {
                job.next = next;
                self.dumps.push_back(job);
            }
        }
        any
    }

    /// The test hook's stall: no iteration until the stop.
    fn stall(&mut self) {
        tracing::warn!(pmd = self.engine.index, "test hook: PMD stalled");
        while !self.stop.load(Ordering::Relaxed) {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    fn flush_all(&mut self) {
        for (port, tx) in self.tx.iter_mut().enumerate() {
            if tx.buf.is_empty() {
                continue;
            }
            if self.paused.get(port).copied().unwrap_or(false) {
                let n = tx.buf.len() as u64;
                tx.buf.clear();
                tx.bytes = 0;
                self.engine.counters.port(port, PortCounter::TxDropped, n);
                self.engine.counters.drop(DropReason::PortDown, n);
                continue;
            }
            flush(tx, port, &mut self.engine.counters);
        }
    }
}
