//! # AF_XDP sockets as [`Port`]s
//!
//! What it is: a socket bound to one queue of one interface, with its four rings, implementing
//! the batched [`Port`] trait; either alone with a UMEM of its own ([`XskPort`]), or as one of
//! several sockets of one worker sharing a UMEM ([`XskGroup`], `XDP_SHARED_UMEM`), so a frame
//! received on one interface can be sent from the same memory on another. Both are `Send` and
//! meant to be owned by exactly one worker thread.
//!
//! What it owns: the sockets, the UMEM ([`Umem`]), the rings. A socket's slot in its XDP
//! program's XSKMAP is filled by `open` and emptied by the kernel when the socket closes.
//!
//! Frame life cycle (every frame in exactly one place, see [`FrameCounts`]):
//! free list → fill ring → (kernel copies a packet in) → RX ring → held by the user →
//! TX ring → (kernel sends) → completion ring → free list; or held → free list.
//!
//! Batching: `rx_burst` tops up the fill ring from the free list (one submit), then takes up to
//! `burst` descriptors from the RX ring (one release). `tx_burst` reclaims completions, writes
//! the whole burst to the TX ring (one submit) and kicks once, only if the kernel asked for it
//! (`XDP_USE_NEED_WAKEUP`; in copy mode it always asks, and the kick transmits synchronously).
//!
//! References: `Documentation/networking/af_xdp.rst`; `include/uapi/linux/if_xdp.h`.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use libbpf_rs::{MapCore, MapFlags};

use super::ring::{ConsRing, ProdRing};
use super::sys;
use super::umem::Umem;
use super::xdp_prog::XdpProgram;
use crate::idle::IdleWait;
use crate::offload;
use crate::virtq::{Burst, Desc};
use crate::{Caps, FrameCounts, NicError, Port, PortStats, DEFAULT_BURST, MAX_BURST};
use libos::wire::{Csum, NetHdr};

/// Space left in front of the data of a frame taken with `alloc_burst`, like the kernel's
/// `XDP_PACKET_HEADROOM` in front of received data: room to prepend headers in place.
pub const TX_HEADROOM: u32 = 256;

/// How to bind: zero-copy when the driver supports it, or copy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BindMode {
    /// Zero-copy if the driver supports it, otherwise copy (the kernel's own fallback).
    #[default]
    Auto,
    /// Copy mode (`XDP_COPY`).
    Copy,
    /// Zero-copy or fail (`XDP_ZEROCOPY`).
    ZeroCopy,
}

/// Default [`XskConfig::fill`].
pub const DEFAULT_FILL: u32 = 512;

/// Settings of one AF_XDP socket.
#[derive(Debug, Clone)]
pub struct XskConfig {
    /// Interface name (in the calling thread's network namespace).
    pub ifname: String,
    /// Queue index.
    pub queue: u32,
    /// Bytes per UMEM frame: 2048 or 4096.
    pub frame_size: u32,
    /// Frames in the UMEM (at least `ring_size + burst`).
    pub frames: u32,
    /// Entries of each of the four rings (a power of two).
    pub ring_size: u32,
    /// Frames kept posted on the fill ring, at most (and at least a burst; never more than
    /// `ring_size` or the socket's share of the UMEM). The kernel copies each received frame
    /// into the oldest posted frame, so this is how far apart two uses of one frame are: 512
    /// frames touch ~0.75 MB, which stays in a core's L2, where 2048 (the ring) spilled to L3
    /// and cost a kernel sender into xdpos up to 15% of its goodput (docs/tcp.md).
    pub fill: u32,
    /// Descriptors per `rx_burst`.
    pub burst: usize,
    /// Zero-copy or copy.
    pub bind: BindMode,
    /// Bind with `XDP_USE_NEED_WAKEUP` (kick only when the kernel asks).
    pub need_wakeup: bool,
}

impl Default for XskConfig {
    fn default() -> Self {
        XskConfig {
            ifname: String::new(),
            queue: 0,
            frame_size: 4096,
            frames: 4096,
            ring_size: 2048,
            fill: DEFAULT_FILL,
            burst: DEFAULT_BURST,
            bind: BindMode::Auto,
            need_wakeup: true,
        }
    }
}

impl XskConfig {
    /// Default settings for `ifname` queue `queue`.
    pub fn new(ifname: &str, queue: u32) -> Self {
        XskConfig { ifname: ifname.to_string(), queue, ..Default::default() }
    }

