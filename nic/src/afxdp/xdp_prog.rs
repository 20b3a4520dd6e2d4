//! # The steering XDP program
//!
//! What it is: our own XDP program (`nic/bpf/steer.bpf.c`, compiled by clang at build time and
//! embedded), loaded and attached to one interface with libbpf-rs, and the maps through which
//! the control plane says what the appliance owns.
//!
//! What it owns: the loaded object, its attachment, handles to its maps.
//!
//! Attachment: through a **BPF link** (`bpf_link_create`, Linux 5.9+), native (driver) mode
//! first and SKB (generic) mode as a logged fallback. A link detaches when its last file
//! descriptor closes, so the program goes away on drop, on SIGTERM (the daemon drops it) and
//! also when the process is killed: a crash leaves nothing attached. The legacy netlink
//! attachment ([`Attach::Netlink`], for kernels without XDP links) survives its process;
//! [`cleanup`] removes such leftovers.
//!
//! Ownership rules (see the C source): mode ALL redirects every frame; mode MATCH redirects
//! IPv4 to owned addresses, ARP for owned addresses, and UDP/TCP to owned ports; everything
//! else goes to the kernel.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use libbpf_rs::{MapCore, MapFlags, MapHandle, ObjectBuilder};

use super::sys;
use crate::NicError;

static STEER_OBJ: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/steer.bpf.o"));

/// Name of the program inside the object (and in `bpftool prog`), used by [`cleanup`].
pub const PROG_NAME: &str = "xdpos_steer";

/// Name of the forwarding fast path's program ([`super::FastPath`]), also removed by
/// [`cleanup`].
pub const FWD_PROG_NAME: &str = "xdpos_fwd";

/// Name of the bare redirect program ([`super::XdpRedirect`], a benchmark baseline), also
/// removed by [`cleanup`].
pub const REDIRECT_PROG_NAME: &str = "xdpos_redirect";

/// What [`XdpProgram::attach_object`] loads.
pub(crate) struct LoadSpec<'a> {
    /// The embedded object.
    pub obj: &'static [u8],
    /// The XDP program in it.
    pub prog: &'static str,
    /// Maps shared with an instance loaded before: (name, descriptor).
    pub reuse: &'a [(&'a str, BorrowedFd<'a>)],
    /// Map sizes set before loading: (name, max_entries).
    pub sizes: &'a [(&'a str, u32)],
}

impl LoadSpec<'_> {
    fn steer() -> LoadSpec<'static> {
        LoadSpec { obj: STEER_OBJ, prog: PROG_NAME, reuse: &[], sizes: &[] }
    }
}

/// Slots in the XSKMAP: the highest queue index a socket can serve, plus one.
pub const MAX_QUEUES: u32 = 64;

const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
pub(crate) const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

/// Which XDP mode to attach in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum XdpMode {
    /// Native (driver) mode, falling back to SKB mode with a warning.
    #[default]
    Auto,
    /// Native mode or fail.
    Native,
    /// SKB (generic) mode.
    Skb,
}

/// How to attach.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Attach {
    /// A BPF link: detached automatically when the process exits, however it exits.
    #[default]
    Link,
    /// Legacy netlink attachment (kernels without XDP links). Survives a crash; see
    /// [`cleanup`].
    Netlink,
}

/// The mode the program ended up attached in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachedMode {
    /// Native (driver) XDP.
    Native,
    /// SKB (generic) XDP.
    Skb,
}

impl AttachedMode {
    /// `native` or `skb`.
    pub fn as_str(self) -> &'static str {
        match self {
            AttachedMode::Native => "native",
            AttachedMode::Skb => "skb",
        }
    }
}

/// L4 protocol of an owned port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4Proto {
    /// UDP (17).
    Udp,
    /// TCP (6).
    Tcp,
}

impl L4Proto {
    fn number(self) -> u8 {
        match self {
            L4Proto::Udp => 17,
            L4Proto::Tcp => 6,
        }
    }
}

