//! # The sans-IO stack of one worker: Ethernet, ARP, IPv4, ICMP, UDP, TCP
//!
//! What it is: [`Stack`], the protocol state of one interface (one MAC, several IPv4
//! addresses) driven by a worker loop or by the simulator: `handle_*` feed it input, `poll_*`
//! take its output, and `now` is always an argument (quinn-proto's model, STYLE.md).
//!
//! What it owns: the interface's addresses and routing table ([`crate::iface::route`]), the ARP
//! cache and the datagrams waiting for it ([`crate::iface::neighbor`]), fragment reassembly
//! ([`crate::ipv4::frag`]), the ICMP error queue and rate limit ([`crate::icmp`]), the UDP
//! sockets ([`crate::udp`]), the TCP endpoints ([`crate::tcp`]) and the counters ([`Stats`]).
//!
//! What it never does: read a clock, sleep, spawn threads, make syscalls, take locks, or
//! allocate after [`Stack::new`] except when a UDP socket is bound or a TCP listener opened
//! (their rings are sized then).
//! Received frames are never held past `handle_rx`: each leaves with a [`Verdict`].
//!
//! Invariants:
//! - a malformed or unwanted frame is never an error: it is dropped and counted under one
//!   [`DropReason`]; no input makes the stack panic (property-tested);
//! - replies to received frames (ARP reply, ICMP echo reply, UDP echo) are written in place
//!   into the received frame, never longer than it, and go back to its link-layer source
//!   without an ARP lookup;
//! - every table and queue has a fixed capacity chosen at construction; when one is full the
//!   newcomer is dropped and counted.
//!
//! References: RFC 826, RFC 5227 (ARP), RFC 791, RFC 815, RFC 1122 (host requirements), RFC
//! 792 (ICMP), RFC 768 (UDP), RFC 862 (echo), RFC 9293 (TCP, see [`crate::tcp`]); DESIGN.md
//! §1, §4, §9.

use core::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};

use crate::batch::{Delivery, RxBatch, TxSlots, Verdict};
use crate::icmp::{self, ErrorKind, ErrorQueue, IcmpConfig, Offender};
use crate::iface::neighbor::{ArpConfig, Learn, Lookup, NeighborCache};
use crate::iface::route::{Ipv4Cidr, Route, RouteTable};
use crate::ipv4::frag::{FragConfig, FragKey, Outcome, Reassembler};
use crate::ipv4::{fragment_plan, write_packet, OutHeader, ICMP_ERROR_TOS};
use crate::ring::FixedRing;
use crate::stats::{DropReason, Stats};
use crate::tcp::{ListenHandle, Tcp, TcpConfig, TcpError, TcpHandle, TxEnv, L2};
use crate::time::{earliest, Instant};
use crate::udp::{
    GeneratorConfig, RecvMeta, UdpError, UdpHandle, UdpMode, UdpSocketConfig, UdpSocketStats,
    UdpTable,
};
use crate::wire::{
    checksum, ArpOperation, ArpPacket, ArpRepr, Csum, EtherType, EthernetAddress, EthernetFrame,
    Icmpv4DstUnreachable, Icmpv4Message, Icmpv4Packet, Icmpv4Repr, Icmpv4TimeExceeded, IpProtocol,
    Ipv4Packet, NetHdr, UdpPacket, ARP_PACKET_LEN, ETHERNET_HEADER_LEN, IPV4_HEADER_LEN,
    UDP_CHECKSUM_OFFSET, UDP_HEADER_LEN, VLAN_TAG_LEN,
};

/// Most IPv4 addresses one interface carries.
pub const MAX_ADDRS: usize = 8;

/// Configuration of a stack (one interface).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackConfig {
    /// The interface's MAC address (unicast).
    pub mac: EthernetAddress,
    /// A VLAN ID: frames must carry exactly this 802.1Q tag and originated frames carry it.
    /// `None`: untagged only.
    pub vlan: Option<u16>,
    /// The interface's addresses with their prefixes (1 to [`MAX_ADDRS`]); each prefix
    /// becomes a connected route.
    pub addrs: Vec<Ipv4Cidr>,
    /// Further routes (a default gateway is `Route::default_via(gw)`); gateways must be
    /// on-link.
    pub routes: Vec<Route>,
    /// Capacity of the routing table, connected routes included.
    pub max_routes: usize,
    /// IP MTU in bytes (68 to 9000).
    pub mtu: usize,
    /// The device completes `Csum::Partial` checksums on transmit (else the stack completes
    /// every checksum itself).
    pub tx_csum_offload: bool,
    /// TTL of originated datagrams and in-place replies.
    pub ttl: u8,
    /// ARP tunables.
    pub arp: ArpConfig,
    /// Static ARP entries.
    pub static_neighbors: Vec<(Ipv4Addr, EthernetAddress)>,
    /// Reassembly tunables.
    pub frag: FragConfig,
    /// ICMP tunables.
    pub icmp: IcmpConfig,
    /// Most UDP sockets.
    pub max_udp_sockets: usize,
    /// TCP tunables (connection table size, buffers, offloads, …).
    pub tcp: TcpConfig,
}

impl StackConfig {
    /// A configuration with Linux-like defaults for `mac` and `addrs`.
    pub fn new(mac: EthernetAddress, addrs: &[Ipv4Cidr]) -> StackConfig {
        StackConfig {
            mac,
            vlan: None,
            addrs: addrs.to_vec(),
            routes: Vec::new(),
            max_routes: 64,
            mtu: 1500,
            tx_csum_offload: false,
            ttl: 64,
            arp: ArpConfig::default(),
            static_neighbors: Vec::new(),
            frag: FragConfig::default(),
            icmp: IcmpConfig::default(),
            max_udp_sockets: 64,
            tcp: TcpConfig::default(),
        }
    }
}

/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// The MAC address is multicast or zero.
    BadMac(EthernetAddress),
    /// No address, or more than [`MAX_ADDRS`].
    AddressCount(usize),
    /// An address that cannot be a host's (unspecified, broadcast, multicast, loopback, or the
    /// network/broadcast address of its prefix), or a prefix length above 32.
    BadAddress(Ipv4Cidr),
    /// The MTU is outside 68..=9000.
    Mtu(usize),
    /// A VLAN ID outside 1..=4094.
    Vlan(u16),
    /// A route's gateway is not inside any of the interface's prefixes.
    GatewayNotOnLink(Ipv4Addr),
    /// More routes than `max_routes`.
    TooManyRoutes(usize),
    /// A static neighbour did not fit in the ARP cache.
    NeighborTableFull(Ipv4Addr),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::BadMac(m) => write!(f, "stack: mac {m} is not a unicast address"),
            ConfigError::AddressCount(n) => {
                write!(f, "stack: {n} addresses configured (1 to {MAX_ADDRS} allowed)")
            }
            ConfigError::BadAddress(a) => write!(f, "stack: address {a} cannot be a host's"),
            ConfigError::Mtu(m) => write!(f, "stack: mtu {m} outside 68..=9000"),
            ConfigError::Vlan(v) => write!(f, "stack: vlan {v} outside 1..=4094"),
            ConfigError::GatewayNotOnLink(g) => {
                write!(f, "stack: gateway {g} is in none of the interface's prefixes")
            }
            ConfigError::TooManyRoutes(n) => write!(f, "stack: {n} routes exceed max_routes"),
            ConfigError::NeighborTableFull(ip) => {
                write!(f, "stack: no room for the static neighbour {ip}")
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// How the link layer frames originated packets.
#[derive(Debug, Clone, Copy)]
struct Link {
    mac: EthernetAddress,
    vlan: Option<u16>,
    mtu: usize,
    tx_csum: bool,
}

impl Link {
    /// Bytes of Ethernet header (with the VLAN tag, if any).
    fn l2_len(&self) -> usize {
        ETHERNET_HEADER_LEN + if self.vlan.is_some() { VLAN_TAG_LEN } else { 0 }
    }

    /// Writes the Ethernet header; `None` if `out` is too short.
    fn write_eth(&self, out: &mut [u8], dst: EthernetAddress, ty: EtherType) -> Option<usize> {
        let n = self.l2_len();
        let h = out.get_mut(..n)?;
        h[..6].copy_from_slice(&dst.0);
        h[6..12].copy_from_slice(&self.mac.0);
        let mut at = 12;
        if let Some(vid) = self.vlan {
            h[12..14].copy_from_slice(&0x8100u16.to_be_bytes());
            h[14..16].copy_from_slice(&(vid & 0x0fff).to_be_bytes());
            at = 16;
        }
        h[at..at + 2].copy_from_slice(&u16::from(ty).to_be_bytes());
        Some(n)
    }

    /// Writes as many fragments of a datagram as `slots` has room for, starting at byte
    /// `*progress` of the message. `partial_udp`: the message is a UDP datagram whose checksum
    /// field holds the pseudo-header sum, to be completed by the device (single frame only).
    /// Returns (frames, bytes, done).
    fn emit<S: TxSlots + ?Sized>(
        &self,
        slots: &mut S,
        dst: EthernetAddress,
        hdr: &OutHeader,
        pieces: &[&[u8]],
        progress: &mut usize,
        partial_udp: bool,
    ) -> Result<(u64, u64, bool), DropReason> {
        let len: usize = pieces.iter().map(|p| p.len()).sum();
        let (per, n) = fragment_plan(len, self.mtu).ok_or(DropReason::TxTooBig)?;
        let l2 = self.l2_len();
        let (mut frames, mut bytes) = (0, 0);
        while *progress < len {
            if slots.remaining() == 0 {
                return Ok((frames, bytes, false));
            }
            let Some(room) = slots.room() else { return Ok((frames, bytes, false)) };
            let off = *progress;
            let chunk = per.min(len - off);
            let more = off + chunk < len;
            let Some(e) = self.write_eth(room, dst, EtherType::Ipv4) else {
                return Err(DropReason::TxTooBig);
            };
            let Some(ip_len) = write_packet(&mut room[e..], hdr, pieces, off, chunk, more) else {
                return Err(DropReason::TxTooBig);
            };
            let csum = if partial_udp && n == 1 {
                Csum::Partial {
                    start: (l2 + IPV4_HEADER_LEN) as u16,
                    offset: UDP_CHECKSUM_OFFSET as u16,
                }
            } else {
                Csum::None
            };
            slots.commit(e + ip_len, NetHdr { csum, ..NetHdr::NONE });
            frames += 1;
            bytes += (e + ip_len) as u64;
            *progress = off + chunk;
        }
        Ok((frames, bytes, true))
    }
}

/// A reply to send from a reassembly slot (echo of a fragmented datagram).
#[derive(Debug, Clone, Copy)]
struct ReplyJob {
    slot: u16,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: u8,
    peer: EthernetAddress,
    socket: u16,
}

impl Default for ReplyJob {
    fn default() -> ReplyJob {
        ReplyJob {
            slot: 0,
            src: Ipv4Addr::UNSPECIFIED,
            dst: Ipv4Addr::UNSPECIFIED,
            protocol: 0,
            peer: EthernetAddress::default(),
            socket: 0,
        }
    }
}

/// What a stack learned about a neighbour from an ARP packet, passed to the sibling stacks that
/// serve the other queues of the same interface (see [`Stack::poll_neighbor_learned`]).
///
/// Why: with one stack per NIC queue, an ARP reply lands on whichever queue the NIC (or the
/// peer's transmit queue, on veth) picks, not necessarily on the queue of the stack that asked.
/// Sharing what each stack learns lets every sibling finish its own resolutions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighborHint {
    /// The neighbour's address.
    pub ip: Ipv4Addr,
    /// Its link-layer address.
    pub mac: EthernetAddress,
    /// Learned from a reply to us (a confirmation), not from a request for one of our addresses.
    pub confirmed: bool,
}

