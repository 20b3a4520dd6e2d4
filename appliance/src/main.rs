//! The `xdpos` command: `run` and `check-config` (the daemon), `demo`, `echo`, `forward`,
//! `cleanup`, `bench`.
#![forbid(unsafe_code)]

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use libos::iface::route::Ipv4Cidr;
use nic::afxdp::{Attach, BindMode, XdpMode, XskConfig};
use xdpos::bench::Stop;
use xdpos::echo::{EchoConfig, EchoService, Steer};
use xdpos::worker::TxCsum;

/// xdpos: a userspace packet-processing appliance on AF_XDP with a library-OS stack per core.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the appliance from a configuration file: validate it against this host, set up
    /// the role's interfaces, sockets and pinned workers, drop capabilities, print `ready:`;
    /// SIGHUP reloads routes and services, SIGTERM/SIGINT drains and exits 0 (docs/daemon.md).
    Run(xdpos::daemon::RunArgs),
    /// Validate a configuration file against this host: exit 0 with a one-line summary, or
    /// print every problem (path and value) and exit 2.
    CheckConfig(xdpos::daemon::CheckArgs),
    /// Build a namespace rig, serve an AF_XDP UDP echo on it, drive it with kernel clients,
    /// print what happens, and remove everything.
    Demo(xdpos::demo::DemoArgs),
    /// Be an IPv4 host at --addr on AF_XDP sockets of an interface (one pinned worker and one
    /// libos stack per queue: ARP, ping, UDP echo on --port, port unreachable, reassembly, and
    /// the TCP services asked for: --tcp-echo, --tcp-sink, --tcp-source, --sockperf, --iperf3,
    /// --http) until SIGTERM/SIGINT or --seconds. `xdpos serve` is the same command.
    #[command(alias = "serve")]
    Echo(EchoArgs),
    /// Capture the frames one queue of a running instance receives into a pcap file, through
    /// its metrics endpoint, without stopping its traffic.
    Capture(xdpos::capture::CaptureArgs),
    /// Forward between interfaces: an IPv4 router (FIB, ARP, ICMP) or an L2 cross-connect, one
    /// worker per queue index over a shared-UMEM group of every interface's queue.
    Forward(xdpos::forward::ForwardArgs),
    /// Remove what a crashed instance left behind: steering programs attached through netlink
    /// that no process owns, and the namespaces of dead rigs.
    Cleanup(CleanupArgs),
    /// Side-by-side benchmarks against the kernel (see BENCHMARKS.md).
    #[command(subcommand)]
    Bench(xdpos::bench::BenchCmd),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ModeArg {
    Auto,
    Native,
    Skb,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum AttachArg {
    Link,
    Netlink,
}

#[derive(Debug, clap::Args)]
struct EchoArgs {
    /// Interface to serve on.
    #[arg(long)]
    interface: String,
    /// The host's address, with its prefix (`10.0.0.2/24`; a bare address is a /32).
    #[arg(long, value_parser = xdpos::echo::parse_cidr)]
    addr: Ipv4Cidr,
    /// UDP port to echo.
    #[arg(long, default_value_t = 7)]
    port: u16,
    /// What the steering program takes: the whole address (ARP, ICMP, every UDP port), or
    /// only the UDP port (the kernel keeps the address's ARP and ICMP).
    #[arg(long, default_value = "addr")]
    steer: Steer,
    /// Who computes transmit checksums: auto (the stack, unless the device offloads them),
    /// stack, or partial (the port completes them).
    #[arg(long, default_value = "auto")]
    tx_csum: TxCsum,
    /// Queues to serve (default: all of the interface's queues).
    #[arg(long, value_delimiter = ',')]
    queues: Option<Vec<u32>>,
    /// CPUs to pin the workers to, in turn (default: no pinning).
    #[arg(long, value_delimiter = ',')]
    cpus: Vec<usize>,
    /// XDP mode: native with SKB fallback, native only, or SKB.
    #[arg(long, value_enum, default_value = "auto")]
    mode: ModeArg,
    /// How to attach the steering program.
    #[arg(long, value_enum, default_value = "link")]
    attach: AttachArg,
    /// Force copy mode (default: zero-copy where the driver supports it).
    #[arg(long)]
    copy: bool,
    /// Descriptors per burst.
    #[arg(long, default_value_t = nic::DEFAULT_BURST)]
    burst: usize,
    /// Stop after this many seconds (default: run until SIGTERM/SIGINT).
    #[arg(long)]
    seconds: Option<f64>,
    /// The device layer (`--backend afxdp|dpdk`) and the DPDK settings.
    #[command(flatten)]
    dpdk: xdpos::dpdk::DpdkArgs,
    /// Serve /metrics, /healthz and /readyz on this address (e.g. 127.0.0.1:9464).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<std::net::SocketAddr>,
    #[command(flatten)]
    tcp: TcpArgs,
}

/// The TCP services and the TCP tunables of `xdpos echo`.
#[derive(Debug, clap::Args)]
struct TcpArgs {
    /// TCP echo on this port (every byte back).
    #[arg(long, value_name = "PORT")]
    tcp_echo: Option<u16>,
    /// TCP sink (discard) on this port.
    #[arg(long, value_name = "PORT")]
    tcp_sink: Option<u16>,
    /// TCP source on this port (sends a test pattern until the client closes).
    #[arg(long, value_name = "PORT")]
    tcp_source: Option<u16>,
    /// sockperf server (TCP framing) on this port.
    #[arg(long, value_name = "PORT")]
    sockperf: Option<u16>,
    /// iperf3 server on this port (the stock `iperf3 -c` client, forward and -R).
    #[arg(long, value_name = "PORT")]
    iperf3: Option<u16>,
    /// HTTP/1.1 responder on this port (GET/HEAD of --http-path answered with a static body;
    /// keep-alive, pipelining).
    #[arg(long, value_name = "PORT")]
    http: Option<u16>,
    /// The HTTP body (default: "hello from xdpos").
    #[arg(long, value_name = "TEXT", conflicts_with = "http_body_size")]
    http_body: Option<String>,
    /// An HTTP body of this many bytes of a test pattern instead.
    #[arg(long, value_name = "BYTES")]
    http_body_size: Option<usize>,
    /// The path served (others get 404).
    #[arg(long, value_name = "PATH", default_value = "/")]
    http_path: String,
    /// TCP connection slots per queue.
    #[arg(long, default_value_t = 1024)]
    tcp_max_conns: usize,
    /// TCP receive and send buffer per connection, bytes.
    #[arg(long, default_value_t = 256 * 1024)]
    tcp_buffer: usize,
    /// Accept queue of each TCP listener.
    #[arg(long, default_value_t = 1024)]
    tcp_backlog: usize,
    /// Software TSO: the stacks build TCP super-segments in staging buffers, split before the
    /// ring.
    #[arg(long)]
    tso: bool,
    /// Software GRO: received TCP segments are coalesced before the stack.
    #[arg(long)]
    gro: bool,
}

impl TcpArgs {
    fn services(&self) -> xdpos::services::ServicesConfig {
        xdpos::services::ServicesConfig {
            echo: self.tcp_echo,
            sink: self.tcp_sink,
            source: self.tcp_source,
            sockperf: self.sockperf,
            iperf3: self.iperf3,
            http: self.http,
            http_cfg: self.http_cfg(),
            backlog: self.tcp_backlog,
        }
    }

    fn http_cfg(&self) -> xdpos::services::http::HttpConfig {
        use xdpos::services::http::HttpConfig;
        let base = match (&self.http_body, self.http_body_size) {
            (_, Some(n)) => HttpConfig::pattern_body(n),
            (Some(text), None) => {
                HttpConfig { body: text.clone().into_bytes(), ..Default::default() }
            }
            (None, None) => HttpConfig::default(),
        };
        HttpConfig { path: self.http_path.clone(), ..base }
    }

    fn tcp(&self) -> libos::tcp::TcpConfig {
        libos::tcp::TcpConfig {
            max_connections: self.tcp_max_conns,
            max_time_wait: self.tcp_max_conns,
            rx_buffer: self.tcp_buffer,
            tx_buffer: self.tcp_buffer,
            ..Default::default()
        }
    }
}

#[derive(Debug, clap::Args)]
struct CleanupArgs {
    /// Also clean every network namespace (`ip netns list`), not only the current one.
    #[arg(long)]
    all_namespaces: bool,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match &cli.cmd {
        Cmd::Run(a) => xdpos::daemon::run(a),
        Cmd::CheckConfig(a) => std::process::exit(xdpos::daemon::check_config(a)),
        Cmd::Demo(a) => xdpos::demo::run(a),
        Cmd::Echo(a) => echo(a),
        Cmd::Forward(a) => xdpos::forward::run_cli(a),
        Cmd::Capture(a) => xdpos::capture::run_cli(a),
        Cmd::Cleanup(a) => cleanup(a),
        Cmd::Bench(b) => xdpos::bench::run(b),
    }
}

fn echo(a: &EchoArgs) -> anyhow::Result<()> {
    let stop = Stop::on_signals()?;
    let queues = match &a.queues {
        Some(q) => q.clone(),
        None => {
            let n = nic::afxdp::rx_queues(&a.interface).unwrap_or(1);
            (0..n).collect()
        }
    };
    let cfg = EchoConfig {
        ifname: a.interface.clone(),
        addr: a.addr,
        port: a.port,
        steer: a.steer,
        queues,
        cpus: a.cpus.clone(),
        mode: match a.mode {
            ModeArg::Auto => XdpMode::Auto,
            ModeArg::Native => XdpMode::Native,
            ModeArg::Skb => XdpMode::Skb,
        },
        attach: match a.attach {
            AttachArg::Link => Attach::Link,
            AttachArg::Netlink => Attach::Netlink,
        },
        socket: XskConfig {
            burst: a.burst,
            bind: if a.copy { BindMode::Copy } else { BindMode::Auto },
            ..XskConfig::default()
        },
        tx_csum: a.tx_csum,
        services: a.tcp.services(),
        tcp: a.tcp.tcp(),
        worker: Default::default(),
        offloads: xdpos::offload::Offloads { tso: a.tcp.tso, gro: a.tcp.gro },
    };
    // The DPDK echo host has no metrics endpoint: refuse the flag rather than ignore it.
    anyhow::ensure!(
        a.metrics.is_none() || a.dpdk.backend != xdpos::dpdk::Backend::Dpdk,
        "echo: --metrics is not served with --backend dpdk (the DPDK echo host prints its \
         counters at exit and on a `stats` line on stdin)"
    );
    // The endpoint comes up first: /readyz answers 503 until the service serves.
    let registry = xdpos::metrics::Registry::new();
    let _server = match a.metrics {
        Some(addr) => {
            let s = xdpos::metrics::serve(addr, registry.clone())
                .with_context(|| format!("serve metrics on {addr}"))?;
            println!("metrics: http://{}/metrics", s.local_addr());
            Some(s)
        }
        None => None,
    };
    if a.dpdk.backend == xdpos::dpdk::Backend::Dpdk {
        return xdpos::dpdk::echo_cli(&cfg, &a.dpdk, &stop, a.seconds);
    }
    let service = EchoService::start(&cfg)?;
    registry.add(service.metrics());
    registry.add_captures(service.captures());
    registry.set_ready(true);
    // A line on stdout that scripts and tests wait for.
    let tcp: Vec<String> =
        cfg.services.listeners().map(|(p, s)| format!(", {s:?} on tcp {p}")).collect();
    println!(
        "ready: echo on {} port {} at {} ({} XDP){}",
        cfg.ifname,
        cfg.port,
        cfg.addr,
        service.xdp_mode(),
        tcp.concat()
    );
    match a.seconds {
        Some(s) => {
            stop.sleep(std::time::Duration::from_secs_f64(s.max(0.0)));
        }
        None => {
            while !stop.requested() {
                stop.sleep(std::time::Duration::from_secs(3600));
            }
        }
    }
    registry.set_ready(false);
    let (reports, verdicts) = service.join()?;
    let mut broken = false;
    for r in &reports {
        broken |= r.frames.is_err();
        println!("{}", r.line());
    }
    println!(
        "steering: redirected {} passed {} unparsed {} no-socket {}",
        verdicts.redirect.packets,
        verdicts.pass_not_owned.packets,
        verdicts.pass_unparsed.packets,
        verdicts.pass_no_socket.packets
    );
    anyhow::ensure!(!broken, "frame accounting broken");
    Ok(())
}

fn cleanup(a: &CleanupArgs) -> anyhow::Result<()> {
    let removed = xdpos::rig::sweep_stale();
    if removed > 0 {
        println!("removed {removed} namespaces of dead rigs");
    }
    let report = |ns: &str, actions: Vec<nic::afxdp::CleanupAction>| {
        for act in actions {
            match act {
                nic::afxdp::CleanupAction::Detached { ifname, prog_id } => {
                    println!("{ns}{ifname}: detached leftover steering program (id {prog_id})")
                }
                nic::afxdp::CleanupAction::InUse { ifname, prog_id } => {
                    println!("{ns}{ifname}: steering program id {prog_id} belongs to a running xdpos; left alone")
                }
            }
        }
    };
    report("", nic::afxdp::cleanup()?);
    if a.all_namespaces {
        let list = xdpos::rig::run(std::process::Command::new("ip").args(["netns", "list"]))?;
        for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
            let ns = xdpos::rig::Netns::existing(name);
            let actions = ns
                .run_in(nic::afxdp::cleanup)
                .with_context(|| format!("enter namespace {name}"))??;
            report(&format!("{name}: "), actions);
        }
    }
    Ok(())
}
