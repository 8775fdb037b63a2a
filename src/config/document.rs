//! A lossless wg-quick config document.
//!
//! The text is kept as a list of lines, each with its original bytes; a line
//! the tool does not change is written back exactly as it was read (CRLF,
//! spacing, case of keys, comments, unknown keys and their order). Only the
//! lines the tool sets are rewritten. Parsing and rendering are pure
//! functions on strings.

use crate::error::Error;

/// A byte range of a line's text, so that classifying a line allocates
/// nothing: a 1000-peer config has some 6000 lines, parsed on every run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span(u32, u32);

/// One line of the file, classified the way wg-quick reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LineKind {
    Blank,
    /// `[Section]`
    Header(Span),
    /// `# Key = value` with a one-word key: wgp2p's own data, kept as a
    /// comment so wg-quick ignores it (`# Name = …`, `# Relay = …`).
    Tag {
        key: Span,
        value: Span,
    },
    /// Any other comment.
    Comment,
    /// `Key = Value` (wg-quick strips everything after `#`).
    KeyValue {
        key: Span,
        value: Span,
    },
    /// A line wg-quick would not understand; kept as written.
    Other,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// The original text without its `\n` (a `\r` of a CRLF file stays here).
    raw: String,
    kind: LineKind,
}

impl Line {
    fn parse(raw: &str) -> Line {
        Line {
            raw: raw.to_string(),
            kind: classify(raw),
        }
    }

    fn at(&self, span: Span) -> &str {
        self.raw
            .get(span.0 as usize..span.1 as usize)
            .unwrap_or_default()
    }

    /// The value when this is `key = value` for `key` (case-insensitive, as wg-quick).
    fn value_of(&self, key: &str) -> Option<&str> {
        match self.kind {
            LineKind::KeyValue { key: k, value } if self.at(k).eq_ignore_ascii_case(key) => {
                Some(self.at(value))
            }
            _ => None,
        }
    }

    /// `(key, value)` of a `# Key = value` tag line.
    fn tag(&self) -> Option<(&str, &str)> {
        match self.kind {
            LineKind::Tag { key, value } => Some((self.at(key), self.at(value))),
            _ => None,
        }
    }

    fn is_tag(&self, key: &str) -> bool {
        self.tag().is_some_and(|(k, _)| k == key)
    }
}

/// The comment keys wgp2p reads and writes.
pub const TAGS: [&str; 3] = ["Name", "Relay", "Source"];

/// Classify a line; the spans point into `raw`.
fn classify(raw: &str) -> LineKind {
    // `part` is always a subslice of `raw`, so the offsets are in range.
    let span = |part: &str| {
        let start = part.as_ptr() as usize - raw.as_ptr() as usize;
        Span(start as u32, (start + part.len()) as u32)
    };
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return LineKind::Blank;
    }
    if let Some(comment) = trimmed.strip_prefix('#') {
        if let Some((key, value)) = comment.split_once('=')
            && TAGS.contains(&key.trim())
        {
            return LineKind::Tag {
                key: span(key.trim()),
                value: span(value.trim()),
            };
        }
        return LineKind::Comment;
    }
    if let Some(name) = trimmed.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        return LineKind::Header(span(name.trim()));
    }
    // wg-quick drops everything from the first '#'.
    let content = trimmed.split('#').next().unwrap_or("").trim();
    match content.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => LineKind::KeyValue {
            key: span(key.trim()),
            value: span(value.trim()),
        },
        _ => LineKind::Other,
    }
}

/// A section: its header line (none for the lines before the first
/// header) and the lines up to the next header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Section {
    header: Option<Line>,
    lines: Vec<Line>,
}

impl Section {
    pub fn name(&self) -> Option<&str> {
        let header = self.header.as_ref()?;
        match header.kind {
            LineKind::Header(name) => Some(header.at(name)),
            _ => None,
        }
    }

    pub fn is(&self, name: &str) -> bool {
        self.name().is_some_and(|n| n.eq_ignore_ascii_case(name))
    }

