//! # DPDK backend (feature `dpdk`)
//!
//! What it is: DPDK poll-mode drivers behind the same batched [`Port`] trait as AF_XDP, so the
//! libos stack, the worker loop and the forwarding roles run unchanged on SR-IOV VFs,
//! virtio-user, vhost or DPDK's virtual devices (`net_af_packet`, `net_af_xdp`, `net_tap`,
//! `net_ring`, `net_null`). It links Debian's DPDK 22.11 (`dpdk-dev`); DPDK's inline fast-path
//! functions are reached through a small C shim (`nic/dpdk/shim.c`, one call per burst each
//! way).
//!
//! - [`Eal`]: DPDK's environment, initialised **once per process** from an [`EalConfig`]
//!   (cores, memory, `--no-huge`, virtual devices or PCI addresses, no shared runtime
//!   files so several processes can run side by side). Asking again with the same arguments
//!   returns the same handle; other arguments are an error. [`cleanup`] releases it at the end
//!   (`rte_eal_cleanup`), after every device and pool is gone; nothing can start it again in
//!   that process.
//! - [`Pool`]: one mempool of frames (mbufs), numbered at creation: frame `i` is the mbuf whose
//!   dynamic field `xdpos_frame_index` says `i`. One pool per worker.
//! - [`Device`]: one ethdev port, configured with `queues` queue pairs (RX queue `q` takes its
//!   mbufs from `pools[q]`), the offloads the device has (checksums, TSO) switched on, started;
//!   stopped and closed when the last handle goes.
//! - [`DpdkGroup`]: what one worker polls: queue `q` of one or more devices, all receiving into
//!   the worker's pool, so a frame received on one device is transmitted from the same mbuf on
//!   another (like [`crate::afxdp::XskGroup`]'s shared UMEM). [`DpdkGroupPort`] is the port
//!   view of one member; [`DpdkPort`] is a group of one.
//!
//! Frames and descriptors: a [`Desc`]'s `addr` is `index << 16 | offset` (the mbuf's frame
//! index, and the offset of the frame's first byte in the mbuf's buffer, which is `data_off`
//! for a received frame), so `frame()` finds the bytes without touching the mbuf. A frame is
//! held by the user from `rx_burst`/`alloc_burst` until `tx_burst`/`free` (a bitmap, as in the
//! other backends); a descriptor the user does not hold is counted
//! ([`PortStats::invalid_descs`]) and ignored by `free`/`tx_burst` and panics in `frame`,
//! `frame_mut` and `room_mut`. Received chains of several segments (the devices are configured
//! without scatter, so only a misbehaving driver makes them) and mbufs of another pool are freed
//! and counted.
//!
//! Offload metadata ([`NetHdr`]): on receive, an mbuf whose IPv4 and L4 checksums the device
//! verified (`RTE_MBUF_F_RX_IP_CKSUM_GOOD` and `RTE_MBUF_F_RX_L4_CKSUM_GOOD`) carries
//! [`Csum::Valid`]. On transmit, [`Csum::Partial`] becomes `RTE_MBUF_F_TX_UDP_CKSUM` or
//! `_TCP_CKSUM` (with `l2_len`/`l3_len`) on a device with checksum offload, and is completed in
//! software otherwise ([`PortStats::tx_csum_sw`]); [`Gso::TcpV4`] becomes `RTE_MBUF_F_TX_TCP_SEG`
//! with `tso_segsz` and `l4_len` on a device with TSO (the checksum field already holds the
//! pseudo-header sum without the length, as DPDK wants) and is dropped and counted otherwise,
//! like on the other ports. [`tx_offload`] is that mapping.
//!
//! Frame accounting ([`FrameCounts`]): `total` frames of the pool; `held` by the user; `free`
//! in the pool (its ring and per-lcore caches); `fill` the rest, inside the devices: posted to
//! receive rings or queued for transmit (DPDK does not tell the two apart, and frees
//! transmitted mbufs itself, so `tx`, `completion` and `kernel` stay 0). After the devices
//! stop, every frame not held is free again ([`DpdkGroup::audit`] after [`Device::stop`]),
//! except with drivers that keep their receive buffers posted past stop and close
//! (`net_af_xdp` keeps the mbufs of its fill ring, 2048 per queue, until the pool is freed).
//!
//! Threads: a thread that polls a queue registers itself with EAL on its first burst
//! (`rte_thread_register`), which gives it an lcore id and so the pool's per-lcore cache.
//! EAL's own lcores are not used: xdpos's workers are its own threads, pinned by their owners.
//! `rte_eal_init` pins the calling thread to the main lcore; [`Eal::init`] restores the
//! thread's CPU set afterwards.
//!
//! Statistics: [`PortStats`] per queue as on every port, and per device [`Device::stats`]
//! (`rte_eth_stats`) and [`Device::xstats`] (every extended counter by name), for the metrics.
//!
//! Polling: in a group of several devices (a forwarding worker), a receive queue found empty
//! is skipped for the next [`IDLE_SKIP`] polls: net_af_xdp makes a system call on every empty
//! receive (its busy-poll wakeup, on by default), and the other queues keep the loop busy.
//!
//! What it never does on the fast path: allocate, lock, or call DPDK more than once per burst
//! and direction (`free_burst` frees in one bulk call).

mod ffi;

use std::collections::HashSet;
use std::ffi::{c_char, c_int, CStr, CString};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use libos::wire::{Csum, Gso, NetHdr};

use crate::offload;
use crate::port::{Caps, FrameCounts, Port, PortStats};
use crate::virtq::{Burst, Desc, MAX_BURST};
use crate::NicError;

/// Bytes of an mbuf's data room behind the headroom: one standard Ethernet frame and more.
pub const FRAME_ROOM: u16 = 2048;
/// Bits of [`Desc::addr`] that hold the offset into the frame's buffer.
const ADDR_SHIFT: u32 = 16;
const ADDR_MASK: u64 = (1 << ADDR_SHIFT) - 1;

fn err(what: impl Into<String>, why: impl Into<String>) -> NicError {
    NicError::Dpdk { what: what.into(), why: why.into() }
}

/// DPDK's error code (a negative errno, or `rte_errno`) as text.
fn code(rc: c_int) -> String {
    let e = rc.unsigned_abs() as i32;
    format!("{} (errno {e})", std::io::Error::from_raw_os_error(e))
}

// ---------------------------------------------------------------------------------------------
// The environment.

