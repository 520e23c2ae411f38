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
//! Prefix checks (as Open vSwitch's prefix tries, on sorted arrays): when the
//! stage that first consults an address misses (or the final lookup, when no
//! stage does), a subtable whose mask holds a prefix of `nw_dst` or `nw_src`
//! looks the packet's prefix up among its rules' prefixes. When none has it,
//! the subtable cannot match for the address alone, and the megaflow
//! needs only the leading bits that tell the packet's address apart from the
//! nearest rule prefix (one more than their common prefix), rounded up to a
//! prefix length some subtable uses (so that the number of distinct megaflow
//! masks stays bounded by the rules' own lengths). A rule on 10.1.2.3/32 then
//! no longer makes every address its own megaflow: traffic from 10.7.0.0/16
//! is told apart from it by its first 14 bits, rounded up to /16.
//!
//! Ties: among matching rules of equal priority, the one added first (lowest
//! [`RuleId`]) wins.

use super::hash::MaskWords;
use crate::actions::Action;
use crate::packet::{Field, FlowKey, FlowMask};
use hashbrown::HashTable;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

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

/// A rule: match, priority, actions, in one of the OpenFlow tables, and
/// the table the packet goes on to (`goto_table`), if any.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rule {
    pub id: RuleId,
    /// Its table (0: where every packet starts).
    pub table: u8,
    pub priority: u32,
    pub matcher: Match,
    pub actions: Vec<Action>,
    /// The next table (always a higher one) after the actions.
    pub goto: Option<u8>,
    /// For a decision through several tables (see [`RuleTable::classify`](super::RuleTable::classify)):
    /// the rules matched before this one, which its packets count for too.
    /// Empty for a rule in a table.
    pub via: Box<[RuleId]>,
}

impl Rule {
    /// The rules its packets count for: those it was reached through, then
    /// itself.
    pub fn credited(&self) -> impl Iterator<Item = RuleId> + '_ {
        self.via.iter().copied().chain(std::iter::once(self.id))
    }

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

/// Address fields with prefix checks, in the order they are tried.
const PREFIX_FIELDS: [Field; 2] = [Field::NwDst, Field::NwSrc];

/// Left-aligned 128-bit prefix mask of `len` bits.
#[inline(always)]
fn prefix128(len: u32) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - len.min(128))
    }
}

/// The prefix length of a field mask, when it is a prefix (IPv4 prefixes are
/// /96 + n in the 128-bit field: the `::ffff` marker is part of them).
fn prefix_len(mask: u128) -> Option<u32> {
    let len = mask.leading_ones();
    (mask != 0 && mask == prefix128(len)).then_some(len)
}

/// The values either side of where `x` sorts in `sorted`, or `None` when
/// `x` is there.
#[inline]
fn neighbours<T: Copy + Ord>(sorted: &[T], x: T) -> Option<(Option<T>, Option<T>)> {
    let i = sorted.partition_point(|&v| v < x);
    let above = sorted.get(i).copied();
    if above == Some(x) {
        return None;
    }
    Some((i.checked_sub(1).map(|j| sorted[j]), above))
}

/// One subtable's rules' values of an address field it matches by prefix.
#[derive(Clone)]
struct PrefixIndex {
    field: Field,
    len: u32,
    /// Distinct values (masked to `len`) with how many rules have each: a
    /// B-tree, so that a million rules in one subtable insert in O(log n).
    values: BTreeMap<u128, u32>,
    /// The sorted array the search runs on, built by the first lookup after
    /// a change (a table is changed on a clone, then shared read-only).
    search: OnceLock<PrefixSearch>,
}

/// The values as a sorted array; with their low halves apart when all share
/// the high half (IPv4 always does: `::ffff:a.b.c.d`), so that each search
/// step compares 8 bytes.
#[derive(Clone, Default)]
struct PrefixSearch {
    high: Option<u64>,
    low: Vec<u64>,
    values: Vec<u128>,
}

impl PrefixIndex {
    fn new(field: Field, len: u32) -> Self {
        Self { field, len, values: BTreeMap::new(), search: OnceLock::new() }
    }

    fn add(&mut self, key: &FlowKey) {
        *self.values.entry(key.get(self.field)).or_insert(0) += 1;
        self.search = OnceLock::new();
    }

