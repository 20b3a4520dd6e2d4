//! # Whole-file validation
//!
//! What it is: the check of a parsed [`Config`] as a whole — every value against its type and
//! range, every reference against what it names (interfaces, queues, CPUs of this host), and the
//! file against itself (no queue owned twice, no address on two interfaces, no two services on
//! one port, next hops reachable) — producing either a [`Checked`] configuration of typed values
//! or a [`ConfigError`] listing every problem with its path and value.
//!
//! What it never does: touch the system. What the host has (CPUs, interfaces and their queues)
//! comes in as [`Host`], gathered by the caller; [`Host::unknown`] skips those checks (checking a
//! file for another machine).
//!
//! Nothing of a configuration is applied before it validates completely: the daemon calls this
//! first, on start and on every reload.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use crate::error::{ConfigError, Problem};
use crate::schema::{Backend, BindMode, Config, Dpdk, FastPath, RoleKind, ServiceKind, XdpMode};

/// Longest interface name Linux accepts (`IFNAMSIZ` - 1).
pub const MAX_IFNAME: usize = 15;
/// Most queues one interface may use (the steering program's XSKMAP size).
pub const MAX_QUEUES: u32 = 64;

/// What this host has, for the checks that depend on it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Host {
    /// Online CPUs (`None`: unknown, not checked).
    pub cpus: Option<usize>,
    /// Interfaces and their RX queue counts (`None`: unknown, not checked; a count of `None`:
    /// the interface exists but its driver does not report queues).
    pub interfaces: Option<HashMap<String, Option<u32>>>,
}

impl Host {
    /// Nothing known: host-dependent checks are skipped.
    pub fn unknown() -> Host {
        Host::default()
    }
}

/// An IPv4 address with a prefix length, `a.b.c.d/len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Cidr {
    /// The address.
    pub addr: Ipv4Addr,
    /// Prefix length, 0..=32.
    pub len: u8,
}

impl Ipv4Cidr {
    /// Parses `a.b.c.d/len`.
    pub fn parse(s: &str) -> Option<Ipv4Cidr> {
        let (a, l) = s.split_once('/')?;
        let addr: Ipv4Addr = a.parse().ok()?;
        let len: u8 = l.parse().ok()?;
        (len <= 32).then_some(Ipv4Cidr { addr, len })
    }

    /// The netmask.
    pub fn mask(&self) -> u32 {
        if self.len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.len))
        }
    }

    /// The network address (host bits cleared).
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask())
    }

    /// Whether `ip` is inside this prefix.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.network())
    }
}

impl std::fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// A validated interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfaceCfg {
    /// Device name.
    pub name: String,
    /// Queues used: 0 .. queues.
    pub queues: u32,
    /// XDP attach mode.
    pub xdp_mode: XdpMode,
    /// AF_XDP bind mode.
    pub bind: BindMode,
    /// MTU.
    pub mtu: u32,
    /// Own addresses.
    pub addresses: Vec<Ipv4Cidr>,
    /// UMEM frame size.
    pub frame_size: u32,
    /// UMEM frames per queue.
    pub frames: u32,
    /// Frames kept posted on each fill ring, at most (`None`: the socket layer's default,
    /// `nic::afxdp::DEFAULT_FILL`, which it caps at the ring).
    pub fill: Option<u32>,
    /// Ring entries.
    pub ring_size: u32,
    /// Burst size.
    pub burst: u32,
}

/// One queue of one interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QueueRef {
    /// Index into [`Checked::interfaces`].
    pub iface: usize,
    /// Queue index.
    pub queue: u32,
}

/// A validated worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerCfg {
    /// CPU it is pinned to.
    pub cpu: usize,
    /// Queues it polls.
    pub queues: Vec<QueueRef>,
}

/// The validated role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleCfg {
    /// Services on the stack.
    Server,
    /// IPv4 router.
    Router {
        /// Where known routes are forwarded.
        fast_path: FastPath,
    },
    /// Cross-connect of interface pairs (indices into [`Checked::interfaces`]).
    Xconnect {
        /// The pairs.
        pairs: Vec<(usize, usize)>,
    },
}

