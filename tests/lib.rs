//! Shared helpers of the integration tests: a run-to-completion loop over AF_XDP ports with a
//! deadline, kernel-side UDP helpers, the checks every test ends with (no XDP program left,
//! frame accounting), and the daemon (`xdpos run --config`) with its metrics endpoint.
//!
//! On the `chain` rig (A —veth— F —veth— B): the forwarding service's configuration, start and
//! checked stop, and kernel UDP echo and TCP transfers through F. The benchmark runner
//! (`xdpos bench KIND --json`) with its checks of the report.
//!
//! The rig itself (namespaces, veth pairs, cleanup) is `xdpos::rig`, shared with the benchmark
//! harness and the demo.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use libos::forward::FwdDrop;
use libos::iface::route::Ipv4Cidr;
use nic::afxdp::{XdpMode, XskConfig, XskPort};
use nic::{FrameCounts, Port};
use xdpos::fastpath::FastPathMode;
use xdpos::forward::{
    ForwardConfig, ForwardReport, ForwardService, ForwardWorkerConfig, IfaceSpec, Role,
};
use xdpos::rig::{Chain, Netns, Pair};

/// Every test waits at most this long for anything.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Removes namespaces left by earlier runs that were killed; call at the start of each test.
pub fn sweep() {
    xdpos::rig::sweep_stale();
}

/// Asserts that no XDP program is attached to any interface of `ns`.
pub fn assert_no_xdp(ns: &Netns) {
    let links = ns.sh("ip -d link show").expect("ip link");
    assert!(
        !links.contains("prog/xdp"),
        "an XDP program is still attached in {}:\n{links}",
        ns.name()
    );
}

/// Waits (bounded) until the port's frames are all accounted for with none inside the kernel,
/// then checks the invariant and that no frame appears twice. Panics with the counts if not.
pub fn assert_frames_accounted(port: &mut XskPort) -> FrameCounts {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        port.reclaim();
        let c = port.frame_counts();
        if (c.kernel == 0 && c.tx == 0 && c.completion == 0) || Instant::now() > deadline {
            return port.audit().unwrap_or_else(|e| panic!("{e}"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A kernel UDP socket in the calling thread's namespace, bound to `addr:port` (0: any port),
/// with a receive timeout.
pub fn kernel_udp(addr: Ipv4Addr, port: u16) -> UdpSocket {
    let s = UdpSocket::bind(SocketAddrV4::new(addr, port)).expect("bind kernel udp socket");
    s.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
    s
}

/// A payload of `len` bytes that encodes `seq` and a pattern derived from it, so a receiver
/// can check every byte.
pub fn payload(seq: u32, len: usize) -> Vec<u8> {
    let mut p: Vec<u8> =
        (0..len).map(|i| (i as u32).wrapping_mul(31).wrapping_add(seq) as u8).collect();
    if len >= 4 {
        p[..4].copy_from_slice(&seq.to_be_bytes());
    }
    p
}

/// Decodes a [`payload`]; `None` if any byte is wrong.
pub fn check_payload(p: &[u8]) -> Option<u32> {
    if p.len() < 4 {
        return None;
    }
    let seq = u32::from_be_bytes([p[0], p[1], p[2], p[3]]);
    (payload(seq, p.len()) == p).then_some(seq)
}

/// Runs `step` over the ports until it returns true or the deadline passes; returns whether
/// it finished. `step` gets all ports, to poll in turn.
pub fn poll_until(
    ports: &mut [XskPort],
    limit: Duration,
    mut step: impl FnMut(&mut [XskPort]) -> bool,
) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if step(ports) {
            return true;
        }
        for p in ports.iter_mut() {
            p.reclaim();
        }
    }
    false
}

/// An error and all its causes, `: `-separated (what a user sees from `anyhow`'s `{:#}`).
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut s = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        s.push_str(": ");
        s.push_str(&e.to_string());
        cur = e.source();
    }
    s
}

/// Dumps the rig's interface counters; call from a failing test for context.
pub fn dump(pair: &Pair) -> String {
    pair.dump()
}

/// The `xdpos` binary built beside the tests (`cargo build -p xdpos`; the README's test command
/// builds it first). `XDPOS_BIN` overrides the path.
pub fn xdpos_bin() -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("XDPOS_BIN") {
        return p.into();
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/xdpos
    let bin = exe.parent().and_then(|d| d.parent()).map(|d| d.join("xdpos")).expect("target dir");
    assert!(bin.exists(), "{} is missing: run `cargo build -p xdpos` first", bin.display());
    bin
}

