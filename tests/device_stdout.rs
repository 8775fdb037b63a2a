//! wireguard-control prints to stdout by itself (`got unsupported info: …`
//! for unknown UAPI keys, `ERROR -N` when a set is refused). None of it may
//! reach wgp2p's stdout, which carries `--json` and the add-peer line. This
//! test plays wireguard-go with a fake UAPI socket that answers an unknown
//! key on `get` and an errno on `set` (or never answers a `set`), and runs
//! the real binary against it.
//! It needs root (the socket lives in /run/wireguard), so it is one of the
//! ignored lab tests (`scripts/test.sh` runs it).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const PEER_KEY: &str = "DD5yKRfzExcV5+kDnTroDgCU15latdMjiQ59j1hEuk8=";

/// Read one UAPI request up to its blank line; its first line.
fn read_request(stream: &UnixStream) -> Option<String> {
    let mut reader = BufReader::new(stream.try_clone().expect("clone uapi stream"));
    let mut first = String::new();
    reader.read_line(&mut first).ok()?;
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 1) {
        line.clear();
    }
    Some(first)
}

/// A fake wireguard-go: its UAPI socket in the real `/run/wireguard`
/// (where wgp2p looks; needs root), served by `serve` on a thread, and a
/// node installed for it in a temp config dir. The socket goes on drop.
struct FakeDevice {
    iface: String,
    socket: PathBuf,
    dir: tempfile::TempDir,
}

impl FakeDevice {
    fn start(prefix: &str, serve: fn(UnixListener)) -> Self {
        let iface = format!("{prefix}{}", std::process::id() % 100_000);
        let socket_dir = PathBuf::from("/run/wireguard");
        std::fs::create_dir_all(&socket_dir).expect("create /run/wireguard (this test needs root)");
        let socket = socket_dir.join(format!("{iface}.sock"));
        let _ = std::fs::remove_file(&socket);
        let listener = UnixListener::bind(&socket).expect("bind fake uapi socket");
        std::thread::spawn(move || serve(listener));
        let device = FakeDevice {
            iface,
            socket,
            dir: tempfile::tempdir().expect("tempdir"),
        };
        let install = device.wgp2p(
            "none",
            &["install", "10.15.0.1/24", "--endpoint", "192.0.2.1"],
        );
        assert!(install.status.success(), "{install:?}");
        device
    }

    fn wgp2p(&self, service: &str, args: &[&str]) -> Output {
        wgp2p(self.dir.path(), &self.iface, service, args)
    }

    fn conf(&self) -> PathBuf {
        self.dir.path().join(format!("{}.conf", self.iface))
    }

    /// The add-peer both tests run against the device.
    fn add_enterprise(&self) -> Output {
        self.wgp2p(
            "wg-quick",
            &[
                "add-peer",
                "enterprise",
                "192.0.2.2:51820",
                PEER_KEY,
                "10.15.0.2",
            ],
        )
    }
}

impl Drop for FakeDevice {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// Answer UAPI requests until the listener is dropped with the socket file.
#[allow(
    clippy::needless_pass_by_value,
    reason = "owns the listener: the socket stays open exactly as long as this runs"
)]
fn serve_fake_uapi(listener: UnixListener) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else { return };
        let Some(first) = read_request(&stream) else {
            continue;
        };
        let answer = if first.starts_with("get=1") {
            "listen_port=51820\nfuture_key_from_a_newer_wireguard_go=1\nerrno=0\n\n"
        } else {
            "errno=98\n\n"
        };
        let mut stream = stream;
        let _ = stream.write_all(answer.as_bytes());
    }
}

fn wgp2p(dir: &Path, iface: &str, service: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wgp2p"))
        .args(["--interface", iface, "--config-dir"])
        .arg(dir)
        .args(args)
        .env("WGP2P_SERVICE", service)
        .env("WGP2P_STUN_SERVERS", "")
        .env_remove("WGP2P_ENDPOINT")
        .output()
        .expect("run wgp2p")
}

/// Needs root: the fake socket lives in the real `/run/wireguard`, where
/// wgp2p looks for wireguard-go's sockets.
#[test]
#[ignore = "lab: needs root, network namespaces and the lab packages"]
fn device_chatter_never_reaches_stdout() {
    let device = FakeDevice::start("wgfake", serve_fake_uapi);
    let status = device.wgp2p("wg-quick", &["status", "--json"]);
    let stdout = String::from_utf8_lossy(&status.stdout);
    let stderr = String::from_utf8_lossy(&status.stderr);
    assert!(status.status.success(), "status failed: {stderr}");
    let parsed: Result<serde_json::Value, _> = serde_json::from_str(&stdout);
    assert!(parsed.is_ok(), "stdout is not pure JSON:\n{stdout}");
    assert!(
        stderr.contains("got unsupported info"),
        "the chatter should go to stderr: {stderr}"
    );

    let before = std::fs::read(device.conf()).expect("read conf");
    let add = device.add_enterprise();
    let stdout = String::from_utf8_lossy(&add.stdout);
    assert!(
        !add.status.success(),
        "the refused set must fail the command"
    );
    assert!(
        !stdout.contains("ERROR"),
        "device chatter on stdout: {stdout}"
    );
    assert_eq!(
        std::fs::read(device.conf()).expect("read conf"),
        before,
        "the config must be rolled back"
    );
}

/// Plays a wireguard-go that answers `get` and never answers `set` (a
/// stuck device): the connections are kept open, unanswered.
#[allow(
    clippy::needless_pass_by_value,
    reason = "owns the listener: the socket stays open exactly as long as this runs"
)]
fn serve_stalling_uapi(listener: UnixListener) {
    let mut held = Vec::new();
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { return };
        let Some(first) = read_request(&stream) else {
            continue;
        };
        if first.starts_with("get=1") {
            let _ = stream.write_all(b"listen_port=51820\nerrno=0\n\n");
        } else {
            held.push(stream);
        }
    }
}

/// The reproduction: after a device timeout, `commit` put the old
/// file back while the device might still apply the change. Now the new
/// file stays and the error says the live state is unknown, with the
/// command that settles it.
#[test]
#[ignore = "lab: needs root, network namespaces and the lab packages"]
fn a_device_that_never_answers_keeps_the_new_file_and_says_repair() {
    let device = FakeDevice::start("wgstall", serve_stalling_uapi);
    let add = device.add_enterprise();
    let stderr = String::from_utf8_lossy(&add.stderr);
    assert_eq!(add.status.code(), Some(1), "{stderr}");
    assert!(
        stderr
            .trim_end()
            .ends_with("the live state is unknown: run `wgp2p repair`"),
        "{stderr}"
    );
    let conf = std::fs::read_to_string(device.conf()).expect("read conf");
    assert!(
        conf.contains(PEER_KEY),
        "the new file must stay when the device may still apply it:\n{conf}"
    );
}