/// How EAL starts (`rte_eal_init`'s command line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EalConfig {
    /// EAL's lcores (`-l`); only the main lcore is used (by EAL's own service threads), the
    /// workers are xdpos's threads.
    pub lcores: String,
    /// Memory to reserve, MiB (`-m`).
    pub memory_mb: u32,
    /// Use hugepages (false: `--no-huge`, anonymous memory: fine for virtual devices and
    /// tests, not for most physical NICs).
    pub huge: bool,
    /// No shared runtime files, so any number of processes can run at once: `--in-memory`
    /// with hugepages; without them (EAL refuses `--in-memory` beside `--no-huge`)
    /// `--no-shconf` and a file prefix of this process's own (`xdpos-<pid>` unless
    /// `file_prefix` says).
    pub in_memory: bool,
    /// `--file-prefix`.
    pub file_prefix: Option<String>,
    /// Virtual devices (`--vdev`), e.g. `net_af_packet0,iface=veth0`.
    pub vdevs: Vec<String>,
    /// PCI devices to use (`-a`); none: `--no-pci`.
    pub pci: Vec<String>,
    /// `--log-level` (e.g. `notice`, `lib.eal:debug`).
    pub log_level: String,
    /// Anything else, passed as it is.
    pub extra: Vec<String>,
}

impl Default for EalConfig {
    fn default() -> Self {
        EalConfig {
            lcores: "0".into(),
            memory_mb: 256,
            huge: false,
            in_memory: true,
            file_prefix: None,
            vdevs: Vec::new(),
            pci: Vec::new(),
            log_level: "notice".into(),
            extra: Vec::new(),
        }
    }
}

impl EalConfig {
    /// The file prefix EAL gets, if any.
    fn prefix(&self) -> Option<String> {
        match (&self.file_prefix, self.in_memory && !self.huge) {
            (Some(p), _) => Some(p.clone()),
            (None, true) => Some(format!("xdpos-{}", std::process::id())),
            (None, false) => None,
        }
    }

    /// EAL's command line for this configuration (program name first).
    pub fn args(&self) -> Vec<String> {
        let mut a = vec!["xdpos".to_string(), "-l".into(), self.lcores.clone()];
        a.extend(["-m".to_string(), self.memory_mb.to_string()]);
        if !self.huge {
            a.push("--no-huge".into());
        }
        if self.in_memory && self.huge {
            a.push("--in-memory".into());
        } else if self.in_memory {
            a.push("--no-shconf".into());
        }
        if let Some(p) = self.prefix() {
            a.extend(["--file-prefix".to_string(), p]);
        }
        if self.pci.is_empty() {
            a.push("--no-pci".into());
        }
        for p in &self.pci {
            a.extend(["-a".to_string(), p.clone()]);
        }
        for v in &self.vdevs {
            a.extend(["--vdev".to_string(), v.clone()]);
        }
        a.extend(["--no-telemetry".to_string(), "--log-level".into(), self.log_level.clone()]);
        a.extend(self.extra.iter().cloned());
        a
    }
}

#[derive(Debug)]
enum EalState {
    Down,
    Up(Vec<String>),
    Failed(String),
    Cleaned,
}

static EAL_STATE: Mutex<EalState> = Mutex::new(EalState::Down);
static EAL: Eal = Eal { _private: () };
/// Devices and pools alive (cleanup waits for none).
static LIVE: AtomicUsize = AtomicUsize::new(0);

/// The process's DPDK environment (see the module documentation).
#[derive(Debug)]
pub struct Eal {
    _private: (),
}

impl Eal {
    /// Starts EAL with `cfg`, once per process. Again with the same arguments: the same
    /// handle. With others, after a failure, or after [`cleanup`]: an error.
    pub fn init(cfg: &EalConfig) -> Result<&'static Eal, NicError> {
        let args = cfg.args();
        let mut state = EAL_STATE.lock().unwrap_or_else(|e| e.into_inner());
        match &*state {
            EalState::Up(a) if *a == args => return Ok(&EAL),
            EalState::Up(a) => {
                return Err(err(
                    "rte_eal_init",
                    format!("EAL runs already with {a:?}; one EAL per process, asked for {args:?}"),
                ))
            }
            EalState::Failed(e) => {
                return Err(err("rte_eal_init", format!("failed earlier in this process: {e}")))
            }
            EalState::Cleaned => {
                return Err(err("rte_eal_init", "EAL was cleaned up; it cannot start again"))
            }
            EalState::Down => {}
        }
        let mut owned = Vec::with_capacity(args.len());
        for a in &args {
            owned.push(
                CString::new(a.as_str())
                    .map_err(|_| err("rte_eal_init", format!("argument {a:?} holds a NUL")))?,
            );
        }
        // EAL may keep pointers into argv (and reorders it): the strings live for the process.
        let owned: &'static [CString] = Box::leak(owned.into_boxed_slice());
        let argv: &'static mut [*mut c_char] =
            Box::leak(owned.iter().map(|s| s.as_ptr().cast_mut()).collect::<Box<[_]>>());
        sweep_runtime_dirs();
        let cpus = thread_cpus();
        // SAFETY: argv holds argc valid NUL-terminated strings that live for the process;
        // EAL_STATE's lock makes this the only call in the process.
        let rc = unsafe { ffi::rte_eal_init(argv.len() as c_int, argv.as_mut_ptr()) };
        if let Some(set) = cpus {
            restore_thread_cpus(&set);
        }
        if rc < 0 {
            // SAFETY: reads the calling thread's rte_errno, set by the failed call.
            let why = code(unsafe { ffi::xdpos_rte_errno() });
            *state = EalState::Failed(why.clone());
            return Err(err(format!("rte_eal_init {args:?}"), why));
        }
        *state = EalState::Up(args);
        Ok(&EAL)
    }

    /// The running environment, if [`Eal::init`] succeeded and [`cleanup`] has not run.
    pub fn get() -> Option<&'static Eal> {
        let state = EAL_STATE.lock().unwrap_or_else(|e| e.into_inner());
        matches!(&*state, EalState::Up(_)).then_some(&EAL)
    }
}

/// Releases EAL (`rte_eal_cleanup`) once every [`Device`] and [`Pool`] is gone; the process
/// cannot start EAL again. Without a running EAL: nothing to do.
pub fn cleanup() -> Result<(), NicError> {
    let mut state = EAL_STATE.lock().unwrap_or_else(|e| e.into_inner());
    if !matches!(&*state, EalState::Up(_)) {
        return Ok(());
    }
    let live = LIVE.load(Ordering::Acquire);
    if live > 0 {
        return Err(err("rte_eal_cleanup", format!("{live} devices or pools are still open")));
    }
    // SAFETY: EAL is up, no device or pool of ours is alive (LIVE), and the state becomes
    // Cleaned so nothing calls into DPDK through nic again.
    let rc = unsafe { ffi::rte_eal_cleanup() };
    if let EalState::Up(args) = &*state {
        // EAL's runtime directory of this process (`--file-prefix`), when running as root.
        if let Some(p) = args.iter().position(|a| a == "--file-prefix") {
            if let Some(prefix) = args.get(p + 1) {
                let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{prefix}"));
            }
        }
    }
    *state = EalState::Cleaned;
    if rc < 0 {
        return Err(err("rte_eal_cleanup", code(rc)));
    }
    Ok(())
}

