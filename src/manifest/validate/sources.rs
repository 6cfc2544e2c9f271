//! The rules for a model's `source:`: exactly one kind (`hf`, `url`, `ollama`, `oci`), keys
//! of another kind reported as such, and each kind's own checks (Hub repository names and
//! revisions, URLs and the file name they give, Ollama names, OCI references).

use serde_saphyr::Spanned;

use super::super::model::*;
use super::super::node::Node;
use super::checker::{Checker, Entries, Fields, quoted, spanned_str};
use super::{HF_KEYS, OCI_KEYS, OLLAMA_KEYS, SOURCE_KINDS, URL_KEYS};
use crate::names::{OllamaRef, RelPath};

/// A model's `source:`: exactly one kind, that kind's keys only, and the kind's own checks.
pub(super) fn check_source(c: &mut Checker, node: &Spanned<Node>, what: &str) -> Option<Source> {
    let entries = c.map(node, &format!("the source of {what}"))?;
    let kind = source_kind(c, node, entries, what)?;
    let source_what = format!("the `{kind}` source of {what}");
    let known = match kind.as_str() {
        "hf" => HF_KEYS,
        "url" => URL_KEYS,
        "oci" => OCI_KEYS,
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
        "oci" => check_oci(c, &f).map(Source::Oci),
        _ => check_ollama(c, &f).map(Source::Ollama),
    }
}

/// The one kind key (`hf`, `url`, `ollama`, `oci`) of a source; none or two are reported.
fn source_kind(
    c: &mut Checker,
    node: &Spanned<Node>,
    entries: &Entries,
    what: &str,
) -> Option<String> {
    let kinds: Vec<&(Spanned<String>, Spanned<Node>)> = entries
        .iter()
        .filter(|(k, _)| SOURCE_KINDS.contains(&k.value.as_str()))
        .collect();
    match kinds.as_slice() {
        [] => {
            c.report(
                &node.referenced,
                "manifest::no_source",
                format!("the source of {what} names no `hf`, `url`, `ollama` or `oci`"),
                Some(
                    "add one of `hf: org/name`, `url: https://…`, `ollama: name:tag` or `oci: registry.example.com/team/name:tag`".to_owned(),
                ),
            );
            None
        }
        [one] => Some(one.0.value.clone()),
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
            None
        }
    }
}

