//! # The router's XDP fast path: mode, table mirror, neighbour mirror
//!
//! What it is: the appliance side of issue 9. The library OS keeps the forwarding table
//! (`libos::fib::Fib`) and the neighbours (each interface's stack's ARP cache); this module
//! mirrors both into the maps of the forwarding XDP program ([`nic::afxdp::FastPath`],
//! `nic/bpf/fwd.bpf.c`), which forwards what they know and punts the rest to the workers'
//! AF_XDP sockets, where the router handles it as in userspace mode.
//!
//! - [`FastPathMode`]: `userspace` (no XDP forwarding), `xdp`, or `auto` (`userspace` where
//!   every socket bound in zero-copy mode, `xdp` otherwise), from `role.fast_path` or
//!   `xdpos forward --fast-path`.
//! - [`FastPathCtl`]: the control side of a running router: attaches the program, declares the
//!   ports, loads each new table ([`FastPathCtl::set_fib`]: double-buffered, see `nic`), reads
//!   the counters ([`FastPathCtl::counters`], [`FastPathCtl::reader`] for metrics).
//! - [`NeighborMirror`]: run by worker 0 at most every [`MIRROR_EVERY`] (1 ms) among its
//!   timers: the neighbours its stacks may send to now (`NeighborCache::usable`: static, confirmed within
//!   `reachable_time`, or being probed) are written into the map, changed MACs replaced, the
//!   others removed (expiry, failure): a missing neighbour means "punt", so the library OS
//!   resolves or confirms it and the fast path resumes once it is usable again. One system
//!   call per change, none per packet. Neighbours other workers learn reach worker 0 as
//!   `NeighborHint`s already (multi-queue).
//!
//! - [`PortWatch`]: asks the kernel at start and then, from worker 0's timers, every
//!   [`WATCH_EVERY`] (50 ms), whether each port accepts frames redirected into it
//!   ([`nic::netdev::accepts_xdp_redirect`]: `NETDEV_XDP_ACT_NDO_XMIT` in the device's XDP
//!   features, generic netlink). A veth has it only while its peer has NAPI on (an XDP program
//!   or GRO); a plain kernel host on the far end has neither, and a redirect into it fails:
//!   the kernel drops the frame, counted only as an `rx_queue_N_drops` of the *receiving*
//!   veth. Such a port's redirects are switched off ([`nic::afxdp::FpPorts::set_usable`]): the
//!   program punts what would leave there (`port_disabled`) and the library OS forwards it
//!   through the AF_XDP socket (copy-mode transmit needs no NAPI on the peer); a warning is
//!   logged once per port. When the feature comes back (GRO or a program on the peer), the
//!   redirects are switched back on.
//!
//! Consistency: a new table is loaded into the fast path before the workers get it, and the
//! fast path flips between two whole tables; a packet is looked up in the old or the new one,
//! never in a mix. Neighbour entries change one at a time, each atomically.

use std::net::Ipv4Addr;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;
use libos::fib::{Fib, NextHop};
use libos::forward::Router;
use libos::Instant;
use nic::afxdp::{
    FastPath, FastPathCounters, FastPathReader, FpNeighbors, FpNextHop, FpPorts, FpTable, XdpMode,
    XdpProgram,
};

/// Where the router forwards packets whose route and next hop are known.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FastPathMode {
    /// The library OS router on the AF_XDP sockets forwards everything.
    #[default]
    Userspace,
    /// The XDP program forwards what the maps know and punts the rest to the sockets.
    Xdp,
    /// `Userspace` where every socket bound in zero-copy mode (userspace forwarding is faster
    /// there), `Xdp` otherwise (copy mode costs an skb and a copy per transmitted frame).
    Auto,
}

