//! What the model e-switch reads from rte_flow arrays: an attribute, an
//! END-terminated item list and action list of types drawn from the bytes
//! (known ones and any other number), each spec, mask, last and
//! configuration a buffer of fuzz bytes large enough for any struct (or
//! NULL), a VXLAN_ENCAP definition a nested item list. The reader either
//! refuses with a reason or gives a rule the model checks; an accepted rule
//! is inserted and a packet from the remaining bytes goes through it. Run
//! under the address sanitizer (cargo-fuzz's default): no undefined
//! behaviour, no panic.

#![no_main]

use dpdk_sys as sys;
use libfuzzer_sys::fuzz_target;
use offload::model::{ModelSwitch, Profile};
use offload::packet::VecPacket;
use offload::rte_flow::read::{read, read_back};
use std::ffi::c_void;

const ITEMS: [u32; 10] = [
    sys::RTE_FLOW_ITEM_TYPE_END,
    sys::RTE_FLOW_ITEM_TYPE_VOID,
    sys::RTE_FLOW_ITEM_TYPE_REPRESENTED_PORT,
    sys::RTE_FLOW_ITEM_TYPE_ETH,
    sys::RTE_FLOW_ITEM_TYPE_VLAN,
    sys::RTE_FLOW_ITEM_TYPE_IPV4,
    sys::RTE_FLOW_ITEM_TYPE_IPV6,
    sys::RTE_FLOW_ITEM_TYPE_UDP,
    sys::RTE_FLOW_ITEM_TYPE_TCP,
    sys::RTE_FLOW_ITEM_TYPE_VXLAN,
];
const ACTIONS: [u32; 15] = [
    sys::RTE_FLOW_ACTION_TYPE_END,
    sys::RTE_FLOW_ACTION_TYPE_VOID,
    sys::RTE_FLOW_ACTION_TYPE_COUNT,
    sys::RTE_FLOW_ACTION_TYPE_AGE,
    sys::RTE_FLOW_ACTION_TYPE_VXLAN_DECAP,
    sys::RTE_FLOW_ACTION_TYPE_OF_POP_VLAN,
    sys::RTE_FLOW_ACTION_TYPE_OF_PUSH_VLAN,
    sys::RTE_FLOW_ACTION_TYPE_OF_SET_VLAN_VID,
    sys::RTE_FLOW_ACTION_TYPE_OF_SET_VLAN_PCP,
    sys::RTE_FLOW_ACTION_TYPE_SET_MAC_SRC,
    sys::RTE_FLOW_ACTION_TYPE_SET_MAC_DST,
    sys::RTE_FLOW_ACTION_TYPE_VXLAN_ENCAP,
    sys::RTE_FLOW_ACTION_TYPE_DROP,
    sys::RTE_FLOW_ACTION_TYPE_REPRESENTED_PORT,
    sys::RTE_FLOW_ACTION_TYPE_JUMP,
];
/// Larger than any item or action struct the reader knows.
const BUF_WORDS: usize = 32;

struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        let Some((&b, rest)) = self.0.split_first() else { return 0 };
        self.0 = rest;
        b
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
}

/// Owns every buffer the arrays point into.
#[derive(Default)]
struct Storage {
    bufs: Vec<Box<[u64; BUF_WORDS]>>,
    item_lists: Vec<Vec<sys::rte_flow_item>>,
    encaps: Vec<Box<sys::rte_flow_action_vxlan_encap>>,
}

impl Storage {
    /// NULL, or a buffer of fuzz bytes.
    fn buf(&mut self, b: &mut Bytes<'_>, null_chance: u8) -> *const c_void {
        if b.u8() < null_chance {
            return std::ptr::null();
        }
        let mut w = Box::new([0u64; BUF_WORDS]);
        let n = usize::from(b.u8()) % (BUF_WORDS * 8 + 1);
        // SAFETY: a [u64; N] is N * 8 plain bytes; n is within them.
        let bytes = unsafe { std::slice::from_raw_parts_mut(w.as_mut_ptr().cast::<u8>(), BUF_WORDS * 8) };
        for x in bytes.iter_mut().take(n) {
            *x = b.u8();
        }
        let p = w.as_ptr().cast();
        self.bufs.push(w);
        p
    }

