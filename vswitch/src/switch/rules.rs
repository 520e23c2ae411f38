//! Rule edits: the rule table, published to every PMD as a new snapshot;
//! each PMD revalidates its megaflows and acknowledges, and the offload
//! manager removes the hardware rules of the flows that went, before an edit
//! returns; so after it no packet is forwarded by a rule that is gone or
//! shadowed, in either tier.

use super::core::Switch;
use super::rule_state::{room, unique, Origin, RuleMeta, RuleState};
use super::views::RuleView;
use crate::config::ConfiguredRule;
use crate::datapath::pmd::PmdCommand;
use crate::datapath::{RevalidateReport, SwitchError};
use crate::flow::table::RuleId;
use crate::ofrule::{self, RuleSpec};
use crossbeam_channel::bounded;
use std::sync::Arc;
use std::time::Duration;

impl Switch {
    pub(super) fn lock_rules(&self) -> std::sync::MutexGuard<'_, RuleState> {
        self.rules.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Parses a rule against this switch's ports.
    ///
    /// # Errors
    /// The rule's syntax error.
    pub fn parse_rule(&self, text: &str) -> Result<RuleSpec, SwitchError> {
        let resolve = |n: &str| self.port_number(n);
        Ok(ofrule::parse_rule(text, &resolve)?)
    }

    /// Publishes `state.table` to every PMD and waits until each has
    /// revalidated its flows.
    pub(super) fn publish(&self, state: &mut RuleState) -> Result<RevalidateReport, SwitchError> {
        state.generation += 1;
        state.dirty = false;
        // Rules removed since the last publication keep their counts
        // through this one (see `RuleState::removed`).
        let removed: std::collections::HashSet<RuleId> = state.removed.drain(..).collect();
        if let Some(o) = &self.offload {
            // Hardware counts of flows gone go with their rule: a
            // publication after it went, or once its remover read them
            // (`RuleState::unread`).
            let mut retired = o.shared.retired.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            retired.retain(|id, _| state.counts_wanted(*id, &removed));
        }
        let (table, at) = state.snapshot();
        let keep: Arc<[RuleId]> = state.unread.iter().copied().collect();
        let acked = self.send_rules(&table, &keep).and_then(Self::acknowledged);
        // The PMDs that took it dropped the snapshot before, which becomes
        // the spare when nobody holds it any more.
        state.published(table, at);
        let mut total = acked?;
        // Flows revalidated out leave the hardware too before this returns;
        // a manager too busy to answer (offload churn) leaves the change
        // made, and the answer says the hardware catches up later.
        if let Err(e) = self.offload_sync(u64::MAX) {
            tracing::warn!("rule change applied in software; hardware catch-up pending: {e}");
            total.offload_pending = true;
        }
        Ok(total)
    }

    /// Waits for every PMD's revalidation report. A PMD revalidates in
    /// slices between iterations (about 50 us each, a few hundred
    /// milliseconds for a million flows), so the wait is long enough for that
    /// and still ends if a PMD is stuck.
    fn acknowledged(
        waits: Vec<(usize, crossbeam_channel::Receiver<RevalidateReport>)>,
    ) -> Result<RevalidateReport, SwitchError> {
        let mut total = RevalidateReport::default();
        for (index, rx) in waits {
            let r = rx.recv_timeout(Duration::from_secs(30)).map_err(|_| {
                SwitchError::PmdTimeout(format!(
                    "PMD {index} did not acknowledge the new rules within 30 s: the change is in the rule table \
                     (dump-rules) and that PMD applies it when it takes its next command"
                ))
            })?;
            total.kept += r.kept;
            total.removed += r.removed;
        }
        Ok(total)
    }

    /// Sends a snapshot to every PMD; the acknowledgements to wait for.
    fn send_rules(
        &self,
        table: &Arc<crate::flow::RuleTable>,
        keep: &Arc<[RuleId]>,
    ) -> Result<Vec<(usize, crossbeam_channel::Receiver<RevalidateReport>)>, SwitchError> {
        let mut waits = Vec::new();
        for p in &self.pmds {
            let (tx, rx) = bounded(1);
            let cmd = PmdCommand::SetRules { table: Arc::clone(table), keep: Arc::clone(keep), done: tx };
            p.commands
                .send_timeout(cmd, Duration::from_secs(2))
                .map_err(|_| SwitchError::PmdTimeout(format!("PMD {}: its command queue is full", p.shared.index)))?;
            waits.push((p.shared.index, rx));
        }
        Ok(waits)
    }

