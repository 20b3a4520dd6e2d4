//! # Traffic generator and sink for the benchmarks
//!
//! What it is: the load side of `xdpos bench`, built from two XDP programs in
//! `bpf/trafgen.bpf.c`:
//! - [`LiveGen`] runs `trafgen_gen` with `BPF_PROG_TEST_RUN` and
//!   `BPF_F_TEST_XDP_LIVE_FRAMES`: the kernel copies one template frame into page-pool pages,
//!   the program writes a per-frame UDP source port (so receivers see `flows` flows; with
//!   [`Destinations`] also a per-frame IPv4 destination, for routers) and returns
//!   `XDP_TX`, which live mode turns into a redirect out of the sending device. No copy through
//!   userspace, no socket: 6–7 Mpps of 64-byte frames from one core on veth into an XDP sink.
//!   A [`GenHandle`] counts what it sent and stops it from another thread.
//! - [`Sink`] attaches `trafgen_sink` in native mode to a receiving device; it counts packets and
//!   bytes per CPU and drops them. [`Sink::counts`] sums the CPUs.
//! - [`udp_frame`] builds the Ethernet/IPv4/UDP template, any size from [`MIN_FRAME`] to
//!   [`MAX_FRAME`] (frame bytes handed to the device, no FCS), UDP checksum 0 (none).
//!
//! What it owns: the loaded BPF objects and, for the sink, the XDP attachment (a BPF link,
//! detached when the [`Sink`] is dropped, also while unwinding).
//!
//! What it never does: read the clock or spawn threads (the caller bounds a run through the
//! `next` callback of [`LiveGen::run_while`] and [`GenHandle::stop`]), or touch a device other
//! than the one named.
//!
//! Namespaces: interface names are resolved, programs attached and test runs executed in the
//! **calling thread's** network namespace. A [`LiveGen`] must be used from a thread of the
//! namespace it was created in; a [`Sink`] may be read from any thread once attached.
//!
//! Delivery caveat (veth): a frame redirected into a veth reaches the peer only if the peer has
//! an XDP program attached (or GRO enabled); otherwise the kernel drops it silently. Frames the
//! kernel drops on the way (peer ring full) are counted as sent by the generator: count at the
//! receiver.
//!
//! References: Documentation/bpf/bpf_prog_run.rst (live frame mode), net/bpf/test_run.c.

use std::ffi::OsStr;

use libbpf_rs::{
    Link, MapCore, MapFlags, MapHandle, Object, ObjectBuilder, ProgramInput, ProgramMut,
};

use crate::NicError;

/// The compiled programs (`bpf/trafgen.bpf.c`, built by `build.rs`).
static TRAFGEN_OBJ: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/trafgen.bpf.o"));

/// `BPF_F_TEST_XDP_LIVE_FRAMES`: frames leave through the device instead of returning to the
/// caller.
const LIVE_FRAMES: u32 = libbpf_rs::libbpf_sys::BPF_F_TEST_XDP_LIVE_FRAMES;

/// Smallest frame [`udp_frame`] builds: the Ethernet minimum without FCS.
pub const MIN_FRAME: usize = 60;
/// The Ethernet and IPv4 headers (no options) of a template, which the generator rewrites
/// into every frame.
const HDR_LEN: usize = 34;
/// Largest frame [`udp_frame`] builds: MTU 1500 plus the Ethernet header.
pub const MAX_FRAME: usize = 1514;

/// Addresses and ports of a generated UDP frame (the generator varies the source port over its
/// flows, starting at `src_port`).
pub use libos::wire::UdpFlow as UdpSpec;

/// Builds an Ethernet/IPv4/UDP frame of exactly `len` bytes (no FCS) with
/// `libos::wire::emit_udp_frame`: IPv4 without options, TTL 64, DF, a valid header checksum,
/// payload bytes counting up, and UDP checksum 0 (none, RFC 768), so the generator can rewrite
/// the source port per frame without fixing a checksum.
pub fn udp_frame(spec: &UdpSpec, len: usize) -> Result<Vec<u8>, NicError> {
    const HEADERS: usize = libos::wire::udp_frame_len(0);
    if !(MIN_FRAME..=MAX_FRAME).contains(&len) {
        return Err(NicError::Invalid {
            what: "frame length",
            value: len as u64,
            why: "must be 60..=1514 bytes",
        });
    }
    let payload: Vec<u8> = (0..len - HEADERS).map(|i| i as u8).collect();
    let mut f = vec![0u8; len];
    libos::wire::emit_udp_frame(&mut f, spec, &payload, libos::wire::TxChecksum::Full).map_err(
        |_| NicError::Invalid { what: "frame length", value: len as u64, why: "does not fit" },
    )?;
    // No checksum: the generator rewrites the source port of every frame.
    f[HEADERS - 2..HEADERS].copy_from_slice(&[0, 0]);
    Ok(f)
}

