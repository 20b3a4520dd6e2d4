//! # The DPDK backend of the appliance (`--backend dpdk`, cargo feature `dpdk`)
//!
//! What it is: the same roles on DPDK poll-mode drivers instead of AF_XDP sockets:
//! - `xdpos echo --backend dpdk`: the echo host of [`crate::echo`] (one [`Worker`] with its
//!   libos stack and TCP services per queue) over [`DpdkPort`]s;
//! - `xdpos forward --backend dpdk`: the router or cross-connect of [`crate::forward`], worker
//!   `k` polling queue `k` of every interface through a [`DpdkGroup`] (one mempool per worker,
//!   so a frame leaves from the mbuf it arrived in), started by
//!   [`ForwardService::start_groups`](crate::forward::ForwardService::start_groups);
//! - `xdpos run --config` with `backend = "dpdk"`: the same [`start_forward`], its settings
//!   from the file's `[dpdk]` table ([`DpdkArgs::from_config`]).
//!
//! Devices ([`DpdkArgs`]): each `--interface`/`--iface NAME` gets a DPDK device. By default a
//! virtual device on the kernel interface: `net_af_packet<i>,iface=NAME,qpairs=<queues>`
//! (`--dpdk-pmd af_packet`) or `net_af_xdp<i>,iface=NAME,start_queue=0,queue_count=<queues>`
//! (`--dpdk-pmd af_xdp`); `--dpdk-dev NAME=DEVICE` names another: a PCI address (a NIC bound to
//! vfio-pci) or a virtual device with its arguments. EAL keeps no shared runtime files
//! (several processes side by side: `--no-huge --no-shconf` with a file prefix of the process's
//! own, or `--in-memory` with `--dpdk-huge`), `-m --dpdk-mem`, main lcore 0;
//! the workers are xdpos's own threads, pinned by `--cpus`.
//!
//! Unlike AF_XDP there is no steering program: a device delivers every frame of its queue to
//! xdpos. `net_af_packet` is a tap: the kernel still sees the frames too, so the interface
//! should carry no kernel address of its own (the rig's device-under-test ends carry none).
//!
//! Shutdown: the workers stop, free what they hold and report; then the devices stop and
//! close, and every pool must have all its frames back (the leak check printed as `dpdk:
//! frames ok`; `net_af_xdp` keeps the mbufs of its fill ring past close, which is allowed up
//! to what its rings hold and said in the line); pools are freed and EAL is cleaned up
//! (`rte_eal_cleanup`).
//!
//! Built without the `dpdk` feature, `--backend dpdk` fails with a message saying how to
//! build it (`cargo build --release --features dpdk`).

use std::str::FromStr;

/// Which device layer the appliance runs on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Backend {
    /// AF_XDP sockets (nic::afxdp) with the steering program.
    #[default]
    Afxdp,
    /// DPDK poll-mode drivers (nic::dpdk).
    Dpdk,
}

impl FromStr for Backend {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Backend> {
        match s {
            "afxdp" | "af_xdp" => Ok(Backend::Afxdp),
            "dpdk" => Ok(Backend::Dpdk),
            _ => anyhow::bail!("unknown backend {s:?} (afxdp, dpdk)"),
        }
    }
}

impl Backend {
    /// The name on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Afxdp => "afxdp",
            Backend::Dpdk => "dpdk",
        }
    }
}

/// Whether this build has the DPDK backend.
pub const AVAILABLE: bool = cfg!(feature = "dpdk");

