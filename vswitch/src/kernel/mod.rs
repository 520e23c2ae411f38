//! The underlay from the Linux kernel: routes, neighbours and link state
//! over rtnetlink, for `[underlay] routes = "kernel"` or `"both"`.
//!
//! Each uplink with a `kernel_ifname` stands for that kernel interface (the
//! PF's netdev on a bifurcated ConnectX, a tap, a veth). At start the
//! follower subscribes to link, neighbour and IPv4/IPv6 route notifications,
//! then dumps links, routes and neighbours on a second socket (events that
//! arrive meanwhile wait in the first and replay on top: each is keyed, so
//! the latest wins). Routes of the followed table through an uplink's
//! interface, and neighbours on one, go into the switch's tables (source
//! `kernel`); other routes are listed with why in `route-show`. An uplink
//! interface's link going up, down or away, an overrun (ENOBUFS: the kernel
//! dropped notifications) or an interrupted dump leads to a fresh dump,
//! applied as a diff. Bad
//! messages are counted, never fatal. Changes apply like `vswitchctl
//! route-add`: cached flows re-resolve at once, offloaded flows are replaced
//! make-before-break.

pub mod decode;
pub mod state;
mod status;

pub use status::{Counters, KernelStatus};

use crate::config::{Config, UnderlaySpec};
use crate::dpdk::os;
use crate::ratelimit::RateLimited;
use decode::{decode, Event};
use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_REQUEST};
use netlink_packet_route::link::LinkMessage;
use netlink_packet_route::neighbour::NeighbourMessage;
use netlink_packet_route::route::RouteMessage;
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use state::{Applied, KernelState, Uplink, View};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

// rtnetlink multicast groups (linux/rtnetlink.h).
const RTNLGRP_LINK: u32 = 1;
const RTNLGRP_NEIGH: u32 = 3;
const RTNLGRP_IPV4_ROUTE: u32 = 7;
const RTNLGRP_IPV6_ROUTE: u32 = 11;

/// A datagram buffer: notifications are small; dump answers up to 32 KiB.
const RECV_BUFFER: usize = 256 << 10;

/// Where the follower hands what it read: the switch's tables. A failure
/// is logged by the follower and retried with the next change.
pub trait KernelSink: Send + Sync {
    /// Applies the kernel's view (`None`: only the counters changed) and
    /// status.
    ///
    /// # Errors
    /// Why the switch could not apply it.
    fn apply_kernel(&self, view: Option<View>, status: KernelStatus) -> Result<(), String>;
}

/// The running follower.
pub struct Follower {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Follower {
    /// Opens the sockets, dumps the kernel's tables into the switch, and
    /// follows them from a thread. `None` when the configuration does not
    /// follow the kernel.
    ///
    /// # Errors
    /// When a netlink socket cannot be opened or the first dump fails.
    pub fn start(config: &Config, sink: Arc<dyn KernelSink>) -> std::io::Result<Option<Self>> {
        let spec = config.underlay;
        if !spec.routes.follows_kernel() {
            return Ok(None);
        }
        let uplinks: Vec<Uplink> = config
            .ports
            .iter()
            .enumerate()
            .filter_map(|(i, p)| {
                p.kernel_ifname.as_ref().map(|k| Uplink { ifname: k.clone(), port: i as u32, name: p.name.clone() })
            })
            .collect();
        let mut f = Follow::open(spec, uplinks, sink)?;
        f.resync(false)?;
        f.publish(true);
        let (routes, neighbours) = f.state.sizes();
        tracing::info!(
            table = spec.table,
            routes,
            neighbours,
            uplinks = %f.describe_uplinks(),
            "following the kernel's routes and neighbours"
        );
        for (name, ifname, index, _) in f.status().uplinks {
            if index.is_none() {
                tracing::warn!(uplink = %name, kernel_ifname = %ifname, "no such kernel interface (yet): its kernel routes are used once it appears");
            }
        }
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::Builder::new().name("netlink".into()).spawn(move || f.run(&stop))?
        };
        Ok(Some(Self { stop, thread: Some(thread) }))
    }

    /// Stops the thread (it wakes at least every 100 ms) and waits for it.
    pub fn stop(self) {
        drop(self);
    }