impl Default for NeighborHint {
    fn default() -> NeighborHint {
        NeighborHint {
            ip: Ipv4Addr::UNSPECIFIED,
            mac: EthernetAddress::default(),
            confirmed: false,
        }
    }
}

/// Neighbour hints remembered until the worker takes them (more are dropped: ARP is rare, and a
/// sibling that misses a hint resolves by itself).
const LEARNED_HINTS: usize = 16;

/// Where a received IPv4 datagram was addressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dest {
    Unicast,
    Broadcast,
}

/// The sans-IO network stack of one interface.
///
/// # Call order
///
/// A `Stack` is a state machine without I/O. The worker loop (or the simulator) drives it:
///
/// 1. Build it with [`Stack::new`] at `now`; it queues its gratuitous ARP announcements.
/// 2. Bind sockets ([`udp_bind`](Self::udp_bind)) and attach generators as needed; open TCP
///    listeners and connections ([`tcp_listen`](Self::tcp_listen),
///    [`tcp_connect`](Self::tcp_connect)); the TCP socket calls are on
///    [`tcp_mut`](Self::tcp_mut).
/// 3. Loop:
///    - when frames arrive, [`handle_rx`](Self::handle_rx) with the whole batch; then apply
///      each frame's [`Verdict`] (transmit in place, deliver, or free);
///    - when [`poll_timeout`](Self::poll_timeout) has passed,
///      [`handle_timeout`](Self::handle_timeout) (ARP retransmissions, reassembly expiry,
///      announcements);
///    - let socket owners [`udp_recv`](Self::udp_recv) and [`udp_send`](Self::udp_send),
///      and TCP services drain [`Tcp::poll_event`] and read and write;
///    - then [`poll_tx`](Self::poll_tx) with free transmit buffers, as long as it fills all of
///      them ([`wants_tx`](Self::wants_tx) says whether anything is waiting);
///    - sleep (or spin) until the next frame or [`poll_timeout`](Self::poll_timeout).
///
/// `now` must not go backwards between calls (a smaller `now` is treated as "no time
/// passed"). Every method returns promptly and none allocates, except `udp_bind`.
#[derive(Debug)]
pub struct Stack {
    link: Link,
    ttl: u8,
    addrs: [Ipv4Cidr; MAX_ADDRS],
    naddrs: usize,
    routes: RouteTable,
    neighbors: NeighborCache,
    /// What ARP taught us, for sibling stacks ([`Stack::poll_neighbor_learned`]).
    learned: FixedRing<NeighborHint>,
    reasm: Reassembler,
    icmp: ErrorQueue,
    udp: UdpTable,
    replies: FixedRing<ReplyJob>,
    reply_progress: usize,
    udp_progress: usize,
    stats: Stats,
    ident: u16,
    /// Announcement rounds still to schedule after the current one.
    announce_left: u8,
    /// When the next round becomes due.
    announce_at: Instant,
    /// A round is due and waits for transmit slots.
    announce_due: bool,
    gen_template: Box<[u8]>,
    tcp: Tcp,
}

impl Stack {
    /// Validates `cfg` and builds the stack at `now`, allocating every table and queue.
    pub fn new(cfg: StackConfig, now: Instant) -> Result<Stack, ConfigError> {
        if cfg.mac.is_multicast() || cfg.mac == EthernetAddress::default() {
            return Err(ConfigError::BadMac(cfg.mac));
        }
        if cfg.addrs.is_empty() || cfg.addrs.len() > MAX_ADDRS {
            return Err(ConfigError::AddressCount(cfg.addrs.len()));
        }
        if !(68..=9000).contains(&cfg.mtu) {
            return Err(ConfigError::Mtu(cfg.mtu));
        }
        if let Some(v) = cfg.vlan {
            if !(1..=4094).contains(&v) {
                return Err(ConfigError::Vlan(v));
            }
        }
        let mut addrs = [Ipv4Cidr::new(Ipv4Addr::UNSPECIFIED, 0); MAX_ADDRS];
        for (slot, a) in addrs.iter_mut().zip(&cfg.addrs) {
            let host_part_ok =
                a.prefix_len >= 31 || (a.addr != a.network() && a.addr != a.broadcast());
            if a.prefix_len > 32 || !icmp::is_unicast_host(a.addr) || !host_part_ok {
                return Err(ConfigError::BadAddress(*a));
            }
            *slot = *a;
        }
        let mut routes = RouteTable::with_capacity(cfg.max_routes);
        let wanted = cfg.addrs.len() + cfg.routes.len();
        for a in &cfg.addrs {
            routes
                .add(Route { dst: *a, gateway: None })
                .map_err(|_| ConfigError::TooManyRoutes(wanted))?;
        }
        for r in &cfg.routes {
            if let Some(gw) = r.gateway {
                if !cfg.addrs.iter().any(|a| a.contains(gw)) {
                    return Err(ConfigError::GatewayNotOnLink(gw));
                }
            }
            routes.add(*r).map_err(|_| ConfigError::TooManyRoutes(wanted))?;
        }
        let mut neighbors = NeighborCache::new(cfg.arp, cfg.mtu);
        for &(ip, mac) in &cfg.static_neighbors {
            if !neighbors.add_static(ip, mac) {
                return Err(ConfigError::NeighborTableFull(ip));
            }
        }
        let link =
            Link { mac: cfg.mac, vlan: cfg.vlan, mtu: cfg.mtu, tx_csum: cfg.tx_csum_offload };
        Ok(Stack {
            link,
            ttl: cfg.ttl.max(1),
            addrs,
            naddrs: cfg.addrs.len(),
            routes,
            neighbors,
            learned: FixedRing::new(LEARNED_HINTS),
            reasm: Reassembler::new(cfg.frag),
            icmp: ErrorQueue::new(&cfg.icmp),
            udp: UdpTable::new(cfg.max_udp_sockets),
            replies: FixedRing::new(cfg.frag.slots),
            reply_progress: 0,
            udp_progress: 0,
            stats: Stats::default(),
            ident: (now.as_nanos() as u16) ^ 0x5a5a,
            announce_left: cfg.arp.announce_count.saturating_sub(1),
            announce_at: now + cfg.arp.announce_interval,
            announce_due: cfg.arp.announce_count > 0,
            gen_template: vec![0u8; cfg.mtu + ETHERNET_HEADER_LEN + VLAN_TAG_LEN]
                .into_boxed_slice(),
            tcp: Tcp::new(cfg.tcp.clone(), cfg.mtu, now),
        })
    }

    // ----------------------------------------------------------------------------------------
    // Accessors.

    /// The interface's MAC address.
    pub fn mac(&self) -> EthernetAddress {
        self.link.mac
    }

    /// The interface's addresses.
    pub fn addrs(&self) -> &[Ipv4Cidr] {
        &self.addrs[..self.naddrs]
    }

    /// The IP MTU.
    pub fn mtu(&self) -> usize {
        self.link.mtu
    }

    /// The counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The ARP cache.
    pub fn neighbors(&self) -> &NeighborCache {
        &self.neighbors
    }

    /// The routing table.
    pub fn routes(&self) -> &RouteTable {
        &self.routes
    }

    /// The routing table, for the control thread to change between batches (connected
    /// routes included: removing one makes its prefix unreachable for originated traffic).
    pub fn routes_mut(&mut self) -> &mut RouteTable {
        &mut self.routes
    }

    /// Takes the oldest neighbour fact learned from an ARP packet (a reply to us, or a request
    /// for one of our addresses) since the last call. A worker that runs one stack per queue of
    /// an interface hands these to the sibling stacks ([`handle_neighbor_hint`]
    /// (Self::handle_neighbor_hint)); a single stack may ignore them (at most 16 are kept).
    pub fn poll_neighbor_learned(&mut self) -> Option<NeighborHint> {
        self.learned.pop()
    }

    /// Applies what a sibling stack on the same link learned: updates an existing entry of
    /// this stack's cache (finishing a resolution in progress, releasing its queued datagrams,
    /// or confirming it) but never creates one, exactly as this stack would treat the same ARP
    /// packet aimed at someone else (Linux's `arp_accept = 0`).
    pub fn handle_neighbor_hint(&mut self, now: Instant, hint: NeighborHint) {
        if self.is_local(hint.ip)
            || hint.mac == self.link.mac
            || hint.mac.is_multicast()
            || hint.ip.is_unspecified()
        {
            return;
        }
        let how = if hint.confirmed { Learn::Reply } else { Learn::Other };
        self.neighbors.learn(now, hint.ip, hint.mac, how);
    }

    /// The ARP cache, for the router (`crate::forward`): it resolves next hops and parks
    /// packets waiting for resolution on the egress interface's stack, which sends the
    /// requests and, once resolved, the packets.
    pub(crate) fn neighbors_mut(&mut self) -> &mut NeighborCache {
        &mut self.neighbors
    }

    /// Adds a static ARP entry; `false` if the cache has no room for it.
    pub fn add_static_neighbor(&mut self, ip: Ipv4Addr, mac: EthernetAddress) -> bool {
        self.neighbors.add_static(ip, mac)
    }

    /// Whether `ip` is one of the interface's addresses.
    #[inline]
    pub fn is_local(&self, ip: Ipv4Addr) -> bool {
        self.addrs[..self.naddrs].iter().any(|a| a.addr == ip)
    }

    fn classify_dst(&self, ip: Ipv4Addr) -> Option<Dest> {
        if self.is_local(ip) {
            Some(Dest::Unicast)
        } else if ip.is_broadcast()
            || self.addrs[..self.naddrs].iter().any(|a| a.prefix_len < 31 && a.broadcast() == ip)
        {
            Some(Dest::Broadcast)
        } else {
            None
        }
    }

    // ----------------------------------------------------------------------------------------
    // Timers.

