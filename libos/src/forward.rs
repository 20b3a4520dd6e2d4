//! # The IPv4 router of one worker: forwarding in place between interfaces
//!
//! What it is: [`Router`], the sans-IO forwarding plane of one worker core. It owns one
//! [`Stack`] per interface the worker serves (the appliance's own host on that link: ARP,
//! ping, ICMP errors, services) and shares the forwarding table ([`Fib`]) read-only with the
//! other workers. Like [`Stack`] it is driven with `handle_*`/`poll_*` calls and `now` as an
//! argument; the worker loop in `appliance` connects it to the ports of a shared-UMEM group,
//! where a frame received on one interface can be sent from the same memory on another.
//!
//! Per received frame ([`Router::handle_rx`], one call per received burst of one port):
//! 1. Ethernet: a frame to the interface's MAC with EtherType IPv4 is a candidate for
//!    forwarding; anything else (ARP, broadcast, multicast, other EtherTypes, frames for other
//!    MACs) goes to the interface's stack, which answers or drops and counts it.
//! 2. IPv4 header checks (RFC 1812 §5.2.2): version 4, header and total length consistent with
//!    the frame, header checksum. Martian sources (0/8, 127/8, multicast, 240/4) and
//!    destinations (0/8, 127/8, 240/4) are dropped; limited broadcast and multicast go to the
//!    stack (no multicast routing).
//! 3. One [`Fib`] lookup: no route → ICMP net unreachable; [`NextHop::Local`] (an address of
//!    the appliance, on any of its interfaces, or a connected broadcast address) → the stack of
//!    the receiving interface (every stack carries the other interfaces' addresses as /32s, so
//!    a ping to the far side's address is answered back out of the link it came in on);
//!    [`NextHop::Blackhole`] → dropped.
//! 4. Options (IHL > 5) are checked first, as Linux checks them on receipt (see
//!    `scan_options`): a malformed one → ICMP parameter problem; a source route (LSRR/SSRR)
//!    is dropped (Linux's `accept_source_route = 0`), record route gets the egress address, a
//!    timestamp the receiving interface's address where asked and a timestamp (see
//!    `timestamp`), anything else is forwarded unchanged. Then TTL ≤ 1 → ICMP time
//!    exceeded. Fragments are forwarded as they are (never reassembled on the way).
//! 5. Larger than the egress MTU: with DF, ICMP fragmentation needed with the egress MTU
//!    (RFC 1191); without, the packet is copied into a bounded fragmentation queue and leaves
//!    as fragments (RFC 791) from `poll_tx`.
//! 6. Next hop: the gateway, or the destination on-link, looked up in the **egress
//!    interface's stack's ARP cache** (its states, probes and aging are the stack's): resolved
//!    → the TTL is decremented with an incremental checksum update (RFC 1624), the Ethernet
//!    addresses rewritten, and the frame is sent **from the same memory** on the egress port
//!    ([`Action::Send`]); resolving → the packet is copied onto the neighbour's bounded pending
//!    queue (the stack sends the ARP request, and the packet once the reply arrives); no room
//!    → dropped.
//!
//! ICMP errors go through the receiving interface's stack: its RFC 1122 rules (never about an
//! error, a broadcast, a non-initial fragment), its token bucket (1000/s, burst 50, per
//! interface and worker) and its bounded queue; they are sent from that interface's primary
//! address to the previous hop's MAC.
//!
//! What it owns: the stacks, a handle on the table, the fragmentation queue, the counters.
//!
//! What it never does on the fast path: allocate, lock, log, read a clock or write shared
//! memory. A resolved next hop is remembered for the rest of the batch (the common case of
//! one next hop for a whole burst costs one ARP-cache lookup per burst). Every dropped packet
//! is counted under one [`FwdDrop`] (or, when a stack dropped it, one
//! [`crate::DropReason`] in that stack's counters).
//!
//! Not done (see docs/forwarding.md): ICMP redirects, host unreachable when ARP fails (the
//! waiting packets are dropped and counted `arp_failed`), echoing an offender's options in an
//! ICMP error's header, VLAN interfaces, multicast routing.
//!
//! References: RFC 1812 (router requirements: §4.2.2.9 TTL, §5.2.2 header checks, §5.3.1
//! TTL, §5.3.4 link broadcasts, §4.3.2.8 ICMP rate limiting), RFC 791 (options,
//! fragmentation), RFC 1191 (fragmentation needed), RFC 1624 (incremental checksum).

use core::fmt;
use std::net::Ipv4Addr;
use std::sync::Arc;

use crate::batch::{Delivery, RxBatch, TxSlots, Verdict};
use crate::fib::{Fib, FibBuilder, NextHop};
use crate::icmp::{ErrorKind, Offender};
use crate::iface::neighbor::Lookup;
use crate::iface::route::Ipv4Cidr;
use crate::stack::{ConfigError, NeighborHint, Stack, StackConfig, MAX_ADDRS};
use crate::time::{earliest, Instant};
use crate::wire::{
    checksum, EthernetAddress, Icmpv4DstUnreachable, Icmpv4TimeExceeded, NetHdr,
    ETHERNET_HEADER_LEN, IPV4_HEADER_LEN,
};

/// Most interfaces one router serves (interface indices are `u16` in the table).
pub const MAX_IFACES: usize = 64;
/// Bytes of one fragmentation slot: the largest datagram the router fragments.
pub const FRAG_SLOT: usize = 9216;

/// Why the router dropped a packet it was deciding on (the stacks count their own drops).
/// Bounded: metrics use these as labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FwdDrop {
    /// Shorter than its IPv4 header or total length says.
    Truncated,
    /// A header field the format does not allow (version, header length, option syntax).
    Malformed,
    /// The IPv4 header checksum did not verify.
    BadChecksum,
    /// A martian source: 0/8, 127/8, multicast, 240/4.
    BadSource,
    /// A martian destination: 0/8, 127/8, 240/4 (other than limited broadcast).
    BadDestination,
    /// No route (answered with net unreachable, rate-limited).
    NoRoute,
    /// A null route.
    Blackhole,
    /// TTL expired in transit (answered with time exceeded, rate-limited).
    TtlExceeded,
    /// Larger than the egress MTU with DF set (answered with fragmentation needed).
    FragNeeded,
    /// Larger than the egress MTU and the fragmentation queue was full or the datagram larger
    /// than a slot.
    FragQueueFull,
    /// A loose or strict source route option.
    SourceRoute,
    /// The next hop is resolving and its pending queue (or the pool) is full, or the ARP
    /// cache had no room for it.
    ArpPendingFull,
    /// The route names an interface this router does not have.
    NoInterface,
}

impl FwdDrop {
    /// Number of reasons.
    pub const COUNT: usize = 13;

    /// Every reason, in index order.
    pub const ALL: [FwdDrop; FwdDrop::COUNT] = [
        FwdDrop::Truncated,
        FwdDrop::Malformed,
        FwdDrop::BadChecksum,
        FwdDrop::BadSource,
        FwdDrop::BadDestination,
        FwdDrop::NoRoute,
        FwdDrop::Blackhole,
        FwdDrop::TtlExceeded,
        FwdDrop::FragNeeded,
        FwdDrop::FragQueueFull,
        FwdDrop::SourceRoute,
        FwdDrop::ArpPendingFull,
        FwdDrop::NoInterface,
    ];

    /// The metrics label, snake_case and stable.
    pub const fn as_str(self) -> &'static str {
        match self {
            FwdDrop::Truncated => "truncated",
            FwdDrop::Malformed => "malformed",
            FwdDrop::BadChecksum => "bad_checksum",
            FwdDrop::BadSource => "bad_source",
            FwdDrop::BadDestination => "bad_destination",
            FwdDrop::NoRoute => "no_route",
            FwdDrop::Blackhole => "blackhole",
            FwdDrop::TtlExceeded => "ttl_exceeded",
            FwdDrop::FragNeeded => "frag_needed",
            FwdDrop::FragQueueFull => "frag_queue_full",
            FwdDrop::SourceRoute => "source_route",
            FwdDrop::ArpPendingFull => "arp_pending_full",
            FwdDrop::NoInterface => "no_interface",
        }
    }
}

impl fmt::Display for FwdDrop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Counters of one router (single writer: its worker).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ForwardStats {
    /// Packets forwarded in place (sent from the frame they arrived in).
    pub forwarded: u64,
    /// Their bytes (Ethernet header included).
    pub forwarded_bytes: u64,
    /// Frames handed to a local stack (ARP, packets for the appliance, broadcasts).
    pub local: u64,
    /// Packets copied onto a neighbour's pending queue while it resolves (sent later by the
    /// egress stack, counted in its `tx_frames`).
    pub arp_queued: u64,
    /// Packets with IPv4 options forwarded.
    pub with_options: u64,
    /// Packets queued for fragmentation.
    pub fragmented: u64,
    /// Fragments sent from the fragmentation queue.
    pub fragments_sent: u64,
    /// Drops by reason, indexed by `FwdDrop as usize`.
    pub drops: [u64; FwdDrop::COUNT],
}

