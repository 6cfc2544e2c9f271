//! The ModelPack documents of one model (docs/modelpack.md): an OCI image manifest with
//! `artifactType: application/vnd.cncf.model.manifest.v1+json`, a model config, and one raw
//! (unarchived, uncompressed) layer per file, annotated with the file's path. A raw layer's
//! digest is the file's sha256, which is also its blob's name in the store, so nothing is
//! packed or copied. The documents hold nothing that changes between two pushes of the same
//! pin (no timestamps), so the same pin always gives the same manifest digest.

use serde::Serialize;

use crate::digest::Sha256;

pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const ARTIFACT_TYPE: &str = "application/vnd.cncf.model.manifest.v1+json";
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.cncf.model.config.v1+json";
pub const WEIGHT_RAW: &str = "application/vnd.cncf.model.weight.v1.raw";
pub const WEIGHT_CONFIG_RAW: &str = "application/vnd.cncf.model.weight.config.v1.raw";
pub const DOC_RAW: &str = "application/vnd.cncf.model.doc.v1.raw";
/// The layer annotation with the file's path in the model.
pub const FILEPATH_ANNOTATION: &str = "org.cncf.model.filepath";
/// The OCI annotation generic clients (`oras pull`, the OCI image spec's tooling) name a
/// layer's file by; written with the same path, so they save it under its name, not its digest.
pub const TITLE_ANNOTATION: &str = "org.opencontainers.image.title";

/// What a file of a model is, for its layer's media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    Weight,
    /// Configs and tokenizers (`config.json`, `tokenizer.model`, `merges.txt`).
    Config,
    /// READMEs, licences, model cards.
    Doc,
}

impl FileKind {
    /// Judges a file by its name: docs by their usual names and extensions, configs and
    /// tokenizers by theirs; everything else is weights.
    pub fn of(path: &str) -> Self {
        let name = path.rsplit('/').next().unwrap_or(path).to_ascii_lowercase();
        let ext = name.rsplit_once('.').map_or("", |(_, e)| e);
        const DOC_NAMES: &[&str] = &[
            "readme",
            "license",
            "licence",
            "notice",
            "copying",
            "citation",
            "model_card",
            "usage_policy",
        ];
        const DOC_EXTS: &[&str] = &["md", "rst", "pdf", "html", "htm"];
        const CONFIG_EXTS: &[&str] = &[
            "json", "yaml", "yml", "toml", "txt", "model", "tiktoken", "jinja", "vocab", "spm",
            "py",
        ];
        if DOC_EXTS.contains(&ext) || DOC_NAMES.iter().any(|d| name.starts_with(d)) {
            FileKind::Doc
        } else if CONFIG_EXTS.contains(&ext) || name.contains("tokenizer") {
            FileKind::Config
        } else {
            FileKind::Weight
        }
    }

    pub fn media_type(self) -> &'static str {
        match self {
            FileKind::Weight => WEIGHT_RAW,
            FileKind::Config => WEIGHT_CONFIG_RAW,
            FileKind::Doc => DOC_RAW,
        }
    }
}

/// One file of the model, as a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerFile {
    pub path: String,
    pub sha256: Sha256,
    pub size: u64,
}

/// What the config's `descriptor` says of the model.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none", rename = "sourceURL")]
    pub source_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
}

#[derive(Serialize)]
struct Config<'a> {
    descriptor: &'a Descriptor,
    config: ModelConfig,
    modelfs: ModelFs,
}

#[derive(Serialize)]
struct ModelConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    format: Option<String>,
}

#[derive(Serialize)]
struct ModelFs {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(rename = "diffIds")]
    diff_ids: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Manifest<'a> {
    schema_version: u32,
    media_type: &'static str,
    artifact_type: &'static str,
    config: Descriptor2,
    layers: Vec<Layer<'a>>,
}

/// An OCI content descriptor.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor2 {
    media_type: &'static str,
    digest: String,
    size: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Layer<'a> {
    media_type: &'static str,
    digest: String,
    size: u64,
    annotations: std::collections::BTreeMap<&'static str, &'a str>,
}

/// A model's ModelPack documents, serialized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Documents {
    pub config: Vec<u8>,
    pub manifest: Vec<u8>,
}

impl Documents {
    pub fn config_digest(&self) -> Sha256 {
        Sha256::of(&self.config)
    }

    pub fn manifest_digest(&self) -> Sha256 {
        Sha256::of(&self.manifest)
    }
}