/// A validated route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteCfg {
    /// Destination prefix (host bits zero).
    pub prefix: Ipv4Cidr,
    /// Next hop, `None` for on-link.
    pub via: Option<Ipv4Addr>,
    /// Egress interface (index).
    pub iface: usize,
}

/// A validated static neighbour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighborCfg {
    /// Address.
    pub ip: Ipv4Addr,
    /// MAC.
    pub mac: [u8; 6],
    /// Interface (index).
    pub iface: usize,
}

/// A validated service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceCfg {
    /// Kind.
    pub kind: ServiceKind,
    /// Listen address (`0.0.0.0`: every appliance address).
    pub listen: SocketAddrV4,
    /// HTTP body.
    pub body: Option<String>,
    /// HTTP: a generated body of this many bytes instead.
    pub body_size: Option<usize>,
    /// HTTP: the path served.
    pub path: Option<String>,
}

/// A configuration that passed validation: typed values, references resolved to indices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// Interfaces.
    pub interfaces: Vec<IfaceCfg>,
    /// Workers.
    pub workers: Vec<WorkerCfg>,
    /// Role.
    pub role: RoleCfg,
    /// Static routes.
    pub routes: Vec<RouteCfg>,
    /// Static neighbours.
    pub neighbors: Vec<NeighborCfg>,
    /// Services.
    pub services: Vec<ServiceCfg>,
    /// Metrics endpoint.
    pub metrics: SocketAddr,
    /// The device layer.
    pub backend: Backend,
    /// DPDK settings: `Some` (the file's `[dpdk]` or its defaults) exactly when the backend
    /// is DPDK.
    pub dpdk: Option<Dpdk>,
}

/// Collects problems while checking.
struct Report(Vec<Problem>);

impl Report {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem { path: path.into(), message: message.into() });
    }
}

/// Parses `a:b:c:d:e:f`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in mac.iter_mut() {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// Validates `cfg` as a whole against `host`.
pub fn validate(cfg: &Config, host: &Host) -> Result<Checked, ConfigError> {
    let mut r = Report(Vec::new());
    let interfaces = check_interfaces(cfg, host, &mut r);
    let index: HashMap<&str, usize> =
        cfg.interfaces.iter().enumerate().map(|(i, x)| (x.name.as_str(), i)).collect();
    let workers = check_workers(cfg, host, &index, &mut r);
    let role = check_role(cfg, &index, &mut r);
    check_layout(cfg, &workers, &mut r);
    let routes = check_routes(cfg, &interfaces, &index, &mut r);
    let neighbors = check_neighbors(cfg, &interfaces, &index, &mut r);
    let services = check_services(cfg, &interfaces, &mut r);
    let dpdk = check_dpdk(cfg, &index, &mut r);
    let metrics = match cfg.metrics.listen.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            r.add("metrics.listen", format!("{:?} is not an address:port", cfg.metrics.listen));
            None
        }
    };
    if !r.0.is_empty() {
        return Err(ConfigError { problems: r.0 });
    }
    Ok(Checked {
        interfaces: interfaces.into_iter().flatten().collect(),
        workers,
        role,
        routes,
        neighbors,
        services,
        metrics: metrics.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9464))),
        backend: cfg.backend,
        dpdk,
    })
}

