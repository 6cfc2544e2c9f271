//! From a spanned YAML tree to a [`Manifest`], collecting every problem on the way.
//!
//! The walk never stops at the first mistake: each section is checked, each problem recorded
//! with its location and a `help:` line, and the manifest is returned only when there were
//! none. The accepted keys of each mapping are listed here (and checked against the JSON
//! Schema by a test), which is what lets an unknown key get "did you mean" from its siblings.

use std::collections::{BTreeMap, BTreeSet};

use serde_saphyr::Spanned;

use super::model::*;
use super::node::Node;
use crate::diagnostic::{At, Problem, closest};
use crate::digest::{Md5, Sha256};
use crate::names::OllamaRef;
use crate::names::{ModelId, PathSet, RelPath, TypeName};

pub(crate) const ROOT_KEYS: &[&str] =
    &["version", "store", "hf_cache", "types", "models", "active"];
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
pub(crate) const FILE_KEYS: &[&str] = &["sha256", "md5", "size"];
pub(crate) const REQUIRES_KEYS: &[&str] = &["gpu_memory", "ram"];
pub(crate) const HOOK_KEYS: &[&str] = &["activate", "deactivate", "reload", "rollback_on_failure"];
const SOURCE_KINDS: &[&str] = &["hf", "url", "ollama"];

/// Most models one manifest may declare.
pub const MAX_MODELS: usize = 10_000;

type Entries = [(Spanned<String>, Spanned<Node>)];

/// Collects problems while the tree is walked.
#[derive(Default)]
struct Checker {
    problems: Vec<Problem>,
}

/// The fields of one mapping, after unknown and duplicate keys were reported.
struct Fields<'n> {
    entries: Vec<&'n (Spanned<String>, Spanned<Node>)>,
}

impl<'n> Fields<'n> {
    fn get(&self, key: &str) -> Option<&'n Spanned<Node>> {
        self.entries
            .iter()
            .find(|(k, _)| k.value == key)
            .map(|(_, v)| v)
    }
}

impl Checker {
    fn report(
        &mut self,
        at: &serde_saphyr::Location,
        code: &'static str,
        message: String,
        help: Option<String>,
    ) {
        self.problems.push(Problem {
            code,
            message,
            at: At::of(at),
            help,
        });
    }

    fn wrong_kind(&mut self, node: &Spanned<Node>, what: &str, expected: &str) {
        let help = match &node.value {
            Node::Float(_) | Node::Bool(_) | Node::Int(_) if expected.contains("string") => {
                Some("put the value in quotes to make it a string".to_owned())
            }
            _ => None,
        };
        self.report(
            &node.referenced,
            "manifest::wrong_type",
            format!("{what} must be {expected}, found {}", node.value.kind()),
            help,
        );
    }

