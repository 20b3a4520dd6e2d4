//! # `xdpos bench ready`: how long from exec to a working router
//!
//! What it is: start-up time of `xdpos forward --role router` on the `chain` rig, as a user
//! sees it. Before the exec, a kernel sender in A sends a UDP datagram to B every 100 µs
//! through F (where nothing forwards yet), a kernel client in A tries to connect to the
//! router's own address every few milliseconds, and a kernel socket in B waits. Then:
//!
//! - `ms_to_ready`: exec → the `ready:` line on stdout;
//! - `ms_to_first_packet`: exec → the first datagram B's kernel receives (F attached its
//!   programs, opened its sockets, built its table, started its worker, resolved B by ARP and
//!   forwarded);
//! - `ms_to_first_accept`: exec → the first TCP connection to the router's own address that
//!   completes (the client's `connect` returns: xdpos's listener answered the SYN; the router
//!   runs with `--tcp-listen`, which accepts and closes connections). The TCP services of the
//!   appliance run on the same stacks; this is when such a service can take a connection.
//!
//! The size column is the number of routes in the table (`--sizes 1,1000000`, default): the
//! default route alone, or the default and N−1 random prefixes of `internet_like`, built at
//! start-up (generation included). A knows F's MAC beforehand (as a neighbour does when a
//! router restarts); F resolves B by ARP as part of its start. Resolution: the sender's
//! 100 µs, the connect attempts' few milliseconds.
//!
//! What it owns: the rig, the `xdpos forward` process of each point (stopped with SIGTERM,
//! killed by its PID after a bound), the helper threads; each wait has a deadline.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddrV4, TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};

use super::harness::{self, Benchmark, Machine, Metrics, Plan, Primary, Variant};
use super::place::{DUT_CPU, GEN_CPU};
use super::{CommonArgs, Stop};
use crate::rig::{mac_str, Chain, ChainOpts};

/// `xdpos bench ready` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct ReadyArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// The `xdpos` binary to start (default: this one).
    #[arg(long)]
    pub bin: Option<std::path::PathBuf>,
}

/// Port of the readiness listener on the router's address.
const TCP_PORT: u16 = 7777;
/// Longest wait for anything of one point.
const LIMIT: Duration = Duration::from_secs(20);

/// The benchmark.
#[derive(Debug)]
pub struct ReadyBench {
    chain: Chain,
    bin: std::path::PathBuf,
}

impl ReadyBench {
    /// Builds the rig.
    pub fn new(args: &ReadyArgs) -> anyhow::Result<ReadyBench> {
        let bin = match &args.bin {
            Some(b) => b.clone(),
            None => std::env::current_exe().context("path of this binary")?,
        };
        let chain = Chain::new("rdy", &ChainOpts::default()).context("build the chain rig")?;
        chain.ns_a.sh(&format!(
            "ip neigh replace {} lladdr {} dev {} nud permanent",
            chain.fa.ip,
            mac_str(&chain.fa.mac),
            chain.a.ifname
        ))?;
        Ok(ReadyBench { chain, bin })
    }
}

impl Benchmark for ReadyBench {
    fn name(&self) -> &'static str {
        "ready"
    }

    fn default_sizes(&self) -> Vec<usize> {
        vec![1, 1_000_000]
    }

    fn variants(&self) -> Vec<Variant> {
        vec![Variant::new("xdpos", None)]
    }

    fn primary(&self) -> Primary {
        Primary { metric: "ms_to_first_packet", label: "ms", scale: 1.0 }
    }

    fn machine(&self) -> Machine {
        Machine::here("veth", "native-copy")
    }

    fn notes(&self) -> Vec<String> {
        vec!["size = routes in the table (built at start-up); xdpos forward --role router, worker \
             on CPU 1; A sends a datagram to B every 100 us and tries TCP to F's address"
            .into()]
    }

    fn measure(&mut self, _: &Variant, routes: usize, plan: &Plan) -> anyhow::Result<Metrics> {
        self.point(routes, &plan.stop)
    }
}

impl ReadyBench {
    fn point(&self, routes: usize, stop: &Stop) -> anyhow::Result<Metrics> {
        let c = &self.chain;
        let done = AtomicBool::new(false);
        let (first_tx, first_rx) = mpsc::channel::<Instant>();
        let (accept_tx, accept_rx) = mpsc::channel::<Instant>();
        let (armed_tx, armed_rx) = mpsc::channel::<()>();
        std::thread::scope(|s| -> anyhow::Result<Metrics> {
            let done = &done;
            let deadline = Instant::now() + LIMIT;
            // B: the first datagram's arrival.
            let armed = armed_tx.clone();
            s.spawn(move || {
                let _ = c.ns_b.run_in(|| -> anyhow::Result<()> {
                    let sock = UdpSocket::bind(SocketAddrV4::new(c.b.ip, 9000))?;
                    sock.set_read_timeout(Some(Duration::from_millis(20)))?;
                    let _ = armed.send(());
                    let mut buf = [0u8; 64];
                    while !done.load(Ordering::Relaxed) && Instant::now() < deadline {
                        if sock.recv(&mut buf).is_ok() {
                            let _ = first_tx.send(Instant::now());
                            break;
                        }
                    }
                    Ok(())
                });
            });
            // A: a datagram every 100 us, pinned away from the router's CPU.
            let armed = armed_tx.clone();
            s.spawn(move || {
                let _ = c.ns_a.run_in(|| -> anyhow::Result<()> {
                    let _ = super::place::pin(GEN_CPU);
                    let sock = UdpSocket::bind(SocketAddrV4::new(c.a.ip, 0))?;
                    let to = SocketAddrV4::new(c.b.ip, 9000);
                    let _ = armed.send(());
                    while !done.load(Ordering::Relaxed) && Instant::now() < deadline {
                        let _ = sock.send_to(b"ready?", to);
                        std::thread::sleep(Duration::from_micros(100));
                    }
                    Ok(())
                });
            });
            // A: TCP to the router's address until a connection completes.
            let armed = armed_tx;
            s.spawn(move || {
                let _ = c.ns_a.run_in(|| {
                    let to = SocketAddrV4::new(c.fa.ip, TCP_PORT).into();
                    let _ = armed.send(());
                    while !done.load(Ordering::Relaxed) && Instant::now() < deadline {
                        if TcpStream::connect_timeout(&to, Duration::from_millis(4)).is_ok() {
                            let _ = accept_tx.send(Instant::now());
                            break;
                        }
                    }
                });
            });
            for _ in 0..3 {
                armed_rx.recv_timeout(Duration::from_secs(5)).map_err(|_| anyhow!("helpers"))?;
            }
            std::thread::sleep(Duration::from_millis(20));
            let result = self.run_router(routes, stop, &first_rx, &accept_rx);
            done.store(true, Ordering::Relaxed);
            result
        })
    }