    /// The first value of `key` in this section.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.lines.iter().find_map(|l| l.value_of(key))
    }

    /// Every value of `key` (wg-quick allows repeated AllowedIPs/Address lines).
    pub fn get_all(&self, key: &str) -> Vec<&str> {
        self.lines.iter().filter_map(|l| l.value_of(key)).collect()
    }

    /// The `# Name = …` comment of this section.
    pub fn peer_name(&self) -> Option<&str> {
        self.tags("Name").into_iter().next()
    }

    /// Every value of the `# key = …` comments of this section.
    pub fn tags(&self, key: &str) -> Vec<&str> {
        self.lines
            .iter()
            .filter_map(|l| l.tag().filter(|(k, _)| *k == key).map(|(_, v)| v))
            .collect()
    }
}

/// The whole file: sections in order, plus how lines end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Document {
    sections: Vec<Section>,
    /// Line ending for lines the tool writes: "\r\n" when the file uses CRLF.
    crlf: bool,
    /// Whether the original text ended with a newline.
    final_newline: bool,
}

impl Document {
    /// Parse a config. Only text that is not a config at all is refused:
    /// NUL bytes (a binary file) and lines over 64 KiB.
    pub fn parse(text: &str) -> Result<Document, Error> {
        if let Some(pos) = text.find('\0') {
            return Err(Error::BadConfig(format!(
                "config has a NUL byte at offset {pos}: expected a text wg-quick config"
            )));
        }
        let body = text.strip_suffix('\n');
        let final_newline = body.is_some() || text.is_empty();
        let body = body.unwrap_or(text);
        let mut doc = Document {
            sections: vec![Section {
                header: None,
                lines: Vec::new(),
            }],
            crlf: text.contains("\r\n"),
            final_newline,
        };
        if text.is_empty() {
            return Ok(doc);
        }
        for (index, raw) in body.split('\n').enumerate() {
            if raw.len() > 65536 {
                return Err(Error::BadConfig(format!(
                    "config line {} is {} bytes long: expected a wg-quick config line",
                    index + 1,
                    raw.len()
                )));
            }
            let line = Line::parse(raw);
            if matches!(line.kind, LineKind::Header(_)) {
                doc.sections.push(Section {
                    header: Some(line),
                    lines: Vec::new(),
                });
            } else if let Some(section) = doc.sections.last_mut() {
                section.lines.push(line);
            }
        }
        Ok(doc)
    }