/// A child process with its stdout read line by line on a thread, killed on drop if still
/// running.
#[derive(Debug)]
pub struct Child {
    /// The process.
    pub child: std::process::Child,
    /// In a mutex only so that a `Child` (and a [`Daemon`]) can be shared with a closure that
    /// runs in a namespace ([`Netns::run_in`]).
    lines: Mutex<mpsc::Receiver<String>>,
    /// Every stdout line read so far.
    pub seen: Vec<String>,
}

use std::sync::{mpsc, Mutex};

impl Child {
    /// Starts `cmd` with stdout piped.
    pub fn spawn(mut cmd: std::process::Command) -> Child {
        let mut child = cmd
            .stdout(std::process::Stdio::piped())
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("spawn child");
        let out = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Child { child, lines: Mutex::new(lines), seen: Vec::new() }
    }

    /// Waits (bounded) for a stdout line containing `needle`.
    pub fn wait_line(&mut self, needle: &str, limit: Duration) -> Option<String> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let lines = self.lines.get_mut().unwrap_or_else(|p| p.into_inner());
            match lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if l.contains(needle) {
                        return Some(l);
                    }
                }
                Err(_) => return None,
            }
        }
    }

    /// The child's process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` to the child (by its PID).
    pub fn signal(&self, signal: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).expect("pid");
        rustix::process::kill_process(pid, signal).expect("kill");
    }

    /// Waits (bounded) for the child to exit; collects the rest of its stdout.
    pub fn wait(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                let lines = self.lines.get_mut().unwrap_or_else(|p| p.into_inner());
                while let Ok(l) = lines.recv_timeout(Duration::from_millis(200)) {
                    self.seen.push(l);
                }
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `xdpos run --config FILE` in a namespace: started from a configuration written to the
/// temporary directory, ready once it printed `ready:` and `/readyz` (the default metrics
/// endpoint, 127.0.0.1:9464 in its namespace) answers 200. On drop the file is removed and the
/// process killed if it still runs ([`Child`]).
#[derive(Debug)]
pub struct Daemon<'a> {
    /// The process (`ip netns exec` execs the daemon: the same PID).
    pub child: Child,
    ns: &'a Netns,
    cfg: PathBuf,
}

impl<'a> Daemon<'a> {
    /// Writes `toml` to a file named after `tag` and starts the daemon on it in `ns`.
    pub fn start(ns: &'a Netns, tag: &str, toml: &str) -> Daemon<'a> {
        let cfg = std::env::temp_dir().join(format!("xdpos-{tag}-{}.toml", std::process::id()));
        std::fs::write(&cfg, toml).expect("write the configuration");
        let mut cmd = std::process::Command::new("ip");
        cmd.args(["netns", "exec", ns.name()]).arg(xdpos_bin()).args(["run", "--config"]).arg(&cfg);
        let mut d = Daemon { child: Child::spawn(cmd), ns, cfg };
        assert!(
            d.child.wait_line("ready:", DEADLINE).is_some(),
            "{tag}: the daemon did not become ready: {:?}",
            d.child.seen
        );
        let deadline = Instant::now() + DEADLINE;
        while d.get("/readyz").map(|(s, _)| s) != Some(200) {
            assert!(Instant::now() < deadline, "{tag}: /readyz never 200: {:?}", d.child.seen);
            std::thread::sleep(Duration::from_millis(50));
        }
        d
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// One GET on the metrics endpoint: status and body, or `None` if it does not answer.
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        self.ns
            .run_in(|| {
                let at = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9464);
                let mut s = TcpStream::connect_timeout(&at.into(), Duration::from_secs(2)).ok()?;
                s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
                write!(s, "GET {path} HTTP/1.1\r\nHost: {at}\r\nConnection: close\r\n\r\n").ok()?;
                let mut raw = Vec::new();
                s.read_to_end(&mut raw).ok()?;
                let text = String::from_utf8_lossy(&raw).into_owned();
                let (head, body) = text.split_once("\r\n\r\n")?;
                let status = head.split_whitespace().nth(1)?.parse().ok()?;
                Some((status, body.to_string()))
            })
            .ok()
            .flatten()
    }

    /// `/metrics`; panics if it does not answer 200.
    pub fn metrics(&self) -> String {
        match self.get("/metrics") {
            Some((200, body)) => body,
            other => panic!("/metrics in {}: {other:?}", self.ns.name()),
        }
    }

