//! `[eal]`, `[datapath]`, `[control]`, `[metrics]`.

use super::ctx::ConfigError;
use super::ctx::Ctx;
use super::raw::{RawControl, RawDatapath, RawMetrics};
use super::types::{Assign, AutoLb, QueueSettings};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use toml::Spanned;

/// The `[datapath]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatapathSettings {
    pub pmd_cores: Vec<usize>,
    pub queues: QueueSettings,
    pub idle_timeout: Duration,
    pub upcall_budget: usize,
    pub emc_entries: usize,
    pub smc_entries: usize,
    pub prefix_checks: bool,
    pub emc_insert_inv_prob: u64,
    pub max_flows: usize,
    /// `mbufs` as given (the default depends on the ports).
    pub mbufs: Option<(u64, usize)>,
}

/// How many CPUs the machine has (the highest online CPU id + 1), read once:
/// a reload runs on the control thread, which the EAL pinned to one core,
/// so the thread's own affinity would say 1.
pub fn machine_cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| {
        std::fs::read_to_string("/sys/devices/system/cpu/online")
            .ok()
            .and_then(|s| highest_cpu(&s))
            .map(|n| n + 1)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    })
}

/// The highest CPU id in a kernel CPU list ("0-3,8,10-11").
fn highest_cpu(list: &str) -> Option<usize> {
    list.trim().split(',').filter_map(|r| r.rsplit('-').next()?.trim().parse::<usize>().ok()).max()
}

/// `[datapath]`; `cores` is how many CPUs the machine has.
pub fn datapath(ctx: &Ctx<'_>, raw: &RawDatapath, cores: usize) -> Result<DatapathSettings, ConfigError> {
    let pmd_cores = match &raw.pmd_cores {
        Some(c) => {
            let list = c.get_ref();
            if list.is_empty() {
                return ctx.err(c, "datapath.pmd_cores", "needs at least one core, e.g. [1]");
            }
            if let Some(bad) = list.iter().find(|&&n| n >= cores) {
                return ctx.err(
                    c,
                    "datapath.pmd_cores",
                    format!("core {bad} does not exist (this machine has cores 0..={})", cores - 1),
                );
            }
            let mut seen = list.clone();
            seen.sort_unstable();
            seen.dedup();
            if seen.len() != list.len() {
                return ctx.err(c, "datapath.pmd_cores", "a core is listed twice");
            }
            list.clone()
        }
        None => vec![cores - 1],
    };
    let idle_ms = ctx.range(&raw.idle_timeout_ms, "datapath.idle_timeout_ms", 10_000, 100, 3_600_000)?;
    Ok(DatapathSettings {
        pmd_cores,
        queues: queues(ctx, raw)?,
        idle_timeout: Duration::from_millis(idle_ms),
        upcall_budget: ctx.range(&raw.upcall_budget, "datapath.upcall_budget", 64, 1, 4096)? as usize,
        emc_entries: ctx.range(&raw.emc_entries, "datapath.emc_entries", 8192, 0, 1 << 20)? as usize,
        smc_entries: ctx.range(&raw.smc_entries, "datapath.smc_entries", 1 << 20, 0, 1 << 24)? as usize,
        prefix_checks: raw.prefix_checks.as_ref().is_none_or(|b| *b.get_ref()),
        emc_insert_inv_prob: ctx.range(&raw.emc_insert_inv_prob, "datapath.emc_insert_inv_prob", 100, 1, 1 << 20)?,
        max_flows: ctx.range(&raw.max_flows, "datapath.max_flows", 262_144, 16, 4 << 20)? as usize,
        mbufs: raw.mbufs.as_ref().map(|s| (*s.get_ref(), ctx.line(s))),
    })
}

