//! Systematic fault injection: every command that writes is killed
//! (SIGKILL, through `strace -e inject=SYSCALL:signal=SIGKILL:when=N`) at
//! its 1st, 2nd, … `write`, `fsync`, `rename` and `unlink` system call in
//! turn, until a run completes untouched. After each kill a neutral locked
//! command (`export`) runs (it completes or discards what the killed run left), then
//! the invariants are checked:

//! - the config dir is exactly as before or exactly as after an
//!   uninterrupted run (for commands whose result is deterministic), or
//!   satisfies the command's own predicate (install makes a key,
//!   provision-peer a device key);
//! - `privatekey`, `publickey` and the config's `PrivateKey` agree, and a
//!   key that existed is never replaced by another;
//! - no temp file or journal is left, in the dir or in `provisioned-peers/`;
//! - running the command again completes it.
//!
//! Files only (`WGP2P_SERVICE=none`, a temporary config dir), except the
//! last test: on a lab host with a live wg0 it also kills the device call,
//! and checks that `wgp2p repair` (the advice after any interruption)
//! makes the device equal to the config. Each test prints how many
//! injection points it covered. strace counts calls per system call and
//! per thread, so a class of several calls kills at whichever reaches N
//! first.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use wgp2p_lab::wg_pubkey;

const BIN: &str = env!("CARGO_BIN_EXE_wgp2p");

/// This node's key in the plain wg-quick setup, and another one.
const PRIV_OWN: &str = "SGb+ojrRNDuMePufwtIYhXzA//k6wF3R21tEBgKlzlM=";
const PRIV_OTHER: &str = "QJRBRzLEyYrAc6igP44D0lZexzaFdFSycMcUPX7Ex18=";
const KEY_A: &str = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";
const KEY_B: &str = "TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=";
const KEY_C: &str = "Gr0fMLGfJOWKgnF6QHOqvK6x0n/qsoQU9/k4xl1ZzXM=";

const ALICE: [&str; 5] = [
    "add-peer",
    "alice",
    "198.51.100.2:51820",
    KEY_A,
    "10.15.0.2",
];
const BOB: [&str; 5] = ["add-peer", "bob", "198.51.100.3:51820", KEY_B, "10.15.0.3"];

/// A command that takes the lock and changes nothing (`export` reads
/// under the lock): what a killed run left is completed or swept.
const NEUTRAL: &[&str] = &["export"];

/// The system calls killed at, one class at a time.
const CLASSES: [&str; 4] = [
    "write,pwrite64,writev",
    "fsync,fdatasync",
    "rename,renameat,renameat2",
    "unlink,unlinkat",
];

