//! Taking over hosts wgp2p did not set up, on the namespace lab: a
//! WireGuard host configured by hand, by PiVPN, by a web UI (wg-easy) or by
//! the old script is brought up with plain `wg-quick`, then adopted by
//! `wgp2p install` while it runs. Its live public key must not change,
//! traffic keeps flowing, every line of its config stays, and an add-peer
//! followed by a remove-peer gives the file back byte for byte. Also: what
//! `relay-disable` undoes on a live host is exactly what `relay-enable`
//! did, and nothing an administrator set up.

use wgp2p_lab as lab;

use std::time::Duration;

use lab::{Host, Lab, wg_pubkey};

const CONF: &str = "/etc/wireguard/wg0.conf";
const PING: Duration = Duration::from_secs(10);

/// The `[Interface]` `PrivateKey` of a config.
fn private_key_of(conf: &str) -> String {
    conf.lines()
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("PrivateKey"))
        .map(|(_, v)| v.split('#').next().unwrap_or("").trim().to_string())
        .expect("a PrivateKey in the corpus file")
}

fn live_public_key(host: &Host) -> String {
    host.run(&["wg", "show", "wg0", "public-key"])
        .expect_ok("wg show wg0 public-key")
        .trim()
        .to_string()
}

/// Adopt one corpus file: `address` is the host's tunnel address as the
/// file gives it, `b_ip` a free address in its subnet for the lab peer.
/// `adjust` makes the lab copy runnable here (documented per setup).
fn adopt(corpus: &str, address: &str, b_ip: &str, adjust: impl Fn(&str) -> String) {
    let lab = Lab::new();
    let a = lab.public_host("a");
    let b = lab.public_host("b");
    let original = std::fs::read_to_string(format!(
        "{}/tests/corpus/{corpus}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("read the corpus file");
    let a_private = private_key_of(&original);
    let a_ip = address.split('/').next().unwrap();
    // B is a wgp2p node that knows A.
    let b_line = b.install(&format!("{b_ip}/24"), &b.endpoint(51820));
    // A, by hand: the corpus file plus a section for B, as its admin would
    // have added it, brought up by plain wg-quick.
    let mut text = adjust(&original);
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str("\n[Peer]\n# lab peer b\nPublicKey = ");
    text.push_str(b_line.public_key());
    text.push_str("\nAllowedIPs = ");
    text.push_str(b_ip);
    text.push_str("/32\nEndpoint = ");
    text.push_str(&b.endpoint(51820));
    text.push('\n');
    a.run(&["mkdir", "-p", "-m", "700", "/etc/wireguard"])
        .expect_ok("mkdir");
    a.write_file(CONF, &text);
    a.run(&["wg-quick", "up", "wg0"])
        .expect_ok("wg-quick up wg0");
    let before = live_public_key(&a);
    assert_eq!(before, wg_pubkey(&a_private));
    b.wgp2p_ok(&["add-peer", "a", &a.endpoint(51820), &before, a_ip]);
    assert!(b.ping(a_ip, PING), "{corpus}: no traffic before adoption");

    // The adoption, live.
    let out = a.wgp2p_ok(&["install", address]);
    assert_eq!(
        live_public_key(&a),
        before,
        "{corpus}: the live key changed"
    );
    assert_eq!(a.read_file("/etc/wireguard/privatekey").trim(), a_private);
    assert_eq!(a.read_file("/etc/wireguard/publickey").trim(), before);
    assert!(
        out.contains(&before),
        "{corpus}: the line announces another key:\n{out}"
    );
    let adopted = a.read_file(CONF);
    // Every original line is kept, in order (SaveConfig goes by design:
    // wg-quick would overwrite the file on the way down).
    let mut lines = adopted.lines();
    for line in text.lines().filter(|l| !l.starts_with("SaveConfig")) {
        assert!(
            lines.any(|l| l == line),
            "{corpus}: {line:?} lost or moved:\n{adopted}"
        );
    }
    assert!(b.ping(a_ip, PING), "{corpus}: no traffic after adoption");

    // An edit and its undo give the file back byte for byte.
    let (_, key) = lab::wg_keypair();
    let spare = b_ip
        .rsplit_once('.')
        .map(|(net, _)| format!("{net}.201"))
        .unwrap();
    a.wgp2p_ok(&["add-peer", "spare", "198.51.100.77:51820", &key, &spare]);
    assert_ne!(a.read_file(CONF), adopted);
    a.wgp2p_ok(&["remove-peer", "spare"]);
    assert_eq!(
        a.read_file(CONF),
        adopted,
        "{corpus}: add+remove changed the file"
    );
    assert_eq!(live_public_key(&a), before);
    assert!(b.ping(a_ip, PING), "{corpus}: no traffic after the edits");
}

/// Lines that need a program the lab does not have (`DNS =` needs
/// resolvconf) are left out of the lab copy.
fn without_dns(text: &str) -> String {
    text.lines()
        .filter(|l| !l.trim_start().starts_with("DNS"))
        .flat_map(|l| [l, "\n"])
        .collect()
}

#[test]
#[ignore = "lab: needs root, network namespaces and the lab packages"]
fn a_hand_edited_host_is_adopted_live() {
    // Table = off: the admin routes by hand; the lab copy adds the route
    // to its peer the same way.
    adopt("hand-edited.conf", "10.15.0.1/24", "10.15.0.200", |text| {
        without_dns(text).replace(
            "Table = off\n",
            "Table = off\nPostUp = ip route add 10.15.0.200/32 dev %i\n",
        )
    });
}

#[test]
#[ignore = "lab: needs root, network namespaces and the lab packages"]
fn a_pivpn_host_is_adopted_live() {
    adopt("pivpn.conf", "10.6.0.1/24", "10.6.0.200", str::to_string);
}

#[test]
#[ignore = "lab: needs root, network namespaces and the lab packages"]
fn a_web_ui_host_is_adopted_live() {
    adopt("wg-easy.conf", "10.8.0.1/24", "10.8.0.200", str::to_string);
}

#[test]
#[ignore = "lab: needs root, network namespaces and the lab packages"]
fn an_old_script_host_is_adopted_live() {
    adopt(
        "wireguard-p2p-script.conf",
        "10.15.0.1/24",
        "10.15.0.200",
        str::to_string,
    );
}

fn forwarding(host: &Host) -> String {
    host.read_file("/proc/sys/net/ipv4/conf/wg0/forwarding")
        .trim()
        .to_string()
}

fn set_forwarding(host: &Host, value: &str) {
    host.sh(
        "echo \"$1\" > /proc/sys/net/ipv4/conf/wg0/forwarding",
        &[value],
    )
    .expect_ok("set forwarding");
}

/// Copies of the rule `-A FORWARD -i wg0 -o wg0 -j ACCEPT`.
fn rule_count(host: &Host) -> usize {
    host.run(&["iptables", "-w", "-S", "FORWARD"])
        .expect_ok("iptables -S FORWARD")
        .lines()
        .filter(|l| l.trim() == "-A FORWARD -i wg0 -o wg0 -j ACCEPT")
        .count()
}

#[test]
#[ignore = "lab: needs root, network namespaces and the lab packages"]
fn relay_disable_restores_only_what_relay_enable_changed() {
    let lab = Lab::new();
    let a = lab.public_host("a");
    a.install("10.15.0.1/24", &a.endpoint(51820));
    // The administrator's own relaying: forwarding on, their own rule.
    set_forwarding(&a, "1");
    a.run(&[
        "iptables", "-w", "-A", "FORWARD", "-i", "wg0", "-o", "wg0", "-j", "ACCEPT",
    ])
    .expect_ok("add the admin's rule");
    // relay-disable without relay-enable touches none of it.
    let out = a.wgp2p_ok(&["relay-disable"]);
    assert!(out.contains("nothing changed"), "{out}");
    assert_eq!((forwarding(&a), rule_count(&a)), ("1".into(), 1));
    // enable then disable: the admin's rule is theirs, forwarding was 1.
    a.wgp2p_ok(&["relay-enable"]);
    assert_eq!((forwarding(&a), rule_count(&a)), ("1".into(), 1));
    a.wgp2p_ok(&["relay-disable"]);
    assert_eq!((forwarding(&a), rule_count(&a)), ("1".into(), 1));
    // Without them: relay-enable adds both, relay-disable takes both back.
    set_forwarding(&a, "0");
    a.run(&[
        "iptables", "-w", "-D", "FORWARD", "-i", "wg0", "-o", "wg0", "-j", "ACCEPT",
    ])
    .expect_ok("delete the admin's rule");
    a.wgp2p_ok(&["relay-enable"]);
    assert_eq!((forwarding(&a), rule_count(&a)), ("1".into(), 1));
    a.wgp2p_ok(&["relay-disable"]);
    assert_eq!((forwarding(&a), rule_count(&a)), ("0".into(), 0));
    assert!(!a.read_file(CONF).contains("wgp2p relay"));
}

#[test]
#[ignore = "lab: needs root, network namespaces and the lab packages"]
fn install_never_rekeys_a_running_interface_whose_key_is_elsewhere() {
    let lab = Lab::new();
    let a = lab.public_host("a");
    let (private, public) = lab::wg_keypair();
    a.run(&["mkdir", "-p", "-m", "700", "/etc/wireguard/keys"])
        .expect_ok("mkdir");
    a.write_file("/etc/wireguard/keys/wg0.key", &private);
    // The key is set by a hook from a file wgp2p does not know.
    let conf = "[Interface]\nAddress = 10.15.0.1/24\nListenPort = 51820\nPostUp = wg set %i private-key /etc/wireguard/keys/wg0.key\n";
    a.write_file(CONF, conf);
    a.run(&["wg-quick", "up", "wg0"])
        .expect_ok("wg-quick up wg0");
    assert_eq!(live_public_key(&a), public);
    let out = a.wgp2p(&["install", "10.15.0.1/24"]);
    assert!(
        !out.success(),
        "install re-keyed or adopted a key it cannot see"
    );
    assert!(
        out.all_output().contains("is running with public key"),
        "{}",
        out.all_output()
    );
    assert_eq!(live_public_key(&a), public, "the live key changed");
    assert_eq!(a.read_file(CONF), conf);
    assert!(
        !a.run(&["test", "-e", "/etc/wireguard/privatekey"])
            .success()
    );
}
