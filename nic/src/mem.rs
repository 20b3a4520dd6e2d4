//! # In-memory port pair (unit-test backend)
//!
//! What it is: two [`Port`]s joined by an in-memory wire in each direction ([`pair`]), so the
//! layers above the NIC (the stack, the worker loop, the offloads) can be tested without a
//! kernel, a namespace or privileges. Each port may live on its own thread ([`MemPort`] is
//! `Send`).
//!
//! What it owns: per port, one preallocated frame memory of `frames * frame_size` bytes (the
//! "UMEM"), a bitmap of the frames its user holds, the list of frames it sent and has not yet
//! reclaimed; per direction, a `Link` behind a mutex that holds the receiving port's free list,
//! a bounded queue of frames in flight toward it and a preallocated staging area for their bytes.
//!
//! How a frame moves (AF_XDP copy mode, virtio-net with a backend):
//! 1. `tx_burst` on A takes a free frame of B (B's free list lives in the link toward B), copies
//!    A's bytes and [`NetHdr`] onto the wire and moves A's frame to its completion state; if B has
//!    no free frame or the wire is full the burst stops there (partial transmit, counted once in
//!    [`PortStats::tx_ring_full`]; the rest stays in the caller's burst, still held).
//! 2. `rx_burst` on B copies the bytes into the reserved frame of B's memory, at `headroom`
//!    bytes into the frame, and hands it out as held.
//! 3. `reclaim` on A moves its sent frames back to its free list (never done implicitly, as with
//!    a real completion ring: a user that forgets to reclaim starves here as it would on AF_XDP).
//!
//! Offload metadata crosses the wire as virtio-net passes `virtio_net_hdr` (virtio 1.2 §5.1.6)
//! when the feature is negotiated: with [`Caps::tx_csum`] on the sender, `hdr.csum` reaches the
//! peer unchanged; with [`Caps::tso`], `hdr.gso` and `hdr.segments` do. Without them the peer
//! sees what a plain wire carries: [`Csum::None`], [`Gso::None`] and the bytes as they were (a
//! checksum the sender left partial arrives incomplete, as it would from a device that cannot
//! complete it). The receive-side caps (`rx_csum`, `rx_gro`) are reported as configured; the
//! pair does not verify or coalesce anything itself.
//!
//! What it never does: allocate after [`pair`] (every list, queue and staging area has its
//! final capacity from the start), touch a frame its user holds, or corrupt its state on a bad
//! `free` (a frame that is not held is ignored and counted in [`MemPort::bad_frees`]).
//! Touching a frame that is not held through [`Port::frame`], [`Port::frame_mut`] or
//! [`Port::room_mut`], or sending one, is a programming error and panics with a message that
//! names the address.
//!
//! Invariants (checked by the tests with [`FrameCounts::check`]): every frame of a port is in
//! exactly one of free (its free list), rx (queued on the wire toward it), held (its bitmap) or
//! completion (sent, not yet reclaimed). Performance is secondary (two copies per frame, one
//! lock per burst), allocation per packet is not allowed.

use std::sync::{Arc, Mutex, MutexGuard};

use libos::wire::{Csum, Gso, NetHdr};

use crate::port::{Caps, FrameCounts, Port, PortStats};
use crate::virtq::{Burst, Desc, DEFAULT_BURST, MAX_BURST};

/// Bytes in front of `addr` of every frame handed out by [`Port::alloc_burst`] and, when the
/// frame fits, by [`Port::rx_burst`] (the same as AF_XDP's default `XDP_PACKET_HEADROOM`).
pub const HEADROOM: usize = 256;

/// How one [`MemPort`] is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemConfig {
    /// Frames the port owns.
    pub frames: u32,
    /// Bytes per frame, headroom included: 2048 or 4096.
    pub frame_size: u32,
    /// Frames the wire toward this port can hold at once (the peer's TX ring and this port's RX
    /// ring in one).
    pub wire_capacity: u32,
    /// Most frames one `rx_burst` returns (1..=[`MAX_BURST`]).
    pub burst: usize,
    /// What the port reports from [`Port::caps`]. `max_frame` and `zero_copy` are ignored and
    /// derived (`frame_size - HEADROOM`, `false`). `tx_csum` and `tso` decide which parts of a
    /// transmitted frame's [`NetHdr`] reach the peer (see the module documentation).
    pub caps: Caps,
}

impl Default for MemConfig {
    fn default() -> Self {
        MemConfig {
            frames: 512,
            frame_size: 2048,
            wire_capacity: 256,
            burst: DEFAULT_BURST,
            caps: Caps::default(),
        }
    }
}

