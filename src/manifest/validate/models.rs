//! The rules for models: the `models:` section (ids, duplicates by case, the limit), one
//! model's keys, its `base:` chain, and the parts of a model entry (`files`, `requires`,
//! `config`, `hooks`), with `files:` checked against what the source can download.

use std::collections::{BTreeMap, BTreeSet};

use serde_saphyr::Spanned;

use super::super::model::*;
use super::super::node::Node;
use super::checker::{Checker, Fields, quoted_list, spanned_str};
use super::sources::check_source;
use super::types::check_type_ref;
use super::{FILE_KEYS, HOOK_KEYS, MAX_MODELS, MODEL_KEYS, REQUIRES_KEYS};
use crate::diagnostic::closest;
use crate::names::{ModelId, PathSet, RelPath, TypeName};

/// Checked models, each with the location of its id for later cross-reference messages.
pub(super) type Models = BTreeMap<ModelId, (Spanned<String>, ModelEntry)>;

/// The `models:` section: each entry checked, ids unique regardless of case, `base:` resolved.
pub(super) fn check_models(
    c: &mut Checker,
    node: &Spanned<Node>,
    known_types: &[String],
) -> Models {
    let mut models = Models::new();
    if matches!(node.value, Node::Null) {
        return models;
    }
    let Some(entries) = c.map(node, "`models`") else {
        return models;
    };
    if entries.len() > MAX_MODELS {
        c.report(
            &node.referenced,
            "manifest::too_many_models",
            format!(
                "the manifest declares {} models; the limit is {MAX_MODELS}",
                entries.len()
            ),
            Some("split the project into several manifests".to_owned()),
        );
        return models;
    }
    let mut folded = BTreeMap::<String, String>::new();
    let mut bases = Vec::new();
    for (key, value) in entries {
        let id = c.model_id(key, "model id");
        let entry = check_model(c, key, value, known_types);
        let (Some(id), Some((entry, base))) = (id, entry) else {
            continue;
        };
        if is_repeated_id(c, &mut folded, key, &id) {
            continue;
        }
        if let Some(base) = base {
            bases.push((id.clone(), base));
        }
        models.insert(id, (key.clone(), entry));
    }
    check_bases(c, &mut models, bases);
    models
}

/// Whether `id` was declared before, in any case (`folded` holds the ids seen, lowercased);
/// reports it if so.
fn is_repeated_id(
    c: &mut Checker,
    folded: &mut BTreeMap<String, String>,
    key: &Spanned<String>,
    id: &ModelId,
) -> bool {
    let Some(first) = folded.insert(id.as_str().to_ascii_lowercase(), id.to_string()) else {
        return false;
    };
    let message = if first == id.as_str() {
        format!("model `{id}` is declared twice")
    } else {
        format!("model ids `{first}` and `{id}` differ only in case")
    };
    c.report(
        &key.referenced,
        "manifest::duplicate_model",
        message,
        Some(
            "ids name directories, which some filesystems do not tell apart by case; rename one"
                .to_owned(),
        ),
    );
    true
}

/// Resolves every `base:` against the declared models, refusing unknown ids and cycles.
pub(super) fn check_bases(
    c: &mut Checker,
    models: &mut Models,
    bases: Vec<(ModelId, Spanned<String>)>,
) {
    let names: Vec<String> = models.keys().map(|k| k.to_string()).collect();
    for (id, base) in bases {
        let Some(base_id) = c.model_id(&base, "`base`") else {
            continue;
        };
        if !models.contains_key(&base_id) {
            let help = match closest(&base.value, names.iter().map(String::as_str)) {
                Some(near) => format!("did you mean `{near}`?"),
                None => "declare the base model under `models:` too".to_owned(),
            };
            c.report(
                &base.referenced,
                "manifest::unknown_base",
                format!("model `{id}` has base `{base_id}`, which is not declared"),
                Some(help),
            );
            continue;
        }
        if let Some((_, entry)) = models.get_mut(&id) {
            entry.base = Some(base_id);
        }
    }
    for (id, (key, _)) in models.iter() {
        let mut seen = BTreeSet::from([id.clone()]);
        let mut next = models.get(id).and_then(|(_, e)| e.base.clone());
        while let Some(b) = next {
            if !seen.insert(b.clone()) {
                c.report(
                    &key.referenced,
                    "manifest::base_cycle",
                    format!("model `{id}` is its own base through a chain of `base:` entries"),
                    Some("a base must lead to a model without a base".to_owned()),
                );
                break;
            }
            next = models.get(&b).and_then(|(_, e)| e.base.clone());
        }
    }
}

