//! # Placement: which CPU runs what during a measurement
//!
//! What it is: pinning of the harness's threads (load generator on [`GEN_CPU`], system under
//! test on [`DUT_CPU`], BENCHMARKS.md), placement of a veth's receive NAPI work ([`Napi`]), and
//! a per-CPU time sampler ([`CpuTimes`]) that records where the work landed, and the CPU time
//! other processes took during a window ([`Foreign`]: on a shared machine, a disturbed sample).
//!
//! Why NAPI placement matters on veth: a frame sent into a veth is queued on the peer's ring and
//! the peer's NAPI poll (its XDP program, the copy into an AF_XDP socket, the stack) is raised as
//! a softirq **on the sender's CPU**. With threaded NAPI (`/sys/class/net/<dev>/threaded`) the
//! poll runs in a kthread `napi/<dev>-<id>` instead, which can be pinned to either CPU. Which is
//! best differs per path; `docs/benchmarks.md` has the measurements.
//!
//! Caveats: NAPI kthreads are found by name (`napi/<dev>-*`) among the threads that appeared
//! when threading was switched on, because the names are not unique across namespaces. veth
//! recreates its NAPI (and the kthread) whenever XDP is attached or detached, so placement is
//! applied after the XDP programs of a measurement are in place, and again after any change.

use std::collections::BTreeSet;
use std::fmt;

use anyhow::Context;

use crate::rig::Netns;

/// CPU of the load generator, client or sink side.
pub const GEN_CPU: usize = 0;
/// CPU of the system under test.
pub const DUT_CPU: usize = 1;

/// Pins the calling thread to `cpu`.
pub fn pin(cpu: usize) -> anyhow::Result<()> {
    anyhow::ensure!(
        core_affinity::set_for_current(core_affinity::CoreId { id: cpu }),
        "cannot pin thread to CPU {cpu} (this machine has {} CPUs)",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    Ok(())
}

/// Where a device's receive NAPI poll runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Napi {
    /// Not threaded: a softirq on the CPU that raised it (for veth, the sender's).
    Softirq,
    /// Threaded NAPI, the kthread pinned to this CPU.
    Thread(usize),
}

impl fmt::Display for Napi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Napi::Softirq => f.write_str("softirq"),
            Napi::Thread(c) => write!(f, "napi-cpu{c}"),
        }
    }
}

impl std::str::FromStr for Napi {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Napi> {
        match s {
            "softirq" => Ok(Napi::Softirq),
            _ => s
                .strip_prefix("napi-cpu")
                .and_then(|c| c.parse().ok())
                .map(Napi::Thread)
                .ok_or_else(|| anyhow::anyhow!("unknown placement {s:?} (softirq, napi-cpuN)")),
        }
    }
}

/// Threads whose name starts with `napi/<dev>-`.
fn napi_threads(dev: &str) -> BTreeSet<i32> {
    let prefix = format!("napi/{dev}-");
    let Ok(dir) = std::fs::read_dir("/proc") else { return BTreeSet::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim_end().starts_with(&prefix))
        })
        .collect()
}

/// Places the receive NAPI work of `dev` (in namespace `ns`) as `napi` says; returns the PIDs
/// of the kthreads it pinned (none for [`Napi::Softirq`]). Call it after the device's XDP
/// program is attached.
pub fn place_napi(ns: &Netns, dev: &str, napi: Napi) -> anyhow::Result<Vec<i32>> {
    let path = format!("/sys/class/net/{dev}/threaded");
    match napi {
        Napi::Softirq => {
            ns.sh(&format!("echo 0 > {path}")).with_context(|| format!("unthread {dev}"))?;
            Ok(Vec::new())
        }
        Napi::Thread(cpu) => {
            // Toggle so the kthreads are (re)created now, and tell ours from namesakes in
            // other namespaces by comparing before and after.
            ns.sh(&format!("echo 0 > {path}")).with_context(|| format!("unthread {dev}"))?;
            let before = napi_threads(dev);
            ns.sh(&format!("echo 1 > {path}"))
                .with_context(|| format!("enable threaded NAPI on {dev}"))?;
            let ours: Vec<i32> = napi_threads(dev).difference(&before).copied().collect();
            anyhow::ensure!(
                !ours.is_empty(),
                "threaded NAPI on {dev}: no napi/{dev}-* kthread appeared (is XDP attached?)"
            );
            let mut set = rustix::thread::CpuSet::new();
            set.set(cpu);
            for &pid in &ours {
                let p = rustix::process::Pid::from_raw(pid)
                    .ok_or_else(|| anyhow::anyhow!("bad pid {pid}"))?;
                rustix::thread::sched_setaffinity(Some(p), &set)
                    .with_context(|| format!("pin napi kthread {pid} of {dev} to CPU {cpu}"))?;
            }
            Ok(ours)
        }
    }
}

