//! The OpenFlow 1.3 channel: listeners for tools (`ovs-ofctl`), connections
//! to controllers with reconnection back-off, one session per connection
//! (`session`), statistics (`stats`), rule timeouts and the fail mode
//! (`expiry`), packet-ins (`packet_in`), port status (`port_status`), the
//! sessions' registry (`hub`).
//! The mapping between OpenFlow and the rule table is [`crate::ofmap`]
//! (flow-core level: the switch's rule edits use it too).

pub mod conn;
pub mod ctx;
pub mod expiry;
pub mod hub;
pub mod packet_in;
pub mod port_status;
pub mod session;
pub mod stats;

pub use conn::{start, Channel};
