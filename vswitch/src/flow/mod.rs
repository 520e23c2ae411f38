//! Flow lookup: hashing, the exact-match cache, the megaflow classifier and
//! the slow path's priority rule table. No DPDK.

#![forbid(unsafe_code)]

mod bits;
#[cfg(any(test, feature = "testing"))]
pub mod dpcls;
pub mod emc;
pub mod hash;
pub mod megaflows;
pub mod pipeline;
pub mod smc;
pub mod table;

pub use bits::{dense, Bits};
#[cfg(any(test, feature = "testing"))]
pub use dpcls::Dpcls;
pub use emc::Emc;
pub use megaflows::{FlowKeys, Megaflows};
pub use pipeline::RuleTable;
pub use smc::Smc;
pub use table::{Classification, Rule, RuleId};
