//! # The forwarding fast path: an XDP program that forwards what the router knows
//!
//! What it is: the control side of `nic/bpf/fwd.bpf.c` (issue 9). One instance of the program
//! per router interface ([`FastPath::attach`]; each is an [`XdpProgram`], so the AF_XDP sockets
//! register in its XSKMAP and it is steered and detached like the steering program); the
//! forwarding maps are created by the first instance and shared by the others. In steering
//! mode ALL the program forwards IPv4 unicast with a known route and a resolved next hop (MAC
//! rewrite, TTL − 1, incremental checksum, `bpf_redirect_map` to the egress port's devmap
//! slot) and punts everything else to the receiving queue's AF_XDP socket, where the library
//! OS handles it; the C source lists the checks.
//!
//! What it owns: the shared maps: the DIR-24-8 table (`fib_tbl24`, `fib_tbl8`, `fib_nh`,
//! `fib_ctl`, memory-mapped here), the ports (`fp_ports`: ifindex, MTU, MAC) and their devmap
//! (`fp_tx`; [`FpPorts`] switches a port's redirects off, so packets leaving there are
//! punted), the neighbours (`fp_neigh`, a hash keyed by (port, address), and the gateways'
//! MAC words in `fib_nh`) and the per-CPU
//! counters (`fp_stats`, [`FpOutcome`]).
//!
//! Consistency: the table is double-buffered. [`FastPath::load`] writes the half no packet
//! reads, flips `active`, then waits for an RCU grace period (`membarrier(GLOBAL)`, which runs
//! `synchronize_rcu`; XDP programs run inside RCU read-side sections) so no packet still holds
//! the old half when the next load overwrites it: every packet is looked up in one table, old
//! or new. Neighbours: a next hop via a gateway carries the gateway's MAC in its own entry, one
//! aligned 64-bit word written with one store and read with one load (a packet sees the old
//! MAC or the new one, never a mix; `Gateways` keeps the words of both halves in step with
//! [`FpNeighbors`] under one lock); an on-link destination is looked up in the hash. The
//! caller writes only neighbours it may send to and removes them when they expire, so a
//! missing or zero entry means "punt", never "forward to an old MAC".
//!
//! Cost: [`FwdProbe`] and [`RedirectProbe`] load the programs unattached for
//! `BPF_PROG_TEST_RUN`; `examples/fwd_cost.rs` prints ns per packet (docs/forwarding.md).
//!
//! Memory: `fib_tbl24` 2 × 2^24 × 4 B = 128 MiB, `fib_tbl8` 2 × [`FP_TBL8_GROUPS`] × 1 KiB =
//! 32 MiB, allocated by the kernel when the first instance loads, whatever the route count.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use libbpf_rs::{MapCore, MapFlags, MapHandle, Object, ObjectBuilder, ProgramInput};

use super::xdp_prog::{
    Attach, Counter, LoadSpec, XdpMode, XdpProgram, FWD_PROG_NAME, REDIRECT_PROG_NAME,
};
use crate::NicError;

static FWD_OBJ: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/fwd.bpf.o"));

/// Ports (interfaces) the fast path can forward between.
pub const FP_MAX_PORTS: usize = 16;
/// Second-level groups per table (a /24 holding prefixes longer than /24 takes one; a million
/// routes of the BGP table's length mix take about 14,700).
pub const FP_TBL8_GROUPS: usize = 16384;
/// Next-hop indices per table (index 0 is "no route").
pub const FP_MAX_NEXT_HOPS: usize = 4096;
const TBL24: usize = 1 << 24;

/// Maps every instance shares (created by the first).
const SHARED: [&str; 8] =
    ["fib_tbl24", "fib_tbl8", "fib_nh", "fib_ctl", "fp_ports", "fp_tx", "fp_neigh", "fp_stats"];

/// A next hop of the table, as the XDP program sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FpNextHop {
    /// No route (index 0).
    None,
    /// Out of port `port`, to the gateway `via`, or on-link to the destination (`None`).
    Forward {
        /// Egress port.
        port: u16,
        /// Gateway.
        via: Option<Ipv4Addr>,
    },
    /// For the appliance: punted.
    Local,
    /// Dropped (counted).
    Blackhole,
}

/// A DIR-24-8 table to mirror (the layout of `libos::fib::Fib`: an entry is a next-hop index,
/// `1 << 31 | group`, or 0 for the default route).
#[derive(Debug, Clone, Copy)]
pub struct FpTable<'a> {
    /// 2^24 first-level entries.
    pub tbl24: &'a [u32],
    /// Second-level groups, 256 entries each.
    pub tbl8: &'a [u32],
    /// Next hops by index (index 0: no route).
    pub next_hops: &'a [FpNextHop],
    /// Next-hop index of the default route (0: none).
    pub default: u32,
}

/// What the program did with a packet (index into its counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FpOutcome {
    /// Forwarded (redirected out of the egress port).
    Forwarded,
    /// Punted: not IPv4 (ARP, IPv6, VLAN, …).
    NotIpv4,
    /// Punted: not to the interface's own MAC (broadcast, multicast, another host's).
    NotUnicast,
    /// Punted: truncated, bad version, length or header checksum.
    Malformed,
    /// Punted: IP options.
    Options,
    /// Punted: a fragment.
    Fragment,
    /// Punted: martian, multicast or broadcast source or destination.
    Special,
    /// Punted: TTL ≤ 1.
    Ttl,
    /// Punted: no route.
    NoRoute,
    /// Punted: for the appliance itself.
    Local,
    /// Punted: next hop not resolved.
    NoNeighbor,
    /// Punted: larger than the egress MTU.
    TooBig,
    /// Punted: egress port not configured.
    NoPort,
    /// Dropped: a blackhole route.
    Blackhole,
    /// Punted: the egress port's redirects are lost (a veth whose peer has no NAPI), see
    /// [`FpPorts::set_usable`].
    PortDisabled,
}

