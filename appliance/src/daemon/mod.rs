//! # The daemon: `xdpos run --config FILE` and `xdpos check-config FILE`
//!
//! What it is: the appliance as it is deployed. One process turns a configuration file
//! (`xdpos-config`'s schema) into running workers and keeps them running:
//!
//! 1. **Load** ([`load`]): the file is parsed and validated as a whole against this host's
//!    facts ([`host::gather`]: CPUs, the interfaces of the process's network namespace and
//!    their queues). Nothing is touched before every check passed; `xdpos check-config` stops here (exit 0 with a summary, or
//!    every problem with its path and value and exit 2), `xdpos run` exits 2 the same way.
//! 2. **Set up** ([`Running::start`]): steering programs left by a crashed instance are
//!    removed ([`nic::afxdp::cleanup`]: only programs no live process holds); the role starts:
//!    - `router` and `xconnect`: [`ForwardService`], one worker per queue index over a
//!      shared-UMEM group of that queue of every interface, pinned to the CPU of the
//!      `[[workers]]` entry that polls that index;
//!    - `server`: [`server::ServerService`], one worker per `[[workers]]` entry, its stack
//!      (one over all its queues: [`queues::QueueSet`]) running the `[[services]]`;
//!    - a router's stacks run the `[[services]]` on its own addresses too;
//!    - `backend = "dpdk"` (router and xconnect only): [`crate::dpdk::start_forward`], what
//!      `xdpos forward --backend dpdk` runs, with the `[dpdk]` table as its settings
//!      ([`crate::dpdk::DpdkArgs::from_config`]); its devices stop and are checked for frame
//!      leaks after the workers, and their counters join `/metrics`.
//! 3. **Drop capabilities** ([`caps`]): every worker drops its own when it starts, the control
//!    thread right after setup; threads started later inherit nothing.
//! 4. **Ready**: the [`Control`] handle says so (`/readyz`), the metrics endpoint is started
//!    ([`start_metrics`]; it also serves `/capture` for `xdpos capture` on every interface and
//!    queue a worker polls, [`crate::capture`]), and a `ready:` line goes to stdout and the log.
//! 5. **Signals** (the control thread looks for them every 100 ms and, between, at the
//!    workers: one that ended, a panic or an error, makes `/healthz` fail):
//!    - SIGHUP: [`Daemon::reload`] reads and validates the file again; routes and services
//!      are applied live (a new FIB through [`ForwardService::set_fib`], service and route
//!      changes through the server workers' control queues, applied between batches;
//!      established TCP connections are kept); anything else changed (interfaces, workers,
//!      role, neighbours, metrics address) needs a restart and refuses the reload. A refused
//!      reload keeps the old configuration serving; its reason is logged, printed and kept in
//!      [`Control::reload`] (generation, last result, time) for the metrics.
//!    - SIGTERM, SIGINT: the steering programs take nothing more, the workers drain and check
//!      their frame accounting, the programs detach; one line per worker, exit 0.
//!
//! A crash (`kill -9`) leaves nothing attached (the programs hang on BPF links owned by the
//! process), so a fresh start works at once; `xdpos cleanup` and the start-up sweep remove
//! the leftovers of a legacy netlink attachment.
//!
//! What it never does: apply half a configuration (a reload is checked completely first), or
//! block a worker (control messages wait in bounded queues until the worker's next batch).

pub mod caps;
pub mod control;
pub mod host;
pub mod queues;
pub mod server;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use libos::fib::NextHop;
use libos::iface::route::Ipv4Cidr;
use nic::afxdp::XskConfig;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use xdpos_config::schema::{Backend, FastPath, XdpMode};
use xdpos_config::validate::{IfaceCfg, RoleCfg};
use xdpos_config::{Checked, ConfigError, Host};

pub use control::{Control, Counters, ReloadStatus, WorkerInfo};

use crate::fastpath::FastPathMode;
use crate::forward::{
    ForwardConfig, ForwardService, ForwardWorkerConfig, IfaceSpec, Role, RouteSpec,
};

/// `xdpos check-config` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct CheckArgs {
    /// The configuration file.
    pub file: PathBuf,
    /// Check the file for another machine: skip the checks against this host (CPUs,
    /// interfaces, queues).
    #[arg(long)]
    pub no_host: bool,
}

