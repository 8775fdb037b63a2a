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
    fn odd_binary_paths_are_refused() {
        for bad in ["relative/wgp2p", "/a b/wgp2p", "/a%i/wgp2p", "/a\"/wgp2p"] {
            let err = render(Path::new(bad)).unwrap_err().to_string();
            assert!(err.contains("expected an absolute path"), "{err}");
        }
    }
}
