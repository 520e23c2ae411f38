//! The rule tables as one pipeline (OpenFlow's `goto_table`).
//!
//! Every packet starts in table 0. A rule with a next table sends the packet
//! on after its actions: the next table is looked up with the key as those
//! actions left it (a `mod_dl_dst` before `goto_table:1` is what table 1
//! sees), and so on until a rule without a next table, or a table with no
//! match (the packet stops there: the actions so far stand, nothing more is
//! done, as OpenFlow's table miss without a table-miss entry). A next table
//! is always a higher one, so the walk ends.
//!
//! The decision is one megaflow: its actions are the walked rules' actions in
//! order, and its mask is the union of what every visited table consulted,
//! on the packet's own key. That is exact, if at times finer than needed: two
//! packets alike under it meet the same rules in table 0, get the same
//! actions, so come to the next table with keys alike under it too.
//!
//! A decision through one table is that table's rule itself (no copy, no
//! allocation: the single-table path is what it was). Through several it is
//! a rule made for it: the last rule matched, with the actions of the walk
//! and the ids of the rules before it in [`Rule::via`], which the flow's
//! packets count for as well.

use super::table::{Classification, Classifier, Match, Rule, RuleId};
use crate::actions::Action;
use crate::packet::key::VLAN_PRESENT;
use crate::packet::{Field, FlowKey};
use std::sync::Arc;

/// Table ids run from 0 to this, less one.
pub const MAX_TABLES: usize = 254;

/// The rule tables. Cloning shares subtables (copy on write), so the
/// control plane edits a clone and publishes it as a new snapshot.
#[derive(Clone)]
pub struct RuleTable {
    /// By table id; grown to the highest table holding a rule.
    tables: Vec<Classifier>,
    prefix_checks: bool,
    next_id: RuleId,
    count: usize,
}

impl Default for RuleTable {
    fn default() -> Self {
        Self { tables: vec![Classifier::default()], prefix_checks: true, next_id: 0, count: 0 }
    }
}

impl RuleTable {
    /// Empty tables.
    pub fn new() -> Self {
        Self::default()
    }

    /// Turns the prefix checks on or off: off, a subtable that cannot match
    /// puts its whole stage mask into the megaflow (as wide as the addresses
    /// its rules consult), and classification skips the searches.
    pub fn set_prefix_checks(&mut self, on: bool) {
        self.prefix_checks = on;
        for t in &mut self.tables {
            t.set_prefix_checks(on);
        }
    }

    /// Whether the prefix checks run.
    pub fn prefix_checks(&self) -> bool {
        self.prefix_checks
    }

    /// A copy that shares nothing with this one (editing either never
    /// copies the other's subtables).
    pub fn deep_clone(&self) -> Self {
        Self { tables: self.tables.iter().map(Classifier::deep_clone).collect(), ..*self }
    }

    /// Number of rules, in every table.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether no table has a rule.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Number of rules in `table`.
    pub fn table_len(&self, table: u8) -> usize {
        self.tables.get(usize::from(table)).map_or(0, Classifier::len)
    }

    /// Number of distinct masks, in every table.
    pub fn subtable_count(&self) -> usize {
        self.tables.iter().map(Classifier::subtable_count).sum()
    }

    /// Adds a rule to table 0 and returns its id.
    pub fn insert(&mut self, priority: u32, matcher: Match, actions: Vec<Action>) -> RuleId {
        self.add(Rule { priority, matcher, actions, ..Rule::default() })
    }

    /// Adds a rule (its `id` is ignored: the table gives one) and returns
    /// its id.
    pub fn add(&mut self, rule: Rule) -> RuleId {
        self.insert_with_id(Rule { id: self.next_id, ..rule })
    }

    /// Adds a rule under its own id (a copy of a table replaying another's
    /// edits); later ids follow it. A next table that is not a higher one
    /// is dropped (callers check it: see [`RuleTable::valid_goto`]).
    pub fn insert_with_id(&mut self, mut rule: Rule) -> RuleId {
        self.next_id = self.next_id.max(rule.id + 1);
        rule.matcher = Match { key: rule.matcher.key.masked(&rule.matcher.mask), mask: rule.matcher.mask };
        rule.goto = rule.goto.filter(|&g| Self::valid_goto(rule.table, g));
        let id = rule.id;
        rule.table = rule.table.min((MAX_TABLES - 1) as u8);
        let t = usize::from(rule.table);
        while self.tables.len() <= t {
            let mut c = Classifier::default();
            c.set_prefix_checks(self.prefix_checks);
            self.tables.push(c);
        }
        self.tables[t].insert(rule);
        self.count += 1;
        id
    }