/// `xdpos run` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// The configuration file (re-read on SIGHUP).
    #[arg(long)]
    pub config: PathBuf,
    /// Keep CAP_BPF and CAP_NET_ADMIN in the control thread after setup (kernels before 6.5
    /// with unprivileged BPF disabled check them on every `bpf()` call: steering changes and
    /// detaching at exit). Workers drop everything regardless.
    #[arg(long)]
    pub keep_bpf_caps: bool,
}

/// Parses and validates `path` against `host` and, when `host` is this one (its interfaces
/// known, not `--no-host`), against this build: `backend = "dpdk"` needs a build with the
/// `dpdk` feature.
pub fn load(path: &Path, host: &Host) -> Result<Checked, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::one("", format!("cannot read {}: {e}", path.display())))?;
    let cfg = xdpos_config::parse(&text)?;
    let checked = xdpos_config::validate::validate(&cfg, host);
    match this_build(&cfg, host) {
        None => checked,
        Some(p) => {
            let mut problems = checked.err().map(|e| e.problems).unwrap_or_default();
            problems.insert(0, p);
            Err(ConfigError { problems })
        }
    }
}

/// What this build cannot run of `cfg`, checked when `host` is this machine's.
fn this_build(cfg: &xdpos_config::Config, host: &Host) -> Option<xdpos_config::Problem> {
    (host.interfaces.is_some() && cfg.backend == Backend::Dpdk && !crate::dpdk::AVAILABLE).then(
        || xdpos_config::Problem {
            path: "backend".into(),
            message: "\"dpdk\": this build has no DPDK (build with --features dpdk)".into(),
        },
    )
}

/// A one-line summary of a valid configuration.
pub fn summary(c: &Checked) -> String {
    let cpus: Vec<String> = c.workers.iter().map(|w| w.cpu.to_string()).collect();
    format!(
        "{}: {} interface(s) ({}), {} worker(s) on cpu {}, {} route(s), {} neighbor(s), {} \
         service(s), metrics on {}{}",
        role_name(&c.role),
        c.interfaces.len(),
        c.interfaces.iter().map(|i| i.name.as_str()).collect::<Vec<_>>().join(","),
        c.workers.len(),
        cpus.join(","),
        c.routes.len(),
        c.neighbors.len(),
        c.services.len(),
        c.metrics,
        if c.backend == Backend::Dpdk { ", backend dpdk" } else { "" }
    )
}

/// `router`, `xconnect` or `server`.
pub fn role_name(r: &RoleCfg) -> &'static str {
    match r {
        RoleCfg::Server => "server",
        RoleCfg::Router { .. } => "router",
        RoleCfg::Xconnect { .. } => "xconnect",
    }
}

/// `xdpos check-config`: the exit status (0 valid, 2 not).
pub fn check_config(a: &CheckArgs) -> i32 {
    let host = if a.no_host { Host::unknown() } else { host::gather() };
    match load(&a.file, &host) {
        Ok(c) => {
            println!("{}: ok: {}", a.file.display(), summary(&c));
            0
        }
        Err(e) => {
            eprintln!("{}: {} problem(s):", a.file.display(), e.problems.len());
            for p in &e.problems {
                eprintln!("  {p}");
            }
            2
        }
    }
}

pub(crate) fn xdp_mode(m: XdpMode) -> nic::afxdp::XdpMode {
    match m {
        XdpMode::Auto => nic::afxdp::XdpMode::Auto,
        XdpMode::Native => nic::afxdp::XdpMode::Native,
        XdpMode::Skb => nic::afxdp::XdpMode::Skb,
    }
}

/// The socket settings of queue `queue` of interface `x`.
pub(crate) fn socket_config(x: &IfaceCfg, queue: u32) -> XskConfig {
    XskConfig {
        ifname: x.name.clone(),
        queue,
        frame_size: x.frame_size,
        frames: x.frames,
        ring_size: x.ring_size,
        fill: x.fill.unwrap_or(nic::afxdp::DEFAULT_FILL),
        burst: x.burst as usize,
        bind: match x.bind {
            xdpos_config::schema::BindMode::Auto => nic::afxdp::BindMode::Auto,
            xdpos_config::schema::BindMode::Copy => nic::afxdp::BindMode::Copy,
            xdpos_config::schema::BindMode::ZeroCopy => nic::afxdp::BindMode::ZeroCopy,
        },
        ..XskConfig::default()
    }
}

