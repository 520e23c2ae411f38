//! OpenFlow edits of the rule table: FLOW_MOD's add (replacing a rule of
//! the same table, priority and match), modify and delete (strict or not,
//! with cookie and out_port filters), and the rules a statistics request
//! selects.
//!
//! Edits change the rule state at once (errors are per message) and are
//! published to the PMDs by [`Switch::of_commit`], which the OpenFlow
//! session calls before anything that must see them (a BARRIER, a
//! statistics request, a PACKET_OUT) and whenever it has read all it was
//! sent: a batch of FLOW_MODs costs one snapshot and one revalidation, and
//! after the BARRIER_REPLY no packet is forwarded by an old rule.

use super::core::Switch;
use super::rule_state::{Origin, RuleMeta, RuleState};
use crate::actions::Action;
use crate::config::rules::MAX_RULES;
use crate::flow::table::{Match, RuleId};
use crate::ofmap::{outputs_to, Ports};
use crate::ofrule::{self, RuleSpec};
use openflow::error::{reject, ErrorCode as E, Rejection};
use std::collections::HashMap;

/// A rule from a FLOW_MOD add.
#[derive(Debug, Clone)]
pub struct OfRule {
    pub table: u8,
    pub priority: u16,
    pub matcher: Match,
    pub actions: Vec<Action>,
    /// `goto_table`: a higher table.
    pub goto: Option<u8>,
    pub cookie: u64,
    pub idle_timeout: u16,
    pub hard_timeout: u16,
    pub flags: u16,
    pub of_match: openflow::Match,
    pub of_instructions: Vec<openflow::Instruction>,
}

/// Which rules a modify, delete or statistics request means.
#[derive(Debug, Clone)]
pub struct OfFilter {
    /// `None`: every table.
    pub table: Option<u8>,
    pub matcher: Match,
    /// `Some`: strict (this priority and exactly this match).
    pub strict_priority: Option<u16>,
    pub cookie: u64,
    pub cookie_mask: u64,
    /// An OpenFlow port number, or `OFPP_ANY`.
    pub out_port: u32,
}

/// A selected rule with what OpenFlow reports of it (its priority and match
/// are in `meta`).
#[derive(Debug, Clone)]
pub struct OfRuleView {
    pub id: RuleId,
    pub actions: Vec<Action>,
    pub goto: Option<u8>,
    pub meta: RuleMeta,
}

impl OfFilter {
    /// Whether the filter selects the rule `meta` describes (`actions`: its
    /// actions, read only for an out_port filter).
    fn selects(&self, meta: &RuleMeta, actions: impl FnOnce() -> Vec<Action>, ports: Ports) -> bool {
        if self.table.is_some_and(|t| t != meta.table) || (meta.cookie ^ self.cookie) & self.cookie_mask != 0 {
            return false;
        }
        let m = &meta.matcher;
        let fits = match self.strict_priority {
            Some(p) => u32::from(p) == meta.priority && *m == self.matcher,
            // The rule is at least as specific as the filter on every bit
            // the filter names, with the same values there.
            None => {
                let f = &self.matcher;
                (0..f.mask.0.words.len()).all(|i| {
                    f.mask.0.words[i] & !m.mask.0.words[i] == 0
                        && (f.key.words[i] ^ m.key.words[i]) & f.mask.0.words[i] == 0
                })
            }
        };
        fits && (self.out_port == openflow::action::port::ANY || outputs_to(&actions(), self.out_port, ports))
    }
}

/// Whether some packet matches both.
fn overlaps(a: &Match, b: &Match) -> bool {
    (0..a.mask.0.words.len()).all(|i| (a.key.words[i] ^ b.key.words[i]) & a.mask.0.words[i] & b.mask.0.words[i] == 0)
}

fn publish_error(e: impl std::fmt::Display) -> Rejection {
    Rejection::new(E::FlowModFailedUnknown, format!("the datapath did not take the change: {e}"))
}

