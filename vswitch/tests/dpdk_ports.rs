//! The DPDK layer on virtual devices: real EAL, real PMDs, exact mbuf counts.

mod common;

use common::pcap::{read as read_pcap, write as write_pcap};
use common::{eal, frame, pool, unique, TempDir};
use vswitch::dpdk::{Burst, DpdkError, EalBuilder, Port, PortConfig, MAX_BURST};

fn small_config() -> PortConfig {
    PortConfig { rx_descriptors: 256, tx_descriptors: 256, ..PortConfig::default() }
}

#[test]
fn net_ring_loopback_carries_distinct_payloads() {
    let pool = pool(1024);
    {
        let port = Port::open(eal(), &unique("net_ring")).expect("net_ring vdev");
        port.configure(&small_config(), &pool).expect("configure");
        port.start().expect("start");
        let mut rx = port.rx_queue(0).expect("rx queue");
        let mut tx = port.tx_queue(0).expect("tx queue");
        assert_eq!(port.info().expect("info").driver, "net_ring");

        let total = 200u32;
        let mut sent = Vec::new();
        let mut received = Vec::new();
        let mut burst = Burst::new();
        let mut next = 0u32;
        while received.len() < total as usize {
            while next < total && burst.spare() > 0 {
                let bytes = frame(next, 60 + (next as usize * 7) % 1400);
                let mut m = pool.alloc().expect("mbuf");
                assert!(m.set_data(&bytes));
                burst.push(m).expect("room");
                sent.push(bytes);
                next += 1;
            }
            let before = burst.len();
            let n = tx.tx_burst(&mut burst);
            assert_eq!(burst.len(), before - n, "unsent mbufs stay with the caller");
            let mut got = Burst::new();
            rx.rx_burst(&mut got);
            got.drain(|m| received.push(m.data().to_vec()));
            assert!(next <= total);
        }
        assert_eq!(received.len(), sent.len());
        for (i, (a, b)) in sent.iter().zip(&received).enumerate() {
            assert_eq!(a, b, "packet {i} differs");
        }
        let stats = port.stats().expect("stats");
        assert_eq!(stats.tx_packets, u64::from(total));
        assert_eq!(stats.rx_packets, u64::from(total));
    }
    assert_eq!(pool.available(), pool.capacity(), "every mbuf is back in the pool");
}

#[test]
fn net_pcap_forward_preserves_every_packet() {
    let dir = TempDir::new("pcapfwd");
    let input: Vec<Vec<u8>> = (0..300).map(|i| frame(i, 60 + (i as usize * 13) % 1440)).collect();
    let in_path = dir.path("in.pcap");
    let out_path = dir.path("out.pcap");
    write_pcap(&in_path, &input);
    let pool = pool(2048);
    {
        let rx_port =
            Port::open(eal(), &format!("{},rx_pcap={}", unique("net_pcap"), in_path.display())).expect("rx pcap");
        let tx_port =
            Port::open(eal(), &format!("{},tx_pcap={}", unique("net_pcap"), out_path.display())).expect("tx pcap");
        for p in [&rx_port, &tx_port] {
            p.configure(&small_config(), &pool).expect("configure");
            p.start().expect("start");
        }
        let mut rx = rx_port.rx_queue(0).expect("rxq");
        let mut tx = tx_port.tx_queue(0).expect("txq");
        let mut burst = Burst::new();
        let mut forwarded = 0usize;
        let mut idle = 0;
        while forwarded < input.len() && idle < 1000 {
            let n = rx.rx_burst(&mut burst);
            idle = if n == 0 { idle + 1 } else { 0 };
            while !burst.is_empty() {
                forwarded += tx.tx_burst(&mut burst);
            }
        }
        assert_eq!(forwarded, input.len());
        assert_eq!(rx_port.stats().expect("stats").rx_packets, input.len() as u64);
        // Dropping the ports closes them, which flushes the tx pcap.
    }
    let output = read_pcap(&out_path);
    assert_eq!(output.len(), input.len());
    for (i, (a, b)) in input.iter().zip(&output).enumerate() {
        assert_eq!(a, b, "packet {i} differs");
    }
    assert_eq!(pool.available(), pool.capacity(), "every mbuf is back in the pool");
}

