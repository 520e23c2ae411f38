//! Prometheus metrics: the `metrics` recorder of `metrics-exporter-prometheus`
//! rendered by a small HTTP server of our own, which any local user can
//! reach, so it is bounded: at most [`MAX_CONNECTIONS`] at once (more get
//! 503 at once), a request head must arrive within [`REQUEST_DEADLINE`],
//! only `GET /metrics` (and `/`) answer 200, and failures are logged at
//! most once a second. Values are published from the aggregated counters by
//! the daemon's main loop.

use crate::accept::Acceptor;
use crate::datapath::counters::Counter;
use crate::offload_manager::manager::OffloadStats;
use crate::switch::SwitchStats;
use anyhow::{Context, Result};
use metrics_exporter_prometheus::PrometheusHandle;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Scrapes served at once.
pub const MAX_CONNECTIONS: usize = 8;
/// The request head must arrive within this; the reply be taken within twice it.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(2);
/// Longest request head read.
const MAX_HEAD: usize = 8 * 1024;
const SLICE: Duration = Duration::from_millis(100);

/// The running metrics server.
pub struct MetricsServer {
    /// Where it listens (the real port when the configuration said 0).
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Installs the recorder, runs `first` (which publishes the values as of
/// now: a scrape never sees an empty page) and starts the server on `addr`
/// (`/metrics`).
///
/// # Errors
/// When the recorder is already installed or the address cannot be bound.
pub fn install(addr: SocketAddr, first: impl FnOnce()) -> Result<MetricsServer> {
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .context("installing the Prometheus recorder")?;
    // Each PMD counter's help text, from its declaration.
    for &c in Counter::ALL {
        let m = c.meta();
        if m.gauge {
            metrics::describe_gauge!(m.name, m.help);
        } else {
            metrics::describe_counter!(m.name, m.help);
        }
    }
    first();
    let listener = TcpListener::bind(addr).with_context(|| format!("metrics: binding {addr}"))?;
    listener.set_nonblocking(true).context("metrics listener")?;
    let addr = listener.local_addr().context("metrics listener")?;
    let stop = Arc::new(AtomicBool::new(false));
    let thread = {
        let stop = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || serve(&listener, &handle, &stop))
            .context("starting the metrics thread")?
    };
    Ok(MetricsServer { addr, stop, thread: Some(thread) })
}

fn serve(listener: &TcpListener, handle: &PrometheusHandle, stop: &AtomicBool) {
    let mut acceptor = Acceptor::new("metrics", "metrics-conn", MAX_CONNECTIONS, SLICE);
    let mut last_upkeep = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if last_upkeep.elapsed() >= Duration::from_secs(5) {
            handle.run_upkeep();
            last_upkeep = Instant::now();
        }
        acceptor.turn(
            listener,
            |l| l.accept().map(|(s, _)| s),
            |stream: TcpStream| {
                let _ = stream.set_nonblocking(true);
                let _ = (&stream).write_all(&response(503, "text/plain", b"busy: too many connections\n", false));
            },
            || {
                let handle = handle.clone();
                move |stream| {
                    let _ = answer(stream, &handle);
                }
            },
        );
    }
    acceptor.finish();
}

fn response(status: u16, kind: &str, body: &[u8], with_body: bool) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        _ => "Service Unavailable",
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if with_body {
        out.extend_from_slice(body);
    }
    out
}

