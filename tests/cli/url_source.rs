//! Resolving `url` sources against a fake server: what the lock records, and the errors (a
//! compressed HEAD answer never pins the compressed length: issue 11, defect 8).

use crate::support::{FileServer, GZIPPED_LEN, Project, SERVED, sha256_hex};

fn manifest(url: &str, extra: &str) -> String {
    format!("version: 1\nmodels:\n  w:\n    type: lip_sync\n    source:\n      url: {url}\n{extra}")
}

#[test]
fn locking_a_url_records_size_and_validators() {
    let server = FileServer::start();
    let sum = sha256_hex(SERVED);
    let project = Project::with_manifest(&manifest(
        &format!("{}/weights.bin", server.base),
        &format!("      sha256: {sum}\n"),
    ));
    let run = project.run(&["lock"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lock = project.read("models.lock");
    assert!(lock.contains(&format!("size: {}", SERVED.len())), "{lock}");
    assert!(lock.contains(r#"etag: "\"v1-etag\"""#), "{lock}");
    assert!(
        lock.contains(r#"last_modified: "Wed, 21 Oct 2026 07:28:00 GMT""#),
        "{lock}"
    );
    assert!(
        !lock.contains(&sum),
        "models.yaml's checksum is an expectation, not yet backed by hashed bytes: {lock}"
    );
    assert!(
        !lock.contains("final_url"),
        "no redirect, no final_url: {lock}"
    );
    assert_eq!(
        server.requests(),
        vec!["HEAD /weights.bin"],
        "one HEAD, no body fetched"
    );
}

#[test]
fn a_redirect_is_followed_and_the_final_url_recorded() {
    let server = FileServer::start();
    let project =
        Project::with_manifest(&manifest(&format!("{}/moved/weights.bin", server.base), ""));
    let run = project.run(&["lock"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lock = project.read("models.lock");
    assert!(
        lock.contains(&format!("final_url: \"{}/weights.bin\"", server.base)),
        "{lock}"
    );
    assert!(
        !lock.contains("sha256: \""),
        "no sha256 is invented before the file is hashed: {lock}"
    );
}

#[test]
fn a_server_that_refuses_head_is_asked_for_one_byte() {
    let server = FileServer::start();
    let project = Project::with_manifest(&manifest(
        &format!("{}/nohead/weights.bin", server.base),
        "",
    ));
    let run = project.run(&["lock"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        project
            .read("models.lock")
            .contains(&format!("size: {}", SERVED.len()))
    );
    assert_eq!(
        server.requests(),
        vec!["HEAD /nohead/weights.bin", "GET /nohead/weights.bin"]
    );
}

#[test]
fn a_head_answered_with_gzip_does_not_pin_the_encoded_length() {
    let server = FileServer::start();
    let project = Project::with_manifest(&manifest(
        &format!("{}/gzip-head/weights.bin", server.base),
        "",
    ));
    let run = project.run(&["lock"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lock = project.read("models.lock");
    assert!(
        lock.contains(&format!("size: {}\n", SERVED.len()))
            && !lock.contains(&format!("size: {GZIPPED_LEN}\n")),
        "the raw size is pinned, not the compressed one: {lock}"
    );
    assert_eq!(
        server.requests(),
        vec!["HEAD /gzip-head/weights.bin", "GET /gzip-head/weights.bin"],
        "the encoded HEAD is followed by a ranged GET"
    );
    let plan = project.run(&["plan"]);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    assert!(
        !plan.stdout.contains("upstream file changed"),
        "the same check finds the same size: {}",
        plan.stdout
    );
    assert_eq!(
        server.requests()[2..],
        ["HEAD /gzip-head/weights.bin", "GET /gzip-head/weights.bin"],
        "plan asked the same way"
    );
}

#[test]
fn a_server_that_sends_only_gzip_is_refused_with_the_reason() {
    let server = FileServer::start();
    let project = Project::with_manifest(&manifest(
        &format!("{}/gzip-always/weights.bin", server.base),
        "",
    ));
    let run = project.run(&["lock"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("sends the file compressed (`Content-Encoding: gzip`)")
            && run.stderr.contains("raw bytes"),
        "{}",
        run.stderr
    );
    assert!(
        !project.read("models.lock").contains("size:"),
        "nothing was pinned"
    );
}

#[test]
fn http_errors_say_what_to_do_and_plan_still_shows_the_model() {
    let server = FileServer::start();
    let project = Project::with_manifest(&manifest(&format!("{}/gone.bin", server.base), ""));
    let run = project.run(&["plan"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("? w (lip_sync)"), "{}", run.stdout);
    assert!(
        run.stdout
            .contains("404 Not Found: the file is not there; check the URL"),
        "{}",
        run.stdout
    );

    project.write(
        "models.yaml",
        &manifest(&format!("{}/private/weights.bin", server.base), ""),
    );
    let run = project.run(&["lock"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("403 Forbidden: access denied"),
        "{}",
        run.stderr
    );
}

#[test]
fn offline_makes_no_request() {
    let server = FileServer::start();
    let project = Project::with_manifest(&manifest(&format!("{}/weights.bin", server.base), ""));
    let run = project.run(&["plan", "--offline"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("`--offline` was passed"),
        "{}",
        run.stdout
    );
    assert!(server.requests().is_empty());
}

#[test]
fn credentials_never_reach_the_lock_or_the_output() {
    let server = FileServer::start();
    let url = server
        .base
        .replace("http://", "http://alice:hf_SENTINEL_secret@")
        + "/weights.bin";
    let project = Project::with_manifest(&manifest(&url, ""));
    let lock = project.run(&["lock"]);
    assert_eq!(lock.code, 0, "{}", lock.stderr);
    let plan = project.run(&["plan", "--json"]);
    let verbose = project.run(&["-vv", "update"]);
    assert!(
        verbose.stderr.contains("HEAD http://127.0.0.1:"),
        "-vv shows the request, redacted: {}",
        verbose.stderr
    );
    assert!(
        verbose.stderr.contains("resolving w (http://alice:****@")
            && verbose.stderr.contains("resolved w: 1 file(s)"),
        "-vv shows each resolution step: {}",
        verbose.stderr
    );
    let traced = project.run_env(&["apply"], &[("MODELCTL_LOG", "trace")]);
    for (what, text) in [
        ("lock stderr", lock.stderr),
        ("models.lock", project.read("models.lock")),
        ("plan", plan.stdout),
        ("plan stderr", plan.stderr),
        ("-vv update", verbose.stderr),
        ("traced apply", traced.stderr),
    ] {
        assert!(
            !text.contains("hf_SENTINEL"),
            "the secret leaked into {what}:\n{text}"
        );
    }
}

#[test]
fn a_changed_upstream_file_is_reported_and_refused_under_locked() {
    let project = crate::support::Project::new();
    project.write("src/w.bin", "version one\n");
    let url = crate::support::file_url(&project.path("src/w.bin"));
    project.write("models.yaml", &manifest(&url, ""));
    assert_eq!(project.run(&["lock"]).code, 0);
    project.write("src/w.bin", "version two, longer\n");

    let plan = project.run(&["plan"]);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    assert!(
        plan.stdout
            .contains("the upstream file changed since models.lock was written"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains("run `modelctl update w`"),
        "{}",
        plan.stdout
    );

    let locked = project.run(&["apply", "--locked"]);
    assert_eq!(locked.code, 1, "{}", locked.stderr);
    assert!(
        locked.stdout.contains("--locked was passed"),
        "{}",
        locked.stdout
    );
    assert!(
        !project.path("models/models").exists(),
        "nothing was downloaded"
    );

    let before = project.read("models.lock");
    let update = project.run(&["update", "w"]);
    assert_eq!(update.code, 0, "{}", update.stderr);
    assert!(update.stderr.contains("w: updated"), "{}", update.stderr);
    assert!(
        update.stderr.contains("-     size: 12") && update.stderr.contains("+     size: 20"),
        "{}",
        update.stderr
    );
    assert_ne!(project.read("models.lock"), before);
    assert_eq!(project.run(&["apply"]).code, 0);

    let unknown = project.run(&["update", "ww"]);
    assert_eq!(unknown.code, 1);
    assert!(
        unknown.stderr.contains("did you mean `w`?"),
        "{}",
        unknown.stderr
    );
}

#[test]
fn a_head_answered_503_is_retried_through_the_shared_client() {
    let server = FileServer::start();
    let project =
        Project::with_manifest(&manifest(&format!("{}/flaky/weights.bin", server.base), ""));
    let run = project.run(&["lock"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        project
            .read("models.lock")
            .contains(&format!("size: {}", SERVED.len())),
        "{}",
        project.read("models.lock")
    );
    assert_eq!(
        server.requests(),
        vec!["HEAD /flaky/weights.bin", "HEAD /flaky/weights.bin"],
        "the 503 was retried, and the second HEAD pinned the file"
    );
}
