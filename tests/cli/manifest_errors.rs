//! A manifest with mistakes: every one is reported at once, at its line and column, with help.

use crate::support::Project;

const FIVE_MISTAKES: &str = "\
# yaml-language-server: $schema=schema/models.schema.json
version: 1
models:
  sdxl:
    type: imagegen
    source:
      hf: stabilityai/stable-diffusion-xl-base-1.0
  voice:
    type: tts
    source:
      url: https://example.com/voice.pth
      sha256: 31e35c80fc4829d14f90153f4c74cd59c90b779f6afe05a74cd6120b893f7e5
    requires: { gpu_memory: 8 gigs }
  lipsync:
    type: lip_sync
    source:
      url: https://example.com/wav2lip_gan.pth
      hf: camenduru/Wav2Lip
  llm:
    type: llm
    descripton: Llama 3
    source: { ollama: \"llama3:8b\" }
";

#[test]
fn five_mistakes_give_five_diagnostics_with_positions_and_help() {
    let project = Project::with_manifest(FIVE_MISTAKES);
    let run = project.run(&["plan", "--offline"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(
        run.stdout, "",
        "nothing is planned from an invalid manifest"
    );
    assert_eq!(run.stderr.matches("help:").count(), 5, "{}", run.stderr);
    for at in [
        "models.yaml:5:11",
        "models.yaml:12:15",
        "models.yaml:13:29",
        "models.yaml:18:7",
        "models.yaml:21:5",
    ] {
        assert!(run.stderr.contains(at), "missing {at} in\n{}", run.stderr);
    }
    insta::assert_snapshot!(run.stderr);
    assert!(!project.path("models.lock").exists(), "nothing was written");
}

#[test]
fn an_unknown_version_is_named_with_what_this_build_reads() {
    let project = Project::with_manifest("version: 2\nmodels: {}\n");
    let run = project.run(&["plan", "--offline"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("manifest version 2 is not known"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("upgrade modelctl"), "{}", run.stderr);
}

#[test]
fn references_between_entries_are_checked() {
    let project = Project::with_manifest(
        "\
version: 1
models:
  music-a:
    type: music
    source: { url: https://example.com/a.bin }
  lora:
    type: image_gen
    base: sdxl-bse
    source: { url: https://example.com/lora.safetensors }
active:
  image_gen: music-a
  tts: nobody
",
    );
    let run = project.run(&["plan", "--offline"]);
    assert_eq!(run.code, 1);
    let e = &run.stderr;
    assert!(
        e.contains("has base `sdxl-bse`, which is not declared"),
        "{e}"
    );
    assert!(
        e.contains("`active.image_gen` names `music-a`, which is a `music` model"),
        "{e}"
    );
    assert!(
        e.contains("`active.tts` names `nobody`, which is not declared"),
        "{e}"
    );
    assert!(e.contains("has 3 problems"), "{e}");
}

#[test]
fn unsafe_ids_and_file_names_are_refused_before_any_io() {
    let project = Project::with_manifest(
        "\
version: 1
models:
  ../escape:
    type: llm
    source: { url: https://example.com/a.bin }
  ok:
    type: llm
    source: { url: https://example.com/a.bin, file: ../../etc/passwd }
    files:
      /abs/path: { sha256: 31e35c80fc4829d14f90153f4c74cd59c90b779f6afe05a74cd6120b893f7e5b }
",
    );
    let run = project.run(&["plan", "--offline"]);
    assert_eq!(run.code, 1);
    let e = &run.stderr;
    assert!(e.contains("`../escape` is not a valid model id"), "{e}");
    assert!(
        e.contains("`../../etc/passwd` is not a safe file name"),
        "{e}"
    );
    assert!(e.contains("`/abs/path` is not a safe file path"), "{e}");
    assert!(!project.path("models").exists(), "no store was created");
}

#[test]
fn a_missing_manifest_says_where_it_looked() {
    let project = Project::new();
    let run = project.run(&["plan"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("models.yaml"), "{}", run.stderr);
    assert!(run.stderr.contains("--manifest"), "{}", run.stderr);
}