/// The backend choice and the DPDK settings of `xdpos echo` and `xdpos forward`.
#[derive(Debug, Clone, clap::Args)]
pub struct DpdkArgs {
    /// Device layer: afxdp (AF_XDP sockets) or dpdk (DPDK poll-mode drivers; needs a build
    /// with `--features dpdk`).
    #[arg(long, default_value = "afxdp")]
    pub backend: Backend,
    /// DPDK: the virtual device put on each interface that --dpdk-dev does not name:
    /// af_packet (net_af_packet) or af_xdp (net_af_xdp).
    #[arg(long = "dpdk-pmd", default_value = "af_packet", value_parser = ["af_packet", "af_xdp"])]
    pub dpdk_pmd: String,
    /// DPDK: the device of an interface, `NAME=DEVICE`: a PCI address (`eth1=0000:03:00.0`)
    /// or a virtual device with its arguments (`xf0=net_tap0,iface=xf0`).
    #[arg(long = "dpdk-dev", value_name = "NAME=DEVICE")]
    pub dpdk_devs: Vec<String>,
    /// DPDK: memory EAL reserves, MiB.
    #[arg(long = "dpdk-mem", default_value_t = 256)]
    pub dpdk_mem: u32,
    /// DPDK: use hugepages (default: --no-huge, anonymous memory).
    #[arg(long = "dpdk-huge")]
    pub dpdk_huge: bool,
    /// DPDK: frames (mbufs) of each worker's pool for xdpos's own use; the pool also gets
    /// what the devices' receive rings take (net_af_xdp: 2048 per queue, others: the ring).
    #[arg(long = "dpdk-frames", default_value_t = 4096)]
    pub dpdk_frames: u32,
    /// DPDK: descriptors per RX and per TX ring.
    #[arg(long = "dpdk-ring", default_value_t = 1024)]
    pub dpdk_ring: u16,
    /// DPDK: leave the devices' checksum and TSO offloads off.
    #[arg(long = "dpdk-no-offloads")]
    pub dpdk_no_offloads: bool,
    /// DPDK: one more EAL argument (repeat the flag for several).
    #[arg(long = "dpdk-eal", value_name = "ARG", allow_hyphen_values = true)]
    pub dpdk_eal: Vec<String>,
    /// DPDK echo host: also count and drop the UDP datagrams to this port (a receiver for
    /// `bench udp`); a `stats` line on stdin prints the live counters.
    #[arg(long = "dpdk-udp-sink", value_name = "PORT")]
    pub dpdk_udp_sink: Option<u16>,
}

impl Default for DpdkArgs {
    fn default() -> Self {
        DpdkArgs {
            backend: Backend::Afxdp,
            dpdk_pmd: "af_packet".into(),
            dpdk_devs: Vec::new(),
            dpdk_mem: 256,
            dpdk_huge: false,
            dpdk_frames: 4096,
            dpdk_ring: 1024,
            dpdk_no_offloads: false,
            dpdk_eal: Vec::new(),
            dpdk_udp_sink: None,
        }
    }
}

impl DpdkArgs {
    /// The settings of a configuration file's `[dpdk]` table (`xdpos run` with
    /// `backend = "dpdk"`): the same fields the flags set, so the daemon and `xdpos forward
    /// --backend dpdk` open their devices alike.
    pub fn from_config(d: &xdpos_config::schema::Dpdk) -> DpdkArgs {
        DpdkArgs {
            backend: Backend::Dpdk,
            dpdk_pmd: d.pmd.as_str().to_string(),
            dpdk_devs: d.devices.iter().map(|(n, dev)| format!("{n}={dev}")).collect(),
            dpdk_mem: d.memory_mb,
            dpdk_huge: !d.no_huge,
            dpdk_frames: d.frames,
            dpdk_ring: u16::try_from(d.ring_size).unwrap_or(u16::MAX),
            dpdk_no_offloads: !d.offloads,
            dpdk_eal: d.eal_args.clone(),
            dpdk_udp_sink: None,
        }
    }
}

/// Where one interface's DPDK device comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSpec {
    /// The device's name as EAL knows it (`net_af_packet0`, `0000:03:00.0`).
    pub name: String,
    /// `--vdev` argument, for a virtual device.
    pub vdev: Option<String>,
    /// `-a` argument, for a PCI device.
    pub pci: Option<String>,
}

impl DpdkArgs {
    /// The device of each interface (in order), with `queues` queue pairs each.
    pub fn devices(&self, ifaces: &[&str], queues: u32) -> anyhow::Result<Vec<DeviceSpec>> {
        let mut given = std::collections::HashMap::new();
        for d in &self.dpdk_devs {
            let (n, dev) = d
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("--dpdk-dev {d:?}: NAME=DEVICE"))?;
            anyhow::ensure!(ifaces.contains(&n), "--dpdk-dev {d:?}: no interface named {n:?}");
            given.insert(n, dev);
        }
        let mut out = Vec::new();
        for (i, &name) in ifaces.iter().enumerate() {
            anyhow::ensure!(
                !name.contains(',') && !name.contains('='),
                "interface name {name:?} cannot go into DPDK device arguments"
            );
            let spec = match given.get(name) {
                Some(dev) if !dev.starts_with("net_") && dev.contains(':') => {
                    DeviceSpec { name: dev.to_string(), vdev: None, pci: Some(dev.to_string()) }
                }
                Some(dev) => DeviceSpec {
                    name: dev.split(',').next().unwrap_or(dev).to_string(),
                    vdev: Some(dev.to_string()),
                    pci: None,
                },
                None if self.dpdk_pmd == "af_xdp" => DeviceSpec {
                    name: format!("net_af_xdp{i}"),
                    vdev: Some(format!(
                        "net_af_xdp{i},iface={name},start_queue=0,queue_count={queues}"
                    )),
                    pci: None,
                },
                None => DeviceSpec {
                    name: format!("net_af_packet{i}"),
                    vdev: Some(format!("net_af_packet{i},iface={name},qpairs={queues}")),
                    pci: None,
                },
            };
            out.push(spec);
        }
        Ok(out)
    }
}

