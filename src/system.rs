//! Running system programs (wg-quick, systemctl, iptables, sysctl…) and
//! finding them on PATH. Two commands start their own processes instead:
//! `doctor` asks `systemctl is-enabled` (its answer is the exit status) and
//! `dependencies` runs the package manager with its output on the terminal.

use std::fs::File;
use std::io::{Read, Seek};
use std::path::Path;
use std::process::{Command, Stdio};

use crate::error::{Error, Result};

/// Whether `program` is an executable file in a PATH directory.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// Whether the running kernel has WireGuard: loaded, built in, or a module
/// that `ip link add … type wireguard` (what wg-quick runs) loads itself.
/// When it has not, wg-quick needs wireguard-go.
pub fn kernel_has_wireguard() -> bool {
    if Path::new("/sys/module/wireguard").exists() {
        return true;
    }
    let Ok(release) = std::fs::read_to_string("/proc/sys/kernel/osrelease") else {
        return false;
    };
    let dir = Path::new("/lib/modules").join(release.trim());
    ["modules.dep", "modules.builtin"].iter().any(|index| {
        std::fs::read_to_string(dir.join(index)).is_ok_and(|text| lists_wireguard(&text))
    })
}

/// Whether a kernel module index (`modules.dep`: `PATH: DEPS` lines, or
/// `modules.builtin`: one path a line) lists `wireguard.ko` (compressed or not).
fn lists_wireguard(index: &str) -> bool {
    index.lines().any(|line| {
        let path = line.split(':').next().unwrap_or_default();
        path.rsplit('/')
            .next()
            .is_some_and(|file| file.starts_with("wireguard.ko"))
    })
}

/// Run a system command; on failure the error quotes its last stderr line.
/// Output goes to a temp file, not a pipe: wg-quick may leave wireguard-go
/// running with inherited descriptors, and a pipe would never close.
pub fn run(program: &str, args: &[&str]) -> Result<()> {
    let shown = format!("{program} {}", args.join(" "));
    let mut log =
        tempfile::tempfile().map_err(|e| Error::System(format!("cannot run {shown}: {e}")))?;
    let log_for_child = log
        .try_clone()
        .map_err(|e| Error::System(format!("cannot run {shown}: {e}")))?;
    let status = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log_for_child))
        .status()
        .map_err(|e| {
            Error::System(format!(
                "cannot run {shown}: {e} (is wireguard-tools installed? see `wgp2p dependencies`)"
            ))
        })?;
    if status.success() {
        return Ok(());
    }
    Err(Error::System(format!(
        "{shown} failed: {}",
        last_line(&mut log)
    )))
}

fn last_line(log: &mut File) -> String {
    let mut text = String::new();
    let _ = log.rewind();
    let _ = log.read_to_string(&mut text);
    error_line(&text).to_string()
}

/// The line of a failed command's output that says why: the last that is
/// not one of wg-quick's `[#] command` echoes (wg-quick ends a failed `up`
/// with `[#] ip link delete dev IFACE`, its cleanup, after the error).
fn error_line(text: &str) -> &str {
    text.lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with("[#]"))
        .unwrap_or("no error output")
}

/// Who holds UDP `port` on this host, or `None` when it is free: a bind
/// of `0.0.0.0:PORT` and `[::]:PORT` (what wireguard-go and the kernel
/// module take) is tried and undone at once. The holder is named from
/// /proc: `wireguard-go (pid 123)`, or "another socket" when no process
/// of this host shows it.
pub fn udp_port_holder(port: u16) -> Option<String> {
    use std::net::{Ipv4Addr, Ipv6Addr, UdpSocket};
    let in_use = |r: std::io::Result<UdpSocket>| matches!(r, Err(e) if e.kind() == std::io::ErrorKind::AddrInUse);
    let held = in_use(UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)))
        || in_use(UdpSocket::bind((Ipv6Addr::UNSPECIFIED, port)));
    held.then(|| holder_of(port).unwrap_or_else(|| "another socket".to_string()))
}

