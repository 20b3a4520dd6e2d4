//! # The forwarding table: longest-prefix match for a full internet table (DIR-24-8)
//!
//! What it is: [`Fib`], the IPv4 forwarding information base the router consults once per
//! forwarded packet, built from a route set by [`FibBuilder`]; [`NextHop`], what a lookup
//! answers; and [`internet_like`], a generator of realistic route sets (the length mix of the
//! public BGP table) for tests and benchmarks.
//!
//! Structure (Gupta, Lin, McKeown, "Routing lookups in hardware at memory access speeds",
//! INFOCOM 1998; DPDK's `rte_lpm`): a first-level array `tbl24` indexed by the top 24 bits of
//! the destination, 2^24 entries of 4 bytes (64 MiB); an entry holds either the index of a
//! next hop (the longest prefix of length 1 to 24 covering that /24) or, with its top bit set,
//! the index of a 256-entry second-level group `tbl8` that resolves the last 8 bits for a /24
//! that contains prefixes longer than /24. An empty entry stands for the default route, kept
//! beside the arrays, so a default route costs no writes. A lookup is one array read, two
//! under a prefix longer than /24, whatever the number of routes; what a big table adds is
//! cache and TLB misses in a 64 MiB array that a table of one default route never touches
//! (`benches/forward.rs` measures both). Memory: 64 MiB of virtual memory (pages are touched
//! only where routes are) + 1 KiB per /24 holding longer prefixes + 16 bytes per distinct next
//! hop (a million routes of [`internet_like`], 1.4 % longer than /24: 78 MiB).
//!
//! What it owns: the arrays and the next-hop table, immutable once built. Workers share one
//! table read-only (`Arc<Fib>`): nothing is written or locked on the fast path. Route changes
//! build a new table off the fast path ([`FibBuilder::build`]: 82 ms for a million routes in
//! a release build, see docs/forwarding.md) and workers swap to it between batches.
//!
//! What it never does: allocate or panic in [`Fib::lookup`] (indices are in range by
//! construction: `tbl24` has exactly 2^24 entries, a group index is only stored after its
//! group exists), or decide what to do with a packet (the router does, from the [`NextHop`]).
//!
//! Invariants: the index 0 means "no route" in `next_hops` and "the default route" in the
//! arrays; an entry's next-hop index is below
//! `next_hops.len()`; every group index is below the number of groups. The answer for an
//! address is the next hop of the longest prefix in the route set that contains it
//! (property-tested against a linear reference, and against a per-length hash reference on a
//! million routes).
//!
//! For the XDP fast path (issue 9): [`FibBuilder::iter`] lists the routes (for a BPF LPM trie)
//! and [`Fib::tbl24`]/[`Fib::tbl8`]/[`Fib::next_hops`] expose the arrays themselves, so a BPF
//! array of the same layout can mirror them.
//!
//! References: RFC 1812 §5.2.4.3 (longest match), RFC 4632 (CIDR).

mod gen;

use std::collections::HashMap;
use std::net::Ipv4Addr;

pub use gen::{internet_like, LENGTH_MIX};

use crate::iface::route::Ipv4Cidr;

/// Entries of the first-level table (one per /24).
pub const TBL24_ENTRIES: usize = 1 << 24;
/// Top bit of an entry: the rest is a group index, not a next hop.
const EXT: u32 = 1 << 31;
/// Most second-level groups (the group index has 31 bits, the memory runs out long before).
const MAX_GROUPS: usize = (EXT - 1) as usize;

/// What the router does with a packet whose destination matched a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NextHop {
    /// For the appliance itself (one of its addresses, or the broadcast address of a
    /// connected prefix): delivered to the local stack of the receiving interface.
    Local,
    /// Out of interface `iface` (an index into the router's interfaces), to the gateway `via`,
    /// or on-link to the destination itself when `via` is `None` (a connected prefix).
    Forward {
        /// Egress interface.
        iface: u16,
        /// Gateway; `None` for a connected prefix.
        via: Option<Ipv4Addr>,
    },
    /// Discarded silently (a null route), counted.
    Blackhole,
}

