//! # Connection demultiplexing in O(1)
//!
//! What it is: [`FlowMap`], an open-addressing hash table (linear probing, backward-shift
//! deletion) from a TCP 4-tuple ([`FlowKey`]) to a slot index. The stack keeps one for live
//! connections and one for TIME-WAIT entries. A lookup hashes the key once with the stack's
//! secret ([`super::hash::Secret::mix`]) and compares keys stored inline in the table, so a hit
//! touches one or two cache lines and never the connection itself.
//!
//! What it owns: `2^k >= 2 × capacity` slots of 16 bytes, allocated once: the load factor stays
//! at or below one half, so probe sequences stay short.
//!
//! What it never does: allocate after construction, scan the table, or hold more than its
//! capacity (`insert` refuses).
//!
//! Invariants: every stored key is reachable from its home bucket without crossing an empty
//! slot (what backward-shift deletion maintains); a key is stored at most once.

use std::net::{Ipv4Addr, SocketAddrV4};

use super::hash::Secret;

const EMPTY: u32 = u32::MAX;

/// A TCP 4-tuple as seen from this host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub(crate) struct FlowKey {
    /// Local address.
    pub lip: u32,
    /// Remote address.
    pub rip: u32,
    /// Local port.
    pub lport: u16,
    /// Remote port.
    pub rport: u16,
}

impl FlowKey {
    /// The key of a local and a remote endpoint.
    pub fn new(local: SocketAddrV4, remote: SocketAddrV4) -> FlowKey {
        FlowKey {
            lip: u32::from(*local.ip()),
            rip: u32::from(*remote.ip()),
            lport: local.port(),
            rport: remote.port(),
        }
    }

    /// The local endpoint.
    pub fn local(&self) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::from(self.lip), self.lport)
    }

    /// The remote endpoint.
    pub fn remote(&self) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::from(self.rip), self.rport)
    }

    #[inline]
    fn word(&self) -> u64 {
        let addrs = (u64::from(self.lip) << 32) | u64::from(self.rip);
        let ports = (u64::from(self.lport) << 16) | u64::from(self.rport);
        addrs ^ ports.wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    key: FlowKey,
    val: u32,
}

/// The table (see the module documentation).
#[derive(Debug)]
pub(crate) struct FlowMap {
    slots: Box<[Slot]>,
    mask: usize,
    len: usize,
    capacity: usize,
    secret: Secret,
}

impl FlowMap {
    /// A table for up to `capacity` keys.
    pub fn new(capacity: usize, secret: Secret) -> FlowMap {
        let n = (capacity.max(1) * 2).next_power_of_two();
        FlowMap {
            slots: vec![Slot { key: FlowKey::default(), val: EMPTY }; n].into(),
            mask: n - 1,
            len: 0,
            capacity,
            secret,
        }
    }

    /// Keys stored.
    pub fn len(&self) -> usize {
        self.len
    }

    #[inline]
    fn home(&self, key: &FlowKey) -> usize {
        self.secret.mix(key.word()) as usize & self.mask
    }

    /// The value stored for `key`.
    #[inline]
    pub fn get(&self, key: &FlowKey) -> Option<u32> {
        let mut i = self.home(key);
        loop {
            let s = &self.slots[i];
            if s.val == EMPTY {
                return None;
            }
            if s.key == *key {
                return Some(s.val);
            }
            i = (i + 1) & self.mask;
        }
    }

    /// Stores `key → val`; `false` if the key is present or the table is at capacity.
    pub fn insert(&mut self, key: FlowKey, val: u32) -> bool {
        if self.len >= self.capacity || val == EMPTY {
            return false;
        }
        let mut i = self.home(&key);
        loop {
            let s = &mut self.slots[i];
            if s.val == EMPTY {
                *s = Slot { key, val };
                self.len += 1;
                return true;
            }
            if s.key == key {
                return false;
            }
            i = (i + 1) & self.mask;
        }
    }

    /// Removes `key`; returns its value.
    pub fn remove(&mut self, key: &FlowKey) -> Option<u32> {
        let mut i = self.home(key);
        loop {
            let s = self.slots[i];
            if s.val == EMPTY {
                return None;
            }
            if s.key == *key {
                break;
            }
            i = (i + 1) & self.mask;
        }
        let val = self.slots[i].val;
        // Backward-shift deletion: pull later entries of the cluster into the hole when their
        // home is not between the hole and their slot.
        let mut hole = i;
        let mut j = (i + 1) & self.mask;
        loop {
            let s = self.slots[j];
            if s.val == EMPTY {
                break;
            }
            let home = self.home(&s.key);
            let dist_home = j.wrapping_sub(home) & self.mask;
            let dist_hole = j.wrapping_sub(hole) & self.mask;
            if dist_home >= dist_hole {
                self.slots[hole] = s;
                hole = j;
            }
            j = (j + 1) & self.mask;
        }
        self.slots[hole].val = EMPTY;
        self.len -= 1;
        Some(val)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(n: u32) -> FlowKey {
        FlowKey { lip: 1, rip: n / 7, lport: 80, rport: (n % 65536) as u16 }
    }

    #[test]
    fn insert_get_remove() {
        let mut m = FlowMap::new(4, Secret::new(1, 2));
        assert!(m.insert(key(1), 10));
        assert!(!m.insert(key(1), 11));
        assert!(m.insert(key(2), 20) && m.insert(key(3), 30) && m.insert(key(4), 40));
        assert!(!m.insert(key(5), 50), "at capacity");
        assert_eq!(m.get(&key(3)), Some(30));
        assert_eq!(m.remove(&key(3)), Some(30));
        assert_eq!(m.get(&key(3)), None);
        assert_eq!(m.remove(&key(3)), None);
        assert_eq!(m.len(), 3);
        let k = FlowKey::new(
            SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 80),
            SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 5000),
        );
        assert_eq!(k.local().port(), 80);
        assert_eq!(k.remote().ip(), &Ipv4Addr::new(10, 0, 0, 2));
    }

    proptest! {
        #[test]
        fn matches_a_hashmap(ops in proptest::collection::vec((0u32..64, any::<bool>()), 1..400)) {
            // A tiny table (every key collides often) against std's map.
            let mut m = FlowMap::new(40, Secret::new(3, 4));
            let mut model = std::collections::HashMap::new();
            for (k, ins) in ops {
                if ins {
                    let ok = m.insert(key(k), k);
                    let expect = !model.contains_key(&k) && model.len() < 40;
                    prop_assert_eq!(ok, expect);
                    if ok { model.insert(k, k); }
                } else {
                    prop_assert_eq!(m.remove(&key(k)), model.remove(&k));
                }
                for j in 0..64 {
                    prop_assert_eq!(m.get(&key(j)), model.get(&j).copied());
                }
            }
        }
    }
}
