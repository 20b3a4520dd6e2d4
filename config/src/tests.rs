//! Tests of parsing and validation: the shipped examples pass, and each kind of mistake is
//! reported with its path and value.

use std::collections::HashMap;

use super::*;
use crate::validate::{Ipv4Cidr, RoleCfg};

fn host() -> Host {
    Host {
        cpus: Some(4),
        interfaces: Some(HashMap::from([
            ("eth1".to_string(), Some(2)),
            ("eth2".to_string(), Some(1)),
            ("lo".to_string(), None),
        ])),
    }
}

fn problems(text: &str) -> Vec<String> {
    match load(text, &host()) {
        Ok(c) => panic!("expected problems, got {c:?}"),
        Err(e) => e.problems.iter().map(|p| p.to_string()).collect(),
    }
}

fn has(text: &str, want: &str) {
    let p = problems(text);
    assert!(p.iter().any(|l| l == want), "wanted {want:?} among {p:#?}");
}

const EXAMPLES: [(&str, &str); 4] = [
    ("server.toml", include_str!("../examples/server.toml")),
    ("router.toml", include_str!("../examples/router.toml")),
    ("xconnect.toml", include_str!("../examples/xconnect.toml")),
    ("router-dpdk.toml", include_str!("../examples/router-dpdk.toml")),
];

#[test]
fn every_example_validates() {
    for (name, text) in EXAMPLES {
        load(text, &host()).unwrap_or_else(|e| panic!("{name}:\n{e}"));
        load(text, &Host::unknown()).unwrap_or_else(|e| panic!("{name} (unknown host):\n{e}"));
    }
}

#[test]
fn the_server_example_resolves_its_references() {
    let c = load(EXAMPLES[0].1, &host()).unwrap();
    assert_eq!(c.interfaces[0].addresses, [Ipv4Cidr { addr: [192, 0, 2, 10].into(), len: 24 }]);
    assert_eq!(c.workers.len(), 2);
    assert_eq!(c.workers[1].queues[0].queue, 1);
    assert_eq!(c.routes[0].iface, 0);
    assert_eq!(c.routes[0].via, Some([192, 0, 2, 1].into()));
    assert_eq!(c.services.len(), 4);
    assert_eq!(c.metrics.to_string(), "127.0.0.1:9464");
    let r = load(EXAMPLES[2].1, &host()).unwrap();
    assert_eq!(r.role, RoleCfg::Xconnect { pairs: vec![(0, 1)] });
}

const BASE: &str = r#"
[[interfaces]]
name = "eth1"
queues = 2
addresses = ["10.0.0.2/24"]

[[workers]]
cpu = 1
queues = ["eth1:0", "eth1:1"]

[[services]]
kind = "udp-echo"
listen = "10.0.0.2:7"
"#;

#[test]
fn the_base_config_is_valid() {
    load(BASE, &host()).unwrap();
}

#[test]
fn unknown_keys_and_bad_syntax_name_the_line() {
    let p = problems(&format!("{BASE}\nworkres = 3\n"));
    assert_eq!(p.len(), 1);
    assert!(p[0].contains("unknown field `workres`"), "{p:?}");
    assert!(p[0].starts_with("line "), "{p:?}");
    let p = problems("[[interfaces]]\nname = eth1\n");
    assert!(p[0].starts_with("line 2"), "{p:?}");
    let p = problems(&BASE.replace("name = \"eth1\"", "name = \"eth1\"\nspeed = 10"));
    assert!(p[0].contains("unknown field `speed`"), "{p:?}");
}

#[test]
fn cpus_that_do_not_exist_are_named() {
    has(
        &BASE.replace("cpu = 1", "cpu = 17"),
        "workers[0].cpu: core 17 does not exist (this host has 4)",
    );
}

#[test]
fn interfaces_and_queues_must_exist_on_the_host() {
    has(
        &BASE.replace("name = \"eth1\"", "name = \"eth9\"").replace("eth1:", "eth9:"),
        "interfaces[0].name: no interface named \"eth9\" on this host",
    );
    has(
        &BASE
            .replace("queues = 2", "queues = 3")
            .replace("\"eth1:0\", \"eth1:1\"", "\"eth1:0\", \"eth1:1\", \"eth1:2\""),
        "interfaces[0].queues: 3 queues asked for, but eth1 has 2",
    );
}