    /// Whether the thread still runs (it ends only when stopped).
    pub fn alive(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Follow {
    spec: UnderlaySpec,
    uplinks: Vec<Uplink>,
    sink: Arc<dyn KernelSink>,
    events: Socket,
    dumps: Socket,
    seq: u32,
    state: KernelState,
    counters: Counters,
    buf: Vec<u8>,
    decoded: Vec<Event>,
    /// Ignored (routes, neighbours) in the last view.
    ignored: (usize, usize),
}

fn io_err(what: &str, e: std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{what}: {e}"))
}

impl Follow {
    fn open(spec: UnderlaySpec, uplinks: Vec<Uplink>, sink: Arc<dyn KernelSink>) -> std::io::Result<Self> {
        let mut events = Socket::new(NETLINK_ROUTE).map_err(|e| io_err("netlink socket", e))?;
        events.bind(&SocketAddr::new(0, 0)).map_err(|e| io_err("netlink bind", e))?;
        for g in [RTNLGRP_LINK, RTNLGRP_NEIGH, RTNLGRP_IPV4_ROUTE, RTNLGRP_IPV6_ROUTE] {
            events.add_membership(g).map_err(|e| io_err("netlink multicast group", e))?;
        }
        if let Err(e) = events.set_rx_buf_sz(spec.netlink_rcvbuf as usize) {
            tracing::warn!("cannot set the netlink receive buffer to {} bytes: {e}", spec.netlink_rcvbuf);
        }
        // SO_RCVBUFFORCE lets root go above net.core.rmem_max.
        let _ = os::set_socket_option(&events, libc::SO_RCVBUFFORCE, spec.netlink_rcvbuf as libc::c_int);
        events.set_non_blocking(true)?;
        let mut dumps = Socket::new(NETLINK_ROUTE).map_err(|e| io_err("netlink socket", e))?;
        dumps.bind_auto().map_err(|e| io_err("netlink bind", e))?;
        os::set_receive_timeout(&dumps, Duration::from_secs(5))?;
        Ok(Self {
            spec,
            uplinks,
            sink,
            events,
            dumps,
            seq: 0,
            state: KernelState::default(),
            counters: Counters::default(),
            buf: Vec::with_capacity(RECV_BUFFER),
            decoded: Vec::new(),
            ignored: (0, 0),
        })
    }

    fn describe_uplinks(&self) -> String {
        self.uplinks.iter().map(|u| format!("{}={}", u.name, u.ifname)).collect::<Vec<_>>().join(", ")
    }

    fn status(&self) -> KernelStatus {
        let (kernel_routes, kernel_neighbours) = self.state.sizes();
        let uplinks = self
            .uplinks
            .iter()
            .map(|u| {
                let link = self.state.links.iter().find(|(_, l)| l.name == u.ifname);
                (u.name.clone(), u.ifname.clone(), link.map(|(i, _)| *i), link.is_some_and(|(_, l)| l.up))
            })
            .collect();
        KernelStatus {
            table: self.spec.table,
            uplinks,
            counters: self.counters,
            kernel_routes,
            kernel_neighbours,
            ignored_routes: 0,
            ignored_neighbours: 0,
            last_change_unix: None,
        }
    }

    /// Hands the switch the current view (when the state `changed`) and
    /// the counters.
    fn publish(&mut self, changed: bool) {
        let view = changed.then(|| self.state.view(&self.uplinks));
        if let Some(v) = &view {
            self.ignored = (v.ignored_route_count, v.ignored_neighbours);
        }
        let mut status = self.status();
        (status.ignored_routes, status.ignored_neighbours) = self.ignored;
        if let Err(e) = self.sink.apply_kernel(view, status) {
            tracing::warn!("applying the kernel's routes and neighbours: {e}");
        }
    }

    fn run(mut self, stop: &AtomicBool) {
        let mut pending_resync = false;
        let mut dump_log = RateLimited::new(Duration::from_secs(10));
        let mut overrun_log = RateLimited::new(Duration::from_secs(10));
        while !stop.load(Ordering::Relaxed) {
            if pending_resync {
                pending_resync = false;
                self.counters.resyncs += 1;
                if let Err(e) = self.resync(true) {
                    if let Some(held) = dump_log.check() {
                        tracing::warn!(held_back = held, "netlink dump failed (trying again every 100 ms): {e}");
                    }
                    pending_resync = true;
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
                self.publish(true);
                continue;
            }
            if !os::wait_readable(&self.events, Duration::from_millis(100)).unwrap_or(false) {
                continue;
            }
            let mut changed = false;
            let started = Instant::now();
            // Drain what is there (bounded, so a flood still lets us apply).
            while started.elapsed() < Duration::from_millis(50) {
                self.buf.clear();
                match self.events.recv_from(&mut self.buf, 0) {
                    Ok((n, _)) if n > self.buf.len() => {
                        self.counters.bad_messages += 1;
                    }
                    // Only the kernel (port 0) speaks for the kernel's tables.
                    Ok((_, from)) if from.port_number() != 0 => {
                        self.counters.foreign_senders += 1;
                    }
                    Ok(_) => {
                        let mut decoded = std::mem::take(&mut self.decoded);
                        decoded.clear();
                        decode(&self.buf, &mut decoded);
                        for ev in &decoded {
                            self.counters.messages += 1;
                            let ours = self.is_uplink_link(ev);
                            match self.state.apply(ev, self.spec.table, &mut self.counters) {
                                Applied::Nothing => {}
                                Applied::Changed => changed = true,
                                // Only an uplink's interface is worth a dump
                                // (VM taps come and go on an NFV host).
                                Applied::LinkChanged => {
                                    changed = true;
                                    pending_resync |= ours;
                                }
                            }
                        }
                        self.decoded = decoded;
                    }
                    Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                        self.counters.overruns += 1;
                        if let Some(held) = overrun_log.check() {
                            tracing::warn!(
                                held_back = held,
                                "netlink overrun: the kernel dropped notifications (receive buffer {} bytes, \
                                 [underlay] netlink_rcvbuf); dumping again",
                                self.spec.netlink_rcvbuf
                            );
                        }
                        // What is queued is older than the dump to come.
                        self.discard_queued();
                        pending_resync = true;
                        break;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        tracing::warn!("netlink receive: {e}");
                        std::thread::sleep(Duration::from_millis(100));
                        break;
                    }
                }
            }
            if changed && !pending_resync {
                self.publish(true);
            } else if !pending_resync {
                // Counters only.
                self.publish(false);
            }
        }
    }

    /// Whether a link event concerns an uplink's kernel interface (by its
    /// new name or the name it had).
    fn is_uplink_link(&self, ev: &Event) -> bool {
        let index = match ev {
            Event::Link { index, name: Some(n), .. } if self.uplinks.iter().any(|u| u.ifname == *n) => return true,
            Event::Link { index, .. } | Event::LinkGone { index } => index,
            _ => return false,
        };
        self.state.links.get(index).is_some_and(|l| self.uplinks.iter().any(|u| u.ifname == l.name))
    }

    fn discard_queued(&mut self) {
        // Bounded: under an endless flood the dump goes ahead anyway (what is
        // left replays on top of it, each change keyed, the latest winning).
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(1) {
            self.buf.clear();
            match self.events.recv(&mut self.buf, 0) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {}
                Err(_) => return,
            }
        }
    }

    /// Dumps links, routes and neighbours into a fresh state (again while
    /// the kernel says a dump was interrupted, up to 5 times).
    fn resync(&mut self, log: bool) -> std::io::Result<()> {
        let mut fresh = KernelState::default();
        for attempt in 1..=5 {
            fresh = KernelState::default();
            let mut interrupted = false;
            for request in dump_requests() {
                interrupted |= self.dump(request, &mut fresh)?;
            }
            if !interrupted {
                break;
            }
            tracing::debug!(attempt, "netlink dump interrupted by a change; dumping again");
        }
        if log {
            let (routes, neighbours) = fresh.sizes();
            tracing::info!(routes, neighbours, "kernel tables dumped again");
        }
        self.state = fresh;
        Ok(())
    }

    /// One dump; whether the kernel flagged it interrupted.
    fn dump(&mut self, request: RouteNetlinkMessage, into: &mut KernelState) -> std::io::Result<bool> {
        self.seq = self.seq.wrapping_add(1);
        let mut msg = NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::InnerMessage(request));
        msg.header.flags = NLM_F_REQUEST | NLM_F_DUMP;
        msg.header.sequence_number = self.seq;
        msg.finalize();
        let mut out = vec![0; msg.buffer_len()];
        msg.serialize(&mut out);
        self.dumps.send(&out, 0).map_err(|e| io_err("netlink dump request", e))?;
        let mut interrupted = false;
        loop {
            self.buf.clear();
            let (n, from) = self.dumps.recv_from(&mut self.buf, 0).map_err(|e| io_err("netlink dump", e))?;
            if from.port_number() != 0 {
                self.counters.foreign_senders += 1;
                continue;
            }
            if n > self.buf.len() {
                self.counters.bad_messages += 1;
                continue;
            }
            let mut decoded = std::mem::take(&mut self.decoded);
            decoded.clear();
            decode(&self.buf, &mut decoded);
            let mut done = false;
            for ev in &decoded {
                self.counters.messages += 1;
                match ev {
                    Event::Done { interrupted: i } => {
                        interrupted |= *i;
                        done = true;
                    }
                    Event::Error(code) if *code != 0 => {
                        self.counters.dump_errors += 1;
                        tracing::warn!(
                            "the kernel refused a netlink dump: {}",
                            std::io::Error::from_raw_os_error(-code)
                        );
                        done = true;
                    }
                    ev => {
                        into.apply(ev, self.spec.table, &mut self.counters);
                    }
                }
            }
            self.decoded = decoded;
            if done {
                return Ok(interrupted);
            }
        }
    }
}

fn dump_requests() -> Vec<RouteNetlinkMessage> {
    let mut out = vec![RouteNetlinkMessage::GetLink(LinkMessage::default())];
    for family in [AddressFamily::Inet, AddressFamily::Inet6] {
        let mut r = RouteMessage::default();
        r.header.address_family = family;
        out.push(RouteNetlinkMessage::GetRoute(r));
    }
    for family in [AddressFamily::Inet, AddressFamily::Inet6] {
        let mut n = NeighbourMessage::default();
        n.header.family = family;
        out.push(RouteNetlinkMessage::GetNeighbour(n));
    }
    out
}
