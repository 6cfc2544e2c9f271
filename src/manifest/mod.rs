//! `models.yaml`: reading, validating and describing the manifest.
//!
//! `load` reads the file under a size limit, parses it into a spanned tree (`node`), and
//! validates the tree into a [`Manifest`] (`validate`), reporting every problem of the file at
//! once. `edit` changes the file in place, for the commands that edit it. `schema` turns the
//! manifest types into the JSON Schema that editors use through the `yaml-language-server`
//! modeline. Nothing here touches the store or the network.

pub mod edit;
mod model;
mod node;
mod schema;
mod validate;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use model::*;
pub use schema::json_schema;
pub use validate::MAX_MODELS;

use crate::diagnostic::{At, FileProblems, Problem};

/// Why a manifest could not be loaded.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ManifestError {
    #[error("no models.yaml in `{}` or a directory above it", dir.display())]
    #[diagnostic(
        code(manifest::not_found),
        help(
            "run `modelctl init` to start a project here, or point at one with `-C DIR` or \
             `--manifest PATH`"
        )
    )]
    NotFound { dir: PathBuf },
    #[error("cannot read `{}`: {source}", path.display())]
    #[diagnostic(
        code(manifest::read),
        help("run modelctl in the directory that holds models.yaml, or pass `--manifest PATH`")
    )]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`{}` is {size} bytes; the limit for a manifest is {limit} bytes", path.display())]
    #[diagnostic(
        code(manifest::too_large),
        help("a manifest lists models, not their contents; check that this is the right file")
    )]
    TooLarge {
        path: PathBuf,
        size: u64,
        limit: u64,
    },
    #[error("`{}` is not UTF-8 text", path.display())]
    #[diagnostic(code(manifest::not_utf8), help("save the file as UTF-8"))]
    NotUtf8 { path: PathBuf },
    #[error("{0}")]
    Invalid(FileProblems),
}

/// Reads and validates the manifest at `path`.
pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
    let text = read_text(path)?;
    let name = display_name(path);
    parse_str(&text, &name).map_err(ManifestError::Invalid)
}

/// Reads the manifest's text under the size limit, refusing what is not UTF-8.
pub fn read_text(path: &Path) -> Result<String, ManifestError> {
    let read_err = |source| ManifestError::Read {
        path: path.to_owned(),
        source,
    };
    let file =
        std::fs::File::open(path).map_err(|source| match (source.kind(), path.parent()) {
            (std::io::ErrorKind::NotFound, Some(dir))
                if dir.is_dir() && path.file_name() == Some("models.yaml".as_ref()) =>
            {
                ManifestError::NotFound {
                    dir: dir.to_owned(),
                }
            }
            _ => read_err(source),
        })?;
    let mut bytes = Vec::new();
    file.take(node::MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > node::MAX_FILE_BYTES {
        let size = std::fs::metadata(path).map_or(bytes.len() as u64, |m| m.len());
        return Err(ManifestError::TooLarge {
            path: path.to_owned(),
            size,
            limit: node::MAX_FILE_BYTES,
        });
    }
    String::from_utf8(bytes).map_err(|_| ManifestError::NotUtf8 {
        path: path.to_owned(),
    })
}

/// Validates manifest text; `name` is how diagnostics refer to the file.
pub fn parse_str(text: &str, name: &str) -> Result<Manifest, FileProblems> {
    let problems = |problems| FileProblems {
        name: name.to_owned(),
        text: Arc::new(text.to_owned()),
        problems,
    };
    let root = node::parse(text).map_err(|e| problems(vec![syntax_problem(&e, text)]))?;
    validate::validate(&root).map_err(problems)
}

/// A YAML syntax error or a resource limit, as a problem with its location.
fn syntax_problem(err: &serde_saphyr::Error, text: &str) -> Problem {
    let location = err.location();
    let at = location
        .and_then(|l| At::of(&l).or_else(|| At::from_line_column(text, l.line(), l.column())));
    let message = strip_position(&first_line(&err.to_string()));
    let limit_help = format!(
        "manifests are limited to {} levels of nesting, {} nodes, {} aliases and {} alias \
         expansions; this file looks generated or hostile",
        node::MAX_DEPTH,
        node::MAX_NODES,
        node::MAX_ALIASES,
        node::MAX_ALIAS_EXPANSION,
    );
    let (code, message, help) = match err {
        serde_saphyr::Error::Budget { breach, .. } => (
            "manifest::limit",
            format!("the manifest exceeds a safety limit: {breach:?}"),
            limit_help,
        ),
        _ if message.contains("recursion limit") => (
            "manifest::limit",
            format!(
                "the manifest nests more than {} levels deep",
                node::MAX_DEPTH
            ),
            limit_help,
        ),
        _ if message.contains("alias") && message.contains("limit") => (
            "manifest::limit",
            format!("the manifest exceeds a safety limit: {message}"),
            limit_help,
        ),
        _ => (
            "manifest::syntax",
            message,
            "fix the YAML syntax at this position (indentation uses spaces, `key: value`)"
                .to_owned(),
        ),
    };
    if code == "manifest::limit" {
        // A hostile file's lines can be megabytes long: say where, without quoting it.
        let message = match at {
            Some(at) => format!("{message} (at line {}, column {})", at.line, at.column),
            None => message,
        };
        return Problem {
            code,
            message,
            at: None,
            help: Some(help),
        };
    }
    Problem {
        code,
        message,
        at,
        help: Some(help),
    }
}

/// `error: line 2 column 264: recursion limit exceeded` → `recursion limit exceeded`
/// (the diagnostic shows the position itself).
fn strip_position(message: &str) -> String {
    let rest = message.strip_prefix("error: ").unwrap_or(message);
    match rest.strip_prefix("line ") {
        Some(after) => after.split_once(": ").map_or(rest, |(_, m)| m).to_owned(),
        None => rest.to_owned(),
    }
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or(text).trim().to_owned()
}

/// The shortest honest name for a file in messages: relative when under the current directory.
pub fn display_name(path: &Path) -> String {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(cwd).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| path.to_path_buf())
        .display()
        .to_string()
}
