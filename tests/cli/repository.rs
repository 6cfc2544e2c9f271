//! The repository's own models.yaml, models.lock and schema: what a fresh clone shows.

use std::path::Path;

use crate::support::Project;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A copy of the repository's manifest and lock in a temporary project.
fn copy_of_repository() -> Project {
    let project = Project::new();
    for name in ["models.yaml", "models.lock"] {
        let text = std::fs::read_to_string(repo().join(name)).expect(name);
        project.write(name, &text);
    }
    project
}

#[test]
fn the_default_stack_plans_offline() {
    let project = copy_of_repository();
    let run = project.run(&["plan", "--offline"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let out = &run.stdout;
    assert!(
        out.contains("+ download sd_xl_base_1.0.safetensors  6.5 GiB  sha256:31e35c80fc48"),
        "{out}"
    );
    assert!(
        out.contains("+ download mm_sd_v15_v2.ckpt  1.7 GiB"),
        "{out}"
    );
    assert!(
        out.contains("+ pull llama3:8b  4.3 GiB  sha256:365c0bd3c000"),
        "{out}"
    );
    for unresolved in ["? musicgen-small", "? xtts-v2", "? wav2lip-gan"] {
        assert!(out.contains(unresolved), "{unresolved} missing from\n{out}");
    }
    assert!(
        out.contains("+ image_gen: sdxl-base") && out.contains("+ llm: llama3-8b"),
        "{out}"
    );
    assert!(out.contains("Disk: 8.2 GiB needed at peak"), "{out}");
    assert_eq!(
        project
            .run(&["plan", "--offline", "--detailed-exitcode"])
            .code,
        2
    );
    let json = project.run(&["plan", "--offline", "--json"]);
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).expect("json");
    assert_eq!(doc["totals"]["downloads"], 2);
    assert_eq!(doc["totals"]["pulls"], 1);
    assert_eq!(doc["totals"]["unresolved"], 3);
}

#[test]
fn the_committed_lock_is_canonical_and_matches_the_manifest() {
    let text = std::fs::read_to_string(repo().join("models.lock")).expect("lock");
    let lock = modelctl::lock::parse_str(&text, Path::new("models.lock")).expect("valid lock");
    assert_eq!(
        modelctl::lock::render(&lock),
        text,
        "models.lock is in canonical form"
    );
    let manifest = modelctl::manifest::load(&repo().join("models.yaml")).expect("valid manifest");
    for (id, locked) in &lock.models {
        let entry = manifest.models.get(id).expect("locked models are declared");
        assert_eq!(
            locked.fingerprint,
            modelctl::lock::fingerprint(entry),
            "{id} is pinned to its entry"
        );
    }
}

#[test]
fn the_committed_schema_is_current() {
    let committed =
        std::fs::read_to_string(repo().join("schema/models.schema.json")).expect("schema");
    assert!(
        committed == modelctl::manifest::json_schema(),
        "schema/models.schema.json is stale: run `cargo run -- schema > schema/models.schema.json`"
    );
}

#[test]
fn example_manifests_are_valid() {
    let mut checked = 0;
    let quickstart = repo().join("examples/quickstart/models.yaml");
    let examples = std::fs::read_dir(repo().join("examples")).expect("examples");
    for path in examples
        .map(|e| e.expect("entry").path())
        .chain([quickstart])
    {
        if path.extension().is_some_and(|e| e == "yaml") {
            if let Err(e) = modelctl::manifest::load(&path) {
                panic!("{} is invalid: {e:?}", path.display());
            }
            checked += 1;
        }
    }
    assert!(checked >= 3, "the examples are checked");
}

/// A copy of `examples/quickstart` (manifest, lock and weights) in a temporary project.
fn copy_of_quickstart() -> Project {
    let project = Project::new();
    let src = repo().join("examples/quickstart");
    for name in ["models.yaml", "models.lock"] {
        project.write(name, &std::fs::read_to_string(src.join(name)).expect(name));
    }
    for entry in std::fs::read_dir(src.join("weights")).expect("weights") {
        let path = entry.expect("entry").path();
        let name = format!(
            "weights/{}",
            path.file_name().expect("name").to_string_lossy()
        );
        std::fs::create_dir_all(project.path("weights")).expect("mkdir");
        std::fs::copy(&path, project.path(&name)).expect("copy");
    }
    project
}

#[test]
fn the_quickstart_applies_offline_and_swaps() {
    let project = copy_of_quickstart();
    let run = project.run(&["apply", "--frozen"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("image_gen is now demo-image"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("| image_gen is now demo-image (was nothing)"),
        "the hook's output is shown: {}",
        run.stderr
    );
    let active: serde_json::Value =
        serde_json::from_str(&project.read("models/active.json")).expect("json");
    assert_eq!(active["image_gen"]["id"], "demo-image");
    assert_eq!(active["image_gen"]["config"]["steps"], 4);
    assert_eq!(active["llm"]["id"], "demo-lm");
    let weights = std::fs::read(project.path("weights/demo-lm.safetensors")).expect("source");
    let stored = std::fs::read(project.path("models/active/llm/demo-lm.safetensors"))
        .expect("through the pointer");
    assert_eq!(weights, stored);

    let again = project.run(&["apply", "--frozen"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(again.stderr.contains("Nothing to do"), "{}", again.stderr);

    let manifest = project
        .read("models.yaml")
        .replace("image_gen: demo-image\n", "image_gen: demo-image-xl\n");
    project.write("models.yaml", &manifest);
    let swap = project.run(&["apply", "--frozen"]);
    assert_eq!(swap.code, 0, "{}", swap.stderr);
    assert!(
        swap.stdout
            .contains("~ image_gen: demo-image → demo-image-xl"),
        "{}",
        swap.stdout
    );
    assert!(
        swap.stderr
            .contains("| image_gen is now demo-image-xl (was demo-image)"),
        "{}",
        swap.stderr
    );
    let link = std::fs::read_link(project.path("models/active/image_gen")).expect("link");
    assert_eq!(
        link,
        std::path::Path::new("../models/image_gen/demo-image-xl")
    );
}

/// `examples/ci` and `examples/kubernetes` are YAML whose modelctl commands exist.
#[test]
fn the_deployment_examples_parse_and_run_apply_frozen() {
    let read = |rel: &str| std::fs::read_to_string(repo().join(rel)).expect(rel);
    let workflow: serde_json::Value =
        serde_saphyr::from_str(&read("examples/ci/github-actions.yml")).expect("workflow YAML");
    let steps = workflow["jobs"]["models"]["steps"]
        .as_array()
        .expect("steps");
    let runs: Vec<&str> = steps.iter().filter_map(|s| s["run"].as_str()).collect();
    assert!(runs.contains(&"modelctl apply --frozen"), "{runs:?}");
    let keys: Vec<&str> = steps
        .iter()
        .filter_map(|s| s["with"]["key"].as_str())
        .collect();
    assert!(
        keys.iter().any(|k| k.contains("hashFiles('models.lock')")),
        "{keys:?}"
    );

    let docs: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(&read("examples/kubernetes/init-container.yaml"))
            .expect("manifests YAML");
    let pod = &docs
        .iter()
        .find(|d| d["kind"] == "Deployment")
        .expect("a Deployment")["spec"]["template"]["spec"];
    let init = &pod["initContainers"][0];
    assert_eq!(init["args"], serde_json::json!(["apply", "--frozen"]));
    let env: Vec<&str> = init["env"]
        .as_array()
        .expect("env")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert!(
        env.contains(&"MODELCTL_STORE") && env.contains(&"MODELCTL_MANIFEST"),
        "{env:?}"
    );

    let run = Project::new().run(&["apply", "--frozen", "--help"]);
    assert_eq!(run.code, 0, "the examples' flags exist: {}", run.stderr);
}
