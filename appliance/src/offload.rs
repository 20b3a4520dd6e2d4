//! # Segmentation offloads around a port: TSO staging and GRO
//!
//! What it is: [`OffloadPort`], a [`Port`] (and [`WorkerPort`]) that wraps a device port and
//! does in software what a NIC with TSO and GRO does, so a worker runs over it unchanged
//! (DESIGN.md §1, §4: super-segments are split by `nic::offload` just before the ring):
//! - **TSO staging** ([`Offloads::tso`]): `alloc_burst` hands out, ahead of the device's own
//!   frames, a few preallocated staging buffers of [`STAGE`] bytes (virtual descriptors), so
//!   the stack's `poll_tx` sees a transmit slot larger than a UMEM frame and builds a TCP
//!   super-segment there (`TcpConfig::tso`). `tx_burst` splits each staged super-segment with
//!   [`nic::offload::tso::split_frame`] into device frames (headers templated, checksums
//!   complete) and sends those; a staged frame that is not a super-segment (an ACK, ARP) is
//!   copied into one device frame. Once the staging buffers are lent, the stack writes into
//!   device frames, and where one has room for more than a segment (a 4 KiB UMEM frame holds
//!   two) it may build a small super-segment there: that one is copied to a scratch area and
//!   split too, never sent whole.
//! - **GRO** ([`Offloads::gro`]): `rx_burst` runs [`nic::offload::gro::Gro`] over each
//!   received burst and hands the stack the coalesced packets (virtual descriptors into GRO's
//!   buffers, `NetHdr::segments > 1`) in place of their members, whose frames it frees at once.
//!
//! What it owns: the device port, the staging buffers, the GRO engine and its buffers, and a
//! queue of device frames cut from super-segments that the TX ring has not taken yet.
//!
//! What it never does: allocate after [`OffloadPort::new`], or drop a segment silently (a
//! super-segment that finds no free device frame for all its pieces is sent as far as it got
//! and counted in [`OffloadStats::split_short`]; TCP repairs the rest). Back-pressure: while
//! cut frames wait for the ring, `alloc_burst` lends no staging buffer and `tx_burst` takes
//! nothing new, so the worker keeps its backlog and the stack waits.
//!
//! Invariants: a virtual descriptor's `addr` has [`STAGE_TAG`] or [`GRO_TAG`] set, which no
//! device address has; a staging buffer is either free or lent (held by the worker) until
//! `tx_burst` or `free` returns it; GRO's packets live until the next `rx_burst`, and the
//! worker frees every received descriptor before it calls `rx_burst` again. Frame accounting is
//! the device's ([`WorkerPort::check_frames`] flushes the cut frames first).
//!
//! References: Linux `Documentation/networking/segmentation-offloads.rst`; virtio 1.2 §5.1.6.

use std::time::Duration;

use libos::wire::{Gso, NetHdr};
use nic::offload::gro::{Delivery, Gro, GroConfig, PortFrames};
use nic::offload::tso::{segment_count, split_frame, SegmentSink};
use nic::{Burst, Caps, Desc, FrameCounts, Port, PortStats};

use crate::worker::WorkerPort;

/// Bytes of one staging buffer: the largest IPv4 datagram and its Ethernet header.
pub const STAGE: usize = 64 * 1024 + 64;
/// Staging buffers per port.
pub const STAGES: usize = 4;
/// Scratch room after the staging buffers, for super-segments built in a device frame.
const SCRATCH_FRAME: usize = 16 * 1024;
/// Tag of a staging buffer's virtual address.
pub const STAGE_TAG: u64 = 1 << 62;
/// Tag of a coalesced packet's virtual address.
pub const GRO_TAG: u64 = 1 << 61;
/// Room kept in the queue of cut frames for one more super-segment (a 64 KiB payload in 45
/// segments of 1448 bytes).
const SPLIT_ROOM: usize = 48;

/// Which offloads an [`OffloadPort`] does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Offloads {
    /// Lend staging buffers to the stack and split its TCP super-segments.
    pub tso: bool,
    /// Coalesce received TCP segments.
    pub gro: bool,
}

