//! # The interface: addresses, routes and neighbours
//!
//! What it is: the link-facing state of one interface that is not per-packet parsing:
//! [`route`] (interface prefixes and the longest-prefix-match table for originated traffic)
//! and [`neighbor`] (the ARP cache, its aging, and the datagrams waiting for resolution).
//!
//! What it never does: send or receive frames (the stack does, and asks these tables), or
//! allocate after construction.
//!
//! References: RFC 826, RFC 1122 §2.3.2 and §3.3.1, RFC 1812 §5.2.4.

pub mod neighbor;
pub mod route;