/// Removes EAL's runtime directories (`/var/run/dpdk/xdpos-<pid>…`) of xdpos processes that
/// are gone: EAL leaves them behind (a test binary never cleans up, a killed process cannot).
fn sweep_runtime_dirs() {
    let Ok(entries) = std::fs::read_dir("/var/run/dpdk") else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("xdpos-") else { continue };
        let pid: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if !pid.is_empty() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// The calling thread's CPU set.
fn thread_cpus() -> Option<libc::cpu_set_t> {
    // SAFETY: cpu_set_t is plain data; zero is an empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid cpu_set_t of the size passed.
    let rc = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) };
    (rc == 0).then_some(set)
}

fn restore_thread_cpus(set: &libc::cpu_set_t) {
    // SAFETY: `set` is a valid cpu_set_t of the size passed.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(set), set) };
    if rc != 0 {
        tracing::warn!("dpdk: cannot restore the thread's CPU set after rte_eal_init");
    }
}

// ---------------------------------------------------------------------------------------------
// Frame memory.

#[derive(Debug)]
struct PoolInner {
    name: String,
    mp: *mut ffi::RteMempool,
    /// Frame index → mbuf.
    mbufs: Box<[*mut ffi::RteMbuf]>,
    /// Frame index → its buffer (`buf_addr`, fixed for the pool's life).
    bufs: Box<[*mut u8]>,
    buf_len: u16,
    headroom: u16,
}

// SAFETY: the pointers are to DPDK memory that lives until the pool is freed (in Drop, when
// no device and no group uses it any more); DPDK's mempool operations are thread-safe, and
// the frames themselves are only touched by the group that holds them (its bitmap).
unsafe impl Send for PoolInner {}
// SAFETY: as above; shared references only read the tables.
unsafe impl Sync for PoolInner {}

