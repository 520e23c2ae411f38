//! Test support shared by the integration tests: one EAL per test binary
//! (cargo-nextest runs one test per process; plain `cargo test` shares it
//! between threads), unique names, scratch directories, the daemon under
//! test ([`daemon`]), pcap files ([`pcap`]) and namespace commands ([`netns`]).

#![allow(dead_code)]

pub mod daemon;
pub mod frames;
pub mod netns;
pub mod pcap;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use vswitch::dpdk::{Eal, EalBuilder, Mempool};

static EAL: OnceLock<Eal> = OnceLock::new();
static NEXT: AtomicU32 = AtomicU32::new(0);

fn prefix() -> String {
    format!("vswt{}", std::process::id())
}

extern "C" fn remove_runtime_dir() {
    // EAL running as root leaves /var/run/dpdk/<prefix>; ours only.
    let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{}", prefix()));
}

/// A TCP port on 127.0.0.1 free at the time of asking.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// The Prometheus page served on 127.0.0.1:`port`.
pub fn metrics_page(port: u16) -> String {
    use std::io::{Read, Write};
    let mut http = std::net::TcpStream::connect(("127.0.0.1", port)).expect("metrics listener");
    http.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").expect("request");
    let mut body = String::new();
    http.read_to_string(&mut body).expect("metrics body");
    body
}

/// The process's EAL, initialised on first use with virtual devices only.
/// Panics (failing the test, never skipping it) when DPDK cannot start.
pub fn eal() -> &'static Eal {
    EAL.get_or_init(|| {
        let eal = EalBuilder::new("vswitch-test")
            .virtual_devices(512, &prefix())
            .args(["--no-telemetry", "--log-level", "lib.eal:warning"])
            .echo_log(false)
            .init()
            .unwrap_or_else(|e| panic!("DPDK EAL must start for this test (is libdpdk installed, are we root?): {e}"));
        // SAFETY: registering a plain extern "C" fn with atexit.
        unsafe { libc::atexit(remove_runtime_dir) };
        eal
    })
}

/// A name unique within the process, e.g. `unique("net_ring")` -> `net_ring7`.
pub fn unique(base: &str) -> String {
    format!("{base}{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A pool without per-lcore cache, so `available()` is exact.
pub fn pool(count: u32) -> Arc<Mempool> {
    Arc::new(Mempool::new(eal(), &unique("tpool"), count, 0, 2048 + 128).expect("mempool"))
}

/// A scratch directory removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("vswt-{tag}-{}-{}", std::process::id(), unique("")));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        Self(dir)
    }

    pub fn path(&self, name: &str) -> std::path::PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A 64..=1500-byte Ethernet/IPv4/UDP-looking frame whose payload encodes `i`.
pub fn frame(i: u32, len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len.max(60)];
    f[0..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x02]);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    for (k, b) in f[14..].iter_mut().enumerate() {
        *b = (i as usize).wrapping_mul(31).wrapping_add(k) as u8;
    }
    f[14..18].copy_from_slice(&i.to_be_bytes());
    f
}
