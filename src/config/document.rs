//! A lossless wg-quick config document, read the way wg(8) and wg-quick
//! read it.
//!
//! The text is kept as a list of lines, each with its original bytes; a line
//! the tool does not change is written back exactly as it was read (CRLF,
//! spacing, case of keys, comments, unknown keys and their order). Only the
//! lines the tool sets are rewritten. Parsing and rendering are pure
//! functions on strings.
//!
//! How a line is read (wireguard-tools `src/config.c` for wg(8),
//! `src/wg-quick/linux.bash` for wg-quick):
//! - A `#` starts a comment anywhere on a line, also after a section
//!   header: `[Peer] # laptop` is a `[Peer]` header.
//! - wg(8) deletes every whitespace character of a line before reading
//!   it, then compares keys and section names case-insensitively: `public
//!   key=…` and `[ peer ]` are what it reads as `PublicKey=…` and `[Peer]`.
//! - wg-quick first takes its own keys (`Address`, `DNS`, `MTU`, `Table`,
//!   `PreUp`, `PostUp`, `PreDown`, `PostDown`, `SaveConfig`) out of a section
//!   whose header is exactly `[Interface]` (case-insensitive, surrounding
//!   whitespace and comment ignored), trimming the whitespace around key and
//!   value, and hands every other line to wg(8) unchanged.
//! - The wg-quick the tests run (v1.0.20210914) also drops the text after
//!   `#` from hook commands; other versions keep a `#` inside them. wgp2p
//!   never reads or rewrites a hook line other than its own marked ones, so
//!   either reading keeps them intact.
//!
//! A peer section owns the comment block directly above its header
//! (comment lines with no blank line between them and the header, such as
//! a PiVPN `### begin NAME ###` marker or a web UI's `# Client: NAME`
//! label): removing the peer removes them, and they never label a
//! neighbour. A PiVPN `### end NAME ###` line closes the section above it,
//! and wgp2p's own tag lines (`# Name = …`) stay in the section they follow.
//!
//! Edits address sections by identity (the `[Interface]`, or a peer's
//! public key), never by a position that shifts under other edits.

use std::cell::RefCell;
use std::collections::HashMap;

use crate::error::Error;
use crate::types::{PublicKey, quoted_prefix};

/// The keys wgp2p reads or writes, spelled as wg-quick documents them.
/// Lookups are case-insensitive and ignore whitespace, as wg(8)'s are.
pub mod keys {
    pub const ADDRESS: &str = "Address";
    pub const LISTEN_PORT: &str = "ListenPort";
    pub const PRIVATE_KEY: &str = "PrivateKey";
    pub const FW_MARK: &str = "FwMark";
    pub const SAVE_CONFIG: &str = "SaveConfig";
    pub const POST_UP: &str = "PostUp";
    pub const PRE_DOWN: &str = "PreDown";
    pub const PUBLIC_KEY: &str = "PublicKey";
    pub const PRESHARED_KEY: &str = "PresharedKey";
    pub const ENDPOINT: &str = "Endpoint";
    pub const ALLOWED_IPS: &str = "AllowedIPs";
    pub const PERSISTENT_KEEPALIVE: &str = "PersistentKeepalive";
    /// The keys wg-quick takes out of `[Interface]` before wg(8) reads it.
    pub const WG_QUICK_ONLY: [&str; 9] = [
        "Address",
        "DNS",
        "MTU",
        "Table",
        "PreUp",
        "PostUp",
        "PreDown",
        "PostDown",
        "SaveConfig",
    ];
    /// The tag of a peer's name: `# Name = …`.
    pub const TAG_NAME: &str = "Name";
    /// The tag of a peer reached through this one: `# Relay = …`.
    pub const TAG_RELAY: &str = "Relay";
    /// The tag of where a peer came from: `# Source = roster` (a roster
    /// sync manages it), `# Source = introduced by NAME` (the agent added
    /// it from a member's introduction).
    pub const TAG_SOURCE: &str = "Source";
    /// `[Interface]`: `# AcceptIntroductions = true` lets the agent add
    /// and remove peers that members introduce.
    pub const TAG_ACCEPT_INTRODUCTIONS: &str = "AcceptIntroductions";
    /// `[Interface]`: `# Trust = KEY NAME`, a member whose introductions
    /// are accepted (when any is written, only theirs).
    pub const TAG_TRUST: &str = "Trust";
}

/// The comment keys wgp2p reads and writes (`# Key = value` lines).
pub const TAGS: [&str; 5] = [
    keys::TAG_NAME,
    keys::TAG_RELAY,
    keys::TAG_SOURCE,
    keys::TAG_ACCEPT_INTRODUCTIONS,
    keys::TAG_TRUST,
];

/// What wg(8) and the C locale's `isspace` call whitespace.
pub fn is_wg_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}

/// `a == b` the way wg(8) compares keys: case-insensitive, whitespace ignored.
pub fn wg_key_eq(a: &str, b: &str) -> bool {
    let mut a = a.chars().filter(|c| !is_wg_space(*c));
    let mut b = b.chars().filter(|c| !is_wg_space(*c));
    loop {
        match (a.next(), b.next()) {
            (None, None) => return true,
            (Some(x), Some(y)) if x.eq_ignore_ascii_case(&y) => {}
            _ => return false,
        }
    }
}

