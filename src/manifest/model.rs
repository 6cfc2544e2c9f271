//! The validated manifest: what `models.yaml` means once every value has been checked.
//!
//! These types are produced only by `validate`, so holding one means every id, type, file
//! name, digest, URL and size in it is well-formed and every cross-reference (`active`,
//! `base`) points at something that exists. They also define the JSON Schema
//! (`modelctl schema`): the `schemars` attributes describe the YAML a user writes, which is why
//! sizes appear as "string or integer" and names as patterned strings.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Serialize;

use crate::digest::{Md5, Sha256};
use crate::names::{ModelId, RelPath, TypeName};

/// The manifest format this build reads and writes.
pub const MANIFEST_VERSION: u32 = 1;

/// The model types every manifest has; others are declared under `types:`.
pub const BUILTIN_TYPES: &[&str] = &["image_gen", "animation", "tts", "music", "lip_sync", "llm"];

/// `models.yaml`: the models a project needs, where they come from, and which is active.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[schemars(title = "modelctl manifest (models.yaml)", deny_unknown_fields)]
pub struct Manifest {
    /// Manifest format version. This build reads version 1.
    #[schemars(range(min = 1, max = 1))]
    pub version: u32,
    /// Directory of the model store, relative to models.yaml (default `./models`).
    /// `--store` and `MODELCTL_STORE` override it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
    /// Also lay every `hf` model out in the Hugging Face cache (`HF_HUB_CACHE`), sharing the
    /// same bytes (hardlinks), so `from_pretrained` and `hf_hub_download` find it offline.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hf_cache: bool,
    /// OCI registries `apply` downloads locked files from before their origin, tried in
    /// order: `REGISTRY/NAMESPACE` as `modelctl push --to` writes them
    /// (`registry.example.com/fleet` over https, `http://host:port/fleet` for a registry
    /// without TLS). `MODELCTL_MIRROR` names a node's own, tried first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mirrors: Vec<String>,
    /// Extra model types, beyond image_gen, animation, tts, music, lip_sync and llm.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub types: BTreeMap<TypeName, TypeDecl>,
    /// The models, by id. An id names a directory in the store.
    #[serde(default)]
    pub models: BTreeMap<ModelId, ModelEntry>,
    /// The active model of each type (at most one per type).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub active: BTreeMap<TypeName, ModelId>,
}

/// A model type declared by the project.
#[derive(Debug, Clone, PartialEq, Default, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct TypeDecl {
    /// What models of this type are for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// One declared model.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct ModelEntry {
    /// The model type: a built-in type or one declared under `types:`.
    #[serde(rename = "type")]
    pub kind: TypeName,
    /// A human description, shown by `status`, `show` and the API.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Where the files come from: exactly one of `hf`, `url`, `ollama` or `oci`.
    pub source: Source,
    /// Expected checksums of files, by path inside the model; they must agree with the lock.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<RelPath, FileExpect>,
    /// What the model needs to run.
    #[serde(default, skip_serializing_if = "Requirements::is_empty")]
    pub requires: Requirements,
    /// Free-form settings handed to consumers (the API and active.json).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(with = "BTreeMap<String, serde_json::Value>")]
    pub config: BTreeMap<String, serde_json::Value>,
    /// Commands run when this model is activated, deactivated or reloaded.
    #[serde(default, skip_serializing_if = "Hooks::is_empty")]
    pub hooks: Hooks,
    /// For adapters (a LoRA, say): the id of the model this one applies to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base: Option<ModelId>,
}

impl ModelEntry {
    /// What models.yaml expects of one file: a `url` source's own checksums, then its
    /// `files:` entry; with the place in models.yaml where the sha256 (or md5) is written, so a
    /// mismatch can say what to fix.
    pub fn expected_for(&self, id: &str, path: &RelPath) -> (FileExpect, Option<String>) {
        let listed = self.files.get(path).cloned().unwrap_or_default();
        let (sha256, md5, place) = match &self.source {
            Source::Url(u) if &u.file == path && (u.sha256.is_some() || u.md5.is_some()) => {
                let key = if u.sha256.is_some() { "sha256" } else { "md5" };
                (u.sha256, u.md5, format!("models.{id}.source.{key}"))
            }
            _ => {
                let key = if listed.sha256.is_some() {
                    "sha256"
                } else {
                    "md5"
                };
                (
                    listed.sha256,
                    listed.md5,
                    format!("models.{id}.files.{path}.{key}"),
                )
            }
        };
        let written = sha256.is_some() || md5.is_some();
        let expect = FileExpect {
            sha256: sha256.or(listed.sha256),
            md5: md5.or(listed.md5),
            size: listed.size,
        };
        (expect, written.then(|| format!("`{place}` in models.yaml")))
    }
}

