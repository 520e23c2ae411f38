//! The manager's thread: events, requests and the query tick.

use super::core::*;
use crate::datapath::flows::{EventBatch, RemoveReason};
use crate::datapath::pmd::PmdCommand;
use crossbeam_channel::{select, tick, Receiver};
use std::time::{Duration, Instant};

/// Runs the manager until a [`ManagerRequest::Stop`].
pub fn run(mut m: Manager, events: Receiver<EventBatch>, requests: Receiver<ManagerRequest>) {
    tracing::info!(device = %m.stats.device, policy = %m.stats.policy, max_rules = m.config.max_rules, "offload manager started");
    let ticker = tick(Duration::from_millis(5));
    let query_every = m.config.query_interval;
    let mut last_query = Instant::now();
    let mut last_age = Instant::now();
    let mut last_publish = Instant::now();
    let mut last_stats = Instant::now();
    loop {
        select! {
            recv(events) -> b => match b {
                Ok(batch) => m.events(batch),
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            },
            recv(requests) -> r => match r {
                Ok(ManagerRequest::Sync { since, done }) => {
                    while let Ok(batch) = events.try_recv() {
                        m.events(batch);
                    }
                    m.check_underlay();
                    m.publish();
                    let _ = done.send(m.underlay_work_since(since));
                }
                Ok(ManagerRequest::PortStopping { ethdev, done }) => {
                    while let Ok(batch) = events.try_recv() {
                        m.events(batch);
                    }
                    let n = m.port_stopping(ethdev);
                    m.publish();
                    let _ = done.send(n);
                }
                Ok(ManagerRequest::PortStarted { ethdev, done }) => {
                    let n = m.port_started(ethdev);
                    m.publish();
                    let _ = done.send(n);
                }
                Ok(ManagerRequest::Stats(done)) => {
                    m.publish_stats();
                    let _ = done.send(m.stats.clone());
                }
                Ok(ManagerRequest::Stop(done)) => {
                    let n = m.shutdown();
                    tracing::info!(rules = n, "offload manager stopped: every rule destroyed");
                    let _ = done.send(n);
                    return;
                }
                Err(_) => {
                    m.shutdown();
                    return;
                }
            },
            recv(ticker) -> _ => {
                m.check_underlay();
                m.pending();
                if last_query.elapsed() >= query_every {
                    last_query = Instant::now();
                    let touched = m.query();
                    m.send_to_pmds(touched, PmdCommand::Touch);
                }
                if m.config.age && last_age.elapsed() >= Duration::from_secs(1) {
                    last_age = Instant::now();
                    let expire = m.aged();
                    m.send_to_pmds(expire, |ids| PmdCommand::Expire(ids, RemoveReason::Aged));
                }
                if last_publish.elapsed() >= Duration::from_millis(50) {
                    last_publish = Instant::now();
                    m.publish_views();
                }
                if last_stats.elapsed() >= Duration::from_millis(250) {
                    last_stats = Instant::now();
                    m.publish_stats();
                }
            },
        }
    }
}
