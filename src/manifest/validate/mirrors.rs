//! `mirrors:`: a list of `REGISTRY/NAMESPACE` entries, each read as `push --to` reads it, so a
//! mistake is reported at its line when the manifest is loaded rather than at the first apply.

use serde_saphyr::Spanned;

use super::super::node::Node;
use super::checker::Checker;

/// The entries, as written; a bad one is reported and left out.
pub(super) fn check_mirrors(c: &mut Checker, node: &Spanned<Node>) -> Vec<String> {
    let items: Vec<&Spanned<Node>> = match &node.value {
        Node::Seq(items) => items.iter().collect(),
        Node::Str(_) => vec![node],
        _ => {
            c.wrong_kind(node, "`mirrors`", "a list of registries");
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for item in items {
        let Some(text) = c.string(item, "an entry of `mirrors`") else {
            continue;
        };
        match crate::registry::Target::parse(&text) {
            Ok(_) => out.push(text),
            Err(e) => c.report(
                &item.referenced,
                "manifest::mirror",
                format!("mirror `{text}` is not REGISTRY/NAMESPACE: {}", e.why),
                Some(
                    "write a registry and a namespace, such as `registry.example.com/fleet` \
                     (https) or `http://127.0.0.1:5000/fleet` (a registry without TLS), as \
                     `modelctl push --to` takes them"
                        .to_owned(),
                ),
            ),
        }
    }
    out
}
