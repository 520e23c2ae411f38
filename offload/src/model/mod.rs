//! The model e-switch: a software stand-in for a NIC's embedded switch, for
//! tests and demos on machines whose NICs take no rte_flow rules.
//!
//! It is given the very rte_flow arrays the lowering built (through
//! [`FlowDevice`]), reads them back, and executes what they say on packet
//! bytes: a rule compares the bytes its specs and masks hold at the place the
//! item's header sits in the packet, and its actions edit the packet as the
//! device would (VXLAN decap and encap, VLAN push/pop/set, MAC rewrite) before
//! it is sent to a port or dropped. So a lowering mistake (byte order, mask,
//! encap definition) changes what the model does, or makes it refuse the rule.
//!
//! Lookup is tuple-space: rules are grouped by (group, priority, mask) into
//! classes, each a hash table keyed by the masked words; a packet's vector is
//! built once and each class is probed in priority order. Per-rule packet and
//! byte counters and the last-hit time are kept in atomics, so PMD threads
//! run packets through it while a control thread creates and destroys rules.
//!
//! What it is not: it is not a NIC. It runs on the PMD's CPU (the cost a NIC
//! would not have), knows nothing of the NIC's timing, table layout or
//! firmware, and accepts what its [`Profile`] says, not what a ConnectX
//! takes; the probe (`crate::probe`) asks a real device that question.

mod compile;
mod profile;
pub mod vector;

pub use crate::device::Verdict;
pub use compile::{Compiled, EncapHeader, Fate, Op};
pub use profile::{ActionKind, Profile};

use crate::device::{
    libc_errno, DeviceError, FlowDevice, HitCounts, InPath, InPathSession, RuleHandle, ERROR_TYPE_HANDLE,
    ERROR_TYPE_UNSPECIFIED,
};
use crate::entropy::{vxlan_src_port, InnerFlow};
use crate::packet::{checksum, fold, sum, PacketBuf};
use crate::rte_flow::{Lowered, RawRule};
use hashbrown::{HashMap, HashTable};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::Instant;
use vector::{Layers, Vector, WORDS};

/// Per-rule counters, written by the packet path.
#[derive(Debug, Default)]
struct RuleCounters {
    packets: AtomicU64,
    bytes: AtomicU64,
    /// Milliseconds since the model's epoch (0: never hit).
    last_hit_ms: AtomicU64,
}

/// What the packet path needs of a rule, kept small and apart from the rest.
#[derive(Debug)]
struct Hot {
    fate: Fate,
    /// Empty for rules that forward unchanged.
    ops: Box<[Op]>,
    decap: bool,
    counters: RuleCounters,
}

/// The rest of a rule.
#[derive(Debug)]
struct Cold {
    handle: u64,
    compiled: Compiled,
    class: usize,
    row: u32,
    /// An older rule with the same class and key, shadowed by this one.
    below: Option<u32>,
    /// The newer rule shadowing this one, if any.
    above: Option<u32>,
    created_ms: u64,
    aged_reported: bool,
}

/// The classes of one group, in priority order: all of them, and per
/// ingress port those holding rules for that port (a packet probes only
/// those, unless some class leaves the port unmatched).
#[derive(Debug, Default)]
struct Group {
    all: Vec<usize>,
    by_port: HashMap<u16, Vec<usize>>,
    /// Rules whose class does not match the whole port id.
    any_port_rules: usize,
}

/// Rules of one (group, priority, mask): a hash table over rows of an arena
/// holding each key's masked words followed by the slot of its rule.
#[derive(Debug)]
struct Class {
    group: u32,
    priority: u32,
    mask: Vector,
    /// Indexes of the mask's non-zero words.
    words: Vec<u8>,
    /// The mask's words at those indexes.
    mask_words: Vec<u64>,
    table: HashTable<u32>,
    /// Rows of `words.len() + 1` u64: key words, then the rule slot.
    rows: Vec<u64>,
    free_rows: Vec<u32>,
    rules: usize,
    /// Rules per ingress port (classes that match the whole port id).
    port_rules: HashMap<u16, u32>,
}

impl Class {
    fn stride(&self) -> usize {
        self.words.len() + 1
    }

    fn key(&self, row: u32) -> &[u64] {
        let s = self.stride();
        &self.rows[row as usize * s..row as usize * s + s - 1]
    }

    fn slot(&self, row: u32) -> u32 {
        let s = self.stride();
        self.rows[row as usize * s + s - 1] as u32
    }

    fn set_slot(&mut self, row: u32, slot: u32) {
        let s = self.stride();
        self.rows[row as usize * s + s - 1] = u64::from(slot);
    }
}

