//! The rules for types: the `types:` section (names, no redeclared built-in) and a reference
//! to a type from a model or from `active:`.

use std::collections::BTreeMap;

use serde_saphyr::Spanned;

use super::super::model::*;
use super::super::node::Node;
use super::TYPE_KEYS;
use super::checker::{Checker, quoted, quoted_list};
use crate::diagnostic::closest;
use crate::names::TypeName;

/// The `types:` section: names, each declared once, with an optional description.
pub(super) fn check_types(c: &mut Checker, node: &Spanned<Node>) -> BTreeMap<TypeName, TypeDecl> {
    let mut types = BTreeMap::new();
    let Some(entries) = c.map(node, "`types`") else {
        return types;
    };
    for (key, value) in entries {
        let Some(name) = declared_type_name(c, key) else {
            continue;
        };
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

/// The name of a declared type: valid, and not one of the built-in types.
fn declared_type_name(c: &mut Checker, key: &Spanned<String>) -> Option<TypeName> {
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
                    "type names use lowercase letters, digits and `_`, like `image_gen`".to_owned(),
                ),
            );
            return None;
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
        return None;
    }
    Some(name)
}

/// A type named by a model or by `active:`: a built-in one or one declared under `types:`.
pub(super) fn check_type_ref(
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
