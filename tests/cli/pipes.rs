//! Output into a closed pipe (`wgp2p status | head -1`): stdout goes
//! through one writer that takes EPIPE as the normal end of the output,
//! so the run exits 0 with nothing on stderr, as wg(8) and ripgrep do.

use std::process::{Command, Stdio};

use super::node::{BIN, Node};
use crate::ADD_ALICE;

/// Runs wgp2p with stdout on a pipe whose reading end is already closed,
/// so its first write meets EPIPE. Returns the exit code and stderr.
fn into_closed_pipe(node: &Node, args: &[&str]) -> (Option<i32>, String) {
    let (reader, writer) = std::io::pipe().expect("make a pipe");
    drop(reader);
    let out = Command::new(BIN)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("WGP2P_SERVICE", "none")
        .env("WG_CONFIG_DIR", node.dir())
        .env("WGP2P_STUN_SERVERS", "")
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("run wgp2p");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_closed_pipe_is_a_normal_end() {
    let node = Node::installed();
    node.wgp2p().args(ADD_ALICE).succeeds();
    let runs: [&[&str]; 13] = [
        &["status"],
        &["status", "--json"],
        &["--json", "status"],
        &["add-peer"],
        &["completions", "bash"],
        &["completions", "zsh"],
        &["completions", "fish"],
        &["man"],
        &["--help"],
        &["--version"],
        &["export"],
        &[
            "provision-peer",
            "phone",
            "192.0.2.9:51820",
            "10.15.0.50/24",
        ],
        &["doctor"],
    ];
    for args in runs {
        // Each of them prints something when stdout is open. provision-peer
        // refuses a name or an address already given: the open run gets
        // its own.
        let open: Vec<&str> = args
            .iter()
            .map(|a| match *a {
                "phone" => "phone-open",
                "10.15.0.50/24" => "10.15.0.51/24",
                other => other,
            })
            .collect();
        let printed = node.wgp2p().args(&open).output();
        assert!(!printed.stdout.is_empty(), "{printed}");
        let (code, stderr) = into_closed_pipe(&node, args);
        // doctor exits 7 (problems found: the interface is down) whether or
        // not anyone reads its lines; every other run here succeeds.
        let expected = if args == ["doctor"] {
            printed.code
        } else {
            Some(0)
        };
        assert_eq!(
            code, expected,
            "wgp2p {args:?} into a closed pipe: {stderr}"
        );
        let noise: Vec<&str> = stderr
            .lines()
            .filter(|l| !l.starts_with("wgp2p: error: doctor found"))
            .collect();
        assert!(
            noise.is_empty(),
            "wgp2p {args:?} into a closed pipe printed on stderr: {stderr}"
        );
    }
}

/// A change still completes when nobody reads its report.
#[test]
fn a_change_completes_into_a_closed_pipe() {
    let node = Node::installed();
    let (code, stderr) = into_closed_pipe(&node, &ADD_ALICE);
    assert_eq!((code, stderr.as_str()), (Some(0), ""));
    assert!(node.conf().contains("# Name = alice"), "{}", node.conf());
    let args = [
        "provision-peer",
        "phone",
        "192.0.2.9:51820",
        "10.15.0.50/24",
    ];
    let (code, stderr) = into_closed_pipe(&node, &args);
    assert_eq!((code, stderr.as_str()), (Some(0), ""));
    let conf = node.dir().join("provisioned-peers/phone.conf");
    let phone = std::fs::read_to_string(&conf).expect("provision-peer wrote the phone's conf");
    assert!(phone.contains("[Peer]"), "{phone}");
}

/// Every `print!`/`println!` of the program goes through the one writer
/// (`outln!`/`out!` in src/output.rs); a plain one would panic on EPIPE.
#[test]
fn no_plain_print_to_stdout_in_the_program() {
    let mut offenders = Vec::new();
    let mut dirs = vec![std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src"
    ))];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("list src") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read source");
            for (i, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or_default();
                let plain = ["println!(", "print!(", "std::io::stdout()"]
                    .iter()
                    .any(|p| {
                        code.match_indices(p).any(|(at, _)| {
                            !code[..at].ends_with('e') && !path.ends_with("output.rs")
                        })
                    });
                let device_guard = path.ends_with("device.rs") && code.contains("stdout().flush()");
                if plain && !device_guard {
                    offenders.push(format!("{}:{}: {}", path.display(), i + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "print through crate::outln!/crate::out! (src/output.rs), not stdout directly:\n{}",
        offenders.join("\n")
    );
}
