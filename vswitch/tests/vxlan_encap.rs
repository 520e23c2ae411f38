//! VXLAN encap/decap on byte buffers: round trips, independent decoders
//! (etherparse, and tshark on a pcap the test writes), checksums against
//! from-scratch computations.

use etherparse::{InternetSlice, SlicedPacket, TransportSlice};
use offload::entropy::{vxlan_src_port, InnerFlow};
use pcap_file::pcap::{PcapPacket, PcapWriter};
use proptest::prelude::*;
use std::net::IpAddr;
use std::process::Command;
use std::time::Duration;
use vswitch::actions::vxlan::{decap, EncapSpec, EncapTemplate, OVERHEAD_IPV4, OVERHEAD_IPV6};
use vswitch::actions::{PacketBuf, VecPacket};
use vswitch::packet::checksum;

fn spec(v6: bool, vni: u32) -> EncapSpec {
    let (src, dst): (IpAddr, IpAddr) = if v6 {
        ("2001:db8::1".parse().expect("v6"), "2001:db8::2".parse().expect("v6"))
    } else {
        ("198.18.0.1".parse().expect("v4"), "198.18.0.2".parse().expect("v4"))
    };
    EncapSpec {
        eth_src: [2, 0, 0, 0, 1, 1],
        eth_dst: [2, 0, 0, 0, 1, 2],
        ip_src: src,
        ip_dst: dst,
        vni,
        udp_dst: 4789,
        ttl: 64,
        tos: 0,
        df: true,
    }
}

fn inner_frame(seed: u8, len: usize) -> Vec<u8> {
    let mut f: Vec<u8> = (0..len).map(|i| seed.wrapping_add(i as u8).wrapping_mul(7)).collect();
    f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f
}

proptest! {
    #[test]
    fn decap_of_encap_is_identity(v6 in any::<bool>(), vni in 0u32..(1 << 24), len in 14usize..1600, seed in any::<u8>()) {
        let inner = inner_frame(seed, len);
        let t = EncapTemplate::new(spec(v6, vni)).expect("template");
        let mut p = VecPacket::new(&inner, 128);
        let want = vxlan_src_port(&InnerFlow::from_frame(&inner));
        t.encap(&mut p, want).expect("encap");
        prop_assert_eq!(p.data().len(), len + if v6 { OVERHEAD_IPV6 } else { OVERHEAD_IPV4 });
        let sport = u16::from_be_bytes([p.data()[t.overhead() - 16], p.data()[t.overhead() - 15]]);
        prop_assert_eq!(sport, want);
        prop_assert!(sport >= 49152, "source port {} in the dynamic range", sport);
        let meta = decap(&mut p, 4789).expect("decap");
        prop_assert_eq!(meta.vni, vni);
        prop_assert_eq!(meta.ipv6, v6);
        prop_assert_eq!(p.data(), &inner[..]);
    }
}

#[test]
fn etherparse_decodes_encapsulated_frames_and_checksums_match() {
    for v6 in [false, true] {
        for (i, len) in [14usize, 60, 64, 1000, 1514].into_iter().enumerate() {
            let inner = inner_frame(i as u8, len);
            let t = EncapTemplate::new(spec(v6, 100 + i as u32)).expect("template");
            let mut p = VecPacket::new(&inner, 128);
            t.encap(&mut p, 0xc000 + i as u16).expect("encap");
            let d = p.data().to_vec();
            let sliced = SlicedPacket::from_ethernet(&d).expect("etherparse decodes the outer frame");
            let Some(TransportSlice::Udp(udp)) = &sliced.transport else { panic!("outer UDP expected") };
            assert_eq!(udp.destination_port(), 4789);
            assert_eq!(usize::from(udp.length()), 16 + len);
            let payload = udp.payload();
            assert_eq!(payload[0], 0x08, "VXLAN I flag");
            assert_eq!(u32::from_be_bytes([0, payload[4], payload[5], payload[6]]), 100 + i as u32);
            assert_eq!(&payload[8..], &inner[..]);
            match &sliced.net {
                Some(InternetSlice::Ipv4(ip)) => {
                    assert!(!v6);
                    let h = ip.header().to_header();
                    assert_eq!(h.header_checksum, h.calc_header_checksum(), "IPv4 header checksum from scratch");
                    assert_eq!(usize::from(h.total_len), 36 + len);
                    assert!(h.dont_fragment);
                    assert_eq!(udp.checksum(), 0, "outer UDP checksum is 0 over IPv4");
                }
                Some(InternetSlice::Ipv6(ip)) => {
                    assert!(v6);
                    let h = ip.header().to_header();
                    let expect = udp.to_header().calc_checksum_ipv6(&h, udp.payload()).expect("checksum");
                    assert_eq!(udp.checksum(), expect, "IPv6 UDP checksum from scratch");
                    assert_eq!(usize::from(h.payload_length), 16 + len);
                }
                other => panic!("unexpected outer network layer {other:?}"),
            }
        }
    }
}