/// Packets and bytes of one verdict of the steering program, summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counter {
    /// Packets.
    pub packets: u64,
    /// Bytes.
    pub bytes: u64,
}

/// The steering program's verdict counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Verdicts {
    /// Redirected to the queue's AF_XDP socket.
    pub redirect: Counter,
    /// Not the appliance's traffic: passed to the kernel.
    pub pass_not_owned: Counter,
    /// The appliance's traffic but no socket on that queue: passed to the kernel.
    pub pass_no_socket: Counter,
    /// Too short or not understood in match mode: passed to the kernel.
    pub pass_unparsed: Counter,
}

const MODE_NONE: u32 = 0;
const MODE_ALL: u32 = 1;
const MODE_MATCH: u32 = 2;

/// The steering program loaded and attached to one interface (see the module documentation).
#[derive(Debug)]
pub struct XdpProgram {
    // The attachment goes first so it is dropped (detached) before the object.
    link: Option<OwnedFd>,
    netlink: bool,
    _obj: libbpf_rs::Object,
    xsks: MapHandle,
    config: MapHandle,
    owned_addrs: MapHandle,
    owned_ports: MapHandle,
    verdicts: MapHandle,
    ifindex: u32,
    ifname: String,
    mode: AttachedMode,
}

impl XdpProgram {
    /// Loads the program and attaches it to `ifname` (in the calling thread's network
    /// namespace) through a BPF link. It redirects nothing until told what the appliance owns.
    pub fn attach(ifname: &str, mode: XdpMode) -> Result<XdpProgram, NicError> {
        Self::attach_with(ifname, mode, Attach::Link)
    }

    /// [`XdpProgram::attach`] choosing the attachment kind.
    pub fn attach_with(ifname: &str, mode: XdpMode, how: Attach) -> Result<XdpProgram, NicError> {
        Self::attach_object(ifname, mode, how, &LoadSpec::steer())
    }