/// Counters of an [`OffloadPort`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OffloadStats {
    /// Super-segments split.
    pub super_segments: u64,
    /// Device frames cut from them.
    pub split_frames: u64,
    /// Super-segments that found too few device frames (sent in part).
    pub split_short: u64,
    /// Staged frames that were not super-segments, copied into one device frame.
    pub staged_copies: u64,
    /// Coalesced packets handed to the stack.
    pub gro_packets: u64,
    /// Frames merged into them.
    pub gro_merged: u64,
}

/// A port with software TSO staging and GRO (see the module documentation).
pub struct OffloadPort<P: Port> {
    inner: P,
    offloads: Offloads,
    staging: Box<[u8]>,
    stage_free: Vec<u32>,
    gro: Gro,
    rx: Burst,
    /// Device frames ready for the TX ring, in order.
    pending: Burst,
    stats: OffloadStats,
}

impl<P: Port> std::fmt::Debug for OffloadPort<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OffloadPort")
            .field("offloads", &self.offloads)
            .field("stage_free", &self.stage_free.len())
            .field("pending", &self.pending.len())
            .field("stats", &self.stats)
            .finish()
    }
}

fn is_stage(d: &Desc) -> bool {
    d.addr & STAGE_TAG != 0
}

fn is_gro(d: &Desc) -> bool {
    d.addr & GRO_TAG != 0
}

impl<P: Port> OffloadPort<P> {
    /// Wraps `inner`; allocates the staging buffers (when TSO is on) and GRO's buffers (when
    /// GRO is on).
    pub fn new(inner: P, offloads: Offloads) -> OffloadPort<P> {
        let stages = if offloads.tso { STAGES } else { 0 };
        let gro = Gro::new(GroConfig { enabled: offloads.gro, ..GroConfig::default() });
        OffloadPort {
            inner,
            offloads,
            staging: vec![0u8; stages * STAGE + SCRATCH_FRAME].into_boxed_slice(),
            stage_free: (0..stages as u32).rev().collect(),
            gro,
            rx: Burst::new(),
            pending: Burst::new(),
            stats: OffloadStats::default(),
        }
    }

    /// The wrapped port.
    pub fn inner(&self) -> &P {
        &self.inner
    }

    /// What the offloads did.
    pub fn offload_stats(&self) -> OffloadStats {
        self.stats
    }

    /// The offloads in force.
    pub fn offloads(&self) -> Offloads {
        self.offloads
    }

    fn stage(&self, d: &Desc) -> usize {
        ((d.addr & !STAGE_TAG) as usize).min(STAGES.saturating_sub(1))
    }

    fn release_stage(&mut self, d: &Desc) {
        let k = self.stage(d) as u32;
        if !self.stage_free.contains(&k) {
            self.stage_free.push(k);
        }
    }

    /// Sends what waits in the queue of cut frames; returns how many the ring took.
    fn flush_pending(&mut self) -> usize {
        if self.pending.is_empty() {
            return 0;
        }
        let mut n = self.inner.tx_burst(&mut self.pending);
        if !self.pending.is_empty() {
            self.inner.reclaim();
            n += self.inner.tx_burst(&mut self.pending);
        }
        n
    }

    /// Turns staged frame `d` into device frames on the pending queue; `false` (nothing done)
    /// if the device has too few free frames for it right now.
    fn unstage(&mut self, d: &Desc) -> bool {
        let k = self.stage(d);
        let len = (d.len as usize).min(STAGE);
        self.cut(d, k * STAGE, len)
    }

    /// A super-segment the stack built in a device frame (the frame had room for more than
    /// one segment): copied into the scratch area and split from there; the frame is freed.
    fn split_device(&mut self, d: &Desc) -> bool {
        let len = (d.len as usize).min(SCRATCH_FRAME);
        let base = self.staging.len() - SCRATCH_FRAME;
        let src = self.inner.frame(d);
        let len = len.min(src.len());
        self.staging[base..base + len].copy_from_slice(&src[..len]);
        if !self.cut(d, base, len) {
            return false;
        }
        self.inner.free(d);
        true
    }

