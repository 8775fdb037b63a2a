//! Commit a planned change: the config file (atomically) and the live
//! interface change together or not at all.

use crate::config::document::Document;
use crate::config::node::Node;
use crate::device::Device;
use crate::error::Result;
use crate::plan::Delta;
use crate::store;

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
/// device call. When the device refuses, the old file is put back and the
/// device's error returned.
pub fn commit(
    node: &Node,
    new_doc: &Document,
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
    let name = node.paths.conf_name();
    store::write_atomic(dir, &name, new_doc.render().as_bytes())?;
    if !live {
        return Ok(Applied::FileOnly);
    }
    if let Err(device_error) = device.apply(deltas) {
        restore(node)?;
        return Err(device_error);
    }
    Ok(Applied::Live)
}

/// Put the config back as it was read.
fn restore(node: &Node) -> Result<()> {
    match &node.conf_text {
        Some(text) => {
            store::write_atomic(&node.paths.dir, &node.paths.conf_name(), text.as_bytes())
        }
        None => store::remove_file(&node.paths.conf()).map(|_| ()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::node::Paths;
    use crate::device::LiveDevice;
    use crate::error::Error;
    use std::cell::RefCell;

    /// A device that is up and records (or refuses) deltas.
    struct FakeDevice {
        refuse: bool,
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
            applied: RefCell::new(vec![]),
        };
        let err = commit(&node, &new_doc, &[Delta::None], &device).unwrap_err();
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
        let device = FakeDevice {
            refuse: false,
            applied: RefCell::new(vec![]),
        };
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
}