impl MemConfig {
    /// This configuration with offloads on: the port completes checksums and splits TCP
    /// super-segments below the stack (which here means: passes their metadata to the peer).
    pub fn with_offloads(mut self) -> Self {
        self.caps.tx_csum = true;
        self.caps.tso = true;
        self.caps.rx_csum = true;
        self
    }

    fn validate(&self) {
        assert!(
            self.frame_size == 2048 || self.frame_size == 4096,
            "mem port: invalid frame_size {} (2048 or 4096)",
            self.frame_size
        );
        assert!(self.frames > 0, "mem port: invalid frames 0 (at least 1)");
        assert!(
            u64::from(self.frames) * u64::from(self.frame_size) <= 1 << 32,
            "mem port: invalid frames {} (frame memory above 4 GiB)",
            self.frames
        );
        assert!(self.wire_capacity > 0, "mem port: invalid wire_capacity 0 (at least 1)");
        assert!(
            (1..=MAX_BURST).contains(&self.burst),
            "mem port: invalid burst {} (1..={MAX_BURST})",
            self.burst
        );
    }
}

/// Creates two ports joined by an in-memory wire, both built from `cfg`.
///
/// # Panics
/// If `cfg` is invalid (frame size other than 2048/4096, zero frames, zero wire capacity, burst
/// outside `1..=MAX_BURST`).
pub fn pair(cfg: MemConfig) -> (MemPort, MemPort) {
    pair_with(cfg, cfg)
}

/// Creates two ports joined by an in-memory wire, each built from its own configuration (for
/// a sender with offloads facing a receiver without, say).
///
/// # Panics
/// If a configuration is invalid, or the two frame sizes differ.
pub fn pair_with(a: MemConfig, b: MemConfig) -> (MemPort, MemPort) {
    a.validate();
    b.validate();
    assert_eq!(
        a.frame_size, b.frame_size,
        "mem port: both ends need the same frame_size ({} vs {})",
        a.frame_size, b.frame_size
    );
    let to_a = Arc::new(Mutex::new(Link::new(&a)));
    let to_b = Arc::new(Mutex::new(Link::new(&b)));
    let port_a = MemPort::new(a, Arc::clone(&to_a), Arc::clone(&to_b));
    let port_b = MemPort::new(b, to_b, to_a);
    (port_a, port_b)
}

/// One frame in flight: which frame of the receiver it will land in, and what it carries.
#[derive(Debug, Clone, Copy, Default)]
struct InFlight {
    frame: u32,
    len: u32,
    hdr: NetHdr,
}

/// One direction of the wire, shared by its sender and its receiver: the receiver's free list
/// (so the sender can reserve a frame), the queue of frames in flight, and their bytes.
#[derive(Debug)]
struct Link {
    /// Free frames of the receiving port (a stack; capacity = its frame count).
    free: Vec<u32>,
    /// Ring of frames in flight; slot `i` keeps its bytes in `staging[i * frame_size..]`.
    queue: Box<[InFlight]>,
    head: usize,
    len: usize,
    staging: Box<[u8]>,
    frame_size: usize,
}

impl Link {
    fn new(receiver: &MemConfig) -> Self {
        let cap = receiver.wire_capacity as usize;
        let fs = receiver.frame_size as usize;
        let mut free = Vec::with_capacity(receiver.frames as usize);
        // Popped from the back: frame 0 goes out first, which makes traces easy to read.
        free.extend((0..receiver.frames).rev());
        Link {
            free,
            queue: vec![InFlight::default(); cap].into_boxed_slice(),
            head: 0,
            len: 0,
            staging: vec![0u8; cap * fs].into_boxed_slice(),
            frame_size: fs,
        }
    }

    fn is_full(&self) -> bool {
        self.len == self.queue.len()
    }
}

/// Counters only this backend has (misuse it tolerates rather than panics on).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemCounters {
    /// `free`/`free_burst` calls for a descriptor that was not held (double free, a frame of
    /// the other port, an address outside the memory): ignored.
    pub bad_frees: u64,
    /// Frames that were longer than the receiver's room behind its headroom, so they landed
    /// with less headroom in front (never truncated).
    pub short_headroom: u64,
}

/// One end of an in-memory pair (see the module documentation).
#[derive(Debug)]
pub struct MemPort {
    cfg: MemConfig,
    /// Frame memory: `frames * frame_size` bytes, frame `i` at `i * frame_size`.
    mem: Box<[u8]>,
    /// Bit `i` set: frame `i` is held by the user.
    held: Box<[u64]>,
    held_count: u32,
    /// Frames sent and not yet reclaimed (capacity = frame count).
    completion: Vec<u32>,
    /// Toward this port: holds this port's free list and its incoming frames.
    rx: Arc<Mutex<Link>>,
    /// Toward the peer.
    tx: Arc<Mutex<Link>>,
    stats: PortStats,
    counters: MemCounters,
}

