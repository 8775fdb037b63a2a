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
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no error output")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

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
