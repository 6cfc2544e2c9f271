//! Registry logins from docker credential helpers: `credHelpers` and `credsStore` in
//! `~/.docker/config.json` name `docker-credential-<name>` on PATH, asked with `get` and the
//! host on stdin. A fake helper (a shell script) answers for the bearer-token registry of
//! tests/cli/push.rs; a helper that is missing or has no login is reported with what to do,
//! and no secret is ever printed.

use std::os::unix::fs::PermissionsExt;

use crate::push::{SECRET, TokenRegistry};
use crate::support::{Project, Run, applied_file_model};

/// A project with one applied url model, a registry, and a `bin/` for helpers.
fn setup() -> (Project, TokenRegistry) {
    let registry = TokenRegistry::start();
    let project = applied_file_model("voice", "tts", "voice.safetensors", b"weights\n");
    (project, registry)
}

/// Writes `bin/docker-credential-<name>`: the login for 127.0.0.1 hosts, none for others.
fn helper(project: &Project, name: &str) {
    let path = project.path(&format!("bin/docker-credential-{name}"));
    project.write(
        &format!("bin/docker-credential-{name}"),
        &format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 2\nread host\ncase \"$host\" in\n  \
             127.0.0.1:*) printf '{{\"ServerURL\":\"%s\",\"Username\":\"ci-bot\",\"Secret\":\"{SECRET}\"}}' \"$host\" ;;\n  \
             *) echo 'credentials not found in native keychain' >&2; exit 1 ;;\nesac\n"
        ),
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

fn push(project: &Project, registry: &TokenRegistry) -> Run {
    let path = format!(
        "{}:{}",
        project.path("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let to = format!("{}/team", registry.base);
    project.run_env(&["-vv", "push", "--to", &to], &[("PATH", &path)])
}

fn no_secret(run: &Run) {
    for text in [&run.stdout, &run.stderr] {
        assert!(!text.contains(SECRET), "a secret printed: {text}");
    }
}

#[test]
fn a_cred_helpers_entry_logs_in_through_its_helper() {
    let (project, registry) = setup();
    helper(&project, "fake");
    let host = registry.base.trim_start_matches("http://");
    project.write(
        ".docker/config.json",
        &format!(r#"{{"auths": {{"{host}": {{}}}}, "credHelpers": {{"{host}": "fake"}}}}"#),
    );
    let run = push(&project, &registry);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    no_secret(&run);
    let log = registry.log();
    assert!(log.iter().any(|l| l == "GET /token Basic"), "{log:?}");
}

#[test]
fn a_creds_store_logs_in_every_host_and_a_missing_one_says_so() {
    let (project, registry) = setup();
    helper(&project, "store");
    project.write(".docker/config.json", r#"{"credsStore": "store"}"#);
    let run = push(&project, &registry);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    no_secret(&run);

    // A config copied from a desktop names a helper this machine lacks.
    project.write(".docker/config.json", r#"{"credsStore": "desktop"}"#);
    let run = push(&project, &registry);
    assert_ne!(run.code, 0);
    assert!(
        run.stderr.contains("`docker-credential-desktop`") && run.stderr.contains("not on PATH"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("docker login"), "{}", run.stderr);

    // A helper name that is a path is never run.
    project.write(".docker/config.json", r#"{"credsStore": "../../bin/sh"}"#);
    let run = push(&project, &registry);
    assert_ne!(run.code, 0);
    assert!(
        run.stderr.contains("`../../bin/sh` is not a") && run.stderr.contains("helper name"),
        "{}",
        run.stderr
    );
}
