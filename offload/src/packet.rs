//! Packets as the model e-switch (and the switch's software actions) edit
//! them: a byte buffer whose front can grow and shrink, like an mbuf.
//!
//! The trait lives here, at the bottom of the dependency graph, so that the
//! switch's mbufs and test buffers implement it once for both the software
//! actions and the model.

/// A packet whose front can grow and shrink (an mbuf or a test buffer).
pub trait PacketBuf {
    fn data(&self) -> &[u8];
    fn data_mut(&mut self) -> &mut [u8];
    /// Grows the front by `n` bytes and returns them, or `None` without room.
    fn prepend(&mut self, n: u16) -> Option<&mut [u8]>;
    /// Removes `n` bytes from the front; false (no change) if too short.
    fn adj(&mut self, n: u16) -> bool;
    /// Removes `n` bytes from the end; false (no change) if too short.
    fn trim(&mut self, n: u16) -> bool;
    /// Replaces the whole packet with `bytes`; false (no change) without room.
    fn replace(&mut self, bytes: &[u8]) -> bool;
    /// The packet's whole length (all segments).
    fn len(&self) -> usize {
        self.data().len()
    }
    /// Whether the packet has no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Whether `data()` is the whole packet (one segment).
    fn is_contiguous(&self) -> bool {
        true
    }
}

/// A heap packet with headroom, like an mbuf (tests, benchmarks, tools).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VecPacket {
    buf: Vec<u8>,
    start: usize,
}

impl VecPacket {
    /// `frame` with `headroom` free bytes in front.
    pub fn new(frame: &[u8], headroom: usize) -> Self {
        let mut buf = vec![0u8; headroom + frame.len()];
        buf[headroom..].copy_from_slice(frame);
        Self { buf, start: headroom }
    }

    /// Resets to `frame` keeping the allocation (benchmarks).
    pub fn reset(&mut self, frame: &[u8], headroom: usize) {
        self.buf.resize(headroom + frame.len(), 0);
        self.buf[headroom..].copy_from_slice(frame);
        self.start = headroom;
    }
}

impl PacketBuf for VecPacket {
    fn data(&self) -> &[u8] {
        &self.buf[self.start..]
    }
    fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..]
    }
    fn prepend(&mut self, n: u16) -> Option<&mut [u8]> {
        let n = usize::from(n);
        if n > self.start {
            return None;
        }
        self.start -= n;
        Some(&mut self.buf[self.start..self.start + n])
    }
    fn adj(&mut self, n: u16) -> bool {
        let n = usize::from(n);
        if n > self.buf.len() - self.start {
            return false;
        }
        self.start += n;
        true
    }
    fn trim(&mut self, n: u16) -> bool {
        let n = usize::from(n);
        if n > self.buf.len() - self.start {
            return false;
        }
        self.buf.truncate(self.buf.len() - n);
        true
    }
    fn replace(&mut self, bytes: &[u8]) -> bool {
        self.buf.truncate(self.start);
        self.buf.extend_from_slice(bytes);
        true
    }
}

/// The internet checksum (RFC 1071) of `data`, folded and complemented.
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum(data, 0))
}

/// One's-complement sum of `data` (big-endian 16-bit words, an odd last
/// byte padded) added to `initial`, not yet folded. The one checksum sum of
/// the workspace: the switch's packet code uses it too.
#[inline]
pub fn sum(data: &[u8], initial: u64) -> u64 {
    let mut acc = initial;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        // Add 32-bit halves so the 64-bit accumulator cannot overflow for any
        // packet size we handle.
        acc += (w >> 32) + (w & 0xffff_ffff);
    }
    let rest = chunks.remainder();
    let mut pairs = rest.chunks_exact(2);
    for c in &mut pairs {
        acc += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = pairs.remainder() {
        acc += u64::from(*last) << 8;
    }
    acc
}

/// Folds a sum to 16 bits (not complemented).
#[inline]
pub fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepend_adj_trim() {
        let mut p = VecPacket::new(&[1, 2, 3, 4], 2);
        assert!(p.prepend(3).is_none(), "only 2 bytes of headroom");
        p.prepend(2).expect("room").copy_from_slice(&[9, 9]);
        assert_eq!(p.data(), &[9, 9, 1, 2, 3, 4]);
        assert!(p.adj(3));
        assert!(p.trim(1));
        assert_eq!(p.data(), &[2, 3]);
        assert!(!p.adj(3) && !p.trim(3), "too short: unchanged");
        assert_eq!(p.data(), &[2, 3]);
    }

    #[test]
    fn checksum_of_a_known_header() {
        // RFC 1071 example words.
        let h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8,
            0x00, 0xc7,
        ];
        assert_eq!(checksum(&h), 0);
    }
}
