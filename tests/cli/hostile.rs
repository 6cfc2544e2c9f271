//! Resource bombs are refused with a message that names the limit (docs/reliability.md M2), and
//! no hostile manifest or lock makes modelctl panic (a long line once did, in the diagnostic
//! renderer).

use crate::support::Project;

fn refused(manifest: &str, expect: &str) {
    let project = Project::with_manifest(manifest);
    let run = project.run(&["plan", "--offline"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains(expect),
        "expected {expect:?} in\n{}",
        run.stderr
    );
}

#[test]
fn a_billion_laughs_is_refused() {
    let mut text =
        String::from("version: 1\na0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..12 {
        let p = i - 1;
        text.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    refused(&text, "alias");
}

#[test]
fn ten_thousand_levels_of_nesting_are_refused() {
    let text = format!(
        "version: 1\nmodels: {}1{}\n",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    refused(&text, "levels of nesting");
}

#[test]
fn a_hundred_megabyte_manifest_is_refused_before_parsing() {
    let mut text = String::from("version: 1\n# ");
    text.push_str(&"x".repeat(100 * 1024 * 1024));
    refused(&text, "the limit for a manifest is 16777216 bytes");
}

/// Runs `args` on a project and checks it ended as an ordinary error: exit 1 (101 is a panic),
/// no panic message, and a short stderr however large the input.
fn fails_plainly(project: &Project, args: &[&str]) -> String {
    let run = project.run(args);
    assert_eq!(run.code, 1, "{args:?}: {}", run.stderr);
    assert!(!run.stderr.contains("panicked"), "{args:?}: {}", run.stderr);
    assert!(
        run.stderr.len() < 8_000,
        "{args:?}: {} bytes of stderr",
        run.stderr.len()
    );
    run.stderr
}

#[test]
fn a_manifest_error_on_a_70000_column_line_is_reported_without_a_panic() {
    let line = format!(
        "  a: {{ type: llm, description: {}, source: {{ url: https://example.com/a.bin }}, bogus: 1 }}",
        "x".repeat(70_000)
    );
    let column = line.find("bogus").expect("bogus") + 1;
    let project = Project::with_manifest(&format!("version: 1\nmodels:\n{line}\n"));
    for args in [&["plan", "--offline"][..], &["lock"], &["apply", "--yes"]] {
        let stderr = fails_plainly(&project, args);
        assert!(
            stderr.contains(&format!("models.yaml:3:{column}"))
                && stderr.contains("unknown key `bogus` in model `a`")
                && stderr.contains(", bogus: 1 }"),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn no_hostile_manifest_makes_modelctl_panic() {
    let mb = "x".repeat(1 << 20);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "an error at the end of a 1 MB line",
            format!("version: 1\nmodels: {{ a: {{ type: llm, description: {mb} }}, b: [ }}\n")
                .into_bytes(),
            "models.yaml:2:",
        ),
        (
            "an error next to a 70,000-column line",
            format!(
                "version: 1\nmodels:\n  a:\n    description: {}\n    type: llm\n    sourc: {{ url: https://example.com/a.bin }}\n",
                "x".repeat(70_000)
            )
            .into_bytes(),
            "unknown key `sourc`",
        ),
        (
            "a 70,000-character value quoted in the message",
            format!(
                "version: 1\nmodels:\n  a:\n    type: {}\n    source: {{ url: https://example.com/a.bin }}\n",
                "t".repeat(70_000)
            )
            .into_bytes(),
            "unknown type",
        ),
        (
            "100,000 `[`",
            format!("version: 1\nmodels: {}\n", "[".repeat(100_000)).into_bytes(),
            "levels of nesting",
        ),
        (
            "invalid UTF-8",
            b"version: 1\nmodels: \xff\xfe\n".to_vec(),
            "is not UTF-8 text",
        ),
        (
            "a NUL byte",
            b"version: 1\nmodels:\n  a\0b: 1\n".to_vec(),
            "unexpected character",
        ),
    ];
    for (what, bytes, expect) in cases {
        let project = Project::new();
        std::fs::write(project.path("models.yaml"), bytes).expect("write");
        let stderr = fails_plainly(&project, &["plan", "--offline"]);
        assert!(stderr.contains(expect), "{what}: {stderr}");
    }
}

#[test]
fn no_hostile_lock_makes_modelctl_panic() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "a 70,000-character line",
            format!(
                "version: 1\nmodels:\n  a:\n    fingerprint: \"{}\"\n",
                "f".repeat(70_000)
            )
            .into_bytes(),
        ),
        (
            "a 1 MB line",
            format!(
                "version: 1\nmodels: {{ a: {{ {}: 1 }} }}\n",
                "k".repeat(1 << 20)
            )
            .into_bytes(),
        ),
        (
            "100,000 `[`",
            format!("version: 1\nmodels: {}\n", "[".repeat(100_000)).into_bytes(),
        ),
        ("invalid UTF-8", b"version: 1\nmodels: \xff\n".to_vec()),
        ("a NUL byte", b"version: 1\nmodels:\n  a\0: 1\n".to_vec()),
    ];
    for (what, bytes) in cases {
        let project = Project::with_manifest(
            "version: 1\nmodels:\n  a:\n    type: llm\n    source: { url: https://example.com/a.bin }\n",
        );
        std::fs::write(project.path("models.lock"), bytes).expect("write");
        let stderr = fails_plainly(&project, &["plan", "--offline"]);
        assert!(stderr.contains("not a valid lock file"), "{what}: {stderr}");
    }
}
