//! Every command with its stdout a pipe nobody reads (`modelctl status --json | head -0`):
//! `println!` panicked there (exit 101) and the other writes said "× Broken pipe" (exit 1).
//! Now a report ends quietly with exit 0, and a change (`apply`, `verify --repair`,
//! `plan --out`, the edits) is still made in full.

use std::collections::BTreeSet;
use std::process::Stdio;

use crate::apply::{manifest, url_model};
use crate::support::{Project, Run, file_url};

/// Runs `modelctl ARGS` with stdout a pipe whose reader is already closed, so that its first
/// write fails with `EPIPE` (a Rust binary ignores `SIGPIPE`).
fn run_closed(project: &Project, args: &[&str]) -> Run {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let output = project
        .command(args, &[])
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("run modelctl");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::new(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Exit 0 (a death by signal has no code), no panic, nothing said about the pipe.
#[track_caller]
fn assert_quiet(args: &[&str], run: &Run) {
    assert_eq!(run.code, 0, "{args:?}: {}", run.stderr);
    for word in ["panicked", "roken pipe", "os error 32"] {
        assert!(!run.stderr.contains(word), "{args:?}: {}", run.stderr);
    }
}

/// Two url models of one type, the first active, applied.
fn installed() -> Project {
    let project = Project::new();
    project.write("src/a.bin", "first voice\n");
    project.write("src/b.bin", "second voice\n");
    let a = url_model(
        "voice-a",
        "tts",
        &file_url(&project.path("src/a.bin")),
        None,
    );
    let b = url_model(
        "voice-b",
        "tts",
        &file_url(&project.path("src/b.bin")),
        None,
    );
    project.write("models.yaml", &manifest(&[a, b], &[("tts", "voice-a")]));
    let run = project.run(&["apply", "--yes"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    project
}

/// The commands `modelctl --help` lists.
fn listed_commands(project: &Project) -> BTreeSet<String> {
    let help = project.run(&["--help"]);
    assert_eq!(help.code, 0, "{}", help.stderr);
    help.stdout
        .split("Commands:\n")
        .nth(1)
        .and_then(|rest| rest.split("\n\n").next())
        .expect("a Commands: section")
        .lines()
        .filter_map(|line| line.strip_prefix("  ").filter(|l| !l.starts_with(' ')))
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_command_ends_quietly_when_stdout_is_closed() {
    let project = installed();
    let a_url = file_url(&project.path("src/a.bin"));
    let cases: &[&[&str]] = &[
        &["plan"],
        &["plan", "--json"],
        &["plan", "--detailed-exitcode"],
        &["apply", "--yes"],
        &["apply", "--yes", "--json"],
        &["status"],
        &["status", "--json"],
        &["list"],
        &["list", "--json", "--type", "tts"],
        &["show", "voice-a"],
        &["show", "voice-a", "--json"],
        &["doctor"],
        &["doctor", "--json"],
        &["storage"],
        &["storage", "--json"],
        &["outdated"],
        &["outdated", "--json"],
        &["verify"],
        &["verify", "--json"],
        &["gc"],
        &["gc", "--dry-run", "--json"],
        &["cache", "dir"],
        &["cache", "status"],
        &["cache", "status", "--json"],
        &["cache", "prune", "--dry-run"],
        &["cache", "prune", "--json"],
        &["schema"],
        &["completions", "bash"],
        &["lock"],
        &["lock", "--check"],
        &["update"],
        &["activate", "voice-b"],
        &["deactivate", "tts"],
        &["config", "voice-a", "speed=2"],
        &["add", "voice-c", "--type", "tts", "--url", &a_url],
        &["remove", "voice-c"],
        &["init", "another-project"],
        &["man"],
        &["help"],
        &["--help"],
        &["--version"],
    ];
    for args in cases {
        assert_quiet(args, &run_closed(&project, args));
    }

    // `watch` and `serve` run until stopped and write nothing on stdout.
    let mut missing = listed_commands(&project);
    for args in cases {
        missing.remove(args[0]);
    }
    // `push` needs a registry (skipped, as oci_registry.rs says why, where there is none).
    if let Some(registry) = crate::oci_registry::Registry::start() {
        let to = format!("http://127.0.0.1:{}/team", registry.port);
        for args in [&["push", "--to", &to][..], &["push", "--to", &to, "--json"]] {
            assert_quiet(args, &run_closed(&project, args));
        }
    }
    missing.remove("push");
    missing.remove("watch");
    missing.remove("serve");
    assert!(
        missing.is_empty(),
        "not run with stdout closed: {missing:?}"
    );
}

#[test]
fn a_change_is_made_whole_when_nobody_reads_its_output() {
    let project = Project::new();
    project.write("src/a.bin", "first voice\n");
    let a = url_model(
        "voice-a",
        "tts",
        &file_url(&project.path("src/a.bin")),
        None,
    );
    project.write("models.yaml", &manifest(&[a], &[("tts", "voice-a")]));

    // `plan --out` saves the plan even when nobody reads the text.
    let args = ["plan", "--out", "plan.json"];
    let run = run_closed(&project, &args);
    assert_quiet(&args, &run);
    assert!(run.stderr.contains("Saved the plan"), "{}", run.stderr);
    assert!(project.path("plan.json").exists());

    // `apply` goes on past the plan it could not print.
    let args = ["apply", "--yes"];
    let run = run_closed(&project, &args);
    assert_quiet(&args, &run);
    assert!(run.stderr.contains("Applied in"), "{}", run.stderr);
    let status = project.run(&["status", "--json"]);
    let rows: serde_json::Value = serde_json::from_str(&status.stdout).expect("json");
    assert_eq!(rows[0]["state"], "installed", "{rows}");

    // `verify --repair` repairs after the report nobody reads.
    let damaged = project.path("store/models/tts/voice-a/a.bin");
    std::fs::remove_file(&damaged).expect("rm");
    std::fs::write(&damaged, "first voicX\n").expect("tamper");
    let args = ["verify", "--repair"];
    let run = run_closed(&project, &args);
    assert_quiet(&args, &run);
    assert!(run.stderr.contains("Repairing 1 file(s)"), "{}", run.stderr);
    assert_eq!(std::fs::read(&damaged).expect("read"), b"first voice\n");

    // An edit says it wrote the file after the diff it could not print.
    let args = ["deactivate", "tts"];
    let run = run_closed(&project, &args);
    assert_quiet(&args, &run);
    assert!(run.stderr.contains("Wrote `models.yaml`"), "{}", run.stderr);
    assert!(!project.read("models.yaml").contains("tts: voice-a"));
}

#[test]
fn a_report_nobody_reads_ends_with_zero() {
    let project = installed();
    let damaged = project.path("store/models/tts/voice-a/a.bin");
    std::fs::remove_file(&damaged).expect("rm");
    std::fs::write(&damaged, "first voicX\n").expect("tamper");
    assert_eq!(project.run(&["verify"]).code, 1);
    // As ripgrep does: the reader chose to stop reading, so the run ends there, unrepaired.
    let run = run_closed(&project, &["verify"]);
    assert_quiet(&["verify"], &run);
    assert_eq!(run.stderr, "");
    assert_eq!(std::fs::read(&damaged).expect("read"), b"first voicX\n");
}