/// One model entry: its keys, `type`, `source` and parts; the `base:` it names is returned for [`check_bases`].
pub(super) fn check_model(
    c: &mut Checker,
    key: &Spanned<String>,
    node: &Spanned<Node>,
    known_types: &[String],
) -> Option<(ModelEntry, Option<Spanned<String>>)> {
    let what = format!("model `{}`", key.value);
    let entries = c.map(node, &what)?;
    let f = c.fields(entries, MODEL_KEYS, &what);

    let kind = model_kind(c, key, f.get("type"), &what, known_types);
    let source = model_source(c, key, f.get("source"), &what);
    let description = f
        .get("description")
        .and_then(|n| c.string(n, "`description`"));
    let files = f
        .get("files")
        .map(|n| check_files(c, n, &what))
        .unwrap_or_default();
    let requires = f
        .get("requires")
        .map(|n| check_requires(c, n, &what))
        .unwrap_or_default();
    let config = f
        .get("config")
        .map(|n| check_config(c, n, &what))
        .unwrap_or_default();
    let hooks = f
        .get("hooks")
        .map(|n| check_hooks(c, n, &what))
        .unwrap_or_default();
    let base = f.get("base").map(spanned_str);

    let source = source?;
    check_files_against_source(c, &f, &source, &files, &what);
    Some((
        ModelEntry {
            kind: kind?,
            description,
            source,
            files,
            requires,
            config,
            hooks,
            base: None,
        },
        base,
    ))
}

/// A model's `type:`, which must be there and be known.
fn model_kind(
    c: &mut Checker,
    key: &Spanned<String>,
    node: Option<&Spanned<Node>>,
    what: &str,
    known_types: &[String],
) -> Option<TypeName> {
    let Some(node) = node else {
        c.report(
            &key.referenced,
            "manifest::missing_type",
            format!("{what} has no `type`"),
            Some(format!(
                "add `type:` with one of {}",
                quoted_list(known_types)
            )),
        );
        return None;
    };
    check_type_ref(c, node, known_types)
}

/// A model's `source:`, which must be there.
fn model_source(
    c: &mut Checker,
    key: &Spanned<String>,
    node: Option<&Spanned<Node>>,
    what: &str,
) -> Option<Source> {
    let Some(node) = node else {
        c.report(
            &key.referenced,
            "manifest::missing_source",
            format!("{what} has no `source`"),
            Some(
                "add `source:` with one of `hf: org/name`, `url: https://…` or `ollama: name:tag`"
                    .to_owned(),
            ),
        );
        return None;
    };
    check_source(c, node, what)
}

/// `files:`: safe paths, none two spellings of one file, each with optional checksums and size.
pub(super) fn check_files(
    c: &mut Checker,
    node: &Spanned<Node>,
    what: &str,
) -> BTreeMap<RelPath, FileExpect> {
    let mut files = BTreeMap::new();
    let Some(entries) = c.map(node, &format!("the `files` of {what}")) else {
        return files;
    };
    let mut spellings = PathSet::default();
    for (key, value) in entries {
        let path = c.rel_path(key, "file path");
        if let Some(p) = &path
            && let Err(collision) = spellings.insert(p)
        {
            c.report(
                &key.referenced,
                "manifest::path_collision",
                format!("in the `files` of {what}, {collision}"),
                Some(
                    "macOS and Windows take them for one file; keep the spelling the source uses and remove the other"
                        .to_owned(),
                ),
            );
            continue;
        }
        let file_what = format!("file `{}` of {what}", key.value);
        let Some(e) = c.map(value, &file_what) else {
            continue;
        };
        let f = c.fields(e, FILE_KEYS, &file_what);
        let expect = FileExpect {
            sha256: f.get("sha256").and_then(|n| c.sha256(n, "`sha256`")),
            md5: f.get("md5").and_then(|n| c.md5(n, "`md5`")),
            size: f.get("size").and_then(|n| c.size(n, "`size`")),
        };
        if let Some(path) = path {
            files.insert(path, expect);
        }
    }
    files
}

