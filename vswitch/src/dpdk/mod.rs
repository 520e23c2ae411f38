//! Safe layer over DPDK: EAL, mempools and mbufs, bursts, ethdev ports.
//!
//! With `offload::rte_flow`, this is the only module with `unsafe` code. The
//! ownership rules are in the types: an [`Mbuf`] frees itself on drop, a
//! [`Burst`] owns the mbufs it holds, and [`TxQueue::tx_burst`] takes what the
//! device accepted and leaves the rest in the caller's burst.

pub mod devargs;
mod eal;
mod error;
mod mbuf;
pub mod os;
mod port;
mod tsc;

pub use eal::{Eal, EalBuilder};
pub use error::DpdkError;
pub use mbuf::{Burst, Mbuf, Mempool, MAX_BURST};
pub use port::{
    LinkStatus, Port, PortConfig, PortInfo, PortStats, RxQueue, SwitchInfo, TxQueue, RSS_FLOW_TYPES, RX_DESCRIPTORS,
    TX_DESCRIPTORS,
};
pub use tsc::{rdtsc, tsc_hz};
