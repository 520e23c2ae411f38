//! Results: the JSON file a run writes, the markdown table and the plot.

use crate::scenario::Scenario;
use crate::Case;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Switch {
    /// Ours: vswitchd.
    Vswitch,
    /// Open vSwitch's DPDK datapath.
    Ovs,
    /// dpdk-testpmd io forwarding: the generator/sink floor.
    Testpmd,
}

impl Switch {
    pub fn label(self) -> &'static str {
        match self {
            Self::Vswitch => "vswitch",
            Self::Ovs => "OVS",
            Self::Testpmd => "testpmd floor",
        }
    }
}

/// One measurement of one switch on one case.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Measurement {
    pub switch: Switch,
    pub scenario: Scenario,
    pub flows: u32,
    /// On the wire, FCS included.
    pub frame_bytes: usize,
    /// Pages DPDK ran on: "2M" or "4K" (results from before are 4K).
    #[serde(default = "small_pages")]
    pub pages: String,
    pub seconds: f64,
    /// Packets that reached the sink per second, millions.
    pub mpps: f64,
    /// PMD cycles per received packet (setup: per upcall).
    pub cycles_per_packet: f64,
    /// Percent of lookups served by each tier.
    #[serde(default)]
    pub tiers: BTreeMap<String, f64>,
    pub upcalls_per_second: f64,
    pub megaflows: u64,
    /// Distinct megaflow masks (the acl scenario).
    #[serde(default)]
    pub masks: u64,
    /// Resident memory growth per megaflow installed (the setup scenario).
    #[serde(default)]
    pub bytes_per_megaflow: f64,
    pub drops: u64,
    /// Frames the case's input held (its flows round-robin); 0 in results
    /// from before this was recorded.
    #[serde(default)]
    pub replay_frames: u64,
    /// A scaling baseline (one flow on a larger case's input set), not one
    /// of the table's cases.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub baseline: bool,
    /// Each PMD's busy share of its cycles over the window, percent (the
    /// scale benchmark).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pmd_busy: Vec<f64>,
    /// With `--rounds` above 1: every round's cycles a packet (setup: new
    /// flows a second), lowest first; the other fields are the median round's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rounds: Vec<f64>,
    /// Why there is no number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Measurement {
    pub fn new(switch: Switch, case: &Case) -> Self {
        Self {
            switch,
            scenario: case.scenario,
            flows: case.flows,
            frame_bytes: case.frame,
            pages: case.pages.name().to_owned(),
            seconds: 0.0,
            mpps: 0.0,
            cycles_per_packet: 0.0,
            tiers: BTreeMap::new(),
            upcalls_per_second: 0.0,
            megaflows: 0,
            masks: 0,
            bytes_per_megaflow: 0.0,
            drops: 0,
            replay_frames: case.packets,
            baseline: case.baseline,
            pmd_busy: Vec::new(),
            rounds: Vec::new(),
            error: None,
        }
    }

    pub fn failed(switch: Switch, case: &Case, error: String) -> Self {
        Self { error: Some(error), ..Self::new(switch, case) }
    }

    fn ok(&self) -> bool {
        self.error.is_none()
    }
}

fn small_pages() -> String {
    "4K".into()
}

/// What a run writes to `results.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Results {
    /// Machine, versions, window: the context the numbers belong to.
    pub meta: BTreeMap<String, String>,
    pub measurements: Vec<Measurement>,
}