#[inline(always)]
fn mix(h: u64, w: u64) -> u64 {
    let x = (h ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x ^ (x >> 31)
}

fn hash_words(words: &[u64]) -> u64 {
    words.iter().fold(0x243f_6a88_85a3_08d3, |h, &w| mix(h, w))
}

#[derive(Debug, Default)]
struct Tables {
    hot: Vec<Option<Hot>>,
    cold: Vec<Option<Cold>>,
    free: Vec<u32>,
    by_handle: HashMap<u64, u32>,
    classes: Vec<Class>,
    /// (group, class indexes in priority order).
    groups: Vec<(u32, Group)>,
    /// VXLAN UDP ports with how many rules ask for each.
    vxlan_ports: Vec<(u16, usize)>,
    /// Per ethdev port id: the MTU of the VF behind it (0: not a VF port).
    vf_mtu: Vec<u16>,
    inner_rules: usize,
    next_handle: u64,
    rules: usize,
}

/// Counters of the whole model.
#[derive(Debug, Default)]
pub struct ModelStats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub drops: AtomicU64,
    pub errors: AtomicU64,
    pub created: AtomicU64,
    pub destroyed: AtomicU64,
    pub refused: AtomicU64,
    /// Frames forwarded by a rule whose outer lengths software would have
    /// refused as malformed (a device does not check them).
    pub malformed: AtomicU64,
    /// Frames dropped for a VF's MTU, received from it or sent to it.
    pub over_mtu: AtomicU64,
}

/// The model e-switch. Share it with `Arc`; [`ModelDevice`] is its
/// [`FlowDevice`] face.
#[derive(Debug)]
pub struct ModelSwitch {
    profile: Profile,
    tables: RwLock<Tables>,
    epoch: Instant,
    pub stats: ModelStats,
}

/// Most JUMPs one packet may take (a loop guard).
const MAX_JUMPS: usize = 8;
/// Most distinct VXLAN UDP ports the packet parser looks for.
const MAX_VXLAN_PORTS: usize = 8;

