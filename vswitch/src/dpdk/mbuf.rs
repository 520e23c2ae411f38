//! Mempools, owned mbufs and fixed-capacity bursts.

use super::eal::Eal;
use super::eal::LEAKED_POOLS;
use super::error::{rte_errno, strerror, DpdkError};
use dpdk_sys::{rte_mbuf, rte_mempool};
use std::ffi::CString;
use std::ptr::NonNull;
use std::sync::atomic::Ordering;

/// Longest mempool name: RTE_MEMPOOL_NAMESIZE (27 in 22.11, a macro
/// expression bindgen cannot evaluate) less the NUL.
const MAX_POOL_NAME: usize = 26;

/// Largest burst a [`Burst`] holds.
pub const MAX_BURST: usize = 64;

/// A packet mbuf pool (`rte_pktmbuf_pool_create`).
///
/// Dropping a pool whose mbufs are all back frees it; dropping one with mbufs
/// still out leaves it allocated (and logs), so those mbufs stay valid.
#[derive(Debug)]
pub struct Mempool {
    ptr: NonNull<rte_mempool>,
    name: String,
    _eal: Eal,
}

// SAFETY: DPDK mempools are multi-producer/multi-consumer safe (default ring ops);
// the handle is only a pointer to the shared pool.
unsafe impl Send for Mempool {}
// SAFETY: as above; every method takes &self and calls MT-safe mempool functions.
unsafe impl Sync for Mempool {}

impl Mempool {
    /// Creates a pool of `count` mbufs with `data_room` bytes each (headroom
    /// included) and a per-lcore cache of `cache` (0 makes counts exact).
    ///
    /// # Errors
    /// [`DpdkError::Mempool`] with DPDK's reason (name taken, no memory, ...).
    pub fn new(eal: &Eal, name: &str, count: u32, cache: u32, data_room: u16) -> Result<Self, DpdkError> {
        let err = |reason: String| DpdkError::Mempool { name: name.to_owned(), reason };
        let c_name = CString::new(name).map_err(|_| err("name contains a NUL byte".into()))?;
        if name.len() > MAX_POOL_NAME {
            return Err(err(format!("name longer than {MAX_POOL_NAME} bytes")));
        }
        // SAFETY: c_name is a valid C string; the other arguments are plain values
        // that DPDK validates. SOCKET_ID_ANY (-1) lets DPDK pick memory.
        let ptr = unsafe { dpdk_sys::rte_pktmbuf_pool_create(c_name.as_ptr(), count, cache, 0, data_room, -1) };
        let ptr = NonNull::new(ptr).ok_or_else(|| err(strerror(rte_errno())))?;
        Ok(Self { ptr, name: name.to_owned(), _eal: eal.clone() })
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The raw pool, for DPDK calls such as rx queue setup.
    pub fn as_ptr(&self) -> *mut rte_mempool {
        self.ptr.as_ptr()
    }

    /// Number of mbufs in the pool when all are free.
    pub fn capacity(&self) -> u32 {
        // SAFETY: the pool pointer is valid for our lifetime.
        unsafe { (*self.ptr.as_ptr()).size }
    }

    /// Free mbufs (including those in per-lcore caches).
    pub fn available(&self) -> u32 {
        // SAFETY: valid pool.
        unsafe { dpdk_sys::rte_mempool_avail_count(self.ptr.as_ptr()) }
    }

    /// Mbufs currently allocated from the pool (held by us, queues or devices).
    pub fn in_use(&self) -> u32 {
        // SAFETY: valid pool.
        unsafe { dpdk_sys::rte_mempool_in_use_count(self.ptr.as_ptr()) }
    }

    /// Allocates one mbuf, or `None` when the pool is empty.
    pub fn alloc(&self) -> Option<Mbuf> {
        // SAFETY: valid pool; the returned mbuf (if any) is reset and ours.
        let m = unsafe { dpdk_sys::rte_pktmbuf_alloc(self.ptr.as_ptr()) };
        NonNull::new(m).map(Mbuf)
    }

    /// Fills `burst` up to `count` mbufs more (all or nothing). Returns whether
    /// they were allocated.
    pub fn alloc_bulk(&self, burst: &mut Burst, count: usize) -> bool {
        if count > burst.spare() {
            return false;
        }
        let Ok(n) = u32::try_from(count) else { return false };
        let dst = burst.spare_ptr();
        // SAFETY: dst has room for `count` pointers (checked above); on success
        // DPDK writes `count` valid mbuf pointers that the burst then owns.
        let ret = unsafe { dpdk_sys::rte_pktmbuf_alloc_bulk(self.ptr.as_ptr(), dst, n) };
        if ret != 0 {
            return false;
        }
        burst.len += count;
        true
    }
}

impl Drop for Mempool {
    fn drop(&mut self) {
        let in_use = self.in_use();
        if in_use != 0 {
            eprintln!("mempool {:?}: {in_use} mbufs still in use at drop; leaving the pool allocated", self.name);
            LEAKED_POOLS.fetch_add(1, Ordering::SeqCst);
            return;
        }
        // SAFETY: no mbuf of this pool is out, and we are its only handle.
        unsafe { dpdk_sys::rte_mempool_free(self.ptr.as_ptr()) };
    }
}

/// An owned packet buffer. Frees itself on drop; never `Clone`.
#[repr(transparent)]
#[derive(Debug)]
pub struct Mbuf(NonNull<rte_mbuf>);

// SAFETY: an mbuf is owned by exactly one Mbuf value; moving ownership between
// threads is how DPDK apps hand packets between cores, and freeing from any
// thread is supported by the mempool.
unsafe impl Send for Mbuf {}

impl Mbuf {
    /// Takes ownership of a raw mbuf.
    ///
    /// # Safety
    /// `ptr` must be null or a valid mbuf that nothing else owns or frees.
    pub unsafe fn from_raw(ptr: *mut rte_mbuf) -> Option<Self> {
        NonNull::new(ptr).map(Self)
    }