/// Whether `key` belongs to some kind of source.
fn is_any_source_key(key: &str) -> bool {
    [HF_KEYS, URL_KEYS, OLLAMA_KEYS, OCI_KEYS]
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
        let owner = [
            ("hf", HF_KEYS),
            ("url", URL_KEYS),
            ("ollama", OLLAMA_KEYS),
            ("oci", OCI_KEYS),
        ]
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

/// An `hf:` source: a repository name, a revision, a repository type and file globs.
fn check_hf(c: &mut Checker, f: &Fields<'_>) -> Option<HfSource> {
    let repo_node = f.get("hf")?;
    let repo = c.string(repo_node, "`hf`")?;
    let valid = is_hub_repo_name(&repo);
    if !valid {
        c.report(
            &repo_node.referenced,
            "manifest::bad_repo",
            format!("`{}` is not a Hub repository name", repo.escape_debug()),
            Some("write it as `org/name`, as in the model page's URL: `stabilityai/stable-diffusion-xl-base-1.0`".to_owned()),
        );
    }
    let revision = hf_revision(c, f.get("revision"))?;
    let repo_type = hf_repo_type(c, f.get("repo_type"))?;
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

/// `org/name`, each part as the Hub allows it.
fn is_hub_repo_name(repo: &str) -> bool {
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
}

/// `revision:`, `main` when absent.
fn hf_revision(c: &mut Checker, node: Option<&Spanned<Node>>) -> Option<String> {
    let Some(n) = node else {
        return Some("main".to_owned());
    };
    let r = c.string(n, "`revision`")?;
    if r.is_empty() || r.len() > 256 || r.contains("..") || r.chars().any(char::is_control) {
        c.report(
            &n.referenced,
            "manifest::bad_revision",
            format!("`{}` is not a valid revision", r.escape_debug()),
            Some("use a branch (`main`), a tag or a 40-hex commit".to_owned()),
        );
        return None;
    }
    Some(r)
}

/// `repo_type:`, `model` when absent.
fn hf_repo_type(c: &mut Checker, node: Option<&Spanned<Node>>) -> Option<RepoType> {
    let Some(n) = node else {
        return Some(RepoType::Model);
    };
    match c.string(n, "`repo_type`")?.as_str() {
        "model" => Some(RepoType::Model),
        "dataset" => Some(RepoType::Dataset),
        "space" => Some(RepoType::Space),
        other => {
            c.report(
                &n.referenced,
                "manifest::bad_repo_type",
                format!("`{other}` is not a repository type"),
                Some("use `model`, `dataset` or `space`".to_owned()),
            );
            None
        }
    }
}

/// A `url:` source: an http(s) or file URL or a relative path, optional checksums, and the
/// name the file gets (`file:`, else the URL's last segment).
fn check_url(c: &mut Checker, f: &Fields<'_>) -> Option<UrlSource> {
    let node = f.get("url")?;
    let text = c.string(node, "`url`")?;
    let last_segment = url_last_segment(c, node, &text)?;
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

/// The last segment of a usable URL or relative path (percent-decoded); anything else is
/// reported.
fn url_last_segment(c: &mut Checker, node: &Spanned<Node>, text: &str) -> Option<String> {
    if UrlSource::is_relative(text) {
        if text.chars().any(char::is_control) || text.contains('\\') {
            c.report(
                &node.referenced,
                "manifest::bad_url",
                format!("`{}` is not a usable relative path", text.escape_debug()),
                Some("write a path relative to models.yaml with `/` between folders, like `./weights/model.bin`".to_owned()),
            );
            return None;
        }
        return Some(text.rsplit('/').next().unwrap_or_default().to_owned());
    }
    match url::Url::parse(text) {
        Ok(u) if matches!(u.scheme(), "http" | "https" | "file") => Some(
            u.path_segments()
                .and_then(|mut s| s.next_back())
                .map(|s| {
                    percent_encoding::percent_decode_str(s)
                        .decode_utf8_lossy()
                        .into_owned()
                })
                .unwrap_or_default(),
        ),
        Ok(u) => {
            c.report(
                &node.referenced,
                "manifest::bad_url",
                format!("`{}` URLs are not supported", u.scheme()),
                Some("use an `https://`, `http://` or `file://` URL, or a path relative to models.yaml such as `./weights/model.bin`".to_owned()),
            );
            None
        }
        Err(e) => {
            c.report(
                &node.referenced,
                "manifest::bad_url",
                format!("`{}` is not a URL: {e}", text.escape_debug()),
                Some("write a full URL such as `https://example.com/model.safetensors`, or a path starting with `./`".to_owned()),
            );
            None
        }
    }
}

/// An `ollama:` source: a name as `ollama pull` takes it, and an optional `keep_alive`.
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

/// An `oci:` source: a registry, a repository and a tag or sha256 digest, as
/// [`OciRef`](crate::registry::reference::OciRef) reads them.
fn check_oci(c: &mut Checker, f: &Fields<'_>) -> Option<OciSource> {
    let node = f.get("oci")?;
    let text = c.string(node, "`oci`")?;
    if let Err(why) = crate::registry::reference::OciRef::parse(&text) {
        c.report(
            &node.referenced,
            "manifest::bad_oci_reference",
            format!("`{}` is not an OCI reference: {why}", text.escape_debug()),
            Some("write it as `registry.example.com/team/name:tag` or `…/name@sha256:<64 hex>` (https), or `http://127.0.0.1:5000/team/name:tag` for a registry without TLS".to_owned()),
        );
        return None;
    }
    Some(OciSource { oci: text })
}
