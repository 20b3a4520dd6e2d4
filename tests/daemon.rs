//! The daemon (`xdpos run --config FILE`, `xdpos check-config FILE`) as users run it: the real
//! binary on the namespace rig, the Linux kernel as every peer. Covered: `check-config` on the
//! shipped examples, on a file with many problems (every one printed with its path and value,
//! exit 2) and against a namespace's real interfaces; `run` refusing a bad file the same way
//! without touching anything; each role end to end (router: kernel ping and UDP through it;
//! cross-connect: frames unchanged; server: UDP echo and TCP echo from kernel clients); two
//! workers on a two-queue veth each serving their own flows; SIGHUP with an invalid file
//! keeping the old configuration serving; SIGHUP with a new route moving traffic; SIGHUP
//! changing services without dropping an established TCP connection; capabilities dropped in
//! every thread after setup; SIGTERM exiting 0 with nothing attached; `kill -9` then a fresh
//! start.
#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use rustix::process::Signal;
use xdpos::rig::{Chain, ChainOpts, Netns, Pair, PairOpts};
use xdpos_tests::*;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A configuration file in the temporary directory, removed on drop.
struct ConfigFile(PathBuf);

impl ConfigFile {
    fn new(text: &str) -> ConfigFile {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("xdpos-daemon-{}-{n}.toml", std::process::id()));
        std::fs::write(&p, text).unwrap();
        ConfigFile(p)
    }

    /// Replaces the content (what a SIGHUP then reads).
    fn write(&self, text: &str) {
        std::fs::write(&self.0, text).unwrap();
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs `cmd` to completion (bounded), returning (exit code, stdout, stderr).
fn run_bounded(mut cmd: Command, limit: Duration) -> (Option<i32>, String, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let o = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let e = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Ok(Some(st)) = child.try_wait() {
            break Some(st);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (o, e) = (o.join().unwrap(), e.join().unwrap());
    assert!(status.is_some(), "did not exit within {limit:?}: {o}\n{e}");
    (status.and_then(|s| s.code()), o, e)
}

fn check_config(ns: Option<&Netns>, args: &[&str]) -> (Option<i32>, String, String) {
    let mut cmd = match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns.name()]).arg(xdpos_bin());
            c
        }
        None => Command::new(xdpos_bin()),
    };
    cmd.arg("check-config").args(args);
    run_bounded(cmd, DEADLINE)
}

/// Starts `xdpos run --config` in `ns` and waits for its `ready:` line.
fn start_daemon(ns: &Netns, cfg: &ConfigFile) -> Child {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns.name()])
        .arg(xdpos_bin())
        .arg("run")
        .arg("--config")
        .arg(cfg.path());
    let mut child = Child::spawn(cmd);
    assert!(
        child.wait_line("ready:", DEADLINE).is_some(),
        "the daemon did not become ready: {:?}",
        child.seen
    );
    child
}

/// SIGHUP, then the daemon's `reload:` line.
fn reload(d: &mut Child) -> String {
    d.signal(Signal::HUP);
    d.wait_line("reload:", DEADLINE).unwrap_or_else(|| panic!("no reload line: {:?}", d.seen))
}

/// SIGTERM: exits 0, prints its worker lines and `stopped`; nothing stays attached in `ns`.
fn stop(d: &mut Child, ns: &Netns) -> Vec<String> {
    d.signal(Signal::TERM);
    let st = d.wait(DEADLINE).expect("exits after SIGTERM");
    assert_eq!(st.code(), Some(0), "{st:?}: {:?}", d.seen);
    assert!(d.seen.iter().any(|l| l == "stopped"), "{:?}", d.seen);
    for l in d.seen.iter().filter(|l| l.starts_with("worker ")) {
        assert!(l.contains("frames ok"), "frame accounting: {l}");
    }
    assert_no_xdp(ns);
    d.seen.clone()
}

/// `CapEff` of every thread of process `pid`.
fn cap_eff(pid: u32) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let t = t.unwrap();
        let status = std::fs::read_to_string(t.path().join("status")).unwrap();
        let name = status.lines().next().unwrap_or("").to_string();
        let eff = status
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
            .unwrap();
        out.push((name, eff));
    }
    out
}