/// Index of `ifname` in the calling thread's network namespace.
fn ifindex(ifname: &str) -> Result<u32, NicError> {
    crate::afxdp::sys::ifindex(ifname).ok_or_else(|| NicError::NoSuchInterface(ifname.into()))
}

fn bpf_err(what: impl Into<String>) -> impl FnOnce(libbpf_rs::Error) -> NicError {
    let what = what.into();
    move |source| NicError::Bpf { what, source }
}

fn load() -> Result<Object, NicError> {
    ObjectBuilder::default()
        .open_memory(TRAFGEN_OBJ)
        .and_then(|o| o.load())
        .map_err(bpf_err("load trafgen.bpf.o"))
}

fn prog<'o>(obj: &'o Object, name: &str) -> ProgramMut<'o> {
    obj.progs_mut()
        .find(|p| p.name() == OsStr::new(name))
        .unwrap_or_else(|| panic!("trafgen.bpf.o has no program {name}"))
}

fn map<'o>(obj: &'o Object, name: &str) -> libbpf_rs::Map<'o> {
    obj.maps()
        .find(|m| m.name() == OsStr::new(name))
        .unwrap_or_else(|| panic!("trafgen.bpf.o has no map {name}"))
}

/// A packet generator: one template frame sent again and again out of one device by
/// `BPF_PROG_TEST_RUN` in live-frame mode, with `flows` different UDP source ports.
///
/// Each `BPF_PROG_TEST_RUN` call sets up and tears down a page pool, which costs ~20 ms of
/// sleeping here (an RCU grace period): make few, long calls (seconds of frames) and end them
/// early through a [`GenHandle`] from another thread.
#[derive(Debug)]
pub struct LiveGen {
    obj: Object,
    ifname: String,
    ifindex: u32,
    frame: Vec<u8>,
    handle: GenHandle,
}

/// Controls and counts a [`LiveGen`] from any thread: frames sent so far, and a stop switch
/// that makes the running test run drop the rest of its frames (quickly) instead of sending them.
#[derive(Debug)]
pub struct GenHandle {
    config: MapHandle,
    counts: MapHandle,
    flows: u32,
    sport_base: u32,
    dsts: Destinations,
    /// The template's Ethernet and IPv4 headers, which the program writes into every frame
    /// (a page comes back from a DUT that forwarded it in XDP with its MACs and TTL rewritten).
    hdr: [u8; HDR_LEN],
}

/// Destination addresses a generator cycles through: `base + k * stride` for `k` in
/// `0..span`, skipping 0/8, 10/8 and 127/8 (an address there moves one /8 up). A `span` of 0
/// or 1 keeps the template's destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Destinations {
    /// First address.
    pub base: std::net::Ipv4Addr,
    /// How many.
    pub span: u32,
    /// Distance between two, as a 32-bit number.
    pub stride: u32,
}

impl Default for Destinations {
    /// The template's destination only.
    fn default() -> Destinations {
        Destinations { base: std::net::Ipv4Addr::UNSPECIFIED, span: 0, stride: 0 }
    }
}

impl Destinations {
    /// `span` addresses spread evenly over 1.0.0.0 – 223.255.255.255 (unicast space): a
    /// different part of a router's table for each.
    pub fn spread(span: u32) -> Destinations {
        let span = span.max(1);
        let stride = ((223u64 << 24) / u64::from(span)) as u32;
        Destinations { base: std::net::Ipv4Addr::new(1, 0, 0, 1), span, stride }
    }

    /// The `k`-th address (what the program writes).
    pub fn nth(&self, k: u32) -> std::net::Ipv4Addr {
        let mut a = self.base.to_bits().wrapping_add(k.wrapping_mul(self.stride));
        if matches!(a >> 24, 0 | 10 | 127) {
            a = a.wrapping_add(1 << 24);
        }
        std::net::Ipv4Addr::from(a)
    }
}