    /// Render back to text; untouched lines come back byte for byte.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut first = true;
        for section in &self.sections {
            for line in section.header.iter().chain(&section.lines) {
                if !first {
                    out.push('\n');
                }
                first = false;
                out.push_str(&line.raw);
            }
        }
        if self.final_newline && !first {
            out.push('\n');
        }
        out
    }

    pub fn section(&self, index: usize) -> Option<&Section> {
        self.sections.get(index)
    }

    pub fn interface(&self) -> Option<&Section> {
        self.sections.iter().find(|s| s.is("Interface"))
    }

    pub fn peer_sections(&self) -> impl Iterator<Item = (usize, &Section)> {
        self.sections
            .iter()
            .enumerate()
            .filter(|(_, s)| s.is("Peer"))
    }

    fn new_line(&self, text: String) -> Line {
        let raw = if self.crlf { format!("{text}\r") } else { text };
        Line::parse(&raw)
    }

    /// Index of the [Interface] section, created (at the top, before any
    /// peer) when missing.
    fn interface_index(&mut self) -> usize {
        if let Some(i) = self.sections.iter().position(|s| s.is("Interface")) {
            return i;
        }
        let header = self.new_line("[Interface]".into());
        let at = 1.min(self.sections.len());
        self.sections.insert(
            at,
            Section {
                header: Some(header),
                lines: Vec::new(),
            },
        );
        self.final_newline = true;
        at
    }

    /// Set `key = value` in section `index`: the first line with that key
    /// is replaced, later duplicates removed; a new key goes after the last
    /// key line of the section.
    pub fn set_in(&mut self, index: usize, key: &str, value: &str) {
        let line = self.new_line(format!("{key} = {value}"));
        let Some(section) = self.sections.get_mut(index) else {
            return;
        };
        let mut found = false;
        section.lines.retain_mut(|l| {
            if l.value_of(key).is_none() {
                return true;
            }
            if found {
                return false;
            }
            found = true;
            if l.value_of(key) != Some(value) {
                *l = line.clone();
            }
            true
        });
        if !found {
            let at = last_content_line(section).map_or(0, |i| i + 1);
            section.lines.insert(at, line);
        }
    }

    /// Append `key = value # marker` to section `index`, beside any other
    /// `key` lines (PostUp may repeat; each runs in order). wg-quick drops
    /// the comment, wgp2p finds its own lines by it.
    pub fn append_marked(&mut self, index: usize, key: &str, value: &str, marker: &str) {
        let line = self.new_line(format!("{key} = {value} # {marker}"));
        if let Some(section) = self.sections.get_mut(index) {
            let at = last_content_line(section).map_or(0, |i| i + 1);
            section.lines.insert(at, line);
        }
    }

    /// Remove the lines of section `index` that end with `# marker`.
    pub fn remove_marked(&mut self, index: usize, marker: &str) {
        let suffix = format!("# {marker}");
        if let Some(section) = self.sections.get_mut(index) {
            section
                .lines
                .retain(|l| !l.raw.trim_end().ends_with(&suffix));
        }
    }

    /// Whether section `index` has a line ending with `# marker`.
    pub fn has_marked(&self, index: usize, marker: &str) -> bool {
        let suffix = format!("# {marker}");
        self.sections
            .get(index)
            .is_some_and(|s| s.lines.iter().any(|l| l.raw.trim_end().ends_with(&suffix)))
    }

    /// Index of the `[Interface]` section, if any.
    pub fn interface_position(&self) -> Option<usize> {
        self.sections.iter().position(|s| s.is("Interface"))
    }

    /// Remove every `key` line from section `index`.
    pub fn remove_in(&mut self, index: usize, key: &str) {
        if let Some(section) = self.sections.get_mut(index) {
            section.lines.retain(|l| l.value_of(key).is_none());
        }
    }

    pub fn set_interface(&mut self, key: &str, value: &str) {
        let index = self.interface_index();
        self.set_in(index, key, value);
    }

    pub fn remove_interface(&mut self, key: &str) {
        if let Some(i) = self.sections.iter().position(|s| s.is("Interface")) {
            self.remove_in(i, key);
        }
    }

    /// Set (or add) the `# Name = …` line of a peer section, right after its header.
    pub fn set_name(&mut self, index: usize, name: &str) {
        let line = self.new_line(format!("# Name = {name}"));
        let Some(section) = self.sections.get_mut(index) else {
            return;
        };
        match section.lines.iter().position(|l| l.is_tag("Name")) {
            Some(i) if section.lines[i].tag() == line.tag() => {}
            Some(i) => section.lines[i] = line,
            None => section.lines.insert(0, line),
        }
    }

    /// Add a `# key = value` line after the last content line of a section.
    pub fn add_tag(&mut self, index: usize, key: &str, value: &str) {
        let line = self.new_line(format!("# {key} = {value}"));
        if let Some(section) = self.sections.get_mut(index) {
            let at = last_content_line(section).map_or(0, |i| i + 1);
            section.lines.insert(at, line);
        }
    }

    /// Remove the `# key = value` lines of a section for which `drop` is true.
    pub fn remove_tags(&mut self, index: usize, key: &str, drop: impl Fn(&str) -> bool) {
        if let Some(section) = self.sections.get_mut(index) {
            section.lines.retain(|l| match l.tag() {
                Some((k, value)) if k == key => !drop(value),
                _ => true,
            });
        }
    }

    /// Append a new, empty `[Peer]` section separated by a blank line and
    /// return its index.
    pub fn append_peer(&mut self) -> usize {
        let blank = self.new_line(String::new());
        if let Some(last) = self.sections.last_mut() {
            // Trailing blank lines of the previous section are kept; add
            // one only when there is none, so the file stays tidy.
            let ends_blank = last.lines.last().is_some_and(|l| l.kind == LineKind::Blank);
            let empty = last.header.is_none() && last.lines.is_empty();
            if !ends_blank && !empty {
                last.lines.push(blank);
            }
        }
        let header = self.new_line("[Peer]".into());
        self.sections.push(Section {
            header: Some(header),
            lines: Vec::new(),
        });
        self.final_newline = true;
        self.sections.len() - 1
    }

    /// Remove section `index`; when it was the last one, blank lines left
    /// dangling at the end of the file go too.
    pub fn remove_section(&mut self, index: usize) {
        if index >= self.sections.len() || self.sections[index].header.is_none() {
            return;
        }
        self.sections.remove(index);
        if index == self.sections.len()
            && let Some(last) = self.sections.last_mut()
        {
            while last.lines.last().is_some_and(|l| l.kind == LineKind::Blank) {
                last.lines.pop();
            }
        }
    }
}

