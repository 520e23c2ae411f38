//! The OpenFlow channel's FLOW_MOD rate: `rules` adds through one
//! connection, a BARRIER after every `batch`, written as fast as the socket
//! takes them while a reader counts the BARRIER_REPLYs (the time ends at
//! the last one: every rule is then in the datapath). The same bytes go to
//! vswitchd's listener and, with `--peer ovs`, to Open vSwitch's bridge
//! (br0.mgmt) in the same run. The packet-in round trip is `packetin.rs`.

use crate::ours::{vswitchd_path, Daemon};
use anyhow::{bail, Context, Result};
use openflow::oxm::{Field, Oxm};
use openflow::{encode, frame_len, FlowMod, Frame, Match, Message};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn config(of_socket: &Path, socket: &Path, core: usize) -> String {
    format!(
        "rules = []\n\
         [eal]\nargs = [\"--no-huge\", \"-m\", \"256\", \"--no-pci\", \"--no-telemetry\", \"--log-level=lib.eal:warning\"]\n\
         [datapath]\npmd_cores = [{core}]\n[control]\nsocket = \"{}\"\n[metrics]\nlisten = \"off\"\n\
         [openflow]\nlisten = [\"punix:{}\"]\n\
         [[port]]\nname = \"vf0\"\nrole = \"representor\"\ndevargs = \"net_null_fm0,no-rx=1\"\n\
         [[port]]\nname = \"uplink0\"\nrole = \"uplink\"\ndevargs = \"net_null_fm1,no-rx=1\"\n",
        socket.display(),
        of_socket.display()
    )
}

/// The messages: `rules` FLOW_MOD adds (ip, a distinct IPv4 destination
/// each, drop), a BARRIER after every `batch` and at the end.
fn messages(rules: u32, batch: u32) -> (Vec<u8>, u32) {
    let mut out = encode(1, &Message::Hello(openflow::Hello::ours()));
    let mut barriers = 0;
    for i in 0..rules {
        let m = Match::new(vec![
            Oxm::exact(Field::EthType, 0x0800),
            Oxm::exact(Field::Ipv4Dst, u128::from(0x0a00_0000 | i)),
        ]);
        out.extend(encode(i + 2, &Message::FlowMod(FlowMod { priority: 5, matcher: m, ..Default::default() })));
        if (i + 1) % batch == 0 || i + 1 == rules {
            out.extend(encode(u32::MAX - barriers, &Message::BarrierRequest));
            barriers += 1;
        }
    }
    (out, barriers)
}

/// Adds per second through `path`: the bytes written by one thread, the
/// replies read by this one until the last BARRIER_REPLY.
fn rate(path: &Path, bytes: &[u8], barriers: u32, rules: u32) -> Result<f64> {
    let mut s = UnixStream::connect(path).with_context(|| format!("connecting to {}", path.display()))?;
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut w = s.try_clone()?;
    let start = Instant::now();
    let data = bytes.to_vec();
    let writer = std::thread::spawn(move || w.write_all(&data));
    let (mut buf, mut chunk) = (Vec::new(), vec![0u8; 1 << 16]);
    let mut seen = 0;
    while seen < barriers {
        let n = s.read(&mut chunk).context("reading replies")?;
        if n == 0 {
            bail!("the switch closed the connection after {seen} of {barriers} barriers");
        }
        buf.extend_from_slice(&chunk[..n]);
        while let Frame::Complete(len) = frame_len(&buf) {
            let msg: Vec<u8> = buf.drain(..len).collect();
            match openflow::decode(&msg).map(|(_, m)| m) {
                Ok(Message::BarrierReply) => seen += 1,
                Ok(Message::Error(e)) => bail!("the switch refused a message: type {} code {}", e.typ, e.code),
                _ => {}
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    writer.join().map_err(|_| anyhow::anyhow!("writer panicked"))??;
    Ok(f64::from(rules) / secs)
}

/// Runs the measurement and returns a table.
pub fn run(vswitchd: Option<PathBuf>, out: &Path, core: usize, rules: u32, batch: u32, peer: bool) -> Result<String> {
    std::fs::create_dir_all(out)?;
    let (bytes, barriers) = messages(rules, batch);
    let bin = vswitchd_path(vswitchd)?;
    let of_socket = out.join("flowmod-bench.of.sock");
    let socket = out.join("flowmod-bench.sock");
    let cfg = out.join("flowmod-bench.toml");
    std::fs::write(&cfg, config(&of_socket, &socket, core))?;
    let log = out.join("flowmod-bench.log");
    let daemon = Daemon::vswitchd(&bin, &cfg, &log)?;
    let up = Instant::now();
    while UnixStream::connect(&of_socket).is_err() {
        if up.elapsed() > Duration::from_secs(60) {
            bail!("vswitchd did not start; see {}", log.display());
        }
        crate::nap(Duration::from_millis(100))?;
    }
    let ours = rate(&of_socket, &bytes, barriers, rules)?;
    drop(daemon);
    let mut table = format!(
        "| switch | FLOW_MOD adds/s ({rules} rules, BARRIER every {batch}, one connection) |\n|---|---:|\n| vswitchd | {ours:.0} |\n"
    );
    if peer {
        let ovs = crate::ovs::Ovs::start(out, &[core], core, 256, &crate::pages::Pages::Small)?;
        ovs.vsctl(&["add-br", "br0", "--", "set", "bridge", "br0", "datapath_type=netdev", "fail-mode=secure"])?;
        let theirs = rate(&ovs.mgmt("br0"), &bytes, barriers, rules)?;
        table.push_str(&format!("| {} | {theirs:.0} |\n| vswitchd / OVS | {:.2}x |\n", ovs.version, ours / theirs));
    }
    Ok(table)
}