#[test]
fn mempool_is_full_again_after_rx_tx_and_drop_paths() {
    let pool = pool(512);
    {
        let sink = Port::open(eal(), &format!("{},no-rx=1", unique("net_null"))).expect("net_null");
        sink.configure(&small_config(), &pool).expect("configure");
        sink.start().expect("start");
        let mut tx = sink.tx_queue(0).expect("txq");

        // Drop path: allocate and drop.
        let mut burst = Burst::new();
        assert!(pool.alloc_bulk(&mut burst, MAX_BURST));
        assert!(burst.spare() == 0 && !pool.alloc_bulk(&mut burst, 1), "a full burst refuses more");
        assert_eq!(pool.in_use(), MAX_BURST as u32);
        burst.clear();
        let single = pool.alloc().expect("one mbuf");
        drop(single);
        assert_eq!(pool.in_use(), 0);

        // Tx path: the sink frees what it takes.
        assert!(pool.alloc_bulk(&mut burst, 32));
        for m in burst.as_mut_slice() {
            assert!(m.set_data(&frame(1, 64)));
        }
        let sent = tx.tx_burst(&mut burst);
        assert_eq!(sent + burst.len(), 32);
        drop(burst);

        // Raw hand-off round trip.
        let m = pool.alloc().expect("mbuf");
        let raw = m.into_raw();
        // SAFETY: raw came from into_raw just above and is owned by nobody else.
        let back = unsafe { vswitch::dpdk::Mbuf::from_raw(raw) }.expect("non-null");
        drop(back);
    }
    assert_eq!(pool.available(), pool.capacity());
}

#[test]
fn burst_extend_with_fills_to_the_brim_and_hands_back_the_first_that_does_not_fit() {
    let pool = pool(128);
    {
        let mut burst = Burst::new();
        assert!(pool.alloc_bulk(&mut burst, 10));
        let mut more: Vec<_> = (0..60).map(|_| pool.alloc().expect("mbuf")).collect();
        let want: Vec<_> = more.iter().map(|m| m.as_ptr()).collect();
        more.reverse();
        let mut calls = 0;
        let over = burst.extend_with(|| {
            calls += 1;
            more.pop()
        });
        let over = over.expect("one left over");
        assert_eq!(burst.len(), MAX_BURST);
        assert_eq!(calls, MAX_BURST - 10 + 1, "not called after the one that did not fit");
        assert_eq!(over.as_ptr(), want[MAX_BURST - 10], "the next in order");
        let kept: Vec<_> = burst.as_slice()[10..].iter().map(|m| m.as_ptr()).collect();
        assert_eq!(kept, want[..MAX_BURST - 10], "appended in order");
        assert_eq!(more.len(), 60 - (MAX_BURST - 10) - 1);
        // With room: everything, nothing handed back.
        burst.clear();
        let mut rest = std::mem::take(&mut more);
        assert!(burst.extend_with(|| rest.pop()).is_none());
        assert_eq!(burst.len(), 60 - (MAX_BURST - 10) - 1);
        drop(over);
    }
    assert_eq!(pool.available(), pool.capacity(), "nothing leaked or freed twice");
}

#[test]
fn mbuf_prepend_adj_append_trim() {
    let pool = pool(8);
    let mut m = pool.alloc().expect("mbuf");
    assert!(m.set_data(&[1, 2, 3, 4]));
    let headroom = m.headroom();
    m.prepend(2).expect("headroom").copy_from_slice(&[9, 8]);
    assert_eq!(m.data(), &[9, 8, 1, 2, 3, 4]);
    assert_eq!(m.headroom(), headroom - 2);
    assert!(m.adj(3));
    assert_eq!(m.data(), &[2, 3, 4]);
    m.append(1).expect("tailroom")[0] = 7;
    assert_eq!(m.data(), &[2, 3, 4, 7]);
    assert!(m.trim(2));
    assert_eq!(m.data(), &[2, 3]);
    assert!(!m.adj(10), "adj beyond the data is refused");
    assert!(!m.trim(10), "trim beyond the data is refused");
    assert!(m.prepend(u16::MAX).is_none(), "prepend beyond the headroom is refused");
    assert!(m.append(u16::MAX).is_none(), "append beyond the tailroom is refused");
    assert_eq!(m.data(), &[2, 3], "failed edits leave the data alone");
    assert_eq!(m.pkt_len(), 2);
    assert_eq!(m.segments(), 1);
    // The whole headroom and not a byte more.
    let room = m.headroom() as u16;
    assert!(m.prepend(room + 1).is_none());
    assert_eq!(m.prepend(room).expect("the whole headroom").len(), usize::from(room));
    assert_eq!((m.headroom(), m.pkt_len(), m.data_len()), (0, 2 + usize::from(room), 2 + usize::from(room)));
    assert_eq!(&m.data()[usize::from(room)..], &[2, 3]);
}

