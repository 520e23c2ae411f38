//! The accept loop the control socket and the metrics listener share: a
//! non-blocking listener polled in slices (so a stop is noticed), every
//! pending connection accepted, at most `max` served at once (a thread
//! each), the rest refused at once; errors logged rate-limited, never fatal.

use crate::dpdk::os;
use crate::ratelimit::RateLimited;
use std::io::ErrorKind;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Connection threads of one listener.
pub struct Acceptor {
    what: &'static str,
    thread_name: &'static str,
    max: usize,
    slice: Duration,
    active: Arc<AtomicUsize>,
    threads: Vec<JoinHandle<()>>,
    log: RateLimited,
    busy_log: RateLimited,
}

impl Acceptor {
    /// `what` names the listener in logs; connection threads are named `thread_name`.
    pub fn new(what: &'static str, thread_name: &'static str, max: usize, slice: Duration) -> Self {
        Self {
            what,
            thread_name,
            max,
            slice,
            active: Arc::new(AtomicUsize::new(0)),
            threads: Vec::new(),
            log: RateLimited::new(Duration::from_secs(1)),
            busy_log: RateLimited::new(Duration::from_secs(10)),
        }
    }

    /// One turn: waits up to a slice for `listener`, then accepts every
    /// pending connection; each is `refuse`d when `max` are being served,
    /// or else served by `serve` on a thread of its own.
    pub fn turn<L: AsRawFd, S: Send + 'static, F: FnOnce(S) + Send + 'static>(
        &mut self,
        listener: &L,
        mut accept: impl FnMut(&L) -> std::io::Result<S>,
        mut refuse: impl FnMut(S),
        mut serve: impl FnMut() -> F,
    ) {
        match os::wait_readable(listener, self.slice) {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                if let Some(held) = self.log.check() {
                    tracing::warn!(held_back = held, "{}: waiting for connections: {e}", self.what);
                }
                std::thread::sleep(self.slice);
                return;
            }
        }
        loop {
            let stream = match accept(listener) {
                Ok(s) => s,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => {
                    // E.g. out of descriptors: held back, retried after a pause.
                    if let Some(held) = self.log.check() {
                        tracing::warn!(held_back = held, "{} accept: {e}", self.what);
                    }
                    std::thread::sleep(self.slice);
                    break;
                }
            };
            if self.active.load(Ordering::Acquire) >= self.max {
                if let Some(held) = self.busy_log.check() {
                    tracing::warn!(held_back = held, limit = self.max, "{}: too many connections", self.what);
                }
                refuse(stream);
                continue;
            }
            self.active.fetch_add(1, Ordering::AcqRel);
            let (run, active) = (serve(), Arc::clone(&self.active));
            match std::thread::Builder::new().name(self.thread_name.into()).spawn(move || {
                run(stream);
                active.fetch_sub(1, Ordering::AcqRel);
            }) {
                Ok(t) => self.threads.push(t),
                Err(e) => {
                    self.active.fetch_sub(1, Ordering::AcqRel);
                    if let Some(held) = self.log.check() {
                        tracing::warn!(held_back = held, "{}: cannot start a connection thread: {e}", self.what);
                    }
                }
            }
        }
        self.threads.retain(|t| !t.is_finished());
    }

    /// Waits for the connections in progress.
    pub fn finish(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }
}