impl NextHop {
    /// The address to resolve on the egress link for a packet to `dst`: the gateway, or `dst`
    /// itself on-link. `None` for local delivery and blackholes.
    #[inline]
    pub fn neighbor(&self, dst: Ipv4Addr) -> Option<(u16, Ipv4Addr)> {
        match *self {
            NextHop::Forward { iface, via } => Some((iface, via.unwrap_or(dst))),
            _ => None,
        }
    }
}

/// A prefix stored with its host bits cleared and a length of at most 32.
fn normalize(p: Ipv4Cidr) -> (u32, u8) {
    let len = p.prefix_len.min(32);
    (Ipv4Cidr::new(p.addr, len).network().to_bits(), len)
}

/// A route set that builds [`Fib`]s (see the module documentation). Changing it does not
/// change any table built before.
#[derive(Debug, Clone, Default)]
pub struct FibBuilder {
    routes: HashMap<(u32, u8), NextHop>,
}

impl FibBuilder {
    /// An empty route set.
    pub fn new() -> FibBuilder {
        FibBuilder::default()
    }

    /// An empty route set with room for `n` routes.
    pub fn with_capacity(n: usize) -> FibBuilder {
        FibBuilder { routes: HashMap::with_capacity(n) }
    }

    /// Adds (or replaces) the route for `prefix` (host bits are ignored); returns the next hop
    /// it replaced.
    pub fn insert(&mut self, prefix: Ipv4Cidr, next_hop: NextHop) -> Option<NextHop> {
        self.routes.insert(normalize(prefix), next_hop)
    }

    /// Removes the route for exactly `prefix`; returns its next hop.
    pub fn remove(&mut self, prefix: Ipv4Cidr) -> Option<NextHop> {
        self.routes.remove(&normalize(prefix))
    }

    /// The next hop of exactly `prefix`, if it is in the set.
    pub fn get(&self, prefix: Ipv4Cidr) -> Option<NextHop> {
        self.routes.get(&normalize(prefix)).copied()
    }

    /// Routes in the set.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Every route (prefix with host bits cleared, next hop), in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (Ipv4Cidr, NextHop)> + '_ {
        self.routes.iter().map(|(&(net, len), &nh)| (Ipv4Cidr::new(Ipv4Addr::from(net), len), nh))
    }

    /// The longest match for `dst` by brute force over the prefix lengths (33 hash lookups):
    /// the reference [`Fib::lookup`] is tested against; not for the fast path.
    pub fn reference_lookup(&self, dst: Ipv4Addr) -> Option<NextHop> {
        (0..=32u8).rev().find_map(|len| {
            let (net, len) = normalize(Ipv4Cidr::new(dst, len));
            self.routes.get(&(net, len)).copied()
        })
    }

    /// Builds the table: routes in increasing prefix length, each filling its range (a longer
    /// prefix overwrites the shorter ones it lies in); a /24 that holds a longer prefix gets a
    /// 256-entry group initialised from what covered it so far.
    pub fn build(&self) -> Fib {
        let mut next_hops: Vec<NextHop> = vec![NextHop::Blackhole]; // index 0: no route
        let mut index: HashMap<NextHop, u32> = HashMap::new();
        let mut sorted: Vec<(u8, u32, u32)> = Vec::with_capacity(self.routes.len());
        for (&(net, len), nh) in &self.routes {
            let i = *index.entry(*nh).or_insert_with(|| {
                next_hops.push(*nh);
                (next_hops.len() - 1) as u32
            });
            sorted.push((len, net, i));
        }
        sorted.sort_unstable();
        let tbl24: Box<[u32; TBL24_ENTRIES]> = vec![0u32; TBL24_ENTRIES]
            .into_boxed_slice()
            .try_into()
            .unwrap_or_else(|_| unreachable!("the vector has exactly TBL24_ENTRIES entries"));
        let mut fib = Fib {
            tbl24,
            tbl8: Vec::new().into_boxed_slice(),
            next_hops: Box::new([]),
            default: 0,
            routes: 0,
        };
        let mut tbl8: Vec<u32> = Vec::new();
        for &(len, net, nh) in &sorted {
            if len == 0 {
                // Not written into the arrays: an empty entry means "the default route". A
                // table of one default route then touches none of tbl24's 64 MiB (it is built
                // in microseconds and its lookups read the kernel's shared zero page).
                fib.default = nh;
            } else if len <= 24 {
                let start = (net >> 8) as usize;
                let n = 1usize << (24 - len);
                fib.tbl24[start..start + n].fill(nh);
            } else {
                let parent = (net >> 8) as usize;
                let e = fib.tbl24[parent];
                let group = if e & EXT != 0 {
                    (e & !EXT) as usize
                } else {
                    let g = tbl8.len() >> 8;
                    assert!(g < MAX_GROUPS, "fib: more than 2^31 second-level groups");
                    tbl8.extend(std::iter::repeat_n(e, 256));
                    fib.tbl24[parent] = EXT | g as u32;
                    g
                };
                let start = (group << 8) | (net & 0xff) as usize;
                let n = 1usize << (32 - len);
                tbl8[start..start + n].fill(nh);
            }
        }
        fib.tbl8 = tbl8.into_boxed_slice();
        fib.next_hops = next_hops.into_boxed_slice();
        fib.routes = sorted.len();
        fib
    }
}

