//! Hugging Face repositories as a user already has them: `add --from-hf-cache [REPO…]`
//! declares the model repositories the HF cache holds (those named, or all) that models.yaml
//! lacks, each pinned at the commit the cache holds and limited to the files it holds
//! (`include:`), so that `apply` takes every byte from the cache (hashed first, then linked)
//! and downloads nothing.
//!
//! The cache is read, never written: `refs/main` (else the newest snapshot) names the commit,
//! and a snapshot's entries whose blobs are present name the files. The edit goes through
//! [`crate::manifest::edit`], which keeps comments and re-validates the file.

use std::fs;
use std::path::{Path, PathBuf};

use miette::{Result, miette};

use super::edit::{NewModel, known_type, new_entry};
use crate::manifest::edit::{Edited, edit, insert_model};
use crate::manifest::{Manifest, Source};
use crate::names::{ModelId, RelPath};
use crate::settings::Settings;

/// A model repository in the HF cache.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedRepo {
    /// `org/name`.
    pub repo: String,
    pub commit: String,
    /// The snapshot's files whose bytes are in the cache, sorted.
    pub files: Vec<String>,
    pub size: u64,
}

/// One repository declared from the cache.
#[derive(Debug, Clone, PartialEq)]
pub struct Adopted {
    pub id: ModelId,
    pub repo: CachedRepo,
    pub kind: String,
}

/// What `add --from-hf-cache` did.
#[derive(Debug)]
pub struct Adoption {
    pub edited: Edited,
    pub adopted: Vec<Adopted>,
    /// Cached repositories already declared, with the id that declares them.
    pub already: Vec<(String, ModelId)>,
}

/// The model repositories of the HF cache at `dir` that have a snapshot with files.
pub fn cached_repos(dir: &Path) -> Vec<CachedRepo> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut repos: Vec<CachedRepo> = entries
        .flatten()
        .filter_map(|e| {
            let folder = e.file_name().to_str()?.to_owned();
            let repo = folder.strip_prefix("models--")?.replacen("--", "/", 1);
            read_repo(&e.path(), repo)
        })
        .collect();
    repos.sort_by(|a, b| a.repo.cmp(&b.repo));
    repos
}

fn read_repo(dir: &Path, repo: String) -> Option<CachedRepo> {
    let commit = fs::read_to_string(dir.join("refs/main"))
        .ok()
        .map(|c| c.trim().to_owned())
        .filter(|c| c.len() == 40 && c.bytes().all(|b| b.is_ascii_hexdigit()))
        .or_else(|| newest_snapshot(&dir.join("snapshots")))?;
    let snapshot = dir.join("snapshots").join(&commit);
    let mut files = Vec::new();
    let mut size = 0;
    let mut stack = vec![(snapshot, String::new())];
    while let Some((at, prefix)) = stack.pop() {
        for entry in fs::read_dir(&at).ok()?.flatten() {
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let rel = format!("{prefix}{name}");
            // Follows the snapshot's symlink to its blob: a dangling one is a file not held.
            match fs::metadata(entry.path()) {
                Ok(meta) if meta.is_dir() => stack.push((entry.path(), format!("{rel}/"))),
                Ok(meta) if meta.is_file() && RelPath::parse(&rel).is_ok() => {
                    size += meta.len();
                    files.push(rel);
                }
                _ => {}
            }
        }
    }
    files.sort();
    (!files.is_empty()).then_some(CachedRepo {
        repo,
        commit,
        files,
        size,
    })
}

/// The commit of the most recently written snapshot, when no `refs/main` names one.
fn newest_snapshot(dir: &Path) -> Option<String> {
    fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_owned();
            let modified = e.metadata().ok()?.modified().ok()?;
            (name.len() == 40 && name.bytes().all(|b| b.is_ascii_hexdigit()))
                .then_some((modified, name))
        })
        .max()
        .map(|(_, name)| name)
}

/// Declares the cache's repositories (those named, or all) that models.yaml lacks: as
/// `kind`, else as the type their files show (`model_index.json`: `image_gen`; a `.gguf` or
/// a causal LM's `config.json`: `llm`).
pub fn adopt(settings: &Settings, names: &[String], kind: Option<&str>) -> Result<Adoption> {
    let dir = &settings.hf.cache_dir;
    let cached = cached_repos(dir);
    let chosen = choose(&cached, names, dir)?;
    let mut adopted = Vec::new();
    let mut already = Vec::new();
    let edited = edit(&settings.manifest_path, |manifest, root| {
        let mut taken: Vec<String> = manifest.models.keys().map(|i| i.to_string()).collect();
        for repo in &chosen {
            if let Some(id) = declared_as(manifest, &repo.repo) {
                already.push((repo.repo.clone(), id));
                continue;
            }
            let kind = match kind {
                Some(kind) => kind.to_owned(),
                None => type_of(dir, repo).ok_or_else(|| {
                    miette!(
                        help = format!(
                            "name its type: `modelctl add --from-hf-cache {} --type TYPE`",
                            repo.repo
                        ),
                        "cannot tell what kind of model `{}` is from its files",
                        repo.repo
                    )
                })?,
            };
            known_type(manifest, &kind)?;
            let id = free_id(&repo.repo, &taken)?;
            taken.push(id.to_string());
            let model = NewModel {
                id: id.to_string(),
                kind: kind.clone(),
                hf: Some(repo.repo.clone()),
                revision: Some(repo.commit.clone()),
                include: repo.files.clone(),
                ..NewModel::default()
            };
            let entry = new_entry(&model);
            insert_model(root, id.as_str(), entry);
            adopted.push(Adopted {
                id,
                repo: (*repo).clone(),
                kind,
            });
        }
        Ok(())
    })?;
    Ok(Adoption {
        edited,
        adopted,
        already,
    })
}