/// Locks a link; a poisoned lock (the peer's thread panicked in a test) is still consistent,
/// because no code path panics while it holds the lock.
fn lock(link: &Mutex<Link>) -> MutexGuard<'_, Link> {
    link.lock().unwrap_or_else(|e| e.into_inner())
}

impl MemPort {
    fn new(cfg: MemConfig, rx: Arc<Mutex<Link>>, tx: Arc<Mutex<Link>>) -> Self {
        let frames = cfg.frames as usize;
        MemPort {
            cfg,
            mem: vec![0u8; frames * cfg.frame_size as usize].into_boxed_slice(),
            held: vec![0u64; frames.div_ceil(64)].into_boxed_slice(),
            held_count: 0,
            completion: Vec::with_capacity(frames),
            rx,
            tx,
            stats: PortStats::default(),
            counters: MemCounters::default(),
        }
    }

    /// The configuration this port was built from.
    pub fn config(&self) -> &MemConfig {
        &self.cfg
    }

    /// Counters of misuse this backend tolerates.
    pub fn counters(&self) -> MemCounters {
        self.counters
    }

    /// How many `free`s named a frame that was not held (see [`MemCounters::bad_frees`]).
    pub fn bad_frees(&self) -> u64 {
        self.counters.bad_frees
    }

    fn frame_size(&self) -> usize {
        self.cfg.frame_size as usize
    }

    /// The frame `addr` falls in, if it is inside the memory.
    fn frame_of(&self, addr: u64) -> Option<u32> {
        let idx = addr / u64::from(self.cfg.frame_size);
        (idx < u64::from(self.cfg.frames)).then_some(idx as u32)
    }

    fn is_held(&self, frame: u32) -> bool {
        self.held[frame as usize / 64] & (1 << (frame % 64)) != 0
    }

    fn set_held(&mut self, frame: u32, on: bool) {
        let (w, bit) = (frame as usize / 64, 1u64 << (frame % 64));
        if on {
            debug_assert!(self.held[w] & bit == 0);
            self.held[w] |= bit;
            self.held_count += 1;
        } else {
            debug_assert!(self.held[w] & bit != 0);
            self.held[w] &= !bit;
            self.held_count -= 1;
        }
    }

    /// The frame of a descriptor the caller must hold, and the byte range `addr..addr + len`;
    /// panics with a clear message otherwise.
    fn checked(&self, desc: &Desc, what: &str) -> (u32, usize, usize) {
        let Some(frame) = self.frame_of(desc.addr) else {
            panic!(
                "mem port: {what}: addr {:#x} is outside the frame memory ({} frames of {} bytes)",
                desc.addr, self.cfg.frames, self.cfg.frame_size
            );
        };
        assert!(
            self.is_held(frame),
            "mem port: {what}: frame {frame} (addr {:#x}) is not held by the caller",
            desc.addr
        );
        let start = desc.addr as usize;
        let end = (frame as usize + 1) * self.frame_size();
        assert!(
            desc.len as usize <= end - start,
            "mem port: {what}: len {} at addr {:#x} runs past the end of frame {frame} ({} bytes left)",
            desc.len,
            desc.addr,
            end - start
        );
        (frame, start, end)
    }

    /// What of `hdr` crosses the wire from a sender with this port's caps.
    fn on_the_wire(&self, hdr: NetHdr) -> NetHdr {
        let caps = self.cfg.caps;
        NetHdr {
            csum: if caps.tx_csum { hdr.csum } else { Csum::None },
            gso: if caps.tso { hdr.gso } else { Gso::None },
            segments: if caps.tso { hdr.segments } else { 0 },
        }
    }
}

impl Port for MemPort {
    fn caps(&self) -> Caps {
        Caps { max_frame: self.frame_size() - HEADROOM, zero_copy: false, ..self.cfg.caps }
    }

    fn rx_burst(&mut self, out: &mut Burst) -> usize {
        let fs = self.frame_size();
        let rx = Arc::clone(&self.rx);
        let mut link = lock(&rx);
        let n = link.len.min(self.cfg.burst).min(out.spare());
        let mut bytes = 0u64;
        for _ in 0..n {
            let slot = link.head;
            let f = link.queue[slot];
            link.head = (slot + 1) % link.queue.len();
            link.len -= 1;
            let len = f.len as usize;
            // Keep the usual headroom unless the frame needs the room.
            let offset = HEADROOM.min(fs - len);
            if offset < HEADROOM {
                self.counters.short_headroom += 1;
            }
            let base = f.frame as usize * fs;
            self.mem[base + offset..base + offset + len]
                .copy_from_slice(&link.staging[slot * fs..slot * fs + len]);
            self.set_held(f.frame, true);
            let pushed = out.push(Desc { addr: (base + offset) as u64, len: f.len, hdr: f.hdr });
            debug_assert!(pushed, "n <= out.spare()");
            bytes += u64::from(f.len);
        }
        drop(link);
        if n > 0 {
            self.stats.rx_packets += n as u64;
            self.stats.rx_bytes += bytes;
            self.stats.rx_bursts += 1;
        }
        n
    }