/// An immutable DIR-24-8 forwarding table (see the module documentation).
pub struct Fib {
    tbl24: Box<[u32; TBL24_ENTRIES]>,
    tbl8: Box<[u32]>,
    next_hops: Box<[NextHop]>,
    /// Next-hop index of the default route (0: none), answered for empty entries.
    default: u32,
    routes: usize,
}

impl core::fmt::Debug for Fib {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Fib")
            .field("routes", &self.routes)
            .field("tbl8_groups", &self.tbl8_groups())
            .field("next_hops", &(self.next_hops.len() - 1))
            .field("memory_bytes", &self.memory_bytes())
            .finish()
    }
}

impl Fib {
    /// A table with no route at all (every lookup answers `None`).
    pub fn empty() -> Fib {
        FibBuilder::new().build()
    }

    /// The next-hop index for `dst` (0: no route). One read of `tbl24`, a second of `tbl8`
    /// under a prefix longer than /24; no branch on the route count, no allocation.
    #[inline]
    pub fn lookup_index(&self, dst: u32) -> u32 {
        let e = self.tbl24[(dst >> 8) as usize];
        let e = if e & EXT == 0 {
            e
        } else {
            // The group exists (its index was stored after it was created).
            let i = (((e & !EXT) as usize) << 8) | (dst & 0xff) as usize;
            self.tbl8.get(i).copied().unwrap_or(0)
        };
        if e == 0 {
            self.default
        } else {
            e
        }
    }

    /// The next hop for `dst`, `None` when no route covers it.
    #[inline]
    pub fn lookup(&self, dst: Ipv4Addr) -> Option<&NextHop> {
        match self.lookup_index(dst.to_bits()) {
            0 => None,
            i => self.next_hops.get(i as usize),
        }
    }

    /// The next hop with index `i` (from [`lookup_index`](Self::lookup_index)).
    #[inline]
    pub fn next_hop(&self, i: u32) -> Option<&NextHop> {
        if i == 0 {
            None
        } else {
            self.next_hops.get(i as usize)
        }
    }

    /// Routes the table was built from.
    pub fn routes(&self) -> usize {
        self.routes
    }

    /// Second-level groups (one per /24 that holds a prefix longer than /24).
    pub fn tbl8_groups(&self) -> usize {
        self.tbl8.len() >> 8
    }

    /// Bytes of the arrays and the next-hop table.
    pub fn memory_bytes(&self) -> usize {
        (TBL24_ENTRIES + self.tbl8.len()) * 4
            + self.next_hops.len() * core::mem::size_of::<NextHop>()
    }

    /// The first-level array (entry = next-hop index, 0 for the default route, or
    /// `1 << 31 | group`), for mirroring.
    pub fn tbl24(&self) -> &[u32] {
        &self.tbl24[..]
    }

