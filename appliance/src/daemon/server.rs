//! # The server role of the daemon: services on the library-OS stack
//!
//! What it is: [`ServerService`] runs the `[[services]]` of a configuration on the interfaces
//! it names. Per interface, one steering program that takes the interface's configured
//! addresses (`XdpProgram::own_addr`: IPv4 to them and ARP for them; the host's kernel keeps
//! everything else on the interface). Per `[[workers]]` entry, one AF_XDP socket per queue it
//! names (several of one interface: a [`QueueSet`], one stack over all of them) and one pinned
//! [`Worker`] running its own [`Stack`] (the interface's MAC, addresses, MTU, the routes and
//! static neighbours whose interface it is) and a [`DaemonApp`] owning the services: UDP echo
//! and sink as stack sockets, TCP echo, sink, source, iperf3 and the HTTP responder through
//! [`Services`]. A service listening on `0.0.0.0` runs on every stack, one on an address only
//! on the stacks of the interface that has it. Workers of one interface share what ARP teaches
//! them ([`worker::siblings`]); only the first announces the addresses.
//!
//! Control messages (DESIGN.md §2): a reload hands every worker a [`Change`] (the new services
//! and routes, with the generation) through a bounded lock-free queue (`crossbeam-queue`); the
//! worker applies it between batches, in [`App::poll`]: it closes the listeners and sockets of
//! removed services (connections already accepted are served to their end), opens the new
//! ones, replaces its static routes, and acknowledges the generation (and any error) through
//! atomics and a second queue. Nothing is shared or locked on the fast path: an empty inbox
//! costs one atomic load per batch.
//!
//! Shutdown ([`ServerService::join`]): the steering programs take nothing more, the workers
//! finish their batch, drain and check their frame accounting, and the programs detach.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant as StdInstant};

use anyhow::Context;
use crossbeam_queue::ArrayQueue;
use libos::iface::route::{Ipv4Cidr, Route};
use libos::tcp::ListenHandle;
use libos::udp::{UdpHandle, UdpMode, UdpSocketConfig};
use libos::wire::EthernetAddress;
use libos::{Instant, Stack, StackConfig};
use nic::afxdp::{XdpProgram, XskPort};
use nic::Port;
use xdpos_config::schema::ServiceKind;
use xdpos_config::validate::{RouteCfg, ServiceCfg};
use xdpos_config::Checked;

use super::caps;
use super::control::{Counters, WorkerInfo};
use super::queues::{PerQueue, QueueSet};
use crate::capture::{CaptureSlot, CaptureTarget};
use crate::metrics::{Forwarding, ServiceMetrics, SocketReader, WorkerMetrics};
use crate::services::http::HttpConfig;
use crate::services::{Service, ServiceStats, Services, ServicesConfig};
use crate::worker::{self, App, Clock, TxCsum, Worker, WorkerConfig, WorkerPort, WorkerReport};

/// Changes an app's inbox holds.
const INBOX: usize = 4;
/// Accept queue of each service listener.
const BACKLOG: usize = 1024;

/// What a reload asks of a worker: the whole new set of services and routes.
#[derive(Debug, Clone)]
pub struct Change {
    /// The configuration generation this is.
    pub generation: u64,
    /// Every service of the new configuration (the worker keeps those for its stack).
    pub services: Vec<ServiceCfg>,
    /// Every route of the new configuration (the worker keeps those of its interface).
    pub routes: Vec<RouteCfg>,
}

/// The TCP service behind a configured kind; `None` for the UDP kinds and HTTP (which has
/// its own listener call, with its configuration).
pub fn tcp_service(kind: ServiceKind) -> Option<Service> {
    match kind {
        ServiceKind::TcpEcho => Some(Service::Echo),
        ServiceKind::TcpSink => Some(Service::Sink),
        ServiceKind::TcpSource => Some(Service::Source),
        ServiceKind::Iperf3 => Some(Service::Iperf3),
        ServiceKind::UdpEcho | ServiceKind::UdpSink | ServiceKind::Http => None,
    }
}