/// The backend and the `[dpdk]` table: EAL and pool settings in range, devices naming
/// configured interfaces, and only what the DPDK backend runs (a forwarding role; no XDP fast
/// path; no services on a router, whose stacks get no service apps on DPDK yet).
fn check_dpdk(cfg: &Config, index: &HashMap<&str, usize>, r: &mut Report) -> Option<Dpdk> {
    if cfg.backend != Backend::Dpdk {
        if cfg.dpdk.is_some() {
            r.add("dpdk", "a [dpdk] table needs backend = \"dpdk\" (the backend is \"afxdp\")");
        }
        return None;
    }
    let d = cfg.dpdk.clone().unwrap_or_default();
    match cfg.role.kind {
        RoleKind::Server => r.add(
            "role.kind",
            "\"server\" does not run on backend = \"dpdk\" in the daemon (use a router or \
             cross-connect, `xdpos echo --backend dpdk`, or backend = \"afxdp\")",
        ),
        RoleKind::Router if !cfg.services.is_empty() => r.add(
            "services",
            "a router on backend = \"dpdk\" runs no services (backend = \"afxdp\" does)",
        ),
        _ => {}
    }
    if cfg.role.fast_path == FastPath::Xdp {
        r.add(
            "role.fast_path",
            "\"xdp\" needs backend = \"afxdp\" (DPDK devices run no XDP program; use \"auto\" or \"userspace\")",
        );
    }
    if !(64..=1 << 20).contains(&d.memory_mb) {
        r.add("dpdk.memory_mb", format!("{} is out of range (64 to {})", d.memory_mb, 1 << 20));
    }
    if !(512..=1 << 20).contains(&d.frames) {
        r.add("dpdk.frames", format!("{} is out of range (512 to {})", d.frames, 1 << 20));
    }
    if !d.ring_size.is_power_of_two() || !(64..=4096).contains(&d.ring_size) {
        r.add("dpdk.ring_size", format!("{} is not a power of two from 64 to 4096", d.ring_size));
    }
    for (name, dev) in &d.devices {
        let p = format!("dpdk.devices.{name}");
        if !index.contains_key(name.as_str()) {
            r.add(&p, format!("{name:?} is not a configured interface"));
        }
        if dev.is_empty() || dev.contains(char::is_whitespace) {
            r.add(p, format!("{dev:?} is not a DPDK device (a PCI address or net_…,args)"));
        }
    }
    for (k, a) in d.eal_args.iter().enumerate() {
        if a.is_empty() {
            r.add(format!("dpdk.eal_args[{k}]"), "an empty EAL argument");
        }
    }
    Some(d)
}

