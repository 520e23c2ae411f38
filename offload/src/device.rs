//! The devices rules are installed in, behind one trait: the real NIC through
//! DPDK's rte_flow ([`crate::rte_flow::device::RteFlowDevice`]) and the model
//! e-switch ([`crate::model::ModelDevice`]). Errors carry what the device said
//! (rte_flow error type, the driver's message, errno) and a classification
//! the switch shows as the reason a flow stays in software.

use crate::packet::PacketBuf;
use crate::rte_flow::Lowered;
use std::fmt;
use std::sync::Arc;

/// A created rule, as the device that created it knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleHandle(pub u64);

/// Packets and bytes a rule's COUNT action saw since creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HitCounts {
    pub packets: u64,
    pub bytes: u64,
}

/// What kind of refusal an error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// A pattern item (or its mask) the device does not take.
    UnsupportedItem,
    /// An action (or its configuration) the device does not take.
    UnsupportedAction,
    /// The device has no flow API, or refuses this kind of rule altogether.
    Unsupported,
    /// The table is full (ENOSPC / ENOMEM).
    NoSpace,
    /// The rule is malformed for this device.
    Invalid,
    /// Try again later (EBUSY / EAGAIN).
    Busy,
    Other,
}

impl ErrorKind {
    /// Every kind, for counters indexed by kind.
    pub const ALL: [ErrorKind; 7] = [
        ErrorKind::UnsupportedItem,
        ErrorKind::UnsupportedAction,
        ErrorKind::Unsupported,
        ErrorKind::NoSpace,
        ErrorKind::Invalid,
        ErrorKind::Busy,
        ErrorKind::Other,
    ];

    /// A stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::UnsupportedItem => "unsupported_item",
            ErrorKind::UnsupportedAction => "unsupported_action",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::NoSpace => "no_space",
            ErrorKind::Invalid => "invalid",
            ErrorKind::Busy => "busy",
            ErrorKind::Other => "other",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `rte_flow_error_type` values and names (stable in the rte_flow ABI).
pub const ERROR_TYPE_NAMES: [&str; 18] = [
    "NONE",
    "UNSPECIFIED",
    "HANDLE",
    "ATTR_GROUP",
    "ATTR_PRIORITY",
    "ATTR_INGRESS",
    "ATTR_EGRESS",
    "ATTR_TRANSFER",
    "ATTR",
    "ITEM_NUM",
    "ITEM_SPEC",
    "ITEM_LAST",
    "ITEM_MASK",
    "ITEM",
    "ACTION_NUM",
    "ACTION_CONF",
    "ACTION",
    "STATE",
];

/// `RTE_FLOW_ERROR_TYPE_UNSPECIFIED`.
pub const ERROR_TYPE_UNSPECIFIED: u32 = 1;
/// `RTE_FLOW_ERROR_TYPE_HANDLE`.
pub const ERROR_TYPE_HANDLE: u32 = 2;
/// `RTE_FLOW_ERROR_TYPE_ATTR`.
pub const ERROR_TYPE_ATTR: u32 = 8;
/// `RTE_FLOW_ERROR_TYPE_ITEM`.
pub const ERROR_TYPE_ITEM: u32 = 13;
/// `RTE_FLOW_ERROR_TYPE_ACTION`.
pub const ERROR_TYPE_ACTION: u32 = 16;

/// The name of an `rte_flow_error_type` value.
pub fn error_type_name(t: u32) -> String {
    ERROR_TYPE_NAMES.get(t as usize).map_or_else(|| format!("type {t}"), |n| (*n).to_owned())
}

/// A device's refusal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct DeviceError {
    /// The call: "validate", "create", "destroy", "query", "aged", "flush", ...
    pub op: &'static str,
    pub kind: ErrorKind,
    /// `rte_flow_error_type` (0 when the call reported none).
    pub error_type: u32,
    /// The driver's message ("" when it gave none).
    pub message: String,
    /// Positive errno.
    pub errno: i32,
}

impl fmt::Display for DeviceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let msg = if self.message.is_empty() { "(no message)" } else { self.message.as_str() };
        write!(f, "{}: {msg} [{}, {}, errno {}]", self.op, self.kind, error_type_name(self.error_type), self.errno)
    }
}

impl DeviceError {
    /// Classifies an errno and an rte_flow error type.
    pub fn classify(errno: i32, error_type: u32) -> ErrorKind {
        let item = (9..=13).contains(&error_type);
        let action = (14..=16).contains(&error_type);
        match errno {
            libc_errno::ENOSPC | libc_errno::ENOMEM => ErrorKind::NoSpace,
            libc_errno::EBUSY | libc_errno::EAGAIN => ErrorKind::Busy,
            libc_errno::ENOSYS => ErrorKind::Unsupported,
            libc_errno::ENOTSUP if item => ErrorKind::UnsupportedItem,
            libc_errno::ENOTSUP if action => ErrorKind::UnsupportedAction,
            libc_errno::ENOTSUP => ErrorKind::Unsupported,
            libc_errno::EINVAL => ErrorKind::Invalid,
            _ => ErrorKind::Other,
        }
    }

    /// An error with its kind derived from `errno` and `error_type`.
    pub fn new(op: &'static str, errno: i32, error_type: u32, message: impl Into<String>) -> Self {
        Self { op, kind: Self::classify(errno, error_type), error_type, message: message.into(), errno }
    }
}

/// errno values (Linux), so this module needs no libc.
pub mod libc_errno {
    pub const ENOMEM: i32 = 12;
    pub const EBUSY: i32 = 16;
    pub const EINVAL: i32 = 22;
    pub const ENOSPC: i32 = 28;
    pub const EAGAIN: i32 = 11;
    pub const ENOSYS: i32 = 38;
    pub const ENOENT: i32 = 2;
    pub const ENOTSUP: i32 = 95;
}