    /// The entries of a mapping, or a problem if the node is something else.
    fn map<'n>(&mut self, node: &'n Spanned<Node>, what: &str) -> Option<&'n Entries> {
        match &node.value {
            Node::Map(entries) => Some(entries),
            _ => {
                self.wrong_kind(node, what, "a mapping");
                None
            }
        }
    }

    /// Reports unknown and repeated keys of a mapping and returns the known ones.
    fn fields<'n>(&mut self, entries: &'n Entries, known: &[&str], what: &str) -> Fields<'n> {
        let mut seen = BTreeMap::<&str, u64>::new();
        let mut kept = Vec::new();
        for entry in entries {
            let key = &entry.0;
            if !known.contains(&key.value.as_str()) {
                let help = match closest(&key.value, known.iter().copied()) {
                    Some(near) => format!("did you mean `{near}`?"),
                    None => format!("{what} accepts: {}", quoted(known)),
                };
                self.report(
                    &key.referenced,
                    "manifest::unknown_key",
                    format!("unknown key `{}` in {what}", key.value),
                    Some(help),
                );
                continue;
            }
            if let Some(line) = seen.insert(&key.value, key.referenced.line()) {
                self.report(
                    &key.referenced,
                    "manifest::duplicate_key",
                    format!(
                        "`{}` appears twice in {what} (first on line {line})",
                        key.value
                    ),
                    Some("remove one of them".to_owned()),
                );
                continue;
            }
            kept.push(entry);
        }
        Fields { entries: kept }
    }

    fn string(&mut self, node: &Spanned<Node>, what: &str) -> Option<String> {
        match &node.value {
            Node::Str(s) => Some(s.clone()),
            Node::Int(i) => Some(i.to_string()),
            _ => {
                self.wrong_kind(node, what, "a string");
                None
            }
        }
    }

    fn boolean(&mut self, node: &Spanned<Node>, what: &str) -> Option<bool> {
        match &node.value {
            Node::Bool(b) => Some(*b),
            _ => {
                self.wrong_kind(node, what, "`true` or `false`");
                None
            }
        }
    }

    /// A list of strings; a single string is accepted as a list of one.
    fn strings(&mut self, node: &Spanned<Node>, what: &str) -> Vec<String> {
        match &node.value {
            Node::Str(s) => vec![s.clone()],
            Node::Seq(items) => items.iter().filter_map(|i| self.string(i, what)).collect(),
            _ => {
                self.wrong_kind(node, what, "a list of strings");
                Vec::new()
            }
        }
    }

    fn size(&mut self, node: &Spanned<Node>, what: &str) -> Option<u64> {
        let parsed = match &node.value {
            Node::Int(i) => u64::try_from(*i).ok(),
            Node::Str(s) => s
                .trim()
                .parse::<bytesize::ByteSize>()
                .ok()
                .map(|b| b.as_u64()),
            _ => None,
        };
        if parsed.is_none() {
            let shown = match &node.value {
                Node::Str(s) => format!("`{}`", s.escape_debug()),
                Node::Int(i) => i.to_string(),
                other => other.kind().to_owned(),
            };
            self.report(
                &node.referenced,
                "manifest::bad_size",
                format!("{what} is not a size: {shown}"),
                Some("write a size such as `8GiB`, `512MB` or a number of bytes".to_owned()),
            );
        }
        parsed
    }

    fn sha256(&mut self, node: &Spanned<Node>, what: &str) -> Option<Sha256> {
        let text = self.string(node, what)?;
        match Sha256::parse(&text) {
            Ok(d) => Some(d),
            Err(e) => {
                self.report(
                    &node.referenced,
                    "manifest::bad_digest",
                    format!("{what} is not a sha256: {e}"),
                    Some("a sha256 is 64 hex digits; copy it from the model page or run `sha256sum FILE`".to_owned()),
                );
                None
            }
        }
    }

    fn md5(&mut self, node: &Spanned<Node>, what: &str) -> Option<Md5> {
        let text = self.string(node, what)?;
        match Md5::parse(&text) {
            Ok(d) => Some(d),
            Err(e) => {
                self.report(
                    &node.referenced,
                    "manifest::bad_digest",
                    format!("{what} is not an md5: {e}"),
                    Some(
                        "an md5 is 32 hex digits; prefer a sha256 where the source publishes one"
                            .to_owned(),
                    ),
                );
                None
            }
        }
    }

    fn model_id(&mut self, node: &Spanned<String>, what: &str) -> Option<ModelId> {
        match ModelId::parse(&node.value) {
            Ok(id) => Some(id),
            Err(e) => {
                self.report(
                    &node.referenced,
                    "manifest::bad_name",
                    format!("`{}` is not a valid {what}: {e}", node.value.escape_debug()),
                    Some(
                        "ids use letters, digits, `.`, `_` and `-`, at most 64 characters"
                            .to_owned(),
                    ),
                );
                None
            }
        }
    }

    fn rel_path(&mut self, node: &Spanned<String>, what: &str) -> Option<RelPath> {
        match RelPath::parse(&node.value) {
            Ok(p) => Some(p),
            Err(e) => {
                self.report(
                    &node.referenced,
                    "manifest::unsafe_path",
                    format!("`{}` is not a safe {what}: {e}", node.value.escape_debug()),
                    Some(
                        "file paths are relative to the model directory, with `/` between folders"
                            .to_owned(),
                    ),
                );
                None
            }
        }
    }
}