    /// The second-level groups, 256 entries each, for mirroring.
    pub fn tbl8(&self) -> &[u32] {
        &self.tbl8
    }

    /// The next-hop table (index 0 is the "no route" placeholder).
    pub fn next_hops(&self) -> &[NextHop] {
        &self.next_hops
    }

    /// The next-hop index of the default route (0: none), what an empty entry stands for.
    pub fn default_index(&self) -> u32 {
        self.default
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::sim::rng::Rng;

    fn cidr(s: &str) -> Ipv4Cidr {
        let (a, l) = s.split_once('/').unwrap();
        Ipv4Cidr::new(a.parse().unwrap(), l.parse().unwrap())
    }

    fn via(iface: u16, last: u8) -> NextHop {
        NextHop::Forward { iface, via: Some(Ipv4Addr::new(192, 0, 2, last)) }
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn longest_prefix_wins_at_every_level() {
        let mut b = FibBuilder::new();
        b.insert(cidr("0.0.0.0/0"), via(0, 1));
        b.insert(cidr("10.0.0.0/8"), via(1, 8));
        b.insert(cidr("10.1.0.0/16"), via(1, 16));
        b.insert(cidr("10.1.2.0/24"), NextHop::Forward { iface: 2, via: None });
        b.insert(cidr("10.1.2.128/25"), via(2, 25));
        b.insert(cidr("10.1.2.130/32"), NextHop::Local);
        b.insert(cidr("10.1.3.7/32"), NextHop::Blackhole);
        let f = b.build();
        assert_eq!(f.lookup(ip("8.8.8.8")), Some(&via(0, 1)));
        assert_eq!(f.lookup(ip("10.200.0.1")), Some(&via(1, 8)));
        assert_eq!(f.lookup(ip("10.1.200.1")), Some(&via(1, 16)));
        assert_eq!(f.lookup(ip("10.1.2.5")), Some(&NextHop::Forward { iface: 2, via: None }));
        assert_eq!(f.lookup(ip("10.1.2.129")), Some(&via(2, 25)));
        assert_eq!(f.lookup(ip("10.1.2.130")), Some(&NextHop::Local));
        assert_eq!(f.lookup(ip("10.1.2.131")), Some(&via(2, 25)));
        assert_eq!(f.lookup(ip("10.1.3.7")), Some(&NextHop::Blackhole));
        assert_eq!(f.lookup(ip("10.1.3.8")), Some(&via(1, 16)), "the group keeps the /16");
        assert_eq!((f.routes(), f.tbl8_groups()), (7, 2));
        assert_eq!(f.next_hops().len(), 8, "seven distinct next hops and the placeholder");
        assert_eq!(
            NextHop::Forward { iface: 2, via: None }.neighbor(ip("10.1.2.5")),
            Some((2, ip("10.1.2.5")))
        );
        assert_eq!(via(1, 8).neighbor(ip("10.9.9.9")), Some((1, ip("192.0.2.8"))));
        assert_eq!(NextHop::Local.neighbor(ip("10.1.2.130")), None);
    }

    #[test]
    fn no_route_is_none_and_host_bits_are_ignored() {
        let mut b = FibBuilder::new();
        assert!(Fib::empty().lookup(ip("1.2.3.4")).is_none());
        b.insert(cidr("192.168.1.77/24"), via(0, 1));
        assert_eq!(b.get(cidr("192.168.1.0/24")), Some(via(0, 1)));
        let f = b.build();
        assert_eq!(f.lookup(ip("192.168.1.1")), Some(&via(0, 1)));
        assert!(f.lookup(ip("192.168.2.1")).is_none());
        assert_eq!(f.lookup_index(ip("192.168.2.1").to_bits()), 0);
        assert!(f.next_hop(0).is_none());
        assert_eq!(b.remove(cidr("192.168.1.0/24")), Some(via(0, 1)));
        assert!(b.build().lookup(ip("192.168.1.1")).is_none());
        assert!(format!("{f:?}").contains("routes: 1"));
    }

    #[test]
    fn a_new_table_is_built_without_touching_the_old_one() {
        let mut b = FibBuilder::new();
        b.insert(cidr("0.0.0.0/0"), via(0, 1));
        let old = b.build();
        b.insert(cidr("0.0.0.0/0"), via(1, 2));
        b.insert(cidr("1.2.3.0/29"), NextHop::Local);
        let new = b.build();
        assert_eq!(old.lookup(ip("1.2.3.1")), Some(&via(0, 1)));
        assert_eq!(new.lookup(ip("1.2.3.1")), Some(&NextHop::Local));
        assert_eq!(new.lookup(ip("1.2.3.9")), Some(&via(1, 2)));
    }

    /// A prefix drawn so that sets overlap a lot: few distinct top bytes, every length.
    fn prefix() -> impl Strategy<Value = (u32, u8)> {
        (0u32..4, any::<u32>(), 0u8..=32).prop_map(|(top, rest, len)| {
            let addr = (top << 30) | (rest >> 2);
            let (net, len) = normalize(Ipv4Cidr::new(Ipv4Addr::from(addr), len));
            (net, len)
        })
    }

    /// `n` cases, or `PROPTEST_CASES` when set (each case builds a 64 MiB table: a debug
    /// build does about 15 per second).
    fn cases(n: u32) -> u32 {
        std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(n)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: cases(64), ..ProptestConfig::default() })]

