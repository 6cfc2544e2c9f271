//! `modelctl apply` against a server that misbehaves: docs/reliability.md N1–N5, N7, S3–S5, and
//! the redirect rules of I9. Each test locks the model while the server behaves, then breaks
//! the server and asserts what went over the wire and what reached the store.

use crate::apply::{
    BIG, FAST, STALL_ENV, active_target, assert_installed, blobs, files_under, manifest, staged,
    url_model,
};
use crate::faults::{CHUNK, Fault, FaultServer, pseudo_random};
use crate::support::{Project, file_url, sha256_hex};

/// A project with model `m` (tts, active) at `path` on `server`, locked while the server
/// behaves; the manifest gives the sha256 when `pinned`.
fn locked(server: &FaultServer, path: &str, bytes: &[u8], pinned: bool) -> Project {
    let sum = sha256_hex(bytes);
    let project = Project::with_manifest(&manifest(
        &[url_model(
            "m",
            "tts",
            &server.url(path),
            pinned.then_some(sum.as_str()),
        )],
        &[("tts", "m")],
    ));
    let run = project.run_env(&["lock"], FAST);
    assert_eq!(run.code, 0, "{}", run.stderr);
    project
}

/// Nothing of `m` reached the store, and no partial of it was kept in staging unless
/// `resumable`.
fn assert_nothing_published(project: &Project) {
    assert!(blobs(project).is_empty(), "published: {:?}", blobs(project));
    assert!(!project.path("store/models/tts/m").exists());
    assert_eq!(active_target(project, "tts"), None);
}

fn assert_no_partial(project: &Project) {
    let staged = staged(project);
    assert!(
        staged.iter().all(|n| !n.contains(".part")),
        "the partial is removed: {staged:?}"
    );
}

#[test]
fn n1_a_reset_mid_body_resumes_with_range_and_if_range() {
    const RESET_AT: u64 = 1 << 20;
    let server = FaultServer::start();
    let bytes = pseudo_random(BIG, 10);
    server.serve("/big.bin", bytes.clone());
    let project = locked(&server, "/big.bin", &bytes, true);
    let etag = server.etag("/big.bin");
    server.set_fault_times("/big.bin", Fault::ResetAfter(RESET_AT), 3);

    let run = project.run_env(&["apply", "--json"], FAST);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_installed(&project, "tts", "m", "big.bin", &bytes);

    let size = BIG as u64;
    let chunks = size.div_ceil(CHUNK);
    let gets = server.gets("/big.bin");
    // The first three requests were reset, unless one was the 4321-byte last chunk, which
    // ends before the reset point.
    let resets = gets[..3]
        .iter()
        .filter(|g| match g.range_bounds() {
            Some((start, Some(end))) => end + 1 - start > RESET_AT,
            _ => true,
        })
        .count() as u64;
    assert!(resets >= 2, "{gets:#?}");
    assert_eq!(
        gets.len() as u64,
        chunks + resets,
        "one retry per reset: {gets:#?}"
    );
    let mut resumed = 0;
    let mut per_chunk = vec![0; chunks as usize];
    for get in &gets {
        assert_eq!(get.if_range.as_deref(), Some(etag.as_str()), "{get:?}");
        let (start, end) = get.range_bounds().expect("every request is ranged");
        let index = start / CHUNK;
        per_chunk[index as usize] += 1;
        assert_eq!(
            end,
            Some(((index + 1) * CHUNK).min(size) - 1),
            "a retry asks for the rest of its chunk: {get:?}"
        );
        if start % CHUNK != 0 {
            assert!(start % CHUNK <= RESET_AT, "{get:?}");
            resumed += 1;
        }
    }
    assert!(
        per_chunk.iter().all(|n| (1..=2).contains(n)),
        "{per_chunk:?}"
    );
    assert!(resumed >= 1, "retries resume where the bytes stopped");
    // Each reset wasted at most what it sent before the reset.
    assert!(
        server.body_bytes() <= size + resets * RESET_AT,
        "{} bytes for a {size}-byte file",
        server.body_bytes()
    );
    for line in run.stdout.lines() {
        let event: serde_json::Value = serde_json::from_str(line).expect("JSON lines");
        if event["event"] == "progress" {
            assert!(event["bytes"].as_u64() <= event["total"].as_u64(), "{line}");
        }
    }
}