    fn validate(&self) -> Result<(), NicError> {
        let bad = |what, value: u64, why| Err(NicError::Invalid { what, value, why });
        if self.frame_size != 2048 && self.frame_size != 4096 {
            return bad("frame_size", self.frame_size.into(), "must be 2048 or 4096");
        }
        if !self.ring_size.is_power_of_two() || !(64..=32768).contains(&self.ring_size) {
            return bad("ring_size", self.ring_size.into(), "must be a power of two in 64..=32768");
        }
        if self.burst == 0 || self.burst > MAX_BURST {
            return bad("burst", self.burst as u64, "must be in 1..=256");
        }
        if self.fill == 0 {
            return bad("fill", 0, "must be at least 1");
        }
        let min = self.ring_size as u64 + self.burst as u64;
        if (self.frames as u64) < min || self.frames > 1 << 20 {
            return bad(
                "frames",
                self.frames.into(),
                "must be at least ring_size + burst and at most 2^20",
            );
        }
        Ok(())
    }
}

/// The kernel's per-socket counters (`XDP_STATISTICS`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct XdpStatistics {
    /// Dropped for reasons other than invalid descriptors (e.g. no frame on the fill ring).
    pub rx_dropped: u64,
    /// Invalid descriptors on the RX side.
    pub rx_invalid_descs: u64,
    /// Invalid descriptors on the TX ring.
    pub tx_invalid_descs: u64,
    /// Packets dropped because the RX ring was full.
    pub rx_ring_full: u64,
    /// Times the fill ring was empty when a packet arrived.
    pub rx_fill_ring_empty_descs: u64,
    /// Times the TX ring was empty when the kernel looked.
    pub tx_ring_empty_descs: u64,
}

/// One socket: its descriptor, its four rings, who it is and its counters. The UMEM it uses
/// lives beside it, in the [`XskPort`] or [`XskGroup`] that owns both.
#[derive(Debug)]
struct Socket {
    fill: ProdRing<u64>,
    comp: ConsRing<u64>,
    rx: ConsRing<libc::xdp_desc>,
    tx: ProdRing<libc::xdp_desc>,
    fd: OwnedFd,
    burst: u32,
    /// Frames this socket keeps on its fill ring at most (its share of the UMEM).
    fill_target: u32,
    ring_size: u32,
    need_wakeup: bool,
    zero_copy: bool,
    ifname: String,
    queue: u32,
    stats: PortStats,
}

