//! A host of the lab and the way commands run "on" it.

use std::fmt;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv6Addr};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use super::PATH;

/// Longest time one command may run before it is killed and reported: a hung
/// CLI must fail the test, not hang the suite. 30 s, or
/// `WGP2P_LAB_TIMEOUT_SECS` where every command is slow (the software-emulated
/// VM of scripts/kernel-test.sh).
pub fn timeout() -> Duration {
    let secs = std::env::var("WGP2P_LAB_TIMEOUT_SECS").ok();
    Duration::from_secs(secs.and_then(|s| s.parse().ok()).unwrap_or(30))
}

/// One host: its own network, mount and UTS namespaces, entered through the
/// PID of the holder process that owns them.
#[derive(Clone, Debug)]
pub struct Host {
    name: String,
    netns: String,
    holder: u32,
    public_ip: IpAddr,
    local_ip: IpAddr,
    public_ip6: Option<Ipv6Addr>,
}

/// What a finished command did, with its output as text.
#[derive(Debug)]
pub struct CmdOutput {
    /// The command as run, for failure messages.
    pub command: String,
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

impl Host {
    pub(super) fn new(
        name: &str,
        netns: &str,
        holder: u32,
        public_ip: IpAddr,
        local_ip: IpAddr,
        public_ip6: Option<Ipv6Addr>,
    ) -> Host {
        Host {
            name: name.to_string(),
            netns: netns.to_string(),
            holder,
            public_ip,
            local_ip,
            public_ip6,
        }
    }

    /// The host name (also its hostname, so wgp2p's default peer name).
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The network namespace name.
    #[must_use]
    pub fn netns(&self) -> &str {
        &self.netns
    }

    /// The address other hosts reach it at: its own for a public host, its
    /// router's for a host behind NAT.
    #[must_use]
    pub fn public_ip(&self) -> IpAddr {
        self.public_ip
    }

    /// Its address on its own `eth0` (the LAN address behind NAT).
    #[must_use]
    pub fn local_ip(&self) -> IpAddr {
        self.local_ip
    }

    /// Its public IPv6 address (public hosts only).
    #[must_use]
    pub fn public_ip6(&self) -> Option<Ipv6Addr> {
        self.public_ip6
    }

    /// `public_ip:port`, the endpoint to give `wgp2p install --endpoint`.
    #[must_use]
    pub fn endpoint(&self, port: u16) -> String {
        format!("{}:{port}", self.public_ip)
    }

    /// `[public_ip6]:port`.
    ///
    /// # Panics
    ///
    /// When the host has no IPv6 address.
    #[must_use]
    pub fn endpoint6(&self, port: u16) -> String {
        let ip = self.public_ip6.expect("only public hosts have IPv6");
        format!("[{ip}]:{port}")
    }

    /// A `Command` that runs `args` inside this host's namespaces with a
    /// clean environment.
    #[must_use]
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.args(["-t", &self.holder.to_string(), "-m", "-n", "-u", "--"])
            .args(args)
            .env_clear()
            .env("PATH", PATH)
            .env("LC_ALL", "C")
            .env("HOME", "/root");
        cmd
    }

