//! Why a control request failed.

use crate::config::ConfigError;
use crate::switch::SwitchError;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(transparent)]
    Switch(#[from] SwitchError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Wrong arguments or a request that cannot apply.
    #[error("{0}")]
    Usage(String),
    #[error("{what}: {cause}")]
    Io { what: String, cause: std::io::Error },
    #[error("the daemon's reply: {0}")]
    Reply(String),
    #[error("{0}")]
    Daemon(String),
}

pub(super) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ControlError {
    let what = what.into();
    move |cause| ControlError::Io { what, cause }
}
