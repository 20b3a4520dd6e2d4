//! # Several queues of one interface as one port, for one server worker
//!
//! What it is: [`QueueSet`], a [`Port`] (and [`WorkerPort`]) over the AF_XDP sockets of several
//! queues of one interface, so that one worker runs one stack over all of them (a server
//! `[[workers]]` entry with `queues = ["eth1:0", "eth1:1"]`). Each socket keeps its own UMEM;
//! a descriptor carries the index of the socket it belongs to in the bits of `addr` above
//! [`TAG_SHIFT`] (a UMEM offset is below 2^32: at most 2^20 frames of 4 KiB), so every call
//! that takes a descriptor goes to the socket whose memory holds the frame, and a reply leaves
//! on the queue it arrived on.
//!
//! One call per batch to each socket: `rx_burst` takes from every queue in turn (rotating the
//! first so none starves), `tx_burst` sorts the batch per socket into fixed bursts and kicks
//! each socket that has frames once; `alloc_burst` takes a call's frames from one socket (the
//! next one on the next call; the others when it runs short).
//!
//! Idle: one `epoll_wait` on every socket (`nic::idle`, through mio), woken by traffic on any
//! queue.
//!
//! What it never does: allocate on the fast path (the per-socket bursts are fixed arrays), or
//! move a frame between sockets' memories.

use std::time::Duration;

use nic::afxdp::XskPort;
use nic::{Burst, Caps, Desc, FrameCounts, Port, PortStats};

use crate::worker::WorkerPort;

/// Bit where the socket index starts in a descriptor's `addr`.
pub const TAG_SHIFT: u32 = 48;
const MASK: u64 = (1 << TAG_SHIFT) - 1;

/// The sockets of several queues of one interface as one port (see the module documentation).
/// Generic over the port so the unit tests run it over in-memory ports.
#[derive(Debug)]
pub struct QueueSet<P: Port = XskPort> {
    ports: Vec<P>,
    /// Per socket: the frames of a `tx_burst` that go to it.
    split: Vec<Burst>,
    /// Socket whose turn is first (rx) or next (alloc).
    next_rx: usize,
    next_alloc: usize,
    /// The epoll instance of the idle sleep (made at the first sleep).
    idle: Option<nic::idle::IdleWait>,
}

fn tag(d: &mut Desc, i: usize) {
    d.addr = (d.addr & MASK) | ((i as u64) << TAG_SHIFT);
}

fn index(d: &Desc) -> usize {
    (d.addr >> TAG_SHIFT) as usize
}

fn untagged(d: &Desc) -> Desc {
    Desc { addr: d.addr & MASK, ..*d }
}

impl<P: Port> QueueSet<P> {
    /// The sockets, in queue order (at least one).
    pub fn new(ports: Vec<P>) -> QueueSet<P> {
        let n = ports.len();
        QueueSet { ports, split: vec![Burst::new(); n], next_rx: 0, next_alloc: 0, idle: None }
    }

    /// The sockets.
    pub fn ports(&self) -> &[P] {
        &self.ports
    }

    fn port_of(&self, d: &Desc) -> usize {
        index(d).min(self.ports.len() - 1)
    }
}

impl<P: Port> Port for QueueSet<P> {
    fn caps(&self) -> Caps {
        self.ports[0].caps()
    }

    fn rx_burst(&mut self, out: &mut Burst) -> usize {
        let n = self.ports.len();
        let mut got = 0;
        for k in 0..n {
            let i = (self.next_rx + k) % n;
            let start = out.len();
            let m = self.ports[i].rx_burst(out);
            for d in &mut out.as_mut_slice()[start..start + m] {
                tag(d, i);
            }
            got += m;
        }
        self.next_rx = (self.next_rx + 1) % n;
        got
    }

    fn tx_burst(&mut self, batch: &mut Burst) -> usize {
        for d in batch.iter() {
            let i = self.port_of(d);
            // Cannot fail: a batch holds at most MAX_BURST descriptors.
            self.split[i].push(untagged(d));
        }
        batch.clear();
        let mut sent = 0;
        for (i, (p, b)) in self.ports.iter_mut().zip(&mut self.split).enumerate() {
            if b.is_empty() {
                continue;
            }
            sent += p.tx_burst(b);
            for d in b.iter() {
                let mut d = *d;
                tag(&mut d, i);
                batch.push(d);
            }
            b.clear();
        }
        sent
    }