    /// The earliest instant at which [`handle_timeout`](Self::handle_timeout) has work (ARP
    /// retransmission or probe, reassembly expiry, announcement); `None` if no timer runs.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let announce = (self.announce_left > 0).then_some(self.announce_at);
        let t = earliest(self.neighbors.next_timeout(), self.reasm.next_timeout());
        earliest(earliest(t, announce), self.tcp.poll_timeout())
    }

    /// Runs every timer due at `now`. What they produce goes out with the next `poll_tx`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.announce_left > 0 && now >= self.announce_at {
            self.announce_due = true;
            self.announce_left -= 1;
            self.announce_at = now + self.neighbors.config().announce_interval;
        }
        self.neighbors.on_timeout(now, &mut self.stats);
        self.tcp.handle_timeout(now);
        let (icmp, stats) = (&mut self.icmp, &mut self.stats);
        let addrs = &self.addrs[..self.naddrs];
        self.reasm.expire(now, |e| {
            stats.drop(DropReason::ReassemblyTimeout);
            if e.quote_len == 0 {
                return;
            }
            // A datagram to a broadcast address gets no error (RFC 1122 §3.2.2), and an error
            // must not come from a broadcast address (found by the stack fuzz target).
            let dst = e.key.dst;
            let ip_broadcast = dst.is_broadcast()
                || addrs.iter().any(|a| a.prefix_len < 31 && a.broadcast() == dst);
            let offender = Offender {
                src: e.key.src,
                ip_broadcast,
                link_broadcast: e.peer.is_multicast(),
                later_fragment: false,
                icmp_type: None,
            };
            if icmp::may_send_error(&offender) {
                let kind = ErrorKind::TimeExceeded(Icmpv4TimeExceeded::FragReassembly);
                if !icmp.push(now, e.peer, e.key.dst, e.key.src, kind, &e.quote[..e.quote_len]) {
                    stats.icmp_rate_limited += 1;
                }
            }
        });
    }

    /// Whether `poll_tx` has something to send now.
    pub fn wants_tx(&self) -> bool {
        self.announce_due
            || self.neighbors.peek_request().is_some()
            || self.neighbors.ready_front().is_some()
            || !self.icmp.is_empty()
            || !self.replies.is_empty()
            || self.udp.has_tx()
            || !self.udp.generators().is_empty()
            || self.tcp.wants_tx()
    }

    // ----------------------------------------------------------------------------------------
    // Receive.

    /// Processes one received batch: every frame gets its [`Verdict`] (see
    /// [`crate::batch`]). Never blocks, never allocates.
    pub fn handle_rx<B: RxBatch + ?Sized>(&mut self, now: Instant, batch: &mut B) {
        let n = batch.len();
        for i in 0..n {
            let (frame, hdr) = batch.frame(i);
            self.stats.rx_frames += 1;
            self.stats.rx_bytes += frame.len() as u64;
            let v = self.rx_frame(now, frame, hdr);
            match v {
                Verdict::Drop(r) => self.stats.drop(r),
                Verdict::Transmit { .. } => self.stats.tx_in_place += 1,
                Verdict::Consumed | Verdict::Deliver(_) => {}
            }
            batch.set_verdict(i, v);
        }
    }

    #[inline]
    fn rx_frame(&mut self, now: Instant, frame: &mut [u8], hdr: NetHdr) -> Verdict {
        let Some(eth) = frame.get(..ETHERNET_HEADER_LEN) else {
            return Verdict::Drop(DropReason::Truncated);
        };
        let dst = EthernetAddress([eth[0], eth[1], eth[2], eth[3], eth[4], eth[5]]);
        if dst != self.link.mac && !dst.is_broadcast() {
            return Verdict::Drop(DropReason::NotForUs);
        }
        let link_bcast = dst.is_broadcast();
        // Fast path: an untagged frame on an untagged interface (one type field to read).
        let (l2, ty) =
            match (EtherType::from(u16::from_be_bytes([eth[12], eth[13]])), self.link.vlan) {
                (ty, None) if !ty.is_vlan_tpid() => (ETHERNET_HEADER_LEN, ty),
                _ => {
                    let eth = match EthernetFrame::new_checked(&*frame) {
                        Ok(e) => e,
                        Err(e) => return Verdict::Drop(wire_reason(e)),
                    };
                    let tags = eth.vlan_tags();
                    let vlan_ok = match (self.link.vlan, tags) {
                        (Some(v), [Some(t), None]) => t.vid == v,
                        _ => false,
                    };
                    if !vlan_ok {
                        return Verdict::Drop(DropReason::WrongVlan);
                    }
                    (eth.header_len(), eth.inner_ethertype())
                }
            };
        match ty {
            EtherType::Ipv4 => self.rx_ipv4(now, frame, l2, hdr, link_bcast),
            EtherType::Arp => self.rx_arp(now, frame, l2),
            _ => Verdict::Drop(DropReason::UnknownEthertype),
        }
    }

    fn rx_arp(&mut self, now: Instant, frame: &mut [u8], l2: usize) -> Verdict {
        let repr = match ArpPacket::new_checked(&frame[l2..]).and_then(|p| ArpRepr::parse(&p)) {
            Ok(r) => r,
            Err(e) => return Verdict::Drop(wire_reason(e)),
        };
        let (spa, sha, tpa) =
            (repr.sender_protocol_addr, repr.sender_hardware_addr, repr.target_protocol_addr);
        if sha == self.link.mac {
            // Our own frame, looped back.
            return Verdict::Drop(DropReason::ArpIgnored);
        }
        if self.is_local(spa) {
            // Another host claims one of our addresses (RFC 5227 §2.4).
            self.stats.arp_conflicts += 1;
            return Verdict::Drop(DropReason::ArpIgnored);
        }
        if sha.is_multicast() {
            return Verdict::Drop(DropReason::ArpIgnored);
        }
        let for_us = self.is_local(tpa);
        if !spa.is_unspecified() {
            let how = match (repr.operation, for_us) {
                (ArpOperation::Reply, true) => Learn::Reply,
                (ArpOperation::Request, true) => Learn::RequestForUs,
                _ => Learn::Other,
            };
            self.neighbors.learn(now, spa, sha, how);
            if how != Learn::Other {
                // Full: the oldest hints are still unread; siblings resolve by themselves.
                let _ = self.learned.push(NeighborHint {
                    ip: spa,
                    mac: sha,
                    confirmed: how == Learn::Reply,
                });
            }
        }
        if !for_us {
            return Verdict::Drop(DropReason::ArpIgnored);
        }
        if repr.operation != ArpOperation::Request {
            return Verdict::Consumed;
        }
        // Turn the request into the reply in place (RFC 826: swap, fill in our address).
        let len = frame.len();
        let (head, rest) = frame.split_at_mut(6);
        head.copy_from_slice(&rest[..6]);
        rest[..6].copy_from_slice(&self.link.mac.0);
        let reply = ArpRepr {
            operation: ArpOperation::Reply,
            sender_hardware_addr: self.link.mac,
            sender_protocol_addr: tpa,
            target_hardware_addr: sha,
            target_protocol_addr: spa,
        };
        if reply.emit(&mut frame[l2..l2 + ARP_PACKET_LEN]).is_err() {
            return Verdict::Drop(DropReason::Truncated);
        }
        self.stats.arp_replies_sent += 1;
        Verdict::Transmit { len, hdr: NetHdr::NONE }
    }

    fn rx_ipv4(
        &mut self,
        now: Instant,
        frame: &mut [u8],
        l2: usize,
        hdr: NetHdr,
        link_bcast: bool,
    ) -> Verdict {
        let ip = match Ipv4Packet::new_checked(&frame[l2..]) {
            Ok(p) => p,
            Err(e) => return Verdict::Drop(wire_reason(e)),
        };
        if !ip.verify_checksum() {
            return Verdict::Drop(DropReason::BadChecksum);
        }
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        let Some(dest) = self.classify_dst(dst) else {
            return Verdict::Drop(DropReason::NotForUs);
        };
        if !icmp::is_unicast_host(src) || self.is_local(src) {
            return Verdict::Drop(DropReason::BadSource);
        }
        let hl = ip.header_len();
        let end = l2 + usize::from(ip.total_len());
        let protocol = ip.protocol();
        if ip.is_fragment() {
            let key = FragKey { src, dst, protocol: protocol.into(), ident: ip.ident() };
            let (offset, more) = (usize::from(ip.frag_offset()), ip.more_frags());
            let peer = EthernetAddress::from_bytes(&frame[6..12]).unwrap_or_default();
            let data = &frame[l2 + hl..end];
            let header = &frame[l2..l2 + hl];
            return match self.reasm.add(now, key, offset, more, data, header, peer) {
                Outcome::Stored => Verdict::Consumed,
                Outcome::Dropped(r) => Verdict::Drop(r),
                Outcome::Complete(slot) => {
                    self.stats.reassembled += 1;
                    self.rx_reassembled(now, slot, dest, link_bcast);
                    Verdict::Consumed
                }
            };
        }
        match protocol {
            IpProtocol::Udp => self.rx_udp(now, frame, l2, hl, end, hdr, dest, link_bcast),
            IpProtocol::Icmp => self.rx_icmp(now, frame, l2, hl, end, hdr, dest, link_bcast),
            IpProtocol::Tcp if dest == Dest::Unicast && !link_bcast => {
                let peer = EthernetAddress::from_bytes(&frame[6..12]).unwrap_or_default();
                let tcp = &frame[l2 + hl..end];
                self.tcp.on_segment(now, src, dst, peer, tcp, hdr, &self.routes)
            }
            // RFC 1122 §4.2.3.10: a segment to a broadcast address is not for any connection.
            IpProtocol::Tcp => Verdict::Drop(DropReason::NotForUs),
            _ => {
                let offender = Offender {
                    src,
                    ip_broadcast: dest == Dest::Broadcast,
                    link_broadcast: link_bcast,
                    later_fragment: false,
                    icmp_type: None,
                };
                let peer = EthernetAddress::from_bytes(&frame[6..12]).unwrap_or_default();
                let kind = ErrorKind::Unreachable(Icmpv4DstUnreachable::ProtoUnreachable);
                self.queue_error(now, &offender, peer, dst, kind, &frame[l2..end]);
                Verdict::Drop(DropReason::UnknownProtocol)
            }
        }
    }

    /// Queues an ICMP error from `our_addr` about `original` to the offender (via `peer`), if
    /// RFC 1122's rules and the rate limit allow it (the router's errors go through here too).
    pub(crate) fn queue_error(
        &mut self,
        now: Instant,
        offender: &Offender,
        peer: EthernetAddress,
        our_addr: Ipv4Addr,
        kind: ErrorKind,
        original: &[u8],
    ) {
        if !icmp::may_send_error(offender) {
            return;
        }
        if !self.icmp.push(now, peer, our_addr, offender.src, kind, original) {
            self.stats.icmp_rate_limited += 1;
        }
    }

    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn rx_udp(
        &mut self,
        now: Instant,
        frame: &mut [u8],
        l2: usize,
        hl: usize,
        end: usize,
        hdr: NetHdr,
        dest: Dest,
        link_bcast: bool,
    ) -> Verdict {
        let l4 = l2 + hl;
        let (src_ip, dst_ip) = ip_addrs(frame, l2);
        let (sport, dport, payload_len) = {
            let udp = match UdpPacket::new_checked(&frame[l4..end]) {
                Ok(u) => u,
                Err(e) => return Verdict::Drop(wire_reason(e)),
            };
            let verified = matches!(hdr.csum, Csum::Valid | Csum::Partial { .. });
            if !verified && !udp.verify_checksum(src_ip, dst_ip) {
                return Verdict::Drop(DropReason::BadChecksum);
            }
            (udp.src_port(), udp.dst_port(), usize::from(udp.len()) - UDP_HEADER_LEN)
        };
        let Some(idx) = self.udp.lookup(dst_ip, dport) else {
            let offender = Offender {
                src: src_ip,
                ip_broadcast: dest == Dest::Broadcast,
                link_broadcast: link_bcast,
                later_fragment: false,
                icmp_type: None,
            };
            let peer = EthernetAddress::from_bytes(&frame[6..12]).unwrap_or_default();
            let kind = ErrorKind::Unreachable(Icmpv4DstUnreachable::PortUnreachable);
            self.queue_error(now, &offender, peer, dst_ip, kind, &frame[l2..end]);
            return Verdict::Drop(DropReason::NoSocket);
        };
        let handle = self.udp.handle(idx);
        let Some(sock) = self.udp.socket_mut(idx) else {
            return Verdict::Drop(DropReason::NoSocket);
        };
        self.stats.udp_rx_datagrams += 1;
        match sock.mode {
            UdpMode::Echo if dest == Dest::Unicast && sport != 0 => {
                sock.stats.rx_datagrams += 1;
                sock.stats.rx_bytes += payload_len as u64;
                sock.stats.echoed += 1;
                // Swap the ports; the checksum is unchanged (the sum is symmetric).
                let ports = &mut frame[l4..l4 + 4];
                ports.rotate_left(2);
                let hdr = self.turn_around(frame, l2, end, hdr);
                Verdict::Transmit { len: frame.len(), hdr }
            }
            UdpMode::Echo | UdpMode::Sink => {
                sock.stats.rx_datagrams += 1;
                sock.stats.rx_bytes += payload_len as u64;
                Verdict::Consumed
            }
            UdpMode::Deliver => {
                sock.stats.rx_datagrams += 1;
                sock.stats.rx_bytes += payload_len as u64;
                Verdict::Deliver(Delivery {
                    socket: handle,
                    src: SocketAddrV4::new(src_ip, sport),
                    dst: SocketAddrV4::new(dst_ip, dport),
                    offset: (l4 + UDP_HEADER_LEN) as u32,
                    len: payload_len as u32,
                })
            }
            UdpMode::Queue => {
                let payload = &frame[l4 + UDP_HEADER_LEN..l4 + UDP_HEADER_LEN + payload_len];
                match self.udp.queue_rx(idx, SocketAddrV4::new(src_ip, sport), dst_ip, &[payload]) {
                    Ok(()) => Verdict::Consumed,
                    Err(reason) => {
                        self.stats.udp_rx_datagrams -= 1;
                        Verdict::Drop(reason)
                    }
                }
            }
        }
    }

    /// Swaps Ethernet and IPv4 addresses of a received frame in place so that it goes back to
    /// its sender, resets the TTL (incremental header checksum), and settles the transport
    /// checksum state for transmit. `end` is where the IPv4 datagram ends.
    #[inline]
    fn turn_around(&self, frame: &mut [u8], l2: usize, end: usize, hdr: NetHdr) -> NetHdr {
        let (dst, src) = frame[..12].split_at_mut(6);
        dst.copy_from_slice(src);
        src.copy_from_slice(&self.link.mac.0);
        let (a, b) = frame[l2 + 12..l2 + 20].split_at_mut(4);
        a.swap_with_slice(b);
        let mut ip = Ipv4Packet::new_unchecked(&mut frame[l2..end]);
        if ip.ttl() != self.ttl {
            ip.set_ttl(self.ttl);
        }
        let csum = match hdr.csum {
            Csum::Partial { start, offset } if !self.link.tx_csum => {
                complete_checksum(&mut frame[..end], usize::from(start), usize::from(offset));
                Csum::None
            }
            Csum::Partial { start, offset } => Csum::Partial { start, offset },
            Csum::Valid | Csum::None => Csum::None,
        };
        NetHdr { csum, ..hdr }
    }

    #[allow(clippy::too_many_arguments)]
    fn rx_icmp(
        &mut self,
        now: Instant,
        frame: &mut [u8],
        l2: usize,
        hl: usize,
        end: usize,
        hdr: NetHdr,
        dest: Dest,
        link_bcast: bool,
    ) -> Verdict {
        let l4 = l2 + hl;
        let (msg, code) = {
            let p = match Icmpv4Packet::new_checked(&frame[l4..end]) {
                Ok(p) => p,
                Err(e) => return Verdict::Drop(wire_reason(e)),
            };
            let verified = matches!(hdr.csum, Csum::Valid | Csum::Partial { .. });
            if !verified && !p.verify_checksum() {
                return Verdict::Drop(DropReason::BadChecksum);
            }
            (p.msg_type(), p.msg_code())
        };
        if msg == Icmpv4Message::DstUnreachable && code == 4 && dest == Dest::Unicast {
            // Fragmentation needed: TCP lowers the path MTU (RFC 1191, RFC 5927).
            let mtu = u16::from_be_bytes([frame[l4 + 6], frame[l4 + 7]]);
            self.tcp.on_frag_needed(now, &frame[l4 + 8..end], mtu);
        }
        if msg != Icmpv4Message::EchoRequest || dest != Dest::Unicast || link_bcast {
            // Echo replies to pings we did not send, errors about our traffic (not yet
            // reported to sockets), broadcast pings (Linux's icmp_echo_ignore_broadcasts).
            return Verdict::Drop(DropReason::IcmpIgnored);
        }
        {
            let mut p = Icmpv4Packet::new_unchecked(&mut frame[l4..end]);
            p.set_msg_type(Icmpv4Message::EchoReply);
            if !matches!(hdr.csum, Csum::Partial { .. }) {
                p.set_checksum(echo_reply_checksum(p.checksum(), code));
            }
        }
        self.stats.icmp_echo_replies += 1;
        let hdr = self.turn_around(frame, l2, end, hdr);
        Verdict::Transmit { len: frame.len(), hdr }
    }

    /// A datagram completed in reassembly slot `slot`: deliver or answer it from the slot.
    fn rx_reassembled(&mut self, now: Instant, slot: usize, dest: Dest, link_bcast: bool) {
        let Some(key) = self.reasm.key(slot) else { return };
        let peer = self.reasm.peer(slot);
        let offender = Offender {
            src: key.src,
            ip_broadcast: dest == Dest::Broadcast,
            link_broadcast: link_bcast,
            later_fragment: false,
            icmp_type: None,
        };
        let mut job = ReplyJob {
            slot: slot as u16,
            src: key.dst,
            dst: key.src,
            protocol: key.protocol,
            peer,
            socket: 0,
        };
        let keep = match IpProtocol::from(key.protocol) {
            IpProtocol::Udp => self.rx_reassembled_udp(now, slot, key, dest, &offender, &mut job),
            IpProtocol::Tcp if dest == Dest::Unicast && !link_bcast => {
                let payload = self.reasm.payload(slot);
                let v = self.tcp.on_segment(
                    now,
                    key.src,
                    key.dst,
                    peer,
                    payload,
                    NetHdr::NONE,
                    &self.routes,
                );
                if let Verdict::Drop(r) = v {
                    self.stats.drop(r);
                }
                false
            }
            IpProtocol::Icmp => {
                let payload = self.reasm.payload_mut(slot);
                let p = Icmpv4Packet::new_checked(&*payload);
                match p {
                    Ok(p) if !p.verify_checksum() => {
                        self.stats.drop(DropReason::BadChecksum);
                        false
                    }
                    Ok(p)
                        if p.msg_type() == Icmpv4Message::EchoRequest
                            && dest == Dest::Unicast
                            && !link_bcast =>
                    {
                        let code = p.msg_code();
                        let mut p = Icmpv4Packet::new_unchecked(payload);
                        p.set_msg_type(Icmpv4Message::EchoReply);
                        p.set_checksum(echo_reply_checksum(p.checksum(), code));
                        true
                    }
                    Ok(_) => {
                        self.stats.drop(DropReason::IcmpIgnored);
                        false
                    }
                    Err(e) => {
                        self.stats.drop(wire_reason(e));
                        false
                    }
                }
            }
            _ => {
                self.stats.drop(DropReason::UnknownProtocol);
                self.quote_reassembled(
                    now,
                    slot,
                    &offender,
                    peer,
                    key.dst,
                    Icmpv4DstUnreachable::ProtoUnreachable,
                );
                false
            }
        };
        if keep && self.replies.push(job) {
            return;
        }
        self.reasm.release(slot);
    }

    fn rx_reassembled_udp(
        &mut self,
        now: Instant,
        slot: usize,
        key: FragKey,
        dest: Dest,
        offender: &Offender,
        job: &mut ReplyJob,
    ) -> bool {
        let (sport, dport, ok) = {
            let payload = self.reasm.payload(slot);
            match UdpPacket::new_checked(payload) {
                Ok(u) => (u.src_port(), u.dst_port(), u.verify_checksum(key.src, key.dst)),
                Err(e) => {
                    self.stats.drop(wire_reason(e));
                    return false;
                }
            }
        };
        if !ok {
            self.stats.drop(DropReason::BadChecksum);
            return false;
        }
        let Some(idx) = self.udp.lookup(key.dst, dport) else {
            self.stats.drop(DropReason::NoSocket);
            let peer = job.peer;
            self.quote_reassembled(
                now,
                slot,
                offender,
                peer,
                key.dst,
                Icmpv4DstUnreachable::PortUnreachable,
            );
            return false;
        };
        self.stats.udp_rx_datagrams += 1;
        let mode = self.udp.socket_mut(idx).map(|s| s.mode).unwrap_or_default();
        let payload = self.reasm.payload(slot);
        let body = payload.get(UDP_HEADER_LEN..).unwrap_or(&[]);
        match mode {
            UdpMode::Echo if dest == Dest::Unicast && sport != 0 => {
                if let Some(s) = self.udp.socket_mut(idx) {
                    s.stats.rx_datagrams += 1;
                    s.stats.rx_bytes += body.len() as u64;
                    s.stats.echoed += 1;
                }
                let payload = self.reasm.payload_mut(slot);
                payload[..4].rotate_left(2);
                job.socket = idx as u16;
                true
            }
            UdpMode::Echo | UdpMode::Sink => {
                if let Some(s) = self.udp.socket_mut(idx) {
                    s.stats.rx_datagrams += 1;
                    s.stats.rx_bytes += body.len() as u64;
                }
                false
            }
            UdpMode::Queue | UdpMode::Deliver => {
                let src = SocketAddrV4::new(key.src, sport);
                let payload = self.reasm.payload(slot);
                let body = payload.get(UDP_HEADER_LEN..).unwrap_or(&[]);
                if let Err(reason) = self.udp.queue_rx(idx, src, key.dst, &[body]) {
                    self.stats.udp_rx_datagrams -= 1;
                    self.stats.drop(reason);
                }
                false
            }
        }
    }

    /// Queues destination unreachable quoting the first fragment's header and the start of the
    /// reassembled payload.
    fn quote_reassembled(
        &mut self,
        now: Instant,
        slot: usize,
        offender: &Offender,
        peer: EthernetAddress,
        our: Ipv4Addr,
        reason: Icmpv4DstUnreachable,
    ) {
        let mut quote = [0u8; icmp::QUOTE_MAX];
        let h = self.reasm.header(slot);
        let p = self.reasm.payload(slot);
        let hn = h.len().min(quote.len());
        quote[..hn].copy_from_slice(&h[..hn]);
        let pn = p.len().min(quote.len() - hn);
        quote[hn..hn + pn].copy_from_slice(&p[..pn]);
        self.queue_error(
            now,
            offender,
            peer,
            our,
            ErrorKind::Unreachable(reason),
            &quote[..hn + pn],
        );
    }

    // ----------------------------------------------------------------------------------------
    // Transmit.

    /// Writes pending frames into the free slots of `slots`, in this order: ARP requests and
    /// announcements, datagrams whose neighbour just resolved, ICMP errors, echoes of
    /// reassembled datagrams, socket sends (round robin between sockets), and generator traffic
    /// into whatever is left. Returns how many slots it filled. A datagram larger than the MTU
    /// goes out as fragments, possibly across calls.
    pub fn poll_tx<S: TxSlots + ?Sized>(&mut self, now: Instant, slots: &mut S) -> usize {
        let start = slots.remaining();
        self.tx_arp(slots);
        self.tx_resolved(slots);
        self.tx_icmp_errors(slots);
        self.tx_replies(slots);
        self.tx_udp(now, slots);
        self.tx_tcp(now, slots);
        self.tx_generators(now, slots);
        // Lookups above may have started resolutions.
        self.tx_arp(slots);
        start - slots.remaining()
    }

    fn tx_tcp<S: TxSlots + ?Sized>(&mut self, now: Instant, slots: &mut S) {
        let l2 = L2 {
            mac: self.link.mac,
            vlan: self.link.vlan,
            tx_csum: self.link.tx_csum,
            ttl: self.ttl,
        };
        let mut env = TxEnv {
            l2,
            neighbors: &mut self.neighbors,
            ident: &mut self.ident,
            stats: &mut self.stats,
        };
        self.tcp.poll_tx(now, slots, &mut env);
    }

    fn count_tx(&mut self, frames: u64, bytes: u64) {
        self.stats.tx_frames += frames;
        self.stats.tx_bytes += bytes;
    }

    fn next_ident(&mut self) -> u16 {
        self.ident = self.ident.wrapping_add(1);
        self.ident
    }

    /// The source address for traffic towards `next_hop`: the interface address whose prefix
    /// holds it, else the first address.
    fn select_src(&self, next_hop: Ipv4Addr) -> Ipv4Addr {
        self.addrs().iter().find(|a| a.contains(next_hop)).unwrap_or(&self.addrs[0]).addr
    }

    fn tx_arp<S: TxSlots + ?Sized>(&mut self, slots: &mut S) {
        if self.announce_due {
            if slots.remaining() < self.naddrs {
                return;
            }
            for k in 0..self.naddrs {
                let ip = self.addrs[k].addr;
                // RFC 5227 §2.3: an ARP request with sender and target both our address.
                if !self.write_arp(slots, ip, ip, None) {
                    return;
                }
            }
            self.announce_due = false;
        }
        while let Some(req) = self.neighbors.peek_request() {
            let src = self.select_src(req.target);
            if !self.write_arp(slots, src, req.target, req.unicast) {
                return;
            }
            self.neighbors.pop_request();
        }
    }

    fn write_arp<S: TxSlots + ?Sized>(
        &mut self,
        slots: &mut S,
        sender: Ipv4Addr,
        target: Ipv4Addr,
        unicast: Option<EthernetAddress>,
    ) -> bool {
        let Some(room) = slots.room() else { return false };
        let dst = unicast.unwrap_or(EthernetAddress::BROADCAST);
        let Some(e) = self.link.write_eth(room, dst, EtherType::Arp) else { return false };
        let repr = ArpRepr {
            operation: ArpOperation::Request,
            sender_hardware_addr: self.link.mac,
            sender_protocol_addr: sender,
            target_hardware_addr: EthernetAddress::default(),
            target_protocol_addr: target,
        };
        let Ok(n) = repr.emit(&mut room[e..]) else { return false };
        slots.commit(e + n, NetHdr::NONE);
        self.stats.arp_requests_sent += 1;
        self.count_tx(1, (e + n) as u64);
        true
    }

    fn tx_resolved<S: TxSlots + ?Sized>(&mut self, slots: &mut S) {
        while slots.remaining() > 0 {
            let Some((mac, packet)) = self.neighbors.ready_front() else { return };
            if !packet.is_empty() {
                let Some(room) = slots.room() else { return };
                let Some(e) = self.link.write_eth(room, mac, EtherType::Ipv4) else { return };
                let Some(out) = room.get_mut(e..e + packet.len()) else { return };
                out.copy_from_slice(packet);
                let fragment = packet.get(6..8).is_some_and(|f| f[0] & 0x3f != 0 || f[1] != 0);
                let n = e + packet.len();
                slots.commit(n, NetHdr::NONE);
                self.count_tx(1, n as u64);
                if fragment {
                    self.stats.fragments_sent += 1;
                }
            }
            self.neighbors.ready_pop();
        }
    }

    fn tx_icmp_errors<S: TxSlots + ?Sized>(&mut self, slots: &mut S) {
        while slots.remaining() > 0 {
            let Some(err) = self.icmp.front() else { return };
            let err = *err;
            let ident = self.next_ident();
            let repr = match err.kind {
                ErrorKind::Unreachable(reason) => {
                    Icmpv4Repr::DstUnreachable { reason, original: &err.quote[..err.quote_len] }
                }
                ErrorKind::TimeExceeded(reason) => {
                    Icmpv4Repr::TimeExceeded { reason, original: &err.quote[..err.quote_len] }
                }
                ErrorKind::ParamProblem(pointer) => {
                    Icmpv4Repr::ParamProblem { pointer, original: &err.quote[..err.quote_len] }
                }
            };
            let mut msg = [0u8; 8 + icmp::QUOTE_MAX];
            let Ok(n) = repr.emit(&mut msg) else {
                self.icmp.pop();
                continue;
            };
            let hdr = OutHeader {
                src: err.src,
                dst: err.dst,
                protocol: IpProtocol::Icmp,
                ident,
                ttl: self.ttl,
                tos: ICMP_ERROR_TOS,
            };
            let mut progress = 0;
            match self.link.emit(slots, err.peer, &hdr, &[&msg[..n]], &mut progress, false) {
                Ok((f, b, true)) => {
                    self.count_tx(f, b);
                    self.stats.icmp_errors_sent += 1;
                    self.icmp.pop();
                }
                Ok(_) => return,
                Err(r) => {
                    self.stats.drop(r);
                    self.icmp.pop();
                }
            }
        }
    }

    fn tx_replies<S: TxSlots + ?Sized>(&mut self, slots: &mut S) {
        while slots.remaining() > 0 {
            let Some(&job) = self.replies.front() else { return };
            let slot = usize::from(job.slot);
            if self.reply_progress == 0 {
                // Fresh identification for the reply.
                self.ident = self.ident.wrapping_add(1);
            }
            let hdr = OutHeader {
                src: job.src,
                dst: job.dst,
                protocol: IpProtocol::from(job.protocol),
                ident: self.ident,
                ttl: self.ttl,
                tos: 0,
            };
            let payload = self.reasm.payload(slot);
            let fragmented = payload.len() + IPV4_HEADER_LEN > self.link.mtu;
            let r =
                self.link.emit(slots, job.peer, &hdr, &[payload], &mut self.reply_progress, false);
            match r {
                Ok((f, b, done)) => {
                    self.stats.tx_frames += f;
                    self.stats.tx_bytes += b;
                    if fragmented {
                        self.stats.fragments_sent += f;
                    }
                    if !done {
                        return;
                    }
                    if job.protocol == 1 {
                        self.stats.icmp_echo_replies += 1;
                    } else {
                        self.stats.udp_tx_datagrams += 1;
                    }
                }
                Err(reason) => self.stats.drop(reason),
            }
            self.reply_progress = 0;
            self.reasm.release(slot);
            self.replies.pop();
        }
    }

    fn tx_udp<S: TxSlots + ?Sized>(&mut self, now: Instant, slots: &mut S) {
        while slots.remaining() > 0 {
            let Some((idx, sport, dst, src, plen)) = self.udp.tx_front_meta() else { return };
            let Some(next_hop) = self.routes.next_hop(*dst.ip()) else {
                self.tx_udp_dropped(idx, DropReason::NoRoute);
                continue;
            };
            let lookup = self.link_dst(now, *dst.ip(), next_hop);
            let payload = self.udp.tx_front_payload();
            let len = UDP_HEADER_LEN + plen;
            let mut udp_hdr = [0u8; UDP_HEADER_LEN];
            udp_hdr[..2].copy_from_slice(&sport.to_be_bytes());
            udp_hdr[2..4].copy_from_slice(&dst.port().to_be_bytes());
            udp_hdr[4..6].copy_from_slice(&(len as u16).to_be_bytes());
            let pseudo =
                checksum::pseudo_header_v4(src.octets(), dst.ip().octets(), 17, len as u16);
            let single = len + IPV4_HEADER_LEN <= self.link.mtu;
            let partial = single && self.link.tx_csum;
            let c = if partial {
                pseudo
            } else {
                let s = checksum::add(
                    checksum::add(pseudo, checksum::sum(&udp_hdr)),
                    checksum::sum(payload),
                );
                match !s {
                    0 => 0xffff,
                    c => c,
                }
            };
            udp_hdr[6..8].copy_from_slice(&c.to_be_bytes());
            let mac = match lookup {
                Lookup::Ready(mac) => mac,
                Lookup::Pending(entry) => {
                    // Park the datagram (fragmented) on the neighbour's queue.
                    if self.udp_progress == 0 {
                        self.ident = self.ident.wrapping_add(1);
                    }
                    let hdr = OutHeader {
                        src,
                        dst: *dst.ip(),
                        protocol: IpProtocol::Udp,
                        ident: self.ident,
                        ttl: self.ttl,
                        tos: 0,
                    };
                    let r =
                        park(&mut self.neighbors, entry, &hdr, &[&udp_hdr, payload], self.link.mtu);
                    self.udp_progress = 0;
                    match r {
                        Ok(()) => self.udp.tx_pop(),
                        Err(reason) => self.tx_udp_dropped(idx, reason),
                    }
                    continue;
                }
                Lookup::Full => {
                    self.tx_udp_dropped(idx, DropReason::ArpPendingFull);
                    continue;
                }
            };
            if self.udp_progress == 0 {
                self.ident = self.ident.wrapping_add(1);
            }
            let hdr = OutHeader {
                src,
                dst: *dst.ip(),
                protocol: IpProtocol::Udp,
                ident: self.ident,
                ttl: self.ttl,
                tos: 0,
            };
            let plen = plen as u64;
            match self.link.emit(
                slots,
                mac,
                &hdr,
                &[&udp_hdr, payload],
                &mut self.udp_progress,
                partial,
            ) {
                Ok((f, b, done)) => {
                    self.stats.tx_frames += f;
                    self.stats.tx_bytes += b;
                    if !single {
                        self.stats.fragments_sent += f;
                    }
                    if !done {
                        return;
                    }
                    self.udp_progress = 0;
                    self.stats.udp_tx_datagrams += 1;
                    if let Some(s) = self.udp.socket_mut(idx) {
                        s.stats.tx_datagrams += 1;
                        s.stats.tx_bytes += plen;
                    }
                    self.udp.tx_pop();
                }
                Err(reason) => {
                    self.udp_progress = 0;
                    self.tx_udp_dropped(idx, reason);
                }
            }
        }
    }

    fn tx_udp_dropped(&mut self, idx: usize, reason: DropReason) {
        self.stats.drop(reason);
        if let Some(s) = self.udp.socket_mut(idx) {
            s.stats.tx_dropped += 1;
        }
        self.udp.tx_pop();
    }

    /// The link-layer destination for `dst` via `next_hop`: broadcast and multicast map
    /// directly (RFC 1112 §6.4), anything else goes through ARP.
    fn link_dst(&mut self, now: Instant, dst: Ipv4Addr, next_hop: Ipv4Addr) -> Lookup {
        if dst.is_broadcast()
            || self.addrs().iter().any(|a| a.prefix_len < 31 && a.broadcast() == dst)
        {
            return Lookup::Ready(EthernetAddress::BROADCAST);
        }
        if dst.is_multicast() {
            let o = dst.octets();
            return Lookup::Ready(EthernetAddress([0x01, 0x00, 0x5e, o[1] & 0x7f, o[2], o[3]]));
        }
        self.neighbors.lookup(now, next_hop)
    }

    fn tx_generators<S: TxSlots + ?Sized>(&mut self, now: Instant, slots: &mut S) {
        let mut k = 0;
        while k < self.udp.generators().len() && slots.remaining() > 0 {
            let idx = usize::from(self.udp.generators()[k]);
            k += 1;
            let Some(sock) = self.udp.socket_mut(idx) else { continue };
            let Some(gen) = sock.generator.as_ref() else { continue };
            let cfg = gen.cfg;
            let left = cfg.count.map_or(u64::MAX, |c| c.saturating_sub(gen.sent));
            if left == 0 {
                continue;
            }
            let local = sock.local;
            let Some(next_hop) = self.routes.next_hop(*cfg.dst.ip()) else { continue };
            let src =
                if local.ip().is_unspecified() { self.select_src(next_hop) } else { *local.ip() };
            let Lookup::Ready(mac) = self.link_dst(now, *cfg.dst.ip(), next_hop) else { continue };
            let sent = self.generate(slots, src, local.port(), mac, &cfg, left);
            if let Some(s) = self.udp.socket_mut(idx) {
                s.stats.tx_datagrams += sent;
                s.stats.tx_bytes += sent * cfg.payload_len as u64;
                if let Some(g) = s.generator.as_mut() {
                    g.sent += sent;
                }
            }
        }
    }

    /// Fills slots with generator datagrams from a template built once per call: per datagram
    /// one copy of the frame, the identification and sequence number patched, and both
    /// checksums updated incrementally (RFC 1624). Returns how many were written.
    fn generate<S: TxSlots + ?Sized>(
        &mut self,
        slots: &mut S,
        src: Ipv4Addr,
        sport: u16,
        mac: EthernetAddress,
        cfg: &GeneratorConfig,
        left: u64,
    ) -> u64 {
        let link = self.link;
        let udp_len = UDP_HEADER_LEN + cfg.payload_len;
        if udp_len + IPV4_HEADER_LEN > link.mtu {
            return 0;
        }
        let l2 = link.l2_len();
        let l3 = l2;
        let l4 = l3 + IPV4_HEADER_LEN;
        let flen = l4 + udp_len;
        let t = &mut self.gen_template[..flen];
        let Some(_) = link.write_eth(t, mac, EtherType::Ipv4) else { return 0 };
        let hdr = OutHeader {
            src,
            dst: *cfg.dst.ip(),
            protocol: IpProtocol::Udp,
            ident: 0,
            ttl: self.ttl,
            tos: 0,
        };
        t[l4 + UDP_HEADER_LEN..].fill(0);
        {
            let u = &mut t[l4..l4 + UDP_HEADER_LEN];
            u[..2].copy_from_slice(&sport.to_be_bytes());
            u[2..4].copy_from_slice(&cfg.dst.port().to_be_bytes());
            u[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
            u[6..8].fill(0);
        }
        let pseudo =
            checksum::pseudo_header_v4(src.octets(), cfg.dst.ip().octets(), 17, udp_len as u16);
        // Sum of the UDP header (checksum zero) and the all-zero payload, with the pseudo-header.
        let base = checksum::add(pseudo, checksum::sum(&t[l4..l4 + UDP_HEADER_LEN]));
        if link.tx_csum {
            t[l4 + 6..l4 + 8].copy_from_slice(&pseudo.to_be_bytes());
        }
        // No pieces: write_packet writes the header and leaves the UDP bytes as they are.
        if write_packet(&mut t[l3..], &hdr, &[], 0, udp_len, false).is_none() {
            return 0;
        }
        let ip_csum0 = u16::from_be_bytes([t[l3 + 10], t[l3 + 11]]);
        let seq_len = cfg.payload_len.min(8);
        let nethdr = if link.tx_csum {
            NetHdr {
                csum: Csum::Partial { start: l4 as u16, offset: UDP_CHECKSUM_OFFSET as u16 },
                ..NetHdr::NONE
            }
        } else {
            NetHdr::NONE
        };
        let mut sent = 0u64;
        let seq0 = self.stats.udp_tx_datagrams;
        while sent < left {
            let Some(room) = slots.room() else { break };
            let Some(out) = room.get_mut(..flen) else { break };
            out.copy_from_slice(&self.gen_template[..flen]);
            self.ident = self.ident.wrapping_add(1);
            let ident = self.ident;
            out[l3 + 4..l3 + 6].copy_from_slice(&ident.to_be_bytes());
            out[l3 + 10..l3 + 12]
                .copy_from_slice(&checksum::update16(ip_csum0, 0, ident).to_be_bytes());
            let seq = (seq0 + sent).to_be_bytes();
            let p = l4 + UDP_HEADER_LEN;
            out[p..p + seq_len].copy_from_slice(&seq[..seq_len]);
            if !link.tx_csum {
                let c = !checksum::add(base, checksum::sum(&seq[..seq_len]));
                let c = if c == 0 { 0xffff } else { c };
                out[l4 + 6..l4 + 8].copy_from_slice(&c.to_be_bytes());
            }
            slots.commit(flen, nethdr);
            sent += 1;
        }
        self.stats.udp_tx_datagrams += sent;
        self.stats.tx_frames += sent;
        self.stats.tx_bytes += sent * flen as u64;
        sent
    }

    // ----------------------------------------------------------------------------------------
    // UDP sockets.

    /// Binds a UDP socket to `local` (`0.0.0.0` for every interface address; port 0 for an
    /// ephemeral port). Allocates the socket's rings.
    pub fn udp_bind(
        &mut self,
        local: SocketAddrV4,
        cfg: UdpSocketConfig,
    ) -> Result<UdpHandle, UdpError> {
        if !local.ip().is_unspecified() && !self.is_local(*local.ip()) {
            return Err(UdpError::AddrNotAvailable);
        }
        self.udp.bind(local, cfg)
    }

    /// Closes a socket, discarding what it had queued.
    pub fn udp_close(&mut self, h: UdpHandle) -> Result<(), UdpError> {
        self.udp.close(h)
    }

    /// The address and port a socket is bound to.
    pub fn udp_local_addr(&self, h: UdpHandle) -> Result<SocketAddrV4, UdpError> {
        Ok(self.udp.get(h)?.local)
    }

    /// Counters of a socket.
    pub fn udp_stats(&self, h: UdpHandle) -> Result<UdpSocketStats, UdpError> {
        Ok(self.udp.get(h)?.stats)
    }

    /// Queues a datagram to `dst` (copied into the socket's send ring); it leaves with the next
    /// `poll_tx`. Errors are immediate; later drops (ARP failure, full pending queue) are
    /// counted in the socket's and the stack's stats.
    pub fn udp_send(
        &mut self,
        h: UdpHandle,
        dst: SocketAddrV4,
        payload: &[u8],
    ) -> Result<(), UdpError> {
        if dst.port() == 0 || dst.ip().is_unspecified() || self.is_local(*dst.ip()) {
            return Err(UdpError::BadDestination);
        }
        if payload.len() > 65507 {
            return Err(UdpError::TooBig);
        }
        let local = self.udp.get(h)?.local;
        let Some(next_hop) = self.routes.next_hop(*dst.ip()) else { return Err(UdpError::NoRoute) };
        let src = if local.ip().is_unspecified() { self.select_src(next_hop) } else { *local.ip() };
        self.udp.queue_tx(h, dst, src, payload)
    }

    /// Calls `f` for up to `max` received datagrams of a `Queue`-mode socket (oldest first)
    /// and removes them; returns how many. Reassembled datagrams of `Deliver`-mode sockets
    /// arrive here too.
    pub fn udp_recv(
        &mut self,
        h: UdpHandle,
        max: usize,
        f: impl FnMut(&RecvMeta, &[u8]),
    ) -> Result<usize, UdpError> {
        self.udp.recv(h, max, f)
    }

    /// Datagrams waiting in a socket's receive ring.
    pub fn udp_rx_pending(&self, h: UdpHandle) -> Result<usize, UdpError> {
        self.udp.rx_len(h)
    }

    /// Attaches a traffic generator to a socket (`None` stops it). Its datagrams go out in
    /// `poll_tx`, after all other traffic, once the destination is resolved.
    pub fn udp_generate(
        &mut self,
        h: UdpHandle,
        cfg: Option<GeneratorConfig>,
    ) -> Result<(), UdpError> {
        if let Some(c) = &cfg {
            if c.payload_len + UDP_HEADER_LEN + IPV4_HEADER_LEN > self.link.mtu {
                return Err(UdpError::TooBig);
            }
            if c.dst.port() == 0 || c.dst.ip().is_unspecified() {
                return Err(UdpError::BadDestination);
            }
            if self.routes.next_hop(*c.dst.ip()).is_none() {
                return Err(UdpError::NoRoute);
            }
        }
        self.udp.set_generator(h, cfg)
    }

    /// Datagrams a socket's generator has sent.
    pub fn udp_generated(&self, h: UdpHandle) -> Result<u64, UdpError> {
        Ok(self.udp.get(h)?.generator.as_ref().map_or(0, |g| g.sent))
    }

    // ----------------------------------------------------------------------------------------
    // TCP.

    /// The TCP endpoints: counters, connection state and information.
    pub fn tcp(&self) -> &Tcp {
        &self.tcp
    }

    /// The TCP socket API for code on this worker: `accept`, `read`/`read_with`,
    /// `write`/`write_with`, `shutdown`, `close`, `abort`, `poll_event`, options (see
    /// [`Tcp`]). What a call queues goes out with the next `poll_tx`.
    pub fn tcp_mut(&mut self) -> &mut Tcp {
        &mut self.tcp
    }

    /// Opens a TCP listener on `local` (`0.0.0.0` for every interface address) with an accept
    /// queue of `backlog` connections. Allocates the accept queue.
    pub fn tcp_listen(
        &mut self,
        local: SocketAddrV4,
        backlog: usize,
    ) -> Result<ListenHandle, TcpError> {
        if !local.ip().is_unspecified() && !self.is_local(*local.ip()) {
            return Err(TcpError::AddrNotAvailable);
        }
        if local.port() == 0 {
            return Err(TcpError::AddrNotAvailable);
        }
        self.tcp.listen(local, backlog)
    }

    /// Opens a TCP connection to `remote` from `local` (`None`: the interface address towards
    /// `remote` and an ephemeral port; a given port lets the caller pick one that its NIC's RSS
    /// hashes to this worker). The SYN leaves with the next `poll_tx`; a `CONNECTED` event
    /// follows.
    pub fn tcp_connect(
        &mut self,
        now: Instant,
        remote: SocketAddrV4,
        local: Option<SocketAddrV4>,
    ) -> Result<TcpHandle, TcpError> {
        let ip = *remote.ip();
        if remote.port() == 0
            || ip.is_unspecified()
            || ip.is_broadcast()
            || ip.is_multicast()
            || self.is_local(ip)
            || self.classify_dst(ip).is_some()
        {
            return Err(TcpError::BadDestination);
        }
        let Some(next_hop) = self.routes.next_hop(ip) else { return Err(TcpError::NoRoute) };
        let local = match local {
            Some(l) if l.ip().is_unspecified() => {
                SocketAddrV4::new(self.select_src(next_hop), l.port())
            }
            Some(l) if self.is_local(*l.ip()) => l,
            Some(_) => return Err(TcpError::AddrNotAvailable),
            None => SocketAddrV4::new(self.select_src(next_hop), 0),
        };
        self.tcp.connect(now, local, remote, next_hop)
    }
}

