//! The daemon's TOML configuration: schema, defaults and validation.
//!
//! Everything is checked before anything starts. An error names the file, the
//! line and the field, and says what was expected. Each section has its own
//! parser ([`datapath`], [`ports`], [`tunnels`], [`underlay`], [`rules`]);
//! [`Config::parse`] runs them in order.

mod ctx;
pub mod datapath;
pub mod hugepages;
mod load;
pub mod mbufs;
pub mod offload;
pub mod openflow;
pub mod ports;
mod raw;
pub mod rules;
pub mod tunnels;
mod types;
pub mod underlay;

pub use ctx::ConfigError;
pub use load::DEMO_CONFIG;
pub use types::{
    Assign, AutoLb, Config, ConfiguredRule, Generate, NeighbourSpec, Overrides, PortSpec, QueueSettings, ReloadDiff,
    Role, RouteMode, RouteSpec, RxQueues, TunnelSpec, UnderlaySpec, MAX_RX_QUEUES,
};