impl ModelSwitch {
    pub fn new(profile: Profile) -> Self {
        Self { profile, tables: RwLock::new(Tables::default()), epoch: Instant::now(), stats: ModelStats::default() }
    }

    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    fn read(&self) -> RwLockReadGuard<'_, Tables> {
        self.tables.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Tables> {
        self.tables.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    /// Declares ethdev port `ethdev` a VF's port with the VF's `mtu` (bytes
    /// of L3 packet; 0 removes the limit): frames from the VF above it are
    /// dropped before any rule, frames a rule sends to it are dropped by
    /// the VF, as a NIC's e-switch and VF do.
    pub fn set_vf_mtu(&self, ethdev: u16, mtu: u16) {
        let mut t = self.write();
        let i = usize::from(ethdev);
        if t.vf_mtu.len() <= i {
            t.vf_mtu.resize(i + 1, 0);
        }
        t.vf_mtu[i] = mtu;
    }

    /// Rules installed.
    pub fn rules(&self) -> usize {
        self.read().rules
    }

    /// Compiles a rule without installing it.
    ///
    /// # Errors
    /// The refusal.
    pub fn check(&self, raw: &RawRule) -> Result<Compiled, DeviceError> {
        compile::compile(raw, &self.profile)
    }

    /// Installs a compiled rule.
    ///
    /// # Errors
    /// ENOSPC when the profile's table is full; ENOTSUP for a ninth distinct
    /// VXLAN UDP port.
    pub fn insert(&self, compiled: Compiled) -> Result<RuleHandle, DeviceError> {
        let now = self.now_ms();
        let mut t = self.write();
        if t.rules >= self.profile.max_rules {
            return Err(DeviceError::new(
                "create",
                libc_errno::ENOSPC,
                ERROR_TYPE_UNSPECIFIED,
                format!("model: table full ({} rules)", self.profile.max_rules),
            ));
        }
        if let Some(p) = compiled.vxlan_port {
            if !t.vxlan_ports.iter().any(|(q, _)| *q == p) && t.vxlan_ports.len() >= MAX_VXLAN_PORTS {
                return Err(DeviceError::new(
                    "create",
                    libc_errno::ENOTSUP,
                    crate::device::ERROR_TYPE_ITEM,
                    format!("model: more than {MAX_VXLAN_PORTS} VXLAN UDP ports"),
                ));
            }
        }
        t.next_handle += 1;
        let handle = t.next_handle;
        let slot = match t.free.pop() {
            Some(s) => s,
            None => {
                t.hot.push(None);
                t.cold.push(None);
                (t.hot.len() - 1) as u32
            }
        };
        if let Some(p) = compiled.vxlan_port {
            match t.vxlan_ports.iter_mut().find(|(q, _)| *q == p) {
                Some(e) => e.1 += 1,
                None => t.vxlan_ports.push((p, 1)),
            }
        }
        if compiled.inner {
            t.inner_rules += 1;
        }
        let class = t.class_for(&compiled);
        let (row, below) = t.classes[class].insert(&compiled.spec, slot);
        t.index_rule(class, compiled.ingress, true);
        if let Some(b) = below {
            if let Some(c) = t.cold[b as usize].as_mut() {
                c.above = Some(slot);
            }
        }
        t.hot[slot as usize] = Some(Hot {
            fate: compiled.fate,
            ops: compiled.ops.clone().into_boxed_slice(),
            decap: matches!(compiled.ops.first(), Some(Op::Decap)),
            counters: RuleCounters::default(),
        });
        t.cold[slot as usize] =
            Some(Cold { handle, compiled, class, row, below, above: None, created_ms: now, aged_reported: false });
        t.by_handle.insert(handle, slot);
        t.rules += 1;
        self.stats.created.fetch_add(1, Ordering::Relaxed);
        Ok(RuleHandle(handle))
    }

    /// Removes a rule; returns its counters as it went (none without COUNT).
    /// Packets run under the read lock, so no hit falls between the reading
    /// and the removal.
    ///
    /// # Errors
    /// ENOENT for an unknown handle.
    pub fn remove(&self, h: RuleHandle) -> Result<Option<HitCounts>, DeviceError> {
        let mut t = self.write();
        let Some(slot) = t.by_handle.remove(&h.0) else {
            return Err(DeviceError::new("destroy", libc_errno::ENOENT, ERROR_TYPE_HANDLE, "model: no such rule"));
        };
        let counts = t.final_counts(slot);
        t.remove_slot(slot);
        self.stats.destroyed.fetch_add(1, Ordering::Relaxed);
        Ok(counts)
    }

    /// A rule's counters.
    ///
    /// # Errors
    /// Unknown handle, or a rule without COUNT.
    pub fn query(&self, h: RuleHandle) -> Result<HitCounts, DeviceError> {
        let t = self.read();
        let found =
            t.by_handle.get(&h.0).and_then(|&s| Some((t.hot[s as usize].as_ref()?, t.cold[s as usize].as_ref()?)));
        let Some((hot, cold)) = found else {
            return Err(DeviceError::new("query", libc_errno::ENOENT, ERROR_TYPE_HANDLE, "model: no such rule"));
        };
        if !cold.compiled.count {
            return Err(DeviceError::new(
                "query",
                libc_errno::ENOTSUP,
                crate::device::ERROR_TYPE_ACTION,
                "model: the rule has no COUNT action",
            ));
        }
        Ok(HitCounts {
            packets: hot.counters.packets.load(Ordering::Relaxed),
            bytes: hot.counters.bytes.load(Ordering::Relaxed),
        })
    }

    /// Contexts of AGE rules idle for their timeout, each reported once.
    pub fn aged(&self) -> Vec<u64> {
        let now = self.now_ms();
        let mut t = self.write();
        let t = &mut *t;
        let mut out = Vec::new();
        for (hot, cold) in t.hot.iter().zip(t.cold.iter_mut()) {
            let (Some(hot), Some(cold)) = (hot, cold) else { continue };
            let Some((timeout, context)) = cold.compiled.age else { continue };
            if cold.aged_reported {
                continue;
            }
            let last = hot.counters.last_hit_ms.load(Ordering::Relaxed).max(cold.created_ms);
            if now.saturating_sub(last) >= u64::from(timeout) * 1000 {
                cold.aged_reported = true;
                out.push(context);
            }
        }
        out
    }

    /// Removes every rule; returns how many.
    pub fn flush(&self) -> usize {
        let mut t = self.write();
        let n = t.rules;
        *t = Tables { next_handle: t.next_handle, ..Tables::default() };
        self.stats.destroyed.fetch_add(n as u64, Ordering::Relaxed);
        n
    }

    /// A port stopped: like a NIC, the model drops the rules that involve it
    /// (ingress or output). Returns their handles, which are gone, with
    /// their last counters.
    pub fn port_stopped(&self, port: u16) -> Vec<(RuleHandle, Option<HitCounts>)> {
        let mut t = self.write();
        let slots: Vec<u32> = t
            .cold
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                let c = &r.as_ref()?.compiled;
                (c.ingress == Some(port) || c.fate == Fate::Output(port)).then_some(i as u32)
            })
            .collect();
        let mut handles = Vec::with_capacity(slots.len());
        for &s in &slots {
            if let Some(h) = t.cold[s as usize].as_ref().map(|r| r.handle) {
                t.by_handle.remove(&h);
                handles.push((RuleHandle(h), t.final_counts(s)));
            }
            t.remove_slot(s);
        }
        self.stats.destroyed.fetch_add(slots.len() as u64, Ordering::Relaxed);
        handles
    }

    /// A lookup session: holds the table lock for a burst.
    pub fn session(&self) -> Session<'_> {
        let t = self.read();
        let mut vxlan_ports = [0u16; MAX_VXLAN_PORTS];
        let n = t.vxlan_ports.len().min(MAX_VXLAN_PORTS);
        for (d, (p, _)) in vxlan_ports.iter_mut().zip(&t.vxlan_ports) {
            *d = *p;
        }
        let inner = t.inner_rules > 0;
        let empty = t.rules == 0;
        let vf_ports = t.vf_mtu.iter().any(|&m| m != 0);
        Session {
            model: self,
            tables: t,
            vxlan_ports,
            vxlan_count: n,
            inner,
            empty,
            vf_ports,
            now_ms: self.now_ms(),
            v: Vector::default(),
            pending: None,
            counts: [0; 6],
        }
    }

    /// Runs one packet (takes the lock; [`Session`] amortises it).
    pub fn process<P: PacketBuf + ?Sized>(&self, ingress: u16, pkt: &mut P) -> Verdict {
        self.session().process(ingress, pkt)
    }
}