fn command(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .current_dir(dir.parent().expect("the config dir has a parent"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("WGP2P_SERVICE", "none")
        .env("WG_CONFIG_DIR", dir)
        .env("WGP2P_STUN_SERVERS", "")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn finish(mut cmd: Command, stdin: &str) -> Output {
    let mut child = cmd.spawn().expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

fn run(dir: &Path, args: &[&str], stdin: &str) -> Output {
    let out = finish(command(dir, args), stdin);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    out
}

#[track_caller]
fn run_ok(dir: &Path, args: &[&str], stdin: &str) {
    let out = run(dir, args, stdin);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Run under strace, killed at the `n`th call of `class`; true when it
/// was killed (false: it ran to its end untouched).
fn run_killed(dir: &Path, args: &[&str], stdin: &str, class: &str, n: u32) -> bool {
    let mut cmd = Command::new("strace");
    cmd.args(["-f", "-o", "/dev/null", "-e"])
        .arg(format!("trace={class}"))
        .arg("-e")
        .arg(format!("inject={class}:signal=SIGKILL:when={n}"))
        .arg(BIN)
        .args(args)
        .current_dir(dir.parent().expect("the config dir has a parent"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("WGP2P_SERVICE", "none")
        .env("WG_CONFIG_DIR", dir)
        .env("WGP2P_STUN_SERVERS", "")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = finish(cmd, stdin);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("strace:") || out.status.signal() == Some(9),
        "strace failed (is strace installed?): {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    out.status.signal() == Some(9)
}

/// Every file under a dir: relative path to bytes (dirs as `None`).
type Snapshot = BTreeMap<PathBuf, Option<Vec<u8>>>;

fn snapshot(dir: &Path) -> Snapshot {
    fn walk(path: &Path, rel: &Path, out: &mut Snapshot) {
        let Ok(meta) = fs::symlink_metadata(path) else {
            return;
        };
        if meta.is_dir() {
            out.insert(rel.to_path_buf(), None);
            let mut names: Vec<_> = fs::read_dir(path)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            names.sort();
            for name in names {
                walk(&path.join(&name), &rel.join(&name), out);
            }
        } else {
            out.insert(rel.to_path_buf(), Some(fs::read(path).unwrap()));
        }
    }
    let mut out = Snapshot::new();
    walk(dir, Path::new("."), &mut out);
    out
}

fn names(snap: &Snapshot) -> Vec<String> {
    snap.keys().map(|p| p.display().to_string()).collect()
}

/// Copy what is in `from` (the config dir `wg/` and files beside it) into `to`.
fn copy_dir(from: &Path, to: &Path) {
    if !from.exists() {
        return;
    }
    let status = Command::new("cp")
        .args(["-a"])
        .arg(from.join("."))
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
}

fn text(snap: &Snapshot, name: &str) -> Option<String> {
    snap.get(&Path::new(".").join(name))
        .and_then(|b| b.as_ref())
        .map(|b| String::from_utf8(b.clone()).expect("UTF-8"))
}

/// The `[Interface]` `PrivateKey` of a config text.
fn conf_private_key(conf: &str) -> Option<String> {
    let mut in_interface = false;
    for line in conf.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_interface = line.eq_ignore_ascii_case("[interface]");
        } else if in_interface
            && let Some((key, value)) = line.split_once('=')
            && key.trim().eq_ignore_ascii_case("PrivateKey")
        {
            return Some(value.trim().to_string());
        }
    }
    None
}

fn peer_keys(conf: &str) -> Vec<String> {
    conf.lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| k.trim().eq_ignore_ascii_case("PublicKey"))
        .map(|(_, v)| v.trim().to_string())
        .collect()
}

/// The node's key as the files say, after checking that every copy
/// agrees; `None` when there is no key at all.
#[track_caller]
fn agreed_key(snap: &Snapshot, what: &str) -> Option<String> {
    let private = text(snap, "privatekey").map(|t| t.trim().to_string());
    let public = text(snap, "publickey").map(|t| t.trim().to_string());
    let in_conf = text(snap, "wg0.conf").and_then(|c| conf_private_key(&c));
    if let Some(private) = &private {
        assert_eq!(
            public.as_deref(),
            Some(wg_pubkey(private).as_str()),
            "{what}: publickey disagrees with privatekey"
        );
        if let Some(in_conf) = &in_conf {
            assert_eq!(in_conf, private, "{what}: the conf's PrivateKey disagrees");
        }
    } else {
        assert!(public.is_none(), "{what}: a publickey without privatekey");
    }
    private.or(in_conf)
}

#[track_caller]
fn no_leftovers(snap: &Snapshot, what: &str) {
    for name in names(snap) {
        assert!(
            !name.contains("/.wgp2p-"),
            "{what}: {name} survived the next run"
        );
    }
}

/// One writing command and what it must leave.
struct Scenario {
    name: &'static str,
    /// Builds the state before the command, in the given config dir.
    setup: fn(&Path),
    args: &'static [&'static str],
    stdin: &'static str,
    /// Checks the state after a kill and the neutral run: `before` and
    /// `after` (an uninterrupted run) are given.
    check: fn(&Snapshot, &Snapshot, &Snapshot, &str),
    /// The state after the command ran again (to completion) must satisfy this.
    rerun_ok: bool,
}

/// The dir is exactly as before or exactly as after.
fn old_or_new(now: &Snapshot, before: &Snapshot, after: &Snapshot, what: &str) {
    assert!(
        now == before || now == after,
        "{what}: neither the old nor the new state: {:?}\nbefore {:?}\nafter {:?}",
        names(now),
        names(before),
        names(after)
    );
}

fn installed(dir: &Path) {
    run_ok(
        dir,
        &["install", "10.15.0.1/24", "--endpoint", "203.0.113.1"],
        "",
    );
    run_ok(dir, &ALICE, "");
}

fn installed_with_bob_and_phone(dir: &Path) {
    installed(dir);
    run_ok(dir, &BOB, "");
    run_ok(
        dir,
        &[
            "provision-peer",
            "phone",
            "198.51.100.9:51820",
            "10.15.0.9/24",
        ],
        "",
    );
}

/// Bob relayed through alice: what `relay bob direct` starts from.
fn bob_relayed(dir: &Path) {
    installed_with_bob_and_phone(dir);
    run_ok(dir, &["relay", "bob", "via", "alice"], "");
}

fn alice_trusted(dir: &Path) {
    installed(dir);
    run_ok(dir, &["trust", "alice"], "");
}

fn relay_enabled(dir: &Path) {
    installed(dir);
    run_ok(dir, &["relay-enable"], "");
}

fn nothing(_: &Path) {}

/// An installed node and, beside its config dir, a roster of it and carol.
fn roster_beside(dir: &Path) {
    installed(dir);
    let own = run(dir, &["export"], "");
    assert!(own.status.success());
    let mut roster = String::from_utf8(own.stdout).unwrap();
    roster.push_str(
        "\n[[peer]]\nname = \"carol\"\nendpoint = \"198.51.100.4:51820\"\npublic_key = \"",
    );
    roster.push_str(KEY_B);
    roster.push_str("\"\naddress = \"10.15.0.4\"\n");
    fs::write(dir.parent().unwrap().join("roster.toml"), roster).unwrap();
}

const PLAIN_CONF: &str = "[Interface]\n# by hand\nAddress = 10.15.0.1/24\nListenPort = 51820\nPrivateKey = SGb+ojrRNDuMePufwtIYhXzA//k6wF3R21tEBgKlzlM=\nMTU = 1380\n\n[Peer]\n# laptop\nPublicKey = xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=\nAllowedIPs = 10.15.0.2/32\n";

fn plain_wg_quick(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    fs::create_dir_all(dir).unwrap();
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).unwrap();
    fs::write(dir.join("wg0.conf"), PLAIN_CONF).unwrap();
    fs::set_permissions(dir.join("wg0.conf"), fs::Permissions::from_mode(0o600)).unwrap();
}

/// A fresh install: no state before; after, a key (any) that every file agrees on.
fn check_fresh_install(now: &Snapshot, _: &Snapshot, _: &Snapshot, what: &str) {
    agreed_key(now, what);
}

/// Adopting a plain wg-quick setup: its key is kept, whatever the instant.
fn check_adoption(now: &Snapshot, before: &Snapshot, after: &Snapshot, what: &str) {
    old_or_new(now, before, after, what);
    assert_eq!(agreed_key(now, what).as_deref(), Some(PRIV_OWN), "{what}");
}

/// A provisioned device: no conf, or a complete one (the device key is random).
fn check_provision(now: &Snapshot, before: &Snapshot, _: &Snapshot, what: &str) {
    let mut rest = now.clone();
    let phone = rest.remove(&Path::new(".").join("provisioned-peers/phone.conf"));
    let mut rest_before = before.clone();
    rest_before.remove(&Path::new(".").join("provisioned-peers"));
    rest.remove(&Path::new(".").join("provisioned-peers"));
    assert_eq!(
        rest, rest_before,
        "{what}: provision-peer changed the node's files"
    );
    if let Some(Some(bytes)) = phone {
        let conf = String::from_utf8(bytes).unwrap();
        assert!(conf_private_key(&conf).is_some(), "{what}: {conf}");
        assert!(conf.contains("Address = 10.15.0.9/24"), "{what}: {conf}");
    }
}

fn check_old_or_new(now: &Snapshot, before: &Snapshot, after: &Snapshot, what: &str) {
    old_or_new(now, before, after, what);
    // No peer and no key lost: every peer of before is in the result
    // unless the command removes it (then `after` lacks it too).
    if let (Some(now_conf), Some(before_conf)) = (text(now, "wg0.conf"), text(before, "wg0.conf")) {
        let after_keys = text(after, "wg0.conf")
            .map(|c| peer_keys(&c))
            .unwrap_or_default();
        for key in peer_keys(&before_conf) {
            assert!(
                peer_keys(&now_conf).contains(&key) || !after_keys.contains(&key),
                "{what}: peer {key} lost"
            );
        }
    }
}

fn fault_inject(scenario: &Scenario) -> u32 {
    let work = tempfile::tempdir().unwrap();
    let template = work.path().join("template");
    fs::create_dir(&template).unwrap();
    (scenario.setup)(&template.join("wg"));
    // The state before, and after an uninterrupted run.
    let reference = work.path().join("reference");
    fs::create_dir(&reference).unwrap();
    copy_dir(&template, &reference);
    let before = snapshot(&reference.join("wg"));
    run_ok(&reference.join("wg"), scenario.args, scenario.stdin);
    let after = snapshot(&reference.join("wg"));
    assert_ne!(
        before, after,
        "{}: the command changes nothing",
        scenario.name
    );
    let old_key = agreed_key(&before, scenario.name);
    let mut points = 0;
    for class in CLASSES {
        for n in 1.. {
            let case = work.path().join(format!("case-{}-{n}", class.len()));
            fs::create_dir(&case).unwrap();
            copy_dir(&template, &case);
            let dir = case.join("wg");
            if !run_killed(&dir, scenario.args, scenario.stdin, class, n) {
                fs::remove_dir_all(&case).unwrap();
                break;
            }
            points += 1;
            let what = format!("{} killed at {class} #{n}", scenario.name);
            // The conf on disk is always a whole file, right after the kill.
            if let Some(conf) = text(&snapshot(&dir), "wg0.conf") {
                let known = [&before, &after]
                    .iter()
                    .filter_map(|s| text(s, "wg0.conf"))
                    .any(|c| c == conf);
                assert!(
                    known || scenario.name.starts_with("install"),
                    "{what}: a conf that is neither old nor new:\n{conf}"
                );
            }
            // The next locked run completes or discards what was left.
            run(&dir, NEUTRAL, "");
            let now = snapshot(&dir);
            no_leftovers(&now, &what);
            let key = agreed_key(&now, &what);
            if old_key.is_some() && key != old_key {
                let new_key = agreed_key(&after, &what);
                assert_eq!(key, new_key, "{what}: the key was replaced by a third one");
            }
            (scenario.check)(&now, &before, &after, &what);
            if scenario.rerun_ok {
                run_ok(&dir, scenario.args, scenario.stdin);
                let again = snapshot(&dir);
                no_leftovers(&again, &what);
                agreed_key(&again, &what);
            }
            fs::remove_dir_all(&case).unwrap();
        }
    }
    eprintln!(
        "{}: {points} injection points, every invariant held",
        scenario.name
    );
    println!("fault injection: {} {points}", scenario.name);
    points
}

macro_rules! scenario_test {
    ($test:ident, $name:expr, $setup:expr, $args:expr, $stdin:expr, $check:expr, $rerun:expr) => {
        #[test]
        fn $test() {
            let points = fault_inject(&Scenario {
                name: $name,
                setup: $setup,
                args: $args,
                stdin: $stdin,
                check: $check,
                rerun_ok: $rerun,
            });
            assert!(points > 0, "no injection point was reached");
        }
    };
}

scenario_test!(
    install_fresh_killed_anywhere,
    "install (fresh)",
    nothing,
    &["install", "10.15.0.1/24", "--endpoint", "203.0.113.1"],
    "",
    check_fresh_install,
    true
);
scenario_test!(
    install_adopting_a_wg_quick_conf_killed_anywhere,
    "install (adopt)",
    plain_wg_quick,
    &["install", "10.15.0.1/24"],
    "",
    check_adoption,
    true
);
scenario_test!(
    add_peer_killed_anywhere,
    "add-peer",
    installed,
    &BOB,
    "",
    check_old_or_new,
    true
);
scenario_test!(
    remove_peer_killed_anywhere,
    "remove-peer",
    installed_with_bob_and_phone,
    &["remove-peer", "bob"],
    "",
    check_old_or_new,
    false
);
scenario_test!(
    import_key_killed_anywhere,
    "import-key",
    installed,
    &["import-key"],
    PRIV_OTHER,
    check_old_or_new,
    true
);
scenario_test!(
    provision_peer_killed_anywhere,
    "provision-peer",
    installed,
    &[
        "provision-peer",
        "phone",
        "198.51.100.9:51820",
        "10.15.0.9/24"
    ],
    "",
    check_provision,
    false
);
scenario_test!(
    uninstall_killed_anywhere,
    "uninstall",
    installed_with_bob_and_phone,
    &["uninstall"],
    "",
    check_old_or_new,
    true
);
scenario_test!(
    relay_enable_killed_anywhere,
    "relay-enable",
    installed,
    &["relay-enable"],
    "",
    check_old_or_new,
    true
);
scenario_test!(
    relay_disable_killed_anywhere,
    "relay-disable",
    relay_enabled,
    &["relay-disable"],
    "",
    check_old_or_new,
    true
);
scenario_test!(
    relay_via_killed_anywhere,
    "relay",
    installed_with_bob_and_phone,
    &["relay", "bob", "via", "alice"],
    "",
    check_old_or_new,
    true
);

scenario_test!(
    relay_direct_killed_anywhere,
    "relay direct",
    bob_relayed,
    &["relay", "bob", "direct"],
    "",
    check_old_or_new,
    true
);
scenario_test!(
    add_peer_via_killed_anywhere,
    "add-peer --via",
    installed,
    &[
        "add-peer",
        "bob",
        "198.51.100.3:51820",
        KEY_B,
        "10.15.0.3",
        "--via",
        "alice"
    ],
    "",
    check_old_or_new,
    true
);
scenario_test!(
    trust_killed_anywhere,
    "trust",
    installed,
    &["trust", "alice"],
    "",
    check_old_or_new,
    true
);
scenario_test!(
    untrust_killed_anywhere,
    "untrust",
    alice_trusted,
    &["untrust", "alice"],
    "",
    check_old_or_new,
    false
);

scenario_test!(
    sync_killed_anywhere,
    "sync",
    roster_beside,
    &["sync", "roster.toml"],
    "",
    check_old_or_new,
    true
);

/// A killed provision-peer never leaves the device's key in a temp file,
/// and never blocks its address: the rerun provisions it.
#[test]
fn provision_peer_killed_at_its_rename_leaves_no_secret_and_reruns() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("wg");
    installed(&dir);
    let args = [
        "provision-peer",
        "phone",
        "198.51.100.9:51820",
        "10.15.0.9/24",
    ];
    assert!(run_killed(&dir, &args, "", "rename,renameat,renameat2", 1));
    run(&dir, NEUTRAL, "");
    let snap = snapshot(&dir);
    no_leftovers(&snap, "provision-peer killed at rename");
    assert!(!dir.join("provisioned-peers/phone.conf").exists());
    run_ok(&dir, &args, "");
    assert!(dir.join("provisioned-peers/phone.conf").exists());
}

/// import-key killed between its renames: the next run completes it, so
/// the key files and the conf agree on the new key (before, a rerun said
/// "already the node's key" while the conf kept the old one).
#[test]
fn import_key_killed_between_renames_is_completed() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("wg");
    installed(&dir);
    // Renames: journal, then the files; kill at the second file's rename.
    assert!(run_killed(
        &dir,
        &["import-key"],
        PRIV_OTHER,
        "rename,renameat,renameat2",
        3
    ));
    run(&dir, NEUTRAL, "");
    let snap = snapshot(&dir);
    assert_eq!(agreed_key(&snap, "import-key").as_deref(), Some(PRIV_OTHER));
    no_leftovers(&snap, "import-key");
}

