//! The files under examples/: every YAML one parses, and the fleet set-up agrees with itself
//! and with the binary. The push Job pushes to the registry the fleet's pods mirror from
//! (the Service of registry.yaml), the pods apply `--frozen --mirror-only`, the CI workflow
//! runs on a change of models.lock and logs in before it pushes, and the commands and the
//! registry address they use are ones modelctl accepts.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::support::Project;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.yaml`/`.yml` file below `dir`, sorted.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|x| x == "yaml" || x == "yml") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

fn documents(rel: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("{rel} is not YAML: {e}"))
}

fn of_kind<'a>(docs: &'a [Value], kind: &str, rel: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("{rel} has no {kind}"))
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn env_value<'a>(container: &'a Value, name: &str) -> Option<&'a str> {
    container["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)?["value"]
        .as_str()
}

#[test]
fn every_yaml_file_under_examples_parses() {
    let files = yaml_files(&repo().join("examples"));
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read");
        let docs: Vec<Value> = serde_saphyr::from_multiple(&text)
            .unwrap_or_else(|e| panic!("{} is not YAML: {e}", file.display()));
        assert!(
            docs.iter().all(|d| d.is_object()),
            "{}: every document is a mapping",
            file.display()
        );
    }
    let names: Vec<String> = files
        .iter()
        .filter_map(|f| f.strip_prefix(repo()).ok())
        .map(|f| f.display().to_string())
        .collect();
    for expected in [
        "examples/ci/github-actions.yml",
        "examples/ci/push-on-lock-change.yml",
        "examples/kubernetes/init-container.yaml",
        "examples/kubernetes/registry.yaml",
        "examples/kubernetes/push-job.yaml",
        "examples/kubernetes/fleet-deployment.yaml",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} in {names:?}"
        );
    }
}

#[test]
fn the_push_job_fills_the_registry_the_fleet_mirrors_from() {
    let registry = documents("examples/kubernetes/registry.yaml");
    let service = of_kind(&registry, "Service", "registry.yaml");
    let host = format!(
        "{}:{}",
        service["metadata"]["name"].as_str().expect("service name"),
        service["spec"]["ports"][0]["port"]
    );

    let job_docs = documents("examples/kubernetes/push-job.yaml");
    let job = of_kind(&job_docs, "Job", "push-job.yaml");
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(
        strings(&pod["initContainers"][0]["args"]),
        ["apply", "--frozen"]
    );
    let push = strings(&pod["containers"][0]["args"]);
    assert_eq!(push[..2], ["push", "--to"], "{push:?}");
    let to = push[2];
    assert_eq!(to, format!("http://{host}/models"), "the Service's address");
    assert!(
        job["spec"]["template"]["metadata"]["annotations"]["modelctl.example/models-lock-sha256"]
            .is_string()
    );

    let fleet_docs = documents("examples/kubernetes/fleet-deployment.yaml");
    let fleet = of_kind(&fleet_docs, "Deployment", "fleet-deployment.yaml");
    let init = &fleet["spec"]["template"]["spec"]["initContainers"][0];
    assert_eq!(
        strings(&init["args"]),
        ["apply", "--frozen", "--mirror-only"]
    );
    assert_eq!(
        env_value(init, "MODELCTL_MIRROR"),
        Some(to),
        "the pods mirror from where the Job pushes"
    );
    assert!(env_value(init, "MODELCTL_STORE").is_some());
    assert!(env_value(init, "MODELCTL_MANIFEST").is_some());
    assert_eq!(
        fleet["spec"]["template"]["metadata"]["annotations"]["modelctl.example/models-lock-sha256"],
        job["spec"]["template"]["metadata"]["annotations"]["modelctl.example/models-lock-sha256"],
    );

    // The address is a mirror and a push target modelctl accepts, and the flags exist.
    let project =
        Project::with_manifest(&format!("version: 1\nmirrors:\n  - {to}\nmodels: {{}}\n"));
    let plan = project.run_env(&["plan", "--offline"], &[("MODELCTL_MIRROR", to)]);
    assert_eq!(plan.code, 0, "{}\n{}", plan.stdout, plan.stderr);
    for args in [push.clone(), strings(&init["args"])] {
        let mut with_help = args.clone();
        with_help.push("--help");
        let run = project.run(&with_help);
        assert_eq!(run.code, 0, "{args:?}: {}", run.stderr);
    }
    let help = project.run(&["push", "--help"]);
    assert!(help.stdout.contains("--to") && help.stdout.contains("--tag"));
}

#[test]
fn the_ci_workflow_pushes_when_models_lock_changes() {
    let docs = documents("examples/ci/push-on-lock-change.yml");
    let workflow = &docs[0];
    let on = workflow
        .get("on")
        .or_else(|| workflow.get("true"))
        .expect("an `on:` trigger");
    assert_eq!(strings(&on["push"]["paths"]), ["models.lock"]);
    let steps = workflow["jobs"]["push"]["steps"].as_array().expect("steps");
    let position = |pred: &dyn Fn(&Value) -> bool| {
        steps
            .iter()
            .position(pred)
            .unwrap_or_else(|| panic!("a step is missing: {steps:?}"))
    };
    let login = position(&|s| {
        s["uses"]
            .as_str()
            .is_some_and(|u| u.starts_with("docker/login-action@"))
    });
    let apply = position(&|s| s["run"] == "modelctl apply --frozen");
    let push = position(&|s| {
        s["run"]
            .as_str()
            .is_some_and(|r| r.starts_with("modelctl push --to "))
    });
    assert!(login < push && apply < push, "log in and apply, then push");
    assert!(
        steps[login]["with"]["password"]
            .as_str()
            .is_some_and(|p| p.contains("secrets.")),
        "the password comes from a secret"
    );
}
