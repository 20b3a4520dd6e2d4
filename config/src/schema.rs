//! # The configuration schema
//!
//! What it is: the TOML file an operator writes, as Rust types deserialized with
//! `deny_unknown_fields` (a misspelt key is an error, never silently ignored). Values keep the
//! operator's spelling (strings for prefixes, MACs, queue references) so that validation can
//! name the exact path and value when something is wrong; [`crate::validate`] turns them into
//! checked values.
//!
//! What it never does: touch the system, or decide whether a value is valid beyond its TOML
//! type (that is `validate.rs`, which sees the whole file at once).
//!
//! ```toml
//! [metrics]
//! listen = "127.0.0.1:9464"
//!
//! [[interfaces]]
//! name = "eth1"
//! queues = 2
//! addresses = ["192.0.2.1/24"]
//!
//! [[workers]]
//! cpu = 1
//! queues = ["eth1:0", "eth1:1"]
//!
//! [role]
//! kind = "server"
//!
//! [[services]]
//! kind = "udp-echo"
//! listen = "192.0.2.1:7"
//! ```

use serde::Deserialize;

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Network interfaces the appliance takes over (in part or whole).
    #[serde(default)]
    pub interfaces: Vec<Interface>,
    /// Worker threads: one CPU each, the interface queues they poll.
    #[serde(default)]
    pub workers: Vec<Worker>,
    /// What the appliance does with the traffic.
    #[serde(default)]
    pub role: Role,
    /// Static routes.
    #[serde(default)]
    pub routes: Vec<Route>,
    /// Static neighbour (ARP) entries.
    #[serde(default)]
    pub neighbors: Vec<Neighbor>,
    /// Services on the library-OS stack.
    #[serde(default)]
    pub services: Vec<Service>,
    /// The Prometheus endpoint.
    #[serde(default)]
    pub metrics: Metrics,
    /// The device layer: AF_XDP sockets (default) or DPDK poll-mode drivers.
    #[serde(default)]
    pub backend: Backend,
    /// DPDK settings (only with `backend = "dpdk"`; defaults when absent).
    #[serde(default)]
    pub dpdk: Option<Dpdk>,
}

/// Which device layer the appliance runs on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// AF_XDP sockets with the steering program.
    #[default]
    Afxdp,
    /// DPDK poll-mode drivers (a build with the `dpdk` feature).
    Dpdk,
}

/// The DPDK virtual device put on an interface that `[dpdk.devices]` does not name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pmd {
    /// `net_af_packet` on the kernel interface.
    #[default]
    AfPacket,
    /// `net_af_xdp` on the kernel interface.
    AfXdp,
}

impl Pmd {
    /// The name used in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            Pmd::AfPacket => "af_packet",
            Pmd::AfXdp => "af_xdp",
        }
    }
}

/// The `[dpdk]` table: EAL start-up, devices, pools.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dpdk {
    /// Run EAL without hugepages (anonymous memory); default true.
    #[serde(default = "yes")]
    pub no_huge: bool,
    /// Memory EAL reserves, MiB (default 256).
    #[serde(default = "default_dpdk_memory")]
    pub memory_mb: u32,
    /// The virtual device on each interface not named in `devices`.
    #[serde(default)]
    pub pmd: Pmd,
    /// Interface name → DPDK device: a PCI address (`0000:03:00.0`, a NIC bound to vfio-pci)
    /// or a virtual device with its arguments (`net_tap0,iface=xf0`).
    #[serde(default)]
    pub devices: std::collections::BTreeMap<String, String>,
    /// Frames (mbufs) of each worker's pool for xdpos's own use (the drivers' rings come on
    /// top).
    #[serde(default = "default_dpdk_frames")]
    pub frames: u32,
    /// Descriptors per RX and per TX ring.
    #[serde(default = "default_dpdk_ring")]
    pub ring_size: u32,
    /// Checksum and TSO offloads of the devices (default true).
    #[serde(default = "yes")]
    pub offloads: bool,
    /// More EAL arguments, as on the command line (`["--log-level=lib.eal:debug"]`).
    #[serde(default)]
    pub eal_args: Vec<String>,
}

impl Default for Dpdk {
    fn default() -> Self {
        Dpdk {
            no_huge: true,
            memory_mb: default_dpdk_memory(),
            pmd: Pmd::AfPacket,
            devices: Default::default(),
            frames: default_dpdk_frames(),
            ring_size: default_dpdk_ring(),
            offloads: true,
            eal_args: Vec::new(),
        }
    }
}

fn yes() -> bool {
    true
}
fn default_dpdk_memory() -> u32 {
    256
}
fn default_dpdk_frames() -> u32 {
    4096
}
fn default_dpdk_ring() -> u32 {
    1024
}

/// XDP attach mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum XdpMode {
    /// Native (driver) mode, falling back to SKB mode with a warning.
    #[default]
    Auto,
    /// Native mode or fail.
    Native,
    /// SKB (generic) mode.
    Skb,
}

/// AF_XDP bind mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BindMode {
    /// Zero-copy where the driver supports it, else copy.
    #[default]
    Auto,
    /// Copy mode.
    Copy,
    /// Zero-copy or fail.
    ZeroCopy,
}

