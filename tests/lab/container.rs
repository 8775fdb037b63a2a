//! Hosts that boot Debian 12 with systemd as PID 1: a container
//! (systemd-nspawn) in a lab namespace on the public segment, so `install`
//! enables a real `wg-quick@wg0` and `agent enable` a real
//! `wgp2p-agent@wg0`.
//!
//! The root is built once by scripts/systemd-test.sh (debootstrap, with
//! the wgp2p .deb installed) and named by `WGP2P_SYSTEMD_ROOT`; each
//! container boots an overlay of it, so it keeps its own files across its
//! own reboots and the root stays as built. The host has no systemd, so
//! nspawn runs with `--register=no --keep-unit`; commands enter the
//! container with `nsenter -t LEADER -a` (LEADER: its systemd).
//!
//! Dropping a [`Container`] powers it off (or kills its systemd by PID
//! when that does not finish in time), unmounts the overlay and deletes
//! its files; the [`Lab`] it lives in is dropped after it.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::host::run_with_input;
use super::{CmdOutput, Lab, PATH, wait_until};

/// How long a boot may take to reach a running system (software is slow
/// on a loaded 2-core machine; a boot takes about 10 s idle).
const BOOT_TIMEOUT: Duration = Duration::from_secs(180);

/// A booted container: a lab host whose PID 1 is systemd.
pub struct Container {
    name: String,
    ip: Ipv4Addr,
    netns: String,
    dir: PathBuf,
    nspawn: Option<Child>,
    leader: u32,
}

/// The root the containers boot, as scripts/systemd-test.sh built it.
fn systemd_root() -> PathBuf {
    match std::env::var_os("WGP2P_SYSTEMD_ROOT") {
        Some(root) if Path::new(&root).join("usr/lib/systemd/systemd").exists() => root.into(),
        _ => panic!(
            "WGP2P_SYSTEMD_ROOT names no Debian root with systemd: these tests run through scripts/systemd-test.sh, which builds it"
        ),
    }
}

impl Lab {
    /// A container named `name` (its hostname) on the public segment with
    /// 203.0.113.N/24, booted until systemd says the system is running.
    ///
    /// # Panics
    ///
    /// When the root is missing or the container does not boot in time.
    pub fn systemd_host(&self, name: &str) -> Container {
        let root = systemd_root();
        let (netns, ip) = self.public_netns();
        let dir = root
            .parent()
            .unwrap_or(Path::new("/"))
            .join("containers")
            .join(&netns);
        let _ = std::fs::remove_dir_all(&dir);
        for sub in ["upper/etc", "work", "merged"] {
            std::fs::create_dir_all(dir.join(sub)).expect("create the container's directories");
        }
        std::fs::write(dir.join("upper/etc/hostname"), format!("{name}\n"))
            .expect("write the container's hostname");
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            root.display(),
            dir.join("upper").display(),
            dir.join("work").display()
        );
        let mount = Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o", &options])
            .arg(dir.join("merged"))
            .env_clear()
            .env("PATH", PATH)
            .output()
            .expect("run mount");
        assert!(
            mount.status.success(),
            "mount the overlay for {name}: {}",
            String::from_utf8_lossy(&mount.stderr)
        );
        let mut container = Container {
            name: name.to_string(),
            ip,
            netns,
            dir,
            nspawn: None,
            leader: 0,
        };
        container.boot();
        container
    }
}