    /// Gives up ownership without freeing (e.g. to hand the mbuf to C code).
    pub fn into_raw(self) -> *mut rte_mbuf {
        let ptr = self.0.as_ptr();
        std::mem::forget(self);
        ptr
    }

    /// The raw mbuf, still owned by `self`.
    pub fn as_ptr(&self) -> *mut rte_mbuf {
        self.0.as_ptr()
    }

    fn raw(&self) -> &rte_mbuf {
        // SAFETY: we own a valid mbuf for our whole lifetime.
        unsafe { self.0.as_ref() }
    }

    /// Bytes in the first segment (the whole packet for single-segment mbufs).
    pub fn data_len(&self) -> usize {
        usize::from(self.raw().data_len)
    }

    /// Bytes in all segments.
    pub fn pkt_len(&self) -> usize {
        self.raw().pkt_len as usize
    }

    /// Number of segments.
    pub fn segments(&self) -> u16 {
        self.raw().nb_segs
    }

    /// Input port recorded by the driver.
    pub fn port(&self) -> u16 {
        self.raw().port
    }

    /// Free bytes in front of the data.
    pub fn headroom(&self) -> usize {
        usize::from(self.raw().data_off)
    }

    /// Free bytes after the data of the (single) segment.
    pub fn tailroom(&self) -> usize {
        let m = self.raw();
        usize::from(m.buf_len).saturating_sub(usize::from(m.data_off) + usize::from(m.data_len))
    }

    /// The first segment's data.
    pub fn data(&self) -> &[u8] {
        // SAFETY: mtod..mtod+data_len lies inside the mbuf's buffer, which we own;
        // the borrow of self keeps it alive and unmodified.
        unsafe { std::slice::from_raw_parts(dpdk_sys::rte_pktmbuf_mtod(self.0.as_ptr()), self.data_len()) }
    }

    /// The first segment's data, writable.
    pub fn data_mut(&mut self) -> &mut [u8] {
        let len = self.data_len();
        // SAFETY: as in `data`, and &mut self makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(dpdk_sys::rte_pktmbuf_mtod(self.0.as_ptr()), len) }
    }

    /// Grows the packet at the front by `n` bytes (from headroom) and returns
    /// the new front bytes, or `None` if the headroom is too small.
    /// (What `rte_pktmbuf_prepend` does, inline: through its out-of-line
    /// wrapper it was a call per encapsulated packet.)
    pub fn prepend(&mut self, n: u16) -> Option<&mut [u8]> {
        // SAFETY: we own the mbuf and `&mut self` makes the access exclusive;
        // these are plain integer fields.
        let m = unsafe { self.0.as_mut() };
        if n > m.data_off {
            return None;
        }
        // The headroom is taken: data_off + data_len stays within buf_len.
        m.data_off -= n;
        m.data_len += n;
        m.pkt_len += u32::from(n);
        // SAFETY: buf_addr + data_off .. + n is the headroom just taken, inside
        // the mbuf's buffer; the borrow of self keeps it alive and exclusive.
        Some(unsafe { std::slice::from_raw_parts_mut(dpdk_sys::rte_pktmbuf_mtod(self.0.as_ptr()), usize::from(n)) })
    }

