//! EAL initialisation: an argument builder, once per process.

use super::error::{rte_errno, strerror, DpdkError};
use std::ffi::{c_char, c_int, CString};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// Set before the first `rte_eal_init` call and never cleared: DPDK cannot be
/// initialised twice in one process, not even after `rte_eal_cleanup`.
static EAL_CLAIMED: AtomicBool = AtomicBool::new(false);

/// Mempools that could not be freed because mbufs were still out; while any
/// exist, `rte_eal_cleanup` is skipped so those mbufs stay valid.
pub(crate) static LEAKED_POOLS: AtomicUsize = AtomicUsize::new(0);

/// Builder for the EAL command line.
#[derive(Debug, Clone)]
pub struct EalBuilder {
    args: Vec<String>,
    echo_log: bool,
}

impl EalBuilder {
    /// Starts a command line with `program` as argv\[0\].
    pub fn new(program: &str) -> Self {
        Self { args: vec![program.to_owned()], echo_log: true }
    }

    /// The usual arguments for machines without hugepages or PCI devices:
    /// `--no-huge -m <mb> --no-pci --file-prefix <prefix>`.
    pub fn virtual_devices(self, memory_mb: u32, file_prefix: &str) -> Self {
        self.args(["--no-huge", "-m", &memory_mb.to_string(), "--no-pci", "--file-prefix", file_prefix])
    }

    /// Appends one argument verbatim.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Appends several arguments verbatim.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Adds `--vdev <devargs>`.
    pub fn vdev(self, devargs: &str) -> Self {
        self.args(["--vdev", devargs])
    }

    /// Adds `-l <list>` (cores EAL may use).
    pub fn lcores(self, list: &str) -> Self {
        self.args(["-l", list])
    }

    /// Whether EAL's own start-up messages are copied to stderr on success
    /// (they are always part of the error on failure). Default: yes.
    pub fn echo_log(mut self, echo: bool) -> Self {
        self.echo_log = echo;
        self
    }

    /// The command line as it will be passed.
    pub fn argv(&self) -> &[String] {
        &self.args
    }

    /// Initialises EAL.
    ///
    /// # Errors
    /// [`DpdkError::EalAlreadyInitialised`] on a second call in the process,
    /// [`DpdkError::EalArgument`] for an argument with a NUL byte, and
    /// [`DpdkError::EalInit`] with DPDK's reason and log when init fails.
    pub fn init(self) -> Result<Eal, DpdkError> {
        let mut c_args = Vec::with_capacity(self.args.len());
        for arg in &self.args {
            let c = CString::new(arg.as_str())
                .map_err(|_| DpdkError::EalArgument { arg: arg.clone(), why: "contains a NUL byte" })?;
            c_args.push(c);
        }
        if EAL_CLAIMED.swap(true, Ordering::SeqCst) {
            return Err(DpdkError::EalAlreadyInitialised);
        }
        // EAL may keep pointers into argv (and permutes it): leak it, once per process.
        let argv: &'static mut [*mut c_char] =
            Box::leak(c_args.into_iter().map(CString::into_raw).collect::<Vec<_>>().into_boxed_slice());
        let argc = c_int::try_from(argv.len()).map_err(|_| DpdkError::EalArgument {
            arg: format!("{} arguments", argv.len()),
            why: "too many arguments",
        })?;

        let capture = LogCapture::start();
        // SAFETY: argv points to argc valid, NUL-terminated, leaked (so 'static)
        // strings; EAL_CLAIMED guarantees this is the only call in the process.
        let ret = unsafe { dpdk_sys::rte_eal_init(argc, argv.as_mut_ptr()) };
        let errno = rte_errno();
        let log = capture.finish();
        if ret < 0 {
            // Some failures (a runtime directory locked by another process)
            // leave rte_errno at 0: say so rather than "Success".
            let reason = if errno == 0 {
                "DPDK gave no error code (its log says why; e.g. another process holds the same \
                 --file-prefix)"
                    .to_owned()
            } else {
                strerror(errno)
            };
            return Err(DpdkError::EalInit { reason, log });
        }
        if self.echo_log && !log.is_empty() {
            eprint!("{log}");
        }
        Ok(Eal { inner: Arc::new(EalInner { args: self.args }) })
    }
}