    /// Adds a rule; returns its id and the revalidation report.
    ///
    /// # Errors
    /// A syntax error, or a PMD that did not acknowledge.
    pub fn add_rule(&self, text: &str) -> Result<(RuleId, RevalidateReport), SwitchError> {
        let spec = self.parse_rule(text)?;
        let mut state = self.lock_rules();
        room(&state, 1)?;
        unique(&state, std::slice::from_ref(&spec), std::slice::from_ref(&text.to_owned()))?;
        let id = state.insert(&spec, RuleMeta::text(text, Origin::Control, Some(&spec)));
        let report = self.publish(&mut state)?;
        tracing::info!(rule = id, text = %text.trim(), kept = report.kept, removed = report.removed, "rule added");
        Ok((id, report))
    }

    /// Adds several rules at once, all or none: the first that does not
    /// parse is named and nothing changes; one snapshot, one revalidation.
    /// Returns their ids in order.
    ///
    /// # Errors
    /// A rule's syntax error (with its position), too many rules, or a PMD
    /// that did not acknowledge.
    pub fn add_rules(&self, texts: &[String]) -> Result<(Vec<RuleId>, RevalidateReport), SwitchError> {
        if texts.is_empty() {
            return Err(SwitchError::Invalid("add-rules: no rule given".into()));
        }
        let specs = texts
            .iter()
            .enumerate()
            .map(|(i, t)| {
                self.parse_rule(t)
                    .map_err(|e| SwitchError::Invalid(format!("rule {} ({:?}): {e}; none added", i + 1, t.trim())))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut state = self.lock_rules();
        room(&state, specs.len())?;
        unique(&state, &specs, texts)?;
        let ids: Vec<RuleId> = specs
            .into_iter()
            .zip(texts)
            .map(|(spec, text)| state.insert(&spec, RuleMeta::text(text, Origin::Control, Some(&spec))))
            .collect();
        let report = self.publish(&mut state)?;
        tracing::info!(rules = ids.len(), kept = report.kept, removed = report.removed, "rules added");
        Ok((ids, report))
    }

    /// Deletes by id (a number) or by exact match and priority (rule text;
    /// its actions, if any, are ignored). Returns how many were deleted.
    ///
    /// # Errors
    /// A syntax error, nothing matched, or a PMD that did not acknowledge.
    pub fn del_rule(&self, selector: &str) -> Result<(usize, RevalidateReport), SwitchError> {
        let selector = selector.trim();
        let mut state = self.lock_rules();
        let ids: Vec<RuleId> = if let Ok(id) = selector.parse::<RuleId>() {
            vec![id]
        } else {
            let match_text = selector.split("actions=").next().unwrap_or(selector);
            let resolve = |n: &str| self.port_number(n);
            let (table, match_text) = ofrule::take_table(match_text)?;
            let (priority, m) = ofrule::parse_match(&match_text, &resolve)?;
            state
                .table
                .rules()
                .filter(|r| r.table == table && r.priority == priority && r.matcher == m)
                .map(|r| r.id)
                .collect()
        };
        let mut deleted = 0;
        for id in ids {
            if state.remove(id).is_some() {
                deleted += 1;
            }
        }
        if deleted == 0 {
            return Err(SwitchError::NotFound(format!(
                "no rule matches {selector:?} (dump-rules lists ids; a text selector needs the same match and priority)"
            )));
        }
        let report = self.publish(&mut state)?;
        tracing::info!(selector, deleted, kept = report.kept, removed = report.removed, "rules deleted");
        Ok((deleted, report))
    }

    /// Replaces the file's rules (reload); rules added with vswitchctl or
    /// OpenFlow stay.
    ///
    /// # Errors
    /// A PMD that did not acknowledge.
    pub fn replace_rules(&self, rules: &[ConfiguredRule]) -> Result<RevalidateReport, SwitchError> {
        let mut state = self.lock_rules();
        state.replace(rules);
        self.publish(&mut state)
    }

    /// Rules in priority order.
    pub fn dump_rules(&self) -> Vec<RuleView> {
        let state = self.lock_rules();
        let mut list: Vec<RuleView> = state
            .table
            .rules()
            .map(|r| {
                let meta = state.meta.get(&r.id);
                RuleView {
                    id: r.id,
                    priority: r.priority,
                    text: meta.map(|m| m.text.clone()).unwrap_or_default(),
                    table: meta.map_or(0, |m| m.table),
                    cookie: format!("{:#x}", meta.map_or(0, |m| m.cookie)),
                    origin: meta.map_or("config", |m| m.origin.as_str()),
                }
            })
            .collect();
        list.sort_by_key(|r| (r.table, std::cmp::Reverse(r.priority), r.id));
        list
    }

    /// Number of rules.
    pub fn rule_count(&self) -> usize {
        self.lock_rules().table.len()
    }

    /// Each rule's table and next table (OpenFlow table statistics).
    pub fn rule_tables(&self) -> Vec<(RuleId, u8, Option<u8>)> {
        self.lock_rules().table.rules().map(|r| (r.id, r.table, r.goto)).collect()
    }
}