impl FpOutcome {
    /// Every outcome, in counter order.
    pub const ALL: [FpOutcome; 15] = [
        FpOutcome::Forwarded,
        FpOutcome::NotIpv4,
        FpOutcome::NotUnicast,
        FpOutcome::Malformed,
        FpOutcome::Options,
        FpOutcome::Fragment,
        FpOutcome::Special,
        FpOutcome::Ttl,
        FpOutcome::NoRoute,
        FpOutcome::Local,
        FpOutcome::NoNeighbor,
        FpOutcome::TooBig,
        FpOutcome::NoPort,
        FpOutcome::Blackhole,
        FpOutcome::PortDisabled,
    ];

    /// A short name (a metrics label value).
    pub fn name(self) -> &'static str {
        match self {
            FpOutcome::Forwarded => "forwarded",
            FpOutcome::NotIpv4 => "not_ipv4",
            FpOutcome::NotUnicast => "not_unicast",
            FpOutcome::Malformed => "malformed",
            FpOutcome::Options => "options",
            FpOutcome::Fragment => "fragment",
            FpOutcome::Special => "special_address",
            FpOutcome::Ttl => "ttl_expired",
            FpOutcome::NoRoute => "no_route",
            FpOutcome::Local => "local",
            FpOutcome::NoNeighbor => "no_neighbor",
            FpOutcome::TooBig => "too_big",
            FpOutcome::NoPort => "no_port",
            FpOutcome::Blackhole => "blackhole",
            FpOutcome::PortDisabled => "port_disabled",
        }
    }

    /// Punted to the AF_XDP socket (the library OS handles it).
    pub fn is_punt(self) -> bool {
        !matches!(self, FpOutcome::Forwarded | FpOutcome::Blackhole)
    }

    /// Dropped in the program.
    pub fn is_drop(self) -> bool {
        self == FpOutcome::Blackhole
    }
}

/// The program's counters, summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FastPathCounters {
    /// Per outcome, in [`FpOutcome::ALL`] order.
    pub by_outcome: [Counter; 15],
}

impl FastPathCounters {
    /// The counter of one outcome.
    pub fn get(&self, o: FpOutcome) -> Counter {
        let i = FpOutcome::ALL.iter().position(|&x| x == o).unwrap_or(0);
        self.by_outcome[i]
    }

    /// Packets forwarded.
    pub fn forwarded(&self) -> u64 {
        self.get(FpOutcome::Forwarded).packets
    }

    /// Packets punted, all reasons.
    pub fn punted(&self) -> u64 {
        self.sum(FpOutcome::is_punt)
    }

    /// Packets dropped, all reasons.
    pub fn dropped(&self) -> u64 {
        self.sum(FpOutcome::is_drop)
    }

    fn sum(&self, which: fn(FpOutcome) -> bool) -> u64 {
        FpOutcome::ALL
            .iter()
            .zip(&self.by_outcome)
            .filter(|(o, _)| which(**o))
            .map(|(_, c)| c.packets)
            .sum()
    }
}

fn read_counters(map: &MapHandle) -> Result<FastPathCounters, NicError> {
    let mut out = FastPathCounters::default();
    for (i, c) in out.by_outcome.iter_mut().enumerate() {
        let per_cpu = map
            .lookup_percpu(&(i as u32).to_ne_bytes(), MapFlags::ANY)
            .map_err(|source| NicError::Bpf {
                what: "cannot read the fast path's counters".into(),
                source,
            })?
            .unwrap_or_default();
        for v in per_cpu {
            if v.len() >= 16 {
                c.packets += u64::from_ne_bytes(v[0..8].try_into().unwrap_or_default());
                c.bytes += u64::from_ne_bytes(v[8..16].try_into().unwrap_or_default());
            }
        }
    }
    Ok(out)
}

/// Reads the fast path's counters from any thread (a metrics collector at scrape time).
#[derive(Debug)]
pub struct FastPathReader {
    map: MapHandle,
}

impl FastPathReader {
    /// The counters now, summed over CPUs.
    pub fn read(&self) -> Result<FastPathCounters, NicError> {
        read_counters(&self.map)
    }
}

/// Writes the neighbours from the thread that knows them (a worker's ARP caches): the hash
/// (`fp_neigh`, for on-link destinations) and the MAC word of every next hop whose gateway
/// the neighbour is (see [`Gateways`]). A system call (and a few 64-bit stores) per change,
/// never per packet.
#[derive(Debug)]
pub struct FpNeighbors {
    map: MapHandle,
    gateways: Arc<Mutex<Gateways>>,
}

impl FpNeighbors {
    fn key(port: u16, ip: Ipv4Addr) -> [u8; 8] {
        let mut k = [0u8; 8];
        k[..4].copy_from_slice(&u32::from(port).to_ne_bytes());
        k[4..].copy_from_slice(&ip.octets());
        k
    }

    fn gateways(&self) -> Result<std::sync::MutexGuard<'_, Gateways>, NicError> {
        self.gateways.lock().map_err(|_| NicError::Invalid {
            what: "fast path neighbour lock",
            value: 0,
            why: "poisoned by a panic",
        })
    }

    /// Port `port` reaches `ip` at `mac` (added or replaced in one step: the hash entry by the
    /// kernel, each next hop's MAC word with one 64-bit store).
    pub fn set(&self, port: u16, ip: Ipv4Addr, mac: [u8; 6]) -> Result<(), NicError> {
        let mut v = [0u8; 8];
        v[..6].copy_from_slice(&mac);
        let mut g = self.gateways()?;
        self.map.update(&Self::key(port, ip), &v, MapFlags::ANY).map_err(|source| {
            NicError::Bpf { what: format!("cannot set neighbour {ip} of port {port}"), source }
        })?;
        g.set(port, ip, Some(mac));
        Ok(())
    }

    /// Forgets `ip` on `port` (packets to it are punted). Absent entries are fine.
    pub fn remove(&self, port: u16, ip: Ipv4Addr) -> Result<(), NicError> {
        let mut g = self.gateways()?;
        g.set(port, ip, None);
        match self.map.delete(&Self::key(port, ip)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == libbpf_rs::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(NicError::Bpf {
                what: format!("cannot remove neighbour {ip} of port {port}"),
                source,
            }),
        }
    }
}

