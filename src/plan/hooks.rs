//! The relay hooks: what `relay-enable` adds to the config so that a
//! restart keeps the node relaying, and what it does live. The FORWARD
//! rule and the forwarding switch are each one value here, from which both
//! the config's PostUp/PreDown lines and the live commands are derived.

use crate::config::document::{Document, keys};

/// The comment that marks wgp2p's own hook lines in the config.
pub const MARKER: &str = "wgp2p relay";

/// What to do with the FORWARD rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    Insert,
    Check,
    Delete,
}

/// The iptables arguments of the FORWARD rule from `iface` to itself
/// (`-w`: wait for the xtables lock rather than fail).
pub fn forward_rule(action: Rule, iface: &str) -> Vec<String> {
    let action = match action {
        Rule::Insert => "-I",
        Rule::Check => "-C",
        Rule::Delete => "-D",
    };
    [
        "-w", action, "FORWARD", "-i", iface, "-o", iface, "-j", "ACCEPT",
    ]
    .iter()
    .map(|s| (*s).to_string())
    .collect()
}

/// The interface's own IPv4 forwarding switch (not the host-wide one).
pub fn forwarding_path(iface: &str) -> String {
    format!("/proc/sys/net/ipv4/conf/{iface}/forwarding")
}

/// The switch a new interface starts with.
pub const DEFAULT_FORWARDING: &str = "/proc/sys/net/ipv4/conf/default/forwarding";

/// The hook lines for the config (`%i` is the interface, filled in by
/// wg-quick): PostUp lines and PreDown lines.
pub fn hook_lines(with_firewall: bool) -> (Vec<String>, Vec<String>) {
    let iptables = |action| format!("iptables {}", forward_rule(action, "%i").join(" "));
    let mut post_up = vec![format!("echo 1 > {}", forwarding_path("%i"))];
    let mut pre_down = Vec::new();
    if with_firewall {
        post_up.push(iptables(Rule::Insert));
        pre_down.push(iptables(Rule::Delete));
    }
    (post_up, pre_down)
}

/// The config with the hooks added; `None` when they are already there
/// (or there is no `[Interface]` to add them to).
pub fn enable(doc: &Document, with_firewall: bool) -> Option<Document> {
    if doc.interface().is_none() || doc.interface_has_marked(MARKER) {
        return None;
    }
    let mut new_doc = doc.clone();
    let (post_up, pre_down) = hook_lines(with_firewall);
    for line in &post_up {
        new_doc.append_marked_interface(keys::POST_UP, line, MARKER);
    }
    for line in &pre_down {
        new_doc.append_marked_interface(keys::PRE_DOWN, line, MARKER);
    }
    Some(new_doc)
}

/// Whether the config carries wgp2p's relay hooks.
pub fn enabled(doc: &Document) -> bool {
    doc.interface_has_marked(MARKER)
}

/// The config without wgp2p's hook lines (every other line stays).
pub fn disable(doc: &Document) -> Option<Document> {
    if !doc.interface_has_marked(MARKER) {
        return None;
    }
    let mut new_doc = doc.clone();
    new_doc.remove_marked_interface(MARKER);
    Some(new_doc)
}

/// What `relay-enable` changed live, kept in the `relay-state` file so
/// `relay-disable` undoes exactly that and nothing else.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The interface's forwarding value before (`0` or `1`).
    pub forwarding: String,
    /// Whether the FORWARD rule was there before (an administrator's own).
    pub rule_preexisted: bool,
}

impl Record {
    pub fn render(&self) -> String {
        format!(
            "forwarding = {}\nforward-rule = {}\n",
            self.forwarding,
            if self.rule_preexisted {
                "pre-existing"
            } else {
                "added"
            }
        )
    }

    pub fn parse(text: &str) -> Option<Record> {
        let mut forwarding = None;
        let mut rule = None;
        for line in text.lines() {
            let (key, value) = line.split_once('=')?;
            match (key.trim(), value.trim()) {
                ("forwarding", v @ ("0" | "1")) => forwarding = Some(v.to_string()),
                ("forward-rule", "pre-existing") => rule = Some(true),
                ("forward-rule", "added") => rule = Some(false),
                _ => return None,
            }
        }
        Some(Record {
            forwarding: forwarding?,
            rule_preexisted: rule?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hooks_touch_only_the_interface_and_share_one_rule() {
        let (up, down) = hook_lines(true);
        assert!(up.iter().all(|l| l.contains("%i")) && down.iter().all(|l| l.contains("%i")));
        assert!(!up.join(";").contains("ip_forward") && !up.join(";").contains("/all/"));
        assert_eq!(down, ["iptables -w -D FORWARD -i %i -o %i -j ACCEPT"]);
        assert_eq!(up[1], down[0].replace("-D", "-I"));
        let live = forward_rule(Rule::Delete, "%i").join(" ");
        assert_eq!(format!("iptables {live}"), down[0]);
        let (up, down) = hook_lines(false);
        assert_eq!(up.len(), 1);
        assert!(down.is_empty());
    }

    #[test]
    fn enable_then_disable_gives_the_config_back() {
        let text = "[Interface]\nPrivateKey = x\nPostUp = echo mine\n\n[Peer]\nPublicKey = y\n";
        let doc = Document::parse(text).unwrap();
        let enabled_doc = enable(&doc, true).unwrap();
        assert!(enabled(&enabled_doc) && !enabled(&doc));
        assert!(enable(&enabled_doc, true).is_none());
        assert_eq!(disable(&enabled_doc).unwrap().render(), text);
        assert!(disable(&doc).is_none());
    }

    #[test]
    fn record_round_trips() {
        for (forwarding, rule_preexisted) in [("0", false), ("1", true)] {
            let record = Record {
                forwarding: forwarding.into(),
                rule_preexisted,
            };
            assert_eq!(Record::parse(&record.render()), Some(record));
        }
        assert_eq!(
            Record::parse("forwarding = 2\nforward-rule = added\n"),
            None
        );
        assert_eq!(Record::parse("forwarding = 0\n"), None);
    }
}