#[test]
fn no_queue_is_owned_twice_and_none_is_left_without_a_worker() {
    let two = format!("{BASE}\n[[workers]]\ncpu = 2\nqueues = [\"eth1:1\"]\n");
    has(&two, "workers[1].queues[0]: \"eth1:1\" is already polled by workers[0].queues[1]");
    has(
        &BASE.replace("\"eth1:0\", \"eth1:1\"", "\"eth1:0\""),
        "interfaces[0].queues: queue 1 of eth1 has no worker",
    );
    has(
        &BASE.replace("\"eth1:0\", \"eth1:1\"", "\"eth1:0\", \"eth1:5\""),
        "workers[0].queues[1]: \"eth1:5\": interfaces[0] (eth1) uses 2 queues (0 to 1)",
    );
    has(
        &BASE.replace("\"eth1:0\", \"eth1:1\"", "\"eth1:0\", \"eth1\""),
        "workers[0].queues[1]: \"eth1\" is not interface:queue",
    );
    let same_cpu = format!("{BASE}\n[[interfaces]]\nname = \"eth2\"\naddresses = [\"10.0.1.2/24\"]\n[[workers]]\ncpu = 1\nqueues = [\"eth2:0\"]\n");
    has(&same_cpu, "workers[1].cpu: core 1 already runs workers[0]");
}

#[test]
fn addresses_and_prefixes_are_checked() {
    has(&BASE.replace("10.0.0.2/24", "10.0.0.2/33"), "interfaces[0].addresses[0]: \"10.0.0.2/33\" is not an IPv4 address with a prefix length (a.b.c.d/len)");
    has(&BASE.replace("10.0.0.2/24", "10.0.0.0/24"), "interfaces[0].addresses[0]: \"10.0.0.0/24\" is the network or broadcast address of its prefix");
    has(
        &BASE.replace("10.0.0.2/24\"", "10.0.0.2/24\", \"10.0.0.2/16\""),
        "interfaces[0].addresses[1]: 10.0.0.2 is already configured at interfaces[0].addresses[0]",
    );
    let route = format!("{BASE}\n[[routes]]\nprefix = \"10.1.2.3/16\"\nvia = \"10.0.0.1\"\n");
    has(&route, "routes[0].prefix: \"10.1.2.3/16\" has host bits set (did you mean 10.1.0.0/16?)");
    let unreachable = format!("{BASE}\n[[routes]]\nprefix = \"0.0.0.0/0\"\nvia = \"172.16.0.1\"\n");
    has(&unreachable, "routes[0].via: 172.16.0.1 is not inside any interface's prefix (next hops must be on a connected network)");
    let nb = format!("{BASE}\n[[neighbors]]\nip = \"10.0.0.1\"\nmac = \"01:00:5e:00:00:01\"\ninterface = \"eth1\"\n");
    has(&nb, "neighbors[0].mac: \"01:00:5e:00:00:01\" is not a unicast address");
}

#[test]
fn service_ports_do_not_conflict() {
    let clash = format!("{BASE}\n[[services]]\nkind = \"udp-sink\"\nlisten = \"0.0.0.0:7\"\n");
    has(
        &clash,
        "services[1].listen: UDP port 7 is already taken by services[0] (udp-echo on 10.0.0.2:7)",
    );
    // The same port over TCP is no conflict.
    load(&format!("{BASE}\n[[services]]\nkind = \"tcp-echo\"\nlisten = \"10.0.0.2:7\"\n"), &host())
        .unwrap();
    has(&BASE.replace("10.0.0.2:7", "10.0.0.9:7"), "services[0].listen: \"10.0.0.9:7\" is not an address of the appliance (configured: 10.0.0.2)");
}

#[test]
fn every_problem_is_reported_at_once() {
    let bad = BASE
        .replace("cpu = 1", "cpu = 99")
        .replace("10.0.0.2:7", "10.0.0.2:0")
        .replace("queues = 2", "queues = 2\nframe_size = 1000");
    let p = problems(&bad);
    assert!(p.len() >= 3, "{p:#?}");
    assert!(p.iter().any(|l| l.starts_with("workers[0].cpu")));
    assert!(p.iter().any(|l| l.starts_with("services[0].listen")));
    assert!(p.iter().any(|l| l.starts_with("interfaces[0].frame_size")));
}

#[test]
fn roles_are_checked() {
    has(
        "[[interfaces]]\nname = \"eth1\"\n[[workers]]\ncpu = 1\nqueues = [\"eth1:0\"]\n",
        "services: a server needs at least one service ([[services]] kind = …, listen = …)",
    );
    let xc = "[[interfaces]]\nname = \"eth1\"\n[[workers]]\ncpu = 1\nqueues = [\"eth1:0\"]\n[role]\nkind = \"xconnect\"\n[[role.xconnect]]\na = \"eth1\"\nb = \"eth1\"\n";
    let p = problems(xc);
    assert!(
        p.iter().any(|l| l == "role.xconnect[0]: an interface cannot be cross-connected to itself"),
        "{p:#?}"
    );
    let router = "[[interfaces]]\nname = \"eth1\"\n[[workers]]\ncpu = 1\nqueues = [\"eth1:0\"]\n[role]\nkind = \"router\"\n";
    has(router, "interfaces[0].addresses: a router needs an address on eth1 (for ARP and ICMP)");
}

