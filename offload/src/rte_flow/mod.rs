//! rte_flow structs: lowering a [`HwRule`] into them, reading them back, and
//! the real device that hands them to DPDK ([`device`]).
//!
//! This module and its children are the only places in the crate with
//! `unsafe` code: lowering only builds structs and takes pointers (safe), and
//! reading arrays back ([`read`]) and calling DPDK ([`device`]) dereference
//! them.
//!
//! A [`Lowered`] rule owns every spec, mask and action configuration its
//! arrays point to, in heap allocations that never move while it lives; so
//! moving a `Lowered` never invalidates a pointer. Arrays end with END items
//! and actions; `last` is never set.

pub mod device;
mod lower;
pub mod read;

pub use lower::*;
pub use read::{read_back, ItemKind, RawAction, RawItem, RawRule, ReadError};

#[cfg(test)]
mod tests;
