//! Commands on the host and in network namespaces (root tests).

use std::process::{Command, Output};

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