    /// Loads the program `spec` names (an object with the steering program's maps `xsks`,
    /// `config`, `owned_addrs`, `owned_ports`, `verdicts`) and attaches it to `ifname`.
    pub(crate) fn attach_object(
        ifname: &str,
        mode: XdpMode,
        how: Attach,
        spec: &LoadSpec<'_>,
    ) -> Result<XdpProgram, NicError> {
        let ifindex =
            sys::ifindex(ifname).ok_or_else(|| NicError::NoSuchInterface(ifname.to_string()))?;
        let bpf = |what: String| move |source| NicError::Bpf { what, source };
        let mut open = ObjectBuilder::default()
            .open_memory(spec.obj)
            .map_err(bpf(format!("cannot open the embedded object of {}", spec.prog)))?;
        for mut m in open.maps_mut() {
            let name = m.name().to_string_lossy().into_owned();
            if let Some(&(_, n)) = spec.sizes.iter().find(|(x, _)| *x == name) {
                m.set_max_entries(n).map_err(bpf(format!("cannot size map {name}")))?;
            }
            if let Some((_, fd)) = spec.reuse.iter().find(|(x, _)| *x == name) {
                m.reuse_fd(*fd).map_err(bpf(format!("cannot share map {name}")))?;
            }
        }
        let obj = open.load().map_err(bpf(format!("cannot load {} for {ifname}", spec.prog)))?;
        let handle = |name: &str| -> Result<MapHandle, NicError> {
            let map = obj.maps().find(|m| m.name() == name).ok_or_else(|| NicError::Bpf {
                what: format!("object of {} has no map {name}", spec.prog),
                source: libbpf_rs::Error::from(io::Error::from(io::ErrorKind::NotFound)),
            })?;
            MapHandle::try_from(&map).map_err(bpf(format!("cannot take a handle on map {name}")))
        };
        let (xsks, config) = (handle("xsks")?, handle("config")?);
        let (owned_addrs, owned_ports, verdicts) =
            (handle("owned_addrs")?, handle("owned_ports")?, handle("verdicts")?);
        let prog = obj.progs().find(|p| p.name() == spec.prog).ok_or_else(|| NicError::Bpf {
            what: format!("object has no program {}", spec.prog),
            source: libbpf_rs::Error::from(io::Error::from(io::ErrorKind::NotFound)),
        })?;
        let prog_fd = prog.as_fd();

        let tries: &[(u32, AttachedMode)] = match mode {
            XdpMode::Native => &[(XDP_FLAGS_DRV_MODE, AttachedMode::Native)],
            XdpMode::Skb => &[(XDP_FLAGS_SKB_MODE, AttachedMode::Skb)],
            XdpMode::Auto => &[
                (XDP_FLAGS_DRV_MODE, AttachedMode::Native),
                (XDP_FLAGS_SKB_MODE, AttachedMode::Skb),
            ],
        };
        let mut last_err = None;
        for &(flags, attached) in tries {
            let res = match how {
                Attach::Link => link_create(prog_fd, ifindex, flags).map(Some),
                Attach::Netlink => netlink_attach(prog_fd, ifindex, flags).map(|()| None),
            };
            match res {
                Ok(link) => {
                    if attached == AttachedMode::Skb && mode == XdpMode::Auto {
                        tracing::warn!(
                            ifname,
                            error = %last_err.as_ref().map(|e: &io::Error| e.to_string()).unwrap_or_default(),
                            "native XDP refused; running in SKB (generic) mode, which is much slower"
                        );
                    }
                    tracing::info!(ifname, mode = attached.as_str(), how = ?how, program = spec.prog, "XDP program attached");
                    return Ok(XdpProgram {
                        link,
                        netlink: how == Attach::Netlink,
                        _obj: obj,
                        xsks,
                        config,
                        owned_addrs,
                        owned_ports,
                        verdicts,
                        ifindex,
                        ifname: ifname.to_string(),
                        mode: attached,
                    });
                }
                Err(e)
                    if e.raw_os_error() == Some(libc::EBUSY)
                        || e.raw_os_error() == Some(libc::EEXIST) =>
                {
                    return Err(NicError::sys(
                        "attach XDP program",
                        ifname.to_string(),
                        io::Error::new(
                            e.kind(),
                            format!("{e}: the interface already has an XDP program (see `ip link show {ifname}`; `xdpos cleanup` removes a crashed instance's)"),
                        ),
                    ));
                }
                Err(e) => last_err = Some(e),
            }
        }
        Err(NicError::sys(
            "attach XDP program",
            ifname.to_string(),
            last_err.unwrap_or_else(|| io::Error::other("no mode to try")),
        ))
    }

    /// A handle on map `name` of the loaded object (maps beyond the steering program's).
    pub(crate) fn map_handle(&self, name: &str) -> Result<MapHandle, NicError> {
        let map = self._obj.maps().find(|m| m.name() == name).ok_or_else(|| NicError::Bpf {
            what: format!("the program on {} has no map {name}", self.ifname),
            source: libbpf_rs::Error::from(io::Error::from(io::ErrorKind::NotFound)),
        })?;
        MapHandle::try_from(&map).map_err(|source| NicError::Bpf {
            what: format!("cannot take a handle on map {name}"),
            source,
        })
    }

    /// Interface name.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// Interface index.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// The mode the program is attached in.
    pub fn mode(&self) -> AttachedMode {
        self.mode
    }

    /// Redirects every frame of the interface to its queue's socket (a forwarding port).
    pub fn steer_all(&self) -> Result<(), NicError> {
        self.set_mode(MODE_ALL)
    }

    /// Redirects nothing.
    pub fn steer_none(&self) -> Result<(), NicError> {
        self.set_mode(MODE_NONE)
    }

    /// Owns every IPv4 packet to `addr` and ARP for it; switches to match mode.
    pub fn own_addr(&self, addr: Ipv4Addr) -> Result<(), NicError> {
        let key = addr.octets();
        self.owned_addrs.update(&key, &1u32.to_ne_bytes(), MapFlags::ANY).map_err(|source| {
            NicError::Bpf { what: format!("cannot own address {addr}"), source }
        })?;
        self.set_mode(MODE_MATCH)
    }