    /// Removes `n` bytes from the front. Returns false (no change) if the first
    /// segment is shorter.
    /// (What `rte_pktmbuf_adj` does, inline, as [`Mbuf::prepend`].)
    pub fn adj(&mut self, n: u16) -> bool {
        // SAFETY: we own the mbuf and `&mut self` makes the access exclusive;
        // these are plain integer fields.
        let m = unsafe { self.0.as_mut() };
        if n > m.data_len {
            return false;
        }
        // The first segment holds the n bytes: data_off stays within buf_len.
        m.data_len -= n;
        m.data_off += n;
        m.pkt_len -= u32::from(n);
        true
    }

    /// Grows the packet at the end by `n` bytes and returns them, or `None` if
    /// the tailroom is too small.
    pub fn append(&mut self, n: u16) -> Option<&mut [u8]> {
        // SAFETY: valid owned mbuf; DPDK checks the tailroom and returns NULL.
        let p = unsafe { dpdk_sys::rte_pktmbuf_append(self.0.as_ptr(), n) };
        if p.is_null() {
            return None;
        }
        // SAFETY: p points at n bytes now inside the packet data.
        Some(unsafe { std::slice::from_raw_parts_mut(p.cast::<u8>(), usize::from(n)) })
    }

    /// Removes `n` bytes from the end. Returns false (no change) if too short.
    pub fn trim(&mut self, n: u16) -> bool {
        // SAFETY: valid owned mbuf; DPDK checks the length.
        unsafe { dpdk_sys::rte_pktmbuf_trim(self.0.as_ptr(), n) == 0 }
    }

    /// A deep copy of the whole packet into a new mbuf from `pool`, or `None`
    /// when the pool is empty.
    pub fn copy(&self, pool: &Mempool) -> Option<Mbuf> {
        // SAFETY: valid owned source mbuf and pool; DPDK returns a new mbuf (or
        // NULL) that nothing else owns.
        let m = unsafe { dpdk_sys::rte_pktmbuf_copy(self.0.as_ptr(), pool.as_ptr(), 0, u32::MAX) };
        NonNull::new(m).map(Mbuf)
    }

    /// Replaces the data with `bytes`. Returns false (no change) if it does
    /// not fit or the mbuf is a chain.
    pub fn set_data(&mut self, bytes: &[u8]) -> bool {
        if self.segments() != 1 {
            return false;
        }
        let Ok(want) = u16::try_from(bytes.len()) else { return false };
        let have = self.data_len() as u16;
        if want > have {
            if self.append(want - have).is_none() {
                return false;
            }
        } else if !self.trim(have - want) {
            return false;
        }
        self.data_mut().copy_from_slice(bytes);
        true
    }
}

/// The packet trait the software actions and the model e-switch work on.
impl offload::packet::PacketBuf for Mbuf {
    fn data(&self) -> &[u8] {
        Mbuf::data(self)
    }
    fn data_mut(&mut self) -> &mut [u8] {
        Mbuf::data_mut(self)
    }
    fn prepend(&mut self, n: u16) -> Option<&mut [u8]> {
        Mbuf::prepend(self, n)
    }
    fn adj(&mut self, n: u16) -> bool {
        Mbuf::adj(self, n)
    }
    fn trim(&mut self, n: u16) -> bool {
        Mbuf::trim(self, n)
    }
    fn replace(&mut self, bytes: &[u8]) -> bool {
        self.set_data(bytes)
    }
    fn len(&self) -> usize {
        self.pkt_len()
    }
    fn is_contiguous(&self) -> bool {
        self.segments() == 1
    }
}

impl Drop for Mbuf {
    fn drop(&mut self) {
        // SAFETY: we own the mbuf (chain) and nobody uses it after this.
        unsafe { dpdk_sys::rte_pktmbuf_free(self.0.as_ptr()) };
    }
}

/// Up to [`MAX_BURST`] owned mbufs in a fixed array: no allocation per burst.
/// Dropping or clearing it frees what it holds.
pub struct Burst {
    ptrs: [*mut rte_mbuf; MAX_BURST],
    len: usize,
}

// SAFETY: the burst owns its mbufs exclusively, like a Vec<Mbuf>.
unsafe impl Send for Burst {}

impl Default for Burst {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Burst {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Burst").field("len", &self.len).finish()
    }
}

impl Burst {
    /// An empty burst.
    pub const fn new() -> Self {
        Self { ptrs: [std::ptr::null_mut(); MAX_BURST], len: 0 }
    }