/// The neighbours' MACs in the next hops (`fib_nh.mac`), shared by [`FastPath::load`] and
/// the [`FpNeighbors`] writers under one lock.
///
/// A next hop via a gateway carries the gateway's MAC as one aligned 64-bit word (bytes 0–5
/// the MAC, byte 6 = 1 when resolved; 0: punt `no_neighbor`), so the program reads an array
/// entry it already has instead of looking up the hash. Consistency:
/// - a word is only ever written whole, with one 64-bit store, and the program reads it with
///   one 64-bit load (single-copy atomic on 64-bit machines): a packet sees the old MAC or the
///   new one, never a mix of the two;
/// - `known` is what the writers last set; a load fills the words of the half it writes from
///   `known` under the lock, after which the writers update that half too; until then the
///   writers skip the half (`halves[h]` empty), which no packet reads. A neighbour change is
///   therefore in every half a packet can read as soon as `set`/`remove` returns, and a table
///   loaded later starts from it;
/// - the half a load replaced stays in `halves` until the next load clears it, after the RCU
///   grace period that ends every load, so packets still reading it see changes too.
#[derive(Debug)]
struct Gateways {
    /// The writers' last word: (port, address octets) → MAC.
    known: HashMap<(u16, [u8; 4]), [u8; 6]>,
    /// Per half: the next hops via a gateway, (entry index, port, gateway octets).
    halves: [Vec<(usize, u16, [u8; 4])>; 2],
    /// A mapping of `fib_nh` of its own, for the 64-bit stores.
    words: Mmap,
}

/// Byte offset of `mac` in `struct fib_nh`, and the entry's size.
const NH_MAC: usize = 8;
const NH_SIZE: usize = 16;

impl Gateways {
    /// The word of a MAC (0: unresolved).
    fn word(mac: Option<[u8; 6]>) -> u64 {
        mac.map_or(0, |m| u64::from_ne_bytes([m[0], m[1], m[2], m[3], m[4], m[5], 1, 0]))
    }

    fn store(&self, half: usize, entry: usize, word: u64) {
        self.words
            .atomic64(((entry * 2 + half) * NH_SIZE + NH_MAC) / 8)
            .store(word, Ordering::Release);
    }

    /// A writer's change: every next hop via (`port`, `ip`) in both halves, then `known`.
    fn set(&mut self, port: u16, ip: Ipv4Addr, mac: Option<[u8; 6]>) {
        let gw = ip.octets();
        let w = Self::word(mac);
        for half in 0..2 {
            for &(e, p, g) in &self.halves[half] {
                if p == port && g == gw {
                    self.store(half, e, w);
                }
            }
        }
        match mac {
            Some(m) => self.known.insert((port, gw), m),
            None => self.known.remove(&(port, gw)),
        };
    }

    /// A load is about to write `half`: the writers leave it alone.
    fn forget(&mut self, half: usize) {
        self.halves[half].clear();
    }

    /// A load has written the next hops of `half`: their words from `known` (0 for every other
    /// next hop), and the writers follow it from now on.
    fn fill(&mut self, half: usize, next_hops: &[FpNextHop]) {
        let mut list = std::mem::take(&mut self.halves[half]);
        list.clear();
        for (e, nh) in next_hops.iter().enumerate() {
            let mut w = 0;
            if let FpNextHop::Forward { port, via: Some(gw) } = *nh {
                w = Self::word(self.known.get(&(port, gw.octets())).copied());
                list.push((e, port, gw.octets()));
            }
            self.store(half, e, w);
        }
        self.halves[half] = list;
    }
}

/// Byte of `struct port_info` that turns redirects into the port off (`redirect_off`).
const PORT_REDIRECT_OFF: usize = 14;

/// Switches ports' redirects off and on from another thread (the one that watches whether the
/// ports accept redirected frames). A system call per change, never per packet.
#[derive(Debug)]
pub struct FpPorts {
    map: MapHandle,
}

impl FpPorts {
    fn get(&self, port: usize) -> Result<[u8; 16], NicError> {
        let key = (port as u32).to_ne_bytes();
        let v = self
            .map
            .lookup(&key, MapFlags::ANY)
            .map_err(|source| NicError::Bpf { what: format!("cannot read port {port}"), source })?
            .unwrap_or_default();
        v.try_into().map_err(|v: Vec<u8>| NicError::Invalid {
            what: "fast path port entry",
            value: v.len() as u64,
            why: "16 bytes",
        })
    }

    /// Whether the program redirects packets out of `port` (`false`: it punts them, reason
    /// [`FpOutcome::PortDisabled`], and the library OS transmits them through its socket).
    pub fn usable(&self, port: usize) -> Result<bool, NicError> {
        Ok(self.get(port)?[PORT_REDIRECT_OFF] == 0)
    }

    /// Lets the program redirect out of `port` (`true`) or makes it punt what leaves there.
    pub fn set_usable(&self, port: usize, usable: bool) -> Result<(), NicError> {
        if port >= FP_MAX_PORTS {
            return Err(NicError::Invalid {
                what: "fast path port",
                value: port as u64,
                why: "below 16",
            });
        }
        let mut v = self.get(port)?;
        v[PORT_REDIRECT_OFF] = u8::from(!usable);
        self.map.update(&(port as u32).to_ne_bytes(), &v, MapFlags::ANY).map_err(|source| {
            NicError::Bpf { what: format!("cannot switch port {port}'s redirects"), source }
        })
    }
}