fn last_content_line(section: &Section) -> Option<usize> {
    section
        .lines
        .iter()
        .rposition(|l| matches!(l.kind, LineKind::KeyValue { .. } | LineKind::Tag { .. }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(text: &str) {
        let doc = Document::parse(text).unwrap();
        assert_eq!(doc.render(), text);
    }

    const SCRIPT_CONF: &str = "[Interface]\nAddress = 10.15.0.1/24\nSaveConfig = true\nListenPort = 51820\nPrivateKey = SGb+ojrRNDuMePufwtIYhXzA//k6wF3R21tEBgKlzlM=\n\n[Peer]\nPublicKey = DD5yKRfzExcV5+kDnTroDgCU15latdMjiQ59j1hEuk8=\nAllowedIPs = 10.15.0.2/32\nEndpoint = 192.0.2.2:51820\nPersistentKeepalive = 25\n";

    #[test]
    fn round_trips_real_world_configs() {
        round_trip(SCRIPT_CONF);
        round_trip("");
        round_trip("\n\n");
        round_trip(
            "[Interface]\r\nAddress = fd00:15::1/64, 10.15.0.1/24\r\nDNS = 1.1.1.1\r\nMTU = 1420\r\nPostUp = iptables -A FORWARD -i %i -j ACCEPT; echo hi # trailing\r\n\r\n[Peer]\r\n# Name = laptop\r\nPublicKey = DD5yKRfzExcV5+kDnTroDgCU15latdMjiQ59j1hEuk8=\r\nAllowedIPs = 10.15.0.2/32, 192.168.7.0/24\r\nAllowedIPs = fd00:15::2/128\r\nEndpoint = [2001:db8::2]:51820\r\n",
        );
        round_trip(
            "# top comment\n  [Interface]  \n  address=10.0.0.1/24   \nTable = off\nweird line without equals\n[Peer]\nPublicKey=abc",
        );
    }

    #[test]
    fn reads_sections_and_names() {
        let doc = Document::parse("[Interface]\nPrivateKey = x\n[Peer]\n# Name = laptop\npublickey = K\nAllowedIPs = 10.0.0.2/32\nAllowedIPs = 10.0.1.0/24\n").unwrap();
        assert_eq!(doc.interface().unwrap().get("privatekey"), Some("x"));
        let (_, peer) = doc.peer_sections().next().unwrap();
        assert_eq!(peer.peer_name(), Some("laptop"));
        assert_eq!(peer.get("PublicKey"), Some("K"));
        assert_eq!(
            peer.get_all("AllowedIPs"),
            vec!["10.0.0.2/32", "10.0.1.0/24"]
        );
    }

    #[test]
    fn edits_touch_only_their_lines() {
        let mut doc = Document::parse(SCRIPT_CONF).unwrap();
        doc.remove_interface("SaveConfig");
        doc.set_interface("ListenPort", "51821");
        doc.set_interface("ListenPort", "51821");
        let (index, _) = doc.peer_sections().next().unwrap();
        doc.set_name(index, "enterprise");
        let text = doc.render();
        assert!(!text.contains("SaveConfig"));
        assert!(text.contains("ListenPort = 51821\n"));
        assert!(text.contains("[Peer]\n# Name = enterprise\nPublicKey = DD5y"));
        assert_eq!(text.lines().count(), SCRIPT_CONF.lines().count());
    }

    #[test]
    fn appends_and_removes_peers() {
        let mut doc = Document::parse(SCRIPT_CONF).unwrap();
        let index = doc.append_peer();
        doc.set_name(index, "voyager");
        doc.set_in(index, "PublicKey", "K2");
        doc.set_in(index, "AllowedIPs", "10.15.0.3/32");
        let text = doc.render();
        assert!(text.ends_with("PersistentKeepalive = 25\n\n[Peer]\n# Name = voyager\nPublicKey = K2\nAllowedIPs = 10.15.0.3/32\n"), "{text}");
        doc.remove_section(index);
        assert_eq!(doc.render(), SCRIPT_CONF);
    }

    #[test]
    fn tags_are_added_read_and_removed() {
        let mut doc =
            Document::parse("[Peer]\n# Name = relay\nPublicKey = K\n# a comment\n").unwrap();
        doc.add_tag(1, "Relay", "a K1 192.0.2.1:1 10.0.0.5/32");
        doc.add_tag(1, "Relay", "b K2 192.0.2.2:1 10.0.0.6/32");
        assert_eq!(
            doc.render(),
            "[Peer]\n# Name = relay\nPublicKey = K\n# Relay = a K1 192.0.2.1:1 10.0.0.5/32\n# Relay = b K2 192.0.2.2:1 10.0.0.6/32\n# a comment\n"
        );
        let section = doc.peer_sections().next().unwrap().1;
        assert_eq!(section.tags("Relay").len(), 2);
        doc.remove_tags(1, "Relay", |v| v.starts_with("a "));
        assert!(!doc.render().contains("Relay = a"));
        assert!(doc.render().contains("Relay = b"));
    }

    #[test]
    fn marked_lines_are_found_by_their_comment() {
        let mut doc = Document::parse("[Interface]\nPostUp = echo mine\n").unwrap();
        doc.append_marked(1, "PostUp", "sysctl x", "wgp2p relay");
        assert_eq!(
            doc.render(),
            "[Interface]\nPostUp = echo mine\nPostUp = sysctl x # wgp2p relay\n"
        );
        assert!(doc.has_marked(1, "wgp2p relay"));
        assert_eq!(
            doc.interface().unwrap().get_all("PostUp"),
            ["echo mine", "sysctl x"]
        );
        doc.remove_marked(1, "wgp2p relay");
        assert_eq!(doc.render(), "[Interface]\nPostUp = echo mine\n");
    }

    #[test]
    fn new_lines_follow_crlf() {
        let mut doc = Document::parse("[Interface]\r\nAddress = 10.0.0.1/24\r\n").unwrap();
        doc.set_interface("ListenPort", "1");
        assert_eq!(
            doc.render(),
            "[Interface]\r\nAddress = 10.0.0.1/24\r\nListenPort = 1\r\n"
        );
    }

    #[test]
    fn creates_interface_in_empty_file() {
        let mut doc = Document::parse("").unwrap();
        doc.set_interface("Address", "10.0.0.1/24");
        assert_eq!(doc.render(), "[Interface]\nAddress = 10.0.0.1/24\n");
    }

    #[test]
    fn refuses_binary() {
        assert!(Document::parse("[Interface]\0").is_err());
        assert!(Document::parse(&"x".repeat(70000)).is_err());
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    /// Lines that look like wg-quick configs, plus arbitrary noise.
    fn config_line() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("[Interface]".to_string()),
            Just("[Peer]".to_string()),
            Just(String::new()),
            "[A-Za-z]{1,12} ?= ?[ -~]{0,40}",
            "# ?Name ?= ?[ -~]{0,20}",
            "#[ -~]{0,30}",
            "[ -~\t\r]{0,60}",
            "\\PC{0,20}",
        ]
    }

    fn config_text() -> impl Strategy<Value = String> {
        (
            prop::collection::vec(config_line(), 0..30),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(lines, crlf, final_newline)| {
                let eol = if crlf { "\r\n" } else { "\n" };
                let mut text = lines.join(eol);
                if final_newline {
                    text.push_str(eol);
                }
                text
            })
    }

    proptest! {
        #[test]
        fn parse_render_is_lossless(text in config_text()) {
            let doc = Document::parse(&text).unwrap();
            prop_assert_eq!(doc.render(), text);
        }

        #[test]
        fn edits_round_trip(text in config_text(), value in "[A-Za-z0-9+/=.:, ]{0,30}") {
            let mut doc = Document::parse(&text).unwrap();
            doc.set_interface("ListenPort", value.trim());
            let index = doc.append_peer();
            doc.set_name(index, "fuzz");
            doc.set_in(index, "PublicKey", value.trim());
            let rendered = doc.render();
            let again = Document::parse(&rendered).unwrap();
            // Parsing what we wrote gives back the same document.
            prop_assert_eq!(again.render(), rendered);
            prop_assert_eq!(again.interface().and_then(|s| s.get("ListenPort")), Some(value.trim()));
            doc.remove_section(index);
            prop_assert!(!doc.render().contains("# Name = fuzz"));
        }

        #[test]
        fn never_panics_on_any_text(text in "\\PC{0,200}") {
            let _ = Document::parse(&text);
        }
    }
}