impl ForwardStats {
    /// Drops counted under `reason`.
    pub fn drops(&self, reason: FwdDrop) -> u64 {
        self.drops[reason as usize]
    }

    /// All drops.
    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }
}

/// What the worker does with one received frame after [`Router::handle_rx`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Action {
    /// Free the frame (consumed, queued as a copy, or dropped and counted).
    #[default]
    Free,
    /// Send the frame from the same memory on port `port`, `len` bytes from its start, with
    /// offload header `hdr` (a forwarded packet, or a local reply on the receiving port).
    Send {
        /// Egress port (interface index).
        port: u16,
        /// Frame length.
        len: u32,
        /// Offload metadata for the transmit descriptor.
        hdr: NetHdr,
    },
    /// A datagram for a `Deliver`-mode UDP socket of the receiving interface's stack: give
    /// the frame to the socket's owner, then free it.
    Deliver(Delivery),
}

/// Why a router configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouterConfigError {
    /// No interface, or more than [`MAX_IFACES`].
    InterfaceCount(usize),
    /// Interface `iface` has a VLAN (the router forwards untagged frames only).
    Vlan(usize),
    /// The stack of interface `iface` refused its configuration.
    Stack(usize, ConfigError),
}

impl fmt::Display for RouterConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouterConfigError::InterfaceCount(n) => {
                write!(f, "router: {n} interfaces (1 to {MAX_IFACES} allowed)")
            }
            RouterConfigError::Vlan(i) => {
                write!(f, "router: interface {i} has a VLAN; the router forwards untagged frames")
            }
            RouterConfigError::Stack(i, e) => write!(f, "router: interface {i}: {e}"),
        }
    }
}

impl std::error::Error for RouterConfigError {}

/// Configuration of a router: one stack per interface, in port order.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// The interfaces' stacks (MAC, addresses with prefixes, MTU, ARP and ICMP tunables, …).
    pub ifaces: Vec<StackConfig>,
    /// Datagrams that can wait for fragmentation at once (each takes [`FRAG_SLOT`] bytes).
    pub frag_slots: usize,
}

impl RouterConfig {
    /// A configuration for `ifaces` with 4 fragmentation slots.
    pub fn new(ifaces: Vec<StackConfig>) -> RouterConfig {
        RouterConfig { ifaces, frag_slots: 4 }
    }
}

/// The table entries every router needs, from its interfaces' configurations: each address
/// `/32` → [`NextHop::Local`], each connected prefix → on-link out of its interface, the
/// directed broadcast address of each prefix shorter than /31 → [`NextHop::Local`]. Static
/// and learned routes are added to the returned builder by the caller.
pub fn interface_routes(ifaces: &[StackConfig]) -> FibBuilder {
    let mut b = FibBuilder::new();
    // Connected prefixes first, then the addresses: an address inside another interface's
    // prefix stays local.
    for (i, c) in ifaces.iter().enumerate() {
        for a in &c.addrs {
            let net = Ipv4Cidr::new(a.network(), a.prefix_len.min(32));
            b.insert(net, NextHop::Forward { iface: i as u16, via: None });
        }
    }
    for c in ifaces {
        for a in &c.addrs {
            b.insert(Ipv4Cidr::new(a.addr, 32), NextHop::Local);
            if a.prefix_len < 31 {
                b.insert(Ipv4Cidr::new(a.broadcast(), 32), NextHop::Local);
            }
        }
    }
    b
}

/// One interface of the router.
#[derive(Debug)]
struct Iface {
    stack: Stack,
    mac: EthernetAddress,
    mtu: usize,
    /// Primary address: source of the ICMP errors this interface sends, and what record
    /// route writes for packets leaving here.
    addr: Ipv4Addr,
}

/// A datagram waiting to leave as fragments.
#[derive(Debug, Clone, Copy, Default)]
struct FragJob {
    port: u16,
    mac: EthernetAddress,
    len: u16,
    /// Payload bytes already sent.
    done: u16,
}

/// The bounded fragmentation queue: a FIFO of jobs, job `k` of the ring using buffer slot `k`.
#[derive(Debug)]
struct FragQueue {
    jobs: Box<[FragJob]>,
    buf: Box<[u8]>,
    head: usize,
    len: usize,
}

impl FragQueue {
    fn new(slots: usize) -> FragQueue {
        FragQueue {
            jobs: vec![FragJob::default(); slots].into_boxed_slice(),
            buf: vec![0u8; slots * FRAG_SLOT].into_boxed_slice(),
            head: 0,
            len: 0,
        }
    }

    fn front_port(&self) -> Option<u16> {
        (self.len > 0).then(|| self.jobs[self.head].port)
    }

    /// Copies `packet` into a free slot; `false` when full (or the packet is too large).
    fn push(&mut self, port: u16, mac: EthernetAddress, packet: &[u8]) -> bool {
        let cap = self.jobs.len();
        if self.len >= cap || packet.len() > FRAG_SLOT {
            return false;
        }
        let k = (self.head + self.len) % cap;
        self.buf[k * FRAG_SLOT..k * FRAG_SLOT + packet.len()].copy_from_slice(packet);
        self.jobs[k] = FragJob { port, mac, len: packet.len() as u16, done: 0 };
        self.len += 1;
        true
    }

    fn pop(&mut self) {
        if self.len > 0 {
            self.head = (self.head + 1) % self.jobs.len();
            self.len -= 1;
        }
    }
}

/// A one-frame [`RxBatch`] for handing a frame to a stack.
struct One<'a> {
    frame: &'a mut [u8],
    hdr: NetHdr,
    verdict: Verdict,
}

impl RxBatch for One<'_> {
    fn len(&self) -> usize {
        1
    }

    fn frame(&mut self, _: usize) -> (&mut [u8], NetHdr) {
        (self.frame, self.hdr)
    }

    fn set_verdict(&mut self, _: usize, verdict: Verdict) {
        self.verdict = verdict;
    }
}

/// What the routing decision for one IPv4 packet came to.
enum Decision {
    Send(Action),
    Local,
    Drop(FwdDrop),
}

#[inline]
fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[inline]
fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// 0/8, 127/8, multicast and 240/4 (broadcast included) cannot be a source.
#[inline]
fn martian_source(a: u32) -> bool {
    let top = a >> 24;
    top == 0 || top == 127 || top >= 224
}

/// The options a forwarded header carries that the router writes into: offsets (in the
/// options) of a record-route and a timestamp option.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Options {
    rr: Option<usize>,
    ts: Option<usize>,
}

/// Why a header's options stop it: the drop, and for a parameter problem the offset of the
/// offending octet in the header (the ICMP error's pointer).
type OptionError = (FwdDrop, Option<u8>);

/// Checks the options of a header (RFC 791 §3.1) as Linux checks a received packet's
/// (`ip_options_compile`), so that the parameter problems match a Linux router's: an option
/// length below 2 or past the header, a record route or timestamp given twice, too short for
/// its pointer, or with a pointer below its first slot or into a slot cut short, and a
/// timestamp overflow counter that would pass 15. Source routes are dropped without an
/// error (Linux's `accept_source_route = 0`). Other options are forwarded untouched.
fn scan_options(opts: &[u8]) -> Result<Options, OptionError> {
    let problem = |i: usize| Err((FwdDrop::Malformed, Some((IPV4_HEADER_LEN + i) as u8)));
    let mut found = Options::default();
    let mut i = 0;
    while i < opts.len() {
        match opts[i] {
            0 => break,
            1 => i += 1,
            t => {
                let len = usize::from(opts.get(i + 1).copied().unwrap_or(0));
                if len < 2 || i + len > opts.len() {
                    return problem(i);
                }
                let ptr = usize::from(opts.get(i + 2).copied().unwrap_or(0));
                match t {
                    131 | 137 => return Err((FwdDrop::SourceRoute, None)),
                    7 => {
                        if found.rr.is_some() {
                            return problem(i);
                        }
                        if len < 3 {
                            return problem(i + 1);
                        }
                        if ptr < 4 || (ptr <= len && ptr + 3 > len) {
                            return problem(i + 2);
                        }
                        found.rr = Some(i);
                    }
                    68 => {
                        if found.ts.is_some() {
                            return problem(i);
                        }
                        if len < 4 {
                            return problem(i + 1);
                        }
                        let flag = opts[i + 3] & 0x0f;
                        let slot = if matches!(flag, 1 | 3) { 8 } else { 4 };
                        if ptr < 5 || (ptr <= len && ptr + slot - 1 > len) {
                            return problem(i + 2);
                        }
                        if ptr > len && flag != 3 && opts[i + 3] >> 4 == 15 {
                            return problem(i + 3);
                        }
                        found.ts = Some(i);
                    }
                    _ => {}
                }
                i += len;
            }
        }
    }
    Ok(found)
}