/// The agent writes its own files (`<iface>.agent.json`, its membership
/// book) through a `.NAME.tmp` beside each, outside the config lock.
/// Killed at each of its first renames and writes: what it left is whole
/// JSON or nothing, the next agent starts, and `uninstall` leaves no file
/// of it behind, its temp files included.
#[test]
fn agent_killed_at_its_writes_leaves_nothing_after_uninstall() {
    let mut points = 0;
    for class in ["rename,renameat,renameat2", "write,pwrite64,writev"] {
        for n in 1..=4 {
            let work = tempfile::tempdir().unwrap();
            let dir = work.path().join("wg");
            installed(&dir);
            // A pass a second: it saves its files every pass, so the kill
            // comes; `timeout` bounds a run that never meets it.
            let mut cmd = Command::new("timeout");
            cmd.args(["20", "strace", "-f", "-o", "/dev/null", "-e"])
                .arg(format!("trace={class}"))
                .arg("-e")
                .arg(format!("inject={class}:signal=SIGKILL:when={n}"))
                .args([BIN, "agent", "--interval", "1"])
                .current_dir(work.path())
                .env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                .env("WGP2P_SERVICE", "none")
                .env("WG_CONFIG_DIR", &dir)
                .env("WGP2P_STUN_SERVERS", "")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let status = cmd.status().expect("run timeout strace wgp2p agent");
            // strace, then timeout, die of the signal that killed the agent.
            assert_eq!(
                status.signal(),
                Some(9),
                "the agent was not killed at {class} #{n}: {status}"
            );
            points += 1;
            let what = format!("agent killed at {class} #{n}");
            for name in ["wg0.agent.json", "wg0.membership.json"] {
                if let Ok(text) = fs::read_to_string(dir.join(name)) {
                    assert!(
                        serde_json::from_str::<serde_json::Value>(&text).is_ok(),
                        "{what}: {name} is not whole JSON: {text:?}"
                    );
                }
            }
            run_ok(&dir, &["status"], "");
            run_ok(&dir, &["uninstall"], "");
            let left = names(&snapshot(&dir));
            assert_eq!(left, ["."], "{what}: uninstall left {left:?}");
        }
    }
    eprintln!("agent: {points} injection points, every invariant held");
}

