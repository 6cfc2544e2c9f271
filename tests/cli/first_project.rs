//! The first ten minutes: `init`, finding models.yaml from a subdirectory, `-C`, `-q`, a strict
//! `add`, `remove` of several models, and a plan that never says "No changes" while a model
//! still needs resolving.

use crate::support::{Project, complete, sha256_hex};

const DEMO: &[u8] = b"demo weights, standing in for a real model";

#[test]
fn init_starts_a_project_whose_modeline_resolves_and_whose_store_git_ignores() {
    let project = Project::new();
    let run = project.run(&["init"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("modelctl add"),
        "says what to do next: {}",
        run.stderr
    );
    let manifest = project.read("models.yaml");
    let modeline = manifest.lines().next().unwrap_or_default();
    let schema = modeline
        .strip_prefix("# yaml-language-server: $schema=")
        .unwrap_or_else(|| panic!("no modeline: {modeline}"));
    // The modeline is relative to models.yaml, and the file it names is there and current.
    assert!(!schema.contains('/'), "{schema}");
    let printed = project.run(&["schema"]).stdout;
    assert_eq!(project.read(schema), printed);
    assert!(project.read(".gitignore").lines().any(|l| l == "/models/"));
    // The manifest is valid and declares nothing yet.
    let plan = project.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.code, 0, "{}{}", plan.stdout, plan.stderr);
    assert!(plan.stdout.contains("No changes"), "{}", plan.stdout);
    if let Ok(out) = std::process::Command::new("git")
        .args(["init", "-q"])
        .current_dir(project.root())
        .output()
        && out.status.success()
    {
        let ignored = std::process::Command::new("git")
            .args(["check-ignore", "-q", "models/blobs/x"])
            .current_dir(project.root())
            .status()
            .expect("git check-ignore");
        assert!(ignored.success(), "git does not ignore the store");
    }
}

