//! OpenFlow edits of the rule table: FLOW_MOD's add (replacing a rule of
//! the same table, priority and match), modify and delete (strict or not,
//! with cookie and out_port filters), and the rules a statistics request
//! selects. They go through the same snapshot and revalidation as every
//! other edit, so when one returns no packet is forwarded by the old rules.

use super::core::Switch;
use super::rule_state::{Origin, RuleMeta, RuleState};
use crate::actions::Action;
use crate::config::rules::MAX_RULES;
use crate::flow::table::{Match, RuleId};
use crate::ofchannel::mapping::{outputs_to, Ports};
use crate::ofrule;
use openflow::error::{reject, ErrorCode as E, Rejection};
use std::collections::HashMap;

/// A rule from a FLOW_MOD add.
#[derive(Debug, Clone)]
pub struct OfRule {
    pub table: u8,
    pub priority: u16,
    pub matcher: Match,
    pub actions: Vec<Action>,
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

/// A selected rule with what OpenFlow reports of it.
#[derive(Debug, Clone)]
pub struct OfRuleView {
    pub id: RuleId,
    pub priority: u32,
    pub matcher: Match,
    pub actions: Vec<Action>,
    pub meta: RuleMeta,
}

impl OfFilter {
    fn selects(&self, r: &crate::flow::Rule, meta: Option<&RuleMeta>, ports: Ports) -> bool {
        let table = meta.map_or(0, |m| m.table);
        let cookie = meta.map_or(0, |m| m.cookie);
        if self.table.is_some_and(|t| t != table) || (cookie ^ self.cookie) & self.cookie_mask != 0 {
            return false;
        }
        let fits = match self.strict_priority {
            Some(p) => u32::from(p) == r.priority && r.matcher == self.matcher,
            // The rule is at least as specific as the filter on every bit
            // the filter names, with the same values there.
            None => {
                let f = &self.matcher;
                (0..f.mask.0.words.len()).all(|i| {
                    f.mask.0.words[i] & !r.matcher.mask.0.words[i] == 0
                        && (f.key.words[i] ^ r.matcher.key.words[i]) & f.mask.0.words[i] == 0
                })
            }
        };
        fits && outputs_to(&r.actions, self.out_port, ports)
    }
}

/// Whether some packet matches both.
fn overlaps(a: &Match, b: &Match) -> bool {
    (0..a.mask.0.words.len()).all(|i| (a.key.words[i] ^ b.key.words[i]) & a.mask.0.words[i] & b.mask.0.words[i] == 0)
}

fn publish_error(e: impl std::fmt::Display) -> Rejection {
    Rejection::new(E::FlowModFailedUnknown, format!("the datapath did not take the change: {e}"))
}

impl Switch {
    /// The ports as OpenFlow numbers them.
    pub fn of_ports(&self) -> Ports {
        Ports { count: (self.ports.len() + self.config.tunnels.len()) as u32 }
    }

    /// FLOW_MOD add: a rule of the same table, priority and match is
    /// replaced; with `check_overlap`, one that overlaps at the same
    /// priority refuses the add.
    ///
    /// # Errors
    /// OVERLAP, TABLE_FULL, or UNKNOWN when a PMD did not take the change.
    pub fn of_add(&self, rule: OfRule, origin: Origin) -> Result<(), Rejection> {
        let check_overlap = rule.flags & openflow::flow_flags::CHECK_OVERLAP != 0;
        let mut state = self.lock_rules();
        let same = |r: &crate::flow::Rule, st: &RuleState| {
            r.priority == u32::from(rule.priority) && st.meta.get(&r.id).map_or(0, |m| m.table) == rule.table
        };
        let mut replaced = Vec::new();
        for r in state.table.rules() {
            if !same(r, &state) {
                continue;
            }
            if r.matcher == rule.matcher {
                replaced.push(r.id);
            } else if check_overlap && overlaps(&r.matcher, &rule.matcher) {
                return reject(
                    E::FlowModFailedOverlap,
                    format!("overlaps rule {} at priority {} (check_overlap)", r.id, rule.priority),
                );
            }
        }
        if replaced.is_empty() && state.table.len() >= MAX_RULES {
            return reject(E::FlowModFailedTableFull, format!("the rule table holds its limit of {MAX_RULES} rules"));
        }
        for id in &replaced {
            state.table.remove(*id);
            state.meta.remove(id);
        }
        let name = |n: u32| self.port_name(n);
        let text = format!(
            "priority={},{} actions={}",
            rule.priority,
            ofrule::format_match(&rule.matcher, &name),
            ofrule::format_actions(&rule.actions, &name)
        );
        let table_miss = rule.priority == 0 && rule.matcher == Match::any();
        let id = state.table.insert(u32::from(rule.priority), rule.matcher, rule.actions);
        state.meta.insert(
            id,
            RuleMeta {
                text: text.clone(),
                origin,
                table: rule.table,
                cookie: rule.cookie,
                idle_timeout: rule.idle_timeout,
                hard_timeout: rule.hard_timeout,
                flags: rule.flags,
                added: std::time::Instant::now(),
                table_miss,
                openflow: Some((rule.of_match, rule.of_instructions)),
            },
        );
        let report = self.publish(&mut state).map_err(publish_error)?;
        tracing::debug!(rule = id, %text, replaced = replaced.len(), removed = report.removed, "openflow rule added");
        Ok(())
    }

