//! Editing `models.yaml` in place: the one place that changes the manifest's text.
//!
//! [`edit`] reads the file, validates it, hands the validated [`Manifest`] and the file's
//! lossless syntax tree (yaml-edit) to a change, then re-parses and re-validates the result with
//! the normal validator. An edit that would leave an invalid manifest is refused with the
//! validator's diagnostics and nothing is written; a valid one replaces the file atomically
//! ([`crate::durable::write_atomic`]). Comments, key order and formatting outside the edited
//! lines are kept, because yaml-edit changes only the nodes it is asked to.

use std::path::Path;
use std::str::FromStr;

use miette::{IntoDiagnostic, Result, WrapErr, miette};
use yaml_edit::{AsYaml, Document, Mapping, MappingBuilder};

use super::{Manifest, ManifestError, display_name, parse_str, read_text};

/// The manifest's text before and after an edit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edited {
    pub before: String,
    pub after: String,
}

impl Edited {
    /// Whether the edit changed the file.
    pub fn changed(&self) -> bool {
        self.before != self.after
    }

    /// The removed (`- `) and added (`+ `) lines, one per line.
    pub fn diff(&self) -> String {
        crate::text_diff::diff_text(&self.before, &self.after)
            .lines()
            .filter(|l| !l.starts_with(' '))
            .map(|l| format!("{l}\n"))
            .collect()
    }
}

/// Applies `change` to the manifest at `path`, re-validates the result, and writes it
/// atomically when it is valid and different. `change` sees the validated manifest (to check
/// ids and types) and the root mapping of the file's syntax tree (to edit).
pub fn edit(path: &Path, change: impl FnOnce(&Manifest, &Mapping) -> Result<()>) -> Result<Edited> {
    let before = read_text(path)?;
    let name = display_name(path);
    let manifest = parse_str(&before, &name).map_err(ManifestError::Invalid)?;
    let doc = Document::from_str(&before)
        .map_err(|e| miette!("cannot edit `{name}`: yaml-edit cannot parse it: {e}"))?;
    let root = doc
        .as_mapping()
        .ok_or_else(|| miette!("cannot edit `{name}`: its top level is not a mapping"))?;
    change(&manifest, &root)?;
    let mut after = doc.to_string();
    if before.ends_with('\n') && !after.ends_with('\n') {
        // yaml-edit drops the final newline when it removes the file's last entry.
        after.push('\n');
    }
    parse_str(&after, &format!("{name} (as edited)")).map_err(ManifestError::Invalid)?;
    if after != before {
        crate::durable::write_atomic(path, after.as_bytes())
            .into_diagnostic()
            .wrap_err_with(|| format!("cannot write `{name}`"))?;
    }
    Ok(Edited { before, after })
}

/// Sets `parent.key.field` to `value`, creating the `key` mapping when it is missing.
pub fn set_in(parent: &Mapping, key: &str, field: &str, value: impl AsYaml) {
    match parent.get_mapping(key) {
        Some(map) => map.set(field, value),
        None => set_new_mapping(parent, key, MappingBuilder::new().pair(field, value)),
    }
}

/// Sets `parent.key` to a new block mapping built by `builder`.
/// Adds the model `id` under `models:` (creating `models:` when the file has none).
pub fn insert_model(root: &Mapping, id: &str, entry: MappingBuilder) {
    match root.get_mapping("models") {
        Some(models) => set_new_mapping(&models, id, entry),
        None => set_new_mapping(
            root,
            "models",
            MappingBuilder::new().insert_mapping(id, entry),
        ),
    }
}

pub fn set_new_mapping(parent: &Mapping, key: &str, builder: MappingBuilder) {
    let doc = builder.build_document();
    if let Some(map) = doc.as_mapping() {
        parent.set(key, map);
    }
}

/// Removes `parent.key.field`, and `key` itself when that leaves it empty. Returns whether
/// `field` was there.
pub fn remove_in(parent: &Mapping, key: &str, field: &str) -> bool {
    let Some(map) = parent.get_mapping(key) else {
        return false;
    };
    let removed = map.remove(field).is_some();
    if map.is_empty() {
        parent.remove(key);
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# models
version: 1   # format

models:
  # the voice
  voice:
    type: tts
    source: { ollama: \"voice:1\" }
active:
  tts: voice   # current
";

    fn edited(change: impl FnOnce(&Manifest, &Mapping) -> Result<()>) -> Result<Edited> {
        let dir = tempfile::tempdir().into_diagnostic()?;
        let path = dir.path().join("models.yaml");
        std::fs::write(&path, TEXT).into_diagnostic()?;
        let result = edit(&path, change);
        let now = std::fs::read_to_string(&path).into_diagnostic()?;
        match &result {
            Ok(e) => assert_eq!(now, e.after),
            Err(_) => assert_eq!(now, TEXT, "a refused edit wrote the file"),
        }
        result
    }

    #[test]
    fn removing_the_last_entry_removes_its_mapping_and_keeps_comments() -> Result<()> {
        let e = edited(|_, root| {
            assert!(remove_in(root, "active", "tts"));
            Ok(())
        })?;
        assert_eq!(
            e.after,
            TEXT.replace("active:\n  tts: voice   # current\n", "")
        );
        assert_eq!(e.diff(), "- active:\n-   tts: voice   # current\n");
        Ok(())
    }

    #[test]
    fn an_edit_that_breaks_the_manifest_is_refused_and_nothing_is_written() {
        let result = edited(|_, root| {
            set_in(root, "active", "llm", "voice");
            Ok(())
        });
        let report = result.err().map(|r| format!("{r:?}")).unwrap_or_default();
        assert!(report.contains("problem"), "{report}");
    }
}
