//! The service manager's notification protocol (systemd's `sd_notify`, as
//! `Type=notify` units use it): datagrams of `KEY=VALUE` lines to the unix
//! socket named by `$NOTIFY_SOCKET` (a path, or `@name` in the abstract
//! namespace). Without the variable every call does nothing, so the daemon
//! runs the same by hand. Written here rather than linked from libsystemd:
//! a dozen lines, no C dependency, and a test can play the manager.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// Where notifications go: `$NOTIFY_SOCKET` when set, else nowhere.
pub struct Notifier {
    target: Option<(UnixDatagram, String)>,
    /// `$WATCHDOG_USEC` for this process: how often the manager wants to
    /// hear from us.
    watchdog: Option<Duration>,
}

impl Notifier {
    /// From the environment (`NOTIFY_SOCKET`, `WATCHDOG_USEC`,
    /// `WATCHDOG_PID`). A socket that cannot be opened is logged and left
    /// out: the daemon must not fail because its manager is odd.
    pub fn from_env() -> Self {
        let target =
            std::env::var("NOTIFY_SOCKET").ok().filter(|s| !s.is_empty()).and_then(
                |path| match UnixDatagram::unbound() {
                    Ok(sock) => Some((sock, path)),
                    Err(e) => {
                        tracing::warn!("NOTIFY_SOCKET is set but no socket can be made: {e}");
                        None
                    }
                },
            );
        let for_us = std::env::var("WATCHDOG_PID")
            .ok()
            .and_then(|p| p.parse::<u32>().ok())
            .is_none_or(|pid| pid == std::process::id());
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|u| u.parse::<u64>().ok())
            .filter(|&u| u > 0 && for_us)
            .map(Duration::from_micros);
        Self { target, watchdog }
    }

    /// Whether a manager listens.
    pub fn active(&self) -> bool {
        self.target.is_some()
    }

    /// The watchdog period the manager asked for, if any.
    pub fn watchdog(&self) -> Option<Duration> {
        self.watchdog.filter(|_| self.target.is_some())
    }

    /// Sends `state` (lines of `KEY=VALUE`); failures are logged once per
    /// call, never fatal.
    pub fn send(&self, state: &str) {
        let Some((sock, path)) = &self.target else { return };
        let sent = match path.strip_prefix('@') {
            Some(name) => abstract_addr(name).and_then(|addr| sock.send_to_addr(state.as_bytes(), &addr)),
            None => sock.send_to(state.as_bytes(), path),
        };
        if let Err(e) = sent {
            tracing::warn!(socket = %path, "notifying the service manager ({}): {e}", state.lines().next().unwrap_or(""));
        }
    }
}

fn abstract_addr(name: &str) -> std::io::Result<std::os::unix::net::SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifies_a_path_socket_and_stays_quiet_without_one() {
        let dir = std::env::temp_dir().join(format!("notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("notify.sock");
        let manager = UnixDatagram::bind(&path).expect("bind");
        let n = Notifier {
            target: Some((UnixDatagram::unbound().expect("sock"), path.display().to_string())),
            watchdog: Some(Duration::from_secs(2)),
        };
        n.send("READY=1\nSTATUS=forwarding");
        let mut buf = [0u8; 256];
        let len = manager.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=forwarding");
        assert_eq!(n.watchdog(), Some(Duration::from_secs(2)));
        let quiet = Notifier { target: None, watchdog: Some(Duration::from_secs(2)) };
        quiet.send("READY=1");
        assert!(!quiet.active() && quiet.watchdog().is_none(), "no manager, no watchdog");
        // The abstract namespace.
        let name = format!("vswitch-notify-test-{}", std::process::id());
        let manager = UnixDatagram::bind_addr(&abstract_addr(&name).expect("addr")).expect("bind abstract");
        let n = Notifier { target: Some((UnixDatagram::unbound().expect("sock"), format!("@{name}"))), watchdog: None };
        n.send("STOPPING=1");
        let len = manager.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..len], b"STOPPING=1");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
