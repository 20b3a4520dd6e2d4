//! # Facts about a network device that the layers above need
//!
//! What it is: small queries on an interface of the calling thread's network namespace, made
//! with `ioctl(2)` on a throw-away datagram socket (which, unlike `/sys/class/net`, answers for
//! the thread's namespace even when the process's `/sys` belongs to another one).
//!
//! What it never does: change the device.
//!
//! References: netdevice(7) (`SIOCGIFHWADDR`).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `ARPHRD_ETHER`: the hardware type of an Ethernet device.
const ARPHRD_ETHER: u16 = 1;

/// The Ethernet (MAC) address of `ifname` in the calling thread's network namespace.
pub fn mac_address(ifname: &str) -> io::Result<[u8; 6]> {
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
    let sock = unsafe { OwnedFd::from_raw_fd(s) };
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
}