impl Socket {
    /// Creates and binds a socket. The first socket of a UMEM registers it (`shared_with`
    /// `None`); later ones share the first one's (`XDP_SHARED_UMEM`, each with its own fill and
    /// completion rings, which the kernel requires when the interface or queue differs).
    fn bind(
        cfg: &XskConfig,
        umem: &Umem,
        shared_with: Option<BorrowedFd<'_>>,
    ) -> Result<Socket, NicError> {
        cfg.validate()?;
        let what = format!("{} queue {}", cfg.ifname, cfg.queue);
        let ifindex = sys::ifindex(&cfg.ifname)
            .ok_or_else(|| NicError::NoSuchInterface(cfg.ifname.clone()))?;
        if let Some(queues) = sys::rx_queues(&cfg.ifname) {
            if cfg.queue >= queues {
                return Err(NicError::NoSuchQueue {
                    ifname: cfg.ifname.clone(),
                    queue: cfg.queue,
                    queues,
                });
            }
        }
        let err = |call| {
            let what = what.clone();
            move |e| NicError::sys(call, what, e)
        };

        let fd = sys::xsk_socket().map_err(err("socket(AF_XDP)"))?;
        if shared_with.is_none() {
            let reg = umem.registration();
            sys::set_xdp_opt(fd.as_fd(), libc::XDP_UMEM_REG, &reg, "setsockopt(XDP_UMEM_REG)")
                .map_err(err("setsockopt(XDP_UMEM_REG)"))?;
        }
        for (opt, call) in [
            (libc::XDP_UMEM_FILL_RING, "setsockopt(XDP_UMEM_FILL_RING)"),
            (libc::XDP_UMEM_COMPLETION_RING, "setsockopt(XDP_UMEM_COMPLETION_RING)"),
            (libc::XDP_RX_RING, "setsockopt(XDP_RX_RING)"),
            (libc::XDP_TX_RING, "setsockopt(XDP_TX_RING)"),
        ] {
            sys::set_xdp_opt(fd.as_fd(), opt, &cfg.ring_size, call).map_err(err(call))?;
        }
        let (off, len): (libc::xdp_mmap_offsets, usize) =
            sys::get_xdp_opt(fd.as_fd(), libc::XDP_MMAP_OFFSETS, "getsockopt(XDP_MMAP_OFFSETS)")
                .map_err(err("getsockopt(XDP_MMAP_OFFSETS)"))?;
        if len < core::mem::size_of::<libc::xdp_mmap_offsets>() {
            return Err(NicError::sys(
                "getsockopt(XDP_MMAP_OFFSETS)",
                what,
                std::io::Error::other("kernel too old: no ring flags (need Linux 5.4+)"),
            ));
        }
        let n = cfg.ring_size;
        let fill = ProdRing::new(fd.as_fd(), &off.fr, n, libc::XDP_UMEM_PGOFF_FILL_RING)
            .map_err(err("mmap(fill ring)"))?;
        let comp = ConsRing::new(fd.as_fd(), &off.cr, n, libc::XDP_UMEM_PGOFF_COMPLETION_RING)
            .map_err(err("mmap(completion ring)"))?;
        let rx = ConsRing::new(fd.as_fd(), &off.rx, n, libc::XDP_PGOFF_RX_RING as u64)
            .map_err(err("mmap(rx ring)"))?;
        let tx = ProdRing::new(fd.as_fd(), &off.tx, n, libc::XDP_PGOFF_TX_RING as u64)
            .map_err(err("mmap(tx ring)"))?;

        let (flags, shared_fd) = match shared_with {
            // A sharing socket inherits copy/zero-copy and need_wakeup from the UMEM's first
            // socket; the kernel refuses those flags beside XDP_SHARED_UMEM.
            Some(first) => (libc::XDP_SHARED_UMEM, first.as_raw_fd() as u32),
            None => {
                let mut flags = match cfg.bind {
                    BindMode::Auto => 0,
                    BindMode::Copy => libc::XDP_COPY,
                    BindMode::ZeroCopy => libc::XDP_ZEROCOPY,
                };
                if cfg.need_wakeup {
                    flags |= libc::XDP_USE_NEED_WAKEUP;
                }
                (flags, 0)
            }
        };
        let addr = libc::sockaddr_xdp {
            sxdp_family: libc::AF_XDP as u16,
            sxdp_flags: flags,
            sxdp_ifindex: ifindex,
            sxdp_queue_id: cfg.queue,
            sxdp_shared_umem_fd: shared_fd,
        };
        sys::bind(fd.as_fd(), &addr).map_err(err("bind"))?;
        let (opts, _): (libc::xdp_options, usize) =
            sys::get_xdp_opt(fd.as_fd(), libc::XDP_OPTIONS, "getsockopt(XDP_OPTIONS)")
                .map_err(err("getsockopt(XDP_OPTIONS)"))?;
        let zero_copy = opts.flags & libc::XDP_OPTIONS_ZEROCOPY != 0;
        if !zero_copy {
            // Copy mode transmits at most 32 descriptors per kick unless told otherwise
            // (Linux 6.17+); let one kick take a whole burst. Older kernels refuse: fine.
            let budget = (cfg.burst as u32).clamp(32, n);
            let _ = sys::set_xdp_opt(fd.as_fd(), sys::XDP_MAX_TX_SKB_BUDGET, &budget, "");
        }
        tracing::debug!(
            ifname = %cfg.ifname, queue = cfg.queue, zero_copy, shared = shared_with.is_some(),
            frames = cfg.frames, frame_size = cfg.frame_size, ring = n, "af_xdp socket bound"
        );
        Ok(Socket {
            fill,
            comp,
            rx,
            tx,
            fd,
            burst: cfg.burst as u32,
            fill_target: n.min(cfg.fill.max(cfg.burst as u32)),
            ring_size: n,
            need_wakeup: shared_with.is_none() && cfg.need_wakeup,
            zero_copy,
            ifname: cfg.ifname.clone(),
            queue: cfg.queue,
            stats: PortStats::default(),
        })
    }

    fn what(&self) -> String {
        format!("{} queue {}", self.ifname, self.queue)
    }

    fn xdp_statistics(&self) -> Result<XdpStatistics, NicError> {
        read_xdp_statistics(self.fd.as_fd(), &self.what())
    }

    fn stats_reader(&self) -> Result<XskStatsReader, NicError> {
        let fd =
            self.fd.try_clone().map_err(|e| NicError::sys("dup(AF_XDP socket)", self.what(), e))?;
        Ok(XskStatsReader { fd, what: self.what() })
    }
}