/// A shared mapping of a BPF array map (`BPF_F_MMAPABLE`).
#[derive(Debug)]
struct Mmap {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain shared memory owned by this value; writers go through `&mut
// FastPath` (the half no packet reads) or atomics (the control words, and the next hops' MAC
// words, stored under the `Gateways` lock, never by `write`), readers are the XDP program,
// which the kernel synchronizes with RCU as the module documentation says.
unsafe impl Send for Mmap {}
// SAFETY: as above; `&Mmap` only gives atomic access to the control words.
unsafe impl Sync for Mmap {}

impl Mmap {
    fn new(map: &MapHandle, bytes: usize) -> Result<Mmap, NicError> {
        let page = 4096;
        let len = bytes.div_ceil(page) * page;
        // SAFETY: a fresh shared mapping of a map descriptor we hold; the kernel checks the
        // length against the map's size and the map's mmapable flag.
        let ptr = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                map.as_fd().as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(NicError::sys(
                "mmap a BPF map",
                map.name().to_string_lossy().into_owned(),
                std::io::Error::last_os_error(),
            ));
        }
        Ok(Mmap { ptr: ptr.cast(), len })
    }

    fn words(&self) -> usize {
        self.len / 4
    }

    /// Copies `src` to 32-bit word `at` on. Only for words no packet reads (the inactive half).
    fn write(&mut self, at: usize, src: &[u32]) {
        assert!(at + src.len() <= self.words(), "fast path: write beyond a mapped map");
        // SAFETY: in bounds (checked above), 4-byte aligned (page-aligned base), and the range
        // belongs to the table half no packet reads (the caller's contract, see `load`).
        unsafe {
            core::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr.cast::<u32>().add(at), src.len());
        }
    }

    /// 64-bit word `i` as an atomic (a word the program reads while it changes).
    fn atomic64(&self, i: usize) -> &AtomicU64 {
        assert!(i < self.words() / 2, "fast path: 64-bit word out of range");
        // SAFETY: in bounds, 8-byte aligned (page-aligned base), and the mapping lives as long
        // as `self`; AtomicU64 has the layout of u64.
        unsafe { &*self.ptr.cast::<AtomicU64>().add(i) }
    }

    /// Word `i` as an atomic (the control words the program reads while they change).
    fn atomic(&self, i: usize) -> &AtomicU32 {
        assert!(i < self.words(), "fast path: control word out of range");
        // SAFETY: in bounds, aligned, and the mapping lives as long as `self`; AtomicU32 has
        // the layout of u32.
        unsafe { &*self.ptr.cast::<AtomicU32>().add(i) }
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once.
        unsafe {
            libc::munmap(self.ptr.cast(), self.len);
        }
    }
}

// Word offsets in fib_ctl.
const CTL_ACTIVE: usize = 0;
const CTL_DEFAULT: usize = 1; // + half
const CTL_ENABLED: usize = 3;

/// The fast path's shared maps (see the module documentation).
#[derive(Debug)]
pub struct FastPath {
    tbl24: Mmap,
    tbl8: Mmap,
    nh: Mmap,
    ctl: Mmap,
    ports: MapHandle,
    tx: MapHandle,
    neigh: MapHandle,
    gateways: Arc<Mutex<Gateways>>,
    stats: MapHandle,
    /// The half packets read (`None` before the first load).
    live: Option<usize>,
    loads: u64,
}

