//! The PMD's megaflow entries: a slab with generation-checked handles, so the
//! exact-match cache and the classifier can hold small copyable references
//! that go stale safely when a flow is removed.

use super::counters::DropReason;
use crate::actions::Action;
use crate::flow::table::Rule;
use crate::packet::{FlowKey, FlowMask};
use std::sync::Arc;
use std::time::Duration;

/// A reference to a flow slot; stale once the flow is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FlowHandle {
    pub index: u32,
    pub generation: u32,
}

/// One installed megaflow.
///
/// `repr(C)`, the fields a packet touches first: with the slot's
/// generation, what a cache hit checks and a burst updates (counts, last
/// use, actions, rule, drop reason) sits in the slot's first 64 bytes; the
/// key (read by the megaflow classifier and the signature cache) follows.
#[derive(Debug, Clone)]
#[repr(C)]
pub struct Flow {
    pub packets: u64,
    pub bytes: u64,
    pub used_tsc: u64,
    pub actions: Arc<[Action]>,
    pub rule: Option<Arc<Rule>>,
    /// Set when the actions deliver nothing: the counted reason.
    pub drop_reason: Option<DropReason>,
    /// Hot-flow detection: hit since the last check (on the dirty list).
    pub dirty: bool,
    /// On the engine's watch list (keeping the rate, not reported yet).
    pub watched: bool,
    /// Its mask, interned in the table (see [`FlowTable::mask`]): a few
    /// distinct masks serve millions of megaflows.
    pub mask_id: u32,
    /// Masked key.
    pub key: FlowKey,
    /// Unique in the process: PMD index in the top 16 bits.
    pub id: u64,
    pub created_tsc: u64,
    /// Offload bookkeeping (hot detection, hit reports), made the first
    /// time it is needed: flows of a switch without offload go without.
    pub extra: Option<Box<FlowExtra>>,
    /// When the offload manager last saw it hit in hardware (0: never).
    pub hw_seen_tsc: u64,
    /// The rule-table generation it was last checked against: older than
    /// the engine's while a revalidation has not reached it yet.
    pub table_gen: u32,
}

/// A flow's offload bookkeeping.
#[derive(Debug, Clone, Default)]
pub struct FlowExtra {
    /// Counts last reported to the offload manager (hit deltas).
    pub reported_packets: u64,
    pub reported_bytes: u64,
    /// Packets and time at the last hot check.
    pub check_packets: u64,
    pub check_tsc: u64,
    /// Since when the flow has kept the hot rate, if it has: (time, its
    /// packet count then).
    pub hot_since: Option<(u64, u64)>,
    /// When it was last reported hot (0: never).
    pub hot_reported_tsc: u64,
}

impl FlowExtra {
    /// For a flow created at `created_tsc` (its first rate window starts then).
    pub fn new(created_tsc: u64) -> Box<Self> {
        Box::new(Self { check_tsc: created_tsc, ..Self::default() })
    }
}

// The hot fields end where the key starts, at the slot's 64th byte; the
// reordering kept the slot at 208 bytes.
const _: () = assert!(8 + std::mem::offset_of!(Flow, key) == 64);
const _: () = assert!(std::mem::size_of::<Slot>() == 208);

/// The bytes of a slot a classified packet touches: hot fields and key.
const SLOT_TOUCHED: usize = 8 + std::mem::offset_of!(Flow, key) + std::mem::size_of::<FlowKey>();

/// The generation first: it and the flow's hot fields share a line.
#[repr(C)]
struct Slot {
    generation: u32,
    flow: Option<Flow>,
}

/// Megaflow masks, interned and counted: a flow names its mask by index.
#[derive(Default)]
struct Masks {
    masks: Vec<FlowMask>,
    refs: Vec<u32>,
    free: Vec<u32>,
    ids: hashbrown::HashMap<FlowMask, u32>,
    /// Counts each mask that enters or leaves the set.
    changes: u64,
}