/// A rule's actions, found by its match.
fn actions_of(state: &RuleState, id: RuleId, meta: &RuleMeta) -> Vec<Action> {
    state.table.get_at(meta.table, id, &meta.matcher).map(|r| r.actions.clone()).unwrap_or_default()
}

fn view(state: &RuleState, id: RuleId, meta: &RuleMeta) -> OfRuleView {
    let rule = state.table.get_at(meta.table, id, &meta.matcher);
    OfRuleView {
        id,
        actions: rule.map(|r| r.actions.clone()).unwrap_or_default(),
        goto: rule.and_then(|r| r.goto),
        meta: meta.clone(),
    }
}

/// The ids `filter` selects.
fn selected(state: &RuleState, filter: &OfFilter, ports: Ports) -> Vec<RuleId> {
    // Strict: the one rule of that identity, without a walk.
    if let (Some(p), Some(t)) = (filter.strict_priority, filter.table) {
        let key = (t, u32::from(p), filter.matcher);
        return state
            .index
            .get(&key)
            .filter(|id| state.meta.get(id).is_some_and(|m| filter.selects(m, || actions_of(state, **id, m), ports)))
            .map(|id| vec![*id])
            .unwrap_or_default();
    }
    state
        .meta
        .iter()
        .filter(|(id, m)| filter.selects(m, || actions_of(state, **id, m), ports))
        .map(|(id, _)| *id)
        .collect()
}

fn text(switch: &Switch, spec: &RuleSpec) -> String {
    ofrule::format_rule(spec, &|n: u32| switch.port_name(n))
}

impl Switch {
    /// The ports as OpenFlow numbers them.
    pub fn of_ports(&self) -> Ports {
        Ports { count: (self.ports.len() + self.config.tunnels.len()) as u32 }
    }

    /// FLOW_MOD add: a rule of the same table, priority and match is
    /// replaced; with `check_overlap`, one that overlaps at the same
    /// priority refuses the add. Published by [`Switch::of_commit`].
    ///
    /// # Errors
    /// OVERLAP, TABLE_FULL.
    pub fn of_add(&self, rule: OfRule, origin: Origin) -> Result<(), Rejection> {
        let mut state = self.lock_rules();
        let priority = u32::from(rule.priority);
        let matcher = Match { key: rule.matcher.key.masked(&rule.matcher.mask), mask: rule.matcher.mask };
        let replaced = state.index.get(&(rule.table, priority, matcher)).copied();
        if rule.flags & openflow::flow_flags::CHECK_OVERLAP != 0 {
            let clash = state.meta.iter().find(|(id, m)| {
                Some(**id) != replaced
                    && m.table == rule.table
                    && m.priority == priority
                    && overlaps(&m.matcher, &matcher)
            });
            if let Some((id, _)) = clash {
                return reject(
                    E::FlowModFailedOverlap,
                    format!("overlaps rule {id} at priority {priority} (check_overlap)"),
                );
            }
        }
        if replaced.is_none() && state.table.len() >= MAX_RULES {
            return reject(E::FlowModFailedTableFull, format!("the rule table holds its limit of {MAX_RULES} rules"));
        }
        if let Some(id) = replaced {
            state.remove(id);
        }
        let spec = RuleSpec { table: rule.table, priority, matcher, actions: rule.actions, goto: rule.goto };
        let meta = RuleMeta {
            text: text(self, &spec),
            priority,
            matcher,
            origin,
            table: rule.table,
            cookie: rule.cookie,
            idle_timeout: rule.idle_timeout,
            hard_timeout: rule.hard_timeout,
            flags: rule.flags,
            added: std::time::Instant::now(),
            table_miss: priority == 0 && matcher == Match::any(),
            openflow: Some((rule.of_match, rule.of_instructions)),
        };
        state.insert(&spec, meta);
        Ok(())
    }

