//! From a spanned YAML tree to a [`Manifest`], collecting every problem on the way.
//!
//! The walk never stops at the first mistake: each section is checked, each problem recorded
//! with its location and a `help:` line, and the manifest is returned only when there were
//! none. The generic walker (kinds, unknown and repeated keys, scalars) is `checker`; the rules
//! are by section: `types`, `models` (with `files`, `requires`, `config`, `hooks`, `base`),
//! `sources`, `active` and `mirrors`; the document's root and `version` are here. The accepted keys of
//! each mapping are listed here (and checked against the JSON Schema by a test), which is what
//! lets an unknown key get "did you mean" from its siblings.

mod active;
mod checker;
mod mirrors;
mod models;
mod sources;
mod types;

use serde_saphyr::Spanned;

use super::model::*;
use super::node::Node;
use crate::diagnostic::Problem;
use checker::Checker;

pub(crate) const ROOT_KEYS: &[&str] = &[
    "version", "store", "hf_cache", "mirrors", "types", "models", "active",
];
pub(crate) const TYPE_KEYS: &[&str] = &["description"];
pub(crate) const MODEL_KEYS: &[&str] = &[
    "type",
    "description",
    "source",
    "files",
    "requires",
    "config",
    "hooks",
    "base",
];
pub(crate) const HF_KEYS: &[&str] = &["hf", "revision", "repo_type", "include", "exclude"];
pub(crate) const URL_KEYS: &[&str] = &["url", "sha256", "md5", "file"];
pub(crate) const OLLAMA_KEYS: &[&str] = &["ollama", "keep_alive"];
pub(crate) const OCI_KEYS: &[&str] = &["oci"];
pub(crate) const FILE_KEYS: &[&str] = &["sha256", "md5", "size"];
pub(crate) const REQUIRES_KEYS: &[&str] = &["gpu_memory", "ram"];
pub(crate) const HOOK_KEYS: &[&str] = &["activate", "deactivate", "reload", "rollback_on_failure"];
const SOURCE_KINDS: &[&str] = &["hf", "url", "ollama", "oci"];

/// Most models one manifest may declare.
pub const MAX_MODELS: usize = 10_000;

/// Checks a parsed document (`text` is its source, for what only the raw text says); returns
/// the manifest, or every problem found.
pub fn validate(root: &Spanned<Node>, text: &str) -> Result<Manifest, Vec<Problem>> {
    let mut c = Checker {
        source: text.to_owned(),
        ..Checker::default()
    };
    let manifest = check_root(&mut c, root);
    match manifest {
        Some(m) if c.problems.is_empty() => Ok(m),
        _ => {
            c.problems.sort_by_key(|p| p.at);
            Err(c.problems)
        }
    }
}

/// The document: a mapping of the root keys, each section checked in turn.
fn check_root(c: &mut Checker, root: &Spanned<Node>) -> Option<Manifest> {
    if matches!(root.value, Node::Null) {
        c.report(
            &root.referenced,
            "manifest::empty",
            "the manifest is empty".to_owned(),
            Some("start with `version: 1` and a `models:` mapping; `modelctl schema` prints the full format".to_owned()),
        );
        return None;
    }
    let entries = c.map(root, "the manifest")?;
    let f = c.fields(entries, ROOT_KEYS, "the manifest");

    let version = check_version(c, root, f.get("version"));
    let store = f.get("store").and_then(|n| c.string(n, "`store`"));
    let hf_cache = f
        .get("hf_cache")
        .and_then(|n| c.boolean(n, "`hf_cache`"))
        .unwrap_or(false);
    let mirrors = f
        .get("mirrors")
        .map(|n| mirrors::check_mirrors(c, n))
        .unwrap_or_default();
    let types = f
        .get("types")
        .map(|n| types::check_types(c, n))
        .unwrap_or_default();
    let mut known_types: Vec<String> = BUILTIN_TYPES.iter().map(|t| (*t).to_owned()).collect();
    known_types.extend(types.keys().map(|t| t.to_string()));

    let models = f
        .get("models")
        .map(|n| models::check_models(c, n, &known_types))
        .unwrap_or_default();
    let active = f
        .get("active")
        .map(|n| active::check_active(c, n, &known_types, &models))
        .unwrap_or_default();

    Some(Manifest {
        version: version?,
        store,
        hf_cache,
        mirrors,
        types,
        models: models
            .into_iter()
            .map(|(id, (_, entry))| (id, entry))
            .collect(),
        active,
    })
}

/// `version:` must be there and be the one this build reads.
fn check_version(
    c: &mut Checker,
    root: &Spanned<Node>,
    node: Option<&Spanned<Node>>,
) -> Option<u32> {
    let Some(node) = node else {
        c.report(
            &root.referenced,
            "manifest::missing_version",
            "the manifest has no `version`".to_owned(),
            Some("add `version: 1` at the top of the file".to_owned()),
        );
        return None;
    };
    match node.value {
        Node::Int(v) if v == i128::from(MANIFEST_VERSION) => Some(MANIFEST_VERSION),
        Node::Int(v) => {
            c.report(
                &node.referenced,
                "manifest::unknown_version",
                format!("manifest version {v} is not known to this build of modelctl, which reads version {MANIFEST_VERSION}"),
                Some(if v > i128::from(MANIFEST_VERSION) {
                    "upgrade modelctl to read this manifest".to_owned()
                } else {
                    format!("write `version: {MANIFEST_VERSION}`")
                }),
            );
            None
        }
        _ => {
            c.wrong_kind(node, "`version`", "an integer");
            None
        }
    }
}
