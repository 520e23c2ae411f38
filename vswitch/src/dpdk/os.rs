//! The few OS calls the daemon and its tools need (thread pinning, signals,
//! poll, socket options, umask, descriptor limits, packet-socket drops),
//! kept here: outside the DPDK bindings (`dpdk`) and the CPU hints
//! (`arch`), the crate denies `unsafe` code, so this is the one module for
//! OS calls.

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

/// Ends the process at once with `code`: no destructors, no atexit
/// handlers, other threads stopped where they are. For a stop requested while
/// another thread is still inside a DPDK call that may take seconds or never
/// return (a start-up blocked on a device); the caller removes its files
/// first and flushes what it printed.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit has no preconditions; it does not return and runs no
    // user-space code that could race with the threads it ends.
    unsafe { libc::_exit(code) }
}

/// Sets an `int` socket option at `SOL_SOCKET` level.
///
/// # Errors
/// The OS error.
pub fn set_socket_option(fd: &impl std::os::fd::AsRawFd, opt: libc::c_int, value: libc::c_int) -> std::io::Result<()> {
    // SAFETY: setsockopt on a descriptor the caller owns, with a pointer to
    // a c_int that lives for the call and its size.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            std::ptr::addr_of!(value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Sets a socket's receive timeout (`SO_RCVTIMEO`).
///
/// # Errors
/// The OS error.
pub fn set_receive_timeout(fd: &impl std::os::fd::AsRawFd, t: std::time::Duration) -> std::io::Result<()> {
    let tv = libc::timeval { tv_sec: t.as_secs() as libc::time_t, tv_usec: t.subsec_micros() as libc::suseconds_t };
    // SAFETY: setsockopt on a descriptor the caller owns, with a pointer to
    // a timeval that lives for the call and its size.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            std::ptr::addr_of!(tv).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Restores the default SIGPIPE disposition (a tool whose output is piped
/// into `head` then ends quietly, as shell tools do). Call it before any
/// thread exists.
pub fn default_sigpipe() {
    // SAFETY: sets a signal's disposition to the default; no handler runs.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
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

/// Packets the kernel dropped on this process's AF_PACKET sockets bound to
/// interface `ifindex` since the last call (its ring or buffer was full):
/// `PACKET_STATISTICS`, which the kernel resets on every read. DPDK's
/// net_af_packet keeps its sockets in this process and, in the DPDK this
/// builds against, reports none of these drops itself.
///
/// # Errors
/// When /proc/self/fd cannot be read.
pub fn packet_socket_drops(ifindex: u32) -> std::io::Result<u64> {
    let mut drops = 0u64;
    for entry in std::fs::read_dir("/proc/self/fd")? {
        let Ok(entry) = entry else { continue };
        let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        if !std::fs::read_link(entry.path()).is_ok_and(|l| l.to_string_lossy().starts_with("socket:")) {
            continue;
        }
        let mut domain: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: fd is open in this process (just listed); the out pointer
        // and its length describe a c_int.
        let ret = unsafe {
            libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_DOMAIN, (&mut domain as *mut libc::c_int).cast(), &mut len)
        };
        if ret != 0 || domain != libc::AF_PACKET {
            continue;
        }
        // SAFETY: sockaddr_ll is plain old data; all zeroes is valid.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut alen = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        // SAFETY: as above, with a sockaddr_ll and its length.
        let ret = unsafe { libc::getsockname(fd, (&mut addr as *mut libc::sockaddr_ll).cast(), &mut alen) };
        if ret != 0 || addr.sll_ifindex != ifindex as i32 {
            continue;
        }
        let mut stats = libc::tpacket_stats { tp_packets: 0, tp_drops: 0 };
        let mut slen = std::mem::size_of::<libc::tpacket_stats>() as libc::socklen_t;
        // SAFETY: as above, with a tpacket_stats and its length (the kernel
        // copies at most that much, for TPACKET_V3 sockets too).
        let ret = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                (&mut stats as *mut libc::tpacket_stats).cast(),
                &mut slen,
            )
        };
        if ret == 0 {
            drops += u64::from(stats.tp_drops);
        }
        // (The fd belongs to DPDK: not closed here.)
    }
    Ok(drops)
}

/// The index of network interface `name`, if it exists.
pub fn ifindex(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: a valid NUL-terminated string.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (i != 0).then_some(i)
}

#[cfg(test)]
mod packet_tests {
    use super::*;

    /// A packet socket on lo with a tiny buffer that nobody reads: the
    /// kernel drops what does not fit, and the count is read (and reset).
    #[test]
    fn reads_and_resets_the_kernel_drops_of_packet_sockets() {
        let lo = ifindex("lo").expect("lo");
        // SAFETY: plain socket calls with valid arguments; fds closed below.
        unsafe {
            let s = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, (libc::ETH_P_ALL as u16).to_be() as i32);
            assert!(s >= 0, "AF_PACKET needs CAP_NET_RAW (run as root): {}", std::io::Error::last_os_error());
            let size: libc::c_int = 1;
            libc::setsockopt(s, libc::SOL_SOCKET, libc::SO_RCVBUF, (&size as *const libc::c_int).cast(), 4);
            let mut addr: libc::sockaddr_ll = std::mem::zeroed();
            addr.sll_family = libc::AF_PACKET as u16;
            addr.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
            addr.sll_ifindex = lo as i32;
            let r = libc::bind(
                s,
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            );
            assert_eq!(r, 0, "bind: {}", std::io::Error::last_os_error());
            let _ = packet_socket_drops(lo); // reset
            let u = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
            let to = u.local_addr().expect("addr");
            for _ in 0..2000 {
                let _ = u.send_to(&[0u8; 512], to);
            }
            let drops = packet_socket_drops(lo).expect("read");
            assert!(drops > 0, "a full buffer drops");
            assert_eq!(packet_socket_drops(lo).expect("read"), 0, "reading resets");
            libc::close(s);
        }
    }
}