fn quoted(keys: &[&str]) -> String {
    keys.iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn spanned_str(node: &Spanned<Node>) -> Spanned<String> {
    let text = match &node.value {
        Node::Str(s) => s.clone(),
        Node::Int(i) => i.to_string(),
        other => other.kind().to_owned(),
    };
    Spanned::new(text, node.referenced, node.defined)
}

/// Checks a parsed document; returns the manifest, or every problem found.
pub fn validate(root: &Spanned<Node>) -> Result<Manifest, Vec<Problem>> {
    let mut c = Checker::default();
    let manifest = check_root(&mut c, root);
    match manifest {
        Some(m) if c.problems.is_empty() => Ok(m),
        _ => {
            c.problems.sort_by_key(|p| p.at);
            Err(c.problems)
        }
    }
}

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

    let version = match f.get("version") {
        None => {
            c.report(
                &root.referenced,
                "manifest::missing_version",
                "the manifest has no `version`".to_owned(),
                Some("add `version: 1` at the top of the file".to_owned()),
            );
            None
        }
        Some(node) => match node.value {
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
        },
    };

    let store = f.get("store").and_then(|n| c.string(n, "`store`"));
    let hf_cache = f
        .get("hf_cache")
        .and_then(|n| c.boolean(n, "`hf_cache`"))
        .unwrap_or(false);
    let types = f
        .get("types")
        .map(|n| check_types(c, n))
        .unwrap_or_default();
    let mut known_types: Vec<String> = BUILTIN_TYPES.iter().map(|t| (*t).to_owned()).collect();
    known_types.extend(types.keys().map(|t| t.to_string()));

    let models = f
        .get("models")
        .map(|n| check_models(c, n, &known_types))
        .unwrap_or_default();
    let active = f
        .get("active")
        .map(|n| check_active(c, n, &known_types, &models))
        .unwrap_or_default();

    Some(Manifest {
        version: version?,
        store,
        hf_cache,
        types,
        models: models
            .into_iter()
            .map(|(id, (_, entry))| (id, entry))
            .collect(),
        active,
    })
}

fn check_types(c: &mut Checker, node: &Spanned<Node>) -> BTreeMap<TypeName, TypeDecl> {
    let mut types = BTreeMap::new();
    let Some(entries) = c.map(node, "`types`") else {
        return types;
    };
    for (key, value) in entries {
        let name = match TypeName::parse(&key.value) {
            Ok(n) => n,
            Err(e) => {
                c.report(
                    &key.referenced,
                    "manifest::bad_name",
                    format!(
                        "`{}` is not a valid type name: {e}",
                        key.value.escape_debug()
                    ),
                    Some(
                        "type names use lowercase letters, digits and `_`, like `image_gen`"
                            .to_owned(),
                    ),
                );
                continue;
            }
        };
        if BUILTIN_TYPES.contains(&name.as_str()) {
            c.report(
                &key.referenced,
                "manifest::builtin_type",
                format!("`{name}` is a built-in type"),
                Some(format!(
                    "remove it from `types:`; the built-in types are {}",
                    quoted(BUILTIN_TYPES)
                )),
            );
            continue;
        }
        let mut decl = TypeDecl::default();
        if !matches!(value.value, Node::Null)
            && let Some(e) = c.map(value, &format!("type `{name}`"))
        {
            let f = c.fields(e, TYPE_KEYS, &format!("type `{name}`"));
            decl.description = f
                .get("description")
                .and_then(|n| c.string(n, "`description`"));
        }
        if types.insert(name.clone(), decl).is_some() {
            c.report(
                &key.referenced,
                "manifest::duplicate_key",
                format!("type `{name}` is declared twice"),
                Some("remove one of them".to_owned()),
            );
        }
    }
    types
}

/// Checked models, each with the location of its id for later cross-reference messages.
type Models = BTreeMap<ModelId, (Spanned<String>, ModelEntry)>;

