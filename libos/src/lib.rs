//! # libos: the library-OS network stack of one xdpos worker core
//!
//! What it is: the protocol code each worker runs over its own NIC queue(s): wire formats
//! ([`wire`]) and the sans-IO [`Stack`] (Ethernet, ARP, IPv4 with fragmentation and
//! reassembly, ICMP, UDP sockets, TCP ([`tcp`])), with a deterministic simulator ([`sim`])
//! that drives several stacks over a lossy virtual link.
//!
//! Layout: [`stack`] ties the layers together; [`batch`] is the interface to the worker loop
//! (received batches, transmit slots, verdicts); [`iface`] holds addresses, routes and the
//! ARP cache; [`ipv4`] fragmentation and reassembly; [`icmp`] the error policy and rate
//! limit; [`udp`] the sockets; [`tcp`] the TCP endpoints; [`stats`] drop reasons and
//! counters; [`time`] the `Instant` every call takes. A router worker adds [`fib`], the
//! longest-prefix-match forwarding table shared by all workers, and [`forward`], the IPv4
//! router over one stack per interface.
//!
//! What it owns: protocol knowledge. Parsing and emitting frames, checksums, and the
//! virtio-net-style offload header ([`wire::NetHdr`]) that travels with every frame between the
//! NIC layer and the stack.
//!
//! What it never does: read the clock, spawn threads, open sockets, make syscalls, or depend on
//! the `nic` crate. Time and randomness are arguments; the worker loop in `appliance` connects
//! the stack to a `nic` port. No `unsafe` here.
//!
//! Invariants: a view checked once (`new_checked`) never panics afterwards; a malformed packet
//! is dropped and counted, never an error that unwinds the worker.
#![forbid(unsafe_code)]

pub mod batch;
pub mod fib;
pub mod forward;
pub mod icmp;
pub mod iface;
pub mod ipv4;
mod ring;
pub mod sim;
pub mod stack;
pub mod stats;
pub mod tcp;
pub mod time;
pub mod udp;
pub mod wire;

pub use batch::{Delivery, Frame, FrameSlots, RxBatch, TxSlots, Verdict};
pub use stack::{ConfigError, NeighborHint, Stack, StackConfig};
pub use stats::{DropReason, Stats};
pub use time::Instant;
