//! What the user reads: the one stdout writer, the status table and its
//! JSON form, durations and byte counts in words, and QR codes for the
//! terminal.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, Result};
use crate::status::{AgentView, Health, PeerStatus, StatusReport};
use crate::words::{human_bytes, human_duration};

/// Set once a write to stdout met a closed pipe (EPIPE). It mirrors the
/// state of file descriptor 1, which is process-wide by nature.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// Set when a write to stdout failed for another reason than a closed pipe.
static STDOUT_FAILED: AtomicBool = AtomicBool::new(false);

/// Every byte wgp2p prints on stdout goes through this writer. Rust ignores
/// SIGPIPE, so a reader that goes away (`wgp2p status | head -1`) turns the
/// next write into EPIPE, on which `println!` panics. Here a closed pipe is
/// a normal end, as for wg(8) and ripgrep: the rest of the output is
/// dropped without a word, the command still finishes what it was doing
/// (a change is never left half done because nobody reads its report),
/// and the exit status is the command's own.
pub struct Stdout;

impl std::io::Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if STDOUT_CLOSED.load(Ordering::Relaxed) {
            return Ok(buf.len());
        }
        let mut out = std::io::stdout().lock();
        match out.write_all(buf).and_then(|()| out.flush()) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                STDOUT_CLOSED.store(true, Ordering::Relaxed);
                Ok(buf.len())
            }
            Err(e) => Err(e),
            Ok(()) => Ok(buf.len()),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Print through [`Stdout`]. Another write error than a closed pipe (a
/// full disk behind a redirection) is reported on stderr once, and the
/// run exits 1 (see [`stdout_failed`]): the output asked for is incomplete.
pub fn print_out(args: std::fmt::Arguments<'_>) {
    let mut text = String::new();
    let _ = text.write_fmt(args);
    if let Err(e) = Stdout.write_all(text.as_bytes()) {
        STDOUT_CLOSED.store(true, Ordering::Relaxed);
        STDOUT_FAILED.store(true, Ordering::Relaxed);
        eprintln!("wgp2p: error: cannot write to stdout: {e}");
    }
}

/// Whether some output was lost to a write error other than a closed pipe.
pub fn stdout_failed() -> bool {
    STDOUT_FAILED.load(Ordering::Relaxed)
}

/// `println!` through the pipe-safe [`Stdout`] writer.
#[macro_export]
macro_rules! outln {
    () => {
        $crate::output::print_out(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::output::print_out(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` through the pipe-safe [`Stdout`] writer.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::print_out(format_args!($($arg)*))
    };
}

/// Colour only on a terminal, and never with `NO_COLOR` set.
pub fn use_colour() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

fn handshake_text(peer: &PeerStatus) -> String {
    match (peer.live, peer.latest_handshake_secs_ago) {
        (_, Some(secs)) => format!("{} ago", human_duration(secs)),
        (true, None) => "never".into(),
        (false, None) => "-".into(),
    }
}

fn transfer_text(peer: &PeerStatus) -> String {
    match (peer.rx_bytes, peer.tx_bytes) {
        (Some(rx), Some(tx)) => format!("{} in, {} out", human_bytes(rx), human_bytes(tx)),
        _ => "-".into(),
    }
}

fn paint(text: &str, health: Health, colour: bool) -> String {
    let code = match health {
        Health::Ok => "32",
        Health::Stale | Health::Drift => "31",
        Health::Down => "33",
    };
    if colour {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

/// The human `status`: a header, one table row per peer, then notes.
#[allow(
    clippy::too_many_lines,
    reason = "the table, its header and its notes read top to bottom in one place"
)]
pub fn status_table(report: &StatusReport, colour: bool) -> String {
    let mut out = String::new();
    let backend = report
        .backend
        .map(|b| format!(" ({b})"))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "interface {}: {}{backend}",
        report.interface, report.state
    );
    if let Some(address) = &report.address {
        let _ = writeln!(out, "  address: {address}");
    }
    if let Some(key) = &report.public_key {
        let _ = writeln!(out, "  public key: {key}");
    }
    if let Some(port) = report.listen_port {
        let _ = writeln!(out, "  listening port: {port}");
    }
    for note in &report.notes {
        let _ = writeln!(out, "  {}: {note}", paint("DRIFT", Health::Drift, colour));
    }
    let _ = writeln!(out, "  agent: {}", agent_text(&report.agent));
    if report.peers.is_empty() {
        let _ = writeln!(
            out,
            "no peers yet: paste other nodes' `wgp2p add-peer …` lines here"
        );
        return out;
    }
    let header = [
        "NAME",
        "ENDPOINT",
        "ALLOWED IPS",
        "HANDSHAKE",
        "TRANSFER",
        "KEEPALIVE",
        "HEALTH",
    ];
    let rows: Vec<[String; 7]> = report
        .peers
        .iter()
        .map(|p| {
            [
                p.name.clone().unwrap_or_else(|| "(unnamed)".into()),
                match (&p.via, &p.endpoint) {
                    (Some(via), _) => format!("via {via}"),
                    (None, Some(endpoint)) => endpoint.clone(),
                    (None, None) => "-".into(),
                },
                p.allowed_ips.join(","),
                handshake_text(p),
                transfer_text(p),
                p.keepalive
                    .map_or_else(|| "off".into(), |k| format!("{k}s")),
                p.health.word().to_string(),
            ]
        })
        .collect();
    let widths: Vec<usize> = (0..7)
        .map(|i| {
            rows.iter()
                .map(|r| r[i].len())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: [&str; 7], health: Option<Health>| {
        let mut text = String::from("  ");
        for (i, cell) in cells.iter().enumerate().take(6) {
            let _ = write!(text, "{cell:<w$}  ", w = widths[i]);
        }
        match health {
            Some(h) => text.push_str(&paint(cells[6], h, colour)),
            None => text.push_str(cells[6]),
        }
        text.trim_end().to_string()
    };
    let _ = writeln!(out, "{}", line(header, None));
    for (row, peer) in rows.iter().zip(&report.peers) {
        let cells = [
            &*row[0], &*row[1], &*row[2], &*row[3], &*row[4], &*row[5], &*row[6],
        ];
        let _ = writeln!(out, "{}", line(cells, Some(peer.health)));
    }
    for peer in report.peers.iter().filter(|p| p.note.is_some()) {
        let name = peer.name.as_deref().unwrap_or(&peer.public_key);
        let _ = writeln!(
            out,
            "  {name}: {}",
            peer.note.as_deref().unwrap_or_default()
        );
    }
    for learned in &report.agent.learned_endpoints {
        let name = learned.peer.as_deref().unwrap_or(&learned.public_key);
        if learned.from.is_some() {
            let configured = if learned.configured.is_empty() {
                "no endpoint"
            } else {
                &learned.configured
            };
            let _ = writeln!(
                out,
                "  {name}: endpoint {} set by the agent {} ago, introduced by {} (it was stale; the config keeps {configured})",
                learned.address,
                human_duration(learned.secs_ago),
                learned.source,
            );
            continue;
        }
        let _ = writeln!(
            out,
            "  {name}: endpoint {} set by the agent {} ago from DNS {} ({})",
            learned.address,
            human_duration(learned.secs_ago),
            learned.configured,
            learned.reason.describe()
        );
    }
    if let Some(auto) = &report.agent.auto_relay {
        for p in &auto.peers {
            let name = p.peer.as_deref().unwrap_or(&p.public_key);
            let ago = p.secs.map(human_duration).unwrap_or_default();
            let text = match p.state {
                "relayed" => format!(
                    "relayed via {} by the agent ({ago} ago); a direct probe runs, direct again when it makes a handshake",
                    p.via_name.as_deref().or(p.via.as_deref()).unwrap_or("?")
                ),
                "stale" => format!(
                    "no direct handshake for {ago}: the agent relays it after {} if a relay-enabled peer is healthy",
                    human_duration(auto.after_secs)
                ),
                _ => "placed by hand with `wgp2p relay`: the agent's auto-relay leaves it alone"
                    .into(),
            };
            let _ = writeln!(out, "  {name}: auto-relay: {text}");
        }
    }
    out
}

/// `running (pid 7), last pass 3s ago, a pass every 30 s` or `not running`.
fn agent_text(agent: &AgentView) -> String {
    if !agent.running {
        return "not running".into();
    }
    let mut text = match agent.pid {
        Some(pid) => format!("running (pid {pid})"),
        None => "running".to_string(),
    };
    if let Some(ago) = agent.last_pass_secs_ago {
        let _ = write!(text, ", last pass {} ago", human_duration(ago));
    }
    if let Some(every) = agent.interval_secs {
        let _ = write!(text, ", a pass every {every} s");
    }
    if let Some(listening) = agent.link.listening {
        let _ = write!(
            text,
            ", listening on {listening}, agents heard: {}",
            agent.agents_heard.len()
        );
    }
    let dropped: Vec<String> = agent
        .link
        .dropped
        .iter()
        .map(|(reason, n)| format!("{n} {reason}"))
        .collect();
    if !dropped.is_empty() {
        let _ = write!(text, ", messages dropped: {}", dropped.join(", "));
    }
    if let Some(auto) = &agent.auto_relay {
        let _ = write!(
            text,
            ", auto-relay after {}",
            human_duration(auto.after_secs)
        );
    }
    if let Some(book) = &agent.membership {
        let _ = write!(
            text,
            ", membership: {} members and {} removal{} known",
            book.members,
            book.removals,
            if book.removals == 1 { "" } else { "s" }
        );
        let refused: Vec<String> = book
            .records
            .iter()
            .filter(|(what, _)| crate::status::is_refusal(what))
            .map(|(what, n)| format!("{n} {what}"))
            .collect();
        let total: u64 = book
            .records
            .iter()
            .filter(|(what, _)| crate::status::is_refusal(what))
            .map(|(_, n)| n)
            .sum();
        if total > 0 {
            let _ = write!(
                text,
                ", {total} record{} refused ({})",
                if total == 1 { "" } else { "s" },
                refused.join(", ")
            );
        }
    }
    text
}

/// A QR code of `text` in UTF-8 half blocks, with the quiet zone scanners
/// need. Made for the usual dark terminal: dark modules are left blank (the
/// terminal's dark background) and light modules drawn as blocks (its light
/// foreground), so the phone sees dark-on-light as the standard wants.
pub fn qr_code(text: &str) -> Result<String> {
    let code = qrcode::QrCode::new(text.as_bytes())
        .map_err(|e| Error::System(format!("cannot make a QR code of the conf: {e}")))?;
    Ok(code
        .render::<qrcode::render::unicode::Dense1x2>()
        .dark_color(qrcode::render::unicode::Dense1x2::Light)
        .light_color(qrcode::render::unicode::Dense1x2::Dark)
        .quiet_zone(true)
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::words::count;

    #[test]
    fn counts_say_one_or_many() {
        assert_eq!(count(0, "change", "changes"), "0 changes");
        assert_eq!(count(1, "problem", "problems"), "1 problem");
        assert_eq!(count(2, "problem", "problems"), "2 problems");
    }

    #[test]
    fn durations_and_bytes() {
        assert_eq!(human_duration(16), "16s");
        assert_eq!(human_duration(185), "3m 5s");
        assert_eq!(human_duration(7440), "2h 4m");
        assert_eq!(human_duration(90000), "1d 1h");
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 * 1024 * 1024), "5.0 MiB");
    }

    /// A healthy peer row: handshake 2 s ago, keepalive 25, in the config
    /// and live.
    fn ok_peer(name: &str, endpoint: &str, allowed_ips: &[&str]) -> PeerStatus {
        PeerStatus {
            name: Some(name.into()),
            public_key: name.to_uppercase(),
            endpoint: Some(endpoint.into()),
            allowed_ips: allowed_ips.iter().map(|n| (*n).to_string()).collect(),
            latest_handshake_secs_ago: Some(2),
            rx_bytes: Some(1),
            tx_bytes: Some(1),
            keepalive: Some(25),
            preshared_key: false,
            in_config: true,
            live: true,
            health: Health::Ok,
            note: None,
            via: None,
            relay_candidates: vec![],
            auto_relay: None,
        }
    }

    /// The report of an up userspace wg0 with these peers and agent.
    fn report(peers: Vec<PeerStatus>, agent: AgentView) -> StatusReport {
        StatusReport {
            interface: "wg0".into(),
            state: "up",
            backend: Some("userspace"),
            address: None,
            public_key: None,
            listen_port: None,
            notes: vec![],
            peers,
            agent,
        }
    }

    #[test]
    fn table_names_peers_and_notes() {
        let mut report = report(
            vec![PeerStatus {
                latest_handshake_secs_ago: Some(16),
                rx_bytes: Some(2048),
                tx_bytes: Some(10),
                health: Health::Stale,
                note: Some("stale: why".into()),
                ..ok_peer("enterprise", "192.0.2.2:51820", &["10.15.0.2/32"])
            }],
            AgentView::default(),
        );
        report.address = Some("10.15.0.1/24".into());
        report.listen_port = Some(51820);
        let text = status_table(&report, false);
        assert!(
            text.contains("enterprise  192.0.2.2:51820  10.15.0.2/32  16s ago"),
            "{text}"
        );
        assert!(text.contains("2.0 KiB in, 10 B out"));
        assert!(text.contains("STALE"));
        assert!(text.contains("enterprise: stale: why"));
        assert!(text.contains("  agent: not running\n"), "{text}");
        assert!(!text.contains('\x1b'));
    }

    #[test]
    fn the_agent_shows_its_socket_drops_and_introduced_endpoints() {
        use crate::status::{AgentHeardView, LearnedEndpoint, LinkStatus};
        let agent = AgentView {
            running: true,
            pid: Some(7),
            last_pass_secs_ago: Some(3),
            interval_secs: Some(30),
            learned_endpoints: vec![LearnedEndpoint {
                peer: Some("bravo".into()),
                public_key: "B".into(),
                address: "203.0.113.3:51820".parse().unwrap(),
                source: "peer pegasus".into(),
                from: Some("P".into()),
                configured: "203.0.113.250:51820".into(),
                reason: crate::status::Reason::Stale,
                secs_ago: 12,
            }],
            agents_heard: vec![AgentHeardView {
                peer: Some("pegasus".into()),
                public_key: "P".into(),
                secs_ago: 1,
                relay: false,
            }],
            link: LinkStatus {
                listening: Some("10.15.0.2:51871".parse().unwrap()),
                accepted: 9,
                dropped: [("malformed".to_string(), 2)].into_iter().collect(),
            },
            auto_relay: None,
            membership: Some(crate::status::MembershipView {
                members: 11,
                removals: 1,
                records: [("new".to_string(), 30), ("bad_signature".to_string(), 1)]
                    .into_iter()
                    .collect(),
                peers: std::collections::BTreeMap::new(),
            }),
        };
        assert_eq!(
            agent_text(&agent),
            "running (pid 7), last pass 3s ago, a pass every 30 s, listening on 10.15.0.2:51871, agents heard: 1, messages dropped: 2 malformed, membership: 11 members and 1 removal known, 1 record refused (1 bad_signature)"
        );
        let report = report(
            vec![ok_peer("bravo", "203.0.113.3:51820", &["10.15.0.3/32"])],
            agent,
        );
        let text = status_table(&report, false);
        assert!(
            text.contains("  bravo: endpoint 203.0.113.3:51820 set by the agent 12s ago, introduced by peer pegasus (it was stale; the config keeps 203.0.113.250:51820)"),
            "{text}"
        );
    }

    #[test]
    fn the_agent_shows_the_auto_relay_per_peer() {
        use crate::status::{RelayPeerView as PeerView, RelayView as View};
        let peer = |name: &str, state, via: Option<&str>, secs| PeerView {
            peer: Some(name.into()),
            public_key: name.to_uppercase(),
            state,
            via: via.map(str::to_uppercase),
            via_name: via.map(Into::into),
            secs,
        };
        let mut agent = AgentView {
            running: true,
            auto_relay: Some(View {
                after_secs: 120,
                peers: vec![
                    peer("delta", "relayed", Some("alpha"), Some(65)),
                    peer("echo", "stale", None, Some(40)),
                    peer("fox", "pinned", None, None),
                ],
            }),
            ..Default::default()
        };
        assert!(agent_text(&agent).ends_with(", auto-relay after 2m 0s"));
        let report = report(
            vec![ok_peer(
                "alpha",
                "203.0.113.1:51820",
                &["10.15.0.1/32", "10.15.0.4/32"],
            )],
            agent.clone(),
        );
        let text = status_table(&report, false);
        for line in [
            "  delta: auto-relay: relayed via alpha by the agent (1m 5s ago); a direct probe runs, direct again when it makes a handshake\n",
            "  echo: auto-relay: no direct handshake for 40s: the agent relays it after 2m 0s if a relay-enabled peer is healthy\n",
            "  fox: auto-relay: placed by hand with `wgp2p relay`: the agent's auto-relay leaves it alone\n",
        ] {
            assert!(text.contains(line), "{line}\n{text}");
        }
        agent.auto_relay = None;
        assert!(!agent_text(&agent).contains("auto-relay"));
    }
}