    fn alloc_burst(&mut self, out: &mut Burst, n: usize) -> usize {
        let count = self.ports.len();
        let mut got = 0;
        for k in 0..count {
            if got == n {
                break;
            }
            let i = (self.next_alloc + k) % count;
            let start = out.len();
            let m = self.ports[i].alloc_burst(out, n - got);
            for d in &mut out.as_mut_slice()[start..start + m] {
                tag(d, i);
            }
            got += m;
        }
        self.next_alloc = (self.next_alloc + 1) % count;
        got
    }

    fn free_burst(&mut self, batch: &mut Burst) {
        for d in batch.iter() {
            let i = self.port_of(d);
            self.ports[i].free(&untagged(d));
        }
        batch.clear();
    }

    fn free(&mut self, desc: &Desc) {
        let i = self.port_of(desc);
        self.ports[i].free(&untagged(desc));
    }

    fn reclaim(&mut self) -> usize {
        self.ports.iter_mut().map(|p| p.reclaim()).sum()
    }

    fn frame(&self, desc: &Desc) -> &[u8] {
        self.ports[self.port_of(desc)].frame(&untagged(desc))
    }

    fn frame_mut(&mut self, desc: &Desc) -> &mut [u8] {
        let i = self.port_of(desc);
        self.ports[i].frame_mut(&untagged(desc))
    }

    fn room_mut(&mut self, desc: &Desc) -> &mut [u8] {
        let i = self.port_of(desc);
        self.ports[i].room_mut(&untagged(desc))
    }

    fn headroom(&self) -> usize {
        self.ports[0].headroom()
    }

    fn frame_counts(&self) -> FrameCounts {
        self.ports.iter().map(|p| p.frame_counts()).fold(FrameCounts::default(), |a, c| {
            FrameCounts {
                total: a.total + c.total,
                free: a.free + c.free,
                fill: a.fill + c.fill,
                rx: a.rx + c.rx,
                held: a.held + c.held,
                tx: a.tx + c.tx,
                completion: a.completion + c.completion,
                kernel: a.kernel + c.kernel,
            }
        })
    }

    fn stats(&self) -> PortStats {
        self.ports.iter().map(|p| p.stats()).fold(PortStats::default(), |a, s| PortStats {
            rx_packets: a.rx_packets + s.rx_packets,
            rx_bytes: a.rx_bytes + s.rx_bytes,
            rx_bursts: a.rx_bursts + s.rx_bursts,
            tx_packets: a.tx_packets + s.tx_packets,
            tx_bytes: a.tx_bytes + s.tx_bytes,
            tx_bursts: a.tx_bursts + s.tx_bursts,
            kicks: a.kicks + s.kicks,
            tx_ring_full: a.tx_ring_full + s.tx_ring_full,
            fill_starved: a.fill_starved + s.fill_starved,
            completions: a.completions + s.completions,
            invalid_descs: a.invalid_descs + s.invalid_descs,
            kick_errors: a.kick_errors + s.kick_errors,
            tx_csum_sw: a.tx_csum_sw + s.tx_csum_sw,
        })
    }
}

impl WorkerPort for QueueSet {
    fn idle_wait(&mut self, max: Duration) {
        // Frames already on a ring end the wait before it starts.
        if self.ports.iter_mut().any(|p| p.rx_ready()) {
            return;
        }
        let idle = match &mut self.idle {
            Some(w) => w,
            None => match nic::idle::IdleWait::new() {
                Ok(w) => self.idle.insert(w),
                // No epoll instance (out of descriptors): sleep on the first socket only.
                Err(_) => {
                    let ms = i32::try_from(max.as_millis()).unwrap_or(i32::MAX);
                    let _ = self.ports[0].wait_rx(ms);
                    return;
                }
            },
        };
        // The sockets are registered for this sleep only (nic::idle says why). An error
        // (EINTR) only ends the sleep early.
        let _ = idle.wait(self.ports.iter().map(|p| p.fd()), Some(max));
    }

    fn busy_poll(&mut self) {
        for p in &mut self.ports {
            p.busy_poll();
        }
    }

    fn check_frames(&self) -> Result<FrameCounts, String> {
        for p in &self.ports {
            p.check_frames()?;
        }
        Ok(self.frame_counts())
    }

    /// The socket of the tag: packet capture takes one queue's frames.
    #[inline(always)]
    fn rx_socket(&self, desc: &Desc) -> usize {
        self.port_of(desc)
    }
}

