//! The systemd unit `wgp2p-agent@.service` (contrib/wgp2p-agent@.service,
//! embedded): one agent per interface, started after `wg-quick@IFACE` and
//! stopped with it, run with the options of `<iface>.agent.env`.
//!
//! Two homes: the Debian package ships it in [`PACKAGED_DIRS`] with
//! ExecStart at [`PACKAGED_BINARY`]; any other binary (a source install)
//! writes its own copy into [`UNIT_DIR`], which `uninstall` removes once no
//! interface's agent is enabled.

use std::path::Path;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::types::InterfaceName;

/// The unit as shipped; its ExecStart names [`PACKAGED_BINARY`].
const TEMPLATE: &str = include_str!("../../contrib/wgp2p-agent@.service");
/// The binary the Debian package installs, which its unit runs.
pub const PACKAGED_BINARY: &str = "/usr/bin/wgp2p";
/// Where a package's units live (Debian 12 still ships under /lib; merged
/// /usr systems under /usr/lib).
pub const PACKAGED_DIRS: [&str; 2] = ["/lib/systemd/system", "/usr/lib/systemd/system"];

/// Where `agent enable` writes the unit when the package's does not run
/// this binary.
pub const UNIT_DIR: &str = "/etc/systemd/system";
pub const UNIT_FILE: &str = "wgp2p-agent@.service";

/// The instance name for an interface, e.g. `wgp2p-agent@wg0`.
pub fn instance(iface: &InterfaceName) -> String {
    format!("wgp2p-agent@{iface}")
}

/// The file of the config dir the unit reads its options from
/// (`EnvironmentFile=-/etc/wireguard/%i.agent.env`).
pub fn env_file(iface: &InterfaceName) -> String {
    format!("{iface}.agent.env")
}

/// The options an enabled agent runs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    pub interval: Duration,
    /// `Some(after)` with `--auto-relay --relay-after AFTER`.
    pub auto_relay: Option<Duration>,
}

impl Default for Options {
    /// What `wgp2p agent` runs with when given no option.
    fn default() -> Options {
        Options {
            interval: Duration::from_secs(30),
            auto_relay: None,
        }
    }
}

/// The text of `<iface>.agent.env`: the agent's arguments in
/// `WGP2P_AGENT_ARGS`, which the unit's ExecStart splits on blanks.
pub fn env_text(iface: &InterfaceName, options: Options) -> String {
    let mut args = format!("--interval {}", options.interval.as_secs());
    if let Some(after) = options.auto_relay {
        args.push_str(&format!(" --auto-relay --relay-after {}", after.as_secs()));
    }
    format!(
        "# The options of {} (systemd reads this file; `wgp2p agent enable` rewrites it).\nWGP2P_AGENT_ARGS={args}\n",
        instance(iface)
    )
}

/// Which unit file `agent enable` relies on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Home {
    /// The package's unit: nothing to write.
    Packaged,
    /// A unit in [`UNIT_DIR`] that runs this binary, written by `agent enable`.
    Written,
}

/// The package's unit serves when it is installed, this is the packaged
/// binary, and no unit in [`UNIT_DIR`] overrides it (one written earlier
/// by a source install is rewritten instead, so what runs is this binary).
pub fn home(exe: &Path, packaged_present: bool, written_present: bool) -> Home {
    if packaged_present && !written_present && exe == Path::new(PACKAGED_BINARY) {
        Home::Packaged
    } else {
        Home::Written
    }
}

/// Whether a unit of the package is installed.
pub fn packaged_present() -> bool {
    PACKAGED_DIRS
        .iter()
        .any(|dir| Path::new(dir).join(UNIT_FILE).is_file())
}

/// Whether `text` is a unit wgp2p wrote (its first line is the template's).
pub fn is_ours(text: &str) -> bool {
    text.lines().next() == TEMPLATE.lines().next()
}

/// Whether any entry of the `.wants` directories of [`UNIT_DIR`] (given as
/// file names) is an enabled instance of the agent.
pub fn any_instance_enabled<'a>(wanted: impl IntoIterator<Item = &'a str>) -> bool {
    wanted
        .into_iter()
        .any(|name| name.starts_with("wgp2p-agent@") && name != UNIT_FILE)
}

