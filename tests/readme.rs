//! The README is executed: its walkthrough blocks (```console fences whose
//! lines start with a `root@HOST:~# ` prompt) run verbatim on containers
//! booting Debian 12 with systemd as PID 1 (lab::Container), one per host
//! the README names, in the order it names them (so the first is
//! 203.0.113.1). Every line the README shows under a command must be in
//! that command's output, with keys and times masked: a key shown in the
//! README stands for the key the run printed in its place, and commands
//! that come later get the run's key. So the README and the binary
//! cannot drift apart.
//!
//! Run by scripts/systemd-test.sh (with the root it builds and the .deb in
//! `WGP2P_DEB`); anywhere else ignored, and run by hand it fails.
//! `WGP2P_README_RECORD=1` prints each command's real output instead of
//! failing on a difference (for writing the README).

use wgp2p_lab as lab;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use lab::{Container, Lab};

const README: &str = include_str!("../README.md");
/// Commands that only look (ping, status) are run again until their output
/// matches, for this long: the mesh settles in its own time.
const SETTLE: Duration = Duration::from_secs(120);

/// One command of a walkthrough block, with the lines the README shows
/// under it.
#[derive(Debug)]
struct Step {
    host: String,
    command: String,
    shown: Vec<String>,
}

/// The walkthrough steps of `readme`, in order.
fn steps(readme: &str) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let mut in_console = false;
    for line in readme.lines() {
        if line.starts_with("```") {
            in_console = !in_console && line.trim() == "```console";
            continue;
        }
        if !in_console {
            continue;
        }
        if let Some(rest) = line.strip_prefix("root@")
            && let Some((host, command)) = rest.split_once(":~# ")
        {
            steps.push(Step {
                host: host.to_string(),
                command: command.to_string(),
                shown: Vec::new(),
            });
        } else if let Some(step) = steps.last_mut() {
            step.shown.push(line.to_string());
        } else {
            panic!(
                "a ```console block of the README starts with {line:?}, not a `root@HOST:~# ` prompt"
            );
        }
    }
    steps
}

/// Whether `word` looks like a WireGuard key (44 characters of base64).
fn is_key(word: &str) -> bool {
    let word = word.trim_end_matches([',', ')', '`']);
    word.len() == 44
        && word.ends_with('=')
        && word[..43]
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/')
}

/// A word that varies from run to run, as a mask: times (`0s`, `17s`,
/// `time=0.380`, `1m`), byte counts and their units, PIDs.
fn mask(word: &str) -> Option<&'static str> {
    let bare = word.trim_end_matches([',', ')', ';']);
    let bare = bare.strip_prefix("time=").unwrap_or(bare);
    let number = bare.trim_end_matches(['s', 'm', 'h']);
    if !number.is_empty()
        && number.chars().all(|c| c.is_ascii_digit() || c == '.')
        && number.matches('.').count() <= 1
    {
        return Some("NUMBER");
    }
    match bare {
        "B" | "KiB" | "MiB" | "GiB" => Some("UNIT"),
        _ => None,
    }
}

/// Whether the output line `actual` is the README's `shown` line, keys and
/// times masked; keys seen for the first time are learned into `keys`
/// (README key -> the run's key), known ones must agree.
fn line_matches(shown: &str, actual: &str, keys: &mut HashMap<String, String>) -> bool {
    let (shown_words, actual_words): (Vec<&str>, Vec<&str>) = (
        shown.split_whitespace().collect(),
        actual.split_whitespace().collect(),
    );
    if shown_words.len() != actual_words.len() {
        return false;
    }
    let mut learned = Vec::new();
    for (s, a) in shown_words.iter().zip(&actual_words) {
        if s == a {
            continue;
        }
        if is_key(s) && is_key(a) {
            let (s, a) = (
                s.trim_end_matches([',', ')', '`']),
                a.trim_end_matches([',', ')', '`']),
            );
            match keys.get(s) {
                Some(known) if known != a => return false,
                Some(_) => {}
                None => learned.push((s.to_string(), a.to_string())),
            }
            continue;
        }
        match (mask(s), mask(a)) {
            (Some(x), Some(y)) if x == y => {}
            _ => return false,
        }
    }
    keys.extend(learned);
    true
}

/// Whether every shown line is in the output, learning keys: in order
/// within stdout, and within stderr (a terminal interleaves the two, so
/// the README may show a stderr line between stdout lines).
fn output_matches(
    shown: &[String],
    stdout: &str,
    stderr: &str,
    keys: &mut HashMap<String, String>,
) -> bool {
    let mut trial = keys.clone();
    let (out, err): (Vec<&str>, Vec<&str>) = (stdout.lines().collect(), stderr.lines().collect());
    let (mut o, mut e) = (0, 0);
    // A `…` line marks output the README leaves out.
    for want in shown
        .iter()
        .filter(|l| !l.trim().is_empty() && l.trim() != "…")
    {
        if let Some(at) = out[o..]
            .iter()
            .position(|got| line_matches(want, got, &mut trial))
        {
            o += at + 1;
        } else if let Some(at) = err[e..]
            .iter()
            .position(|got| line_matches(want, got, &mut trial))
        {
            e += at + 1;
        } else {
            return false;
        }
    }
    *keys = trial;
    true
}