impl Class {
    fn new(c: &Compiled) -> Self {
        let words: Vec<u8> = (0..WORDS).filter(|&w| c.mask.word(w) != 0).map(|w| w as u8).collect();
        let mask_words = words.iter().map(|&w| c.mask.word(usize::from(w))).collect();
        Self {
            group: c.group,
            priority: c.priority,
            mask: c.mask,
            words,
            mask_words,
            table: HashTable::new(),
            rows: Vec::new(),
            free_rows: Vec::new(),
            rules: 0,
            port_rules: HashMap::new(),
        }
    }

    /// Whether the class compares the whole ingress port id.
    fn exact_port(&self) -> bool {
        self.mask.meta().0 == 0xffff
    }

    /// Adds `slot` under the key of `spec`; returns its row and the slot it
    /// shadows (an older rule with the same key).
    fn insert(&mut self, spec: &Vector, slot: u32) -> (u32, Option<u32>) {
        let key: Vec<u64> =
            self.words.iter().zip(&self.mask_words).map(|(&w, &m)| spec.word(usize::from(w)) & m).collect();
        let hash = hash_words(&key);
        self.rules += 1;
        if let Some(&row) = self.table.find(hash, |&r| self.key(r) == key.as_slice()) {
            let below = self.slot(row);
            self.set_slot(row, slot);
            return (row, Some(below));
        }
        let stride = self.stride();
        let row = match self.free_rows.pop() {
            Some(r) => {
                let at = r as usize * stride;
                self.rows[at..at + stride - 1].copy_from_slice(&key);
                r
            }
            None => {
                self.rows.extend_from_slice(&key);
                self.rows.push(0);
                (self.rows.len() / stride - 1) as u32
            }
        };
        self.set_slot(row, slot);
        let (rows, words) = (&self.rows, self.words.len());
        self.table.insert_unique(hash, row, |&r| {
            hash_words(&rows[r as usize * (words + 1)..r as usize * (words + 1) + words])
        });
        (row, None)
    }

    fn remove_row(&mut self, row: u32) {
        let hash = hash_words(self.key(row));
        if let Ok(entry) = self.table.find_entry(hash, |&r| r == row) {
            entry.remove();
        }
        self.free_rows.push(row);
    }

    /// The slot for a packet vector, if a key matches. The masked words are
    /// hashed as they are read and read again to compare (no key copy).
    #[inline(always)]
    fn find(&self, v: &Vector) -> Option<u32> {
        let n = self.words.len();
        let (words, masks) = (&self.words[..n], &self.mask_words[..n]);
        let mut h = 0x243f_6a88_85a3_08d3;
        for i in 0..n {
            h = mix(h, v.word(usize::from(words[i])) & masks[i]);
        }
        let stride = n + 1;
        let rows = &self.rows;
        let row = *self.table.find(h, |&r| {
            let key = &rows[r as usize * stride..r as usize * stride + n];
            (0..n).all(|i| key[i] == v.word(usize::from(words[i])) & masks[i])
        })?;
        Some(self.slot(row))
    }
}

impl Tables {
    fn class_for(&mut self, c: &Compiled) -> usize {
        if let Some(i) =
            self.classes.iter().position(|k| k.group == c.group && k.priority == c.priority && k.mask == c.mask)
        {
            return i;
        }
        self.classes.push(Class::new(c));
        let index = self.classes.len() - 1;
        let priorities: Vec<u32> = self.classes.iter().map(|k| k.priority).collect();
        let g = self.group_mut(c.group);
        g.all.push(index);
        // Priority order; the older class first among equals.
        g.all.sort_by_key(|&i| (priorities[i], i));
        index
    }

