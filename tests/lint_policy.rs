//! "No panic reachable from input", as a check on the sources: every crate of
//! the workspace denies clippy's `unwrap_used`, `expect_used`, `panic` and `indexing_slicing`
//! (so `cargo clippy -- -D warnings`, a CI step, refuses them in non-test code), and every
//! place that allows one of them outside test code says why in a comment beside it.
//!
//! A crate added to the workspace without the lints, or an unargued `#[allow]`, fails here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::fs;
use std::path::{Path, PathBuf};

const LINTS: [&str; 4] = ["unwrap_used", "expect_used", "panic", "indexing_slicing"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The lines of the `[section]` table of a Cargo.toml, up to the next table.
fn table<'a>(toml: &'a str, section: &str) -> Vec<&'a str> {
    let mut lines = toml.lines().skip_while(|l| l.trim() != section);
    if lines.next().is_none() {
        return Vec::new();
    }
    lines.take_while(|l| !l.trim_start().starts_with('[')).map(str::trim).collect()
}

/// `name = "deny"` (or "forbid") for every lint in `lines`.
fn denies_all(lines: &[&str]) -> Result<(), String> {
    for lint in LINTS {
        let ok = lines.iter().any(|l| {
            let Some((name, level)) = l.split_once('=') else { return false };
            name.trim() == lint && matches!(level.trim(), "\"deny\"" | "\"forbid\"")
        });
        if !ok {
            return Err(format!("clippy::{lint} is not denied"));
        }
    }
    Ok(())
}

/// The workspace members, from `members = [...]` in the root Cargo.toml.
fn members() -> Vec<PathBuf> {
    let toml = fs::read_to_string(root().join("Cargo.toml")).unwrap();
    // `members = [...]`, on one line or several.
    let at = toml.lines().find(|l| l.trim_start().starts_with("members")).unwrap();
    let from: String = toml[toml.find(at).unwrap()..]
        .lines()
        .map(|l| l.split('#').next().unwrap_or_default())
        .collect();
    let list = from.split_once('[').unwrap().1.split_once(']').unwrap().0;
    list.split(',')
        .map(|m| m.trim().trim_matches('"'))
        .filter(|m| !m.is_empty())
        .map(|m| root().join(m))
        .collect()
}

#[test]
fn every_workspace_crate_denies_the_panicking_lints() {
    let root_toml = fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let members = members();
    assert!(members.len() >= 4, "{members:?}");
    for m in members {
        let toml = fs::read_to_string(m.join("Cargo.toml")).unwrap();
        let inherits =
            table(&toml, "[lints]").iter().any(|l| l.replace(' ', "") == "workspace=true");
        let result = if inherits {
            denies_all(&table(&root_toml, "[workspace.lints.clippy]"))
        } else {
            denies_all(&table(&toml, "[lints.clippy]"))
        };
        if let Err(e) = result {
            panic!("{}: {e}", m.join("Cargo.toml").display());
        }
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for e in entries {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Is `file` a `tests.rs` that its parent module includes only under `#[cfg(test)]`?
fn is_test_file(file: &Path) -> bool {
    if file.file_name().is_none_or(|n| n != "tests.rs") {
        return false;
    }
    // The parent module is `dir.rs` beside the folder, or `dir/mod.rs` inside it, or for a
    // crate's own tests (`src/tests.rs`) its `src/lib.rs`.
    let dir = file.parent().unwrap();
    let text = fs::read_to_string(dir.with_extension("rs"))
        .or_else(|_| fs::read_to_string(dir.join("mod.rs")))
        .or_else(|_| fs::read_to_string(dir.join("lib.rs")))
        .unwrap_or_default();
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    lines.windows(2).any(|w| w[0] == "#[cfg(test)]" && w[1] == "mod tests;")
}

#[test]
fn every_allowed_panicking_lint_outside_tests_is_argued() {
    let mut files = Vec::new();
    for m in members() {
        rust_files(&m.join("src"), &mut files);
        rust_files(&m.join("examples"), &mut files);
    }
    assert!(files.len() > 20, "{} files", files.len());
    let mut unargued = Vec::new();
    let mut checked = 0;
    for file in files {
        if is_test_file(&file) {
            continue;
        }
        let text = fs::read_to_string(&file).unwrap();
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        for (i, line) in lines.iter().enumerate() {
            let allows = (line.starts_with("#[allow(") || line.starts_with("#![allow("))
                || line.starts_with("#[expect(");
            if !allows || !LINTS.iter().any(|l| line.contains(&format!("clippy::{l}"))) {
                continue;
            }
            let before = |k: usize| i.checked_sub(k).map_or("", |j| lines[j]);
            let after = lines.get(i + 1).copied().unwrap_or("");
            // `#[cfg(test)] mod tests { #![allow(..)]` or `#[cfg(test)] #[allow(..)] mod tests`.
            let test_module = (line.starts_with("#![")
                && before(1).starts_with("mod tests")
                && before(2) == "#[cfg(test)]")
                || (before(1) == "#[cfg(test)]" && after.starts_with("mod tests"));
            if test_module {
                continue;
            }
            checked += 1;
            let argued =
                line.contains("//") || before(1).starts_with("//") || after.starts_with("//");
            if !argued {
                unargued.push(format!("{}:{}: {line}", file.display(), i + 1));
            }
        }
    }
    assert!(unargued.is_empty(), "allowed without a comment saying why:\n{}", unargued.join("\n"));
    // The examples' allowances are the known ones; if none is found, the scan is broken.
    assert!(checked >= 2, "{checked} allowances outside tests found");
}