impl Results {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{} is not a vswitch-bench results file", path.display()))
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        std::fs::write(path, serde_json::to_string_pretty(self)?).with_context(|| format!("writing {}", path.display()))
    }

    /// A measurement on the run's main pages ([`Results::main_pages`]).
    fn find(&self, switch: Switch, scenario: Scenario, flows: u32, frame: usize) -> Option<&Measurement> {
        self.find_on(self.main_pages(), switch, scenario, flows, frame)
    }

    fn find_on(
        &self,
        pages: &str,
        switch: Switch,
        scenario: Scenario,
        flows: u32,
        frame: usize,
    ) -> Option<&Measurement> {
        self.measurements.iter().rev().find(|m| {
            m.switch == switch
                && m.scenario == scenario
                && m.flows == flows
                && m.frame_bytes == frame
                && m.pages == pages
                && !m.baseline
        })
    }

    /// `scenario`'s scaling baseline by `switch` on `pages` (see
    /// `baselines` in main.rs).
    fn baseline_on(&self, pages: &str, switch: Switch, scenario: Scenario) -> Option<&Measurement> {
        self.measurements
            .iter()
            .rev()
            .find(|m| m.baseline && m.switch == switch && m.scenario == scenario && m.pages == pages)
    }

    /// The pages the figures and targets are on: 2 MB when the run had
    /// them (as hosts run DPDK), else 4 KiB.
    fn main_pages(&self) -> &'static str {
        if self.measurements.iter().any(|m| m.pages == "2M") {
            "2M"
        } else {
            "4K"
        }
    }

    /// The page sizes measured, the main one first.
    fn page_sizes(&self) -> Vec<&'static str> {
        let main = self.main_pages();
        let mut v = vec![main];
        if main == "2M" && self.measurements.iter().any(|m| m.pages == "4K") {
            v.push("4K");
        }
        v
    }

    /// The (scenario, frame, flows) cases with a throughput, in order.
    fn cases(&self) -> Vec<(Scenario, usize, u32)> {
        let mut c: Vec<_> = self
            .measurements
            .iter()
            .filter(|m| !matches!(m.scenario, Scenario::Setup | Scenario::Acl) && !m.baseline)
            .map(|m| (m.scenario, m.frame_bytes, m.flows))
            .collect();
        c.sort_unstable();
        c.dedup();
        c
    }
}

fn flows_label(n: u32) -> String {
    flows_label_u64(u64::from(n))
}

/// 1M, 20k, 1024: a count as the tables show it.
fn flows_label_u64(n: u64) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1000 && n % 1000 == 0 => format!("{}k", n / 1000),
        n => n.to_string(),
    }
}

fn mpps_cell(m: Option<&Measurement>) -> String {
    match m {
        Some(m) if m.ok() => format!("{:.2}", m.mpps),
        Some(m) => format!("n/a: {}", short_error(m)),
        None => "-".into(),
    }
}

/// The first line of the error, cut for a table cell (results.json has it all).
fn short_error(m: &Measurement) -> String {
    let first = m.error.as_deref().unwrap_or("").lines().next().unwrap_or("").replace('|', "/");
    // When DPDK said why, that is the reason worth a cell.
    let first = match first.split_once("; DPDK: ") {
        Some((_, dpdk)) => dpdk.split(" (OVS log").next().unwrap_or(dpdk).to_owned(),
        None => first,
    };
    if first.chars().count() > 140 {
        format!("{}...", first.chars().take(140).collect::<String>())
    } else {
        first
    }
}

fn cycles_cell(m: Option<&Measurement>) -> String {
    match m {
        Some(m) if m.ok() && m.cycles_per_packet > 0.0 => format!("{:.0}", m.cycles_per_packet),
        _ => "-".into(),
    }
}

/// Switching cycles: a switch's cycles per packet minus the testpmd floor's
/// in the same run (the work the switch adds to the I/O both pay).
pub fn switching_cycles(m: Option<&Measurement>, floor: Option<&Measurement>) -> Option<f64> {
    let (m, f) =
        (m.filter(|m| m.ok() && m.cycles_per_packet > 0.0)?, floor.filter(|f| f.ok() && f.cycles_per_packet > 0.0)?);
    Some((m.cycles_per_packet - f.cycles_per_packet).max(0.0))
}

/// "ours / OVS (ratio)" in switching cycles.
fn switching_cell(ours: Option<&Measurement>, ovs: Option<&Measurement>, floor: Option<&Measurement>) -> String {
    match (switching_cycles(ours, floor), switching_cycles(ovs, floor)) {
        (Some(a), Some(b)) if b > 0.0 => format!("{a:.0} / {b:.0} ({:.2}x)", a / b),
        (Some(a), _) => format!("{a:.0} / -"),
        _ => "-".into(),
    }
}

fn tiers_cell(m: Option<&Measurement>) -> String {
    let Some(m) = m.filter(|m| m.ok()) else { return "-".into() };
    let mut parts: Vec<String> =
        m.tiers.iter().filter(|(_, v)| **v >= 0.05).map(|(k, v)| format!("{k} {v:.1}")).collect();
    if parts.is_empty() {
        parts.push("-".into());
    }
    parts.join(", ")
}

fn ratio(a: Option<&Measurement>, b: Option<&Measurement>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if a.ok() && b.ok() && b.mpps > 0.0 => Some(a.mpps / b.mpps),
        _ => None,
    }
}

