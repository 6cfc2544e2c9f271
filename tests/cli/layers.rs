//! The layers point one way: cli → commands → api → ops → project → {plan, apply} → {manifest,
//! lock, store, sources, registry} → {net, names, digest, durable}. This reads `src/` and fails on any
//! `crate::<module>` path from a layer to one above it, so a new upward import is caught in
//! review. `ALLOWED` lists the upward imports that are known and scheduled to go; it is
//! empty now that the API calls `ops` rather than `commands`, and it may only shrink.

use std::path::Path;

/// For each directory of `src/`, the top-level modules it must not name.
const RULES: &[(&str, &[&str])] = &[
    (
        "net",
        &[
            "cli", "commands", "api", "project", "plan", "apply", "manifest", "lock", "store",
            "sources",
        ],
    ),
    (
        "names",
        &[
            "cli", "commands", "api", "project", "plan", "apply", "manifest", "lock", "store",
            "sources", "net",
        ],
    ),
    (
        "registry",
        &[
            "cli", "commands", "api", "project", "plan", "apply", "manifest", "lock", "store",
            "sources",
        ],
    ),
    (
        "manifest",
        &[
            "cli", "commands", "api", "project", "plan", "apply", "lock", "store", "sources",
        ],
    ),
    (
        "lock",
        &[
            "cli", "commands", "api", "project", "plan", "apply", "store", "sources",
        ],
    ),
    (
        "store",
        &["cli", "commands", "api", "project", "plan", "apply"],
    ),
    (
        "sources",
        &["cli", "commands", "api", "project", "plan", "apply"],
    ),
    ("plan", &["cli", "commands", "api", "project", "apply"]),
    ("apply", &["cli", "commands", "api", "project"]),
    ("ops", &["cli", "commands", "api"]),
    ("api", &["cli", "commands"]),
];

/// Known upward imports, by file, to be removed (never added to).
const ALLOWED: &[(&str, &str)] = &[];

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_layer_imports_one_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = Vec::new();
    for (dir, forbidden) in RULES {
        let mut files = Vec::new();
        let root = src.join(dir);
        rust_files(&root, &mut files);
        if root.with_extension("rs").is_file() {
            files.push(root.with_extension("rs"));
        }
        assert!(
            !files.is_empty(),
            "src/{dir} has no Rust files: update RULES"
        );
        for file in files {
            let rel = file
                .strip_prefix(&src)
                .expect("under src")
                .to_string_lossy()
                .into_owned();
            let text = std::fs::read_to_string(&file).expect("read");
            for module in *forbidden {
                let needle = format!("crate::{module}::");
                let braced = format!("crate::{{{module}");
                let hit = text
                    .lines()
                    .filter(|l| !l.trim_start().starts_with("//"))
                    .any(|l| l.contains(&needle) || l.contains(&braced));
                if hit && !ALLOWED.contains(&(rel.as_str(), *module)) {
                    found.push(format!("src/{rel} imports crate::{module}"));
                }
            }
        }
    }
    assert!(found.is_empty(), "upward imports:\n{}", found.join("\n"));
}

#[test]
fn the_known_upward_imports_still_exist() {
    // An entry of ALLOWED that no longer applies must be deleted, so the list only shrinks.
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for (file, module) in ALLOWED {
        let text = std::fs::read_to_string(src.join(file)).unwrap_or_default();
        assert!(
            text.contains(&format!("crate::{module}::")),
            "src/{file} no longer imports crate::{module}: remove it from ALLOWED"
        );
    }
}
