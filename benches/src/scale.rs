//! The scaling benchmark: one scenario with 1, 2, 4, ... PMDs, one receive
//! queue per PMD on the source port (the scenario's pcap split by flow into
//! a file per queue, as RSS spreads a NIC's traffic), vswitchd and then Open
//! vSwitch with the same queues on the same cores. Reports Mpps per PMD
//! count, the efficiency (Mpps at N / (N x Mpps at the smallest count,
//! scaled to N)) and each PMD's busy share. Cores come from flags, so the
//! same binary measures a host with many.

use crate::report::{Measurement, Switch};
use crate::scenario::{self, Scenario};
use crate::{ours, ovs, Case};
use anyhow::{bail, Context, Result};
use pcap_file::pcap::{PcapReader, PcapWriter};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What to measure.
pub struct Setup {
    pub scenario: Scenario,
    pub flows: u32,
    pub frame: usize,
    /// PMD counts, e.g. 1, 2, 4.
    pub pmds: Vec<usize>,
    /// PMD cores in order of use: N PMDs take the first N.
    pub cores: Vec<usize>,
    /// The control threads' core.
    pub main_core: usize,
    pub warmup: u64,
    pub seconds: u64,
    pub peer: bool,
    pub out: PathBuf,
    pub vswitchd: PathBuf,
}

#[derive(Serialize)]
struct Row {
    pmds: usize,
    cores: Vec<usize>,
    /// The main core is one of the PMD cores (a machine with too few).
    shares_main_core: bool,
    vswitchd: Measurement,
    ovs: Option<Measurement>,
}

#[derive(Serialize)]
struct ScaleResults {
    meta: BTreeMap<String, String>,
    rows: Vec<Row>,
}

/// The PMD cores in order of use: as given, or every core but the main
/// one, then the main one; each must exist.
pub fn cores(given: Option<Vec<usize>>, main_core: usize) -> Result<Vec<usize>> {
    let all = vswitch::config::datapath::machine_cores();
    let cores = given.unwrap_or_else(|| (0..all).filter(|&c| c != main_core).chain(Some(main_core)).collect());
    if let Some(bad) = cores.iter().chain(Some(&main_core)).find(|&&c| c >= all) {
        bail!("core {bad} does not exist (this machine has cores 0..={})", all - 1);
    }
    Ok(cores)
}

