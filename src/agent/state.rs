//! What the agent keeps in the config dir, and how others see it:
//! - `<iface>.agent.lock`: held (flock) by the running agent for its whole
//!   life. It keeps a second agent off the interface and tells `status` and
//!   `doctor` that one runs; a killed agent releases it with its process,
//!   so a stale PID can never look alive.
//! - `<iface>.agent.json`: the agent's state, rewritten after every pass
//!   (PID, last pass, the last resolution of each DNS endpoint and the
//!   endpoints it set live, the peers whose agents it heard, its socket and
//!   its message counters). It is rebuilt if lost; a restarted agent reads
//!   it so that a name that moved while it was down is still noticed.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions, TryLockError};
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::action::Refresh;
use super::endpoints::Memory;
pub use super::greet::Heard;
use crate::config::node::Paths;
use crate::error::{Error, Result};
use crate::status::{AgentHeardView, AgentView, LearnedEndpoint, LinkStatus, Reason, RelayView};
use crate::types::PublicKey;

/// The state file's format version.
const VERSION: u32 = 1;

pub fn lock_path(paths: &Paths) -> PathBuf {
    paths.dir.join(format!("{}.agent.lock", paths.iface))
}

pub fn state_path(paths: &Paths) -> PathBuf {
    paths.dir.join(format!("{}.agent.json", paths.iface))
}

/// The agent's files in the config dir, by name (for `uninstall`): also
/// the temp files of [`replace_json`], which an agent killed while saving
/// leaves (the next save reuses them; only `uninstall` must remove them).
pub fn file_names(iface: &crate::types::InterfaceName) -> [String; 5] {
    let state = format!("{iface}.agent.json");
    let book = super::membership::file_name(iface);
    [
        crate::store::unlocked_temp_name(&state),
        crate::store::unlocked_temp_name(&book),
        state,
        format!("{iface}.agent.lock"),
        book,
    ]
}

/// Remove the agent's files but its lock (the running agent holds it: a
/// lock is never deleted while held); missing ones are fine.
pub fn remove_files(paths: &Paths) {
    let lock = lock_path(paths);
    for name in file_names(&paths.iface) {
        let file = paths.dir.join(name);
        if file != lock {
            let _ = std::fs::remove_file(file);
        }
    }
}

/// Proof that this process is the interface's one agent; dropping it
/// (or dying) lets another start.
pub struct Running {
    _file: File,
}

impl Running {
    /// Take the agent lock, or say that another agent runs.
    pub fn claim(paths: &Paths) -> Result<Running> {
        let path = lock_path(paths);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            // A planted link must not make root create a file elsewhere.
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|e| Error::io("open the agent lock", &path, e))?;
        match file.try_lock() {
            Ok(()) => Ok(Running { _file: file }),
            Err(TryLockError::WouldBlock) => {
                let pid = load(paths)
                    .ok()
                    .flatten()
                    .map(|s| format!(" (pid {})", s.pid));
                Err(Error::Conflict(format!(
                    "an agent already runs for {}{}: expected one agent per interface",
                    paths.iface,
                    pid.unwrap_or_default()
                )))
            }
            Err(TryLockError::Error(e)) => Err(Error::io("lock", &path, e)),
        }
    }
}

/// Whether an agent holds the interface's agent lock right now. The lock
/// is opened without following a link and without blocking (a FIFO
/// planted there cannot hang `status`), and only a regular file counts.
pub fn is_running(paths: &Paths) -> bool {
    let Ok(file) = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(lock_path(paths))
    else {
        return false;
    };
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        return false;
    }
    matches!(file.try_lock_shared(), Err(TryLockError::WouldBlock))
}

/// The PID of the agent that holds the lock now (from its state file),
/// when one runs.
pub fn running_pid(paths: &Paths) -> Option<u32> {
    if !is_running(paths) {
        return None;
    }
    load(paths).ok().flatten().map(|s| s.pid)
}

/// Whether process `pid` is a `wgp2p … agent` (its command line says so):
/// a PID read from a file is never signalled on faith.
fn is_agent_process(pid: u32) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let mut args = cmdline.split(|b| *b == 0);
    let is_wgp2p = args
        .next()
        .and_then(|a| Path::new(std::str::from_utf8(a).ok()?).file_name())
        .is_some_and(|n| n.to_string_lossy().starts_with("wgp2p"));
    is_wgp2p && args.any(|a| a == b"agent")
}