/// The scaling baselines against the largest 64-byte case of their
/// scenario: cycles a packet at one flow and at many on the same input set.
fn scaling_section(s: &mut String, r: &Results) {
    let mut rows = Vec::new();
    for pages in r.page_sizes() {
        for sc in [Scenario::Fwd, Scenario::Encap] {
            let Some(most) = r.cases().into_iter().filter(|c| c.0 == sc && c.1 == 64).map(|c| c.2).max() else {
                continue;
            };
            let one = |sw| r.baseline_on(pages, sw, sc);
            let many = |sw| r.find_on(pages, sw, sc, most, 64);
            let Some(base) = one(Switch::Vswitch) else { continue };
            let times = |sw| match (one(sw), many(sw)) {
                (Some(a), Some(b)) if a.ok() && b.ok() && a.cycles_per_packet > 0.0 => {
                    format!("{:.2}x", b.cycles_per_packet / a.cycles_per_packet)
                }
                _ => "-".into(),
            };
            let switching = match (
                switching_cycles(one(Switch::Vswitch), one(Switch::Testpmd)),
                switching_cycles(many(Switch::Vswitch), many(Switch::Testpmd)),
            ) {
                (Some(a), Some(b)) => format!("{a:.0} -> {b:.0}"),
                _ => "-".into(),
            };
            rows.push(format!(
                "| {} | {} | {} | {} | {} / {} / {} | {} / {} / {} | **{}** | {} | {} | {switching} |",
                sc.name(),
                if pages == "2M" { "2 MB" } else { "4 KiB" },
                flows_label_u64(base.replay_frames),
                flows_label(most),
                cycles_cell(one(Switch::Vswitch)),
                cycles_cell(one(Switch::Ovs)),
                cycles_cell(one(Switch::Testpmd)),
                cycles_cell(many(Switch::Vswitch)),
                cycles_cell(many(Switch::Ovs)),
                cycles_cell(many(Switch::Testpmd)),
                times(Switch::Vswitch),
                times(Switch::Ovs),
                times(Switch::Testpmd),
            ));
        }
    }
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "\nFlow-count scaling, 64 B: one flow replayed from as many frames as the largest case's input \
         (the baseline), against that case; only the flows differ. Cycles a packet vswitch / OVS / floor:\n"
    );
    let _ = writeln!(
        s,
        "| scenario | pages | frames | flows (N) | 1 flow | N flows | vswitch N / 1 | OVS N / 1 | floor N / 1 | vswitch switching cyc 1 -> N |"
    );
    let _ = writeln!(s, "|---|---|---:|---:|---|---|---:|---:|---:|---|");
    for row in rows {
        let _ = writeln!(s, "{row}");
    }
}

/// With `--rounds`: each program's figure in every round of a case, so the
/// spread behind each median is in the report.
fn rounds_section(s: &mut String, r: &Results) {
    let with: Vec<&Measurement> = r.measurements.iter().filter(|m| m.rounds.len() > 1).collect();
    if with.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "\nEvery figure above is a program's median round; each round measured the programs in turn. \
         Cycles a packet in each round (setup: new flows a second), lowest first:\n"
    );
    for m in with {
        let each: Vec<String> = m.rounds.iter().map(|x| format!("{x:.0}")).collect();
        let _ = writeln!(
            s,
            "- {}, {} B, {} flow{}{}, {} pages, {}: {}",
            m.scenario.name(),
            m.frame_bytes,
            flows_label(m.flows),
            if m.flows == 1 { "" } else { "s" },
            if m.baseline { format!(" on {} frames", flows_label_u64(m.replay_frames)) } else { String::new() },
            if m.pages == "2M" { "2 MB" } else { "4 KiB" },
            m.switch.label(),
            each.join(", ")
        );
    }
}