/// Copies a datagram, cut into MTU-sized IPv4 packets, onto neighbour `entry`'s queue: all of
/// them or none.
fn park(
    neighbors: &mut NeighborCache,
    entry: usize,
    hdr: &OutHeader,
    pieces: &[&[u8]],
    mtu: usize,
) -> Result<(), DropReason> {
    let len: usize = pieces.iter().map(|p| p.len()).sum();
    let (per, n) = fragment_plan(len, mtu).ok_or(DropReason::TxTooBig)?;
    if neighbors.pending_room(entry) < n {
        return Err(DropReason::ArpPendingFull);
    }
    for k in 0..n {
        let off = k * per;
        let chunk = per.min(len - off);
        let more = off + chunk < len;
        neighbors.enqueue_with(entry, IPV4_HEADER_LEN + chunk, |out| {
            write_packet(out, hdr, pieces, off, chunk, more).is_some()
        })?;
    }
    Ok(())
}

/// The source and destination addresses of the IPv4 header at `l2` (checked by the caller).
#[inline]
fn ip_addrs(frame: &[u8], l2: usize) -> (Ipv4Addr, Ipv4Addr) {
    let a = |at: usize| Ipv4Addr::new(frame[at], frame[at + 1], frame[at + 2], frame[at + 3]);
    (a(l2 + 12), a(l2 + 16))
}

