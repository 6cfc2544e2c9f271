//! `hf` sources: a repository on the Hugging Face Hub, pinned to a commit.
//!
//! Resolving asks the Hub which commit the revision (branch, tag or commit) points at, lists
//! that commit's files (the tree API, every page), keeps those the `include`/`exclude` globs
//! select, and locks each one with its size and, for LFS files, the sha256 the Hub publishes.
//! Regular (non-LFS) files have only a git blob id; their sha256 is learned when they are first
//! downloaded, then locked. Every name in the listing passes the store's name validator before
//! anything else happens, so a listing with `../` or absolute paths rejects the whole model;
//! so does a selection of two files that differ only in case or Unicode normalization
//! (`Model.safetensors` and `model.safetensors`), which macOS and Windows store as one.
//!
//! Files are downloaded from `/{repo}/resolve/{commit}/{path}` through the shared engine: the
//! Hub redirects LFS files to its CDN, another origin, which never sees the token. Hub errors
//! (`X-Error-Code`) become messages with the fix ([`explain`]).

pub mod api;
pub mod cache;
mod explain;
mod filter;
pub mod token;

use std::collections::BTreeMap;
use std::path::PathBuf;

pub use api::{HubApi, HubError};
pub use explain::{FileContext, explain};
pub use filter::{FileFilter, FilterError};
pub use token::Token;

use super::ResolveContext;
use crate::digest::{GitOid, Sha256};
use crate::lock::{LockedFile, LockedSource};
use crate::manifest::{FileExpect, HfSource, RepoType};
use crate::names::{Collision, NameError, PathSet, RelPath};

/// The default endpoint, as `huggingface_hub` has it.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// Where the Hub is and how to authenticate to it (`HF_ENDPOINT`, `HF_TOKEN`, …).
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// `HF_ENDPOINT` without its trailing `/`.
    pub endpoint: String,
    pub token: Option<Token>,
    /// `HF_HUB_CACHE`: the cache `huggingface_hub` and `transformers` read.
    pub cache_dir: PathBuf,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            endpoint: DEFAULT_ENDPOINT.to_owned(),
            token: None,
            cache_dir: PathBuf::from(".cache/huggingface/hub"),
        }
    }
}

impl HubConfig {
    /// The endpoint as a URL.
    pub fn endpoint(&self) -> Result<url::Url, HubError> {
        url::Url::parse(&self.endpoint)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| HubError::Endpoint {
                shown: self.shown_endpoint(),
            })
    }

    /// The endpoint fit for output.
    pub fn shown_endpoint(&self) -> String {
        crate::net::redact(&self.endpoint)
    }

    /// The token to send with a request to `url`: none to another origin than the endpoint's,
    /// and a refusal rather than sending it in clear text to another machine.
    pub fn token_for(&self, url: &str) -> Result<Option<&Token>, HubError> {
        let Some(token) = &self.token else {
            return Ok(None);
        };
        let (Ok(target), Ok(endpoint)) = (url::Url::parse(url), self.endpoint()) else {
            return Ok(None);
        };
        if target.origin() != endpoint.origin() {
            return Ok(None);
        }
        if !token::may_send_to(&target) {
            return Err(HubError::PlainHttpToken {
                origin: token.origin().to_string(),
                host: target.host_str().unwrap_or("the endpoint").to_owned(),
            });
        }
        Ok(Some(token))
    }
}

/// A repository: its kind and `org/name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repo {
    pub kind: RepoType,
    pub id: String,
}

impl Repo {
    pub fn of(source: &HfSource) -> Self {
        Self {
            kind: source.repo_type,
            id: source.hf.clone(),
        }
    }

    /// `{endpoint}/api/{models|datasets|spaces}/{org}/{name}`.
    pub fn api_url(&self, config: &HubConfig) -> Result<String, HubError> {
        let segment = match self.kind {
            RepoType::Model => "models",
            RepoType::Dataset => "datasets",
            RepoType::Space => "spaces",
        };
        Ok(format!("{}/api/{segment}/{}", base(config)?, self.id))
    }