/// Gives the threads `pids` (NAPI kthreads) the calling thread's nice value, so that a
/// worker that yields to them on a shared CPU weighs the same as they do.
pub fn match_nice(pids: &[i32]) -> anyhow::Result<()> {
    use rustix::process::{getpriority_process, setpriority_process, Pid};
    let nice = getpriority_process(None).context("read our nice value")?;
    for &pid in pids {
        let p = Pid::from_raw(pid).ok_or_else(|| anyhow::anyhow!("bad pid {pid}"))?;
        setpriority_process(Some(p), nice)
            .with_context(|| format!("set kthread {pid}'s nice value to {nice}"))?;
    }
    Ok(())
}

/// Cumulative per-CPU times from `/proc/stat` (clock ticks).
#[derive(Debug, Clone, Default)]
pub struct CpuTimes(Vec<[u64; 8]>);

/// Shares of one CPU's time over an interval, in percent.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuShare {
    /// Not idle (user + system + irq + softirq + steal).
    pub busy: f64,
    /// Hard and soft interrupt context (where softirq-mode NAPI runs).
    pub softirq: f64,
    /// User space.
    pub user: f64,
    /// Taken by the hypervisor for other guests (`steal`; 0 where it does not report it).
    pub steal: f64,
}

impl CpuTimes {
    /// Reads `/proc/stat` now.
    pub fn now() -> CpuTimes {
        let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let mut cpus = Vec::new();
        for line in text.lines() {
            let mut f = line.split_whitespace();
            let Some(name) = f.next() else { continue };
            if name.len() <= 3 || !name.starts_with("cpu") {
                continue;
            }
            let mut v = [0u64; 8];
            for (slot, x) in v.iter_mut().zip(f) {
                *slot = x.parse().unwrap_or(0);
            }
            cpus.push(v);
        }
        CpuTimes(cpus)
    }

    /// Shares per CPU between `self` (earlier) and `later`.
    pub fn shares(&self, later: &CpuTimes) -> Vec<CpuShare> {
        self.0
            .iter()
            .zip(&later.0)
            .map(|(a, b)| {
                // user nice system idle iowait irq softirq steal
                let d: Vec<f64> = (0..8).map(|i| b[i].saturating_sub(a[i]) as f64).collect();
                let total: f64 = d.iter().sum::<f64>().max(1.0);
                let pct = |x: f64| 100.0 * x / total;
                CpuShare {
                    busy: pct(total - d[3] - d[4]),
                    softirq: pct(d[5] + d[6]),
                    user: pct(d[0] + d[1]),
                    steal: pct(d[7]),
                }
            })
            .collect()
    }
}

/// Round trip of one cache line between CPUs `a` and `b`, in nanoseconds: two threads of their
/// own, pinned there, hand an atomic back and forth `rounds` times (the median of 3 tries). On
/// a VM this shows where the host put the two vCPUs: ~80 ns on this rig when they share an L3,
/// ~400 ns when they do not (docs/tcp.md, "the slow mode"). `None` if a thread cannot be
/// pinned or a try takes too long.
pub fn cache_line_round_trip_ns(a: usize, b: usize, rounds: u32) -> Option<f64> {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::{Duration, Instant};
    /// The most one try may take (a round trip is well under a microsecond).
    const LIMIT: Duration = Duration::from_secs(2);
    /// Either side gives up: the other stops waiting at once.
    const ABORT: u32 = u32::MAX;
    let mut tries = Vec::new();
    for _ in 0..3 {
        let flag = AtomicU32::new(0);
        let start = Instant::now();
        // Waits for `want` (the clock read every 4096 spins, off the round trip).
        let wait = |want: u32| {
            let mut spins = 0u32;
            loop {
                match flag.load(Ordering::Acquire) {
                    v if v == want => return true,
                    ABORT => return false,
                    _ => {}
                }
                spins = spins.wrapping_add(1);
                if spins % 4096 == 0 && start.elapsed() > LIMIT {
                    flag.store(ABORT, Ordering::Release);
                    return false;
                }
                std::hint::spin_loop();
            }
        };
        // Side `first` (on CPU `cpu`) writes the odd values and waits for the even ones; the
        // other side answers. The first side returns its time per round trip.
        let side = |cpu: usize, first: bool| -> Option<f64> {
            if !core_affinity::set_for_current(core_affinity::CoreId { id: cpu }) {
                flag.store(ABORT, Ordering::Release);
                return None;
            }
            let t0 = Instant::now();
            for i in 0..rounds {
                let (odd, even) = (2 * i + 1, 2 * i + 2);
                if first {
                    flag.store(odd, Ordering::Release);
                    if !wait(even) {
                        return None;
                    }
                } else {
                    if !wait(odd) {
                        return None;
                    }
                    flag.store(even, Ordering::Release);
                }
            }
            Some(t0.elapsed().as_nanos() as f64 / f64::from(rounds.max(1)))
        };
        let (ns, answered) = std::thread::scope(|s| {
            let peer = s.spawn(|| side(b, false));
            let ns = s.spawn(|| side(a, true)).join().ok().flatten();
            (ns, peer.join().ok().flatten().is_some())
        });
        tries.push(ns.filter(|_| answered)?);
    }
    tries.sort_by(f64::total_cmp);
    tries.get(1).copied()
}