    fn remove(&mut self, key: &FlowKey) {
        let v = key.get(self.field);
        if let Some(n) = self.values.get_mut(&v) {
            *n -= 1;
            if *n == 0 {
                self.values.remove(&v);
            }
        }
        self.search = OnceLock::new();
    }

    fn build(&self) -> PrefixSearch {
        let values: Vec<u128> = self.values.keys().copied().collect();
        let high = values.first().map(|v| (v >> 64) as u64).filter(|&h| values.iter().all(|v| (v >> 64) as u64 == h));
        match high {
            Some(_) => PrefixSearch { high, low: values.iter().map(|&v| v as u64).collect(), values: Vec::new() },
            None => PrefixSearch { high, low: Vec::new(), values },
        }
    }

    /// `None` when some rule has the packet's prefix; otherwise how many
    /// leading bits of the field prove that none has: one more than the
    /// longest common prefix with a rule's value (the nearest values on
    /// either side have the longest), never more than `len`.
    #[inline]
    fn miss_bits(&self, key: &FlowKey) -> Option<u32> {
        let x = key.get(self.field) & prefix128(self.len);
        let s = self.search.get_or_init(|| self.build());
        // Widened, the low halves give the full common prefix (+ the 64
        // shared high bits); an absent neighbour shares nothing.
        let common = match s.high {
            Some(h) if (x >> 64) as u64 != h => ((x >> 64) as u64 ^ h).leading_zeros(),
            Some(_) => {
                let (below, above) = neighbours(&s.low, x as u64)?;
                let lcp = |v: Option<u64>| v.map_or(0, |v| 64 + (v ^ x as u64).leading_zeros());
                lcp(below).max(lcp(above))
            }
            None => {
                let (below, above) = neighbours(&s.values, x)?;
                let lcp = |v: Option<u128>| v.map_or(0, |v| (v ^ x).leading_zeros());
                lcp(below).max(lcp(above))
            }
        };
        Some((common + 1).min(self.len))
    }
}