#[test]
fn errors_carry_reasons_instead_of_panicking() {
    let eal = eal();
    match Port::open(eal, "net_no_such_driver0") {
        Err(DpdkError::Device { reason, .. }) => assert!(reason.contains("driver"), "{reason}"),
        other => panic!("unknown driver must be a device error, got {other:?}"),
    }
    match Port::open(eal, &format!("{},no_such_key=1", unique("net_null"))) {
        Err(DpdkError::Device { .. }) => {}
        other => panic!("bad devargs must be a device error, got {other:?}"),
    }
    match Port::open(eal, "") {
        Err(DpdkError::Device { reason, .. }) => assert!(reason.contains("empty")),
        other => panic!("empty devargs must be refused, got {other:?}"),
    }
    match Port::by_name(eal, "no-such-port") {
        Err(DpdkError::NoSuchPort(name)) => assert_eq!(name, "no-such-port"),
        other => panic!("unknown port must be NoSuchPort, got {other:?}"),
    }

    let pool = pool(512);
    let port = Port::open(eal, &unique("net_ring")).expect("net_ring");
    let cfg = PortConfig { mtu: Some(20), ..small_config() };
    match port.configure(&cfg, &pool) {
        Err(DpdkError::MtuOutOfRange { mtu: 20, min, .. }) => assert!(min > 20),
        other => panic!("MTU 20 must be out of range, got {other:?}"),
    }
    assert!(matches!(port.set_mtu(100_000), Err(DpdkError::MtuOutOfRange { mtu: 100_000, .. })));
    assert!(matches!(port.rx_queue(0), Err(DpdkError::PortState { .. })), "no queues before configure");
    assert!(matches!(port.start(), Err(DpdkError::PortState { .. })), "no start before configure");

    port.configure(&PortConfig { mtu: Some(1500), ..small_config() }, &pool).expect("configure");
    assert_eq!(port.mtu().expect("mtu"), 1500);
    match port.set_mtu(9000) {
        Err(DpdkError::Port { op: "rte_eth_dev_set_mtu", reason, .. }) => {
            assert!(reason.contains("not supported"), "net_ring has no MTU setter: {reason}")
        }
        other => panic!("net_ring cannot change MTU at run time, got {other:?}"),
    }
    assert_eq!(port.mtu().expect("mtu"), 1500, "a refused change leaves the MTU");
    let _rx = port.rx_queue(0).expect("first take");
    assert!(matches!(port.rx_queue(0), Err(DpdkError::PortState { .. })), "a queue is taken once");
    assert!(matches!(port.tx_queue(5), Err(DpdkError::PortState { .. })), "queue out of range");
    port.start().expect("start");
    assert!(matches!(port.configure(&small_config(), &pool), Err(DpdkError::PortState { .. })));
    port.stop().expect("stop");

    match EalBuilder::new("again").virtual_devices(64, "vswt-second").init() {
        Err(DpdkError::EalAlreadyInitialised) => {}
        other => panic!("a second EAL init must be refused, got {other:?}"),
    }
    match vswitch::dpdk::Mempool::new(eal, "this-name-is-far-too-long-for-dpdk", 64, 0, 2048) {
        Err(DpdkError::Mempool { reason, .. }) => assert!(reason.contains("longer")),
        other => panic!("a long pool name must be refused, got {other:?}"),
    }
}

#[test]
fn port_facts_link_mac_switch_xstats() {
    let pool = pool(512);
    let port = Port::open(eal(), &unique("net_ring")).expect("net_ring");
    port.configure(&small_config(), &pool).expect("configure");
    port.start().expect("start");
    let info = port.info().expect("info");
    assert!(!info.is_representor);
    assert!(info.switch.is_none(), "a vdev has no e-switch: {:?}", info.switch);
    assert!(port.link().expect("link").up, "net_ring reports link up once started");
    let mac = port.mac().expect("mac");
    assert_eq!(mac.len(), 6);
    let xstats = port.xstats().expect("xstats");
    assert!(xstats.iter().any(|(name, _)| name == "rx_good_packets"), "{xstats:?}");
    assert_eq!(port.by_name_roundtrip(), port.id());
}

trait Roundtrip {
    fn by_name_roundtrip(&self) -> u16;
}

impl Roundtrip for Port {
    fn by_name_roundtrip(&self) -> u16 {
        Port::by_name(eal(), self.name()).expect("by name").id()
    }
}

#[test]
fn eal_init_failure_reports_dpdk_reason() {
    // Runs in a child process: EAL can only be tried once per process.
    let exe = std::env::current_exe().expect("test exe");
    if std::env::var_os("VSWT_EAL_FAIL_CHILD").is_some() {
        let err = EalBuilder::new("child")
            .args(["--no-huge", "--no-pci", "--in-memory", "--file-prefix", "vswt-fail"])
            .echo_log(false)
            .init()
            .expect_err("--in-memory with --no-huge must fail");
        println!("CHILD-ERROR: {err}");
        return;
    }
    let out = std::process::Command::new(exe)
        .args(["--exact", "eal_init_failure_reports_dpdk_reason", "--nocapture", "--test-threads=1"])
        .env("VSWT_EAL_FAIL_CHILD", "1")
        .output()
        .expect("run child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "child failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("CHILD-ERROR: EAL initialisation failed"), "{stdout}");
    assert!(stdout.contains("DPDK said"), "the error carries EAL's own messages: {stdout}");
    let _ = std::fs::remove_dir_all("/var/run/dpdk/vswt-fail");
}