/// Where a model's files come from.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Source {
    Hf(HfSource),
    Url(UrlSource),
    Ollama(OllamaSource),
    Oci(OciSource),
}

impl Source {
    /// The source kind as the manifest spells it.
    pub fn kind(&self) -> &'static str {
        match self {
            Source::Hf(_) => "hf",
            Source::Url(_) => "url",
            Source::Ollama(_) => "ollama",
            Source::Oci(_) => "oci",
        }
    }

    /// How the source reads in tables: `hf:org/name@main`, a redacted URL, `ollama:llama3:8b`.
    pub fn label(&self) -> String {
        match self {
            Source::Hf(h) => format!("hf:{}@{}", h.hf, h.revision),
            Source::Url(u) => crate::net::redact(&u.url),
            Source::Ollama(o) => format!("ollama:{}", o.ollama),
            Source::Oci(o) => format!("oci:{}", o.oci),
        }
    }
}

/// Which kind of Hub repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RepoType {
    #[default]
    Model,
    Dataset,
    Space,
}

/// A repository on the HuggingFace Hub.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct HfSource {
    /// The repository, `org/name`.
    #[schemars(pattern(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$"))]
    pub hf: String,
    /// Branch, tag or commit (default `main`); the lock pins the commit.
    #[serde(default = "default_revision")]
    pub revision: String,
    /// Repository kind (default `model`).
    #[serde(default, skip_serializing_if = "is_default")]
    pub repo_type: RepoType,
    /// Glob patterns of files to fetch (default: every file).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<String>,
    /// Glob patterns of files to leave out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
}

fn default_revision() -> String {
    "main".to_owned()
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// A single file at an `http://`, `https://` or `file://` URL, or at a path relative to
/// models.yaml.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct UrlSource {
    /// The URL of the file, or a path relative to models.yaml starting with `./` or `../`.
    #[schemars(pattern(r"^((https?|file)://|\.\.?/)"))]
    pub url: String,
    /// Expected SHA-256 of the file (64 hex digits).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<Sha256>,
    /// Expected MD5 of the file; weak, use sha256 where you can.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub md5: Option<Md5>,
    /// File name inside the model directory (default: the last segment of the URL path).
    #[schemars(with = "Option<RelPath>")]
    pub file: RelPath,
}

impl UrlSource {
    /// Whether `url` is a path relative to models.yaml rather than a URL.
    pub fn is_relative(text: &str) -> bool {
        text.starts_with("./") || text.starts_with("../")
    }

    /// The URL to fetch: relative paths are resolved against the directory of models.yaml.
    pub fn location(&self, manifest_dir: &std::path::Path) -> Result<url::Url, LocationError> {
        if Self::is_relative(&self.url) {
            let path = self
                .url
                .split('/')
                .fold(manifest_dir.to_path_buf(), |p, c| p.join(c));
            return url::Url::from_file_path(&path)
                .map_err(|()| LocationError::NotAbsolute { path });
        }
        url::Url::parse(&self.url).map_err(|error| LocationError::NotUrl {
            url: self.url.clone(),
            error,
        })
    }
}

/// Why a `url:` in models.yaml names nothing to fetch.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum LocationError {
    /// A relative path that, joined to the directory of models.yaml, is still not absolute.
    #[error("`{}` is not an absolute path", path.display())]
    #[diagnostic(
        code(modelctl::manifest::url_path),
        help("give the file as `./name` relative to models.yaml, or as an absolute `file://` URL")
    )]
    NotAbsolute { path: std::path::PathBuf },
    #[error("`{url}` is not a URL: {error}")]
    #[diagnostic(
        code(modelctl::manifest::url),
        help("write it as `https://…`, `file://…`, or a path starting with `./` or `../`")
    )]
    NotUrl { url: String, error: url::ParseError },
}