/// One interface.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interface {
    /// Device name (`eth1`).
    pub name: String,
    /// Queues used: 0 .. queues.
    #[serde(default = "one")]
    pub queues: u32,
    /// XDP attach mode.
    #[serde(default)]
    pub xdp_mode: XdpMode,
    /// AF_XDP bind mode.
    #[serde(default)]
    pub bind: BindMode,
    /// MTU (bytes of IP datagram); default 1500.
    #[serde(default = "default_mtu")]
    pub mtu: u32,
    /// The appliance's own addresses on this interface, `a.b.c.d/len`.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// Bytes per UMEM frame: 2048 or 4096.
    #[serde(default = "default_frame_size")]
    pub frame_size: u32,
    /// UMEM frames per queue.
    #[serde(default = "default_frames")]
    pub frames: u32,
    /// Entries of each AF_XDP ring (a power of two).
    #[serde(default = "default_ring_size")]
    pub ring_size: u32,
    /// Frames kept posted on each socket's fill ring, at most: from `burst` to `ring_size`
    /// (default 512, or `ring_size` if smaller: `nic::afxdp::DEFAULT_FILL`, capped by the
    /// socket). Fewer keep the frames the kernel copies into within a core's cache (docs/tcp.md,
    /// "a shallower fill ring").
    #[serde(default)]
    pub fill: Option<u32>,
    /// Descriptors per burst.
    #[serde(default = "default_burst")]
    pub burst: u32,
}

/// One worker.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Worker {
    /// CPU to pin to.
    pub cpu: usize,
    /// Queues polled, as `interface:queue`.
    pub queues: Vec<String>,
}

/// What the appliance does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RoleKind {
    /// Host services on the library-OS stack; the kernel keeps what the services do not own.
    #[default]
    Server,
    /// Route IPv4 between the interfaces.
    Router,
    /// Pass frames unchanged between interface pairs.
    Xconnect,
}

/// Where the router forwards known routes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FastPath {
    /// The XDP program where the NIC has no zero-copy AF_XDP, userspace otherwise.
    #[default]
    Auto,
    /// Always in userspace (the library OS).
    Userspace,
    /// In the XDP program, with the library OS as the slow path.
    Xdp,
}

/// The role section.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Role {
    /// Which role.
    #[serde(default)]
    pub kind: RoleKind,
    /// Router only: where known routes are forwarded.
    #[serde(default)]
    pub fast_path: FastPath,
    /// Cross-connect only: the port pairs.
    #[serde(default)]
    pub xconnect: Vec<XconnectPair>,
}

/// Two interfaces joined by the cross-connect.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XconnectPair {
    /// One side.
    pub a: String,
    /// The other side.
    pub b: String,
}

/// A static route.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Destination, `a.b.c.d/len` (host bits zero).
    pub prefix: String,
    /// Next hop; absent for an on-link route.
    #[serde(default)]
    pub via: Option<String>,
    /// Egress interface; required for an on-link route, else found from `via`.
    #[serde(default)]
    pub interface: Option<String>,
}

/// A static neighbour entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Neighbor {
    /// IPv4 address.
    pub ip: String,
    /// MAC address, `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    /// Interface it is reached on.
    pub interface: String,
}

/// Kinds of services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServiceKind {
    /// UDP echo (sockperf-compatible).
    UdpEcho,
    /// UDP sink: counts and drops.
    UdpSink,
    /// TCP echo.
    TcpEcho,
    /// TCP sink: reads and discards.
    TcpSink,
    /// TCP source: writes as fast as the peer reads.
    TcpSource,
    /// iperf3-protocol server.
    Iperf3,
    /// HTTP/1.1 responder with a static body.
    Http,
}

impl ServiceKind {
    /// Whether the service listens on TCP (else UDP).
    pub fn is_tcp(self) -> bool {
        !matches!(self, ServiceKind::UdpEcho | ServiceKind::UdpSink)
    }

    /// The name used in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceKind::UdpEcho => "udp-echo",
            ServiceKind::UdpSink => "udp-sink",
            ServiceKind::TcpEcho => "tcp-echo",
            ServiceKind::TcpSink => "tcp-sink",
            ServiceKind::TcpSource => "tcp-source",
            ServiceKind::Iperf3 => "iperf3",
            ServiceKind::Http => "http",
        }
    }
}

/// One service.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// What it is.
    pub kind: ServiceKind,
    /// Where it listens, `a.b.c.d:port` (`0.0.0.0` for every appliance address).
    pub listen: String,
    /// HTTP only: the response body (default `hello from xdpos`).
    #[serde(default)]
    pub body: Option<String>,
    /// HTTP only: a body of this many bytes of a test pattern instead of `body`.
    #[serde(default)]
    pub body_size: Option<usize>,
    /// HTTP only: the path served (default `/`; other paths get 404).
    #[serde(default)]
    pub path: Option<String>,
}

/// The metrics endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    /// Listen address of `/metrics`, `/healthz`, `/readyz`.
    #[serde(default = "default_metrics_listen")]
    pub listen: String,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics { listen: default_metrics_listen() }
    }
}

fn one() -> u32 {
    1
}
fn default_mtu() -> u32 {
    1500
}
fn default_frame_size() -> u32 {
    4096
}
fn default_frames() -> u32 {
    4096
}
fn default_ring_size() -> u32 {
    2048
}
fn default_burst() -> u32 {
    64
}
fn default_metrics_listen() -> String {
    "127.0.0.1:9464".into()
}
