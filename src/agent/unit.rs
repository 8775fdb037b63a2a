//! The systemd unit `wgp2p-agent@.service` (contrib/wgp2p-agent@.service,
//! embedded): one agent per interface, started after `wg-quick@IFACE` and
//! stopped with it.

use std::path::Path;

use crate::error::{Error, Result};
use crate::types::InterfaceName;

/// The unit as shipped; its ExecStart names /usr/local/bin/wgp2p.
const TEMPLATE: &str = include_str!("../../contrib/wgp2p-agent@.service");
const SHIPPED_BINARY: &str = "/usr/local/bin/wgp2p";

/// Where `agent enable` installs the unit.
pub const UNIT_DIR: &str = "/etc/systemd/system";
pub const UNIT_FILE: &str = "wgp2p-agent@.service";

/// The instance name for an interface, e.g. `wgp2p-agent@wg0`.
pub fn instance(iface: &InterfaceName) -> String {
    format!("wgp2p-agent@{iface}")
}

/// The unit text with ExecStart pointing at `binary`. A path systemd would
/// read differently (blanks, quotes, backslashes, `%` specifiers) is
/// refused rather than escaped.
pub fn render(binary: &Path) -> Result<String> {
    let text = binary.to_str().filter(|t| {
        t.starts_with('/')
            && !t
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || "\"'\\%;".contains(c))
    });
    let Some(text) = text else {
        return Err(Error::Invalid(format!(
            "cannot write a systemd unit for the binary at {}: expected an absolute path without blanks, quotes, backslashes, `%` or `;`",
            binary.display()
        )));
    };
    Ok(TEMPLATE.replace(
        &format!("ExecStart={SHIPPED_BINARY} "),
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
    fn unit_runs_this_binary_after_wg_quick() {
        let text = render(Path::new("/opt/wgp2p/bin/wgp2p")).unwrap();
        assert!(
            text.contains("\nExecStart=/opt/wgp2p/bin/wgp2p --interface %i agent\n"),
            "{text}"
        );
        for line in [
            "After=wg-quick@%i.service",
            "BindsTo=wg-quick@%i.service",
            "WantedBy=wg-quick@%i.service",
            "Restart=on-failure",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
        assert_eq!(instance(&"wg0".parse().unwrap()), "wgp2p-agent@wg0");
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
        for bad in ["relative/wgp2p", "/a b/wgp2p", "/a%i/wgp2p", "/a\"/wgp2p"] {
            let err = render(Path::new(bad)).unwrap_err().to_string();
            assert!(err.contains("expected an absolute path"), "{err}");
        }
    }
}