/// Completes a `Csum::Partial` checksum in software: sums from `start` to the end of `data`
/// and stores the complement at `start + offset` (virtio's convention). Out-of-range offsets
/// leave the frame untouched.
fn complete_checksum(data: &mut [u8], start: usize, offset: usize) {
    let at = start + offset;
    if at + 2 > data.len() || start > data.len() {
        return;
    }
    let c = checksum::checksum(&data[start..]);
    // RFC 768: a computed zero goes out as all ones (the field is UDP's or TCP's).
    let c = if c == 0 { 0xffff } else { c };
    data[at..at + 2].copy_from_slice(&c.to_be_bytes());
}

/// The checksum of an echo reply made from a request whose checksum is `check` by turning
/// type 8 into type 0 (RFC 1624 eqn. 3). The equation yields 0x0000 when the reply's words sum
/// to zero; if they are all zero (identifier 0, sequence 0, no data: a hostile ping, found by
/// the `stack` fuzz target) only 0xFFFF verifies, and 0xFFFF verifies in the other case too,
/// so a zero result becomes 0xFFFF (what a checksum computed from scratch gives there).
fn echo_reply_checksum(check: u16, code: u8) -> u16 {
    match checksum::update16(check, u16::from_be_bytes([8, code]), u16::from_be_bytes([0, code])) {
        0 => 0xffff,
        c => c,
    }
}

