//! Rule operations through the offload manager (criterion): megaflow
//! events in, rules created in and destroyed from the model e-switch. Each
//! operation is the whole path a flow takes: translation against the
//! underlay, lowering to rte_flow structs, the device call, bookkeeping.
//! Run with `cargo bench -p vswitch --bench offload_manager`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use offload::model::{ModelDevice, ModelSwitch, Profile};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vswitch::actions::Action;
use vswitch::config::offload::{OffloadConfig, Policy};
use vswitch::config::Role;
use vswitch::datapath::burst::megaflow_mask;
use vswitch::datapath::flows::FlowEvent;
use vswitch::flow::RuleTable;
use vswitch::offload_manager::manager::{Manager, ManagerSetup};
use vswitch::offload_manager::translate::PortFacts;
use vswitch::ofrule::parse_rule;
use vswitch::packet::parse;
use vswitch::underlay::{Tables, Underlay};

const NAMES: [&str; 4] = ["vf0", "vf1", "uplink0", "vxlan0"];
const FLOWS: u32 = 16_384;

fn underlay() -> Arc<Underlay> {
    Arc::new(Underlay::new(Tables::one_vtep(2, 3, [2, 0, 0, 0, 0, 0xaa], [2, 0, 0, 0, 0, 0xbb], 1600)))
}

fn manager(underlay: &Arc<Underlay>) -> Manager {
    let ports = ["vf0", "vf1", "uplink0"]
        .iter()
        .enumerate()
        .map(|(i, n)| PortFacts {
            name: (*n).into(),
            ethdev: i as u16,
            role: if i == 2 { Role::Uplink } else { Role::Representor },
            mtu: 1500,
            domain: Some(0),
            mac: [2, 0, 0, 0, 0, 0x10 + i as u8],
        })
        .collect();
    let model = Arc::new(ModelSwitch::new(Profile { max_rules: 2 * FLOWS as usize, ..Profile::default() }));
    let (_ev_tx, ev_rx) = crossbeam_channel::unbounded();
    let (pmd_tx, _pmd_rx) = crossbeam_channel::unbounded();
    let config = OffloadConfig {
        enabled: true,
        policy: Policy::All,
        max_rules: 2 * FLOWS as usize,
        max_ops_per_s: u32::MAX as u64,
        ..OffloadConfig::default()
    };
    Manager::new(ManagerSetup {
        config,
        device: Box::new(ModelDevice::new(model)),
        proxy: 0,
        ports,
        underlay: Arc::clone(underlay),
        events: ev_rx,
        pmds: vec![pmd_tx],
        idle_timeout: Duration::from_secs(60),
        shared: Arc::default(),
    })
}

/// `FLOWS` megaflows from vf0 (exact source address each) with `actions`.
fn installs(rule: &str) -> Vec<FlowEvent> {
    let resolve = |n: &str| NAMES.iter().position(|p| *p == n).map(|i| i as u32);
    let mut table = RuleTable::new();
    for r in ["priority=200,in_port=vf0,ip,nw_src=10.255.255.255/32 actions=drop", rule] {
        let s = parse_rule(r, &resolve).expect(r);
        table.insert(s.priority, s.matcher, s.actions);
    }
    (0..FLOWS)
        .map(|i| {
            let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00, 0x45, 0, 0, 46, 0, 0, 0, 0, 64, 17, 0, 0];
            f.extend_from_slice(&(0x0a00_0000 + i).to_be_bytes());
            f.extend_from_slice(&[10, 255, 255, 1, 0x13, 0x88, 0x13, 0x89, 0, 26, 0, 0]);
            f.resize(60, 0);
            let key = parse(&f, 0, None).key;
            let c = table.classify(&key);
            let actions: Arc<[Action]> = Arc::from(c.rule.as_ref().map(|r| r.actions.clone()).unwrap_or_default());
            let mask = megaflow_mask(c.mask);
            FlowEvent::Installed {
                id: u64::from(i) + 1,
                pmd: 0,
                key: key.masked(&mask),
                mask,
                actions,
                rule: None,
                via: Box::default(),
            }
        })
        .collect()
}

fn bench_ops(c: &mut Criterion) {
    let underlay = underlay();
    let mut g = c.benchmark_group("offload_manager");
    g.sample_size(10);
    // An insert and a delete per flow.
    g.throughput(Throughput::Elements(2 * u64::from(FLOWS)));
    for (name, rule) in [
        ("forward_insert_delete", "priority=10,in_port=vf0,ip actions=output:uplink0"),
        ("encap_insert_delete", "priority=10,in_port=vf0,ip actions=output:vxlan0"),
    ] {
        let events = installs(rule);
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let mut m = manager(&underlay);
                    let batch = events.clone();
                    let removes = (1..=u64::from(FLOWS))
                        .map(|id| FlowEvent::Removed { id, reason: vswitch::datapath::flows::RemoveReason::Idle })
                        .collect();
                    let t = Instant::now();
                    m.events(batch);
                    let inserted = m.stats().inserts;
                    m.events(removes);
                    total += t.elapsed();
                    assert_eq!(
                        inserted,
                        u64::from(FLOWS) + 1,
                        "every flow became a rule (and vf0 got its jump rule): {:?}",
                        m.stats()
                    );
                    assert_eq!(m.stats().deletes, u64::from(FLOWS));
                }
                total
            });
        });
    }
    g.finish();
}

criterion_group!(benches, bench_ops);
criterion_main!(benches);