#[test]
fn init_never_overwrites_an_existing_manifest() {
    let project = Project::with_manifest("version: 1\n# mine\n");
    project.write(".gitignore", "target/\n");
    let run = project.run(&["init"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("already exists"), "{}", run.stderr);
    assert_eq!(project.read("models.yaml"), "version: 1\n# mine\n");
    assert_eq!(
        project.read(".gitignore"),
        "target/\n",
        "nothing was changed"
    );
    assert!(!project.path("models.schema.json").exists());
}

#[test]
fn init_appends_the_store_to_an_existing_gitignore_once() {
    let project = Project::new();
    project.write(".gitignore", "target/");
    assert_eq!(project.run(&["init", "app"]).code, 0);
    assert!(project.path("app/models.yaml").is_file());
    project.write("app2/.gitignore", "target/\nmodels\n");
    assert_eq!(project.run(&["init", "app2"]).code, 0);
    assert_eq!(
        project.read("app2/.gitignore"),
        "target/\nmodels\n",
        "already ignored"
    );
    // The first one's own .gitignore was created in app/, the parent's left alone.
    assert_eq!(project.read(".gitignore"), "target/");
    assert!(project.read("app/.gitignore").contains("/models/"));
}

#[test]
fn a_command_without_a_manifest_says_to_run_init() {
    let project = Project::new();
    std::fs::create_dir(project.path(".git")).expect("mkdir");
    for args in [
        &["plan"][..],
        &["add", "m", "--type", "llm", "--url", "https://x/m.bin"],
    ] {
        let run = project.run(args);
        assert_eq!(run.code, 1, "{args:?}");
        assert!(
            run.stderr.contains("modelctl init"),
            "{args:?}: {}",
            run.stderr
        );
    }
}

/// The README's "Your first project", from an empty directory, then `status` from below it.
#[test]
fn the_first_project_works_from_a_subdirectory() {
    let project = Project::new();
    std::fs::create_dir(project.path(".git")).expect("mkdir");
    std::fs::write(project.path("w.bin"), DEMO).expect("write");
    assert_eq!(project.run(&["init"]).code, 0);
    let add = project.run(&[
        "add",
        "demo",
        "--type",
        "llm",
        "--url",
        "./w.bin",
        "--activate",
    ]);
    assert_eq!(add.code, 0, "{}", add.stderr);
    let apply = project.run(&["apply"]);
    assert_eq!(apply.code, 0, "{}", apply.stderr);
    let status = project.run_in("src/deep", &["status", "--json"]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    assert!(status.stdout.contains("\"installed\""), "{}", status.stdout);
    // Relative paths stay relative to models.yaml: no store or lookup under src/deep.
    assert!(!project.path("src/deep/models").exists());
    let again = project.run_in("src/deep", &["apply"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(again.stderr.contains("Nothing to do"), "{}", again.stderr);
    let linked = project.path("models/active/llm/w.bin");
    assert_eq!(std::fs::read(linked).expect("active file"), DEMO);
}

#[test]
fn the_manifest_search_stops_at_a_repository_root() {
    let project = Project::with_manifest("version: 1\nmodels: {}\n");
    std::fs::create_dir_all(project.path("repo/.git")).expect("mkdir");
    let run = project.run_in("repo/sub", &["plan"]);
    assert_eq!(run.code, 1, "found the models.yaml outside the repository");
    assert!(run.stderr.contains("no models.yaml"), "{}", run.stderr);
    // Outside a repository the search goes up to the first models.yaml.
    let run = project.run_in("elsewhere/sub", &["plan"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
}

#[test]
fn dash_c_and_a_manifest_directory_find_the_project() {
    let project = Project::new();
    std::fs::create_dir(project.path(".git")).expect("mkdir");
    project.write("app/models.yaml", "version: 1\nmodels: {}\n");
    for args in [&["-C", "app", "plan"][..], &["--manifest", "app", "plan"]] {
        let run = project.run(args);
        assert_eq!(run.code, 0, "{args:?}: {}", run.stderr);
        assert!(
            run.stdout.contains("No changes"),
            "{args:?}: {}",
            run.stdout
        );
    }
    let run = project.run(&["-C", "nowhere", "plan"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("nowhere"), "{}", run.stderr);
}

#[test]
fn a_quiet_apply_prints_nothing_on_success_and_still_tells_errors() {
    let project = Project::new();
    std::fs::write(project.path("w.bin"), DEMO).expect("write");
    project.write(
        "models.yaml",
        &format!(
            "version: 1\nmodels:\n  demo:\n    type: llm\n    source:\n      url: ./w.bin\n      sha256: {}\nactive:\n  llm: demo\n",
            sha256_hex(DEMO)
        ),
    );
    let run = project.run(&["-q", "apply"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!((run.stdout.as_str(), run.stderr.as_str()), ("", ""));
    let run = project.run(&["apply", "--quiet"]);
    assert_eq!(
        (run.code, run.stdout.as_str(), run.stderr.as_str()),
        (0, "", "")
    );
    // Data asked for is printed at every level; errors too.
    assert!(!project.run(&["-q", "status", "--json"]).stdout.is_empty());
    std::fs::write(project.path("w.bin"), b"other bytes").expect("write");
    std::fs::remove_dir_all(project.path("models")).expect("rm");
    // Without the machine cache, which holds the pinned bytes and would link them back.
    let run = project.run_env(&["-q", "apply"], &[("MODELCTL_NO_CACHE", "1")]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("w.bin"), "{}", run.stderr);
    assert!(
        project.run(&["-q", "-v", "plan"]).code == 2,
        "-q and -v conflict"
    );
}

#[test]
fn add_refuses_keys_of_another_source_kind_and_bad_ids_as_arguments() {
    let project = Project::with_manifest("version: 1\nmodels: {}\n");
    let before = project.read("models.yaml");
    let hex = "ab".repeat(32);
    let cases: &[(&[&str], &str)] = &[
        (
            &["--url", "https://x/w.bin", "--include", "*.bin"],
            "`include`",
        ),
        (
            &["--ollama", "llama3:8b", "--revision", "main"],
            "`revision`",
        ),
        (&["--hf", "org/name", "--sha256", &hex], "`sha256`"),
    ];
    for (extra, key) in cases {
        let mut args = vec!["add", "m", "--type", "llm"];
        args.extend_from_slice(extra);
        let run = project.run(&args);
        assert_eq!(run.code, 1, "{args:?} was accepted");
        assert!(run.stderr.contains(key), "{args:?}: {}", run.stderr);
    }
    let run = project.run(&["add", "a b", "--type", "llm", "--ollama", "x"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("`a b` is not a valid model id"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("as edited"), "{}", run.stderr);
    assert_eq!(project.read("models.yaml"), before);
}

#[test]
fn add_writes_a_local_path_relative_to_models_yaml() {
    let project = Project::with_manifest("version: 1\nmodels: {}\n");
    std::fs::create_dir(project.path(".git")).expect("mkdir");
    project.write("weights/w.bin", "w");
    let run = project.run_in("weights", &["add", "w", "--type", "llm", "--url", "w.bin"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(project.read("models.yaml").contains("url: ./weights/w.bin"));
    let outside = tempfile::tempdir().expect("tempdir");
    let abs = outside.path().join("x.bin");
    let run = project.run(&[
        "add",
        "x",
        "--type",
        "llm",
        "--url",
        &abs.display().to_string(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        project
            .read("models.yaml")
            .contains(&format!("url: file://{}", abs.display())),
        "{}",
        project.read("models.yaml")
    );
}

#[test]
fn remove_takes_several_ids_all_or_nothing() {
    let project = Project::with_manifest(
        "version: 1\nmodels:\n  a: { type: llm, source: { ollama: \"a:1\" } }\n  b: { type: llm, source: { ollama: \"b:1\" } }\n  c: { type: llm, source: { ollama: \"c:1\" } }\n",
    );
    let before = project.read("models.yaml");
    let run = project.run(&["remove", "a", "nope"]);
    assert_eq!(run.code, 1);
    assert_eq!(
        project.read("models.yaml"),
        before,
        "an unknown id changes nothing"
    );
    let run = project.run(&["remove", "a", "b"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let after = project.read("models.yaml");
    assert!(!after.contains("  a:") && !after.contains("  b:") && after.contains("  c:"));
}

#[test]
fn plan_names_the_models_that_need_resolving_instead_of_no_changes() {
    let project = Project::with_manifest(
        "version: 1\nmodels:\n  sdxl: { type: image_gen, source: { hf: org/sdxl } }\n",
    );
    let run = project.run(&["plan", "--offline", "--detailed-exitcode"]);
    assert_eq!(run.code, 2, "{}", run.stdout);
    assert!(!run.stdout.contains("No changes"), "{}", run.stdout);
    assert!(
        run.stdout.contains("1 model needs resolving (sdxl)"),
        "{}",
        run.stdout
    );
}

#[test]
fn completion_offers_the_projects_model_ids_and_types() {
    let project = Project::with_manifest(
        "version: 1\ntypes:\n  upscaler: {}\nmodels:\n  voice-a: { type: tts, source: { ollama: \"a:1\" } }\n  voice-b: { type: tts, source: { ollama: \"b:1\" } }\nactive:\n  tts: voice-a\n",
    );
    for command in ["show", "remove", "verify", "update", "activate"] {
        let offered = complete(&project, &["modelctl", command, "voice-"]);
        assert!(
            offered.contains(&"voice-a".to_owned()) && offered.contains(&"voice-b".to_owned()),
            "{command}: {offered:?}"
        );
    }
    let types = complete(&project, &["modelctl", "list", "--type", ""]);
    assert!(
        types.contains(&"upscaler".to_owned()) && types.contains(&"tts".to_owned()),
        "{types:?}"
    );
    let script = project.run(&["completions", "bash"]);
    assert!(
        script.stdout.contains("COMPLETE"),
        "the script calls back: {}",
        script.stdout
    );
}

#[test]
fn man_page_and_long_version() {
    let project = Project::new();
    let man = project.run(&["man"]);
    assert_eq!(man.code, 0);
    assert!(
        man.stdout.contains(".TH modelctl 1"),
        "{}",
        &man.stdout[..200.min(man.stdout.len())]
    );
    assert!(man.stdout.contains("init"), "the page lists the commands");
    let short = project.run(&["--version"]).stdout;
    assert_eq!(
        short.trim(),
        format!("modelctl {}", env!("CARGO_PKG_VERSION"))
    );
    let long = project.run(&["-v", "--version"]).stdout;
    assert!(long.starts_with(short.trim()), "{long}");
    assert!(
        long.contains("commit: ") && long.contains("target: ") && long.contains("features: "),
        "{long}"
    );
}

#[test]
fn an_all_digit_sha256_written_without_quotes_is_read_as_written() {
    let digits = "1".repeat(64);
    let project = Project::with_manifest(&format!(
        "version: 1\nmodels:\n  a:\n    type: llm\n    source:\n      url: ./w.bin\n      sha256: {digits}\n    files:\n      w.bin: {{ sha256: {digits} }}\n"
    ));
    project.write("w.bin", "not those bytes");
    let run = project.run(&["plan"]);
    // The manifest is valid; the file is refused because its bytes differ from those digits.
    assert!(!run.stderr.contains("must be a string"), "{}", run.stderr);
    assert!(
        format!("{}{}", run.stdout, run.stderr).contains(&digits[..12]),
        "{}{}",
        run.stdout,
        run.stderr
    );
}

#[test]
fn a_store_that_cannot_be_written_says_how_to_use_another() {
    // sysfs refuses new entries even to root.
    if std::fs::create_dir("/sys/modelctl-probe").is_ok() {
        let _ = std::fs::remove_dir("/sys/modelctl-probe");
        eprintln!("skipped: /sys accepts new directories here");
        return;
    }
    let project = Project::new();
    std::fs::write(project.path("w.bin"), DEMO).expect("write");
    project.write(
        "models.yaml",
        "version: 1\nmodels:\n  demo:\n    type: llm\n    source: { url: ./w.bin }\n",
    );
    let run = project.run(&["apply", "--store", "/sys/modelctl-store"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("/sys/modelctl-store"), "{}", run.stderr);
    assert!(run.stderr.contains("--store DIR"), "{}", run.stderr);
}

/// `--offline` resolves nothing online but `apply` still fetches what models.lock pins (the CI
/// example's `apply --frozen` depends on it): the help says so rather than "no network".
#[test]
fn the_help_says_what_offline_does() {
    let help = Project::new().run(&["apply", "--help"]).stdout;
    let offline = help
        .split("--offline")
        .nth(1)
        .unwrap_or_default()
        .split("--frozen")
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(offline.contains("Resolve nothing online"), "{offline}");
    assert!(
        offline.contains("still downloads the files it pins"),
        "{offline}"
    );
    assert!(!help.contains("Make no network requests"), "{help}");
}
