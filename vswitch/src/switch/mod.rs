//! The switch at run time, above the packet path: [`Switch`] assembles the
//! ports and PMD threads ([`crate::datapath`]), the underlay tables, the
//! offload manager ([`crate::offload_manager`]) from a [`crate::config::Config`],
//! and is what control, metrics and the kernel follower talk to. Its
//! operations live by topic:
//! - [`core`]: the struct, start and shutdown;
//! - [`rules`]: rule edits published to the PMDs (`add-rule`, `reload`),
//!   over [`rule_state`];
//! - [`routes`]: route and neighbour edits, the kernel follower's view;
//! - [`lifecycle`]: port restarts, offload syncs;
//! - [`queues`]: receive queues to PMDs, `pmd-rxq-show`, rebalancing;
//! - [`show`]: what `show`, `dump-flows`, `dump-underlay` report, as the
//!   [`views`] types.

mod core;
mod lifecycle;
mod of_rules;
mod queues;
mod routes;
mod rule_state;
mod rules;
mod show;
mod views;

pub use self::core::{ShutdownReport, Switch};
pub use crate::datapath::{SwitchError, SwitchPort};
pub use lifecycle::RestartReport;
pub use of_rules::{OfFilter, OfRule, OfRuleView};
pub use queues::{plan, variance, PmdRxqView, QueueMove, RebalanceReport, RxqShow, RxqView};
pub use rule_state::{Origin, RuleMeta};
pub use views::{
    FlowView, NeighShow, NeighbourView, PmdView, PortView, RouteShow, RouteView, RuleView, SwitchStats, TestpmdJumps,
    TunnelView, UnderlayView,
};