    fn group_mut(&mut self, group: u32) -> &mut Group {
        match self.groups.iter().position(|(g, _)| *g == group) {
            Some(p) => &mut self.groups[p].1,
            None => {
                self.groups.push((group, Group::default()));
                let last = self.groups.len() - 1;
                &mut self.groups[last].1
            }
        }
    }

    /// Counts a rule of `class` for `port` in the group's per-port index.
    fn index_rule(&mut self, class: usize, port: Option<u16>, add: bool) {
        let group = self.classes[class].group;
        let exact = self.classes[class].exact_port();
        let priority_of: Vec<u32> = self.classes.iter().map(|c| c.priority).collect();
        let count = match (exact, port) {
            (true, Some(p)) => {
                let n = self.classes[class].port_rules.entry(p).or_default();
                if add {
                    *n += 1;
                } else {
                    *n = n.saturating_sub(1);
                }
                let now = *n;
                if now == 0 {
                    self.classes[class].port_rules.remove(&p);
                }
                Some((p, now))
            }
            _ => None,
        };
        let g = self.group_mut(group);
        match count {
            Some((p, 1)) if add => {
                let list = g.by_port.entry(p).or_default();
                list.push(class);
                list.sort_by_key(|&i| (priority_of[i], i));
            }
            Some((p, 0)) if !add => {
                if let Some(list) = g.by_port.get_mut(&p) {
                    list.retain(|&i| i != class);
                    if list.is_empty() {
                        g.by_port.remove(&p);
                    }
                }
            }
            Some(_) => {}
            None if add => g.any_port_rules += 1,
            None => g.any_port_rules = g.any_port_rules.saturating_sub(1),
        }
    }

    /// A rule's counters, if it counts (read before it is removed).
    fn final_counts(&self, slot: u32) -> Option<HitCounts> {
        let hot = self.hot.get(slot as usize)?.as_ref()?;
        let cold = self.cold.get(slot as usize)?.as_ref()?;
        cold.compiled.count.then(|| HitCounts {
            packets: hot.counters.packets.load(Ordering::Relaxed),
            bytes: hot.counters.bytes.load(Ordering::Relaxed),
        })
    }

    fn remove_slot(&mut self, slot: u32) {
        let Some(cold) = self.cold.get_mut(slot as usize).and_then(Option::take) else { return };
        self.hot[slot as usize] = None;
        // Unlink from the chain of rules with the same key.
        if let Some(b) = cold.below {
            if let Some(c) = self.cold[b as usize].as_mut() {
                c.above = cold.above;
            }
        }
        match cold.above {
            Some(a) => {
                if let Some(c) = self.cold[a as usize].as_mut() {
                    c.below = cold.below;
                }
            }
            None => {
                // It was the visible one: the rule below takes the row, or the row goes.
                let class = &mut self.classes[cold.class];
                match cold.below {
                    Some(b) => class.set_slot(cold.row, b),
                    None => class.remove_row(cold.row),
                }
            }
        }
        self.classes[cold.class].rules -= 1;
        self.index_rule(cold.class, cold.compiled.ingress, false);
        if let Some(p) = cold.compiled.vxlan_port {
            if let Some(i) = self.vxlan_ports.iter().position(|(q, _)| *q == p) {
                self.vxlan_ports[i].1 -= 1;
                if self.vxlan_ports[i].1 == 0 {
                    self.vxlan_ports.swap_remove(i);
                }
            }
        }
        if cold.compiled.inner {
            self.inner_rules -= 1;
        }
        self.free.push(slot);
        self.rules -= 1;
    }

    /// The best rule of `group` for vector `v` from ingress `port`: its slot.
    #[inline]
    fn lookup(&self, group: u32, port: u16, v: &Vector) -> Option<u32> {
        let g = &self.groups.iter().find(|(n, _)| *n == group)?.1;
        let classes = if g.any_port_rules == 0 { g.by_port.get(&port)? } else { &g.all };
        for &ci in classes {
            let c = &self.classes[ci];
            if c.rules == 0 {
                continue;
            }
            if let Some(slot) = c.find(v) {
                return Some(slot);
            }
        }
        None
    }
}

