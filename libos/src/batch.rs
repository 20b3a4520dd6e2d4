//! # Batches between the worker loop and the stack
//!
//! What it is: the two small traits through which a worker hands frames to the stack without
//! libos knowing the NIC layer ([`RxBatch`] for received frames, [`TxSlots`] for free transmit
//! buffers), the per-frame [`Verdict`] the stack returns, and [`Frame`], an owned frame buffer
//! that implements both for tests, the simulator and micro-benchmarks.
//!
//! What it owns: the contract on frame ownership. The worker (in `appliance`) implements the
//! traits over a `nic::Port` burst: frame `i` of an [`RxBatch`] is the UMEM bytes of descriptor
//! `i`, and the verdict tells the worker what to do with that descriptor afterwards:
//! - [`Verdict::Transmit`]: the stack rewrote the frame in place into a reply (ARP reply, ICMP
//!   echo reply, UDP echo); send it from the same memory with the given length and offload
//!   header (zero copy).
//! - [`Verdict::Consumed`]: the stack took what it needed (copied into a socket queue or a
//!   reassembly buffer, or counted it for a sink); free the frame.
//! - [`Verdict::Deliver`]: a UDP datagram for a socket in `Deliver` mode; hand the frame and
//!   the payload range to the socket's owner, which frees it afterwards (zero copy receive).
//! - [`Verdict::Drop`]: free the frame; the stack has counted it under the reason.
//!
//! What it never does: allocate (the traits hand out borrowed buffers), or hold a frame after
//! `handle_rx` returns: every frame of a batch has its verdict when the call returns.
//!
//! Invariants: a `Transmit` verdict's length never exceeds the frame's received length (the
//! slice the stack was given), so a reply always fits the memory it came from.

use std::net::SocketAddrV4;

use crate::stats::DropReason;
use crate::udp::UdpHandle;
use crate::wire::NetHdr;

/// What the worker does with one received frame once `handle_rx` returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Free the frame; it was dropped and counted.
    Drop(DropReason),
    /// Free the frame; its content was taken (copied or counted).
    Consumed,
    /// Send the frame from the same memory: it was rewritten in place into a reply of `len`
    /// bytes (the front of the buffer) with offload header `hdr`.
    Transmit {
        /// Length of the reply frame.
        len: usize,
        /// Offload metadata for the transmit descriptor.
        hdr: NetHdr,
    },
    /// A datagram for a `Deliver`-mode UDP socket: give the frame to the socket's owner.
    Deliver(Delivery),
}

impl Default for Verdict {
    /// `Drop(Truncated)`: what a frame gets if the stack never looked at it (it always does).
    fn default() -> Verdict {
        Verdict::Drop(DropReason::Truncated)
    }
}

/// A zero-copy UDP delivery: where the payload sits in the received frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// The socket the datagram is for.
    pub socket: UdpHandle,
    /// The sender.
    pub src: SocketAddrV4,
    /// The local address and port it was sent to.
    pub dst: SocketAddrV4,
    /// Offset of the UDP payload in the frame.
    pub offset: u32,
    /// Length of the UDP payload.
    pub len: u32,
}

/// A batch of received frames, as the worker's port handed them over.
pub trait RxBatch {
    /// Frames in the batch.
    fn len(&self) -> usize;

    /// Whether the batch is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Frame `i` (its received bytes, writable in place) and its offload header. `i < len()`;
    /// an implementation may return an empty slice for an out-of-range index.
    fn frame(&mut self, i: usize) -> (&mut [u8], NetHdr);

    /// Records the stack's verdict for frame `i`.
    fn set_verdict(&mut self, i: usize, verdict: Verdict);
}

/// Free transmit buffers the worker lends to `poll_tx`, filled front to back.
///
/// Protocol: `room()` returns the whole writable buffer of the next free slot (call it again
/// and the same slot comes back); after writing a frame at its front the stack calls
/// `commit(len, hdr)`, which moves to the next slot. A slot that is never committed stays free.
pub trait TxSlots {
    /// Slots still free.
    fn remaining(&self) -> usize;

    /// The next free slot's buffer, or `None` if none is left.
    fn room(&mut self) -> Option<&mut [u8]>;

    /// The slot returned by `room()` now holds a frame of `len` bytes with header `hdr`.
    fn commit(&mut self, len: usize, hdr: NetHdr);
}