#[test]
fn n2_a_server_that_ignores_range_on_resume_restarts_from_zero() {
    let server = FaultServer::start();
    let bytes = pseudo_random(300_000, 11);
    server.serve("/w.bin", bytes.clone());
    let project = locked(&server, "/w.bin", &bytes, true);
    server.script(
        "/w.bin",
        vec![Fault::ResetAfter(100_000)],
        Fault::IgnoreRange,
    );

    let run = project.run_env(&["apply"], FAST);
    assert_eq!(run.code, 0, "{}", run.stderr);
    // Appending the full body to the 100,000 bytes kept would not hash right.
    assert_installed(&project, "tts", "m", "w.bin", &bytes);
    let gets = server.gets("/w.bin");
    assert_eq!(gets.len(), 2);
    assert_eq!(gets[0].range.as_deref(), Some("bytes=0-299999"));
    let (start, _) = gets[1].range_bounds().expect("the retry asks for a range");
    assert!(start <= 100_000, "{:?}", gets[1]);
}

#[test]
fn n2_a_chunked_download_falls_back_to_one_stream_when_range_is_ignored() {
    let server = FaultServer::start();
    let bytes = pseudo_random(BIG, 12);
    server.serve("/big.bin", bytes.clone());
    let project = locked(&server, "/big.bin", &bytes, true);
    server.set_fault("/big.bin", Fault::IgnoreRange);

    let run = project.run_env(&["apply"], FAST);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_installed(&project, "tts", "m", "big.bin", &bytes);
    // The first ranged request's 200 is the whole file from byte 0: streamed, not asked again.
    let gets = server.gets("/big.bin");
    assert_eq!(gets.len(), 1, "one request for the whole file: {gets:#?}");
    assert_eq!(server.body_bytes(), BIG as u64);
}

#[test]
fn n3_upstream_change_fails_with_a_checksum_mismatch_and_changes_nothing() {
    let server = FaultServer::start();
    let bytes = pseudo_random(BIG, 13);
    server.serve("/big.bin", bytes.clone());
    // The store already has an active model of the type.
    let project = Project::new();
    project.write("src/old.bin", "old weights\n");
    let old = url_model("old", "tts", &file_url(&project.path("src/old.bin")), None);
    project.write(
        "models.yaml",
        &manifest(std::slice::from_ref(&old), &[("tts", "old")]),
    );
    assert_eq!(project.run(&["apply"]).code, 0);
    let active_before = project.read("store/active.json");
    let new = url_model(
        "m",
        "tts",
        &server.url("/big.bin"),
        Some(&sha256_hex(&bytes)),
    );
    project.write("models.yaml", &manifest(&[old, new], &[("tts", "m")]));
    assert_eq!(project.run_env(&["lock"], FAST).code, 0);
    let blobs_before = blobs(&project);

    server.set_fault("/big.bin", Fault::ChangeEtagAndBytes);
    let run = project.run_env(&["apply"], FAST);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let changed: Vec<u8> = bytes.iter().map(|b| !b).collect();
    for needle in [
        "checksum mismatch".to_owned(),
        format!("expected sha256:{}", sha256_hex(&bytes)),
        format!("got sha256:{}", sha256_hex(&changed)),
        "`m/big.bin`".to_owned(),
    ] {
        assert!(run.stderr.contains(&needle), "{needle}:\n{}", run.stderr);
    }
    assert_eq!(blobs(&project), blobs_before, "nothing published");
    assert!(!project.path("store/models/tts/m").exists());
    assert_eq!(
        active_target(&project, "tts").as_deref(),
        Some("../models/tts/old")
    );
    assert_eq!(project.read("store/active.json"), active_before);
    assert_no_partial(&project);
    let whole = server
        .gets("/big.bin")
        .iter()
        .filter(|r| r.range.is_none())
        .count();
    assert!(whole <= 1, "at most one full re-download, no retry loop");
}