/// A byte range of a line's text, so that classifying a line allocates
/// nothing: a 1000-peer config has some 6000 lines, parsed on every run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span(u32, u32);

/// What a section header names, as wg(8) reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SectionKind {
    /// The lines before the first header.
    Preamble,
    /// `[Interface]`. `spaced` when the header has whitespace inside the
    /// brackets (`[ Interface ]`): wg(8) reads it, wg-quick does not, so
    /// wg-quick's own keys in it reach wg(8), which refuses them.
    Interface {
        spaced: bool,
    },
    Peer,
    /// Any other `[…]`: wg(8) refuses it.
    Unknown,
}

/// One line of the file, classified the way wg-quick reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LineKind {
    Blank,
    /// `[Section]`, maybe followed by a comment.
    Header(SectionKind),
    /// `# Key = value` with a key of [`TAGS`]: wgp2p's own data, kept as
    /// a comment so wg-quick ignores it (`# Name = …`, `# Relay = …`).
    Tag {
        key: Span,
        value: Span,
    },
    /// Any other comment.
    Comment,
    /// `Key = Value`, maybe followed by a comment; the spans are trimmed.
    KeyValue {
        key: Span,
        value: Span,
    },
    /// Text wg(8) would not understand (no `=`); kept as written.
    Other,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// The original text without its `\n` (a `\r` of a CRLF file stays here).
    raw: String,
    kind: LineKind,
    /// 1-based line number in the file as read; 0 for a line wgp2p made.
    number: u32,
}

impl Line {
    fn parse(raw: &str, number: u32) -> Line {
        Line {
            raw: raw.to_string(),
            kind: classify(raw),
            number,
        }
    }

    fn at(&self, span: Span) -> &str {
        self.raw
            .get(span.0 as usize..span.1 as usize)
            .unwrap_or_default()
    }

    /// The value when this is `key = value` for `key` (case-insensitive,
    /// whitespace in the key ignored, as wg(8) compares).
    fn value_of(&self, key: &str) -> Option<&str> {
        match self.kind {
            LineKind::KeyValue { key: k, value } if wg_key_eq(self.at(k), key) => {
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

    fn is_blank(&self) -> bool {
        self.kind == LineKind::Blank
    }

    /// Whether this comment line may be part of the block that labels the
    /// section below it: a plain comment, not a tag of wgp2p's, and not a
    /// PiVPN `### end NAME ###` marker (which closes the section above).
    fn can_lead(&self) -> bool {
        self.kind == LineKind::Comment && !self.raw.trim_start().starts_with("### end ")
    }
}

/// A line as the user wrote it, for an error: its number and a short,
/// escaped prefix of its text.
pub struct Where<'a> {
    pub number: u32,
    pub text: &'a str,
}

impl std::fmt::Display for Where<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match secret_key(self.text) {
            // A private or preshared key is never printed, not even in part.
            Some(key) => write!(
                f,
                "line {} {} (its value not shown: a secret)",
                self.number,
                quoted_prefix(&format!("{key} = …"))
            ),
            None => write!(f, "line {} {}", self.number, quoted_prefix(self.text)),
        }
    }
}

/// The key of a `PrivateKey = …` or `PresharedKey = …` line, as written.
fn secret_key(text: &str) -> Option<&str> {
    let (key, _) = text.split('#').next()?.split_once('=')?;
    let key = key.trim_matches(is_wg_space);
    (wg_key_eq(key, keys::PRIVATE_KEY) || wg_key_eq(key, keys::PRESHARED_KEY)).then_some(key)
}

/// Classify a line; the spans point into `raw`.
fn classify(raw: &str) -> LineKind {
    // `part` is always a subslice of `raw`, so the offsets are in range.
    #[allow(
        clippy::cast_possible_truncation,
        reason = "a line is at most 65536 bytes (Document::parse refuses longer ones)"
    )]
    let span = |part: &str| {
        let start = part.as_ptr() as usize - raw.as_ptr() as usize;
        Span(start as u32, (start + part.len()) as u32)
    };
    let content = raw.split('#').next().unwrap_or("");
    let trimmed = content.trim_matches(is_wg_space);
    if trimmed.is_empty() {
        let comment = raw.trim_matches(is_wg_space);
        let Some(comment) = comment.strip_prefix('#') else {
            return LineKind::Blank;
        };
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
    if trimmed.starts_with('[') && !trimmed.contains('=') {
        let squeezed: String = trimmed.chars().filter(|c| !is_wg_space(*c)).collect();
        let kind = if squeezed.eq_ignore_ascii_case("[Interface]") {
            SectionKind::Interface {
                spaced: !trimmed.eq_ignore_ascii_case("[Interface]"),
            }
        } else if squeezed.eq_ignore_ascii_case("[Peer]") {
            SectionKind::Peer
        } else {
            SectionKind::Unknown
        };
        return LineKind::Header(kind);
    }
    match trimmed.split_once('=') {
        Some((key, value)) => LineKind::KeyValue {
            key: span(key.trim_matches(is_wg_space)),
            value: span(value.trim_matches(is_wg_space)),
        },
        None => LineKind::Other,
    }
}