impl Drop for PoolInner {
    fn drop(&mut self) {
        // SAFETY: the last handle is gone: no device RX queue (devices hold a handle until
        // closed) and no group uses the pool.
        unsafe { ffi::rte_mempool_free(self.mp) };
        LIVE.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A pool of frames (mbufs), numbered (see the module documentation).
#[derive(Debug, Clone)]
pub struct Pool {
    inner: Arc<PoolInner>,
}

impl Pool {
    /// Creates a pool of `frames` mbufs of [`FRAME_ROOM`] bytes behind DPDK's headroom, with a
    /// per-lcore cache, on NUMA node `socket` (-1: any). `name` must be unique in the process.
    pub fn create(_eal: &Eal, name: &str, frames: u32, socket: i32) -> Result<Pool, NicError> {
        let what = || format!("create pool {name:?} of {frames} frames");
        if !(64..=(1 << 24)).contains(&frames) {
            return Err(err(what(), "frames must be in 64..=16777216"));
        }
        let cname = CString::new(name).map_err(|_| err(what(), "name holds a NUL"))?;
        let n = frames as usize;
        let mut mbufs = vec![std::ptr::null_mut(); n].into_boxed_slice();
        let mut bufs = vec![std::ptr::null_mut(); n].into_boxed_slice();
        let (mut buf_len, mut headroom) = (0u16, 0u16);
        // Per-lcore cache: DPDK wants n / cache >= 1.5 and at most 512.
        let cache = (frames / 4).min(256);
        // SAFETY: the tables have `frames` entries each; the name is NUL-terminated; EAL is
        // up (the caller holds an `&Eal`).
        let mp = unsafe {
            ffi::xdpos_pool_create(
                cname.as_ptr(),
                frames,
                cache,
                FRAME_ROOM + 128,
                socket,
                mbufs.as_mut_ptr(),
                bufs.as_mut_ptr(),
                &mut buf_len,
                &mut headroom,
            )
        };
        if mp.is_null() {
            // SAFETY: reads this thread's rte_errno, set by the failed call.
            return Err(err(what(), code(unsafe { ffi::xdpos_rte_errno() })));
        }
        LIVE.fetch_add(1, Ordering::AcqRel);
        Ok(Pool {
            inner: Arc::new(PoolInner {
                name: name.to_string(),
                mp,
                mbufs,
                bufs,
                buf_len,
                headroom,
            }),
        })
    }

    /// Frames in the pool.
    pub fn frames(&self) -> u32 {
        self.inner.mbufs.len() as u32
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Frames available in the pool (its ring and caches).
    pub fn available(&self) -> u32 {
        // SAFETY: the pool is alive while `self` is.
        unsafe { ffi::xdpos_pool_avail(self.inner.mp) }
    }

    /// Frames taken from the pool (held by users or inside devices).
    pub fn in_use(&self) -> u32 {
        // SAFETY: the pool is alive while `self` is.
        unsafe { ffi::rte_mempool_in_use_count(self.inner.mp) }
    }
}

// ---------------------------------------------------------------------------------------------
// Devices.

/// How one device is opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceConfig {
    /// The device as EAL names it: a virtual device's name (`net_af_packet0`) or a PCI address
    /// (`0000:03:00.0`).
    pub name: String,
    /// Queue pairs (one per worker).
    pub queues: u16,
    /// Descriptors per RX ring (adjusted to the device's limits).
    pub rx_ring: u16,
    /// Descriptors per TX ring (adjusted to the device's limits).
    pub tx_ring: u16,
    /// Switch on the checksum and TSO offloads the device has.
    pub offloads: bool,
    /// Receive every frame, not only those to the device's MAC.
    pub promiscuous: bool,
}

impl DeviceConfig {
    /// One queue pair, 1024-descriptor rings, offloads on, promiscuous.
    pub fn new(name: &str) -> DeviceConfig {
        DeviceConfig {
            name: name.to_string(),
            queues: 1,
            rx_ring: 1024,
            tx_ring: 1024,
            offloads: true,
            promiscuous: true,
        }
    }
}

/// Counters of a device (`rte_eth_stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EthStats {
    /// Frames received.
    pub rx_packets: u64,
    /// Frames sent.
    pub tx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Frames the device dropped for want of room (RX ring full).
    pub rx_missed: u64,
    /// Erroneous frames received.
    pub rx_errors: u64,
    /// Failed transmissions.
    pub tx_errors: u64,
    /// Receive failures for want of an mbuf.
    pub rx_nombuf: u64,
}

#[derive(Debug)]
struct DevInner {
    port: u16,
    name: String,
    driver: String,
    mac: [u8; 6],
    caps: Caps,
    queues: u16,
    rx_ring: u16,
    tx_ring: u16,
    /// RX queue q's pool (kept alive until the device is closed).
    pools: Vec<Pool>,
    /// Queues some group polls.
    claimed: Mutex<HashSet<u16>>,
    stopped: Mutex<bool>,
    /// Cleared (under the lock) just before the port closes: what [`StatsReader`]s check.
    open: Arc<Mutex<bool>>,
}

impl DevInner {
    fn stop(&self) -> Result<(), NicError> {
        let mut stopped = self.stopped.lock().unwrap_or_else(|e| e.into_inner());
        if *stopped {
            return Ok(());
        }
        *stopped = true;
        // SAFETY: the port is a started port of ours; once stopped, no group polls it (they
        // check `stopped` at creation, and stop is only called with none alive or explicitly
        // by the owner after its workers ended, see Device::stop).
        let rc = unsafe { ffi::rte_eth_dev_stop(self.port) };
        if rc != 0 {
            return Err(err(format!("stop {}", self.name), code(rc)));
        }
        Ok(())
    }
}

impl Drop for DevInner {
    fn drop(&mut self) {
        // Readers see the device closed from here on (and a read in progress ends first).
        let open = self.open.clone();
        let mut open = open.lock().unwrap_or_else(|e| e.into_inner());
        *open = false;
        if let Err(e) = self.stop() {
            tracing::warn!("{e}");
        }
        // SAFETY: the last handle is gone, the port is stopped; closing releases its queues
        // (and their mbufs) before the pools are dropped below.
        let rc = unsafe { ffi::rte_eth_dev_close(self.port) };
        if rc != 0 {
            tracing::warn!(device = %self.name, "dpdk: close: {}", code(rc));
        }
        LIVE.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An open, started DPDK port (see the module documentation). Clones share it; the last one
/// stops and closes it.
#[derive(Debug, Clone)]
pub struct Device {
    inner: Arc<DevInner>,
}

impl Device {
    /// Opens the device `cfg.name` with one queue pair per pool (RX queue `q` receives into
    /// `pools[q]`), switches on the offloads it has (if `cfg.offloads`), and starts it.
    pub fn open(_eal: &Eal, cfg: &DeviceConfig, pools: &[Pool]) -> Result<Device, NicError> {
        let what = || format!("open {}", cfg.name);
        if pools.len() != usize::from(cfg.queues) || cfg.queues == 0 {
            return Err(err(what(), format!("{} queues need as many pools", cfg.queues)));
        }
        let cname = CString::new(cfg.name.as_str()).map_err(|_| err(what(), "NUL in name"))?;
        let mut port = 0u16;
        // SAFETY: a NUL-terminated name and a valid out pointer.
        let rc = unsafe { ffi::rte_eth_dev_get_port_by_name(cname.as_ptr(), &mut port) };
        if rc != 0 {
            return Err(err(
                what(),
                format!("no such device (give it to EAL: --vdev or a PCI address): {}", code(rc)),
            ));
        }
        let mut info = ffi::DevInfo::ZERO;
        // SAFETY: a valid port id and out pointer.
        let rc = unsafe { ffi::xdpos_dev_info(port, &mut info) };
        if rc != 0 {
            return Err(err(what(), format!("device info: {}", code(rc))));
        }
        if cfg.queues > info.max_rx_queues.min(info.max_tx_queues) {
            return Err(err(
                what(),
                format!(
                    "{} queue pairs asked, the device has {} RX and {} TX queues",
                    cfg.queues, info.max_rx_queues, info.max_tx_queues
                ),
            ));
        }
        let (rx_csum, tx_csum, tso) = if cfg.offloads {
            (info.rx_csum != 0, info.tx_csum != 0, info.tso != 0)
        } else {
            (false, false, false)
        };
        let (mut rx_ring, mut tx_ring) = (cfg.rx_ring, cfg.tx_ring);
        let mps: Vec<*mut ffi::RteMempool> = pools.iter().map(|p| p.inner.mp).collect();
        // SAFETY: a valid port; the ring sizes are in/out pointers; `mps` has `queues` live
        // pools, kept alive by the device (`pools` below) until it is closed.
        let rc = unsafe {
            ffi::xdpos_dev_setup(
                port,
                cfg.queues,
                &mut rx_ring,
                &mut tx_ring,
                u8::from(rx_csum),
                u8::from(tx_csum),
                u8::from(tso),
                u8::from(cfg.promiscuous),
                mps.as_ptr(),
            )
        };
        // From here on the device is ours to close, whatever happens.
        LIVE.fetch_add(1, Ordering::AcqRel);
        let buf_room = pools.iter().map(|p| p.inner.buf_len - p.inner.headroom).min();
        // SAFETY: `driver` is NUL-terminated by the shim (strncpy of 63 bytes into 64 zeros).
        let driver = unsafe { CStr::from_ptr(info.driver.as_ptr()) }.to_string_lossy().into();
        let dev = Device {
            inner: Arc::new(DevInner {
                port,
                name: cfg.name.clone(),
                driver,
                mac: info.mac,
                caps: Caps {
                    rx_csum,
                    tx_csum,
                    tso,
                    rx_gro: false,
                    zero_copy: false,
                    max_frame: usize::from(buf_room.unwrap_or(FRAME_ROOM)),
                },
                queues: cfg.queues,
                rx_ring,
                tx_ring,
                pools: pools.to_vec(),
                claimed: Mutex::new(HashSet::new()),
                stopped: Mutex::new(rc != 0),
                open: Arc::new(Mutex::new(true)),
            }),
        };
        if rc != 0 {
            return Err(err(format!("configure and start {}", cfg.name), code(rc)));
        }
        tracing::info!(
            device = %cfg.name, port, driver = %dev.inner.driver, queues = cfg.queues,
            rx_ring, tx_ring, rx_csum, tx_csum, tso, "dpdk device started"
        );
        Ok(dev)
    }

    /// The device's name as EAL knows it.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// DPDK's port id.
    pub fn port_id(&self) -> u16 {
        self.inner.port
    }

    /// The driver's name (`net_af_packet`, `net_ring`, …).
    pub fn driver(&self) -> &str {
        &self.inner.driver
    }

    /// The device's MAC address.
    pub fn mac(&self) -> [u8; 6] {
        self.inner.mac
    }

    /// What the device does below the stack (the offloads switched on).
    pub fn caps(&self) -> Caps {
        self.inner.caps
    }

    /// Queue pairs.
    pub fn queues(&self) -> u16 {
        self.inner.queues
    }

    /// RX and TX ring sizes, as adjusted to the device.
    pub fn rings(&self) -> (u16, u16) {
        (self.inner.rx_ring, self.inner.tx_ring)
    }

    /// The device's counters.
    pub fn stats(&self) -> Result<EthStats, NicError> {
        eth_stats(self.inner.port, &self.inner.name)
    }

    /// Every extended counter of the device, by name (control path: allocates).
    pub fn xstats(&self) -> Result<Vec<(String, u64)>, NicError> {
        eth_xstats(self.inner.port, &self.inner.name)
    }

    /// A reader of the device's counters that does not keep it open (for a metrics endpoint
    /// that may outlive it).
    pub fn stats_reader(&self) -> StatsReader {
        StatsReader {
            port: self.inner.port,
            name: self.inner.name.clone(),
            driver: self.inner.driver.clone(),
            open: self.inner.open.clone(),
        }
    }

    /// Stops the device (no more receive or transmit; its RX rings give their mbufs back).
    /// Call only once every group polling it has stopped polling (the workers ended); the
    /// groups may then still audit and be dropped. Closing happens when the last handle goes.
    pub fn stop(&self) -> Result<(), NicError> {
        self.inner.stop()
    }
}

/// `rte_eth_stats` of an open port.
fn eth_stats(port: u16, name: &str) -> Result<EthStats, NicError> {
    let mut s = ffi::EthStatsC::default();
    // SAFETY: an open port of ours (the callers hold a handle or its open flag) and an out
    // pointer.
    let rc = unsafe { ffi::xdpos_stats_get(port, &mut s) };
    if rc != 0 {
        return Err(err(format!("stats of {}", name), code(rc)));
    }
    Ok(EthStats {
        rx_packets: s.ipackets,
        tx_packets: s.opackets,
        rx_bytes: s.ibytes,
        tx_bytes: s.obytes,
        rx_missed: s.imissed,
        rx_errors: s.ierrors,
        tx_errors: s.oerrors,
        rx_nombuf: s.rx_nombuf,
    })
}

/// The extended counters of an open port, by name (control path: allocates).
fn eth_xstats(port: u16, name: &str) -> Result<Vec<(String, u64)>, NicError> {
    let what = || format!("xstats of {}", name);
    // SAFETY: an open port of ours; n = 0 only asks for the count, no buffer is written.
    let n = unsafe { ffi::xdpos_xstats(port, std::ptr::null_mut(), std::ptr::null_mut(), 0) };
    if n < 0 {
        return Err(err(what(), code(n)));
    }
    let n = n as usize;
    if n == 0 {
        return Ok(Vec::new());
    }
    let mut names = vec![0 as c_char; 64 * n];
    let mut values = vec![0u64; n];
    // SAFETY: `names` holds n names of 64 bytes, `values` n counters.
    let got = unsafe { ffi::xdpos_xstats(port, names.as_mut_ptr(), values.as_mut_ptr(), n as u32) };
    if got < 0 {
        return Err(err(what(), code(got)));
    }
    let got = (got as usize).min(n);
    Ok((0..got)
        .map(|i| {
            let raw = &names[64 * i..64 * (i + 1)];
            let bytes: Vec<u8> = raw.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
            (String::from_utf8_lossy(&bytes).into_owned(), values[i])
        })
        .collect())
}

/// Reads one device's counters without keeping it open (see [`Device::stats_reader`]): once
/// the device is closed (or EAL is gone, which needs every device closed first) a read answers
/// `None`; a read in progress delays the close until it is done.
#[derive(Debug, Clone)]
pub struct StatsReader {
    port: u16,
    name: String,
    driver: String,
    open: Arc<Mutex<bool>>,
}

impl StatsReader {
    /// The device's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its driver's name.
    pub fn driver(&self) -> &str {
        &self.driver
    }

    /// The device's counters and extended counters, while it is open.
    pub fn read(&self) -> Option<(EthStats, Vec<(String, u64)>)> {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if !*open {
            return None;
        }
        let stats = eth_stats(self.port, &self.name).ok()?;
        Some((stats, eth_xstats(self.port, &self.name).unwrap_or_default()))
    }
}

// ---------------------------------------------------------------------------------------------
// Groups and ports.

#[derive(Debug)]
struct Member {
    dev: Device,
    port: u16,
    queue: u16,
    caps: Caps,
    stats: PortStats,
    /// Polls of this queue still to skip after it was found empty (groups of several).
    skip: u32,
}

/// In a group of several devices, polls of a queue skipped after it was found empty: polling
/// an empty queue costs a system call with some drivers (net_af_xdp wakes the kernel on every
/// empty receive when busy polling is configured, its default), and in a forwarding worker the
/// other queues keep the loop busy meanwhile. The price: at most this many loop iterations of
/// extra latency for the first frame on a queue that was idle.
pub const IDLE_SKIP: u32 = 3;

/// What one worker polls: queue `queue` of each of its devices, one pool (see the module
/// documentation).
#[derive(Debug)]
pub struct DpdkGroup {
    pool: Pool,
    mp: *mut ffi::RteMempool,
    frames: usize,
    buf_len: usize,
    headroom: usize,
    burst: usize,
    held: Box<[u64]>,
    held_count: u32,
    members: Vec<Member>,
    scratch: Box<[*mut ffi::RteMbuf]>,
    rx_meta: Box<[ffi::RxMeta]>,
    tx_meta: Box<[ffi::TxMeta]>,
    idx: Box<[u32]>,
    offs: Box<[u16]>,
}

// SAFETY: the group is the only user of its queues (claimed in `new`, released on drop) and of
// the frames its bitmap holds; the pool's operations are thread-safe. Moving the group to
// another thread moves all of that with it.
unsafe impl Send for DpdkGroup {}

impl Drop for DpdkGroup {
    fn drop(&mut self) {
        for m in &self.members {
            let mut c = m.dev.inner.claimed.lock().unwrap_or_else(|e| e.into_inner());
            c.remove(&m.queue);
        }
    }
}

impl DpdkGroup {
    /// A group polling queue `queue` of each device in `devs` (in port order), whose RX queue
    /// `queue` must receive into `pool`; `burst` frames at most per `rx_burst`. Fails if a
    /// queue is polled by another group already.
    pub fn new(
        pool: &Pool,
        devs: &[Device],
        queue: u16,
        burst: usize,
    ) -> Result<DpdkGroup, NicError> {
        if !(1..=MAX_BURST).contains(&burst) {
            return Err(err("group", format!("burst {burst} outside 1..={MAX_BURST}")));
        }
        let mut members = Vec::with_capacity(devs.len());
        let mut claimed: Vec<(&Device, u16)> = Vec::new();
        let release = |claimed: &[(&Device, u16)]| {
            for (d, q) in claimed {
                d.inner.claimed.lock().unwrap_or_else(|e| e.into_inner()).remove(q);
            }
        };
        for d in devs {
            let what = format!("poll {} queue {queue}", d.name());
            let fail = |why: String| {
                release(&claimed);
                Err(err(what.clone(), why))
            };
            if queue >= d.queues() {
                return fail(format!("the device has {} queues", d.queues()));
            }
            if !Arc::ptr_eq(&d.inner.pools[usize::from(queue)].inner, &pool.inner) {
                return fail("that queue receives into another pool".into());
            }
            if *d.inner.stopped.lock().unwrap_or_else(|e| e.into_inner()) {
                return fail("the device is stopped".into());
            }
            if !d.inner.claimed.lock().unwrap_or_else(|e| e.into_inner()).insert(queue) {
                return fail("another group polls it".into());
            }
            claimed.push((d, queue));
            members.push(Member {
                dev: d.clone(),
                port: d.port_id(),
                queue,
                caps: d.caps(),
                stats: PortStats::default(),
                skip: 0,
            });
        }
        let frames = pool.inner.mbufs.len();
        Ok(DpdkGroup {
            pool: pool.clone(),
            mp: pool.inner.mp,
            frames,
            buf_len: usize::from(pool.inner.buf_len),
            headroom: usize::from(pool.inner.headroom),
            burst,
            held: vec![0u64; frames.div_ceil(64)].into_boxed_slice(),
            held_count: 0,
            members,
            scratch: vec![std::ptr::null_mut(); MAX_BURST].into_boxed_slice(),
            rx_meta: vec![ffi::RxMeta::ZERO; MAX_BURST].into_boxed_slice(),
            tx_meta: vec![ffi::TxMeta::ZERO; MAX_BURST].into_boxed_slice(),
            idx: vec![0u32; MAX_BURST].into_boxed_slice(),
            offs: vec![0u16; MAX_BURST].into_boxed_slice(),
        })
    }

    /// Members (devices polled).
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the group polls nothing.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The port view of member `i`.
    ///
    /// # Panics
    /// If `i` is not a member.
    pub fn port(&mut self, i: usize) -> DpdkGroupPort<'_> {
        assert!(i < self.members.len(), "dpdk group: no member {i} of {}", self.members.len());
        DpdkGroupPort { g: self, i }
    }

    /// The device of member `i`.
    pub fn device(&self, i: usize) -> Option<&Device> {
        self.members.get(i).map(|m| &m.dev)
    }

    /// The queue every member polls.
    pub fn queue(&self) -> u16 {
        self.members.first().map_or(0, |m| m.queue)
    }

    /// The pool.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Counters of member `i`.
    pub fn stats(&self, i: usize) -> PortStats {
        self.members[i].stats
    }

    /// What member `i` does below the stack.
    pub fn caps(&self, i: usize) -> Caps {
        self.members[i].caps
    }

    /// The bytes of a held frame (any member's).
    pub fn frame(&self, desc: &Desc) -> &[u8] {
        let (idx, off) = self.checked(desc, "frame");
        // SAFETY: `checked` proved the frame is held by the user (so no device writes it) and
        // that `off + len` lies within its buffer of `buf_len` bytes.
        unsafe { std::slice::from_raw_parts(self.pool.inner.bufs[idx].add(off), desc.len as usize) }
    }

    fn frame_mut(&mut self, desc: &Desc) -> &mut [u8] {
        let (idx, off) = self.checked(desc, "frame_mut");
        // SAFETY: as in `frame`; `&mut self` makes this the only slice of the group alive.
        unsafe {
            std::slice::from_raw_parts_mut(self.pool.inner.bufs[idx].add(off), desc.len as usize)
        }
    }

    fn room_mut(&mut self, desc: &Desc) -> &mut [u8] {
        let (idx, off) = self.checked(&Desc { len: 0, ..*desc }, "room_mut");
        // SAFETY: held frame, `off <= buf_len` (checked with len 0); `&mut self` as above.
        unsafe {
            std::slice::from_raw_parts_mut(self.pool.inner.bufs[idx].add(off), self.buf_len - off)
        }
    }

    /// Frame accounting of the pool (see the module documentation).
    pub fn frame_counts(&self) -> FrameCounts {
        let total = self.frames as u32;
        let free = self.pool.available().min(total);
        let held = self.held_count;
        FrameCounts {
            total,
            free,
            held,
            fill: total.saturating_sub(free).saturating_sub(held),
            ..FrameCounts::default()
        }
    }

    /// Checks the accounting: the states add up, and (once the devices are stopped, for
    /// drivers that give their receive buffers back at stop: not `net_af_xdp`) every frame
    /// not held is back in the pool.
    pub fn audit(&self) -> Result<FrameCounts, NicError> {
        let c = self.frame_counts();
        c.check()?;
        let in_use = self.pool.in_use();
        if in_use < self.held_count {
            return Err(NicError::Accounting(c));
        }
        let stopped = self.members.iter().all(|m| {
            m.dev.driver() != "net_af_xdp"
                && *m.dev.inner.stopped.lock().unwrap_or_else(|e| e.into_inner())
        });
        if stopped && (c.fill != 0 || in_use != self.held_count) {
            return Err(NicError::Accounting(c));
        }
        Ok(c)
    }

    /// Sleeps up to `max` (at most 200 µs: virtual devices have no receive interrupt, so a
    /// sleeping worker wakes and polls again soon).
    pub fn idle_wait(&mut self, max: Duration) {
        std::thread::sleep(max.min(Duration::from_micros(200)));
    }

    #[inline]
    fn is_held(&self, idx: usize) -> bool {
        self.held[idx / 64] & (1 << (idx % 64)) != 0
    }

    #[inline]
    fn set_held(&mut self, idx: usize, on: bool) {
        let (w, bit) = (idx / 64, 1u64 << (idx % 64));
        if on {
            self.held[w] |= bit;
            self.held_count += 1;
        } else {
            self.held[w] &= !bit;
            self.held_count -= 1;
        }
    }

    /// (frame index, offset) of a descriptor of a held frame whose bytes fit its buffer.
    #[inline]
    fn valid(&self, desc: &Desc) -> Option<(usize, usize)> {
        let idx = (desc.addr >> ADDR_SHIFT) as usize;
        let off = (desc.addr & ADDR_MASK) as usize;
        (idx < self.frames && self.is_held(idx) && off + desc.len as usize <= self.buf_len)
            .then_some((idx, off))
    }

    fn checked(&self, desc: &Desc, what: &str) -> (usize, usize) {
        match self.valid(desc) {
            Some(v) => v,
            None => {
                let idx = desc.addr >> ADDR_SHIFT;
                panic!(
                    "dpdk port: {what}: frame {idx} (addr {:#x}, len {}) is not held by the caller \
                     or runs past its buffer of {} bytes ({} frames)",
                    desc.addr, desc.len, self.buf_len, self.frames
                )
            }
        }
    }

    fn rx(&mut self, i: usize, out: &mut Burst) -> usize {
        let want = self.burst.min(out.spare());
        if want == 0 {
            return 0;
        }
        if self.members[i].skip > 0 {
            self.members[i].skip -= 1;
            return 0;
        }
        let (port, queue) = (self.members[i].port, self.members[i].queue);
        // SAFETY: scratch and rx_meta have MAX_BURST >= want entries; this group alone polls
        // (port, queue) (claimed in `new`), and the device is started (it stops only after
        // the owner's workers ended, see Device::stop).
        let got = unsafe {
            ffi::xdpos_rx(
                port,
                queue,
                self.scratch.as_mut_ptr(),
                self.rx_meta.as_mut_ptr(),
                want as u16,
            )
        } as usize;
        if got == 0 {
            if self.members.len() > 1 {
                self.members[i].skip = IDLE_SKIP;
            }
            return 0;
        }
        let (mut n, mut bytes, mut bad) = (0usize, 0u64, 0u32);
        for k in 0..got {
            let r = self.rx_meta[k];
            let idx = r.idx as usize;
            let ours = idx < self.frames && self.pool.inner.mbufs[idx] == r.m;
            if !ours || r.segs != 1 || self.is_held(idx) {
                // Another pool's mbuf, a chain, or a frame we hold (a driver bug): give it
                // back to DPDK (unless we hold it) and count it.
                if !(ours && self.is_held(idx)) {
                    self.scratch[bad as usize] = r.m;
                    bad += 1;
                }
                self.members[i].stats.invalid_descs += 1;
                continue;
            }
            self.set_held(idx, true);
            bytes += u64::from(r.len);
            let hdr = if r.csum != 0 {
                NetHdr { csum: Csum::Valid, ..NetHdr::NONE }
            } else {
                NetHdr::NONE
            };
            out.push(Desc {
                addr: ((idx as u64) << ADDR_SHIFT) | u64::from(r.off),
                len: u32::from(r.len),
                hdr,
            });
            n += 1;
        }
        if bad > 0 {
            // SAFETY: the first `bad` scratch entries are mbufs DPDK handed us that we do
            // not keep.
            unsafe { ffi::xdpos_free_bulk(self.scratch.as_mut_ptr(), bad) };
        }
        let s = &mut self.members[i].stats;
        s.rx_packets += n as u64;
        s.rx_bytes += bytes;
        s.rx_bursts += u64::from(n > 0);
        n
    }

    fn tx(&mut self, i: usize, batch: &mut Burst) -> usize {
        if batch.is_empty() {
            return 0;
        }
        let caps = self.members[i].caps;
        // Validate and prepare in place: descriptors that cannot go are freed, counted and
        // left out; the rest stay in order, with the header as it will be sent.
        let mut w = 0usize;
        let len = batch.len();
        for r in 0..len {
            let mut d = batch.as_slice()[r];
            let Some((idx, off)) = self.valid(&d) else {
                self.members[i].stats.invalid_descs += 1;
                continue;
            };
            let plan = {
                let frame = self.frame_mut(&d);
                tx_offload(frame, &mut d.hdr, &caps)
            };
            let plan = match plan {
                Ok(p) => p,
                Err(_) => {
                    self.members[i].stats.invalid_descs += 1;
                    self.free_one(i, &d);
                    continue;
                }
            };
            if plan.software_csum {
                self.members[i].stats.tx_csum_sw += 1;
            }
            self.tx_meta[w] = ffi::TxMeta {
                m: self.pool.inner.mbufs[idx],
                off: off as u16,
                len: d.len as u16,
                kind: plan.kind,
                l2_len: plan.l2_len,
                l3_len: plan.l3_len,
                l4_len: plan.l4_len,
                seg_size: plan.seg_size,
            };
            batch.as_mut_slice()[w] = d;
            w += 1;
        }
        let mut k = 0;
        batch.retain(|_| {
            k += 1;
            k <= w
        });
        if w == 0 {
            return 0;
        }
        let (port, queue) = (self.members[i].port, self.members[i].queue);
        // SAFETY: tx_meta[..w] name held mbufs of our pool with offsets and lengths inside
        // their buffers (validated above); this group alone uses (port, queue). The device
        // takes the first `sent` of them and frees them when transmitted; the rest stay ours.
        let sent = usize::from(unsafe {
            ffi::xdpos_tx(port, queue, self.tx_meta.as_ptr(), self.scratch.as_mut_ptr(), w as u16)
        });
        let mut bytes = 0u64;
        for k in 0..sent {
            let d = batch.as_slice()[k];
            self.set_held((d.addr >> ADDR_SHIFT) as usize, false);
            bytes += u64::from(d.len);
        }
        batch.consume_front(sent);
        let s = &mut self.members[i].stats;
        s.tx_packets += sent as u64;
        s.tx_bytes += bytes;
        s.tx_bursts += u64::from(sent > 0);
        s.tx_ring_full += u64::from(sent < w);
        sent
    }

    fn alloc(&mut self, out: &mut Burst, n: usize) -> usize {
        let mut want = n.min(out.spare());
        let mut got = 0usize;
        while want > 0 {
            // SAFETY: scratch/idx/offs have MAX_BURST >= want entries; the pool is alive.
            let k = unsafe {
                ffi::xdpos_alloc(
                    self.mp,
                    self.scratch.as_mut_ptr(),
                    self.idx.as_mut_ptr(),
                    self.offs.as_mut_ptr(),
                    want as u32,
                )
            } as usize;
            if k == 0 {
                // All or nothing: ask for less, down to one.
                want /= 2;
                continue;
            }
            for j in 0..k {
                let idx = self.idx[j] as usize;
                debug_assert!(idx < self.frames && self.pool.inner.mbufs[idx] == self.scratch[j]);
                self.set_held(idx, true);
                out.push(Desc {
                    addr: ((idx as u64) << ADDR_SHIFT) | u64::from(self.offs[j]),
                    len: 0,
                    hdr: NetHdr::NONE,
                });
            }
            got += k;
            want = (n.min(MAX_BURST) - got).min(out.spare());
        }
        got
    }

    fn free_one(&mut self, i: usize, desc: &Desc) {
        let idx = (desc.addr >> ADDR_SHIFT) as usize;
        if idx >= self.frames || !self.is_held(idx) {
            self.members[i].stats.invalid_descs += 1;
            return;
        }
        self.set_held(idx, false);
        let mut m = self.pool.inner.mbufs[idx];
        // SAFETY: a frame the user held, now released: the mbuf goes back to its pool.
        unsafe { ffi::xdpos_free_bulk(&mut m, 1) };
    }

    fn free_all(&mut self, i: usize, batch: &mut Burst) {
        let mut n = 0usize;
        for k in 0..batch.len() {
            let idx = (batch.as_slice()[k].addr >> ADDR_SHIFT) as usize;
            if idx >= self.frames || !self.is_held(idx) {
                self.members[i].stats.invalid_descs += 1;
                continue;
            }
            self.set_held(idx, false);
            self.scratch[n] = self.pool.inner.mbufs[idx];
            n += 1;
        }
        if n > 0 {
            // SAFETY: the first n scratch entries are distinct frames the user held (each
            // bit was cleared once), now released.
            unsafe { ffi::xdpos_free_bulk(self.scratch.as_mut_ptr(), n as u32) };
        }
        batch.clear();
    }
}

/// What the device is asked to do for one frame, and whether the port did a part itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TxPlan {
    /// `ffi::TX_*`.
    kind: u8,
    l2_len: u8,
    l3_len: u16,
    l4_len: u16,
    seg_size: u16,
    /// The partial checksum was completed in software.
    pub software_csum: bool,
}

impl TxPlan {
    /// The device completes the UDP checksum.
    pub fn udp_csum(&self) -> bool {
        self.kind == ffi::TX_UDP_CSUM
    }
    /// The device completes the TCP checksum.
    pub fn tcp_csum(&self) -> bool {
        self.kind == ffi::TX_TCP_CSUM
    }
    /// The device segments (TSO) with this payload size per segment.
    pub fn tso(&self) -> Option<u16> {
        (self.kind == ffi::TX_TCP_SEG).then_some(self.seg_size)
    }
    /// (l2_len, l3_len, l4_len) as set in the mbuf.
    pub fn lens(&self) -> (u8, u16, u16) {
        (self.l2_len, self.l3_len, self.l4_len)
    }
}

/// Maps a frame's offload header onto what a device with `caps` does (see the module
/// documentation); completes a partial checksum in software where the device cannot (then
/// `hdr.csum` becomes `Csum::None`). Errors leave the frame unsendable: a partial checksum
/// outside the frame, or a super-segment for a device without TSO.
pub fn tx_offload(
    frame: &mut [u8],
    hdr: &mut NetHdr,
    caps: &Caps,
) -> Result<TxPlan, offload::OffloadError> {
    let l2 = if frame.len() >= 14 && frame[12..14] == [0x81, 0x00] { 18u16 } else { 14 };
    match (hdr.csum, hdr.gso) {
        (Csum::Partial { start, offset }, Gso::None)
            if caps.tx_csum
                && start > l2
                && (offset == 6 || offset == 16)
                && usize::from(start) + usize::from(offset) + 2 <= frame.len() =>
        {
            Ok(TxPlan {
                kind: if offset == 6 { ffi::TX_UDP_CSUM } else { ffi::TX_TCP_CSUM },
                l2_len: l2 as u8,
                l3_len: start - l2,
                ..TxPlan::default()
            })
        }
        (Csum::Partial { start, offset: 16 }, Gso::TcpV4 { size, hdr_len })
            if caps.tso && start > l2 && hdr_len > start && usize::from(hdr_len) <= frame.len() =>
        {
            Ok(TxPlan {
                kind: ffi::TX_TCP_SEG,
                l2_len: l2 as u8,
                l3_len: start - l2,
                l4_len: hdr_len - start,
                seg_size: size,
                software_csum: false,
            })
        }
        (Csum::Partial { .. }, _) | (_, Gso::TcpV4 { .. } | Gso::UdpL4 { .. }) => {
            offload::csum::complete(frame, hdr)?;
            if hdr.gso != Gso::None {
                return Err(offload::OffloadError::SuperSegment);
            }
            Ok(TxPlan { software_csum: true, ..TxPlan::default() })
        }
        _ => Ok(TxPlan::default()),
    }
}

/// The [`Port`] view of one member of a [`DpdkGroup`]: receive and transmit on its device's
/// queue; frames and accounting are the group's.
#[derive(Debug)]
pub struct DpdkGroupPort<'a> {
    g: &'a mut DpdkGroup,
    i: usize,
}