    /// Runs `args` on the host and waits (at most [`timeout`]).
    #[allow(
        clippy::must_use_candidate,
        reason = "run for its effect; a test checks the output when it wants to"
    )]
    pub fn run(&self, args: &[&str]) -> CmdOutput {
        run_with_input(&mut self.command(args), "", timeout())
    }

    /// Runs a `sh -c` script on the host. Extra `args` become `$1`, `$2`…
    #[allow(
        clippy::must_use_candidate,
        reason = "run for its effect; a test checks the output when it wants to"
    )]
    pub fn sh(&self, script: &str, args: &[&str]) -> CmdOutput {
        let mut full = vec!["sh", "-c", script, "sh"];
        full.extend_from_slice(args);
        self.run(&full)
    }

    /// Writes `content` to `path` on the host with mode 0600. The content goes
    /// through stdin so that keys never appear on a command line.
    pub fn write_file(&self, path: &str, content: &str) {
        let script = "umask 077 && cat > \"$1\" && chmod 600 \"$1\"";
        let mut cmd = self.command(&["sh", "-c", script, "sh", path]);
        run_with_input(&mut cmd, content, timeout())
            .expect_ok(&format!("write {path} on {}", self.name));
    }

    /// The content of `path` on the host.
    #[must_use]
    pub fn read_file(&self, path: &str) -> String {
        self.run(&["cat", path])
            .expect_ok(&format!("read {path} on {}", self.name))
    }

    /// Adds `ip name` to the host's own /etc/hosts.
    pub fn add_hosts_entry(&self, ip: IpAddr, name: &str) {
        let line = format!("{ip} {name}");
        self.sh("echo \"$1\" >> /etc/hosts", &[&line])
            .expect_ok("append to /etc/hosts");
    }

    /// Starts `args` on the host in the background. The caller waits for it;
    /// if it does not, dropping the lab kills it with the namespace.
    ///
    /// # Panics
    ///
    /// When the command cannot be started.
    #[must_use]
    pub fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {args:?} on {}: {e}", self.name))
    }

    /// True when `ip` answers one echo request within `timeout`. Pings every
    /// 200 ms and stops at the first reply, so it costs only what it needs.
    #[must_use]
    pub fn ping(&self, ip: &str, timeout: Duration) -> bool {
        let deadline = timeout.as_secs().max(1).to_string();
        self.run(&[
            "ping", "-n", "-q", "-c", "1", "-i", "0.2", "-w", &deadline, ip,
        ])
        .success()
    }

    /// Runs `ping -i 0.05 -c COUNT ip` in the background while `during`
    /// runs (it starts 300 ms into the pings); returns the packets lost.
    ///
    /// # Panics
    ///
    /// When ping cannot run or prints no loss figure.
    pub fn ping_loss_while(&self, ip: &str, count: u32, during: impl FnOnce()) -> u32 {
        let child = self
            .command(&[
                "/usr/bin/ping",
                "-n",
                "-q",
                "-i",
                "0.05",
                "-W",
                "1",
                "-c",
                &count.to_string(),
                ip,
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start background ping");
        std::thread::sleep(Duration::from_millis(300));
        during();
        let out = child.wait_with_output().expect("wait for background ping");
        let text = String::from_utf8_lossy(&out.stdout);
        let received = text
            .split(',')
            .find(|part| part.contains("received"))
            .and_then(|part| part.split_whitespace().next()?.parse::<u32>().ok())
            .unwrap_or_else(|| panic!("no ping summary: {text}"));
        count - received
    }

    /// PIDs of every process in this host's network namespace.
    #[must_use]
    pub fn pids(&self) -> Vec<u32> {
        super::cleanup::netns_pids(&self.netns)
    }

    /// PIDs of the wireguard-go daemons running on this host.
    #[must_use]
    pub fn wireguard_go_pids(&self) -> Vec<u32> {
        self.pids()
            .into_iter()
            .filter(|&pid| super::cleanup::is_wireguard_go(pid))
            .collect()
    }
}

impl CmdOutput {
    /// True when the command exited with status 0.
    #[must_use]
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// Stdout of a command that must succeed; otherwise panics with
    /// everything needed to see why.
    ///
    /// # Panics
    ///
    /// When the command failed: the message has `what` and its output.
    #[allow(
        clippy::must_use_candidate,
        reason = "run for its effect; a test checks the output when it wants to"
    )]
    pub fn expect_ok(self, what: &str) -> String {
        assert!(self.success(), "{what} failed:\n{self}");
        self.stdout
    }

    /// Stdout and stderr together, for liberal matching.
    #[must_use]
    pub fn all_output(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

impl fmt::Display for CmdOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = match self.status {
            Some(s) => s.to_string(),
            None => format!("killed after {}s timeout", timeout().as_secs()),
        };
        writeln!(f, "$ {}\n[{status}]", self.command)?;
        writeln!(f, "--- stdout\n{}", self.stdout.trim_end())?;
        write!(f, "--- stderr\n{}", self.stderr.trim_end())
    }
}

/// Runs `cmd` with `input` on stdin, collecting output, and kills it (by its
/// PID, through the Child) if it runs longer than `timeout`.
pub(super) fn run_with_input(cmd: &mut Command, input: &str, timeout: Duration) -> CmdOutput {
    let command = describe(cmd);
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command}: {e}"));
    let mut stdin = child.stdin.take().expect("stdin is piped");
    // Ignore a write error: a command that does not read stdin may exit first.
    let _ = stdin.write_all(input.as_bytes());
    drop(stdin);
    let stdout = read_in_background(child.stdout.take().expect("stdout is piped"));
    let stderr = read_in_background(child.stderr.take().expect("stderr is piped"));
    let status = wait_with_deadline(&mut child, timeout);
    CmdOutput {
        command,
        status,
        stdout: collect(stdout),
        stderr: collect(stderr),
    }
}

fn wait_with_deadline(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

/// Reads a pipe to its end in a thread, so a chatty command cannot block on
/// a full pipe while we wait for it.
fn read_in_background(mut pipe: impl Read + Send + 'static) -> PipeText {
    let text = Arc::new(Mutex::new(Vec::new()));
    let (done_tx, done) = mpsc::channel();
    let sink = Arc::clone(&text);
    std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n @ 1..) = pipe.read(&mut chunk) {
            sink.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .extend_from_slice(&chunk[..n]);
        }
        let _ = done_tx.send(());
    });
    PipeText { text, done }
}

/// Output being read from a pipe.
struct PipeText {
    text: Arc<Mutex<Vec<u8>>>,
    done: mpsc::Receiver<()>,
}

/// The text read so far, after waiting (boundedly) for the end of the pipe:
/// a daemon started by the command may keep the pipe open forever.
#[allow(
    clippy::needless_pass_by_value,
    reason = "the pipe is used up: its reader thread is done with it"
)]
fn collect(pipe: PipeText) -> String {
    let _ = pipe.done.recv_timeout(Duration::from_secs(2));
    let bytes = pipe
        .text
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    String::from_utf8_lossy(&bytes).into_owned()
}

fn describe(cmd: &Command) -> String {
    let mut words = vec![cmd.get_program().to_string_lossy().into_owned()];
    words.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    words.join(" ")
}