impl Container {
    /// The host name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its address on the public segment.
    #[must_use]
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// Boots the container (again, after [`Container::poweroff`]) and waits
    /// until systemd has started everything it starts at boot.
    ///
    /// # Panics
    ///
    /// When it is running already, or does not boot in time.
    pub fn boot(&mut self) {
        assert!(self.nspawn.is_none(), "{} is running already", self.name);
        let console = std::fs::File::create(self.dir.join("console.log")).expect("console log");
        let err = console.try_clone().expect("console log");
        let child = Command::new("systemd-nspawn")
            .arg("--directory")
            .arg(self.dir.join("merged"))
            .args([
                "--boot",
                "--register=no",
                "--keep-unit",
                "--console=passive",
                "--bind=/dev/net/tun",
                "--capability=CAP_NET_ADMIN",
                &format!("--machine={}", self.netns),
                &format!("--network-namespace-path=/run/netns/{}", self.netns),
            ])
            .env_clear()
            .env("PATH", PATH)
            .stdin(Stdio::null())
            .stdout(console)
            .stderr(err)
            .spawn()
            .expect("start systemd-nspawn");
        let nspawn = child.id();
        self.nspawn = Some(child);
        let children = format!("/proc/{nspawn}/task/{nspawn}/children");
        let mut leader = None;
        let started = wait_until(Duration::from_secs(30), || {
            leader = std::fs::read_to_string(&children)
                .ok()
                .and_then(|text| text.split_whitespace().next()?.parse().ok());
            leader.is_some()
        });
        assert!(
            started,
            "{}: systemd-nspawn started no container:\n{}",
            self.name,
            self.console()
        );
        self.leader = leader.unwrap_or_default();
        let deadline = Instant::now() + BOOT_TIMEOUT;
        let state = loop {
            let out = self.run(&["systemctl", "is-system-running", "--wait"]);
            let state = out.stdout.trim().to_string();
            if matches!(state.as_str(), "running" | "degraded") || Instant::now() >= deadline {
                break state;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        assert!(
            state == "running",
            "{}: the system is {state:?} after boot, expected running:\n{}\n{}",
            self.name,
            self.run(&["systemctl", "--failed", "--no-pager"]),
            self.console()
        );
    }

    /// `systemctl poweroff`, then waits for the container to be gone.
    ///
    /// # Panics
    ///
    /// When it does not stop in time.
    pub fn poweroff(&mut self) {
        let Some(mut child) = self.nspawn.take() else {
            return;
        };
        let _ = self.run(&["systemctl", "poweroff"]);
        let deadline = Instant::now() + Duration::from_secs(90);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        kill_leader(self.leader, &mut child);
        panic!("{} did not power off within 90 s", self.name);
    }

    /// A `Command` that runs `args` inside the container (all its
    /// namespaces) with a clean environment.
    #[must_use]
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.args(["-t", &self.leader.to_string(), "-a", "--"])
            .args(args)
            .env_clear()
            .env("PATH", PATH)
            .env("LC_ALL", "C")
            .env("HOME", "/root");
        cmd
    }

    /// Runs `args` in the container and waits (at most the lab's timeout).
    #[allow(
        clippy::must_use_candidate,
        reason = "run for its effect; a test checks the output when it wants to"
    )]
    pub fn run(&self, args: &[&str]) -> CmdOutput {
        run_with_input(&mut self.command(args), "", super::host::timeout())
    }

    /// Runs a `sh -c` script in the container.
    #[allow(
        clippy::must_use_candidate,
        reason = "run for its effect; a test checks the output when it wants to"
    )]
    pub fn sh(&self, script: &str) -> CmdOutput {
        self.run(&["sh", "-c", script])
    }

    /// Runs `args`, panicking with the output unless it succeeds; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        self.run(args).expect_ok(&format!("on {}", self.name))
    }

    /// What systemctl says of `unit` (`is-active`, `is-enabled`…).
    #[must_use]
    pub fn systemctl_is(&self, what: &str, unit: &str) -> String {
        self.run(&["systemctl", what, unit])
            .stdout
            .trim()
            .to_string()
    }

    /// Whether a ping to `ip` answers within `timeout`.
    #[must_use]
    pub fn ping(&self, ip: &str, timeout: Duration) -> bool {
        wait_until(timeout, || self.run(&["ping", "-c1", "-W1", ip]).success())
    }

    /// Copies the host file `from` into the directory `dir` of the
    /// container (a path relative to its root), keeping its name.
    ///
    /// # Panics
    ///
    /// When the copy fails.
    pub fn copy_in(&self, from: &Path, dir: &str) {
        let name = from.file_name().expect("a file to copy in");
        let to = self.dir.join("merged").join(dir).join(name);
        std::fs::copy(from, &to)
            .unwrap_or_else(|e| panic!("copy {} to {}: {e}", from.display(), to.display()));
    }

    /// The container's console so far (for failure messages).
    #[must_use]
    pub fn console(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("console.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

/// Kills the container's systemd by its PID, then reaps nspawn.
fn kill_leader(leader: u32, child: &mut Child) {
    if let Ok(pid) = i32::try_from(leader)
        && pid > 1
    {
        // SAFETY: kill(2) with a PID this container recorded as its own.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for Container {
    fn drop(&mut self) {
        if let Some(mut child) = self.nspawn.take() {
            let _ = self.run(&["systemctl", "poweroff"]);
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut gone = false;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    gone = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            if !gone {
                kill_leader(self.leader, &mut child);
            }
        }
        let _ = Command::new("umount")
            .arg(self.dir.join("merged"))
            .env_clear()
            .env("PATH", PATH)
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
