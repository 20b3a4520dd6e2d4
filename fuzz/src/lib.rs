//! # xdpos-fuzz: the fuzz targets of xdpos, as safe library code
//!
//! What it is: one function per `cargo fuzz` target ([`targets`]), each taking the fuzzer's
//! bytes, driving one parser or state machine of `libos`, `nic` or `xdpos-config`, and
//! asserting its invariants (a failed assertion or a panic inside the code under test is a
//! crash for libFuzzer). The binaries in `fuzz_targets/` only call these. `cargo test` in this
//! directory replays every target over its seed corpus (`corpus/<target>/`) and over the inputs
//! of crashes that were fixed (`regressions/<target>/`) without libFuzzer, on the stable
//! toolchain.
//!
//! What it never does: read the clock, touch the network, or loop without a bound: every loop
//! over fuzzer-chosen operations is capped, and time only moves through the `now` arguments.
//!
//! Structure-aware inputs: most targets read their input with [`arbitrary::Unstructured`] as a
//! sequence of operations (a frame to receive, a time step, a write, …) whose fields are biased
//! toward the interesting values (sequence numbers near the window, offsets that are multiples
//! of 8, …), so that the fuzzer spends its time past the first length check.
//!
//! References: docs/robustness.md (targets, corpus, campaigns, findings), libFuzzer's
//! documentation (<https://llvm.org/docs/LibFuzzer.html>), the property tests of `libos`
//! (`tcp/tests.rs`) whose invariants the TCP target reuses.
#![forbid(unsafe_code)]

use core::time::Duration;

use libos::batch::{Frame, FrameSlots};
use libos::{Instant, Stack};

pub mod arp_cache;
pub mod config;
pub mod fib;
pub mod frag;
pub mod frames;
pub mod offload;
pub mod stack;
pub mod tcp;
pub mod wire;

/// The targets by name, as `cargo fuzz` knows them (`fuzz_targets/<name>.rs`).
pub mod targets {
    pub use crate::arp_cache::run as arp_cache;
    pub use crate::config::run as config;
    pub use crate::fib::run as fib;
    pub use crate::frag::run as frag;
    pub use crate::offload::gro;
    pub use crate::offload::tso;
    pub use crate::stack::run as stack;
    pub use crate::tcp::run as tcp;
    pub use crate::wire::arp as wire_arp;
    pub use crate::wire::ethernet as wire_ethernet;
    pub use crate::wire::icmp as wire_icmp;
    pub use crate::wire::ipv4 as wire_ipv4;
    pub use crate::wire::tcp as wire_tcp;
    pub use crate::wire::udp as wire_udp;
    pub use crate::wire::vnet as wire_vnet;

    /// A target's entry point.
    pub type Target = fn(&[u8]);

    /// Every target with its name, for the corpus replay.
    pub const ALL: [(&str, Target); 15] = [
        ("wire_ethernet", wire_ethernet),
        ("wire_arp", wire_arp),
        ("wire_ipv4", wire_ipv4),
        ("wire_icmp", wire_icmp),
        ("wire_udp", wire_udp),
        ("wire_tcp", wire_tcp),
        ("wire_vnet", wire_vnet),
        ("frag", frag),
        ("arp_cache", arp_cache),
        ("config", config),
        ("fib", fib),
        ("tso", tso),
        ("gro", gro),
        ("tcp", tcp),
        ("stack", stack),
    ];
}

/// Most timer firings one time step may take before the target calls it a livelock.
pub const MAX_TIMER_STEPS: usize = 100_000;

/// Moves a stack's time from `now` by `d`, running each timer at its due time (as the worker
/// does) and draining what it sends; returns the new time. Panics if the timers never let time
/// move on (a timer that stays due after `handle_timeout`).
pub fn advance(s: &mut Stack, now: Instant, d: Duration) -> Instant {
    let end = now + d;
    let mut now = now;
    let mut steps = 0;
    while let Some(t) = s.poll_timeout().filter(|&t| t <= end) {
        steps += 1;
        assert!(steps < MAX_TIMER_STEPS, "timer livelock: {t:?} stays due at {now:?}");
        now = now.max(t);
        s.handle_timeout(now);
        drain_tx(s, now, 64);
    }
    end
}

/// Takes every frame the stack wants to send at `now`, `slots` at a time (at most 8: the
/// buffers are allocated per call, which costs under AddressSanitizer).
pub fn drain_tx(s: &mut Stack, now: Instant, slots: usize) -> Vec<Vec<u8>> {
    let slots = slots.clamp(1, 8);
    let mut out = Vec::new();
    for _ in 0..100_000 {
        let mut frames: Vec<Frame> = (0..slots).map(|_| Frame::empty(2048)).collect();
        let n = s.poll_tx(now, &mut FrameSlots::new(&mut frames));
        assert!(n <= slots);
        out.extend(frames[..n].iter().map(|f| f.bytes().to_vec()));
        if n < slots {
            return out;
        }
    }
    panic!("poll_tx never ran dry");
}

#[cfg(test)]
mod replay {
    //! Every target over its seed corpus and its fixed crashes, as an ordinary test.
    use std::path::Path;

    use super::targets::ALL;

    #[test]
    fn every_target_replays_its_corpus_and_regressions() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        for (name, run) in ALL {
            let mut inputs = 0;
            for dir in ["corpus", "regressions"] {
                let Ok(rd) = std::fs::read_dir(root.join(dir).join(name)) else { continue };
                for e in rd {
                    let path = e.unwrap().path();
                    let data = std::fs::read(&path).unwrap();
                    run(&data);
                    inputs += 1;
                }
            }
            assert!(inputs > 0, "target {name} has no seed corpus");
        }
    }
}
