//! Against a real OCI registry (Debian's `docker-registry`, the CNCF distribution server that
//! `.ci/run` installs): push a small Ollama model with the OCI push API, then let modelctl pin
//! it and pull it straight into `OLLAMA_MODELS`, with no daemon. Skipped, with the reason
//! printed, where the package is not installed (and failing under CI, which installs it).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::fake_ollama::sha256_hex;
use crate::support::Project;

const BINARY: &str = "/usr/bin/docker-registry";

/// A registry on 127.0.0.1, killed when dropped.
pub struct Registry {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Registry {
    pub fn start() -> Option<Self> {
        if !std::path::Path::new(BINARY).exists() {
            assert!(
                std::env::var_os("CI").is_none(),
                "{BINARY} is missing; .ci/run installs the docker-registry package"
            );
            eprintln!("skipped: {BINARY} is not installed (apt-get install docker-registry)");
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog: {{ level: error }}\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("data").display()
            ),
        )
        .expect("config");
        let child = Command::new(BINARY)
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start docker-registry");
        let registry = Self {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if send(client().get(registry.url("/v2/"))).is_ok_and(|(status, _, _)| status == 200) {
                return Some(registry);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("docker-registry did not answer on port {port}");
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Pushes one blob: a monolithic upload (`POST` then `PUT ?digest=`).
    fn push_blob(&self, repo: &str, bytes: &[u8]) -> String {
        let digest = format!("sha256:{}", sha256_hex(bytes));
        let (status, headers, _) =
            send(client().post(self.url(&format!("/v2/{repo}/blobs/uploads/"))))
                .expect("start upload");
        assert_eq!(status, 202, "upload start");
        let location = headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .expect("upload location")
            .to_owned();
        let target = if location.starts_with("http") {
            location
        } else {
            self.url(&location)
        };
        let separator = if target.contains('?') { '&' } else { '?' };
        let (status, _, body) = send(
            client()
                .put(format!("{target}{separator}digest={digest}"))
                .header("content-type", "application/octet-stream")
                .body(bytes.to_vec()),
        )
        .expect("upload");
        assert_eq!(status, 201, "upload of {digest}: {body}");
        digest
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
}

/// Runs one request to completion (the tests are synchronous).
pub fn send(
    request: reqwest::RequestBuilder,
) -> reqwest::Result<(u16, reqwest::header::HeaderMap, String)> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async {
            let response = request.send().await?;
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            Ok((status, headers, response.text().await?))
        })
}

#[test]
fn a_model_pushed_to_a_real_registry_is_pulled_into_ollama_models_without_a_daemon() {
    let Some(registry) = Registry::start() else {
        return;
    };
    let weights: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    let template = b"{{ .Prompt }}".to_vec();
    let config =
        br#"{"model_format":"gguf","model_family":"llama","rootfs":{"type":"layers"}}"#.to_vec();
    let repo = "library/tiny";
    let model_digest = registry.push_blob(repo, &weights);
    let template_digest = registry.push_blob(repo, &template);
    let config_digest = registry.push_blob(repo, &config);
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                   "digest": config_digest, "size": config.len()},
        "layers": [
            {"mediaType": "application/vnd.ollama.image.model", "digest": model_digest, "size": weights.len()},
            {"mediaType": "application/vnd.ollama.image.template", "digest": template_digest, "size": template.len()}
        ]
    })
    .to_string();
    let (status, _, body) = send(
        client()
            .put(registry.url(&format!("/v2/{repo}/manifests/1b")))
            .header(
                "content-type",
                "application/vnd.docker.distribution.manifest.v2+json",
            )
            .body(manifest.clone()),
    )
    .expect("push manifest");
    assert_eq!(status, 201, "{body}");

    let project = Project::with_manifest(&format!(
        "version: 1\nmodels:\n  tiny:\n    type: llm\n    source: {{ ollama: \"http://127.0.0.1:{}/library/tiny:1b\" }}\n",
        registry.port
    ));
    let dir = project.path("ollama");
    let dir_text = dir.display().to_string();
    let env = [
        ("OLLAMA_HOST", "127.0.0.1:9"),
        ("OLLAMA_MODELS", dir_text.as_str()),
    ];
    let run = project.run_env(&["apply", "--yes"], &env);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);

    let stored = std::fs::read(dir.join(format!(
        "manifests/127.0.0.1:{}/library/tiny/1b",
        registry.port
    )))
    .expect("manifest in Ollama's layout");
    assert_eq!(
        sha256_hex(&stored),
        sha256_hex(manifest.as_bytes()),
        "the manifest is stored byte for byte"
    );
    assert!(
        project
            .read("models.lock")
            .contains(&sha256_hex(manifest.as_bytes()))
    );
    for (digest, bytes) in [
        (&model_digest, &weights),
        (&template_digest, &template),
        (&config_digest, &config),
    ] {
        let blob = dir.join(format!("blobs/{}", digest.replace(':', "-")));
        assert_eq!(&std::fs::read(&blob).expect("blob"), bytes, "{digest}");
    }
    let again = project.run_env(&["plan", "--detailed-exitcode"], &env);
    assert_eq!(again.code, 0, "{}", again.stdout);
}
