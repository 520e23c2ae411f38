//! IP prefixes: the one place that parses `ADDRESS/LEN` text, computes masks
//! and tests membership (routes, uplink addresses, rule fields).

#![forbid(unsafe_code)]

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An address with a prefix length. The address may have host bits (an
/// uplink's `198.18.0.1/24`); [`Prefix::network`] clears them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct Prefix {
    pub addr: IpAddr,
    pub len: u8,
}

/// Why prefix text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    #[error("{0:?} is not an IP address")]
    Address(String),
    #[error("{0:?}: expected ADDRESS/LEN, e.g. 198.18.1.0/24")]
    Form(String),
    #[error("prefix length {len} is too long for {addr} (at most {max})")]
    Length { addr: IpAddr, len: u8, max: u8 },
}

/// The longest prefix of `addr`'s family.
pub fn max_len(addr: IpAddr) -> u8 {
    if addr.is_ipv4() {
        32
    } else {
        128
    }
}

/// The mask of `len` bits for `addr`'s family, right-aligned in a u128
/// (IPv4 in the low 32 bits).
pub fn mask_bits(addr: IpAddr, len: u8) -> u128 {
    let width = u32::from(max_len(addr));
    let len = u32::from(len).min(width);
    if len == 0 {
        0
    } else {
        let ones = u128::MAX << (128 - len);
        ones >> (128 - width)
    }
}

fn bits(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn from_bits(like: IpAddr, v: u128) -> IpAddr {
    match like {
        IpAddr::V4(_) => IpAddr::V4((v as u32).into()),
        IpAddr::V6(_) => IpAddr::V6(v.into()),
    }
}

impl Prefix {
    /// A prefix, checking the length against the family.
    ///
    /// # Errors
    /// [`PrefixError::Length`].
    pub fn new(addr: IpAddr, len: u8) -> Result<Self, PrefixError> {
        let max = max_len(addr);
        if len > max {
            return Err(PrefixError::Length { addr, len, max });
        }
        Ok(Self { addr, len })
    }

    /// A host route (/32 or /128).
    pub fn host(addr: IpAddr) -> Self {
        Self { addr, len: max_len(addr) }
    }

    /// `ADDRESS` alone (a host) or `ADDRESS/LEN`.
    ///
    /// # Errors
    /// [`PrefixError`] saying what was wrong.
    pub fn parse_host_or_prefix(text: &str) -> Result<Self, PrefixError> {
        match text.split_once('/') {
            Some(_) => text.parse(),
            None => {
                let addr = text.trim().parse::<IpAddr>().map_err(|_| PrefixError::Address(text.to_owned()))?;
                Ok(Self::host(addr))
            }
        }
    }

    /// The prefix with its host bits cleared.
    pub fn network(&self) -> Self {
        Self { addr: from_bits(self.addr, bits(self.addr) & mask_bits(self.addr, self.len)), len: self.len }
    }

    /// Whether the address has host bits beyond the prefix.
    pub fn has_host_bits(&self) -> bool {
        bits(self.addr) & !mask_bits(self.addr, self.len) != 0
    }

    /// Whether `addr` (of the same family) lies inside.
    pub fn contains(&self, addr: IpAddr) -> bool {
        if addr.is_ipv4() != self.addr.is_ipv4() {
            return false;
        }
        let m = mask_bits(self.addr, self.len);
        bits(addr) & m == bits(self.addr) & m
    }

    pub fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }
}

impl FromStr for Prefix {
    type Err = PrefixError;

    /// `ADDRESS/LEN`.
    fn from_str(text: &str) -> Result<Self, PrefixError> {
        let (a, l) = text.trim().split_once('/').ok_or_else(|| PrefixError::Form(text.to_owned()))?;
        let addr = a.parse::<IpAddr>().map_err(|_| PrefixError::Address(a.to_owned()))?;
        let len = l.parse::<u8>().map_err(|_| PrefixError::Form(text.to_owned()))?;
        Self::new(addr, len)
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Prefix {
        s.parse().expect(s)
    }

    #[test]
    fn parse_mask_contain() {
        assert_eq!(p("198.18.0.1/24").network(), p("198.18.0.0/24"));
        assert!(p("198.18.0.1/24").has_host_bits() && !p("198.18.0.0/24").has_host_bits());
        assert!(p("10.0.0.0/8").contains("10.255.1.2".parse().expect("ip")));
        assert!(!p("10.0.0.0/8").contains("11.0.0.1".parse().expect("ip")));
        assert!(!p("0.0.0.0/0").contains("::1".parse().expect("ip")), "families never mix");
        assert!(p("2001:db8::/32").contains("2001:db8:1::5".parse().expect("ip")));
        assert_eq!(p("2001:db8::1/128").network(), p("2001:db8::1/128"));
        assert_eq!(mask_bits("1.2.3.4".parse().expect("ip"), 8), 0xff00_0000);
        assert_eq!(mask_bits("::1".parse().expect("ip"), 0), 0);
        assert_eq!(
            "10.0.0.0/33".parse::<Prefix>(),
            Err(PrefixError::Length { addr: "10.0.0.0".parse().expect("ip"), len: 33, max: 32 })
        );
        assert!(matches!("10.0.0.0".parse::<Prefix>(), Err(PrefixError::Form(_))));
        assert!(matches!("x/8".parse::<Prefix>(), Err(PrefixError::Address(_))));
        assert_eq!(Prefix::parse_host_or_prefix("10.1.2.3").map(|p| p.len), Ok(32));
        assert_eq!(p("10.0.0.0/8").to_string(), "10.0.0.0/8");
    }
}