    /// Gives `addr` back to the kernel.
    pub fn disown_addr(&self, addr: Ipv4Addr) -> Result<(), NicError> {
        self.owned_addrs.delete(&addr.octets()).map_err(|source| NicError::Bpf {
            what: format!("cannot disown address {addr}"),
            source,
        })
    }

    /// Owns UDP or TCP packets to `port` at `addr` (any local address if `None`); switches to
    /// match mode.
    pub fn own_port(
        &self,
        addr: Option<Ipv4Addr>,
        proto: L4Proto,
        port: u16,
    ) -> Result<(), NicError> {
        self.owned_ports
            .update(&port_key(addr, proto, port), &1u32.to_ne_bytes(), MapFlags::ANY)
            .map_err(|source| NicError::Bpf {
            what: format!("cannot own {proto:?} port {port} at {addr:?}"),
            source,
        })?;
        self.set_mode(MODE_MATCH)
    }

    /// Gives a port back to the kernel.
    pub fn disown_port(
        &self,
        addr: Option<Ipv4Addr>,
        proto: L4Proto,
        port: u16,
    ) -> Result<(), NicError> {
        self.owned_ports.delete(&port_key(addr, proto, port)).map_err(|source| NicError::Bpf {
            what: format!("cannot disown {proto:?} port {port} at {addr:?}"),
            source,
        })
    }

    /// The verdict counters, summed over CPUs (read at scrape time).
    pub fn verdicts(&self) -> Result<Verdicts, NicError> {
        read_verdicts(&self.verdicts)
    }

    /// A reader of the verdict counters for another thread (a metrics collector): it holds
    /// its own handle on the map, so it stays readable whatever happens to the program.
    pub fn verdict_reader(&self) -> Result<VerdictReader, NicError> {
        let map = MapHandle::try_from(&self.verdicts).map_err(|source| NicError::Bpf {
            what: "cannot take a second handle on the verdict counters".into(),
            source,
        })?;
        Ok(VerdictReader { map, ifname: self.ifname.clone() })
    }

    /// Puts socket `fd` in the XSKMAP slot of `queue`.
    pub(crate) fn register(&self, queue: u32, fd: BorrowedFd<'_>) -> Result<(), NicError> {
        if queue >= MAX_QUEUES {
            return Err(NicError::Invalid {
                what: "queue",
                value: queue.into(),
                why: "must be below 64",
            });
        }
        super::socket::xskmap_insert(&self.xsks, queue, fd).map_err(|source| NicError::Bpf {
            what: format!("cannot register the socket of {} queue {queue}", self.ifname),
            source,
        })
    }

    fn set_mode(&self, mode: u32) -> Result<(), NicError> {
        let value = [mode.to_ne_bytes(), 0u32.to_ne_bytes()].concat();
        self.config
            .update(&0u32.to_ne_bytes(), &value, MapFlags::ANY)
            .map_err(|source| NicError::Bpf { what: "cannot set the steering mode".into(), source })
    }

    /// Detaches now (also done on drop).
    pub fn detach(mut self) -> Result<(), NicError> {
        self.detach_inner().map_err(|e| NicError::sys("detach XDP program", self.ifname.clone(), e))
    }

    fn detach_inner(&mut self) -> io::Result<()> {
        if let Some(link) = self.link.take() {
            // SAFETY: `link` is a BPF link descriptor we own; BPF_LINK_DETACH takes no pointers
            // beyond the attr libbpf builds on its stack.
            let ret = unsafe { libbpf_rs::libbpf_sys::bpf_link_detach(link.as_raw_fd()) };
            drop(link);
            if ret < 0 {
                return Err(io::Error::from_raw_os_error(-ret));
            }
        } else if self.netlink {
            self.netlink = false;
            let flags = match self.mode {
                AttachedMode::Native => XDP_FLAGS_DRV_MODE,
                AttachedMode::Skb => XDP_FLAGS_SKB_MODE,
            };
            netlink_detach(self.ifindex, flags)?;
        }
        Ok(())
    }
}