    /// Splits (or copies) the frame at `staging[at..at + len]` with header `d.hdr` into device
    /// frames on the pending queue; releases `d`'s staging buffer if it is one.
    fn cut(&mut self, d: &Desc, at: usize, len: usize) -> bool {
        let need = match d.hdr.gso {
            Gso::TcpV4 { size, hdr_len } => {
                segment_count(len.saturating_sub(usize::from(hdr_len)), size)
            }
            _ => 1,
        };
        // Wait for room on the pending queue, unless it is empty and still too small (a
        // super-segment of more than MAX_BURST segments, at a tiny path MTU): then send what
        // fits and let TCP repair the rest.
        let need = match need > self.pending.spare() {
            true if !self.pending.is_empty() => return false,
            true => self.pending.spare(),
            false => need,
        };
        let mut cut = Burst::new();
        if need > cut.spare() || self.inner.alloc_burst(&mut cut, need) < need {
            self.inner.reclaim();
            let more = need.saturating_sub(cut.len());
            if self.inner.alloc_burst(&mut cut, more) < more {
                self.inner.free_burst(&mut cut);
                return false;
            }
        }
        let frame = &self.staging[at..at + len];
        if matches!(d.hdr.gso, Gso::TcpV4 { .. }) {
            let mut sink =
                Cut { port: &mut self.inner, frames: &cut, next: 0, out: &mut self.pending };
            match split_frame(frame, &d.hdr, &mut sink) {
                Ok(s) => {
                    self.stats.super_segments += 1;
                    self.stats.split_frames += s.segments as u64;
                }
                Err(_) => self.stats.split_short += 1,
            }
            let used = sink.next;
            for i in used..cut.len() {
                let f = cut.as_slice()[i];
                self.inner.free(&f);
            }
        } else {
            let mut out = cut.as_slice()[0];
            self.inner.room_mut(&out)[..len].copy_from_slice(frame);
            out.len = len as u32;
            out.hdr = d.hdr;
            self.pending.push(out);
            self.stats.staged_copies += 1;
        }
        if is_stage(d) {
            self.release_stage(d);
        }
        true
    }

    /// Copies coalesced packet `d` (a reply the stack wrote in place; never for TCP) into a
    /// device frame on the pending queue.
    fn ungro(&mut self, d: &Desc) {
        let k = (d.addr & !GRO_TAG) as usize;
        let mut one = Burst::new();
        if self.inner.alloc_burst(&mut one, 1) == 1 {
            let (bytes, _) = self.gro.packet(k);
            let len = (d.len as usize).min(bytes.len());
            let mut out = one.as_slice()[0];
            let room = self.inner.room_mut(&out);
            let len = len.min(room.len());
            room[..len].copy_from_slice(&bytes[..len]);
            out.len = len as u32;
            out.hdr = d.hdr;
            self.pending.push(out);
        }
    }
}

/// A [`SegmentSink`] over device frames allocated beforehand: segment `i` goes into
/// `frames[i]` and, once committed, onto `out`.
struct Cut<'a, P: Port> {
    port: &'a mut P,
    frames: &'a Burst,
    next: usize,
    out: &'a mut Burst,
}

impl<P: Port> SegmentSink for Cut<'_, P> {
    fn next_buffer(&mut self, _len: usize) -> Option<&mut [u8]> {
        let d = *self.frames.as_slice().get(self.next)?;
        Some(self.port.room_mut(&d))
    }

    fn commit(&mut self, len: usize) {
        if let Some(&d) = self.frames.as_slice().get(self.next) {
            self.out.push(Desc { len: len as u32, hdr: NetHdr::NONE, ..d });
            self.next += 1;
        }
    }
}

impl<P: Port> Port for OffloadPort<P> {
    fn caps(&self) -> Caps {
        let c = self.inner.caps();
        Caps { tso: c.tso || self.offloads.tso, rx_gro: c.rx_gro || self.offloads.gro, ..c }
    }