/// A section: the comment block directly above its header, its header
/// line (none for the lines before the first header), and the lines up to
/// the next section's block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Section {
    lead: Vec<Line>,
    header: Option<Line>,
    lines: Vec<Line>,
    /// The key of its `PublicKey` line, kept so that finding a peer costs
    /// no base64 decoding (a sync plans thousands of peers).
    key: Option<PublicKey>,
}

impl Section {
    pub fn kind(&self) -> SectionKind {
        match self.header.as_ref().map(|h| h.kind) {
            Some(LineKind::Header(kind)) => kind,
            _ => SectionKind::Preamble,
        }
    }

    pub fn is_interface(&self) -> bool {
        matches!(self.kind(), SectionKind::Interface { .. })
    }

    pub fn is_peer(&self) -> bool {
        self.kind() == SectionKind::Peer
    }

    /// The header line, for errors.
    pub fn header_at(&self) -> Where<'_> {
        match &self.header {
            Some(h) => Where {
                number: h.number,
                text: h.raw.trim_end_matches('\r'),
            },
            None => Where {
                number: 1,
                text: "",
            },
        }
    }

    /// The last value of `key`: what wg(8) keeps when a key repeats.
    /// The key of its `PublicKey` line (a `[Peer]`'s identity).
    pub fn public_key(&self) -> Option<PublicKey> {
        self.key
    }

    pub fn get_last(&self, key: &str) -> Option<&str> {
        self.lines.iter().rev().find_map(|l| l.value_of(key))
    }

    /// Every value of `key` (wg-quick allows repeated AllowedIPs/Address lines).
    pub fn get_all(&self, key: &str) -> Vec<&str> {
        self.lines.iter().filter_map(|l| l.value_of(key)).collect()
    }

    /// Every `key = value` line of the section, with where it is: what
    /// wg(8) is given.
    pub fn key_values(&self) -> impl Iterator<Item = (&str, &str, Where<'_>)> {
        self.lines.iter().filter_map(|l| match l.kind {
            LineKind::KeyValue { key, value } => Some((
                l.at(key),
                l.at(value),
                Where {
                    number: l.number,
                    text: l.raw.trim_end_matches('\r'),
                },
            )),
            _ => None,
        })
    }

    /// Lines wg(8) would not read (text without `=` and not a header).
    pub fn others(&self) -> impl Iterator<Item = Where<'_>> {
        self.lines
            .iter()
            .filter(|l| l.kind == LineKind::Other)
            .map(|l| Where {
                number: l.number,
                text: l.raw.trim_end_matches('\r'),
            })
    }

    /// The `# Name = …` comment of this section.
    pub fn peer_name(&self) -> Option<&str> {
        self.tags(keys::TAG_NAME).into_iter().next()
    }

    /// Every value of the `# key = …` comments of this section.
    pub fn tags(&self, key: &str) -> Vec<&str> {
        self.lines
            .iter()
            .filter_map(|l| l.tag().filter(|(k, _)| *k == key).map(|(_, v)| v))
            .collect()
    }

    /// As `tags`, with where each line is (for an error).
    pub fn tags_at(&self, key: &str) -> Vec<(&str, Where<'_>)> {
        self.lines
            .iter()
            .filter_map(|l| {
                l.tag().filter(|(k, _)| *k == key).map(|(_, v)| {
                    (
                        v,
                        Where {
                            number: l.number,
                            text: l.raw.trim_end_matches('\r'),
                        },
                    )
                })
            })
            .collect()
    }

    /// The public key this section's `PublicKey` line names, if valid.
    fn read_public_key(&self) -> Option<PublicKey> {
        if !self.is_peer() {
            return None;
        }
        let text: String = self
            .get_last(keys::PUBLIC_KEY)?
            .chars()
            .filter(|c| !is_wg_space(*c))
            .collect();
        text.parse().ok()
    }

    /// The section's own text: its comment block, header and lines, without
    /// the blank lines that separate it from the next section.
    pub fn block_text(&self) -> String {
        let body_end = self
            .lines
            .iter()
            .rposition(|l| !l.is_blank())
            .map_or(0, |i| i + 1);
        let lines: Vec<&str> = self
            .lead
            .iter()
            .chain(&self.header)
            .chain(&self.lines[..body_end])
            .map(|l| l.raw.as_str())
            .collect();
        lines.join("\n")
    }

    fn trailing_blanks(&self) -> usize {
        self.lines.iter().rev().take_while(|l| l.is_blank()).count()
    }
}

/// The whole file: sections in order, plus how lines end.
#[derive(Clone, Debug)]
pub struct Document {
    sections: Vec<Section>,
    /// Line ending for lines the tool writes: "\r\n" when the file uses CRLF.
    crlf: bool,
    /// Whether the original text ended with a newline.
    final_newline: bool,
    /// The file the text came from, for error messages.
    origin: String,
    /// Section index by peer key (the first section of a key), built on
    /// the first lookup and kept up to date by appends; any other change
    /// of the section list drops it. Not part of the document's value.
    by_key: RefCell<Option<HashMap<PublicKey, usize>>>,
}

