//! The testpmd text of every rule shape, fed to the real `dpdk-testpmd` (on
//! net_null ports, no hugepages): every line must parse, and every `flow
//! create` must reach the driver (net_null has no flow API, so it answers
//! "Function not implemented"). A syntax error prints "Bad arguments".
//!
//! Needs DPDK's testpmd (Debian package `dpdk`) and root; in CI it runs and
//! fails, never skips, when it cannot.

use offload::probe::{sample_rule, ProbePorts, Shape};
use offload::testpmd::commands;
use std::io::Write;
use std::process::{Command, Stdio};

fn testpmd() -> String {
    for c in ["dpdk-testpmd", "/usr/bin/dpdk-testpmd"] {
        if Command::new(c).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok() {
            return c.to_owned();
        }
    }
    panic!("dpdk-testpmd is needed for this test (apt-get install dpdk)");
}

#[test]
fn every_shape_parses_in_dpdk_testpmd() {
    let ports = ProbePorts { vf: 1, uplink: 0 };
    let mut script = String::new();
    let mut flows = 0;
    for s in Shape::ALL {
        let (rule, group) = sample_rule(s, ports, 1);
        for line in commands(&rule, 0, group) {
            if line.starts_with("flow create") {
                flows += 1;
            }
            script.push_str(&line);
            script.push('\n');
        }
    }
    script.push_str("quit\n");
    let prefix = format!("offl-tp-{}", std::process::id());
    let mut child = Command::new(testpmd())
        .args(["--no-huge", "-m", "1024", "--no-pci", "--file-prefix", &prefix, "--log-level=lib.eal:warning"])
        .args(["--vdev", "net_null0", "--vdev", "net_null1", "--", "-i", "--total-num-mbufs=4096"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start dpdk-testpmd");
    child.stdin.take().expect("stdin").write_all(script.as_bytes()).expect("write commands");
    let out = child.wait_with_output().expect("testpmd output");
    let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{prefix}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "testpmd failed:\n{text}");
    assert!(!text.contains("Bad arguments"), "a command did not parse:\n{text}");
    let reached = text.matches("Function not implemented: Function not implemented").count();
    assert_eq!(reached, flows, "every flow create reached the driver:\n{text}");
}
