//! What the running switch's operations can fail with.

use crate::dpdk::DpdkError;
use crate::net::PrefixError;
use crate::ofrule::RuleError;

/// A failed switch operation, saying what and where.
#[derive(Debug, thiserror::Error)]
pub enum SwitchError {
    /// A DPDK call failed; `what` names the port or step.
    #[error("{what}: {cause}")]
    Dpdk { what: String, cause: DpdkError },
    /// A thread could not be started.
    #[error("{what}: {cause}")]
    Thread { what: &'static str, cause: std::io::Error },
    /// A PMD did not answer a control request in time.
    #[error("{0}")]
    PmdTimeout(String),
    #[error(transparent)]
    Rule(#[from] RuleError),
    #[error(transparent)]
    Prefix(#[from] PrefixError),
    /// An argument that names nothing or the wrong kind of thing.
    #[error("{0}")]
    Invalid(String),
    /// Nothing matched a delete.
    #[error("{0}")]
    NotFound(String),
}

impl SwitchError {
    /// A DPDK failure with its context.
    pub fn dpdk(what: impl Into<String>) -> impl FnOnce(DpdkError) -> Self {
        let what = what.into();
        move |cause| SwitchError::Dpdk { what, cause }
    }
}