// ---- on a live interface ------------------------------------------------------

/// A config or `wg showconf` text as what the device holds: the private
/// key, the listen port, and each peer's allowed IPs (as a set), endpoint
/// and keepalive (0 and none the same), by public key.
type DeviceView = (
    Option<String>,
    Option<String>,
    BTreeMap<String, (Vec<String>, Option<String>, Option<String>)>,
);

fn device_view(text: &str) -> DeviceView {
    let (mut private, mut port) = (None, None);
    let mut peers = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut fields: (Vec<String>, Option<String>, Option<String>) = Default::default();
    let mut flush =
        |key: &mut Option<String>, fields: &mut (Vec<String>, Option<String>, Option<String>)| {
            if let Some(key) = key.take() {
                let mut done = std::mem::take(fields);
                done.0.sort();
                done.0.dedup();
                peers.insert(key, done);
            }
        };
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.starts_with('[') {
            flush(&mut current, &mut fields);
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let (key, value) = (key.trim().to_ascii_lowercase(), value.trim().to_string());
        match key.as_str() {
            "privatekey" => private = Some(value),
            "listenport" => port = Some(value),
            "publickey" => current = Some(value),
            "allowedips" => fields.0.extend(
                value
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty()),
            ),
            "endpoint" => fields.1 = Some(value),
            "persistentkeepalive" if value != "0" && value != "off" => fields.2 = Some(value),
            _ => {}
        }
    }
    flush(&mut current, &mut fields);
    (private, port, peers)
}