impl Port for DpdkGroupPort<'_> {
    fn caps(&self) -> Caps {
        self.g.members[self.i].caps
    }
    #[inline]
    fn rx_burst(&mut self, out: &mut Burst) -> usize {
        self.g.rx(self.i, out)
    }
    #[inline]
    fn tx_burst(&mut self, batch: &mut Burst) -> usize {
        self.g.tx(self.i, batch)
    }
    fn alloc_burst(&mut self, out: &mut Burst, n: usize) -> usize {
        self.g.alloc(out, n)
    }
    fn free_burst(&mut self, batch: &mut Burst) {
        self.g.free_all(self.i, batch)
    }
    #[inline]
    fn free(&mut self, desc: &Desc) {
        self.g.free_one(self.i, desc)
    }
    fn reclaim(&mut self) -> usize {
        0
    }
    #[inline]
    fn frame(&self, desc: &Desc) -> &[u8] {
        self.g.frame(desc)
    }
    #[inline]
    fn frame_mut(&mut self, desc: &Desc) -> &mut [u8] {
        self.g.frame_mut(desc)
    }
    fn room_mut(&mut self, desc: &Desc) -> &mut [u8] {
        self.g.room_mut(desc)
    }
    fn headroom(&self) -> usize {
        self.g.headroom
    }
    fn frame_counts(&self) -> FrameCounts {
        self.g.frame_counts()
    }
    fn stats(&self) -> PortStats {
        self.g.members[self.i].stats
    }
}

