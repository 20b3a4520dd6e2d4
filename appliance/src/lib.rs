//! # xdpos: the appliance
//!
//! The binary's library half: the namespace test rig ([`rig`]) used by the integration tests,
//! the benchmark harness ([`bench`]) and the demo; the CLI lives in `main.rs`.
#![forbid(unsafe_code)]

pub mod bench;
pub mod raw;
pub mod rig;
