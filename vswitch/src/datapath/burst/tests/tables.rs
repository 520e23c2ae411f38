//! Several tables (goto_table): one megaflow per walk, its actions those of
//! every rule on the way, its packets counted for each of them.

use super::*;

const MAC6: [u8; 6] = [6; 6];

#[test]
fn a_walk_through_tables_is_one_megaflow_that_counts_for_every_rule() {
    let mut e = engine(
        &[
            "priority=10,in_port=vf0,udp,tp_dst=80 actions=mod_dl_dst:06:06:06:06:06:06,goto_table:1",
            "priority=10,in_port=vf0,udp,tp_dst=81 actions=mod_vlan_vid:5,goto_table:1",
            "priority=5,in_port=vf0,udp,tp_dst=82 actions=output:vf1,goto_table:2",
            // Table 1: by the rewritten address, else one catch-all.
            "table=1,priority=5,dl_dst=06:06:06:06:06:06 actions=output:uplink0",
            "table=1,priority=1 actions=output:vf1",
        ],
        64,
    );
    let frame = |dport: u16, i: u8| udp([4; 6], [2; 6], [10, 0, 0, i], dport, 60);
    let web: Vec<Vec<u8>> = (0..3).map(|i| frame(80, i)).collect();
    let other: Vec<Vec<u8>> = (0..4).map(|i| frame(81, i)).collect();
    // Table 2 holds nothing: the walk stops after table 0's output.
    let third: Vec<Vec<u8>> = (0..2).map(|i| frame(82, i)).collect();
    let out = run_bursts(&mut e, &[(0, web.clone()), (0, other.clone()), (0, third.clone())]);
    assert_eq!(out.iter().filter(|(p, f)| *p == 2 && f[..6] == MAC6).count(), 3, "table 1 saw the new address");
    // The tp_dst=81 walk ends in the same table-1 rule as no other walk
    // from vf0 does: tagged by table 0, out of vf1 by table 1.
    let tagged = out.iter().filter(|(p, f)| *p == 1 && f[12..14] == [0x81, 0x00] && f[15] == 5).count();
    assert_eq!(tagged, 4, "{out:?}");
    assert_eq!(out.iter().filter(|(p, f)| *p == 1 && f[12..14] == [0x08, 0x00]).count(), 2);
    assert_eq!(out.len(), 9);

    let flows = e.dump(10);
    assert_eq!(flows.len(), 3, "one megaflow per walk");
    let ids: Vec<u64> = e.table.rules().map(|r| r.id).collect();
    let (r80, r81, r82, t1_mac, t1_any) = (ids_of(&e, 0, 10, 80), ids_of(&e, 0, 10, 81), ids_of(&e, 0, 5, 82), 3, 4);
    assert!(ids.contains(&t1_mac) && ids.contains(&t1_any));
    let walk = |rule: u64| flows.iter().find(|f| f.rule.map(|r| r.0) == Some(rule) && !f.via.is_empty());
    assert_eq!(walk(t1_mac).map(|f| (&*f.via, f.packets)), Some((&[r80][..], 3)));
    assert_eq!(walk(t1_any).map(|f| (&*f.via, f.packets)), Some((&[r81][..], 4)));
    let stopped = flows.iter().find(|f| f.rule.map(|r| r.0) == Some(r82)).expect("the third walk");
    assert!(stopped.via.is_empty() && stopped.packets == 2);
    // Every walk's mask holds what any table consulted: table 1's address.
    assert!(flows
        .iter()
        .all(|f| f.mask.get(Field::EthDst) == Field::EthDst.full() || f.rule.map(|r| r.0) == Some(r82)));

    // The flows go (a table without them); their counts stay with every
    // rule they went through.
    e.revalidate(Arc::new(table(&["priority=0 actions=drop"])));
    assert_eq!(e.dump(20).len(), 0);
    let retired = |id: u64| e.retired.get(&id).map_or(0, |c| c.0);
    assert_eq!((retired(r80), retired(r81), retired(r82)), (3, 4, 2));
    assert_eq!((retired(t1_mac), retired(t1_any)), (3, 4));
    assert_balanced(&e);
}

/// The id of table 0's rule with this priority on this UDP port.
fn ids_of(e: &Engine, table: u8, priority: u32, dport: u128) -> u64 {
    e.table
        .rules()
        .find(|r| r.table == table && r.priority == priority && r.matcher.key.get(Field::TpDst) == dport)
        .map(|r| r.id)
        .expect("the rule")
}

/// The table the engine runs by without these rules (ids kept).
fn without(e: &Engine, ids: &[u64]) -> Arc<RuleTable> {
    let mut t = e.table.deep_clone();
    for id in ids {
        t.remove(*id).expect("a rule of the table");
    }
    Arc::new(t)
}

