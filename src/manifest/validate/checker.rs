//! The generic half of validation: a walker over the spanned YAML tree that knows kinds,
//! not rules. [`Checker`] collects problems with their locations; its methods read a node as
//! a mapping (reporting unknown keys with "did you mean" and repeated keys with both lines),
//! a string, a boolean, a list, a size, a digest, an id or a path, and report a wrong kind in
//! one way. Which keys a mapping accepts and what they mean is in the sibling rule files.

use std::collections::BTreeMap;

use serde_saphyr::Spanned;

use super::super::node::Node;
use crate::diagnostic::{At, Problem, closest};
use crate::digest::{Md5, Sha256};
use crate::names::{ModelId, RelPath};

/// The entries of a YAML mapping, keys and values with their spans.
pub(super) type Entries = [(Spanned<String>, Spanned<Node>)];

/// Collects problems while the tree is walked.
#[derive(Default)]
pub(super) struct Checker {
    pub(super) problems: Vec<Problem>,
}

/// The fields of one mapping, after unknown and duplicate keys were reported.
pub(super) struct Fields<'n> {
    entries: Vec<&'n (Spanned<String>, Spanned<Node>)>,
}

impl<'n> Fields<'n> {
    /// The value of `key`, if the mapping has it.
    pub(super) fn get(&self, key: &str) -> Option<&'n Spanned<Node>> {
        self.entries
            .iter()
            .find(|(k, _)| k.value == key)
            .map(|(_, v)| v)
    }
}

impl Checker {
    /// Records a problem at `at`, with its code, message and `help:` line.
    pub(super) fn report(
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

    /// Reports a value of the wrong YAML kind, suggesting quotes where a string was meant.
    pub(super) fn wrong_kind(&mut self, node: &Spanned<Node>, what: &str, expected: &str) {
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
    pub(super) fn map<'n>(&mut self, node: &'n Spanned<Node>, what: &str) -> Option<&'n Entries> {
        match &node.value {
            Node::Map(entries) => Some(entries),
            _ => {
                self.wrong_kind(node, what, "a mapping");
                None
            }
        }
    }

    /// Reports unknown and repeated keys of a mapping and returns the known ones.
    pub(super) fn fields<'n>(
        &mut self,
        entries: &'n Entries,
        known: &[&str],
        what: &str,
    ) -> Fields<'n> {
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

    /// A string (an integer reads as its digits), or a problem.
    pub(super) fn string(&mut self, node: &Spanned<Node>, what: &str) -> Option<String> {
        match &node.value {
            Node::Str(s) => Some(s.clone()),
            Node::Int(i) => Some(i.to_string()),
            _ => {
                self.wrong_kind(node, what, "a string");
                None
            }
        }
    }

    /// `true` or `false`, or a problem.
    pub(super) fn boolean(&mut self, node: &Spanned<Node>, what: &str) -> Option<bool> {
        match &node.value {
            Node::Bool(b) => Some(*b),
            _ => {
                self.wrong_kind(node, what, "`true` or `false`");
                None
            }
        }
    }

    /// A list of strings; a single string is accepted as a list of one.
    pub(super) fn strings(&mut self, node: &Spanned<Node>, what: &str) -> Vec<String> {
        match &node.value {
            Node::Str(s) => vec![s.clone()],
            Node::Seq(items) => items.iter().filter_map(|i| self.string(i, what)).collect(),
            _ => {
                self.wrong_kind(node, what, "a list of strings");
                Vec::new()
            }
        }
    }

    /// A size: bytes as an integer, or a string with a unit that bytesize reads (`8GiB`).
    pub(super) fn size(&mut self, node: &Spanned<Node>, what: &str) -> Option<u64> {
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

    /// A sha256 in hex, or a problem.
    pub(super) fn sha256(&mut self, node: &Spanned<Node>, what: &str) -> Option<Sha256> {
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

    /// An md5 in hex, or a problem.
    pub(super) fn md5(&mut self, node: &Spanned<Node>, what: &str) -> Option<Md5> {
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

    /// A model id as `names` allows it, or a problem.
    pub(super) fn model_id(&mut self, node: &Spanned<String>, what: &str) -> Option<ModelId> {
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

    /// A path inside a model directory as `names` allows it, or a problem.
    pub(super) fn rel_path(&mut self, node: &Spanned<String>, what: &str) -> Option<RelPath> {
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

/// `a`, `b`, `c`: keys as a help line lists them.
pub(super) fn quoted(keys: &[&str]) -> String {
    keys.iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A scalar node as text with its span (a non-scalar reads as its kind).
pub(super) fn spanned_str(node: &Spanned<Node>) -> Spanned<String> {
    let text = match &node.value {
        Node::Str(s) => s.clone(),
        Node::Int(i) => i.to_string(),
        other => other.kind().to_owned(),
    };
    Spanned::new(text, node.referenced, node.defined)
}

/// [`quoted`] for owned strings.
pub(super) fn quoted_list(items: &[String]) -> String {
    quoted(&items.iter().map(String::as_str).collect::<Vec<_>>())
}
