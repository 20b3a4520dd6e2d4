//! # The raw AF_XDP loops: rxdrop, txonly, l2fwd
//!
//! What it is: the three busy-polling loops of `xdpos bench raw`, generic over [`nic::Port`] so
//! tests can run them on the in-memory pair and the benchmark on an AF_XDP socket:
//! - [`rxdrop`]: receive a burst, count it, free it;
//! - [`txonly`]: transmit frames built once before the loop (every frame of the port is filled
//!   with the template up front, so the loop only sets lengths), reclaim completions;
//! - [`l2fwd`]: receive a burst, swap the Ethernet addresses in place, transmit the same frames
//!   back out (frames that do not fit the TX ring stay held and go first next time).
//!
//! What it never does: call the port per packet (only `*_burst` and `reclaim`, once per
//! iteration), allocate inside the loop, sleep, or run unbounded: every loop ends when the stop
//! flag is raised or its deadline passes (the clock is read once every [`CLOCK_EVERY`]
//! iterations).
//!
//! Counting: each loop publishes its running totals to a [`Published`] once per non-empty
//! batch (single writer: a relaxed store, no read-modify-write), which the harness reads at the
//! edges of its measurement window.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use nic::trafgen::LiveGen;
use nic::{Burst, Desc, NicError, Port, MAX_BURST};

use crate::raw::swap_macs;

/// Iterations between two reads of the clock (deadline check).
pub const CLOCK_EVERY: u64 = 1024;

/// Frames of the generator's first test run in a point; the rate it shows sizes the next ones
/// (each call costs ~20 ms of page-pool set-up, so the generator makes few, long calls and is
/// stopped through its `GenHandle`).
pub const GEN_FIRST: u32 = 65_536;

/// Runs the live generator until `done()` says so or `end` passes, in test runs sized from the
/// best rate seen so far to last 1.5× the time left (so there are few of them and none ends
/// inside the measurement window; the first is [`GEN_FIRST`] frames). Returns the frames sent.
pub fn paced(
    gen: &mut LiveGen,
    end: Instant,
    mut done: impl FnMut() -> bool,
) -> Result<u64, NicError> {
    let mut rate = 0.0f64;
    let mut last: Option<(Instant, u64)> = None;
    gen.run_while(|sent| {
        let now = Instant::now();
        if let Some((t, s)) = last {
            let dt = now.duration_since(t).as_secs_f64();
            if dt > 0.0 {
                rate = rate.max(sent.saturating_sub(s) as f64 / dt);
            }
        }
        last = Some((now, sent));
        if done() || now >= end {
            return None;
        }
        let left = end.duration_since(now).as_secs_f64();
        let n = (rate * left * 1.5).min(f64::from(u32::MAX)) as u32;
        Some(n.max(GEN_FIRST))
    })
}

/// Running totals of a loop, written by the loop only, read by anyone.
#[derive(Debug, Default)]
pub struct Published {
    packets: AtomicU64,
    bytes: AtomicU64,
    sent: AtomicU64,
}

impl Published {
    /// Totals so far: (packets, bytes) received (rxdrop, l2fwd) or queued (txonly).
    pub fn read(&self) -> (u64, u64) {
        (self.packets.load(Ordering::Relaxed), self.bytes.load(Ordering::Relaxed))
    }

    /// Frames queued for transmit so far (txonly, l2fwd).
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    #[inline]
    fn publish(&self, st: &LoopStats) {
        self.packets.store(st.packets, Ordering::Relaxed);
        self.bytes.store(st.bytes, Ordering::Relaxed);
        self.sent.store(st.sent, Ordering::Relaxed);
    }
}

/// When a loop stops, and where it publishes.
#[derive(Debug, Clone, Copy)]
pub struct LoopCtl<'a> {
    /// Raised by the harness (end of the point, or Ctrl-C).
    pub stop: &'a AtomicBool,
    /// Hard end, whatever happens.
    pub deadline: Instant,
    /// Running totals for the harness.
    pub out: &'a Published,
}

