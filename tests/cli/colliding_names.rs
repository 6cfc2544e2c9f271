//! Paths of one model that differ only in case or Unicode normalization (issue 11, defect 6):
//! macOS and Windows store them as one file, so a Hub listing, `files:` keys and a hand-edited
//! lock with such a pair are all refused, naming the model and both spellings.

use crate::fake_hub::{FakeHub, Lfs, RepoKind};
use crate::support::{Project, sha256_hex};

/// A project declaring `org/twins` as model `twins`, with `source_extra` under `source:`.
fn hub_project(hub: &FakeHub, source_extra: &str) -> (Project, Vec<(&'static str, String)>) {
    let project = Project::with_manifest(&format!(
        "version: 1\nmodels:\n  twins:\n    type: llm\n    source:\n      hf: org/twins\n{source_extra}"
    ));
    let env = vec![
        ("HF_ENDPOINT", hub.url()),
        ("MODELCTL_HTTP_RETRY_BASE_MS", "10".to_owned()),
    ];
    (project, env)
}

/// `text` with miette's wrapping undone: frame characters dropped, whitespace runs as one space.
fn flat(text: &str) -> String {
    text.replace('│', " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether any regular file is below `dir`.
fn has_file(dir: &std::path::Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            let path = e.path();
            path.is_file() || (path.is_dir() && has_file(&path))
        })
    })
}

fn run(project: &Project, env: &[(&str, String)], args: &[&str]) -> crate::support::Run {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    project.run_env(args, &env)
}

#[test]
fn a_hub_listing_with_names_differing_only_in_case_is_refused_by_lock_and_plan() {
    let hub = FakeHub::start();
    hub.repo(RepoKind::Model, "org/twins").commit(&[
        ("Model.safetensors", b"upper", Lfs::Yes),
        ("model.safetensors", b"lower", Lfs::Yes),
        ("config.json", b"{}", Lfs::No),
    ]);
    let (project, env) = hub_project(&hub, "");
    let says_why = |text: &str| {
        let text = flat(text);
        text.contains("twins")
            && text.contains("`Model.safetensors` and `model.safetensors` differ only in case")
            && text.contains("case-insensitive filesystems")
            && text.contains("`exclude:`")
    };
    let out = run(&project, &env, &["lock"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(says_why(&out.stderr), "{}", out.stderr);
    // `plan` shows every model, resolvable or not: this one as unresolved, with the reason.
    let out = run(&project, &env, &["plan"]);
    assert!(
        out.stdout.contains("? twins") && says_why(&out.stdout),
        "{}\n{}",
        out.stdout,
        out.stderr
    );
    let out = run(&project, &env, &["apply", "--yes"]);
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert!(
        !has_file(&project.path("models/models")),
        "no model file was stored"
    );
    assert!(
        !project.path("models.lock").exists() || !project.read("models.lock").contains("twins"),
        "nothing was pinned"
    );
    assert!(
        hub.requests()
            .iter()
            .all(|r| !r.path().contains("/resolve/")),
        "nothing was downloaded"
    );

    // Leaving one spelling out with `exclude:` is the way through.
    let (project, env) = hub_project(&hub, "      exclude: [\"Model.safetensors\"]\n");
    let out = run(&project, &env, &["lock"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let lock = project.read("models.lock");
    assert!(
        lock.contains("model.safetensors") && !lock.contains("Model.safetensors"),
        "{lock}"
    );
}

#[test]
fn a_hub_listing_with_the_nfc_and_nfd_spellings_of_one_name_is_refused() {
    let hub = FakeHub::start();
    hub.repo(RepoKind::Model, "org/twins").commit(&[
        ("\u{e9}.safetensors", b"composed", Lfs::Yes),
        ("e\u{301}.safetensors", b"decomposed", Lfs::Yes),
    ]);
    let (project, env) = hub_project(&hub, "");
    let out = run(&project, &env, &["lock"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("twins")
            && out.stderr.contains("two Unicode normalizations")
            && out
                .stderr
                .contains(r"`e\u{301}.safetensors` and `\u{e9}.safetensors`"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_hub_listing_with_one_folder_in_two_cases_is_refused() {
    let hub = FakeHub::start();
    hub.repo(RepoKind::Model, "org/twins").commit(&[
        ("Unet/config.json", b"{}", Lfs::No),
        ("unet/model.bin", b"weights", Lfs::Yes),
    ]);
    let (project, env) = hub_project(&hub, "");
    let out = run(&project, &env, &["lock"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains(
            "`Unet/config.json` and `unet/model.bin` collide on `Unet` and `unet`, which differ only in case"
        ),
        "{}",
        out.stderr
    );
}

#[test]
fn files_keys_differing_only_in_case_are_a_manifest_error() {
    let sum = sha256_hex(b"x");
    let project = Project::with_manifest(&format!(
        "version: 1\nmodels:\n  twins:\n    type: llm\n    source: {{ hf: org/twins }}\n    files:\n      Model.bin: {{ sha256: {sum} }}\n      model.bin: {{ sha256: {sum} }}\n"
    ));
    let out = project.run(&["plan", "--offline"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("manifest::path_collision")
            && out.stderr.contains(
                "in the `files` of model `twins`, `Model.bin` and `model.bin` differ only in case"
            )
            && out.stderr.contains("models.yaml:8:7"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_lock_with_two_paths_differing_only_in_case_is_refused() {
    let project = Project::new();
    project.write("w.bin", "weights\n");
    project.write(
        "models.yaml",
        "version: 1\nmodels:\n  twins:\n    type: llm\n    source: { url: ./w.bin }\n",
    );
    let sum = sha256_hex(b"weights\n");
    project.write(
        "models.lock",
        &format!(
            "version: 1\nmodels:\n  twins:\n    fingerprint: \"{sum}\"\n    source:\n      url: \"./w.bin\"\n    files:\n      - path: \"W.bin\"\n        size: 8\n        sha256: \"{sum}\"\n      - path: \"w.bin\"\n        size: 8\n        sha256: \"{sum}\"\n"
        ),
    );
    let out = project.run(&["plan", "--offline"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        flat(&out.stderr).contains("not a valid lock file")
            && flat(&out.stderr).contains(
                "model `twins` lists two paths that macOS and Windows take for one: `W.bin` and `w.bin` differ only in case"
            ),
        "{}",
        out.stderr
    );
}
