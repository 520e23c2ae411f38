//! Micro-benchmarks of the per-packet flow core (criterion). Benchmarks, not
//! tests: run with `cargo bench -p vswitch --bench flow_core`.

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion};
use std::net::{IpAddr, Ipv4Addr};
use vswitch::actions::vxlan::{EncapSpec, EncapTemplate};
use vswitch::actions::{Action, PacketBuf, VecPacket};
use vswitch::flow::hash::hash_key;
use vswitch::flow::table::Match;
use vswitch::flow::{Dpcls, Emc, RuleTable};
use vswitch::packet::key::{ip_to, prefix_mask};
use vswitch::packet::{parse, Field, FlowKey, FlowMask};

fn udp64(i: u32) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f[14] = 0x45;
    f[16..18].copy_from_slice(&46u16.to_be_bytes());
    f[22] = 64;
    f[23] = 17;
    f[26..30].copy_from_slice(&(0x0a00_0000 + i).to_be_bytes());
    f[30..34].copy_from_slice(&[10, 255, 255, 1]);
    f[34..36].copy_from_slice(&(1024 + (i % 60000) as u16).to_be_bytes());
    f[36..38].copy_from_slice(&5001u16.to_be_bytes());
    f[38..40].copy_from_slice(&26u16.to_be_bytes());
    f
}

fn bench_parse(c: &mut Criterion) {
    let f = udp64(7);
    c.bench_function("parse_udp_64B", |b| b.iter(|| parse(black_box(&f), 1, None)));
    c.bench_function("parse_hash_emc_hit_64B", |b| {
        let mut emc = Emc::<u32>::new(8192);
        let k = parse(&f, 1, None).key;
        emc.insert(&k, hash_key(&k), 1);
        b.iter(|| {
            let p = parse(black_box(&f), 1, None);
            let h = hash_key(&p.key);
            emc.lookup(&p.key, h)
        })
    });
}

fn bench_emc(c: &mut Criterion) {
    let mut emc = Emc::<u32>::new(8192);
    let keys: Vec<FlowKey> = (0..1000).map(|i| parse(&udp64(i), 1, None).key).collect();
    let hashes: Vec<u64> = keys.iter().map(hash_key).collect();
    for (i, (k, h)) in keys.iter().zip(&hashes).enumerate() {
        emc.insert(k, *h, i as u32);
    }
    let mut i = 0usize;
    c.bench_function("emc_hit_1k_flows", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            emc.lookup(black_box(&keys[i]), hashes[i])
        })
    });
    c.bench_function("hash_key", |b| b.iter(|| hash_key(black_box(&keys[3]))));
}

/// `n` subtables with distinct masks; the probed key matches only the last
/// one in rank order, so a lookup probes all `n`.
fn dpcls_with(n: usize) -> (Dpcls<u32>, FlowKey) {
    let mut cls = Dpcls::new();
    let base = parse(&udp64(1), 1, None).key;
    for s in 0..n {
        let mut mask = FlowMask::default();
        mask.exact(Field::InPort);
        mask.set(Field::NwSrc, prefix_mask(true, 8 + s as u8));
        let mut k = base;
        k.set(Field::InPort, if s + 1 == n { 1 } else { 100 + s as u128 });
        for f in 0..64u32 {
            k.set(Field::NwSrc, ip_to(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + (f << 20)))));
            cls.insert(&k, &mask, s as u32);
        }
    }
    (cls, base)
}

fn bench_dpcls(c: &mut Criterion) {
    for n in [1usize, 10, 20] {
        let (mut cls, key) = dpcls_with(n);
        assert_eq!(cls.subtable_count(), n);
        assert!(cls.lookup(&key).is_some());
        c.bench_function(&format!("dpcls_lookup_{n}_subtables"), |b| b.iter(|| cls.lookup(black_box(&key))));
        let keys = [key; 32];
        let mut out = [None; 32];
        // One iteration = one packet of a 32-packet burst.
        c.bench_function(&format!("dpcls_batch32_{n}_subtables_per_pkt"), |b| {
            b.iter_custom(|iters| {
                let batches = iters.div_ceil(32);
                let start = std::time::Instant::now();
                for _ in 0..batches {
                    cls.lookup_batch(black_box(&keys), &mut out);
                }
                start.elapsed().mul_f64(iters as f64 / (batches * 32) as f64)
            })
        });
    }
}

