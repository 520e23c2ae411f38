//! An ACL-style rule set and traffic for it: a tenant's security rules in
//! some twenty masks (in_port, source and destination prefixes of several
//! lengths, protocol, destination port), and flows spread over them. The
//! benchmark harness's `acl` scenario hands both to every switch; the rule
//! table's tests measure its megaflows with them.
//!
//! Addresses: 1,000 VMs in 40 /24 subnets of 10.0.0.0/12 send to 2,000
//! servers in 100 /24 subnets of 172.16.0.0/12; the rules' prefixes are drawn
//! around those hosts. Everything comes from fixed seeds, so every run and
//! every switch gets the same rules and packets.

use std::net::Ipv4Addr;

/// One flow's 5-tuple.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Flow5 {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    /// 6 (TCP) or 17 (UDP).
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
}

/// splitmix64: small, fast, and the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

const SERVICE_PORTS: [u16; 12] = [22, 53, 80, 123, 443, 3306, 5432, 6379, 8080, 8443, 9000, 11211];
const SRC_NET: u32 = 0x0a00_0000; // 10.0.0.0/12
const DST_NET: u32 = 0xac10_0000; // 172.16.0.0/12
const NET_BITS: u32 = 12;

/// A rule shape: how many rules, and what each consults.
struct Shape {
    count: usize,
    priority: u32,
    /// `true`: in_port=<source port>; `false`: in_port=<sink port> (return
    /// traffic rules, which the scenario's packets never hit).
    from_source: bool,
    src_len: Option<u32>,
    dst_len: Option<u32>,
    proto: Option<u8>,
    port: bool,
    deny: bool,
}

const fn shape(
    count: usize,
    priority: u32,
    src_len: Option<u32>,
    dst_len: Option<u32>,
    proto: Option<u8>,
    port: bool,
    deny: bool,
) -> Shape {
    Shape { count, priority, from_source: true, src_len, dst_len, proto, port, deny }
}

const TCP: Option<u8> = Some(6);
const UDP: Option<u8> = Some(17);

/// The shapes: 19 masks plus the catch-all, 309 rules (a few drawn twice).
const SHAPES: [Shape; 19] = [
    shape(20, 600, Some(32), None, None, false, true), // quarantined hosts
    shape(20, 590, None, Some(32), None, false, true), // blocked services
    shape(10, 550, Some(20), None, None, false, true), // blocked tenant ranges
    shape(30, 520, Some(32), Some(32), None, false, false), // host pairs
    shape(50, 500, None, Some(32), TCP, true, false),  // published services
    shape(30, 480, Some(24), Some(24), TCP, true, false),
    shape(10, 460, None, Some(28), TCP, true, false),
    shape(30, 450, None, Some(24), TCP, true, false),
    shape(10, 420, Some(24), None, UDP, true, false),
    shape(20, 400, Some(16), Some(16), UDP, true, false),
    shape(10, 350, None, Some(16), UDP, false, false),
    shape(10, 300, Some(8), Some(16), None, false, false),
    shape(10, 250, Some(16), None, TCP, false, false),
    shape(12, 210, None, None, UDP, true, true),
    shape(12, 200, None, None, TCP, true, false),
    shape(2, 100, None, Some(8), None, false, false),
    Shape { from_source: false, ..shape(20, 500, None, Some(32), TCP, true, false) },
    shape(1, 150, None, None, Some(1), false, false),
    shape(1, 10, None, None, None, false, false), // the port's default: allow
];

fn addr_in(rng: &mut Rng, net: u32) -> u32 {
    net | (rng.next() as u32 & ((1 << (32 - NET_BITS)) - 1))
}

/// `subnets` /24s in `net`, `hosts` addresses in each.
fn hosts(seed: u64, net: u32, subnets: usize, hosts: usize) -> Vec<u32> {
    let mut rng = Rng(seed);
    let mut out = Vec::with_capacity(subnets * hosts);
    for _ in 0..subnets {
        let subnet = prefix(addr_in(&mut rng, net), 24);
        for _ in 0..hosts {
            out.push(subnet | (1 + rng.below(254) as u32));
        }
    }
    out
}

fn vms() -> Vec<u32> {
    hosts(0x0a0a, SRC_NET, 40, 25)
}

fn servers() -> Vec<u32> {
    hosts(0xac10, DST_NET, 100, 20)
}

fn prefix(a: u32, len: u32) -> u32 {
    if len == 0 {
        0
    } else {
        a & (u32::MAX << (32 - len))
    }
}

/// A rule as parsed parts, kept to draw traffic inside it.
struct Drawn {
    priority: u32,
    from_source: bool,
    src: Option<(u32, u32)>,
    dst: Option<(u32, u32)>,
    proto: Option<u8>,
    port: Option<u16>,
    deny: bool,
}

fn draw_rules() -> Vec<Drawn> {
    let mut rng = Rng(0x05ee_dac1);
    let (vms, servers) = (vms(), servers());
    let mut out = Vec::new();
    for s in &SHAPES {
        for _ in 0..s.count {
            let src = s.src_len.map(|l| (prefix(rng.pick(&vms), l), l));
            let dst = s.dst_len.map(|l| (prefix(rng.pick(&servers), l), l));
            let port = s.port.then(|| {
                if s.proto == UDP || rng.below(2) == 0 {
                    rng.pick(&SERVICE_PORTS)
                } else {
                    1024 + rng.below(8000) as u16
                }
            });
            out.push(Drawn {
                priority: s.priority,
                from_source: s.from_source,
                src,
                dst,
                proto: s.proto,
                port,
                deny: s.deny,
            });
        }
    }
    out
}

