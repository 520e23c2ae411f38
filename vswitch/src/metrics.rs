//! Prometheus metrics (`metrics` + `metrics-exporter-prometheus`), published
//! from the aggregated counters by the control thread.

use crate::datapath::SwitchStats;
use crate::offloading::manager::OffloadStats;
use anyhow::{Context, Result};
use std::net::SocketAddr;

/// Starts the HTTP exporter on `addr` (`/metrics`).
///
/// # Errors
/// When the address cannot be bound.
pub fn install(addr: SocketAddr) -> Result<()> {
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(addr)
        .install()
        .with_context(|| format!("starting the Prometheus exporter on {addr}"))
}

/// Publishes the current counters.
pub fn publish(s: &SwitchStats) {
    for p in &s.ports {
        let port = p.name.clone();
        metrics::counter!("vswitch_port_rx_packets_total", "port" => port.clone()).absolute(p.rx_packets);
        metrics::counter!("vswitch_port_rx_bytes_total", "port" => port.clone()).absolute(p.rx_bytes);
        metrics::counter!("vswitch_port_tx_packets_total", "port" => port.clone()).absolute(p.tx_packets);
        metrics::counter!("vswitch_port_tx_bytes_total", "port" => port.clone()).absolute(p.tx_bytes);
        metrics::counter!("vswitch_port_tx_dropped_total", "port" => port.clone()).absolute(p.tx_dropped);
        metrics::counter!("vswitch_port_rx_missed_total", "port" => port).absolute(p.rx_missed);
    }
    metrics::counter!("vswitch_lookups_total", "tier" => "emc").absolute(s.emc_hits);
    metrics::counter!("vswitch_lookups_total", "tier" => "megaflow").absolute(s.megaflow_hits);
    metrics::counter!("vswitch_lookups_total", "tier" => "upcall").absolute(s.upcalls);
    metrics::counter!("vswitch_upcalls_total").absolute(s.upcalls);
    // Packets by tier: the e-switch (model or NIC) and the software path.
    metrics::counter!("vswitch_packets_total", "tier" => "hw").absolute(s.hw_packets);
    metrics::counter!("vswitch_packets_total", "tier" => "sw").absolute(s.packets.saturating_sub(s.hw_packets));
    metrics::gauge!("vswitch_flows").set(s.flows as f64);
    metrics::gauge!("vswitch_rules").set(s.rules as f64);
    for (reason, n) in &s.drops {
        metrics::counter!("vswitch_drops_total", "reason" => reason.clone()).absolute(*n);
    }
    for (reason, n) in &s.parse_errors {
        metrics::counter!("vswitch_parse_errors_total", "reason" => reason.clone()).absolute(*n);
    }
    for p in &s.pmds {
        let pmd = p.index.to_string();
        metrics::counter!("vswitch_pmd_busy_cycles_total", "pmd" => pmd.clone()).absolute(p.busy_cycles);
        metrics::counter!("vswitch_pmd_idle_cycles_total", "pmd" => pmd.clone()).absolute(p.idle_cycles);
        metrics::counter!("vswitch_pmd_packets_total", "pmd" => pmd).absolute(p.packets);
    }
}

/// Publishes the offload manager's counters.
pub fn publish_offload(o: &OffloadStats) {
    metrics::gauge!("vswitch_offload_rules").set(o.rules_in_device as f64);
    metrics::gauge!("vswitch_offload_flow_rules").set(o.flow_rules as f64);
    metrics::gauge!("vswitch_offload_max_rules").set(o.max_rules as f64);
    for (state, n) in &o.flows_by_state {
        metrics::gauge!("vswitch_offload_flows", "state" => state.clone()).set(*n as f64);
    }
    for (reason, n) in &o.refusals_by_reason {
        metrics::gauge!("vswitch_offload_refused_flows", "reason" => reason.clone()).set(*n as f64);
    }
    for (error, n) in &o.failures_by_device_error {
        metrics::counter!("vswitch_offload_device_failures_total", "error" => error.clone()).absolute(*n);
    }
    for (op, n) in [
        ("insert", o.inserts),
        ("delete", o.deletes),
        ("replace", o.replacements),
        ("evict", o.evictions),
        ("reinstall", o.reinstalled),
        ("rate_limited", o.rate_limited),
        ("aged", o.aged),
    ] {
        metrics::counter!("vswitch_offload_operations_total", "op" => op).absolute(n);
    }
    metrics::counter!("vswitch_offload_hw_packets_total").absolute(o.hw_packets);
    metrics::counter!("vswitch_offload_hw_bytes_total").absolute(o.hw_bytes);
}
