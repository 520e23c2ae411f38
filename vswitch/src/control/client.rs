//! The client side of the control socket (vswitchctl, tests, the harness).

use super::error::{io, ControlError};
use super::request::{Request, MAX_REQUEST};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// How long `vswitchctl` waits for a reply (a reload of many rules or a
/// port restart takes a while).
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

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
