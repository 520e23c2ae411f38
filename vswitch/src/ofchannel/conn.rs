//! Connections: listener threads (`ptcp:`, `punix:`) that serve tools such
//! as ovs-ofctl, controller threads that connect out and reconnect with
//! back-off, and the two threads one session runs on its stream: the reader
//! handles requests, the writer sends their replies and the asynchronous
//! messages (packet-ins, flow-removed, port status) as soon as they come,
//! several to a write. Every wait is sliced so a stop is noticed within a
//! tenth of a second; a peer that does not take what is sent within
//! [`WRITE_DEADLINE`] is disconnected; an idle peer gets an ECHO_REQUEST
//! after the probe interval and is disconnected after two. None of this
//! touches a PMD.

pub use super::ctx::Ctx;
use super::expiry;
use super::hub::Hub;
use super::session::{self, Session};
use crate::accept::Acceptor;
use crate::config::openflow::{FailMode, Target};
use crate::ratelimit::RateLimited;
use crate::switch::Switch;
use openflow::{frame_len, Frame, Message};
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Granularity of every wait.
const SLICE: Duration = Duration::from_millis(100);
/// A peer must take a reply within this.
pub const WRITE_DEADLINE: Duration = Duration::from_secs(10);
/// The first reconnection delay (doubling up to `max_backoff`).
const MIN_BACKOFF: Duration = Duration::from_secs(1);

/// The running channel.
pub struct Channel {
    pub hub: Arc<Hub>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Channel {
    /// Stops every thread (sessions close their connections).
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

trait Stream: Read + Write + Send + Sized + 'static {
    fn slice_timeouts(&self) -> std::io::Result<()>;
    /// Another handle on the same connection (the writer's).
    fn handle(&self) -> std::io::Result<Self>;
    /// Ends the connection both ways (the other thread's I/O returns).
    fn close(&self);
}

impl Stream for TcpStream {
    fn slice_timeouts(&self) -> std::io::Result<()> {
        self.set_nonblocking(false)?;
        self.set_nodelay(true)?;
        self.set_read_timeout(Some(SLICE))?;
        self.set_write_timeout(Some(SLICE))
    }

    fn handle(&self) -> std::io::Result<Self> {
        self.try_clone()
    }

    fn close(&self) {
        let _ = self.shutdown(std::net::Shutdown::Both);
    }
}

impl Stream for UnixStream {
    fn slice_timeouts(&self) -> std::io::Result<()> {
        self.set_nonblocking(false)?;
        self.set_read_timeout(Some(SLICE))?;
        self.set_write_timeout(Some(SLICE))
    }

    fn handle(&self) -> std::io::Result<Self> {
        self.try_clone()
    }

