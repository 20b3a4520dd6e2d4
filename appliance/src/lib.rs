//! # xdpos: the appliance
//!
//! The binary's library half: the namespace test rig ([`rig`]) used by the integration tests,
//! the benchmark harness ([`bench`]), the AF_XDP UDP echo service ([`echo`]) and the demo
//! ([`demo`]); the CLI lives in `main.rs`.
#![forbid(unsafe_code)]

pub mod bench;
pub mod demo;
pub mod echo;
pub mod raw;
pub mod rig;
