//! Tearing labs down, and counting what they leave behind.
//!
//! Processes are only ever killed by PID: the holders the lab started, and
//! the PIDs `ip netns pids` lists for the lab's own namespaces.

use std::cell::Cell;
use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Condvar, Mutex, MutexGuard, Once};
use std::time::{Duration, Instant};

use super::PATH;

/// Counts the live labs of this process and whether a census is running, so
/// that [`exclusive`] can wait for a moment with no other lab around.
static GATE: Mutex<GateState> = Mutex::new(GateState {
    labs: 0,
    exclusive: false,
});
static GATE_CHANGED: Condvar = Condvar::new();

struct GateState {
    labs: usize,
    exclusive: bool,
}

/// Network namespace inodes of every lab namespace this process created. A
/// process leaked from a deleted namespace still points at its inode, which
/// is how [`census`] finds it without looking at anyone else's processes.
static LAB_NETNS: Mutex<Option<HashSet<u64>>> = Mutex::new(None);

thread_local! {
    /// Set while this thread holds [`exclusive`]: its own labs must not wait
    /// for it.
    static EXCLUSIVE: Cell<bool> = const { Cell::new(false) };
}

/// Keeps labs of other threads from starting while it lives.
pub struct Exclusive(());

/// Waits until no other lab of this process exists and keeps new ones from
/// starting, so that [`census`] counts are stable. Labs created by this
/// thread meanwhile are allowed.
pub fn exclusive() -> Exclusive {
    let mut gate = lock_gate();
    while gate.labs > 0 || gate.exclusive {
        gate = GATE_CHANGED
            .wait(gate)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
    }
    gate.exclusive = true;
    EXCLUSIVE.with(|e| e.set(true));
    Exclusive(())
}

impl Drop for Exclusive {
    fn drop(&mut self) {
        EXCLUSIVE.with(|e| e.set(false));
        lock_gate().exclusive = false;
        GATE_CHANGED.notify_all();
    }
}

/// A live lab's place in the gate; dropping it leaves.
pub(super) struct GatePass {
    counted: bool,
}

/// Registers a new lab, waiting while another thread holds [`exclusive`].
/// Never waits on labs, so a thread may hold several at once.
pub(super) fn enter_gate() -> GatePass {
    if EXCLUSIVE.with(Cell::get) {
        return GatePass { counted: false };
    }
    let mut gate = lock_gate();
    while gate.exclusive {
        gate = GATE_CHANGED
            .wait(gate)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
    }
    gate.labs += 1;
    GatePass { counted: true }
}

impl Drop for GatePass {
    fn drop(&mut self) {
        if self.counted {
            lock_gate().labs -= 1;
            GATE_CHANGED.notify_all();
        }
    }
}

fn lock_gate() -> MutexGuard<'static, GateState> {
    GATE.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What labs of this process have alive on the machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Census {
    /// Named network namespaces with this process's lab prefix.
    pub namespaces: usize,
    /// Live (not zombie) processes in any network namespace a lab created.
    pub processes: usize,
    /// Of those, wireguard-go daemons.
    pub wireguard_go: usize,
}

/// Counts the namespaces and processes that labs of this process own.
pub fn census() -> Census {
    let prefix = format!("wgl{}x", std::process::id());
    let namespaces = named_netns()
        .iter()
        .filter(|n| n.starts_with(&prefix))
        .count();
    let inodes = LAB_NETNS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
        .unwrap_or_default();
    let pids: Vec<u32> = all_pids()
        .into_iter()
        .filter(|&pid| netns_inode_of(pid).is_some_and(|ino| inodes.contains(&ino)))
        .filter(|&pid| is_alive(pid))
        .collect();
    let wireguard_go = pids.iter().filter(|&&pid| is_wireguard_go(pid)).count();
    Census {
        namespaces,
        processes: pids.len(),
        wireguard_go,
    }
}

pub(super) fn register_netns(ns: &str) {
    if let Ok(meta) = std::fs::metadata(format!("/run/netns/{ns}")) {
        let mut set = LAB_NETNS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        set.get_or_insert_with(HashSet::new).insert(meta.ino());
    }
}

/// Kills everything in `namespaces` and deletes them. Runs from `Drop`, also
/// while a test panics, so it reports problems instead of panicking.
pub(super) fn destroy(namespaces: &[String], holders: Vec<Child>) {
    // Two rounds: a process may have been started in a namespace while the
    // first round was killing.
    for _ in 0..2 {
        let pids: Vec<u32> = namespaces.iter().flat_map(|ns| netns_pids(ns)).collect();
        for &pid in &pids {
            kill(pid);
        }
        wait_gone(&pids);
    }
    for mut holder in holders {
        let _ = holder.kill();
        let _ = holder.wait();
    }
    for ns in namespaces.iter().rev() {
        if !quiet_ok(&["ip", "netns", "del", ns]) {
            eprintln!("lab cleanup: could not delete namespace {ns}");
        }
    }
}

/// Deletes the namespaces of labs whose test process died without cleaning
/// up (killed test run), so they cannot pile up across runs. Once per
/// process; only namespaces whose owning PID no longer exists.
pub(super) fn reap_stale_labs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let stale: Vec<String> = named_netns()
            .into_iter()
            .filter(|ns| owner_pid(ns).is_some_and(|pid| !proc_exists(pid)))
            .collect();
        if !stale.is_empty() {
            eprintln!(
                "lab: removing {} namespaces left by dead test runs",
                stale.len()
            );
            destroy(&stale, Vec::new());
        }
    });
}

/// The test PID in a lab namespace name `wgl<pid>x…`.
fn owner_pid(ns: &str) -> Option<u32> {
    let rest = ns.strip_prefix("wgl")?;
    let (pid, _) = rest.split_once('x')?;
    pid.parse().ok()
}

/// PIDs of the processes in a named network namespace.
pub fn netns_pids(ns: &str) -> Vec<u32> {
    let out = Command::new("ip")
        .args(["netns", "pids", ns])
        .env_clear()
        .env("PATH", PATH)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output();
    match out {
        Ok(out) => String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect(),
        Err(_) => Vec::new(),
    }
}

pub(super) fn is_wireguard_go(pid: u32) -> bool {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    comm.trim() == "wireguard-go" && is_alive(pid)
}

fn kill(pid: u32) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill(2) with a PID listed for a lab namespace; no memory involved.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
}

/// Waits (at most 5 s) until none of `pids` is alive. Killed daemons are
/// reparented to init, which reaps them when it likes: a zombie counts as gone.
fn wait_gone(pids: &[u32]) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while pids.iter().any(|&pid| is_alive(pid)) {
        if Instant::now() >= deadline {
            eprintln!("lab cleanup: processes still alive after SIGKILL: {pids:?}");
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// True when the process exists and is not a zombie.
fn is_alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the command name, which may itself contain ") ".
    let state = stat
        .rsplit_once(") ")
        .and_then(|(_, rest)| rest.chars().next());
    !matches!(state, None | Some('Z' | 'X'))
}

fn proc_exists(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

fn netns_inode_of(pid: u32) -> Option<u64> {
    std::fs::metadata(format!("/proc/{pid}/ns/net"))
        .ok()
        .map(|m| m.ino())
}

fn all_pids() -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

fn named_netns() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/run/netns") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect()
}

fn quiet_ok(args: &[&str]) -> bool {
    Command::new(args[0])
        .args(&args[1..])
        .env_clear()
        .env("PATH", PATH)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