fn check_interfaces(cfg: &Config, host: &Host, r: &mut Report) -> Vec<Option<IfaceCfg>> {
    let mut seen_names: HashMap<&str, usize> = HashMap::new();
    let mut seen_addrs: HashMap<Ipv4Addr, String> = HashMap::new();
    let mut out = Vec::new();
    for (i, x) in cfg.interfaces.iter().enumerate() {
        let p = format!("interfaces[{i}]");
        let before = r.0.len();
        if x.name.is_empty()
            || x.name.len() > MAX_IFNAME
            || x.name.contains(|c: char| c == '/' || c == ':' || c.is_whitespace())
        {
            r.add(format!("{p}.name"), format!("{:?} is not a valid interface name (1 to 15 characters, no '/', ':' or spaces)", x.name));
        }
        if let Some(j) = seen_names.insert(&x.name, i) {
            r.add(
                format!("{p}.name"),
                format!("{:?} is already configured as interfaces[{j}]", x.name),
            );
        }
        if !(1..=MAX_QUEUES).contains(&x.queues) {
            r.add(
                format!("{p}.queues"),
                format!("{} is out of range (1 to {MAX_QUEUES})", x.queues),
            );
        }
        // A DPDK device named in [dpdk.devices] needs no kernel interface, and DPDK's queue
        // pairs are not the kernel's queues.
        let dpdk = cfg.backend == Backend::Dpdk;
        let named = cfg.dpdk.as_ref().is_some_and(|d| d.devices.contains_key(&x.name));
        if let Some(ifs) = host.interfaces.as_ref().filter(|_| !(dpdk && named)) {
            match ifs.get(&x.name) {
                None => r.add(
                    format!("{p}.name"),
                    format!("no interface named {:?} on this host", x.name),
                ),
                Some(Some(have)) if x.queues > *have && !dpdk => r.add(
                    format!("{p}.queues"),
                    format!("{} queues asked for, but {} has {have}", x.queues, x.name),
                ),
                Some(_) => {}
            }
        }
        if x.frame_size != 2048 && x.frame_size != 4096 {
            r.add(format!("{p}.frame_size"), format!("{} is not 2048 or 4096", x.frame_size));
        }
        if !(68..=9000).contains(&x.mtu) {
            r.add(format!("{p}.mtu"), format!("{} is out of range (68 to 9000)", x.mtu));
        } else if (x.frame_size == 2048 || x.frame_size == 4096) && x.mtu + 18 + 256 > x.frame_size
        {
            r.add(
                format!("{p}.mtu"),
                format!("{} does not fit a {}-byte frame with 256 bytes of headroom and a VLAN tag (use frame_size = 4096 or a smaller MTU)", x.mtu, x.frame_size),
            );
        }
        if !x.ring_size.is_power_of_two() || !(64..=32768).contains(&x.ring_size) {
            r.add(
                format!("{p}.ring_size"),
                format!("{} is not a power of two from 64 to 32768", x.ring_size),
            );
        }
        if !(1..=256).contains(&x.burst) {
            r.add(format!("{p}.burst"), format!("{} is out of range (1 to 256)", x.burst));
        }
        if let Some(fill) = x.fill {
            if fill < x.burst || fill > x.ring_size {
                r.add(
                    format!("{p}.fill"),
                    format!(
                        "{fill} is out of range ({}, burst, to {}, ring_size)",
                        x.burst, x.ring_size
                    ),
                );
            }
        }
        let min_frames = u64::from(x.ring_size) + u64::from(x.burst);
        if u64::from(x.frames) < min_frames || x.frames > 1 << 20 {
            r.add(
                format!("{p}.frames"),
                format!(
                    "{} is out of range ({min_frames}, ring_size + burst, to {})",
                    x.frames,
                    1u32 << 20
                ),
            );
        }
        let mut addresses = Vec::new();
        for (k, a) in x.addresses.iter().enumerate() {
            let ap = format!("{p}.addresses[{k}]");
            match Ipv4Cidr::parse(a) {
                None => r.add(
                    ap,
                    format!("{a:?} is not an IPv4 address with a prefix length (a.b.c.d/len)"),
                ),
                Some(c) => {
                    let host_bits_all_ones =
                        c.len < 31 && (u32::from(c.addr) | c.mask()) == u32::MAX;
                    let host_bits_zero = c.len < 31 && u32::from(c.addr) & !c.mask() == 0;
                    if c.addr.is_unspecified()
                        || c.addr.is_multicast()
                        || c.addr.is_broadcast()
                        || c.addr.is_loopback()
                    {
                        r.add(ap, format!("{a:?} cannot be an interface address"));
                    } else if host_bits_zero || host_bits_all_ones {
                        r.add(
                            ap,
                            format!("{a:?} is the network or broadcast address of its prefix"),
                        );
                    } else if let Some(other) = seen_addrs.insert(c.addr, ap.clone()) {
                        r.add(ap, format!("{} is already configured at {other}", c.addr));
                    } else {
                        addresses.push(c);
                    }
                }
            }
        }
        out.push((r.0.len() == before).then(|| IfaceCfg {
            name: x.name.clone(),
            queues: x.queues,
            xdp_mode: x.xdp_mode,
            bind: x.bind,
            mtu: x.mtu,
            addresses,
            frame_size: x.frame_size,
            frames: x.frames,
            fill: x.fill,
            ring_size: x.ring_size,
            burst: x.burst,
        }));
    }
    out
}