/// The rule set in the OpenFlow-style syntax vswitchd and `ovs-ofctl` both
/// read: traffic enters at `source` and allowed packets leave by `sink`.
pub fn rules(source: &str, sink: &str) -> Vec<String> {
    let mut out: Vec<String> = draw_rules()
        .iter()
        .map(|r| {
            let mut t = format!("priority={},in_port={}", r.priority, if r.from_source { source } else { sink });
            t.push_str(match r.proto {
                Some(6) => ",tcp",
                Some(17) => ",udp",
                Some(1) => ",icmp",
                _ => ",ip",
            });
            if let Some((a, l)) = r.src {
                t.push_str(&format!(",nw_src={}/{l}", Ipv4Addr::from(a)));
            }
            if let Some((a, l)) = r.dst {
                t.push_str(&format!(",nw_dst={}/{l}", Ipv4Addr::from(a)));
            }
            if let Some(p) = r.port {
                t.push_str(&format!(",tp_dst={p}"));
            }
            let out_to = if r.from_source { sink } else { source };
            t.push_str(&if r.deny { " actions=drop".to_owned() } else { format!(" actions=output:{out_to}") });
            t
        })
        .collect();
    out.push("priority=0 actions=drop".to_owned());
    out
}

/// The rule set in a rule table, ports `vf0` = 1 (the source) and
/// `uplink0` = 2 (tests and micro-benchmarks).
pub fn rule_table() -> crate::flow::RuleTable {
    let port = |n: &str| match n {
        "vf0" => Some(1),
        "uplink0" => Some(2),
        _ => None,
    };
    let mut t = crate::flow::RuleTable::new();
    for r in rules("vf0", "uplink0") {
        let s = crate::ofrule::parse_rule(&r, &port).unwrap_or_else(|e| panic!("{r}: {e}"));
        t.insert(s.priority, s.matcher, s.actions);
    }
    t
}

/// `n` flows between the VMs and the servers: half of them inside a rule
/// of the source port (its prefixes kept, the rest of the address a host's),
/// TCP or UDP, destination ports mostly services, source ports random.
pub fn flows(n: u32) -> Vec<Flow5> {
    let rules: Vec<Drawn> = draw_rules().into_iter().filter(|r| r.from_source && r.proto != Some(1)).collect();
    let (vms, servers) = (vms(), servers());
    let mut rng = Rng(0x000f_10e5);
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(n as usize);
    while out.len() < n as usize {
        let inside = rng.below(2) == 0;
        let r = &rules[rng.below(rules.len() as u64) as usize];
        let mut src = rng.pick(&vms);
        let mut dst = rng.pick(&servers);
        let mut proto = if rng.below(4) == 0 { 17 } else { 6 };
        let mut dport = if rng.below(5) < 3 { rng.pick(&SERVICE_PORTS) } else { 1024 + rng.below(60000) as u16 };
        if inside {
            if let Some((a, l)) = r.src {
                src = a | (src & !prefix(u32::MAX, l));
            }
            if let Some((a, l)) = r.dst {
                dst = a | (dst & !prefix(u32::MAX, l));
            }
            proto = r.proto.unwrap_or(proto);
            dport = r.port.unwrap_or(dport);
        }
        let f = Flow5 {
            src: Ipv4Addr::from(src),
            dst: Ipv4Addr::from(dst),
            proto,
            sport: 1024 + rng.below(64000) as u16,
            dport,
        };
        if seen.insert(f) {
            out.push(f);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_into_about_twenty_masks() {
        let t = rule_table();
        assert_eq!(t.len(), 309, "rules");
        assert!((18..=22).contains(&t.subtable_count()), "{} masks", t.subtable_count());
    }

    /// The ACL's megaflows: every flow through an exact megaflow cache
    /// (a miss classifies and installs), as the datapath does.
    fn megaflows(flows: &[Flow5]) -> (usize, usize) {
        let t = rule_table();
        let mut cache: crate::flow::Dpcls<u64> = crate::flow::Dpcls::new();
        for (i, f) in flows.iter().enumerate() {
            let frame = crate::traffic::flow_frame([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2], f, 60, i as u32);
            let p = crate::packet::parse(&frame, 1, None);
            assert_eq!(p.error, None);
            if cache.lookup(&p.key).is_none() {
                let c = t.classify(&p.key);
                cache.insert(&p.key, &c.mask, c.rule.map_or(u64::MAX, |r| r.id));
            }
        }
        (cache.len(), cache.subtable_count())
    }

    #[test]
    fn prefix_checks_fold_flows_into_fewer_megaflows() {
        // Measured: 17,842 megaflows in 4 masks without prefix checks (every
        // megaflow exact on both addresses), 13,856 in 46 with them; without
        // rounding to the rules' lengths 11,529 in 621 masks.
        let (megaflows, masks) = megaflows(&flows(20_000));
        eprintln!("20000 flows: {megaflows} megaflows in {masks} masks");
        assert!(megaflows < 15_000, "{megaflows} megaflows");
        assert!(masks <= 60, "{masks} masks");
    }

    #[test]
    fn flows_are_distinct_and_deterministic() {
        let a = flows(5000);
        assert_eq!(a.len(), 5000);
        assert_eq!(a, flows(5000));
        let set: std::collections::HashSet<_> = a.iter().collect();
        assert_eq!(set.len(), 5000);
    }
}
