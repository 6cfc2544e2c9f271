//! The rules for `active:`: each type names at most one declared model of that type.

use std::collections::{BTreeMap, BTreeSet};

use serde_saphyr::Spanned;

use super::super::node::Node;
use super::checker::{Checker, quoted, spanned_str};
use super::models::Models;
use super::types::check_type_ref;
use crate::diagnostic::closest;
use crate::names::{ModelId, TypeName};

/// The `active:` section: for each type, at most one declared model of that type.
pub(super) fn check_active(
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
        if check_active_model(c, value, &kind, &id, models) {
            active.insert(kind, id);
        }
    }
    active
}

/// Whether the model `active.<kind>` names (`id`, written at `value`) is declared and of that
/// type; reports it if not.
fn check_active_model(
    c: &mut Checker,
    value: &Spanned<Node>,
    kind: &TypeName,
    id: &ModelId,
    models: &Models,
) -> bool {
    match models.get(id) {
        None => {
            let help = unknown_active_help(id.as_str(), kind, models);
            c.report(
                &value.referenced,
                "manifest::unknown_active",
                format!("`active.{kind}` names `{id}`, which is not declared"),
                Some(help),
            );
            false
        }
        Some((_, entry)) if entry.kind != *kind => {
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
            false
        }
        Some(_) => true,
    }
}

/// The nearest declared model of the type, or what the type's models are.
fn unknown_active_help(text: &str, kind: &TypeName, models: &Models) -> String {
    let same_type: Vec<&str> = models
        .iter()
        .filter(|(_, (_, e))| e.kind == *kind)
        .map(|(id, _)| id.as_str())
        .collect();
    match closest(text, same_type.iter().copied()) {
        Some(near) => format!("did you mean `{near}`?"),
        None if same_type.is_empty() => {
            format!("declare a `{kind}` model under `models:` first")
        }
        None => format!("the `{kind}` models are {}", quoted(&same_type)),
    }
}
