//! The control socket's server. Connections are served concurrently (one
//! thread each, at most [`MAX_CONNECTIONS`]; more are told the daemon is
//! busy), a request must arrive whole within [`REQUEST_DEADLINE`] and its
//! reply be taken within [`REPLY_DEADLINE`], and a stop never waits on a
//! client: every wait is sliced and checks the stop flag.

use super::error::{io, ControlError};
use super::execute::{execute, respond};
use super::request::MAX_REQUEST;
use crate::accept::Acceptor;
use crate::dpdk::os;
use crate::switch::Switch;
use serde_json::json;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 32;
/// A request line must arrive whole within this.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(5);
/// The client must take the whole reply within this.
pub const REPLY_DEADLINE: Duration = Duration::from_secs(10);
/// Granularity of every wait (the stop flag is checked this often).
const SLICE: Duration = Duration::from_millis(100);

/// Binds the socket with mode 0600 from the start (no window with a wider
/// one). A stale socket at `path` is replaced; a live one (another daemon
/// answers) or anything that is not a socket is refused, never removed.
///
/// # Errors
/// When `path` is taken, or binding fails.
pub fn bind(path: &Path) -> Result<UnixListener, ControlError> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(ControlError::Usage(format!(
                "{}: exists and is not a socket; refusing to replace it (choose another path with --socket \
                 or [control] socket)",
                path.display()
            )));
        }
        if UnixStream::connect(path).is_ok() {
            return Err(ControlError::Usage(format!(
                "{}: another vswitchd is listening on this control socket",
                path.display()
            )));
        }
        std::fs::remove_file(path).map_err(io(format!("removing stale socket {}", path.display())))?;
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    }
    let listener = os::with_umask(0o177, || UnixListener::bind(path))
        .map_err(io(format!("binding control socket {}", path.display())))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(io(format!("setting mode 0600 on {}", path.display())))?;
    listener.set_nonblocking(true).map_err(io("control socket"))?;
    Ok(listener)
}

/// Serves requests until `stop` is set, then waits for the connections in
/// progress (each notices the stop within a tenth of a second).
/// `config_path` is what `reload` reads.
pub fn serve(listener: UnixListener, switch: Arc<Switch>, config_path: Option<PathBuf>, stop: Arc<AtomicBool>) {
    let mut acceptor = Acceptor::new("control socket", "control-conn", MAX_CONNECTIONS, SLICE);
    while !stop.load(Ordering::Relaxed) {
        acceptor.turn(
            &listener,
            |l| l.accept().map(|(s, _)| s),
            refuse,
            || {
                let conn = Connection {
                    switch: Arc::clone(&switch),
                    config_path: config_path.clone(),
                    stop: Arc::clone(&stop),
                };
                move |stream| conn.run(stream)
            },
        );
    }
    acceptor.finish();
}

/// Tells a connection over the limit that the daemon is busy (without
/// waiting on it).
fn refuse(stream: UnixStream) {
    let _ = stream.set_nonblocking(true);
    let reply =
        json!({"ok": false, "error": format!("the daemon is serving {MAX_CONNECTIONS} connections; try again")});
    let _ = (&stream).write_all(format!("{reply}\n").as_bytes());
}

struct Connection {
    switch: Arc<Switch>,
    config_path: Option<PathBuf>,
    stop: Arc<AtomicBool>,
}

impl Connection {
    fn run(self, stream: UnixStream) {
        if let Err(e) = self.serve(stream) {
            tracing::debug!("control connection: {e}");
        }
    }

    fn serve(&self, mut stream: UnixStream) -> Result<(), ControlError> {
        stream.set_nonblocking(false).map_err(io("control connection"))?;
        stream.set_read_timeout(Some(SLICE)).map_err(io("control connection"))?;
        stream.set_write_timeout(Some(SLICE)).map_err(io("control connection"))?;
        let text = match self.read_request(&mut stream)? {
            None => return Ok(()),
            Some(Ok(bytes)) => respond(&bytes, |req| execute(req, &self.switch, self.config_path.as_deref())),
            Some(Err(why)) => format!("{}\n", json!({"ok": false, "error": why})),
        };
        self.write_reply(&mut stream, text.as_bytes())
    }

    /// The request line; `None` when the client went away or the daemon is
    /// stopping; `Some(Err)` with what to tell the client.
    fn read_request(&self, stream: &mut UnixStream) -> Result<Option<Result<Vec<u8>, String>>, ControlError> {
        let deadline = Instant::now() + REQUEST_DEADLINE;
        let mut buf: Vec<u8> = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return Ok(None);
            }
            if Instant::now() >= deadline {
                return Ok(Some(Err(format!(
                    "the request did not arrive whole within {} s",
                    REQUEST_DEADLINE.as_secs()
                ))));
            }
            match stream.read(&mut chunk) {
                Ok(0) if buf.is_empty() => return Ok(None),
                Ok(0) => break,
                Ok(n) => {
                    let start = buf.len();
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf[start..].iter().position(|&b| b == b'\n') {
                        buf.truncate(start + i);
                        break;
                    }
                    if buf.len() > MAX_REQUEST {
                        return Ok(Some(Err(format!("request longer than {MAX_REQUEST} bytes"))));
                    }
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
                Err(e) => return Err(io("reading the request")(e)),
            }
        }
        // (Size and text are checked by `respond`.)
        Ok(Some(Ok(buf)))
    }

    /// Writes the reply in slices until it is taken, the deadline passes or
    /// the daemon stops.
    fn write_reply(&self, stream: &mut UnixStream, mut data: &[u8]) -> Result<(), ControlError> {
        let deadline = Instant::now() + REPLY_DEADLINE;
        while !data.is_empty() {
            if self.stop.load(Ordering::Relaxed) || Instant::now() >= deadline {
                return Err(ControlError::Usage("the client did not take its reply in time".into()));
            }
            match stream.write(data) {
                Ok(0) => return Err(ControlError::Usage("the client closed the connection".into())),
                Ok(n) => data = &data[n..],
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
                Err(e) => return Err(io("writing the reply")(e)),
            }
        }
        Ok(())
    }
}