fn read_xdp_statistics(fd: BorrowedFd<'_>, what: &str) -> Result<XdpStatistics, NicError> {
    let (s, _): (libc::xdp_statistics, usize) =
        sys::get_xdp_opt(fd, libc::XDP_STATISTICS, "getsockopt(XDP_STATISTICS)")
            .map_err(|e| NicError::sys("getsockopt(XDP_STATISTICS)", what.to_string(), e))?;
    Ok(XdpStatistics {
        rx_dropped: s.rx_dropped,
        rx_invalid_descs: s.rx_invalid_descs,
        tx_invalid_descs: s.tx_invalid_descs,
        rx_ring_full: s.rx_ring_full,
        rx_fill_ring_empty_descs: s.rx_fill_ring_empty_descs,
        tx_ring_empty_descs: s.tx_ring_empty_descs,
    })
}

/// Reads one socket's `XDP_STATISTICS` from any thread (a metrics collector at scrape time)
/// through a duplicate of its descriptor: the worker that owns the socket is not involved. The
/// kernel keeps the socket open as long as either descriptor is, so the counters stay readable
/// (frozen) after the port is dropped.
#[derive(Debug)]
pub struct XskStatsReader {
    fd: OwnedFd,
    what: String,
}

impl XskStatsReader {
    /// The kernel's counters now.
    pub fn read(&self) -> Result<XdpStatistics, NicError> {
        read_xdp_statistics(self.fd.as_fd(), &self.what)
    }
}

/// One AF_XDP socket bound to one queue, with a UMEM of its own (see the module
/// documentation). A group of one: [`XskGroup`] is the same with several sockets sharing a UMEM.
#[derive(Debug)]
pub struct XskPort {
    group: XskGroup,
}

impl XskPort {
    /// Creates the socket and its UMEM, binds it to `cfg.ifname` queue `cfg.queue`, puts it in
    /// `prog`'s XSKMAP slot for that queue and fills the fill ring.
    pub fn open(cfg: &XskConfig, prog: &XdpProgram) -> Result<XskPort, NicError> {
        Ok(XskPort { group: XskGroup::open(&[(cfg.clone(), prog)])? })
    }

    /// Like [`XskPort::open`] without registering in an XDP program (the socket receives
    /// nothing until someone puts it in an XSKMAP; transmit works).
    pub fn bind(cfg: &XskConfig) -> Result<XskPort, NicError> {
        Ok(XskPort { group: XskGroup::bind(std::slice::from_ref(cfg))? })
    }

    fn sock(&self) -> &Socket {
        &self.group.socks[0]
    }

    /// Whether the socket is bound in zero-copy mode.
    pub fn zero_copy(&self) -> bool {
        self.sock().zero_copy
    }

    /// Interface name.
    pub fn ifname(&self) -> &str {
        &self.sock().ifname
    }

    /// Queue index.
    pub fn queue(&self) -> u32 {
        self.sock().queue
    }

    /// The socket (for `poll`/`mio` registration).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.sock().fd.as_fd()
    }

    /// Waits up to `timeout_ms` for received frames (sleeping in the kernel instead of
    /// spinning). Returns whether the RX ring has frames.
    pub fn wait_rx(&mut self, timeout_ms: i32) -> Result<bool, NicError> {
        self.group.wait_rx(timeout_ms)
    }

    /// Whether the RX ring has frames (a look at the ring, no system call).
    pub fn rx_ready(&mut self) -> bool {
        self.group.rx_ready()
    }

    /// The kernel's counters for this socket (`XDP_STATISTICS`).
    pub fn xdp_statistics(&self) -> Result<XdpStatistics, NicError> {
        self.sock().xdp_statistics()
    }

    /// A deeper frame-accounting check than [`FrameCounts::check`]: besides the sum, no frame
    /// may appear twice among the free list and the four rings, nor be there while held.
    pub fn audit(&self) -> Result<FrameCounts, NicError> {
        self.group.audit()
    }

    /// A reader of this socket's `XDP_STATISTICS` for another thread.
    pub fn stats_reader(&self) -> Result<XskStatsReader, NicError> {
        self.sock().stats_reader()
    }
}

/// Several AF_XDP sockets (one per interface queue) sharing one UMEM (`XDP_SHARED_UMEM`), so a
/// frame received on one can be sent from the same memory on another: the forwarding worker's
/// zero-copy path between ports. Each socket has its own fill and completion rings and takes
/// an equal share of the UMEM on its fill ring; the free list is common.
///
/// [`XskGroup::port`] gives the [`Port`] view of socket `i`; frames it hands out may go back
/// through any socket of the group.
#[derive(Debug)]
pub struct XskGroup {
    // Sockets before the UMEM: their rings are unmapped and descriptors closed first.
    socks: Vec<Socket>,
    umem: Umem,
    /// The epoll instance of the idle sleep (made at the first sleep; see `crate::idle`).
    idle: Option<IdleWait>,
}