    /// `/metrics` once two scrapes 200 ms apart agree on `read` (the workers publish their
    /// counters between batches and when they go idle), at most 3 s.
    pub fn settled_metrics<T: PartialEq>(&self, read: impl Fn(&str) -> T) -> String {
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut text = self.metrics();
        loop {
            std::thread::sleep(Duration::from_millis(200));
            let next = self.metrics();
            if read(&next) == read(&text) || Instant::now() > deadline {
                return next;
            }
            text = next;
        }
    }

    /// `/metrics` once `read` of it equals `want` (the workers publish their counters between
    /// batches and when they go idle), at most 3 s: the last reading and the exposition it came
    /// from.
    pub fn metrics_until<T: PartialEq>(&self, read: impl Fn(&str) -> T, want: &T) -> (T, String) {
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let text = self.metrics();
            let got = read(&text);
            if &got == want || Instant::now() > deadline {
                return (got, text);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM: exits 0 and prints `stopped`, every worker's frames are accounted for, and
    /// nothing stays attached in its namespace. Returns its stdout.
    pub fn stop(mut self) -> Vec<String> {
        self.child.signal(rustix::process::Signal::TERM);
        let st = self.child.wait(DEADLINE).expect("the daemon exits after SIGTERM");
        assert_eq!(st.code(), Some(0), "{st:?}: {:?}", self.child.seen);
        assert!(self.child.seen.iter().any(|l| l == "stopped"), "{:?}", self.child.seen);
        let workers: Vec<&String> =
            self.child.seen.iter().filter(|l| l.starts_with("worker ")).collect();
        assert!(!workers.is_empty(), "no worker line: {:?}", self.child.seen);
        for l in workers {
            assert!(l.contains("frames ok"), "frame accounting: {l}");
        }
        assert_no_xdp(self.ns);
        self.child.seen.clone()
    }
}

impl Drop for Daemon<'_> {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.cfg);
    }
}

/// The samples of the metric family `family` summed by the value of their label `label` (over
/// every other label: workers, interfaces, queues).
pub fn metric_by_label(text: &str, family: &str, label: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let key = format!("{label}=\"");
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = l.rsplit_once(' ') else { continue };
        let Some((name, labels)) = series.split_once('{') else { continue };
        if name != family {
            continue;
        }
        let Some(v) = labels.split(&key).nth(1).and_then(|r| r.split('"').next()) else {
            continue;
        };
        let n: f64 = value.parse().unwrap_or_else(|_| panic!("a sample's value: {l}"));
        *out.entry(v.to_string()).or_default() += n as u64;
    }
    out
}

/// A counter summed over its workers (every series with a `worker` label).
pub fn metric_total(text: &str, family: &str) -> u64 {
    metric_by_label(text, family, "worker").values().sum()
}

/// Every non-zero drop count of a daemon's stacks, by reason: the stacks'
/// (`xdpos_stack_drops_total`), TCP's with a `tcp_` prefix (`xdpos_tcp_drops_total`) and the
/// workers' (`xdpos_worker_drops_total`).
pub fn stack_drops(text: &str) -> BTreeMap<String, u64> {
    let mut d = metric_by_label(text, "xdpos_stack_drops_total", "reason");
    for (k, v) in metric_by_label(text, "xdpos_tcp_drops_total", "reason") {
        d.insert(format!("tcp_{k}"), v);
    }
    d.extend(metric_by_label(text, "xdpos_worker_drops_total", "reason"));
    d.retain(|_, v| *v > 0);
    d
}

/// Every non-zero count of a router's `xdpos_forward_drops_total`, by reason.
pub fn forward_drops(text: &str) -> BTreeMap<String, u64> {
    let mut d = metric_by_label(text, "xdpos_forward_drops_total", "reason");
    d.retain(|_, v| *v > 0);
    d
}

/// The counters of the frames the kernel dropped on the way into the daemon's AF_XDP sockets
/// (full RX or fill rings).
pub const XSK_DROPS: [&str; 2] = ["xdpos_xsk_rx_dropped_total", "xdpos_xsk_rx_ring_full_total"];

/// The frames the kernel dropped on the way into the daemon's AF_XDP sockets ([`XSK_DROPS`]).
pub fn xsk_drops(text: &str) -> u64 {
    XSK_DROPS.iter().map(|f| metric_total(text, f)).sum()
}