    /// Number of mbufs held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the burst is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Free slots.
    pub fn spare(&self) -> usize {
        MAX_BURST - self.len
    }

    /// Adds an mbuf; gives it back if the burst is full.
    pub fn push(&mut self, m: Mbuf) -> Result<(), Mbuf> {
        if self.len == MAX_BURST {
            return Err(m);
        }
        self.ptrs[self.len] = m.into_raw();
        self.len += 1;
        Ok(())
    }

    /// Appends the mbufs `next` gives while there is room; returns the
    /// first that did not fit (`next` is not called after it). The length
    /// is kept in a register for the loop: `push` in a loop increments it
    /// in memory, a chain of a load and a store an mbuf.
    #[inline(always)]
    pub fn extend_with(&mut self, mut next: impl FnMut() -> Option<Mbuf>) -> Option<Mbuf> {
        let mut len = self.len;
        let mut over = None;
        while let Some(m) = next() {
            if len == MAX_BURST {
                over = Some(m);
                break;
            }
            self.ptrs[len] = m.into_raw();
            len += 1;
        }
        self.len = len;
        over
    }

    /// Removes and returns the last mbuf.
    pub fn pop(&mut self) -> Option<Mbuf> {
        if self.len == 0 {
            return None;
        }
        self.len -= 1;
        // SAFETY: slots below the old len hold owned, valid mbufs.
        unsafe { Mbuf::from_raw(self.ptrs[self.len]) }
    }

    /// Removes the mbuf at `index`, moving the last one into its place.
    pub fn swap_remove(&mut self, index: usize) -> Option<Mbuf> {
        if index >= self.len {
            return None;
        }
        let p = self.ptrs[index];
        self.len -= 1;
        self.ptrs[index] = self.ptrs[self.len];
        // SAFETY: p was an owned, valid mbuf in the live part of the array.
        unsafe { Mbuf::from_raw(p) }
    }

    /// The mbufs, as a slice.
    pub fn as_slice(&self) -> &[Mbuf] {
        // SAFETY: Mbuf is repr(transparent) over NonNull<rte_mbuf>, which has the
        // layout of *mut rte_mbuf; the first len slots are non-null owned mbufs.
        unsafe { std::slice::from_raw_parts(self.ptrs.as_ptr().cast::<Mbuf>(), self.len) }
    }

    /// The mbufs, as a mutable slice (to edit packets in place).
    pub fn as_mut_slice(&mut self) -> &mut [Mbuf] {
        // SAFETY: as in as_slice; &mut self makes it exclusive. Swapping elements
        // within the slice keeps every slot an owned non-null mbuf.
        unsafe { std::slice::from_raw_parts_mut(self.ptrs.as_mut_ptr().cast::<Mbuf>(), self.len) }
    }

    /// Frees every mbuf held.
    pub fn clear(&mut self) {
        while self.pop().is_some() {}
    }

    /// Moves all mbufs out, in order, into `f`.
    pub fn drain(&mut self, mut f: impl FnMut(Mbuf)) {
        let len = std::mem::replace(&mut self.len, 0);
        for &p in &self.ptrs[..len] {
            // SAFETY: each live slot is an owned mbuf, taken exactly once (len is
            // already 0, so a panic in f cannot lead to a double free).
            if let Some(m) = unsafe { Mbuf::from_raw(p) } {
                f(m);
            }
        }
    }

    /// Pointer to the first free slot (for rx and bulk allocation).
    pub(crate) fn spare_ptr(&mut self) -> *mut *mut rte_mbuf {
        // SAFETY: len <= MAX_BURST, so the offset stays within (or one past) the array.
        unsafe { self.ptrs.as_mut_ptr().add(self.len) }
    }

    /// Pointer to the first slot (for tx).
    pub(crate) fn head_ptr(&mut self) -> *mut *mut rte_mbuf {
        self.ptrs.as_mut_ptr()
    }

    /// Records that `n` more slots after len now hold owned mbufs.
    pub(crate) fn grow(&mut self, n: usize) {
        debug_assert!(self.len + n <= MAX_BURST);
        self.len = (self.len + n).min(MAX_BURST);
    }

    /// Forgets the first `n` mbufs (they were handed to a device) and moves the
    /// rest to the front.
    pub(crate) fn consume_front(&mut self, n: usize) {
        let n = n.min(self.len);
        self.ptrs.copy_within(n..self.len, 0);
        self.len -= n;
    }
}

impl Drop for Burst {
    fn drop(&mut self) {
        self.clear();
    }
}
