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
        project.run(&["lock"]).code,
        1,
        "the ollama model cannot be resolved yet"
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
