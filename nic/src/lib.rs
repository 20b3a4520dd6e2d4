//! # nic: the device layer of xdpos
//!
//! What it is: NIC queues behind one batched trait ([`Port`]), the virtio-style descriptors that
//! travel between a queue and the stack ([`virtq`]), software offloads applied just before the
//! ring or just after it ([`offload`]), and the backends: [`afxdp`] (AF_XDP sockets with our own
//! ring layer and our own XDP program), [`mem`] (an in-memory pair for unit tests) and, with
//! the `dpdk` feature, `dpdk` (DPDK poll-mode drivers through a small C shim).
//!
//! What it owns: frame memory (UMEM), the rings, the XDP program and its attachment. Each port
//! belongs to one worker; nothing here is shared between workers or locked on the fast path.
//!
//! What it never does: protocol processing beyond what an offload engine does (it reads the
//! headers it must rewrite, through `libos::wire`), reading the clock, spawning threads.
//!
//! `unsafe` lives only in this crate, in the AF_XDP ring and memory code and the DPDK bindings;
//! every block says why it is sound (`// SAFETY:`).

pub mod afxdp;
pub mod busy_poll;
#[cfg(feature = "dpdk")]
pub mod dpdk;
mod error;
pub mod idle;
pub mod mem;
pub mod mmsg;
pub mod netdev;
pub mod offload;
mod port;
pub mod trafgen;
pub mod virtq;

pub use error::NicError;
pub use port::{Caps, FrameCounts, Port, PortStats};
pub use virtq::{Burst, Desc, DEFAULT_BURST, MAX_BURST};