#[test]
fn incremental_ipv4_checksum_equals_full_recomputation() {
    let t = EncapTemplate::new(spec(false, 7)).expect("template");
    for len in [14usize, 15, 100, 1500, 9000, 65000] {
        let mut p = VecPacket::new(&vec![0u8; len], 128);
        t.encap(&mut p, 0xc000 | len as u16).expect("encap");
        let hdr = &p.data()[14..34];
        let stored = u16::from_be_bytes([hdr[10], hdr[11]]);
        assert_eq!(stored, checksum::ipv4_header(hdr), "len {len}");
    }
    let mut too_long = VecPacket::new(&vec![0u8; 65500], 128);
    assert!(t.encap(&mut too_long, 0).is_err(), "an outer packet over 64 KiB is refused");
}

#[test]
fn decap_rejects_bad_outer_packets() {
    let t = EncapTemplate::new(spec(false, 9)).expect("template");
    let inner = inner_frame(1, 60);
    let mut p = VecPacket::new(&inner, 128);
    t.encap(&mut p, 1).expect("encap");
    let good = p.data().to_vec();

    let mut bad_ip = good.clone();
    bad_ip[22] ^= 1; // TTL changes, checksum no longer holds
    assert!(decap(&mut VecPacket::new(&bad_ip, 0), 4789).is_err());
    let mut bad_flags = good.clone();
    bad_flags[42] = 0;
    assert!(decap(&mut VecPacket::new(&bad_flags, 0), 4789).is_err());
    assert!(decap(&mut VecPacket::new(&good, 0), 4790).is_err(), "other UDP port: not VXLAN");
    assert!(decap(&mut VecPacket::new(&good[..60], 0), 4789).is_err(), "truncated");
    let mut untouched = VecPacket::new(&bad_ip, 0);
    let _ = decap(&mut untouched, 4789);
    assert_eq!(untouched.data(), &bad_ip[..], "a refused packet is unchanged");

    // Ethernet padding after a short outer packet is not part of the inner frame.
    let mut padded = VecPacket::new(&inner[..14], 128);
    t.encap(&mut padded, 1).expect("encap");
    let mut bytes = padded.data().to_vec();
    bytes.resize(bytes.len() + 6, 0);
    let mut q = VecPacket::new(&bytes, 0);
    decap(&mut q, 4789).expect("decap padded");
    assert_eq!(q.data(), &inner[..14]);
}

#[test]
fn tshark_decodes_vxlan_with_right_vni_addresses_and_checksums() {
    let tshark = Command::new("tshark").arg("--version").output();
    assert!(
        tshark.as_ref().is_ok_and(|o| o.status.success()),
        "tshark is required for this test (apt-get install tshark): {tshark:?}"
    );
    let dir = std::env::temp_dir().join(format!("vswt-vxlan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let path = dir.join("encap.pcap");
    let cases = [(false, 100u32), (false, 0xabcdef), (true, 200), (true, 1)];
    {
        let mut w = PcapWriter::new(std::fs::File::create(&path).expect("pcap")).expect("writer");
        for (i, (v6, vni)) in cases.iter().enumerate() {
            let t = EncapTemplate::new(spec(*v6, *vni)).expect("template");
            let mut p = VecPacket::new(&inner_frame(i as u8, 98), 128);
            t.encap(&mut p, 0xc000 + i as u16 * 79).expect("encap");
            let d = p.data();
            w.write_packet(&PcapPacket::new(Duration::from_millis(i as u64), d.len() as u32, d)).expect("write");
        }
    }
    let out = Command::new("tshark")
        .args([
            "-r",
            path.to_str().expect("utf8 path"),
            "-o",
            "ip.check_checksum:TRUE",
            "-o",
            "udp.check_checksum:TRUE",
        ])
        .args(["-T", "fields", "-E", "separator=|"])
        .args(["-e", "vxlan.vni", "-e", "ip.src", "-e", "ipv6.src", "-e", "ip.dst", "-e", "ipv6.dst"])
        .args(["-e", "ip.checksum.status", "-e", "udp.checksum.status", "-e", "udp.dstport"])
        .output()
        .expect("run tshark");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success(), "tshark failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), cases.len(), "{text}");
    for (line, (v6, vni)) in lines.iter().zip(cases) {
        let f: Vec<&str> = line.split('|').collect();
        assert_eq!(f[0], vni.to_string(), "VNI in {line}");
        if v6 {
            assert_eq!((f[2], f[4]), ("2001:db8::1", "2001:db8::2"), "{line}");
            assert_eq!(f[6].split(',').next(), Some("1"), "UDP checksum verified good: {line}");
        } else {
            assert_eq!(
                (f[1].split(',').next(), f[3].split(',').next()),
                (Some("198.18.0.1"), Some("198.18.0.2")),
                "{line}"
            );
            assert_eq!(f[5].split(',').next(), Some("1"), "IPv4 checksum verified good: {line}");
        }
        assert!(f[7].starts_with("4789"), "{line}");
    }
}
