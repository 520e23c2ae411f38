//! The control socket's request rate: small requests (dump-rules, show,
//! add-rule) from one and from several clients, each a connection as
//! vswitchctl makes, and bulk rule loading one by one against one
//! `add-rules` batch. vswitchd runs on net_null ports (no traffic).

use crate::ours::{vswitchd_path, Daemon};
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use vswitch::control::{call, Request, RuleList};

fn config(socket: &Path, core: usize) -> String {
    format!(
        "rules = [\"priority=10,in_port=vf0 actions=output:uplink0\"]\n\
         [eal]\nargs = [\"--no-huge\", \"-m\", \"256\", \"--no-pci\", \"--no-telemetry\", \"--log-level=lib.eal:warning\"]\n\
         [datapath]\npmd_cores = [{core}]\n[control]\nsocket = \"{}\"\n[metrics]\nlisten = \"off\"\n\
         [[port]]\nname = \"vf0\"\nrole = \"representor\"\ndevargs = \"net_null_cb0,no-rx=1\"\n\
         [[port]]\nname = \"uplink0\"\nrole = \"uplink\"\ndevargs = \"net_null_cb1,no-rx=1\"\n",
        socket.display()
    )
}

/// A distinct rule for every `i` below 2^32 (each run of clients draws
/// from its own tens of millions, the bulk from 500,000 and 700,000 on).
fn rule(i: usize) -> String {
    format!("priority=5,in_port=vf0,ip,nw_dst={} actions=drop", std::net::Ipv4Addr::from(i as u32))
}

/// Requests per second of `make(i)` from `clients` threads for `window`.
fn rate(socket: &Path, clients: usize, window: Duration, make: fn(usize) -> Request) -> Result<f64> {
    let start = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|c| {
            let socket = socket.to_path_buf();
            std::thread::spawn(move || -> Result<usize> {
                let mut n = 0;
                while start.elapsed() < window {
                    call(&socket, &make(clients * 10_000_000 + c * 1_000_000 + n))?;
                    n += 1;
                }
                Ok(n)
            })
        })
        .collect();
    let mut total = 0;
    for h in handles {
        total += h.join().map_err(|_| anyhow::anyhow!("client thread panicked"))??;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

/// Runs the measurements and prints a table.
pub fn run(vswitchd: Option<PathBuf>, out: &Path, core: usize, rules: usize) -> Result<String> {
    std::fs::create_dir_all(out)?;
    let bin = vswitchd_path(vswitchd)?;
    let socket = out.join("control-bench.sock");
    let cfg = out.join("control-bench.toml");
    std::fs::write(&cfg, config(&socket, core))?;
    let log = out.join("control-bench.log");
    let _daemon = Daemon::vswitchd(&bin, &cfg, &log)?;
    let up = Instant::now();
    while call(&socket, &Request::Show).is_err() {
        if up.elapsed() > Duration::from_secs(60) {
            bail!("vswitchd did not start; see {}", log.display());
        }
        crate::nap(Duration::from_millis(100))?;
    }
    let window = Duration::from_secs(2);
    let mut m = String::from("| request | clients | requests/s |\n|---|---:|---:|\n");
    for (name, make) in [
        ("dump-rules", (|_| Request::DumpRules) as fn(usize) -> Request),
        ("show", |_| Request::Show),
        ("add-rule (table growing)", |i| Request::AddRule { rule: rule(i) }),
    ] {
        for clients in [1, 4] {
            let r = rate(&socket, clients, window, make)?;
            m += &format!("| {name} | {clients} | {r:.0} |\n");
        }
    }
    // Bulk: `rules` rules one request each, then as one batch, from empty.
    let before = call(&socket, &Request::DumpRules)?.as_array().map_or(0, Vec::len);
    let t = Instant::now();
    let batch: Vec<String> = (0..rules).map(|i| rule(500_000 + i)).collect();
    call(&socket, &Request::AddRules { rules: RuleList(batch) })?;
    let batch_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for i in 0..rules {
        call(&socket, &Request::AddRule { rule: rule(700_000 + i) })?;
    }
    let single_s = t.elapsed().as_secs_f64();
    m += &format!(
        "\n{rules} rules on top of {before}: one add-rules batch {batch_s:.2} s; one add-rule each {single_s:.1} s \
         ({:.0} rules/s)\n",
        rules as f64 / single_s
    );
    Ok(m)
}