fn iface_specs(c: &Checked) -> Vec<IfaceSpec> {
    c.interfaces
        .iter()
        .map(|i| IfaceSpec {
            name: i.name.clone(),
            addrs: i.addresses.iter().map(|a| Ipv4Cidr::new(a.addr, a.len)).collect(),
            mtu: i.mtu as usize,
        })
        .collect()
}

fn route_specs(c: &Checked) -> Vec<RouteSpec> {
    c.routes
        .iter()
        .map(|r| RouteSpec {
            prefix: Ipv4Cidr::new(r.prefix.addr, r.prefix.len),
            next_hop: NextHop::Forward { iface: r.iface as u16, via: r.via },
        })
        .collect()
}

/// The `[[workers]]` entry that polls queue index `k` (forwarding roles: one per index).
fn worker_of_queue(c: &Checked, k: u32) -> Option<usize> {
    c.workers.iter().position(|w| w.queues.first().is_some_and(|q| q.queue == k))
}

/// The forwarding service a router or cross-connect configuration describes.
pub fn forward_config(c: &Checked) -> anyhow::Result<ForwardConfig> {
    let first = c.interfaces.first().context("no interface")?;
    let queues = first.queues;
    let mut cpus = Vec::new();
    for k in 0..queues {
        let w = worker_of_queue(c, k).with_context(|| format!("no worker polls queue {k}"))?;
        cpus.push(c.workers[w].cpu);
    }
    let role = match &c.role {
        RoleCfg::Router { .. } => Role::Router {
            routes: route_specs(c),
            neighbors: c.neighbors.iter().map(|n| (n.iface, n.ip, n.mac)).collect(),
            fib: None,
            tcp_listen: None,
        },
        RoleCfg::Xconnect { pairs } => Role::Xconnect { pairs: pairs.clone() },
        RoleCfg::Server => anyhow::bail!("a server is not a forwarding role"),
    };
    Ok(ForwardConfig {
        ifaces: iface_specs(c),
        role,
        queues,
        cpus,
        mode: xdp_mode(first.xdp_mode),
        socket: socket_config(first, 0),
        worker: ForwardWorkerConfig {
            burst: first.burst as usize,
            drop_capabilities: true,
            ..ForwardWorkerConfig::default()
        },
        fast_path: match &c.role {
            RoleCfg::Router { fast_path: FastPath::Xdp } => FastPathMode::Xdp,
            RoleCfg::Router { fast_path: FastPath::Auto } => FastPathMode::Auto,
            _ => FastPathMode::Userspace,
        },
    })
}

/// The running role.
#[derive(Debug)]
pub enum Running {
    /// Router or cross-connect; on the DPDK backend with its devices (stopped and checked
    /// after the workers in [`Running::join`]).
    Forward(Box<ForwardService>, Vec<server::AppLink>, Option<crate::dpdk::ForwardDevices>),
    /// Services on the stack.
    Server(Box<server::ServerService>),
}

impl Running {
    /// Starts the role of `c` in the calling thread's network namespace.
    pub fn start(c: &Checked) -> anyhow::Result<Running> {
        if let Some(d) = &c.dpdk {
            // What `xdpos forward --backend dpdk` runs, with the file's settings (validation
            // allows only the forwarding roles, without services, on DPDK).
            let args = crate::dpdk::DpdkArgs::from_config(d);
            let (f, devs) = crate::dpdk::start_forward(&forward_config(c)?, &args)?;
            return Ok(Running::Forward(Box::new(f), Vec::new(), Some(devs)));
        }
        match c.role {
            RoleCfg::Server => Ok(Running::Server(Box::new(server::ServerService::start(c)?))),
            RoleCfg::Xconnect { .. } => {
                let f = ForwardService::start(&forward_config(c)?)?;
                Ok(Running::Forward(Box::new(f), Vec::new(), None))
            }
            RoleCfg::Router { .. } => {
                // Every stack of every worker gets an app for the services on its interface's
                // addresses (none yet: a reload may add some).
                let mut apps = Vec::new();
                let mut links = Vec::new();
                for k in 0..c.interfaces.first().map_or(0, |i| i.queues) {
                    let w = worker_of_queue(c, k).unwrap_or(k as usize);
                    let mut per_port: Vec<crate::forward::PortApp> = Vec::new();
                    for (p, x) in c.interfaces.iter().enumerate() {
                        let addrs = x.addresses.iter().map(|a| a.addr).collect();
                        let name = format!("workers[{w}] ({}:{k})", x.name);
                        let (app, link) = server::DaemonApp::new(p, addrs, name);
                        per_port.push(Box::new(app));
                        links.push(link);
                    }
                    apps.push(per_port);
                }
                let f = ForwardService::start_with(&forward_config(c)?, apps)?;
                // The router's stacks have their connected prefixes and reach the next hops
                // through the FIB; their apps get the services only.
                let change = server::Change {
                    generation: 1,
                    services: c.services.clone(),
                    routes: Vec::new(),
                };
                server::apply_all(&links, &change, Duration::from_secs(2))?;
                Ok(Running::Forward(Box::new(f), links, None))
            }
        }
    }