#[test]
fn sizes_are_range_checked() {
    for (keys, want) in [
        ("ring_size = 1000", "interfaces[0].ring_size: 1000 is not a power of two from 64 to 32768"),
        ("mtu = 3000\nframe_size = 2048", "interfaces[0].mtu: 3000 does not fit a 2048-byte frame with 256 bytes of headroom and a VLAN tag (use frame_size = 4096 or a smaller MTU)"),
        ("frames = 100", "interfaces[0].frames: 100 is out of range (2112, ring_size + burst, to 1048576)"),
        ("fill = 32", "interfaces[0].fill: 32 is out of range (64, burst, to 2048, ring_size)"),
        ("ring_size = 256\nfill = 512", "interfaces[0].fill: 512 is out of range (64, burst, to 256, ring_size)"),
    ] {
        has(&with_iface_keys(keys), want);
    }
}

/// [`BASE`] with `keys` added to its interface.
fn with_iface_keys(keys: &str) -> String {
    BASE.replace("queues = 2", &format!("queues = 2\n{keys}"))
}

#[test]
fn the_fill_depth_is_left_to_the_socket_unless_given() {
    let fill = |extra: &str| {
        let c = load(&with_iface_keys(extra), &host()).unwrap_or_else(|e| panic!("{extra}: {e}"));
        c.interfaces[0].fill
    };
    assert_eq!(fill(""), None);
    assert_eq!(fill("ring_size = 256"), None);
    assert_eq!(fill("fill = 1024"), Some(1024));
}

#[test]
fn layouts_fit_the_role() {
    let two_ifaces = "[[interfaces]]\nname = \"eth1\"\naddresses = [\"10.0.0.2/24\"]\n[[interfaces]]\nname = \"eth2\"\naddresses = [\"10.0.1.2/24\"]\n";
    let server = format!("{two_ifaces}[[workers]]\ncpu = 1\nqueues = [\"eth1:0\", \"eth2:0\"]\n[[services]]\nkind = \"udp-echo\"\nlisten = \"10.0.0.2:7\"\n");
    has(&server, "workers[0].queues[1]: \"eth2:0\": a server worker runs one stack, over queues of one interface (eth1 here)");
    has(&BASE.replace("addresses = [\"10.0.0.2/24\"]", "").replace("10.0.0.2:7", "0.0.0.0:7"), "interfaces[0].addresses: a server needs an address on eth1 (its stack answers ARP and ping there)");
    let router = format!("{two_ifaces}[[workers]]\ncpu = 1\nqueues = [\"eth1:0\"]\n[[workers]]\ncpu = 2\nqueues = [\"eth2:0\"]\n[role]\nkind = \"router\"\n");
    has(&router, "workers[0].queues: missing \"eth2:0\": a forwarding worker polls queue 0 of every interface (a frame leaves from the memory it arrived in)");
    let frames = format!("{two_ifaces}frames = 8192\n[[workers]]\ncpu = 1\nqueues = [\"eth1:0\", \"eth2:0\"]\n[role]\nkind = \"router\"\n");
    has(&frames, "interfaces[1].frames: 8192, but a forwarding worker shares one UMEM and one loop across every interface: it must match interfaces[0] (4096)");
    let mixed = "[[interfaces]]\nname = \"eth1\"\nqueues = 2\naddresses = [\"10.0.0.2/24\"]\n[[interfaces]]\nname = \"eth2\"\nqueues = 2\naddresses = [\"10.0.1.2/24\"]\n[[workers]]\ncpu = 1\nqueues = [\"eth1:0\", \"eth2:1\"]\n[[workers]]\ncpu = 2\nqueues = [\"eth1:1\", \"eth2:0\"]\n[role]\nkind = \"router\"\n";
    has(mixed, "workers[0].queues[1]: \"eth2:1\": a forwarding worker polls one queue index on every interface (0 here)");
}

/// A router between eth1 and eth2 on the DPDK backend, with `extra` appended.
fn dpdk_router(extra: &str) -> String {
    format!(
        r#"backend = "dpdk"
[[interfaces]]
name = "eth1"
addresses = ["10.0.1.1/24"]

[[interfaces]]
name = "eth2"
addresses = ["10.0.2.1/24"]

[[workers]]
cpu = 1
queues = ["eth1:0", "eth2:0"]

[role]
kind = "router"
{extra}"#
    )
}