impl GenHandle {
    fn write_config(&self, stop: bool) -> Result<(), NicError> {
        let mut cfg = [0u8; 64];
        cfg[0..4].copy_from_slice(&self.flows.to_ne_bytes());
        cfg[4..8].copy_from_slice(&self.sport_base.to_ne_bytes());
        cfg[8..12].copy_from_slice(&u32::from(stop).to_ne_bytes());
        cfg[12..16].copy_from_slice(&self.dsts.span.to_ne_bytes());
        cfg[16..20].copy_from_slice(&self.dsts.base.to_bits().to_ne_bytes());
        cfg[20..24].copy_from_slice(&self.dsts.stride.to_ne_bytes());
        cfg[24..24 + HDR_LEN].copy_from_slice(&self.hdr);
        self.config
            .update(&0u32.to_ne_bytes(), &cfg, MapFlags::ANY)
            .map_err(bpf_err("configure the generator"))
    }

    /// Makes the generator drop instead of send, ending a running test run within a fraction
    /// of a second (dropping costs tens of nanoseconds a frame). Stays stopped until
    /// [`GenHandle::resume`].
    pub fn stop(&self) -> Result<(), NicError> {
        self.write_config(true)
    }

    /// Lets the generator send again.
    pub fn resume(&self) -> Result<(), NicError> {
        self.write_config(false)
    }

    /// Frames and bytes the program sent (returned `XDP_TX` for) so far, all CPUs. Frames
    /// dropped later on the way (a full peer ring) are included: count at the receiver.
    pub fn sent(&self) -> Result<(u64, u64), NicError> {
        sum_counters(&self.counts, "read the generator counters")
    }

    /// Another handle on the same generator.
    pub fn try_clone(&self) -> Result<GenHandle, NicError> {
        Ok(GenHandle {
            config: MapHandle::try_from(&self.config).map_err(bpf_err("clone a map handle"))?,
            counts: MapHandle::try_from(&self.counts).map_err(bpf_err("clone a map handle"))?,
            flows: self.flows,
            sport_base: self.sport_base,
            dsts: self.dsts,
            hdr: self.hdr,
        })
    }
}

/// Sums a per-CPU `struct counter { u64 packets, bytes; }` at key 0.
fn sum_counters(map: &MapHandle, what: &str) -> Result<(u64, u64), NicError> {
    let per_cpu = map
        .lookup_percpu(&0u32.to_ne_bytes(), MapFlags::ANY)
        .map_err(bpf_err(what))?
        .unwrap_or_default();
    Ok(per_cpu.iter().fold((0, 0), |(p, b), v| {
        let word = |i: usize| {
            v.get(i * 8..i * 8 + 8)
                .and_then(|w| w.try_into().ok())
                .map(u64::from_ne_bytes)
                .unwrap_or(0)
        };
        (p + word(0), b + word(1))
    }))
}

impl LiveGen {
    /// Loads the generator for `ifname` (resolved in the calling thread's namespace). `frame`
    /// is the template (see [`udp_frame`]); source ports cycle through
    /// `sport_base .. sport_base + flows` (`flows` 0 or 1: the template's port is kept).
    pub fn new(ifname: &str, frame: &[u8], flows: u16, sport_base: u16) -> Result<Self, NicError> {
        Self::with_destinations(ifname, frame, flows, sport_base, Destinations::default())
    }