impl Masks {
    fn intern(&mut self, mask: &FlowMask) -> u32 {
        if let Some(&id) = self.ids.get(mask) {
            self.refs[id as usize] += 1;
            return id;
        }
        let id = match self.free.pop() {
            Some(id) => {
                self.masks[id as usize] = *mask;
                self.refs[id as usize] = 1;
                id
            }
            None => {
                self.masks.push(*mask);
                self.refs.push(1);
                (self.masks.len() - 1) as u32
            }
        };
        self.ids.insert(*mask, id);
        self.changes += 1;
        id
    }

    fn release(&mut self, id: u32) {
        let r = &mut self.refs[id as usize];
        *r -= 1;
        if *r == 0 {
            self.ids.remove(&self.masks[id as usize]);
            self.free.push(id);
            self.changes += 1;
        }
    }
}

/// The slab, with an index by flow id when something addresses flows by id
/// (the offload manager's commands; 35 bytes a flow at a million flows, so a
/// switch without offload goes without).
#[derive(Default)]
pub struct FlowTable {
    slots: Vec<Slot>,
    free: Vec<u32>,
    live: usize,
    by_id: Option<hashbrown::HashMap<u64, FlowHandle>>,
    masks: Masks,
}

impl FlowTable {
    /// An empty table; `by_id`: keep the index by flow id ([`FlowTable::by_id`]).
    pub fn new(by_id: bool) -> Self {
        Self { by_id: by_id.then(hashbrown::HashMap::new), ..Self::default() }
    }

    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Adds `flow` with `mask` (its `mask_id` is set here).
    pub fn insert(&mut self, mut flow: Flow, mask: &FlowMask) -> FlowHandle {
        flow.mask_id = self.masks.intern(mask);
        self.live += 1;
        let id = flow.id;
        let h = if let Some(index) = self.free.pop() {
            let slot = &mut self.slots[index as usize];
            slot.flow = Some(flow);
            FlowHandle { index, generation: slot.generation }
        } else {
            self.slots.push(Slot { generation: 0, flow: Some(flow) });
            FlowHandle { index: (self.slots.len() - 1) as u32, generation: 0 }
        };
        if let Some(m) = &mut self.by_id {
            m.insert(id, h);
        }
        h
    }

    /// The handle of the flow with this id, if it is live (and the table
    /// keeps the index).
    pub fn by_id(&self, id: u64) -> Option<FlowHandle> {
        self.by_id.as_ref()?.get(&id).copied().filter(|h| self.is_live(*h))
    }

    #[inline(always)]
    pub fn get(&self, h: FlowHandle) -> Option<&Flow> {
        let slot = self.slots.get(h.index as usize)?;
        if slot.generation != h.generation {
            return None;
        }
        slot.flow.as_ref()
    }

    #[inline(always)]
    pub fn get_mut(&mut self, h: FlowHandle) -> Option<&mut Flow> {
        let slot = self.slots.get_mut(h.index as usize)?;
        if slot.generation != h.generation {
            return None;
        }
        slot.flow.as_mut()
    }

    #[inline(always)]
    pub fn is_live(&self, h: FlowHandle) -> bool {
        self.get(h).is_some()
    }

    /// The mask of `flow` (a flow of this table).
    #[inline(always)]
    pub fn mask(&self, flow: &Flow) -> &FlowMask {
        &self.masks.masks[flow.mask_id as usize]
    }

    /// A count that changes whenever the set of live flows' masks does
    /// (see [`FlowTable::sole_mask`]).
    #[inline(always)]
    pub fn mask_changes(&self) -> u64 {
        self.masks.changes
    }

    /// The mask of every live flow, when they all have one mask (and there
    /// are live flows): its id and value.
    pub fn sole_mask(&self) -> Option<(u32, &FlowMask)> {
        if self.masks.ids.len() != 1 {
            return None;
        }
        self.masks.ids.values().next().map(|&id| (id, &self.masks.masks[id as usize]))
    }

    /// Removes the flow; returns it with its mask.
    pub fn remove(&mut self, h: FlowHandle) -> Option<(Flow, FlowMask)> {
        let slot = self.slots.get_mut(h.index as usize)?;
        if slot.generation != h.generation {
            return None;
        }
        let flow = slot.flow.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(h.index);
        self.live -= 1;
        if let Some(m) = &mut self.by_id {
            m.remove(&flow.id);
        }
        let mask = self.masks.masks[flow.mask_id as usize];
        self.masks.release(flow.mask_id);
        Some((flow, mask))
    }

