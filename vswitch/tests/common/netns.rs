//! Commands on the host and in network namespaces (root tests).

use std::process::{Child, Command, Output, Stdio};

pub fn run(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"))
}

/// Runs a command that must succeed (the test needs root, iproute2, ethtool).
pub fn must(cmd: &str, args: &[&str]) {
    let out = run(cmd, args);
    assert!(
        out.status.success(),
        "`{cmd} {}` failed (this test needs root, iproute2 and ethtool): {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn in_ns(ns: &str, cmd: &str, args: &[&str]) -> Output {
    let mut all = vec!["netns", "exec", ns, cmd];
    all.extend_from_slice(args);
    run("ip", &all)
}

pub fn must_ns(ns: &str, cmd: &str, args: &[&str]) {
    let out = in_ns(ns, cmd, args);
    assert!(
        out.status.success(),
        "in {ns}: `{cmd} {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `ping` inside a namespace: (success, its output).
pub fn ping(ns: &str, args: &[&str]) -> (bool, String) {
    let out = in_ns(ns, "ping", args);
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// The environment variables a helper reads: its role and argument.
pub const HELPER_ROLE: &str = "VSWT_HELPER_ROLE";
pub const HELPER_ARG: &str = "VSWT_HELPER_ARG";

/// Runs this test binary again inside namespace `ns`, as test `test` with
/// [`HELPER_ROLE`] and [`HELPER_ARG`] set: that test plays the role and
/// prints `RESULT ...` (see [`helper_result`]).
pub fn helper(ns: &str, test: &str, role: &str, arg: &str) -> Child {
    let exe = std::env::current_exe().expect("exe");
    Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(exe)
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(HELPER_ROLE, role)
        .env(HELPER_ARG, arg)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn helper")
}

/// Waits for a helper; its `RESULT` line (the test fails if it failed).
pub fn helper_result(child: Child) -> String {
    helper_output(child).0
}

/// Waits for a helper; its `RESULT` line and everything it printed.
pub fn helper_output(child: Child) -> (String, String) {
    let out = child.wait_with_output().expect("helper");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "helper failed: {text}\n{}", String::from_utf8_lossy(&out.stderr));
    let result = text
        .lines()
        .find_map(|l| l.split_once("RESULT ").map(|(_, r)| r.trim().to_owned()))
        .unwrap_or_else(|| panic!("no RESULT line: {text}"));
    (result, text)
}

/// A namespace with a veth pair: `va` for the switch, `vb` with an address
/// to send from. Removed on drop.
pub struct Veth {
    pub ns: String,
}

impl Veth {
    /// `tag` and the process id name the namespace.
    pub fn build(tag: &str) -> Self {
        let ns = format!("{tag}{}", std::process::id());
        must("ip", &["netns", "add", &ns]);
        let v = Self { ns };
        let ns = v.ns.as_str();
        must_ns(ns, "sysctl", &["-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
        must("ip", &["-n", ns, "link", "add", "va", "type", "veth", "peer", "name", "vb"]);
        for dev in ["va", "vb", "lo"] {
            must("ip", &["-n", ns, "link", "set", dev, "up"]);
        }
        must("ip", &["-n", ns, "addr", "add", "10.77.0.1/24", "dev", "vb"]);
        must(
            "ip",
            &["-n", ns, "neigh", "add", "10.77.0.2", "lladdr", "02:00:00:00:00:77", "dev", "vb", "nud", "permanent"],
        );
        v
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = run("ip", &["netns", "del", &self.ns]);
    }
}

/// Sets a socket's receive buffer above `net.core.rmem_max` (root).
pub fn force_receive_buffer(sock: &std::net::UdpSocket, bytes: libc::c_int) {
    use std::os::fd::AsRawFd;
    // SAFETY: the descriptor is the open socket `sock` owns; the option value
    // is a c_int that lives across the call, and its size is passed with it.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&bytes as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_RCVBUFFORCE: {}", std::io::Error::last_os_error());
}
