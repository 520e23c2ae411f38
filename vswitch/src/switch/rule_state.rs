//! The rule table with the text of each rule, and the checks an edit passes
//! before it is applied (no duplicates, room under [`MAX_RULES`]).

use crate::config::rules::MAX_RULES;
use crate::config::ConfiguredRule;
use crate::datapath::SwitchError;
use crate::flow::table::RuleId;
use crate::flow::RuleTable;
use crate::ofrule::RuleSpec;
use std::collections::BTreeMap;

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

/// The rule table and what it does not hold about each rule.
pub(super) struct RuleState {
    pub table: RuleTable,
    pub meta: BTreeMap<RuleId, RuleMeta>,
    pub generation: u64,
}

impl RuleState {
    pub fn new(rules: &[ConfiguredRule], prefix_checks: bool) -> Self {
        let mut table = RuleTable::new();
        table.set_prefix_checks(prefix_checks);
        let mut state = Self { table, meta: BTreeMap::new(), generation: 1 };
        state.replace(rules);
        state
    }

    /// Replaces the file's rules (reload); rules from vswitchctl and
    /// OpenFlow stay.
    pub(super) fn replace(&mut self, rules: &[ConfiguredRule]) {
        let old: Vec<RuleId> =
            self.meta.iter().filter(|(_, m)| m.origin == Origin::Config).map(|(id, _)| *id).collect();
        for id in old {
            self.table.remove(id);
            self.meta.remove(&id);
        }
        for r in rules {
            let id = self.table.insert(r.spec.priority, r.spec.matcher, r.spec.actions.clone());
            self.meta.insert(id, RuleMeta::text(&r.text, Origin::Config, Some(&r.spec)));
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