        #[test]
        fn lookup_matches_a_linear_reference(
            routes in proptest::collection::vec((prefix(), 0u16..6), 0..80),
            probes in proptest::collection::vec(any::<u32>(), 64),
        ) {
            let mut b = FibBuilder::new();
            for &((net, len), hop) in &routes {
                b.insert(Ipv4Cidr::new(Ipv4Addr::from(net), len), via(hop, hop as u8));
            }
            let f = b.build();
            // Probe random addresses and the first, last and neighbouring addresses of every
            // prefix (the boundaries are where an off-by-one would show).
            let mut addrs: Vec<u32> = probes.iter().map(|p| p & 0xc0ff_ffff | (p & 3) << 30)
                .collect();
            for &((net, len), _) in &routes {
                let last = net | (!0u32).checked_shr(u32::from(len)).unwrap_or(0);
                addrs.extend([net, last, net.wrapping_sub(1), last.wrapping_add(1)]);
            }
            for a in addrs {
                let a = Ipv4Addr::from(a);
                let linear = b
                    .iter()
                    .filter(|(p, _)| p.contains(a))
                    .max_by_key(|(p, _)| p.prefix_len)
                    .map(|(_, nh)| nh);
                prop_assert_eq!(f.lookup(a).copied(), linear, "{}", a);
                prop_assert_eq!(b.reference_lookup(a), linear, "{}", a);
            }
        }
    }

    #[test]
    fn a_million_routes_answer_like_the_reference() {
        let mut rng = Rng::new(0x5eed);
        let prefixes = internet_like(1_000_000, 7);
        assert_eq!(prefixes.len(), 1_000_000);
        let mut b = FibBuilder::with_capacity(prefixes.len() + 1);
        for (i, p) in prefixes.iter().enumerate() {
            b.insert(*p, via((i % 4) as u16, (i % 200) as u8));
        }
        b.insert(cidr("0.0.0.0/0"), via(9, 9));
        assert_eq!(b.len(), 1_000_001);
        let f = b.build();
        assert!(f.tbl8_groups() > 1000, "the mix has prefixes longer than /24");
        assert!(f.memory_bytes() < 80 << 20, "{} bytes", f.memory_bytes());
        // Random addresses, and one address inside each of 20,000 sampled prefixes.
        for _ in 0..50_000 {
            let a = Ipv4Addr::from(rng.next_u64() as u32);
            assert_eq!(f.lookup(a).copied(), b.reference_lookup(a), "{a}");
        }
        for _ in 0..20_000 {
            let p = prefixes[rng.below(prefixes.len() as u64) as usize];
            let host = (rng.next_u64() as u32) & !p.mask();
            let a = Ipv4Addr::from(p.network().to_bits() | host);
            assert_eq!(f.lookup(a).copied(), b.reference_lookup(a), "{a} in {p}");
        }
    }
}