    /// The repository's page (where a gated model's license is accepted).
    pub fn page(&self, config: &HubConfig) -> String {
        format!(
            "{}/{}{}",
            config.shown_endpoint().trim_end_matches('/'),
            self.prefix(),
            self.id
        )
    }

    /// The download URL of `path` at `commit`.
    pub fn file_url(
        &self,
        config: &HubConfig,
        commit: &str,
        path: &RelPath,
    ) -> Result<url::Url, HubError> {
        let text = format!(
            "{}/{}{}/resolve/{commit}/{}",
            base(config)?,
            self.prefix(),
            self.id,
            api::encode_path(path.as_str())
        );
        url::Url::parse(&text).map_err(|error| HubError::FileUrl {
            path: path.to_string(),
            error,
        })
    }

    fn prefix(&self) -> &'static str {
        match self.kind {
            RepoType::Model => "",
            RepoType::Dataset => "datasets/",
            RepoType::Space => "spaces/",
        }
    }
}

fn base(config: &HubConfig) -> Result<String, HubError> {
    Ok(config.endpoint()?.as_str().trim_end_matches('/').to_owned())
}

/// Why an `hf` source could not be resolved.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ResolveError {
    #[error(
        "the network is off (`--offline`, `--frozen` or HF_HUB_OFFLINE), so the Hub cannot \
         say which commit `{revision}` of `{repo}` is; run `modelctl lock` online once and commit models.lock"
    )]
    #[diagnostic(code(modelctl::hf::offline))]
    Offline { revision: String, repo: String },
    #[error(transparent)]
    #[diagnostic(transparent)]
    Hub(#[from] HubError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Select(#[from] SelectError),
}

/// Why a repository's listing cannot be locked as the model models.yaml declares.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum SelectError {
    #[error(
        "repository `{repo}` lists an unsafe file name `{name}` ({error}); the whole model is refused"
    )]
    #[diagnostic(
        code(modelctl::hf::unsafe_name),
        help(
            "modelctl never writes outside a model's directory; pin another revision of the repository"
        )
    )]
    UnsafeName {
        repo: String,
        /// The name as listed, escaped for output.
        name: String,
        error: NameError,
    },
    #[error("in `{repo}`'s include/exclude: {error}")]
    #[diagnostic(
        code(modelctl::hf::filter),
        help("fix the pattern under the model's `include:` or `exclude:` in models.yaml")
    )]
    Filter { repo: String, error: FilterError },
    #[error(
        "repository `{repo}` cannot be laid out safely on case-insensitive filesystems \
         (macOS, Windows): {collision}, so one would replace the other; leave one out \
         with an `exclude:` glob (or select files with `include:`) under the model's `source:`"
    )]
    #[diagnostic(code(modelctl::hf::collision))]
    Collision { repo: String, collision: Collision },
    #[error("repository `{repo}` lists `{path}` twice")]
    #[diagnostic(
        code(modelctl::hf::duplicate),
        help("the Hub's listing is inconsistent; try again later, or pin another revision")
    )]
    Duplicate { repo: String, path: RelPath },
    #[error(
        "no file of `{repo}` at commit {commit} matches the include/exclude globs; \
         check them against the repository's files"
    )]
    #[diagnostic(code(modelctl::hf::nothing_selected))]
    NothingSelected { repo: String, commit: String },
    #[error(
        "models.yaml expects `{path}` under `files:`, but `{repo}` at commit {commit} has no \
         such file (or the globs leave it out)"
    )]
    #[diagnostic(
        code(modelctl::hf::expected_missing),
        help("remove `{path}` from the model's `files:`, or widen its `include:`")
    )]
    ExpectedMissing {
        path: RelPath,
        repo: String,
        commit: String,
    },
    #[error("repository `{repo}` lists an invalid {what} for `{path}`: {error}")]
    #[diagnostic(
        code(modelctl::hf::bad_digest),
        help("the Hub's listing is malformed; try again later, or pin another revision")
    )]
    BadDigest {
        repo: String,
        what: &'static str,
        path: RelPath,
        error: crate::digest::DigestError,
    },
    #[error("models.yaml expects {want} bytes for {at}, but the Hub lists {listed}")]
    #[diagnostic(
        code(modelctl::hf::size),
        help("check the revision, or update the size in models.yaml")
    )]
    SizeMismatch { want: u64, at: String, listed: u64 },
    #[error(
        "models.yaml expects sha256 {want} for {at}, but the Hub lists {listed}; \
         check the revision, or update the checksum in models.yaml"
    )]
    #[diagnostic(code(modelctl::hf::checksum))]
    ShaMismatch {
        want: Sha256,
        at: String,
        listed: Sha256,
    },
}