/// The cached repositories `names` ask for (all of them for none); a name the cache does not
/// hold is an error with the closest one it holds.
fn choose<'a>(
    cached: &'a [CachedRepo],
    names: &[String],
    dir: &Path,
) -> Result<Vec<&'a CachedRepo>> {
    if names.is_empty() {
        return Ok(cached.iter().collect());
    }
    names
        .iter()
        .map(|name| {
            cached
                .iter()
                .find(|c| c.repo.eq_ignore_ascii_case(name))
                .ok_or_else(|| {
                    let help = match crate::diagnostic::closest(name, cached.iter().map(|c| c.repo.as_str())) {
                        Some(near) => format!("did you mean `{near}`?"),
                        None if cached.is_empty() => "`hf download ORG/NAME` puts a repository there; HF_HUB_CACHE or HF_HOME says where the cache is".to_owned(),
                        None => format!("it holds {}", cached.iter().map(|c| format!("`{}`", c.repo)).collect::<Vec<_>>().join(", ")),
                    };
                    miette!(help = help, "the HF cache `{}` holds no model repository `{name}`", dir.display())
                })
        })
        .collect()
}

/// The id of the manifest entry that already declares `repo`, if one does.
fn declared_as(manifest: &Manifest, repo: &str) -> Option<ModelId> {
    manifest
        .models
        .iter()
        .find_map(|(id, entry)| match &entry.source {
            Source::Hf(s) if s.hf.eq_ignore_ascii_case(repo) => Some(id.clone()),
            _ => None,
        })
}

/// The type a repository's files show, when they show one.
fn type_of(dir: &Path, repo: &CachedRepo) -> Option<String> {
    let has = |name: &str| repo.files.iter().any(|f| f == name);
    if has("model_index.json") {
        return Some("image_gen".to_owned());
    }
    if repo.files.iter().any(|f| f.ends_with(".gguf")) {
        return Some("llm".to_owned());
    }
    let config: PathBuf = dir
        .join(format!("models--{}", repo.repo.replace('/', "--")))
        .join("snapshots")
        .join(&repo.commit)
        .join("config.json");
    let text = fs::read_to_string(config).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    value["architectures"]
        .as_array()?
        .iter()
        .any(|a| a.as_str().is_some_and(|a| a.ends_with("ForCausalLM")))
        .then(|| "llm".to_owned())
}

/// An id for `org/name` no model has yet: `name`, else `org-name`, in id characters, with
/// `-2`, `-3`… when both are taken.
fn free_id(repo: &str, taken: &[String]) -> Result<ModelId> {
    let clean = |s: &str| -> String {
        let mut id: String = s
            .chars()
            .map(|c| match c {
                'a'..='z' | '0'..='9' | '.' | '_' | '-' => c,
                'A'..='Z' => c.to_ascii_lowercase(),
                _ => '-',
            })
            .collect();
        id.truncate(64);
        id
    };
    let name = clean(repo.rsplit('/').next().unwrap_or(repo));
    let full = clean(&repo.replace('/', "-"));
    std::iter::once(name)
        .chain((1..1000).map(|n| match n {
            1 => full.clone(),
            n => format!("{full}-{n}"),
        }))
        .find(|candidate| !taken.iter().any(|t| t.eq_ignore_ascii_case(candidate)))
        .and_then(|candidate| ModelId::parse(&candidate).ok())
        .ok_or_else(|| miette!("cannot find a free model id for `{repo}`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_come_from_the_name_then_the_whole_repository() {
        let taken = vec!["tiny".to_owned()];
        assert_eq!(
            free_id("acme/Tiny-Model", &[]).expect("id").as_str(),
            "tiny-model"
        );
        assert_eq!(
            free_id("acme/tiny", &taken).expect("id").as_str(),
            "acme-tiny"
        );
        let both = vec!["tiny".to_owned(), "acme-tiny".to_owned()];
        assert_eq!(
            free_id("acme/tiny", &both).expect("id").as_str(),
            "acme-tiny-2"
        );
    }

    #[test]
    fn a_snapshot_names_its_commit_and_the_files_whose_blobs_are_there() {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = dir.path().join("models--acme--tiny");
        let commit = "a".repeat(40);
        let snap = repo.join("snapshots").join(&commit);
        fs::create_dir_all(snap.join("sub")).expect("mkdir");
        fs::create_dir_all(repo.join("blobs")).expect("mkdir");
        fs::create_dir_all(repo.join("refs")).expect("mkdir");
        fs::write(repo.join("refs/main"), &commit).expect("ref");
        fs::write(repo.join("blobs/b1"), b"weights").expect("blob");
        std::os::unix::fs::symlink("../../blobs/b1", snap.join("model.gguf")).expect("link");
        std::os::unix::fs::symlink("../../../blobs/gone", snap.join("sub/missing.bin"))
            .expect("dangling");
        let found = cached_repos(dir.path());
        assert_eq!(
            found,
            vec![CachedRepo {
                repo: "acme/tiny".to_owned(),
                commit,
                files: vec!["model.gguf".to_owned()],
                size: 7,
            }]
        );
        assert_eq!(type_of(dir.path(), &found[0]).as_deref(), Some("llm"));
    }
}