    /// FLOW_MOD modify: the selected rules take these actions (their ids,
    /// hence their counters, carry on). Returns how many changed.
    /// Published by [`Switch::of_commit`].
    pub fn of_modify(
        &self,
        filter: &OfFilter,
        actions: &[Action],
        goto: Option<u8>,
        instructions: &[openflow::Instruction],
    ) -> usize {
        let ports = self.of_ports();
        let mut state = self.lock_rules();
        let ids = selected(&state, filter, ports);
        for id in &ids {
            state.set_actions(*id, actions.to_vec(), goto);
            let Some(meta) = state.meta.get_mut(id) else { continue };
            let spec = RuleSpec {
                table: meta.table,
                priority: meta.priority,
                matcher: meta.matcher,
                actions: actions.to_vec(),
                goto,
            };
            meta.text = text(self, &spec);
            let of_match = meta.openflow.take().map_or_else(|| crate::ofmap::from_match(&meta.matcher).0, |o| o.0);
            meta.openflow = Some((of_match, instructions.to_vec()));
        }
        ids.len()
    }

    /// FLOW_MOD delete: removes the selected rules and returns them.
    /// Published by [`Switch::of_commit_counting`], which the caller gives
    /// the rules that asked for FLOW_REMOVED (their counts are kept until
    /// then: `RuleState::unread`).
    pub fn of_delete(&self, filter: &OfFilter) -> Vec<OfRuleView> {
        let ports = self.of_ports();
        let mut state = self.lock_rules();
        let ids = selected(&state, filter, ports);
        remove_ids(&mut state, &ids)
    }

    /// Removes the rules `select` picks (by their metadata) and returns
    /// them. Published by [`Switch::of_commit_counting`], as
    /// [`of_delete`](Self::of_delete).
    pub fn of_remove(&self, select: impl Fn(RuleId, &RuleMeta) -> bool) -> Vec<OfRuleView> {
        let mut state = self.lock_rules();
        let ids: Vec<RuleId> = state.meta.iter().filter(|(id, m)| select(**id, m)).map(|(id, _)| *id).collect();
        remove_ids(&mut state, &ids)
    }

    /// Publishes the OpenFlow edits made since the last publication (one
    /// snapshot, one revalidation); returns once every PMD runs by them.
    ///
    /// # Errors
    /// UNKNOWN when a PMD did not take the change (the edits stay in the
    /// rule table, and the next publication carries them).
    pub fn of_commit(&self) -> Result<(), Rejection> {
        self.of_commit_counting(&[]).0
    }

    /// [`of_commit`](Self::of_commit), then the final packets and bytes of
    /// `gone`, rules the caller removed (for FLOW_REMOVED): read once every
    /// PMD has revalidated their flows out and the hardware has given its
    /// last counts, under the rule lock. Publications made in between by
    /// others (another controller's) keep those counts for this read (see
    /// `RuleState::removed` and `RuleState::unread`). Their flows
    /// are all gone then, so the counts they left are all there is (no
    /// dump of the flows). Read even when the publication failed, from the
    /// flows as well: what the rules counted until then.
    pub fn of_commit_counting(&self, gone: &[RuleId]) -> (Result<(), Rejection>, HashMap<RuleId, (u64, u64)>) {
        let mut state = self.lock_rules();
        let done = if state.dirty { self.publish(&mut state).map(|_| ()).map_err(publish_error) } else { Ok(()) };
        if gone.is_empty() {
            return (done, HashMap::new());
        }
        // Read now, or never: the next publication may drop them.
        for id in gone {
            state.unread.remove(id);
        }
        let read = if done.is_ok() {
            self.retired_counts(gone)
        } else {
            self.rule_counts().map(|mut all| gone.iter().filter_map(|id| all.remove(id).map(|c| (*id, c))).collect())
        };
        let counts = match read {
            Ok(counts) => counts,
            Err(e) => {
                tracing::warn!(rules = gone.len(), "counts of removed rules not read (FLOW_REMOVED says 0): {e}");
                HashMap::new()
            }
        };
        drop(state);
        (done, counts)
    }

