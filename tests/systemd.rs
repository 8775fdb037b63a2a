//! wgp2p where most users run it: Debian 12 with systemd as PID 1, the
//! wgp2p package installed. Each scenario boots containers
//! (lab::Container) on the lab's public segment: `install` enables and
//! starts a real `wg-quick@wg0`, `agent enable` a real `wgp2p-agent@wg0`
//! from the package's unit, and a container powered off and booted again
//! comes back as it was.
//!
//! The root they boot is built by scripts/systemd-test.sh, which runs
//! them with `WGP2P_SYSTEMD_ROOT` set and counts them; anywhere else they
//! are ignored (cargo counts them), and run by hand they fail.

use wgp2p_lab as lab;

use std::time::Duration;

use lab::{Container, Lab, add_peer_lines};

/// A ping that must work, first handshake included.
const PING_TIMEOUT: Duration = Duration::from_secs(20);
const WG_QUICK: &str = "wg-quick@wg0";
const AGENT: &str = "wgp2p-agent@wg0";
const PACKAGED_UNIT: &str = "/lib/systemd/system/wgp2p-agent@.service";
const WRITTEN_UNIT: &str = "/etc/systemd/system/wgp2p-agent@.service";

/// `wgp2p install ADDRESS --endpoint IP [extra…]` on `c`: its add-peer line.
fn install(c: &Container, address: &str, extra: &[&str]) -> String {
    let endpoint = c.ip().to_string();
    let mut args = vec!["wgp2p", "install", address, "--endpoint", &endpoint];
    args.extend_from_slice(extra);
    let out = c.ok(&args);
    let lines = add_peer_lines(&out);
    assert_eq!(
        lines.len(),
        1,
        "install on {} printed no add-peer line:\n{out}",
        c.name()
    );
    lines[0].line.clone()
}

/// Pastes `line` (an add-peer line as printed) on `c`.
fn paste(c: &Container, line: &str) {
    let words = lab::shell_words(line);
    let args: Vec<&str> = words.iter().map(String::as_str).collect();
    c.ok(&args);
}

fn assert_unit(c: &Container, unit: &str, enabled: &str, active: &str) {
    assert_eq!(
        (
            c.systemctl_is("is-enabled", unit),
            c.systemctl_is("is-active", unit)
        ),
        (enabled.to_string(), active.to_string()),
        "{unit} on {}:\n{}",
        c.name(),
        c.run(&["systemctl", "status", "--no-pager", unit])
    );
}

/// The units systemd has enabled whose name is wgp2p's or wg-quick's.
fn enabled_units(c: &Container) -> String {
    c.sh("find /etc/systemd/system -name 'wg-quick@*' -o -name 'wgp2p*' | sort")
        .stdout
}

/// The agent's command line, as systemd started it.
fn agent_cmdline(c: &Container) -> String {
    c.sh("tr '\\0' ' ' < /proc/$(systemctl show -P MainPID wgp2p-agent@wg0)/cmdline")
        .stdout
        .trim()
        .to_string()
}

/// Waits until the agent runs with a command line ending in `tail`
/// (a restart is asynchronous), and says what ran when it does not.
fn assert_agent_runs_with(c: &Container, tail: &str) {
    let mut last = String::new();
    let ran = lab::wait_until(Duration::from_secs(30), || {
        last = agent_cmdline(c);
        last.ends_with(tail)
    });
    assert!(
        ran,
        "the agent on {} runs as {last:?}, expected \"… {tail}\":\n{}",
        c.name(),
        c.run(&["journalctl", "--no-pager", "-n", "30", "-u", AGENT])
    );
}

fn public_key(c: &Container) -> String {
    c.ok(&["cat", "/etc/wireguard/publickey"])
        .trim()
        .to_string()
}

fn assert_pings(from: &Container, to: &[&str]) {
    for ip in to {
        assert!(
            from.ping(ip, PING_TIMEOUT),
            "{} cannot ping {ip}:\n{}",
            from.name(),
            from.run(&["wg", "show"])
        );
    }
}

