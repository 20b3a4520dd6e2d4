//! # Dropping capabilities after setup
//!
//! What it is: once the daemon has attached its steering programs, opened its AF_XDP sockets
//! and registered their UMEMs, nothing it does afterwards needs a capability on a current
//! kernel: the rings are memory, a kick is a `sendto` on a socket it owns, the steering maps
//! and the BPF links are file descriptors it holds (since Linux 6.5 the `bpf()` commands on a
//! held map or link fd no longer check `kernel.unprivileged_bpf_disabled`; on older kernels
//! keep `CAP_BPF`, see [`Keep`]). So the daemon drops every capability.
//!
//! Capabilities belong to **threads** (`capset(2)` changes only the calling thread's sets, and
//! a new thread starts with its creator's), so every thread of the daemon drops its own: each
//! worker when it starts, the control thread right after setup, and threads started later
//! (the metrics server) inherit the empty sets. `tests/daemon.rs` reads `CapEff` of every
//! task in `/proc/<pid>/task/*/status`.
//!
//! What it never does: raise a capability, or touch the bounding set of other threads.

use rustix::thread::{self, CapabilitySet, CapabilitySets};

/// Capabilities a thread keeps after setup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Keep {
    /// None (the default: nothing after setup needs one on Linux ≥ 6.5).
    #[default]
    Nothing,
    /// `CAP_BPF` and `CAP_NET_ADMIN`: for kernels before 6.5 with unprivileged BPF disabled,
    /// where every `bpf()` call (steering map updates, link detach) checks them.
    BpfAndNetAdmin,
}

impl Keep {
    fn set(self) -> CapabilitySet {
        match self {
            Keep::Nothing => CapabilitySet::empty(),
            Keep::BpfAndNetAdmin => CapabilitySet::BPF | CapabilitySet::NET_ADMIN,
        }
    }
}

/// Drops every capability of the calling thread except `keep` (effective, permitted and
/// inheritable; the ambient set is cleared). Afterwards the thread cannot regain any.
pub fn drop_thread(keep: Keep) -> std::io::Result<()> {
    let now = thread::capabilities(None)?;
    let keep = keep.set() & now.permitted;
    // The ambient set may be absent (old kernels): then there is nothing to clear.
    let _ = thread::clear_ambient_capability_set();
    thread::set_capabilities(
        None,
        CapabilitySets { effective: keep, permitted: keep, inheritable: CapabilitySet::empty() },
    )?;
    Ok(())
}

/// The calling thread's effective capabilities.
pub fn effective() -> std::io::Result<CapabilitySet> {
    Ok(thread::capabilities(None)?.effective)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_drops_its_own_capabilities_only() {
        let before = effective().unwrap();
        let after = std::thread::spawn(|| {
            drop_thread(Keep::Nothing).unwrap();
            effective().unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(after, CapabilitySet::empty());
        assert_eq!(effective().unwrap(), before, "other threads keep theirs");
    }
}