impl FastPathMode {
    /// `userspace`, `xdp` or `auto`.
    pub fn as_str(self) -> &'static str {
        match self {
            FastPathMode::Userspace => "userspace",
            FastPathMode::Xdp => "xdp",
            FastPathMode::Auto => "auto",
        }
    }

    /// Parses `userspace`, `xdp` or `auto`.
    pub fn parse(s: &str) -> anyhow::Result<FastPathMode> {
        match s {
            "userspace" => Ok(FastPathMode::Userspace),
            "xdp" => Ok(FastPathMode::Xdp),
            "auto" => Ok(FastPathMode::Auto),
            _ => anyhow::bail!("fast path {s:?}: give userspace, xdp or auto"),
        }
    }

    /// What `self` becomes once the sockets are bound: `auto` resolves to `userspace` when
    /// every socket is zero-copy, to `xdp` otherwise.
    pub fn resolve(self, all_zero_copy: bool) -> FastPathMode {
        match self {
            FastPathMode::Auto if all_zero_copy => FastPathMode::Userspace,
            FastPathMode::Auto => FastPathMode::Xdp,
            m => m,
        }
    }
}

/// How often worker 0 compares its neighbour caches with the fast path's map.
pub const MIRROR_EVERY: Duration = Duration::from_millis(1);

/// The fast path's view of a table's next hops (index for index).
pub fn next_hops(fib: &Fib) -> Vec<FpNextHop> {
    fib.next_hops()
        .iter()
        .enumerate()
        .map(|(i, nh)| match (i, *nh) {
            (0, _) => FpNextHop::None,
            (_, NextHop::Forward { iface, via }) => FpNextHop::Forward { port: iface, via },
            (_, NextHop::Local) => FpNextHop::Local,
            (_, NextHop::Blackhole) => FpNextHop::Blackhole,
        })
        .collect()
}

/// One port of the fast path: interface index, MAC, IP MTU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FpPort {
    /// Interface index.
    pub ifindex: u32,
    /// MAC address (the source of forwarded frames, the destination they arrive with).
    pub mac: [u8; 6],
    /// IP MTU (larger packets are punted: the library OS fragments or answers).
    pub mtu: u32,
}

/// The control side of a router's fast path (see the module documentation).
#[derive(Debug)]
pub struct FastPathCtl {
    fp: Mutex<FastPath>,
    mode: FastPathMode,
}

impl FastPathCtl {
    /// Loads and attaches the forwarding program on every interface (`names[i]` is port `i`):
    /// the programs (for the sockets to register in) and the control. Nothing is forwarded
    /// until [`activate`](Self::activate).
    pub fn attach(names: &[&str], mode: XdpMode) -> anyhow::Result<(Vec<XdpProgram>, Self)> {
        let (progs, fp) = FastPath::attach(names, mode)
            .with_context(|| format!("attach the forwarding program to {}", names.join(",")))?;
        Ok((progs, FastPathCtl { fp: Mutex::new(fp), mode: FastPathMode::Userspace }))
    }

    /// Resolves `requested` (see [`FastPathMode::resolve`]); for `xdp`, declares the ports,
    /// loads `fib` and starts forwarding. Returns the mode in force.
    pub fn activate(
        &mut self,
        requested: FastPathMode,
        all_zero_copy: bool,
        ports: &[FpPort],
        fib: &Fib,
    ) -> anyhow::Result<FastPathMode> {
        let mode = requested.resolve(all_zero_copy);
        let fp = self.fp.get_mut().map_err(|_| anyhow::anyhow!("fast path lock poisoned"))?;
        if mode == FastPathMode::Xdp {
            for (i, p) in ports.iter().enumerate() {
                fp.set_port(i, p.ifindex, p.mac, p.mtu)?;
            }
            let t = std::time::Instant::now();
            load(fp, fib)?;
            tracing::info!(
                routes = fib.routes(),
                ms = t.elapsed().as_millis() as u64,
                "fast path table loaded"
            );
            fp.enable(true);
        } else {
            fp.enable(false);
        }
        self.mode = mode;
        Ok(mode)
    }

    /// The mode in force (`userspace` or `xdp`).
    pub fn mode(&self) -> FastPathMode {
        self.mode
    }

