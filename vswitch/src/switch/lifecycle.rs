//! Keeping the tiers in step when something changes under them: after a
//! rule or underlay edit, the offload manager catches up (and replaces the
//! hardware rules the change affected) and every PMD finishes its current
//! iteration before the edit returns; a port restart pauses the PMDs on it
//! and re-installs the hardware rules its stop flushed.

use super::core::Switch;
use crate::datapath::pmd::PmdCommand;
use crate::datapath::SwitchError;
use crate::offload_manager::manager::SyncReport;
use crossbeam_channel::bounded;
use serde::Serialize;
use std::time::Duration;

/// What a port restart did.
#[derive(Debug, Clone, Serialize)]
pub struct RestartReport {
    pub port: String,
    /// Hardware rules the stop flushed.
    pub rules_dropped: usize,
    /// Hardware rules installed again after the start.
    pub rules_reinstalled: usize,
}

impl Switch {
    /// Every PMD has finished the iteration it was in and sent its events:
    /// the packets it handles from now on see the current tables.
    pub(super) fn barrier(&self) -> Result<(), SwitchError> {
        let mut waits = Vec::new();
        for p in &self.pmds {
            let (tx, rx) = bounded(1);
            p.commands
                .send_timeout(PmdCommand::Barrier(tx), Duration::from_secs(2))
                .map_err(|_| SwitchError::PmdTimeout(format!("PMD {}: its command queue is full", p.shared.index)))?;
            waits.push((p.shared.index, rx));
        }
        for (index, rx) in waits {
            rx.recv_timeout(Duration::from_secs(5))
                .map_err(|_| SwitchError::PmdTimeout(format!("PMD {index} did not answer")))?;
        }
        Ok(())
    }

    /// The offload manager has processed every flow event sent so far and
    /// the current underlay.
    /// The report covers the underlay changes after generation `since`
    /// (`u64::MAX`: none; a rule edit's sync).
    pub(super) fn offload_sync(&self, since: u64) -> Result<Option<SyncReport>, SwitchError> {
        match &self.offload {
            None => Ok(None),
            Some(o) => o.sync(since).map(Some).ok_or_else(|| {
                SwitchError::PmdTimeout(format!(
                    "the offload manager did not answer within {} s",
                    crate::offload_manager::SYNC_TIMEOUT.as_secs()
                ))
            }),
        }
    }

    /// After an underlay edit (the tables were at generation `since`
    /// before it): hardware rules that used the old resolution are replaced
    /// make-before-break, then every PMD finishes its iteration; from then
    /// on no packet leaves with the old encapsulation. The report is the
    /// work the edit caused, whether the manager's own periodic check or
    /// this sync did it.
    pub(super) fn underlay_changed(&self, since: u64) -> Result<Option<SyncReport>, SwitchError> {
        let report = self.offload_sync(since)?;
        self.barrier()?;
        Ok(report)
    }

    /// Stops and starts a port (a NIC flushes its flow rules on stop; the
    /// model e-switch does too); the offload manager installs again what was
    /// there. The PMDs neither poll nor send on the port meanwhile.
    ///
    /// # Errors
    /// Unknown port, or DPDK refusing to stop or start it.
    pub fn restart_port(&self, name: &str) -> Result<RestartReport, SwitchError> {
        let p = self
            .ports
            .iter()
            .find(|p| p.spec.name == name)
            .ok_or_else(|| SwitchError::Invalid(format!("no port named {name:?}")))?;
        let mut waits = Vec::new();
        for pmd in &self.pmds {
            let (tx, rx) = bounded(1);
            pmd.commands
                .send_timeout(PmdCommand::Pause(p.number, tx), Duration::from_secs(2))
                .map_err(|_| SwitchError::PmdTimeout(format!("PMD {}: its command queue is full", pmd.shared.index)))?;
            waits.push(rx);
        }
        for rx in waits {
            rx.recv_timeout(Duration::from_secs(5))
                .map_err(|_| SwitchError::PmdTimeout("a PMD did not pause".into()))?;
        }
        let dropped = self.offload.as_ref().and_then(|o| o.port_stopping(p.port.id())).unwrap_or(0);
        let restarted =
            p.port.stop().and_then(|()| p.port.start()).map_err(SwitchError::dpdk(format!("port {name:?}: restart")));
        for pmd in &self.pmds {
            let _ = pmd.commands.send_timeout(PmdCommand::Resume(p.number), Duration::from_secs(2));
        }
        restarted?;
        let reinstalled = self.offload.as_ref().and_then(|o| o.port_started(p.port.id())).unwrap_or(0);
        tracing::info!(port = name, dropped, reinstalled, "port restarted");
        Ok(RestartReport { port: name.to_owned(), rules_dropped: dropped, rules_reinstalled: reinstalled })
    }
}

impl Switch {
    /// `pmd-rxq-show`: per PMD its core, queues with their share of its
    /// busy cycles, and its busy and idle shares, over the last interval.
    pub fn rxq_show(&self) -> super::RxqShow {
        self.queues.show()
    }

    /// `pmd-rxq-rebalance`: the queues assigned again from the last
    /// interval's loads; returns the moves.
    ///
    /// # Errors
    /// A PMD that does not answer.
    pub fn rxq_rebalance(&self) -> Result<super::RebalanceReport, SwitchError> {
        self.queues.rebalance()
    }

    /// `pmd-rxq-move PORT:QUEUE CORE`.
    ///
    /// # Errors
    /// An unknown port, queue or core; a PMD that does not answer.
    pub fn rxq_move(&self, queue: &str, core: usize) -> Result<super::QueueMove, SwitchError> {
        let bad = || SwitchError::Invalid(format!("{queue:?}: expected PORT:QUEUE, e.g. uplink0:1"));
        let (port, q) = queue.rsplit_once(':').ok_or_else(bad)?;
        let q: u16 = q.parse().map_err(|_| bad())?;
        let number = self
            .port_number(port)
            .filter(|&n| (n as usize) < self.ports.len())
            .ok_or_else(|| SwitchError::Invalid(format!("no port named {port:?}")))?;
        self.queues.move_one(number, q, core)
    }
}