    /// [`LiveGen::new`] cycling the IPv4 destination over `dsts` as well (the header checksum
    /// is recomputed per frame).
    pub fn with_destinations(
        ifname: &str,
        frame: &[u8],
        flows: u16,
        sport_base: u16,
        dsts: Destinations,
    ) -> Result<Self, NicError> {
        if !(MIN_FRAME..=MAX_FRAME).contains(&frame.len()) {
            return Err(NicError::Invalid {
                what: "generator frame length",
                value: frame.len() as u64,
                why: "must be 60..=1514 bytes",
            });
        }
        if frame[12..14] != [0x08, 0x00] || frame[14] != 0x45 || frame[14 + 9] != 17 {
            return Err(NicError::Invalid {
                what: "generator frame",
                value: frame.len() as u64,
                why: "must be untagged Ethernet/IPv4 without options/UDP",
            });
        }
        let mut hdr = [0u8; HDR_LEN];
        hdr.copy_from_slice(&frame[..HDR_LEN]); // the length is at least MIN_FRAME (checked)
        let ifindex = ifindex(ifname)?;
        let obj = load()?;
        let handle = |name: &str| {
            MapHandle::try_from(&map(&obj, name)).map_err(bpf_err("open a generator map"))
        };
        let handle = GenHandle {
            config: handle("gen_config")?,
            counts: handle("gen_counts")?,
            flows: u32::from(flows.max(1)),
            sport_base: u32::from(sport_base),
            dsts,
            hdr,
        };
        handle.resume()?;
        Ok(LiveGen { obj, ifname: ifname.into(), ifindex, frame: frame.to_vec(), handle })
    }

    /// A handle to stop and count this generator from another thread.
    pub fn handle(&self) -> Result<GenHandle, NicError> {
        self.handle.try_clone()
    }

    /// The template frame.
    pub fn frame(&self) -> &[u8] {
        &self.frame
    }

    /// Runs the program on `n` frames with one `BPF_PROG_TEST_RUN` call (the calling thread is
    /// busy in the kernel meanwhile; the kernel yields to the scheduler when asked). Sends
    /// them unless stopped through a [`GenHandle`]. Returns [`NicError::Bpf`] with kind
    /// `Interrupted` when a signal ended the run early.
    pub fn send(&mut self, n: u32) -> Result<(), NicError> {
        // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index,
        // egress_ifindex. data_end must equal the frame length; the kernel resolves
        // ingress_ifindex in the caller's namespace and redirects XDP_TX out of that device.
        let mut ctx = [0u8; 24];
        ctx[4..8].copy_from_slice(&(self.frame.len() as u32).to_ne_bytes());
        ctx[12..16].copy_from_slice(&self.ifindex.to_ne_bytes());
        let input = ProgramInput {
            data_in: Some(&self.frame),
            context_in: Some(&mut ctx),
            flags: LIVE_FRAMES,
            repeat: n.max(1),
            ..Default::default()
        };
        let ifname = &self.ifname;
        prog(&self.obj, "trafgen_gen").test_run(input).map_err(|source| NicError::Bpf {
            what: format!("generate {n} frames on {ifname} (BPF_PROG_TEST_RUN, live frames)"),
            source,
        })?;
        Ok(())
    }

