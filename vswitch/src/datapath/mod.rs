//! The packet path: [`burst`] (DPDK-free stages) inside [`pmd`] threads,
//! over the ports [`ports`] opens; [`rxq`] the receive queues they poll,
//! [`counters`] they keep, `tx` their transmit buffers, [`flows`] they
//! report, [`tunnel`] resolution, [`fair`] upcall budgets. The switch that
//! assembles them is [`crate::switch`].

pub mod burst;
pub mod counters;
mod error;
pub mod fair;
pub mod flows;
pub mod pmd;
pub mod ports;
pub mod punt;
pub mod rxq;
pub mod tunnel;
mod tx;

pub use burst::{PmdConfig, RevalidateReport};
pub use error::SwitchError;
pub use ports::SwitchPort;
pub use tx::TxHandle;
