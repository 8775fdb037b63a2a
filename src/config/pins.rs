//! `relay-pins` in the config dir: the peers a human placed with `wgp2p
//! relay`, which `agent --auto-relay` never moves. One public key per line;
//! the rest of a line, and a line whose first word is not a key, are
//! comments.

use std::collections::BTreeSet;

use super::node::{Paths, RELAY_PINS};
use crate::types::PublicKey;

/// The pinned peers' keys in the file's text.
pub fn parse(text: &str) -> BTreeSet<PublicKey> {
    text.lines()
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect()
}

/// The file's text with `key` added (`name` as a comment); the same text
/// when it is there already.
pub fn add(text: &str, key: &PublicKey, name: &str) -> String {
    if parse(text).contains(key) {
        return text.to_string();
    }
    let mut out = if text.is_empty() {
        "# Peers placed by hand with `wgp2p relay`: `wgp2p agent --auto-relay` never moves them.\n# Delete a line to let the agent look after that peer again.\n".to_string()
    } else {
        text.to_string()
    };
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&key.to_string());
    out.push(' ');
    out.extend(name.chars().filter(|c| !c.is_control()));
    out.push('\n');
    out
}

/// The pinned peers of the node at `paths` (none when the file is missing
/// or unreadable).
pub fn read(paths: &Paths) -> BTreeSet<PublicKey> {
    std::fs::read_to_string(paths.dir.join(RELAY_PINS))
        .map(|t| parse(&t))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_file() {
        let a: PublicKey = crate::plan::fixtures::KEY_A.parse().unwrap();
        let b: PublicKey = crate::plan::fixtures::KEY_B.parse().unwrap();
        let text = add("", &b, "bob");
        assert!(text.starts_with("# "), "{text}");
        assert!(text.ends_with(&format!("{b} bob\n")), "{text}");
        assert_eq!(add(&text, &b, "bob"), text);
        let text = add(&text, &a, "a\nb");
        assert_eq!(parse(&text), [a, b].into());
        assert_eq!(parse("garbage\n# x\n"), BTreeSet::new());
    }
}