fn check_workers(
    cfg: &Config,
    host: &Host,
    index: &HashMap<&str, usize>,
    r: &mut Report,
) -> Vec<WorkerCfg> {
    let mut owner: HashMap<QueueRef, String> = HashMap::new();
    let mut cpus: HashMap<usize, usize> = HashMap::new();
    let mut out = Vec::new();
    if cfg.workers.is_empty() && !cfg.interfaces.is_empty() {
        r.add(
            "workers",
            "no worker: every interface queue needs one ([[workers]] cpu = …, queues = [\"if:q\"])",
        );
    }
    for (w, x) in cfg.workers.iter().enumerate() {
        let p = format!("workers[{w}]");
        if let Some(n) = host.cpus {
            if x.cpu >= n {
                r.add(
                    format!("{p}.cpu"),
                    format!("core {} does not exist (this host has {n})", x.cpu),
                );
            }
        }
        if let Some(other) = cpus.insert(x.cpu, w) {
            r.add(format!("{p}.cpu"), format!("core {} already runs workers[{other}]", x.cpu));
        }
        if x.queues.is_empty() {
            r.add(format!("{p}.queues"), "a worker needs at least one queue");
        }
        let mut queues = Vec::new();
        for (k, q) in x.queues.iter().enumerate() {
            let qp = format!("{p}.queues[{k}]");
            let Some((name, n)) = q.rsplit_once(':') else {
                r.add(qp, format!("{q:?} is not interface:queue"));
                continue;
            };
            let Ok(n) = n.parse::<u32>() else {
                r.add(qp, format!("{q:?} is not interface:queue (queue is not a number)"));
                continue;
            };
            let Some(&i) = index.get(name) else {
                r.add(qp, format!("{q:?} names interface {name:?}, which is not configured"));
                continue;
            };
            if n >= cfg.interfaces[i].queues {
                r.add(
                    qp,
                    format!(
                        "{q:?}: interfaces[{i}] ({name}) uses {} queues (0 to {})",
                        cfg.interfaces[i].queues,
                        cfg.interfaces[i].queues.saturating_sub(1)
                    ),
                );
                continue;
            }
            let qr = QueueRef { iface: i, queue: n };
            if let Some(other) = owner.insert(qr, qp.clone()) {
                r.add(qp, format!("{q:?} is already polled by {other}"));
                continue;
            }
            queues.push(qr);
        }
        out.push(WorkerCfg { cpu: x.cpu, queues });
    }
    for (i, x) in cfg.interfaces.iter().enumerate() {
        for q in 0..x.queues.min(MAX_QUEUES) {
            if !owner.contains_key(&QueueRef { iface: i, queue: q }) && !cfg.workers.is_empty() {
                r.add(
                    format!("interfaces[{i}].queues"),
                    format!("queue {q} of {} has no worker", x.name),
                );
            }
        }
    }
    out
}

fn check_role(cfg: &Config, index: &HashMap<&str, usize>, r: &mut Report) -> RoleCfg {
    let role = &cfg.role;
    if role.kind != RoleKind::Xconnect && !role.xconnect.is_empty() {
        r.add("role.xconnect", "port pairs are only for kind = \"xconnect\"");
    }
    if role.kind != RoleKind::Router && role.fast_path != FastPath::Auto {
        r.add("role.fast_path", "only a router has a fast path");
    }
    match role.kind {
        RoleKind::Server => {
            if cfg.services.is_empty() {
                r.add(
                    "services",
                    "a server needs at least one service ([[services]] kind = …, listen = …)",
                );
            }
            RoleCfg::Server
        }
        RoleKind::Router => {
            for (i, x) in cfg.interfaces.iter().enumerate() {
                if x.addresses.is_empty() {
                    r.add(
                        format!("interfaces[{i}].addresses"),
                        format!("a router needs an address on {} (for ARP and ICMP)", x.name),
                    );
                }
            }
            if cfg.interfaces.is_empty() {
                r.add("interfaces", "a router needs at least one interface");
            }
            RoleCfg::Router { fast_path: role.fast_path }
        }
        RoleKind::Xconnect => {
            if role.xconnect.is_empty() {
                r.add(
                    "role.xconnect",
                    "a cross-connect needs at least one pair ([[role.xconnect]] a = …, b = …)",
                );
            }
            if !cfg.services.is_empty() {
                r.add("services", "a cross-connect has no stack to run services on");
            }
            let mut used: HashMap<&str, String> = HashMap::new();
            let mut pairs = Vec::new();
            for (k, pr) in role.xconnect.iter().enumerate() {
                let p = format!("role.xconnect[{k}]");
                let mut ends = [None, None];
                for (e, (field, name)) in [("a", &pr.a), ("b", &pr.b)].into_iter().enumerate() {
                    match index.get(name.as_str()) {
                        None => r.add(
                            format!("{p}.{field}"),
                            format!("{name:?} is not a configured interface"),
                        ),
                        Some(&i) => ends[e] = Some(i),
                    }
                    if let Some(other) = used.insert(name, format!("{p}.{field}")) {
                        r.add(
                            format!("{p}.{field}"),
                            format!("{name:?} is already cross-connected at {other}"),
                        );
                    }
                }
                if let [Some(a), Some(b)] = ends {
                    if a == b {
                        r.add(p, "an interface cannot be cross-connected to itself");
                    } else {
                        pairs.push((a, b));
                    }
                }
            }
            RoleCfg::Xconnect { pairs }
        }
    }
}

