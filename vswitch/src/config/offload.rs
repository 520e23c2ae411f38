//! `[offload]`: pushing hot flows into the NIC's e-switch (rte_flow), or
//! into the model e-switch on machines without one.

use super::ctx::ConfigError;
use super::ctx::Ctx;
use offload::model::{ActionKind, Profile};
use offload::rte_flow::ItemKind;
use serde::Deserialize;
use std::time::Duration;
use toml::Spanned;

/// Where rules go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OffloadDevice {
    /// The model e-switch (tests, demos; no NIC needed).
    Model,
    /// The NIC, through DPDK's rte_flow on the uplink's transfer proxy.
    RteFlow,
}

/// Which megaflows go to hardware.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// Those that keep at least `min_pps` for `hot_ms`.
    Hot,
    /// Every megaflow when it is installed (what Open vSwitch does).
    All,
}

/// The validated `[offload]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct OffloadConfig {
    pub enabled: bool,
    pub device: OffloadDevice,
    pub policy: Policy,
    pub min_pps: u64,
    pub hot: Duration,
    pub max_rules: usize,
    pub query_interval: Duration,
    pub group: u32,
    /// A candidate evicts the coldest hardware rule only if it is this many
    /// times hotter.
    pub hysteresis: f64,
    /// Rule creations and destructions per second, at most.
    pub max_ops_per_s: u64,
    /// Add an AGE action to rules (the device reports idle rules).
    pub age: bool,
    /// The model e-switch's capabilities.
    pub model: Profile,
}

impl Default for OffloadConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            device: OffloadDevice::Model,
            policy: Policy::Hot,
            min_pps: 1000,
            hot: Duration::from_millis(200),
            max_rules: 65536,
            query_interval: Duration::from_millis(500),
            group: 1,
            hysteresis: 1.5,
            max_ops_per_s: 200_000,
            age: true,
            model: Profile { name: "config".into(), ..Profile::default() },
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    max_rules: Option<Spanned<u64>>,
    max_encap_bytes: Option<Spanned<u64>>,
    items: Option<Spanned<Vec<String>>>,
    actions: Option<Spanned<Vec<String>>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawOffload {
    enabled: Option<Spanned<bool>>,
    device: Option<Spanned<String>>,
    policy: Option<Spanned<String>>,
    min_pps: Option<Spanned<u64>>,
    hot_ms: Option<Spanned<u64>>,
    max_rules: Option<Spanned<u64>>,
    query_interval_ms: Option<Spanned<u64>>,
    group: Option<Spanned<u64>>,
    hysteresis: Option<Spanned<f64>>,
    max_ops_per_s: Option<Spanned<u64>>,
    age: Option<Spanned<bool>>,
    model: Option<Spanned<RawModel>>,
}

const ITEMS: [(&str, ItemKind); 8] = [
    ("represented_port", ItemKind::RepresentedPort),
    ("eth", ItemKind::Eth),
    ("vlan", ItemKind::Vlan),
    ("ipv4", ItemKind::Ipv4),
    ("ipv6", ItemKind::Ipv6),
    ("udp", ItemKind::Udp),
    ("tcp", ItemKind::Tcp),
    ("vxlan", ItemKind::Vxlan),
];

fn names<T: Copy>(
    ctx: &Ctx<'_>,
    s: &Spanned<Vec<String>>,
    field: &str,
    known: &[(&str, T)],
) -> Result<Vec<T>, ConfigError> {
    let mut out = Vec::new();
    for n in s.get_ref() {
        match known.iter().find(|(k, _)| k == n) {
            Some((_, v)) => out.push(*v),
            None => {
                let list: Vec<&str> = known.iter().map(|(k, _)| *k).collect();
                return ctx.err(s, field, format!("{n:?} is not one of {}", list.join(", ")));
            }
        }
    }
    Ok(out)
}

