//! # Software offloads
//!
//! Checksum completion, TCP segmentation (TSO/GSO) and receive coalescing (GRO), done in
//! software just before the TX ring or just after the RX ring when the device cannot.