impl LoopCtl<'_> {
    #[inline]
    fn done(&self, iteration: u64) -> bool {
        self.stop.load(Ordering::Relaxed)
            || (iteration % CLOCK_EVERY == 0 && Instant::now() >= self.deadline)
    }
}

/// What a loop did, for the report and for the tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoopStats {
    /// Frames received (rxdrop, l2fwd) or queued for transmit (txonly).
    pub packets: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Frames queued for transmit (l2fwd, txonly).
    pub sent: u64,
    /// Loop iterations.
    pub iterations: u64,
    /// Iterations that moved nothing.
    pub idle: u64,
}

/// Receives and frees until stopped.
pub fn rxdrop<P: Port>(port: &mut P, ctl: LoopCtl<'_>) -> LoopStats {
    let mut st = LoopStats::default();
    let mut b = Burst::new();
    while !ctl.done(st.iterations) {
        st.iterations += 1;
        let n = port.rx_burst(&mut b);
        if n == 0 {
            st.idle += 1;
            continue;
        }
        st.packets += n as u64;
        st.bytes += b.iter().map(|d| u64::from(d.len)).sum::<u64>();
        port.free_burst(&mut b);
        ctl.out.publish(&st);
    }
    port.free_burst(&mut b);
    st
}

/// Fills every frame the port can hand out with `frame`, then returns them all. Returns how
/// many frames were filled. Allocates (a list of the held descriptors): call before the loop.
pub fn prefill<P: Port>(port: &mut P, frame: &[u8]) -> usize {
    let mut held: Vec<Desc> = Vec::new();
    let mut b = Burst::new();
    loop {
        port.reclaim();
        if port.alloc_burst(&mut b, MAX_BURST) == 0 {
            break;
        }
        for d in b.iter() {
            let room = port.room_mut(d);
            let n = frame.len().min(room.len());
            room[..n].copy_from_slice(&frame[..n]);
        }
        held.extend_from_slice(b.as_slice());
        b.clear();
    }
    let filled = held.len();
    for chunk in held.chunks(MAX_BURST) {
        for d in chunk {
            b.push(*d);
        }
        port.free_burst(&mut b);
    }
    filled
}

/// Transmits `len`-byte frames in batches of `batch` until stopped; the frames' bytes were
/// written once by [`prefill`] (call it first). Counts what `tx_burst` queued.
pub fn txonly<P: Port>(port: &mut P, len: u32, batch: usize, ctl: LoopCtl<'_>) -> LoopStats {
    let batch = batch.clamp(1, MAX_BURST);
    let mut st = LoopStats::default();
    let mut b = Burst::new();
    while !ctl.done(st.iterations) {
        st.iterations += 1;
        port.reclaim();
        if b.len() < batch {
            let have = b.len();
            port.alloc_burst(&mut b, batch - have);
            for d in &mut b.as_mut_slice()[have..] {
                d.len = len;
            }
        }
        if b.is_empty() {
            st.idle += 1;
            continue;
        }
        let sent = port.tx_burst(&mut b);
        if sent == 0 {
            st.idle += 1;
            continue;
        }
        st.sent += sent as u64;
        st.packets += sent as u64;
        st.bytes += sent as u64 * u64::from(len);
        ctl.out.publish(&st);
    }
    port.free_burst(&mut b);
    st
}

