//! Target of the forwarding table (`libos::fib`): arbitrary route sets (inserts, replacements,
//! removals of prefixes of every length, host bits set or not, default routes, blackholes)
//! built into a DIR-24-8 table and looked up at the edges of every prefix and at arbitrary
//! addresses, against a naive longest-prefix match over a list.
//!
//! Invariants: no panic; `Fib::lookup` agrees with the naive match and with
//! `FibBuilder::reference_lookup` everywhere probed; the route count is the set's size.

use std::net::Ipv4Addr;

use arbitrary::{Result, Unstructured};
use libos::fib::{FibBuilder, NextHop};
use libos::iface::route::Ipv4Cidr;

fn mask(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    }
}

/// Longest prefix match by scanning every route.
fn naive(routes: &[(u32, u8, NextHop)], dst: u32) -> Option<NextHop> {
    routes
        .iter()
        .filter(|&&(net, len, _)| dst & mask(len) == net)
        .max_by_key(|&&(_, len, _)| len)
        .map(|&(_, _, nh)| nh)
}

pub fn run(data: &[u8]) {
    let _ = run_u(&mut Unstructured::new(data));
}

fn run_u(u: &mut Unstructured<'_>) -> Result<()> {
    let mut b = FibBuilder::new();
    let mut model: Vec<(u32, u8, NextHop)> = Vec::new();
    let bases = [0x0a00_0000u32, 0x0a00_0100, 0xc0a8_0000, 0xffff_ff00, 0];
    for _ in 0..u.arbitrary_len::<[u8; 6]>()?.min(48) {
        let len: u8 = match u.int_in_range(0..=3)? {
            0 => u.int_in_range(0..=40)?,
            1 => u.int_in_range(24..=32)?,
            _ => u.int_in_range(8..=24)?,
        };
        let addr = if u.ratio(1, 2)? {
            u.choose(&bases)? ^ u32::from(u.arbitrary::<u8>()?) << u.int_in_range(0..=24)?
        } else {
            u.arbitrary()?
        };
        let nh = match u.int_in_range(0..=5)? {
            0 => NextHop::Local,
            1 => NextHop::Blackhole,
            2 => NextHop::Forward { iface: u.int_in_range(0..=3)?, via: None },
            _ => NextHop::Forward {
                iface: u.int_in_range(0..=3)?,
                via: Some(Ipv4Addr::new(10, 0, 0, u.int_in_range(1..=4)?)),
            },
        };
        let l = len.min(32);
        let net = addr & mask(l);
        let p = Ipv4Cidr::new(Ipv4Addr::from(addr), len);
        model.retain(|&(n, ml, _)| (n, ml) != (net, l));
        if u.ratio(1, 6)? {
            b.remove(p);
        } else {
            b.insert(p, nh);
            model.push((net, l, nh));
        }
        assert_eq!(b.len(), model.len());
    }
    let fib = b.build();
    assert_eq!(fib.routes(), model.len());
    let mut probes: Vec<u32> = Vec::new();
    for &(net, len, _) in &model {
        let last = net | !mask(len);
        probes.extend([net, last, net.wrapping_sub(1), last.wrapping_add(1), net | 0x80]);
    }
    for _ in 0..64 {
        probes.push(u.arbitrary()?);
    }
    for dst in probes {
        let want = naive(&model, dst);
        let ip = Ipv4Addr::from(dst);
        assert_eq!(fib.lookup(ip).copied(), want, "lookup of {ip}");
        assert_eq!(b.reference_lookup(ip), want, "reference lookup of {ip}");
        assert_eq!(fib.next_hop(fib.lookup_index(dst)).copied(), want);
    }
    Ok(())
}
