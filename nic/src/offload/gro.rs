//! # Receive coalescing (GRO) in software
//!
//! What it is: [`Gro::coalesce`] looks at one received burst and merges consecutive in-order
//! TCP/IPv4 segments of a flow into one larger frame, so the stack processes (and ACKs) one
//! packet instead of up to [`GroConfig::max_segments`]; Linux's GRO
//! (`inet_gro_receive`/`tcp_gro_receive`) applied between the RX ring and the stack. Behind a
//! flag ([`GroConfig::enabled`], off by default): with it off every frame is passed through.
//!
//! What it owns: its coalescing buffers ([`GroConfig::buffers`] × [`MAX_COALESCED`] bytes),
//! its table of at most [`MAX_RUNS`] open runs, and the result of the last burst (the delivery
//! list and the coalesced packets), all allocated once in [`Gro::new`]. Received frames stay
//! the caller's: GRO reads them and never writes them.
//!
//! What it never does: allocate per packet or per burst, hold a frame or a run past the burst
//! it came in (runs are flushed at the end of every burst, as Linux flushes at the end of a
//! NAPI poll; nothing waits on a timer), reorder the frames of one flow, drop anything (a frame
//! it does not merge, a bad checksum included, is passed on unchanged for the stack to count),
//! or panic on packet contents.
//!
//! ## Where the coalesced frame lives, and what it costs
//!
//! A run starts on a segment's own frame and costs nothing while it has one member: a run that
//! never grows is delivered as [`Delivery::Frame`], the original frame, no copy. When a second
//! segment joins, the run takes one of GRO's buffers and the first segment (headers and
//! payload) is copied into it; every later member's payload is appended. So the cost is one
//! copy of every coalesced byte, paid only for frames that actually merge (`benches/offload.rs`
//! on the development machine: 64 in-order 1448-byte segments in 3.3 µs, about 50 ns a
//! segment, when the device verified the checksums; 8.5 µs when GRO verifies them too). What it
//! buys is the stack's per-packet work (demux, state machine, ACK generation) for all but one
//! segment of a run; that saving is not measured yet. The members' frames are
//! [`consumed`](Gro::is_consumed): the caller may free them right after `coalesce` returns.
//! Merging by reference instead (a chain of frames, Linux's `frag_list`) would save the copy but
//! make every reader of the stack scatter-aware; a copy into one contiguous buffer keeps the
//! stack's zero-copy views simple.
//!
//! The coalesced packets live in GRO's buffers until the next `coalesce`. When no buffer is
//! free a run simply stops growing (counted in [`GroStats::no_buffer`]); with the default 16
//! buffers that takes more than 16 coalesced packets in one burst (a bulk flow fills one
//! buffer per 45 segments of 1448 bytes; many short runs cut by PSH can use more).
//!
//! Checksums: segments whose [`NetHdr::csum`] is [`Csum::None`] are verified here (IPv4
//! header and TCP checksum, one pass over the segment, which the stack would otherwise make);
//! [`Csum::Valid`] and [`Csum::Partial`] (trusted local data, as Linux treats
//! `CHECKSUM_PARTIAL`) are taken as good; the IPv4 header checksum is always verified. A frame
//! passed through that GRO verified carries `Csum::Valid` in its [`Delivery::Frame`] header
//! so the stack does not sum it again; one that failed keeps its header and is never merged.
//!
//! ## Merge rules (Linux's, `net/ipv4/tcp_offload.c` `tcp_gro_receive`, `af_inet.c`
//! `inet_gro_receive`, `net/core/gro.c`)
//!
//! A segment can be merged or start a run only if: it is TCP/IPv4 with no IPv4 options, not a
//! fragment, its IPv4 total length is exactly the frame's remaining length (no Ethernet
//! padding), its checksums are good, and it is not already a super-segment.
//!
//! It **starts** a run if it carries payload and none of SYN, RST, URG, PSH, FIN (a segment
//! with those, or a pure ACK, is delivered on its own at once). The run's MSS is the first
//! segment's payload length.
//!
//! It **joins** the open run of its flow (same addresses and ports) if, against the run's first
//! segment: identical Ethernet header (addresses, VLAN tags); same TTL, TOS and DF; if DF is
//! clear, IPv4 ID = the previous member's + 1; no CWR on it; the same data offset, flags
//! (CWR, PSH and FIN aside) and window (Linux compares the whole 32-bit flag word, which holds
//! the window); the same ACK number; byte-identical TCP options (timestamps included); its
//! sequence number is the run's next; its payload is 1 to MSS bytes; the run stays within
//! [`GroConfig::max_segments`] and 65535 IPv4 bytes; a buffer is free.
//!
//! A run **ends** (is delivered) after a member with PSH or FIN or shorter than the MSS; when
//! a segment of its flow cannot join it (delivered before that segment, so the flow's order
//! holds); when the table of [`MAX_RUNS`] runs is full and another flow needs one (the oldest
//! goes, as Linux's `gro_flush_oldest`); at the end of the burst.
//!
//! The coalesced frame: the first segment's headers, with the IPv4 total length of the whole
//! (header checksum updated, RFC 1624), FIN/PSH of the last member ORed into the flags (ACK and
//! window are the same in every member, by the rules), and in the TCP checksum field the
//! pseudo-header sum without length, the TSO convention of [`libos::wire::NetHdr`], so the frame
//! can go to [`super::tso::split_frame`] as it stands (forwarding); its header is
//! `NetHdr { csum: Valid, gso: TcpV4 { size: mss, hdr_len }, segments: n }` (virtio 1.2
//! §5.1.6.4.1: `VIRTIO_NET_HDR_F_RSC_INFO`).
//!
//! References: RFC 9293, RFC 6864 (IPv4 ID), virtio 1.2 §5.1.6, Linux
//! `Documentation/networking/segmentation-offloads.rst` and the files named above.

use libos::wire::checksum;
use libos::wire::{Csum, Gso, Ipv4Packet, NetHdr, TcpFlags, TcpPacket};

use super::csum::l4_sum_ok;
use super::layout::{self, Layout};
use crate::port::Port;
use crate::virtq::{Burst, MAX_BURST};

/// Most runs open at once (Linux's `MAX_GRO_SKBS`).
pub const MAX_RUNS: usize = 8;

/// Largest coalesced frame: Ethernet header, two VLAN tags, the largest IPv4 datagram.
pub const MAX_COALESCED: usize = 14 + 8 + 65535;

/// How [`Gro`] behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroConfig {
    /// Coalesce at all (off by default: the stack must accept coalesced frames, which carry
    /// [`Gso::TcpV4`] on receive).
    pub enabled: bool,
    /// Most segments in one coalesced frame (2 or more; 64 by default, about 93 KiB of 1448-byte
    /// segments, so the 65535-byte IPv4 limit usually ends a run first).
    pub max_segments: u16,
    /// Coalescing buffers of [`MAX_COALESCED`] bytes (1 to `MAX_BURST / 2`; 16 by default).
    pub buffers: usize,
}

