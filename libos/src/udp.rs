//! # UDP sockets for code running on a worker
//!
//! What it is: [`UdpTable`], the sockets of one stack, and the per-socket state the stack
//! drives: bounded receive and send queues, the receive mode ([`UdpMode`]) and an optional
//! traffic [`GeneratorConfig`] used by the benchmark.
//!
//! What it owns:
//! - demultiplexing in O(1): a 65536-entry array indexed by local port gives the first socket
//!   bound to that port; sockets sharing a port (different local addresses) are chained, and
//!   a socket bound to a specific address wins over one bound to `0.0.0.0`. No lookup scans
//!   the socket table.
//! - receive modes, chosen per socket at bind time (this is the zero-copy decision):
//!   - [`UdpMode::Deliver`] (zero copy): the stack returns `Verdict::Deliver` with the payload's
//!     place in the frame; the worker hands the frame to the socket's owner and frees it
//!     afterwards. Nothing is copied and nothing is queued in the stack.
//!   - [`UdpMode::Queue`]: the payload is copied into a preallocated slot of the socket's
//!     receive ring and the frame is freed at once (verdict `Consumed`); the owner drains the
//!     ring in batches with `Stack::udp_recv`. One copy, but frames go back to the NIC at
//!     once, so a slow consumer cannot starve the fill ring.
//!   - [`UdpMode::Echo`]: the frame is turned around in place (addresses and ports swapped,
//!     checksums unchanged because the pseudo-header sum is symmetric) and sent from the same
//!     memory (verdict `Transmit`).
//!   - [`UdpMode::Sink`]: counted and freed.
//!
//!   A datagram reassembled from fragments has no single frame: in `Deliver` and `Queue` mode
//!   it is copied into the receive ring; in `Echo` mode it is answered from the reassembly
//!   buffer (fragmented again on the way out).
//! - send queues: `Stack::udp_send` copies the payload into a preallocated slot; `poll_tx`
//!   routes, resolves and (if needed) fragments it into transmit slots.
//!
//! What it never does: allocate after `bind` (rings are sized at bind time), scan all
//! sockets per packet, block, or grow a queue (a full queue is a counted drop or an error).
//!
//! Invariants: `ports[p] != 0` iff a socket is bound to port `p`, and every socket in that
//! chain is bound to `p`; a handle is valid iff its generation matches the slot's.
//!
//! References: RFC 768 (UDP), RFC 1122 §4.1.3 (UDP requirements, port unreachable), RFC 6335
//! §6 (ephemeral range 49152–65535), RFC 862 (the echo protocol).

use core::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};

use crate::ring::FixedRing;
use crate::stats::DropReason;

const NIL: u16 = u16::MAX;

/// Identifies a socket of one stack. Stale handles (of a closed socket) are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct UdpHandle {
    index: u16,
    generation: u16,
}

/// What the stack does with a datagram received on a socket (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UdpMode {
    /// Copy into the socket's receive ring; the owner calls `udp_recv`.
    #[default]
    Queue,
    /// Hand the frame to the owner without copying (`Verdict::Deliver`).
    Deliver,
    /// Answer every datagram with itself, in place.
    Echo,
    /// Count and free.
    Sink,
}

/// Sizes and mode of one socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpSocketConfig {
    /// Receive mode.
    pub mode: UdpMode,
    /// Datagrams the receive ring holds.
    pub rx_queue: usize,
    /// Largest payload a receive slot holds.
    pub rx_slot_size: usize,
    /// Datagrams the send ring holds.
    pub tx_queue: usize,
    /// Largest payload a send slot holds (up to 65507, sent fragmented).
    pub tx_slot_size: usize,
}

impl Default for UdpSocketConfig {
    fn default() -> UdpSocketConfig {
        UdpSocketConfig {
            mode: UdpMode::Queue,
            rx_queue: 64,
            rx_slot_size: 2048,
            tx_queue: 64,
            tx_slot_size: 2048,
        }
    }
}

impl UdpSocketConfig {
    /// A socket of `mode` with the default sizes (and no rings for modes that need none).
    pub fn mode(mode: UdpMode) -> UdpSocketConfig {
        let queues = matches!(mode, UdpMode::Queue | UdpMode::Deliver);
        UdpSocketConfig {
            mode,
            rx_queue: if queues { 64 } else { 0 },
            ..UdpSocketConfig::default()
        }
    }
}

