//! # Realistic route sets for tests and benchmarks
//!
//! What it is: [`internet_like`], `n` distinct IPv4 prefixes with the prefix-length mix of the
//! public BGP table ([`LENGTH_MIX`]: about 60 % /24, most of the rest /16 to /23, a few short
//! prefixes), plus about 1 % longer than /24 (public tables filter those, but a router's own
//! table has them, and they exercise the second level of the [`super::Fib`]).
//!
//! What it never does: read entropy (a seed fully determines the set), or produce a prefix in
//! 0.0.0.0/8, 10.0.0.0/8 (the test rigs live there), 127.0.0.0/8, or 224.0.0.0/3 (multicast
//! and reserved: the router never forwards to those).
//!
//! References: the length distribution of the IPv4 table as published by the CIDR Report and
//! Geoff Huston's BGP table analyses (2023–2024: ~950,000–1,000,000 routes).

use std::collections::HashSet;
use std::net::Ipv4Addr;

use crate::iface::route::Ipv4Cidr;
use crate::sim::rng::Rng;

/// Weights per prefix length (per 100,000 routes) of the generated mix.
pub const LENGTH_MIX: [(u8, u32); 24] = [
    (8, 1),
    (9, 1),
    (10, 3),
    (11, 8),
    (12, 25),
    (13, 50),
    (14, 100),
    (15, 170),
    (16, 1300),
    (17, 800),
    (18, 1300),
    (19, 2500),
    (20, 4200),
    (21, 4500),
    (22, 11000),
    (23, 10000),
    (24, 61000),
    (25, 250),
    (26, 250),
    (27, 200),
    (28, 200),
    (29, 150),
    (30, 100),
    (32, 250),
];

/// Whether a prefix's first octet is one the generator may use.
fn allowed_first_octet(o: u8) -> bool {
    !matches!(o, 0 | 10 | 127) && o < 224
}

/// `n` distinct prefixes with the [`LENGTH_MIX`], determined by `seed`, in the order drawn.
pub fn internet_like(n: usize, seed: u64) -> Vec<Ipv4Cidr> {
    let mut rng = Rng::new(seed);
    let total: u32 = LENGTH_MIX.iter().map(|&(_, w)| w).sum();
    let mut seen: HashSet<(u32, u8)> = HashSet::with_capacity(n);
    let mut out = Vec::with_capacity(n);
    let mut tries = 0u64;
    while out.len() < n {
        tries += 1;
        let mut pick = rng.below(u64::from(total)) as u32;
        let mut len = 24;
        for &(l, w) in &LENGTH_MIX {
            if pick < w {
                len = l;
                break;
            }
            pick -= w;
        }
        // Short lengths run out of distinct prefixes on small sets: fall back to /24 after
        // many collisions so the loop always ends.
        if tries > 64 * n as u64 + 1000 {
            len = 24;
        }
        let addr = rng.next_u64() as u32;
        if !allowed_first_octet((addr >> 24) as u8) {
            continue;
        }
        let p = Ipv4Cidr::new(Ipv4Addr::from(addr), len);
        let key = (p.network().to_bits(), len);
        if seen.insert(key) {
            out.push(Ipv4Cidr::new(p.network(), len));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_allowed_and_shaped_like_the_mix() {
        let v = internet_like(100_000, 1);
        assert_eq!(v.len(), 100_000);
        let set: HashSet<_> = v.iter().map(|p| (p.addr, p.prefix_len)).collect();
        assert_eq!(set.len(), v.len());
        assert!(v.iter().all(|p| allowed_first_octet(p.addr.octets()[0])));
        assert!(v.iter().all(|p| p.addr == p.network()), "host bits cleared");
        let share = |len: u8| v.iter().filter(|p| p.prefix_len == len).count() as f64 / 1e5;
        assert!((0.58..0.64).contains(&share(24)), "{}", share(24));
        assert!((0.09..0.13).contains(&share(22)), "{}", share(22));
        assert!(v.iter().any(|p| p.prefix_len > 24));
        assert_eq!(internet_like(10, 5), internet_like(10, 5), "a seed determines the set");
        assert_ne!(internet_like(10, 5), internet_like(10, 6));
    }
}
