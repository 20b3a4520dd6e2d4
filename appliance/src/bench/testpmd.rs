//! # DPDK testpmd as a benchmark variant
//!
//! What it is: `dpdk-testpmd` (Debian's `dpdk` package) started inside a namespace on one veth
//! (or, for `bench fwd`, two: one port each) through DPDK's af_xdp PMD, in interactive mode on a pipe, so the harness can read its own
//! port counters (`show port stats all`) at the edges of a measurement window, and stopped again
//! with `quit`.
//!
//! Command line: `--no-huge -m 256 --no-pci --no-shconf --no-telemetry --file-prefix <unique>
//! --vdev net_af_xdp0,iface=<dev>,start_queue=0,queue_count=1 -l 0,1 --main-lcore 0 -- -i
//! --total-num-mbufs=8192 --forward-mode=<mode> [--txpkts=<size>] --auto-start`: main lcore on
//! CPU 0 (the command line, idle), the forwarding lcore on CPU 1, like xdpos. testpmd's stdout
//! is a pipe, so it runs under `stdbuf -oL` (otherwise its replies sit in stdio's buffer).
//!
//! What it owns: the child process (its own process group, so a Ctrl-C reaches only the
//! harness, which then stops it), a reader thread, and DPDK's runtime directory
//! `/var/run/dpdk/<prefix>` (removed after exit). The PMD's XDP program is detached by testpmd
//! when the port closes; [`Testpmd::stop`] also removes any XDP program left on the device.
//!
//! Every wait is bounded: start-up 30 s, a stats reply 5 s, exit after `quit` 10 s; after that
//! the child is killed by its PID.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::rig::Netns;

/// The testpmd binary looked up on `PATH`.
pub const BINARY: &str = "dpdk-testpmd";

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Where testpmd is installed, if it is.
pub fn installed() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(BINARY)).find(|p| p.is_file())
}

/// testpmd's forwarding mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Receive and free.
    RxOnly,
    /// Transmit generated packets of `--txpkts` bytes.
    TxOnly,
    /// Receive and transmit the same mbufs unchanged (io forwarding on one port).
    Io,
}

impl Mode {
    fn arg(self) -> &'static str {
        match self {
            Mode::RxOnly => "rxonly",
            Mode::TxOnly => "txonly",
            Mode::Io => "io",
        }
    }
}

/// One reply to `show port stats all` (port 0), with when it was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// When the reply arrived.
    pub at: Instant,
    /// `RX-packets`.
    pub rx_packets: u64,
    /// `RX-missed` (for af_xdp: the socket's drops).
    pub rx_missed: u64,
    /// `TX-packets`.
    pub tx_packets: u64,
}

/// A running testpmd.
#[derive(Debug)]
pub struct Testpmd {
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    stats: Receiver<Stats>,
    tail: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    prefix: String,
    ns: String,
    devs: Vec<String>,
}

/// Parses `  RX-packets: 1   RX-missed: 0   RX-bytes:  70` into the values after each label.
fn fields(line: &str) -> Vec<(&str, u64)> {
    let toks: Vec<&str> = line.split_whitespace().collect();
    toks.windows(2).filter_map(|w| Some((w[0].strip_suffix(':')?, w[1].parse().ok()?))).collect()
}

/// Turns testpmd's output lines into stats replies: an `RX-packets … RX-missed` line followed
/// by a `TX-packets … TX-errors` line.
#[derive(Debug, Default)]
struct Parser {
    rx: Option<(u64, u64)>,
}

impl Parser {
    fn line(&mut self, line: &str, at: Instant) -> Option<Stats> {
        let f = fields(line);
        let get = |k: &str| f.iter().find(|(n, _)| *n == k).map(|&(_, v)| v);
        if let (Some(rx), Some(missed)) = (get("RX-packets"), get("RX-missed")) {
            self.rx = Some((rx, missed));
        } else if let (Some(tx), Some(_)) = (get("TX-packets"), get("TX-errors")) {
            let (rx_packets, rx_missed) = self.rx.take()?;
            return Some(Stats { at, rx_packets, rx_missed, tx_packets: tx });
        }
        None
    }
}

impl Testpmd {
    /// Starts testpmd in `ns` on `dev` in `mode` (`size`: frame bytes for txonly) and waits
    /// until its port answers a stats request.
    pub fn start(ns: &Netns, dev: &str, mode: Mode, size: usize) -> anyhow::Result<Testpmd> {
        Self::start_ports(ns, &[dev], mode, size)
    }

