//! Resource bombs are refused with a message that names the limit (docs/reliability.md M2).

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
