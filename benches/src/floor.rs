//! The floor: dpdk-testpmd in io-forward mode on the same vdevs (net_pcap
//! replaying the scenario's pcap -> net_null), no switching at all. What a
//! switch spends above it is its own work.

use crate::report::{Measurement, Switch};
use crate::Case;
use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TESTPMD: &str = "dpdk-testpmd";

/// Runs testpmd on one case.
pub fn measure(case: &Case, main_core: usize, work: &Path, progress: bool) -> Result<Measurement> {
    let out_path = work.join("testpmd.out");
    let out = std::fs::File::create(&out_path)?;
    let prefix = format!("vsbtp{}", std::process::id());
    let mbufs = (case.packets + 65536).max(131_072);
    let mem = case.pages.memory_mb(mbufs);
    // stdbuf: testpmd's answers must reach the file as they are printed.
    let child = Command::new("stdbuf")
        .args(["-o0", "-e0", TESTPMD])
        .args(case.pages.eal(mem))
        .args(["--no-pci", "--no-shconf", "--no-telemetry"])
        .args(["--file-prefix", &prefix, "-l", &format!("{main_core},{}", case.core)])
        .args(["--main-lcore", &main_core.to_string(), "--log-level=lib.eal:warning"])
        .arg("--vdev")
        .arg(format!("net_pcap0,rx_pcap={},infinite_rx=1", case.pcap.display()))
        .args(["--vdev", "net_null1,no-rx=1", "--", "-i", "--forward-mode=io", "--nb-cores=1", "--burst=32"])
        .arg(format!("--total-num-mbufs={mbufs}"))
        .arg("--record-core-cycles")
        .stdin(Stdio::piped())
        .stdout(Stdio::from(out.try_clone()?))
        .stderr(Stdio::from(out))
        .spawn()
        .with_context(|| format!("starting {TESTPMD} (apt-get install -y dpdk-dev; make bench-deps)"))?;
    let mut pmd = crate::ours::Daemon(child);
    let result = (|| {
        let mut stdin = pmd.0.stdin.take().context("testpmd stdin")?;
        let mut shown = 0usize;
        // Each query prints one "NIC statistics for port 1" block; wait for
        // it and read its TX-packets.
        let mut query = |stdin: &mut std::process::ChildStdin| -> Result<u64> {
            stdin.write_all(b"show port stats 1\n")?;
            shown += 1;
            let deadline = Instant::now() + Duration::from_secs(120);
            loop {
                let text = std::fs::read_to_string(&out_path).unwrap_or_default();
                let blocks = tx_packets(&text);
                if blocks.len() >= shown {
                    return Ok(blocks[shown - 1]);
                }
                if Instant::now() > deadline {
                    bail!("testpmd does not answer; its output:\n{text}");
                }
                crate::nap(Duration::from_millis(20))?;
            }
        };
        query(&mut stdin)?; // the port is up
        stdin.write_all(b"start\n")?;
        crate::wait_warmup(case, || query(&mut stdin), progress)?;
        let (t0, a) = (Instant::now(), query(&mut stdin)?);
        crate::sample_window(case, progress, || query(&mut stdin))?;
        let (t1, b) = (Instant::now(), query(&mut stdin)?);
        stdin.write_all(b"stop\n")?;
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut text = String::new();
        while Instant::now() < deadline {
            text = std::fs::read_to_string(&out_path).unwrap_or_default();
            if text.contains("CPU cycles/packet") || text.contains("Done.") {
                break;
            }
            crate::nap(Duration::from_millis(50))?;
        }
        stdin.write_all(b"quit\n")?;
        let dt = t1.duration_since(t0).as_secs_f64();
        let mut m = Measurement::new(Switch::Testpmd, case);
        m.seconds = dt;
        m.mpps = b.saturating_sub(a) as f64 / dt / 1e6;
        // Over the whole run, warm-up included.
        m.cycles_per_packet = cycles_per_packet(&text).unwrap_or(0.0);
        if m.mpps == 0.0 {
            bail!("testpmd forwarded nothing; its output is in {}", out_path.display());
        }
        Ok(m)
    })();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && !matches!(pmd.0.try_wait(), Ok(Some(_))) {
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(pmd);
    let _ = std::fs::remove_dir_all(Path::new("/var/run/dpdk").join(&prefix));
    result
}

/// TX-packets of every "NIC statistics for port 1" block, in order.
fn tx_packets(text: &str) -> Vec<u64> {
    let mut port1 = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.contains("NIC statistics for port") {
            port1 = line.contains("for port 1 ");
        } else if port1 {
            if let Some(rest) = line.trim().strip_prefix("TX-packets:") {
                if let Some(n) = rest.split_whitespace().next().and_then(|v| v.parse().ok()) {
                    out.push(n);
                }
                port1 = false;
            }
        }
    }
    out
}

/// "CPU cycles/packet=115.73 (busy cycles=... / total io packets=...)".
fn cycles_per_packet(text: &str) -> Option<f64> {
    let rest = text.rsplit("CPU cycles/packet=").next().filter(|_| text.contains("CPU cycles/packet="))?;
    rest.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_testpmd_output() {
        let text = "  ######################## NIC statistics for port 0  ########################\n  \
            RX-packets: 7 RX-missed: 0\n  TX-packets: 8 TX-errors: 0\n  \
            ######################## NIC statistics for port 1  ########################\n  \
            RX-packets: 0          RX-missed: 0          RX-bytes:  0\n  TX-packets: 1234       TX-errors: 0\n\
            testpmd> show port stats 1\n  ######################## NIC statistics for port 1  ###\n  \
            TX-packets: 99999       TX-errors: 0\n\n  CPU cycles/packet=115.73 (busy cycles=1 / total io packets=2) at 2450 MHz Clock\n";
        assert_eq!(tx_packets(text), vec![1234, 99999]);
        assert_eq!(cycles_per_packet(text), Some(115.73));
        assert_eq!(cycles_per_packet("nothing"), None);
    }
}
