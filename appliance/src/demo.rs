//! # `xdpos demo`: the appliance between real kernel hosts, built and removed
//!
//! What it is: the README's first command. It builds the `chain` rig: namespace A (the client,
//! 10.0.1.2), F (the appliance), B (the server's host, whose kernel keeps 10.0.2.2), and starts
//! two `xdpos run --config` daemons from built-in configurations written to a temporary
//! directory:
//!
//! - in F, a **router** between A's network (10.0.1.1/24 on `xf0`) and B's (10.0.2.1/24 on
//!   `xf1`): every packet between A and B crosses the xdpos router (ARP, TTL, checksum, ICMP);
//! - in B, a **server** at its own address 10.0.2.3 on `xb0` beside B's kernel: UDP echo on
//!   port 7, HTTP/1.1 on 80, iperf3 on 5201, behind the router (default route via 10.0.2.1).
//!
//! Then real kernel clients in A drive them for `--seconds`: `ping` to the router itself,
//! through it to B's kernel and to the xdpos server; paced kernel UDP sockets against the UDP
//! echo (every datagram checked, round-trip times); `curl` fetching the HTTP service over
//! keep-alive connections, many URLs per run; `iperf3 -c` against the iperf3 service. A line
//! per second shows what each did, and what the daemons' own `/metrics` say (scraped from
//! inside their namespaces, where the demo prints how to scrape them too). At the end: a
//! summary, the daemons stopped with SIGTERM (they drain, detach their XDP programs and exit
//! 0), the rig and the temporary directory removed. Ctrl-C ends the traffic early and takes the
//! same way out.
//!
//! What it owns: the rig, the two daemons and the client processes, the temporary directory.
//! All are removed on every path ([`Procs`] and [`TempDir`] guards on drop, the rig's
//! namespaces on drop). The processes share the demo's process group, so the terminal's Ctrl-C
//! reaches them too: the daemons drain and exit as on SIGTERM, and the demo checks them as on a
//! normal stop. A second Ctrl-C ends the demo at once; the next run removes the namespaces it
//! left (their creator is gone).
//!
//! Exit status: 0 when every check passed: each ping answered, the UDP datagrams came back
//! intact (none corrupted, at most 1% lost: they share the path with iperf3's full-rate
//! stream), every HTTP request got a 200, iperf3 completed, both daemons exited 0 and no XDP
//! program is left attached. Interrupted runs exit 0 after cleaning up, without judging.

use std::collections::VecDeque;
use std::io::{BufRead, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::bench::Stop;
use crate::rig::{Chain, ChainOpts, End, Netns};

/// Options of `xdpos demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// How long to drive traffic.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// UDP echo datagrams per second from the kernel clients (paced).
    #[arg(long, default_value_t = 1000)]
    pub rate: u32,
    /// UDP payload bytes.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
}

/// The xdpos server's address (B's kernel keeps 10.0.2.2).
const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 3);
const UDP_PORT: u16 = 7;
const HTTP_PORT: u16 = 80;
const IPERF_PORT: u16 = 5201;
const METRICS: &str = "127.0.0.1:9464";
const HTTP_BODY: &str = "hello from xdpos, through the xdpos router\n";
const UDP_CLIENTS: usize = 8;
/// How long a daemon may take to say `ready:`, and to exit after SIGTERM.
const DAEMON_LIMIT: Duration = Duration::from_secs(20);

/// The router in F, between `fa` (toward A) and `fb` (toward B).
fn router_text(fa: &End, fb: &End) -> String {
    format!(
        r#"# xdpos demo: the router in namespace F, between A's network and B's.
[[interfaces]]
name = "{fa}"
addresses = ["{ga}/24"]

[[interfaces]]
name = "{fb}"
addresses = ["{gb}/24"]

[[workers]]
cpu = {cpu}
queues = ["{fa}:0", "{fb}:0"]

[role]
kind = "router"
fast_path = "userspace"

[metrics]
listen = "{METRICS}"
"#,
        fa = fa.ifname,
        fb = fb.ifname,
        ga = fa.ip,
        gb = fb.ip,
        cpu = last_cpu(),
    )
}