/// Frames received per queue of a worker's port (for its exit line).
pub trait PerQueue {
    /// Frames received, per socket in queue order.
    fn rx_per_queue(&self) -> Vec<u64>;
}

impl PerQueue for XskPort {
    fn rx_per_queue(&self) -> Vec<u64> {
        vec![self.stats().rx_packets]
    }
}

impl<P: Port> PerQueue for QueueSet<P> {
    fn rx_per_queue(&self) -> Vec<u64> {
        self.ports.iter().map(|p| p.stats().rx_packets).collect()
    }
}

#[cfg(test)]
mod tests {
    use nic::mem::{pair, MemConfig, MemPort};

    use super::*;

    /// Sends `tags` (one frame each, its first byte the tag) from `peer`.
    fn send(peer: &mut MemPort, tags: &[u8]) {
        let mut b = Burst::new();
        assert_eq!(peer.alloc_burst(&mut b, tags.len()), tags.len());
        for (d, &t) in b.as_mut_slice().iter_mut().zip(tags) {
            d.len = 60;
            peer.room_mut(d)[..60].fill(t);
        }
        assert_eq!(peer.tx_burst(&mut b), tags.len());
    }

    /// The first bytes of every frame `peer` received.
    fn recv(peer: &mut MemPort) -> Vec<u8> {
        let mut out = Vec::new();
        let mut b = Burst::new();
        while peer.rx_burst(&mut b) > 0 {
            out.extend(b.iter().map(|d| peer.frame(d)[0]));
            peer.free_burst(&mut b);
        }
        out
    }

    #[test]
    fn frames_go_back_to_the_queue_they_came_from_and_every_frame_is_accounted_for() {
        let (mut peer0, q0) = pair(MemConfig::default());
        let (mut peer1, q1) = pair(MemConfig::default());
        let mut set = QueueSet::new(vec![q0, q1]);
        send(&mut peer0, &[1, 2, 3]);
        send(&mut peer1, &[11, 12]);
        let mut rx = Burst::new();
        assert_eq!(set.rx_burst(&mut rx), 5);
        let mut firsts: Vec<u8> = rx.iter().map(|d| set.frame(d)[0]).collect();
        firsts.sort();
        assert_eq!(firsts, [1, 2, 3, 11, 12], "each frame read from its own queue's memory");
        assert_eq!(set.rx_per_queue(), [3, 2]);
        // Echo them all in one batch (rewritten in place), plus two frames allocated here.
        for d in rx.as_mut_slice() {
            let t = set.frame(d)[0];
            set.frame_mut(d)[0] = t + 100;
        }
        let mut extra = Burst::new();
        assert_eq!(set.alloc_burst(&mut extra, 2), 2);
        for d in extra.as_mut_slice() {
            d.len = 60;
            set.room_mut(d)[..60].fill(200);
        }
        for d in extra.iter() {
            rx.push(*d);
        }
        assert_eq!(set.tx_burst(&mut rx), 7);
        assert!(rx.is_empty());
        let (mut a, mut b) = (recv(&mut peer0), recv(&mut peer1));
        a.sort();
        b.sort();
        // Each reply left on its queue; the allocated frames from the first queue's memory
        // (one queue per call, the next one on the next call), so they left there.
        assert_eq!(a, [101, 102, 103, 200, 200]);
        assert_eq!(b, [111, 112]);
        let mut more = Burst::new();
        assert_eq!(set.alloc_burst(&mut more, 1), 1);
        more.as_mut_slice()[0].len = 60;
        assert_eq!(set.tx_burst(&mut more), 1);
        assert_eq!(recv(&mut peer1).len(), 1, "the next call takes the next queue");
        set.reclaim();
        let c = set.frame_counts();
        assert_eq!((c.held, c.total), (0, 2 * MemConfig::default().frames));
        assert!(set.check_frames_mem().is_ok());
        // A freed frame returns to its own queue.
        send(&mut peer1, &[7]);
        let mut one = Burst::new();
        assert_eq!(set.rx_burst(&mut one), 1);
        set.free_burst(&mut one);
        assert_eq!(set.frame_counts().held, 0);
        assert!(set.check_frames_mem().is_ok());
    }

    impl QueueSet<MemPort> {
        fn check_frames_mem(&self) -> Result<(), String> {
            for p in &self.ports {
                p.frame_counts().check().map_err(|e| e.to_string())?;
            }
            Ok(())
        }
    }
}
