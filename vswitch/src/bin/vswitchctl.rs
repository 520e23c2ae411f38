//! vswitchctl: talks to a running vswitchd over its control socket.

use anyhow::Result;
use clap::Parser;
use serde_json::Value;
use std::path::PathBuf;
use vswitch::control::{call, Request};

/// Control a running vswitchd.
#[derive(Parser, Debug)]
#[command(
    name = "vswitchctl",
    version,
    about = "Control a running vswitchd over its control socket (see vswitchd(8))."
)]
struct Args {
    /// Control socket of the daemon.
    #[arg(long, default_value = "/run/vswitch/vswitchd.sock", env = "VSWITCHD_SOCKET")]
    socket: PathBuf,
    /// Print the daemon's JSON instead of tables.
    #[arg(long)]
    json: bool,
    /// Write the man page (vswitchctl.8) and shell completions (bash, zsh,
    /// fish) into DIR and exit (packaging).
    #[arg(long, value_name = "DIR", hide = true)]
    generate: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Option<Request>,
}

fn main() {
    // Output piped into `head` and closed early: end quietly, as a shell tool does.
    vswitch::dpdk::os::default_sigpipe();
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("vswitchctl: {e:#}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> Result<()> {
    if let Some(dir) = &args.generate {
        return generate(dir);
    }
    let Some(cmd) = &args.cmd else {
        use clap::CommandFactory;
        Args::command().print_help()?;
        std::process::exit(2);
    };
    let result = call(&args.socket, cmd)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
        return Ok(());
    }
    match cmd {
        Request::Show => print_show(&result),
        Request::DumpPorts => print_ports(&result),
        Request::DumpFlows { testpmd: false, .. } => print_flows(&result),
        Request::DumpFlows { testpmd: true, .. } => {
            let jumps = call(&args.socket, &Request::TestpmdJumps)?;
            print_testpmd_script(&jumps, &result);
        }
        Request::DumpRules => {
            for r in result.as_array().into_iter().flatten() {
                println!(
                    "id={} table={} priority={} cookie={} origin={} {}",
                    r["id"],
                    r["table"],
                    r["priority"],
                    r["cookie"].as_str().unwrap_or("0x0"),
                    r["origin"].as_str().unwrap_or("?"),
                    r["text"].as_str().unwrap_or("")
                );
            }
        }
        Request::DumpUnderlay => print_underlay(&result),
        Request::RouteShow => print_routes(&result),
        Request::NeighShow => print_neighbours(&result),
        Request::OffloadShow => print_offload(&result),
        Request::PmdRxqShow => print_rxqs(&result),
        Request::PmdRxqRebalance => {
            let moves = result["moves"].as_array().cloned().unwrap_or_default();
            for m in &moves {
                println!("{}:{} pmd {} -> pmd {}", text(&m["port"]), m["queue"], m["from_pmd"], m["to_pmd"]);
            }
            println!(
                "{} queue(s) moved; variance of the PMD loads {:.1} -> {:.1} (estimated)",
                moves.len(),
                result["variance_before"].as_f64().unwrap_or(0.0),
                result["variance_after"].as_f64().unwrap_or(0.0)
            );
        }
        _ => println!("{}", serde_json::to_string(&result)?),
    }
    Ok(())
}

/// The man page and the shell completions, into `dir`.
fn generate(dir: &std::path::Path) -> Result<()> {
    use clap::CommandFactory;
    use clap_complete::Shell;
    std::fs::create_dir_all(dir)?;
    let mut man = Vec::new();
    clap_mangen::Man::new(Args::command().name("vswitchctl")).section("8").render(&mut man)?;
    std::fs::write(dir.join("vswitchctl.8"), man)?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut Args::command(), "vswitchctl", dir)?;
    }
    Ok(())
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("-")
}