/// The markdown report: throughput side by side, flow setup, targets.
pub fn markdown(r: &Results) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "| scenario | frame | flows | pages | vswitch Mpps | OVS Mpps | floor Mpps | vswitch / OVS | vswitch % of floor | cyc/pkt vswitch / OVS / floor | switching cyc/pkt vswitch / OVS | vswitch lookups % | OVS lookups % |");
    let _ = writeln!(s, "|---|---:|---:|---|---:|---:|---:|---:|---:|---|---|---|---|");
    let cases = r.cases();
    let rows = cases.iter().flat_map(|c| r.page_sizes().into_iter().map(move |p| (*c, p)));
    for ((scenario, frame, flows), pages) in rows {
        let ours = r.find_on(pages, Switch::Vswitch, scenario, flows, frame);
        let ovs = r.find_on(pages, Switch::Ovs, scenario, flows, frame);
        let floor = r.find_on(pages, Switch::Testpmd, scenario, flows, frame);
        if ours.is_none() && ovs.is_none() && floor.is_none() {
            continue;
        }
        let pages = if pages == "2M" { "2 MB" } else { "4 KiB" };
        let _ = writeln!(
            s,
            "| {} | {frame} | {} | {pages} | {} | {} | {} | {} | {} | {} / {} / {} | {} | {} | {} |",
            scenario.name(),
            flows_label(flows),
            mpps_cell(ours),
            mpps_cell(ovs),
            mpps_cell(floor),
            ratio(ours, ovs).map_or("-".into(), |x| format!("**{x:.2}x**")),
            ratio(ours, floor).map_or("-".into(), |x| format!("{:.0} %", x * 100.0)),
            cycles_cell(ours),
            cycles_cell(ovs),
            cycles_cell(floor),
            switching_cell(ours, ovs, floor),
            tiers_cell(ours),
            tiers_cell(ovs),
        );
    }
    scaling_section(&mut s, r);
    if let Some(n) = r.meta.get("replay_frames") {
        let _ = writeln!(
            s,
            "\nEvery case replayed at least {n} frames (`--replay-frames`), its flows repeated round-robin: \
             cases of up to {n} flows differ in their flows alone, not in the generator's input set."
        );
    }
    rounds_section(&mut s, r);
    let setup: Vec<&Measurement> = r.measurements.iter().filter(|m| m.scenario == Scenario::Setup).collect();
    if !setup.is_empty() {
        let _ = writeln!(s, "\nFlow setup (every packet a new flow):\n");
        let _ = writeln!(s, "| switch | pages | flows offered | new flows/s per core | cycles per upcall | megaflows | bytes per megaflow (RSS growth) |");
        let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|");
        for m in setup {
            if m.error.is_some() {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | n/a: {} | - | - | - |",
                    m.switch.label(),
                    m.pages,
                    flows_label(m.flows),
                    short_error(m)
                );
                continue;
            }
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.0} | {} | {} | {} |",
                m.switch.label(),
                m.pages,
                flows_label(m.flows),
                m.upcalls_per_second,
                if m.cycles_per_packet > 0.0 { format!("{:.0}", m.cycles_per_packet) } else { "-".into() },
                m.megaflows,
                if m.bytes_per_megaflow > 0.0 { format!("{:.0}", m.bytes_per_megaflow) } else { "-".into() },
            );
        }
    }
    let acl: Vec<&Measurement> = r.measurements.iter().filter(|m| m.scenario == Scenario::Acl).collect();
    if !acl.is_empty() {
        let _ = writeln!(s, "\nACL rules (309 rules in 20 masks; megaflows and their masks after the window):\n");
        let _ = writeln!(s, "| switch | pages | flows | Mpps | cyc/pkt | megaflows | megaflow masks | lookups % |");
        let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|---|");
        for m in acl {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                m.switch.label(),
                m.pages,
                flows_label(m.flows),
                mpps_cell(Some(m)),
                cycles_cell(Some(m)),
                if m.ok() { m.megaflows.to_string() } else { "-".into() },
                if m.ok() { m.masks.to_string() } else { "-".into() },
                tiers_cell(Some(m)),
            );
        }
    }
    let _ = writeln!(s, "\nTargets (per core):\n");
    for line in targets(r) {
        let _ = writeln!(s, "- {line}");
    }
    s
}

/// Distinct megaflow masks among flows printed as match text, in either
/// syntax: vswitchd's (`in_port=vf0,nw_src=10.0.0.0/16,tp_dst=80`) or
/// Open vSwitch's datapath one (`in_port(1),ipv4(src=10.0.0.0/255.255.0.0,
/// proto=6),tcp(dst=80)`). A mask is the set of fields with what follows
/// each value's `/` (nothing for an exact field).
pub fn distinct_masks<'a>(matches: impl Iterator<Item = &'a str>) -> u64 {
    let mut seen = std::collections::HashSet::new();
    for m in matches {
        let mut sig = String::new();
        let mut group: Vec<&str> = Vec::new();
        let mut token_start = 0;
        let bytes = m.as_bytes();
        let emit = |group: &[&str], token: &str, sig: &mut String| {
            let token = token.trim();
            if token.is_empty() {
                return;
            }
            let (name, value) = token.split_once('=').unwrap_or(("", token));
            let mask = value.split_once('/').map_or("", |(_, m)| m);
            sig.push_str(&group.join("."));
            sig.push(':');
            sig.push_str(name);
            sig.push('/');
            sig.push_str(mask);
            sig.push(';');
        };
        for (i, &b) in bytes.iter().enumerate() {
            match b {
                b'(' => {
                    group.push(m[token_start..i].trim());
                    token_start = i + 1;
                }
                b',' | b')' => {
                    emit(&group, &m[token_start..i], &mut sig);
                    if b == b')' {
                        group.pop();
                    }
                    token_start = i + 1;
                }
                _ => {}
            }
        }
        emit(&group, &m[token_start..], &mut sig);
        seen.insert(sig);
    }
    seen.len() as u64
}

