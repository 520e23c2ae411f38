//! What the kernel follower reports: its status and counters (plain data,
//! kept by the underlay tables and shown by `show`, route-show, neigh-show).

/// What the follower reports (route-show, neigh-show, show).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct KernelStatus {
    pub table: u32,
    /// Per uplink: (port name, kernel interface, its index if it exists, up).
    pub uplinks: Vec<(String, String, Option<u32>, bool)>,
    pub counters: Counters,
    /// Routes (per prefix and metric) and neighbours held from the kernel.
    pub kernel_routes: usize,
    pub kernel_neighbours: usize,
    pub ignored_routes: usize,
    pub ignored_neighbours: usize,
    /// When the kernel's tables last changed what the switch uses (Unix
    /// time, seconds).
    pub last_change_unix: Option<f64>,
}

/// Counters of what came in and what was not used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counters {
    /// Netlink messages read (notifications and dump answers).
    pub messages: u64,
    /// Messages that could not be read (malformed, truncated).
    pub bad_messages: u64,
    /// Valid messages of a kind or family we do not follow (bridge FDB
    /// entries, MPLS routes, ...).
    pub unknown_family: u64,
    /// Route messages for other tables than the one followed.
    pub other_table: u64,
    /// Netlink overruns (ENOBUFS: the kernel dropped notifications).
    pub overruns: u64,
    /// Full dumps after start (overruns, link changes, interrupted dumps).
    pub resyncs: u64,
    /// Errors the kernel answered a dump with.
    pub dump_errors: u64,
    /// Datagrams from a process instead of the kernel (dropped).
    pub foreign_senders: u64,
}
