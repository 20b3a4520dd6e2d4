//! Target of IPv4 reassembly (`libos::ipv4::frag::Reassembler`): arbitrary sequences of
//! fragments of a few datagrams (any offsets, lengths, MF bits, duplicates, overlaps, tiny and
//! never-completed ones), time steps and releases.
//!
//! Invariants: no panic; never more slots in use than configured; a datagram reported
//! complete holds exactly its bytes (every fragment of datagram `k` carries `byte(k, offset)`,
//! so a hole filled by stale or foreign bytes shows) and the first fragment's header; a
//! datagram never exceeds `max_datagram`; `next_timeout` is never in the past after `expire`.

use core::time::Duration;
use std::net::Ipv4Addr;

use arbitrary::{Result, Unstructured};
use libos::ipv4::frag::{FragConfig, FragKey, Outcome, Reassembler};
use libos::wire::EthernetAddress;
use libos::Instant;

/// The byte at `offset` of datagram `k`'s payload.
fn byte(k: usize, offset: usize) -> u8 {
    (offset.wrapping_mul(31) ^ (k * 0x55) ^ (offset >> 8)) as u8
}

fn key(k: usize) -> FragKey {
    FragKey {
        src: Ipv4Addr::new(10, 0, 0, 9 + (k & 1) as u8),
        dst: Ipv4Addr::new(10, 0, 0, 1),
        protocol: if k & 2 == 0 { 17 } else { 6 },
        ident: (k >> 2) as u16,
    }
}

/// The IPv4 header the first fragment of datagram `k` carries (only its bytes matter here).
fn header(k: usize, len: usize) -> Vec<u8> {
    (0..len).map(|i| if i == 0 { 0x40 | (len / 4) as u8 } else { (k * 7 + i) as u8 }).collect()
}

pub fn run(data: &[u8]) {
    let _ = run_u(&mut Unstructured::new(data));
}

fn run_u(u: &mut Unstructured<'_>) -> Result<()> {
    let cfg = FragConfig {
        slots: u.int_in_range(1..=4)?,
        max_datagram: *u.choose(&[64usize, 1500, 4096, 65515])?,
        timeout: Duration::from_millis(u.int_in_range(1..=30_000)?),
    };
    let mut r = Reassembler::new(cfg);
    let mut now = Instant::from_secs(1);
    let peer = EthernetAddress([2, 0, 0, 0, 0, 9]);
    for _ in 0..u.arbitrary_len::<[u8; 4]>()?.min(256) {
        match u.int_in_range(0..=9)? {
            0..=7 => {
                let k = u.int_in_range(0..=7usize)?;
                let offset = if u.ratio(7, 8)? {
                    usize::from(u.int_in_range(0..=8191u16)?) * 8 % 70_000
                } else {
                    usize::from(u.arbitrary::<u16>()?)
                };
                let offset = if u.ratio(1, 2)? { offset % 256 / 8 * 8 } else { offset };
                let len = match u.int_in_range(0..=3)? {
                    0 => usize::from(u.int_in_range(0..=16u8)?),
                    1 => usize::from(u.int_in_range(1..=32u8)?) * 8,
                    2 => usize::from(u.int_in_range(0..=1600u16)?),
                    _ => usize::from(u.arbitrary::<u16>()?),
                };
                let more = u.arbitrary::<bool>()?;
                let payload: Vec<u8> = (offset..offset + len).map(|o| byte(k, o)).collect();
                let hl = 4 * usize::from(u.int_in_range(5..=15u8)?);
                let hdr = header(k, hl);
                match r.add(now, key(k), offset, more, &payload, &hdr, peer) {
                    Outcome::Complete(idx) => {
                        assert_eq!(r.key(idx), Some(key(k)));
                        let p = r.payload(idx);
                        assert!(p.len() <= cfg.max_datagram.min(65515));
                        for (o, &b) in p.iter().enumerate() {
                            assert_eq!(b, byte(k, o), "datagram {k}: byte {o} is not its own");
                        }
                        let h = r.header(idx);
                        assert_eq!(h, &header(k, h.len())[..], "the first fragment's header");
                        assert!(!h.is_empty());
                        let len = p.len();
                        assert_eq!(r.payload_mut(idx).len(), len);
                        if u.ratio(3, 4)? {
                            r.release(idx);
                            assert!(r.payload(idx).is_empty());
                        }
                    }
                    Outcome::Stored | Outcome::Dropped(_) => {}
                }
            }
            8 => {
                now = now + Duration::from_millis(u.int_in_range(0..=40_000)?);
                r.expire(now, |e| {
                    assert!(e.quote_len <= e.quote.len());
                    assert!(e.quote_len == 0 || e.quote_len >= 20, "a quote starts with a header");
                });
                if let Some(t) = r.next_timeout() {
                    assert!(t > now, "expire left a datagram that is due");
                }
            }
            _ => {
                // Release whatever is complete (the stack does after using it).
                for i in 0..cfg.slots + 1 {
                    let _ = (r.peer(i), r.header(i).len());
                    r.release(i);
                }
            }
        }
        assert!(r.in_use() <= cfg.slots);
    }
    Ok(())
}