impl Default for GroConfig {
    fn default() -> Self {
        GroConfig { enabled: false, max_segments: 64, buffers: 16 }
    }
}

impl GroConfig {
    /// The default configuration, switched on.
    pub fn on() -> Self {
        GroConfig { enabled: true, ..GroConfig::default() }
    }
}

/// A received burst, as GRO reads it.
pub trait RxFrames {
    /// Frames in the burst (at most [`MAX_BURST`]).
    fn count(&self) -> usize;
    /// The bytes of frame `i`.
    fn bytes(&self, i: usize) -> &[u8];
    /// The offload header of frame `i`.
    fn hdr(&self, i: usize) -> NetHdr;
}

/// A burst received from a port, as [`RxFrames`].
#[derive(Debug)]
pub struct PortFrames<'a, P: Port + ?Sized> {
    port: &'a P,
    burst: &'a Burst,
}

impl<'a, P: Port + ?Sized> PortFrames<'a, P> {
    /// The frames of `burst`, held from `port`.
    pub fn new(port: &'a P, burst: &'a Burst) -> Self {
        PortFrames { port, burst }
    }
}

impl<P: Port + ?Sized> RxFrames for PortFrames<'_, P> {
    fn count(&self) -> usize {
        self.burst.len()
    }
    fn bytes(&self, i: usize) -> &[u8] {
        self.port.frame(&self.burst.as_slice()[i])
    }
    fn hdr(&self, i: usize) -> NetHdr {
        self.burst.as_slice()[i].hdr
    }
}

impl<B: AsRef<[u8]>> RxFrames for [(B, NetHdr)] {
    fn count(&self) -> usize {
        self.len()
    }
    fn bytes(&self, i: usize) -> &[u8] {
        self[i].0.as_ref()
    }
    fn hdr(&self, i: usize) -> NetHdr {
        self[i].1
    }
}

/// One item for the stack, in delivery order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Input frame `index`, bytes unchanged; `hdr` is its header, with `csum` set to
    /// [`Csum::Valid`] if GRO verified its checksums.
    Frame {
        /// Index in the burst.
        index: u16,
        /// Its offload header for the stack.
        hdr: NetHdr,
    },
    /// Coalesced packet `packet` ([`Gro::packet`]).
    Coalesced {
        /// Index among this burst's coalesced packets.
        packet: u16,
    },
}

/// Counters of a [`Gro`], cumulative.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroStats {
    /// Frames looked at.
    pub frames: u64,
    /// Coalesced packets delivered.
    pub coalesced: u64,
    /// Frames merged into coalesced packets (consumed).
    pub merged: u64,
    /// Bytes copied into coalescing buffers.
    pub bytes_copied: u64,
    /// Segments otherwise fit to merge whose IPv4 or TCP checksum GRO found wrong (passed on
    /// unmerged, for the stack to count and drop).
    pub bad_csum: u64,
    /// Runs delivered early because the table was full.
    pub evicted: u64,
    /// Merges not done because no buffer was free.
    pub no_buffer: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct FlowKey {
    src: [u8; 4],
    dst: [u8; 4],
    ports: u32,
}

/// What GRO needs to know about a segment that passed the eligibility checks.
#[derive(Debug, Clone, Copy)]
struct Seg {
    lay: Layout,
    payload: usize,
    seq: u32,
    flags: TcpFlags,
    id: u16,
    df: bool,
}

#[derive(Debug, Clone, Copy, Default)]
struct Run {
    open: bool,
    key: FlowKey,
    /// Order of opening in this burst (the oldest is evicted first).
    started: u32,
    first: u16,
    /// Header to deliver the first frame with if the run never grows.
    first_hdr: NetHdr,
    l3: u16,
    l4: u16,
    hdr_len: u16,
    mss: u16,
    segments: u16,
    /// Bytes of the coalesced frame so far (Ethernet header included).
    len: u32,
    next_seq: u32,
    next_id: u16,
    buf: Option<u16>,
}

#[derive(Debug, Clone, Copy)]
struct Packet {
    buf: u16,
    len: u32,
    hdr: NetHdr,
}

/// The receive-coalescing engine of one worker (see the module documentation).
///
/// Call order per burst: [`coalesce`](Self::coalesce) → hand the stack every
/// [`deliveries`](Self::deliveries) item in order (a frame of the burst, or
/// [`packet`](Self::packet)) → free the [`consumed`](Self::is_consumed) frames (at once) and
/// the others when the stack is done with them. The next `coalesce` reuses the buffers.
pub struct Gro {
    cfg: GroConfig,
    runs: [Run; MAX_RUNS],
    clock: u32,
    pool: Box<[u8]>,
    free_bufs: Vec<u16>,
    packets: Vec<Packet>,
    deliveries: Vec<Delivery>,
    consumed: [u64; MAX_BURST / 64],
    stats: GroStats,
}

impl core::fmt::Debug for Gro {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Gro")
            .field("cfg", &self.cfg)
            .field("deliveries", &self.deliveries.len())
            .field("packets", &self.packets.len())
            .field("stats", &self.stats)
            .finish()
    }
}

impl Gro {
    /// Builds the engine and allocates its buffers (`buffers` × [`MAX_COALESCED`] bytes, none
    /// when disabled). Out-of-range settings are clamped: `max_segments` to at least 2,
    /// `buffers` to `1..=MAX_BURST / 2`.
    pub fn new(cfg: GroConfig) -> Gro {
        let cfg = GroConfig {
            max_segments: cfg.max_segments.max(2),
            buffers: cfg.buffers.clamp(1, MAX_BURST / 2),
            ..cfg
        };
        let pool_len = if cfg.enabled { cfg.buffers * MAX_COALESCED } else { 0 };
        Gro {
            cfg,
            runs: [Run::default(); MAX_RUNS],
            clock: 0,
            pool: vec![0u8; pool_len].into_boxed_slice(),
            free_bufs: Vec::with_capacity(cfg.buffers),
            packets: Vec::with_capacity(cfg.buffers),
            deliveries: Vec::with_capacity(MAX_BURST),
            consumed: [0; MAX_BURST / 64],
            stats: GroStats::default(),
        }
    }

    /// The configuration in force (after clamping).
    pub fn config(&self) -> &GroConfig {
        &self.cfg
    }

    /// Counters since construction.
    pub fn stats(&self) -> GroStats {
        self.stats
    }

