//! # What this host has: the facts configuration validation checks against
//!
//! What it is: [`gather`] builds the [`Host`] that `xdpos_config::validate` checks a file
//! against: how many CPUs the machine has, which network interfaces exist **in the calling
//! thread's network namespace**, and how many receive queues each one's driver reports.
//!
//! Where the facts come from:
//! - CPUs: `/sys/devices/system/cpu/online` (`0-3` → 4: CPU numbers are what `[[workers]]
//!   cpu` names; a CPU that is possible but offline cannot run a pinned worker), falling back
//!   to `std::thread::available_parallelism`;
//! - interfaces: `/proc/thread-self/net/dev`, which answers for the calling *thread's*
//!   namespace (the rig's tests enter namespaces per thread; `/sys/class/net` shows the
//!   namespace `/sys` was mounted in, see docs/decisions.md);
//! - queues: `nic::afxdp::rx_queues` (`ETHTOOL_GCHANNELS`), `None` where the driver does not
//!   say (then the queue count is not checked).
//!
//! What it never does: change anything.

use std::collections::HashMap;

use xdpos_config::Host;

/// The facts of this host, from the calling thread's namespace.
pub fn gather() -> Host {
    Host { cpus: Some(cpus()), interfaces: Some(interfaces()) }
}

/// CPUs, counted as the highest online CPU number plus one.
pub fn cpus() -> usize {
    std::fs::read_to_string("/sys/devices/system/cpu/online")
        .ok()
        .and_then(|s| parse_cpu_list_max(s.trim()))
        .map(|max| max + 1)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// The highest CPU of a kernel CPU list (`0-3,8-11` → 11).
fn parse_cpu_list_max(s: &str) -> Option<usize> {
    s.split(',')
        .map(|part| part.rsplit('-').next().and_then(|n| n.trim().parse::<usize>().ok()))
        .try_fold(None::<usize>, |acc, n| n.map(|n| Some(acc.map_or(n, |a| a.max(n)))))
        .flatten()
}

/// Interfaces of the calling thread's namespace and their receive queue counts.
pub fn interfaces() -> HashMap<String, Option<u32>> {
    let text = std::fs::read_to_string("/proc/thread-self/net/dev").unwrap_or_default();
    parse_net_dev(&text)
        .into_iter()
        .map(|name| {
            let q = nic::afxdp::rx_queues(&name);
            (name, q)
        })
        .collect()
}

/// Interface names of a `/proc/net/dev` table (two header lines, then `name: counters`).
fn parse_net_dev(text: &str) -> Vec<String> {
    text.lines()
        .skip(2)
        .filter_map(|l| l.split_once(':').map(|(n, _)| n.trim().to_string()))
        .filter(|n| !n.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_and_net_dev_tables_parse() {
        assert_eq!(parse_cpu_list_max("0-1"), Some(1));
        assert_eq!(parse_cpu_list_max("0"), Some(0));
        assert_eq!(parse_cpu_list_max("0-3,8-11"), Some(11));
        assert_eq!(parse_cpu_list_max("x"), None);
        let dev = "Inter-|   Receive\n face |bytes\n    lo: 1 2 3\n  eth0: 4 5 6\n";
        assert_eq!(parse_net_dev(dev), ["lo", "eth0"]);
        let h = gather();
        assert!(h.cpus.unwrap() >= 1);
        assert!(h.interfaces.unwrap().contains_key("lo"), "loopback is in every namespace");
    }
}
