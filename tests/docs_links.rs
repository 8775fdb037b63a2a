//! The documentation's relative links resolve: every `[text](target)` of
//! README.md and docs/*.md that is not a URL names a file or directory
//! that exists (relative to the page), and the README stays a landing
//! page (at most 300 lines, no test names in it).

use std::path::{Path, PathBuf};

/// The Markdown pages: README.md and every docs/*.md.
fn pages() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut pages = vec![root.join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("read docs/")
        .map(|e| e.expect("a docs/ entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    pages.extend(docs);
    pages
}

/// The targets of the inline links of `text`, outside code spans and
/// code blocks.
fn link_targets(text: &str) -> Vec<String> {
    let mut targets = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced || line.starts_with("    ") {
            continue;
        }
        // Code spans hold text such as `a[i](x)` that is no link.
        let prose: String = line.split('`').step_by(2).collect::<Vec<_>>().join(" ");
        let mut rest = prose.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            targets.push(after[..end].to_string());
            rest = &after[end..];
        }
    }
    targets
}

#[test]
fn relative_links_of_the_readme_and_docs_resolve() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for page in pages() {
        let text = std::fs::read_to_string(&page).expect("read a page");
        for target in link_targets(&text) {
            if target.contains("://") || target.starts_with('#') || target.starts_with("mailto:") {
                continue;
            }
            let file = target.split('#').next().unwrap_or_default();
            let dir = page.parent().expect("a page has a directory");
            checked += 1;
            if !dir.join(file).exists() {
                broken.push(format!("{}: ({target})", page.display()));
            }
        }
    }
    assert!(
        checked > 20,
        "only {checked} relative links found: is the parser right?"
    );
    assert!(
        broken.is_empty(),
        "links that resolve to nothing:\n{}",
        broken.join("\n")
    );
}

#[test]
fn links_are_found_in_prose_and_not_in_code() {
    let text =
        "see [a](docs/a.md) and [b](b.md#x)\n`[c](c.md)`\n    [d](d.md)\n```\n[e](e.md)\n```\n";
    assert_eq!(link_targets(text), ["docs/a.md", "b.md#x"]);
}

#[test]
fn the_readme_is_a_landing_page() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("read README.md");
    let lines = readme.lines().count();
    assert!(
        lines <= 300,
        "README.md has {lines} lines: at most 300, the rest goes to docs/"
    );
    for word in ["tests/", "#[test]", "the spec"] {
        assert!(
            !readme.contains(word),
            "README.md mentions {word:?}: that belongs in docs/"
        );
    }
}