/// Resolves an `hf` source into its locked form, or says why it could not.
pub async fn resolve(
    ctx: &ResolveContext,
    source: &HfSource,
    expected: &BTreeMap<RelPath, FileExpect>,
) -> Result<(LockedSource, Vec<LockedFile>), ResolveError> {
    let repo = Repo::of(source);
    if ctx.offline {
        return Err(ResolveError::Offline {
            revision: source.revision.clone(),
            repo: repo.id,
        });
    }
    let api = HubApi {
        client: &ctx.client,
        config: &ctx.hf,
    };
    let commit = api.commit(&repo, &source.revision).await?;
    let entries = api.files(&repo, &commit).await?;
    let files = select(&repo, &commit, source, expected, entries)?;
    Ok((
        LockedSource::Hf {
            hf: repo.id,
            repo_type: source.repo_type,
            revision: source.revision.clone(),
            commit,
        },
        files,
    ))
}

/// Turns a listing into locked files: every name validated first, then the globs, then the
/// manifest's expectations.
pub fn select(
    repo: &Repo,
    commit: &str,
    source: &HfSource,
    expected: &BTreeMap<RelPath, FileExpect>,
    entries: Vec<api::TreeEntry>,
) -> Result<Vec<LockedFile>, SelectError> {
    let all = validated_names(repo, entries)?;
    let filter =
        FileFilter::new(&source.include, &source.exclude).map_err(|error| SelectError::Filter {
            repo: repo.id.clone(),
            error,
        })?;
    let mut files: BTreeMap<RelPath, LockedFile> = BTreeMap::new();
    let mut spellings = PathSet::default();
    for (path, entry) in all {
        if !filter.keeps(path.as_str()) {
            continue;
        }
        if let Err(collision) = spellings.insert(&path) {
            return Err(SelectError::Collision {
                repo: repo.id.clone(),
                collision,
            });
        }
        let file = locked_file(repo, path.clone(), &entry)?;
        if files.insert(path.clone(), file).is_some() {
            return Err(SelectError::Duplicate {
                repo: repo.id.clone(),
                path,
            });
        }
    }
    if files.is_empty() {
        return Err(SelectError::NothingSelected {
            repo: repo.id.clone(),
            commit: short(commit).to_owned(),
        });
    }
    for (path, expect) in expected {
        let Some(file) = files.get_mut(path) else {
            return Err(SelectError::ExpectedMissing {
                path: path.clone(),
                repo: repo.id.clone(),
                commit: short(commit).to_owned(),
            });
        };
        apply_expectation(repo, commit, file, expect)?;
    }
    Ok(files.into_values().collect())
}

/// Every name of the listing as a safe relative path, or the first one that is not.
fn validated_names(
    repo: &Repo,
    entries: Vec<api::TreeEntry>,
) -> Result<Vec<(RelPath, api::TreeEntry)>, SelectError> {
    entries
        .into_iter()
        .map(|entry| match RelPath::parse(&entry.path) {
            Ok(path) => Ok((path, entry)),
            Err(error) => Err(SelectError::UnsafeName {
                repo: repo.id.clone(),
                name: entry.path.escape_debug().to_string(),
                error,
            }),
        })
        .collect()
}