impl PartialEq for Document {
    fn eq(&self, other: &Self) -> bool {
        self.sections == other.sections
            && self.crlf == other.crlf
            && self.final_newline == other.final_newline
            && self.origin == other.origin
    }
}

impl Eq for Document {}

impl Document {
    /// Parse a config. Only text that is not a config at all is refused:
    /// NUL bytes (a binary file) and lines over 64 KiB. What wg(8) would
    /// refuse is found by the typed view (`config::node::peers`), which
    /// names the line.
    pub fn parse(text: &str) -> Result<Document, Error> {
        Self::parse_named(text, "config")
    }

    /// Parse a config read from `origin` (a path), named in errors.
    pub fn parse_named(text: &str, origin: &str) -> Result<Document, Error> {
        if let Some(pos) = text.find('\0') {
            let number = text[..pos].matches('\n').count() + 1;
            return Err(Error::BadConfig(format!(
                "{origin}: line {number} has a NUL byte: expected a text wg-quick config"
            )));
        }
        let body = text.strip_suffix('\n');
        let final_newline = body.is_some() || text.is_empty();
        let body = body.unwrap_or(text);
        let mut doc = Document {
            sections: vec![Section {
                lead: Vec::new(),
                header: None,
                lines: Vec::new(),
                key: None,
            }],
            crlf: text.contains("\r\n"),
            final_newline,
            origin: origin.to_string(),
            by_key: RefCell::new(None),
        };
        if text.is_empty() {
            return Ok(doc);
        }
        for (index, raw) in body.split('\n').enumerate() {
            let number = u32::try_from(index + 1).unwrap_or(u32::MAX);
            if raw.len() > 65536 {
                return Err(Error::BadConfig(format!(
                    "{origin}: line {number} is {} bytes long: expected a wg-quick config line",
                    raw.len()
                )));
            }
            let line = Line::parse(raw, number);
            if matches!(line.kind, LineKind::Header(_)) {
                let lead = match doc.sections.last_mut() {
                    Some(previous) => take_lead(&mut previous.lines),
                    None => Vec::new(),
                };
                doc.sections.push(Section {
                    lead,
                    header: Some(line),
                    lines: Vec::new(),
                    key: None,
                });
            } else if let Some(section) = doc.sections.last_mut() {
                section.lines.push(line);
            }
        }
        for section in &mut doc.sections {
            section.key = section.read_public_key();
        }
        Ok(doc)
    }