    /// Mirrors a new table (before the workers get it). Returns once no packet can still be
    /// using the table before the last.
    pub fn set_fib(&self, fib: &Fib) -> anyhow::Result<()> {
        if self.mode != FastPathMode::Xdp {
            return Ok(());
        }
        let mut fp = self.fp.lock().map_err(|_| anyhow::anyhow!("fast path lock poisoned"))?;
        load(&mut fp, fib)
    }

    /// The program's counters, summed over CPUs.
    pub fn counters(&self) -> anyhow::Result<FastPathCounters> {
        let fp = self.fp.lock().map_err(|_| anyhow::anyhow!("fast path lock poisoned"))?;
        Ok(fp.counters()?)
    }

    /// A reader of the counters for another thread (metrics, at scrape time).
    pub fn reader(&self) -> anyhow::Result<FastPathReader> {
        let fp = self.fp.lock().map_err(|_| anyhow::anyhow!("fast path lock poisoned"))?;
        Ok(fp.reader()?)
    }

    /// A writer of the neighbour map (for worker 0's [`NeighborMirror`]).
    pub fn neighbors(&self) -> anyhow::Result<FpNeighbors> {
        let fp = self.fp.lock().map_err(|_| anyhow::anyhow!("fast path lock poisoned"))?;
        Ok(fp.neighbors()?)
    }

    /// A switch of the ports' redirects (for worker 0's [`PortWatch`]).
    pub fn ports(&self) -> anyhow::Result<FpPorts> {
        let fp = self.fp.lock().map_err(|_| anyhow::anyhow!("fast path lock poisoned"))?;
        Ok(fp.ports()?)
    }

    /// Whether the program redirects out of port `port` (`false` while [`PortWatch`] finds that
    /// the port does not accept redirected frames).
    pub fn port_usable(&self, port: usize) -> anyhow::Result<bool> {
        Ok(self.ports()?.usable(port)?)
    }

    /// Stops forwarding in XDP (everything is punted); for the stop.
    pub fn disable(&self) {
        if let Ok(fp) = self.fp.lock() {
            fp.enable(false);
        }
    }
}

fn load(fp: &mut FastPath, fib: &Fib) -> anyhow::Result<()> {
    let nhs = next_hops(fib);
    let table = FpTable {
        tbl24: fib.tbl24(),
        tbl8: fib.tbl8(),
        next_hops: &nhs,
        default: fib.default_index(),
    };
    fp.load(&table).context("load the table into the fast path")
}

/// Worker 0's mirror of its stacks' neighbours into the fast path's map (see the module
/// documentation).
#[derive(Debug)]
pub struct NeighborMirror {
    writer: FpNeighbors,
    /// Per port: what the map holds, sorted by address.
    held: Vec<Vec<(u32, [u8; 6])>>,
    /// Scratch: what it should hold.
    want: Vec<(u32, [u8; 6])>,
    next: Option<Instant>,
    writes: u64,
    errors: u64,
}

impl NeighborMirror {
    /// A mirror over `ports` ports (nothing held yet).
    pub fn new(writer: FpNeighbors, ports: usize) -> NeighborMirror {
        NeighborMirror {
            writer,
            held: (0..ports).map(|_| Vec::with_capacity(256)).collect(),
            want: Vec::with_capacity(256),
            next: None,
            writes: 0,
            errors: 0,
        }
    }

    /// Map updates so far (additions, replacements, removals).
    pub fn writes(&self) -> u64 {
        self.writes
    }

    /// Map updates that failed (a full map; retried at the next scan).
    pub fn errors(&self) -> u64 {
        self.errors
    }

