//! The rule table with the text of each rule, and the checks an edit passes
//! before it is applied (no duplicates, room under [`MAX_RULES`]).

use crate::config::rules::MAX_RULES;
use crate::config::ConfiguredRule;
use crate::datapath::SwitchError;
use crate::flow::table::{Match, Rule, RuleId};
use crate::flow::RuleTable;
use crate::ofrule::RuleSpec;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Where a rule came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// The configuration file's `rules` (replaced on reload).
    Config,
    /// `vswitchctl add-rule(s)`.
    Control,
    /// An OpenFlow FLOW_MOD on a listener (ovs-ofctl and other tools).
    Openflow,
    /// An OpenFlow FLOW_MOD from a controller the switch connected to
    /// (`[openflow] controllers`); `fail_mode = "standalone"` removes them
    /// when the last controller is gone.
    Controller,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Config => "config",
            Origin::Control => "control",
            Origin::Openflow => "openflow",
            Origin::Controller => "controller",
        }
    }
}

/// What the rule table itself does not hold about a rule: its text, origin
/// and OpenFlow attributes.
#[derive(Debug, Clone)]
pub struct RuleMeta {
    /// As written (file, vswitchctl) or formatted from the OpenFlow match.
    pub text: String,
    /// The rule's priority and match (set by [`RuleState::insert`]).
    pub priority: u32,
    pub matcher: crate::flow::table::Match,
    pub origin: Origin,
    pub table: u8,
    pub cookie: u64,
    pub idle_timeout: u16,
    pub hard_timeout: u16,
    /// OpenFlow FLOW_MOD flags (send_flow_rem, ...).
    pub flags: u16,
    pub added: std::time::Instant,
    /// Priority 0 with an empty match: OpenFlow's table-miss entry (its
    /// packet-ins say NO_MATCH).
    pub table_miss: bool,
    /// The match and instructions as the controller gave them (for its own
    /// statistics replies); `None` for rules from the file or vswitchctl.
    pub openflow: Option<(openflow::Match, Vec<openflow::Instruction>)>,
}

impl RuleMeta {
    /// A rule written as text (file or vswitchctl): table 0, cookie 0.
    pub fn text(text: &str, origin: Origin, spec: Option<&crate::ofrule::RuleSpec>) -> Self {
        Self {
            text: text.trim().to_owned(),
            priority: 0,
            matcher: crate::flow::table::Match::any(),
            origin,
            table: 0,
            cookie: 0,
            idle_timeout: 0,
            hard_timeout: 0,
            flags: 0,
            added: std::time::Instant::now(),
            table_miss: spec.is_some_and(|s| s.priority == 0 && s.matcher == crate::flow::table::Match::any()),
            openflow: None,
        }
    }
}

/// An edit of the rule table, replayed onto the spare copy.
#[derive(Debug, Clone)]
pub(super) enum TableOp {
    Insert(Rule),
    Remove { table: u8, id: RuleId, matcher: Match },
    SetActions { table: u8, id: RuleId, matcher: Match, actions: Vec<crate::actions::Action>, goto: Option<u8> },
}

impl TableOp {
    fn apply(&self, t: &mut RuleTable) {
        match self {
            TableOp::Insert(rule) => {
                t.insert_with_id(rule.clone());
            }
            TableOp::Remove { table, id, matcher } => {
                t.remove_at(*table, *id, matcher);
            }
            TableOp::SetActions { table, id, matcher, actions, goto } => {
                t.set_actions(*table, *id, matcher, actions.clone(), *goto);
            }
        }
    }
}

/// The copies of the table besides the one edited (left-right): the one
/// the PMDs run by, and a spare nobody holds that catches up by replaying
/// the edits since its state. Publishing then costs the edits of a batch,
/// not a copy of the whole table (what copy-on-write subtables would cost
/// at every publication: a large table and one FLOW_MOD per BARRIER, as
/// ovs-ofctl sends them, made that 8 ms a rule).
#[derive(Default)]
pub(super) struct Copies {
    /// The snapshot the PMDs got last, and the edit position it reflects.
    published: Option<(Arc<RuleTable>, usize)>,
    /// A copy nobody else holds, and the edit position it reflects.
    spare: Option<(RuleTable, usize)>,
    /// The edits from position `base` on.
    log: Vec<TableOp>,
    base: usize,
}

/// A rule's OpenFlow identity: table, priority, match.
pub(super) type RuleKey = (u8, u32, crate::flow::table::Match);