impl XskGroup {
    /// Binds one socket per configuration, all on one UMEM sized by the first configuration
    /// (`frame_size`, `frames`; the others must agree), and registers each in its program's
    /// XSKMAP. The (interface, queue) pairs must differ.
    pub fn open(members: &[(XskConfig, &XdpProgram)]) -> Result<XskGroup, NicError> {
        let cfgs: Vec<XskConfig> = members.iter().map(|(c, _)| c.clone()).collect();
        let group = Self::bind(&cfgs)?;
        for (s, (_, prog)) in group.socks.iter().zip(members) {
            prog.register(s.queue, s.fd.as_fd())?;
        }
        Ok(group)
    }

    /// [`XskGroup::open`] without registering in XDP programs.
    pub fn bind(cfgs: &[XskConfig]) -> Result<XskGroup, NicError> {
        let Some(first) = cfgs.first() else {
            return Err(NicError::Invalid {
                what: "sockets in a group",
                value: 0,
                why: "need at least one",
            });
        };
        if cfgs.len() > sys::MAX_GROUP {
            return Err(NicError::Invalid {
                what: "sockets in a group",
                value: cfgs.len() as u64,
                why: "at most 64",
            });
        }
        first.validate()?;
        for (i, c) in cfgs.iter().enumerate() {
            if c.frame_size != first.frame_size || c.frames != first.frames {
                return Err(NicError::Invalid {
                    what: "frame_size/frames of a shared UMEM",
                    value: i as u64,
                    why: "every socket of a group must use the first one's frame_size and frames",
                });
            }
            if cfgs[..i].iter().any(|o| o.ifname == c.ifname && o.queue == c.queue) {
                return Err(NicError::Invalid {
                    what: "socket of a group",
                    value: u64::from(c.queue),
                    why: "each interface queue may appear once in a group",
                });
            }
        }
        let umem = Umem::new(first.frames, first.frame_size).map_err(|e| {
            NicError::sys("mmap(umem)", format!("{} queue {}", first.ifname, first.queue), e)
        })?;
        let mut socks: Vec<Socket> = Vec::with_capacity(cfgs.len());
        for c in cfgs {
            let s = Socket::bind(c, &umem, socks.first().map(|f| f.fd.as_fd()))?;
            socks.push(s);
        }
        // Half the UMEM waits on the fill rings, shared equally; the rest is for frames in
        // flight and for transmit.
        let share = (first.frames / 2 / cfgs.len() as u32).max(1);
        for s in &mut socks {
            s.fill_target = s.fill_target.min(share);
        }
        let mut group = XskGroup { socks, umem, idle: None };
        for i in 0..group.socks.len() {
            group.port(i).refill();
        }
        Ok(group)
    }

    /// Sockets in the group.
    pub fn len(&self) -> usize {
        self.socks.len()
    }

    /// Whether the group has no socket (never true for a bound group).
    pub fn is_empty(&self) -> bool {
        self.socks.is_empty()
    }