#[test]
fn n3_upstream_change_is_refused_when_only_the_etag_pins_the_file() {
    let server = FaultServer::start();
    let bytes = pseudo_random(300_000, 14);
    server.serve("/w.bin", bytes.clone());
    let project = locked(&server, "/w.bin", &bytes, false);
    let lock_before = project.read("models.lock");
    server.set_fault("/w.bin", Fault::ChangeEtagAndBytes);

    let run = project.run_env(&["apply"], FAST);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("upstream content changed"),
        "{}",
        run.stderr
    );
    assert_nothing_published(&project);
    assert_eq!(
        project.read("models.lock"),
        lock_before,
        "the other file's sha256 is not learned into the lock"
    );
}

#[test]
fn n4_a_body_longer_than_the_range_is_refused() {
    let server = FaultServer::start();
    let bytes = pseudo_random(300_000, 15);
    server.serve("/w.bin", bytes.clone());
    let project = locked(&server, "/w.bin", &bytes, true);
    server.set_fault("/w.bin", Fault::OversizeBody);

    let run = project.run_env(&["apply"], FAST);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("the server sent more than the expected 300000 bytes"),
        "{}",
        run.stderr
    );
    assert_nothing_published(&project);
    for file in files_under(&project.path("store/.modelctl/tmp")) {
        let len = std::fs::metadata(&file).expect("meta").len();
        assert!(len <= 300_000, "{} grew to {len}", file.display());
    }
}

#[test]
fn n4_a_wrong_content_range_is_refused() {
    let server = FaultServer::start();
    let bytes = pseudo_random(300_000, 16);
    server.serve("/w.bin", bytes.clone());
    let project = locked(&server, "/w.bin", &bytes, true);
    server.set_fault("/w.bin", Fault::WrongContentRange);

    let run = project.run_env(&["apply"], FAST);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("the server's `Content-Range` was `bytes 1-299999/300000`"),
        "{}",
        run.stderr
    );
    assert_nothing_published(&project);
}

#[test]
fn n5_a_stall_is_detected_and_the_retry_resumes() {
    let server = FaultServer::start();
    let bytes = pseudo_random(300_000, 17);
    server.serve("/w.bin", bytes.clone());
    let project = locked(&server, "/w.bin", &bytes, true);
    server.set_fault_times("/w.bin", Fault::StallAfter(100_000), 1);

    let run = project.run_env(&["apply"], STALL_ENV);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_installed(&project, "tts", "m", "w.bin", &bytes);
    // Two requests, unless the machine is so loaded that the retry stalled 0.3 s too.
    let gets = server.gets("/w.bin");
    assert!(gets.len() >= 2, "{gets:?}");
    let (start, _) = gets[1].range_bounds().expect("ranged retry");
    assert!(start <= 100_000, "{:?}", gets[1]);
}

#[test]
fn n5_a_stall_that_persists_fails_saying_stalled() {
    let server = FaultServer::start();
    let bytes = pseudo_random(300_000, 18);
    server.serve("/w.bin", bytes.clone());
    let project = locked(&server, "/w.bin", &bytes, true);
    // Headers, then no body at all.
    server.set_fault("/w.bin", Fault::StallAfter(0));

    let env = [STALL_ENV, &[("MODELCTL_HTTP_RETRIES", "3")]].concat();
    let run = project.run_env(&["apply"], &env);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("stalled: no data for 0.3 s from 127.0.0.1; failed after 3 attempts"),
        "{}",
        run.stderr
    );
    assert_eq!(server.gets("/w.bin").len(), 3, "the whole retry budget");
    assert_nothing_published(&project);
}

