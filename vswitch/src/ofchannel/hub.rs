//! The connections the switch has, for messages it starts itself
//! (FLOW_REMOVED, PORT_STATUS): each session registers a bounded queue; a
//! full queue (a slow peer) loses the message and counts it, the sender
//! never waits.

use crossbeam_channel::{Receiver, Sender, TrySendError};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Messages queued per connection before they are dropped (and counted).
pub const QUEUE: usize = 1024;

/// An OpenFlow role (spec 6.3.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Equal,
    Master,
    Slave,
}

impl Role {
    pub fn wire(self) -> u32 {
        match self {
            Role::Equal => 1,
            Role::Master => 2,
            Role::Slave => 3,
        }
    }
}

/// A ROLE_REQUEST's generation id older than the newest one seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stale {
    pub newest: u64,
}

struct Member {
    id: u64,
    tx: Sender<Vec<u8>>,
    role: Role,
    controller: bool,
    /// Takes asynchronous messages: controllers always; a tool on a
    /// listener once it sets a miss_send_len other than 0 (as Open
    /// vSwitch's service connections: `ovs-ofctl monitor SWITCH 65535`).
    asynchronous: bool,
}

/// Every live session.
#[derive(Default)]
pub struct Hub {
    members: Mutex<Vec<Member>>,
    next: AtomicU64,
    /// The highest generation id a MASTER or SLAVE request carried.
    generation: Mutex<Option<u64>>,
    /// Messages a full queue lost.
    pub dropped: AtomicU64,
    /// Active controller connections up now.
    pub controllers_up: AtomicUsize,
}

impl Hub {
    /// Registers a session; `controller`: an active connection the switch
    /// made (not a tool on a listener).
    pub fn join(&self, controller: bool) -> (u64, Receiver<Vec<u8>>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = crossbeam_channel::bounded(QUEUE);
        self.lock().push(Member { id, tx, role: Role::Equal, controller, asynchronous: controller });
        if controller {
            self.controllers_up.fetch_add(1, Ordering::AcqRel);
        }
        (id, rx)
    }

    /// Unregisters a session; returns how many controllers are still up.
    pub fn leave(&self, id: u64) -> usize {
        let mut m = self.lock();
        let was = m.iter().position(|x| x.id == id).map(|i| m.remove(i));
        if was.is_some_and(|w| w.controller) {
            self.controllers_up.fetch_sub(1, Ordering::AcqRel);
        }
        self.controllers_up.load(Ordering::Acquire)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Member>> {
        self.members.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether a session takes asynchronous messages (see [`Hub::join`]).
    pub fn set_asynchronous(&self, id: u64, on: bool) {
        if let Some(m) = self.lock().iter_mut().find(|m| m.id == id) {
            m.asynchronous = on;
        }
    }

    /// A session's role.
    pub fn role(&self, id: u64) -> Role {
        self.lock().iter().find(|m| m.id == id).map_or(Role::Equal, |m| m.role)
    }

    /// ROLE_REQUEST: sets `id`'s role (a new master makes the old one a
    /// slave). `generation` is checked for MASTER and SLAVE: one older than
    /// the newest seen is stale.
    ///
    /// # Errors
    /// [`Stale`] when the generation id is older than the newest seen.
    pub fn set_role(&self, id: u64, role: Role, generation: u64) -> Result<(), Stale> {
        if role != Role::Equal {
            let mut g = self.generation.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(cur) = *g {
                if (generation.wrapping_sub(cur) as i64) < 0 {
                    return Err(Stale { newest: cur });
                }
            }
            *g = Some(generation);
        }
        let mut m = self.lock();
        for x in m.iter_mut() {
            if x.id == id {
                x.role = role;
            } else if role == Role::Master && x.role == Role::Master {
                x.role = Role::Slave;
            }
        }
        Ok(())
    }

    /// Queues an asynchronous message to every session not in the slave
    /// role (spec 6.3.7: slaves get port status only).
    pub fn broadcast(&self, msg: &[u8], to_slaves: bool) {
        for m in self.lock().iter() {
            if !m.asynchronous || (m.role == Role::Slave && !to_slaves) {
                continue;
            }
            match m.tx.try_send(msg.to_vec()) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                }
                Err(TrySendError::Disconnected(_)) => {}
            }
        }
    }

    /// Whether a session that takes packet-ins has room for one more:
    /// `None` when no session takes them (the packet-in thread waits while
    /// every one is full, leaving the packets in the PMDs' queues, where the
    /// PMDs drop and count what does not fit).
    pub fn room(&self) -> Option<bool> {
        let m = self.lock();
        let mut takers = m.iter().filter(|m| m.asynchronous && m.role != Role::Slave).peekable();
        takers.peek()?;
        Some(takers.any(|m| !m.tx.is_full()))
    }

    /// Sessions connected now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_generations_and_slow_peers() {
        let hub = Hub::default();
        let (a, rx_a) = hub.join(true);
        let (b, rx_b) = hub.join(false);
        let (_, rx_c) = hub.join(false);
        hub.set_asynchronous(b, true);
        assert_eq!(hub.controllers_up.load(Ordering::Relaxed), 1);
        hub.set_role(a, Role::Master, 5).expect("first master");
        hub.set_role(b, Role::Master, 6).expect("newer generation");
        assert_eq!((hub.role(a), hub.role(b)), (Role::Slave, Role::Master));
        assert!(hub.set_role(a, Role::Master, 4).is_err(), "stale generation");
        hub.broadcast(b"x", false);
        assert!(rx_a.try_recv().is_err(), "slaves get no flow-removed");
        assert_eq!(rx_b.try_recv().expect("master gets it"), b"x");
        assert!(rx_c.try_recv().is_err(), "a tool with miss_send_len 0 gets no asynchronous message");
        for _ in 0..QUEUE + 5 {
            hub.broadcast(b"y", true);
        }
        assert_eq!(hub.dropped.load(Ordering::Relaxed), 2 * 5, "full queues lose and count");
        assert_eq!(hub.leave(a), 0);
        assert_eq!(hub.len(), 2);
    }
}