/// Reads one request head (within the deadline) and answers it.
fn answer(mut stream: TcpStream, handle: &PrometheusHandle) -> std::io::Result<()> {
    stream.set_read_timeout(Some(SLICE))?;
    stream.set_write_timeout(Some(SLICE))?;
    let deadline = Instant::now() + REQUEST_DEADLINE;
    let mut head = Vec::new();
    let mut chunk = [0u8; 1024];
    let complete = loop {
        if Instant::now() >= deadline {
            break false;
        }
        match stream.read(&mut chunk) {
            Ok(0) => break false,
            Ok(n) => {
                head.extend_from_slice(&chunk[..n]);
                if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
                    break true;
                }
                if head.len() > MAX_HEAD {
                    break false;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
            Err(e) => return Err(e),
        }
    };
    let text = String::from_utf8_lossy(&head);
    let mut words = text.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let head_only = method == "HEAD";
    let reply = if !complete {
        response(if head.is_empty() { 408 } else { 400 }, "text/plain", b"incomplete request\n", true)
    } else if method != "GET" && !head_only {
        response(405, "text/plain", b"only GET\n", true)
    } else {
        match path {
            "/metrics" => response(200, "text/plain; version=0.0.4", handle.render().as_bytes(), !head_only),
            "/" => response(200, "text/plain", b"vswitchd: see /metrics\n", !head_only),
            _ => response(404, "text/plain", b"not found; see /metrics\n", !head_only),
        }
    };
    let deadline = Instant::now() + 2 * REQUEST_DEADLINE;
    let mut data = &reply[..];
    while !data.is_empty() && Instant::now() < deadline {
        match stream.write(data) {
            Ok(0) => break,
            Ok(n) => data = &data[n..],
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Publishes the current counters.
/// The kernel underlay follower's counters and state.
pub fn publish_kernel(k: &crate::kernel::KernelStatus) {
    let c = &k.counters;
    metrics::counter!("vswitch_kernel_messages_total").absolute(c.messages);
    metrics::counter!("vswitch_kernel_bad_messages_total").absolute(c.bad_messages);
    metrics::counter!("vswitch_kernel_overruns_total").absolute(c.overruns);
    metrics::counter!("vswitch_kernel_resyncs_total").absolute(c.resyncs);
    metrics::counter!("vswitch_kernel_dump_errors_total").absolute(c.dump_errors);
    metrics::gauge!("vswitch_kernel_routes").set(k.kernel_routes as f64);
    metrics::gauge!("vswitch_kernel_ignored_routes").set(k.ignored_routes as f64);
    metrics::gauge!("vswitch_kernel_neighbours").set(k.kernel_neighbours as f64);
    for (uplink, _, _, up) in &k.uplinks {
        metrics::gauge!("vswitch_kernel_link_up", "uplink" => uplink.clone()).set(if *up { 1.0 } else { 0.0 });
    }
}

pub fn publish(s: &SwitchStats) {
    for p in &s.ports {
        let port = p.name.clone();
        metrics::counter!("vswitch_port_rx_packets_total", "port" => port.clone()).absolute(p.rx_packets);
        metrics::counter!("vswitch_port_rx_bytes_total", "port" => port.clone()).absolute(p.rx_bytes);
        metrics::counter!("vswitch_port_tx_packets_total", "port" => port.clone()).absolute(p.tx_packets);
        metrics::counter!("vswitch_port_tx_bytes_total", "port" => port.clone()).absolute(p.tx_bytes);
        metrics::counter!("vswitch_port_tx_dropped_total", "port" => port.clone()).absolute(p.tx_dropped);
        metrics::counter!("vswitch_port_rx_missed_total", "port" => port.clone()).absolute(p.rx_missed);
        metrics::counter!("vswitch_port_rx_no_mbuf_total", "port" => port).absolute(p.rx_no_mbuf);
    }
    // Every PMD counter as its declaration says (datapath/counters.rs).
    for &c in Counter::ALL {
        let (m, v) = (c.meta(), s.total(c));
        match (m.gauge, m.label) {
            (true, None) => metrics::gauge!(m.name).set(v as f64),
            (true, Some((k, l))) => metrics::gauge!(m.name, k => l).set(v as f64),
            (false, None) => metrics::counter!(m.name).absolute(v),
            (false, Some((k, l))) => metrics::counter!(m.name, k => l).absolute(v),
        }
    }
    // Kept for dashboards written against earlier releases.
    metrics::counter!("vswitch_upcalls_total").absolute(s.total(Counter::Upcalls));
    // The software tier beside the e-switch's (declared as hw_packets).
    metrics::counter!("vswitch_packets_total", "tier" => "sw")
        .absolute(s.total(Counter::Packets).saturating_sub(s.total(Counter::HwPackets)));
    metrics::gauge!("vswitch_rules").set(s.rules as f64);
    metrics::counter!("vswitch_hw_malformed_forwarded_total").absolute(s.hw_malformed_forwarded);
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
        metrics::counter!("vswitch_pmd_packets_total", "pmd" => pmd.clone()).absolute(p.packets);
        for (over, n) in
            [("100us", p.iterations_over_100us), ("1ms", p.iterations_over_1ms), ("10ms", p.iterations_over_10ms)]
        {
            metrics::counter!("vswitch_pmd_long_iterations_total", "pmd" => pmd.clone(), "over" => over).absolute(n);
        }
        metrics::gauge!("vswitch_pmd_longest_iteration_seconds", "pmd" => pmd).set(p.longest_iteration_us as f64 / 1e6);
    }
}

/// Publishes the receive queues: where each is polled, its packets and
/// cycles, the rebalances and moves.
pub fn publish_rxqs(r: &crate::switch::RxqShow) {
    metrics::describe_gauge!("vswitch_rxq_pmd", "The PMD (index) polling a receive queue.");
    metrics::describe_counter!("vswitch_rxq_packets_total", "Packets received on a receive queue.");
    metrics::describe_counter!(
        "vswitch_rxq_busy_cycles_total",
        "TSC cycles spent receiving and processing a receive queue's bursts."
    );
    metrics::describe_counter!("vswitch_rxq_moves_total", "Receive queues moved between PMDs.");
    metrics::describe_counter!("vswitch_rxq_rebalances_total", "Rebalances of the receive queues (any cause).");
    for p in &r.pmds {
        for q in &p.queues {
            let labels = [("port", q.port.clone()), ("queue", q.queue.to_string())];
            metrics::gauge!("vswitch_rxq_pmd", &labels).set(p.pmd as f64);
            metrics::counter!("vswitch_rxq_packets_total", &labels).absolute(q.packets);
            metrics::counter!("vswitch_rxq_busy_cycles_total", &labels).absolute(q.cycles);
        }
    }
    metrics::counter!("vswitch_rxq_moves_total").absolute(r.queue_moves);
    metrics::counter!("vswitch_rxq_rebalances_total").absolute(r.rebalances);
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