/// The command with the README's keys replaced by the run's.
fn with_run_keys(command: &str, keys: &HashMap<String, String>) -> String {
    keys.iter().fold(command.to_string(), |c, (readme, run)| {
        c.replace(readme, run)
    })
}

/// Whether a command only looks, so it may run again until it matches.
fn only_looks(command: &str) -> bool {
    ["ping ", "wgp2p status", "wgp2p doctor", "wg show"]
        .iter()
        .any(|p| command.starts_with(p))
}

#[test]
fn the_readme_walkthrough_is_parsed_and_masked_as_expected() {
    let parsed = steps(
        "x\n```console\nroot@a:~# wgp2p install 10.15.0.1/24\nRun this\n```\n```\nroot@b:~# not this\n```\n",
    );
    assert_eq!(parsed.len(), 1);
    assert_eq!(parsed[0].host, "a");
    assert_eq!(parsed[0].shown, ["Run this"]);
    let mut keys = HashMap::new();
    let readme_key = "bBSazd3NTmCjNJRrnmwTqzbLjixlWZVNRpxUwvIBkTE=";
    let run_key = "eQP0fVt6m7xVFIka0Pb4iy0m7LjKJSxQFWDBpNdcqmU=";
    assert!(line_matches(
        &format!("  public key: {readme_key}"),
        &format!("  public key: {run_key}"),
        &mut keys
    ));
    assert_eq!(keys[readme_key], run_key);
    assert!(!line_matches(
        &format!("x {readme_key}"),
        &format!("x {}", "DePmNxB5UHBvrnkPRdAxzM/dhac6Y3CUw8+NJcb5Wy8="),
        &mut keys
    ));
    assert!(line_matches(
        "  a  203.0.113.2:51820  10.15.0.2/32  0s ago     308 B in, 400 B out  25s        ok",
        "  a  203.0.113.2:51820  10.15.0.2/32  12s ago  1.2 KiB in, 4 B out  25s ok",
        &mut keys
    ));
    assert!(!line_matches(
        "  a  10.15.0.2/32 ok",
        "  a  10.15.0.3/32 ok",
        &mut keys
    ));
    assert!(!line_matches("added peer a", "added peer b", &mut keys));
    assert_eq!(
        with_run_keys(
            &format!("wgp2p add-peer d 1.2.3.4:5 {readme_key} 10.0.0.1"),
            &keys
        ),
        format!("wgp2p add-peer d 1.2.3.4:5 {run_key} 10.0.0.1")
    );
    assert!(
        !steps(README).is_empty(),
        "the README has no ```console walkthrough"
    );
}

#[test]
#[ignore = "systemd: runs in the containers of scripts/systemd-test.sh"]
fn systemd_ct_readme_walkthrough_runs_as_shown() {
    let record = std::env::var_os("WGP2P_README_RECORD").is_some();
    let deb = std::env::var("WGP2P_DEB")
        .expect("WGP2P_DEB names the .deb the README installs (scripts/systemd-test.sh sets it)");
    let steps = steps(README);
    let lab = Lab::new();
    let mut hosts: Vec<String> = Vec::new();
    for step in &steps {
        if !hosts.contains(&step.host) {
            hosts.push(step.host.clone());
        }
    }
    let containers: HashMap<String, Container> = hosts
        .iter()
        .map(|name| (name.clone(), lab.systemd_host(name)))
        .collect();
    // The root has the package already: each host installs it as the
    // README says, from /root.
    for c in containers.values() {
        c.ok(&["dpkg", "--remove", "wgp2p"]);
        c.copy_in(std::path::Path::new(&deb), "root");
    }
    let mut keys: HashMap<String, String> = HashMap::new();
    let mut failures = Vec::new();
    for step in &steps {
        // Getting the package is for every host, in the README's order.
        let on: Vec<&Container> = if step.command.starts_with("apt-get ") {
            hosts.iter().map(|h| &containers[h]).collect()
        } else {
            vec![&containers[&step.host]]
        };
        for c in on {
            run_step(c, step, &mut keys, record, &mut failures);
        }
        if !failures.is_empty() && !record {
            break;
        }
    }
    assert!(
        failures.is_empty(),
        "the README and the binary disagree:\n{}",
        failures.join("\n\n")
    );
}

/// Runs `step` on `c` (again, while it only looks and does not match yet),
/// checking its output against what the README shows.
fn run_step(
    c: &Container,
    step: &Step,
    keys: &mut HashMap<String, String>,
    record: bool,
    failures: &mut Vec<String>,
) {
    {
        let command = with_run_keys(&step.command, keys);
        let started = Instant::now();
        loop {
            let out = c.run(&["sh", "-c", &format!("cd /root && {command}")]);
            let ok_status = out.success() || step.command.starts_with("wgp2p doctor");
            if record {
                println!(
                    "root@{}:~# {}\n{}\n--- stderr\n{}",
                    c.name(),
                    step.command,
                    out.stdout.trim_end(),
                    out.stderr.trim_end()
                );
            }
            if ok_status && output_matches(&step.shown, &out.stdout, &out.stderr, keys) {
                break;
            }
            if record || !only_looks(&command) || started.elapsed() > SETTLE {
                failures.push(format!(
                    "root@{}:~# {}\n--- the README shows:\n{}\n--- the run gave:\n{out}",
                    c.name(),
                    step.command,
                    step.shown.join("\n")
                ));
                break;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}