/// Receives, swaps MACs in place, transmits the same frames back out, until stopped. Frames
/// the TX ring cannot take stay held and are sent first on the next iteration (no userspace
/// loss; the kernel drops at the RX ring when the loop falls behind).
pub fn l2fwd<P: Port>(port: &mut P, ctl: LoopCtl<'_>) -> LoopStats {
    let mut st = LoopStats::default();
    let mut b = Burst::new();
    while !ctl.done(st.iterations) {
        st.iterations += 1;
        port.reclaim();
        let have = b.len();
        let n = port.rx_burst(&mut b);
        if n > 0 {
            for i in have..have + n {
                let d = b.as_slice()[i];
                swap_macs(port.frame_mut(&d));
                st.bytes += u64::from(d.len);
            }
            st.packets += n as u64;
        }
        if b.is_empty() {
            st.idle += 1;
            continue;
        }
        let sent = port.tx_burst(&mut b);
        st.sent += sent as u64;
        if n == 0 && sent == 0 {
            st.idle += 1;
        }
        ctl.out.publish(&st);
    }
    port.free_burst(&mut b);
    st
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use nic::mem::{pair, MemConfig};

    use super::*;

    fn frame(len: usize) -> Vec<u8> {
        let mut f = vec![0u8; len];
        f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 0xb]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 0xa]);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f
    }

    /// Sends `n` copies of `f` from `port`, reclaiming as it goes; bounded by a deadline.
    fn send<P: Port>(port: &mut P, f: &[u8], n: usize) -> usize {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut sent = 0;
        let mut b = Burst::new();
        while sent < n && Instant::now() < deadline {
            port.reclaim();
            port.alloc_burst(&mut b, (n - sent).min(32));
            for d in b.as_mut_slice() {
                d.len = f.len() as u32;
            }
            for d in b.iter() {
                port.room_mut(d)[..f.len()].copy_from_slice(f);
            }
            sent += port.tx_burst(&mut b);
            port.free_burst(&mut b);
        }
        sent
    }

    fn ctl<'a>(stop: &'a AtomicBool, out: &'a Published, ms: u64) -> LoopCtl<'a> {
        LoopCtl { stop, deadline: Instant::now() + Duration::from_millis(ms), out }
    }

    #[test]
    fn rxdrop_counts_every_frame_and_returns_them() {
        let (mut a, mut b) = pair(MemConfig::default());
        let f = frame(64);
        assert_eq!(send(&mut a, &f, 100), 100);
        let (stop, out) = (AtomicBool::new(false), Published::default());
        let st = rxdrop(&mut b, ctl(&stop, &out, 50));
        assert_eq!((st.packets, st.bytes), (100, 6400));
        assert_eq!(out.read(), (100, 6400));
        b.frame_counts().check().unwrap();
        assert_eq!(b.frame_counts().held, 0);
    }

    #[test]
    fn txonly_sends_the_prefilled_template() {
        let (mut a, mut b) = pair(MemConfig::default());
        let f = frame(128);
        assert!(prefill(&mut a, &f) > 0);
        let (stop, out) = (AtomicBool::new(false), Published::default());
        let st = txonly(&mut a, 128, 16, ctl(&stop, &out, 30));
        assert!(st.sent > 0);
        // What arrives is the template.
        let mut rx = Burst::new();
        assert!(b.rx_burst(&mut rx) > 0);
        for d in rx.iter() {
            assert_eq!(b.frame(d), &f[..]);
        }
        b.free_burst(&mut rx);
        a.frame_counts().check().unwrap();
    }

    #[test]
    fn l2fwd_swaps_macs_and_sends_back() {
        let (mut a, mut b) = pair(MemConfig::default());
        let f = frame(60);
        assert_eq!(send(&mut a, &f, 40), 40);
        let (stop, out) = (AtomicBool::new(false), Published::default());
        let st = l2fwd(&mut b, ctl(&stop, &out, 50));
        assert_eq!((st.packets, st.sent), (40, 40));
        let mut rx = Burst::new();
        let mut got = 0;
        while a.rx_burst(&mut rx) > 0 {
            for d in rx.iter() {
                let g = a.frame(d);
                assert_eq!(&g[0..6], &f[6..12]);
                assert_eq!(&g[6..12], &f[0..6]);
                got += 1;
            }
            a.free_burst(&mut rx);
        }
        assert_eq!(got, 40);
        b.reclaim();
        b.frame_counts().check().unwrap();
    }

    #[test]
    fn loops_end_on_the_stop_flag() {
        let (_a, mut b) = pair(MemConfig::default());
        let (stop, out) = (AtomicBool::new(true), Published::default());
        let st = rxdrop(
            &mut b,
            LoopCtl { stop: &stop, deadline: Instant::now() + Duration::from_secs(60), out: &out },
        );
        assert_eq!(st.iterations, 0);
    }
}
