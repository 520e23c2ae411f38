//! The real device: rte_flow calls on a transfer proxy port.
//!
//! Transfer rules are created on the port DPDK names as the e-switch's
//! transfer proxy (`rte_flow_pick_transfer_proxy`; on mlx5 the PF / uplink).
//! Every call's failure comes back as a [`DeviceError`] with the driver's
//! message (read null-safely), the rte_flow error type and errno. Handles are
//! plain numbers; the `rte_flow` pointers stay inside this object, and the
//! rules it created are destroyed when it is dropped.

use crate::device::{DeviceError, FlowDevice, HitCounts, RuleHandle};
use crate::rte_flow::Lowered;
use dpdk_sys as sys;
use std::collections::HashMap;
use std::ffi::CStr;
use std::ptr::NonNull;

/// A zeroed error struct for a call to fill.
fn error_slot() -> sys::rte_flow_error {
    sys::rte_flow_error { type_: sys::RTE_FLOW_ERROR_TYPE_NONE, cause: std::ptr::null(), message: std::ptr::null() }
}

/// Turns a failed call's return value and error struct into a [`DeviceError`].
fn failure(op: &'static str, ret: i32, e: &sys::rte_flow_error) -> DeviceError {
    // rte_flow functions return -errno and also set rte_errno; prefer the return.
    let errno = if ret < 0 {
        -ret
    } else {
        // SAFETY: reads the calling thread's rte_errno through the exported wrapper.
        unsafe { sys::rte_errno_get() }
    };
    let message = if e.message.is_null() {
        String::new()
    } else {
        // SAFETY: a non-null message is a NUL-terminated string owned by the
        // driver (usually static); it is copied before any other call.
        unsafe { CStr::from_ptr(e.message) }.to_string_lossy().into_owned()
    };
    DeviceError::new(op, errno, e.type_, message)
}

/// rte_flow on one port's transfer proxy.
pub struct RteFlowDevice {
    port: u16,
    proxy: u16,
    flows: HashMap<u64, NonNull<sys::rte_flow>>,
    next: u64,
}

// SAFETY: the rte_flow handles are opaque tokens DPDK hands back; they are
// only passed to rte_flow calls on `proxy`, which DPDK serialises per port
// (or the driver declares thread-safe). The object is used by one thread at
// a time (`&mut self` for every call).
unsafe impl Send for RteFlowDevice {}

impl RteFlowDevice {
    /// The device for the e-switch `port` belongs to. A driver with no flow
    /// API at all (ENOSYS) has no proxy to name: the port itself is used, and
    /// every call then returns the driver's refusal.
    ///
    /// # Errors
    /// When DPDK refuses to name a transfer proxy for another reason.
    pub fn new(port: u16) -> Result<Self, DeviceError> {
        let mut proxy = port;
        let mut e = error_slot();
        // SAFETY: valid out pointers; DPDK checks the port id.
        let ret = unsafe { sys::rte_flow_pick_transfer_proxy(port, &mut proxy, &mut e) };
        if ret != 0 {
            let err = failure("pick_transfer_proxy", ret, &e);
            if err.errno != crate::device::libc_errno::ENOSYS {
                return Err(err);
            }
            proxy = port;
        }
        Ok(Self { port, proxy, flows: HashMap::new(), next: 1 })
    }

    /// The port rules are created on.
    pub fn proxy(&self) -> u16 {
        self.proxy
    }

    fn flow(&self, op: &'static str, h: RuleHandle) -> Result<NonNull<sys::rte_flow>, DeviceError> {
        self.flows.get(&h.0).copied().ok_or_else(|| {
            DeviceError::new(op, crate::device::libc_errno::ENOENT, crate::device::ERROR_TYPE_HANDLE, "no such rule")
        })
    }
}

impl FlowDevice for RteFlowDevice {
    fn describe(&self) -> String {
        format!("rte_flow on port {} (transfer proxy {})", self.port, self.proxy)
    }

    fn validate(&mut self, rule: &Lowered) -> Result<(), DeviceError> {
        let mut e = error_slot();
        // SAFETY: the lowered arrays are valid and END-terminated while `rule`
        // lives; `e` is a valid out pointer.
        let ret = unsafe { sys::rte_flow_validate(self.proxy, rule.attr(), rule.items(), rule.actions(), &mut e) };
        if ret != 0 {
            return Err(failure("validate", ret, &e));
        }
        Ok(())
    }