    fn tx_burst(&mut self, batch: &mut Burst) -> usize {
        if batch.is_empty() {
            return 0;
        }
        // Check everything first, so a programming error panics before anything moved.
        for d in batch.iter() {
            self.checked(d, "tx_burst");
        }
        let tx = Arc::clone(&self.tx);
        let mut link = lock(&tx);
        let fs = link.frame_size;
        let mut sent = 0;
        let mut taken = 0;
        let mut dropped = [0u32; crate::MAX_BURST];
        let mut ndropped = 0;
        let mut bytes = 0u64;
        let mut twice = None;
        for d in batch.iter() {
            if link.is_full() || link.free.is_empty() {
                break;
            }
            // Checked above, but the same frame may sit twice in the burst: never panic while
            // holding the lock, report it after.
            let frame = d.addr as usize / fs;
            if !self.is_held(frame as u32) {
                twice = Some(d.addr);
                break;
            }
            let (frame, start, len) = (frame as u32, d.addr as usize, d.len as usize);
            let mut hdr = d.hdr;
            if matches!(hdr.csum, Csum::Partial { .. }) && !self.cfg.caps.tx_csum {
                // The emulated device cannot: complete it in software, like XskPort.
                if crate::offload::csum::complete(&mut self.mem[start..start + len], &mut hdr)
                    .is_err()
                {
                    // Dropped; its frame goes back to our own free list once the peer's lock is
                    // released (never hold both locks).
                    self.set_held(frame, false);
                    dropped[ndropped] = frame;
                    ndropped += 1;
                    taken += 1;
                    continue;
                }
                self.stats.tx_csum_sw += 1;
            }
            let Some(peer_frame) = link.free.pop() else { break };
            let slot = (link.head + link.len) % link.queue.len();
            link.staging[slot * fs..slot * fs + len].copy_from_slice(&self.mem[start..start + len]);
            link.queue[slot] =
                InFlight { frame: peer_frame, len: d.len, hdr: self.on_the_wire(hdr) };
            link.len += 1;
            self.set_held(frame, false);
            self.completion.push(frame);
            sent += 1;
            taken += 1;
            bytes += u64::from(d.len);
        }
        drop(link);
        if ndropped > 0 {
            lock(&self.rx).free.extend_from_slice(&dropped[..ndropped]);
            self.stats.invalid_descs += ndropped as u64;
        }
        if let Some(addr) = twice {
            panic!("mem port: tx_burst: frame at addr {addr:#x} is in the burst twice");
        }
        if sent > 0 {
            self.stats.tx_packets += sent as u64;
            self.stats.tx_bytes += bytes;
            self.stats.tx_bursts += 1;
            self.stats.kicks += 1;
        }
        if taken < batch.len() {
            self.stats.tx_ring_full += 1;
        }
        batch.consume_front(taken);
        sent
    }

    fn alloc_burst(&mut self, out: &mut Burst, n: usize) -> usize {
        let fs = self.frame_size();
        let rx = Arc::clone(&self.rx);
        let mut link = lock(&rx);
        let n = n.min(out.spare()).min(link.free.len());
        for _ in 0..n {
            let Some(frame) = link.free.pop() else { break };
            self.set_held(frame, true);
            let pushed = out.push(Desc {
                addr: (frame as usize * fs + HEADROOM) as u64,
                len: 0,
                hdr: NetHdr::NONE,
            });
            debug_assert!(pushed, "n <= out.spare()");
        }
        n
    }

    fn free_burst(&mut self, batch: &mut Burst) {
        let rx = Arc::clone(&self.rx);
        let mut link = lock(&rx);
        for d in batch.iter() {
            match self.frame_of(d.addr) {
                Some(frame) if self.is_held(frame) => {
                    self.set_held(frame, false);
                    link.free.push(frame);
                }
                _ => self.counters.bad_frees += 1,
            }
        }
        batch.clear();
    }

    fn free(&mut self, desc: &Desc) {
        match self.frame_of(desc.addr) {
            Some(frame) if self.is_held(frame) => {
                self.set_held(frame, false);
                lock(&self.rx).free.push(frame);
            }
            _ => self.counters.bad_frees += 1,
        }
    }

