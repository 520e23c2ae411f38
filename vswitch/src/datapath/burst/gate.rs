//! Whether a burst looks the exact-match cache up: the cache is passed by
//! while its hit rate is too low to pay for its lookups.

/// Lookups in a window of the exact-match cache's hit rate.
const EMC_WINDOW: u32 = 4096;
/// While the cache is passed by, one burst in this many looks it up all
/// the same (the hit rate stays measured).
const EMC_PROBE_EVERY: u32 = 16;
/// The cache is passed by when fewer than one lookup in this many hits.
const EMC_MIN_HIT_SHARE: u32 = 8;

/// Whether the exact-match cache is worth its lookups. With far more
/// flows than entries (100k and 1M flows against 8,192 entries) nearly
/// every lookup misses and the packet goes on to the megaflow classifier
/// anyway; the lookups, and the insertions that evict entries to make room
/// for flows seen once, are pure cost (about 20 cycles a packet at 100k
/// and 1M flows). So when fewer than one lookup in [`EMC_MIN_HIT_SHARE`]
/// hits over a window of [`EMC_WINDOW`] lookups, and a miss is cheap (few
/// megaflow masks: the classifier answers in one or two probes, below the
/// count that turns the signature cache on), bursts neither look the cache
/// up nor insert into it, but for one in [`EMC_PROBE_EVERY`]: those probe
/// bursts keep the hit rate measured and keep inserting, so once the
/// traffic narrows to flows the cache can hold, the probes hit more and
/// more, and lookups resume at the end of a window (at 1,000 flows and the
/// default 1-in-100 insertion, after about 200k packets).
#[derive(Debug, Default)]
pub struct EmcGate {
    lookups: u32,
    hits: u32,
    bypass: bool,
    bursts: u32,
    /// The burst in flight passes the cache by (no insertions either).
    skipping: bool,
}

impl EmcGate {
    /// Whether this burst looks the cache up.
    #[inline(always)]
    pub fn lookup_now(&mut self) -> bool {
        if !self.bypass {
            self.skipping = false;
            return true;
        }
        self.bursts = self.bursts.wrapping_add(1);
        self.skipping = !self.bursts.is_multiple_of(EMC_PROBE_EVERY);
        !self.skipping
    }

    /// A burst looked up `lookups` keys and `hits` of them hit;
    /// `cheap_misses`: whether a miss costs the classifier little.
    #[inline(always)]
    pub fn account(&mut self, lookups: u32, hits: u32, cheap_misses: bool) {
        self.lookups += lookups;
        self.hits += hits;
        if self.lookups >= EMC_WINDOW {
            self.bypass = cheap_misses && self.hits * EMC_MIN_HIT_SHARE < self.lookups;
            self.lookups = 0;
            self.hits = 0;
        }
    }

    /// Whether the burst in flight passes the cache by: no lookups, no
    /// insertions after a megaflow hit.
    #[inline(always)]
    pub fn skipping(&self) -> bool {
        self.skipping
    }

    /// Whether bursts pass the cache by (but for probes).
    #[cfg(test)]
    pub fn bypassed(&self) -> bool {
        self.bypass
    }
}
