//! The few OS calls the daemon needs (thread pinning, signals, poll, umask,
//! descriptor limits), kept here so `unsafe` stays inside this module.

use std::sync::atomic::{AtomicBool, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// Installs SIGINT/SIGTERM handlers that set a flag (see [`stop_requested`]).
pub fn install_stop_signals() {
    let handler = on_stop_signal as *const () as libc::sighandler_t;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

/// Whether SIGINT or SIGTERM arrived.
pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Requests a stop as if a signal had arrived (tests, fatal errors).
pub fn request_stop() {
    STOP.store(true, Ordering::SeqCst);
}

/// Pins the calling thread to `core`.
///
/// # Errors
/// The OS error when the core does not exist or is not allowed.
pub fn pin_current_thread(core: usize) -> std::io::Result<()> {
    if core >= libc::CPU_SETSIZE as usize {
        return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: cpu_set_t is plain data; zeroed is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: core < CPU_SETSIZE, checked above.
    unsafe { libc::CPU_SET(core, &mut set) };
    // SAFETY: pid 0 is the calling thread; set is a valid cpu_set_t of the given size.
    let ret = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if ret != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Waits until `fd` is readable (a listener: a connection is waiting) or
/// `timeout` passes; returns whether it is.
///
/// # Errors
/// The OS error of `poll` (an interrupted wait counts as "not yet").
pub fn wait_readable(fd: &impl std::os::fd::AsRawFd, timeout: std::time::Duration) -> std::io::Result<bool> {
    let mut p = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
    // SAFETY: one valid pollfd for the call's duration.
    let ret = unsafe { libc::poll(&mut p, 1, ms) };
    if ret < 0 {
        let e = std::io::Error::last_os_error();
        return if e.kind() == std::io::ErrorKind::Interrupted { Ok(false) } else { Err(e) };
    }
    Ok(ret > 0)
}

/// Runs `f` with the process umask set to `mask` (restored after), so that
/// files `f` creates never have a wider mode, even for an instant. Call it
/// before other threads create files (the umask is per process).
pub fn with_umask<T>(mask: u32, f: impl FnOnce() -> T) -> T {
    // SAFETY: umask only swaps the process's file mode mask.
    let old = unsafe { libc::umask(mask as libc::mode_t) };
    let out = f();
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    out
}

/// Raises the soft limit of open files to the hard limit; returns (before,
/// after). The daemon's connections are capped well below it, so a client
/// flood cannot exhaust descriptors the datapath or the control socket need.
///
/// # Errors
/// The OS error of getrlimit/setrlimit.
pub fn raise_nofile_limit() -> std::io::Result<(u64, u64)> {
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: valid out pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let before = r.rlim_cur;
    if r.rlim_cur < r.rlim_max {
        r.rlim_cur = r.rlim_max;
        // SAFETY: valid rlimit, soft <= hard.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok((before, r.rlim_cur))
}

/// Installs a handler for SIGHUP that stops the daemon like SIGTERM does
/// (a closed terminal must not leave the socket and runtime files behind).
pub fn stop_on_hangup() {
    let handler = on_stop_signal as *const () as libc::sighandler_t;
    // SAFETY: the handler only stores to an atomic.
    unsafe { libc::signal(libc::SIGHUP, handler) };
}
