//! # Facts about a network device that the layers above need
//!
//! What it is: small queries on an interface of the calling thread's network namespace, made
//! with `ioctl(2)` on a throw-away datagram socket (which, unlike `/sys/class/net`, answers for
//! the thread's namespace even when the process's `/sys` belongs to another one).
//!
//! What it never does: change the device.
//!
//! References: netdevice(7) (`SIOCGIFHWADDR`); genetlink and `include/uapi/linux/netdev.h`
//! (the `netdev` family's `dev-get`: `xdp-features`); `include/uapi/linux/ethtool.h` (kernel 6.18:
//! `ETHTOOL_GSSET_INFO`, `ETHTOOL_GSTRINGS`, `ETHTOOL_GSTATS`, the `ethtool -S` statistics).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `ARPHRD_ETHER`: the hardware type of an Ethernet device.
const ARPHRD_ETHER: u16 = 1;

/// The Ethernet (MAC) address of `ifname` in the calling thread's network namespace.
pub fn mac_address(ifname: &str) -> io::Result<[u8; 6]> {
    let (sock, mut ifr) = ifreq_for(ifname)?;
    // SAFETY: SIOCGIFHWADDR reads the name from `ifr` and writes the address into it; `ifr`
    // is live and exclusively borrowed for the duration of the call.
    let ret = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFHWADDR, &mut ifr) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: after a successful SIOCGIFHWADDR the union holds `ifru_hwaddr`.
    let hw = unsafe { ifr.ifr_ifru.ifru_hwaddr };
    if hw.sa_family != ARPHRD_ETHER {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("{ifname} is not an Ethernet device (hardware type {})", hw.sa_family),
        ));
    }
    let mut mac = [0u8; 6];
    for (d, s) in mac.iter_mut().zip(hw.sa_data.iter()) {
        *d = *s as u8;
    }
    Ok(mac)
}

const ETHTOOL_GSTRINGS: u32 = 0x1b;
const ETHTOOL_GSTATS: u32 = 0x1d;
const ETHTOOL_GSSET_INFO: u32 = 0x37;
/// `ETH_SS_STATS`: the string set of `ethtool -S`.
const ETH_SS_STATS: u32 = 1;
/// `ETH_GSTRING_LEN`: bytes per statistic name.
const ETH_GSTRING_LEN: usize = 32;
/// Entries allocated beyond the count the kernel gave (see [`ethtool_stats`]).
const SPARE_STATS: usize = 256;
/// The most statistics read (far above any driver's).
const MAX_STATS: usize = 1 << 16;

/// A throw-away datagram socket for the ioctls, and `ifname` in an `ifreq`.
fn ifreq_for(ifname: &str) -> io::Result<(OwnedFd, libc::ifreq)> {
    if ifname.is_empty() || ifname.len() >= libc::IFNAMSIZ || ifname.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("interface name {ifname:?} is not a valid name"),
        ));
    }
    // SAFETY: a zeroed `ifreq` is a valid value of this plain-data struct.
    let mut ifr: libc::ifreq = unsafe { core::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(ifname.bytes()) {
        *d = s as libc::c_char;
    }
    // SAFETY: socket(2) takes no pointers; the result is checked and owned below.
    let s = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if s < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `s` is a new descriptor owned by nobody else.
    Ok((unsafe { OwnedFd::from_raw_fd(s) }, ifr))
}

/// `SIOCETHTOOL` with `buf` (an ethtool command structure, 8-byte aligned) as `ifr_data`.
fn ethtool(sock: &OwnedFd, ifr: &mut libc::ifreq, buf: &mut [u64]) -> io::Result<()> {
    ifr.ifr_ifru.ifru_data = buf.as_mut_ptr().cast();
    // SAFETY: SIOCETHTOOL reads the name from `ifr` and the command from `buf`, and writes the
    // answer into `buf`; both are live and exclusively borrowed for the call. How much the
    // answer takes is the callers' part (see `ethtool_stats`).
    let ret = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCETHTOOL, &mut *ifr) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Writes `v` at byte `at` (a multiple of 4) of a buffer of 64-bit words, in native order.
fn put_u32(buf: &mut [u64], at: usize, v: u32) {
    let mut w = buf[at / 8].to_ne_bytes();
    w[at % 8..at % 8 + 4].copy_from_slice(&v.to_ne_bytes());
    buf[at / 8] = u64::from_ne_bytes(w);
}

/// Reads the `u32` at byte `at` (a multiple of 4) of a buffer of 64-bit words.
fn get_u32(buf: &[u64], at: usize) -> u32 {
    let w = buf[at / 8].to_ne_bytes();
    u32::from_ne_bytes([w[at % 8], w[at % 8 + 1], w[at % 8 + 2], w[at % 8 + 3]])
}