/// An owned frame buffer with a length, an offload header and a verdict: the simplest
/// [`RxBatch`]/[`TxSlots`] element, for tests, the simulator and benchmarks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The buffer (its length is the room of the frame).
    pub buf: Vec<u8>,
    /// Bytes of frame at the front of `buf`.
    pub len: usize,
    /// Offload header.
    pub hdr: NetHdr,
    /// The stack's verdict after `handle_rx`.
    pub verdict: Verdict,
}

impl Frame {
    /// A frame holding a copy of `bytes`, with `room` bytes of buffer (at least `bytes.len()`).
    pub fn new(bytes: &[u8], room: usize) -> Frame {
        let mut buf = vec![0u8; room.max(bytes.len())];
        buf[..bytes.len()].copy_from_slice(bytes);
        Frame { buf, len: bytes.len(), hdr: NetHdr::NONE, verdict: Verdict::default() }
    }

    /// An empty frame with `room` bytes of buffer (a free TX slot).
    pub fn empty(room: usize) -> Frame {
        Frame { buf: vec![0u8; room], len: 0, hdr: NetHdr::NONE, verdict: Verdict::default() }
    }

    /// The frame's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.len.min(self.buf.len())]
    }
}

impl RxBatch for [Frame] {
    fn len(&self) -> usize {
        <[Frame]>::len(self)
    }

    fn frame(&mut self, i: usize) -> (&mut [u8], NetHdr) {
        match self.get_mut(i) {
            Some(f) => {
                let len = f.len.min(f.buf.len());
                (&mut f.buf[..len], f.hdr)
            }
            None => (&mut [], NetHdr::NONE),
        }
    }

    fn set_verdict(&mut self, i: usize, verdict: Verdict) {
        if let Some(f) = self.get_mut(i) {
            f.verdict = verdict;
            if let Verdict::Transmit { len, hdr } = verdict {
                f.len = len;
                f.hdr = hdr;
            }
        }
    }
}

/// [`TxSlots`] over a slice of [`Frame`]s: slot `i` is `frames[i]`; `used()` says how many
/// were committed.
#[derive(Debug)]
pub struct FrameSlots<'a> {
    frames: &'a mut [Frame],
    used: usize,
}

impl<'a> FrameSlots<'a> {
    /// Lends every frame of `frames` as a free slot.
    pub fn new(frames: &'a mut [Frame]) -> FrameSlots<'a> {
        FrameSlots { frames, used: 0 }
    }

    /// Slots committed so far (the frames `frames[..used]`).
    pub fn used(&self) -> usize {
        self.used
    }
}

impl TxSlots for FrameSlots<'_> {
    fn remaining(&self) -> usize {
        self.frames.len() - self.used
    }

    fn room(&mut self) -> Option<&mut [u8]> {
        self.frames.get_mut(self.used).map(|f| &mut f.buf[..])
    }

    fn commit(&mut self, len: usize, hdr: NetHdr) {
        if let Some(f) = self.frames.get_mut(self.used) {
            f.len = len.min(f.buf.len());
            f.hdr = hdr;
            self.used += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_batch_records_verdicts_and_reply_lengths() {
        let mut frames = vec![Frame::new(&[1, 2, 3, 4], 8), Frame::new(&[5], 1)];
        let b: &mut [Frame] = &mut frames;
        assert_eq!(RxBatch::len(b), 2);
        assert_eq!(b.frame(0).0, &[1, 2, 3, 4]);
        assert!(b.frame(7).0.is_empty());
        b.set_verdict(0, Verdict::Transmit { len: 3, hdr: NetHdr::NONE });
        b.set_verdict(1, Verdict::Consumed);
        b.set_verdict(9, Verdict::Consumed);
        assert_eq!(frames[0].bytes(), &[1, 2, 3]);
        assert_eq!(frames[1].verdict, Verdict::Consumed);
    }

    #[test]
    fn frame_slots_fill_front_to_back() {
        let mut frames = vec![Frame::empty(16), Frame::empty(16)];
        let mut s = FrameSlots::new(&mut frames);
        assert_eq!(s.remaining(), 2);
        s.room().unwrap()[0] = 7;
        s.commit(1, NetHdr::NONE);
        s.room().unwrap()[..2].copy_from_slice(&[8, 9]);
        s.commit(2, NetHdr::NONE);
        assert!(s.room().is_none());
        s.commit(5, NetHdr::NONE);
        assert_eq!((s.remaining(), s.used()), (0, 2));
        assert_eq!(frames[0].bytes(), &[7]);
        assert_eq!(frames[1].bytes(), &[8, 9]);
    }
}