/// Writes one fragment of the IPv4 datagram `packet` (header of `hl` bytes) into `out`: the
/// payload bytes `off .. off + chunk`, behind the full header for the first fragment and
/// behind the header with only the options marked "copied" (RFC 791 §3.1) for the others.
/// Offsets and flags continue those of `packet` (which may itself be a fragment). Returns the
/// fragment's length, or `None` if `out` is too short.
fn write_fragment(
    out: &mut [u8],
    packet: &[u8],
    hl: usize,
    off: usize,
    chunk: usize,
) -> Option<usize> {
    let payload_len = packet.len() - hl;
    let last = off + chunk >= payload_len;
    let mut h = IPV4_HEADER_LEN;
    if off == 0 {
        out.get_mut(..hl)?.copy_from_slice(&packet[..hl]);
        h = hl;
    } else {
        out.get_mut(..IPV4_HEADER_LEN)?.copy_from_slice(&packet[..IPV4_HEADER_LEN]);
        let opts = &packet[IPV4_HEADER_LEN..hl];
        let mut i = 0;
        while i < opts.len() {
            match opts[i] {
                0 => break,
                1 => i += 1,
                t => {
                    let l = usize::from(opts[i + 1]);
                    if t & 0x80 != 0 {
                        out.get_mut(h..h + l)?.copy_from_slice(&opts[i..i + l]);
                        h += l;
                    }
                    i += l;
                }
            }
        }
        while h % 4 != 0 {
            *out.get_mut(h)? = 0; // end of options
            h += 1;
        }
    }
    let total = h + chunk;
    out.get_mut(h..total)?.copy_from_slice(&packet[hl + off..hl + off + chunk]);
    let flags = be16(packet, 6);
    let more = !last || flags & 0x2000 != 0;
    let offset = (flags & 0x1fff) + (off / 8) as u16;
    let flags = (flags & 0x4000) | if more { 0x2000 } else { 0 } | offset;
    out[0] = 0x40 | (h / 4) as u8;
    out[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    out[6..8].copy_from_slice(&flags.to_be_bytes());
    out[10..12].copy_from_slice(&[0, 0]);
    let c = checksum::checksum(&out[..h]);
    out[10..12].copy_from_slice(&c.to_be_bytes());
    Some(total)
}

/// Payload bytes per fragment for a datagram with an `hl`-byte header and an `mtu`.
fn fragment_payload(mtu: usize, hl: usize) -> usize {
    (mtu.saturating_sub(hl)) & !7
}

/// The IPv4 router of one worker (see the module documentation).
///
/// # Call order
///
/// Like [`Stack`]: per received burst of port `p`, [`handle_rx`](Self::handle_rx) and then
/// each frame's [`Action`]; [`handle_timeout`](Self::handle_timeout) once
/// [`poll_timeout`](Self::poll_timeout) has passed; neighbour hints to and from the sibling
/// workers' routers per port; then for every port whose [`wants_tx`](Self::wants_tx) is true,
/// [`poll_tx`](Self::poll_tx) with free frames of that port; a new table with
/// [`set_fib`](Self::set_fib) between batches.
#[derive(Debug)]
pub struct Router {
    ifaces: Box<[Iface]>,
    fib: Arc<Fib>,
    stats: ForwardStats,
    frags: FragQueue,
    /// The last next hop resolved in the current batch: (port, address, MAC).
    memo: Option<(u16, Ipv4Addr, EthernetAddress)>,
    /// Per port: the stack may have something to send (it was handed a frame, a timer ran, a
    /// resolution started, an error was queued, its owner touched it). Spares the worker a
    /// look into every stack's queues on every busy iteration.
    dirty: Box<[bool]>,
}

impl Router {
    /// Builds one stack per interface at `now` (each also carrying the other interfaces'
    /// addresses as /32s, up to [`MAX_ADDRS`] in all) and takes `fib` as the table.
    pub fn new(
        cfg: RouterConfig,
        fib: Arc<Fib>,
        now: Instant,
    ) -> Result<Router, RouterConfigError> {
        let n = cfg.ifaces.len();
        if n == 0 || n > MAX_IFACES {
            return Err(RouterConfigError::InterfaceCount(n));
        }
        let mut ifaces = Vec::with_capacity(n);
        for (i, c) in cfg.ifaces.iter().enumerate() {
            if c.vlan.is_some() {
                return Err(RouterConfigError::Vlan(i));
            }
            let mut sc = c.clone();
            for (j, other) in cfg.ifaces.iter().enumerate() {
                for a in other.addrs.iter().filter(|_| j != i) {
                    if sc.addrs.len() < MAX_ADDRS && !sc.addrs.iter().any(|x| x.addr == a.addr) {
                        sc.addrs.push(Ipv4Cidr::new(a.addr, 32));
                    }
                }
            }
            let addr = c.addrs.first().map_or(Ipv4Addr::UNSPECIFIED, |a| a.addr);
            let stack = Stack::new(sc, now).map_err(|e| RouterConfigError::Stack(i, e))?;
            ifaces.push(Iface { mac: c.mac, mtu: c.mtu, addr, stack });
        }
        Ok(Router {
            ifaces: ifaces.into_boxed_slice(),
            fib,
            stats: ForwardStats::default(),
            frags: FragQueue::new(cfg.frag_slots),
            memo: None,
            dirty: vec![true; n].into_boxed_slice(),
        })
    }

    /// Interfaces (ports) served.
    pub fn ports(&self) -> usize {
        self.ifaces.len()
    }

    /// The stack of port `port`.
    pub fn stack(&self, port: usize) -> &Stack {
        &self.ifaces[port].stack
    }

    /// The stack of port `port`, to change between batches (sockets, static neighbours).
    pub fn stack_mut(&mut self, port: usize) -> &mut Stack {
        self.dirty[port] = true;
        &mut self.ifaces[port].stack
    }

    /// The counters.
    pub fn stats(&self) -> &ForwardStats {
        &self.stats
    }

    /// The table in use.
    pub fn fib(&self) -> &Arc<Fib> {
        &self.fib
    }

    /// Swaps in a new table (between batches); returns the old one, so the caller can drop it
    /// off the fast path.
    pub fn set_fib(&mut self, fib: Arc<Fib>) -> Arc<Fib> {
        self.memo = None;
        core::mem::replace(&mut self.fib, fib)
    }

    /// Processes one received burst of port `port`: `out[i]` gets frame `i`'s action. Never
    /// blocks, never allocates.
    pub fn handle_rx<B: RxBatch + ?Sized>(
        &mut self,
        now: Instant,
        port: usize,
        batch: &mut B,
        out: &mut [Action],
    ) {
        self.memo = None;
        let n = batch.len().min(out.len());
        if port >= self.ifaces.len() {
            self.stats.drops[FwdDrop::NoInterface as usize] += n as u64;
            out[..n].fill(Action::Free);
            return;
        }
        for (i, slot) in out.iter_mut().enumerate().take(n) {
            let (frame, hdr) = batch.frame(i);
            *slot = self.rx_frame(now, port, frame, hdr);
        }
    }

    #[inline]
    fn rx_frame(&mut self, now: Instant, port: usize, frame: &mut [u8], hdr: NetHdr) -> Action {
        let iface = &self.ifaces[port];
        let to_us = frame.len() >= ETHERNET_HEADER_LEN + IPV4_HEADER_LEN
            && frame[12..14] == [0x08, 0x00]
            && frame[..6] == iface.mac.0;
        if !to_us {
            return self.local(now, port, frame, hdr);
        }
        match self.route(now, port, frame, hdr) {
            Decision::Send(a) => a,
            Decision::Local => self.local(now, port, frame, hdr),
            Decision::Drop(r) => {
                self.stats.drops[r as usize] += 1;
                Action::Free
            }
        }
    }

    /// Hands a frame to the stack of the port it arrived on.
    fn local(&mut self, now: Instant, port: usize, frame: &mut [u8], hdr: NetHdr) -> Action {
        self.stats.local += 1;
        self.dirty[port] = true;
        let mut one = One { frame, hdr, verdict: Verdict::default() };
        self.ifaces[port].stack.handle_rx(now, &mut one);
        match one.verdict {
            Verdict::Transmit { len, hdr } => {
                Action::Send { port: port as u16, len: len as u32, hdr }
            }
            Verdict::Deliver(d) => Action::Deliver(d),
            Verdict::Consumed | Verdict::Drop(_) => Action::Free,
        }
    }

    /// The routing decision for an IPv4 packet to our MAC (steps 2 to 6).
    #[inline]
    fn route(&mut self, now: Instant, port: usize, frame: &mut [u8], hdr: NetHdr) -> Decision {
        const L2: usize = ETHERNET_HEADER_LEN;
        let vihl = frame[L2];
        let hl = usize::from(vihl & 0x0f) * 4;
        if vihl >> 4 != 4 || hl < IPV4_HEADER_LEN {
            return Decision::Drop(FwdDrop::Malformed);
        }
        let total = usize::from(be16(frame, L2 + 2));
        if frame.len() < L2 + hl || total > frame.len() - L2 {
            return Decision::Drop(FwdDrop::Truncated);
        }
        if total < hl {
            return Decision::Drop(FwdDrop::Malformed);
        }
        if checksum::sum(&frame[L2..L2 + hl]) != 0xffff {
            return Decision::Drop(FwdDrop::BadChecksum);
        }
        let dst = be32(frame, L2 + 16);
        let top = dst >> 24;
        if top >= 224 {
            // Limited broadcast and multicast: the stack's business (no multicast routing).
            if dst == u32::MAX || top < 240 {
                return Decision::Local;
            }
            return Decision::Drop(FwdDrop::BadDestination);
        }
        if top == 0 || top == 127 {
            return Decision::Drop(FwdDrop::BadDestination);
        }
        if martian_source(be32(frame, L2 + 12)) {
            return Decision::Drop(FwdDrop::BadSource);
        }
        let next = match self.fib.lookup(Ipv4Addr::from(dst)) {
            None => {
                let why = Icmpv4DstUnreachable::NetUnreachable;
                self.icmp_error(now, port, frame, hl, total, ErrorKind::Unreachable(why));
                return Decision::Drop(FwdDrop::NoRoute);
            }
            Some(NextHop::Local) => return Decision::Local,
            Some(NextHop::Blackhole) => return Decision::Drop(FwdDrop::Blackhole),
            Some(&NextHop::Forward { iface, via }) => (iface, via.unwrap_or(Ipv4Addr::from(dst))),
        };
        self.forward(now, port, next, frame, hl, total, hdr)
    }

    /// Forwards a packet whose route is `(egress, next hop)` (steps 4 to 6).
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn forward(
        &mut self,
        now: Instant,
        port: usize,
        (out, nh): (u16, Ipv4Addr),
        frame: &mut [u8],
        hl: usize,
        total: usize,
        hdr: NetHdr,
    ) -> Decision {
        const L2: usize = ETHERNET_HEADER_LEN;
        // Options first, as Linux checks them on receipt, before the TTL.
        let options = if hl > IPV4_HEADER_LEN {
            match scan_options(&frame[L2 + IPV4_HEADER_LEN..L2 + hl]) {
                Ok(o) => o,
                Err((why, pointer)) => {
                    if let Some(p) = pointer {
                        self.icmp_error(now, port, frame, hl, total, ErrorKind::ParamProblem(p));
                    }
                    return Decision::Drop(why);
                }
            }
        } else {
            Options::default()
        };
        let ttl = frame[L2 + 8];
        if ttl <= 1 {
            let why = Icmpv4TimeExceeded::TtlExpired;
            self.icmp_error(now, port, frame, hl, total, ErrorKind::TimeExceeded(why));
            return Decision::Drop(FwdDrop::TtlExceeded);
        }
        let o = usize::from(out);
        let Some(egress) = self.ifaces.get(o) else {
            return Decision::Drop(FwdDrop::NoInterface);
        };
        let (mtu, src_mac, egress_addr) = (egress.mtu, egress.mac, egress.addr);
        let too_big = total > mtu;
        if too_big && be16(frame, L2 + 6) & 0x4000 != 0 {
            let why = Icmpv4DstUnreachable::FragNeeded { next_hop_mtu: mtu as u16 };
            self.icmp_error(now, port, frame, hl, total, ErrorKind::Unreachable(why));
            return Decision::Drop(FwdDrop::FragNeeded);
        }
        // The packet leaves: TTL down by one (RFC 1624 update of the TTL/protocol word).
        let ip = &mut frame[L2..L2 + total];
        let old = u16::from_be_bytes([ttl, ip[9]]);
        ip[8] = ttl - 1;
        let c = checksum::update16(be16(ip, 10), old, old - 0x100);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        if hl > IPV4_HEADER_LEN {
            let opts = &mut ip[IPV4_HEADER_LEN..hl];
            let mut changed = false;
            if let Some(at) = options.rr {
                changed |= record_route(opts, at, egress_addr);
            }
            if let Some(at) = options.ts {
                let ingress = self.ifaces[port].addr;
                let ifaces = &self.ifaces;
                let ours = |a: Ipv4Addr| ifaces.iter().any(|i| i.addr == a);
                changed |= record_timestamp(opts, at, ingress, ours, timestamp(now));
            }
            if changed {
                ip[10..12].copy_from_slice(&[0, 0]);
                let c = checksum::checksum(&ip[..hl]);
                ip[10..12].copy_from_slice(&c.to_be_bytes());
            }
            self.stats.with_options += 1;
        }
        let mac = match self.memo {
            Some((p, a, mac)) if p == out && a == nh => mac,
            _ => match self.ifaces[o].stack.neighbors_mut().lookup(now, nh) {
                Lookup::Ready(mac) => {
                    self.memo = Some((out, nh, mac));
                    mac
                }
                Lookup::Pending(entry) => {
                    self.dirty[o] = true;
                    return self.park(o, entry, &frame[L2..L2 + total], hl);
                }
                Lookup::Full => return Decision::Drop(FwdDrop::ArpPendingFull),
            },
        };
        if too_big {
            if !self.frags.push(out, mac, &frame[L2..L2 + total]) {
                return Decision::Drop(FwdDrop::FragQueueFull);
            }
            self.stats.fragmented += 1;
            return Decision::Send(Action::Free);
        }
        frame[..6].copy_from_slice(&mac.0);
        frame[6..12].copy_from_slice(&src_mac.0);
        let len = L2 + total;
        self.stats.forwarded += 1;
        self.stats.forwarded_bytes += len as u64;
        Decision::Send(Action::Send { port: out, len: len as u32, hdr })
    }

    /// Copies a packet (TTL already decremented) onto the pending queue of neighbour entry
    /// `entry` of port `o`'s stack, as fragments if it is larger than the egress MTU.
    fn park(&mut self, o: usize, entry: usize, packet: &[u8], hl: usize) -> Decision {
        let mtu = self.ifaces[o].mtu;
        let neighbors = self.ifaces[o].stack.neighbors_mut();
        if packet.len() <= mtu {
            let r = neighbors.enqueue_with(entry, packet.len(), |dst| {
                dst.copy_from_slice(packet);
                true
            });
            return match r {
                Ok(()) => {
                    self.stats.arp_queued += 1;
                    Decision::Send(Action::Free)
                }
                Err(_) => Decision::Drop(FwdDrop::ArpPendingFull),
            };
        }
        let per = fragment_payload(mtu, hl);
        let payload = packet.len() - hl;
        if per == 0 || neighbors.pending_room(entry) < payload.div_ceil(per) {
            return Decision::Drop(FwdDrop::ArpPendingFull);
        }
        let mut off = 0;
        while off < payload {
            let chunk = per.min(payload - off);
            let len = fragment_len(packet, hl, off, chunk);
            let r = neighbors.enqueue_with(entry, len, |dst| {
                write_fragment(dst, packet, hl, off, chunk) == Some(len)
            });
            if r.is_err() {
                return Decision::Drop(FwdDrop::ArpPendingFull);
            }
            off += chunk;
        }
        self.stats.arp_queued += 1;
        self.stats.fragmented += 1;
        Decision::Send(Action::Free)
    }

    /// Queues an ICMP error about the packet in `frame` on the receiving port's stack.
    fn icmp_error(
        &mut self,
        now: Instant,
        port: usize,
        frame: &[u8],
        hl: usize,
        total: usize,
        kind: ErrorKind,
    ) {
        const L2: usize = ETHERNET_HEADER_LEN;
        let ip = &frame[L2..L2 + total];
        let frag_off = be16(ip, 6) & 0x1fff;
        let offender = Offender {
            src: Ipv4Addr::from(be32(ip, 12)),
            ip_broadcast: false,
            link_broadcast: false,
            later_fragment: frag_off != 0,
            icmp_type: (ip[9] == 1 && frag_off == 0 && total > hl).then(|| ip[hl]),
        };
        let peer = EthernetAddress::from_bytes(&frame[6..12]).unwrap_or_default();
        let iface = &mut self.ifaces[port];
        let our = iface.addr;
        iface.stack.queue_error(now, &offender, peer, our, kind, ip);
        self.dirty[port] = true;
    }

    /// Whether [`poll_tx`](Self::poll_tx) for `port` has something to send. Looks into the
    /// stack only when something happened to it since it last had nothing to send.
    #[inline]
    pub fn wants_tx(&mut self, port: usize) -> bool {
        if self.frags.front_port() == Some(port as u16) {
            return true;
        }
        let (Some(dirty), Some(i)) = (self.dirty.get_mut(port), self.ifaces.get(port)) else {
            return false;
        };
        if *dirty && !i.stack.wants_tx() {
            *dirty = false;
        }
        *dirty
    }

    /// Writes what port `port` has to send into `slots`: its stack's frames (ARP, packets whose
    /// next hop resolved, ICMP errors, replies and socket sends), then fragments of the
    /// datagram at the front of the fragmentation queue if it leaves through this port.
    /// Returns how many slots it filled.
    pub fn poll_tx<S: TxSlots + ?Sized>(
        &mut self,
        now: Instant,
        port: usize,
        slots: &mut S,
    ) -> usize {
        let Some(iface) = self.ifaces.get_mut(port) else { return 0 };
        let start = slots.remaining();
        iface.stack.poll_tx(now, slots);
        self.dirty[port] = iface.stack.wants_tx();
        while self.frags.front_port() == Some(port as u16) && slots.remaining() > 0 {
            let k = self.frags.head;
            let job = self.frags.jobs[k];
            let packet = &self.frags.buf[k * FRAG_SLOT..k * FRAG_SLOT + usize::from(job.len)];
            let hl = usize::from(packet[0] & 0x0f) * 4;
            let per = fragment_payload(self.ifaces[port].mtu, hl);
            let payload = packet.len() - hl;
            let mut done = usize::from(job.done);
            while done < payload && per > 0 {
                let Some(room) = slots.room() else { break };
                let chunk = per.min(payload - done);
                if room.len() < ETHERNET_HEADER_LEN {
                    break;
                }
                room[..6].copy_from_slice(&job.mac.0);
                room[6..12].copy_from_slice(&self.ifaces[port].mac.0);
                room[12..14].copy_from_slice(&[0x08, 0x00]);
                let Some(n) =
                    write_fragment(&mut room[ETHERNET_HEADER_LEN..], packet, hl, done, chunk)
                else {
                    break;
                };
                slots.commit(ETHERNET_HEADER_LEN + n, NetHdr::NONE);
                self.stats.fragments_sent += 1;
                done += chunk;
            }
            if done >= payload || per == 0 {
                self.frags.pop();
            } else {
                self.frags.jobs[k].done = done as u16;
                break;
            }
        }
        start - slots.remaining()
    }

    /// The earliest instant at which [`handle_timeout`](Self::handle_timeout) has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.ifaces.iter().fold(None, |t, i| earliest(t, i.stack.poll_timeout()))
    }

    /// Runs every stack's timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        for (i, dirty) in self.ifaces.iter_mut().zip(self.dirty.iter_mut()) {
            if i.stack.poll_timeout().is_some_and(|t| t <= now) {
                i.stack.handle_timeout(now);
                *dirty = true;
            }
        }
    }

    /// What port `port`'s stack learned from ARP, for the sibling workers' stacks of the same
    /// interface ([`Stack::poll_neighbor_learned`]).
    pub fn poll_neighbor_learned(&mut self, port: usize) -> Option<NeighborHint> {
        self.ifaces.get_mut(port)?.stack.poll_neighbor_learned()
    }

    /// Applies what a sibling worker's stack of the same interface learned
    /// ([`Stack::handle_neighbor_hint`]).
    pub fn handle_neighbor_hint(&mut self, now: Instant, port: usize, hint: NeighborHint) {
        if let Some(i) = self.ifaces.get_mut(port) {
            i.stack.handle_neighbor_hint(now, hint);
            self.dirty[port] = true;
        }
    }
}