    fn reclaim(&mut self) -> usize {
        let n = self.completion.len();
        if n > 0 {
            lock(&self.rx).free.append(&mut self.completion);
            self.stats.completions += n as u64;
        }
        n
    }

    fn frame(&self, desc: &Desc) -> &[u8] {
        let (_, start, _) = self.checked(desc, "frame");
        &self.mem[start..start + desc.len as usize]
    }

    fn frame_mut(&mut self, desc: &Desc) -> &mut [u8] {
        let (_, start, _) = self.checked(desc, "frame_mut");
        &mut self.mem[start..start + desc.len as usize]
    }

    fn room_mut(&mut self, desc: &Desc) -> &mut [u8] {
        let (_, start, end) = self.checked(desc, "room_mut");
        &mut self.mem[start..end]
    }

    fn headroom(&self) -> usize {
        HEADROOM
    }

    fn frame_counts(&self) -> FrameCounts {
        let link = lock(&self.rx);
        FrameCounts {
            total: self.cfg.frames,
            free: link.free.len() as u32,
            rx: link.len as u32,
            held: self.held_count,
            completion: self.completion.len() as u32,
            ..FrameCounts::default()
        }
    }

    fn stats(&self) -> PortStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn small(frames: u32, wire: u32) -> MemConfig {
        MemConfig { frames, wire_capacity: wire, ..MemConfig::default() }
    }

    /// Allocates `n` frames on `p`, writes `fill(i)` into each, returns them.
    fn build(p: &mut MemPort, n: usize, fill: impl Fn(usize) -> Vec<u8>) -> Burst {
        let mut b = Burst::new();
        assert_eq!(p.alloc_burst(&mut b, n), n);
        for (i, d) in b.as_mut_slice().iter_mut().enumerate() {
            let bytes = fill(i);
            p.room_mut(d)[..bytes.len()].copy_from_slice(&bytes);
            d.len = bytes.len() as u32;
        }
        b
    }