    /// FLOW_MOD modify: the selected rules take these actions (their
    /// counters carry on unless `reset_counts`; the caller reads them first
    /// when it has to). Returns how many changed.
    ///
    /// # Errors
    /// UNKNOWN when a PMD did not take the change.
    pub fn of_modify(
        &self,
        filter: &OfFilter,
        actions: &[Action],
        instructions: &[openflow::Instruction],
    ) -> Result<usize, Rejection> {
        let ports = self.of_ports();
        let mut state = self.lock_rules();
        let ids: Vec<RuleId> =
            state.table.rules().filter(|r| filter.selects(r, state.meta.get(&r.id), ports)).map(|r| r.id).collect();
        if ids.is_empty() {
            return Ok(0);
        }
        let name = |n: u32| self.port_name(n);
        for id in &ids {
            state.table.set_actions(*id, actions.to_vec());
            let Some(r) = state.table.get(*id).cloned() else { continue };
            if let Some(m) = state.meta.get_mut(id) {
                m.text = format!(
                    "priority={},{} actions={}",
                    r.priority,
                    ofrule::format_match(&r.matcher, &name),
                    ofrule::format_actions(actions, &name)
                );
                let of_match =
                    m.openflow.take().map_or_else(|| crate::ofchannel::mapping::from_match(&r.matcher).0, |o| o.0);
                m.openflow = Some((of_match, instructions.to_vec()));
            }
        }
        self.publish(&mut state).map_err(publish_error)?;
        Ok(ids.len())
    }

    /// FLOW_MOD delete: removes the selected rules and returns them.
    ///
    /// # Errors
    /// UNKNOWN when a PMD did not take the change.
    pub fn of_delete(&self, filter: &OfFilter) -> Result<Vec<OfRuleView>, Rejection> {
        let ports = self.of_ports();
        self.of_remove(|r, meta| filter.selects(r, meta, ports))
    }

    /// Removes the rules `select` picks and returns them.
    ///
    /// # Errors
    /// UNKNOWN when a PMD did not take the change.
    pub fn of_remove(
        &self,
        select: impl Fn(&crate::flow::Rule, Option<&RuleMeta>) -> bool,
    ) -> Result<Vec<OfRuleView>, Rejection> {
        let mut state = self.lock_rules();
        let gone: Vec<OfRuleView> =
            state.table.rules().filter(|r| select(r, state.meta.get(&r.id))).map(|r| view(r, &state)).collect();
        if gone.is_empty() {
            return Ok(gone);
        }
        for v in &gone {
            state.table.remove(v.id);
            state.meta.remove(&v.id);
        }
        self.publish(&mut state).map_err(publish_error)?;
        Ok(gone)
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
        let mut list: Vec<OfRuleView> = state
            .table
            .rules()
            .filter(|r| filter.selects(r, state.meta.get(&r.id), ports))
            .map(|r| view(r, &state))
            .collect();
        list.sort_by_key(|v| (v.meta.table, std::cmp::Reverse(v.priority), v.id));
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
                let e = out.entry(*rule).or_default();
                e.0 += p;
                e.1 += b;
            }
        }
        for f in flows {
            let Some((id, _)) = f.rule else { continue };
            let (hp, hb) =
                self.offload.as_ref().and_then(|o| o.shared.flow(f.id)).map_or((0, 0), |o| (o.hw_packets, o.hw_bytes));
            let e = out.entry(id).or_default();
            e.0 += f.packets + hp;
            e.1 += f.bytes + hb;
        }
        Ok(out)
    }
}

fn view(r: &crate::flow::Rule, state: &RuleState) -> OfRuleView {
    OfRuleView {
        id: r.id,
        priority: r.priority,
        matcher: r.matcher,
        actions: r.actions.clone(),
        meta: state.meta.get(&r.id).cloned().unwrap_or_else(|| RuleMeta::text("", Origin::Config, None)),
    }
}
