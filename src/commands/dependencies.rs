//! `dependencies [--dry-run]`: install wireguard-tools with the host's
//! package manager, chosen from /etc/os-release, and wireguard-go where the
//! running kernel has no WireGuard (wg-quick falls back to it by itself).

use std::process::{Command, Stdio};

use crate::context::Context;
use crate::error::{Error, Result};
use crate::system::{kernel_has_wireguard, on_path};

const PACKAGES: &str =
    "wireguard-tools (wg, wg-quick), and wireguard-go where the kernel has no WireGuard module";

/// What is missing: wg and wg-quick, and a WireGuard implementation (the
/// kernel's, or wireguard-go).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Missing {
    pub tools: bool,
    pub wireguard_go: bool,
}

/// The commands that install what is `missing` on the distro that
/// os-release describes (its `ID`, then each of `ID_LIKE`). wireguard-go is
/// a package of Debian and Ubuntu only; elsewhere its lack is an error
/// naming it, after wireguard-tools is installed.
pub fn install_commands(os_release: &str, missing: Missing) -> Result<Vec<Vec<&'static str>>> {
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
            "debian" | "ubuntu" => {
                // Without recommends: they add a kernel module package,
                // on Debian a whole kernel image.
                let mut install = vec!["apt-get", "install", "-y", "--no-install-recommends"];
                install.extend(missing.tools.then_some("wireguard-tools"));
                install.extend(missing.wireguard_go.then_some("wireguard-go"));
                return Ok(vec![vec!["apt-get", "update"], install]);
            }
            _ if !missing.tools => None,
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
    if !missing.tools {
        return Ok(Vec::new());
    }
    Err(Error::System(format!(
        "unknown distribution {id:?} (ID_LIKE {like:?}): install {PACKAGES} with its package manager by hand"
    )))
}

pub fn run(ctx: &Context, dry_run: bool) -> Result<()> {
    let missing = Missing {
        tools: !(on_path("wg") && on_path("wg-quick")),
        wireguard_go: !kernel_has_wireguard() && !on_path("wireguard-go"),
    };
    if missing
        == (Missing {
            tools: false,
            wireguard_go: false,
        })
    {
        crate::outln!(
            "wg, wg-quick and a WireGuard implementation are already installed: nothing to do"
        );
        return Ok(());
    }
    let os_release = std::fs::read_to_string("/etc/os-release")
        .or_else(|_| std::fs::read_to_string("/usr/lib/os-release"))
        .map_err(|e| {
            Error::System(format!(
                "cannot read /etc/os-release ({e}): install {PACKAGES} by hand"
            ))
        })?;
    let commands = install_commands(&os_release, missing)?;
    // wireguard-go is needed but no command installs it (a distribution
    // without the package): said after the rest is done.
    let go_gap = missing.wireguard_go && !commands.iter().flatten().any(|a| *a == "wireguard-go");
    if dry_run {
        for command in &commands {
            crate::outln!("{}", command.join(" "));
        }
    } else {
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
    }
    if go_gap {
        return Err(Error::System(
            "this kernel has no WireGuard module and the distribution has no wireguard-go package: install wireguard-go (https://git.zx2c4.com/wireguard-go) by hand, or boot a kernel with WireGuard".into(),
        ));
    }
    if !dry_run {
        crate::outln!("installed {}", installed(missing));
    }
    Ok(())
}

fn installed(missing: Missing) -> &'static str {
    match (missing.tools, missing.wireguard_go) {
        (true, true) => "wireguard-tools and wireguard-go",
        (false, true) => "wireguard-go",
        _ => "wireguard-tools",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOOLS: Missing = Missing {
        tools: true,
        wireguard_go: false,
    };

    /// A kernel without WireGuard gets wireguard-go with the tools (or
    /// alone), on the distributions that package it; elsewhere nothing is
    /// planned for it (run() then says how to get it).
    #[test]
    fn wireguard_go_where_the_kernel_has_no_wireguard() {
        let both = Missing {
            tools: true,
            wireguard_go: true,
        };
        let go = Missing {
            tools: false,
            wireguard_go: true,
        };
        let debian = install_commands("ID=debian\n", both).unwrap();
        assert_eq!(
            debian.last().unwrap()[4..],
            ["wireguard-tools", "wireguard-go"]
        );
        let ubuntu = install_commands("ID=ubuntu\n", go).unwrap();
        assert_eq!(ubuntu.last().unwrap()[4..], ["wireguard-go"]);
        assert!(install_commands("ID=fedora\n", go).unwrap().is_empty());
        assert!(install_commands("ID=plan9\n", go).unwrap().is_empty());
        let fedora = install_commands("ID=fedora\n", both).unwrap();
        assert!(!fedora.iter().flatten().any(|a| *a == "wireguard-go"));
    }

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
            let commands = install_commands(os_release, TOOLS).unwrap();
            let install = commands.last().unwrap();
            assert!(install.contains(&flag), "{os_release}: {install:?}");
            assert_eq!(install.last(), Some(&"wireguard-tools"), "{install:?}");
        }
    }

    #[test]
    fn picks_the_package_manager() {
        let first = |text: &str| install_commands(text, TOOLS).unwrap().last().unwrap()[0];
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
        let err = install_commands("ID=plan9\n", TOOLS).unwrap_err();
        assert_eq!(err.code(), 1, "an unknown distribution is a system failure");
        let err = err.to_string();
        assert!(
            err.contains("plan9") && err.contains("wireguard-tools"),
            "{err}"
        );
    }
}
