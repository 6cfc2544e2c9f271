//! `init`: a new project in a directory: a `models.yaml` to start from, the JSON Schema its
//! modeline names, and the store in `.gitignore`.
//!
//! The modeline is `$schema=models.schema.json`, a path relative to the manifest, so it
//! resolves wherever the project is cloned; the schema file is written beside models.yaml and
//! meant to be committed with it (`modelctl schema > models.schema.json` refreshes it after an
//! upgrade). Nothing that exists is overwritten: an existing models.yaml stops `init` before
//! it writes anything, an existing schema file is kept, and `.gitignore` is only appended to.

use std::path::{Path, PathBuf};

use miette::{IntoDiagnostic, Result, WrapErr, miette};

use crate::settings::{DEFAULT_STORE, MANIFEST_NAME};

/// The schema file the modeline names, beside models.yaml.
pub const SCHEMA_NAME: &str = "models.schema.json";

/// What `init` wrote, for the command to tell.
#[derive(Debug)]
pub struct Initialized {
    pub manifest: PathBuf,
    /// `None` when a schema file was already there and was kept.
    pub schema: Option<PathBuf>,
    /// `.gitignore`, when the store was added to it (`false`: it already ignored the store).
    pub gitignore: Option<PathBuf>,
}

/// Starts a project in `dir` (created when missing).
pub fn init(dir: &Path) -> Result<Initialized> {
    std::fs::create_dir_all(dir)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot create the directory `{}`", dir.display()))?;
    let manifest = dir.join(MANIFEST_NAME);
    match crate::durable::create_new_atomic(&manifest, template().as_bytes(), 0o644) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(miette!(
                help = "edit it, or declare models with `modelctl add`; `modelctl plan` shows \
                        what it needs",
                "`{}` already exists; nothing was changed",
                shown(&manifest)
            ));
        }
        Err(e) => {
            return Err(e)
                .into_diagnostic()
                .wrap_err_with(|| format!("cannot write `{}`", shown(&manifest)));
        }
    }
    let schema = dir.join(SCHEMA_NAME);
    let schema = match crate::durable::create_new_atomic(
        &schema,
        crate::manifest::json_schema().as_bytes(),
        0o644,
    ) {
        Ok(()) => Some(schema),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => None,
        Err(e) => {
            return Err(e)
                .into_diagnostic()
                .wrap_err_with(|| format!("cannot write `{}`", schema.display()));
        }
    };
    let gitignore = ignore_store(dir)?;
    Ok(Initialized {
        manifest,
        schema,
        gitignore,
    })
}

/// A path as the user named it: `models.yaml`, not `./models.yaml`.
fn shown(path: &Path) -> String {
    path.strip_prefix(".").unwrap_or(path).display().to_string()
}

/// The line that keeps the store out of git.
fn store_pattern() -> String {
    format!("/{DEFAULT_STORE}/")
}

/// Adds the store to `dir/.gitignore` (created if needed) unless a line already ignores it.
fn ignore_store(dir: &Path) -> Result<Option<PathBuf>> {
    let path = dir.join(".gitignore");
    let existing = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => {
            return Err(e)
                .into_diagnostic()
                .wrap_err_with(|| format!("cannot read `{}`", path.display()));
        }
    };
    let ignored = existing.lines().any(|line| {
        let line = line.trim();
        line.trim_start_matches('/').trim_end_matches('/') == DEFAULT_STORE
    });
    if ignored {
        return Ok(None);
    }
    let mut text = existing;
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str("# The model store (modelctl): models.lock pins its contents.\n");
    text.push_str(&store_pattern());
    text.push('\n');
    crate::durable::write_atomic(&path, text.as_bytes())
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot write `{}`", path.display()))?;
    Ok(Some(path))
}

/// The models.yaml `init` writes: the modeline, the format version, the store, an empty
/// `models:` and one commented example of each source kind.
pub fn template() -> String {
    format!(
        r#"# yaml-language-server: $schema={SCHEMA_NAME}
#
# The models this project needs. Declare one with `modelctl add`, or by hand after the
# examples below; `modelctl plan` shows what `modelctl apply` would fetch, verify and link,
# and models.lock (written by `apply` and `lock`; commit it) pins their exact bytes.
version: 1
store: ./{DEFAULT_STORE}

models:

# One example of each source kind; copy one under `models:` and adjust it.
#
#   sdxl-base:                  # the model's id: letters, digits, `.`, `_`, `-`
#     type: image_gen           # image_gen, animation, tts, music, lip_sync, llm, or one of `types:`
#     source:
#       hf: stabilityai/stable-diffusion-xl-base-1.0    # a Hugging Face Hub repository
#       revision: main                                  # a branch, tag or commit
#       include: ["sd_xl_base_1.0.safetensors"]         # which files (default: all)
#
#   wav2lip:
#     type: lip_sync
#     source:
#       url: https://example.com/wav2lip_gan.pth   # https://, http://, file:// or a path beside this file
#       sha256: <64 hex digits>                    # optional: the download is refused if it differs
#
#   llama3:
#     type: llm
#     source:
#       ollama: llama3:8b       # as `ollama pull` takes it
#
#   voice:
#     type: tts
#     source:
#       oci: registry.example.com/team/voice:v1   # an OCI artifact (`modelctl push`, `oras push`)
#
# The active model of each type; services find it at ./{DEFAULT_STORE}/active/<type>.
#
# active:
#   image_gen: sdxl-base
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_is_a_valid_manifest_with_no_models() {
        let manifest = crate::manifest::parse_str(&template(), "models.yaml")
            .unwrap_or_else(|e| panic!("{}", e.render(false)));
        assert!(manifest.models.is_empty());
        assert_eq!(manifest.store.as_deref(), Some("./models"));
    }

    #[test]
    fn every_example_in_the_template_is_valid_once_uncommented() {
        let text = template();
        let examples: String = text
            .lines()
            .skip_while(|l| !l.starts_with("# One example"))
            .take_while(|l| !l.starts_with("# The active model"))
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| l.starts_with("  "))
            .map(|l| format!("{}\n", l.replace("<64 hex digits>", &"ab".repeat(32))))
            .collect();
        let manifest = format!("version: 1\nmodels:\n{examples}active:\n  image_gen: sdxl-base\n");
        let parsed = crate::manifest::parse_str(&manifest, "models.yaml")
            .unwrap_or_else(|e| panic!("{}\n{manifest}", e.render(false)));
        assert_eq!(parsed.models.len(), 4, "{manifest}");
    }
}
