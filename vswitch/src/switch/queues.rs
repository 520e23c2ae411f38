//! Receive queues and PMDs: which PMD polls which queue (by measured busy
//! cycles, round robin, or pinned by the operator), the load per
//! measurement interval behind `pmd-rxq-show`, `pmd-rxq-rebalance` and the
//! automatic rebalance, and moving a queue between PMDs under traffic.
//!
//! A move is two commands: the old PMD stops polling the queue, processes
//! what it had received and hands it to the transmit queues, then gives
//! the queue back; only then does the new PMD get it. Nothing is polled
//! twice and nothing is left behind: packets that arrive meanwhile wait in
//! the device's ring, and a flow's packets leave in order.

use crate::config::{Assign, QueueSettings};
use crate::datapath::counters::Counter;
use crate::datapath::pmd::{PmdCommand, PmdShared};
use crate::datapath::rxq::{PolledQueue, RxqLoad};
use crate::datapath::SwitchError;
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, SendTimeoutError, Sender};
use serde::Serialize;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a PMD has to take a command and to answer it.
const SEND_WAIT: Duration = Duration::from_secs(2);
const ANSWER_WAIT: Duration = Duration::from_secs(5);

/// One receive queue as the switch tracks it.
struct Entry {
    port: u32,
    queue: u16,
    load: Arc<RxqLoad>,
    /// The PMD (index) polling it.
    pmd: usize,
    /// The PMD the operator pinned it to.
    pinned: Option<usize>,
}

/// The first assignment, for [`Queues::new`].
pub(super) struct Initial {
    entries: Vec<Entry>,
    isolated: Vec<bool>,
}

/// What the switch needs of a PMD to move queues.
pub(super) struct PmdLink {
    pub(super) core: usize,
    pub(super) commands: Sender<PmdCommand>,
    pub(super) shared: Arc<PmdShared>,
}

/// Cumulative counts at one moment.
#[derive(Clone)]
struct Sample {
    at: Instant,
    /// Per queue (as `Entry`): cycles and packets.
    cycles: Vec<u64>,
    packets: Vec<u64>,
    /// Per PMD.
    busy: Vec<u64>,
    idle: Vec<u64>,
}

/// The counts of one measurement interval.
#[derive(Clone)]
struct Interval {
    seconds: f64,
    cycles: Vec<u64>,
    packets: Vec<u64>,
    busy: Vec<u64>,
    idle: Vec<u64>,
}

struct State {
    queues: Vec<Entry>,
    /// The start of the interval in progress.
    mark: Sample,
    /// The last complete interval.
    last: Option<Interval>,
    last_rebalance: Option<Instant>,
    rebalances: u64,
    auto_rebalances: u64,
    moves: u64,
}

/// The queue-to-PMD assignment of a running switch.
pub(super) struct Queues {
    settings: QueueSettings,
    pmds: Vec<PmdLink>,
    /// PMDs that take only their pinned queues.
    isolated: Vec<bool>,
    /// Port names, for views and logs.
    names: Vec<String>,
    state: Mutex<State>,
}