/// Every non-zero drop count of a daemon's exposition, by reason: [`stack_drops`], a router's
/// [`forward_drops`] with a `forward_` prefix, and the frames the kernel dropped on the way
/// into the AF_XDP sockets ([`XSK_DROPS`], each under its name without `xdpos_` and `_total`).
pub fn metric_drops(text: &str) -> BTreeMap<String, u64> {
    let mut d = stack_drops(text);
    for (k, v) in forward_drops(text) {
        d.insert(format!("forward_{k}"), v);
    }
    for f in XSK_DROPS {
        let n = metric_total(text, f);
        d.insert(f.trim_start_matches("xdpos_").trim_end_matches("_total").to_string(), n);
    }
    d.retain(|_, v| *v > 0);
    d
}

/// A daemon's `[[interfaces]]` table: `name` with `addr/24`, and with `frames` that many UMEM
/// frames and a 1024-entry ring (else the defaults).
fn toml_interface(name: &str, addr: Ipv4Addr, frames: Option<u32>) -> String {
    let ring = frames.map(|n| format!("frames = {n}\nring_size = 1024\n")).unwrap_or_default();
    format!("[[interfaces]]\nname = \"{name}\"\naddresses = [\"{addr}/24\"]\n{ring}\n")
}

/// A router-role configuration (`xdpos run --config`): `ifaces` (name, address; see
/// [`toml_interface`] for `frames`), one worker on `cpu` serving queue 0 of each, and
/// `fast_path` (`None`: left out, the default `auto`). Routes and services may be appended.
pub fn router_toml(
    ifaces: &[(&str, Ipv4Addr)],
    frames: Option<u32>,
    cpu: u32,
    fast_path: Option<&str>,
) -> String {
    let mut s: String = ifaces.iter().map(|&(i, a)| toml_interface(i, a, frames)).collect();
    let queues: Vec<String> = ifaces.iter().map(|(i, _)| format!("\"{i}:0\"")).collect();
    s += &format!("[[workers]]\ncpu = {cpu}\nqueues = [{}]\n\n", queues.join(", "));
    s += "[role]\nkind = \"router\"\n";
    if let Some(f) = fast_path {
        s += &format!("fast_path = \"{f}\"\n");
    }
    s
}

/// A server-role configuration: interface `iface` (name, address; see [`toml_interface`] for
/// `frames`), one worker on `cpu` serving its queue 0, and `services` (kind, port on the
/// address).
pub fn server_toml(
    (name, addr): (&str, Ipv4Addr),
    frames: Option<u32>,
    cpu: u32,
    services: &[(&str, u16)],
) -> String {
    let mut s = toml_interface(name, addr, frames);
    s += &format!("[[workers]]\ncpu = {cpu}\nqueues = [\"{name}:0\"]\n\n");
    s += "[role]\nkind = \"server\"\n";
    for (kind, port) in services {
        s += &format!("\n[[services]]\nkind = \"{kind}\"\nlisten = \"{addr}:{port}\"\n");
    }
    s
}

/// The router's two interfaces on the `chain` rig: F's address toward A and toward B, /24, MTU
/// 1500.
pub fn chain_ifaces(chain: &Chain) -> Vec<IfaceSpec> {
    vec![
        IfaceSpec {
            name: chain.fa.ifname.clone(),
            addrs: vec![Ipv4Cidr::new(chain.fa.ip, 24)],
            mtu: 1500,
        },
        IfaceSpec {
            name: chain.fb.ifname.clone(),
            addrs: vec![Ipv4Cidr::new(chain.fb.ip, 24)],
            mtu: 1500,
        },
    ]
}

/// A forwarding service in F on the `chain` rig ([`chain_ifaces`]), native XDP mode, default
/// sockets and workers, `queues` queues and the given role and fast path.
pub fn router_cfg(
    chain: &Chain,
    queues: u32,
    role: Role,
    fast_path: FastPathMode,
) -> ForwardConfig {
    ForwardConfig {
        ifaces: chain_ifaces(chain),
        role,
        queues,
        cpus: Vec::new(),
        mode: XdpMode::Native,
        socket: XskConfig::default(),
        worker: ForwardWorkerConfig::default(),
        fast_path,
    }
}

/// A router with no static routes or neighbours, no table and no TCP listener.
pub fn plain_router() -> Role {
    Role::Router { routes: Vec::new(), neighbors: Vec::new(), fib: None, tcp_listen: None }
}