/// Every live change killed at each `rename`, `write`, `sendto` and
/// `recvfrom` (the device's UAPI request and answer), `fsync` and `unlink`
/// in turn, on a lab host running wg0 (wireguard-go): after
/// the kill, the next locked run completes or discards the files, and
/// `wgp2p repair` makes the device equal to the config, checked against
/// `wg-quick strip` and `wg showconf`.
#[test]
#[ignore = "lab: needs root, network namespaces and the lab packages"]
fn a_live_change_killed_anywhere_is_repaired_by_repair() {
    use wgp2p_lab::{Lab, WGP2P, wg_keypair};
    let lab = Lab::new();
    let host = lab.public_host("defiant");
    host.install("10.15.0.1/24", &host.endpoint(51820));
    host.wgp2p_ok(&ALICE);
    host.wgp2p_ok(&BOB);
    let (new_key, _) = wg_keypair();
    host.write_file("/run/new.key", &new_key);
    // A roster of this node and carol: sync adds carol.
    let mut roster = host.wgp2p_ok(&["export"]);
    roster.push_str(
        "\n[[peer]]\nname = \"carol\"\nendpoint = \"198.51.100.4:51820\"\npublic_key = \"",
    );
    roster.push_str(KEY_C);
    roster.push_str("\"\naddress = \"10.15.0.4\"\n");
    host.write_file("/run/roster.toml", &roster);
    host.sh("rm -rf /run/snap && cp -a /etc/wireguard /run/snap", &[])
        .expect_ok("snapshot the config dir");
    let restore = || {
        host.sh(
            "find /etc/wireguard -mindepth 1 -delete && cp -a /run/snap/. /etc/wireguard/",
            &[],
        )
        .expect_ok("restore the config dir");
        host.wgp2p_ok(&["repair"]);
    };
    let conf = || host.read_file("/etc/wireguard/wg0.conf");
    let live_view = || {
        device_view(
            &host
                .run(&["wg", "showconf", "wg0"])
                .expect_ok("wg showconf wg0"),
        )
    };
    let device_matches = |what: &str| {
        let file = host
            .run(&["wg-quick", "strip", "wg0"])
            .expect_ok("wg-quick strip wg0");
        let live = host
            .run(&["wg", "showconf", "wg0"])
            .expect_ok("wg showconf wg0");
        assert_eq!(
            device_view(&live),
            device_view(&file),
            "{what}: the device is not the config\n--- live\n{live}\n--- file\n{file}"
        );
    };
    let scenarios: [(&str, &str); 5] = [
        (
            "add-peer",
            "\"$1\" add-peer carol 198.51.100.4:51820 Gr0fMLGfJOWKgnF6QHOqvK6x0n/qsoQU9/k4xl1ZzXM= 10.15.0.4",
        ),
        ("remove-peer", "\"$1\" remove-peer bob"),
        ("relay via", "\"$1\" relay bob via alice"),
        ("import-key", "\"$1\" import-key < /run/new.key"),
        ("sync", "\"$1\" sync /run/roster.toml"),
    ];
    let env = "WGP2P_SERVICE=wg-quick WGP2P_STUN_SERVERS=";
    let mut total = 0;
    for (name, command) in scenarios {
        restore();
        device_matches(&format!("{name}: the start"));
        let before = conf();
        host.sh(&format!("{env} {command}"), &[WGP2P.as_str()])
            .expect_ok(name);
        let after = conf();
        assert_ne!(before, after, "{name} changes nothing");
        device_matches(&format!("{name}: an uninterrupted run"));
        let live_after = live_view();
        let mut points = 0;
        // Kills after which the device already had the change (and the
        // process had not said so), and the points per class.
        let mut applied = 0;
        let mut per_class = Vec::new();
        for class in [
            "rename,renameat,renameat2",
            "write,pwrite64,writev",
            // The device call runs in a thread of its own, and strace
            // counts each thread's calls apart: these classes reach it.
            // Killed at sendto, the request never left; at recvfrom, the
            // device has applied it and the process never knew.
            "sendto,sendmsg",
            "recvfrom,recvmsg",
            "fsync,fdatasync",
            "unlink,unlinkat",
        ] {
            let mut in_class = 0;
            for n in 1.. {
                restore();
                let killed = host.sh(
                    &format!(
                        "{env} strace -f -o /dev/null -e trace={class} -e inject={class}:signal=SIGKILL:when={n} sh -c '{}' sh \"$1\"",
                        command.replace('\'', "'\\''")
                    ),
                    &[WGP2P.as_str()],
                );
                if killed.success() {
                    break;
                }
                // The outer sh reports strace's death by SIGKILL as 137.
                assert_eq!(
                    killed.status.and_then(|s| s.code()),
                    Some(137),
                    "{name}: failed without being killed at {class} #{n}:\n{killed}"
                );
                points += 1;
                in_class += 1;
                if live_view() == live_after {
                    applied += 1;
                }
                let what = format!("{name} killed at {class} #{n}");
                // As status and doctor advise after any interruption.
                let repaired = host.wgp2p(&["repair"]);
                assert!(repaired.success(), "{what}: repair failed:\n{repaired}");
                let now = conf();
                assert!(
                    now == before || now == after,
                    "{what}: neither the old nor the new config:\n{now}"
                );
                device_matches(&what);
                let left = host
                    .sh("ls -A /etc/wireguard | grep '^\\.wgp2p' || true", &[])
                    .expect_ok("list temp files");
                assert!(left.trim().is_empty(), "{what}: left {left}");
            }
            per_class.push(format!(
                "{} {in_class}",
                class.split(',').next().unwrap_or(class)
            ));
        }
        eprintln!(
            "{name} (live): {points} injection points ({}; {applied} after the device had the change), the device equals the config after repair",
            per_class.join(", ")
        );
        total += points;
    }
    eprintln!("live fault injection: {total} injection points");
}