    fn rx_burst(&mut self, out: &mut Burst) -> usize {
        if !self.offloads.gro {
            return self.inner.rx_burst(out);
        }
        let n = self.inner.rx_burst(&mut self.rx);
        if n == 0 {
            return 0;
        }
        self.gro.coalesce(&PortFrames::new(&self.inner, &self.rx));
        let before = out.len();
        for &dv in self.gro.deliveries() {
            match dv {
                Delivery::Frame { index, hdr } => {
                    let mut d = self.rx.as_slice()[usize::from(index)];
                    d.hdr = hdr;
                    out.push(d);
                }
                Delivery::Coalesced { packet } => {
                    let (bytes, hdr) = self.gro.packet(usize::from(packet));
                    self.stats.gro_packets += 1;
                    self.stats.gro_merged += u64::from(hdr.segments);
                    out.push(Desc {
                        addr: GRO_TAG | u64::from(packet),
                        len: bytes.len() as u32,
                        hdr,
                    });
                }
            }
        }
        for i in 0..n {
            if self.gro.is_consumed(i) {
                let d = self.rx.as_slice()[i];
                self.inner.free(&d);
            }
        }
        self.rx.clear();
        out.len() - before
    }

    fn tx_burst(&mut self, batch: &mut Burst) -> usize {
        if !self.offloads.tso && !self.offloads.gro {
            return self.inner.tx_burst(batch);
        }
        self.flush_pending();
        if !self.pending.is_empty() {
            return 0;
        }
        let mut taken = 0;
        for i in 0..batch.len() {
            if self.pending.spare() < SPLIT_ROOM {
                break;
            }
            let d = batch.as_slice()[i];
            if is_stage(&d) {
                if !self.unstage(&d) {
                    break;
                }
            } else if is_gro(&d) {
                self.ungro(&d);
            } else if matches!(d.hdr.gso, Gso::TcpV4 { .. }) {
                if !self.split_device(&d) {
                    break;
                }
            } else {
                self.pending.push(d);
            }
            taken += 1;
        }
        batch.consume_front(taken);
        self.flush_pending();
        taken
    }

    fn alloc_burst(&mut self, out: &mut Burst, n: usize) -> usize {
        let mut got = 0;
        // Staging buffers first, while no cut frame waits for the ring.
        while got < n && out.spare() > 0 && self.pending.is_empty() {
            let Some(k) = self.stage_free.pop() else { break };
            out.push(Desc { addr: STAGE_TAG | u64::from(k), len: 0, hdr: NetHdr::NONE });
            got += 1;
        }
        got + self.inner.alloc_burst(out, n - got)
    }

    fn free_burst(&mut self, batch: &mut Burst) {
        for i in 0..batch.len() {
            let d = batch.as_slice()[i];
            self.free(&d);
        }
        batch.clear();
    }

    fn free(&mut self, desc: &Desc) {
        if is_stage(desc) {
            self.release_stage(desc);
        } else if !is_gro(desc) {
            self.inner.free(desc);
        }
    }

    fn reclaim(&mut self) -> usize {
        let n = self.inner.reclaim();
        self.flush_pending();
        n
    }

    fn frame(&self, desc: &Desc) -> &[u8] {
        if is_stage(desc) {
            let k = self.stage(desc);
            &self.staging[k * STAGE..k * STAGE + (desc.len as usize).min(STAGE)]
        } else if is_gro(desc) {
            self.gro.packet((desc.addr & !GRO_TAG) as usize).0
        } else {
            self.inner.frame(desc)
        }
    }

    fn frame_mut(&mut self, desc: &Desc) -> &mut [u8] {
        if is_stage(desc) {
            let k = self.stage(desc);
            &mut self.staging[k * STAGE..k * STAGE + (desc.len as usize).min(STAGE)]
        } else if is_gro(desc) {
            self.gro.packet_mut((desc.addr & !GRO_TAG) as usize).0
        } else {
            self.inner.frame_mut(desc)
        }
    }

    fn room_mut(&mut self, desc: &Desc) -> &mut [u8] {
        if is_stage(desc) {
            let k = self.stage(desc);
            &mut self.staging[k * STAGE..(k + 1) * STAGE]
        } else if is_gro(desc) {
            self.gro.packet_mut((desc.addr & !GRO_TAG) as usize).0
        } else {
            self.inner.room_mut(desc)
        }
    }