/// A traffic generator attached to a socket: `poll_tx` fills every slot it is given (after
/// other pending traffic) with datagrams of `payload_len` bytes to `dst`, each starting with a
/// 64-bit big-endian sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GeneratorConfig {
    /// Destination.
    pub dst: SocketAddrV4,
    /// Payload bytes per datagram (at least 8 for the sequence number is not required: a
    /// shorter payload carries a truncated one). At most MTU − 28: the generator never
    /// fragments.
    pub payload_len: usize,
    /// Stop after this many datagrams; `None` runs until stopped.
    pub count: Option<u64>,
}

/// Counters of one socket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UdpSocketStats {
    /// Datagrams received (queued, delivered, echoed or sunk).
    pub rx_datagrams: u64,
    /// Payload bytes received.
    pub rx_bytes: u64,
    /// Datagrams dropped because the receive ring was full or the slot too small.
    pub rx_dropped: u64,
    /// Datagrams answered in place or from the reassembly buffer.
    pub echoed: u64,
    /// Datagrams sent (socket sends and generator).
    pub tx_datagrams: u64,
    /// Payload bytes sent.
    pub tx_bytes: u64,
    /// Datagrams dropped after `udp_send` accepted them (no route, ARP failure, pending full).
    pub tx_dropped: u64,
}

/// Why a socket call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UdpError {
    /// Another socket is bound to this address and port.
    AddrInUse,
    /// The local address is not one of the interface's.
    AddrNotAvailable,
    /// The socket table is full, or no ephemeral port is free.
    NoSpace,
    /// The handle does not name an open socket.
    InvalidHandle,
    /// The send queue is full; try again after `poll_tx`.
    QueueFull,
    /// The payload exceeds the send slot size (or 65507 bytes).
    TooBig,
    /// No route to the destination.
    NoRoute,
    /// The destination is unspecified or has port 0.
    BadDestination,
}

impl fmt::Display for UdpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UdpError::AddrInUse => "udp: address and port already bound",
            UdpError::AddrNotAvailable => "udp: local address is not configured on the interface",
            UdpError::NoSpace => "udp: no free socket or ephemeral port",
            UdpError::InvalidHandle => "udp: invalid or closed socket handle",
            UdpError::QueueFull => "udp: send queue full",
            UdpError::TooBig => "udp: datagram larger than the send slot",
            UdpError::NoRoute => "udp: no route to destination",
            UdpError::BadDestination => "udp: destination address or port is zero",
        })
    }
}

impl std::error::Error for UdpError {}

/// Where a received datagram came from and where it was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecvMeta {
    /// The sender.
    pub src: SocketAddrV4,
    /// The local address and port it was sent to.
    pub dst: SocketAddrV4,
}

#[derive(Debug, Clone, Copy)]
struct SlotMeta {
    peer: SocketAddrV4,
    local: Ipv4Addr,
    len: u32,
}

impl Default for SlotMeta {
    fn default() -> SlotMeta {
        SlotMeta {
            peer: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
            local: Ipv4Addr::UNSPECIFIED,
            len: 0,
        }
    }
}

/// A ring of fixed-size datagram slots.
#[derive(Debug)]
struct DatagramRing {
    data: Box<[u8]>,
    slot: usize,
    meta: FixedRing<SlotMeta>,
    head: usize,
}

impl DatagramRing {
    fn new(slots: usize, slot: usize) -> DatagramRing {
        DatagramRing {
            data: vec![0u8; slots * slot].into_boxed_slice(),
            slot,
            meta: FixedRing::new(slots),
            head: 0,
        }
    }

    fn push(&mut self, peer: SocketAddrV4, local: Ipv4Addr, pieces: &[&[u8]]) -> bool {
        let len: usize = pieces.iter().map(|p| p.len()).sum();
        let cap = self.meta.capacity();
        if len > self.slot || self.meta.len() >= cap {
            return false;
        }
        let at = (self.head + self.meta.len()) % cap * self.slot;
        let mut w = at;
        for p in pieces {
            self.data[w..w + p.len()].copy_from_slice(p);
            w += p.len();
        }
        self.meta.push(SlotMeta { peer, local, len: len as u32 })
    }

