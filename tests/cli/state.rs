//! Local state: identities are never replaced, the config dir is checked
//! rather than followed, multi-file changes are transactions, and wgp2p
//! undoes only what it did. Files only (`WGP2P_SERVICE=none`).

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};

use super::node::{Node, conf_value};
use crate::{ADD_ALICE, ADD_BOB, ALICE_KEY, ALICE_PRIVATE, BOB_KEY};
use wgp2p_lab::wg_pubkey;

/// A private key that is not this node's nor a peer's of the suite.
const PRIV_OTHER: &str = "QJRBRzLEyYrAc6igP44D0lZexzaFdFSycMcUPX7Ex18=";

/// A plain wg-quick setup: the key only in the conf, no `privatekey` file.
const PLAIN_CONF: &str = "[Interface]\n# the office link\nAddress = 10.15.0.1/24\nListenPort = 51820\nPrivateKey = SGb+ojrRNDuMePufwtIYhXzA//k6wF3R21tEBgKlzlM=\nMTU = 1380\n\n[Peer]\n# laptop\nPublicKey = xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=\nAllowedIPs = 10.15.0.2/32\nEndpoint = 198.51.100.2:51820\n";

fn plain_node() -> Node {
    let node = Node::new();
    node.write("wg0.conf", PLAIN_CONF);
    node
}

