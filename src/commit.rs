//! Commit a planned change: the config file (atomically) and the live
//! interface change together or not at all.

use crate::config::document::Document;
use crate::config::node::Node;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::routing;
use crate::store::{self, Change};
use crate::wg::Delta;

/// Where a change took effect.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    /// In the file and on the running interface.
    Live,
    /// In the file only: the interface is down and reads it at next start.
    FileOnly,
}

impl Applied {
    /// The words that end a report line, e.g. "added peer x (live)".
    pub fn describe(&self) -> &'static str {
        match self {
            Applied::Live => "live, no restart",
            Applied::FileOnly => {
                "saved; the interface is down, so it applies at the next `wgp2p start`"
            }
        }
    }
}

/// Write `new_doc` as the node's config, then apply `deltas` live in one
/// device call (see [`commit_change`]).
pub fn commit(
    node: &Node,
    new_doc: &Document,
    deltas: &[Delta],
    device: &dyn Device,
) -> Result<Applied> {
    let mut change = Change::new();
    change.write(node.paths.conf_name(), new_doc.render());
    commit_change(node, &change, deltas, device)
}

/// Make `change` in the config dir `dir` as one transaction, with no live
/// part (`uninstall`: the interface is already down).
pub fn commit_files(dir: &std::path::Path, change: &Change) -> Result<()> {
    store::apply(dir, change)
}

/// Make `change` in the config dir as one transaction (`store::apply`),
/// then apply `deltas` live in one device call. What can fail before a
/// write does: the device is asked whether it is up and DNS names are
/// resolved first. When the device refuses, the files are put back as
/// they were and the device's error returned; when it does not answer in
/// time, the files stay (the device may still apply the change) and the
/// error says the live state is unknown.
pub fn commit_change(
    node: &Node,
    change: &Change,
    deltas: &[Delta],
    device: &dyn Device,
) -> Result<Applied> {
    // Only existence matters here: reading every peer would cost
    // milliseconds on a big mesh, for nothing.
    let live = device.is_up()?;
    if live {
        // A DNS name that does not resolve fails before anything is written.
        for delta in deltas {
            if let Delta::UpsertPeer {
                endpoint: Some(endpoint),
                ..
            } = delta
            {
                endpoint.resolve()?;
            }
        }
    }
    let dir = &node.paths.dir;
    // The routes the change moves, and whether the kernel can take them,
    // before anything is written.
    let routes = if live {
        route_changes(node, change, device)?
    } else {
        None
    };
    let undo = if live {
        store::undo_of(dir, change)?
    } else {
        Change::new()
    };
    store::apply(dir, change)?;
    if !live {
        return Ok(Applied::FileOnly);
    }
    match device.apply(deltas) {
        Ok(()) => {}
        Err(unknown @ Error::LiveUnknown(_)) => return Err(unknown),
        Err(device_error) => {
            store::apply(dir, &undo)?;
            return Err(device_error);
        }
    }
    // Routes last: a new network is routed once its peer holds it, an old
    // one unrouted once no peer does.
    if let Some(routes) = routes {
        device.apply_routes(&routes).map_err(|e| {
            Error::LiveUnknown(format!(
                "{} and the peers changed, but not every route: {e}",
                node.paths.conf_name()
            ))
        })?;
    }
    Ok(Applied::Live)
}