    /// The role's metrics source.
    pub fn metrics(&self) -> std::sync::Arc<crate::metrics::ServiceMetrics> {
        match self {
            Running::Forward(f, ..) => f.metrics(),
            Running::Server(s) => s.metrics(),
        }
    }

    /// The workers' capture points (`xdpos capture`): one per interface and queue a worker
    /// polls, in every role and on both backends.
    pub fn captures(&self) -> Vec<crate::capture::CaptureTarget> {
        match self {
            Running::Forward(f, ..) => f.captures(),
            Running::Server(s) => s.captures(),
        }
    }

    /// Whether every worker thread still runs.
    pub fn workers_running(&self) -> bool {
        match self {
            Running::Forward(f, ..) => f.workers_running(),
            Running::Server(s) => s.workers_running(),
        }
    }

    /// The XDP mode the programs run in.
    pub fn xdp_mode(&self) -> String {
        match self {
            Running::Forward(f, ..) => f.xdp_mode().to_string(),
            Running::Server(s) => s.xdp_mode().to_string(),
        }
    }

    /// The workers, for the control handle.
    pub fn workers(&self, c: &Checked) -> Vec<WorkerInfo> {
        match self {
            Running::Server(s) => s.info().to_vec(),
            Running::Forward(f, ..) => f
                .counters()
                .iter()
                .enumerate()
                .map(|(k, counters)| {
                    let w = worker_of_queue(c, k as u32).unwrap_or(k);
                    WorkerInfo {
                        index: w,
                        cpu: c.workers.get(w).map_or(0, |x| x.cpu),
                        queues: c.interfaces.iter().map(|i| (i.name.clone(), k as u32)).collect(),
                        counters: Counters::Forward(counters.clone()),
                    }
                })
                .collect(),
        }
    }

    /// Stops, prints one line per worker; errs if a worker failed or its frame accounting is
    /// broken.
    pub fn join(self, c: &Checked) -> anyhow::Result<()> {
        let mut broken = Vec::new();
        match self {
            Running::Forward(f, _, devices) => {
                for r in f.join()? {
                    if r.frames.is_err() {
                        broken.push(r.queue.to_string());
                    }
                    let w = worker_of_queue(c, r.queue).unwrap_or(r.queue as usize);
                    // ForwardReport::line starts with "worker <queue>: "; name the entry.
                    let line = r.line();
                    let rest = line.split_once(": ").map_or(line.as_str(), |x| x.1);
                    println!("worker {w} (queue {}): {rest}", r.queue);
                }
                if let Some(d) = devices {
                    for l in d.finish()? {
                        println!("{l}");
                    }
                }
            }
            Running::Server(s) => {
                for r in s.join()? {
                    if r.worker.frames.is_err() {
                        broken.push(r.index.to_string());
                    }
                    println!("{}", r.line());
                }
            }
        }
        anyhow::ensure!(broken.is_empty(), "frame accounting broken on worker(s) {broken:?}");
        Ok(())
    }
}

/// Why `new` cannot be applied to a daemon running `old` without a restart, if it cannot.
pub fn restart_needed(old: &Checked, new: &Checked) -> Option<String> {
    let mut what = Vec::new();
    if old.interfaces != new.interfaces {
        what.push("interfaces");
    }
    if old.workers != new.workers {
        what.push("workers");
    }
    if old.role != new.role {
        what.push("role");
    }
    if old.neighbors != new.neighbors {
        what.push("neighbors");
    }
    if old.metrics != new.metrics {
        what.push("metrics");
    }
    if old.backend != new.backend || old.dpdk != new.dpdk {
        what.push("backend");
    }
    if matches!(new.role, RoleCfg::Xconnect { .. }) && old.routes != new.routes {
        what.push("routes (a cross-connect has none)");
    }
    (!what.is_empty()).then(|| {
        format!(
            "{} changed: that needs a restart (a reload applies routes and services)",
            what.join(", ")
        )
    })
}

