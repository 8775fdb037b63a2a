//! The layers of `src/`, pinned (tailscale's depaware is the model): a
//! module may import only modules of lower layers, so no two modules
//! import each other, directly or around a cycle. The layers are written
//! once, here; docs/architecture.md explains them. A new module goes into
//! a layer here first, or this test fails naming it.
//!
//! Imports are read from the source text: `crate::a::…` and `super::…`
//! paths and `use crate::{…}` / `use super::{…}` groups, outside comments
//! and outside test modules (`#[cfg(test)] mod …` to the end of the file,
//! and files named `tests.rs`): tests may reach anywhere.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The crate's top-level modules, lowest layer first. A module may import
/// the modules of the layers before its own, never one of its own layer
/// or a later one.
const LAYERS: &[&[&str]] = &[
    // Leaves: system calls, words, the status schema.
    &["sys", "words", "status"],
    // Validated types (their own error).
    &["types"],
    // The one error type; WireGuard's vocabulary.
    &["error", "wg"],
    // Files of the config dir; running system programs.
    &["store", "system"],
    // The config: the lossless document, the node, relay pins.
    &["config"],
    // Pure planning; kernel routes; the service manager.
    &["plan", "routing", "service"],
    // Membership records; the roster; the live device; health rules;
    // STUN and NAT discovery.
    &["membership", "roster", "device", "health", "discover"],
    // What every command gets; the commit path; rendering.
    &["context", "commit", "output"],
    // This node's announcement (its add-peer line).
    &["announce"],
    // Facts of this host.
    &["host"],
    // The agent: the same pipeline in a loop.
    &["agent"],
    // The command line (clap).
    &["cli"],
    // One file per command.
    &["commands"],
];

/// The agent's modules, lowest first, by the same rule: the loop
/// (`agent/mod.rs`) may import them all; none may import the loop.
const AGENT_LAYERS: &[&[&str]] = &[
    // The wire format; the log; the systemd unit; roaming pokes.
    &["protocol", "log", "unit", "roam"],
    // Decisions as values; the socket.
    &["action", "link"],
    // One observation of the world.
    &["snapshot"],
    // The features: each pure decisions on a snapshot.
    &["endpoints", "greet", "relay", "membership"],
    &["hints"],
    // What the agent carries from pass to pass, and its state file.
    &["state"],
    // The one executor.
    &["execute"],
];

/// Macros exported at the crate root, and the module they belong to.
const MACROS: &[(&str, &str)] = &[("out", "output"), ("outln", "output")];

fn layer_of(layers: &[&[&str]], module: &str) -> Option<usize> {
    layers.iter().position(|l| l.contains(&module))
}

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a file under `src/`: `agent/relay.rs` is
/// `["agent", "relay"]`, `agent/mod.rs` is `["agent"]`, `main.rs` is `[]`.
fn module_of(relative: &Path) -> Vec<String> {
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "main") {
        parts.pop();
    }
    parts
}

