//! The offload manager: a thread that learns about megaflows from the PMDs'
//! events, offloads the hot ones (or all, by policy) into the device, and
//! keeps the others in software with a reason.
//!
//! - Capacity: at most `max_rules`; when full, a candidate evicts the
//!   coldest hardware rule only if it is `hysteresis` times hotter, its rate
//!   was measured over at least a second, and the rule is at least a second
//!   old (hardware rates are smoothed over about a second): no flapping
//!   between flows of about the same rate. Rule operations are limited to
//!   `max_ops_per_s`.
//! - Counters: every `query_interval` the hardware counters are read; their
//!   deltas are added to the flows' statistics, and flows hit in hardware are
//!   "touched" in their PMD so that software idle expiry does not take them.
//!   Rules carry AGE where the device has it; aged rules' flows are expired.
//! - Underlay changes: exactly the hardware rules whose tunnel resolution
//!   changed are re-translated and replaced make-before-break (new rule at
//!   the other priority first, then the old one destroyed); the others are
//!   not touched.
//! - Several PMDs: one rule per megaflow, shared by the flows each PMD
//!   installed for it, hot by the sum of their rates (`shared`).
//! - A port stop flushes the device's rules for it (a NIC does); after the
//!   restart they are installed again. Shutdown destroys every rule.
//!
//! Files: `core` (state, records, published views), `install` (into the
//! device), `harvest` (counters out of it), `resync` (underlay, ports,
//! shutdown), `shared` (one rule for a megaflow of several PMDs), `views`
//! (publication), `thread` (the loop).

mod core;
mod harvest;
mod install;
mod resync;
mod shared;
mod thread;
mod views;

pub use self::core::{
    FlowOffload, Manager, ManagerRequest, ManagerSetup, OffloadShared, OffloadStats, PortHits, Reason, State,
    SyncReport,
};
pub use thread::run;

#[cfg(test)]
mod tests;
