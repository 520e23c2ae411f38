//! `rules = [...]`: OpenFlow-style rule text, resolved against the ports and
//! tunnels.

use super::ctx::ConfigError;
use super::ctx::Ctx;
use super::types::{ConfiguredRule, PortSpec, TunnelSpec};
use crate::ofrule::parse_rule;
use std::collections::HashMap;
use toml::Spanned;

/// Rules a switch holds at most (configured and added at run time).
pub const MAX_RULES: usize = 1_000_000;

pub fn rules(
    ctx: &Ctx<'_>,
    raw: &[Spanned<String>],
    ports: &[PortSpec],
    tunnels: &[TunnelSpec],
) -> Result<Vec<ConfiguredRule>, ConfigError> {
    let numbers: HashMap<&str, u32> = ports
        .iter()
        .map(|p| p.name.as_str())
        .chain(tunnels.iter().map(|t| t.name.as_str()))
        .enumerate()
        .map(|(i, n)| (n, i as u32))
        .collect();
    let resolve = |name: &str| numbers.get(name).copied();
    let max = MAX_RULES;
    if let Some(r) = raw.get(max) {
        return ctx.err(r, "rules", format!("{} rules; at most {max} are accepted", raw.len()));
    }
    let mut out = Vec::with_capacity(raw.len());
    for r in raw {
        let spec = parse_rule(r.get_ref(), &resolve)
            .or_else(|e| ctx.err(r, "rules", format!("{:?}: {}", r.get_ref(), e.message)))?;
        out.push(ConfiguredRule { text: r.get_ref().clone(), spec, line: ctx.line(r) });
    }
    Ok(out)
}
