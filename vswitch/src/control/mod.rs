//! The control socket: JSON over a Unix socket (mode 0600), one request per
//! line, one reply per line. `vswitchctl` is the client; [`server`] serves.
//!
//! A request is a [`Request`]: `{"cmd": "add-rule", "rule": "..."}`. The same
//! enum is vswitchctl's list of subcommands, so the daemon's "unknown
//! command" answer (serde's list of variants) and the client's `--help`
//! cannot drift apart. Replies: `{"ok": true, "result": ...}` or
//! `{"ok": false, "error": "..."}`.

mod server;

use crate::config::{Config, ConfigError};
use crate::switch::{Switch, SwitchError};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

pub use server::{bind, serve, MAX_CONNECTIONS, REPLY_DEADLINE, REQUEST_DEADLINE};

/// Longest request accepted, in bytes (an `add-rules` batch of some 100k
/// rules fits).
pub const MAX_REQUEST: usize = 16 << 20;
/// How long `vswitchctl` waits for a reply (a reload of many rules or a
/// port restart takes a while).
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

/// Rules for `add-rules`: on the command line a file (`-`: standard input),
/// one rule per line, `#` comments and blank lines skipped; on the wire a
/// list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RuleList(pub Vec<String>);

impl std::str::FromStr for RuleList {
    type Err = String;

    fn from_str(path: &str) -> Result<Self, String> {
        let text = if path == "-" {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).map_err(|e| format!("standard input: {e}"))?;
            s
        } else {
            std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?
        };
        Ok(RuleList(
            text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_owned).collect(),
        ))
    }
}

/// A control request (and a vswitchctl subcommand).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, clap::Subcommand)]
#[serde(tag = "cmd", rename_all = "kebab-case")]
#[command(rename_all = "kebab-case")]
pub enum Request {
    /// Summary: ports, lookups by tier, flows, drops by reason, PMDs.
    Show,
    /// Port counters.
    DumpPorts,
    /// Cached megaflows: match, actions, packets, bytes, age, tier, offload state.
    DumpFlows {
        /// Print each hardware rule as dpdk-testpmd commands.
        #[arg(long)]
        #[serde(default)]
        testpmd: bool,
    },
    /// The group-0 JUMP rules that make the hardware rules of dump-flows
    /// --testpmd reachable, as testpmd commands (one per ingress port).
    TestpmdJumps,
    /// Rules in priority order with their ids.
    DumpRules,
    /// Add a rule, e.g. "priority=100,in_port=vf0,ip actions=output:uplink0".
    AddRule { rule: String },
    /// Add the rules of a file (- for standard input), one per line: all or
    /// none, with one revalidation of the cached flows.
    AddRules {
        #[arg(value_name = "FILE")]
        rules: RuleList,
    },
    /// Delete a rule by id, or by its match and priority (rule text).
    DelRule { rule: String },
    /// Re-read the configuration file's rules.
    Reload,
    /// Routes, neighbours and tunnels with their current encapsulation.
    DumpUnderlay,
    /// Add a route: PREFIX [via GATEWAY] UPLINK, e.g. 198.18.1.0/24 via 198.18.0.254 uplink0.
    RouteAdd {
        #[arg(num_args = 2..=4)]
        args: Vec<String>,
    },
    /// Delete a route by prefix.
    RouteDel { prefix: String },
    /// Routes with their source (connected, config, control, kernel) and
    /// metric, the kernel routes not used with why, and the kernel
    /// follower's counters.
    RouteShow,
    /// Neighbours with their source (config, control, kernel, learned).
    NeighShow,
    /// Add a static neighbour: IP MAC UPLINK.
    NeighAdd { ip: String, mac: String, port: String },
    /// Delete a neighbour (static or learned).
    NeighDel { ip: String },
    /// Offload: rules in the device, flows by state and reason, operations,
    /// failures, install-to-active latency.
    OffloadShow,
    /// Stop and start a port (its hardware rules are flushed and installed again).
    PortRestart { port: String },
}