/// A burst's access to the model: one read lock, one clock reading, counter
/// updates batched per rule.
pub struct Session<'a> {
    model: &'a ModelSwitch,
    tables: RwLockReadGuard<'a, Tables>,
    vxlan_ports: [u16; MAX_VXLAN_PORTS],
    vxlan_count: usize,
    inner: bool,
    empty: bool,
    /// Some port has a VF's MTU to enforce.
    vf_ports: bool,
    now_ms: u64,
    v: Vector,
    /// Counts not yet added to a rule: (slot, packets, bytes).
    pending: Option<(u32, u64, u64)>,
    /// hits, misses, drops, errors, malformed, over_mtu not yet added to
    /// the model's stats.
    counts: [u64; 6],
}

const HITS: usize = 0;
const MISSES: usize = 1;
const DROPS: usize = 2;
const ERRORS: usize = 3;
const MALFORMED: usize = 4;
const OVER_MTU: usize = 5;

/// Length of the L3 packet in `frame` (after Ethernet and up to two tags).
fn l3_len(frame: &[u8]) -> usize {
    let mut off = 14;
    while off <= 22 && frame.len() >= off + 4 && matches!(be16(frame, off - 2), 0x8100 | 0x88a8) {
        off += 4;
    }
    frame.len().saturating_sub(off)
}

impl Session<'_> {
    #[inline]
    fn count(&mut self, slot: u32, bytes: u64) {
        match &mut self.pending {
            Some((s, p, b)) if *s == slot => {
                *p += 1;
                *b += bytes;
            }
            _ => {
                self.flush_counts();
                self.pending = Some((slot, 1, bytes));
            }
        }
    }

    fn flush_counts(&mut self) {
        if let Some((slot, p, b)) = self.pending.take() {
            if let Some(Some(hot)) = self.tables.hot.get(slot as usize) {
                let c = &hot.counters;
                c.packets.fetch_add(p, Ordering::Relaxed);
                c.bytes.fetch_add(b, Ordering::Relaxed);
                c.last_hit_ms.store(self.now_ms, Ordering::Relaxed);
            }
        }
    }

    /// Runs `pkt`, received on ethdev port `ingress`, through the rules. On
    /// [`Verdict::Miss`] the packet is unchanged.
    pub fn process<P: PacketBuf + ?Sized>(&mut self, ingress: u16, pkt: &mut P) -> Verdict {
        if self.vf_ports && self.over_vf_mtu(ingress, pkt.data()) {
            self.counts[OVER_MTU] += 1;
            return Verdict::RxOverMtu;
        }
        if self.empty {
            self.counts[MISSES] += 1;
            return Verdict::Miss;
        }
        let len = pkt.data().len() as u64;
        let ports = &self.vxlan_ports[..self.vxlan_count];
        let mut layers = vector::build(pkt.data(), ingress, ports, self.inner, &mut self.v);
        let mut group = 0;
        let mut edited = false;
        for _ in 0..MAX_JUMPS {
            if edited {
                let ports = &self.vxlan_ports[..self.vxlan_count];
                layers = vector::build(pkt.data(), ingress, ports, self.inner, &mut self.v);
            }
            let Some(slot) = self.tables.lookup(group, ingress, &self.v) else {
                if edited {
                    // Edited by an earlier group, then no rule: a device
                    // would send it on unmatched; the model treats it as an
                    // execution error rather than hand software a changed packet.
                    self.counts[ERRORS] += 1;
                    return Verdict::Error;
                }
                self.counts[MISSES] += 1;
                return Verdict::Miss;
            };
            let Some(Some(hot)) = self.tables.hot.get(slot as usize) else {
                self.counts[ERRORS] += 1;
                return Verdict::Error;
            };
            let fate = hot.fate;
            if !hot.ops.is_empty() {
                if hot.decap && !outer_checksums_ok(pkt.data(), &layers) {
                    // Bad outer checksums: left to software (which counts them).
                    self.counts[MISSES] += 1;
                    return Verdict::Miss;
                }
                if run_ops(&hot.ops, pkt, &layers).is_err() {
                    self.counts[ERRORS] += 1;
                    return Verdict::Error;
                }
                edited = true;
            }
            self.count(slot, len);
            if layers.malformed && matches!(fate, Fate::Output(_)) {
                self.counts[MALFORMED] += 1;
            }
            match fate {
                Fate::Output(port) => {
                    self.counts[HITS] += 1;
                    if self.vf_ports && self.over_vf_mtu(port, pkt.data()) {
                        self.counts[OVER_MTU] += 1;
                        return Verdict::TxOverMtu(port);
                    }
                    return Verdict::Output(port);
                }
                Fate::Drop => {
                    self.counts[HITS] += 1;
                    self.counts[DROPS] += 1;
                    return Verdict::Drop;
                }
                Fate::Jump(g) => group = g,
            }
        }
        self.counts[ERRORS] += 1;
        Verdict::Error
    }

    /// Whether `frame` exceeds the MTU of the VF behind ethdev port `port`.
    #[inline]
    fn over_vf_mtu(&self, port: u16, frame: &[u8]) -> bool {
        let mtu = usize::from(self.tables.vf_mtu.get(usize::from(port)).copied().unwrap_or(0));
        // Headers are at least 14 bytes: most frames pass without reading them.
        mtu != 0 && frame.len() > mtu + 14 && l3_len(frame) > mtu
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        self.flush_counts();
        let s = &self.model.stats;
        for (i, c) in [&s.hits, &s.misses, &s.drops, &s.errors, &s.malformed, &s.over_mtu].into_iter().enumerate() {
            if self.counts[i] != 0 {
                c.fetch_add(self.counts[i], Ordering::Relaxed);
            }
        }
    }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// IPv4 header checksum, and the UDP checksum when it is not zero (IPv6
