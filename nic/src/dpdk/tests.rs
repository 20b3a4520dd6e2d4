//! Tests of the DPDK backend on DPDK's `net_ring` virtual devices (a device whose TX queue `q`
//! feeds its own RX queue `q`: a loopback in memory), with `--no-huge --in-memory`. EAL is
//! process-global: every test asks for the same configuration, the first one starts it.

use super::*;
use libos::wire::{
    EtherType, EthernetAddress, EthernetRepr, IpProtocol, Ipv4Repr, TxChecksum, UdpRepr,
};
use std::net::Ipv4Addr;
use std::time::Instant;

const RINGS: usize = 6;

fn config() -> EalConfig {
    EalConfig {
        memory_mb: 128,
        vdevs: (0..RINGS).map(|i| format!("net_ring{i}")).collect(),
        log_level: "warning".into(),
        ..EalConfig::default()
    }
}

fn eal() -> &'static Eal {
    Eal::init(&config()).unwrap_or_else(|e| panic!("{e}"))
}

/// A pool and a started one-queue device on `net_ring<n>`.
fn ring(n: usize, frames: u32) -> (Pool, Device) {
    let eal = eal();
    let pool = Pool::create(eal, &format!("test-ring{n}"), frames, -1).unwrap();
    let dev =
        Device::open(eal, &DeviceConfig::new(&format!("net_ring{n}")), std::slice::from_ref(&pool))
            .unwrap_or_else(|e| panic!("{e}"));
    (pool, dev)
}

/// Receives until `n` frames arrived (bounded: 2 s).
fn receive(port: &mut DpdkPort, n: usize) -> Burst {
    let mut rx = Burst::new();
    let deadline = Instant::now() + Duration::from_secs(2);
    while rx.len() < n && Instant::now() < deadline {
        port.rx_burst(&mut rx);
    }
    rx
}

fn udp_frame(payload: usize) -> Vec<u8> {
    let (src, dst) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
    let mut f = vec![0u8; 14 + 20 + 8 + payload];
    EthernetRepr {
        src_addr: EthernetAddress([2, 0, 0, 0, 0, 1]),
        dst_addr: EthernetAddress([2, 0, 0, 0, 0, 2]),
        ethertype: EtherType::Ipv4,
        vlan: [None, None],
    }
    .emit(&mut f)
    .unwrap();
    Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        protocol: IpProtocol::Udp,
        payload_len: 8 + payload,
        ttl: 64,
        ident: 1,
        dont_frag: true,
        dscp: 0,
        ecn: 0,
    }
    .emit(&mut f[14..])
    .unwrap();
    for (i, b) in f[42..].iter_mut().enumerate() {
        *b = i as u8;
    }
    UdpRepr { src_port: 1000, dst_port: 2000 }
        .emit(&mut f[34..], src, dst, TxChecksum::Partial)
        .unwrap();
    f
}

#[test]
fn eal_arguments_follow_the_config() {
    let a = EalConfig {
        vdevs: vec!["net_tap0".into()],
        file_prefix: Some("x".into()),
        in_memory: false,
        ..EalConfig::default()
    }
    .args();
    let s = a.join(" ");
    assert!(s.starts_with("xdpos -l 0 -m 256 --no-huge --file-prefix x --no-pci"), "{s}");
    assert!(s.contains("--vdev net_tap0") && !s.contains("--in-memory"), "{s}");
    let b = EalConfig { huge: true, pci: vec!["0000:03:00.0".into()], ..EalConfig::default() };
    let s = b.args().join(" ");
    assert!(s.contains("-a 0000:03:00.0") && !s.contains("--no-pci") && !s.contains("no-huge"));
    assert!(s.contains("--in-memory") && !s.contains("--file-prefix"), "{s}");
    // Without hugepages EAL refuses --in-memory: no shared files and a prefix of our own.
    let s = EalConfig::default().args().join(" ");
    let own = format!("--no-huge --no-shconf --file-prefix xdpos-{}", std::process::id());
    assert!(s.contains(&own) && !s.contains("--in-memory"), "{s}");
}

#[test]
fn one_eal_per_process() {
    let first = eal();
    assert!(std::ptr::eq(first, eal()), "the same configuration gets the same handle");
    let other = EalConfig { memory_mb: 64, ..config() };
    let e = Eal::init(&other).unwrap_err().to_string();
    assert!(e.contains("one EAL per process"), "{e}");
    assert!(Eal::get().is_some());
}

