//! Flow lookup: hashing, the exact-match cache, the megaflow classifier and
//! the slow path's priority rule table. No DPDK.

#![forbid(unsafe_code)]

pub mod dpcls;
pub mod emc;
pub mod hash;
pub mod megaflows;
pub mod smc;
pub mod table;

pub use dpcls::Dpcls;
pub use emc::Emc;
pub use megaflows::{FlowKeys, Megaflows};
pub use smc::Smc;
pub use table::{Classification, Rule, RuleId, RuleTable};

/// Indices of the set bits of a burst mask, lowest first.
#[derive(Clone, Copy)]
pub struct Bits(pub u64);

impl Iterator for Bits {
    type Item = usize;

    #[inline(always)]
    fn next(&mut self) -> Option<usize> {
        if self.0 == 0 {
            return None;
        }
        let i = self.0.trailing_zeros() as usize;
        self.0 &= self.0 - 1;
        Some(i)
    }
}
