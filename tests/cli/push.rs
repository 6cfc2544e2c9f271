//! `modelctl push` against the real `docker-registry` (started as tests/cli/oci_registry.rs
//! does): models applied from file URLs are pushed as ModelPack artifacts, a second push
//! uploads nothing, a blob another model of the push already sent is mounted, what the
//! registry holds satisfies the ModelPack config schema and pulls back byte for byte, and a
//! corrupt blob is refused before anything is sent.

use serde::Deserialize;
use serde_json::Value;

use crate::oci_registry::{Registry, client, send};
use crate::support::{Project, file_url, sha256_hex};

/// The ModelPack config schema (`schema/config-schema.json` of modelpack/model-spec), as
/// strict types: required `descriptor`, `config` and `modelfs`, no unknown properties.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelPackConfig {
    descriptor: SchemaDescriptor,
    config: SchemaModelConfig,
    modelfs: SchemaModelFs,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)]
struct SchemaDescriptor {
    created_at: Option<String>,
    authors: Option<Vec<String>>,
    family: Option<String>,
    name: Option<String>,
    #[serde(rename = "docURL")]
    doc_url: Option<String>,
    #[serde(rename = "sourceURL")]
    source_url: Option<String>,
    #[serde(rename = "datasetsURL")]
    datasets_url: Option<Vec<String>>,
    version: Option<String>,
    revision: Option<String>,
    vendor: Option<String>,
    licenses: Option<Vec<String>>,
    title: Option<String>,
    description: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)]
struct SchemaModelConfig {
    architecture: Option<String>,
    format: Option<String>,
    param_size: Option<String>,
    precision: Option<String>,
    quantization: Option<String>,
    transformer_config: Option<Value>,
    capabilities: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SchemaModelFs {
    #[serde(rename = "type")]
    kind: String,
    diff_ids: Vec<String>,
}

fn get(registry: &Registry, path: &str, accept: &str) -> (u16, reqwest::header::HeaderMap, String) {
    send(client().get(registry.url(path)).header("accept", accept)).expect("get")
}

fn get_bytes(registry: &Registry, path: &str) -> Vec<u8> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async {
            let response = client().get(registry.url(path)).send().await.expect("get");
            assert_eq!(response.status(), 200, "{path}");
            response.bytes().await.expect("body").to_vec()
        })
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn project_with_three_models() -> (Project, Vec<u8>) {
    let project = Project::new();
    let weights: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::create_dir_all(project.path("src/copy")).expect("dir");
    std::fs::write(project.path("src/voice.safetensors"), &weights).expect("write");
    std::fs::write(project.path("src/copy/voice.safetensors"), &weights).expect("write");
    project.write("src/README.md", "# A model card\n");
    let url = |p: &str| file_url(&project.path(p));
    project.write(
        "models.yaml",
        &format!(
            "version: 1\nmodels:\n  voice:\n    type: tts\n    source: {{ url: \"{}\" }}\n  voice-copy:\n    type: tts\n    source: {{ url: \"{}\" }}\n  card:\n    type: llm\n    source: {{ url: \"{}\" }}\n",
            url("src/voice.safetensors"),
            url("src/copy/voice.safetensors"),
            url("src/README.md"),
        ),
    );
    let applied = project.run(&["apply", "--yes"]);
    assert_eq!(applied.code, 0, "{}\n{}", applied.stdout, applied.stderr);
    (project, weights)
}

fn push_json(project: &Project, args: &[&str]) -> Value {
    let mut all = vec!["push"];
    all.extend_from_slice(args);
    all.push("--json");
    let run = project.run(&all);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    serde_json::from_str(&run.stdout).expect("json report")
}

fn model<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["models"]
        .as_array()
        .expect("models")
        .iter()
        .find(|m| m["id"] == id)
        .expect("model in the report")
}