/// The server on `b`, behind the router's `gw`.
fn server_text(b: &End, gw: &End) -> String {
    format!(
        r#"# xdpos demo: the server in namespace B, at its own address beside B's kernel.
[[interfaces]]
name = "{b}"
addresses = ["{SERVER_IP}/24"]

[[workers]]
cpu = 0
queues = ["{b}:0"]

[role]
kind = "server"

[[routes]]
prefix = "0.0.0.0/0"
via = "{gw}"

[[services]]
kind = "udp-echo"
listen = "{SERVER_IP}:{UDP_PORT}"

[[services]]
kind = "http"
listen = "{SERVER_IP}:{HTTP_PORT}"
body = {HTTP_BODY:?}

[[services]]
kind = "iperf3"
listen = "{SERVER_IP}:{IPERF_PORT}"

[metrics]
listen = "{METRICS}"
"#,
        b = b.ifname,
        gw = gw.ip,
    )
}

fn last_cpu() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).saturating_sub(1)
}

/// A temporary directory, removed on drop.
#[derive(Debug)]
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> anyhow::Result<TempDir> {
        let p = std::env::temp_dir().join(format!("xdpos-demo-{}", std::process::id()));
        std::fs::create_dir_all(&p).with_context(|| format!("create {}", p.display()))?;
        Ok(TempDir(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Child processes, stopped on drop (SIGTERM, then SIGKILL after a grace period).
#[derive(Debug, Default)]
struct Procs(Vec<(String, Child)>);

impl Procs {
    fn add(&mut self, name: &str, child: Child) -> usize {
        self.0.push((name.to_string(), child));
        self.0.len() - 1
    }

    /// SIGTERM to process `i`, then waits up to `limit` for it to exit (SIGKILL after).
    fn stop(&mut self, i: usize, limit: Duration) -> Option<std::process::ExitStatus> {
        let (_, c) = &mut self.0[i];
        if let Ok(Some(st)) = c.try_wait() {
            return Some(st);
        }
        if let Some(pid) = rustix::process::Pid::from_raw(c.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = c.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
        None
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for i in (0..self.0.len()).rev() {
            self.stop(i, Duration::from_secs(5));
        }
    }
}

/// `program args…` in namespace `ns`.
fn in_ns(ns: &Netns, program: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns.name()]).arg(program).args(args);
    cmd
}

/// Starts `xdpos run --config FILE` in `ns`; returns its index in `procs` and its stdout lines
/// (read to the end) once it printed its `ready:` line (stderr, its log, goes to `log`).
fn start_daemon(
    procs: &mut Procs,
    ns: &Netns,
    name: &str,
    config: &Path,
    log: &Path,
) -> anyhow::Result<(usize, Arc<Mutex<Vec<String>>>)> {
    let exe = std::env::current_exe().context("the xdpos executable")?;
    let cfg = config.to_string_lossy();
    let logf = std::fs::File::create(log).with_context(|| format!("create {}", log.display()))?;
    let mut child = in_ns(ns, &exe, &["run", "--config", &cfg])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(logf)
        .spawn()
        .with_context(|| format!("start the {name} daemon"))?;
    let out = child.stdout.take().context("daemon stdout")?;
    let i = procs.add(name, child);
    let (tx, rx) = mpsc::channel();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let keep = Arc::clone(&lines);
    // Reads stdout to its end (a daemon whose stdout closed would fail on its exit lines).
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line.clone());
            if let Ok(mut v) = keep.lock() {
                v.push(line);
            }
        }
    });
    let deadline = Instant::now() + DAEMON_LIMIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) if l.starts_with("ready:") => {
                println!("  {name}: {l}");
                return Ok((i, lines));
            }
            Ok(_) => {}
            Err(_) => {
                let log = std::fs::read_to_string(log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                bail!(
                    "the {name} daemon did not become ready within {DAEMON_LIMIT:?}; its log:\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
        }
    }
}

