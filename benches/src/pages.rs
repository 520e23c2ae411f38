//! The memory a run's DPDK processes live on: 4 KiB pages (`--no-huge`, as
//! the demo and the tests run anywhere) or 2 MB hugepages, as NFV hosts run
//! DPDK. Hugepages are reserved for the run (`/proc/sys/vm/nr_hugepages`,
//! a hugetlbfs mounted in the run's work directory) and given back when it
//! ends; every process maps its pages with `--huge-unlink`, so nothing is
//! left on the mount when one exits.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

const NR_HUGEPAGES: &str = "/proc/sys/vm/nr_hugepages";
const FREE_2M: &str = "/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages";

/// Which pages a DPDK process runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pages {
    /// 4 KiB pages (`--no-huge`).
    Small,
    /// 2 MB pages from this hugetlbfs mount.
    Huge(PathBuf),
}

impl Pages {
    /// As the report writes it.
    pub fn name(&self) -> &'static str {
        match self {
            Pages::Small => "4K",
            Pages::Huge(_) => "2M",
        }
    }

    /// EAL's memory arguments for `mem_mb` MB.
    pub fn eal(&self, mem_mb: u64) -> Vec<String> {
        match self {
            Pages::Small => vec!["--no-huge".into(), "-m".into(), mem_mb.to_string()],
            Pages::Huge(dir) => vec![
                "--huge-dir".into(),
                dir.display().to_string(),
                "--huge-unlink".into(),
                "-m".into(),
                mem_mb.to_string(),
            ],
        }
    }

    /// DPDK memory (`-m`, MB) for a pool of `mbufs` mbufs of 2 KiB data
    /// room. On 4 KiB pages an object does not straddle a page, so each
    /// mbuf takes a page of its own (measured: 1.07M mbufs need more than
    /// 4 GB); on 2 MB pages they pack (about 2.3 KiB each with headers).
    pub fn memory_mb(&self, mbufs: u64) -> u64 {
        match self {
            Pages::Small => 512 + mbufs * 9 / 2048,
            Pages::Huge(_) => 512 + (mbufs * 2560).div_ceil(1 << 20),
        }
    }
}

/// 2 MB pages reserved for the run and mounted; given back on drop (the
/// page count as it was, the mount gone).
pub struct Reservation {
    dir: PathBuf,
    before: u64,
}

fn read_u64(path: &str) -> Result<u64> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    text.trim().parse().with_context(|| format!("{path}: {text:?} is not a number"))
}

impl Reservation {
    /// Reserves `mb` MB more of 2 MB pages and mounts them at `work`/hugepages.
    ///
    /// # Errors
    /// Not root, no hugetlbfs, or fewer pages granted than asked (memory too
    /// fragmented or too small): nothing is left reserved or mounted.
    pub fn take(work: &Path, mb: u64) -> Result<Self> {
        let before = read_u64(NR_HUGEPAGES)?;
        let want = before + mb.div_ceil(2);
        std::fs::write(NR_HUGEPAGES, want.to_string())
            .with_context(|| format!("writing {NR_HUGEPAGES} (hugepages need root)"))?;
        let dir = work.join("hugepages");
        let r = Self { dir, before };
        let granted = read_u64(NR_HUGEPAGES)?;
        let free = read_u64(FREE_2M)?;
        if granted < want || free < mb.div_ceil(2) {
            bail!("asked for {} 2 MB pages, the kernel granted {} ({} free)", mb.div_ceil(2), granted - before, free);
        }
        std::fs::create_dir_all(&r.dir)?;
        let out = Command::new("mount")
            .args(["-t", "hugetlbfs", "-o", "pagesize=2M", "nodev"])
            .arg(&r.dir)
            .output()
            .context("mount")?;
        if !out.status.success() {
            bail!("mounting hugetlbfs at {}: {}", r.dir.display(), String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(r)
    }

    /// What processes on these pages are given.
    pub fn pages(&self) -> Pages {
        Pages::Huge(self.dir.clone())
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).output();
        let _ = std::fs::remove_dir(&self.dir);
        if let Err(e) = std::fs::write(NR_HUGEPAGES, self.before.to_string()) {
            eprintln!("vswitch-bench: could not give the hugepages back ({NR_HUGEPAGES}: {e})");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eal_arguments_and_memory_by_page_size() {
        let small = Pages::Small;
        assert_eq!(small.eal(600), vec!["--no-huge", "-m", "600"]);
        let huge = Pages::Huge("/run/x".into());
        assert_eq!(huge.eal(600), vec!["--huge-dir", "/run/x", "--huge-unlink", "-m", "600"]);
        // A million mbufs: more than 4 GB on 4 KiB pages, about 3 GB on 2 MB.
        assert!(small.memory_mb(1 << 20) > 4096);
        assert!((2500..3200).contains(&huge.memory_mb(1 << 20)), "{}", huge.memory_mb(1 << 20));
    }
}