fn print_routes(result: &Value) {
    println!("{:<28} {:<28} {:<12} {:<10} {:>8}", "prefix", "via", "dev", "source", "metric");
    for r in result["routes"].as_array().into_iter().flatten() {
        println!(
            "{:<28} {:<28} {:<12} {:<10} {:>8}",
            text(&r["prefix"]),
            text(&r["via"]),
            text(&r["port"]),
            text(&r["source"]),
            u(&r["metric"])
        );
    }
    let kernel = &result["kernel"];
    if kernel.is_null() {
        println!("(the kernel's routes are not followed: [underlay] routes = \"{}\")", text(&result["mode"]));
        return;
    }
    let ignored = result["ignored"].as_array().map_or(0, Vec::len);
    let total = u(&kernel["ignored_routes"]);
    if total > 0 {
        println!("kernel routes not used ({total}{}):", if total as usize > ignored { ", first listed" } else { "" });
        for r in result["ignored"].as_array().into_iter().flatten() {
            let via = r["via"].as_str().map(|v| format!(" via {v}")).unwrap_or_default();
            println!(
                "  {}{via} dev {} metric {}: {}",
                text(&r["prefix"]),
                text(&r["dev"]),
                r["metric"],
                text(&r["why"])
            );
        }
    }
    print_kernel(kernel);
}

fn print_kernel(kernel: &Value) {
    let uplinks: Vec<String> = kernel["uplinks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|u| {
            let state = match (u[2].as_u64(), u[3].as_bool()) {
                (None, _) => "absent".to_owned(),
                (Some(i), Some(true)) => format!("ifindex {i}, up"),
                (Some(i), _) => format!("ifindex {i}, down"),
            };
            format!("{}={} ({state})", text(&u[0]), text(&u[1]))
        })
        .collect();
    let c = &kernel["counters"];
    println!(
        "kernel: table {}, {}; {} routes, {} neighbours held; {} messages, {} bad, {} unknown family, \
         {} other table, {} overruns, {} resyncs, {} dump errors, {} not from the kernel; {} neighbours on other interfaces",
        kernel["table"],
        uplinks.join(", "),
        u(&kernel["kernel_routes"]),
        u(&kernel["kernel_neighbours"]),
        u(&c["messages"]),
        u(&c["bad_messages"]),
        u(&c["unknown_family"]),
        u(&c["other_table"]),
        u(&c["overruns"]),
        u(&c["resyncs"]),
        u(&c["dump_errors"]),
        u(&c["foreign_senders"]),
        u(&kernel["ignored_neighbours"]),
    );
}

fn print_neighbours(result: &Value) {
    println!("{:<28} {:<18} {:<12} {:<10}", "ip", "lladdr", "dev", "source");
    for n in result["neighbours"].as_array().into_iter().flatten() {
        println!("{:<28} {:<18} {:<12} {:<10}", text(&n["ip"]), text(&n["mac"]), text(&n["port"]), text(&n["source"]));
    }
    if !result["kernel"].is_null() {
        print_kernel(&result["kernel"]);
    }
}

