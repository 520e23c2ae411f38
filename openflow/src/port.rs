//! `ofp_port` (port descriptions) and `ofp_port_stats`.

use crate::error::{ErrorCode as E, OrLen, Rejection};
use crate::wire::{fixed_str, Reader, Writer};

/// `OFPPC_PORT_DOWN`.
pub const CONFIG_PORT_DOWN: u32 = 1;
/// `OFPPS_LINK_DOWN`.
pub const STATE_LINK_DOWN: u32 = 1;
/// `OFPPS_LIVE`.
pub const STATE_LIVE: u32 = 4;
/// `OFPPF_OTHER`: a rate the other bits do not name.
pub const FEATURES_OTHER: u32 = 1 << 10;

/// A port's description (`ofp_port`, 64 bytes).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PortDesc {
    pub port_no: u32,
    pub hw_addr: [u8; 6],
    pub name: String,
    pub config: u32,
    pub state: u32,
    pub curr: u32,
    pub advertised: u32,
    pub supported: u32,
    pub peer: u32,
    /// kbps.
    pub curr_speed: u32,
    pub max_speed: u32,
}

impl PortDesc {
    pub const LEN: usize = 64;

    pub fn encode(&self, w: &mut Writer) {
        w.u32(self.port_no).zeros(4).bytes(&self.hw_addr).zeros(2).fixed_str(&self.name, 16);
        for v in [
            self.config,
            self.state,
            self.curr,
            self.advertised,
            self.supported,
            self.peer,
            self.curr_speed,
            self.max_speed,
        ] {
            w.u32(v);
        }
    }

    pub fn decode(r: &mut Reader<'_>) -> Result<Self, Rejection> {
        let mut b = r.sub(Self::LEN).or_len(E::BadRequestBadLen, "ofp_port")?;
        let bl = E::BadRequestBadLen;
        let port_no = b.u32().or_len(bl, "ofp_port")?;
        b.skip(4).or_len(bl, "ofp_port")?;
        let hw_addr = b.array().or_len(bl, "ofp_port")?;
        b.skip(2).or_len(bl, "ofp_port")?;
        let name = fixed_str(b.bytes(16).or_len(bl, "ofp_port")?);
        let mut v = [0u32; 8];
        for x in &mut v {
            *x = b.u32().or_len(bl, "ofp_port")?;
        }
        Ok(Self {
            port_no,
            hw_addr,
            name,
            config: v[0],
            state: v[1],
            curr: v[2],
            advertised: v[3],
            supported: v[4],
            peer: v[5],
            curr_speed: v[6],
            max_speed: v[7],
        })
    }
}

/// One port's counters (`ofp_port_stats`, 112 bytes).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PortStats {
    pub port_no: u32,
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_dropped: u64,
    pub tx_dropped: u64,
    pub rx_errors: u64,
    pub tx_errors: u64,
    pub rx_frame_err: u64,
    pub rx_over_err: u64,
    pub rx_crc_err: u64,
    pub collisions: u64,
    pub duration_sec: u32,
    pub duration_nsec: u32,
}

impl PortStats {
    pub const LEN: usize = 112;

    fn counters(&self) -> [u64; 12] {
        [
            self.rx_packets,
            self.tx_packets,
            self.rx_bytes,
            self.tx_bytes,
            self.rx_dropped,
            self.tx_dropped,
            self.rx_errors,
            self.tx_errors,
            self.rx_frame_err,
            self.rx_over_err,
            self.rx_crc_err,
            self.collisions,
        ]
    }

    pub fn encode(&self, w: &mut Writer) {
        w.u32(self.port_no).zeros(4);
        for c in self.counters() {
            w.u64(c);
        }
        w.u32(self.duration_sec).u32(self.duration_nsec);
    }

    pub fn decode(r: &mut Reader<'_>) -> Result<Self, Rejection> {
        let mut b = r.sub(Self::LEN).or_len(E::BadRequestBadLen, "ofp_port_stats")?;
        let bl = E::BadRequestBadLen;
        let port_no = b.u32().or_len(bl, "ofp_port_stats")?;
        b.skip(4).or_len(bl, "ofp_port_stats")?;
        let mut c = [0u64; 12];
        for x in &mut c {
            *x = b.u64().or_len(bl, "ofp_port_stats")?;
        }
        Ok(Self {
            port_no,
            rx_packets: c[0],
            tx_packets: c[1],
            rx_bytes: c[2],
            tx_bytes: c[3],
            rx_dropped: c[4],
            tx_dropped: c[5],
            rx_errors: c[6],
            tx_errors: c[7],
            rx_frame_err: c[8],
            rx_over_err: c[9],
            rx_crc_err: c[10],
            collisions: c[11],
            duration_sec: b.u32().or_len(bl, "ofp_port_stats")?,
            duration_nsec: b.u32().or_len(bl, "ofp_port_stats")?,
        })
    }
}
