//! The commands that edit models.yaml in place: each changes only the lines it means to,
//! keeps comments, key order and odd formatting, and a refused edit leaves the file
//! byte-identical.

use crate::support::{Project, Run};

/// Comments everywhere, keys out of the usual order, flow and block mappings, extra spaces.
const MANIFEST: &str = "\
# yaml-language-server: $schema=schema/models.schema.json
# Our stack.
version: 1        # format version

store: ./models

models:
  # The image model.
  sdxl-base:
    description: \"SDXL base\"   # shown by status
    type: image_gen
    source: { hf: stabilityai/stable-diffusion-xl-base-1.0, revision: main }
    config:
      steps: 30      # default steps
      sampler: \"euler\"

  # Two voices.
  voice-a:
    type: tts
    source:
      url: https://example.com/a.pth
  voice-b:
    type:    tts
    source:
      ollama: \"voice:b\"

# Which is on.
active:
  tts: voice-a    # the default voice
  image_gen: sdxl-base
# end of file
";

/// Runs `args` on a fresh copy of [`MANIFEST`]; returns the run and the file afterwards.
fn edit(args: &[&str]) -> (Run, String) {
    edit_from(MANIFEST, args)
}

fn edit_from(manifest: &str, args: &[&str]) -> (Run, String) {
    let project = Project::with_manifest(manifest);
    let run = project.run(args);
    (run, project.read("models.yaml"))
}

/// `MANIFEST` with each `(from, to)` replaced once, asserting each is found.
fn manifest_with(changes: &[(&str, &str)]) -> String {
    changes
        .iter()
        .fold(MANIFEST.to_owned(), |text, (from, to)| {
            assert_eq!(text.matches(from).count(), 1, "{from:?}");
            text.replacen(from, to, 1)
        })
}

fn assert_written(run: &Run) {
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("Wrote `models.yaml`; run `modelctl apply` to make it so."),
        "{}",
        run.stderr
    );
}

/// A refused edit: exit 1, the reason on stderr, the file byte-identical.
fn assert_refused(args: &[&str], reason: &str) {
    let (run, after) = edit(args);
    assert_eq!(run.code, 1, "{args:?} was not refused: {}", run.stderr);
    assert!(run.stderr.contains(reason), "{args:?}: {}", run.stderr);
    assert_eq!(after, MANIFEST, "{args:?} changed the file");
    assert_eq!(run.stdout, "");
}

#[test]
fn activate_replaces_the_types_entry_keeping_its_comment() {
    let (run, after) = edit(&["activate", "voice-b"]);
    assert_written(&run);
    assert_eq!(
        after,
        manifest_with(&[("tts: voice-a    #", "tts: voice-b    #")])
    );
    assert_eq!(
        run.stdout,
        "-   tts: voice-a    # the default voice\n+   tts: voice-b    # the default voice\n"
    );
}

#[test]
fn activate_creates_the_active_mapping_when_missing() {
    let manifest = "# models\nversion: 1\nmodels:\n  llm-a:   # a model\n    type: llm\n    source: { ollama: \"a:1\" }\n";
    let (run, after) = edit_from(manifest, &["activate", "llm-a"]);
    assert_written(&run);
    assert_eq!(after, format!("{manifest}active:\n  llm: llm-a\n"));
}

