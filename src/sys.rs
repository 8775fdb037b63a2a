//! The system calls no crate makes safe for us, each behind a safe
//! function: the one module of wgp2p with `unsafe` code (every other
//! module is `#![deny(unsafe_code)]` through `main.rs`). A leaf: it imports
//! nothing of wgp2p, so every layer may call it.

#![allow(unsafe_code)]

use std::ffi::CStr;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Every address of every interface, with the interface's name
/// (getifaddrs(3)); nothing when the call fails.
pub fn interface_addresses() -> Vec<(String, IpAddr)> {
    let mut found = Vec::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a linked list that stays valid
    // until freeifaddrs; every pointer is checked for null before use and
    // the address is read as the type its family says.
    unsafe {
        if libc::getifaddrs(&mut list) != 0 {
            return found;
        }
        let mut entry = list;
        while !entry.is_null() {
            let ifa = &*entry;
            entry = ifa.ifa_next;
            if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
                continue;
            }
            let name = CStr::from_ptr(ifa.ifa_name).to_string_lossy().into_owned();
            let ip = match i32::from((*ifa.ifa_addr).sa_family) {
                libc::AF_INET => {
                    // Read as bytes: no alignment is assumed of the pointer.
                    let sin = std::ptr::read_unaligned(ifa.ifa_addr.cast::<libc::sockaddr_in>());
                    IpAddr::V4(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)))
                }
                libc::AF_INET6 => {
                    let sin6 = std::ptr::read_unaligned(ifa.ifa_addr.cast::<libc::sockaddr_in6>());
                    IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr))
                }
                _ => continue,
            };
            found.push((name, ip));
        }
        libc::freeifaddrs(list);
    }
    found
}

/// The port of a UDP service name (`domain`) as wg(8) finds it: its
/// ports go to getaddrinfo(3) as a service, which looks names up in the
/// services database (/etc/services). `None` for a name it does not know.
/// Digits never reach here (`types::is_wg_port` reads them).
pub fn udp_service_port(name: &str) -> Option<u16> {
    let service = std::ffi::CString::new(name).ok()?;
    if name.is_empty() {
        return None;
    }
    // SAFETY: an all-zero addrinfo is a valid "no hints" value; the fields
    // set below are plain integers.
    let mut hints: libc::addrinfo = unsafe { std::mem::zeroed() };
    hints.ai_family = libc::AF_UNSPEC;
    hints.ai_socktype = libc::SOCK_DGRAM;
    hints.ai_protocol = libc::IPPROTO_UDP;
    hints.ai_flags = libc::AI_PASSIVE;
    let mut found: *mut libc::addrinfo = std::ptr::null_mut();
    // SAFETY: `service` is NUL-terminated and outlives the call, `hints`
    // is initialised, `found` receives a list freed below. getaddrinfo is
    // thread-safe (unlike getservbyname).
    let rc = unsafe {
        libc::getaddrinfo(
            std::ptr::null(),
            service.as_ptr(),
            &raw const hints,
            &raw mut found,
        )
    };
    if rc != 0 || found.is_null() {
        return None;
    }
    // SAFETY: on success `found` points to at least one entry whose
    // ai_addr holds ai_addrlen bytes of the family it names; read_unaligned
    // makes no alignment assumption; the list is freed once, after use.
    let port = unsafe {
        let entry = &*found;
        let port = match entry.ai_family {
            libc::AF_INET
                if entry.ai_addrlen as usize >= std::mem::size_of::<libc::sockaddr_in>() =>
            {
                Some(std::ptr::read_unaligned(entry.ai_addr.cast::<libc::sockaddr_in>()).sin_port)
            }
            libc::AF_INET6
                if entry.ai_addrlen as usize >= std::mem::size_of::<libc::sockaddr_in6>() =>
            {
                Some(std::ptr::read_unaligned(entry.ai_addr.cast::<libc::sockaddr_in6>()).sin6_port)
            }
            _ => None,
        };
        libc::freeaddrinfo(found);
        port
    };
    port.map(u16::from_be)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Read through the services database as wg(8) does; netbase's
    /// /etc/services (on every machine this project is built on) has
    /// `domain` as 53/udp.
    #[test]
    fn service_names_are_ports_as_wg_reads_them() {
        if std::fs::read_to_string("/etc/services").is_ok_and(|s| s.contains("53/udp")) {
            assert_eq!(udp_service_port("domain"), Some(53));
        }
        assert_eq!(udp_service_port("no-such-service-here"), None);
        assert_eq!(udp_service_port(""), None);
        assert_eq!(udp_service_port("a\0b"), None);
    }
}