/// A running daemon: its configuration, role and control handle.
#[derive(Debug)]
pub struct Daemon {
    path: PathBuf,
    config: Checked,
    running: Running,
    control: Control,
}

impl Daemon {
    /// Validates `path` (against `host`), cleans up what a crashed instance left, and starts
    /// the role. Errors are ready to print: a configuration error lists every problem.
    pub fn start(path: &Path, host: &Host) -> Result<Daemon, StartError> {
        let config = load(path, host).map_err(StartError::Config)?;
        match nic::afxdp::cleanup() {
            Ok(actions) => {
                for a in actions {
                    tracing::info!(?a, "start-up cleanup");
                }
            }
            Err(e) => tracing::warn!(error = %e, "start-up cleanup failed"),
        }
        let running = Running::start(&config).map_err(StartError::Setup)?;
        let control = Control::new(role_name(&config.role), config.metrics);
        control.set_ready(running.workers(&config));
        Ok(Daemon { path: path.to_path_buf(), config, running, control })
    }

    /// The control handle (for the metrics endpoint).
    pub fn control(&self) -> &Control {
        &self.control
    }

    /// The configuration being served.
    pub fn config(&self) -> &Checked {
        &self.config
    }

    /// The `ready:` line.
    pub fn ready_line(&self) -> String {
        let c = &self.config;
        format!(
            "ready: {} on {} ({} worker(s), {}, {} route(s), {} service(s)), generation {}",
            role_name(&c.role),
            c.interfaces.iter().map(|i| i.name.as_str()).collect::<Vec<_>>().join(","),
            c.workers.len(),
            match c.backend {
                // "dpdk net_af_packet": the backend and its driver.
                Backend::Dpdk => self.running.xdp_mode(),
                Backend::Afxdp => format!("{} XDP", self.running.xdp_mode()),
            },
            c.routes.len(),
            c.services.len(),
            self.control.reload().generation,
        )
    }

    /// SIGHUP: re-reads, validates and applies the file; on any problem the old configuration
    /// keeps serving. Returns the line printed for it.
    pub fn reload(&mut self) -> String {
        match self.try_reload() {
            Ok(what) => {
                let g = self.control.reload_applied();
                tracing::info!(generation = g, %what, "reload applied");
                format!("reload: ok, generation {g} ({what})")
            }
            Err(why) => {
                let g = self.control.reload_failed(why.clone());
                tracing::error!(generation = g, problems = %why, "reload refused; the old configuration keeps serving");
                format!("reload: failed, generation {g} keeps serving: {}", why.replace('\n', "; "))
            }
        }
    }

    fn try_reload(&mut self) -> Result<String, String> {
        let new = load(&self.path, &host::gather()).map_err(|e| e.to_string())?;
        if let Some(why) = restart_needed(&self.config, &new) {
            return Err(why);
        }
        let routes = self.config.routes != new.routes;
        let services = self.config.services != new.services;
        if !routes && !services {
            return Ok("no change".into());
        }
        let generation = self.control.reload().generation + 1;
        match &self.running {
            Running::Forward(f, links, _) => {
                if services {
                    let change = server::Change {
                        generation,
                        services: new.services.clone(),
                        routes: Vec::new(),
                    };
                    server::apply_all(links, &change, Duration::from_secs(2))
                        .map_err(|e| format!("{e:#}"))?;
                }
                if routes {
                    let t = std::time::Instant::now();
                    let fib = crate::forward::build_fib(&iface_specs(&new), &route_specs(&new));
                    let swaps = |c: &crate::forward::ForwardCounters| {
                        c.fib_swaps.load(std::sync::atomic::Ordering::Relaxed)
                    };
                    let before: Vec<u64> = f.counters().iter().map(|c| swaps(c)).collect();
                    f.set_fib(fib).map_err(|e| format!("{e:#}"))?;
                    // Done when every worker has swapped it in (between two batches).
                    let deadline = std::time::Instant::now() + Duration::from_secs(2);
                    for (k, c) in f.counters().iter().enumerate() {
                        while swaps(c) <= before[k] {
                            if std::time::Instant::now() >= deadline {
                                return Err(format!(
                                    "worker {k} did not take the new table within 2 s (it may \
                                     still do so)"
                                ));
                            }
                            std::thread::sleep(Duration::from_millis(1));
                        }
                    }
                    tracing::info!(ms = t.elapsed().as_millis() as u64, "new table in use");
                }
            }
            Running::Server(s) => {
                let change = server::Change {
                    generation,
                    services: new.services.clone(),
                    routes: new.routes.clone(),
                };
                s.apply(&change, Duration::from_secs(2)).map_err(|e| format!("{e:#}"))?;
            }
        }
        let what = format!(
            "{} route(s){}, {} service(s){}",
            new.routes.len(),
            if routes { " changed" } else { "" },
            new.services.len(),
            if services { " changed" } else { "" }
        );
        self.config = new;
        Ok(what)
    }

