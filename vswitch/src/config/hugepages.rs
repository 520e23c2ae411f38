//! How much hugepage memory a configuration needs, and what the host has
//! (`vswitchd --check`, `vswitchd --reserve-hugepages`). DPDK on a host runs
//! on 2 MB pages; the EAL's `-m`/`--socket-mem` says how much it takes at
//! start, and without them the mbuf pool dominates what it allocates.

use super::Config;

/// 2 MB pages, in bytes.
pub const PAGE: u64 = 2 << 20;
/// Besides the pool: descriptor rings, flow-rule and EAL memzones.
const OVERHEAD: u64 = 128 << 20;
/// A mempool element's bytes beyond its data room: the mbuf header (128),
/// the mempool's own header and alignment.
const PER_MBUF: u64 = 128 + 64;

/// The need of a configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// `--no-huge` in the EAL arguments: 4 KiB pages, nothing to reserve.
    None,
    /// This many bytes (from `-m`/`--socket-mem`, or the pool estimate).
    Bytes { bytes: u64, from_eal_args: bool },
}

impl Need {
    pub fn pages(self) -> u64 {
        match self {
            Need::None => 0,
            Need::Bytes { bytes, .. } => bytes.div_ceil(PAGE),
        }
    }
}

/// The megabytes `-m N`, `-mN`, `--socket-mem A,B` ask for.
fn eal_megabytes(args: &[String]) -> Option<u64> {
    let mut it = args.iter().peekable();
    while let Some(a) = it.next() {
        let value = match a.as_str() {
            "-m" | "--socket-mem" => it.peek().map(|v| v.as_str()),
            s if s.starts_with("--socket-mem=") => Some(&s["--socket-mem=".len()..]),
            s if s.starts_with("-m") && s.len() > 2 => Some(&s[2..]),
            _ => None,
        };
        if let Some(v) = value {
            let total: Option<u64> = v.split(',').map(|n| n.trim().parse::<u64>().ok()).sum();
            if let Some(t) = total {
                return Some(t);
            }
        }
    }
    None
}

/// What `config` needs.
pub fn need(config: &Config) -> Need {
    if config.eal_args.iter().any(|a| a == "--no-huge") {
        return Need::None;
    }
    if let Some(mb) = eal_megabytes(&config.eal_args) {
        return Need::Bytes { bytes: mb << 20, from_eal_args: true };
    }
    let data_room = u64::from(super::mbufs::data_room(&config.ports));
    let pool = u64::from(config.mbufs) * (data_room + PER_MBUF);
    Need::Bytes { bytes: pool + OVERHEAD, from_eal_args: false }
}

/// The host's 2 MB pages: (total, free), from sysfs.
pub fn host_pages() -> Option<(u64, u64)> {
    let read = |f: &str| {
        std::fs::read_to_string(format!("/sys/kernel/mm/hugepages/hugepages-2048kB/{f}")).ok()?.trim().parse().ok()
    };
    Some((read("nr_hugepages")?, read("free_hugepages")?))
}

/// Whether hugetlbfs is mounted somewhere (DPDK needs a mount).
pub fn hugetlbfs_mounted() -> bool {
    std::fs::read_to_string("/proc/mounts")
        .is_ok_and(|m| m.lines().any(|l| l.split_whitespace().nth(2) == Some("hugetlbfs")))
}

/// One line for `--check`.
pub fn report(config: &Config) -> String {
    let need = need(config);
    let (bytes, from) = match need {
        Need::None => return "hugepages: none needed (--no-huge: DPDK runs on 4 KiB pages)".to_owned(),
        Need::Bytes { bytes, from_eal_args } => {
            (bytes, if from_eal_args { "the EAL's -m/--socket-mem" } else { "the mbuf pool estimate" })
        }
    };
    let pages = need.pages();
    let host = match host_pages() {
        Some((total, free)) if free >= pages => format!("the host has {free} free of {total}: enough"),
        Some((total, free)) => format!(
            "the host has {free} free of {total}: NOT enough (reserve with vswitchd --reserve-hugepages or \
             /proc/sys/vm/nr_hugepages)"
        ),
        None => "the host reports no 2 MB pages (/sys/kernel/mm/hugepages)".to_owned(),
    };
    let mount = if hugetlbfs_mounted() { "" } else { "; no hugetlbfs is mounted" };
    format!("hugepages: {pages} x 2 MB pages ({} MB, from {from}); {host}{mount}", bytes >> 20)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn megabytes_from_the_eal_arguments() {
        let a = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(eal_megabytes(&a(&["-m", "1024"])), Some(1024));
        assert_eq!(eal_megabytes(&a(&["-m2048"])), Some(2048));
        assert_eq!(eal_megabytes(&a(&["--socket-mem", "1024,512"])), Some(1536));
        assert_eq!(eal_megabytes(&a(&["--socket-mem=256"])), Some(256));
        assert_eq!(eal_megabytes(&a(&["--no-pci"])), None);
    }

    #[test]
    fn the_demo_needs_none_and_a_host_config_its_pages() {
        let demo = Config::demo().expect("demo");
        assert_eq!(need(&demo), Need::None);
        assert!(report(&demo).contains("none needed"));
        let host = Config::parse(
            "[eal]\nargs = [\"-m\", \"1000\"]\n[[port]]\nname = \"vf0\"\nrole = \"representor\"\ndevargs = \"net_ring0\"\n",
            "h.toml",
        )
        .expect("valid");
        assert_eq!(need(&host).pages(), 500);
        assert!(
            report(&host).starts_with("hugepages: 500 x 2 MB pages (1000 MB, from the EAL's -m"),
            "{}",
            report(&host)
        );
        let pool = Config::parse(
            "[eal]\nargs = []\n[datapath]\nmbufs = 100000\n[[port]]\nname = \"vf0\"\nrole = \"representor\"\ndevargs = \"net_ring0\"\n",
            "p.toml",
        )
        .expect("valid");
        // 100k mbufs of 2,368 bytes + 128 MB.
        assert_eq!(need(&pool), Need::Bytes { bytes: 100_000 * (2176 + 192) + (128 << 20), from_eal_args: false });
    }
}