/// The queue assignment settings of `[datapath]`.
fn queues(ctx: &Ctx<'_>, raw: &RawDatapath) -> Result<QueueSettings, ConfigError> {
    let assign = match &raw.rxq_assign {
        None => Assign::Cycles,
        Some(s) => match s.get_ref().as_str() {
            "cycles" => Assign::Cycles,
            "roundrobin" => Assign::Roundrobin,
            other => {
                return ctx.err(s, "datapath.rxq_assign", format!("{other:?}: expected \"cycles\" or \"roundrobin\""))
            }
        },
    };
    let d = AutoLb::default();
    let pct = |v: &Option<Spanned<u64>>, field: &str, default: u8| ctx.range(v, field, u64::from(default), 1, 100);
    Ok(QueueSettings {
        assign,
        isolate: raw.pmd_rxq_isolate.as_ref().is_none_or(|b| *b.get_ref()),
        interval: Duration::from_millis(ctx.range(
            &raw.rxq_interval_ms,
            "datapath.rxq_interval_ms",
            5000,
            100,
            600_000,
        )?),
        auto_lb: AutoLb {
            enabled: raw.auto_lb.as_ref().is_some_and(|b| *b.get_ref()),
            load_pct: pct(&raw.auto_lb_load_threshold, "datapath.auto_lb_load_threshold", d.load_pct)? as u8,
            improvement_pct: pct(
                &raw.auto_lb_improvement_threshold,
                "datapath.auto_lb_improvement_threshold",
                d.improvement_pct,
            )? as u8,
            interval: Duration::from_millis(ctx.range(
                &raw.auto_lb_interval_ms,
                "datapath.auto_lb_interval_ms",
                d.interval.as_millis() as u64,
                100,
                86_400_000,
            )?),
        },
    })
}

/// `[control]`: the socket path and the statistics interval.
pub fn control(ctx: &Ctx<'_>, raw: &RawControl) -> Result<(PathBuf, Duration), ConfigError> {
    let stats_ms = ctx.range(&raw.stats_interval_ms, "control.stats_interval_ms", 1000, 100, 60_000)?;
    let socket = match &raw.socket {
        Some(s) if s.get_ref().trim().is_empty() => return ctx.err(s, "control.socket", "must be a path"),
        Some(s) => PathBuf::from(s.get_ref()),
        None => PathBuf::from("/run/vswitch/vswitchd.sock"),
    };
    Ok((socket, Duration::from_millis(stats_ms)))
}

/// `[metrics]`: where Prometheus scrapes (`None`: off).
pub fn metrics(ctx: &Ctx<'_>, raw: &RawMetrics) -> Result<Option<SocketAddr>, ConfigError> {
    match &raw.listen {
        None => Ok(Some(SocketAddr::from(([127, 0, 0, 1], 9464)))),
        Some(s) if s.get_ref().is_empty() || s.get_ref() == "off" => Ok(None),
        Some(s) => s.get_ref().parse::<SocketAddr>().map(Some).or_else(|_| {
            ctx.err(
                s,
                "metrics.listen",
                format!("{:?} is not ADDRESS:PORT (e.g. 127.0.0.1:9464), or \"off\"", s.get_ref()),
            )
        }),
    }
}

/// EAL arguments, with a `--file-prefix` unique to this process unless given.
pub fn eal_args(args: &[String]) -> Vec<String> {
    let mut out = args.to_vec();
    if !out.iter().any(|a| a.starts_with("--file-prefix")) {
        out.push(format!("--file-prefix=vswitchd-{}", std::process::id()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use toml::Spanned;

    #[test]
    fn cpu_lists_and_the_machine_count() {
        assert_eq!(highest_cpu("0-1\n"), Some(1));
        assert_eq!(highest_cpu("0-3,8,10-11"), Some(11));
        assert_eq!(highest_cpu("5"), Some(5));
        assert_eq!(highest_cpu(""), None);
        // Whatever this thread's affinity, the count is the machine's.
        assert!(machine_cores() >= std::thread::available_parallelism().map_or(1, |n| n.get()));
    }

    #[test]
    fn defaults_and_ranges() {
        let ctx = Ctx::new("t", "");
        let d = datapath(&ctx, &RawDatapath::default(), 4).expect("defaults");
        assert_eq!((d.pmd_cores, d.upcall_budget, d.max_flows), (vec![3], 64, 262_144));
        let raw = RawDatapath { upcall_budget: Some(Spanned::new(0..1, 0)), ..Default::default() };
        let e = datapath(&ctx, &raw, 4).expect_err("0 is below the range");
        assert_eq!(e.field, "datapath.upcall_budget");
        let raw = RawDatapath { pmd_cores: Some(Spanned::new(0..1, vec![1, 1])), ..Default::default() };
        assert!(datapath(&ctx, &raw, 4).expect_err("twice").message.contains("twice"));
        assert_eq!(metrics(&ctx, &RawMetrics { listen: Some(Spanned::new(0..1, "off".into())) }), Ok(None));
        assert!(eal_args(&[]).iter().any(|a| a.starts_with("--file-prefix=vswitchd-")));
        assert_eq!(eal_args(&["--file-prefix=x".into()]), vec!["--file-prefix=x".to_owned()]);
    }
}
