//! What every thread of the OpenFlow channel shares.

use super::hub::Hub;
use crate::config::openflow::OpenflowSettings;
use crate::switch::Switch;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// The switch, the sessions, the settings, the stop flag.
pub struct Ctx {
    pub switch: Arc<Switch>,
    pub hub: Arc<Hub>,
    pub settings: OpenflowSettings,
    pub datapath_id: u64,
    pub stop: Arc<AtomicBool>,
}