/// The unit text with ExecStart pointing at `binary`. A path systemd would
/// read differently (blanks, quotes, backslashes, `%` specifiers) is
/// refused rather than escaped.
pub fn render(binary: &Path) -> Result<String> {
    let text = binary.to_str().filter(|t| {
        t.starts_with('/')
            && !t
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || "\"'\\%;$".contains(c))
    });
    let Some(text) = text else {
        return Err(Error::Invalid(format!(
            "cannot write a systemd unit for the binary at {}: expected an absolute path without blanks, quotes, backslashes, `%`, `$` or `;`",
            binary.display()
        )));
    };
    Ok(TEMPLATE.replace(
        &format!("ExecStart={PACKAGED_BINARY} "),
        &format!("ExecStart={text} "),
    ))
}

/// Write the unit into `dir` as `UNIT_FILE`, mode 0644, atomically (a temp
/// file in the same dir, fsync, rename).
pub fn install(dir: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let path = dir.join(UNIT_FILE);
    let temp = dir.join(format!(".{UNIT_FILE}.wgp2p-tmp"));
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o644)
        .open(&temp)
        .map_err(|e| Error::io("create", &temp, e))?;
    // The umask may have taken bits away: systemd units are world-readable.
    file.set_permissions(std::fs::Permissions::from_mode(0o644))
        .and_then(|()| file.write_all(text.as_bytes()))
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io("write", &temp, e))?;
    std::fs::rename(&temp, &path).map_err(|e| Error::io("replace", &path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_runs_this_binary_after_wg_quick_with_its_options() {
        let text = render(Path::new("/opt/wgp2p/bin/wgp2p")).unwrap();
        assert!(
            text.contains(
                "\nExecStart=/opt/wgp2p/bin/wgp2p --interface %i agent $WGP2P_AGENT_ARGS\n"
            ),
            "{text}"
        );
        for line in [
            "After=wg-quick@%i.service",
            "BindsTo=wg-quick@%i.service",
            "WantedBy=wg-quick@%i.service",
            "Restart=on-failure",
            "EnvironmentFile=-/etc/wireguard/%i.agent.env",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
        assert!(is_ours(&text));
        assert!(!is_ours("[Unit]\nDescription=mine\n"));
        assert_eq!(instance(&"wg0".parse().unwrap()), "wgp2p-agent@wg0");
    }

    #[test]
    fn the_env_file_holds_the_agent_options() {
        let wg0 = "wg0".parse().unwrap();
        let plain = Options {
            interval: Duration::from_secs(30),
            auto_relay: None,
        };
        assert!(env_text(&wg0, plain).ends_with("\nWGP2P_AGENT_ARGS=--interval 30\n"));
        let relay = Options {
            interval: Duration::from_secs(5),
            auto_relay: Some(Duration::from_secs(60)),
        };
        assert!(
            env_text(&wg0, relay)
                .ends_with("\nWGP2P_AGENT_ARGS=--interval 5 --auto-relay --relay-after 60\n")
        );
        assert_eq!(env_file(&wg0), "wg0.agent.env");
    }

    #[test]
    fn the_packaged_unit_serves_only_the_packaged_binary_when_nothing_overrides_it() {
        let packaged = Path::new(PACKAGED_BINARY);
        assert_eq!(home(packaged, true, false), Home::Packaged);
        assert_eq!(home(packaged, true, true), Home::Written);
        assert_eq!(home(packaged, false, false), Home::Written);
        assert_eq!(
            home(Path::new("/usr/local/bin/wgp2p"), true, false),
            Home::Written
        );
    }

    #[test]
    fn an_enabled_instance_is_found_among_the_wants() {
        assert!(any_instance_enabled(["wgp2p-agent@wg0.service"]));
        assert!(!any_instance_enabled(["wg-quick@wg0.service", UNIT_FILE]));
        assert!(!any_instance_enabled([]));
    }

    #[test]
    fn install_writes_a_readable_unit_and_replaces_it() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        install(dir.path(), "one").unwrap();
        install(dir.path(), "two").unwrap();
        let path = dir.path().join(UNIT_FILE);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two");
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o644);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn odd_binary_paths_are_refused() {
        for bad in [
            "relative/wgp2p",
            "/a b/wgp2p",
            "/a%i/wgp2p",
            "/a\"/wgp2p",
            "/a$x/wgp2p",
        ] {
            let err = render(Path::new(bad)).unwrap_err().to_string();
            assert!(err.contains("expected an absolute path"), "{err}");
        }
    }
}
