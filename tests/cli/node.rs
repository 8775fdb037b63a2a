//! The `Node` fixture: one wgp2p node in a temporary config dir, driven
//! through the real binary with a blank environment and `WGP2P_SERVICE=none`
//! (files only: no interface, no service manager, no network).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_wgp2p");

/// A node: a temporary dir whose `wg/` is the config dir.
pub struct Node {
    _tmp: TempDir,
    dir: PathBuf,
}

impl Node {
    /// A node with nothing installed (the config dir does not exist yet).
    pub fn new() -> Node {
        let tmp = tempfile::tempdir().expect("create a temporary dir");
        let dir = tmp.path().join("wg");
        Node { _tmp: tmp, dir }
    }

    /// A node installed as 10.15.0.1/24 with a remembered endpoint.
    pub fn installed() -> Node {
        let node = Node::new();
        node.wgp2p()
            .args(["install", "10.15.0.1/24", "--endpoint", "203.0.113.1"])
            .succeeds();
        node
    }

    /// The config dir.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A file of the config dir as text.
    pub fn read(&self, name: &str) -> String {
        fs::read_to_string(self.path(name)).unwrap_or_else(|e| panic!("read {name}: {e}"))
    }

    /// Write a file of the config dir by hand, mode 0600 (as a user would edit it).
    pub fn write(&self, name: &str, text: &str) {
        fs::create_dir_all(&self.dir).expect("create the config dir");
        fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o700))
            .expect("chmod the config dir");
        let path = self.path(name);
        fs::write(&path, text).unwrap_or_else(|e| panic!("write {name}: {e}"));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
            .unwrap_or_else(|e| panic!("chmod {name}: {e}"));
    }

    pub fn conf(&self) -> String {
        self.read("wg0.conf")
    }

    /// This node's public key, from the `publickey` file.
    pub fn public_key(&self) -> String {
        self.read("publickey").trim().to_string()
    }

    /// A `wgp2p` run to build up.
    pub fn wgp2p(&self) -> Run<'_> {
        Run {
            node: self,
            args: Vec::new(),
            env: Vec::new(),
            stdin: Vec::new(),
            umask_000: false,
        }
    }

    /// `install ADDRESS`, which must succeed.
    #[track_caller]
    pub fn install(&self, address: &str) -> Out {
        self.wgp2p().args(["install", address]).succeeds()
    }

    /// Every file and dir under the config dir: names, modes and bytes.
    pub fn snapshot(&self) -> Snapshot {
        let mut entries = BTreeMap::new();
        if self.dir.exists() {
            walk(&self.dir, Path::new("."), &mut entries);
        }
        Snapshot(entries)
    }
}

fn walk(path: &Path, rel: &Path, entries: &mut BTreeMap<PathBuf, Entry>) {
    let meta = fs::symlink_metadata(path).unwrap_or_else(|e| panic!("stat {path:?}: {e}"));
    let mode = meta.permissions().mode() & 0o7777;
    if !meta.is_dir() {
        let bytes = fs::read(path).unwrap_or_else(|e| panic!("read {path:?}: {e}"));
        entries.insert(
            rel.to_path_buf(),
            Entry {
                mode,
                bytes: Some(bytes),
            },
        );
        return;
    }
    entries.insert(rel.to_path_buf(), Entry { mode, bytes: None });
    let mut children: Vec<_> = fs::read_dir(path)
        .unwrap_or_else(|e| panic!("list {path:?}: {e}"))
        .map(|e| e.expect("a dir entry").file_name())
        .collect();
    children.sort();
    for name in children {
        walk(&path.join(&name), &rel.join(&name), entries);
    }
}

/// One file (bytes) or dir (no bytes) of a snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub mode: u32,
    pub bytes: Option<Vec<u8>>,
}

/// The config dir at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot(pub BTreeMap<PathBuf, Entry>);

impl Snapshot {
    /// What differs from `other`, one line per path; empty when equal.
    pub fn diff(&self, other: &Snapshot) -> String {
        let mut out = String::new();
        let paths: std::collections::BTreeSet<_> = self.0.keys().chain(other.0.keys()).collect();
        for path in paths {
            match (self.0.get(path), other.0.get(path)) {
                (Some(a), Some(b)) if a == b => {}
                (Some(a), Some(b)) if a.mode != b.mode => {
                    let _ = writeln!(out, "{path:?}: mode {:o} -> {:o}", a.mode, b.mode);
                }
                (Some(_), Some(_)) => {
                    let _ = writeln!(out, "{path:?}: contents changed");
                }
                (Some(_), None) => {
                    let _ = writeln!(out, "{path:?}: removed");
                }
                (None, _) => {
                    let _ = writeln!(out, "{path:?}: created");
                }
            }
        }
        out
    }

    /// Paths of the files (not dirs), relative to the config dir.
    pub fn files(&self) -> Vec<(&PathBuf, &Entry)> {
        self.0.iter().filter(|(_, e)| e.bytes.is_some()).collect()
    }
}

/// One run of wgp2p being built: arguments, extra environment, stdin.
pub struct Run<'a> {
    node: &'a Node,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    stdin: Vec<u8>,
    umask_000: bool,
}