/// One queue of one device with its own pool: a group of one.
#[derive(Debug)]
pub struct DpdkPort {
    group: DpdkGroup,
}

impl DpdkPort {
    /// Polls queue `queue` of `dev`, whose RX queue `queue` receives into `pool`.
    pub fn new(pool: &Pool, dev: &Device, queue: u16, burst: usize) -> Result<Self, NicError> {
        Ok(DpdkPort { group: DpdkGroup::new(pool, std::slice::from_ref(dev), queue, burst)? })
    }

    /// The device.
    pub fn device(&self) -> &Device {
        &self.group.members[0].dev
    }

    /// The queue polled.
    pub fn queue(&self) -> u16 {
        self.group.queue()
    }

    /// See [`DpdkGroup::audit`].
    pub fn audit(&self) -> Result<FrameCounts, NicError> {
        self.group.audit()
    }

    /// See [`DpdkGroup::idle_wait`].
    pub fn idle_wait(&mut self, max: Duration) {
        self.group.idle_wait(max)
    }

    /// The group behind the port.
    pub fn group(&mut self) -> &mut DpdkGroup {
        &mut self.group
    }
}

impl Port for DpdkPort {
    fn caps(&self) -> Caps {
        self.group.members[0].caps
    }
    #[inline]
    fn rx_burst(&mut self, out: &mut Burst) -> usize {
        self.group.rx(0, out)
    }
    #[inline]
    fn tx_burst(&mut self, batch: &mut Burst) -> usize {
        self.group.tx(0, batch)
    }
    fn alloc_burst(&mut self, out: &mut Burst, n: usize) -> usize {
        self.group.alloc(out, n)
    }
    fn free_burst(&mut self, batch: &mut Burst) {
        self.group.free_all(0, batch)
    }
    #[inline]
    fn free(&mut self, desc: &Desc) {
        self.group.free_one(0, desc)
    }
    fn reclaim(&mut self) -> usize {
        0
    }
    #[inline]
    fn frame(&self, desc: &Desc) -> &[u8] {
        self.group.frame(desc)
    }
    #[inline]
    fn frame_mut(&mut self, desc: &Desc) -> &mut [u8] {
        self.group.frame_mut(desc)
    }
    fn room_mut(&mut self, desc: &Desc) -> &mut [u8] {
        self.group.room_mut(desc)
    }
    fn headroom(&self) -> usize {
        self.group.headroom
    }
    fn frame_counts(&self) -> FrameCounts {
        self.group.frame_counts()
    }
    fn stats(&self) -> PortStats {
        self.group.members[0].stats
    }
}

#[cfg(test)]
mod tests;