    /// Whether a rule in `table` may go on to `next`.
    pub fn valid_goto(table: u8, next: u8) -> bool {
        next > table && usize::from(next) < MAX_TABLES
    }

    /// Removes a rule by id (a search of every table).
    pub fn remove(&mut self, id: RuleId) -> Option<Arc<Rule>> {
        let removed = self.tables.iter_mut().find_map(|t| t.remove(id));
        self.removed(removed)
    }

    /// Removes a rule by id when its table and match are known (no search).
    pub fn remove_at(&mut self, table: u8, id: RuleId, matcher: &Match) -> Option<Arc<Rule>> {
        let removed = self.tables.get_mut(usize::from(table)).and_then(|t| t.remove_at(id, matcher));
        self.removed(removed)
    }

    fn removed(&mut self, r: Option<Arc<Rule>>) -> Option<Arc<Rule>> {
        if r.is_some() {
            self.count -= 1;
        }
        r
    }

    /// A rule by id when its table and match are known (no search).
    pub fn get_at(&self, table: u8, id: RuleId, matcher: &Match) -> Option<&Arc<Rule>> {
        self.tables.get(usize::from(table))?.get_at(id, matcher)
    }

    /// Gives a rule new actions and next table, keeping its id, priority and
    /// match (an OpenFlow modify). Returns whether the rule was there.
    pub fn set_actions(
        &mut self,
        table: u8,
        id: RuleId,
        matcher: &Match,
        actions: Vec<Action>,
        goto: Option<u8>,
    ) -> bool {
        let goto = goto.filter(|&g| Self::valid_goto(table, g));
        self.tables.get_mut(usize::from(table)).is_some_and(|t| t.set_actions(id, matcher, actions, goto))
    }

    /// Every rule: by table, best first within each subtable.
    pub fn rules(&self) -> impl Iterator<Item = &Arc<Rule>> {
        self.tables.iter().flat_map(Classifier::rules)
    }

    /// Finds a rule by id.
    pub fn get(&self, id: RuleId) -> Option<&Arc<Rule>> {
        self.rules().find(|r| r.id == id)
    }

    /// The decision for `key` from table 0 on, and the megaflow mask of
    /// what was consulted (see the module doc).
    pub fn classify(&self, key: &FlowKey) -> Classification {
        let first = self.tables[0].classify(key);
        match &first.rule {
            Some(r) if r.goto.is_some() => self.walk(key, first),
            _ => first,
        }
    }

    /// The walk through the next tables from table 0's decision `c`.
    #[cold]
    fn walk(&self, key: &FlowKey, mut c: Classification) -> Classification {
        let Some(mut rule) = c.rule.take() else { return c };
        let mut key = *key;
        let mut actions = Vec::new();
        let mut via = Vec::new();
        loop {
            for a in &rule.actions {
                apply_to_key(&mut key, a);
            }
            actions.extend(rule.actions.iter().cloned());
            let Some(next) = rule.goto.filter(|&g| g > rule.table) else { break };
            let Some(table) = self.tables.get(usize::from(next)) else { break };
            let n = table.classify(&key);
            c.mask.union_with(&n.mask);
            c.subtables_visited += n.subtables_visited;
            let Some(r) = n.rule else { break };
            via.push(rule.id);
            rule = r;
        }
        // Several drops in a row say no more than one.
        if actions.iter().any(|a| *a != Action::Drop) {
            actions.retain(|a| *a != Action::Drop);
        } else {
            actions.truncate(1);
        }
        c.rule = Some(Arc::new(Rule { actions, goto: None, via: via.into(), ..Rule::clone(&rule) }));
        c
    }
}

/// What an action does to the key a later table looks up.
fn apply_to_key(key: &mut FlowKey, a: &Action) {
    let present = u128::from(VLAN_PRESENT);
    match *a {
        Action::SetEthSrc(mac) => key.set(Field::EthSrc, mac48(mac)),
        Action::SetEthDst(mac) => key.set(Field::EthDst, mac48(mac)),
        Action::SetTunnel(vni) => key.set(Field::TunId, u128::from(vni)),
        Action::PushVlan { tci, .. } => {
            key.set(Field::VlanTci2, key.get(Field::VlanTci));
            key.set(Field::VlanTci, u128::from(tci & !VLAN_PRESENT) | present);
        }
        Action::PopVlan => {
            key.set(Field::VlanTci, key.get(Field::VlanTci2));
            key.set(Field::VlanTci2, 0);
        }
        Action::SetVlanVid(vid) => {
            let tci = key.get(Field::VlanTci);
            let kept = if tci & present != 0 { tci & 0xf000 } else { 0 };
            key.set(Field::VlanTci, kept | present | u128::from(vid & 0x0fff));
        }
        Action::Output(_) | Action::InPort | Action::Drop | Action::Controller { .. } => {}
    }
}