/// How the role uses the workers' queues:
/// - a **server** worker runs one stack over the queues it polls, so they must belong to one
///   interface (one MAC, one set of addresses), and every interface needs an address for it;
/// - a **router** or **cross-connect** worker sends a frame from the memory it arrived in, so it
///   polls the same queue index `k` of *every* interface (one shared UMEM), and the interfaces
///   agree on everything that memory and its sockets share.
fn check_layout(cfg: &Config, workers: &[WorkerCfg], r: &mut Report) {
    match cfg.role.kind {
        RoleKind::Server => {
            for (i, x) in cfg.interfaces.iter().enumerate() {
                if x.addresses.is_empty() {
                    r.add(
                        format!("interfaces[{i}].addresses"),
                        format!("a server needs an address on {} (its stack answers ARP and ping there)", x.name),
                    );
                }
            }
            for (w, x) in workers.iter().enumerate() {
                if let Some(first) = x.queues.first() {
                    if let Some((k, q)) =
                        x.queues.iter().enumerate().find(|(_, q)| q.iface != first.iface)
                    {
                        r.add(
                            format!("workers[{w}].queues[{k}]"),
                            format!(
                                "\"{}:{}\": a server worker runs one stack, over queues of one interface ({} here)",
                                cfg.interfaces[q.iface].name, q.queue, cfg.interfaces[first.iface].name
                            ),
                        );
                    }
                }
            }
        }
        RoleKind::Router | RoleKind::Xconnect => {
            let Some(first) = cfg.interfaces.first() else { return };
            let shared = |x: &crate::schema::Interface| {
                [
                    ("queues", x.queues.to_string()),
                    ("frame_size", x.frame_size.to_string()),
                    ("frames", x.frames.to_string()),
                    ("ring_size", x.ring_size.to_string()),
                    ("burst", x.burst.to_string()),
                    ("xdp_mode", format!("{:?}", x.xdp_mode).to_lowercase()),
                    ("bind", format!("{:?}", x.bind).to_lowercase()),
                ]
            };
            let want = shared(first);
            for (i, x) in cfg.interfaces.iter().enumerate().skip(1) {
                for ((field, have), (_, base)) in shared(x).iter().zip(&want) {
                    if have != base {
                        r.add(
                            format!("interfaces[{i}].{field}"),
                            format!(
                                "{have}, but a forwarding worker shares one UMEM and one loop across every interface: it must match interfaces[0] ({base})"
                            ),
                        );
                    }
                }
            }
            for (w, x) in workers.iter().enumerate() {
                let Some(k) = x.queues.first().map(|q| q.queue) else { continue };
                for (i, iface) in cfg.interfaces.iter().enumerate() {
                    let n = x.queues.iter().filter(|q| q.iface == i && q.queue == k).count();
                    if n == 0 && k < iface.queues {
                        r.add(
                            format!("workers[{w}].queues"),
                            format!(
                                "missing \"{}:{k}\": a forwarding worker polls queue {k} of every interface (a frame leaves from the memory it arrived in)",
                                iface.name
                            ),
                        );
                    }
                }
                if let Some((j, q)) = x.queues.iter().enumerate().find(|(_, q)| q.queue != k) {
                    r.add(
                        format!("workers[{w}].queues[{j}]"),
                        format!(
                            "\"{}:{}\": a forwarding worker polls one queue index on every interface ({k} here)",
                            cfg.interfaces[q.iface].name, q.queue
                        ),
                    );
                }
            }
        }
    }
}

/// Index of the interface whose connected prefix holds `ip`.
fn connected(interfaces: &[Option<IfaceCfg>], ip: Ipv4Addr) -> Option<usize> {
    interfaces
        .iter()
        .position(|x| x.as_ref().is_some_and(|x| x.addresses.iter().any(|c| c.contains(ip))))
}