impl FastPath {
    /// Loads the forwarding program on every interface of `ifnames` (port `i` is
    /// `ifnames[i]`) and attaches it (native mode first, see [`XdpMode`]); the programs pass
    /// everything until steered, and punt everything until [`FastPath::enable`].
    pub fn attach(
        ifnames: &[&str],
        mode: XdpMode,
    ) -> Result<(Vec<XdpProgram>, FastPath), NicError> {
        if ifnames.is_empty() || ifnames.len() > FP_MAX_PORTS {
            return Err(NicError::Invalid {
                what: "fast path ports",
                value: ifnames.len() as u64,
                why: "between 1 and 16",
            });
        }
        let spec = LoadSpec { obj: FWD_OBJ, prog: FWD_PROG_NAME, reuse: &[], sizes: &[] };
        let first = XdpProgram::attach_object(ifnames[0], mode, Attach::Link, &spec)?;
        let mut shared = Vec::with_capacity(SHARED.len());
        for name in SHARED {
            shared.push(first.map_handle(name)?);
        }
        let mut progs = vec![first];
        for name in &ifnames[1..] {
            let reuse: Vec<(&str, BorrowedFd<'_>)> =
                SHARED.iter().zip(&shared).map(|(n, h)| (*n, h.as_fd())).collect();
            let spec = LoadSpec { reuse: &reuse, ..spec };
            progs.push(XdpProgram::attach_object(name, mode, Attach::Link, &spec)?);
        }
        for (i, p) in progs.iter().enumerate() {
            let me = p.map_handle("fp_self")?;
            let v = [(i as u32).to_ne_bytes(), 0u32.to_ne_bytes()].concat();
            me.update(&0u32.to_ne_bytes(), &v, MapFlags::ANY).map_err(|source| NicError::Bpf {
                what: format!("cannot set the port of {}", p.ifname()),
                source,
            })?;
        }
        Ok((progs, FastPath::from_maps(shared)?))
    }

    /// The control side over the shared maps, in [`SHARED`] order.
    fn from_maps(shared: Vec<MapHandle>) -> Result<FastPath, NicError> {
        let [t24, t8, nh, ctl, ports, tx, neigh, stats]: [MapHandle; 8] =
            shared.try_into().map_err(|_| NicError::Invalid {
                what: "fast path maps",
                value: SHARED.len() as u64,
                why: "one handle per shared map",
            })?;
        Ok(FastPath {
            tbl24: Mmap::new(&t24, 2 * TBL24 * 4)?,
            tbl8: Mmap::new(&t8, 2 * FP_TBL8_GROUPS * 256 * 4)?,
            nh: Mmap::new(&nh, 2 * FP_MAX_NEXT_HOPS * NH_SIZE)?,
            gateways: Arc::new(Mutex::new(Gateways {
                known: HashMap::new(),
                halves: [Vec::new(), Vec::new()],
                words: Mmap::new(&nh, 2 * FP_MAX_NEXT_HOPS * NH_SIZE)?,
            })),
            ctl: Mmap::new(&ctl, 16)?,
            ports,
            tx,
            neigh,
            stats,
            live: None,
            loads: 0,
        })
    }

    /// Declares port `port`: its interface index, MAC and IP MTU; frames leave it through the
    /// devmap (redirects on, see [`FpPorts::set_usable`]).
    pub fn set_port(
        &self,
        port: usize,
        ifindex: u32,
        mac: [u8; 6],
        mtu: u32,
    ) -> Result<(), NicError> {
        if port >= FP_MAX_PORTS {
            return Err(NicError::Invalid {
                what: "fast path port",
                value: port as u64,
                why: "below 16",
            });
        }
        let key = (port as u32).to_ne_bytes();
        let bpf = |what: String| move |source| NicError::Bpf { what, source };
        self.tx
            .update(&key, &ifindex.to_ne_bytes(), MapFlags::ANY)
            .map_err(bpf(format!("cannot put interface {ifindex} in the devmap")))?;
        let mut v = [0u8; 16];
        v[0..4].copy_from_slice(&ifindex.to_ne_bytes());
        v[4..8].copy_from_slice(&mtu.to_ne_bytes());
        v[8..14].copy_from_slice(&mac);
        self.ports
            .update(&key, &v, MapFlags::ANY)
            .map_err(bpf(format!("cannot declare port {port}")))
    }

    /// Writes `table` into the half no packet reads, makes it the live one, and returns once
    /// no packet can still be reading the other (an RCU grace period).
    pub fn load(&mut self, table: &FpTable<'_>) -> Result<(), NicError> {
        let groups = table.tbl8.len() / 256;
        if table.tbl24.len() != TBL24 || table.tbl8.len() % 256 != 0 {
            return Err(NicError::Invalid {
                what: "fast path table",
                value: table.tbl24.len() as u64,
                why: "tbl24 needs 2^24 entries and tbl8 whole groups",
            });
        }
        if groups > FP_TBL8_GROUPS {
            return Err(NicError::Invalid {
                what: "second-level groups",
                value: groups as u64,
                why: "more than the fast path holds (16384)",
            });
        }
        if table.next_hops.len() > FP_MAX_NEXT_HOPS || table.default as usize >= FP_MAX_NEXT_HOPS {
            return Err(NicError::Invalid {
                what: "next hops",
                value: table.next_hops.len() as u64,
                why: "more than the fast path holds (4096)",
            });
        }
        let half = self.live.map_or(0, |h| h ^ 1);
        self.gateways_lock()?.forget(half);
        self.tbl24.write(half * TBL24, table.tbl24);
        for g in 0..groups {
            self.tbl8.write((g * 2 + half) * 256, &table.tbl8[g * 256..(g + 1) * 256]);
        }
        // kind and port (16 bits each), gateway; the MAC word is the neighbours' (below).
        let kind_port = |kind: u16, port: u16| {
            let (k, p) = (kind.to_ne_bytes(), port.to_ne_bytes());
            u32::from_ne_bytes([k[0], k[1], p[0], p[1]])
        };
        for (i, nh) in table.next_hops.iter().enumerate() {
            let v = match *nh {
                FpNextHop::None => [0, 0],
                FpNextHop::Forward { port, via } => {
                    [kind_port(1, port), u32::from_ne_bytes(via.map_or([0; 4], |a| a.octets()))]
                }
                FpNextHop::Local => [kind_port(2, 0), 0],
                FpNextHop::Blackhole => [kind_port(3, 0), 0],
            };
            self.nh.write((i * 2 + half) * NH_SIZE / 4, &v);
        }
        self.gateways_lock()?.fill(half, table.next_hops);
        self.ctl.atomic(CTL_DEFAULT + half).store(table.default, Ordering::SeqCst);
        self.ctl.atomic(CTL_ACTIVE).store(half as u32, Ordering::SeqCst);
        self.live = Some(half);
        self.loads += 1;
        grace_period();
        Ok(())
    }

    fn gateways_lock(&self) -> Result<std::sync::MutexGuard<'_, Gateways>, NicError> {
        self.gateways.lock().map_err(|_| NicError::Invalid {
            what: "fast path neighbour lock",
            value: 0,
            why: "poisoned by a panic",
        })
    }

    /// Forwards (`true`) or punts everything (`false`, the library OS forwards).
    pub fn enable(&self, on: bool) {
        self.ctl.atomic(CTL_ENABLED).store(u32::from(on), Ordering::SeqCst);
    }

    /// Whether the program forwards.
    pub fn enabled(&self) -> bool {
        self.ctl.atomic(CTL_ENABLED).load(Ordering::Relaxed) != 0
    }

    /// Tables loaded so far.
    pub fn loads(&self) -> u64 {
        self.loads
    }

    /// A switch of the ports' redirects for another thread.
    pub fn ports(&self) -> Result<FpPorts, NicError> {
        Ok(FpPorts { map: dup(&self.ports, "fp_ports")? })
    }

    /// A writer of the neighbour map for another thread.
    pub fn neighbors(&self) -> Result<FpNeighbors, NicError> {
        Ok(FpNeighbors { map: dup(&self.neigh, "fp_neigh")?, gateways: self.gateways.clone() })
    }

    /// The counters now, summed over CPUs.
    pub fn counters(&self) -> Result<FastPathCounters, NicError> {
        read_counters(&self.stats)
    }

    /// A reader of the counters for another thread (metrics).
    pub fn reader(&self) -> Result<FastPathReader, NicError> {
        Ok(FastPathReader { map: dup(&self.stats, "fp_stats")? })
    }
}

fn dup(map: &MapHandle, name: &str) -> Result<MapHandle, NicError> {
    MapHandle::try_from(map).map_err(|source| NicError::Bpf {
        what: format!("cannot take a second handle on {name}"),
        source,
    })
}

/// Waits until every XDP program run that started before has ended: `membarrier(GLOBAL)`
/// runs `synchronize_rcu` (Linux 4.16+); where it is refused (nohz_full), a 50 ms sleep,
/// far longer than one NAPI poll.
fn grace_period() {
    const MEMBARRIER_CMD_GLOBAL: libc::c_long = 1;
    // SAFETY: membarrier takes no pointers.
    let r = unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0) };
    if r != 0 {
        std::thread::sleep(Duration::from_millis(50));
    }
}

static REDIRECT_OBJ: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/redirect.bpf.o"));