/// always carries one), of a VXLAN packet about to be decapsulated.
fn outer_checksums_ok(f: &[u8], l: &Layers) -> bool {
    let (Some(l4), true) = (l.l4, l.udp_end <= f.len()) else { return false };
    let udp = &f[l4..l.udp_end];
    let csum = be16(f, l4 + 6);
    let pseudo = if l.ipv6 {
        sum(&f[l.l3 + 8..l.l3 + 40], 0) + 17 + udp.len() as u64
    } else {
        let ihl = usize::from(f[l.l3] & 0x0f) * 4;
        if checksum(&f[l.l3..l.l3 + ihl]) != 0 {
            return false;
        }
        sum(&f[l.l3 + 12..l.l3 + 20], 0) + 17 + udp.len() as u64
    };
    if csum == 0 {
        return !l.ipv6;
    }
    fold(sum(udp, pseudo)) == 0xffff
}

fn tagged(f: &[u8]) -> bool {
    f.len() >= 18 && matches!(be16(f, 12), 0x8100 | 0x88a8)
}

/// Runs a rule's operations. `layers` describe the packet as matched.
fn run_ops<P: PacketBuf + ?Sized>(ops: &[Op], pkt: &mut P, layers: &Layers) -> Result<(), ()> {
    for op in ops {
        match op {
            Op::Decap => {
                let vx = layers.vxlan.ok_or(())?;
                let inner = vx + 8;
                let trailing = pkt.data().len().checked_sub(layers.udp_end).ok_or(())?;
                if !pkt.trim(u16::try_from(trailing).map_err(|_| ())?)
                    || !pkt.adj(u16::try_from(inner).map_err(|_| ())?)
                {
                    return Err(());
                }
            }
            Op::PopVlan => {
                let d = pkt.data_mut();
                if !tagged(d) {
                    return Err(());
                }
                d.copy_within(0..12, 4);
                if !pkt.adj(4) {
                    return Err(());
                }
            }
            Op::PushVlan { tpid, tci } => {
                if pkt.data().len() < 14 {
                    return Err(());
                }
                pkt.prepend(4).ok_or(())?;
                let d = pkt.data_mut();
                d.copy_within(4..16, 0);
                d[12..14].copy_from_slice(&tpid.to_be_bytes());
                d[14..16].copy_from_slice(&tci.to_be_bytes());
            }
            Op::SetVid(vid) => {
                let d = pkt.data_mut();
                if !tagged(d) {
                    return Err(());
                }
                let tci = (be16(d, 14) & 0xf000) | (vid & 0x0fff);
                d[14..16].copy_from_slice(&tci.to_be_bytes());
            }
            Op::SetPcp(pcp) => {
                let d = pkt.data_mut();
                if !tagged(d) {
                    return Err(());
                }
                let tci = (be16(d, 14) & 0x1fff) | (u16::from(*pcp & 7) << 13);
                d[14..16].copy_from_slice(&tci.to_be_bytes());
            }
            Op::SetMacSrc(m) => pkt.data_mut().get_mut(6..12).ok_or(())?.copy_from_slice(m),
            Op::SetMacDst(m) => pkt.data_mut().get_mut(0..6).ok_or(())?.copy_from_slice(m),
            Op::Encap(h) => encap(pkt, h)?,
        }
    }
    Ok(())
}

