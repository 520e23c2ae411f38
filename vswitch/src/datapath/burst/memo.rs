//! The run checks of ingress: what a burst's packets are compared with so
//! that a packet with the key (or the megaflow) of one before it takes that
//! packet's key or flow without a parse, a hash or a lookup of its own.
//! Each gives up after a few misses in a burst (a burst of many flows).

use crate::packet::parse::{FrameKey, FrameMask, KeyBytes, Layout, TunnelMeta, VxlanBytes};

/// Misses of the burst's run check at ingress (a packet without the key of
/// the last fast-parsed one) after which it stops checking.
const MEMO_MISSES: u32 = 4;

/// The run check of a burst's packets of one kind: the last packet the
/// fast path parsed and the bytes its key is built from (see `KeyBytes`).
/// Only for packets from one port (with one tunnel's metadata, if any).
pub(super) struct RunMemo {
    last: Option<(usize, KeyBytes)>,
    misses: u32,
}

impl RunMemo {
    pub(super) const fn new() -> Self {
        Self { last: None, misses: MEMO_MISSES }
    }

    /// Whether frame `f` has the key of the packet kept: that packet's
    /// index, and `f`'s layout.
    #[inline(always)]
    pub(super) fn check(&self, f: &[u8]) -> Option<(usize, Layout)> {
        let (j, b) = self.last?;
        Some((j, b.same_key(f)?))
    }

    /// Packet `i` (frame `f`) was parsed, by the fast path if `fast`: it is
    /// kept for the next ones. A burst of many flows stops checking after
    /// a few misses (each costs a few cycles; `find_runs` still finds its
    /// runs, by key).
    #[inline(always)]
    pub(super) fn parsed(&mut self, i: usize, fast: bool, f: &[u8]) {
        if self.last.is_some() {
            self.misses = self.misses.saturating_sub(1);
        }
        if self.misses == 0 {
            self.last = None;
        } else if fast {
            self.last = KeyBytes::of(f).map(|b| (i, b));
        }
    }
}

/// The decapsulation run check of a burst from an uplink: the outer bytes
/// of the last VXLAN packet decapsulated after a fast parse, with its
/// tunnel port and metadata, and the run check of the inner packets
/// decapsulated since (all through that one tunnel: a packet whose outer
/// headers take the parse starts it afresh).
pub(super) struct DecapMemo {
    pub(super) outer: Option<(VxlanBytes, u32, TunnelMeta)>,
    outer_misses: u32,
    pub(super) inner: RunMemo,
}

impl DecapMemo {
    pub(super) const fn new() -> Self {
        Self { outer: None, outer_misses: MEMO_MISSES, inner: RunMemo::new() }
    }

    /// A packet's outer bytes were not those kept (packets of many
    /// tunnels, or not VXLAN, stop the check after a few).
    #[inline]
    pub(super) fn outer_miss(&mut self) {
        self.outer_misses = self.outer_misses.saturating_sub(1);
        if self.outer_misses == 0 {
            self.outer = None;
        }
    }

    /// A packet was decapsulated after a parse of its outer headers: keep
    /// them (`None`: they are not the kind `VxlanBytes` holds), and start
    /// the inner run check afresh (its packets may have come through
    /// another tunnel).
    #[inline]
    pub(super) fn decapsulated(&mut self, outer: Option<(VxlanBytes, u32, TunnelMeta)>) {
        if self.outer_misses > 0 {
            self.outer = outer;
        }
        self.inner = RunMemo::new();
    }
}

/// The run check of a burst's framed packets: the last packet that took
/// its own frame key (and that key), and the misses left before it stops
/// checking (as [`RunMemo`]).
pub(super) struct FrameMemo {
    last: Option<(usize, FrameKey)>,
    misses: u32,
}

impl FrameMemo {
    pub(super) const fn new() -> Self {
        Self { last: None, misses: MEMO_MISSES }
    }

    /// The packet kept, if frame `f` from `in_port` has its key (see
    /// [`FrameKey::same_frame`]); otherwise a miss counted.
    #[inline(always)]
    pub(super) fn check(&mut self, f: &[u8], in_port: u32) -> Option<usize> {
        let (j, last) = self.last.as_ref()?;
        if last.same_frame(f, in_port) {
            return Some(*j);
        }
        self.misses -= 1;
        if self.misses == 0 {
            self.last = None;
        }
        None
    }

    /// Packet `i` took frame key `key` of its own: kept for the next ones
    /// (unless the check has given up).
    #[inline(always)]
    pub(super) fn took(&mut self, i: usize, key: FrameKey) {
        if self.misses > 0 {
            self.last = Some((i, key));
        }
    }
}

/// The megaflow check of a burst's framed packets: the frame mask of the
/// one mask every live flow has, and the last packet that took a lookup of
/// its own (with its frame key). A frame key equal to that one under the
/// mask is a packet of the same megaflow. Gives up after a few misses, as
/// [`FrameMemo`] does (a burst of many megaflows).
pub(super) struct MaskMemo {
    mask: Option<FrameMask>,
    last: Option<(usize, FrameKey)>,
    misses: u32,
}

impl MaskMemo {
    pub(super) const fn new(mask: Option<FrameMask>) -> Self {
        Self { mask, last: None, misses: MEMO_MISSES }
    }

    /// The packet kept, if frame key `key` is of its megaflow (otherwise a
    /// miss counted), with its frame key and the mask.
    #[inline(always)]
    pub(super) fn check(&mut self, key: &FrameKey) -> Option<(usize, FrameKey, FrameMask)> {
        let mask = self.mask.as_ref()?;
        let (j, last) = self.last.as_ref()?;
        if last.eq_masked(key, mask) {
            return Some((*j, *last, *mask));
        }
        self.misses -= 1;
        if self.misses == 0 {
            self.mask = None;
        }
        None
    }

    /// Whether it still compares (it has a mask and has not given up).
    #[inline(always)]
    pub(super) fn checking(&self) -> bool {
        self.mask.is_some()
    }

    /// Packet `i`, with frame key `key`, is looked up by itself: the next
    /// ones are compared with it.
    #[inline(always)]
    pub(super) fn took(&mut self, i: usize, key: FrameKey) {
        if self.mask.is_some() {
            self.last = Some((i, key));
        }
    }
}