    fn front(&self) -> Option<(SlotMeta, &[u8])> {
        let m = *self.meta.front()?;
        let at = self.head * self.slot;
        Some((m, &self.data[at..at + m.len as usize]))
    }

    fn pop(&mut self) {
        if self.meta.pop().is_some() {
            self.head = (self.head + 1) % self.meta.capacity();
        }
    }

    fn len(&self) -> usize {
        self.meta.len()
    }
}

/// A generator's running state.
#[derive(Debug)]
pub(crate) struct Generator {
    pub cfg: GeneratorConfig,
    pub sent: u64,
}

#[derive(Debug)]
pub(crate) struct Socket {
    pub local: SocketAddrV4,
    pub mode: UdpMode,
    rx: DatagramRing,
    tx: DatagramRing,
    pub stats: UdpSocketStats,
    next_on_port: u16,
    on_tx_list: bool,
    pub generator: Option<Generator>,
}

/// The sockets of one stack (see the module documentation).
#[derive(Debug)]
pub struct UdpTable {
    sockets: Vec<Option<Socket>>,
    generations: Vec<u16>,
    ports: Box<[u16]>,
    tx_ready: FixedRing<u16>,
    generators: Vec<u16>,
    next_ephemeral: u16,
}

impl UdpTable {
    /// Room for `max_sockets` sockets (at most 65534), the port array allocated now.
    pub fn new(max_sockets: usize) -> UdpTable {
        let max = max_sockets.min(usize::from(NIL) - 1);
        UdpTable {
            sockets: (0..max).map(|_| None).collect(),
            generations: vec![0; max],
            ports: vec![0u16; 65536].into_boxed_slice(),
            tx_ready: FixedRing::new(max),
            generators: Vec::with_capacity(max),
            next_ephemeral: 49152,
        }
    }

    /// Binds a socket to `local` (port 0 picks an ephemeral port). The caller checked that the
    /// address is ours or unspecified.
    pub(crate) fn bind(
        &mut self,
        local: SocketAddrV4,
        cfg: UdpSocketConfig,
    ) -> Result<UdpHandle, UdpError> {
        let Some(index) = self.sockets.iter().position(Option::is_none) else {
            return Err(UdpError::NoSpace);
        };
        let port = if local.port() == 0 {
            self.ephemeral_port().ok_or(UdpError::NoSpace)?
        } else {
            local.port()
        };
        let mut cur = self.ports[usize::from(port)];
        while cur != 0 {
            let s = self.sockets[usize::from(cur - 1)].as_ref();
            if s.is_some_and(|s| s.local.ip() == local.ip()) {
                return Err(UdpError::AddrInUse);
            }
            cur = s.map_or(0, |s| if s.next_on_port == NIL { 0 } else { s.next_on_port + 1 });
        }
        let head = self.ports[usize::from(port)];
        let rx = match cfg.mode {
            UdpMode::Queue | UdpMode::Deliver => DatagramRing::new(cfg.rx_queue, cfg.rx_slot_size),
            UdpMode::Echo | UdpMode::Sink => DatagramRing::new(0, 0),
        };
        self.sockets[index] = Some(Socket {
            local: SocketAddrV4::new(*local.ip(), port),
            mode: cfg.mode,
            rx,
            tx: DatagramRing::new(cfg.tx_queue, cfg.tx_slot_size.min(65507)),
            stats: UdpSocketStats::default(),
            next_on_port: if head == 0 { NIL } else { head - 1 },
            on_tx_list: false,
            generator: None,
        });
        self.ports[usize::from(port)] = index as u16 + 1;
        Ok(UdpHandle { index: index as u16, generation: self.generations[index] })
    }

    fn ephemeral_port(&mut self) -> Option<u16> {
        for _ in 0..16384 {
            let p = self.next_ephemeral;
            self.next_ephemeral = if p == u16::MAX { 49152 } else { p + 1 };
            if self.ports[usize::from(p)] == 0 {
                return Some(p);
            }
        }
        None
    }