/// `pmd-rxq-show`.
#[derive(Debug, Clone, Serialize)]
pub struct RxqShow {
    pub assign: &'static str,
    pub isolate: bool,
    /// The interval the shares cover (the last complete one; before the
    /// first, the time since start).
    pub interval_s: f64,
    pub auto_lb: AutoLbView,
    pub rebalances: u64,
    pub queue_moves: u64,
    pub pmds: Vec<PmdRxqView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AutoLbView {
    pub enabled: bool,
    pub load_threshold_pct: u8,
    pub improvement_threshold_pct: u8,
    pub interval_s: f64,
    pub rebalances: u64,
}

/// One PMD in `pmd-rxq-show`.
#[derive(Debug, Clone, Serialize)]
pub struct PmdRxqView {
    pub pmd: usize,
    pub core: usize,
    pub isolated: bool,
    /// Busy and idle shares of the PMD's cycles over the interval.
    pub busy_pct: f64,
    pub idle_pct: f64,
    pub queues: Vec<RxqView>,
}

/// One receive queue in `pmd-rxq-show`.
#[derive(Debug, Clone, Serialize)]
pub struct RxqView {
    pub port: String,
    pub queue: u16,
    pub pinned: bool,
    /// Its share of the PMD's busy cycles over the interval.
    pub share_pct: f64,
    /// Packets per second over the interval, and since start.
    pub pps: f64,
    pub packets: u64,
    /// Busy cycles spent on it since start (whichever PMD polled it).
    pub cycles: u64,
}

/// What a rebalance did.
#[derive(Debug, Clone, Serialize)]
pub struct RebalanceReport {
    pub moves: Vec<QueueMove>,
    /// The variance of the PMDs' loads (in % of the interval's cycles,
    /// squared) before and, as estimated, after.
    pub variance_before: f64,
    pub variance_after: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct QueueMove {
    pub port: String,
    pub queue: u16,
    pub from_pmd: usize,
    pub to_pmd: usize,
}

/// The PMD for each queue: pinned queues on their PMD; the others by
/// `assign` over the PMDs not isolated (all of them, if every PMD is).
/// `loads[i]` is queue `i`'s measured cycles (`Assign::Cycles`: the busiest
/// first, each onto the PMD with the least load so far, then the fewest
/// queues); round robin goes in queue order.
pub fn plan(loads: &[u64], pinned: &[Option<usize>], isolated: &[bool], assign: Assign) -> Vec<usize> {
    let pmds = isolated.len().max(1);
    let mut eligible: Vec<usize> = (0..pmds).filter(|&p| !isolated.get(p).copied().unwrap_or(false)).collect();
    if eligible.is_empty() {
        eligible = (0..pmds).collect();
    }
    let mut out = vec![0usize; loads.len()];
    let mut sum = vec![0u64; pmds];
    let mut count = vec![0usize; pmds];
    for (i, p) in pinned.iter().enumerate() {
        if let Some(p) = p.filter(|&p| p < pmds) {
            out[i] = p;
            sum[p] += loads[i];
            count[p] += 1;
        }
    }
    let free = (0..loads.len()).filter(|&i| pinned.get(i).copied().flatten().is_none_or(|p| p >= pmds));
    match assign {
        Assign::Roundrobin => {
            for (k, i) in free.enumerate() {
                out[i] = eligible[k % eligible.len()];
            }
        }
        Assign::Cycles => {
            let mut order: Vec<usize> = free.collect();
            order.sort_by(|&a, &b| loads[b].cmp(&loads[a]).then(a.cmp(&b)));
            for i in order {
                let p = *eligible.iter().min_by_key(|&&p| (sum[p], count[p], p)).unwrap_or(&0);
                out[i] = p;
                sum[p] += loads[i];
                count[p] += 1;
            }
        }
    }
    out
}

/// The variance of the PMDs' loads, each in percent of `total` cycles,
/// over the PMDs in `which`.
pub fn variance(loads: &[u64], assignment: &[usize], which: &[usize], total: u64) -> f64 {
    if which.is_empty() || total == 0 {
        return 0.0;
    }
    let mut per = vec![0.0f64; which.len()];
    for (l, p) in loads.iter().zip(assignment) {
        if let Some(k) = which.iter().position(|w| w == p) {
            per[k] += *l as f64 * 100.0 / total as f64;
        }
    }
    let mean = per.iter().sum::<f64>() / per.len() as f64;
    per.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / per.len() as f64
}

fn delta(now: &[u64], then: &[u64]) -> Vec<u64> {
    now.iter().zip(then.iter().chain(std::iter::repeat(&0))).map(|(a, b)| a.saturating_sub(*b)).collect()
}

impl Queues {
    /// The first assignment of `rx` (every queue, in port and queue order;
    /// no loads measured yet): the queues for each of the `pmds` (cores),
    /// and the record of it for [`Queues::new`]. `affinity` lists per port
    /// its pinned (queue, core) pairs.
    pub(super) fn assign_initial(
        settings: QueueSettings,
        pmds: &[usize],
        rx: Vec<PolledQueue>,
        affinity: &[Vec<(u16, usize)>],
    ) -> (Vec<Vec<PolledQueue>>, Initial) {
        let pinned: Vec<Option<usize>> = rx
            .iter()
            .map(|q| {
                let core = affinity.get(q.port as usize)?.iter().find(|(n, _)| *n == q.queue)?.1;
                pmds.iter().position(|&c| c == core)
            })
            .collect();
        let isolated: Vec<bool> = (0..pmds.len()).map(|p| settings.isolate && pinned.contains(&Some(p))).collect();
        let target = plan(&vec![0; rx.len()], &pinned, &isolated, settings.assign);
        let mut per: Vec<Vec<PolledQueue>> = (0..pmds.len()).map(|_| Vec::new()).collect();
        let mut entries = Vec::new();
        for ((q, pmd), pinned) in rx.into_iter().zip(target).zip(pinned) {
            entries.push(Entry { port: q.port, queue: q.queue, load: Arc::clone(&q.load), pmd, pinned });
            per[pmd].push(q);
        }
        (per, Initial { entries, isolated })
    }