/// `curl` of the daemon's metrics endpoint in `ns` (the default 127.0.0.1:9464): the body of
/// `/metrics`, or the status code of anything else.
fn scrape(ns: &Netns, path: &str) -> String {
    let url = format!("http://127.0.0.1:9464{path}");
    let cmd = if path == "/metrics" {
        format!("curl -s -m 5 {url}")
    } else {
        format!("curl -s -m 5 -o /dev/null -w '%{{http_code}}' {url}")
    };
    ns.sh(&cmd).unwrap_or_else(|e| panic!("{cmd}: {e}"))
}

/// Whether `ping` from `ns` reaches `dst` (3 probes, all answered).
fn pings(ns: &Netns, dst: Ipv4Addr) -> Result<String, String> {
    match ns.sh(&format!("ping -c 3 -i 0.2 -W 2 {dst} 2>&1")) {
        Ok(out) if out.contains("3 received") => Ok(out),
        Ok(out) => Err(out),
        Err(e) => Err(e.to_string()),
    }
}

/// A kernel UDP echo on `ip:port` in `ns` for `n` datagrams (or the deadline), in a thread.
fn kernel_udp_echo<'scope>(
    s: &'scope std::thread::Scope<'scope, '_>,
    ns: &Netns,
    ip: Ipv4Addr,
    port: u16,
    n: u32,
) -> std::sync::mpsc::Receiver<()> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let ns = Netns::existing(ns.name());
    s.spawn(move || udp_echo(&ns, ip, port, n, ready_tx));
    ready_rx
}