    /// The [`Port`] of socket `i` (panics if `i >= len()`, a programming error).
    #[inline]
    pub fn port(&mut self, i: usize) -> GroupPort<'_> {
        assert!(
            i < self.socks.len(),
            "af_xdp: group has {} sockets, not {}",
            self.socks.len(),
            i + 1
        );
        GroupPort { umem: &mut self.umem, socks: &mut self.socks, i }
    }

    /// Interface and queue of socket `i`.
    pub fn member(&self, i: usize) -> Option<(&str, u32)> {
        self.socks.get(i).map(|s| (s.ifname.as_str(), s.queue))
    }

    /// The kernel's counters of socket `i`.
    pub fn xdp_statistics(&self, i: usize) -> Result<XdpStatistics, NicError> {
        match self.socks.get(i) {
            Some(s) => s.xdp_statistics(),
            None => Err(NicError::Invalid {
                what: "socket index",
                value: i as u64,
                why: "out of range",
            }),
        }
    }

    /// A reader of socket `i`'s `XDP_STATISTICS` for another thread.
    pub fn stats_reader(&self, i: usize) -> Result<XskStatsReader, NicError> {
        match self.socks.get(i) {
            Some(s) => s.stats_reader(),
            None => Err(NicError::Invalid {
                what: "socket index",
                value: i as u64,
                why: "out of range",
            }),
        }
    }

    /// Whether any socket of the group has frames on its RX ring (no system call).
    pub fn rx_ready(&mut self) -> bool {
        self.socks.iter_mut().any(|s| s.rx.peek(1) > 0)
    }

    /// Waits up to `timeout_ms` for any socket of the group to have received frames.
    pub fn wait_rx(&mut self, timeout_ms: i32) -> Result<bool, NicError> {
        if self.rx_ready() {
            return Ok(true);
        }
        let idle = match &mut self.idle {
            Some(w) => w,
            None => self.idle.insert(
                IdleWait::new()
                    .map_err(|e| NicError::sys("epoll_create", self.socks[0].what(), e))?,
            ),
        };
        idle.wait_ms(self.socks.iter().map(|s| s.fd.as_fd()), timeout_ms)
            .map_err(|e| NicError::sys("epoll_wait", self.socks[0].what(), e))
    }

    /// The bytes of a held frame, whichever socket it came from (the UMEM is shared): what
    /// [`Port::frame`] of any member gives, without borrowing the group mutably.
    #[inline]
    pub fn frame(&self, desc: &Desc) -> &[u8] {
        self.umem.bytes(desc.addr, desc.len as usize)
    }

    /// Socket `i`'s counters (panics if `i >= len()`, a programming error).
    pub fn stats(&self, i: usize) -> PortStats {
        self.socks[i].stats
    }

    /// Socket `i`'s offload capabilities (panics if `i >= len()`).
    pub fn caps(&self, i: usize) -> Caps {
        caps(&self.umem, &self.socks[i])
    }

    /// Frame accounting of the whole UMEM, over every socket's rings.
    pub fn frame_counts(&self) -> FrameCounts {
        frame_counts(&self.umem, &self.socks)
    }

    /// A deeper frame-accounting check than [`FrameCounts::check`]: besides the sum, no frame
    /// may appear twice among the free list and every socket's four rings, nor be there while
    /// held.
    pub fn audit(&self) -> Result<FrameCounts, NicError> {
        let counts = self.frame_counts();
        counts.check()?;
        let frames = self.umem.frames() as usize;
        let mut seen = vec![false; frames];
        let mut dup = false;
        let mut mark = |addr: u64| {
            let c = (self.umem.chunk_base(addr) / u64::from(self.umem.frame_size())) as usize;
            if c >= frames || seen[c] || self.umem.is_held(addr) {
                dup = true;
            } else {
                seen[c] = true;
            }
        };
        self.umem.free_list().iter().for_each(|&a| mark(a));
        for s in &self.socks {
            s.fill.for_each_pending(&mut mark);
            s.comp.for_each_pending(&mut mark);
            s.rx.for_each_pending(|d| mark(d.addr));
            s.tx.for_each_pending(|d| mark(d.addr));
        }
        if dup {
            return Err(NicError::Accounting(counts));
        }
        Ok(counts)
    }
}

/// The [`Port`] view of one socket of an [`XskGroup`] (and of an [`XskPort`]): receive and
/// transmit use this socket's rings; frames, the free list and the accounting are the group's.
#[derive(Debug)]
pub struct GroupPort<'a> {
    umem: &'a mut Umem,
    socks: &'a mut [Socket],
    i: usize,
}

impl GroupPort<'_> {
    #[inline]
    fn s(&mut self) -> &mut Socket {
        &mut self.socks[self.i]
    }

    /// Moves free frames onto this socket's fill ring, up to its share (one submit), waking
    /// the kernel if it asks.
    fn refill(&mut self) {
        let free = self.umem.free_count();
        let s = &mut self.socks[self.i];
        // Room on the fill ring within this socket's share of the UMEM. The share leaves
        // `reserve` slots of the ring unused, so ask the ring for a fresh view of the kernel's
        // consumer index whenever fewer than a burst beyond them look free (asking for only a
        // burst kept a stale view forever once the share was posted: the socket of a group
        // stopped receiving after its first `fill_target` frames).
        let reserve = s.ring_size - s.fill_target;
        let room = s.fill.free(s.burst + reserve).saturating_sub(reserve);
        if free == 0 {
            if room >= s.burst {
                s.stats.fill_starved += 1;
            }
            return;
        }
        let n = room.min(free);
        for i in 0..n {
            // `n <= free_count`, so the pop succeeds.
            if let Some(addr) = self.umem.pop_free() {
                s.fill.write(i, addr);
            }
        }
        s.fill.submit(n);
        if n > 0 && s.need_wakeup && s.fill.needs_wakeup() {
            sys::kick_rx(s.fd.as_fd());
            s.stats.kicks += 1;
        }
    }

    /// Kicks the kernel to transmit if it asked for it (or always without need_wakeup).
    fn kick_tx(&mut self) {
        let s = self.s();
        if !s.need_wakeup || s.tx.needs_wakeup() {
            s.stats.kicks += 1;
            if sys::kick_tx(s.fd.as_fd()).is_err() {
                s.stats.kick_errors += 1;
            }
        }
    }
}

