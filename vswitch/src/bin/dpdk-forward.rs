//! dpdk-forward: start EAL on virtual devices and forward generated traffic
//! from a net_pcap port (replaying a pcap it writes, infinite_rx) to a net_null
//! sink, printing counts every second. A smoke run of the DPDK layer on any
//! machine: no NIC, no hugepages.

use anyhow::{bail, Context, Result};
use clap::Parser;
use pcap_file::pcap::{PcapPacket, PcapWriter};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vswitch::dpdk::{Burst, EalBuilder, Mempool, Port, PortConfig};

/// Forward generated packets between DPDK virtual devices and print counts.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Seconds to run (0: until Ctrl-C).
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Distinct UDP flows in the generated traffic.
    #[arg(long, default_value_t = 1000)]
    flows: u32,
    /// Frame size in bytes (60..=1514, without FCS).
    #[arg(long, default_value_t = 60)]
    size: usize,
    /// EAL memory in MiB (no hugepages are used).
    #[arg(long, default_value_t = 512)]
    memory_mb: u32,
}

fn udp_frame(flow: u32, size: usize) -> Vec<u8> {
    let mut f = vec![0u8; size];
    f[0..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x02]);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip_len = (size - 14) as u16;
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&(0x0a00_0000u32 + flow).to_be_bytes());
    ip[16..20].copy_from_slice(&[10, 255, 255, 1]);
    let mut sum: u32 = ip.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], c[1]]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    let udp = &mut f[34..42];
    udp[0..2].copy_from_slice(&(1024 + (flow % 64000) as u16).to_be_bytes());
    udp[2..4].copy_from_slice(&5001u16.to_be_bytes());
    udp[4..6].copy_from_slice(&(ip_len - 20).to_be_bytes());
    f
}

fn main() -> Result<()> {
    let args = Args::parse();
    if !(60..=1514).contains(&args.size) {
        bail!("--size {} is outside 60..=1514", args.size);
    }
    if args.flows == 0 {
        bail!("--flows must be at least 1");
    }
    let dir = std::env::temp_dir().join(format!("dpdk-forward-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let pcap = dir.join("in.pcap");
    {
        let file = std::fs::File::create(&pcap).with_context(|| format!("creating {}", pcap.display()))?;
        let mut w = PcapWriter::new(file)?;
        let count = args.flows.max(1024);
        for i in 0..count {
            let frame = udp_frame(i % args.flows, args.size);
            w.write_packet(&PcapPacket::new(Duration::from_micros(u64::from(i)), frame.len() as u32, &frame))?;
        }
    }

    let prefix = format!("dpdk-forward-{}", std::process::id());
    let eal = EalBuilder::new("dpdk-forward")
        .virtual_devices(args.memory_mb, &prefix)
        .args(["--no-telemetry", "--log-level", "lib.eal:warning"])
        .init()
        .context("starting DPDK")?;
    vswitch::dpdk::os::install_stop_signals();

    let pool = Arc::new(Mempool::new(&eal, "fwd_pool", 16383, 256, 2048 + 128).context("creating mbuf pool")?);
    let result = {
        let src = Port::open(&eal, &format!("net_pcap0,rx_pcap={},infinite_rx=1", pcap.display()))?;
        let dst = Port::open(&eal, "net_null0,no-rx=1")?;
        for p in [&src, &dst] {
            p.configure(&PortConfig::default(), &pool)?;
            p.start()?;
        }
        let mut rx = src.rx_queue(0)?;
        let mut tx = dst.tx_queue(0)?;
        println!(
            "dpdk-forward: DPDK {} | {} -> {} | {} flows of {} B | {}",
            dpdk_sys::DPDK_PKG_VERSION,
            src.name(),
            dst.name(),
            args.flows,
            args.size,
            if args.seconds == 0 { "until Ctrl-C".to_owned() } else { format!("{} s", args.seconds) }
        );
        let start = Instant::now();
        let mut last = (start, 0u64, 0u64);
        let (mut forwarded, mut dropped) = (0u64, 0u64);
        let mut burst = Burst::new();
        let mut polls = 0u32;
        while !vswitch::dpdk::os::stop_requested() {
            rx.rx_burst(&mut burst);
            forwarded += tx.tx_burst(&mut burst) as u64;
            dropped += burst.len() as u64;
            burst.clear();
            polls = polls.wrapping_add(1);
            if !polls.is_multiple_of(1024) {
                continue;
            }
            let now = Instant::now();
            if now.duration_since(last.0) >= Duration::from_secs(1) {
                let secs = now.duration_since(last.0).as_secs_f64();
                let s_in = src.stats()?;
                println!(
                    "{:>5.1}s  rx {:>6.2} Mpps  tx {:>6.2} Mpps  forwarded {:>11}  tx-dropped {}",
                    now.duration_since(start).as_secs_f64(),
                    (s_in.rx_packets - last.1) as f64 / secs / 1e6,
                    (forwarded - last.2) as f64 / secs / 1e6,
                    forwarded,
                    dropped
                );
                last = (now, s_in.rx_packets, forwarded);
                if args.seconds > 0 && now.duration_since(start) >= Duration::from_secs(args.seconds) {
                    break;
                }
            }
        }
        let s_in = src.stats()?;
        let s_out = dst.stats()?;
        println!(
            "total: {} received on {}, {} sent on {}, {} dropped at tx",
            s_in.rx_packets,
            src.name(),
            s_out.tx_packets,
            dst.name(),
            dropped
        );
        if forwarded == 0 {
            bail!("no packet was forwarded");
        }
        Ok(())
    };
    drop(pool);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{prefix}"));
    result
}
