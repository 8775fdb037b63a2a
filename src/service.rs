//! Bringing the interface up and down, behind the `Service` seam:
//! `wg-quick@IFACE` under systemd, plain `wg-quick up|down` elsewhere.

use std::path::Path;

use crate::config::node::Paths;
use crate::error::{Error, Result};
use crate::system::run;

pub trait Service {
    /// A short name for messages, e.g. `systemd unit wg-quick@wg0`.
    fn describe(&self) -> String;
    /// Start now and at boot (install).
    fn enable_and_start(&self) -> Result<()>;
    fn start(&self) -> Result<()>;
    fn stop(&self) -> Result<()>;
    /// Stop now and no longer at boot (uninstall).
    fn stop_and_disable(&self) -> Result<()>;
}

/// Which service manager runs the interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Systemd,
    WgQuick,
    /// Files only: nothing is started or stopped and the live interface is
    /// never touched (for preparing configs, and for tests).
    None,
}

impl Kind {
    /// `WGP2P_SERVICE` when set, systemd where it runs, wg-quick elsewhere.
    pub fn detect(forced: Option<&str>, config_dir: &Path) -> Result<(Kind, Option<String>)> {
        match forced {
            Some("systemd") => Ok((Kind::Systemd, None)),
            Some("wg-quick") => Ok((Kind::WgQuick, None)),
            Some("none") => Ok((Kind::None, None)),
            Some(other) => Err(Error::Invalid(format!(
                "invalid WGP2P_SERVICE {other:?}: expected systemd, wg-quick or none"
            ))),
            None if Path::new("/run/systemd/system").exists() => {
                // The wg-quick@ unit reads /etc/wireguard only.
                if config_dir == Path::new("/etc/wireguard") {
                    Ok((Kind::Systemd, None))
                } else {
                    Ok((
                        Kind::WgQuick,
                        Some(format!(
                            "note: using wg-quick directly: the wg-quick@ systemd unit reads /etc/wireguard, not {}",
                            config_dir.display()
                        )),
                    ))
                }
            }
            None => Ok((
                Kind::WgQuick,
                Some("note: systemd is not running here: using wg-quick up/down directly (not started at boot)".into()),
            )),
        }
    }

    pub fn service(self, paths: &Paths) -> Box<dyn Service> {
        match self {
            Kind::Systemd => Box::new(Systemd {
                unit: format!("wg-quick@{}", paths.iface),
            }),
            Kind::WgQuick => Box::new(WgQuick {
                conf: paths.conf().display().to_string(),
            }),
            Kind::None => Box::new(NoService),
        }
    }
}

struct Systemd {
    unit: String,
}

impl Service for Systemd {
    fn describe(&self) -> String {
        format!("systemd unit {}", self.unit)
    }
    fn enable_and_start(&self) -> Result<()> {
        run("systemctl", &["enable", "--now", &self.unit])
    }
    fn start(&self) -> Result<()> {
        run("systemctl", &["start", &self.unit])
    }
    fn stop(&self) -> Result<()> {
        run("systemctl", &["stop", &self.unit])
    }
    fn stop_and_disable(&self) -> Result<()> {
        run("systemctl", &["disable", "--now", &self.unit])
    }
}

struct WgQuick {
    /// wg-quick takes a path and names the interface after the file.
    conf: String,
}

impl Service for WgQuick {
    fn describe(&self) -> String {
        format!("wg-quick {}", self.conf)
    }
    fn enable_and_start(&self) -> Result<()> {
        self.start()
    }
    fn start(&self) -> Result<()> {
        run("wg-quick", &["up", &self.conf])
    }
    fn stop(&self) -> Result<()> {
        run("wg-quick", &["down", &self.conf])
    }
    fn stop_and_disable(&self) -> Result<()> {
        self.stop()
    }
}

struct NoService;

impl Service for NoService {
    fn describe(&self) -> String {
        "no service manager (WGP2P_SERVICE=none: files only)".into()
    }
    fn enable_and_start(&self) -> Result<()> {
        Ok(())
    }
    fn start(&self) -> Result<()> {
        Ok(())
    }
    fn stop(&self) -> Result<()> {
        Ok(())
    }
    fn stop_and_disable(&self) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forced_kinds() {
        let etc = Path::new("/etc/wireguard");
        assert_eq!(Kind::detect(Some("systemd"), etc).unwrap().0, Kind::Systemd);
        assert_eq!(
            Kind::detect(Some("wg-quick"), etc).unwrap().0,
            Kind::WgQuick
        );
        assert_eq!(Kind::detect(Some("none"), etc).unwrap().0, Kind::None);
        assert!(Kind::detect(Some("openrc"), etc).is_err());
    }
}