impl Request {
    /// The command's name on the wire and on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Show => "show",
            Request::DumpPorts => "dump-ports",
            Request::DumpFlows { .. } => "dump-flows",
            Request::TestpmdJumps => "testpmd-jumps",
            Request::DumpRules => "dump-rules",
            Request::AddRule { .. } => "add-rule",
            Request::AddRules { .. } => "add-rules",
            Request::DelRule { .. } => "del-rule",
            Request::Reload => "reload",
            Request::DumpUnderlay => "dump-underlay",
            Request::RouteAdd { .. } => "route-add",
            Request::RouteDel { .. } => "route-del",
            Request::RouteShow => "route-show",
            Request::NeighShow => "neigh-show",
            Request::NeighAdd { .. } => "neigh-add",
            Request::NeighDel { .. } => "neigh-del",
            Request::OffloadShow => "offload-show",
            Request::PortRestart { .. } => "port-restart",
        }
    }
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(transparent)]
    Switch(#[from] SwitchError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Wrong arguments or a request that cannot apply.
    #[error("{0}")]
    Usage(String),
    #[error("{what}: {cause}")]
    Io { what: String, cause: std::io::Error },
    #[error("the daemon's reply: {0}")]
    Reply(String),
    #[error("{0}")]
    Daemon(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ControlError {
    let what = what.into();
    move |cause| ControlError::Io { what, cause }
}

/// The reply line (a JSON object and a newline) to one request's bytes
/// (without its newline): the size, the text, the JSON and the request are
/// checked here, then `execute` answers it. The control socket passes the
/// switch's dispatch; the fuzz target passes a stand-in.
pub fn respond(request: &[u8], execute: impl FnOnce(&Request) -> Result<Value, ControlError>) -> String {
    let reply = if request.len() > MAX_REQUEST {
        json!({"ok": false, "error": format!("request longer than {MAX_REQUEST} bytes")})
    } else {
        match std::str::from_utf8(request) {
            Err(_) => json!({"ok": false, "error": "the request is not UTF-8 text"}),
            Ok(line) => match serde_json::from_str::<Request>(line.trim()) {
                Ok(req) => match execute(&req) {
                    Ok(result) => json!({"ok": true, "result": result}),
                    Err(e) => json!({"ok": false, "error": e.to_string()}),
                },
                Err(e) => {
                    json!({"ok": false, "error": format!("bad request (expected {{\"cmd\": ...}} JSON): {e}")})
                }
            },
        }
    };
    let mut text = reply.to_string();
    text.push('\n');
    text
}

/// Answers one request with the switch (what the control socket runs).
///
/// # Errors
/// What the switch refused, with the reason.
/// A rule edit's answer, saying so when the hardware side is still catching
/// up (the change itself is made).
fn with_pending(mut v: Value, report: &crate::datapath::RevalidateReport) -> Value {
    if report.offload_pending {
        v["offload_pending"] = json!(
            "applied in software; the offload manager did not answer in time, so hardware rules of flows \
             revalidated out go when it catches up (offload-show)"
        );
    }
    v
}

pub fn execute(req: &Request, switch: &Switch, config_path: Option<&Path>) -> Result<Value, ControlError> {
    let nonempty = |s: &str, what: &str| {
        if s.trim().is_empty() {
            Err(ControlError::Usage(format!("{} needs {what}", req.name())))
        } else {
            Ok(())
        }
    };
    Ok(match req {
        Request::Show => to_json(&switch.stats()),
        Request::DumpPorts => to_json(&switch.stats().ports),
        Request::DumpFlows { testpmd } => to_json(&switch.dump_flows(*testpmd)?),
        Request::TestpmdJumps => to_json(&switch.testpmd_jumps()?),
        Request::DumpRules => to_json(&switch.dump_rules()),
        Request::AddRule { rule } => {
            nonempty(rule, "a rule")?;
            let (id, report) = switch.add_rule(rule)?;
            with_pending(json!({"id": id, "flows_kept": report.kept, "flows_removed": report.removed}), &report)
        }
        Request::AddRules { rules } => {
            let (ids, report) = switch.add_rules(&rules.0)?;
            let v = json!({"added": ids.len(), "first_id": ids.first(), "flows_kept": report.kept, "flows_removed": report.removed});
            with_pending(v, &report)
        }
        Request::DelRule { rule } => {
            nonempty(rule, "a rule id or text")?;
            let (deleted, report) = switch.del_rule(rule)?;
            with_pending(
                json!({"deleted": deleted, "flows_kept": report.kept, "flows_removed": report.removed}),
                &report,
            )
        }
        Request::DumpUnderlay => switch.dump_underlay(),
        Request::RouteAdd { args } => {
            let offload = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
                [prefix, port] => switch.add_route(prefix, None, port)?,
                [prefix, "via", gw, port] => switch.add_route(prefix, Some(gw), port)?,
                _ => return Err(ControlError::Usage("route-add PREFIX [via GATEWAY] UPLINK".into())),
            };
            json!({"routes": switch.dump_underlay()["routes"], "offload": offload})
        }
        Request::RouteDel { prefix } => {
            let offload = switch.del_route(prefix)?;
            json!({"deleted": prefix, "offload": offload})
        }
        Request::RouteShow => switch.route_show(),
        Request::NeighShow => switch.neigh_show(),
        Request::NeighAdd { ip, mac, port } => {
            let offload = switch.add_neighbour(ip, mac, port)?;
            json!({"added": ip, "offload": offload})
        }
        Request::NeighDel { ip } => {
            let offload = switch.del_neighbour(ip)?;
            json!({"deleted": ip, "offload": offload})
        }
        Request::OffloadShow => match switch.offload() {
            Some(o) => to_json(&o.stats()),
            None => {
                return Err(ControlError::Usage(
                    "offload is off (add an [offload] section to the configuration)".into(),
                ))
            }
        },
        Request::PortRestart { port } => to_json(&switch.restart_port(port)?),
        Request::Reload => {
            let path = config_path.ok_or_else(|| {
                ControlError::Usage(
                    "this vswitchd runs the embedded demo configuration; there is no file to reload".into(),
                )
            })?;
            let mut config = Config::load(path)?;
            if switch.config().socket_overridden {
                config.socket = switch.config().socket.clone();
                config.socket_overridden = true;
            }
            let diff = switch.config().reload_diff(&config);
            if !diff.refused.is_empty() {
                return Err(ControlError::Usage(format!(
                    "{} in {}: they need a restart (rule port names would resolve against a numbering the running \
                     switch does not have); nothing was reloaded",
                    diff.refused.join("; "),
                    path.display()
                )));
            }
            if !diff.not_applied.is_empty() {
                tracing::warn!(
                    sections = ?diff.not_applied,
                    "reload: only rules are reloaded; these sections differ and need a restart \
                     (routes and neighbours also change at run time with vswitchctl)"
                );
            }
            let report = switch.replace_rules(&config.rules)?;
            json!({
                "rules": config.rules.len(),
                "flows_kept": report.kept,
                "flows_removed": report.removed,
                "not_applied": diff.not_applied,
            })
        }
    })
}

/// A view as JSON (views are plain data; a failure is reported in place).
fn to_json<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or_else(|e| json!({ "serialization_error": e.to_string() }))
}