#[cfg(feature = "dpdk")]
pub use imp::*;

#[cfg(not(feature = "dpdk"))]
pub use stub::*;

#[cfg(not(feature = "dpdk"))]
mod stub {
    use super::DpdkArgs;
    use crate::bench::Stop;
    use crate::echo::EchoConfig;
    use crate::forward::ForwardConfig;

    fn unavailable() -> anyhow::Error {
        anyhow::anyhow!(
            "this xdpos was built without the DPDK backend: build it with \
             `cargo build --release --features dpdk` (needs dpdk-dev, see README)"
        )
    }

    /// `xdpos echo --backend dpdk` (not in this build).
    pub fn echo_cli(
        _cfg: &EchoConfig,
        _args: &DpdkArgs,
        _stop: &Stop,
        _seconds: Option<f64>,
    ) -> anyhow::Result<()> {
        Err(unavailable())
    }

    /// The devices of a DPDK forwarding service (not in this build).
    #[derive(Debug)]
    pub struct ForwardDevices;

    impl ForwardDevices {
        /// Stops and releases the devices; lines to print.
        pub fn finish(self) -> anyhow::Result<Vec<String>> {
            Ok(Vec::new())
        }

        /// The devices' counters for a metrics registry.
        pub fn metrics(&self) -> std::sync::Arc<dyn crate::metrics::Source> {
            std::sync::Arc::new(NoDevices)
        }
    }

    /// No device, no metric.
    #[derive(Debug)]
    struct NoDevices;

    impl crate::metrics::Source for NoDevices {
        fn collect(&self, _: &mut crate::metrics::Exposition) {}
    }

    /// Starts `xdpos forward --backend dpdk` (not in this build).
    pub fn start_forward(
        _cfg: &ForwardConfig,
        _args: &DpdkArgs,
    ) -> anyhow::Result<(crate::forward::ForwardService, ForwardDevices)> {
        Err(unavailable())
    }
}

#[cfg(feature = "dpdk")]
mod imp {
    use std::net::{Ipv4Addr, SocketAddrV4};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use anyhow::Context;
    use libos::udp::{UdpMode, UdpSocketConfig};
    use libos::wire::EthernetAddress;
    use libos::{Stack, StackConfig};
    use nic::afxdp::XdpStatistics;
    use nic::dpdk::{
        Device, DeviceConfig, DpdkGroup, DpdkGroupPort, DpdkPort, Eal, EalConfig, Pool,
    };
    use nic::{FrameCounts, NicError, Port, PortStats};

    use super::DpdkArgs;
    use crate::bench::Stop;
    use crate::echo::{EchoConfig, WorkerReport};
    use crate::forward::{ForwardConfig, ForwardService, FwdGroup};
    use crate::offload::OffloadPort;
    use crate::services::Services;
    use crate::worker::{self, Clock, Worker, WorkerConfig, WorkerPort};

    impl WorkerPort for DpdkPort {
        fn idle_wait(&mut self, max: Duration) {
            DpdkPort::idle_wait(self, max)
        }

        fn check_frames(&self) -> Result<FrameCounts, String> {
            self.audit().map_err(|e| e.to_string())
        }
    }