/// The rule table and what it does not hold about each rule.
pub(super) struct RuleState {
    pub table: RuleTable,
    pub meta: BTreeMap<RuleId, RuleMeta>,
    /// The rule of each (table, priority, match) (OpenFlow's add replaces
    /// it; found without a search).
    pub index: std::collections::HashMap<RuleKey, RuleId>,
    /// Edits not yet published to the PMDs (OpenFlow batches them).
    pub dirty: bool,
    /// Rules removed since the last publication: their counts (those of
    /// their flows gone before, in software and hardware) are kept through
    /// the next one, which retires the flows they still have, so that the
    /// final counts can be read after it (FLOW_REMOVED).
    pub removed: Vec<RuleId>,
    /// Removed rules that asked for FLOW_REMOVED and whose final counts
    /// their remover has not read yet (`Switch::of_commit_counting` takes
    /// them out): their counts are kept through every publication until
    /// then, so that another controller's publications in between (two or
    /// more) cannot drop them first.
    pub unread: std::collections::BTreeSet<RuleId>,
    pub generation: u64,
    copies: Copies,
}

impl RuleState {
    pub fn new(rules: &[ConfiguredRule], prefix_checks: bool) -> Self {
        let mut table = RuleTable::new();
        table.set_prefix_checks(prefix_checks);
        let mut state = Self {
            table,
            meta: BTreeMap::new(),
            index: std::collections::HashMap::new(),
            dirty: false,
            removed: Vec::new(),
            unread: std::collections::BTreeSet::new(),
            generation: 1,
            copies: Copies::default(),
        };
        state.replace(rules);
        state
    }

    /// Replaces the file's rules (reload); rules from vswitchctl and
    /// OpenFlow stay. A rule the new file has unchanged (table, priority,
    /// match, actions, next table) keeps its id, and with it its counts,
    /// its place among rules of equal priority and the megaflows it
    /// decided; the others go, and the new ones come in file order.
    pub(super) fn replace(&mut self, rules: &[ConfiguredRule]) {
        let mut wanted: std::collections::HashMap<RuleKey, usize> =
            rules.iter().enumerate().map(|(i, r)| (Self::key_of(&r.spec), i)).collect();
        let old: Vec<RuleId> =
            self.meta.iter().filter(|(_, m)| m.origin == Origin::Config).map(|(id, _)| *id).collect();
        let mut kept = vec![false; rules.len()];
        for id in old {
            let same = self.meta.get(&id).and_then(|m| wanted.get(&(m.table, m.priority, m.matcher)).copied());
            match same.filter(|&i| self.unchanged(id, &rules[i].spec)) {
                Some(i) => {
                    kept[i] = true;
                    wanted.remove(&Self::key_of(&rules[i].spec));
                    if let Some(m) = self.meta.get_mut(&id) {
                        m.text = rules[i].text.trim().to_owned();
                    }
                }
                None => {
                    self.remove(id);
                }
            }
        }
        for (r, _) in rules.iter().zip(&kept).filter(|(_, k)| !**k) {
            self.insert(&r.spec, RuleMeta::text(&r.text, Origin::Config, Some(&r.spec)));
        }
    }

    /// A rule's identity (table, priority, match as stored: masked).
    fn key_of(spec: &RuleSpec) -> RuleKey {
        (spec.table, spec.priority, Match { key: spec.matcher.key.masked(&spec.matcher.mask), mask: spec.matcher.mask })
    }

    /// Whether rule `id` does what `spec` says (same actions and next table;
    /// the caller found it by `spec`'s table, priority and match).
    fn unchanged(&self, id: RuleId, spec: &RuleSpec) -> bool {
        let Some(m) = self.meta.get(&id) else { return false };
        self.table.get_at(m.table, id, &m.matcher).is_some_and(|r| r.actions == spec.actions && r.goto == spec.goto)
    }

    /// Adds a rule with its metadata; returns its id.
    pub(super) fn insert(&mut self, spec: &crate::ofrule::RuleSpec, mut meta: RuleMeta) -> RuleId {
        let rule = Rule {
            table: spec.table,
            priority: spec.priority,
            matcher: spec.matcher,
            actions: spec.actions.clone(),
            goto: spec.goto,
            ..Rule::default()
        };
        let id = self.table.add(rule.clone());
        meta.table = spec.table;
        meta.priority = spec.priority;
        meta.matcher = Match { key: spec.matcher.key.masked(&spec.matcher.mask), mask: spec.matcher.mask };
        self.log(TableOp::Insert(Rule { id, matcher: meta.matcher, ..rule }));
        self.index.insert((meta.table, meta.priority, meta.matcher), id);
        self.meta.insert(id, meta);
        self.dirty = true;
        id
    }

