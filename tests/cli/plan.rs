//! `modelctl plan` end to end: text, JSON, exit codes, saved plans, and a complete store.

use crate::support::{Project, file_url, sha256_hex};

fn local_model(project: &Project) {
    project.write("src/voice.pth", "voice weights\n");
    let url = file_url(&project.path("src/voice.pth"));
    project.write(
        "models.yaml",
        &format!("version: 1\nmodels:\n  voice:\n    type: tts\n    source: {{ url: \"{url}\" }}\nactive:\n  tts: voice\n"),
    );
}

#[test]
fn detailed_exitcode_is_2_with_changes_and_json_lists_the_same_actions() {
    let project = Project::new();
    local_model(&project);
    let text = project.run(&["plan"]);
    assert_eq!(text.code, 0, "{}", text.stderr);
    assert!(
        text.stdout.contains("+ download voice.pth  14 B"),
        "{}",
        text.stdout
    );
    assert!(text.stdout.contains("+ tts: voice"), "{}", text.stdout);

    assert_eq!(project.run(&["plan", "--detailed-exitcode"]).code, 2);

    let json = project.run(&["plan", "--json"]);
    assert_eq!(json.code, 0);
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).expect("valid JSON");
    let actions: Vec<&str> = doc["actions"]
        .as_array()
        .expect("actions")
        .iter()
        .map(|a| a["action"].as_str().expect("kind"))
        .collect();
    assert_eq!(actions, ["download", "activate"]);
    assert_eq!(doc["actions"][0]["sha256"], sha256_hex(b"voice weights\n"));
    assert_eq!(doc["totals"]["download_bytes"], 14);
    assert_eq!(doc["disk"]["fits"], true);
}

#[test]
fn a_saved_plan_records_its_inputs() {
    let project = Project::new();
    local_model(&project);
    let run = project.run(&["plan", "--out", "plan.json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let saved: serde_json::Value = serde_json::from_str(&project.read("plan.json")).expect("json");
    assert_eq!(saved["format"], 1);
    assert_eq!(
        saved["manifest_sha256"],
        sha256_hex(project.read("models.yaml").as_bytes())
    );
    assert!(
        saved["next_lock"]
            .as_str()
            .expect("lock")
            .contains("voice.pth")
    );
    assert_eq!(saved["plan"]["actions"][0]["action"], "download");
}

#[test]
fn a_complete_store_has_no_changes() {
    let project = complete_store();
    let run = project.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.starts_with("No changes."), "{}", run.stdout);
}

#[test]
fn a_model_removed_from_the_manifest_is_deleted_after_its_pointer_goes() {
    let project = complete_store();
    project.write("models.yaml", "version: 1\nmodels: {}\n");
    let run = project.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    insta::assert_snapshot!(project.filter(&run.stdout));
    // In execution order, the pointer goes before the directory.
    let json = project.run(&["plan", "--json"]);
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).expect("json");
    let order: Vec<&str> = doc["actions"]
        .as_array()
        .expect("actions")
        .iter()
        .filter_map(|a| a["action"].as_str())
        .collect();
    assert_eq!(order, ["deactivate", "delete"], "{doc}");
}

/// A locked model laid out as apply does: a blob, a hardlink to it, the active pointer.
fn complete_store() -> Project {
    let project = Project::new();
    local_model(&project);
    assert_eq!(project.run(&["lock"]).code, 0);
    let bytes = b"voice weights\n";
    let hex = sha256_hex(bytes);
    let blob = project.path(&format!("models/blobs/sha256/{}/{hex}", &hex[..2]));
    std::fs::create_dir_all(blob.parent().expect("parent")).expect("mkdir");
    std::fs::write(&blob, bytes).expect("blob");
    std::fs::create_dir_all(project.path("models/models/tts/voice")).expect("mkdir");
    std::fs::hard_link(&blob, project.path("models/models/tts/voice/voice.pth")).expect("link");
    std::fs::create_dir_all(project.path("models/active")).expect("mkdir");
    std::os::unix::fs::symlink("../models/tts/voice", project.path("models/active/tts"))
        .expect("symlink");
    project
}