    /// SIGTERM: drains and stops.
    pub fn stop(self) -> anyhow::Result<()> {
        self.control.set_draining();
        self.running.join(&self.config)
    }
}

/// Why the daemon did not start.
#[derive(Debug)]
pub enum StartError {
    /// The configuration is invalid (exit status 2).
    Config(ConfigError),
    /// Setting up failed (exit status 1).
    Setup(anyhow::Error),
}

/// Serves `/metrics`, `/healthz` and `/readyz` at the configuration's `[metrics] listen`:
/// the running role's source (workers, sockets, steering programs), readiness and reload
/// status from `control`; and `/capture` (`xdpos capture`) on every worker's sockets. The listener's thread starts after the control thread dropped its
/// capabilities and inherits none (a port below 1024 would need CAP_NET_BIND_SERVICE: use a
/// higher one). The endpoint stops when the returned server is dropped.
pub fn start_metrics(
    control: &Control,
    running: &Running,
) -> anyhow::Result<(crate::metrics::Server, std::sync::Arc<crate::metrics::Registry>)> {
    let registry = crate::metrics::Registry::new();
    registry.add(running.metrics());
    registry.add_captures(running.captures());
    if let Running::Forward(_, _, Some(d)) = running {
        registry.add(d.metrics());
    }
    registry.set_status(std::sync::Arc::new(control.clone()));
    let addr = control.metrics_listen();
    let server = crate::metrics::serve(addr, registry.clone())
        .with_context(|| format!("serve metrics on {addr}"))?;
    Ok((server, registry))
}

/// How often the control thread looks at the workers between signals.
const WATCH_EVERY: Duration = Duration::from_millis(100);