fn check_routes(
    cfg: &Config,
    interfaces: &[Option<IfaceCfg>],
    index: &HashMap<&str, usize>,
    r: &mut Report,
) -> Vec<RouteCfg> {
    let mut seen: HashMap<Ipv4Cidr, usize> = HashMap::new();
    let mut out = Vec::new();
    for (k, x) in cfg.routes.iter().enumerate() {
        let p = format!("routes[{k}]");
        let Some(prefix) = Ipv4Cidr::parse(&x.prefix) else {
            r.add(format!("{p}.prefix"), format!("{:?} is not a.b.c.d/len", x.prefix));
            continue;
        };
        if prefix.network() != prefix.addr {
            r.add(
                format!("{p}.prefix"),
                format!(
                    "{:?} has host bits set (did you mean {}/{}?)",
                    x.prefix,
                    prefix.network(),
                    prefix.len
                ),
            );
            continue;
        }
        if let Some(j) = seen.insert(prefix, k) {
            r.add(format!("{p}.prefix"), format!("{prefix} is already routed by routes[{j}]"));
        }
        let named = match &x.interface {
            None => None,
            Some(n) => match index.get(n.as_str()) {
                Some(&i) => Some(i),
                None => {
                    r.add(format!("{p}.interface"), format!("{n:?} is not a configured interface"));
                    continue;
                }
            },
        };
        let via = match &x.via {
            None => None,
            Some(v) => match v.parse::<Ipv4Addr>() {
                Ok(a) => Some(a),
                Err(_) => {
                    r.add(format!("{p}.via"), format!("{v:?} is not an IPv4 address"));
                    continue;
                }
            },
        };
        let iface = match (via, named) {
            (None, None) => {
                r.add(p, "an on-link route (no via) needs an interface");
                continue;
            }
            (None, Some(i)) => i,
            (Some(gw), named) => match connected(interfaces, gw) {
                Some(i) if named.is_none_or(|n| n == i) => i,
                Some(i) => {
                    r.add(
                        format!("{p}.via"),
                        format!("{gw} is reached on interfaces[{i}], not on the interface named"),
                    );
                    continue;
                }
                None => {
                    r.add(format!("{p}.via"), format!("{gw} is not inside any interface's prefix (next hops must be on a connected network)"));
                    continue;
                }
            },
        };
        out.push(RouteCfg { prefix, via, iface });
    }
    out
}

fn check_neighbors(
    cfg: &Config,
    interfaces: &[Option<IfaceCfg>],
    index: &HashMap<&str, usize>,
    r: &mut Report,
) -> Vec<NeighborCfg> {
    let mut seen: HashMap<(usize, Ipv4Addr), usize> = HashMap::new();
    let mut out = Vec::new();
    for (k, x) in cfg.neighbors.iter().enumerate() {
        let p = format!("neighbors[{k}]");
        let ip = x.ip.parse::<Ipv4Addr>();
        let mac = parse_mac(&x.mac);
        let iface = index.get(x.interface.as_str()).copied();
        if ip.is_err() {
            r.add(format!("{p}.ip"), format!("{:?} is not an IPv4 address", x.ip));
        }
        match mac {
            None => r.add(
                format!("{p}.mac"),
                format!("{:?} is not a MAC address (aa:bb:cc:dd:ee:ff)", x.mac),
            ),
            Some(m) if m[0] & 1 == 1 || m == [0; 6] => {
                r.add(format!("{p}.mac"), format!("{:?} is not a unicast address", x.mac))
            }
            Some(_) => {}
        }
        if iface.is_none() {
            r.add(
                format!("{p}.interface"),
                format!("{:?} is not a configured interface", x.interface),
            );
        }
        let (Ok(ip), Some(mac), Some(iface)) = (ip, mac, iface) else { continue };
        if let Some(Some(x)) = interfaces.get(iface) {
            if !x.addresses.iter().any(|c| c.contains(ip)) {
                r.add(format!("{p}.ip"), format!("{ip} is not on a network of {}", x.name));
                continue;
            }
        }
        if let Some(j) = seen.insert((iface, ip), k) {
            r.add(format!("{p}.ip"), format!("{ip} already has an entry at neighbors[{j}]"));
            continue;
        }
        out.push(NeighborCfg { ip, mac, iface });
    }
    out
}