/// The app beside one stack (a server worker's, or one port's of a router worker): its
/// services, and the inbox through which changes reach it.
#[derive(Debug)]
pub struct DaemonApp {
    /// The TCP services (made at the first change: they size their table to the stack's).
    services: Option<Services>,
    /// Interface index of the stack.
    iface: usize,
    /// The interface's own addresses (which services run here).
    addrs: Vec<Ipv4Addr>,
    tcp: Vec<(ServiceCfg, ListenHandle)>,
    udp: Vec<(ServiceCfg, UdpHandle)>,
    routes: Vec<Route>,
    inbox: Arc<ArrayQueue<Change>>,
    applied: Arc<AtomicU64>,
    errors: Arc<ArrayQueue<(u64, String)>>,
}

/// The control thread's end of one [`DaemonApp`].
#[derive(Debug, Clone)]
pub struct AppLink {
    /// Who it is, for messages (`workers[0]`, `worker 1 (eth2:1)`).
    pub name: String,
    inbox: Arc<ArrayQueue<Change>>,
    applied: Arc<AtomicU64>,
    errors: Arc<ArrayQueue<(u64, String)>>,
}

/// Hands `change` to every app and waits (at most `limit`) until each has applied it between
/// two batches. Errs with what failed (the apps that applied it keep it).
pub fn apply_all(links: &[AppLink], change: &Change, limit: Duration) -> anyhow::Result<()> {
    for l in links {
        l.inbox
            .push(change.clone())
            .map_err(|_| anyhow::anyhow!("{}: its inbox is full (stuck?)", l.name))?;
    }
    let deadline = StdInstant::now() + limit;
    let mut errs = Vec::new();
    for l in links {
        while l.applied.load(Ordering::Acquire) < change.generation {
            if StdInstant::now() >= deadline {
                anyhow::bail!("{} did not apply the change within {limit:?}", l.name);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        while let Some((g, e)) = l.errors.pop() {
            if g == change.generation {
                errs.push(format!("{}: {e}", l.name));
            }
        }
    }
    anyhow::ensure!(errs.is_empty(), "{}", errs.join("; "));
    Ok(())
}

impl DaemonApp {
    /// An app for a stack of interface `iface` (whose addresses are `addrs`) that serves
    /// nothing until a change reaches it through the returned link.
    pub fn new(iface: usize, addrs: Vec<Ipv4Addr>, name: String) -> (DaemonApp, AppLink) {
        let inbox = Arc::new(ArrayQueue::new(INBOX));
        let applied = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(ArrayQueue::new(INBOX));
        let link = AppLink {
            name,
            inbox: inbox.clone(),
            applied: applied.clone(),
            errors: errors.clone(),
        };
        let app = DaemonApp {
            services: None,
            iface,
            addrs,
            tcp: Vec::new(),
            udp: Vec::new(),
            routes: Vec::new(),
            inbox,
            applied,
            errors,
        };
        (app, link)
    }

    /// Whether `s` runs on this stack.
    fn mine(&self, s: &ServiceCfg) -> bool {
        s.listen.ip().is_unspecified() || self.addrs.contains(s.listen.ip())
    }

    /// Brings the stack's services and routes to `c`; returns what failed, if anything.
    fn apply(&mut self, now: Instant, stack: &mut Stack, c: &Change) -> Result<(), String> {
        let mut errs = Vec::new();
        let want: Vec<&ServiceCfg> = c.services.iter().filter(|s| self.mine(s)).collect();
        if self.services.is_none() {
            let made = Services::new(&ServicesConfig::default(), stack)
                .map_err(|e| format!("set up the TCP services: {e:?}"))?;
            self.services = Some(made);
        }
        let Some(services) = self.services.as_mut() else { return Err("no services".into()) };
        // Removed (or changed) services first, so a port moving between kinds is free.
        let mut k = 0;
        while k < self.tcp.len() {
            if want.iter().any(|s| **s == self.tcp[k].0) {
                k += 1;
                continue;
            }
            let (s, l) = self.tcp.remove(k);
            if let Err(e) = services.unlisten(now, stack, l) {
                errs.push(format!("close {} on {}: {e:?}", s.kind.as_str(), s.listen));
            }
        }
        let mut k = 0;
        while k < self.udp.len() {
            if want.iter().any(|s| **s == self.udp[k].0) {
                k += 1;
                continue;
            }
            let (s, h) = self.udp.remove(k);
            if let Err(e) = stack.udp_close(h) {
                errs.push(format!("close {} on {}: {e:?}", s.kind.as_str(), s.listen));
            }
        }
        for s in want {
            if self.tcp.iter().any(|(x, _)| x == s) || self.udp.iter().any(|(x, _)| x == s) {
                continue;
            }
            match (s.kind, tcp_service(s.kind)) {
                (ServiceKind::Http, _) => {
                    let cfg = HttpConfig::from_service(s);
                    match services.listen_http(stack, s.listen, &cfg, BACKLOG) {
                        Ok(l) => self.tcp.push((s.clone(), l)),
                        Err(e) => errs.push(format!("http on {}: {e:?}", s.listen)),
                    }
                }
                (_, Some(service)) => match services.listen(stack, s.listen, service, BACKLOG) {
                    Ok(l) => self.tcp.push((s.clone(), l)),
                    Err(e) => errs.push(format!("{} on {}: {e:?}", s.kind.as_str(), s.listen)),
                },
                (_, None) => {
                    let mode =
                        if s.kind == ServiceKind::UdpEcho { UdpMode::Echo } else { UdpMode::Sink };
                    match stack.udp_bind(s.listen, UdpSocketConfig::mode(mode)) {
                        Ok(h) => self.udp.push((s.clone(), h)),
                        Err(e) => errs.push(format!("{} on {}: {e:?}", s.kind.as_str(), s.listen)),
                    }
                }
            }
        }
        let routes = stack_routes(&c.routes, self.iface);
        if routes != self.routes {
            for r in &self.routes {
                let _ = stack.routes_mut().remove(r.dst);
            }
            for r in &routes {
                if stack.routes_mut().add(*r).is_err() {
                    errs.push(format!("route {}: the stack's route table is full", r.dst));
                }
            }
            self.routes = routes;
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs.join("; "))
        }
    }

    /// The UDP echo sockets' echoes and the services' counters.
    fn totals(&self, stack: &Stack) -> (u64, ServiceStats) {
        let echoed =
            self.udp.iter().filter_map(|(_, h)| stack.udp_stats(*h).ok()).map(|s| s.echoed).sum();
        (echoed, self.services.as_ref().map(Services::stats).unwrap_or_default())
    }
}

impl App for DaemonApp {
    fn poll(&mut self, now: Instant, stack: &mut Stack) {
        // Between batches: a reload's change, if one waits (one atomic load when none does).
        while let Some(c) = self.inbox.pop() {
            let r = self.apply(now, stack, &c);
            if let Err(e) = r {
                // The control thread drains this queue; a full one only loses the text.
                let _ = self.errors.push((c.generation, e));
            }
            self.applied.store(c.generation, Ordering::Release);
        }
        if let Some(s) = self.services.as_mut() {
            s.poll(now, stack);
        }
    }
}

/// The routes of `routes` that leave through interface `iface`, as the stack's routes.
fn stack_routes(routes: &[RouteCfg], iface: usize) -> Vec<Route> {
    routes
        .iter()
        .filter(|r| r.iface == iface)
        .map(|r| Route { dst: Ipv4Cidr::new(r.prefix.addr, r.prefix.len), gateway: r.via })
        .collect()
}

/// What a server worker reports when it stops.
#[derive(Debug, Clone)]
pub struct ServerReport {
    /// Index in `[[workers]]`.
    pub index: usize,
    /// Interface served.
    pub iface: String,
    /// Queues served.
    pub queues: Vec<u32>,
    /// Frames received per queue.
    pub rx_per_queue: Vec<u64>,
    /// CPU pinned to (`None`: pinning failed).
    pub cpu: Option<usize>,
    /// The worker loop's report.
    pub worker: WorkerReport,
    /// UDP datagrams echoed.
    pub echoed: u64,
    /// The TCP services' counters.
    pub services: ServiceStats,
}

impl ServerReport {
    /// The line `xdpos run` prints per worker at exit (tests parse its first fields).
    pub fn line(&self) -> String {
        let frames = match &self.worker.frames {
            Ok(c) => format!("ok ({} total)", c.total),
            Err(e) => e.clone(),
        };
        let (w, v) = (&self.worker, &self.services);
        format!(
            "worker {} ({}:{}): rx {} tx {} dropped {} frames {frames}; udp echoed {}; tcp \
             accepted {} closed {} failed {} bytes in {} out {}; sleeps {}; rx per queue {:?}",
            self.index,
            self.iface,
            self.queues.iter().map(|q| q.to_string()).collect::<Vec<_>>().join(","),
            w.port.rx_packets,
            w.port.tx_packets,
            w.dropped(),
            self.echoed,
            v.accepted,
            v.closed,
            v.failed,
            v.bytes_in,
            v.bytes_out,
            w.sleeps,
            self.rx_per_queue
        )
    }
}

/// A running server role (see the module documentation).
#[derive(Debug)]
pub struct ServerService {
    progs: Vec<XdpProgram>,
    workers: Vec<JoinHandle<anyhow::Result<ServerReport>>>,
    links: Vec<AppLink>,
    info: Vec<WorkerInfo>,
    metrics: Arc<ServiceMetrics>,
    captures: Vec<CaptureTarget>,
    stop: Arc<AtomicBool>,
    mode: &'static str,
}

impl Drop for ServerService {
    fn drop(&mut self) {
        // Without `join` (an error path): stop the workers; the programs detach on drop.
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The sockets of one worker: one queue, or several of one interface.
enum Ports {
    One(XskPort),
    Many(QueueSet),
}

/// A worker built, not started yet.
struct Built {
    w: usize,
    iface: usize,
    queues: Vec<u32>,
    port: Ports,
    stack: Stack,
    app: DaemonApp,
}

/// A worker with its metrics block, its capture point and its siblings.
fn worker_of<P: WorkerPort>(
    w: Worker<P, DaemonApp>,
    m: Arc<WorkerMetrics>,
    capture: Arc<CaptureSlot>,
    sib: Option<worker::Siblings>,
) -> Worker<P, DaemonApp> {
    let w = w.with_metrics(m).with_capture(capture);
    match sib {
        Some(s) => w.with_siblings(s),
        None => w,
    }
}

/// The stack of interface `i` of `cfg` for a worker of `port`.
fn stack_config(
    cfg: &Checked,
    i: usize,
    mac: [u8; 6],
    port: &XskPort,
    announce: bool,
) -> StackConfig {
    let x = &cfg.interfaces[i];
    let addrs: Vec<Ipv4Cidr> = x.addresses.iter().map(|c| Ipv4Cidr::new(c.addr, c.len)).collect();
    let mut sc = StackConfig::new(EthernetAddress(mac), &addrs);
    sc.mtu = x.mtu as usize;
    sc.tx_csum_offload = TxCsum::Auto.offload(&port.caps());
    sc.max_routes = sc.max_routes.max(addrs.len() + cfg.routes.len() + 16);
    for n in cfg.neighbors.iter().filter(|n| n.iface == i) {
        sc.static_neighbors.push((n.ip, EthernetAddress(n.mac)));
    }
    if !announce {
        sc.arp.announce_count = 0;
    }
    sc
}

impl ServerService {
    /// Attaches the steering programs, opens one socket and builds one stack with its services
    /// per worker, starts the workers (each pins itself and drops its capabilities), and only
    /// then steers the interfaces' addresses to the sockets; all in the calling thread's
    /// network namespace. A worker over several queues of its interface runs one stack over
    /// all of them ([`QueueSet`]).
    pub fn start(cfg: &Checked) -> anyhow::Result<ServerService> {
        let mut progs: Vec<Option<XdpProgram>> = (0..cfg.interfaces.len()).map(|_| None).collect();
        let mut macs = vec![[0u8; 6]; cfg.interfaces.len()];
        let clock = Clock::new();
        let change =
            Change { generation: 1, services: cfg.services.clone(), routes: cfg.routes.clone() };
        let mut built: Vec<Built> = Vec::new();
        let mut links = Vec::new();
        let mut metrics = ServiceMetrics::default();
        for (w, wc) in cfg.workers.iter().enumerate() {
            let q = *wc.queues.first().context("a server worker without a queue")?;
            let x = &cfg.interfaces[q.iface];
            if progs[q.iface].is_none() {
                macs[q.iface] = nic::netdev::mac_address(&x.name)
                    .with_context(|| format!("read the MAC address of {}", x.name))?;
                let prog = XdpProgram::attach(&x.name, super::xdp_mode(x.xdp_mode))
                    .with_context(|| format!("attach the steering program to {}", x.name))?;
                metrics.programs.push(prog.verdict_reader()?);
                progs[q.iface] = Some(prog);
            }
            let prog = progs[q.iface].as_ref().context("steering program")?;
            let mut ports = Vec::new();
            for r in &wc.queues {
                let sock = super::socket_config(x, r.queue);
                let port = XskPort::open(&sock, prog)
                    .with_context(|| format!("open {} queue {}", x.name, r.queue))?;
                metrics.sockets.push(SocketReader {
                    worker: w as u32,
                    interface: x.name.clone(),
                    queue: r.queue,
                    reader: port.stats_reader()?,
                });
                ports.push(port);
            }
            let first = !built.iter().any(|b| b.iface == q.iface);
            let sc = stack_config(cfg, q.iface, macs[q.iface], &ports[0], first);
            let mut stack = Stack::new(sc, clock.now())
                .map_err(|e| anyhow::anyhow!("{e}"))
                .with_context(|| format!("configure the stack of workers[{w}] ({})", x.name))?;
            let addrs = x.addresses.iter().map(|c| c.addr).collect();
            let (mut app, link) = DaemonApp::new(q.iface, addrs, format!("workers[{w}]"));
            app.apply(clock.now(), &mut stack, &change)
                .map_err(|e| anyhow::anyhow!("workers[{w}] ({}): {e}", x.name))?;
            app.applied.store(change.generation, Ordering::Release);
            links.push(link);
            let queues = wc.queues.iter().map(|r| r.queue).collect();
            let port = if ports.len() == 1 {
                Ports::One(ports.remove(0))
            } else {
                Ports::Many(QueueSet::new(ports))
            };
            built.push(Built { w, iface: q.iface, queues, port, stack, app });
        }
        // Siblings per interface: the workers of one interface share what ARP teaches them.
        let mut sibs: Vec<std::vec::IntoIter<worker::Siblings>> = (0..cfg.interfaces.len())
            .map(|i| worker::siblings(built.iter().filter(|b| b.iface == i).count()).into_iter())
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let mut workers = Vec::new();
        let mut info = Vec::new();
        let mut captures = Vec::new();
        for Built { w, iface, queues, port, stack, app } in built {
            let cpu = cfg.workers[w].cpu;
            let wcfg =
                WorkerConfig { burst: cfg.interfaces[iface].burst as usize, ..Default::default() };
            let name = cfg.interfaces[iface].name.clone();
            // The worker publishes one port: a QueueSet's counters summed, under its first queue
            // (the kernel's counters, xdpos_xsk_*, stay per socket).
            let m = Arc::new(WorkerMetrics::new(
                w as u32,
                "server",
                &[(name.as_str(), queues[0])],
                &[&name],
                Forwarding::None,
            ));
            metrics.workers.push(m.clone());
            // One capture point per worker; its queue `j` is socket `j` of the worker's port.
            let slot = Arc::new(CaptureSlot::default());
            for (j, &q) in queues.iter().enumerate() {
                captures.push(CaptureTarget {
                    interface: name.clone(),
                    queue: q,
                    slot: slot.clone(),
                    sub: j,
                    epoch: clock.wall_epoch(),
                });
            }
            let sib = sibs[iface].next();
            let stop = stop.clone();
            let spawn = std::thread::Builder::new().name(format!("xdpos-w{w}"));
            let (join, counters) = match port {
                Ports::One(p) => {
                    let wk = worker_of(Worker::new(p, stack, app, wcfg, clock), m, slot, sib);
                    let c = wk.counters().clone();
                    let q = queues.clone();
                    (spawn.spawn(move || run_worker(wk, w, name, q, cpu, &stop)), c)
                }
                Ports::Many(p) => {
                    let wk = worker_of(Worker::new(p, stack, app, wcfg, clock), m, slot, sib);
                    let c = wk.counters().clone();
                    let q = queues.clone();
                    (spawn.spawn(move || run_worker(wk, w, name, q, cpu, &stop)), c)
                }
            };
            let join = join.context("spawn a worker thread")?;
            let name = cfg.interfaces[iface].name.clone();
            info.push(WorkerInfo {
                index: w,
                cpu,
                queues: queues.iter().map(|&q| (name.clone(), q)).collect(),
                counters: Counters::Server(counters),
            });
            workers.push(join);
        }
        let progs: Vec<XdpProgram> = progs.into_iter().flatten().collect();
        for p in &progs {
            let i = cfg.interfaces.iter().position(|x| x.name == p.ifname()).unwrap_or(0);
            for a in &cfg.interfaces[i].addresses {
                p.own_addr(a.addr).with_context(|| {
                    format!("steer {} on {} to the workers", a.addr, p.ifname())
                })?;
            }
        }
        let mode = progs.first().map_or("detached", |p| p.mode().as_str());
        let metrics = Arc::new(metrics);
        Ok(ServerService { progs, workers, links, info, metrics, captures, stop, mode })
    }

    /// The XDP mode the programs run in.
    pub fn xdp_mode(&self) -> &'static str {
        self.mode
    }

    /// The workers, for the control handle.
    pub fn info(&self) -> &[WorkerInfo] {
        &self.info
    }

    /// Whether every worker thread still runs.
    pub fn workers_running(&self) -> bool {
        self.workers.iter().all(|w| !w.is_finished())
    }

    /// The service's metrics source (`/metrics`).
    pub fn metrics(&self) -> Arc<ServiceMetrics> {
        self.metrics.clone()
    }

    /// The workers' capture points, one per interface and queue (`xdpos capture`).
    pub fn captures(&self) -> Vec<CaptureTarget> {
        self.captures.clone()
    }

    /// Hands `change` to every worker and waits (at most `limit`) until each has applied it
    /// between two batches.
    pub fn apply(&self, change: &Change, limit: Duration) -> anyhow::Result<()> {
        if let Some(w) = self.workers.iter().position(|j| j.is_finished()) {
            anyhow::bail!("workers[{w}] has stopped");
        }
        apply_all(&self.links, change, limit)
    }

    /// Stops the inflow, then the workers; collects their reports and detaches the programs.
    pub fn join(mut self) -> anyhow::Result<Vec<ServerReport>> {
        let mut failed: Option<anyhow::Error> = None;
        for p in &self.progs {
            if let Err(e) = p.steer_none() {
                failed = Some(e.into());
            }
        }
        self.stop.store(true, Ordering::Relaxed);
        let mut reports = Vec::new();
        for h in std::mem::take(&mut self.workers) {
            match h.join() {
                Ok(Ok(r)) => reports.push(r),
                Ok(Err(e)) => failed = Some(e),
                Err(_) => failed = Some(anyhow::anyhow!("a server worker panicked")),
            }
        }
        for p in std::mem::take(&mut self.progs) {
            if let Err(e) = p.detach() {
                failed = Some(e.into());
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(reports),
        }
    }
}

/// One worker thread: pin, drop capabilities, run until stopped, report.
fn run_worker<P: WorkerPort + PerQueue>(
    mut w: Worker<P, DaemonApp>,
    index: usize,
    iface: String,
    queues: Vec<u32>,
    cpu: usize,
    stop: &AtomicBool,
) -> anyhow::Result<ServerReport> {
    let pinned = core_affinity::set_for_current(core_affinity::CoreId { id: cpu }).then_some(cpu);
    if pinned.is_none() {
        tracing::warn!(worker = index, cpu, "cannot pin the worker; it runs unpinned");
    }
    w.metrics().set_cpu(pinned);
    if let Err(e) = caps::drop_thread(caps::Keep::Nothing) {
        tracing::warn!(worker = index, error = %e, "cannot drop the worker's capabilities");
    }
    w.run_loop(stop, None);
    let report = w.finish();
    let rx_per_queue = w.port().rx_per_queue();
    let (echoed, services) = w.app().totals(w.stack());
    Ok(ServerReport {
        index,
        iface,
        queues,
        rx_per_queue,
        cpu: pinned,
        worker: report,
        echoed,
        services,
    })
}
