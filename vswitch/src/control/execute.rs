//! Answering requests: the checks every request line passes ([`respond`])
//! and the switch's answer to each request ([`execute`]).

use super::error::ControlError;
use super::reply::{Deleted, NeighbourAdded, Reloaded, RouteAdded, RuleAdded, RulesAdded, RulesDeleted};
use super::request::{Request, MAX_REQUEST};
use crate::config::Config;
use crate::switch::Switch;
use serde::Serialize;
use serde_json::{json, Value};
use std::path::Path;

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
        Request::DumpFlows { testpmd, per_pmd } => to_json(&switch.dump_flows(*testpmd, *per_pmd)?),
        Request::TestpmdJumps => to_json(&switch.testpmd_jumps()?),
        Request::DumpRules => to_json(&switch.dump_rules()),
        Request::AddRule { rule } => {
            nonempty(rule, "a rule")?;
            let (id, report) = switch.add_rule(rule)?;
            to_json(&RuleAdded { id, flows: (&report).into() })
        }
        Request::AddRules { rules } => {
            let (ids, report) = switch.add_rules(&rules.0)?;
            to_json(&RulesAdded { added: ids.len(), first_id: ids.first().copied(), flows: (&report).into() })
        }
        Request::DelRule { rule } => {
            nonempty(rule, "a rule id or text")?;
            let (deleted, report) = switch.del_rule(rule)?;
            to_json(&RulesDeleted { deleted, flows: (&report).into() })
        }
        Request::DumpUnderlay => to_json(&switch.dump_underlay()),
        Request::RouteAdd { args } => {
            let offload = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
                [prefix, port] => switch.add_route(prefix, None, port)?,
                [prefix, "via", gw, port] => switch.add_route(prefix, Some(gw), port)?,
                _ => return Err(ControlError::Usage("route-add PREFIX [via GATEWAY] UPLINK".into())),
            };
            to_json(&RouteAdded { routes: switch.dump_underlay().routes, offload })
        }
        Request::RouteDel { prefix } => {
            let offload = switch.del_route(prefix)?;
            to_json(&Deleted { deleted: prefix, offload })
        }
        Request::RouteShow => to_json(&switch.route_show()),
        Request::NeighShow => to_json(&switch.neigh_show()),
        Request::NeighAdd { ip, mac, port } => {
            let offload = switch.add_neighbour(ip, mac, port)?;
            to_json(&NeighbourAdded { added: ip, offload })
        }
        Request::NeighDel { ip } => {
            let offload = switch.del_neighbour(ip)?;
            to_json(&Deleted { deleted: ip, offload })
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
        Request::PmdRxqShow => to_json(&switch.rxq_show()),
        Request::PmdRxqRebalance => to_json(&switch.rxq_rebalance()?),
        Request::PmdRxqMove { queue, core } => to_json(&switch.rxq_move(queue, *core)?),
        Request::Reload => to_json(&reload(switch, config_path)?),
    })
}

/// `reload`: the file read again; only its rules apply to a running switch,
/// and a file that renumbers ports is refused whole.
fn reload(switch: &Switch, config_path: Option<&Path>) -> Result<Reloaded, ControlError> {
    let path = config_path.ok_or_else(|| {
        ControlError::Usage("this vswitchd runs the embedded demo configuration; there is no file to reload".into())
    })?;
    let mut config = Config::load_with(path, &switch.config().overrides)?;
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
    Ok(Reloaded {
        rules: config.rules.len(),
        flows_kept: report.kept,
        flows_removed: report.removed,
        not_applied: diff.not_applied,
    })
}

/// A view as JSON (views are plain data; a failure is reported in place).
fn to_json<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or_else(|e| json!({ "serialization_error": e.to_string() }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::request::RuleList;

    #[test]
    fn wire_format() {
        let r: Request = serde_json::from_str(r#"{"cmd":"add-rule","rule":"ip actions=drop"}"#).expect("parse");
        assert_eq!(r, Request::AddRule { rule: "ip actions=drop".into() });
        assert_eq!(serde_json::to_string(&Request::Show).expect("json"), r#"{"cmd":"show"}"#);
        let r: Request = serde_json::from_str(r#"{"cmd":"dump-flows"}"#).expect("default flag");
        assert_eq!(r, Request::DumpFlows { testpmd: false, per_pmd: false });
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
            Request::DumpFlows { testpmd: true, per_pmd: false },
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
            Request::PmdRxqShow,
            Request::PmdRxqRebalance,
            Request::PmdRxqMove { queue: String::new(), core: 0 },
        ];
        for r in all {
            let v = serde_json::to_value(&r).expect("json");
            assert_eq!(v["cmd"], r.name(), "{r:?}");
        }
    }
}
