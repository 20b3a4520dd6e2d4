//! # AF_XDP backend
//!
//! What it is: AF_XDP sockets with our own ring layer (over `libc`'s XDP definitions) and our
//! own XDP program (loaded with libbpf-rs), behind the batched [`crate::Port`] trait.
//! DESIGN.md §5 records why not the `afxdp` or `xsk-rs` crates.
//!
//! - [`XdpProgram`]: the steering program attached to one interface; says what the appliance
//!   owns (a whole interface, or addresses and ports) and counts its verdicts.
//! - [`XskPort`]: one socket bound to one queue, with its own UMEM and rings, owned by one
//!   worker.
//! - [`XskGroup`]: several sockets (one per interface queue a worker polls) sharing one UMEM,
//!   so a frame received on one port is transmitted from the same memory on another
//!   ([`GroupPort`] is the port view of one member).
//! - [`FastPath`]: the router's XDP fast path (`bpf/fwd.bpf.c`): one forwarding program per
//!   interface over shared DIR-24-8, next-hop, neighbour and devmap maps; punts the rest to
//!   the sockets. [`XdpRedirect`]: a bare redirect, its benchmark baseline.
//! - [`cleanup`]: removes what a crashed instance left attached.
//!
//! Modules: `sys` (system calls), `ring` (the four rings), `umem` (frame memory and the free
//! list), `socket` (the port), `xdp_prog` (the program), `fast_path` (the forwarding program's
//! maps).

mod fast_path;
mod ring;
mod socket;
pub(crate) mod sys;
mod umem;
mod xdp_prog;

pub use fast_path::{
    FastPath, FastPathCounters, FastPathReader, FpNeighbors, FpNextHop, FpOutcome, FpPorts,
    FpTable, FwdProbe, ProbeRun, RedirectProbe, XdpRedirect, FP_MAX_NEXT_HOPS, FP_MAX_PORTS,
    FP_TBL8_GROUPS,
};
pub use socket::{
    BindMode, GroupPort, XdpStatistics, XskConfig, XskGroup, XskPort, XskStatsReader, DEFAULT_FILL,
    TX_HEADROOM,
};
pub use xdp_prog::{
    cleanup, Attach, AttachedMode, CleanupAction, Counter, L4Proto, VerdictReader, Verdicts,
    XdpMode, XdpProgram, FWD_PROG_NAME, MAX_QUEUES, PROG_NAME, REDIRECT_PROG_NAME,
};

/// Number of RX queues of `ifname` in the calling thread's namespace, if the driver says.
pub fn rx_queues(ifname: &str) -> Option<u32> {
    sys::rx_queues(ifname)
}