/// Stop the interface's running agent before its files go (`uninstall`):
/// SIGTERM to the PID its state file names, when that process is a wgp2p
/// agent, then wait (at most `wait`) until it has let go of its lock.
/// `Ok(None)`: none ran; `Ok(Some(pid))`: stopped. An agent that cannot be
/// stopped is an error naming it, and nothing was changed.
pub fn stop_running(paths: &Paths, wait: Duration, command: &str) -> Result<Option<u32>> {
    if !is_running(paths) {
        return Ok(None);
    }
    let refuse = |pid: Option<u32>| {
        let pid_text = pid.map(|p| format!(" (pid {p})")).unwrap_or_default();
        let how = pid.map_or_else(
            || "stop it".to_string(),
            |p| format!("stop it (`kill {p}`)"),
        );
        Error::Conflict(format!(
            "an agent runs for {}{pid_text} and could not be stopped: {how}, then run `wgp2p {command}` again; nothing was changed",
            paths.iface
        ))
    };
    let Some(pid) = running_pid(paths).filter(|p| is_agent_process(*p)) else {
        return Err(refuse(running_pid(paths)));
    };
    // A PID checked above to be a wgp2p agent.
    let target = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw);
    let Some(target) = target else {
        return Err(refuse(Some(pid)));
    };
    if rustix::process::kill_process(target, rustix::process::Signal::TERM).is_err() {
        return Err(refuse(Some(pid)));
    }
    let deadline = std::time::Instant::now() + wait;
    while std::time::Instant::now() < deadline {
        if !is_running(paths) {
            return Ok(Some(pid));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(refuse(Some(pid)))
}

/// An endpoint the agent set live.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Learned {
    pub address: SocketAddr,
    /// The configured endpoint it was resolved from.
    pub configured: String,
    pub reason: Reason,
    /// Unix seconds.
    pub at: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerState {
    pub public_key: String,
    pub configured: String,
    pub resolved: Vec<SocketAddr>,
    pub learned: Option<Learned>,
}

/// The content of `<iface>.agent.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    pub pid: u32,
    pub interval_secs: u64,
    /// Unix seconds of the end of the last pass.
    pub last_pass: u64,
    pub peers: Vec<PeerState>,
    /// Peers whose agents this agent heard (`hello`), by key. Added after
    /// the first release of the file: absent in an older one.
    #[serde(default)]
    pub agents: Vec<AgentHeard>,
    /// The agents' socket and what came in on it.
    #[serde(default)]
    pub link: LinkStatus,
    /// Endpoints learned from other peers (introductions) and kept.
    #[serde(default)]
    pub introduced: Vec<IntroducedState>,
    /// `--auto-relay`: its settings and memory (absent in an older file).
    #[serde(default)]
    pub auto_relay: Option<super::relay::Saved>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntroducedState {
    pub public_key: String,
    #[serde(flatten)]
    pub introduced: super::hints::Introduced,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentHeard {
    pub public_key: String,
    #[serde(flatten)]
    pub heard: Heard,
}

pub fn unix_now() -> u64 {
    unix(SystemTime::now())
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// What the agent carries from pass to pass.
#[derive(Debug, Default)]
pub struct Knowledge {
    pub memory: Memory,
    pub learned: HashMap<PublicKey, Learned>,
    /// Peers whose name did not resolve at the last pass (said once).
    pub unresolved: HashSet<PublicKey>,
    /// This host's addresses at the last pass (not saved: a restarted
    /// agent starts from what it sees).
    pub addresses: Option<Vec<std::net::IpAddr>>,
    /// Peers whose agent said `hello`, with what it said last.
    pub agents: HashMap<PublicKey, Heard>,
    /// The socket's status, refreshed by the loop before each save.
    pub link: LinkStatus,
    /// Introductions: chases of stale peers, endpoints learned from peers.
    pub hints: super::hints::Hints,
    /// The auto-relay's memory: the peers it relayed, stale peers' clocks.
    pub relay: super::relay::Memory,
}

impl Knowledge {
    pub fn learn(&mut self, refresh: &Refresh, at: u64) {
        self.learned.insert(
            refresh.public_key,
            Learned {
                address: refresh.address,
                configured: refresh.configured.clone(),
                reason: refresh.reason,
                at,
            },
        );
    }

    /// The peer's agent, if it said `hello` within `within` of `now`
    /// (unix seconds).
    pub fn agent_heard(&self, key: &PublicKey, now: u64, within: Duration) -> Option<Heard> {
        self.agents
            .get(key)
            .filter(|h| now.saturating_sub(h.at) <= within.as_secs())
            .copied()
    }

    /// Rebuild from a saved state; entries that do not parse are dropped.
    pub fn from_state(state: &State) -> Knowledge {
        let mut knowledge = Knowledge {
            relay: state
                .auto_relay
                .as_ref()
                .map(super::relay::Memory::load)
                .unwrap_or_default(),
            ..Knowledge::default()
        };
        for agent in &state.agents {
            if let Ok(key) = agent.public_key.parse::<PublicKey>() {
                knowledge.agents.insert(key, agent.heard);
            }
        }
        for introduced in &state.introduced {
            if let Ok(key) = introduced.public_key.parse::<PublicKey>() {
                knowledge.hints.learned.insert(key, introduced.introduced);
            }
        }
        for peer in &state.peers {
            let Ok(key) = peer.public_key.parse::<PublicKey>() else {
                continue;
            };
            knowledge
                .memory
                .insert(key, peer.configured.clone(), peer.resolved.clone());
            if let Some(learned) = &peer.learned {
                knowledge.learned.insert(key, learned.clone());
            }
        }
        knowledge
    }

    pub fn to_state(&self, pid: u32, interval: Duration, last_pass: u64) -> State {
        let mut peers: Vec<PeerState> = self
            .memory
            .iter()
            .map(|(key, configured, resolved)| PeerState {
                public_key: key.to_string(),
                configured: configured.clone(),
                resolved: resolved.clone(),
                learned: self
                    .learned
                    .get(key)
                    .filter(|l| l.configured == *configured)
                    .cloned(),
            })
            .collect();
        peers.sort_by(|a, b| a.public_key.cmp(&b.public_key));
        let mut agents: Vec<AgentHeard> = self
            .agents
            .iter()
            .map(|(key, heard)| AgentHeard {
                public_key: key.to_string(),
                heard: *heard,
            })
            .collect();
        agents.sort_by(|a, b| a.public_key.cmp(&b.public_key));
        let mut introduced: Vec<IntroducedState> = self
            .hints
            .learned
            .iter()
            .map(|(key, introduced)| IntroducedState {
                public_key: key.to_string(),
                introduced: *introduced,
            })
            .collect();
        introduced.sort_by(|a, b| a.public_key.cmp(&b.public_key));
        State {
            version: VERSION,
            pid,
            interval_secs: interval.as_secs(),
            last_pass,
            peers,
            agents,
            link: self.link.clone(),
            introduced,
            auto_relay: None,
        }
    }
}

/// The largest state file read ([`crate::store::read_state`]).
pub const STATE_CAP: u64 = 32 << 20;

/// The saved state, if there is a readable one of this version. A state
/// file that is not a regular file of ours (a link, a FIFO, a device) or
/// is too big is an error (exit 6); one that does not parse is `None`
/// (the agent rebuilds it).
pub fn load(paths: &Paths) -> Result<Option<State>> {
    let Some(bytes) = crate::store::read_state(&state_path(paths), STATE_CAP)? else {
        return Ok(None);
    };
    let state: Option<State> = serde_json::from_slice(&bytes).ok();
    Ok(state.filter(|s| s.version == VERSION))
}

/// Replace the state file (0600, temp file and rename: a reader sees the
/// old or the new one). Not fsynced: it is rebuilt if a crash loses it.
pub fn save(paths: &Paths, state: &State) -> Result<()> {
    replace_json(&state_path(paths), "the agent state", state)
}

/// Replace one of the agent's files in the config dir with `value` as
/// JSON (`store::replace_unlocked`: temp file `.NAME.tmp`, rename; not
/// fsynced, the agent's files are rebuilt or sent again if a crash loses
/// them).
pub fn replace_json(path: &Path, what: &str, value: &impl Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Error::System(format!("cannot write {what}: {e}")))?;
    crate::store::replace_unlocked(path, text.as_bytes())
}

/// Read what the agent left in the config dir, without changing anything.
pub fn observe(paths: &Paths) -> Result<AgentView> {
    let running = is_running(paths);
    let membership = super::membership::observe(paths)?;
    let Some(state) = load(paths)? else {
        return Ok(AgentView {
            running,
            membership,
            ..AgentView::default()
        });
    };
    let now = unix_now();
    Ok(AgentView {
        running,
        membership,
        pid: running.then_some(state.pid),
        last_pass_secs_ago: Some(now.saturating_sub(state.last_pass)),
        interval_secs: Some(state.interval_secs),
        learned_endpoints: state
            .peers
            .into_iter()
            .filter_map(|p| {
                let learned = p.learned?;
                Some(LearnedEndpoint {
                    peer: None,
                    public_key: p.public_key,
                    address: learned.address,
                    source: "dns".into(),
                    from: None,
                    configured: learned.configured,
                    reason: learned.reason,
                    secs_ago: now.saturating_sub(learned.at),
                })
            })
            .chain(state.introduced.into_iter().map(|i| {
                let from = i.introduced.from.to_string();
                LearnedEndpoint {
                    peer: None,
                    public_key: i.public_key,
                    address: i.introduced.address,
                    source: format!("peer {from}"),
                    from: Some(from),
                    configured: String::new(),
                    // Tried because the peer was stale.
                    reason: Reason::Stale,
                    secs_ago: now.saturating_sub(i.introduced.at),
                }
            }))
            .collect(),
        agents_heard: state
            .agents
            .into_iter()
            .map(|a| AgentHeardView {
                peer: None,
                public_key: a.public_key,
                secs_ago: now.saturating_sub(a.heard.at),
                relay: a.heard.relay,
            })
            .collect(),
        link: if running {
            state.link
        } else {
            LinkStatus {
                listening: None,
                ..state.link
            }
        },
        auto_relay: state
            .auto_relay
            .filter(|a| a.enabled)
            .map(|a| RelayView::of(&a, now)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::endpoints::Observation;
    use crate::plan::fixtures::KEY_A;

    fn paths(dir: &std::path::Path) -> Paths {
        Paths::new(dir.to_path_buf(), "wg0".parse().unwrap())
    }

    #[test]
    fn one_agent_per_interface_and_status_sees_it() {
        let dir = tempfile::tempdir().unwrap();
        let paths = paths(dir.path());
        assert!(!is_running(&paths));
        let running = Running::claim(&paths).unwrap();
        assert!(is_running(&paths));
        let second = Running::claim(&paths).err().unwrap();
        assert!(
            second.to_string().contains("an agent already runs for wg0"),
            "{second}"
        );
        drop(running);
        assert!(!is_running(&paths));
    }

    #[test]
    fn state_round_trips_and_rebuilds_the_memory() {
        let dir = tempfile::tempdir().unwrap();
        let paths = paths(dir.path());
        let seen = Observation {
            public_key: KEY_A.parse().unwrap(),
            configured: "enterprise.lab:51820".into(),
            resolved: vec!["203.0.113.202:51820".parse().unwrap()],
            live_endpoint: None,
            handshake_age: None,
        };
        let mut knowledge = Knowledge::default();
        knowledge.memory.record(&seen);
        let refresh = crate::agent::endpoints::decide(&seen, None).unwrap();
        knowledge.learn(&refresh, 1000);
        let state = knowledge.to_state(42, Duration::from_secs(30), 2000);
        save(&paths, &state).unwrap();
        let loaded = load(&paths).unwrap().unwrap();
        assert_eq!(loaded, state);
        let rebuilt = Knowledge::from_state(&loaded);
        assert_eq!(rebuilt.memory, knowledge.memory);
        assert_eq!(rebuilt.learned, knowledge.learned);
        use std::os::unix::fs::MetadataExt;
        let mode = std::fs::metadata(state_path(&paths)).unwrap().mode();
        assert_eq!(mode & 0o777, 0o600);
        // Nobody holds the lock: status says not running, but still shows
        // what the last agent learned.
        let view = observe(&paths).unwrap();
        assert!(!view.running && view.pid.is_none());
        let learned = &view.learned_endpoints[0];
        assert_eq!(learned.public_key, KEY_A);
        assert_eq!(learned.address.to_string(), "203.0.113.202:51820");
        assert_eq!(learned.configured, "enterprise.lab:51820");
    }

    #[test]
    fn introduced_endpoints_and_heard_agents_are_saved_and_shown() {
        use crate::plan::fixtures::KEY_B;
        let dir = tempfile::tempdir().unwrap();
        let paths = paths(dir.path());
        let mut knowledge = Knowledge::default();
        let (a, b): (PublicKey, PublicKey) = (KEY_A.parse().unwrap(), KEY_B.parse().unwrap());
        knowledge.hints.learned.insert(
            a,
            crate::agent::hints::Introduced {
                address: "203.0.113.3:51820".parse().unwrap(),
                from: b,
                at: 1990,
            },
        );
        knowledge.agents.insert(
            b,
            Heard {
                at: 1995,
                relay: true,
            },
        );
        let state = knowledge.to_state(42, Duration::from_secs(30), 2000);
        save(&paths, &state).unwrap();
        let loaded = load(&paths).unwrap().unwrap();
        assert_eq!(loaded, state);
        let rebuilt = Knowledge::from_state(&loaded);
        assert_eq!(rebuilt.hints.learned, knowledge.hints.learned);
        assert_eq!(rebuilt.agents, knowledge.agents);
        assert_eq!(
            rebuilt.agent_heard(&b, 2000, Duration::from_secs(5)),
            Some(Heard {
                at: 1995,
                relay: true
            })
        );
        assert_eq!(rebuilt.agent_heard(&b, 2001, Duration::from_secs(5)), None);
        let view = observe(&paths).unwrap();
        let learned = &view.learned_endpoints[0];
        assert_eq!(learned.source, format!("peer {KEY_B}"));
        assert_eq!(learned.from.as_deref(), Some(KEY_B));
        assert_eq!(view.agents_heard[0].public_key, KEY_B);
        assert!(view.agents_heard[0].relay);
    }

    #[test]
    fn a_state_file_from_before_the_protocol_still_loads() {
        let dir = tempfile::tempdir().unwrap();
        let paths = paths(dir.path());
        std::fs::write(
            state_path(&paths),
            r#"{"version":1,"pid":7,"interval_secs":30,"last_pass":5,"peers":[]}"#,
        )
        .unwrap();
        let state = load(&paths).unwrap().unwrap();
        assert!(state.agents.is_empty() && state.introduced.is_empty());
        assert_eq!(state.link, LinkStatus::default());
    }

    #[test]
    fn unreadable_state_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let paths = paths(dir.path());
        std::fs::write(state_path(&paths), "{ not json").unwrap();
        assert_eq!(load(&paths).unwrap(), None);
        assert_eq!(observe(&paths).unwrap(), AgentView::default());
    }

    /// A FIFO, a link or a huge file in place of a state file is refused
    /// at once (exit 6, naming it), never read: `status` cannot hang.
    #[test]
    fn a_state_file_that_is_no_regular_file_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let paths = paths(dir.path());
        let mkfifo = |path: std::path::PathBuf| {
            rustix::fs::mkfifoat(
                rustix::fs::CWD,
                &path,
                rustix::fs::Mode::from_raw_mode(0o600),
            )
            .unwrap();
        };
        mkfifo(state_path(&paths));
        let err = load(&paths).unwrap_err();
        assert_eq!(err.code(), 6, "{err}");
        assert!(err.to_string().contains("not a regular file"), "{err}");
        assert_eq!(observe(&paths).unwrap_err().code(), 6);
        std::fs::remove_file(state_path(&paths)).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", state_path(&paths)).unwrap();
        let err = load(&paths).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        std::fs::remove_file(state_path(&paths)).unwrap();
        let big = std::fs::File::create(state_path(&paths)).unwrap();
        big.set_len(STATE_CAP + 1).unwrap();
        let err = load(&paths).unwrap_err();
        assert!(err.to_string().contains("expected at most"), "{err}");
        // The lock as a FIFO: no agent runs, and nothing blocks.
        mkfifo(lock_path(&paths));
        assert!(!is_running(&paths));
    }
}
