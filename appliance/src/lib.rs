//! # xdpos: the appliance
//!
//! The binary's library half: the daemon (`xdpos run`, `xdpos check-config`: [`daemon`]), the
//! worker loop that runs a libos stack over one NIC queue ([`worker`]), the UDP echo service
//! built on it ([`echo`]), the demo ([`demo`]), the benchmark harness ([`bench`]), the TCP
//! services ([`services`]: sink, source, echo, sockperf, iperf3), software TSO staging and GRO
//! around a port ([`offload`]) and the namespace test rig ([`rig`]) it shares with the
//! integration tests; the CLI lives in `main.rs`.
#![forbid(unsafe_code)]

pub mod bench;
pub mod capture;
pub mod daemon;
pub mod demo;
pub mod dpdk;
pub mod echo;
pub mod fastpath;
pub mod forward;
pub mod metrics;
pub mod offload;
pub mod raw;
pub mod rig;
pub mod services;
pub mod worker;