/// `xdpos run --config FILE`: runs until SIGTERM/SIGINT (exit 0), reloading on SIGHUP. A
/// configuration error prints every problem and exits 2.
pub fn run(a: &RunArgs) -> anyhow::Result<()> {
    // First, so a signal during setup is queued, not fatal (SIGHUP's default is to exit).
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])
        .context("install the signal handlers")?;
    let mut daemon = match Daemon::start(&a.config, &host::gather()) {
        Ok(d) => d,
        Err(StartError::Config(e)) => {
            eprintln!("{}: {} problem(s):", a.config.display(), e.problems.len());
            for p in &e.problems {
                eprintln!("  {p}");
            }
            std::process::exit(2);
        }
        Err(StartError::Setup(e)) => return Err(e.context("start the daemon")),
    };
    let keep = if a.keep_bpf_caps { caps::Keep::BpfAndNetAdmin } else { caps::Keep::Nothing };
    caps::drop_thread(keep).context("drop the control thread's capabilities")?;
    let (metrics, registry) = start_metrics(daemon.control(), &daemon.running)?;
    let line = format!("{}, metrics http://{}/metrics", daemon.ready_line(), metrics.local_addr());
    tracing::info!("{line}");
    println!("{line}");
    // Signals, and between them a look at the workers: one that ended (a panic, an error)
    // makes /healthz fail, so a supervisor restarts the daemon; one whose loop goes
    // metrics::STALL_AFTER without a heartbeat is stalled (/readyz fails while it is, the
    // registry computes that at each probe) and logged here when it stalls and resumes.
    let mut healthy = true;
    let mut stalled: Vec<String> = Vec::new();
    'serve: loop {
        for sig in signals.pending() {
            match sig {
                SIGHUP => {
                    let line = daemon.reload();
                    println!("{line}");
                }
                _ => {
                    tracing::info!(signal = sig, "stopping: draining the workers");
                    break 'serve;
                }
            }
        }
        if healthy && !daemon.running.workers_running() {
            healthy = false;
            registry.set_healthy(false);
            tracing::error!("a worker has stopped; /healthz now fails");
            println!("unhealthy: a worker has stopped");
        }
        let now: Vec<(String, Duration)> = registry.stalled();
        for (w, age) in &now {
            if !stalled.contains(w) {
                let secs = age.as_secs_f64();
                tracing::error!(worker = %w, secs, "worker stalled: no heartbeat; /readyz fails");
                println!("stalled: worker {w} (no heartbeat for {secs:.3} s)");
            }
        }
        for w in &stalled {
            if !now.iter().any(|(n, _)| n == w) {
                tracing::warn!(worker = %w, "worker resumed");
                println!("resumed: worker {w}");
            }
        }
        stalled = now.into_iter().map(|(w, _)| w).collect();
        std::thread::sleep(WATCH_EVERY);
    }
    daemon.stop()?;
    drop(metrics);
    println!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(name: &str) -> Checked {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/examples").join(name);
        load(&path, &Host::unknown()).unwrap()
    }

    #[test]
    fn a_reload_applies_routes_and_services_and_refuses_the_rest() {
        let old = example("router.toml");
        let mut new = old.clone();
        new.routes.pop();
        assert_eq!(restart_needed(&old, &new), None, "routes are applied live");
        let mut new = old.clone();
        new.workers[0].cpu = 0;
        new.neighbors.clear();
        let why = restart_needed(&old, &new).unwrap();
        assert!(why.starts_with("workers, neighbors changed: that needs a restart"), "{why}");
        let old = example("server.toml");
        let mut new = old.clone();
        new.services.pop();
        assert_eq!(restart_needed(&old, &new), None, "services are applied live");
        assert!(summary(&old).starts_with("server: 1 interface(s) (eth1), 2 worker(s) on cpu 1,2"));
    }

    #[test]
    fn a_dpdk_file_is_checked_against_this_build_unless_for_another_host() {
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/examples/router-dpdk.toml"),
        )
        .unwrap();
        let cfg = xdpos_config::parse(&text).unwrap();
        let here = Host { interfaces: Some(Default::default()), ..Host::unknown() };
        // A build with DPDK runs the file; one without refuses it, saying how to build.
        let want = (!crate::dpdk::AVAILABLE)
            .then_some("backend: \"dpdk\": this build has no DPDK (build with --features dpdk)");
        assert_eq!(this_build(&cfg, &here).map(|p| p.to_string()).as_deref(), want);
        assert_eq!(this_build(&cfg, &Host::unknown()), None, "--no-host: another machine");
        let afxdp = xdpos_config::parse(&text.replace("backend = \"dpdk\"", "")).unwrap();
        assert_eq!(this_build(&afxdp, &here), None);
        let c = example("router-dpdk.toml");
        let a = crate::dpdk::DpdkArgs::from_config(c.dpdk.as_ref().unwrap());
        assert_eq!((a.dpdk_pmd.as_str(), a.dpdk_mem, a.dpdk_huge), ("af_packet", 256, false));
        assert_eq!((a.dpdk_frames, a.dpdk_ring, a.dpdk_no_offloads), (4096, 1024, false));
        let mut old = c.clone();
        old.backend = xdpos_config::schema::Backend::Afxdp;
        old.dpdk = None;
        assert!(restart_needed(&old, &c).unwrap().starts_with("backend changed"));
    }

    #[test]
    fn the_forwarding_config_pins_each_queue_index_to_its_workers_cpu() {
        let c = example("router.toml");
        let f = forward_config(&c).unwrap();
        assert_eq!((f.queues, f.cpus.clone()), (1, vec![1]));
        assert!(f.worker.drop_capabilities);
        assert_eq!(f.ifaces.len(), 2);
        match &f.role {
            Role::Router { routes, neighbors, .. } => {
                assert_eq!((routes.len(), neighbors.len()), (2, 1));
            }
            Role::Xconnect { .. } => panic!("a router"),
        }
        assert!(forward_config(&example("server.toml")).is_err());
    }
}