#[derive(Clone)]
struct Subtable {
    keyer: MaskWords,
    /// Rules by masked key; each list ordered best first.
    rules: HashTable<(FlowKey, Vec<Arc<Rule>>)>,
    stages: Vec<Stage>,
    /// Prefix checks, tried when `stages[prefix_at]` misses (or the final
    /// lookup, when `prefix_at == stages.len()`).
    prefixes: Vec<PrefixIndex>,
    prefix_at: usize,
    max_priority: u32,
    /// Rules per priority (the highest is `max_priority`, kept in O(log n)
    /// when rules go).
    priorities: BTreeMap<u32, usize>,
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
        let stages: Vec<Stage> = stage_masks(&mask)
            .into_iter()
            .map(|m| Stage { keyer: MaskWords::new(&m), index: HashTable::new() })
            .collect();
        let prefixes: Vec<PrefixIndex> = PREFIX_FIELDS
            .iter()
            .filter_map(|&field| prefix_len(mask.get(field)).map(|len| PrefixIndex::new(field, len)))
            .collect();
        let consults_address = |m: &FlowMask| PREFIX_FIELDS.iter().any(|&f| m.get(f) != 0);
        let prefix_at = stages.iter().position(|s| consults_address(&s.keyer.mask)).unwrap_or(stages.len());
        Self {
            keyer: MaskWords::new(&mask),
            rules: HashTable::new(),
            stages,
            prefixes,
            prefix_at,
            max_priority: 0,
            priorities: BTreeMap::new(),
            count: 0,
        }
    }

    /// The prefix check: `Some((field, bits))` when the packet's address
    /// cannot match any rule here, proved by the leading `bits` of `field`
    /// (rounded up by `round`). Of the fields that miss, the one whose proof
    /// adds the fewest bits to the megaflow mask built so far wins.
    #[inline]
    fn prefix_miss(&self, key: &FlowKey, so_far: &FlowMask, round: impl Fn(Field, u32) -> u32) -> Option<(Field, u32)> {
        let mut best: Option<(u32, Field, u32)> = None;
        for p in &self.prefixes {
            if let Some(bits) = p.miss_bits(key) {
                let bits = round(p.field, bits);
                let added = bits.saturating_sub(so_far.get(p.field).leading_ones());
                if best.is_none_or(|(a, _, b)| (added, bits) < (a, b)) {
                    best = Some((added, p.field, bits));
                }
            }
        }
        best.map(|(_, field, bits)| (field, bits))
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

/// The answer of [`RuleTable::classify`](super::RuleTable::classify).
#[derive(Debug, Clone)]
pub struct Classification {
    /// The winning rule, or `None` when nothing matched.
    pub rule: Option<Arc<Rule>>,
    /// The megaflow mask: the fields the decision depended on.
    pub mask: FlowMask,
    /// Subtables visited (a cost measure).
    pub subtables_visited: usize,
}

/// One table's rules. Cloning shares subtables (copy on write), so the
/// control plane edits a clone and publishes it as a new snapshot.
#[derive(Clone)]
pub(super) struct Classifier {
    subtables: Vec<Arc<Subtable>>,
    /// Per [`PREFIX_FIELDS`] entry: the prefix lengths the subtables use,
    /// ascending (a prefix check's bits are rounded up to one of them).
    prefix_lens: [Vec<u32>; 2],
    /// Whether classification runs the prefix checks (on by default).
    prefix_checks: bool,
    count: usize,
}

impl Default for Classifier {
    fn default() -> Self {
        Self { subtables: Vec::new(), prefix_lens: Default::default(), prefix_checks: true, count: 0 }
    }
}

impl Classifier {
    /// Turns the prefix checks on or off: off, a subtable that cannot match
    /// puts its whole stage mask into the megaflow (as wide as the addresses
    /// its rules consult), and classification skips the searches.
    pub fn set_prefix_checks(&mut self, on: bool) {
        self.prefix_checks = on;
    }

    /// A copy that shares nothing with this table (editing either never
    /// copies the other's subtables).
    pub fn deep_clone(&self) -> Self {
        let mut t = self.clone();
        for st in &mut t.subtables {
            *st = Arc::new(Subtable::clone(st));
        }
        t
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Number of distinct masks.
    pub fn subtable_count(&self) -> usize {
        self.subtables.len()
    }

    /// Adds a rule (its match already masked).
    pub fn insert(&mut self, rule: Rule) {
        let (matcher, priority) = (rule.matcher, rule.priority);
        let rule = Arc::new(rule);
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
        for p in &mut st.prefixes {
            p.add(&matcher.key);
        }
        st.max_priority = st.max_priority.max(priority);
        *st.priorities.entry(priority).or_default() += 1;
        st.count += 1;
        self.count += 1;
        self.sort();
    }

    /// Removes a rule by id.
    pub fn remove(&mut self, id: RuleId) -> Option<Arc<Rule>> {
        let (si, key) = self.find_id(id)?;
        self.remove_in(si, key, id)
    }

    /// Removes a rule by id when its match is known: no search of the
    /// other subtables (bulk deletes stay linear).
    pub fn remove_at(&mut self, id: RuleId, matcher: &Match) -> Option<Arc<Rule>> {
        let (si, key) = self.locate(matcher)?;
        self.remove_in(si, key, id)
    }

    /// The subtable with `matcher`'s mask and the masked key.
    fn locate(&self, matcher: &Match) -> Option<(usize, FlowKey)> {
        let si = self.subtables.iter().position(|s| *s.mask() == matcher.mask)?;
        Some((si, matcher.key.masked(&matcher.mask)))
    }

    /// The subtable and key holding rule `id` (a search of every rule).
    fn find_id(&self, id: RuleId) -> Option<(usize, FlowKey)> {
        self.subtables.iter().enumerate().find_map(|(si, st)| {
            st.rules.iter().find(|(_, list)| list.iter().any(|r| r.id == id)).map(|(k, _)| (si, *k))
        })
    }

    fn remove_in(&mut self, si: usize, key: FlowKey, id: RuleId) -> Option<Arc<Rule>> {
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
        for p in &mut st.prefixes {
            p.remove(&key);
        }
        st.count -= 1;
        self.count -= 1;
        if let std::collections::btree_map::Entry::Occupied(mut e) = st.priorities.entry(removed.priority) {
            *e.get_mut() -= 1;
            if *e.get() == 0 {
                e.remove();
            }
        }
        if st.count == 0 {
            self.subtables.remove(si);
        } else {
            st.max_priority = st.priorities.keys().next_back().copied().unwrap_or(0);
        }
        self.sort();
        Some(removed)
    }

    /// A rule by id when its match is known (no search).
    pub fn get_at(&self, id: RuleId, matcher: &Match) -> Option<&Arc<Rule>> {
        let (si, key) = self.locate(matcher)?;
        let st = &self.subtables[si];
        let (_, list) = st.rules.find(st.keyer.hash(&key), |e| e.0 == key)?;
        list.iter().find(|r| r.id == id)
    }

    /// Gives a rule new actions and next table, keeping its id, priority
    /// and match (an OpenFlow modify: the rule's counters, kept by id, carry
    /// on). Returns whether the rule was there.
    pub fn set_actions(&mut self, id: RuleId, matcher: &Match, actions: Vec<Action>, goto: Option<u8>) -> bool {
        let Some((si, key)) = self.locate(matcher) else { return false };
        let st = Arc::make_mut(&mut self.subtables[si]);
        let keyer = st.keyer;
        let Some(entry) = st.rules.find_mut(keyer.hash(&key), |e| e.0 == key) else { return false };
        match entry.1.iter_mut().find(|r| r.id == id) {
            Some(r) => {
                *r = Arc::new(Rule { actions, goto, ..Rule::clone(r) });
                true
            }
            None => false,
        }
    }

    fn sort(&mut self) {
        self.subtables.sort_by_key(|st| std::cmp::Reverse(st.max_priority));
        for (i, lens) in self.prefix_lens.iter_mut().enumerate() {
            lens.clear();
            lens.extend(
                self.subtables
                    .iter()
                    .flat_map(|st| &st.prefixes)
                    .filter(|p| p.field == PREFIX_FIELDS[i])
                    .map(|p| p.len),
            );
            lens.sort_unstable();
            lens.dedup();
        }
    }

    /// `bits` rounded up to the next prefix length the table uses for `field`.
    fn round_prefix(&self, field: Field, bits: u32) -> u32 {
        let lens = &self.prefix_lens[PREFIX_FIELDS.iter().position(|&f| f == field).unwrap_or(0)];
        lens.get(lens.partition_point(|&l| l < bits)).copied().unwrap_or(bits)
    }

    /// Every rule, best first within each subtable.
    pub fn rules(&self) -> impl Iterator<Item = &Arc<Rule>> {
        self.subtables.iter().flat_map(|st| st.rules.iter().flat_map(|(_, l)| l))
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
            // A stage miss proves the subtable cannot match; at the stage
            // that first consults an address (or the final lookup), the
            // prefix check may prove it with fewer bits. It runs only then:
            // a present cut-down key means the prefixes are present too.
            // (Pointless, and skipped, when the mask so far covers the stage's.)
            let narrowed = |at: usize, stage_mask: &FlowMask, mask: &mut FlowMask| {
                if !self.prefix_checks || at != st.prefix_at || stage_mask.is_subset_of(mask) {
                    return false;
                }
                let Some((field, bits)) = st.prefix_miss(key, mask, |f, b| self.round_prefix(f, b)) else {
                    return false;
                };
                mask.set(field, mask.get(field) | prefix128(bits));
                // The address means nothing without the EtherType (ARP's
                // addresses share the field), and a NIC cannot match an IP
                // address without it: it goes along, as in the stage's mask.
                mask.set(Field::EthType, mask.get(Field::EthType) | st.mask().get(Field::EthType));
                true
            };
            if let Some((i, stage)) = st.stages.iter().enumerate().find(|(_, stage)| !stage.has(key)) {
                if !narrowed(i, &stage.keyer.mask, &mut mask) {
                    mask.union_with(&stage.keyer.mask);
                }
                continue;
            }
            let Some(list) = st.find(key) else {
                if !narrowed(st.stages.len(), st.mask(), &mut mask) {
                    mask.union_with(st.mask());
                }
                continue;
            };
            mask.union_with(st.mask());
            if let Some(candidate) = list.first() {
                if best.is_none_or(|b| candidate.beats(b)) {
                    best = Some(candidate);
                }
            }
        }
        Classification { rule: best.cloned(), mask, subtables_visited: visited }
    }
}