impl Run<'_> {
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn stdin(mut self, text: &str) -> Self {
        self.stdin = text.as_bytes().to_vec();
        self
    }

    /// Run through `sh -c 'umask 000; exec wgp2p …'`.
    pub fn umask_000(mut self) -> Self {
        self.umask_000 = true;
        self
    }

    fn command(&self) -> assert_cmd::Command {
        let mut cmd = if self.umask_000 {
            let mut sh = assert_cmd::Command::new("sh");
            sh.args(["-c", "umask 000; exec \"$0\" \"$@\"", BIN]);
            sh
        } else {
            assert_cmd::Command::new(BIN)
        };
        cmd.args(&self.args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("WGP2P_SERVICE", "none")
            .env("WG_CONFIG_DIR", self.node.dir())
            .env("WGP2P_STUN_SERVERS", "")
            .write_stdin(self.stdin.clone())
            .timeout(std::time::Duration::from_secs(20));
        for (key, value) in &self.env {
            cmd.env(key, value);
        }
        cmd
    }

    fn describe(&self) -> String {
        let env: Vec<String> = self
            .env
            .iter()
            .map(|(k, v)| format!("{}={:?}", k.to_string_lossy(), v))
            .collect();
        format!("{} wgp2p {:?}", env.join(" "), self.args)
    }

    /// Run it; no outcome is asserted except that it did not panic.
    #[track_caller]
    pub fn output(self) -> Out {
        let output = self.command().output().expect("run wgp2p");
        let out = Out {
            code: output.status.code(),
            stdout: String::from_utf8(output.stdout).expect("stdout is UTF-8"),
            stderr: String::from_utf8(output.stderr).expect("stderr is UTF-8"),
            what: self.describe(),
        };
        assert!(!out.stderr.contains("panicked"), "panic: {out}");
        out
    }

    /// Run it; it must exit 0 (the counterpart of [`Run::fails`]).
    #[track_caller]
    pub fn succeeds(self) -> Out {
        let out = self.output();
        assert_eq!(out.code, Some(0), "expected success: {out}");
        out
    }

    /// Run it; it must fail (non-zero exit code).
    #[track_caller]
    pub fn fails(self) -> Out {
        let out = self.output();
        assert!(out.code.is_some_and(|c| c != 0), "expected failure: {out}");
        out
    }
}

/// What a run printed.
pub struct Out {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    what: String,
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}\n  exit: {:?}\n  stdout: {:?}\n  stderr: {:?}",
            self.what, self.code, self.stdout, self.stderr
        )
    }
}

impl Out {
    #[track_caller]
    pub fn stdout_has(&self, needle: &str) -> &Self {
        assert!(
            self.stdout.contains(needle),
            "stdout lacks {needle:?}: {self}"
        );
        self
    }

    #[track_caller]
    pub fn stderr_has(&self, needle: &str) -> &Self {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}: {self}"
        );
        self
    }

    #[track_caller]
    pub fn stderr_is_empty(&self) -> &Self {
        assert_eq!(self.stderr, "", "stderr: {self}");
        self
    }

    /// Neither stdout nor stderr holds `secret`.
    #[track_caller]
    pub fn never_shows(&self, secret: &str) -> &Self {
        assert!(
            !self.stdout.contains(secret) && !self.stderr.contains(secret),
            "a secret was printed: {self}"
        );
        self
    }

    /// The one stdout line starting with `wgp2p add-peer `, split.
    #[track_caller]
    pub fn add_peer_line(&self) -> AddPeerLine {
        let lines: Vec<&str> = self
            .stdout
            .lines()
            .filter(|l| l.starts_with("wgp2p add-peer "))
            .collect();
        assert_eq!(lines.len(), 1, "expected one add-peer line: {self}");
        let words: Vec<&str> = lines[0].split(' ').collect();
        assert_eq!(words.len(), 6, "expected 4 arguments: {self}");
        AddPeerLine {
            line: lines[0].to_string(),
            name: words[2].to_string(),
            endpoint: words[3].to_string(),
            key: words[4].to_string(),
            ip: words[5].to_string(),
        }
    }
}

/// `wgp2p add-peer NAME ENDPOINT KEY IP`.
#[derive(Debug, PartialEq, Eq)]
pub struct AddPeerLine {
    pub line: String,
    pub name: String,
    pub endpoint: String,
    pub key: String,
    pub ip: String,
}

/// The value of the first `key = value` line of `[section]` number `index`
/// (0-based among sections of that name) in a wg-quick conf.
pub fn conf_value(conf: &str, section: &str, index: usize, key: &str) -> Option<String> {
    sections(conf, section).get(index)?.iter().find_map(|line| {
        let (k, v) = line.split_once('=')?;
        (k.trim() == key).then(|| v.trim().to_string())
    })
}

/// The lines of every `[section]` of that name, headers excluded.
pub fn sections(conf: &str, name: &str) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = Vec::new();
    let mut inside = false;
    for line in conf.lines() {
        if line.trim().starts_with('[') {
            inside = line.trim() == format!("[{name}]");
            if inside {
                out.push(Vec::new());
            }
        } else if inside && let Some(last) = out.last_mut() {
            last.push(line.to_string());
        }
    }
    out
}