    /// Closes a socket; its queued datagrams are discarded.
    pub(crate) fn close(&mut self, h: UdpHandle) -> Result<(), UdpError> {
        let idx = self.index(h)?;
        let port = self.sockets[idx].as_ref().map_or(0, |s| s.local.port());
        // Unlink from the port chain.
        let mut prev: Option<usize> = None;
        let mut cur = self.ports[usize::from(port)];
        while cur != 0 {
            let c = usize::from(cur - 1);
            let next = self.sockets[c].as_ref().map_or(NIL, |s| s.next_on_port);
            if c == idx {
                let link = if next == NIL { 0 } else { next + 1 };
                match prev {
                    None => self.ports[usize::from(port)] = link,
                    Some(p) => {
                        if let Some(s) = self.sockets[p].as_mut() {
                            s.next_on_port = next;
                        }
                    }
                }
                break;
            }
            prev = Some(c);
            cur = if next == NIL { 0 } else { next + 1 };
        }
        self.sockets[idx] = None;
        self.generations[idx] = self.generations[idx].wrapping_add(1);
        self.tx_ready.retain(|&i| usize::from(i) != idx);
        self.generators.retain(|&i| usize::from(i) != idx);
        Ok(())
    }

    fn index(&self, h: UdpHandle) -> Result<usize, UdpError> {
        let i = usize::from(h.index);
        match (self.sockets.get(i), self.generations.get(i)) {
            (Some(Some(_)), Some(&g)) if g == h.generation => Ok(i),
            _ => Err(UdpError::InvalidHandle),
        }
    }

    pub(crate) fn get(&self, h: UdpHandle) -> Result<&Socket, UdpError> {
        let i = self.index(h)?;
        self.sockets[i].as_ref().ok_or(UdpError::InvalidHandle)
    }

    pub(crate) fn get_mut(&mut self, h: UdpHandle) -> Result<&mut Socket, UdpError> {
        let i = self.index(h)?;
        self.sockets[i].as_mut().ok_or(UdpError::InvalidHandle)
    }

    /// The handle of socket `index`.
    pub(crate) fn handle(&self, index: usize) -> UdpHandle {
        UdpHandle {
            index: index as u16,
            generation: self.generations.get(index).copied().unwrap_or(0),
        }
    }

    /// The socket receiving datagrams for `dst:port`: one bound to exactly `dst` if any,
    /// else one bound to `0.0.0.0`. O(1) plus the (short) chain of sockets on the port.
    #[inline]
    pub(crate) fn lookup(&self, dst: Ipv4Addr, port: u16) -> Option<usize> {
        let mut cur = self.ports[usize::from(port)];
        let mut wildcard = None;
        while cur != 0 {
            let i = usize::from(cur - 1);
            let s = self.sockets[i].as_ref()?;
            if *s.local.ip() == dst {
                return Some(i);
            }
            if s.local.ip().is_unspecified() {
                wildcard = Some(i);
            }
            cur = if s.next_on_port == NIL { 0 } else { s.next_on_port + 1 };
        }
        wildcard
    }

    pub(crate) fn socket_mut(&mut self, index: usize) -> Option<&mut Socket> {
        self.sockets.get_mut(index).and_then(Option::as_mut)
    }

    /// Queues a received payload on socket `index` (in pieces, for reassembled datagrams).
    /// `Err(TooBig)` if it exceeds the slot size, `Err(SocketFull)` if the ring is full.
    pub(crate) fn queue_rx(
        &mut self,
        index: usize,
        src: SocketAddrV4,
        local: Ipv4Addr,
        pieces: &[&[u8]],
    ) -> Result<(), DropReason> {
        let Some(s) = self.socket_mut(index) else { return Err(DropReason::NoSocket) };
        let len: usize = pieces.iter().map(|p| p.len()).sum();
        if s.rx.push(src, local, pieces) {
            s.stats.rx_datagrams += 1;
            s.stats.rx_bytes += len as u64;
            Ok(())
        } else {
            s.stats.rx_dropped += 1;
            Err(if len > s.rx.slot { DropReason::TooBig } else { DropReason::SocketFull })
        }
    }

    /// Calls `f` on up to `max` queued datagrams of `h`, oldest first, and removes them.
    pub(crate) fn recv(
        &mut self,
        h: UdpHandle,
        max: usize,
        mut f: impl FnMut(&RecvMeta, &[u8]),
    ) -> Result<usize, UdpError> {
        let s = self.get_mut(h)?;
        let port = s.local.port();
        let mut n = 0;
        while n < max {
            let Some((m, data)) = s.rx.front() else { break };
            f(&RecvMeta { src: m.peer, dst: SocketAddrV4::new(m.local, port) }, data);
            s.rx.pop();
            n += 1;
        }
        Ok(n)
    }