/// A bare in-kernel XDP redirect from one interface to another (`nic/bpf/redirect.bpf.c`):
/// every frame gets fixed MACs and leaves through a devmap. The baseline the fast path is
/// measured against (`xdpos bench fwd`, variant `xdp-redirect`); detached on drop.
#[derive(Debug)]
pub struct XdpRedirect {
    prog: XdpProgram,
}

impl XdpRedirect {
    /// Attaches to `from` (native mode first) and redirects every frame out of `to` with
    /// destination MAC `dst` and source MAC `src`.
    pub fn attach(
        from: &str,
        to: &str,
        dst: [u8; 6],
        src: [u8; 6],
        mode: XdpMode,
    ) -> Result<XdpRedirect, NicError> {
        let spec = LoadSpec { obj: REDIRECT_OBJ, prog: REDIRECT_PROG_NAME, reuse: &[], sizes: &[] };
        let prog = XdpProgram::attach_object(from, mode, Attach::Link, &spec)?;
        let to_index =
            super::sys::ifindex(to).ok_or_else(|| NicError::NoSuchInterface(to.to_string()))?;
        let bpf = |what: &str| {
            let what = what.to_string();
            move |source| NicError::Bpf { what, source }
        };
        prog.map_handle("redirect_tx")?
            .update(&0u32.to_ne_bytes(), &to_index.to_ne_bytes(), MapFlags::ANY)
            .map_err(bpf("cannot set the redirect target"))?;
        let mut macs = [0u8; 16];
        macs[..6].copy_from_slice(&dst);
        macs[6..12].copy_from_slice(&src);
        prog.map_handle("redirect_macs")?
            .update(&0u32.to_ne_bytes(), &macs, MapFlags::ANY)
            .map_err(bpf("cannot set the redirect MACs"))?;
        prog.steer_all()?;
        Ok(XdpRedirect { prog })
    }

    /// Frames redirected so far.
    pub fn redirected(&self) -> Result<u64, NicError> {
        Ok(self.prog.verdicts()?.redirect.packets)
    }

    /// The mode it is attached in.
    pub fn mode(&self) -> super::AttachedMode {
        self.prog.mode()
    }
}

/// One `BPF_PROG_TEST_RUN` of a probe: the program's return value, its average run time and
/// the frame as the last run left it.
#[derive(Debug, Clone)]
pub struct ProbeRun {
    /// The XDP action (`XDP_REDIRECT` is 4, `XDP_PASS` 2, `XDP_DROP` 1).
    pub action: u32,
    /// The kernel's average time per run (`bpf_test_run`: total over the runs divided by the
    /// runs, in whole nanoseconds, so truncated by up to 1 ns).
    pub per_run: Duration,
    /// The frame after the last run (every run sees the previous one's output: the kernel
    /// does not restore the buffer between repetitions).
    pub frame: Vec<u8>,
}

fn test_run(obj: &Object, name: &str, frame: &[u8], repeat: u32) -> Result<ProbeRun, NicError> {
    let prog = obj.progs_mut().find(|p| p.name() == name).ok_or_else(|| NicError::Bpf {
        what: format!("object has no program {name}"),
        source: libbpf_rs::Error::from(std::io::Error::from(std::io::ErrorKind::NotFound)),
    })?;
    let mut out = vec![0u8; frame.len()];
    let input = ProgramInput {
        data_in: Some(frame),
        data_out: Some(&mut out),
        repeat: repeat.max(1),
        ..Default::default()
    };
    let r = prog.test_run(input).map_err(|source| NicError::Bpf {
        what: format!("test run of {name} (BPF_PROG_TEST_RUN, {repeat} runs)"),
        source,
    })?;
    let (action, per_run) = (r.return_value, r.duration);
    Ok(ProbeRun { action, per_run, frame: out })
}

/// Attaches program `name` of `obj` natively to `ifname` through a BPF link (see
/// [`FwdProbe::hold_in_dispatcher`]).
fn hold(obj: &Object, name: &str, ifname: &str) -> Result<OwnedFd, NicError> {
    let ifindex =
        super::sys::ifindex(ifname).ok_or_else(|| NicError::NoSuchInterface(ifname.into()))?;
    let prog = obj.progs().find(|p| p.name() == name).ok_or_else(|| NicError::Bpf {
        what: format!("object has no program {name}"),
        source: libbpf_rs::Error::from(std::io::Error::from(std::io::ErrorKind::NotFound)),
    })?;
    super::xdp_prog::link_create(prog.as_fd(), ifindex, super::xdp_prog::XDP_FLAGS_DRV_MODE)
        .map_err(|e| NicError::sys("attach XDP program", ifname.to_string(), e))
}

fn open_detached(obj: &'static [u8], name: &str) -> Result<Object, NicError> {
    ObjectBuilder::default()
        .open_memory(obj)
        .and_then(|o| o.load())
        .map_err(|source| NicError::Bpf { what: format!("cannot load {name}"), source })
}

fn obj_map(obj: &Object, name: &str) -> Result<MapHandle, NicError> {
    let map = obj.maps().find(|m| m.name() == name).ok_or_else(|| NicError::Bpf {
        what: format!("object has no map {name}"),
        source: libbpf_rs::Error::from(std::io::Error::from(std::io::ErrorKind::NotFound)),
    })?;
    MapHandle::try_from(&map)
        .map_err(|source| NicError::Bpf { what: format!("cannot take a handle on {name}"), source })
}

/// The forwarding program loaded but attached nowhere, with maps of its own, for
/// `BPF_PROG_TEST_RUN`: what one packet costs the program itself, without a device, a
/// generator or a scheduler in the measurement (`cargo run -p nic --example fwd_cost`). The
/// packets are "received" on port 0 (`fp_self`); the program is in steering mode ALL and
/// forwards once [`FastPath::enable`]d. Runs never redirect anything: outside live-frame mode
/// the kernel returns the action to the caller.
#[derive(Debug)]
pub struct FwdProbe {
    _link: Option<OwnedFd>,
    fp: FastPath,
    obj: Object,
}

