//! Errors of the NIC layer: one enum, lowercase messages that name the resource and the value,
//! causes kept as sources.

use std::io;

use crate::FrameCounts;

/// What can go wrong setting up or running a NIC queue.
#[derive(Debug, thiserror::Error)]
pub enum NicError {
    /// A system call failed.
    #[error("af_xdp: {call} failed on {what}")]
    Sys {
        /// The call that failed (`setsockopt(XDP_UMEM_REG)`, `bind`, …).
        call: &'static str,
        /// The resource it was called on (`veth1 queue 3`).
        what: String,
        /// The kernel's answer.
        #[source]
        source: io::Error,
    },
    /// The interface does not exist in this network namespace.
    #[error("af_xdp: no interface named {0:?} in this network namespace")]
    NoSuchInterface(String),
    /// The queue does not exist on the interface.
    #[error("af_xdp: cannot bind {ifname} queue {queue}: device has {queues} queues")]
    NoSuchQueue {
        /// Interface name.
        ifname: String,
        /// Queue asked for.
        queue: u32,
        /// Queues the device has.
        queues: u32,
    },
    /// A configuration value is out of range.
    #[error("af_xdp: invalid {what}: {value} ({why})")]
    Invalid {
        /// The setting.
        what: &'static str,
        /// Its value.
        value: u64,
        /// What is allowed.
        why: &'static str,
    },
    /// Loading or attaching the XDP program failed.
    #[error("xdp: {what}")]
    Bpf {
        /// What was being done.
        what: String,
        /// libbpf's error.
        #[source]
        source: libbpf_rs::Error,
    },
    /// A DPDK call failed (nic::dpdk), or DPDK is used against its rules (a second EAL
    /// configuration in one process, a queue polled by two owners).
    #[error("dpdk: {what}: {why}")]
    Dpdk {
        /// What was being done (`rte_eal_init`, `start net_af_packet0`, …).
        what: String,
        /// DPDK's answer (its error code as text) or the rule broken.
        why: String,
    },
    /// The frame-accounting invariant does not hold.
    #[error("frame accounting broken: states sum to {sum} of {total} frames ({0:?})", sum = .0.sum(), total = .0.total)]
    Accounting(FrameCounts),
}

impl NicError {
    pub(crate) fn sys(call: &'static str, what: impl Into<String>, source: io::Error) -> Self {
        NicError::Sys { call, what: what.into(), source }
    }
}