/// Splits `pcap` into `n` files by flow (a hash of the IPv4 addresses and
/// ports of the outermost header), in order; fails if one stays empty.
fn split(pcap: &Path, n: usize, dir: &Path) -> Result<Vec<PathBuf>> {
    let paths: Vec<PathBuf> = (0..n).map(|q| dir.join(format!("queue{q}-of-{n}.pcap"))).collect();
    let mut writers = paths
        .iter()
        .map(|p| Ok(PcapWriter::new(std::io::BufWriter::new(std::fs::File::create(p)?))?))
        .collect::<Result<Vec<_>>>()?;
    let mut counts = vec![0u64; n];
    let mut r = PcapReader::new(std::fs::File::open(pcap).with_context(|| format!("reading {}", pcap.display()))?)?;
    while let Some(p) = r.next_packet() {
        let p = p?;
        let key = p.data.get(26..38).unwrap_or(&[]);
        // FNV-1a with a final mix (FNV's low bits alone follow the bytes'
        // parity): any stable spread by flow does.
        let h = key.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
        let h = (h ^ (h >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
        let q = ((h >> 33) % n as u64) as usize;
        writers[q].write_packet(&p)?;
        counts[q] += 1;
    }
    if let Some(q) = counts.iter().position(|&c| c == 0) {
        bail!("queue {q} of {n} gets no flow: give more --flows");
    }
    Ok(paths)
}

/// Runs the benchmark; writes scale.json and scale.md into `out` and returns
/// the markdown.
pub fn run(s: &Setup) -> Result<String> {
    let most = s.pmds.iter().copied().max().unwrap_or(1);
    if s.pmds.contains(&0) || most > s.cores.len() {
        bail!("{most} PMDs need {most} cores; --cores gives {:?}", s.cores);
    }
    std::fs::create_dir_all(&s.out).with_context(|| format!("creating {}", s.out.display()))?;
    let work = std::env::temp_dir().join(format!("vswitch-bench-scale-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let _cleanup = crate::RemoveDir(work.clone());
    let pcap = work.join("traffic.pcap");
    let packets = scenario::write_pcap(&pcap, s.scenario, s.flows, s.frame)?;
    let progress = crate::atty_stderr();
    let mut rows = Vec::new();
    for &n in &s.pmds {
        let cores = s.cores[..n].to_vec();
        let files = split(&pcap, n, &work)?;
        let case = Case {
            scenario: s.scenario,
            flows: s.flows,
            frame: s.frame,
            pcap: files[0].clone(),
            packets,
            core: cores[0],
            pmd_cores: cores.clone(),
            queue_pcaps: files,
            pages: crate::pages::Pages::Small,
            warmup: Duration::from_secs(s.warmup),
            window: Duration::from_secs(s.seconds),
            baseline: false,
        };
        crate::interrupted()?;
        eprintln!("{n} PMD(s) on cores {cores:?}: {}", case.label());
        let ours = ours::measure(&s.vswitchd, &case, &work, progress)
            .unwrap_or_else(|e| Measurement::failed(Switch::Vswitch, &case, format!("{e:#}")));
        let theirs = if s.peer {
            let mem = scenario::eal_memory_mb(packets + 131_072).max(3072);
            let m = ovs::Ovs::start(&work, &cores, s.main_core, mem, &crate::pages::Pages::Small)
                .context("starting Open vSwitch")
                .and_then(|o| o.measure(&case, progress))
                .unwrap_or_else(|e| Measurement::failed(Switch::Ovs, &case, format!("{e:#}")));
            Some(m)
        } else {
            None
        };
        crate::interrupted()?;
        for m in std::iter::once(&ours).chain(theirs.as_ref()) {
            match &m.error {
                Some(e) => eprintln!("    {:<14} failed: {e}", m.switch.label()),
                None => eprintln!("    {:<14} {:>7.2} Mpps, busy {:?}", m.switch.label(), m.mpps, busy(m)),
            }
        }
        rows.push(Row { pmds: n, shares_main_core: cores.contains(&s.main_core), cores, vswitchd: ours, ovs: theirs });
    }
    let timing = crate::Timing { warmup: s.warmup, seconds: s.seconds, core: None, rounds: 1 };
    let mut meta = crate::meta(s.cores[0], &timing);
    meta.insert("pmd_core".into(), format!("{:?} (N PMDs take the first N)", s.cores));
    meta.insert("scenario".into(), format!("{} {} flows {} B", s.scenario.name(), s.flows, s.frame));
    meta.insert("main_core".into(), s.main_core.to_string());
    meta.insert("window_s".into(), s.seconds.to_string());
    let results = ScaleResults { meta, rows };
    std::fs::write(s.out.join("scale.json"), serde_json::to_string_pretty(&results)?)?;
    let md = markdown(&results);
    std::fs::write(s.out.join("scale.md"), &md)?;
    Ok(md)
}

fn busy(m: &Measurement) -> Vec<u64> {
    m.pmd_busy.iter().map(|b| b.round() as u64).collect()
}

/// Mpps at `n` over `n` times the per-PMD rate at the first row.
fn efficiency(rows: &[Row], n: usize, mpps: f64, pick: impl Fn(&Row) -> Option<&Measurement>) -> Option<f64> {
    let first = rows.first()?;
    let base = pick(first).filter(|m| m.error.is_none())?.mpps / first.pmds as f64;
    (base > 0.0).then(|| mpps / (n as f64 * base))
}

fn markdown(r: &ScaleResults) -> String {
    let mut md = String::from("# Scaling over PMDs\n\n");
    for (k, v) in &r.meta {
        md.push_str(&format!("- {k}: {v}\n"));
    }
    md.push_str(
        "\nOne receive queue per PMD on the source port (its traffic split by flow); both switches get the \
         same queues and cores. Efficiency: Mpps at N / (N x Mpps per PMD at the first count).\n\n\
         | PMDs | cores | vswitchd Mpps | efficiency | busy % per PMD | OVS Mpps | efficiency | busy % per PMD | vswitchd / OVS |\n\
         |---:|---|---:|---:|---|---:|---:|---|---:|\n",
    );
    let cell = |m: Option<&Measurement>, rows: &[Row], n: usize, pick: fn(&Row) -> Option<&Measurement>| match m {
        None => "| - | - | - ".to_owned(),
        Some(m) if m.error.is_some() => "| failed | - | - ".to_owned(),
        Some(m) => format!(
            "| {:.2} | {} | {:?} ",
            m.mpps,
            efficiency(rows, n, m.mpps, pick).map_or("-".into(), |e| format!("{e:.2}")),
            busy(m)
        ),
    };
    for row in &r.rows {
        let ratio = match &row.ovs {
            Some(o) if o.error.is_none() && o.mpps > 0.0 && row.vswitchd.error.is_none() => {
                format!("{:.2}x", row.vswitchd.mpps / o.mpps)
            }
            _ => "-".into(),
        };
        md.push_str(&format!(
            "| {} | {:?}{} {}{}| {ratio} |\n",
            row.pmds,
            row.cores,
            if row.shares_main_core { " (shares the main core)" } else { "" },
            cell(Some(&row.vswitchd), &r.rows, row.pmds, |r| Some(&r.vswitchd)),
            cell(row.ovs.as_ref(), &r.rows, row.pmds, |r| r.ovs.as_ref()),
        ));
    }
    for row in &r.rows {
        for m in std::iter::once(&row.vswitchd).chain(row.ovs.as_ref()) {
            if let Some(e) = &m.error {
                md.push_str(&format!("\n{} at {} PMDs failed: {e}\n", m.switch.label(), row.pmds));
            }
        }
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The split keeps each flow in one file, in order, and every packet.
    #[test]
    fn split_by_flow() {
        let dir = std::env::temp_dir().join(format!("vsb-split-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let pcap = dir.join("fwd.pcap");
        let written = scenario::write_pcap(&pcap, Scenario::Fwd, 1000, 64).expect("pcap");
        let two = split(&pcap, 2, &dir).expect("split in two");
        let sizes: Vec<u64> = two.iter().map(|f| std::fs::metadata(f).expect("file").len()).collect();
        assert!(sizes[0] * 10 > sizes[1] * 7 && sizes[1] * 10 > sizes[0] * 7, "an even spread: {sizes:?}");
        let files = split(&pcap, 3, &dir).expect("split");
        let mut total = 0;
        let mut seen: std::collections::HashMap<Vec<u8>, usize> = std::collections::HashMap::new();
        for (q, f) in files.iter().enumerate() {
            let mut r = PcapReader::new(std::fs::File::open(f).expect("open")).expect("reader");
            while let Some(p) = r.next_packet() {
                let p = p.expect("packet");
                total += 1;
                let at = *seen.entry(p.data[26..38].to_vec()).or_insert(q);
                assert_eq!(at, q, "a flow in two files");
            }
        }
        assert_eq!(total, written);
        assert!(split(&scenario_pcap_one_flow(&dir), 2, &dir).is_err(), "one flow cannot feed two queues");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    fn scenario_pcap_one_flow(dir: &Path) -> PathBuf {
        let p = dir.join("one.pcap");
        scenario::write_pcap(&p, Scenario::Fwd, 1, 64).expect("pcap");
        p
    }
}