#[test]
fn n7_two_503s_then_200_make_exactly_three_requests() {
    let server = FaultServer::start();
    let bytes = pseudo_random(5000, 19);
    server.serve("/w.bin", bytes.clone());
    let project = locked(&server, "/w.bin", &bytes, true);
    server.set_fault("/w.bin", Fault::StatusSeq(vec![503, 503]));

    let run = project.run_env(&["apply"], FAST);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(server.gets("/w.bin").len(), 3);
    let warnings: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("warning: m/w.bin: HTTP 503"))
        .collect();
    assert_eq!(warnings.len(), 2, "one warning per retry: {}", run.stderr);
    let left = format!("{} attempts left)", 6 - 1);
    assert!(warnings[0].contains(&left), "{}", run.stderr);
    assert_installed(&project, "tts", "m", "w.bin", &bytes);
}

#[test]
fn n7_always_503_uses_the_retry_budget_and_says_so() {
    let server = FaultServer::start();
    let bytes = pseudo_random(5000, 20);
    server.serve("/w.bin", bytes.clone());
    let project = locked(&server, "/w.bin", &bytes, true);
    server.set_fault("/w.bin", Fault::Always(503));

    let env = [FAST, &[("MODELCTL_HTTP_RETRIES", "4")]].concat();
    let run = project.run_env(&["apply"], &env);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("HTTP 503, failed after 4 attempts"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains(&server.url("/w.bin")), "{}", run.stderr);
    assert_eq!(server.gets("/w.bin").len(), 4);
    assert_nothing_published(&project);
}

#[test]
fn n7_404_is_not_retried_and_says_what_to_do() {
    let server = FaultServer::start();
    let bytes = pseudo_random(5000, 21);
    server.serve("/w.bin", bytes.clone());
    let project = locked(&server, "/w.bin", &bytes, true);
    server.set_fault("/w.bin", Fault::Always(404));

    let run = project.run_env(&["apply"], FAST);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(server.gets("/w.bin").len(), 1, "not retried");
    assert!(
        run.stderr.contains(
            "HTTP 404: the file is not there; check the URL, or re-lock with `modelctl lock`"
        ),
        "{}",
        run.stderr
    );
    assert_nothing_published(&project);
}

#[test]
fn n7_429_with_a_day_long_retry_after_fails_fast() {
    let server = FaultServer::start();
    let bytes = pseudo_random(5000, 22);
    server.serve("/w.bin", bytes.clone());
    let project = locked(&server, "/w.bin", &bytes, true);
    server.set_fault("/w.bin", Fault::RetryAfter("86400".into()));

    let run = project.run_env(&["apply"], FAST);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(server.gets("/w.bin").len(), 1, "no waiting, no retry");
    assert!(
        run.stderr
            .contains("retry in 86400 s, longer than the 60 s"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("rate limited"), "{}", run.stderr);
}

#[test]
fn n7_a_short_retry_after_is_honoured() {
    let server = FaultServer::start();
    let bytes = pseudo_random(5000, 23);
    server.serve("/w.bin", bytes.clone());
    let project = locked(&server, "/w.bin", &bytes, true);
    server.set_fault_times("/w.bin", Fault::RetryAfter("1".into()), 1);

    let started = std::time::Instant::now();
    let run = project.run_env(&["apply"], FAST);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(server.gets("/w.bin").len(), 2);
    // A lower bound only: the 10 ms backoff alone would be far quicker.
    assert!(started.elapsed() >= std::time::Duration::from_secs(1));
}

#[test]
fn s3_wrong_bytes_fail_the_checksum_and_nothing_is_published() {
    let server = FaultServer::start();
    let bytes = pseudo_random(300_000, 24);
    server.serve("/w.bin", bytes.clone());
    let project = locked(&server, "/w.bin", &bytes, true);
    server.set_fault("/w.bin", Fault::WrongBytes);

    let run = project.run_env(&["apply"], FAST);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!(
            "checksum mismatch: expected sha256:{}",
            sha256_hex(&bytes)
        )),
        "{}",
        run.stderr
    );
    assert_eq!(
        server.gets("/w.bin").len(),
        1,
        "a wrong file is not retried"
    );
    assert_nothing_published(&project);
    assert_no_partial(&project);
}