    impl FwdGroup for DpdkGroup {
        type Port<'a> = DpdkGroupPort<'a>;
        fn len(&self) -> usize {
            DpdkGroup::len(self)
        }
        #[inline]
        fn port(&mut self, i: usize) -> DpdkGroupPort<'_> {
            DpdkGroup::port(self, i)
        }
        fn stats(&self, i: usize) -> PortStats {
            DpdkGroup::stats(self, i)
        }
        fn frame_counts(&self) -> FrameCounts {
            DpdkGroup::frame_counts(self)
        }
        fn audit(&self) -> Result<FrameCounts, NicError> {
            DpdkGroup::audit(self)
        }
        fn wait_rx(&mut self, timeout_ms: i32) -> Result<bool, NicError> {
            let ms = u64::try_from(timeout_ms).unwrap_or(0);
            self.idle_wait(Duration::from_millis(ms));
            Ok(true)
        }
        fn xdp_statistics(&self, _i: usize) -> Result<XdpStatistics, NicError> {
            Ok(XdpStatistics::default())
        }
    }

    /// EAL's configuration and the devices of `ifaces`, `queues` queue pairs each.
    fn environment(
        args: &DpdkArgs,
        ifaces: &[&str],
        queues: u32,
    ) -> anyhow::Result<(EalConfig, Vec<String>)> {
        let specs = args.devices(ifaces, queues)?;
        let cfg = EalConfig {
            memory_mb: args.dpdk_mem,
            huge: args.dpdk_huge,
            vdevs: specs.iter().filter_map(|s| s.vdev.clone()).collect(),
            pci: specs.iter().filter_map(|s| s.pci.clone()).collect(),
            extra: args.dpdk_eal.clone(),
            ..EalConfig::default()
        };
        Ok((cfg, specs.into_iter().map(|s| s.name).collect()))
    }

    /// Frames one device's receive queue takes from its pool at start (and may keep until
    /// the pool is freed): net_af_xdp fills its fill ring with 2048 mbufs per queue whatever
    /// the ring size; other drivers at most their RX ring.
    fn driver_reserve(name: &str, ring: u16) -> u32 {
        if name.starts_with("net_af_xdp") {
            2048 + u32::from(ring)
        } else {
            u32::from(ring)
        }
    }

    /// Devices and pools of a running service, released in order by [`Self::finish`].
    #[derive(Debug)]
    pub struct ForwardDevices {
        devices: Vec<Device>,
        pools: Vec<Pool>,
        /// Frames per pool the drivers may keep past close (see [`driver_reserve`]).
        reserve: u32,
    }

    /// The devices' counters at scrape time (`rte_eth_stats` and every xstat), read without
    /// keeping the devices open: a closed device is left out.
    #[derive(Debug)]
    pub struct DeviceMetrics {
        readers: Vec<nic::dpdk::StatsReader>,
    }

    const ETH: [(&str, &str); 8] = [
        ("xdpos_dpdk_rx_packets_total", "DPDK device: frames received (rte_eth_stats ipackets)."),
        ("xdpos_dpdk_tx_packets_total", "DPDK device: frames sent (rte_eth_stats opackets)."),
        ("xdpos_dpdk_rx_bytes_total", "DPDK device: bytes received."),
        ("xdpos_dpdk_tx_bytes_total", "DPDK device: bytes sent."),
        ("xdpos_dpdk_rx_missed_total", "DPDK device: frames dropped for want of RX ring room."),
        ("xdpos_dpdk_rx_errors_total", "DPDK device: erroneous frames received."),
        ("xdpos_dpdk_tx_errors_total", "DPDK device: failed transmissions."),
        ("xdpos_dpdk_rx_nombuf_total", "DPDK device: receive failures for want of an mbuf."),
    ];
    const XSTAT: (&str, &str) =
        ("xdpos_dpdk_xstat_total", "DPDK device: an extended counter (rte_eth_xstats), by name.");

    impl crate::metrics::Source for DeviceMetrics {
        fn collect(&self, e: &mut crate::metrics::Exposition) {
            use crate::metrics::Kind;
            for (name, help) in ETH.iter().chain([&XSTAT]) {
                e.declare(name, help, Kind::Counter);
            }
            for r in &self.readers {
                let Some((s, xs)) = r.read() else { continue };
                let ls = [("device", r.name()), ("driver", r.driver())];
                let v = [
                    s.rx_packets,
                    s.tx_packets,
                    s.rx_bytes,
                    s.tx_bytes,
                    s.rx_missed,
                    s.rx_errors,
                    s.tx_errors,
                    s.rx_nombuf,
                ];
                for (&(name, help), v) in ETH.iter().zip(v) {
                    e.counter(name, help, &ls, v);
                }
                for (x, v) in &xs {
                    let ls = [("device", r.name()), ("xstat", x.as_str())];
                    e.counter(XSTAT.0, XSTAT.1, &ls, *v);
                }
            }
        }
    }

    impl ForwardDevices {
        /// The devices' counters for a metrics registry.
        pub fn metrics(&self) -> Arc<dyn crate::metrics::Source> {
            Arc::new(DeviceMetrics {
                readers: self.devices.iter().map(Device::stats_reader).collect(),
            })
        }

        /// Call after the workers ended (their frames freed, their groups dropped): prints the
        /// devices' counters, stops and closes the devices, checks that every frame of every
        /// pool is back (net_af_xdp keeps the mbufs of its fill ring past close: those are
        /// allowed, up to what its rings hold, and reported), frees the pools and cleans EAL
        /// up. Returns the lines to print.
        pub fn finish(self) -> anyhow::Result<Vec<String>> {
            let mut lines = Vec::new();
            for d in &self.devices {
                let s = d.stats()?;
                lines.push(format!(
                    "dpdk {} ({}): rx {} tx {} missed {} rx errors {} tx errors {} nombuf {}",
                    d.name(),
                    d.driver(),
                    s.rx_packets,
                    s.tx_packets,
                    s.rx_missed,
                    s.rx_errors,
                    s.tx_errors,
                    s.rx_nombuf
                ));
                d.stop()?;
            }
            let keeps = self.devices.iter().any(|d| d.driver() == "net_af_xdp");
            // The last handles: the devices close.
            drop(self.devices);
            let in_use: Vec<(String, u32)> =
                self.pools.iter().map(|p| (p.name().to_string(), p.in_use())).collect();
            drop(self.pools);
            nic::dpdk::cleanup()?;
            let kept: u32 = in_use.iter().map(|p| p.1).sum();
            if kept == 0 {
                lines.push("dpdk: frames ok (every pool full after the devices closed)".into());
            } else if keeps && in_use.iter().all(|p| p.1 <= self.reserve) {
                lines.push(format!(
                    "dpdk: frames ok (every pool full after the devices closed but for {kept} \
                     frames net_af_xdp keeps in its rings)"
                ));
            } else {
                anyhow::bail!("dpdk: frames not back in their pool after close: {in_use:?}");
            }
            Ok(lines)
        }
    }

    /// Opens the devices of `ifaces` with one pool and one queue pair per worker.
    fn open(
        args: &DpdkArgs,
        ifaces: &[&str],
        queues: u32,
        what: &str,
        promiscuous: bool,
    ) -> anyhow::Result<ForwardDevices> {
        anyhow::ensure!((1..=64).contains(&queues), "dpdk: {queues} queues (1..=64)");
        let (eal_cfg, names) = environment(args, ifaces, queues)?;
        let eal = Eal::init(&eal_cfg).context("start DPDK's EAL")?;
        let reserve: u32 = names.iter().map(|n| driver_reserve(n, args.dpdk_ring)).sum();
        let frames = args.dpdk_frames.saturating_add(reserve);
        let pools = (0..queues)
            .map(|k| Pool::create(eal, &format!("xdpos-{what}-w{k}"), frames, -1))
            .collect::<Result<Vec<_>, _>>()?;
        let mut devices = Vec::new();
        for (name, iface) in names.iter().zip(ifaces) {
            let dc = DeviceConfig {
                name: name.clone(),
                queues: queues as u16,
                rx_ring: args.dpdk_ring,
                tx_ring: args.dpdk_ring,
                offloads: !args.dpdk_no_offloads,
                promiscuous,
            };
            devices.push(
                Device::open(eal, &dc, &pools)
                    .with_context(|| format!("open the DPDK device of {iface}"))?,
            );
        }
        Ok(ForwardDevices { devices, pools, reserve })
    }

    /// Starts `xdpos forward --backend dpdk`: the devices, one group per worker, the workers.
    pub fn start_forward(
        cfg: &ForwardConfig,
        args: &DpdkArgs,
    ) -> anyhow::Result<(ForwardService, ForwardDevices)> {
        let names: Vec<&str> = cfg.ifaces.iter().map(|i| i.name.as_str()).collect();
        let devs = open(args, &names, cfg.queues, "fwd", true)?;
        let macs: Vec<[u8; 6]> = devs.devices.iter().map(Device::mac).collect();
        let mut groups = Vec::new();
        for (k, pool) in devs.pools.iter().enumerate() {
            groups.push(DpdkGroup::new(pool, &devs.devices, k as u16, cfg.worker.burst)?);
        }
        let label = format!("dpdk {}", devs.devices.first().map_or("", |d| d.driver()));
        let svc = ForwardService::start_groups(cfg, &macs, groups, &label)?;
        Ok((svc, devs))
    }

    /// `xdpos echo --backend dpdk`: the echo host of `cfg` on the DPDK device of its
    /// interface, one worker per queue; prints `ready:`, runs until `stop` or `seconds`,
    /// prints one line per queue and the devices' counters; fails on a frame leak.
    pub fn echo_cli(
        cfg: &EchoConfig,
        args: &DpdkArgs,
        stop: &Stop,
        seconds: Option<f64>,
    ) -> anyhow::Result<()> {
        anyhow::ensure!(!cfg.queues.is_empty(), "echo: no queue to serve");
        let nq = cfg.queues.len() as u32;
        let devs = open(args, &[cfg.ifname.as_str()], nq, "echo", false)?;
        let dev = devs.devices[0].clone();
        let mac = EthernetAddress(dev.mac());
        let clock = Clock::new();
        let wcfg = WorkerConfig { burst: cfg.socket.burst, ..cfg.worker };
        let halt = Arc::new(AtomicBool::new(false));
        let sibs = worker::siblings(devs.pools.len());
        let mut handles = Vec::new();
        let mut live = Vec::new();
        for (k, (pool, sib)) in devs.pools.iter().zip(sibs).enumerate() {
            let port = DpdkPort::new(pool, &dev, k as u16, cfg.socket.burst)?;
            let mut sc = StackConfig::new(mac, &[cfg.addr]);
            sc.tcp = libos::tcp::TcpConfig { tso: cfg.offloads.tso, ..cfg.tcp.clone() };
            sc.tx_csum_offload = cfg.tx_csum.offload(&port.caps());
            if k != 0 {
                sc.arp.announce_count = 0;
            }
            let mut stack = Stack::new(sc, clock.now())
                .map_err(|e| anyhow::anyhow!("{e}"))
                .with_context(|| format!("configure the stack of queue {k}"))?;
            let any = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, cfg.port);
            let echo = stack
                .udp_bind(any, UdpSocketConfig::mode(UdpMode::Echo))
                .map_err(|e| anyhow::anyhow!("{e}"))
                .with_context(|| format!("bind the echo socket to port {}", cfg.port))?;
            if let Some(p) = args.dpdk_udp_sink {
                let any = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, p);
                stack
                    .udp_bind(any, UdpSocketConfig::mode(UdpMode::Sink))
                    .map_err(|e| anyhow::anyhow!("{e}"))
                    .with_context(|| format!("bind the sink socket to port {p}"))?;
            }
            let services = Services::new(&cfg.services, &mut stack)
                .map_err(|e| anyhow::anyhow!("{e}"))
                .context("open the TCP services' listeners")?;
            let port = OffloadPort::new(port, cfg.offloads);
            let mut w = Worker::new(port, stack, services, wcfg, clock).with_siblings(sib);
            live.push(w.counters().clone());
            let cpu = (!cfg.cpus.is_empty()).then(|| cfg.cpus[k % cfg.cpus.len()]);
            let halt_w = halt.clone();
            let h = std::thread::Builder::new().name(format!("xdpos-q{k}")).spawn(move || {
                let pinned =
                    cpu.filter(|&id| core_affinity::set_for_current(core_affinity::CoreId { id }));
                if cpu.is_some() && pinned.is_none() {
                    tracing::warn!(queue = k, cpu = ?cpu, "cannot pin the worker");
                }
                let r = w.run(&halt_w, None);
                WorkerReport {
                    queue: k as u32,
                    cpu: pinned,
                    stats: r.port,
                    xdp: XdpStatistics::default(),
                    frames: r.frames.clone(),
                    echoed: w.stack().udp_stats(echo).map(|s| s.echoed).unwrap_or(0),
                    dropped: r.dropped(),
                    tx_full_drops: r.tx_full_drops,
                    drained: r.drained,
                    stack: r.stack.clone(),
                    sleeps: r.sleeps,
                    services: w.app().stats(),
                    tcp: w.stack().tcp().stats().clone(),
                    iperf3: w.app().iperf3().last().cloned(),
                }
            });
            match h {
                Ok(h) => handles.push(h),
                Err(e) => {
                    halt.store(true, Ordering::Relaxed);
                    return Err(anyhow::Error::from(e).context("spawn a worker thread"));
                }
            }
        }
        let tcp: Vec<String> =
            cfg.services.listeners().map(|(p, s)| format!(", {s:?} on tcp {p}")).collect();
        // A line on stdout that scripts and tests wait for.
        println!(
            "ready: echo on {} port {} at {} (dpdk {} {}){}",
            cfg.ifname,
            cfg.port,
            cfg.addr,
            dev.driver(),
            dev.name(),
            tcp.concat()
        );
        // `stats` on stdin: the live counters, summed over the workers (published every few
        // batches), for a harness that reads them at the edges of a window.
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::stdin().lock().lines().map_while(Result::ok) {
                if line.trim() == "stats" {
                    let sum = |f: fn(&worker::WorkerCounters) -> u64| -> u64 {
                        live.iter().map(|c| f(c)).sum()
                    };
                    println!(
                        "stats: rx {} udp_rx {} tx {} dropped {}",
                        sum(|c| c.rx.load(Ordering::Relaxed)),
                        sum(|c| c.udp_rx.load(Ordering::Relaxed)),
                        sum(|c| c.tx.load(Ordering::Relaxed)),
                        sum(|c| c.dropped.load(Ordering::Relaxed)),
                    );
                }
            }
        });
        match seconds {
            Some(s) => {
                stop.sleep(Duration::from_secs_f64(s.max(0.0)));
            }
            None => {
                while !stop.requested() {
                    stop.sleep(Duration::from_secs(3600));
                }
            }
        }
        halt.store(true, Ordering::Relaxed);
        let mut reports = Vec::new();
        let mut failed = None;
        for h in handles {
            match h.join() {
                Ok(r) => reports.push(r),
                Err(_) => failed = Some(anyhow::anyhow!("an echo worker panicked")),
            }
        }
        let mut broken = false;
        for r in &reports {
            broken |= r.frames.is_err();
            println!("{}", r.line());
        }
        drop(dev);
        for l in devs.finish()? {
            println!("{l}");
        }
        if let Some(e) = failed {
            return Err(e);
        }
        anyhow::ensure!(!broken, "frame accounting broken");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_default_to_af_packet_and_follow_overrides() {
        let mut a = DpdkArgs::default();
        let d = a.devices(&["xf0", "xf1"], 2).unwrap();
        assert_eq!(d[0].name, "net_af_packet0");
        assert_eq!(d[1].vdev.as_deref(), Some("net_af_packet1,iface=xf1,qpairs=2"));
        a.dpdk_pmd = "af_xdp".into();
        a.dpdk_devs = vec!["xf1=0000:03:00.0".into()];
        let d = a.devices(&["xf0", "xf1"], 1).unwrap();
        assert_eq!(d[0].vdev.as_deref(), Some("net_af_xdp0,iface=xf0,start_queue=0,queue_count=1"));
        assert_eq!(
            d[1],
            DeviceSpec {
                name: "0000:03:00.0".into(),
                vdev: None,
                pci: Some("0000:03:00.0".into())
            }
        );
        a.dpdk_devs = vec!["xf0=net_tap0,iface=xf0".into()];
        assert_eq!(a.devices(&["xf0"], 1).unwrap()[0].name, "net_tap0");
        a.dpdk_devs = vec!["eth9=net_tap0".into()];
        assert!(a.devices(&["xf0"], 1).is_err());
        assert_eq!("dpdk".parse::<Backend>().unwrap(), Backend::Dpdk);
        // The flags fit beside `xdpos forward`'s own (clap checks names and ids).
        use clap::Args;
        let cmd = crate::forward::ForwardArgs::augment_args(clap::Command::new("forward"));
        cmd.clone().debug_assert();
        let m = cmd
            .try_get_matches_from([
                "forward",
                "--iface",
                "x",
                "--backend",
                "dpdk",
                "--dpdk-frames",
                "8192",
            ])
            .unwrap();
        assert_eq!(m.get_one::<u32>("dpdk_frames"), Some(&8192));
        assert!("netmap".parse::<Backend>().is_err());
    }
}