/// The statistics of `ifname` (what `ethtool -S` prints), by name, in the driver's order, from
/// the calling thread's network namespace. `Unsupported` where the driver has none.
///
/// Three ioctls: `ETHTOOL_GSSET_INFO` (how many), `ETHTOOL_GSTRINGS` (the names),
/// `ETHTOOL_GSTATS` (the values). The kernel writes as many entries as the device has at the
/// time of each call, whatever the buffer; the buffers hold the count read first plus
/// [`SPARE_STATS`], and a count that changed between the calls (a queue count changed under
/// us) is an error, never a mismatched name.
pub fn ethtool_stats(ifname: &str) -> io::Result<Vec<(String, u64)>> {
    let (sock, mut ifr) = ifreq_for(ifname)?;
    // struct ethtool_sset_info { u32 cmd; u32 reserved; u64 sset_mask; u32 data[]; }
    let mut info = [0u64; 3];
    put_u32(&mut info, 0, ETHTOOL_GSSET_INFO);
    info[1] = 1 << ETH_SS_STATS;
    ethtool(&sock, &mut ifr, &mut info)?;
    if info[1] & (1 << ETH_SS_STATS) == 0 {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("{ifname} has no ethtool statistics"),
        ));
    }
    let n = get_u32(&info, 16) as usize;
    if n == 0 || n > MAX_STATS {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("{ifname} reports {n} ethtool statistics"),
        ));
    }
    let cap = n + SPARE_STATS;
    let count_changed = || {
        io::Error::new(
            io::ErrorKind::Interrupted,
            format!("{ifname}'s ethtool statistics changed while being read"),
        )
    };
    // struct ethtool_gstrings { u32 cmd; u32 string_set; u32 len; u8 data[]; }: 12 bytes of
    // header, then 32 bytes per name.
    let mut strings = vec![0u64; (12 + cap * ETH_GSTRING_LEN).div_ceil(8)];
    put_u32(&mut strings, 0, ETHTOOL_GSTRINGS);
    put_u32(&mut strings, 4, ETH_SS_STATS);
    ethtool(&sock, &mut ifr, &mut strings)?;
    if get_u32(&strings, 8) as usize != n {
        return Err(count_changed());
    }
    // struct ethtool_stats { u32 cmd; u32 n_stats; u64 data[]; }
    let mut values = vec![0u64; 1 + cap];
    put_u32(&mut values, 0, ETHTOOL_GSTATS);
    ethtool(&sock, &mut ifr, &mut values)?;
    if get_u32(&values, 4) as usize != n {
        return Err(count_changed());
    }
    let bytes: Vec<u8> = strings.iter().flat_map(|w| w.to_ne_bytes()).collect();
    let names = bytes[12..12 + n * ETH_GSTRING_LEN].chunks_exact(ETH_GSTRING_LEN);
    Ok(names
        .zip(&values[1..=n])
        .map(|(name, &v)| {
            let end = name.iter().position(|&b| b == 0).unwrap_or(ETH_GSTRING_LEN);
            (String::from_utf8_lossy(&name[..end]).into_owned(), v)
        })
        .collect())
}

/// Frames `ifname` failed to transmit for XDP redirects into it (`ndo_xdp_xmit`): the sum of
/// its `tx_queue_<n>_xdp_xmit_errors` statistics (veth counts there the frames its peer drops
/// because the peer has neither an XDP program nor GRO on). `None` where the driver has no
/// such counter or the statistics cannot be read.
pub fn xdp_xmit_errors(ifname: &str) -> Option<u64> {
    let stats = ethtool_stats(ifname).ok()?;
    let mut found = false;
    let mut sum = 0u64;
    for (name, v) in &stats {
        if name.starts_with("tx_queue_") && name.ends_with("_xdp_xmit_errors") {
            found = true;
            sum = sum.wrapping_add(*v);
        }
    }
    found.then_some(sum)
}

/// `NETDEV_XDP_ACT_NDO_XMIT` (`include/uapi/linux/netdev.h`): the device accepts frames
/// redirected into it by XDP (`ndo_xdp_xmit`). A veth sets it only while its peer has an XDP
/// program or GRO on (NAPI on the receiving end); without it a redirect into it fails and the
/// frame is dropped, counted nowhere on that device.
pub const XDP_ACT_NDO_XMIT: u64 = 1 << 2;

// Generic netlink (`include/uapi/linux/genetlink.h`, `netdev.h`).
const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
const NETDEV_CMD_DEV_GET: u8 = 1;
const NETDEV_A_DEV_IFINDEX: u16 = 1;
const NETDEV_A_DEV_XDP_FEATURES: u16 = 3;
const NLMSG_ERROR: u16 = 2;