    /// Processes one burst: afterwards [`deliveries`](Self::deliveries) lists, in order, what
    /// the stack should see. Forgets the previous burst's result.
    ///
    /// # Panics
    /// If `frames` holds more than [`MAX_BURST`] frames (a programming error: no port
    /// returns more).
    pub fn coalesce<F: RxFrames + ?Sized>(&mut self, frames: &F) {
        let n = frames.count();
        assert!(n <= MAX_BURST, "gro: burst of {n} frames exceeds MAX_BURST ({MAX_BURST})");
        self.deliveries.clear();
        self.packets.clear();
        self.free_bufs.clear();
        self.free_bufs.extend((0..self.cfg.buffers as u16).rev());
        self.consumed = [0; MAX_BURST / 64];
        self.clock = 0;
        self.stats.frames += n as u64;
        if !self.cfg.enabled {
            for i in 0..n {
                self.deliveries.push(Delivery::Frame { index: i as u16, hdr: frames.hdr(i) });
            }
            return;
        }
        for i in 0..n {
            self.receive(frames, i);
        }
        // Flush what is left, oldest first.
        while let Some(r) =
            (0..MAX_RUNS).filter(|&r| self.runs[r].open).min_by_key(|&r| self.runs[r].started)
        {
            self.close(r);
        }
    }

    /// What the stack should see, in order.
    pub fn deliveries(&self) -> &[Delivery] {
        &self.deliveries
    }

    /// Coalesced packet `k` of the last burst: its bytes and header.
    ///
    /// # Panics
    /// If there is no packet `k` (use the indices of [`Delivery::Coalesced`]).
    pub fn packet(&self, k: usize) -> (&[u8], NetHdr) {
        let p = &self.packets[k];
        let start = usize::from(p.buf) * MAX_COALESCED;
        (&self.pool[start..start + p.len as usize], p.hdr)
    }

    /// Coalesced packet `k` of the last burst, writable (for a stack that parses its input in
    /// place); valid until the next [`coalesce`](Self::coalesce).
    ///
    /// # Panics
    /// If there is no packet `k` (use the indices of [`Delivery::Coalesced`]).
    pub fn packet_mut(&mut self, k: usize) -> (&mut [u8], NetHdr) {
        let p = self.packets[k];
        let start = usize::from(p.buf) * MAX_COALESCED;
        (&mut self.pool[start..start + p.len as usize], p.hdr)
    }

    /// Whether frame `i` of the last burst was merged into a coalesced packet (its bytes were
    /// copied; free it). A frame that was not is in [`deliveries`](Self::deliveries).
    pub fn is_consumed(&self, i: usize) -> bool {
        i < MAX_BURST && self.consumed[i / 64] & (1 << (i % 64)) != 0
    }

    fn set_consumed(&mut self, i: usize) {
        self.consumed[i / 64] |= 1 << (i % 64);
    }

    fn pass(&mut self, i: usize, hdr: NetHdr) {
        self.deliveries.push(Delivery::Frame { index: i as u16, hdr });
    }

    fn find(&self, key: FlowKey) -> Option<usize> {
        (0..MAX_RUNS).find(|&r| self.runs[r].open && self.runs[r].key == key)
    }

    fn receive<F: RxFrames + ?Sized>(&mut self, frames: &F, i: usize) {
        let bytes = frames.bytes(i);
        let hdr = frames.hdr(i);
        let Ok(lay) = layout::tcp_v4(bytes) else {
            // Not TCP/IPv4 with headers we can read: no flow to keep in order.
            return self.pass(i, hdr);
        };
        let key = flow_key(bytes, lay);
        let run = self.find(key);
        let (seg, hdr_out) = self.check(bytes, hdr, lay);
        let Some(seg) = seg else {
            if let Some(r) = run {
                self.close(r);
            }
            return self.pass(i, hdr_out);
        };
        if let Some(r) = run {
            if self.joins(frames, r, bytes, &seg) {
                self.merge(frames, r, i, bytes, &seg);
                if seg.flags.intersects(TcpFlags::PSH | TcpFlags::FIN)
                    || seg.payload < usize::from(self.runs[r].mss)
                {
                    self.close(r);
                }
                return;
            }
            self.close(r);
        }
        let starts = seg.payload > 0
            && !seg.flags.intersects(
                TcpFlags::SYN | TcpFlags::RST | TcpFlags::URG | TcpFlags::PSH | TcpFlags::FIN,
            );
        if starts {
            self.open(frames, i, key, &seg, hdr_out);
        } else {
            self.pass(i, hdr_out);
        }
    }

    /// Eligibility of a TCP/IPv4 frame (see "Merge rules"), and the header to pass it on with.
    fn check(&mut self, bytes: &[u8], hdr: NetHdr, lay: Layout) -> (Option<Seg>, NetHdr) {
        let ip = Ipv4Packet::new_unchecked(&bytes[lay.l3..]);
        if lay.l4 - lay.l3 != 20
            || usize::from(ip.total_len()) != bytes.len() - lay.l3
            || hdr.gso != Gso::None
        {
            return (None, hdr);
        }
        let ip_ok = checksum::sum(&bytes[lay.l3..lay.l4]) == 0xffff;
        let tcp_ok = match hdr.csum {
            Csum::Valid | Csum::Partial { .. } => true,
            Csum::None => {
                ip_ok
                    && l4_sum_ok(
                        ip.src_addr().octets(),
                        ip.dst_addr().octets(),
                        6,
                        &bytes[lay.l4..],
                    )
            }
        };
        if !(ip_ok && tcp_ok) {
            self.stats.bad_csum += 1;
            return (None, hdr);
        }
        let tcp = TcpPacket::new_unchecked(&bytes[lay.l4..]);
        let seg = Seg {
            lay,
            payload: bytes.len() - lay.payload,
            seq: tcp.seq_number(),
            flags: tcp.flags(),
            id: ip.ident(),
            df: ip.dont_frag(),
        };
        let hdr_out = match hdr.csum {
            Csum::None => NetHdr { csum: Csum::Valid, ..hdr },
            _ => hdr,
        };
        (Some(seg), hdr_out)
    }