/// The process with a UDP socket bound to `port`, from /proc/net/udp{,6}
/// (its inode) and /proc/PID/fd (who has that socket open).
fn holder_of(port: u16) -> Option<String> {
    let wanted = format!(":{port:04X}");
    let mut inodes = Vec::new();
    for table in ["/proc/net/udp", "/proc/net/udp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.get(1).is_some_and(|local| local.ends_with(&wanted))
                && let Some(inode) = fields.get(9).filter(|i| **i != "0")
            {
                inodes.push(format!("socket:[{inode}]"));
            }
        }
    }
    if inodes.is_empty() {
        return None;
    }
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        let holds = fds.flatten().any(|fd| {
            std::fs::read_link(fd.path())
                .is_ok_and(|target| inodes.iter().any(|i| target.as_os_str() == i.as_str()))
        });
        if holds {
            let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            return Some(format!("{} (pid {pid})", comm.trim()));
        }
    }
    None
}

/// Refuse a listen port another socket holds, naming the holder: checked
/// before any device call or `wg-quick up`, which would fail on it (and
/// wireguard-go would drop the port it listens on first).
pub fn require_free_port(port: u16, iface: &crate::types::InterfaceName) -> Result<()> {
    match udp_port_holder(port) {
        None => Ok(()),
        Some(holder) => Err(Error::Conflict(format!(
            "port {port} is held by {holder}: expected a free UDP port for {iface} to listen on; stop that program or choose another port (--port)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_line_is_not_wg_quicks_cleanup() {
        let out = "[#] ip link add wg0 type wireguard\nError: Unknown device type.\n[#] wireguard-go wg0\n[#] wg setconf wg0 /dev/fd/63\nUnable to modify interface: Address already in use\n[#] ip link delete dev wg0\n";
        assert_eq!(
            error_line(out),
            "Unable to modify interface: Address already in use"
        );
        assert_eq!(error_line("\n"), "no error output");
    }

    #[test]
    fn a_held_port_names_its_holder() {
        let socket = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        let port = socket.local_addr().unwrap().port();
        let holder = udp_port_holder(port).expect("held");
        assert!(
            holder.contains(&format!("(pid {})", std::process::id())),
            "{holder}"
        );
        drop(socket);
        let iface: crate::types::InterfaceName = "wg0".parse().unwrap();
        let socket = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        let port = socket.local_addr().unwrap().port();
        let e = require_free_port(port, &iface).unwrap_err();
        assert!(
            e.to_string()
                .starts_with(&format!("port {port} is held by ")),
            "{e}"
        );
        assert_eq!(e.code(), 3);
    }

    #[test]
    fn finds_wireguard_in_a_module_index() {
        let dep = "kernel/net/ipv4/udp_tunnel.ko:\nkernel/drivers/net/wireguard/wireguard.ko.xz: kernel/lib/crypto/libchacha.ko\n";
        assert!(lists_wireguard(dep));
        assert!(lists_wireguard(
            "kernel/drivers/net/wireguard/wireguard.ko\n"
        ));
        assert!(!lists_wireguard(
            "kernel/net/ipv4/udp_tunnel.ko: kernel/drivers/net/wireguard/wireguard.ko\n"
        ));
        assert!(!lists_wireguard("kernel/drivers/net/wireguard-extra.ko\n"));
        assert!(!lists_wireguard(""));
    }

    #[test]
    fn failing_command_reports_its_last_line() {
        let err = run(
            "sh",
            &["-c", "echo first >&2; echo 'the reason' >&2; exit 3"],
        )
        .unwrap_err();
        assert!(err.to_string().ends_with("failed: the reason"), "{err}");
        assert!(run("true", &[]).is_ok());
        assert!(run("/nonexistent/wg-quick", &[]).is_err());
    }

    #[test]
    fn finds_programs_on_path() {
        assert!(on_path("sh"));
        assert!(!on_path("wgp2p-no-such-program"));
    }
}