/// A device that takes transfer rules.
/// What happened to a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// No rule: the packet goes on to the software switch, unchanged.
    Miss,
    /// Edited and to be sent to this ethdev port.
    Output(u16),
    /// Dropped by a rule.
    Drop,
    /// A rule matched but its actions could not run (no headroom, ...); the
    /// packet may be half-edited and must be dropped (counted).
    Error,
    /// From a VF above the VF's MTU: a VF cannot send it (its port on the
    /// e-switch drops it before any rule).
    RxOverMtu,
    /// To this VF's ethdev port above the VF's MTU: the VF's receive drops
    /// it (the rule counted the hit).
    TxOverMtu(u16),
}

/// The part of an e-switch that runs in the host's packet path, in front of
/// the software switch. A NIC's e-switch switches before packets reach the
/// host, so the rte_flow device has none; the model e-switch (a test and
/// demo backend) is software, so the PMD runs it on what it receives. The
/// switch learns which from the device ([`FlowDevice::in_path`]): it never
/// names the model.
pub trait InPath: Send + Sync {
    /// Runs `burst` with a view of the rules taken once for the burst
    /// (no allocation: the session lives on this call's stack).
    fn with_session(&self, burst: &mut dyn FnMut(&mut dyn InPathSession));
    /// Rules installed.
    fn rules(&self) -> usize;
    /// Frames a rule forwarded that software would have dropped as
    /// malformed (a NIC does not check lengths either).
    fn malformed_forwarded(&self) -> u64;
}

/// One burst's pass through an [`InPath`] e-switch.
pub trait InPathSession {
    /// What the e-switch does with `pkt`, received on ethdev `ingress`
    /// (it may edit it).
    fn process(&mut self, ingress: u16, pkt: &mut dyn PacketBuf) -> Verdict;
}

pub trait FlowDevice {
    /// What it is, for logs and the probe ("rte_flow on port 0 (net_mlx5)", ...).
    fn describe(&self) -> String;

    /// Asks whether the device would take the rule.
    ///
    /// # Errors
    /// The device's refusal.
    fn validate(&mut self, rule: &Lowered) -> Result<(), DeviceError>;

    /// Installs the rule.
    ///
    /// # Errors
    /// The device's refusal.
    fn create(&mut self, rule: &Lowered) -> Result<RuleHandle, DeviceError>;

    /// Removes a rule; returns its COUNT as it went (`None` without COUNT
    /// or when the device could not say), so that its last hits are not
    /// lost. The model reads them atomically with the removal; a NIC is
    /// queried just before the destroy (what it counts in between is lost).
    ///
    /// # Errors
    /// Unknown handle, or the device's refusal.
    fn destroy(&mut self, handle: RuleHandle) -> Result<Option<HitCounts>, DeviceError>;

    /// The rule's COUNT.
    ///
    /// # Errors
    /// Unknown handle, no COUNT action, or the device's refusal.
    fn query(&mut self, handle: RuleHandle) -> Result<HitCounts, DeviceError>;

    /// AGE contexts (the lowering's cookies) of rules that aged out since
    /// the last call.
    ///
    /// # Errors
    /// The device's refusal (e.g. no aging support).
    fn aged(&mut self) -> Result<Vec<u64>, DeviceError>;

    /// Removes every rule this device object created; returns how many.
    ///
    /// # Errors
    /// The device's refusal.
    fn flush(&mut self) -> Result<usize, DeviceError>;

    /// Rules currently installed through this object.
    fn rules(&self) -> usize;

    /// `port` is stopping. A NIC without `RTE_ETH_DEV_CAPA_FLOW_RULE_KEEP`
    /// drops rules then; returns the handles that are gone (never to be
    /// destroyed), with their last COUNT as for [`FlowDevice::destroy`], so
    /// the caller can count their hits and install them again after the
    /// restart.
    fn port_stopped(&mut self, port: u16) -> Vec<(RuleHandle, Option<HitCounts>)>;

    /// What this device puts in the host's packet path (see [`InPath`]):
    /// none for a NIC.
    fn in_path(&self) -> Option<Arc<dyn InPath>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        assert_eq!(DeviceError::classify(libc_errno::ENOSYS, ERROR_TYPE_UNSPECIFIED), ErrorKind::Unsupported);
        assert_eq!(DeviceError::classify(libc_errno::ENOTSUP, ERROR_TYPE_ITEM), ErrorKind::UnsupportedItem);
        assert_eq!(DeviceError::classify(libc_errno::ENOTSUP, 12), ErrorKind::UnsupportedItem);
        assert_eq!(DeviceError::classify(libc_errno::ENOTSUP, ERROR_TYPE_ACTION), ErrorKind::UnsupportedAction);
        assert_eq!(DeviceError::classify(libc_errno::ENOSPC, ERROR_TYPE_UNSPECIFIED), ErrorKind::NoSpace);
        assert_eq!(DeviceError::classify(libc_errno::EBUSY, 0), ErrorKind::Busy);
        assert_eq!(DeviceError::classify(libc_errno::EINVAL, ERROR_TYPE_ITEM), ErrorKind::Invalid);
        assert_eq!(DeviceError::classify(5, 0), ErrorKind::Other);
        let e = DeviceError::new("create", libc_errno::ENOSYS, 1, "Function not implemented");
        assert_eq!(e.to_string(), "create: Function not implemented [unsupported, UNSPECIFIED, errno 38]");
        assert_eq!(error_type_name(99), "type 99");
    }
}