/// The targets, each with the figures that decide it.
fn targets(r: &Results) -> Vec<String> {
    let mark = |ok: bool| if ok { "met" } else { "**not met**" };
    let mut out = Vec::new();
    let ratios: Vec<(Scenario, usize, u32, f64)> = r
        .cases()
        .into_iter()
        .filter_map(|(sc, fr, fl)| {
            ratio(r.find(Switch::Vswitch, sc, fl, fr), r.find(Switch::Ovs, sc, fl, fr)).map(|x| (sc, fr, fl, x))
        })
        .collect();
    for (label, small, need) in [("64-byte", true, 2.0), ("larger-frame", false, 1.5)] {
        let these: Vec<&(Scenario, usize, u32, f64)> = ratios.iter().filter(|x| (x.1 <= 64) == small).collect();
        if these.is_empty() {
            continue;
        }
        let low: Vec<String> = these
            .iter()
            .filter(|x| x.3 < need)
            .map(|(sc, fr, fl, x)| format!("{} {fr} B {}: {x:.2}x", sc.name(), flows_label(*fl)))
            .collect();
        let min = these.iter().map(|x| x.3).fold(f64::INFINITY, f64::min);
        out.push(format!(
            "at least {need}x OVS in every {label} case: {} (lowest {min:.2}x{})",
            mark(low.is_empty()),
            if low.is_empty() { String::new() } else { format!("; below: {}", low.join(", ")) }
        ));
    }
    // Switching cycles (the switch's minus the floor's) at most half of
    // OVS's in every 64-byte case where all three ran.
    let halves: Vec<(String, f64)> = r
        .cases()
        .into_iter()
        .filter(|c| c.1 <= 64)
        .filter_map(|(sc, fr, fl)| {
            let floor = r.find(Switch::Testpmd, sc, fl, fr);
            let ours = switching_cycles(r.find(Switch::Vswitch, sc, fl, fr), floor)?;
            let theirs = switching_cycles(r.find(Switch::Ovs, sc, fl, fr), floor).filter(|t| *t > 0.0)?;
            Some((format!("{} {}", sc.name(), flows_label(fl)), ours / theirs))
        })
        .collect();
    if !halves.is_empty() {
        let over: Vec<String> = halves.iter().filter(|h| h.1 > 0.5).map(|(c, x)| format!("{c}: {x:.2}")).collect();
        out.push(format!(
            "switching cycles at most half of OVS's in every 64-byte case: {}{}",
            mark(over.is_empty()),
            if over.is_empty() { String::new() } else { format!(" (ours / OVS: {})", over.join(", ")) }
        ));
    }
    for (sc, fr, fl) in r.cases().into_iter().filter(|c| c.2 == 1000 && c.1 == 64 && c.0 != Scenario::Decap) {
        if let Some(x) = ratio(r.find(Switch::Vswitch, sc, fl, fr), r.find(Switch::Testpmd, sc, fl, fr)) {
            out.push(format!(
                "{} 64 B 1k flows at least 60 % of the testpmd floor: {} ({:.0} %)",
                sc.name(),
                mark(x >= 0.6),
                x * 100.0
            ));
        }
    }
    setup_targets(r, &mut out);
    let cyc = |sc, fl, fr| r.find(Switch::Vswitch, sc, fl, fr).filter(|m| m.ok()).map(|m| m.cycles_per_packet);
    for (sc, fr, fl) in r.cases().into_iter().filter(|c| c.2 == 1_000_000) {
        let Some(big) = cyc(sc, fl, fr) else { continue };
        let base = r.baseline_on(r.main_pages(), Switch::Vswitch, sc).filter(|m| m.ok() && fr == 64);
        let own = r.find(Switch::Vswitch, sc, 1, fr).filter(|m| m.ok());
        // Against the baseline when there is one: one flow on the same
        // input set (the figure the target is about); one flow on its own
        // set beside it.
        let Some(one) = base.or(own).map(|m| m.cycles_per_packet) else { continue };
        let against = match (base, own) {
            (Some(b), Some(own)) => format!(
                ", one flow on the same {} frames; on its own {} frames: {big:.0} / {:.0} = {:.2}x",
                flows_label_u64(b.replay_frames),
                flows_label_u64(own.replay_frames),
                own.cycles_per_packet,
                big / own.cycles_per_packet
            ),
            _ => String::new(),
        };
        out.push(format!(
            "{} {fr} B: 1M-flow cycles/packet at most 1.5x single-flow: {} ({big:.0} / {one:.0} = {:.2}x{against})",
            sc.name(),
            mark(big <= 1.5 * one),
            big / one
        ));
    }
    for (sc, fr, fl) in r.cases().into_iter().filter(|c| c.0 == Scenario::Encap) {
        if let (Some(e), Some(f)) = (cyc(sc, fl, fr), cyc(Scenario::Fwd, fl, fr)) {
            out.push(format!(
                "encap {fr} B {} within 1.3x of forwarding (cycles/packet): {} ({e:.0} / {f:.0} = {:.2}x)",
                flows_label(fl),
                mark(e <= 1.3 * f),
                e / f
            ));
        }
    }
    out
}

