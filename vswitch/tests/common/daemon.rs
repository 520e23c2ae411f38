//! The real `vswitchd` binary under test: started from a config text in a
//! scratch directory, talked to with the real `vswitchctl`, stopped with
//! SIGTERM (and killed by PID if a test fails midway).

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const VSWITCHD: &str = env!("CARGO_BIN_EXE_vswitchd");
pub const VSWITCHCTL: &str = env!("CARGO_BIN_EXE_vswitchctl");

/// A running daemon.
pub struct Daemon {
    child: Option<Child>,
    pub socket: PathBuf,
    pub log: PathBuf,
    pub config: PathBuf,
}

impl Daemon {
    /// Writes `config` to `dir/vswitchd.toml`, starts the daemon on it with
    /// its socket in `dir`, and waits until it answers `show`.
    pub fn start(dir: &Path, config: &str) -> Self {
        Self::start_with(dir, config, &[])
    }

    /// As [`Daemon::start`], with extra command-line arguments.
    pub fn start_with(dir: &Path, config: &str, extra: &[&str]) -> Self {
        Self::start_in(None, dir, config, extra)
    }

    /// As [`Daemon::start_with`], inside network namespace `netns` when
    /// given (`ip netns exec` execs the daemon: the PID is the daemon's).
    pub fn start_in(netns: Option<&str>, dir: &Path, config: &str, extra: &[&str]) -> Self {
        let cfg = dir.join("vswitchd.toml");
        std::fs::write(&cfg, config).expect("write config");
        let socket = dir.join("ctl.sock");
        let log = dir.join("vswitchd.log");
        let mut command = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, VSWITCHD]);
                c
            }
            None => Command::new(VSWITCHD),
        };
        let child = command
            .arg(&cfg)
            .arg("--no-stats")
            .arg("--socket")
            .arg(&socket)
            .args(extra)
            .stdout(Stdio::from(std::fs::File::create(dir.join("stdout.log")).expect("log")))
            .stderr(Stdio::from(std::fs::File::create(&log).expect("log")))
            .spawn()
            .expect("spawn vswitchd");
        let d = Self { child: Some(child), socket, log, config: cfg };
        let deadline = Instant::now() + Duration::from_secs(30);
        while d.ctl_json(&["show"]).is_err() {
            if d.exited() {
                panic!("vswitchd exited before answering:\n{}", d.log_text());
            }
            assert!(Instant::now() < deadline, "vswitchd did not come up:\n{}", d.log_text());
            std::thread::sleep(Duration::from_millis(100));
        }
        d
    }

    /// Whether the process has ended (a zombie: `try_wait` needs &mut).
    fn exited(&self) -> bool {
        let Some(pid) = self.child.as_ref().map(Child::id) else { return true };
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map_or(true, |stat| stat.split_whitespace().nth(2) == Some("Z"))
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// vswitchctl with these arguments (text output).
    pub fn ctl(&self, args: &[&str]) -> Output {
        Command::new(VSWITCHCTL).arg("--socket").arg(&self.socket).args(args).output().expect("run vswitchctl")
    }

    /// vswitchctl --json with these arguments.
    pub fn ctl_json(&self, args: &[&str]) -> Result<Value, String> {
        let out = Command::new(VSWITCHCTL)
            .arg("--socket")
            .arg(&self.socket)
            .arg("--json")
            .args(args)
            .output()
            .expect("run vswitchctl");
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
    }

    /// `show`, or the test fails with the daemon's log.
    pub fn show(&self) -> Value {
        self.ctl_json(&["show"]).unwrap_or_else(|e| panic!("show failed: {e}\n{}", self.log_text()))
    }

    /// A drop counter from `show`.
    pub fn drops(&self, reason: &str) -> u64 {
        self.show()["drops"][reason].as_u64().unwrap_or(0)
    }

    /// SIGTERM, then the exit status must be 0; returns the log.
    pub fn stop(self) -> String {
        self.stop_with("TERM").0
    }

    /// Sends `signal` (a name for kill, e.g. "TERM", "HUP"); the exit status
    /// must be 0. Returns the log and how long the exit took.
    pub fn stop_with(mut self, signal: &str) -> (String, Duration) {
        let mut child = self.child.take().expect("child");
        let pid = child.id().to_string();
        let sent = Instant::now();
        let ok = Command::new("kill").args([&format!("-{signal}"), &pid]).status().expect("kill");
        assert!(ok.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                assert!(status.success(), "vswitchd exit status {status} on SIG{signal}:\n{}", self.log_text());
                break;
            }
            assert!(Instant::now() < deadline, "vswitchd did not stop on SIG{signal}:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(20));
        }
        let log = self.log_text();
        // Every packet received, copied or made went out, was dropped under
        // a reason or was consumed: the exit summary's balance is even.
        if let Some(line) = log.lines().find(|l| l.trim_start().starts_with("balance:")) {
            assert!(line.ends_with("(unaccounted 0)"), "packets unaccounted for at exit: {line}\n{log}");
        }
        (log, sent.elapsed())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A port's entry in `show`.
pub fn port<'a>(s: &'a Value, name: &str) -> &'a Value {
    s["ports"].as_array().expect("ports").iter().find(|p| p["name"] == name).unwrap_or_else(|| panic!("no port {name}"))
}

/// Polls `check` every 50 ms until it returns `Some`, or fails after
/// `timeout` with `what` (conditions, not fixed sleeps).
pub fn wait_for<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