    /// Starts loading what of slot `index` a cache hit checks and the
    /// burst's execution updates (generation, counts, actions): its first
    /// 64 bytes, on one or two lines.
    #[inline(always)]
    pub fn prefetch_hot(&self, index: u32) {
        if let Some(s) = self.slots.get(index as usize) {
            crate::arch::prefetch_span(s, 64);
        }
    }

    /// Starts loading slot `index`'s flow key and hot fields (a cache's
    /// candidate: compared, then checked and updated). Reads nothing of the
    /// slot itself: a load of it here would wait for the miss it hints.
    #[inline(always)]
    pub fn prefetch(&self, index: u32) {
        if let Some(s) = self.slots.get(index as usize) {
            crate::arch::prefetch_span(s, SLOT_TOUCHED);
        }
    }

    /// Slots in the slab (live or free): the bound of [`FlowTable::handle_at`].
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// The handle of the live flow in slot `index`, if any (walks without
    /// allocating).
    #[inline]
    pub fn handle_at(&self, index: usize) -> Option<FlowHandle> {
        let s = self.slots.get(index)?;
        s.flow.as_ref().map(|_| FlowHandle { index: index as u32, generation: s.generation })
    }

    /// Handles of every live flow.
    pub fn handles(&self) -> Vec<FlowHandle> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.flow.is_some())
            .map(|(i, s)| FlowHandle { index: i as u32, generation: s.generation })
            .collect()
    }
}

impl crate::flow::FlowKeys for FlowTable {
    #[inline(always)]
    fn key_at(&self, index: u32) -> Option<&FlowKey> {
        self.slots.get(index as usize)?.flow.as_ref().map(|f| &f.key)
    }

    #[inline(always)]
    fn prefetch_key(&self, index: u32) {
        self.prefetch(index);
    }
}

/// What the offload manager (and anything else listening) learns about flows.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant, reason = "sent once per flow install, by value through a channel")]
pub enum FlowEvent {
    Installed {
        id: u64,
        pmd: usize,
        key: FlowKey,
        mask: FlowMask,
        actions: Arc<[Action]>,
        /// The rule that decided it.
        rule: Option<u64>,
        /// Through several tables: the rules before it, which its packets
        /// count for too (empty, without an allocation, for one table).
        via: Box<[u64]>,
    },
    /// Packets/bytes since the last report.
    Hits {
        id: u64,
        packets: u64,
        bytes: u64,
    },
    Removed {
        id: u64,
        reason: RemoveReason,
    },
    /// The flow has kept at least the hot rate for the hot time (reported
    /// again about every 100 ms while it stays hot in software).
    Hot {
        id: u64,
        pps: u64,
        /// How long it has kept the rate (at least the hot time).
        hot_for: Duration,
    },
}

impl FlowEvent {
    /// The flow the event is about.
    pub fn id(&self) -> u64 {
        match self {
            FlowEvent::Installed { id, .. }
            | FlowEvent::Hits { id, .. }
            | FlowEvent::Removed { id, .. }
            | FlowEvent::Hot { id, .. } => *id,
        }
    }
}

/// Events travel in batches (one channel operation per PMD iteration).
pub type EventBatch = Vec<FlowEvent>;

/// Why a flow left the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RemoveReason {
    Idle,
    Revalidated,
    Replaced,
    Shutdown,
    /// The offload manager asked (aged out in both tiers).
    Aged,
    /// Made room in a full table.
    Evicted,
}

/// A flow as shown by dump-flows.
#[derive(Debug, Clone)]
pub struct FlowInfo {
    pub id: u64,
    pub pmd: usize,
    pub key: FlowKey,
    pub mask: FlowMask,
    pub actions: Arc<[Action]>,
    pub rule: Option<(u64, u32)>,
    /// Through several tables: the rules before `rule`, which its packets
    /// count for too.
    pub via: Box<[u64]>,
    pub packets: u64,
    pub bytes: u64,
    pub age_ms: u64,
    pub idle_ms: u64,
    /// Whether the exact-match cache holds entries for it.
    pub in_emc: bool,
}
