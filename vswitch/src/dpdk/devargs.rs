//! What a PCI devargs string asks for: the device's own port (the physical
//! function: on a switchdev NIC, the uplink) or one VF representor.
//!
//! `0000:08:00.0,dv_flow_en=1,representor=vf[0-3]` probes the PF and four
//! representors and opens the PF; `0000:08:00.0,representor=vf[2]` (or
//! `vf2`, `[2]`, `pf0vf2`) opens the representor of VF 2. mlx5 names it
//! `0000:08:00.0_representor_vf2` (`..._representor_c0pf0vf2` on multi-host
//! and bonded devices); that ethdev name works as devargs too once the PF
//! has been probed with it.
#![forbid(unsafe_code)]

/// One representor named by a `representor=` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneRepresentor {
    pub controller: Option<u32>,
    pub pf: Option<u32>,
    /// `vf` or `sf`.
    pub kind: &'static str,
    pub index: u32,
}

impl OneRepresentor {
    /// Whether `ethdev` (a port's name) is this representor of device `pci`.
    pub fn matches(&self, pci: &str, ethdev: &str) -> bool {
        let Some(rest) = ethdev.strip_prefix(pci) else { return false };
        let Some((_, tail)) = rest.split_once("_representor_") else { return false };
        let want = format!("{}{}", self.kind, self.index);
        let Some(head) = tail.strip_suffix(&want) else { return false };
        // What precedes "vfN" names the controller and PF, if anything.
        let pf_ok = self.pf.is_none_or(|p| head.ends_with(&format!("pf{p}")));
        let c_ok = self.controller.is_none_or(|c| head.starts_with(&format!("c{c}")));
        pf_ok && c_ok
    }
}

/// The `key=value` items of devargs' argument list (commas inside brackets,
/// as in `representor=vf[0,2]`, do not split).
pub fn split_args(args: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in args.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ',' if depth <= 0 => {
                out.push(&args[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&args[start..]);
    out.into_iter().map(str::trim).filter(|s| !s.is_empty()).collect()
}

/// The value of `representor=` in an argument list, if any.
pub fn representor_value(args: &str) -> Option<&str> {
    split_args(args).into_iter().find_map(|kv| kv.strip_prefix("representor="))
}

fn number(s: &str) -> Option<(u32, &str)> {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    if end == 0 {
        return None;
    }
    Some((s[..end].parse().ok()?, &s[end..]))
}

/// The single VF or SF representor a `representor=` value names, or `None`
/// when it names several (a range or a list) or something else (a PF).
pub fn one_representor(value: &str) -> Option<OneRepresentor> {
    let mut s = value.trim();
    let mut controller = None;
    let mut pf = None;
    if let Some(rest) = s.strip_prefix('c') {
        let (n, rest) = number(rest)?;
        controller = Some(n);
        s = rest;
    }
    if let Some(rest) = s.strip_prefix("pf") {
        let (n, rest) = number(rest)?;
        pf = Some(n);
        s = rest;
    }
    let kind = if let Some(rest) = s.strip_prefix("vf") {
        s = rest;
        "vf"
    } else if let Some(rest) = s.strip_prefix("sf") {
        s = rest;
        "sf"
    } else if pf.is_some() && s.is_empty() {
        return None; // the PF's own representor
    } else {
        "vf"
    };
    let inner = match s.strip_prefix('[') {
        Some(rest) => rest.strip_suffix(']')?,
        None => s,
    };
    let (index, rest) = number(inner)?;
    rest.is_empty().then_some(OneRepresentor { controller, pf, kind, index })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_split_outside_brackets() {
        assert_eq!(
            split_args("dv_flow_en=1,representor=vf[0,2-3], dv_esw_en=1,"),
            ["dv_flow_en=1", "representor=vf[0,2-3]", "dv_esw_en=1"]
        );
        assert_eq!(representor_value("dv_flow_en=1,representor=vf[0,2]"), Some("vf[0,2]"));
        assert_eq!(representor_value("dv_flow_en=1"), None);
    }

    #[test]
    fn single_representors_and_lists() {
        let vf = |index| Some(OneRepresentor { controller: None, pf: None, kind: "vf", index });
        assert_eq!(one_representor("vf[2]"), vf(2));
        assert_eq!(one_representor("vf2"), vf(2));
        assert_eq!(one_representor("[2]"), vf(2));
        assert_eq!(one_representor("2"), vf(2));
        assert_eq!(
            one_representor("c1pf0vf[7]"),
            Some(OneRepresentor { controller: Some(1), pf: Some(0), kind: "vf", index: 7 })
        );
        assert_eq!(one_representor("sf[3]").map(|r| (r.kind, r.index)), Some(("sf", 3)));
        for several in ["vf[0-3]", "[0,1]", "vf[0,2]", "pf[0-1]vf[0]", "pf1", "", "vf", "vf[x]", "vf[1"] {
            assert_eq!(one_representor(several), None, "{several}");
        }
    }

    #[test]
    fn representor_names() {
        let pci = "0000:08:00.0";
        let r = one_representor("vf[2]").expect("one");
        assert!(r.matches(pci, "0000:08:00.0_representor_vf2"));
        assert!(r.matches(pci, "0000:08:00.0_representor_c0pf0vf2"), "multi-host naming");
        assert!(!r.matches(pci, "0000:08:00.0_representor_vf12"));
        assert!(!r.matches(pci, "0000:08:00.0_representor_vf21"));
        assert!(!r.matches(pci, "0000:08:00.0"), "the PF itself");
        assert!(!r.matches(pci, "0000:08:00.1_representor_vf2"), "another device");
        let r = one_representor("pf1vf2").expect("one");
        assert!(r.matches(pci, "0000:08:00.0_representor_c0pf1vf2"));
        assert!(!r.matches(pci, "0000:08:00.0_representor_c0pf0vf2"));
        let r = one_representor("sf[2]").expect("one");
        assert!(r.matches(pci, "0000:08:00.0_representor_sf2"));
        assert!(!r.matches(pci, "0000:08:00.0_representor_vf2"));
    }
}