#[test]
fn every_virtual_pmd_we_use_is_found() {
    let dir = TempDir::new("pmds");
    let tap = unique("vswtap");
    let cases = [
        (format!("{},no-rx=1", unique("net_null")), "net_null"),
        (unique("net_ring"), "net_ring"),
        (format!("{},tx_pcap={}", unique("net_pcap"), dir.path("t.pcap").display()), "net_pcap"),
        (format!("{},iface={tap}", unique("net_tap")), "net_tap"),
        (format!("{},iface=lo", unique("net_af_packet")), "net_af_packet"),
    ];
    for (devargs, driver) in cases {
        let port = Port::open(eal(), &devargs)
            .unwrap_or_else(|e| panic!("{driver} must load (root needed for tap/af_packet): {e}"));
        assert_eq!(port.info().expect("info").driver, driver);
    }
    assert!(
        !std::path::Path::new(&format!("/sys/class/net/{tap}")).exists(),
        "closing the net_tap port removes its interface"
    );
}

/// The kernel drops of a net_af_packet port are found among the process's
/// sockets (what `rx_missed` shows for such a port): a port on lo with a
/// small ring that nobody polls drops what does not fit.
#[test]
fn net_af_packet_ring_drops_are_read_from_the_kernel() {
    let lo = vswitch::dpdk::os::ifindex("lo").expect("lo");
    let devargs = format!("{},iface=lo,blocksz=4096,framesz=2048,framecnt=16", unique("net_af_packet"));
    let port = Port::open(eal(), &devargs).expect("net_af_packet on lo (root needed)");
    let p = pool(2048);
    port.configure(&small_config(), &p).expect("configure");
    port.start().expect("start");
    let _ = vswitch::dpdk::os::packet_socket_drops(lo);
    let u = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    let to = u.local_addr().expect("addr");
    for _ in 0..1000 {
        let _ = u.send_to(&[0u8; 256], to);
    }
    let drops = vswitch::dpdk::os::packet_socket_drops(lo).expect("read");
    assert!(drops > 900, "a 16-frame ring nobody polls drops nearly all of 1000 packets: {drops}");
    port.stop().expect("stop");
}

/// Several queues on virtual devices: net_ring's queue i is its own ring
/// (what goes out on tx queue i comes back on rx queue i, nothing on the
/// others); net_pcap has one receive queue per rx_pcap file.
#[test]
fn virtual_devices_with_several_queues() {
    let pool = pool(1024);
    {
        let port = Port::open(eal(), &unique("net_ring")).expect("net_ring vdev");
        assert!(port.info().expect("info").max_rx_queues >= 2);
        port.configure(&PortConfig { rx_queues: 2, tx_queues: 2, ..small_config() }, &pool).expect("two queues");
        port.start().expect("start");
        let mut rx = [port.rx_queue(0).expect("rx 0"), port.rx_queue(1).expect("rx 1")];
        let mut tx = [port.tx_queue(0).expect("tx 0"), port.tx_queue(1).expect("tx 1")];
        for (q, count) in [(0usize, 3u32), (1, 5)] {
            let mut burst = Burst::new();
            for i in 0..count {
                let mut m = pool.alloc().expect("mbuf");
                assert!(m.set_data(&frame(i, 64)));
                burst.push(m).expect("room");
            }
            assert_eq!(tx[q].tx_burst(&mut burst), count as usize);
        }
        let mut got = [Burst::new(), Burst::new()];
        let n: Vec<usize> = rx.iter_mut().zip(got.iter_mut()).map(|(r, b)| r.rx_burst(b)).collect();
        assert_eq!(n, vec![3, 5], "each queue gets back what its own tx queue sent");
        for b in &mut got {
            b.clear();
        }
    }
    let dir = TempDir::new("pcapq");
    let paths: Vec<String> = (0..3)
        .map(|q| {
            let p = dir.path(&format!("q{q}.pcap"));
            common::pcap::write(&p, &[frame(q, 64)]);
            format!("rx_pcap={}", p.display())
        })
        .collect();
    let port = Port::open(eal(), &format!("{},{}", unique("net_pcap"), paths.join(","))).expect("pcap");
    assert_eq!(port.info().expect("info").max_rx_queues, 3, "one receive queue per file");
    drop(port);
    assert_eq!(pool.available(), pool.capacity(), "every mbuf is back in the pool");
}
