//! Shared helpers of the integration tests: a run-to-completion loop over AF_XDP ports with a
//! deadline, kernel-side UDP helpers, the checks every test ends with (no XDP program left,
//! frame accounting), and the daemon (`xdpos run --config`) with its metrics endpoint.
//!
//! The rig itself (namespaces, veth pairs, cleanup) is `xdpos::rig`, shared with the benchmark
//! harness and the demo.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nic::afxdp::XskPort;
use nic::{FrameCounts, Port};
use xdpos::rig::{Netns, Pair};

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
