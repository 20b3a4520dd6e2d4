//! Shared helpers of the integration tests: a run-to-completion loop over AF_XDP ports with a
//! deadline, kernel-side UDP helpers, and the checks every test ends with (no XDP program left,
//! frame accounting).
//!
//! The rig itself (namespaces, veth pairs, cleanup) is `xdpos::rig`, shared with the benchmark
//! harness and the demo.
#![forbid(unsafe_code)]

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
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
    lines: mpsc::Receiver<String>,
    /// Every stdout line read so far.
    pub seen: Vec<String>,
}

use std::sync::mpsc;

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
        Child { child, lines, seen: Vec::new() }
    }

    /// Waits (bounded) for a stdout line containing `needle`.
    pub fn wait_line(&mut self, needle: &str, limit: Duration) -> Option<String> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.lines.recv_timeout(left) {
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
                while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(200)) {
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
