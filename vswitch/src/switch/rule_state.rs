//! The rule table with the text of each rule, and the checks an edit passes
//! before it is applied (no duplicates, room under [`MAX_RULES`]).

use crate::config::rules::MAX_RULES;
use crate::config::ConfiguredRule;
use crate::datapath::SwitchError;
use crate::flow::table::RuleId;
use crate::flow::RuleTable;
use crate::ofrule::RuleSpec;
use std::collections::BTreeMap;

/// The rule table and the text each rule was written as.
pub(super) struct RuleState {
    pub table: RuleTable,
    /// Original text of each rule, for dumps.
    pub texts: BTreeMap<RuleId, String>,
    pub generation: u64,
}

impl RuleState {
    pub fn new(rules: &[ConfiguredRule], prefix_checks: bool) -> Self {
        let mut table = RuleTable::new();
        table.set_prefix_checks(prefix_checks);
        let mut state = Self { table, texts: BTreeMap::new(), generation: 1 };
        state.replace(rules);
        state
    }

    pub(super) fn replace(&mut self, rules: &[ConfiguredRule]) {
        let prefix_checks = self.table.prefix_checks();
        self.table = RuleTable::new();
        self.table.set_prefix_checks(prefix_checks);
        self.texts.clear();
        for r in rules {
            let id = self.table.insert(r.spec.priority, r.spec.matcher, r.spec.actions.clone());
            self.texts.insert(id, r.text.clone());
        }
    }
}

/// Refuses rules with the priority and match of a rule already in the table
/// or of an earlier one of the same batch: one of the two would never be
/// consulted, and which one is an accident of ids.
pub(super) fn unique(state: &RuleState, specs: &[RuleSpec], texts: &[String]) -> Result<(), SwitchError> {
    let mut seen: std::collections::HashMap<(u32, crate::flow::table::Match), Option<usize>> =
        state.table.rules().map(|r| ((r.priority, r.matcher), None)).collect();
    for (i, (spec, text)) in specs.iter().zip(texts).enumerate() {
        if let Some(first) = seen.insert((spec.priority, spec.matcher), Some(i)) {
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