/// Three hosts mesh by pasted lines with `install` enabling wg-quick@wg0;
/// `agent enable` and `install --agent` start the agent from the
/// package's unit; one host is powered off and booted again and comes
/// back with the same key, its peers, its agent, and pings.
#[test]
#[ignore = "systemd: runs in the containers of scripts/systemd-test.sh"]
fn systemd_ct_three_hosts_mesh_and_one_comes_back_after_a_reboot() {
    let lab = Lab::new();
    let mut alpha = lab.systemd_host("alpha");
    let bravo = lab.systemd_host("bravo");
    let charlie = lab.systemd_host("charlie");
    let a = install(&alpha, "10.15.0.1/24", &[]);
    let b = install(&bravo, "10.15.0.2/24", &["--agent"]);
    let c = install(&charlie, "10.15.0.3/24", &[]);
    for host in [&alpha, &bravo, &charlie] {
        assert_unit(host, WG_QUICK, "enabled", "active");
    }
    paste(&alpha, &b);
    paste(&alpha, &c);
    paste(&bravo, &a);
    paste(&bravo, &c);
    paste(&charlie, &a);
    paste(&charlie, &b);
    assert_pings(&alpha, &["10.15.0.2", "10.15.0.3"]);
    assert_pings(&bravo, &["10.15.0.1", "10.15.0.3"]);
    assert_pings(&charlie, &["10.15.0.1", "10.15.0.2"]);

    // The agent from the package's unit: nothing written into /etc.
    assert_unit(&bravo, AGENT, "enabled", "active");
    let out = alpha.ok(&["wgp2p", "agent", "enable"]);
    assert!(
        out.contains("agent enabled: systemd unit wgp2p-agent@wg0"),
        "{out}"
    );
    assert_unit(&alpha, AGENT, "enabled", "active");
    for host in [&alpha, &bravo] {
        let fragment = host.ok(&["systemctl", "show", "-P", "FragmentPath", AGENT]);
        assert_eq!(fragment.trim(), PACKAGED_UNIT, "on {}", host.name());
        assert!(!host.run(&["test", "-e", WRITTEN_UNIT]).success());
    }
    let status = alpha.ok(&["wgp2p", "status"]);
    assert!(status.contains("agent: running"), "{status}");

    let key = public_key(&alpha);
    let peers_before = alpha.ok(&["wg", "show", "wg0", "peers"]);
    alpha.poweroff();
    alpha.boot();
    assert_eq!(public_key(&alpha), key, "the key changed across a reboot");
    assert_unit(&alpha, WG_QUICK, "enabled", "active");
    assert_unit(&alpha, AGENT, "enabled", "active");
    assert_eq!(
        sorted_lines(&alpha.ok(&["wg", "show", "wg0", "peers"])),
        sorted_lines(&peers_before)
    );
    let live_key = alpha.ok(&["wg", "show", "wg0", "public-key"]);
    assert_eq!(live_key.trim(), key);
    assert_pings(&alpha, &["10.15.0.2", "10.15.0.3"]);
    assert_pings(&bravo, &["10.15.0.1"]);
    let status = alpha.ok(&["wgp2p", "status"]);
    assert!(status.contains("agent: running"), "{status}");
}

fn sorted_lines(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines.sort();
    lines
}

/// `stop` and `start` go through systemctl: the unit stops (and the agent
/// bound to it), and starts again with its agent; the unit stays enabled.
#[test]
#[ignore = "systemd: runs in the containers of scripts/systemd-test.sh"]
fn systemd_ct_stop_and_start_go_through_systemctl() {
    let lab = Lab::new();
    let host = lab.systemd_host("delta");
    install(&host, "10.15.0.4/24", &["--agent"]);
    assert_unit(&host, AGENT, "enabled", "active");
    host.ok(&["wgp2p", "stop"]);
    assert_unit(&host, WG_QUICK, "enabled", "inactive");
    assert_eq!(host.systemctl_is("is-active", AGENT), "inactive");
    assert!(
        !host.run(&["ip", "link", "show", "wg0"]).success(),
        "wg0 is still there"
    );
    host.ok(&["wgp2p", "start"]);
    assert_unit(&host, WG_QUICK, "enabled", "active");
    assert_unit(&host, AGENT, "enabled", "active");
    let status = host.ok(&["wgp2p", "status"]);
    assert!(status.contains("interface wg0: up"), "{status}");
}

