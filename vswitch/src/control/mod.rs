//! The control socket: JSON over a Unix socket (mode 0600), one request per
//! line, one reply per line. `vswitchctl` is the client; [`server`] serves.
//!
//! A request is a [`Request`]: `{"cmd": "add-rule", "rule": "..."}`. The same
//! enum is vswitchctl's list of subcommands, so the daemon's "unknown
//! command" answer (serde's list of variants) and the client's `--help`
//! cannot drift apart. Replies: `{"ok": true, "result": ...}` or
//! `{"ok": false, "error": "..."}`.

mod client;
mod error;
mod execute;
pub mod reply;
mod request;
mod server;

pub use client::{call, CLIENT_TIMEOUT};
pub use error::ControlError;
pub use execute::{execute, respond};
pub use request::{Request, RuleList, MAX_REQUEST};
pub use server::{bind, serve, MAX_CONNECTIONS, REPLY_DEADLINE, REQUEST_DEADLINE};