    /// Whether `seg` (in `bytes`) may join run `r` (see "Merge rules").
    fn joins<F: RxFrames + ?Sized>(
        &mut self,
        frames: &F,
        r: usize,
        bytes: &[u8],
        seg: &Seg,
    ) -> bool {
        let run = &self.runs[r];
        let first = frames.bytes(usize::from(run.first));
        let (l3, l4, hl) = (usize::from(run.l3), usize::from(run.l4), usize::from(run.hdr_len));
        let Seg { lay, payload, seq, flags, id, df } = *seg;
        let (ip_a, ip_b) =
            (Ipv4Packet::new_unchecked(&first[l3..]), Ipv4Packet::new_unchecked(&bytes[l3..]));
        let (tcp_a, tcp_b) =
            (TcpPacket::new_unchecked(&first[l4..hl]), TcpPacket::new_unchecked(&bytes[l4..]));
        let same_headers = lay.l3 == l3
            && lay.payload == hl
            && first[..l3] == bytes[..l3]
            && ip_a.dscp() == ip_b.dscp()
            && ip_a.ecn() == ip_b.ecn()
            && ip_a.ttl() == ip_b.ttl()
            && ip_a.dont_frag() == df
            && (df || id == run.next_id)
            && !flags.contains(TcpFlags::CWR)
            && (tcp_a.flags() | TcpFlags::CWR | TcpFlags::PSH | TcpFlags::FIN)
                == (flags | TcpFlags::CWR | TcpFlags::PSH | TcpFlags::FIN)
            && first[l4 + 12] == bytes[l4 + 12]
            && tcp_a.window_len() == tcp_b.window_len()
            && tcp_a.ack_number() == tcp_b.ack_number()
            && tcp_a.options() == tcp_b.options();
        let fits = (1..=usize::from(run.mss)).contains(&payload)
            && seq == run.next_seq
            && run.segments < self.cfg.max_segments
            && run.len as usize - l3 + payload <= usize::from(u16::MAX);
        if !(same_headers && fits) {
            return false;
        }
        if run.buf.is_none() && self.free_bufs.is_empty() {
            self.stats.no_buffer += 1;
            return false;
        }
        true
    }

    /// Appends `seg` (frame `i`) to run `r`; `joins` said it may.
    fn merge<F: RxFrames + ?Sized>(
        &mut self,
        frames: &F,
        r: usize,
        i: usize,
        bytes: &[u8],
        seg: &Seg,
    ) {
        let buf = match self.runs[r].buf {
            Some(b) => b,
            None => {
                // Second member: the run moves into a buffer, starting with the first frame.
                let Some(b) = self.free_bufs.pop() else { return };
                let first = usize::from(self.runs[r].first);
                let src = frames.bytes(first);
                let at = usize::from(b) * MAX_COALESCED;
                self.pool[at..at + src.len()].copy_from_slice(src);
                self.stats.bytes_copied += src.len() as u64;
                self.set_consumed(first);
                self.runs[r].buf = Some(b);
                b
            }
        };
        let run = &mut self.runs[r];
        let at = usize::from(buf) * MAX_COALESCED;
        let end = at + run.len as usize;
        self.pool[end..end + seg.payload].copy_from_slice(&bytes[seg.lay.payload..]);
        if seg.flags.intersects(TcpFlags::PSH | TcpFlags::FIN) {
            let flags = at + usize::from(run.l4) + 13;
            self.pool[flags] |= (seg.flags & (TcpFlags::PSH | TcpFlags::FIN)).bits();
        }
        run.len += seg.payload as u32;
        run.segments += 1;
        run.next_seq = run.next_seq.wrapping_add(seg.payload as u32);
        run.next_id = run.next_id.wrapping_add(1);
        self.stats.bytes_copied += seg.payload as u64;
        self.set_consumed(i);
    }

    /// Opens a run on frame `i`, evicting the oldest run if the table is full.
    fn open<F: RxFrames + ?Sized>(
        &mut self,
        frames: &F,
        i: usize,
        key: FlowKey,
        seg: &Seg,
        hdr: NetHdr,
    ) {
        let slot = match (0..MAX_RUNS).find(|&r| !self.runs[r].open) {
            Some(r) => r,
            None => {
                let oldest = (0..MAX_RUNS).min_by_key(|&r| self.runs[r].started).unwrap_or(0);
                self.stats.evicted += 1;
                self.close(oldest);
                oldest
            }
        };
        self.runs[slot] = Run {
            open: true,
            key,
            started: self.clock,
            first: i as u16,
            first_hdr: hdr,
            l3: seg.lay.l3 as u16,
            l4: seg.lay.l4 as u16,
            hdr_len: seg.lay.payload as u16,
            mss: seg.payload as u16,
            segments: 1,
            len: frames.bytes(i).len() as u32,
            next_seq: seg.seq.wrapping_add(seg.payload as u32),
            next_id: seg.id.wrapping_add(1),
            buf: None,
        };
        self.clock += 1;
    }

    /// Delivers run `r`: its first frame if it never grew, else the coalesced packet.
    fn close(&mut self, r: usize) {
        let run = self.runs[r];
        self.runs[r].open = false;
        let Some(buf) = run.buf else {
            return self.pass(usize::from(run.first), run.first_hdr);
        };
        let at = usize::from(buf) * MAX_COALESCED;
        let frame = &mut self.pool[at..at + run.len as usize];
        let (l3, l4) = (usize::from(run.l3), usize::from(run.l4));
        let mut ip = Ipv4Packet::new_unchecked(&mut frame[l3..l4]);
        let (old, new) = (ip.total_len(), (run.len as usize - l3) as u16);
        let check = checksum::update16(ip.checksum(), old, new);
        ip.set_total_len(new);
        ip.set_checksum(check);
        let (src, dst) = (ip.src_addr().octets(), ip.dst_addr().octets());
        TcpPacket::new_unchecked(&mut frame[l4..])
            .set_checksum(checksum::pseudo_header_v4(src, dst, 6, 0));
        let hdr = NetHdr {
            csum: Csum::Valid,
            gso: Gso::TcpV4 { size: run.mss, hdr_len: run.hdr_len },
            segments: run.segments,
        };
        let k = self.packets.len();
        self.packets.push(Packet { buf, len: run.len, hdr });
        self.deliveries.push(Delivery::Coalesced { packet: k as u16 });
        self.stats.coalesced += 1;
        self.stats.merged += u64::from(run.segments);
    }
}