/// `agent enable` takes the agent's options into `wg0.agent.env`, which
/// the unit reads (no `systemctl edit`); `agent disable` twice is fine;
/// `uninstall` disables both units and leaves nothing enabled.
#[test]
#[ignore = "systemd: runs in the containers of scripts/systemd-test.sh"]
fn systemd_ct_agent_options_disable_twice_and_uninstall_leave_nothing_enabled() {
    let lab = Lab::new();
    let host = lab.systemd_host("echo");
    // Nothing installed yet: refused, and nothing written.
    let before = host
        .sh("find /etc/systemd/system /etc/wireguard | sort")
        .stdout;
    let out = host.run(&["wgp2p", "agent", "enable"]);
    assert_eq!(out.status.and_then(|s| s.code()), Some(4), "{out}");
    assert!(
        out.stderr
            .contains("run `wgp2p install ADDRESS/CIDR` first"),
        "{out}"
    );
    assert_eq!(
        host.sh("find /etc/systemd/system /etc/wireguard | sort")
            .stdout,
        before
    );
    install(&host, "10.15.0.5/24", &[]);
    host.ok(&[
        "wgp2p",
        "agent",
        "enable",
        "--auto-relay",
        "--relay-after",
        "60",
    ]);
    assert_unit(&host, AGENT, "enabled", "active");
    assert_agent_runs_with(&host, "agent --interval 30 --auto-relay --relay-after 60");
    let status = host.ok(&["wgp2p", "status"]);
    assert!(status.contains("auto-relay after 1m 0s"), "{status}");
    // Enabled again without options: the agent restarts with the defaults.
    host.ok(&["wgp2p", "agent", "enable"]);
    assert_agent_runs_with(&host, "agent --interval 30");

    for _ in 0..2 {
        let out = host.ok(&["wgp2p", "agent", "disable"]);
        assert!(out.contains("agent disabled"), "{out}");
        assert_unit(&host, AGENT, "disabled", "inactive");
        assert!(
            !host
                .run(&["test", "-e", "/etc/wireguard/wg0.agent.env"])
                .success()
        );
    }
    assert_unit(&host, WG_QUICK, "enabled", "active");

    host.ok(&["wgp2p", "agent", "enable"]);
    host.ok(&["wgp2p", "uninstall"]);
    assert_eq!(host.systemctl_is("is-enabled", WG_QUICK), "disabled");
    assert_eq!(host.systemctl_is("is-active", WG_QUICK), "inactive");
    assert_eq!(host.systemctl_is("is-active", AGENT), "inactive");
    assert_eq!(enabled_units(&host), "", "left enabled after uninstall");
    let left = host.ok(&["ls", "-A", "/etc/wireguard"]);
    assert_eq!(left, "", "left in /etc/wireguard after uninstall");
}

/// A binary outside the package (a source install in /usr/local/bin)
/// writes its own unit into /etc/systemd/system, which runs it; uninstall
/// removes that unit; then `apt-get remove` takes the package's unit away.
#[test]
#[ignore = "systemd: runs in the containers of scripts/systemd-test.sh"]
fn systemd_ct_a_source_install_writes_its_unit_and_removing_leaves_none() {
    let lab = Lab::new();
    let host = lab.systemd_host("foxtrot");
    host.ok(&["cp", "/usr/bin/wgp2p", "/usr/local/bin/wgp2p"]);
    let endpoint = host.ip().to_string();
    host.ok(&[
        "/usr/local/bin/wgp2p",
        "install",
        "10.15.0.6/24",
        "--endpoint",
        &endpoint,
        "--agent",
    ]);
    assert_unit(&host, AGENT, "enabled", "active");
    let fragment = host.ok(&["systemctl", "show", "-P", "FragmentPath", AGENT]);
    assert_eq!(fragment.trim(), WRITTEN_UNIT);
    assert_agent_runs_with(&host, "agent --interval 30");
    assert!(agent_cmdline(&host).starts_with("/usr/local/bin/wgp2p --interface wg0 agent"));
    host.ok(&["/usr/local/bin/wgp2p", "uninstall"]);
    assert!(
        !host.run(&["test", "-e", WRITTEN_UNIT]).success(),
        "uninstall left {WRITTEN_UNIT}"
    );
    assert_eq!(enabled_units(&host), "", "left enabled after uninstall");

    // A unit of that name that wgp2p did not write (here a link to the
    // administrator's own) is never replaced, followed or removed.
    host.ok(&[
        "sh",
        "-c",
        "printf '[Service]\\nExecStart=/bin/true\\n' > /root/mine.service",
    ]);
    host.ok(&["ln", "-s", "/root/mine.service", WRITTEN_UNIT]);
    host.ok(&[
        "/usr/local/bin/wgp2p",
        "install",
        "10.15.0.6/24",
        "--endpoint",
        &endpoint,
    ]);
    let out = host.run(&["/usr/local/bin/wgp2p", "agent", "enable"]);
    assert_eq!(out.status.and_then(|s| s.code()), Some(3), "{out}");
    assert!(out.stderr.contains("wgp2p did not write it"), "{out}");
    host.ok(&["/usr/local/bin/wgp2p", "uninstall"]);
    assert_eq!(
        host.ok(&["readlink", WRITTEN_UNIT]).trim(),
        "/root/mine.service"
    );
    assert_eq!(
        host.ok(&["cat", "/root/mine.service"]),
        "[Service]\nExecStart=/bin/true\n"
    );
    host.ok(&["rm", WRITTEN_UNIT]);

    host.ok(&["apt-get", "remove", "-y", "-qq", "wgp2p"]);
    assert!(
        !host.run(&["test", "-e", PACKAGED_UNIT]).success(),
        "apt-get remove left {PACKAGED_UNIT}"
    );
    host.ok(&["systemctl", "daemon-reload"]);
    let cat = host.run(&["systemctl", "cat", "wgp2p-agent@wg0"]);
    assert!(!cat.success(), "a unit is still there:\n{cat}");
}