/// CPU time of other people's processes: every task of the machine except this process, its
/// children and the kernel threads that do network work for the measurement (NAPI, softirq,
/// workqueues).
#[derive(Debug)]
pub struct Foreign(std::collections::HashMap<(u32, u32), (String, u64)>);

impl Foreign {
    /// Kernel threads that work for the measurement, by name prefix.
    const OURS: [&'static str; 4] = ["napi/", "ksoftirqd/", "kworker/", "migration/"];

    pub fn now() -> Foreign {
        let me = std::process::id();
        let mut m = std::collections::HashMap::new();
        let Ok(procs) = std::fs::read_dir("/proc") else { return Foreign(m) };
        for p in procs.filter_map(Result::ok) {
            let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if pid == me {
                continue;
            }
            let Ok(tasks) = std::fs::read_dir(p.path().join("task")) else { continue };
            for t in tasks.filter_map(Result::ok) {
                let Some(tid) = t.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                    continue;
                };
                let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else { continue };
                let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
                    continue;
                };
                let comm = &stat[open + 1..close];
                if Self::OURS.iter().any(|o| comm.starts_with(o)) {
                    continue;
                }
                let f: Vec<&str> = stat[close + 2..].split_whitespace().collect();
                // Our children (the DPDK ends: testpmd, xdpos on DPDK) work for the measurement.
                if f.get(1).and_then(|p| p.parse::<u32>().ok()) == Some(me) {
                    continue;
                }
                let ticks = f
                    .get(11)
                    .zip(f.get(12))
                    .and_then(|(u, s)| Some(u.parse::<u64>().ok()? + s.parse::<u64>().ok()?));
                if let Some(ticks) = ticks {
                    m.insert((pid, tid), (comm.to_string(), ticks));
                }
            }
        }
        Foreign(m)
    }

    /// Percent of one CPU other processes used since `self`, over `secs`, and the name of the
    /// busiest.
    pub fn since(&self, secs: f64) -> (f64, String) {
        let later = Foreign::now();
        let mut by: std::collections::HashMap<&str, u64> = std::collections::HashMap::new();
        for (k, (comm, ticks)) in &later.0 {
            let before = self.0.get(k).map_or(0, |(_, t)| *t);
            let d = ticks.saturating_sub(before);
            if d > 0 {
                *by.entry(comm.as_str()).or_default() += d;
            }
        }
        let hz = 100.0; // USER_HZ on Linux
        let total: u64 = by.values().sum();
        let top = by.iter().max_by_key(|(_, &t)| t).map(|(c, _)| c.to_string()).unwrap_or_default();
        (100.0 * total as f64 / hz / secs.max(1e-3), top)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn napi_placement_parses_and_prints() {
        for s in ["softirq", "napi-cpu0", "napi-cpu1"] {
            assert_eq!(s.parse::<Napi>().unwrap().to_string(), s);
        }
        assert!("napi".parse::<Napi>().is_err());
    }

    #[test]
    fn a_cache_line_round_trip_takes_time() {
        // Two CPUs, as on every rig here: a positive, finite figure (its size is the host's
        // business, see docs/tcp.md).
        let ns = cache_line_round_trip_ns(0, 1, 200).expect("pin two threads to CPUs 0 and 1");
        assert!(ns.is_finite() && ns > 0.0, "{ns}");
    }

    #[test]
    fn cpu_shares_add_up() {
        let a = CpuTimes(vec![[0; 8]]);
        let b = CpuTimes(vec![[10, 0, 20, 50, 0, 0, 10, 10]]);
        let s = a.shares(&b)[0];
        assert_eq!((s.busy, s.softirq, s.user, s.steal), (50.0, 10.0, 10.0, 10.0));
        assert!(!CpuTimes::now().0.is_empty());
    }
}