/// A model served by Ollama.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct OllamaSource {
    /// The model reference, `name:tag` (`llama3:8b`), as `ollama pull` takes it.
    pub ollama: String,
    /// How long the daemon keeps the model loaded once active (Ollama duration: `5m`, `1h`,
    /// `-1` for ever).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_alive: Option<String>,
}

/// An artifact in an OCI registry (a ModelPack artifact, or files pushed by `oras`): each raw
/// layer is a file, named by its `org.cncf.model.filepath` or `org.opencontainers.image.title`
/// annotation.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct OciSource {
    /// `REGISTRY/NAMESPACE/NAME:TAG` or `REGISTRY/NAMESPACE/NAME@sha256:<64 hex>`; https unless
    /// it starts with `http://` (a registry without TLS). The lock pins the manifest digest.
    #[schemars(pattern(
        r"^(https?://)?[^/@]+/[^@]+(:[A-Za-z0-9_][A-Za-z0-9._-]{0,127}|@sha256:[0-9a-f]{64})$"
    ))]
    pub oci: String,
}

/// Expected facts about one file; any of them may be omitted.
#[derive(Debug, Clone, PartialEq, Default, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct FileExpect {
    /// Expected SHA-256 (64 hex digits).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<Sha256>,
    /// Expected MD5 (32 hex digits); weak.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub md5: Option<Md5>,
    /// Expected size in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

/// What a model needs to run; sizes are bytes or strings such as `8GiB`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Requirements {
    /// GPU memory the model needs (`8GiB`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<SizeSchema>")]
    pub gpu_memory: Option<u64>,
    /// System memory the model needs (`16GiB`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<SizeSchema>")]
    pub ram: Option<u64>,
}

impl Requirements {
    pub fn is_empty(&self) -> bool {
        self.gpu_memory.is_none() && self.ram.is_none()
    }
}

/// Shell commands run by `sh -c` with `MODELCTL_TYPE`, `MODELCTL_OLD_ID`, `MODELCTL_NEW_ID` and
/// `MODELCTL_PATH` in their environment.
#[derive(Debug, Clone, PartialEq, Default, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Hooks {
    /// Run after this model became the active one of its type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activate: Option<String>,
    /// Run after this model stopped being active.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deactivate: Option<String>,
    /// Run on `reload` (API `POST /api/models/{id}/reload`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reload: Option<String>,
    /// Put the previous model back when the `activate` hook fails.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rollback_on_failure: bool,
}

impl Hooks {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// A size: bytes as an integer, or a string with a unit (`8GiB`, `512 MB`).
struct SizeSchema;

impl JsonSchema for SizeSchema {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Size".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A size: a number of bytes, or a number with a unit such as `8GiB` or `512MB`",
            "oneOf": [
                { "type": "integer", "minimum": 0 },
                { "type": "string", "pattern": "^\\s*[0-9]+(\\.[0-9]+)?\\s*([kKMGTPE]i?[bB]|[bB])?\\s*$" }
            ]
        })
    }
}

impl Manifest {
    /// Every type a model may have in this manifest: the built-in ones and the declared ones.
    pub fn known_types(&self) -> Vec<String> {
        BUILTIN_TYPES
            .iter()
            .map(|t| (*t).to_owned())
            .chain(self.types.keys().map(|t| t.to_string()))
            .collect()
    }

    /// The model `text` names, if this manifest declares it; otherwise an error naming the
    /// closest declared id (the CLI and the API answer an unknown id the same way).
    pub fn declared(&self, text: &str) -> miette::Result<ModelId> {
        if let Ok(id) = ModelId::parse(text)
            && self.models.contains_key(&id)
        {
            return Ok(id);
        }
        let names = self.models.keys().map(ModelId::as_str);
        let help = match crate::diagnostic::closest(text, names) {
            Some(near) => format!("did you mean `{near}`?"),
            None => "`modelctl status` lists the declared models".to_owned(),
        };
        Err(miette::miette!(
            help = help,
            "no model `{text}` in models.yaml"
        ))
    }
}
