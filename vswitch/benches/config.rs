//! Config validation time against the number of rules (criterion): the
//! whole `Config::parse` of a file with N rules, each a distinct match.
//! Validation must stay linear (an error names its line through a line index
//! built once). Run with `cargo bench -p vswitch --bench config`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::fmt::Write;
use vswitch::config::Config;

fn file(rules: usize) -> String {
    let mut t = String::from("rules = [\n");
    for i in 0..rules {
        let _ = writeln!(
            t,
            "  \"priority={},in_port=vf0,ip,nw_dst=10.{}.{}.0/24,tcp,tp_dst={} actions=output:uplink0\",",
            1 + i % 1000,
            (i / 256) % 256,
            i % 256,
            1 + i % 60000
        );
    }
    t.push_str("]\n[[port]]\nname = \"vf0\"\nrole = \"representor\"\ndevargs = \"net_null0\"\n");
    t.push_str("[[port]]\nname = \"uplink0\"\nrole = \"uplink\"\ndevargs = \"net_null1\"\n");
    t
}

fn bench_config(c: &mut Criterion) {
    let mut g = c.benchmark_group("config_parse");
    g.sample_size(10);
    for n in [1_000usize, 10_000, 100_000] {
        let text = file(n);
        Config::parse(&text, "bench.toml").expect("valid config");
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(format!("{n}_rules"), |b| b.iter(|| Config::parse(&text, "bench.toml").expect("valid")));
    }
    g.finish();
}

criterion_group!(benches, bench_config);
criterion_main!(benches);