/// Client side: sends one request, returns the `result` or the error text.
///
/// # Errors
/// Connection problems, or the daemon's error.
pub fn call(socket: &Path, req: &Request) -> Result<Value, ControlError> {
    let mut stream = UnixStream::connect(socket)
        .map_err(io(format!("connecting to {} (is vswitchd running? --socket sets the path)", socket.display())))?;
    stream.set_read_timeout(Some(CLIENT_TIMEOUT)).map_err(io("control socket"))?;
    stream.set_write_timeout(Some(CLIENT_TIMEOUT)).map_err(io("control socket"))?;
    let mut text = serde_json::to_string(req).map_err(|e| ControlError::Usage(e.to_string()))?;
    text.push('\n');
    let timed_out = |what: &str| {
        let what = what.to_owned();
        move |e: std::io::Error| match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => ControlError::Usage(format!(
                "{what}: no answer from the daemon within {} s (it may be busy, or stopping)",
                CLIENT_TIMEOUT.as_secs()
            )),
            _ => ControlError::Io { what, cause: e },
        }
    };
    if text.len() > MAX_REQUEST {
        return Err(ControlError::Usage(format!(
            "the request is {} bytes, over the daemon's limit of {} MiB: split it (e.g. several add-rules files)",
            text.len(),
            MAX_REQUEST >> 20
        )));
    }
    // A daemon that refuses the connection (too many clients) or the
    // request answers with its reason and closes: a write cut short by
    // that still has the reply to read, which says more than EPIPE.
    let sent = stream.write_all(text.as_bytes());
    let mut line = String::new();
    let read = BufReader::new(stream).read_line(&mut line);
    if line.is_empty() {
        sent.map_err(timed_out("sending the request"))?;
        read.map_err(timed_out("reading the reply"))?;
        return Err(ControlError::Reply("the daemon closed the connection without a reply".into()));
    }
    let reply: Value = serde_json::from_str(line.trim()).map_err(|e| ControlError::Reply(e.to_string()))?;
    if reply.get("ok").and_then(Value::as_bool) == Some(true) {
        Ok(reply.get("result").cloned().unwrap_or(Value::Null))
    } else {
        Err(ControlError::Daemon(reply.get("error").and_then(Value::as_str).unwrap_or("unknown error").to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_format() {
        let r: Request = serde_json::from_str(r#"{"cmd":"add-rule","rule":"ip actions=drop"}"#).expect("parse");
        assert_eq!(r, Request::AddRule { rule: "ip actions=drop".into() });
        assert_eq!(serde_json::to_string(&Request::Show).expect("json"), r#"{"cmd":"show"}"#);
        let r: Request = serde_json::from_str(r#"{"cmd":"dump-flows"}"#).expect("default flag");
        assert_eq!(r, Request::DumpFlows { testpmd: false });
        let e = serde_json::from_str::<Request>(r#"{"cmd":"frobnicate"}"#).expect_err("unknown");
        let text = e.to_string();
        // serde lists every variant: the help cannot drift from the enum.
        for name in ["show", "dump-ports", "dump-flows", "add-rule", "route-add", "neigh-del", "reload"] {
            assert!(text.contains(name), "{text} should list {name}");
        }
    }

    #[test]
    fn names_match_the_wire() {
        let all = [
            Request::Show,
            Request::DumpPorts,
            Request::DumpFlows { testpmd: true },
            Request::DumpRules,
            Request::AddRule { rule: String::new() },
            Request::AddRules { rules: RuleList(vec![]) },
            Request::DelRule { rule: String::new() },
            Request::Reload,
            Request::DumpUnderlay,
            Request::RouteAdd { args: vec![] },
            Request::RouteDel { prefix: String::new() },
            Request::RouteShow,
            Request::NeighShow,
            Request::NeighAdd { ip: String::new(), mac: String::new(), port: String::new() },
            Request::NeighDel { ip: String::new() },
            Request::OffloadShow,
            Request::PortRestart { port: String::new() },
        ];
        for r in all {
            let v = serde_json::to_value(&r).expect("json");
            assert_eq!(v["cmd"], r.name(), "{r:?}");
        }
    }
}