fn mac48(mac: [u8; 6]) -> u128 {
    mac.iter().fold(0u128, |v, b| (v << 8) | u128::from(*b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(in_port: u32, dst: u128) -> FlowKey {
        let mut k = FlowKey::default();
        k.set(Field::InPort, u128::from(in_port));
        k.set(Field::EthType, 0x0800);
        k.set(Field::EthDst, dst);
        k
    }

    fn rule(table: u8, priority: u32, matcher: Match, actions: Vec<Action>, goto: Option<u8>) -> Rule {
        Rule { table, priority, matcher, actions, goto, ..Rule::default() }
    }

    #[test]
    fn one_table_is_the_rule_itself() {
        let mut t = RuleTable::new();
        let id = t.insert(10, Match::any().with(Field::InPort, 1), vec![Action::Output(2)]);
        let c = t.classify(&key(1, 5));
        let r = c.rule.expect("a rule");
        assert_eq!((r.id, r.via.len()), (id, 0));
        assert!(Arc::ptr_eq(&r, t.get(id).expect("there")), "no copy for one table");
    }

    #[test]
    fn walk_through_tables() {
        let mut t = RuleTable::new();
        let a = t.add(rule(
            0,
            10,
            Match::any().with(Field::InPort, 1),
            vec![Action::SetEthDst([0, 0, 0, 0, 0, 9])],
            Some(3),
        ));
        let b = t.add(rule(3, 5, Match::any().with(Field::EthDst, 9), vec![Action::Output(2)], Some(7)));
        // Table 7 is empty: the walk stops with what it has.
        let c = t.classify(&key(1, 5));
        let r = c.rule.expect("a decision");
        assert_eq!(r.id, b, "the last rule matched");
        assert_eq!(&*r.via, &[a]);
        assert_eq!(r.actions, vec![Action::SetEthDst([0, 0, 0, 0, 0, 9]), Action::Output(2)]);
        assert_eq!(r.goto, None);
        // Table 3 consulted eth_dst (of the rewritten key): in the mask.
        assert_eq!(c.mask.get(Field::EthDst), Field::EthDst.full());
        assert_eq!(c.mask.get(Field::InPort), Field::InPort.full());
        // Another port: table 0 does not match; no rule.
        assert!(t.classify(&key(4, 9)).rule.is_none());
        // Table 3 misses when table 0 does not rewrite to 9: the walk ends
        // after table 0's actions.
        let c = t.add(rule(0, 20, Match::any().with(Field::InPort, 6), vec![Action::Output(1)], Some(3)));
        let r = t.classify(&key(6, 5)).rule.expect("table 0's rule");
        assert_eq!((r.id, r.via.len()), (c, 0));
        assert_eq!(r.actions, vec![Action::Output(1)]);
        assert_eq!((t.len(), t.table_len(0), t.table_len(3), t.table_len(7)), (3, 2, 1, 0));
        assert_eq!(t.remove_at(3, b, &Match::any().with(Field::EthDst, 9)).map(|r| r.id), Some(b));
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn goto_backwards_is_dropped_and_drops_merge() {
        let mut t = RuleTable::new();
        let id = t.add(rule(2, 1, Match::any(), vec![Action::Drop], Some(1)));
        assert_eq!(t.get(id).expect("there").goto, None, "a goto back is not kept");
        t.add(rule(0, 1, Match::any(), vec![Action::Drop], Some(2)));
        let r = t.classify(&key(1, 1)).rule.expect("a decision");
        assert_eq!(r.actions, vec![Action::Drop]);
        assert_eq!(r.via.len(), 1);
    }

    #[test]
    fn vlan_actions_change_the_key() {
        let mut k = key(1, 1);
        apply_to_key(&mut k, &Action::SetVlanVid(7));
        assert_eq!(k.get(Field::VlanTci), u128::from(VLAN_PRESENT | 7));
        apply_to_key(&mut k, &Action::PushVlan { tpid: 0x88a8, tci: 100 });
        assert_eq!(k.get(Field::VlanTci), u128::from(VLAN_PRESENT | 100));
        assert_eq!(k.get(Field::VlanTci2), u128::from(VLAN_PRESENT | 7));
        apply_to_key(&mut k, &Action::PopVlan);
        assert_eq!(k.get(Field::VlanTci), u128::from(VLAN_PRESENT | 7));
        assert_eq!(k.get(Field::VlanTci2), 0);
        apply_to_key(&mut k, &Action::SetEthSrc([1, 2, 3, 4, 5, 6]));
        assert_eq!(k.get(Field::EthSrc), 0x0102_0304_0506);
    }
}