/// The length of the fragment [`write_fragment`] writes for these arguments.
fn fragment_len(packet: &[u8], hl: usize, off: usize, chunk: usize) -> usize {
    if off == 0 {
        return hl + chunk;
    }
    let opts = &packet[IPV4_HEADER_LEN..hl];
    let (mut i, mut h) = (0, IPV4_HEADER_LEN);
    while i < opts.len() {
        match opts[i] {
            0 => break,
            1 => i += 1,
            t => {
                let l = usize::from(opts[i + 1]);
                if t & 0x80 != 0 {
                    h += l;
                }
                i += l;
            }
        }
    }
    h.next_multiple_of(4) + chunk
}

/// Writes `addr` into the record-route option at `at` of `opts` (checked by
/// [`scan_options`]) and advances its pointer; a full option is left as it is (RFC 791).
fn record_route(opts: &mut [u8], at: usize, addr: Ipv4Addr) -> bool {
    let len = usize::from(opts[at + 1]);
    let ptr = usize::from(opts[at + 2]);
    if ptr >= 4 && ptr + 3 <= len {
        let w = at + ptr - 1;
        opts[w..w + 4].copy_from_slice(&addr.octets());
        opts[at + 2] = (ptr + 4) as u8;
        return true;
    }
    false
}

/// The timestamp a router writes: RFC 791 asks for milliseconds since midnight UT, and allows
/// any other time with the high-order bit set. The forwarder has a monotonic clock only, so it
/// writes its milliseconds modulo a day with that bit set.
fn timestamp(now: Instant) -> [u8; 4] {
    let ms = (now.as_nanos() / 1_000_000 % 86_400_000) as u32;
    (ms | 0x8000_0000).to_be_bytes()
}