/// A field `name N` of a worker line.
fn field(line: &str, name: &str) -> u64 {
    let at = line.find(&format!("{name} ")).unwrap_or_else(|| panic!("{name} in {line}"));
    line[at + name.len() + 1..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{name} in {line}"))
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/examples")
}

#[test]
fn check_config_accepts_the_examples_and_prints_every_problem() {
    sweep();
    let mut checked = 0;
    for entry in std::fs::read_dir(examples()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let role = ["router", "xconnect", "server"]
            .into_iter()
            .find(|r| text.contains(&format!("kind = \"{r}\"")))
            .unwrap_or("server");
        let (code, out, err) = check_config(None, &["--no-host", path.to_str().unwrap()]);
        assert_eq!(code, Some(0), "{}: {out}{err}", path.display());
        assert!(out.contains(&format!("ok: {role}:")), "{out}");
        checked += 1;
    }
    assert!(checked >= 4, "router, server, web, xconnect: {checked}");
    // Many problems at once: each with its path and value, exit 2.
    let bad = ConfigFile::new(
        r#"
[[interfaces]]
name = "nothere0"
addresses = ["10.0.0.300/24"]

[[workers]]
cpu = 99
queues = ["eth9:0"]

[role]
kind = "server"

[[routes]]
prefix = "10.1.0.1/16"
via = "10.0.0.254"

[[services]]
kind = "udp-echo"
listen = "10.0.0.9:7"
"#,
    );
    let (code, _, err) = check_config(None, &[bad.path().to_str().unwrap()]);
    assert_eq!(code, Some(2), "{err}");
    for want in [
        "interfaces[0].addresses[0]: \"10.0.0.300/24\" is not an IPv4 address",
        "workers[0].cpu: core 99 does not exist",
        "workers[0].queues[0]: \"eth9:0\" names interface \"eth9\", which is not configured",
        "routes[0].prefix: \"10.1.0.1/16\" has host bits set (did you mean 10.1.0.0/16?)",
        "services[0].listen: \"10.0.0.9:7\" is not an address of the appliance",
        "interfaces[0].name: no interface named \"nothere0\" on this host",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    // A misspelt key is an error with its line, not silently ignored.
    let typo = ConfigFile::new("[role]\nkind = \"router\"\ncolour = \"red\"\n");
    let (code, _, err) = check_config(None, &["--no-host", typo.path().to_str().unwrap()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("line 3") && err.contains("unknown field `colour`"), "{err}");
    // Against a namespace's real interfaces: its veth exists and has one queue.
    let pair = Pair::new("dcc", &PairOpts::default()).unwrap();
    let good = ConfigFile::new(&server_config("xb0", 1, "udp-echo", "10.0.0.2:7"));
    let (code, out, err) = check_config(Some(&pair.ns_b), &[good.path().to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("ok: server: 1 interface(s) (xb0), 1 worker(s)"), "{out}");
    let two = ConfigFile::new(&server_config("xb0", 2, "udp-echo", "10.0.0.2:7"));
    let (code, _, err) = check_config(Some(&pair.ns_b), &[two.path().to_str().unwrap()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("interfaces[0].queues: 2 queues asked for, but xb0 has 1"), "{err}");
}

/// A server on `iface` with `queues` queues (one worker each, CPUs 0 and 1 in turn) and one
/// service.
fn server_config(iface: &str, queues: u32, kind: &str, listen: &str) -> String {
    let mut s = format!(
        "[[interfaces]]\nname = \"{iface}\"\nqueues = {queues}\naddresses = [\"10.0.0.2/24\"]\n\
         frames = 2112\nring_size = 1024\n\n"
    );
    for q in 0..queues {
        s += &format!("[[workers]]\ncpu = {}\nqueues = [\"{iface}:{q}\"]\n\n", q % 2);
    }
    s += &format!(
        "[role]\nkind = \"server\"\n\n[[services]]\nkind = \"{kind}\"\nlisten = \"{listen}\"\n"
    );
    s
}

#[test]
fn run_refuses_an_invalid_file_with_every_problem_and_touches_nothing() {
    sweep();
    let pair = Pair::new("dbad", &PairOpts::default()).unwrap();
    let bad = ConfigFile::new(&server_config("xb0", 1, "tcp-echo", "10.0.0.77:7"));
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", pair.ns_b.name()])
        .arg(xdpos_bin())
        .args(["run", "--config"])
        .arg(bad.path());
    let (code, out, err) = run_bounded(cmd, DEADLINE);
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(
        err.contains("services[0].listen: \"10.0.0.77:7\" is not an address of the appliance"),
        "{err}"
    );
    assert!(!out.contains("ready:"), "{out}");
    assert_no_xdp(&pair.ns_b);
}

/// The router with the default fast path (`auto`: XDP on veth, which binds in copy mode).
fn router_config(routes: &str) -> String {
    router_config_with("auto", routes)
}

/// The router on F's veths (10.0.1.1/24 toward A, 10.0.2.1/24 toward B), one worker on CPU 1,
/// with `fast_path` (`auto`, the default, is left out of the file) and `routes` appended.
fn router_config_with(fast_path: &str, routes: &str) -> String {
    let ifaces = [("xf0", Ipv4Addr::new(10, 0, 1, 1)), ("xf1", Ipv4Addr::new(10, 0, 2, 1))];
    let fast_path = (fast_path != "auto").then_some(fast_path);
    router_toml(&ifaces, Some(2112), 1, fast_path) + routes
}

/// With the default fast path between plain kernel peers (no XDP program, no GRO on A's and
/// B's veths): `auto` takes XDP on veth, finds that neither veth accepts redirected frames, and
/// forwards to them in userspace (docs/forwarding.md, "veth").
#[test]
fn router_forwards_kernel_traffic_reloads_routes_and_drops_its_capabilities() {
    router_case("auto");
}

/// The same with the XDP fast path (known routes forwarded in the XDP program, the rest punted
/// to the library OS). veth delivers a frame redirected into it only if the receiving end has
/// NAPI on, so A's and B's veths get GRO (forward_xdp.rs gives them a pass program instead).
#[test]
fn router_with_the_xdp_fast_path_forwards_and_reloads_routes() {
    router_case("xdp");
}

fn router_case(fast_path: &str) {
    sweep();
    let chain =
        Chain::new(if fast_path == "xdp" { "drx" } else { "drt" }, &ChainOpts::default()).unwrap();
    // B also answers for 10.9.0.1, which the router learns a route to only on reload.
    chain.ns_b.sh("ip addr add 10.9.0.1/32 dev lo").unwrap();
    if fast_path == "xdp" {
        chain.ns_a.sh("ethtool -K xa0 gro on >/dev/null").unwrap();
        chain.ns_b.sh("ethtool -K xb0 gro on >/dev/null").unwrap();
    }
    let router_config = |routes: &str| router_config_with(fast_path, routes);
    let far = Ipv4Addr::new(10, 9, 0, 1);
    let cfg = ConfigFile::new(&router_config(""));
    let mut d = start_daemon(&chain.ns_f, &cfg);
    let pid = d.child.id();

    // Through it: ping and UDP (kernel echo in B), both ways resolved by ARP.
    pings(&chain.ns_a, chain.b.ip).unwrap_or_else(|e| panic!("ping through: {e}"));
    let got = std::thread::scope(|s| {
        let ready = kernel_udp_echo(s, &chain.ns_b, chain.b.ip, 9000, 50);
        ready.recv_timeout(DEADLINE).unwrap();
        udp_echoes(&chain.ns_a, chain.a.ip, SocketAddrV4::new(chain.b.ip, 9000), 50, 1000)
    });
    assert_eq!(got, 50, "UDP through the router\n{}", chain.dump());
    assert!(pings(&chain.ns_a, far).is_err(), "no route to {far} yet");

    // After setup no thread keeps a capability.
    let caps = cap_eff(pid);
    assert!(caps.len() >= 2, "control thread and worker: {caps:?}");
    assert!(caps.iter().all(|(_, c)| *c == 0), "CapEff of every thread: {caps:x?}");

    // A new route moves traffic: 10.9.0.0/24 now goes to B.
    cfg.write(&router_config("[[routes]]\nprefix = \"10.9.0.0/24\"\nvia = \"10.0.2.2\"\n"));
    let line = reload(&mut d);
    assert!(line.contains("reload: ok, generation 2"), "{line}");
    pings(&chain.ns_a, far).unwrap_or_else(|e| panic!("ping over the new route: {e}"));

    // An invalid file is refused, and generation 2 keeps serving (the new route included).
    cfg.write(&router_config("[[routes]]\nprefix = \"10.9.0.0/24\"\nvia = \"10.77.0.1\"\n"));
    let line = reload(&mut d);
    assert!(line.contains("reload: failed, generation 2 keeps serving"), "{line}");
    assert!(
        line.contains("routes[0].via: 10.77.0.1 is not inside any interface's prefix"),
        "{line}"
    );
    pings(&chain.ns_a, far).unwrap_or_else(|e| panic!("old configuration still routes: {e}"));
    pings(&chain.ns_a, chain.b.ip).unwrap_or_else(|e| panic!("still forwards: {e}"));

    // A change that needs a restart is refused too.
    cfg.write(&router_config("").replace("cpu = 1", "cpu = 0"));
    let line = reload(&mut d);
    assert!(line.contains("workers changed: that needs a restart"), "{line}");

    let lines = stop(&mut d, &chain.ns_f);
    let w = lines.iter().find(|l| l.starts_with("worker 0")).expect("worker line");
    if fast_path == "auto" {
        // Both ports' redirects switched off: the workers forwarded everything.
        assert!(field(w, "forwarded") >= 100, "{w}");
    } else {
        // Most of it went through the XDP program; the worker saw the punted packets only.
        assert!(field(w, "forwarded") < 100, "{w}");
    }
}

#[test]
fn router_serves_udp_and_tcp_on_its_own_addresses_and_reloads_them() {
    sweep();
    let chain = Chain::new("drs", &ChainOpts::default()).unwrap();
    let services = "[[services]]\nkind = \"udp-echo\"\nlisten = \"10.0.1.1:7\"\n\n\
                    [[services]]\nkind = \"tcp-echo\"\nlisten = \"0.0.0.0:7\"\n";
    let cfg = ConfigFile::new(&(router_config("") + services));
    let mut d = start_daemon(&chain.ns_f, &cfg);
    let router_a = SocketAddrV4::new(Ipv4Addr::new(10, 0, 1, 1), 7);
    assert_eq!(udp_echoes(&chain.ns_a, chain.a.ip, router_a, 30, 500), 30, "UDP echo on 10.0.1.1");
    // TCP echo on both of its addresses, one of them across the router from A.
    for ip in [Ipv4Addr::new(10, 0, 1, 1), Ipv4Addr::new(10, 0, 2, 1)] {
        let mut s = chain
            .ns_a
            .run_in(|| TcpStream::connect_timeout(&SocketAddrV4::new(ip, 7).into(), DEADLINE))
            .unwrap()
            .unwrap_or_else(|e| panic!("connect {ip}:7: {e}"));
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 13) as u8).collect();
        assert_eq!(echo_round(&mut s, &data), data, "TCP echo on {ip}");
    }
    pings(&chain.ns_a, chain.b.ip).unwrap_or_else(|e| panic!("still routes: {e}"));
    // A reload adds an HTTP service on B's side of the router.
    cfg.write(
        &(router_config("")
            + services
            + "\n[[services]]\nkind = \"http\"\nlisten = \"10.0.2.1:80\"\nbody = \"router\\n\"\n"),
    );
    let line = reload(&mut d);
    assert!(line.contains("reload: ok, generation 2"), "{line}");
    assert_eq!(chain.ns_b.sh("curl -s -m 5 http://10.0.2.1/").unwrap(), "router\n");
    stop(&mut d, &chain.ns_f);
}

#[test]
fn xconnect_passes_frames_unchanged() {
    sweep();
    let opts = ChainOpts {
        a_cidr: (Ipv4Addr::new(10, 0, 0, 1), 24),
        b_cidr: (Ipv4Addr::new(10, 0, 0, 2), 24),
        gateways: None,
        ..ChainOpts::default()
    };
    let chain = Chain::new("dxc", &opts).unwrap();
    let cfg = ConfigFile::new(
        "[[interfaces]]\nname = \"xf0\"\nframes = 2112\nring_size = 1024\n\n\
         [[interfaces]]\nname = \"xf1\"\nframes = 2112\nring_size = 1024\n\n\
         [[workers]]\ncpu = 0\nqueues = [\"xf0:0\", \"xf1:0\"]\n\n\
         [role]\nkind = \"xconnect\"\n\n[[role.xconnect]]\na = \"xf0\"\nb = \"xf1\"\n",
    );
    let mut d = start_daemon(&chain.ns_f, &cfg);
    // ARP crosses it and the TTL is untouched (a router would make it 63).
    let ping = pings(&chain.ns_a, chain.b.ip).unwrap_or_else(|e| panic!("{e}\n{}", chain.dump()));
    assert!(ping.contains("ttl=64"), "{ping}");
    let got = std::thread::scope(|s| {
        let ready = kernel_udp_echo(s, &chain.ns_b, chain.b.ip, 9000, 50);
        ready.recv_timeout(DEADLINE).unwrap();
        udp_echoes(&chain.ns_a, chain.a.ip, SocketAddrV4::new(chain.b.ip, 9000), 50, 1400)
    });
    assert_eq!(got, 50);
    let lines = stop(&mut d, &chain.ns_f);
    let w = lines.iter().find(|l| l.starts_with("worker 0")).expect("worker line");
    assert!(w.contains("pair 0-1: a->b") && field(w, "forwarded") >= 106, "{w}");
}

/// Connects from A to `port` on B (10.0.0.2).
fn connect(pair: &Pair, port: u16) -> std::io::Result<TcpStream> {
    pair.ns_a
        .run_in(|| {
            let s = TcpStream::connect_timeout(
                &SocketAddrV4::new(pair.b.ip, port).into(),
                Duration::from_secs(3),
            )?;
            s.set_read_timeout(Some(Duration::from_secs(3)))?;
            Ok(s)
        })
        .unwrap()
}

/// Writes `data` and reads as many bytes back.
fn echo_round(s: &mut TcpStream, data: &[u8]) -> Vec<u8> {
    s.write_all(data).unwrap();
    let mut back = vec![0u8; data.len()];
    s.read_exact(&mut back).unwrap();
    back
}

/// A stalled worker (the test hook `XDPOS_TEST_STALL_WORKER` makes worker 0 sleep 2.5 s in its
/// loop, 1 s after it starts): the control thread prints `stalled: worker 0 (…)` and then
/// `resumed: worker 0`; meanwhile `/readyz` answers 503 and `/healthz` stays 200 (a stall is
/// not a dead worker); afterwards both are 200 and the daemon serves and stops cleanly.
#[test]
fn server_reports_a_stalled_worker_and_its_recovery() {
    sweep();
    let pair = Pair::new("dst", &PairOpts::default()).unwrap();
    let cfg = ConfigFile::new(&server_config("xb0", 1, "udp-echo", "10.0.0.2:7"));
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", pair.ns_b.name()])
        .arg(xdpos_bin())
        .args(["run", "--config"])
        .arg(cfg.path())
        .env(xdpos::worker::TEST_STALL_ENV, "0:1000:2500");
    let mut d = Child::spawn(cmd);
    assert!(d.wait_line("ready:", DEADLINE).is_some(), "not ready: {:?}", d.seen);
    let line = d
        .wait_line("stalled: worker 0", DEADLINE)
        .unwrap_or_else(|| panic!("no stalled line: {:?}", d.seen));
    assert!(line.starts_with("stalled: worker 0 (no heartbeat for 1."), "{line}");
    // Within the 2.5 s stall (the line comes at most 100 ms after the first second).
    let (ready, health) = (scrape(&pair.ns_b, "/readyz"), scrape(&pair.ns_b, "/healthz"));
    assert_eq!((ready.trim(), health.trim()), ("503", "200"), "during the stall");
    d.wait_line("resumed: worker 0", DEADLINE)
        .unwrap_or_else(|| panic!("no resumed line: {:?}", d.seen));
    assert_eq!(scrape(&pair.ns_b, "/readyz").trim(), "200", "after the stall");
    assert!(scrape(&pair.ns_b, "/metrics").contains("xdpos_worker_stalled{worker=\"0\"} 0\n"));
    let to = SocketAddrV4::new(pair.b.ip, 7);
    assert_eq!(udp_echoes(&pair.ns_a, pair.a.ip, to, 20, 100), 20, "UDP echo after the stall");
    stop(&mut d, &pair.ns_b);
}

fn server_two_services(extra: &str) -> String {
    server_config("xb0", 1, "udp-echo", "10.0.0.2:7")
        + "\n[[services]]\nkind = \"tcp-echo\"\nlisten = \"0.0.0.0:7\"\n"
        + "\n[[services]]\nkind = \"http\"\nlisten = \"10.0.0.2:80\"\nbody = \"hello daemon\\n\"\n"
        + extra
}

#[test]
fn server_answers_udp_and_tcp_and_reloads_services_keeping_connections() {
    sweep();
    let pair = Pair::new("dsv", &PairOpts::default()).unwrap();
    let cfg = ConfigFile::new(&server_two_services(""));
    let mut d = start_daemon(&pair.ns_b, &cfg);
    let to = SocketAddrV4::new(pair.b.ip, 7);
    assert_eq!(udp_echoes(&pair.ns_a, pair.a.ip, to, 50, 600), 50, "UDP echo");
    pings(&pair.ns_a, pair.b.ip).unwrap_or_else(|e| panic!("ping the server: {e}"));
    let mut conn = connect(&pair, 7).expect("TCP echo accepts");
    let data: Vec<u8> = (0..20_000u32).map(|i| (i * 7) as u8).collect();
    assert_eq!(echo_round(&mut conn, &data), data);
    let page = pair.ns_a.sh("curl -s -m 5 http://10.0.0.2/").unwrap();
    assert_eq!(page, "hello daemon\n");

    // Reload: TCP echo leaves port 7, a TCP sink opens on 9. The established echo connection
    // is kept and still echoes; a new connection to 7 is refused, one to 9 accepted.
    cfg.write(
        &(server_config("xb0", 1, "udp-echo", "10.0.0.2:7")
            + "\n[[services]]\nkind = \"tcp-sink\"\nlisten = \"10.0.0.2:9\"\n"),
    );
    let line = reload(&mut d);
    assert!(
        line.contains("reload: ok, generation 2") && line.contains("service(s) changed"),
        "{line}"
    );
    assert_eq!(echo_round(&mut conn, b"still here"), b"still here");
    let refused = connect(&pair, 7).expect_err("tcp-echo is gone");
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused, "{refused}");
    let mut sink = connect(&pair, 9).expect("tcp-sink accepts");
    sink.write_all(&data).unwrap();

    // An invalid file keeps generation 2 serving.
    cfg.write(&server_two_services(
        "\n[[services]]\nkind = \"udp-sink\"\nlisten = \"10.0.0.99:9\"\n",
    ));
    let line = reload(&mut d);
    assert!(line.contains("reload: failed, generation 2 keeps serving"), "{line}");
    assert!(line.contains("services[3].listen: \"10.0.0.99:9\""), "{line}");
    // The metrics say so too, and the server is still ready.
    let m = scrape(&pair.ns_b, "/metrics");
    for want in [
        "xdpos_ready 1",
        "xdpos_config_last_reload_successful 0",
        "xdpos_xsk_rx_dropped_total{",
        "worker=\"0\"",
    ] {
        assert!(m.contains(want), "{want} in /metrics:\n{m}");
    }
    assert_eq!(scrape(&pair.ns_b, "/readyz").trim(), "200");
    assert_eq!(scrape(&pair.ns_b, "/healthz").trim(), "200");
    assert_eq!(udp_echoes(&pair.ns_a, pair.a.ip, to, 20, 100), 20, "UDP echo after the refusal");
    assert_eq!(echo_round(&mut conn, b"and here"), b"and here");
    assert!(connect(&pair, 7).is_err(), "generation 2 has no tcp-echo");
    drop((conn, sink));

    let lines = stop(&mut d, &pair.ns_b);
    let w = lines.iter().find(|l| l.starts_with("worker 0")).expect("worker line");
    assert!(field(w, "echoed") >= 70 && field(w, "accepted") >= 2, "{w}");
}

/// Sixteen kernel sockets in A (different source ports: A's kernel spreads them over its two
/// transmit queues, which are B's receive queues on veth), ten UDP echo round trips each to
/// B's port 7: how many came back intact.
fn sixteen_flows(pair: &Pair) -> u32 {
    pair.ns_a
        .run_in(|| {
            let socks: Vec<_> = (0..16).map(|_| kernel_udp(pair.a.ip, 0)).collect();
            let mut buf = [0u8; 2048];
            let mut got = 0;
            for round in 0..10u32 {
                for (k, s) in socks.iter().enumerate() {
                    s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
                    let seq = round * 100 + k as u32;
                    s.send_to(&payload(seq, 300), SocketAddrV4::new(pair.b.ip, 7)).unwrap();
                    if let Ok(len) = s.recv(&mut buf) {
                        got += u32::from(check_payload(&buf[..len]) == Some(seq));
                    }
                }
            }
            got
        })
        .unwrap()
}

#[test]
fn two_workers_on_a_two_queue_veth_serve_their_own_flows() {
    sweep();
    let pair = Pair::new("dmq", &PairOpts { queues: 2, ..PairOpts::default() }).unwrap();
    let cfg = ConfigFile::new(&server_config("xb0", 2, "udp-echo", "0.0.0.0:7"));
    let mut d = start_daemon(&pair.ns_b, &cfg);
    let got = sixteen_flows(&pair);
    let lines = stop(&mut d, &pair.ns_b);
    assert_eq!(got, 160, "{lines:?}");
    let w0 = lines.iter().find(|l| l.starts_with("worker 0 (xb0:0)")).expect("worker 0");
    let w1 = lines.iter().find(|l| l.starts_with("worker 1 (xb0:1)")).expect("worker 1");
    let (e0, e1) = (field(w0, "echoed"), field(w1, "echoed"));
    assert!(e0 > 0 && e1 > 0 && e0 + e1 == 160, "both queues served flows:\n{w0}\n{w1}");
}

#[test]
fn one_worker_serves_both_queues_of_a_two_queue_veth_with_one_stack() {
    sweep();
    let pair = Pair::new("d1w", &PairOpts { queues: 2, ..PairOpts::default() }).unwrap();
    let text = server_config("xb0", 2, "udp-echo", "0.0.0.0:7")
        .replace("[[workers]]\ncpu = 1\nqueues = [\"xb0:1\"]\n\n", "")
        .replace("queues = [\"xb0:0\"]", "queues = [\"xb0:0\", \"xb0:1\"]");
    let cfg = ConfigFile::new(&text);
    let mut d = start_daemon(&pair.ns_b, &cfg);
    let got = sixteen_flows(&pair);
    // One stack: a TCP connection works whichever queue its segments arrive on.
    let cfg_tcp = text + "\n[[services]]\nkind = \"tcp-echo\"\nlisten = \"0.0.0.0:7\"\n";
    cfg.write(&cfg_tcp);
    assert!(reload(&mut d).contains("reload: ok"));
    let mut conn = connect(&pair, 7).expect("TCP echo accepts");
    let data: Vec<u8> = (0..50_000u32).map(|i| (i * 3) as u8).collect();
    assert_eq!(echo_round(&mut conn, &data), data);
    drop(conn);
    let lines = stop(&mut d, &pair.ns_b);
    assert_eq!(got, 160, "{lines:?}");
    let w = lines.iter().find(|l| l.starts_with("worker 0 (xb0:0,1)")).expect("worker 0");
    assert!(!lines.iter().any(|l| l.starts_with("worker 1")), "{lines:?}");
    assert_eq!(field(w, "echoed"), 160, "{w}");
    let per_queue = &w[w.find("rx per queue [").expect("per-queue rx") + 14..];
    let rx: Vec<u64> =
        per_queue.split(']').next().unwrap().split(", ").map(|n| n.parse().unwrap()).collect();
    assert!(rx.len() == 2 && rx[0] > 0 && rx[1] > 0, "both queues received: {w}");
}

#[test]
fn kill_9_leaves_nothing_attached_and_start_up_sweeps_a_netlink_leftover() {
    sweep();
    let pair = Pair::new("dk9", &PairOpts::default()).unwrap();
    let cfg = ConfigFile::new(&server_config("xb0", 1, "udp-echo", "10.0.0.2:7"));
    let to = SocketAddrV4::new(pair.b.ip, 7);
    let mut d = start_daemon(&pair.ns_b, &cfg);
    assert_eq!(udp_echoes(&pair.ns_a, pair.a.ip, to, 10, 100), 10);
    d.signal(Signal::KILL);
    assert!(d.wait(DEADLINE).is_some(), "killed");
    assert_no_xdp(&pair.ns_b);
    let mut d = start_daemon(&pair.ns_b, &cfg);
    assert_eq!(udp_echoes(&pair.ns_a, pair.a.ip, to, 10, 100), 10, "the fresh start serves");
    stop(&mut d, &pair.ns_b);

    // A killed instance with a legacy netlink attachment leaves its program behind; the
    // daemon's start-up sweep removes it (no process holds it) and starts.
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", pair.ns_b.name()]).arg(xdpos_bin()).args([
        "echo",
        "--interface",
        "xb0",
        "--addr",
        "10.0.0.2/24",
        "--attach",
        "netlink",
    ]);
    let mut old = Child::spawn(cmd);
    assert!(old.wait_line("ready:", DEADLINE).is_some(), "{:?}", old.seen);
    old.signal(Signal::KILL);
    assert!(old.wait(DEADLINE).is_some(), "killed");
    let links = pair.ns_b.sh("ip -d link show xb0").unwrap();
    assert!(links.contains("prog/xdp"), "the netlink attachment outlives its process: {links}");
    let mut d = start_daemon(&pair.ns_b, &cfg);
    assert_eq!(udp_echoes(&pair.ns_a, pair.a.ip, to, 10, 100), 10, "started over the leftover");
    stop(&mut d, &pair.ns_b);
}