/// Starts the forwarding service in F.
pub fn start_forward(chain: &Chain, cfg: &ForwardConfig) -> ForwardService {
    chain.ns_f.run_in(|| ForwardService::start(cfg)).unwrap().unwrap()
}

/// Stops the forwarding service, checks every worker's frame accounting and that F has no XDP
/// program left; returns the reports.
pub fn finish_forward(chain: &Chain, svc: ForwardService) -> Vec<ForwardReport> {
    let reports = svc.join().unwrap();
    for r in &reports {
        assert!(r.frames.is_ok(), "worker {}: {:?}", r.queue, r.frames);
        assert_eq!(r.frames.as_ref().unwrap().held, 0);
    }
    assert_no_xdp(&chain.ns_f);
    reports
}

/// `f` summed over the workers' reports.
pub fn report_sum(reports: &[ForwardReport], f: impl Fn(&ForwardReport) -> u64) -> u64 {
    reports.iter().map(f).sum()
}

/// The forwarding drops for `why`, summed over the workers' reports.
pub fn report_drops(reports: &[ForwardReport], why: FwdDrop) -> u64 {
    report_sum(reports, |r| r.forward.as_ref().map_or(0, |f| f.drops(why)))
}

/// The FNV-1a offset basis.
pub const FNV0: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a over a byte stream, continuing from `h` ([`FNV0`] to start).
pub fn fnv(h: u64, data: &[u8]) -> u64 {
    data.iter().fold(h, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

/// `n` bytes of a pattern that differs per direction (`salt`).
pub fn pattern(n: usize, salt: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(7).wrapping_add(salt ^ (i >> 11) as u8)).collect()
}

/// The UDP port of [`with_udp_echo`]'s kernel echo.
pub const ECHO_PORT: u16 = 9000;

/// A kernel UDP echo on `ip:port` in `ns`, in the calling thread: signals `ready` once its
/// socket is bound, then answers up to `n` datagrams (or until [`DEADLINE`]).
pub fn udp_echo(ns: &Netns, ip: Ipv4Addr, port: u16, n: u32, ready: mpsc::Sender<()>) {
    ns.run_in(|| {
        let sock = kernel_udp(ip, port);
        ready.send(()).unwrap();
        let mut buf = [0u8; 2048];
        let deadline = Instant::now() + DEADLINE;
        let mut k = 0;
        while k < n && Instant::now() < deadline {
            if let Ok((len, from)) = sock.recv_from(&mut buf) {
                sock.send_to(&buf[..len], from).unwrap();
                k += 1;
            }
        }
    })
    .unwrap()
}

/// Runs `client` while a [`udp_echo`] on `echo_ip:`[`ECHO_PORT`] in `ns` answers up to `n`
/// datagrams; `client` starts once the echo's socket is bound, and the echo is joined before
/// this returns `client`'s result.
pub fn with_udp_echo<R>(ns: &Netns, echo_ip: Ipv4Addr, n: u32, client: impl FnOnce() -> R) -> R {
    std::thread::scope(|s| {
        let (ready_tx, ready_rx) = mpsc::channel();
        let echo = s.spawn(move || udp_echo(ns, echo_ip, ECHO_PORT, n, ready_tx));
        ready_rx.recv_timeout(DEADLINE).unwrap();
        let got = client();
        echo.join().unwrap();
        got
    })
}

/// Sends `n` datagrams of `size` bytes ([`payload`]) from a kernel socket on `from` in `ns` to
/// `to`, each waiting (2 s at most) for its echo; returns how many came back intact.
pub fn udp_echoes(ns: &Netns, from: Ipv4Addr, to: SocketAddrV4, n: u32, size: usize) -> u32 {
    ns.run_in(|| {
        let sock = kernel_udp(from, 0);
        sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut buf = [0u8; 2048];
        let mut got = 0;
        for i in 0..n {
            sock.send_to(&payload(i, size), to).unwrap();
            if let Ok(len) = sock.recv(&mut buf) {
                if check_payload(&buf[..len]) == Some(i) {
                    got += 1;
                }
            }
        }
        got
    })
    .unwrap()
}

/// UDP through F on the `chain` rig: `n` datagrams of `size` bytes from the host on the other
/// side to a kernel echo on `echo_ip` (A's or B's); how many came back intact.
pub fn udp_round_trips(chain: &Chain, echo_ip: Ipv4Addr, n: u32, size: usize) -> u32 {
    let (ns_echo, ns_client, client_ip) = if echo_ip == chain.b.ip {
        (&chain.ns_b, &chain.ns_a, chain.a.ip)
    } else {
        (&chain.ns_a, &chain.ns_b, chain.b.ip)
    };
    let to = SocketAddrV4::new(echo_ip, ECHO_PORT);
    with_udp_echo(ns_echo, echo_ip, n, || udp_echoes(ns_client, client_ip, to, n, size))
}

/// A kernel TCP transfer through F on the `chain` rig: A connects to B's port 5001, sends `up`
/// and reads as many bytes back, while B reads `up.len()` bytes and sends `down` (the same
/// length). Returns what B received and what A received.
pub fn tcp_transfer(chain: &Chain, up: &[u8], down: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let addr = SocketAddrV4::new(chain.b.ip, 5001);
    // By reference: a `move` closure would take the namespace itself and delete it at its end.
    let ns_b = &chain.ns_b;
    let n = up.len();
    std::thread::scope(|s| {
        let (ready_tx, ready_rx) = mpsc::channel();
        let server = s.spawn(move || {
            ns_b.run_in(|| {
                let l = TcpListener::bind(addr).unwrap();
                l.set_nonblocking(true).unwrap();
                ready_tx.send(()).unwrap();
                let deadline = Instant::now() + DEADLINE;
                let mut conn = loop {
                    match l.accept() {
                        Ok((c, _)) => break c,
                        Err(_) if Instant::now() < deadline => {
                            std::thread::sleep(Duration::from_millis(5))
                        }
                        Err(e) => panic!("no connection through F: {e}"),
                    }
                };
                conn.set_nonblocking(false).unwrap();
                conn.set_read_timeout(Some(DEADLINE)).unwrap();
                conn.set_write_timeout(Some(DEADLINE)).unwrap();
                let mut got = vec![0u8; n];
                conn.read_exact(&mut got).unwrap();
                conn.write_all(down).unwrap();
                got
            })
            .unwrap()
        });
        ready_rx.recv_timeout(DEADLINE).unwrap();
        let back = chain
            .ns_a
            .run_in(|| {
                let mut c =
                    TcpStream::connect_timeout(&addr.into(), Duration::from_secs(10)).unwrap();
                c.set_read_timeout(Some(DEADLINE)).unwrap();
                c.set_write_timeout(Some(DEADLINE)).unwrap();
                c.write_all(up).unwrap();
                let mut got = vec![0u8; n];
                c.read_exact(&mut got).unwrap();
                got
            })
            .unwrap();
        (server.join().unwrap(), back)
    })
}

/// `xdpos bench KIND --quick --sizes SIZES --variants VARIANTS ARGS --json FILE` (a directory
/// per call in the temporary directory: the tests run in parallel), asserting that it succeeds
/// and that the JSON names the bench and the machine. Calls `check_row` for each variant at
/// each size with its row and the command's output (for messages); panics if a row is missing.
pub fn bench_rows(
    kind: &str,
    args: &[&str],
    sizes: &[u64],
    variants: &[&str],
    check_row: impl Fn(&str, u64, &serde_json::Value, &dyn Fn() -> String),
) {
    sweep();
    // A directory per call: the tests run in parallel, and one removing a shared directory
    // once it was empty made the other's --json fail.
    let dir = std::env::temp_dir().join(format!(
        "xdpos-bench-{kind}-{}-{}",
        std::process::id(),
        variants.len()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join(format!("{kind}-{}.json", variants.len()));
    let sizes_arg = sizes.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
    let out = std::process::Command::new(xdpos_bin())
        .args(["bench", kind, "--quick", "--sizes", &sizes_arg, "--variants"])
        .arg(variants.join(","))
        .args(args)
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap_or_else(|e| panic!("run xdpos bench {kind}: {e}"));
    let text = || {
        format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    assert!(out.status.success(), "{}", text());
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).expect("valid JSON");
    std::fs::remove_file(&json).ok();
    std::fs::remove_dir(&dir).ok();
    assert_eq!(report["bench"], kind);
    for key in ["cpus", "kernel", "nic", "xdp_mode"] {
        assert!(!report["machine"][key].is_null(), "machine.{key} missing: {report}");
    }
    let rows = report["rows"].as_array().expect("rows");
    for variant in variants {
        for &size in sizes {
            let row = rows
                .iter()
                .find(|r| r["variant"] == *variant && r["size"] == size)
                .unwrap_or_else(|| panic!("no row for {variant} at {size} B: {}", text()));
            check_row(variant, size, row, &text);
        }
    }
}