/// Fills this router's entry of a timestamp option [`scan_options`] accepted (RFC 791 §3.1):
/// flag 0, a timestamp; flag 1, `ingress` (the address of the interface it arrived on, as
/// Linux writes) and a timestamp; flag 3, a timestamp where the pre-specified address is
/// ours. A full option counts the overflow instead (not for flag 3). Returns whether the
/// option changed.
fn record_timestamp(
    opts: &mut [u8],
    at: usize,
    ingress: Ipv4Addr,
    ours: impl Fn(Ipv4Addr) -> bool,
    stamp: [u8; 4],
) -> bool {
    let (len, ptr, flag) =
        (usize::from(opts[at + 1]), usize::from(opts[at + 2]), opts[at + 3] & 0x0f);
    if ptr > len {
        if flag == 3 {
            return false;
        }
        opts[at + 3] = ((opts[at + 3] >> 4) + 1) << 4 | flag;
        return true;
    }
    let w = at + ptr - 1;
    match flag {
        0 => {
            opts[w..w + 4].copy_from_slice(&stamp);
            opts[at + 2] = (ptr + 4) as u8;
        }
        1 => {
            opts[w..w + 4].copy_from_slice(&ingress.octets());
            opts[w + 4..w + 8].copy_from_slice(&stamp);
            opts[at + 2] = (ptr + 8) as u8;
        }
        3 => {
            let addr = Ipv4Addr::new(opts[w], opts[w + 1], opts[w + 2], opts[w + 3]);
            if !ours(addr) {
                return false;
            }
            opts[w + 4..w + 8].copy_from_slice(&stamp);
            opts[at + 2] = (ptr + 8) as u8;
        }
        _ => return false,
    }
    true
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddrV4;

    use super::*;
    use crate::batch::{Frame, FrameSlots};
    use crate::sim::frames::{self, Kind};
    use crate::wire::{
        ArpOperation, Icmpv4Message, Icmpv4Packet, IpProtocol, Ipv4Packet, UdpPacket,
    };
    use crate::DropReason;

    const R0: EthernetAddress = EthernetAddress([2, 0, 0, 0, 1, 0xf0]);
    const R1: EthernetAddress = EthernetAddress([2, 0, 0, 0, 1, 0xf1]);
    const HA: EthernetAddress = EthernetAddress([2, 0, 0, 0, 1, 0x0a]);
    const HB: EthernetAddress = EthernetAddress([2, 0, 0, 0, 1, 0x0b]);

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn sa(s: &str, port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(ip(s), port)
    }

    fn cidr(s: &str) -> Ipv4Cidr {
        let (a, l) = s.split_once('/').unwrap();
        Ipv4Cidr::new(a.parse().unwrap(), l.parse().unwrap())
    }

    fn t(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    /// Port 0: 10.0.1.1/24 toward A (10.0.1.2); port 1: 10.0.2.1/24 toward B (10.0.2.2), with
    /// `mtu1`; routes: 192.0.2.0/24 via B, 198.51.100.0/24 blackholed.
    fn router_with(mtu1: usize) -> Router {
        let mut c0 = StackConfig::new(R0, &[cidr("10.0.1.1/24")]);
        let mut c1 = StackConfig::new(R1, &[cidr("10.0.2.1/24")]);
        c0.arp.announce_count = 0;
        c1.arp.announce_count = 0;
        c1.mtu = mtu1;
        let mut b = interface_routes(&[c0.clone(), c1.clone()]);
        b.insert(cidr("192.0.2.0/24"), NextHop::Forward { iface: 1, via: Some(ip("10.0.2.2")) });
        b.insert(cidr("198.51.100.0/24"), NextHop::Blackhole);
        Router::new(RouterConfig::new(vec![c0, c1]), Arc::new(b.build()), t(0)).unwrap()
    }

    fn router() -> Router {
        router_with(1500)
    }

    /// A → `dst` UDP frame as A's kernel sends it to the router.
    fn from_a(dst: &str, payload: &[u8]) -> Vec<u8> {
        frames::udp_frame(HA, R0, sa("10.0.1.2", 4000), sa(dst, 9000), payload)
    }

    fn set_ttl(f: &mut [u8], ttl: u8) {
        Ipv4Packet::new_unchecked(&mut f[14..]).set_ttl(ttl);
    }

    /// Feeds `frames` on `port`; returns the frames (rewritten in place) and their actions.
    fn rx(r: &mut Router, now: Instant, port: usize, input: &[Vec<u8>]) -> Vec<(Frame, Action)> {
        let mut batch: Vec<Frame> = input.iter().map(|f| Frame::new(f, 2048)).collect();
        let mut out = vec![Action::Free; batch.len()];
        r.handle_rx(now, port, &mut batch[..], &mut out);
        batch.into_iter().zip(out).collect()
    }

    /// What `port` sends from `poll_tx`.
    fn tx(r: &mut Router, now: Instant, port: usize) -> Vec<Vec<u8>> {
        let mut slots = vec![Frame::empty(2048); 32];
        let mut s = FrameSlots::new(&mut slots);
        r.poll_tx(now, port, &mut s);
        let n = s.used();
        slots[..n].iter().map(|f| f.bytes().to_vec()).collect()
    }

    /// The bytes an `Action::Send` sends.
    fn sent(f: &Frame, a: &Action, port: u16) -> Vec<u8> {
        match *a {
            Action::Send { port: p, len, .. } if p == port => f.buf[..len as usize].to_vec(),
            other => panic!("expected a send on port {port}, got {other:?}"),
        }
    }

    fn resolve_b(r: &mut Router) {
        r.stack_mut(1).add_static_neighbor(ip("10.0.2.2"), HB);
    }

    #[test]
    fn options_are_checked_as_linux_checks_them() {
        let ok = |o: &[u8]| scan_options(o).unwrap();
        let pointer = |o: &[u8]| scan_options(o).unwrap_err().1;
        assert_eq!(ok(&[1, 1, 1, 0]), Options::default());
        assert_eq!(ok(&[1, 7, 7, 4, 0, 0, 0, 0]).rr, Some(1));
        assert_eq!(ok(&[68, 8, 9, 0x10, 0, 0, 0, 1]).ts, Some(0), "full: the overflow counts");
        assert_eq!(pointer(&[7, 1, 0, 0]), Some(20), "length below 2");
        assert_eq!(pointer(&[1, 7, 40, 4, 0, 0, 0, 0]), Some(21), "past the header");
        assert_eq!(pointer(&[7, 7, 3, 0, 0, 0, 0, 0]), Some(22), "pointer below the first slot");
        assert_eq!(pointer(&[68, 8, 5, 1, 0, 0, 0, 0]), Some(22), "address slot cut short");
        assert_eq!(pointer(&[68, 8, 9, 0xf0, 0, 0, 0, 1]), Some(23), "overflow past 15");
        assert_eq!(pointer(&[7, 7, 4, 0, 0, 0, 0, 7, 7, 4, 0, 0, 0, 0]), Some(27), "twice");
        assert_eq!(scan_options(&[131, 7, 4, 10, 0, 2, 2, 0]), Err((FwdDrop::SourceRoute, None)));
    }

    #[test]
    fn timestamps_are_marked_as_not_midnight_ut_and_fill_their_slots() {
        let day_ms = 86_400_000u64;
        let t = Instant::from_millis(day_ms + 1234);
        assert_eq!(
            timestamp(t),
            (0x8000_0000u32 | 1234).to_be_bytes(),
            "a day later, high bit set"
        );
        let us = Ipv4Addr::new(10, 0, 1, 1);
        let ours = |a: Ipv4Addr| a == us;
        let stamp = [0x80, 0, 0, 7];
        let mut o = [68, 12, 5, 1, 0, 0, 0, 0, 0, 0, 0, 0];
        assert!(record_timestamp(&mut o, 0, us, ours, stamp));
        assert_eq!(o, [68, 12, 13, 1, 10, 0, 1, 1, 0x80, 0, 0, 7]);
        assert!(record_timestamp(&mut o, 0, us, ours, stamp), "full: the overflow counts");
        assert_eq!(o[3], 0x11);
        let mut o = [68, 12, 5, 3, 1, 2, 3, 4, 0, 0, 0, 0];
        assert!(!record_timestamp(&mut o, 0, us, ours, stamp), "not our address: untouched");
        assert_eq!(o, [68, 12, 5, 3, 1, 2, 3, 4, 0, 0, 0, 0]);
        let mut o = [68, 12, 5, 3, 10, 0, 1, 1, 0, 0, 0, 0];
        assert!(record_timestamp(&mut o, 0, us, ours, stamp));
        assert_eq!(o, [68, 12, 13, 3, 10, 0, 1, 1, 0x80, 0, 0, 7]);
    }

    #[test]
    fn next_hop_resolved_by_arp_then_packets_forwarded_in_place() {
        let mut r = router();
        let first = from_a("10.0.2.2", b"first");
        let got = rx(&mut r, t(1), 0, &[first]);
        assert_eq!(got[0].1, Action::Free, "parked while B resolves");
        assert_eq!(r.stats().arp_queued, 1);
        assert!(r.wants_tx(1) && !r.wants_tx(0));
        let out = tx(&mut r, t(1), 1);
        assert_eq!(out.len(), 1);
        assert_eq!(
            frames::classify(&out[0]),
            Kind::Arp { op: ArpOperation::Request, sender: ip("10.0.2.1"), target: ip("10.0.2.2") }
        );
        // B answers; the parked packet leaves with B's MAC and a decremented TTL.
        let reply = frames::arp_reply(HB, ip("10.0.2.2"), R1, ip("10.0.2.1"));
        assert_eq!(rx(&mut r, t(2), 1, &[reply])[0].1, Action::Free);
        let out = tx(&mut r, t(2), 1);
        assert_eq!(out.len(), 1);
        assert_eq!((&out[0][..6], &out[0][6..12]), (&HB.0[..], &R1.0[..]));
        let p = Ipv4Packet::new_checked(&out[0][14..]).unwrap();
        assert_eq!(p.ttl(), 63);
        assert!(p.verify_checksum());
        // Now in place: the same frame, rewritten, on port 1.
        let second = from_a("10.0.2.2", b"second one");
        let got = rx(&mut r, t(3), 0, &[second.clone(), second.clone()]);
        for (f, a) in &got {
            let bytes = sent(f, a, 1);
            assert_eq!((&bytes[..6], &bytes[6..12]), (&HB.0[..], &R1.0[..]));
            let p = Ipv4Packet::new_checked(&bytes[14..]).unwrap();
            assert_eq!((p.ttl(), p.verify_checksum()), (63, true));
            assert!(bytes[14 + 12..] == second[14 + 12..], "only MACs, TTL and checksum change");
            let u = UdpPacket::new_checked(p.payload()).unwrap();
            assert!(u.verify_checksum(ip("10.0.1.2"), ip("10.0.2.2")));
        }
        assert_eq!((r.stats().forwarded, r.stats().total_drops()), (2, 0));
        // A route via a gateway resolves the gateway, not the destination.
        let got = rx(&mut r, t(4), 0, &[from_a("192.0.2.77", b"via")]);
        assert_eq!(&sent(&got[0].0, &got[0].1, 1)[..6], &HB.0[..]);
    }

    #[test]
    fn ttl_expiry_answers_time_exceeded_from_the_ingress_address() {
        let mut r = router();
        resolve_b(&mut r);
        let mut f = from_a("10.0.2.2", b"expiring");
        set_ttl(&mut f, 1);
        let mut zero = f.clone();
        set_ttl(&mut zero, 0);
        let got = rx(&mut r, t(1), 0, &[f.clone(), zero]);
        assert!(got.iter().all(|(_, a)| *a == Action::Free));
        assert_eq!(r.stats().drops(FwdDrop::TtlExceeded), 2);
        let out = tx(&mut r, t(1), 0);
        assert_eq!(out.len(), 2);
        for e in &out {
            assert_eq!(&e[..6], &HA.0[..], "to the previous hop");
            assert_eq!(
                frames::classify(e),
                Kind::Icmp {
                    src: ip("10.0.1.1"),
                    dst: ip("10.0.1.2"),
                    msg: Icmpv4Message::TimeExceeded,
                    code: 0
                }
            );
        }
        // Precedence 6, internetwork control (RFC 1812 §4.3.2.5), as Linux sends it.
        let outer = Ipv4Packet::new_checked(&out[0][14..]).unwrap();
        assert_eq!((outer.dscp() << 2) | outer.ecn(), 0xc0);
        // The error quotes the datagram as it arrived (TTL 1).
        let icmp = Icmpv4Packet::new_checked(&out[0][34..]).unwrap();
        assert!(icmp.verify_checksum());
        assert_eq!(&out[0][34 + 8..34 + 8 + 28], &f[14..14 + 28]);
        // TTL 2 is forwarded with TTL 1.
        let mut two = from_a("10.0.2.2", b"x");
        set_ttl(&mut two, 2);
        let got = rx(&mut r, t(2), 0, &[two]);
        assert_eq!(Ipv4Packet::new_checked(&sent(&got[0].0, &got[0].1, 1)[14..]).unwrap().ttl(), 1);
    }

    #[test]
    fn no_route_answers_net_unreachable_and_blackholes_are_silent() {
        let mut r = router();
        let got = rx(
            &mut r,
            t(1),
            0,
            &[from_a("203.0.113.9", b"nowhere"), from_a("198.51.100.1", b"null")],
        );
        assert!(got.iter().all(|(_, a)| *a == Action::Free));
        assert_eq!(r.stats().drops(FwdDrop::NoRoute), 1);
        assert_eq!(r.stats().drops(FwdDrop::Blackhole), 1);
        let out = tx(&mut r, t(1), 0);
        assert_eq!(out.len(), 1);
        assert_eq!(
            frames::classify(&out[0]),
            Kind::Icmp {
                src: ip("10.0.1.1"),
                dst: ip("10.0.1.2"),
                msg: Icmpv4Message::DstUnreachable,
                code: 0
            }
        );
    }

    #[test]
    fn icmp_errors_are_rate_limited_and_never_about_errors() {
        let mut r = router();
        let batch: Vec<Vec<u8>> = (0..100).map(|_| from_a("203.0.113.9", b"x")).collect();
        rx(&mut r, t(1), 0, &batch);
        let mut sent = 0;
        for _ in 0..10 {
            sent += tx(&mut r, t(1), 0).len();
        }
        assert_eq!(sent, 50, "the burst of the token bucket");
        assert_eq!(r.stack(0).stats().icmp_rate_limited, 50);
        assert_eq!(r.stats().drops(FwdDrop::NoRoute), 100);
        // An ICMP error without a route gets no error back.
        let err = frames::icmp_echo_frame(HA, R0, ip("10.0.1.2"), ip("203.0.113.9"), 1, 1, b"p");
        let mut err = err;
        err[34] = 3; // destination unreachable: an error
        let c = checksum::checksum(&err[34..]);
        err[36..38].copy_from_slice(&(!checksum::add(!c, 0)).to_be_bytes());
        rx(&mut r, t(5000), 0, &[err]);
        assert!(tx(&mut r, t(5000), 0).is_empty());
    }

    #[test]
    fn packets_for_the_router_are_answered_on_the_link_they_came_in() {
        let mut r = router();
        // ARP for the near address, ping to the near and to the far address.
        let arp = frames::arp_request(HA, ip("10.0.1.2"), ip("10.0.1.1"));
        let near = frames::icmp_echo_frame(HA, R0, ip("10.0.1.2"), ip("10.0.1.1"), 7, 1, b"near");
        let far = frames::icmp_echo_frame(HA, R0, ip("10.0.1.2"), ip("10.0.2.1"), 7, 2, b"far");
        let got = rx(&mut r, t(1), 0, &[arp, near, far]);
        let arp_reply = sent(&got[0].0, &got[0].1, 0);
        assert!(matches!(
            frames::classify(&arp_reply),
            Kind::Arp { op: ArpOperation::Reply, sender, .. } if sender == ip("10.0.1.1")
        ));
        for (k, src) in [(1, "10.0.1.1"), (2, "10.0.2.1")] {
            let reply = sent(&got[k].0, &got[k].1, 0);
            assert_eq!(
                frames::classify(&reply),
                Kind::Icmp {
                    src: ip(src),
                    dst: ip("10.0.1.2"),
                    msg: Icmpv4Message::EchoReply,
                    code: 0
                }
            );
            assert_eq!(&reply[..6], &HA.0[..]);
        }
        assert_eq!((r.stats().local, r.stats().forwarded), (3, 0));
        // A unicast IP packet in a link-layer broadcast is not forwarded (RFC 1812 §5.3.4).
        let mut bcast = from_a("10.0.2.2", b"bcast");
        bcast[..6].copy_from_slice(&[0xff; 6]);
        assert_eq!(rx(&mut r, t(2), 0, &[bcast])[0].1, Action::Free);
        assert_eq!(r.stack(0).stats().drops(DropReason::NotForUs), 1);
        assert_eq!(r.stats().forwarded, 0);
        // A frame for another MAC is not ours either.
        let mut other = from_a("10.0.2.2", b"other");
        other[..6].copy_from_slice(&HB.0);
        rx(&mut r, t(2), 0, &[other]);
        assert_eq!(r.stack(0).stats().drops(DropReason::NotForUs), 2);
    }

    #[test]
    fn malformed_martian_and_bad_checksums_are_dropped_and_counted() {
        let mut r = router();
        resolve_b(&mut r);
        let good = from_a("10.0.2.2", b"payload");
        let mut bad_csum = good.clone();
        bad_csum[14 + 10] ^= 0xff;
        let mut truncated = good.clone();
        truncated[14 + 2..14 + 4].copy_from_slice(&2000u16.to_be_bytes());
        let fix = |f: &mut Vec<u8>| {
            f[24..26].copy_from_slice(&[0, 0]);
            let c = checksum::checksum(&f[14..34]);
            f[24..26].copy_from_slice(&c.to_be_bytes());
        };
        fix(&mut truncated);
        let mut v6 = good.clone();
        v6[14] = 0x65;
        let mut martian_src = good.clone();
        martian_src[26..30].copy_from_slice(&[127, 0, 0, 1]);
        fix(&mut martian_src);
        let mut martian_dst = good.clone();
        martian_dst[30..34].copy_from_slice(&[0, 1, 2, 3]);
        fix(&mut martian_dst);
        let got = rx(&mut r, t(1), 0, &[bad_csum, truncated, v6, martian_src, martian_dst, good]);
        assert!(got[..5].iter().all(|(_, a)| *a == Action::Free));
        assert!(matches!(got[5].1, Action::Send { port: 1, .. }));
        let s = r.stats();
        assert_eq!(
            [
                s.drops(FwdDrop::BadChecksum),
                s.drops(FwdDrop::Truncated),
                s.drops(FwdDrop::Malformed),
                s.drops(FwdDrop::BadSource),
                s.drops(FwdDrop::BadDestination)
            ],
            [1; 5]
        );
        assert!(tx(&mut r, t(1), 0).is_empty(), "no ICMP about malformed packets");
    }

    /// A datagram from A to B with options `opts` (a multiple of 4 bytes) and DF as given.
    fn with_options(opts: &[u8], payload: &[u8], df: bool) -> Vec<u8> {
        let plain = from_a("10.0.2.2", payload);
        let mut f = plain[..34].to_vec();
        f.extend_from_slice(opts);
        f.extend_from_slice(&plain[34..]);
        let hl = 20 + opts.len();
        f[14] = 0x40 | (hl / 4) as u8;
        let total = (f.len() - 14) as u16;
        f[16..18].copy_from_slice(&total.to_be_bytes());
        f[20..22].copy_from_slice(if df { &[0x40, 0] } else { &[0, 0] });
        f[24..26].copy_from_slice(&[0, 0]);
        let c = checksum::checksum(&f[14..14 + hl]);
        f[24..26].copy_from_slice(&c.to_be_bytes());
        f
    }

    #[test]
    fn options_source_routes_are_dropped_record_route_is_filled() {
        let mut r = router();
        resolve_b(&mut r);
        // LSRR, then a record route with room for two addresses (and a NOP to pad).
        let lsrr = with_options(&[131, 7, 4, 1, 2, 3, 4, 0], b"lsrr", false);
        let rr = with_options(&[1, 7, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0], b"rr", false);
        let bad = with_options(&[68, 40, 5, 0], b"bad", false);
        let got = rx(&mut r, t(1), 0, &[lsrr, rr, bad]);
        assert_eq!(got[0].1, Action::Free);
        assert_eq!(r.stats().drops(FwdDrop::SourceRoute), 1);
        assert_eq!(r.stats().drops(FwdDrop::Malformed), 1);
        let out = sent(&got[1].0, &got[1].1, 1);
        let p = Ipv4Packet::new_checked(&out[14..]).unwrap();
        assert!(p.verify_checksum());
        assert_eq!(p.options(), &[1, 7, 11, 8, 10, 0, 2, 1, 0, 0, 0, 0], "egress address recorded");
        assert_eq!((p.ttl(), r.stats().with_options), (63, 1));
    }

    #[test]
    fn too_big_with_df_answers_frag_needed_without_df_leaves_in_fragments() {
        let mut r = router_with(576);
        resolve_b(&mut r);
        let payload: Vec<u8> = (0..1200u32).map(|i| i as u8).collect();
        let mut df = from_a("10.0.2.2", &payload);
        df[20] = 0x40;
        df[24..26].copy_from_slice(&[0, 0]);
        let c = checksum::checksum(&df[14..34]);
        df[24..26].copy_from_slice(&c.to_be_bytes());
        let plain = from_a("10.0.2.2", &payload);
        // With a copied option (security-like type 130) and a non-copied one (RR).
        let opts = with_options(&[130, 4, 0, 0, 7, 7, 4, 0, 0, 0, 0, 1], &payload, false);
        let got = rx(&mut r, t(1), 0, &[df, plain.clone(), opts.clone()]);
        assert!(got.iter().all(|(_, a)| *a == Action::Free));
        assert_eq!(r.stats().drops(FwdDrop::FragNeeded), 1);
        let err = tx(&mut r, t(1), 0);
        assert_eq!(err.len(), 1);
        let icmp = Icmpv4Packet::new_checked(&err[0][34..]).unwrap();
        assert_eq!((icmp.msg_type(), icmp.msg_code()), (Icmpv4Message::DstUnreachable, 4));
        assert_eq!(&err[0][34 + 6..34 + 8], &576u16.to_be_bytes(), "next-hop MTU");
        assert_eq!(r.stats().fragmented, 2);
        let frags = tx(&mut r, t(1), 1);
        // 1208 bytes of UDP in 552-byte pieces: 3 fragments each.
        assert_eq!(frags.len(), 6);
        for (k, original) in [(0, &plain), (1, &opts)] {
            let hl = usize::from(original[14] & 0xf) * 4;
            let mut joined = Vec::new();
            for (i, f) in frags[k * 3..k * 3 + 3].iter().enumerate() {
                assert!(f.len() - 14 <= 576);
                assert_eq!(&f[..6], &HB.0[..]);
                let p = Ipv4Packet::new_checked(&f[14..]).unwrap();
                assert!(p.verify_checksum() && p.ttl() == 63 && p.ident() == 1);
                assert_eq!((p.frag_offset() as usize, p.more_frags()), (joined.len(), i < 2));
                if i > 0 && k == 1 {
                    assert_eq!(p.options(), &[130, 4, 0, 0], "only copied options repeat");
                }
                joined.extend_from_slice(p.payload());
            }
            assert_eq!(&joined[..], &original[14 + hl..], "fragments cover the datagram");
        }
        assert_eq!(r.stats().fragments_sent, 6);
    }

    #[test]
    fn the_pending_queue_is_bounded_and_fragments_park_too() {
        let mut r = router_with(576);
        let batch: Vec<Vec<u8>> = (0..20).map(|i| from_a("10.0.2.2", &[i; 64])).collect();
        rx(&mut r, t(1), 0, &batch);
        assert_eq!(r.stats().arp_queued, 16, "pending_per_neighbor");
        assert_eq!(r.stats().drops(FwdDrop::ArpPendingFull), 4);
        let reply = frames::arp_reply(HB, ip("10.0.2.2"), R1, ip("10.0.2.1"));
        rx(&mut r, t(2), 1, &[reply]);
        let mut out = Vec::new();
        for _ in 0..3 {
            out.extend(tx(&mut r, t(2), 1));
        }
        let udp = out.iter().filter(|f| matches!(frames::classify(f), Kind::Udp { .. }));
        assert_eq!(udp.count(), 16, "released in order once resolved");
        // A big datagram while resolving another next hop: parked as fragments.
        let mut r = router_with(576);
        rx(&mut r, t(1), 0, &[from_a("10.0.2.2", &[7u8; 1000])]);
        rx(&mut r, t(2), 1, &[frames::arp_reply(HB, ip("10.0.2.2"), R1, ip("10.0.2.1"))]);
        let out: Vec<_> = tx(&mut r, t(2), 1)
            .into_iter()
            .filter(|f| matches!(frames::classify(f), Kind::Fragment { .. }))
            .collect();
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|f| Ipv4Packet::new_checked(&f[14..]).unwrap().verify_checksum()));
    }

    #[test]
    fn a_new_table_moves_traffic_between_batches() {
        let mut r = router();
        resolve_b(&mut r);
        r.stack_mut(0).add_static_neighbor(ip("10.0.1.2"), HA);
        let got = rx(&mut r, t(1), 0, &[from_a("192.0.2.5", b"x")]);
        assert!(matches!(got[0].1, Action::Send { port: 1, .. }));
        let c = [
            StackConfig::new(R0, &[cidr("10.0.1.1/24")]),
            StackConfig::new(R1, &[cidr("10.0.2.1/24")]),
        ];
        let mut b = interface_routes(&c);
        b.insert(cidr("192.0.2.0/24"), NextHop::Forward { iface: 0, via: Some(ip("10.0.1.2")) });
        let old = r.set_fib(Arc::new(b.build()));
        assert_eq!(old.routes(), 8);
        let got = rx(&mut r, t(2), 0, &[from_a("192.0.2.5", b"x")]);
        assert_eq!(&sent(&got[0].0, &got[0].1, 0)[..6], &HA.0[..], "hairpinned back to A");
        assert!(r.fib().lookup(ip("192.0.2.5")).is_some());
    }

    #[test]
    fn interface_routes_cover_addresses_prefixes_and_broadcasts() {
        let c = [
            StackConfig::new(R0, &[cidr("10.0.1.1/24")]),
            StackConfig::new(R1, &[cidr("10.0.2.1/31")]),
        ];
        let f = interface_routes(&c).build();
        assert_eq!(f.lookup(ip("10.0.1.1")), Some(&NextHop::Local));
        assert_eq!(f.lookup(ip("10.0.1.255")), Some(&NextHop::Local));
        assert_eq!(f.lookup(ip("10.0.1.9")), Some(&NextHop::Forward { iface: 0, via: None }));
        assert_eq!(f.lookup(ip("10.0.2.0")), Some(&NextHop::Forward { iface: 1, via: None }));
        assert_eq!(f.lookup(ip("10.0.2.1")), Some(&NextHop::Local));
        assert!(f.lookup(ip("10.0.3.1")).is_none());
        let mut vlan = c[0].clone();
        vlan.vlan = Some(5);
        let e = Router::new(RouterConfig::new(vec![vlan]), Arc::new(f), t(0)).unwrap_err();
        assert_eq!(e, RouterConfigError::Vlan(0));
        assert!(e.to_string().contains("untagged"));
        let e = Router::new(RouterConfig::new(vec![]), Arc::new(Fib::empty()), t(0)).unwrap_err();
        assert_eq!(e, RouterConfigError::InterfaceCount(0));
    }

    #[test]
    fn fragments_in_transit_are_forwarded_untouched_but_for_the_ttl() {
        let mut r = router();
        resolve_b(&mut r);
        let body = vec![9u8; 3000];
        let frags = frames::ipv4_fragments(
            HA,
            R0,
            ip("10.0.1.2"),
            ip("10.0.2.2"),
            IpProtocol::Udp,
            77,
            &body,
            1500,
        );
        let got = rx(&mut r, t(1), 0, &frags);
        for ((f, a), original) in got.iter().zip(&frags) {
            let out = sent(f, a, 1);
            assert!(out[14 + 12..] == original[14 + 12..], "addresses and payload untouched");
            assert_eq!(frames::classify(&out), frames::classify(original));
        }
        assert_eq!(r.stats().forwarded, 3);
        assert_eq!(r.stats().drops(FwdDrop::Malformed), 0);
    }
}
