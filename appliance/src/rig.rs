//! # Namespace rig
//!
//! What it is: network namespaces and veth pairs for the integration tests, the benchmark
//! harness and the demo, built with iproute2 and removed again on every path.
//!
//! What it owns: the namespaces it creates (and, through them, their veths and any XDP program
//! attached to those veths: deleting a namespace deletes its devices).
//!
//! Invariants:
//! - names are unique per process and per call (`xdpos-<tag>-<pid>-<n>`), so tests run in
//!   parallel and several runs can share a machine;
//! - [`Netns`] deletes its namespace on drop (also while unwinding from a failed assertion);
//!   [`sweep_stale`] removes namespaces left by a process that no longer exists (`kill -9`);
//! - kernel peers facing xdpos have `tx`, `tso` and `gso` offloads off, so their checksums arrive
//!   complete and their frames fit the MTU (see TESTING.md).
//!
//! Topologies: [`Pair`] (A —veth— B). Everything that waits does so against a deadline.

use std::fs::File;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Prefix of every namespace the rig creates.
pub const NS_PREFIX: &str = "xdpos-";

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Errors of the rig: a command that failed, with what it printed.
#[derive(Debug, thiserror::Error)]
pub enum RigError {
    /// A command could not be started.
    #[error("rig: cannot run {cmd}: {source}")]
    Spawn {
        /// The command line.
        cmd: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A command exited with an error.
    #[error("rig: `{cmd}` failed ({status}): {stderr}")]
    Failed {
        /// The command line.
        cmd: String,
        /// Its exit status.
        status: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// Entering a namespace failed.
    #[error("rig: cannot enter namespace {ns}: {source}")]
    Enter {
        /// The namespace.
        ns: String,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// Result of a rig operation.
pub type Result<T> = std::result::Result<T, RigError>;

/// Runs `cmd`, returning its stdout, or an error carrying its stderr.
pub fn run(cmd: &mut Command) -> Result<String> {
    let line = format!("{cmd:?}").replace('"', "");
    let out: Output = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|source| RigError::Spawn { cmd: line.clone(), source })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(RigError::Failed {
            cmd: line,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// Runs a shell script in the root namespace.
pub fn sh(script: &str) -> Result<String> {
    run(Command::new("sh").args(["-c", script]))
}

/// A network namespace, deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
    owned: bool,
}

impl Netns {
    /// Creates a namespace named `xdpos-<tag>-<pid>-<n>` with loopback up and IPv6 off (so no
    /// router solicitations or DAD frames disturb the tests).
    pub fn create(tag: &str) -> Result<Netns> {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("{NS_PREFIX}{tag}-{}-{n}", std::process::id());
        run(Command::new("ip").args(["netns", "add", &name]))?;
        let ns = Netns { name, owned: true };
        ns.sh("ip link set lo up; \
             sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1")?;
        Ok(ns)
    }

    /// A handle on an existing namespace that is **not** deleted on drop (for entering
    /// namespaces this process did not create).
    pub fn existing(name: &str) -> Netns {
        Netns { name: name.to_string(), owned: false }
    }

    /// The namespace's name (for `ip netns exec`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A command that runs `program` inside the namespace.
    pub fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Runs a shell script inside the namespace; returns its stdout.
    pub fn sh(&self, script: &str) -> Result<String> {
        run(self.cmd("sh").args(["-c", script]))
    }

    /// Moves the calling thread into this namespace (sockets it creates afterwards, interface
    /// names it resolves and XDP programs it attaches are this namespace's). Use it at the top
    /// of a thread spawned for that purpose.
    pub fn enter(&self) -> Result<()> {
        let enter = || -> io::Result<()> {
            let f = File::open(format!("/run/netns/{}", self.name))?;
            rustix::thread::move_into_link_name_space(
                f.as_fd(),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )?;
            Ok(())
        };
        enter().map_err(|source| RigError::Enter { ns: self.name.clone(), source })
    }

    /// Runs `f` on a new thread inside this namespace and returns its result.
    pub fn run_in<R, F>(&self, f: F) -> Result<R>
    where
        R: Send,
        F: FnOnce() -> R + Send,
    {
        std::thread::scope(|s| {
            s.spawn(|| {
                self.enter()?;
                Ok(f())
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }

    /// The interface statistics (`ip -s link`), for failure dumps.
    pub fn link_stats(&self) -> String {
        self.sh("ip -s -d link").unwrap_or_else(|e| e.to_string())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting a namespace deletes its veths (and the XDP programs on them).
        if self.owned {
            let _ = run(Command::new("ip").args(["netns", "del", &self.name]));
        }
    }
}

/// Deletes namespaces named by this rig whose creating process no longer exists. Returns how
/// many were removed.
pub fn sweep_stale() -> usize {
    let Ok(list) = run(Command::new("ip").args(["netns", "list"])) else { return 0 };
    let mut removed = 0;
    for line in list.lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix(NS_PREFIX) else { continue };
        // xdpos-<tag>-<pid>-<n>
        let mut parts = rest.rsplitn(3, '-');
        let (_n, pid) = (parts.next(), parts.next());
        let Some(pid) = pid.and_then(|p| p.parse::<i32>().ok()) else { continue };
        let alive = rustix::process::Pid::from_raw(pid)
            .map(|p| rustix::process::test_kill_process(p).is_ok())
            .unwrap_or(false);
        if !alive && run(Command::new("ip").args(["netns", "del", name])).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// One end of a veth pair inside a namespace.
#[derive(Debug, Clone)]
pub struct End {
    /// Interface name (inside its namespace).
    pub ifname: String,
    /// Its MAC address.
    pub mac: [u8; 6],
    /// Its IPv4 address (configured in the kernel only where the options say so).
    pub ip: Ipv4Addr,
}

/// Options of a [`Pair`].
#[derive(Debug, Clone)]
pub struct PairOpts {
    /// RX and TX queues on both ends.
    pub queues: u32,
    /// MTU of both ends.
    pub mtu: u32,
    /// Configure B's address in B's kernel too (for pass-through tests: the kernel answers ARP
    /// and owns the ports xdpos does not take).
    pub b_kernel_ip: bool,
}

impl Default for PairOpts {
    fn default() -> Self {
        PairOpts { queues: 1, mtu: 1500, b_kernel_ip: false }
    }
}

/// Topology `pair`: namespace A —veth— namespace B. A is the kernel peer (address 10.0.0.1/24,
/// offloads off); B is where xdpos runs (10.0.0.2, its interface up, no kernel address unless
/// asked for). A has a permanent neighbour entry for B, so traffic flows before any ARP.
#[derive(Debug)]
pub struct Pair {
    /// End A (kernel peer).
    pub a: End,
    /// End B (device under test).
    pub b: End,
    // Field order matters: the namespaces are dropped last, after anything borrowing them.
    /// Namespace A.
    pub ns_a: Netns,
    /// Namespace B.
    pub ns_b: Netns,
}

impl Pair {
    /// Builds the pair.
    pub fn new(tag: &str, opts: &PairOpts) -> Result<Pair> {
        let ns_a = Netns::create(&format!("{tag}a"))?;
        let ns_b = Netns::create(&format!("{tag}b"))?;
        let a = End {
            ifname: "xa0".into(),
            mac: [0x02, 0x00, 0x00, 0x00, 0x00, 0x0a],
            ip: Ipv4Addr::new(10, 0, 0, 1),
        };
        let b = End {
            ifname: "xb0".into(),
            mac: [0x02, 0x00, 0x00, 0x00, 0x00, 0x0b],
            ip: Ipv4Addr::new(10, 0, 0, 2),
        };
        let q = opts.queues.to_string();
        run(Command::new("ip").args([
            "link",
            "add",
            &a.ifname,
            "netns",
            ns_a.name(),
            "numtxqueues",
            &q,
            "numrxqueues",
            &q,
            "address",
            &mac_str(&a.mac),
            "mtu",
            &opts.mtu.to_string(),
            "type",
            "veth",
            "peer",
            "name",
            &b.ifname,
            "netns",
            ns_b.name(),
            "numtxqueues",
            &q,
            "numrxqueues",
            &q,
            "address",
            &mac_str(&b.mac),
            "mtu",
            &opts.mtu.to_string(),
        ]))?;
        ns_a.sh(&format!(
            "ip addr add {aip}/24 dev {ai} && ip link set {ai} up && \
             ethtool -K {ai} tx off tso off gso off >/dev/null && \
             ip neigh replace {bip} lladdr {bmac} dev {ai} nud permanent",
            aip = a.ip,
            ai = a.ifname,
            bip = b.ip,
            bmac = mac_str(&b.mac),
        ))?;
        ns_b.sh(&format!("ip link set {} up", b.ifname))?;
        if opts.b_kernel_ip {
            ns_b.sh(&format!(
                "ip addr add {}/24 dev {bi} && ethtool -K {bi} tx off tso off gso off >/dev/null",
                b.ip,
                bi = b.ifname
            ))?;
        }
        let pair = Pair { a, b, ns_a, ns_b };
        pair.wait_up(Duration::from_secs(5))?;
        Ok(pair)
    }

    /// Waits until both ends report carrier.
    fn wait_up(&self, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            let a = self.ns_a.sh(&format!("cat /sys/class/net/{}/operstate", self.a.ifname));
            let b = self.ns_b.sh(&format!("cat /sys/class/net/{}/operstate", self.b.ifname));
            if matches!((&a, &b), (Ok(x), Ok(y)) if x.trim() == "up" && y.trim() == "up") {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(RigError::Failed {
                    cmd: "wait for veth carrier".into(),
                    status: "timeout".into(),
                    stderr: format!("a: {a:?}, b: {b:?}"),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `ip -s link` of both namespaces, for a failure dump.
    pub fn dump(&self) -> String {
        format!("--- A ---\n{}\n--- B ---\n{}", self.ns_a.link_stats(), self.ns_b.link_stats())
    }
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn mac_str(mac: &[u8; 6]) -> String {
    let m = mac;
    format!("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5])
}

/// Options of a [`Chain`].
#[derive(Debug, Clone)]
pub struct ChainOpts {
    /// RX and TX queues on every veth.
    pub queues: u32,
    /// A's address with its prefix length.
    pub a_cidr: (Ipv4Addr, u8),
    /// B's address with its prefix length.
    pub b_cidr: (Ipv4Addr, u8),
    /// Default routes of A and B (their gateways on F's side), if F routes.
    pub gateways: Option<(Ipv4Addr, Ipv4Addr)>,
}

impl Default for ChainOpts {
    /// A router's rig: A 10.0.1.2/24 behind gateway 10.0.1.1, B 10.0.2.2/24 behind 10.0.2.1.
    fn default() -> Self {
        ChainOpts {
            queues: 1,
            a_cidr: (Ipv4Addr::new(10, 0, 1, 2), 24),
            b_cidr: (Ipv4Addr::new(10, 0, 2, 2), 24),
            gateways: Some((Ipv4Addr::new(10, 0, 1, 1), Ipv4Addr::new(10, 0, 2, 1))),
        }
    }
}

/// Topology `chain`: A —veth— F —veth— B, for forwarding. F is the device under test (its
/// veths `xf0` toward A and `xf1` toward B, up, no kernel address); A and B are kernel hosts
/// with offloads off.
#[derive(Debug)]
pub struct Chain {
    /// Host A's end.
    pub a: End,
    /// F's end toward A.
    pub fa: End,
    /// F's end toward B.
    pub fb: End,
    /// Host B's end.
    pub b: End,
    /// Namespace A.
    pub ns_a: Netns,
    /// Namespace F.
    pub ns_f: Netns,
    /// Namespace B.
    pub ns_b: Netns,
}

impl Chain {
    /// Builds the chain.
    pub fn new(tag: &str, opts: &ChainOpts) -> Result<Chain> {
        let ns_a = Netns::create(&format!("{tag}a"))?;
        let ns_f = Netns::create(&format!("{tag}f"))?;
        let ns_b = Netns::create(&format!("{tag}b"))?;
        let end = |ifname: &str, last: u8, ip: Ipv4Addr| End {
            ifname: ifname.into(),
            mac: [0x02, 0x00, 0x00, 0x00, 0x01, last],
            ip,
        };
        let (ga, gb) = opts.gateways.unwrap_or((Ipv4Addr::UNSPECIFIED, Ipv4Addr::UNSPECIFIED));
        let a = end("xa0", 0x0a, opts.a_cidr.0);
        let fa = end("xf0", 0xf0, ga);
        let fb = end("xf1", 0xf1, gb);
        let b = end("xb0", 0x0b, opts.b_cidr.0);
        let q = opts.queues.to_string();
        for (x, nx, y, ny) in [(&a, &ns_a, &fa, &ns_f), (&b, &ns_b, &fb, &ns_f)] {
            run(Command::new("ip").args([
                "link",
                "add",
                &x.ifname,
                "netns",
                nx.name(),
                "numtxqueues",
                &q,
                "numrxqueues",
                &q,
                "address",
                &mac_str(&x.mac),
                "type",
                "veth",
                "peer",
                "name",
                &y.ifname,
                "netns",
                ny.name(),
                "numtxqueues",
                &q,
                "numrxqueues",
                &q,
                "address",
                &mac_str(&y.mac),
            ]))?;
        }
        for (ns, e, (ip, len), gw) in [
            (&ns_a, &a, opts.a_cidr, opts.gateways.map(|g| g.0)),
            (&ns_b, &b, opts.b_cidr, opts.gateways.map(|g| g.1)),
        ] {
            let route = gw.map(|g| format!(" && ip route add default via {g}")).unwrap_or_default();
            ns.sh(&format!(
                "ip addr add {ip}/{len} dev {i} && ip link set {i} up && \
                 ethtool -K {i} tx off tso off gso off >/dev/null{route}",
                i = e.ifname
            ))?;
        }
        ns_f.sh(&format!("ip link set {} up && ip link set {} up", fa.ifname, fb.ifname))?;
        let chain = Chain { a, fa, fb, b, ns_a, ns_f, ns_b };
        for (ns, i) in [
            (&chain.ns_a, &chain.a.ifname),
            (&chain.ns_f, &chain.fa.ifname),
            (&chain.ns_f, &chain.fb.ifname),
            (&chain.ns_b, &chain.b.ifname),
        ] {
            wait_oper_up(ns, i, Duration::from_secs(5))?;
        }
        Ok(chain)
    }

    /// `ip -s link` of the three namespaces, for a failure dump.
    pub fn dump(&self) -> String {
        format!(
            "--- A ---\n{}\n--- F ---\n{}\n--- B ---\n{}",
            self.ns_a.link_stats(),
            self.ns_f.link_stats(),
            self.ns_b.link_stats()
        )
    }
}

/// Waits until `ifname` in `ns` reports carrier.
fn wait_oper_up(ns: &Netns, ifname: &str, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let st = ns.sh(&format!("cat /sys/class/net/{ifname}/operstate"));
        if matches!(&st, Ok(x) if x.trim() == "up") {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(RigError::Failed {
                cmd: format!("wait for carrier on {ifname} in {}", ns.name()),
                status: "timeout".into(),
                stderr: format!("{st:?}"),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
