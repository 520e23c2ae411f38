//! The burst engine: what a PMD does to a burst of packets, as a sequence of
//! named stages, with no DPDK. It is generic over [`Io`] (where packets go
//! out, how they are copied) and over the packet type (an mbuf in the
//! datapath, a `VecPacket` in tests), so every stage and whole bursts are
//! tested on plain buffers.
//!
//! Stages, in order ([`Engine::process`]), one file each by concern:
//! 1. [`Engine::stage_hardware`]: the model e-switch, when one is configured,
//!    takes the packets its rules match (as a NIC would before the
//!    representor) and sends them itself;
//! 2. [`Engine::stage_ingress`]: parse (the key hashed by the parser), or,
//!    while the exact-match cache is looked up, a frame key read from the
//!    bytes of a frame the parser's fast path would take (the flow key is
//!    built only when a later stage needs it); on uplinks the VTEP answers
//!    ARP/ND for its addresses and decapsulates VXLAN sent to them; then
//!    runs: packets with the key of the packet before them; and, while
//!    every live flow has one mask, megaflow runs: framed packets whose
//!    frame keys equal the last looked-up packet's in the bytes that mask
//!    covers ([`FrameMask`](crate::packet::parse::FrameMask), frame keys
//!    made for them even while the cache is passed by); once a run or a
//!    megaflow run is found, the packets after it that continue it are
//!    taken in a loop that does nothing else;
//! 3. [`Engine::stage_emc`]: the exact-match cache, by frame key or flow
//!    key: every key's home entry prefetched, then compared; the keys not
//!    at home looked up through the tags in three more passes (each a pass
//!    so that cache misses overlap); a run's packets take its first
//!    packet's flow, a megaflow run's that packet's flow when it has the
//!    mask (counted as megaflow hits); the misses get their flow keys
//!    (while the cache misses nearly always, [`Engine::stage_emc_bypassed`]
//!    sends the packets to the megaflow classifier without a lookup);
//! 4. [`Engine::stage_smc`]: the signature-match cache for the misses, once
//!    there are several megaflow masks;
//! 5. [`Engine::stage_megaflow`]: the megaflow classifier for the rest, as
//!    one batch;
//! 6. [`Engine::stage_fresh`]: while a revalidation runs, packets that found
//!    a stale flow have it revalidated first;
//! 7. [`Engine::stage_upcall`]: the rule table for the rest, within the
//!    iteration's upcall budget, installing megaflows;
//! 8. [`Groups::fill`]: packets grouped by flow (a burst whose packets are
//!    all runs of one packet's key is one group without a pass);
//! 9. [`Engine::stage_execute`]: each group counted on its flow; the
//!    actions run once per batch of groups in a row that share their action
//!    list (one rule), per action across the batch.
//!
//! Files: `engine` (the state and the pipeline), `ingress` (2) with
//! `memo` (its run checks), `stages`
//! (1, 3-7), `gate` (whether 3 looks the cache up or passes it by while it
//! misses), `egress` (9), `lifecycle` (install, eviction, events, expiry,
//! revalidation, dumps), `hot` (hot-flow tracking for the offload policy);
//! `tests` beside them, split the same way.

mod egress;
mod engine;
mod gate;
mod hot;
mod ingress;
mod lifecycle;
mod memo;
mod stages;

pub use crate::flow::Bits;
pub use engine::{
    take_members, Engine, EngineSetup, Framing, Groups, Hardware, HotPolicy, Io, Packets, PmdConfig, RevalidateReport,
    BURST, RX_BURST,
};
pub use stages::{flow_actions, l2_len, megaflow_mask};

#[cfg(test)]
mod tests;