impl Drop for XdpProgram {
    fn drop(&mut self) {
        if let Err(e) = self.detach_inner() {
            tracing::warn!(ifname = %self.ifname, error = %e, "detaching the steering program failed");
        }
    }
}

fn port_key(addr: Option<Ipv4Addr>, proto: L4Proto, port: u16) -> [u8; 8] {
    let a = addr.map(|a| a.octets()).unwrap_or([0; 4]);
    let p = port.to_be_bytes();
    [a[0], a[1], a[2], a[3], p[0], p[1], proto.number(), 0]
}

pub(crate) fn link_create(prog: BorrowedFd<'_>, ifindex: u32, flags: u32) -> io::Result<OwnedFd> {
    let opts = libbpf_rs::libbpf_sys::bpf_link_create_opts {
        sz: core::mem::size_of::<libbpf_rs::libbpf_sys::bpf_link_create_opts>() as _,
        flags,
        ..Default::default()
    };
    // SAFETY: `opts` is a live, fully initialized options struct with its size set; the program
    // descriptor is valid for the call.
    let fd = unsafe {
        libbpf_rs::libbpf_sys::bpf_link_create(
            prog.as_raw_fd(),
            ifindex as i32,
            libbpf_rs::libbpf_sys::BPF_XDP,
            &opts,
        )
    };
    if fd < 0 {
        return Err(io::Error::from_raw_os_error(-fd));
    }
    // SAFETY: a non-negative return is a new link descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn netlink_attach(prog: BorrowedFd<'_>, ifindex: u32, flags: u32) -> io::Result<()> {
    // XDP_FLAGS_UPDATE_IF_NOEXIST: never replace someone else's program.
    const UPDATE_IF_NOEXIST: u32 = 1;
    // SAFETY: no options pointer is passed; the program descriptor is valid for the call.
    let ret = unsafe {
        libbpf_rs::libbpf_sys::bpf_xdp_attach(
            ifindex as i32,
            prog.as_raw_fd(),
            flags | UPDATE_IF_NOEXIST,
            core::ptr::null(),
        )
    };
    if ret < 0 {
        return Err(io::Error::from_raw_os_error(-ret));
    }
    Ok(())
}

fn netlink_detach(ifindex: u32, flags: u32) -> io::Result<()> {
    // SAFETY: no options pointer is passed.
    let ret =
        unsafe { libbpf_rs::libbpf_sys::bpf_xdp_detach(ifindex as i32, flags, core::ptr::null()) };
    if ret < 0 {
        return Err(io::Error::from_raw_os_error(-ret));
    }
    Ok(())
}

/// What [`cleanup`] did on one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CleanupAction {
    /// A leftover steering program was detached.
    Detached {
        /// Interface.
        ifname: String,
        /// The program's id.
        prog_id: u32,
    },
    /// A steering program that a live process holds (a running xdpos): left alone.
    InUse {
        /// Interface.
        ifname: String,
        /// The program's id.
        prog_id: u32,
    },
}

/// Detaches xdpos steering programs that no live process holds from every interface of the
/// calling thread's network namespace (`xdpos cleanup`). Programs of other tools are never
/// touched; programs a live process holds (a running xdpos) are reported, not removed.
pub fn cleanup() -> Result<Vec<CleanupAction>, NicError> {
    let mut done = Vec::new();
    for (ifindex, ifname) in interfaces() {
        // SAFETY: a zeroed bpf_xdp_query_opts with `sz` set is what libbpf expects.
        let mut q: libbpf_rs::libbpf_sys::bpf_xdp_query_opts = unsafe { core::mem::zeroed() };
        q.sz = core::mem::size_of_val(&q) as _;
        // SAFETY: `q` is a live options struct of the size we declared.
        let ret = unsafe { libbpf_rs::libbpf_sys::bpf_xdp_query(ifindex as i32, 0, &mut q) };
        if ret < 0 {
            continue;
        }
        for (prog_id, flags) in
            [(q.drv_prog_id, XDP_FLAGS_DRV_MODE), (q.skb_prog_id, XDP_FLAGS_SKB_MODE)]
        {
            let ours = prog_name(prog_id).is_some_and(|n| {
                [PROG_NAME, FWD_PROG_NAME, REDIRECT_PROG_NAME].contains(&n.as_str())
            });
            if prog_id == 0 || !ours {
                continue;
            }
            if held_by_a_process(prog_id) {
                done.push(CleanupAction::InUse { ifname: ifname.clone(), prog_id });
                continue;
            }
            netlink_detach(ifindex, flags)
                .map_err(|e| NicError::sys("detach XDP program", ifname.clone(), e))?;
            done.push(CleanupAction::Detached { ifname: ifname.clone(), prog_id });
        }
    }
    Ok(done)
}