fn check_services(
    cfg: &Config,
    interfaces: &[Option<IfaceCfg>],
    r: &mut Report,
) -> Vec<ServiceCfg> {
    let own: Vec<Ipv4Addr> =
        interfaces.iter().flatten().flat_map(|x| x.addresses.iter().map(|c| c.addr)).collect();
    let mut out: Vec<(usize, ServiceCfg)> = Vec::new();
    for (k, x) in cfg.services.iter().enumerate() {
        let p = format!("services[{k}]");
        let Ok(listen) = x.listen.parse::<SocketAddrV4>() else {
            r.add(format!("{p}.listen"), format!("{:?} is not a.b.c.d:port", x.listen));
            continue;
        };
        if listen.port() == 0 {
            r.add(
                format!("{p}.listen"),
                format!("{:?}: port 0 is not a port to listen on", x.listen),
            );
            continue;
        }
        if !listen.ip().is_unspecified() && !own.contains(listen.ip()) {
            r.add(
                format!("{p}.listen"),
                format!(
                    "{:?} is not an address of the appliance (configured: {})",
                    x.listen,
                    if own.is_empty() {
                        "none".to_string()
                    } else {
                        own.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ")
                    }
                ),
            );
            continue;
        }
        if x.body.is_some() && x.kind != ServiceKind::Http {
            r.add(
                format!("{p}.body"),
                format!("only an http service has a body, not {}", x.kind.as_str()),
            );
        }
        check_http(x, &p, r);
        let clash = out.iter().find(|(_, s)| {
            s.kind.is_tcp() == x.kind.is_tcp()
                && s.listen.port() == listen.port()
                && (s.listen.ip() == listen.ip()
                    || s.listen.ip().is_unspecified()
                    || listen.ip().is_unspecified())
        });
        if let Some((j, s)) = clash {
            r.add(
                format!("{p}.listen"),
                format!(
                    "{} port {} is already taken by services[{j}] ({} on {})",
                    if x.kind.is_tcp() { "TCP" } else { "UDP" },
                    listen.port(),
                    s.kind.as_str(),
                    s.listen
                ),
            );
            continue;
        }
        out.push((
            k,
            ServiceCfg {
                kind: x.kind,
                listen,
                body: x.body.clone(),
                body_size: x.body_size,
                path: x.path.clone(),
            },
        ));
    }
    out.into_iter().map(|(_, s)| s).collect()
}

/// Largest generated HTTP body (`body_size`): every worker holds a copy.
pub const MAX_HTTP_BODY: usize = 64 << 20;

/// The HTTP-only keys of service `x` at path `p`.
fn check_http(x: &crate::schema::Service, p: &str, r: &mut Report) {
    if x.kind != ServiceKind::Http {
        for (key, set) in [("body_size", x.body_size.is_some()), ("path", x.path.is_some())] {
            if set {
                r.add(
                    format!("{p}.{key}"),
                    format!("only an http service has a {key}, not {}", x.kind.as_str()),
                );
            }
        }
        return;
    }
    if let (Some(_), Some(n)) = (&x.body, x.body_size) {
        r.add(format!("{p}.body_size"), format!("{n}: give body or body_size, not both"));
    }
    if let Some(n) = x.body_size.filter(|&n| n > MAX_HTTP_BODY) {
        r.add(format!("{p}.body_size"), format!("{n} bytes is above the limit ({MAX_HTTP_BODY})"));
    }
    if let Some(path) = &x.path {
        let ok = path.starts_with('/')
            && path.len() <= 1024
            && path.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b'?' && b != b'#');
        if !ok {
            r.add(
                format!("{p}.path"),
                format!(
                    "{path:?} is not an origin-form path (starts with /, at most 1024 visible \
                     ASCII characters, no ? or #)"
                ),
            );
        }
    }
}