fn print_underlay(result: &Value) {
    for r in result["routes"].as_array().into_iter().flatten() {
        let via = r["via"].as_str().map(|v| format!(" via {v}")).unwrap_or_default();
        println!(
            "route {}{via} dev {} ({})",
            r["prefix"].as_str().unwrap_or(""),
            r["port"].as_str().unwrap_or(""),
            r["source"].as_str().unwrap_or("")
        );
    }
    for n in result["neighbours"].as_array().into_iter().flatten() {
        let kind = n["source"].as_str().unwrap_or("");
        println!(
            "neighbour {} lladdr {} dev {} {kind}",
            n["ip"].as_str().unwrap_or(""),
            n["mac"].as_str().unwrap_or(""),
            n["port"].as_str().unwrap_or("")
        );
    }
    for t in result["tunnels"].as_array().into_iter().flatten() {
        println!("tunnel {}", t["encap"].as_str().unwrap_or(""));
    }
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

fn print_ports(ports: &Value) {
    println!(
        "{:<4} {:<12} {:<12} {:<14} {:>6} {:>14} {:>14} {:>10} {:>10} {:>10}",
        "no", "name", "role", "driver", "mtu", "rx_packets", "tx_packets", "tx_drop", "rx_missed", "rx_nombuf"
    );
    for p in ports.as_array().into_iter().flatten() {
        println!(
            "{:<4} {:<12} {:<12} {:<14} {:>6} {:>14} {:>14} {:>10} {:>10} {:>10}",
            u(&p["number"]),
            p["name"].as_str().unwrap_or(""),
            p["role"].as_str().unwrap_or(""),
            p["driver"].as_str().unwrap_or(""),
            u(&p["mtu"]),
            u(&p["rx_packets"]),
            u(&p["tx_packets"]),
            u(&p["tx_dropped"]),
            u(&p["rx_missed"]),
            u(&p["rx_no_mbuf"])
        );
    }
}

fn print_show(s: &Value) {
    let lookups = u(&s["emc_hits"]) + u(&s["smc_hits"]) + u(&s["megaflow_hits"]) + u(&s["upcalls"]);
    let pct = |x: u64| if lookups == 0 { 0.0 } else { x as f64 * 100.0 / lookups as f64 };
    println!(
        "uptime {:.1} s, {} packets, {} rules, {} flows",
        s["uptime_s"].as_f64().unwrap_or(0.0),
        u(&s["packets"]),
        u(&s["rules"]),
        u(&s["flows"])
    );
    println!(
        "lookups: exact-match {} ({:.2}%), signature-match {} ({:.2}%), megaflow {} ({:.2}%), upcall {} ({:.2}%)",
        u(&s["emc_hits"]),
        pct(u(&s["emc_hits"])),
        u(&s["smc_hits"]),
        pct(u(&s["smc_hits"])),
        u(&s["megaflow_hits"]),
        pct(u(&s["megaflow_hits"])),
        u(&s["upcalls"]),
        pct(u(&s["upcalls"]))
    );
    if let Some(d) = s["drops"].as_object() {
        let nz: Vec<String> = d.iter().filter(|(_, v)| u(v) > 0).map(|(k, v)| format!("{k}={}", u(v))).collect();
        println!("drops: {}", if nz.is_empty() { "none".to_owned() } else { nz.join(" ") });
    }
    if let Some(p) = s["parse_errors"].as_object().filter(|p| !p.is_empty()) {
        println!("parse errors: {}", p.iter().map(|(k, v)| format!("{k}={}", u(v))).collect::<Vec<_>>().join(" "));
    }
    for p in s["pmds"].as_array().into_iter().flatten() {
        let busy = u(&p["busy_cycles"]);
        let total = busy + u(&p["idle_cycles"]);
        let pkts = u(&p["packets"]);
        println!(
            "pmd {} (core {}): {} packets, {} flows, busy {:.1}%, {} cycles/packet",
            u(&p["index"]),
            u(&p["core"]),
            pkts,
            u(&p["flows"]),
            if total == 0 { 0.0 } else { busy as f64 * 100.0 / total as f64 },
            busy.checked_div(pkts).unwrap_or(0)
        );
    }
    print_ports(&s["ports"]);
}

fn print_flows(flows: &Value) {
    for f in flows.as_array().into_iter().flatten() {
        let offload = match f["offload"].as_str() {
            None | Some("off") => String::new(),
            Some(state) => format!(" offload={state} hw_packets={}", u(&f["hw_packets"])),
        };
        println!(
            "id={} pmd={} tier={}{offload} packets={} bytes={} age={:.1}s used={:.1}s rule={} {} actions={}",
            u(&f["id"]),
            u(&f["pmd"]),
            f["tier"].as_str().unwrap_or(""),
            u(&f["packets"]),
            u(&f["bytes"]),
            u(&f["age_ms"]) as f64 / 1000.0,
            u(&f["idle_ms"]) as f64 / 1000.0,
            f["rule_id"].as_u64().map_or_else(|| "none".to_owned(), |r| r.to_string()),
            f["match"].as_str().unwrap_or(""),
            f["actions"].as_str().unwrap_or("")
        );
        if let Some(e) = f["encap"].as_str() {
            println!("    encap: {e}");
        }
        for line in f["testpmd"].as_array().into_iter().flatten() {
            println!("    testpmd> {}", line.as_str().unwrap_or(""));
        }
    }
}

/// dump-flows --testpmd: the JUMP rules first (without them the group-N
/// rules never match), the flows with their rules, then how to undo it all.
fn print_testpmd_script(jumps: &Value, flows: &Value) {
    let creates = |lines: &Value| {
        lines
            .as_array()
            .into_iter()
            .flatten()
            .filter(|l| l.as_str().is_some_and(|l| l.starts_with("flow create")))
            .count()
    };
    let mut rules = creates(&jumps["commands"]);
    if rules > 0 {
        println!(
            "# group-0 JUMP rules, one per ingress port: paste these first, the rules below live in group {}",
            u(&jumps["group"])
        );
        for line in jumps["commands"].as_array().into_iter().flatten() {
            println!("testpmd> {}", line.as_str().unwrap_or(""));
        }
    }
    print_flows(flows);
    rules += flows.as_array().into_iter().flatten().map(|f| creates(&f["testpmd"])).sum::<usize>();
    if rules > 0 {
        let ids: Vec<String> = (0..rules).map(|i| i.to_string()).collect();
        println!(
            "# to undo (testpmd numbers rules from 0 on a port that had none; or: flow flush {})",
            u(&jumps["proxy"])
        );
        println!("testpmd> flow destroy {} rule {}", u(&jumps["proxy"]), ids.join(" "));
    }
}

fn print_rxqs(s: &Value) {
    let lb = &s["auto_lb"];
    println!(
        "assignment: {}{}, interval {:.1} s; auto-lb {} (load >= {} %, improvement >= {} %, every {} s; {} done); {} rebalances, {} queue moves",
        text(&s["assign"]),
        if s["isolate"].as_bool() == Some(true) { " (pinned PMDs isolated)" } else { "" },
        s["interval_s"].as_f64().unwrap_or(0.0),
        if lb["enabled"].as_bool() == Some(true) { "on" } else { "off" },
        lb["load_threshold_pct"],
        lb["improvement_threshold_pct"],
        lb["interval_s"],
        lb["rebalances"],
        s["rebalances"],
        s["queue_moves"]
    );
    for p in s["pmds"].as_array().into_iter().flatten() {
        println!(
            "pmd {} core {}{}: busy {:.1} %, idle {:.1} %",
            p["pmd"],
            p["core"],
            if p["isolated"].as_bool() == Some(true) { " (isolated)" } else { "" },
            p["busy_pct"].as_f64().unwrap_or(0.0),
            p["idle_pct"].as_f64().unwrap_or(0.0)
        );
        for q in p["queues"].as_array().into_iter().flatten() {
            println!(
                "  port {:<12} queue {:<3} {:>6.1} % of busy  {:>12.0} pps{}",
                text(&q["port"]),
                q["queue"],
                q["share_pct"].as_f64().unwrap_or(0.0),
                q["pps"].as_f64().unwrap_or(0.0),
                if q["pinned"].as_bool() == Some(true) { "  (pinned)" } else { "" }
            );
        }
    }
}

fn print_offload(s: &Value) {
    let map = |v: &Value| {
        let parts: Vec<String> = v.as_object().into_iter().flatten().map(|(k, n)| format!("{k}={}", u(n))).collect();
        if parts.is_empty() {
            "none".to_owned()
        } else {
            parts.join(" ")
        }
    };
    println!("device: {}", s["device"].as_str().unwrap_or(""));
    println!(
        "policy: {}, rules: {} in the device ({} flow rules, max {})",
        s["policy"].as_str().unwrap_or(""),
        u(&s["rules_in_device"]),
        u(&s["flow_rules"]),
        u(&s["max_rules"])
    );
    println!("flows by state: {}", map(&s["flows_by_state"]));
    println!("refused by reason: {}", map(&s["refusals_by_reason"]));
    println!("device failures: {}", map(&s["failures_by_device_error"]));
    println!(
        "operations: {} inserts, {} deletes, {} replacements ({} rules unchanged by underlay changes), {} evictions, {} reinstalled, {} rate-limited",
        u(&s["inserts"]),
        u(&s["deletes"]),
        u(&s["replacements"]),
        u(&s["unchanged_on_underlay_change"]),
        u(&s["evictions"]),
        u(&s["reinstalled"]),
        u(&s["rate_limited"])
    );
    println!(
        "install to active: p50 {:.1} ms, p99 {:.1} ms ({} samples)",
        s["install_to_active_ms_p50"].as_f64().unwrap_or(0.0),
        s["install_to_active_ms_p99"].as_f64().unwrap_or(0.0),
        u(&s["install_to_active_samples"])
    );
    let ms = |k: &str| s[k].as_f64().unwrap_or(0.0);
    println!(
        "hot flows: rate kept to active p50 {:.1} ms, p99 {:.1} ms; hot report to active p50 {:.2} ms, p99 {:.2} ms \
         ({} more waited for room in the table)",
        ms("rate_to_active_ms_p50"),
        ms("rate_to_active_ms_p99"),
        ms("hot_to_active_ms_p50"),
        ms("hot_to_active_ms_p99"),
        u(&s["waited_for_room"])
    );
    println!("hardware counters: {} packets, {} bytes", u(&s["hw_packets"]), u(&s["hw_bytes"]));
}