#[test]
fn a_flow_another_rule_now_decides_goes_and_its_counts_stay_with_its_rule() {
    // The catch-all acts as the port-80 rule does: without that rule its
    // flow would still forward the same, but its 5 packets are not the
    // catch-all's.
    let mut e =
        engine(&["priority=10,in_port=vf0,udp,tp_dst=80 actions=output:vf1", "priority=1 actions=output:vf1"], 64);
    let frames = |dport: u16, n: u8| (0..n).map(|i| udp([4; 6], [2; 6], [10, 0, 0, i], dport, 60)).collect::<Vec<_>>();
    run_bursts(&mut e, &[(0, frames(80, 5)), (0, frames(81, 2))]);
    let (r80, any) = (ids_of(&e, 0, 10, 80), e.table.rules().find(|r| r.priority == 1).expect("catch-all").id);
    let report = e.revalidate(without(&e, &[r80]));
    // The catch-all's own flow stays (the same rule decides it).
    assert_eq!((report.kept, report.removed), (1, 1));
    let flows = e.dump(10);
    assert_eq!(flows.iter().map(|f| (f.rule.map(|r| r.0), f.packets)).collect::<Vec<_>>(), [(Some(any), 2)]);
    assert_eq!(e.retired.get(&r80), Some(&(5, 5 * 60)));
    // Its packets now make a flow of the catch-all's, from zero.
    run_bursts(&mut e, &[(0, frames(80, 3))]);
    let mut counts: Vec<u64> = e.dump(20).iter().map(|f| f.packets).collect();
    counts.sort_unstable();
    assert_eq!(counts, [2, 3]);
    assert_eq!(e.retired.get(&r80), Some(&(5, 5 * 60)), "nothing more for the rule that went");
    assert_balanced(&e);
}

/// Rules removed together: enough that the engine's prune of retired
/// counts runs after their publication.
const DEAD: u16 = 1030;

/// A UDP frame to port `dport`.
fn rule_frame(dport: u16) -> Vec<u8> {
    udp([4; 6], [2; 6], [10, 0, 0, 1], dport, 60)
}

/// An engine with `DEAD` rules of priority 5 (ports 1000 and up), each
/// with a flow, a rule for port 80 (priority 10) and a drop rule.
fn many_rules_with_flows() -> Engine {
    let mut texts: Vec<String> =
        (0..DEAD).map(|i| format!("priority=5,in_port=vf0,udp,tp_dst={} actions=output:vf1", 1000 + i)).collect();
    texts.push("priority=10,in_port=vf0,udp,tp_dst=80 actions=output:vf1".into());
    texts.push("priority=1 actions=drop".into());
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let mut e = engine_sized(&refs, 64, 4096);
    let dead: Vec<Vec<u8>> = (0..DEAD).map(|i| rule_frame(1000 + i)).collect();
    let bursts: Vec<(u32, Vec<Vec<u8>>)> = dead.chunks(BURST).map(|c| (0, c.to_vec())).collect();
    run_bursts(&mut e, &bursts);
    e
}

#[test]
fn counts_of_a_removed_rule_last_through_the_publication_that_removes_it() {
    // Many rules that went long ago make the engine drop the counts of
    // rules no longer in the table; rule 80's earlier flow counted 4 and
    // aged out, and the publication that removes the rule must not drop
    // them: they are read after it (FLOW_REMOVED).
    let mut e = many_rules_with_flows();
    let dead_ids: Vec<u64> = e.table.rules().filter(|r| r.priority == 5).map(|r| r.id).collect();
    assert_eq!(e.revalidate(without(&e, &dead_ids)).removed, usize::from(DEAD));
    assert_eq!(e.retired.len(), usize::from(DEAD));

    run_bursts(&mut e, &[(0, vec![rule_frame(80); 4])]);
    let r80 = ids_of(&e, 0, 10, 80);
    // Idle for a minute (the engine's clock: 1 GHz).
    e.maintenance(60_000_000_000);
    assert_eq!((e.dump(10).len(), e.retired.get(&r80)), (0, Some(&(4, 240))), "aged out, counted");
    e.revalidate(without(&e, &[r80]));
    assert_eq!(e.retired.get(&r80), Some(&(4, 240)), "rule 80's counts outlast its publication");
    assert_eq!(e.retired.len(), 1, "those of the rules gone before are dropped");
}

#[test]
fn counts_still_to_be_read_outlast_the_publications_before_the_read() {
    // Rule 80 is removed with its FLOW_REMOVED still to be sent; before its
    // remover reads the counts, another controller's publications come:
    // one removes many rules, the next finds the retired counts piled up
    // and drops those of rules in neither table. Rule 80's stay while it is
    // in `keep`; without it, they go (what the keep is for).
    let run = |keep: bool| {
        let mut e = many_rules_with_flows();
        run_bursts(&mut e, &[(0, vec![rule_frame(80); 4])]);
        let r80 = ids_of(&e, 0, 10, 80);
        let keep: &[u64] = if keep { &[r80] } else { &[] };
        let publish = |e: &mut Engine, table: Arc<RuleTable>| {
            e.set_rules_keeping(table, keep);
            e.revalidate_slice(u64::MAX);
        };
        let t = without(&e, &[r80]);
        publish(&mut e, t);
        assert_eq!(e.retired.get(&r80), Some(&(4, 240)), "its flow's counts, retired");
        let dead_ids: Vec<u64> = e.table.rules().filter(|r| r.priority == 5).map(|r| r.id).collect();
        let t = without(&e, &dead_ids);
        publish(&mut e, t);
        assert_eq!(e.retired.len(), usize::from(DEAD) + 1);
        let same = Arc::clone(&e.table);
        publish(&mut e, same);
        assert_eq!(e.retired.len(), keep.len(), "the gone rules' counts are dropped");
        e.retired.get(&r80).copied()
    };
    assert_eq!(run(true), Some((4, 240)), "kept through two more publications");
    assert_eq!(run(false), None, "not kept, dropped by the second");
}