#[test]
fn frames_loop_back_with_their_bytes_and_every_frame_is_accounted_for() {
    let (pool, dev) = ring(0, 256);
    assert_eq!(dev.driver(), "net_ring");
    let mut port = DpdkPort::new(&pool, &dev, 0, 32).unwrap();
    assert_eq!(port.headroom(), 128);
    assert_eq!(port.caps().max_frame, usize::from(FRAME_ROOM));
    let mut tx = Burst::new();
    assert_eq!(port.alloc_burst(&mut tx, 40), 40);
    assert_eq!(port.frame_counts().held, 40);
    for (i, d) in tx.as_mut_slice().iter_mut().enumerate() {
        let room = port.room_mut(d);
        assert_eq!(room.len(), usize::from(FRAME_ROOM));
        room[..100 + i].fill(i as u8);
        d.len = 100 + i as u32;
    }
    // Prepending into the headroom stays in the same frame.
    let d0 = tx.as_slice()[0];
    let pre = Desc { addr: d0.addr - 14, len: d0.len + 14, ..d0 };
    port.frame_mut(&pre)[..14].fill(0xee);
    assert_eq!(port.frame(&d0), vec![0u8; 100].as_slice());
    tx.as_mut_slice()[0] = pre;
    assert_eq!(port.tx_burst(&mut tx), 40);
    assert!(tx.is_empty());
    let rx = receive(&mut port, 40);
    assert_eq!(rx.len(), 40);
    for (i, d) in rx.iter().enumerate() {
        let f = port.frame(d);
        if i == 0 {
            assert_eq!(&f[..14], &[0xee; 14]);
            assert_eq!(f.len(), 114);
        } else {
            assert_eq!(f, vec![i as u8; 100 + i].as_slice());
        }
        assert_eq!(d.hdr, NetHdr::NONE);
    }
    let s = port.stats();
    assert_eq!((s.tx_packets, s.rx_packets, s.invalid_descs), (40, 40, 0));
    assert_eq!(s.rx_bytes, s.tx_bytes);
    let c = port.frame_counts();
    assert_eq!((c.total, c.held), (256, 40));
    c.check().unwrap();
    let mut rx = rx;
    port.free_burst(&mut rx);
    let c = port.audit().unwrap();
    assert_eq!(c.held, 0);
    // Device counters and extended counters.
    let es = dev.stats().unwrap();
    assert_eq!((es.rx_packets, es.tx_packets), (40, 40));
    let xs = dev.xstats().unwrap();
    let good = xs.iter().find(|(n, _)| n == "rx_good_packets").map(|&(_, v)| v);
    assert_eq!(good, Some(40), "{xs:?}");
    // Stopped, every frame is back in the pool.
    dev.stop().unwrap();
    let c = port.audit().unwrap();
    assert_eq!((c.free, c.fill), (256, 0));
    assert_eq!(pool.in_use(), 0);
    // A stats reader does not keep the device open, and reads nothing once it closed.
    let reader = dev.stats_reader();
    let (s, x) = reader.read().expect("open");
    assert_eq!(s.rx_packets, 40);
    assert!(x.iter().any(|(n, v)| n == "tx_good_packets" && *v == 40), "{x:?}");
    drop(port);
    drop(dev);
    assert!(reader.read().is_none(), "closed with its last handle");
}

#[test]
fn partial_checksums_are_completed_in_software_and_super_segments_dropped() {
    let (pool, dev) = ring(1, 128);
    let mut port = DpdkPort::new(&pool, &dev, 0, 32).unwrap();
    assert!(!port.caps().tx_csum && !port.caps().tso, "net_ring offloads nothing");
    let mut tx = Burst::new();
    assert_eq!(port.alloc_burst(&mut tx, 2), 2);
    for (i, d) in tx.as_mut_slice().iter_mut().enumerate() {
        let f = udp_frame(100 + i);
        port.room_mut(d)[..f.len()].copy_from_slice(&f);
        d.len = f.len() as u32;
        d.hdr.csum = Csum::Partial { start: 34, offset: 6 };
    }
    assert_eq!(offload::csum::verify_ipv4_l4(port.frame(&tx.as_slice()[0])), Some(false));
    tx.as_mut_slice()[1].hdr.gso = Gso::TcpV4 { size: 500, hdr_len: 42 };
    assert_eq!(port.tx_burst(&mut tx), 1);
    assert!(tx.is_empty(), "the super-segment was freed, not left");
    let s = port.stats();
    assert_eq!((s.tx_csum_sw, s.invalid_descs), (1, 1));
    let mut rx = receive(&mut port, 1);
    assert_eq!(rx.len(), 1);
    assert_eq!(offload::csum::verify_ipv4_l4(port.frame(&rx.as_slice()[0])), Some(true));
    port.free_burst(&mut rx);
    dev.stop().unwrap();
    assert_eq!(port.audit().unwrap().free, 128);
}