    /// An END-terminated item list of at most `max` items before END.
    fn items(&mut self, b: &mut Bytes<'_>, max: usize) -> *const sys::rte_flow_item {
        let n = usize::from(b.u8()) % (max + 1);
        let mut list = Vec::with_capacity(n + 1);
        for _ in 0..n {
            let pick = b.u8();
            let type_ = if pick == 0xff { b.u32() } else { ITEMS[usize::from(pick) % ITEMS.len()] };
            let spec = self.buf(b, 64);
            let mask = self.buf(b, 96);
            let last = self.buf(b, 240);
            list.push(sys::rte_flow_item { type_, spec, last, mask });
        }
        list.push(sys::rte_flow_item {
            type_: sys::RTE_FLOW_ITEM_TYPE_END,
            spec: std::ptr::null(),
            last: std::ptr::null(),
            mask: std::ptr::null(),
        });
        let p = list.as_ptr();
        self.item_lists.push(list);
        p
    }
}

fuzz_target!(|data: &[u8]| {
    let mut b = Bytes(data);
    let mut store = Storage::default();
    // SAFETY: rte_flow_attr is plain integers; all zeroes is valid.
    let mut attr: sys::rte_flow_attr = unsafe { std::mem::zeroed() };
    // SAFETY: any bytes are a valid rte_flow_attr (u32 fields and a bitfield).
    let raw_attr = unsafe {
        std::slice::from_raw_parts_mut(
            (&mut attr as *mut sys::rte_flow_attr).cast::<u8>(),
            std::mem::size_of_val(&attr),
        )
    };
    for x in raw_attr.iter_mut() {
        *x = b.u8();
    }
    let items = store.items(&mut b, 12);
    let n = usize::from(b.u8()) % 12;
    let mut actions = Vec::with_capacity(n + 1);
    for _ in 0..n {
        let pick = b.u8();
        let type_ = if pick == 0xff { b.u32() } else { ACTIONS[usize::from(pick) % ACTIONS.len()] };
        let conf = if type_ == sys::RTE_FLOW_ACTION_TYPE_VXLAN_ENCAP && b.u8() > 16 {
            let definition = store.items(&mut b, 8).cast_mut();
            let e = Box::new(sys::rte_flow_action_vxlan_encap { definition });
            let p = (&*e as *const sys::rte_flow_action_vxlan_encap).cast();
            store.encaps.push(e);
            p
        } else if type_ == sys::RTE_FLOW_ACTION_TYPE_VXLAN_ENCAP {
            std::ptr::null()
        } else {
            store.buf(&mut b, 32)
        };
        actions.push(sys::rte_flow_action { type_, conf });
    }
    actions.push(sys::rte_flow_action { type_: sys::RTE_FLOW_ACTION_TYPE_END, conf: std::ptr::null() });
    // SAFETY: attr is a valid attribute; both arrays are END-terminated;
    // every non-null spec, mask, last and configuration points to a buffer
    // larger than any struct of any type, and a VXLAN_ENCAP configuration is
    // a real rte_flow_action_vxlan_encap with an END-terminated definition.
    let raw = match unsafe { read(&attr, items, actions.as_ptr()) } {
        Ok(raw) => raw,
        Err(e) => {
            assert!(!e.message.is_empty());
            return;
        }
    };
    let _ = read_back(&raw);
    let switch = ModelSwitch::new(Profile::default());
    let Ok(compiled) = switch.check(&raw) else { return };
    if switch.insert(compiled).is_err() {
        return;
    }
    let rest = b.0;
    let ingress = u16::from(rest.first().copied().unwrap_or(0) % 4);
    let mut pkt = VecPacket::new(rest, 128);
    let _ = switch.session().process(ingress, &mut pkt);
});