/// Prepends the encapsulation and fills what a device fills: lengths, the
/// IPv4 header checksum, the UDP source port (from the inner flow, see
/// [`crate::entropy`]) and, over IPv6, the UDP checksum.
fn encap<P: PacketBuf + ?Sized>(pkt: &mut P, h: &EncapHeader) -> Result<(), ()> {
    let sport = vxlan_src_port(&InnerFlow::from_frame(pkt.data()));
    let inner_len = pkt.data().len();
    let l3_len = inner_len + h.len - 14;
    let l3_len16 = u16::try_from(l3_len).map_err(|_| ())?;
    let ip_hdr = if h.ipv6 { 40 } else { 20 };
    let udp_len = (l3_len - ip_hdr) as u16;
    let out = pkt.prepend(h.len as u16).ok_or(())?;
    out.copy_from_slice(&h.bytes[..h.len]);
    let l4 = 14 + ip_hdr;
    if h.ipv6 {
        out[18..20].copy_from_slice(&udp_len.to_be_bytes());
    } else {
        out[16..18].copy_from_slice(&l3_len16.to_be_bytes());
        out[24..26].copy_from_slice(&[0, 0]);
        let c = checksum(&out[14..34]);
        out[24..26].copy_from_slice(&c.to_be_bytes());
    }
    out[l4..l4 + 2].copy_from_slice(&sport.to_be_bytes());
    out[l4 + 4..l4 + 6].copy_from_slice(&udp_len.to_be_bytes());
    out[l4 + 6..l4 + 8].copy_from_slice(&[0, 0]);
    if h.ipv6 {
        let d = pkt.data_mut();
        let acc = sum(&d[22..54], 0) + 17 + u64::from(udp_len);
        let mut c = !fold(sum(&d[l4..], acc));
        if c == 0 {
            c = 0xffff;
        }
        d[l4 + 6..l4 + 8].copy_from_slice(&c.to_be_bytes());
    }
    Ok(())
}

/// The model as a [`FlowDevice`]: rules go in as the lowering's rte_flow
/// arrays, read back and compiled.
#[derive(Debug, Clone)]
pub struct ModelDevice {
    switch: Arc<ModelSwitch>,
}

impl ModelDevice {
    pub fn new(switch: Arc<ModelSwitch>) -> Self {
        Self { switch }
    }

    pub fn switch(&self) -> &Arc<ModelSwitch> {
        &self.switch
    }

    fn compile(&self, op: &'static str, rule: &Lowered) -> Result<Compiled, DeviceError> {
        let raw = rule.raw().map_err(|e| {
            let t = match e.place {
                crate::rte_flow::read::Place::Attr => crate::device::ERROR_TYPE_ATTR,
                crate::rte_flow::read::Place::Item(_) => crate::device::ERROR_TYPE_ITEM,
                crate::rte_flow::read::Place::Action(_) => crate::device::ERROR_TYPE_ACTION,
            };
            DeviceError::new(op, libc_errno::EINVAL, t, format!("model: {e}"))
        })?;
        self.switch.check(&raw).map_err(|e| {
            self.switch.stats.refused.fetch_add(1, Ordering::Relaxed);
            DeviceError { op, ..e }
        })
    }
}

impl InPath for ModelSwitch {
    fn with_session(&self, burst: &mut dyn FnMut(&mut dyn InPathSession)) {
        burst(&mut ModelSwitch::session(self));
    }

    fn rules(&self) -> usize {
        ModelSwitch::rules(self)
    }

    fn malformed_forwarded(&self) -> u64 {
        self.stats.malformed.load(Ordering::Relaxed)
    }
}

impl InPathSession for Session<'_> {
    fn process(&mut self, ingress: u16, pkt: &mut dyn PacketBuf) -> Verdict {
        Session::process(self, ingress, pkt)
    }
}

impl FlowDevice for ModelDevice {
    fn describe(&self) -> String {
        format!("model e-switch (profile {:?}, {} rules max)", self.switch.profile.name, self.switch.profile.max_rules)
    }

    fn validate(&mut self, rule: &Lowered) -> Result<(), DeviceError> {
        self.compile("validate", rule).map(|_| ())
    }

    fn create(&mut self, rule: &Lowered) -> Result<RuleHandle, DeviceError> {
        let c = self.compile("create", rule)?;
        self.switch.insert(c)
    }

    fn destroy(&mut self, handle: RuleHandle) -> Result<Option<HitCounts>, DeviceError> {
        self.switch.remove(handle)
    }

    fn query(&mut self, handle: RuleHandle) -> Result<HitCounts, DeviceError> {
        self.switch.query(handle)
    }

    fn aged(&mut self) -> Result<Vec<u64>, DeviceError> {
        Ok(self.switch.aged())
    }

    fn flush(&mut self) -> Result<usize, DeviceError> {
        Ok(self.switch.flush())
    }

    fn rules(&self) -> usize {
        self.switch.rules()
    }

    fn in_path(&self) -> Option<Arc<dyn InPath>> {
        Some(Arc::clone(&self.switch) as Arc<dyn InPath>)
    }

    fn port_stopped(&mut self, port: u16) -> Vec<(RuleHandle, Option<HitCounts>)> {
        self.switch.port_stopped(port)
    }
}

#[cfg(test)]
mod tests;