#[test]
fn bad_descriptors_are_counted_and_queues_have_one_owner() {
    let (pool, dev) = ring(2, 64);
    let mut port = DpdkPort::new(&pool, &dev, 0, 8).unwrap();
    let e = DpdkPort::new(&pool, &dev, 0, 8).unwrap_err().to_string();
    assert!(e.contains("another group polls it"), "{e}");
    let e = DpdkPort::new(&pool, &dev, 1, 8).unwrap_err().to_string();
    assert!(e.contains("has 1 queues"), "{e}");
    let mut got = Burst::new();
    assert_eq!(port.alloc_burst(&mut got, 2), 2);
    let d = got.as_slice()[0];
    port.free(&d);
    port.free(&d); // double free
    port.free(&Desc { addr: 1 << 40, ..d }); // outside the pool
    let mut again = got.clone();
    port.free_burst(&mut got); // the first is free already
    port.free_burst(&mut again); // both are
    let mut stale = Burst::new();
    stale.push(d);
    assert_eq!(port.tx_burst(&mut stale), 0);
    assert_eq!(port.stats().invalid_descs, 1 + 1 + 1 + 2 + 1);
    assert_eq!(port.frame_counts().held, 0);
    // Every frame comes back exactly once.
    let mut all = Burst::new();
    assert_eq!(port.alloc_burst(&mut all, 100), 64);
    assert_eq!(port.alloc_burst(&mut all, 1), 0);
    let mut addrs: Vec<u64> = all.iter().map(|d| d.addr >> 16).collect();
    addrs.sort_unstable();
    addrs.dedup();
    assert_eq!(addrs.len(), 64);
    port.free_burst(&mut all);
    drop(port);
    // The queue is free again once its owner is gone.
    let port = DpdkPort::new(&pool, &dev, 0, 8).unwrap();
    assert_eq!(port.frame_counts().free, 64);
}

#[test]
#[should_panic(expected = "is not held by the caller")]
fn reading_a_freed_frame_panics() {
    let (pool, dev) = ring(3, 64);
    let mut port = DpdkPort::new(&pool, &dev, 0, 8).unwrap();
    let mut got = Burst::new();
    port.alloc_burst(&mut got, 1);
    let d = got.as_slice()[0];
    port.free(&d);
    let _ = port.frame(&d);
}

#[test]
fn a_group_forwards_from_the_same_mbuf_between_two_devices() {
    let eal = eal();
    let pool = Pool::create(eal, "test-group", 128, -1).unwrap();
    let a =
        Device::open(eal, &DeviceConfig::new("net_ring4"), std::slice::from_ref(&pool)).unwrap();
    let b =
        Device::open(eal, &DeviceConfig::new("net_ring5"), std::slice::from_ref(&pool)).unwrap();
    let mut g = DpdkGroup::new(&pool, &[a.clone(), b.clone()], 0, 32).unwrap();
    assert_eq!(g.len(), 2);
    let mut tx = Burst::new();
    {
        let mut p = g.port(0);
        assert_eq!(p.alloc_burst(&mut tx, 5), 5);
        for d in tx.as_mut_slice() {
            p.room_mut(d)[..60].fill(7);
            d.len = 60;
        }
        assert_eq!(p.tx_burst(&mut tx), 5);
    }
    // Received on a (its loopback), sent on b from the same frames.
    let mut rx = Burst::new();
    let deadline = Instant::now() + Duration::from_secs(2);
    while rx.len() < 5 && Instant::now() < deadline {
        g.port(0).rx_burst(&mut rx);
    }
    assert_eq!(rx.len(), 5);
    let addrs: Vec<u64> = rx.iter().map(|d| d.addr).collect();
    assert_eq!(g.port(1).tx_burst(&mut rx), 5);
    let mut back = Burst::new();
    let deadline = Instant::now() + Duration::from_secs(2);
    while back.len() < 5 && Instant::now() < deadline {
        g.port(1).rx_burst(&mut back);
    }
    assert_eq!(back.iter().map(|d| d.addr).collect::<Vec<_>>(), addrs);
    assert!(back.iter().all(|d| g.frame(d) == [7u8; 60]));
    g.port(1).free_burst(&mut back);
    assert_eq!((g.stats(0).rx_packets, g.stats(1).tx_packets, g.stats(1).rx_packets), (5, 5, 5));
    // A queue found empty is skipped for the next IDLE_SKIP polls, then polled again.
    assert_eq!(g.port(1).rx_burst(&mut back), 0);
    let mut one = Burst::new();
    assert_eq!(g.port(1).alloc_burst(&mut one, 1), 1);
    one.as_mut_slice()[0].len = 60;
    assert_eq!(g.port(1).tx_burst(&mut one), 1);
    for _ in 0..IDLE_SKIP {
        assert_eq!(g.port(1).rx_burst(&mut back), 0, "skipped");
    }
    assert_eq!(g.port(1).rx_burst(&mut back), 1);
    g.port(1).free_burst(&mut back);
    a.stop().unwrap();
    b.stop().unwrap();
    assert_eq!(g.audit().unwrap().free, 128);
}