/// What an AF_XDP socket offers: no checksum or segmentation offload (the port completes
/// partial checksums in software), zero copy where the driver binds so.
fn caps(umem: &Umem, s: &Socket) -> Caps {
    Caps {
        rx_csum: false,
        tx_csum: false,
        tso: false,
        rx_gro: false,
        zero_copy: s.zero_copy,
        max_frame: (umem.frame_size() - TX_HEADROOM) as usize,
    }
}

/// Frame accounting of a UMEM over the rings of every socket that uses it. The kernel's
/// indices are read once each; under traffic the snapshot may be torn, after traffic it is
/// exact.
fn frame_counts(umem: &Umem, socks: &[Socket]) -> FrameCounts {
    let mut c = FrameCounts {
        total: umem.frames(),
        free: umem.free_count(),
        held: umem.held_count(),
        ..FrameCounts::default()
    };
    for s in socks {
        let fill_cons = s.fill.kernel_consumed();
        let rx_prod = s.rx.kernel_produced();
        let tx_cons = s.tx.kernel_consumed();
        let comp_prod = s.comp.kernel_produced();
        c.fill += s.fill.produced().wrapping_sub(fill_cons);
        c.rx += rx_prod.wrapping_sub(s.rx.consumed());
        c.tx += s.tx.produced().wrapping_sub(tx_cons);
        c.completion += comp_prod.wrapping_sub(s.comp.consumed());
        c.kernel = c
            .kernel
            .wrapping_add(fill_cons.wrapping_sub(rx_prod))
            .wrapping_add(tx_cons.wrapping_sub(comp_prod));
    }
    c
}

impl Port for GroupPort<'_> {
    fn caps(&self) -> Caps {
        caps(self.umem, &self.socks[self.i])
    }

    #[inline]
    fn rx_burst(&mut self, out: &mut Burst) -> usize {
        self.refill();
        let s = &mut self.socks[self.i];
        let want = s.burst.min(out.spare() as u32);
        let n = s.rx.peek(want);
        if n == 0 {
            return 0;
        }
        let mut bytes = 0u64;
        for i in 0..n {
            let d = s.rx.read(i);
            self.umem.hold(d.addr);
            bytes += u64::from(d.len);
            out.push(Desc { addr: d.addr, len: d.len, hdr: NetHdr::NONE });
        }
        s.rx.release(n);
        s.stats.rx_packets += u64::from(n);
        s.stats.rx_bytes += bytes;
        s.stats.rx_bursts += 1;
        n as usize
    }

    #[inline]
    fn tx_burst(&mut self, batch: &mut Burst) -> usize {
        if batch.is_empty() {
            return 0;
        }
        self.reclaim();
        let want = batch.len() as u32;
        let room = self.socks[self.i].tx.free(want).min(want);
        let mut written = 0u32;
        let mut bytes = 0u64;
        let mut taken = 0usize;
        for d in batch.iter().take(room as usize) {
            taken += 1;
            if !self.umem.is_held(d.addr) {
                self.socks[self.i].stats.invalid_descs += 1;
                continue;
            }
            if let Csum::Partial { .. } = d.hdr.csum {
                let mut hdr = d.hdr;
                let frame = self.umem.bytes_mut(d.addr, d.len as usize);
                if offload::csum::complete(frame, &mut hdr).is_err() {
                    self.socks[self.i].stats.invalid_descs += 1;
                    self.free(d);
                    continue;
                }
                self.socks[self.i].stats.tx_csum_sw += 1;
            }
            self.umem.release(d.addr);
            let s = &mut self.socks[self.i];
            s.tx.write(written, libc::xdp_desc { addr: d.addr, len: d.len, options: 0 });
            written += 1;
            bytes += u64::from(d.len);
        }
        let s = &mut self.socks[self.i];
        if written > 0 {
            s.tx.submit(written);
            s.stats.tx_packets += u64::from(written);
            s.stats.tx_bytes += bytes;
            s.stats.tx_bursts += 1;
        }
        if room < want {
            s.stats.tx_ring_full += 1;
        }
        batch.consume_front(taken);
        // Kick also when nothing new fit: the ring is full of frames waiting for a kick.
        self.kick_tx();
        written as usize
    }

    fn alloc_burst(&mut self, out: &mut Burst, n: usize) -> usize {
        let n = n.min(out.spare());
        let mut got = 0;
        while got < n {
            let Some(base) = self.umem.pop_free() else { break };
            let addr = base + u64::from(TX_HEADROOM);
            self.umem.hold(addr);
            out.push(Desc { addr, len: 0, hdr: NetHdr::NONE });
            got += 1;
        }
        got
    }

    fn free_burst(&mut self, batch: &mut Burst) {
        for i in 0..batch.len() {
            let d = batch.as_slice()[i];
            self.free(&d);
        }
        batch.clear();
    }

    #[inline]
    fn free(&mut self, desc: &Desc) {
        if self.umem.release(desc.addr) {
            self.umem.push_free(desc.addr);
        } else {
            self.socks[self.i].stats.invalid_descs += 1;
        }
    }

    #[inline]
    fn reclaim(&mut self) -> usize {
        let s = &mut self.socks[self.i];
        // Enough to keep up with a full TX ring.
        let n = s.comp.peek(s.burst * 4);
        for i in 0..n {
            let addr = s.comp.read(i);
            self.umem.push_free(addr);
        }
        if n > 0 {
            s.comp.release(n);
            s.stats.completions += u64::from(n);
        }
        n as usize
    }

    #[inline]
    fn frame(&self, desc: &Desc) -> &[u8] {
        self.umem.bytes(desc.addr, desc.len as usize)
    }

    #[inline]
    fn frame_mut(&mut self, desc: &Desc) -> &mut [u8] {
        self.umem.bytes_mut(desc.addr, desc.len as usize)
    }

    #[inline]
    fn room_mut(&mut self, desc: &Desc) -> &mut [u8] {
        let room = self.umem.room(desc.addr);
        self.umem.bytes_mut(desc.addr, room)
    }

    fn headroom(&self) -> usize {
        TX_HEADROOM as usize
    }

    /// The whole group's accounting (the UMEM is shared).
    fn frame_counts(&self) -> FrameCounts {
        frame_counts(self.umem, self.socks)
    }

    fn stats(&self) -> PortStats {
        self.socks[self.i].stats
    }
}

