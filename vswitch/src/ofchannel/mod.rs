//! The OpenFlow 1.3 channel: listeners for tools (`ovs-ofctl`), connections
//! to controllers with reconnection back-off, one session per connection
//! (`session`), statistics (`stats`), rule timeouts (`expiry`), and the
//! mapping between OpenFlow and the rule table (`mapping`).

pub mod conn;
pub mod ctx;
pub mod expiry;
pub mod hub;
pub mod mapping;
pub mod packet_in;
pub mod session;
pub mod stats;

pub use conn::{start, Channel};