    /// Datagrams waiting in `h`'s receive ring.
    pub(crate) fn rx_len(&self, h: UdpHandle) -> Result<usize, UdpError> {
        Ok(self.get(h)?.rx.len())
    }

    /// Copies a datagram onto `h`'s send ring.
    pub(crate) fn queue_tx(
        &mut self,
        h: UdpHandle,
        dst: SocketAddrV4,
        src: Ipv4Addr,
        payload: &[u8],
    ) -> Result<(), UdpError> {
        let idx = self.index(h)?;
        let Some(s) = self.sockets[idx].as_mut() else { return Err(UdpError::InvalidHandle) };
        if payload.len() > s.tx.slot {
            return Err(UdpError::TooBig);
        }
        if !s.tx.push(dst, src, &[payload]) {
            return Err(UdpError::QueueFull);
        }
        if !s.on_tx_list {
            s.on_tx_list = true;
            self.tx_ready.push(idx as u16);
        }
        Ok(())
    }

    /// The socket with datagrams to send that comes next, and its oldest datagram:
    /// `(index, local port, destination, chosen source, payload length)`.
    pub(crate) fn tx_front_meta(&self) -> Option<(usize, u16, SocketAddrV4, Ipv4Addr, usize)> {
        let &i = self.tx_ready.front()?;
        let s = self.sockets.get(usize::from(i))?.as_ref()?;
        let (m, data) = s.tx.front()?;
        Some((usize::from(i), s.local.port(), m.peer, m.local, data.len()))
    }

    /// The payload of the datagram `tx_front_meta` describes (empty if none).
    pub(crate) fn tx_front_payload(&self) -> &[u8] {
        let Some(&i) = self.tx_ready.front() else { return &[] };
        match self.sockets.get(usize::from(i)).and_then(Option::as_ref) {
            Some(s) => s.tx.front().map_or(&[], |(_, d)| d),
            None => &[],
        }
    }

    /// Removes the datagram `tx_front` returned; a socket whose ring empties leaves the list,
    /// one with more goes to the back (round robin between sockets).
    pub(crate) fn tx_pop(&mut self) {
        let Some(i) = self.tx_ready.pop() else { return };
        if let Some(s) = self.sockets.get_mut(usize::from(i)).and_then(Option::as_mut) {
            s.tx.pop();
            if s.tx.len() > 0 {
                self.tx_ready.push(i);
            } else {
                s.on_tx_list = false;
            }
        }
    }

    /// Whether any socket has datagrams to send.
    pub(crate) fn has_tx(&self) -> bool {
        !self.tx_ready.is_empty()
    }

    /// Attaches (or with `None` detaches) a generator to `h`.
    pub(crate) fn set_generator(
        &mut self,
        h: UdpHandle,
        cfg: Option<GeneratorConfig>,
    ) -> Result<(), UdpError> {
        let idx = self.index(h)?;
        let Some(s) = self.sockets[idx].as_mut() else { return Err(UdpError::InvalidHandle) };
        s.generator = cfg.map(|cfg| Generator { cfg, sent: 0 });
        self.generators.retain(|&i| usize::from(i) != idx);
        if s.generator.is_some() {
            self.generators.push(idx as u16);
        }
        Ok(())
    }

    /// Indices of sockets with a generator.
    pub(crate) fn generators(&self) -> &[u16] {
        &self.generators
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(ip: [u8; 4], port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::from(ip), port)
    }