impl Port for XskPort {
    fn caps(&self) -> Caps {
        caps(&self.group.umem, self.sock())
    }
    #[inline]
    fn rx_burst(&mut self, out: &mut Burst) -> usize {
        self.group.port(0).rx_burst(out)
    }
    #[inline]
    fn tx_burst(&mut self, batch: &mut Burst) -> usize {
        self.group.port(0).tx_burst(batch)
    }
    fn alloc_burst(&mut self, out: &mut Burst, n: usize) -> usize {
        self.group.port(0).alloc_burst(out, n)
    }
    fn free_burst(&mut self, batch: &mut Burst) {
        self.group.port(0).free_burst(batch)
    }
    #[inline]
    fn free(&mut self, desc: &Desc) {
        self.group.port(0).free(desc)
    }
    #[inline]
    fn reclaim(&mut self) -> usize {
        self.group.port(0).reclaim()
    }
    #[inline]
    fn frame(&self, desc: &Desc) -> &[u8] {
        self.group.umem.bytes(desc.addr, desc.len as usize)
    }
    #[inline]
    fn frame_mut(&mut self, desc: &Desc) -> &mut [u8] {
        self.group.umem.bytes_mut(desc.addr, desc.len as usize)
    }
    #[inline]
    fn room_mut(&mut self, desc: &Desc) -> &mut [u8] {
        let room = self.group.umem.room(desc.addr);
        self.group.umem.bytes_mut(desc.addr, room)
    }
    fn headroom(&self) -> usize {
        TX_HEADROOM as usize
    }
    fn frame_counts(&self) -> FrameCounts {
        self.group.frame_counts()
    }
    fn stats(&self) -> PortStats {
        self.sock().stats
    }
}

impl AsRawFd for XskPort {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.sock().fd.as_raw_fd()
    }
}

/// Puts socket `fd` in slot `queue` of an XSKMAP.
pub(crate) fn xskmap_insert(
    map: &libbpf_rs::MapHandle,
    queue: u32,
    fd: BorrowedFd<'_>,
) -> Result<(), libbpf_rs::Error> {
    let v = fd.as_raw_fd() as u32;
    map.update(&queue.to_ne_bytes(), &v.to_ne_bytes(), MapFlags::ANY)
}