fn flow_key(bytes: &[u8], lay: Layout) -> FlowKey {
    let ip = Ipv4Packet::new_unchecked(&bytes[lay.l3..lay.l4]);
    let tcp = TcpPacket::new_unchecked(&bytes[lay.l4..lay.payload]);
    FlowKey {
        src: ip.src_addr().octets(),
        dst: ip.dst_addr().octets(),
        ports: (u32::from(tcp.src_port()) << 16) | u32::from(tcp.dst_port()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offload::testutil::{self, Spec};
    use libos::wire::checksum::reference;
    use proptest::prelude::*;

    type Frames = Vec<(Vec<u8>, NetHdr)>;
    /// Source, destination, source port, destination port.
    type Key = ([u8; 4], [u8; 4], u16, u16);

    const ACK: u8 = 0x10;
    const PSH: u8 = 0x08;
    const FIN: u8 = 0x01;

    /// `n` in-order segments of `mss` bytes (the last `last` bytes if given) of one flow.
    fn bulk(spec: &Spec, n: usize, mss: usize, last: Option<usize>) -> Frames {
        let mut seq = spec.seq;
        (0..n)
            .map(|j| {
                let len = if j + 1 == n { last.unwrap_or(mss) } else { mss };
                let payload: Vec<u8> = (0..len).map(|k| (seq as usize + k) as u8).collect();
                let s = Spec { seq, id: spec.id.wrapping_add(j as u16), ..spec.clone() };
                seq = seq.wrapping_add(len as u32);
                (testutil::frame(&s, &payload), NetHdr::NONE)
            })
            .collect()
    }

    fn payload_of(f: &[u8]) -> &[u8] {
        let lay = layout::tcp_v4(f).unwrap();
        &f[lay.payload..]
    }

    #[test]
    fn an_in_order_burst_coalesces_up_to_the_ipv4_limit() {
        let spec = Spec::default();
        let frames = bulk(&spec, 64, 1448, None);
        let mut gro = Gro::new(GroConfig::on());
        gro.coalesce(&frames[..]);
        // 45 × 1448 + 40 = 65200 fits in an IPv4 datagram, 46 × 1448 does not.
        assert_eq!(
            gro.deliveries(),
            [Delivery::Coalesced { packet: 0 }, Delivery::Coalesced { packet: 1 }]
        );
        let (p0, h0) = gro.packet(0);
        assert_eq!(
            h0,
            NetHdr { csum: Csum::Valid, gso: Gso::TcpV4 { size: 1448, hdr_len: 54 }, segments: 45 }
        );
        assert_eq!(p0.len(), 54 + 45 * 1448);
        assert_eq!(gro.packet(1).1.segments, 19);
        let all: Vec<u8> = frames.iter().flat_map(|(f, _)| payload_of(f).to_vec()).collect();
        let got: Vec<u8> =
            [gro.packet(0).0, gro.packet(1).0].iter().flat_map(|p| p[54..].to_vec()).collect();
        assert_eq!(got, all);
        assert!((0..64).all(|i| gro.is_consumed(i)));
        let s = gro.stats();
        assert_eq!((s.frames, s.coalesced, s.merged), (64, 2, 64));
        // The coalesced frame is a valid TSO input that splits back into the segments.
        let mut segs = Vec::new();
        struct Sink<'a>(&'a mut Vec<Vec<u8>>, Vec<u8>);
        impl crate::offload::tso::SegmentSink for Sink<'_> {
            fn next_buffer(&mut self, _: usize) -> Option<&mut [u8]> {
                Some(&mut self.1)
            }
            fn commit(&mut self, len: usize) {
                self.0.push(self.1[..len].to_vec());
            }
        }
        crate::offload::tso::split_frame(p0, &h0, &mut Sink(&mut segs, vec![0; 2000])).unwrap();
        let want: Vec<Vec<u8>> = frames[..45].iter().map(|(f, _)| f.clone()).collect();
        assert_eq!(segs, want);
    }

    #[test]
    fn psh_ends_a_run_as_its_last_member() {
        let mut frames = bulk(&Spec::default(), 6, 100, None);
        let spec3 = Spec { seq: 1300, id: 10, flags: ACK | PSH, ..Spec::default() };
        frames[3] = (testutil::frame(&spec3, payload_of(&frames[3].0)), NetHdr::NONE);
        let mut gro = Gro::new(GroConfig::on());
        gro.coalesce(&frames[..]);
        assert_eq!(gro.deliveries().len(), 2);
        let (p, h) = gro.packet(0);
        assert_eq!(h.segments, 4);
        assert_eq!(p[47], ACK | PSH, "PSH of the last member");
        assert_eq!(gro.packet(1).1.segments, 2);
    }

    #[test]
    fn a_bad_checksum_is_passed_alone_and_in_order() {
        let mut frames = bulk(&Spec::default(), 6, 100, None);
        let n = frames[2].0.len();
        frames[2].0[n - 1] ^= 0xff;
        let mut gro = Gro::new(GroConfig::on());
        gro.coalesce(&frames[..]);
        assert_eq!(
            gro.deliveries(),
            [
                Delivery::Coalesced { packet: 0 },
                Delivery::Frame { index: 2, hdr: NetHdr::NONE },
                Delivery::Coalesced { packet: 1 },
            ]
        );
        assert_eq!(gro.stats().bad_csum, 1);
        assert!(!gro.is_consumed(2));
        // frame 3 follows the gap in sequence? No: 2 was bad, so 3 starts a new run.
        assert_eq!(gro.packet(1).1.segments, 3);
    }

    #[test]
    fn a_pure_ack_of_the_flow_ends_the_run_first() {
        let mut frames = bulk(&Spec::default(), 4, 100, None);
        let ack = Spec { seq: 1400, ..Spec::default() };
        frames.insert(2, (testutil::frame(&ack, &[]), NetHdr::NONE));
        let mut gro = Gro::new(GroConfig::on());
        gro.coalesce(&frames[..]);
        let valid = NetHdr { csum: Csum::Valid, ..NetHdr::NONE };
        assert_eq!(
            gro.deliveries(),
            [
                Delivery::Coalesced { packet: 0 },
                Delivery::Frame { index: 2, hdr: valid },
                Delivery::Coalesced { packet: 1 },
            ]
        );
    }

    #[test]
    fn interleaved_flows_coalesce_separately() {
        let a = bulk(&Spec::default(), 5, 200, Some(50));
        let b = bulk(&Spec { sport: 1, vlans: vec![3], ..Spec::default() }, 5, 300, None);
        let frames: Frames = a.iter().zip(&b).flat_map(|(x, y)| [x.clone(), y.clone()]).collect();
        let mut gro = Gro::new(GroConfig::on());
        gro.coalesce(&frames[..]);
        // Flow a ends with a short segment (delivered then), b at the end of the burst.
        assert_eq!(
            gro.deliveries(),
            [Delivery::Coalesced { packet: 0 }, Delivery::Coalesced { packet: 1 }]
        );
        assert_eq!(gro.packet(0).1.segments, 5);
        assert_eq!(gro.packet(0).0.len(), 54 + 4 * 200 + 50);
        assert_eq!(gro.packet(1).0.len(), 58 + 5 * 300);
    }

    #[test]
    fn a_full_table_evicts_the_oldest_run() {
        let flows: Vec<Frames> = (0..9u16)
            .map(|f| bulk(&Spec { sport: 100 + f, ..Spec::default() }, 2, 100, None))
            .collect();
        // First segments of nine flows, then the second segments of flows 1..9: flow 0's run
        // is evicted (delivered as its one frame) for flow 8's, the other eight coalesce.
        let mut frames: Frames = flows.iter().map(|fl| fl[0].clone()).collect();
        frames.extend(flows[1..].iter().map(|fl| fl[1].clone()));
        let mut gro = Gro::new(GroConfig::on());
        gro.coalesce(&frames[..]);
        let s = gro.stats();
        assert_eq!((s.evicted, s.coalesced), (1, 8));
        let valid = NetHdr { csum: Csum::Valid, ..NetHdr::NONE };
        assert_eq!(gro.deliveries()[0], Delivery::Frame { index: 0, hdr: valid });
        // Nine flows taking turns thrash the table, as they do Linux's: nothing coalesces.
        let frames: Frames =
            (0..2).flat_map(|j| flows.iter().map(move |fl| fl[j].clone())).collect();
        gro.coalesce(&frames[..]);
        assert_eq!(gro.stats().coalesced, 8);
        assert_eq!(gro.deliveries().len(), 18);
    }

    #[test]
    fn without_buffers_runs_stop_growing() {
        let a = bulk(&Spec::default(), 3, 100, None);
        let b = bulk(&Spec { sport: 1, ..Spec::default() }, 3, 100, None);
        let frames: Frames = a.into_iter().chain(b).collect();
        let mut gro = Gro::new(GroConfig { buffers: 1, ..GroConfig::on() });
        gro.coalesce(&frames[..]);
        // Flow a takes the only buffer; flow b's runs cannot grow and pass frame by frame.
        assert_eq!(gro.deliveries().len(), 4);
        assert_eq!(gro.stats().no_buffer, 2);
        assert_eq!(gro.packet(0).1.segments, 3);
        // The next burst has its buffer back.
        gro.coalesce(&frames[3..]);
        assert_eq!(gro.deliveries(), [Delivery::Coalesced { packet: 0 }]);
    }

    #[test]
    fn disabled_passes_everything_unchanged() {
        let frames = bulk(&Spec::default(), 4, 100, None);
        let mut gro = Gro::new(GroConfig::default());
        gro.coalesce(&frames[..]);
        let want: Vec<Delivery> =
            (0..4).map(|i| Delivery::Frame { index: i, hdr: NetHdr::NONE }).collect();
        assert_eq!(gro.deliveries(), want);
        assert!(!gro.is_consumed(0));
    }

    #[test]
    fn coalesces_a_burst_received_from_a_port() {
        use crate::mem::{pair, MemConfig};
        let (mut a, mut b) = pair(MemConfig::default());
        let frames = bulk(&Spec::default(), 10, 1000, Some(10));
        let mut tx = Burst::new();
        a.alloc_burst(&mut tx, 10);
        for (d, (f, _)) in tx.as_mut_slice().iter_mut().zip(&frames) {
            a.room_mut(d)[..f.len()].copy_from_slice(f);
            d.len = f.len() as u32;
        }
        assert_eq!(a.tx_burst(&mut tx), 10);
        let mut rx = Burst::new();
        b.rx_burst(&mut rx);
        let mut gro = Gro::new(GroConfig::on());
        gro.coalesce(&PortFrames::new(&b, &rx));
        assert_eq!(gro.deliveries(), [Delivery::Coalesced { packet: 0 }]);
        assert_eq!(gro.packet(0).0.len(), 54 + 9010);
        rx.retain(|_| true);
        let mut i = 0;
        rx.retain(|_| {
            i += 1;
            !gro.is_consumed(i - 1)
        });
        assert!(rx.is_empty());
    }

    // ---- The naive reference ----------------------------------------------------------------

    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Item {
        Frame(usize, NetHdr),
        Coalesced(Vec<u8>, NetHdr),
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    struct Info {
        key: Option<Key>,
        eligible: bool,
        out: NetHdr,
        l3: usize,
        l4: usize,
        hl: usize,
    }

    fn be16(f: &[u8], at: usize) -> u16 {
        u16::from_be_bytes([f[at], f[at + 1]])
    }

    fn be32(f: &[u8], at: usize) -> u32 {
        u32::from_be_bytes([f[at], f[at + 1], f[at + 2], f[at + 3]])
    }

    /// Parses with plain offsets and checks everything with `checksum::reference`.
    fn info(f: &[u8], hdr: NetHdr) -> Info {
        let none = Info { key: None, eligible: false, out: hdr, l3: 0, l4: 0, hl: 0 };
        let mut l3 = 14;
        while f.len() >= l3 && (be16(f, l3 - 2) == 0x8100 || be16(f, l3 - 2) == 0x88a8) {
            l3 += 4;
        }
        if l3 > 22 || f.len() < l3 + 20 || be16(f, l3 - 2) != 0x0800 || f[l3] >> 4 != 4 {
            return none;
        }
        let ihl = usize::from(f[l3] & 15) * 4;
        let l4 = l3 + ihl;
        if ihl < 20 || f[l3 + 9] != 6 || be16(f, l3 + 6) & 0x3fff != 0 || f.len() < l4 + 20 {
            return none;
        }
        let hl = l4 + usize::from(f[l4 + 12] >> 4) * 4;
        if hl < l4 + 20 || f.len() < hl {
            return none;
        }
        let key = Some((
            [f[l3 + 12], f[l3 + 13], f[l3 + 14], f[l3 + 15]],
            [f[l3 + 16], f[l3 + 17], f[l3 + 18], f[l3 + 19]],
            be16(f, l4),
            be16(f, l4 + 2),
        ));
        let mut i = Info { key, ..none };
        if ihl != 20 || usize::from(be16(f, l3 + 2)) != f.len() - l3 || hdr.gso != Gso::None {
            return i;
        }
        let mut ph = f[l3 + 12..l3 + 20].to_vec();
        ph.extend_from_slice(&[0, 6]);
        ph.extend_from_slice(&((f.len() - l4) as u16).to_be_bytes());
        ph.extend_from_slice(&f[l4..]);
        let ip_ok = reference(&f[l3..l4]) == 0xffff;
        let tcp_ok = hdr.csum != Csum::None || reference(&ph) == 0xffff;
        if ip_ok && tcp_ok {
            i.eligible = true;
            if hdr.csum == Csum::None {
                i.out.csum = Csum::Valid;
            }
            (i.l3, i.l4, i.hl) = (l3, l4, hl);
        }
        i
    }

    struct RefRun {
        key: Key,
        members: Vec<usize>,
        started: usize,
    }

    /// What a naive GRO delivers for one burst, under the documented rules.
    fn reference_gro(frames: &Frames, max_segments: usize) -> Vec<Item> {
        let infos: Vec<Info> = frames.iter().map(|(f, h)| info(f, *h)).collect();
        let plen = |i: usize| frames[i].0.len() - infos[i].hl;
        let flags = |i: usize| frames[i].0[infos[i].l4 + 13];
        let mut out = Vec::new();
        let mut open: Vec<RefRun> = Vec::new();
        let close = |run: RefRun, out: &mut Vec<Item>| {
            let first = run.members[0];
            if run.members.len() == 1 {
                out.push(Item::Frame(first, infos[first].out));
                return;
            }
            let Info { l3, l4, hl, .. } = infos[first];
            let mut f = frames[first].0.clone();
            for &m in &run.members[1..] {
                f.extend_from_slice(&frames[m].0[hl..]);
                f[l4 + 13] |= flags(m) & (PSH | FIN);
            }
            let total = (f.len() - l3) as u16;
            f[l3 + 2..l3 + 4].copy_from_slice(&total.to_be_bytes());
            f[l3 + 10..l3 + 12].copy_from_slice(&[0, 0]);
            let c = !reference(&f[l3..l4]);
            f[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
            let mut ph = f[l3 + 12..l3 + 20].to_vec();
            ph.extend_from_slice(&[0, 6, 0, 0]);
            f[l4 + 16..l4 + 18].copy_from_slice(&reference(&ph).to_be_bytes());
            let hdr = NetHdr {
                csum: Csum::Valid,
                gso: Gso::TcpV4 { size: plen(first) as u16, hdr_len: hl as u16 },
                segments: run.members.len() as u16,
            };
            out.push(Item::Coalesced(f, hdr));
        };
        let joins = |run: &RefRun, i: usize| {
            let first = run.members[0];
            let (a, b) = (&frames[first].0, &frames[i].0);
            let Info { l3, l4, hl, .. } = infos[first];
            let n = run.members.len();
            let next_seq =
                run.members.iter().fold(be32(a, l4 + 4), |s, &m| s.wrapping_add(plen(m) as u32));
            let df = be16(a, l3 + 6) & 0x4000 != 0;
            infos[i].l3 == l3
                && infos[i].hl == hl
                && a[..l3] == b[..l3]
                && a[l3 + 1] == b[l3 + 1]
                && a[l3 + 8] == b[l3 + 8]
                && (be16(a, l3 + 6) & 0x4000) == (be16(b, l3 + 6) & 0x4000)
                && (df || be16(b, l3 + 4) == be16(a, l3 + 4).wrapping_add(n as u16))
                && flags(i) & 0x80 == 0
                && (flags(first) ^ flags(i)) & !(0x80 | PSH | FIN) == 0
                && a[l4 + 12] == b[l4 + 12]
                && a[l4 + 14..l4 + 16] == b[l4 + 14..l4 + 16]
                && a[l4 + 8..l4 + 12] == b[l4 + 8..l4 + 12]
                && a[l4 + 20..hl] == b[l4 + 20..hl]
                && plen(i) >= 1
                && plen(i) <= plen(first)
                && be32(b, l4 + 4) == next_seq
                && n < max_segments
                && run.members.iter().map(|&m| plen(m)).sum::<usize>() + hl - l3 + plen(i) <= 65535
        };
        for (i, &inf) in infos.iter().enumerate() {
            let Some(key) = inf.key else {
                out.push(Item::Frame(i, inf.out));
                continue;
            };
            let pos = open.iter().position(|r| r.key == key);
            if !inf.eligible {
                if let Some(p) = pos {
                    close(open.remove(p), &mut out);
                }
                out.push(Item::Frame(i, inf.out));
                continue;
            }
            if let Some(p) = pos {
                if joins(&open[p], i) {
                    open[p].members.push(i);
                    if flags(i) & (PSH | FIN) != 0 || plen(i) < plen(open[p].members[0]) {
                        close(open.remove(p), &mut out);
                    }
                    continue;
                }
                close(open.remove(p), &mut out);
            }
            if plen(i) > 0 && flags(i) & (0x02 | 0x04 | 0x20 | PSH | FIN) == 0 {
                if open.len() == MAX_RUNS {
                    let oldest = (0..open.len()).min_by_key(|&p| open[p].started).unwrap();
                    close(open.remove(oldest), &mut out);
                }
                open.push(RefRun { key, members: vec![i], started: i });
            } else {
                out.push(Item::Frame(i, inf.out));
            }
        }
        open.sort_by_key(|r| r.started);
        for run in open {
            close(run, &mut out);
        }
        out
    }

    /// A tiny deterministic generator for scenarios (xorshift64*).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        fn chance(&mut self, percent: u64) -> bool {
            self.below(100) < percent
        }
    }

    /// Random traffic: `flows` TCP flows in random interleaving, with short segments, PSH,
    /// FIN, window and option changes, drops (sequence gaps), retransmissions, bad checksums,
    /// IPv4 options, padding, pure ACKs, non-TCP frames, device-verified checksums.
    fn scenario(seed: u64, flows: usize, len: usize) -> Frames {
        let mut rng = Rng((seed << 1) | 1);
        let mut state: Vec<(Spec, usize)> = (0..flows)
            .map(|f| {
                let spec = Spec {
                    vlans: match rng.below(4) {
                        0 => vec![f as u16],
                        1 => vec![1, 2],
                        _ => vec![],
                    },
                    tcp_opts: if rng.chance(50) {
                        vec![1, 1, 8, 10, 0, 0, 0, 9, 0, 0, 0, 1]
                    } else {
                        vec![]
                    },
                    src: [10, 0, 0, (f % 3) as u8],
                    sport: 1000 + (f / 3) as u16,
                    seq: rng.next() as u32,
                    id: rng.next() as u16,
                    df: rng.chance(70),
                    ..Spec::default()
                };
                let mss = [1, 7, 100, 536, 1448][rng.below(5) as usize];
                (spec, mss)
            })
            .collect();
        let mut frames = Vec::new();
        while frames.len() < len {
            if rng.chance(3) {
                frames.push((vec![0xff; 42], NetHdr::NONE)); // ARP-ish
                continue;
            }
            let f = rng.below(flows as u64) as usize;
            let (spec, mss) = &mut state[f];
            let mut len = if rng.chance(10) { rng.below(*mss as u64 + 1) as usize } else { *mss };
            let mut s = spec.clone();
            s.flags = ACK;
            if rng.chance(8) {
                s.flags |= PSH;
            }
            if rng.chance(2) {
                s.flags |= FIN;
            }
            if rng.chance(2) {
                s.flags |= [0x02, 0x04, 0x20, 0x80, 0x40][rng.below(5) as usize];
            }
            if rng.chance(4) {
                spec.window = spec.window.wrapping_add(1);
                s.window = spec.window;
            }
            if rng.chance(4) && !spec.tcp_opts.is_empty() {
                spec.tcp_opts[7] = spec.tcp_opts[7].wrapping_add(1);
                s.tcp_opts = spec.tcp_opts.clone();
            }
            if rng.chance(3) {
                s.ip_opts = vec![1, 1, 1, 1];
            }
            if rng.chance(4) {
                s.ttl = 1;
            }
            if rng.chance(4) {
                len = 0;
            }
            if rng.chance(5) {
                s.seq = s.seq.wrapping_sub(*mss as u32); // a retransmission
            }
            let payload: Vec<u8> = (0..len).map(|k| (s.seq as usize + k) as u8 ^ f as u8).collect();
            let mut frame = testutil::frame(&s, &payload);
            let mut hdr = NetHdr::NONE;
            if rng.chance(20) {
                hdr.csum = if rng.chance(50) {
                    Csum::Valid
                } else {
                    Csum::Partial { start: s.l4() as u16, offset: 16 }
                };
            } else if rng.chance(5) && len > 0 {
                *frame.last_mut().unwrap() ^= 0x5a; // bad checksum
            }
            if rng.chance(3) {
                frame.extend_from_slice(&[0; 6]); // Ethernet padding
            }
            frames.push((frame, hdr));
            if !rng.chance(8) {
                // Not dropped before this point: the flow advances (a drop leaves a gap).
            }
            if !rng.chance(8) {
                spec.seq = s.seq.wrapping_add(len as u32);
                spec.id = s.id.wrapping_add(1);
            } else {
                spec.seq = spec.seq.wrapping_add(len as u32 + 1); // a gap
            }
        }
        frames
    }

    /// Flow key and payload of a delivered item.
    fn delivered<'a>(gro: &'a Gro, frames: &'a Frames, d: Delivery) -> &'a [u8] {
        match d {
            Delivery::Frame { index, .. } => &frames[usize::from(index)].0,
            Delivery::Coalesced { packet } => gro.packet(usize::from(packet)).0,
        }
    }

    fn key_and_payload(f: &[u8]) -> (Option<Key>, Vec<u8>) {
        let i = info(f, NetHdr::NONE);
        match layout::tcp_v4(f) {
            Ok(lay) if i.key.is_some() => {
                let ip = Ipv4Packet::new_unchecked(&f[lay.l3..]);
                let end = (lay.l3 + usize::from(ip.total_len())).clamp(lay.payload, f.len());
                (i.key, f[lay.payload..end].to_vec())
            }
            _ => (None, f.to_vec()),
        }
    }

    proptest! {
        /// GRO delivers exactly what the naive reference does, burst after burst; every frame
        /// is delivered or consumed exactly once; and each flow's bytes, in delivery order,
        /// are its bytes in arrival order.
        #[test]
        fn coalesce_matches_the_naive_reference(
            seed in any::<u64>(),
            flows in 1usize..12,
            len in 1usize..300,
            max_segments in prop_oneof![2u16..5, Just(64u16)],
            bursts in proptest::collection::vec(1usize..=64, 1..10),
        ) {
            let frames = scenario(seed, flows, len);
            let mut gro = Gro::new(GroConfig { max_segments, buffers: 64, ..GroConfig::on() });
            let mut at = 0;
            for b in bursts.iter().cycle() {
                if at >= frames.len() {
                    break;
                }
                let burst: Frames = frames[at..(at + b).min(frames.len())].to_vec();
                at += burst.len();
                gro.coalesce(&burst[..]);
                let got: Vec<Item> = gro.deliveries().iter().map(|&d| match d {
                    Delivery::Frame { index, hdr } => Item::Frame(usize::from(index), hdr),
                    Delivery::Coalesced { packet } => {
                        let (p, h) = gro.packet(usize::from(packet));
                        Item::Coalesced(p.to_vec(), h)
                    }
                }).collect();
                let want = reference_gro(&burst, usize::from(max_segments));
                prop_assert_eq!(&got, &want);

                // Each frame once: delivered as itself, or consumed into a coalesced packet.
                let mut seen = vec![0u32; burst.len()];
                let mut merged = 0;
                for d in gro.deliveries() {
                    match *d {
                        Delivery::Frame { index, .. } => seen[usize::from(index)] += 1,
                        Delivery::Coalesced { packet } => merged += usize::from(gro.packet(usize::from(packet)).1.segments),
                    }
                }
                for (i, &s) in seen.iter().enumerate() {
                    prop_assert_eq!(s + u32::from(gro.is_consumed(i)), 1, "frame {}", i);
                }
                prop_assert_eq!(merged, (0..burst.len()).filter(|&i| gro.is_consumed(i)).count());

                // Per flow, the bytes delivered equal the bytes that arrived, in order.
                let mut by_flow_in: std::collections::BTreeMap<_, Vec<u8>> = Default::default();
                for (f, _) in &burst {
                    let (k, p) = key_and_payload(f);
                    by_flow_in.entry(k).or_default().extend(p);
                }
                let mut by_flow_out: std::collections::BTreeMap<_, Vec<u8>> = Default::default();
                for &d in gro.deliveries() {
                    let (k, p) = key_and_payload(delivered(&gro, &burst, d));
                    by_flow_out.entry(k).or_default().extend(p);
                }
                prop_assert_eq!(by_flow_in, by_flow_out);
            }
        }

        /// GRO undoes TSO: the segments of a super-segment coalesce back into it, byte for byte.
        #[test]
        fn gro_of_tso_is_the_super_segment(
            spec in testutil::spec(),
            mss in prop_oneof![1u16..200, 500u16..1461],
            len in 0usize..65000,
        ) {
            let spec = Spec {
                ip_opts: vec![],
                flags: spec.flags & !(0x02 | 0x04 | 0x20) | ACK,
                ..spec
            };
            let len = len.min(65535 - 40 - spec.tcp_opts.len()).min(usize::from(mss) * 64);
            let payload: Vec<u8> = (0..len).map(|i| (i * 13) as u8).collect();
            let sup = testutil::super_segment(&spec, &payload);
            let hdr = NetHdr {
                csum: Csum::Partial { start: spec.l4() as u16, offset: 16 },
                gso: Gso::TcpV4 { size: mss, hdr_len: spec.hdr_len() as u16 },
                segments: 0,
            };
            struct Sink(Frames, Vec<u8>);
            impl crate::offload::tso::SegmentSink for Sink {
                fn next_buffer(&mut self, _: usize) -> Option<&mut [u8]> {
                    Some(&mut self.1)
                }
                fn commit(&mut self, len: usize) {
                    self.0.push((self.1[..len].to_vec(), NetHdr::NONE));
                }
            }
            let mut sink = Sink(Vec::new(), vec![0; 2000]);
            crate::offload::tso::split_frame(&sup, &hdr, &mut sink).unwrap();
            let segs = sink.0;
            let mut gro = Gro::new(GroConfig::on());
            gro.coalesce(&segs[..]);
            if segs.len() < 2 {
                prop_assert_eq!(gro.deliveries().len(), segs.len());
                return Ok(());
            }
            prop_assert_eq!(gro.deliveries(), &[Delivery::Coalesced { packet: 0 }][..]);
            let (p, h) = gro.packet(0);
            prop_assert_eq!(p, &sup[..]);
            prop_assert_eq!(h, NetHdr {
                csum: Csum::Valid,
                gso: Gso::TcpV4 { size: mss, hdr_len: spec.hdr_len() as u16 },
                segments: segs.len() as u16,
            });
        }
    }
}