fn wire_reason(e: crate::wire::Error) -> DropReason {
    match e {
        crate::wire::Error::Truncated => DropReason::Truncated,
        crate::wire::Error::Malformed => DropReason::Malformed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{Frame, FrameSlots};
    use crate::sim::frames;
    use crate::wire::UdpRepr;
    use proptest::prelude::*;

    const US: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 2]);
    const PEER: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 9]);

    fn ip(n: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 0, 0, n)
    }

    fn sa(n: u8, port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(ip(n), port)
    }

    /// A stack at 10.0.0.2/24 with an echo socket on 7, a queue on 9, a sink on 10 and a
    /// zero-copy socket on 11.
    fn stack(tx_csum_offload: bool) -> Stack {
        let mut cfg = StackConfig::new(US, &[Ipv4Cidr::new(ip(2), 24)]);
        cfg.tx_csum_offload = tx_csum_offload;
        cfg.arp.announce_count = 0;
        let mut s = Stack::new(cfg, Instant::ZERO).unwrap();
        let any = |p| SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, p);
        s.udp_bind(any(7), UdpSocketConfig::mode(UdpMode::Echo)).unwrap();
        s.udp_bind(any(9), UdpSocketConfig::mode(UdpMode::Queue)).unwrap();
        s.udp_bind(any(10), UdpSocketConfig::mode(UdpMode::Sink)).unwrap();
        s.udp_bind(any(11), UdpSocketConfig::mode(UdpMode::Deliver)).unwrap();
        s
    }

    fn rx(s: &mut Stack, frame: &[u8], hdr: NetHdr) -> Frame {
        let mut f = vec![Frame::new(frame, frame.len())];
        f[0].hdr = hdr;
        s.handle_rx(Instant::ZERO, &mut f[..]);
        f.pop().unwrap()
    }

    fn udp_to(port: u16, payload: &[u8]) -> Vec<u8> {
        frames::udp_frame(PEER, US, sa(9, 4000), sa(2, port), payload)
    }

    #[test]
    fn config_is_validated() {
        let ok = StackConfig::new(US, &[Ipv4Cidr::new(ip(2), 24)]);
        let bad = |f: &dyn Fn(&mut StackConfig)| {
            let mut c = ok.clone();
            f(&mut c);
            Stack::new(c, Instant::ZERO).err()
        };
        assert!(Stack::new(ok.clone(), Instant::ZERO).is_ok());
        assert_eq!(
            bad(&|c| c.mac = EthernetAddress::BROADCAST),
            Some(ConfigError::BadMac(EthernetAddress::BROADCAST))
        );
        assert_eq!(bad(&|c| c.addrs.clear()), Some(ConfigError::AddressCount(0)));
        assert_eq!(bad(&|c| c.mtu = 67), Some(ConfigError::Mtu(67)));
        assert_eq!(bad(&|c| c.vlan = Some(4095)), Some(ConfigError::Vlan(4095)));
        let net = Ipv4Cidr::new(ip(0), 24);
        assert_eq!(bad(&|c| c.addrs = vec![net]), Some(ConfigError::BadAddress(net)));
        let gw = Ipv4Addr::new(192, 168, 0, 1);
        assert_eq!(
            bad(&|c| c.routes.push(Route::default_via(gw))),
            Some(ConfigError::GatewayNotOnLink(gw))
        );
        assert_eq!(bad(&|c| c.max_routes = 0), Some(ConfigError::TooManyRoutes(1)));
        assert!(ConfigError::Mtu(67).to_string().contains("mtu 67"));
    }

    #[test]
    fn udp_echo_turns_the_frame_around_with_valid_checksums() {
        let mut s = stack(false);
        let f = rx(&mut s, &udp_to(7, b"ping"), NetHdr::NONE);
        let Verdict::Transmit { len, hdr } = f.verdict else { panic!("{:?}", f.verdict) };
        assert_eq!((len, hdr), (f.buf.len(), NetHdr::NONE));
        assert_eq!(
            frames::classify(f.bytes()),
            frames::Kind::Udp { src: sa(2, 7), dst: sa(9, 4000), len: 4 }
        );
        let e = EthernetFrame::new_checked(f.bytes()).unwrap();
        assert_eq!((e.dst_addr(), e.src_addr()), (PEER, US));
        let p = Ipv4Packet::new_checked(e.payload()).unwrap();
        assert!(p.verify_checksum());
        let u = UdpPacket::new_checked(p.payload()).unwrap();
        assert!(u.verify_checksum(ip(2), ip(9)));
        assert_eq!(s.stats().tx_in_place, 1);
    }

    #[test]
    fn partial_checksums_are_kept_for_the_device_or_completed_here() {
        // A frame from a local sender with CHECKSUM_PARTIAL: the field holds the pseudo sum.
        let mut frame = udp_to(7, b"partial!");
        let pseudo = checksum::pseudo_header_v4(ip(9).octets(), ip(2).octets(), 17, 16);
        frame[40..42].copy_from_slice(&pseudo.to_be_bytes());
        let partial = NetHdr { csum: Csum::Partial { start: 34, offset: 6 }, ..NetHdr::NONE };
        let f = rx(&mut stack(true), &frame, partial);
        assert_eq!(f.verdict, Verdict::Transmit { len: frame.len(), hdr: partial });
        let f = rx(&mut stack(false), &frame, partial);
        assert_eq!(f.verdict, Verdict::Transmit { len: frame.len(), hdr: NetHdr::NONE });
        let u = UdpPacket::new_checked(&f.bytes()[34..]).unwrap();
        assert!(u.checksum() != 0 && u.verify_checksum(ip(2), ip(9)));
    }

    #[test]
    fn checksums_are_verified_unless_the_device_did() {
        let mut frame = udp_to(9, b"data");
        frame[41] ^= 0xff;
        let mut s = stack(false);
        assert_eq!(
            rx(&mut s, &frame, NetHdr::NONE).verdict,
            Verdict::Drop(DropReason::BadChecksum)
        );
        let valid = NetHdr { csum: Csum::Valid, ..NetHdr::NONE };
        assert_eq!(rx(&mut s, &frame, valid).verdict, Verdict::Consumed);
        let mut frame = udp_to(9, b"data");
        frame[24] ^= 1; // IPv4 header checksum: always verified.
        assert_eq!(rx(&mut s, &frame, valid).verdict, Verdict::Drop(DropReason::BadChecksum));
        assert_eq!(s.stats().drops(DropReason::BadChecksum), 2);
    }

    #[test]
    fn unwanted_frames_are_dropped_and_counted() {
        let mut s = stack(false);
        let other_mac =
            frames::udp_frame(PEER, EthernetAddress([2, 0, 0, 0, 0, 3]), sa(9, 1), sa(2, 9), b"");
        assert_eq!(
            rx(&mut s, &other_mac, NetHdr::NONE).verdict,
            Verdict::Drop(DropReason::NotForUs)
        );
        let other_ip = frames::udp_frame(PEER, US, sa(9, 1), sa(3, 9), b"");
        assert_eq!(
            rx(&mut s, &other_ip, NetHdr::NONE).verdict,
            Verdict::Drop(DropReason::NotForUs)
        );
        let martian = frames::udp_frame(PEER, US, sa(2, 1), sa(2, 9), b"");
        assert_eq!(
            rx(&mut s, &martian, NetHdr::NONE).verdict,
            Verdict::Drop(DropReason::BadSource)
        );
        let mut v6 = udp_to(9, b"");
        v6[12..14].copy_from_slice(&[0x86, 0xdd]);
        assert_eq!(
            rx(&mut s, &v6, NetHdr::NONE).verdict,
            Verdict::Drop(DropReason::UnknownEthertype)
        );
        assert_eq!(
            rx(&mut s, &[0u8; 10], NetHdr::NONE).verdict,
            Verdict::Drop(DropReason::Truncated)
        );
        let closed = udp_to(12, b"x");
        assert_eq!(rx(&mut s, &closed, NetHdr::NONE).verdict, Verdict::Drop(DropReason::NoSocket));
        // GRE: protocol unreachable is queued (quoting the datagram).
        let mut tcp = udp_to(9, b"abcdefgh");
        tcp[23] = 47;
        Ipv4Packet::new_unchecked(&mut tcp[14..]).fill_checksum();
        assert_eq!(
            rx(&mut s, &tcp, NetHdr::NONE).verdict,
            Verdict::Drop(DropReason::UnknownProtocol)
        );
        let mut slots: Vec<Frame> = (0..4).map(|_| Frame::empty(2048)).collect();
        let n = s.poll_tx(Instant::ZERO, &mut FrameSlots::new(&mut slots));
        assert_eq!(n, 2);
        let kinds: Vec<_> = slots[..2].iter().map(|f| frames::classify(f.bytes())).collect();
        assert!(matches!(
            kinds[0],
            frames::Kind::Icmp { msg: Icmpv4Message::DstUnreachable, code: 3, .. }
        ));
        assert!(matches!(
            kinds[1],
            frames::Kind::Icmp { msg: Icmpv4Message::DstUnreachable, code: 2, .. }
        ));
        assert_eq!(s.stats().total_drops(), 7);
        assert_eq!(s.stats().rx_frames, 7);
    }

    #[test]
    fn arp_request_for_us_is_answered_in_place() {
        let mut s = stack(false);
        let req = frames::arp_request(PEER, ip(9), ip(2));
        let f = rx(&mut s, &req, NetHdr::NONE);
        assert!(matches!(f.verdict, Verdict::Transmit { len: 42, .. }));
        assert_eq!(
            frames::classify(f.bytes()),
            frames::Kind::Arp { op: ArpOperation::Reply, sender: ip(2), target: ip(9) }
        );
        assert_eq!(&f.bytes()[..6], &PEER.0);
        assert_eq!(s.neighbors().get(ip(9)).map(|n| n.mac), Some(PEER));
        let other = frames::arp_request(PEER, ip(9), ip(3));
        assert_eq!(rx(&mut s, &other, NetHdr::NONE).verdict, Verdict::Drop(DropReason::ArpIgnored));
        // Someone else claiming our address is a conflict, never learned.
        let claim = frames::arp_request(PEER, ip(2), ip(2));
        assert_eq!(rx(&mut s, &claim, NetHdr::NONE).verdict, Verdict::Drop(DropReason::ArpIgnored));
        assert_eq!(s.stats().arp_conflicts, 1);
    }

    #[test]
    fn queue_sink_and_deliver_modes() {
        let mut s = stack(false);
        assert_eq!(rx(&mut s, &udp_to(9, b"queued"), NetHdr::NONE).verdict, Verdict::Consumed);
        assert_eq!(rx(&mut s, &udp_to(10, b"sunk"), NetHdr::NONE).verdict, Verdict::Consumed);
        let f = rx(&mut s, &udp_to(11, b"zero copy"), NetHdr::NONE);
        let Verdict::Deliver(d) = f.verdict else { panic!() };
        assert_eq!(&f.bytes()[d.offset as usize..(d.offset + d.len) as usize], b"zero copy");
        let h = s.udp.handle(1);
        let mut got = Vec::new();
        s.udp_recv(h, 8, |m, p| got.push((m.src, m.dst, p.to_vec()))).unwrap();
        assert_eq!(got, [(sa(9, 4000), sa(2, 9), b"queued".to_vec())]);
        assert_eq!(s.udp_stats(s.udp.handle(2)).unwrap().rx_bytes, 4);
        assert_eq!(s.stats().udp_rx_datagrams, 3);
    }

    /// An echo request whose reply is all zeros (identifier 0, sequence 0, no data) gets a
    /// reply whose checksum verifies (0xFFFF, not the 0x0000 the incremental update gives),
    /// answered in place and from reassembly. Found by the `stack` fuzz target.
    #[test]
    fn an_all_zero_echo_reply_has_a_checksum_that_verifies() {
        let mut s = stack(false);
        let f =
            rx(&mut s, &frames::icmp_echo_frame(PEER, US, ip(9), ip(2), 0, 0, b""), NetHdr::NONE);
        assert!(matches!(f.verdict, Verdict::Transmit { .. }), "{:?}", f.verdict);
        let p = Icmpv4Packet::new_checked(&f.bytes()[34..]).unwrap();
        assert_eq!(p.msg_type(), Icmpv4Message::EchoReply);
        assert!(p.verify_checksum(), "reply checksum {:#06x}", p.checksum());
        assert_eq!(p.checksum(), 0xffff);
        // The same request in two fragments: the reply comes from the reassembly buffer.
        let mut msg = vec![0u8; 8 + 1600];
        msg[0] = 8;
        Icmpv4Packet::new_unchecked(&mut msg[..]).fill_checksum();
        let frags = frames::ipv4_fragments(PEER, US, ip(9), ip(2), IpProtocol::Icmp, 5, &msg, 1500);
        assert_eq!(frags.len(), 2);
        s.add_static_neighbor(ip(9), PEER);
        for fr in &frags {
            rx(&mut s, fr, NetHdr::NONE);
        }
        let mut out = vec![Frame::empty(2048), Frame::empty(2048)];
        assert_eq!(s.poll_tx(Instant::ZERO, &mut FrameSlots::new(&mut out)), 2);
        let mut reply = Vec::new();
        for f in &out {
            reply.extend_from_slice(Ipv4Packet::new_checked(&f.bytes()[14..]).unwrap().payload());
        }
        let p = Icmpv4Packet::new_checked(&reply[..]).unwrap();
        assert_eq!(p.msg_type(), Icmpv4Message::EchoReply);
        assert!(p.verify_checksum(), "reassembled reply checksum {:#06x}", p.checksum());
    }

    /// A datagram to a broadcast address that never completes reassembly times out without an
    /// ICMP error (RFC 1122 §3.2.2; it used to be answered from 255.255.255.255), while one to
    /// our address gets its "fragment reassembly time exceeded". Found by the `stack` fuzz
    /// target.
    #[test]
    fn reassembly_timeouts_of_broadcast_datagrams_are_not_answered() {
        let mut s = stack(false);
        s.add_static_neighbor(ip(9), PEER);
        let dgram = frames::udp_datagram(sa(9, 1), sa(2, 7), &[7u8; 3000]);
        for (ident, dst) in [(1, Ipv4Addr::BROADCAST), (2, ip(255)), (3, ip(2))] {
            let f =
                frames::ipv4_fragments(PEER, US, ip(9), dst, IpProtocol::Udp, ident, &dgram, 1500);
            let mut first = f[0].clone();
            if dst == Ipv4Addr::BROADCAST {
                first[..6].copy_from_slice(&EthernetAddress::BROADCAST.0);
            }
            rx(&mut s, &first, NetHdr::NONE);
        }
        let later = Instant::from_secs(60);
        s.handle_timeout(later);
        assert_eq!(s.stats().drops(DropReason::ReassemblyTimeout), 3);
        let mut out = vec![Frame::empty(2048), Frame::empty(2048), Frame::empty(2048)];
        let n = s.poll_tx(later, &mut FrameSlots::new(&mut out));
        assert_eq!(n, 1, "one error, for the datagram to our address");
        let ip4 = Ipv4Packet::new_checked(&out[0].bytes()[14..]).unwrap();
        assert_eq!((ip4.src_addr(), ip4.dst_addr()), (ip(2), ip(9)));
        let p = Icmpv4Packet::new_checked(ip4.payload()).unwrap();
        assert_eq!((p.msg_type(), p.msg_code()), (Icmpv4Message::TimeExceeded, 1));
    }

    /// Valid frames of every kind the stack handles, as seeds for mutation.
    fn seeds() -> Vec<Vec<u8>> {
        let dgram = frames::udp_datagram(sa(9, 1), sa(2, 7), &[7u8; 3000]);
        let mut v = vec![
            udp_to(7, b"echo me"),
            udp_to(9, b"queue me"),
            udp_to(12, b"closed"),
            frames::icmp_echo_frame(PEER, US, ip(9), ip(2), 1, 1, b"ping"),
            frames::arp_request(PEER, ip(9), ip(2)),
        ];
        v.extend(frames::ipv4_fragments(PEER, US, ip(9), ip(2), IpProtocol::Udp, 3, &dgram, 1500));
        let mut tagged = udp_to(7, b"tagged");
        tagged.splice(12..12, [0x81, 0x00, 0x00, 0x64]);
        v.push(tagged);
        v
    }

    fn exercise(s: &mut Stack, frames: Vec<(Vec<u8>, u8)>) -> Result<(), TestCaseError> {
        let mut batch: Vec<Frame> = frames
            .iter()
            .map(|(b, c)| {
                let mut f = Frame::new(b, b.len());
                f.hdr.csum = match c % 3 {
                    0 => Csum::None,
                    1 => Csum::Valid,
                    _ => Csum::Partial { start: u16::from(*c), offset: 6 },
                };
                f
            })
            .collect();
        s.handle_rx(Instant::from_millis(1), &mut batch[..]);
        for (f, (orig, _)) in batch.iter().zip(&frames) {
            if let Verdict::Transmit { len, .. } = f.verdict {
                prop_assert!(len <= orig.len());
            }
        }
        let mut slots: Vec<Frame> = (0..64).map(|_| Frame::empty(1600)).collect();
        s.poll_tx(Instant::from_millis(2), &mut FrameSlots::new(&mut slots));
        s.handle_timeout(Instant::from_secs(100));
        s.poll_tx(Instant::from_secs(100), &mut FrameSlots::new(&mut slots));
        prop_assert_eq!(s.stats().rx_frames, frames.len() as u64);
        Ok(())
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(
            frames in proptest::collection::vec((proptest::collection::vec(any::<u8>(), 0..200), any::<u8>()), 1..32)
        ) {
            let mut s = stack(false);
            exercise(&mut s, frames)?;
        }

        #[test]
        fn never_panics_on_mutated_valid_frames(
            picks in proptest::collection::vec(
                (0usize..16, proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6), any::<usize>(), any::<u8>()),
                1..32),
            offload in any::<bool>(),
        ) {
            let seeds = seeds();
            let frames = picks
                .into_iter()
                .map(|(k, muts, cut, csum)| {
                    let mut f = seeds[k % seeds.len()].clone();
                    for (at, x) in muts {
                        let n = f.len();
                        f[at % n] ^= x;
                    }
                    if cut % 4 == 0 {
                        f.truncate(cut % (f.len() + 1));
                    }
                    (f, csum)
                })
                .collect();
            let mut s = stack(offload);
            exercise(&mut s, frames)?;
        }
    }

    #[test]
    fn a_sibling_finishes_a_resolution_whose_reply_landed_elsewhere() {
        // Two stacks of one interface (queues 0 and 1): stack 1 sends, the reply lands on 0.
        let (mut q0, mut q1) = (stack(false), stack(false));
        let h = q1.udp.handle(1);
        q1.udp_send(h, sa(9, 5), b"waiting").unwrap();
        let mut slots: Vec<Frame> = (0..4).map(|_| Frame::empty(2048)).collect();
        assert_eq!(q1.poll_tx(Instant::ZERO, &mut FrameSlots::new(&mut slots)), 1);
        assert!(matches!(
            frames::classify(slots[0].bytes()),
            frames::Kind::Arp { op: ArpOperation::Request, .. }
        ));
        let reply = frames::arp_reply(PEER, ip(9), US, ip(2));
        // Queue 0 never asked: it creates no entry, but passes the fact on.
        assert_eq!(rx(&mut q0, &reply, NetHdr::NONE).verdict, Verdict::Consumed);
        assert!(q0.neighbors().get(ip(9)).is_none());
        let hint = q0.poll_neighbor_learned().unwrap();
        assert_eq!(hint, NeighborHint { ip: ip(9), mac: PEER, confirmed: true });
        assert_eq!(q0.poll_neighbor_learned(), None);
        q1.handle_neighbor_hint(Instant::ZERO, hint);
        let mut slots: Vec<Frame> = (0..4).map(|_| Frame::empty(2048)).collect();
        assert_eq!(q1.poll_tx(Instant::ZERO, &mut FrameSlots::new(&mut slots)), 1);
        assert!(matches!(frames::classify(slots[0].bytes()), frames::Kind::Udp { len: 7, .. }));
        assert_eq!(&slots[0].bytes()[..6], &PEER.0);
        // A hint about an address nobody asked for creates nothing; one naming us is refused.
        q0.handle_neighbor_hint(
            Instant::ZERO,
            NeighborHint { ip: ip(7), mac: PEER, confirmed: true },
        );
        assert!(q0.neighbors().get(ip(7)).is_none());
        q1.handle_neighbor_hint(
            Instant::ZERO,
            NeighborHint { ip: ip(9), mac: US, confirmed: true },
        );
        assert_eq!(q1.neighbors().get(ip(9)).map(|n| n.mac), Some(PEER));
        // A request for us teaches a stale (unconfirmed) fact.
        let req = frames::arp_request(EthernetAddress([2, 0, 0, 0, 0, 8]), ip(8), ip(2));
        assert!(matches!(rx(&mut q0, &req, NetHdr::NONE).verdict, Verdict::Transmit { .. }));
        assert_eq!(q0.poll_neighbor_learned().map(|h| (h.ip, h.confirmed)), Some((ip(8), false)));
    }

    #[test]
    fn originated_datagrams_carry_correct_checksums() {
        for offload in [false, true] {
            let mut s = stack(offload);
            s.add_static_neighbor(ip(9), PEER);
            let h = s.udp.handle(1);
            s.udp_send(h, sa(9, 5), b"hello").unwrap();
            let mut slots: Vec<Frame> = (0..4).map(|_| Frame::empty(2048)).collect();
            assert_eq!(s.poll_tx(Instant::ZERO, &mut FrameSlots::new(&mut slots)), 1);
            let mut f = slots[0].clone();
            if let Csum::Partial { start, offset } = f.hdr.csum {
                assert!(offload);
                let end = f.len;
                complete_checksum(&mut f.buf[..end], usize::from(start), usize::from(offset));
            }
            let u = UdpPacket::new_checked(&f.bytes()[34..]).unwrap();
            assert!(u.verify_checksum(ip(2), ip(9)), "offload {offload}");
            assert_eq!(UdpRepr::parse(&u).unwrap(), UdpRepr { src_port: 9, dst_port: 5 });
        }
    }
}
