//! The slow path's priority rule table.
//!
//! Rules are grouped by mask into subtables (tuple space), each a hash map from
//! masked key to its rules. Classification visits subtables from the highest
//! priority they hold down, stops once no remaining subtable can beat the best
//! match, and returns the union of the visited subtables' masks as the
//! megaflow mask: any packet equal to this one under that mask gets the same
//! hash-map answers in every visited subtable, hence the same rule.
//!
//! Staged lookup (as Open vSwitch's classifier): each subtable also indexes
//! its rules' keys cut down to metadata, then + L2, then + L3. When a packet's
//! cut-down key is absent at some stage, no rule of that subtable can match,
//! and only that stage's fields go into the megaflow mask. So a packet from
//! vf0 that meets a subtable of `in_port=uplink0,dl_dst=...` rules adds only
//! `in_port`, not `dl_dst`, to its megaflow.
//!
//! Ties: among matching rules of equal priority, the one added first (lowest
//! [`RuleId`]) wins.

use super::hash::MaskWords;
use crate::actions::Action;
use crate::packet::{Field, FlowKey, FlowMask};
use hashbrown::HashTable;
use std::sync::Arc;

/// Rule identity, increasing in insertion order.
pub type RuleId = u64;

/// A match: masked key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Match {
    pub key: FlowKey,
    pub mask: FlowMask,
}

impl Match {
    /// Matches every packet.
    pub fn any() -> Self {
        Self::default()
    }

    /// Adds `field == value` under `mask` bits (right-aligned).
    pub fn with_masked(mut self, field: Field, value: u128, mask: u128) -> Self {
        let mask = mask & field.full();
        let old = self.mask.get(field);
        self.mask.set(field, old | mask);
        let v = (self.key.get(field) & !mask) | (value & mask);
        self.key.set(field, v);
        self.key = self.key.masked(&self.mask);
        self
    }

    /// Adds `field == value` on all bits.
    pub fn with(self, field: Field, value: u128) -> Self {
        self.with_masked(field, value, field.full())
    }

    /// Whether `key` satisfies the match.
    pub fn matches(&self, key: &FlowKey) -> bool {
        key.eq_masked(&self.key, &self.mask)
    }
}

/// A rule: match, priority, actions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub id: RuleId,
    pub priority: u32,
    pub matcher: Match,
    pub actions: Vec<Action>,
}

impl Rule {
    /// Whether `self` wins over `other` (higher priority; on a tie, older).
    #[inline]
    pub fn beats(&self, other: &Rule) -> bool {
        self.priority > other.priority || (self.priority == other.priority && self.id < other.id)
    }
}

/// A lookup stage: the subtable's mask cut down to some fields, and how
/// many rules have each cut-down key, by hash only: a collision can only
/// make a stage look present, which costs a further stage (and a more
/// specific megaflow), never a wrong answer (the final lookup is exact).
#[derive(Clone)]
struct Stage {
    keyer: MaskWords,
    /// (hash of the cut-down key, rules with it).
    index: HashTable<(u64, u32)>,
}

impl Stage {
    fn add(&mut self, key: &FlowKey) {
        let h = self.keyer.quick_hash(key);
        match self.index.find_mut(h, |e| e.0 == h) {
            Some(e) => e.1 += 1,
            None => {
                self.index.insert_unique(h, (h, 1), |e| e.0);
            }
        }
    }

    fn remove(&mut self, key: &FlowKey) {
        let h = self.keyer.quick_hash(key);
        if let Ok(mut e) = self.index.find_entry(h, |e| e.0 == h) {
            e.get_mut().1 -= 1;
            if e.get().1 == 0 {
                e.remove();
            }
        }
    }

    #[inline(always)]
    fn has(&self, key: &FlowKey) -> bool {
        let h = self.keyer.quick_hash(key);
        self.index.find(h, |e| e.0 == h).is_some()
    }
}

#[derive(Clone)]
struct Subtable {
    keyer: MaskWords,
    /// Rules by masked key; each list ordered best first.
    rules: HashTable<(FlowKey, Vec<Arc<Rule>>)>,
    stages: Vec<Stage>,
    max_priority: u32,
    count: usize,
}

/// Fields of each lookup stage, cumulative: metadata, + L2, + L3 (L4 is the
/// full mask).
const STAGES: [&[Field]; 3] = [
    &[Field::InPort, Field::TunId, Field::TunFlags, Field::TunSrc, Field::TunDst],
    &[Field::EthSrc, Field::EthDst, Field::EthType, Field::VlanTci, Field::VlanTci2],
    &[Field::NwSrc, Field::NwDst, Field::IpProto, Field::IpTos, Field::IpTtl, Field::IpFrag],
];

fn stage_masks(mask: &FlowMask) -> Vec<FlowMask> {
    let mut cumulative = FlowMask::default();
    let mut out: Vec<FlowMask> = Vec::new();
    for fields in STAGES {
        for f in fields {
            cumulative.exact(*f);
        }
        let stage = FlowMask(mask.0.masked(&cumulative));
        // Skip empty stages, stages that add nothing, and the full mask.
        if stage.is_catch_all() || out.last() == Some(&stage) || stage == *mask {
            continue;
        }
        out.push(stage);
    }
    out
}