fn locked_file(
    repo: &Repo,
    path: RelPath,
    entry: &api::TreeEntry,
) -> Result<LockedFile, SelectError> {
    let bad = |what: &'static str, path: RelPath| {
        move |error| SelectError::BadDigest {
            repo: repo.id.clone(),
            what,
            path,
            error,
        }
    };
    match &entry.lfs {
        Some(lfs) => Ok(LockedFile {
            size: lfs.size,
            sha256: Some(Sha256::parse(&lfs.oid).map_err(bad("sha256", path.clone()))?),
            md5: None,
            git_oid: None,
            path,
        }),
        None => Ok(LockedFile {
            size: entry.size,
            sha256: None,
            md5: None,
            git_oid: entry
                .oid
                .as_deref()
                .map(GitOid::parse)
                .transpose()
                .map_err(bad("git object id", path.clone()))?,
            path,
        }),
    }
}

/// Checks a file against `files:` in models.yaml; a sha256 given there for a regular file
/// becomes the one it is verified against.
fn apply_expectation(
    repo: &Repo,
    commit: &str,
    file: &mut LockedFile,
    expect: &FileExpect,
) -> Result<(), SelectError> {
    let at = || {
        format!(
            "`{}` of `{}` at commit {}",
            file.path,
            repo.id,
            short(commit)
        )
    };
    if let Some(want) = expect.size.filter(|s| *s != file.size) {
        return Err(SelectError::SizeMismatch {
            want,
            at: at(),
            listed: file.size,
        });
    }
    match (expect.sha256, file.sha256) {
        (Some(want), Some(listed)) if want != listed => {
            return Err(SelectError::ShaMismatch {
                want,
                at: at(),
                listed,
            });
        }
        (Some(want), None) => file.sha256 = Some(want),
        _ => {}
    }
    if file.sha256.is_none() {
        file.md5 = expect.md5;
    }
    Ok(())
}

fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, size: u64, lfs: Option<&str>) -> api::TreeEntry {
        api::TreeEntry {
            kind: "file".into(),
            path: path.into(),
            size,
            oid: Some("2f9618c3a19b9a61add74f70bfb121335aeef666".into()),
            lfs: lfs.map(|oid| api::LfsInfo {
                oid: oid.into(),
                size,
            }),
        }
    }

    fn source(include: &[&str]) -> HfSource {
        HfSource {
            hf: "org/name".into(),
            revision: "main".into(),
            repo_type: RepoType::Model,
            include: include.iter().map(|s| (*s).to_owned()).collect(),
            exclude: vec![],
        }
    }

    const COMMIT: &str = "894a9adde21d9a3e3843e6d5aeaaf01875c7fade";
    const SHA: &str = "9be78edb5b928eba33aa88f431551348f7466ba9f5ef3daf1d552398722a5436";

    #[test]
    fn lfs_files_lock_their_sha256_and_regular_files_their_git_oid() {
        let repo = Repo::of(&source(&[]));
        let files = select(
            &repo,
            COMMIT,
            &source(&[]),
            &BTreeMap::new(),
            vec![
                entry("unet/model.safetensors", 100, Some(SHA)),
                entry("config.json", 5, None),
            ],
        )
        .expect("selected");
        assert_eq!(files.len(), 2);
        assert_eq!(files[0].path.as_str(), "config.json");
        assert!(files[0].sha256.is_none() && files[0].git_oid.is_some());
        assert_eq!(files[1].sha256.map(|s| s.hex()).as_deref(), Some(SHA));
    }

    #[test]
    fn a_traversal_name_anywhere_in_the_listing_refuses_the_model() {
        for bad in [
            "../../.bashrc",
            "/etc/x",
            "a/../../b",
            "C:\\x",
            "\\\\server\\share",
        ] {
            let err = select(
                &Repo::of(&source(&["*.json"])),
                COMMIT,
                &source(&["*.json"]),
                &BTreeMap::new(),
                vec![entry("config.json", 5, None), entry(bad, 1, None)],
            )
            .expect_err(bad);
            assert!(matches!(err, SelectError::UnsafeName { .. }), "{err}");
            assert!(err.to_string().contains("unsafe file name"), "{err}");
        }
    }

    #[test]
    fn two_spellings_of_one_name_refuse_the_model_unless_the_globs_leave_one_out() {
        let listing = || {
            vec![
                entry("Model.safetensors", 3, Some(SHA)),
                entry("model.safetensors", 3, Some(SHA)),
                entry("config.json", 5, None),
            ]
        };
        let err = select(
            &Repo::of(&source(&[])),
            COMMIT,
            &source(&[]),
            &BTreeMap::new(),
            listing(),
        )
        .expect_err("collision");
        assert!(matches!(err, SelectError::Collision { .. }), "{err}");
        let err = err.to_string();
        assert!(
            err.contains("`Model.safetensors` and `model.safetensors` differ only in case")
                && err.contains("case-insensitive filesystems")
                && err.contains("`exclude:`"),
            "{err}"
        );
        let mut only_lower = source(&[]);
        only_lower.exclude = vec!["Model.safetensors".to_owned()];
        let files = select(
            &Repo::of(&only_lower),
            COMMIT,
            &only_lower,
            &BTreeMap::new(),
            listing(),
        )
        .expect("one spelling left");
        assert_eq!(files.len(), 2);
    }

    #[test]
    fn manifest_expectations_must_agree_with_the_hub() {
        let repo = Repo::of(&source(&[]));
        let mut expected = BTreeMap::new();
        expected.insert(
            RelPath::parse("model.bin").expect("path"),
            FileExpect {
                sha256: Some(Sha256::of(b"other")),
                ..Default::default()
            },
        );
        let err = select(
            &repo,
            COMMIT,
            &source(&[]),
            &expected,
            vec![entry("model.bin", 3, Some(SHA))],
        )
        .expect_err("mismatch");
        assert!(matches!(err, SelectError::ShaMismatch { .. }), "{err}");
        assert!(err.to_string().contains("expects sha256"), "{err}");

        let err = select(
            &repo,
            COMMIT,
            &source(&["*.json"]),
            &expected,
            vec![entry("model.bin", 3, Some(SHA)), entry("c.json", 1, None)],
        )
        .expect_err("left out");
        assert!(matches!(err, SelectError::ExpectedMissing { .. }), "{err}");
        assert!(err.to_string().contains("no such file"), "{err}");
    }

    #[test]
    fn the_token_goes_only_to_the_endpoint_and_never_in_clear_text_elsewhere() {
        let token = token::discover(
            &|n| (n == "HF_TOKEN").then(|| "hf_x".into()),
            "/nonexistent".as_ref(),
        )
        .token;
        let local = HubConfig {
            endpoint: "http://127.0.0.1:9000".into(),
            token: token.clone(),
            ..Default::default()
        };
        assert!(
            local
                .token_for("http://127.0.0.1:9000/api/models/a/b")
                .expect("ok")
                .is_some()
        );
        assert!(
            local
                .token_for("http://127.0.0.1:9001/cdn/x")
                .expect("ok")
                .is_none()
        );
        let remote = HubConfig {
            endpoint: "http://mirror.example.com".into(),
            token,
            ..Default::default()
        };
        let err = remote
            .token_for("http://mirror.example.com/api/models/a/b")
            .expect_err("refused");
        assert!(matches!(err, HubError::PlainHttpToken { .. }), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("plain http") && !text.contains("hf_x"),
            "{err}"
        );
    }
}