impl FwdProbe {
    /// Loads the program (root, or `CAP_BPF` and `CAP_NET_ADMIN`); its maps are allocated as
    /// for a router (160 MiB).
    pub fn load() -> Result<FwdProbe, NicError> {
        let obj = open_detached(FWD_OBJ, FWD_PROG_NAME)?;
        let shared = SHARED.iter().map(|n| obj_map(&obj, n)).collect::<Result<Vec<_>, _>>()?;
        let fp = FastPath::from_maps(shared)?;
        let bpf = |what: &str| {
            let what = what.to_string();
            move |source| NicError::Bpf { what, source }
        };
        obj_map(&obj, "fp_self")?
            .update(&0u32.to_ne_bytes(), &[0u8; 8], MapFlags::ANY)
            .map_err(bpf("cannot set the probe's port"))?;
        obj_map(&obj, "config")?
            .update(&0u32.to_ne_bytes(), &[1, 0, 0, 0, 0, 0, 0, 0], MapFlags::ANY)
            .map_err(bpf("cannot set the probe's steering mode"))?;
        Ok(FwdProbe { _link: None, fp, obj })
    }

    /// The maps, to declare ports, load a table, set neighbours and enable forwarding.
    pub fn fast_path(&mut self) -> &mut FastPath {
        &mut self.fp
    }

    /// The program's counters, summed over CPUs.
    pub fn counters(&self) -> Result<FastPathCounters, NicError> {
        self.fp.counters()
    }

    #[cfg(test)]
    fn fast_path_neighbors(&self) -> FpNeighbors {
        self.fp.neighbors().expect("neighbour writer")
    }

    /// Attaches the program natively to `ifname` (a device no packet arrives on: a veth that
    /// is down) until the probe is dropped. A test run of more than one repetition puts the
    /// program into the kernel's XDP dispatcher and takes it out again, with an RCU grace
    /// period each way (milliseconds per call), unless an attachment holds it there; held, the
    /// program is also called as an attached one is (a direct call from the dispatcher).
    pub fn hold_in_dispatcher(&mut self, ifname: &str) -> Result<(), NicError> {
        self._link = Some(hold(&self.obj, FWD_PROG_NAME, ifname)?);
        Ok(())
    }

    /// Runs the program `repeat` times on `frame` (one system call).
    pub fn run(&self, frame: &[u8], repeat: u32) -> Result<ProbeRun, NicError> {
        test_run(&self.obj, FWD_PROG_NAME, frame, repeat)
    }
}

/// The bare redirect ([`XdpRedirect`]'s program) loaded but attached nowhere, for
/// `BPF_PROG_TEST_RUN` beside [`FwdProbe`].
#[derive(Debug)]
pub struct RedirectProbe {
    _link: Option<OwnedFd>,
    obj: Object,
}

impl RedirectProbe {
    /// Loads the program, redirecting to interface `to` (an index; nothing is sent) with
    /// destination MAC `dst` and source MAC `src`.
    pub fn load(to: u32, dst: [u8; 6], src: [u8; 6]) -> Result<RedirectProbe, NicError> {
        let obj = open_detached(REDIRECT_OBJ, REDIRECT_PROG_NAME)?;
        let bpf = |what: &str| {
            let what = what.to_string();
            move |source| NicError::Bpf { what, source }
        };
        obj_map(&obj, "redirect_tx")?
            .update(&0u32.to_ne_bytes(), &to.to_ne_bytes(), MapFlags::ANY)
            .map_err(bpf("cannot set the redirect target"))?;
        let mut macs = [0u8; 16];
        macs[..6].copy_from_slice(&dst);
        macs[6..12].copy_from_slice(&src);
        obj_map(&obj, "redirect_macs")?
            .update(&0u32.to_ne_bytes(), &macs, MapFlags::ANY)
            .map_err(bpf("cannot set the redirect MACs"))?;
        obj_map(&obj, "config")?
            .update(&0u32.to_ne_bytes(), &[1, 0, 0, 0, 0, 0, 0, 0], MapFlags::ANY)
            .map_err(bpf("cannot set the steering mode"))?;
        Ok(RedirectProbe { _link: None, obj })
    }

    /// As [`FwdProbe::hold_in_dispatcher`].
    pub fn hold_in_dispatcher(&mut self, ifname: &str) -> Result<(), NicError> {
        self._link = Some(hold(&self.obj, REDIRECT_PROG_NAME, ifname)?);
        Ok(())
    }

    /// Runs the program `repeat` times on `frame` (one system call).
    pub fn run(&self, frame: &[u8], repeat: u32) -> Result<ProbeRun, NicError> {
        test_run(&self.obj, REDIRECT_PROG_NAME, frame, repeat)
    }
}

#[cfg(test)]
mod tests {
    //! The program through [`FwdProbe`] (root: loads it; nothing is attached or sent).

    use super::*;
    use crate::trafgen::{udp_frame, UdpSpec};