/// The source without comments and without its test modules.
fn code_of(text: &str) -> String {
    let end = text
        .match_indices("#[cfg(test)]")
        .find(|(i, _)| {
            text[*i..]
                .trim_start_matches("#[cfg(test)]")
                .trim_start()
                .starts_with("mod ")
        })
        .map_or(text.len(), |(i, _)| i);
    text[..end]
        .lines()
        .map(|line| match line.find("//") {
            // Not inside a string: good enough for this crate, whose
            // strings with `//` (URLs) never hold an import path.
            Some(i) if !line[..i].contains('"') => &line[..i],
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn ident_at(text: &str) -> &str {
    let end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    &text[..end]
}

/// The names a path group `{a, b::c, d::{e}}` starts with.
fn group_heads(text: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 0;
    let mut at_head = true;
    for (i, c) in text.char_indices() {
        match c {
            '{' => {
                depth += 1;
                if depth == 1 {
                    at_head = true;
                }
                continue;
            }
            '}' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            ',' if depth == 1 => at_head = true,
            c if depth == 1 && at_head && (c.is_ascii_alphabetic() || c == '_') => {
                heads.push(ident_at(&text[i..]).to_string());
                at_head = false;
            }
            _ => {}
        }
    }
    heads
}

/// What `code` imports: the first segment after each `crate::`, and after
/// each `super::` (items of the parent start with a capital letter).
fn imports(code: &str, prefix: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (i, _) in code.match_indices(prefix) {
        // `$crate::` is a macro's own path, not an import.
        if prefix == "crate::" && code[..i].ends_with('$') {
            continue;
        }
        let rest = &code[i + prefix.len()..];
        if rest.starts_with('{') {
            found.extend(group_heads(rest));
            continue;
        }
        let name = ident_at(rest);
        let after = &rest[name.len()..];
        if after.starts_with('!') {
            if let Some((_, module)) = MACROS.iter().find(|(m, _)| *m == name) {
                found.insert((*module).to_string());
            }
            continue;
        }
        if !name.is_empty() {
            found.insert(name.to_string());
        }
    }
    found
}

/// Every import that breaks the layers, one line each.
fn violations(src: &Path) -> Vec<String> {
    let mut files = Vec::new();
    sources(src, &mut files);
    let mut broken = Vec::new();
    for file in files {
        let relative = file.strip_prefix(src).unwrap();
        if relative.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let module = module_of(relative);
        let Some(top) = module.first() else {
            continue;
        };
        let text = std::fs::read_to_string(&file).unwrap();
        let code = code_of(&text);
        let Some(own) = layer_of(LAYERS, top) else {
            broken.push(format!(
                "{}: module {top} is in no layer: add it to LAYERS in tests/layering.rs",
                relative.display()
            ));
            continue;
        };
        for name in imports(&code, "crate::") {
            if name == *top {
                continue;
            }
            match layer_of(LAYERS, &name) {
                Some(layer) if layer < own => {}
                Some(_) => broken.push(format!(
                    "{}: {top} imports {name}, which is not in a lower layer",
                    relative.display()
                )),
                None => broken.push(format!(
                    "{}: {top} imports {name}, which is in no layer",
                    relative.display()
                )),
            }
        }
        // Inside the agent: its own layers.
        if top == "agent" && module.len() == 2 {
            let sub = &module[1];
            let Some(own) = layer_of(AGENT_LAYERS, sub) else {
                broken.push(format!(
                    "{}: agent::{sub} is in no layer: add it to AGENT_LAYERS in tests/layering.rs",
                    relative.display()
                ));
                continue;
            };
            let mut names = imports(&code, "super::");
            for (i, _) in code.match_indices("crate::agent::") {
                names.insert(ident_at(&code[i + "crate::agent::".len()..]).to_string());
            }
            for name in names {
                if name.starts_with(|c: char| c.is_ascii_uppercase()) {
                    broken.push(format!(
                        "{}: agent::{sub} imports {name} from the agent's loop (agent/mod.rs), which imports it",
                        relative.display()
                    ));
                    continue;
                }
                match layer_of(AGENT_LAYERS, &name) {
                    Some(layer) if layer < own => {}
                    _ => broken.push(format!(
                        "{}: agent::{sub} imports agent::{name}, which is not in a lower layer",
                        relative.display()
                    )),
                }
            }
        }
    }
    broken
}

#[test]
fn every_module_imports_only_lower_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let broken = violations(&src);
    assert!(
        broken.is_empty(),
        "imports that break the layers:\n{}",
        broken.join("\n")
    );
}

/// The test catches what it is for: a planted import of a higher layer,
/// in a copy of the sources.
#[test]
fn a_planted_forbidden_import_is_caught() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let copy = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    sources(&src, &mut files);
    for file in &files {
        let target = copy.path().join(file.strip_prefix(&src).unwrap());
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(file, &target).unwrap();
    }
    assert!(violations(copy.path()).is_empty());
    let output = copy.path().join("output.rs");
    let text = std::fs::read_to_string(&output).unwrap();
    std::fs::write(&output, format!("use crate::agent::state;\n{text}")).unwrap();
    assert_eq!(
        violations(copy.path()),
        ["output.rs: output imports agent, which is not in a lower layer"]
    );
    let relay = copy.path().join("agent/relay.rs");
    let text = std::fs::read_to_string(&relay).unwrap();
    std::fs::write(&relay, format!("use super::execute::Wire;\n{text}")).unwrap();
    assert_eq!(violations(copy.path()).len(), 2);
}