/// Handle to the initialised EAL. Clones share it; `rte_eal_cleanup` runs when
/// the last clone (including those held by pools and ports) is dropped.
#[derive(Debug, Clone)]
pub struct Eal {
    inner: Arc<EalInner>,
}

#[derive(Debug)]
struct EalInner {
    args: Vec<String>,
}

impl Eal {
    /// The arguments EAL was initialised with.
    pub fn args(&self) -> &[String] {
        &self.inner.args
    }

    /// Registers the calling (non-EAL) thread with EAL so it gets an lcore id
    /// and mempool caches work for it. Returns the lcore id.
    ///
    /// # Errors
    /// DPDK's reason when no lcore id is free.
    pub fn register_thread(&self) -> Result<u32, DpdkError> {
        // SAFETY: EAL is initialised; registering the current thread has no
        // other precondition.
        let ret = unsafe { dpdk_sys::rte_thread_register() };
        if ret != 0 {
            return Err(DpdkError::EalInit { reason: strerror(rte_errno()), log: String::new() });
        }
        // SAFETY: reads the calling thread's lcore id.
        Ok(unsafe { dpdk_sys::rte_lcore_id() })
    }

    /// Number of ethdev ports currently available.
    pub fn port_count(&self) -> u16 {
        // SAFETY: EAL is initialised (we hold the handle).
        unsafe { dpdk_sys::rte_eth_dev_count_avail() }
    }
}

impl Drop for EalInner {
    fn drop(&mut self) {
        if LEAKED_POOLS.load(Ordering::SeqCst) > 0 {
            // mbufs of a leaked pool may still be freed later: keep memory mapped.
            return;
        }
        // SAFETY: last handle gone: no pool or port of ours is alive.
        unsafe { dpdk_sys::rte_eal_cleanup() };
    }
}

/// Redirects DPDK's log stream into memory during init so its messages can be
/// put into the error.
struct LogCapture {
    file: *mut libc::FILE,
    buf: *mut c_char,
    len: libc::size_t,
}

impl LogCapture {
    fn start() -> Box<Self> {
        let mut capture = Box::new(Self { file: std::ptr::null_mut(), buf: std::ptr::null_mut(), len: 0 });
        // SAFETY: open_memstream writes the buffer pointer and size into fields of
        // a boxed (address-stable) struct that outlives the stream.
        let file = unsafe { libc::open_memstream(&mut capture.buf, &mut capture.len) };
        if !file.is_null() {
            capture.file = file;
            // SAFETY: file is a valid FILE*; DPDK's FILE is the same libc type.
            unsafe { dpdk_sys::rte_openlog_stream(file.cast()) };
        }
        capture
    }

    #[allow(clippy::boxed_local, reason = "the memstream holds pointers into the box until fclose")]
    fn finish(self: Box<Self>) -> String {
        if self.file.is_null() {
            return String::new();
        }
        // SAFETY: restore DPDK's default stream before closing ours.
        unsafe { dpdk_sys::rte_openlog_stream(std::ptr::null_mut()) };
        // SAFETY: file came from open_memstream and is closed exactly once; after
        // fclose, buf/len describe the captured bytes.
        unsafe { libc::fclose(self.file) };
        if self.buf.is_null() {
            return String::new();
        }
        // SAFETY: buf holds len bytes written by the memstream.
        let bytes = unsafe { std::slice::from_raw_parts(self.buf.cast::<u8>(), self.len) };
        let text = String::from_utf8_lossy(bytes).into_owned();
        // SAFETY: the memstream buffer is malloc'd and ours to free after fclose.
        unsafe { libc::free(self.buf.cast()) };
        text
    }
}