/// `files:` must agree with the source: an url source has one file, Ollama pins by digest.
pub(super) fn check_files_against_source(
    c: &mut Checker,
    f: &Fields<'_>,
    source: &Source,
    files: &BTreeMap<RelPath, FileExpect>,
    what: &str,
) {
    let Some(node) = f.get("files") else { return };
    match source {
        Source::Ollama(_) if !files.is_empty() => c.report(
            &node.referenced,
            "manifest::files_on_ollama",
            format!("{what} is an Ollama model; `files` does not apply"),
            Some(
                "Ollama models are pinned by their manifest digest in models.lock; remove `files`"
                    .to_owned(),
            ),
        ),
        Source::Url(u) => {
            for (path, expect) in files {
                if *path != u.file {
                    c.report(
                        &node.referenced,
                        "manifest::unknown_file",
                        format!(
                            "{what} downloads one file, `{}`; `{path}` is not it",
                            u.file
                        ),
                        Some(format!(
                            "list checksums under `files: {{ {}: … }}` or on the source",
                            u.file
                        )),
                    );
                } else if let (Some(a), Some(b)) = (expect.sha256, u.sha256)
                    && a != b
                {
                    c.report(
                        &node.referenced,
                        "manifest::conflicting_checksum",
                        format!("{what} gives two different sha256 for `{path}`"),
                        Some("keep one of them".to_owned()),
                    );
                }
            }
        }
        _ => {}
    }
}

/// `requires:`: sizes of GPU memory and RAM.
pub(super) fn check_requires(c: &mut Checker, node: &Spanned<Node>, what: &str) -> Requirements {
    let what = format!("the `requires` of {what}");
    let Some(e) = c.map(node, &what) else {
        return Requirements::default();
    };
    let f = c.fields(e, REQUIRES_KEYS, &what);
    Requirements {
        gpu_memory: f.get("gpu_memory").and_then(|n| c.size(n, "`gpu_memory`")),
        ram: f.get("ram").and_then(|n| c.size(n, "`ram`")),
    }
}

/// `config:`: any mapping, kept as JSON for the hooks.
pub(super) fn check_config(
    c: &mut Checker,
    node: &Spanned<Node>,
    what: &str,
) -> BTreeMap<String, serde_json::Value> {
    match &node.value {
        Node::Null => BTreeMap::new(),
        Node::Map(entries) => entries
            .iter()
            .map(|(k, v)| (k.value.clone(), v.value.to_json()))
            .collect(),
        _ => {
            c.wrong_kind(node, &format!("the `config` of {what}"), "a mapping");
            BTreeMap::new()
        }
    }
}

/// `hooks:`: the commands run on activation, deactivation and reload.
pub(super) fn check_hooks(c: &mut Checker, node: &Spanned<Node>, what: &str) -> Hooks {
    let what = format!("the `hooks` of {what}");
    let Some(e) = c.map(node, &what) else {
        return Hooks::default();
    };
    let f = c.fields(e, HOOK_KEYS, &what);
    Hooks {
        activate: f.get("activate").and_then(|n| c.string(n, "`activate`")),
        deactivate: f
            .get("deactivate")
            .and_then(|n| c.string(n, "`deactivate`")),
        reload: f.get("reload").and_then(|n| c.string(n, "`reload`")),
        rollback_on_failure: f
            .get("rollback_on_failure")
            .and_then(|n| c.boolean(n, "`rollback_on_failure`"))
            .unwrap_or(false),
    }
}
