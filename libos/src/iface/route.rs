//! # Interface addresses and the IPv4 routing table
//!
//! What it is: [`Ipv4Cidr`] (an address with its prefix, as configured on an interface) and
//! [`RouteTable`], the longest-prefix-match table the stack consults for traffic it originates
//! (UDP sends). Received traffic is never routed: replies go back to the link-layer source.
//!
//! What it owns: a fixed-capacity list of routes sorted by decreasing prefix length, so that
//! the first match is the longest (RFC 1812 §5.2.4.3). Connected routes (one per interface
//! prefix) are added by the stack; a default gateway is the route `0.0.0.0/0 via gw`.
//!
//! What it never does: allocate after construction (capacity is fixed), forward packets, or
//! learn routes (the control thread replaces them between batches).
//!
//! Invariants: `len() <= capacity()`; routes are sorted by prefix length, longest first, and
//! among equal lengths in insertion order; a prefix is stored with its host bits cleared.
//!
//! References: RFC 1812 §5.2.4 (longest-prefix match), RFC 4632 (CIDR notation), RFC 1122
//! §3.3.1 (a host's next-hop choice: on-link destination or gateway).

use core::fmt;
use std::net::Ipv4Addr;

/// An IPv4 address with a prefix length (`10.0.0.1/24`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Cidr {
    /// The address (for a route, the network; host bits are ignored).
    pub addr: Ipv4Addr,
    /// Prefix length, 0..=32 (larger values are treated as 32).
    pub prefix_len: u8,
}

impl Ipv4Cidr {
    /// `addr/prefix_len`.
    pub const fn new(addr: Ipv4Addr, prefix_len: u8) -> Ipv4Cidr {
        Ipv4Cidr { addr, prefix_len }
    }

    /// The netmask as a host-order integer.
    pub fn mask(&self) -> u32 {
        match self.prefix_len {
            0 => 0,
            n => u32::MAX << (32 - u32::from(n.min(32))),
        }
    }

    /// The network address (host bits cleared).
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.addr.to_bits() & self.mask())
    }

    /// The directed broadcast address of the prefix (all host bits set).
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.addr.to_bits() | !self.mask())
    }

    /// Whether `ip` lies in the prefix.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        (ip.to_bits() ^ self.addr.to_bits()) & self.mask() == 0
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// One route: where datagrams to `dst` go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Route {
    /// Destination prefix.
    pub dst: Ipv4Cidr,
    /// Next hop; `None` for an on-link (connected) prefix, where the destination itself is
    /// the next hop.
    pub gateway: Option<Ipv4Addr>,
}

impl Route {
    /// The default route via `gateway`.
    pub const fn default_via(gateway: Ipv4Addr) -> Route {
        Route { dst: Ipv4Cidr::new(Ipv4Addr::UNSPECIFIED, 0), gateway: Some(gateway) }
    }
}

/// The table is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteTableFull;

impl fmt::Display for RouteTableFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("route table full")
    }
}

impl std::error::Error for RouteTableFull {}

/// Fixed-capacity longest-prefix-match table (see the module documentation).
#[derive(Debug, Clone)]
pub struct RouteTable {
    routes: Vec<Route>,
    capacity: usize,
}

impl RouteTable {
    /// An empty table holding at most `capacity` routes (the memory is reserved now).
    pub fn with_capacity(capacity: usize) -> RouteTable {
        RouteTable { routes: Vec::with_capacity(capacity), capacity }
    }

    /// Routes in the table.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Most routes the table holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The routes, longest prefix first.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Adds a route (replacing one with the same prefix). Never reallocates.
    pub fn add(&mut self, route: Route) -> Result<(), RouteTableFull> {
        let dst = Ipv4Cidr::new(route.dst.network(), route.dst.prefix_len.min(32));
        let route = Route { dst, ..route };
        if let Some(r) = self.routes.iter_mut().find(|r| r.dst == dst) {
            *r = route;
            return Ok(());
        }
        if self.routes.len() >= self.capacity {
            return Err(RouteTableFull);
        }
        let at = self.routes.iter().position(|r| r.dst.prefix_len < dst.prefix_len);
        self.routes.insert(at.unwrap_or(self.routes.len()), route);
        Ok(())
    }

    /// Removes the route for exactly `dst`; returns whether there was one.
    pub fn remove(&mut self, dst: Ipv4Cidr) -> bool {
        let dst = Ipv4Cidr::new(dst.network(), dst.prefix_len.min(32));
        let before = self.routes.len();
        self.routes.retain(|r| r.dst != dst);
        self.routes.len() != before
    }

    /// The longest-prefix match for `dst`.
    pub fn lookup(&self, dst: Ipv4Addr) -> Option<&Route> {
        self.routes.iter().find(|r| r.dst.contains(dst))
    }

    /// The next hop for `dst`: the gateway of the matching route, or `dst` itself on-link.
    pub fn next_hop(&self, dst: Ipv4Addr) -> Option<Ipv4Addr> {
        self.lookup(dst).map(|r| r.gateway.unwrap_or(dst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_arithmetic() {
        let c = Ipv4Cidr::new(ip("10.1.2.3"), 24);
        assert_eq!(c.network(), ip("10.1.2.0"));
        assert_eq!(c.broadcast(), ip("10.1.2.255"));
        assert!(c.contains(ip("10.1.2.200")) && !c.contains(ip("10.1.3.1")));
        assert!(Ipv4Cidr::new(ip("0.0.0.0"), 0).contains(ip("8.8.8.8")));
        assert!(Ipv4Cidr::new(ip("1.2.3.4"), 40).contains(ip("1.2.3.4")));
        assert_eq!(c.to_string(), "10.1.2.3/24");
    }

    #[test]
    fn longest_prefix_wins_whatever_the_insertion_order() {
        let mut t = RouteTable::with_capacity(4);
        t.add(Route::default_via(ip("10.0.0.1"))).unwrap();
        t.add(Route { dst: Ipv4Cidr::new(ip("10.0.0.0"), 24), gateway: None }).unwrap();
        t.add(Route { dst: Ipv4Cidr::new(ip("192.168.7.9"), 16), gateway: Some(ip("10.0.0.2")) })
            .unwrap();
        assert_eq!(t.next_hop(ip("10.0.0.77")), Some(ip("10.0.0.77")));
        assert_eq!(t.next_hop(ip("192.168.200.1")), Some(ip("10.0.0.2")));
        assert_eq!(t.next_hop(ip("1.1.1.1")), Some(ip("10.0.0.1")));
        assert_eq!(t.routes()[1].dst.addr, ip("192.168.0.0"), "host bits cleared");
        assert!(t.remove(Ipv4Cidr::new(ip("0.0.0.0"), 0)));
        assert_eq!(t.next_hop(ip("1.1.1.1")), None);
    }

    #[test]
    fn capacity_is_a_hard_bound_and_replacing_needs_no_room() {
        let mut t = RouteTable::with_capacity(1);
        t.add(Route::default_via(ip("10.0.0.1"))).unwrap();
        t.add(Route::default_via(ip("10.0.0.9"))).unwrap();
        assert_eq!(t.next_hop(ip("2.2.2.2")), Some(ip("10.0.0.9")));
        let r = Route { dst: Ipv4Cidr::new(ip("10.0.0.0"), 8), gateway: None };
        assert_eq!(t.add(r), Err(RouteTableFull));
        assert_eq!(t.len(), 1);
    }
}
