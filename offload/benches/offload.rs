//! Offload crate micro-benchmarks: lowering a rule, creating rules in the
//! model e-switch, and model lookups per packet with 1, 1k and 64k rules in
//! one to eight distinct masks.

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use offload::device::FlowDevice;
use offload::model::{ModelDevice, ModelSwitch, Profile, Verdict};
use offload::packet::VecPacket;
use offload::rte_flow::{lower, Lowered};
use offload::rule::*;
use std::hint::black_box;
use std::net::Ipv4Addr;
use std::sync::Arc;

/// Rule `i` of a set spread over `masks` masks: in_port 1, untagged IPv4 to
/// 10.x.y.z with a prefix length that depends on the mask index, UDP to a
/// port; the mask index also decides whether the source port is compared.
fn rule(i: u32, masks: u32) -> HwRule {
    let m = i % masks;
    let addr = Ipv4Addr::from(0x0a00_0000 | (i << 2));
    let len = 30 - (m % 4) as u8;
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    let dst = Ipv4Prefix { addr: Ipv4Addr::from(u32::from(addr) & mask), len };
    HwRule {
        pattern: Pattern {
            ingress: 1,
            tunnel: None,
            headers: Headers {
                eth: EthMatch { tagged: Some(false), ..Default::default() },
                vlans: vec![],
                l3: Some(L3Match::Ipv4(Ipv4Match { dst: Some(dst), proto: Some(17), ..Default::default() })),
                l4: Some(L4Match::Udp(PortsMatch {
                    src: (m >= 4).then(|| Masked::exact(1000)),
                    dst: Some(Masked::exact(4000 + (i % 7) as u16)),
                })),
            },
        },
        priority: 0,
        actions: vec![HwAction::Count, HwAction::Output(0)],
    }
}

/// A UDP frame that hits rule `i`.
fn frame(i: u32) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f[14] = 0x45;
    f[16..18].copy_from_slice(&46u16.to_be_bytes());
    f[22] = 64;
    f[23] = 17;
    f[26..30].copy_from_slice(&[10, 9, 9, 9]);
    f[30..34].copy_from_slice(&(0x0a00_0000 | (i << 2)).to_be_bytes());
    f[34..36].copy_from_slice(&1000u16.to_be_bytes());
    f[36..38].copy_from_slice(&(4000 + (i % 7) as u16).to_be_bytes());
    f[38..40].copy_from_slice(&26u16.to_be_bytes());
    f
}

fn lowering(c: &mut Criterion) {
    let r = rule(7, 1);
    let mut g = c.benchmark_group("offload");
    g.bench_function("lower a 5-tuple rule", |b| b.iter(|| black_box(lower(black_box(&r), 1, 7).expect("lower"))));
    let l = lower(&r, 1, 7).expect("lower");
    g.bench_function("read a lowered rule back (model's reader)", |b| b.iter(|| black_box(l.raw().expect("raw"))));
    g.finish();
}

fn creation(c: &mut Criterion) {
    const N: u32 = 4096;
    let rules: Vec<Lowered> = (0..N).map(|i| lower(&rule(i, 8), 0, u64::from(i)).expect("lower")).collect();
    let mut g = c.benchmark_group("model create");
    g.throughput(Throughput::Elements(u64::from(N)));
    g.bench_function("4096 lowered rules into an empty model", |b| {
        b.iter_batched(
            || ModelDevice::new(Arc::new(ModelSwitch::new(Profile::default()))),
            |mut dev| {
                for l in &rules {
                    dev.create(l).expect("create");
                }
                dev
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn lookups(c: &mut Criterion) {
    let mut g = c.benchmark_group("model lookup per packet");
    for (rules, masks) in [(1u32, 1u32), (1024, 1), (1024, 8), (65536, 1), (65536, 8)] {
        let model = Arc::new(ModelSwitch::new(Profile { max_rules: 1 << 20, ..Profile::default() }));
        let mut dev = ModelDevice::new(Arc::clone(&model));
        for i in 0..rules {
            dev.create(&lower(&rule(i, masks), 0, 0).expect("lower")).expect("create");
        }
        // 4096 packets spread over the rules, in bursts of 32.
        let mut pkts: Vec<VecPacket> =
            (0..4096u32).map(|k| VecPacket::new(&frame((k.wrapping_mul(2_654_435_761)) % rules), 128)).collect();
        g.throughput(Throughput::Elements(pkts.len() as u64));
        g.bench_with_input(BenchmarkId::new(format!("{masks} masks"), rules), &rules, |b, _| {
            b.iter(|| {
                for burst in pkts.chunks_mut(32) {
                    let mut s = model.session();
                    for p in burst.iter_mut() {
                        let v = s.process(1, p);
                        debug_assert_eq!(v, Verdict::Output(0));
                        black_box(v);
                    }
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, lowering, creation, lookups);
criterion_main!(benches);