fn check_models(c: &mut Checker, node: &Spanned<Node>, known_types: &[String]) -> Models {
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
        if let Some(first) = folded.insert(id.as_str().to_ascii_lowercase(), id.to_string()) {
            let message = if first == id.as_str() {
                format!("model `{id}` is declared twice")
            } else {
                format!("model ids `{first}` and `{id}` differ only in case")
            };
            c.report(
                &key.referenced,
                "manifest::duplicate_model",
                message,
                Some("ids name directories, which some filesystems do not tell apart by case; rename one".to_owned()),
            );
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

/// Resolves every `base:` against the declared models, refusing unknown ids and cycles.
fn check_bases(c: &mut Checker, models: &mut Models, bases: Vec<(ModelId, Spanned<String>)>) {
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

fn check_model(
    c: &mut Checker,
    key: &Spanned<String>,
    node: &Spanned<Node>,
    known_types: &[String],
) -> Option<(ModelEntry, Option<Spanned<String>>)> {
    let what = format!("model `{}`", key.value);
    let entries = c.map(node, &what)?;
    let f = c.fields(entries, MODEL_KEYS, &what);

    let kind = match f.get("type") {
        None => {
            c.report(
                &key.referenced,
                "manifest::missing_type",
                format!("{what} has no `type`"),
                Some(format!(
                    "add `type:` with one of {}",
                    quoted_list(known_types)
                )),
            );
            None
        }
        Some(n) => check_type_ref(c, n, known_types),
    };
    let source = match f.get("source") {
        None => {
            c.report(
                &key.referenced,
                "manifest::missing_source",
                format!("{what} has no `source`"),
                Some("add `source:` with one of `hf: org/name`, `url: https://…` or `ollama: name:tag`".to_owned()),
            );
            None
        }
        Some(n) => check_source(c, n, &what),
    };
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

fn quoted_list(items: &[String]) -> String {
    quoted(&items.iter().map(String::as_str).collect::<Vec<_>>())
}

fn check_type_ref(
    c: &mut Checker,
    node: &Spanned<Node>,
    known_types: &[String],
) -> Option<TypeName> {
    let text = c.string(node, "`type`")?;
    if known_types.contains(&text) {
        return TypeName::parse(&text).ok();
    }
    let help = match closest(&text, known_types.iter().map(String::as_str)) {
        Some(near) => format!("did you mean `{near}`?"),
        None => format!(
            "use one of {}, or declare `{text}` under `types:`",
            quoted_list(known_types)
        ),
    };
    c.report(
        &node.referenced,
        "manifest::unknown_type",
        format!("unknown type `{text}`"),
        Some(help),
    );
    None
}

fn check_source(c: &mut Checker, node: &Spanned<Node>, what: &str) -> Option<Source> {
    let entries = c.map(node, &format!("the source of {what}"))?;
    let kinds: Vec<&(Spanned<String>, Spanned<Node>)> = entries
        .iter()
        .filter(|(k, _)| SOURCE_KINDS.contains(&k.value.as_str()))
        .collect();
    let kind = match kinds.as_slice() {
        [] => {
            c.report(
                &node.referenced,
                "manifest::no_source",
                format!("the source of {what} names no `hf`, `url` or `ollama`"),
                Some(
                    "add one of `hf: org/name`, `url: https://…` or `ollama: name:tag`".to_owned(),
                ),
            );
            return None;
        }
        [one] => one.0.value.clone(),
        [first, second, ..] => {
            c.report(
                &second.0.referenced,
                "manifest::two_sources",
                format!(
                    "{what} has two sources, `{}` and `{}`",
                    first.0.value, second.0.value
                ),
                Some(
                    "a model has exactly one source; declare a second model for the other one"
                        .to_owned(),
                ),
            );
            return None;
        }
    };
    let source_what = format!("the `{kind}` source of {what}");
    let known = match kind.as_str() {
        "hf" => HF_KEYS,
        "url" => URL_KEYS,
        _ => OLLAMA_KEYS,
    };
    report_foreign_keys(c, entries, known, &kind, &source_what);
    let own: Vec<_> = entries
        .iter()
        .filter(|(k, _)| known.contains(&k.value.as_str()) || !is_any_source_key(&k.value))
        .cloned()
        .collect();
    let f = c.fields(&own, known, &source_what);
    match kind.as_str() {
        "hf" => check_hf(c, &f).map(Source::Hf),
        "url" => check_url(c, &f).map(Source::Url),
        _ => check_ollama(c, &f).map(Source::Ollama),
    }
}

fn is_any_source_key(key: &str) -> bool {
    [HF_KEYS, URL_KEYS, OLLAMA_KEYS]
        .iter()
        .any(|k| k.contains(&key))
}

/// Keys that belong to another kind of source (`revision` next to `url:`).
fn report_foreign_keys(c: &mut Checker, entries: &Entries, known: &[&str], kind: &str, what: &str) {
    for (key, _) in entries {
        if known.contains(&key.value.as_str())
            || !is_any_source_key(&key.value)
            || SOURCE_KINDS.contains(&key.value.as_str())
        {
            continue;
        }
        let owner = [("hf", HF_KEYS), ("url", URL_KEYS), ("ollama", OLLAMA_KEYS)]
            .iter()
            .find(|(_, keys)| keys.contains(&key.value.as_str()))
            .map_or("another", |(o, _)| o);
        c.report(
            &key.referenced,
            "manifest::unknown_key",
            format!("`{}` does not apply to {what}", key.value),
            Some(format!(
                "`{}` belongs to `{owner}` sources; a `{kind}` source accepts {}",
                key.value,
                quoted(known)
            )),
        );
    }
}

fn check_hf(c: &mut Checker, f: &Fields<'_>) -> Option<HfSource> {
    let repo_node = f.get("hf")?;
    let repo = c.string(repo_node, "`hf`")?;
    let valid = {
        let parts: Vec<&str> = repo.split('/').collect();
        parts.len() == 2
            && parts.iter().all(|p| {
                !p.is_empty()
                    && p.len() <= 96
                    && p.starts_with(|c: char| c.is_ascii_alphanumeric())
                    && p.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
                    && !p.contains("..")
                    && !p.contains("--")
            })
    };
    if !valid {
        c.report(
            &repo_node.referenced,
            "manifest::bad_repo",
            format!("`{}` is not a Hub repository name", repo.escape_debug()),
            Some("write it as `org/name`, as in the model page's URL: `stabilityai/stable-diffusion-xl-base-1.0`".to_owned()),
        );
    }
    let revision = match f.get("revision") {
        None => "main".to_owned(),
        Some(n) => {
            let r = c.string(n, "`revision`")?;
            if r.is_empty() || r.len() > 256 || r.contains("..") || r.chars().any(char::is_control)
            {
                c.report(
                    &n.referenced,
                    "manifest::bad_revision",
                    format!("`{}` is not a valid revision", r.escape_debug()),
                    Some("use a branch (`main`), a tag or a 40-hex commit".to_owned()),
                );
                return None;
            }
            r
        }
    };
    let repo_type = match f.get("repo_type") {
        None => RepoType::Model,
        Some(n) => match c.string(n, "`repo_type`").as_deref() {
            Some("model") => RepoType::Model,
            Some("dataset") => RepoType::Dataset,
            Some("space") => RepoType::Space,
            Some(other) => {
                c.report(
                    &n.referenced,
                    "manifest::bad_repo_type",
                    format!("`{other}` is not a repository type"),
                    Some("use `model`, `dataset` or `space`".to_owned()),
                );
                return None;
            }
            None => return None,
        },
    };
    let include = f
        .get("include")
        .map(|n| c.strings(n, "`include`"))
        .unwrap_or_default();
    let exclude = f
        .get("exclude")
        .map(|n| c.strings(n, "`exclude`"))
        .unwrap_or_default();
    valid.then_some(HfSource {
        hf: repo,
        revision,
        repo_type,
        include,
        exclude,
    })
}

fn check_url(c: &mut Checker, f: &Fields<'_>) -> Option<UrlSource> {
    let node = f.get("url")?;
    let text = c.string(node, "`url`")?;
    let last_segment = if UrlSource::is_relative(&text) {
        if text.chars().any(char::is_control) || text.contains('\\') {
            c.report(
                &node.referenced,
                "manifest::bad_url",
                format!("`{}` is not a usable relative path", text.escape_debug()),
                Some("write a path relative to models.yaml with `/` between folders, like `./weights/model.bin`".to_owned()),
            );
            return None;
        }
        text.rsplit('/').next().unwrap_or_default().to_owned()
    } else {
        match url::Url::parse(&text) {
            Ok(u) if matches!(u.scheme(), "http" | "https" | "file") => u
                .path_segments()
                .and_then(|mut s| s.next_back())
                .map(|s| {
                    percent_encoding::percent_decode_str(s)
                        .decode_utf8_lossy()
                        .into_owned()
                })
                .unwrap_or_default(),
            Ok(u) => {
                c.report(
                    &node.referenced,
                    "manifest::bad_url",
                    format!("`{}` URLs are not supported", u.scheme()),
                    Some("use an `https://`, `http://` or `file://` URL, or a path relative to models.yaml such as `./weights/model.bin`".to_owned()),
                );
                return None;
            }
            Err(e) => {
                c.report(
                    &node.referenced,
                    "manifest::bad_url",
                    format!("`{}` is not a URL: {e}", text.escape_debug()),
                    Some("write a full URL such as `https://example.com/model.safetensors`, or a path starting with `./`".to_owned()),
                );
                return None;
            }
        }
    };
    let sha256 = f.get("sha256").and_then(|n| c.sha256(n, "`sha256`"));
    let md5 = f.get("md5").and_then(|n| c.md5(n, "`md5`"));
    let file = match f.get("file") {
        Some(n) => c.rel_path(&spanned_str(n), "file name")?,
        None => match RelPath::parse(&last_segment) {
            Ok(p) if !last_segment.contains('/') => p,
            _ => {
                c.report(
                    &node.referenced,
                    "manifest::url_file_name",
                    "the URL does not end in a usable file name".to_owned(),
                    Some("add `file: NAME` to say what the file is called in the store".to_owned()),
                );
                return None;
            }
        },
    };
    Some(UrlSource {
        url: text,
        sha256,
        md5,
        file,
    })
}

fn check_ollama(c: &mut Checker, f: &Fields<'_>) -> Option<OllamaSource> {
    let node = f.get("ollama")?;
    let name = c.string(node, "`ollama`")?;
    if let Err(e) = OllamaRef::parse(&name) {
        c.report(
            &node.referenced,
            "manifest::bad_ollama_name",
            format!("`{}` is not an Ollama model name: {e}", name.escape_debug()),
            Some("write it as `ollama pull` takes it: `llama3:8b`, `user/model:tag`".to_owned()),
        );
        return None;
    }
    let keep_alive = f.get("keep_alive").and_then(|n| match &n.value {
        Node::Int(i) => Some(i.to_string()),
        _ => c.string(n, "`keep_alive`"),
    });
    Some(OllamaSource {
        ollama: name,
        keep_alive,
    })
}

fn check_files(c: &mut Checker, node: &Spanned<Node>, what: &str) -> BTreeMap<RelPath, FileExpect> {
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
fn check_files_against_source(
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

fn check_requires(c: &mut Checker, node: &Spanned<Node>, what: &str) -> Requirements {
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

fn check_config(
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

fn check_hooks(c: &mut Checker, node: &Spanned<Node>, what: &str) -> Hooks {
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

fn check_active(
    c: &mut Checker,
    node: &Spanned<Node>,
    known_types: &[String],
    models: &Models,
) -> BTreeMap<TypeName, ModelId> {
    let mut active = BTreeMap::new();
    if matches!(node.value, Node::Null) {
        return active;
    }
    let Some(entries) = c.map(node, "`active`") else {
        return active;
    };
    let mut seen = BTreeSet::new();
    for (key, value) in entries {
        let type_node = Spanned::new(Node::Str(key.value.clone()), key.referenced, key.defined);
        let Some(kind) = check_type_ref(c, &type_node, known_types) else {
            continue;
        };
        if !seen.insert(kind.clone()) {
            c.report(
                &key.referenced,
                "manifest::duplicate_key",
                format!("`active` names a model for `{kind}` twice"),
                Some("a type has at most one active model; keep one line".to_owned()),
            );
            continue;
        }
        if matches!(value.value, Node::Null) {
            continue;
        }
        let Some(text) = c.string(value, "an active model") else {
            continue;
        };
        let Ok(id) = ModelId::parse(&text) else {
            c.model_id(&spanned_str(value), "model id");
            continue;
        };
        match models.get(&id) {
            None => {
                let same_type: Vec<&str> = models
                    .iter()
                    .filter(|(_, (_, e))| e.kind == kind)
                    .map(|(id, _)| id.as_str())
                    .collect();
                let help = match closest(&text, same_type.iter().copied()) {
                    Some(near) => format!("did you mean `{near}`?"),
                    None if same_type.is_empty() => {
                        format!("declare a `{kind}` model under `models:` first")
                    }
                    None => format!("the `{kind}` models are {}", quoted(&same_type)),
                };
                c.report(
                    &value.referenced,
                    "manifest::unknown_active",
                    format!("`active.{kind}` names `{id}`, which is not declared"),
                    Some(help),
                );
            }
            Some((_, entry)) if entry.kind != kind => {
                c.report(
                    &value.referenced,
                    "manifest::active_wrong_type",
                    format!(
                        "`active.{kind}` names `{id}`, which is a `{}` model",
                        entry.kind
                    ),
                    Some(format!(
                        "pick a `{kind}` model, or move it to `active.{}`",
                        entry.kind
                    )),
                );
            }
            Some(_) => {
                active.insert(kind, id);
            }
        }
    }
    active
}