/// Name of the BPF program with id `id`.
fn prog_name(id: u32) -> Option<String> {
    libbpf_rs::query::ProgInfoIter::default()
        .find(|p| p.id == id)
        .map(|p| p.name.to_string_lossy().into_owned())
}

/// Whether a live process holds the program with id `id` (through the program itself or a BPF
/// link to it): a running xdpos, whose attachment must not be touched. Reads every
/// `/proc/<pid>/fdinfo/<fd>` for a `prog_id:` line.
fn held_by_a_process(id: u32) -> bool {
    let needle = format!("prog_id:\t{id}\n");
    let Ok(procs) = std::fs::read_dir("/proc") else { return false };
    procs.filter_map(Result::ok).any(|p| {
        let Ok(fds) = std::fs::read_dir(p.path().join("fdinfo")) else { return false };
        fds.filter_map(Result::ok)
            .any(|f| std::fs::read_to_string(f.path()).is_ok_and(|info| info.contains(&needle)))
    })
}

/// Interfaces of the calling thread's network namespace.
fn interfaces() -> Vec<(u32, String)> {
    let mut out = Vec::new();
    // SAFETY: if_nameindex returns a heap array terminated by a zero entry, or null; we free it
    // with if_freenameindex after copying the names.
    unsafe {
        let list = libc::if_nameindex();
        if list.is_null() {
            return out;
        }
        let mut p = list;
        while (*p).if_index != 0 {
            let name = std::ffi::CStr::from_ptr((*p).if_name).to_string_lossy().into_owned();
            out.push(((*p).if_index, name));
            p = p.add(1);
        }
        libc::if_freenameindex(list);
    }
    out
}

/// The verdict counters of the map `verdicts`, summed over CPUs.
fn read_verdicts(verdicts: &MapHandle) -> Result<Verdicts, NicError> {
    let read = |idx: u32| -> Result<Counter, NicError> {
        let per_cpu = verdicts
            .lookup_percpu(&idx.to_ne_bytes(), MapFlags::ANY)
            .map_err(|source| NicError::Bpf {
                what: "cannot read verdict counters".into(),
                source,
            })?
            .unwrap_or_default();
        let mut c = Counter::default();
        for v in per_cpu {
            if v.len() >= 16 {
                c.packets += u64::from_ne_bytes(v[0..8].try_into().unwrap_or_default());
                c.bytes += u64::from_ne_bytes(v[8..16].try_into().unwrap_or_default());
            }
        }
        Ok(c)
    };
    Ok(Verdicts {
        redirect: read(0)?,
        pass_not_owned: read(1)?,
        pass_no_socket: read(2)?,
        pass_unparsed: read(3)?,
    })
}

/// Reads a steering program's verdict counters from any thread ([`XdpProgram::verdict_reader`]).
#[derive(Debug)]
pub struct VerdictReader {
    map: MapHandle,
    ifname: String,
}

impl VerdictReader {
    /// The counters now, summed over CPUs.
    pub fn read(&self) -> Result<Verdicts, NicError> {
        read_verdicts(&self.map)
    }

    /// The interface of the program.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }
}