    const IN_MAC: [u8; 6] = [2, 0, 0, 0, 1, 1];
    const OUT_MAC: [u8; 6] = [2, 0, 0, 0, 2, 1];
    const GW: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
    const GW2: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 3);
    const DST: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 99);
    const XDP_PASS: u32 = 2;
    const XDP_REDIRECT: u32 = 4;

    fn frame() -> Vec<u8> {
        let spec = UdpSpec {
            src_mac: [2, 0, 0, 0, 1, 2],
            dst_mac: IN_MAC,
            src_ip: Ipv4Addr::new(10, 0, 1, 2),
            dst_ip: DST,
            src_port: 1024,
            dst_port: 9,
        };
        udp_frame(&spec, 64).expect("frame")
    }

    /// A table with one route, the default, to `nh` (port 1).
    fn load(p: &mut FwdProbe, nh: FpNextHop) {
        let tbl24 = vec![0u32; TBL24];
        let next_hops = [FpNextHop::None, nh];
        let table = FpTable { tbl24: &tbl24, tbl8: &[], next_hops: &next_hops, default: 1 };
        p.fast_path().load(&table).expect("load");
    }

    fn probe(nh: FpNextHop) -> FwdProbe {
        let mut p = FwdProbe::load().expect("load the program (root)");
        p.fast_path().set_port(0, 1, IN_MAC, 1500).expect("port 0");
        p.fast_path().set_port(1, 1, OUT_MAC, 1500).expect("port 1");
        load(&mut p, nh);
        p.fast_path().enable(true);
        p
    }

    /// Forwarded to `mac`, or punted (`None`).
    fn once(p: &FwdProbe, f: &[u8]) -> Option<[u8; 6]> {
        let r = p.run(f, 1).expect("test run");
        match r.action {
            XDP_REDIRECT => {
                assert_eq!(r.frame[6..12], OUT_MAC, "source MAC");
                assert_eq!(r.frame[14 + 8], f[14 + 8] - 1, "TTL");
                Some(r.frame[0..6].try_into().unwrap())
            }
            XDP_PASS => None,
            a => panic!("action {a}"),
        }
    }

    fn via(gw: Ipv4Addr) -> FpNextHop {
        FpNextHop::Forward { port: 1, via: Some(gw) }
    }

    #[test]
    fn a_gateways_mac_follows_the_neighbour_writer_and_survives_a_new_table() {
        let f = frame();
        let mut p = probe(via(GW));
        let n = p.fast_path().neighbors().expect("writer");
        assert_eq!(once(&p, &f), None, "no neighbour yet");
        assert_eq!(p.counters().unwrap().get(FpOutcome::NoNeighbor).packets, 1);
        let (m1, m2) = ([2, 0, 0, 0, 9, 1], [2, 0, 0, 0, 9, 2]);
        n.set(1, GW, m1).unwrap();
        assert_eq!(once(&p, &f), Some(m1));
        n.set(1, GW, m2).unwrap();
        assert_eq!(once(&p, &f), Some(m2), "replaced");
        n.set(0, GW, m1).unwrap();
        n.set(1, GW2, m1).unwrap();
        assert_eq!(once(&p, &f), Some(m2), "another port's, another address's");
        // A new table (into the other half) starts from what the writer said.
        load(&mut p, via(GW));
        assert_eq!(once(&p, &f), Some(m2), "after a load");
        load(&mut p, via(GW));
        assert_eq!(once(&p, &f), Some(m2), "after a second load (the first half again)");
        n.remove(1, GW).unwrap();
        assert_eq!(once(&p, &f), None, "removed");
        load(&mut p, via(GW));
        assert_eq!(once(&p, &f), None, "removed, after a load");
        // Another gateway, known before the table names it; then an on-link route.
        load(&mut p, via(GW2));
        assert_eq!(once(&p, &f), Some(m1), "the new gateway");
        n.set(1, GW, m2).unwrap();
        assert_eq!(once(&p, &f), Some(m1), "the old gateway's change is not this route's");
        load(&mut p, FpNextHop::Forward { port: 1, via: None });
        assert_eq!(once(&p, &f), None, "on-link: the destination is not resolved");
        n.set(1, DST, [2, 0, 0, 0, 9, 99]).unwrap();
        assert_eq!(once(&p, &f), Some([2, 0, 0, 0, 9, 99]), "on-link: the destination's MAC");
        let c = p.counters().unwrap();
        assert_eq!(c.forwarded(), 8);
        assert_eq!(c.get(FpOutcome::NoNeighbor).packets, 4);
    }

    #[test]
    fn the_header_checksum_is_verified_over_every_byte() {
        let f = frame();
        let p = probe(via(GW));
        p.fast_path_neighbors().set(1, GW, [2, 0, 0, 0, 9, 1]).unwrap();
        assert!(once(&p, &f).is_some());
        let mut malformed = 0;
        // Every bit of the header but the checksum's own flipped: punted as malformed (or,
        // for version/length/fragment bits, an earlier reason), never forwarded.
        for byte in 14..34 {
            for bit in 0..8 {
                let mut g = f.clone();
                g[byte] ^= 1 << bit;
                let before = p.counters().unwrap().get(FpOutcome::Malformed).packets;
                assert_eq!(once(&p, &g), None, "byte {byte} bit {bit} flipped: forwarded");
                malformed += p.counters().unwrap().get(FpOutcome::Malformed).packets - before;
            }
        }
        assert!(malformed >= 100, "{malformed} of 160 punted as malformed");
        // 0x0000 and 0xffff are the same one's-complement number: a header whose checksum
        // field is written either way is valid (RFC 1624 §3 discusses the case).
        let mut g = f.clone();
        let c = u16::from_be_bytes([g[24], g[25]]);
        if c == 0xffff || c == 0 {
            g[24..26].copy_from_slice(&(!c).to_be_bytes());
            assert!(once(&p, &g).is_some());
        }
    }

    /// A writer thread flips the gateway between two MACs that differ in every byte, and
    /// removes and restores it, while this thread runs packets: every forwarded frame carries
    /// one of the two MACs whole.
    #[test]
    fn a_neighbour_changing_under_traffic_never_yields_a_mixed_mac() {
        let f = frame();
        let p = probe(via(GW));
        let n = p.fast_path_neighbors();
        let (a, b) = ([2, 0x11, 0x22, 0x33, 0x44, 0x55], [0xfe, 0xee, 0xdd, 0xcc, 0xbb, 0xaa]);
        n.set(1, GW, a).unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let r = match i % 5 {
                        4 => n.remove(1, GW),
                        k => n.set(1, GW, if k % 2 == 0 { a } else { b }),
                    };
                    r.expect("neighbour write");
                    i += 1;
                }
                i
            })
        };
        let (mut seen_a, mut seen_b, mut punted) = (0u64, 0u64, 0u64);
        let end = std::time::Instant::now() + Duration::from_millis(500);
        while std::time::Instant::now() < end {
            for _ in 0..256 {
                match once(&p, &f) {
                    Some(m) if m == a => seen_a += 1,
                    Some(m) if m == b => seen_b += 1,
                    Some(m) => panic!("forwarded to {m:02x?}: neither {a:02x?} nor {b:02x?}"),
                    None => punted += 1,
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
        let writes = writer.join().expect("writer");
        assert!(writes > 100, "{writes} writes");
        assert!(seen_a > 0 && seen_b > 0, "a {seen_a}, b {seen_b}, punted {punted}");
    }
}