    #[test]
    fn specific_address_wins_over_wildcard() {
        let mut t = UdpTable::new(4);
        let any = t.bind(sa([0, 0, 0, 0], 53), UdpSocketConfig::default()).unwrap();
        let one = t.bind(sa([10, 0, 0, 1], 53), UdpSocketConfig::default()).unwrap();
        assert_eq!(
            t.bind(sa([10, 0, 0, 1], 53), UdpSocketConfig::default()),
            Err(UdpError::AddrInUse)
        );
        assert_eq!(t.lookup(Ipv4Addr::new(10, 0, 0, 1), 53), Some(1));
        assert_eq!(t.lookup(Ipv4Addr::new(10, 0, 0, 2), 53), Some(0));
        assert_eq!(t.lookup(Ipv4Addr::new(10, 0, 0, 1), 54), None);
        t.close(any).unwrap();
        assert_eq!(t.lookup(Ipv4Addr::new(10, 0, 0, 2), 53), None);
        assert_eq!(t.lookup(Ipv4Addr::new(10, 0, 0, 1), 53), Some(1));
        assert_eq!(t.close(any), Err(UdpError::InvalidHandle), "stale handle");
        t.close(one).unwrap();
        assert_eq!(t.lookup(Ipv4Addr::new(10, 0, 0, 1), 53), None);
        let again = t.bind(sa([0, 0, 0, 0], 53), UdpSocketConfig::default()).unwrap();
        assert_ne!(again, any, "a reused slot gets a new generation");
    }

    #[test]
    fn ephemeral_ports_and_table_bound() {
        let mut t = UdpTable::new(2);
        let a = t.bind(sa([0, 0, 0, 0], 0), UdpSocketConfig::default()).unwrap();
        assert_eq!(t.get(a).unwrap().local.port(), 49152);
        t.bind(sa([0, 0, 0, 0], 0), UdpSocketConfig::default()).unwrap();
        assert_eq!(t.bind(sa([0, 0, 0, 0], 9), UdpSocketConfig::default()), Err(UdpError::NoSpace));
    }

    #[test]
    fn receive_ring_is_bounded_and_fifo() {
        let mut t = UdpTable::new(1);
        let cfg = UdpSocketConfig { rx_queue: 2, rx_slot_size: 4, ..UdpSocketConfig::default() };
        let h = t.bind(sa([0, 0, 0, 0], 7), cfg).unwrap();
        let src = sa([10, 0, 0, 9], 1000);
        let me = Ipv4Addr::new(10, 0, 0, 1);
        assert_eq!(t.queue_rx(0, src, me, &[b"ab", b"c"]), Ok(()));
        assert_eq!(t.queue_rx(0, src, me, &[b"toolong"]), Err(DropReason::TooBig));
        assert_eq!(t.queue_rx(0, src, me, &[b"d"]), Ok(()));
        assert_eq!(t.queue_rx(0, src, me, &[b"e"]), Err(DropReason::SocketFull));
        let mut got = Vec::new();
        assert_eq!(t.recv(h, 1, |m, d| got.push((m.src, d.to_vec()))), Ok(1));
        assert_eq!(t.queue_rx(0, src, me, &[b"f"]), Ok(()));
        assert_eq!(t.recv(h, 10, |_, d| got.push((src, d.to_vec()))), Ok(2));
        let data: Vec<Vec<u8>> = got.into_iter().map(|g| g.1).collect();
        assert_eq!(data, [b"abc".to_vec(), b"d".to_vec(), b"f".to_vec()]);
        let s = t.get(h).unwrap().stats;
        assert_eq!((s.rx_datagrams, s.rx_dropped), (3, 2));
    }

    #[test]
    fn send_rings_round_robin_between_sockets() {
        let mut t = UdpTable::new(2);
        let a = t.bind(sa([0, 0, 0, 0], 1), UdpSocketConfig::default()).unwrap();
        let b = t.bind(sa([0, 0, 0, 0], 2), UdpSocketConfig::default()).unwrap();
        let dst = sa([10, 0, 0, 2], 9);
        let src = Ipv4Addr::new(10, 0, 0, 1);
        t.queue_tx(a, dst, src, b"a1").unwrap();
        t.queue_tx(a, dst, src, b"a2").unwrap();
        t.queue_tx(b, dst, src, b"b1").unwrap();
        let mut order = Vec::new();
        while let Some((_, port, _, _, _)) = t.tx_front_meta() {
            order.push((port, t.tx_front_payload().to_vec()));
            t.tx_pop();
        }
        assert_eq!(order, [(1, b"a1".to_vec()), (2, b"b1".to_vec()), (1, b"a2".to_vec())]);
        assert!(!t.has_tx());
        assert_eq!(t.queue_tx(a, dst, src, &[0; 3000]), Err(UdpError::TooBig));
    }
}
