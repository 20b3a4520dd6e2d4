//! # The batched port trait
//!
//! What it is: the one interface between a NIC queue and the code above it (the worker loop,
//! the stack, the benchmarks). A [`Port`] is one queue of one device with its own frame memory;
//! every backend (`afxdp`, `mem`, later `dpdk`) implements it.
//!
//! Batching is visible in the signatures: frames move as [`Burst`]s of up to [`MAX_BURST`]
//! descriptors; a backend acquires ring slots for the whole burst, fills them, publishes them with
//! one release store and kicks the kernel at most once per burst.
//!
//! Ownership: a frame handed out by [`Port::rx_burst`] or [`Port::alloc_burst`] is **held** by
//! the caller until it goes back through [`Port::tx_burst`] (sent from the same memory, no copy)
//! or [`Port::free_burst`]/[`Port::free`]. Only held frames can be read or written through
//! [`Port::frame`], [`Port::frame_mut`] and [`Port::room_mut`]; touching a frame the caller does
//! not hold is a programming error and panics (it would otherwise race with the kernel).
//!
//! Frame accounting: every frame of a port is in exactly one state of [`FrameCounts`] at all
//! times; [`FrameCounts::check`] verifies that after traffic.

use crate::virtq::{Burst, Desc};

/// What a port does below the stack, so the stack knows what it must do itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Caps {
    /// Received frames carry [`libos::wire::Csum::Valid`] when the device verified them.
    pub rx_csum: bool,
    /// The device completes [`libos::wire::Csum::Partial`] checksums on transmit at no cost to
    /// the worker (when false, the port completes them in software: see [`Port::tx_burst`]).
    pub tx_csum: bool,
    /// The device splits TCP super-segments ([`libos::wire::Gso::TcpV4`]) on transmit.
    pub tso: bool,
    /// Received frames may be coalesced runs of TCP segments.
    pub rx_gro: bool,
    /// Frames move between device and memory without a copy.
    pub zero_copy: bool,
    /// Bytes one frame can hold, headroom excluded.
    pub max_frame: usize,
}

/// Where a port's frames are right now. Every frame is in exactly one place.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FrameCounts {
    /// Frames the port owns in total.
    pub total: u32,
    /// On the port's free list, ready for the fill ring or for transmit.
    pub free: u32,
    /// Posted to the fill ring, not yet taken by the kernel.
    pub fill: u32,
    /// Written by the kernel into the RX ring, not yet received by the user.
    pub rx: u32,
    /// Held by the user (received or allocated, not yet sent or freed).
    pub held: u32,
    /// Posted to the TX ring, not yet taken by the kernel.
    pub tx: u32,
    /// Returned by the kernel on the completion ring, not yet reclaimed.
    pub completion: u32,
    /// Taken by the kernel from the fill or TX ring and not yet returned on the RX or
    /// completion ring (being copied, or queued inside the device). Derived from ring indices,
    /// independently of the other states.
    pub kernel: u32,
}

impl FrameCounts {
    /// Sum over all states.
    pub fn sum(&self) -> u64 {
        [self.free, self.fill, self.rx, self.held, self.tx, self.completion, self.kernel]
            .iter()
            .map(|&n| u64::from(n))
            .sum()
    }

    /// Checks the frame-accounting invariant: the states add up to the total.
    pub fn check(&self) -> Result<(), crate::NicError> {
        if self.sum() == u64::from(self.total) {
            Ok(())
        } else {
            Err(crate::NicError::Accounting(*self))
        }
    }
}

/// Per-port counters, written by the port's owner only.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Frames received.
    pub rx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Non-empty receive bursts (rx_packets / rx_bursts is the mean batch).
    pub rx_bursts: u64,
    /// Frames queued for transmit.
    pub tx_packets: u64,
    /// Bytes queued for transmit.
    pub tx_bytes: u64,
    /// Non-empty transmit bursts.
    pub tx_bursts: u64,
    /// Wake-ups issued to the kernel (transmit kicks and fill-ring wake-ups).
    pub kicks: u64,
    /// Transmit bursts that found the TX ring (or the free list behind it) too full for all
    /// their frames.
    pub tx_ring_full: u64,
    /// Times the fill ring could not be topped up because no frame was free.
    pub fill_starved: u64,
    /// Frames reclaimed from the completion ring.
    pub completions: u64,
    /// Descriptors handed back that the caller did not hold (double free, forged or stale
    /// descriptor): ignored and counted.
    pub invalid_descs: u64,
    /// Transmit kicks the kernel refused with a real error (not a full ring).
    pub kick_errors: u64,
    /// `Csum::Partial` checksums completed in software before the ring (the device could not).
    pub tx_csum_sw: u64,
}

/// One queue of one network device, moving frames in bursts.
///
/// Call order in a run-to-completion loop: `rx_burst` → process (rewrite in place) →
/// `tx_burst` / `free_burst` → `reclaim` as needed; `alloc_burst` for frames the worker
/// originates.
pub trait Port {
    /// What the device does below the stack.
    fn caps(&self) -> Caps;

    /// Receives up to the port's burst size (and at most `out.spare()`) frames, appending them to
    /// `out`. Returns how many were appended. Tops up the fill ring first.
    fn rx_burst(&mut self, out: &mut Burst) -> usize;

    /// Queues the frames of `batch` for transmit, from the front, and kicks the device once.
    /// Sent descriptors are removed from `batch`; those that did not fit stay, still held.
    /// Returns how many were queued.
    ///
    /// Every port accepts `Csum::Partial` frames: where the device cannot complete the
    /// checksum ([`Caps::tx_csum`] false) the port completes it in software just before the
    /// ring (`nic::offload::csum::complete`, counted in [`PortStats::tx_csum_sw`]). A frame
    /// whose partial checksum points outside it is dropped and counted in
    /// [`PortStats::invalid_descs`].
    fn tx_burst(&mut self, batch: &mut Burst) -> usize;

    /// Takes up to `n` free frames for transmit, appending descriptors of length 0 whose
    /// `addr` leaves the port's headroom in front. Returns how many were appended.
    fn alloc_burst(&mut self, out: &mut Burst, n: usize) -> usize;

    /// Returns every frame of `batch` to the port and empties the batch.
    fn free_burst(&mut self, batch: &mut Burst);

    /// Returns one held frame to the port.
    fn free(&mut self, desc: &Desc);

    /// Moves frames the device finished sending back to the free list. Returns how many.
    fn reclaim(&mut self) -> usize;

    /// The bytes of a held frame (`addr .. addr + len`).
    fn frame(&self, desc: &Desc) -> &[u8];

    /// The bytes of a held frame, for rewriting in place.
    fn frame_mut(&mut self, desc: &Desc) -> &mut [u8];

    /// All the room of a held frame from `desc.addr` to the end of its buffer, for building a
    /// frame in place; set `desc.len` to what was written.
    fn room_mut(&mut self, desc: &Desc) -> &mut [u8];

    /// Headroom in front of `addr` of a frame from `alloc_burst` (for prepending headers).
    fn headroom(&self) -> usize;

    /// Where every frame is right now.
    fn frame_counts(&self) -> FrameCounts;

    /// Counters of this port.
    fn stats(&self) -> PortStats;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounting_check_detects_a_missing_frame() {
        let c = FrameCounts { total: 10, free: 4, fill: 3, rx: 1, held: 1, ..Default::default() };
        assert!(c.check().is_err());
        let c = FrameCounts { kernel: 1, ..c };
        assert!(c.check().is_ok());
    }
}