    /// The file the text came from (or "config").
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Render back to text; untouched lines come back byte for byte.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut first = true;
        for section in &self.sections {
            for line in section
                .lead
                .iter()
                .chain(&section.header)
                .chain(&section.lines)
            {
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

    /// Every section in file order, the lines before the first header included.
    pub fn sections(&self) -> impl Iterator<Item = &Section> {
        self.sections.iter()
    }

    /// The one place the `[Interface]` is looked up: the first one.
    fn interface_index(&self) -> Option<usize> {
        self.sections.iter().position(Section::is_interface)
    }

    pub fn interface(&self) -> Option<&Section> {
        self.interface_index().and_then(|i| self.sections.get(i))
    }

    /// The value of `key` as wg and wg-quick read it: the last line of it
    /// over every `[Interface]` section (a second `[Interface]` header
    /// continues the first, later lines win).
    pub fn interface_value(&self, key: &str) -> Option<&str> {
        self.sections
            .iter()
            .rev()
            .filter(|s| s.is_interface())
            .find_map(|s| s.get_last(key))
    }

    pub fn peer_sections(&self) -> impl Iterator<Item = &Section> {
        self.sections.iter().filter(|s| s.is_peer())
    }

    /// The first `[Peer]` section of `key`.
    fn peer_index(&self, key: &PublicKey) -> Option<usize> {
        let mut index = self.by_key.borrow_mut();
        let index = index.get_or_insert_with(|| {
            let mut map = HashMap::with_capacity(self.sections.len());
            for (i, section) in self.sections.iter().enumerate() {
                if let Some(k) = section.key {
                    map.entry(k).or_insert(i);
                }
            }
            map
        });
        index.get(key).copied()
    }

    /// The `[Peer]` section of `key`.
    pub fn peer(&self, key: &PublicKey) -> Option<&Section> {
        self.peer_index(key).and_then(|i| self.sections.get(i))
    }

    fn new_line(&self, text: String) -> Line {
        let raw = if self.crlf { format!("{text}\r") } else { text };
        Line::parse(&raw, 0)
    }

    /// Index of the `[Interface]` section, created (at the top, before any
    /// peer) when missing.
    fn interface_or_new(&mut self) -> usize {
        if let Some(i) = self.interface_index() {
            return i;
        }
        let header = self.new_line("[Interface]".into());
        let at = 1.min(self.sections.len());
        self.by_key.replace(None);
        self.sections.insert(
            at,
            Section {
                lead: Vec::new(),
                header: Some(header),
                lines: Vec::new(),
                key: None,
            },
        );
        self.final_newline = true;
        at
    }

    /// Set `key = value` in section `index`: the first line with that key
    /// is replaced (unless it already says `value`), later duplicates
    /// removed; a new key goes after the last key line of the section.
    fn set_at(&mut self, index: usize, key: &str, value: &str) {
        let line = self.new_line(format!("{key} = {value}"));
        let Some(section) = self.sections.get_mut(index) else {
            return;
        };
        // wg(8) and wg-quick take the last of repeated lines: when that one
        // already says `value`, the file already means it, and the earlier
        // lines (a key the owner left there) stay as written.
        if section
            .lines
            .iter()
            .rev()
            .find_map(|l| l.value_of(key))
            .is_some_and(|last| last == value)
        {
            return;
        }
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
        if wg_key_eq(key, keys::PUBLIC_KEY) {
            section.key = section.read_public_key();
            self.by_key.replace(None);
        }
    }

    fn insert_after_content(&mut self, index: usize, line: Line) {
        if let Some(section) = self.sections.get_mut(index) {
            let at = last_content_line(section).map_or(0, |i| i + 1);
            section.lines.insert(at, line);
        }
    }

    pub fn set_interface(&mut self, key: &str, value: &str) {
        let index = self.interface_or_new();
        self.set_at(index, key, value);
    }

    pub fn remove_interface(&mut self, key: &str) {
        if let Some(section) = self
            .interface_index()
            .and_then(|i| self.sections.get_mut(i))
        {
            section.lines.retain(|l| l.value_of(key).is_none());
        }
    }

    /// Append `key = value # marker` to the `[Interface]`, beside any other
    /// `key` lines (PostUp may repeat; each runs in order). wg-quick drops
    /// the comment, wgp2p finds its own lines by it.
    pub fn append_marked_interface(&mut self, key: &str, value: &str, marker: &str) {
        let line = self.new_line(format!("{key} = {value} # {marker}"));
        let index = self.interface_or_new();
        self.insert_after_content(index, line);
    }

    /// Remove the `[Interface]` lines that end with `# marker`.
    pub fn remove_marked_interface(&mut self, marker: &str) {
        let suffix = format!("# {marker}");
        if let Some(section) = self
            .interface_index()
            .and_then(|i| self.sections.get_mut(i))
        {
            section
                .lines
                .retain(|l| !l.raw.trim_end().ends_with(&suffix));
        }
    }

    /// Whether the `[Interface]` has a line ending with `# marker`.
    pub fn interface_has_marked(&self, marker: &str) -> bool {
        let suffix = format!("# {marker}");
        self.interface()
            .is_some_and(|s| s.lines.iter().any(|l| l.raw.trim_end().ends_with(&suffix)))
    }

    /// Set `key = value` in the section of peer `peer` (see `set_at`).
    pub fn set_peer(&mut self, peer: &PublicKey, key: &str, value: &str) {
        if let Some(index) = self.peer_index(peer) {
            self.set_at(index, key, value);
        }
    }

    /// Add a `key = value` line after the last content line of peer `peer`.
    pub fn add_peer_line(&mut self, peer: &PublicKey, key: &str, value: &str) {
        let line = self.new_line(format!("{key} = {value}"));
        if let Some(index) = self.peer_index(peer) {
            self.insert_after_content(index, line);
        }
    }

    /// Edit the `key` lines of peer `peer`: `edit` gets each value and
    /// returns `None` to keep the line, `Some(None)` to remove it,
    /// `Some(Some(value))` to rewrite it as `key = value`.
    pub fn edit_peer_values(
        &mut self,
        peer: &PublicKey,
        key: &str,
        edit: impl Fn(&str) -> Option<Option<String>>,
    ) {
        let crlf = self.crlf;
        let Some(section) = self.peer_index(peer).and_then(|i| self.sections.get_mut(i)) else {
            return;
        };
        section.lines.retain_mut(|l| {
            let Some(value) = l.value_of(key) else {
                return true;
            };
            match edit(value) {
                None => true,
                Some(None) => false,
                Some(Some(new)) => {
                    let eol = if crlf { "\r" } else { "" };
                    *l = Line::parse(&format!("{key} = {new}{eol}"), 0);
                    true
                }
            }
        });
    }

    /// Set (or add) the `# Name = …` line of a peer, right after its header.
    pub fn set_name(&mut self, peer: &PublicKey, name: &str) {
        if let Some(index) = self.peer_index(peer) {
            self.set_name_at(index, name);
        }
    }

    /// Set (or add) the `# Name = …` line of the `[Interface]` (a
    /// provisioned device's own name).
    pub fn set_interface_name(&mut self, name: &str) {
        let index = self.interface_or_new();
        self.set_name_at(index, name);
    }

    fn set_name_at(&mut self, index: usize, name: &str) {
        let line = self.new_line(format!("# {} = {name}", keys::TAG_NAME));
        let Some(section) = self.sections.get_mut(index) else {
            return;
        };
        match section.lines.iter().position(|l| l.is_tag(keys::TAG_NAME)) {
            Some(i) if section.lines[i].tag() == line.tag() => {}
            Some(i) => section.lines[i] = line,
            None => section.lines.insert(0, line),
        }
    }

    /// Add a `# key = value` line among the tag lines right after a peer's
    /// header (where `# Name = …` is), after those already there.
    pub fn add_header_tag(&mut self, peer: &PublicKey, key: &str, value: &str) {
        if let Some(index) = self.peer_index(peer) {
            self.insert_top_tag(index, key, value);
        }
    }

    /// Add a `# key = value` line among the tag lines at the top of the
    /// `[Interface]`, after those already there.
    pub fn add_interface_tag(&mut self, key: &str, value: &str) {
        let index = self.interface_or_new();
        self.insert_top_tag(index, key, value);
    }

    /// Insert `# key = value` after the tag lines that start section `index`.
    fn insert_top_tag(&mut self, index: usize, key: &str, value: &str) {
        let line = self.new_line(format!("# {key} = {value}"));
        if let Some(section) = self.sections.get_mut(index) {
            let at = section
                .lines
                .iter()
                .take_while(|l| l.tag().is_some())
                .count();
            section.lines.insert(at, line);
        }
    }

    /// Remove the `# key = value` lines of section `index` (if any) for
    /// which `drop` is true.
    fn remove_tags_in(&mut self, index: Option<usize>, key: &str, drop: impl Fn(&str) -> bool) {
        if let Some(section) = index.and_then(|i| self.sections.get_mut(i)) {
            section.lines.retain(|l| match l.tag() {
                Some((k, value)) if k == key => !drop(value),
                _ => true,
            });
        }
    }

    /// Remove the `# key = value` lines of the `[Interface]` for which
    /// `drop` is true.
    pub fn remove_interface_tags(&mut self, key: &str, drop: impl Fn(&str) -> bool) {
        self.remove_tags_in(self.interface_index(), key, drop);
    }

    /// Add a `# key = value` line after the last content line of a peer.
    pub fn add_tag(&mut self, peer: &PublicKey, key: &str, value: &str) {
        let line = self.new_line(format!("# {key} = {value}"));
        if let Some(index) = self.peer_index(peer) {
            self.insert_after_content(index, line);
        }
    }

    /// Remove the `# key = value` lines of a peer for which `drop` is true.
    pub fn remove_tags(&mut self, peer: &PublicKey, key: &str, drop: impl Fn(&str) -> bool) {
        self.remove_tags_in(self.peer_index(peer), key, drop);
    }

    /// Append a new `[Peer]` section with its `PublicKey` line, separated
    /// from the section above by a blank line. Blank lines that ended the
    /// file stay at its end, so removing the peer again gives the file back.
    pub fn append_peer(&mut self, peer: &PublicKey) {
        let header = self.new_line("[Peer]".into());
        let key_line = self.new_line(format!("{} = {peer}", keys::PUBLIC_KEY));
        self.append_section(Vec::new(), header, vec![key_line]);
    }

    /// Append a section given as text (one `Section::block_text`), its
    /// bytes unchanged, like `append_peer`. False when the text is not
    /// one section.
    pub fn append_block(&mut self, text: &str) -> bool {
        let Ok(mut parsed) = Document::parse(text) else {
            return false;
        };
        let preamble_empty = parsed.sections.first().is_some_and(|s| s.lines.is_empty());
        if parsed.sections.len() != 2 || !preamble_empty {
            return false;
        }
        let Some(section) = parsed.sections.pop() else {
            return false;
        };
        let Some(header) = section.header else {
            return false;
        };
        let mut lines = section.lines;
        lines.truncate(lines.len() - lines.iter().rev().take_while(|l| l.is_blank()).count());
        self.append_section(section.lead, header, lines);
        true
    }

    fn append_section(&mut self, lead: Vec<Line>, header: Line, mut lines: Vec<Line>) {
        let blank = self.new_line(String::new());
        if let Some(last) = self.sections.last_mut() {
            let tail_len = last.trailing_blanks();
            let tail = last.lines.split_off(last.lines.len() - tail_len);
            let empty = last.header.is_none() && last.lines.is_empty() && last.lead.is_empty();
            if !empty {
                last.lines.push(blank);
            }
            lines.extend(tail);
        }
        let mut section = Section {
            lead,
            header: Some(header),
            lines,
            key: None,
        };
        section.key = section.read_public_key();
        if let (Some(index), Some(key)) = (self.by_key.get_mut().as_mut(), section.key) {
            index.entry(key).or_insert(self.sections.len());
        }
        self.sections.push(section);
        self.final_newline = true;
    }

    /// Remove the section of peer `peer` with its comment block. Inside
    /// the file the blank lines after it go too; as the last section, the
    /// blank line before it goes and the file's trailing blank lines stay
    /// (the reverse of `append_peer`). Returns the removed section's text.
    pub fn remove_peer(&mut self, peer: &PublicKey) -> Option<String> {
        let index = self.peer_index(peer)?;
        let removed = self.sections.remove(index);
        self.by_key.replace(None);
        let text = removed.block_text();
        if index == self.sections.len()
            && let Some(last) = self.sections.last_mut()
        {
            if last.lines.last().is_some_and(Line::is_blank) {
                last.lines.pop();
            }
            let tail = removed.trailing_blanks();
            last.lines
                .extend(removed.lines[removed.lines.len() - tail..].iter().cloned());
        }
        Some(text)
    }
}

/// Split off the comment block at the end of `lines` that labels the
/// header following it.
fn take_lead(lines: &mut Vec<Line>) -> Vec<Line> {
    let len = lines.iter().rev().take_while(|l| l.can_lead()).count();
    lines.split_off(lines.len() - len)
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

    const K1: &str = "DD5yKRfzExcV5+kDnTroDgCU15latdMjiQ59j1hEuk8=";
    const K2: &str = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";

    fn key(text: &str) -> PublicKey {
        text.parse().unwrap()
    }

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
        let doc = Document::parse(&format!("[Interface]\nPrivateKey = x\n[Peer]\n# Name = laptop\npublickey = {K1}\nAllowedIPs = 10.0.0.2/32\nAllowedIPs = 10.0.1.0/24\n")).unwrap();
        assert_eq!(doc.interface().unwrap().get_last("privatekey"), Some("x"));
        let peer = doc.peer_sections().next().unwrap();
        assert_eq!(peer.peer_name(), Some("laptop"));
        assert_eq!(peer.get_last("PublicKey"), Some(K1));
        assert_eq!(
            peer.get_all("AllowedIPs"),
            vec!["10.0.0.2/32", "10.0.1.0/24"]
        );
        assert!(doc.peer(&key(K1)).is_some());
    }

    /// Reproduction: `[Peer] # laptop` and `[Interface] # main` were not
    /// headers, so the commented peer's lines merged into the one above.
    #[test]
    fn a_comment_after_a_header_keeps_it_a_header() {
        let text = format!(
            "[Interface] # main\nListenPort = 1\n[Peer]\nPublicKey = {K1}\n[Peer] # laptop\nPublicKey = {K2}\n[ peer ]#x\n\tPublic Key = {K1}\n"
        );
        let doc = Document::parse(&text).unwrap();
        assert!(
            doc.interface()
                .is_some_and(|s| s.get_last("ListenPort") == Some("1"))
        );
        assert_eq!(doc.peer_sections().count(), 3);
        let mut doc = doc;
        doc.set_interface("ListenPort", "2");
        assert_eq!(doc.render().matches("[Interface]").count(), 1);
        assert!(
            doc.render()
                .starts_with("[Interface] # main\nListenPort = 2\n")
        );
    }

    #[test]
    fn keys_are_case_and_space_insensitive_values_trimmed() {
        let doc = Document::parse("[interface]\n  LISTENPORT\t=\t51820   # the port\r\n").unwrap();
        assert_eq!(
            doc.interface().unwrap().get_last("ListenPort"),
            Some("51820")
        );
        assert!(wg_key_eq("Allowed IPs", "allowedips"));
        assert!(!wg_key_eq("AllowedIP", "AllowedIPs"));
    }

    #[test]
    fn edits_touch_only_their_lines() {
        let mut doc = Document::parse(SCRIPT_CONF).unwrap();
        doc.remove_interface("SaveConfig");
        doc.set_interface("ListenPort", "51821");
        doc.set_interface("ListenPort", "51821");
        doc.set_name(&key(K1), "enterprise");
        let text = doc.render();
        assert!(!text.contains("SaveConfig"));
        assert!(text.contains("ListenPort = 51821\n"));
        assert!(text.contains("[Peer]\n# Name = enterprise\nPublicKey = DD5y"));
        assert_eq!(text.lines().count(), SCRIPT_CONF.lines().count());
    }

    #[test]
    fn appends_and_removes_peers() {
        for original in [
            SCRIPT_CONF,
            "[Interface]\n\n",
            "[Interface]\n",
            "",
            "# only\n",
        ] {
            let mut doc = Document::parse(original).unwrap();
            doc.append_peer(&key(K2));
            doc.set_name(&key(K2), "voyager");
            doc.set_peer(&key(K2), "AllowedIPs", "10.15.0.3/32");
            let text = doc.render();
            assert!(
                text.contains(&format!(
                    "[Peer]\n# Name = voyager\nPublicKey = {K2}\nAllowedIPs = 10.15.0.3/32\n"
                )),
                "{text}"
            );
            let mut again = Document::parse(&text).unwrap();
            again.remove_peer(&key(K2));
            assert_eq!(again.render(), original, "{original:?}");
        }
    }

    /// Reproduction: remove-peer took the comment block above the *next*
    /// peer and left its own behind.
    #[test]
    fn a_peer_owns_the_comment_block_above_it() {
        let text = format!(
            "[Interface]\nListenPort = 1\n\n# Client: alice\n# Created: today\n[Peer]\nPublicKey = {K1}\n\n# Client: bob\n[Peer]\nPublicKey = {K2}\n"
        );
        let mut doc = Document::parse(&text).unwrap();
        doc.remove_peer(&key(K1));
        assert_eq!(
            doc.render(),
            format!("[Interface]\nListenPort = 1\n\n# Client: bob\n[Peer]\nPublicKey = {K2}\n")
        );
        let mut doc = Document::parse(&text).unwrap();
        doc.remove_peer(&key(K2));
        assert_eq!(
            doc.render(),
            format!(
                "[Interface]\nListenPort = 1\n\n# Client: alice\n# Created: today\n[Peer]\nPublicKey = {K1}\n"
            )
        );
    }

    #[test]
    fn pivpn_markers_go_with_their_peer() {
        let text = format!(
            "[Interface]\nListenPort = 1\n### begin a ###\n[Peer]\nPublicKey = {K1}\n### end a ###\n### begin b ###\n[Peer]\nPublicKey = {K2}\n### end b ###\n"
        );
        let mut doc = Document::parse(&text).unwrap();
        assert_eq!(
            doc.peer(&key(K2)).unwrap().block_text(),
            format!("### begin b ###\n[Peer]\nPublicKey = {K2}\n### end b ###")
        );
        doc.remove_peer(&key(K1));
        assert_eq!(
            doc.render(),
            format!(
                "[Interface]\nListenPort = 1\n### begin b ###\n[Peer]\nPublicKey = {K2}\n### end b ###\n"
            )
        );
    }

    #[test]
    fn a_block_comes_back_byte_for_byte() {
        let block = format!("# label\r\n[Peer] # x\r\nPublicKey = {K1}\r\nUnknown = kept\r");
        let mut doc = Document::parse("[Interface]\r\nListenPort = 1\r\n").unwrap();
        assert!(doc.append_block(&block));
        assert_eq!(doc.peer(&key(K1)).unwrap().block_text(), block);
        assert!(!doc.append_block("[Peer]\n[Peer]\n"));
        assert!(!doc.append_block("Key = outside\n[Peer]\n"));
    }

    #[test]
    fn tags_are_added_read_and_removed() {
        let mut doc = Document::parse(&format!(
            "[Peer]\n# Name = relay\nPublicKey = {K1}\n# a comment\n"
        ))
        .unwrap();
        doc.add_tag(&key(K1), "Relay", "a K1 192.0.2.1:1 10.0.0.5/32");
        doc.add_tag(&key(K1), "Relay", "b K2 192.0.2.2:1 10.0.0.6/32");
        assert_eq!(
            doc.render(),
            format!(
                "[Peer]\n# Name = relay\nPublicKey = {K1}\n# Relay = a K1 192.0.2.1:1 10.0.0.5/32\n# Relay = b K2 192.0.2.2:1 10.0.0.6/32\n# a comment\n"
            )
        );
        let section = doc.peer_sections().next().unwrap();
        assert_eq!(section.tags("Relay").len(), 2);
        doc.remove_tags(&key(K1), "Relay", |v| v.starts_with("a "));
        assert!(!doc.render().contains("Relay = a"));
        assert!(doc.render().contains("Relay = b"));
    }

    #[test]
    fn a_tag_line_never_labels_the_next_peer() {
        let text = format!("[Peer]\nPublicKey = {K1}\n# Relay = x\n[Peer]\nPublicKey = {K2}\n");
        let doc = Document::parse(&text).unwrap();
        assert_eq!(doc.peer(&key(K1)).unwrap().tags("Relay"), ["x"]);
    }

    #[test]
    fn marked_lines_are_found_by_their_comment() {
        let mut doc = Document::parse("[Interface]\nPostUp = echo mine\n").unwrap();
        doc.append_marked_interface("PostUp", "sysctl x", "wgp2p relay");
        assert_eq!(
            doc.render(),
            "[Interface]\nPostUp = echo mine\nPostUp = sysctl x # wgp2p relay\n"
        );
        assert!(doc.interface_has_marked("wgp2p relay"));
        assert_eq!(
            doc.interface().unwrap().get_all("PostUp"),
            ["echo mine", "sysctl x"]
        );
        doc.remove_marked_interface("wgp2p relay");
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
    fn refuses_binary_naming_file_and_line() {
        let err = Document::parse_named("[Interface]\n\0", "/etc/wireguard/wg0.conf")
            .unwrap_err()
            .to_string();
        assert!(err.contains("/etc/wireguard/wg0.conf: line 2"), "{err}");
        assert!(Document::parse(&"x".repeat(70000)).is_err());
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    const K: &str = "TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=";

    /// Lines that look like wg-quick configs, plus arbitrary noise.
    fn config_line() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("[Interface]".to_string()),
            Just("[Peer]".to_string()),
            Just("[Peer] # label".to_string()),
            Just("### end x ###".to_string()),
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

        /// Every write re-parses to what was written, and adding then
        /// removing a peer gives the file back (a missing final newline is
        /// the one thing added).
        #[test]
        fn edits_round_trip(text in config_text(), value in "[A-Za-z0-9+/=.:, ]{0,30}") {
            let key: PublicKey = K.parse().unwrap();
            prop_assume!(!text.contains(K));
            let mut doc = Document::parse(&text).unwrap();
            doc.set_interface("ListenPort", value.trim());
            let before = doc.render();
            doc.append_peer(&key);
            doc.set_name(&key, "fuzz");
            doc.set_peer(&key, "Endpoint", value.trim());
            let rendered = doc.render();
            let mut again = Document::parse(&rendered).unwrap();
            prop_assert_eq!(again.render(), rendered.clone());
            prop_assert_eq!(again.interface().and_then(|s| s.get_last("ListenPort")), Some(value.trim()));
            prop_assert_eq!(again.peer(&key).and_then(Section::peer_name), Some("fuzz"));
            again.remove_peer(&key);
            let expected = if before.is_empty() || before.ends_with('\n') { before } else { format!("{before}\n") };
            prop_assert_eq!(again.render(), expected);
        }

        #[test]
        fn never_panics_on_any_text(text in "\\PC{0,200}") {
            let _ = Document::parse(&text);
        }
    }
}