#[test]
fn push_writes_modelpack_artifacts_from_the_store_and_a_second_push_uploads_nothing() {
    let Some(registry) = Registry::start() else {
        return;
    };
    let (project, weights) = project_with_three_models();
    let to = format!("http://127.0.0.1:{}/team", registry.port);

    let first = push_json(&project, &["--to", &to]);
    let voice = model(&first, "voice");
    let copy = model(&first, "voice-copy");
    assert_eq!(voice["repository"], "team/voice");
    assert_eq!(voice["files"][0]["outcome"], "uploaded");
    assert_eq!(voice["uploaded_bytes"], weights.len() as u64);
    assert_eq!(copy["files"][0]["outcome"], "mounted", "{copy}");
    assert_eq!(copy["files"][0]["mounted_from"], "team/voice");
    assert_eq!(copy["uploaded_bytes"], 0);
    let card = model(&first, "card");
    assert_eq!(
        card["files"][0]["media_type"],
        "application/vnd.cncf.model.doc.v1.raw"
    );

    // The manifest, as the registry serves it.
    let tag = voice["tags"][0].as_str().expect("tag").to_owned();
    assert!(tag.starts_with("pin-"), "{tag}");
    let (status, headers, body) = get(
        &registry,
        &format!("/v2/team/voice/manifests/{tag}"),
        OCI_MANIFEST,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        headers
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok()),
        voice["manifest_digest"].as_str()
    );
    let manifest: Value = serde_json::from_str(&body).expect("manifest json");
    assert_eq!(manifest["mediaType"], OCI_MANIFEST);
    assert_eq!(
        manifest["artifactType"],
        "application/vnd.cncf.model.manifest.v1+json"
    );
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.cncf.model.config.v1+json"
    );
    let layer = &manifest["layers"][0];
    let digest = format!("sha256:{}", sha256_hex(&weights));
    assert_eq!(
        layer["digest"],
        digest.as_str(),
        "a layer's digest is the file's sha256"
    );
    assert_eq!(
        layer["mediaType"],
        "application/vnd.cncf.model.weight.v1.raw"
    );
    assert_eq!(
        layer["annotations"]["org.cncf.model.filepath"],
        "voice.safetensors"
    );

    // The config satisfies the ModelPack schema, and its diff ids are the layers.
    let config_digest = manifest["config"]["digest"]
        .as_str()
        .expect("config digest");
    let config_bytes = get_bytes(&registry, &format!("/v2/team/voice/blobs/{config_digest}"));
    let config: ModelPackConfig = serde_json::from_slice(&config_bytes).unwrap_or_else(|e| {
        panic!(
            "not a ModelPack config ({e}): {}",
            String::from_utf8_lossy(&config_bytes)
        )
    });
    assert_eq!(config.modelfs.kind, "layers");
    assert_eq!(config.modelfs.diff_ids, vec![digest.clone()]);
    assert_eq!(config.descriptor.name.as_deref(), Some("voice"));
    assert_eq!(config.config.format.as_deref(), Some("safetensors"));

    // A pulled-back blob is byte-exact, from the repository it was mounted into too.
    assert_eq!(
        get_bytes(&registry, &format!("/v2/team/voice/blobs/{digest}")),
        weights
    );
    assert_eq!(
        get_bytes(&registry, &format!("/v2/team/voice-copy/blobs/{digest}")),
        weights
    );

    // Again, with a moving tag: nothing is uploaded, and the manifest is the same.
    let second = push_json(&project, &["--to", &to, "--tag", "latest"]);
    for id in ["voice", "voice-copy", "card"] {
        let m = model(&second, id);
        assert_eq!(m["uploaded_bytes"], 0, "{m}");
        assert!(
            m["files"]
                .as_array()
                .expect("files")
                .iter()
                .all(|f| f["outcome"] == "present"),
            "{m}"
        );
        assert_eq!(
            m["manifest_digest"],
            model(&first, id)["manifest_digest"],
            "same pin, same manifest"
        );
        assert_eq!(
            m["tags"][0],
            model(&first, id)["tags"][0],
            "same pin, same tag"
        );
    }
    let (status, headers, _) = get(&registry, "/v2/team/voice/manifests/latest", OCI_MANIFEST);
    assert_eq!(status, 200);
    assert_eq!(
        headers
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok()),
        voice["manifest_digest"].as_str()
    );
}

#[test]
fn a_corrupt_or_missing_blob_is_refused_before_anything_is_sent() {
    let Some(registry) = Registry::start() else {
        return;
    };
    let (project, weights) = project_with_three_models();
    let to = format!("http://127.0.0.1:{}/team", registry.port);
    let hex = sha256_hex(&weights);
    let blob = project.path(&format!("models/blobs/sha256/{}/{hex}", &hex[..2]));
    let mut perms = std::fs::metadata(&blob).expect("blob").permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&blob, perms).expect("writable");
    let mut damaged = weights.clone();
    damaged[10] ^= 1;
    // A new inode, so the model directory's hardlink keeps the good bytes.
    std::fs::remove_file(&blob).expect("unlink");
    std::fs::write(&blob, &damaged).expect("damage");

    let run = project.run(&["push", "voice", "--to", &to]);
    assert_ne!(run.code, 0, "{}", run.stdout);
    assert!(run.stderr.contains("cannot push `voice`"), "{}", run.stderr);
    assert!(run.stderr.contains("corrupt"), "{}", run.stderr);
    assert!(
        run.stderr.contains("modelctl apply"),
        "a help: {}",
        run.stderr
    );
    let (status, _, _) = get(
        &registry,
        &format!("/v2/team/voice/blobs/sha256:{hex}"),
        "*/*",
    );
    assert_eq!(status, 404, "nothing was uploaded");

    std::fs::remove_file(&blob).expect("unlink");
    let run = project.run(&["push", "voice", "--to", &to]);
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("is not in the store"), "{}", run.stderr);
}