    /// Rules with an idle or hard timeout: (id, idle, hard, when added).
    pub fn of_timed(&self) -> Vec<(RuleId, u16, u16, std::time::Instant)> {
        let state = self.lock_rules();
        state
            .meta
            .iter()
            .filter(|(_, m)| m.idle_timeout != 0 || m.hard_timeout != 0)
            .map(|(id, m)| (*id, m.idle_timeout, m.hard_timeout, m.added))
            .collect()
    }

    /// A rule's cookie, table and whether it is a table-miss entry (for its
    /// packet-ins).
    pub fn of_rule_brief(&self, id: RuleId) -> Option<(u64, u8, bool)> {
        self.lock_rules().meta.get(&id).map(|m| (m.cookie, m.table, m.table_miss))
    }

    /// Sends a controller's packet out through the datapath (PACKET_OUT):
    /// PMD 0 runs `actions` on it as if it came in on `in_port` (`None`:
    /// from the controller). Returns once the PMD has.
    ///
    /// # Errors
    /// When the PMD does not take it within a second.
    pub fn inject(&self, frame: Vec<u8>, in_port: Option<u32>, actions: Vec<Action>) -> Result<(), Rejection> {
        let busy = || Rejection::new(E::BadRequestEperm, "the datapath did not take the packet within 1 s");
        let pmd = self.pmds.first().ok_or_else(busy)?;
        let (done, wait) = crossbeam_channel::bounded(1);
        let job = crate::datapath::punt::Injection { frame, in_port, actions, done };
        pmd.commands
            .send_timeout(crate::datapath::pmd::PmdCommand::Inject(Box::new(job)), std::time::Duration::from_secs(1))
            .map_err(|_| busy())?;
        wait.recv_timeout(std::time::Duration::from_secs(1)).map_err(|_| busy())
    }

    /// The rules a statistics request selects, by table, then priority.
    pub fn of_select(&self, filter: &OfFilter) -> Vec<OfRuleView> {
        let ports = self.of_ports();
        let state = self.lock_rules();
        let mut list: Vec<OfRuleView> = selected(&state, filter, ports)
            .into_iter()
            .filter_map(|id| state.meta.get(&id).map(|m| view(&state, id, m)))
            .collect();
        list.sort_by_key(|v| (v.meta.table, std::cmp::Reverse(v.meta.priority), v.id));
        list
    }

    /// Packets and bytes per rule: the sum over its megaflows, in software
    /// and in hardware, those cached now and those removed since the rule
    /// came.
    ///
    /// # Errors
    /// When a PMD does not answer.
    pub fn rule_counts(&self) -> Result<HashMap<RuleId, (u64, u64)>, crate::datapath::SwitchError> {
        let (flows, mut out) = self.flows_and_retired()?;
        if let Some(o) = &self.offload {
            for (rule, (p, b)) in o.shared.retired.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter() {
                super::show::credit(&mut out, *rule, *p, *b);
            }
        }
        for f in flows {
            let Some((id, _)) = f.rule else { continue };
            let (hp, hb) =
                self.offload.as_ref().and_then(|o| o.shared.flow(f.id)).map_or((0, 0), |o| (o.hw_packets, o.hw_bytes));
            for id in f.via.iter().copied().chain([id]) {
                super::show::credit(&mut out, id, f.packets + hp, f.bytes + hb);
            }
        }
        Ok(out)
    }
}

fn remove_ids(state: &mut RuleState, ids: &[RuleId]) -> Vec<OfRuleView> {
    let mut gone = Vec::with_capacity(ids.len());
    for id in ids {
        let Some(m) = state.meta.get(id) else { continue };
        let v = view(state, *id, m);
        if m.flags & openflow::flow_flags::SEND_FLOW_REM != 0 {
            // Its counts are kept until its remover reads them.
            state.unread.insert(*id);
        }
        state.remove(*id);
        gone.push(v);
    }
    gone
}
