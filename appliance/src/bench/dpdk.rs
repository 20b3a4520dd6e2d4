//! # The DPDK backend as a benchmark variant
//!
//! What it is: an `xdpos` process on the DPDK backend (`xdpos forward --backend dpdk …`, or
//! `xdpos echo --backend dpdk …`) started inside a namespace as the device under test of one
//! point. It is a child process, like testpmd, because DPDK's EAL is initialised once per
//! process and its virtual devices are created by that initialisation: every point gets a
//! fresh process with its own EAL (no shared files) on the rig's interfaces.
//!
//! The child is this very executable (`std::env::current_exe`), so it must have been built
//! with the `dpdk` feature ([`crate::dpdk::AVAILABLE`]); benchmarks mark the variant
//! unavailable otherwise. Ready when it prints its `ready:` line (bounded: 30 s). Stopped with
//! SIGTERM (bounded: 10 s, then killed by its PID); its exit report must show the frame
//! accounting of its workers and the DPDK leak check (`dpdk: frames ok`), else the point fails.
//!
//! What it owns: the child process (its own process group) and a reader thread per output
//! stream; both end with it.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::rig::Netns;

/// Why the DPDK variants cannot run in this build, if they cannot.
pub fn unavailable() -> Option<String> {
    (!crate::dpdk::AVAILABLE).then(|| {
        "this xdpos was built without the dpdk feature (cargo build --release --features dpdk)"
            .to_string()
    })
}

/// A running `xdpos … --backend dpdk` process.
#[derive(Debug)]
pub struct DpdkDut {
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    seen: Arc<Mutex<Vec<String>>>,
}

impl DpdkDut {
    /// Starts `xdpos ARGS` in `ns` and waits for its `ready:` line.
    pub fn start(ns: &Netns, args: &[String]) -> anyhow::Result<DpdkDut> {
        let exe = std::env::current_exe().context("find the xdpos executable")?;
        let mut cmd = ns.cmd(&exe.to_string_lossy());
        cmd.args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = cmd.spawn().context("start xdpos on DPDK")?;
        let stdin = child.stdin.take();
        let (tx, lines) = mpsc::channel();
        let seen = Arc::new(Mutex::new(Vec::new()));
        for out in [
            child.stdout.take().map(|o| Box::new(o) as Box<dyn std::io::Read + Send>),
            child.stderr.take().map(|e| Box::new(e) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let (tx, seen) = (tx.clone(), seen.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    seen.lock().unwrap_or_else(|e| e.into_inner()).push(line.clone());
                    let _ = tx.send(line);
                }
            });
        }
        let mut dut = DpdkDut { child: Some(child), stdin, lines, seen };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match dut.lines.recv_timeout(left.min(Duration::from_millis(200))) {
                Ok(l) if l.starts_with("ready:") => return Ok(dut),
                Ok(_) => {}
                Err(_) if Instant::now() >= deadline || !dut.running() => {
                    let out = dut.output();
                    dut.kill();
                    anyhow::bail!("xdpos on DPDK did not become ready; its output:\n{out}");
                }
                Err(_) => {}
            }
        }
    }

    /// Asks an echo host for its live counters (`stats` on its stdin) and returns counter
    /// `key` of the `stats:` reply (waits at most `limit`).
    pub fn stat(&mut self, key: &str, limit: Duration) -> anyhow::Result<u64> {
        while self.lines.try_recv().is_ok() {} // stale lines
        let stdin = self.stdin.as_mut().context("the DPDK process's stdin is closed")?;
        stdin.write_all(b"stats\n").and_then(|_| stdin.flush()).context("ask for stats")?;
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .map_err(|_| anyhow::anyhow!("no stats from the DPDK process within {limit:?}"))?;
            if let Some(rest) = line.strip_prefix("stats:") {
                let toks: Vec<&str> = rest.split_whitespace().collect();
                return toks
                    .windows(2)
                    .find(|w| w[0] == key)
                    .and_then(|w| w[1].parse().ok())
                    .ok_or_else(|| anyhow::anyhow!("no {key} in {line:?}"));
            }
        }
    }

    fn running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Everything the process printed so far.
    pub fn output(&self) -> String {
        self.seen.lock().map(|s| s.join("\n")).unwrap_or_default()
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            // Our own child, by its PID.
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, a bounded wait for the exit, and the checks of its exit report.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else { return Ok(()) };
        self.stdin = None;
        if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            match child.try_wait() {
                Ok(Some(st)) => break Some(st),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
            }
        };
        // The reader threads finish with the pipes.
        std::thread::sleep(Duration::from_millis(50));
        let out = self.output();
        let st = status.ok_or_else(|| anyhow::anyhow!("xdpos on DPDK ignored SIGTERM: {out}"))?;
        anyhow::ensure!(st.success(), "xdpos on DPDK exited with {st}:\n{out}");
        anyhow::ensure!(
            out.contains("dpdk: frames ok"),
            "xdpos on DPDK did not report its frames back:\n{out}"
        );
        Ok(())
    }
}

impl Drop for DpdkDut {
    fn drop(&mut self) {
        self.kill();
    }
}