    fn create(&mut self, rule: &Lowered) -> Result<RuleHandle, DeviceError> {
        let mut e = error_slot();
        // SAFETY: as in validate; DPDK copies what it keeps.
        let flow = unsafe { sys::rte_flow_create(self.proxy, rule.attr(), rule.items(), rule.actions(), &mut e) };
        let Some(flow) = NonNull::new(flow) else {
            return Err(failure("create", 0, &e));
        };
        let h = self.next;
        self.next += 1;
        self.flows.insert(h, flow);
        Ok(RuleHandle(h))
    }

    fn destroy(&mut self, handle: RuleHandle) -> Result<Option<HitCounts>, DeviceError> {
        // The last count, read just before the rule goes (a NIC has no
        // destroy-and-read; hits in between are lost).
        let counts = self.query(handle).ok();
        let flow = self.flow("destroy", handle)?;
        let mut e = error_slot();
        // SAFETY: `flow` was returned by rte_flow_create on this port and not
        // destroyed yet (it is removed from the map on success).
        let ret = unsafe { sys::rte_flow_destroy(self.proxy, flow.as_ptr(), &mut e) };
        if ret != 0 {
            return Err(failure("destroy", ret, &e));
        }
        self.flows.remove(&handle.0);
        Ok(counts)
    }

    fn query(&mut self, handle: RuleHandle) -> Result<HitCounts, DeviceError> {
        let flow = self.flow("query", handle)?;
        let count = sys::rte_flow_action_count { id: 0 };
        let action = sys::rte_flow_action {
            type_: sys::RTE_FLOW_ACTION_TYPE_COUNT,
            conf: (&count as *const sys::rte_flow_action_count).cast(),
        };
        let mut data = sys::rte_flow_query_count::default();
        let mut e = error_slot();
        // SAFETY: live flow of this port, a COUNT action, and a query_count
        // struct for the answer.
        let ret = unsafe {
            sys::rte_flow_query(
                self.proxy,
                flow.as_ptr(),
                &action,
                (&mut data as *mut sys::rte_flow_query_count).cast(),
                &mut e,
            )
        };
        if ret != 0 {
            return Err(failure("query", ret, &e));
        }
        // The driver says which of the two it filled.
        Ok(HitCounts {
            packets: if data.hits_set() != 0 { data.hits } else { 0 },
            bytes: if data.bytes_set() != 0 { data.bytes } else { 0 },
        })
    }

    fn aged(&mut self) -> Result<Vec<u64>, DeviceError> {
        let mut e = error_slot();
        // SAFETY: a NULL array with size 0 asks for the count.
        let n = unsafe { sys::rte_flow_get_aged_flows(self.proxy, std::ptr::null_mut(), 0, &mut e) };
        if n < 0 {
            return Err(failure("aged", n, &e));
        }
        if n == 0 {
            return Ok(Vec::new());
        }
        let mut contexts: Vec<*mut std::ffi::c_void> = vec![std::ptr::null_mut(); n as usize];
        let mut e = error_slot();
        // SAFETY: `contexts` has room for `n` pointers.
        let got = unsafe { sys::rte_flow_get_aged_flows(self.proxy, contexts.as_mut_ptr(), n as u32, &mut e) };
        if got < 0 {
            return Err(failure("aged", got, &e));
        }
        // The NIC's answer: only cookies are expected (the lowering puts one
        // in every AGE action); the caller ignores unknown ones.
        Ok(contexts.into_iter().take(got.max(0) as usize).map(|c| c as usize as u64).collect())
    }

    fn flush(&mut self) -> Result<usize, DeviceError> {
        let handles: Vec<u64> = self.flows.keys().copied().collect();
        let mut destroyed = 0;
        let mut first_error = None;
        for h in handles {
            match self.destroy(RuleHandle(h)) {
                Ok(_) => destroyed += 1,
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) if destroyed == 0 => Err(e),
            _ => Ok(destroyed),
        }
    }

    fn rules(&self) -> usize {
        self.flows.len()
    }

    /// Stopping the transfer proxy flushes every rule created on it (the
    /// handles are gone, DPDK says not to use them); stopping another port of
    /// the e-switch leaves the proxy's rules in place.
    fn port_stopped(&mut self, port: u16) -> Vec<(RuleHandle, Option<HitCounts>)> {
        if port != self.proxy {
            return Vec::new();
        }
        let handles: Vec<RuleHandle> = self.flows.keys().map(|&h| RuleHandle(h)).collect();
        // Their last counts while the rules are still there.
        let gone = handles.into_iter().map(|h| (h, self.query(h).ok())).collect();
        self.flows.clear();
        gone
    }
}

impl Drop for RteFlowDevice {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}