    /// Whether rule `id`'s counts (those its gone flows left, in software
    /// and hardware) are still wanted at the publication being made: the
    /// rule is in the table, was removed since the last publication, or
    /// was removed and its counts not read yet (`unread`).
    pub fn counts_wanted(&self, id: RuleId, removed: &std::collections::HashSet<RuleId>) -> bool {
        self.meta.contains_key(&id) || removed.contains(&id) || self.unread.contains(&id)
    }

    /// Removes a rule (found by its match, without a search).
    pub(super) fn remove(&mut self, id: RuleId) -> Option<RuleMeta> {
        let meta = self.meta.remove(&id)?;
        self.table.remove_at(meta.table, id, &meta.matcher);
        self.removed.push(id);
        self.log(TableOp::Remove { table: meta.table, id, matcher: meta.matcher });
        let key = (meta.table, meta.priority, meta.matcher);
        if self.index.get(&key) == Some(&id) {
            self.index.remove(&key);
        }
        self.dirty = true;
        Some(meta)
    }

    /// Gives a rule new actions and next table (OpenFlow modify).
    pub(super) fn set_actions(&mut self, id: RuleId, actions: Vec<crate::actions::Action>, goto: Option<u8>) -> bool {
        let Some((table, matcher)) = self.meta.get(&id).map(|m| (m.table, m.matcher)) else { return false };
        let done = self.table.set_actions(table, id, &matcher, actions.clone(), goto);
        self.log(TableOp::SetActions { table, id, matcher, actions, goto });
        self.dirty = true;
        done
    }

    fn log(&mut self, op: TableOp) {
        // Nothing to replay onto: no log needed.
        if self.copies.published.is_some() || self.copies.spare.is_some() {
            self.copies.log.push(op);
        }
    }

    /// The table as the PMDs should run it, sharing nothing with the one
    /// edited: the spare brought up to date when there is one, else a copy.
    /// Its edit position goes to [`RuleState::published`].
    pub(super) fn snapshot(&mut self) -> (Arc<RuleTable>, usize) {
        let c = &mut self.copies;
        let end = c.base + c.log.len();
        let table = match c.spare.take() {
            Some((mut t, at)) => {
                for op in &c.log[at - c.base..] {
                    op.apply(&mut t);
                }
                t.set_prefix_checks(self.table.prefix_checks());
                t
            }
            None => self.table.deep_clone(),
        };
        (Arc::new(table), end)
    }

    /// The PMDs took `snap` (or some did): the snapshot before it becomes
    /// the spare if nobody holds it any more; edits both copies have seen
    /// leave the log.
    pub(super) fn published(&mut self, snap: Arc<RuleTable>, at: usize) {
        let c = &mut self.copies;
        if let Some((old, old_at)) = c.published.replace((snap, at)) {
            if let Ok(t) = Arc::try_unwrap(old) {
                c.spare = Some((t, old_at));
            }
        }
        let keep_from = c.spare.as_ref().map_or(at, |s| s.1).min(at);
        c.log.drain(..keep_from - c.base);
        c.base = keep_from;
    }
}

/// Refuses rules with the priority and match of a rule already in the table
/// or of an earlier one of the same batch: one of the two would never be
/// consulted, and which one is an accident of ids.
pub(super) fn unique(state: &RuleState, specs: &[RuleSpec], texts: &[String]) -> Result<(), SwitchError> {
    let mut batch: std::collections::HashMap<(u32, Match), usize> = std::collections::HashMap::new();
    for (i, (spec, text)) in specs.iter().zip(texts).enumerate() {
        let m = Match { key: spec.matcher.key.masked(&spec.matcher.mask), mask: spec.matcher.mask };
        let in_table = state.index.contains_key(&(0, spec.priority, m));
        let first = batch.insert((spec.priority, m), i);
        if in_table || first.is_some() {
            let which = match first {
                Some(j) => format!("rule {} of this batch", j + 1),
                None => "a rule already in the table (dump-rules)".to_owned(),
            };
            let at = if specs.len() > 1 { format!("rule {} ", i + 1) } else { String::new() };
            return Err(SwitchError::Invalid(format!(
                "{at}({:?}) has the priority and match of {which}; delete that one first. Nothing added",
                text.trim()
            )));
        }
    }
    Ok(())
}