    /// Runs test runs of `next(sent_so_far)` frames each until `next` returns `None` (it is
    /// asked before every call, so it bounds the run; the caller owns the clock) or a signal
    /// interrupts a call. Returns the frames sent.
    pub fn run_while(&mut self, mut next: impl FnMut(u64) -> Option<u32>) -> Result<u64, NicError> {
        loop {
            let sent = self.handle.sent()?.0;
            let Some(n) = next(sent) else { return Ok(sent) };
            match self.send(n) {
                Ok(()) => {}
                Err(NicError::Bpf { source, .. })
                    if source.kind() == libbpf_rs::ErrorKind::Interrupted =>
                {
                    return Ok(self.handle.sent()?.0)
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// A counting sink: `trafgen_sink` attached in native mode to one device, counting and dropping
/// every frame it receives. Detached on drop.
#[derive(Debug)]
pub struct Sink {
    // Field order: the link (attachment) goes before the object that holds the program.
    _link: Link,
    counts: MapHandle,
    _obj: Object,
    ifname: String,
}

impl Sink {
    /// Attaches the sink to `ifname` (resolved in the calling thread's namespace), in native
    /// (driver) mode where the device supports it, as the device's only XDP program.
    pub fn attach(ifname: &str) -> Result<Sink, NicError> {
        let idx = ifindex(ifname)?;
        let obj = load()?;
        let link = prog(&obj, "trafgen_sink")
            .attach_xdp(idx as i32)
            .map_err(bpf_err(format!("attach the sink to {ifname}")))?;
        let counts = MapHandle::try_from(&map(&obj, "sink_counts"))
            .map_err(bpf_err("open the sink counters"))?;
        Ok(Sink { _link: link, counts, _obj: obj, ifname: ifname.into() })
    }

    /// The device it is attached to.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// Packets and bytes received since attachment, summed over CPUs.
    pub fn counts(&self) -> Result<(u64, u64), NicError> {
        sum_counters(&self.counts, "read the sink counters")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn spec() -> UdpSpec {
        UdpSpec {
            src_mac: [2, 0, 0, 0, 0, 0xa],
            dst_mac: [2, 0, 0, 0, 0, 0xb],
            src_ip: Ipv4Addr::new(10, 0, 0, 1),
            dst_ip: Ipv4Addr::new(10, 0, 0, 2),
            src_port: 1024,
            dst_port: 9,
        }
    }

    #[test]
    fn udp_frame_has_the_asked_length_and_consistent_headers() {
        for len in [60, 64, 128, 1500, 1514] {
            let f = udp_frame(&spec(), len).unwrap();
            assert_eq!(f.len(), len);
            assert_eq!(u16::from_be_bytes([f[16], f[17]]) as usize, len - 14);
            assert_eq!(u16::from_be_bytes([f[38], f[39]]) as usize, len - 34);
            assert_eq!(libos::wire::checksum::sum(&f[14..34]), 0xffff, "header checksum verifies");
            assert_eq!(&f[40..42], &[0, 0], "udp checksum none");
        }
    }

    #[test]
    fn spread_destinations_cover_the_unicast_space_and_skip_martians() {
        let d = Destinations::spread(65536);
        let all: Vec<Ipv4Addr> = (0..65536).map(|k| d.nth(k)).collect();
        assert_eq!(all[0], Ipv4Addr::new(1, 0, 0, 1));
        assert!(all.iter().all(|a| !matches!(a.octets()[0], 0 | 10 | 127) && a.octets()[0] < 224));
        let top: std::collections::BTreeSet<u8> = all.iter().map(|a| a.octets()[0]).collect();
        assert!(top.len() > 200, "{}", top.len());
        let slash24: std::collections::HashSet<u32> =
            all.iter().map(|a| a.to_bits() >> 8).collect();
        assert!(slash24.len() > 60_000, "distinct /24s: {}", slash24.len());
    }

    /// A page-pool page comes back as the last XDP program left it (veth passes frames to the
    /// peer without a copy): a DUT forwarding in XDP rewrites the MACs and the TTL. Every frame
    /// the generator sends must still be the template (root: loads the program; not sent, the
    /// program runs once on a frame handed in).
    #[test]
    fn the_generator_writes_the_template_headers_over_a_reused_page() {
        let template = udp_frame(&spec(), 64).expect("template");
        let dsts = Destinations::spread(16);
        let gen = LiveGen::with_destinations("lo", &template, 4, 1024, dsts).expect("load");
        let mut used = template.clone();
        used[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 0xee]); // the next hop's MAC
        used[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 0xef]); // the DUT's egress MAC
        used[14 + 8] -= 1; // TTL
        used[14 + 16..14 + 20].copy_from_slice(&[192, 0, 2, 99]); // another destination
        let mut out = vec![0u8; used.len()];
        let input = ProgramInput {
            data_in: Some(&used),
            data_out: Some(&mut out),
            repeat: 1,
            ..Default::default()
        };
        let r = prog(&gen.obj, "trafgen_gen").test_run(input).expect("test run");
        assert_eq!(r.return_value, 3, "XDP_TX");
        assert_eq!(out[..14], template[..14], "Ethernet header");
        assert_eq!(out[14..14 + 10], template[14..14 + 10], "IPv4 header up to the checksum");
        assert_eq!(out[14 + 12..14 + 16], template[14 + 12..14 + 16], "source address");
        assert_eq!(out[14 + 16..14 + 20], dsts.nth(0).octets(), "first destination");
        let sum =
            out[14..34].chunks(2).map(|w| u32::from(u16::from_be_bytes([w[0], w[1]]))).sum::<u32>();
        let sum = (sum & 0xffff) + (sum >> 16);
        assert_eq!((sum & 0xffff) + (sum >> 16), 0xffff, "header checksum");
        assert_eq!(out[34..36], 1024u16.to_be_bytes(), "first flow's source port");
        assert_eq!(out[36..], template[36..], "the rest");
    }

    #[test]
    fn udp_frame_rejects_sizes_outside_ethernet() {
        assert!(udp_frame(&spec(), 59).is_err());
        assert!(udp_frame(&spec(), 1515).is_err());
    }
}
