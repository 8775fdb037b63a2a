//! What every command gets: the node's paths and the global options, the
//! environment read once in `main`, and the seams (service, device).

use crate::config::node::{Node, Paths};
use crate::device::{Device, Offline, WgDevice};
use crate::error::{Error, Result};
use crate::service::{Kind, Service};
use crate::store::{self, DirLock};

/// wgp2p's own environment variables, read once at start-up and passed
/// down. Deeper down, the process environment is read only for `PATH`
/// (finding programs, in `system`) and `NO_COLOR` (in `output`), and child
/// processes inherit it.
#[derive(Clone, Debug, Default)]
pub struct Env {
    /// `WGP2P_ENDPOINT`: this node's public HOST[:PORT].
    pub endpoint: Option<String>,
    /// `WGP2P_STUN_SERVERS`: comma-separated STUN servers (empty: no discovery).
    pub stun_servers: Option<String>,
    /// `WGP2P_SERVICE`: systemd, wg-quick or none.
    pub service: Option<String>,
    /// Whether `JOURNAL_STREAM` is set: systemd sets it for a service whose
    /// stderr goes to the journal, which stamps every line itself.
    pub journal_stream: bool,
}

impl Env {
    pub fn from_process() -> Env {
        let var = |name: &str| std::env::var(name).ok();
        Env {
            endpoint: var("WGP2P_ENDPOINT").filter(|v| !v.is_empty()),
            stun_servers: var("WGP2P_STUN_SERVERS"),
            service: var("WGP2P_SERVICE").filter(|v| !v.is_empty()),
            journal_stream: std::env::var_os("JOURNAL_STREAM").is_some(),
        }
    }
}

pub struct Context {
    pub paths: Paths,
    /// `--port` / `WG_PORT`, when given.
    pub port: Option<u16>,
    pub json: bool,
    pub env: Env,
    pub service_kind: Kind,
    /// Why the service manager was chosen, when it is worth saying.
    pub service_note: Option<String>,
}

impl Context {
    pub fn new(paths: Paths, port: Option<u16>, json: bool, env: Env) -> Result<Context> {
        let (service_kind, service_note) = Kind::detect(env.service.as_deref(), &paths.dir)?;
        Ok(Context {
            paths,
            port,
            json,
            env,
            service_kind,
            service_note,
        })
    }

    /// `wgp2p ARGS` as the user must type it for this node: with
    /// `--interface` and `--config-dir` when they are not the defaults,
    /// for advice that works when run as printed.
    pub fn command(&self, args: &str) -> String {
        let mut line = String::from("wgp2p");
        if self.paths.iface.as_str() != "wg0" {
            line.push_str(&format!(" --interface {}", self.paths.iface));
        }
        if self.paths.dir != std::path::Path::new("/etc/wireguard") {
            line.push_str(&format!(" --config-dir {}", self.paths.dir.display()));
        }
        line.push(' ');
        line.push_str(args);
        line
    }

    pub fn device(&self) -> Box<dyn Device> {
        match self.service_kind {
            Kind::None => Box::new(Offline),
            _ => Box::new(WgDevice::new(self.paths.iface.clone())),
        }
    }

    pub fn service(&self) -> Box<dyn Service> {
        self.service_kind.service(&self.paths)
    }

    /// Commands that touch the interface or /etc need root; with
    /// `WGP2P_SERVICE=none` only files change, so the dir's owner will do.
    pub fn require_root(&self, command: &'static str) -> Result<()> {
        if !rustix::process::geteuid().is_root() && self.service_kind != Kind::None {
            return Err(Error::NeedsRoot(command));
        }
        Ok(())
    }

    /// Say once, on stderr, how the interface is run when it matters.
    pub fn print_service_note(&self) {
        if let Some(note) = &self.service_note {
            eprintln!("{note}");
        }
    }

    /// Lock the config dir and read the node: the start of every change.
    /// The dir's entries are checked first (no links, our owner, modes
    /// 0600/0700), and a change a killed run left half made is completed.
    pub fn lock_and_load(&self) -> Result<(DirLock, Node)> {
        self.lock_checked(false, None)
    }

    /// As `lock_and_load`, waiting at most `wait` for the lock (the agent).
    pub fn lock_and_load_within(&self, wait: std::time::Duration) -> Result<(DirLock, Node)> {
        self.lock_checked(false, Some(wait))
    }

    /// Lock the config dir and read the node for a command that only shows
    /// it (`export`, `add-peer` without arguments, `trust` without one) or
    /// hands it to wg-quick as it is (`start`, `stop`):
    /// a change a killed run left half made is completed, but modes are
    /// not refused (what wg-quick runs with, a read may show) and a config
    /// that is not UTF-8 is read lossily (`Node::load_to_show`).
    pub fn lock_and_show(&self) -> Result<(DirLock, Node)> {
        if !self.paths.dir.is_dir() {
            return Err(crate::config::node::not_installed(&self.paths));
        }
        let lock = store::lock(&self.paths.dir)?;
        let (node, _) = Node::load_to_show(self.paths.clone())?;
        Ok((lock, node))
    }

    /// As `lock_and_load`, setting wrong modes right instead of refusing
    /// them (`install`).
    pub fn lock_and_load_repairing(&self) -> Result<(DirLock, Node)> {
        self.lock_checked(true, None)
    }

    /// A change that a killed run left half made (its journal is still
    /// there), in words, without advice: `wgp2p repair` completes it, as
    /// any run that takes the lock does. `None` when there is none.
    pub fn interrupted_change(&self) -> Option<String> {
        store::journal_pending(&self.paths.dir).then(|| {
            format!(
                "a change was interrupted before it completed ({} is left: until it completes, the files may be part old, part new)",
                self.paths.dir.join(store::JOURNAL).display()
            )
        })
    }

    /// Entries of the config dir whose mode is not 0600 (dirs 0700), or
    /// that are links or not ours, each as one line with its fix (for
    /// `doctor`); none when the dir does not exist.
    pub fn local_state_findings(&self) -> Vec<String> {
        if !self.paths.dir.is_dir() {
            return Vec::new();
        }
        let files = self.paths.own_files();
        let names: Vec<&str> = files.iter().map(String::as_str).collect();
        match store::check_modes(&self.paths.dir, &names, false) {
            Ok(found) => found.iter().map(|f| f.error().to_string()).collect(),
            Err(e) => vec![e.to_string()],
        }
    }

    fn lock_checked(
        &self,
        repair: bool,
        wait: Option<std::time::Duration>,
    ) -> Result<(DirLock, Node)> {
        if !self.paths.dir.is_dir() {
            return Err(crate::config::node::not_installed(&self.paths));
        }
        let lock = match wait {
            Some(wait) => store::lock_within(&self.paths.dir, wait)?,
            None => store::lock(&self.paths.dir)?,
        };
        let files = self.paths.own_files();
        let names: Vec<&str> = files.iter().map(String::as_str).collect();
        if let Some(finding) = store::check_modes(&self.paths.dir, &names, repair)?.first() {
            return Err(finding.error());
        }
        let node = Node::load(self.paths.clone())?;
        if let Some(doc) = &node.conf {
            crate::config::node::check_keys_unique(doc)?;
        }
        Ok((lock, node))
    }
}