/// The flow setup targets, on the run's main pages.
fn setup_targets(r: &Results, out: &mut Vec<String>) {
    let mark = |ok: bool| if ok { "met" } else { "**not met**" };
    let main = r.main_pages();
    for m in r
        .measurements
        .iter()
        .filter(|m| m.scenario == Scenario::Setup && m.switch == Switch::Vswitch && m.ok() && m.pages == main)
    {
        out.push(format!(
            "flow setup at least 1M new flows/s per core ({} offered, {} pages): {} ({:.0})",
            flows_label(m.flows),
            m.pages,
            mark(m.upcalls_per_second >= 1e6),
            m.upcalls_per_second
        ));
        if m.bytes_per_megaflow > 0.0 {
            out.push(format!(
                "at most 256 bytes per megaflow (RSS growth, {} offered): {} ({:.0})",
                flows_label(m.flows),
                mark(m.bytes_per_megaflow <= 256.0),
                m.bytes_per_megaflow
            ));
        }
    }
}

/// Writes the PNG: one panel per scenario and frame size, Mpps per flow
/// count for each switch, the ratio vswitch/OVS above each group.
pub fn plot(r: &Results, path: &Path) -> Result<()> {
    use plotters::prelude::*;
    crate::fonts::register()?;
    let mut panels: Vec<(Scenario, usize)> = r.cases().into_iter().map(|(s, f, _)| (s, f)).collect();
    panels.dedup();
    if panels.is_empty() {
        anyhow::bail!("no throughput measurements to plot");
    }
    let cols = panels.len().min(3);
    let rows = panels.len().div_ceil(cols);
    let (w, h) = (520 * cols as u32, 400 * rows as u32 + 60);
    let root = BitMapBackend::new(path, (w, h)).into_drawing_area();
    root.fill(&WHITE)?;
    let title = format!(
        "Mpps per core: vswitch vs OVS vs testpmd floor   ({})",
        r.meta.get("machine").map_or("", String::as_str)
    );
    let (top, body) = root.split_vertically(60);
    top.draw(&Text::new(title, (20, 8), ("sans-serif", 22).into_font()))?;
    let switches = [
        (Switch::Vswitch, RGBColor(0x1f, 0x77, 0xb4)),
        (Switch::Ovs, RGBColor(0xd6, 0x27, 0x28)),
        (Switch::Testpmd, RGBColor(0x99, 0x99, 0x99)),
    ];
    // One legend for every panel, under the title.
    let mut x = 20;
    for (sw, color) in &switches {
        top.draw(&Rectangle::new([(x, 38), (x + 14, 52)], color.filled()))?;
        top.draw(&Text::new(sw.label(), (x + 20, 38), ("sans-serif", 15).into_font()))?;
        x += 40 + 9 * sw.label().len() as i32;
    }
    top.draw(&Text::new("bar labels: vswitch / OVS", (x + 10, 38), ("sans-serif", 15).into_font()))?;
    for (area, (scenario, frame)) in body.split_evenly((rows, cols)).iter().zip(&panels) {
        panel(area, r, *scenario, *frame, &switches)?;
    }
    root.present().with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// One panel: Mpps per flow count for each switch in one scenario and
/// frame size, the ratio vswitch/OVS above each group.
fn panel(
    area: &plotters::drawing::DrawingArea<plotters::prelude::BitMapBackend<'_>, plotters::coord::Shift>,
    r: &Results,
    scenario: Scenario,
    frame: usize,
    switches: &[(Switch, plotters::style::RGBColor)],
) -> Result<()> {
    use plotters::prelude::*;
    let flows: Vec<u32> = r.cases().into_iter().filter(|c| c.0 == scenario && c.1 == frame).map(|c| c.2).collect();
    let top_mpps = r
        .measurements
        .iter()
        .filter(|m| m.ok() && m.scenario == scenario && m.frame_bytes == frame)
        .map(|m| m.mpps)
        .fold(1.0, f64::max);
    let n = flows.len() as f64;
    let mut chart = ChartBuilder::on(area)
        .caption(format!("{} ({frame}-byte frames)", scenario.name()), ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(45)
        .build_cartesian_2d(-0.5..n - 0.5, 0.0..top_mpps * 1.18)?;
    let labels = flows.clone();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(flows.len() + 1)
        .x_label_formatter(&move |x| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < labels.len() {
                let n = labels[i as usize];
                format!("{} flow{}", flows_label(n), if n == 1 { "" } else { "s" })
            } else {
                String::new()
            }
        })
        .y_desc("Mpps")
        .draw()?;
    let bw = 0.8 / switches.len() as f64;
    // One bar per switch and flow count; "n/a" where a switch could not
    // run the case.
    let mut bars = Vec::new();
    let mut missing = Vec::new();
    for (k, (sw, color)) in switches.iter().enumerate() {
        for (i, fl) in flows.iter().enumerate() {
            let x0 = i as f64 - 0.4 + bw * k as f64;
            match r.find(*sw, scenario, *fl, frame) {
                Some(m) if m.ok() => bars.push(Rectangle::new([(x0, 0.0), (x0 + bw * 0.92, m.mpps)], color.filled())),
                Some(_) => missing.push(Text::new("n/a", (x0, top_mpps * 0.05), ("sans-serif", 13).into_font())),
                None => {}
            }
        }
    }
    chart.draw_series(bars)?;
    chart.draw_series(missing)?;
    let ratios: Vec<_> = flows
        .iter()
        .enumerate()
        .filter_map(|(i, fl)| {
            let x = ratio(r.find(Switch::Vswitch, scenario, *fl, frame), r.find(Switch::Ovs, scenario, *fl, frame))?;
            let ours = r.find(Switch::Vswitch, scenario, *fl, frame)?.mpps;
            Some(Text::new(
                format!("{x:.2}x"),
                (i as f64 - 0.42, ours + top_mpps * 0.06),
                ("sans-serif", 15).into_font(),
            ))
        })
        .collect();
    chart.draw_series(ratios)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Switching cycles are the switch's minus the floor's; the target is
    /// half of OVS's.
    #[test]
    fn switching_cycles_column_and_target() {
        let m = |switch: &str, cycles: f64| -> Measurement {
            serde_json::from_value(serde_json::json!({
                "switch": switch, "scenario": "fwd", "flows": 1000, "frame_bytes": 64, "seconds": 1.0,
                "mpps": 10.0, "cycles_per_packet": cycles, "upcalls_per_second": 0.0, "megaflows": 0, "drops": 0
            }))
            .expect("measurement")
        };
        let r = Results {
            meta: BTreeMap::new(),
            measurements: vec![m("testpmd", 64.0), m("vswitch", 183.0), m("ovs", 225.0)],
        };
        assert_eq!(switching_cycles(Some(&r.measurements[1]), Some(&r.measurements[0])), Some(119.0));
        let md = markdown(&r);
        assert!(md.contains("| 119 / 161 (0.74x) |"), "{md}");
        assert!(
            md.contains(
                "switching cycles at most half of OVS's in every 64-byte case: **not met** (ours / OVS: fwd 1k: 0.74)"
            ),
            "{md}"
        );
        let r = Results {
            meta: BTreeMap::new(),
            measurements: vec![m("testpmd", 64.0), m("vswitch", 120.0), m("ovs", 225.0)],
        };
        assert!(markdown(&r).contains("switching cycles at most half of OVS's in every 64-byte case: met"));
        // With rounds, each round's figure is listed under the table.
        let mut ours = m("vswitch", 120.0);
        ours.rounds = vec![95.0, 120.0, 131.0];
        let md = markdown(&Results { meta: BTreeMap::new(), measurements: vec![m("testpmd", 64.0), ours] });
        assert!(md.contains("- fwd, 64 B, 1k flows, 4 KiB pages, vswitch: 95, 120, 131"), "{md}");
        assert!(!markdown(&r).contains("median round"), "no rounds, no list");
    }

    /// The scaling target takes one flow on the same input set (the
    /// baseline) when the run has it; the baseline stays out of the table.
    #[test]
    fn scaling_target_against_the_baseline() {
        let m = |switch: &str, flows: u32, cycles: f64, frames: u64, baseline: bool| -> Measurement {
            serde_json::from_value(serde_json::json!({
                "switch": switch, "scenario": "fwd", "flows": flows, "frame_bytes": 64, "pages": "2M",
                "seconds": 1.0, "mpps": 10.0, "cycles_per_packet": cycles, "upcalls_per_second": 0.0,
                "megaflows": 0, "drops": 0, "replay_frames": frames, "baseline": baseline
            }))
            .expect("measurement")
        };
        let mut r = Results {
            meta: BTreeMap::new(),
            measurements: vec![
                m("testpmd", 1, 41.0, 1024, false),
                m("vswitch", 1, 64.0, 1024, false),
                m("testpmd", 1_000_000, 94.0, 1_000_000, false),
                m("vswitch", 1_000_000, 129.0, 1_000_000, false),
            ],
        };
        let md = markdown(&r);
        assert!(md.contains("1M-flow cycles/packet at most 1.5x single-flow: **not met** (129 / 64 = 2.02x)"), "{md}");
        assert!(!md.contains("Flow-count scaling"), "no baseline, no section: {md}");
        r.measurements.push(m("testpmd", 1, 83.0, 1_000_000, true));
        r.measurements.push(m("vswitch", 1, 106.0, 1_000_000, true));
        let md = markdown(&r);
        assert!(
            md.contains(
                "1M-flow cycles/packet at most 1.5x single-flow: met (129 / 106 = 1.22x, one flow on the same 1M frames; \
                 on its own 1024 frames: 129 / 64 = 2.02x)"
            ),
            "{md}"
        );
        // The table's one-flow row is still the case's own.
        assert!(md.contains("| 64 / - / 41 |"), "{md}");
        assert!(
            md.contains("| fwd | 2 MB | 1M | 1M | 106 / - / 83 | 129 / - / 94 | **1.22x** | - | 1.13x | 23 -> 35 |"),
            "{md}"
        );
        let back: Results = serde_json::from_str(&serde_json::to_string(&r).expect("json")).expect("parse");
        assert_eq!(back.measurements.iter().filter(|m| m.baseline).count(), 2);
    }

    #[test]
    fn masks_ignore_values_and_keep_each_fields_mask() {
        let ours = [
            "in_port=vf0,dl_type=0x800,nw_src=10.0.0.0/16,tp_dst=80",
            "in_port=vf0,dl_type=0x800,nw_src=10.9.0.0/16,tp_dst=443",
            "in_port=vf0,dl_type=0x800,nw_src=10.0.0.0/24,tp_dst=80",
            "in_port=vf0,dl_type=0x800,nw_src=10.0.0.0/16",
        ];
        assert_eq!(distinct_masks(ours.into_iter()), 3);
        let ovs = [
            "recirc_id(0),in_port(1),eth_type(0x0800),ipv4(src=10.0.0.0/255.255.0.0,dst=172.16.0.1,proto=6,frag=no),tcp(dst=80)",
            "recirc_id(0),in_port(1),eth_type(0x0800),ipv4(src=10.7.0.0/255.255.0.0,dst=172.16.0.9,proto=6,frag=no),tcp(dst=22)",
            "recirc_id(0),in_port(1),eth_type(0x0800),ipv4(src=10.7.0.0/255.255.0.0,dst=172.16.0.9,proto=6,frag=no),tcp(src=5/0xff,dst=22)",
            // `src` under eth( is another field than `src` under ipv4(.
            "recirc_id(0),in_port(1),eth(src=02:00:00:00:00:10),eth_type(0x0800),ipv4(dst=172.16.0.9,proto=6,frag=no),tcp(dst=22)",
        ];
        assert_eq!(distinct_masks(ovs.into_iter()), 3);
    }
}
