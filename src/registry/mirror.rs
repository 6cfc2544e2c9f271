//! Which registries `apply` asks for a locked file before its origin, in order: those of
//! `MODELCTL_MIRROR` (comma-separated, a node's own setting), then the manifest's `mirrors:`,
//! each once. Every entry is `REGISTRY/NAMESPACE` as `push --to` reads it ([`Target`]); the
//! manifest's entries were checked when it was loaded, the environment's are checked here.

use super::Target;

/// The environment variable with the node's mirrors, tried before the manifest's.
pub const MIRROR_ENV: &str = "MODELCTL_MIRROR";

/// The environment variable that forbids falling back to the origin (`--mirror-only`).
pub const MIRROR_ONLY_ENV: &str = "MODELCTL_MIRROR_ONLY";

/// Why the mirrors cannot be read.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum MirrorError {
    #[error("{MIRROR_ENV} holds `{given}`, which is not REGISTRY/NAMESPACE: {why}")]
    #[diagnostic(
        code(modelctl::mirror::env),
        help(
            "set {MIRROR_ENV} to registries and namespaces separated by commas, such as `registry.example.com/fleet` (https) or `http://127.0.0.1:5000/fleet` (a registry without TLS), or unset it"
        )
    )]
    Env { given: String, why: String },
    #[error("models.yaml's mirror `{given}` is not REGISTRY/NAMESPACE: {why}")]
    #[diagnostic(
        code(modelctl::mirror::manifest),
        help("fix the entry of `mirrors:` in models.yaml")
    )]
    Manifest { given: String, why: String },
}

/// The mirrors to try, in order: `env` (the value of `MODELCTL_MIRROR`) first, then the
/// manifest's list; a registry and namespace named twice is tried once, at its first place.
pub fn mirrors(env: Option<&str>, manifest: &[String]) -> Result<Vec<Target>, MirrorError> {
    let mut out: Vec<Target> = Vec::new();
    let from_env = env
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|given| {
            Target::parse(given).map_err(|e| MirrorError::Env {
                given: given.to_owned(),
                why: e.why,
            })
        });
    let from_manifest = manifest.iter().map(|given| {
        Target::parse(given).map_err(|e| MirrorError::Manifest {
            given: given.clone(),
            why: e.why,
        })
    });
    for target in from_env.chain(from_manifest) {
        let target = target?;
        if !out.contains(&target) {
            out.push(target);
        }
    }
    Ok(out)
}

/// Whether an environment value turns a switch on (`1`, `true`, `yes`, `on`).
pub fn is_on(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "1" | "true" | "yes" | "on"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_comes_first_and_each_mirror_once() {
        let manifest = vec![
            "http://127.0.0.1:5000/fleet".to_owned(),
            "registry.example.com/models".to_owned(),
        ];
        let found = mirrors(
            Some(" http://10.0.0.5:5000/cache , http://127.0.0.1:5000/fleet/,"),
            &manifest,
        )
        .expect("mirrors");
        let shown: Vec<String> = found.iter().map(Target::url_text).collect();
        assert_eq!(
            shown,
            [
                "http://10.0.0.5:5000/cache",
                "http://127.0.0.1:5000/fleet",
                "https://registry.example.com/models"
            ]
        );
        assert!(mirrors(None, &[]).expect("none").is_empty());
        assert!(mirrors(Some(""), &[]).expect("empty").is_empty());
    }

    #[test]
    fn a_bad_entry_is_named_with_its_reason() {
        let err = mirrors(Some("http://127.0.0.1:5000"), &[]).expect_err("no namespace");
        let text = err.to_string();
        assert!(text.contains(MIRROR_ENV), "{text}");
        assert!(text.contains("`http://127.0.0.1:5000`"), "{text}");
        assert!(text.contains("no namespace"), "{text}");
        let err = mirrors(None, &["ftp://x/ns".to_owned()]).expect_err("scheme");
        assert!(matches!(err, MirrorError::Manifest { .. }), "{err:?}");
    }

    #[test]
    fn switches_read_the_usual_words() {
        for on in ["1", "true", "YES", " on "] {
            assert!(is_on(on), "{on}");
        }
        for off in ["0", "false", "no", ""] {
            assert!(!is_on(off), "{off}");
        }
    }
}