    pub(super) fn new(settings: QueueSettings, pmds: Vec<PmdLink>, names: Vec<String>, initial: Initial) -> Self {
        let empty = Sample { at: Instant::now(), cycles: vec![], packets: vec![], busy: vec![], idle: vec![] };
        let q = Self {
            settings,
            pmds,
            isolated: initial.isolated,
            names,
            state: Mutex::new(State {
                queues: initial.entries,
                mark: empty,
                last: None,
                last_rebalance: None,
                rebalances: 0,
                auto_rebalances: 0,
                moves: 0,
            }),
        };
        {
            let mut state = q.lock();
            state.mark = q.sample(&state.queues);
        }
        q
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn sample(&self, queues: &[Entry]) -> Sample {
        Sample {
            at: Instant::now(),
            cycles: queues.iter().map(|q| q.load.cycles()).collect(),
            packets: queues.iter().map(|q| q.load.packets()).collect(),
            busy: self.pmds.iter().map(|p| p.shared.counters.get(Counter::BusyCycles)).collect(),
            idle: self.pmds.iter().map(|p| p.shared.counters.get(Counter::IdleCycles)).collect(),
        }
    }

    fn interval_since(&self, state: &State, now: &Sample) -> Interval {
        let m = &state.mark;
        Interval {
            seconds: now.at.duration_since(m.at).as_secs_f64(),
            cycles: delta(&now.cycles, &m.cycles),
            packets: delta(&now.packets, &m.packets),
            busy: delta(&now.busy, &m.busy),
            idle: delta(&now.idle, &m.idle),
        }
    }

    /// The last complete interval, or the time since start before it.
    fn current(&self, state: &State) -> Interval {
        state.last.clone().unwrap_or_else(|| self.interval_since(state, &self.sample(&state.queues)))
    }

    /// Ends a measurement interval; with the automatic rebalance on, and
    /// its own interval over since the last one, rebalances when a PMD was
    /// loaded past the threshold and the estimated improvement is enough.
    pub(super) fn tick(&self) {
        let mut state = self.lock();
        let now = self.sample(&state.queues);
        let interval = self.interval_since(&state, &now);
        state.mark = now;
        state.last = Some(interval.clone());
        let lb = self.settings.auto_lb;
        if !lb.enabled || state.last_rebalance.is_some_and(|t| t.elapsed() < lb.interval) {
            return;
        }
        let eligible = self.eligible();
        let overloaded = eligible.iter().copied().find(|&p| {
            let total = interval.busy[p] + interval.idle[p];
            total > 0 && interval.busy[p] * 100 >= u64::from(lb.load_pct) * total
        });
        let Some(hot) = overloaded else { return };
        let (target, before, after) = self.proposal(&state, &interval, Assign::Cycles);
        let improvement = if before > 0.0 { (before - after) * 100.0 / before } else { 0.0 };
        if improvement < f64::from(lb.improvement_pct) {
            tracing::debug!(pmd = hot, before, after, improvement, "auto-lb: not enough to gain");
            return;
        }
        tracing::info!(
            pmd = hot,
            busy_pct = interval.busy[hot] as f64 * 100.0 / (interval.busy[hot] + interval.idle[hot]).max(1) as f64,
            variance_before = before,
            variance_after = after,
            "auto-lb: rebalancing the receive queues"
        );
        let applied = self.apply(&mut state, &target);
        state.rebalances += 1;
        state.last_rebalance = Some(Instant::now());
        match applied {
            Ok(moves) => {
                state.auto_rebalances += 1;
                tracing::info!(moves = moves.len(), "auto-lb: done");
            }
            Err(e) => tracing::warn!("auto-lb: {e}"),
        }
    }

    fn eligible(&self) -> Vec<usize> {
        let all: Vec<usize> = (0..self.pmds.len()).filter(|&p| !self.isolated[p]).collect();
        if all.is_empty() {
            (0..self.pmds.len()).collect()
        } else {
            all
        }
    }

    /// A new assignment by `assign` from the interval's loads, and the
    /// variance of the non-isolated PMDs' loads now and with it.
    fn proposal(&self, state: &State, interval: &Interval, assign: Assign) -> (Vec<usize>, f64, f64) {
        let pinned: Vec<Option<usize>> = state.queues.iter().map(|q| q.pinned).collect();
        let target = plan(&interval.cycles, &pinned, &self.isolated, assign);
        let current: Vec<usize> = state.queues.iter().map(|q| q.pmd).collect();
        let eligible = self.eligible();
        // The PMDs' cycles over the interval (each PMD's own clock runs at
        // the same rate): the unit the loads are shares of.
        let total = eligible.iter().map(|&p| interval.busy[p] + interval.idle[p]).max().unwrap_or(0);
        let before = variance(&interval.cycles, &current, &eligible, total);
        let after = variance(&interval.cycles, &target, &eligible, total);
        (target, before, after)
    }

    /// `pmd-rxq-rebalance`: a new assignment by the configured policy from
    /// the last interval's loads, applied.
    pub(super) fn rebalance(&self) -> Result<RebalanceReport, SwitchError> {
        let mut state = self.lock();
        let interval = self.current(&state);
        let (target, before, after) = self.proposal(&state, &interval, self.settings.assign);
        let moves = self.apply(&mut state, &target)?;
        state.rebalances += 1;
        state.last_rebalance = Some(Instant::now());
        Ok(RebalanceReport { moves, variance_before: before, variance_after: after })
    }

    /// `pmd-rxq-move`: queue `queue` of port `port` to the PMD on `core`
    /// now (the next rebalance may move it again; pin it to keep it).
    pub(super) fn move_one(&self, port: u32, queue: u16, core: usize) -> Result<QueueMove, SwitchError> {
        let to = self.pmds.iter().position(|p| p.core == core).ok_or_else(|| {
            let cores: Vec<usize> = self.pmds.iter().map(|p| p.core).collect();
            SwitchError::Invalid(format!("no PMD runs on core {core} (PMD cores: {cores:?})"))
        })?;
        let mut state = self.lock();
        let name = self.names.get(port as usize).cloned().unwrap_or_else(|| format!("?{port}"));
        let i = state
            .queues
            .iter()
            .position(|q| q.port == port && q.queue == queue)
            .ok_or_else(|| SwitchError::Invalid(format!("port {name:?} has no receive queue {queue}")))?;
        let mut target: Vec<usize> = state.queues.iter().map(|q| q.pmd).collect();
        target[i] = to;
        let from = state.queues[i].pmd;
        self.apply(&mut state, &target)?;
        Ok(QueueMove { port: name, queue, from_pmd: from, to_pmd: to })
    }

    /// Moves every queue whose PMD differs in `target`, one at a time.
    fn apply(&self, state: &mut State, target: &[usize]) -> Result<Vec<QueueMove>, SwitchError> {
        let mut moves = Vec::new();
        for (i, &to) in target.iter().enumerate() {
            let from = state.queues[i].pmd;
            if from == to {
                continue;
            }
            self.move_queue(&state.queues[i], to)?;
            state.queues[i].pmd = to;
            state.moves += 1;
            let e = &state.queues[i];
            let port = self.names.get(e.port as usize).cloned().unwrap_or_else(|| format!("?{}", e.port));
            tracing::info!(port = %port, queue = e.queue, from_pmd = from, to_pmd = to, "receive queue moved");
            moves.push(QueueMove { port, queue: e.queue, from_pmd: from, to_pmd: to });
        }
        Ok(moves)
    }

    /// Takes the queue from its PMD (which drains it first) and gives it to
    /// PMD `to`; back to the old PMD if the new one cannot take it.
    fn move_queue(&self, e: &Entry, to: usize) -> Result<(), SwitchError> {
        let timeout = |what: String| SwitchError::PmdTimeout(what);
        let from = &self.pmds[e.pmd];
        let (done, answer) = bounded(1);
        from.commands
            .send_timeout(PmdCommand::TakeQueue { port: e.port, queue: e.queue, done }, SEND_WAIT)
            .map_err(|_| timeout(format!("PMD {}: its command queue is full", e.pmd)))?;
        let taken = answer
            .recv_timeout(ANSWER_WAIT)
            .map_err(|_| timeout(format!("PMD {} did not give queue {}:{} back", e.pmd, e.port, e.queue)))?
            .ok_or_else(|| SwitchError::Invalid(format!("PMD {} does not poll queue {}:{}", e.pmd, e.port, e.queue)))?;
        match self.pmds[to].commands.send_timeout(PmdCommand::AddQueue(taken), SEND_WAIT) {
            Ok(()) => Ok(()),
            Err(SendTimeoutError::Timeout(cmd) | SendTimeoutError::Disconnected(cmd)) => {
                // Polled where it was rather than by nobody.
                if from.commands.send_timeout(cmd, SEND_WAIT).is_err() {
                    tracing::error!(port = e.port, queue = e.queue, "a receive queue could not be given to any PMD");
                }
                Err(timeout(format!("PMD {to}: its command queue is full")))
            }
        }
    }

    /// `pmd-rxq-show`.
    pub(super) fn show(&self) -> RxqShow {
        let state = self.lock();
        let iv = self.current(&state);
        let lb = self.settings.auto_lb;
        let pmds = self
            .pmds
            .iter()
            .enumerate()
            .map(|(p, link)| {
                let (busy, idle) = (iv.busy.get(p).copied().unwrap_or(0), iv.idle.get(p).copied().unwrap_or(0));
                let total = (busy + idle).max(1) as f64;
                let queues = state
                    .queues
                    .iter()
                    .enumerate()
                    .filter(|(_, q)| q.pmd == p)
                    .map(|(i, q)| RxqView {
                        port: self.names.get(q.port as usize).cloned().unwrap_or_else(|| format!("?{}", q.port)),
                        queue: q.queue,
                        pinned: q.pinned.is_some(),
                        share_pct: round2(iv.cycles.get(i).copied().unwrap_or(0) as f64 * 100.0 / busy.max(1) as f64),
                        pps: round2(iv.packets.get(i).copied().unwrap_or(0) as f64 / iv.seconds.max(1e-9)),
                        packets: q.load.packets(),
                        cycles: q.load.cycles(),
                    })
                    .collect();
                PmdRxqView {
                    pmd: p,
                    core: link.core,
                    isolated: self.isolated[p],
                    busy_pct: round2(busy as f64 * 100.0 / total),
                    idle_pct: round2(idle as f64 * 100.0 / total),
                    queues,
                }
            })
            .collect();
        RxqShow {
            assign: self.settings.assign.as_str(),
            isolate: self.settings.isolate,
            interval_s: round2(iv.seconds),
            auto_lb: AutoLbView {
                enabled: lb.enabled,
                load_threshold_pct: lb.load_pct,
                improvement_threshold_pct: lb.improvement_pct,
                interval_s: lb.interval.as_secs_f64(),
                rebalances: state.auto_rebalances,
            },
            rebalances: state.rebalances,
            queue_moves: state.moves,
            pmds,
        }
    }

    /// The measurement interval's clock: ticks until `stop` says (or is
    /// dropped).
    pub(super) fn spawn_clock(self: &Arc<Self>, stop: Receiver<()>) -> std::io::Result<JoinHandle<()>> {
        let me = Arc::clone(self);
        std::thread::Builder::new().name("rxq-balance".into()).spawn(move || loop {
            match stop.recv_timeout(me.settings.interval) {
                Err(RecvTimeoutError::Timeout) => me.tick(),
                _ => return,
            }
        })
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycles_puts_the_busiest_first_on_the_least_loaded() {
        // Two busy queues and two idle ones over two PMDs: one busy each.
        let loads = [100, 0, 90, 0];
        let t = plan(&loads, &[None; 4], &[false, false], Assign::Cycles);
        assert_ne!(t[0], t[2], "{t:?}");
        // Round robin in order: the busy ones land together.
        let rr = plan(&loads, &[None; 4], &[false, false], Assign::Roundrobin);
        assert_eq!(rr, vec![0, 1, 0, 1]);
        // With no measurements cycles spreads by count.
        let z = plan(&[0; 4], &[None; 4], &[false, false], Assign::Cycles);
        assert_eq!(z.iter().filter(|&&p| p == 0).count(), 2);
    }

    #[test]
    fn pinned_queues_stay_and_isolate_their_pmd() {
        let loads = [10, 10, 10, 10];
        let pinned = [Some(1), None, None, None];
        let t = plan(&loads, &pinned, &[false, true], Assign::Cycles);
        assert_eq!(t, vec![1, 0, 0, 0]);
        // Not isolated: the pinned PMD's load counts.
        let t = plan(&loads, &pinned, &[false, false], Assign::Cycles);
        assert_eq!(t[0], 1);
        assert_eq!(t.iter().filter(|&&p| p == 1).count(), 2, "{t:?}");
        // Every PMD isolated: the others still go somewhere.
        let t = plan(&loads, &[Some(0), Some(1), None, None], &[true, true], Assign::Roundrobin);
        assert_eq!(&t[..2], &[0, 1]);
    }

    #[test]
    fn variance_of_a_skew_and_of_an_even_spread() {
        let loads = [50, 0, 50, 0];
        let skewed = variance(&loads, &[0, 1, 0, 1], &[0, 1], 100);
        let even = variance(&loads, &[0, 1, 1, 0], &[0, 1], 100);
        assert!((skewed - 2500.0).abs() < 1e-9, "{skewed}");
        assert!(even.abs() < 1e-9);
    }
}