/// Whether `n` more rules fit under [`MAX_RULES`].
pub(super) fn room(state: &RuleState, n: usize) -> Result<(), SwitchError> {
    let have = state.table.len();
    if have + n > MAX_RULES {
        return Err(SwitchError::Invalid(format!(
            "{have} rules + {n} would exceed the limit of {MAX_RULES}; nothing added"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::Action;
    use crate::ofrule::RuleSpec;
    use crate::packet::Field;

    fn rules_of(t: &RuleTable) -> Vec<Rule> {
        let mut v: Vec<Rule> = t.rules().map(|r| Rule::clone(r)).collect();
        v.sort_by_key(|r| r.id);
        v
    }

    /// Snapshots, taken after every batch of edits while the "PMDs" hold
    /// the one before, always equal the edited table, whether they were
    /// copied or a spare caught up by replaying the log.
    #[test]
    fn snapshots_equal_the_edited_table_through_spares_and_replays() {
        let mut s = RuleState::new(&[], true);
        let mut held: Option<Arc<RuleTable>> = None;
        let mut seed = 7u64;
        let mut next = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            seed >> 33
        };
        for round in 0..60 {
            for _ in 0..(next() % 20) {
                let ids: Vec<RuleId> = s.meta.keys().copied().collect();
                match next() % 4 {
                    0 | 1 => {
                        let m = Match::any().with(Field::TpDst, u128::from(next() % 50)).with(Field::IpProto, 17);
                        let table = (next() % 3) as u8;
                        let spec = RuleSpec {
                            table,
                            priority: (next() % 3) as u32,
                            matcher: m,
                            actions: vec![Action::Output(1)],
                            goto: (next() % 2 == 0).then_some(table + 1),
                        };
                        s.insert(&spec, RuleMeta::text("t", Origin::Openflow, Some(&spec)));
                    }
                    2 if !ids.is_empty() => {
                        s.remove(ids[(next() as usize) % ids.len()]);
                    }
                    _ if !ids.is_empty() => {
                        let id = ids[(next() as usize) % ids.len()];
                        let goto = s.meta[&id].table + (next() % 2) as u8;
                        s.set_actions(id, vec![Action::Output((next() % 3) as u32)], Some(goto));
                    }
                    _ => {}
                }
            }
            let (snap, at) = s.snapshot();
            assert_eq!(rules_of(&snap), rules_of(&s.table), "round {round}");
            // The PMDs take the new one and drop the old.
            held = Some(Arc::clone(&snap));
            s.published(snap, at);
        }
        assert!(s.copies.spare.is_some(), "a spare was reclaimed");
        assert!(s.copies.log.len() < 40, "the log is trimmed: {}", s.copies.log.len());
        drop(held);
    }

    fn configured(text: &str, priority: u32, dport: u128, out: u32) -> ConfiguredRule {
        let matcher = Match::any().with(Field::TpDst, dport).with(Field::IpProto, 17);
        let spec = RuleSpec { table: 0, priority, matcher, actions: vec![Action::Output(out)], goto: None };
        ConfiguredRule { text: text.into(), spec, line: 1 }
    }

    /// A reload keeps the rules the file has unchanged (their ids, so their
    /// counts and megaflows) and replaces the others.
    #[test]
    fn a_reload_keeps_the_rules_it_leaves_unchanged() {
        let (a, b, c) = (configured("a", 10, 80, 1), configured("b", 10, 81, 1), configured("c", 5, 82, 2));
        let mut s = RuleState::new(&[a.clone(), b, c], true);
        let id_of = |s: &RuleState, text: &str| s.meta.iter().find(|(_, m)| m.text == text).map(|(id, _)| *id);
        let (ia, ib, ic) = (id_of(&s, "a"), id_of(&s, "b"), id_of(&s, "c"));
        s.removed.clear();
        // a written differently but the same; b with other actions; c gone,
        // d new.
        let a2 = ConfiguredRule { text: " a, reformatted ".into(), ..a };
        s.replace(&[configured("b", 10, 81, 2), a2, configured("d", 5, 83, 2)]);
        assert_eq!(id_of(&s, "a, reformatted"), ia, "unchanged: the same rule, its text updated");
        let nb = id_of(&s, "b");
        assert!(nb.is_some() && nb != ib, "other actions: a new rule");
        assert!(id_of(&s, "c").is_none() && id_of(&s, "d").is_some());
        assert_eq!(s.table.len(), 3);
        let mut removed = s.removed.clone();
        removed.sort_unstable();
        assert_eq!(removed, [ib, ic].map(|id| id.expect("an id")));
        let in_table: Vec<RuleId> = rules_of(&s.table).iter().map(|r| r.id).collect();
        assert_eq!(in_table.len(), 3);
        assert!(in_table.contains(&ia.expect("a's id")) && s.meta.keys().all(|id| in_table.contains(id)));
    }
}