/// The routes `wg-quick up` makes for the config `change` writes that it
/// does not make for the config it replaces, and those it no longer
/// makes (`routing::Changes::between`); `None` when the change leaves the
/// config alone or the device has no routes. Refused (nothing written)
/// when another interface holds a route the change needs: `wg-quick up`
/// would fail on it the same way.
fn route_changes(
    node: &Node,
    change: &Change,
    device: &dyn Device,
) -> Result<Option<routing::Changes>> {
    let name = node.paths.conf_name();
    let Some(new_text) = change.written(&name) else {
        return Ok(None);
    };
    let Some(now) = device.routes()? else {
        return Ok(None);
    };
    let spec_of = |bytes: &[u8]| {
        Document::parse(&String::from_utf8_lossy(bytes))
            .ok()
            .and_then(|doc| routing::Spec::of(&doc).ok())
    };
    let Some(new) = spec_of(new_text) else {
        return Ok(None);
    };
    let old = store::current(&node.paths.dir, &name)?
        .as_deref()
        .and_then(spec_of);
    let new = routing::wanted(&new, &now.covering);
    let old = old
        .map(|o| routing::wanted(&o, &now.covering))
        .unwrap_or_default();
    let changes = routing::Changes::between(&old, &new, &now);
    if let Some((route, through)) = changes.blocked(&now) {
        return Err(Error::Conflict(format!(
            "route {route} is already there through {through}: `{}` would fail (\"File exists\"), as would `wg-quick up`; expected networks no other interface routes",
            route.add_command(&node.paths.iface)
        )));
    }
    Ok((!changes.is_empty()).then_some(changes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::node::Paths;
    use crate::wg::LiveDevice;
    use std::cell::RefCell;

    /// A device that is up and records (or refuses, or times out on) deltas.
    #[derive(Default)]
    struct FakeDevice {
        refuse: bool,
        time_out: bool,
        applied: RefCell<Vec<String>>,
    }

    impl Device for FakeDevice {
        fn is_up(&self) -> Result<bool> {
            Ok(true)
        }
        fn live(&self) -> Result<Option<LiveDevice>> {
            Ok(Some(LiveDevice {
                backend: "fake",
                public_key: None,
                listen_port: None,
                peers: vec![],
            }))
        }
        fn apply(&self, deltas: &[Delta]) -> Result<()> {
            if self.refuse {
                return Err(Error::System("device says no".into()));
            }
            if self.time_out {
                return Err(Error::LiveUnknown("no answer".into()));
            }
            self.applied.borrow_mut().push(format!("{deltas:?}"));
            Ok(())
        }
    }

    fn node_in(dir: &std::path::Path, text: &str) -> Node {
        std::fs::write(dir.join("wg0.conf"), text).unwrap();
        Node::load(Paths::new(dir.to_path_buf(), "wg0".parse().unwrap())).unwrap()
    }

    #[test]
    fn refused_delta_restores_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let node = node_in(dir.path(), "[Interface]\n# old\n");
        let new_doc = Document::parse("[Interface]\n# new\n").unwrap();
        let device = FakeDevice {
            refuse: true,
            ..FakeDevice::default()
        };
        let err = commit(&node, &new_doc, &[], &device).unwrap_err();
        assert_eq!(err.to_string(), "device says no");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("wg0.conf")).unwrap(),
            "[Interface]\n# old\n"
        );
    }

    #[test]
    fn accepted_delta_keeps_the_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let node = node_in(dir.path(), "[Interface]\n# old\n");
        let new_doc = Document::parse("[Interface]\n# new\n").unwrap();
        let device = FakeDevice::default();
        let key = "DD5yKRfzExcV5+kDnTroDgCU15latdMjiQ59j1hEuk8="
            .parse()
            .unwrap();
        assert_eq!(
            commit(&node, &new_doc, &[Delta::RemovePeer(key)], &device).unwrap(),
            Applied::Live
        );
        assert_eq!(device.applied.borrow().len(), 1);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("wg0.conf")).unwrap(),
            "[Interface]\n# new\n"
        );
    }

    #[test]
    fn refused_delta_restores_every_file_of_the_change() {
        let dir = tempfile::tempdir().unwrap();
        let node = node_in(dir.path(), "[Interface]\n# old\n");
        std::fs::write(dir.path().join("privatekey"), "old key\n").unwrap();
        let mut change = Change::new();
        change
            .write("wg0.conf", "[Interface]\n# new\n")
            .write("privatekey", "new key\n")
            .write("publickey", "new public\n");
        let device = FakeDevice {
            refuse: true,
            ..FakeDevice::default()
        };
        commit_change(&node, &change, &[], &device).unwrap_err();
        let read = |n: &str| std::fs::read_to_string(dir.path().join(n)).ok();
        assert_eq!(read("wg0.conf").as_deref(), Some("[Interface]\n# old\n"));
        assert_eq!(read("privatekey").as_deref(), Some("old key\n"));
        assert_eq!(read("publickey"), None);
    }

    #[test]
    fn device_timeout_keeps_the_new_file_and_says_repair() {
        let dir = tempfile::tempdir().unwrap();
        let node = node_in(dir.path(), "[Interface]\n# old\n");
        let new_doc = Document::parse("[Interface]\n# new\n").unwrap();
        let device = FakeDevice {
            time_out: true,
            ..FakeDevice::default()
        };
        let err = commit(&node, &new_doc, &[], &device).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("the live state is unknown: run `wgp2p repair`"),
            "{err}"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("wg0.conf")).unwrap(),
            "[Interface]\n# new\n"
        );
    }
}