#[test]
fn offload_metadata_maps_onto_mbuf_requests() {
    let on = Caps { tx_csum: true, tso: true, ..Caps::default() };
    let mut f = udp_frame(64);
    let mut hdr = NetHdr { csum: Csum::Partial { start: 34, offset: 6 }, ..NetHdr::NONE };
    let p = tx_offload(&mut f, &mut hdr, &on).unwrap();
    assert!(p.udp_csum() && !p.software_csum);
    assert_eq!(p.lens(), (14, 20, 0));
    assert_eq!(hdr.csum, Csum::Partial { start: 34, offset: 6 }, "left to the device");
    // TCP super-segment: TSO with the MSS and the TCP header length.
    let mut t = vec![0u8; 14 + 20 + 32 + 3000];
    t[12..14].copy_from_slice(&[0x08, 0x00]);
    let mut hdr = NetHdr {
        csum: Csum::Partial { start: 34, offset: 16 },
        gso: Gso::TcpV4 { size: 1448, hdr_len: 66 },
        segments: 0,
    };
    let p = tx_offload(&mut t, &mut hdr, &on).unwrap();
    assert_eq!(p.tso(), Some(1448));
    assert_eq!(p.lens(), (14, 20, 32));
    // A VLAN tag makes the L2 header 18 bytes.
    let mut v = udp_frame(40);
    v[12..14].copy_from_slice(&[0x81, 0x00]);
    let mut hdr = NetHdr { csum: Csum::Partial { start: 38, offset: 16 }, ..NetHdr::NONE };
    let p = tx_offload(&mut v, &mut hdr, &on).unwrap();
    assert!(p.tcp_csum());
    assert_eq!(p.lens(), (18, 20, 0));
    // Without offloads: completed in software; a super-segment cannot go.
    let off = Caps::default();
    let mut hdr = NetHdr { csum: Csum::Partial { start: 34, offset: 6 }, ..NetHdr::NONE };
    let p = tx_offload(&mut f, &mut hdr, &off).unwrap();
    assert!(p.software_csum && !p.udp_csum());
    assert_eq!(hdr.csum, Csum::None);
    assert_eq!(offload::csum::verify_ipv4_l4(&f), Some(true));
    let mut hdr = NetHdr {
        csum: Csum::Partial { start: 34, offset: 16 },
        gso: Gso::TcpV4 { size: 1448, hdr_len: 66 },
        segments: 0,
    };
    assert!(tx_offload(&mut t, &mut hdr, &off).is_err());
    // A checksum field outside the frame is an error even with offloads.
    let mut short = vec![0u8; 40];
    let mut hdr = NetHdr { csum: Csum::Partial { start: 34, offset: 6 }, ..NetHdr::NONE };
    assert!(tx_offload(&mut short, &mut hdr, &on).is_err());
    // Nothing asked: nothing done.
    let mut hdr = NetHdr::NONE;
    assert_eq!(tx_offload(&mut f, &mut hdr, &on).unwrap(), TxPlan::default());
}