#[test]
fn s3_a_content_disposition_filename_is_ignored() {
    let server = FaultServer::start();
    let bytes = pseudo_random(5000, 25);
    server.serve("/w.bin", bytes.clone());
    let project = locked(&server, "/w.bin", &bytes, true);
    server.set_fault("/w.bin", Fault::ContentDisposition("../../x".into()));

    let run = project.run_env(&["apply"], FAST);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_installed(&project, "tts", "m", "w.bin", &bytes);
    let names: Vec<String> = files_under(project.root())
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    assert!(!names.iter().any(|n| n == "x"), "{names:?}");
    let model_dir: Vec<_> = files_under(&project.path("store/models/tts/m"));
    assert_eq!(model_dir, [project.path("store/models/tts/m/w.bin")]);
}

#[test]
fn s5_an_encoded_body_is_refused_and_identity_was_asked_for() {
    let server = FaultServer::start();
    let bytes = pseudo_random(5000, 26);
    server.serve("/w.bin", bytes.clone());
    let project = locked(&server, "/w.bin", &bytes, true);
    server.set_fault("/w.bin", Fault::GzipHeader);

    let run = project.run_env(&["apply"], FAST);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("the server sent `Content-Encoding: gzip`"),
        "{}",
        run.stderr
    );
    let gets = server.gets("/w.bin");
    assert!(!gets.is_empty());
    for get in gets {
        assert_eq!(get.accept_encoding.as_deref(), Some("identity"), "{get:?}");
    }
    assert_nothing_published(&project);
}

/// `/hop/1` → `/hop/2` → … → `/hop/10` → `/real.bin`.
fn redirect_chain(server: &FaultServer, bytes: &[u8]) {
    server.serve("/real.bin", bytes.to_vec());
    for i in 1..=10 {
        let path = format!("/hop/{i}");
        server.serve(&path, Vec::new());
        let next = if i == 10 {
            "/real.bin".to_owned()
        } else {
            format!("/hop/{}", i + 1)
        };
        server.set_fault(&path, Fault::RedirectTo(next));
    }
}

#[test]
fn more_than_ten_redirects_fail_and_ten_are_followed() {
    let server = FaultServer::start();
    let bytes = pseudo_random(5000, 27);
    server.serve("/w.bin", bytes.clone());
    redirect_chain(&server, &bytes);
    let project = locked(&server, "/w.bin", &bytes, true);

    // /w.bin → /hop/1 … /hop/10 → /real.bin: eleven redirects.
    server.set_fault("/w.bin", Fault::RedirectTo("/hop/1".into()));
    let run = project.run_env(&["apply"], FAST);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("more than 10 redirects"),
        "{}",
        run.stderr
    );
    assert!(server.gets("/real.bin").is_empty());
    assert_eq!(
        server.gets("/w.bin").len(),
        1,
        "a refused redirect is final"
    );
    assert_nothing_published(&project);

    // /w.bin → /hop/2 … → /real.bin: ten.
    server.set_fault("/w.bin", Fault::RedirectTo("/hop/2".into()));
    let run = project.run_env(&["apply"], FAST);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_installed(&project, "tts", "m", "w.bin", &bytes);
}

#[test]
fn no_referer_is_sent_after_a_redirect() {
    let server = FaultServer::start();
    let bytes = pseudo_random(5000, 28);
    server.serve("/w.bin", bytes.clone());
    server.serve("/real.bin", bytes.clone());
    let project = locked(&server, "/w.bin", &bytes, true);
    server.set_fault("/w.bin", Fault::RedirectTo(server.url("/real.bin")));

    let run = project.run_env(&["apply"], FAST);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_installed(&project, "tts", "m", "w.bin", &bytes);
    assert_eq!(server.gets("/real.bin").len(), 1);
    for request in server.requests() {
        assert_eq!(request.referer, None, "{request:?}");
    }
}