impl Subtable {
    fn new(mask: FlowMask) -> Self {
        let stages = stage_masks(&mask)
            .into_iter()
            .map(|m| Stage { keyer: MaskWords::new(&m), index: HashTable::new() })
            .collect();
        Self { keyer: MaskWords::new(&mask), rules: HashTable::new(), stages, max_priority: 0, count: 0 }
    }

    fn mask(&self) -> &FlowMask {
        &self.keyer.mask
    }

    /// The rules whose masked key `key` has (`key` need not be masked).
    #[inline(always)]
    fn find(&self, key: &FlowKey) -> Option<&Vec<Arc<Rule>>> {
        self.rules.find(self.keyer.hash(key), |e| self.keyer.matches(&e.0, key)).map(|e| &e.1)
    }
}

/// The answer of [`RuleTable::classify`].
#[derive(Debug, Clone)]
pub struct Classification {
    /// The winning rule, or `None` when nothing matched.
    pub rule: Option<Arc<Rule>>,
    /// The megaflow mask: the fields the decision depended on.
    pub mask: FlowMask,
    /// Subtables visited (a cost measure).
    pub subtables_visited: usize,
}

/// The priority rule table. Cloning shares subtables (copy on write), so the
/// control plane edits a clone and publishes it as a new snapshot.
#[derive(Clone, Default)]
pub struct RuleTable {
    subtables: Vec<Arc<Subtable>>,
    next_id: RuleId,
    count: usize,
}

impl RuleTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Number of distinct masks.
    pub fn subtable_count(&self) -> usize {
        self.subtables.len()
    }

    /// Adds a rule and returns its id.
    pub fn insert(&mut self, priority: u32, matcher: Match, actions: Vec<Action>) -> RuleId {
        let id = self.next_id;
        self.next_id += 1;
        let matcher = Match { key: matcher.key.masked(&matcher.mask), mask: matcher.mask };
        let rule = Arc::new(Rule { id, priority, matcher, actions });
        let idx = match self.subtables.iter().position(|s| *s.mask() == matcher.mask) {
            Some(i) => i,
            None => {
                self.subtables.push(Arc::new(Subtable::new(matcher.mask)));
                self.subtables.len() - 1
            }
        };
        let st = &mut Arc::make_mut(&mut self.subtables[idx]);
        let keyer = st.keyer;
        let hash = keyer.hash(&matcher.key);
        let list = match st.rules.find_mut(hash, |e| e.0 == matcher.key) {
            Some(e) => &mut e.1,
            None => &mut st.rules.insert_unique(hash, (matcher.key, Vec::new()), |e| keyer.hash(&e.0)).into_mut().1,
        };
        let pos = list.iter().position(|r| rule.beats(r)).unwrap_or(list.len());
        list.insert(pos, rule);
        for stage in &mut st.stages {
            stage.add(&matcher.key);
        }
        st.max_priority = st.max_priority.max(priority);
        st.count += 1;
        self.count += 1;
        self.sort();
        id
    }

    /// Removes a rule by id.
    pub fn remove(&mut self, id: RuleId) -> Option<Arc<Rule>> {
        let (si, key) = self.subtables.iter().enumerate().find_map(|(si, st)| {
            st.rules.iter().find(|(_, list)| list.iter().any(|r| r.id == id)).map(|(k, _)| (si, *k))
        })?;
        let st = &mut Arc::make_mut(&mut self.subtables[si]);
        let keyer = st.keyer;
        let Ok(mut entry) = st.rules.find_entry(keyer.hash(&key), |e| e.0 == key) else { return None };
        let list = &mut entry.get_mut().1;
        let pos = list.iter().position(|r| r.id == id)?;
        let removed = list.remove(pos);
        if list.is_empty() {
            entry.remove();
        }
        for stage in &mut st.stages {
            stage.remove(&key);
        }
        st.count -= 1;
        self.count -= 1;
        if st.count == 0 {
            self.subtables.remove(si);
        } else {
            st.max_priority = st.rules.iter().filter_map(|(_, l)| l.first()).map(|r| r.priority).max().unwrap_or(0);
        }
        self.sort();
        Some(removed)
    }

    fn sort(&mut self) {
        self.subtables.sort_by_key(|st| std::cmp::Reverse(st.max_priority));
    }

    /// Every rule, best first within each subtable.
    pub fn rules(&self) -> impl Iterator<Item = &Arc<Rule>> {
        self.subtables.iter().flat_map(|st| st.rules.iter().flat_map(|(_, l)| l))
    }

    /// Finds a rule by id.
    pub fn get(&self, id: RuleId) -> Option<&Arc<Rule>> {
        self.rules().find(|r| r.id == id)
    }

    /// The best rule for `key` and the megaflow mask of what was consulted.
    pub fn classify(&self, key: &FlowKey) -> Classification {
        let mut best: Option<&Arc<Rule>> = None;
        let mut mask = FlowMask::default();
        let mut visited = 0;
        for st in &self.subtables {
            if best.is_some_and(|b| st.max_priority < b.priority) {
                break;
            }
            visited += 1;
            if let Some(stage) = st.stages.iter().find(|stage| !stage.has(key)) {
                mask.union_with(&stage.keyer.mask);
                continue;
            }
            mask.union_with(st.mask());
            if let Some(candidate) = st.find(key).and_then(|l| l.first()) {
                if best.is_none_or(|b| candidate.beats(b)) {
                    best = Some(candidate);
                }
            }
        }
        Classification { rule: best.cloned(), mask, subtables_visited: visited }
    }
}