/// Client-side totals, shared with the printer.
#[derive(Debug, Default)]
struct Totals {
    udp_sent: AtomicU64,
    udp_echoed: AtomicU64,
    udp_corrupt: AtomicU64,
    http_ok: AtomicU64,
    http_other: AtomicU64,
    curl_runs: AtomicU64,
    curl_failures: AtomicU64,
    /// iperf3's last interval, kbit/s.
    iperf_kbps: AtomicU64,
}

/// Runs the demo.
pub fn run(args: &DemoArgs) -> anyhow::Result<()> {
    let stop = Stop::on_signals()?;
    let stale = crate::rig::sweep_stale();
    if stale > 0 {
        println!("removed {stale} namespaces left by an earlier run");
    }
    let chain = Chain::new("demo", &ChainOpts::default())
        .context("build the namespace rig (needs root, iproute2 and ethtool)")?;
    println!(
        "rig: A {} (kernel client) --{}/{}-- F (xdpos router {} | {}) --{}/{}-- B {} (kernel) \
         + {} (xdpos server)",
        chain.a.ip,
        chain.a.ifname,
        chain.fa.ifname,
        chain.fa.ip,
        chain.fb.ip,
        chain.fb.ifname,
        chain.b.ifname,
        chain.b.ip,
        SERVER_IP
    );
    let dir = TempDir::new()?;
    let (rcfg, scfg) = (dir.0.join("router.toml"), dir.0.join("server.toml"));
    std::fs::write(&rcfg, router_text(&chain.fa, &chain.fb))?;
    std::fs::write(&scfg, server_text(&chain.b, &chain.fb))?;
    println!("configurations: {} and {}", rcfg.display(), scfg.display());
    let mut procs = Procs::default();
    println!("starting the daemons (xdpos run --config FILE):");
    let (router, router_out) =
        start_daemon(&mut procs, &chain.ns_f, "router", &rcfg, &dir.0.join("router.log"))?;
    let (server, server_out) =
        start_daemon(&mut procs, &chain.ns_b, "server", &scfg, &dir.0.join("server.log"))?;
    println!("metrics (Prometheus text format), from the daemons' namespaces:");
    for ns in [&chain.ns_f, &chain.ns_b] {
        println!("  ip netns exec {} curl -s http://{METRICS}/metrics", ns.name());
    }

    // One-shot checks: ARP and ping to and through the router.
    let mut failures: Vec<String> = Vec::new();
    for (what, ip) in [
        ("the xdpos router itself", chain.fa.ip),
        ("B's kernel, through the router", chain.b.ip),
        ("the xdpos server, through the router", SERVER_IP),
    ] {
        match chain.ns_a.sh(&format!("ping -c 3 -i 0.2 -W 2 {ip} | tail -2 | head -1")) {
            Ok(out) => println!("ping {ip} ({what}): {}", out.trim()),
            Err(e) => {
                println!("ping {ip} ({what}) FAILED: {e}");
                failures.push(format!("ping {ip}"));
            }
        }
    }
    let url = format!("http://{SERVER_IP}:{HTTP_PORT}/");
    match chain.ns_a.sh(&format!("curl -sS -i --max-time 5 {url}")) {
        Ok(out) => {
            println!("curl -i {url}:");
            for l in out.lines() {
                println!("  | {l}");
            }
        }
        Err(e) => {
            println!("curl {url} FAILED: {e}");
            failures.push("curl".into());
        }
    }

    // The load: UDP echo, curl, iperf3, for --seconds.
    let secs = args.seconds.max(1);
    println!("driving traffic for {secs} s (Ctrl-C ends it early):");
    let t = Arc::new(Totals::default());
    let rtts = Mutex::new(Vec::<u32>::with_capacity(1 << 16));
    let end = Instant::now() + Duration::from_secs(secs);
    let size = args.size.clamp(8, 1472);
    let (server_ip, iperf_port, iperf_secs) =
        (SERVER_IP.to_string(), IPERF_PORT.to_string(), secs.to_string());
    let iperf_args =
        ["-c", &server_ip, "-p", &iperf_port, "-t", &iperf_secs, "-i", "1", "--forceflush"];
    let mut iperf = in_ns(&chain.ns_a, Path::new("iperf3"), &iperf_args)
        .args(["-f", "k"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("start iperf3 -c (is iperf3 installed? scripts/setup.sh installs it)")?;
    let iperf_out = iperf.stdout.take().context("iperf3 stdout")?;
    let mut iperf_err = iperf.stderr.take().context("iperf3 stderr")?;
    let iperf_i = procs.add("iperf3", iperf);
    let iperf_lines = Arc::new(Mutex::new(Vec::<String>::new()));
    {
        let (t, lines) = (Arc::clone(&t), Arc::clone(&iperf_lines));
        std::thread::spawn(move || {
            for l in std::io::BufReader::new(iperf_out).lines().map_while(Result::ok) {
                if let Some(k) = iperf_rate_kbps(&l) {
                    t.iperf_kbps.store(k, Ordering::Relaxed);
                }
                if let Ok(mut v) = lines.lock() {
                    v.push(l);
                }
            }
        });
    }
    std::thread::scope(|s| -> anyhow::Result<()> {
        let udp = s.spawn(|| {
            chain.ns_a.run_in(|| {
                udp_clients(
                    SocketAddrV4::new(SERVER_IP, UDP_PORT),
                    chain.a.ip,
                    size,
                    args.rate,
                    end,
                    &stop,
                    &t,
                    &rtts,
                )
            })
        });
        let http = s.spawn(|| curl_loop(&chain.ns_a, &url, end, &stop, &t));
        let start = Instant::now();
        let mut last = start;
        let mut scrape_failed = false;
        while Instant::now() < end && !stop.requested() {
            stop.sleep(Duration::from_secs(1).saturating_sub(last.elapsed()));
            last = Instant::now();
            let mut r = rtts.lock().map(|mut v| std::mem::take(&mut *v)).unwrap_or_default();
            r.sort_unstable();
            let pct =
                |p: f64| r.get(((r.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(0);
            let mut metric = |ns: &Netns, name: &str| match scrape(ns, &[name]) {
                Ok(Some(v)) => format!("{v:.0} pkts"),
                Ok(None) => "-".to_string(),
                Err(e) => {
                    if !scrape_failed {
                        println!("  (metrics: {e})");
                        scrape_failed = true;
                    }
                    "-".to_string()
                }
            };
            let fwd = metric(&chain.ns_f, "xdpos_forwarded_packets_total");
            let srv = metric(&chain.ns_b, "xdpos_rx_packets_total");
            println!(
                "t={:>2}s udp echo: sent {} echoed {} rtt p50 {} us p99 {} us | http: {} ok | \
                 iperf3: {:.1} Mbit/s | router forwarded {} | server rx {}",
                start.elapsed().as_secs(),
                t.udp_sent.load(Ordering::Relaxed),
                t.udp_echoed.load(Ordering::Relaxed),
                pct(0.5),
                pct(0.99),
                t.http_ok.load(Ordering::Relaxed),
                t.iperf_kbps.load(Ordering::Relaxed) as f64 / 1000.0,
                fwd,
                srv,
            );
        }
        udp.join()
            .map_err(|_| anyhow::anyhow!("the UDP client panicked"))?
            .context("enter namespace A")?
            .context("kernel UDP clients")?;
        http.join().map_err(|_| anyhow::anyhow!("the curl loop panicked"))?;
        Ok(())
    })?;
    let interrupted = stop.requested() && Instant::now() < end;

    // iperf3 ends by itself after --seconds (its results exchange follows the data).
    let iperf_status = if interrupted {
        procs.stop(iperf_i, Duration::from_secs(2))
    } else {
        wait_exit(&mut procs, iperf_i, Duration::from_secs(10))
    };
    let mut err = String::new();
    let _ = iperf_err.read_to_string(&mut err);
    let lines = iperf_lines.lock().map(|v| v.clone()).unwrap_or_default();
    let iperf_summary: Vec<&String> =
        lines.iter().filter(|l| l.contains("sender") || l.contains("receiver")).collect();

    // Stop the daemons: SIGTERM drains, detaches and exits 0.
    println!("stopping the daemons (SIGTERM):");
    let mut daemons_ok = true;
    for (name, i, ns, out) in
        [("server", server, &chain.ns_b, &server_out), ("router", router, &chain.ns_f, &router_out)]
    {
        let st = procs.stop(i, DAEMON_LIMIT);
        // What it printed after `ready:` (its per-worker lines at exit).
        std::thread::sleep(Duration::from_millis(100));
        let lines = out.lock().map(|v| v.clone()).unwrap_or_default();
        for l in lines.iter().skip_while(|l| !l.starts_with("ready:")).skip(1) {
            println!("    {name}: {l}");
        }
        let attached = ns.sh("ip -d link show").map(|s| s.contains("prog/xdp")).unwrap_or(true);
        println!(
            "  {name}: {}, XDP program {}",
            st.map_or("did not exit in time (killed)".into(), |s| s.to_string()),
            if attached { "STILL ATTACHED" } else { "detached" }
        );
        if !st.is_some_and(|s| s.success()) {
            let log = std::fs::read_to_string(dir.0.join(format!("{name}.log")));
            let log = log.unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(12).collect();
            for l in tail.into_iter().rev() {
                println!("    {name} log: {l}");
            }
        }
        daemons_ok &= st.is_some_and(|s| s.success()) && !attached;
    }
    drop(procs);

    let (sent, echoed, corrupt) = (
        t.udp_sent.load(Ordering::Relaxed),
        t.udp_echoed.load(Ordering::Relaxed),
        t.udp_corrupt.load(Ordering::Relaxed),
    );
    let (ok, other) = (t.http_ok.load(Ordering::Relaxed), t.http_other.load(Ordering::Relaxed));
    let curl_fail = t.curl_failures.load(Ordering::Relaxed);
    println!("summary:");
    println!(
        "  UDP echo: sent {sent}, echoed {echoed} ({} lost), corrupted {corrupt}",
        sent.saturating_sub(echoed)
    );
    println!(
        "  HTTP: {ok} responses 200, {other} other, {} curl runs ({curl_fail} failed)",
        t.curl_runs.load(Ordering::Relaxed)
    );
    for l in &iperf_summary {
        println!("  iperf3: {}", l.trim());
    }
    if iperf_summary.is_empty() {
        let status = iperf_status.map_or("killed".into(), |s| s.to_string());
        println!("  iperf3: no result ({status}) {}", err.trim());
    }
    drop(chain);
    drop(dir);
    println!("  rig and temporary files removed");
    if interrupted {
        println!("interrupted");
        return Ok(());
    }
    // The datagrams share the path with iperf3's full-rate TCP stream: a few may be lost to a
    // full ring, as on any congested link; a corrupted one, or more than 1% lost, is a failure.
    if sent == 0 || echoed * 100 < sent * 99 || corrupt > 0 {
        failures.push(format!("UDP echo: sent {sent}, echoed {echoed}, corrupted {corrupt}"));
    }
    if ok == 0 || other > 0 || curl_fail > 0 {
        failures.push(format!("HTTP: {ok} ok, {other} other, {curl_fail} failed curl runs"));
    }
    if !iperf_status.is_some_and(|s| s.success()) || iperf_summary.is_empty() {
        failures.push("iperf3 did not complete".into());
    }
    if !daemons_ok {
        failures.push("a daemon did not exit 0 with its XDP program detached".into());
    }
    if !failures.is_empty() {
        bail!("demo failed: {}", failures.join("; "));
    }
    println!(
        "ok: the xdpos router forwarded every flow, and the xdpos server answered ping, UDP \
         echo, HTTP and iperf3"
    );
    Ok(())
}

fn wait_exit(procs: &mut Procs, i: usize, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Some(st)) = procs.0[i].1.try_wait() {
            return Some(st);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    procs.stop(i, Duration::from_secs(2))
}

/// The bitrate of an iperf3 interval line in kbit/s (`-f k`: `… 12345 Kbits/sec`).
fn iperf_rate_kbps(line: &str) -> Option<u64> {
    if line.contains("sender") || line.contains("receiver") {
        return None;
    }
    let w: Vec<&str> = line.split_whitespace().collect();
    let i = w.iter().position(|x| *x == "Kbits/sec")?;
    w.get(i.checked_sub(1)?)?.parse::<f64>().ok().map(|k| k as u64)
}

/// Sums the samples of the given metric families at `ns`'s metrics endpoint (`Ok(None)` if it
/// has none of them).
fn scrape(ns: &Netns, names: &[&str]) -> Result<Option<f64>, String> {
    let body = ns
        .run_in(|| -> std::io::Result<String> {
            let addr = METRICS.parse().map_err(std::io::Error::other)?;
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(300))?;
            s.set_read_timeout(Some(Duration::from_millis(500)))?;
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n\r\n")?;
            let mut out = Vec::new();
            s.read_to_end(&mut out)?;
            Ok(String::from_utf8_lossy(&out).into_owned())
        })
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("GET http://{METRICS}/metrics in {}: {e}", ns.name()))?;
    let mut sum = None;
    for l in body.lines() {
        let name = l.split(['{', ' ']).next().unwrap_or("");
        if names.contains(&name) {
            if let Some(v) = l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
                *sum.get_or_insert(0.0) += v;
            }
        }
    }
    Ok(sum)
}

/// `curl` in namespace A, fetching `url` 20 times per run over one keep-alive connection,
/// until `end`; counts the status codes.
fn curl_loop(ns: &Netns, url: &str, end: Instant, stop: &Stop, t: &Totals) {
    // `-o` applies to one URL: one per URL, or the bodies would mix with the codes.
    let urls: Vec<&str> = std::iter::repeat_n(["-o", "/dev/null", url], 20).flatten().collect();
    while Instant::now() < end && !stop.requested() {
        let out = Command::new("ip")
            .args(["netns", "exec", ns.name(), "curl", "-s", "--max-time", "5"])
            .args(["-w", "%{http_code}\\n"])
            .args(&urls)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output();
        t.curl_runs.fetch_add(1, Ordering::Relaxed);
        match out {
            Ok(o) => {
                if !o.status.success() {
                    t.curl_failures.fetch_add(1, Ordering::Relaxed);
                }
                for code in String::from_utf8_lossy(&o.stdout).lines() {
                    let c = if code.trim() == "200" { &t.http_ok } else { &t.http_other };
                    c.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(_) => {
                t.curl_failures.fetch_add(1, Ordering::Relaxed);
            }
        }
        stop.sleep(Duration::from_millis(100));
    }
}

/// Kernel UDP clients in namespace A: paced sends from several sockets (several flows),
/// reading the echoes and timing them.
#[allow(clippy::too_many_arguments)]
fn udp_clients(
    dst: SocketAddrV4,
    src: Ipv4Addr,
    size: usize,
    rate: u32,
    end: Instant,
    stop: &Stop,
    t: &Totals,
    rtts: &Mutex<Vec<u32>>,
) -> anyhow::Result<()> {
    let socks: Vec<UdpSocket> = (0..UDP_CLIENTS)
        .map(|_| {
            let s = UdpSocket::bind(SocketAddrV4::new(src, 0))?;
            s.set_nonblocking(true)?;
            Ok(s)
        })
        .collect::<std::io::Result<_>>()?;
    let start = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let mut pending: Vec<VecDeque<(u64, Instant)>> = vec![VecDeque::new(); UDP_CLIENTS];
    let mut seq = 0u64;
    let mut buf = vec![0u8; 2048];
    let mut payload = vec![0u8; size];
    // Stop sending at the end, then give the last echoes a moment.
    let drain_until = end + Duration::from_millis(500);
    while Instant::now() < drain_until && !stop.requested() {
        let now = Instant::now();
        while now < end && start + interval.mul_f64(seq as f64) <= now {
            let i = (seq as usize) % UDP_CLIENTS;
            payload[..8].copy_from_slice(&seq.to_be_bytes());
            for (j, b) in payload.iter_mut().enumerate().skip(8) {
                *b = (seq as usize + j) as u8;
            }
            if socks[i].send_to(&payload, dst).is_ok() {
                pending[i].push_back((seq, Instant::now()));
                t.udp_sent.fetch_add(1, Ordering::Relaxed);
            }
            seq += 1;
        }
        for (i, s) in socks.iter().enumerate() {
            while let Ok(n) = s.recv(&mut buf) {
                let got = &buf[..n];
                let s_no = u64::from_be_bytes(got[..8.min(n)].try_into().unwrap_or_default());
                let ok = n == size
                    && got.iter().enumerate().skip(8).all(|(j, &b)| b == (s_no as usize + j) as u8);
                if !ok {
                    t.udp_corrupt.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                while let Some(&(p, sent_at)) = pending[i].front() {
                    pending[i].pop_front();
                    if p == s_no {
                        t.udp_echoed.fetch_add(1, Ordering::Relaxed);
                        if let Ok(mut v) = rtts.lock() {
                            v.push(sent_at.elapsed().as_micros() as u32);
                        }
                        break;
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iperf3_interval_lines_give_their_rate() {
        let l = "[  5]   1.00-2.00   sec   112 MBytes  939520 Kbits/sec    0    512 KBytes";
        assert_eq!(iperf_rate_kbps(l), Some(939_520));
        let s = "[  5]   0.00-3.00   sec   336 MBytes  939520 Kbits/sec    0             sender";
        assert_eq!(iperf_rate_kbps(s), None);
        assert_eq!(iperf_rate_kbps("Connecting to host 10.0.2.3, port 5201"), None);
    }

    #[test]
    fn the_built_in_configurations_validate() {
        let chain_like = |cfg: String| {
            xdpos_config::load(&cfg, &xdpos_config::Host::unknown())
                .unwrap_or_else(|e| panic!("{e}\n{cfg}"))
        };
        // The rig's names and addresses, without building it.
        let opts = ChainOpts::default();
        let end = |ifname: &str, ip: Ipv4Addr| crate::rig::End {
            ifname: ifname.into(),
            mac: [2, 0, 0, 0, 1, 1],
            ip,
        };
        let (ga, gb) = opts.gateways.unwrap();
        let fake =
            FakeChain { fa: end("xf0", ga), fb: end("xf1", gb), b: end("xb0", opts.b_cidr.0) };
        let r = chain_like(fake.router());
        assert_eq!(r.interfaces.len(), 2);
        let s = chain_like(fake.server());
        assert_eq!(s.services.len(), 3);
        assert_eq!(s.services[1].body.as_deref(), Some(HTTP_BODY));
    }

    /// The parts of a [`Chain`] the configurations use.
    struct FakeChain {
        fa: crate::rig::End,
        fb: crate::rig::End,
        b: crate::rig::End,
    }

    impl FakeChain {
        fn router(&self) -> String {
            router_text(&self.fa, &self.fb)
        }
        fn server(&self) -> String {
            server_text(&self.b, &self.fb)
        }
    }
}
