//! The system calls no crate makes safe for us, each behind a safe
//! function: the one module of wgp2p with `unsafe` code (every other
//! module is `#![deny(unsafe_code)]` through `main.rs`). A leaf: it imports
//! nothing of wgp2p, so every layer may call it.

#![allow(unsafe_code)]

use std::ffi::CStr;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

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

/// The kernel's index of interface `iface` (if_nametoindex(3)).
pub fn interface_index(iface: &str) -> io::Result<u32> {
    let name = std::ffi::CString::new(iface)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface name with NUL"))?;
    // SAFETY: `name` is a valid NUL-terminated string.
    match unsafe { libc::if_nametoindex(name.as_ptr()) } {
        0 => Err(io::Error::last_os_error()),
        index => Ok(index),
    }
}

/// The name of the interface with index `index` (if_indextoname(3)).
pub fn interface_name(index: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: the buffer holds IF_NAMESIZE bytes, as the call requires.
    let name = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
    if name.is_null() {
        return None;
    }
    // SAFETY: on success the buffer holds a NUL-terminated name.
    let name = unsafe { CStr::from_ptr(buf.as_ptr()) };
    Some(name.to_string_lossy().into_owned())
}

/// A UDP socket bound to `iface` (`SO_BINDTODEVICE`, set before the
/// address is bound, so no datagram from another interface is ever queued)
/// and to `address`.
pub fn udp_socket_on_device(iface: &str, address: SocketAddr) -> io::Result<UdpSocket> {
    let family = match address {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    // SAFETY: socket(2) with constant arguments; the result is checked and
    // owned by an OwnedFd at once.
    let fd = unsafe { libc::socket(family, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let name = iface.as_bytes();
    // SAFETY: the option value is `name`, with its length.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            name.as_ptr().cast(),
            libc::socklen_t::try_from(name.len()).unwrap_or(0),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let (storage, len) = sockaddr(address);
    // SAFETY: `storage` holds a sockaddr of the family and length given.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&raw const storage).cast::<libc::sockaddr>(),
            len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(UdpSocket::from(fd))
}

#[allow(
    clippy::cast_possible_truncation,
    reason = "AF_INET and AF_INET6 fit sa_family_t, and a sockaddr_in6 (28 bytes) fits socklen_t"
)]
fn sockaddr(address: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain data; all zeros is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match address {
        SocketAddr::V4(v4) => {
            // SAFETY: sockaddr_storage is large and aligned enough for any
            // sockaddr type.
            let sin = unsafe { &mut *(&raw mut storage).cast::<libc::sockaddr_in>() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = v4.port().to_be();
            sin.sin_addr.s_addr = u32::from(*v4.ip()).to_be();
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            // SAFETY: as above.
            let sin6 = unsafe { &mut *(&raw mut storage).cast::<libc::sockaddr_in6>() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = v6.port().to_be();
            sin6.sin6_addr.s6_addr = v6.ip().octets();
            sin6.sin6_scope_id = v6.scope_id();
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

/// SIGTERM and SIGINT, blocked in the calling thread (and the threads it
/// starts after) and taken synchronously with sigtimedwait(2).
pub struct TermSignals {
    set: libc::sigset_t,
}

impl TermSignals {
    /// Block the signals in this thread.
    pub fn block() -> io::Result<TermSignals> {
        // SAFETY: sigset_t is plain data; sigemptyset/sigaddset initialise
        // it, and pthread_sigmask only changes this thread's mask.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::sigaddset(&mut set, libc::SIGINT);
            let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            if rc != 0 {
                return Err(io::Error::from_raw_os_error(rc));
            }
            Ok(TermSignals { set })
        }
    }

    /// Wait up to `timeout` for a signal; its number, or `None` on timeout.
    pub fn wait(&self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            let ts = libc::timespec {
                tv_sec: libc::time_t::try_from(left.as_secs()).unwrap_or(libc::time_t::MAX),
                // Below 10^9, so the i32 is exact on every target.
                tv_nsec: libc::c_long::from(left.subsec_nanos().cast_signed()),
            };
            // SAFETY: `set` was initialised in `block`; a null info pointer
            // is allowed.
            let signal = unsafe { libc::sigtimedwait(&self.set, std::ptr::null_mut(), &ts) };
            if signal > 0 {
                return Some(signal);
            }
            // EAGAIN: timed out; EINTR: another signal, wait again.
            if io::Error::last_os_error().raw_os_error() == Some(libc::EAGAIN) {
                return None;
            }
        }
    }
}

/// The name of a signal [`TermSignals`] takes.
pub fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        _ => "a signal",
    }
}

/// While alive, whatever is written to stdout (fd 1) goes to stderr.
pub struct StdoutToStderr {
    saved: libc::c_int,
}

impl StdoutToStderr {
    pub fn new() -> Option<Self> {
        let _ = io::stdout().flush();
        // SAFETY: dup/dup2 on the process's own standard descriptors; a
        // failure (-1) is checked and leaves stdout as it was.
        let saved = unsafe { libc::dup(1) };
        if saved < 0 {
            return None;
        }
        if unsafe { libc::dup2(2, 1) } < 0 {
            unsafe { libc::close(saved) };
            return None;
        }
        Some(StdoutToStderr { saved })
    }
}

impl Drop for StdoutToStderr {
    fn drop(&mut self) {
        let _ = io::stdout().flush();
        // SAFETY: restores the descriptor saved in `new`.
        unsafe {
            libc::dup2(self.saved, 1);
            libc::close(self.saved);
        }
    }
}

/// At most two malloc arenas (glibc; elsewhere nothing): one per CPU
/// thread would keep freed memory per thread of a long-running agent.
/// Call before the threads start.
pub fn malloc_limit_arenas() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt(3) with a documented parameter.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Give the freed top of the heap and free pages back to the system
/// (glibc; elsewhere nothing).
pub fn malloc_give_back() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim(3) only releases memory that is free.
    unsafe {
        libc::malloc_trim(0);
    }
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
