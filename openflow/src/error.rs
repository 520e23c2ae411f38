//! The OpenFlow 1.3 error types and codes (spec section 7.4.4) this switch
//! sends, and the rejection a decoder or a handler returns: the code, and a
//! sentence for the log.

use std::fmt;

macro_rules! error_codes {
    ($($name:ident = ($typ:expr, $code:expr, $text:expr),)*) => {
        /// An (error type, error code) pair the spec defines.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[allow(non_camel_case_types)]
        pub enum ErrorCode {
            $($name,)*
        }

        impl ErrorCode {
            /// The pair on the wire.
            pub fn type_code(self) -> (u16, u16) {
                match self {
                    $(ErrorCode::$name => ($typ, $code),)*
                }
            }

            /// The spec's name, as `OFPET_*`/`OFP*_*` without the prefixes.
            pub fn name(self) -> &'static str {
                match self {
                    $(ErrorCode::$name => $text,)*
                }
            }

            /// The code for a pair, if it is one of ours.
            pub fn from_type_code(typ: u16, code: u16) -> Option<Self> {
                $(if (typ, code) == ($typ, $code) { return Some(ErrorCode::$name); })*
                None
            }
        }
    };
}

error_codes! {
    HelloFailedIncompatible = (0, 0, "HELLO_FAILED/INCOMPATIBLE"),
    BadRequestBadVersion = (1, 0, "BAD_REQUEST/BAD_VERSION"),
    BadRequestBadType = (1, 1, "BAD_REQUEST/BAD_TYPE"),
    BadRequestBadMultipart = (1, 2, "BAD_REQUEST/BAD_MULTIPART"),
    BadRequestBadExperimenter = (1, 3, "BAD_REQUEST/BAD_EXPERIMENTER"),
    BadRequestEperm = (1, 5, "BAD_REQUEST/EPERM"),
    BadRequestBadLen = (1, 6, "BAD_REQUEST/BAD_LEN"),
    BadRequestBufferUnknown = (1, 8, "BAD_REQUEST/BUFFER_UNKNOWN"),
    BadRequestBadTableId = (1, 9, "BAD_REQUEST/BAD_TABLE_ID"),
    BadRequestIsSlave = (1, 10, "BAD_REQUEST/IS_SLAVE"),
    BadRequestBadPort = (1, 11, "BAD_REQUEST/BAD_PORT"),
    BadRequestBadPacket = (1, 12, "BAD_REQUEST/BAD_PACKET"),
    BadActionBadType = (2, 0, "BAD_ACTION/BAD_TYPE"),
    BadActionBadLen = (2, 1, "BAD_ACTION/BAD_LEN"),
    BadActionBadExperimenter = (2, 2, "BAD_ACTION/BAD_EXPERIMENTER"),
    BadActionBadOutPort = (2, 4, "BAD_ACTION/BAD_OUT_PORT"),
    BadActionBadArgument = (2, 5, "BAD_ACTION/BAD_ARGUMENT"),
    BadActionTooMany = (2, 7, "BAD_ACTION/TOO_MANY"),
    BadActionBadOutGroup = (2, 9, "BAD_ACTION/BAD_OUT_GROUP"),
    BadActionMatchInconsistent = (2, 10, "BAD_ACTION/MATCH_INCONSISTENT"),
    BadActionUnsupportedOrder = (2, 11, "BAD_ACTION/UNSUPPORTED_ORDER"),
    BadActionBadSetType = (2, 13, "BAD_ACTION/BAD_SET_TYPE"),
    BadActionBadSetLen = (2, 14, "BAD_ACTION/BAD_SET_LEN"),
    BadActionBadSetArgument = (2, 15, "BAD_ACTION/BAD_SET_ARGUMENT"),
    BadInstructionUnknownInst = (3, 0, "BAD_INSTRUCTION/UNKNOWN_INST"),
    BadInstructionUnsupInst = (3, 1, "BAD_INSTRUCTION/UNSUP_INST"),
    BadInstructionBadTableId = (3, 2, "BAD_INSTRUCTION/BAD_TABLE_ID"),
    BadInstructionUnsupMetadata = (3, 3, "BAD_INSTRUCTION/UNSUP_METADATA"),
    BadInstructionBadExperimenter = (3, 5, "BAD_INSTRUCTION/BAD_EXPERIMENTER"),
    BadInstructionBadLen = (3, 7, "BAD_INSTRUCTION/BAD_LEN"),
    BadMatchBadType = (4, 0, "BAD_MATCH/BAD_TYPE"),
    BadMatchBadLen = (4, 1, "BAD_MATCH/BAD_LEN"),
    BadMatchBadDlAddrMask = (4, 3, "BAD_MATCH/BAD_DL_ADDR_MASK"),
    BadMatchBadNwAddrMask = (4, 4, "BAD_MATCH/BAD_NW_ADDR_MASK"),
    BadMatchBadWildcards = (4, 5, "BAD_MATCH/BAD_WILDCARDS"),
    BadMatchBadField = (4, 6, "BAD_MATCH/BAD_FIELD"),
    BadMatchBadValue = (4, 7, "BAD_MATCH/BAD_VALUE"),
    BadMatchBadMask = (4, 8, "BAD_MATCH/BAD_MASK"),
    BadMatchBadPrereq = (4, 9, "BAD_MATCH/BAD_PREREQ"),
    BadMatchDupField = (4, 10, "BAD_MATCH/DUP_FIELD"),
    FlowModFailedUnknown = (5, 0, "FLOW_MOD_FAILED/UNKNOWN"),
    FlowModFailedTableFull = (5, 1, "FLOW_MOD_FAILED/TABLE_FULL"),
    FlowModFailedBadTableId = (5, 2, "FLOW_MOD_FAILED/BAD_TABLE_ID"),
    FlowModFailedOverlap = (5, 3, "FLOW_MOD_FAILED/OVERLAP"),
    FlowModFailedEperm = (5, 4, "FLOW_MOD_FAILED/EPERM"),
    FlowModFailedBadTimeout = (5, 5, "FLOW_MOD_FAILED/BAD_TIMEOUT"),
    FlowModFailedBadCommand = (5, 6, "FLOW_MOD_FAILED/BAD_COMMAND"),
    FlowModFailedBadFlags = (5, 7, "FLOW_MOD_FAILED/BAD_FLAGS"),
    PortModFailedBadPort = (7, 0, "PORT_MOD_FAILED/BAD_PORT"),
    SwitchConfigFailedBadFlags = (10, 0, "SWITCH_CONFIG_FAILED/BAD_FLAGS"),
    SwitchConfigFailedBadLen = (10, 1, "SWITCH_CONFIG_FAILED/BAD_LEN"),
    RoleRequestFailedStale = (11, 0, "ROLE_REQUEST_FAILED/STALE"),
    RoleRequestFailedUnsup = (11, 1, "ROLE_REQUEST_FAILED/UNSUP"),
    RoleRequestFailedBadRole = (11, 2, "ROLE_REQUEST_FAILED/BAD_ROLE"),
    TableFeaturesFailedEperm = (13, 5, "TABLE_FEATURES_FAILED/EPERM"),
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a request is refused: the code the peer gets and what the log says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {detail}")]
pub struct Rejection {
    pub code: ErrorCode,
    pub detail: String,
}

impl Rejection {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self { code, detail: detail.into() }
    }
}

/// Shorthand for a refusal.
pub fn reject<T>(code: ErrorCode, detail: impl Into<String>) -> Result<T, Rejection> {
    Err(Rejection::new(code, detail))
}

/// Maps a short read inside a structure to that structure's length error.
pub(crate) trait OrLen<T> {
    fn or_len(self, code: ErrorCode, what: &str) -> Result<T, Rejection>;
}

impl<T> OrLen<T> for Result<T, crate::wire::Short> {
    fn or_len(self, code: ErrorCode, what: &str) -> Result<T, Rejection> {
        self.map_err(|_| Rejection::new(code, format!("{what}: shorter than its length says")))
    }
}