    /// Execs the router, waits for the three events, stops it.
    fn run_router(
        &self,
        routes: usize,
        stop: &Stop,
        first: &mpsc::Receiver<Instant>,
        accept: &mpsc::Receiver<Instant>,
    ) -> anyhow::Result<Metrics> {
        let c = &self.chain;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", c.ns_f.name()])
            .arg(&self.bin)
            .args(["forward", "--role", "router"])
            .arg("--iface")
            .arg(format!("{}={}/24", c.fa.ifname, c.fa.ip))
            .arg("--iface")
            .arg(format!("{}={}/24", c.fb.ifname, c.fb.ip))
            .arg("--route")
            .arg(format!("0.0.0.0/0={}", c.b.ip))
            .args(["--cpus", &DUT_CPU.to_string(), "--tcp-listen", &TCP_PORT.to_string()])
            .args(["--seconds", "30"]);
        if routes > 1 {
            cmd.args(["--random-routes", &(routes - 1).to_string()]);
        }
        cmd.env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let t0 = Instant::now();
        let mut child = cmd.spawn().context("start xdpos forward")?;
        let guard = KillOnDrop(&mut child);
        let out = guard.0.stdout.take().context("piped stdout")?;
        let (line_tx, line_rx) = mpsc::channel::<(Instant, String)>();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if line_tx.send((Instant::now(), line)).is_err() {
                    break;
                }
            }
        });
        let deadline = t0 + LIMIT;
        let wait = |rx: &mpsc::Receiver<Instant>, what: &str| -> anyhow::Result<Instant> {
            loop {
                if stop.requested() {
                    anyhow::bail!("interrupted");
                }
                match rx.recv_timeout(Duration::from_millis(50)) {
                    Ok(t) => return Ok(t),
                    Err(_) if Instant::now() < deadline => {}
                    Err(_) => anyhow::bail!("no {what} within {LIMIT:?}"),
                }
            }
        };
        let mut lines = Vec::new();
        let ready = loop {
            match line_rx.recv_timeout(Duration::from_millis(50)) {
                Ok((t, l)) if l.starts_with("ready:") => break t,
                Ok((_, l)) => lines.push(l),
                Err(_) if Instant::now() < deadline && !stop.requested() => {}
                Err(_) => anyhow::bail!("xdpos forward not ready: {lines:?}"),
            }
        };
        let first = wait(first, "forwarded datagram at B")?;
        let accepted = wait(accept, "TCP connection to the router")?;
        // SIGTERM by PID (our child), then the exit status and the accounting lines.
        let pid = rustix::process::Pid::from_raw(guard.0.id() as i32).context("pid")?;
        rustix::process::kill_process(pid, rustix::process::Signal::TERM)?;
        let exit_by = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(st) = guard.0.try_wait()? {
                break st;
            }
            anyhow::ensure!(Instant::now() < exit_by, "xdpos forward did not exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(10));
        };
        while let Ok((_, l)) = line_rx.recv_timeout(Duration::from_millis(200)) {
            lines.push(l);
        }
        anyhow::ensure!(status.success(), "xdpos forward exited with {status}: {lines:?}");
        anyhow::ensure!(
            lines.iter().any(|l| l.starts_with("worker 0:") && l.contains("frames ok")),
            "no clean report from xdpos forward: {lines:?}"
        );
        let ms = |t: Instant| t.duration_since(t0).as_secs_f64() * 1e3;
        Ok(vec![
            ("ms_to_first_packet", ms(first)),
            ("ms_to_first_accept", ms(accepted)),
            ("ms_to_ready", ms(ready)),
        ])
    }
}

/// Kills the child (by its PID, through `Child::kill`) if it is still running when dropped.
struct KillOnDrop<'a>(&'a mut std::process::Child);

impl Drop for KillOnDrop<'_> {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// `xdpos bench ready`.
pub fn run(args: &ReadyArgs, stop: &Stop) -> anyhow::Result<()> {
    let mut bench = ReadyBench::new(args)?;
    let report = harness::run(&mut bench, &args.common, stop)?;
    drop(bench);
    harness::finish(&report, &args.common)
}