    fn close(&self) {
        let _ = self.shutdown(std::net::Shutdown::Both);
    }
}

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

/// Binds the listeners and starts the threads. `None` when no `[openflow]`
/// channel is configured.
///
/// # Errors
/// A listener that cannot be bound (the message names it).
pub fn start(switch: Arc<Switch>) -> Result<Option<Channel>, String> {
    let settings = switch.config().openflow.clone();
    if !settings.enabled() {
        return Ok(None);
    }
    let mut listeners = Vec::new();
    for t in &settings.listen {
        listeners.push((t.clone(), bind(t)?));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let hub = Arc::new(Hub::default());
    let ctx = Arc::new(Ctx {
        datapath_id: session::datapath_id(&switch),
        switch,
        hub: Arc::clone(&hub),
        settings: settings.clone(),
        stop: Arc::clone(&stop),
    });
    let mut threads = Vec::new();
    let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
        std::thread::Builder::new()
            .name(name.into())
            .spawn(f)
            .map_err(|e| format!("openflow: cannot start a thread: {e}"))
    };
    for (target, l) in listeners {
        let ctx = Arc::clone(&ctx);
        tracing::info!(%target, datapath_id = format!("{:016x}", ctx.datapath_id), "openflow listener up");
        threads.push(spawn("of-listen", Box::new(move || listen(&ctx, l)))?);
    }
    for target in settings.controllers.clone() {
        let ctx = Arc::clone(&ctx);
        threads.push(spawn("of-controller", Box::new(move || controller(&ctx, &target)))?);
    }
    let c = Arc::clone(&ctx);
    threads.push(spawn("of-expiry", Box::new(move || expiry::run(&c)))?);
    let c = Arc::clone(&ctx);
    let queues = c.switch.take_packet_ins();
    threads.push(spawn("of-packet-in", Box::new(move || super::packet_in::run(&c, &queues)))?);
    Ok(Some(Channel { hub, stop, threads }))
}

fn bind(t: &Target) -> Result<Listener, String> {
    let l = match t {
        Target::Tcp(a) => {
            let l = TcpListener::bind(a).map_err(|e| format!("openflow listener {t}: {e}"))?;
            l.set_nonblocking(true).map_err(|e| format!("openflow listener {t}: {e}"))?;
            Listener::Tcp(l)
        }
        Target::Unix(p) => {
            if std::fs::symlink_metadata(p).is_ok() {
                if UnixStream::connect(p).is_ok() {
                    return Err(format!("openflow listener {t}: another process listens there"));
                }
                std::fs::remove_file(p).map_err(|e| format!("openflow listener {t}: removing a stale socket: {e}"))?;
            }
            let l = UnixListener::bind(p).map_err(|e| format!("openflow listener {t}: {e}"))?;
            l.set_nonblocking(true).map_err(|e| format!("openflow listener {t}: {e}"))?;
            Listener::Unix(l)
        }
    };
    Ok(l)
}

/// Serves a listener until the stop.
fn listen(ctx: &Arc<Ctx>, l: Listener) {
    let max = ctx.settings.max_connections;
    let mut acceptor = Acceptor::new("openflow listener", "of-conn", max, SLICE);
    while !ctx.stop.load(Ordering::Relaxed) {
        match &l {
            Listener::Tcp(t) => acceptor.turn(
                t,
                |t| t.accept().map(|(s, a)| (s, a.to_string())),
                drop,
                || {
                    let ctx = Arc::clone(ctx);
                    move |(s, peer): (TcpStream, String)| run(&ctx, s, false, peer)
                },
            ),
            Listener::Unix(u) => acceptor.turn(
                u,
                |u| u.accept().map(|(s, _)| (s, "unix".to_owned())),
                drop,
                || {
                    let ctx = Arc::clone(ctx);
                    move |(s, peer): (UnixStream, String)| run(&ctx, s, false, peer)
                },
            ),
        }
    }
    acceptor.finish();
}

/// Keeps a connection to one controller, reconnecting with back-off.
fn controller(ctx: &Arc<Ctx>, target: &Target) {
    let mut backoff = MIN_BACKOFF;
    let mut log = RateLimited::new(Duration::from_secs(30));
    while !ctx.stop.load(Ordering::Relaxed) {
        let up = Instant::now();
        let result = match target {
            Target::Tcp(a) => {
                TcpStream::connect_timeout(a, Duration::from_secs(1)).map(|s| run(ctx, s, true, target.to_string()))
            }
            Target::Unix(p) => UnixStream::connect(p).map(|s| run(ctx, s, true, target.to_string())),
        };
        match result {
            Ok(()) if up.elapsed() > ctx.settings.max_backoff => backoff = MIN_BACKOFF,
            Ok(()) => {}
            Err(e) => {
                if let Some(held) = log.check() {
                    tracing::warn!(%target, held_back = held, retry_s = backoff.as_secs(), "openflow controller unreachable: {e}");
                }
            }
        }
        let until = Instant::now() + backoff;
        while Instant::now() < until && !ctx.stop.load(Ordering::Relaxed) {
            std::thread::sleep(SLICE);
        }
        backoff = (backoff * 2).min(ctx.settings.max_backoff);
    }
}

/// Replies the reader hands the writer at most (then it waits).
const REPLIES: usize = 1024;
/// Bytes the writer gathers into one write at most.
const WRITE_BATCH: usize = 64 * 1024;

/// The reader's way to the peer: through the writer thread.
type Out = crossbeam_channel::Sender<Vec<u8>>;

/// Runs one session on a connected stream until it closes.
fn run<S: Stream>(ctx: &Ctx, mut s: S, controller: bool, peer: String) {
    let (id, queued) = ctx.hub.join(controller);
    if controller {
        tracing::info!(%peer, "openflow controller connected");
    }
    let mut session = Session::new(id, controller, ctx.datapath_id, peer.clone());
    let writer = s.slice_timeouts().and_then(|()| s.handle());
    let (why, left) = match writer {
        Ok(w) => std::thread::scope(|scope| {
            let (out, replies) = crossbeam_channel::bounded(REPLIES);
            let writing = scope.spawn(move || write_loop(ctx, w, &replies, &queued));
            let read = serve(ctx, &mut s, &mut session, &out);
            // Edits the peer made before it went still reach the datapath.
            if let Some(e) = session.flush(&ctx.switch, &ctx.hub) {
                let _ = out.send(e);
            }
            drop(out);
            let left = ctx.hub.leave(id);
            let wrote = writing.join().unwrap_or_else(|_| Some("the writer panicked".into()));
            s.close();
            // The writer's failure (a slow or gone peer) is why the read ended.
            (wrote.unwrap_or(read), left)
        }),
        Err(e) => {
            let _ = session.flush(&ctx.switch, &ctx.hub);
            (format!("socket setup: {e}"), ctx.hub.leave(id))
        }
    };
    if controller {
        tracing::info!(%peer, "openflow controller connection closed: {why}");
    } else {
        tracing::debug!(%peer, "openflow connection closed: {why}");
    }
    if controller && left == 0 && ctx.settings.fail_mode == FailMode::Standalone {
        expiry::standalone(ctx);
    }
}

/// The writer: the reader's replies first, then the asynchronous messages,
/// as many as fit in [`WRITE_BATCH`] to a write. Ends when the reader is
/// done (after what it handed over is sent), or with why it could not
/// write (the connection is then closed, which ends the reader too).
fn write_loop<S: Stream>(
    ctx: &Ctx,
    mut s: S,
    replies: &crossbeam_channel::Receiver<Vec<u8>>,
    queued: &crossbeam_channel::Receiver<Vec<u8>>,
) -> Option<String> {
    let mut batch: Vec<u8> = Vec::with_capacity(WRITE_BATCH);
    let mut reader_done = false;
    while !reader_done && !ctx.stop.load(Ordering::Relaxed) {
        let mut sel = crossbeam_channel::Select::new();
        sel.recv(replies);
        sel.recv(queued);
        let Ok(op) = sel.select_timeout(SLICE) else { continue };
        let first = if op.index() == 0 { op.recv(replies) } else { op.recv(queued) };
        match first {
            Ok(m) => batch.extend_from_slice(&m),
            // The reader is done (or the hub let the session go).
            Err(_) => reader_done = true,
        }
        while batch.len() < WRITE_BATCH {
            match replies.try_recv() {
                Ok(m) => batch.extend_from_slice(&m),
                Err(crossbeam_channel::TryRecvError::Disconnected) => {
                    reader_done = true;
                    break;
                }
                Err(crossbeam_channel::TryRecvError::Empty) => match queued.try_recv() {
                    Ok(m) => batch.extend_from_slice(&m),
                    Err(_) => break,
                },
            }
        }
        if let Err(e) = send(ctx, &mut s, &batch) {
            s.close();
            return Some(e);
        }
        batch.clear();
    }
    None
}

/// The reader's loop; returns why it ended.
fn serve<S: Stream>(ctx: &Ctx, s: &mut S, session: &mut Session, out: &Out) -> String {
    if let Err(e) = reply(out, Session::hello()) {
        return e;
    }
    let mut buf: Vec<u8> = Vec::with_capacity(openflow::MAX_LEN);
    let mut chunk = vec![0u8; openflow::MAX_LEN];
    let mut heard = Instant::now();
    let mut probed = false;
    let probe = ctx.settings.probe_interval;
    loop {
        if ctx.stop.load(Ordering::Relaxed) {
            return "the switch is stopping".into();
        }
        match s.read(&mut chunk) {
            Ok(0) => return "the peer closed it".into(),
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                heard = Instant::now();
                probed = false;
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
            Err(e) => return format!("read: {e}"),
        }
        if let Err(e) = handle_frames(ctx, session, &mut buf, out) {
            return e;
        }
        // All that was read is handled: the FLOW_MODs among it go to the
        // datapath together.
        if let Some(e) = session.flush(&ctx.switch, &ctx.hub) {
            if let Err(e) = reply(out, e) {
                return e;
            }
        }
        let quiet = heard.elapsed();
        if quiet > probe * 2 {
            return format!("no word from the peer for {} ms (echo unanswered)", quiet.as_millis());
        }
        if quiet > probe && !probed {
            probed = true;
            if let Err(e) = reply(out, openflow::encode(0, &Message::EchoRequest(Vec::new()))) {
                return e;
            }
        }
    }
}

/// Hands a message to the writer (waiting while it has [`REPLIES`]).
fn reply(out: &Out, m: Vec<u8>) -> Result<(), String> {
    out.send(m).map_err(|_| "the writer stopped".to_owned())
}

/// Handles every whole message at the start of `buf` and removes them (at
/// once: a buffer of hundreds of FLOW_MODs is not shifted per message).
fn handle_frames(ctx: &Ctx, session: &mut Session, buf: &mut Vec<u8>, out: &Out) -> Result<(), String> {
    let mut at = 0;
    let result = loop {
        match frame_len(&buf[at..]) {
            Frame::Partial => break Ok(()),
            Frame::Broken(len) => {
                break Err(format!("a message with length {len} (< 8): the stream cannot be read on"))
            }
            Frame::Complete(n) => {
                let o = session.handle(&buf[at..at + n], &ctx.switch, &ctx.hub);
                at += n;
                let close = o.close;
                for r in o.replies {
                    reply(out, r)?;
                }
                if close {
                    break Err("version negotiation failed".into());
                }
                if session.batch_full() {
                    if let Some(e) = session.flush(&ctx.switch, &ctx.hub) {
                        reply(out, e)?;
                    }
                }
            }
        }
    };
    buf.drain(..at);
    result
}

/// Writes a whole message within [`WRITE_DEADLINE`].
fn send<S: Stream>(ctx: &Ctx, s: &mut S, mut bytes: &[u8]) -> Result<(), String> {
    let deadline = Instant::now() + WRITE_DEADLINE;
    while !bytes.is_empty() {
        if Instant::now() >= deadline {
            return Err(format!("the peer took no reply for {} s (slow peer)", WRITE_DEADLINE.as_secs()));
        }
        if ctx.stop.load(Ordering::Relaxed) {
            return Err("the switch is stopping".into());
        }
        match s.write(bytes) {
            Ok(0) => return Err("write: the peer is gone".into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
            Err(e) => return Err(format!("write: {e}")),
        }
    }
    Ok(())
}