/// One generic netlink request and its answer's attributes (type, payload).
fn genl_request(
    family: u16,
    cmd: u8,
    attr: (u16, &[u8]),
    want: impl Fn(u16, &[u8]) -> Option<u64>,
) -> io::Result<Option<u64>> {
    // SAFETY: socket(2) takes no pointers; the result is checked and owned below.
    let s = unsafe {
        libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_GENERIC)
    };
    if s < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `s` is a new descriptor owned by nobody else.
    let sock = unsafe { OwnedFd::from_raw_fd(s) };
    let tv = libc::timeval { tv_sec: 1, tv_usec: 0 };
    // SAFETY: `tv` is a live timeval of the size given.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            core::mem::size_of::<libc::timeval>() as libc::socklen_t,
        );
    }
    // nlmsghdr (16) + genlmsghdr (4) + one attribute.
    let alen = 4 + attr.1.len();
    let len = 20 + alen.div_ceil(4) * 4;
    let mut msg = vec![0u8; len];
    msg[0..4].copy_from_slice(&(len as u32).to_ne_bytes());
    msg[4..6].copy_from_slice(&family.to_ne_bytes());
    msg[6..8].copy_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
    msg[8..12].copy_from_slice(&1u32.to_ne_bytes());
    msg[16] = cmd;
    msg[17] = 1;
    msg[20..22].copy_from_slice(&(alen as u16).to_ne_bytes());
    msg[22..24].copy_from_slice(&attr.0.to_ne_bytes());
    msg[24..24 + attr.1.len()].copy_from_slice(attr.1);
    // SAFETY: `msg` is live for the call and its length is given.
    let n = unsafe { libc::send(sock.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = vec![0u8; 16384];
    // SAFETY: `buf` is live for the call and its length is given.
    let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let buf = &buf[..n as usize];
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "short generic netlink answer");
    if buf.len() < 20 {
        return Err(bad());
    }
    let mlen =
        (u32::from_ne_bytes(buf[0..4].try_into().map_err(|_| bad())?) as usize).min(buf.len());
    let mtype = u16::from_ne_bytes([buf[4], buf[5]]);
    if mtype == NLMSG_ERROR {
        let errno = i32::from_ne_bytes(buf[16..20].try_into().map_err(|_| bad())?);
        return Err(io::Error::from_raw_os_error(-errno));
    }
    let mut at = 20;
    while at + 4 <= mlen {
        let l = u16::from_ne_bytes([buf[at], buf[at + 1]]) as usize;
        let t = u16::from_ne_bytes([buf[at + 2], buf[at + 3]]) & 0x3fff;
        if l < 4 || at + l > mlen {
            break;
        }
        if let Some(v) = want(t, &buf[at + 4..at + l]) {
            return Ok(Some(v));
        }
        at += l.div_ceil(4) * 4;
    }
    Ok(None)
}

/// The XDP features of `ifname` in the calling thread's network namespace (`NETDEV_XDP_ACT_*`
/// bits, what `ynl --family netdev --do dev-get` prints as `xdp-features`), from the kernel's
/// `netdev` generic netlink family (Linux 6.3+).
pub fn xdp_features(ifname: &str) -> io::Result<u64> {
    let c = std::ffi::CString::new(ifname)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface name with NUL"))?;
    // SAFETY: `c` is a NUL-terminated string that outlives the call.
    let ifindex = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if ifindex == 0 {
        return Err(io::Error::last_os_error());
    }
    let family = genl_request(
        GENL_ID_CTRL,
        CTRL_CMD_GETFAMILY,
        (CTRL_ATTR_FAMILY_NAME, b"netdev\0"),
        |t, v| {
            (t == CTRL_ATTR_FAMILY_ID && v.len() >= 2)
                .then(|| u64::from(u16::from_ne_bytes([v[0], v[1]])))
        },
    )?
    .ok_or_else(|| io::Error::new(io::ErrorKind::Unsupported, "no netdev netlink family"))?;
    genl_request(
        family as u16,
        NETDEV_CMD_DEV_GET,
        (NETDEV_A_DEV_IFINDEX, &ifindex.to_ne_bytes()),
        |t, v| {
            (t == NETDEV_A_DEV_XDP_FEATURES && v.len() >= 8)
                .then(|| u64::from_ne_bytes(v[..8].try_into().unwrap_or_default()))
        },
    )?
    .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no xdp-features in the answer"))
}

/// Whether `ifname` accepts frames redirected into it by XDP now ([`XDP_ACT_NDO_XMIT`]);
/// `None` where the kernel does not say.
pub fn accepts_xdp_redirect(ifname: &str) -> Option<bool> {
    xdp_features(ifname).ok().map(|f| f & XDP_ACT_NDO_XMIT != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_not_ethernet_and_bad_names_are_refused() {
        let e = mac_address("lo").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::Unsupported, "{e}");
        assert!(mac_address("").is_err());
        assert!(mac_address("a-name-longer-than-ifnamsiz").is_err());
        assert!(mac_address("xdpos-nonexistent").is_err());
    }

    #[test]
    fn ethtool_statistics_refuse_bad_names_and_loopback_has_no_xdp_xmit_counter() {
        assert!(ethtool_stats("").is_err());
        assert!(ethtool_stats("a-name-longer-than-ifnamsiz").is_err());
        assert!(ethtool_stats("xdpos-nonexistent").is_err());
        assert_eq!(xdp_xmit_errors("xdpos-nonexistent"), None);
        assert_eq!(xdp_xmit_errors("lo"), None);
    }

    #[test]
    fn loopback_takes_no_xdp_redirects_and_unknown_names_are_errors() {
        assert_eq!(accepts_xdp_redirect("lo"), Some(false));
        assert!(xdp_features("xdpos-nonexistent").is_err());
    }
}