    fn headroom(&self) -> usize {
        self.inner.headroom()
    }

    fn frame_counts(&self) -> FrameCounts {
        self.inner.frame_counts()
    }

    fn stats(&self) -> PortStats {
        self.inner.stats()
    }
}

impl<P: WorkerPort> WorkerPort for OffloadPort<P> {
    fn idle_wait(&mut self, max: Duration) {
        self.inner.idle_wait(max)
    }

    fn busy_poll(&mut self) {
        self.inner.busy_poll()
    }

    fn check_frames(&self) -> Result<FrameCounts, String> {
        if !self.pending.is_empty() {
            return Err(format!("{} cut frames still wait for the ring", self.pending.len()));
        }
        self.inner.check_frames()
    }

    #[inline(always)]
    fn rx_socket(&self, desc: &Desc) -> usize {
        self.inner.rx_socket(desc)
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddrV4};

    use libos::iface::route::Ipv4Cidr;
    use libos::wire::EthernetAddress;
    use libos::{Instant, Stack, StackConfig};
    use nic::mem::{pair, MemConfig, MemPort};

    use super::*;
    use crate::services::{Role, Services, ServicesConfig};
    use crate::worker::{Clock, Worker, WorkerConfig};

    fn host(
        port: OffloadPort<MemPort>,
        n: u8,
        services: &ServicesConfig,
        connect: Option<(SocketAddrV4, Role)>,
    ) -> Worker<OffloadPort<MemPort>, Services> {
        let ip = Ipv4Addr::new(10, 0, 0, n);
        let mut cfg =
            StackConfig::new(EthernetAddress([2, 0, 0, 0, 0, n]), &[Ipv4Cidr::new(ip, 24)]);
        cfg.arp.announce_count = 0;
        cfg.tcp.max_connections = 8;
        cfg.tcp.tso = port.offloads().tso;
        let mut stack = Stack::new(cfg, Instant::ZERO).unwrap();
        let mut app = Services::new(services, &mut stack).unwrap();
        if let Some((dst, role)) = connect {
            app.connect(Instant::ZERO, &mut stack, dst, role).unwrap();
        }
        Worker::new(port, stack, app, WorkerConfig::default(), Clock::new())
    }

    #[test]
    fn a_stream_arrives_whole_with_super_segments_split_and_segments_coalesced() {
        const BYTES: u64 = 4 << 20;
        let off = Offloads::default();
        let both = Offloads { tso: true, gro: true };
        for (a, b) in [
            (off, off),
            (Offloads { tso: true, gro: false }, Offloads { tso: false, gro: true }),
            (both, both),
        ] {
            let (pa, pb) = pair(MemConfig::default());
            let dst = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 9);
            let role = Role::Source { write: 65536, limit: Some(BYTES) };
            let mut wa =
                host(OffloadPort::new(pa, a), 1, &ServicesConfig::default(), Some((dst, role)));
            let sink = ServicesConfig { sink: Some(9), ..Default::default() };
            let mut wb = host(OffloadPort::new(pb, b), 2, &sink, None);
            let mut t = 0u64;
            while (wb.app().stats().closed == 0 || wa.app().stats().closed == 0)
                && t < 60_000_000_000
            {
                t += 20_000;
                wa.poll_once(Instant::from_nanos(t));
                wb.poll_once(Instant::from_nanos(t));
            }
            assert_eq!(wb.app().stats().bytes_in, BYTES, "{a:?} -> {b:?}");
            assert_eq!((wa.app().stats().failed, wb.app().stats().failed), (0, 0));
            let (sa, sb) = (wa.port().offload_stats(), wb.port().offload_stats());
            assert_eq!(sa.super_segments > 0, a.tso, "{sa:?}");
            assert_eq!(sa.split_short, 0);
            assert_eq!(sb.gro_packets > 0, b.gro, "{sb:?}");
            assert_eq!(wa.stack().tcp().stats().tso_frames > 0, a.tso);
            assert_eq!(wb.stack().tcp().stats().gro_frames > 0, b.gro);
            assert!(wa.finish().frames.is_ok() && wb.finish().frames.is_ok());
        }
    }
}
