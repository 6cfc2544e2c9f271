//! `include` / `exclude` globs, with the meaning `hf download --include` gives them.
//!
//! `huggingface_hub` matches with Python's `fnmatch`, where `*` also crosses `/`: so
//! `*.safetensors` selects `unet/diffusion_pytorch_model.safetensors` too, and a pattern that
//! ends with `/` selects everything below that folder. A file is kept when it matches some
//! `include` pattern (or there are none) and no `exclude` pattern.

use globset::{Glob, GlobSet, GlobSetBuilder};

/// A pattern under `include:` or `exclude:` that globset cannot compile.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum FilterError {
    #[error("the glob `{pattern}` is invalid: {error}")]
    #[diagnostic(
        code(modelctl::hf::glob),
        help(
            "fix the pattern under the model's `include:` or `exclude:` (`*` matches any characters, `[abc]` one of them)"
        )
    )]
    Glob {
        pattern: String,
        error: globset::Error,
    },
    #[error("the globs cannot be compiled: {0}")]
    #[diagnostic(
        code(modelctl::hf::globs),
        help("simplify the model's `include:` and `exclude:` patterns")
    )]
    Set(globset::Error),
}

/// Compiled include and exclude patterns.
#[derive(Debug, Clone)]
pub struct FileFilter {
    include: Option<GlobSet>,
    exclude: GlobSet,
}

impl FileFilter {
    /// Compiles the patterns; the error names the bad one.
    pub fn new(include: &[String], exclude: &[String]) -> Result<Self, FilterError> {
        Ok(Self {
            include: (!include.is_empty()).then(|| build(include)).transpose()?,
            exclude: build(exclude)?,
        })
    }

    /// Whether `path` is selected.
    pub fn keeps(&self, path: &str) -> bool {
        self.include.as_ref().is_none_or(|set| set.is_match(path)) && !self.exclude.is_match(path)
    }
}

fn build(patterns: &[String]) -> Result<GlobSet, FilterError> {
    let mut set = GlobSetBuilder::new();
    for pattern in patterns {
        let full = match pattern.strip_suffix('/') {
            Some(dir) => format!("{dir}/*"),
            None => pattern.clone(),
        };
        let glob = Glob::new(&full).map_err(|error| FilterError::Glob {
            pattern: pattern.clone(),
            error,
        })?;
        set.add(glob);
    }
    set.build().map_err(FilterError::Set)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(include: &[&str], exclude: &[&str]) -> FileFilter {
        let own = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        FileFilter::new(&own(include), &own(exclude)).expect("valid globs")
    }

    #[test]
    fn star_crosses_folders_like_fnmatch() {
        let f = filter(&["*.safetensors"], &[]);
        assert!(f.keeps("model.safetensors"));
        assert!(f.keeps("unet/diffusion_pytorch_model.safetensors"));
        assert!(!f.keeps("model.bin"));
    }

    #[test]
    fn exclude_wins_and_a_trailing_slash_means_the_folder() {
        let f = filter(&["unet/", "*.json"], &["*fp16*"]);
        assert!(f.keeps("unet/a.safetensors"));
        assert!(f.keeps("config.json"));
        assert!(!f.keeps("unet/a.fp16.safetensors"));
        assert!(!f.keeps("vae/a.safetensors"));
        assert!(filter(&[], &[]).keeps("anything/at/all"));
    }

    #[test]
    fn a_bad_glob_is_named() {
        let err = FileFilter::new(&["[".to_owned()], &[]).expect_err("invalid");
        assert!(
            matches!(&err, FilterError::Glob { pattern, .. } if pattern == "["),
            "{err}"
        );
        assert!(err.to_string().contains("`[`"), "{err}");
    }
}