#[test]
fn the_dpdk_backend_and_its_table_are_checked_with_their_paths() {
    use crate::schema::{Backend, Pmd};
    // Defaults: no [dpdk] table is the defaults; the example resolves its devices.
    let c = load(&dpdk_router(""), &host()).unwrap();
    assert_eq!(c.backend, Backend::Dpdk);
    let d = c.dpdk.unwrap();
    assert!(d.no_huge && d.offloads && d.devices.is_empty());
    assert_eq!((d.pmd, d.memory_mb, d.frames, d.ring_size), (Pmd::AfPacket, 256, 4096, 1024));
    let c = load(EXAMPLES[3].1, &Host::unknown()).unwrap();
    assert_eq!(c.backend, Backend::Dpdk);
    assert!(load(EXAMPLES[1].1, &host()).unwrap().dpdk.is_none(), "afxdp: no DPDK settings");
    // A named device needs no kernel interface; DPDK queue pairs are not the kernel's queues.
    let named = r#"backend = "dpdk"
[dpdk.devices]
eth9 = "0000:03:00.0"

[[interfaces]]
name = "eth1"
queues = 3
addresses = ["10.0.1.1/24"]

[[interfaces]]
name = "eth9"
queues = 3
addresses = ["10.0.2.1/24"]

[[workers]]
cpu = 0
queues = ["eth1:0", "eth9:0"]

[[workers]]
cpu = 1
queues = ["eth1:1", "eth9:1"]

[[workers]]
cpu = 2
queues = ["eth1:2", "eth9:2"]

[role]
kind = "router"
"#;
    load(named, &host()).unwrap_or_else(|e| panic!("{e}"));
    let p = problems(
        &named
            .replace("backend = \"dpdk\"", "")
            .replace("[dpdk.devices]\neth9 = \"0000:03:00.0\"", ""),
    );
    assert!(p.iter().any(|l| l.contains("no interface named \"eth9\"")), "afxdp: {p:#?}");
    // Each mistake with its path and value.
    has(
        &BASE.replace("[[interfaces]]", "[dpdk]\nmemory_mb = 512\n\n[[interfaces]]"),
        "dpdk: a [dpdk] table needs backend = \"dpdk\" (the backend is \"afxdp\")",
    );
    has(
        &format!("backend = \"dpdk\"\n{BASE}"),
        "role.kind: \"server\" does not run on backend = \"dpdk\" in the daemon (use a router \
         or cross-connect, `xdpos echo --backend dpdk`, or backend = \"afxdp\")",
    );
    has(
        &dpdk_router("fast_path = \"xdp\"\n"),
        "role.fast_path: \"xdp\" needs backend = \"afxdp\" (DPDK devices run no XDP program; \
         use \"auto\" or \"userspace\")",
    );
    has(
        &dpdk_router("[[services]]\nkind = \"udp-echo\"\nlisten = \"10.0.1.1:7\"\n"),
        "services: a router on backend = \"dpdk\" runs no services (backend = \"afxdp\" does)",
    );
    let bad = dpdk_router(
        "[dpdk]\nmemory_mb = 8\nframes = 10\nring_size = 1000\neal_args = [\"\"]\n\
         [dpdk.devices]\neth7 = \"net_tap0\"\neth2 = \"a b\"\n",
    );
    for want in [
        "dpdk.memory_mb: 8 is out of range (64 to 1048576)",
        "dpdk.frames: 10 is out of range (512 to 1048576)",
        "dpdk.ring_size: 1000 is not a power of two from 64 to 4096",
        "dpdk.eal_args[0]: an empty EAL argument",
        "dpdk.devices.eth7: \"eth7\" is not a configured interface",
        "dpdk.devices.eth2: \"a b\" is not a DPDK device (a PCI address or net_…,args)",
    ] {
        has(&bad, want);
    }
    // An unknown driver or key in [dpdk] is a parse error naming its line.
    let p = problems(&dpdk_router("[dpdk]\npmd = \"net_ring\"\n"));
    assert!(p[0].starts_with("line ") && p[0].contains("unknown variant `net_ring`"), "{p:?}");
    let p = problems(&dpdk_router("[dpdk]\nhugepages = true\n"));
    assert!(p[0].contains("unknown field `hugepages`"), "{p:?}");
    let p = problems(&dpdk_router("").replace("\"dpdk\"", "\"netmap\""));
    assert!(p[0].contains("unknown variant `netmap`"), "{p:?}");
}
