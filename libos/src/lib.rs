//! # libos: the library-OS network stack of one xdpos worker core
//!
//! What it is: the protocol code each worker runs over its own NIC queue(s): wire formats
//! ([`wire`]) and, as it grows, the sans-IO stack (Ethernet, ARP, IPv4, ICMP, UDP, TCP).
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

pub mod wire;