#[test]
fn activate_an_active_model_changes_nothing() {
    let (run, after) = edit(&["activate", "voice-a"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("`models.yaml` is unchanged."),
        "{}",
        run.stderr
    );
    assert_eq!(after, MANIFEST);
}

#[test]
fn deactivate_by_type_or_by_id_removes_just_that_line() {
    let expected = manifest_with(&[("  image_gen: sdxl-base\n", "")]);
    for target in ["image_gen", "sdxl-base"] {
        let (run, after) = edit(&["deactivate", target]);
        assert_written(&run);
        assert_eq!(after, expected, "deactivate {target}");
        assert_eq!(run.stdout, "-   image_gen: sdxl-base\n");
    }
}

#[test]
fn deactivating_the_last_type_removes_active_and_keeps_the_final_newline() {
    let project = Project::with_manifest(MANIFEST);
    assert_eq!(project.run(&["deactivate", "tts"]).code, 0);
    assert_eq!(project.run(&["deactivate", "image_gen"]).code, 0);
    assert_eq!(
        project.read("models.yaml"),
        manifest_with(&[(
            "active:\n  tts: voice-a    # the default voice\n  image_gen: sdxl-base\n",
            ""
        )])
    );
}

#[test]
fn config_sets_typed_values_and_unsets_keys_in_place() {
    let (run, after) = edit(&[
        "config",
        "sdxl-base",
        "steps=40",
        "cfg=7.5",
        "tiled=true",
        "scheduler=karras",
        "--unset",
        "sampler",
    ]);
    assert_written(&run);
    assert_eq!(
        after,
        manifest_with(&[(
            "      steps: 30      # default steps\n      sampler: \"euler\"\n",
            "      steps: 40      # default steps\n      cfg: 7.5\n      tiled: true\n      \
             scheduler: karras\n"
        )])
    );
}

#[test]
fn config_creates_the_config_mapping_after_the_models_last_key() {
    let (run, after) = edit(&["config", "voice-a", "ctx=8192", "voice=en-GB"]);
    assert_written(&run);
    assert_eq!(
        after,
        manifest_with(&[(
            "      url: https://example.com/a.pth\n",
            "      url: https://example.com/a.pth\n    config:\n      ctx: 8192\n      \
             voice: en-GB\n"
        )])
    );
    assert_eq!(
        run.stdout,
        "+     config:\n+       ctx: 8192\n+       voice: en-GB\n"
    );
}

#[test]
fn remove_drops_the_entry_and_the_active_line_naming_it() {
    let (run, after) = edit(&["remove", "voice-a"]);
    assert_written(&run);
    assert_eq!(
        after,
        manifest_with(&[
            (
                "  voice-a:\n    type: tts\n    source:\n      url: https://example.com/a.pth\n",
                ""
            ),
            ("  tts: voice-a    # the default voice\n", ""),
        ])
    );
}

#[test]
fn add_appends_an_hf_model_after_the_last_one() {
    let (run, after) = edit(&[
        "add",
        "whisper",
        "--type",
        "tts",
        "--hf",
        "openai/whisper-large-v3",
        "--revision",
        "v3",
        "--include",
        "*.json",
        "*.safetensors",
        "--description",
        "Speech, v3",
    ]);
    assert_written(&run);
    assert_eq!(
        after,
        manifest_with(&[(
            "      ollama: \"voice:b\"\n",
            "      ollama: \"voice:b\"\n  whisper:\n    type: tts\n    description: Speech, v3\n    \
             source:\n      hf: openai/whisper-large-v3\n      revision: v3\n      include:\n        \
             - '*.json'\n        - '*.safetensors'\n"
        )])
    );
}

#[test]
fn add_url_and_ollama_models() {
    let sha = "a".repeat(64);
    let (run, after) = edit(&[
        "add",
        "pic",
        "--type",
        "image_gen",
        "--url",
        "https://example.com/p.bin",
        "--sha256",
        &sha,
    ]);
    assert_written(&run);
    assert_eq!(
        after,
        manifest_with(&[(
            "      ollama: \"voice:b\"\n",
            &format!(
                "      ollama: \"voice:b\"\n  pic:\n    type: image_gen\n    source:\n      \
                 url: https://example.com/p.bin\n      sha256: {sha}\n"
            )
        )])
    );
    let (run, after) = edit(&[
        "add",
        "llama",
        "--type",
        "llm",
        "--ollama",
        "llama3:8b",
        "--offline",
    ]);
    assert_written(&run);
    assert_eq!(
        after,
        manifest_with(&[(
            "      ollama: \"voice:b\"\n",
            "      ollama: \"voice:b\"\n  llama:\n    type: llm\n    source:\n      \
             ollama: llama3:8b\n"
        )])
    );
}

#[test]
fn refused_edits_leave_the_file_byte_identical_and_say_why() {
    assert_refused(
        &["activate", "voice-c"],
        "no model `voice-c` in models.yaml",
    );
    assert_refused(&["activate", "voice-c"], "did you mean `voice-a`?");
    assert_refused(
        &["activate", "sdxl-base", "--type", "tts"],
        "`active.tts` names `sdxl-base`, which is a `image_gen` model",
    );
    assert_refused(&["deactivate", "imagegen"], "did you mean `image_gen`?");
    assert_refused(
        &["config", "sdxl", "steps=1"],
        "no model `sdxl` in models.yaml",
    );
    assert_refused(
        &["config", "sdxl-base", "steps"],
        "`steps` is not KEY=VALUE",
    );
    assert_refused(
        &["config", "sdxl-base", "--unset", "sampler2"],
        "did you mean `sampler`?",
    );
    assert_refused(&["remove", "voice-z"], "did you mean `voice-a`?");
    assert_refused(
        &["add", "voice-a", "--type", "tts", "--ollama", "x:1"],
        "`voice-a` is already in models.yaml",
    );
    assert_refused(
        &["add", "v", "--type", "ttss", "--ollama", "x:1"],
        "did you mean `tts`?",
    );
    assert_refused(
        &[
            "add",
            "v",
            "--type",
            "tts",
            "--url",
            "https://e.com/v",
            "--sha256",
            "abc",
        ],
        "a sha256 has 64 hex digits, this one has 3",
    );
    assert_refused(
        &[
            "add",
            "v",
            "--type",
            "tts",
            "--url",
            "https://e.com/v",
            "--sha256",
            "abc",
        ],
        "`models.yaml (as edited)` has 1 problem; nothing was changed",
    );
}

#[test]
fn removing_a_base_model_is_refused_while_an_adapter_uses_it() {
    let manifest = "version: 1\nmodels:\n  sd:\n    type: image_gen\n    source: { ollama: \"a:1\" }\n  lora:\n    type: image_gen\n    base: sd\n    source: { ollama: \"b:1\" }\n";
    let (run, after) = edit_from(manifest, &["remove", "sd"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("nothing was changed"), "{}", run.stderr);
    assert_eq!(after, manifest);
}

#[test]
fn config_values_that_only_look_special_stay_strings() {
    let (run, after) = edit(&[
        "config", "voice-b", "a=null", "b=yes", "c=x: y", "d=#c", "e=",
    ]);
    assert_written(&run);
    assert_eq!(
        after,
        manifest_with(&[(
            "      ollama: \"voice:b\"\n",
            "      ollama: \"voice:b\"\n    config:\n      a: 'null'\n      b: 'yes'\n      \
             c: 'x: y'\n      d: '#c'\n      e: ''\n"
        )])
    );
}

#[test]
fn flow_mappings_are_edited_in_flow_style() {
    let manifest =
        "version: 1\nmodels:\n  l: { type: llm, source: { ollama: \"a:1\" } }\nactive: { }\n";
    let project = Project::with_manifest(manifest);
    assert_eq!(project.run(&["activate", "l"]).code, 0);
    assert_eq!(project.run(&["config", "l", "ctx=3"]).code, 0);
    assert_eq!(
        project.read("models.yaml"),
        "version: 1\nmodels:\n  l: { type: llm, source: { ollama: \"a:1\" }, config: {ctx: 3} }\n\
         active: { llm: l}\n"
    );
}

#[test]
fn add_then_remove_leaves_the_file_byte_identical() {
    let project = Project::with_manifest(MANIFEST);
    let added = project.run(&[
        "add",
        "llama",
        "--type",
        "llm",
        "--ollama",
        "llama3:8b",
        "--activate",
        "--offline",
    ]);
    assert_written(&added);
    let between = project.read("models.yaml");
    assert!(between.contains("  llama:\n"), "{between}");
    assert!(between.contains("llm: llama"), "--activate: {between}");
    assert_written(&project.run(&["remove", "llama"]));
    assert_eq!(project.read("models.yaml"), MANIFEST);
}