    /// Compares the stacks' usable neighbours with the map, at most every [`MIRROR_EVERY`],
    /// and applies the differences.
    pub fn sync(&mut self, router: &Router, now: Instant) {
        if self.next.is_some_and(|t| now < t) {
            return;
        }
        self.next = Some(now + MIRROR_EVERY);
        for p in 0..router.ports().min(self.held.len()) {
            self.want.clear();
            self.want.extend(
                router.stack(p).neighbors().usable(now).map(|(ip, mac)| (ip.to_bits(), mac.0)),
            );
            self.want.sort_unstable();
            let port = p as u16;
            let held = &mut self.held[p];
            let (mut i, mut j) = (0, 0);
            let mut failed = false;
            while i < held.len() || j < self.want.len() {
                let (h, w) = (held.get(i), self.want.get(j));
                let r = match (h, w) {
                    (Some(h), Some(w)) if h.0 == w.0 => {
                        i += 1;
                        j += 1;
                        if h.1 == w.1 {
                            continue;
                        }
                        self.writer.set(port, Ipv4Addr::from(w.0), w.1)
                    }
                    (Some(h), Some(w)) if h.0 < w.0 => {
                        i += 1;
                        self.writer.remove(port, Ipv4Addr::from(h.0))
                    }
                    (Some(h), None) => {
                        i += 1;
                        self.writer.remove(port, Ipv4Addr::from(h.0))
                    }
                    (_, Some(w)) => {
                        j += 1;
                        self.writer.set(port, Ipv4Addr::from(w.0), w.1)
                    }
                    (None, None) => break,
                };
                self.writes += 1;
                if let Err(e) = r {
                    if self.errors == 0 {
                        tracing::warn!(port = p, error = %e, "fast path neighbour update failed");
                    }
                    self.errors += 1;
                    failed = true;
                }
            }
            if failed {
                // Forget what the map holds for this port: the next scan rewrites all of it.
                for &(ip, _) in held.iter() {
                    let _ = self.writer.remove(port, Ipv4Addr::from(ip));
                }
                held.clear();
            } else {
                std::mem::swap(held, &mut self.want);
            }
        }
    }
}

/// How often worker 0 asks whether the ports accept XDP redirects.
pub const WATCH_EVERY: Duration = Duration::from_millis(50);

/// Worker 0's watch over the ports' acceptance of XDP redirects (see the module
/// documentation).
#[derive(Debug)]
pub struct PortWatch {
    ports: FpPorts,
    /// Per port: interface name, redirects switched off, warned already.
    state: Vec<(String, bool, bool)>,
    next: Option<Instant>,
    switched_off: u64,
}

impl PortWatch {
    /// A watch over `names` (port `i` is `names[i]`); asks the kernel at once, so a port that
    /// cannot take redirects is switched off before the first packet.
    pub fn new(ports: FpPorts, names: &[&str]) -> PortWatch {
        let state = names.iter().map(|n| (n.to_string(), false, false)).collect();
        let mut w = PortWatch { ports, state, next: None, switched_off: 0 };
        w.scan();
        w
    }

    /// Times a port's redirects were switched off so far.
    pub fn switched_off(&self) -> u64 {
        self.switched_off
    }

    /// Asks again, at most every [`WATCH_EVERY`], and switches each port's redirects off or
    /// back on to match.
    pub fn check(&mut self, now: Instant) {
        if self.next.is_some_and(|t| now < t) {
            return;
        }
        self.next = Some(now + WATCH_EVERY);
        self.scan();
    }

    fn scan(&mut self) {
        for (port, (name, off, warned)) in self.state.iter_mut().enumerate() {
            // Where the kernel does not say (before Linux 6.3), redirects stay on.
            let Some(accepts) = nic::netdev::accepts_xdp_redirect(name) else { continue };
            if accepts != *off {
                continue;
            }
            if let Err(e) = self.ports.set_usable(port, accepts) {
                tracing::warn!(interface = %name, error = %e, "fast path: cannot switch redirects");
                continue;
            }
            *off = !accepts;
            if accepts {
                tracing::info!(interface = %name, "fast path: {name} accepts redirected frames again; forwarding to it in XDP");
            } else {
                self.switched_off += 1;
                if !*warned {
                    *warned = true;
                    tracing::warn!(
                        interface = %name,
                        "fast path: {name}'s peer drops redirected frames (no XDP or GRO there); forwarding to it in userspace"
                    );
                }
            }
        }
    }
}