fn bench_table(c: &mut Criterion) {
    // 1k rules over 8 masks: in_port + dst prefix, + protocol and port.
    let mut t = RuleTable::new();
    for i in 0..1000u32 {
        let len = [16u8, 20, 24, 28, 32][i as usize % 5];
        let mut m = Match::any().with(Field::InPort, u128::from(i % 4)).with(Field::EthType, 0x0800).with_masked(
            Field::NwDst,
            ip_to(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + (i << 8)))),
            prefix_mask(true, len),
        );
        if i % 3 == 0 {
            m = m.with(Field::IpProto, 17).with(Field::TpDst, u128::from(5000 + i % 10));
        }
        t.insert(i % 7, m, vec![Action::Output(i % 4)]);
    }
    let key = parse(&udp64(42), 1, None).key;
    println!("rule table: {} rules, {} masks", t.len(), t.subtable_count());
    c.bench_function("table_classify_1k_rules", |b| b.iter(|| t.classify(black_box(&key))));
    // Without the prefix checks: the megaflow takes each missed stage's
    // whole mask (wider address matches), and no search runs.
    let mut plain = t.clone();
    plain.set_prefix_checks(false);
    c.bench_function("table_classify_1k_rules_no_prefix_checks", |b| b.iter(|| plain.classify(black_box(&key))));
}

/// The ACL scenario's rules (309 in 20 masks) and 1,024 of its flows, one
/// classification per flow in turn: what an upcall pays there.
fn bench_table_acl(c: &mut Criterion) {
    let t = vswitch::traffic::acl::rule_table();
    let keys: Vec<FlowKey> = vswitch::traffic::acl::flows(1024)
        .iter()
        .enumerate()
        .map(|(i, f)| parse(&vswitch::traffic::flow_frame([2; 6], [4; 6], f, 60, i as u32), 1, None).key)
        .collect();
    let mut plain = t.clone();
    plain.set_prefix_checks(false);
    for (name, table) in [("table_classify_acl", &t), ("table_classify_acl_no_prefix_checks", &plain)] {
        let mut i = 0;
        c.bench_function(name, |b| {
            b.iter(|| {
                i = (i + 1) % keys.len();
                table.classify(black_box(&keys[i]))
            })
        });
    }
}

fn bench_encap(c: &mut Criterion) {
    let spec = EncapSpec {
        eth_src: [2, 0, 0, 0, 1, 1],
        eth_dst: [2, 0, 0, 0, 1, 2],
        ip_src: "198.18.0.1".parse().expect("v4"),
        ip_dst: "198.18.0.2".parse().expect("v4"),
        vni: 100,
        udp_dst: 4789,
        ttl: 64,
        tos: 0,
        df: true,
    };
    let t = EncapTemplate::new(spec).expect("template");
    let frame = udp64(3);
    let mut pkt = VecPacket::new(&frame, 128);
    c.bench_function("vxlan_encap_64B", |b| {
        b.iter_batched_ref(
            || (),
            |_| {
                pkt.reset(&frame, 128);
                t.encap(&mut pkt, black_box(0x1234)).expect("encap");
                black_box(pkt.data().len())
            },
            BatchSize::SmallInput,
        )
    });
    c.bench_function("reset_only_64B", |b| {
        b.iter(|| {
            pkt.reset(black_box(&frame), 128);
            black_box(pkt.data().len())
        })
    });
}

criterion_group!(benches, bench_parse, bench_emc, bench_dpcls, bench_table, bench_table_acl, bench_encap);
criterion_main!(benches);
