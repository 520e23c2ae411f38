//! The control socket: JSON over a Unix socket (mode 0600), one request per
//! line, one reply per line. `vswitchctl` is the client.
//!
//! Requests: `{"cmd": "show" | "dump-ports" | "dump-flows" | "dump-rules" |
//! "add-rule" | "del-rule" | "reload", "rule": "..."}`. Replies:
//! `{"ok": true, "result": ...}` or `{"ok": false, "error": "..."}`.

use crate::config::Config;
use crate::datapath::Switch;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Longest request accepted, in bytes.
pub const MAX_REQUEST: usize = 64 * 1024;

/// A request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    pub cmd: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Arguments of route/neighbour commands.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
}

/// Binds the socket, refusing to steal one a live daemon listens on and
/// replacing a stale one.
///
/// # Errors
/// When another daemon answers there, or binding fails.
pub fn bind(path: &Path) -> Result<UnixListener> {
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            bail!("{}: another vswitchd is listening on this control socket", path.display());
        }
        std::fs::remove_file(path).with_context(|| format!("removing stale socket {}", path.display()))?;
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let listener = UnixListener::bind(path).with_context(|| format!("binding control socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("setting mode 0600 on {}", path.display()))?;
    listener.set_nonblocking(true).context("control socket")?;
    Ok(listener)
}

/// Serves requests until `stop` is set. `config_path` is what `reload` reads.
pub fn serve(listener: UnixListener, switch: Arc<Switch>, config_path: Option<PathBuf>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                if let Err(e) = handle(stream, &switch, config_path.as_deref()) {
                    tracing::warn!("control connection: {e:#}");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                tracing::warn!("control socket accept: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn handle(stream: UnixStream, switch: &Switch, config_path: Option<&Path>) -> Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?).take(MAX_REQUEST as u64 + 1);
    let mut line = String::new();
    let reply = match reader.read_line(&mut line) {
        Ok(_) if line.len() > MAX_REQUEST => {
            json!({"ok": false, "error": format!("request longer than {MAX_REQUEST} bytes")})
        }
        Ok(0) => return Ok(()),
        Ok(_) => match serde_json::from_str::<Request>(line.trim()) {
            Ok(req) => match execute(&req, switch, config_path) {
                Ok(result) => json!({"ok": true, "result": result}),
                Err(e) => json!({"ok": false, "error": format!("{e:#}")}),
            },
            Err(e) => json!({"ok": false, "error": format!("bad request (expected {{\"cmd\": ...}} JSON): {e}")}),
        },
        Err(e) => json!({"ok": false, "error": format!("reading request: {e}")}),
    };
    let mut stream = stream;
    let mut text = serde_json::to_string(&reply)?;
    text.push('\n');
    stream.write_all(text.as_bytes())?;
    Ok(())
}

fn execute(req: &Request, switch: &Switch, config_path: Option<&Path>) -> Result<Value> {
    let rule = || req.rule.as_deref().filter(|r| !r.trim().is_empty()).context("this command needs \"rule\"");
    Ok(match req.cmd.as_str() {
        "show" => serde_json::to_value(switch.stats())?,
        "dump-ports" => serde_json::to_value(switch.stats().ports)?,
        "dump-flows" => serde_json::to_value(switch.dump_flows()?)?,
        "dump-rules" => serde_json::to_value(switch.dump_rules())?,
        "add-rule" => {
            let (id, report) = switch.add_rule(rule()?)?;
            json!({"id": id, "flows_kept": report.kept, "flows_removed": report.removed})
        }
        "del-rule" => {
            let (deleted, report) = switch.del_rule(rule()?)?;
            json!({"deleted": deleted, "flows_kept": report.kept, "flows_removed": report.removed})
        }
        "dump-underlay" => switch.dump_underlay(),
        "route-add" => {
            match req.args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
                [prefix, port] => switch.add_route(prefix, None, port)?,
                [prefix, "via", gw, port] => switch.add_route(prefix, Some(gw), port)?,
                _ => bail!("route-add PREFIX [via GATEWAY] UPLINK"),
            }
            json!({"routes": switch.dump_underlay()["routes"]})
        }
        "route-del" => {
            let [prefix] = req.args.as_slice() else { bail!("route-del PREFIX") };
            switch.del_route(prefix)?;
            json!({"deleted": prefix})
        }
        "neigh-add" => {
            let [ip, mac, port] = req.args.as_slice() else { bail!("neigh-add IP MAC UPLINK") };
            switch.add_neighbour(ip, mac, port)?;
            json!({"added": ip})
        }
        "neigh-del" => {
            let [ip] = req.args.as_slice() else { bail!("neigh-del IP") };
            switch.del_neighbour(ip)?;
            json!({"deleted": ip})
        }
        "reload" => {
            let path = config_path
                .context("this vswitchd runs the embedded demo configuration; there is no file to reload")?;
            let config = Config::load(path)?;
            let old: Vec<_> = switch.config().ports.iter().map(|p| (&p.name, &p.devargs, p.role, p.mtu)).collect();
            let new: Vec<_> = config.ports.iter().map(|p| (&p.name, &p.devargs, p.role, p.mtu)).collect();
            if old != new {
                bail!("ports changed in {}: port changes need a restart; rules were not reloaded", path.display());
            }
            let report = switch.replace_rules(&config.rules)?;
            json!({"rules": config.rules.len(), "flows_kept": report.kept, "flows_removed": report.removed})
        }
        other => {
            bail!("unknown command {other:?} (show, dump-ports, dump-flows, dump-rules, add-rule, del-rule, reload)")
        }
    })
}

/// Client side: sends one request, returns the `result` or the error text.
///
/// # Errors
/// Connection problems, or the daemon's error.
pub fn call(socket: &Path, req: &Request) -> Result<Value> {
    let mut stream = UnixStream::connect(socket)
        .with_context(|| format!("connecting to {} (is vswitchd running? --socket sets the path)", socket.display()))?;
    stream.set_read_timeout(Some(Duration::from_secs(15)))?;
    let mut text = serde_json::to_string(req)?;
    text.push('\n');
    stream.write_all(text.as_bytes())?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).context("reading the reply")?;
    let reply: Value = serde_json::from_str(line.trim()).context("the daemon's reply is not JSON")?;
    if reply.get("ok").and_then(Value::as_bool) == Some(true) {
        Ok(reply.get("result").cloned().unwrap_or(Value::Null))
    } else {
        bail!("{}", reply.get("error").and_then(Value::as_str).unwrap_or("unknown error"))
    }
}
