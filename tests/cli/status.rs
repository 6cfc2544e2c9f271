//! `modelctl status`: declared, present, active, drifted.

use crate::support::{Project, file_url};

#[test]
fn status_reports_each_model_and_its_state() {
    let project = Project::new();
    project.write("src/a.bin", "a\n");
    let url = file_url(&project.path("src/a.bin"));
    project.write(
        "models.yaml",
        &format!("version: 1\nmodels:\n  a:\n    type: tts\n    source: {{ url: \"{url}\" }}\n  b:\n    type: llm\n    source: {{ ollama: llama3 }}\nactive:\n  tts: a\n"),
    );
    assert_eq!(
        project.run(&["lock", "--offline"]).code,
        1,
        "the ollama model cannot be resolved offline"
    );
    let run = project.run(&["status", "--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let rows: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    assert_eq!(rows[0]["id"], "a");
    assert_eq!(rows[0]["locked"], true);
    assert_eq!(rows[0]["state"], "not_installed");
    assert_eq!(rows[0]["wants_active"], true);
    assert_eq!(rows[0]["active"], false);
    assert_eq!(rows[1]["id"], "b");
    assert_eq!(rows[1]["locked"], false);

    std::fs::create_dir_all(project.path("models/models/tts/a")).expect("mkdir");
    std::fs::write(project.path("models/models/tts/a/a.bin"), "tampered\n").expect("write");
    let run = project.run(&["status"]);
    assert!(
        run.stdout
            .lines()
            .any(|l| l.starts_with("a ") && l.contains("drifted")),
        "{}",
        run.stdout
    );
}

#[test]
fn storage_counts_shared_blobs_once_and_doctor_reports_the_machine() {
    let project = Project::new();
    project.write("src/shared.bin", &"s".repeat(3000));
    project.write("src/own.bin", &"o".repeat(1000));
    let shared = file_url(&project.path("src/shared.bin"));
    let own = file_url(&project.path("src/own.bin"));
    project.write(
        "models.yaml",
        &format!(
            "version: 1\nmodels:\n  a:\n    type: tts\n    source: {{ url: \"{shared}\" }}\n  b:\n    type: llm\n    source: {{ url: \"{shared}\" }}\n  c:\n    type: llm\n    source: {{ url: \"{own}\" }}\n    requires: {{ gpu_memory: 8GiB }}\nactive:\n  llm: c\n"
        ),
    );
    assert_eq!(project.run(&["apply", "--yes"]).code, 0);
    let run = project.run(&["storage", "--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let u: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    assert_eq!(u["blob_bytes"], 4000, "{u}");
    assert_eq!(u["shared_bytes"], 3000, "{u}");
    let llm = u["types"]
        .as_array()
        .expect("types")
        .iter()
        .find(|t| t["type"] == "llm")
        .expect("llm")
        .clone();
    assert_eq!(llm["bytes"], 4000, "{u}");

    // Dropping `c` makes its bytes reclaimable; the shared blob is not.
    project.write(
        "models.yaml",
        &format!(
            "version: 1\nmodels:\n  a:\n    type: tts\n    source: {{ url: \"{shared}\" }}\n  b:\n    type: llm\n    source: {{ url: \"{shared}\" }}\n"
        ),
    );
    let run = project.run(&["storage"]);
    assert!(
        run.stdout.contains("Reclaimable now: 1000 B"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("no longer declared"), "{}", run.stdout);

    let doctor = project.run(&["doctor", "--json"]);
    let d: serde_json::Value = serde_json::from_str(&doctor.stdout).expect("json");
    assert!(d["ram_total"].as_u64().is_some_and(|r| r > 0), "{d}");
    assert!(d["free_disk"].as_u64().is_some(), "{d}");
    assert!(d["gpus"]["status"].is_string(), "{d}");
}

#[test]
fn list_filters_by_type_and_completions_cover_every_command() {
    let project = Project::with_manifest(
        "version: 1\nmodels:\n  a:\n    type: tts\n    source: { url: 'https://example.com/a.bin' }\n  b:\n    type: llm\n    source: { url: 'https://example.com/b.bin' }\n",
    );
    let run = project.run(&["list", "--type", "llm", "--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let rows: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    let ids: Vec<&str> = rows
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| r["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, ["b"]);
    let typo = project.run(&["list", "--type", "lm"]);
    assert_eq!(typo.code, 1);
    assert!(
        typo.stderr.contains("did you mean `llm`"),
        "{}",
        typo.stderr
    );

    // The script calls back into modelctl, which completes the commands (as bash asks).
    let bash = project.run(&["completions", "bash"]);
    assert_eq!(bash.code, 0, "{}", bash.stderr);
    let offered = crate::support::complete(&project, &["modelctl", ""]);
    for command in [
        "init", "plan", "apply", "watch", "outdated", "doctor", "storage", "show", "man",
    ] {
        assert!(
            offered.iter().any(|o| o == command),
            "{command} missing from completions: {offered:?}"
        );
    }
}