    fn assert_counts(p: &MemPort) {
        let c = p.frame_counts();
        c.check().unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn pair_is_send() {
        fn send<T: Send>() {}
        send::<MemPort>();
    }

    #[test]
    fn echo_across_the_pair() {
        let (mut a, mut b) = pair(MemConfig::default());
        let mut out = build(&mut a, 3, |i| vec![i as u8 + 1; 60 + i]);
        assert_eq!(a.tx_burst(&mut out), 3);
        assert!(out.is_empty());
        assert_eq!(a.frame_counts().completion, 3);
        assert_eq!(b.frame_counts().rx, 3);

        // B receives and echoes in place from the same frames.
        let mut rx = Burst::new();
        assert_eq!(b.rx_burst(&mut rx), 3);
        for (i, d) in rx.iter().enumerate() {
            assert_eq!(d.addr % 2048, HEADROOM as u64);
            assert_eq!(b.frame(d), vec![i as u8 + 1; 60 + i].as_slice());
        }
        for d in rx.as_slice().to_owned() {
            b.frame_mut(&d)[0] = 0xee;
        }
        assert_eq!(b.tx_burst(&mut rx), 3);

        let mut back = Burst::new();
        assert_eq!(a.rx_burst(&mut back), 3);
        for (i, d) in back.iter().enumerate() {
            let f = a.frame(d);
            assert_eq!(f.len(), 60 + i);
            assert_eq!(f[0], 0xee);
            assert!(f[1..].iter().all(|&x| x == i as u8 + 1));
        }
        a.free_burst(&mut back);
        assert_eq!(a.reclaim(), 3);
        assert_eq!(b.reclaim(), 3);
        for p in [&a, &b] {
            let c = p.frame_counts();
            assert_eq!(c.free, c.total);
            assert_counts(p);
        }
        let s = a.stats();
        assert_eq!((s.tx_packets, s.tx_bursts, s.rx_packets, s.completions), (3, 1, 3, 3));
        assert_eq!(s.tx_bytes, 60 + 61 + 62);
        assert_eq!(s.rx_bytes, s.tx_bytes);
    }

    #[test]
    fn echo_across_threads() {
        let (mut a, mut b) = pair(small(64, 16));
        let echo = std::thread::spawn(move || {
            let mut echoed = 0;
            let mut rx = Burst::new();
            while echoed < 1000 {
                b.rx_burst(&mut rx);
                echoed += b.tx_burst(&mut rx);
                b.reclaim();
                std::thread::yield_now();
            }
            b.free_burst(&mut rx);
            b
        });
        let (mut sent, mut got) = (0u32, 0u32);
        let mut rx = Burst::new();
        while got < 1000 {
            a.reclaim();
            if sent < 1000 {
                let mut tx = Burst::new();
                if a.alloc_burst(&mut tx, 1) == 1 {
                    let d = &mut tx.as_mut_slice()[0];
                    a.room_mut(d)[..4].copy_from_slice(&sent.to_be_bytes());
                    d.len = 4;
                    sent += a.tx_burst(&mut tx) as u32;
                    a.free_burst(&mut tx);
                }
            }
            a.rx_burst(&mut rx);
            for d in rx.iter() {
                assert_eq!(a.frame(d), got.to_be_bytes());
                got += 1;
            }
            a.free_burst(&mut rx);
            std::thread::yield_now();
        }
        let b = echo.join().unwrap();
        assert_counts(&a);
        assert_counts(&b);
        assert_eq!(a.bad_frees() + b.bad_frees(), 0);
    }

    #[test]
    fn partial_tx_when_the_peer_has_no_free_frame() {
        let (mut a, mut b) = pair_with(small(16, 64), small(4, 64));
        let mut out = build(&mut a, 6, |i| vec![i as u8; 64]);
        assert_eq!(a.tx_burst(&mut out), 4);
        assert_eq!(out.len(), 2, "the two that did not fit stay with the caller");
        assert_eq!(a.frame(&out.as_slice()[0]), [4u8; 64]);
        assert_eq!(a.stats().tx_ring_full, 1);
        assert_eq!(a.stats().tx_packets, 4);
        assert_eq!(b.frame_counts().rx, 4);
        assert_eq!(b.frame_counts().free, 0);
        // B frees up room by receiving and dropping; then the rest goes through.
        let mut rx = Burst::new();
        assert_eq!(b.rx_burst(&mut rx), 4);
        b.free_burst(&mut rx);
        assert_eq!(a.tx_burst(&mut out), 2);
        assert_eq!(b.rx_burst(&mut rx), 2);
        assert_eq!(b.frame(&rx.as_slice()[1]), [5u8; 64]);
        assert_counts(&a);
        assert_counts(&b);
    }

    #[test]
    fn partial_tx_when_the_wire_is_full() {
        let (mut a, b) = pair(small(32, 3));
        let mut out = build(&mut a, 5, |_| vec![1; 60]);
        assert_eq!(a.tx_burst(&mut out), 3);
        assert_eq!(a.tx_burst(&mut out), 0);
        assert_eq!(a.stats().tx_ring_full, 2);
        assert_eq!(a.stats().tx_bursts, 1);
        assert_eq!(b.frame_counts().rx, 3);
        assert_counts(&a);
        assert_counts(&b);
    }

    #[test]
    fn double_free_is_ignored_and_counted() {
        let (mut a, _b) = pair(small(8, 8));
        let mut got = Burst::new();
        a.alloc_burst(&mut got, 2);
        let d = got.as_slice()[0];
        a.free(&d);
        a.free(&d);
        let mut again = got.clone();
        a.free_burst(&mut got); // the first one is already free
        a.free_burst(&mut again); // both are
        a.free(&Desc { addr: 1 << 40, ..d }); // outside the memory
        assert_eq!(a.bad_frees(), 1 + 1 + 2 + 1);
        let c = a.frame_counts();
        assert_eq!((c.free, c.held), (8, 0));
        assert_counts(&a);
        // The free list was not corrupted: all 8 frames come back, each once.
        let mut all = Burst::new();
        assert_eq!(a.alloc_burst(&mut all, 100), 8);
        let mut addrs: Vec<u64> = all.iter().map(|d| d.addr).collect();
        addrs.sort_unstable();
        addrs.dedup();
        assert_eq!(addrs.len(), 8);
    }

    #[test]
    #[should_panic(expected = "is not held by the caller")]
    fn reading_a_freed_frame_panics() {
        let (mut a, _b) = pair(small(8, 8));
        let mut got = Burst::new();
        a.alloc_burst(&mut got, 1);
        let d = got.as_slice()[0];
        a.free(&d);
        let _ = a.frame(&d);
    }

    #[test]
    #[should_panic(expected = "is in the burst twice")]
    fn sending_a_frame_twice_in_one_burst_panics() {
        let (mut a, _b) = pair(small(8, 8));
        let mut got = Burst::new();
        a.alloc_burst(&mut got, 1);
        got.push(got.as_slice()[0]);
        a.tx_burst(&mut got);
    }

    #[test]
    #[should_panic(expected = "runs past the end of frame")]
    fn a_length_past_the_frame_panics() {
        let (mut a, _b) = pair(small(8, 8));
        let mut got = Burst::new();
        a.alloc_burst(&mut got, 1);
        let d = Desc { len: 2048, ..got.as_slice()[0] };
        let _ = a.frame_mut(&d);
    }

    #[test]
    fn headroom_and_room() {
        let (mut a, _b) = pair(MemConfig { frame_size: 4096, ..small(4, 4) });
        assert_eq!(a.headroom(), HEADROOM);
        assert_eq!(a.caps().max_frame, 4096 - HEADROOM);
        let mut got = Burst::new();
        a.alloc_burst(&mut got, 1);
        let mut d = got.as_slice()[0];
        assert_eq!(a.room_mut(&d).len(), 4096 - HEADROOM);
        // Prepending a header into the headroom stays inside the same frame.
        d.addr -= 14;
        assert_eq!(a.room_mut(&d).len(), 4096 - HEADROOM + 14);
    }

    #[test]
    fn a_frame_without_headroom_to_spare_lands_with_less() {
        let (mut a, mut b) = pair(small(4, 4));
        let mut got = Burst::new();
        a.alloc_burst(&mut got, 1);
        let d = &mut got.as_mut_slice()[0];
        d.addr -= HEADROOM as u64;
        d.len = 2048;
        a.room_mut(d).fill(7);
        assert_eq!(a.tx_burst(&mut got), 1);
        let mut rx = Burst::new();
        b.rx_burst(&mut rx);
        let d = rx.as_slice()[0];
        assert_eq!(d.addr % 2048, 0);
        assert_eq!(b.frame(&d), [7u8; 2048]);
        assert_eq!(b.counters().short_headroom, 1);
    }

    #[test]
    fn offload_metadata_crosses_only_when_negotiated() {
        let partial = NetHdr {
            csum: Csum::Partial { start: 34, offset: 16 },
            gso: Gso::TcpV4 { size: 500, hdr_len: 54 },
            segments: 0,
        };
        for (cfg, want) in [
            (MemConfig::default().with_offloads(), partial),
            (
                MemConfig {
                    caps: Caps { tx_csum: true, ..Caps::default() },
                    ..MemConfig::default()
                },
                NetHdr { gso: Gso::None, ..partial },
            ),
        ] {
            let (mut a, mut b) = pair(cfg);
            let mut out = build(&mut a, 1, |_| vec![0; 1054]);
            out.as_mut_slice()[0].hdr = partial;
            a.tx_burst(&mut out);
            let mut rx = Burst::new();
            b.rx_burst(&mut rx);
            assert_eq!(rx.as_slice()[0].hdr, want);
        }
        let (a, _) = pair(MemConfig::default().with_offloads());
        assert!(a.caps().tso && a.caps().tx_csum && !a.caps().zero_copy);
    }

    /// A device without checksum offload still accepts `Csum::Partial`: the port completes it
    /// in software; a super-segment it cannot send is dropped and counted, never sent half-done.
    #[test]
    fn partial_checksums_are_completed_in_software_without_tx_csum() {
        use libos::wire::{
            EtherType, EthernetAddress, EthernetRepr, IpProtocol, Ipv4Repr, TxChecksum, UdpRepr,
        };
        use std::net::Ipv4Addr;
        let (src, dst) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        let frame = |payload: usize| {
            let mut f = vec![0u8; 14 + 20 + 8 + payload];
            let eth = EthernetRepr {
                src_addr: EthernetAddress([2, 0, 0, 0, 0, 1]),
                dst_addr: EthernetAddress([2, 0, 0, 0, 0, 2]),
                ethertype: EtherType::Ipv4,
                vlan: [None, None],
            };
            eth.emit(&mut f).unwrap();
            let ip = Ipv4Repr {
                src_addr: src,
                dst_addr: dst,
                protocol: IpProtocol::Udp,
                payload_len: 8 + payload,
                ttl: 64,
                ident: 1,
                dont_frag: true,
                dscp: 0,
                ecn: 0,
            };
            ip.emit(&mut f[14..]).unwrap();
            for (i, b) in f[42..].iter_mut().enumerate() {
                *b = i as u8;
            }
            let udp = UdpRepr { src_port: 1000, dst_port: 2000 };
            udp.emit(&mut f[34..], src, dst, TxChecksum::Partial).unwrap();
            f
        };
        let (mut a, mut b) = pair(MemConfig::default());
        let mut out = build(&mut a, 2, |i| frame(100 + i));
        for d in out.as_mut_slice() {
            d.hdr.csum = Csum::Partial { start: 34, offset: 6 };
        }
        assert_eq!(crate::offload::csum::verify_ipv4_l4(a.frame(&out.as_slice()[0])), Some(false));
        // A super-segment with a partial checksum cannot go out of a device without TSO.
        out.as_mut_slice()[1].hdr.gso = Gso::TcpV4 { size: 500, hdr_len: 42 };
        assert_eq!(a.tx_burst(&mut out), 1);
        assert!(out.is_empty());
        assert_eq!(a.stats().tx_csum_sw, 1);
        assert_eq!(a.stats().invalid_descs, 1);
        let mut rx = Burst::new();
        assert_eq!(b.rx_burst(&mut rx), 1);
        let d = rx.as_slice()[0];
        assert_eq!(d.hdr, NetHdr::NONE);
        assert_eq!(crate::offload::csum::verify_ipv4_l4(b.frame(&d)), Some(true));
        b.free_burst(&mut rx);
        a.reclaim();
        assert_counts(&a);
        assert_counts(&b);
    }

    #[test]
    fn rx_burst_respects_burst_size_and_spare_room() {
        let (mut a, mut b) = pair(MemConfig { burst: 4, ..small(32, 32) });
        let mut out = build(&mut a, 10, |_| vec![0; 60]);
        assert_eq!(a.tx_burst(&mut out), 10);
        let mut rx = Burst::new();
        assert_eq!(b.rx_burst(&mut rx), 4);
        while rx.spare() > 1 {
            rx.push(Desc::default());
        }
        assert_eq!(b.rx_burst(&mut rx), 1);
        assert_eq!(b.frame_counts().rx, 5);
        assert_eq!(b.frame_counts().held, 5);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Alloc(usize),
        Tx(usize),
        Rx,
        Free(usize),
        FreeStale,
        Reclaim,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0usize..20).prop_map(Op::Alloc),
            (0usize..20).prop_map(Op::Tx),
            Just(Op::Rx),
            (0usize..20).prop_map(Op::Free),
            Just(Op::FreeStale),
            Just(Op::Reclaim),
        ]
    }

    proptest! {
        #[test]
        fn accounting_holds_after_random_traffic(
            ops in proptest::collection::vec((any::<bool>(), op()), 1..200),
            frames in 1u32..48,
            wire in 1u32..16,
        ) {
            let (a, b) = pair(small(frames, wire));
            let mut ports = [a, b];
            // What each side holds, and one frame it gave back (for stale frees).
            let mut held = [Burst::new(), Burst::new()];
            let mut stale: [Option<Desc>; 2] = [None, None];
            let mut seq = 0u32;
            let mut expect_bad = [0u64; 2];
            for (side, op) in ops {
                let s = usize::from(side);
                let p = &mut ports[s];
                match op {
                    Op::Alloc(n) => {
                        let before = held[s].len();
                        let got = p.alloc_burst(&mut held[s], n);
                        for d in &mut held[s].as_mut_slice()[before..before + got] {
                            p.room_mut(d)[..4].copy_from_slice(&seq.to_be_bytes());
                            d.len = 4 + seq % 100;
                            seq += 1;
                        }
                    }
                    Op::Tx(n) => {
                        let n = n.min(held[s].len());
                        let mut tx = Burst::new();
                        for d in &held[s].as_slice()[..n] {
                            tx.push(*d);
                        }
                        let sent = p.tx_burst(&mut tx);
                        prop_assert!(sent <= n);
                        prop_assert_eq!(tx.len(), n - sent);
                        held[s].consume_front(sent);
                    }
                    Op::Rx => {
                        let before = held[s].len();
                        let got = p.rx_burst(&mut held[s]);
                        for d in &held[s].as_slice()[before..before + got] {
                            let f = p.frame(d);
                            let n = u32::from_be_bytes([f[0], f[1], f[2], f[3]]);
                            prop_assert_eq!(d.len, 4 + n % 100);
                        }
                    }
                    Op::Free(n) => {
                        let n = n.min(held[s].len());
                        for d in &held[s].as_slice()[..n] {
                            p.free(d);
                            stale[s] = Some(*d);
                        }
                        held[s].consume_front(n);
                    }
                    Op::FreeStale => {
                        if let Some(d) = stale[s] {
                            let frame = p.frame_of(d.addr).unwrap();
                            if !p.is_held(frame) {
                                expect_bad[s] += 1;
                            }
                            p.free(&d);
                            if let Some(i) = held[s].iter().position(|h| p.frame_of(h.addr) == Some(frame)) {
                                // It was held again (re-allocated): freeing it was legal.
                                let mut keep = Burst::new();
                                for (j, h) in held[s].iter().enumerate() {
                                    if j != i {
                                        keep.push(*h);
                                    }
                                }
                                held[s] = keep;
                            }
                        }
                    }
                    Op::Reclaim => {
                        p.reclaim();
                    }
                }
                for (i, p) in ports.iter().enumerate() {
                    let c = p.frame_counts();
                    prop_assert!(c.check().is_ok(), "{:?}", c);
                    prop_assert_eq!(c.held as usize, held[i].len());
                    prop_assert_eq!(p.bad_frees(), expect_bad[i]);
                }
            }
        }
    }
}