/// A distinct, valid public key per `i`.
fn test_key(i: u32) -> String {
    use base64::Engine;
    let mut bytes = [7u8; 32];
    bytes[..4].copy_from_slice(&i.to_be_bytes());
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn mode(path: &std::path::Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}

// ---- an identity is never replaced ------------------------------------------

#[test]
fn install_adopts_the_private_key_of_a_plain_wg_quick_conf() {
    let node = plain_node();
    node.install("10.15.0.1/24");
    assert_eq!(node.read("privatekey").trim(), ALICE_PRIVATE);
    assert_eq!(node.public_key(), wg_pubkey(ALICE_PRIVATE));
    let conf = node.conf();
    assert_eq!(
        conf_value(&conf, "Interface", 0, "PrivateKey").as_deref(),
        Some(ALICE_PRIVATE)
    );
    // Every original line is kept, in order.
    let mut lines = conf.lines();
    for original in PLAIN_CONF.lines() {
        assert!(
            lines.any(|l| l == original),
            "{original:?} lost or moved:\n{conf}"
        );
    }
}

/// Two `PrivateKey` lines: wg takes the last, and install adopts it; the
/// first (unused) line was deleted, a key lost from disk. Now the file
/// already says what install would write, so it stays byte for byte.
#[test]
fn install_adopts_the_last_of_two_private_keys_and_keeps_both_lines() {
    let node = Node::new();
    let conf = PLAIN_CONF.replace(
        "MTU = 1380\n",
        &format!("MTU = 1380\nPrivateKey = {PRIV_OTHER}\n"),
    );
    node.write("wg0.conf", &conf);
    node.install("10.15.0.1/24");
    assert_eq!(
        node.read("privatekey").trim(),
        PRIV_OTHER,
        "wg's key: the last line's"
    );
    assert_eq!(node.conf(), conf, "both lines kept, nothing else changed");
}

#[test]
fn install_refuses_key_file_and_conf_that_disagree() {
    let node = plain_node();
    node.write("privatekey", &format!("{PRIV_OTHER}\n"));
    let before = node.snapshot();
    let out = node.wgp2p().args(["install", "10.15.0.1/24"]).fails();
    assert_eq!(out.code, Some(3), "{out}");
    let privatekey = node.path("privatekey");
    let conf = node.path("wg0.conf");
    out.stderr_has(privatekey.to_str().unwrap())
        .stderr_has(conf.to_str().unwrap())
        .stderr_has("import-key")
        .never_shows(ALICE_PRIVATE)
        .never_shows(PRIV_OTHER);
    assert_eq!(node.snapshot().diff(&before), "", "nothing may change");
}

#[test]
fn import_key_resolves_a_disagreement_then_install_runs() {
    let node = plain_node();
    node.write("privatekey", &format!("{PRIV_OTHER}\n"));
    node.wgp2p()
        .args(["import-key"])
        .stdin(PRIV_OTHER)
        .succeeds()
        .stdout_has("imported key");
    assert_eq!(
        conf_value(&node.conf(), "Interface", 0, "PrivateKey").as_deref(),
        Some(PRIV_OTHER)
    );
    node.install("10.15.0.1/24");
    assert_eq!(node.read("privatekey").trim(), PRIV_OTHER);
}

#[test]
fn a_lone_public_key_is_not_replaced_by_a_new_identity() {
    let node = Node::new();
    node.write("publickey", &format!("{ALICE_KEY}\n"));
    let before = node.snapshot();
    let out = node.wgp2p().args(["install", "10.15.0.1/24"]).fails();
    out.stderr_has("no private key");
    assert_eq!(node.snapshot().diff(&before), "");
}

/// A `publickey` of another identity beside a conf's key: install
/// adopted the conf's key and overwrote it silently.
#[test]
fn install_refuses_a_public_key_file_of_another_identity() {
    let node = plain_node();
    node.write("publickey", &format!("{BOB_KEY}\n"));
    let before = node.snapshot();
    let out = node.wgp2p().args(["install", "10.15.0.1/24"]).fails();
    assert_eq!(out.code, Some(3), "{out}");
    out.stderr_has(&node.path("publickey").display().to_string())
        .stderr_has(&node.path("wg0.conf").display().to_string())
        .stderr_has(BOB_KEY)
        .stderr_has(ALICE_KEY)
        .never_shows(ALICE_PRIVATE);
    assert_eq!(node.snapshot().diff(&before), "", "nothing may change");
}

// ---- local state is checked, not followed ------------------------------------

#[test]
fn a_dangling_lock_symlink_is_never_followed() {
    let node = Node::installed();
    let elsewhere = tempfile::tempdir().unwrap();
    let target = elsewhere.path().join("created-by-root");
    // (A lock file an older wgp2p made goes first: the link takes its place.)
    let _ = fs::remove_file(node.path(".wgp2p.lock"));
    symlink(&target, node.path(".wgp2p.lock")).unwrap();
    node.wgp2p().args(ADD_ALICE).succeeds();
    node.wgp2p().args(["uninstall"]).succeeds();
    assert!(!target.exists(), "the link was followed");
    assert!(
        fs::symlink_metadata(node.path(".wgp2p.lock"))
            .unwrap()
            .is_symlink()
    );
}

#[test]
fn a_symlinked_provisioned_peers_dir_is_refused() {
    let node = Node::installed();
    let elsewhere = tempfile::tempdir().unwrap();
    fs::set_permissions(elsewhere.path(), fs::Permissions::from_mode(0o755)).unwrap();
    symlink(elsewhere.path(), node.path("provisioned-peers")).unwrap();
    let out = node
        .wgp2p()
        .args([
            "provision-peer",
            "phone",
            "198.51.100.9:51820",
            "10.15.0.9/24",
        ])
        .fails();
    out.stderr_has("provisioned-peers is a symbolic link");
    assert_eq!(fs::read_dir(elsewhere.path()).unwrap().count(), 0);
    assert_eq!(mode(elsewhere.path()), 0o755, "chmodded through the link");
}

#[test]
fn a_symlinked_conf_is_written_through_and_stays_a_link() {
    let node = Node::installed();
    let elsewhere = tempfile::tempdir().unwrap();
    let target = elsewhere.path().join("wg0.conf");
    fs::rename(node.path("wg0.conf"), &target).unwrap();
    symlink(&target, node.path("wg0.conf")).unwrap();
    node.wgp2p().args(ADD_ALICE).succeeds();
    assert!(
        fs::symlink_metadata(node.path("wg0.conf"))
            .unwrap()
            .is_symlink()
    );
    let conf = fs::read_to_string(&target).unwrap();
    assert!(conf.contains(ALICE_KEY), "{conf}");
    assert_eq!(mode(&target), 0o600);
    // Only the target is left in its dir: no temp file.
    assert_eq!(fs::read_dir(elsewhere.path()).unwrap().count(), 1);
    node.wgp2p().args(["remove-peer", "alice"]).succeeds();
    assert!(!fs::read_to_string(&target).unwrap().contains(ALICE_KEY));
}

#[test]
fn other_symlinks_and_loose_modes_are_refused_with_the_fix() {
    let node = Node::installed();
    let elsewhere = tempfile::tempdir().unwrap();
    let secret = elsewhere.path().join("secret");
    fs::write(&secret, "TOPSECRET-CONTENT\n").unwrap();
    fs::remove_file(node.path("endpoint")).unwrap();
    symlink(&secret, node.path("endpoint")).unwrap();
    for command in [&["status"][..], &ADD_ALICE] {
        let out = node.wgp2p().args(command.iter().copied()).fails();
        out.stderr_has("endpoint is a symbolic link")
            .never_shows("TOPSECRET");
    }
    fs::remove_file(node.path("endpoint")).unwrap();
    node.write("endpoint", "203.0.113.1\n");
    fs::set_permissions(node.path("privatekey"), fs::Permissions::from_mode(0o644)).unwrap();
    let out = node.wgp2p().args(ADD_ALICE).fails();
    out.stderr_has("mode 0644").stderr_has("chmod 600");
}

#[test]
fn install_repairs_a_0644_privatekey_and_a_loose_provisioned_dir() {
    let node = Node::installed();
    node.wgp2p()
        .args([
            "provision-peer",
            "phone",
            "198.51.100.9:51820",
            "10.15.0.9/24",
        ])
        .succeeds();
    fs::set_permissions(node.path("privatekey"), fs::Permissions::from_mode(0o644)).unwrap();
    fs::set_permissions(
        node.path("provisioned-peers"),
        fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    node.install("10.15.0.1/24");
    assert_eq!(mode(&node.path("privatekey")), 0o600);
    assert_eq!(mode(&node.path("provisioned-peers")), 0o700);
}

#[test]
fn doctor_reports_loose_modes_with_their_fix() {
    let node = Node::installed();
    fs::set_permissions(node.path("privatekey"), fs::Permissions::from_mode(0o644)).unwrap();
    let out = node.wgp2p().args(["doctor"]).fails();
    let line = format!("{} has mode 0644", node.path("privatekey").display());
    out.stdout_has(&line).stdout_has("chmod 600");
}

#[test]
fn a_file_content_is_never_echoed_whole() {
    let node = Node::installed();
    let junk = format!("not-an-endpoint-{}", "Z".repeat(500));
    node.write("endpoint", &junk);
    let out = node.wgp2p().args(["add-peer", "--json"]).output();
    assert!(out.code != Some(0), "{out}");
    assert!(!out.stderr.contains(&"Z".repeat(100)), "{out}");
}

#[test]
fn a_malformed_endpoint_file_is_a_bad_config_file() {
    let node = Node::installed();
    node.write("endpoint", "203.0.113.1:0\n");
    let before = node.snapshot();
    let out = node.wgp2p().args(["add-peer"]).fails();
    assert_eq!(out.code, Some(6), "{out}");
    out.stderr_has(&node.path("endpoint").display().to_string())
        .stderr_has("expected an endpoint");
    assert_eq!(node.snapshot().diff(&before), "");
}

#[test]
fn an_interface_name_that_looks_like_a_temp_file_is_refused() {
    let node = Node::installed();
    let before = node.snapshot();
    for name in [".wgp2p-a", ".hidden"] {
        let out = node
            .wgp2p()
            .args(["--interface", name, "install", "10.15.0.1/24"])
            .fails();
        assert_eq!(out.code, Some(2), "{out}");
        out.stderr_has("not starting with .");
    }
    assert_eq!(node.snapshot().diff(&before), "");
}

// ---- transactions and ownership --------------------------------------------------

#[test]
fn provision_peer_too_big_for_a_qr_code_writes_nothing() {
    let node = Node::installed();
    for i in 0..40u32 {
        let key = test_key(i);
        node.wgp2p()
            .args([
                "add-peer",
                &format!("peer{i}"),
                &format!("198.51.100.{}:51820", i + 10),
                &key,
                &format!("10.15.0.{}", i + 10),
            ])
            .succeeds();
    }
    let before = node.snapshot();
    let out = node
        .wgp2p()
        .args([
            "provision-peer",
            "phone",
            "198.51.100.9:51820",
            "10.15.0.9/24",
            "--qr",
            "--mesh",
        ])
        .fails();
    out.stderr_has("nothing was written");
    assert_eq!(node.snapshot().diff(&before), "");
    node.wgp2p()
        .args([
            "provision-peer",
            "phone",
            "198.51.100.9:51820",
            "10.15.0.9/24",
            "--mesh",
        ])
        .succeeds()
        .stdout_has("wgp2p add-peer phone");
}

#[test]
fn uninstall_of_an_interface_not_installed_here_removes_nothing() {
    let node = Node::installed();
    node.wgp2p()
        .args([
            "provision-peer",
            "phone",
            "198.51.100.9:51820",
            "10.15.0.9/24",
        ])
        .succeeds();
    let before = node.snapshot();
    let out = node
        .wgp2p()
        .args(["--interface", "wg9", "uninstall"])
        .fails();
    assert_eq!(out.code, Some(4), "{out}");
    out.stderr_has("wg9 is not installed");
    assert_eq!(node.snapshot().diff(&before), "");
    node.wgp2p().args(["uninstall"]).succeeds();
    assert!(!node.path("privatekey").exists());
}

#[test]
fn uninstall_keeps_the_lock_so_queued_runs_stay_serialised() {
    let node = Node::installed();
    node.wgp2p().args(["uninstall"]).succeeds();
    assert!(node.dir().is_dir(), "the locked dir must stay");
    // The lock is the config dir itself: holding it queues the next run.
    let held = fs::File::open(node.dir()).unwrap();
    held.lock().unwrap();
    let mut queued = std::process::Command::new(super::node::BIN)
        .args(["install", "10.15.0.1/24"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("WGP2P_SERVICE", "none")
        .env("WG_CONFIG_DIR", node.dir())
        .env("WGP2P_STUN_SERVERS", "")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(queued.try_wait().unwrap().is_none(), "ran without the lock");
    assert!(!node.path("wg0.conf").exists());
    drop(held);
    assert!(queued.wait().unwrap().success());
    assert!(node.path("wg0.conf").exists());
}

#[test]
fn relay_disable_without_relay_enable_changes_nothing() {
    let node = Node::installed();
    let before = node.snapshot();
    node.wgp2p()
        .args(["relay-disable"])
        .succeeds()
        .stdout_has("nothing changed");
    assert_eq!(node.snapshot().diff(&before), "");
    node.wgp2p().args(["relay-enable"]).succeeds();
    assert!(node.conf().contains("# wgp2p relay"));
    node.wgp2p().args(["relay-disable"]).succeeds();
    assert_eq!(node.snapshot().diff(&before), "");
}

#[test]
fn a_journal_left_by_a_killed_run_is_completed_by_the_next() {
    let node = Node::installed();
    // What import-key writes, as its journal: a run killed right after it.
    let conf = node.conf().replace(
        &conf_value(&node.conf(), "Interface", 0, "PrivateKey").unwrap(),
        PRIV_OTHER,
    );
    let mut journal = b"wgp2p-journal 1\n".to_vec();
    for (name, text) in [
        ("wg0.conf", conf.clone()),
        ("privatekey", format!("{PRIV_OTHER}\n")),
        ("publickey", format!("{}\n", wg_pubkey(PRIV_OTHER))),
    ] {
        journal.extend(format!("write {} {name}\n{text}\n", text.len()).as_bytes());
    }
    journal.extend(b"end\n");
    node.write(".wgp2p-journal", std::str::from_utf8(&journal).unwrap());
    node.write(".wgp2p-tmp-privatekey.1.0", PRIV_OTHER);
    node.wgp2p().args(ADD_BOB).succeeds();
    assert_eq!(node.read("privatekey").trim(), PRIV_OTHER);
    assert_eq!(node.public_key(), wg_pubkey(PRIV_OTHER));
    assert_eq!(
        conf_value(&node.conf(), "Interface", 0, "PrivateKey").as_deref(),
        Some(PRIV_OTHER)
    );
    assert!(!node.path(".wgp2p-journal").exists());
    assert!(!node.path(".wgp2p-tmp-privatekey.1.0").exists());
}

#[test]
#[ignore = "lab: needs root, network namespaces and the lab packages"]
fn a_file_of_another_owner_is_refused_with_the_fix() {
    // Root only: giving a file away needs chown.
    let node = Node::installed();
    let path = node.path("endpoint");
    std::os::unix::fs::chown(&path, Some(12345), None).unwrap();
    let out = node.wgp2p().args(["status"]).fails();
    out.stderr_has("endpoint is owned by uid 12345")
        .stderr_has("chown");
    let before = node.snapshot();
    node.wgp2p()
        .args(ADD_ALICE)
        .fails()
        .stderr_has("owned by uid 12345");
    assert_eq!(node.snapshot().diff(&before), "");
}

#[test]
fn the_agent_files_are_never_followed() {
    let node = Node::installed();
    let elsewhere = tempfile::tempdir().unwrap();
    let target = elsewhere.path().join("created-by-root");
    symlink(&target, node.path("wg0.agent.lock")).unwrap();
    let out = node.wgp2p().args(["agent"]).output();
    assert!(!target.exists(), "the agent lock link was followed: {out}");
}