/// `[offload]` (absent: offload off; present: on unless `enabled = false`);
/// `idle_timeout` is `[datapath]`'s, which the query interval must fit.
pub fn offload(
    ctx: &Ctx<'_>,
    raw: Option<&Spanned<RawOffload>>,
    idle_timeout: Duration,
) -> Result<OffloadConfig, ConfigError> {
    let mut c = OffloadConfig::default();
    let Some(raw) = raw else { return Ok(c) };
    let r = raw.get_ref();
    c.enabled = r.enabled.as_ref().is_none_or(|e| *e.get_ref());
    if let Some(d) = &r.device {
        c.device = match d.get_ref().as_str() {
            "model" => OffloadDevice::Model,
            "rte_flow" => OffloadDevice::RteFlow,
            other => return ctx.err(d, "offload.device", format!("{other:?}: expected \"model\" or \"rte_flow\"")),
        };
    }
    if let Some(p) = &r.policy {
        c.policy = match p.get_ref().as_str() {
            "hot" => Policy::Hot,
            "all" => Policy::All,
            other => return ctx.err(p, "offload.policy", format!("{other:?}: expected \"hot\" or \"all\"")),
        };
    }
    c.min_pps = ctx.range(&r.min_pps, "offload.min_pps", c.min_pps, 1, 1 << 40)?;
    c.hot = Duration::from_millis(ctx.range(&r.hot_ms, "offload.hot_ms", 200, 0, 3_600_000)?);
    c.max_rules = ctx.range(&r.max_rules, "offload.max_rules", c.max_rules as u64, 1, 1 << 24)? as usize;
    c.query_interval =
        Duration::from_millis(ctx.range(&r.query_interval_ms, "offload.query_interval_ms", 500, 10, 60_000)?);
    if c.enabled && c.query_interval * 2 > idle_timeout {
        let message = format!(
            "{} ms must be at most half of datapath.idle_timeout_ms ({} ms): hardware hits are read every query \
             interval, and an offloaded flow not seen hit within the idle timeout leaves both tiers (its rule would \
             be destroyed and made again all the time)",
            c.query_interval.as_millis(),
            idle_timeout.as_millis()
        );
        return match &r.query_interval_ms {
            Some(q) => ctx.err(q, "offload.query_interval_ms", message),
            None => ctx.err(raw, "offload.query_interval_ms", format!("the default {message}")),
        };
    }
    c.group = ctx.range(&r.group, "offload.group", 1, 0, 1024)? as u32;
    if let Some(h) = &r.hysteresis {
        if !(1.0..=100.0).contains(h.get_ref()) {
            return ctx.err(h, "offload.hysteresis", format!("{} is out of range; expected 1.0..=100.0", h.get_ref()));
        }
        c.hysteresis = *h.get_ref();
    }
    c.max_ops_per_s = ctx.range(&r.max_ops_per_s, "offload.max_ops_per_s", c.max_ops_per_s, 1, 100_000_000)?;
    c.age = r.age.as_ref().is_none_or(|a| *a.get_ref());
    if let Some(m) = &r.model {
        let m = m.get_ref();
        c.model.max_rules = ctx.range(&m.max_rules, "offload.model.max_rules", 65536, 1, 1 << 24)? as usize;
        c.model.max_encap_bytes =
            ctx.range(&m.max_encap_bytes, "offload.model.max_encap_bytes", 132, 14, 512)? as usize;
        if let Some(items) = &m.items {
            c.model.items = names(ctx, items, "offload.model.items", &ITEMS)?;
        }
        if let Some(actions) = &m.actions {
            let known: Vec<(&str, ActionKind)> = ActionKind::ALL.iter().map(|a| (a.name(), *a)).collect();
            c.model.actions = names(ctx, actions, "offload.model.actions", &known)?;
        }
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    const PORTS: &str = "[[port]]\nname = \"vf0\"\nrole = \"representor\"\ndevargs = \"net_null0\"\n";

    #[test]
    fn defaults_values_and_errors() {
        let c = Config::parse(PORTS, "t").expect("valid");
        assert!(!c.offload.enabled, "absent: off");
        let c = Config::parse(&format!("[offload]\npolicy = \"all\"\nmax_rules = 16\n[offload.model]\nactions = [\"count\", \"represented_port\", \"drop\"]\n{PORTS}"), "t").expect("valid");
        assert!(c.offload.enabled);
        assert_eq!((c.offload.policy, c.offload.max_rules), (super::Policy::All, 16));
        assert_eq!(c.offload.model.actions.len(), 3);
        let cases = [
            ("[offload]\ndevice = \"nic\"\n", 2, "offload.device"),
            ("[offload]\nmin_pps = 0\n", 2, "offload.min_pps"),
            ("[offload]\nhysteresis = 0.5\n", 2, "offload.hysteresis"),
            ("[offload]\n[offload.model]\nitems = [\"gre\"]\n", 3, "offload.model.items"),
            ("[offload]\ncolour = 1\n", 2, "colour"),
        ];
        for (text, line, field) in cases {
            let e = Config::parse(&format!("{text}{PORTS}"), "f.toml").expect_err(text);
            assert_eq!((e.line, e.field.as_str()), (line, field), "{e}");
        }
    }
}
