//! `dependencies [--dry-run]`: install wireguard-tools with the host's
//! package manager, chosen from /etc/os-release.

use std::process::{Command, Stdio};

use crate::context::Context;
use crate::error::{Error, Result};
use crate::system::on_path;

const PACKAGES: &str =
    "wireguard-tools (wg, wg-quick), and wireguard-go where the kernel has no WireGuard module";

/// The commands that install wireguard-tools on the distro that
/// os-release describes (its `ID`, then each of `ID_LIKE`).
pub fn install_commands(os_release: &str) -> Result<Vec<Vec<&'static str>>> {
    let field = |name: &str| {
        os_release
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
            .map(|v| v.trim_matches(|c| c == '"' || c == '\'').to_string())
    };
    let id = field("ID").unwrap_or_default();
    let like = field("ID_LIKE").unwrap_or_default();
    for candidate in std::iter::once(id.as_str()).chain(like.split_whitespace()) {
        let commands: Option<Vec<Vec<&str>>> = match candidate {
            "debian" | "ubuntu" => Some(vec![
                vec!["apt-get", "update"],
                // Without recommends: they add a kernel module package,
                // on Debian a whole kernel image.
                vec![
                    "apt-get",
                    "install",
                    "-y",
                    "--no-install-recommends",
                    "wireguard-tools",
                ],
            ]),
            // dnf's and zypper's equivalents of --no-install-recommends.
            "fedora" | "rhel" | "centos" => Some(vec![vec![
                "dnf",
                "install",
                "-y",
                "--setopt=install_weak_deps=False",
                "wireguard-tools",
            ]]),
            "arch" => Some(vec![vec![
                "pacman",
                "-Sy",
                "--noconfirm",
                "wireguard-tools",
            ]]),
            "alpine" => Some(vec![vec!["apk", "add", "wireguard-tools"]]),
            "opensuse" | "suse" | "opensuse-leap" | "opensuse-tumbleweed" | "sles" => {
                Some(vec![vec![
                    "zypper",
                    "--non-interactive",
                    "install",
                    "--no-recommends",
                    "wireguard-tools",
                ]])
            }
            _ => None,
        };
        if let Some(commands) = commands {
            return Ok(commands);
        }
    }
    Err(Error::System(format!(
        "unknown distribution {id:?} (ID_LIKE {like:?}): install {PACKAGES} with its package manager by hand"
    )))
}

pub fn run(ctx: &Context, dry_run: bool) -> Result<()> {
    if on_path("wg") && on_path("wg-quick") {
        crate::outln!("wg and wg-quick are already installed: nothing to do");
        return Ok(());
    }
    let os_release = std::fs::read_to_string("/etc/os-release")
        .or_else(|_| std::fs::read_to_string("/usr/lib/os-release"))
        .map_err(|e| {
            Error::System(format!(
                "cannot read /etc/os-release ({e}): install {PACKAGES} by hand"
            ))
        })?;
    let commands = install_commands(&os_release)?;
    if dry_run {
        for command in &commands {
            crate::outln!("{}", command.join(" "));
        }
        return Ok(());
    }
    ctx.require_root("dependencies")?;
    for command in &commands {
        eprintln!("+ {}", command.join(" "));
        let status = Command::new(command[0])
            .args(&command[1..])
            .stdin(Stdio::null())
            .status()
            .map_err(|e| Error::System(format!("cannot run {}: {e}", command[0])))?;
        if !status.success() {
            return Err(Error::System(format!(
                "`{}` failed with {status}",
                command.join(" ")
            )));
        }
    }
    crate::outln!("installed wireguard-tools");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No package manager adds what wireguard-tools only recommends (on
    /// Debian a kernel image); pacman and apk never install those.
    #[test]
    fn installs_without_recommends() {
        let without = [
            ("ID=debian\n", "--no-install-recommends"),
            ("ID=fedora\n", "--setopt=install_weak_deps=False"),
            ("ID=opensuse-leap\n", "--no-recommends"),
        ];
        for (os_release, flag) in without {
            let commands = install_commands(os_release).unwrap();
            let install = commands.last().unwrap();
            assert!(install.contains(&flag), "{os_release}: {install:?}");
            assert_eq!(install.last(), Some(&"wireguard-tools"), "{install:?}");
        }
    }

    #[test]
    fn picks_the_package_manager() {
        let first = |text: &str| install_commands(text).unwrap().last().unwrap()[0];
        assert_eq!(first("ID=debian\n"), "apt-get");
        assert_eq!(
            first("ID=linuxmint\nID_LIKE=\"ubuntu debian\"\n"),
            "apt-get"
        );
        assert_eq!(
            first("ID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\n"),
            "dnf"
        );
        assert_eq!(first("ID=arch\n"), "pacman");
        assert_eq!(first("ID=alpine\n"), "apk");
        assert_eq!(
            first("ID=\"opensuse-tumbleweed\"\nID_LIKE=\"opensuse suse\"\n"),
            "zypper"
        );
        let err = install_commands("ID=plan9\n").unwrap_err();
        assert_eq!(err.code(), 1, "an unknown distribution is a system failure");
        let err = err.to_string();
        assert!(
            err.contains("plan9") && err.contains("wireguard-tools"),
            "{err}"
        );
    }
}