    /// [`Testpmd::start`] with one port per device, in order (port `i` is `devs[i]`); with two
    /// ports, testpmd's default "paired" topology forwards 0 → 1 and 1 → 0 (`bench fwd`).
    pub fn start_ports(
        ns: &Netns,
        devs: &[&str],
        mode: Mode,
        size: usize,
    ) -> anyhow::Result<Testpmd> {
        let prefix =
            format!("xdpos-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let mut cmd = ns.cmd("stdbuf");
        cmd.args(["-oL", "-eL", BINARY, "--no-huge", "-m", "256", "--no-pci", "--no-shconf"])
            .args(["--no-telemetry", "--file-prefix", &prefix]);
        for (i, dev) in devs.iter().enumerate() {
            cmd.arg("--vdev").arg(format!("net_af_xdp{i},iface={dev},start_queue=0,queue_count=1"));
        }
        cmd.args(["-l", "0,1", "--main-lcore", "0", "--", "-i", "--total-num-mbufs=8192"])
            .arg(format!("--forward-mode={}", mode.arg()));
        if mode == Mode::TxOnly {
            cmd.arg(format!("--txpkts={size}"));
        }
        cmd.arg("--auto-start")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = cmd.spawn().with_context(|| format!("start {BINARY}"))?;
        let stdin = child.stdin.take();
        let (tx, rx) = mpsc::channel();
        let tail = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        for (i, out) in [
            child.stdout.take().map(|o| Box::new(o) as Box<dyn std::io::Read + Send>),
            child.stderr.take().map(|e| Box::new(e) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .enumerate()
        {
            let Some(out) = out else { continue };
            let (tx, tail) = (tx.clone(), tail.clone());
            std::thread::spawn(move || {
                let mut p = Parser::default();
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    if i == 0 {
                        if let Some(s) = p.line(&line, Instant::now()) {
                            let _ = tx.send(s);
                        }
                    }
                    let mut t = tail.lock().unwrap_or_else(|e| e.into_inner());
                    if t.len() >= 40 {
                        t.remove(0);
                    }
                    t.push(line);
                }
            });
        }
        let mut t = Testpmd {
            child: Some(child),
            stdin,
            stats: rx,
            tail,
            prefix,
            ns: ns.name().to_string(),
            devs: devs.iter().map(|d| d.to_string()).collect(),
        };
        // Ready when the port answers (the PMD has created its socket and XDP program).
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match t.stats(Duration::from_secs(2)) {
                Ok(_) => return Ok(t),
                Err(e) if Instant::now() >= deadline || !t.running() => {
                    let tail = t.output_tail();
                    return Err(e.context(format!("{BINARY} did not start; its output:\n{tail}")));
                }
                Err(_) => {}
            }
        }
    }

    fn running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The last lines testpmd printed.
    pub fn output_tail(&self) -> String {
        self.tail.lock().map(|t| t.join("\n")).unwrap_or_default()
    }

    fn send(&mut self, line: &str) -> anyhow::Result<()> {
        let stdin = self.stdin.as_mut().context("testpmd's stdin is closed")?;
        stdin
            .write_all(line.as_bytes())
            .and_then(|_| stdin.write_all(b"\n"))
            .and_then(|_| stdin.flush())
            .context("write to testpmd")
    }

    /// Asks for port 0's counters and waits up to `limit` for the reply.
    pub fn stats(&mut self, limit: Duration) -> anyhow::Result<Stats> {
        self.port_stats(0, limit)
    }

    /// Asks for port `port`'s counters and waits up to `limit` for the reply.
    pub fn port_stats(&mut self, port: usize, limit: Duration) -> anyhow::Result<Stats> {
        while self.stats.try_recv().is_ok() {} // stale replies
        self.send(&format!("show port stats {port}"))?;
        match self.stats.recv_timeout(limit) {
            Ok(s) => Ok(s),
            Err(RecvTimeoutError::Timeout) => bail!("testpmd did not answer within {limit:?}"),
            Err(RecvTimeoutError::Disconnected) => bail!("testpmd exited"),
        }
    }

    /// Stops forwarding, quits, waits (bounded) for the exit, kills by PID if needed, removes
    /// the runtime directory and any XDP program left on the device.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else { return Ok(()) };
        let _ = self.send("stop");
        let _ = self.send("quit");
        self.stdin = None; // EOF also ends the interactive loop
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut clean = true;
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    // Our own child, by its PID.
                    let _ = child.kill();
                    let _ = child.wait();
                    clean = false;
                    break;
                }
            }
        }
        let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{}", self.prefix));
        for dev in &self.devs {
            let _ = crate::rig::run(
                Command::new("ip").args(["-n", &self.ns, "link", "set", "dev", dev, "xdp", "off"]),
            );
        }
        anyhow::ensure!(clean, "testpmd did not quit within 10 s and was killed");
        Ok(())
    }
}

impl Drop for Testpmd {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_port_stats_and_ignores_forward_stats() {
        let now = Instant::now();
        let mut p = Parser::default();
        let text = "\
  ######################## NIC statistics for port 0  ########################
  RX-packets: 1234       RX-missed: 5          RX-bytes:  78976
  RX-errors: 0
  RX-nombuf:  0
  TX-packets: 42         TX-errors: 0          TX-bytes:  2688
  ---------------------- Forward statistics for port 0  ----------------------
  RX-packets: 1              RX-dropped: 0             RX-total: 1
  TX-packets: 0              TX-dropped: 0             TX-total: 0
testpmd> show port stats all";
        let got: Vec<Stats> = text.lines().filter_map(|l| p.line(l, now)).collect();
        assert_eq!(got, [Stats { at: now, rx_packets: 1234, rx_missed: 5, tx_packets: 42 }]);
    }
}