/// The model's format, from its weights' extensions, when they agree on a known one.
fn format_of(files: &[LayerFile]) -> Option<String> {
    let mut formats = files
        .iter()
        .filter(|f| FileKind::of(&f.path) == FileKind::Weight)
        .map(
            |f| match f.path.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()) {
                Some(e) if matches!(e.as_str(), "safetensors" | "gguf" | "onnx") => Some(e),
                Some(e) if matches!(e.as_str(), "pt" | "pth" | "bin" | "ckpt") => {
                    Some("pytorch".to_owned())
                }
                _ => None,
            },
        );
    let first = formats.next()??;
    formats
        .all(|f| f.as_deref() == Some(first.as_str()))
        .then_some(first)
}

/// Builds the config and manifest of a model whose files are `files` (in lock order; at
/// least one).
pub fn documents(
    descriptor: &Descriptor,
    files: &[LayerFile],
) -> Result<Documents, serde_json::Error> {
    let diff_ids = files
        .iter()
        .map(|f| format!("sha256:{}", f.sha256.hex()))
        .collect();
    let config = serde_json::to_vec(&Config {
        descriptor,
        config: ModelConfig {
            format: format_of(files),
        },
        modelfs: ModelFs {
            kind: "layers",
            diff_ids,
        },
    })?;
    let layers = files
        .iter()
        .map(|f| Layer {
            media_type: FileKind::of(&f.path).media_type(),
            digest: format!("sha256:{}", f.sha256.hex()),
            size: f.size,
            annotations: [
                (FILEPATH_ANNOTATION, f.path.as_str()),
                (TITLE_ANNOTATION, f.path.as_str()),
            ]
            .into_iter()
            .collect(),
        })
        .collect();
    let manifest = serde_json::to_vec(&Manifest {
        schema_version: 2,
        media_type: MANIFEST_MEDIA_TYPE,
        artifact_type: ARTIFACT_TYPE,
        config: Descriptor2 {
            media_type: CONFIG_MEDIA_TYPE,
            digest: format!("sha256:{}", Sha256::of(&config).hex()),
            size: config.len() as u64,
        },
        layers,
    })?;
    Ok(Documents { config, manifest })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_judged_by_their_names() {
        for (path, kind) in [
            ("model.safetensors", FileKind::Weight),
            ("unet/diffusion_pytorch_model.bin", FileKind::Weight),
            ("tiny.gguf", FileKind::Weight),
            ("config.json", FileKind::Config),
            ("tokenizer.model", FileKind::Config),
            ("merges.txt", FileKind::Config),
            ("tokenizer_config.json", FileKind::Config),
            ("README.md", FileKind::Doc),
            ("LICENSE", FileKind::Doc),
            ("docs/card.pdf", FileKind::Doc),
        ] {
            assert_eq!(FileKind::of(path), kind, "{path}");
        }
    }

    #[test]
    fn the_documents_are_deterministic_and_name_every_file() {
        let files = vec![
            LayerFile {
                path: "model.safetensors".into(),
                sha256: Sha256::of(b"w"),
                size: 1,
            },
            LayerFile {
                path: "config.json".into(),
                sha256: Sha256::of(b"c"),
                size: 1,
            },
        ];
        let descriptor = Descriptor {
            name: "m".into(),
            ..Descriptor::default()
        };
        let a = documents(&descriptor, &files).expect("docs");
        assert_eq!(
            a,
            documents(&descriptor, &files).expect("docs"),
            "same pin, same bytes"
        );
        let manifest: serde_json::Value = serde_json::from_slice(&a.manifest).expect("json");
        assert_eq!(manifest["artifactType"], ARTIFACT_TYPE);
        assert_eq!(
            manifest["config"]["digest"],
            format!("sha256:{}", a.config_digest().hex())
        );
        assert_eq!(manifest["layers"][0]["mediaType"], WEIGHT_RAW);
        assert_eq!(manifest["layers"][1]["mediaType"], WEIGHT_CONFIG_RAW);
        assert_eq!(
            manifest["layers"][1]["annotations"][FILEPATH_ANNOTATION],
            "config.json"
        );
        let config: serde_json::Value = serde_json::from_slice(&a.config).expect("json");
        assert_eq!(config["config"]["format"], "safetensors");
        assert_eq!(
            config["modelfs"]["diffIds"][0],
            format!("sha256:{}", Sha256::of(b"w").hex())
        );
    }
}
